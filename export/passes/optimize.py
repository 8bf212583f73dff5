"""Graph rewrites that make an exported LiMuSE graph faster under onnxruntime without changing what
it computes. Each is a pure function: onnx.ModelProto in, a new ModelProto out.

limuse_export.passes lists them, in order, for the float and int8 files.

Why: in onnxruntime's profile of limuse_k32 the quantized GEMMs are a minority of the time; the float
ops between them dominate (PRelu, the mean/variance normalisations), and in the int8 graph TAC's
concatenation of every group with the broadcast group mean (18 % of the time, with its Expand and
requantization). See benchmarks/results/latency.md for the per-op-type table before and after.

Parity: prelu_to_leaky_relu is bit-exact; split_tac_concat gave bit-identical outputs on tiny and limuse_k32. norm_to_instance_norm changes the order of the float sums
of the normalisation statistics only (float graph of limuse_k32: max abs difference 1e-5, 120 dB
SI-SDR). In a QCDQ graph such last-bit differences can flip an 8-bit code now and then, exactly as
the torch-vs-ORT float differences already do: on the tiny W3A8 model, ORT against Brevitas scored
35.0 / 37.5 / 37.7 dB SI-SDR on three inputs before the rewrite and 35.6 / 37.5 / 37.7 dB after.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from limuse_export.passes.graph_index import GraphIndex


def prelu_to_leaky_relu(model: onnx.ModelProto) -> onnx.ModelProto:
    """PRelu with a single slope -> LeakyRelu(alpha=slope). Same arithmetic (x if x >= 0 else a*x),
    bit for bit; onnxruntime's LeakyRelu is vectorised where its broadcasting PRelu is not (about 5x
    faster on a (6000, 32, 72) tensor)."""
    model = _copy(model)
    graph = model.graph
    index = GraphIndex(graph)
    for position, node in enumerate(graph.node):
        slope = index.constant(node.input[1]) if node.op_type == "PRelu" else None
        if slope is None or slope.size != 1:
            continue
        leaky = helper.make_node("LeakyRelu", [node.input[0]], list(node.output), name=node.name,
                                 alpha=float(slope.reshape(-1)[0]))
        graph.node[position].CopyFrom(leaky)
    return _drop_dead_code(model)


def norm_to_instance_norm(model: onnx.ModelProto) -> onnx.ModelProto:
    """The normalisation over the last two axes, as exported from mean/variance arithmetic,
        m = ReduceMean(x, [-2, -1]); d = x - m; y = d / Sqrt(ReduceMean(d^2, [-2, -1]) + eps),
    -> Flatten(x, -2), Unsqueeze(1), InstanceNormalization(scale 1, bias 0, eps), Reshape(Shape(x)).
    One kernel instead of seven passes over the tensor (about 2x faster on a (6000, 32, 72) tensor).
    The same statistics, summed in another order: outputs agree to float rounding, not bit for bit.
    The per-channel affine that follows is left as it is."""
    model = _copy(model)
    graph = model.graph
    index = GraphIndex(graph)
    constant, made_by = index.constant, index.made_by

    def reduces_last_two(node) -> bool:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        axes = attrs.get("axes")
        if axes is None and len(node.input) > 1:
            value = constant(node.input[1])
            axes = None if value is None else value.tolist()
        return axes is not None and sorted(axes) == [-2, -1] and attrs.get("keepdims", 1) == 1

    new_nodes, shared = [], {}
    for node in graph.node:
        match = None
        if node.op_type == "Div":
            sub, sqrt = made_by(node.input[0], "Sub"), made_by(node.input[1], "Sqrt")
            mean = sub and made_by(sub.input[1], "ReduceMean")
            add = sqrt and made_by(sqrt.input[0], "Add")
            var = add and (made_by(add.input[0], "ReduceMean") or made_by(add.input[1], "ReduceMean"))
            eps = add and var and constant(add.input[1] if add.input[0] == var.output[0] else add.input[0])
            power = var and made_by(var.input[0], "Pow")
            exponent = power and constant(power.input[1])
            if (mean and var and power and eps is not None and eps.size == 1 and exponent is not None
                    and exponent.size == 1 and float(exponent.reshape(-1)[0]) == 2.0
                    and mean.input[0] == sub.input[0] and power.input[0] == sub.output[0]
                    and reduces_last_two(mean) and reduces_last_two(var)
                    and index.uses(sub.output[0]) == 2 and index.uses(mean.output[0]) == 1):
                match = (sub.input[0], float(eps.reshape(-1)[0]))
        if match is None:
            new_nodes.append(node)
            continue
        x, eps = match
        tag = node.name or node.output[0]
        if not shared:
            shared.update(one=index.add_initializer("instance_norm_one", np.ones(1, np.float32)),
                          zero=index.add_initializer("instance_norm_zero", np.zeros(1, np.float32)),
                          axis=index.add_initializer("instance_norm_axis1", np.array([1], np.int64)))
        new_nodes += [
            helper.make_node("Shape", [x], [f"{tag}/in_shape"], name=f"{tag}/Shape"),
            helper.make_node("Flatten", [x], [f"{tag}/flat"], name=f"{tag}/Flatten", axis=-2),
            helper.make_node("Unsqueeze", [f"{tag}/flat", shared["axis"]], [f"{tag}/one_channel"],
                             name=f"{tag}/Unsqueeze"),
            helper.make_node("InstanceNormalization", [f"{tag}/one_channel", shared["one"], shared["zero"]],
                             [f"{tag}/normalised"], name=f"{tag}/InstanceNormalization", epsilon=eps),
            helper.make_node("Reshape", [f"{tag}/normalised", f"{tag}/in_shape"], list(node.output),
                             name=f"{tag}/Reshape"),
        ]
    del graph.node[:]
    graph.node.extend(new_nodes)
    return _drop_dead_code(model)


def split_tac_concat(model: onnx.ModelProto) -> onnx.ModelProto:
    """TAC's quantized concat layer, Gemm(DQ(Q(Concat(y, Expand(m)))), W, b), as two GEMMs on the halves:
        Gemm(DQ(Q(y)), W[:, :c]) + Gemm(DQ(Q(m)), W[:, c:], b), broadcast over the K groups.
    y is (B*K, T, c), m the group mean (B, T, c). The concat's input quantizer is per tensor, so each half
    gets the same codes; the integer sums are the same. The expanded copy of m, the (B*K*T, 2c) concat and
    its requantization disappear, and m's GEMM runs once per frame instead of once per group. Each GEMM
    now adds its own float-scaled partial sum: the result agrees to float rounding, not bit for bit."""
    model = _copy(model)
    graph = model.graph
    index = GraphIndex(graph)
    constant, consumers, made_by, only_user = index.constant, index.consumers, index.made_by, index.only_user
    replacements, removed = {}, set()
    for concat in graph.node:
        if concat.op_type != "Concat" or len(concat.input) != 2:
            continue
        flat = next((u for u in consumers.get(concat.output[0], []) if u.op_type == "Reshape"), None)
        quant = flat and only_user(flat.output[0], "QuantizeLinear")
        dequant = quant and only_user(quant.output[0], "DequantizeLinear")
        gemm = dequant and only_user(dequant.output[0], "Gemm")
        reshape = made_by(concat.input[1], "Reshape")
        expand = reshape and made_by(reshape.input[0], "Expand")
        unsqueeze = expand and made_by(expand.input[0], "Unsqueeze")
        weight_dq = gemm and made_by(gemm.input[1], "DequantizeLinear")
        weight = weight_dq and constant(weight_dq.input[0])
        if not (gemm and unsqueeze and weight is not None):
            continue
        axes = constant(unsqueeze.input[1]) if len(unsqueeze.input) > 1 else None
        concat_axis = helper.get_attribute_value(concat.attribute[0]) if concat.attribute else None
        if axes is None or np.atleast_1d(axes).tolist() != [1] or concat_axis not in (2, -1):
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in gemm.attribute}
        if attrs.get("transB") != 1 or attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 \
                or attrs.get("beta", 1.0) != 1.0 or any(u is not flat and u.op_type != "Shape"
                                                        for u in consumers[concat.output[0]]):
            continue
        c = weight.shape[1] // 2
        y, mean, tag = concat.input[0], unsqueeze.input[0], concat.name or concat.output[0]
        k = index.add_initializer
        halves = [k(f"{tag}/weight_y", np.ascontiguousarray(weight[:, :c])),
                  k(f"{tag}/weight_mean", np.ascontiguousarray(weight[:, c:]))]
        to_rows = k(f"{tag}/rows", np.array([-1, c], np.int64))
        out_dim = k(f"{tag}/out_dim", np.array([weight.shape[0]], np.int64))
        rows_out = k(f"{tag}/rows_out", np.array([-1, weight.shape[0]], np.int64))
        minus_one, zero, one, two = (k(f"{tag}/const{v}", np.array([v], np.int64)) for v in (-1, 0, 1, 2))
        double_last = k(f"{tag}/double_last", np.array([1, 1, 2], np.int64))
        nodes, partial = [helper.make_node("Shape", [y], [f"{tag}/y_shape"], name=f"{tag}/Shape_y")], []
        for half, source, bias in (("y", y, []), ("mean", mean, list(gemm.input[2:3]))):
            n = f"{tag}/{half}"
            nodes += [
                helper.make_node("Reshape", [source, to_rows], [f"{n}/rows"], name=f"{n}/Reshape"),
                _like(quant, [f"{n}/rows", *quant.input[1:]], [f"{n}/q"], f"{n}/QuantizeLinear"),
                _like(dequant, [f"{n}/q", *dequant.input[1:]], [f"{n}/dq"], f"{n}/DequantizeLinear"),
                _like(weight_dq, [halves[len(partial)], *weight_dq.input[1:]], [f"{n}/w"], f"{n}/weight_DequantizeLinear"),
                helper.make_node("Gemm", [f"{n}/dq", f"{n}/w", *bias], [f"{n}/gemm"], name=f"{n}/Gemm", transB=1),
            ]
            partial.append(f"{n}/gemm")
        # (B*K*T, D) -> (B, K, T, D) and (B*T, D) -> (B, 1, T, D), from the mean's (B, T, c) shape.
        nodes += [
            helper.make_node("Shape", [mean], [f"{tag}/mean_shape"], name=f"{tag}/Shape_mean"),
            helper.make_node("Slice", [f"{tag}/mean_shape", zero, one], [f"{tag}/batch"], name=f"{tag}/Slice_batch"),
            helper.make_node("Slice", [f"{tag}/mean_shape", one, two], [f"{tag}/frames"], name=f"{tag}/Slice_frames"),
            helper.make_node("Concat", [f"{tag}/batch", minus_one, f"{tag}/frames", out_dim], [f"{tag}/groups_shape"],
                             name=f"{tag}/Concat_groups_shape", axis=0),
            helper.make_node("Concat", [f"{tag}/batch", one, f"{tag}/frames", out_dim], [f"{tag}/mean_out_shape"],
                             name=f"{tag}/Concat_mean_shape", axis=0),
            helper.make_node("Reshape", [partial[0], f"{tag}/groups_shape"], [f"{tag}/y4"], name=f"{tag}/Reshape_y"),
            helper.make_node("Reshape", [partial[1], f"{tag}/mean_out_shape"], [f"{tag}/mean4"], name=f"{tag}/Reshape_mean"),
            helper.make_node("Add", [f"{tag}/y4", f"{tag}/mean4"], [f"{tag}/sum"], name=f"{tag}/Add"),
            helper.make_node("Reshape", [f"{tag}/sum", rows_out], list(gemm.output), name=f"{tag}/Reshape_rows"),
        ]
        # Shapes read off the concat now come from y's shape with the last axis doubled.
        for user in consumers[concat.output[0]]:
            if user.op_type == "Shape":
                if user.attribute:  # Shape(start=, end=): not written by this exporter
                    raise ValueError(f"split_tac_concat: {user.name} slices a shape; not supported")
                nodes.append(helper.make_node("Mul", [f"{tag}/y_shape", double_last], list(user.output),
                                              name=f"{user.name}/from_y"))
                removed.add(id(user))
        replacements[id(gemm)] = nodes
        removed.update({id(concat), id(flat), id(quant), id(dequant)})
    if not replacements:
        return model
    new_nodes = []
    for node in graph.node:
        if id(node) in replacements:
            new_nodes.extend(replacements[id(node)])
        elif id(node) not in removed:
            new_nodes.append(node)
    del graph.node[:]
    graph.node.extend(_topological(new_nodes, {i.name for i in graph.input} | {i.name for i in graph.initializer}))
    return _drop_dead_code(model)


def _like(node: onnx.NodeProto, inputs: list[str], outputs: list[str], name: str) -> onnx.NodeProto:
    """A node of the same op type and attributes as `node`, on other tensors."""
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    copy.name = name
    copy.input[:] = inputs
    copy.output[:] = outputs
    return copy


def _topological(nodes: list, available: set[str]) -> list:
    """`nodes` reordered so every node comes after the producers of its inputs (stable otherwise)."""
    available = set(available) | {""}
    ordered, pending = [], list(nodes)
    while pending:
        waiting = []
        for node in pending:
            if all(i in available for i in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                waiting.append(node)
        if len(waiting) == len(pending):
            raise ValueError(f"graph has a cycle or a missing input at {waiting[0].name}")
        pending = waiting
    return ordered


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


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


__all__ = ["prelu_to_leaky_relu", "norm_to_instance_norm", "split_tac_concat", "op_counts"]
