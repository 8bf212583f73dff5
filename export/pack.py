"""Pack a QONNX export into `<name>.packed.bin`, the native engine's model file (runtime/native/FORMAT.md).

One source of truth: the packer lowers the QONNX graph with the golden engine's own passes
(`limuse_runtime.golden.lower`: constant folding, then Quant/Conv/MatMul chains fused into IntegerLayers)
and walks the lowered graph once with the golden op handlers on a zero input of the graph's (static)
shape. Every node becomes one or more typed kernel records of what the handler did in that case
(integer requantization, integer layer, integer norm, integer residual add, PReLU table, strided copy,
float op), so the C engine repeats the golden engine's arithmetic op for op, without a graph, a
type check or a shape inference of its own. Then `fuse` composes copies of copies and replaces the TAC
blocks, PReLU + Quant pairs and GC-TCN convolution blocks by fused kernels (the same integers; the values
inside a pattern leave the program), and the arena is planned over the remaining values' lifetimes. Weights and every integer array are bit-packed at the width
they need (3-bit weights: 3 bits each); activations get static offsets in one arena.

    python -m limuse_export.pack build/m.qonnx.onnx build/m.packed.bin
"""
from __future__ import annotations

import argparse
import json
import struct
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from limuse_runtime.contract import INPUT_NAMES, MIXTURE, OUTPUT_NAME, SAMPLE_RATE, atomic_write_bytes
from limuse_runtime.golden import fixed_point as fp
from limuse_runtime.golden.engine import _RunContext
from limuse_runtime.golden.fixed_point import GoldenError, QTensor
from limuse_runtime.golden.graph import load_graph
from limuse_runtime.golden.lower import TORCH_MODULE_DOC, lower
from limuse_runtime.golden.ops import LAYOUT, OPS, conv_params

MAGIC = b"LIMUSEPK"
VERSION = 3
RECIPE = "w3a8-po2-inorm"  # the recipe whose models the engine represents
INT, FLOAT = 0, 1
ALIGN = 16  # arena offsets in elements (64 bytes)
MAX_RANK = 8

# Kernel opcodes (runtime/native/FORMAT.md, "Kernels"); the C engine's enum has the same numbers.
OP_QUANT_FLOAT, OP_REQUANT, OP_LINEAR, OP_CONV, OP_INORM, OP_ADD_INT, OP_BINARY_FLOAT = 1, 2, 3, 4, 5, 6, 7
OP_PRELU_TABLE, OP_TABLE, OP_COPY, OP_ZERO, OP_REDUCE_MEAN, OP_RESIZE, OP_CONV_TRANSPOSE = 8, 9, 10, 11, 12, 13, 14
OP_TAC, OP_PRELU_QUANT, OP_GCBLOCK = 15, 16, 17  # fused kernels, made by fuse() from the records above
# where each opcode's fields hold value ids (renumbering after fusion rewrites them)
ID_FIELDS = {OP_QUANT_FLOAT: (0, 1), OP_REQUANT: (0, 1), OP_LINEAR: (0, 1), OP_CONV: (0, 1), OP_INORM: (0, 1),
             OP_ADD_INT: (0, 1, 2), OP_BINARY_FLOAT: (0, 1, 4), OP_PRELU_TABLE: (0, 1), OP_TABLE: (0, 1),
             OP_COPY: (0, 1), OP_ZERO: (0,), OP_REDUCE_MEAN: (0, 1), OP_RESIZE: (0, 1), OP_CONV_TRANSPOSE: (0, 1),
             OP_TAC: (0, 1), OP_PRELU_QUANT: (0, 1), OP_GCBLOCK: (0, 1)}
TAC_MAX_CHANNELS = 512  # the C kernel's stack tiles (LMN_TAC_MAX_CHANNELS)
BINARY_CODES = {"Add": 0, "Sub": 1, "Mul": 2, "Div": 3}
RESIZE_TRANSFORMS = {"half_pixel": 0, "pytorch_half_pixel": 0, "align_corners": 1, "asymmetric": 2}
ALIASES = {"Reshape", "Squeeze", "Unsqueeze", "Identity", "Flatten"}  # contiguous reinterpretations
FLOAT_NORMS = {"InstanceNormalization", "LayerNormalization", "Sqrt"}


class PackError(GoldenError):
    """A model the native engine cannot represent."""


# ---------------------------------------------------------------- encoding
def varint(value: int) -> bytes:
    """Zigzag LEB128: small numbers of either sign take one byte."""
    value = int(value)
    z = (value << 1) ^ (value >> 63) if value < 0 else value << 1
    out = bytearray()
    while True:
        byte = z & 0x7F
        z >>= 7
        if z:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def packed_ints(values: np.ndarray) -> bytes:
    """count, bit width b, then every value as b-bit two's complement, LSB first (FORMAT.md)."""
    values = np.asarray(values, np.int64).ravel()
    lo, hi = (int(values.min()), int(values.max())) if values.size else (0, 0)
    bits = 1
    while not (-(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1):
        bits += 1
    if bits > 32:
        raise PackError(f"integer array outside int32 ([{lo}, {hi}])")
    u = (values & ((1 << bits) - 1)).astype(np.uint64)
    bitplanes = ((u[:, None] >> np.arange(bits, dtype=np.uint64)) & 1).astype(np.uint8).ravel()
    return varint(values.size) + varint(bits) + np.packbits(bitplanes, bitorder="little").tobytes()


def floats(values: np.ndarray) -> bytes:
    values = np.asarray(values, np.float32).ravel()
    return varint(values.size) + values.astype("<f4").tobytes()


@dataclass
class Value:
    kind: int
    size: int
    exponent: int = 0
    bound: int = 0  # max |code| for integer values (static)
    first: int = -1
    last: int = -1
    offset: int = -1


@dataclass
class Record:
    opcode: int
    fields: list
    blobs: bytes
    inputs: list  # value ids read
    outputs: list  # value ids written
    stage: int

    @property
    def payload(self) -> bytes:
        return b"".join(varint(v) for v in self.fields) + self.blobs


@dataclass
class Program:
    values: list = field(default_factory=list)
    records: list = field(default_factory=list)  # Record, in execution order
    stages: list = field(default_factory=list)  # names of the model's top-level modules, in order of use
    stage: int = 0

    def new_value(self, kind: int, size: int, exponent: int = 0, bound: int = 0) -> int:
        self.values.append(Value(kind, int(size), int(exponent), int(bound)))
        return len(self.values) - 1

    def emit(self, opcode: int, fields: list, inputs: list, outputs: list, blobs: bytes = b"") -> None:
        self.records.append(Record(opcode, [int(v) for v in fields], blobs, list(inputs), list(outputs), self.stage))

    def enter_stage(self, name: str) -> None:
        if name not in self.stages:
            self.stages.append(name)
        self.stage = self.stages.index(name)


# ---------------------------------------------------------------- compiling the lowered graph
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


def _contiguous_strides(shape) -> tuple:
    strides, step = [], 1
    for d in reversed(shape):
        strides.append(step)
        step *= int(d)
    return tuple(reversed(strides))


def _broadcast(shape, out_shape) -> tuple:
    """Strides (elements) that read a contiguous `shape` broadcast to `out_shape`."""
    shape = (1,) * (len(out_shape) - len(shape)) + tuple(shape)
    return tuple(0 if d == 1 and o != 1 else s for d, o, s in zip(shape, out_shape, _contiguous_strides(shape)))


def _coalesce(dims, *strides_list) -> tuple:
    """Merges adjacent axes that every view steps through as one (stride_d == stride_{d+1} * dim_{d+1}) and
    drops axes of size 1: the same elements in the same order, in fewer, longer runs for the C loops."""
    dims = list(dims)
    strides_list = [list(s) for s in strides_list]
    keep = [d for d in range(len(dims)) if dims[d] != 1] or [len(dims) - 1] if dims else []
    dims = [dims[d] for d in keep]
    strides_list = [[s[d] for d in keep] for s in strides_list]
    d = len(dims) - 2
    while d >= 0:
        if all(s[d] == s[d + 1] * dims[d + 1] for s in strides_list):
            dims[d] *= dims[d + 1]
            for s in strides_list:
                s[d] = s[d + 1]
                del s[d + 1]
            del dims[d + 1]
        d -= 1
    return (tuple(dims), *(tuple(s) for s in strides_list))


def _copy_fields(out_id, in_id, dims, dst_off, dst_strides, src_off, src_strides, dequant=None):
    dims, dst_strides, src_strides = _coalesce(dims, dst_strides, src_strides) if len(dims) else (dims, dst_strides,
                                                                                                  src_strides)
    if len(dims) > MAX_RANK:
        raise PackError(f"a layout op of rank {len(dims)}; the native engine handles rank <= {MAX_RANK}")
    fields = [out_id, in_id, 0 if dequant is None else 1, dequant or 0, len(dims), *dims, dst_off, *dst_strides,
              src_off, *src_strides]
    return fields


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
            dims, sta, stb = _coalesce(tuple(y.codes.shape), _broadcast(a.codes.shape, y.codes.shape),
                                       _broadcast(b.codes.shape, y.codes.shape), _contiguous_strides(y.codes.shape))[:3]
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
        sa = _broadcast(np.shape(a.codes if isinstance(a, QTensor) else a), y.shape)
        sb = _broadcast(np.shape(b.codes if isinstance(b, QTensor) else b), y.shape)
        dims, sa, sb = _coalesce(y.shape, sa, sb, _contiguous_strides(y.shape))[:3]
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
        self.program.emit(OP_COPY, _copy_fields(out, xi, dims, 0, _contiguous_strides(dims), offset, strides),
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
        strides = _contiguous_strides(out_shape)
        self.program.emit(OP_ZERO, [out], [], [out])
        self.program.emit(OP_COPY, _copy_fields(out, xi, shape, int(np.dot(origin, strides)), strides, 0,
                                                _contiguous_strides(shape)), [xi], [out])

    def concat(self, node, args, y) -> None:
        axis = node.attrs["axis"]
        quantized = isinstance(y, QTensor)
        out_shape = y.codes.shape if quantized else np.shape(y)
        axis %= len(out_shape)
        bound = max((self.bound_of(n) for n, v in zip(node.inputs, args) if isinstance(v, QTensor)), default=0)
        out = self.define(node.outputs[0], y, bound if quantized else 0)
        strides = _contiguous_strides(out_shape)
        start = 0
        for name, v in zip(node.inputs, args):
            shape = v.codes.shape if isinstance(v, QTensor) else np.shape(v)
            vi = self.value_id(name, v)
            dequant = int(v.exponent) if isinstance(v, QTensor) and not quantized else None
            self.program.emit(OP_COPY, _copy_fields(out, vi, shape, start * strides[axis], strides, 0,
                                                    _contiguous_strides(shape), dequant), [vi], [out])
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


# ---------------------------------------------------------------- fusion
class _Flow:
    """Who writes and who reads each value, over a program's records."""

    def __init__(self, program: Program, keep: set):
        self.writers: dict = {}
        self.readers: dict = {}
        self.keep = keep  # graph inputs and output: never fused away
        for i, r in enumerate(program.records):
            for v in r.outputs:
                self.writers.setdefault(v, []).append(i)
            for v in r.inputs:
                self.readers.setdefault(v, []).append(i)

    def only_writer(self, program, vid, opcode):
        w = self.writers.get(vid, [])
        return program.records[w[0]] if len(w) == 1 and program.records[w[0]].opcode == opcode else None

    def read_only_by(self, vid, indices) -> bool:
        return vid not in self.keep and sorted(set(self.readers.get(vid, []))) == sorted(indices)


def _match_tac(program: Program, flow: _Flow, i3: int):
    """The TAC block (transform, average, concatenate) ending at LINEAR record i3, as the golden graph lowers it:

        a = L1(x) (rows, Ch); pa = PReLU(a); m = mean over the K groups of pa (outer, K, R Ch); mq = Quant(m);
        b = L2(mq) (outer R, Ch); pb = PReLU(b); e = pb expanded over K; cat = [pa, e] (rows, 2 Ch);
        out = L3(Quant(cat))

    Returns (records to drop, the fused record) or None. Every quantity is an integer code except pa, m, pb,
    e, cat: pa and pb are PReLU tables of 8-bit codes, so Quant(cat) is a code -> code table of a and b,
    and m is the same float32 sum in the same order from the same table; the K copies of e make the second
    half of L3's sum the same for the K rows of a frame (the kernel computes it once)."""
    rec = program.records
    l3 = rec[i3]
    if l3.opcode != OP_LINEAR:
        return None
    catq = l3.fields[1]
    q2 = flow.only_writer(program, catq, OP_QUANT_FLOAT)
    if q2 is None or not flow.read_only_by(catq, [i3]):
        return None
    cat = q2.fields[1]
    writers = flow.writers.get(cat, [])
    if len(writers) != 2 or any(rec[w].opcode != OP_COPY for w in writers):
        return None
    c2, c3 = rec[writers[0]], rec[writers[1]]
    pa, e = c2.fields[1], c3.fields[1]
    p1 = flow.only_writer(program, pa, OP_PRELU_TABLE)
    c1 = flow.only_writer(program, e, OP_COPY)
    if p1 is None or c1 is None:
        return None
    a = p1.fields[1]
    l1 = flow.only_writer(program, a, OP_LINEAR)
    pb = c1.fields[1]
    p2 = flow.only_writer(program, pb, OP_PRELU_TABLE)
    if l1 is None or p2 is None or not l1.fields[6] or not l3.fields[3] % 2 == 0:
        return None
    b = p2.fields[1]
    l2 = flow.only_writer(program, b, OP_LINEAR)
    if l2 is None or not l2.fields[6]:
        return None
    mq = l2.fields[1]
    q = flow.only_writer(program, mq, OP_QUANT_FLOAT)
    if q is None:
        return None
    mean = q.fields[1]
    r = flow.only_writer(program, mean, OP_REDUCE_MEAN)
    if r is None or r.fields[1] != pa or r.fields[2] != 0:
        return None
    rows, cin, ch = l1.fields[2:5]
    cout = l3.fields[4]
    outer, groups, inner = r.fields[4:7]
    if inner % ch or l3.fields[2] != rows or l3.fields[3] != 2 * ch or inner == 1:
        return None
    frames = inner // ch
    if outer * groups * frames != rows or l2.fields[2:5] != [outer * frames, ch, ch]:
        return None
    if max(cin, ch, cout) > TAC_MAX_CHANNELS:
        return None
    # the layouts: the concatenation puts pa first, e second, along the channels; e is pb repeated K times
    row = _contiguous_strides((rows, 2 * ch))
    if c2.fields != _copy_fields(cat, pa, (rows, ch), 0, row, 0, (ch, 1)) or \
            c3.fields != _copy_fields(cat, e, (rows, ch), ch, row, 0, (ch, 1)) or \
            c1.fields != _copy_fields(e, pb, (outer, groups, inner), 0, (groups * inner, inner, 1), 0, (inner, 0, 1)):
        return None
    index = {id(x): k for k, x in enumerate(rec)}
    i = {name: index[id(x)] for name, x in
         dict(l1=l1, p1=p1, r=r, q=q, l2=l2, p2=p2, c1=c1, c2=c2, c3=c3, q2=q2).items()}
    if not (flow.read_only_by(a, [i["p1"]]) and flow.read_only_by(pa, [i["r"], i["c2"]]) and
            flow.read_only_by(mean, [i["q"]]) and flow.read_only_by(mq, [i["l2"]]) and
            flow.read_only_by(b, [i["p2"]]) and flow.read_only_by(pb, [i["c1"]]) and
            flow.read_only_by(e, [i["c3"]]) and flow.read_only_by(cat, [i["q2"]])):
        return None
    x, out = l1.fields[1], l3.fields[0]
    fields = [out, x, outer, groups, frames, cin, ch, cout,
              l1.fields[5], *l1.fields[7:10],          # L1: has_bias, shift, lo, hi
              p1.fields[3], p1.fields[4],              # PReLU of a: exponent, signed
              q.fields[3], q.fields[4], q.fields[5],   # Quant of the mean: exponent, lo, hi
              l2.fields[5], *l2.fields[7:10],          # L2
              p2.fields[3], p2.fields[4],              # PReLU of b
              q2.fields[3], q2.fields[4], q2.fields[5],  # Quant of the concatenation
              l3.fields[5], *l3.fields[6:]]            # L3: has_bias, has_out[, shift, lo, hi]
    blobs = l1.blobs + p1.blobs + l2.blobs + p2.blobs + l3.blobs
    fused = Record(OP_TAC, fields, blobs, [x], [out], l3.stage)
    return set(i.values()), fused


def _match_prelu_quant(program: Program, flow: _Flow, iq: int):
    """Quant(PReLU(codes)) -> one code -> code table (the float PReLU output is read by nothing else)."""
    q = program.records[iq]
    if q.opcode != OP_QUANT_FLOAT:
        return None
    pf = q.fields[1]
    p = flow.only_writer(program, pf, OP_PRELU_TABLE)
    if p is None or not flow.read_only_by(pf, [iq]) or p.fields[2] != q.fields[2]:
        return None
    ip = flow.writers[pf][0]
    fused = Record(OP_PRELU_QUANT, [q.fields[0], p.fields[1], q.fields[2], p.fields[3], p.fields[4], *q.fields[3:6]],
                   p.blobs, [p.fields[1]], [q.fields[0]], q.stage)
    return {ip}, fused


def _match_gcblock(program: Program, flow: _Flow, ip: int):
    """The GC-TCN convolution block ending at LINEAR record ip (the projection), as the golden graph lowers it:

        h = PReLU+Quant(L_e(x)) (O T, Ch); g = Requant(Norm(h)) per block of T frames (channels last);
        the same transposed to (O, Ch, T), depthwise Conv over T, transposed back; PReLU+Quant; Norm;
        Requant; out = L_p(.)

    Every norm is over one block's T x Ch codes, so the kernel runs block by block with the block in the
    cache and without the transposes (the depthwise conv is computed channels-last: the same sums)."""
    rec = program.records
    lp = rec[ip]
    if lp.opcode != OP_LINEAR:
        return None
    chain, want = [], [OP_REQUANT, OP_INORM, OP_PRELU_QUANT, OP_COPY, OP_CONV, OP_REQUANT, OP_COPY, OP_INORM,
                       OP_PRELU_QUANT, OP_LINEAR]
    vid, reader = lp.fields[1], ip
    for opcode in want:
        r = flow.only_writer(program, vid, opcode)
        if r is None or not flow.read_only_by(vid, [reader]):
            return None
        reader = flow.writers[vid][0]
        chain.append(r)
        vid = r.fields[1]
    rq2, n2, pq2, c2, cv, rq1, c1, n1, pq1, le = chain
    rows, cin, ch = le.fields[2:5]
    outer = n1.fields[2]
    if not le.fields[6] or outer < 1 or rows % outer:
        return None
    frames = rows // outer
    n = rows * ch
    norm = [outer, frames * ch, ch, 1]
    if n1.fields[2:6] != norm or n2.fields[2:6] != norm or lp.fields[2:4] != [rows, ch] or \
            any(r.fields[2] != n for r in (pq1, pq2, rq1, rq2)):
        return None
    b, ci, t, co, k, stride, dil, padl, padr, groups, tout = cv.fields[2:13]
    if [b, ci, t, co, stride, groups, tout] != [outer, ch, frames, ch, 1, ch, frames] or not cv.fields[14]:
        return None
    if c1.fields != _copy_fields(c1.fields[0], n1.fields[0], (outer, ch, frames), 0,
                                 _contiguous_strides((outer, ch, frames)), 0, (frames * ch, 1, ch)) or \
            c2.fields != _copy_fields(c2.fields[0], cv.fields[0], (outer, frames, ch), 0,
                                      _contiguous_strides((outer, frames, ch)), 0, (frames * ch, 1, frames)):
        return None
    if max(cin, ch, lp.fields[4]) > TAC_MAX_CHANNELS:
        return None
    x, out = le.fields[1], lp.fields[0]
    fields = [out, x, outer, frames, cin, ch, lp.fields[4],
              le.fields[5], *le.fields[7:10],        # expand: has_bias, shift, lo, hi
              *pq1.fields[3:8],                      # PReLU + Quant: e, signed, e_q, lo, hi
              *n1.fields[6:8],                       # Norm: mean and norm fraction bits
              *rq1.fields[3:6],                      # Requant: shift, lo, hi
              k, dil, padl, padr, cv.fields[13], *cv.fields[15:18],  # depthwise conv
              *pq2.fields[3:8], *n2.fields[6:8], *rq2.fields[3:6],
              lp.fields[5], *lp.fields[6:]]          # projection: has_bias, has_out[, shift, lo, hi]
    blobs = le.blobs + pq1.blobs + n1.blobs + cv.blobs + pq2.blobs + n2.blobs + lp.blobs
    index = {id(r): i for i, r in enumerate(rec)}
    return {index[id(r)] for r in chain}, Record(OP_GCBLOCK, fields, blobs, [x], [out], lp.stage)


def _copy_view(fields):
    """(dims, dst offset, dst strides, src offset, src strides, deq, e) of a COPY record's fields."""
    rank = fields[4]
    dims = fields[5:5 + rank]
    dst_off, dst = fields[5 + rank], fields[6 + rank:6 + 2 * rank]
    src_off, src = fields[6 + 2 * rank], fields[7 + 2 * rank:7 + 3 * rank]
    return dims, dst_off, dst, src_off, src, fields[2], fields[3]


def _affine(index: np.ndarray):
    """(offset, strides) if the index array is offset + sum i_d stride_d, else None."""
    offset = int(index.flat[0])
    strides = [int(index[(0,) * d + (1,) + (0,) * (index.ndim - d - 1)] - offset) if index.shape[d] > 1 else 0
               for d in range(index.ndim)]
    rebuilt = np.full(index.shape, offset, np.int64)
    for d, st in enumerate(strides):
        rebuilt += (np.arange(index.shape[d], dtype=np.int64) * st).reshape((-1,) + (1,) * (index.ndim - d - 1))
    return (offset, strides) if np.array_equal(rebuilt, index) else None


def _affine_on_probes(dims2, off2, strides2, dims1, off1, strides1) -> bool:
    """A necessary condition for _affine of the composed index, on a few points (each axis's first and last
    step, the far corner): most candidates fail it, without building the whole index."""
    def source(points):
        flat = off2 + points @ np.asarray(strides2, np.int64)
        return off1 + np.stack(np.unravel_index(flat, tuple(dims1)), axis=-1) @ np.asarray(strides1, np.int64)
    dims = np.asarray(dims2, np.int64)
    rank = len(dims)
    points = np.vstack([np.eye(rank, dtype=np.int64) * (dims > 1), np.diag(dims - 1), (dims - 1)[None]])
    origin = source(np.zeros((1, rank), np.int64))[0]
    steps = source(points[:rank]) - origin
    return bool(np.array_equal(source(points), origin + points @ steps))


def _match_copy_chain(program: Program, flow: _Flow, i2: int):
    """COPY of a value that one plain COPY wrote whole (a layout op of a layout op: slices of a pad,
    transposes of a concatenation): one COPY from the first one's source, when the composed index is still
    a strided view. The middle value goes once no other kernel reads it."""
    rec = program.records
    c2 = rec[i2]
    if c2.opcode != OP_COPY:
        return None
    mid = c2.fields[1]
    c1 = flow.only_writer(program, mid, OP_COPY)
    if c1 is None or mid in flow.keep:
        return None
    dims1, dst_off1, dst1, src_off1, src1, deq1, _ = _copy_view(c1.fields)
    if deq1 or dst_off1 != 0 or list(dst1) != list(_contiguous_strides(dims1)) or \
            int(np.prod(dims1)) != program.values[mid].size:
        return None
    dims2, dst_off2, dst2, src_off2, src2, deq2, e2 = _copy_view(c2.fields)
    if not dims2 or int(np.prod(dims2)) > 1 << 24:
        return None
    if not _affine_on_probes(dims2, src_off2, src2, dims1, src_off1, src1):
        return None
    flat = np.full(tuple(dims2), src_off2, np.int64)
    for d, st in enumerate(src2):
        flat += (np.arange(dims2[d], dtype=np.int64) * st).reshape((-1,) + (1,) * (len(dims2) - d - 1))
    source = np.full(flat.shape, src_off1, np.int64)
    for axis, st in zip(np.unravel_index(flat, tuple(dims1)), src1):
        source += axis * st
    view = _affine(source)
    if view is None:
        return None
    fields = _copy_fields(c2.fields[0], c1.fields[1], tuple(dims2), dst_off2, tuple(dst2), view[0], tuple(view[1]),
                          e2 if deq2 else None)
    composed = Record(OP_COPY, fields, b"", [c1.fields[1]], list(c2.outputs), c2.stage)
    return set(), composed


def fuse(program: Program, keep: set) -> dict:
    """Rewrites the records into fused kernels where a pattern matches (TAC blocks, PReLU + Quant, then GC-TCN
    convolution blocks, which contain two of the latter);
    returns how many of each. The fused kernel takes the place of the pattern's last record; the values only
    the pattern used disappear from the program (renumber() drops them)."""
    counts = {}
    composed = 0
    flow = _Flow(program, keep)
    for i in range(len(program.records)):
        # One pass suffices: the program is in topological order, so composing record i changes what later
        # records see, never earlier ones; a composed copy may compose again with its new source's writer.
        while (found := _match_copy_chain(program, flow, i)) is not None:
            program.records[i] = found[1]
            flow = _Flow(program, keep)
            composed += 1
    flow = _Flow(program, keep)  # drop first copies whose value nothing reads any more
    program.records = [r for r in program.records
                       if not (r.opcode == OP_COPY and r.outputs[0] not in keep and not flow.readers.get(r.outputs[0]))]
    counts["copy_chains"] = composed
    for name, match in (("tac", _match_tac), ("prelu_quant", _match_prelu_quant), ("gcblock", _match_gcblock)):
        flow = _Flow(program, keep)
        drop, replace = set(), {}
        for i in range(len(program.records)):
            if i in drop:
                continue
            found = match(program, flow, i)
            if found is None or found[0] & (drop | set(replace)):
                continue
            drop |= found[0]
            replace[i] = found[1]
        program.records = [replace.get(i, r) for i, r in enumerate(program.records) if i not in drop]
        counts[name] = len(replace)
    return counts


def renumber(program: Program, keep: list) -> dict:
    """Drops the values no record uses (those fusion made internal), renumbering the rest in order; returns
    {old id: new id}."""
    used = set(keep)
    for r in program.records:
        used.update(r.inputs)
        used.update(r.outputs)
    new = {old: k for k, old in enumerate(sorted(used))}
    program.values = [program.values[old] for old in sorted(used)]
    for r in program.records:
        for at in ID_FIELDS[r.opcode]:
            r.fields[at] = new[r.fields[at]]
        r.inputs = [new[v] for v in r.inputs]
        r.outputs = [new[v] for v in r.outputs]
    return new


# ---------------------------------------------------------------- arena and file
def _allocate(program: Program, inputs: list, output: int) -> int:
    """Static arena offsets from value lifetimes; returns the arena size in elements. Values whose lifetimes
    do not overlap share memory; an output written in place of its dying operand shares its slot."""
    for vid in inputs:
        program.values[vid].first = -1
    for i, record in enumerate(program.records):
        used, written = record.inputs, record.outputs
        for vid in written:
            if program.values[vid].first == -1 and vid not in inputs:
                program.values[vid].first = i
            program.values[vid].last = max(program.values[vid].last, i)
        for vid in used:
            program.values[vid].last = max(program.values[vid].last, i)
    program.values[output].last = len(program.records)
    writers: dict = {}
    for i, record in enumerate(program.records):
        for vid in record.outputs:
            writers.setdefault(vid, []).append(i)
    # values that share a slot (an output written in place of its dying operand), as groups
    group = list(range(len(program.values)))

    def root(v):
        while group[v] != v:
            group[v] = group[group[v]]
            v = group[v]
        return v

    for vid in sorted(range(len(program.values)), key=lambda v: program.values[v].first):
        source = _in_place_source(program, vid, writers)
        if source is not None:
            group[vid] = root(source)
    members: dict = {}
    for vid in range(len(program.values)):
        members.setdefault(root(vid), []).append(vid)
    slots = []  # (size, first, last, members)
    for vids in members.values():
        vs = [program.values[v] for v in vids]
        size = -(-max(max(v.size for v in vs), 1) // ALIGN) * ALIGN
        slots.append((size, min(v.first for v in vs), max(v.last for v in vs), vids))
    # greedy by size: the largest slot first, each at the lowest offset free over its lifetime
    placed: list = []  # (offset, size, first, last)
    top = 0
    for size, first, last, vids in sorted(slots, key=lambda s: (-s[0], s[1])):
        busy = sorted((o, o + sz) for o, sz, f, l in placed if f <= last and first <= l)
        offset = 0
        for lo, hi in busy:
            if lo - offset >= size:
                break
            offset = max(offset, hi)
        placed.append((offset, size, first, last))
        for v in vids:
            program.values[v].offset = offset
        top = max(top, offset + size)
    return top


# Kernels whose element i of the output depends on element i of the operand alone (or, integer_norm, on
# its row, which it reads whole before writing): the output may take the operand's place when the
# operand dies there. Binary kernels qualify with an operand read contiguously; the fused TAC and GC-TCN
# kernels too (see _in_place_source).
_IN_PLACE = {OP_QUANT_FLOAT, OP_REQUANT, OP_PRELU_TABLE, OP_TABLE, OP_PRELU_QUANT, OP_INORM}


def _in_place_source(program: Program, vid: int, writers: dict) -> "int | None":
    v = program.values[vid]
    if len(writers.get(vid, [])) != 1 or v.first < 0:
        return None
    record = program.records[v.first]
    candidates = []
    if record.opcode in _IN_PLACE:
        candidates = [record.fields[1]]
    elif record.opcode in (OP_TAC, OP_GCBLOCK) and vid == record.fields[0]:
        # one outer block at a time: its input rows are read whole (into the kernel's scratch) before its
        # output rows are written, and with C_in == C_out those are the same elements
        candidates = [record.fields[1]]
    elif record.opcode in (OP_ADD_INT, OP_BINARY_FLOAT):
        f = record.fields
        rank_at = 6 if record.opcode == OP_ADD_INT else 8
        rank = f[rank_at]
        dims = f[rank_at + 1:rank_at + 1 + rank]
        sa, sb = f[rank_at + 1 + rank:rank_at + 1 + 2 * rank], f[rank_at + 1 + 2 * rank:rank_at + 1 + 3 * rank]
        contiguous = list(_contiguous_strides(dims))
        a, b = (f[1], f[2]) if record.opcode == OP_ADD_INT else (f[1], f[4])
        candidates = [u for u, st in ((a, sa), (b, sb)) if st == contiguous]
    for u in candidates:
        src = program.values[u]
        if src.last == v.first and src.size == v.size and len(writers.get(u, [0])) <= 1:
            return u
    return None


@dataclass(frozen=True)
class Packed:
    """The file's bytes, and for checking a run kernel by kernel: every graph value name's value id, and
    for each value id the kernel that completes it."""

    data: bytes
    value_ids: dict
    completed_by: dict
    fused: dict = field(default_factory=dict)  # fused kernels made: {"tac": n, "prelu_quant": n}


def pack_graph(graph, config: dict, fusion: bool = True) -> Packed:
    """fusion=False keeps one kernel per golden op (every intermediate tensor in the arena, for checking)."""
    if any(n.op in FLOAT_NORMS for n in graph.nodes):
        raise PackError(f"model: float normalisation ({sorted({n.op for n in graph.nodes} & FLOAT_NORMS)}); "
                        f"the native engine needs integer norms: train and export with recipe {RECIPE}")
    names = [n for n in INPUT_NAMES if n in graph.inputs]
    if list(graph.outputs) != [OUTPUT_NAME] or MIXTURE not in names or len(names) != len(graph.inputs):
        raise PackError(f"model: inputs {list(graph.inputs)} -> outputs {list(graph.outputs)}; expected a LiMuSE "
                        f"export with inputs mixture[, voiceprint][, visual] and the output {OUTPUT_NAME}")
    shapes = {n: graph.input_shapes.get(n) for n in names}
    if any(s is None or any(not d for d in s) or s[0] != 1 for s in shapes.values()):
        raise PackError(f"model: input shapes {shapes}; expected a static QONNX export with batch 1")
    zeros = {n: np.zeros(shapes[n], np.float32) for n in names}
    compiler = Compiler(graph)
    values = compiler.compile(zeros)
    program = compiler.program
    target = values[OUTPUT_NAME]
    if isinstance(target, QTensor):
        raise PackError("model: the output is integer codes; expected the float decoder's waveform")
    inputs = [compiler.ids[n] for n in names]
    output = compiler.ids[OUTPUT_NAME]
    fused = fuse(program, set(inputs) | {output}) if fusion else {}
    new = renumber(program, inputs + [output])
    inputs, output = [new[v] for v in inputs], new[output]
    arena = _allocate(program, inputs, output)
    config = dict(config, window_samples=int(shapes[MIXTURE][2]), mic_channels=int(shapes[MIXTURE][1]),
                  inputs={n: list(shapes[n]) for n in names}, sample_rate=SAMPLE_RATE,
                  output_samples=int(np.shape(target)[-1]), stages=program.stages)
    body_values = varint(len(program.values)) + varint(arena) + b"".join(
        varint(v.kind) + varint(v.size) + varint(max(v.offset, 0)) for v in program.values)
    io = varint(len(inputs)) + b"".join(varint(INPUT_NAMES.index(n)) + varint(new[compiler.ids[n]]) + varint(len(shapes[n]))
                                        + b"".join(varint(d) for d in shapes[n]) for n in names) + varint(output)
    ops = varint(len(program.records)) + b"".join(
        varint(r.opcode) + varint(r.stage) + varint(len(r.payload)) + r.payload for r in program.records)
    sections = [(b"CONF", json.dumps(config, sort_keys=True).encode()), (b"VALS", body_values + io),
                (b"PROG", ops)]
    header_bytes = 24 + 12 * len(sections)
    table, blobs, offset = b"", b"", header_bytes
    for tag, data in sections:
        table += tag + struct.pack("<II", offset, len(data))
        blobs += data
        offset += len(data)
    total = header_bytes + len(blobs)
    rest = struct.pack("<I", len(sections)) + table + blobs
    head = MAGIC + struct.pack("<II", VERSION, total)
    # crc32 covers everything after its own field
    data = head + struct.pack("<I", zlib.crc32(rest) & 0xFFFFFFFF) + rest
    completed_by = {}
    for i, record in enumerate(program.records):
        for vid in record.outputs:
            completed_by[vid] = i
    value_ids = {name: new[vid] for name, vid in compiler.ids.items() if vid in new}
    return Packed(data, value_ids, completed_by, fused)


def pack(qonnx_path: "str | Path", out_path: "str | Path", config: "dict | None" = None) -> int:
    """Packs a QONNX file; returns the packed file's size in bytes. PackError names what is missing."""
    try:
        graph = lower(load_graph(qonnx_path))
    except PackError:
        raise
    except GoldenError as exc:
        raise PackError(f"{exc} (the native engine packs models of recipe {RECIPE})") from None
    data = pack_graph(graph, dict(config or {}, source=Path(qonnx_path).name)).data
    atomic_write_bytes(out_path, data)
    return len(data)


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m limuse_export.pack", description=__doc__.splitlines()[0])
    parser.add_argument("qonnx", help="a static QONNX export (<name>.qonnx.onnx) of a -po2-inorm model")
    parser.add_argument("out", help="the packed file to write (<name>.packed.bin)")
    args = parser.parse_args(argv)
    try:
        size = pack(args.qonnx, args.out)
    except GoldenError as exc:
        print(f"pack: error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: {size} bytes ({size / 2 ** 20:.3f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
