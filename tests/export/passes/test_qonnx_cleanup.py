"""The project's linear-time QONNX cleanup against qonnx's own transformations (the sequence it replaces)
on a micro model: the same nodes, the same initializers, a shape for every tensor, and the same output
from qonnx's executor, bit for bit."""
from __future__ import annotations

import copy

import numpy as np
import torch
from onnx import numpy_helper

from limuse_edge.checkpoint import build_model
from limuse_edge.config import get_preset
from limuse_edge.quant import calibrate
from limuse_export.passes.integer_norm import register_qonnx_op
from limuse_export.onnx_export import export_qonnx
from limuse_export.prepare import example_inputs, exportable
from limuse_export.checks.qonnx_check import run_qonnx
from limuse_export.passes.qonnx_cleanup import qonnx_cleanup
from limuse_export.passes.shape_fold import fold_constants


def _qonnx_library_cleanup(model):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.fold_constants import FoldConstants
    from qonnx.transformation.general import (GiveUniqueNodeNames, GiveUniqueParameterTensors,
                                              RemoveStaticGraphInputs, RemoveUnusedTensors)
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.transformation.quant_constant_folding import FoldTransposeIntoQuantInit
    register_qonnx_op()
    wrapper = ModelWrapper(copy.deepcopy(model))
    for node in wrapper.graph.node:
        if node.op_type in ("Quant", "Trunc", "BipolarQuant"):
            node.domain = "qonnx.custom_op.general"
    for transformation in (InferShapes(), GiveUniqueParameterTensors(),
                           FoldConstants(exclude_op_types=["Quant", "BipolarQuant", "QuantizeLinear", "DequantizeLinear"]),
                           FoldTransposeIntoQuantInit(), RemoveUnusedTensors(), RemoveStaticGraphInputs(),
                           GiveUniqueNodeNames()):
        wrapper = wrapper.transform(transformation, make_deepcopy=False, cleanup=False)
    return wrapper.cleanup().model


def _nodes(model):
    """Each node as (op, domain, attributes, torch module, input initializer bytes or None), as a sorted list:
    qonnx's sort puts nodes in another (equally topological) order and names them after it."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return sorted((n.op_type, n.domain, str(list(n.attribute)), n.doc_string,
                   tuple((inits[i].dtype.str, inits[i].shape, inits[i].tobytes()) if i in inits else None
                         for i in n.input)) for n in model.graph.node)


def test_cleanup_equals_qonnx_s_transformations():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = get_preset("tiny").replace(context_codec=False, audio_layers=1, fusion_layers=1)
    model = build_model(config, "w3a8-po2-inorm").eval()
    inputs = example_inputs(model, 640)
    calibrate(model, [inputs])
    folded = fold_constants(export_qonnx(exportable(model), inputs))
    ours, theirs = qonnx_cleanup(folded), _qonnx_library_cleanup(folded)
    assert _nodes(ours) == _nodes(theirs)
    inputs_ = [i.name for i in ours.graph.input]
    assert inputs_ == [i.name for i in theirs.graph.input]
    produced = {o for n in ours.graph.node for o in n.output} - {o.name for o in ours.graph.output}
    annotated = {v.name for v in ours.graph.value_info if v.type.tensor_type.HasField("shape")}
    assert produced <= annotated  # qonnx's executor allocates every tensor from these
    feed = {k: v.numpy() for k, v in inputs.items()}
    np.testing.assert_array_equal(run_qonnx(ours, feed), run_qonnx(theirs, feed))
