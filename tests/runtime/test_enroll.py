"""limuse-run enroll: a voiceprint from enrolment wavs with the builder's own extractor; bad references
(silence, too short, not speech, stereo, another rate) are one-line errors with no output file.
(That it equals the builder's grid_vp.pkl entry: tests/data/test_enrolment_matches_corpus.py.)"""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from limuse_runtime.cli import main
from limuse_runtime.voiceprint import voiceprint


def _talker(seconds: float, seed: int) -> np.ndarray:
    from limuse_edge.data.talker import grid_sentence, make_speaker, synthesize
    rng = np.random.default_rng(seed)
    return synthesize(make_speaker(f"s{seed}", "mf"[seed % 2], rng), grid_sentence(rng)[1],
                      int(seconds * 16000), rng).astype(np.float64)


def _wav(path, samples, rate=16000):
    sf.write(str(path), samples, rate, subtype="PCM_16")
    return path


def test_one_reference_gives_the_extractor_s_vector_of_the_stored_samples(tmp_path):
    ref = _wav(tmp_path / "ref.wav", _talker(2.0, 1))
    assert main(["enroll", "--reference", str(ref), "--out", str(tmp_path / "vp.npy")]) == 0
    got = np.load(tmp_path / "vp.npy", allow_pickle=False)
    assert got.shape == (512,) and got.dtype == np.float32
    np.testing.assert_array_equal(got, voiceprint(sf.read(str(ref), dtype="float64")[0]))


def test_several_references_average_to_a_unit_vector(tmp_path):
    refs = [_wav(tmp_path / f"r{i}.wav", _talker(1.5, 2 + 2 * i)) for i in range(2)]
    assert main(["enroll", "--reference", *map(str, refs), "--out", str(tmp_path / "vp.npy")]) == 0
    got = np.load(tmp_path / "vp.npy")
    single = [voiceprint(sf.read(str(r), dtype="float64")[0]) for r in refs]
    mean = np.mean(single, axis=0, dtype=np.float64)
    np.testing.assert_allclose(got, mean / np.linalg.norm(mean), rtol=0, atol=1e-7)
    assert abs(np.linalg.norm(got) - 1) < 1e-6


def test_a_44k1_reference_enrols_with_resample(tmp_path):
    import soxr
    wave16 = _talker(2.0, 3)
    ref = tmp_path / "ref44k.wav"
    sf.write(str(ref), soxr.resample(wave16, 16000, 44100), 44100, subtype="FLOAT")
    assert main(["enroll", "--reference", str(ref), "--out", str(tmp_path / "vp.npy"), "--resample"]) == 0
    # the voiceprint survives the round trip through 44.1 kHz: same speaker, nearly the same vector
    assert float(np.load(tmp_path / "vp.npy") @ voiceprint(wave16)) > 0.99


BAD = {
    # name: (write the reference(s), extra arguments, words the message must contain)
    "silence": (lambda p: [_wav(p / "silent.wav", np.zeros(16000))], [], ["silent", "speaker talking"]),
    "too_short": (lambda p: [_wav(p / "short.wav", _talker(0.3, 4))], [], ["lasts 0.30 s", "at least 0.5 s"]),
    "noise_not_speech": (lambda p: [_wav(p / "noise.wav", 0.3 * np.random.default_rng(0).standard_normal(16000))],
                         [], ["no voiced speech", "speaker talking"]),
    "second_reference_silent": (lambda p: [_wav(p / "ok.wav", _talker(1.0, 5)), _wav(p / "mute.wav", np.zeros(16000))],
                                [], ["mute.wav", "silent"]),
    "stereo": (lambda p: [_wav(p / "stereo.wav", np.stack([_talker(1.0, 6)] * 2, 1))], [], ["2 channels", "mono"]),
    "other_rate": (lambda p: [_wav(p / "r8k.wav", _talker(1.0, 7)[::2], rate=8000)], [], ["8000 Hz", "--resample"]),
    "resample_below_8k": (lambda p: [_wav(p / "r4k.wav", _talker(1.0, 7)[::4], rate=4000)], ["--resample"],
                          ["4000 Hz", "below 8000 Hz"]),
    "missing": (lambda p: [p / "nowhere.wav"], [], ["no such file", "mono 16000 Hz wav"]),
    "not_audio": (lambda p: [_text(p / "notes.wav")], [], ["cannot read", "mono 16000 Hz wav"]),
}


def _text(path):
    path.write_text("not audio\n" * 20)
    return path


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_references_are_one_line_errors_and_write_nothing(case, tmp_path, capsys):
    make, extra, words = BAD[case]
    refs = make(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    code = main(["enroll", "--reference", *map(str, refs), "--out", str(out / "vp.npy"), *extra])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and err.startswith("limuse-run enroll: error: "), err
    for word in words:
        assert word in err, err
    assert list(out.iterdir()) == []
