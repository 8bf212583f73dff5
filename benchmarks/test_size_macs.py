"""Params, model size and MACs of every paper row, counted from our models, beside the paper's figures.

Writes benchmarks/results/size_macs.json and size_macs.md. Targets (issue 2): params exact; size within
0.01 MB of every paper row that lists one; paper-style MACs within 5 % on every row.
Cross-check (size_macs_qonnx.json/.md): the K=32 W3A8 graph exported to QONNX by limuse_export and
costed by qonnx's inference_cost, which counts Conv/MatMul/Gemm only (no ConvTranspose, bias, PReLU, norm).
"""
from __future__ import annotations

import torch

from limuse_edge.checkpoint import build_model
from limuse_edge.profile import profile_model
from limuse_runtime.contract import SAMPLE_RATE

INPUT_SECONDS = 3.0
N_SAMPLES = int(INPUT_SECONDS * SAMPLE_RATE)
SIZE_TOLERANCE_MB = 0.01
MACS_TOLERANCE = 0.05


def _deviation(ours: float, paper: float | None) -> float | None:
    return None if paper is None else 100.0 * (ours - paper) / paper


def _fmt(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _profile_rows(paper_table: dict) -> list[dict]:
    rows = []
    for paper in paper_table["rows"]:
        preset = paper["name"].removesuffix("_float")
        recipe = "w3a8" if paper["quantized"] else "float"
        profile = profile_model(build_model(preset, recipe), N_SAMPLES, preset=preset)
        rows.append({
            "name": paper["name"], "preset": preset, "recipe": recipe,
            "params": profile.params, "quantized_weights": profile.quantized_weights,
            "quantized_layers": profile.quantized_layers,
            "size_mib": round(profile.size_mib, 6), "fp32_size_mib": round(profile.fp32_size_mib, 6),
            "macs_core": profile.macs_core, "macs_paper_style": profile.macs_paper_style,
            "paper": {"params_m": paper["params_m"], "size_mb": paper.get("size_mb"), "macs_g": paper["macs_g"],
                      "params_exact": paper["params_exact"]},
        })
    return rows


def _markdown(rows: list[dict], results) -> str:
    headers = ["row", "recipe", "params", "paper params", "quant. weights", "size MiB", "paper MB", "Δ size",
               "MACs core G", "MACs paper-style G", "paper G", "Δ MACs"]
    table = []
    for r in rows:
        p = r["paper"]
        size_delta = None if p["size_mb"] is None else r["size_mib"] - p["size_mb"]
        table.append([
            r["name"], r["recipe"], f"{r['params']:,}", f"{p['params_exact']:,}", f"{r['quantized_weights']:,}",
            f"{r['size_mib']:.3f}", _fmt(p["size_mb"], ".2f"), _fmt(size_delta, "+.3f"),
            f"{r['macs_core'] / 1e9:.3f}", f"{r['macs_paper_style'] / 1e9:.3f}", f"{p['macs_g']:.2f}",
            f"{_deviation(r['macs_paper_style'] / 1e9, p['macs_g']):+.1f} %",
        ])
    return (f"# Size and MACs, {INPUT_SECONDS:g} s input ({N_SAMPLES} samples), batch 1\n\n"
            "Size: quantized weights at 3 bits, everything else and 2 scales per quantized layer at 32 bits "
            "(MiB); float rows: fp32. MACs core: weights of every conv, transposed conv and linear layer. "
            "Paper-style: core + 1 op per bias-add and PReLU output element + 2 per normalisation output "
            "element. Δ MACs compares paper-style with the paper.\n\n" + results.table(headers, table))


def _qonnx_cross_check() -> tuple[dict, str]:
    """Export limuse_k32 W3A8 to QONNX at a fixed input length and cost it with qonnx."""
    from limuse_export.pipeline import export_onnx
    from limuse_export.prepare import example_inputs as onnx_inputs
    from limuse_export.prepare import exportable
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.inference_cost import inference_cost

    model = build_model("limuse_k32", "w3a8").eval()
    graph = export_onnx("qonnx", exportable(model), onnx_inputs(model, N_SAMPLES))
    cost = inference_cost(ModelWrapper(graph), discount_sparsity=False, cost_breakdown=True)
    by_op = {op: int(c.get("total_macs", 0)) for op, c in cost["optype_cost"].items()}
    qonnx_macs = int(cost["total_cost"]["total_macs"])
    profile = profile_model(model, N_SAMPLES, preset="limuse_k32")
    transposed = profile.parts["decoder"].macs_core
    check = {"preset": "limuse_k32", "recipe": "w3a8", "qonnx_total_macs": qonnx_macs, "qonnx_macs_by_op": by_op,
             "ours_macs_core": profile.macs_core, "ours_macs_core_without_conv_transpose": profile.macs_core - transposed,
             "unsupported_ops": cost["total_cost"].get("unsupported")}
    text = (f"\n## QONNX cross-check (limuse_k32, w3a8, inference_cost, discount_sparsity=False)\n\n"
            f"qonnx conv/matmul MACs: {qonnx_macs / 1e9:.4f} G {by_op}; ours core: {profile.macs_core / 1e9:.4f} G, "
            f"of which {transposed / 1e9:.4f} G in the ConvTranspose1d decoder that qonnx does not count; "
            f"ours without it: {(profile.macs_core - transposed) / 1e9:.4f} G. "
            f"qonnx counts no bias, PReLU or normalisation ops.\n")
    return check, text


def test_size_and_macs_of_every_paper_row(paper_table, results):
    torch.set_num_threads(1)
    rows = _profile_rows(paper_table)
    results.write("size_macs", {"input_seconds": INPUT_SECONDS, "rows": rows}, _markdown(rows, results))
    for r in rows:
        p = r["paper"]
        assert r["params"] == p["params_exact"], r["name"]
        if p["size_mb"] is not None:
            assert abs(r["size_mib"] - p["size_mb"]) <= SIZE_TOLERANCE_MB, r["name"]
        assert abs(r["macs_paper_style"] / 1e9 - p["macs_g"]) <= MACS_TOLERANCE * p["macs_g"], r["name"]


def test_qonnx_inference_cost_agrees_with_our_conv_and_linear_macs(results):
    torch.set_num_threads(1)
    check, text = _qonnx_cross_check()
    results.write("size_macs_qonnx", {"input_seconds": INPUT_SECONDS, **check}, text.lstrip("\n"))
    assert check["qonnx_total_macs"] == check["ours_macs_core_without_conv_transpose"]
