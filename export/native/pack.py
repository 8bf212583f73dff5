"""Pack a QONNX export into `<name>.packed.bin`, the native engine's model file (runtime/native/FORMAT.md).

One source of truth: the packer lowers the QONNX graph with the golden engine's own passes
(`limuse_runtime.golden.lower`: constant folding, then Quant/Conv/MatMul chains fused into IntegerLayers)
and compiles the lowered graph into kernel records (limuse_export.native.lowering), so the C engine
repeats the golden engine's arithmetic op for op, without a graph, a type check or a shape inference of
its own. Then fusion (limuse_export.native.fusion) composes copies of copies and replaces the TAC blocks,
PReLU + Quant pairs and GC-TCN convolution blocks by fused kernels, and the arena is planned over the
remaining values' lifetimes (limuse_export.native.memory). Weights and every integer array are bit-packed
at the width they need (3-bit weights: 3 bits each); activations get static offsets in one arena. The
bytes are laid out by limuse_export.native.format.

    python -m limuse_export.native.pack build/m.qonnx.onnx build/m.packed.bin
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from limuse_export.native.format import CONF, PROG, RECIPE, VALS, PackError, file_bytes, varint
from limuse_export.native.fusion import fuse
from limuse_export.native.lowering import FLOAT_NORMS, Compiler
from limuse_export.native.memory import allocate
from limuse_export.native.program import renumber
from limuse_runtime.contract import INPUT_NAMES, MIXTURE, OUTPUT_NAME, SAMPLE_RATE, atomic_write_bytes
from limuse_runtime.golden.fixed_point import GoldenError, QTensor
from limuse_runtime.golden.graph import load_graph
from limuse_runtime.golden.lower import lower


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
    arena = allocate(program, inputs, output)
    config = dict(config, window_samples=int(shapes[MIXTURE][2]), mic_channels=int(shapes[MIXTURE][1]),
                  inputs={n: list(shapes[n]) for n in names}, sample_rate=SAMPLE_RATE,
                  output_samples=int(np.shape(target)[-1]), stages=program.stages)
    body_values = varint(len(program.values)) + varint(arena) + b"".join(
        varint(v.kind) + varint(v.size) + varint(max(v.offset, 0)) for v in program.values)
    io = varint(len(inputs)) + b"".join(varint(INPUT_NAMES.index(n)) + varint(new[compiler.ids[n]]) + varint(len(shapes[n]))
                                        + b"".join(varint(d) for d in shapes[n]) for n in names) + varint(output)
    ops = varint(len(program.records)) + b"".join(
        varint(r.opcode) + varint(r.stage) + varint(len(r.payload)) + r.payload for r in program.records)
    data = file_bytes([(CONF, json.dumps(config, sort_keys=True).encode()), (VALS, body_values + io), (PROG, ops)])
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
    parser = argparse.ArgumentParser(prog="python -m limuse_export.native.pack", description=__doc__.splitlines()[0])
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
