"""limuse-run golden on recordings of any length: the QONNX file is static (one window); shorter
recordings run zero-padded, longer ones in windows of the file's length, cross-faded."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from limuse_runtime.contract import n_video_frames
from limuse_runtime.cli import main
from limuse_runtime.golden import GoldenEngine
from limuse_runtime.streaming import fixed_length_windows

WINDOW = 1600  # samples of the static QONNX file here (0.1 s, 3 video frames)


def test_fixed_length_windows_reproduce_a_signal_the_backend_passes_through():
    signal = np.random.default_rng(0).standard_normal(10_007).astype(np.float32)

    def run(start):
        chunk = signal[start:start + WINDOW]
        return np.pad(chunk, (0, WINDOW - len(chunk)))

    for n in (700, WINDOW, 2500, 10_007):
        np.testing.assert_allclose(fixed_length_windows(run, n, WINDOW), signal[:n], atol=1e-6)


@pytest.fixture(scope="module")
def tiny_po2_qonnx(tmp_path_factory):
    from limuse_edge.checkpoint import build_model
    from limuse_edge.quant import calibrate
    from limuse_export.pipeline import export_onnx
    from limuse_export.prepare import example_inputs, exportable
    from limuse_export.save import save_onnx
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model("tiny", "w3a8-po2").eval()
    calibrate(model, [example_inputs(model, WINDOW, seed=s) for s in range(2)])
    path = tmp_path_factory.mktemp("golden_windows") / "tiny.qonnx.onnx"
    save_onnx(export_onnx("qonnx", exportable(model), example_inputs(model, WINDOW)), path)
    return path


def _files(folder, n_samples, seed=0):
    rng = np.random.default_rng(seed)
    mixture = (0.2 * rng.standard_normal((n_samples, 2))).astype(np.float32)
    sf.write(folder / "mix.wav", mixture, 16000, subtype="FLOAT")
    voiceprint, visual = rng.standard_normal(512).astype(np.float32), rng.standard_normal((n_video_frames(n_samples), 256))
    np.save(folder / "vp.npy", voiceprint)
    np.save(folder / "vis.npy", visual.astype(np.float32))
    return mixture.T, voiceprint, visual.astype(np.float32)


def _golden(model, folder, *extra):
    return main(["golden", "--model", str(model), "--mixture", str(folder / "mix.wav"), "--voiceprint",
                 str(folder / "vp.npy"), "--visual", str(folder / "vis.npy"), "--out", str(folder / "y.wav"), *extra])


def _engine_run(engine, mixture, voiceprint, visual):
    return engine.run({"mixture": mixture[None], "voiceprint": voiceprint[None], "visual": visual[None]})["target"][0]


def test_a_recording_of_the_file_s_length_is_one_run(tiny_po2_qonnx, tmp_path):
    mixture, voiceprint, visual = _files(tmp_path, WINDOW)
    assert _golden(tiny_po2_qonnx, tmp_path) == 0
    expected = _engine_run(GoldenEngine(tiny_po2_qonnx), mixture, voiceprint, visual)
    np.testing.assert_array_equal(sf.read(tmp_path / "y.wav", dtype="float32")[0], expected)


def test_a_longer_recording_runs_in_windows(tiny_po2_qonnx, tmp_path):
    n = 4 * WINDOW + 333
    mixture, voiceprint, visual = _files(tmp_path, n, seed=1)
    assert _golden(tiny_po2_qonnx, tmp_path) == 0
    out = sf.read(tmp_path / "y.wav", dtype="float32")[0]
    assert out.shape == (n,) and np.isfinite(out).all()
    # before the second window starts, the output is the first window's alone
    first = _engine_run(GoldenEngine(tiny_po2_qonnx), mixture[:, :WINDOW], voiceprint, visual[:3])
    np.testing.assert_array_equal(out[:WINDOW // 2], first[:WINDOW // 2])


def test_a_shorter_recording_runs_zero_padded(tiny_po2_qonnx, tmp_path):
    mixture, voiceprint, visual = _files(tmp_path, 1000, seed=2)
    assert _golden(tiny_po2_qonnx, tmp_path) == 0
    padded = np.pad(mixture, ((0, 0), (0, WINDOW - 1000)))
    expected = _engine_run(GoldenEngine(tiny_po2_qonnx), padded, voiceprint, visual[[0, 1, 1]])
    np.testing.assert_array_equal(sf.read(tmp_path / "y.wav", dtype="float32")[0], expected[:1000])


def test_dump_needs_the_file_s_length(tiny_po2_qonnx, tmp_path, capsys):
    _files(tmp_path, 2 * WINDOW)
    assert _golden(tiny_po2_qonnx, tmp_path, "--dump", str(tmp_path / "vectors")) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--dump" in err and f"exactly {WINDOW}" in err
    assert not (tmp_path / "y.wav").exists() and not (tmp_path / "vectors").exists()


@pytest.mark.parametrize("n_samples", [WINDOW, 2 * WINDOW + 77])
def test_a_missing_visual_means_no_face(tiny_po2_qonnx, tmp_path, n_samples):
    """Without --visual the model sees an all-zero track, as the onnxruntime and native backends do."""
    _files(tmp_path, n_samples, seed=3)
    np.save(tmp_path / "vis.npy", np.zeros((n_video_frames(n_samples), 256), np.float32))
    assert _golden(tiny_po2_qonnx, tmp_path) == 0
    with_zeros = sf.read(tmp_path / "y.wav", dtype="float32")[0]
    assert main(["golden", "--model", str(tiny_po2_qonnx), "--mixture", str(tmp_path / "mix.wav"), "--voiceprint",
                 str(tmp_path / "vp.npy"), "--out", str(tmp_path / "none.wav")]) == 0
    np.testing.assert_array_equal(sf.read(tmp_path / "none.wav", dtype="float32")[0], with_zeros)
