"""Golden engine: bit-exactness against Brevitas and speed, written to results/golden.{json,md}.

Every QONNX file here is made by the project's exporter (limuse_export.pipeline.export_onnx("qonnx", ...) on
limuse_export.prepare.exportable(model)), the file a porter gets from `python export/to_onnx.py`. The Brevitas
reference (hooks on the quantizer proxies) is tests/helpers/golden_reference.py, shared with the tests.

- tiny (800 samples, random input), w3a8-po2, quantizers calibrated on random input.
- limuse_k32 (1600 samples of the bundled demo sample), w3a8-po2: a trained po2 checkpoint when one is
  given (env LIMUSE_PO2_CHECKPOINT=path/to/best.pt, else the bundled `limuse_k32_w3a8_po2` if
  limuse_edge.pretrained lists it), else the untrained model calibrated on random input; the report says
  which. Per case: integer layers, tensors and values compared end to end and teacher-forced, mismatches,
  the largest |accumulator| against int32.
- limuse_k32 on the 3 s demo sample: golden engine wall and CPU time on one core (BLAS limited to one
  thread), waveform against Brevitas, SI-SDR against the demo target.

Run: pytest -s benchmarks/test_golden.py   (three QONNX exports, tiny and limuse_k32 at two lengths;
      about 20 min on two busy cores)
"""
from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch
import golden_reference as ref
from golden_reference import INT32_MAX, PO2_PRETRAINED, demo_inputs, si_sdr
from threadpoolctl import threadpool_limits

from limuse_runtime.contract import n_video_frames
from limuse_runtime.golden import GoldenEngine, Trace


PO2_ENV = "LIMUSE_PO2_CHECKPOINT"
CASES = {"tiny": 800, "limuse_k32": 1600}  # samples of the bit-exactness input
LATENCY_SAMPLES, LATENCY_RUNS = 48000, 2
COMMAND = "pytest -s benchmarks/test_golden.py"


def _checked_po2(model, where: str):
    if not model.recipe.quantized or not model.recipe.power_of_two:
        pytest.fail(f"{where}: recipe {model.recipe.name!r}; the golden engine needs a power-of-two recipe "
                    f"such as w3a8-po2")
    from limuse_edge.config import get_preset
    if model.config != get_preset("limuse_k32"):
        pytest.fail(f"{where}: not a limuse_k32 model; this benchmark's K=32 row expects one")
    return model.eval()


@pytest.fixture(scope="module")
def k32():
    """(model, source description): a trained po2 checkpoint if one is given, else the calibrated one."""
    torch.set_num_threads(1)
    from limuse_edge import pretrained
    path = os.environ.get(PO2_ENV)
    if path:
        from limuse_edge.checkpoint import load_checkpoint
        model, ckpt = load_checkpoint(path)
        meta = ckpt.get("meta", {})
        return _checked_po2(model, f"{PO2_ENV}={path}"), {
            "model": "trained po2 checkpoint", "source": str(path), "recipe": model.recipe.name,
            "steps": meta.get("steps"), "valid_si_sdr_db": meta.get("valid_si_sdr", meta.get("best_valid_si_sdr")),
            "init_from": meta.get("train_config", {}).get("init_from")}
    if PO2_PRETRAINED in pretrained.available():
        info = pretrained.pretrained_info(PO2_PRETRAINED)
        model = _checked_po2(pretrained.from_pretrained(PO2_PRETRAINED), PO2_PRETRAINED)
        return model, {
            "model": "bundled trained po2 checkpoint", "source": PO2_PRETRAINED, "recipe": model.recipe.name,
            "steps": info.get("training", {}).get("steps"), "test_si_sdr_db": info.get("evaluate", {}).get("si_sdr")}
    samples = CASES["limuse_k32"]
    return ref.calibrated_po2_model("limuse_k32", samples=samples, video_frames=n_video_frames(samples)), {
        "model": "untrained, calibrated", "recipe": "w3a8-po2",
        "source": f"build_model('limuse_k32', 'w3a8-po2') with activation quantizers calibrated on 3 random "
                  f"inputs (no {PO2_ENV} set and no bundled {PO2_PRETRAINED})"}


@pytest.fixture(scope="module")
def rows():
    return {}


def _case(preset: str, k32_source):
    samples = CASES[preset]
    if preset == "tiny":
        model = ref.calibrated_po2_model("tiny", samples=samples, video_frames=n_video_frames(samples))
        source = {"model": "untrained, calibrated", "recipe": "w3a8-po2",
                  "source": "build_model('tiny', 'w3a8-po2') calibrated on 3 random inputs"}
        return model, source, ref.golden_inputs(model, samples, n_video_frames(samples), seed=1), "random (seed 1)"
    model, source = k32_source
    return model, source, demo_inputs(samples)[0], f"bundled demo sample, first {samples} samples"


@pytest.mark.parametrize("preset", [pytest.param(p, marks=pytest.mark.slow(
    reason="limuse_k32 at 3 s: QONNX export, Brevitas codes and golden runs, minutes")) if p == "limuse_k32" else p
    for p in CASES])
def test_bit_exact_against_brevitas(preset, rows, request, tmp_path, results):
    from limuse_export.prepare import exportable
    torch.set_num_threads(1)
    model, source, inputs, input_text = _case(preset, request.getfixturevalue("k32") if preset == "limuse_k32" else None)
    started = time.perf_counter()
    path = ref.export_qonnx(model, inputs, tmp_path / f"{preset}.qonnx.onnx")
    export_s = time.perf_counter() - started
    engine = GoldenEngine(path)
    names = ref.layer_names(engine, model)
    np_inputs = ref.numpy_inputs(inputs)
    # Against the model QAT ran (GroupNorm by F.layer_norm) and against the module the exporter traced
    # (the same statistics written as means): the graph's float ops are the latter's.
    reference, waveform = ref.brevitas_codes(model, inputs)
    with threadpool_limits(1):
        stats = ref.compare_codes(engine, np_inputs, reference, names)
    del reference
    traced_reference, _ = ref.brevitas_codes(exportable(model).model, inputs)
    with threadpool_limits(1):
        traced = ref.compare_codes(engine, np_inputs, traced_reference, names)
    del traced_reference
    golden = stats.pop("waveform")
    error = float(np.abs(golden - waveform).max())
    rows[preset] = {"recipe": "w3a8-po2", "model": source, "input": input_text, "samples": CASES[preset],
                    "quantized_layers": len(engine.layers), "brevitas_quant_layers": len(names),
                    "tensors_compared": stats["tensors"], "values_compared": stats["values"],
                    "mismatches": stats["mismatches"], "mismatched_layers": stats["mismatched_layers"],
                    "first_mismatched_layer": stats["mismatched_layers"][0] if stats["mismatched_layers"] else None,
                    "teacher_forced_values": stats["teacher_forced_values"],
                    "teacher_forced_mismatches": stats["teacher_forced_mismatches"],
                    "exponent_mismatches": stats["exponent_mismatches"],
                    "mismatches_vs_traced_module": traced["mismatches"],
                    "first_mismatched_layer_vs_traced_module":
                        traced["mismatched_layers"][0] if traced["mismatched_layers"] else None,
                    "max_abs_accumulator": stats["max_accumulator"], "int32_max": INT32_MAX,
                    "accumulator_headroom_bits": float(np.log2(INT32_MAX / max(stats["max_accumulator"], 1))),
                    "lsb_flip_rate": stats["mismatches"] / stats["values"],
                    "waveform_max_abs_diff": error, "waveform_max_abs": float(np.abs(waveform).max()),
                    "si_sdr_golden_vs_brevitas_db": si_sdr(golden, waveform),
                    "export_s": round(export_s, 1)}
    _write(rows, results)
    from limuse_edge.quant import is_quant_layer
    assert len(engine.layers) == len(names) == sum(is_quant_layer(m) for m in model.modules())
    assert stats["layers"] == len(engine.layers)
    assert stats["teacher_forced_mismatches"] == 0
    assert stats["exponent_mismatches"] == 0
    assert stats["max_accumulator"] <= INT32_MAX
    if preset == "tiny":  # also required by tests/runtime/test_golden.py
        assert stats["mismatches"] == 0, stats["mismatched_layers"]
    # On limuse_k32 a float-kept op (GroupNorm statistics) can round across a quantizer boundary
    # differently from torch's kernel, and the 1-LSB flip then propagates; the count is reported.


@pytest.mark.slow(reason="limuse_k32 golden engine at 3 s, timed runs, minutes")
def test_latency_k32_3s(rows, k32, tmp_path, results):
    torch.set_num_threads(1)
    model, source = k32
    inputs, target = demo_inputs(LATENCY_SAMPLES)
    started = time.perf_counter()
    path = ref.export_qonnx(model, inputs, tmp_path / "k32_3s.qonnx.onnx")
    export_s = time.perf_counter() - started
    started = time.perf_counter()
    engine = GoldenEngine(path)
    load_s = time.perf_counter() - started
    np_inputs = ref.numpy_inputs(inputs)
    times, cpu_times = [], []
    with threadpool_limits(1):
        for _ in range(LATENCY_RUNS):
            trace = Trace(keep_codes=False)
            started, cpu_started = time.perf_counter(), time.process_time()
            output = engine.run(np_inputs, trace)["target"]
            times.append(time.perf_counter() - started)
            cpu_times.append(time.process_time() - cpu_started)
    with torch.no_grad():
        started = time.perf_counter()
        waveform = model(**inputs).numpy()
        brevitas_s = time.perf_counter() - started
    # Bit-exactness on the whole 3 s as well: one more run keeping every layer's codes (int8, ~0.5 GB),
    # compared layer by layer inside Brevitas's forward (its codes are not kept: ~4 GB as int64).
    with threadpool_limits(1):
        full = Trace()
        engine.run(np_inputs, full)
    streamed = streamed_mismatches(model, inputs, full, ref.layer_names(engine, model))
    del full
    rows["latency"] = {"preset": "limuse_k32", "recipe": "w3a8-po2", "model": source,
                       "input": "bundled demo sample (3 s)", "seconds_of_audio": LATENCY_SAMPLES / 16000,
                       "threads": 1, "runs": LATENCY_RUNS,
                       "golden_wall_s": [round(t, 3) for t in times], "golden_cpu_s": [round(t, 3) for t in cpu_times],
                       "golden_wall_best_s": round(min(times), 3), "golden_cpu_best_s": round(min(cpu_times), 3),
                       "golden_load_s": round(load_s, 3), "export_s": round(export_s, 1),
                       "brevitas_float_sim_s": round(brevitas_s, 3),
                       "max_abs_accumulator": trace.max_accumulator,
                       "waveform_max_abs_diff_vs_brevitas": float(np.abs(output - waveform).max()),
                       "waveform_max_abs": float(np.abs(waveform).max()),
                       "si_sdr_golden_vs_brevitas_db": si_sdr(output, waveform),
                       "tensors_compared": streamed["tensors"], "values_compared": streamed["values"],
                       "mismatches": streamed["mismatches"], "lsb_flip_rate": streamed["mismatches"] / streamed["values"],
                       "max_code_difference": streamed["max_difference"],
                       "mismatched_layers": streamed["mismatched_layers"],
                       "first_mismatched_layer": (streamed["mismatched_layers"] or [None])[0],
                       "si_sdr_vs_target_db": {"mixture_mic0": si_sdr(np_inputs["mixture"][0, 0], target),
                                               "brevitas": si_sdr(waveform, target),
                                               "golden": si_sdr(output, target)}}
    _write(rows, results)
    # CPU time of this process (BLAS limited to one thread): the one-core cost even when the machine is
    # shared; wall time is reported beside it. The issue's goal: 3 s of audio in under 10 s on one core.
    assert trace.max_accumulator <= INT32_MAX
    assert min(cpu_times) < 10.0, f"golden engine used {min(cpu_times):.1f} CPU s for 3 s of audio; target < 10 s"


def streamed_mismatches(model, inputs: dict, trace: Trace, names: dict) -> dict:
    """End-to-end code mismatches of a long input without keeping Brevitas's codes: each quantizer's
    output is compared with the engine's trace in a forward hook, in Brevitas's execution order."""
    records = {names[r.layer.name]: r for r in trace.records}
    stats = {"tensors": 0, "values": 0, "mismatches": 0, "max_difference": 0, "mismatched_layers": []}
    seen: set = set()

    def hook(name, key):
        def compare(module, args, output):
            if (name, key) in seen:
                raise AssertionError(f"{name}.{key} ran twice in one forward; the comparison expects once")
            seen.add((name, key))
            record = records[name]
            codes = output.int().numpy()
            got = ref.same_layout((record.input if key == "in" else record.output).codes, codes.shape)
            if got is None:
                mismatched, difference = codes.size, None
            else:
                delta = np.abs(got.astype(np.int32) - codes.astype(np.int32))
                mismatched, difference = int(np.count_nonzero(delta)), int(delta.max(initial=0))
            stats["tensors"] += 1
            stats["values"] += codes.size
            stats["mismatches"] += mismatched
            if difference is not None:
                stats["max_difference"] = max(stats["max_difference"], difference)
            if mismatched and name not in stats["mismatched_layers"]:
                stats["mismatched_layers"].append(name)
        return compare

    with ref.hook_quant_layers(model, hook), torch.no_grad():
        model(**inputs)
    if len(seen) != 2 * len(records):
        raise AssertionError(f"compared {len(seen)} tensors; expected {2 * len(records)}")
    return stats


def _write(rows: dict, results) -> None:
    exact = [[name, r["model"]["model"], r["input"], r["quantized_layers"], r["tensors_compared"],
              r["values_compared"], r["teacher_forced_mismatches"], r["mismatches"],
              f"{r['lsb_flip_rate']:.2e}", r["first_mismatched_layer"] or "-", r["mismatches_vs_traced_module"],
              f"{r['max_abs_accumulator']} / {INT32_MAX}", f"{r['accumulator_headroom_bits']:.1f}",
              f"{r['waveform_max_abs_diff']:.2e} (peak {r['waveform_max_abs']:.2f})",
              f"{r['si_sdr_golden_vs_brevitas_db']:.1f}"]
             for name, r in rows.items() if name in CASES]
    md = "# Golden engine (integer, numpy) vs Brevitas, w3a8-po2\n\n"
    md += results.table(["preset", "model", "input", "integer layers", "tensors compared", "values compared",
                         "mismatches, teacher-forced", "mismatches, end to end", "LSB-flip rate",
                         "first mismatched layer", "end-to-end mismatches vs traced module",
                         "max abs acc / int32 max", "headroom (bits)", "waveform max abs diff",
                         "SI-SDR golden vs Brevitas (dB)"], exact)
    lat = rows.get("latency")
    if lat:
        snr = lat["si_sdr_vs_target_db"]
        md += "\n" + results.table(
            ["preset", "model", "audio (s)", "threads", "golden wall best (s)", "golden CPU best (s)", "load (s)",
             "Brevitas float simulation, wall (s)", "values compared", "mismatches, end to end",
             "first mismatched layer", "max abs acc", "waveform max abs diff", "SI-SDR golden vs Brevitas (dB)",
             "SI-SDR vs target: mixture / Brevitas / golden (dB)"],
            [[lat["preset"], lat["model"]["model"], lat["seconds_of_audio"], 1, lat["golden_wall_best_s"],
              lat["golden_cpu_best_s"], lat["golden_load_s"], lat["brevitas_float_sim_s"], lat["values_compared"],
              f"{lat['mismatches']} ({lat['lsb_flip_rate']:.3%}, max {lat['max_code_difference']} LSB)",
              lat["first_mismatched_layer"] or "-", lat["max_abs_accumulator"],
              f"{lat['waveform_max_abs_diff_vs_brevitas']:.2e} (peak {lat['waveform_max_abs']:.2f})",
              f"{lat['si_sdr_golden_vs_brevitas_db']:.1f}",
              f"{snr['mixture_mic0']:.2f} / {snr['brevitas']:.2f} / {snr['golden']:.2f}"]])
    sources = {f"{name}: {r['model']['source']}" + (f" (QAT step {r['model']['steps']})" if r["model"].get("steps") else "")
               for name, r in rows.items() if isinstance(r, dict) and "model" in r}
    md += "\nModels: " + "; ".join(sorted(sources)) + ".\n"
    md += ("\nTeacher-forced: each integer layer fed Brevitas's input codes. End to end: the engine's own codes "
           "(float-kept ops in between). 'vs traced module': against the forward the exporter traced (GroupNorm "
           "written as means) instead of the one QAT ran (F.layer_norm). Activations 8 bit, weights 3 bit narrow, "
           "int32 bias, power-of-two scales; requantization by shift with round half to even. CPU time is this "
           "process's (BLAS limited to one thread); the machine was shared with a training run and exports, so "
           "wall time overstates the one-core cost.\n"
           f"Command: `{COMMAND}` (env {PO2_ENV} selects a trained po2 checkpoint)\n")
    results.write("golden", {"cases": {k: v for k, v in rows.items() if k in CASES}, "latency": lat,
                             "command": COMMAND}, md)
