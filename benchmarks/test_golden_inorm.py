"""Golden engine on limuse_k32 with integer normalisation (-inorm), 3 s of the bundled demo sample:
every quantized tensor of the engine against Brevitas's codes, end to end; and what -inorm costs in
SI-SDR against the same model with float norms (the po2 bundle it was fine-tuned from).

Checkpoint: env LIMUSE_INORM_CHECKPOINT=path/to/best.pt, else the bundled limuse_k32_w3a8_po2_inorm.
Run: pytest -s benchmarks/test_golden_inorm.py  ->  benchmarks/results/golden_inorm.{json,md}
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import golden_reference as ref
import pytest
from golden_reference import INT32_MAX, PO2_PRETRAINED, demo_inputs, si_sdr
from threadpoolctl import threadpool_limits

from limuse_runtime.contract import atomic_write_text
from limuse_runtime.golden import GoldenEngine

INORM_ENV = "LIMUSE_INORM_CHECKPOINT"
INORM_PRETRAINED = "limuse_k32_w3a8_po2_inorm"
SAMPLES = 48000
RESULTS = Path(__file__).parent / "results"


def _inorm_model():
    from limuse_edge import pretrained
    from limuse_edge.checkpoint import load_checkpoint
    path = os.environ.get(INORM_ENV)
    model = load_checkpoint(path)[0] if path else pretrained.from_pretrained(INORM_PRETRAINED)
    assert model.recipe.integer_norm and model.recipe.power_of_two, model.recipe.name
    return model.eval(), path or INORM_PRETRAINED


@pytest.mark.slow(reason="limuse_k32 -inorm at 3 s: QONNX export and a code-for-code golden run (the main job "
                         "runs the same check: python export/to_onnx.py)")
def test_inorm_k32_3s_bit_exact(tmp_path):
    from limuse_edge import pretrained
    torch.set_num_threads(1)
    model, source = _inorm_model()
    inputs, target = demo_inputs(SAMPLES)
    started = time.perf_counter()
    path = ref.export_qonnx(model, inputs, tmp_path / "k32_inorm.qonnx.onnx")
    export_s = time.perf_counter() - started
    engine = GoldenEngine(path)
    names = ref.layer_names(engine, model)
    reference, waveform = ref.brevitas_codes(model, inputs)
    started = time.perf_counter()
    with threadpool_limits(1):
        stats = ref.compare_codes(engine, ref.numpy_inputs(inputs), reference, names)
    compare_s = time.perf_counter() - started
    runs, timings = [], {}
    for _ in range(2):
        started = time.perf_counter()
        with threadpool_limits(1):
            engine.run(ref.numpy_inputs(inputs), timings=timings)
        runs.append(time.perf_counter() - started)
    golden = stats.pop("waveform")[0]
    with torch.no_grad():
        float_norm_waveform = pretrained.from_pretrained(PO2_PRETRAINED).eval()(**inputs)[0].numpy()
    row = {"preset": "limuse_k32", "recipe": model.recipe.name, "model": source,
           "input": f"bundled demo sample, first {SAMPLES} samples (3 s)",
           "quantized_layers": len(engine.layers), "integer_norm_nodes": sum(n.op == "IntegerNorm" for n in engine.graph.nodes),
           "tensors_compared": stats["tensors"], "values_compared": stats["values"],
           "mismatches": stats["mismatches"], "mismatched_layers": stats["mismatched_layers"],
           "teacher_forced_mismatches": stats["teacher_forced_mismatches"],
           "exponent_mismatches": stats["exponent_mismatches"],
           "max_abs_accumulator": stats["max_accumulator"], "int32_max": INT32_MAX,
           "waveform_max_abs_diff": float(np.abs(golden - waveform[0]).max()),
           "waveform_max_abs": float(np.abs(waveform).max()),
           "si_sdr_db": {"mixture": si_sdr(inputs["mixture"][0, 0].numpy(), target),
                         "brevitas_inorm": si_sdr(waveform[0], target), "golden_inorm": si_sdr(golden, target),
                         "brevitas_po2_float_norms": si_sdr(float_norm_waveform, target)},
           "export_s": round(export_s, 1), "golden_run_and_compare_s": round(compare_s, 1),
           "golden_run_s_one_core_best_of_2": round(min(runs), 2),
           "integer_norm_share_of_run": round(timings.get("IntegerNorm", 0.0) / sum(timings.values()), 3)}
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / "golden_inorm.json", json.dumps(row, indent=2) + "\n")
    s = row["si_sdr_db"]
    atomic_write_text(RESULTS / "golden_inorm.md", "\n".join([
        "# Golden engine, limuse_k32 w3a8-po2-inorm, 3 s (pytest -s benchmarks/test_golden_inorm.py)", "",
        f"model: {source}", "",
        "| integer layers | IntegerNorm nodes | values compared | end-to-end mismatches | teacher-forced mismatches | "
        "max abs acc | waveform max abs diff |", "|---|---|---|---|---|---|---|",
        f"| {row['quantized_layers']} | {row['integer_norm_nodes']} | {row['values_compared']} | {row['mismatches']} | "
        f"{row['teacher_forced_mismatches']} | {row['max_abs_accumulator']} | {row['waveform_max_abs_diff']:.2e} "
        f"(peak {row['waveform_max_abs']:.1f}) |", "",
        "| SI-SDR vs demo target (dB) | mixture | Brevitas -inorm | golden -inorm | Brevitas po2, float norms |",
        "|---|---|---|---|---|",
        f"| 3 s demo | {s['mixture']:.2f} | {s['brevitas_inorm']:.2f} | {s['golden_inorm']:.2f} | "
        f"{s['brevitas_po2_float_norms']:.2f} |", "",
        f"Golden run, 3 s of audio, one core: {row['golden_run_s_one_core_best_of_2']} s (best of 2); "
        f"IntegerNorm nodes take {100 * row['integer_norm_share_of_run']:.0f} % of it.", ""]))
    print(json.dumps(row, indent=2))
    assert stats["teacher_forced_mismatches"] == 0 and stats["exponent_mismatches"] == 0
    assert stats["mismatches"] == 0, stats["mismatched_layers"][:5]
    # only the float-kept decoder and the final scaling differ: float32 rounding, a few ULPs of the peak
    assert row["waveform_max_abs_diff"] <= 1e-5 * row["waveform_max_abs"], row["waveform_max_abs_diff"]
