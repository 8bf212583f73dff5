"""The synthetic corpus: build speed, achieved SNRs, voiceprint speaker ID, and the score context of
the test split (unprocessed mixture and an oracle ideal-ratio mask), written to results/corpus.{json,md}.

Run: pytest -s benchmarks/test_corpus.py   (builds 200 + 200 mixtures of 3 s in a tmp dir: about 90 s of
CPU on 2 workers, plus the scoring)
"""
from __future__ import annotations

import os
import pickle
import resource
import time

import numpy as np
import soundfile as sf
from scipy.signal import istft, stft

from limuse_edge.data import layout
from limuse_edge.data.build import build_corpus
from limuse_edge.metrics import sdr, si_sdr

N_TRAIN, N_TEST, SEED = 200, 200, 2024
WORKERS = min(2, os.cpu_count() or 1)
STFT = dict(fs=16000, nperseg=512, noverlap=384)


def _ideal_ratio_mask_estimate(mixture_mic0, target):
    """sqrt(|T|^2 / (|T|^2 + |I|^2)) on the mixture's STFT at mic 0 (512-point Hann, hop 128)."""
    _, _, m = stft(mixture_mic0, **STFT)
    _, _, t = stft(target, **STFT)
    _, _, i = stft(mixture_mic0 - target, **STFT)
    mask = np.sqrt(np.abs(t) ** 2 / (np.abs(t) ** 2 + np.abs(i) ** 2 + 1e-12))
    _, estimate = istft(mask * m, **STFT)
    return estimate[: len(target)]


def _summary(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
            "p5": float(np.percentile(v, 5)), "median": float(np.median(v)), "p95": float(np.percentile(v, 95)),
            "max": float(v.max()), "n": int(v.size)}


def test_corpus_benchmark(tmp_path, results):
    root = tmp_path / "corpus"
    # CPU time of this process and of the (joined) worker processes: unlike wall time, it does not
    # depend on what else the machine is running.
    cpu0 = time.process_time()
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    stats = build_corpus(root, N_TRAIN, 0, N_TEST, seed=SEED, workers=WORKERS, progress=False)
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    build_cpu = (time.process_time() - cpu0 + children1.ru_utime - children0.ru_utime
                 + children1.ru_stime - children0.ru_stime)
    n_items = stats["clean_utterances"] + N_TRAIN + N_TEST
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]

    snrs = np.asarray(stats["snrs"])
    assert snrs.min() >= -5.01 and snrs.max() <= 5.01
    histogram, edges = np.histogram(snrs, bins=10, range=(-5, 5))

    # Voiceprint nearest-neighbour speaker ID among all clean utterances of the test speakers.
    with open(root / layout.VOICEPRINT_FILE, "rb") as f:
        table = pickle.load(f)
    test_speakers = set(stats["speakers"]["test"])
    keys = sorted(k for k in table if k.split("_")[0] in test_speakers)
    embeddings = np.stack([table[k] for k in keys])
    labels = np.array([k.split("_")[0] for k in keys])
    similarity = embeddings @ embeddings.T
    np.fill_diagonal(similarity, -np.inf)
    nn_accuracy = float(np.mean(labels[similarity.argmax(axis=1)] == labels))
    same = similarity[labels[:, None] == labels[None, :]]
    other = similarity[labels[:, None] != labels[None, :]]

    # Score context on the test split.
    mix_si, mix_sdr, irm_si, irm_sdr = [], [], [], []
    for line in layout.read_list(root, "test"):
        mixture, _ = sf.read(root / line.mixture, dtype="float64")
        target, _ = sf.read(root / line.target, dtype="float64")
        estimate = _ideal_ratio_mask_estimate(mixture[:, 0], target)
        mix_si.append(si_sdr(mixture[:, 0], target))
        mix_sdr.append(sdr(mixture[:, 0], target))
        irm_si.append(si_sdr(estimate, target))
        irm_sdr.append(sdr(estimate, target))
    assert np.mean(irm_si) > np.mean(mix_si) + 5  # the oracle separates: the task is not trivial nor impossible

    data = {
        "corpus": {"train": N_TRAIN, "test": N_TEST, "seconds": 3.0, "seed": SEED, "workers": WORKERS,
                   "speakers": {s: len(v) for s, v in stats["speakers"].items()},
                   "clean_utterances": stats["clean_utterances"], "speech": stats["speech"]},
        "build": {"wall_s": stats["build_seconds"], "items": n_items,
                  "wall_ms_per_item": 1000 * stats["build_seconds"] / n_items,
                  "wall_ms_per_mixture_incl_clean": 1000 * stats["build_seconds"] / (N_TRAIN + N_TEST),
                  "cpu_s": build_cpu, "cpu_ms_per_mixture_incl_clean": 1000 * build_cpu / (N_TRAIN + N_TEST),
                  "load_average_1min": os.getloadavg()[0]},
        "snr_db": {**_summary(snrs), "histogram_counts": histogram.tolist(), "histogram_edges": edges.tolist()},
        "voiceprint": {"test_speakers": len(test_speakers), "utterances": len(keys),
                       "nn_speaker_id_accuracy": nn_accuracy,
                       "cosine_same_speaker_mean": float(same[np.isfinite(same)].mean()),
                       "cosine_other_speaker_mean": float(other.mean())},
        "test_split_context_db": {
            "mixture_mic0_si_sdr": _summary(mix_si), "mixture_mic0_sdr": _summary(mix_sdr),
            "oracle_irm_si_sdr": _summary(irm_si), "oracle_irm_sdr": _summary(irm_sdr),
            "oracle_irm_si_sdri_mean": float(np.mean(irm_si) - np.mean(mix_si)),
            "oracle_irm_sdri_mean": float(np.mean(irm_sdr) - np.mean(mix_sdr)),
            "stft": "Hann 512, hop 128, 16 kHz; mask sqrt(|T|^2/(|T|^2+|I|^2)) on mic 0",
        },
    }
    ctx = data["test_split_context_db"]
    rows = [
        ["build wall time per mixture (incl. its share of clean utterances)",
         f"{data['build']['wall_ms_per_mixture_incl_clean']:.1f} ms "
         f"({WORKERS} workers, load {data['build']['load_average_1min']:.1f})"],
        ["build CPU time per mixture (incl. its share of clean utterances)",
         f"{data['build']['cpu_ms_per_mixture_incl_clean']:.1f} ms"],
        ["SNR at mic 0: mean / min / max", f"{snrs.mean():.2f} / {snrs.min():.2f} / {snrs.max():.2f} dB"],
        ["SNR histogram (-5..5 dB, 1 dB bins)", " ".join(str(c) for c in histogram)],
        ["voiceprint NN speaker ID (test speakers)",
         f"{nn_accuracy:.3f} ({len(keys)} utterances, {len(test_speakers)} speakers)"],
        ["voiceprint cosine: same / other speaker",
         f"{data['voiceprint']['cosine_same_speaker_mean']:.3f} / "
         f"{data['voiceprint']['cosine_other_speaker_mean']:.3f}"],
        ["test mixture mic 0: SI-SDR / SDR (mean)",
         f"{ctx['mixture_mic0_si_sdr']['mean']:.2f} / {ctx['mixture_mic0_sdr']['mean']:.2f} dB"],
        ["oracle IRM (STFT 512/128): SI-SDR / SDR (mean)",
         f"{ctx['oracle_irm_si_sdr']['mean']:.2f} / {ctx['oracle_irm_sdr']['mean']:.2f} dB"],
        ["oracle IRM improvement: SI-SDRi / SDRi",
         f"{ctx['oracle_irm_si_sdri_mean']:.2f} / {ctx['oracle_irm_sdri_mean']:.2f} dB"],
    ]
    markdown = (f"# Synthetic corpus (seed {SEED}: {N_TRAIN} train + {N_TEST} test mixtures of 3 s)\n\n"
                + results.table(["measure", "value"], rows)
                + "\nCommand: `pytest -s benchmarks/test_corpus.py`\n")
    results.write("corpus", data, markdown)
