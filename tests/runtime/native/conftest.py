"""Fixtures of the native-engine tests: the C library built once, a tiny -po2-inorm model exported to QONNX
(static shape: 0.4 s, ten video frames, so limuse-run's windowing applies) and packed."""
from __future__ import annotations

import pytest
from native_inputs import SAMPLES, VIDEO_FRAMES
from system_tools import c_compiler


@pytest.fixture(scope="session")
def native_library():
    from limuse_runtime.native import build
    c_compiler()  # skips, naming the package, where there is none (fails under LIMUSE_REQUIRE_TOOLS=1)
    try:
        return build.build()
    except RuntimeError as exc:
        pytest.skip(f"no C compiler to build the native engine: {exc}")


@pytest.fixture(scope="session")
def tiny_inorm_qonnx(tmp_path_factory):
    import torch
    from golden_reference import calibrated_qonnx
    torch.set_num_threads(1)
    model, inputs, path = calibrated_qonnx(tmp_path_factory.mktemp("native") / "tiny_inorm.qonnx.onnx", "tiny",
                                           "w3a8-po2-inorm", SAMPLES, VIDEO_FRAMES)
    with torch.no_grad():
        waveform = model(**inputs).numpy()
    return path, {k: v.numpy() for k, v in inputs.items()}, waveform


@pytest.fixture(scope="session")
def tiny_packed(tiny_inorm_qonnx, native_library):
    from limuse_export.native.pack import pack
    qonnx, inputs, waveform = tiny_inorm_qonnx
    path = qonnx.with_name("tiny_inorm.packed.bin")
    pack(qonnx, path, {"preset": "tiny", "recipe": "w3a8-po2-inorm"})
    return path, inputs, waveform

