"""Anechoic two-microphone physics: propagation delay and 1/r attenuation, and mixing at a given SNR.

Geometry (metres, radians): the two microphones lie on the x axis, `mic_spacing` apart, centred on the
origin (the room centre); mic 0 is at x = -spacing/2, mic 1 at x = +spacing/2. A source at azimuth
`az` and distance `r` from the array centre sits at (r cos az, r sin az). Each microphone hears the
source delayed by its own distance over the speed of sound, scaled by 1 / that distance. Delays are
applied exactly (band-limited) as a linear phase in the frequency domain, with enough zero padding
that nothing wraps around.
"""
from __future__ import annotations

import numpy as np
from scipy.fft import next_fast_len

from limuse_runtime.contract import SAMPLE_RATE
SPEED_OF_SOUND = 343.0  # m/s, dry air at 20 degrees C
MIC_SPACING = 0.07  # m, as in MC_Grid


def mic_positions(mic_spacing: float = MIC_SPACING) -> np.ndarray:
    """(2, 2) x, y of mic 0 and mic 1."""
    half = mic_spacing / 2
    return np.array([[-half, 0.0], [half, 0.0]])


def source_to_mic_distances(azimuth: float, distance: float, mic_spacing: float = MIC_SPACING) -> np.ndarray:
    """Distance from a source at (azimuth, distance) to each microphone, (2,)."""
    if distance <= mic_spacing / 2:
        raise ValueError(f"distance: got {distance} m; expected more than half the mic spacing ({mic_spacing / 2} m)")
    src = distance * np.array([np.cos(azimuth), np.sin(azimuth)])
    return np.linalg.norm(src[None, :] - mic_positions(mic_spacing), axis=1)


def inter_mic_delay(azimuth: float, distance: float, mic_spacing: float = MIC_SPACING,
                    sample_rate: int = SAMPLE_RATE) -> float:
    """Arrival time at mic 1 minus arrival time at mic 0, in samples (positive: mic 0 hears it first)."""
    d0, d1 = source_to_mic_distances(azimuth, distance, mic_spacing)
    return (d1 - d0) / SPEED_OF_SOUND * sample_rate


def _delayed_copies(signal: np.ndarray, delays) -> list[np.ndarray]:
    """`signal` (S,) delayed by each of `delays` samples (reals >= 0), same length, band-limited.

    One forward FFT serves every delay. Padding by the signal's length plus the delay keeps the shifted
    signal clear of the wrap-around; only far tails of the interpolation kernel are lost. Against a
    2^20-point transform (measured, 3 s, delay 180.37 samples): -101 dB error for speech that starts
    and ends in silence, -62 dB for white noise cut abruptly at both ends.
    """
    n = len(signal)
    n_fft = next_fast_len(2 * n + int(np.ceil(max(delays))), real=True)
    spectrum = np.fft.rfft(signal.astype(np.float64), n_fft)
    freqs = np.fft.rfftfreq(n_fft)
    return [np.fft.irfft(spectrum * np.exp(-2j * np.pi * freqs * d), n_fft)[:n] for d in delays]


def fractional_delay(signal: np.ndarray, delay: float) -> np.ndarray:
    """`signal` (S,) delayed by `delay` samples (any real >= 0), same length, band-limited interpolation."""
    return _delayed_copies(signal, [delay])[0]


def spatialise(signal: np.ndarray, azimuth: float, distance: float, mic_spacing: float = MIC_SPACING,
               sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A dry source signal (S,) as the two microphones hear it: (2, S) float64."""
    signal = np.asarray(signal)
    if signal.ndim != 1:
        raise ValueError(f"spatialise: signal shape {signal.shape}; expected one channel (S,)")
    distances = source_to_mic_distances(azimuth, distance, mic_spacing)
    delays = distances / SPEED_OF_SOUND * sample_rate
    return np.stack([copy / r for copy, r in zip(_delayed_copies(signal, delays), distances)])


def mix(target_image: np.ndarray, interferer_image: np.ndarray, snr_db: float):
    """Mix two spatial images (C, S) so that target-to-interferer energy at mic 0 is `snr_db`.

    Returns (mixture (C, S), target_image, scaled interferer_image); mixture = target + interferer.
    """
    if target_image.shape != interferer_image.shape:
        raise ValueError(f"mix: target {target_image.shape} and interferer {interferer_image.shape} differ")
    e_target = float(np.sum(target_image[0] ** 2))
    e_interf = float(np.sum(interferer_image[0] ** 2))
    if e_target <= 0 or e_interf <= 0:
        raise ValueError("mix: a silent source at mic 0 has no defined SNR")
    scale = np.sqrt(e_target / (e_interf * 10 ** (snr_db / 10)))
    interferer = interferer_image * scale
    return target_image + interferer, target_image, interferer


def snr_at_mic0(target_mic0: np.ndarray, interferer_mic0: np.ndarray) -> float:
    """Target-to-interferer energy ratio in dB."""
    return float(10 * np.log10(np.sum(np.square(target_mic0, dtype=np.float64))
                               / np.sum(np.square(interferer_mic0, dtype=np.float64))))
