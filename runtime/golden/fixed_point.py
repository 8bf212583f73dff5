"""Integer primitives of the golden engine: power-of-two scales, half-to-even shifts, range checks.

Conventions (shared by Brevitas, QONNX `Quant` with rounding_mode ROUND, and ONNX QuantizeLinear):
  code = clamp(round_half_even(x / 2^e), qmin, qmax),  value = code * 2^e.
Porters: TFLite and CMSIS-NN requantize with `(acc * M + (1 << (n-1))) >> n`, which rounds ties
up (or away from zero). With power-of-two scales about a fifth of all accumulators are exact ties, so
those kernels disagree with QAT on many outputs; `shift_right_half_even` below is the rule to port.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from limuse_runtime.errors import InputError

INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1


class GoldenError(InputError):
    """A model or input the bit-exact engine cannot run exactly."""


@dataclass(frozen=True)
class QTensor:
    """Integer codes and a power-of-two exponent: the real value is codes * 2**exponent.

    `exponent` is an int or an int array broadcastable to `codes` (per-channel weights).
    `bits` is None for wide intermediates (accumulators, aligned sums)."""

    codes: np.ndarray
    exponent: "int | np.ndarray"
    bits: "int | None" = None
    signed: bool = True
    narrow: bool = False

    def with_codes(self, codes: np.ndarray) -> "QTensor":
        return QTensor(codes, self.exponent, self.bits, self.signed, self.narrow)

    def dequantize(self) -> np.ndarray:
        # Exact in float32 while |codes| < 2^24, which holds for every <= 8-bit tensor.
        return self.codes.astype(np.float32) * np.exp2(np.asarray(self.exponent, np.float32))

    @property
    def per_tensor(self) -> bool:
        return np.ndim(self.exponent) == 0


def code_range(bits: int, signed: bool, narrow: bool) -> tuple[int, int]:
    if signed:
        return (-(2 ** (bits - 1)) + int(narrow), 2 ** (bits - 1) - 1)
    return (0, 2 ** bits - 1 - int(narrow))


def po2_exponent(scale: np.ndarray, where: str) -> "int | np.ndarray":
    """The integer e with scale == 2^e exactly, or a GoldenError naming `where`."""
    scale = np.asarray(scale, dtype=np.float64)
    if np.any(scale <= 0) or not np.all(np.isfinite(scale)):
        raise GoldenError(f"{where}: scale {scale.ravel()[:4]} is not positive and finite; "
                          f"expected power-of-two scales (recipe with -po2)")
    mantissa, exp = np.frexp(scale)
    if np.any(mantissa != 0.5):
        bad = scale[mantissa != 0.5].ravel()[:3]
        raise GoldenError(f"{where}: scale {bad.tolist()} is not a power of two; the golden engine is "
                          f"bit-exact only for power-of-two scales (train with a '-po2' recipe, e.g. w3a8-po2)")
    exp = (exp - 1).astype(np.int64)
    return int(exp.ravel()[0]) if exp.size == 1 else exp


def shift_right_half_even(acc: np.ndarray, shift: "int | np.ndarray", bound: "int | None" = None) -> np.ndarray:
    """round_half_even(acc / 2^shift), branch-free: (acc + (half - 1) + bit_shift(acc)) >> shift,
    where bit_shift(acc) = (acc >> shift) & 1 is the parity of the floor. A tie then rounds up only
    from an odd floor. shift may be <= 0 (an exact left shift). Works in the dtype of `acc` when
    `bound` (a known max |acc|) proves the sum cannot overflow it, else in int64."""
    acc = np.asarray(acc)
    if not np.issubdtype(acc.dtype, np.integer):
        raise TypeError(f"shift_right_half_even: integer accumulators expected, got {acc.dtype}")
    shift = np.asarray(shift, dtype=np.int64)
    if np.all(shift <= 0):
        return acc.astype(np.int64) << (-shift)
    if np.any(shift <= 0):  # mixed per-channel shifts: each sign with the rule that fits
        return np.where(shift > 0, shift_right_half_even(acc, np.maximum(shift, 1)),
                        acc.astype(np.int64) << np.maximum(-shift, 0))
    half = np.int64(1) << (shift - 1)
    wide = acc.dtype.itemsize < 8 and (bound is None or np.ndim(shift) > 0 or
                                       bound + int(half) >= 2 ** (8 * acc.dtype.itemsize - 1))
    work = acc.astype(np.int64) if wide else acc
    shift = shift.astype(work.dtype) if np.ndim(shift) else work.dtype.type(shift)
    parity = (work >> shift) & 1
    return (work + (half - 1).astype(work.dtype) + parity) >> shift


def clamp(codes: np.ndarray, bits: int, signed: bool, narrow: bool) -> np.ndarray:
    lo, hi = code_range(bits, signed, narrow)
    return np.clip(codes, lo, hi)


def code_dtype(bits: "int | None", signed: bool = True) -> type:
    """The smallest integer type that holds codes of that width (wide intermediates: int64)."""
    if bits is None:
        return np.int64
    if not signed and bits <= 8:
        return np.uint8
    bits += int(not signed)
    return np.int8 if bits <= 8 else np.int16 if bits <= 16 else np.int32 if bits <= 32 else np.int64


def quantize_float(x: np.ndarray, exponent, bits: int, signed: bool, narrow: bool) -> np.ndarray:
    """Brevitas/QONNX Quant of a float32 tensor: x / 2^e is exact in float, then rint (half to even)."""
    x = np.asarray(x, dtype=np.float32)
    scaled = x * np.exp2(-np.asarray(exponent, dtype=np.float32))
    np.rint(scaled, out=scaled)
    lo, hi = code_range(bits, signed, narrow)
    np.clip(scaled, lo, hi, out=scaled)
    return scaled.astype(code_dtype(bits, signed))


def requantize(acc: QTensor, exponent, bits: int, signed: bool, narrow: bool, bound: "int | None" = None) -> np.ndarray:
    """Integer requantization of `acc` to a new power-of-two scale: shift, round half even, clamp."""
    shift = np.asarray(exponent, dtype=np.int64) - np.asarray(acc.exponent, dtype=np.int64)
    codes = clamp(shift_right_half_even(acc.codes, shift, bound), bits, signed, narrow)
    return codes.astype(code_dtype(bits, signed))


def divide_half_even(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b for int64 arrays (b > 0), rounded half to even; the exact integer result.

    While |a| < 2^52 (and b < 2^52) float64 gives the same integers four times faster than int64
    divmod: a and b are exact, a tie k + 1/2 is representable and so computed exactly, and any other
    quotient lies at least 1/(2b) from a tie while the division errs by at most |a/b| 2^-53 < 1/(2b)."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    if a.size and b.size and max(int(np.abs(a).max()), int(b.max())) < 2 ** 52:
        return np.rint(a / b).astype(np.int64)
    quotient, rest = np.divmod(a, b)
    twice = 2 * rest
    return quotient + ((twice > b) | ((twice == b) & (quotient % 2 == 1)))


def isqrt(v: np.ndarray) -> np.ndarray:
    """floor(sqrt(v)) for int64 arrays in [0, 2^52): a float estimate corrected to the exact integer."""
    s = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    s -= s * s > v
    return s + ((s + 1) * (s + 1) <= v)


def check_accumulator(acc: np.ndarray, layer: str) -> int:
    """Max |acc|; a GoldenError naming the layer if any accumulator leaves the int32 range."""
    if acc.size == 0:
        return 0
    hi, lo = int(acc.max()), int(acc.min())
    if hi > INT32_MAX or lo < INT32_MIN:
        raise GoldenError(f"layer {layer}: accumulator overflow, range [{lo}, {hi}] exceeds int32 "
                          f"[{INT32_MIN}, {INT32_MAX}]; lower the weight bits or the layer's fan-in")
    return max(hi, -lo)


def align(a: QTensor, b: QTensor) -> tuple[np.ndarray, np.ndarray, "int | np.ndarray"]:
    """Both operands' codes at the finer of the two power-of-two scales (exact left shifts)."""
    e = np.minimum(np.asarray(a.exponent), np.asarray(b.exponent))
    ca = np.asarray(a.codes, np.int64) << (np.asarray(a.exponent) - e)
    cb = np.asarray(b.codes, np.int64) << (np.asarray(b.exponent) - e)
    return ca, cb, (int(e) if e.ndim == 0 else e)


def lookup_table(fn, exponent: int, bits: int, signed: bool, narrow: bool) -> np.ndarray:
    """fn (float32) of every code of a <= 8-bit tensor, as a 256-entry table indexed by the code's byte
    (two's complement for signed codes): the non-linearity becomes one table read per value."""
    if bits > 8:
        raise ValueError(f"lookup_table: {bits}-bit codes; tables are for <= 8-bit inputs")
    byte = np.arange(256, dtype=np.uint8)
    codes = byte.view(np.int8) if signed else byte
    values = QTensor(codes, exponent, 8, signed, narrow).dequantize()
    return np.asarray(fn(values), dtype=np.float32)


def apply_table(table: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """The table read: a code's two's-complement byte is its index."""
    return table[codes.view(np.uint8)] if codes.dtype.itemsize == 1 else table[codes.astype(np.int64) & 0xFF]
