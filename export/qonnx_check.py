"""Running a cleaned QONNX file with qonnx's own executor (node by node, Quant nodes in numpy)."""
from __future__ import annotations

import numpy as np
import onnx


def run_qonnx(model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> np.ndarray:
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    wrapper = ModelWrapper(model)
    names = [i.name for i in wrapper.graph.input]
    for name in names:
        want = tuple(wrapper.get_tensor_shape(name))
        if tuple(inputs[name].shape) != want:
            raise ValueError(f"qonnx: input {name!r} has shape {inputs[name].shape}; this QONNX file is "
                             f"static and expects {want}")
    feed = {name: np.ascontiguousarray(inputs[name], dtype=np.float32) for name in names}
    return execute_onnx(wrapper, feed)["target"]
