import json
import shutil

import numpy as np
import pytest
from system_tools import require

from limuse_edge.data.pool import FLITE_VOICES, ROLES, build_pool, plan_voices, read_pool


def test_every_voice_has_one_role_and_flite_is_held_out(speech_pool):
    pool = read_pool(speech_pool)
    assert set(pool.role("unseen")) == {f"flite-{v}" for v in FLITE_VOICES}
    train, valid = pool.role("train"), pool.role("valid")
    assert train and valid and not set(train) & set(valid)
    assert {v["engine"] for v in train.values()} == {"talker", "espeak"}
    # valid espeak voices use variants that no train voice uses: whole voices are held out
    train_variants = {v["params"]["variant"] for v in train.values() if v["engine"] == "espeak"}
    valid_variants = {v["params"]["variant"] for v in valid.values() if v["engine"] == "espeak"}
    assert valid_variants and not train_variants & valid_variants
    vps = np.load(speech_pool / "voiceprints.npz", allow_pickle=False)
    assert len(vps.files) == sum(len(v["utterances"]) for v in pool.voices.values())
    assert all(abs(np.linalg.norm(vps[k]) - 1) < 1e-5 for k in vps.files)


def test_plan_is_deterministic_per_seed():
    require("espeak-ng")  # the plan lists its voice variants
    assert plan_voices(3, 4, 4) == plan_voices(3, 4, 4)
    assert plan_voices(3, 4, 4) != plan_voices(4, 4, 4)


def test_a_voice_in_two_roles_is_refused(speech_pool, tmp_path):
    copy = tmp_path / "pool"
    shutil.copytree(speech_pool, copy)
    name = next(iter(read_pool(copy).role("train")))
    shutil.copytree(copy / "train" / name, copy / "valid" / name)
    with pytest.raises(ValueError, match=f"voice '{name}' is in \\['train', 'valid'\\]"):
        read_pool(copy)


def test_a_pool_is_never_overwritten_and_a_missing_one_is_named(speech_pool, tmp_path):
    with pytest.raises(ValueError, match="already exists"):
        build_pool(speech_pool, seed=1, talkers=4, espeak_voices=0, utterances=2, progress=False)
    with pytest.raises(FileNotFoundError, match="no pool.json"):
        read_pool(tmp_path)


def test_pool_roles_are_corpus_speech_dirs(speech_pool, tmp_path):
    """make-corpus --speech reads a role folder as is: the unseen-voices test split is built this way."""
    from limuse_edge.data.build import build_corpus
    stats = build_corpus(tmp_path / "unseen", 0, 0, 5, seed=2, seconds=1.0, speech_dir=speech_pool / "unseen",
                         workers=1, progress=False)
    assert set(stats["speakers"]["test"]) == {f"flite-{v}" for v in FLITE_VOICES}
    assert set(ROLES) == {"train", "valid", "unseen"}
