"""Quantization recipes: one declarative object decides how every conv and linear layer is built.

The model asks the recipe for its layers; it never knows whether they are float or Brevitas layers.
A quantized layer quantizes its own input (8-bit), its weights (b-bit), its bias (int32 at the
input-scale x weight-scale) and its output (8-bit). The output quantizer is what lets onnxruntime fuse
the exported QDQ pattern into QLinearConv / QGemm.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import torch.nn as nn

_SPEC = re.compile(r"^w(?P<w>\d+)a(?P<a>\d+)(?P<opts>(-(pc|po2|stats|inorm|edge\d+))*)$")


@dataclass(frozen=True)
class QuantRecipe:
    weight_bits: int | None = None  # None: float model
    act_bits: int = 8
    per_channel: bool = False  # one weight scale per output channel instead of per layer
    power_of_two: bool = False  # 2^-k scales everywhere, for integer-only (shift) deployment
    learned_weight_scale: bool = True  # scale initialised from max|w| then trained; False keeps max|w|
    edge_bits: int | None = None  # weight bits of the first (encoder) and last (mask) layers
    integer_norm: bool = False  # gLN / GroupNorm with integer statistics (model/integer_norm.py)

    def __post_init__(self):
        if self.weight_bits is not None and not 2 <= self.weight_bits <= 8:
            raise ValueError(f"recipe: weight bits {self.weight_bits} out of range; expected 2..8")
        if not 2 <= self.act_bits <= 8:
            raise ValueError(f"recipe: activation bits {self.act_bits} out of range; expected 2..8")
        if self.edge_bits is not None and not 2 <= self.edge_bits <= 8:
            raise ValueError(f"recipe: edge bits {self.edge_bits} out of range; expected 2..8")
        if self.integer_norm and not self.quantized:
            raise ValueError("recipe: integer normalisation needs a quantized recipe (e.g. 'w3a8-po2-inorm')")

    @property
    def quantized(self) -> bool:
        return self.weight_bits is not None

    @property
    def name(self) -> str:
        if not self.quantized:
            return "float"
        opts = ""
        if self.per_channel:
            opts += "-pc"
        if self.power_of_two:
            opts += "-po2"
        if not self.learned_weight_scale:
            opts += "-stats"
        if self.integer_norm:
            opts += "-inorm"
        if self.edge_bits is not None:
            opts += f"-edge{self.edge_bits}"
        return f"w{self.weight_bits}a{self.act_bits}{opts}"

    @classmethod
    def parse(cls, spec: str) -> "QuantRecipe":
        """'float', 'w3a8' (the paper's), 'w{b}a{a}' with options -pc, -po2, -stats, -inorm, -edge{b}."""
        if spec == "float":
            return cls()
        m = _SPEC.match(spec)
        if not m:
            raise ValueError(f"recipe: unknown {spec!r}; expected 'float' or 'w{{2..8}}a{{2..8}}' "
                             f"with options -pc, -po2, -stats, -inorm, -edge{{bits}} (e.g. 'w3a8', 'w4a8-pc-po2')")
        opts = [o for o in m["opts"].split("-") if o]
        edge = [int(o[4:]) for o in opts if o.startswith("edge")]
        return cls(weight_bits=int(m["w"]), act_bits=int(m["a"]), per_channel="pc" in opts,
                   power_of_two="po2" in opts, learned_weight_scale="stats" not in opts,
                   edge_bits=edge[0] if edge else None, integer_norm="inorm" in opts)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "QuantRecipe":
        return cls(**d)

    # Layer factories. `edge` marks the first and last quantized layers.
    def conv1d(self, in_channels, out_channels, kernel_size, *, stride=1, padding=0, dilation=1,
               groups=1, edge=False) -> nn.Module:
        kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, bias=True)
        if not self.quantized:
            return nn.Conv1d(in_channels, out_channels, kernel_size, **kw)
        from brevitas.nn import QuantConv1d
        return QuantConv1d(in_channels, out_channels, kernel_size, **kw, **self._quant_kwargs(edge))

    def linear(self, in_features, out_features, *, edge=False) -> nn.Module:
        if not self.quantized:
            return nn.Linear(in_features, out_features)
        from brevitas.nn import QuantLinear
        return QuantLinear(in_features, out_features, bias=True, **self._quant_kwargs(edge))

    def group_norm(self, channels: int, channels_last: bool = False) -> nn.Module:
        """One-group normalisation with per-channel affine: gLN on (B, C, T), or on channels-last
        (B, T, C) data."""
        if self.integer_norm:
            from limuse_edge.model.integer_norm import IntegerGroupNorm
            _, act_quant = _quantizers(self.per_channel, self.power_of_two, self.learned_weight_scale)
            return IntegerGroupNorm(channels, -1 if channels_last else 1, act_quant, self.act_bits)
        from limuse_edge.model.blocks import NORM_EPS, GroupNormChannelsLast
        return GroupNormChannelsLast(channels) if channels_last else nn.GroupNorm(1, channels, eps=NORM_EPS)

    def _quant_kwargs(self, edge: bool) -> dict:
        from brevitas.quant import Int32Bias
        weight_quant, act_quant = _quantizers(self.per_channel, self.power_of_two, self.learned_weight_scale)
        bits = self.edge_bits if (edge and self.edge_bits is not None) else self.weight_bits
        return dict(weight_quant=weight_quant, weight_bit_width=bits,
                    input_quant=act_quant, input_bit_width=self.act_bits,
                    output_quant=act_quant, output_bit_width=self.act_bits,
                    bias_quant=Int32Bias, return_quant_tensor=False)


FLOAT = QuantRecipe()
W3A8 = QuantRecipe(weight_bits=3, act_bits=8)


def get_recipe(recipe: "str | QuantRecipe") -> QuantRecipe:
    return recipe if isinstance(recipe, QuantRecipe) else QuantRecipe.parse(recipe)


def is_quant_layer(module: nn.Module) -> bool:
    from brevitas.nn.quant_layer import QuantWeightBiasInputOutputLayer
    return isinstance(module, QuantWeightBiasInputOutputLayer)


def is_quantizer_name(name: str) -> bool:
    """Whether a parameter or state-dict key belongs to a Brevitas quantizer (input_quant, weight_quant,
    bias_quant, output_quant, act_quant, ...): one of its dotted parts ends in "_quant"."""
    return any(part.endswith("_quant") for part in name.split("."))


def _quantizers(per_channel: bool, power_of_two: bool, learned: bool):
    from brevitas.core.scaling import ScalingImplType
    from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerChannelFloat, Int8WeightPerTensorFloat
    from brevitas.quant.fixed_point import (Int8ActPerTensorFixedPoint, Int8WeightPerChannelFixedPoint,
                                            Int8WeightPerTensorFixedPoint)
    if power_of_two:
        weight = Int8WeightPerChannelFixedPoint if per_channel else Int8WeightPerTensorFixedPoint
        act = Int8ActPerTensorFixedPoint
    else:
        weight = Int8WeightPerChannelFloat if per_channel else Int8WeightPerTensorFloat
        act = Int8ActPerTensorFloat
    if learned:
        weight = weight.let(scaling_impl_type=ScalingImplType.PARAMETER_FROM_STATS)
    # IntQuant as Brevitas has it, with a one-pass fake quantization while training's fast kernels are on.
    from limuse_edge.model.fast_quant import IntQuantFast
    return weight.let(int_quant=IntQuantFast), act.let(int_quant=IntQuantFast)


def calibrate(model: nn.Module, batches) -> None:
    """Fit the activation quantizers of `model` (in place) on `batches`, each a dict of its keyword inputs.
    Untrained quantizers would otherwise export scales that were never fitted."""
    import torch
    from brevitas.graph.calibrate import calibration_mode
    with torch.no_grad(), calibration_mode(model):
        for batch in batches:
            model(**batch)
