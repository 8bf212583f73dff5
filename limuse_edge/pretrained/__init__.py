"""Checkpoints bundled with the package, loadable offline: from_pretrained("limuse_k32_w3a8")."""
from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent


def available() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.pt"))


def pretrained_path(name: str) -> Path:
    path = HERE / f"{name}.pt"
    if not path.is_file():
        raise ValueError(f"pretrained: unknown model {name!r}; bundled models are {available()}")
    return path


def pretrained_info(name: str) -> dict:
    """The metadata stored beside the checkpoint: preset, recipe, corpus, steps, evaluate numbers."""
    meta = HERE / f"{name}.json"
    pretrained_path(name)
    return json.loads(meta.read_text()) if meta.is_file() else {}


def from_pretrained(name: str):
    from limuse_edge.checkpoint import load_checkpoint
    model, _ = load_checkpoint(pretrained_path(name))
    return model.eval()
