"""The native engine on limuse_k32 -inorm (the bundled limuse_k32_w3a8_po2_inorm): the packed file's size
against the 0.20 MiB goal, and every tensor against the golden engine at 3 s and 10 s of the demo sample
(tiled to 10 s), each from a QONNX export at that length (QONNX files are static).

    pytest -s benchmarks/test_native.py      ->  benchmarks/results/native.{json,md}

The 3 s export takes about 5 min on an idle core (11 min beside other jobs); 10 s about three times that.
LIMUSE_K32_INORM_QONNX_3S / _10S: reuse a QONNX file this exporter wrote from the same model and the same
tiled demo input at that length, instead of exporting again.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

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


@pytest.mark.parametrize("seconds", [3, 10])
def test_native_equals_golden_on_limuse_k32(seconds, rows, tmp_path):
    from limuse_edge import pretrained
    from limuse_edge.metrics import si_sdr
    from limuse_export.pack_check import compare_with_golden
    from limuse_export.pipeline import export_onnx
    from limuse_export.prepare import exportable
    from limuse_export.save import save_onnx
    from limuse_runtime.native import build, library_path

    if library_path() is None:
        build.build()
    torch.set_num_threads(1)
    model = pretrained.from_pretrained(MODEL).eval()
    inputs, target = demo_inputs(seconds * SAMPLE_RATE)
    started = time.perf_counter()
    reused = os.environ.get(f"LIMUSE_K32_INORM_QONNX_{seconds}S")
    qonnx = Path(reused) if reused else tmp_path / f"k32_inorm_{seconds}s.qonnx.onnx"
    if not reused:
        save_onnx(export_onnx("qonnx", exportable(model), {k: torch.from_numpy(v) for k, v in inputs.items()}), qonnx)
    export_s = None if reused else round(time.perf_counter() - started, 1)
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
