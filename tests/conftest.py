"""Shared fixtures: one torch thread (the CI machine has 2 cores), fixed seeds, the paper's table and the
speech pool.

Tests that run a system tool (espeak-ng, flite, a C compiler, the aarch64 cross compiler, qemu-aarch64)
skip where it is missing, naming its Debian package; LIMUSE_REQUIRE_TOOLS=1 makes them fail instead
(tests/helpers/system_tools.py; .ci/run sets it)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from system_tools import require

# The paper's table as data, kept with the tests (tests/spec/).
SPEC_DIR = Path(__file__).resolve().parent / "spec"


@pytest.fixture(autouse=True)
def _deterministic_torch():
    # Never import torch here: the runtime's tests check that it stays torch-free.
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def paper_table() -> dict:
    """The paper's table as data: {"input": ..., "rows": [{"name", "params_exact", ...}]}."""
    return json.loads((SPEC_DIR / "paper_table.json").read_text())


@pytest.fixture(scope="session")
def speech_pool(tmp_path_factory):
    """A speech pool of a few voices of every engine, two utterances each (about 20 s to build);
    shared by the data and training tests. Needs espeak-ng and flite."""
    require("espeak-ng", "flite")
    from limuse_edge.data.pool import build_pool
    root = tmp_path_factory.mktemp("pool") / "pool"
    build_pool(root, seed=5, talkers=6, espeak_voices=7, utterances=2, progress=False)
    return root
