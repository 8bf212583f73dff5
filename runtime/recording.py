"""Real recordings into the form the model takes: 16 kHz, the model's microphones.

`--resample` converts another sample rate to 16 kHz with soxr (a small, well-kept resampler; its
'HQ' quality); `--channels 0,1` picks the model's microphones out of a wider array. Either writes the
converted mixture, block by block, to a temporary 16 kHz wav that the windowed inference then reads
like any other (memory does not grow with duration; the file takes 64 kB per second per channel).
Without these options a mismatching file is refused, and the message names the option that fixes it.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from limuse_runtime.contract import SAMPLE_RATE
from limuse_runtime.errors import InputError

# Below 8 kHz the band that carries speech intelligibility (up to 4 kHz) is already lost.
MIN_RESAMPLE_RATE = 8000
_BLOCK = 1 << 16


def parse_channels(text: str) -> tuple[int, ...]:
    """'0,1' -> (0, 1)."""
    try:
        channels = tuple(int(part) for part in text.split(","))
    except ValueError:
        channels = ()
    if not channels or any(c < 0 for c in channels) or len(set(channels)) != len(channels):
        raise InputError(f"--channels: got {text!r}; expected distinct channel indices of the file, "
                         f"comma-separated, counted from 0 (e.g. 0,1)")
    return channels


def check_resample_rate(rate: int, what: str) -> None:
    if rate < MIN_RESAMPLE_RATE:
        raise InputError(f"{what}: sample rate {rate} Hz is below {MIN_RESAMPLE_RATE} Hz; --resample expects a "
                         f"recording at {MIN_RESAMPLE_RATE} Hz or more (speech up to 4 kHz)")


def resample(samples: np.ndarray, rate: int) -> np.ndarray:
    """(S, C) or (S,) float at `rate` -> the same at 16 kHz (in memory: for short enrolment recordings)."""
    import soxr
    return samples if rate == SAMPLE_RATE else soxr.resample(samples, rate, SAMPLE_RATE, quality="HQ")


@contextlib.contextmanager
def model_input(path: "str | Path", channels: "tuple[int, ...] | None", resample_to_16k: bool) -> Iterator[Path]:
    """Yields `path` itself when it needs no conversion, else a temporary converted 16 kHz wav.
    Files that cannot be read are yielded as they are: the mixture checks report them."""
    path = Path(path)
    try:
        info = sf.info(str(path))
    except Exception:  # missing or not audio: streaming.check_mixture_file says which
        yield path
        return
    if channels is not None:
        beyond = [c for c in channels if c >= info.channels]
        if beyond:
            raise InputError(f"--channels: index {beyond[0]} is beyond the {info.channels} channel(s) of "
                             f"{str(path)!r}; expected indices 0..{info.channels - 1}")
    converting_rate = resample_to_16k and info.samplerate != SAMPLE_RATE
    if converting_rate:
        check_resample_rate(info.samplerate, "mixture")
    picking = channels is not None and channels != tuple(range(info.channels))
    if not converting_rate and not picking:
        yield path
        return
    picked = list(channels) if channels is not None else list(range(info.channels))
    with tempfile.TemporaryDirectory(prefix="limuse_run_") as tmp:
        converted = Path(tmp) / "mixture_16k.wav"
        _convert(path, converted, info.samplerate if converting_rate else SAMPLE_RATE, picked)
        yield converted


def wav_missing_bytes(path: "str | Path") -> "tuple[int, int] | None":
    """(declared, missing) bytes of a RIFF/WAVE file's data chunk whose end is cut off (a recorder that
    stopped mid-write); None for an intact file, a file that is not RIFF/WAVE, or a data size left open by
    a streaming writer (0 or 0xFFFFFFFF). libsndfile reads such a file up to where it ends, silently."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            header = f.read(12)
            if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
                return None
            at = 12
            while at + 8 <= size:
                f.seek(at)
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                tag, length = chunk[:4], int.from_bytes(chunk[4:], "little")
                if tag == b"data":
                    if length in (0, 0xFFFFFFFF):
                        return None
                    missing = at + 8 + length - size
                    return (length, missing) if missing > 0 else None
                at += 8 + length + (length & 1)
    except OSError:
        return None
    return None


def _convert(source: Path, target: Path, rate: int, channels: list[int]) -> None:
    stream = None
    if rate != SAMPLE_RATE:
        import soxr
        stream = soxr.ResampleStream(rate, SAMPLE_RATE, len(channels), dtype="float32", quality="HQ")
    try:
        with sf.SoundFile(str(target), "w", samplerate=SAMPLE_RATE, channels=len(channels), subtype="FLOAT",
                          format="WAV") as sink:
            for block in sf.blocks(str(source), blocksize=_BLOCK, dtype="float32", always_2d=True):
                block = np.ascontiguousarray(block[:, channels])
                sink.write(block if stream is None else stream.resample_chunk(block))
            if stream is not None:
                sink.write(stream.resample_chunk(np.zeros((0, len(channels)), np.float32), last=True))
    except (RuntimeError, OSError) as exc:  # a corrupt frame of the source, or no room for the copy
        raise InputError(f"mixture: cannot convert {str(source)!r} ({str(exc).strip()[:120]}); expected an intact "
                         f"audio file and room in the temporary directory for its 16 kHz copy") from None
