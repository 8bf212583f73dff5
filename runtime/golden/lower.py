"""Graph transformations (pure: Graph in, Graph out) that turn an exported QONNX graph into integer
layers.

1. fold_constants: evaluates every node whose inputs are all constants. Weight and bias `Quant`
   nodes thereby become integer constants (QTensor codes), checked to be power-of-two scaled.
2. fuse_integer_layers: each quantized conv/linear of the export,
       Quant(x) -> Conv(x, Quant(W), Quant(b)) -> Quant
       Quant(x) -> MatMul(x, Transpose(Quant(W))) -> Add(Quant(b)) -> Quant
       Quant(x) -> Gemm(x, Quant(W), Quant(b), transB=1) -> Quant      (2-D linear)
   becomes one IntegerLayer node: int codes x weight codes + int32 bias -> int32 accumulator ->
   shift with round half to even -> output codes. It is named after the torch module of the conv/linear
   node when the file records it in the node's doc_string (TORCH_MODULE_DOC), else after the node.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from limuse_runtime.golden import fixed_point as fp
from limuse_runtime.golden.fixed_point import GoldenError, QTensor
from limuse_runtime.golden.graph import Graph, Node
from limuse_runtime.golden.ops import OPS, conv1d, conv_params

FLOAT32_EXACT = 2 ** 24  # integers below this are exact in float32, so BLAS sums of them are exact
FLOAT64_EXACT = 2 ** 53


@dataclass(frozen=True)
class OutputQuant:
    exponent: int
    bits: int
    signed: bool
    narrow: bool


@dataclass(frozen=True)
class IntegerLayer:
    """One quantized conv or linear layer in integers. `kind` is "linear" (channels last, weight
    (C_in, C_out)) or "conv" (B, C, T, weight (C_out, C_in/groups, k)). `name` is the torch module's name
    when the export recorded it, `node` the conv/linear node's name in the QONNX graph."""

    name: str
    kind: str
    weight: QTensor
    bias: "QTensor | None"
    output: "OutputQuant | None"
    stride: int = 1
    dilation: int = 1
    pads: tuple = (0, 0)
    groups: int = 1
    node: str = ""

    @property
    def channel_axis(self) -> int:
        return -1 if self.kind == "linear" else 1

    def weight_exponent(self) -> "int | np.ndarray":
        """Per-tensor int, or one exponent per output channel."""
        if self.weight.per_tensor:
            return int(self.weight.exponent)
        e = np.broadcast_to(self.weight.exponent, self.weight.codes.shape)
        per_channel = e[0, :] if self.kind == "linear" else e[:, 0, 0]
        full = per_channel[None, :] if self.kind == "linear" else per_channel[:, None, None]
        if np.any(e != full):
            raise GoldenError(f"layer {self.name}: weight scales vary within an output channel; "
                              f"expected per-tensor or per-output-channel scales")
        return per_channel.astype(np.int64)

    def _channel_shape(self, values: np.ndarray, rank: int) -> np.ndarray:
        if np.ndim(values) == 0:
            return values
        shape = [1] * rank
        shape[self.channel_axis] = -1
        return np.reshape(values, shape)

    def shift(self, input_exponent: int) -> "int | np.ndarray | None":
        """Right shift from the accumulator to the output scale (per output channel if needed)."""
        if self.output is None:
            return None
        return self.output.exponent - (input_exponent + self.weight_exponent())

    @cached_property
    def weight_bound(self) -> int:
        """max over output channels of sum |w|: with max |x| it bounds every partial sum."""
        axis = 0 if self.kind == "linear" else (1, 2)
        return int(np.abs(self.weight.codes.astype(np.int64)).sum(axis=axis).max())

    @cached_property
    def bias_bound(self) -> int:
        return int(np.abs(self.bias.codes.astype(np.int64)).max()) if self.bias is not None else 0

    def accumulator_bound(self, x: QTensor) -> int:
        """A static bound on |acc| for any input of x's width (data-dependent only for wide inputs)."""
        if x.bits is not None:
            lo, hi = fp.code_range(x.bits, x.signed, x.narrow)
            in_max = max(-lo, hi)
        else:
            in_max = int(np.abs(x.codes).max()) if x.codes.size else 0
        return in_max * self.weight_bound + self.bias_bound

    def accumulate(self, x: QTensor, measure: bool = False) -> tuple[QTensor, "int | None"]:
        """(int32 accumulator as QTensor, max |acc| if measured). The GEMM runs through BLAS in float32
        (float64) only when the static bound proves every partial sum is an integer below 2^24 (2^53),
        so the float result is the exact integer sum; it becomes int32 before the bias is added."""
        if not x.per_tensor:
            raise GoldenError(f"layer {self.name}: per-channel input scales are not supported")
        bound = self.accumulator_bound(x)
        gemm = np.float32 if bound < FLOAT32_EXACT else np.float64 if bound < FLOAT64_EXACT else np.int64
        codes, weights = x.codes.astype(gemm), self.weight.codes.astype(gemm)
        if self.kind == "linear":
            acc = np.matmul(codes, weights)
        else:
            acc = conv1d(codes, weights, self.stride, self.dilation, self.pads, self.groups)
        acc = acc.astype(np.int32 if bound <= fp.INT32_MAX else np.int64)
        acc_exponent = int(x.exponent) + self.weight_exponent()
        if self.bias is not None:
            if np.any(np.asarray(self.bias.exponent).ravel() != np.asarray(acc_exponent).ravel()):
                raise GoldenError(f"layer {self.name}: bias scale 2^{self.bias.exponent} differs from input x weight "
                                  f"scale 2^{acc_exponent}; expected an Int32Bias quantizer")
            acc += self._channel_shape(self.bias.codes.astype(acc.dtype).ravel(), acc.ndim)
        acc_max = None
        if bound > fp.INT32_MAX or measure:  # only a bound beyond int32 needs the data checked
            acc_max = fp.check_accumulator(acc, self.name)
        return QTensor(acc, self._channel_shape(acc_exponent, acc.ndim), 32), acc_max

    def forward(self, x: QTensor, measure: bool = False) -> tuple["QTensor | None", QTensor, "int | None"]:
        acc, acc_max = self.accumulate(x, measure)
        if self.output is None:
            return None, acc, acc_max
        o = self.output
        codes = fp.requantize(acc, o.exponent, o.bits, o.signed, o.narrow, bound=self.accumulator_bound(x))
        return QTensor(codes, o.exponent, o.bits, o.signed, o.narrow), acc, acc_max


class _FoldContext:
    """Folding runs the same handlers; constant nodes never reach an integer layer or a table."""

    measuring = False

    def table(self, key, fn, x):
        return fp.lookup_table(fn, int(x.exponent), x.bits, x.signed, x.narrow)

    def record_layer(self, *args):
        pass


def fold_constants(graph: Graph) -> Graph:
    constants, sources = dict(graph.constants), dict(graph.sources)
    for name, value in graph.constants.items():
        sources.setdefault(name, name)
    kept = []
    for node in graph.nodes:
        if node.op in OPS and node.op != "Shape" and all(not i or i in constants for i in node.inputs):
            values = OPS[node.op](node, [constants[i] if i else None for i in node.inputs], _FoldContext())
            origin = next((sources[i] for i in node.inputs if i and np.size(_codes(constants[i])) > 1), None)
            for name, value in zip(node.outputs, values):
                constants[name] = value
                if origin:
                    sources[name] = origin
        else:
            kept.append(node)
    used = {i for n in kept for i in n.inputs} | set(graph.outputs)
    constants = {k: v for k, v in constants.items() if k in used}
    return dataclasses.replace(graph, nodes=tuple(kept), constants=constants, sources=sources)


def _codes(value):
    return value.codes if isinstance(value, QTensor) else value


def _output_quant(node: Node, constants: dict) -> "OutputQuant | None":
    if node is None or node.op != "Quant" or not all(i in constants for i in node.inputs[1:]):
        return None
    _, scale, zero_point, bit_width = (constants.get(i) for i in node.inputs)
    if np.any(np.asarray(zero_point) != 0) or node.attrs.get("rounding_mode", "ROUND") != "ROUND":
        return None  # left as a Quant node, whose handler names the problem
    exponent = fp.po2_exponent(scale, f"Quant node {node.name}")
    if np.ndim(exponent):
        return None
    return OutputQuant(int(exponent), int(np.asarray(bit_width).ravel()[0]), bool(node.attrs.get("signed", 1)),
                       bool(node.attrs.get("narrow", 0)))


# limuse-export writes "torch module: <name as in model.named_modules()>" into each node's doc_string
# (limuse_export.onnx_export.TORCH_MODULE_DOC; copied, as the runtime never imports the exporter).
TORCH_MODULE_DOC = "torch module: "


def _layer_name(node: Node, bias_name: "str | None", graph: Graph) -> str:
    """The torch module the export recorded, else the bias initializer's module, else the node's name."""
    if node.doc.startswith(TORCH_MODULE_DOC):
        return node.doc[len(TORCH_MODULE_DOC):].strip()
    source = graph.sources.get(bias_name, "") if bias_name else ""
    return source[: -len(".bias")] if source.endswith(".bias") else node.name


def fuse_integer_layers(graph: Graph) -> Graph:
    users = graph.consumers()
    consts = graph.constants
    replaced: dict[str, Node] = {}  # first node of a pattern -> the IntegerLayer node
    dropped: set[str] = set()
    for node in graph.nodes:
        if node.op not in ("MatMul", "Gemm", "Conv") or not isinstance(consts.get(node.inputs[1]), QTensor):
            continue
        weight = consts[node.inputs[1]]
        out, bias, bias_name, chain = node.outputs[0], None, None, []
        if node.op == "Gemm":
            if node.attrs.get("transA", 0) or node.attrs.get("alpha", 1.0) != 1.0 or \
                    node.attrs.get("beta", 1.0) != 1.0:
                raise GoldenError(f"Gemm node {node.name}: transA/alpha/beta other than 0/1/1 are not supported")
            if node.attrs.get("transB", 0):  # (C_out, C_in) -> the engine's (C_in, C_out)
                exponent = weight.exponent if weight.per_tensor else np.swapaxes(
                    np.broadcast_to(weight.exponent, weight.codes.shape), 0, 1)
                weight = QTensor(np.ascontiguousarray(weight.codes.T), exponent, weight.bits, weight.signed,
                                 weight.narrow)
            stride, dilation, pads, groups = 1, 1, (0, 0), 1
            if len(node.inputs) > 2 and node.inputs[2]:
                bias_name = node.inputs[2]
                bias = consts.get(bias_name)
        elif node.op == "Conv":
            stride, dilation, pads, groups = conv_params(node)
            if len(node.inputs) > 2 and node.inputs[2]:
                bias_name = node.inputs[2]
                bias = consts.get(bias_name)
        else:
            stride, dilation, pads, groups = 1, 1, (0, 0), 1
            nxt = _sole_user(users, out)
            if nxt is not None and nxt.op == "Add":
                other = nxt.inputs[1] if nxt.inputs[0] == out else nxt.inputs[0]
                if isinstance(consts.get(other), QTensor):
                    bias_name, bias = other, consts[other]
                    chain.append(nxt)
                    out = nxt.outputs[0]
        name = _layer_name(node, bias_name, graph)
        if bias is not None and not isinstance(bias, QTensor):
            raise GoldenError(f"layer {name}: float bias beside quantized weights; expected an int32 bias "
                              f"quantizer (Int32Bias)")
        quant_node = _sole_user(users, out)
        output = _output_quant(quant_node, consts)
        if output is not None:
            chain.append(quant_node)
            out = quant_node.outputs[0]
        layer = IntegerLayer(name, "conv" if node.op == "Conv" else "linear", weight, bias, output,
                             stride, dilation, tuple(pads), groups, node.name)
        layer.weight_exponent()  # validates the weight scales now, at load time
        replaced[node.name] = Node("IntegerLayer", name, (node.inputs[0],), (out,), {"layer": layer})
        dropped.update(n.name for n in chain)
    nodes = tuple(replaced.get(n.name, n) for n in graph.nodes if n.name not in dropped)
    used = {i for n in nodes for i in n.inputs} | set(graph.outputs)
    constants = {k: v for k, v in consts.items() if k in used}
    return dataclasses.replace(graph, nodes=nodes, constants=constants)


def _sole_user(users: dict, value: str) -> "Node | None":
    found = users.get(value, [])
    return found[0] if len(found) == 1 else None


def lower(graph: Graph) -> Graph:
    return fuse_integer_layers(fold_constants(graph))
