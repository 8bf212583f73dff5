"""Integer-only group normalisation (I-BERT style), trained with QAT and exported as one ONNX node.

Recipe option `-inorm`. Float gLN/GroupNorm statistics are sums over a whole sequence: their float
rounding depends on the summation order, so an integer reference can never match them bit for bit on
long inputs. Here the statistics are integers, the same in torch, numpy, C or HDL:

    q      8-bit input codes (the norm's own input quantizer), one row = one sample, N elements
    mean = rdiv(sum(q) * 2^F, N)                  mean in 2^-F code units
    d    = q * 2^F - mean
    var  = floor(sum(d^2) / N)
    std  = max(isqrt(var), 1)
    n    = rdiv(d * 2^P, std)                     normalised value in 2^-P units
    acc  = n * gamma_code[c] + beta_code[c]       int32, per channel c
    y    = acc * 2^(gamma_exponent - P)

rdiv is integer division rounded half to even, isqrt the integer square root. gamma is an 8-bit code at
a power-of-two scale 2^gamma_exponent fitted to max|gamma|; beta is an integer at the accumulator's
scale. The input scale cancels out, so y is exact (a power-of-two scaled integer) whatever it is.

The backward pass is the float norm's (straight-through): the integer forward is piecewise constant in
the statistics, and the float gradient is what lets QAT adapt to it.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from limuse_edge.model import fast

MEAN_FRAC_BITS = 4
NORM_FRAC_BITS = 6
GAMMA_BITS = 8
DOMAIN = "limuse_edge"
OP_TYPE = "IntegerNorm"


def rdiv(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a / b for int64 tensors (b > 0), rounded half to even."""
    quotient = torch.div(a, b, rounding_mode="floor")
    twice_rest = 2 * (a - quotient * b)
    up = (twice_rest > b) | ((twice_rest == b) & (quotient % 2 == 1))
    return quotient + up.to(quotient.dtype)


def isqrt(v: torch.Tensor) -> torch.Tensor:
    """floor(sqrt(v)) for non-negative int64 tensors below 2^52, corrected to the exact integer."""
    s = torch.floor(torch.sqrt(v.double())).long()
    s = s - (s * s > v).long()
    return s + ((s + 1) * (s + 1) <= v).long()


def integer_norm(codes: torch.Tensor, gamma_code: torch.Tensor, beta_code: torch.Tensor, channel_axis: int,
                 mean_frac_bits: int = MEAN_FRAC_BITS, norm_frac_bits: int = NORM_FRAC_BITS) -> torch.Tensor:
    """The int64 accumulator of the docstring's formula; codes (batch, ...) with one row per sample."""
    q = codes.long()
    rows = q.reshape(q.shape[0], -1)
    n_elements = rows.shape[1]
    mean = rdiv(rows.sum(1, keepdim=True) << mean_frac_bits, torch.tensor(n_elements))
    d = (rows << mean_frac_bits) - mean
    var = torch.div((d * d).sum(1, keepdim=True), n_elements, rounding_mode="floor")
    std = isqrt(var).clamp_min(1)
    normalised = _normalise(rows, mean, std, mean_frac_bits, norm_frac_bits).reshape(q.shape)
    shape = [1] * q.dim()
    shape[channel_axis] = -1
    return normalised * gamma_code.long().reshape(shape) + beta_code.long().reshape(shape)


def _normalise(rows: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, mean_frac_bits: int,
               norm_frac_bits: int) -> torch.Tensor:
    """rdiv(((rows << mean_frac_bits) - mean) << norm_frac_bits, std), row by row. The codes of a row take
    few values (8-bit codes: at most 256), so the division runs once per value in a (rows, values) table
    and the elements gather from it: the same integers, 3-4x faster than dividing every element."""
    # Under the ONNX tracer the data-dependent table (its size and offset taken from the codes) cannot be
    # recorded, and the traced ops are replaced by the IntegerNorm node anyway: divide directly there.
    lo, hi = (0, 0) if torch.jit.is_tracing() else (int(rows.min()), int(rows.max()))
    if torch.jit.is_tracing() or (hi - lo + 1) * 4 > rows.shape[1]:  # or wide codes, short rows
        return rdiv(((rows << mean_frac_bits) - mean) << norm_frac_bits, std)
    values = torch.arange(lo, hi + 1, dtype=rows.dtype)
    table = rdiv(((values[None] << mean_frac_bits) - mean) << norm_frac_bits, std)
    return table.gather(1, rows - lo)


def integer_norm_value(x: torch.Tensor, gamma_code: torch.Tensor, beta_code: torch.Tensor, input_scale: float,
                       gamma_exponent: int, channel_axis: int) -> torch.Tensor:
    """The IntegerNorm node: dequantized input x (codes * input_scale) -> float32 output."""
    kernel = _compiled_rows(x) if fast.active() else None
    if kernel is not None:
        shape = [1] * x.dim()
        shape[channel_axis] = -1
        tiled = [c.long().reshape(shape[1:]).expand(x.shape[1:]).reshape(-1) for c in (gamma_code, beta_code)]
        scale = torch.tensor(input_scale, dtype=x.dtype)
        multiplier = torch.tensor(2.0 ** (gamma_exponent - NORM_FRAC_BITS), dtype=torch.float64)
        return kernel(x.detach().reshape(x.shape[0], -1), scale, *tiled, multiplier).view(x.shape)
    acc = integer_norm(torch.round(x / input_scale), gamma_code, beta_code, channel_axis)
    return (acc.double() * 2.0 ** (gamma_exponent - NORM_FRAC_BITS)).float()


def _integer_norm_rows(x, scale, gamma, beta, multiplier):
    """integer_norm_value on rows (batch, N) with gamma and beta tiled over N, for inductor: one pass for the
    sums, one for the rest. The normalising division is a double one rounded half to even, which is rdiv
    exactly: |d << P| < 2^52 (8-bit codes), so a tie k + 1/2 is representable and any other quotient lies
    at least 1 / (2 std) from one, beyond the division's rounding."""
    rows = torch.round(x / scale).long()
    n = rows.shape[1]
    mean = rdiv(rows.sum(1, keepdim=True) << MEAN_FRAC_BITS, n)
    d = (rows << MEAN_FRAC_BITS) - mean
    std = isqrt(torch.div((d * d).sum(1, keepdim=True), n, rounding_mode="floor")).clamp_min(1)
    normalised = torch.round((d << NORM_FRAC_BITS).double() / std.double()).long()
    return ((normalised * gamma + beta).double() * multiplier).float()


def _compiled_rows(x: torch.Tensor):
    if x.device.type != "cpu":
        return None

    def probe():
        tiled = torch.ones(64, dtype=torch.long)
        return (torch.randn(2, 64, dtype=x.dtype), torch.tensor(0.05, dtype=x.dtype), tiled, tiled,
                torch.tensor(1.0, dtype=torch.float64))
    return fast.compiled(_integer_norm_rows, x.dtype, probe)


class _ForwardAs(torch.autograd.Function):
    """Forward `value`, backward through `surrogate`."""

    @staticmethod
    def forward(ctx, surrogate, value):
        return value

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class _IntegerNormOp(torch.autograd.Function):
    """The exported node: IntegerNorm(x, gamma_code, beta_code) in domain limuse_edge."""

    @staticmethod
    def forward(ctx, x, gamma_code, beta_code, input_scale, gamma_exponent, channel_axis):
        return integer_norm_value(x, gamma_code, beta_code, input_scale, gamma_exponent, channel_axis)

    @staticmethod
    def symbolic(g, x, gamma_code, beta_code, input_scale, gamma_exponent, channel_axis):
        out = g.op(f"{DOMAIN}::{OP_TYPE}", x, gamma_code, beta_code, input_scale_f=float(input_scale),
                   gamma_exponent_i=int(gamma_exponent), channel_axis_i=int(channel_axis),
                   mean_frac_bits_i=MEAN_FRAC_BITS, norm_frac_bits_i=NORM_FRAC_BITS)
        out.setType(x.type())  # shape- and type-preserving
        return out


class IntegerGroupNorm(nn.Module):
    """GroupNorm with one group (statistics over every non-batch axis, per-channel affine) in integers.
    `channel_axis` is 1 for (B, C, T) (gLN) or -1 for channels-last (B, T, C). Parameters `weight` and
    `bias` as in nn.GroupNorm, so a float or po2 checkpoint loads into it."""

    def __init__(self, channels: int, channel_axis: int, act_quant, act_bits: int):
        super().__init__()
        from brevitas.nn import QuantIdentity
        self.channel_axis = channel_axis
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.input_quant = QuantIdentity(act_quant=act_quant, bit_width=act_bits, return_quant_tensor=True)

    def affine_codes(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        """gamma as 8-bit codes at 2^gamma_exponent, beta as integers at the accumulator's scale."""
        with torch.no_grad():
            top = 2 ** (GAMMA_BITS - 1) - 1
            largest = max(float(self.weight.abs().max()), 2.0 ** -20)
            gamma_exponent = math.ceil(math.log2(largest / top))
            gamma_code = torch.round(self.weight / 2.0 ** gamma_exponent).clamp(-top, top)
            beta_code = torch.round(self.bias / 2.0 ** (gamma_exponent - NORM_FRAC_BITS))
        return gamma_code, beta_code, gamma_exponent

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        quantized = self.input_quant(x)
        if isinstance(quantized, torch.Tensor):  # quantization disabled (Brevitas calibration mode)
            return self._float_norm(quantized)
        value, scale = quantized.value, quantized.scale
        gamma_code, beta_code, gamma_exponent = self.affine_codes()
        args = (gamma_code, beta_code, float(scale.detach()), gamma_exponent, self.channel_axis)
        if torch.onnx.is_in_onnx_export() or not torch.is_grad_enabled():
            return _IntegerNormOp.apply(value, *args)
        return _ForwardAs.apply(self._float_norm(value), _IntegerNormOp.apply(value.detach(), *args))

    def _float_norm(self, x: torch.Tensor) -> torch.Tensor:
        if fast.active():
            return fast.group_norm(x, self.weight, self.bias, self.channel_axis, 1e-8)
        shape = [1] * x.dim()
        shape[self.channel_axis] = -1
        return F.layer_norm(x, x.shape[1:], eps=1e-8) * self.weight.reshape(shape) + self.bias.reshape(shape)
