"""Torch-side preparation of a LiMuSE model for ONNX export. Pure functions: a model in, a new model out.

The TorchScript exporter cannot export F.layer_norm over x.shape[-2:] when the time axis is dynamic
(normalized_shape would be data dependent). EXPORT_MODULES declares what `exportable` traces in place of
which module: every GroupNormChannelsLast becomes a MeanVarianceGroupNorm, the same statistics written as
means, which trace with a dynamic time axis; limuse_export.passes.optimize then fuses that arithmetic back into
InstanceNormalization.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn as nn

from limuse_edge.model import LiMuSE
from limuse_edge.model.blocks import NORM_EPS, GroupNormChannelsLast
from limuse_edge.model.limuse import example_inputs  # noqa: F401 (the export's example inputs)
from limuse_runtime.contract import INPUT_NAMES, MIXTURE


class MeanVarianceGroupNorm(nn.Module):
    """GroupNormChannelsLast's arithmetic as means and variances; it shares the norm's parameters."""

    def __init__(self, norm: GroupNormChannelsLast):
        super().__init__()
        self.weight, self.bias = norm.weight, norm.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean((-2, -1), keepdim=True)
        var = (x - mean).pow(2).mean((-2, -1), keepdim=True)
        return (x - mean) / torch.sqrt(var + NORM_EPS) * self.weight + self.bias


# Module type -> the module traced in its place, built from it. Exact types: a subclass keeps its forward.
EXPORT_MODULES: dict[type, Callable[[nn.Module], nn.Module]] = {GroupNormChannelsLast: MeanVarianceGroupNorm}


class OnnxInterface(nn.Module):
    """Positional inputs in the ONNX contract's order, only the cues the model has."""

    def __init__(self, model: LiMuSE):
        super().__init__()
        self.model = model
        self.input_names = [n for n in INPUT_NAMES if n == MIXTURE or n in model.config.cues]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.input_names, inputs)))


def exportable(model: LiMuSE) -> OnnxInterface:
    """`model` in eval mode, EXPORT_MODULES substituted, behind the positional ONNX interface; `model` itself
    stays as it was. Only the modules on the way to a substitute, or in training mode, are copied (shallow);
    the rest are shared: a deep copy of a Brevitas model costs seconds (5 s for limuse_k32, once per file),
    and exporting changes no parameter (onnx_export removes the handlers Brevitas attaches)."""
    return OnnxInterface(_substituted(model)).eval()


def _substituted(module: nn.Module) -> nn.Module:
    substitute = EXPORT_MODULES.get(type(module))
    if substitute is not None:
        return substitute(module).eval()
    children = {name: None if child is None else _substituted(child) for name, child in module._modules.items()}
    if not module.training and all(children[name] is child for name, child in module._modules.items()):
        return module
    copied = copy.copy(module)
    copied._modules = children
    copied.training = False
    return copied
