"""The native-engine tests' input length (0.4 s, ten video frames, so limuse-run's windowing applies) and
their raw little-endian float32 files (the standalone C runner reads those)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

SAMPLES, VIDEO_FRAMES = 6400, 10


def write_raw(path, array) -> Path:
    np.ascontiguousarray(array, "<f4").tofile(path)
    return Path(path)
