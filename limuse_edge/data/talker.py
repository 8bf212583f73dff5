"""A synthetic talker: a source-filter speech synthesiser with a speaker identity, speaking GRID sentences.

It is a stand-in for recorded speech when no speech corpus is at hand (CI, quick experiments). What
makes separation a real task is kept: voiced and unvoiced segments, formant transitions between
phones, pauses between words, level and pitch variation, and speakers that differ in pitch,
vocal-tract length, formant idiosyncrasies, speaking rate and voice quality.

The source is a Rosenberg glottal pulse train (time-varying f0, jitter, shimmer, breath noise) plus
noise sources for fricatives, bursts and aspiration. The filter is a cascade of five formant resonators
(the Klatt cascade magnitude response), applied frame by frame in the STFT domain: one vectorised
filtering step instead of a per-sample loop, which keeps one utterance at a few milliseconds of CPU.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import uniform_filter1d
from scipy.signal import istft, stft

from limuse_runtime.contract import SAMPLE_RATE
_NFFT = 512
_HOP = 128  # control tracks live on the STFT frame grid (8 ms)

# GRID grammar: command, colour, preposition, letter, digit, adverb. Each word is (id character, phones).
GRID_WORDS = (
    {"bin": "b ih n", "lay": "l ey", "place": "p l ey s", "set": "s eh t"},
    {"blue": "b l uw", "green": "g r iy n", "red": "r eh d", "white": "w ay t"},
    {"at": "ae t", "by": "b ay", "in": "ih n", "with": "w ih th"},
    {"a": "ey", "b": "b iy", "c": "s iy", "d": "d iy", "e": "iy", "f": "eh f", "g": "jh iy", "h": "ey ch",
     "i": "ay", "j": "jh ey", "k": "k ey", "l": "eh l", "m": "eh m", "n": "eh n", "o": "ow", "p": "p iy",
     "q": "k y uw", "r": "aa r", "s": "eh s", "t": "t iy", "u": "y uw", "v": "v iy", "x": "eh k s",
     "y": "w ay", "z": "z iy"},
    {"zero": "z ih r ow", "one": "w ah n", "two": "t uw", "three": "th r iy", "four": "f ao r",
     "five": "f ay v", "six": "s ih k s", "seven": "s eh v ah n", "eight": "ey t", "nine": "n ay n"},
    {"again": "ah g eh n", "now": "n aw", "please": "p l iy z", "soon": "s uw n"},
)
_DIGIT_IDS = {"zero": "z", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
              "seven": "7", "eight": "8", "nine": "9"}
_KEYWORDS = (3, 4)  # letter and digit carry the sentence accent in GRID

# Adult male formant targets (F1, F2, F3) in Hz (Peterson & Barney style); speakers scale them.
_VOWELS = {
    "iy": (270, 2290, 3010), "ih": (390, 1990, 2550), "eh": (530, 1840, 2480), "ae": (660, 1720, 2410),
    "aa": (730, 1090, 2440), "ao": (570, 840, 2410), "uh": (440, 1020, 2240), "uw": (300, 870, 2240),
    "ah": (640, 1190, 2390), "er": (490, 1350, 1690),
}
_DIPHTHONGS = {"ey": ("eh", "iy"), "ay": ("aa", "iy"), "ow": ("ao", "uw"), "aw": ("aa", "uw")}
_SONORANTS = {  # phone: (formants, relative amplitude)
    "w": ((290, 610, 2150), 0.5), "y": ((260, 2070, 3020), 0.5), "r": ((310, 1060, 1380), 0.55),
    "l": ((310, 1050, 2880), 0.5), "m": ((250, 1000, 2200), 0.3), "n": ((250, 1500, 2500), 0.3),
}
# Stops: place locus formants, burst noise shape, voiced?
_STOPS = {
    "b": ((200, 800, 2200), "labial", True), "p": ((200, 800, 2200), "labial", False),
    "d": ((200, 1700, 2600), "alveolar", True), "t": ((200, 1700, 2600), "alveolar", False),
    "g": ((200, 2000, 2300), "velar", True), "k": ((200, 2000, 2300), "velar", False),
}
# Fricatives: noise shape, voiced?, noise amplitude
_FRICATIVES = {
    "s": ("s", False, 0.35), "z": ("s", True, 0.25), "sh": ("sh", False, 0.35), "zh": ("sh", True, 0.25),
    "f": ("flat", False, 0.12), "v": ("flat", True, 0.10), "th": ("flat", False, 0.10),
}
_AFFRICATES = {"ch": ("t", "sh"), "jh": ("d", "zh")}


@dataclass(frozen=True)
class Speaker:
    """The identity of one synthetic talker: everything that stays fixed across their utterances."""

    name: str
    gender: str  # "m" or "f"
    f0_median: float  # Hz
    f0_range: float  # semitones of the accent excursion
    vtl_scale: float  # formant scale: shorter vocal tract, higher formants
    formant_offsets: tuple[float, float, float]  # idiosyncratic per-formant factors
    bandwidth_scale: float
    rate: float  # speaking-rate factor (> 1 is faster)
    open_quotient: float  # glottal open quotient: low is pressed, high is breathy-lax
    tilt_db: float  # extra spectral tilt in dB per octave above 1 kHz (negative is darker)
    breathiness: float  # aspiration noise relative to voicing
    jitter: float  # relative cycle-to-cycle f0 perturbation
    shimmer: float  # relative amplitude perturbation


def make_speaker(name: str, gender: str, rng: np.random.Generator) -> Speaker:
    """Draw a speaker identity; ranges follow adult male and female voices."""
    if gender not in ("m", "f"):
        raise ValueError(f"gender: got {gender!r}; expected 'm' or 'f'")
    male = gender == "m"
    return Speaker(
        name=name,
        gender=gender,
        f0_median=float(rng.uniform(85, 150) if male else rng.uniform(165, 260)),
        f0_range=float(rng.uniform(1.5, 5.0)),
        vtl_scale=float(rng.uniform(0.92, 1.06) if male else rng.uniform(1.10, 1.26)),
        formant_offsets=tuple(float(v) for v in rng.uniform(0.93, 1.07, size=3)),
        bandwidth_scale=float(rng.uniform(0.8, 1.4)),
        rate=float(rng.uniform(0.8, 1.25)),
        open_quotient=float(rng.uniform(0.4, 0.75)),
        tilt_db=float(rng.uniform(-4.0, 1.0)),
        breathiness=float(rng.uniform(0.01, 0.12)),
        jitter=float(rng.uniform(0.003, 0.015)),
        shimmer=float(rng.uniform(0.02, 0.08)),
    )


def grid_sentence(rng: np.random.Generator) -> tuple[str, list[str]]:
    """A random GRID sentence: its GRID-style id (e.g. 'lgak6a') and its six words."""
    words = [str(rng.choice(list(slot))) for slot in GRID_WORDS]
    ident = "".join(_DIGIT_IDS[w] if i == 4 else w[0] for i, w in enumerate(words))
    return ident, words


def sentence_from_id(ident: str) -> list[str]:
    """The six words of a GRID id such as 'bbaf2n'."""
    if len(ident) != 6:
        raise ValueError(f"GRID id: got {ident!r}; expected 6 characters like 'bbaf2n'")
    words = []
    for i, (slot, ch) in enumerate(zip(GRID_WORDS, ident)):
        match = [w for w in slot if (_DIGIT_IDS[w] if i == 4 else w[0]) == ch]
        if not match:
            raise ValueError(f"GRID id: {ident!r} has no word for {ch!r} in slot {i}")
        words.append(match[0])
    return words


# --- segment plan --------------------------------------------------------------------------------
@dataclass
class _Segment:
    duration: float  # seconds
    formants_start: tuple[float, float, float]
    formants_end: tuple[float, float, float]
    voicing: float  # amplitude of the glottal source
    noise: float  # amplitude of the noise source
    noise_shape: str  # "aspiration" (formant-filtered) or a fricative / burst shape
    gain: float = 1.0
    accent: float = 0.0  # 0..1, pitch accent weight


def _phone_segments(phone: str, nxt_formants, rng) -> list[_Segment]:
    jit = lambda d: d * rng.uniform(0.8, 1.2)  # noqa: E731
    if phone in _VOWELS:
        f = _VOWELS[phone]
        return [_Segment(jit(0.13), f, f, 1.0, 0.0, "aspiration")]
    if phone in _DIPHTHONGS:
        a, b = (_VOWELS[p] for p in _DIPHTHONGS[phone])
        return [_Segment(jit(0.20), a, b, 1.0, 0.0, "aspiration")]
    if phone in _SONORANTS:
        f, amp = _SONORANTS[phone]
        return [_Segment(jit(0.065), f, f, amp, 0.0, "aspiration")]
    if phone in _STOPS:
        locus, place, voiced = _STOPS[phone]
        segs = [_Segment(jit(0.055), locus, locus, 0.12 if voiced else 0.0, 0.0, "aspiration"),
                _Segment(jit(0.014), locus, locus, 0.0, 0.9 if not voiced else 0.5, place)]
        if not voiced:  # aspiration: noise through the formants of what follows
            segs.append(_Segment(jit(0.045), locus, nxt_formants, 0.0, 0.22, "aspiration"))
        return segs
    if phone in _FRICATIVES:
        shape, voiced, amp = _FRICATIVES[phone]
        f = (300, 1500, 2500)
        return [_Segment(jit(0.10), f, f, 0.35 if voiced else 0.0, amp, shape)]
    if phone in _AFFRICATES:
        stop, fric = _AFFRICATES[phone]
        return _phone_segments(stop, nxt_formants, rng)[:2] + _phone_segments(fric, nxt_formants, rng)
    raise ValueError(f"unknown phone {phone!r}")


def _first_formants(phones: list[str]):
    for p in phones:
        if p in _VOWELS:
            return _VOWELS[p]
        if p in _DIPHTHONGS:
            return _VOWELS[_DIPHTHONGS[p][0]]
    return _VOWELS["ah"]


def _plan(words: list[str], rng: np.random.Generator) -> list[list[_Segment]]:
    """Segments of every word (pauses are added by the caller)."""
    plan = []
    for i, word in enumerate(words):
        phones = GRID_WORDS[i][word].split()
        segs = []
        for j, ph in enumerate(phones):
            segs += _phone_segments(ph, _first_formants(phones[j + 1:]) if j + 1 < len(phones) else
                                    _VOWELS["ah"], rng)
        word_gain = 10 ** (rng.uniform(-4, 3) / 20) * (1.4 if i in _KEYWORDS else 1.0)
        accent = 1.0 if i in _KEYWORDS else rng.uniform(0.0, 0.4)
        for s in segs:
            s.gain = word_gain
            if s.voicing >= 0.9:
                s.accent = accent
        plan.append(segs)
    return plan


# --- spectral shapes -----------------------------------------------------------------------------
_FREQS = np.fft.rfftfreq(_NFFT, 1 / SAMPLE_RATE)
_W = 2 * np.pi * _FREQS / SAMPLE_RATE
_COS1, _COS2 = (np.cos(k * _W)[None, :, None].astype(np.float32) for k in (1, 2))
_SIN1, _SIN2 = (np.sin(k * _W)[None, :, None].astype(np.float32) for k in (1, 2))


def _band(center, width_oct):
    f = np.maximum(_FREQS, 1.0)
    return np.exp(-0.5 * (np.log2(f / center) / width_oct) ** 2)


_NOISE_SHAPES = {
    "s": _band(6000, 0.45),
    "sh": _band(3300, 0.5),
    "flat": np.clip(_FREQS / 1500, 0.3, 1.0) * 0.8,
    "labial": _band(900, 1.2),
    "alveolar": _band(4200, 0.7),
    "velar": _band(2000, 0.5),
}


def _formant_response(formants: np.ndarray, bandwidths: np.ndarray) -> np.ndarray:
    """|H| of a cascade of digital resonators, unity gain at DC. formants, bandwidths: (frames, k).

    |1 + a1 e^-jw + a2 e^-2jw|^2 in real arithmetic: the complex form costs five times as much.
    """
    r = np.exp(-np.pi * bandwidths / SAMPLE_RATE)[:, None, :]
    a1 = -2 * r * np.cos(2 * np.pi * formants / SAMPLE_RATE)[:, None, :]
    a2 = r * r
    re = 1 + a1 * _COS1 + a2 * _COS2
    im = a1 * _SIN1 + a2 * _SIN2
    power = np.prod((1 + a1 + a2) ** 2 / (re * re + im * im), axis=-1)
    return np.sqrt(power)


def _rosenberg_derivative(phase_frac: np.ndarray, open_quotient: float) -> np.ndarray:
    """Differentiated Rosenberg glottal flow (glottal source times lip radiation) at each sample."""
    tp, tn = 0.65 * open_quotient, 0.35 * open_quotient
    x = phase_frac
    flow = np.where(x < tp, 0.5 * (1 - np.cos(np.pi * x / tp)),
                    np.where(x < tp + tn, np.cos(0.5 * np.pi * (x - tp) / tn), 0.0))
    return np.diff(flow, prepend=flow[:1])


# --- synthesis -----------------------------------------------------------------------------------
def synthesize(speaker: Speaker, words: list[str], n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """One utterance of `words` by `speaker`: float32 (n_samples,) at 16 kHz, peak about 0.5.

    Speech starts after a short random lead and is compressed in time if it would not fit.
    """
    plan = _plan(words, rng)
    frame_s = _HOP / SAMPLE_RATE
    lead = rng.uniform(0.05, 0.30)
    pauses = [rng.uniform(0.03, 0.18) if rng.random() < 0.6 else rng.uniform(0.0, 0.02) for _ in plan]
    speech = sum(s.duration for segs in plan for s in segs) / speaker.rate
    room = n_samples / SAMPLE_RATE - lead - 0.08 - sum(pauses)
    stretch = min(1.0 / speaker.rate, max(room, 0.2) / speech * (1.0 / speaker.rate))

    n_frames = n_samples // _HOP + 1
    formants = np.empty((n_frames, 3))
    voicing, noise, gain, accent = (np.zeros(n_frames) for _ in range(4))
    shape_of = np.full(n_frames, -1)  # index into shape list, -1: aspiration
    shape_names = list(_NOISE_SHAPES)
    formants[:] = _VOWELS["ah"]
    t = lead
    for segs, pause in zip(plan, pauses):
        for s in segs:
            a, b = int(round(t / frame_s)), int(round((t + s.duration * stretch) / frame_s))
            a, b = min(a, n_frames), min(max(b, a + 1), n_frames)
            if b > a:
                formants[a:b] = np.linspace(s.formants_start, s.formants_end, b - a)
                voicing[a:b], noise[a:b], gain[a:b], accent[a:b] = s.voicing, s.noise, s.gain, s.accent
                shape_of[a:b] = -1 if s.noise_shape == "aspiration" else shape_names.index(s.noise_shape)
            t += s.duration * stretch
        t += pause
    # Coarticulation: formants glide between targets; amplitudes ramp over a few milliseconds.
    formants = uniform_filter1d(formants, size=5, axis=0, mode="nearest")
    voicing = uniform_filter1d(voicing, size=3, mode="nearest")
    gain = uniform_filter1d(gain, size=5, mode="nearest")
    accent = uniform_filter1d(accent, size=15, mode="nearest")

    # Speaker: vocal-tract length and idiosyncrasies scale formants; F4, F5 are fixed by tract length,
    # so their response is computed once rather than per frame.
    moving = np.minimum(formants * speaker.vtl_scale * np.asarray(speaker.formant_offsets), 0.45 * SAMPLE_RATE)
    bandwidths = np.array([70.0, 100.0, 150.0]) * speaker.bandwidth_scale
    bandwidths = np.broadcast_to(bandwidths, moving.shape).copy()
    bandwidths[:, 0] += 200 * (voicing < 0.4)  # nasal murmur and voice bar: a damped first resonance
    fixed = _formant_response(np.array([[3500.0, 4500.0]]) * speaker.vtl_scale,
                              np.array([[220.0, 300.0]]) * speaker.bandwidth_scale)
    h_voiced = _formant_response(moving.astype(np.float32), bandwidths.astype(np.float32)) * fixed.astype(np.float32)
    tilt = (np.maximum(_FREQS, 1000.0) / 1000.0) ** (speaker.tilt_db / 6.02)
    h_voiced *= tilt

    # f0: declination, accents, slow wander and jitter.
    pos = np.linspace(0, 1, n_frames)
    wander = uniform_filter1d(rng.standard_normal(n_frames), size=25, mode="nearest") * 3.0
    semitones = 1.5 - 3.0 * pos + speaker.f0_range * accent + wander
    f0_frames = speaker.f0_median * 2 ** (semitones / 12)
    f0 = np.interp(np.arange(n_samples) / _HOP, np.arange(n_frames), f0_frames)
    f0 *= 1 + speaker.jitter * rng.standard_normal(n_samples).cumsum() / np.sqrt(np.arange(1, n_samples + 1))
    phase = np.cumsum(f0 / SAMPLE_RATE)
    pulse = _rosenberg_derivative(phase % 1.0, speaker.open_quotient)
    cycle = np.floor(phase).astype(int)
    shimmer = 1 + speaker.shimmer * rng.standard_normal(cycle[-1] + 2)[cycle]
    pulse *= shimmer / (np.abs(pulse).max() + 1e-9)
    breath = rng.standard_normal(n_samples) * speaker.breathiness * (phase % 1.0 < speaker.open_quotient)
    voiced_src = pulse + breath
    noise_src = rng.standard_normal(n_samples) * 0.25

    samples = np.arange(n_samples) / _HOP
    frames = np.arange(n_frames)
    v_env = np.interp(samples, frames, voicing * gain)
    n_env = np.interp(samples, frames, noise * gain)
    _, _, sv = stft(voiced_src * v_env, nperseg=_NFFT, noverlap=_NFFT - _HOP, boundary="even", padded=True)
    _, _, sn = stft(noise_src * n_env, nperseg=_NFFT, noverlap=_NFFT - _HOP, boundary="even", padded=True)
    n = min(sv.shape[1], n_frames)
    shapes = np.stack(list(_NOISE_SHAPES.values()))
    h_noise = np.where(shape_of[:, None] < 0, h_voiced * 0.5, shapes[np.maximum(shape_of, 0)])
    spec = np.zeros_like(sv)
    spec[:, :n] = sv[:, :n] * h_voiced[:n].T + sn[:, :n] * h_noise[:n].T
    _, y = istft(spec, nperseg=_NFFT, noverlap=_NFFT - _HOP, boundary=True)
    y = y[:n_samples]
    if len(y) < n_samples:
        y = np.pad(y, (0, n_samples - len(y)))
    y = y / (np.abs(y).max() + 1e-9) * 0.5
    y += rng.standard_normal(n_samples) * 3e-5  # recording noise floor, about -80 dB re full scale
    return y.astype(np.float32)
