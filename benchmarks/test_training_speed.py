"""Training speed of limuse_k32, today's eager trainer against its fast path (TrainConfig.fast,
limuse_edge/train/fast_path.py), in audio seconds trained per wall second, at 2 threads, in one run.

    pytest -s benchmarks/test_training_speed.py    # writes benchmarks/results/training_speed.{json,md}

One training step is the trainer's: forward, negative SI-SNR, backward, gradient clipping at 5, Adam.
Float at the float config's shape (batch 4 x 1 s); the quantized recipes at their QAT configs' shape
(batch 2 x 1 s: batch 4 of Brevitas QAT needs more than the 8 GB this shared machine has free), after
the activation quantizers are calibrated, as the trainer does before QAT. Inputs are a fixed random
batch: the data loader runs in its own worker processes, off the step's critical path. Every
(recipe, path) runs in a process of its own, eager then fast for each recipe, because the fast path
changes the process's allocator for good. Each figure: STEPS timed steps after one warm-up step.
Only ratios within one run mean anything on a shared machine.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
import pytest

PRESET = "limuse_k32"
THREADS = 2
SECONDS = 1.0
CASES = (("float", 4), ("w3a8", 2), ("w3a8-po2-inorm", 1))  # (recipe, batch)
PATHS = ("eager", "fast")
STEPS = 2
GOAL = 3.0


def measure(recipe: str, path: str, batch: int, steps: int, threads: int) -> dict:
    """Run in a fresh process: `steps` timed training steps of PRESET under `recipe`."""
    import torch

    from limuse_edge.checkpoint import build_model
    from limuse_edge.metrics import neg_si_snr_loss
    from limuse_edge.quant import calibrate
    from limuse_edge.train.fast_path import fast_path
    from limuse_runtime.contract import SAMPLE_RATE, VISUAL_DIM, VOICEPRINT_DIM, n_video_frames

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    samples = int(SECONDS * SAMPLE_RATE)
    g = torch.Generator().manual_seed(0)
    inputs = {"mixture": torch.randn(batch, 2, samples, generator=g),
              "voiceprint": torch.randn(batch, VOICEPRINT_DIM, generator=g),
              "visual": torch.randn(batch, n_video_frames(samples), VISUAL_DIM, generator=g)}
    target = torch.randn(batch, samples, generator=g)
    model = build_model(PRESET, recipe)
    if model.recipe.quantized:
        calibrate(model, [inputs])
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> float:
        loss = neg_si_snr_loss(model(**inputs), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        return loss.item()

    with fast_path(path == "fast"):
        step()
        times, cpu_times = [], []
        for _ in range(steps):
            start, cpu_start = time.perf_counter(), time.process_time()
            step()
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    import resource
    return {"recipe": recipe, "path": path, "batch": batch, "segment_seconds": SECONDS, "threads": threads,
            "step_seconds": times, "audio_s_per_s": batch * SECONDS * len(times) / sum(times),
            "step_cpu_seconds": cpu_times, "audio_s_per_cpu_s": batch * SECONDS * len(times) / sum(cpu_times),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _run(recipe: str, path: str, batch: int) -> dict:
    cmd = [sys.executable, __file__, recipe, path, str(batch), str(STEPS), str(THREADS)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:  # -9: killed, out of memory beside the other jobs
        return {"recipe": recipe, "path": path, "batch": batch, "error": f"exit {done.returncode}: "
                + (done.stderr.strip().splitlines() or [""])[-1][-300:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _load() -> str:
    """What else ran on the machine: the other processes' CPU share, from ps."""
    out = subprocess.run(["ps", "-eo", "pcpu=,args="], capture_output=True, text=True).stdout
    busy = [line.strip() for line in out.splitlines() if line.strip() and float(line.split()[0]) >= 10.0]
    return "; ".join(busy[:8])[:600]


@pytest.mark.slow(reason="six limuse_k32 training processes, 15 to 30 min on 2 loaded cores")
def test_training_speed(results):
    started = time.monotonic()
    load_before = _load()
    rows = []
    for recipe, batch in CASES:
        for path in PATHS:
            rows.append(_run(recipe, path, batch))
            _write(results, rows, load_before, time.monotonic() - started)  # each row kept as it comes
    errors = [f"{r['recipe']} {r['path']}: {r['error']}" for r in rows if "error" in r]
    assert not errors, errors
    speedups = _speedups(rows, "audio_s_per_s")
    for recipe, speedup in speedups.items():
        assert speedup > 1.0, f"{recipe}: the fast path is slower than eager ({speedup:.2f}x)"


def _speedups(rows: list[dict], key: str) -> dict:
    speed = {(r["recipe"], r["path"]): r[key] for r in rows if "error" not in r}
    return {recipe: speed[recipe, "fast"] / speed[recipe, "eager"] for recipe, _ in CASES
            if (recipe, "fast") in speed and (recipe, "eager") in speed}


def _write(results, rows: list[dict], load_before: str, seconds: float) -> None:
    speedups, cpu_speedups = _speedups(rows, "audio_s_per_s"), _speedups(rows, "audio_s_per_cpu_s")
    data = {"preset": PRESET, "threads": THREADS, "steps": STEPS, "rows": rows,
            "speedup_float": speedups.get("float"), "speedup_qat": speedups.get("w3a8"),
            "speedup_by_recipe": speedups, "cpu_time_speedup_by_recipe": cpu_speedups, "goal": GOAL,
            "seconds": seconds, "other_load_before": load_before}

    def cells(r: dict) -> list:
        if "error" in r:
            return [r["recipe"], f"{r['batch']} x {SECONDS:g}", r["path"], r["error"], "", "", "", "", "", ""]
        fast = r["path"] == "fast"
        return [r["recipe"], f"{r['batch']} x {r['segment_seconds']:g}", r["path"],
                " / ".join(f"{t:.2f}" for t in r["step_seconds"]), f"{r['audio_s_per_s']:.3f}",
                f"{speedups[r['recipe']]:.2f}x" if fast and r["recipe"] in speedups else "",
                " / ".join(f"{t:.2f}" for t in r["step_cpu_seconds"]), f"{r['audio_s_per_cpu_s']:.3f}",
                f"{cpu_speedups[r['recipe']]:.2f}x" if fast and r["recipe"] in cpu_speedups else "",
                f"{r['peak_rss_mb']:.0f}"]

    table = results.table(["recipe", "batch x s", "path", "wall s/step (each)", "audio s/s", "speedup",
                           "CPU s/step", "audio s per CPU s", "CPU speedup", "peak RSS MB"],
                          [cells(r) for r in rows])
    md = (f"# Training speed, {PRESET}, {THREADS} threads\n\n{table}\n"
          f"Goal: {GOAL:g}x the eager trainer's audio seconds per second. {STEPS} timed steps per row after one "
          f"warm-up, each row in its own process; run so far {seconds:.0f} s. CPU time is the process's "
          f"(both threads, spin-waits included): less sensitive than wall time to what else runs.\n\n"
          f"Other processes above 10 % CPU when it started: {load_before or 'none'}\n")
    results.write("training_speed", data, md)


if __name__ == "__main__":
    recipe, path, batch, steps, threads = sys.argv[1:6]
    print(json.dumps(measure(recipe, path, int(batch), int(steps), int(threads))))
