"""The causal variant (config causal: true, docs/causal.md): no output sample depends on input later than
the algorithmic latency, the offline model's parameters, the fast training kernels."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from limuse_edge.checkpoint import build_model, load_state, read_checkpoint
from limuse_edge.config import PRESETS, algorithmic_latency_samples, algorithmic_latency_seconds, get_preset
from limuse_edge.metrics import neg_si_snr_loss
from limuse_edge.model.fast import fast_kernels
from limuse_edge.model.layers import CumulativeLayerNorm
from limuse_edge.model.limuse import causal_video_index
from limuse_edge.pretrained import pretrained_path
from limuse_edge.quant import calibrate
from limuse_runtime.contract import SAMPLES_PER_VIDEO_FRAME

SAMPLES = 3200  # 0.2 s: 5 video frames
TINY_NO_CC = get_preset("tiny_causal").replace(context_codec=False)


def _inputs(cfg, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(1, cfg.mic_channels, SAMPLES, generator=g, dtype=dtype),
            torch.randn(1, 512, generator=g, dtype=dtype),
            torch.randn(1, -(-SAMPLES // SAMPLES_PER_VIDEO_FRAME), 256, generator=g, dtype=dtype))


def _model(cfg, recipe="float"):
    torch.manual_seed(0)
    model = build_model(cfg, recipe)
    if model.recipe.quantized:  # fixed activation scales: uncalibrated ones come from the whole input
        mix, vp, vis = _inputs(cfg, seed=5, dtype=torch.float32)
        calibrate(model, [{"mixture": mix, "voiceprint": vp, "visual": vis}])
    return model.double().eval()


def _perturbed_after(inputs, t: int):
    """The inputs with every mixture sample from t on, and every video frame starting at or after t, redrawn."""
    mix, vp, vis = (x.clone() for x in inputs)
    g = torch.Generator().manual_seed(9)
    mix[..., t:] = torch.randn(mix[..., t:].shape, generator=g, dtype=mix.dtype)
    first_frame = -(-t // SAMPLES_PER_VIDEO_FRAME)
    vis[:, first_frame:] = torch.randn(vis[:, first_frame:].shape, generator=g, dtype=vis.dtype)
    return mix, vp, vis


@pytest.mark.parametrize("cfg, recipe", [(get_preset("tiny_causal"), "float"), (get_preset("tiny_causal"), "w3a8"),
                                         (TINY_NO_CC, "float")], ids=["tiny_causal-float", "tiny_causal-w3a8",
                                                                      "tiny_causal_no_cc-float"])
def test_no_output_sample_depends_on_input_beyond_the_latency(cfg, recipe):
    model = _model(cfg, recipe)
    latency = algorithmic_latency_samples(cfg)
    inputs = _inputs(cfg)
    block = cfg.hop * (cfg.context_size // 2 if cfg.context_codec else 1)
    with torch.no_grad():
        reference = model(*inputs)
        # s0 on a block boundary: the worst case, where sample s0 needs input up to s0 + latency - 1 exactly
        for s0 in (30 * block, 30 * block + cfg.hop, 61 * block):
            t = s0 + latency - 1
            changed = model(*_perturbed_after(inputs, t)) != reference
            assert not changed[0, :s0].any(), f"output before {s0} depends on input from {t} on"
            assert changed[0, s0:].any()
            if recipe == "float" and s0 % block == 0:  # the bound is tight
                assert changed[0, s0], f"output {s0} does not depend on input {t}: latency below {latency}?"


def test_the_offline_model_is_not_causal():
    model = _model(get_preset("tiny"))
    inputs = _inputs(model.config)
    with torch.no_grad():
        changed = model(*_perturbed_after(inputs, SAMPLES // 2)) != model(*inputs)
    assert changed[0, :100].all()


def test_video_frames_are_taken_from_the_past_only():
    cfg = get_preset("limuse_k32_causal")
    index = causal_video_index(cfg, cfg.n_frames(48_000), 75)
    first_sample_of_taken = index * SAMPLES_PER_VIDEO_FRAME
    last_sample_of_frame = torch.arange(len(index)) * cfg.hop + cfg.filter_length - 1
    assert (first_sample_of_taken <= last_sample_of_frame).all()
    assert (first_sample_of_taken + SAMPLES_PER_VIDEO_FRAME > last_sample_of_frame).all()  # the latest one
    assert index.max() == 74 and causal_video_index(cfg, 3000, 2).max() == 1  # a short track: hold its last


@pytest.mark.parametrize("channels_last", [False, True])
def test_cumulative_norm_normalises_each_frame_over_the_past(channels_last):
    g = torch.Generator().manual_seed(3)
    norm = CumulativeLayerNorm(6, channels_last).double()
    with torch.no_grad():
        norm.weight.copy_(torch.randn(6, generator=g)), norm.bias.copy_(torch.randn(6, generator=g))
    x = torch.randn(2, 6, 20, generator=g, dtype=torch.float64) * 3 + 1
    y = norm(x.transpose(1, 2) if channels_last else x)
    y = y.transpose(1, 2) if channels_last else y
    for t in (0, 1, 7, 19):
        prefix = F.group_norm(x[:, :, :t + 1], 1, norm.weight, norm.bias, eps=1e-8)
        torch.testing.assert_close(y[:, :, t], prefix[:, :, t], rtol=1e-9, atol=1e-9)


def test_causal_presets_have_the_offline_parameter_counts():
    twins = [name for name in PRESETS if PRESETS[name].causal]
    assert {"limuse_k32_causal", "tiny_causal"} <= set(twins)
    for name in twins:
        offline = name.removesuffix("_causal")
        assert PRESETS[name] == PRESETS[offline].replace(causal=True)
        count = [sum(p.numel() for p in build_model(n).parameters()) for n in (name, offline)]
        assert count[0] == count[1], name


def test_the_offline_float_bundle_loads_into_the_causal_model():
    ckpt = read_checkpoint(pretrained_path("limuse_k32_float"))
    model = build_model("limuse_k32_causal")
    model.load_state_dict(ckpt["state_dict"], strict=True)
    load_state(build_model("tiny_causal", "w3a8"), build_model("tiny").state_dict())


def test_algorithmic_latency():
    k32 = get_preset("limuse_k32_causal")
    # (3c - 1) * hop + L with c = 32 / 2 frames, hop 16, L 32
    assert algorithmic_latency_samples(k32) == 47 * 16 + 32 == 784
    assert algorithmic_latency_seconds(k32) == 0.049
    assert algorithmic_latency_samples(get_preset("tiny_causal")) == 11 * 8 + 16
    assert algorithmic_latency_samples(get_preset("no_cc_k32_causal")) == 32
    assert algorithmic_latency_samples(get_preset("raw_2ch_causal")) == 16
    with pytest.raises(ValueError, match=r"^latency: an offline model \(causal: false\)"):
        algorithmic_latency_samples(get_preset("limuse_k32"))


def test_offline_configs_keep_their_dict_and_causal_ones_round_trip():
    assert "causal" not in get_preset("limuse_k32").to_dict()
    cfg = get_preset("limuse_k32_causal")
    assert cfg.to_dict()["causal"] is True and type(cfg).from_dict(cfg.to_dict()) == cfg


def test_integer_norm_recipes_are_refused_in_one_line():
    with pytest.raises(ValueError, match=r"^causal: integer cumulative norm not supported yet \(recipe "
                                         r"'w3a8-po2-inorm'\)[^\n]*$"):
        build_model("tiny_causal", "w3a8-po2-inorm")


@pytest.mark.parametrize("recipe", ["float", "w3a8"])
def test_a_training_step_under_the_fast_kernels_gives_the_plain_loss(recipe):
    cfg = get_preset("tiny_causal")
    model = _model(cfg, recipe).train()
    mix, vp, vis = _inputs(cfg)
    target = torch.randn(1, SAMPLES, generator=torch.Generator().manual_seed(4), dtype=torch.float64)

    def step():
        model.zero_grad(set_to_none=True)
        loss = neg_si_snr_loss(model(mix, vp, vis), target)
        seen, todo = set(), [loss.grad_fn]
        while todo:
            fn = todo.pop()
            if fn is not None and fn not in seen:
                seen.add(fn)
                todo.extend(f for f, _ in fn.next_functions)
        nodes = {type(fn).__name__ for fn in seen}
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, nodes

    plain_loss, plain_grads, _ = step()
    with fast_kernels():
        fast_loss, fast_grads, fast_nodes = step()
    assert "_DepthwiseConvChannelsLastBackward" in fast_nodes, "the fast depthwise kernel did not run"
    assert fast_loss == pytest.approx(plain_loss, rel=1e-12)
    assert fast_grads.keys() == plain_grads.keys()
    largest = max(float(g.abs().max()) for g in plain_grads.values())
    for name, plain in plain_grads.items():
        err = float((fast_grads[name] - plain).abs().max())
        assert err <= 1e-9 * float(plain.abs().max()) + 1e-12 * largest, name


@pytest.mark.parametrize("dilation", [1, 4])
def test_compiled_causal_depthwise_conv_equals_the_left_padded_conv(dilation):
    from limuse_edge.model import fast
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 40, 6, generator=g, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(3, 40, 6, generator=g, dtype=torch.float64)
    conv = torch.nn.Conv1d(6, 6, 3, dilation=dilation, groups=6).double()
    reference = fast.depthwise_conv(conv, x, causal=True)
    later = x.detach().clone()
    later[:, 20:] += 1
    moved = fast.depthwise_conv(conv, later, causal=True) != reference
    assert not moved[:, :20].any() and moved[:, 20].all()  # left-padded: frame t sees frames ..t only
    reference.backward(grad)
    plain = x.grad.clone(), conv.weight.grad.clone(), conv.bias.grad.clone()
    x.grad = conv.weight.grad = conv.bias.grad = None
    with fast_kernels():
        got = fast.depthwise_conv(conv, x, causal=True)
    got.backward(grad)
    torch.testing.assert_close(got, reference, rtol=1e-12, atol=1e-12)
    for a, b in zip((x.grad, conv.weight.grad, conv.bias.grad), plain):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert fast._depthwise_kernels(x)[0] is not fast._depthwise_values, "inductor could not compile it here"


def test_the_profile_counts_the_cumulative_norms_as_the_offline_norms():
    from limuse_edge.profile import profile_model
    causal, offline = (profile_model(build_model(name), 400, preset=name) for name in ("tiny_causal", "tiny"))
    for key in ("params", "macs_core", "macs_paper_style"):
        assert causal.to_dict()[key] == offline.to_dict()[key], key
