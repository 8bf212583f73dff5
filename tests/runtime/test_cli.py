from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import textwrap

import numpy as np
import soundfile as sf

from synthetic_audio import speech_like, write_wav
from limuse_runtime import cli


def run_cli(model, mixture, out, voiceprint=None, visual=None, *extra):
    argv = ["--model", str(model), "--mixture", str(mixture), "--out", str(out), *map(str, extra)]
    if voiceprint is not None:
        argv += ["--voiceprint", str(voiceprint)]
    if visual is not None:
        argv += ["--visual", str(visual)]
    return cli.main(argv)


def test_round_trip_prints_duration_wall_time_and_rtf(tiny_float_onnx, tmp_path, capsys):
    mixture = write_wav(tmp_path / "mix.wav", speech_like(2, 3.5))
    np.save(tmp_path / "vp.npy", np.ones(512, np.float32))

    code = run_cli(tiny_float_onnx, mixture, tmp_path / "t.wav", tmp_path / "vp.npy", None, "--threads", 2)

    printed = capsys.readouterr().out
    assert code == 0
    match = re.search(r"duration 3\.50 s  wall ([\d.]+) s  RTF ([\d.]+)", printed)
    assert match, printed
    assert abs(float(match[2]) - float(match[1]) / 3.5) < 1e-3
    audio, rate = sf.read(tmp_path / "t.wav")
    assert rate == 16000 and audio.shape == (56000,) and np.isfinite(audio).all() and audio.std() > 0


def test_output_wav_gets_the_permissions_of_a_plain_open(tiny_float_onnx, tmp_path):
    """The output is written to a temporary file and renamed; it must still come out 0666 less the
    umask (mkstemp alone would make it 0600, unreadable by another user or a web server)."""
    mixture = write_wav(tmp_path / "mix.wav", speech_like(2, 1.0))
    np.save(tmp_path / "vp.npy", np.ones(512, np.float32))
    previous = os.umask(0o022)
    try:
        assert run_cli(tiny_float_onnx, mixture, tmp_path / "t.wav", tmp_path / "vp.npy") == 0
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "t.wav").stat().st_mode) == 0o644
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_missing_visual_means_no_face(tiny_float_onnx, tmp_path):
    mixture = write_wav(tmp_path / "mix.wav", speech_like(2, 2.0))
    np.save(tmp_path / "vp.npy", np.ones(512, np.float32))
    np.save(tmp_path / "zeros.npy", np.zeros((50, 256), np.float32))
    np.save(tmp_path / "face.npy", np.ones((50, 256), np.float32))
    outputs = {}
    for name, visual in (("none", None), ("zeros", tmp_path / "zeros.npy"), ("face", tmp_path / "face.npy")):
        assert run_cli(tiny_float_onnx, mixture, tmp_path / f"{name}.wav", tmp_path / "vp.npy", visual) == 0
        outputs[name] = sf.read(tmp_path / f"{name}.wav")[0]
    np.testing.assert_array_equal(outputs["none"], outputs["zeros"])
    assert np.abs(outputs["face"] - outputs["zeros"]).max() > 1e-3


def test_no_vp_model_needs_no_voiceprint_and_refuses_one(tiny_no_vp_onnx, tmp_path, capsys):
    mixture = write_wav(tmp_path / "mix.wav", speech_like(2, 1.0))
    np.save(tmp_path / "vp.npy", np.ones(512, np.float32))
    assert run_cli(tiny_no_vp_onnx, mixture, tmp_path / "a.wav") == 0
    assert run_cli(tiny_no_vp_onnx, mixture, tmp_path / "b.wav", tmp_path / "vp.npy") == 2
    assert "no voiceprint input" in capsys.readouterr().err
    assert not (tmp_path / "b.wav").exists()


def test_subcommands_dispatch_with_their_argv(tmp_path, monkeypatch, capsys):
    (tmp_path / "fake_tool.py").write_text("def run(argv):\n    print('fake', argv)\n    return 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.SUBCOMMANDS, "fake", "fake_tool:run")
    assert cli.main(["fake", "--model", "m.onnx", "--dump", "d"]) == 3
    assert "fake ['--model', 'm.onnx', '--dump', 'd']" in capsys.readouterr().out


def test_golden_subcommand_is_registered():
    assert cli.SUBCOMMANDS["golden"] == "limuse_runtime.golden.cli:run_golden_cli"


def test_runtime_never_imports_torch(tiny_float_onnx, tmp_path):
    """The CLI runs in a fresh interpreter where importing torch (or the training side) fails; on its
    path nothing beyond numpy, onnxruntime and soundfile is loaded (not even onnx). Then every module
    of limuse_runtime must import with torch still unavailable."""
    mixture = write_wav(tmp_path / "mix.wav", speech_like(2, 1.0))
    np.save(tmp_path / "vp.npy", np.ones(512, np.float32))
    script = textwrap.dedent(f"""
        import sys, pkgutil, importlib, importlib.abc
        TORCH_SIDE = ("torch", "torchaudio", "brevitas", "qonnx", "limuse_edge", "limuse_export")
        class Ban(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in TORCH_SIDE:
                    raise ImportError(f"{{name}} is not available on the board")
        sys.meta_path.insert(0, Ban())
        from limuse_runtime import cli
        code = cli.main(["--model", {str(tiny_float_onnx)!r}, "--mixture", {str(mixture)!r},
                         "--voiceprint", {str(tmp_path / "vp.npy")!r}, "--out", {str(tmp_path / "t.wav")!r}])
        print("CLI_LOADED", sorted(m for m in sys.modules if m.split(".")[0] in TORCH_SIDE + ("onnx",)))
        import limuse_runtime
        for info in pkgutil.walk_packages(limuse_runtime.__path__, "limuse_runtime."):
            importlib.import_module(info.name)
        print("ALL_LOADED", sorted(m for m in sys.modules if m.split(".")[0] in TORCH_SIDE))
        sys.exit(code)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "CLI_LOADED []" in result.stdout
    assert "ALL_LOADED []" in result.stdout
    assert (tmp_path / "t.wav").exists()
