"""Building blocks of LiMuSE. Every conv/linear/norm comes from the layer factory (model/layers.py) as the
recipe asks, so one definition serves the float model and each quantized one."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from limuse_edge.model import fast
from limuse_edge.model import layers as factory
# the norm's home is the layer factory; imported from here by profile.py, export/prepare.py and tests
from limuse_edge.model.layers import NORM_EPS, GroupNormChannelsLast  # noqa: F401
from limuse_edge.quant import QuantRecipe

def per_frame(linear, x: torch.Tensor, *args) -> torch.Tensor:
    """`linear` (a layer, or F.linear with `args`) on channels-last x (..., features) as one 2-D GEMM.
    Exported, a 2-D linear is a Gemm that onnxruntime fuses with its bias (float) or into QGemm (QDQ);
    a 3-D one is a MatMul followed by separate bias-add and requantize passes over a large tensor."""
    rows = x.reshape(-1, x.shape[-1])
    if linear is F.linear:
        y = fast.linear(rows, *args) if fast.active() else linear(rows, *args)
    else:
        y = fast.linear_layer(linear, rows)
    return y.reshape(*x.shape[:-1], -1)


def group_mean(v: torch.Tensor) -> torch.Tensor:
    """v.mean(1) of (B, K, T, C). Without autograd (inference, the export's Brevitas reference) the K
    groups are summed one after another, numpy's order and the golden and native engines' (their
    ReduceMean): torch's reduction splits the sum, which moves the float32 mean by an ulp now and then,
    enough to flip a code at a Quant tie and every code after it. Training and the ONNX exporters (a
    ReduceMean node) take torch's mean."""
    if torch.is_grad_enabled() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return v.mean(1)
    total = v[:, 0].clone()
    for k in range(1, v.shape[1]):
        total += v[:, k]
    return total / v.shape[1]


class TAC(nn.Module):
    """Transform-average-concatenate across the K groups, per frame, on (B*K, T, d)."""

    def __init__(self, dim: int, hidden: int, groups: int, recipe: QuantRecipe, split_concat: "bool | None" = None,
                 causal: bool = False):
        """causal: a cumulative norm (statistics over the past frames only). split_concat: apply the output layer's half that reads the group mean once per frame and
        broadcast it over the groups, instead of once per group after a large concatenation. Exact for a
        float layer, and its default there; a quantized layer quantizes its whole input and weight as one
        tensor each, so it runs as written."""
        super().__init__()
        if split_concat and recipe.quantized:
            raise ValueError(f"TAC: split_concat with recipe {recipe.name!r}; a quantized output layer runs "
                             f"as written (split_concat False)")
        self.groups = groups
        self.split_concat = not recipe.quantized if split_concat is None else split_concat
        self.transform = factory.linear(recipe, dim, 3 * hidden)
        self.transform_act = nn.PReLU()
        self.average = factory.linear(recipe, 3 * hidden, 3 * hidden)
        self.average_act = nn.PReLU()
        self.concat = factory.linear(recipe, 6 * hidden, dim)
        self.concat_act = nn.PReLU()
        self.norm = factory.norm(recipe, dim, channels_last=True, causal=causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bk, t, _ = x.shape
        y = fast.prelu(self.transform_act, per_frame(self.transform, x))
        c = y.shape[2]
        mean = fast.prelu(self.average_act, per_frame(self.average, group_mean(y.view(-1, self.groups, t, c))))
        if self.split_concat:  # exact rewrite of concat(cat[y, mean])
            w = self.concat.weight
            z = per_frame(F.linear, y, w[:, :c]).view(-1, self.groups, t, w.shape[0])
            z = (z + per_frame(F.linear, mean, w[:, c:], self.concat.bias).unsqueeze(1)).view(bk, t, -1)
        else:
            mean = mean.unsqueeze(1).expand(-1, self.groups, t, c).reshape(bk, t, c)
            z = per_frame(self.concat, torch.cat([y, mean], 2))
        return x + self.norm(fast.prelu(self.concat_act, z))


class DepthwiseSeparableBlock(nn.Module):
    """On (batch, T, dim): 1x1 conv, PReLU, GroupNorm, dilated depthwise conv, PReLU, GroupNorm,
    1x1 conv; residual. The 1x1 convs are per-frame linear maps, computed as Linear on channels-last
    data (one large GEMM instead of many tiny convolutions). causal: cumulative norms, and the depthwise
    conv left-padded (built unpadded; its input gets dilation * (kernel_size - 1) zero frames in front)."""

    def __init__(self, dim: int, hidden: int, kernel_size: int, dilation: int, recipe: QuantRecipe,
                 causal: bool = False):
        super().__init__()
        self.causal = causal
        self.expand = factory.linear(recipe, dim, hidden)
        self.expand_act = nn.PReLU()
        self.expand_norm = factory.norm(recipe, hidden, channels_last=True, causal=causal)
        self.depthwise = factory.conv1d(recipe, hidden, hidden, kernel_size, dilation=dilation,
                                        padding=0 if causal else dilation * (kernel_size - 1) // 2, groups=hidden)
        self.depthwise_act = nn.PReLU()
        self.depthwise_norm = factory.norm(recipe, hidden, channels_last=True, causal=causal)
        self.project = factory.linear(recipe, hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand_norm(fast.prelu(self.expand_act, per_frame(self.expand, x)))
        if self.causal:
            y = fast.depthwise_conv(self.depthwise, y, causal=True)
        else:
            y = fast.depthwise_conv(self.depthwise, y)
        y = self.depthwise_norm(fast.prelu(self.depthwise_act, y))
        return x + per_frame(self.project, y)


class GCLayer(nn.Module):
    """One group-communication layer: TAC across groups, then the conv block on every group. The
    weights are shared by all groups because the groups are folded into the batch."""

    def __init__(self, dim, hidden, groups, kernel_size, dilation, recipe, causal=False):
        super().__init__()
        self.tac = TAC(dim, hidden, groups, recipe, causal=causal)
        self.conv = DepthwiseSeparableBlock(dim, hidden, kernel_size, dilation, recipe, causal=causal)

    def forward(self, x):
        return self.conv(self.tac(x))


class GCTCN(nn.Module):
    """GC-TCN(D, H, layers, stacks, K) on (B, D, T). With grouped=False it is the plain TCN of the
    "raw" rows: an input gLN, then the conv blocks on all D channels. causal: every norm cumulative and
    every depthwise conv left-padded, so output frame t depends on input frames 0..t only."""

    def __init__(self, dim: int, hidden: int, layers: int, stacks: int, groups: int, kernel_size: int,
                 recipe: QuantRecipe, grouped: bool = True, causal: bool = False):
        super().__init__()
        self.groups = groups if grouped else 1
        dilations = [2 ** i for _ in range(stacks) for i in range(layers)]
        if grouped:
            d, h = dim // groups, hidden // groups
            self.input_norm = nn.Identity()
            self.layers = nn.ModuleList(GCLayer(d, h, groups, kernel_size, dil, recipe, causal)
                                        for dil in dilations)
        else:
            self.input_norm = factory.norm(recipe, dim, causal=causal)
            self.layers = nn.ModuleList(DepthwiseSeparableBlock(dim, hidden, kernel_size, dil, recipe, causal)
                                        for dil in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, d, t = x.shape
        k = self.groups
        # (B, D, T) -> groups folded into the batch, channels last: (B*K, T, D/K)
        y = self.input_norm(x).reshape(b, k, d // k, t).transpose(2, 3).reshape(b * k, t, d // k)
        for layer in self.layers:
            y = layer(y)
        return y.reshape(b, k, t, d // k).transpose(2, 3).reshape(b, d, t)


def split_blocks(x: torch.Tensor, size: int) -> tuple[torch.Tensor, int]:
    """(B, D, T) -> 50 %-overlapping blocks (B, D, size, n_blocks) and the tail padding `rest`."""
    b, d, t = x.shape
    hop = size // 2
    rest = size - (hop + t % size) % size
    x = F.pad(x, (hop, rest + hop))
    first = x[:, :, :-hop].reshape(b, d, -1, size)
    second = x[:, :, hop:].reshape(b, d, -1, size)
    blocks = torch.stack([first, second], 3).reshape(b, d, -1, size)
    return blocks.transpose(2, 3), rest


def merge_blocks(blocks: torch.Tensor, rest: int) -> torch.Tensor:
    """Overlap-add of split_blocks' output back to (B, D, T)."""
    b, d, size, _ = blocks.shape
    hop = size // 2
    pairs = blocks.transpose(2, 3).reshape(b, d, -1, 2 * size)
    first = pairs[:, :, :, :size].reshape(b, d, -1)[:, :, hop:]
    second = pairs[:, :, :, size:].reshape(b, d, -1)[:, :, :-hop]
    out = first + second
    return out[:, :, : out.shape[2] - rest]


class ContextCodec(nn.Module):
    """Runs `main` on a 16x shorter sequence: each block of `size` frames is encoded by a small GC-TCN
    and averaged to one vector; the main block's output is broadcast back over its block, added to the
    encoded block, decoded by another small GC-TCN and overlap-added."""

    def __init__(self, dim, hidden, size, layers, groups, kernel_size, main: nn.Module, recipe):
        super().__init__()
        self.size = size
        self.encoder = GCTCN(dim, hidden, layers, 1, groups, kernel_size, recipe)
        self.main = main
        self.decoder = GCTCN(dim, hidden, layers, 1, groups, kernel_size, recipe)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, d, _ = x.shape
        blocks, rest = split_blocks(x, self.size)  # (B, D, size, n)
        n = blocks.shape[3]
        folded = blocks.permute(0, 3, 1, 2).reshape(b * n, d, self.size)
        encoded = self.encoder(folded)
        summary = encoded.mean(2).reshape(b, n, d).transpose(1, 2)
        context = self.main(summary).transpose(1, 2).reshape(b * n, d, 1)
        decoded = self.decoder(encoded + context)
        return merge_blocks(decoded.reshape(b, n, d, self.size).permute(0, 2, 3, 1), rest)
