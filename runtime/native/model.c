/* Loading a packed model (FORMAT.md): header, checksum, sections, values, kernel records.
 *
 * The file is untrusted input. Every read goes through a bounded reader; every count is checked
 * against the bytes left before anything is allocated; every value id, element count and strided view
 * of every kernel is checked against the value table, so that the kernels may index without checks.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

#define MAX_VALUE_ELEMENTS ((int64_t)1 << 31)
#define MAX_ARENA_ELEMENTS ((int64_t)1 << 32)

void lmn_error(char *err, size_t err_len, const char *fmt, ...)
{
    va_list args;
    if (err == NULL || err_len == 0)
        return;
    va_start(args, fmt);
    vsnprintf(err, err_len, fmt, args);
    va_end(args);
}

uint32_t lmn_crc32(const unsigned char *data, size_t size)
{
    /* CRC-32 (IEEE 802.3, reflected, as zlib.crc32), bitwise: the checksum runs once per load. */
    uint32_t crc = 0xFFFFFFFFu;
    size_t i;
    int bit;
    for (i = 0; i < size; i++) {
        crc ^= data[i];
        for (bit = 0; bit < 8; bit++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return crc ^ 0xFFFFFFFFu;
}

typedef struct {
    const unsigned char *p, *end;
    int failed;
} reader;

static uint32_t u32_at(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static int64_t read_varint(reader *r)
{
    uint64_t z = 0;
    int shift = 0;
    while (!r->failed) {
        unsigned char byte;
        if (r->p >= r->end || shift > 63) {
            r->failed = 1;
            break;
        }
        byte = *r->p++;
        z |= (uint64_t)(byte & 0x7F) << shift;
        shift += 7;
        if (!(byte & 0x80))
            return (z & 1) ? -(int64_t)(z >> 1) - 1 : (int64_t)(z >> 1);
    }
    return 0;
}

/* A varint that must lie in [lo, hi]. */
static int64_t read_in(reader *r, int64_t lo, int64_t hi)
{
    int64_t v = read_varint(r);
    if (v < lo || v > hi)
        r->failed = 1;
    return r->failed ? lo : v;
}

/* A bit-packed integer array of exactly `count` values (count, bits, data); NULL on failure. */
static int32_t *read_ints(reader *r, int64_t count)
{
    int64_t n = read_in(r, 0, MAX_VALUE_ELEMENTS), bits = read_in(r, 1, 32), i, bytes;
    int32_t *out;
    if (r->failed || n != count)
        goto fail;
    bytes = (n * bits + 7) / 8;
    if (bytes > r->end - r->p)
        goto fail;
    out = (int32_t *)malloc((size_t)(n > 0 ? n : 1) * sizeof(int32_t));
    if (out == NULL)
        goto fail;
    for (i = 0; i < n; i++) {
        uint64_t u = 0;
        int64_t b;
        for (b = 0; b < bits; b++) {
            int64_t bit = i * bits + b;
            u |= (uint64_t)((r->p[bit >> 3] >> (bit & 7)) & 1) << b;
        }
        if (bits < 64 && (u >> (bits - 1)) & 1) /* sign-extend the b-bit two's complement */
            u |= ~(uint64_t)0 << bits;
        out[i] = (int32_t)(int64_t)u;
    }
    r->p += bytes;
    return out;
fail:
    r->failed = 1;
    return NULL;
}

static float *read_floats(reader *r, int64_t count)
{
    int64_t n = read_in(r, 0, MAX_VALUE_ELEMENTS), i;
    float *out;
    if (r->failed || n != count || n * 4 > r->end - r->p) {
        r->failed = 1;
        return NULL;
    }
    out = (float *)malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (out == NULL) {
        r->failed = 1;
        return NULL;
    }
    for (i = 0; i < n; i++) {
        uint32_t bitsv = u32_at(r->p + 4 * i);
        memcpy(&out[i], &bitsv, sizeof(float));
    }
    r->p += 4 * n;
    return out;
}

static int64_t product(const int64_t *dims, int rank)
{
    int64_t p = 1;
    int d;
    for (d = 0; d < rank; d++) {
        if (dims[d] < 1 || p > MAX_VALUE_ELEMENTS / dims[d])
            return -1;
        p *= dims[d];
    }
    return p;
}

/* Every element of the view lies in [0, size). Dims and strides are bounded so the sums cannot overflow. */
static int view_within(const lmn_view *v, int64_t size)
{
    int64_t lo = v->off, hi = v->off;
    int d;
    if (product(v->dims, v->rank) < 0 || v->off < 0 || v->off >= size)
        return 0;
    for (d = 0; d < v->rank; d++) {
        int64_t s = v->strides[d], reach;
        if (s > MAX_VALUE_ELEMENTS || s < -MAX_VALUE_ELEMENTS)
            return 0;
        reach = (v->dims[d] - 1) * s;
        if (reach > 0)
            hi += reach;
        else
            lo += reach;
    }
    return lo >= 0 && hi < size;
}

static void read_dims(reader *r, lmn_view *v, int rank)
{
    int d;
    v->rank = rank;
    for (d = 0; d < rank; d++)
        v->dims[d] = read_in(r, 1, MAX_VALUE_ELEMENTS);
}

static void read_strides(reader *r, lmn_view *v)
{
    int d;
    for (d = 0; d < v->rank; d++)
        v->strides[d] = read_in(r, -MAX_VALUE_ELEMENTS, MAX_VALUE_ELEMENTS);
}

/* The taps of a linear resize, as limuse_runtime.golden.ops.linear_resize_taps computes them: the same
 * float32 operations in the same order, so the same indices and weights. */
static int resize_taps(lmn_op *op, int64_t n_in, int64_t n_out, int transform)
{
    int64_t i;
    float scale = (float)n_in / (float)n_out;
    op->ints0 = (int32_t *)malloc((size_t)n_out * sizeof(int32_t));
    op->ints1 = (int32_t *)malloc((size_t)n_out * sizeof(int32_t));
    op->floats0 = (float *)malloc((size_t)n_out * sizeof(float));
    op->floats1 = (float *)malloc((size_t)n_out * sizeof(float));
    if (!op->ints0 || !op->ints1 || !op->floats0 || !op->floats1)
        return 0;
    for (i = 0; i < n_out; i++) {
        volatile float fi = (float)i, src; /* volatile: no excess precision, no reassociation */
        int64_t lo;
        if (transform == 1) {
            volatile float ratio = (float)(n_in - 1) / (float)(n_out - 1 > 1 ? n_out - 1 : 1);
            src = fi * ratio;
        } else if (transform == 2) {
            src = fi * scale;
        } else {
            volatile float shifted = (fi + 0.5f) * scale;
            src = shifted - 0.5f;
            if (src < 0.0f)
                src = 0.0f;
        }
        lo = (int64_t)floorf(src);
        if (lo > n_in - 1)
            lo = n_in - 1;
        op->ints0[i] = (int32_t)lo;
        op->ints1[i] = (int32_t)(lo + 1 < n_in - 1 ? lo + 1 : n_in - 1);
        op->floats1[i] = src - (float)lo;
        op->floats0[i] = 1.0f - op->floats1[i];
    }
    return 1;
}

/* Weight codes as int8 (the file may hold any width: wider ones are refused); NULL on failure. */
static int8_t *read_weights(reader *r, int64_t count)
{
    int32_t *w = read_ints(r, count);
    int8_t *out;
    int64_t i;
    if (w == NULL)
        return NULL;
    out = (int8_t *)malloc((size_t)(count > 0 ? count : 1));
    for (i = 0; out != NULL && i < count; i++) {
        if (w[i] < -128 || w[i] > 127) {
            free(out);
            out = NULL;
            break;
        }
        out[i] = (int8_t)w[i];
    }
    free(w);
    if (out == NULL)
        r->failed = 1;
    return out;
}

/* The static bound of an integer layer on 8-bit codes (fixed_point): 256 x the largest column sum of
 * |w| plus the largest |bias| (w: (cin, cout) row-major); below 2^31, int32 sums cannot overflow. */
static int64_t layer_bound(const int8_t *w, const int32_t *bias, int64_t cin, int64_t cout)
{
    int64_t co, ci, widest = 0, bias_max = 0;
    for (co = 0; co < cout; co++) {
        int64_t sum = 0, b = bias ? bias[co] : 0;
        for (ci = 0; ci < cin; ci++)
            sum += w[ci * cout + co] < 0 ? -w[ci * cout + co] : w[ci * cout + co];
        if (sum > widest)
            widest = sum;
        if (b < 0)
            b = -b;
        if (b > bias_max)
            bias_max = b;
    }
    return 256 * widest + bias_max;
}

/* An 8-bit code range [lo, hi] whose byte indexes a 256-entry table of that signedness. */
static int byte_codes(int64_t lo, int64_t hi, int64_t is_signed)
{
    return lo <= hi && (is_signed ? lo >= -128 && hi <= 127 : lo >= 0 && hi <= 255);
}

typedef struct {
    lmn_model *m;
    char *err;
    size_t err_len;
    int index;
} checker;

/* Value `id` exists, has `kind` (or any, -1) and, if elements >= 0, exactly that many elements. */
static int value_ok(checker *c, int64_t id, int kind, int64_t elements, const char *what)
{
    if (id < 0 || id >= c->m->n_values) {
        lmn_error(c->err, c->err_len, "packed model: kernel %d refers to value %lld of %d", c->index, (long long)id,
                  c->m->n_values);
        return 0;
    }
    if (kind >= 0 && c->m->values[id].kind != kind) {
        lmn_error(c->err, c->err_len, "packed model: kernel %d: %s value %lld has the wrong kind", c->index, what,
                  (long long)id);
        return 0;
    }
    if (elements >= 0 && c->m->values[id].size != elements) {
        lmn_error(c->err, c->err_len, "packed model: kernel %d: %s value %lld has %lld elements, expected %lld",
                  c->index, what, (long long)id, (long long)c->m->values[id].size, (long long)elements);
        return 0;
    }
    return 1;
}

static int64_t size_of(checker *c, int64_t id)
{
    return c->m->values[id].size;
}

static int fail_record(checker *c, const char *why)
{
    lmn_error(c->err, c->err_len, "packed model: kernel %d (opcode %d): %s; the file is corrupt or from another "
              "packer version", c->index, c->m->ops[c->index].opcode, why);
    return 0;
}

/* Reads one kernel record's payload and checks it against the value table. */
static int read_op(checker *c, reader *r, lmn_op *op)
{
    int64_t *f = op->f;
    int64_t n, i;
    int rank;
    const int64_t BIG = MAX_VALUE_ELEMENTS;
    switch (op->opcode) {
    case OP_QUANT_FLOAT:
    case OP_REQUANT:
        for (i = 0; i < 6; i++)
            f[i] = read_in(r, i == 3 ? -126 : (i >= 4 ? -65536 : 0), i == 3 ? 126 : (i >= 4 ? 65536 : BIG));
        if (r->failed)
            return fail_record(c, "truncated fields");
        if (op->opcode == OP_REQUANT && (f[3] < -62 || f[3] > 62))
            return fail_record(c, "shift out of range");
        return value_ok(c, f[0], KIND_INT, f[2], "output") &&
               value_ok(c, f[1], op->opcode == OP_REQUANT ? KIND_INT : KIND_FLOAT, f[2], "input") &&
               (f[4] <= f[5] || fail_record(c, "empty code range"));
    case OP_LINEAR:
    case OP_CONV: {
        int conv = op->opcode == OP_CONV;
        int nf = conv ? 15 : 7, has_out;
        int64_t cout, cin, wcount, in_elems, out_elems;
        for (i = 0; i < nf; i++)
            f[i] = read_in(r, conv && (i == 9 || i == 10) ? 0 : (i >= nf - 2 ? 0 : 0), BIG);
        has_out = (int)f[nf - 1];
        if (has_out > 1 || f[nf - 2] > 1)
            return fail_record(c, "bad flags");
        if (has_out) {
            f[nf] = read_in(r, -62, 62);
            f[nf + 1] = read_in(r, -65536, 65536);
            f[nf + 2] = read_in(r, -65536, 65536);
        }
        if (r->failed)
            return fail_record(c, "truncated fields");
        if (conv) { /* out in B Cin T Cout k stride dilation padl padr groups Tout has_bias has_out */
            int64_t b = f[2], t = f[4], k = f[6], stride = f[7], dil = f[8], groups = f[11], tout = f[12], span;
            cin = f[3];
            cout = f[5];
            if (b < 1 || cin < 1 || t < 1 || cout < 1 || k < 1 || stride < 1 || dil < 1 || groups < 1 ||
                cin % groups || cout % groups || k > 4096 || dil > 65536 || f[9] > 65536 || f[10] > 65536)
                return fail_record(c, "bad conv geometry");
            span = t + f[9] + f[10] - dil * (k - 1) - 1;
            if (span < 0 || tout != span / stride + 1)
                return fail_record(c, "bad conv output length");
            if (b > BIG / cin || b * cin > BIG / t || b > BIG / cout || b * cout > BIG / tout ||
                cout > BIG / (cin / groups) || cout * (cin / groups) > BIG / k)
                return fail_record(c, "conv too large");
            in_elems = b * cin * t;
            out_elems = b * cout * tout;
            wcount = cout * (cin / groups) * k;
        } else { /* out in rows Cin Cout has_bias has_out */
            int64_t rows = f[2];
            cin = f[3];
            cout = f[4];
            if (rows < 1 || cin < 1 || cout < 1 || rows > BIG / cin || rows > BIG / cout || cin > BIG / cout)
                return fail_record(c, "bad linear geometry");
            in_elems = rows * cin;
            out_elems = rows * cout;
            wcount = cin * cout;
        }
        if (!value_ok(c, f[0], KIND_INT, out_elems, "output") || !value_ok(c, f[1], KIND_INT, in_elems, "input"))
            return 0;
        {
            int32_t *w = read_ints(r, wcount);
            if (w == NULL)
                return fail_record(c, "bad weights");
            op->weights = (int8_t *)malloc((size_t)wcount);
            if (op->weights == NULL) {
                free(w);
                return fail_record(c, "out of memory");
            }
            for (i = 0; i < wcount; i++) {
                if (w[i] < -128 || w[i] > 127) {
                    free(w);
                    return fail_record(c, "weights wider than 8 bits");
                }
                op->weights[i] = (int8_t)w[i];
            }
            free(w);
        }
        if (f[nf - 2]) {
            op->ints0 = read_ints(r, cout);
            if (op->ints0 == NULL)
                return fail_record(c, "bad bias");
        }
        op->n_fields = nf + (has_out ? 3 : 0);
        if (!conv) { /* the static bound of fixed_point: 256 x the largest column sum of |w|, plus |bias| */
            int64_t co, ci, widest = 0, bias_max = 0;
            for (co = 0; co < cout; co++) {
                int64_t sum = 0;
                for (ci = 0; ci < cin; ci++)
                    sum += op->weights[ci * cout + co] < 0 ? -op->weights[ci * cout + co] : op->weights[ci * cout + co];
                if (sum > widest)
                    widest = sum;
                if (op->ints0 && (op->ints0[co] > bias_max || -(int64_t)op->ints0[co] > bias_max))
                    bias_max = op->ints0[co] < 0 ? -(int64_t)op->ints0[co] : op->ints0[co];
            }
            op->narrow = 256 * widest + bias_max < 32768; /* codes of <= 8 bits, signed or not */
        }
        return 1;
    }
    case OP_INORM: /* out in B N C inner fm fn; gamma[C] beta[C] */
        for (i = 0; i < 8; i++)
            f[i] = read_in(r, 0, BIG);
        if (r->failed || f[2] < 1 || f[3] < 1 || f[4] < 1 || f[5] < 1 || f[6] > 8 || f[7] > 16 ||
            f[2] > BIG / f[3] || f[3] % f[5] || f[4] > BIG / f[5] || (f[3] / f[5]) % f[4] != 0)
            return fail_record(c, "bad norm geometry");
        if (!value_ok(c, f[0], KIND_INT, f[2] * f[3], "output") || !value_ok(c, f[1], KIND_INT, f[2] * f[3], "input"))
            return 0;
        op->ints0 = read_ints(r, f[4]);
        op->ints1 = op->ints0 ? read_ints(r, f[4]) : NULL;
        if (op->ints1 == NULL)
            return fail_record(c, "bad norm parameters");
        for (i = 0; i < f[4]; i++)
            if (op->ints0[i] < -32768 || op->ints0[i] > 32767 || op->ints1[i] < -(1 << 30) || op->ints1[i] > (1 << 30))
                return fail_record(c, "norm parameters out of range");
        return 1;
    case OP_ADD_INT: /* out a b sub sa sb rank dims astr bstr */
    case OP_BINARY_FLOAT: { /* out a ad ae b bd be code rank dims astr bstr */
        int flt = op->opcode == OP_BINARY_FLOAT;
        int head = flt ? 8 : 6;
        for (i = 0; i < head; i++)
            f[i] = read_in(r, -BIG, BIG);
        rank = (int)read_in(r, 0, MAX_RANK);
        if (r->failed)
            return fail_record(c, "truncated fields");
        read_dims(r, &op->a, rank);
        op->b = op->a;
        op->dst = op->a;
        read_strides(r, &op->a);
        read_strides(r, &op->b);
        op->a.off = op->b.off = op->dst.off = 0;
        for (i = 0; i < rank; i++)
            op->dst.strides[rank - 1 - i] = i == 0 ? 1 : op->dst.strides[rank - i] * op->dst.dims[rank - i];
        if (r->failed)
            return fail_record(c, "truncated fields");
        n = product(op->a.dims, rank);
        if (n < 0)
            return fail_record(c, "bad shape");
        if (flt) {
            if (f[2] < 0 || f[2] > 1 || f[5] < 0 || f[5] > 1 || f[7] < 0 || f[7] > 3 || f[3] < -126 ||
                f[3] > 126 || f[6] < -126 || f[6] > 126)
                return fail_record(c, "bad operand flags");
            if (!value_ok(c, f[0], KIND_FLOAT, n, "output") ||
                !value_ok(c, f[1], f[2] ? KIND_INT : KIND_FLOAT, -1, "first operand") ||
                !value_ok(c, f[4], f[5] ? KIND_INT : KIND_FLOAT, -1, "second operand"))
                return 0;
            if (!view_within(&op->a, size_of(c, f[1])) || !view_within(&op->b, size_of(c, f[4])))
                return fail_record(c, "operand view out of bounds");
        } else {
            if (f[3] < 0 || f[3] > 1 || f[4] < 0 || f[4] > 30 || f[5] < 0 || f[5] > 30)
                return fail_record(c, "bad add flags");
            if (!value_ok(c, f[0], KIND_INT, n, "output") || !value_ok(c, f[1], KIND_INT, -1, "first operand") ||
                !value_ok(c, f[2], KIND_INT, -1, "second operand"))
                return 0;
            if (!view_within(&op->a, size_of(c, f[1])) || !view_within(&op->b, size_of(c, f[2])))
                return fail_record(c, "operand view out of bounds");
        }
        return 1;
    }
    case OP_PRELU_TABLE: /* out in n e signed; slope */
    case OP_TABLE: {     /* out in n signed; table[256] */
        int prelu = op->opcode == OP_PRELU_TABLE;
        int nf = prelu ? 5 : 4;
        for (i = 0; i < nf; i++)
            f[i] = read_in(r, -BIG, BIG);
        if (r->failed || f[nf - 1] < 0 || f[nf - 1] > 1 || (prelu && (f[3] < -126 || f[3] > 126)))
            return fail_record(c, "bad table fields");
        if (!value_ok(c, f[0], KIND_FLOAT, f[2], "output") || !value_ok(c, f[1], KIND_INT, f[2], "input"))
            return 0;
        op->floats0 = read_floats(r, prelu ? 1 : 256);
        if (op->floats0 == NULL)
            return fail_record(c, "bad table");
        return 1;
    }
    case OP_COPY: /* out in deq e rank dims dst_off dst_strides src_off src_strides */
        for (i = 0; i < 4; i++)
            f[i] = read_in(r, -BIG, BIG);
        rank = (int)read_in(r, 0, MAX_RANK);
        if (r->failed || f[2] < 0 || f[2] > 1 || f[3] < -126 || f[3] > 126)
            return fail_record(c, "bad copy fields");
        read_dims(r, &op->dst, rank);
        op->src = op->dst;
        op->dst.off = read_in(r, 0, BIG);
        read_strides(r, &op->dst);
        op->src.off = read_in(r, 0, BIG);
        read_strides(r, &op->src);
        if (r->failed)
            return fail_record(c, "truncated fields");
        if (!value_ok(c, f[0], f[2] ? KIND_FLOAT : -1, -1, "output") ||
            !value_ok(c, f[1], f[2] ? KIND_INT : c->m->values[f[0]].kind, -1, "input"))
            return 0;
        if (!view_within(&op->dst, size_of(c, f[0])) || !view_within(&op->src, size_of(c, f[1])))
            return fail_record(c, "copy view out of bounds");
        return 1;
    case OP_ZERO:
        f[0] = read_in(r, 0, BIG);
        if (r->failed)
            return fail_record(c, "truncated fields");
        return value_ok(c, f[0], -1, -1, "output");
    case OP_REDUCE_MEAN: /* out in deq e outer n inner */
        for (i = 0; i < 7; i++)
            f[i] = read_in(r, -BIG, BIG);
        if (r->failed || f[2] < 0 || f[2] > 1 || f[3] < -126 || f[3] > 126 || f[4] < 1 || f[5] < 1 || f[6] < 1 ||
            f[4] > BIG / f[6] || f[4] * f[6] > BIG / f[5])
            return fail_record(c, "bad reduction fields");
        return value_ok(c, f[0], KIND_FLOAT, f[4] * f[6], "output") &&
               value_ok(c, f[1], f[2] ? KIND_INT : KIND_FLOAT, f[4] * f[5] * f[6], "input");
    case OP_RESIZE: /* out in deq e outer n_in n_out inner transform */
        for (i = 0; i < 9; i++)
            f[i] = read_in(r, -BIG, BIG);
        if (r->failed || f[2] < 0 || f[2] > 1 || f[3] < -126 || f[3] > 126 || f[4] < 1 || f[5] < 1 || f[6] < 1 ||
            f[7] < 1 || f[8] < 0 || f[8] > 2 || f[5] > (1 << 24) || f[6] > (1 << 24) || f[4] > BIG / f[7] ||
            f[4] * f[7] > BIG / f[5] || f[4] * f[7] > BIG / f[6])
            return fail_record(c, "bad resize fields");
        if (!value_ok(c, f[0], KIND_FLOAT, f[4] * f[6] * f[7], "output") ||
            !value_ok(c, f[1], f[2] ? KIND_INT : KIND_FLOAT, f[4] * f[5] * f[7], "input"))
            return 0;
        if (!resize_taps(op, f[5], f[6], (int)f[8]))
            return fail_record(c, "out of memory");
        return 1;
    case OP_CONV_TRANSPOSE: { /* out in deq e B Cin T Cout k stride dilation padl padr; w[Cin*Cout*k] bias[Cout] */
        int64_t b, cin, t, cout, k, stride, dil, length;
        for (i = 0; i < 13; i++)
            f[i] = read_in(r, -BIG, BIG);
        b = f[4], cin = f[5], t = f[6], cout = f[7], k = f[8], stride = f[9], dil = f[10];
        if (r->failed || f[2] < 0 || f[2] > 1 || f[3] < -126 || f[3] > 126 || b < 1 || cin < 1 || t < 1 ||
            cout < 1 || k < 1 || k > 65536 || stride < 1 || stride > 65536 || dil < 1 || dil > 65536 || f[11] < 0 ||
            f[12] < 0 || t > BIG / stride)
            return fail_record(c, "bad transposed conv fields");
        length = (t - 1) * stride + dil * (k - 1) + 1 - f[11] - f[12];
        if (length < 1 || b > BIG / cin || b * cin > BIG / t || b > BIG / cout || b * cout > BIG / length ||
            cin > BIG / cout || cin * cout > BIG / k)
            return fail_record(c, "bad transposed conv geometry");
        if (!value_ok(c, f[0], KIND_FLOAT, b * cout * length, "output") ||
            !value_ok(c, f[1], f[2] ? KIND_INT : KIND_FLOAT, b * cin * t, "input"))
            return 0;
        op->floats0 = read_floats(r, cin * cout * k);
        op->floats1 = op->floats0 ? read_floats(r, cout) : NULL;
        if (op->floats1 == NULL)
            return fail_record(c, "bad transposed conv weights");
        return 1;
    }
    case OP_PRELU_QUANT: { /* out in n e signed e_q lo hi; slope */
        for (i = 0; i < 8; i++)
            f[i] = read_in(r, -BIG, BIG);
        if (r->failed || f[4] < 0 || f[4] > 1 || f[3] < -126 || f[3] > 126 || f[5] < -126 || f[5] > 126 ||
            f[6] < -65536 || f[7] > 65536 || f[6] > f[7])
            return fail_record(c, "bad table fields");
        if (!value_ok(c, f[0], KIND_INT, f[2], "output") || !value_ok(c, f[1], KIND_INT, f[2], "input"))
            return 0;
        op->floats0 = read_floats(r, 1);
        if (op->floats0 == NULL || !isfinite(op->floats0[0]))
            return fail_record(c, "bad slope");
        lmn_prelu_values(f[3], (int)f[4], op->floats0[0], op->table);
        lmn_quant_values(op->table, 256, f[5], f[6], f[7], op->codes1);
        return 1;
    }
    case OP_TAC: { /* FORMAT.md: 28 fields (+3 if L3 requantizes), then the three layers' arrays */
        int64_t outer, groups, frames, cin, ch, cout, rows;
        static const int64_t lo_f[28] = {0, 0, 1, 1, 1, 1, 1, 1, 0, -62, -65536, -65536, -126, 0, -126,
                                         -65536, -65536, 0, -62, -65536, -65536, -126, 0, -126, -65536, -65536, 0, 0};
        static const int64_t hi_f[28] = {0, 0, 0, 0, 0, LMN_TILE_CHANNELS, LMN_TILE_CHANNELS, LMN_TILE_CHANNELS,
                                         1, 62, 65536, 65536, 126, 1, 126, 65536, 65536, 1, 62, 65536, 65536, 126,
                                         1, 126, 65536, 65536, 1, 1};
        for (i = 0; i < 28; i++)
            f[i] = read_in(r, lo_f[i], hi_f[i] ? hi_f[i] : BIG);
        if (f[27]) {
            f[28] = read_in(r, -62, 62);
            f[29] = read_in(r, -65536, 65536);
            f[30] = read_in(r, -65536, 65536);
        }
        if (r->failed)
            return fail_record(c, "truncated fields");
        op->n_fields = f[27] ? 31 : 28;
        outer = f[2], groups = f[3], frames = f[4], cin = f[5], ch = f[6], cout = f[7];
        if (groups > BIG / frames || outer > BIG / (groups * frames) ||
            outer * groups * frames > BIG / (cin > cout ? cin : cout) || outer * frames > BIG / ch)
            return fail_record(c, "bad TAC geometry");
        rows = groups * frames;
        if (!byte_codes(f[10], f[11], f[13]) || !byte_codes(f[19], f[20], f[22]) || f[15] > f[16] ||
            f[15] < -128 || f[16] > 255 || f[24] > f[25] || f[24] < -32768 || f[25] > 32767 ||
            (f[27] && f[29] > f[30]))
            return fail_record(c, "bad TAC code ranges");
        if (!value_ok(c, f[0], KIND_INT, outer * rows * cout, "output") ||
            !value_ok(c, f[1], KIND_INT, outer * rows * cin, "input"))
            return 0;
        op->weights = read_weights(r, cin * ch);
        op->ints0 = op->weights && f[8] ? read_ints(r, ch) : NULL;
        op->floats0 = op->weights && (op->ints0 || !f[8]) ? read_floats(r, 1) : NULL;
        op->weights2 = op->floats0 ? read_weights(r, ch * ch) : NULL;
        op->ints2 = op->weights2 && f[17] ? read_ints(r, ch) : NULL;
        op->floats1 = op->weights2 && (op->ints2 || !f[17]) ? read_floats(r, 1) : NULL;
        op->weights3 = op->floats1 ? read_weights(r, 2 * ch * cout) : NULL;
        op->ints3 = op->weights3 && f[26] ? read_ints(r, cout) : NULL;
        if (op->weights3 == NULL || (f[26] && op->ints3 == NULL) || !isfinite(op->floats0[0]) ||
            !isfinite(op->floats1[0]))
            return fail_record(c, "bad TAC arrays");
        /* the mean's and the concatenation's codes are 8-bit, as the layers' bounds assume */
        if (layer_bound(op->weights, op->ints0, cin, ch) >= ((int64_t)1 << 31) ||
            layer_bound(op->weights2, op->ints2, ch, ch) >= ((int64_t)1 << 31) ||
            layer_bound(op->weights3, op->ints3, 2 * ch, cout) >= ((int64_t)1 << 31) ||
            f[24] < -128 || f[25] > 255)
            return fail_record(c, "TAC accumulator bound beyond int32");
        /* int16 accumulation where it cannot overflow: L1 (codes of 8 bits: 256 x column sum + |bias|), and
         * the first half of L3 alone (no bias; its second half and bias are added in int32) */
        op->narrow = (layer_bound(op->weights, op->ints0, cin, ch) < 32768 ? 1 : 0) |
                     (layer_bound(op->weights3, NULL, ch, cout) < 32768 ? 2 : 0);
        lmn_prelu_values(f[12], (int)f[13], op->floats0[0], op->table);
        lmn_prelu_values(f[21], (int)f[22], op->floats1[0], op->table2);
        lmn_quant_values(op->table, 256, f[23], f[24], f[25], op->codes1);
        lmn_quant_values(op->table2, 256, f[23], f[24], f[25], op->codes2);
#ifdef LMN_PAIRS
        if (lmn_build_pairs(&op->pairs[0], op->weights, cin, ch) || lmn_build_pairs(&op->pairs[1], op->weights3, ch, cout) ||
            lmn_build_pairs(&op->pairs[2], op->weights2, ch, ch) ||
            lmn_build_pairs(&op->pairs[3], op->weights3 + ch * cout, ch, cout))
            return fail_record(c, "out of memory");
#endif
        op->work_bytes = lmn_tac_layout(rows, frames, ch, cout).bytes;
        return 1;
    }
    case OP_GCBLOCK: { /* FORMAT.md: 41 fields (+3 if the projection requantizes), then the arrays */
        int64_t outer, frames, cin, ch, cout, taps, wide, j, q;
        /* each field's range; 0 as the upper end stands for BIG */
        static const int64_t lo_f[41] = {0, 0, 1, 1, 1, 1, 1, 0, -62, -65536, -65536, -126, 0, -126, -255, -255,
                                         0, 0, -62, -255, -255, 1, 1, 0, 0, 0, -62, -65536, -65536, -126, 0, -126,
                                         -255, -255, 0, 0, -62, -255, -255, 0, 0};
        static const int64_t hi_f[41] = {0, 0, 0, 0, LMN_TILE_CHANNELS, LMN_TILE_CHANNELS, LMN_TILE_CHANNELS, 1, 62,
                                         65536, 65536, 126, 1, 126, 255, 255, 8, 16, 62, 255, 255, 4096, 65536,
                                         65536, 65536, 1, 62, 65536, 65536, 126, 1, 126, 255, 255, 8, 16, 62, 255,
                                         255, 1, 1};
        for (i = 0; i < 41; i++)
            f[i] = read_in(r, lo_f[i], hi_f[i] ? hi_f[i] : BIG);
        if (f[40]) {
            f[41] = read_in(r, -62, 62);
            f[42] = read_in(r, -65536, 65536);
            f[43] = read_in(r, -65536, 65536);
        }
        if (r->failed)
            return fail_record(c, "truncated fields");
        op->n_fields = f[40] ? 44 : 41;
        outer = f[2], frames = f[3], cin = f[4], ch = f[5], cout = f[6], taps = f[21];
        wide = ch > cout ? ch : cout;
        if (outer > BIG / frames || outer * frames > BIG / (cin > wide ? cin : wide) || frames > BIG / (3 * ch + 2 * cin + 2) ||
            f[23] + f[24] != f[22] * (taps - 1))
            return fail_record(c, "bad GC-TCN block geometry");
        if (!byte_codes(f[9], f[10], f[12]) || !byte_codes(f[27], f[28], f[30]) || f[14] > f[15] ||
            f[19] > f[20] || f[32] > f[33] || f[37] > f[38] || (f[40] && f[42] > f[43]))
            return fail_record(c, "bad GC-TCN block code ranges");
        if (!value_ok(c, f[0], KIND_INT, outer * frames * cout, "output") ||
            !value_ok(c, f[1], KIND_INT, outer * frames * cin, "input"))
            return 0;
        op->weights = read_weights(r, cin * ch);
        op->ints0 = op->weights && f[7] ? read_ints(r, ch) : NULL;
        op->floats0 = op->weights && (op->ints0 || !f[7]) ? read_floats(r, 1) : NULL;
        op->norm[0] = op->floats0 ? read_ints(r, ch) : NULL;
        op->norm[1] = op->norm[0] ? read_ints(r, ch) : NULL;
        op->weights4 = op->norm[1] ? read_weights(r, ch * taps) : NULL;
        op->ints2 = op->weights4 && f[25] ? read_ints(r, ch) : NULL;
        op->floats1 = op->weights4 && (op->ints2 || !f[25]) ? read_floats(r, 1) : NULL;
        op->norm[2] = op->floats1 ? read_ints(r, ch) : NULL;
        op->norm[3] = op->norm[2] ? read_ints(r, ch) : NULL;
        op->weights3 = op->norm[3] ? read_weights(r, ch * cout) : NULL;
        op->ints3 = op->weights3 && f[39] ? read_ints(r, cout) : NULL;
        if (op->weights3 == NULL || (f[39] && op->ints3 == NULL) || !isfinite(op->floats0[0]) ||
            !isfinite(op->floats1[0]))
            return fail_record(c, "bad GC-TCN block arrays");
        op->weights2 = (int8_t *)malloc((size_t)(ch * taps)); /* (Ch, 1, taps) -> (taps, Ch): channels last */
        if (op->weights2 == NULL)
            return fail_record(c, "out of memory");
        for (j = 0; j < taps; j++)
            for (i = 0; i < ch; i++)
                op->weights2[j * ch + i] = op->weights4[i * taps + j];
        for (q = 0; q < 2; q++) { /* the norms' output bound, as the packer's (IntegerNorm) */
            int64_t gmax = 0, bmax = 0, fm = f[q ? 34 : 16], fn = f[q ? 35 : 17];
            for (i = 0; i < ch; i++) {
                int64_t gv = op->norm[2 * q][i], bv = op->norm[2 * q + 1][i];
                gmax = gv < 0 ? (-gv > gmax ? -gv : gmax) : (gv > gmax ? gv : gmax);
                bmax = bv < 0 ? (-bv > bmax ? -bv : bmax) : (bv > bmax ? bv : bmax);
            }
            /* |d << P| < 2^(9 + F + P) must fit int32, and so must 255 2^(F+P) max|gamma| + max|beta| */
            if (fm + fn > 22 || bmax >= ((int64_t)1 << 31) - 1 ||
                gmax > (((int64_t)1 << 31) - 1 - bmax) / ((int64_t)255 << (fm + fn)))
                return fail_record(c, "GC-TCN norm bound beyond int32");
        }
        if (layer_bound(op->weights, op->ints0, cin, ch) >= ((int64_t)1 << 31) ||
            layer_bound(op->weights2, op->ints2, taps, ch) >= ((int64_t)1 << 31) ||
            layer_bound(op->weights3, op->ints3, ch, cout) >= ((int64_t)1 << 31))
            return fail_record(c, "GC-TCN block accumulator bound beyond int32");
        lmn_prelu_values(f[11], (int)f[12], op->floats0[0], op->table);
        lmn_quant_values(op->table, 256, f[13], f[14], f[15], op->codes1);
        lmn_prelu_values(f[29], (int)f[30], op->floats1[0], op->table2);
        lmn_quant_values(op->table2, 256, f[31], f[32], f[33], op->codes2);
        op->work_bytes = (size_t)((2 * ch + cin + 4) * frames) * 4 + /* h, g, the input and four rows, channel-major */
                         (size_t)(((cin > ch ? cin : ch) + 1) * frames) * 2; /* their int16 copies */
        op->narrow = (layer_bound(op->weights, op->ints0, cin, ch) < 32768 ? 1 : 0) |
                     (layer_bound(op->weights3, op->ints3, ch, cout) < 32768 ? 2 : 0);
#ifdef LMN_PAIRS
        if (lmn_build_pairs(&op->pairs[0], op->weights, cin, ch) || lmn_build_pairs(&op->pairs[1], op->weights3, ch, cout))
            return fail_record(c, "out of memory");
#endif
        return 1;
    }
    default:
        return fail_record(c, "unknown kernel");
    }
}

/* The opcodes whose records get the lookup-table block (model.h). */
static int has_tables(int opcode)
{
    return opcode == OP_PRELU_TABLE || opcode == OP_PRELU_QUANT || opcode == OP_TAC || opcode == OP_GCBLOCK;
}

/* CONF: a strict JSON reader (RFC 8259; no NaN, no duplicate keys, nesting below JSON_MAX_DEPTH) for the
 * fields the engine and its binding use. The binding sizes the caller's arrays from CONF's "inputs", so
 * these must equal the value table's: a CRC guards against corruption, not against a crafted file. */
#define JSON_MAX_DEPTH 64
#define JSON_MAX_KEYS 256

typedef struct {
    const char *p, *end;
} json_reader;

typedef struct {
    int have_inputs, input_rank[3];
    int64_t input_dims[3][MAX_RANK];
    int64_t window_samples, mic_channels, output_samples; /* -1: absent */
} conf_fields;

static void json_space(json_reader *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int json_literal(json_reader *j, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0)
        return 0;
    j->p += n;
    return 1;
}

/* A string; its raw bytes (escapes undecoded, enough to compare plain keys) into out[cap] if out != NULL. */
static int json_string(json_reader *j, char *out, size_t cap)
{
    size_t n = 0;
    if (j->p >= j->end || *j->p != '"')
        return 0;
    j->p++;
    while (j->p < j->end && *j->p != '"') {
        unsigned char ch = (unsigned char)*j->p;
        if (ch < 0x20)
            return 0;
        if (ch == '\\') {
            if (j->end - j->p < 2)
                return 0;
            if (j->p[1] == 'u') {
                int k;
                if (j->end - j->p < 6)
                    return 0;
                for (k = 2; k < 6; k++) {
                    char h = j->p[k];
                    if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') || (h >= 'A' && h <= 'F')))
                        return 0;
                }
            } else if (strchr("\"\\/bfnrt", j->p[1]) == NULL || j->p[1] == '\0') {
                return 0;
            }
            if (out != NULL && n < cap)
                out[n] = '\\'; /* an escaped key never equals a field name */
            n++;
            j->p += j->p[1] == 'u' ? 6 : 2;
            continue;
        }
        if (out != NULL && n < cap)
            out[n] = (char)ch;
        n++;
        j->p++;
    }
    if (j->p >= j->end)
        return 0;
    j->p++;
    if (out != NULL && cap > 0)
        out[n < cap ? n : cap - 1] = '\0';
    if (out != NULL && n >= cap)
        out[0] = '\\'; /* too long for any field name */
    return 1;
}

/* A number; *value is set (and *integral = 1) if it is an integer of at most 15 digits. */
static int json_number(json_reader *j, int64_t *value, int *integral)
{
    const char *start = j->p;
    int digits = 0, negative = 0;
    int64_t v = 0;
    *integral = 1;
    if (j->p < j->end && *j->p == '-') {
        negative = 1;
        j->p++;
    }
    if (j->p >= j->end || *j->p < '0' || *j->p > '9')
        return 0;
    if (*j->p == '0' && j->end - j->p > 1 && j->p[1] >= '0' && j->p[1] <= '9')
        return 0; /* no leading zeros */
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        if (++digits <= 15)
            v = v * 10 + (*j->p - '0');
        j->p++;
    }
    if (digits > 15)
        *integral = 0;
    if (j->p < j->end && *j->p == '.') {
        *integral = 0;
        j->p++;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9')
            return 0;
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        *integral = 0;
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9')
            return 0;
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    }
    *value = negative ? -v : v;
    return j->p > start;
}

static int json_value(json_reader *j, int depth);

/* A nested object (duplicate keys matter only at the top level and in "inputs", read below). */
static int json_object(json_reader *j, int depth)
{
    j->p++;
    json_space(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        return 1;
    }
    for (;;) {
        json_space(j);
        if (!json_string(j, NULL, 0))
            return 0;
        json_space(j);
        if (j->p >= j->end || *j->p++ != ':' || !json_value(j, depth + 1))
            return 0;
        json_space(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->end && *j->p == '}') {
            j->p++;
            return 1;
        }
        return 0;
    }
}

static int json_value(json_reader *j, int depth)
{
    int64_t v;
    int integral;
    if (depth > JSON_MAX_DEPTH)
        return 0;
    json_space(j);
    if (j->p >= j->end)
        return 0;
    switch (*j->p) {
    case '{':
        return json_object(j, depth);
    case '[':
        j->p++;
        json_space(j);
        if (j->p < j->end && *j->p == ']') {
            j->p++;
            return 1;
        }
        for (;;) {
            if (!json_value(j, depth + 1))
                return 0;
            json_space(j);
            if (j->p < j->end && *j->p == ',') {
                j->p++;
                continue;
            }
            if (j->p < j->end && *j->p == ']') {
                j->p++;
                return 1;
            }
            return 0;
        }
    case '"':
        return json_string(j, NULL, 0);
    case 't':
        return json_literal(j, "true");
    case 'f':
        return json_literal(j, "false");
    case 'n':
        return json_literal(j, "null");
    default:
        return json_number(j, &v, &integral);
    }
}

/* A positive integer (a count or a dimension), below 2^31. */
static int json_count(json_reader *j, int64_t *value)
{
    int integral;
    json_space(j);
    return json_number(j, value, &integral) && integral && *value >= 1 && *value <= MAX_VALUE_ELEMENTS;
}

/* "inputs": {name: [dims]}, each name one of the three inputs, at most once. */
static int json_inputs(json_reader *j, conf_fields *cf)
{
    static const char *const NAMES[3] = {"mixture", "voiceprint", "visual"};
    json_space(j);
    if (j->p >= j->end || *j->p++ != '{')
        return 0;
    json_space(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        return 1;
    }
    for (;;) {
        char key[24];
        int which, rank = 0;
        json_space(j);
        if (!json_string(j, key, sizeof key))
            return 0;
        for (which = 0; which < 3 && strcmp(key, NAMES[which]) != 0; which++)
            ;
        if (which == 3 || cf->input_rank[which] != 0)
            return 0;
        json_space(j);
        if (j->p >= j->end || *j->p++ != ':')
            return 0;
        json_space(j);
        if (j->p >= j->end || *j->p++ != '[')
            return 0;
        for (;;) {
            if (rank >= MAX_RANK || !json_count(j, &cf->input_dims[which][rank++]))
                return 0;
            json_space(j);
            if (j->p < j->end && *j->p == ',') {
                j->p++;
                continue;
            }
            if (j->p < j->end && *j->p++ == ']')
                break;
            return 0;
        }
        cf->input_rank[which] = rank;
        json_space(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->end && *j->p++ == '}')
            return 1;
        return 0;
    }
}

/* The CONF object's top level: the four fields the engine checks, everything else only validated. */
static int json_conf(json_reader *j, conf_fields *cf)
{
    char keys[JSON_MAX_KEYS][24];
    int n = 0, k;
    json_space(j);
    if (j->p >= j->end || *j->p++ != '{')
        return 0;
    for (;;) {
        char key[24];
        json_space(j);
        if (n >= JSON_MAX_KEYS || !json_string(j, key, sizeof key))
            return 0;
        for (k = 0; k < n; k++)
            if (key[0] != '\\' && strcmp(keys[k], key) == 0)
                return 0;
        memcpy(keys[n++], key, sizeof key);
        json_space(j);
        if (j->p >= j->end || *j->p++ != ':')
            return 0;
        if (strcmp(key, "inputs") == 0) {
            cf->have_inputs = 1;
            if (!json_inputs(j, cf))
                return 0;
        } else if (strcmp(key, "window_samples") == 0) {
            if (!json_count(j, &cf->window_samples))
                return 0;
        } else if (strcmp(key, "mic_channels") == 0) {
            if (!json_count(j, &cf->mic_channels))
                return 0;
        } else if (strcmp(key, "output_samples") == 0) {
            if (!json_count(j, &cf->output_samples))
                return 0;
        } else if (!json_value(j, 1)) {
            return 0;
        }
        json_space(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->end && *j->p++ == '}')
            break;
        return 0;
    }
    json_space(j);
    return j->p == j->end;
}

/* CONF is well-formed and agrees with the value table: the same inputs with the same shapes (mixture
 * (1, mic_channels, window_samples), voiceprint (1, 512), visual (1, V, 256)) and output_samples the
 * output's elements, which equal window_samples. */
static int check_conf(const lmn_model *m, char *err, size_t err_len)
{
    static const char *const NAMES[3] = {"mixture", "voiceprint", "visual"};
    static const int RANKS[3] = {3, 2, 3};
    json_reader j;
    conf_fields cf;
    int which, d;
    memset(&cf, 0, sizeof cf);
    cf.window_samples = cf.mic_channels = cf.output_samples = -1;
    j.p = m->config;
    j.end = m->config + strlen(m->config);
    if (!json_conf(&j, &cf) || (size_t)(j.end - m->config) != m->config_len || !cf.have_inputs ||
        cf.window_samples < 0 || cf.mic_channels < 0 || cf.output_samples < 0) {
        lmn_error(err, err_len, "packed model: the CONF section is not a JSON object with inputs, window_samples, "
                  "mic_channels and output_samples (FORMAT.md); the file is corrupt");
        return 0;
    }
    for (which = 0; which < 3; which++) {
        int rank = m->input_value[which] >= 0 ? m->input_rank[which] : 0, same = cf.input_rank[which] == rank;
        for (d = 0; same && d < rank; d++)
            same = cf.input_dims[which][d] == m->input_dims[which][d];
        if (!same) {
            lmn_error(err, err_len, "packed model: CONF's inputs and the value table disagree on %s (rank %d, "
                      "%lld elements in the value table); the file is corrupt", NAMES[which], rank,
                      (long long)(rank ? m->input_elements[which] : 0));
            return 0;
        }
        if (rank != 0 && (rank != RANKS[which] || m->input_dims[which][0] != 1 ||
                          (which == 1 && m->input_dims[1][1] != 512) ||
                          (which == 2 && m->input_dims[2][2] != 256))) {
            lmn_error(err, err_len, "packed model: input %s has an unexpected shape; expected mixture (1, C, S), "
                      "voiceprint (1, 512), visual (1, V, 256)", NAMES[which]);
            return 0;
        }
    }
    if (cf.mic_channels != m->input_dims[0][1] || cf.window_samples != m->input_dims[0][2] ||
        cf.output_samples != m->values[m->output_value].size || cf.output_samples != cf.window_samples) {
        lmn_error(err, err_len, "packed model: CONF's mic_channels, window_samples or output_samples disagree with "
                  "the value table (mixture (1, %lld, %lld), output %lld samples); the file is corrupt",
                  (long long)m->input_dims[0][1], (long long)m->input_dims[0][2],
                  (long long)m->values[m->output_value].size);
        return 0;
    }
    if (cf.window_samples > LMN_MAX_WINDOW_SAMPLES ||
        m->arena_elements > (int64_t)LMN_ARENA_PER_WINDOW_SAMPLE * cf.window_samples) {
        lmn_error(err, err_len, "packed model: a window of %lld samples with an arena of %lld elements; expected at "
                  "most %d samples and %d arena elements per sample (FORMAT.md, Memory)", (long long)cf.window_samples,
                  (long long)m->arena_elements, LMN_MAX_WINDOW_SAMPLES, LMN_ARENA_PER_WINDOW_SAMPLE);
        return 0;
    }
    return 1;
}

static const char *section(const unsigned char *data, size_t size, int n_sections, const char *tag, size_t *len)
{
    int i;
    for (i = 0; i < n_sections; i++) {
        const unsigned char *entry = data + 24 + 12 * i;
        uint32_t off = u32_at(entry + 4), n = u32_at(entry + 8);
        if (memcmp(entry, tag, 4) == 0) {
            if (off < 24 + 12u * (uint32_t)n_sections || off > size || n > size - off)
                return NULL;
            *len = n;
            return (const char *)data + off;
        }
    }
    return NULL;
}

int lmn_load(const unsigned char *data, size_t size, lmn_model **model, char *err, size_t err_len)
{
    lmn_model *m;
    reader r;
    size_t len;
    const char *p;
    uint32_t version, total, crc;
    int n_sections, i;
    int64_t count;
    uint64_t kernel_budget, kernel_bytes;
    checker c;
    *model = NULL;
    if (size < 24 || memcmp(data, "LIMUSEPK", 8) != 0) {
        lmn_error(err, err_len, "packed model: not a LiMuSE packed model (bad magic); expected a <name>.packed.bin "
                  "written by python -m limuse_export.native.pack");
        return 1;
    }
    version = u32_at(data + 8);
    total = u32_at(data + 12);
    crc = u32_at(data + 16);
    if (version != LMN_FORMAT_VERSION) {
        lmn_error(err, err_len, "packed model: format version %u; this engine reads version %d (re-pack the "
                  "model with the matching limuse_export)", version, LMN_FORMAT_VERSION);
        return 1;
    }
    if (total != size) {
        lmn_error(err, err_len, "packed model: %zu bytes, the header says %u; the file is truncated or has trailing "
                  "bytes", size, total);
        return 1;
    }
    if (lmn_crc32(data + 20, size - 20) != crc) {
        lmn_error(err, err_len, "packed model: checksum mismatch (CRC-32); the file is corrupt");
        return 1;
    }
    n_sections = (int)u32_at(data + 20);
    if (n_sections < 3 || n_sections > 64 || 24 + 12 * (size_t)n_sections > size) {
        lmn_error(err, err_len, "packed model: bad section table");
        return 1;
    }
    m = (lmn_model *)calloc(1, sizeof(lmn_model));
    if (m == NULL) {
        lmn_error(err, err_len, "packed model: out of memory");
        return 1;
    }
    c.m = m;
    c.err = err;
    c.err_len = err_len;
    c.index = -1;
    p = section(data, size, n_sections, "CONF", &len);
    if (p == NULL)
        goto bad_sections;
    m->config = (char *)malloc(len + 1);
    if (m->config == NULL)
        goto oom;
    memcpy(m->config, p, len);
    m->config[len] = '\0';
    m->config_len = len;

    p = section(data, size, n_sections, "VALS", &len);
    if (p == NULL)
        goto bad_sections;
    r.p = (const unsigned char *)p;
    r.end = r.p + len;
    r.failed = 0;
    count = read_in(&r, 1, (int64_t)(len / 3 + 1));
    m->arena_elements = read_in(&r, 1, MAX_ARENA_ELEMENTS);
    if (r.failed)
        goto bad_values;
    m->n_values = (int)count;
    m->values = (lmn_value *)calloc((size_t)count, sizeof(lmn_value));
    if (m->values == NULL)
        goto oom;
    for (i = 0; i < m->n_values; i++) {
        lmn_value *v = &m->values[i];
        v->kind = (int)read_in(&r, 0, 1);
        v->size = read_in(&r, 1, MAX_VALUE_ELEMENTS);
        v->offset = read_in(&r, 0, MAX_ARENA_ELEMENTS);
        if (r.failed || v->offset > m->arena_elements - v->size)
            goto bad_values;
    }
    /* the IO table: which input (0 mixture, 1 voiceprint, 2 visual), value id, rank, dims; then the output */
    for (i = 0; i < 3; i++)
        m->input_value[i] = -1;
    count = read_in(&r, 1, 3);
    for (i = 0; i < count && !r.failed; i++) {
        int which = (int)read_in(&r, 0, 2), rank, d;
        int64_t id = read_in(&r, 0, m->n_values - 1), dims[MAX_RANK];
        rank = (int)read_in(&r, 1, MAX_RANK);
        for (d = 0; d < rank; d++)
            dims[d] = read_in(&r, 1, MAX_VALUE_ELEMENTS);
        if (r.failed || m->input_value[which] != -1 || m->values[id].kind != KIND_FLOAT ||
            product(dims, rank) != m->values[id].size)
            goto bad_values;
        m->input_value[which] = (int)id;
        m->input_elements[which] = (long)m->values[id].size;
        m->input_rank[which] = rank;
        memcpy(m->input_dims[which], dims, (size_t)rank * sizeof(int64_t));
    }
    m->output_value = (int)read_in(&r, 0, m->n_values - 1);
    if (r.failed || m->input_value[0] < 0 || m->values[m->output_value].kind != KIND_FLOAT || r.p != r.end)
        goto bad_values;
    if (!check_conf(m, err, err_len))
        goto fail;

    p = section(data, size, n_sections, "PROG", &len);
    if (p == NULL)
        goto bad_sections;
    r.p = (const unsigned char *)p;
    r.end = r.p + len;
    r.failed = 0;
    count = read_in(&r, 1, (int64_t)len);
    if (r.failed)
        goto bad_program;
    /* memory in proportion to the file: the kernel table may take LMN_KERNEL_BYTES_PER_PROG_BYTE per byte of
     * PROG, records and their lookup tables together (a real model's records average over 100 bytes) */
    kernel_budget = (uint64_t)len * LMN_KERNEL_BYTES_PER_PROG_BYTE;
    kernel_bytes = (uint64_t)count * sizeof(lmn_op);
    if (kernel_bytes > kernel_budget) {
        lmn_error(err, err_len, "packed model: %lld kernel records in %zu bytes of program; a model's records "
                  "average at least %zu bytes (FORMAT.md, Memory): the file is corrupt",
                  (long long)count, len, sizeof(lmn_op) / LMN_KERNEL_BYTES_PER_PROG_BYTE + 1);
        goto fail;
    }
    m->n_ops = (int)count;
    m->ops = (lmn_op *)calloc((size_t)count, sizeof(lmn_op));
    if (m->ops == NULL)
        goto oom;
    for (i = 0; i < m->n_ops; i++) {
        reader rec;
        int64_t bytes;
        /* version 1 files have the unfused kernels only */
        m->ops[i].opcode = (int)read_in(&r, 1, version == 1 ? OP_CONV_TRANSPOSE : OP_COUNT - 1);
        m->ops[i].stage = (int)read_in(&r, 0, LMN_MAX_STAGES - 1);
        bytes = read_in(&r, 0, (int64_t)(r.end - r.p));
        if (r.failed)
            goto bad_program;
        rec.p = r.p;
        rec.end = r.p + bytes;
        rec.failed = 0;
        r.p += bytes;
        c.index = i;
        if (has_tables(m->ops[i].opcode)) {
            unsigned char *block;
            kernel_bytes += LMN_TABLES_BYTES;
            if (kernel_bytes > kernel_budget) {
                fail_record(&c, "more lookup tables than the program's size allows (FORMAT.md, Memory)");
                goto fail;
            }
            block = (unsigned char *)calloc(1, LMN_TABLES_BYTES);
            if (block == NULL)
                goto oom;
            m->ops[i].table = (float *)block;
            m->ops[i].table2 = (float *)(block + 1024);
            m->ops[i].codes1 = (int32_t *)(block + 2048);
            m->ops[i].codes2 = (int32_t *)(block + 3072);
        }
        if (!read_op(&c, &rec, &m->ops[i]))
            goto fail;
        if (rec.p != rec.end) {
            fail_record(&c, "record longer than its fields");
            goto fail;
        }
        if (m->ops[i].opcode == OP_PRELU_TABLE)
            lmn_prelu_values(m->ops[i].f[3], (int)m->ops[i].f[4], m->ops[i].floats0[0], m->ops[i].table);
        if (m->ops[i].work_bytes > m->work_per_thread)
            m->work_per_thread = m->ops[i].work_bytes;
    }
    if (r.p != r.end)
        goto bad_program;
    if (lmn_set_isa(m, getenv("LIMUSE_NATIVE_ISA"), err, err_len) != 0)
        goto fail;
    *model = m;
    return 0;
bad_sections:
    lmn_error(err, err_len, "packed model: a section (CONF, VALS, PROG) is missing or out of bounds");
    goto fail;
bad_values:
    lmn_error(err, err_len, "packed model: the value table is inconsistent; the file is corrupt");
    goto fail;
bad_program:
    lmn_error(err, err_len, "packed model: the kernel table is inconsistent; the file is corrupt");
    goto fail;
oom:
    lmn_error(err, err_len, "packed model: out of memory");
fail:
    lmn_free(m);
    return 1;
}

int lmn_load_file(const char *path, lmn_model **model, char *err, size_t err_len)
{
    FILE *file = fopen(path, "rb");
    unsigned char *data;
    long size;
    int rc;
    *model = NULL;
    if (file == NULL) {
        lmn_error(err, err_len, "packed model: cannot open '%s'; expected a <name>.packed.bin file", path);
        return 1;
    }
    if (fseek(file, 0, SEEK_END) != 0 || (size = ftell(file)) < 0 || fseek(file, 0, SEEK_SET) != 0) {
        fclose(file);
        lmn_error(err, err_len, "packed model: cannot read '%s'", path);
        return 1;
    }
    data = (unsigned char *)malloc((size_t)size + 1);
    if (data == NULL || fread(data, 1, (size_t)size, file) != (size_t)size) {
        free(data);
        fclose(file);
        lmn_error(err, err_len, "packed model: cannot read '%s'", path);
        return 1;
    }
    fclose(file);
    rc = lmn_load(data, (size_t)size, model, err, err_len);
    free(data);
    return rc;
}

void lmn_free(lmn_model *m)
{
    int i, j;
    if (m == NULL)
        return;
    for (i = 0; m->ops != NULL && i < m->n_ops; i++) {
        free(m->ops[i].weights);
        free(m->ops[i].ints0);
        free(m->ops[i].ints1);
        free(m->ops[i].floats0);
        free(m->ops[i].floats1);
        free(m->ops[i].weights2);
        free(m->ops[i].weights3);
        free(m->ops[i].ints2);
        free(m->ops[i].ints3);
        free(m->ops[i].weights4);
        for (j = 0; j < 4; j++) {
            free(m->ops[i].pairs[j].w);
            free(m->ops[i].pairs[j].at);
            free(m->ops[i].pairs[j].start);
        }
        for (j = 0; j < 4; j++)
            free(m->ops[i].norm[j]);
        free(m->ops[i].table); /* the block of all four tables */
    }
    free(m->ops);
    free(m->values);
    free(m->config);
    free(m->arena);
    free(m->work);
    free(m);
}
