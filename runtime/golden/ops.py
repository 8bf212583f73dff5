"""Op handlers of the golden engine: one small numpy function per ONNX/QONNX op, in a registry.

Values are float32 numpy arrays, int64 shape arrays, or QTensors (integer codes at a power-of-two
scale). Layout ops (Transpose, Reshape, Slice, Pad with zeros, ...) move codes and keep them integer.
Every other float op sees the dequantized value, which is exact: codes * 2^e is representable in
float32 for every <= 8-bit code. A handler takes (node, input values, context) and returns a list of
output values.
"""
from __future__ import annotations

import numpy as np

from limuse_runtime.golden import fixed_point as fp
from limuse_runtime.golden.fixed_point import GoldenError, QTensor

OPS: dict = {}


def op(*names):
    def register(fn):
        for name in names:
            OPS[name] = fn
        return fn
    return register


def as_float(value) -> np.ndarray:
    return value.dequantize() if isinstance(value, QTensor) else value


def _ints(value) -> list[int]:
    return [int(v) for v in np.asarray(value).ravel()]


def _layout(fn):
    """A layout op moves codes without arithmetic: apply it to the codes (and to a per-element
    exponent, for per-channel scales) and keep the tensor integer."""
    def handler(node, inputs, ctx):
        x = inputs[0]
        if not isinstance(x, QTensor):
            return [fn(node, x, inputs[1:])]
        exponent = x.exponent
        if not x.per_tensor:
            exponent = fn(node, np.broadcast_to(exponent, x.codes.shape), inputs[1:])
        return [QTensor(fn(node, x.codes, inputs[1:]), exponent, x.bits, x.signed, x.narrow)]
    return handler


def _float(fn):
    def handler(node, inputs, ctx):
        return [fn(node, *[as_float(v) if v is not None else None for v in inputs])]
    return handler


# ---------------------------------------------------------------- quantization
@op("Quant")
def quant(node, inputs, ctx):
    x, scale, zero_point, bit_width = inputs
    where = f"Quant node {node.name}"
    if node.attrs.get("rounding_mode", "ROUND") != "ROUND":
        raise GoldenError(f"{where}: rounding mode {node.attrs['rounding_mode']!r}; expected ROUND "
                          f"(half to even), the mode Brevitas uses for these quantizers")
    if np.any(np.asarray(zero_point) != 0):
        raise GoldenError(f"{where}: non-zero zero point; expected symmetric quantization")
    bits = float(np.asarray(bit_width).ravel()[0])
    if bits != int(bits):
        raise GoldenError(f"{where}: bit width {bits} is not an integer")
    bits, signed, narrow = int(bits), bool(node.attrs.get("signed", 1)), bool(node.attrs.get("narrow", 0))
    exponent = fp.po2_exponent(scale, where)
    if isinstance(x, QTensor):
        codes = fp.requantize(x, exponent, bits, signed, narrow)
    else:
        codes = fp.quantize_float(x, exponent, bits, signed, narrow)
    return [QTensor(codes, exponent, bits, signed, narrow)]


@op("IntegerLayer")
def integer_layer(node, inputs, ctx):
    """A quantized conv/linear: int8 codes x low-bit weight codes + int32 bias into an int32
    accumulator, then a half-to-even shift to the output scale (see lower.fuse_integer_layers)."""
    layer = node.attrs["layer"]
    x = inputs[0]
    if not isinstance(x, QTensor):
        raise GoldenError(f"layer {layer.name}: input is float; expected the codes of an input quantizer")
    out_codes, acc, acc_max = layer.forward(x, measure=ctx.measuring)
    ctx.record_layer(layer, x, acc_max, out_codes)
    return [out_codes if out_codes is not None else acc]


@op("IntegerNorm")
def integer_norm(node, inputs, ctx):
    """gLN / GroupNorm of the -inorm recipe, in integers (limuse_edge.model.integer_norm states the same
    formula): mean and variance of the input codes per sample, integer square root, normalised value at
    2^-P, then the per-channel affine as an int32 accumulator at 2^(gamma_exponent - P)."""
    x, gamma, beta = inputs
    where = f"IntegerNorm node {node.name}"
    if not (isinstance(x, QTensor) and x.per_tensor):
        raise GoldenError(f"{where}: input is not a per-tensor quantized tensor; expected the codes of the "
                          f"norm's input quantizer")
    gamma_code, beta_code = (_integer_constant(v, f"{where}: {what}") for v, what in ((gamma, "gamma"), (beta, "beta")))
    f_mean, f_norm = node.attrs["mean_frac_bits"], node.attrs["norm_frac_bits"]
    codes = np.asarray(x.codes, np.int64)
    rows = codes.reshape(codes.shape[0], -1)
    n = np.int64(rows.shape[1])
    mean = fp.divide_half_even(rows.sum(1, keepdims=True) << f_mean, n)
    d = (rows << f_mean) - mean
    var = np.einsum("ij,ij->i", d, d)[:, None] // n
    std = np.maximum(fp.isqrt(var), 1)
    normalised = fp.divide_half_even(d << f_norm, std).reshape(codes.shape)
    shape = [1] * codes.ndim
    shape[node.attrs["channel_axis"]] = -1
    acc = normalised * gamma_code.reshape(shape) + beta_code.reshape(shape)
    fp.check_accumulator(acc, node.name)
    return [QTensor(acc, node.attrs["gamma_exponent"] - f_norm)]


def _integer_constant(value, what: str) -> np.ndarray:
    value = np.asarray(as_float(value))
    if not np.array_equal(value, np.round(value)):
        raise GoldenError(f"{what} holds non-integer values; expected integer codes")
    return value.astype(np.int64)


@op("Add", "Sub")
def add(node, inputs, ctx):
    a, b = inputs
    if isinstance(a, QTensor) and isinstance(b, QTensor):
        # Residual add of two quantized operands: align to the finer power-of-two scale, add integers.
        ca, cb, e = fp.align(a, b)
        return [QTensor(ca + cb if node.op == "Add" else ca - cb, e)]
    a, b = as_float(a), as_float(b)
    return [a + b if node.op == "Add" else a - b]


@op("PRelu")
def prelu(node, inputs, ctx):
    x, slope = inputs
    slope = np.asarray(as_float(slope), np.float32)
    if slope.size == 1:
        slope = slope.reshape(())
    fn = lambda v: np.where(v < 0, v * slope, v).astype(np.float32)  # noqa: E731
    if isinstance(x, QTensor) and x.per_tensor and x.bits is not None and x.bits <= 8 and slope.size == 1:
        return [fp.apply_table(ctx.table(node.name, fn, x), x.codes)]
    return [fn(as_float(x))]


def _unary_lut(fn):
    """Sigmoid, Tanh, Relu on an 8-bit tensor: a 256-entry table; on floats: the function."""
    def handler(node, inputs, ctx):
        x = inputs[0]
        if isinstance(x, QTensor) and x.per_tensor and x.bits is not None and x.bits <= 8:
            return [fp.apply_table(ctx.table(node.name, fn, x), x.codes)]
        return [fn(as_float(x))]
    return handler


OPS["Sigmoid"] = _unary_lut(lambda v: (1 / (1 + np.exp(-v))).astype(np.float32))
OPS["Tanh"] = _unary_lut(lambda v: np.tanh(v).astype(np.float32))
OPS["Relu"] = _unary_lut(lambda v: np.maximum(v, np.float32(0)))


# ---------------------------------------------------------------- layout (codes stay integer)
def _reshape(node, x, args):
    shape = _ints(args[0])
    if not node.attrs.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return np.reshape(x, shape)


def _slice(node, x, args):
    starts, ends = _ints(args[0]), _ints(args[1])
    axes = _ints(args[2]) if len(args) > 2 and args[2] is not None else list(range(len(starts)))
    steps = _ints(args[3]) if len(args) > 3 and args[3] is not None else [1] * len(starts)
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        index[a] = slice(s, e, st)
    return x[tuple(index)]


def _unsqueeze(node, x, args):
    axes = _ints(args[0]) if args else node.attrs["axes"]
    rank = x.ndim + len(axes)
    return np.expand_dims(x, tuple(sorted(a % rank for a in axes)))


def _squeeze(node, x, args):
    axes = _ints(args[0]) if args and args[0] is not None else node.attrs.get("axes")
    return np.squeeze(x, axis=None if axes is None else tuple(axes))


def _pad(node, x, args):
    if node.attrs.get("mode", "constant") != "constant":
        raise GoldenError(f"Pad node {node.name}: mode {node.attrs['mode']!r}; only constant padding is supported")
    pads = _ints(args[0])
    value = float(np.asarray(args[1]).ravel()[0]) if len(args) > 1 and args[1] is not None and np.size(args[1]) else 0.0
    if value != 0.0:
        raise GoldenError(f"Pad node {node.name}: pad value {value}; only zero padding is supported")
    axes = _ints(args[2]) if len(args) > 2 and args[2] is not None else list(range(x.ndim))
    half = len(pads) // 2
    width = [(0, 0)] * x.ndim
    for i, a in enumerate(axes):
        width[a % x.ndim] = (pads[i], pads[i + half])
    if any(lo < 0 or hi < 0 for lo, hi in width):
        raise GoldenError(f"Pad node {node.name}: negative pads {pads} are not supported")
    return np.pad(x, width)


def _gather_nd(node, x, args):
    if node.attrs.get("batch_dims", 0):
        raise GoldenError(f"GatherND node {node.name}: batch_dims != 0 is not supported")
    idx = np.asarray(args[0], np.int64)
    return x[tuple(np.moveaxis(idx, -1, 0))]


LAYOUT = {
    "Transpose": lambda node, x, args: np.transpose(x, node.attrs.get("perm")),
    "Reshape": _reshape,
    "Slice": _slice,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Expand": lambda node, x, args: np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(_ints(args[0])))),
    "Gather": lambda node, x, args: np.take(x, np.asarray(args[0], np.int64), axis=node.attrs.get("axis", 0)),
    "GatherND": _gather_nd,
    "Pad": _pad,
    "Identity": lambda node, x, args: x,
    "Flatten": lambda node, x, args: x.reshape(int(np.prod(x.shape[:node.attrs.get("axis", 1)])), -1),
}
for _name, _fn in LAYOUT.items():
    OPS[_name] = _layout(_fn)


@op("Concat")
def concat(node, inputs, ctx):
    axis = node.attrs["axis"]
    quantized = [v for v in inputs if isinstance(v, QTensor)]
    if quantized and len(quantized) == len(inputs) and all(v.per_tensor for v in quantized) and \
            len({(int(v.exponent), v.bits, v.signed, v.narrow) for v in quantized}) == 1:
        return [quantized[0].with_codes(np.concatenate([v.codes for v in quantized], axis))]
    return [np.concatenate([as_float(v) for v in inputs], axis)]


@op("Shape")
def shape(node, inputs, ctx):
    dims = np.asarray(np.shape(inputs[0].codes if isinstance(inputs[0], QTensor) else inputs[0]), np.int64)
    return [dims[node.attrs.get("start", 0): node.attrs.get("end", None)]]


_ONNX_DTYPES = {1: np.float32, 6: np.int32, 7: np.int64, 9: np.bool_, 11: np.float64}


@op("Cast")
def cast(node, inputs, ctx):
    to = node.attrs["to"]
    if to not in _ONNX_DTYPES:
        raise GoldenError(f"Cast node {node.name}: target type {to} is not supported")
    return [np.asarray(as_float(inputs[0])).astype(_ONNX_DTYPES[to])]


# ---------------------------------------------------------------- float ops
def _binary(fn):
    return _float(lambda node, a, b: fn(a, b))


OPS["Mul"] = _binary(np.multiply)
OPS["Div"] = _binary(lambda a, b: (a // b) if np.issubdtype(np.asarray(a).dtype, np.integer) else a / b)
OPS["Pow"] = _binary(lambda a, b: np.power(a, b).astype(np.result_type(a)))
OPS["Equal"] = _binary(np.equal)
OPS["Sqrt"] = _float(lambda node, x: np.sqrt(x))
OPS["Neg"] = _float(lambda node, x: -x)
OPS["Floor"] = _float(lambda node, x: np.floor(x))
OPS["Ceil"] = _float(lambda node, x: np.ceil(x))
OPS["Where"] = _float(lambda node, c, a, b: np.where(c, a, b))
OPS["Clip"] = _float(lambda node, x, lo=None, hi=None: np.clip(x, lo, hi) if lo is not None or hi is not None else x)
OPS["Range"] = _float(lambda node, start, limit, delta: np.arange(start, limit, delta, dtype=np.result_type(start)))
OPS["ConstantOfShape"] = lambda node, inputs, ctx: [np.full(_ints(inputs[0]), node.attrs.get("value", np.zeros(1, np.float32)).ravel()[0])]


def _reduce_axes(node, x, axes_input):
    axes = _ints(axes_input) if axes_input is not None else node.attrs.get("axes")
    if axes is None or len(axes) == 0:
        return None if not node.attrs.get("noop_with_empty_axes", 0) else ()
    return tuple(a % x.ndim for a in axes)


@op("ReduceMean", "ReduceSum", "ReduceMax")
def reduce(node, inputs, ctx):
    x = as_float(inputs[0])
    axes = _reduce_axes(node, x, inputs[1] if len(inputs) > 1 else None)
    if axes == ():
        return [x]
    fn = {"ReduceMean": np.mean, "ReduceSum": np.sum, "ReduceMax": np.max}[node.op]
    return [fn(x, axis=axes, keepdims=bool(node.attrs.get("keepdims", 1))).astype(x.dtype)]


def _normalise(x, axes, eps):
    """(x - mean) / sqrt(var + eps) the way torch's CPU layer-norm kernel evaluates it, because QAT ran
    that kernel: float32 mean and variance (computed here in float64 and rounded once), rstd = 1 / sqrt
    in float32, then y = x * rstd + (-rstd * mean) with a single rounding (torch fuses it into an FMA;
    the float64 product of two float32 values is exact). Written as (x - mean) / std, the last bit
    differs often enough to flip downstream codes on K=32."""
    shape = x.shape
    rows = x.reshape(-1, int(np.prod([shape[a] for a in axes])))  # axes are the trailing ones
    x64 = rows.astype(np.float64)
    mean = x64.mean(axis=1, keepdims=True)
    work = x64 - mean
    var = np.einsum("ij,ij->i", work, work)[:, None] / rows.shape[1]
    mean, var = mean.astype(np.float32), var.astype(np.float32)
    rstd = np.float32(1) / np.sqrt(np.maximum(var, np.float32(0)) + np.float32(eps))
    shift = -rstd * mean
    np.multiply(x64, rstd.astype(np.float64), out=work)
    work += shift.astype(np.float64)
    return work.astype(np.float32).reshape(shape)


@op("LayerNormalization")
def layer_norm(node, inputs, ctx):
    x, scale = as_float(inputs[0]), as_float(inputs[1])
    bias = as_float(inputs[2]) if len(inputs) > 2 and inputs[2] is not None else None
    axis = node.attrs.get("axis", -1) % x.ndim
    y = _normalise(x, tuple(range(axis, x.ndim)), node.attrs.get("epsilon", 1e-5)) * scale
    return [y + bias if bias is not None else y]


@op("InstanceNormalization")
def instance_norm(node, inputs, ctx):
    x, scale, bias = (as_float(v) for v in inputs)
    y = _normalise(x, tuple(range(2, x.ndim)), node.attrs.get("epsilon", 1e-5))
    bshape = (1, -1) + (1,) * (x.ndim - 2)
    return [y * scale.reshape(bshape) + bias.reshape(bshape)]


@op("MatMul")
def matmul(node, inputs, ctx):
    return [np.matmul(as_float(inputs[0]), as_float(inputs[1]))]


def conv_windows(x: np.ndarray, kernel: int, stride: int, dilation: int, pads: tuple[int, int]) -> np.ndarray:
    """(B, C, T) -> (B, C, T_out, kernel) view of every receptive field (1-D convolution)."""
    x = np.pad(x, ((0, 0), (0, 0), pads))
    span = dilation * (kernel - 1) + 1
    windows = np.lib.stride_tricks.sliding_window_view(x, span, axis=2)
    return windows[:, :, ::stride, ::dilation]


def conv1d(x: np.ndarray, w: np.ndarray, stride: int, dilation: int, pads, groups: int) -> np.ndarray:
    """Grouped 1-D convolution without bias, as batched GEMMs in the dtype of x and w."""
    b, c_in, t = x.shape
    c_out, c_group, kernel = w.shape
    if c_group == 1 and c_out == c_in == groups:  # depthwise: a weighted sum of shifted copies
        xp = np.pad(x, ((0, 0), (0, 0), tuple(pads)))
        span = xp.shape[2] - dilation * (kernel - 1)
        y = xp[:, :, 0:span:stride] * w[None, :, 0, 0:1]
        for tap in range(1, kernel):
            start = tap * dilation
            y += xp[:, :, start:start + span:stride] * w[None, :, 0, tap:tap + 1]
        return y
    cols = conv_windows(x, kernel, stride, dilation, tuple(pads))  # (B, C, T_out, k)
    t_out = cols.shape[2]
    cols = cols.reshape(b, groups, c_group, t_out, kernel).transpose(0, 1, 3, 2, 4)
    cols = cols.reshape(b, groups, t_out, c_group * kernel)
    wg = w.reshape(groups, c_out // groups, c_group * kernel).transpose(0, 2, 1)
    y = np.matmul(cols, wg)  # (B, G, T_out, C_out/G)
    return y.transpose(0, 1, 3, 2).reshape(b, c_out, t_out)


def conv_params(node, rank_desc="1-D"):
    kernel = node.attrs.get("kernel_shape")
    if kernel is not None and len(kernel) != 1:
        raise GoldenError(f"{node.op} node {node.name}: only {rank_desc} convolutions are supported, got kernel {kernel}")
    if node.attrs.get("auto_pad", "NOTSET") != "NOTSET":
        raise GoldenError(f"{node.op} node {node.name}: auto_pad is not supported; expected explicit pads")
    pads = node.attrs.get("pads", [0, 0])
    return (node.attrs.get("strides", [1])[0], node.attrs.get("dilations", [1])[0],
            (pads[0], pads[1]), node.attrs.get("group", 1))


@op("Conv")
def conv(node, inputs, ctx):
    x, w = as_float(inputs[0]), as_float(inputs[1])
    stride, dilation, pads, groups = conv_params(node)
    y = conv1d(x, w, stride, dilation, pads, groups)
    if len(inputs) > 2 and inputs[2] is not None:
        y = y + as_float(inputs[2]).reshape(1, -1, 1)
    return [y.astype(np.float32)]


@op("ConvTranspose")
def conv_transpose(node, inputs, ctx):
    """The float decoder: every kernel tap is one GEMM scattered at stride into the output."""
    x, w = as_float(inputs[0]), as_float(inputs[1])
    stride, dilation, pads, groups = conv_params(node)
    if groups != 1:
        raise GoldenError(f"ConvTranspose node {node.name}: groups={groups}; only groups=1 is supported")
    b, c_in, t = x.shape
    _, c_out, kernel = w.shape
    extra = node.attrs.get("output_padding", [0])[0]
    length = (t - 1) * stride + dilation * (kernel - 1) + 1 + extra
    y = np.zeros((b, c_out, length), np.float32)
    xt = x.transpose(0, 2, 1)  # (B, T, C_in)
    for tap in range(kernel):
        start = tap * dilation
        y[:, :, start: start + (t - 1) * stride + 1: stride] += np.matmul(xt, w[:, :, tap]).transpose(0, 2, 1)
    y = y[:, :, pads[0]: length - pads[1]]
    if len(inputs) > 2 and inputs[2] is not None:
        y = y + as_float(inputs[2]).reshape(1, -1, 1)
    return [y]


@op("Resize")
def resize(node, inputs, ctx):
    """Linear resize along one axis (the visual stream's 25 fps -> frame-rate interpolation), with ONNX's
    coordinate conventions; weights and sum in float32 like torch's upsample_linear1d."""
    x = as_float(inputs[0])
    scales = inputs[2] if len(inputs) > 2 and inputs[2] is not None and np.size(inputs[2]) else None
    sizes = inputs[3] if len(inputs) > 3 and inputs[3] is not None and np.size(inputs[3]) else None
    out_shape = _ints(sizes) if sizes is not None else [int(np.floor(d * s)) for d, s in zip(x.shape, np.asarray(scales))]
    axes = [a for a, (i, o) in enumerate(zip(x.shape, out_shape)) if i != o]
    mode = node.attrs.get("mode", "nearest")
    transform = node.attrs.get("coordinate_transformation_mode", "half_pixel")
    if mode != "linear" or len(axes) > 1 or transform not in ("half_pixel", "pytorch_half_pixel", "align_corners",
                                                              "asymmetric"):
        raise GoldenError(f"Resize node {node.name}: mode {mode!r}, {transform!r} on axes {axes}; only linear "
                          f"resizing of one axis is supported")
    if not axes:
        return [x]
    axis, n_in, n_out = axes[0], x.shape[axes[0]], out_shape[axes[0]]
    lo, hi, w_lo, w_hi = linear_resize_taps(n_in, n_out, transform)
    shape = [1] * x.ndim
    shape[axis] = -1
    return [(np.take(x, lo, axis=axis) * w_lo.reshape(shape) + np.take(x, hi, axis=axis) * w_hi.reshape(shape))
            .astype(np.float32)]


def linear_resize_taps(n_in: int, n_out: int, transform: str):
    """Output i of a linear resize is x[lo[i]] * w_lo[i] + x[hi[i]] * w_hi[i] (float32); the native
    engine's packer stores these arrays."""
    scale = np.float32(n_in) / np.float32(n_out)  # torch: input_size / output_size in float
    i = np.arange(n_out, dtype=np.float32)
    if transform == "align_corners":
        src = i * (np.float32(n_in - 1) / np.float32(max(n_out - 1, 1)))
    elif transform == "asymmetric":
        src = i * scale
    else:
        src = np.maximum((i + np.float32(0.5)) * scale - np.float32(0.5), np.float32(0))
    lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    w_hi = (src - lo.astype(np.float32)).astype(np.float32)
    w_lo = np.float32(1) - w_hi
    return lo, hi, w_lo, w_hi
