"""Test fixtures: ONNX exports of small LiMuSE models (tests may use torch; the runtime may not).

Stands in for limuse_export until its exporter is committed: same contract (inputs mixture, voiceprint,
visual; output target; batch, samples and frames dynamic), TorchScript exporter, Brevitas QCDQ for
quantized recipes with keep_initializers_as_inputs=False.
"""
from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import torch

from limuse_edge.checkpoint import build_model
from limuse_edge.model import blocks

INPUTS = ("mixture", "voiceprint", "visual")


@contextlib.contextmanager
def exportable_group_norm():
    """F.layer_norm over x.shape[-2:] has a data-dependent normalized_shape that the TorchScript exporter
    refuses with a dynamic time axis; the same statistics written as means export fine."""
    original = blocks.GroupNormChannelsLast.forward

    def forward(self, x):
        mean = x.mean((-2, -1), keepdim=True)
        var = (x - mean).pow(2).mean((-2, -1), keepdim=True)
        return (x - mean) / torch.sqrt(var + blocks.NORM_EPS) * self.weight + self.bias

    blocks.GroupNormChannelsLast.forward = forward
    try:
        yield
    finally:
        blocks.GroupNormChannelsLast.forward = original


def example_inputs(model, seconds: float = 1.0, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    n = int(seconds * 16000)
    mixture = 0.1 * torch.randn(1, cfg.mic_channels, n, generator=g)
    voiceprint = torch.randn(1, 512, generator=g) if "voiceprint" in cfg.cues else None
    visual = torch.randn(1, -(-n // 640), 256, generator=g) if "visual" in cfg.cues else None
    return mixture, voiceprint, visual


def export(model, path: Path) -> Path:
    """Exports `model` (eval mode, quantizers calibrated) to `path` with the runtime's contract."""
    model.eval()
    args = example_inputs(model)
    names = [name for name, arg in zip(INPUTS, args) if arg is not None]
    args = tuple(arg for arg in args if arg is not None)
    if len(names) < 3:  # the model takes cues by keyword; positional export needs a wrapper
        model = _Positional(model, names)
    dynamic = {"mixture": {0: "batch", 2: "samples"}, "voiceprint": {0: "batch"},
               "visual": {0: "batch", 1: "frames"}, "target": {0: "batch", 1: "samples"}}
    dynamic = {k: v for k, v in dynamic.items() if k in names or k == "target"}
    kwargs = dict(input_names=names, output_names=["target"], dynamic_axes=dynamic, opset_version=17, dynamo=False)
    with exportable_group_norm(), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer chatter about the model's input checks
        if getattr(model, "recipe", getattr(getattr(model, "inner", None), "recipe", None)).quantized:
            from brevitas.export import export_onnx_qcdq
            export_onnx_qcdq(model, args=args, export_path=str(path), keep_initializers_as_inputs=False, **kwargs)
        else:
            torch.onnx.export(model, args, str(path), **kwargs)
    return path


class _Positional(torch.nn.Module):
    def __init__(self, inner, names):
        super().__init__()
        self.inner, self.names = inner, names

    @property
    def recipe(self):
        return self.inner.recipe

    def forward(self, *args):
        return self.inner(**dict(zip(self.names, args)))


def build_calibrated(preset, recipe: str, seed: int = 0):
    """A randomly initialised model whose activation quantizers are calibrated on one example and
    frozen (without calibration, Brevitas recomputes percentile statistics at every eval forward)."""
    torch.manual_seed(seed)
    model = build_model(preset, recipe).eval()
    with torch.no_grad():
        example = example_inputs(model, seed=seed)
        if model.recipe.quantized:
            from brevitas.graph.calibrate import calibration_mode
            with calibration_mode(model):
                model(*example)
        model(*example)
    return model
