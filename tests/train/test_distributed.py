"""torchrun on the CPU (gloo): two ranks of tiny with dynamic mixing, then --resume of the same run."""
import json
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

from limuse_edge.train import TrainConfig

# Runs under torchrun: records which stream items this rank drew, which files it saved, and its
# final weights, then trains exactly as `limuse-edge train` would.
RANK_SCRIPT = textwrap.dedent('''
    import json, os, sys
    import torch
    from limuse_edge.data import dynamic
    from limuse_edge.train import TrainConfig, train, trainer

    seen, saved, built = [], [], {}
    draw = dynamic.DynamicMixDataset.__getitem__
    dynamic.DynamicMixDataset.__getitem__ = lambda self, i: seen.append(int(i)) or draw(self, i)
    save = trainer.save_checkpoint
    trainer.save_checkpoint = lambda path, *a, **k: saved.append(str(path)) or save(path, *a, **k)
    build = trainer._build_model
    trainer._build_model = lambda cfg: built.setdefault("model", build(cfg))
    cfg = TrainConfig.from_dict(json.loads(sys.argv[1]))
    train(cfg, resume=sys.argv[2] == "resume")
    rank = os.environ["RANK"]
    with open(os.path.join(cfg.out_dir, f"rank{rank}_{sys.argv[2]}.json"), "w") as f:
        json.dump({"seen": seen, "saved": saved}, f)
    torch.save(built["model"][0].state_dict(), os.path.join(cfg.out_dir, f"rank{rank}_{sys.argv[2]}.pt"))
''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(tmp_path, cfg: TrainConfig, mode: str) -> None:
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", str(script), json.dumps(cfg.to_dict()), mode]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]


def _read(out, rank, mode):
    return json.loads((out / f"rank{rank}_{mode}.json").read_text()), torch.load(out / f"rank{rank}_{mode}.pt")


def test_two_ranks_share_weights_split_the_stream_and_resume(tmp_path, speech_pool, train_corpus):
    out = tmp_path / "run"
    cfg = TrainConfig(preset="tiny", data=str(train_corpus), dynamic_mixing=str(speech_pool), segment_seconds=0.48,
                      batch_size=2, num_workers=0, epochs=1, steps_per_epoch=2, lr=3e-3, out_dir=str(out),
                      threads=1, log_every=1)
    _torchrun(tmp_path, cfg, "first")
    (r0, w0), (r1, w1) = _read(out, 0, "first"), _read(out, 1, "first")
    assert all(torch.equal(w0[k], w1[k]) for k in w0), "the ranks ended with different weights"
    assert r0["seen"] == [0, 2, 4, 6] and r1["seen"] == [1, 3, 5, 7]  # 2 steps x batch 2, disjoint
    assert r0["saved"] and not r1["saved"], "only rank 0 writes checkpoints"

    _torchrun(tmp_path, TrainConfig.from_dict({**cfg.to_dict(), "epochs": 2}), "resume")
    (r0, w0), (r1, w1) = _read(out, 0, "resume"), _read(out, 1, "resume")
    assert r0["seen"] == [8, 10, 12, 14] and r1["seen"] == [9, 11, 13, 15]  # the stream goes on
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    assert torch.load(out / "last.pt", weights_only=True)["train_state"]["step"] == 4
