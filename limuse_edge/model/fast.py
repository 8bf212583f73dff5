"""Training kernels: the blocks' PReLU, per-frame linears, depthwise convolution, one-group norm and
Brevitas's fake quantization with fewer and cheaper passes over the large (batch*groups, frames, channels)
tensors, forward and backward.

The math is the plain layers' (same parameters, same values within float rounding); only the order of
the work changes. Where the time went in the plain ops (torch.profiler, limuse_k32, batch 4 x 1 s):
PReLU's backward reduces its one slope with a slow broadcast kernel; the weight gradient of a 4 -> 24
linear hits a slow MKL case; the depthwise Conv1d wants (N, C, T) while every other op here works on
channels-last data (two transposed copies per layer) and its mkldnn backward is slow for 8-32 channels;
the norm's affine is two more passes each way; Brevitas's quantizers clamp with torch.where (boolean
masks are ten times slower than float passes on the CPU) and differentiate through broadcast divisions.

`fast_kernels()` switches them on (the trainer does, train/fast_path.py); off, the blocks run the plain
layers, which is also what the ONNX exporters trace.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

_ACTIVE = False


@contextlib.contextmanager
def fast_kernels(enabled: bool = True):
    """Within this context the blocks use the kernels of this module."""
    global _ACTIVE
    before, _ACTIVE = _ACTIVE, enabled
    try:
        yield
    finally:
        _ACTIVE = before


def active() -> bool:
    return _ACTIVE and not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export()


def _prelu_grads(grad, x, slope):
    grad_x = torch.where(x > 0, grad, grad * slope)
    return grad_x, (grad * torch.clamp(x, max=0)).sum()


class _PReLU(torch.autograd.Function):
    """PReLU with one slope. Backward: one fused pass (compiled, see `compiled`) for the input gradient and
    the slope's; else leaky_relu's backward at the slope's value and one dot product, instead of torch's
    broadcast-and-reduce kernel."""

    @staticmethod
    def forward(ctx, x, slope):
        ctx.save_for_backward(x, slope)
        return F.prelu(x, slope)

    @staticmethod
    def backward(ctx, grad):
        x, slope = ctx.saved_tensors
        grad_x = grad_slope = None
        kernel = None
        if x.device.type == "cpu":
            kernel = compiled(_prelu_grads, x.dtype, lambda: (torch.zeros(16, dtype=x.dtype),) * 2
                              + (torch.ones(1, dtype=x.dtype),))
        if kernel is not None:
            grad_x, grad_slope = kernel(grad.detach().reshape(-1), x.detach().reshape(-1), slope.detach())
            return grad_x.view(x.shape), grad_slope.reshape(slope.shape)
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.leaky_relu_backward(grad, x, float(slope), False)
        if ctx.needs_input_grad[1]:
            grad_slope = torch.dot(grad.reshape(-1), x.clamp(max=0).reshape(-1)).reshape(slope.shape)
        return grad_x, grad_slope


def prelu(act: nn.PReLU, x: torch.Tensor) -> torch.Tensor:
    if active() and act.weight.numel() == 1:
        return _PReLU.apply(x, act.weight)
    return act(x)


class _Linear(torch.autograd.Function):
    """F.linear on 2-D x (M, in) with M in the hundreds of thousands and in, out in 4..72. The weight
    gradient is one GEMM with a huge inner dimension; MKL is fast for it when the narrower of the two
    matrices is the transposed one (limuse_k32's 4 -> 24 TAC transform: 31 ms one way, 2.2 ms the other)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = grad.mm(weight)
        if ctx.needs_input_grad[1]:
            grad_w = x.t().mm(grad).t() if x.shape[1] < grad.shape[1] else grad.t().mm(x)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum(0)
        return grad_x, grad_w, grad_b


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear of 2-D x (M, in)."""
    return _Linear.apply(x, weight, bias)


def _depthwise_values(x, weight, bias, dilation: int, causal: bool = False):
    """'same' padding, or with causal all of it in front (a left-padded conv)."""
    k, t = weight.shape[1], x.shape[1]
    pad = dilation * (k - 1) // 2
    padded = F.pad(x, (0, 0, 2 * pad, 0) if causal else (0, 0, pad, pad))
    y = bias + padded[:, :t] * weight[:, 0]
    for j in range(1, k):
        y = y + padded[:, j * dilation:j * dilation + t] * weight[:, j]
    return y


def _depthwise_grads(grad, x, weight, dilation: int, causal: bool = False):
    """(grad_x, grad_weight, grad_bias): x[t'] feeds y[t' + left - j*d] through tap j (left: the front
    padding), so grad_x is the taps again, mirrored, on grad padded the other way round; tap j's weight
    gradient sums grad times the input it saw."""
    k, t = weight.shape[1], x.shape[1]
    pad = dilation * (k - 1) // 2
    if causal:
        padded, grad_padded = F.pad(x, (0, 0, 2 * pad, 0)), F.pad(grad, (0, 0, 0, 2 * pad))
    else:
        padded, grad_padded = F.pad(x, (0, 0, pad, pad)), F.pad(grad, (0, 0, pad, pad))
    grad_x = grad_padded[:, 2 * pad:2 * pad + t] * weight[:, 0]
    for j in range(1, k):
        start = 2 * pad - j * dilation
        grad_x = grad_x + grad_padded[:, start:start + t] * weight[:, j]
    grad_w = torch.stack([(grad * padded[:, j * dilation:j * dilation + t]).sum((0, 1)) for j in range(k)], 1)
    return grad_x, grad_w, grad.sum((0, 1))


def _depthwise_kernels(x: torch.Tensor):
    """(values, grads) compiled for x's dtype; the plain functions where nothing compiles."""
    if x.device.type == "cpu":
        def probe():
            return torch.zeros(2, 8, 4, dtype=x.dtype), torch.ones(4, 3, dtype=x.dtype)

        values = compiled(_depthwise_values, x.dtype, lambda: (*probe(), torch.zeros(4, dtype=x.dtype), 2))
        grads = compiled(_depthwise_grads, x.dtype, lambda: (probe()[0], *probe(), 2))
        if values is not None and grads is not None:
            return values, grads
    return _depthwise_values, _depthwise_grads


class _DepthwiseConvChannelsLast(torch.autograd.Function):
    """Depthwise Conv1d ('same' padding, odd kernel) on channels-last x (N, T, C), weight (C, k), bias (C):
    one multiply-add of a shifted view per tap. Compiled (see `compiled`), one fused pass forward and one
    for the input gradient and the tap sums backward, about 3x faster than the same functions eager
    (limuse_k32-sized tensors, one thread)."""

    @staticmethod
    def forward(ctx, x, weight, bias, dilation, causal=False):
        ctx.kernels, ctx.dilation, ctx.causal = _depthwise_kernels(x), dilation, causal
        ctx.save_for_backward(x, weight)
        if causal:
            return ctx.kernels[0](x.detach(), weight.detach(), bias.detach(), dilation, True)
        return ctx.kernels[0](x.detach(), weight.detach(), bias.detach(), dilation)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        if ctx.causal:
            grad_x, grad_w, grad_b = ctx.kernels[1](grad.detach(), x.detach(), weight.detach(), ctx.dilation, True)
            return grad_x, grad_w, grad_b, None, None
        grad_x, grad_w, grad_b = ctx.kernels[1](grad.detach(), x.detach(), weight.detach(), ctx.dilation)
        return grad_x, grad_w, grad_b, None, None


def _depthwise(x, weight, bias, dilation, causal=False):
    return _DepthwiseConvChannelsLast.apply(x, weight[:, 0], bias, dilation, causal)


def depthwise_conv(conv: nn.Module, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """`conv` (a depthwise, stride-1, 'same'-padded Conv1d, float or Brevitas) on channels-last x (N, T, C).
    causal: `conv` is built unpadded and runs left-padded, dilation * (kernel_size - 1) zero frames in
    front (the quantized layer's input quantizer maps them to code 0 either way)."""
    if active() and type(conv) is nn.Conv1d:
        return _depthwise(x, conv.weight, conv.bias, conv.dilation[0], causal)
    if active() and _quantizing(conv):
        return quant_layer(conv, x, lambda v, w, b: _depthwise(v, w, b, conv.dilation[0], causal))
    if causal:
        x = F.pad(x, (0, 0, conv.dilation[0] * (conv.kernel_size[0] - 1), 0))
    return conv(x.transpose(1, 2)).transpose(1, 2)


def linear_layer(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`layer` (nn.Linear or Brevitas QuantLinear) on 2-D x (M, in)."""
    if active() and type(layer) is nn.Linear:
        return linear(x, layer.weight, layer.bias)
    if active() and _quantizing(layer):
        return quant_layer(layer, x, linear)
    return layer(x)


def _quantizing(layer: nn.Module) -> bool:
    """A Brevitas conv/linear whose quantizers all run (Brevitas's calibration mode switches them off)."""
    from limuse_edge.quant import is_quant_layer
    return (is_quant_layer(layer) and not layer.export_mode and layer.input_quant.is_quant_enabled
            and layer.weight_quant.is_quant_enabled and layer.output_quant.is_quant_enabled)


def quant_layer(layer: nn.Module, x: torch.Tensor, inner) -> torch.Tensor:
    """Brevitas's QuantWBIOL.forward_impl with `inner(x, weight, bias)` (values of the quantized input,
    weight and bias) in place of the layer's own conv/linear, which wants another layout or a slower
    weight gradient."""
    quant_input = layer.input_quant(layer.unpack_input(x))
    quant_weight = layer.quant_weight(quant_input)
    quant_bias = layer.bias_quant(layer.bias, quant_input, quant_weight) if layer.bias is not None else None
    out = inner(quant_input.value, quant_weight.value, None if quant_bias is None else quant_bias.value)
    return layer.pack_output(layer.output_quant(out))


def group_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, channel_axis: int,
               eps: float) -> torch.Tensor:
    """One-group norm (statistics over every non-batch axis) with per-channel affine, the affine inside
    layer_norm's own kernel as a weight broadcast over the normalised shape."""
    shape = [1] * x.dim()
    shape[channel_axis] = -1
    normalised = x.shape[1:]
    return F.layer_norm(x, normalised, weight.reshape(shape[1:]).expand(normalised),
                        bias.reshape(shape[1:]).expand(normalised), eps)


def _fake_quant_values(x, scale, low, high):
    return torch.clamp(torch.round(x / scale), low, high) * scale


def _fake_quant_grads(grad, x, scale, low, high):
    """(grad_x, grad_scale): straight through the rounding, zero where the code was clamped; the scale's
    sum(g * (q - x / s)) over unclamped codes plus sum(g * q) over clamped ones."""
    ratio = x / scale
    codes = torch.round(ratio)
    grad_x = torch.where((codes >= low) & (codes <= high), grad, torch.zeros_like(grad))
    grad_scale = (grad * torch.clamp(codes, low, high)).sum() - (grad_x * ratio).sum()
    return grad_x, grad_scale


_COMPILED = {}  # (function, key) -> its inductor kernel, or None where compiling failed
_COMPILE = True  # tests switch it off to compare the compiled kernels with the eager ones


def compiled(function, key, probe):
    """`function` compiled by inductor for CPU tensors (dynamic shapes: one kernel for every length), tried
    once per `key` on the arguments `probe()` makes (called only then, not on every call); None where it cannot be (no working C++ compiler: the caller's eager form
    then runs, after one warning). Callers pass flat, detached tensors: dynamo guards on a view's base and
    on requires_grad, so a handful of variants get compiled anyway (about 0.1 s each after the first)."""
    if not _COMPILE:
        return None
    if (function, key) not in _COMPILED:
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        try:
            kernel = torch.compile(function, dynamic=True)
            kernel(*probe())
        except Exception as exc:  # inductor needs a C++ compiler; the eager kernels are right without one
            import warnings
            warnings.warn(f"fast path: torch.compile of {function.__name__} failed ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}); using the eager kernels")
            kernel = None
        _COMPILED[(function, key)] = kernel
    return _COMPILED[(function, key)]


def _fake_quant_kernels(x: torch.Tensor):
    """(values, grads) compiled for x's dtype (bounds as tensors, so one kernel serves every bit width), or
    None: not on the CPU, or nothing compiles."""
    if x.device.type != "cpu":
        return None

    def probe():
        return torch.zeros(16, dtype=x.dtype), torch.ones(1, dtype=x.dtype), *_bounds(-1.0, 1.0, x.dtype)

    values = compiled(_fake_quant_values, x.dtype, probe)
    grads = compiled(_fake_quant_grads, x.dtype, lambda: (torch.zeros(16, dtype=x.dtype), *probe()))
    return None if values is None or grads is None else (values, grads)


class _FakeQuant(torch.autograd.Function):
    """Brevitas's integer fake quantization with one scale and zero point 0, clamp(round(x / s), lo, hi) * s,
    with its gradients (_fake_quant_grads). Brevitas builds it from where-based clamps and broadcast
    divisions, some twenty passes over the tensor. Compiled (inductor), forward and backward are one fused
    pass each, 3-4x faster than the eager form below (four forward and six backward passes, none with a
    boolean tensor), which runs where nothing can be compiled. Same values; the scale's gradient sums in
    another order (float rounding)."""

    @staticmethod
    def forward(ctx, x, scale, low, high):
        kernels = _fake_quant_kernels(x)
        ctx.save_for_backward(x, scale)
        ctx.bounds = low, high
        ctx.kernels = kernels
        if kernels is not None:  # on flat views: one kernel for every rank and shape
            return kernels[0](x.detach().reshape(-1), scale.detach(), *_bounds(low, high, x.dtype)).view(x.shape)
        return (x / scale).round_().clamp_(low, high).mul_(scale)

    @staticmethod
    def backward(ctx, grad):
        x, scale = ctx.saved_tensors
        low, high = ctx.bounds
        if ctx.kernels is not None:
            grad_x, grad_scale = ctx.kernels[1](grad.detach().reshape(-1), x.detach().reshape(-1), scale.detach(),
                                                *_bounds(low, high, x.dtype))
            return grad_x.view(x.shape), grad_scale.reshape(scale.shape) if ctx.needs_input_grad[1] else None, None, None
        ratio = x / scale
        codes = ratio.round()
        # Codes are integers, so half-integer bounds make hardtanh's open interval the closed [low, high].
        grad_x = torch.ops.aten.hardtanh_backward(grad, codes, low - 0.5, high + 0.5)
        grad_scale = None
        if ctx.needs_input_grad[1]:
            codes.clamp_(low, high)
            grad_scale = (torch.dot(grad.reshape(-1), codes.reshape(-1))
                          - torch.dot(grad_x.reshape(-1), ratio.reshape(-1))).reshape(scale.shape)
        return grad_x, grad_scale, None, None


_BOUNDS = {}


def _bounds(low: float, high: float, dtype: torch.dtype) -> tuple:
    key = (low, high, dtype)
    if key not in _BOUNDS:
        _BOUNDS[key] = (torch.tensor(low, dtype=dtype), torch.tensor(high, dtype=dtype))
    return _BOUNDS[key]


def fake_quant(x: torch.Tensor, scale: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """clamp(round(x / scale), low, high) * scale for a one-element scale, with Brevitas's gradients."""
    return _FakeQuant.apply(x, scale, low, high)
