import json
import dataclasses

import pytest
import torch

from limuse_edge.checkpoint import (CheckpointError, build_model, convert_recipe, load_checkpoint, read_checkpoint,
                                    save_checkpoint)
from limuse_edge.data import MCGridDataset, make_loader
from limuse_edge.metrics import neg_si_snr_loss
from limuse_edge.train import TrainConfig, train
from limuse_edge.train.trainer import model_inputs


def _fixed_batch(corpus):
    ds = MCGridDataset(corpus, "train", segment_seconds=0.48, seed=0)
    return next(iter(make_loader(ds, batch_size=2, shuffle=False)))


@pytest.mark.parametrize("recipe", ["float", "w3a8"])
def test_a_few_steps_lower_the_loss_on_a_fixed_batch(train_corpus, recipe):
    torch.manual_seed(0)
    model = build_model("tiny", recipe)
    batch = _fixed_batch(train_corpus)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = neg_si_snr_loss(model(*model_inputs(model, batch, "cpu")), batch["target"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 1.0, losses


def test_train_writes_checkpoints_and_resume_continues(tiny_cfg):
    state = train(tiny_cfg)
    assert state["epoch"] == 1 and state["step"] == 2
    run = tiny_cfg.out_dir
    model, ckpt = load_checkpoint(f"{run}/best.pt")
    assert ckpt["meta"]["steps"] == 2 and ckpt["meta"]["train_config"]["preset"] == "tiny"
    assert read_checkpoint(f"{run}/last.pt")["train_state"]["step"] == 2

    resumed = train(dataclasses.replace(tiny_cfg, epochs=2), resume=True)
    assert resumed["epoch"] == 2 and resumed["step"] == 4
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]


def test_resume_without_a_checkpoint_is_a_clear_error(tiny_cfg):
    with pytest.raises(FileNotFoundError, match="last.pt"):
        train(tiny_cfg, resume=True)


def test_qat_starts_from_a_float_checkpoint(tiny_cfg, tmp_path):
    float_ckpt = tmp_path / "float.pt"
    save_checkpoint(float_ckpt, build_model("tiny"))
    state = train(dataclasses.replace(tiny_cfg, recipe="w3a8", init_from=str(float_ckpt), calibration_batches=1))
    model, _ = load_checkpoint(f"{tiny_cfg.out_dir}/last.pt")
    assert model.recipe.name == "w3a8" and state["step"] == 2


def test_unknown_config_key_lists_the_valid_keys():
    with pytest.raises(ValueError, match=r"unknown keys \['learning_rate'\].*valid keys.*'lr'"):
        TrainConfig.from_dict({"learning_rate": 1e-3})


def test_checkpoint_of_another_preset_or_recipe_is_refused(tmp_path):
    path = tmp_path / "q.pt"
    save_checkpoint(path, build_model("tiny", "w3a8"))
    with pytest.raises(CheckpointError, match="recipe 'w3a8'.*'w4a8'"):
        convert_recipe(load_checkpoint(path)[0], "w4a8", source=repr(str(path)))
    with pytest.raises(CheckpointError, match="another model configuration"):
        load_checkpoint(path, config=build_model("tiny").config.replace(groups=2))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing"])
def test_corrupt_checkpoint_is_a_clear_error(tmp_path, damage):
    path = tmp_path / "m.pt"
    save_checkpoint(path, build_model("tiny"))
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint")
    else:
        path.unlink()
    with pytest.raises(CheckpointError, match="checkpoint: .*m.pt"):
        load_checkpoint(path)


def test_resume_with_another_config_is_refused_before_any_step(tiny_cfg):
    train(tiny_cfg)
    with pytest.raises(ValueError, match=r"--resume: .*last.pt was trained with another configuration.*'lr': \(0.003, 0.01\)"):
        train(dataclasses.replace(tiny_cfg, lr=0.01, epochs=2), resume=True)
    assert read_checkpoint(f"{tiny_cfg.out_dir}/last.pt")["train_state"]["step"] == 2  # nothing trained


def test_dynamic_mixing_without_steps_per_epoch_is_refused(tiny_cfg, speech_pool):
    with pytest.raises(ValueError, match="dynamic_mixing: .*steps_per_epoch"):
        train(dataclasses.replace(tiny_cfg, dynamic_mixing=str(speech_pool), steps_per_epoch=None))


def test_dynamic_mixing_resumes_into_the_same_run(tiny_cfg, speech_pool, tmp_path):
    """Two epochs straight and one epoch + --resume give the same weights: same stream, same state."""
    straight = dataclasses.replace(tiny_cfg, dynamic_mixing=str(speech_pool), epochs=2, out_dir=str(tmp_path / "a"))
    train(straight)
    split = dataclasses.replace(straight, epochs=1, out_dir=str(tmp_path / "b"))
    train(split)
    train(dataclasses.replace(split, epochs=2), resume=True)
    a = read_checkpoint(tmp_path / "a" / "last.pt")["state_dict"]
    b = read_checkpoint(tmp_path / "b" / "last.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_that_continues_a_bundle_counts_the_bundle_once(tiny_cfg, tmp_path):
    """The bundle's record is taken when the run starts; bundling the run twice (the second time after
    the first bundle replaced the json) gives the same totals, not the run counted twice."""
    from limuse_edge.pretrained.bundle import _continued
    parent_pt, parent_json = tmp_path / "tiny_float.pt", tmp_path / "tiny_float.json"
    save_checkpoint(parent_pt, build_model("tiny"))
    parent = {"name": "tiny_float", "corpus_recipe": "first corpus",
              "training": {"steps": 10, "audio_seconds_seen": 40.0, "train_seconds": 5.0, "train_config": {}},
              "history": [{"epoch": 1, "step": 10, "audio_seconds": 40.0, "valid_si_sdr": 1.0}]}
    parent_json.write_text(json.dumps(parent))
    train(dataclasses.replace(tiny_cfg, init_from=str(parent_pt)))
    run = read_checkpoint(f"{tiny_cfg.out_dir}/last.pt")
    assert run["meta"]["parent"]["training"]["steps"] == 10

    first, first_history = _continued("tiny_float", run["meta"], run["train_state"]["history"])
    parent_json.write_text(json.dumps({**parent, "training": first, "history": first_history}))
    again, again_history = _continued("tiny_float", run["meta"], run["train_state"]["history"])
    assert first["steps"] == again["steps"] == 12 and again_history == first_history
    assert again["audio_seconds_seen"] == pytest.approx(40.0 + 2 * 2 * 0.48)
    assert [h["step"] for h in again_history] == [10, 12] and "parent" not in again
    assert [c["corpus_recipe"] for c in again["continues"]] == ["first corpus"]
    other, _ = _continued("tiny_w3a8", run["meta"], run["train_state"]["history"])
    assert other["steps"] == 2 and "continues" not in other and "parent" not in other
    assert other["forked_from"] == {"name": "tiny_float", "steps": 10, "audio_seconds_seen": 40.0}
