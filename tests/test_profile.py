"""Profiling: counts from hooks against independent counts (torch's FLOP counter, hand arithmetic)."""
from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from limuse_edge.checkpoint import build_model
from limuse_edge.config import get_preset
from limuse_edge.model import LiMuSE
from limuse_edge.profile import example_inputs, format_profile, ideal_size_bits, profile_model


@pytest.mark.parametrize("variant", [{}, dict(context_codec=False), dict(cues=("visual",)),
                                     dict(grouped=False, groups=1, context_codec=False)])
def test_core_macs_equal_torch_flop_counter(variant):
    """torch counts 2 FLOPs per MAC of every matmul and (transposed) convolution, biases excluded. The
    quantized model runs every layer as written (no float TAC shortcut), so it is the reference."""
    cfg = get_preset("tiny").replace(**variant)
    quantized = LiMuSE(cfg, "w3a8").eval()
    counter = FlopCounterMode(display=False)
    with counter:  # FlopCounterMode needs autograd on for Brevitas layers
        quantized(**example_inputs(quantized, 1001))
    expected = counter.get_total_flops() // 2
    assert profile_model(quantized, 1001).macs_core == expected
    assert profile_model(LiMuSE(cfg), 1001).macs_core == expected


def test_the_float_tac_shortcut_does_fewer_macs_than_written():
    """The exact float rewrite of TAC's output layer saves MACs; the profile still counts the written form."""
    model = build_model("tiny").eval()
    counter = FlopCounterMode(display=False)
    with counter:  # FlopCounterMode needs autograd on for Brevitas layers
        model(**example_inputs(model, 1001))
    assert counter.get_total_flops() // 2 < profile_model(model, 1001).macs_core


def test_counts_of_a_hand_checked_model():
    """tiny without cues or codec, 64 samples: every figure below is worked out by hand."""
    cfg = get_preset("tiny").replace(cues=(), context_codec=False, grouped=False, groups=1, audio_layers=1,
                                     fusion_layers=1, mic_channels=1)
    model = LiMuSE(cfg)
    p = profile_model(model, 64)
    t = cfg.n_frames(64)  # 7 frames of 16 samples, hop 8
    n, h = 16, 32
    assert t == 7
    block_core = t * (n * h + 3 * h + h * n)  # expand, depthwise (k=3), project
    block_other = t * (h + h + n) + 2 * t * h + 2 * 2 * t * h  # biases of 3 layers, 2 PReLU, 2 GroupNorm
    expected_core = {"encoder": t * n * 16, "audio_stage": block_core, "fusion_stage": block_core,
                     "mask": t * n * n, "decoder": t * n * 16}
    expected_other = {"encoder": t * n, "norm": 2 * t * n, "audio_stage": 2 * t * n + block_other,
                      "fusion_stage": 2 * t * n + block_other, "mask": t * n, "decoder": 64}
    assert {k: c.macs_core for k, c in p.parts.items() if c.macs_core} == expected_core
    assert {k: c.macs_paper_style - c.macs_core for k, c in p.parts.items()} == \
        {k: expected_other.get(k, 0) for k in p.parts}
    assert p.params == sum(x.numel() for x in model.parameters())
    assert p.quantized_weights == n * 16 + 2 * (n * h + 3 * h + h * n) + n * n
    assert p.size_mib == p.fp32_size_mib == p.params * 4 / 2 ** 20


def test_quantized_size_follows_the_spec_convention():
    model = build_model("tiny", "w3a8")
    p = profile_model(model, 400)
    bits = 3 * p.quantized_weights + 32 * (p.params - p.quantized_weights + 2 * p.quantized_layers)
    assert ideal_size_bits(model) == bits
    assert p.size_mib == bits / 8 / 2 ** 20
    assert p.quantized_layers == 76 and p.quantizer_params == 3 * 76


def test_mixed_bits_and_per_channel_scales_are_counted():
    model = build_model("tiny", "w3a8-pc-edge8")
    p = profile_model(model, 400)
    edge_weights = model.encoder.weight.numel() + model.mask.weight.numel()
    scales = sum(m.weight.shape[0] + 1 for m in (model.encoder, model.mask))  # the edge layers alone
    assert ideal_size_bits(model) > 3 * p.quantized_weights + 5 * edge_weights + 32 * scales


def test_quantized_and_float_models_cost_the_same_macs():
    assert profile_model(build_model("tiny", "w3a8"), 400).macs_core == profile_model(build_model("tiny"), 400).macs_core


def test_profile_leaves_the_model_in_its_mode():
    model = build_model("tiny").train()
    profile_model(model, 400)
    assert model.training


def test_too_short_input_is_refused():
    with pytest.raises(ValueError, match=r"^n_samples: got 15; expected an integer >= 16"):
        profile_model(build_model("tiny"), 15)


def test_report_lists_totals_and_parts():
    text = format_profile(profile_model(build_model("tiny", "w3a8"), 400, preset="tiny"))
    assert "preset tiny, recipe w3a8, input 400 samples" in text
    for part in ("encoder", "audio_stage.main", "fusion_stage.decoder", "decoder"):
        assert f"\n{part} " in text


@pytest.mark.parametrize("recipe", ["w3a8", "w3a8-po2-inorm", "w4a8-pc", "w3a8-edge8"])
def test_quantized_models_are_counted_as_their_float_config(recipe):
    """count_macs counts a quantized model on a float model of its config; the hooks on the quantized
    model itself give the same counts, part by part."""
    from limuse_edge.profile import as_written, count_macs, counted_forward
    model = build_model("tiny", recipe)
    assert count_macs(model, 3000) == counted_forward(as_written(model).eval(), 3000)
