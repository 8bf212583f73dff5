"""Bundle a trained checkpoint into the package: weights (no optimizer state) plus a metadata JSON with
the preset, recipe, corpus recipe, training steps, learning curve and evaluate numbers.

python -m limuse_edge.pretrained.bundle --checkpoint runs/x/best.pt --last runs/x/last.pt \
    --name limuse_k32_float --data /work/data/corpus --corpus-recipe "make-corpus --train 1500 ..."
"""
from __future__ import annotations

import argparse
import json
import sys

from limuse_edge.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from limuse_edge.pretrained import HERE
from limuse_runtime.contract import atomic_write_text


def bundle(checkpoint: str, last: str, name: str, data: str, corpus_recipe: str, limit: int | None) -> dict:
    from limuse_edge.data import MCGridDataset
    from limuse_edge.evaluate import evaluate

    model, ckpt = load_checkpoint(checkpoint)
    history = read_checkpoint(last)["train_state"]["history"]
    result = evaluate(model, MCGridDataset(data, "test", segment_seconds=None, limit=limit))
    meta = {"name": name, "preset_config": model.config.to_dict(), "recipe": model.recipe.name,
            "corpus_recipe": corpus_recipe, "training": ckpt["meta"], "history": history,
            "evaluate": {"split": "test", **result["summary"]}}
    save_checkpoint(HERE / f"{name}.pt", model, meta={k: meta[k] for k in ("name", "recipe", "corpus_recipe")})
    atomic_write_text(HERE / f"{name}.json", json.dumps(meta, indent=2))
    return meta


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
