"""Separation metrics (dB) and the training loss, for one estimate per reference, batch-friendly.

- si_sdr: scale-invariant SDR with the mean removed from both signals first, as in the LiMuSE paper
  and asteroid (torchmetrics and fast_bss_eval do not remove it by default; a DC offset can move the
  value by up to 20 dB).
- sdr: BSS Eval v3 SDR (512-tap distortion filter) through fast_bss_eval.sdr, which agrees with
  mir_eval's bss_eval_sources. fast_bss_eval.bss_eval_sources is avoided: under numpy 2 it fails on a
  single source.
- sdri: sdr(estimate) - sdr(mixture at mic 0), the paper's SDRi.
- neg_si_snr_loss: the negative zero-mean SI-SNR averaged over the batch, differentiable.

Inputs are numpy arrays or torch tensors of shape (..., S); the metrics compute in float64 and return
numpy float64 of shape (...).
"""
from __future__ import annotations

import fast_bss_eval
import numpy as np
import torch

_EPS = 1e-8


def _float64(x, what: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 1 or x.shape[-1] < 2:
        raise ValueError(f"{what}: shape {x.shape}; expected (..., samples) with at least 2 samples")
    return x


def _pair(est, ref) -> tuple[np.ndarray, np.ndarray]:
    est, ref = _float64(est, "estimate"), _float64(ref, "reference")
    if est.shape != ref.shape:
        raise ValueError(f"estimate shape {est.shape} and reference shape {ref.shape} differ; expected equal (..., S)")
    return est, ref


def si_sdr(est, ref) -> np.ndarray:
    """Zero-mean scale-invariant SDR in dB, shape (...)."""
    est, ref = _pair(est, ref)
    return fast_bss_eval.si_sdr(ref[..., None, :], est[..., None, :], zero_mean=True)[..., 0]


def sdr(est, ref, filter_length: int = 512) -> np.ndarray:
    """BSS Eval v3 SDR in dB (mir_eval's bss_eval_sources for one source), shape (...)."""
    est, ref = _pair(est, ref)
    return fast_bss_eval.sdr(ref[..., None, :], est[..., None, :], filter_length=filter_length)[..., 0]


def sdri(est, ref, mixture_mic0, filter_length: int = 512) -> np.ndarray:
    """SDR improvement over the unprocessed mixture at mic 0, in dB, shape (...)."""
    return sdr(est, ref, filter_length) - sdr(mixture_mic0, ref, filter_length)


def si_sdri(est, ref, mixture_mic0) -> np.ndarray:
    """SI-SDR improvement over the unprocessed mixture at mic 0, in dB, shape (...)."""
    return si_sdr(est, ref) - si_sdr(mixture_mic0, ref)


def neg_si_snr_loss(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """-mean SI-SNR (zero-mean, dB) of estimates (..., S) against references: a differentiable scalar."""
    if est.shape != ref.shape:
        raise ValueError(f"estimate shape {tuple(est.shape)} and reference shape {tuple(ref.shape)} differ; "
                         "expected equal (..., S)")
    est = est - est.mean(dim=-1, keepdim=True)
    ref = ref - ref.mean(dim=-1, keepdim=True)
    scale = (est * ref).sum(dim=-1, keepdim=True) / (ref.pow(2).sum(dim=-1, keepdim=True) + _EPS)
    projection = scale * ref
    noise = est - projection
    ratio = projection.pow(2).sum(dim=-1) / (noise.pow(2).sum(dim=-1) + _EPS)
    return -(10 * torch.log10(ratio + _EPS)).mean()
