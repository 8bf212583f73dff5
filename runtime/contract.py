"""The contract every side of the toolchain shares: rates, cue shapes, the graph's names, atomic files.

It lives in the runtime package because the runtime must stay torch-free and is installed on its own;
the training side (limuse_edge) and the exporter (limuse_export) import it. Nothing else defines these.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

SAMPLE_RATE = 16000
VIDEO_RATE = 25  # lip-feature frames per second
SAMPLES_PER_VIDEO_FRAME = SAMPLE_RATE // VIDEO_RATE  # 640
VOICEPRINT_DIM = 512
VISUAL_DIM = 256

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
