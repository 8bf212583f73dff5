"""Quantization recipes: one declarative object decides how every conv and linear layer is built.

The recipe is data (bit widths and options, its name, its dict form); the layers it asks for are built by
the model's layer factory, limuse_edge/model/layers.py, so the model never knows whether they are float or
Brevitas layers. A quantized layer quantizes its own input (8-bit), its weights (b-bit), its bias (int32
at the input-scale x weight-scale) and its output (8-bit). The output quantizer is what lets onnxruntime
fuse the exported QDQ pattern into QLinearConv / QGemm.

This module imports no other module of the project (tests/test_layers.py).
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

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


FLOAT = QuantRecipe()
W3A8 = QuantRecipe(weight_bits=3, act_bits=8)


def get_recipe(recipe: "str | QuantRecipe") -> QuantRecipe:
    return recipe if isinstance(recipe, QuantRecipe) else QuantRecipe.parse(recipe)


def is_quant_layer(module: "torch.nn.Module") -> bool:
    from brevitas.nn.quant_layer import QuantWeightBiasInputOutputLayer
    return isinstance(module, QuantWeightBiasInputOutputLayer)


def is_quantizer_name(name: str) -> bool:
    """Whether a parameter or state-dict key belongs to a Brevitas quantizer (input_quant, weight_quant,
    bias_quant, output_quant, act_quant, ...): one of its dotted parts ends in "_quant"."""
    return any(part.endswith("_quant") for part in name.split("."))


def calibrate(model: "torch.nn.Module", batches) -> None:
    """Fit the activation quantizers of `model` (in place) on `batches`, each a dict of its keyword inputs.
    Untrained quantizers would otherwise export scales that were never fitted."""
    import torch
    from brevitas.graph.calibrate import calibration_mode
    with torch.no_grad(), calibration_mode(model):
        for batch in batches:
            model(**batch)
