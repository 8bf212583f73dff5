"""Building blocks: channels-last GroupNorm, context-codec blocking, group communication."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from limuse_edge.model.blocks import GCTCN, TAC, GroupNormChannelsLast, merge_blocks, split_blocks
from limuse_edge.quant import FLOAT


def test_channels_last_group_norm_equals_torch_group_norm():
    x = torch.randn(3, 17, 8)  # (batch, time, channels)
    ours = GroupNormChannelsLast(8)
    reference = nn.GroupNorm(1, 8, eps=1e-8)
    with torch.no_grad():
        for p in (ours.weight, ours.bias):
            p.copy_(torch.randn(8))
        reference.weight.copy_(ours.weight)
        reference.bias.copy_(ours.bias)
    torch.testing.assert_close(ours(x), reference(x.transpose(1, 2)).transpose(1, 2), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("frames", [1, 7, 8, 9, 31, 64])
def test_overlap_add_of_the_blocks_gives_back_twice_the_input(frames):
    """Blocks overlap by half, so every frame is covered exactly twice and the padding is removed."""
    x = torch.randn(2, 3, frames)
    blocks, rest = split_blocks(x, 8)
    assert blocks.shape[:3] == (2, 3, 8)
    torch.testing.assert_close(merge_blocks(blocks, rest), 2 * x)


def test_tac_is_equivariant_to_the_order_of_the_groups():
    """TAC shares weights across groups and mixes them only through their mean."""
    tac = TAC(dim=4, hidden=6, groups=3, recipe=FLOAT).eval()
    x = torch.randn(2 * 3, 5, 4)  # (batch * groups, time, dim)
    order = torch.tensor([2, 0, 1])
    permute = lambda t: t.view(2, 3, 5, -1)[:, order].reshape(6, 5, -1)  # noqa: E731
    with torch.no_grad():
        torch.testing.assert_close(tac(permute(x)), permute(tac(x)))


def test_tac_lets_the_groups_talk_to_each_other():
    tac = TAC(dim=4, hidden=6, groups=3, recipe=FLOAT).eval()
    x = torch.randn(3, 5, 4)
    changed = x.clone()
    changed[2] += 1.0  # only the last group's input moves
    with torch.no_grad():
        assert not torch.allclose(tac(x)[0], tac(changed)[0])


@pytest.mark.parametrize("grouped", [True, False])
def test_gc_tcn_keeps_the_shape_and_does_not_mix_batch_items(grouped):
    tcn = GCTCN(dim=8, hidden=16, layers=2, stacks=1, groups=4 if grouped else 1, kernel_size=3,
                recipe=FLOAT, grouped=grouped).eval()
    x = torch.randn(2, 8, 13)
    with torch.no_grad():
        y = tcn(x)
        assert y.shape == x.shape
        torch.testing.assert_close(tcn(x[1:]), y[1:], rtol=1e-4, atol=1e-5)


def test_group_mean_in_inference_sums_the_groups_in_numpys_order():
    """The golden and native engines sum the TAC's K groups one after another (numpy's add.reduce over
    a middle axis); Brevitas's reference must too, or an ulp moves a Quant tie."""
    import numpy as np

    from limuse_edge.model.blocks import group_mean
    g = torch.Generator().manual_seed(4)
    v = torch.randn(3, 32, 20, 12, generator=g) * torch.rand(3, 32, 1, 1, generator=g) * 7
    with torch.no_grad():
        got = group_mean(v).numpy()
    expected = np.add.reduce(v.numpy(), axis=1) / np.float32(32)
    assert got.dtype == np.float32 and np.array_equal(got, expected)
    assert torch.equal(group_mean(v.requires_grad_(True)), v.mean(1))  # training: torch's mean
