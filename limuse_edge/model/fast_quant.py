"""Brevitas's IntQuant with the one-pass fake quantization of model/fast.py while fast kernels are on.

The layer factory (model/layers.py) builds every quantizer with it (`int_quant=IntQuantFast`); it has no state of its own, so
checkpoints are those of plain IntQuant, and outside `fast_kernels()` (export, evaluation) it is IntQuant.
"""
from __future__ import annotations

import torch
from brevitas.core.function_wrapper import RoundSte, TensorClamp
from brevitas.core.quant import IntQuant

from limuse_edge.model import fast


class IntQuantFast(IntQuant):
    def forward(self, scale: torch.Tensor, zero_point: torch.Tensor, bit_width: torch.Tensor,
                x: torch.Tensor) -> torch.Tensor:
        if (fast.active() and scale.numel() == 1 and type(self.float_to_int_impl) is RoundSte
                and type(self.tensor_clamp_impl) is TensorClamp and not bit_width.requires_grad
                and not zero_point.requires_grad and not zero_point.any()):
            y = fast.fake_quant(self.input_view_impl(x), scale, float(self.min_int(bit_width)),
                                float(self.max_int(bit_width)))
            return self.delay_wrapper(x, y)
        return super().forward(scale, zero_point, bit_width, x)
