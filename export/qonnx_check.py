"""Running a cleaned QONNX file with qonnx's own executor (node by node, Quant nodes in numpy)."""
from __future__ import annotations

import os
from contextlib import contextmanager

import numpy as np
import onnx

from limuse_runtime.contract import OUTPUT_NAME


def run_qonnx(model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> np.ndarray:
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    from limuse_export.integer_norm import register_qonnx_op
    register_qonnx_op()
    wrapper = ModelWrapper(model)
    names = [i.name for i in wrapper.graph.input]
    for name in names:
        want = tuple(wrapper.get_tensor_shape(name))
        if tuple(inputs[name].shape) != want:
            raise ValueError(f"qonnx: input {name!r} has shape {inputs[name].shape}; this QONNX file is "
                             f"static and expects {want}")
    feed = {name: np.ascontiguousarray(inputs[name], dtype=np.float32) for name in names}
    with _no_sanitizing():
        return execute_onnx(wrapper, feed)[OUTPUT_NAME]


@contextmanager
def _no_sanitizing():
    """qonnx rounds tensors annotated with an integer datatype after every node, looking each annotation
    up by a scan of all value infos (quadratic: minutes on limuse_k32). After Brevitas export and qonnx's
    cleanup every annotation is FLOAT32, so the rounding is a no-op here; switch it off for the call."""
    previous = os.environ.get("SANITIZE_QUANT_TENSORS")
    os.environ["SANITIZE_QUANT_TENSORS"] = "0"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["SANITIZE_QUANT_TENSORS"]
        else:
            os.environ["SANITIZE_QUANT_TENSORS"] = previous
