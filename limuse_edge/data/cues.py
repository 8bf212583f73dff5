"""The two cues computed from a clean waveform: a voiceprint and a visual (lip) feature track.

Voiceprint: limuse_runtime.voiceprint (documented there), the one extractor that `limuse-run enroll`
also uses on the board, so corpus and deployment voiceprints cannot drift apart.

Visual features: 25 fps x 256. The mouth-opening trajectory is the target's own voiced-band envelope
(log RMS, 45 dB range, smoothed over 40 ms) and a lip-rounding proxy is its low-band energy share;
both are shifted by a small lag and sampled at the frame centres. Each frame is
`appearance + opening * open_basis + d(opening)/dt * velocity_basis + rounding * round_basis + noise`,
where the appearance and the bases are drawn from a per-speaker face seed (the bases share a common
part, so the mapping from articulation to features is learnable across speakers).
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter1d
from scipy.signal import stft

from limuse_runtime.contract import SAMPLE_RATE, SAMPLES_PER_VIDEO_FRAME, VISUAL_DIM, n_video_frames
# The voiceprint extractor lives in the runtime (numpy only); its names stay importable from here.
from limuse_runtime.voiceprint import VOICEPRINT_SEED, VOICEPRINT_VERSION, voiceprint  # noqa: F401
from limuse_runtime.voiceprint import check_wave as _check_wave
from limuse_runtime.voiceprint import pitch_track as _pitch_track  # noqa: F401


def _articulation(wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mouth opening in [0, 1] and lip rounding in [0, 1], every 10 ms."""
    _, _, spec = stft(wave, nperseg=320, noverlap=160, nfft=512, boundary="even", padded=True)
    power = np.abs(spec) ** 2
    freqs = np.fft.rfftfreq(512, 1 / SAMPLE_RATE)
    voiced_band = power[(freqs >= 150) & (freqs <= 4000)].sum(axis=0)
    low = power[(freqs >= 150) & (freqs <= 1000)].sum(axis=0)
    db = 10 * np.log10(voiced_band + 1e-12)
    opening = np.clip((db - (db.max() - 45.0)) / 45.0, 0.0, 1.0)
    opening = uniform_filter1d(opening, size=4, mode="nearest")
    rounding = uniform_filter1d(low / (voiced_band + 1e-12), size=4, mode="nearest") * (opening > 0.2)
    return opening, rounding


def face_appearance(face_seed: int) -> dict[str, np.ndarray]:
    """A speaker's face: a static appearance and how their articulation shows in the features."""
    common = np.random.default_rng(VOICEPRINT_SEED + 1)
    own = np.random.default_rng([VOICEPRINT_SEED + 2, face_seed])
    basis = {k: common.standard_normal(VISUAL_DIM) for k in ("open", "velocity", "round")}
    face = {"appearance": own.standard_normal(VISUAL_DIM) * 0.5}
    for k, shared in basis.items():
        b = shared + 0.5 * own.standard_normal(VISUAL_DIM)
        face[k] = b / np.linalg.norm(b) * np.sqrt(VISUAL_DIM)
    return face


def visual_features(wave: np.ndarray, face_seed: int, lag_seconds: float = 0.0, noise: float = 0.2,
                    rng: np.random.Generator | None = None) -> np.ndarray:
    """(frames, 256) float32 lip features of a clean 16 kHz waveform; frames = n_video_frames(len)."""
    wave = _check_wave(wave, "visual_features")
    opening, rounding = _articulation(wave)
    n_frames = n_video_frames(len(wave))
    centres = (np.arange(n_frames) + 0.5) * SAMPLES_PER_VIDEO_FRAME / SAMPLE_RATE - lag_seconds
    track_t = np.arange(len(opening)) * 0.01
    o = np.interp(centres, track_t, opening)
    r = np.interp(centres, track_t, rounding)
    velocity = np.gradient(o) if n_frames > 1 else np.zeros(n_frames)
    face = face_appearance(face_seed)
    feats = (face["appearance"][None] + o[:, None] * face["open"][None] + velocity[:, None] * face["velocity"][None]
             + r[:, None] * face["round"][None])
    if noise:
        rng = rng if rng is not None else np.random.default_rng(face_seed)
        feats = feats + noise * rng.standard_normal(feats.shape)
    return feats.astype(np.float32)
