"""Golden engine on the -inorm recipe (integer gLN/GroupNorm statistics): the IntegerNorm node runs in
integers, and every quantized tensor plus the waveform equal Brevitas's, on an input 5x longer than
test_golden's."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from golden_reference import brevitas_codes, calibrated_qonnx, compare_codes, layer_names, numpy_inputs

from limuse_runtime.golden import GoldenEngine

SAMPLES, VIDEO_FRAMES = 4000, 7


@pytest.fixture(scope="module")
def tiny_inorm(tmp_path_factory):
    torch.set_num_threads(1)
    model, inputs, path = calibrated_qonnx(tmp_path_factory.mktemp("golden_inorm") / "tiny_inorm.qonnx.onnx", "tiny",
                                           "w3a8-po2-inorm", SAMPLES, VIDEO_FRAMES)
    engine = GoldenEngine(path)
    return model, engine, inputs


def test_every_norm_is_one_integer_norm_node(tiny_inorm):
    from limuse_edge.model.integer_norm import IntegerGroupNorm
    model, engine, inputs = tiny_inorm
    calls = []
    handles = [m.register_forward_hook(lambda *_: calls.append(1)) for m in model.modules()
               if isinstance(m, IntegerGroupNorm)]
    with torch.no_grad():
        model(**inputs)  # the gLN module normalises three streams: one node per call
    for h in handles:
        h.remove()
    ops = [node.op for node in engine.graph.nodes]
    assert ops.count("IntegerNorm") == len(calls) > 0
    assert not {"Sqrt", "InstanceNormalization", "LayerNormalization"} & set(ops)  # ReduceMean: TAC, codec means


def test_every_quantized_tensor_and_the_waveform_equal_brevitas(tiny_inorm):
    model, engine, inputs = tiny_inorm
    reference, waveform = brevitas_codes(model, inputs)
    stats = compare_codes(engine, numpy_inputs(inputs), reference, layer_names(engine, model))
    assert stats["tensors"] == 2 * len(reference)
    assert stats["mismatches"] == 0, f"codes differ in {stats['mismatched_layers']}"
    assert stats["teacher_forced_mismatches"] == 0
    error = np.abs(stats["waveform"] - waveform).max()
    assert error <= 1e-5 * np.abs(waveform).max(), error


@pytest.mark.parametrize("channel_axis", [1, -1])
def test_integer_norm_handler_equals_the_training_side_formula(channel_axis):
    from limuse_edge.model.integer_norm import MEAN_FRAC_BITS, NORM_FRAC_BITS, integer_norm
    from limuse_runtime.golden.fixed_point import QTensor
    from limuse_runtime.golden.graph import Node
    from limuse_runtime.golden.ops import OPS
    rng = np.random.default_rng(0)
    codes = rng.integers(-128, 128, (2, 6, 301)) // rng.integers(1, 9, (1, 6, 1))
    if channel_axis == -1:
        codes = codes.transpose(0, 2, 1).copy()
    gamma, beta = rng.integers(-127, 128, 6), rng.integers(-9000, 9000, 6)
    node = Node("IntegerNorm", "norm", ("x", "g", "b"), ("y",),
                {"channel_axis": channel_axis, "gamma_exponent": -5, "mean_frac_bits": MEAN_FRAC_BITS,
                 "norm_frac_bits": NORM_FRAC_BITS, "input_scale": 2.0 ** -4})
    got = OPS["IntegerNorm"](node, [QTensor(codes, -4, 8), gamma.astype(np.float32), beta.astype(np.float32)], None)[0]
    expected = integer_norm(torch.from_numpy(codes), torch.from_numpy(gamma), torch.from_numpy(beta), channel_axis)
    assert got.exponent == -5 - NORM_FRAC_BITS
    np.testing.assert_array_equal(got.codes, expected.numpy())
