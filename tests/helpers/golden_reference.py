"""The Brevitas reference of the golden-engine tests and benchmarks: calibrated power-of-two models and their
QONNX export by the project's pipeline, random and demo inputs. The integer codes Brevitas's quantizer
proxies produce (hooks) and their comparison with the engine's, layer by layer, are the export's own
check (limuse_export.checks.golden_check), re-exported here. Imported by tests/runtime and benchmarks alike."""
from __future__ import annotations

import numpy as np
import torch

from limuse_export.checks.golden_check import (brevitas_codes, compare_codes, hook_quant_layers,  # noqa: F401
                                        layer_names, same_layout)
from limuse_edge.metrics import si_sdr as _si_sdr
from limuse_edge.model.limuse import example_inputs
from limuse_runtime.contract import MIXTURE, VISUAL, VOICEPRINT, n_video_frames

SAMPLES, VIDEO_FRAMES = 800, 10
INT32_MAX = 2 ** 31 - 1
PO2_PRETRAINED = "limuse_k32_w3a8_po2"


def calibrated_po2_model(preset: str, recipe: str = "w3a8-po2", passes: int = 3, samples: int = SAMPLES,
                         video_frames: int = VIDEO_FRAMES):
    """A quantized model whose activation scales come from calibration on random input (no training)."""
    from limuse_edge.checkpoint import build_model
    from limuse_edge.quant import calibrate
    torch.manual_seed(0)
    model = build_model(preset, recipe).eval()
    calibrate(model, [golden_inputs(model, samples, video_frames, seed=100 + seed) for seed in range(passes)])
    return model.eval()


def golden_inputs(model, samples: int = SAMPLES, video_frames: int = VIDEO_FRAMES, seed: int = 0) -> dict:
    """{input name: tensor}, batch 1, in the ONNX contract's names: the model's example inputs
    (limuse_edge.model.limuse.example_inputs) at amplitude 0.3, `video_frames` frames, every input drawn."""
    return example_inputs(model, samples, seed, scale=0.3, video_frames=video_frames, cues=(VOICEPRINT, VISUAL))


def export_qonnx(model, inputs: dict, path):
    """The project's QONNX export (fixed shape of `inputs`, qonnx-cleaned), written to `path`."""
    from limuse_export.pipeline import export_onnx
    from limuse_export.prepare import exportable
    from limuse_export.save import save_onnx
    save_onnx(export_onnx("qonnx", exportable(model), inputs), path)
    return path


def calibrated_qonnx(path, preset: str = "tiny", recipe: str = "w3a8-po2", samples: int = SAMPLES,
                     video_frames: int = VIDEO_FRAMES, seed: int = 1) -> tuple:
    """(model, inputs, path): calibrated_po2_model, example inputs of that length (seed `seed`) and the
    project's QONNX export of the model at their shape, written to `path`."""
    model = calibrated_po2_model(preset, recipe, samples=samples, video_frames=video_frames)
    inputs = golden_inputs(model, samples, video_frames, seed=seed)
    return model, inputs, export_qonnx(model, inputs, path)


def numpy_inputs(inputs: dict) -> dict:
    return {name: value.numpy() for name, value in inputs.items()}


def demo_inputs(samples: int) -> tuple[dict, np.ndarray]:
    """The bundled demo sample's first `samples` samples and matching 25 fps frames, and its target."""
    from limuse_export.demo_sample import load_demo
    demo = load_demo()
    frames = n_video_frames(samples)
    if demo.mixture.shape[1] < samples or demo.visual.shape[0] < frames:
        raise AssertionError(f"demo sample: {demo.mixture.shape[1]} samples; this benchmark needs {samples}")
    inputs = {MIXTURE: demo.mixture[None, :, :samples], VOICEPRINT: demo.voiceprint[None],
              VISUAL: demo.visual[None, :frames]}
    return {k: torch.from_numpy(np.ascontiguousarray(v, np.float32)) for k, v in inputs.items()}, demo.target[:samples]


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """limuse_edge.metrics.si_sdr of one signal against another (any shapes of the same size), as a float."""
    return float(_si_sdr(np.ravel(estimate), np.ravel(reference)))
