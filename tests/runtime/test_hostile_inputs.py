"""limuse-run against a hostile user, on both backends (the onnxruntime .int8.onnx model and the native
.packed.bin model of the tiny config): bad audio, cues, models, output paths, flags and signals.

Every case asserts the exit code (0 only for good input), exactly one line on stderr (an error, or the
one documented warning), no Python traceback, and nothing left behind: in the output folder only the
output of a good run, in $TMPDIR nothing at all. Most cases call the CLI's main() in-process; the
signals need a real process."""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from limuse_runtime.cli import main
from synthetic_audio import speech_like, write_wav

BACKENDS = ("onnx", "native")
SECONDS = 1.0


# ---------------------------------------------------------------- models, built once per module

@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{'onnx': tiny W3A8 as QCDQ int8 ONNX, 'native': tiny -po2-inorm packed}, from the tiny config."""
    import torch
    from golden_reference import calibrated_qonnx
    from limuse_edge.quant import calibrate
    from limuse_export import onnx_export
    from limuse_export.native.pack import pack
    from limuse_export.prepare import example_inputs, exportable
    from limuse_export.save import save_onnx
    from limuse_export.sources import from_preset
    from limuse_runtime.native import build
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("hostile_models")
    quantized = from_preset("tiny", "w3a8").quantized.eval()
    calibrate(quantized, [example_inputs(quantized, 4000, seed=0)])
    save_onnx(onnx_export.export_qcdq(exportable(quantized), example_inputs(quantized, 4000)), out / "tiny.int8.onnx")
    models = _Models(onnx=out / "tiny.int8.onnx", native=None)
    if any(shutil.which(cc) for cc in ("cc", "gcc", "clang")):
        build.build()
        _, _, qonnx = calibrated_qonnx(out / "tiny_inorm.qonnx.onnx", "tiny", "w3a8-po2-inorm", 6400, 10)
        pack(qonnx, out / "tiny.packed.bin", {"preset": "tiny", "recipe": "w3a8-po2-inorm"})
        models["native"] = out / "tiny.packed.bin"
    return models


class _Models(dict):
    """The two models by backend. The native one exists only where a C compiler built the engine: without
    one its cases skip, naming the package (fail under LIMUSE_REQUIRE_TOOLS=1), and the onnx cases run."""

    def __getitem__(self, backend):
        if backend == "native" and dict.get(self, "native") is None:
            from system_tools import c_compiler
            c_compiler()
        return dict.__getitem__(self, backend)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The good inputs and a library of bad ones, written once (the cases only read them)."""
    d = tmp_path_factory.mktemp("hostile_inputs")
    mix = speech_like(2, SECONDS)
    f = {"mixture": write_wav(d / "mix.wav", mix), "voiceprint": d / "vp.npy", "visual": d / "vis.npy"}
    rng = np.random.default_rng(0)
    vp = rng.standard_normal(512).astype(np.float32)
    np.save(f["voiceprint"], vp / np.linalg.norm(vp))
    np.save(f["visual"], np.zeros((25, 256), np.float32))
    f["dir"] = d
    return f


# ---------------------------------------------------------------- running and checking a case

def _args(**kw) -> list[str]:
    argv = []
    for key, value in kw.items():
        if value is None:
            continue
        if value is True:
            argv.append(f"--{key}")
        else:
            argv += [f"--{key}", str(value)]
    return argv


@pytest.fixture(autouse=True)
def _reused_sessions(monkeypatch):
    """An onnxruntime session of the same file and thread count is made once (half a second each): the
    cases test what the CLI does around it."""
    from limuse_runtime import backend
    real = backend.OrtSeparator

    def cached(path, threads=1, **kw):
        key = (str(path), threads, Path(path).stat().st_mtime_ns if Path(path).is_file() else 0)
        if kw or not Path(path).is_file() or "hostile_models" not in str(path):
            return real(path, threads, **kw)
        if key not in _SESSIONS:
            _SESSIONS[key] = real(path, threads)
        return _SESSIONS[key]

    monkeypatch.setattr(backend, "OrtSeparator", cached)


_SESSIONS: dict = {}


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A fresh output folder and $TMPDIR for the case."""
    out_dir, tmp = tmp_path / "out", tmp_path / "tmp"
    out_dir.mkdir()
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return out_dir, tmp


def run_main(argv, capsys) -> tuple[int, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        code = exc.code
    except BaseException as exc:  # noqa: BLE001 - any escape is a traceback for the user
        pytest.fail(f"limuse-run raised {type(exc).__name__}: {exc}")
    return code, capsys.readouterr().err


def assert_clean(code, err, expect_ok, out_dir, tmp, keep=()):
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert len(lines) == 1 or (expect_ok and not lines), f"stderr has {len(lines)} lines: {err!r}"
    assert (code == 0) == expect_ok, f"exit {code}: {err!r}"
    if expect_ok:
        assert code == 0
    else:
        assert code not in (0, None) and lines[0].split(": ")[1] in ("error", "stopped by SIGTERM; no output written",
                                                                      "stopped by SIGHUP; no output written",
                                                                      "stopped by SIGINT; no output written") \
            or "error" in lines[0], err
    left = sorted(p.name for p in out_dir.iterdir() if p.name not in keep)
    assert left == [], f"left in the output folder: {left}"
    assert sorted(p.name for p in tmp.iterdir()) == [], "left in $TMPDIR"


def case(backend, models, files, sandbox, capsys, expect_ok=False, words=(), keep_out=True, **over):
    """Runs limuse-run with the good inputs, `over` replacing some (None drops one), and checks it."""
    out_dir, tmp = sandbox
    args = {"model": models[backend], "mixture": files["mixture"], "voiceprint": files["voiceprint"],
            "visual": files["visual"], "out": out_dir / "y.wav", **over}
    code, err = run_main(_args(**args), capsys)
    out = Path(str(args["out"])) if args.get("out") else None
    keep = (out.name,) if expect_ok and out is not None and out.parent == out_dir else ()
    assert_clean(code, err, expect_ok, out_dir, tmp, keep)
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"
    if expect_ok:
        y, rate = sf.read(str(out))
        assert rate == 16000 and y.ndim == 1 and np.isfinite(y).all()
    return err


# ---------------------------------------------------------------- audio

def _wav(d, name, samples, rate=16000, subtype="FLOAT", fmt=None):
    path = d / name
    sf.write(str(path), np.asarray(samples, np.float32).T, rate, subtype=subtype, format=fmt)
    return path


def _with(value):
    def make(d):
        x = speech_like(2, SECONDS)
        x[1, 9000] = value
        return _wav(d, f"bad_{value}.wav", x)
    return make


def _truncated(d):
    path = _wav(d, "full16.wav", speech_like(2, SECONDS), subtype="PCM_16")
    data = path.read_bytes()
    (d / "trunc.wav").write_bytes(data[: len(data) - 6001])
    return d / "trunc.wav"


def _corrupt_flac(d):
    path = _wav(d, "good.flac", speech_like(2, SECONDS), subtype="PCM_16", fmt="FLAC")
    data = bytearray(path.read_bytes())
    for k in range(2000, len(data), 7):
        data[k] ^= 0x5A
    (d / "bad.flac").write_bytes(bytes(data))
    return d / "bad.flac"


def _bytes(name, content):
    def make(d):
        (d / name).write_bytes(content)
        return d / name
    return make


AUDIO = {
    # name: (mixture maker, extra flags, ok?, words)
    "float_wav": (lambda d: _wav(d, "f.wav", speech_like(2, SECONDS)), {}, True, ()),
    "pcm16_wav": (lambda d: _wav(d, "p16.wav", speech_like(2, SECONDS), subtype="PCM_16"), {}, True, ()),
    "pcm24_wav": (lambda d: _wav(d, "p24.wav", speech_like(2, SECONDS), subtype="PCM_24"), {}, True, ()),
    "flac": (lambda d: _wav(d, "g.flac", speech_like(2, SECONDS), subtype="PCM_16", fmt="FLAC"), {}, True, ()),
    "two_seconds": (lambda d: _wav(d, "two.wav", speech_like(2, 2.0)), {"visual": None}, True, ()),
    "minimum_length": (lambda d: _wav(d, "min.wav", speech_like(2, 1.0)[:, :640]), {"visual": None}, True, ()),
    "silence": (lambda d: _wav(d, "zero.wav", np.zeros((2, 16000))), {}, True, ()),
    "truncated_wav": (_truncated, {}, True, ("truncated", "6001 are missing")),
    "rate_8k": (lambda d: _wav(d, "m8k.wav", speech_like(2, SECONDS)[:, :8000], 8000), {}, False,
                ("8000 Hz", "--resample")),
    "rate_8k_resampled": (lambda d: _wav(d, "r8k.wav", speech_like(2, SECONDS)[:, :8000], 8000),
                          {"resample": True}, True, ()),
    "rate_44k_resampled": (lambda d: _wav(d, "r44.wav", np.zeros((2, 44100)), 44100), {"resample": True}, True, ()),
    "rate_4k_resampled": (lambda d: _wav(d, "r4k.wav", speech_like(2, SECONDS)[:, :4000], 4000),
                          {"resample": True}, False, ("below 8000 Hz",)),
    "mono": (lambda d: _wav(d, "mono.wav", speech_like(1, SECONDS)), {}, False, ("1 channel",)),
    "three_channels": (lambda d: _wav(d, "c3.wav", speech_like(3, SECONDS)), {}, False, ("--channels",)),
    "three_channels_picked": (lambda d: _wav(d, "c3p.wav", speech_like(3, SECONDS)), {"channels": "0,2"}, True, ()),
    "channels_beyond": (lambda d: _wav(d, "c3b.wav", speech_like(3, SECONDS)), {"channels": "0,5"}, False,
                        ("index 5",)),
    "channels_repeated": (lambda d: _wav(d, "c3r.wav", speech_like(3, SECONDS)), {"channels": "1,1"}, False,
                          ("distinct",)),
    "channels_text": (lambda d: _wav(d, "c3t.wav", speech_like(3, SECONDS)), {"channels": "a,b"}, False, ("distinct",)),
    "channels_negative": (lambda d: _wav(d, "c3n.wav", speech_like(3, SECONDS)), {"channels": "-1,0"}, False, ()),
    "channels_count": (lambda d: _wav(d, "c3c.wav", speech_like(3, SECONDS)), {"channels": "0"}, False,
                       ("2 microphones",)),
    "nan": (_with(np.nan), {}, False, ("NaN or Inf",)),
    "inf": (_with(np.inf), {}, False, ("NaN or Inf",)),
    "minus_inf": (_with(-np.inf), {}, False, ("NaN or Inf",)),
    "nan_resampled": (lambda d: _wav(d, "n44.wav", np.full((2, 44100), np.nan), 44100), {"resample": True}, False, ()),
    "empty": (lambda d: _wav(d, "empty.wav", np.zeros((2, 0))), {}, False, ("0 samples",)),
    "too_short": (lambda d: _wav(d, "short.wav", speech_like(2, SECONDS)[:, :639]), {}, False, ("639 samples",)),
    "header_only": (lambda d: _bytes("hdr.wav", _wav(d, "h.wav", speech_like(2, SECONDS), subtype="PCM_16")
                                     .read_bytes()[:44])(d), {}, False, ("0 samples",)),
    "corrupt_flac": (_corrupt_flac, {}, False, ("cannot decode",)),
    "garbage": (_bytes("noise.wav", b"not audio at all\n" * 64), {}, False, ("cannot read",)),
    "riff_garbage": (_bytes("riff.wav", b"RIFF\xff\xff\xff\x7fWAVEfmt " + bytes(range(256)) * 4), {}, False, ()),
    "empty_file": (_bytes("zero_bytes.wav", b""), {}, False, ("cannot read",)),
    "missing": (lambda d: d / "nowhere.wav", {}, False, ("no such file",)),
    "directory": (lambda d: d, {}, False, ()),
    "dev_null": (lambda d: Path("/dev/null"), {}, False, ()),
}


@pytest.mark.parametrize("name", sorted(AUDIO))
@pytest.mark.parametrize("backend", BACKENDS)
def test_audio(backend, name, models, files, sandbox, capsys, tmp_path):
    make, flags, ok, words = AUDIO[name]
    case(backend, models, files, sandbox, capsys, ok, words, mixture=make(tmp_path), **flags)


# ---------------------------------------------------------------- cues

def _npy(name, array, pickle=False):
    def make(d):
        np.save(d / name, array, allow_pickle=pickle)
        return d / name
    return make


def _unit(n=512):
    v = np.random.default_rng(1).standard_normal(n).astype(np.float32)
    return v / np.linalg.norm(v)


CUES = {
    # name: (cue, maker, ok?, words)
    "vp_row": ("voiceprint", _npy("vp_row.npy", _unit()[None]), True, ()),
    "vp_float64": ("voiceprint", _npy("vp64.npy", _unit().astype(np.float64)), True, ()),
    "vp_float16": ("voiceprint", _npy("vp16.npy", _unit().astype(np.float16)), True, ()),
    "vp_short": ("voiceprint", _npy("vp256.npy", _unit(256)), False, ("(256,)", "(512,)")),
    "vp_long": ("voiceprint", _npy("vp513.npy", _unit(513)), False, ("(513,)",)),
    "vp_two_rows": ("voiceprint", _npy("vp2.npy", np.stack([_unit(), _unit()])), False, ("(2, 512)",)),
    "vp_scalar": ("voiceprint", _npy("vp0.npy", np.float32(1)), False, ()),
    "vp_empty": ("voiceprint", _npy("vpe.npy", np.zeros(0, np.float32)), False, ()),
    "vp_int": ("voiceprint", _npy("vpi.npy", np.ones(512, np.int32)), False, ("int32",)),
    "vp_bool": ("voiceprint", _npy("vpb.npy", np.ones(512, bool)), False, ()),
    "vp_complex": ("voiceprint", _npy("vpc.npy", np.ones(512, np.complex64)), False, ()),
    "vp_nan": ("voiceprint", _npy("vpn.npy", np.full(512, np.nan, np.float32)), False, ("NaN or Inf",)),
    "vp_inf": ("voiceprint", _npy("vpinf.npy", np.full(512, np.inf, np.float32)), False, ("NaN or Inf",)),
    "vp_all_zero": ("voiceprint", _npy("vpz.npy", np.zeros(512, np.float32)), False, ("zero",)),
    "vp_pickle": ("voiceprint", _npy("vpp.npy", np.array([{"a": 1}], dtype=object), pickle=True), False,
                  ("cannot read",)),
    "vp_garbage": ("voiceprint", _bytes("vpg.npy", b"\x93NUMPY garbage" * 10), False, ("cannot read",)),
    "vp_npz": ("voiceprint", lambda d: (np.savez(d / "vp.npz", a=_unit()), d / "vp.npz")[1], False, ()),
    "vp_missing_file": ("voiceprint", lambda d: d / "absent.npy", False, ("no such file",)),
    "vp_not_given": ("voiceprint", lambda d: None, False, ("voiceprint: missing",)),
    "vis_no_face": ("visual", lambda d: None, True, ()),
    "vis_batch": ("visual", _npy("vis_b.npy", np.zeros((1, 25, 256), np.float32)), True, ()),
    "vis_two_frames_off": ("visual", _npy("vis27.npy", np.zeros((27, 256), np.float32)), True, ()),
    "vis_dim": ("visual", _npy("vis128.npy", np.zeros((25, 128), np.float32)), False, ("(25, 128)",)),
    "vis_frames": ("visual", _npy("vis200.npy", np.zeros((200, 256), np.float32)), False, ("200 frames",)),
    "vis_no_frames": ("visual", _npy("vis0.npy", np.zeros((0, 256), np.float32)), False, ()),
    "vis_1d": ("visual", _npy("vis1.npy", np.zeros(256, np.float32)), False, ()),
    "vis_int": ("visual", _npy("visi.npy", np.zeros((25, 256), np.int16)), False, ("int16",)),
    "vis_nan": ("visual", _npy("visn.npy", np.full((25, 256), np.nan, np.float32)), False, ("NaN or Inf",)),
    "vis_pickle": ("visual", _npy("visp.npy", np.array([None, 1], dtype=object), pickle=True), False,
                   ("cannot read",)),
    "vis_garbage": ("visual", _bytes("visg.npy", b"garbage"), False, ("cannot read",)),
}


@pytest.mark.parametrize("name", sorted(CUES))
@pytest.mark.parametrize("backend", BACKENDS)
def test_cues(backend, name, models, files, sandbox, capsys, tmp_path):
    cue, make, ok, words = CUES[name]
    case(backend, models, files, sandbox, capsys, ok, words, **{cue: make(tmp_path)})


# ---------------------------------------------------------------- flags

CPUS = os.cpu_count() or 1
FLAGS = {
    "threads_all_cpus": ({"threads": CPUS}, True, ()),
    "threads_zero": ({"threads": 0}, False, ("threads: got 0",)),
    "threads_negative": ({"threads": -3}, False, ("threads: got -3",)),
    "threads_above_cpus": ({"threads": CPUS + 1}, False, (f"at most {CPUS}",)),
    "threads_1000": ({"threads": 1000}, False, (f"at most {CPUS}",)),
    "threads_text": ({"threads": "many"}, False, ("invalid int value",)),
    "window_short": ({"window": 0.4, "overlap": 0.08}, True, ()),
    "window_nan": ({"window": "nan"}, False, ("window: got nan",)),
    "window_inf": ({"window": "inf"}, False, ("window: got inf",)),
    "window_minus_inf": ({"window": "-inf"}, False, ("window",)),
    "window_huge": ({"window": "1e308"}, False, ("window: got 1e+308 s",)),
    "window_negative": ({"window": -1}, False, ("window",)),
    "window_zero": ({"window": 0}, False, ("window",)),
    "window_tiny": ({"window": 0.01}, False, ("window",)),
    "overlap_nan": ({"overlap": "nan"}, False, ("overlap: got nan",)),
    "overlap_inf": ({"overlap": "inf"}, False, ("overlap",)),
    "overlap_huge": ({"overlap": "1e308"}, False, ("overlap",)),
    "overlap_over_half": ({"window": 1.0, "overlap": 0.9}, False, ("half",)),
    "window_text": ({"window": "long"}, False, ("invalid float value",)),
    "unknown_flag": ({"frobnicate": 1}, False, ("unrecognized arguments",)),
}


@pytest.mark.parametrize("name", sorted(FLAGS))
@pytest.mark.parametrize("backend", BACKENDS)
def test_flags(backend, name, models, files, sandbox, capsys):
    flags, ok, words = FLAGS[name]
    case(backend, models, files, sandbox, capsys, ok, words, **flags)


def test_missing_required_flag_is_one_line(sandbox, capsys):
    out_dir, tmp = sandbox
    code, err = run_main(["--mixture", "x.wav"], capsys)
    assert_clean(code, err, False, out_dir, tmp)


# ---------------------------------------------------------------- output paths

OUT_PATHS = ("same_as_mixture", "symlink_to_mixture", "hard_link_to_mixture", "same_as_voiceprint",
             "same_as_visual", "same_as_model", "existing_directory", "empty", "trailing_slash", "name_300",
             "in_proc", "missing_directory", "fifo", "name_250")


@pytest.mark.parametrize("name", OUT_PATHS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_output_paths(backend, name, models, files, sandbox, capsys, tmp_path):
    out_dir, _ = sandbox
    mixture = out_dir / "mine.wav"  # inside the output folder: what the user would lose
    mixture.write_bytes(Path(files["mixture"]).read_bytes())
    vp, vis = out_dir / "vp.npy", out_dir / "vis.npy"
    vp.write_bytes(Path(files["voiceprint"]).read_bytes())
    vis.write_bytes(Path(files["visual"]).read_bytes())
    before = mixture.read_bytes()
    model = models[backend]
    ok = name == "name_250"
    if name == "same_as_mixture":
        out = mixture
    elif name == "symlink_to_mixture":
        (out_dir / "link.wav").symlink_to(mixture)
        out = out_dir / "link.wav"
    elif name == "hard_link_to_mixture":
        os.link(mixture, out_dir / "hard.wav")
        out = out_dir / "hard.wav"
    elif name == "same_as_voiceprint":
        out = vp
    elif name == "same_as_visual":
        out = vis
    elif name == "same_as_model":
        model = out_dir / Path(model).name
        model.write_bytes(Path(models[backend]).read_bytes())
        out = model
    elif name == "existing_directory":
        (out_dir / "sub").mkdir()
        out = out_dir / "sub"
    elif name == "empty":
        out = ""
    elif name == "trailing_slash":
        out = str(out_dir / "y.wav") + "/"
    elif name in ("name_300", "name_250"):
        out = out_dir / ("n" * (296 if name == "name_300" else 246) + ".wav")
    elif name == "in_proc":
        out = "/proc/limuse_y.wav"
    elif name == "missing_directory":
        out = out_dir / "no" / "such" / "y.wav"
    elif name == "fifo":
        os.mkfifo(out_dir / "fifo.wav")
        out = out_dir / "fifo.wav"
    keep = {p.name for p in out_dir.iterdir()}
    code, err = run_main(_args(model=model, mixture=mixture, voiceprint=vp, visual=vis, out=out), capsys)
    if ok:
        keep.add(Path(out).name)
    assert_clean(code, err, ok, out_dir, sandbox[1], keep)
    assert mixture.read_bytes() == before, "the input was overwritten"
    if not ok:
        assert "out:" in err or "--out" in err


@pytest.mark.parametrize("backend", BACKENDS)
def test_replacing_an_output_keeps_its_mode(backend, models, files, sandbox, capsys):
    out_dir, tmp = sandbox
    out = out_dir / "y.wav"
    out.write_bytes(b"old")
    os.chmod(out, 0o600)
    code, err = run_main(_args(model=models[backend], mixture=files["mixture"], voiceprint=files["voiceprint"],
                               visual=files["visual"], out=out), capsys)
    assert_clean(code, err, True, out_dir, tmp, ("y.wav",))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.read_bytes() != b"old"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_new_output_follows_the_umask(backend, models, files, sandbox, capsys):
    out_dir, tmp = sandbox
    old = os.umask(0o027)
    try:
        code, err = run_main(_args(model=models[backend], mixture=files["mixture"], voiceprint=files["voiceprint"],
                                   visual=files["visual"], out=out_dir / "y.wav"), capsys)
    finally:
        os.umask(old)
    assert_clean(code, err, True, out_dir, tmp, ("y.wav",))
    assert stat.S_IMODE((out_dir / "y.wav").stat().st_mode) == 0o640


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_read_only_output_directory_is_refused_before_the_run(backend, models, files, sandbox, capsys,
                                                                 monkeypatch):
    """A read-only mount (EROFS; root ignores chmod, so the file system's answer is simulated)."""
    import errno
    out_dir, tmp = sandbox
    real = tempfile.mkstemp

    def read_only(*args, dir=None, **kw):
        if dir is not None and Path(dir) == out_dir:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real(*args, dir=dir, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    err = case(backend, models, files, sandbox, capsys, False, ("Read-only file system",))
    assert "out: cannot write in" in err


def test_a_full_disk_is_one_line(models, files, sandbox, capsys, monkeypatch):
    """The write of the output fails half-way (ENOSPC): one line, nothing left."""
    out_dir, tmp = sandbox
    real = sf.SoundFile.write
    calls = []

    def full(self, data):
        calls.append(1)
        if len(calls) > 1:
            raise sf.LibsndfileError(0, "Error writing: No space left on device")
        return real(self, data)

    monkeypatch.setattr(sf.SoundFile, "write", full)
    code, err = run_main(_args(model=models["native"], mixture=_wav(out_dir.parent, "long.wav", speech_like(2, 2.0)),
                               voiceprint=files["voiceprint"], out=out_dir / "y.wav", window=0.4, overlap=0.08),
                       capsys)
    assert_clean(code, err, False, out_dir, tmp)
    assert "No space left" in err


# ---------------------------------------------------------------- models: onnx

def _onnx_model(path: Path, body: str):
    """A graph with LiMuSE's inputs whose output `target` is wrong in the way `body` says."""
    import onnx
    from onnx import TensorProto, helper
    inputs = [helper.make_tensor_value_info("mixture", TensorProto.FLOAT, ["B", 2, "S"]),
              helper.make_tensor_value_info("voiceprint", TensorProto.FLOAT, ["B", 512]),
              helper.make_tensor_value_info("visual", TensorProto.FLOAT, ["B", "V", 256])]
    inits = [helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
             helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
             helper.make_tensor("starts", TensorProto.INT64, [1], [0]),
             helper.make_tensor("ends", TensorProto.INT64, [1], [100]),
             helper.make_tensor("last", TensorProto.INT64, [1], [2])]
    nodes = [helper.make_node("ReduceMean", ["mixture", "axes"], ["mono"], keepdims=0)]
    if body == "nan":
        nodes.append(helper.make_node("Div", ["zero", "zero"], ["nan"]))
        nodes.append(helper.make_node("Add", ["mono", "nan"], ["target"]))
    elif body == "short":
        nodes.append(helper.make_node("Slice", ["mono", "starts", "ends", "axes"], ["target"]))
    elif body == "inf":
        nodes.append(helper.make_node("Div", ["mono", "zero"], ["target"]))
    elif body.startswith("voiceprint_version="):  # a plain model that records another extractor version
        nodes.append(helper.make_node("Identity", ["mono"], ["target"]))
    output = helper.make_tensor_value_info("target", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "hostile", inputs, [output], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    if body.startswith("voiceprint_version="):
        helper.set_model_props(model, {"voiceprint_version": body.split("=", 1)[1]})
    onnx.save(model, str(path))
    return path


ONNX_MODELS = {
    "nan_output": (lambda d: _onnx_model(d / "nan.onnx", "nan"), ("NaN or Inf",)),
    "inf_output": (lambda d: _onnx_model(d / "inf.onnx", "inf"), ("NaN or Inf",)),
    "short_output": (lambda d: _onnx_model(d / "short.onnx", "short"), ("returned shape (100,)",)),
    "voiceprint_version_2": (lambda d: _onnx_model(d / "v2.onnx", "voiceprint_version=2"),
                             ("trained on voiceprint extractor version 2",)),
    "voiceprint_version_text": (lambda d: _onnx_model(d / "vx.onnx", "voiceprint_version=two"),
                                ("voiceprint version 'two'",)),
    "garbage": (_bytes("g.onnx", b"\x08\x07garbage" * 50), ("cannot load",)),
    "empty_file": (_bytes("e.onnx", b""), ("cannot load",)),
    "truncated": (None, ()),
    "missing": (lambda d: d / "absent.onnx", ("no such file",)),
    "directory": (lambda d: d, ()),
}


@pytest.mark.parametrize("name", sorted(ONNX_MODELS))
def test_onnx_models(name, models, files, sandbox, capsys, tmp_path):
    make, words = ONNX_MODELS[name]
    if name == "truncated":
        data = Path(models["onnx"]).read_bytes()
        (tmp_path / "t.onnx").write_bytes(data[: len(data) // 3])
        model = tmp_path / "t.onnx"
    else:
        model = make(tmp_path)
    case("onnx", models, files, sandbox, capsys, False, words, model=model)


# ---------------------------------------------------------------- models: packed

def _sections(data: bytes) -> list:
    count = struct.unpack_from("<I", data, 20)[0]
    out = []
    for i in range(count):
        tag, offset, length = struct.unpack_from("<4sII", data, 24 + 12 * i)
        out.append([tag, bytes(data[offset:offset + length])])
    return out


def _seal(sections: list) -> bytes:
    """A packed file of these sections with a valid size and CRC (FORMAT.md: header, table, sections)."""
    table, body = b"", b""
    offset = 24 + 12 * len(sections)
    for tag, payload in sections:
        table += struct.pack("<4sII", tag, offset + len(body), len(payload))
        body += payload
    rest = struct.pack("<I", len(sections)) + table + body
    head = b"LIMUSEPK" + struct.pack("<II", 3, 20 + len(rest))
    return head + struct.pack("<I", zlib.crc32(rest) & 0xFFFFFFFF) + rest


def _varint(v: int) -> bytes:
    z, out = (v << 1) ^ (v >> 63), b""
    while True:
        byte = z & 0x7F
        z >>= 7
        out += bytes([byte | (0x80 if z else 0)])
        if not z:
            return out


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    z, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        z |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return (z >> 1) ^ -(z & 1), at


def _output_value(vals: bytes) -> int:
    """The VALS section's last varint: the output value id."""
    at = len(vals) - 1
    while at > 0 and vals[at - 1] & 0x80:
        at -= 1
    return _read_varint(vals, at)[0]


def _conf(data: bytes, edit) -> bytes:
    secs = _sections(data)
    secs[0][1] = edit(secs[0][1].decode()).encode("utf-8", "surrogateescape")
    return _seal(secs)


def _many_records(data: bytes, n: int = 50_000) -> bytes:
    """A CRC-valid model whose program is n ZERO kernels (4 bytes each) on the output: amplification."""
    secs = _sections(data)
    zero = _varint(11) + _varint(0) + _varint(1) + _varint(_output_value(secs[1][1]))
    secs[2][1] = _varint(n) + zero * n
    return _seal(secs)


def _arena(data: bytes, elements: int = 1 << 31) -> bytes:
    """A CRC-valid model whose VALS asks for an arena of `elements` (8 GB of activations from 5 bytes)."""
    secs = _sections(data)
    vals = secs[1][1]
    n_values, at = _read_varint(vals, 0)
    _, rest = _read_varint(vals, at)
    secs[1][1] = _varint(n_values) + _varint(elements) + vals[rest:]
    return _seal(secs)


def _flip(at_fraction: float, reseal: bool):
    def damage(data: bytes) -> bytes:
        d = bytearray(data)
        d[int(len(d) * at_fraction)] ^= 0xFF
        if not reseal:
            return bytes(d)
        return _seal(_sections(bytes(d)))
    return damage


PACKED = {
    # name: (damage, words)
    "conf_inputs_shorter": (lambda d: _conf(d, lambda c: c.replace('"mixture": [1, 2, 6400]',
                                                                   '"mixture": [1, 2, 640]')),
                            ("CONF's inputs and the value table disagree on mixture",)),
    "conf_inputs_renamed": (lambda d: _conf(d, lambda c: c.replace('"voiceprint": [1, 512]', '"speaker": [1, 512]')),
                            ("CONF section",)),
    "conf_input_dropped": (lambda d: _conf(d, lambda c: c.replace(', "voiceprint": [1, 512]', '')), ("voiceprint",)),
    "conf_visual_frames": (lambda d: _conf(d, lambda c: c.replace('[1, 10, 256]', '[1, 100, 256]')), ("visual",)),
    "conf_window": (lambda d: _conf(d, lambda c: c.replace('"window_samples": 6400', '"window_samples": 64000')),
                    ("window_samples",)),
    "conf_channels": (lambda d: _conf(d, lambda c: c.replace('"mic_channels": 2', '"mic_channels": 3')),
                      ("mic_channels",)),
    "conf_not_json": (lambda d: _conf(d, lambda c: c[: len(c) // 2]), ("CONF section",)),
    "conf_empty_object": (lambda d: _conf(d, lambda c: "{}"), ("CONF section",)),
    "conf_list": (lambda d: _conf(d, lambda c: "[1, 2, 3]"), ("CONF section",)),
    "conf_nan": (lambda d: _conf(d, lambda c: c.replace('"sample_rate": 16000', '"sample_rate": NaN')),
                 ("CONF section",)),
    "conf_float_dim": (lambda d: _conf(d, lambda c: c.replace('[1, 512]', '[1, 512.0]')), ("CONF section",)),
    "conf_duplicate_key": (lambda d: _conf(d, lambda c: c.replace('{"inputs"', '{"mic_channels": 2, "inputs"')),
                           ("CONF section",)),
    "conf_nul": (lambda d: _conf(d, lambda c: c + "\x00"), ("CONF section",)),
    "conf_bad_utf8": (lambda d: _conf(d, lambda c: c.replace('"tiny"', '"ti\udcffny"')), ("CONF",)),
    "conf_deep": (lambda d: _conf(d, lambda c: c[:-1] + ', "x": ' + "[" * 5000 + "]" * 5000 + "}"),
                  ("CONF section",)),
    "conf_voiceprint_version_2": (lambda d: _conf(d, lambda c: c[:-1] + ', "voiceprint_version": 2}'),
                                  ("trained on voiceprint extractor version 2",)),
    "many_records": (_many_records, ("kernel records",)),
    "arena_amplified": (_arena, ("arena of 2147483648 elements",)),
    "window_amplified": (lambda d: _conf(d, lambda c: c.replace('"window_samples": 6400',
                                                                '"window_samples": 96000000')), ("window_samples",)),
    "truncated": (lambda d: d[: len(d) // 2], ("truncated",)),
    "flipped_byte": (_flip(0.5, False), ("checksum",)),
    "flipped_header_crc": (_flip(16 / 25545, False), ("checksum",)),
    "no_sections": (lambda d: _seal([]), ("section",)),
    "foreign_magic": (lambda d: b"NOTPACKD" + d[8:], ("cannot load",)),
    "other_version": (lambda d: d[:8] + struct.pack("<I", 2) + d[12:], ("version 2",)),
    "program_cut": (lambda d: _seal([s if s[0] != b"PROG" else [s[0], s[1][: len(s[1]) // 2]] for s in _sections(d)]),
                    ("packed model",)),
    "values_cut": (lambda d: _seal([s if s[0] != b"VALS" else [s[0], s[1][:-3]] for s in _sections(d)]),
                   ("value table",)),
}


@pytest.mark.parametrize("name", sorted(PACKED))
def test_packed_models(name, models, files, sandbox, capsys, tmp_path):
    damage, words = PACKED[name]
    bad = tmp_path / "bad.packed.bin"
    bad.write_bytes(damage(Path(models["native"]).read_bytes()))
    case("native", models, files, sandbox, capsys, False, words, model=bad)


def test_the_engine_never_reads_past_the_callers_arrays(models):
    """The C API takes each array's size: a mixture one float short is refused, not over-read."""
    from limuse_runtime.native.binding import ERR_LEN, Buffers, NativeModel
    model = NativeModel(models["native"])
    arrays = [np.zeros(model._lib.lmn_input_elements(model._handle, i), np.float32) for i in range(3)]
    out = np.zeros(model._lib.lmn_output_samples(model._handle), np.float32)
    buffers = Buffers()
    for i, a in enumerate(arrays):
        buffers.inputs[i], buffers.input_elements[i] = a.ctypes.data, a.size
    buffers.out, buffers.out_elements = out.ctypes.data, out.size
    err = ctypes.create_string_buffer(ERR_LEN)
    assert model._lib.lmn_run(model._handle, ctypes.byref(buffers), 1, err, ERR_LEN) == 0
    buffers.input_elements[0] = arrays[0].size - 1
    assert model._lib.lmn_run(model._handle, ctypes.byref(buffers), 1, err, ERR_LEN) != 0
    assert b"mixture of 12799 floats; this model expects 12800" in err.value
    buffers.input_elements[0], buffers.out_elements = arrays[0].size, out.size - 1
    assert model._lib.lmn_run(model._handle, ctypes.byref(buffers), 1, err, ERR_LEN) != 0


# ---------------------------------------------------------------- enrolment and the golden sub-command

ENROLL = ("good", "same_as_reference", "symlink_to_reference", "hard_link_to_reference", "truncated_reference",
          "existing_directory")


@pytest.mark.parametrize("name", ENROLL)
def test_enroll(name, sandbox, capsys):
    from limuse_edge.data.talker import grid_sentence, make_speaker, synthesize
    out_dir, tmp = sandbox
    rng = np.random.default_rng(1)
    talk = synthesize(make_speaker("s1", "m", rng), grid_sentence(rng)[1], 24000, rng)
    ref = _wav(out_dir, "ref.wav", talk[None], subtype="PCM_16")
    before = ref.read_bytes()
    out, ok, keep = out_dir / "vp.npy", name in ("good", "truncated_reference"), {"ref.wav"}
    if name == "same_as_reference":
        out = ref
    elif name == "symlink_to_reference":
        (out_dir / "l.npy").symlink_to(ref)
        out, keep = out_dir / "l.npy", keep | {"l.npy"}
    elif name == "hard_link_to_reference":
        os.link(ref, out_dir / "h.npy")
        out, keep = out_dir / "h.npy", keep | {"h.npy"}
    elif name == "truncated_reference":
        ref.write_bytes(before[:-3001])
        before = ref.read_bytes()
    elif name == "existing_directory":
        (out_dir / "vp.npy").mkdir()
        keep.add("vp.npy")
    if ok:
        keep.add("vp.npy")
    code, err = run_main(["enroll", "--reference", ref, "--out", out], capsys)
    assert_clean(code, err, ok, out_dir, tmp, keep)
    assert ref.read_bytes() == before
    if name == "truncated_reference":
        assert "truncated" in err and "3001 are missing" in err


def test_golden_without_the_onnx_package_is_one_line(sandbox, capsys, monkeypatch, files):
    out_dir, tmp = sandbox
    for name in [m for m in sys.modules if m == "onnx" or m.startswith("onnx.") or
                 m.startswith("limuse_runtime.golden")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ModuleNotFoundError
    code, err = run_main(["golden", "--model", files["dir"] / "x.qonnx.onnx", "--mixture", files["mixture"],
                          "--out", out_dir / "y.wav"], capsys)
    assert_clean(code, err, False, out_dir, tmp)
    assert "'onnx' is not installed" in err


# ---------------------------------------------------------------- signals (a real process)

@pytest.fixture(scope="module")
def long_mixture(tmp_path_factory):
    """A minute at 44.1 kHz: the run converts it (--resample) into $TMPDIR, then separates it for long
    enough to be stopped half-way."""
    path = tmp_path_factory.mktemp("long") / "long44.wav"
    x = np.tile(speech_like(2, 1.0), (1, 60))
    sf.write(str(path), x.T, 44100, subtype="PCM_16")
    return path


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=["TERM", "HUP", "INT"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_signals_leave_nothing_behind(backend, signum, models, files, long_mixture, tmp_path):
    out_dir, tmp = tmp_path / "out", tmp_path / "tmp"
    out_dir.mkdir()
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "limuse_runtime.cli", *_args(model=models[backend], mixture=long_mixture,
                                                              voiceprint=files["voiceprint"], resample=True,
                                                              out=out_dir / "y.wav")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    def partial() -> bool:  # the output's temporary file exists: the separation has started
        return any(p.name.startswith(".y.wav.") for p in out_dir.iterdir())

    while not partial() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be stopped"
    assert any(p.name.startswith("limuse_run_") for p in tmp.iterdir()), "no converted copy in $TMPDIR"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"stopped by {signal.Signals(signum).name}" in err
    # .ses: onnxruntime's native library writes its session id there when it loads (once per $TMPDIR,
    # whatever the run does): not a leftover of the run
    assert list(out_dir.iterdir()) == [] and [p.name for p in tmp.iterdir() if p.name != ".ses"] == []


# ---------------------------------------------------------------- the fuzz target: load plus one run

def test_the_fuzz_corpus_starts_from_a_model_that_loads_and_runs():
    """The corpus holds the tiny model and crafted variants of it (FORMAT.md), so that the replay under the
    sanitizers (test_native_loader.py) and every fuzzing run reach lmn_run."""
    from limuse_runtime.native.binding import NativeError, NativeModel
    from limuse_runtime.native.build import HERE
    corpus = HERE / "fuzz_corpus"
    model = NativeModel(corpus / "tiny_model.packed.bin")
    shapes = model.input_shapes
    y = model.run(np.zeros(shapes["mixture"][1:], np.float32), _unit(), np.zeros(shapes["visual"][1:], np.float32))
    assert y.shape == (model.window,) and np.isfinite(y).all()
    for name, words in (("tiny_conf_inputs_shorter", "disagree on mixture"), ("tiny_conf_not_json", "CONF section"),
                        ("tiny_many_records", "kernel records")):
        with pytest.raises(NativeError, match=words):
            NativeModel(corpus / f"{name}.packed.bin")


def test_a_short_libfuzzer_run_finds_nothing(tmp_path):
    """libFuzzer (clang only) with AddressSanitizer and UndefinedBehaviorSanitizer: 20 s from the corpus."""
    from system_tools import require
    from limuse_runtime.native.build import HERE, SOURCES
    clang = require("clang")["clang"]  # the corpus replay (gcc) runs without it
    fuzzer = tmp_path / "fuzz_loader"
    subprocess.run([clang, "-std=c99", "-g", "-O1", "-fsanitize=fuzzer,address,undefined",
                    "-fno-sanitize-recover=all", "-ffp-contract=off", "-o", str(fuzzer),
                    *[str(HERE / s) for s in SOURCES + ("fuzz_loader.c",)], "-lm"], check=True)
    work = tmp_path / "corpus"
    shutil.copytree(HERE / "fuzz_corpus", work)
    # Any one allocation over 1 GB is a finding (a small file that takes gigabytes); the process as a whole
    # may grow past that with ASan's quarantine and the corpus in memory, which is not.
    result = subprocess.run([str(fuzzer), "-max_total_time=20", "-malloc_limit_mb=1024", "-rss_limit_mb=2048",
                             str(work)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]


def test_a_model_without_a_recorded_voiceprint_version_runs_and_version_1_is_accepted(models, files, sandbox, capsys,
                                                                                     tmp_path):
    """Exports made before the version was recorded (none) and exports of this extractor (1) both run."""
    v1 = tmp_path / "v1.packed.bin"
    v1.write_bytes(_conf(Path(models["native"]).read_bytes(), lambda c: c[:-1] + ', "voiceprint_version": 1}'))
    case("native", models, files, sandbox, capsys, True, model=v1)
