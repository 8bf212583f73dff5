"""The cleanup a QONNX file gets before it is written, as one pure pass in linear time.

It does what qonnx's `cleanup_model` sequence did here (InferShapes, GiveUniqueParameterTensors,
FoldConstants, FoldTransposeIntoQuantInit, RemoveUnusedTensors, RemoveStaticGraphInputs,
GiveUniqueNodeNames, then ModelWrapper.cleanup's SortGraph and SortCommutativeInputsInitializerLast),
but with one index of the graph instead of qonnx's lookups, each a scan of the whole graph (and
`list.remove` on protobuf fields): on limuse_k32 qonnx's version took 9 minutes, this one seconds.
FoldConstants has nothing left to do after shape_fold.fold_constants and is not repeated. Duplicated
parameter tensors get deterministic names (qonnx draws random ones, which made two exports of the same
model differ byte for byte). tests/export/passes/test_qonnx_cleanup.py checks the result against qonnx's own
transformations on `tiny`: the same nodes, initializers, shapes, and the same output from qonnx's executor.
"""
from __future__ import annotations

import copy
import heapq

import numpy as np
import onnx
from onnx import numpy_helper

from limuse_export.passes.shape_fold import identity_probe

QONNX_DOMAIN = "qonnx.custom_op.general"
QONNX_OPS = ("Quant", "Trunc", "BipolarQuant")
QUANT_INIT_OPS = ("Quant", "BipolarQuant")
COMMUTATIVE_OPS = ("Add", "Mul", "And", "Or", "Xor", "Sum")  # qonnx's SortCommutativeInputsInitializerLast


def qonnx_cleanup(model: onnx.ModelProto) -> onnx.ModelProto:
    model = copy.deepcopy(model)
    graph = model.graph
    for node in graph.node:  # so that qonnx's executor finds its ops
        if node.op_type in QONNX_OPS:
            node.domain = QONNX_DOMAIN
    _unique_parameter_tensors(graph)  # first, so that a transpose folds into one user's copy only
    _fold_transpose_into_quant_init(graph)
    _remove_static_inputs_and_unused(graph)
    _sort_topologically(graph)
    _initializers_last(graph)
    _unique_parameter_tensors(graph)
    _annotate_shapes(model)
    counts: dict[str, int] = {}
    for node in graph.node:
        node.name = f"{node.op_type}_{counts.setdefault(node.op_type, 0)}"
        counts[node.op_type] += 1
    return model


def _fold_transpose_into_quant_init(graph: onnx.GraphProto) -> None:
    """Transpose(Quant(constant weight, constant scale, ...)) -> Quant(transposed weight, ...)."""
    inits = {i.name: i for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    users: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            users[name] = users.get(name, 0) + 1
    dropped = set()
    for node in graph.node:
        quant = producers.get(node.input[0]) if node.op_type == "Transpose" else None
        if quant is None or quant.op_type not in QUANT_INIT_OPS or not all(i in inits for i in quant.input):
            continue
        if users.get(quant.output[0], 0) != 1:  # qonnx rewrites in place; only safe for a single user
            continue
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        for name in quant.input:
            tensor = numpy_helper.to_array(inits[name])
            if perm is not None and len(perm) != tensor.ndim:
                continue
            inits[name].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(tensor.transpose(perm)), name))
        quant.output[0] = node.output[0]
        dropped.add(id(node))
    kept = [n for n in graph.node if id(n) not in dropped]
    del graph.node[:]
    graph.node.extend(kept)


def _unique_parameter_tensors(graph: onnx.GraphProto) -> None:
    """Every use of an initializer after the first gets its own copy, named <name>_copy<k>."""
    inits = {i.name: i for i in graph.initializer}
    seen, taken = set(), set(inits) | {o for n in graph.node for o in n.output}
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name not in inits:
                continue
            if name not in seen:
                seen.add(name)
                continue
            k = 1
            while f"{name}_copy{k}" in taken:
                k += 1
            fresh = f"{name}_copy{k}"
            taken.add(fresh)
            copy_ = copy.deepcopy(inits[name])
            copy_.name = fresh
            graph.initializer.append(copy_)
            node.input[index] = fresh


def _remove_static_inputs_and_unused(graph: onnx.GraphProto) -> None:
    init_names = {i.name for i in graph.initializer}
    static = [i for i in graph.input if i.name in init_names]
    inputs = [i for i in graph.input if i.name not in init_names]
    del graph.input[:]
    graph.input.extend(inputs)
    used = {name for n in graph.node for name in list(n.input) + list(n.output)}
    for field, key in ((graph.initializer, "name"), (graph.value_info, "name"),
                       (graph.quantization_annotation, "tensor_name")):
        kept = [item for item in list(field) + (static if field is graph.value_info else [])
                if getattr(item, key) in used]
        del field[:]
        field.extend(kept)


def _sort_topologically(graph: onnx.GraphProto) -> None:
    """Kahn's algorithm, keeping the given order among ready nodes (the exporter's order is already one)."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    producers = {o: i for i, n in enumerate(graph.node) for o in n.output}
    waiting = [sum(1 for name in set(n.input) if name not in available and name in producers) for n in graph.node]
    consumers: dict[int, list[int]] = {}
    for i, node in enumerate(graph.node):
        for name in set(node.input):
            if name not in available and name in producers:
                consumers.setdefault(producers[name], []).append(i)
    ready = [i for i, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for j in consumers.get(i, []):
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, j)
    if len(order) != len(graph.node):
        raise ValueError("QONNX cleanup: the graph has a cycle or a node whose input nothing produces")
    if order != sorted(order):
        nodes = [copy.deepcopy(graph.node[i]) for i in order]
        del graph.node[:]
        graph.node.extend(nodes)


def _initializers_last(graph: onnx.GraphProto) -> None:
    inits = {i.name for i in graph.initializer}
    for node in graph.node:
        if node.op_type in COMMUTATIVE_OPS:
            names = list(node.input)
            ordered = [n for n in names if n not in inits] + [n for n in names if n in inits]
            for index, name in enumerate(ordered):
                node.input[index] = name


def _annotate_shapes(model: onnx.ModelProto) -> None:
    """value_info for every tensor, from onnx's shape inference with the custom ops read as Identity on
    their first input (each is shape- and type-preserving there), as qonnx's InferShapes does."""
    probe = identity_probe(model)
    del probe.graph.value_info[:]
    inferred = onnx.shape_inference.infer_shapes(probe)
    outputs = {o.name for o in model.graph.output}
    del model.graph.value_info[:]
    model.graph.value_info.extend(v for v in inferred.graph.value_info if v.name not in outputs)
