import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from limuse_edge.data.dynamic import DynamicMixDataset, StreamSampler


@pytest.fixture(scope="module")
def stream(speech_pool):
    return DynamicMixDataset(speech_pool, segment_seconds=0.48, seed=1)


def test_an_item_is_a_pure_function_of_seed_and_index(stream, speech_pool):
    a, b = stream[7], stream[7]
    assert all(torch.equal(a[k], b[k]) for k in ("mixture", "target", "voiceprint", "visual"))
    assert not torch.equal(stream[8]["mixture"], a["mixture"])
    other_seed = DynamicMixDataset(speech_pool, segment_seconds=0.48, seed=2)
    assert not torch.equal(other_seed[7]["mixture"], a["mixture"])


def test_items_have_the_corpus_loader_shapes_and_fresh_pairs(stream):
    items = [stream[i] for i in range(12)]
    x = items[0]
    assert x["mixture"].shape == (2, 7680) and x["target"].shape == (7680,)
    assert x["voiceprint"].shape == (512,) and x["visual"].shape == (12, 256)
    pairs = {tuple(it["name"].split("_")[1:]) for it in items}
    assert len(pairs) == 12  # no repeats: new target/interferer utterance pairs
    for it in items:
        t, i = (part.split("-")[0] for part in it["name"].split("_")[1:])
        assert t != i and float(it["target"].abs().max()) > 0
        if not it["has_face"]:
            assert float(it["visual"].abs().max()) == 0


def test_only_train_voices_are_mixed(stream, speech_pool):
    train = {n for n, v in json.loads((speech_pool / "pool.json").read_text())["voices"].items()
             if v["role"] == "train"}
    assert set(stream.names) == train


def test_stream_sampler_splits_ranks_and_continues_on_resume():
    one = list(StreamSampler(0, 8))
    assert one == list(range(8))
    ranks = [list(StreamSampler(4, 3, rank=r, world=2)) for r in (0, 1)]
    assert ranks == [[4, 6, 8], [5, 7, 9]]
    assert list(StreamSampler(0, 4)) + list(StreamSampler(4, 4)) == list(range(8))


def test_a_pool_with_one_usable_voice_is_refused_before_training(speech_pool, tmp_path):
    copy = tmp_path / "pool"
    shutil.copytree(speech_pool, copy)
    voices = sorted(p for p in (copy / "train").iterdir())
    for voice in voices[1:]:  # every other train voice falls silent
        for wav in voice.glob("*.wav"):
            sf.write(str(wav), np.zeros(16000), 16000, subtype="PCM_16")
    with pytest.raises(ValueError, match="1 train voice.*at least 2"):
        DynamicMixDataset(copy, segment_seconds=0.48)


def test_no_face_and_face_drop_fractions(speech_pool):
    none = DynamicMixDataset(speech_pool, segment_seconds=0.48, seed=1, no_face_fraction=1.0)
    assert all(not none[i]["has_face"] and float(none[i]["visual"].abs().max()) == 0 for i in range(6))
    dropped = DynamicMixDataset(speech_pool, segment_seconds=0.48, seed=1, no_face_fraction=0.0,
                                face_drop_fraction=1.0)
    kept = DynamicMixDataset(speech_pool, segment_seconds=0.48, seed=1, no_face_fraction=0.0)
    for i in range(6):
        d, k = dropped[i], kept[i]
        assert torch.equal(d["mixture"], k["mixture"])  # the mixture does not depend on the cue draws
        last = d["visual"].abs().sum(dim=1)
        assert float(last[-1]) == 0 and float(k["visual"].abs().sum(dim=1)[-1]) > 0
        nonzero = (last > 0).int()
        assert torch.all(nonzero[1:] <= nonzero[:-1])  # lost from some frame to the end, never back
    with pytest.raises(ValueError, match="no_face_fraction: got 1.5; expected a fraction in \\[0, 1\\]"):
        DynamicMixDataset(speech_pool, segment_seconds=0.48, no_face_fraction=1.5)


def test_reference_enrolment_is_another_utterance_of_the_target_voice(speech_pool):
    ref = DynamicMixDataset(speech_pool, segment_seconds=0.48, seed=1, voiceprint_source="reference")
    same = DynamicMixDataset(speech_pool, segment_seconds=0.48, seed=1)
    table = np.load(speech_pool / "voiceprints.npz")
    for i in range(8):
        r, s = ref[i], same[i]
        voice, utt = r["name"].split("_")[1].split("-", 1)
        assert torch.equal(r["mixture"], s["mixture"]) and s["enrolment"] == utt
        if len(ref.voices[voice]) > 1:
            assert r["enrolment"] != utt
        assert np.array_equal(r["voiceprint"].numpy(), table[f"train/{voice}/{r['enrolment']}"].astype(np.float32))
    with pytest.raises(ValueError, match="voiceprint_source: got 'other'"):
        DynamicMixDataset(speech_pool, segment_seconds=0.48, voiceprint_source="other")
