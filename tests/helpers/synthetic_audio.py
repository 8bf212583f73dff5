"""Synthetic audio for the runtime tests: wav files and speech-like noise."""
from __future__ import annotations

import numpy as np
import soundfile as sf

from limuse_runtime.contract import SAMPLE_RATE


def write_wav(path, samples: np.ndarray, rate: int = SAMPLE_RATE, subtype: str = "FLOAT"):
    """samples (C, S) -> wav."""
    sf.write(str(path), np.asarray(samples).T, rate, subtype=subtype)
    return path


def speech_like(channels: int, seconds: float, seed: int = 0) -> np.ndarray:
    """Amplitude-modulated noise: stationary enough that windows see similar statistics."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * np.arange(n) / SAMPLE_RATE)
    return (0.1 * rng.standard_normal((channels, n)) * envelope).astype(np.float32)
