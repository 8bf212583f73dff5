"""Graph rewrites that make an exported LiMuSE graph faster under onnxruntime without changing what
it computes. Each is a pure function: onnx.ModelProto in, a new ModelProto out.

Call `optimize(model)` on the exported graph (float or QCDQ) before saving `<name>.*.onnx`.

Measured on this network (benchmarks/test_latency.py, per-op-type table): the quantized convs and
matmuls are a minority of the time; the float ops between them dominate, PRelu alone about a fifth.
"""
from __future__ import annotations

import onnx
from onnx import helper, numpy_helper


def prelu_to_leaky_relu(model: onnx.ModelProto) -> onnx.ModelProto:
    """PRelu with a single slope -> LeakyRelu(alpha=slope). Same arithmetic (x if x >= 0 else a*x),
    bit for bit; onnxruntime's LeakyRelu is vectorised where its broadcasting PRelu is not (about 5x
    faster on a (6000, 32, 72) tensor)."""
    model = _copy(model)
    graph = model.graph
    constant = _constant_lookup(graph)
    for index, node in enumerate(graph.node):
        slope = constant(node.input[1]) if node.op_type == "PRelu" else None
        if slope is None or slope.size != 1:
            continue
        leaky = helper.make_node("LeakyRelu", [node.input[0]], list(node.output), name=node.name,
                                 alpha=float(slope.reshape(-1)[0]))
        graph.node[index].CopyFrom(leaky)
    return _drop_dead_code(model)


PASSES = (prelu_to_leaky_relu,)


def optimize(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every rewrite of this module, in order."""
    for rewrite in PASSES:
        model = rewrite(model)
    return model


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def _constant_lookup(graph: onnx.GraphProto):
    """name -> numpy value if the tensor is a constant (an initializer, a Constant node, or an Identity
    of one: the TorchScript exporter deduplicates equal initializers into Identity chains), else None."""
    initializers = {init.name: init for init in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}

    def lookup(name: str):
        if name in initializers:
            return numpy_helper.to_array(initializers[name])
        node = producers.get(name)
        if node is None:
            return None
        if node.op_type == "Identity":
            return lookup(node.input[0])
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    return lookup


def _drop_dead_code(model: onnx.ModelProto) -> onnx.ModelProto:
    """Removes nodes and initializers that no graph output depends on."""
    graph = model.graph
    needed = {out.name for out in graph.output}
    live = []
    for node in reversed(graph.node):
        if any(out in needed for out in node.output):
            live.append(node)
            needed.update(node.input)
    live.reverse()
    initializers = [init for init in graph.initializer if init.name in needed]
    del graph.node[:]
    graph.node.extend(live)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    return model


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


__all__ = ["optimize", "prelu_to_leaky_relu", "op_counts", "PASSES"]
