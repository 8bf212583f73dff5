"""Every preset the -po2-inorm recipe trains, packed and run by the native engine, against the golden
engine tensor by tensor: limuse_k32, limuse_k16 and their no_cc / no_vp / no_vis rows (not the raw rows:
ungrouped, 8.9 M parameters, no context codec; not packed here).

    pytest -s --runslow benchmarks/test_native_presets.py   ->  benchmarks/results/native_presets.{json,md}

Each model is built untrained from its preset, its activation quantizers calibrated on random input (the
codes then span their ranges, which is what the integer kernels must get right), exported to QONNX at
0.6 s (9 600 samples, 15 video frames; a window of its own, as every packed file has) and packed as the
main job packs. The shipped (fused) program's tensors are compared with the golden engine's.
"""
from __future__ import annotations

import time

import pytest
import torch
from golden_reference import export_qonnx, golden_inputs

from limuse_runtime.contract import VOICEPRINT, n_video_frames

PRESETS = ("limuse_k32", "limuse_k16", "no_cc_k32", "no_cc_k16", "no_vp_k32", "no_vp_k16", "no_vis_k32",
           "no_vis_k16")
RECIPE = "w3a8-po2-inorm"
SAMPLES = 9600


@pytest.fixture(scope="module")
def rows():
    return {}


def _calibrated(preset: str):
    from limuse_edge.checkpoint import build_model
    from limuse_edge.quant import calibrate
    torch.manual_seed(0)
    model = build_model(preset, RECIPE).eval()
    frames = n_video_frames(SAMPLES)

    def cued(inputs):  # only the inputs the preset's cues take
        keep = {"mixture"} | {VOICEPRINT if c == "voiceprint" else c for c in model.config.cues}
        return {k: v for k, v in inputs.items() if k in keep}

    calibrate(model, [cued(golden_inputs(model, SAMPLES, frames, seed=100 + s)) for s in range(2)])
    return model.eval(), cued(golden_inputs(model, SAMPLES, frames, seed=1))


@pytest.mark.slow(reason="eight paper presets exported to QONNX and checked tensor by tensor, about 5 min")
@pytest.mark.parametrize("preset", PRESETS)
def test_preset_runs_bit_exact_in_the_native_engine(preset, rows, tmp_path):
    from limuse_export.checks.pack_check import compare_with_golden
    from limuse_runtime.native import NativeModel
    torch.set_num_threads(1)
    start = time.perf_counter()
    model, inputs = _calibrated(preset)
    qonnx = export_qonnx(model, inputs, tmp_path / f"{preset}.qonnx.onnx")
    packed = tmp_path / f"{preset}.packed.bin"
    stats = compare_with_golden(qonnx, {k: v.numpy() for k, v in inputs.items()}, packed)
    native = NativeModel(packed)
    rows[preset] = {"preset": preset, "cues": list(model.config.cues), "context_codec": model.config.context_codec,
                    "packed_bytes": packed.stat().st_size, "scratch_bytes": native.scratch_bytes,
                    "fused": stats["fused"], "int_tensors": stats["int_tensors"], "int_values": stats["int_values"],
                    "int_mismatches": stats["int_mismatches"], "float_tensors": stats["float_tensors"],
                    "float_mismatched": len(stats["float_mismatched"]),
                    "waveform_max_abs": stats["waveform_max_abs"], "waveform_peak": stats["waveform_peak"],
                    "seconds": round(time.perf_counter() - start, 1)}
    assert stats["int_mismatches"] == 0, stats["mismatched"]
    assert stats["float_mismatched"] == []
    assert stats["waveform_max_abs"] <= 1e-5 * stats["waveform_peak"]
    assert stats["fused"]["gcblock"] > 0 and (not model.config.context_codec or stats["fused"]["tac"] > 0)
    assert native.has_voiceprint == ("voiceprint" in model.config.cues)
    assert native.has_visual == ("visual" in model.config.cues)


def test_write_report(rows, results):
    if not rows:
        pytest.skip("no preset ran (they run with --runslow)")
    table = [[r["preset"], "+".join(r["cues"]) or "-", "yes" if r["context_codec"] else "no", r["packed_bytes"],
              f"{r['scratch_bytes'] / 2 ** 20:.1f}", r["int_tensors"], f"{r['int_values']:,}", r["int_mismatches"],
              r["float_mismatched"], f"{r['waveform_max_abs']:.2g} / {r['waveform_peak']:.3g}", r["seconds"]]
             for r in rows.values()]
    markdown = (f"# Native engine on every -po2-inorm preset ({RECIPE}, untrained and calibrated, {SAMPLES} "
                f"samples)\n\n" + results.table(
                    ["preset", "cues", "codec", "packed bytes", "scratch MiB", "int tensors", "int values",
                     "int mismatches", "float mismatched", "waveform max abs / peak", "s"], table) +
                "\nEvery integer tensor the fused program keeps against the golden engine's (0 is the goal), "
                "every float tensor bit for bit, the waveform within float rounding of the float decoder.\n")
    results.write("native_presets", {"recipe": RECIPE, "samples": SAMPLES, "rows": list(rows.values())}, markdown)
