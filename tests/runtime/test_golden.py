"""Golden engine against Brevitas on the `tiny` preset with the w3a8-po2 recipe, exported by the project's
QONNX exporter (limuse_export.pipeline.export_onnx("qonnx", ...)): every integer layer's codes, fed Brevitas's input
codes, equal Brevitas's output codes; end to end, every quantized tensor equals Brevitas's and the waveform
matches within float rounding. Bad models (non-power-of-two scales, an int32 overflow) are refused with
errors naming the node or layer. The Brevitas reference is tests/helpers/golden_reference.py (limuse_k32:
benchmarks/test_golden.py, which uses it too).
"""
from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest
import torch
from golden_reference import brevitas_codes, calibrated_qonnx, compare_codes, layer_names, numpy_inputs
from onnx import numpy_helper

from limuse_runtime.golden import GoldenEngine, GoldenError, Trace
from limuse_runtime.golden.dump import write_dump
from limuse_runtime.golden.lower import TORCH_MODULE_DOC


@pytest.fixture(scope="module")
def tiny_po2(tmp_path_factory):
    torch.set_num_threads(1)
    model, inputs, path = calibrated_qonnx(tmp_path_factory.mktemp("golden") / "tiny.qonnx.onnx")
    reference, waveform = brevitas_codes(model, inputs)
    engine = GoldenEngine(path)
    return model, engine, numpy_inputs(inputs), reference, waveform, layer_names(engine, model), path


def test_engine_has_one_integer_layer_per_quantized_module(tiny_po2):
    model, engine, _, reference, _, names, _ = tiny_po2
    assert len(engine.layers) == len(reference) == 76
    assert set(names.values()) == set(reference)  # a bijection, matched by weight codes
    assert all(np.abs(layer.weight.codes).max() <= 3 for layer in engine.layers)  # 3-bit narrow weights
    assert all(layer.bias.bits == 32 and layer.output.bits == 8 for layer in engine.layers)


def test_every_quantized_tensor_equals_brevitas(tiny_po2):
    _, engine, inputs, reference, waveform, names, _ = tiny_po2
    stats = compare_codes(engine, inputs, reference, names)
    assert stats["tensors"] == 2 * 76
    assert stats["teacher_forced_mismatches"] == 0
    assert stats["exponent_mismatches"] == 0
    assert stats["mismatches"] == 0, f"codes differ in {stats['mismatched_layers']}"
    assert 0 < stats["max_accumulator"] < 2 ** 31
    # The float-kept ops (norms, means, decoder) round differently from torch's kernels only in the
    # last bits: the waveform agrees to float32 precision relative to its own scale.
    error = np.abs(stats["waveform"] - waveform).max()
    assert error <= 1e-5 * np.abs(waveform).max(), error


def test_prelu_runs_as_a_256_entry_table(tiny_po2):
    _, engine, inputs, _, _, _, _ = tiny_po2
    engine.run(inputs)
    assert engine._tables and all(table.shape == (256,) for table in engine._tables.values())


# ------------------------------------------------------------------ bad models, made from the real export
def _initializer(proto, name) -> np.ndarray:
    return numpy_helper.to_array(next(t for t in proto.graph.initializer if t.name == name))


def _set_initializer(proto, name, value: np.ndarray) -> None:
    init = next(t for t in proto.graph.initializer if t.name == name)
    init.CopyFrom(numpy_helper.from_array(np.asarray(value, numpy_helper.to_array(init).dtype), name))


def _producer(proto, tensor):
    return next(n for n in proto.graph.node if tensor in n.output)


def _first_conv_weight_quant(proto):
    return _producer(proto, next(n for n in proto.graph.node if n.op_type == "Conv").input[1])


def _first_activation_quant(proto):
    constants = {t.name for t in proto.graph.initializer}
    return next(n for n in proto.graph.node if n.op_type == "Quant" and n.input[0] not in constants)


@pytest.mark.parametrize("pick, factor", [(_first_conv_weight_quant, 0.75), (_first_activation_quant, 1.5)],
                         ids=["weight", "activation"])
def test_non_power_of_two_scale_is_refused_at_load(tiny_po2, tmp_path, pick, factor):
    """The same export with one quantizer's scale multiplied by a non-power of two: a weight quantizer's
    (as a float-scale recipe, plain w3a8, would give), or an activation quantizer that no integer layer
    absorbs (the first one, on the mixture). A GoldenError when the model is loaded, not half-way through a
    run, naming the Quant node and the -po2 remedy."""
    proto = onnx.load(str(tiny_po2[-1]))
    quant = pick(proto)
    scale = quant.input[1]
    _set_initializer(proto, scale, _initializer(proto, scale) * factor)
    onnx.save(proto, str(tmp_path / "not_po2.onnx"))
    with pytest.raises(GoldenError, match=rf"Quant node {quant.name}: scale .* is not a power of two.*-po2"):
        GoldenEngine(tmp_path / "not_po2.onnx")


def test_int32_overflow_in_a_real_layer_is_an_error_naming_it(tiny_po2, tmp_path):
    """The export with one conv bias raised to int32's limit: the engine stops at that layer, by name."""
    proto = onnx.load(str(tiny_po2[-1]))
    conv = next(n for n in proto.graph.node if n.op_type == "Conv" and len(n.input) > 2 and n.input[2])
    bias_quant = _producer(proto, conv.input[2])
    scale = float(_initializer(proto, bias_quant.input[1]).ravel()[0])
    bias = bias_quant.input[0]
    # 2^31 - 128: the largest int32 code a float32 bias can state exactly; any positive sum then overflows.
    _set_initializer(proto, bias, np.full_like(_initializer(proto, bias), (2 ** 31 - 128) * scale))
    onnx.save(proto, str(tmp_path / "overflow.onnx"))
    engine = GoldenEngine(tmp_path / "overflow.onnx")
    name = conv.doc_string[len(TORCH_MODULE_DOC):]  # the layer is named after its torch module
    assert (name, conv.name) in {(layer.name, layer.node) for layer in engine.layers}
    with pytest.raises(GoldenError, match=rf"layer {re.escape(name)}: accumulator overflow.*exceeds int32"):
        engine.run(tiny_po2[2])


def test_dump_names_layers_after_their_torch_modules(tiny_po2, tmp_path):
    """The export records each node's torch module in its doc_string, which qonnx's cleanup keeps: the
    dump's index and folders name every integer layer as model.named_modules() does, and each name is the
    module whose weight codes the layer holds; "node" is the conv/linear node of the QONNX file."""
    from limuse_edge.quant import is_quant_layer
    from limuse_export.onnx_export import TORCH_MODULE_DOC as EXPORT_TORCH_MODULE_DOC
    model, engine, inputs, _, _, names, path = tiny_po2
    assert EXPORT_TORCH_MODULE_DOC == TORCH_MODULE_DOC  # the runtime keeps its own copy
    trace = Trace()
    engine.run(inputs, trace)
    index = json.loads((write_dump(trace, tmp_path / "vectors", model=str(path)) / "index.json").read_text())
    got = [layer["name"] for layer in index["layers"]]
    assert len(got) == 76
    assert sorted(got) == sorted(name for name, m in model.named_modules() if is_quant_layer(m))
    assert all(names[name] == name for name in got)  # matched by weight codes, independently of the names
    nodes = {n.name for n in onnx.load(str(path)).graph.node if n.op_type in ("Conv", "Gemm", "MatMul")}
    assert sorted(layer["node"] for layer in index["layers"]) == sorted(nodes)
    for layer in index["layers"]:
        folder = f"{layer['index']:03d}_{layer['name']}"
        assert all(layer[k]["file"].startswith(folder + "/") for k in ("input", "weight", "bias", "output"))
        assert (tmp_path / "vectors" / layer["weight"]["file"]).is_file()


@pytest.mark.parametrize("frames", [7, 10, 99, 1234])
def test_resize_is_linear_interpolation_like_torch(frames):
    """Same sample positions and neighbours as torch's linear interpolation (align_corners=False). The
    values differ from torch's kernel by up to ~7 float32 ulps (1.7e-6 at |x| 2.4, measured; cause not yet
    found), so this checks the structure exactly and the values against torch only to 1e-5."""
    from limuse_runtime.golden.graph import Node
    from limuse_runtime.golden.ops import resize
    x = np.random.default_rng(0).standard_normal((1, 16, 10)).astype(np.float32)
    node = Node("Resize", "r", (), (), {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"})
    got = resize(node, [x, None, None, np.array([1, 16, frames])], None)[0]
    want = torch.nn.functional.interpolate(torch.from_numpy(x), size=frames, mode="linear", align_corners=False).numpy()
    assert got.shape == want.shape
    if frames == 10:
        np.testing.assert_array_equal(got, x)
    assert np.abs(got - want).max() < 1e-5
