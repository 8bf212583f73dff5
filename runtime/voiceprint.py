"""The voiceprint extractor: one implementation for the corpus builder (limuse_edge.data.cues imports it)
and for enrolment on the board (`limuse-run enroll`), so the embedding a model was trained on and the one
it is given in deployment cannot drift apart. numpy only.

Extractor (fixed, documented, deterministic; version VOICEPRINT_VERSION):
1. 16 kHz input, pre-emphasis 0.97, 25 ms Hann frames every 10 ms, 40 mel bands (60 Hz - 7.6 kHz).
2. Active frames: log-mel energy within 35 dB of the loudest frame.
3. Mel cepstrum c1..c19 (DCT-II of the log-mel; c0, the level, is dropped): mean and standard
   deviation over active frames, plus the median and spread of log2 f0 over voiced frames
   (normalised autocorrelation pitch, 60-400 Hz).
4. Those 40 statistics are standardised by fixed constants (the spreads at half weight), then
   multiplied by a fixed Gaussian matrix (512 x 40, numpy seed VOICEPRINT_SEED) and L2-normalised:
   a 512-d float32 unit vector.
The frames are those of scipy.signal.stft(nperseg=400, noverlap=240, nfft=512, boundary=None,
padded=False) with its periodic Hann window and 'spectrum' scaling, written out in numpy.
"""
from __future__ import annotations

import numpy as np

from limuse_runtime.contract import SAMPLE_RATE, VOICEPRINT_DIM
from limuse_runtime.errors import InputError

VOICEPRINT_SEED = 20211104
VOICEPRINT_VERSION = 1
# Exported models record the extractor version their voiceprint input expects: a metadata property of
# the ONNX files and a CONF key of the packed file, both under this name.
VOICEPRINT_VERSION_KEY = "voiceprint_version"
_N_MELS, _N_CEPS = 40, 19
_FRAME, _HOP, _N_FFT = 400, 160, 512

# Centre and spread of the 40 statistics over 16 synthetic speakers x 3 utterances (seeds 0-15 of
# limuse_edge.data.talker.make_speaker), frozen here so that the extractor never depends on the corpus
# it embeds.
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


def _mel_filterbank(n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    hz = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    edges = hz(np.linspace(mel(fmin), mel(fmax), n_mels + 2))
    freqs = np.fft.rfftfreq(n_fft, 1 / SAMPLE_RATE)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    return np.maximum(0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))


def _dct2_ortho(n: int) -> np.ndarray:
    """(n, n) matrix of the orthonormal DCT-II: row k applied to x gives scipy.fft.dct(x, 2, norm='ortho')[k]."""
    k, i = np.arange(n)[:, None], np.arange(n)[None, :]
    basis = np.cos(np.pi * k * (2 * i + 1) / (2 * n)) * np.sqrt(2.0 / n)
    basis[0] /= np.sqrt(2.0)
    return basis


_MEL = _mel_filterbank(_N_FFT, _N_MELS, 60.0, 7600.0)
_CEPSTRUM = _dct2_ortho(_N_MELS)[1:_N_CEPS + 1]
_WINDOW = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(_FRAME) / _FRAME)  # periodic Hann
_PROJECTION = np.random.default_rng(VOICEPRINT_SEED).standard_normal((VOICEPRINT_DIM, 2 * _N_CEPS + 2))


def check_wave(wave: np.ndarray, what: str) -> np.ndarray:
    wave = np.asarray(wave, dtype=np.float64)
    if wave.ndim != 1:
        raise ValueError(f"{what}: waveform shape {wave.shape}; expected one channel (S,) at 16 kHz")
    if len(wave) < SAMPLE_RATE // 10:
        raise ValueError(f"{what}: waveform of {len(wave)} samples; expected at least 0.1 s at 16 kHz")
    return wave


def _power_spectrogram(wave: np.ndarray) -> np.ndarray:
    """(bins, frames) |STFT|^2, frames [k*HOP, k*HOP + FRAME) that fit in the signal."""
    n = 1 + (len(wave) - _FRAME) // _HOP
    frames = np.lib.stride_tricks.sliding_window_view(wave, _FRAME)[::_HOP][:n] * _WINDOW
    spec = np.fft.rfft(frames, _N_FFT, axis=1) / _WINDOW.sum()
    return (np.abs(spec) ** 2).T


def pitch_track(wave: np.ndarray) -> np.ndarray:
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
    wave = check_wave(wave, "voiceprint")
    emphasised = np.append(wave[0], wave[1:] - 0.97 * wave[:-1])
    logmel = np.log(_MEL @ _power_spectrogram(emphasised) + 1e-10).T  # (frames, mels)
    level = logmel.max(axis=1)
    active = logmel[level > level.max() - 35 * np.log(10) / 10]
    ceps = active @ _CEPSTRUM.T
    f0 = pitch_track(wave)
    log_f0 = np.log2(f0) if len(f0) else np.array([np.log2(150.0)])
    stats = np.concatenate([ceps.mean(axis=0), ceps.std(axis=0),
                            [np.median(log_f0), np.subtract(*np.percentile(log_f0, [90, 10]))]])
    embedding = _PROJECTION @ ((stats - _STAT_CENTRE) / _STAT_SCALE)
    return (embedding / (np.linalg.norm(embedding) + 1e-12)).astype(np.float32)


def check_voiceprint_version(recorded, model: str) -> None:
    """A model whose recorded extractor version is not this runtime's is refused: `limuse-run enroll`
    would hand it vectors of another extractor, which it was never trained on. Models exported before
    the version was recorded (None) were all trained on version 1."""
    version = 1 if recorded is None else recorded
    try:
        version = int(version)
    except (TypeError, ValueError):
        raise InputError(f"model: {model} records voiceprint version {recorded!r}; expected an integer") from None
    if version != VOICEPRINT_VERSION:
        raise InputError(f"model: {model} was trained on voiceprint extractor version {version}, this runtime "
                         f"enrols with version {VOICEPRINT_VERSION}; expected a model exported for version "
                         f"{VOICEPRINT_VERSION} (re-export it, or install the matching limuse_runtime)")
