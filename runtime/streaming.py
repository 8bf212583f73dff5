"""Recordings of any duration, in overlapping windows, with memory that does not grow with duration.

Windows. The mixture is cut into windows of `window` samples that start every `hop = window - overlap`
samples; the last window runs to the end of the recording and is between window - hop/2 and
window + hop/2 long (the remainder is merged into it rather than processed as a short window, whose
normalisation statistics would be poor). Window and overlap are whole video frames (640 samples at
25 fps), so every window starts on a video-frame boundary and the visual frames [start/640,
ceil(stop/640)) are exactly the ones that cover it.

Overlap-add. Successive windows overlap by `overlap` samples and are cross-faded there with a linear
ramp: the earlier window is weighted 1 - r and the later r, r = (i + 0.5) / overlap for sample i of
the overlap. The weights sum to 1 at every sample, so a signal that both windows reproduce exactly is
reproduced exactly. Outside the overlaps each window's output is used as is.

Memory. The mixture is read one window at a time (SoundFile.seek + read) and the output is written as
soon as it is final; only the overlap tail of the previous window is held back. Peak memory is set by
the longest window, not by the recording.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import soundfile as sf

from limuse_runtime.contract import (MIN_SAMPLES, SAMPLE_RATE, SAMPLES_PER_VIDEO_FRAME, VIDEO_RATE, ModelContract,
                                     atomic_path, n_video_frames)
from limuse_runtime.errors import InputError

Separator = Callable[[np.ndarray, "np.ndarray | None", "np.ndarray | None"], np.ndarray]
ReadWindow = Callable[[int, int], np.ndarray]

DEFAULT_WINDOW_S = 3.0
DEFAULT_OVERLAP_S = 0.4
# Longest window: one window's samples are held in memory (10 min: 38 MB per channel of float32).
MAX_WINDOW_S = 600.0
# Real lip tracks drift by a frame or two from the audio; anything further off is a wrong file.
VISUAL_FRAME_SLACK = 0.05


@dataclass(frozen=True)
class WindowPlan:
    window: int  # samples
    overlap: int  # samples

    @staticmethod
    def check_seconds(name: str, value: float) -> None:
        """--window / --overlap: a finite number of seconds, 0 .. MAX_WINDOW_S (nan, inf, 1e308 refused)."""
        if not math.isfinite(value) or not 0 <= value <= MAX_WINDOW_S:
            raise InputError(f"{name}: got {value} s; expected a finite number of seconds, at most "
                             f"{MAX_WINDOW_S:g} s (the overlap at most half the window)")

    @classmethod
    def from_seconds(cls, window_s: float = DEFAULT_WINDOW_S, overlap_s: float = DEFAULT_OVERLAP_S) -> "WindowPlan":
        cls.check_seconds("window", window_s)
        cls.check_seconds("overlap", overlap_s)
        window_frames, overlap_frames = round(window_s * VIDEO_RATE), round(overlap_s * VIDEO_RATE)
        if window_frames < 2 or not 1 <= overlap_frames <= window_frames // 2:
            raise InputError(f"window: got window {window_s} s with overlap {overlap_s} s; expected a window of "
                             f"at least {2 / VIDEO_RATE} s and an overlap between {1 / VIDEO_RATE} s and half "
                             f"the window, in multiples of {1 / VIDEO_RATE} s (one video frame)")
        return cls(window_frames * SAMPLES_PER_VIDEO_FRAME, overlap_frames * SAMPLES_PER_VIDEO_FRAME)

    @property
    def hop(self) -> int:
        return self.window - self.overlap

    def windows(self, n_samples: int) -> list[tuple[int, int]]:
        """(start, stop) of every window; see the module docstring."""
        count = max(1, int(np.floor((n_samples - self.overlap) / self.hop + 0.5)))
        spans = [(k * self.hop, k * self.hop + self.window) for k in range(count - 1)]
        return spans + [((count - 1) * self.hop, n_samples)]


def overlap_add(separator: Separator, read: ReadWindow, n_samples: int, voiceprint: np.ndarray | None,
                visual: np.ndarray | None, plan: WindowPlan) -> Iterator[np.ndarray]:
    """Yields consecutive blocks of the output; together they are n_samples long."""
    spans = plan.windows(n_samples)
    ramp = ((np.arange(plan.overlap) + 0.5) / plan.overlap).astype(np.float32)
    pending = None
    for index, (start, stop) in enumerate(spans):
        out = check_output(separator(read(start, stop), voiceprint, visual_for(visual, start, stop)), start, stop)
        if pending is not None:
            out[: plan.overlap] = pending * (1 - ramp) + out[: plan.overlap] * ramp
        if index == len(spans) - 1:
            yield out
        else:
            pending = out[-plan.overlap:].copy()
            yield out[: -plan.overlap]


def check_output(out, start: int, stop: int) -> np.ndarray:
    """A window's result as float32, checked before anything of it is written: exactly one sample per input
    sample, all finite (a foreign or broken model may return anything)."""
    out = np.asarray(out)
    if out.shape != (stop - start,):
        raise InputError(f"model: returned shape {out.shape} for samples [{start}, {stop}) of the mixture; expected "
                         f"({stop - start},), one output sample per input sample")
    if not np.issubdtype(out.dtype, np.floating) and not np.issubdtype(out.dtype, np.integer):
        raise InputError(f"model: returned {out.dtype} values; expected float32 samples")
    out = out.astype(np.float32)
    if not np.isfinite(out).all():
        raise InputError(f"model: returned NaN or Inf for samples [{start}, {stop}) of the mixture; expected a "
                         f"finite waveform")
    return out


def fixed_length_windows(run: Callable[[int], np.ndarray], n_samples: int, window: int) -> np.ndarray:
    """(n_samples,) output of a backend whose graph has one static length `window` (the QONNX file of the
    golden engine, the native engine's packed model): run(start) separates samples [start, start + window)
    of the recording (zero-padded past its end). A recording up to one window long is one padded run; a
    longer one runs windows every window // 2 samples, the last ending at the recording's end, cross-faded
    with the same linear ramp as overlap_add over whatever they overlap."""
    if n_samples <= window:
        return np.asarray(run(0), np.float32)[:n_samples]
    starts = list(range(0, n_samples - window, window // 2)) + [n_samples - window]
    out = np.zeros(n_samples, np.float32)
    done = 0  # out[:done] is final
    for start in starts:
        y = np.asarray(run(start), np.float32)
        overlap = done - start
        if overlap > 0:
            ramp = ((np.arange(overlap) + 0.5) / overlap).astype(np.float32)
            out[start:done] = out[start:done] * (1 - ramp) + y[:overlap] * ramp
        out[max(done, start):start + window] = y[max(overlap, 0):]
        done = start + window
    return out


def visual_for(visual: np.ndarray | None, start: int, stop: int) -> np.ndarray | None:
    """The video frames that cover samples [start, stop); a track that ends early repeats its last frame."""
    if visual is None:
        return None
    first, last = start // SAMPLES_PER_VIDEO_FRAME, -(-stop // SAMPLES_PER_VIDEO_FRAME)
    index = np.minimum(np.arange(first, last), len(visual) - 1)
    return visual[index]


def separate_array(separator: Separator, mixture: np.ndarray, voiceprint: np.ndarray | None = None,
                   visual: np.ndarray | None = None, plan: WindowPlan | None = None) -> np.ndarray:
    """In-memory windowed inference on mixture (C, S) -> (S,)."""
    plan = plan or WindowPlan.from_seconds()
    check_visual_length(visual, mixture.shape[1])
    blocks = overlap_add(separator, lambda a, b: mixture[:, a:b], mixture.shape[1], voiceprint, visual, plan)
    return np.concatenate(list(blocks))


def separate_file(separator: Separator, contract: ModelContract, mixture_path: str | Path, out_path: str | Path,
                  voiceprint: np.ndarray | None = None, visual: np.ndarray | None = None,
                  plan: WindowPlan | None = None) -> float:
    """Windowed inference from a wav file to a mono float wav; returns the duration in seconds.
    The output appears only when complete (written to a temporary file, then renamed)."""
    plan = plan or WindowPlan.from_seconds()
    out_path = Path(out_path)
    if not out_path.parent.is_dir():
        raise InputError(f"out: directory {str(out_path.parent)!r} does not exist; expected a path to a "
                         f".wav file in an existing directory")
    n_samples = check_mixture_file(mixture_path, contract.mic_channels)
    check_visual_length(visual, n_samples)
    with atomic_path(out_path, suffix=".wav") as tmp, sf.SoundFile(str(mixture_path)) as source, \
            _sink(tmp) as sink:
        def read(start: int, stop: int) -> np.ndarray:
            try:
                source.seek(start)
                samples = source.read(stop - start, dtype="float32", always_2d=True).T
            except (RuntimeError, OSError) as exc:  # libsndfile: a corrupt frame past the header
                raise InputError(f"mixture: cannot decode {str(mixture_path)!r} at sample {start} "
                                 f"({str(exc).strip()[:120]}); expected an intact audio file") from None
            if samples.shape[1] != stop - start:
                raise InputError(f"mixture: {str(mixture_path)!r} ends at sample {start + samples.shape[1]}, "
                                 f"before the {n_samples} samples its header declares; expected an intact file")
            return samples

        for block in overlap_add(separator, read, n_samples, voiceprint, visual, plan):
            try:
                sink.write(block)
            except (RuntimeError, OSError) as exc:  # a full disk, a file system that refuses the size
                raise InputError(f"out: cannot write {str(out_path)!r} ({str(exc).strip()[:120]}); expected "
                                 f"room for {4 * n_samples} bytes") from None
    return n_samples / SAMPLE_RATE


@contextlib.contextmanager
def _sink(path: Path) -> Iterator[sf.SoundFile]:
    """The output wav, opened for writing; failures of the file system are one-line InputErrors."""
    try:
        sink = sf.SoundFile(str(path), "w", samplerate=SAMPLE_RATE, channels=1, subtype="FLOAT", format="WAV")
    except (RuntimeError, OSError) as exc:
        raise InputError(f"out: cannot write {str(path.parent)!r} ({str(exc).strip()[:120]}); expected a "
                         f"writable directory") from None
    try:
        yield sink
    finally:
        try:
            sink.close()
        except (RuntimeError, OSError):
            pass  # the file is deleted by atomic_path; the first error is the one reported


def check_mixture_file(path: str | Path, channels: int) -> int:
    """Validates a mixture file without loading it whole; returns its length in samples."""
    path = Path(path)
    expected = f"a {SAMPLE_RATE} Hz wav with {channels} channel{'s' if channels > 1 else ''}"
    if not path.is_file():
        raise InputError(f"mixture: no such file {str(path)!r}; expected {expected}")
    try:
        info = sf.info(str(path))
    except Exception:  # libsndfile reports unreadable files as several exception types
        raise InputError(f"mixture: cannot read {str(path)!r} as audio; expected {expected}") from None
    if info.samplerate != SAMPLE_RATE:
        raise InputError(f"mixture: sample rate {info.samplerate} Hz; expected {expected} "
                         f"(--resample converts it to {SAMPLE_RATE} Hz)")
    if info.channels != channels:
        raise InputError(f"mixture: {info.channels} channel{'s' if info.channels > 1 else ''}; expected {expected}"
                         + (f" (--channels picks {channels} of a wider array, e.g. --channels "
                            f"{','.join(map(str, range(channels)))})" if info.channels > channels else ""))
    if info.frames < MIN_SAMPLES:
        raise InputError(f"mixture: {info.frames} samples ({info.frames / SAMPLE_RATE:.3f} s); expected at least "
                         f"{MIN_SAMPLES} samples ({MIN_SAMPLES / SAMPLE_RATE:.2f} s)")
    try:
        read = 0
        for block in sf.blocks(str(path), blocksize=SAMPLE_RATE * 10, dtype="float32", always_2d=True):
            if not np.isfinite(block).all():
                raise InputError(f"mixture: {str(path)!r} contains NaN or Inf; expected finite samples")
            read += len(block)
    except (RuntimeError, OSError) as exc:  # libsndfile: a corrupt frame (FLAC, MP3) past a good header
        raise InputError(f"mixture: cannot decode {str(path)!r} ({str(exc).strip()[:120]}); expected an intact "
                         f"{SAMPLE_RATE} Hz audio file") from None
    if read != info.frames:
        raise InputError(f"mixture: {str(path)!r} holds {read} readable samples of the {info.frames} its header "
                         f"declares; expected an intact audio file")
    return read


def check_visual_length(visual: np.ndarray | None, n_samples: int) -> None:
    if visual is None:
        return
    expected = n_video_frames(n_samples)
    if abs(len(visual) - expected) > max(2, VISUAL_FRAME_SLACK * expected):
        raise InputError(f"visual: got {len(visual)} frames for {n_samples / SAMPLE_RATE:.2f} s of audio; "
                         f"expected about {expected} frames ({VIDEO_RATE} fps)")
