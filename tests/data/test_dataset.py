"""MCGridDataset and make_loader on the tiny corpus."""
import pickle

import numpy as np
import pytest
import torch

from limuse_edge.data import MCGridDataset, layout, make_loader


def test_full_utterance_items(tiny_corpus):
    root, _ = tiny_corpus
    ds = MCGridDataset(root, split="test")
    assert len(ds) == 4
    with open(root / layout.VOICEPRINT_FILE, "rb") as f:
        table = pickle.load(f)
    for i, line in enumerate(ds.lines):
        item = ds[i]
        assert item["mixture"].shape == (2, 16000) and item["mixture"].dtype == torch.float32
        assert item["target"].shape == (16000,) and item["target"].dtype == torch.float32
        assert item["voiceprint"].shape == (512,) and item["visual"].shape == (25, 256)
        assert item["has_face"].dtype == torch.bool
        assert item["has_face"].item() == (root / line.lip).exists()
        if not item["has_face"]:
            assert torch.count_nonzero(item["visual"]) == 0
        else:
            assert torch.equal(item["visual"], torch.from_numpy(np.load(root / line.lip)))
        assert np.array_equal(item["voiceprint"].numpy(), table[line.voiceprint_key])
        assert item["name"] == line.mixture.split("/")[-1][:-4]


def test_voiceprint_from_reference_option(tiny_corpus):
    root, _ = tiny_corpus
    by_target = MCGridDataset(root, split="train")
    by_reference = MCGridDataset(root, split="train", voiceprint_source="reference")
    with open(root / layout.VOICEPRINT_FILE, "rb") as f:
        table = pickle.load(f)
    line = by_reference.lines[0]
    assert np.array_equal(by_reference[0]["voiceprint"].numpy(), table[line.reference_key])
    assert not torch.equal(by_reference[0]["voiceprint"], by_target[0]["voiceprint"])


def test_limit(tiny_corpus):
    assert len(MCGridDataset(tiny_corpus[0], split="train", limit=2)) == 2


def test_crops_align_audio_and_video(tiny_corpus):
    root, _ = tiny_corpus
    full = MCGridDataset(root, split="train")
    cropped = MCGridDataset(root, split="train", segment_seconds=0.4, seed=3)
    starts = set()
    for i in range(len(full)):
        whole = full[i]
        for _ in range(3):
            crop = cropped[i]
            assert crop["mixture"].shape == (2, 6400) and crop["visual"].shape == (10, 256)
            assert crop["target"].shape == (6400,)
            matches = [s for s in range(0, 16000 - 6400 + 1, 640)
                       if torch.equal(whole["mixture"][:, s:s + 6400], crop["mixture"])]
            assert len(matches) == 1
            start = matches[0]
            assert torch.equal(whole["target"][start:start + 6400], crop["target"])
            frame = start // 640
            assert torch.equal(whole["visual"][frame:frame + 10], crop["visual"])
            starts.add(start)
    assert len(starts) > 3  # crops are random per call


def test_crops_repeat_for_a_seed(tiny_corpus):
    root, _ = tiny_corpus
    a = MCGridDataset(root, split="train", segment_seconds=0.4, seed=5)
    b = MCGridDataset(root, split="train", segment_seconds=0.4, seed=5)
    assert all(torch.equal(a[i]["mixture"], b[i]["mixture"]) for i in range(len(a)))


def test_segment_must_be_whole_video_frames(tiny_corpus):
    with pytest.raises(ValueError, match="multiple of 0.04 s"):
        MCGridDataset(tiny_corpus[0], split="train", segment_seconds=0.41)


def test_segment_longer_than_utterance_is_padded(tiny_corpus):
    item = MCGridDataset(tiny_corpus[0], split="valid", segment_seconds=1.2)[0]
    assert item["mixture"].shape == (2, 19200) and item["visual"].shape == (30, 256)


def test_loader_with_workers(tiny_corpus):
    torch.manual_seed(0)
    ds = MCGridDataset(tiny_corpus[0], split="train", segment_seconds=0.4)
    loader = make_loader(ds, batch_size=3, shuffle=True, num_workers=2)
    batches = list(loader)
    assert len(batches) == 2
    batch = batches[0]
    assert batch["mixture"].shape == (3, 2, 6400) and batch["target"].shape == (3, 6400)
    assert batch["voiceprint"].shape == (3, 512) and batch["visual"].shape == (3, 10, 256)
    assert batch["has_face"].shape == (3,) and len(batch["name"]) == 3
