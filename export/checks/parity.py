"""How far an exported model's output is from the Brevitas (PyTorch) model's on the same input.

SI-SDR is zero-mean (limuse_edge.metrics.si_sdr, the paper's convention), against the utterance's
target; the difference is |SI-SDR(export) - SI-SDR(Brevitas)| in dB.

Why not zero: float ops between quantizers (norms, PReLU, the mask product) round differently in torch
and onnxruntime in the last float bit; now and then that moves a value across a quantizer's rounding
boundary and the one-step flip propagates (shared/spec/deployment_notes.md, "Parity").
"""
from __future__ import annotations

import numpy as np

from limuse_edge.metrics import si_sdr

# The goal of the issue: the SI-SDR an int8 deployment reports is the one the Brevitas model has.
SI_SDR_TOLERANCE_DB = 0.01


def compare(reference: np.ndarray, candidate: np.ndarray, target: np.ndarray) -> dict[str, float]:
    reference, candidate = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    if reference.shape != candidate.shape:
        raise ValueError(f"parity: output shapes differ, {reference.shape} vs {candidate.shape}")
    # One utterance: a batch-of-one output (1, S) is scored against its (S,) target.
    reference, candidate = reference.reshape(-1), candidate.reshape(-1)
    target = np.asarray(target, np.float64).reshape(-1)
    ref_db, cand_db = float(si_sdr(reference, target)), float(si_sdr(candidate, target))
    return {"max_abs": float(np.abs(reference - candidate).max()),
            "peak": float(np.abs(reference).max()),
            "si_sdr_reference_db": ref_db, "si_sdr_db": cand_db,
            "si_sdr_diff_db": abs(cand_db - ref_db)}


def worst(rows: list[dict[str, float]]) -> dict[str, float]:
    """The worst case over utterances: largest max-abs and largest SI-SDR difference."""
    if not rows:
        return {}
    return {"max_abs": max(r["max_abs"] for r in rows), "si_sdr_diff_db": max(r["si_sdr_diff_db"] for r in rows)}
