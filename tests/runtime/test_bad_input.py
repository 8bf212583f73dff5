"""Every bad input is rejected before any output exists: one line naming the problem and the expected
form, exit code != 0, and no file (not even a temporary one) left in the output directory."""
from __future__ import annotations

import numpy as np
import pytest

from synthetic_audio import speech_like, write_wav
from limuse_runtime.cli import main


@pytest.fixture
def inputs(tmp_path):
    mixture = write_wav(tmp_path / "mix.wav", speech_like(2, 1.0))
    voiceprint = tmp_path / "vp.npy"
    np.save(voiceprint, np.ones(512, np.float32))
    visual = tmp_path / "vis.npy"
    np.save(visual, np.zeros((25, 256), np.float32))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    return {"mixture": mixture, "voiceprint": voiceprint, "visual": visual, "out": out_dir / "target.wav"}


def corrupt(tmp_path, name: str, content: bytes = b"this is not what you think it is\n" * 8):
    path = tmp_path / name
    path.write_bytes(content)
    return path


def with_nan(tmp_path, value):
    samples = speech_like(2, 12.0)  # beyond the first window and the first read block
    samples[1, 180_000] = value
    return write_wav(tmp_path / "bad.wav", samples)


def npy(tmp_path, name, array):
    np.save(tmp_path / name, array)
    return tmp_path / name


BAD_INPUTS = {
    # name: (how to spoil the inputs, words the message must contain)
    "sample_rate": (lambda p: {"mixture": write_wav(p / "m8k.wav", speech_like(2, 1.0)[:, :8000], rate=8000)},
                    ["sample rate 8000 Hz", "16000 Hz", "2 channels"]),
    "mono": (lambda p: {"mixture": write_wav(p / "mono.wav", speech_like(1, 1.0))}, ["1 channel", "2 channels"]),
    "nan": (lambda p: {"mixture": with_nan(p, np.nan)}, ["NaN or Inf", "finite"]),
    "inf": (lambda p: {"mixture": with_nan(p, np.inf)}, ["NaN or Inf", "finite"]),
    "empty": (lambda p: {"mixture": write_wav(p / "empty.wav", np.zeros((2, 0), np.float32))},
              ["0 samples", "at least 640 samples"]),
    "too_short": (lambda p: {"mixture": write_wav(p / "short.wav", speech_like(2, 0.01))},
                  ["160 samples", "at least 640 samples"]),
    "visual_feature_dim": (lambda p: {"visual": npy(p, "v128.npy", np.zeros((25, 128), np.float32))},
                           ["visual: got shape (25, 128)", "(frames, 256)"]),
    "visual_frames": (lambda p: {"visual": npy(p, "v200.npy", np.zeros((200, 256), np.float32))},
                      ["200 frames", "about 25 frames"]),
    "voiceprint_shape": (lambda p: {"voiceprint": npy(p, "vp256.npy", np.zeros(256, np.float32))},
                         ["voiceprint: got shape (256,)", "(512,)"]),
    "voiceprint_nan": (lambda p: {"voiceprint": npy(p, "vpnan.npy", np.full(512, np.nan, np.float32))},
                       ["NaN or Inf"]),
    "voiceprint_missing": (lambda p: {"voiceprint": None}, ["voiceprint: missing", "(512,)"]),
    "mixture_unreadable": (lambda p: {"mixture": corrupt(p, "noise.wav")}, ["cannot read", "16000 Hz wav"]),
    "mixture_missing": (lambda p: {"mixture": p / "nowhere.wav"}, ["no such file", "16000 Hz wav"]),
    "voiceprint_unreadable": (lambda p: {"voiceprint": corrupt(p, "vp.npy")}, ["cannot read", ".npy"]),
    "visual_unreadable": (lambda p: {"visual": corrupt(p, "vis.npy")}, ["cannot read", ".npy"]),
    "model_not_onnx": (lambda p: {"model": corrupt(p, "model.onnx")}, ["cannot load", "as ONNX", ".onnx"]),
    "model_missing": (lambda p: {"model": p / "absent.onnx"}, ["no such file", ".onnx"]),
    "out_dir_missing": (lambda p: {"out": p / "no" / "dir" / "t.wav"}, ["does not exist", "existing directory"]),
    "threads": (lambda p: {"threads": 0}, ["threads: got 0", "positive integer"]),
    "window": (lambda p: {"window": 1.0, "overlap": 0.9}, ["overlap", "half"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_rejected(case, inputs, tiny_float_onnx, tmp_path, capsys):
    spoil, words = BAD_INPUTS[case]
    args = {**inputs, "model": tiny_float_onnx, **spoil(tmp_path)}
    argv = [item for key, value in args.items() if value is not None for item in (f"--{key}", str(value))]

    code = main(argv)

    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1, err
    assert err.startswith("limuse-run: error: ")
    for word in words:
        assert word in err, err
    assert not args["out"].exists()
    assert list(inputs["out"].parent.iterdir()) == []  # no temporary file either
