"""The golden engine: runs an exported QONNX LiMuSE with integer conv/linear layers, bit-exact to
Brevitas QAT with power-of-two scales.

Why QONNX and not the QCDQ int8 ONNX: every QONNX `Quant` node states its bit width, signedness,
narrow range and rounding mode, so the engine can check each one (3-bit weights are explicit, not an
int8 initializer clipped by a separate node) and derive the int32 bias exactly as Brevitas does:
round_half_even(b / (s_in * s_w)), the same integers the QCDQ file stores.

What runs in integers: every quantized Conv and MatMul (int8 activations x 3-bit weights + int32
bias -> int32 accumulator, checked; requantization by a power-of-two shift, round half to even),
the residual adds when both operands are quantized (aligned to the finer scale), the layout ops on
codes, and PReLU / Sigmoid on 8-bit codes (a 256-entry table).

With the -inorm recipe every gLN and GroupNorm is one IntegerNorm node, and runs in integers too
(ops.integer_norm, the formula of limuse_edge.model.integer_norm; see README.md).

What stays in float32, and why:
  - gLN (InstanceNormalization) and every GroupNorm of the other recipes (the project's exporter writes
    their statistics out as ReduceMean / Sub / Pow / ReduceMean / Add / Sqrt / Div; LayerNormalization is
    also accepted): mean, variance and 1/sqrt are float in their QAT. The engine evaluates them as the
    graph writes them, in float32.
  - The residual adds of this network: one operand is a GroupNorm output (float), so the add is float
    in QAT too; the sum is quantized by the next layer's input quantizer.
  - The mean over groups in TAC, the mean over a block in the context codec, the overlap-add and the
    linear interpolation of the visual stream: float averages of dequantized codes.
  - PReLU outputs feeding those floats (the table holds float32 values), the mask multiply and the
    ConvTranspose decoder (the paper keeps the decoder in float).
A float op can land within one ulp of a rounding boundary of the next quantizer differently from
torch, so end-to-end codes can differ by 1 LSB after a float op; each integer layer, fed the same
input codes, is exact (tests/runtime/test_golden.py checks both).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from limuse_runtime.golden import fixed_point as fp
from limuse_runtime.golden.fixed_point import GoldenError, QTensor
from limuse_runtime.golden.graph import load_graph
from limuse_runtime.golden.lower import IntegerLayer, lower
from limuse_runtime.golden.ops import OPS


@dataclass
class LayerRecord:
    layer: IntegerLayer
    input: QTensor
    output: "QTensor | None"
    acc_max: int


@dataclass
class Trace:
    """What one run did in every integer layer. keep_codes=False keeps only the statistics."""

    keep_codes: bool = True
    records: list = field(default_factory=list)

    def add(self, layer, x, acc_max, out):
        self.records.append(LayerRecord(layer, x if self.keep_codes else None,
                                        out if self.keep_codes else None, acc_max))

    @property
    def max_accumulator(self) -> int:
        return max((r.acc_max for r in self.records), default=0)


class _RunContext:
    def __init__(self, tables: dict, trace: "Trace | None"):
        self.tables, self.trace = tables, trace
        self.measuring = trace is not None  # max |acc| costs two passes; only a trace asks for it

    def table(self, key, fn, x: QTensor):
        cache_key = (key, int(x.exponent), x.signed)
        if cache_key not in self.tables:
            self.tables[cache_key] = fp.lookup_table(fn, int(x.exponent), x.bits, x.signed, x.narrow)
        return self.tables[cache_key]

    def record_layer(self, layer, x, acc_max, out):
        if self.trace is not None:
            self.trace.add(layer, x, acc_max, out)


class GoldenEngine:
    """engine = GoldenEngine("model.qonnx.onnx"); outputs = engine.run({"mixture": x, ...})."""

    def __init__(self, path: "str | Path"):
        self.path = str(path)
        self.graph = lower(load_graph(path))
        self.layers = [n.attrs["layer"] for n in self.graph.nodes if n.op == "IntegerLayer"]
        unsupported = sorted({n.op for n in self.graph.nodes} - set(OPS))
        if unsupported:
            raise GoldenError(f"model: {self.path!r} uses ops the golden engine does not implement: {unsupported}")
        if not self.layers:
            raise GoldenError(f"model: {self.path!r} has no quantized conv/linear layer; expected a QONNX export "
                              f"of a quantized (e.g. w3a8-po2) model")
        self._check_quant_nodes()
        self._tables: dict = {}
        self._last_use = {}
        for i, node in enumerate(self.graph.nodes):
            for name in node.inputs:
                self._last_use[name] = i

    def _check_quant_nodes(self) -> None:
        """Every activation quantizer left in the graph (the integer layers absorbed the others) must be
        power-of-two, zero-point-free and round half to even: refused at load, not half-way through a run."""
        constants = self.graph.constants
        for node in self.graph.nodes:
            if node.op != "Quant":
                continue
            where = f"Quant node {node.name}"
            if node.attrs.get("rounding_mode", "ROUND") != "ROUND":
                raise GoldenError(f"{where}: rounding mode {node.attrs['rounding_mode']!r}; expected ROUND "
                                  f"(half to even), the mode Brevitas uses for these quantizers")
            scale, zero_point = (constants.get(name) for name in node.inputs[1:3])
            if scale is not None:
                fp.po2_exponent(_codes_or_value(scale), where)
            if zero_point is not None and np.any(_codes_or_value(zero_point) != 0):
                raise GoldenError(f"{where}: non-zero zero point; expected symmetric quantization")

    @property
    def input_names(self) -> tuple[str, ...]:
        return self.graph.inputs

    def run(self, inputs: dict, trace: "Trace | None" = None, timings: "dict | None" = None) -> dict:
        """inputs: {name: array}; returns {output name: float32 array}. `trace` collects what every integer
        layer did; `timings`, if given, accumulates wall seconds per op type."""
        values = dict(self.graph.constants)
        values.update(self._checked_inputs(inputs))
        ctx = _RunContext(self._tables, trace)
        keep = set(self.graph.outputs)
        for i, node in enumerate(self.graph.nodes):
            args = [values[name] if name else None for name in node.inputs]
            started = time.perf_counter() if timings is not None else 0.0
            try:
                results = OPS[node.op](node, args, ctx)
            except GoldenError:
                raise
            except Exception as exc:
                raise GoldenError(f"node {node.name} ({node.op}): {type(exc).__name__}: {exc}") from exc
            if timings is not None:
                timings[node.op] = timings.get(node.op, 0.0) + time.perf_counter() - started
            for name, value in zip(node.outputs, results):
                values[name] = value
            for name in node.inputs:  # free activations after their last use: K=32 tensors are large
                if self._last_use.get(name) == i and name not in keep and name not in self.graph.constants:
                    values.pop(name, None)
        return {name: np.asarray(ops_as_float(values[name])) for name in self.graph.outputs}

    def _checked_inputs(self, inputs: dict) -> dict:
        missing = [n for n in self.graph.inputs if n not in inputs]
        unknown = [n for n in inputs if n not in self.graph.inputs]
        if missing or unknown:
            raise GoldenError(f"inputs: missing {missing}, unexpected {unknown}; this model expects "
                              f"{self._describe_inputs()}")
        checked = {}
        for name in self.graph.inputs:
            value = np.asarray(inputs[name], dtype=np.float32)
            want = self.graph.input_shapes.get(name)
            if want is not None and (value.ndim != len(want) or
                                     any(w is not None and w != 0 and w != g for w, g in zip(want, value.shape))):
                raise GoldenError(f"input {name}: got shape {value.shape}; expected {self._shape_text(want)} "
                                  f"(the exported graph fixes these sizes)")
            if not np.all(np.isfinite(value)):
                raise GoldenError(f"input {name}: contains NaN or infinity; expected finite samples")
            checked[name] = value
        return checked

    def _describe_inputs(self) -> str:
        return ", ".join(f"{n} {self._shape_text(self.graph.input_shapes.get(n))}" for n in self.graph.inputs)

    @staticmethod
    def _shape_text(shape) -> str:
        if shape is None:
            return "(any shape)"
        return "(" + ", ".join("?" if not d else str(d) for d in shape) + ")"


def _codes_or_value(value):
    return value.dequantize() if isinstance(value, QTensor) else np.asarray(value)


def ops_as_float(value):
    return value.dequantize() if isinstance(value, QTensor) else value
