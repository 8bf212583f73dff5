"""The layer factory: the conv, linear and norm layers a quantization recipe (limuse_edge/quant.py) asks
for, float or Brevitas. `edge` marks the first and last quantized layers (the recipe's -edge{b} bits)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from limuse_edge.model import fast
from limuse_edge.quant import QuantRecipe

NORM_EPS = 1e-8


class GroupNormChannelsLast(nn.Module):
    """GroupNorm with one group on channels-last (batch, time, channels): statistics over time and
    channels of each sample, per-channel affine. Same parameters as nn.GroupNorm(1, channels)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if fast.active():
            return fast.group_norm(x, self.weight, self.bias, -1, NORM_EPS)
        return F.layer_norm(x, x.shape[-2:], eps=NORM_EPS) * self.weight + self.bias


class CumulativeLayerNorm(nn.Module):
    """Conv-TasNet's cumulative layer norm (cLN), the causal form of the one-group norm: frame t is
    normalised with the mean and variance over the channels of frames 0..t, per-channel affine. On
    (B, C, T), or channels-last (B, T, C) with channels_last. Same parameters as nn.GroupNorm(1, channels)
    and GroupNormChannelsLast, so an offline model's state dict loads into it. Float only: the integer form
    (recipe -inorm) is not written yet."""

    def __init__(self, channels: int, channels_last: bool = False):
        super().__init__()
        self.channels_last = channels_last
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channel_axis, time_axis = (2, 1) if self.channels_last else (1, 2)
        count = torch.arange(1, x.shape[time_axis] + 1, dtype=x.dtype, device=x.device) * x.shape[channel_axis]
        count = count.view(-1, 1) if self.channels_last else count
        mean = x.sum(channel_axis, keepdim=True).cumsum(time_axis) / count
        power = (x * x).sum(channel_axis, keepdim=True).cumsum(time_axis) / count
        var = (power - mean * mean).clamp_min(0)
        shape = (1, 1, -1) if self.channels_last else (1, -1, 1)
        return (x - mean) / torch.sqrt(var + NORM_EPS) * self.weight.view(shape) + self.bias.view(shape)


def conv1d(recipe: QuantRecipe, in_channels, out_channels, kernel_size, *, stride=1, padding=0, dilation=1,
           groups=1, edge=False) -> nn.Module:
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, bias=True)
    if not recipe.quantized:
        return nn.Conv1d(in_channels, out_channels, kernel_size, **kw)
    from brevitas.nn import QuantConv1d
    return QuantConv1d(in_channels, out_channels, kernel_size, **kw, **_quant_kwargs(recipe, edge))


def linear(recipe: QuantRecipe, in_features, out_features, *, edge=False) -> nn.Module:
    if not recipe.quantized:
        return nn.Linear(in_features, out_features)
    from brevitas.nn import QuantLinear
    return QuantLinear(in_features, out_features, bias=True, **_quant_kwargs(recipe, edge))


def group_norm(recipe: QuantRecipe, channels: int, channels_last: bool = False) -> nn.Module:
    """One-group normalisation with per-channel affine: gLN on (B, C, T), or on channels-last
    (B, T, C) data."""
    if recipe.integer_norm:
        from limuse_edge.model.integer_norm import IntegerGroupNorm
        _, act_quant = quantizers(recipe)
        return IntegerGroupNorm(channels, -1 if channels_last else 1, act_quant, recipe.act_bits)
    return GroupNormChannelsLast(channels) if channels_last else nn.GroupNorm(1, channels, eps=NORM_EPS)


def cumulative_norm(recipe: QuantRecipe, channels: int, channels_last: bool = False) -> nn.Module:
    """The causal twin of group_norm: a cumulative layer norm on (B, C, T) or channels-last (B, T, C)."""
    if recipe.integer_norm:
        raise ValueError(f"causal: integer cumulative norm not supported yet (recipe {recipe.name!r}); "
                         f"expected a recipe without -inorm, e.g. 'w3a8' or 'w3a8-po2'")
    return CumulativeLayerNorm(channels, channels_last)


def norm(recipe: QuantRecipe, channels: int, channels_last: bool = False, causal: bool = False) -> nn.Module:
    """group_norm, or its causal twin cumulative_norm."""
    if causal:
        return cumulative_norm(recipe, channels, channels_last)
    return group_norm(recipe, channels, channels_last)


def _quant_kwargs(recipe: QuantRecipe, edge: bool) -> dict:
    from brevitas.quant import Int32Bias
    weight_quant, act_quant = quantizers(recipe)
    bits = recipe.edge_bits if (edge and recipe.edge_bits is not None) else recipe.weight_bits
    return dict(weight_quant=weight_quant, weight_bit_width=bits,
                input_quant=act_quant, input_bit_width=recipe.act_bits,
                output_quant=act_quant, output_bit_width=recipe.act_bits,
                bias_quant=Int32Bias, return_quant_tensor=False)


def quantizers(recipe: QuantRecipe) -> tuple:
    """The Brevitas (weight, activation) quantizer classes of the recipe's options."""
    from brevitas.core.scaling import ScalingImplType
    from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerChannelFloat, Int8WeightPerTensorFloat
    from brevitas.quant.fixed_point import (Int8ActPerTensorFixedPoint, Int8WeightPerChannelFixedPoint,
                                            Int8WeightPerTensorFixedPoint)
    if recipe.power_of_two:
        weight = Int8WeightPerChannelFixedPoint if recipe.per_channel else Int8WeightPerTensorFixedPoint
        act = Int8ActPerTensorFixedPoint
    else:
        weight = Int8WeightPerChannelFloat if recipe.per_channel else Int8WeightPerTensorFloat
        act = Int8ActPerTensorFloat
    if recipe.learned_weight_scale:
        weight = weight.let(scaling_impl_type=ScalingImplType.PARAMETER_FROM_STATS)
    # IntQuant as Brevitas has it, with a one-pass fake quantization while training's fast kernels are on.
    from limuse_edge.model.fast_quant import IntQuantFast
    return weight.let(int_quant=IntQuantFast), act.let(int_quant=IntQuantFast)
