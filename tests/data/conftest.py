"""A tiny synthetic corpus built once per session (about 30 clean utterances of 1 s)."""
import shutil

import numpy as np
import pytest
import soundfile as sf

from limuse_edge.data.build import build_corpus
from limuse_edge.data.talker import grid_sentence, make_speaker, synthesize

TINY = dict(n_train=6, n_valid=4, n_test=4, seed=7, seconds=1.0, no_face_fraction=0.3, workers=1,
            progress=False, speakers_per_split={"train": 4, "valid": 2, "test": 2})


@pytest.fixture(scope="session")
def tiny_params():
    return dict(TINY)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus") / "mc"
    stats = build_corpus(root, **TINY)
    return root, stats


@pytest.fixture
def corpus_copy(tiny_corpus, tmp_path):
    """A private copy that a test may damage."""
    dst = tmp_path / "copy"
    shutil.copytree(tiny_corpus[0], dst)
    return dst


@pytest.fixture
def make_speech_dir():
    return _write_speech_dir


def _write_speech_dir(root, n_speakers=6, n_utts=3, rate=22050, seconds=1.2):
    """DIR/<speaker>/<utterance>.{wav,flac} from the synthetic talker at a foreign rate; returns genders."""
    genders = {}
    for k in range(n_speakers):
        gender = "fm"[k % 2]
        spk = f"p{225 + k}"
        genders[spk] = gender
        talker = make_speaker(spk, gender, np.random.default_rng(k))
        (root / spk).mkdir(parents=True)
        for u in range(n_utts):
            rng = np.random.default_rng([k, u])
            _, words = grid_sentence(rng)
            wave = synthesize(talker, words, int(seconds * 16000), rng)
            t16 = np.arange(len(wave)) / 16000
            wave = np.interp(np.arange(int(seconds * rate)) / rate, t16, wave)
            suffix = ".flac" if u % 2 else ".wav"
            sf.write(str(root / spk / f"{spk}_{u:03d}{suffix}"), wave, rate)
    return genders
