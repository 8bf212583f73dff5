/* The kernels: each repeats one golden-engine handler (runtime/golden/ops.py, lower.py, fixed_point.py) in
 * the case the packer recorded, on arena buffers whose sizes the loader has checked.
 *
 * Integer tensors are int32 (codes and wide sums; the packer proved every static bound fits). Float
 * tensors are float32 and every float op is the single IEEE operation numpy performs, in numpy's order,
 * so the results are the golden engine's bit for bit; the one exception is the transposed-conv decoder,
 * whose channel sums numpy leaves to BLAS (here: in double, rounded once; equal within float rounding).
 * Build with FP contraction off (-ffp-contract=off): a fused multiply-add would round differently.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "model.h"

/* This file is compiled once per SIMD path, into one library that picks a path at run time (engine.c):
 * built alone, it is the baseline path (SSE2 on x86-64, NEON on aarch64, the portable loops elsewhere)
 * and defines the load-time helpers (lmn_build_pairs, ...); kernels_portable.c and kernels_avx2.c include
 * it again with LMN_KERNEL_COPY defined and another name for lmn_execute (LMN_EXECUTE). LMN_SIMD: this
 * copy uses the channel-pair dot products; without it the portable loops, the same integers. */
#ifndef LMN_EXECUTE
#define LMN_EXECUTE lmn_execute_base
#endif
#if defined(LMN_PAIRS) && !defined(LMN_KERNEL_PORTABLE)
#define LMN_SIMD 1
#endif

#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef LMN_SIMD
#include <stdlib.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#ifdef __AVX2__
#include <immintrin.h>
#endif
#ifdef __aarch64__
#include <arm_neon.h>
#endif
#endif

#define INT_AT(m, id) ((int32_t *)(m)->arena + (m)->values[id].offset)
#define FLOAT_AT(m, id) ((float *)(m)->arena + (m)->values[id].offset)

static float exp2_int(int64_t e)
{
    /* 2^e exactly (|e| <= 126): what numpy's exp2 of an integer float32 gives */
    float s = 1.0f;
    for (; e > 0; e--)
        s *= 2.0f;
    for (; e < 0; e++)
        s *= 0.5f;
    return s;
}

/* floor(a / 2^k) for k in [1, 62], without relying on the implementation-defined >> of negatives */
static int64_t floor_shift(int64_t a, int k)
{
    return a >= 0 ? a >> k : -((-(a + 1)) >> k) - 1;
}

/* round_half_even(a / 2^k) for k >= 1; an exact left shift for k <= 0 (|a| < 2^31, so k >= -31 fits) */
static int64_t shift_half_even(int64_t a, int k)
{
    int64_t q, r, half;
    if (k <= 0)
        return k < -31 ? (a > 0 ? INT64_MAX / 4 : (a < 0 ? -INT64_MAX / 4 : 0)) : a * ((int64_t)1 << -k);
    q = floor_shift(a, k);
    r = a - q * ((int64_t)1 << k);
    half = (int64_t)1 << (k - 1);
    return q + (r > half || (r == half && (q & 1)));
}

static int32_t clamp64(int64_t v, int64_t lo, int64_t hi)
{
    return (int32_t)(v < lo ? lo : (v > hi ? hi : v));
}

/* a / b rounded half to even, b > 0 (fixed_point.divide_half_even) */
static int64_t divide_half_even(int64_t a, int64_t b)
{
    int64_t q = a / b, r = a % b, twice;
    if (r < 0) { /* C truncates toward zero: make it a floor division */
        q -= 1;
        r += b;
    }
    twice = 2 * r;
    return q + (twice > b || (twice == b && (q & 1)));
}

static int64_t isqrt64(int64_t v)
{
    int64_t s = (int64_t)floor(sqrt((double)v));
    if (s * s > v)
        s -= 1;
    if ((s + 1) * (s + 1) <= v)
        s += 1;
    return s;
}

/* ---------------------------------------------------------------- quantization */
/* Round half to even in the default rounding mode: adding 1.5 * 2^23 (2^52) drops the fraction of
 * |v| <= 2^22 (2^51). C99 rintf/nearbyint do the same but are library calls on x86-64 without SSE4.1.
 * Needs arithmetic in the declared type (FLT_EVAL_METHOD 0: SSE, NEON); otherwise the library call. */
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
static float round_half_even(float v) { return (v + 12582912.0f) - 12582912.0f; }
static double round_half_even_double(double v) { return (v + 6755399441055744.0) - 6755399441055744.0; }
#else
static float round_half_even(float v) { return rintf(v); }
static double round_half_even_double(double v) { return nearbyint(v); }
#endif

static void quant_array(const float *x, int64_t n, int64_t e, int64_t lo_code, int64_t hi_code, int32_t *y)
{
    float scale = exp2_int(-e), lo = (float)lo_code, hi = (float)hi_code;
    int64_t i;
    for (i = 0; i < n; i++) {
        float v = x[i] * scale;
        /* the code range is integral: clamping first is the same; written so that a NaN (only from a
         * corrupt model's floats) clamps to lo instead of reaching the integer conversion */
        v = v >= lo ? (v > hi ? hi : v) : lo;
        y[i] = (int32_t)round_half_even(v);
    }
}

static void quant_float(lmn_model *m, const lmn_op *op)
{
    quant_array(FLOAT_AT(m, op->f[1]), op->f[2], op->f[3], op->f[4], op->f[5], INT_AT(m, op->f[0]));
}

#ifndef LMN_KERNEL_COPY /* load-time helpers: defined once, by the baseline copy */
void lmn_quant_values(const float *x, int n, int64_t e, int64_t lo, int64_t hi, int32_t *out)
{
    quant_array(x, n, e, lo, hi, out);
}

void lmn_prelu_values(int64_t e, int is_signed, float slope, float table[256])
{
    float scale = exp2_int(e);
    int j;
    for (j = 0; j < 256; j++) {
        int code = is_signed ? (j < 128 ? j : j - 256) : j;
        float v = (float)code * scale;
        table[j] = v < 0.0f ? v * slope : v;
    }
}
#endif

/* The loops below compute floor(a / 2^k) of int32 values as a >> k, which vectorises: C99 leaves >> of a
 * negative value to the implementation, and every compiler this engine targets (gcc, clang; x86-64,
 * aarch64) shifts arithmetically. Checked here rather than assumed. */
#if ((-1) >> 1) != -1
#error "the native engine needs an arithmetic right shift of negative integers"
#endif

/* shift_half_even for k in [1, 30]: with a = q 2^k + r (0 <= r < 2^k), round up iff r > half or r == half
 * and q is odd, i.e. iff r + half - 1 + (q & 1) >= 2^k (below 2^31: no overflow). Written without
 * comparisons, so that gcc vectorises the loops over it (it does not with the compare-and-or form). */
static int32_t requant_one(int32_t a, int k, int32_t half, int32_t lo, int32_t hi)
{
    int32_t q = a >> k, r = a & (int32_t)(((uint32_t)1 << k) - 1u), v;
    v = q + ((r + (half - 1) + (q & 1)) >> k);
    return v < lo ? lo : (v > hi ? hi : v);
}

static void requant(lmn_model *m, const lmn_op *op)
{
    const int32_t *x = INT_AT(m, op->f[1]);
    int32_t *y = INT_AT(m, op->f[0]);
    int64_t i, n = op->f[2], lo = op->f[4], hi = op->f[5];
    int k = (int)op->f[3];
    if (k >= 1 && k <= 30) {
        int32_t half = (int32_t)1 << (k - 1);
        for (i = 0; i < n; i++)
            y[i] = requant_one(x[i], k, half, (int32_t)lo, (int32_t)hi);
        return;
    }
    for (i = 0; i < n; i++)
        y[i] = clamp64(shift_half_even(x[i], k), lo, hi);
}

/* requantizes n accumulators in place; the plain right shift (1..30) vectorises */
static void requant_run(int32_t *acc, int64_t n, int shift, int32_t lo, int32_t hi)
{
    int64_t r;
    if (shift >= 1 && shift <= 30) {
        int32_t half = (int32_t)1 << (shift - 1);
        for (r = 0; r < n; r++)
            acc[r] = requant_one(acc[r], shift, half, lo, hi);
    } else {
        for (r = 0; r < n; r++)
            acc[r] = clamp64(shift_half_even(acc[r], shift), lo, hi);
    }
}

/* ---------------------------------------------------------------- integer layers */
/* Per-frame linear layers (rows, C_in) x (C_in, C_out) have few channels per row (4 -> 12 in limuse_k32's
 * TAC, 4 -> 24 in its blocks) and hundreds of thousands of rows: a row at a time leaves the vector units
 * idle. So a tile of TILE rows is turned channel-major (int16 codes, C_in x TILE), and each weight is one
 * broadcast over the tile (a zero weight, frequent at 3 bits, skips its whole pass). When the static bound
 * 128 * max_co sum_ci |w| + max |bias| is below 2^15, the accumulators are int16 as well. */
#define TILE LMN_TILE
#define CODEC_BLOCK_FRAMES 32 /* the paper's context size: the block length of the codec's TACs and GC-TCNs */
#if LMN_TILE % 8 != 0
#error "the tiles run in vectors of 8 rows"
#endif
#define TILE_CHANNELS LMN_TILE_CHANNELS

static void linear_rows(lmn_model *m, const lmn_op *op, int64_t row, int64_t end)
{
    /* the plain form, for layers too wide for a tile's stack buffer */
    const int32_t *x = INT_AT(m, op->f[1]);
    int32_t *y = INT_AT(m, op->f[0]);
    int64_t cin = op->f[3], cout = op->f[4], ci, co;
    int has_out = (int)op->f[6];
    for (; row < end; row++)
        for (co = 0; co < cout; co++) {
            int64_t acc = op->ints0 ? op->ints0[co] : 0;
            for (ci = 0; ci < cin; ci++)
                acc += (int64_t)x[row * cin + ci] * op->weights[ci * cout + co];
            y[row * cout + co] = has_out ? clamp64(shift_half_even(acc, (int)op->f[7]), op->f[8], op->f[9]) : (int32_t)acc;
        }
}

static void linear(lmn_model *m, const lmn_op *op)
{
    const int32_t *x = INT_AT(m, op->f[1]);
    int32_t *y = INT_AT(m, op->f[0]);
    int64_t rows = op->f[2], cin = op->f[3], cout = op->f[4], tiles = (rows + TILE - 1) / TILE, tile;
    int has_out = (int)op->f[6], narrow = op->narrow;
    int shift = has_out ? (int)op->f[7] : 0;
    int64_t lo = has_out ? op->f[8] : 0, hi = has_out ? op->f[9] : 0;
    const int8_t *w = op->weights;
    const int32_t *bias = op->ints0;
    if (cin > TILE_CHANNELS) {
        linear_rows(m, op, 0, rows);
        return;
    }
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (tile = 0; tile < tiles; tile++) {
        int16_t xt[TILE_CHANNELS * TILE];
        int64_t r0 = tile * TILE, nr = rows - r0 < TILE ? rows - r0 : TILE, r, ci, co;
        for (ci = 0; ci < cin; ci++)
            for (r = 0; r < TILE; r++)
                xt[ci * TILE + r] = r < nr ? (int16_t)x[(r0 + r) * cin + ci] : 0;
        for (co = 0; co < cout; co++) {
            int32_t *yc = y + r0 * cout + co;
            int32_t b0 = bias ? bias[co] : 0;
            if (narrow) {
                int16_t acc[TILE];
                int32_t wide[TILE];
                for (r = 0; r < TILE; r++)
                    acc[r] = (int16_t)b0;
                for (ci = 0; ci < cin; ci++) {
                    int16_t wv = w[ci * cout + co];
                    const int16_t *xs = xt + ci * TILE;
                    if (wv == 0)
                        continue;
                    for (r = 0; r < TILE; r++)
                        acc[r] = (int16_t)(acc[r] + wv * xs[r]);
                }
                for (r = 0; r < TILE; r++)
                    wide[r] = acc[r];
                if (has_out)
                    requant_run(wide, TILE, shift, (int32_t)lo, (int32_t)hi);
                for (r = 0; r < nr; r++)
                    yc[r * cout] = wide[r];
            } else {
                int32_t acc[TILE];
                for (r = 0; r < TILE; r++)
                    acc[r] = b0;
                for (ci = 0; ci < cin; ci++) {
                    int32_t wv = w[ci * cout + co];
                    const int16_t *xs = xt + ci * TILE;
                    if (wv == 0)
                        continue;
                    for (r = 0; r < TILE; r++)
                        acc[r] += wv * xs[r];
                }
                if (has_out)
                    requant_run(acc, TILE, shift, (int32_t)lo, (int32_t)hi);
                for (r = 0; r < nr; r++)
                    yc[r * cout] = acc[r];
            }
        }
    }
}

static void conv(lmn_model *m, const lmn_op *op)
{
    const int32_t *x = INT_AT(m, op->f[1]);
    int32_t *y = INT_AT(m, op->f[0]);
    int64_t b = op->f[2], cin = op->f[3], t = op->f[4], cout = op->f[5], k = op->f[6], stride = op->f[7];
    int64_t dil = op->f[8], padl = op->f[9], groups = op->f[11], tout = op->f[12];
    int has_out = (int)op->f[14];
    int shift = has_out ? (int)op->f[15] : 0;
    int64_t lo = has_out ? op->f[16] : 0, hi = has_out ? op->f[17] : 0;
    int64_t cg = cin / groups, og = cout / groups, job;
    const int32_t *bias = op->ints0;
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (job = 0; job < b * cout; job++) {
        /* the packer proved |acc| < 2^31: int32 rows of accumulators, one weight broadcast over a run */
        int64_t bi = job / cout, co = job % cout, g = co / og, ci, j, to;
        const int8_t *wc = op->weights + co * cg * k;
        int32_t *yr = y + (bi * cout + co) * tout;
        int32_t b0 = bias ? bias[co] : 0;
        for (to = 0; to < tout; to++)
            yr[to] = b0;
        for (ci = 0; ci < cg; ci++) {
            const int32_t *xc = x + (bi * cin + g * cg + ci) * t;
            for (j = 0; j < k; j++) {
                int32_t w = wc[ci * k + j];
                int64_t offset = j * dil - padl, first, last; /* input index = to * stride + offset */
                if (w == 0)
                    continue;
                first = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
                last = (t - 1 - offset) < 0 ? -1 : (t - 1 - offset) / stride;
                if (last > tout - 1)
                    last = tout - 1;
                if (stride == 1) {
                    const int32_t *xs = xc + offset;
                    for (to = first; to <= last; to++)
                        yr[to] += w * xs[to];
                } else {
                    for (to = first; to <= last; to++)
                        yr[to] += w * xc[to * stride + offset];
                }
            }
        }
        if (has_out)
            requant_run(yr, tout, shift, (int32_t)lo, (int32_t)hi);
    }
}

/* ---------------------------------------------------------------- integer norm (ops.integer_norm) */
/* A norm's statistics of one row of codes: sum, sum of squares and range (its first pass, which the
 * fused block computes while it writes the codes). */
typedef struct {
    int64_t sum, sq;
    int32_t lo, hi;
} lmn_stats;

/* adds the codes x[0..n) to the statistics */
static void stats_add(lmn_stats *st, const int32_t *x, int64_t n)
{
    int64_t i, sum = st->sum, sq = st->sq;
    int32_t lo = st->lo, hi = st->hi;
    for (i = 0; i < n; i++) {
        int32_t v = x[i];
        sum += v;
        sq += (int64_t)v * v;
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    st->sum = sum;
    st->sq = sq;
    st->lo = lo;
    st->hi = hi;
}

static void row_stats(const int32_t *xr, int64_t n, lmn_stats *st)
{
    st->sum = st->sq = 0;
    st->lo = INT32_MAX;
    st->hi = INT32_MIN;
    stats_add(st, xr, n);
}

/* A row's norm (ops.integer_norm): its mean and standard deviation and, where the row has fewer possible
 * codes (hi - lo + 1) than elements, the normalised value of every code in [lo, hi] (use_table); otherwise
 * norm_value divides each element. */
typedef struct {
    int32_t mean, lo, hi, use_table;
    double sd;
    int fm, fn;
    int32_t q[512];
} lmn_norm;

static void norm_prepare(const int32_t *xr, int64_t n, const lmn_stats *st, int fm, int fn, lmn_norm *nm)
{
    /* 8-bit input codes (the packer checked): every d = (q << F) - mean and d << P fits int32 */
    int64_t i, var = 0, sd;
    int32_t mean = (int32_t)divide_half_even(st->sum * ((int64_t)1 << fm), n), lo = st->lo, hi = st->hi;
    /* sum_i ((x_i << F) - mean)^2 = (sum x^2 << 2F) - 2 mean (sum x << F) + n mean^2, the same integer
     * (every term below 2^62 for 8-bit codes and n < 2^28: checked here, else the two-pass form) */
    if (n < ((int64_t)1 << 28) && lo >= -256 && hi <= 256 && fm <= 8) {
        var = st->sq * ((int64_t)1 << (2 * fm)) - 2 * (int64_t)mean * (st->sum * ((int64_t)1 << fm))
              + n * (int64_t)mean * mean;
    } else {
        for (i = 0; i < n; i++) {
            int32_t d = xr[i] * (1 << fm) - mean;
            var += (int64_t)d * d;
        }
    }
    var /= n;
    sd = isqrt64(var);
    if (sd < 1)
        sd = 1;
    nm->mean = mean;
    nm->lo = lo;
    nm->hi = hi;
    nm->fm = fm;
    nm->fn = fn;
    nm->sd = (double)sd;
    /* the double quotient rounded half to even is the exact rdiv: a tie k + 1/2 is representable and
     * any other quotient lies 1 / (2 sd) from one, beyond the division's error (|d << P| < 2^52).
     * A row has at most 511 distinct codes (8-bit, either signedness) and usually more elements than
     * that: then the quotient of each code in [lo, hi] is computed once, into a table. */
    nm->use_table = (int64_t)hi - lo + 1 < n && (int64_t)hi - lo < 512;
    if (nm->use_table)
        for (i = 0; i <= hi - lo; i++) {
            int32_t d = ((lo + (int32_t)i) * (1 << fm) - mean) * (1 << fn);
            nm->q[i] = (int32_t)round_half_even_double((double)d / nm->sd);
        }
}

static int32_t norm_value(const lmn_norm *nm, int32_t x)
{
    int32_t d;
    if (nm->use_table)
        return nm->q[x - nm->lo];
    d = (x * (1 << nm->fm) - nm->mean) * (1 << nm->fn);
    return (int32_t)round_half_even_double((double)d / nm->sd);
}

#if defined(LMN_SIMD) && defined(__aarch64__)
/* A code -> code table of 8-bit codes as 256 bytes in sixteen NEON registers (a gather of AArch64's table
 * lookups: four 64-byte vqtbl4q steps, each byte index answered by the one whose range holds it), and
 * how a byte widens back to its code: sign-extended (codes in [-128, 127]) or not ([0, 255]). */
typedef struct {
    uint8x16x4_t part[4];
    int32x4_t widen;   /* 24 for signed codes (shifted up, then arithmetically down), 0 for unsigned */
    int16x8_t widen16; /* the same for int16 lanes: 8 or 0 */
} byte_table;

/* 0 where some code is not an 8-bit value of one signedness (the scalar loops then serve) */
static int byte_table_of(byte_table *t, const int32_t codes[256])
{
    uint8_t bytes[256];
    int j, is_signed = 1, is_unsigned = 1;
    for (j = 0; j < 256; j++) {
        is_signed &= codes[j] >= -128 && codes[j] <= 127;
        is_unsigned &= codes[j] >= 0 && codes[j] <= 255;
        bytes[j] = (uint8_t)((uint32_t)codes[j] & 0xFFu);
    }
    for (j = 0; j < 4; j++)
        t->part[j] = vld1q_u8_x4(bytes + 64 * j);
    t->widen = vdupq_n_s32(is_signed ? 24 : 0);
    t->widen16 = vdupq_n_s16(is_signed ? 8 : 0);
    return is_signed || is_unsigned;
}

static inline uint8x16_t byte_lookup(const byte_table *t, uint8x16_t idx)
{
    uint8x16_t r = vqtbl4q_u8(t->part[0], idx); /* an index past a part's 64 bytes leaves its lane as it is */
    r = vqtbx4q_u8(r, t->part[1], veorq_u8(idx, vdupq_n_u8(0x40)));
    r = vqtbx4q_u8(r, t->part[2], veorq_u8(idx, vdupq_n_u8(0x80)));
    return vqtbx4q_u8(r, t->part[3], veorq_u8(idx, vdupq_n_u8(0xC0)));
}

/* the codes of eight bytes as int16 */
static inline int16x8_t byte_codes16(const byte_table *t, uint8x8_t b)
{
    int16x8_t v = vreinterpretq_s16_u16(vmovl_u8(b));
    return vshlq_s16(vshlq_s16(v, t->widen16), vnegq_s16(t->widen16));
}

/* the codes of four bytes (lanes 4q .. 4q + 3 of b) */
static inline int32x4_t byte_codes(const byte_table *t, uint16x8_t b16, int high)
{
    uint32x4_t u = high ? vmovl_high_u16(b16) : vmovl_u16(vget_low_u16(b16));
    int32x4_t v = vreinterpretq_s32_u32(u);
    return vshlq_s32(vshlq_s32(v, t->widen), vnegq_s32(t->widen));
}
#endif

#if defined(LMN_SIMD) && defined(__aarch64__)
/* A norm row's quotient table (codes lo .. hi, hi - lo < 256, every quotient an int16) as the low and the
 * high bytes of its quotients, each in byte_table form (the widening fields unused); 0 where the row's
 * table is not of that kind. */
static int quotient_byte_tables(const int32_t *q, int32_t lo, int32_t hi, byte_table *low, byte_table *high)
{
    uint8_t bytes[2][256];
    int64_t j, n = (int64_t)hi - lo + 1;
    if (n > 256)
        return 0;
    memset(bytes, 0, sizeof bytes);
    for (j = 0; j < n; j++) {
        if (q[j] < INT16_MIN || q[j] > INT16_MAX)
            return 0;
        bytes[0][j] = (uint8_t)((uint32_t)q[j] & 0xFFu);
        bytes[1][j] = (uint8_t)(((uint32_t)q[j] >> 8) & 0xFFu);
    }
    for (j = 0; j < 4; j++) {
        low->part[j] = vld1q_u8_x4(bytes[0] + 64 * j);
        high->part[j] = vld1q_u8_x4(bytes[1] + 64 * j);
    }
    return 1;
}
/* the quotients of sixteen codes x[0..16) of a row whose quotient tables these are (base: the row's lo) */
static inline void quotients16(const byte_table *low, const byte_table *high, const int32_t *x, int32x4_t base,
                               int32x4_t q[4])
{
    uint16x8_t i0 = vcombine_u16(vmovn_u32(vreinterpretq_u32_s32(vsubq_s32(vld1q_s32(x), base))),
                                 vmovn_u32(vreinterpretq_u32_s32(vsubq_s32(vld1q_s32(x + 4), base))));
    uint16x8_t i1 = vcombine_u16(vmovn_u32(vreinterpretq_u32_s32(vsubq_s32(vld1q_s32(x + 8), base))),
                                 vmovn_u32(vreinterpretq_u32_s32(vsubq_s32(vld1q_s32(x + 12), base))));
    uint8x16_t idx = vcombine_u8(vmovn_u16(i0), vmovn_u16(i1));
    uint8x16_t l = byte_lookup(low, idx), h = byte_lookup(high, idx);
    int16x8_t q0 = vreinterpretq_s16_u8(vzip1q_u8(l, h)), q1 = vreinterpretq_s16_u8(vzip2q_u8(l, h));
    q[0] = vmovl_s16(vget_low_s16(q0));
    q[1] = vmovl_high_s16(q0);
    q[2] = vmovl_s16(vget_low_s16(q1));
    q[3] = vmovl_high_s16(q1);
}
#endif

/* One row of n codes (ops.integer_norm); channel c = (i / inner) mod channels. */
/* Channels-last rows up to this many elements get gamma and beta tiled over the row once per op, so that
 * the codec's short rows (32 frames x 4 or 12 channels) are normalised in one flat loop over the row. */
#define NORM_TILED_MAX 512

/* tiled_gamma, tiled_beta: gamma[i % channels] and beta[i % channels] for i < n, or NULL */
static void norm_row(const int32_t *xr, int32_t *yr, int64_t n, int64_t channels, int64_t inner, int fm, int fn,
                     const int32_t *gamma, const int32_t *beta, const int32_t *tiled_gamma, const int32_t *tiled_beta)
{
    int64_t o, c, j, outer = n / (channels * inner);
    lmn_stats st;
    lmn_norm nm;
    row_stats(xr, n, &st);
    norm_prepare(xr, n, &st, fm, fn, &nm);
    if (nm.use_table && tiled_gamma) {
        j = 0;
#if defined(LMN_SIMD) && defined(__AVX2__)
        {
            const __m256i base = _mm256_set1_epi32(nm.lo);
            for (; j + 8 <= n; j += 8) {
                __m256i idx = _mm256_sub_epi32(_mm256_loadu_si256((const __m256i *)(xr + j)), base);
                __m256i v = _mm256_i32gather_epi32((const int *)nm.q, idx, 4);
                v = _mm256_mullo_epi32(v, _mm256_loadu_si256((const __m256i *)(tiled_gamma + j)));
                _mm256_storeu_si256((__m256i *)(yr + j),
                                    _mm256_add_epi32(v, _mm256_loadu_si256((const __m256i *)(tiled_beta + j))));
            }
        }
#endif
        for (; j < n; j++)
            yr[j] = nm.q[xr[j] - nm.lo] * tiled_gamma[j] + tiled_beta[j];
        return;
    }
    if (nm.use_table && inner == 1) { /* channels-last rows */
        for (o = 0; o < outer; o++) {
            const int32_t *xs = xr + o * channels;
            int32_t *ys = yr + o * channels;
            for (c = 0; c < channels; c++)
                ys[c] = nm.q[xs[c] - nm.lo] * gamma[c] + beta[c];
        }
        return;
    }
    for (o = 0; o < outer; o++)
        for (c = 0; c < channels; c++) {
            const int32_t *xs = xr + (o * channels + c) * inner;
            int32_t *ys = yr + (o * channels + c) * inner, g = gamma[c], b = beta[c];
            if (nm.use_table)
                for (j = 0; j < inner; j++)
                    ys[j] = nm.q[xs[j] - nm.lo] * g + b;
            else
                for (j = 0; j < inner; j++)
                    ys[j] = norm_value(&nm, xs[j]) * g + b;
        }
}

static void integer_norm(lmn_model *m, const lmn_op *op)
{
    const int32_t *x = INT_AT(m, op->f[1]);
    int32_t *y = INT_AT(m, op->f[0]);
    int64_t rows = op->f[2], n = op->f[3], channels = op->f[4], row, i;
    int32_t tiled_gamma[NORM_TILED_MAX], tiled_beta[NORM_TILED_MAX];
    int tiled = op->f[5] == 1 && n <= NORM_TILED_MAX;
    if (tiled)
        for (i = 0; i < n; i++) {
            tiled_gamma[i] = op->ints0[i % channels];
            tiled_beta[i] = op->ints1[i % channels];
        }
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (row = 0; row < rows; row++)
        norm_row(x + row * n, y + row * n, n, op->f[4], op->f[5], (int)op->f[6], (int)op->f[7], op->ints0, op->ints1,
                 tiled ? tiled_gamma : NULL, tiled ? tiled_beta : NULL);
}

/* ---------------------------------------------------------------- elementwise over strided views */
/* Advances a multi-index over dims carrying two offsets along (strides sa, sb), O(1) per step; returns 0
 * after the last element. */
static int advance(int64_t *index, const int64_t *dims, int rank, int64_t *oa, const int64_t *sa, int64_t *ob,
                   const int64_t *sb)
{
    int d;
    for (d = rank - 1; d >= 0; d--) {
        *oa += sa[d];
        *ob += sb[d];
        if (++index[d] < dims[d])
            return 1;
        *oa -= sa[d] * dims[d];
        *ob -= sb[d] * dims[d];
        index[d] = 0;
    }
    return 0;
}

static void add_int(lmn_model *m, const lmn_op *op)
{
    const int32_t *a = INT_AT(m, op->f[1]), *b = INT_AT(m, op->f[2]);
    int32_t *y = INT_AT(m, op->f[0]);
    int64_t index[MAX_RANK] = {0}, i = 0, j;
    int32_t ma = (int32_t)1 << op->f[4], mb = (int32_t)1 << op->f[5]; /* the packer proved the sum fits int32 */
    int sub = (int)op->f[3], rank = op->a.rank, outer = rank ? rank - 1 : 0;
    int64_t inner = rank ? op->a.dims[rank - 1] : 1, sa = rank ? op->a.strides[rank - 1] : 0;
    int64_t sb = rank ? op->b.strides[rank - 1] : 0;
    int64_t oa = 0, ob = 0;
    do {
        const int32_t *pa = a + oa, *pb = b + ob;
        if (sub)
            for (j = 0; j < inner; j++)
                y[i + j] = pa[j * sa] * ma - pb[j * sb] * mb;
        else
            for (j = 0; j < inner; j++)
                y[i + j] = pa[j * sa] * ma + pb[j * sb] * mb;
        i += inner;
    } while (advance(index, op->a.dims, outer, &oa, op->a.strides, &ob, op->b.strides));
}

static float operand(const lmn_model *m, int64_t id, int dequant, float scale, int64_t i)
{
    return dequant ? (float)INT_AT(m, id)[i] * scale : FLOAT_AT(m, id)[i];
}

#define BINARY_CHUNK 256 /* floats per operand chunk on the stack (both operands are read before y is written) */

/* v[j] = operand(m, id, dequant, scale, at + j) for j < n */
static void operand_run(const lmn_model *m, int64_t id, int dequant, float scale, int64_t at, int64_t n, float *v)
{
    int64_t j;
    if (dequant) {
        const int32_t *x = INT_AT(m, id) + at;
        for (j = 0; j < n; j++)
            v[j] = (float)x[j] * scale;
    } else {
        memcpy(v, FLOAT_AT(m, id) + at, (size_t)n * sizeof *v);
    }
}

static void binary_float(lmn_model *m, const lmn_op *op)
{
    float *y = FLOAT_AT(m, op->f[0]);
    float sa = exp2_int(op->f[3]), sb = exp2_int(op->f[6]);
    int64_t index[MAX_RANK] = {0}, i = 0, j;
    int code = (int)op->f[7], rank = op->a.rank, outer = rank ? rank - 1 : 0;
    int da = (int)op->f[2], db = (int)op->f[5];
    int64_t inner = rank ? op->a.dims[rank - 1] : 1, ta = rank ? op->a.strides[rank - 1] : 0;
    int64_t tb = rank ? op->b.strides[rank - 1] : 0;
    int64_t oa = 0, ob = 0;
    if (code == 0 && !da && db && ta == 1 && tb == 1) { /* the residual add: float + dequantized codes */
        const float *xa = FLOAT_AT(m, op->f[1]);
        const int32_t *xb = INT_AT(m, op->f[4]);
        do {
            for (j = 0; j < inner; j++)
                y[i + j] = xa[oa + j] + (float)xb[ob + j] * sb;
            i += inner;
        } while (advance(index, op->a.dims, outer, &oa, op->a.strides, &ob, op->b.strides));
        return;
    }
    if (ta == 1 && tb == 1) { /* contiguous rows: chunks of both operands, then one loop per operator */
        float va[BINARY_CHUNK], vb[BINARY_CHUNK];
        do {
            int64_t j0, n;
            for (j0 = 0; j0 < inner; j0 += n) {
                float *yc = y + i + j0;
                n = inner - j0 < BINARY_CHUNK ? inner - j0 : BINARY_CHUNK;
                operand_run(m, op->f[1], da, sa, oa + j0, n, va);
                operand_run(m, op->f[4], db, sb, ob + j0, n, vb);
                if (code == 0)
                    for (j = 0; j < n; j++)
                        yc[j] = va[j] + vb[j];
                else if (code == 1)
                    for (j = 0; j < n; j++)
                        yc[j] = va[j] - vb[j];
                else if (code == 2)
                    for (j = 0; j < n; j++)
                        yc[j] = va[j] * vb[j];
                else
                    for (j = 0; j < n; j++)
                        yc[j] = va[j] / vb[j];
            }
            i += inner;
        } while (advance(index, op->a.dims, outer, &oa, op->a.strides, &ob, op->b.strides));
        return;
    }
    do {
        for (j = 0; j < inner; j++) {
            float va = operand(m, op->f[1], da, sa, oa + j * ta), vb = operand(m, op->f[4], db, sb, ob + j * tb);
            y[i + j] = code == 0 ? va + vb : code == 1 ? va - vb : code == 2 ? va * vb : va / vb;
        }
        i += inner;
    } while (advance(index, op->a.dims, outer, &oa, op->a.strides, &ob, op->b.strides));
}

static void table(lmn_model *m, const lmn_op *op)
{
    const int32_t *x = INT_AT(m, op->f[1]);
    float *y = FLOAT_AT(m, op->f[0]);
    const float *t = op->opcode == OP_PRELU_TABLE ? op->table : op->floats0;
    int64_t i, n = op->f[2];
    for (i = 0; i < n; i++)
        y[i] = t[(uint32_t)x[i] & 0xFFu]; /* the code's two's-complement byte (or unsigned code) */
}

/* y[r * stride + c] = cm[c * len + r] for c < nc (<= 4), r < rows: channel-major rows of sums back into
 * frame-major rows (AVX2, four channels: one 4 x 8 transpose per eight rows instead of 32 strided stores) */
static inline void rows_from_channels(int32_t *restrict y, int64_t stride, const int32_t *restrict cm, int64_t len,
                                      int64_t rows, int64_t nc)
{
    int64_t r = 0, c;
#if defined(LMN_SIMD) && defined(__AVX2__)
    for (; nc == 4 && r + 8 <= rows; r += 8) {
        __m256i v0 = _mm256_loadu_si256((const __m256i *)(cm + r));
        __m256i v1 = _mm256_loadu_si256((const __m256i *)(cm + len + r));
        __m256i v2 = _mm256_loadu_si256((const __m256i *)(cm + 2 * len + r));
        __m256i v3 = _mm256_loadu_si256((const __m256i *)(cm + 3 * len + r));
        __m256i t0 = _mm256_unpacklo_epi32(v0, v1), t1 = _mm256_unpackhi_epi32(v0, v1);
        __m256i t2 = _mm256_unpacklo_epi32(v2, v3), t3 = _mm256_unpackhi_epi32(v2, v3);
        __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2); /* rows 0 | 4, 1 | 5 */
        __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3); /* rows 2 | 6, 3 | 7 */
        int32_t *yr = y + r * stride;
        _mm_storeu_si128((__m128i *)yr, _mm256_castsi256_si128(u0));
        _mm_storeu_si128((__m128i *)(yr + stride), _mm256_castsi256_si128(u1));
        _mm_storeu_si128((__m128i *)(yr + 2 * stride), _mm256_castsi256_si128(u2));
        _mm_storeu_si128((__m128i *)(yr + 3 * stride), _mm256_castsi256_si128(u3));
        _mm_storeu_si128((__m128i *)(yr + 4 * stride), _mm256_extracti128_si256(u0, 1));
        _mm_storeu_si128((__m128i *)(yr + 5 * stride), _mm256_extracti128_si256(u1, 1));
        _mm_storeu_si128((__m128i *)(yr + 6 * stride), _mm256_extracti128_si256(u2, 1));
        _mm_storeu_si128((__m128i *)(yr + 7 * stride), _mm256_extracti128_si256(u3, 1));
    }
#endif
    for (; r < rows; r++)
        for (c = 0; c < nc; c++)
            y[r * stride + c] = cm[c * len + r];
}

/* cm[c * len + r] = y[r * stride + c] for c < 4, r < rows: the inverse (AVX2: 8 x 4 transposes) */
static inline void four_channels_from_rows(int32_t *restrict cm, int64_t len, const int32_t *restrict y,
                                           int64_t stride, int64_t rows)
{
    int64_t r = 0, c;
#if defined(LMN_SIMD) && defined(__AVX2__)
    for (; r + 8 <= rows; r += 8) {
        const int32_t *yr = y + r * stride;
#define ROWS_PAIR(i) _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(yr + (i) * stride))), \
                                             _mm_loadu_si128((const __m128i *)(yr + ((i) + 4) * stride)), 1)
        __m256i a0 = ROWS_PAIR(0), a1 = ROWS_PAIR(1), a2 = ROWS_PAIR(2), a3 = ROWS_PAIR(3); /* rows i | i + 4 */
#undef ROWS_PAIR
        __m256i t0 = _mm256_unpacklo_epi32(a0, a1), t1 = _mm256_unpackhi_epi32(a0, a1);
        __m256i t2 = _mm256_unpacklo_epi32(a2, a3), t3 = _mm256_unpackhi_epi32(a2, a3);
        _mm256_storeu_si256((__m256i *)(cm + r), _mm256_unpacklo_epi64(t0, t2));
        _mm256_storeu_si256((__m256i *)(cm + len + r), _mm256_unpackhi_epi64(t0, t2));
        _mm256_storeu_si256((__m256i *)(cm + 2 * len + r), _mm256_unpacklo_epi64(t1, t3));
        _mm256_storeu_si256((__m256i *)(cm + 3 * len + r), _mm256_unpackhi_epi64(t1, t3));
    }
#endif
    for (; r < rows; r++)
        for (c = 0; c < 4; c++)
            cm[c * len + r] = y[r * stride + c];
}

/* dst[r * dst_stride + j] = src[r + j * src_stride] for r < rows, j < cols: a 2-D transpose, four lines of
 * whichever axis divides by four at a time */
static void transpose_tile(int32_t *restrict dst, int64_t dst_stride, const int32_t *restrict src, int64_t src_stride,
                           int64_t rows, int64_t cols)
{
    int64_t r, j;
    if (rows % 4 == 0 && (cols % 8 == 0 || cols % 4 != 0)) {
        for (r = 0; r < rows; r += 4)
            four_channels_from_rows(dst + r * dst_stride, dst_stride, src + r, src_stride, cols);
    } else if (cols % 4 == 0) {
        for (j = 0; j < cols; j += 4)
            rows_from_channels(dst + j, dst_stride, src + j * src_stride, src_stride, rows, 4);
    } else {
        for (r = 0; r < rows; r++)
            for (j = 0; j < cols; j++)
                dst[r * dst_stride + j] = src[r + j * src_stride];
    }
}

static void copy(lmn_model *m, const lmn_op *op)
{
    int64_t index[MAX_RANK] = {0};
    int rank = op->dst.rank;
    int64_t inner = rank ? op->dst.dims[rank - 1] : 1, j;
    int64_t ds = rank ? op->dst.strides[rank - 1] : 0, ss = rank ? op->src.strides[rank - 1] : 0;
    int64_t d = op->dst.off, s = op->src.off;
    int outer_rank = rank ? rank - 1 : 0;
    const int32_t *x = INT_AT(m, op->f[1]);
    if (op->f[2]) { /* integer codes into a float tensor: dequantized */
        float *y = FLOAT_AT(m, op->f[0]), scale = exp2_int(op->f[3]);
        do {
            for (j = 0; j < inner; j++)
                y[d + j * ds] = (float)x[s + j * ss] * scale;
        } while (advance(index, op->dst.dims, outer_rank, &d, op->dst.strides, &s, op->src.strides));
    } else if (ds == 1 && ss == 1) { /* 4-byte elements of either kind */
        int32_t *y = INT_AT(m, op->f[0]);
        do
            memcpy(y + d, x + s, (size_t)inner * 4);
        while (advance(index, op->dst.dims, outer_rank, &d, op->dst.strides, &s, op->src.strides));
    } else if (rank >= 2) { /* the codec's block transposes: whole 2-D tiles between two advances */
        int32_t *y = INT_AT(m, op->f[0]);
        int64_t rows = op->dst.dims[rank - 2], dr = op->dst.strides[rank - 2], sr = op->src.strides[rank - 2], r;
        if ((ds == 1 && sr == 1) || (dr == 1 && ss == 1)) {
            do {
                if (ds == 1)
                    transpose_tile(y + d, dr, x + s, ss, rows, inner);
                else
                    transpose_tile(y + d, ds, x + s, sr, inner, rows);
            } while (advance(index, op->dst.dims, rank - 2, &d, op->dst.strides, &s, op->src.strides));
            return;
        }
        do {
            for (r = 0; r < rows; r++) {
                int32_t *yr = y + d + r * dr;
                const int32_t *xr = x + s + r * sr;
                for (j = 0; j < inner; j++)
                    yr[j * ds] = xr[j * ss];
            }
        } while (advance(index, op->dst.dims, rank - 2, &d, op->dst.strides, &s, op->src.strides));
    } else {
        int32_t *y = INT_AT(m, op->f[0]);
        for (j = 0; j < inner; j++)
            y[d + j * ds] = x[s + j * ss];
    }
}

/* numpy's float32 pairwise summation (pairwise_sum in loops_utils.h), which add.reduce uses along a
 * contiguous axis; the reduction starts from the identity 0. */
static float pairwise_sum(const float *a, int64_t n, int64_t stride)
{
    if (n < 8) {
        float res = 0.0f;
        int64_t i;
        for (i = 0; i < n; i++)
            res += a[i * stride];
        return res;
    } else if (n <= 128) {
        float r[8], res;
        int64_t i;
        int j;
        for (j = 0; j < 8; j++)
            r[j] = a[j * stride];
        for (i = 8; i < n - (n % 8); i += 8)
            for (j = 0; j < 8; j++)
                r[j] += a[(i + j) * stride];
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++)
            res += a[i * stride];
        return res;
    } else {
        int64_t n2 = n / 2;
        n2 -= n2 % 8;
        return pairwise_sum(a, n2, stride) + pairwise_sum(a + n2 * stride, n - n2, stride);
    }
}

static void reduce_mean(lmn_model *m, const lmn_op *op)
{
    float *y = FLOAT_AT(m, op->f[0]);
    int64_t outer = op->f[4], n = op->f[5], inner = op->f[6], o, i, k;
    float scale = exp2_int(op->f[3]), count = (float)n;
    const float *xf = FLOAT_AT(m, op->f[1]);
    const int32_t *xi = INT_AT(m, op->f[1]);
    for (o = 0; o < outer; o++) {
        if (inner == 1) { /* contiguous: numpy sums pairwise */
            float buffer[1024], sum;
            if (op->f[2]) {
                /* dequantize first, as the golden engine does; the sum of exact values in chunks is the same
                 * pairwise tree only when taken whole, so dequantize the row into the output's neighbour */
                if (n <= 1024) {
                    for (k = 0; k < n; k++)
                        buffer[k] = (float)xi[o * n + k] * scale;
                    sum = pairwise_sum(buffer, n, 1);
                } else {
                    /* rare: a long integer row; its pairwise sum of exact integers below 2^24 is exact */
                    double exact = 0.0;
                    for (k = 0; k < n; k++)
                        exact += (double)xi[o * n + k];
                    sum = (float)(exact * scale);
                }
            } else {
                sum = pairwise_sum(xf + o * n, n, 1);
            }
            y[o] = sum / count;
        } else { /* strided: numpy adds the rows in order */
            float *out = y + o * inner;
            for (i = 0; i < inner; i++)
                out[i] = 0.0f;
            for (k = 0; k < n; k++)
                for (i = 0; i < inner; i++)
                    out[i] += op->f[2] ? (float)xi[(o * n + k) * inner + i] * scale : xf[(o * n + k) * inner + i];
            for (i = 0; i < inner; i++)
                out[i] = out[i] / count;
        }
    }
}

static void resize(lmn_model *m, const lmn_op *op)
{
    float *y = FLOAT_AT(m, op->f[0]);
    int64_t outer = op->f[4], n_in = op->f[5], n_out = op->f[6], inner = op->f[7], o, i, r;
    float scale = exp2_int(op->f[3]);
    for (o = 0; o < outer; o++)
        for (i = 0; i < n_out; i++)
            for (r = 0; r < inner; r++) {
                int64_t a = (o * n_in + op->ints0[i]) * inner + r, b = (o * n_in + op->ints1[i]) * inner + r;
                float va = operand(m, op->f[1], (int)op->f[2], scale, a);
                float vb = operand(m, op->f[1], (int)op->f[2], scale, b);
                float pa = va * op->floats0[i], pb = vb * op->floats1[i];
                y[(o * n_out + i) * inner + r] = pa + pb;
            }
}

#define TRANSPOSED_CONV_TAPS 32 /* taps summed per pass over the input channels (limuse_k32's decoder: all 32) */

/* The golden engine adds, for each output sample, its taps' channel sums in increasing tap order. Frame by
 * frame from the last, every output meets its taps in that order; each channel sum is the same double sum
 * in channel order as a per-sample loop's (the products of two floats are exact in double), computed once
 * for all taps of the frame instead of once per output sample. */
static void conv_transpose(lmn_model *m, const lmn_op *op)
{
    float *y = FLOAT_AT(m, op->f[0]);
    int64_t b = op->f[4], cin = op->f[5], t = op->f[6], cout = op->f[7], k = op->f[8], stride = op->f[9];
    int64_t dil = op->f[10], padl = op->f[11], padr = op->f[12];
    int64_t full = (t - 1) * stride + dil * (k - 1) + 1, length = full - padl - padr, job;
    float scale = exp2_int(op->f[3]);
    const float *w = op->floats0, *bias = op->floats1;
    /* the input, as operand() reads it: int codes times the scale, or floats */
    const int32_t *xi = op->f[2] ? INT_AT(m, op->f[1]) : NULL;
    const float *xf = op->f[2] ? NULL : FLOAT_AT(m, op->f[1]);
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (job = 0; job < b * cout; job++) {
        int64_t bi = job / cout, co = job % cout, ti, j0, j, ci, o;
        float *yr = y + (bi * cout + co) * length;
        for (o = 0; o < length; o++)
            yr[o] = 0.0f;
        for (ti = t - 1; ti >= 0; ti--)
            for (j0 = 0; j0 < k; j0 += TRANSPOSED_CONV_TAPS) {
                int64_t taps = k - j0 < TRANSPOSED_CONV_TAPS ? k - j0 : TRANSPOSED_CONV_TAPS;
                double dot[TRANSPOSED_CONV_TAPS] = {0.0};
                for (ci = 0; ci < cin; ci++) {
                    int64_t at = (bi * cin + ci) * t + ti;
                    double xv = xi != NULL ? (double)((float)xi[at] * scale) : (double)xf[at];
                    const float *wr = w + (ci * cout + co) * k + j0;
                    if (taps == TRANSPOSED_CONV_TAPS) /* a constant trip count: the sums stay in vector registers */
                        for (j = 0; j < TRANSPOSED_CONV_TAPS; j++)
                            dot[j] += xv * (double)wr[j];
                    else
                        for (j = 0; j < taps; j++)
                            dot[j] += xv * (double)wr[j];
                }
                for (j = 0; j < taps; j++) {
                    o = ti * stride + (j0 + j) * dil - padl;
                    if (o >= 0 && o < length)
                        yr[o] += (float)dot[j];
                }
            }
        for (o = 0; o < length; o++)
            yr[o] = yr[o] + bias[co];
    }
}

/* ---------------------------------------------------------------- fused kernels */
/* y[i] = codes[x[i] & 0xFF]: a code -> code table (in place if y == x); AVX2: eight lookups per gather */
static void table_run(int32_t *y, const int32_t *x, int64_t n, const int32_t codes[256])
{
    int64_t i = 0;
#if defined(LMN_SIMD) && defined(__AVX2__)
    const __m256i mask = _mm256_set1_epi32(0xFF);
    for (; i + 8 <= n; i += 8) {
        __m256i idx = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i)), mask);
        _mm256_storeu_si256((__m256i *)(y + i), _mm256_i32gather_epi32((const int *)codes, idx, 4));
    }
#elif defined(LMN_SIMD) && defined(__aarch64__)
    byte_table t;
    if (n >= 256 && byte_table_of(&t, codes)) /* the table costs about as much as 64 scalar lookups */
        for (; i + 16 <= n; i += 16) {
            uint16x8_t lo = vcombine_u16(vmovn_u32(vld1q_u32((const uint32_t *)x + i)),
                                         vmovn_u32(vld1q_u32((const uint32_t *)x + i + 4)));
            uint16x8_t hi = vcombine_u16(vmovn_u32(vld1q_u32((const uint32_t *)x + i + 8)),
                                         vmovn_u32(vld1q_u32((const uint32_t *)x + i + 12)));
            uint8x16_t r = byte_lookup(&t, vcombine_u8(vmovn_u16(lo), vmovn_u16(hi)));
            uint16x8_t r_lo = vmovl_u8(vget_low_u8(r)), r_hi = vmovl_high_u8(r);
            vst1q_s32(y + i, byte_codes(&t, r_lo, 0));
            vst1q_s32(y + i + 4, byte_codes(&t, r_lo, 1));
            vst1q_s32(y + i + 8, byte_codes(&t, r_hi, 0));
            vst1q_s32(y + i + 12, byte_codes(&t, r_hi, 1));
        }
#endif
    for (; i < n; i++)
        y[i] = codes[(uint32_t)x[i] & 0xFFu];
}

/* The GC-TCN block's passes over its (C x T) codes, each fused with the pass before or after it:
 * requant_table_stats: a = codes[requant(a) & 0xFF] in place (requantization, then PReLU+Quant as a code
 * table), and the following norm's statistics of the new codes;
 * norm_apply_requant: y = requant(norm(x) * gamma[c] + beta[c]), the norm's second pass and the
 * requantization after it. Each is the same integers as the separate passes, in one pass. */
#define STATS_MAX_N ((int64_t)1 << 17) /* int32 lanes: n / 8 codes of |c| <= 256 squared stay below 2^31 */

#if defined(LMN_SIMD) && defined(__AVX2__)
/* requant_one on eight lanes: k the shift, mask 2^k - 1, bias half - 1, one eight 1s */
static inline __m256i requant8(__m256i a, __m128i k, __m256i mask, __m256i bias, __m256i one, __m256i lo, __m256i hi)
{
    __m256i q = _mm256_sra_epi32(a, k);
    __m256i r = _mm256_add_epi32(_mm256_add_epi32(_mm256_and_si256(a, mask), bias), _mm256_and_si256(q, one));
    return _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(q, _mm256_sra_epi32(r, k)), lo), hi);
}
#endif

static void requant_table_stats(int32_t *a, int64_t n, int shift, int32_t lo, int32_t hi, const int32_t codes[256],
                                lmn_stats *st)
{
#if defined(LMN_SIMD) && defined(__AVX2__)
    if (shift >= 1 && shift <= 30 && n < STATS_MAX_N) {
        int64_t i = 0, t, sum = 0, sq = 0;
        int32_t mn = INT32_MAX, mx = INT32_MIN, half = (int32_t)1 << (shift - 1);
        const __m128i k = _mm_cvtsi32_si128(shift);
        const __m256i mask = _mm256_set1_epi32((int32_t)(((uint32_t)1 << shift) - 1u)), one = _mm256_set1_epi32(1);
        const __m256i bias = _mm256_set1_epi32(half - 1), vlo = _mm256_set1_epi32(lo), vhi = _mm256_set1_epi32(hi);
        const __m256i byte = _mm256_set1_epi32(0xFF);
        __m256i vsum = _mm256_setzero_si256(), vsq = _mm256_setzero_si256();
        __m256i vmn = _mm256_set1_epi32(INT32_MAX), vmx = _mm256_set1_epi32(INT32_MIN);
        int32_t lanes[8];
        int j;
        for (; i + 8 <= n; i += 8) {
            __m256i v = requant8(_mm256_loadu_si256((const __m256i *)(a + i)), k, mask, bias, one, vlo, vhi);
            v = _mm256_i32gather_epi32((const int *)codes, _mm256_and_si256(v, byte), 4);
            _mm256_storeu_si256((__m256i *)(a + i), v);
            vsum = _mm256_add_epi32(vsum, v);
            vsq = _mm256_add_epi32(vsq, _mm256_mullo_epi32(v, v));
            vmn = _mm256_min_epi32(vmn, v);
            vmx = _mm256_max_epi32(vmx, v);
        }
        _mm256_storeu_si256((__m256i *)lanes, vsum);
        for (j = 0; j < 8; j++)
            sum += lanes[j];
        _mm256_storeu_si256((__m256i *)lanes, vsq);
        for (j = 0; j < 8; j++)
            sq += (uint32_t)lanes[j]; /* a lane's sum of squares is below 2^31: non-negative */
        _mm256_storeu_si256((__m256i *)lanes, vmn);
        for (j = 0; j < 8; j++)
            mn = lanes[j] < mn ? lanes[j] : mn;
        _mm256_storeu_si256((__m256i *)lanes, vmx);
        for (j = 0; j < 8; j++)
            mx = lanes[j] > mx ? lanes[j] : mx;
        st->sum = sum;
        st->sq = sq;
        st->lo = mn;
        st->hi = mx;
        for (t = i; t < n; t++) /* the rows after the vectors */
            a[t] = codes[(uint32_t)requant_one(a[t], shift, half, lo, hi) & 0xFFu];
        stats_add(st, a + i, n - i);
        return;
    }
#endif
    /* Without a gather, three passes: the requantization and the statistics vectorise, the lookups are
     * scalar either way (aarch64, limuse_k32: a third of the instructions of one fused scalar pass). */
    requant_run(a, n, shift, lo, hi);
    table_run(a, a, n, codes);
    row_stats(a, n, st);
}

/* x and y channel-major (channels x inner); y may not be x */
static void norm_apply_requant(const int32_t *x, int32_t *y, int64_t channels, int64_t inner, const lmn_norm *nm,
                               const int32_t *gamma, const int32_t *beta, int shift, int32_t lo, int32_t hi)
{
    int64_t c, t;
#if defined(LMN_SIMD) && defined(__aarch64__)
    byte_table q_low, q_high; /* the quotients' bytes: sixteen lookups per eight table steps */
    const int by_bytes = nm->use_table && channels * inner >= 128 &&
                         quotient_byte_tables(nm->q, nm->lo, nm->hi, &q_low, &q_high);
    const int32x4_t base = vdupq_n_s32(nm->lo);
#endif
#if defined(LMN_SIMD) && defined(__AVX2__)
    const int fused = nm->use_table && shift >= 1 && shift <= 30;
    const int32_t half = fused ? (int32_t)1 << (shift - 1) : 0;
    const __m128i k = _mm_cvtsi32_si128(shift);
    const __m256i mask = _mm256_set1_epi32((int32_t)(((uint32_t)1 << (fused ? shift : 1)) - 1u)), one = _mm256_set1_epi32(1);
    const __m256i bias = _mm256_set1_epi32(half - 1), vlo = _mm256_set1_epi32(lo), vhi = _mm256_set1_epi32(hi);
    const __m256i base = _mm256_set1_epi32(nm->lo);
#endif
    for (c = 0; c < channels; c++) {
        const int32_t *xs = x + c * inner;
        int32_t *ys = y + c * inner, g = gamma[c], b = beta[c];
#if defined(LMN_SIMD) && defined(__AVX2__)
        if (fused) {
            const __m256i vg = _mm256_set1_epi32(g), vb = _mm256_set1_epi32(b);
            for (t = 0; t + 8 <= inner; t += 8) {
                __m256i idx = _mm256_sub_epi32(_mm256_loadu_si256((const __m256i *)(xs + t)), base);
                __m256i v = _mm256_i32gather_epi32((const int *)nm->q, idx, 4);
                v = _mm256_add_epi32(_mm256_mullo_epi32(v, vg), vb);
                _mm256_storeu_si256((__m256i *)(ys + t), requant8(v, k, mask, bias, one, vlo, vhi));
            }
            for (; t < inner; t++)
                ys[t] = requant_one(nm->q[xs[t] - nm->lo] * g + b, shift, half, lo, hi);
            continue;
        }
#endif
        /* the normalised values (table lookups where the row has one), then the requantization in one
         * vectorised pass */
        t = 0;
#if defined(LMN_SIMD) && defined(__aarch64__)
        if (by_bytes) {
            const int32x4_t vg = vdupq_n_s32(g), vb = vdupq_n_s32(b);
            for (; t + 16 <= inner; t += 16) {
                int32x4_t q[4];
                int l;
                quotients16(&q_low, &q_high, xs + t, base, q);
                for (l = 0; l < 4; l++)
                    vst1q_s32(ys + t + 4 * l, vmlaq_s32(vb, q[l], vg));
            }
        }
#endif
        if (nm->use_table)
            for (; t < inner; t++)
                ys[t] = nm->q[xs[t] - nm->lo] * g + b;
        else
            for (; t < inner; t++)
                ys[t] = norm_value(nm, xs[t]) * g + b;
        requant_run(ys, inner, shift, lo, hi);
    }
}

/* PReLU then Quant of 8-bit codes: one code -> code table (built at load from the same float32 ops). */
static void prelu_quant(lmn_model *m, const lmn_op *op)
{
    const int32_t *x = INT_AT(m, op->f[1]);
    int32_t *y = INT_AT(m, op->f[0]);
    table_run(y, x, op->f[2], op->codes1);
}

#ifndef LMN_SIMD /* the portable dot products (LMN_SIMD: pair_dot below) */
/* acc[r] += sum_ci w[ci * stride] * xt[ci][r] over a channel-major tile (a zero weight skips its pass) */
static void tile_dot(int32_t *restrict acc, const int16_t *restrict xt, int64_t cin, const int8_t *restrict w,
                     int64_t stride)
{
    int64_t ci;
    int r;
    for (ci = 0; ci < cin; ci++) {
        int32_t wv = w[ci * stride];
        const int16_t *xs = xt + ci * TILE;
        if (wv == 0)
            continue;
        for (r = 0; r < TILE; r++)
            acc[r] += wv * xs[r];
    }
}

/* the same in int16 (16 lanes), where a static bound proves |acc| < 2^15 at every step */
static void tile_dot16(int16_t *restrict acc, const int16_t *restrict xt, int64_t cin, const int8_t *restrict w,
                       int64_t stride)
{
    int64_t ci;
    int r;
    for (ci = 0; ci < cin; ci++) {
        int16_t wv = w[ci * stride];
        const int16_t *xs = xt + ci * TILE;
        if (wv == 0)
            continue;
        for (r = 0; r < TILE; r++)
            acc[r] = (int16_t)(acc[r] + wv * xs[r]);
    }
}

#endif

#if defined(LMN_PAIRS) && !defined(LMN_KERNEL_COPY) /* the layout the loader builds (every path's copy) */
int lmn_build_pairs(lmn_pairs *p, const int8_t *w, int64_t cin, int64_t cout)
{
    int64_t co, q, k = 0, pairs = (cin + 1) / 2;
    p->w = (int32_t *)malloc((size_t)(pairs * cout + 1) * sizeof(int32_t));
    p->at = (int32_t *)malloc((size_t)(pairs * cout + 1) * sizeof(int32_t));
    p->start = (int32_t *)malloc((size_t)(cout + 1) * sizeof(int32_t));
    if (p->w == NULL || p->at == NULL || p->start == NULL)
        return 1;
    for (co = 0; co < cout; co++) {
        p->start[co] = (int32_t)k;
        for (q = 0; q < pairs; q++) {
            int16_t lanes[2];
            lanes[0] = w[2 * q * cout + co];
            lanes[1] = 2 * q + 1 < cin ? w[(2 * q + 1) * cout + co] : 0;
            if (lanes[0] == 0 && lanes[1] == 0) /* frequent at 3 bits: the pair costs nothing */
                continue;
            memcpy(&p->w[k], lanes, 4); /* lane 0 in the low half (little-endian, as pmaddwd reads it) */
            p->at[k] = (int32_t)q;
            k++;
        }
    }
    p->start[cout] = (int32_t)k;
    return 0;
}
#endif

#ifdef LMN_SIMD

/* Channel-pair layout: code (c, t) at xp[((c / 2) * len + t) * 2 + c % 2], int16 (codes of <= 16 bits). */
/* x[r * channels + c] (frame-major rows) for r < rows into that layout; rows up to len, and the zero channel
 * that pads an odd count, are zeros */
static inline void pairs_from_rows(int16_t *restrict xp, const int32_t *restrict x, int64_t rows, int64_t len,
                                   int64_t channels)
{
    int64_t c, r;
    for (c = 0; c < channels; c += 2) {
        int16_t *xc = xp + c * len;
        const int32_t *xr = x + c;
        r = 0;
#ifdef __AVX2__
        if (channels % 4 == 0 && c % 4 == 0) { /* channels c..c+3 of four rows: two pair planes at once */
            const __m256i order = _mm256_setr_epi32(0, 4, 2, 6, 1, 5, 3, 7);
            int16_t *xn = xc + 2 * len;
            for (; r + 4 <= rows; r += 4) {
                const int32_t *x0 = xr + r * channels;
                __m256i a = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)x0)),
                                                    _mm_loadu_si128((const __m128i *)(x0 + channels)), 1);
                __m256i b = _mm256_inserti128_si256(
                    _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(x0 + 2 * channels))),
                    _mm_loadu_si128((const __m128i *)(x0 + 3 * channels)), 1);
                /* int16 pairs (as int32): rows r, r+2 in the low half, r+1, r+3 in the high half; codes fit
                 * int16, so the saturating pack is the cast */
                __m256i p = _mm256_permutevar8x32_epi32(_mm256_packs_epi32(a, b), order);
                _mm_storeu_si128((__m128i *)(xc + 2 * r), _mm256_castsi256_si128(p));
                _mm_storeu_si128((__m128i *)(xn + 2 * r), _mm256_extracti128_si256(p, 1));
            }
            for (; r < rows; r++) {
                xc[2 * r] = (int16_t)xr[r * channels];
                xc[2 * r + 1] = (int16_t)xr[r * channels + 1];
                xn[2 * r] = (int16_t)xr[r * channels + 2];
                xn[2 * r + 1] = (int16_t)xr[r * channels + 3];
            }
            for (r = rows; r < len; r++)
                xc[2 * r] = xc[2 * r + 1] = xn[2 * r] = xn[2 * r + 1] = 0;
            c += 2;
            continue;
        }
#endif
        if (c + 1 < channels)
            for (r = 0; r < rows; r++) {
                xc[2 * r] = (int16_t)xr[r * channels];
                xc[2 * r + 1] = (int16_t)xr[r * channels + 1];
            }
        else
            for (r = 0; r < rows; r++) {
                xc[2 * r] = (int16_t)xr[r * channels];
                xc[2 * r + 1] = 0;
            }
        for (r = rows; r < len; r++)
            xc[2 * r] = xc[2 * r + 1] = 0;
    }
}

/* x[c * len + r] (channel-major rows of len) into that layout, an odd count padded with a zero channel */
static inline void pairs_from_channels(int16_t *restrict xp, const int32_t *restrict x, int64_t len, int64_t channels)
{
    int64_t c, r;
    for (c = 0; c < channels; c += 2) {
        int16_t *xc = xp + c * len;
        const int32_t *x0 = x + c * len, *x1 = x0 + len;
        if (c + 1 < channels)
            for (r = 0; r < len; r++) {
                xc[2 * r] = (int16_t)x0[r];
                xc[2 * r + 1] = (int16_t)x1[r];
            }
        else
            for (r = 0; r < len; r++) {
                xc[2 * r] = (int16_t)x0[r];
                xc[2 * r + 1] = 0;
            }
    }
}

#ifdef __aarch64__
/* a[0..4) (rows 0..16 of a run) += the 16 rows' pairs xs times the pair's weights wv (lane 0: the even
 * channel's, lane 1: the odd one's): the pairs split into their two channels on load, each lane-multiplied */
static inline void pairs16_neon(int32x4_t *a, const int16_t *xs, int16x4_t wv)
{
    int16x8x2_t lo = vld2q_s16(xs), hi = vld2q_s16(xs + 16);
    a[0] = vmlal_lane_s16(vmlal_lane_s16(a[0], vget_low_s16(lo.val[0]), wv, 0), vget_low_s16(lo.val[1]), wv, 1);
    a[1] = vmlal_high_lane_s16(vmlal_high_lane_s16(a[1], lo.val[0], wv, 0), lo.val[1], wv, 1);
    a[2] = vmlal_lane_s16(vmlal_lane_s16(a[2], vget_low_s16(hi.val[0]), wv, 0), vget_low_s16(hi.val[1]), wv, 1);
    a[3] = vmlal_high_lane_s16(vmlal_high_lane_s16(a[3], hi.val[0], wv, 0), hi.val[1], wv, 1);
}
#endif

/* acc[t] += sum over co's pairs of w0 xp[p][t][0] + w1 xp[p][t][1], for t < len: a run of rows at a time
 * whose int32 accumulators stay in registers across all the pairs (64 rows: 8 AVX2 registers). */
static void pair_dot(int32_t *restrict acc, const int16_t *restrict xp, int64_t len, const lmn_pairs *p, int64_t co)
{
    const int32_t *wp = p->w + p->start[co], *at = p->at + p->start[co];
    int64_t k = p->start[co + 1] - p->start[co], t = 0, i;
#ifdef __AVX2__
    int64_t tail = len - len % 8; /* rows after the vectors */
#else
    int64_t tail = len - len % 16;
#endif
#ifdef __AVX2__
    for (; t + 64 <= len; t += 64) {
        __m256i a0 = _mm256_loadu_si256((const __m256i *)(acc + t)), a1 = _mm256_loadu_si256((const __m256i *)(acc + t + 8));
        __m256i a2 = _mm256_loadu_si256((const __m256i *)(acc + t + 16)), a3 = _mm256_loadu_si256((const __m256i *)(acc + t + 24));
        __m256i a4 = _mm256_loadu_si256((const __m256i *)(acc + t + 32)), a5 = _mm256_loadu_si256((const __m256i *)(acc + t + 40));
        __m256i a6 = _mm256_loadu_si256((const __m256i *)(acc + t + 48)), a7 = _mm256_loadu_si256((const __m256i *)(acc + t + 56));
        for (i = 0; i < k; i++) {
            __m256i wv = _mm256_set1_epi32(wp[i]);
            const __m256i *xs = (const __m256i *)(xp + (at[i] * len + t) * 2);
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_loadu_si256(xs), wv));
            a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_loadu_si256(xs + 1), wv));
            a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(_mm256_loadu_si256(xs + 2), wv));
            a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(_mm256_loadu_si256(xs + 3), wv));
            a4 = _mm256_add_epi32(a4, _mm256_madd_epi16(_mm256_loadu_si256(xs + 4), wv));
            a5 = _mm256_add_epi32(a5, _mm256_madd_epi16(_mm256_loadu_si256(xs + 5), wv));
            a6 = _mm256_add_epi32(a6, _mm256_madd_epi16(_mm256_loadu_si256(xs + 6), wv));
            a7 = _mm256_add_epi32(a7, _mm256_madd_epi16(_mm256_loadu_si256(xs + 7), wv));
        }
        _mm256_storeu_si256((__m256i *)(acc + t), a0);
        _mm256_storeu_si256((__m256i *)(acc + t + 8), a1);
        _mm256_storeu_si256((__m256i *)(acc + t + 16), a2);
        _mm256_storeu_si256((__m256i *)(acc + t + 24), a3);
        _mm256_storeu_si256((__m256i *)(acc + t + 32), a4);
        _mm256_storeu_si256((__m256i *)(acc + t + 40), a5);
        _mm256_storeu_si256((__m256i *)(acc + t + 48), a6);
        _mm256_storeu_si256((__m256i *)(acc + t + 56), a7);
    }
    for (; t + 32 <= len; t += 32) {
        __m256i a0 = _mm256_loadu_si256((const __m256i *)(acc + t)), a1 = _mm256_loadu_si256((const __m256i *)(acc + t + 8));
        __m256i a2 = _mm256_loadu_si256((const __m256i *)(acc + t + 16)), a3 = _mm256_loadu_si256((const __m256i *)(acc + t + 24));
        for (i = 0; i < k; i++) {
            __m256i wv = _mm256_set1_epi32(wp[i]);
            const __m256i *xs = (const __m256i *)(xp + (at[i] * len + t) * 2);
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_loadu_si256(xs), wv));
            a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_loadu_si256(xs + 1), wv));
            a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(_mm256_loadu_si256(xs + 2), wv));
            a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(_mm256_loadu_si256(xs + 3), wv));
        }
        _mm256_storeu_si256((__m256i *)(acc + t), a0);
        _mm256_storeu_si256((__m256i *)(acc + t + 8), a1);
        _mm256_storeu_si256((__m256i *)(acc + t + 16), a2);
        _mm256_storeu_si256((__m256i *)(acc + t + 24), a3);
    }
    for (; t + 8 <= len; t += 8) {
        __m256i a0 = _mm256_loadu_si256((const __m256i *)(acc + t));
        for (i = 0; i < k; i++)
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(xp + (at[i] * len + t) * 2)),
                                                        _mm256_set1_epi32(wp[i])));
        _mm256_storeu_si256((__m256i *)(acc + t), a0);
    }
#elif defined(__SSE2__)
    for (; t + 16 <= len; t += 16) {
        __m128i a0 = _mm_loadu_si128((const __m128i *)(acc + t)), a1 = _mm_loadu_si128((const __m128i *)(acc + t + 4));
        __m128i a2 = _mm_loadu_si128((const __m128i *)(acc + t + 8)), a3 = _mm_loadu_si128((const __m128i *)(acc + t + 12));
        for (i = 0; i < k; i++) {
            __m128i wv = _mm_set1_epi32(wp[i]);
            const __m128i *xs = (const __m128i *)(xp + (at[i] * len + t) * 2);
            a0 = _mm_add_epi32(a0, _mm_madd_epi16(_mm_loadu_si128(xs), wv));
            a1 = _mm_add_epi32(a1, _mm_madd_epi16(_mm_loadu_si128(xs + 1), wv));
            a2 = _mm_add_epi32(a2, _mm_madd_epi16(_mm_loadu_si128(xs + 2), wv));
            a3 = _mm_add_epi32(a3, _mm_madd_epi16(_mm_loadu_si128(xs + 3), wv));
        }
        _mm_storeu_si128((__m128i *)(acc + t), a0);
        _mm_storeu_si128((__m128i *)(acc + t + 4), a1);
        _mm_storeu_si128((__m128i *)(acc + t + 8), a2);
        _mm_storeu_si128((__m128i *)(acc + t + 12), a3);
    }
#elif defined(__aarch64__)
    for (; t + 32 <= len; t += 32) { /* 8 accumulators: more spill to the stack */
        int32x4_t a[8];
        int q;
        for (q = 0; q < 8; q++)
            a[q] = vld1q_s32(acc + t + 4 * q);
        for (i = 0; i < k; i++) {
            const int16x4_t wv = vreinterpret_s16_s32(vdup_n_s32(wp[i]));
            const int16_t *xs = xp + (at[i] * len + t) * 2;
            pairs16_neon(a, xs, wv);
            pairs16_neon(a + 4, xs + 32, wv);
        }
        for (q = 0; q < 8; q++)
            vst1q_s32(acc + t + 4 * q, a[q]);
    }
    for (; t + 16 <= len; t += 16) {
        int32x4_t a[4];
        int q;
        for (q = 0; q < 4; q++)
            a[q] = vld1q_s32(acc + t + 4 * q);
        for (i = 0; i < k; i++)
            pairs16_neon(a, xp + (at[i] * len + t) * 2, vreinterpret_s16_s32(vdup_n_s32(wp[i])));
        for (q = 0; q < 4; q++)
            vst1q_s32(acc + t + 4 * q, a[q]);
    }
#endif
    for (t = tail; t < len; t++) { /* the remainder (len not a multiple of the vector): the same sums, row by row */
        int32_t sum = 0;
        for (i = 0; i < k; i++) {
            int16_t lanes[2];
            const int16_t *xs = xp + 2 * (at[i] * len + t);
            memcpy(lanes, &wp[i], 4);
            sum += lanes[0] * xs[0] + lanes[1] * xs[1];
        }
        acc[t] += sum;
    }
}
#endif

/* Pass A's epilogue over one tile (shift in 1..30): the requantized code's byte, and its PReLU as the golden
 * engine computes it (op->table[byte]): (code * scale) * (code < 0 ? slope : 1) in float32, since the code
 * is negative iff its value is (scale > 0) and v * 1 is v. */
static inline void requant_byte_prelu(const int32_t *restrict acc, int shift, int32_t lo, int32_t hi, float scale,
                                      float slope, unsigned char *restrict bytes, float *restrict pa,
                                      float *restrict sums, int64_t first_frame, int64_t frames)
{
    int32_t half = (int32_t)1 << (shift - 1);
    int r = 0;
#if defined(LMN_SIMD) && defined(__AVX2__)
    const __m128i k = _mm_cvtsi32_si128(shift);
    const __m256i mask = _mm256_set1_epi32((int32_t)(((uint32_t)1 << shift) - 1u)), one = _mm256_set1_epi32(1);
    const __m256i bias = _mm256_set1_epi32(half - 1), vlo = _mm256_set1_epi32(lo), vhi = _mm256_set1_epi32(hi);
    const __m256i low_bytes = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                               0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m256 vscale = _mm256_set1_ps(scale), vslope = _mm256_set1_ps(slope), ones = _mm256_set1_ps(1.0f);
    for (; r + 8 <= TILE; r += 8) {
        __m256i v = requant8(_mm256_loadu_si256((const __m256i *)(acc + r)), k, mask, bias, one, vlo, vhi);
        __m256i b = _mm256_shuffle_epi8(v, low_bytes); /* each 128-bit half: its four low bytes first */
        __m256 s = _mm256_blendv_ps(ones, vslope, _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_setzero_si256(), v)));
        _mm_storel_epi64((__m128i *)(bytes + r),
                         _mm_unpacklo_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1)));
        __m256 p = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(v), vscale), s);
        if (sums != NULL) { /* eight rows of one group: eight consecutive frames */
            float *d = sums + (first_frame + r) % frames;
            _mm256_storeu_ps(d, _mm256_add_ps(_mm256_loadu_ps(d), p));
        } else {
            _mm256_storeu_ps(pa + r, p);
        }
    }
#endif
    for (; r < TILE; r++) {
        int32_t v = requant_one(acc[r], shift, half, lo, hi);
        float s = v < 0 ? slope : 1.0f, p = ((float)v * scale) * s;
        bytes[r] = (unsigned char)((uint32_t)v & 0xFFu);
        if (sums != NULL)
            sums[(first_frame + r) % frames] += p;
        else
            pa[r] = p;
    }
}

/* Where tac_one keeps its per-block data in a thread's work area (byte offsets, 64-byte aligned): L1's codes
 * for every tile as bytes, the float32 sums and means over the groups, the per-frame part of L3, the mean's
 * codes and L2's codes (frames x Ch each), and (LMN_SIMD) the per-frame codes in channel pairs and one
 * channel's sums over the frames. */
#ifndef LMN_KERNEL_COPY
static size_t align64(size_t n) { return (n + 63) / 64 * 64; }

lmn_tac_work lmn_tac_layout(int64_t rows, int64_t frames, int64_t ch, int64_t cout)
{
    lmn_tac_work w;
    int64_t tiles = (rows + TILE - 1) / TILE;
    w.msum = align64((size_t)(tiles * ch * TILE));
    w.part = w.msum + align64((size_t)(2 * frames * ch) * sizeof(float));
    w.mean_codes = w.part + align64((size_t)(frames * cout) * 4);
    w.b_codes = w.mean_codes + align64((size_t)(frames * ch) * 4);
    w.pairs = w.b_codes + align64((size_t)(frames * ch) * 4);
    w.sums = w.pairs + (size_t)((ch + 1) * frames) * 2;
    w.bytes = w.sums + (size_t)frames * 4;
    return w;
}
#endif

/* The TAC block (export/native/fusion.py, _match_tac) of one outer index o at a time, so that its (K x R, Ch)
 * hidden codes stay in the cache instead of four full-size tensors in the arena:
 *   pass A: a = L1(x) per tile of rows (channel-major), kept as bytes; the float32 sum over the K groups
 *           of PReLU(a), in group order (numpy's strided reduction), into msum (R, Ch);
 *   mean:   mq = Quant(msum / K); b = L2(mq); part[r] = bias3 + the second half of L3 on Quant(PReLU(b[r]))
 *           (the same for the K rows of frame r; kept channel-major, part[c][r], so that a tile's rows
 *           read runs of consecutive frames);
 *   pass B: out = requant(part[r] + the first half of L3 on Quant(PReLU(a))), tile by tile.
 * All sums are of integers below 2^31 (checked at load), so their order does not matter. */
static inline void tac_one(lmn_model *m, const lmn_op *op, int64_t o, const int64_t frames)
{
    const int64_t *f = op->f;
    const int32_t *x = INT_AT(m, f[1]);
    int32_t *y = INT_AT(m, f[0]);
    int64_t groups = f[3], cin = f[5], ch = f[6], cout = f[7];
    int64_t rows = groups * frames, tiles = (rows + TILE - 1) / TILE;
    int shift1 = (int)f[9], shift2 = (int)f[18], has_out3 = (int)f[27], shift3 = has_out3 ? (int)f[28] : 0;
    int32_t lo1 = (int32_t)f[10], hi1 = (int32_t)f[11], lo2 = (int32_t)f[19], hi2 = (int32_t)f[20];
    int32_t lo3 = has_out3 ? (int32_t)f[29] : 0, hi3 = has_out3 ? (int32_t)f[30] : 0;
    float groups_f = (float)groups, scale1 = exp2_int(f[12]), slope1 = op->floats0[0];
    lmn_tac_work layout = lmn_tac_layout(rows, frames, ch, cout);
    int thread = 0;
    unsigned char *work, *a;
    float *msum, *mean;
    int32_t *part, *mq_o, *b_o, *y_o = y + o * rows * cout;
    const int32_t *x_o = x + o * rows * cin;
    int16_t xt[TILE_CHANNELS * TILE];
    int32_t acc[4 * TILE];
#ifndef LMN_SIMD
    int32_t wide[TILE_CHANNELS];
#endif
#ifndef LMN_SIMD
    int16_t acc16[TILE];
#endif
    float pa[TILE];
    int64_t t, r, c, co, i, rr;
#ifdef _OPENMP
    thread = omp_get_thread_num();
#endif
    work = m->work + (size_t)thread * m->work_per_thread;
    a = work;
    msum = (float *)(work + layout.msum);
    mean = msum + frames * ch;
    part = (int32_t *)(work + layout.part);
    mq_o = (int32_t *)(work + layout.mean_codes);
    b_o = (int32_t *)(work + layout.b_codes);
    for (i = 0; i < frames * ch; i++)
        msum[i] = 0.0f;
    for (t = 0; t < tiles; t++) { /* pass A */
        int64_t r0 = t * TILE, nr = rows - r0 < TILE ? rows - r0 : TILE;
        unsigned char *at = a + t * ch * TILE;
#if defined(LMN_SIMD) && defined(__AVX2__)
        const int sum_in_epilogue = nr == TILE && frames % 8 == 0; /* each 8 rows: 8 frames of one group */
#else
        const int sum_in_epilogue = 0;
#endif
#ifdef LMN_SIMD
        pairs_from_rows(xt, x_o + r0 * cin, nr, TILE, cin);
#else
        for (c = 0; c < cin; c++)
            for (r = 0; r < TILE; r++)
                xt[c * TILE + r] = r < nr ? (int16_t)x_o[(r0 + r) * cin + c] : 0;
#endif
        for (co = 0; co < ch; co++) {
            int32_t b0 = op->ints0 ? op->ints0[co] : 0;
            unsigned char *ac = at + co * TILE;
            float *ms = msum + co * frames; /* channel-major sums: runs of consecutive frames */
#ifdef LMN_SIMD
            for (r = 0; r < TILE; r++)
                acc[r] = b0;
            pair_dot(acc, xt, TILE, &op->pairs[0], co);
#else
            if (op->narrow & 1) { /* L1's bound below 2^15 (checked at load) */
                for (r = 0; r < TILE; r++)
                    acc16[r] = (int16_t)b0;
                tile_dot16(acc16, xt, cin, op->weights + co, ch);
                for (r = 0; r < TILE; r++)
                    acc[r] = acc16[r];
            } else {
                for (r = 0; r < TILE; r++)
                    acc[r] = b0;
                tile_dot(acc, xt, cin, op->weights + co, ch);
            }
#endif
            if (shift1 >= 1 && shift1 <= 30 && sum_in_epilogue) {
                requant_byte_prelu(acc, shift1, lo1, hi1, scale1, slope1, ac, pa, ms, r0, frames);
                continue;
            }
            if (shift1 >= 1 && shift1 <= 30) {
                requant_byte_prelu(acc, shift1, lo1, hi1, scale1, slope1, ac, pa, NULL, 0, 1);
            } else {
                requant_run(acc, TILE, shift1, lo1, hi1);
                for (r = 0; r < TILE; r++) {
                    float s = acc[r] < 0 ? slope1 : 1.0f;
                    ac[r] = (unsigned char)((uint32_t)acc[r] & 0xFFu);
                    pa[r] = ((float)acc[r] * scale1) * s;
                }
            }
            for (r = 0; r < nr;) { /* rows r0 + r.. of one group: frames fr.., in group order */
                int64_t fr = (r0 + r) % frames, len = nr - r < frames - fr ? nr - r : frames - fr, j;
                for (j = 0; j < len; j++)
                    ms[fr + j] += pa[r + j];
                r += len;
            }
        }
    }
    for (rr = 0; rr < frames; rr++) /* the mean, as reduce_mean: sum / n in float32; frame-major again */
        for (c = 0; c < ch; c++)
            mean[rr * ch + c] = msum[c * frames + rr] / groups_f;
    lmn_quant_values(mean, (int)(frames * ch), f[14], f[15], f[16], mq_o);
#ifdef LMN_SIMD
    { /* b = L2(mq) and the second half of L3 as the frames' sums per output channel */
        int16_t *fp = (int16_t *)(work + layout.pairs);
        int32_t *fa = (int32_t *)(work + layout.sums);
        pairs_from_rows(fp, mq_o, frames, frames, ch);
        for (co = 0; co < ch; co++) {
            int32_t b0 = op->ints2 ? op->ints2[co] : 0;
            for (rr = 0; rr < frames; rr++)
                fa[rr] = b0;
            pair_dot(fa, fp, frames, &op->pairs[2], co);
            requant_run(fa, frames, shift2, lo2, hi2);
            for (rr = 0; rr < frames; rr++)
                b_o[rr * ch + co] = fa[rr];
        }
        for (c = 0; c < ch + (ch & 1); c++)
            for (rr = 0; rr < frames; rr++)
                fp[((c >> 1) * frames + rr) * 2 + (c & 1)] =
                    c < ch ? (int16_t)op->codes2[(uint32_t)b_o[rr * ch + c] & 0xFFu] : 0;
        for (co = 0; co < cout; co++) {
            int32_t b0 = op->ints3 ? op->ints3[co] : 0;
            for (rr = 0; rr < frames; rr++)
                fa[rr] = b0;
            pair_dot(fa, fp, frames, &op->pairs[3], co);
            memcpy(part + co * frames, fa, (size_t)frames * sizeof *fa);
        }
    }
#else
    for (rr = 0; rr < frames; rr++) {
        const int32_t *xr = mq_o + rr * ch;
        for (co = 0; co < ch; co++)
            wide[co] = op->ints2 ? op->ints2[co] : 0;
        for (c = 0; c < ch; c++) {
            int32_t xv = xr[c];
            const int8_t *wr = op->weights2 + c * ch;
            if (xv == 0)
                continue;
            for (co = 0; co < ch; co++)
                wide[co] += xv * wr[co];
        }
        requant_run(wide, ch, shift2, lo2, hi2);
        for (co = 0; co < ch; co++)
            b_o[rr * ch + co] = wide[co];
        for (co = 0; co < cout; co++)
            wide[co] = op->ints3 ? op->ints3[co] : 0;
        for (c = 0; c < ch; c++) {
            int32_t q = op->codes2[(uint32_t)b_o[rr * ch + c] & 0xFFu];
            const int8_t *wr = op->weights3 + (ch + c) * cout;
            if (q == 0)
                continue;
            for (co = 0; co < cout; co++)
                wide[co] += q * wr[co];
        }
        for (co = 0; co < cout; co++)
            part[co * frames + rr] = wide[co];
    }
#endif
#if defined(LMN_SIMD) && defined(__aarch64__)
    byte_table codes1;
    const int codes1_bytes = byte_table_of(&codes1, op->codes1);
#endif
    for (t = 0; t < tiles; t++) { /* pass B */
        int64_t r0 = t * TILE, nr = rows - r0 < TILE ? rows - r0 : TILE;
        const unsigned char *at = a + t * ch * TILE;
        int64_t frame[TILE];
#ifdef LMN_SIMD
        for (c = 0; c < ch; c += 2) {
            int16_t *xp = xt + c * TILE;
            const unsigned char *a0 = at + c * TILE, *a1 = a0 + TILE;
#ifdef __AVX2__
            if (c + 1 < ch) { /* eight rows at a time: two gathers, the pair as one int32 (low half first) */
                const __m256i low = _mm256_set1_epi32(0xFFFF);
                for (r = 0; r < TILE; r += 8) {
                    __m256i i0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(a0 + r)));
                    __m256i i1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(a1 + r)));
                    __m256i v0 = _mm256_i32gather_epi32((const int *)op->codes1, i0, 4);
                    __m256i v1 = _mm256_i32gather_epi32((const int *)op->codes1, i1, 4);
                    _mm256_storeu_si256((__m256i *)(xp + 2 * r),
                                        _mm256_or_si256(_mm256_and_si256(v0, low), _mm256_slli_epi32(v1, 16)));
                }
                continue;
            }
#elif defined(__aarch64__)
            if (c + 1 < ch && codes1_bytes) { /* sixteen rows at a time: two table lookups, stored as pairs */
                for (r = 0; r < TILE; r += 16) {
                    uint8x16_t v0 = byte_lookup(&codes1, vld1q_u8(a0 + r)), v1 = byte_lookup(&codes1, vld1q_u8(a1 + r));
                    int16x8x2_t lo = {{byte_codes16(&codes1, vget_low_u8(v0)), byte_codes16(&codes1, vget_low_u8(v1))}};
                    int16x8x2_t hi = {{byte_codes16(&codes1, vget_high_u8(v0)), byte_codes16(&codes1, vget_high_u8(v1))}};
                    vst2q_s16(xp + 2 * r, lo);
                    vst2q_s16(xp + 2 * r + 16, hi);
                }
                continue;
            }
#endif
            if (c + 1 < ch)
                for (r = 0; r < TILE; r++) {
                    xp[2 * r] = (int16_t)op->codes1[a0[r]];
                    xp[2 * r + 1] = (int16_t)op->codes1[a1[r]];
                }
            else
                for (r = 0; r < TILE; r++) {
                    xp[2 * r] = (int16_t)op->codes1[a0[r]];
                    xp[2 * r + 1] = 0;
                }
        }
#else
        for (c = 0; c < ch * TILE; c++)
            xt[c] = (int16_t)op->codes1[at[c]];
#endif
        for (r = 0; r < TILE; r++)
            frame[r] = (r0 + r) % frames;
        for (co = 0; co < cout; co += 4) { /* four output channels, then their rows out together */
            int64_t nc = cout - co < 4 ? cout - co : 4, q;
            for (q = 0; q < nc; q++) {
                int32_t *aq = acc + q * TILE;
                const int32_t *pc = part + (co + q) * frames; /* channel-major: runs of consecutive frames */
#ifdef LMN_SIMD
                for (r = 0; r < TILE;) {
                    int64_t len = TILE - r < frames - frame[r] ? TILE - r : frames - frame[r];
                    memcpy(aq + r, pc + frame[r], (size_t)len * sizeof *aq);
                    r += len;
                }
                pair_dot(aq, xt, TILE, &op->pairs[1], co + q);
#else
                if (op->narrow & 2) { /* the first half of L3 alone below 2^15; then the per-frame part */
                    for (r = 0; r < TILE; r++)
                        acc16[r] = 0;
                    tile_dot16(acc16, xt, ch, op->weights3 + co + q, cout);
                    for (r = 0; r < TILE; r++)
                        aq[r] = pc[frame[r]] + acc16[r];
                } else {
                    for (r = 0; r < TILE; r++)
                        aq[r] = pc[frame[r]];
                    tile_dot(aq, xt, ch, op->weights3 + co + q, cout);
                }
#endif
                if (has_out3)
                    requant_run(aq, TILE, shift3, lo3, hi3);
            }
            rows_from_channels(y_o + r0 * cout + co, cout, acc, TILE, nr, nc);
        }
    }
}

typedef void block_kernel(lmn_model *m, const lmn_op *op, int64_t o, const int64_t frames);

/* Runs one(o) for every block o, threads over the blocks. The codec's blocks have CODEC_BLOCK_FRAMES frames:
 * that case calls one() with a constant frame count, so that (one() inlined) the loops over a block's frames
 * have fixed trip counts. */
static inline void for_each_block(lmn_model *m, const lmn_op *op, int64_t outer, int64_t frames, block_kernel *one)
{
    int64_t o;
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (o = 0; o < outer; o++) {
        if (frames == CODEC_BLOCK_FRAMES)
            one(m, op, o, CODEC_BLOCK_FRAMES);
        else
            one(m, op, o, frames);
    }
}

static void tac(lmn_model *m, const lmn_op *op)
{
    for_each_block(m, op, op->f[2], op->f[4], tac_one);
}

#ifndef LMN_SIMD
/* acc[t] += sum_ci w[ci * wstride] * x[ci * stride + t] for t < len: rows of one block, channel-major */
static void rows_dot(int32_t *restrict acc, const int32_t *restrict x, int64_t stride, int64_t cin, int64_t len,
                     const int8_t *restrict w, int64_t wstride)
{
    int64_t ci, t;
    int k;
    for (ci = 0; ci < cin; ci++) {
        int32_t wv = w[ci * wstride];
        const int32_t *xs = x + ci * stride;
        if (wv == 0)
            continue;
        if (len % 8 == 0) { /* runs of 8: one vector each, without the loop's remainder handling */
            for (t = 0; t < len; t += 8)
                for (k = 0; k < 8; k++)
                    acc[t + k] += wv * xs[t + k];
        } else {
            for (t = 0; t < len; t++)
                acc[t] += wv * xs[t];
        }
    }
}

/* the same in int16 (16 lanes) where a static bound proves |acc| < 2^15 at every step */
static void rows_dot16(int16_t *restrict acc, const int16_t *restrict x, int64_t stride, int64_t cin, int64_t len,
                       const int8_t *restrict w, int64_t wstride)
{
    int64_t ci, t;
    int k;
    for (ci = 0; ci < cin; ci++) {
        int16_t wv = w[ci * wstride];
        const int16_t *xs = x + ci * stride;
        if (wv == 0)
            continue;
        if (len % 16 == 0) {
            for (t = 0; t < len; t += 16)
                for (k = 0; k < 16; k++)
                    acc[t + k] = (int16_t)(acc[t + k] + wv * xs[t + k]);
        } else {
            for (t = 0; t < len; t++)
                acc[t] = (int16_t)(acc[t] + wv * xs[t]);
        }
    }
}

#endif

/* The GC-TCN convolution block (export/native/fusion.py, _match_gcblock), one block of T frames at a time in the
 * thread's scratch, channel-major (C x T: a weight is a broadcast over the block's frames):
 *   h = PReLU+Quant(requant(x W_e + b_e)); g = requant(norm(h)); h = requant(b_c + depthwise conv of g over
 *   the frames, zero-padded); h = PReLU+Quant(h); g = requant(norm(h)); out = [requant](g W_p + b_p).
 * The norms' statistics are sums (any order); each element is normalised with its own channel's gamma. */
#define DEPTHWISE_PADDED_MAX 256 /* int32 elements on the stack: a codec block and its dilated padding */

/* One block o of the GC-TCN block below; `frames` is a constant where the caller passes one, so that every
 * loop over the block's frames has a fixed trip count. */
static inline void gcblock_one(lmn_model *m, const lmn_op *op, int64_t o, const int64_t frames)
{
    const int64_t *f = op->f;
    const int32_t *x = INT_AT(m, f[1]);
    int32_t *y = INT_AT(m, f[0]);
    int64_t cin = f[4], ch = f[5], cout = f[6], taps = f[21], dil = f[22];
    int64_t padl = f[23], n = frames * ch;
    int has_out = (int)f[40];
    int thread = 0;
    int32_t *h, *g, *xt, *acc, *yo = y + o * frames * cout;
    int16_t *x16, *a16;
    const int32_t *xo = x + o * frames * cin;
    int64_t t, c, co, j;
    lmn_stats st;
    lmn_norm nm;
#ifndef LMN_SIMD
    int64_t i, ci;
#endif
#ifdef _OPENMP
    thread = omp_get_thread_num();
#endif
    h = (int32_t *)(m->work + (size_t)thread * m->work_per_thread);
    g = h + n;
    xt = g + n;
    acc = xt + cin * frames;
    x16 = (int16_t *)(acc + 4 * frames); /* int16 copies for the narrow layers: the input or g, and a row */
    a16 = x16 + (cin > ch ? cin : ch) * frames;
#ifdef LMN_SIMD
    /* the block's input in channel pairs (x16 and a16 together hold (max(C_in, Ch) + 1) x T int16); its
     * codes are of <= 8 bits, as the loader's int32 bound of the layer assumes */
    pairs_from_rows(x16, xo, frames, frames, cin);
    for (co = 0; co < ch; co++) { /* expand */
        int32_t *hc = h + co * frames, b0 = op->ints0 ? op->ints0[co] : 0;
        for (t = 0; t < frames; t++)
            hc[t] = b0;
        pair_dot(hc, x16, frames, &op->pairs[0], co);
    }
    (void)xt;
    (void)a16;
#else
    for (ci = 0; ci < cin; ci++) /* the block's input, channel-major */
        for (t = 0; t < frames; t++)
            xt[ci * frames + t] = xo[t * cin + ci];
    if (op->narrow & 1) /* expand's bound below 2^15 (checked at load): int16 lanes */
        for (i = 0; i < cin * frames; i++)
            x16[i] = (int16_t)xt[i];
    for (co = 0; co < ch; co++) { /* expand */
        int32_t *hc = h + co * frames, b0 = op->ints0 ? op->ints0[co] : 0;
        if (op->narrow & 1) {
            for (t = 0; t < frames; t++)
                a16[t] = (int16_t)b0;
            rows_dot16(a16, x16, frames, cin, frames, op->weights + co, ch);
            for (t = 0; t < frames; t++)
                hc[t] = a16[t];
        } else {
            for (t = 0; t < frames; t++)
                hc[t] = b0;
            rows_dot(hc, xt, frames, cin, frames, op->weights + co, ch);
        }
    }
#endif
    requant_table_stats(h, n, (int)f[8], (int32_t)f[9], (int32_t)f[10], op->codes1, &st);
    norm_prepare(h, n, &st, (int)f[16], (int)f[17], &nm);
    norm_apply_requant(h, g, ch, frames, &nm, op->norm[0], op->norm[1], (int)f[18], (int32_t)f[19], (int32_t)f[20]);
    for (c = 0; c < ch; c++) { /* depthwise conv over the frames, zero-padded */
        int32_t *hc = h + c * frames, b0 = op->ints2 ? op->ints2[c] : 0;
        const int32_t *gc = g + c * frames;
        for (t = 0; t < frames; t++)
            hc[t] = b0;
        if (frames + dil * (taps - 1) <= DEPTHWISE_PADDED_MAX) {
            /* the codec's short blocks: through a zero-padded copy every tap is one full-length loop,
             * which vectorises, where the clipped bounds below leave short scalar runs */
            int32_t padded[DEPTHWISE_PADDED_MAX];
            int64_t span = frames + dil * (taps - 1);
            for (t = 0; t < padl; t++)
                padded[t] = 0;
            memcpy(padded + padl, gc, (size_t)frames * sizeof *gc);
            for (t = padl + frames; t < span; t++)
                padded[t] = 0;
            for (j = 0; j < taps; j++) {
                const int32_t *gp = padded + j * dil;
                int32_t w = op->weights2[j * ch + c];
                if (w == 0)
                    continue;
                for (t = 0; t < frames; t++)
                    hc[t] += w * gp[t];
            }
            continue;
        }
        for (j = 0; j < taps; j++) {
            int64_t off = j * dil - padl, first = off < 0 ? -off : 0, last = off > 0 ? frames - 1 - off : frames - 1;
            int32_t w = op->weights2[j * ch + c];
            if (w == 0)
                continue;
            for (t = first; t <= last; t++)
                hc[t] += w * gc[t + off];
        }
    }
    requant_table_stats(h, n, (int)f[26], (int32_t)f[27], (int32_t)f[28], op->codes2, &st);
    norm_prepare(h, n, &st, (int)f[34], (int)f[35], &nm);
    norm_apply_requant(h, g, ch, frames, &nm, op->norm[2], op->norm[3], (int)f[36], (int32_t)f[37], (int32_t)f[38]);
#ifdef LMN_SIMD
    pairs_from_channels(x16, g, frames, ch);
#else
    if (op->narrow & 2)
        for (i = 0; i < n; i++)
            x16[i] = (int16_t)g[i];
#endif
    for (co = 0; co < cout; co += 4) { /* project, four channels at a time, back to frames x channels */
        int64_t nc = cout - co < 4 ? cout - co : 4, q;
        for (q = 0; q < nc; q++) {
            int32_t *aq = acc + q * frames, b0 = op->ints3 ? op->ints3[co + q] : 0;
#ifdef LMN_SIMD
            for (t = 0; t < frames; t++)
                aq[t] = b0;
            pair_dot(aq, x16, frames, &op->pairs[1], co + q);
#else
            if (op->narrow & 2) {
                for (t = 0; t < frames; t++)
                    a16[t] = (int16_t)b0;
                rows_dot16(a16, x16, frames, ch, frames, op->weights3 + co + q, cout);
                for (t = 0; t < frames; t++)
                    aq[t] = a16[t];
            } else {
                for (t = 0; t < frames; t++)
                    aq[t] = b0;
                rows_dot(aq, g, frames, ch, frames, op->weights3 + co + q, cout);
            }
#endif
            if (has_out)
                requant_run(aq, frames, (int)f[41], (int32_t)f[42], (int32_t)f[43]);
        }
        rows_from_channels(yo + co, cout, acc, frames, frames, nc);
    }
}

static void gcblock(lmn_model *m, const lmn_op *op)
{
    for_each_block(m, op, op->f[2], op->f[3], gcblock_one);
}

int LMN_EXECUTE(lmn_model *m, const lmn_op *op)
{
    switch (op->opcode) {
    case OP_QUANT_FLOAT: quant_float(m, op); break;
    case OP_REQUANT: requant(m, op); break;
    case OP_LINEAR: linear(m, op); break;
    case OP_CONV: conv(m, op); break;
    case OP_INORM: integer_norm(m, op); break;
    case OP_ADD_INT: add_int(m, op); break;
    case OP_BINARY_FLOAT: binary_float(m, op); break;
    case OP_PRELU_TABLE:
    case OP_TABLE: table(m, op); break;
    case OP_COPY: copy(m, op); break;
    case OP_ZERO: memset((int32_t *)m->arena + m->values[op->f[0]].offset, 0, (size_t)m->values[op->f[0]].size * 4); break;
    case OP_REDUCE_MEAN: reduce_mean(m, op); break;
    case OP_RESIZE: resize(m, op); break;
    case OP_CONV_TRANSPOSE: conv_transpose(m, op); break;
    case OP_TAC: tac(m, op); break;
    case OP_PRELU_QUANT: prelu_quant(m, op); break;
    case OP_GCBLOCK: gcblock(m, op); break;
    default: return 1;
    }
    return 0;
}
