"""The two cues computed from a clean waveform: a voiceprint and a visual (lip) feature track.

Voiceprint extractor (fixed, documented, deterministic; version VOICEPRINT_VERSION):
1. 16 kHz input, pre-emphasis 0.97, 25 ms Hann frames every 10 ms, 40 mel bands (60 Hz - 7.6 kHz).
2. Active frames: log-mel energy within 35 dB of the loudest frame.
3. Mel cepstrum c1..c19 (DCT-II of the log-mel; c0, the level, is dropped): mean and standard
   deviation over active frames, plus the median and spread of log2 f0 over voiced frames
   (normalised autocorrelation pitch, 60-400 Hz).
4. Those 40 statistics are standardised by fixed constants (the spreads at half weight), then
   multiplied by a fixed Gaussian matrix (512 x 40, numpy seed VOICEPRINT_SEED) and L2-normalised:
   a 512-d float32 unit vector.

Visual features: 25 fps x 256. The mouth-opening trajectory is the target's own voiced-band envelope
(log RMS, 45 dB range, smoothed over 40 ms) and a lip-rounding proxy is its low-band energy share;
both are shifted by a small lag and sampled at the frame centres. Each frame is
`appearance + opening * open_basis + d(opening)/dt * velocity_basis + rounding * round_basis + noise`,
where the appearance and the bases are drawn from a per-speaker face seed (the bases share a common
part, so the mapping from articulation to features is learnable across speakers).
"""
from __future__ import annotations

import numpy as np
from scipy.fft import dct
from scipy.ndimage import uniform_filter1d
from scipy.signal import stft

from limuse_runtime.contract import SAMPLE_RATE, SAMPLES_PER_VIDEO_FRAME, VISUAL_DIM, VOICEPRINT_DIM, n_video_frames

VOICEPRINT_SEED = 20211104
VOICEPRINT_VERSION = 1
_N_MELS, _N_CEPS = 40, 19

# Centre and spread of the 40 statistics over 16 synthetic speakers x 3 utterances (seeds 0-15 of
# talker.make_speaker), frozen here so that the extractor never depends on the corpus it embeds.
_STAT_CENTRE = np.array([
    6.86, -4.14, 4.14, -3.33, -1.52, -1.9, -1.23, -0.87, -0.9, -0.47, -0.58, -0.83, -0.7, -0.8, -0.82, -0.72,
    -0.62, -0.24, -0.3, 12.68, 6.64, 5.65, 3.1, 2.29, 2.04, 1.52, 1.39, 1.37, 1.21, 1.06, 1.13, 1.03, 0.89,
    0.91, 0.86, 0.91, 0.96, 0.99, 7.44, 0.28])
_STAT_SCALE = np.array([
    4.44, 2.32, 1.9, 2.9, 0.99, 1.6, 0.38, 0.66, 0.46, 0.64, 0.61, 0.73, 0.68, 0.96, 0.84, 0.83, 1.13, 0.46,
    0.74, 2.85, 1.27, 0.72, 0.6, 0.3, 0.28, 0.27, 0.26, 0.23, 0.2, 0.24, 0.3, 0.26, 0.22, 0.24, 0.28, 0.38,
    0.44, 0.49, 0.47, 0.08])
# Within-utterance spreads vary more with the words spoken than with the speaker: half weight
# (nearest-neighbour speaker ID on 16 held-out synthetic speakers: 0.89 at full weight, 0.92 at half).
_STAT_SCALE[_N_CEPS:2 * _N_CEPS] *= 2.0


def _check_wave(wave: np.ndarray, what: str) -> np.ndarray:
    wave = np.asarray(wave, dtype=np.float64)
    if wave.ndim != 1:
        raise ValueError(f"{what}: waveform shape {wave.shape}; expected one channel (S,) at 16 kHz")
    if len(wave) < SAMPLE_RATE // 10:
        raise ValueError(f"{what}: waveform of {len(wave)} samples; expected at least 0.1 s at 16 kHz")
    return wave


def _mel_filterbank(n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    hz = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    edges = hz(np.linspace(mel(fmin), mel(fmax), n_mels + 2))
    freqs = np.fft.rfftfreq(n_fft, 1 / SAMPLE_RATE)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    return np.maximum(0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))


_MEL = _mel_filterbank(512, _N_MELS, 60.0, 7600.0)
_PROJECTION = np.random.default_rng(VOICEPRINT_SEED).standard_normal((VOICEPRINT_DIM, 2 * _N_CEPS + 2))


def _pitch_track(wave: np.ndarray) -> np.ndarray:
    """f0 (Hz) of voiced 40 ms frames (10 ms hop) by normalised autocorrelation; empty if none."""
    frame, hop = 640, 160
    n = 1 + (len(wave) - frame) // hop
    if n < 1:
        return np.empty(0)
    idx = np.arange(frame)[None, :] + hop * np.arange(n)[:, None]
    frames = wave[idx] * np.hanning(frame)
    energy = np.sum(frames ** 2, axis=1)
    loud = energy > energy.max() * 10 ** (-3.5)
    spec = np.fft.rfft(frames, 2 * frame)
    ac = np.fft.irfft(np.abs(spec) ** 2)[:, :frame]
    ac /= ac[:, :1] + 1e-12
    lo, hi = SAMPLE_RATE // 400, SAMPLE_RATE // 60
    lag = lo + np.argmax(ac[:, lo:hi], axis=1)
    voiced = loud & (ac[np.arange(n), lag] > 0.5)
    return SAMPLE_RATE / lag[voiced]


def voiceprint(wave: np.ndarray) -> np.ndarray:
    """The 512-d unit speaker embedding of a 16 kHz mono waveform (see the module docstring)."""
    wave = _check_wave(wave, "voiceprint")
    emphasised = np.append(wave[0], wave[1:] - 0.97 * wave[:-1])
    _, _, spec = stft(emphasised, nperseg=400, noverlap=240, nfft=512, boundary=None, padded=False)
    logmel = np.log(_MEL @ (np.abs(spec) ** 2) + 1e-10).T  # (frames, mels)
    level = logmel.max(axis=1)
    active = logmel[level > level.max() - 35 * np.log(10) / 10]
    ceps = dct(active, type=2, norm="ortho", axis=1)[:, 1:_N_CEPS + 1]
    f0 = _pitch_track(wave)
    log_f0 = np.log2(f0) if len(f0) else np.array([np.log2(150.0)])
    stats = np.concatenate([ceps.mean(axis=0), ceps.std(axis=0),
                            [np.median(log_f0), np.subtract(*np.percentile(log_f0, [90, 10]))]])
    embedding = _PROJECTION @ ((stats - _STAT_CENTRE) / _STAT_SCALE)
    return (embedding / (np.linalg.norm(embedding) + 1e-12)).astype(np.float32)


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
