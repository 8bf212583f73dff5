"""Lowering a QONNX graph to kernel records: the golden engine's lowered graph
(limuse_runtime.golden.lower) walked once with the golden op handlers on a zero input of the graph's
static shape; every node becomes one or more typed records of what the handler did in that case
(integer requantization, integer layer, integer norm, integer residual add, PReLU table, strided copy,
float op), so the C engine repeats the golden engine's arithmetic op for op."""
from __future__ import annotations

import numpy as np

from limuse_export.native.format import (BINARY_CODES, FLOAT, INT, OP_ADD_INT, OP_BINARY_FLOAT, OP_CONV,
                                         OP_CONV_TRANSPOSE, OP_COPY, OP_INORM, OP_LINEAR, OP_PRELU_TABLE,
                                         OP_QUANT_FLOAT, OP_REDUCE_MEAN, OP_REQUANT, OP_RESIZE, OP_TABLE, OP_ZERO,
                                         RECIPE, RESIZE_TRANSFORMS, PackError, floats, packed_ints)
from limuse_export.native.program import Program, broadcast, coalesce, contiguous_strides, copy_fields
from limuse_runtime.golden import fixed_point as fp
from limuse_runtime.golden.engine import _RunContext
from limuse_runtime.golden.fixed_point import GoldenError, QTensor
from limuse_runtime.golden.lower import TORCH_MODULE_DOC
from limuse_runtime.golden.ops import LAYOUT, OPS, conv_params

ALIASES = {"Reshape", "Squeeze", "Unsqueeze", "Identity", "Flatten"}  # contiguous reinterpretations
FLOAT_NORMS = {"InstanceNormalization", "LayerNormalization", "Sqrt"}


def _stage(node) -> str:
    """The top-level torch module a node belongs to (encoder, audio_stage, fusion_stage, mask, decoder, ...),
    from the module name the export records in its doc_string (or an integer layer's name)."""
    name = node.doc[len(TORCH_MODULE_DOC):].strip() if node.doc.startswith(TORCH_MODULE_DOC) else \
        (node.name if node.op == "IntegerLayer" else "")
    return name.split(".")[0] if name else "graph"


def _strided(node, args, shape) -> "tuple[tuple, int, tuple] | None":
    """The layout op as (out shape, source offset, source strides) in elements, from the golden handler
    applied to an index array; None if it is not an affine view."""
    index = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    out = np.asarray(LAYOUT[node.op](node, index, args))
    if out.size == 0:
        return None
    if np.shares_memory(out, index):
        offset = (out.__array_interface__["data"][0] - index.__array_interface__["data"][0]) // 8
        return out.shape, int(offset), tuple(s // 8 for s in out.strides)
    offset = int(out.flat[0])
    strides = tuple(int(out[(0,) * d + (1,) + (0,) * (out.ndim - d - 1)] - offset) if out.shape[d] > 1 else 0
                    for d in range(out.ndim))
    rebuilt = np.full(out.shape, offset, np.int64)
    for d, s in enumerate(strides):
        rebuilt += (np.arange(out.shape[d], dtype=np.int64) * s).reshape((-1,) + (1,) * (out.ndim - d - 1))
    return (out.shape, offset, strides) if np.array_equal(rebuilt, out) else None


class Compiler:
    """Walks the lowered graph with the golden handlers, emitting kernel records as it goes."""

    def __init__(self, graph):
        self.graph = graph
        self.program = Program()
        self.ids: dict = {}  # graph value name -> value id
        self.ctx = _RunContext({}, None)

    def value_id(self, name: str, value) -> int:
        if name not in self.ids:
            raise PackError(f"value {name!r} is a constant the native engine does not take as an operand")
        return self.ids[name]

    def define(self, name: str, value, bound: int = 0) -> int:
        if isinstance(value, QTensor):
            if not value.per_tensor:
                raise PackError(f"value {name!r} has per-channel scales; the native engine takes per-tensor "
                                f"activation scales (recipe {RECIPE})")
            vid = self.program.new_value(INT, value.codes.size, int(value.exponent), bound)
        else:
            value = np.asarray(value)
            if value.dtype != np.float32:
                raise PackError(f"value {name!r} is {value.dtype}; expected float32 or integer codes")
            vid = self.program.new_value(FLOAT, value.size)
        self.ids[name] = vid
        return vid

    def bound_of(self, name: str) -> int:
        return self.program.values[self.ids[name]].bound

    def compile(self, inputs: dict) -> dict:
        values = dict(self.graph.constants)
        for name in self.graph.inputs:
            values[name] = inputs[name]
            self.define(name, inputs[name])
        last_use = {}
        for i, node in enumerate(self.graph.nodes):
            for name in node.inputs:
                last_use[name] = i
        for i, node in enumerate(self.graph.nodes):
            args = [values[n] if n else None for n in node.inputs]
            self.program.enter_stage(_stage(node))
            try:
                results = OPS[node.op](node, args, self.ctx)
            except GoldenError:
                raise
            except Exception as exc:
                raise PackError(f"node {node.name} ({node.op}): {type(exc).__name__}: {exc}") from exc
            self.lower_node(node, args, results)
            for name, value in zip(node.outputs, results):
                values[name] = value
            for name in node.inputs:
                if last_use.get(name) == i and name not in self.graph.outputs and name not in self.graph.constants:
                    values.pop(name, None)
        return values

    # ---- one node
    def lower_node(self, node, args, results) -> None:
        op = node.op
        x, y = args[0] if args else None, results[0]
        out_name = node.outputs[0]
        where = f"node {node.name} ({op})"
        p = self.program
        if op == "Quant":
            lo, hi = fp.code_range(y.bits, y.signed, y.narrow)
            if y.bits > 8:
                raise PackError(f"{where}: {y.bits}-bit activations; the native engine takes <= 8-bit codes")
            xi = self.value_id(node.inputs[0], x)
            out = self.define(out_name, y, max(-lo, hi))
            if isinstance(x, QTensor):
                p.emit(OP_REQUANT, [out, xi, y.codes.size, int(y.exponent) - int(x.exponent), lo, hi], [xi], [out])
            else:
                p.emit(OP_QUANT_FLOAT, [out, xi, y.codes.size, int(y.exponent), lo, hi], [xi], [out])
        elif op == "IntegerLayer":
            self.integer_layer(node, x, y)
        elif op == "IntegerNorm":
            self.integer_norm(node, args, y)
        elif op in ("Add", "Sub") and isinstance(x, QTensor) and isinstance(args[1], QTensor):
            a, b = args
            e = min(int(a.exponent), int(b.exponent))
            sa, sb = int(a.exponent) - e, int(b.exponent) - e
            bound = (self.bound_of(node.inputs[0]) << sa) + (self.bound_of(node.inputs[1]) << sb)
            if bound > fp.INT32_MAX:
                raise PackError(f"{where}: the residual sum can reach {bound}, beyond int32; the native engine "
                                f"keeps integer tensors in int32")
            ai, bi = self.value_id(node.inputs[0], a), self.value_id(node.inputs[1], b)
            out = self.define(out_name, y, bound)
            dims, sta, stb = coalesce(tuple(y.codes.shape), broadcast(a.codes.shape, y.codes.shape),
                                       broadcast(b.codes.shape, y.codes.shape), contiguous_strides(y.codes.shape))[:3]
            p.emit(OP_ADD_INT, [out, ai, bi, 1 if op == "Sub" else 0, sa, sb, len(dims), *dims, *sta, *stb],
                   [ai, bi], [out])
        elif op in BINARY_CODES:
            self.binary_float(node, args, y)
        elif op == "PRelu":
            slope = np.asarray(args[1].dequantize() if isinstance(args[1], QTensor) else args[1], np.float32)
            if not (isinstance(x, QTensor) and x.bits is not None and x.bits <= 8 and slope.size == 1):
                raise PackError(f"{where}: PReLU on a float or wide tensor or with per-channel slopes; the "
                                f"native engine tables PReLU on 8-bit codes (recipe {RECIPE})")
            xi = self.value_id(node.inputs[0], x)
            out = self.define(out_name, y)
            p.emit(OP_PRELU_TABLE, [out, xi, x.codes.size, int(x.exponent), int(x.signed)], [xi], [out],
                   floats(slope))
        elif op in ("Sigmoid", "Tanh", "Relu"):
            if not (isinstance(x, QTensor) and x.bits is not None and x.bits <= 8):
                raise PackError(f"{where}: {op} on a float tensor; the native engine tables it on 8-bit codes")
            codes = np.arange(256, dtype=np.uint8).view(np.int8) if x.signed else np.arange(256, dtype=np.uint8)
            table = OPS[op](node, [QTensor(codes, x.exponent, x.bits, x.signed, x.narrow)], self.ctx)[0]
            xi = self.value_id(node.inputs[0], x)
            out = self.define(out_name, y)
            p.emit(OP_TABLE, [out, xi, x.codes.size, int(x.signed)], [xi], [out], floats(table))
        elif op in ALIASES:
            self.ids[out_name] = self.value_id(node.inputs[0], x)
        elif op == "Pad":
            self.pad(node, args, y)
        elif op in LAYOUT:
            self.layout(node, args, y)
        elif op == "Concat":
            self.concat(node, args, y)
        elif op == "ReduceMean":
            self.reduce_mean(node, args, y)
        elif op == "Resize":
            self.resize(node, args, y)
        elif op == "ConvTranspose":
            self.conv_transpose(node, args, y)
        elif op in FLOAT_NORMS:
            raise PackError(f"{where}: a float normalisation; the native engine needs integer norms "
                            f"(recipe {RECIPE})")
        else:
            raise PackError(f"{where}: op {op} is not supported by the native engine (models of recipe {RECIPE})")

    def integer_layer(self, node, x, y) -> None:
        layer = node.attrs["layer"]
        if not isinstance(x, QTensor) or x.bits is None or x.bits > 8:
            raise PackError(f"layer {layer.name}: input is not 8-bit codes; the native engine takes quantized "
                            f"8-bit inputs (recipe {RECIPE})")
        bound = layer.accumulator_bound(x)
        if bound > fp.INT32_MAX:
            raise PackError(f"layer {layer.name}: accumulator bound {bound} exceeds int32 "
                            f"({fp.INT32_MAX}); lower the weight bits or the layer's fan-in")
        weight_exponent = layer.weight_exponent()
        if np.ndim(weight_exponent):
            raise PackError(f"layer {layer.name}: per-channel weight scales; the native engine takes "
                            f"per-tensor power-of-two scales (recipe {RECIPE})")
        xi = self.value_id(node.inputs[0], x)
        o = layer.output
        if o is not None:
            lo, hi = fp.code_range(o.bits, o.signed, o.narrow)
            requant = [1, int(layer.shift(int(x.exponent))), lo, hi]
            out_bound = max(-lo, hi)
        else:
            requant, out_bound = [0], bound
        out = self.define(node.outputs[0], y, out_bound)
        bias = layer.bias.codes if layer.bias is not None else None
        blobs = packed_ints(layer.weight.codes) + (packed_ints(bias) if bias is not None else b"")
        has_bias = 0 if bias is None else 1
        if layer.kind == "linear":
            cin, cout = layer.weight.codes.shape
            rows = x.codes.size // cin
            self.program.emit(OP_LINEAR, [out, xi, rows, cin, cout, has_bias, *requant], [xi], [out], blobs)
        else:
            b, cin, t = x.codes.shape
            cout, cgroup, k = layer.weight.codes.shape
            t_out = y.codes.shape[2]
            self.program.emit(OP_CONV, [out, xi, b, cin, t, cout, k, layer.stride, layer.dilation, layer.pads[0],
                                        layer.pads[1], layer.groups, t_out, has_bias, *requant], [xi], [out], blobs)

    def integer_norm(self, node, args, y) -> None:
        x, gamma, beta = args
        a = node.attrs
        gamma = np.asarray(gamma.dequantize() if isinstance(gamma, QTensor) else gamma).astype(np.int64)
        beta = np.asarray(beta.dequantize() if isinstance(beta, QTensor) else beta).astype(np.int64)
        shape = x.codes.shape
        axis = a["channel_axis"] % len(shape)
        inner = int(np.prod(shape[axis + 1:]))
        channels = shape[axis]
        # |d| <= 255 * 2^F, std >= 1: |n| <= rdiv(255 * 2^(F+P), 1), so |acc| <= that * max|gamma| + max|beta|
        bound = (255 << (a["mean_frac_bits"] + a["norm_frac_bits"])) * int(np.abs(gamma).max()) + \
            int(np.abs(beta).max())
        if bound > fp.INT32_MAX:
            raise PackError(f"IntegerNorm {node.name}: accumulator bound {bound} exceeds int32")
        if abs(int(x.exponent)) > 64 or self.bound_of(node.inputs[0]) > 255:
            raise PackError(f"IntegerNorm {node.name}: input is not 8-bit codes")
        xi = self.value_id(node.inputs[0], x)
        out = self.define(node.outputs[0], y, bound)
        self.program.emit(OP_INORM, [out, xi, shape[0], x.codes.size // shape[0], channels, inner,
                                     a["mean_frac_bits"], a["norm_frac_bits"]], [xi], [out],
                          packed_ints(gamma) + packed_ints(beta))

    def _operand(self, name, value):
        """(value id, dequantization flag, exponent) of a float op's operand."""
        vid = self.value_id(name, value)
        return (vid, 1, int(value.exponent)) if isinstance(value, QTensor) else (vid, 0, 0)

    def binary_float(self, node, args, y) -> None:
        y = np.asarray(y)
        if y.dtype != np.float32:
            raise PackError(f"node {node.name} ({node.op}): result is {y.dtype}; expected float32")
        a, b = args
        ai, ad, ae = self._operand(node.inputs[0], a)
        bi, bd, be = self._operand(node.inputs[1], b)
        out = self.define(node.outputs[0], y)
        sa = broadcast(np.shape(a.codes if isinstance(a, QTensor) else a), y.shape)
        sb = broadcast(np.shape(b.codes if isinstance(b, QTensor) else b), y.shape)
        dims, sa, sb = coalesce(y.shape, sa, sb, contiguous_strides(y.shape))[:3]
        self.program.emit(OP_BINARY_FLOAT, [out, ai, ad, ae, bi, bd, be, BINARY_CODES[node.op], len(dims), *dims,
                                            *sa, *sb], [ai, bi], [out])

    def layout(self, node, args, y) -> None:
        x = args[0]
        shape = x.codes.shape if isinstance(x, QTensor) else np.shape(x)
        view = _strided(node, args[1:], shape)
        if view is None:
            raise PackError(f"node {node.name} ({node.op}): not a strided view of its input; the native engine "
                            f"copies layouts as strided views")
        dims, offset, strides = view
        xi = self.value_id(node.inputs[0], x)
        bound = self.bound_of(node.inputs[0]) if isinstance(x, QTensor) else 0
        out = self.define(node.outputs[0], y, bound)
        self.program.emit(OP_COPY, copy_fields(out, xi, dims, 0, contiguous_strides(dims), offset, strides),
                          [xi], [out])

    def pad(self, node, args, y) -> None:
        x = args[0]
        shape = x.codes.shape if isinstance(x, QTensor) else np.shape(x)
        out_shape = y.codes.shape if isinstance(y, QTensor) else np.shape(y)
        # where the input's first element lands: the golden handler on an index array says it
        index = np.arange(1, int(np.prod(shape)) + 1, dtype=np.int64).reshape(shape)
        padded = LAYOUT["Pad"](node, index, args[1:])
        origin = tuple(int(i[0]) for i in np.nonzero(padded == 1))
        xi = self.value_id(node.inputs[0], x)
        out = self.define(node.outputs[0], y, self.bound_of(node.inputs[0]) if isinstance(x, QTensor) else 0)
        strides = contiguous_strides(out_shape)
        self.program.emit(OP_ZERO, [out], [], [out])
        self.program.emit(OP_COPY, copy_fields(out, xi, shape, int(np.dot(origin, strides)), strides, 0,
                                                contiguous_strides(shape)), [xi], [out])

    def concat(self, node, args, y) -> None:
        axis = node.attrs["axis"]
        quantized = isinstance(y, QTensor)
        out_shape = y.codes.shape if quantized else np.shape(y)
        axis %= len(out_shape)
        bound = max((self.bound_of(n) for n, v in zip(node.inputs, args) if isinstance(v, QTensor)), default=0)
        out = self.define(node.outputs[0], y, bound if quantized else 0)
        strides = contiguous_strides(out_shape)
        start = 0
        for name, v in zip(node.inputs, args):
            shape = v.codes.shape if isinstance(v, QTensor) else np.shape(v)
            vi = self.value_id(name, v)
            dequant = int(v.exponent) if isinstance(v, QTensor) and not quantized else None
            self.program.emit(OP_COPY, copy_fields(out, vi, shape, start * strides[axis], strides, 0,
                                                    contiguous_strides(shape), dequant), [vi], [out])
            start += shape[axis]

    def reduce_mean(self, node, args, y) -> None:
        x = args[0]
        shape = x.codes.shape if isinstance(x, QTensor) else np.shape(x)
        axes = node.attrs.get("axes")
        if len(args) > 1 and args[1] is not None:
            axes = [int(a) for a in np.asarray(args[1]).ravel()]
        axes = sorted(a % len(shape) for a in axes) if axes else list(range(len(shape)))
        if axes != list(range(axes[0], axes[-1] + 1)):
            raise PackError(f"node {node.name} (ReduceMean): axes {axes} are not adjacent")
        outer = int(np.prod(shape[:axes[0]]))
        n = int(np.prod([shape[a] for a in axes]))
        inner = int(np.prod(shape[axes[-1] + 1:]))
        xi, xd, xe = self._operand(node.inputs[0], x)
        out = self.define(node.outputs[0], y)
        # numpy sums a contiguous reduction pairwise and a strided one in index order (C engine: the same)
        self.program.emit(OP_REDUCE_MEAN, [out, xi, xd, xe, outer, n, inner], [xi], [out])

    def resize(self, node, args, y) -> None:
        x = args[0]
        shape = x.codes.shape if isinstance(x, QTensor) else np.shape(x)
        y = np.asarray(y)
        axes = [a for a, (i, o) in enumerate(zip(shape, y.shape)) if i != o]
        if len(axes) != 1:
            raise PackError(f"node {node.name} (Resize): resizes axes {axes}; expected one axis")
        axis = axes[0]
        n_in, n_out = shape[axis], y.shape[axis]
        transform = node.attrs.get("coordinate_transformation_mode", "half_pixel")
        if node.attrs.get("mode") != "linear" or transform not in RESIZE_TRANSFORMS:
            raise PackError(f"node {node.name} (Resize): mode {node.attrs.get('mode')!r}, {transform!r}; expected "
                            f"linear with one of {sorted(RESIZE_TRANSFORMS)}")
        # The C engine computes the taps of limuse_runtime.golden.ops.linear_resize_taps itself (the same
        # float32 operations): stored, they would grow with the window (30 KB at 3 s on limuse_k32).
        xi, xd, xe = self._operand(node.inputs[0], x)
        out = self.define(node.outputs[0], y)
        self.program.emit(OP_RESIZE, [out, xi, xd, xe, int(np.prod(shape[:axis])), n_in, n_out,
                                      int(np.prod(shape[axis + 1:])), RESIZE_TRANSFORMS[transform]], [xi], [out])

    def conv_transpose(self, node, args, y) -> None:
        x, w = args[0], np.asarray(args[1], np.float32)
        bias = np.asarray(args[2], np.float32) if len(args) > 2 and args[2] is not None else np.zeros(w.shape[1], np.float32)
        stride, dilation, pads, groups = conv_params(node)
        if groups != 1 or node.attrs.get("output_padding", [0])[0] != 0:
            raise PackError(f"node {node.name} (ConvTranspose): groups or output padding other than 1/0")
        shape = x.codes.shape if isinstance(x, QTensor) else np.shape(x)
        xi, xd, xe = self._operand(node.inputs[0], x)
        out = self.define(node.outputs[0], y)
        b, cin, t = shape
        _, cout, k = w.shape
        self.program.emit(OP_CONV_TRANSPOSE, [out, xi, xd, xe, b, cin, t, cout, k, stride, dilation, pads[0], pads[1]],
                          [xi], [out], floats(w) + floats(bias))
