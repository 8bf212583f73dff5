"""`limuse-run enroll` on a corpus's stored reference wav gives exactly the builder's grid_vp.pkl entry:
one extractor (limuse_runtime.voiceprint) on both sides."""
from __future__ import annotations

import numpy as np

from limuse_edge.data import layout
from limuse_edge.data.voiceprint_table import read_voiceprint_table
from limuse_runtime.cli import main


def test_enrolment_equals_the_builder_s_voiceprint(tiny_corpus, tmp_path):
    root, _ = tiny_corpus
    table = read_voiceprint_table(root / layout.VOICEPRINT_FILE)
    refs = sorted((root / "ref").rglob("*.wav"))[:3]
    assert refs
    for ref in refs:
        key = f"{ref.parent.name}_{ref.name}"
        assert main(["enroll", "--reference", str(ref), "--out", str(tmp_path / "vp.npy")]) == 0
        np.testing.assert_array_equal(np.load(tmp_path / "vp.npy"), table[key])
