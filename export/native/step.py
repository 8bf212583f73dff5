"""The export pipeline's native step: `<name>.packed.bin` from the QONNX file, for models of the recipe the
native engine represents (power-of-two scales and integer norms, `w3a8-po2-inorm`), checked against
Brevitas on the QONNX file's input and run once on the demo sample through limuse-run's windowing.

pack_and_run runs in the pipeline's side job (a forked second process by default), native_entry in the main one.
The packed model has the QONNX file's static length (one window); limuse-run cuts longer recordings into
windows of that length (limuse_runtime.native.binding.native_separator).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from limuse_edge.metrics import si_sdr
from limuse_export.checks import parity
from limuse_export.demo_sample import Utterance
from limuse_export.native.format import RECIPE, PackError
from limuse_export.native.pack import pack
from limuse_runtime.contract import MIXTURE, SAMPLE_RATE, VISUAL, VOICEPRINT, atomic_write_bytes
from limuse_runtime.voiceprint import VOICEPRINT_VERSION, VOICEPRINT_VERSION_KEY


def native_applies(quantized) -> "str | None":
    """None if the model can be packed, else why not (naming the recipe that can)."""
    if quantized is None:
        return f"a float model; the native engine runs quantized models of recipe {RECIPE}"
    recipe = quantized.recipe
    missing = [what for what, ok in (("power-of-two scales", recipe.power_of_two),
                                     ("integer norms", recipe.integer_norm)) if not ok]
    if missing:
        return f"recipe {recipe.name} lacks {' and '.join(missing)}; the native engine needs recipe {RECIPE}"
    return None


def pack_and_run(name: str, quantized, qonnx_bytes: bytes, qonnx_utterance: Utterance, demo: Utterance, cfg,
                 log: Callable[[str], None] = print) -> dict:
    """Packs the QONNX file (given as bytes: the pipeline writes its files only when every export is done)
    and runs the engine on the QONNX file's input and on the demo sample through limuse-run's windowing.
    Returns {"skipped"|"error": why} or the packed bytes and both outputs, for native_entry."""
    why_not = native_applies(quantized)
    if why_not:
        return {"skipped": why_not}
    from limuse_runtime.native import NativeModel, build, library_path
    from limuse_runtime.native.binding import native_separator
    from limuse_runtime.streaming import separate_array
    if library_path() is None:  # an editable install: compile the engine in place
        build.build()
    with tempfile.TemporaryDirectory(prefix="limuse_native_") as tmp:
        qonnx_path, path = Path(tmp) / "model.qonnx.onnx", Path(tmp) / f"{name}.packed.bin"
        qonnx_path.write_bytes(qonnx_bytes)
        try:
            pack(qonnx_path, path, {"name": name, "recipe": quantized.recipe.name, "config": cfg.to_dict(),
                                    VOICEPRINT_VERSION_KEY: VOICEPRINT_VERSION})
        except PackError as exc:
            return {"error": str(exc)}
        model = NativeModel(path)
        x = qonnx_utterance.inputs(cfg.cues, cfg.mic_channels)
        estimate = model.run(x[MIXTURE][0], x[VOICEPRINT][0] if VOICEPRINT in x else None,
                             x[VISUAL][0] if VISUAL in x else None)
        separator, plan = native_separator(path)
        started = time.perf_counter()
        y = separate_array(separator, demo.mixture[:cfg.mic_channels],
                           demo.voiceprint if "voiceprint" in cfg.cues else None,
                           demo.visual if "visual" in cfg.cues else None, plan)
        seconds = time.perf_counter() - started
        return {"packed": path.read_bytes(), "window_samples": model.window, "scratch_bytes": model.scratch_bytes,
                "estimate": estimate,
                "demo_output": y, "demo_seconds": seconds}


def native_entry(name: str, run: dict, reference: np.ndarray, qonnx_utterance: Utterance, demo: Utterance,
                 out: Path, log: Callable[[str], None] = print) -> dict:
    """Writes out/<name>.packed.bin from pack_and_run's result; returns the report's "native" entry, the
    engine compared with Brevitas's output `reference` on the QONNX file's input."""
    if "packed" not in run:
        return run
    path = out / f"{name}.packed.bin"
    atomic_write_bytes(path, run["packed"])
    size = len(run["packed"])
    log(f"wrote {path} ({size} bytes, {size / 2 ** 20:.3f} MiB)")
    check = parity.compare(reference, run["estimate"][None], qonnx_utterance.target)
    entry = {"file": path.name, "bytes": size, "window_samples": run["window_samples"],
             "scratch_bytes": run["scratch_bytes"],
             "vs_brevitas_max_abs": check["max_abs"], "vs_brevitas_si_sdr_db": check["si_sdr_diff_db"],
             "vs_brevitas_input": qonnx_utterance.name,
             "demo_si_sdr_db": float(si_sdr(run["demo_output"], demo.target)),
             "demo_seconds": round(run["demo_seconds"], 3), "demo_audio_seconds": demo.target.shape[-1] / SAMPLE_RATE}
    log(f"native engine: {path.name} vs Brevitas on {qonnx_utterance.name} max|d|={check['max_abs']:.3g} "
        f"dSI-SDR={check['si_sdr_diff_db']:.4f} dB; demo SI-SDR {entry['demo_si_sdr_db']:.2f} dB in "
        f"{entry['demo_seconds']:.2f} s")
    return entry
