"""The export pipeline: models in, three ONNX files, export_report.json and a demo run out.

Each file is its exporter's graph (onnx_export.EXPORTERS) after its format's passes (passes.PASSES);
parity is measured on the final files: onnxruntime against torch/Brevitas on every utterance, and the
QONNX file with the golden engine against Brevitas, code for code (power-of-two recipes). qonnx's own
executor checks the QONNX file only when asked (check_qonnx: it keeps every intermediate tensor, 7.4 GB
for 3 s of limuse_k32). Every step's wall time is logged and lands in the report's "step_seconds".
"""
from __future__ import annotations

import copy
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import torch

from limuse_edge.metrics import si_sdr
from limuse_edge.quant import calibrate
from limuse_export import onnx_export, ort_session
from limuse_export.checks import parity
from limuse_export.checks.qonnx_check import QonnxCheckError, check_qonnx_runs, run_qonnx
from limuse_export.demo_sample import Utterance
from limuse_export.forked import Forked
from limuse_export.native import step as native_step
from limuse_export.passes import PASSES, apply_passes
from limuse_export.prepare import exportable
from limuse_export.save import save_onnx
from limuse_export.sources import Source
from limuse_runtime.contract import MIXTURE, SAMPLE_RATE, VISUAL, VOICEPRINT, atomic_write_text
from limuse_runtime.streaming import DEFAULT_WINDOW_S
from limuse_runtime.voiceprint import VOICEPRINT_VERSION, VOICEPRINT_VERSION_KEY

# The int8 and float files have dynamic lengths and are traced on this much audio (tracing costs grow with
# it; the graph does not depend on it, and parity is measured on the full utterances).
TRACE_SAMPLES = SAMPLE_RATE // 2
# The QONNX file is static (qonnx's shape inference freezes symbolic axes): one window of the runtime's
# windowing (limuse_runtime.streaming), so that `limuse-run golden` runs recordings of any length.
QONNX_SAMPLES = round(DEFAULT_WINDOW_S * SAMPLE_RATE)
FORMATS = ("qonnx", "int8", "float")
FILE_ORDER = ("int8", "float", "qonnx")


def check_writable(folder: "str | Path") -> Path:
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"--out: {folder} is a file; expected a folder to write the ONNX files into")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write_test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise PermissionError(f"--out: cannot write into {folder} ({exc.strerror}); expected a writable folder") from None
    return folder


def export_onnx(fmt: str, module, inputs: dict[str, torch.Tensor],
                trace_inputs: "dict[str, torch.Tensor] | None" = None) -> onnx.ModelProto:
    """The `fmt` file ("int8", "float" or "qonnx") of an exportable module, as the pipeline writes it.
    trace_inputs (qonnx only): trace on these shorter inputs, then fix the shapes of `inputs`."""
    if fmt == "qonnx" and trace_inputs is not None:
        return apply_passes(onnx_export.export_qonnx(module, inputs, trace_inputs=trace_inputs), PASSES[fmt])
    return apply_passes(onnx_export.EXPORTERS[fmt](module, inputs), PASSES[fmt])


def _torch_inputs(inputs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in inputs.items()}


def _forward(model, inputs: dict[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        return model(**_torch_inputs(inputs)).numpy()


def _macs(model, n_samples: int) -> dict:
    try:
        from limuse_edge.profile import profile_model
    except ImportError:
        return {"note": "limuse_edge.profile not installed; MACs not measured"}
    profile = profile_model(model, n_samples)
    return {"input_samples": n_samples, "core": profile.macs_core, "paper_style": profile.macs_paper_style}


def export_all(source: Source, out: "str | Path", utterances: list[Utterance],
               log: Callable[[str], None] = print, check_qonnx: bool = False, two_processes: bool = True) -> dict:
    """Write <name>.{qonnx,int8,float}.onnx (and .packed.bin) and export_report.json into `out`; return the
    report. Files are written only once every export (and, with check_qonnx, qonnx's executor run against
    Brevitas) has succeeded: a failed export leaves no file.

    The work is two jobs: this process traces the int8 file and runs Brevitas once on the QONNX file's
    input (codes and waveform, shared by every check); the side job traces the float and QONNX files, then
    packs the native model and runs it. Each trace is single-threaded Python, so with two_processes (the
    default) the side job runs in a forked child beside this one (limuse_export.forked), on a core of its
    own; without, it runs first, in this process. The files are the same either way."""
    out = check_writable(out)
    if not utterances:
        raise ValueError("export: no utterances for calibration and parity; expected at least one")
    if check_qonnx and source.quantized is None:
        raise QonnxCheckError("--check-qonnx: the model is float, so there is no QONNX file to check; expected a "
                              "quantized recipe such as 'w3a8'")
    log(f"model: {source.description}")
    cfg = source.float.config
    inputs = [u.inputs(cfg.cues, cfg.mic_channels) for u in utterances]
    quantized = source.quantized
    if quantized is not None and not source.trained:
        log(f"calibrating the activation quantizers of the untrained model on {len(inputs)} utterance(s)")
        quantized = copy.deepcopy(quantized).eval()  # the source's model stays as it came
        calibrate(quantized, [_torch_inputs(x) for x in inputs])
    trace_utterance = utterances[0].head(min(TRACE_SAMPLES, utterances[0].target.shape[-1]))
    example = _torch_inputs(trace_utterance.inputs(cfg.cues, cfg.mic_channels))
    qonnx_utterance = utterances[0].head(min(QONNX_SAMPLES, utterances[0].target.shape[-1]))
    timings: dict[str, float] = {}

    def timed(step: str, started: float) -> float:
        timings[step] = round(time.perf_counter() - started, 1)
        return timings[step]

    side = Forked(lambda send: _side_job(send, source, quantized, example, qonnx_utterance, utterances[0],
                                         check_qonnx, log, own_process=two_processes), fork=two_processes)
    try:
        protos = {}
        if quantized is not None:
            started = time.perf_counter()
            protos["int8"] = export_onnx("int8", exportable(quantized), example)
            log(f"exported int8 ({timed('int8', started)} s)")
        started = time.perf_counter()
        brevitas = _reference_run(quantized, qonnx_utterance, cfg)
        log(f"Brevitas on {qonnx_utterance.name} ({timed('brevitas_reference', started)} s)")
        exported = side.get("exports")
        timings.update(exported["step_seconds"])
        protos.update({kind: onnx.load_from_string(data) for kind, data in exported["files"].items()})

        files = {}
        started = time.perf_counter()
        for kind in FILE_ORDER:
            if kind in protos:
                path = out / f"{source.name}.{kind}.onnx"
                onnx.helper.set_model_props(protos[kind], {VOICEPRINT_VERSION_KEY: str(VOICEPRINT_VERSION)})
                files[path.name] = save_onnx(protos[kind], path)
                log(f"wrote {path} ({files[path.name]} bytes)")
        timed("write", started)

        report = {"model": source.description, "name": source.name, "opset": onnx_export.OPSET,
                  "recipe": quantized.recipe.name if quantized is not None else "float",
                  "files": files, "step_seconds": timings}
        started = time.perf_counter()
        ort_files = [k for k in ("int8", "float") if k in protos]
        sessions, ops = {}, {}
        for kind in ort_files:
            sessions[kind], ops[kind] = ort_session.session_and_op_counts(out / f"{source.name}.{kind}.onnx")
        for kind in ort_files:
            leaked = ort_session.initializers_as_inputs(protos[kind])
            if leaked:
                raise RuntimeError(f"{kind} export: initializers appear as graph inputs ({leaked[:3]}...)")
        main = "int8" if "int8" in ops else "float"
        report["ort_optimized_ops"] = ops[main]
        report["ort_optimized_ops_by_file"] = ops
        report["integer_kernels"] = {k: ort_session.kernel_summary(v) for k, v in ops.items()}
        report["macs"] = _macs(source.float, inputs[0][MIXTURE].shape[-1])
        log(f"onnxruntime graphs and MACs ({timed('onnxruntime_graphs', started)} s)")
        started = time.perf_counter()
        known = {qonnx_utterance.name: (qonnx_utterance, brevitas.waveform)} if brevitas is not None else {}
        report["parity"], report["parity_per_utterance"] = _parity(source, quantized, sessions, utterances, inputs,
                                                                   known, log)
        report["demo"] = demo_si_sdr(sessions[main], utterances[0])
        timed("parity_onnxruntime", started)
        if "qonnx" in protos:
            started = time.perf_counter()
            report["parity"].update(_golden_parity(quantized, out / f"{source.name}.qonnx.onnx", qonnx_utterance,
                                                   cfg, brevitas, log))
            log(f"golden engine vs Brevitas ({timed('parity_golden', started)} s)")
            if exported["qonnx_check"] is not None:
                report["parity"].update(exported["qonnx_check"])
            native = side.get("native")
            timings["native"] = native.pop("step_seconds")
            report["native"] = native_step.native_entry(source.name, native, brevitas.waveform, qonnx_utterance,
                                                        utterances[0], out, log)
        side.get("done")
    finally:
        side.close()
    atomic_write_text(out / "export_report.json", _json(report))
    return report


class _Reference:
    """Brevitas's output on the QONNX file's input, with every quantized layer's codes (po2 recipes)."""

    def __init__(self, waveform: np.ndarray, codes: "dict | None"):
        self.waveform, self.codes = waveform, codes


def _reference_run(quantized, utterance: Utterance, cfg) -> "_Reference | None":
    if quantized is None:
        return None
    x = utterance.inputs(cfg.cues, cfg.mic_channels)
    if not quantized.recipe.power_of_two:
        return _Reference(_forward(quantized, x), None)
    from limuse_export.checks.golden_check import brevitas_codes
    codes, waveform = brevitas_codes(quantized, _torch_inputs(x))
    return _Reference(waveform, codes)


def _side_job(send, source: Source, quantized, example, qonnx_utterance: Utterance, demo: Utterance,
              check_qonnx: bool, log, own_process: bool) -> None:
    """The float and QONNX files (as bytes), then the native model; one thread in a process of its own."""
    if own_process:
        torch.set_num_threads(1)
    cfg = source.float.config
    timings, files, qonnx_check = {}, {}, None
    jobs = [("float", source.float, example)]
    if quantized is not None:
        jobs.append(("qonnx", quantized, _torch_inputs(qonnx_utterance.inputs(cfg.cues, cfg.mic_channels))))
    for kind, model, example_inputs in jobs:
        started = time.perf_counter()
        # The static QONNX file is traced on the short example too, then given the window's shapes.
        proto = export_onnx(kind, exportable(model), example_inputs, trace_inputs=example if kind == "qonnx" else None)
        files[kind] = proto.SerializeToString()
        timings[kind] = round(time.perf_counter() - started, 1)
        log(f"exported {kind} ({timings[kind]} s)")
        if kind == "qonnx" and check_qonnx:
            started = time.perf_counter()
            check_qonnx_runs(proto)
            qonnx_check = _qonnx_parity(quantized, proto, qonnx_utterance, cfg, log)
            timings["qonnx_executor"] = round(time.perf_counter() - started, 1)
            log(f"qonnx's executor on {qonnx_utterance.name} ({timings['qonnx_executor']} s)")
    send("exports", {"files": files, "step_seconds": timings, "qonnx_check": qonnx_check})
    if quantized is not None:
        started = time.perf_counter()
        native = native_step.pack_and_run(source.name, quantized, files["qonnx"], qonnx_utterance, demo, cfg, log)
        send("native", {**native, "step_seconds": round(time.perf_counter() - started, 1)})
    send("done", True)


def _parity(source, quantized, sessions: dict, utterances, inputs, known: dict, log):
    """onnxruntime against torch/Brevitas on every utterance; `known`: {name: (utterance, Brevitas output)}
    already computed (the QONNX file's input), reused where an utterance has the very same samples."""
    rows = {"ort_vs_brevitas": [], "float_ort_vs_torch": []}
    per_utterance = []
    float_session, int8_session = sessions["float"], sessions.get("int8")
    for utterance, x in zip(utterances, inputs):
        entry = {"utterance": utterance.name, "samples": int(x[MIXTURE].shape[-1])}
        entry["float_ort_vs_torch"] = parity.compare(_forward(source.float, x), ort_session.run(float_session, x),
                                                     utterance.target)
        rows["float_ort_vs_torch"].append(entry["float_ort_vs_torch"])
        if quantized is not None:
            reference = next((waveform for same, waveform in known.values() if same.same_samples(utterance)), None)
            if reference is None:
                reference = _forward(quantized, x)
            entry["ort_vs_brevitas"] = parity.compare(reference, ort_session.run(int8_session, x), utterance.target)
            rows["ort_vs_brevitas"].append(entry["ort_vs_brevitas"])
        log(f"parity on {utterance.name}: " + ", ".join(
            f"{k} max|d|={v['max_abs']:.3g} dSI-SDR={v['si_sdr_diff_db']:.4f} dB"
            for k, v in entry.items() if isinstance(v, dict)))
        per_utterance.append(entry)
    summary = {"utterances": len(utterances), "si_sdr_tolerance_db": parity.SI_SDR_TOLERANCE_DB}
    for key, values in rows.items():
        if values:
            w = parity.worst(values)
            summary[f"{key}_max_abs"] = w["max_abs"]
            summary[f"{key}_si_sdr_db"] = w["si_sdr_diff_db"]
    return summary, per_utterance


def _golden_parity(quantized, qonnx_path: Path, utterance: Utterance, cfg, brevitas: "_Reference", log) -> dict:
    """The golden engine on the QONNX file against Brevitas, code for code (power-of-two recipes only:
    the engine shifts by powers of two and refuses other scales)."""
    if not quantized.recipe.power_of_two:
        log(f"golden engine: skipped, recipe {quantized.recipe.name} has no power-of-two scales")
        return {"golden_vs_brevitas": f"not run: recipe {quantized.recipe.name} has no power-of-two scales "
                                      f"(the golden engine runs -po2 recipes)"}
    from limuse_export.checks.golden_check import golden_vs_brevitas
    result = golden_vs_brevitas(quantized, qonnx_path, utterance.inputs(cfg.cues, cfg.mic_channels),
                                brevitas=(brevitas.codes, brevitas.waveform))
    log(f"parity on {utterance.name}: golden_vs_brevitas {result['golden_vs_brevitas_mismatches']} of "
        f"{result['golden_values_compared']} codes differ, waveform max|d|="
        f"{result['golden_vs_brevitas_waveform_max_abs']:.3g}")
    return {**result, "golden_input": utterance.name}


def _qonnx_parity(quantized, qonnx_model, utterance: Utterance, cfg, log) -> dict:
    x = utterance.inputs(cfg.cues, cfg.mic_channels)
    result = parity.compare(_forward(quantized, x), run_qonnx(qonnx_model, x), utterance.target)
    log(f"parity on {utterance.name}: qonnx_vs_brevitas max|d|={result['max_abs']:.3g} "
        f"dSI-SDR={result['si_sdr_diff_db']:.4f} dB")
    return {"qonnx_vs_brevitas_max_abs": result["max_abs"], "qonnx_vs_brevitas_si_sdr_db": result["si_sdr_diff_db"],
            "qonnx_vs_brevitas_peak": result["peak"], "qonnx_input": utterance.name}


def demo_si_sdr(model, utterance: Utterance) -> dict[str, float]:
    """Run one exported file (a path, or its session) with onnxruntime on `utterance`; SI-SDR of its
    output and of mic 0, and the run's seconds."""
    session = ort_session.session(model) if isinstance(model, (str, Path)) else model
    wanted = {i.name for i in session.get_inputs()}
    channels = session.get_inputs()[0].shape[1]
    inputs = utterance.inputs(tuple(n for n in (VOICEPRINT, VISUAL) if n in wanted), int(channels))
    start = time.perf_counter()
    estimate = ort_session.run(session, inputs)[0]
    seconds = time.perf_counter() - start
    return {"si_sdr_db": float(si_sdr(estimate, utterance.target)),
            "mixture_si_sdr_db": float(si_sdr(utterance.mixture[0], utterance.target)),
            "seconds": seconds, "audio_seconds": utterance.target.shape[-1] / SAMPLE_RATE}


def _json(report: dict) -> str:
    import json
    return json.dumps(report, indent=2) + "\n"
