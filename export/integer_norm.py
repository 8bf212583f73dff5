"""The IntegerNorm node (limuse_edge.model.integer_norm) on the export side: a qonnx custom op, so qonnx's
cleanup and executor handle QONNX files that contain it, and a lowering to standard ONNX ops for
onnxruntime, which has no such kernel.

The lowering computes the integer statistics in float64. Every intermediate is an integer below 2^53, or
a quotient whose distance to a rounding boundary (>= 1/(2N)) is far above float64's spacing, so Round
(half to even), Floor and Sqrt give the exact integers of the reference formula.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from limuse_edge.model.integer_norm import DOMAIN, OP_TYPE


def register_qonnx_op() -> None:
    """Make qonnx (shape inference, datatype inference, execution) know the IntegerNorm node."""
    from qonnx.custom_op.base import CustomOp
    from qonnx.custom_op.registry import add_op_to_domain, is_custom_op

    if is_custom_op(DOMAIN, OP_TYPE):
        return

    class IntegerNorm(CustomOp):
        def get_nodeattr_types(self):
            return {"input_scale": ("f", True, 1.0), "gamma_exponent": ("i", True, 0),
                    "channel_axis": ("i", True, 1), "mean_frac_bits": ("i", True, 0),
                    "norm_frac_bits": ("i", True, 0)}

        def make_shape_compatible_op(self, model):
            return helper.make_node("Identity", [self.onnx_node.input[0]], [self.onnx_node.output[0]])

        def infer_node_datatype(self, model):
            from qonnx.core.datatype import DataType
            model.set_tensor_datatype(self.onnx_node.output[0], DataType["FLOAT32"])

        def execute_node(self, context, graph):
            import torch
            from limuse_edge.model.integer_norm import integer_norm_value
            node = self.onnx_node
            x, gamma, beta = (torch.from_numpy(np.asarray(context[n])) for n in node.input)
            y = integer_norm_value(x, gamma, beta, self.get_nodeattr("input_scale"),
                                   self.get_nodeattr("gamma_exponent"), self.get_nodeattr("channel_axis"))
            context[node.output[0]] = y.numpy()

        def verify_node(self):
            return []

    add_op_to_domain(DOMAIN, IntegerNorm)


def lower_integer_norm(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every IntegerNorm node replaced by the same integer arithmetic in standard float64 ONNX ops."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    nodes = []
    for node in graph.node:
        if node.domain == DOMAIN and node.op_type == OP_TYPE:
            nodes.extend(_lowered(node, graph))
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    kept = [o for o in out.opset_import if o.domain != DOMAIN]
    del out.opset_import[:]
    out.opset_import.extend(kept)
    return out


def _lowered(node: onnx.NodeProto, graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    x, gamma, beta = node.input
    prefix = node.name or node.output[0]
    made = []

    def const(name, value):
        full = f"{prefix}/{name}"
        graph.initializer.append(numpy_helper.from_array(np.asarray(value), full))
        return full

    def op(op_type, inputs, **kw):
        out_name = f"{prefix}/{op_type}_{len(made)}"
        made.append(helper.make_node(op_type, inputs, [out_name], name=out_name, **kw))
        return out_name

    channel_axis = attrs["channel_axis"]
    double = TensorProto.DOUBLE
    shape = op("Shape", [x])
    codes = op("Round", [op("Div", [op("Cast", [x], to=double), const("input_scale", np.float64(attrs["input_scale"]))])])
    rows = op("Reshape", [codes, const("rows", np.array([0, -1], np.int64))])  # (batch, N)
    n_elements = op("Cast", [op("ReduceProd", [op("Slice", [shape, const("one", np.array([1], np.int64)),
                                                            const("end", np.array([2 ** 62], np.int64))])],
                                 keepdims=1)], to=double)
    axis1 = const("axis1", np.array([1], np.int64))
    mean_scale = const("mean_scale", np.float64(2 ** attrs["mean_frac_bits"]))
    mean = op("Round", [op("Div", [op("Mul", [op("ReduceSum", [rows, axis1], keepdims=1), mean_scale]), n_elements])])
    d = op("Sub", [op("Mul", [rows, mean_scale]), mean])
    var = op("Floor", [op("Div", [op("ReduceSum", [op("Mul", [d, d]), axis1], keepdims=1), n_elements])])
    std = op("Max", [op("Floor", [op("Sqrt", [var])]), const("one_f", np.float64(1))])
    normalised = op("Round", [op("Div", [op("Mul", [d, const("norm_scale", np.float64(2 ** attrs["norm_frac_bits"]))]),
                                         std])])
    normalised = op("Reshape", [normalised, shape])
    affine_shape = const("affine_shape", np.array([-1] + [1] * (-channel_axis - 1) if channel_axis < 0 else [-1, 1],
                                                  np.int64))
    acc = op("Add", [op("Mul", [normalised, op("Reshape", [op("Cast", [gamma], to=double), affine_shape])]),
                     op("Reshape", [op("Cast", [beta], to=double), affine_shape])])
    scale = const("out_scale", np.float64(2.0 ** (attrs["gamma_exponent"] - attrs["norm_frac_bits"])))
    made.append(helper.make_node("Cast", [op("Mul", [acc, scale])], [node.output[0]], to=TensorProto.FLOAT,
                                 name=f"{prefix}/to_float"))
    return made
