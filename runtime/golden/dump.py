"""Test vectors for porters: every integer layer's input codes, weight codes, int32 bias, shift and
output codes as .npy files, indexed by index.json, so a hardware kernel can be checked layer by layer.

Each layer's "name" (and its folder, NNN_<name>) is its torch module's name as in model.named_modules(),
e.g. audio_stage.encoder.layers.0.conv.project, when the QONNX file is limuse-export's (which records it in
the nodes' doc_strings), else the graph node's name; "node" is the conv/linear node's name in the file.

A layer's kernel must reproduce:  acc = conv_or_matmul(input, weight) + bias   (int32, no overflow)
                                  output = clamp(round_half_even(acc / 2^shift), qmin, qmax)
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from limuse_runtime.golden.engine import Trace
from limuse_runtime.golden.fixed_point import GoldenError, QTensor, code_range

CONVENTION = ("real value = code * 2^exponent; acc = sum(input * weight) + bias in int32; "
              "output = clamp(round_half_even(acc * 2^-shift), qmin, qmax) (a negative shift is a left shift); "
              "round half to even, as Brevitas, QONNX and ONNX do; TFLite/CMSIS-NN round ties up and differ")


def _int_dtype(bits: "int | None") -> type:
    return np.int8 if bits is not None and bits <= 8 else np.int32


def _tensor_entry(folder: Path, stem: str, t: QTensor) -> dict:
    codes = np.ascontiguousarray(t.codes).astype(_int_dtype(t.bits))
    np.save(folder / f"{stem}.npy", codes, allow_pickle=False)
    entry = {"file": f"{folder.name}/{stem}.npy", "shape": list(codes.shape), "dtype": str(codes.dtype),
             "exponent": np.asarray(t.exponent).ravel().tolist() if not t.per_tensor else int(t.exponent),
             "bits": t.bits, "signed": t.signed, "narrow": t.narrow}
    if t.bits is not None:
        entry["range"] = list(code_range(t.bits, t.signed, t.narrow))
    return entry


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def write_dump(trace: Trace, directory: "str | Path", model: str) -> Path:
    """Writes the trace to `directory` (created; it must not exist or be empty). Written into a
    temporary sibling first and renamed, so a failure leaves no half-written dump."""
    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise GoldenError(f"dump: {str(directory)!r} exists and is not an empty directory; expected a new "
                          f"directory for the test vectors")
    if not directory.parent.is_dir():
        raise GoldenError(f"dump: parent directory {str(directory.parent)!r} does not exist")
    if not trace.keep_codes:
        raise GoldenError("dump: the trace kept no codes; run the engine with Trace(keep_codes=True)")
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        layers = []
        for i, record in enumerate(trace.records):
            layer = record.layer
            folder = tmp / f"{i:03d}_{_safe(layer.name)}"
            folder.mkdir()
            entry = {"index": i, "name": layer.name, "node": layer.node, "kind": layer.kind,
                     "input": _tensor_entry(folder, "input", record.input),
                     "weight": _tensor_entry(folder, "weight", layer.weight),
                     "bias": _tensor_entry(folder, "bias", layer.bias) if layer.bias is not None else None,
                     "max_abs_accumulator": record.acc_max}
            if layer.kind == "conv":
                entry["conv"] = {"stride": layer.stride, "dilation": layer.dilation, "pads": list(layer.pads),
                                 "groups": layer.groups, "layout": "input (B, C_in, T), weight (C_out, C_in/groups, k)"}
            else:
                entry["linear"] = {"layout": "input (..., C_in), weight (C_in, C_out), channels last"}
            if record.output is not None:
                shift = layer.shift(int(record.input.exponent))
                entry["shift"] = int(shift) if np.ndim(shift) == 0 else np.asarray(shift).ravel().tolist()
                entry["output"] = _tensor_entry(folder, "output", record.output)
            layers.append(entry)
        index = {"format": "limuse_golden_vectors/1", "model": model, "convention": CONVENTION,
                 "n_layers": len(layers), "layers": layers}
        (tmp / "index.json").write_text(json.dumps(index, indent=1))
        if directory.exists():
            directory.rmdir()
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory
