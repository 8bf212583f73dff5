"""Params, quantized weights, model size and MACs of a LiMuSE network, counted from the model itself.

Sizes follow the spec's convention (../shared/spec/limuse.md, "Size and MAC conventions"): quantized
weights at their bit width, every other parameter plus the scales of each quantized layer (its weight
scales and one input-activation scale) at 32 bits, in MiB. MACs come from forward hooks, so they follow
the shapes each layer really sees, in the network as the spec writes it (see `as_written`):

- core: multiply-accumulates of the weights of every conv, transposed conv and linear layer;
- paper-style: core + 1 op per output element of every bias add and every activation (PReLU, ReLU,
  sigmoid), + 2 per output element of every normalisation (gLN, GroupNorm).
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn

from limuse_edge.model import LiMuSE
from limuse_edge.model.blocks import TAC, ContextCodec, GroupNormChannelsLast
from limuse_edge.model.layers import CumulativeLayerNorm
from limuse_edge.model.limuse import example_inputs
from limuse_edge.model.integer_norm import IntegerGroupNorm
from limuse_edge.quant import is_quant_layer, is_quantizer_name
from limuse_runtime.contract import SAMPLE_RATE

FLOAT_BITS = 32
MIB = 2 ** 20


@dataclass
class Counts:
    """What one part of the network (or the whole of it) holds and costs."""

    params: int = 0
    quantized_weights: int = 0
    macs_core: int = 0
    macs_paper_style: int = 0


@dataclass
class Profile:
    preset: str
    recipe: str
    input_samples: int
    params: int
    quantizer_params: int  # Brevitas scale parameters, not part of the network's parameter count
    quantized_layers: int
    quantized_weights: int
    fp32_size_mib: float
    size_mib: float  # ideal size under the recipe; equals fp32_size_mib for a float model
    macs_core: int
    macs_paper_style: int
    parts: dict[str, Counts] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


# --- MAC counters: one per layer type, (module, input, output) -> (core MACs, other ops) -------------

def _conv(m: nn.Conv1d, x: torch.Tensor, y: torch.Tensor) -> tuple[int, int]:
    macs = y.numel() * (m.in_channels // m.groups) * m.kernel_size[0]
    return macs, _bias_ops(m, y)


def _conv_transpose(m: nn.ConvTranspose1d, x: torch.Tensor, y: torch.Tensor) -> tuple[int, int]:
    # every input element meets one kernel column per output channel of its group
    macs = x.numel() * (m.out_channels // m.groups) * m.kernel_size[0]
    return macs, _bias_ops(m, y)


def _linear(m: nn.Linear, x: torch.Tensor, y: torch.Tensor) -> tuple[int, int]:
    return y.numel() * m.in_features, _bias_ops(m, y)


def _activation(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[int, int]:
    return 0, y.numel()


def _normalisation(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[int, int]:
    return 0, 2 * y.numel()


def _bias_ops(m: nn.Module, y: torch.Tensor) -> int:
    return y.numel() if getattr(m, "bias", None) is not None else 0


# Brevitas QuantConv1d / QuantLinear subclass the torch layers, so the lookup walks the MRO.
OP_COUNTERS = {
    nn.Conv1d: _conv,
    nn.ConvTranspose1d: _conv_transpose,
    nn.Linear: _linear,
    nn.PReLU: _activation,
    nn.ReLU: _activation,
    nn.Sigmoid: _activation,
    nn.GroupNorm: _normalisation,
    GroupNormChannelsLast: _normalisation,
    IntegerGroupNorm: _normalisation,
    CumulativeLayerNorm: _normalisation,
}


def _counter_for(module: nn.Module):
    return next((OP_COUNTERS[t] for t in type(module).__mro__ if t in OP_COUNTERS), None)


# --- parts and parameters -------------------------------------------------------------------------

def parts_of(model: LiMuSE) -> dict[str, nn.Module]:
    """The model's top-level modules; a stage with a context codec splits into its context encoder,
    main block and context decoder, the granularity of the spec's per-part parameter counts."""
    parts = {}
    for name, child in model.named_children():
        if isinstance(child, ContextCodec):
            parts.update({f"{name}.{sub}": grandchild for sub, grandchild in child.named_children()})
        else:
            parts[name] = child
    return parts


def network_params(module: nn.Module) -> int:
    """Parameters of the network proper: weights, biases, PReLU slopes, norm affines (not quantizer scales)."""
    return sum(p.numel() for name, p in module.named_parameters() if not is_quantizer_name(name))


def quantized_layers(model: LiMuSE) -> list[nn.Module]:
    """The layers whose weights the recipe quantizes. For a float model, those a recipe *would*
    quantize: every conv and linear except the transposed-conv decoder."""
    if model.recipe.quantized:
        return [m for m in model.modules() if is_quant_layer(m)]
    return [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Linear))]


def ideal_size_bits(model: LiMuSE) -> int:
    """The spec's size convention: b-bit quantized weights, 32-bit everything else, plus per quantized
    layer its weight scale(s) and one activation scale at 32 bits."""
    params = network_params(model)
    if not model.recipe.quantized:
        return params * FLOAT_BITS
    bits, weights, scales = 0, 0, 0
    with torch.no_grad():
        for layer in quantized_layers(model):
            quant_weight = layer.quant_weight()
            bits += layer.weight.numel() * int(quant_weight.bit_width)
            weights += layer.weight.numel()
            scales += quant_weight.scale.numel() + 1
    return bits + (params - weights + scales) * FLOAT_BITS


# --- the profile ----------------------------------------------------------------------------------

def as_written(model: LiMuSE) -> LiMuSE:
    """A copy that computes the network as the spec writes it. The float TAC takes an exact shortcut
    (the mean's half of its output layer once per frame, not once per group) that bypasses the layer's
    forward; the paper's figures, the quantized models and the exported graphs all use the written form."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, TAC):
            module.split_concat = False
    return model


def count_macs(model: LiMuSE, n_samples: int) -> dict[str, tuple[int, int]]:
    """(core MACs, other ops) per part for one batch-1 forward of `n_samples` samples, as written.
    A quantized model is counted on a float model of its config: the recipe changes no layer's shape or
    op count (tests/test_profile.py checks every recipe family on tiny), and the float forward is 7x
    faster than Brevitas's fake quantization at 3 s of limuse_k32."""
    if model.recipe.quantized:
        from limuse_edge.checkpoint import build_model
        model = build_model(model.config, "float")
    return counted_forward(as_written(model).eval(), n_samples)


def counted_forward(model: LiMuSE, n_samples: int) -> dict[str, tuple[int, int]]:
    """count_macs's hooks on `model` itself (they stay registered: pass a throw-away copy)."""
    totals = {}

    def hook_for(part, counter):
        def hook(module, inputs, output):
            x = getattr(inputs[0], "value", inputs[0])  # a Brevitas QuantTensor carries its tensor in .value
            y = getattr(output, "value", output)
            core, other = counter(module, x, y)
            before = totals.get(part, (0, 0))
            totals[part] = (before[0] + core, before[1] + other)
        return hook

    for part, module in parts_of(model).items():
        for sub in module.modules():
            counter = _counter_for(sub)
            if counter is not None:
                sub.register_forward_hook(hook_for(part, counter))  # on a throw-away copy
    with torch.no_grad():
        model(**example_inputs(model, n_samples, scale=1.0))
    return totals


def profile_model(model: LiMuSE, n_samples: int, preset: str = "custom") -> Profile:
    """Profile `model` for one batch-1 input of `n_samples` samples (the paper's: 48 000, 3 s)."""
    if not isinstance(n_samples, int) or n_samples < model.config.filter_length:
        raise ValueError(f"n_samples: got {n_samples!r}; expected an integer >= "
                         f"{model.config.filter_length} (one encoder filter)")
    macs = count_macs(model, n_samples)
    quantized = {id(m) for m in quantized_layers(model)}
    parts = {}
    for name, module in parts_of(model).items():
        core, other = macs.get(name, (0, 0))
        weights = sum(m.weight.numel() for m in module.modules() if id(m) in quantized)
        counts = Counts(network_params(module), weights, core, core + other)
        if counts != Counts():  # e.g. an Identity mask activation: nothing to report
            parts[name] = counts
    params = network_params(model)
    return Profile(
        preset=preset,
        recipe=model.recipe.name,
        input_samples=n_samples,
        params=params,
        quantizer_params=sum(p.numel() for p in model.parameters()) - params,
        quantized_layers=len(quantized),
        quantized_weights=sum(p.quantized_weights for p in parts.values()),
        fp32_size_mib=params * FLOAT_BITS / 8 / MIB,
        size_mib=ideal_size_bits(model) / 8 / MIB,
        macs_core=sum(p.macs_core for p in parts.values()),
        macs_paper_style=sum(p.macs_paper_style for p in parts.values()),
        parts=parts,
    )


def profile_preset(preset: str, recipe: str = "float", n_samples: int = 3 * SAMPLE_RATE) -> Profile:
    from limuse_edge.checkpoint import build_model
    return profile_model(build_model(preset, recipe), n_samples, preset=preset)


def format_profile(profile: Profile) -> str:
    """A plain-text report: the totals, then one row per part."""
    seconds = profile.input_samples / SAMPLE_RATE
    lines = [
        f"preset {profile.preset}, recipe {profile.recipe}, input {profile.input_samples} samples "
        f"({seconds:g} s at {SAMPLE_RATE} Hz), batch 1",
        f"params             {profile.params:>14,}",
        f"quantizer params   {profile.quantizer_params:>14,}",
        f"quantized layers   {profile.quantized_layers:>14,}",
        f"quantized weights  {profile.quantized_weights:>14,}",
        f"fp32 size          {profile.fp32_size_mib:>14.3f} MiB",
        f"ideal size         {profile.size_mib:>14.3f} MiB  ({profile.recipe})",
        f"MACs core          {profile.macs_core / 1e9:>14.3f} G  (conv/linear/transposed-conv weights)",
        f"MACs paper-style   {profile.macs_paper_style / 1e9:>14.3f} G  (core + bias, activation, 2x norm)",
        "",
        f"{'part':<24}{'params':>12}{'quant. w.':>12}{'MACs core':>14}{'MACs paper':>14}",
    ]
    for name, c in profile.parts.items():
        lines.append(f"{name:<24}{c.params:>12,}{c.quantized_weights:>12,}"
                     f"{c.macs_core / 1e6:>12.2f} M{c.macs_paper_style / 1e6:>12.2f} M")
    return "\n".join(lines)
