"""Writing ONNX files: checked, then written atomically (temporary file, then rename)."""
from __future__ import annotations

from pathlib import Path

import onnx

from limuse_runtime.contract import atomic_write_bytes


def save_onnx(model: onnx.ModelProto, path: "str | Path") -> int:
    """onnx.checker, then an atomic write; returns the file size in bytes."""
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    atomic_write_bytes(path, data)
    return len(data)
