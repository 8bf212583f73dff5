"""Clean speech from a folder `DIR/<speaker>/<utterance>.{wav,flac}` (GRID, VCTK or LibriSpeech style).

Any sample rate and channel count is accepted: channels are averaged and the audio resampled to 16 kHz
(polyphase, scipy). Speakers' genders are not given by such folders, so they are estimated from the
median pitch of one utterance (>= 165 Hz: female), which is what balancing the splits needs.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from limuse_edge.data.cues import _pitch_track
from limuse_edge.data.layout import safe_name
from limuse_runtime.contract import SAMPLE_RATE
AUDIO_SUFFIXES = (".wav", ".flac")
MIN_SPEAKERS = 4
FEMALE_F0 = 165.0


def read_speech(path: "str | Path") -> np.ndarray:
    """Mono float32 at 16 kHz; a clear error names the file when it cannot be read."""
    path = Path(path)
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / TypeError by backend
        raise ValueError(f"{path}: cannot read audio ({exc}); expected a wav or flac file") from None
    if audio.shape[0] == 0:
        raise ValueError(f"{path}: empty audio file; expected speech")
    mono = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        ratio = Fraction(SAMPLE_RATE, rate)
        mono = resample_poly(mono, ratio.numerator, ratio.denominator).astype(np.float32)
    return mono


def scan_speech_dir(speech_dir: "str | Path") -> dict[str, list[Path]]:
    """{speaker name (file-name safe): sorted utterance files}; speakers with < 2 utterances are left out."""
    root = Path(speech_dir)
    if not root.is_dir():
        raise NotADirectoryError(f"--speech {root}: not a directory; expected DIR/<speaker>/<utterance>.wav|flac")
    speakers = {}
    for spk_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(p for p in spk_dir.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        if len(files) >= 2:  # a target and a different reference utterance
            name = safe_name(spk_dir.name)
            if name in speakers:
                raise ValueError(f"--speech {root}: speaker folders {spk_dir.name!r} and another map to "
                                 f"the same name {name!r}")
            speakers[name] = files
    if len(speakers) < MIN_SPEAKERS:
        raise ValueError(f"--speech {root}: {len(speakers)} speakers with at least 2 utterances; expected at least "
                         f"{MIN_SPEAKERS} speaker folders DIR/<speaker>/<utterance>.wav|flac")
    return speakers


def estimate_gender(path: "str | Path") -> str:
    """'f' or 'm' from the median pitch of one utterance."""
    f0 = _pitch_track(read_speech(path).astype(np.float64))
    if len(f0) == 0:
        raise ValueError(f"{path}: no voiced speech found; expected a speech recording")
    return "f" if np.median(f0) >= FEMALE_F0 else "m"


def fit_length(wave: np.ndarray, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """A random n_samples crop of a longer utterance, or a shorter one zero-padded at the end."""
    if len(wave) >= n_samples:
        start = int(rng.integers(0, len(wave) - n_samples + 1))
        return wave[start:start + n_samples]
    return np.pad(wave, (0, n_samples - len(wave)))
