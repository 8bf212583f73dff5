"""The native engine built for aarch64 and run under qemu on limuse_k32 -inorm (the bundled
limuse_k32_w3a8_po2_inorm, 3 s of the demo sample): the guest instructions each build executes, counted
by a qemu plugin (benchmarks/qemu_icount.c; repeatable like callgrind, whatever else runs), and its
output against the x86-64 build's, byte for byte.

    pytest -s benchmarks/test_native_arm.py      ->  benchmarks/results/native_arm.{json,md}

Builds (runtime/native/Makefile's flags, through build.py): aarch64 with the NEON pair kernels (the default
build's path on aarch64), aarch64 portable loops (-DLMN_NO_SIMD); the x86-64 reference is the default build. No ARM board here: instructions, not seconds. LIMUSE_K32_INORM_QONNX_3S: reuse a 3 s
QONNX export of that model (as in test_native.py).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from limuse_runtime.contract import MIXTURE, SAMPLE_RATE, VISUAL, VOICEPRINT, atomic_write_text
from limuse_runtime.native.build import FLAGS  # the Makefile's compiler flags, shown in the report

MODEL = "limuse_k32_w3a8_po2_inorm"

RESULTS = Path(__file__).resolve().parent / "results"
PLUGIN_SOURCE = Path(__file__).resolve().parent / "qemu_icount.c"
SYSROOT = "/usr/aarch64-linux-gnu"
BUILDS = {"aarch64 NEON": (), "aarch64 portable": ("-DLMN_NO_SIMD",)}


def _compile(cc: str, out: Path, *flags: str) -> Path:
    """limuse_native_run by the Makefile (single-threaded), with extra flags"""
    from limuse_runtime.native.build import build
    return build(out, cc=cc, openmp=False, extra=flags, program=True)


def _guest_instructions(plugin: Path, program: Path, args: list) -> int:
    done = subprocess.run(["qemu-aarch64", "-L", SYSROOT, "-plugin", str(plugin), "-d", "plugin", str(program),
                           *args], capture_output=True, text=True, timeout=900)
    found = re.search(r"guest instructions (\d+)", done.stdout + done.stderr)
    if done.returncode != 0 or found is None:
        pytest.fail(f"qemu-aarch64 with the counting plugin: exit {done.returncode}, {done.stderr.strip()[-300:]}")
    return int(found.group(1))


def test_native_aarch64_instructions(tmp_path):
    from golden_reference import demo_inputs, export_qonnx
    from limuse_edge import pretrained
    from limuse_export.native.pack import pack

    from system_tools import require
    tools = require("cc", "aarch64-linux-gnu-gcc", "qemu-aarch64")
    cross, qemu, cc = tools["aarch64-linux-gnu-gcc"], tools["qemu-aarch64"], tools["cc"]
    plugin = tmp_path / "libqemu_icount.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(plugin), str(PLUGIN_SOURCE)], check=True)
    programs = {name: _compile(cross, tmp_path / f"run_{name.split()[1]}", *flags) for name, flags in BUILDS.items()}
    probe = subprocess.run([qemu, "-L", SYSROOT, "-plugin", str(plugin), "-d", "plugin", str(programs["aarch64 NEON"])],
                           capture_output=True, text=True)  # no arguments: its usage line, then the count
    if "guest instructions" not in probe.stdout + probe.stderr:
        pytest.skip(f"this qemu-aarch64 does not load the API-version-1 counting plugin: {probe.stderr.strip()[-200:]}")

    inputs, _ = demo_inputs(3 * SAMPLE_RATE)
    qonnx = os.environ.get("LIMUSE_K32_INORM_QONNX_3S") or export_qonnx(
        pretrained.from_pretrained(MODEL).eval(), inputs, tmp_path / "k32_inorm_3s.qonnx.onnx")
    packed = tmp_path / "k32.packed.bin"
    pack(qonnx, packed, {"name": MODEL})
    raw = []
    for name in (MIXTURE, VOICEPRINT, VISUAL):
        raw.append(str(tmp_path / f"{name}.f32"))
        inputs[name][0].numpy().astype("<f4").tofile(raw[-1])

    x86 = _compile(cc, tmp_path / "run_x86")
    subprocess.run([str(x86), str(packed), *raw, str(tmp_path / "x86.f32")], check=True)
    reference = (tmp_path / "x86.f32").read_bytes()
    rows = []
    for name, flags in BUILDS.items():
        out = tmp_path / f"{name.split()[1]}.f32"
        count = _guest_instructions(plugin, programs[name], [str(packed), *raw, str(out)])
        rows.append({"build": name, "flags": " ".join(FLAGS + flags), "guest_instructions": count,
                     "output_equals_x86_64": out.read_bytes() == reference})
    by_name = {r["build"]: r for r in rows}
    ratio = by_name["aarch64 portable"]["guest_instructions"] / by_name["aarch64 NEON"]["guest_instructions"]
    report = {"model": MODEL, "input_s": 3.0, "packed_bytes": packed.stat().st_size,
              "rows": rows, "portable_over_neon": round(ratio, 3)}
    atomic_write_text(RESULTS / "native_arm.json", json.dumps(report, indent=2) + "\n")
    lines = [f"# Native engine on aarch64 (qemu), {MODEL}, 3 s demo", "",
             "| build | flags | guest instructions | output equals x86-64 |", "|---|---|---|---|"]
    lines += [f"| {r['build']} | `{r['flags']}` | {r['guest_instructions'] / 1e9:.3f} G | "
              f"{'yes' if r['output_equals_x86_64'] else 'NO'} |" for r in rows]
    lines += ["", f"The portable loops execute {ratio:.2f}x the NEON build's instructions. Counted by "
              "benchmarks/qemu_icount.c under qemu-aarch64 (no ARM board here: instructions, not seconds)."]
    atomic_write_text(RESULTS / "native_arm.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    assert all(r["output_equals_x86_64"] for r in rows), rows
    assert ratio > 1.0
