from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from limuse_edge.checkpoint import build_model
from limuse_edge.config import PRESETS
from limuse_export.pipeline import export_onnx
from limuse_export.prepare import example_inputs, exportable
from limuse_export.save import save_onnx


def export_float(model, path):
    """`model` as the export pipeline writes its float file."""
    save_onnx(export_onnx("float", exportable(model), example_inputs(model, 16000)), path)
    return path


def untrained(config):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    return build_model(config, "float").eval()


@pytest.fixture(scope="session")
def tiny_float_onnx(tmp_path_factory):
    return export_float(untrained("tiny"), tmp_path_factory.mktemp("onnx") / "tiny.float.onnx")


@pytest.fixture(scope="session")
def tiny_no_vp_onnx(tmp_path_factory):
    model = untrained(PRESETS["tiny"].replace(cues=("visual",)))
    return export_float(model, tmp_path_factory.mktemp("onnx") / "tiny_no_vp.float.onnx")


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
