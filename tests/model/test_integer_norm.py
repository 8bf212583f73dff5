"""Integer group normalisation (recipe option -inorm): the integer formula, and its place in QAT."""
from __future__ import annotations

import math
import warnings
import random

import pytest
import torch

from limuse_edge.config import get_preset
from limuse_edge.model import LiMuSE
from limuse_edge.model.integer_norm import (MEAN_FRAC_BITS, NORM_FRAC_BITS, IntegerGroupNorm, integer_norm, isqrt,
                                            rdiv)
from limuse_edge.quant import calibrate
from limuse_export.prepare import example_inputs


def _python_rdiv(a: int, b: int) -> int:
    q, r = divmod(a, b)
    return q + (2 * r > b or (2 * r == b and q % 2 == 1))


def test_rdiv_rounds_half_to_even_on_negative_and_tied_quotients():
    a = torch.tensor([5, 7, -5, -7, 6, -6, 1, -1, 123456789, -3])
    b = torch.tensor([2, 2, 2, 2, 4, 4, 3, 3, 1000, 6])
    assert rdiv(a, b).tolist() == [_python_rdiv(x, y) for x, y in zip(a.tolist(), b.tolist())]
    assert rdiv(a, b).tolist()[:6] == [2, 4, -2, -4, 2, -2]


def test_isqrt_is_the_exact_integer_square_root_at_perfect_squares_and_their_neighbours():
    roots = [0, 1, 2, 3, 255, 4096, 2 ** 20, 2 ** 26 - 1]
    values = sorted({max(v, 0) for r in roots for v in (r * r - 1, r * r, r * r + 1)})
    assert isqrt(torch.tensor(values)).tolist() == [math.isqrt(v) for v in values]


def _reference(codes: list[list[int]], gamma: list[int], beta: list[int]) -> list[list[int]]:
    """The module docstring's formula in plain Python integers, one sample of (channels, time)."""
    flat = [v for row in codes for v in row]
    n = len(flat)
    mean = _python_rdiv(sum(flat) << MEAN_FRAC_BITS, n)
    var = sum(((v << MEAN_FRAC_BITS) - mean) ** 2 for v in flat) // n
    std = max(math.isqrt(var), 1)
    return [[_python_rdiv(((v << MEAN_FRAC_BITS) - mean) << NORM_FRAC_BITS, std) * gamma[c] + beta[c] for v in row]
            for c, row in enumerate(codes)]


def test_integer_norm_equals_the_formula_in_python_integers():
    rng = random.Random(0)
    codes = [[[rng.randint(-128, 127) // (1 + c) for _ in range(37)] for c in range(5)] for _ in range(2)]
    gamma, beta = [rng.randint(-127, 127) for _ in range(5)], [rng.randint(-5000, 5000) for _ in range(5)]
    got = integer_norm(torch.tensor(codes), torch.tensor(gamma), torch.tensor(beta), channel_axis=1)
    assert got.tolist() == [_reference(sample, gamma, beta) for sample in codes]
    # channels last: the same numbers, transposed
    last = integer_norm(torch.tensor(codes).transpose(1, 2), torch.tensor(gamma), torch.tensor(beta), channel_axis=-1)
    assert torch.equal(last, got.transpose(1, 2))


@pytest.mark.parametrize("low, high", [(-128, 127), (0, 255), (-3, 4)])
def test_rows_long_enough_for_the_division_table_give_the_formula_too(low, high):
    """Rows of thousands of 8-bit codes go through the per-value division table (integer_norm's fast
    path); the numbers are the formula's, ties included (the narrow range makes many)."""
    rng = random.Random(low)
    codes = [[[rng.randint(low, high) for _ in range(600)] for c in range(8)] for _ in range(2)]
    gamma, beta = [rng.randint(-127, 127) for _ in range(8)], [rng.randint(-5000, 5000) for _ in range(8)]
    got = integer_norm(torch.tensor(codes), torch.tensor(gamma), torch.tensor(beta), channel_axis=1)
    assert got.tolist() == [_reference(sample, gamma, beta) for sample in codes]


def test_a_constant_input_normalises_to_beta():
    codes = torch.full((1, 3, 10), 17)
    acc = integer_norm(codes, torch.tensor([5, 6, 7]), torch.tensor([1, -2, 3]), channel_axis=1)
    assert acc[0, :, 0].tolist() == [1, -2, 3]


def _tiny_inorm():
    torch.manual_seed(0)
    model = LiMuSE(get_preset("tiny"), "w3a8-po2-inorm")
    inputs = example_inputs(model, 800)
    calibrate(model, [inputs])
    return model, inputs


def test_inorm_recipe_puts_an_integer_norm_wherever_the_float_model_has_a_norm():
    model, _ = _tiny_inorm()
    reference = LiMuSE(get_preset("tiny"), "w3a8-po2")
    norms = [n for n, m in model.named_modules() if isinstance(m, IntegerGroupNorm)]
    expected = [n for n, m in reference.named_modules() if type(m).__name__ in ("GroupNorm", "GroupNormChannelsLast")]
    assert norms == expected and len(norms) > 0
    float_keys = {k for k in reference.state_dict() if "_quant" not in k}
    assert float_keys == {k for k in model.state_dict() if "_quant" not in k}


def test_the_training_forward_is_the_integer_forward_and_gradients_reach_every_parameter():
    model, inputs = _tiny_inorm()
    model.train()
    out = model(**inputs)
    out.pow(2).mean().backward()
    model.eval()
    with torch.no_grad():
        assert torch.equal(out.detach(), model(**inputs))
    for name, module in model.named_modules():
        if isinstance(module, IntegerGroupNorm):
            assert module.weight.grad is not None and module.weight.grad.abs().sum() > 0, name
    assert model.encoder.weight.grad.abs().sum() > 0


def test_norm_output_is_a_power_of_two_scaled_integer_close_to_the_float_norm():
    torch.manual_seed(1)
    norm = IntegerGroupNorm(6, channel_axis=-1, act_quant=_po2_act(), act_bits=8)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 50, 6)
    norm.train()
    for _ in range(3):
        norm(x)  # fit the input quantizer's scale
    norm.eval()
    with torch.no_grad():
        y = norm(x)
        _, _, gamma_exponent = norm.affine_codes()
        steps = y * 2.0 ** (NORM_FRAC_BITS - gamma_exponent)
        assert torch.equal(steps, torch.round(steps))
        assert (y - norm._float_norm(x)).abs().max() < 0.1


def _po2_act():
    from brevitas.quant.fixed_point import Int8ActPerTensorFixedPoint
    return Int8ActPerTensorFixedPoint


def test_quantized_checkpoint_loads_into_the_same_recipe_with_integer_norms(tmp_path):
    from limuse_edge.checkpoint import CheckpointError, convert_recipe, load_checkpoint, save_checkpoint
    model = LiMuSE(get_preset("tiny"), "w3a8-po2")
    path = tmp_path / "po2.pt"
    save_checkpoint(path, model)
    loaded = convert_recipe(load_checkpoint(path)[0], "w3a8-po2-inorm")
    assert loaded.recipe.integer_norm
    assert torch.equal(loaded.norm.weight, model.norm.weight)
    with pytest.raises(CheckpointError, match="cannot be loaded as 'w4a8-po2-inorm'"):
        convert_recipe(load_checkpoint(path)[0], "w4a8-po2-inorm")


def test_a_traced_integer_norm_gives_the_formula_on_other_codes():
    """Under the tracer the norm divides element by element: the division table's size and offset come
    from the codes, so a traced table would hold the example's range and break on other inputs (and the
    ONNX exporter refuses such graphs)."""
    gamma, beta = torch.randint(-127, 127, (8,)), torch.randint(-5000, 5000, (8,))
    example, other = torch.randint(-3, 4, (1, 8, 600)), torch.randint(-128, 128, (1, 8, 600))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(lambda c: integer_norm(c, gamma, beta, channel_axis=1), example)
    assert torch.equal(traced(other), integer_norm(other, gamma, beta, channel_axis=1))
