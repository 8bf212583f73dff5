from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from synthetic_audio import speech_like, write_wav
from limuse_edge.metrics import si_sdr
from limuse_runtime.backend import OrtSeparator
from limuse_runtime.errors import InputError
from limuse_runtime.streaming import WindowPlan, separate_array, separate_file, visual_for

# Windowed against single-shot inference on a 7 s input: every window normalises with its own global
# layer-norm statistics and sees no context beyond its edges, so the two differ slightly. Measured with
# the tiny test model: 42 to 47 dB SI-SDR of windowed against single-shot at overlaps 0.2 to 1.0 s.
WINDOWED_MIN_SI_SDR_DB = 30.0


def identity(mixture, voiceprint, visual):
    return mixture[0].copy()


@pytest.mark.parametrize("seconds", [0.04, 1.0, 2.9, 3.0, 4.31, 5.6, 7.0, 61.3])
def test_windows_tile_the_recording(seconds):
    plan = WindowPlan.from_seconds(3.0, 0.4)
    n = int(seconds * 16000)
    spans = plan.windows(n)
    assert spans[0][0] == 0 and spans[-1][1] == n
    for (start, stop), (next_start, _) in zip(spans, spans[1:]):
        assert stop - start == plan.window
        assert stop - next_start == plan.overlap
        assert start % 640 == 0
    last = spans[-1][1] - spans[-1][0]
    if len(spans) > 1:
        assert plan.window - plan.hop / 2 <= last < plan.window + plan.hop / 2


def test_overlap_add_reproduces_a_signal_that_every_window_reproduces():
    mixture = speech_like(2, 9.3)
    out = separate_array(identity, mixture, plan=WindowPlan.from_seconds(3.0, 0.4))
    np.testing.assert_allclose(out, mixture[0], atol=1e-6)


def test_overlap_add_crossfades_linearly():
    # Each window outputs a constant equal to its index: the overlaps must ramp from one to the next.
    calls = []

    def window_index(mixture, voiceprint, visual):
        calls.append(mixture.shape[1])
        return np.full(mixture.shape[1], len(calls) - 1, np.float32)

    plan = WindowPlan.from_seconds(1.0, 0.2)
    out = separate_array(window_index, np.zeros((2, 40_000), np.float32), plan=plan)
    first_overlap = out[plan.hop: plan.window]
    assert np.all(np.diff(first_overlap) > 0)
    assert 0 < first_overlap[0] < 0.01 and 0.99 < first_overlap[-1] < 1
    assert out[0] == 0 and out[plan.window] == 1 and out[-1] == len(calls) - 1


def test_visual_frames_follow_the_window():
    visual = np.arange(100, dtype=np.float32)[:, None] * np.ones((1, 256), np.float32)
    cut = visual_for(visual, 41_600, 41_600 + 48_000)
    np.testing.assert_array_equal(cut[:, 0], np.arange(65, 140).clip(max=99))


def test_windowed_matches_single_shot_on_7_seconds(tiny_float_onnx):
    separator = OrtSeparator(tiny_float_onnx)
    rng = np.random.default_rng(3)
    mixture = speech_like(2, 7.0)
    voiceprint = rng.standard_normal(512).astype(np.float32)
    visual = rng.standard_normal((175, 256)).astype(np.float32)

    single = separator(mixture, voiceprint, visual)
    windowed = separate_array(separator, mixture, voiceprint, visual)

    assert windowed.shape == single.shape == (7 * 16000,)
    assert si_sdr(windowed, single) >= WINDOWED_MIN_SI_SDR_DB
    # Inside the first window (away from its right edge) only the normalisation statistics differ.
    assert si_sdr(windowed[:16000], single[:16000]) >= WINDOWED_MIN_SI_SDR_DB


def test_file_and_array_paths_agree(tiny_float_onnx, tmp_path):
    separator = OrtSeparator(tiny_float_onnx)
    mixture = speech_like(2, 4.5, seed=5)
    voiceprint = np.ones(512, np.float32)
    path = write_wav(tmp_path / "mix.wav", mixture)

    duration = separate_file(separator, separator.contract, path, tmp_path / "out.wav", voiceprint)

    written, rate = sf.read(tmp_path / "out.wav", dtype="float32")
    assert duration == 4.5 and rate == 16000
    np.testing.assert_allclose(written, separate_array(separator, mixture, voiceprint), atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mix.wav", "out.wav"]


def test_window_plan_rejects_misaligned_overlap():
    with pytest.raises(InputError, match="half the window"):
        WindowPlan.from_seconds(2.0, 1.5)
