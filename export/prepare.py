"""Torch-side preparation of a LiMuSE model for ONNX export. Pure functions: a model in, a new model out.

The TorchScript exporter cannot export F.layer_norm over x.shape[-2:] when the time axis is dynamic
(normalized_shape would be data dependent). `exportable` swaps every GroupNormChannelsLast for the same
statistics written as means, which trace with a dynamic time axis; limuse_export.optimize then fuses
that arithmetic back into InstanceNormalization.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from limuse_edge import quant
from limuse_edge.config import SAMPLE_RATE, VISUAL_DIM, VOICEPRINT_DIM
from limuse_edge.model import LiMuSE
from limuse_edge.model.blocks import NORM_EPS, GroupNormChannelsLast

INPUT_NAMES = ("mixture", "voiceprint", "visual")
OUTPUT_NAME = "target"
DYNAMIC_AXES = {"mixture": {0: "batch", 2: "samples"}, "voiceprint": {0: "batch"},
                "visual": {0: "batch", 1: "frames"}, "target": {0: "batch", 1: "samples"}}
VIDEO_FPS = 25


class _ExportableGroupNorm(GroupNormChannelsLast):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean((-2, -1), keepdim=True)
        var = (x - mean).pow(2).mean((-2, -1), keepdim=True)
        return (x - mean) / torch.sqrt(var + NORM_EPS) * self.weight + self.bias


class OnnxInterface(nn.Module):
    """Positional inputs in the ONNX contract's order, only the cues the model has."""

    def __init__(self, model: LiMuSE):
        super().__init__()
        self.model = model
        self.input_names = ["mixture", *[c for c in ("voiceprint", "visual") if c in model.config.cues]]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.input_names, inputs)))


def exportable(model: LiMuSE) -> OnnxInterface:
    """A deep copy in eval mode, norms rewritten for tracing, behind the positional ONNX interface."""
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if type(module) is GroupNormChannelsLast:
            module.__class__ = _ExportableGroupNorm
    return OnnxInterface(model)


def example_inputs(model: LiMuSE, n_samples: int, seed: int = 0, batch: int = 1) -> dict[str, torch.Tensor]:
    """Random inputs of the contract's shapes: `n_samples` audio samples and the matching 25 fps frames."""
    cfg = model.config
    gen = torch.Generator().manual_seed(seed)
    inputs = {"mixture": 0.1 * torch.randn(batch, cfg.mic_channels, n_samples, generator=gen)}
    if "voiceprint" in cfg.cues:
        inputs["voiceprint"] = torch.randn(batch, VOICEPRINT_DIM, generator=gen)
    if "visual" in cfg.cues:
        frames = max(1, -(-n_samples * VIDEO_FPS // SAMPLE_RATE))
        inputs["visual"] = torch.randn(batch, frames, VISUAL_DIM, generator=gen)
    return inputs


def calibrate(model: LiMuSE, batches: list[dict[str, torch.Tensor]]) -> LiMuSE:
    """A copy whose activation quantizers are calibrated on `batches` (for untrained quantized models:
    without it Brevitas would export scales that were never fitted). Float models come back unchanged."""
    model = copy.deepcopy(model).eval()
    if model.recipe.quantized:
        quant.calibrate(model, batches)
    return model
