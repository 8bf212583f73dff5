"""Speaker encoders on voices they never saw: how well does the voiceprint that enrols a target tell
speakers apart? Issue 33 asks for this measurement before any change of extractor.

Encoders:
- `limuse voiceprint v1`: the project's extractor (`limuse_runtime.voiceprint`, numpy, 512-d), always;
- `resemblyzer GE2E`: Resemblyzer's pretrained GE2E encoder (256-d, trained on thousands of real
  speakers; its weights ship in the wheel), used as its README does (`preprocess_wav`, which
  normalises the level and trims pauses with webrtcvad, then `embed_utterance`), when the package is
  importable; otherwise its rows say "not installed". It is never a dependency of the project.

Sets, each of 2 s segments:
- held-out voices: the `valid` and `unseen` roles of a speech pool built here (`build_pool`, its own
  seed): espeak variants and talker identities training never uses, and the five flite voices. A voice's
  utterances (a sentence it says twice counted once) are packed in order into segments: whole utterances
  are appended until there are 2 s, the first 2 s are kept and the rest dropped, so no utterance feeds
  two segments. The flite voices
  alone and the valid voices alone are scored too;
- synthetic talkers: 24 identities of the built-in talker (`make_speaker`, seeds the extractor's
  fixed statistics were not taken from), each speaking 6 GRID sentences in 2 s.

Scores (cosine between unit embeddings):
- enrolment from one segment: leave-one-out nearest-neighbour speaker ID over every other segment of
  the set, and the equal error rate of all same-voice against all different-voice segment pairs;
- enrolment from the average of 3 segments: each voice is enrolled by the renormalised mean of 3 of
  its segments (never the test segment), a test segment goes to the nearest enrolment; the equal
  error rate is over (enrolment, test segment) trials. This is the board's case (enrolment and
  mixture are different recordings); one-segment nearest neighbour can lean on a segment of the same
  kind of sentence (GRID or Harvard) by the same voice, and reads higher for an encoder whose vector
  moves with the words."""
from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from limuse_edge.data.pool import build_pool
from limuse_edge.data.talker import grid_sentence, make_speaker, synthesize
from limuse_runtime.contract import SAMPLE_RATE
from limuse_runtime.voiceprint import VOICEPRINT_VERSION, voiceprint

SEED = 3303
SEGMENT_S = 2.0
ENROL_SEGMENTS = 3
MAX_SEGMENTS = 8  # per voice
# espeak voice k and talker k are `valid` when k % 7 == 0: 11 espeak and 6 talker voices, plus 5 flite
POOL = {"talkers": 36, "espeak_voices": 71, "utterances": 14}
TALKERS, TALKER_SEGMENTS = 24, 6
TALKER_SEED = 7000  # the extractor's constants came from make_speaker seeds 0-15


# --- data ----------------------------------------------------------------------------------------
def _pack(waves: list[np.ndarray], n: int) -> list[np.ndarray]:
    """Disjoint n-sample segments: whole utterances appended in order until n samples, the first n kept."""
    segments, acc = [], []
    for wave in waves:
        acc.append(wave)
        if sum(len(w) for w in acc) >= n:
            segments.append(np.concatenate(acc)[:n])
            acc = []
    return segments


def _heldout_voices(root) -> dict:
    """{voice: (role, engine, [segments])} of the pool's valid and unseen voices."""
    index = build_pool(root, seed=SEED, workers=1, progress=False, **POOL)
    n = int(SEGMENT_S * SAMPLE_RATE)
    voices = {}
    for name, entry in sorted(index["voices"].items()):
        if entry["role"] == "train":
            continue
        texts = {}  # espeak and flite are deterministic: a sentence said twice would be a near-copy
        for utt in sorted(entry["utterances"]):
            texts.setdefault(entry["utterances"][utt]["text"], utt)
        waves = [sf.read(str(root / entry["role"] / name / f"{utt}.wav"), dtype="float64")[0]
                 for utt in sorted(texts.values())]
        segments = _pack(waves, n)[:MAX_SEGMENTS]
        assert len(segments) > ENROL_SEGMENTS, f"{name}: {len(segments)} segments of {SEGMENT_S} s"
        voices[name] = (entry["role"], entry["engine"], segments)
    return voices


def _talker_voices() -> dict:
    voices = {}
    for k in range(TALKERS):
        rng = np.random.default_rng(TALKER_SEED + k)
        speaker = make_speaker(f"talker{k:02d}", "mf"[k % 2], rng)
        segments = [synthesize(speaker, grid_sentence(rng)[1], int(SEGMENT_S * SAMPLE_RATE), rng).astype(np.float64)
                    for _ in range(TALKER_SEGMENTS)]
        voices[speaker.name] = ("talker", "talker", segments)
    return voices


# --- encoders ------------------------------------------------------------------------------------
def _encoders() -> tuple[dict, dict]:
    """({name: embed(wave) -> unit vector}, {name: description or why it is missing})."""
    encoders = {"limuse voiceprint v1": voiceprint}
    about = {"limuse voiceprint v1": {"dim": 512, "version": VOICEPRINT_VERSION,
                                      "what": "fixed projection of 40 cepstral and pitch statistics (numpy)"}}
    try:
        from importlib.metadata import version

        import torch
        from resemblyzer import VoiceEncoder, preprocess_wav
    except ImportError as exc:
        about["resemblyzer GE2E"] = {"missing": f"not installed ({exc.name or exc})"}
        return encoders, about
    torch.set_num_threads(1)
    encoder = VoiceEncoder("cpu", verbose=False)
    encoders["resemblyzer GE2E"] = lambda wave: encoder.embed_utterance(
        preprocess_wav(wave.astype(np.float32), source_sr=SAMPLE_RATE))
    about["resemblyzer GE2E"] = {"dim": 256, "version": version("resemblyzer"),
                                 "parameters": sum(p.numel() for p in encoder.parameters()),
                                 "what": "3-layer LSTM (256) on 40 log-mel bands, GE2E loss, 1.6 s windows averaged"}
    return encoders, about


# --- scores --------------------------------------------------------------------------------------
def equal_error_rate(target: np.ndarray, nontarget: np.ndarray) -> float:
    """Where the false-rejection rate (target < t) meets the false-acceptance rate (nontarget >= t)."""
    target, nontarget = np.sort(target), np.sort(nontarget)
    thresholds = np.unique(np.concatenate([target, nontarget, [np.inf]]))
    frr = np.searchsorted(target, thresholds, "left") / len(target)
    far = 1 - np.searchsorted(nontarget, thresholds, "left") / len(nontarget)
    k = int(np.argmin(np.abs(frr - far)))
    return float((frr[k] + far[k]) / 2)


def score(embeddings: dict[str, np.ndarray]) -> dict:
    """embeddings: {voice: (segments, dim) unit rows}; one-segment and averaged enrolment scores."""
    names = sorted(embeddings)
    rows = np.concatenate([embeddings[v] for v in names])
    labels = np.concatenate([[i] * len(embeddings[v]) for i, v in enumerate(names)])
    sim = rows @ rows.T
    np.fill_diagonal(sim, -np.inf)
    nearest = labels[np.argmax(sim, axis=1)]
    upper = np.triu_indices(len(rows), 1)
    same = labels[upper[0]] == labels[upper[1]]
    confusions = Counter(tuple(sorted((names[a], names[b]))) for a, b in zip(labels, nearest) if a != b)

    hits, target, nontarget = [], [], []
    for i, v in enumerate(names):
        for p, segment in enumerate(embeddings[v]):
            enrolments = []
            for w in names:
                own = embeddings[w]
                mean = own[[(p + 1 + j) % len(own) for j in range(ENROL_SEGMENTS)]].mean(axis=0)
                enrolments.append(mean / np.linalg.norm(mean))
            s = np.stack(enrolments) @ segment
            hits.append(int(np.argmax(s)) == i)
            target.append(s[i])
            nontarget.extend(np.delete(s, i))
    return {"voices": len(names), "segments": len(rows),
            "nn_accuracy": float(np.mean(nearest == labels)), "nn_errors": int(np.sum(nearest != labels)),
            "eer": equal_error_rate(sim[upper][same], sim[upper][~same]),
            f"avg{ENROL_SEGMENTS}_accuracy": float(np.mean(hits)), f"avg{ENROL_SEGMENTS}_errors": len(hits) - sum(hits),
            f"avg{ENROL_SEGMENTS}_eer": equal_error_rate(np.array(target), np.array(nontarget)),
            "top_confusions": [[a, b, n] for (a, b), n in confusions.most_common(5)]}


@pytest.mark.slow(reason="a small speech pool (112 voices x 14 utterances, 22 held out) and 144 talker segments, "
                         "embedded by every encoder available: about 2.5 min on one core")
def test_speaker_encoders(results, tmp_path):
    encoders, about = _encoders()
    heldout = _heldout_voices(tmp_path / "pool")
    sets = {
        "held-out voices (valid + unseen)": heldout,
        "  flite voices only (unseen)": {v: x for v, x in heldout.items() if x[0] == "unseen"},
        "  espeak + talker voices only (valid)": {v: x for v, x in heldout.items() if x[0] == "valid"},
        "synthetic talkers": _talker_voices(),
    }
    data = {"encoders": about, "segment_seconds": SEGMENT_S, "enrol_segments": ENROL_SEGMENTS,
            "pool": {"seed": SEED, **POOL, "voices": {v: {"role": r, "engine": e, "segments": len(s)}
                                                      for v, (r, e, s) in heldout.items()}},
            "talkers": {"count": TALKERS, "segments": TALKER_SEGMENTS,
                        "seeds": f"{TALKER_SEED}-{TALKER_SEED + TALKERS - 1}"},
            "rows": []}
    for name, embed in encoders.items():
        cache, seconds, count = {}, 0.0, 0
        for set_name, voices in sets.items():
            embeddings = {}
            for v, (_, _, segments) in voices.items():
                if v not in cache:
                    started = time.perf_counter()
                    cache[v] = np.stack([np.asarray(embed(s), dtype=np.float64) for s in segments])
                    seconds += time.perf_counter() - started
                    count += len(segments)
                embeddings[v] = cache[v] / np.linalg.norm(cache[v], axis=1, keepdims=True)
            data["rows"].append({"encoder": name, "set": set_name.strip(), **score(embeddings)})
        about[name]["ms_per_segment"] = round(1000 * seconds / count, 1)

    avg = f"avg{ENROL_SEGMENTS}"
    table = results.table(
        ["set", "voices x segments", "encoder", "NN accuracy (1 segment)", "EER (1 segment)",
         f"accuracy (mean of {ENROL_SEGMENTS})", f"EER (mean of {ENROL_SEGMENTS})"],
        [[r["set"], f"{r['voices']} x {r['segments'] // r['voices']}", r["encoder"],
          f"{r['nn_accuracy']:.3f} ({r['nn_errors']} wrong)", f"{100 * r['eer']:.1f} %",
          f"{r[avg + '_accuracy']:.3f} ({r[avg + '_errors']} wrong)", f"{100 * r[avg + '_eer']:.1f} %"]
         for r in data["rows"]]
        + [[s.strip(), "-", n, "not installed", "-", "-", "-"] for n, a in about.items() if "missing" in a
           for s in sets])
    encoder_table = results.table(
        ["encoder", "dim", "version", "ms per 2 s segment (1 thread)", "what"],
        [[n, a.get("dim", "-"), a.get("version", "-"), a.get("ms_per_segment", "-"), a.get("what", a.get("missing"))]
         for n, a in about.items()])
    confusions = "\n".join(f"- {r['encoder']}, {r['set']}: " + ", ".join(f"{a} / {b} ({n})" for a, b, n in
                                                                         r["top_confusions"][:3])
                           for r in data["rows"] if r["top_confusions"])
    results.write("voiceprint", data,
                  f"# Speaker encoders on voices they never saw ({SEGMENT_S:g} s segments)\n\n"
                  f"{results.machine_line()}\n\n"
                  f"Leave-one-out nearest-neighbour speaker ID and equal error rate (cosine). Held-out voices: "
                  f"the valid and unseen roles of a speech pool built with seed {SEED}; synthetic talkers: "
                  f"{TALKERS} identities of the built-in talker. \"Mean of {ENROL_SEGMENTS}\": each voice enrolled "
                  f"from the average of {ENROL_SEGMENTS} other segments. Chance accuracy is 1 / voices.\n\n"
                  f"{table}\n{encoder_table}\n## Most confused voice pairs (1-segment nearest neighbour)\n\n"
                  f"{confusions}\n\nflite's kal and kal16 are the same recorded diphone speaker (8 and 16 kHz "
                  f"databases).\n")
    ours = {r["set"]: r for r in data["rows"] if r["encoder"] == "limuse voiceprint v1"}
    assert ours["synthetic talkers"]["nn_accuracy"] > 0.5, "the project's voiceprint no longer tells talkers apart"
    assert all(r["nn_accuracy"] > 1.5 / r["voices"] for r in data["rows"]), "an encoder is at chance"
