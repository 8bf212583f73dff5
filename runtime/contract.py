"""The contract every side of the toolchain shares: rates, cue shapes, the graph's names, the cue files,
atomic files.

It lives in the runtime package because the runtime must stay torch-free and is installed on its own;
the training side (limuse_edge) and the exporter (limuse_export) import it. Nothing else defines these.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from limuse_runtime.errors import InputError

SAMPLE_RATE = 16000
VIDEO_RATE = 25  # lip-feature frames per second
SAMPLES_PER_VIDEO_FRAME = SAMPLE_RATE // VIDEO_RATE  # 640
VOICEPRINT_DIM = 512
VISUAL_DIM = 256
# Shortest mixture accepted: one video frame (40 ms). It is longer than any encoder filter, and the
# visual cue needs at least one frame to interpolate from.
MIN_SAMPLES = SAMPLES_PER_VIDEO_FRAME

# The exported graphs' inputs (a model without a cue lacks that input) and output, in this order.
MIXTURE, VOICEPRINT, VISUAL = "mixture", "voiceprint", "visual"
INPUT_NAMES = (MIXTURE, VOICEPRINT, VISUAL)
OUTPUT_NAME = "target"
OUTPUT_NAMES = (OUTPUT_NAME,)
DYNAMIC_AXES = {MIXTURE: {0: "batch", 2: "samples"}, VOICEPRINT: {0: "batch"},
                VISUAL: {0: "batch", 1: "frames"}, OUTPUT_NAME: {0: "batch", 1: "samples"}}


def n_video_frames(n_samples: int) -> int:
    """Video frames that cover `n_samples` audio samples: rounded up, at least one (75 for 3 s)."""
    return max(1, -(-int(n_samples) // SAMPLES_PER_VIDEO_FRAME))


def load_voiceprint(path: "str | Path") -> np.ndarray:
    """A .npy of shape (512,) or (1, 512)."""
    array = _load_npy(path, VOICEPRINT, f"({VOICEPRINT_DIM},)")
    if array.shape == (1, VOICEPRINT_DIM):
        array = array[0]
    if array.shape != (VOICEPRINT_DIM,):
        raise InputError(f"voiceprint: got shape {array.shape} in {str(path)!r}; expected ({VOICEPRINT_DIM},)")
    return array


def load_visual(path: "str | Path") -> np.ndarray:
    """A .npy of shape (frames, 256) or (1, frames, 256), 25 fps."""
    array = _load_npy(path, VISUAL, f"(frames, {VISUAL_DIM})")
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2 or array.shape[1] != VISUAL_DIM or array.shape[0] < 1:
        raise InputError(f"visual: got shape {array.shape} in {str(path)!r}; expected (frames, {VISUAL_DIM}) "
                         f"at {VIDEO_RATE} fps")
    return array


def _load_npy(path: "str | Path", name: str, shape: str) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{name}: no such file {str(path)!r}; expected a .npy array of shape {shape}")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception:  # numpy raises ValueError / OSError / EOFError for foreign files
        raise InputError(f"{name}: cannot read {str(path)!r} as a .npy array; expected shape {shape}") from None
    if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"{name}: {str(path)!r} holds {getattr(array, 'dtype', type(array))}; expected a float "
                         f"array of shape {shape}")
    if not np.isfinite(array).all():
        raise InputError(f"{name}: {str(path)!r} contains NaN or Inf; expected finite values")
    return array.astype(np.float32)


@contextlib.contextmanager
def atomic_path(path: "str | Path", suffix: str = "") -> Iterator[Path]:
    """Yields a temporary path beside `path`; renames it onto `path` when the block succeeds and deletes
    it otherwise, so a failed write never leaves a partial file. The file gets the permissions a plain
    open() would give (0666 less the umask), not mkstemp's 0600. `suffix` keeps an extension that a
    writer reads the format from (soundfile: ".wav")."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: "str | Path", data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: "str | Path", text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
