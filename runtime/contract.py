"""The contract every side of the toolchain shares: rates, cue shapes, the graph's names, the cue files,
what a model expects and the checks of its inputs (every backend's), atomic files.

It lives in the runtime package because the runtime must stay torch-free and is installed on its own;
the training side (limuse_edge) and the exporter (limuse_export) import it. Nothing else defines these.
"""
from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from dataclasses import dataclass
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


@dataclass(frozen=True)
class ModelContract:
    """What a graph expects, read from its inputs."""

    mic_channels: int
    has_voiceprint: bool
    has_visual: bool


def check_inputs(c: ModelContract, mixture: np.ndarray, voiceprint: "np.ndarray | None",
                 visual: "np.ndarray | None") -> None:
    """Raises InputError unless the arrays fit the model (shapes, channels, finite values); every backend
    checks with this."""
    if mixture.ndim != 2 or mixture.shape[0] != c.mic_channels:
        raise InputError(f"mixture: got shape {mixture.shape}; expected ({c.mic_channels}, samples)")
    if mixture.shape[1] < MIN_SAMPLES:
        raise InputError(f"mixture: got {mixture.shape[1]} samples; expected at least {MIN_SAMPLES} "
                         f"({MIN_SAMPLES / SAMPLE_RATE:.2f} s at {SAMPLE_RATE} Hz)")
    if not np.isfinite(mixture).all():
        raise InputError("mixture: contains NaN or Inf; expected finite samples")
    check_voiceprint(voiceprint, c)
    check_visual(visual, c)


def check_voiceprint(voiceprint: np.ndarray | None, contract: ModelContract) -> None:
    if not contract.has_voiceprint:
        if voiceprint is not None:
            raise InputError("voiceprint: this model has no voiceprint input (a no-VP variant); "
                             "expected no voiceprint")
        return
    if voiceprint is None:
        raise InputError(f"voiceprint: missing; this model expects a voiceprint of shape ({VOICEPRINT_DIM},)")
    if voiceprint.shape != (VOICEPRINT_DIM,):
        raise InputError(f"voiceprint: got shape {voiceprint.shape}; expected ({VOICEPRINT_DIM},)")
    if not np.isfinite(voiceprint).all():
        raise InputError("voiceprint: contains NaN or Inf; expected finite values")


def check_visual(visual: np.ndarray | None, contract: ModelContract) -> None:
    if visual is None:
        return
    if not contract.has_visual:
        raise InputError("visual: this model has no visual input (a no-VIS variant); expected no visual")
    if visual.ndim != 2 or visual.shape[1] != VISUAL_DIM or visual.shape[0] < 1:
        raise InputError(f"visual: got shape {visual.shape}; expected (frames, {VISUAL_DIM}) at {VIDEO_RATE} fps")
    if not np.isfinite(visual).all():
        raise InputError("visual: contains NaN or Inf; expected finite values")


def load_voiceprint(path: "str | Path") -> np.ndarray:
    """A .npy of shape (512,) or (1, 512)."""
    array = _load_npy(path, VOICEPRINT, f"({VOICEPRINT_DIM},)")
    if array.shape == (1, VOICEPRINT_DIM):
        array = array[0]
    if array.shape != (VOICEPRINT_DIM,):
        raise InputError(f"voiceprint: got shape {array.shape} in {str(path)!r}; expected ({VOICEPRINT_DIM},)")
    if not np.any(array):  # what a failed or skipped enrolment leaves; the model would run on no speaker
        raise InputError(f"voiceprint: all {VOICEPRINT_DIM} values in {str(path)!r} are zero, which names no "
                         f"speaker; expected a speaker embedding (limuse-run enroll writes one)")
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
    it otherwise, so a failed write never leaves a partial file. Replacing an existing file keeps that
    file's permission bits; a new file gets what a plain open() would give (0666 less the umask), not
    mkstemp's 0600. `suffix` keeps an extension that a writer reads the format from (soundfile: ".wav").
    A path that cannot be written (a directory, a read-only or special file system, a name too long)
    raises InputError before the block runs."""
    path = Path(path)
    check_output_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode) if path.is_file() else 0o666 & ~_umask()
        # the name is cut so that the temporary name stays within NAME_MAX when `path`'s own name does
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:64]}.", suffix=suffix, dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise InputError(f"out: cannot write in {str(path.parent)!r} ({exc.strerror}); expected a writable "
                         f"directory") from None
    tmp = Path(tmp)
    try:
        os.chmod(tmp, mode)
        yield tmp
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise InputError(f"out: cannot write {str(path)!r} ({exc.strerror}); expected a writable file "
                             f"path") from None
    finally:
        tmp.unlink(missing_ok=True)


def check_threads(threads: int) -> None:
    """1 .. the CPU count, for every backend: more threads than cores only contend (onnxruntime with 1000
    threads did not finish 3 s of audio in 300 s)."""
    cpus = os.cpu_count() or 1
    if not 1 <= threads <= cpus:
        raise InputError(f"threads: got {threads}; expected a positive integer of at most {cpus} (the CPUs of "
                         f"this machine)")


def check_output_path(path: "str | Path", inputs: "tuple | list" = ()) -> None:
    """Raises InputError unless `path` names a file that can be created or replaced, and is none of the
    `inputs` (also through a symbolic or hard link): checked before a computation, so that a bad path
    costs nothing and an input is never overwritten by its own result."""
    text = str(path)
    expected = "expected a path to a new or replaceable file in an existing, writable directory"
    if not text or text.endswith(os.sep):
        raise InputError(f"out: {text!r} is not a file name; {expected}")
    path = Path(path)
    try:  # the name first: stat() of a name beyond NAME_MAX fails with ENAMETOOLONG
        name_max = os.pathconf(path.parent if str(path.parent) else ".", "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    if len(os.fsencode(path.name)) > name_max:
        raise InputError(f"out: the file name is {len(os.fsencode(path.name))} bytes long, more than the "
                         f"{name_max} its file system allows; {expected}")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise InputError(f"out: {text!r} cannot be used ({exc.strerror}); {expected}") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise InputError(f"out: {text!r} is a directory; {expected}")
    if mode is not None and not stat.S_ISREG(mode):  # a device, FIFO or socket: never replaced by a file
        raise InputError(f"out: {text!r} exists and is not a regular file; {expected}")
    for other in inputs:
        if other is None:
            continue
        try:
            same = os.path.samefile(path, other)
        except OSError:  # either does not exist (yet): they cannot be one file
            same = False
        if same:
            raise InputError(f"out: {text!r} is the input {str(other)!r} (the same file); expected a different "
                             f"output path, so that the input is not overwritten")


def probe_output_dir(path: "str | Path") -> None:
    """Raises InputError unless a file can be created beside `path` (a read-only mount, /proc, a full
    inode table): a temporary file is made and removed at once."""
    parent = Path(path).parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=".limuse_probe.", dir=parent)
    except OSError as exc:
        raise InputError(f"out: cannot write in {str(parent)!r} ({exc.strerror}); expected a writable "
                         f"directory") from None
    try:
        os.close(fd)
    finally:
        os.unlink(tmp)


def atomic_write_bytes(path: "str | Path", data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: "str | Path", text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
