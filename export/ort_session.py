"""What onnxruntime's CPU provider makes of an exported file: the op types of its optimised graph, and
runs. Integer kernels are counted from the graph ORT saves after optimisation (its QDQ fusions)."""
from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from limuse_runtime.contract import OUTPUT_NAME

# ORT op types that compute on integers (QDQ fusions of Conv, MatMul, Gemm and friends).
INTEGER_KERNELS = ("QLinearConv", "MatMulInteger", "MatMulIntegerToFloat", "QLinearMatMul", "QGemm",
                   "DynamicQuantizeMatMul", "QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearConcat",
                   "QLinearLeakyRelu", "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearReduceMean")
# Float ops that carry weights: if any remains in an int8 graph, a quantized layer failed to fuse.
FLOAT_WEIGHT_OPS = ("Conv", "MatMul", "Gemm", "ConvTranspose")


def session(path: "str | Path", optimized_path: "str | Path | None" = None,
            level: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # ORT warns that a graph saved at level ALL is machine specific
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def optimized_op_counts(path: "str | Path") -> dict[str, int]:
    """Op type -> count in the graph onnxruntime runs after its optimisations (level ALL)."""
    return session_and_op_counts(path)[1]


def session_and_op_counts(path: "str | Path") -> tuple[ort.InferenceSession, dict[str, int]]:
    """A session (level ALL, one thread) and optimized_op_counts from the graph it optimised: one
    optimisation where a session and the counts are both needed (2.6 s for limuse_k32's int8 file)."""
    with tempfile.TemporaryDirectory(prefix="limuse_ort_") as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        sess = session(path, optimized)
        graph = onnx.load(str(optimized)).graph
    return sess, dict(sorted(Counter(node.op_type for node in graph.node).items(), key=lambda kv: (-kv[1], kv[0])))


def kernel_summary(op_counts: dict[str, int]) -> dict[str, dict[str, int]]:
    """Split an op histogram into integer kernels and weight-carrying float ops."""
    return {"integer": {k: v for k, v in op_counts.items() if k in INTEGER_KERNELS},
            "float_weight_ops": {k: v for k, v in op_counts.items() if k in FLOAT_WEIGHT_OPS}}


def initializers_as_inputs(model: onnx.ModelProto) -> list[str]:
    names = {init.name for init in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name in names]


def run(sess: ort.InferenceSession, inputs: dict[str, np.ndarray]) -> np.ndarray:
    wanted = [i.name for i in sess.get_inputs()]
    feed = {name: np.ascontiguousarray(inputs[name], dtype=np.float32) for name in wanted}
    return sess.run([OUTPUT_NAME], feed)[0]
