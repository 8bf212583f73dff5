from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from onnx_fixtures import build_calibrated, export


@pytest.fixture(scope="session")
def tiny_model():
    torch.set_num_threads(1)
    return build_calibrated("tiny", "float")


@pytest.fixture(scope="session")
def tiny_float_onnx(tmp_path_factory, tiny_model):
    return export(tiny_model, tmp_path_factory.mktemp("onnx") / "tiny.float.onnx")


@pytest.fixture(scope="session")
def tiny_no_vp_onnx(tmp_path_factory):
    torch.set_num_threads(1)
    from limuse_edge.config import PRESETS
    model = build_calibrated(PRESETS["tiny"].replace(cues=("visual",)), "float")
    return export(model, tmp_path_factory.mktemp("onnx") / "tiny_no_vp.float.onnx")


def write_wav(path, samples: np.ndarray, rate: int = 16000, subtype: str = "FLOAT"):
    """samples (C, S) -> wav."""
    sf.write(str(path), np.asarray(samples).T, rate, subtype=subtype)
    return path


def speech_like(channels: int, seconds: float, seed: int = 0) -> np.ndarray:
    """Amplitude-modulated noise: stationary enough that windows see similar statistics."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * np.arange(n) / 16000)
    return (0.1 * rng.standard_normal((channels, n)) * envelope).astype(np.float32)
