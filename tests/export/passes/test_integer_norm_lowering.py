"""The IntegerNorm node on the export side: its lowering to standard ONNX ops (what onnxruntime runs)
and its qonnx custom op both equal the torch module, bit for bit."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from limuse_edge.config import get_preset
from limuse_edge.model import LiMuSE
from limuse_edge.model.integer_norm import DOMAIN, MEAN_FRAC_BITS, NORM_FRAC_BITS, OP_TYPE, integer_norm_value
from limuse_edge.quant import calibrate
from limuse_export.passes.integer_norm import lower_integer_norm, register_qonnx_op
from limuse_export.pipeline import export_onnx
from limuse_export.prepare import example_inputs, exportable


def _single_node(channel_axis: int, shape: tuple, gamma: np.ndarray, beta: np.ndarray) -> onnx.ModelProto:
    node = helper.make_node(OP_TYPE, ["x", "gamma", "beta"], ["y"], name="norm", domain=DOMAIN,
                            input_scale=2.0 ** -5, gamma_exponent=-6, channel_axis=channel_axis,
                            mean_frac_bits=MEAN_FRAC_BITS, norm_frac_bits=NORM_FRAC_BITS)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
                              [numpy_helper.from_array(gamma, "gamma"), numpy_helper.from_array(beta, "beta")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)])


@pytest.mark.parametrize("channel_axis, shape", [(1, (2, 5, 123)), (-1, (3, 77, 5))])
def test_lowering_and_qonnx_op_equal_the_torch_formula(channel_axis, shape):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    rng = np.random.default_rng(0)
    x = (rng.integers(-128, 128, shape) * 2.0 ** -5).astype(np.float32)
    gamma = rng.integers(-127, 128, 5).astype(np.float32)
    beta = rng.integers(-4000, 4000, 5).astype(np.float32)
    expected = integer_norm_value(torch.from_numpy(x), torch.from_numpy(gamma), torch.from_numpy(beta), 2.0 ** -5,
                                  -6, channel_axis).numpy()
    model = _single_node(channel_axis, shape, gamma, beta)
    lowered = lower_integer_norm(model)
    assert all(n.domain == "" for n in lowered.graph.node)
    onnx.checker.check_model(lowered)
    got = ort.InferenceSession(lowered.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, expected)
    register_qonnx_op()
    np.testing.assert_array_equal(execute_onnx(ModelWrapper(model), {"x": x})["y"], expected)


def test_int8_file_of_an_inorm_model_runs_in_onnxruntime_and_equals_brevitas():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = LiMuSE(get_preset("tiny"), "w3a8-po2-inorm")
    inputs = example_inputs(model, 4000)
    calibrate(model, [inputs])
    model.eval()
    proto = export_onnx("int8", exportable(model), inputs)
    assert not any(n.domain == DOMAIN for n in proto.graph.node)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {k: v.numpy() for k, v in inputs.items()})[0]
    with torch.no_grad():
        expected = model(**inputs).numpy()
    # The norms are exact; onnxruntime's own float requantization (not the norms) decides this bound.
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


def _dq_fed_node(shape: tuple, gamma: np.ndarray, beta: np.ndarray) -> onnx.ModelProto:
    """x = DequantizeLinear(q int8, 2^-5, 0) -> IntegerNorm: the lowering reads q itself."""
    model = _single_node(1, shape, gamma, beta)
    graph = model.graph
    graph.input[0].CopyFrom(helper.make_tensor_value_info("q", TensorProto.INT8, shape))
    graph.initializer.extend([numpy_helper.from_array(np.float32(2.0 ** -5), "s"),
                              numpy_helper.from_array(np.int8(0), "zp")])
    graph.node.insert(0, helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["x"], name="dq"))
    return model


@pytest.mark.parametrize("case", ["uniform", "near_constant", "outliers", "long_rows", "ties"])
def test_lowering_is_exact_on_hard_rows(case):
    rng = np.random.default_rng(1)
    shape = (2, 5, 40_000) if case == "long_rows" else (3, 5, 301)
    if case == "uniform":
        q = rng.integers(-128, 128, shape)
    elif case == "near_constant":  # variance below 4: std clamps to 1 and n is large
        q = np.full(shape, 7) + (rng.random(shape) < 0.01)
    elif case == "outliers":
        q = rng.integers(-2, 3, shape)
        q[..., ::97] = 127
    elif case == "ties":  # d * 2^P / std lands on half-integers: std 2 with odd d
        q = np.where(rng.random(shape) < 0.5, 1, -1) * np.where(rng.random(shape) < 0.5, 2, 3)
    else:
        q = rng.integers(-128, 128, shape)
    q = q.astype(np.int8)
    gamma = rng.integers(-127, 128, 5).astype(np.float32)
    beta = rng.integers(-4000, 4000, 5).astype(np.float32)
    x = (q * 2.0 ** -5).astype(np.float32)
    expected = integer_norm_value(torch.from_numpy(x), torch.from_numpy(gamma), torch.from_numpy(beta), 2.0 ** -5,
                                  -6, 1).numpy()
    for model, feed in ((_single_node(1, shape, gamma, beta), {"x": x}), (_dq_fed_node(shape, gamma, beta), {"q": q})):
        lowered = lower_integer_norm(model)
        onnx.checker.check_model(lowered)
        if "q" in feed:  # the int8 codes are read directly, not x / scale
            assert not any(n.op_type == "Mul" and n.input[0] == "x" for n in lowered.graph.node)
        got = ort.InferenceSession(lowered.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)[0]
        np.testing.assert_array_equal(got, expected)


def test_rows_with_more_channels_than_float32_sums_allow_take_the_float64_path(monkeypatch):
    import limuse_export.passes.integer_norm as lowering
    monkeypatch.setattr(lowering, "MAX_EXACT_CHANNELS", 4)  # the test's 5 channels exceed it
    rng = np.random.default_rng(2)
    shape = (2, 5, 500)
    x = (rng.integers(-128, 128, shape) * 2.0 ** -5).astype(np.float32)
    gamma = rng.integers(-127, 128, 5).astype(np.float32)
    beta = rng.integers(-4000, 4000, 5).astype(np.float32)
    expected = integer_norm_value(torch.from_numpy(x), torch.from_numpy(gamma), torch.from_numpy(beta), 2.0 ** -5,
                                  -6, 1).numpy()
    lowered = lower_integer_norm(_single_node(1, shape, gamma, beta))
    assert not any(n.op_type == "ReduceSumSquare" and list(n.attribute[0].ints) == [1] and "channel" in n.name
                   for n in lowered.graph.node)
    got = ort.InferenceSession(lowered.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, expected)
