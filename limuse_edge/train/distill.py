"""Distillation for QAT: a frozen float teacher whose output the quantized student is also pulled towards.

loss = -SI-SNR(student, target) + weight x -SI-SNR(student, teacher)

The teacher sees the student's very inputs, so on items where the target is out of reach (no face, a
hard voice) it still shows the student what its own float network made of them: the error left to the
student is the quantization's, not the task's. The teacher is built once, in eval mode, with every
parameter's requires_grad off, and runs under no_grad: it can neither learn nor pass gradients on.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from limuse_edge.checkpoint import load_checkpoint
from limuse_edge.config import ModelConfig
from limuse_edge.metrics import neg_si_snr_loss


def file_digest(path: "str | Path") -> str:
    """sha256 of a checkpoint file: a resumed run checks that its teacher is the one it started with."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_distillation(teacher: str | None, weight: float) -> None:
    """The settings alone, before anything is loaded."""
    if not weight >= 0.0:  # also refuses NaN
        raise ValueError(f"distill_weight: got {weight}; expected a number >= 0")
    if weight > 0.0 and not teacher:
        raise ValueError(f"distill_weight: got {weight} with no teacher; expected a teacher checkpoint "
                         "(teacher=PATH) or distill_weight=0")
    if teacher and not Path(teacher).is_file():
        raise FileNotFoundError(f"teacher: no such file {teacher!r}; expected a float .pt checkpoint")


def load_teacher(path: str, student_config: ModelConfig) -> torch.nn.Module:
    """The frozen float teacher; a one-line error if it is not a float model of the student's preset."""
    try:
        teacher, ckpt = load_checkpoint(path, config=student_config)
    except ValueError as exc:
        raise ValueError(f"teacher: {exc}; expected a checkpoint of the student's own preset") from None
    if teacher.recipe.quantized:
        raise ValueError(f"teacher: {path!r} is quantized ({ckpt['model_args']['recipe']}); "
                         "expected a float checkpoint")
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


class DistillationLoss:
    """Callable (estimate, target, inputs) -> loss; without a teacher it is the plain SI-SNR loss."""

    def __init__(self, teacher: torch.nn.Module | None, weight: float):
        self.teacher, self.weight = teacher, weight

    def __call__(self, estimate: torch.Tensor, target: torch.Tensor, inputs: tuple) -> torch.Tensor:
        loss = neg_si_snr_loss(estimate, target)
        if self.teacher is None or self.weight == 0.0:
            return loss
        with torch.no_grad():
            guide = self.teacher(*inputs)
        return loss + self.weight * neg_si_snr_loss(estimate, guide)
