"""Metrics against mir_eval and against their definitions."""
import warnings

import mir_eval  # a [dev] requirement
import numpy as np
import pytest
import torch

from limuse_edge.metrics import neg_si_snr_loss, sdr, sdri, si_sdr, si_sdri


def _signals(seed=0, shape=(3, 8000)):
    rng = np.random.default_rng(seed)
    t = np.arange(shape[-1]) / 16000
    ref = np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.3 * rng.standard_normal(shape)
    echo = np.roll(ref, 7, axis=-1) * 0.4  # a short filter: BSS Eval treats it as allowed distortion
    est = 0.8 * ref + echo + 0.2 * rng.standard_normal(shape)
    return est, ref


def test_sdr_agrees_with_mir_eval_bss_eval_sources():
    est, ref = _signals()
    ours = sdr(est, ref)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # bss_eval_sources is deprecated in mir_eval 0.8
        theirs = [mir_eval.separation.bss_eval_sources(ref[i:i + 1], est[i:i + 1])[0][0] for i in range(len(ref))]
    assert ours.shape == (3,) and ours.dtype == np.float64
    assert np.max(np.abs(ours - theirs)) < 0.01


def _si_sdr_by_definition(est, ref):
    est = est - est.mean(axis=-1, keepdims=True)
    ref = ref - ref.mean(axis=-1, keepdims=True)
    target = (est * ref).sum(-1, keepdims=True) / (ref * ref).sum(-1, keepdims=True) * ref
    return 10 * np.log10((target ** 2).sum(-1) / ((est - target) ** 2).sum(-1))


def test_si_sdr_is_zero_mean_and_scale_invariant():
    est, ref = _signals(1, (2, 3, 4000))
    value = si_sdr(est, ref)
    assert value.shape == (2, 3)
    assert np.allclose(value, _si_sdr_by_definition(est, ref), atol=1e-9)
    assert np.allclose(si_sdr(3.0 * est + 0.5, ref - 0.2), value, atol=1e-9)  # gain and DC do not count


def test_torch_inputs_and_improvements():
    est, ref = _signals(2)
    mixture = ref + np.random.default_rng(3).standard_normal(ref.shape)
    assert np.allclose(si_sdr(torch.tensor(est, dtype=torch.float32), torch.tensor(ref)), si_sdr(est, ref), atol=1e-4)
    assert np.allclose(sdri(est, ref, mixture), sdr(est, ref) - sdr(mixture, ref))
    assert np.allclose(si_sdri(est, ref, mixture), si_sdr(est, ref) - si_sdr(mixture, ref))
    assert np.all(sdri(est, ref, mixture) > 0)


def test_neg_si_snr_loss_is_differentiable_and_matches_the_metric():
    est, ref = _signals(4)
    est_t = torch.tensor(est, requires_grad=True)
    loss = neg_si_snr_loss(est_t, torch.tensor(ref))
    assert loss.ndim == 0
    assert loss.item() == pytest.approx(-si_sdr(est, ref).mean(), abs=1e-6)
    loss.backward()
    assert torch.isfinite(est_t.grad).all() and est_t.grad.abs().sum() > 0
    # A step against the gradient improves the estimate.
    better = est - 100.0 * est_t.grad.numpy()
    assert si_sdr(better, ref).mean() > si_sdr(est, ref).mean()


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"estimate shape \(2, 100\) and reference shape \(2, 99\) differ"):
        si_sdr(np.zeros((2, 100)), np.zeros((2, 99)))
    with pytest.raises(ValueError, match="differ"):
        neg_si_snr_loss(torch.zeros(2, 10), torch.zeros(10))
