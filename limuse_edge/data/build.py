"""Build an offline corpus in the MC_Grid layout (see layout.py) from synthetic or recorded speech.

The build is planned up front in the main process (speakers, utterances, every mixture's geometry,
SNR and level), all from `seed`; the work then runs in two parallel stages, each item with its own
seed, so the corpus does not depend on the number of workers:
1. every clean utterance: synthesised or read and resampled, written as ref/<split>/<spk>/<utt>.wav,
   embedded (voiceprint) and, unless it has no face track, turned into lip_fea/<split>/<spk>/<utt>.npy;
2. every mixture: both clean utterances spatialised, mixed at mic 0 at the planned SNR, scaled to the
   planned peak level and written (mixture: 2 channels, target: the target's image at mic 0).
Everything is written into a temporary directory beside `out`, renamed to `out` only at the end.
"""
from __future__ import annotations

import json
import math
import multiprocessing
import os
import pickle
import shutil
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from limuse_edge.data import layout
from limuse_edge.data.cues import VOICEPRINT_VERSION, visual_features, voiceprint
from limuse_edge.data.spatial import MIC_SPACING, mix, snr_at_mic0, spatialise
from limuse_edge.data.speech import estimate_gender, fit_length, read_speech, scan_speech_dir
from limuse_edge.data.talker import Speaker, grid_sentence, make_speaker, synthesize
from limuse_runtime.contract import SAMPLE_RATE
SNR_RANGE_DB = (-5.0, 5.0)
DISTANCE_RANGE_M = (1.0, 4.0)
PEAK_RANGE = (0.3, 0.9)  # mixture peak level: recordings come at different levels
SYNTHETIC_SPEAKERS = {"train": 20, "valid": 6, "test": 6}  # GRID-like: 6 + 6 held-out speakers
MAX_LAG_S = 0.06


@dataclass(frozen=True)
class UtteranceJob:
    root: str
    split: str
    speaker: str
    name: str
    seed: tuple
    n_samples: int
    face: bool
    face_seed: int
    lag_seconds: float
    identity: Speaker | None = None  # synthetic talker...
    words: tuple[str, ...] | None = None
    source: str | None = None  # ...or a speech file


@dataclass(frozen=True)
class MixtureJob:
    root: str
    line: layout.ListLine
    interferer_reference: str  # clean interferer utterance (ref/...)
    target_clean: str  # clean target utterance (ref/...)
    snr_db: float
    peak: float


def render_utterance(job: UtteranceJob) -> tuple[str, np.ndarray]:
    """Stage 1 for one clean utterance; returns its voiceprint key and embedding."""
    rng = np.random.default_rng(job.seed)
    if job.source is not None:
        wave = fit_length(read_speech(job.source), job.n_samples, rng)
        peak = float(np.abs(wave).max())
        if peak == 0:
            raise ValueError(f"{job.source}: silent audio; expected speech")
        wave = wave / peak * 0.5
    else:
        wave = synthesize(job.identity, list(job.words), job.n_samples, rng)
    path = Path(job.root) / layout.reference_path(job.split, job.speaker, job.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave, SAMPLE_RATE, subtype="PCM_16")
    wave, _ = sf.read(str(path), dtype="float64")  # cues from exactly what the corpus stores
    if job.face:
        lip = Path(job.root) / layout.lip_path(job.split, job.speaker, job.name)
        lip.parent.mkdir(parents=True, exist_ok=True)
        np.save(lip, visual_features(wave, job.face_seed, job.lag_seconds, rng=rng))
    return layout.voiceprint_key(job.speaker, job.name), voiceprint(wave)


def render_mixture(job: MixtureJob) -> float:
    """Stage 2 for one list line; returns the SNR at mic 0 as written (after 16-bit rounding)."""
    root, line = Path(job.root), job.line
    target, _ = sf.read(str(root / job.target_clean), dtype="float64")
    interferer, _ = sf.read(str(root / job.interferer_reference), dtype="float64")
    mixture, target_image, interferer_image = mix(
        spatialise(target, line.target_azimuth, line.target_distance),
        spatialise(interferer, line.interferer_azimuth, line.interferer_distance), job.snr_db)
    gain = job.peak / np.abs(mixture).max()
    for rel, audio in ((line.mixture, (mixture * gain).T), (line.target, target_image[0] * gain)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(root / rel), audio, SAMPLE_RATE, subtype="PCM_16")
    written_mix, _ = sf.read(str(root / line.mixture), dtype="float64")
    written_target, _ = sf.read(str(root / line.target), dtype="float64")
    return snr_at_mic0(written_target, written_mix[:, 0] - written_target)


# --- planning ------------------------------------------------------------------------------------
def _balanced(genders: dict[str, str], counts: dict[str, int], rng: np.random.Generator) -> dict[str, list[str]]:
    """Disjoint speaker sets per split with genders as balanced as the pool allows."""
    pools = {g: [s for s in sorted(genders) if genders[s] == g] for g in ("f", "m")}
    for g in pools:
        rng.shuffle(pools[g])
    assigned = {}
    for split in ("test", "valid", "train"):  # held-out splits first: they need the balance most
        want, chosen = counts[split], []
        while len(chosen) < want and (pools["f"] or pools["m"]):
            n_f = sum(genders[s] == "f" for s in chosen)
            g = "f" if (n_f * 2 < len(chosen) + 1 and pools["f"]) or not pools["m"] else "m"
            chosen.append(pools[g].pop())
        assigned[split] = sorted(chosen)
    return assigned


def _speaker_counts(n_lines: dict[str, int], n_speakers: int) -> dict[str, int]:
    active = [s for s in layout.SPLITS if n_lines[s] > 0]
    counts = {s: 0 for s in layout.SPLITS}
    if len(active) == 1:  # one split (a held-out set from a folder of its own voices): every speaker
        counts[active[0]] = n_speakers
        return counts
    for s in ("valid", "test"):
        if s in active:
            counts[s] = max(2, round(0.15 * n_speakers))
    if "train" in active:
        counts["train"] = n_speakers - counts["valid"] - counts["test"]
    short = [s for s in active if counts[s] < 2]
    if short or sum(counts.values()) > n_speakers:
        raise ValueError(f"{n_speakers} speakers cannot fill splits {active} with 2 disjoint speakers each; "
                         "expected more speaker folders or fewer non-empty splits")
    return counts


def _face_seed(seed: int, speaker: str) -> int:
    return int(np.random.default_rng([seed, zlib.crc32(speaker.encode())]).integers(2 ** 31))


def plan_corpus(out: Path, n_lines: dict[str, int], seed: int, seconds: float, speech_dir, no_face_fraction: float,
                speakers_per_split: dict[str, int] | None = None):
    """All utterance and mixture jobs, decided here so that workers only execute."""
    rng = np.random.default_rng([seed, 1])
    n_samples = int(round(seconds * SAMPLE_RATE))
    identities, sources = {}, {}
    if speech_dir is None:
        counts = {s: (speakers_per_split or SYNTHETIC_SPEAKERS)[s] if n_lines[s] else 0 for s in layout.SPLITS}
        if any(n_lines[s] and counts[s] < 2 for s in layout.SPLITS):
            raise ValueError(f"speakers_per_split: {counts}; expected at least 2 per non-empty split")
        names, number = {}, 0
        for split in layout.SPLITS:
            names[split] = []
            for k in range(counts[split]):
                number += 1
                name = f"s{number}"
                identities[name] = make_speaker(name, "fm"[k % 2], np.random.default_rng([seed, 2, number]))
                names[split].append(name)
        genders = {n: identities[n].gender for n in identities}
    else:
        sources = scan_speech_dir(speech_dir)
        genders = {spk: estimate_gender(files[0]) for spk, files in sources.items()}
        names = _balanced(genders, _speaker_counts(n_lines, len(sources)), rng)

    utterances, mixtures = [], []
    for split_index, split in enumerate(layout.SPLITS):
        speakers = names[split]
        if not n_lines[split]:
            continue
        per_speaker = max(3, math.ceil(n_lines[split] / len(speakers)) + 2)
        pool = {}
        for spk in speakers:
            face_seed = _face_seed(seed, spk)
            if speech_dir is None:
                chosen, taken = [], set()
                while len(chosen) < per_speaker:
                    ident, words = grid_sentence(rng)
                    if ident not in taken:
                        taken.add(ident)
                        chosen.append((ident, dict(words=tuple(words), identity=identities[spk])))
            else:
                files = sources[spk]
                picks = rng.permutation(len(files))[:per_speaker]
                chosen, taken = [], set()
                for i in sorted(picks):
                    base = layout.safe_name(files[i].stem)
                    ident, k = base, 1
                    while ident in taken:
                        k += 1
                        ident = f"{base}-{k}"
                    taken.add(ident)
                    chosen.append((ident, dict(source=str(files[i]))))
            pool[spk] = [c[0] for c in chosen]
            for ident, extra in chosen:
                utterances.append(UtteranceJob(
                    root=str(out), split=split, speaker=spk, name=ident,
                    seed=(seed, 3, split_index, zlib.crc32(f"{spk}/{ident}".encode())), n_samples=n_samples,
                    face=bool(rng.random() >= no_face_fraction), face_seed=face_seed,
                    lag_seconds=float(np.clip(rng.normal(0, 0.02), -MAX_LAG_S, MAX_LAG_S)), **extra))
        for index in range(n_lines[split]):
            t_spk = speakers[index % len(speakers)] if index < len(speakers) else str(rng.choice(speakers))
            i_spk = str(rng.choice([s for s in speakers if s != t_spk]))
            t_utt = str(rng.choice(pool[t_spk]))
            r_utt = str(rng.choice([u for u in pool[t_spk] if u != t_utt]))
            i_utt = str(rng.choice(pool[i_spk]))
            line = layout.ListLine(
                mixture=layout.mixture_path(split, index, t_spk, t_utt, i_spk, i_utt),
                target=layout.target_path(split, index, t_spk, t_utt),
                reference=layout.reference_path(split, t_spk, r_utt),
                lip=layout.lip_path(split, t_spk, t_utt),
                target_azimuth=float(rng.uniform(0, 2 * np.pi)),
                target_distance=float(rng.uniform(*DISTANCE_RANGE_M)),
                interferer_azimuth=float(rng.uniform(0, 2 * np.pi)),
                interferer_distance=float(rng.uniform(*DISTANCE_RANGE_M)),
                target_gender=genders[t_spk], interferer_gender=genders[i_spk])
            mixtures.append(MixtureJob(
                root=str(out), line=line,
                target_clean=layout.reference_path(split, t_spk, t_utt),
                interferer_reference=layout.reference_path(split, i_spk, i_utt),
                snr_db=float(rng.uniform(*SNR_RANGE_DB)), peak=float(rng.uniform(*PEAK_RANGE))))
    return utterances, mixtures


def _one_blas_thread():
    # Parallelism is across utterances; multithreaded BLAS on their small products only contends
    # (measured: voiceprint 44 ms with one thread, 120 ms with the default on a loaded 2-core machine).
    threadpool_limits(1)


def _run(function, jobs, workers: int, desc: str, progress: bool):
    bar = tqdm(total=len(jobs), desc=desc, unit="utt", disable=not progress, dynamic_ncols=True)
    try:
        if workers <= 1:
            with threadpool_limits(1):
                for job in jobs:
                    yield function(job)
                    bar.update()
            return
        # fork: workers start at once, without re-importing the caller's modules (torch, brevitas).
        with multiprocessing.get_context("fork").Pool(workers, initializer=_one_blas_thread) as pool:
            for result in pool.imap(function, jobs, chunksize=8):
                yield result
                bar.update()
    finally:
        bar.close()


def build_corpus(out: "str | Path", n_train: int, n_valid: int, n_test: int, seed: int, seconds: float = 3.0,
                 speech_dir: "str | Path | None" = None, no_face_fraction: float = 0.1, workers: int = 2,
                 progress: bool = True, speakers_per_split: dict[str, int] | None = None) -> dict:
    """Write a complete MC_Grid-layout corpus at `out` (which must not exist). Returns build statistics."""
    out = Path(out)
    n_lines = {"train": n_train, "valid": n_valid, "test": n_test}
    if any(not isinstance(n, int) or n < 0 for n in n_lines.values()) or not sum(n_lines.values()):
        raise ValueError(f"--train/--valid/--test: got {n_lines}; expected counts >= 0, not all zero")
    if not 0.5 <= seconds <= 60:
        raise ValueError(f"--seconds: got {seconds}; expected 0.5 to 60 seconds")
    if not 0.0 <= no_face_fraction <= 1.0:
        raise ValueError(f"no_face_fraction: got {no_face_fraction}; expected a fraction in [0, 1]")
    if out.exists():
        raise ValueError(f"--out {out}: already exists; expected a new directory (a corpus is never overwritten)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    started = time.perf_counter()
    try:
        utterances, mixtures = plan_corpus(tmp, n_lines, seed, seconds, speech_dir, no_face_fraction,
                                           speakers_per_split)
        voiceprints = dict(_run(render_utterance, utterances, workers, "utterances", progress))
        snrs = list(_run(render_mixture, mixtures, workers, "mixtures", progress))
        for split in layout.SPLITS:
            lines = [m.line.to_text() for m in mixtures if m.line.mixture.split("/")[1] == split]
            layout.list_path(tmp, split).write_text("".join(line + "\n" for line in lines))
        # Arrays unpickled from workers carry their own dtype objects, which changes the pickle's bytes;
        # arrays rebuilt from Python floats share the canonical one, whatever the number of workers.
        voiceprints = {key: np.array(voiceprints[key].tolist(), dtype=np.float32) for key in sorted(voiceprints)}
        with open(tmp / layout.VOICEPRINT_FILE, "wb") as f:
            pickle.dump(voiceprints, f, protocol=pickle.HIGHEST_PROTOCOL)
        stats = {
            "seed": seed, "seconds": seconds, "lines": n_lines, "clean_utterances": len(utterances),
            "speech": str(speech_dir) if speech_dir else "synthetic talker",
            "speakers": {s: sorted({u.speaker for u in utterances if u.split == s}) for s in layout.SPLITS},
            "no_face_fraction": no_face_fraction, "mic_spacing_m": MIC_SPACING, "snr_range_db": SNR_RANGE_DB,
            "distance_range_m": DISTANCE_RANGE_M, "voiceprint_version": VOICEPRINT_VERSION,
            "snr_db_written": {"min": min(snrs), "max": max(snrs), "mean": float(np.mean(snrs))},
            "build_seconds": time.perf_counter() - started,
        }
        (tmp / "build_info.json").write_text(json.dumps(stats, indent=1) + "\n")
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    stats["snrs"] = snrs
    return stats


