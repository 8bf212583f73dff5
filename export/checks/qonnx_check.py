"""Running a cleaned QONNX file with qonnx's own executor (node by node, Quant nodes in numpy): the opt-in
`--check-qonnx` of the export, and a test on `tiny`. The executor keeps every intermediate tensor of the
graph alive (7.4 GB for 3 s of limuse_k32), so a file whose tensors do not fit in the memory available
is refused before it runs."""
from __future__ import annotations

import os
from contextlib import contextmanager

import numpy as np
import onnx

from limuse_runtime.contract import OUTPUT_NAME


class QonnxCheckError(ValueError):
    """qonnx's executor cannot run this QONNX file here (one-line message: why, and what would do)."""


def executor_bytes(model: onnx.ModelProto) -> int:
    """What qonnx's executor holds at once: every tensor of the graph (value_info, inputs, outputs,
    initializers), float32 or wider."""
    total = 0
    for value in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
        total += 4 * int(np.prod(dims)) if dims and all(d > 0 for d in dims) else 0
    total += sum(int(np.prod(init.dims)) * 4 for init in model.graph.initializer)
    return total


def available_bytes() -> "int | None":
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_qonnx_runs(model: onnx.ModelProto, available: "int | None" = None) -> None:
    """QonnxCheckError unless qonnx's executor can hold this graph's tensors (at most 80 % of the memory
    available)."""
    need = executor_bytes(model)
    available = available_bytes() if available is None else available
    if available is not None and need > 0.8 * available:
        raise QonnxCheckError(f"--check-qonnx: qonnx's executor would hold {need / 2 ** 30:.1f} GiB of tensors "
                              f"for this QONNX file, {available / 2 ** 30:.1f} GiB are available; expected a "
                              f"smaller model or a machine with more memory (the golden-engine check runs anyway)")


def run_qonnx(model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> np.ndarray:
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    from limuse_export.passes.integer_norm import register_qonnx_op
    register_qonnx_op()
    wrapper = ModelWrapper(model)
    names = [i.name for i in wrapper.graph.input]
    for name in names:
        want = tuple(wrapper.get_tensor_shape(name))
        if tuple(inputs[name].shape) != want:
            raise ValueError(f"qonnx: input {name!r} has shape {inputs[name].shape}; this QONNX file is "
                             f"static and expects {want}")
    feed = {name: np.ascontiguousarray(inputs[name], dtype=np.float32) for name in names}
    try:
        with _no_sanitizing():
            return execute_onnx(wrapper, feed)[OUTPUT_NAME]
    except Exception as exc:  # qonnx raises whatever its op implementations raise
        raise QonnxCheckError(f"--check-qonnx: qonnx's executor cannot run this QONNX file "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); expected a "
                              f"graph of ops qonnx implements") from None


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
