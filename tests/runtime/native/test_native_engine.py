"""The native engine on a tiny -po2-inorm model: every integer tensor and every float tensor equal to the
golden engine's (the decoder's waveform within float rounding), the CLI, the standalone C program and
its aarch64 build under qemu, and every SIMD path of one build (forced in turn, and under qemu-x86_64 on a
CPU without AVX2), bit for bit. (Against Brevitas: the golden engine's own tests; on this
input length golden itself differs from Brevitas after the visual interpolation, which is not the
native engine's contract.)"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from native_inputs import SAMPLES, write_raw
from system_tools import c_compiler, require

from limuse_runtime.cli import main as limuse_run
from limuse_runtime.native import NativeModel, NativeSeparator
from limuse_runtime.native import binding, build


@pytest.mark.parametrize("fusion", [False, True], ids=["one-kernel-per-op", "fused"])
def test_every_tensor_equals_the_golden_engine(tiny_inorm_qonnx, native_library, tmp_path, fusion):
    """Unfused: every intermediate tensor of the golden engine; fused (the shipped file): every tensor the
    fused kernels leave (their outputs, and the unfused kernels' between them; a TAC's mean and L2 codes
    live in its scratch)."""
    from limuse_export.checks.pack_check import compare_with_golden
    qonnx, inputs, _ = tiny_inorm_qonnx
    stats = compare_with_golden(qonnx, inputs, tmp_path / "check.packed.bin", fusion=fusion)
    assert stats["int_tensors"] > (300 if not fusion else 120) and stats["int_values"] > 10 ** 6
    assert bool(stats["fused"]) == fusion and (not fusion or stats["fused"]["tac"] > 0)
    assert stats["int_mismatches"] == 0, stats["mismatched"]
    assert stats["float_tensors"] > (100 if not fusion else 30) and stats["float_mismatched"] == []
    assert stats["waveform_max_abs"] <= 1e-6 * stats["waveform_peak"], stats["waveform_max_abs"]


def test_weights_are_bit_packed(tiny_packed, tiny_inorm_qonnx):
    from limuse_runtime.golden import GoldenEngine
    path, _, _ = tiny_packed
    layers = GoldenEngine(tiny_inorm_qonnx[0]).layers
    weight_bits = sum(layer.weight.codes.size * layer.weight.bits for layer in layers)
    assert {layer.weight.bits for layer in layers} >= {3}
    # the whole file is smaller than its weights alone would be in int8 containers
    assert path.stat().st_size < sum(layer.weight.codes.size for layer in layers)
    assert path.stat().st_size > weight_bits / 8


def test_two_threads_give_the_same_waveform(tiny_packed):
    path, inputs, _ = tiny_packed
    model = NativeModel(path)
    args = [inputs[n][0] for n in ("mixture", "voiceprint", "visual")]
    np.testing.assert_array_equal(model.run(*args, threads=1), model.run(*args, threads=2))
    assert model.scratch_bytes > 0 and set(model.stage_seconds()) >= {"encoder", "audio_stage", "fusion_stage",
                                                                       "mask", "decoder"}


def test_separator_windows_inputs_of_other_lengths(tiny_packed):
    path, inputs, _ = tiny_packed
    separator = NativeSeparator(path)
    mixture, vp, vis = inputs["mixture"][0], inputs["voiceprint"][0], inputs["visual"][0]
    np.testing.assert_array_equal(separator(mixture, vp, vis), separator.model.run(mixture, vp, vis))
    longer = np.concatenate([mixture, mixture[:, :3000]], axis=1)
    out = separator(longer, vp, np.concatenate([vis, vis[:5]]))
    assert out.shape == (longer.shape[1],) and np.isfinite(out).all()
    assert separator(mixture[:, :1000], vp, vis[:2]).shape == (1000,)


def test_limuse_run_picks_the_native_engine_from_the_file(tiny_packed, tmp_path, capsys):
    path, inputs, _ = tiny_packed
    mixture = np.concatenate([inputs["mixture"][0]] * 3, axis=1)
    sf.write(str(tmp_path / "mix.wav"), mixture.T, 16000, subtype="FLOAT")
    np.save(tmp_path / "vp.npy", inputs["voiceprint"][0])
    assert limuse_run(["--model", str(path), "--mixture", str(tmp_path / "mix.wav"), "--voiceprint",
                       str(tmp_path / "vp.npy"), "--out", str(tmp_path / "y.wav")]) == 0
    printed = capsys.readouterr().out
    assert "RTF" in printed and f"(native engine, {binding.isa_list()[-1]})" in printed
    y, rate = sf.read(str(tmp_path / "y.wav"), dtype="float32")
    assert rate == 16000 and y.shape == (mixture.shape[1],) and np.isfinite(y).all()
    # first window: the packed model on the first SAMPLES samples, with no face (zeros)
    first = NativeModel(path).run(mixture[:, :SAMPLES], inputs["voiceprint"][0],
                                  np.zeros(inputs["visual"][0].shape, np.float32))
    plan_overlap = 0.2 * 16000
    np.testing.assert_array_equal(y[: SAMPLES - int(plan_overlap)], first[: SAMPLES - int(plan_overlap)])


def test_limuse_run_rejects_bad_input_for_a_packed_model(tiny_packed, tmp_path, capsys):
    path, inputs, _ = tiny_packed
    sf.write(str(tmp_path / "mono.wav"), inputs["mixture"][0][0], 16000, subtype="FLOAT")
    np.save(tmp_path / "vp.npy", inputs["voiceprint"][0])
    out = tmp_path / "y.wav"
    assert limuse_run(["--model", str(path), "--mixture", str(tmp_path / "mono.wav"), "--voiceprint",
                       str(tmp_path / "vp.npy"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "channel" in err and len(err.splitlines()) == 1 and not out.exists()


def _build_runner(cc: str, out, *flags, openmp: bool = False) -> str:
    """limuse_native_run built by the Makefile (build.py), as the library is, with -Werror and flags"""
    return str(build.build(out, cc=cc, openmp=openmp, extra=("-Werror", *flags), program=True))


def _raw_inputs(tiny_packed, tmp_path) -> list:
    path, inputs, _ = tiny_packed
    return [str(write_raw(tmp_path / f"{n}.f32", inputs[n][0])) for n in ("mixture", "voiceprint", "visual")]


def test_standalone_program_equals_the_python_binding(tiny_packed, tmp_path):
    cc = c_compiler()
    path, inputs, _ = tiny_packed
    runner = _build_runner(cc, tmp_path / "limuse_native_run")
    subprocess.run([runner, str(path), *_raw_inputs(tiny_packed, tmp_path), str(tmp_path / "y.f32")], check=True)
    expected = NativeModel(path).run(*(inputs[n][0] for n in ("mixture", "voiceprint", "visual")))
    np.testing.assert_array_equal(np.fromfile(tmp_path / "y.f32", "<f4"), expected)
    bad = subprocess.run([runner, str(path), str(tmp_path / "mixture.f32"), str(tmp_path / "y.f32")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "input file" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def _run(runner, path, raw, out, *, env=None, qemu=()) -> "subprocess.CompletedProcess":
    import os
    return subprocess.run([*qemu, runner, "-v", str(path), *raw, str(out)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


def test_every_simd_path_of_one_build_gives_the_same_bytes(tiny_packed, tmp_path, monkeypatch):
    """One library, each path this CPU has forced in turn (the binding, LIMUSE_NATIVE_ISA), and a build
    with the portable loops alone (-DLMN_NO_SIMD, no channel-pair layout): the same bytes"""
    path, inputs, _ = tiny_packed
    args = [inputs[n][0] for n in ("mixture", "voiceprint", "visual")]
    paths = binding.isa_list()
    assert paths[:2] == ["portable", "sse2"] and set(paths) <= {"portable", "sse2", "avx2"}, paths
    model = NativeModel(path)
    assert model.isa == paths[-1]  # the best this CPU has
    outputs = {}
    for isa in paths:
        model.set_isa(isa)
        assert model.isa == isa
        outputs[isa] = model.run(*args).tobytes()
        monkeypatch.setenv("LIMUSE_NATIVE_ISA", isa)
        forced = NativeModel(path)
        assert forced.isa == isa
        assert forced.run(*args).tobytes() == outputs[isa], isa
    monkeypatch.delenv("LIMUSE_NATIVE_ISA")
    assert len(set(outputs.values())) == 1, {k: hash(v) for k, v in outputs.items()}
    runner = _build_runner(c_compiler(), tmp_path / "run_plain", "-DLMN_NO_SIMD")
    done = _run(runner, path, _raw_inputs(tiny_packed, tmp_path), tmp_path / "y.f32")
    assert done.returncode == 0 and "SIMD path portable" in done.stderr, done.stderr
    assert (tmp_path / "y.f32").read_bytes() == outputs["portable"]


def test_asking_for_a_path_this_cpu_or_build_lacks_is_a_one_line_error(tiny_packed, tmp_path, monkeypatch, capsys):
    path, _, _ = tiny_packed
    model = NativeModel(path)
    for bad in ("neon", "avx512", "SSE2"):
        with pytest.raises(binding.NativeError, match="paths here: portable sse2") as err:
            model.set_isa(bad)
        assert len(str(err.value).splitlines()) == 1
        monkeypatch.setenv("LIMUSE_NATIVE_ISA", bad)
        with pytest.raises(binding.NativeError, match="LIMUSE_NATIVE_ISA"):
            NativeModel(path)
    np.save(tmp_path / "vp.npy", np.zeros(512, np.float32))
    sf.write(str(tmp_path / "mix.wav"), np.zeros((SAMPLES, 2), np.float32), 16000, subtype="FLOAT")
    assert limuse_run(["--model", str(path), "--mixture", str(tmp_path / "mix.wav"), "--voiceprint",
                       str(tmp_path / "vp.npy"), "--out", str(tmp_path / "y.wav")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("limuse-run: error:") and "LIMUSE_NATIVE_ISA" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "y.wav").exists()
    monkeypatch.delenv("LIMUSE_NATIVE_ISA")
    runner = _build_runner(c_compiler(), tmp_path / "run")
    done = _run(runner, path, _raw_inputs(tiny_packed, tmp_path), tmp_path / "y.f32", env={"LIMUSE_NATIVE_ISA": "neon"})
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "neon" in done.stderr
    assert not (tmp_path / "y.f32").exists()


def test_without_make_build_py_compiles_on_the_porters_one_cc_line(tiny_packed, tmp_path, monkeypatch):
    """build.py without make: the Makefile's flags on one cc line (README); with gcc it still has every path"""
    import shutil
    cc = c_compiler()
    which = shutil.which
    monkeypatch.setattr(build.shutil, "which", lambda name: None if name == "make" else which(name))
    runner = _build_runner(cc, tmp_path / "run_one_line")
    path, inputs, _ = tiny_packed
    raw = _raw_inputs(tiny_packed, tmp_path)
    done = _run(runner, path, raw, tmp_path / "y.f32")
    assert done.returncode == 0, done.stderr
    if "gcc" in subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.lower():
        assert f"this CPU and build: {' '.join(binding.isa_list())})" in done.stderr, done.stderr
    expected = NativeModel(path).run(*(inputs[n][0] for n in ("mixture", "voiceprint", "visual")))
    assert (tmp_path / "y.f32").read_bytes() == expected.tobytes()


def test_default_build_runs_its_baseline_on_a_cpu_without_avx2(tiny_packed, tmp_path):
    """The default build (the Makefile's flags, OpenMP) under qemu-x86_64 -cpu Nehalem (SSE4.2, no AVX): it
    picks SSE2 and gives the bytes of the AVX2 path on this machine; asking it for AVX2 is a one-line error,
    not SIGILL. On the host, the same build's best path."""
    qemu = require("qemu-x86_64")["qemu-x86_64"]
    path, _, _ = tiny_packed
    raw = _raw_inputs(tiny_packed, tmp_path)
    runner = _build_runner(c_compiler(), tmp_path / "run", openmp=True)
    host = _run(runner, path, raw, tmp_path / "host.f32")
    assert host.returncode == 0, host.stderr
    old = _run(runner, path, raw, tmp_path / "old.f32", qemu=(qemu, "-cpu", "Nehalem"))
    assert old.returncode == 0, old.stderr
    assert "SIMD path sse2 (this CPU and build: portable sse2)" in old.stderr, old.stderr
    assert (tmp_path / "old.f32").read_bytes() == (tmp_path / "host.f32").read_bytes()
    asked = _run(runner, path, raw, tmp_path / "asked.f32", env={"LIMUSE_NATIVE_ISA": "avx2"},
                 qemu=(qemu, "-cpu", "Nehalem"))
    assert asked.returncode == 2 and len(asked.stderr.strip().splitlines()) == 1, asked.stderr
    assert "lacks AVX2" in asked.stderr and not (tmp_path / "asked.f32").exists()
    if "avx2" in binding.isa_list():  # a CPU with AVX2 under qemu: the AVX2 path, the same bytes
        new = _run(runner, path, raw, tmp_path / "new.f32", qemu=(qemu, "-cpu", "Haswell"))
        assert new.returncode == 0 and "SIMD path avx2" in new.stderr, new.stderr
        assert (tmp_path / "new.f32").read_bytes() == (tmp_path / "host.f32").read_bytes()


def test_aarch64_build_under_qemu_equals_x86_64(tiny_packed, tmp_path):
    """One aarch64 build: its NEON path (the default) and its portable path, and a build with the portable
    loops alone, under qemu-aarch64: the x86-64 bytes. (ARMv8.0 has NEON; no dotprod path yet.)"""
    tools = require("aarch64-linux-gnu-gcc", "qemu-aarch64")
    cross, qemu = tools["aarch64-linux-gnu-gcc"], (tools["qemu-aarch64"], "-L", "/usr/aarch64-linux-gnu")
    path, _, _ = tiny_packed
    raw = _raw_inputs(tiny_packed, tmp_path)
    native = _build_runner(c_compiler(), tmp_path / "run_x86")
    assert _run(native, path, raw, tmp_path / "x86.f32").returncode == 0
    x86 = np.fromfile(tmp_path / "x86.f32", "<f4")
    assert x86.size == SAMPLES
    arm = _build_runner(cross, tmp_path / "run_arm")
    plain = _build_runner(cross, tmp_path / "run_arm_plain", "-DLMN_NO_SIMD")
    for name, runner, isa, expected in (("neon", arm, None, "neon"), ("portable", arm, "portable", "portable"),
                                        ("plain", plain, None, "portable")):
        done = _run(runner, path, raw, tmp_path / f"{name}.f32", qemu=qemu, env={"LIMUSE_NATIVE_ISA": isa or ""})
        assert done.returncode == 0 and f"SIMD path {expected} " in done.stderr, (name, done.stderr)
        assert np.fromfile(tmp_path / f"{name}.f32", "<f4").tobytes() == x86.tobytes(), name
    asked = _run(arm, path, raw, tmp_path / "avx2.f32", qemu=qemu, env={"LIMUSE_NATIVE_ISA": "avx2"})
    assert asked.returncode == 2 and len(asked.stderr.strip().splitlines()) == 1, asked.stderr


@pytest.fixture(scope="module")
def tiny_variant_qonnx(tmp_path_factory):
    """tiny -inorm without the voiceprint cue and without the context codec (the no_vp / no_cc rows' code
    paths: two graph inputs, the GC-TCN at full frame rate)."""
    import torch
    from golden_reference import export_qonnx, golden_inputs
    from native_inputs import VIDEO_FRAMES

    from limuse_edge.checkpoint import build_model
    from limuse_edge.config import get_preset
    from limuse_edge.quant import calibrate
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(get_preset("tiny").replace(cues=("visual",), context_codec=False), "w3a8-po2-inorm").eval()

    def without_voiceprint(inputs):
        return {k: v for k, v in inputs.items() if k != "voiceprint"}

    calibrate(model, [without_voiceprint(golden_inputs(model, SAMPLES, VIDEO_FRAMES, seed=100 + s)) for s in range(2)])
    inputs = without_voiceprint(golden_inputs(model.eval(), SAMPLES, VIDEO_FRAMES, seed=1))
    path = export_qonnx(model, inputs, tmp_path_factory.mktemp("native_variant") / "tiny_no_vp_no_cc.qonnx.onnx")
    return path, {k: v.numpy() for k, v in inputs.items()}


@pytest.mark.parametrize("fusion", [False, True], ids=["one-kernel-per-op", "fused"])
def test_a_model_without_voiceprint_and_codec_equals_the_golden_engine(tiny_variant_qonnx, native_library, tmp_path,
                                                                       fusion):
    from limuse_export.checks.pack_check import compare_with_golden
    qonnx, inputs = tiny_variant_qonnx
    stats = compare_with_golden(qonnx, inputs, tmp_path / "variant.packed.bin", fusion=fusion)
    assert stats["int_tensors"] > (100 if not fusion else 50) and stats["int_mismatches"] == 0, stats["mismatched"]
    assert not fusion or stats["fused"]["gcblock"] > 0  # the GC-TCN at full frame rate: blocks of T frames
    assert stats["float_mismatched"] == []
    assert stats["waveform_max_abs"] <= 1e-6 * stats["waveform_peak"]
    model = NativeModel(tmp_path / "variant.packed.bin")
    assert not model.has_voiceprint and model.has_visual


def test_fused_kernels_equal_the_unfused_program(tiny_inorm_qonnx, native_library, tmp_path):
    """The packer's fused kernels (TAC blocks, PReLU + Quant, ...) give the waveform of the one-kernel-per-op
    program bit for bit, in less activation memory; every tensor the fused program keeps is checked against
    the golden engine by test_every_tensor_equals_the_golden_engine."""
    from limuse_export.native.pack import pack_graph
    from limuse_runtime.golden.graph import load_graph
    from limuse_runtime.golden.lower import lower
    qonnx, inputs, _ = tiny_inorm_qonnx
    graph = lower(load_graph(qonnx))
    fused, plain = pack_graph(graph, {}), pack_graph(graph, {}, fusion=False)
    assert fused.fused["tac"] > 0 and fused.fused["prelu_quant"] > 0 and fused.fused["gcblock"] > 0
    assert plain.fused == {}
    args = [inputs[n][0] for n in ("mixture", "voiceprint", "visual")]
    models = []
    for name, packed in (("fused", fused), ("plain", plain)):
        (tmp_path / f"{name}.packed.bin").write_bytes(packed.data)
        models.append(NativeModel(tmp_path / f"{name}.packed.bin"))
    outs = [m.run(*args) for m in models]
    assert outs[0].tobytes() == outs[1].tobytes()
    assert models[0].scratch_bytes < 0.5 * models[1].scratch_bytes


def test_limuse_run_on_a_packed_model_does_not_load_onnxruntime(tiny_packed, tmp_path):
    """onnxruntime is a fifth of the native run's peak memory; a board may run packed models alone."""
    path, inputs, _ = tiny_packed
    sf.write(str(tmp_path / "mix.wav"), inputs["mixture"][0].T, 16000, subtype="FLOAT")
    np.save(tmp_path / "vp.npy", inputs["voiceprint"][0])
    code = ("import sys; from limuse_runtime.cli import main\n"
            f"rc = main(['--model', {str(path)!r}, '--mixture', {str(tmp_path / 'mix.wav')!r}, "
            f"'--voiceprint', {str(tmp_path / 'vp.npy')!r}, '--out', {str(tmp_path / 'y.wav')!r}])\n"
            "print(rc, 'onnxruntime' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split()[-2:] == ["0", "False"], done.stdout + done.stderr
