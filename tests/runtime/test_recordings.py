"""limuse-run on real recordings: --resample (other sample rates, >= 8 kHz) and --channels (two
microphones of a wider array); the bad cases are one-line errors with no output file."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from limuse_runtime.cli import main


def _speech(channels: int, seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    tones = [np.sin(2 * np.pi * f * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t + c)) for c, f in
             enumerate(rng.uniform(120, 900, channels))]
    return (0.2 * np.stack(tones, 1) + 0.01 * rng.standard_normal((len(t), channels))).astype(np.float32)


@pytest.fixture
def cues(tmp_path):
    np.save(tmp_path / "vp.npy", np.ones(512, np.float32))
    out = tmp_path / "out"
    out.mkdir()
    return tmp_path / "vp.npy", out


def _run(model, mixture, voiceprint, out, *extra) -> int:
    return main(["--model", str(model), "--mixture", str(mixture), "--voiceprint", str(voiceprint),
                 "--out", str(out), *extra])


def test_resample_converts_a_44k1_recording_to_16k(tiny_float_onnx, cues, tmp_path):
    voiceprint, out = cues
    sf.write(tmp_path / "mix44k.wav", _speech(2, 1.0, 44100), 44100, subtype="FLOAT")
    assert _run(tiny_float_onnx, tmp_path / "mix44k.wav", voiceprint, out / "a.wav", "--resample") == 0
    target, rate = sf.read(out / "a.wav")
    assert rate == 16000 and len(target) == 16000 and np.isfinite(target).all()
    # the same as running on the file soxr converts by itself
    import soxr
    sf.write(tmp_path / "mix16k.wav", soxr.resample(_speech(2, 1.0, 44100), 44100, 16000, quality="HQ"), 16000,
             subtype="FLOAT")
    assert _run(tiny_float_onnx, tmp_path / "mix16k.wav", voiceprint, out / "b.wav") == 0
    np.testing.assert_allclose(target, sf.read(out / "b.wav")[0], atol=1e-6)


def test_resample_leaves_a_16k_file_as_it_is(tiny_float_onnx, cues, tmp_path):
    voiceprint, out = cues
    sf.write(tmp_path / "mix.wav", _speech(2, 1.0, 16000), 16000, subtype="FLOAT")
    assert _run(tiny_float_onnx, tmp_path / "mix.wav", voiceprint, out / "a.wav", "--resample") == 0
    assert _run(tiny_float_onnx, tmp_path / "mix.wav", voiceprint, out / "b.wav") == 0
    np.testing.assert_array_equal(sf.read(out / "a.wav")[0], sf.read(out / "b.wav")[0])


def test_channels_picks_two_microphones_of_a_wider_array(tiny_float_onnx, cues, tmp_path):
    voiceprint, out = cues
    array = _speech(4, 1.0, 16000)
    sf.write(tmp_path / "array.wav", array, 16000, subtype="FLOAT")
    sf.write(tmp_path / "pair.wav", array[:, [2, 0]], 16000, subtype="FLOAT")
    assert _run(tiny_float_onnx, tmp_path / "array.wav", voiceprint, out / "a.wav", "--channels", "2,0") == 0
    assert _run(tiny_float_onnx, tmp_path / "pair.wav", voiceprint, out / "b.wav") == 0
    np.testing.assert_array_equal(sf.read(out / "a.wav")[0], sf.read(out / "b.wav")[0])


def test_channels_and_resample_together(tiny_float_onnx, cues, tmp_path):
    voiceprint, out = cues
    sf.write(tmp_path / "array48k.wav", _speech(6, 1.0, 48000), 48000, subtype="PCM_16")
    assert _run(tiny_float_onnx, tmp_path / "array48k.wav", voiceprint, out / "a.wav", "--channels", "4,5",
                "--resample") == 0
    assert len(sf.read(out / "a.wav")[0]) == 16000


BAD = {
    # name: (channels, rate of the file, extra arguments, words the message must contain)
    "rate_without_resample": (2, 44100, [], ["sample rate 44100 Hz", "16000 Hz", "--resample"]),
    "resample_below_8k": (2, 6000, ["--resample"], ["6000 Hz", "below 8000 Hz", "--resample"]),
    "channels_beyond_the_file": (4, 16000, ["--channels", "0,5"], ["index 5", "beyond the 4 channel(s)", "0..3"]),
    "wider_array_without_channels": (4, 16000, [], ["4 channels", "2 channels", "--channels"]),
    "channels_count_differs_from_the_model": (4, 16000, ["--channels", "1"], ["1 channel(s)", "expects 2"]),
    "channels_not_indices": (4, 16000, ["--channels", "a,b"], ["--channels: got 'a,b'", "0,1"]),
    "channels_repeated": (4, 16000, ["--channels", "1,1"], ["distinct"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_recording_options_are_one_line_errors(case, tiny_float_onnx, cues, tmp_path, capsys):
    channels, rate, extra, words = BAD[case]
    voiceprint, out = cues
    sf.write(tmp_path / "mix.wav", _speech(channels, 1.0, rate), rate, subtype="FLOAT")
    code = _run(tiny_float_onnx, tmp_path / "mix.wav", voiceprint, out / "t.wav", *extra)
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and err.startswith("limuse-run: error: "), err
    for word in words:
        assert word in err, err
    assert list(out.iterdir()) == []
