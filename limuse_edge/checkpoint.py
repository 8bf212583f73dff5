"""Checkpoints are plain data: {"format", "model_args": {"config", "recipe"}, "state_dict", "meta"}.

They load with torch.load(weights_only=True), so no pickled code is ever executed.
"""
from __future__ import annotations

from dataclasses import replace

import io
import json
from pathlib import Path

import torch

from limuse_edge.config import ModelConfig, get_preset
from limuse_edge.model import LiMuSE
from limuse_edge.quant import QuantRecipe, get_recipe, is_quantizer_name
from limuse_runtime.contract import atomic_write_bytes

FORMAT = "limuse_edge/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not match what was asked for."""


def build_model(preset_or_config: "str | ModelConfig", recipe: "str | QuantRecipe" = "float") -> LiMuSE:
    cfg = get_preset(preset_or_config) if isinstance(preset_or_config, str) else preset_or_config
    return LiMuSE(cfg, get_recipe(recipe))


def atomic_save(obj, path: "str | Path") -> None:
    """torch.save that never leaves half a file behind."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def save_checkpoint(path: "str | Path", model: LiMuSE, meta: dict | None = None, **extra) -> None:
    atomic_save({"format": FORMAT, "model_args": model.get_model_args(),
                 "state_dict": model.state_dict(), "meta": meta or {}, **extra}, path)


def read_checkpoint(path: "str | Path") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint: no such file {str(path)!r}; expected a .pt written by limuse-edge")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise CheckpointError(f"checkpoint: cannot read {str(path)!r} ({type(exc).__name__}); "
                              f"expected an intact .pt written by limuse-edge") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint: {str(path)!r} is not a limuse-edge checkpoint "
                              f"(expected format {FORMAT!r})")
    return ckpt


def load_checkpoint(path: "str | Path", *, config: ModelConfig | None = None) -> tuple[LiMuSE, dict]:
    """Rebuild the model a checkpoint describes, with the recipe it was saved with; `config`, when given,
    must match. To train it under another recipe, hand it on to convert_recipe."""
    ckpt = read_checkpoint(path)
    saved_cfg = ModelConfig.from_dict(ckpt["model_args"]["config"])
    if config is not None and config != saved_cfg:
        diff = {k: (v, getattr(config, k)) for k, v in saved_cfg.to_dict().items()
                if getattr(config, k) != (tuple(v) if isinstance(v, list) else v)}
        raise CheckpointError(f"checkpoint: {str(path)!r} holds another model configuration "
                              f"(saved vs requested: {diff})")
    model = LiMuSE(saved_cfg, QuantRecipe.from_dict(ckpt["model_args"]["recipe"]))
    load_state(model, ckpt["state_dict"], source=str(path))
    return model, ckpt


def convert_recipe(model: LiMuSE, recipe: "str | QuantRecipe", source: str = "the model") -> LiMuSE:
    """`model` under another recipe, initialised from its state: a float model becomes a quantized one (QAT
    from float), a quantized one the same recipe with or without integer norms (-inorm: fine-tuning).
    The model's own recipe returns it as it is."""
    saved, target = model.recipe, get_recipe(recipe)
    if target == saved:
        return model
    if saved.quantized and replace(target, integer_norm=saved.integer_norm) != saved:
        raise CheckpointError(f"checkpoint: {source} was trained with recipe {saved.name!r}; "
                              f"it cannot be loaded as {target.name!r} (only float checkpoints convert, "
                              f"and quantized ones to the same recipe with or without -inorm)")
    converted = LiMuSE(model.config, target)
    load_state(converted, model.state_dict(), source=source)
    return converted


def load_state(model: LiMuSE, state_dict: dict, source: str = "state dict") -> None:
    """Strict load, except that quantizer parameters may be missing (a float state dict into a
    quantized model: the quantizers then initialise from statistics)."""
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    missing = [k for k in missing if not is_quantizer_name(k)]
    if missing or unexpected:
        raise CheckpointError(f"checkpoint: {source} does not fit the model: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")


def parent_record(init_from: str | None) -> dict | None:
    """The record of the bundle a run starts from (the json beside its .pt), taken when the run starts
    and kept in the run's checkpoints: a bundle made later chains from it, not from whatever json is
    bundled by then (which may already hold this very run, and so count it twice)."""
    if not init_from:
        return None
    meta_path = Path(init_from).with_suffix(".json")
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    if "training" not in meta:
        return None
    return {k: meta.get(k) for k in ("name", "corpus_recipe", "training", "history")}
