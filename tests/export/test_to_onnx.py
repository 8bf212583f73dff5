import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from limuse_export import onnx_export, ort_session
from limuse_export.checks import parity
from limuse_export.prepare import example_inputs, exportable

LENGTHS = (4000, 5000)  # as in conftest.py: the context codec pads these differently

ROOT = Path(__file__).resolve().parents[2]


def _inputs(model, n, seed):
    return {k: v.numpy() for k, v in example_inputs(model, n, seed=seed).items()}


def test_contract_names_dynamic_axes_and_no_initializer_inputs(tiny_onnx):
    for kind, path in tiny_onnx.items():
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
        assert model.opset_import[0].version == onnx_export.OPSET
        inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
        assert inputs == {"mixture": ["batch", 2, "samples"], "voiceprint": ["batch", 512],
                          "visual": ["batch", "frames", 256]}, kind
        assert [o.name for o in model.graph.output] == ["target"]
        assert ort_session.initializers_as_inputs(model) == []


@pytest.mark.xfail(strict=True, reason="measured: ORT leaves the strided encoder Conv (DQ->Conv, C=2->N, kernel L) "
                   "in float; every other quantized conv/linear fuses. Cause not yet found.")
def test_ort_fuses_quantized_layers_into_integer_kernels(tiny_onnx):
    ops = ort_session.optimized_op_counts(tiny_onnx["int8"])
    summary = ort_session.kernel_summary(ops)
    assert summary["integer"].get("QLinearConv", 0) >= 1
    assert sum(v for k, v in summary["integer"].items() if k.startswith(("MatMulInteger", "QLinearMatMul", "QGemm"))) >= 1
    # Only the float decoder may keep a float weight op.
    assert summary["float_weight_ops"] == {"ConvTranspose": 1}


# onnxruntime's int8 kernels depend on the CPU (AVX2, AVX-512 VNNI), and float GroupNorm/PReLU between
# quantizers flip codes by one step: the 0.01 dB parity goal (parity.SI_SDR_TOLERANCE_DB) is the golden and
# native engines' (bit-exact), not onnxruntime's. Measured on untrained tiny W3A8, worst of the two lengths:
# 0.015 dB on one machine, 0.023 dB on an AMD EPYC with AVX-512 VNNI. The bound holds on both.
ORT_SI_SDR_BOUND_DB = 0.1


@pytest.mark.parametrize("n_samples", LENGTHS)
def test_int8_ort_stays_near_brevitas_at_two_lengths(tiny_quantized, tiny_onnx, n_samples):
    quantized, _ = tiny_quantized
    session = ort_session.session(tiny_onnx["int8"])
    rng = np.random.default_rng(n_samples)
    for seed in range(2):
        x = _inputs(quantized, n_samples, seed=10 + seed)
        with torch.no_grad():
            reference = quantized(**{k: torch.from_numpy(v) for k, v in x.items()}).numpy()
        out = ort_session.run(session, x)
        assert out.shape == (1, n_samples)
        target = reference[0] + 0.3 * rng.standard_normal(n_samples)
        result = parity.compare(reference[0], out[0], target)
        assert result["si_sdr_diff_db"] <= ORT_SI_SDR_BOUND_DB, result
        assert result["max_abs"] <= 0.05 * result["peak"], result


def test_float_ort_matches_torch_and_batches(tiny_quantized, tiny_onnx):
    _, floating = tiny_quantized
    session = ort_session.session(tiny_onnx["float"])
    x = {k: np.concatenate([v, v[:, ::-1].copy() if k == "mixture" else v]) for k, v in
         _inputs(floating, LENGTHS[1], seed=3).items()}
    with torch.no_grad():
        reference = floating(**{k: torch.from_numpy(v) for k, v in x.items()}).numpy()
    out = ort_session.run(session, x)
    assert out.shape == (2, LENGTHS[1])
    assert np.abs(out - reference).max() <= 1e-4 * np.abs(reference).max()


def test_export_is_deterministic(tiny_quantized, tiny_onnx):
    quantized, _ = tiny_quantized
    again = onnx_export.export_qcdq(exportable(quantized), example_inputs(quantized, LENGTHS[0]))
    assert again.SerializeToString() == onnx.load(str(tiny_onnx["int8"])).SerializeToString()


def test_exports_share_the_model_and_leave_it_as_it_was(tiny_quantized):
    """exportable copies only what it changes; Brevitas's export handlers go after each export, so the same
    layers export to another format as if fresh, and the model's forward and mode do not change."""
    quantized, _ = tiny_quantized
    x = example_inputs(quantized, LENGTHS[0])
    with torch.no_grad():
        before = quantized(**x)
    first = onnx_export.export_qonnx(exportable(quantized), x).SerializeToString()
    onnx_export.export_qcdq(exportable(quantized), x)
    assert onnx_export.export_qonnx(exportable(quantized), x).SerializeToString() == first
    assert not any(getattr(m, "export_handler", None) for m in quantized.modules())
    assert not any(m.training for m in quantized.modules())
    with torch.no_grad():
        assert torch.equal(quantized(**x), before)
    assert exportable(quantized).model is not quantized  # the norms were substituted in a copy


def test_pipeline_report_and_qonnx_executor_parity(micro_report):
    report, out = micro_report
    saved = json.loads((out / "export_report.json").read_text())
    assert set(saved["files"]) == {"micro.qonnx.onnx", "micro.int8.onnx", "micro.float.onnx"}
    for name, size in saved["files"].items():
        assert (out / name).stat().st_size == size
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left
    assert saved["ort_optimized_ops"].get("QLinearConv", 0) >= 1
    qonnx_model = onnx.load(str(out / "micro.qonnx.onnx"))
    assert any(n.op_type == "Quant" for n in qonnx_model.graph.node)
    p = saved["parity"]
    assert p["qonnx_vs_brevitas_max_abs"] <= 1e-3 * p["qonnx_vs_brevitas_peak"], p
    assert "ort_vs_brevitas_max_abs" in p and "ort_vs_brevitas_si_sdr_db" in p
    # the QONNX file is static, exported at the first utterance's head, which is what ran through it
    first = saved["parity_per_utterance"][0]
    assert p["qonnx_input"] == f"{first['utterance']}[:{first['samples']}]"
    assert qonnx_model.graph.input[0].type.tensor_type.shape.dim[-1].dim_value == first["samples"]
    # every step timed; the golden engine says why it did not run on a recipe without power-of-two scales
    assert {"int8", "float", "qonnx", "qonnx_executor", "write", "parity_onnxruntime", "parity_golden"} <= \
        set(saved["step_seconds"]), saved["step_seconds"]
    assert "no power-of-two scales" in p["golden_vs_brevitas"]


def test_every_onnx_file_records_the_voiceprint_extractor_version(micro_report):
    """limuse-run refuses a model trained on another extractor than the one it enrols with."""
    from limuse_runtime.voiceprint import VOICEPRINT_VERSION, VOICEPRINT_VERSION_KEY
    _, out = micro_report
    for name in ("micro.qonnx.onnx", "micro.int8.onnx", "micro.float.onnx"):
        props = {p.key: p.value for p in onnx.load(str(out / name)).metadata_props}
        assert props[VOICEPRINT_VERSION_KEY] == str(VOICEPRINT_VERSION), name


def test_pipeline_reports_ort_parity_against_the_goal(micro_report):
    """The report states onnxruntime's distance from Brevitas and the goal; the figure itself depends on
    the CPU (the untrained micro model: 0.91 dB on AVX-512 VNNI), so only the golden engine is held to it."""
    report, out = micro_report
    p = json.loads((out / "export_report.json").read_text())["parity"]
    assert p["si_sdr_tolerance_db"] == parity.SI_SDR_TOLERANCE_DB
    assert p["ort_vs_brevitas_si_sdr_db"] >= 0 and p["ort_vs_brevitas_max_abs"] >= 0, p


def test_model_without_a_cue_has_no_such_input(tmp_path):
    from limuse_edge.checkpoint import build_model
    from limuse_edge.config import get_preset
    model = build_model(get_preset("tiny").replace(cues=("visual",)), "float").eval()
    proto = onnx_export.export_float(exportable(model), example_inputs(model, 3000))
    assert [i.name for i in proto.graph.input] == ["mixture", "visual"]


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, str(ROOT / "export" / "to_onnx.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize("case", ["unknown_preset", "missing_checkpoint", "corrupt_checkpoint", "out_is_a_file",
                                  "unknown_recipe", "check_qonnx_on_a_float_model"])
def test_bad_input_one_line_error_nonzero_exit_no_onnx(case, tmp_path):
    out = tmp_path / "build"
    args = {"unknown_preset": ["--preset", "nope"],
            "unknown_recipe": ["--preset", "tiny", "--recipe", "w9a8"],
            "missing_checkpoint": ["--checkpoint", tmp_path / "missing.pt"],
            "corrupt_checkpoint": ["--checkpoint", tmp_path / "corrupt.pt"],
            "out_is_a_file": ["--preset", "tiny"],
            "check_qonnx_on_a_float_model": ["--preset", "tiny", "--recipe", "float", "--check-qonnx"]}[case]
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    if case == "out_is_a_file":
        out = tmp_path / "a_file"
        out.write_text("x")
    result = _cli(*args, "--out", out)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("to_onnx: error:"), result.stderr
    assert not list(tmp_path.rglob("*.onnx"))


def test_check_qonnx_refuses_a_file_too_big_for_qonnx_s_executor_and_writes_nothing(tmp_path, monkeypatch):
    """qonnx's executor holds every tensor; a QONNX file whose tensors exceed the memory available is refused
    before anything is written (here the memory available is made 1 MB)."""
    from limuse_edge.checkpoint import build_model
    from limuse_edge.config import get_preset
    from limuse_export.checks import qonnx_check
    from limuse_export.pipeline import export_all
    from limuse_export.sources import _pair
    monkeypatch.setattr(qonnx_check, "available_bytes", lambda: 2 ** 20)
    torch.manual_seed(0)
    config = get_preset("tiny").replace(context_codec=False, audio_layers=1, fusion_layers=1)
    source = _pair("micro", build_model(config, "w3a8"), False, "micro test model")
    with pytest.raises(qonnx_check.QonnxCheckError) as info:
        export_all(source, tmp_path / "out", [_utterance(2000)], log=lambda _: None, check_qonnx=True)
    message = str(info.value)
    assert "\n" not in message and "--check-qonnx" in message and "GiB" in message
    assert list((tmp_path / "out").iterdir()) == []


def _utterance(n_samples: int):
    from limuse_export.demo_sample import Utterance
    from limuse_runtime.contract import n_video_frames
    rng = np.random.default_rng(0)
    return Utterance("a", (0.1 * rng.standard_normal((2, n_samples))).astype(np.float32),
                     (0.1 * rng.standard_normal(n_samples)).astype(np.float32), rng.standard_normal(512).astype(np.float32),
                     rng.standard_normal((n_video_frames(n_samples), 256)).astype(np.float32))
