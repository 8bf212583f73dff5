"""limuse-run enroll: a speaker's voiceprint from enrolment recordings, on the board (numpy, soundfile).

    limuse-run enroll --reference speaker.wav [more.wav ...] --out vp.npy [--resample]

The extractor is limuse_runtime.voiceprint, the one the corpus builder uses, so one 16 kHz reference
gives exactly the vector the builder stores in grid_vp.pkl for the same wav. Several references: the
mean of their voiceprints, L2-normalised. A reference must be mono, at least 0.5 s long and contain
voiced speech (the extractor's pitch tracker finds voiced frames).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from limuse_runtime.contract import SAMPLE_RATE, atomic_path, check_output_path, probe_output_dir
from limuse_runtime.errors import ArgumentParser, InputError
from limuse_runtime.recording import wav_missing_bytes

MIN_REFERENCE_S = 0.5
SILENT_PEAK = 10 ** (-60 / 20)  # -60 dBFS: digital silence or a muted microphone


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="limuse-run enroll", description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, nargs="+", help="mono wav(s) of the speaker alone, >= 0.5 s")
    parser.add_argument("--out", required=True, help="output .npy, shape (512,) float32")
    parser.add_argument("--resample", action="store_true", help="convert references that are not 16 kHz")
    return parser


def read_reference(path: "str | Path", resample: bool = False) -> np.ndarray:
    """The float64 samples of a mono 16 kHz enrolment wav, checked (as the builder reads them)."""
    from limuse_runtime.recording import check_resample_rate
    from limuse_runtime.recording import resample as to_16k
    path = Path(path)
    expected = f"a mono {SAMPLE_RATE} Hz wav of the speaker talking, at least {MIN_REFERENCE_S} s"
    if not path.is_file():
        raise InputError(f"reference: no such file {str(path)!r}; expected {expected}")
    try:
        samples, rate = sf.read(str(path), dtype="float64", always_2d=True)
    except Exception:  # libsndfile reports unreadable files as several exception types
        raise InputError(f"reference: cannot read {str(path)!r} as audio; expected {expected}") from None
    if samples.shape[1] != 1:
        raise InputError(f"reference: {str(path)!r} has {samples.shape[1]} channels; expected {expected}")
    if rate != SAMPLE_RATE:
        if not resample:
            raise InputError(f"reference: {str(path)!r} is at {rate} Hz; expected {expected} (or pass --resample)")
        check_resample_rate(rate, f"reference {str(path)!r}")
        samples = to_16k(samples, rate)
    wave = samples[:, 0]
    if not np.isfinite(wave).all():
        raise InputError(f"reference: {str(path)!r} contains NaN or Inf; expected finite samples")
    if len(wave) < MIN_REFERENCE_S * SAMPLE_RATE:
        raise InputError(f"reference: {str(path)!r} lasts {len(wave) / SAMPLE_RATE:.2f} s; expected {expected}")
    return wave


def enroll(waves: list[np.ndarray], names: list[str]) -> np.ndarray:
    from limuse_runtime.voiceprint import pitch_track, voiceprint
    vectors = []
    for wave, name in zip(waves, names):
        peak = float(np.abs(wave).max())
        if peak < SILENT_PEAK:
            raise InputError(f"reference: {name!r} is silent (peak {20 * np.log10(max(peak, 1e-12)):.0f} dBFS); "
                             f"expected a recording of the speaker talking")
        if not len(pitch_track(wave)):
            raise InputError(f"reference: no voiced speech found in {name!r}; expected a recording of the "
                             f"speaker talking")
        vectors.append(voiceprint(wave))
    if len(vectors) == 1:
        return vectors[0]
    mean = np.mean(vectors, axis=0, dtype=np.float64)
    return (mean / np.linalg.norm(mean)).astype(np.float32)


def run_enroll_cli(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_output_path(args.out, args.reference)
        out = Path(args.out)
        if not out.parent.is_dir():
            raise InputError(f"out: directory {str(out.parent)!r} does not exist; expected a path to a .npy file "
                             f"in an existing directory")
        probe_output_dir(out)
        waves = [read_reference(path, args.resample) for path in args.reference]
        vector = enroll(waves, list(args.reference))
        with atomic_path(out, suffix=".npy") as tmp:
            np.save(tmp, vector, allow_pickle=False)
    except InputError as exc:
        print(f"limuse-run enroll: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    for path in args.reference:
        truncated = wav_missing_bytes(path)
        if truncated:  # README: a cut-off recording is used as far as it goes, with this one warning
            print(f"limuse-run enroll: warning: reference {path!r} is truncated: its data chunk declares "
                  f"{truncated[0]} bytes and the last {truncated[1]} are missing; used the samples present",
                  file=sys.stderr)
            break
    total = sum(len(w) for w in waves) / SAMPLE_RATE
    print(f"voiceprint of {len(waves)} reference(s), {total:.1f} s of audio -> {out}")
    return 0
