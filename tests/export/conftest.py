"""Shared exports for tests/export: made once per session, small models, short synthetic inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from limuse_edge.config import get_preset
from limuse_edge.quant import calibrate
from limuse_export import onnx_export
from limuse_export.demo_sample import Utterance
from limuse_export.prepare import example_inputs, exportable
from limuse_export.save import save_onnx
from limuse_export.sources import from_preset
from limuse_runtime.contract import n_video_frames

# tiny's padding in the context codec (block 8, hop 4; frames = (S - 16) / 8 + 1):
# 4000 samples -> 499 frames, tail padding 1; 5000 -> 624 frames, tail padding 4.
LENGTHS = (4000, 5000)


def synthetic_utterance(name: str, n_samples: int, seed: int) -> Utterance:
    rng = np.random.default_rng(seed)
    frames = n_video_frames(n_samples)
    return Utterance(name, (0.1 * rng.standard_normal((2, n_samples))).astype(np.float32),
                     (0.1 * rng.standard_normal(n_samples)).astype(np.float32),
                     rng.standard_normal(512).astype(np.float32),
                     rng.standard_normal((frames, 256)).astype(np.float32))


@pytest.fixture(scope="session")
def tiny_quantized():
    torch.set_num_threads(1)
    source = from_preset("tiny", "w3a8")
    batches = [example_inputs(source.quantized, n, seed=i) for i, n in enumerate(LENGTHS)]
    quantized = source.quantized.eval()
    calibrate(quantized, batches)
    return quantized, source.float


@pytest.fixture(scope="session")
def tiny_onnx(tiny_quantized, tmp_path_factory):
    """tiny W3A8 as int8 (QCDQ) and its float twin, both with dynamic axes."""
    quantized, floating = tiny_quantized
    out = tmp_path_factory.mktemp("tiny_onnx")
    example = example_inputs(quantized, LENGTHS[0])
    paths = {"int8": out / "tiny.int8.onnx", "float": out / "tiny.float.onnx"}
    save_onnx(onnx_export.export_qcdq(exportable(quantized), example), paths["int8"])
    save_onnx(onnx_export.export_float(exportable(floating), example), paths["float"])
    return paths


@pytest.fixture(scope="session")
def micro_report(tmp_path_factory):
    """The whole pipeline (all three files, report) on tiny without the context codec and with one
    layer per block, with the opt-in check by qonnx's executor (--check-qonnx)."""
    from limuse_export.pipeline import export_all
    from limuse_export.sources import _pair
    from limuse_edge.checkpoint import build_model
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = get_preset("tiny").replace(context_codec=False, audio_layers=1, fusion_layers=1)
    source = _pair("micro", build_model(config, "w3a8"), False, "micro test model")
    out = tmp_path_factory.mktemp("micro")
    utterances = [synthetic_utterance("a", 2000, 1), synthetic_utterance("b", 2000, 2),
                  synthetic_utterance("c", 2600, 3)]
    return export_all(source, out, utterances, log=lambda _: None, check_qonnx=True), out
