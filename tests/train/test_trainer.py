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
