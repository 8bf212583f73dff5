"""The CLI on the bundled demo sample reproduces the SI-SDR that the export report states for the same
model file (limuse_export.pipeline.demo_si_sdr, one onnxruntime pass over the whole utterance)."""
from __future__ import annotations

import soundfile as sf

from limuse_edge.metrics import si_sdr
from limuse_export.demo_sample import DEMO_DIR, load_demo
from limuse_export.pipeline import demo_si_sdr
from limuse_runtime import cli


def test_cli_on_demo_sample_matches_export_report(tiny_float_onnx, tmp_path, capsys):
    demo = load_demo()
    reported = demo_si_sdr(tiny_float_onnx, demo)["si_sdr_db"]

    code = cli.main(["--model", str(tiny_float_onnx), "--mixture", str(DEMO_DIR / "mixture.wav"),
                     "--voiceprint", str(DEMO_DIR / "voiceprint.npy"), "--visual", str(DEMO_DIR / "visual.npy"),
                     "--out", str(tmp_path / "target.wav")])

    assert code == 0, capsys.readouterr().err
    estimate, rate = sf.read(tmp_path / "target.wav", dtype="float32")
    assert rate == 16000 and estimate.shape == demo.target.shape
    assert abs(float(si_sdr(estimate, demo.target)) - reported) < 0.01
