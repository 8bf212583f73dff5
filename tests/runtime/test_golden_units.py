"""Golden engine on hand-built QONNX graphs (numpy and onnx only): integer semantics, rounding of ties,
bad models, the dump and the CLI. The comparison with Brevitas itself is in test_golden.py."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import soundfile as sf
from onnx import TensorProto, helper, numpy_helper

from limuse_runtime.golden import GoldenEngine, GoldenError, QTensor, Trace
from limuse_runtime.golden import fixed_point as fp
from limuse_runtime.golden.cli import run_golden_cli

QONNX_DOMAIN = "qonnx.custom_op.general"


# ------------------------------------------------------------------ fixed point
def test_shift_right_half_even_matches_rint_of_exact_division():
    rng = np.random.default_rng(0)
    acc = np.concatenate([rng.integers(-2 ** 20, 2 ** 20, 5000), np.arange(-40, 41)])
    for shift in range(0, 7):
        want = np.rint(acc / 2.0 ** shift).astype(np.int64)  # exact in float64, rint rounds half to even
        np.testing.assert_array_equal(fp.shift_right_half_even(acc, shift), want)
    np.testing.assert_array_equal(fp.shift_right_half_even(acc, -3), acc * 8)


def test_ties_round_to_even_not_up_as_tflite_would():
    acc = np.array([1, 3, 5, -1, -3, -5, 2])  # x.5 ties after a shift of 1, except 2
    np.testing.assert_array_equal(fp.shift_right_half_even(acc, 1), [0, 2, 2, 0, -2, -2, 1])
    tflite_style = (acc + 1) >> 1  # rounding ties upwards, the TFLite/CMSIS requantization habit
    assert np.count_nonzero(tflite_style != fp.shift_right_half_even(acc, 1)) == 3


def test_per_channel_shifts_mix_left_and_right():
    acc = np.array([[6, 6, 6]])
    np.testing.assert_array_equal(fp.shift_right_half_even(acc, np.array([2, 0, -1])), [[2, 6, 12]])


def test_po2_exponent_accepts_powers_of_two_and_names_others():
    assert fp.po2_exponent(np.float32(0.0078125), "x") == -7
    np.testing.assert_array_equal(fp.po2_exponent(np.array([[0.5], [4.0]]), "w"), [[-1], [2]])
    with pytest.raises(GoldenError, match=r"layer\.w: scale .* not a power of two.*-po2"):
        fp.po2_exponent(np.float32(0.3), "layer.w")


def test_accumulator_overflow_names_the_layer():
    with pytest.raises(GoldenError, match="layer mask: accumulator overflow"):
        fp.check_accumulator(np.array([2 ** 31], np.int64), "mask")
    assert fp.check_accumulator(np.array([-(2 ** 31), 5], np.int64), "ok") == 2 ** 31


def test_lookup_table_equals_the_function_on_every_code():
    slope = np.float32(0.25)
    prelu = lambda v: np.where(v < 0, v * slope, v)  # noqa: E731
    table = fp.lookup_table(prelu, exponent=-3, bits=8, signed=True, narrow=False)
    assert table.shape == (256,)
    codes = np.arange(-128, 128).astype(np.int8)
    want = prelu(codes.astype(np.float32) / 8)
    np.testing.assert_array_equal(fp.apply_table(table, codes), want)
    np.testing.assert_array_equal(fp.apply_table(table, codes.astype(np.int16)), want)


def test_divide_half_even_equals_integer_divmod_at_ties_and_beyond_float_precision():
    rng = np.random.default_rng(0)
    divisors = rng.integers(1, 5000, size=(8, 1))
    dividends = rng.integers(-(1 << 20), 1 << 20, size=(8, 500))
    halves = (2 * rng.integers(-100, 100, size=(8, 50)) + 1) * divisors  # 2a = (2k+1) b: exact ties
    for a, b in ((dividends, divisors), (halves, 2 * divisors), (np.array([(1 << 60) + 3, -(1 << 60) - 1]), 2)):
        quotient, rest = np.divmod(a, b)
        expected = quotient + ((2 * rest > b) | ((2 * rest == b) & (quotient % 2 == 1)))
        np.testing.assert_array_equal(fp.divide_half_even(a, b), expected)


def test_shift_in_int32_with_a_bound_equals_int64():
    acc = np.random.default_rng(4).integers(-(2 ** 30), 2 ** 30, 10000).astype(np.int32)
    for shift in (1, 5, 12):
        np.testing.assert_array_equal(fp.shift_right_half_even(acc, shift, bound=2 ** 30),
                                      fp.shift_right_half_even(acc.astype(np.int64), shift))
    near_max = np.array([2 ** 31 - 1, -(2 ** 31)], np.int32)  # no bound: computed in int64, no wrap-around
    np.testing.assert_array_equal(fp.shift_right_half_even(near_max, 4), [2 ** 27, -(2 ** 27)])


# ------------------------------------------------------------------ hand-built QONNX graphs
def _quant(name, x, scale, bits, narrow=0):
    inits = [numpy_helper.from_array(np.asarray(scale, np.float32), f"{name}_scale"),
             numpy_helper.from_array(np.zeros((), np.float32), f"{name}_zp"),
             numpy_helper.from_array(np.asarray(bits, np.float32), f"{name}_bits")]
    node = helper.make_node("Quant", [x, f"{name}_scale", f"{name}_zp", f"{name}_bits"], [name],
                            domain=QONNX_DOMAIN, signed=1, narrow=narrow, rounding_mode="ROUND")
    return node, inits


def encoder_like_model(path, s_in=2.0 ** -4, s_w=2.0 ** -2, s_out=2.0 ** -3, bias=None, weight=None):
    """mixture (1, 2, 16) -> Quant -> Conv(2->3, k 4, stride 2) + int32 bias -> Quant -> (1, 21) target."""
    rng = np.random.default_rng(1)
    weight = rng.integers(-3, 4, (3, 2, 4)) * s_w if weight is None else weight
    bias = np.array([0.25, -0.5, 1.0]) if bias is None else bias
    nodes, inits = [], [numpy_helper.from_array(np.asarray(weight, np.float32), "encoder.weight"),
                        numpy_helper.from_array(np.asarray(bias, np.float32), "encoder.bias"),
                        numpy_helper.from_array(np.array([1, -1], np.int64), "flat")]
    for name, x, scale, bits, narrow in (("xq", "mixture", s_in, 8, 0), ("wq", "encoder.weight", s_w, 3, 1),
                                         ("bq", "encoder.bias", s_in * s_w, 32, 0)):
        node, extra = _quant(name, x, scale, bits, narrow)
        nodes.append(node)
        inits += extra
    nodes.append(helper.make_node("Conv", ["xq", "wq", "bq"], ["acc"], kernel_shape=[4], strides=[2], pads=[0, 0]))
    node, extra = _quant("yq", "acc", s_out, 8)
    nodes += [node, helper.make_node("Reshape", ["yq", "flat"], ["target"])]
    inits += extra
    graph = helper.make_graph(nodes, "encoder_like",
                              [helper.make_tensor_value_info("mixture", TensorProto.FLOAT, [1, 2, 16])],
                              [helper.make_tensor_value_info("target", TensorProto.FLOAT, [1, 21])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(QONNX_DOMAIN, 1)])
    onnx.save(model, str(path))
    return path, weight, bias


def reference_encoder(x, weight, bias, s_in, s_w, s_out, rounded=True):
    """The QONNX definition in float64: quantize, convolve dequantized values, quantize."""
    xq = np.clip(np.rint(x / s_in), -128, 127) * s_in
    wq = np.clip(np.rint(weight / s_w), -3, 3) * s_w
    bq = np.rint(bias / (s_in * s_w)) * (s_in * s_w)
    cols = np.lib.stride_tricks.sliding_window_view(xq, 4, axis=2)[:, :, ::2]  # (1, 2, 7, 4)
    y = np.einsum("bctk,ock->bot", cols, wq) + bq[None, :, None]
    return np.clip(np.rint(y / s_out), -128, 127) if rounded else y / s_out


def test_integer_conv_equals_the_qonnx_definition_including_ties(tmp_path):
    path, weight, bias = encoder_like_model(tmp_path / "m.onnx")
    engine = GoldenEngine(path)
    assert [layer.name for layer in engine.layers] == ["encoder"]
    rng = np.random.default_rng(19)  # a draw with ties on both sides of even
    x = (rng.integers(-100, 100, (1, 2, 16)) / 16).astype(np.float32)  # on the input grid: many exact ties
    trace = Trace()
    out = engine.run({"mixture": x}, trace)["target"]
    want = reference_encoder(x.astype(np.float64), weight, bias, 2.0 ** -4, 2.0 ** -2, 2.0 ** -3)
    np.testing.assert_array_equal(out, (want * 2.0 ** -3).reshape(1, -1))
    record = trace.records[0]
    assert engine.layers[0].shift(int(record.input.exponent)) == 3  # 2^-3 / (2^-4 * 2^-2)
    # The input lies on the quantization grid, so some accumulators are exact ties after the shift, and
    # rounding them up (TFLite's habit) would give other codes: the equality above tests half-to-even.
    unrounded = reference_encoder(x.astype(np.float64), weight, bias, 2.0 ** -4, 2.0 ** -2, 2.0 ** -3, rounded=False)
    assert np.any(np.clip(np.floor(unrounded + 0.5), -128, 127) != want)


def test_non_power_of_two_scale_is_refused_at_load(tmp_path):
    path, _, _ = encoder_like_model(tmp_path / "m.onnx", s_in=0.3)
    with pytest.raises(GoldenError, match="not a power of two"):
        GoldenEngine(path)


def test_accumulator_overflow_is_an_error_naming_the_layer(tmp_path):
    s_in, s_w = 2.0 ** -4, 2.0 ** -2
    weight = np.full((3, 2, 4), 3 * s_w)
    bias = np.full(3, (2 ** 31 - 100) * s_in * s_w)
    path, _, _ = encoder_like_model(tmp_path / "m.onnx", bias=bias, weight=weight)
    engine = GoldenEngine(path)
    with pytest.raises(GoldenError, match="layer encoder: accumulator overflow"):
        engine.run({"mixture": np.ones((1, 2, 16), np.float32)})


def test_bad_inputs_are_named(tmp_path):
    engine = GoldenEngine(encoder_like_model(tmp_path / "m.onnx")[0])
    with pytest.raises(GoldenError, match=r"input mixture: got shape \(1, 2, 9\); expected \(1, 2, 16\)"):
        engine.run({"mixture": np.zeros((1, 2, 9))})
    with pytest.raises(GoldenError, match="missing \\['mixture'\\]"):
        engine.run({"visual": np.zeros((1, 2, 16))})
    with pytest.raises(GoldenError, match="NaN"):
        engine.run({"mixture": np.full((1, 2, 16), np.nan)})
    with pytest.raises(GoldenError, match="cannot parse"):
        (tmp_path / "junk.onnx").write_bytes(b"not a model")
        GoldenEngine(tmp_path / "junk.onnx")


def test_cli_writes_wav_and_layer_vectors(tmp_path, capsys):
    model, weight, bias = encoder_like_model(tmp_path / "m.onnx")
    x = np.random.default_rng(3).uniform(-1, 1, (16, 2)).astype(np.float32)
    sf.write(tmp_path / "mix.wav", x, 16000, subtype="FLOAT")
    code = run_golden_cli(["--model", str(model), "--mixture", str(tmp_path / "mix.wav"),
                           "--out", str(tmp_path / "y.wav"), "--dump", str(tmp_path / "vectors")])
    assert code == 0, capsys.readouterr().err
    y, rate = sf.read(tmp_path / "y.wav", dtype="float32")
    want = reference_encoder(x.T[None].astype(np.float64), weight, bias, 2.0 ** -4, 2.0 ** -2, 2.0 ** -3)
    np.testing.assert_array_equal(y, (want * 2.0 ** -3).ravel())
    index = json.loads((tmp_path / "vectors" / "index.json").read_text())
    assert index["n_layers"] == 1
    layer = index["layers"][0]
    assert layer["name"] == "encoder" and layer["shift"] == 3 and layer["conv"]["stride"] == 2
    codes = {k: np.load(tmp_path / "vectors" / layer[k]["file"]) for k in ("input", "weight", "bias", "output")}
    assert codes["weight"].dtype == np.int8 and codes["bias"].dtype == np.int32
    assert np.abs(codes["weight"]).max() <= 3
    # A porter's kernel: integer conv, + bias, half-even shift, clamp; must reproduce the output codes.
    cols = np.lib.stride_tricks.sliding_window_view(codes["input"].astype(np.int64), 4, axis=2)[:, :, ::2]
    acc = np.einsum("bctk,ock->bot", cols, codes["weight"].astype(np.int64)) + codes["bias"][None, :, None]
    np.testing.assert_array_equal(np.clip(fp.shift_right_half_even(acc, layer["shift"]), -128, 127), codes["output"])


def test_layers_are_named_after_a_recorded_torch_module_else_the_graph(tmp_path):
    """limuse-export writes "torch module: <name>" into each node's doc_string; a file without it (or with
    another doc_string) keeps the names of the graph (here the bias initializer's "encoder")."""
    path, _, _ = encoder_like_model(tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    conv = next(n for n in proto.graph.node if n.op_type == "Conv")
    for node_name, doc, want in (("", "torch module: stage.encoder", ("stage.encoder", "Conv_3")),
                                 ("conv", "torch module: stage.encoder", ("stage.encoder", "conv")),
                                 ("conv", "a note from another tool", ("encoder", "conv"))):
        conv.name, conv.doc_string = node_name, doc
        onnx.save(proto, str(tmp_path / "named.onnx"))
        layer = GoldenEngine(tmp_path / "named.onnx").layers[0]
        assert (layer.name, layer.node) == want


def test_cli_bad_input_exits_non_zero_without_output(tmp_path, capsys):
    model, _, _ = encoder_like_model(tmp_path / "m.onnx")
    sf.write(tmp_path / "mono.wav", np.zeros(16, np.float32), 16000)
    code = run_golden_cli(["--model", str(model), "--mixture", str(tmp_path / "mono.wav"),
                           "--out", str(tmp_path / "y.wav"), "--dump", str(tmp_path / "vectors")])
    err = capsys.readouterr().err
    assert code == 2 and "mixture: 16000 Hz, 1 channels; expected a 16000 Hz wav with 2 channels" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "y.wav").exists() and not (tmp_path / "vectors").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "mono.wav"]
    assert run_golden_cli(["--model", str(tmp_path / "nope.onnx"), "--mixture", str(tmp_path / "mono.wav"),
                           "--out", str(tmp_path / "y.wav")]) == 2


def test_engine_runs_without_torch(tmp_path):
    import subprocess
    import sys
    model, _, _ = encoder_like_model(tmp_path / "m.onnx")
    code = ("import sys, numpy as np\n"
            "from limuse_runtime.golden import GoldenEngine\n"
            f"GoldenEngine({str(model)!r}).run({{'mixture': np.zeros((1, 2, 16), np.float32)}})\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_golden_subcommand_runs_without_onnxruntime(tmp_path):
    """`limuse-run golden` in a fresh interpreter where importing onnxruntime fails: the golden engine,
    its CLI and what they import (the contract's cue loaders and writer) must not need it."""
    import subprocess
    import sys
    import textwrap
    model, _, _ = encoder_like_model(tmp_path / "m.onnx")
    sf.write(tmp_path / "mix.wav", np.zeros((16, 2), np.float32), 16000, subtype="FLOAT")
    script = textwrap.dedent(f"""
        import sys, importlib.abc
        class Ban(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "onnxruntime":
                    raise ImportError("onnxruntime is not installed on this board")
        sys.meta_path.insert(0, Ban())
        from limuse_runtime import cli
        code = cli.main(["golden", "--model", {str(model)!r}, "--mixture", {str(tmp_path / "mix.wav")!r},
                         "--out", {str(tmp_path / "y.wav")!r}])
        assert "onnxruntime" not in sys.modules
        sys.exit(code)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sf.read(tmp_path / "y.wav")[0].size > 0


def linear_gemm_model(path, s_in=2.0 ** -4, s_w=2.0 ** -2, s_out=2.0 ** -2):
    """x (6, 5) -> Quant -> Gemm(x, Quant(W (3, 5)), Quant(b), transB=1) -> Quant: a 2-D linear as the
    TorchScript exporter writes F.linear on a matrix."""
    rng = np.random.default_rng(2)
    weight, bias = rng.integers(-3, 4, (3, 5)) * s_w, np.array([0.5, -0.25, 0.125])
    nodes, inits = [], [numpy_helper.from_array(weight.astype(np.float32), "w"),
                        numpy_helper.from_array(bias.astype(np.float32), "b")]
    for name, x, scale, bits, narrow in (("xq", "x", s_in, 8, 0), ("wq", "w", s_w, 3, 1), ("bq", "b", s_in * s_w, 32, 0)):
        node, extra = _quant(name, x, scale, bits, narrow)
        nodes.append(node)
        inits += extra
    nodes.append(helper.make_node("Gemm", ["xq", "wq", "bq"], ["acc"], transB=1))
    node, extra = _quant("y", "acc", s_out, 8)
    nodes.append(node)
    inits += extra
    graph = helper.make_graph(nodes, "gemm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [6, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [6, 3])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(QONNX_DOMAIN, 1)]),
              str(path))
    return path, weight, bias


def test_gemm_with_transposed_weight_is_one_integer_layer(tmp_path):
    s_in, s_w, s_out = 2.0 ** -4, 2.0 ** -2, 2.0 ** -2
    path, weight, bias = linear_gemm_model(tmp_path / "g.onnx", s_in, s_w, s_out)
    engine = GoldenEngine(path)
    assert [layer.kind for layer in engine.layers] == ["linear"] and engine.layers[0].weight.codes.shape == (5, 3)
    x = (np.random.default_rng(5).integers(-60, 60, (6, 5)) / 16).astype(np.float32)
    got = engine.run({"x": x})["y"]
    acc = (np.rint(x / s_in) @ np.rint(weight.T / s_w)) + np.rint(bias / (s_in * s_w))  # in units of s_in * s_w
    want = np.clip(np.rint(acc * (s_in * s_w / s_out)), -128, 127) * s_out
    np.testing.assert_array_equal(got, want)
