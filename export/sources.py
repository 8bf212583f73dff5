"""Which models to export: a checkpoint, a bundled pretrained model, an untrained preset, or (no
arguments) the bundled integer-only limuse_k32 (W3A8, power-of-two scales, integer norms) and its float
twin, falling back to an untrained limuse_k32 while the bundled checkpoints do not exist."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from limuse_edge.checkpoint import build_model, load_checkpoint, load_state
from limuse_edge.model import LiMuSE

DEFAULT_PRESET = "limuse_k32"
# The main job's model: integer end to end (power-of-two scales, integer norms), so that every file of the
# toolchain (int8 ONNX, QONNX for the golden engine, the native engine's packed model) comes from it.
DEFAULT_QUANTIZED = "limuse_k32_w3a8_po2_inorm"


@dataclass
class Source:
    name: str  # the stem of the exported files
    quantized: LiMuSE | None  # exported as <name>.qonnx.onnx and <name>.int8.onnx
    float: LiMuSE  # exported as <name>.float.onnx
    trained: bool  # False: random weights, quantizers still to calibrate
    description: str


def float_twin(model: LiMuSE) -> LiMuSE:
    """The float model with the same weights (the quantizers' own parameters dropped)."""
    twin = build_model(model.config, "float")
    wanted = twin.state_dict()
    load_state(twin, {k: v for k, v in model.state_dict().items() if k in wanted}, source="float twin")
    return twin.eval()


def _pair(name: str, model: LiMuSE, trained: bool, description: str) -> Source:
    if model.recipe.quantized:
        return Source(name, model.eval(), float_twin(model), trained, description)
    return Source(name, None, model.eval(), trained, description)


def from_checkpoint(path: "str | Path") -> Source:
    model, _ = load_checkpoint(path)
    return _pair(Path(path).name.split(".")[0], model, True, f"checkpoint {path}")


def from_pretrained(name: str) -> Source:
    from limuse_edge import pretrained
    return _pair(name, pretrained.from_pretrained(name), True, f"bundled pretrained model {name!r}")


def from_preset(preset: str, recipe: str, seed: int = 0) -> Source:
    torch.manual_seed(seed)
    model = build_model(preset, recipe)
    name = preset if recipe == "w3a8" else f"{preset}_{recipe}"
    return _pair(name, model, False, f"UNTRAINED preset {preset!r} with recipe {recipe!r} (random weights, seed {seed})")


def default_source() -> Source:
    """The bundled DEFAULT_QUANTIZED model and its float twin; an untrained limuse_k32 if not installed."""
    from limuse_edge import pretrained
    available = pretrained.available()
    if DEFAULT_QUANTIZED not in available:
        source = from_preset(DEFAULT_PRESET, "w3a8-po2-inorm")
        source.description += (f"; the bundled {DEFAULT_QUANTIZED!r} checkpoint is not installed "
                               f"(bundled: {available or 'none'}), so the outputs are NOT meaningful speech")
        return source
    return from_pretrained(DEFAULT_QUANTIZED)
