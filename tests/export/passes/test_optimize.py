from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from limuse_export.passes.optimize import norm_to_instance_norm, op_counts, prelu_to_leaky_relu
from limuse_export.passes import PASSES, apply_passes


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
    optimized = apply_passes(model, PASSES["float"])
    assert [i.name for i in optimized.graph.input] == ["x"]
    assert [o.name for o in optimized.graph.output] == ["y"]


def mean_variance_norm_graph(axes=(-2, -1)) -> onnx.ModelProto:
    """What the TorchScript exporter writes for mean/variance normalisation over (time, channels),
    followed by the per-channel affine."""
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["mean"], axes=list(axes), keepdims=1),
        helper.make_node("Sub", ["x", "mean"], ["centred"]),
        helper.make_node("Pow", ["centred", "two"], ["squared"]),
        helper.make_node("ReduceMean", ["squared"], ["var"], axes=list(axes), keepdims=1),
        helper.make_node("Add", ["var", "eps"], ["var_eps"]),
        helper.make_node("Sqrt", ["var_eps"], ["std"]),
        helper.make_node("Div", ["centred", "std"], ["normalised"]),
        helper.make_node("Mul", ["normalised", "weight"], ["scaled"]),
        helper.make_node("Add", ["scaled", "bias"], ["y"]),
    ]
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(np.array(2.0, np.float32), "two"),
             numpy_helper.from_array(np.array(1e-8, np.float32), "eps"),
             numpy_helper.from_array(rng.standard_normal(6).astype(np.float32), "weight"),
             numpy_helper.from_array(rng.standard_normal(6).astype(np.float32), "bias")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "t", 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "t", 6])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_mean_variance_norm_becomes_one_instance_norm():
    model = mean_variance_norm_graph()
    rewritten = norm_to_instance_norm(model)
    onnx.checker.check_model(rewritten)

    counts = op_counts(rewritten)
    assert counts.get("InstanceNormalization") == 1
    assert not {"ReduceMean", "Sub", "Pow", "Sqrt", "Div"} & set(counts)
    assert counts["Mul"] == 1  # the affine stays
    x = (3 + 2 * np.random.default_rng(0).standard_normal((4, 500, 6))).astype(np.float32)
    np.testing.assert_allclose(run(rewritten, x), run(model, x), atol=1e-5, rtol=1e-5)


def test_norm_over_other_axes_is_left_alone():
    model = mean_variance_norm_graph(axes=(-1,))
    assert op_counts(norm_to_instance_norm(model)) == op_counts(model)


def test_tac_concat_split_into_two_gemms_keeps_the_output(tiny_quantized, tmp_path):
    from limuse_edge.model.blocks import TAC
    from limuse_export import onnx_export, ort_session
    from limuse_export.passes.optimize import split_tac_concat
    from limuse_export.prepare import example_inputs, exportable
    from limuse_export.save import save_onnx

    quantized, _ = tiny_quantized
    tacs = sum(isinstance(m, TAC) for m in quantized.modules())
    model = onnx_export.export_qcdq(exportable(quantized), example_inputs(quantized, 4000))
    split = split_tac_concat(model)
    onnx.checker.check_model(split)

    before, after = op_counts(model), op_counts(split)
    assert after["Gemm"] == before["Gemm"] + tacs
    assert after.get("Expand", 0) == before["Expand"] - tacs
    save_onnx(model, tmp_path / "before.onnx")
    save_onnx(split, tmp_path / "after.onnx")
    fused = ort_session.optimized_op_counts(tmp_path / "after.onnx")
    assert fused.get("QGemm", 0) == ort_session.optimized_op_counts(tmp_path / "before.onnx").get("QGemm", 0) + tacs
    for n, seed in ((4000, 0), (5000, 1)):  # two lengths: the broadcast shapes are computed, not frozen
        x = {k: v.numpy() for k, v in example_inputs(quantized, n, seed=seed).items()}
        reference = ort_session.run(ort_session.session(tmp_path / "before.onnx"), x)
        # the integer sums are equal; only the float scaling of two partial sums may round differently
        np.testing.assert_allclose(ort_session.run(ort_session.session(tmp_path / "after.onnx"), x), reference,
                                   rtol=0, atol=1e-5 * np.abs(reference).max())
