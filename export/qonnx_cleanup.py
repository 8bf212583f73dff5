"""qonnx's cleanup of a QONNX graph, as one pure pass (the last of the QONNX format's passes)."""
from __future__ import annotations

import copy

import onnx

from limuse_export.integer_norm import register_qonnx_op


def qonnx_cleanup(model: onnx.ModelProto) -> onnx.ModelProto:
    """The transformations of qonnx's `cleanup_model`, minus what costs minutes and gives nothing here.
    `cleanup_model` follows every transformation with ModelWrapper.cleanup (a graph sort and more, each a
    scan of all nodes per node) and renames every tensor (a scan per rename): 80 s of its 86 s on tiny.
    Here each transformation runs once with a single cleanup at the end, and tensors keep the
    TorchScript exporter's names, which name the torch scope and leave the I/O contract's names intact."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.fold_constants import FoldConstants
    from qonnx.transformation.general import (GiveUniqueNodeNames, GiveUniqueParameterTensors,
                                              RemoveStaticGraphInputs, RemoveUnusedTensors)
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.transformation.quant_constant_folding import FoldTransposeIntoQuantInit
    register_qonnx_op()  # the IntegerNorm node of -inorm models, for qonnx's shape inference
    wrapper = ModelWrapper(copy.deepcopy(model))
    for node in wrapper.graph.node:  # as cleanup_model does, so qonnx's executor finds its ops
        if node.op_type in ("Quant", "Trunc", "BipolarQuant"):
            node.domain = "qonnx.custom_op.general"
    for transformation in (InferShapes(), GiveUniqueParameterTensors(),
                           FoldConstants(exclude_op_types=["Quant", "BipolarQuant", "QuantizeLinear", "DequantizeLinear"]),
                           FoldTransposeIntoQuantInit(), RemoveUnusedTensors(), RemoveStaticGraphInputs(),
                           GiveUniqueNodeNames()):
        wrapper = wrapper.transform(transformation, make_deepcopy=False, cleanup=False)
    return wrapper.cleanup().model
