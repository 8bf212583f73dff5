"""The IntegerNorm node (limuse_edge.model.integer_norm) on the export side: a qonnx custom op, so qonnx's
cleanup and executor handle QONNX files that contain it, and a lowering to standard ONNX ops for
onnxruntime, which has no such kernel.

The lowering is exact (max |diff| 0 against the torch formula) and passes over the tensor as few times
as it can, in the types onnxruntime runs fast:
- codes: the int8 input of the DequantizeLinear that feeds the node, cast to float32 (else x / scale,
  exact for a power-of-two scale);
- the row sums S1 = sum(q) and S2 = sum(q^2): over the channel axis in float32 (at most 1024 channels of
  |q^2| <= 2^14: every partial sum is an integer below 2^24, exact in any order), then in float64
  (exact: integers far below 2^53); every per-row
  statistic (mean, sum(d^2) = 2^2F S2 - 2^(F+1) mean S1 + N mean^2, var, std) is a float64 scalar, exact
  for the same reason (a quotient of integers is at least 1/(2N) from a rounding boundary, far above
  float64's spacing);
- n = Round((q - mean 2^-F) / (std 2^-(F+P))) in float32: q - mean 2^-F is exact (a 12-bit value with F
  fractional bits), std 2^-(F+P) is exact, and the float32 quotient, correctly rounded, is within
  2^-6/std of the true d 2^P / std, which is at least 1/(2 std) from any half-integer unless it is one (then it is
  representable and Round takes it half to even);
- the affine n (gamma 2^k) + beta 2^k in float32 equals the float32 of the exact int32 accumulator times
  2^k whenever |n gamma| < 2^24 (the product is exact, the sum rounds once): |n| below 2^17, a value more
  than 2000 standard deviations of its row from the mean.
(Until this version the whole formula ran in float64 ops: 2.15 s on the 3 s demo for limuse_k32 against
0.86 s for the w3a8 file with float norms.)
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from limuse_edge.model.integer_norm import DOMAIN, OP_TYPE


# Channel sums of this many float32 codes squared are exact (1024 * 2^14 = 2^24).
MAX_EXACT_CHANNELS = 1024


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
    """Every IntegerNorm node replaced by the same integer arithmetic in standard ONNX ops."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    producers = {o: n for n in graph.node for o in n.output}
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    sizes = _tensor_sizes(model)
    nodes = []
    for node in graph.node:
        if node.domain == DOMAIN and node.op_type == OP_TYPE:
            nodes.extend(_lowered(node, graph, _int8_codes(node, producers, constants), sizes.get(node.input[1])))
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    kept = [o for o in out.opset_import if o.domain != DOMAIN]
    del out.opset_import[:]
    out.opset_import.extend(kept)
    return out


def _tensor_sizes(model: onnx.ModelProto) -> dict[str, int]:
    """Element counts of the tensors whose shape onnx's shape inference knows (gamma is computed from the
    weights by Round/Clip nodes in a QCDQ export, not stored)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    sizes = {i.name: int(np.prod(i.dims)) for i in model.graph.initializer}
    for value in inferred.graph.value_info:
        dims = value.type.tensor_type.shape.dim
        if value.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            sizes[value.name] = int(np.prod([d.dim_value for d in dims]))
    return sizes


def _int8_codes(node: onnx.NodeProto, producers: dict, constants: dict) -> "str | None":
    """The int8 tensor q with x = DequantizeLinear(q, input_scale, 0), if that is how x is made."""
    dq = producers.get(node.input[0])
    if dq is None or dq.op_type != "DequantizeLinear" or dq.input[1] not in constants:
        return None
    input_scale = next(helper.get_attribute_value(a) for a in node.attribute if a.name == "input_scale")
    scale = constants[dq.input[1]]
    zero_point = constants.get(dq.input[2]) if len(dq.input) > 2 and dq.input[2] else np.zeros(1, np.int8)
    if scale.size != 1 or float(scale.reshape(-1)[0]) != input_scale or zero_point is None \
            or zero_point.dtype != np.int8 or np.any(zero_point != 0):
        return None
    return dq.input[0]


def _lowered(node: onnx.NodeProto, graph: onnx.GraphProto, int8_codes: "str | None",
             channels: "int | None") -> list[onnx.NodeProto]:
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

    f_bits, p_bits, channel_axis = attrs["mean_frac_bits"], attrs["norm_frac_bits"], attrs["channel_axis"]
    double, single = TensorProto.DOUBLE, TensorProto.FLOAT
    # Everything reads the int8 codes when there are some, so the DequantizeLinear becomes dead code.
    shape = op("Shape", [int8_codes or x])
    if int8_codes is not None:
        codes = op("Cast", [int8_codes], to=single)
    else:
        codes = op("Mul", [x, const("inverse_scale", np.float32(1.0 / attrs["input_scale"]))])
    rows = op("Reshape", [codes, const("rows", np.array([0, -1], np.int64))])  # (batch, N), float32 codes
    if channels is not None and channels <= MAX_EXACT_CHANNELS:
        # Sums over the channel axis first, in float32: at most 1024 terms of |q^2| <= 2^14, so every partial
        # sum in any order is an integer below 2^24, exact; the rest of each row sum in float64.
        axis = const("channel_axis", np.array([channel_axis], np.int64))
        partial_s1 = op("ReduceSum", [codes, axis], keepdims=1)
        partial_s2 = op("ReduceSumSquare", [codes], axes=[channel_axis], keepdims=1)
        s1, s2 = (op("ReduceSum", [op("Reshape", [op("Cast", [p], to=double), const(f"rows_{k}", np.array([0, -1], np.int64))]),
                                   const(f"axis1_{k}", np.array([1], np.int64))], keepdims=1)
                  for k, p in (("s1", partial_s1), ("s2", partial_s2)))
    else:
        wide = op("Cast", [rows], to=double)
        s1 = op("ReduceSum", [wide, const("axis1", np.array([1], np.int64))], keepdims=1)
        s2 = op("ReduceSumSquare", [wide], axes=[1], keepdims=1)
    n_elements = op("Cast", [op("ReduceProd", [op("Slice", [shape, const("one", np.array([1], np.int64)),
                                                            const("end", np.array([2 ** 62], np.int64))])],
                                 keepdims=1)], to=double)
    mean = op("Round", [op("Div", [op("Mul", [s1, const("mean_scale", np.float64(2 ** f_bits))]), n_elements])])
    sum_d2 = op("Add", [op("Sub", [op("Mul", [s2, const("s2_scale", np.float64(2 ** (2 * f_bits)))]),
                                   op("Mul", [op("Mul", [mean, s1]), const("cross", np.float64(2 ** (f_bits + 1)))])]),
                        op("Mul", [op("Mul", [mean, mean]), n_elements])])
    var = op("Floor", [op("Div", [sum_d2, n_elements])])
    std = op("Max", [op("Floor", [op("Sqrt", [var])]), const("one_f", np.float64(1))])
    mean_codes = op("Cast", [op("Mul", [mean, const("mean_unit", np.float64(2.0 ** -f_bits))])], to=single)
    std_units = op("Cast", [op("Mul", [std, const("norm_unit", np.float64(2.0 ** -(f_bits + p_bits)))])], to=single)
    normalised = op("Round", [op("Div", [op("Sub", [rows, mean_codes]), std_units])])
    normalised = op("Reshape", [normalised, shape])
    affine_shape = np.array([-1] + [1] * (-channel_axis - 1) if channel_axis < 0 else [-1, 1], np.int64)
    out_scale = 2.0 ** (attrs["gamma_exponent"] - p_bits)
    scaled = [op("Reshape", [op("Mul", [op("Cast", [name], to=single), const(f"{what}_scale", np.float32(out_scale))]),
                             const(f"{what}_shape", affine_shape)]) for what, name in (("gamma", gamma), ("beta", beta))]
    made.append(helper.make_node("Add", [op("Mul", [normalised, scaled[0]]), scaled[1]], [node.output[0]],
                                 name=f"{prefix}/affine"))
    return made
