from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from limuse_export.optimize import op_counts, optimize, prelu_to_leaky_relu


def prelu_graph() -> onnx.ModelProto:
    """x -> PRelu(one slope, reached through an Identity as the TorchScript exporter writes shared
    initializers) -> PRelu(one slope per channel) -> PRelu(one slope, a Constant node) -> y."""
    nodes = [
        helper.make_node("Identity", ["slope"], ["slope_copy"]),
        helper.make_node("PRelu", ["x", "slope_copy"], ["a"], name="single"),
        helper.make_node("PRelu", ["a", "per_channel"], ["b"], name="per_channel"),
        helper.make_node("Constant", [], ["const_slope"], value=numpy_helper.from_array(np.array([0.5], np.float32))),
        helper.make_node("PRelu", ["b", "const_slope"], ["y"], name="constant"),
    ]
    inits = [numpy_helper.from_array(np.array([0.25], np.float32), "slope"),
             numpy_helper.from_array(np.array([[0.1], [0.2], [0.3]], np.float32), "per_channel")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "t"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, "t"])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_single_slope_prelu_becomes_leaky_relu_bit_exactly():
    model = prelu_graph()
    rewritten = prelu_to_leaky_relu(model)
    onnx.checker.check_model(rewritten)

    assert op_counts(rewritten) == {"LeakyRelu": 2, "PRelu": 1}
    assert [n.op_type for n in model.graph.node].count("PRelu") == 3  # the input is left alone
    x = np.random.default_rng(0).standard_normal((2, 3, 1000)).astype(np.float32)
    np.testing.assert_array_equal(run(rewritten, x), run(model, x))
    assert "slope" not in {init.name for init in rewritten.graph.initializer}  # dead slope removed


def test_optimize_keeps_the_graph_contract():
    model = prelu_graph()
    optimized = optimize(model)
    assert [i.name for i in optimized.graph.input] == ["x"]
    assert [o.name for o in optimized.graph.output] == ["y"]
