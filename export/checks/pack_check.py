"""Parity of the native engine with the golden engine, tensor by tensor: the packed model runs once with an
observer that keeps every value the moment its kernel completes it; the golden engine then runs the same
lowered graph and each of its values is compared with the native one of the same graph name.

Integer values (codes, accumulators, integer norms, residual sums) must be equal; float values (PReLU
tables, means, interpolation, dequantized concatenations, the mask product) must be bit-identical too,
except the transposed-conv decoder's output, whose channel sums numpy leaves to BLAS (compared within a
tolerance by the caller).
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

from limuse_export.native.pack import Packed, pack_graph
from limuse_runtime.contract import INPUT_NAMES
from limuse_runtime.golden.engine import _RunContext
from limuse_runtime.golden.fixed_point import QTensor
from limuse_runtime.golden.graph import load_graph
from limuse_runtime.golden.lower import lower
from limuse_runtime.golden.ops import OPS


def _digest(array: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(array).tobytes(), digest_size=16).digest()


def compare_with_golden(qonnx_path: "str | Path", inputs: dict, packed_path: "str | Path | None" = None,
                        threads: int = 1, keep_codes: bool = True, fusion: bool = True) -> dict:
    """inputs: {name: array with batch axis}. Writes the packed file to packed_path if given. With
    keep_codes=False integer tensors are compared by a 128-bit digest of their codes (for long inputs,
    whose copies would not fit in memory): int_mismatches then counts the values of mismatched tensors.
    fusion=False packs one kernel per golden op, so that every intermediate tensor is compared; with
    fusion (the shipped file) the tensors inside a fused kernel do not exist and its outputs are compared."""
    from limuse_runtime.native import NativeModel
    graph = lower(load_graph(qonnx_path))
    packed: Packed = pack_graph(graph, {"source": Path(qonnx_path).name}, fusion=fusion)
    path = Path(packed_path) if packed_path else Path(str(qonnx_path).replace(".qonnx.onnx", "") + ".check.packed.bin")
    path.write_bytes(packed.data)
    model = NativeModel(path)
    kinds = {}
    by_kernel: dict = {}
    for vid, k in packed.completed_by.items():
        by_kernel.setdefault(k, []).append(vid)
    kept: dict = {}

    def observe(kernel: int) -> None:
        for vid in by_kernel.get(kernel, ()):
            data = model.value(vid)
            if data.dtype == np.int32 and not keep_codes:
                kept[vid] = (_digest(data), data.size)
            elif data.dtype == np.int32:
                small = data.size and int(np.abs(data).max()) <= 127
                kept[vid] = data.astype(np.int8) if small else data
            else:
                kept[vid] = _digest(data)
            kinds[vid] = data.dtype

    model.observe(observe)
    started = time.perf_counter()
    native = model.run(*(inputs[n][0] if n in inputs else None for n in INPUT_NAMES),
                       threads=threads)
    native_s = time.perf_counter() - started
    model.observe(None)

    stats = {"int_tensors": 0, "int_values": 0, "int_mismatches": 0, "float_tensors": 0, "float_mismatched": [],
             "mismatched": [], "native_s": native_s, "bytes": len(packed.data), "fused": packed.fused,
             "scratch_bytes": model.scratch_bytes}
    values = dict(graph.constants)
    values.update({n: np.asarray(v, np.float32) for n, v in inputs.items()})
    ctx = _RunContext({}, None)
    last_use = {}
    for i, node in enumerate(graph.nodes):
        for name in node.inputs:
            last_use[name] = i
    started = time.perf_counter()
    output_names = set(graph.outputs)
    decoded: set = set()  # the float decoder's output and what is computed from it
    for i, node in enumerate(graph.nodes):
        results = OPS[node.op](node, [values[n] if n else None for n in node.inputs], ctx)
        if node.op == "ConvTranspose" or decoded & set(node.inputs):
            decoded.update(node.outputs)
        for name, value in zip(node.outputs, results):
            values[name] = value
            vid = packed.value_ids.get(name)
            if vid is None or vid not in kept or name in decoded:
                continue
            if isinstance(value, QTensor):
                want = np.asarray(value.codes, np.int64).ravel()
                if keep_codes:
                    got = kept[vid].astype(np.int64).ravel()
                    bad = int(np.count_nonzero(got != want)) if got.size == want.size else want.size
                else:
                    bad = 0 if kept[vid] == (_digest(want.astype(np.int32)), want.size) else want.size
                stats["int_tensors"] += 1
                stats["int_values"] += want.size
                stats["int_mismatches"] += bad
                if bad and len(stats["mismatched"]) < 10:
                    stats["mismatched"].append(f"{node.op} {node.name} -> {name}: {bad} of {want.size}")
            else:
                stats["float_tensors"] += 1
                if kept[vid] != _digest(np.asarray(value, np.float32)):
                    stats["float_mismatched"].append(f"{node.op} {node.name} -> {name}")
        for name in node.inputs:
            if last_use.get(name) == i and name not in output_names and name not in graph.constants:
                values.pop(name, None)
    stats["golden_s"] = time.perf_counter() - started
    golden = np.asarray(values[graph.outputs[0]], np.float32)[0]
    stats["golden_waveform"], stats["native_waveform"] = golden, native
    stats["waveform_max_abs"] = float(np.abs(golden - native).max())
    stats["waveform_peak"] = float(np.abs(golden).max())
    return stats
