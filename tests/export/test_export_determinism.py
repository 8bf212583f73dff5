"""Every file of the main job is byte-identical from one export to the next (tiny, w3a8-po2-inorm: the
recipe of the default model, so the IntegerNorm lowering and the QONNX cleanup are both exercised)."""
from __future__ import annotations

import pytest
import torch

from limuse_edge.quant import calibrate
from limuse_export.pipeline import export_onnx
from limuse_export.prepare import example_inputs, exportable
from limuse_export.sources import from_preset


@pytest.fixture(scope="module")
def inorm_models():
    torch.set_num_threads(1)
    source = from_preset("tiny", "w3a8-po2-inorm")
    calibrate(source.quantized, [example_inputs(source.quantized, 1600, seed=s) for s in range(2)])
    return {"int8": source.quantized.eval(), "qonnx": source.quantized.eval(), "float": source.float}


@pytest.mark.parametrize("fmt, traced_short", [("int8", False), ("float", False), ("qonnx", False), ("qonnx", True)])
def test_two_exports_give_the_same_bytes(inorm_models, fmt, traced_short):
    """traced_short: the QONNX file as the main job makes it, traced on a shorter input with dynamic axes."""
    model = inorm_models[fmt]
    inputs = example_inputs(model, 1600)
    trace = example_inputs(model, 800) if traced_short else None
    first = export_onnx(fmt, exportable(model), inputs, trace_inputs=trace).SerializeToString()
    second = export_onnx(fmt, exportable(model), inputs, trace_inputs=trace).SerializeToString()
    assert first == second
