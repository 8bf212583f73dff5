"""Where onnxruntime spends its time: per-op-type kernel time from ORT's own profiler."""
from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from limuse_runtime.backend import OrtSeparator


def op_type_times(model_path: str | Path, mixture: np.ndarray, voiceprint: np.ndarray | None,
                  visual: np.ndarray | None, threads: int = 1, runs: int = 3) -> dict[str, float]:
    """Mean seconds per run spent in each op type (after one warm-up run), sorted, largest first.
    Op types are those of the optimised graph, so fused kernels (QLinearConv, QGemm, ...) show up."""
    with tempfile.TemporaryDirectory() as tmp:
        separator = OrtSeparator(model_path, threads, profile_prefix=os.path.join(tmp, "ort"))
        for _ in range(runs + 1):
            separator(mixture, voiceprint, visual)
        trace = separator.session.end_profiling()
        events = json.loads(Path(trace).read_text())
    # ORT writes each model_run event after its nodes, so run i's nodes sit before marker i.
    totals = _nodes_per_run(events)[1:]  # drop the warm-up
    merged = Counter()
    for run in totals:
        merged.update(run)
    return {op: seconds / len(totals) for op, seconds in merged.most_common()}


def _nodes_per_run(events: list[dict]) -> list[Counter]:
    runs, current = [], Counter()
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            current[event["args"]["op_name"]] += event["dur"] * 1e-6
        elif event.get("cat") == "Session" and event.get("name") == "model_run":
            runs.append(current)
            current = Counter()
    return runs
