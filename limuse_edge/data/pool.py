"""The speech pool: many voices built offline from nothing, the source that dynamic mixing draws from.

Engines (each a function that speaks one sentence as a 16 kHz float waveform):
- `talker`: the built-in source-filter talker (talker.py), with identities drawn from wider ranges
  than the corpus builder's (children's and low voices, slow and fast, pressed and breathy);
- `espeak`: espeak-ng (Debian package `espeak-ng`), every English dialect x every voice variant, with
  its pitch, pitch range, speed and word gap drawn per voice;
- `flite`: CMU flite (Debian package `flite`), its voices (kal, kal16, awb, rms, slt).
Speaker augmentation on top of the engine: a vocal-tract warp (resampling by a factor near 1 shifts
formants and pitch together, as a shorter or longer vocal tract and larynx would) drawn per voice.

Roles keep whole voices apart: `train` voices feed dynamic mixing; `valid` voices (espeak variants and
talker identities that training never uses) score unseen speakers of the training engines; `unseen`
voices come from an engine training never uses (flite), the held-out check of speech the model has
never heard. A voice belongs to exactly one role; `read_pool` refuses a pool where one does not.

Layout of OUT: `<role>/<voice>/<utt>.wav` (16 kHz, PCM 16: the `--speech DIR` layout of make-corpus,
per role), `pool.json` (voices, their engine, parameters, role and gender; utterances) and
`voiceprints.npz` (each utterance's voiceprint, computed from the stored 16-bit audio, as the builder does).
"""
from __future__ import annotations

import json
import multiprocessing
import shutil
import subprocess
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from limuse_edge.data.cues import voiceprint
from limuse_edge.data.speech import estimate_gender, read_speech
from limuse_edge.data.talker import Speaker, grid_sentence, synthesize
from limuse_runtime.contract import SAMPLE_RATE

POOL_VERSION = 1
ROLES = ("train", "valid", "unseen")
INDEX_FILE, VOICEPRINT_FILE = "pool.json", "voiceprints.npz"
ESPEAK_DIALECTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd",
                   "en-029", "en-us-nyc")
# Whispered variants have no voicing (no pitch to embed or to separate by); the rest are all used.
ESPEAK_EXCLUDED_VARIANTS = ("whisper", "whisperf")
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
WARP_RANGE = (0.9, 1.12)
MIN_UTTERANCE_S = 0.8

# Sentences beyond GRID's grammar, for phonetic variety (Harvard sentences, IEEE 1969, public domain).
HARVARD = (
    "The birch canoe slid on the smooth planks.", "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.", "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.", "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.", "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.", "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.", "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.", "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.", "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.", "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.", "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock.", "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.", "The swan dive was far short of perfect.",
    "The beauty of the view stunned the young boy.", "Two blue fish swam in the tank.",
    "Her purse was full of useless trash.", "The colt reared and threw the tall rider.",
    "It snowed, rained, and hailed the same morning.", "Read verse out loud for pleasure.",
    "Hoist the load to your left shoulder.", "Take the winding path to reach the lake.",
    "Note closely the size of the gas tank.", "Wipe the grease off his dirty face.",
    "Mend the coat before you go out.", "The wrist was badly strained and hung limp.",
    "The stray cat gave birth to kittens.", "The young girl gave no clear response.",
    "The meal was cooked before the bell rang.", "What joy there is in living.",
)


@dataclass(frozen=True)
class Voice:
    name: str
    role: str
    engine: str
    params: dict
    warp: float
    seed: int


@dataclass(frozen=True)
class UtteranceJob:
    root: str
    voice: Voice
    name: str
    text: str
    seed: int


# --- engines -----------------------------------------------------------------------------------
def _talker_identity(voice: Voice) -> Speaker:
    p = voice.params
    return Speaker(name=voice.name, gender=p["gender"], f0_median=p["f0"], f0_range=p["f0_range"],
                   vtl_scale=p["vtl"], formant_offsets=tuple(p["formant_offsets"]), bandwidth_scale=p["bandwidth"],
                   rate=p["rate"], open_quotient=p["open_quotient"], tilt_db=p["tilt_db"],
                   breathiness=p["breathiness"], jitter=p["jitter"], shimmer=p["shimmer"])


def _speak_talker(voice: Voice, text: str, rng: np.random.Generator) -> np.ndarray:
    words = text.split()
    seconds = 1.2 + 0.45 * len(words) / voice.params["rate"]
    return synthesize(_talker_identity(voice), words, int(seconds * SAMPLE_RATE), rng).astype(np.float32)


def _run_tts(command: list[str], wav: Path) -> np.ndarray:
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=120)
    except FileNotFoundError:
        raise ValueError(f"{command[0]}: not installed; expected the Debian package "
                         f"(apt-get install espeak-ng flite) to build the speech pool") from None
    except subprocess.CalledProcessError as exc:
        raise ValueError(f"{' '.join(command[:3])}...: failed ({exc.stderr.decode(errors='replace').strip()[:200]})") from None
    return read_speech(wav)


def _speak_espeak(voice: Voice, text: str, rng: np.random.Generator) -> np.ndarray:
    p = voice.params
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "u.wav"
        speed = int(p["speed"] * rng.uniform(0.93, 1.07))  # the same talker is not equally fast every time
        return _run_tts(["espeak-ng", "-v", f"{p['dialect']}+{p['variant']}", "-p", str(p["pitch"]),
                         "-s", str(speed), "-g", str(p["word_gap"]),
                         "-w", str(wav), text], wav)


def _speak_flite(voice: Voice, text: str, rng: np.random.Generator) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "u.wav"
        stretch = float(voice.params["duration_stretch"] * rng.uniform(0.95, 1.05))
        return _run_tts(["flite", "-voice", voice.params["voice"], "--setf", f"duration_stretch={stretch:.3f}",
                         "-t", text, "-o", str(wav)], wav)


ENGINES = {"talker": _speak_talker, "espeak": _speak_espeak, "flite": _speak_flite}


def espeak_variants() -> list[str]:
    """Every voice variant this espeak-ng install has, less the whispered ones."""
    try:
        out = subprocess.run(["espeak-ng", "--voices=variant"], check=True, capture_output=True, text=True).stdout
    except FileNotFoundError:
        raise ValueError("espeak-ng: not installed; expected the Debian package (apt-get install espeak-ng) "
                         "to build the speech pool") from None
    files = [line.split()[-1] for line in out.splitlines()[1:] if line.split()]
    return sorted({f.split("/")[-1] for f in files} - set(ESPEAK_EXCLUDED_VARIANTS))


# --- planning ----------------------------------------------------------------------------------
def _talker_params(rng: np.random.Generator) -> dict:
    """Wider than the corpus builder's adult ranges: low male to child-like voices, slow to fast."""
    gender = "fm"[int(rng.integers(2))]
    child = rng.random() < 0.15
    f0 = rng.uniform(240, 340) if child else (rng.uniform(70, 160) if gender == "m" else rng.uniform(150, 280))
    vtl = rng.uniform(1.22, 1.40) if child else (rng.uniform(0.85, 1.08) if gender == "m" else rng.uniform(1.05, 1.30))
    return {"gender": gender, "f0": float(f0), "f0_range": float(rng.uniform(1.0, 7.0)), "vtl": float(vtl),
            "formant_offsets": [float(v) for v in rng.uniform(0.9, 1.1, size=3)],
            "bandwidth": float(rng.uniform(0.7, 1.6)), "rate": float(rng.uniform(0.7, 1.4)),
            "open_quotient": float(rng.uniform(0.35, 0.8)), "tilt_db": float(rng.uniform(-6.0, 2.0)),
            "breathiness": float(rng.uniform(0.005, 0.2)), "jitter": float(rng.uniform(0.002, 0.02)),
            "shimmer": float(rng.uniform(0.01, 0.1))}


def plan_voices(seed: int, talkers: int, espeak_voices: int, valid_fraction: float = 0.15) -> list[Voice]:
    """Voices for every role. Valid voices use espeak variants and talker identities no train voice uses."""
    rng = np.random.default_rng([seed, 11])
    voices = []
    variants = espeak_variants() if espeak_voices else []
    held_out = set(rng.choice(variants, size=max(1, round(valid_fraction * len(variants))), replace=False)) \
        if variants else set()
    for k in range(espeak_voices):
        role = "valid" if k % round(1 / valid_fraction) == 0 else "train"
        pool = sorted(held_out) if role == "valid" else sorted(set(variants) - held_out)
        params = {"dialect": str(rng.choice(ESPEAK_DIALECTS)), "variant": str(rng.choice(pool)),
                  "pitch": int(rng.integers(15, 86)), "speed": int(rng.integers(125, 196)), "word_gap": int(rng.integers(0, 4))}
        voices.append(Voice(f"espeak{k:03d}", role, "espeak", params, float(rng.uniform(*WARP_RANGE)),
                            int(rng.integers(2 ** 31))))
    for k in range(talkers):
        role = "valid" if k % round(1 / valid_fraction) == 0 else "train"
        voices.append(Voice(f"talker{k:03d}", role, "talker", _talker_params(rng), float(rng.uniform(*WARP_RANGE)),
                            int(rng.integers(2 ** 31))))
    for name in FLITE_VOICES:
        voices.append(Voice(f"flite-{name}", "unseen", "flite",
                            {"voice": name, "duration_stretch": float(rng.uniform(0.9, 1.15))}, 1.0,
                            int(rng.integers(2 ** 31))))
    return voices


def _sentence(voice: Voice, rng: np.random.Generator) -> str:
    if voice.engine == "talker" or rng.random() < 0.5:  # the talker speaks GRID's vocabulary only
        return " ".join(grid_sentence(rng)[1])
    return str(rng.choice(HARVARD))


def render(job: UtteranceJob) -> tuple[str, str, int, np.ndarray]:
    """One utterance: spoken, warped, peak-normalised, written; returns (voice, utt, samples, voiceprint)."""
    rng = np.random.default_rng([job.seed, 1])
    wave = ENGINES[job.voice.engine](job.voice, job.text, rng).astype(np.float64)
    if job.voice.warp != 1.0:  # resample by 1/warp and play at 16 kHz: formants and pitch scale by warp
        n = int(round(len(wave) / job.voice.warp))
        wave = np.interp(np.arange(n) * job.voice.warp, np.arange(len(wave)), wave)
    wave = _trim_silence(wave)
    peak = float(np.abs(wave).max()) if len(wave) else 0.0
    if peak == 0 or len(wave) < MIN_UTTERANCE_S * SAMPLE_RATE:
        raise ValueError(f"voice {job.voice.name}: {job.text!r} came out silent or shorter than "
                         f"{MIN_UTTERANCE_S} s; expected speech")
    path = Path(job.root) / job.voice.role / job.voice.name / f"{job.name}.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave / peak * 0.5, SAMPLE_RATE, subtype="PCM_16")
    stored, _ = sf.read(str(path), dtype="float64")  # cues from exactly what the pool stores
    return job.voice.name, job.name, len(stored), voiceprint(stored)


def _trim_silence(wave: np.ndarray, floor_db: float = -45.0, margin_s: float = 0.1) -> np.ndarray:
    """Leading and trailing silence cut to `margin_s`, so crops land on speech."""
    env = np.abs(wave)
    loud = np.flatnonzero(env > env.max() * 10 ** (floor_db / 20)) if len(wave) else []
    if len(loud) == 0:
        return wave[:0]
    margin = int(margin_s * SAMPLE_RATE)
    return wave[max(0, loud[0] - margin):loud[-1] + margin]


def _one_blas_thread():
    threadpool_limits(1)


def build_pool(out: "str | Path", seed: int, talkers: int = 120, espeak_voices: int = 240,
               utterances: int = 12, workers: int = 1, progress: bool = True) -> dict:
    """Write a speech pool at `out` (which must not exist); returns its index."""
    out = Path(out)
    if out.exists():
        raise ValueError(f"--out {out}: already exists; expected a new directory (a pool is never overwritten)")
    if utterances < 2 or talkers < 0 or espeak_voices < 0:
        raise ValueError(f"pool: {talkers} talkers, {espeak_voices} espeak voices, {utterances} utterances; "
                         f"expected counts >= 0 and at least 2 utterances per voice")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    started = time.perf_counter()
    try:
        voices = plan_voices(seed, talkers, espeak_voices)
        rng = np.random.default_rng([seed, 12])
        jobs = [UtteranceJob(str(tmp), v, f"u{k:02d}", _sentence(v, rng), zlib.crc32(f"{seed}/{v.name}/{k}".encode()))
                for v in voices for k in range(utterances)]
        bar = tqdm(total=len(jobs), desc="speech pool", unit="utt", disable=not progress, dynamic_ncols=True)
        results = []
        with multiprocessing.get_context("fork").Pool(max(1, workers), initializer=_one_blas_thread) as pool:
            for result in pool.imap(render, jobs, chunksize=4):
                results.append(result)
                bar.update()
        bar.close()
        by_voice = {v.name: v for v in voices}
        index = {"version": POOL_VERSION, "seed": seed, "sample_rate": SAMPLE_RATE,
                 "voices": {}, "build_seconds": None}
        for v in voices:
            index["voices"][v.name] = {**asdict(v), "utterances": {}}
        vps = {}
        for (voice, utt, n, vp), job in zip(results, jobs):
            index["voices"][voice]["utterances"][utt] = {"samples": n, "text": job.text}
            vps[f"{by_voice[voice].role}/{voice}/{utt}"] = vp
        for name, entry in index["voices"].items():  # as make-corpus --speech judges it: median pitch
            first = sorted(entry["utterances"])[0]
            entry["gender"] = estimate_gender(tmp / entry["role"] / name / f"{first}.wav")
        index["build_seconds"] = round(time.perf_counter() - started, 1)
        np.savez(tmp / VOICEPRINT_FILE, **vps)
        (tmp / INDEX_FILE).write_text(json.dumps(index, indent=1) + "\n")
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return index


# --- reading -----------------------------------------------------------------------------------
@dataclass
class Pool:
    root: Path
    voices: dict  # name -> index entry

    def role(self, role: str) -> dict:
        return {n: v for n, v in self.voices.items() if v["role"] == role}

    def wav_path(self, voice: str, utt: str) -> Path:
        return self.root / self.voices[voice]["role"] / voice / f"{utt}.wav"


def read_pool(root: "str | Path") -> Pool:
    root = Path(root)
    index_path = root / INDEX_FILE
    if not index_path.is_file():
        raise FileNotFoundError(f"{root}: no {INDEX_FILE}; expected a speech pool made by "
                                f"`limuse-edge make-speech-pool`")
    index = json.loads(index_path.read_text())
    if index.get("version") != POOL_VERSION:
        raise ValueError(f"{index_path}: pool version {index.get('version')}; expected {POOL_VERSION}")
    voices = index["voices"]
    for name, entry in voices.items():
        if entry["role"] not in ROLES:
            raise ValueError(f"{index_path}: voice {name!r} has role {entry['role']!r}; expected one of {ROLES}")
        on_disk = [r for r in ROLES if (root / r / name).is_dir()]
        if on_disk != [entry["role"]]:
            raise ValueError(f"{root}: voice {name!r} is in {on_disk or 'no role folder'}; expected it in "
                             f"{entry['role']!r} only (a voice in two roles would leak into validation)")
    return Pool(root, voices)
