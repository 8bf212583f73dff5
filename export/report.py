"""The printed summary of export_report.json."""
from __future__ import annotations

from limuse_export.ort_session import INTEGER_KERNELS

# Why an op stays float in onnxruntime's CPU provider (shared/spec/deployment_notes.md).
FLOAT_REASONS = {
    "ConvTranspose": "no integer ConvTranspose kernel (the decoder is float by design)",
    "PRelu": "no integer PRelu kernel", "LeakyRelu": "runs in float between DQ and Q",
    "InstanceNormalization": "no integer norm kernel (GroupNorm runs in float)",
    "LayerNormalization": "no integer norm kernel",
    "ReduceMean": "norm statistics / context-codec block means in float",
    "Resize": "visual interpolation in float",
    "Mul": "norm affine, mask product in float", "Add": "biases, residuals and norm affine in float",
}


def format_report(report: dict) -> str:
    lines = [f"model: {report['model']}", f"opset {report['opset']}, recipe {report['recipe']}", "",
             "file                                   bytes"]
    lines += [f"  {name:<35} {size:>10,}" for name, size in report["files"].items()]
    for kind, ops in report["ort_optimized_ops_by_file"].items():
        integer = {k: v for k, v in ops.items() if k in INTEGER_KERNELS}
        lines += ["", f"onnxruntime optimised graph of the {kind} file: {sum(ops.values())} nodes",
                  "  integer kernels: " + (", ".join(f"{k} {v}" for k, v in integer.items()) or "none")]
        floats = {k: v for k, v in ops.items() if k in FLOAT_REASONS}
        lines += [f"  float {k} {v}: {FLOAT_REASONS[k]}" for k, v in floats.items()]
        rest = {k: v for k, v in ops.items() if k not in integer and k not in floats}
        lines.append("  other: " + ", ".join(f"{k} {v}" for k, v in rest.items()))
    macs = report["macs"]
    if "core" in macs:
        lines += ["", f"MACs for {macs['input_samples']} samples: core {macs['core'] / 1e9:.3f} G, "
                      f"paper-style {macs['paper_style'] / 1e9:.3f} G"]
    else:
        lines += ["", f"MACs: {macs['note']}"]
    p = report["parity"]
    lines += ["", f"parity over {p['utterances']} utterance(s) (worst case; SI-SDR zero-mean, goal "
                  f"<= {p['si_sdr_tolerance_db']} dB):"]
    for key in ("ort_vs_brevitas", "qonnx_vs_brevitas", "float_ort_vs_torch"):
        if f"{key}_max_abs" in p:
            lines.append(f"  {key:<20} max|diff| {p[f'{key}_max_abs']:.3g}   "
                         f"SI-SDR diff {p[f'{key}_si_sdr_db']:.4f} dB")
    if "golden_vs_brevitas_mismatches" in p:
        lines.append(f"  golden_vs_brevitas   {p['golden_vs_brevitas_mismatches']} of {p['golden_values_compared']:,} "
                     f"integer codes differ (goal 0), {p['golden_input']}")
    elif "golden_vs_brevitas" in p:
        lines.append(f"  golden_vs_brevitas   {p['golden_vs_brevitas']}")
    return "\n".join(lines)
