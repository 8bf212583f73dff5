"""Shared fixtures: one torch thread (the CI machine has 2 cores), fixed seeds, and the spec folder."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# The repository is checked out as <somewhere>/main with the project's shared/ folder beside it.
SHARED_DIR = REPO_ROOT.parent / "shared"


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
def spec_dir() -> Path:
    spec = SHARED_DIR / "spec"
    if not spec.is_dir():
        pytest.fail(f"spec folder {spec} is missing; expected the project's shared/ folder beside the "
                    f"repository checkout ({REPO_ROOT.parent})")
    return spec


@pytest.fixture(scope="session")
def paper_table(spec_dir) -> dict:
    """The paper's table as data: {"input": ..., "rows": [{"name", "params_exact", ...}]}."""
    return json.loads((spec_dir / "paper_table.json").read_text())


@pytest.fixture(scope="session")
def speech_pool(tmp_path_factory):
    """A speech pool of a few voices of every engine, two utterances each (about 20 s to build);
    shared by the data and training tests."""
    from limuse_edge.data.pool import build_pool
    root = tmp_path_factory.mktemp("pool") / "pool"
    build_pool(root, seed=5, talkers=6, espeak_voices=7, utterances=2, progress=False)
    return root
