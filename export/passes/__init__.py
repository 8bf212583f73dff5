"""Each output format's graph transformations, in the order the pipeline applies them to the exporter's
graph (limuse_export.onnx_export.EXPORTERS). Every pass is a pure function, onnx.ModelProto in, a new
ModelProto out; this table is the one place that says which run on which file.

- int8 (QCDQ, for onnxruntime): IntegerNorm nodes (recipe option -inorm) lowered to standard ops, since
  onnxruntime has no such kernel; then the speed rewrites of limuse_export.passes.optimize.
- float: the same speed rewrites.
- qonnx: the static shape fold first (qonnx's own folding is far too slow on a graph this size), then
  qonnx's cleanup transformations. No speed rewrites: the file is the golden engine's and qonnx's input.
"""
from __future__ import annotations

from typing import Callable

import onnx

from limuse_export.passes.integer_norm import lower_integer_norm
from limuse_export.passes.optimize import norm_to_instance_norm, prelu_to_leaky_relu, split_tac_concat
from limuse_export.passes.qonnx_cleanup import qonnx_cleanup
from limuse_export.passes.shape_fold import fold_constants

Pass = Callable[[onnx.ModelProto], onnx.ModelProto]

ORT_SPEED_PASSES: tuple[Pass, ...] = (prelu_to_leaky_relu, norm_to_instance_norm, split_tac_concat)
PASSES: dict[str, tuple[Pass, ...]] = {
    "int8": (lower_integer_norm, *ORT_SPEED_PASSES),
    "float": ORT_SPEED_PASSES,
    "qonnx": (fold_constants, qonnx_cleanup),
}


def apply_passes(model: onnx.ModelProto, passes: tuple[Pass, ...]) -> onnx.ModelProto:
    for transformation in passes:
        model = transformation(model)
    return model
