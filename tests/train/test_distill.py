"""Distillation in QAT: the float teacher stays frozen, the student's weights and learned scales get
gradients, and bad settings are refused before any step."""
import dataclasses

import pytest
import torch

from limuse_edge.checkpoint import build_model, read_checkpoint, save_checkpoint
from limuse_edge.data import MCGridDataset, make_loader
from limuse_edge.train import train
from limuse_edge.train.distill import DistillationLoss, load_teacher
from limuse_edge.train.trainer import model_inputs


@pytest.fixture
def float_teacher(tmp_path):
    path = tmp_path / "teacher.pt"
    torch.manual_seed(1)
    save_checkpoint(path, build_model("tiny"))
    return path


def test_the_teacher_stays_frozen_and_the_student_learns_weights_and_scales(train_corpus, float_teacher):
    student = build_model("tiny", "w3a8")
    teacher = load_teacher(str(float_teacher), student.config)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    batch = next(iter(make_loader(MCGridDataset(train_corpus, "train", segment_seconds=0.48), 2, shuffle=False)))
    inputs = model_inputs(student, batch, "cpu")
    loss = DistillationLoss(teacher, 0.5)(student(*inputs), batch["target"], inputs)
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())
    named = dict(student.named_parameters())
    weights = [n for n in named if n.endswith(".weight")]
    scales = [n for n in named if "scaling_impl" in n or "scale" in n.split(".")[-1]]
    assert weights and scales
    assert all(named[n].grad is not None and float(named[n].grad.abs().sum()) > 0 for n in weights[:5])
    assert any(named[n].grad is not None and float(named[n].grad.abs().sum()) > 0 for n in scales)


def test_the_teacher_term_changes_the_loss_and_weight_zero_is_the_plain_loss(train_corpus, float_teacher):
    student = build_model("tiny", "w3a8")
    teacher = load_teacher(str(float_teacher), student.config)
    batch = next(iter(make_loader(MCGridDataset(train_corpus, "train", segment_seconds=0.48), 2, shuffle=False)))
    inputs = model_inputs(student, batch, "cpu")
    with torch.no_grad():
        est = student(*inputs)
    plain = DistillationLoss(None, 0.0)(est, batch["target"], inputs)
    assert torch.equal(DistillationLoss(teacher, 0.0)(est, batch["target"], inputs), plain)
    assert float(DistillationLoss(teacher, 1.0)(est, batch["target"], inputs)) != pytest.approx(float(plain))


def test_a_distilled_qat_run_records_its_teacher(tiny_cfg, float_teacher):
    cfg = dataclasses.replace(tiny_cfg, recipe="w3a8", init_from=str(float_teacher), teacher=str(float_teacher),
                              distill_weight=0.5, calibration_batches=1)
    assert train(cfg)["step"] == 2
    meta = read_checkpoint(f"{cfg.out_dir}/last.pt")["meta"]
    assert len(meta["teacher_sha256"]) == 64 and meta["train_config"]["distill_weight"] == 0.5


def test_a_teacher_of_another_preset_is_refused(tiny_cfg, tmp_path):
    other = tmp_path / "other.pt"
    save_checkpoint(other, build_model(build_model("tiny").config.replace(groups=2)))
    with pytest.raises(ValueError, match="teacher: .*another model configuration.*student's own preset"):
        train(dataclasses.replace(tiny_cfg, recipe="w3a8", teacher=str(other), distill_weight=1.0))


def test_a_quantized_teacher_is_refused(tiny_cfg, tmp_path):
    q = tmp_path / "q.pt"
    save_checkpoint(q, build_model("tiny", "w3a8"))
    with pytest.raises(ValueError, match="teacher: .*quantized.*expected a float checkpoint"):
        train(dataclasses.replace(tiny_cfg, recipe="w3a8", teacher=str(q), distill_weight=1.0))


@pytest.mark.parametrize("weight", [-0.1, float("nan")])
def test_a_negative_distillation_weight_is_refused(tiny_cfg, float_teacher, weight):
    with pytest.raises(ValueError, match="distill_weight: got .*expected a number >= 0"):
        train(dataclasses.replace(tiny_cfg, teacher=str(float_teacher), distill_weight=weight))


def test_a_weight_without_a_teacher_is_refused(tiny_cfg):
    with pytest.raises(ValueError, match="distill_weight: got 1.0 with no teacher"):
        train(dataclasses.replace(tiny_cfg, distill_weight=1.0))


def test_resume_with_a_changed_teacher_is_refused_before_any_step(tiny_cfg, float_teacher):
    cfg = dataclasses.replace(tiny_cfg, recipe="w3a8", init_from=str(float_teacher), teacher=str(float_teacher),
                              distill_weight=0.5, calibration_batches=1)
    train(cfg)
    torch.manual_seed(7)
    save_checkpoint(float_teacher, build_model("tiny"))  # same path, other weights
    with pytest.raises(ValueError, match="--resume: the teacher .* is not the file .*last.pt"):
        train(dataclasses.replace(cfg, epochs=2), resume=True)
    assert read_checkpoint(f"{cfg.out_dir}/last.pt")["train_state"]["step"] == 2
