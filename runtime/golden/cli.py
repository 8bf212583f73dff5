"""limuse-run golden: run the bit-exact integer engine on one input, write the waveform and/or the
per-layer test vectors.

The QONNX file is static (one window, 3 s from the main job). A recording of another length runs in
windows of that length (limuse_runtime.streaming.fixed_length_windows: zero-padded when shorter, windows
every half window cross-faded when longer); --dump needs a recording of exactly the file's length.

    limuse-run golden --model M.qonnx.onnx --mixture mix.wav [--voiceprint vp.npy] [--visual lips.npy]
                      [--out target.wav] [--dump DIR]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from limuse_runtime.contract import (MIXTURE, SAMPLE_RATE, SAMPLES_PER_VIDEO_FRAME, VISUAL, VISUAL_DIM, VOICEPRINT,
                                     atomic_path, load_visual, load_voiceprint, n_video_frames)
from limuse_runtime.errors import ArgumentParser, InputError


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="limuse-run golden", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="QONNX export (power-of-two scales) of a quantized LiMuSE")
    parser.add_argument("--mixture", required=True, help="16 kHz wav with the model's microphone channels")
    parser.add_argument("--voiceprint", help="(512,) .npy speaker embedding, if the model has that cue")
    parser.add_argument("--visual", help="(frames, 256) .npy lip features at 25 fps; missing means no face")
    parser.add_argument("--out", help="output wav (mono, 16 kHz, float)")
    parser.add_argument("--dump", help="new directory for the per-layer test vectors (.npy + index.json)")
    return parser


def run_golden_cli(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not args.out and not args.dump:
            raise InputError("golden: nothing to write; expected --out target.wav and/or --dump DIR")
        if args.out and not Path(args.out).parent.is_dir():
            raise InputError(f"out: directory {str(Path(args.out).parent)!r} does not exist")
        from limuse_runtime.golden.dump import write_dump
        from limuse_runtime.golden.engine import GoldenEngine, Trace
        engine = GoldenEngine(args.model)
        inputs = _read_inputs(args, engine)
        trace = Trace(keep_codes=bool(args.dump))
        started = time.perf_counter()
        target = _run_windows(engine, inputs, trace, dump=bool(args.dump))
        wall = time.perf_counter() - started
        if args.out:
            _write_wav(args.out, np.asarray(target, np.float32).reshape(-1))
        if args.dump:
            write_dump(trace, args.dump, model=str(args.model))
    except InputError as exc:
        print(f"limuse-run golden: error: {exc}", file=sys.stderr)
        return 2
    written = " ".join(f"-> {p}" for p in (args.out, args.dump) if p)
    print(f"golden: {len(engine.layers)} integer layers, max |acc| {trace.max_accumulator} "
          f"(int32 max {2 ** 31 - 1}), wall {wall:.3f} s {written}")
    return 0


def _run_windows(engine, inputs: dict, trace, dump: bool) -> np.ndarray:
    from limuse_runtime.streaming import fixed_length_windows, visual_for
    window = engine.graph.input_shapes[MIXTURE][2]
    mixture = inputs[MIXTURE][0]
    n_samples = mixture.shape[1]
    if not window or n_samples == window:
        return np.asarray(next(iter(engine.run(inputs, trace).values())), np.float32).reshape(-1)
    if dump:
        raise InputError(f"--dump: the recording has {n_samples} samples, the QONNX file takes exactly {window}; "
                         f"expected a recording of {window} samples ({window / SAMPLE_RATE:.2f} s) for test vectors")
    visual = inputs[VISUAL][0] if VISUAL in inputs else None
    frames = engine.graph.input_shapes[VISUAL][1] if VISUAL in inputs else 0

    def run(start: int) -> np.ndarray:
        chunk = mixture[:, start:start + window]
        window_inputs = dict(inputs, **{MIXTURE: np.pad(chunk, ((0, 0), (0, window - chunk.shape[1])))[None]})
        if visual is not None:
            first = start // SAMPLES_PER_VIDEO_FRAME
            window_inputs[VISUAL] = visual_for(visual, first * SAMPLES_PER_VIDEO_FRAME,
                                               (first + frames) * SAMPLES_PER_VIDEO_FRAME)[None]
        return np.asarray(next(iter(engine.run(window_inputs, trace).values())), np.float32).reshape(-1)
    return fixed_length_windows(run, n_samples, window)


def _read_inputs(args, engine) -> dict:
    names = engine.input_names
    mixture_shape = engine.graph.input_shapes.get(MIXTURE)
    if MIXTURE not in names or mixture_shape is None or len(mixture_shape) != 3:
        raise InputError(f"model: inputs {list(names)}; expected a LiMuSE export with input '{MIXTURE}' (B, C, S)")
    mixture = _read_mixture(args.mixture, mixture_shape)
    inputs = {MIXTURE: mixture[None]}
    for name, path, loader in ((VOICEPRINT, args.voiceprint, load_voiceprint), (VISUAL, args.visual, load_visual)):
        if name == VISUAL and name in names and path is None:  # no face: an all-zero track, as the other backends
            inputs[name] = np.zeros((1, n_video_frames(mixture.shape[1]), VISUAL_DIM), np.float32)
            continue
        if name in names and path is None:
            raise InputError(f"{name}: missing; this model expects --{name}")
        if name not in names and path is not None:
            raise InputError(f"{name}: this model has no {name} input (inputs: {list(names)}); drop --{name}")
        if path is not None:
            inputs[name] = loader(path)[None]
    return inputs


def _read_mixture(path: str, shape: tuple) -> np.ndarray:
    channels = shape[1]
    expected = f"a {SAMPLE_RATE} Hz wav with {channels} channels"
    if not Path(path).is_file():
        raise InputError(f"mixture: no such file {path!r}; expected {expected}")
    try:
        samples, rate = sf.read(path, dtype="float32", always_2d=True)
    except Exception:  # libsndfile reports unreadable files as several exception types
        raise InputError(f"mixture: cannot read {path!r} as audio; expected {expected}") from None
    if rate != SAMPLE_RATE or samples.shape[1] != channels:
        raise InputError(f"mixture: {rate} Hz, {samples.shape[1]} channels; expected {expected}")
    return samples.T


def _write_wav(path: str, samples: np.ndarray) -> None:
    with atomic_path(path, suffix=".wav") as tmp:
        sf.write(str(tmp), samples, SAMPLE_RATE, subtype="FLOAT", format="WAV")
