"""Constant folding in one pass, before qonnx's cleanup.

The TorchScript exporter writes every `x.size(i)` of the model as Shape -> Gather -> Unsqueeze -> Concat
chains: hundreds of nodes that are constant at a fixed input shape. qonnx's FoldConstants folds one node
per iteration and re-runs its shape inference (quadratic in graph size) after each, which did not finish
in 10 minutes even on the tiny preset. Folding them all at once here leaves qonnx's cleanup nothing
to iterate on; its result is the same graph.
"""
from __future__ import annotations

import copy

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

# Custom ops that must stay in the graph (qonnx keeps them too); each is shape-preserving on input 0.
KEPT_OP_TYPES = ("Quant", "BipolarQuant", "Trunc", "IntegerNorm")


def identity_probe(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy in which the custom ops read as Identity on their first input (each is shape- and
    type-preserving there), so that onnx's shape inference can see through them."""
    probe = copy.deepcopy(model)
    for node in probe.graph.node:
        if node.op_type in KEPT_OP_TYPES:
            del node.input[1:]
            del node.attribute[:]
            node.op_type, node.domain = "Identity", ""
    return probe


def static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Fully known tensor shapes, from onnx's shape inference with the custom ops read as Identity."""
    probe = onnx.shape_inference.infer_shapes(identity_probe(model))
    shapes = {}
    for value in list(probe.graph.input) + list(probe.graph.value_info) + list(probe.graph.output):
        dims = value.type.tensor_type.shape.dim
        if value.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(d.dim_value for d in dims)
    for init in probe.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes


def _shape_value(node: onnx.NodeProto, shape: tuple[int, ...]) -> np.ndarray:
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    start, end = attrs.get("start", 0), attrs.get("end", len(shape))
    return np.array(shape[start:end], dtype=np.int64)


def fold_constants(model: onnx.ModelProto, keep: tuple[str, ...] = KEPT_OP_TYPES) -> onnx.ModelProto:
    """Replace every node whose value does not depend on the graph inputs (at their fixed shapes) by an
    initializer. Nodes of the `keep` op types are never folded."""
    # A folded shape (a Pad's pads, a Reshape's target) can make further shapes static: repeat to the end.
    while True:
        folded = _fold_once(model, keep)
        if folded is model:
            return model
        model = folded


def _fold_once(model: onnx.ModelProto, keep: tuple[str, ...]) -> onnx.ModelProto:
    shapes = static_shapes(model)
    graph = model.graph
    known = {i.name for i in graph.initializer}
    folded, shape_values = [], {}
    for node in graph.node:
        inputs = [i for i in node.input if i]
        if node.op_type in keep or any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                                       for a in node.attribute):
            continue
        if node.op_type == "Shape" and node.input[0] in shapes:
            shape_values[node.output[0]] = _shape_value(node, shapes[node.input[0]])
        elif not all(i in known for i in inputs):
            continue
        folded.append(node)
        known.update(node.output)
    if not folded:
        return model

    folded_ids = {id(n) for n in folded}
    remaining = [n for n in graph.node if id(n) not in folded_ids]
    needed = {i for n in remaining for i in n.input} | {o.name for o in graph.output}
    produced = [o for n in folded for o in n.output if o in needed]
    values = _evaluate(graph, model.opset_import, folded, shape_values, produced)

    result = copy.deepcopy(model)
    del result.graph.node[:]
    result.graph.node.extend(copy.deepcopy(remaining))
    result.graph.initializer.extend(numpy_helper.from_array(np.asarray(values[name]), name) for name in produced)
    used = {i for n in result.graph.node for i in n.input} | {o.name for o in result.graph.output}
    kept_inits = [i for i in result.graph.initializer if i.name in used]
    del result.graph.initializer[:]
    result.graph.initializer.extend(kept_inits)
    stale = {o for n in folded for o in n.output}
    kept_info = [v for v in result.graph.value_info if v.name not in stale]
    del result.graph.value_info[:]
    result.graph.value_info.extend(kept_info)
    return result


def _evaluate(graph: onnx.GraphProto, opset_import, folded: list[onnx.NodeProto], shape_values: dict[str, np.ndarray],
              outputs: list[str]) -> dict[str, np.ndarray]:
    """Evaluate the folded nodes as one constant graph with onnx's reference evaluator."""
    nodes = []
    for node in folded:
        if node.output[0] in shape_values:
            nodes.append(onnx.helper.make_node("Constant", [], [node.output[0]],
                                               value=numpy_helper.from_array(shape_values[node.output[0]])))
        else:
            nodes.append(node)
    consumed = {i for n in nodes for i in n.input}
    inits = [i for i in graph.initializer if i.name in consumed]
    sub = onnx.helper.make_graph(nodes, "constants", [], [onnx.helper.make_tensor_value_info(o, 0, None)
                                                          for o in outputs], initializer=inits)
    model = onnx.helper.make_model(sub)
    del model.opset_import[:]
    model.opset_import.extend(o for o in opset_import if o.domain in ("", "ai.onnx"))
    results = ReferenceEvaluator(model).run(None, {})
    return dict(zip(outputs, results))
