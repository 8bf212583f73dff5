"""QuantRecipe: parsing, naming, and the layers the model's layer factory builds for it."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from limuse_edge.model import layers
from limuse_edge.quant import FLOAT, W3A8, QuantRecipe, get_recipe, is_quant_layer


@pytest.mark.parametrize("spec", ["float", "w3a8", "w4a8-pc", "w4a8-po2", "w4a8-pc-po2", "w3a8-stats",
                                  "w3a8-edge8", "w2a4-pc-po2-stats-edge6", "w3a8-po2-inorm"])
def test_recipe_names_round_trip(spec):
    recipe = QuantRecipe.parse(spec)
    assert recipe.name == spec
    assert QuantRecipe.from_dict(recipe.to_dict()) == recipe


def test_the_paper_recipe():
    assert get_recipe("w3a8") == W3A8 and get_recipe("float") == FLOAT and get_recipe(W3A8) is W3A8
    assert (W3A8.weight_bits, W3A8.act_bits, W3A8.per_channel, W3A8.power_of_two) == (3, 8, False, False)
    assert not FLOAT.quantized and W3A8.quantized


@pytest.mark.parametrize("spec, message", [
    ("int8", r"^recipe: unknown 'int8'; expected 'float' or 'w\{2..8\}a\{2..8\}'"),
    ("w3a8-fast", r"^recipe: unknown 'w3a8-fast'"),
    ("w9a8", r"^recipe: weight bits 9 out of range; expected 2..8"),
    ("w3a1", r"^recipe: activation bits 1 out of range; expected 2..8"),
    ("w3a8-edge12", r"^recipe: edge bits 12 out of range; expected 2..8"),
])
def test_unknown_or_out_of_range_recipes_are_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        QuantRecipe.parse(spec)


def test_float_recipe_builds_plain_torch_layers():
    conv, linear = layers.conv1d(FLOAT, 4, 8, 3), layers.linear(FLOAT, 4, 8)
    assert type(conv) is nn.Conv1d and type(linear) is nn.Linear
    assert not is_quant_layer(conv) and not is_quant_layer(linear)


@pytest.mark.parametrize("spec, bits, levels", [("w3a8", 3, 7), ("w4a8", 4, 15)])
def test_quantized_weights_take_the_symmetric_narrow_range_levels(spec, bits, levels):
    layer = layers.linear(QuantRecipe.parse(spec), 32, 16)
    assert is_quant_layer(layer)
    quant_weight = layer.quant_weight()
    assert int(quant_weight.bit_width) == bits
    codes = (quant_weight.value / quant_weight.scale).round()
    assert codes.abs().max() <= 2 ** (bits - 1) - 1
    assert 2 < len(codes.unique()) <= levels


def test_per_channel_recipe_has_one_scale_per_output_channel():
    layer = layers.conv1d(QuantRecipe.parse("w4a8-pc"), 4, 8, 3)
    assert layer.quant_weight().scale.numel() == 8


def test_power_of_two_scales_are_exact_powers_of_two():
    layer = layers.linear(QuantRecipe.parse("w4a8-po2"), 16, 8)
    exponent = torch.log2(layer.quant_weight().scale)
    assert torch.equal(exponent, exponent.round())


def test_edge_bits_apply_only_to_edge_layers():
    recipe = QuantRecipe.parse("w3a8-edge8")
    assert int(layers.conv1d(recipe, 2, 8, 4, edge=True).quant_weight().bit_width) == 8
    assert int(layers.conv1d(recipe, 2, 8, 4).quant_weight().bit_width) == 3


def test_quantized_layer_quantizes_its_output_to_8_bits():
    layer = layers.linear(W3A8, 8, 4).eval()
    with torch.no_grad():
        y = layer(torch.randn(5, 8))
        scale = layer.output_quant.scale()
    codes = y / scale
    torch.testing.assert_close(codes, codes.round(), rtol=0, atol=1e-3)
    assert codes.abs().max() <= 128


def test_integer_norm_needs_a_quantized_recipe():
    with pytest.raises(ValueError, match=r"^recipe: integer normalisation needs a quantized recipe"):
        QuantRecipe(integer_norm=True)
