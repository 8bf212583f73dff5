"""Bundle a trained checkpoint into the package: weights (no optimizer state) plus a metadata JSON with
the preset, recipe, corpus recipe, training steps, learning curve and evaluate numbers.

python -m limuse_edge.pretrained.bundle --checkpoint runs/x/best.pt --last runs/x/last.pt \
    --name limuse_k32_float --data /work/data/corpus --corpus-recipe "make-corpus --train 1500 ..."
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from limuse_edge.checkpoint import load_checkpoint, parent_record, read_checkpoint, save_checkpoint
from limuse_edge.pretrained import HERE
from limuse_runtime.contract import atomic_write_text


def bundle(checkpoint: str, last: str, name: str, data: str, corpus_recipe: str, limit: int | None) -> dict:
    from limuse_edge.data import MCGridDataset
    from limuse_edge.evaluate import evaluate

    model, ckpt = load_checkpoint(checkpoint)
    training, history = _continued(name, ckpt["meta"], read_checkpoint(last)["train_state"]["history"])
    result = evaluate(model, MCGridDataset(data, "test", segment_seconds=None, limit=limit))
    meta = {"name": name, "preset_config": model.config.to_dict(), "recipe": model.recipe.name,
            "corpus_recipe": corpus_recipe, "training": training, "history": history,
            "evaluate": {"split": "test", **result["summary"]}}
    save_checkpoint(HERE / f"{name}.pt", model, meta={k: meta[k] for k in ("name", "recipe", "corpus_recipe")})
    atomic_write_text(HERE / f"{name}.json", json.dumps(meta, indent=2))
    return meta


def _continued(name: str, training: dict, history: list) -> tuple[dict, list]:
    """A run that started from the bundle it replaces continues that bundle's training: its totals and
    learning curve include the parent's, the parent's corpus and config kept."""
    training = dict(training)
    parent = training.pop("parent", None)
    if parent is None:  # runs started before checkpoints kept their parent: read the bundled json
        init = training.get("train_config", {}).get("init_from") or ""
        parent = parent_record(str(HERE / f"{name}.pt")) if Path(init).name == f"{name}.pt" else None
    if parent is None:
        return training, history
    if parent.get("name") != name:  # a new model started from another bundle: where it forked, for the curves
        p_train = parent.get("training") or {}
        return {**training, "forked_from": {"name": parent.get("name"), "steps": p_train.get("steps", 0),
                                            "audio_seconds_seen": p_train.get("audio_seconds_seen", 0.0)}}, history
    p_train, p_hist = parent.get("training") or {}, parent.get("history") or []
    p_cfg = p_train.get("train_config", {})
    per_step = p_cfg.get("batch_size", 0) * p_cfg.get("segment_seconds", 0)  # older records lack audio_seconds
    p_hist = [{**h, "audio_seconds": h.get("audio_seconds", h["step"] * per_step)} for h in p_hist]
    p_steps, p_audio = p_train.get("steps", 0), p_train.get("audio_seconds_seen", 0.0)
    history = p_hist + [{**h, "step": h["step"] + p_steps, "audio_seconds": h.get("audio_seconds", 0.0) + p_audio}
                        for h in history]
    lineage = p_train.get("continues", []) + [
        {"corpus_recipe": parent.get("corpus_recipe"), "steps": p_steps, "audio_seconds_seen": p_audio,
         "train_seconds": p_train.get("train_seconds", 0.0), "train_config": p_cfg}]
    totals = {"steps": training.get("steps", 0) + p_steps,
              "audio_seconds_seen": training.get("audio_seconds_seen", 0.0) + p_audio,
              "train_seconds": training.get("train_seconds", 0.0) + p_train.get("train_seconds", 0.0)}
    return {**training, **totals, "continues": lineage}, history


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--last", required=True, help="the run's last.pt, for the learning curve")
    p.add_argument("--name", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--corpus-recipe", required=True)
    p.add_argument("--limit", type=int, default=None)
    a = p.parse_args(argv)
    meta = bundle(a.checkpoint, a.last, a.name, a.data, a.corpus_recipe, a.limit)
    print(json.dumps(meta["evaluate"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
