import pytest

from limuse_edge.data.build import build_corpus


@pytest.fixture(scope="session")
def train_corpus(tmp_path_factory):
    """A corpus of a few 1 s mixtures: enough for a couple of tiny training steps."""
    root = tmp_path_factory.mktemp("train_corpus") / "mc"
    build_corpus(root, n_train=8, n_valid=2, n_test=2, seed=3, seconds=1.0, workers=1, progress=False,
                 speakers_per_split={"train": 4, "valid": 2, "test": 2})
    return root


@pytest.fixture
def tiny_cfg(train_corpus, tmp_path):
    from limuse_edge.train import TrainConfig
    return TrainConfig(preset="tiny", data=str(train_corpus), segment_seconds=0.48, batch_size=2, num_workers=0,
                       epochs=1, steps_per_epoch=2, lr=3e-3, out_dir=str(tmp_path / "run"), log_every=1)
