"""The builder's output: layout, formats, physics of every line, determinism."""
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from limuse_edge.data import layout
from limuse_edge.data.build import build_corpus
from limuse_edge.data.spatial import snr_at_mic0, spatialise


def _lines(root):
    return {split: layout.read_list(root, split) for split in layout.SPLITS}


def test_layout_and_formats(tiny_corpus):
    root, _ = tiny_corpus
    lines = _lines(root)
    assert {s: len(v) for s, v in lines.items()} == {"train": 6, "valid": 4, "test": 4}
    with open(root / layout.VOICEPRINT_FILE, "rb") as f:
        voiceprints = pickle.load(f)
    n_faces = 0
    for split, split_lines in lines.items():
        for line in split_lines:
            for rel in (line.mixture, line.target, line.reference, line.lip):
                assert rel.split("/")[1] == split
            mixture, rate = sf.read(root / line.mixture, always_2d=True)
            assert rate == 16000 and mixture.shape == (16000, 2)
            target, rate = sf.read(root / line.target, always_2d=True)
            assert rate == 16000 and target.shape == (16000, 1)
            assert sf.info(str(root / line.reference)).samplerate == 16000
            lip = root / line.lip
            if lip.exists():
                n_faces += 1
                features = np.load(lip)
                assert features.shape == (25, 256) and features.dtype == np.float32
            assert 0 <= line.target_azimuth < 2 * np.pi and 0 <= line.interferer_azimuth < 2 * np.pi
            assert 1.0 <= line.target_distance <= 4.0 and 1.0 <= line.interferer_distance <= 4.0
            assert line.target_gender in "mf" and line.interferer_gender in "mf"
            for key in (line.voiceprint_key, line.reference_key):
                vp = voiceprints[key]
                assert vp.shape == (512,) and vp.dtype == np.float32
                assert np.linalg.norm(vp) == pytest.approx(1.0, abs=1e-5)
    assert 0 < n_faces < 14  # no_face_fraction=0.3: some utterances have no face track


def test_published_key_format(tiny_corpus):
    root, _ = tiny_corpus
    line = layout.read_list(root, "test")[0]
    # The published loader: '_'.join(target_basename.split('_')[2:4]) + '.wav'
    published = "_".join(Path(line.target).name.split("_")[2:4]) + ".wav"
    assert line.voiceprint_key == published
    assert published == f"{Path(line.lip).parent.name}_{Path(line.lip).stem}.wav"


def test_speakers_disjoint_and_gender_balanced(tiny_corpus):
    root, stats = tiny_corpus
    speakers = stats["speakers"]
    assert not set(speakers["train"]) & set(speakers["valid"])
    assert not set(speakers["train"]) & set(speakers["test"])
    assert not set(speakers["valid"]) & set(speakers["test"])
    for split, split_lines in _lines(root).items():
        genders = {}
        for line in split_lines:
            genders[Path(line.lip).parent.name] = line.target_gender
            assert Path(line.reference).parent.name == Path(line.lip).parent.name  # reference: the target's voice
            assert Path(line.reference).stem != Path(line.lip).stem  # ...in another utterance
        assert sorted(genders.values()).count("f") * 2 == len(genders) or len(genders) < len(speakers[split])


def _fit(columns, observed):
    """Least-squares scales and the residual energy relative to the observation."""
    a = np.stack([c.ravel() for c in columns], axis=1)
    scales, *_ = np.linalg.lstsq(a, observed.ravel(), rcond=None)
    residual = observed.ravel() - a @ scales
    return scales, np.sum(residual ** 2) / np.sum(observed ** 2)


def test_every_line_is_target_plus_interferer_with_its_geometry(tiny_corpus):
    """Mixture (both mics) = a * target image + b * interferer image, rebuilt from the clean utterances."""
    root, _ = tiny_corpus
    for split, split_lines in _lines(root).items():
        for line in split_lines:
            mixture, _ = sf.read(root / line.mixture)
            target_file, _ = sf.read(root / line.target)
            t_spk, t_utt, i_spk, i_utt = Path(line.mixture).name.split("_")[2:6]
            clean_t, _ = sf.read(root / layout.reference_path(split, t_spk, t_utt))
            clean_i, _ = sf.read(root / layout.reference_path(split, i_spk, i_utt))
            image_t = spatialise(clean_t, line.target_azimuth, line.target_distance)
            image_i = spatialise(clean_i, line.interferer_azimuth, line.interferer_distance)
            (a, b), rel = _fit([image_t.T, image_i.T], mixture)
            assert rel < 1e-6, (line.mixture, rel)  # 16-bit rounding only
            # The target file is the target as heard at mic 0, with the mixture's scale.
            assert np.max(np.abs(target_file - a * image_t[0])) < 2e-4
            # target at mic 0 + interferer at mic 0 = mixture at mic 0
            assert np.max(np.abs(target_file + b * image_i[0] - mixture[:, 0])) < 2e-4
            # The azimuth matters: the other source's geometry explains the mixture worse.
            _, wrong = _fit([spatialise(clean_t, line.target_azimuth + np.pi / 2, line.target_distance).T,
                             image_i.T], mixture)
            assert wrong > 100 * rel


def test_snr_of_every_line_in_range(tiny_corpus):
    root, stats = tiny_corpus
    snrs = []
    for split_lines in _lines(root).values():
        for line in split_lines:
            mixture, _ = sf.read(root / line.mixture)
            target, _ = sf.read(root / line.target)
            snrs.append(snr_at_mic0(target, mixture[:, 0] - target))
    assert min(snrs) >= -5.01 and max(snrs) <= 5.01
    assert np.ptp(snrs) > 2  # actually random
    assert np.allclose(sorted(snrs), sorted(stats["snrs"]), atol=1e-6)


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "build_info.json"}


def test_deterministic_for_a_seed_and_any_worker_count(tiny_corpus, tiny_params, tmp_path):
    root, _ = tiny_corpus
    again = tmp_path / "again"
    build_corpus(again, **{**tiny_params, "workers": 2})
    assert _files(again) == _files(root)


def test_another_seed_gives_another_corpus(tiny_params, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    small = {**tiny_params, "n_train": 2, "n_valid": 0, "n_test": 0, "speakers_per_split": {"train": 2, "valid": 0, "test": 0}}
    build_corpus(a, **small)
    build_corpus(b, **{**small, "seed": 8})
    assert (a / "datalist_2mix_train.txt").read_text() != (b / "datalist_2mix_train.txt").read_text()
    assert not (a / "datalist_2mix_valid.txt").read_text()  # an empty split still has its list file
