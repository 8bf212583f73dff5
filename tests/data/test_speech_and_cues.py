"""The public steps (talker, spatialise, mix, voiceprint, visual features) and the --speech path."""
import pickle

import numpy as np
import pytest
import soundfile as sf

from limuse_edge.data import MCGridDataset, layout
from limuse_edge.data.build import build_corpus
from limuse_edge.data.cues import face_appearance, visual_features, voiceprint
from limuse_edge.data.spatial import (MIC_SPACING, SPEED_OF_SOUND, inter_mic_delay, mix, snr_at_mic0,
                                      spatialise)
from limuse_edge.data.talker import grid_sentence, make_speaker, sentence_from_id, synthesize


def _gcc_phat_delay(x0, x1, upsample=64):
    """Arrival at mic 1 minus arrival at mic 0, in samples."""
    n = 2 * len(x0)
    cross = np.fft.rfft(x1, n) * np.conj(np.fft.rfft(x0, n))
    corr = np.fft.irfft(cross / (np.abs(cross) + 1e-12), n * upsample)
    lag = np.argmax(np.concatenate([corr[-20 * upsample:], corr[:20 * upsample + 1]])) - 20 * upsample
    return lag / upsample


@pytest.mark.parametrize("azimuth", [0.0, np.pi / 3, np.pi / 2, 2.2, np.pi, 4.0, 5.5])
def test_inter_mic_delay_matches_azimuth(azimuth):
    rng = np.random.default_rng(0)
    source = rng.standard_normal(8000)
    image = spatialise(source, azimuth, 2.0)
    measured = _gcc_phat_delay(image[0], image[1])
    far_field = -MIC_SPACING * np.cos(azimuth) / SPEED_OF_SOUND * 16000  # mic 1 sits at +x
    assert measured == pytest.approx(inter_mic_delay(azimuth, 2.0), abs=0.03)
    assert measured == pytest.approx(far_field, abs=0.05)


def test_attenuation_is_one_over_distance():
    source = np.random.default_rng(1).standard_normal(4000)
    near, far = spatialise(source, 1.0, 1.0), spatialise(source, 1.0, 3.0)
    ratio = np.sqrt(np.sum(near[0] ** 2) / np.sum(far[0] ** 2))
    assert ratio == pytest.approx(3.0, rel=0.01)


def test_mix_hits_the_snr_and_adds_exactly():
    rng = np.random.default_rng(2)
    t, i = spatialise(rng.standard_normal(4000), 0.5, 1.5), spatialise(rng.standard_normal(4000) * 3, 2.0, 2.5)
    for snr in (-5.0, 0.0, 3.7):
        mixture, target, interferer = mix(t, i, snr)
        assert snr_at_mic0(target[0], interferer[0]) == pytest.approx(snr, abs=1e-9)
        assert np.array_equal(mixture, target + interferer)


def test_talker_speakers_are_distinguishable_and_utterances_vary():
    """Nearest-neighbour speaker ID with the voiceprint, 8 speakers x 3 utterances of 1.5 s."""
    embeddings, labels, waves = [], [], []
    for k in range(8):
        spk = make_speaker(f"s{k}", "fm"[k % 2], np.random.default_rng(50 + k))
        for u in range(3):
            rng = np.random.default_rng([k, u])
            _, words = grid_sentence(rng)
            wave = synthesize(spk, words, 24000, rng)
            waves.append(wave)
            embeddings.append(voiceprint(wave))
            labels.append(k)
    sim = np.array(embeddings) @ np.array(embeddings).T
    np.fill_diagonal(sim, -np.inf)
    accuracy = np.mean(np.array(labels)[sim.argmax(axis=1)] == labels)
    assert accuracy >= 0.8
    assert not np.allclose(waves[0], waves[1])
    assert all(np.isfinite(w).all() and 0.3 < np.abs(w).max() <= 0.51 for w in waves)


def test_talker_has_pauses_and_unvoiced_segments():
    spk = make_speaker("s1", "m", np.random.default_rng(3))
    rng = np.random.default_rng(4)
    wave = synthesize(spk, sentence_from_id("sgbs6s"), 48000, rng).astype(np.float64)  # set green by s six soon
    frames = wave[: len(wave) // 320 * 320].reshape(-1, 320)
    level = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(320), axis=1)) ** 2
    high_share = spectrum[:, 80:].sum(axis=1) / (spectrum.sum(axis=1) + 1e-20)  # above 4 kHz
    loud = level > level.max() - 30
    first, last = np.flatnonzero(loud)[[0, -1]]
    inside = slice(first, last)
    assert np.mean(~loud[inside]) > 0.05  # pauses and closures within the sentence
    assert np.sum(loud & (high_share > 0.5)) >= 5  # fricatives ('s' three times)
    assert np.sum(loud & (high_share < 0.05)) >= 30  # voiced, low-frequency frames


def test_visual_features_carry_the_target_timing():
    spk = make_speaker("s1", "f", np.random.default_rng(5))
    waves = [synthesize(spk, grid_sentence(np.random.default_rng(s))[1], 48000, np.random.default_rng(s))
             for s in (10, 11)]
    face = face_appearance(9)
    tracks = [(visual_features(w, 9, lag_seconds=0.02, rng=np.random.default_rng(0)) - face["appearance"])
              @ face["open"] / 256 for w in waves]
    assert tracks[0].shape == (75,)
    envelopes = [np.log10(np.mean(w.reshape(75, 640).astype(np.float64) ** 2, axis=1) + 1e-9) for w in waves]
    own = np.corrcoef(tracks[0], envelopes[0])[0, 1]
    other = np.corrcoef(tracks[0], envelopes[1])[0, 1]
    assert own > 0.7 and other < own - 0.3


def test_speech_dir_is_resampled_split_by_speaker_and_gender(tmp_path, make_speech_dir):
    speech = tmp_path / "speech"
    genders = make_speech_dir(speech, n_speakers=6, n_utts=3, rate=22050)
    out = tmp_path / "corpus"
    stats = build_corpus(out, 4, 2, 2, seed=3, seconds=1.0, speech_dir=speech, workers=1, progress=False)
    assert all(len(stats["speakers"][s]) == 2 for s in layout.SPLITS)
    assert len(set(sum(stats["speakers"].values(), []))) == 6
    with open(out / layout.VOICEPRINT_FILE, "rb") as f:
        table = pickle.load(f)
    for split in layout.SPLITS:
        lines = layout.read_list(out, split)
        spk_genders = {}
        for line in lines:
            assert sf.info(str(out / line.mixture)).samplerate == 16000
            assert sf.info(str(out / line.mixture)).frames == 16000
            spk = line.lip.split("/")[2]
            assert "_" not in spk and "_" not in line.lip.split("/")[3]  # p225_001 -> p225-001
            assert line.target_gender == genders[spk]  # estimated from pitch
            spk_genders[spk] = line.target_gender
            assert line.voiceprint_key in table
        assert sorted(spk_genders.values()) == ["f", "m"]
        item = MCGridDataset(out, split=split)[0]
        assert item["mixture"].shape == (2, 16000)
