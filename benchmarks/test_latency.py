"""Latency of every backend on one 3 s input of limuse_k32, at 1 and at 2 threads, all in one run;
peak RSS of the runtime CLI on a 10 s and a 60 s recording; per-op-type ORT time before and after
export/passes/optimize.py.

    pytest benchmarks/test_latency.py -s          # writes benchmarks/results/latency.{json,md}

Backends: eager PyTorch float; eager PyTorch W3A8 (Brevitas, in its quant_inference_mode); ORT float
(as the export pipeline writes it); ORT int8 as Brevitas writes it ("int8") and after the pipeline's
graph steps ("int8-opt", what `python export/to_onnx.py` writes); the golden engine on a po2 QONNX
export (1 thread); the native engine on the bundled -inorm model packed from a QONNX export at the
input length (1 and 2 threads, plus its per-stage times). Models: the bundled limuse_k32_float and limuse_k32_w3a8. Each figure is the
median of RUNS runs after one warm-up. Only ratios within one run are meaningful on a shared machine.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import pytest

from machine import describe, machine
from limuse_runtime.contract import SAMPLE_RATE, VISUAL_DIM, VOICEPRINT_DIM, atomic_write_text, n_video_frames

PRESET = "limuse_k32"
INPUT_SECONDS = 3.0
THREADS = (1, 2)
RUNS = 5
RSS_SECONDS = (10, 60)
GOAL_RTF = 0.04
GOAL_SPEEDUP = 5.0
ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "limuse_edge" / "benchmark_models"


def _cache_folder(*checkpoints: str) -> Path:
    """Cache folder keyed by the model, quantizer and exporter sources plus the bundled checkpoints used."""
    import hashlib
    digest = hashlib.sha256()
    paths = [*(ROOT / "limuse_edge" / "model").glob("*.py"), ROOT / "limuse_edge" / "quant.py",
             ROOT / "limuse_edge" / "config.py", *(ROOT / "export").glob("*.py")]
    for path in sorted(paths) + [ROOT / "limuse_edge" / "pretrained" / f"{name}.pt" for name in checkpoints]:
        digest.update(path.read_bytes())
    folder = CACHE / f"{PRESET}-{digest.hexdigest()[:16]}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def prepare_models():
    """The bundled models: {"float": torch, "w3a8": torch}, and their ONNX files exported by the project's
    exporter: {"float", "int8" (as Brevitas writes it), "int8-opt" (after the int8 file's passes)}."""
    from limuse_edge.pretrained import from_pretrained
    from limuse_export import onnx_export
    from limuse_export.passes import PASSES, apply_passes
    from limuse_export.prepare import example_inputs, exportable
    from limuse_export.save import save_onnx

    torch_models = {"float": from_pretrained(f"{PRESET}_float").eval(), "w3a8": from_pretrained(f"{PRESET}_w3a8").eval()}
    folder = _cache_folder(f"{PRESET}_float", f"{PRESET}_w3a8")
    example = example_inputs(torch_models["float"], int(INPUT_SECONDS * 16000))
    jobs = {"float": ("float", onnx_export.export_float, PASSES["float"]),
            "int8": ("w3a8", onnx_export.export_qcdq, ()),
            "int8-opt": ("w3a8", onnx_export.export_qcdq, PASSES["int8"])}
    paths, exported = {}, {}
    for kind, (recipe, export, steps) in jobs.items():
        path = folder / f"{PRESET}.{kind}.onnx"
        if not path.exists():  # the K=32 exports take minutes; cached per source hash
            if recipe not in exported:
                exported[recipe] = export(exportable(torch_models[recipe]), example)
            save_onnx(apply_passes(exported[recipe], steps), path)
        paths[kind] = path
    return torch_models, paths


def median_seconds(run, runs: int = RUNS) -> float:
    run()  # warm-up: allocations, ORT's first-run planning, Brevitas' caches
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def golden_backend(float_model):
    """The bit-exact integer engine on a power-of-two W3A8 QONNX export of limuse_k32 at the benchmark's
    input length (QONNX files are static): the bundled po2 checkpoint when installed, otherwise the
    float-scale W3A8 weights calibrated under the po2 recipe (speed does not depend on the values).
    Returns (separator(mixture, voiceprint, visual) -> (S,), what it ran)."""

    from limuse_edge.checkpoint import build_model, load_state
    from limuse_edge.pretrained import available, from_pretrained
    from limuse_edge.quant import calibrate
    from limuse_export.pipeline import export_onnx
    from limuse_export.prepare import example_inputs, exportable
    from limuse_export.save import save_onnx
    from limuse_runtime.golden import GoldenEngine

    po2_name = f"{PRESET}_w3a8_po2"
    example = example_inputs(float_model, int(INPUT_SECONDS * 16000))
    if po2_name in available():
        what = f"bundled {po2_name}"
        model = from_pretrained(po2_name).eval()
        path = _cache_folder(po2_name) / f"{PRESET}.po2.qonnx.onnx"
    else:
        what = f"{PRESET}_w3a8 weights with calibrated po2 quantizers ({po2_name} not bundled)"
        model = build_model(PRESET, "w3a8-po2")
        load_state(model, float_model.state_dict(), source="float weights")
        calibrate(model.eval(), [example])
        path = _cache_folder(f"{PRESET}_float") / f"{PRESET}.po2-calibrated.qonnx.onnx"
    if not path.exists():
        save_onnx(export_onnx("qonnx", exportable(model), example), path)
    engine = GoldenEngine(path)

    def separate(mixture, voiceprint, visual):
        return engine.run({"mixture": mixture[None], "voiceprint": voiceprint[None], "visual": visual[None]})["target"][0]
    return separate, what


def native_backend():
    """The native engine on the bundled -inorm model packed from a QONNX export at the benchmark's input
    length (cached like the golden engine's file). Returns (NativeModel, path of the packed file)."""
    from limuse_edge.pretrained import from_pretrained
    from limuse_export.native.pack import pack
    from limuse_export.pipeline import export_onnx
    from limuse_export.prepare import example_inputs, exportable
    from limuse_export.save import save_onnx
    from limuse_runtime.native import NativeModel, build, library_path

    name = f"{PRESET}_w3a8_po2_inorm"
    folder = _cache_folder(name)
    qonnx, packed = folder / f"{PRESET}.inorm.qonnx.onnx", folder / f"{PRESET}.inorm.packed.bin"
    if not packed.exists():
        model = from_pretrained(name).eval()
        if not qonnx.exists():
            save_onnx(export_onnx("qonnx", exportable(model), example_inputs(model, int(INPUT_SECONDS * 16000))), qonnx)
        pack(qonnx, packed, {"name": name})
    if library_path() is None:
        build.build()
    return NativeModel(packed), packed


@pytest.mark.slow(reason="every backend at 1 and 2 threads, 10 s and 60 s recordings, peak RSS, exports")
def test_latency(tmp_path):
    import torch
    from brevitas.export.inference import quant_inference_mode

    from limuse_runtime.backend import OrtSeparator
    from limuse_runtime.profiling import op_type_times

    torch_models, onnx_paths = prepare_models()
    golden, golden_model = golden_backend(torch_models["float"])
    native, native_path = native_backend()
    rng = np.random.default_rng(0)
    n = int(INPUT_SECONDS * SAMPLE_RATE)
    mixture = (0.1 * rng.standard_normal((2, n))).astype(np.float32)
    voiceprint = rng.standard_normal(VOICEPRINT_DIM).astype(np.float32)
    visual = rng.standard_normal((n_video_frames(n), VISUAL_DIM)).astype(np.float32)
    torch_inputs = [torch.from_numpy(a)[None] for a in (mixture, voiceprint, visual)]

    rows, skipped = [], {"golden at 2 threads": "a numpy reference engine; timed at one thread only"}
    for threads in THREADS:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            rows.append(_row("torch-float", threads, median_seconds(lambda: torch_models["float"](*torch_inputs))))
            w3a8 = torch_models["w3a8"]
            with quant_inference_mode(w3a8):
                rows.append(_row("torch-w3a8", threads, median_seconds(lambda: w3a8(*torch_inputs))))
        for kind in ("float", "int8", "int8-opt"):
            separator = OrtSeparator(onnx_paths[kind], threads)
            rows.append(_row(f"ort-{kind}", threads, median_seconds(lambda: separator(mixture, voiceprint, visual))))
        rows.append(_row("native", threads, median_seconds(lambda: native.run(mixture, voiceprint, visual, threads))))
        if threads == 1:
            native.reset_times()
            native.run(mixture, voiceprint, visual, 1)
            native_stages = {k: round(v, 4) for k, v in native.stage_seconds().items()}
            native_kernels = {k: round(v, 4) for k, v in native.kernel_seconds().items() if v > 0}
        if threads == 1:  # numpy reference engine, BLAS held to one thread
            from threadpoolctl import threadpool_limits
            with threadpool_limits(1):
                rows.append(_row("golden", 1, median_seconds(lambda: golden(mixture, voiceprint, visual), runs=2)))
    torch.set_num_threads(1)
    for row in rows:
        base = next(r for r in rows if r["backend"] == "torch-float" and r["threads"] == row["threads"])
        row["speedup_vs_torch_float"] = round(base["median_s"] / row["median_s"], 2)

    profiles = {kind: op_type_times(onnx_paths[kind], mixture, voiceprint, visual, threads=1, runs=3)
                for kind in ("int8", "int8-opt")}
    rss = {f"{seconds}s": peak_rss_mb(onnx_paths["int8-opt"], seconds, tmp_path) for seconds in RSS_SECONDS}
    native_rss = {f"{seconds}s": peak_rss_mb(native_path, seconds, tmp_path) for seconds in RSS_SECONDS}
    native_row = next(r for r in rows if r["backend"] == "native" and r["threads"] == 1)
    ort_row = next(r for r in rows if r["backend"] == "ort-int8-opt" and r["threads"] == 1)

    best = min((r for r in rows if r["backend"].startswith("ort-int8") and r["threads"] == 1), key=lambda r: r["rtf"])
    report = {"preset": PRESET, "input_seconds": INPUT_SECONDS, "runs": RUNS, "rows": rows, "rss_mb": rss,
              "golden_model": golden_model,
              "native": {"file": native_path.name, "bytes": native_path.stat().st_size, "rss_mb": native_rss,
                         "stage_seconds_1_thread": native_stages, "kernel_seconds_1_thread": native_kernels,
                         "rtf_1_thread": native_row["rtf"], "goal_rtf": GOAL_RTF,
                         "speedup_vs_ort_int8": round(ort_row["median_s"] / native_row["median_s"], 2),
                         "met": native_row["rtf"] <= GOAL_RTF and ort_row["median_s"] >= 5 * native_row["median_s"]},
              "op_type_seconds_1_thread": profiles, "skipped": skipped,
              "goal": {"rtf_at_1_thread": GOAL_RTF, "speedup_vs_torch_float": GOAL_SPEEDUP,
                       "best_ort_int8": best["backend"], "rtf": best["rtf"],
                       "speedup": best["speedup_vs_torch_float"],
                       "met": best["rtf"] <= GOAL_RTF and best["speedup_vs_torch_float"] >= GOAL_SPEEDUP},
              "machine": machine()}
    atomic_write_text(RESULTS / "latency.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(RESULTS / "latency.md", markdown(report))
    print(markdown(report))

    assert {(r["backend"], r["threads"]) for r in rows} >= {(b, t) for t in THREADS for b in
                                                            ("torch-float", "torch-w3a8", "ort-float", "ort-int8")}
    assert all(r["median_s"] > 0 for r in rows)
    # Memory must not grow with duration: the windowed runtime holds one window, whatever the length.
    assert rss["60s"] < rss["10s"] * 1.1 + 20, rss
    assert native_rss["60s"] < native_rss["10s"] * 1.1 + 20, native_rss


def _row(backend: str, threads: int, seconds: float) -> dict:
    return {"backend": backend, "threads": threads, "median_s": round(seconds, 4), "rtf": round(seconds / INPUT_SECONDS, 4)}


def peak_rss_mb(model: Path, seconds: int, tmp_path: Path) -> float:
    """Peak resident memory of a fresh process running the CLI (1 thread) on a recording of `seconds`."""
    rng = np.random.default_rng(seconds)
    mixture = tmp_path / f"mix{seconds}.wav"
    with sf.SoundFile(str(mixture), "w", samplerate=16000, channels=2, subtype="FLOAT") as sink:
        for _ in range(seconds):  # written a second at a time: the benchmark itself stays small too
            sink.write((0.1 * rng.standard_normal((16000, 2))).astype(np.float32))
    np.save(tmp_path / "vp.npy", rng.standard_normal(512).astype(np.float32))
    # VmHWM, not getrusage's ru_maxrss: Linux carries the parent's high-water mark into ru_maxrss across
    # fork + exec, so the child would report this benchmark's own (torch-laden) peak.
    script = ("import sys\nfrom limuse_runtime.cli import main\ncode = main(sys.argv[1:])\n"
              "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]\n"
              "print('PEAK_RSS_KB', hwm)\nsys.exit(code)\n")
    result = subprocess.run([sys.executable, "-c", script, "--model", str(model), "--mixture", str(mixture),
                             "--voiceprint", str(tmp_path / "vp.npy"), "--out", str(tmp_path / f"out{seconds}.wav")],
                            capture_output=True, text=True, check=True)
    kilobytes = int(result.stdout.split("PEAK_RSS_KB")[1].split()[0])
    return round(kilobytes / 1024, 1)


def markdown(report: dict) -> str:
    lines = [f"# Latency: {report['preset']}, {report['input_seconds']} s input, median of {report['runs']} runs",
             "", f"Machine: {describe(report['machine'])} at the end of the run (shared machine: compare ratios).",
             "", "| backend | threads | median s | RTF | speed-up vs torch float |", "|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['backend']} | {r['threads']} | {r['median_s']:.3f} | {r['rtf']:.4f} | "
                     f"{r['speedup_vs_torch_float']:.2f} |")
    goal = report["goal"]
    lines += ["", f"Goal (ORT int8 at 1 thread: RTF <= {goal['rtf_at_1_thread']} and >= "
              f"{goal['speedup_vs_torch_float']}x eager float): best {goal['best_ort_int8']} RTF {goal['rtf']:.4f}, "
              f"{goal['speedup']:.2f}x -> {'met' if goal['met'] else 'NOT met'}.",
              "", f"Peak RSS of `limuse-run` (int8-opt, 1 thread): 10 s input {report['rss_mb']['10s']} MB, "
              f"60 s input {report['rss_mb']['60s']} MB.", ""]
    lines.append(f"Golden engine model: {report['golden_model']}.")
    native = report["native"]
    lines += ["", f"Native engine ({native['file']}, {native['bytes']} bytes): RTF {native['rtf_1_thread']:.4f} at 1 "
              f"thread, {native['speedup_vs_ort_int8']:.2f}x ORT int8-opt (goal RTF <= {native['goal_rtf']} and 5x: "
              f"{'met' if native['met'] else 'NOT met'}); peak RSS of `limuse-run` 10 s {native['rss_mb']['10s']} MB, "
              f"60 s {native['rss_mb']['60s']} MB.", "",
              "| native stage (1 thread) | s |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in native["stage_seconds_1_thread"].items()]
    lines += ["", "| native kernel (1 thread) | s |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in sorted(native["kernel_seconds_1_thread"].items(), key=lambda kv: -kv[1])]
    for name, reason in report["skipped"].items():
        lines.append(f"Not measured: {name}: {reason}.")
    before, after = report["op_type_seconds_1_thread"]["int8"], report["op_type_seconds_1_thread"]["int8-opt"]
    lines += ["", "## ORT int8, time per op type, 1 thread (ORT profiler, mean of 3 runs)", "",
              "| op type | before s | after s |", "|---|---|---|"]
    for op in sorted(set(before) | set(after), key=lambda o: -max(before.get(o, 0), after.get(o, 0))):
        lines.append(f"| {op} | {before.get(op, 0):.4f} | {after.get(op, 0):.4f} |")
    lines.append(f"| total | {sum(before.values()):.4f} | {sum(after.values()):.4f} |")
    return "\n".join(lines) + "\n"

