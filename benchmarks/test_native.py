"""The native engine on limuse_k32 -inorm (the bundled limuse_k32_w3a8_po2_inorm): the packed file's size
against the 0.20 MiB goal, and every tensor against the golden engine at 3 s and 10 s of the demo sample
(tiled to 10 s), each from a QONNX export at that length (QONNX files are static).

    pytest -s benchmarks/test_native.py      ->  benchmarks/results/native.{json,md}

The 3 s QONNX and int8 files are exported once for the module as the main job exports them (traced on
0.5 s; the two exports side by side in two processes); the 10 s case (--runslow) exports its own.
LIMUSE_K32_INORM_QONNX_3S / _10S / LIMUSE_K32_INORM_INT8: reuse files this exporter wrote from the same
model and the same tiled demo input, instead of exporting again.

test_native_speed_and_memory (`-k speed`): the packed file of the 3 s QONNX against onnxruntime on the
int8 ONNX file and eager PyTorch
float (bundled limuse_k32_float), at 1 and 2 threads, in one process, interleaved (at 1 thread also the
engine's other SIMD paths this CPU has, forced: portable, sse2); the engine's scratch
bytes; peak RSS of `limuse-run --model <packed>` on 10 s and 60 s of the demo tiled
->  benchmarks/results/native_speed.{json,md}
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from machine import describe, machine
from limuse_runtime.contract import SAMPLE_RATE, atomic_write_text, n_video_frames

MODEL = "limuse_k32_w3a8_po2_inorm"
GOAL_MIB = 0.20
RESULTS = Path(__file__).resolve().parent / "results"


def demo_inputs(samples: int) -> tuple[dict, np.ndarray]:
    """The demo sample, tiled to `samples` (its 25 fps track with it), batch 1; and its target, tiled."""
    from limuse_export.demo_sample import load_demo
    demo = load_demo()
    reps = -(-samples // demo.mixture.shape[1])
    frames = n_video_frames(samples)
    inputs = {"mixture": np.tile(demo.mixture, (1, reps))[None, :, :samples],
              "voiceprint": demo.voiceprint[None],
              "visual": np.tile(demo.visual, (reps, 1))[None, :frames]}
    return ({k: np.ascontiguousarray(v, np.float32) for k, v in inputs.items()},
            np.tile(demo.target, reps)[:samples])


@pytest.fixture(scope="module")
def rows():
    return {}


def _export_int8(path: Path, send) -> None:
    from limuse_edge import pretrained
    from limuse_export.pipeline import TRACE_SAMPLES, export_onnx
    from limuse_export.prepare import exportable
    from limuse_export.save import save_onnx
    torch.set_num_threads(1)
    inputs, _ = demo_inputs(TRACE_SAMPLES)
    save_onnx(export_onnx("int8", exportable(pretrained.from_pretrained(MODEL).eval()),
                          {k: torch.from_numpy(v) for k, v in inputs.items()}), path)
    send("int8", str(path))


def export_qonnx(seconds: int, path: Path) -> Path:
    """The main job's QONNX export of MODEL for the demo tiled to `seconds` (traced on 0.5 s, then given
    the window's shapes); a file LIMUSE_K32_INORM_QONNX_<seconds>S names is used instead."""
    from limuse_edge import pretrained
    from limuse_export.pipeline import TRACE_SAMPLES, export_onnx
    from limuse_export.prepare import exportable
    from limuse_export.save import save_onnx
    reused = os.environ.get(f"LIMUSE_K32_INORM_QONNX_{seconds}S")
    if reused:
        return Path(reused)
    inputs, _ = demo_inputs(seconds * SAMPLE_RATE)
    trace, _ = demo_inputs(TRACE_SAMPLES)
    model = pretrained.from_pretrained(MODEL).eval()
    save_onnx(export_onnx("qonnx", exportable(model), {k: torch.from_numpy(v) for k, v in inputs.items()},
                          trace_inputs={k: torch.from_numpy(v) for k, v in trace.items()}), path)
    return path


@pytest.fixture(scope="module")
def k32_3s(tmp_path_factory):
    """{"qonnx", "int8"} paths of MODEL's 3 s QONNX and its int8 ONNX file: the main job's two exports,
    made side by side (the int8 one in a forked child), or the files LIMUSE_K32_INORM_QONNX_3S and
    LIMUSE_K32_INORM_INT8 name."""
    from limuse_export.forked import Forked
    folder = tmp_path_factory.mktemp("k32_3s")
    int8 = os.environ.get("LIMUSE_K32_INORM_INT8")
    child = None if int8 else Forked(lambda send: _export_int8(folder / "k32.int8.onnx", send))
    started = time.perf_counter()
    files = {"qonnx": export_qonnx(3, folder / "k32_inorm_3s.qonnx.onnx"),
             "int8": Path(int8) if int8 else Path(child.get("int8"))}
    files["export_s"] = None if "LIMUSE_K32_INORM_QONNX_3S" in os.environ else round(time.perf_counter() - started, 1)
    if child is not None:
        child.close()
    return files


@pytest.mark.parametrize("seconds", [3, pytest.param(10, marks=pytest.mark.slow(
    reason="a 10 s QONNX export and the golden engine at 10 s, tensor by tensor (2.5 min beside a one-thread QAT run)"))])
def test_native_equals_golden_on_limuse_k32(seconds, rows, tmp_path, request):
    from limuse_edge import pretrained
    from limuse_edge.metrics import si_sdr
    from limuse_export.checks.pack_check import compare_with_golden
    from limuse_runtime.native import build, library_path

    if library_path() is None:
        build.build()
    torch.set_num_threads(1)
    model = pretrained.from_pretrained(MODEL).eval()
    inputs, target = demo_inputs(seconds * SAMPLE_RATE)
    if seconds == 3:
        files = request.getfixturevalue("k32_3s")
        qonnx, export_s = files["qonnx"], files["export_s"]
    else:
        started = time.perf_counter()
        qonnx = export_qonnx(seconds, tmp_path / f"k32_inorm_{seconds}s.qonnx.onnx")
        export_s = None if f"LIMUSE_K32_INORM_QONNX_{seconds}S" in os.environ else round(time.perf_counter() - started, 1)
    with torch.no_grad():
        brevitas = model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).numpy()[0]
    stats = compare_with_golden(qonnx, inputs, tmp_path / "k32.packed.bin", keep_codes=seconds <= 3)
    native = stats.pop("native_waveform")
    stats.pop("golden_waveform")
    row = dict(stats, seconds=seconds, export_s=export_s, qonnx=qonnx.name, mib=round(stats["bytes"] / 2 ** 20, 4),
               vs_brevitas_max_abs=float(np.abs(native - brevitas).max()),
               si_sdr_native_db=float(si_sdr(native, target)), si_sdr_brevitas_db=float(si_sdr(brevitas, target)))
    rows[seconds] = row
    _write(rows)
    assert row["int_mismatches"] == 0, row["mismatched"]
    assert row["float_mismatched"] == []
    assert row["waveform_max_abs"] <= 1e-5 * row["waveform_peak"]
    assert row["mib"] <= GOAL_MIB


def _write(rows: dict) -> None:
    saved = RESULTS / "native.json"
    if saved.exists():  # keep the other length's row when one case runs alone
        earlier = {r["seconds"]: r for r in json.loads(saved.read_text()).get("rows", [])}
        rows = dict(sorted({**earlier, **rows}.items()))
    atomic_write_text(RESULTS / "native.json", json.dumps({"model": MODEL, "rows": list(rows.values())}, indent=2) + "\n")
    lines = [f"# Native engine vs golden, {MODEL}", "",
             "| input | packed bytes (MiB) | integer tensors | values | mismatches | float tensors not identical | "
             "max abs vs golden (peak) | max abs vs Brevitas | SI-SDR native / Brevitas (dB) | native run s | golden run s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows.values():
        lines.append(f"| {r['seconds']} s | {r['bytes']} ({r['mib']:.3f}) | {r['int_tensors']} | {r['int_values']} | "
                     f"{r['int_mismatches']} | {len(r['float_mismatched'])} of {r['float_tensors']} | "
                     f"{r['waveform_max_abs']:.2g} ({r['waveform_peak']:.0f}) | {r['vs_brevitas_max_abs']:.2g} | "
                     f"{r['si_sdr_native_db']:.2f} / {r['si_sdr_brevitas_db']:.2f} | {r['native_s']:.1f} | "
                     f"{r['golden_s']:.1f} |")
    lines += ["", f"Goal: <= {GOAL_MIB} MiB on disk. Run times include the comparison's bookkeeping (copies of "
              "every tensor); speed is in latency.md."]
    atomic_write_text(RESULTS / "native.md", "\n".join(lines) + "\n")


SPEED_RUNS = 5
GOAL_RTF = 0.04


def _median(run, runs: int = SPEED_RUNS) -> dict:
    """Median wall and process-CPU seconds of `runs` calls after one warm-up."""
    import statistics
    run()
    wall, cpu = [], []
    for _ in range(runs):
        w, c = time.perf_counter(), time.process_time()
        run()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return {"wall_s": round(statistics.median(wall), 4), "cpu_s": round(statistics.median(cpu), 4)}


def _peak_rss_mb(packed: Path, seconds: int, tmp_path: Path) -> float:
    """VmHWM of a fresh `limuse-run` process (1 thread) on `seconds` of the demo tiled."""
    import subprocess
    import sys

    import soundfile as sf
    inputs, _ = demo_inputs(seconds * SAMPLE_RATE)
    sf.write(str(tmp_path / f"mix{seconds}.wav"), inputs["mixture"][0].T, SAMPLE_RATE, subtype="FLOAT")
    np.save(tmp_path / f"lips{seconds}.npy", inputs["visual"][0])
    np.save(tmp_path / "vp.npy", inputs["voiceprint"][0])
    script = ("import sys\nfrom limuse_runtime.cli import main\ncode = main(sys.argv[1:])\n"
              "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]\n"
              "print('PEAK_RSS_KB', hwm)\nsys.exit(code)\n")
    result = subprocess.run([sys.executable, "-c", script, "--model", str(packed), "--mixture",
                             str(tmp_path / f"mix{seconds}.wav"), "--voiceprint", str(tmp_path / "vp.npy"),
                             "--visual", str(tmp_path / f"lips{seconds}.npy"), "--out", str(tmp_path / "y.wav")],
                            capture_output=True, text=True, check=True)
    return round(int(result.stdout.split("PEAK_RSS_KB")[1].split()[0]) / 1024, 1)


def test_native_speed_and_memory(k32_3s, tmp_path):
    from limuse_edge import pretrained
    from limuse_export.native.pack import pack
    from limuse_runtime.native import NativeModel, build, library_path
    from limuse_runtime.native.binding import isa_list

    int8, qonnx = str(k32_3s["int8"]), k32_3s["qonnx"]
    import onnxruntime as ort
    if library_path() is None:
        build.build()
    seconds = 3
    inputs, _ = demo_inputs(seconds * SAMPLE_RATE)
    packed = tmp_path / "k32.packed.bin"
    pack(qonnx, packed, {"name": MODEL})
    native = NativeModel(packed)  # the best SIMD path this CPU has; the others (1 thread) as rows of their own
    others = {isa: NativeModel(packed) for isa in isa_list() if isa != native.isa}
    for isa, model in others.items():
        model.set_isa(isa)
    args = [inputs[n][0] for n in ("mixture", "voiceprint", "visual")]
    eager = pretrained.from_pretrained("limuse_k32_float").eval()
    torch_inputs = {k: torch.from_numpy(v) for k, v in inputs.items()}
    rows = []
    for threads in (1, 2):
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.log_severity_level = 3
        session = ort.InferenceSession(int8, options, providers=["CPUExecutionProvider"])
        feeds = {i.name: inputs[i.name] for i in session.get_inputs()}
        torch.set_num_threads(threads)

        def run_eager():
            with torch.no_grad():
                eager(**torch_inputs)
        paths = [(f"native {isa} path", lambda m=m: m.run(*args, threads=1)) for isa, m in others.items()]
        for backend, run in (("native", lambda: native.run(*args, threads=threads)),
                             ("onnxruntime int8", lambda: session.run(None, feeds)),
                             ("eager float", run_eager), *(paths if threads == 1 else [])):
            rows.append(dict(backend=backend, threads=threads, **_median(run)))
    for row in rows:
        row["rtf_wall"] = round(row["wall_s"] / seconds, 4)
        row["rtf_cpu"] = round(row["cpu_s"] / seconds, 4)
    native.reset_times()
    native.run(*args, threads=1)
    report = {"model": MODEL, "packed_bytes": packed.stat().st_size, "scratch_bytes": native.scratch_bytes,
              "rows": rows, "kernel_seconds_1_thread": {k: round(v, 4) for k, v in native.kernel_seconds().items() if v},
              "rss_mb": {f"{s}s": _peak_rss_mb(packed, s, tmp_path) for s in (10, 60)},
              "machine": machine(), "native_isa": native.isa}
    by = {(r["backend"], r["threads"]): r for r in rows}
    report["speedup_1_thread_wall"] = {b: round(by[(b, 1)]["wall_s"] / by[("native", 1)]["wall_s"], 2)
                                       for b in ("onnxruntime int8", "eager float")}
    atomic_write_text(RESULTS / "native_speed.json", json.dumps(report, indent=2) + "\n")
    lines = [f"# Native engine speed and memory, {MODEL} (3 s demo, one process, interleaved)", "",
             f"Packed file {report['packed_bytes']} bytes; scratch (arena + kernel scratch, 1 thread) "
             f"{report['scratch_bytes']} bytes ({report['scratch_bytes'] / 2 ** 20:.1f} MiB); peak RSS of "
             f"`limuse-run --model` 10 s {report['rss_mb']['10s']} MB, 60 s {report['rss_mb']['60s']} MB (goal 64 MB). "
             f"Machine: {describe(report['machine'])}.", "",
             "| backend | threads | wall s (median of 5) | RTF wall | CPU s | RTF CPU |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['backend']} | {r['threads']} | {r['wall_s']:.3f} | {r['rtf_wall']:.3f} | {r['cpu_s']:.3f} | "
              f"{r['rtf_cpu']:.3f} |" for r in rows]
    lines += ["", f"native: its best SIMD path here, {native.isa} (one build, the path picked at run time; the other "
              "paths' rows are the same build with LIMUSE_NATIVE_ISA's choice, all byte-identical).",
              "", f"At 1 thread the native engine is {report['speedup_1_thread_wall']['onnxruntime int8']:.2f}x "
              f"onnxruntime int8 and {report['speedup_1_thread_wall']['eager float']:.2f}x eager float (wall); "
              f"goal RTF <= {GOAL_RTF} and 5x both.", "", "| native kernel (1 thread) | s |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in sorted(report["kernel_seconds_1_thread"].items(), key=lambda kv: -kv[1])]
    atomic_write_text(RESULTS / "native_speed.md", "\n".join(lines) + "\n")
    assert report["scratch_bytes"] < 64 * 2 ** 20
    assert by[("native", 1)]["wall_s"] < by[("onnxruntime int8", 1)]["wall_s"] * 2  # a regression guard, not the goal
