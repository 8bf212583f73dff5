"""The LiMuSE network: parameter counts against the spec, shapes, input checks, mask activation, QAT."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from limuse_edge.checkpoint import build_model
from limuse_edge.config import PRESETS, get_preset
from limuse_edge.model import LiMuSE
from limuse_edge.profile import network_params, parts_of
from limuse_edge.quant import is_quant_layer

PAPER_PRESETS = [name for name in PRESETS if name != "tiny" and not PRESETS[name].causal]

# Spec, "Exact parameter counts of a faithful rebuild": K=32 by part.
K32_PARTS = {
    "encoder": 8320, "voiceprint_encoder": 65664, "visual_encoder": 32896, "norm": 256,
    "audio_stage.encoder": 2138, "audio_stage.decoder": 2138,
    "fusion_stage.encoder": 17530, "fusion_stage.decoder": 17530,
    "audio_stage.main": 39228, "fusion_stage.main": 167070, "mask": 49280, "decoder": 4097,
}


def inputs(model: LiMuSE, n_samples: int, batch: int = 1, frames: int = 5, seed: int = 0):
    cfg = model.config
    gen = torch.Generator().manual_seed(seed)
    mixture = torch.randn(batch, cfg.mic_channels, n_samples, generator=gen)
    voiceprint = torch.randn(batch, 512, generator=gen) if "voiceprint" in cfg.cues else None
    visual = torch.randn(batch, frames, 256, generator=gen) if "visual" in cfg.cues else None
    return mixture, voiceprint, visual


@pytest.fixture(scope="module")
def tiny_float():
    return build_model("tiny").eval()


@pytest.fixture(scope="module")
def tiny_w3a8():
    return build_model("tiny", "w3a8").eval()


# --- parameter counts -----------------------------------------------------------------------------

def test_every_paper_row_has_a_preset(paper_table):
    rows = {row["name"].removesuffix("_float") for row in paper_table["rows"]}
    assert rows == set(PAPER_PRESETS)


@pytest.mark.parametrize("preset", PAPER_PRESETS)
def test_float_parameter_count_matches_the_spec(preset, paper_table):
    expected = {row["name"]: row["params_exact"] for row in paper_table["rows"]}[preset]
    model = build_model(preset)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_k32_parameters_by_part_match_the_spec():
    model = build_model("limuse_k32")
    assert {name: network_params(m) for name, m in parts_of(model).items() if network_params(m)} == K32_PARTS


def test_quantized_model_has_the_float_network_plus_only_quantizer_scales():
    float_model, quant_model = build_model("tiny"), build_model("tiny", "w3a8")
    assert network_params(quant_model) == network_params(float_model)
    quant_model.train()(*inputs(quant_model, 400))  # Brevitas adds the scales to the state dict once initialised
    float_keys, quant_keys = set(float_model.state_dict()), set(quant_model.state_dict())
    assert float_keys <= quant_keys
    extra = quant_keys - float_keys
    assert extra and all("_quant." in key for key in extra)


def test_k32_quantizes_every_conv_and_linear_but_the_decoder():
    model = build_model("limuse_k32", "w3a8")
    layers = [m for m in model.modules() if is_quant_layer(m)]
    assert len(layers) == 160
    assert sum(m.weight.numel() for m in layers) == 393_120
    assert not is_quant_layer(model.decoder)
    assert network_params(model) == 406_147
    assert all(int(m.quant_weight().bit_width) == 3 for m in layers)


def test_groups_share_their_weights():
    """Folding the K groups into the batch: the GC-TCN's parameters do not grow with K at fixed D/K, H/K."""
    k32, k16 = get_preset("limuse_k32"), get_preset("limuse_k16")
    wide_k32 = k32.replace(n_filters=256, audio_hidden=1024, context_hidden=512)
    for a, b in ((k16, wide_k32),):
        pa, pb = parts_of(LiMuSE(a)), parts_of(LiMuSE(b))
        for part in ("audio_stage.encoder", "audio_stage.main", "fusion_stage.main"):
            assert network_params(pa[part]) == network_params(pb[part]), part


# --- shapes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_samples", [16, 17, 31, 101, 333, 800])
@pytest.mark.parametrize("model_name", ["tiny_float", "tiny_w3a8"])
def test_output_has_one_sample_per_input_sample(model_name, n_samples, request):
    model = request.getfixturevalue(model_name)
    with torch.no_grad():
        out = model(*inputs(model, n_samples, batch=2))
    assert out.shape == (2, n_samples)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("variant", [dict(context_codec=False), dict(cues=("visual",)), dict(cues=("voiceprint",)),
                                     dict(grouped=False, groups=1, context_codec=False), dict(mic_channels=1)])
def test_every_variant_runs_on_odd_lengths(variant):
    model = LiMuSE(get_preset("tiny").replace(**variant)).eval()
    with torch.no_grad():
        out = model(*inputs(model, 211))
    assert out.shape == (1, 211)


def test_batch_items_are_independent(tiny_float):
    mixture, voiceprint, visual = inputs(tiny_float, 400, batch=2)
    with torch.no_grad():
        both = tiny_float(mixture, voiceprint, visual)
        first = tiny_float(mixture[:1], voiceprint[:1], visual[:1])
    torch.testing.assert_close(both[:1], first, rtol=1e-4, atol=1e-5)


def test_visual_cue_of_any_frame_count(tiny_float):
    mixture, voiceprint, _ = inputs(tiny_float, 400)
    for frames in (1, 2, 75):
        with torch.no_grad():
            out = tiny_float(mixture, voiceprint, torch.zeros(1, frames, 256))
        assert out.shape == (1, 400)


# --- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize("case, argument, received, expected", [
    ("rank", "mixture", "(2, 400)", "(batch, 2, samples)"),
    ("channels", "mixture", "(1, 3, 400)", "(batch, 2, samples)"),
    ("short", "mixture", "15 samples", "at least 16"),
    ("voiceprint_dim", "voiceprint", "(1, 511)", "(1, 512)"),
    ("voiceprint_rank", "voiceprint", "(1, 512, 1)", "(1, 512)"),
    ("visual_dim", "visual", "(1, 5, 255)", "(1, frames, 256)"),
    ("visual_rank", "visual", "(5, 256)", "(1, frames, 256)"),
    ("voiceprint_missing", "voiceprint", "missing", "(1, 512)"),
])
def test_bad_input_names_argument_received_and_expected_shape(tiny_float, case, argument, received, expected):
    mixture, voiceprint, visual = inputs(tiny_float, 400)
    bad = {
        "rank": dict(mixture=torch.zeros(2, 400)),
        "channels": dict(mixture=torch.zeros(1, 3, 400)),
        "short": dict(mixture=mixture[:, :, :15]),
        "voiceprint_dim": dict(voiceprint=torch.zeros(1, 511)),
        "voiceprint_rank": dict(voiceprint=torch.zeros(1, 512, 1)),
        "visual_dim": dict(visual=torch.zeros(1, 5, 255)),
        "visual_rank": dict(visual=torch.zeros(5, 256)),
        "voiceprint_missing": dict(voiceprint=None),
    }[case]
    args = dict(mixture=mixture, voiceprint=voiceprint, visual=visual) | bad
    with pytest.raises(ValueError) as err:
        tiny_float(**args)
    message = str(err.value)
    assert message.startswith(f"{argument}:")
    assert received in message and expected in message


def test_a_cue_the_model_does_not_have_is_refused():
    model = LiMuSE(get_preset("tiny").replace(cues=("visual",)))
    mixture, _, visual = inputs(model, 400)
    with pytest.raises(ValueError, match=r"^voiceprint: this model has no voiceprint cue"):
        model(mixture, torch.zeros(1, 512), visual)


# --- mask activation ------------------------------------------------------------------------------

@pytest.mark.parametrize("activation, low, high", [("none", None, None), ("relu", 0.0, None), ("sigmoid", 0.0, 1.0)])
def test_mask_activation_bounds_the_mask(activation, low, high):
    model = LiMuSE(get_preset("tiny").replace(mask_activation=activation)).eval()
    seen = []
    model.mask_activation.register_forward_hook(lambda m, i, o: seen.append((i[0], o)))
    with torch.no_grad():
        model(*inputs(model, 400))
    (raw, mask), = seen
    if activation == "none":
        assert torch.equal(raw, mask)
        assert raw.min() < 0 < raw.max()  # so the bounds below are not vacuous
    if low is not None:
        assert mask.min() >= low
    if high is not None:
        assert mask.max() <= high
    if activation != "none":
        assert not torch.equal(raw, mask)


# --- training -------------------------------------------------------------------------------------

def test_one_qat_step_lowers_the_loss_on_a_fixed_batch():
    model = build_model("tiny", "w3a8").train()
    mixture, voiceprint, visual = inputs(model, 1600, batch=2)
    target = 0.5 * torch.randn(2, 1600, generator=torch.Generator().manual_seed(1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    loss = F.mse_loss(model(mixture, voiceprint, visual), target)
    optimizer.zero_grad()
    loss.backward()
    quantizer_grads = [p.grad for name, p in model.named_parameters() if "_quant." in name]
    assert any(g is not None and g.abs().sum() > 0 for g in quantizer_grads), "no gradient reaches the scales"
    optimizer.step()
    with torch.no_grad():
        after = F.mse_loss(model(mixture, voiceprint, visual), target)
    assert after < 0.95 * loss.detach()
