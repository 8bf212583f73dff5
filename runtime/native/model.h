/* The in-memory form of a packed model, shared by the loader (model.c) and the kernels (kernels.c). */
#ifndef LIMUSE_NATIVE_MODEL_H
#define LIMUSE_NATIVE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "limuse_native.h"

enum {
    OP_QUANT_FLOAT = 1, OP_REQUANT, OP_LINEAR, OP_CONV, OP_INORM, OP_ADD_INT, OP_BINARY_FLOAT, OP_PRELU_TABLE,
    OP_TABLE, OP_COPY, OP_ZERO, OP_REDUCE_MEAN, OP_RESIZE, OP_CONV_TRANSPOSE, OP_TAC, OP_PRELU_QUANT, OP_GCBLOCK, OP_COUNT
};

/* The fused kernels' stack tiles: rows per tile, and the most channels a tiled layer may have. */
#define LMN_TILE 64
#define LMN_TILE_CHANNELS 512

/* x86-64 (SSE2 always, AVX2 where the CPU has it: chosen at run time) and aarch64 (NEON): the fused kernels' dot
 * products take two input channels per step (x86: pmaddwd, int16 x int16 pairs summed into int32 lanes;
 * aarch64: the pair split into its channels on load, each multiplied by its weight lane and accumulated),
 * from a channel-pair layout of the codes and a list of each output channel's nonzero weight pairs built at load.
 * The sums are the same integers as the portable loops' (every one below 2^31 by the loader's bound, so
 * their order does not matter). The loader builds that layout wherever LMN_PAIRS is defined; the portable
 * path ignores it. -DLMN_NO_SIMD builds the portable loops alone. */
#if (defined(__SSE2__) || defined(__aarch64__)) && !defined(LMN_NO_SIMD)
#define LMN_PAIRS 1
#endif

enum { KIND_INT = 0, KIND_FLOAT = 1 };

/* table, table2, codes1, codes2 of a kernel that has lookup tables: 4 x 256 entries of 4 bytes */
#define LMN_TABLES_BYTES ((size_t)4 * 256 * 4)
/* The most memory the kernel table may take per byte of the PROG section: sizeof(lmn_op) per record plus
 * the lookup tables of the records that have them (FORMAT.md, "Memory"). */
#define LMN_KERNEL_BYTES_PER_PROG_BYTE 64
/* The longest window a packed model may run (600 s at 16 kHz, limuse-run's longest --window), and the most
 * arena elements per sample of it (LiMuSE models need 26, tiny, to 105, limuse_k32): the activation memory
 * a file may ask for is bounded by the window it declares (FORMAT.md, "Memory"). */
#define LMN_MAX_WINDOW_SAMPLES 9600000
#define LMN_ARENA_PER_WINDOW_SAMPLE 1024

/* One layer's weights w[ci * cout + co] as channel pairs: output channel co's nonzero pairs are entries
 * start[co] .. start[co + 1] - 1, each the pair index p (channels 2p, 2p + 1; a missing odd one is 0) and
 * the two weights as the int16 lanes of one int32 (w[2p] in the low half). */
typedef struct {
    int32_t *w;
    int32_t *at;
    int32_t *start;
} lmn_pairs;

#define MAX_RANK 8
#define MAX_FIELDS 48

typedef struct {
    int kind;
    int64_t size;   /* elements */
    int64_t offset; /* elements from the start of the arena */
} lmn_value;

/* A strided view: element i (multi-index) sits at off + sum i_d * stride_d. */
typedef struct {
    int rank;
    int64_t dims[MAX_RANK];
    int64_t off;
    int64_t strides[MAX_RANK];
} lmn_view;

typedef struct {
    int opcode;
    int stage; /* index into the CONF section's "stages" (for per-stage times) */
    int64_t f[MAX_FIELDS]; /* the record's integer fields, in FORMAT.md order */
    int n_fields;
    lmn_view dst, src, a, b; /* decoded views (COPY, ADD_INT, BINARY_FLOAT) */
    int8_t *weights;         /* LINEAR, CONV */
    int32_t *ints0, *ints1;  /* bias (LINEAR, CONV); gamma, beta (INORM); lo, hi (RESIZE) */
    float *floats0, *floats1; /* slope (PRELU_TABLE), table (TABLE), w_lo/w_hi (RESIZE), w/bias (CONV_T) */
    /* The 256-entry lookup tables, one heap block of LMN_TABLES_BYTES that only the opcodes which use them
     * get (lmn_op stays small: the loader's memory bound, FORMAT.md). table: PRELU_TABLE, PRELU_QUANT,
     * TAC (PReLU of L1's codes), GCBLOCK; table2, codes1, codes2 as below. */
    float *table;
    int narrow;              /* LINEAR: |acc| < 2^15 proven at load (int16 accumulators) */
    /* GCBLOCK: weights/ints0/floats0/codes1 expand + first PReLU, weights2 (taps, Ch)/ints2/floats1/codes2
     * the depthwise conv + second PReLU, weights3/ints3 the projection.
     * TAC: the second and third layers, the PReLU of L2's codes, and the code -> code tables of the
     * concatenation's Quant (of L1's and of L2's codes); PRELU_QUANT: codes1 */
    int8_t *weights2, *weights3, *weights4; /* weights4: GCBLOCK's conv weights as in the file */
    int32_t *ints2, *ints3;
    float *table2;
    int32_t *codes1, *codes2;
    int32_t *norm[4]; /* GCBLOCK: gamma and beta of its two norms */
    size_t work_bytes; /* TAC, GCBLOCK: per-thread scratch */
    lmn_pairs pairs[4]; /* LMN_PAIRS: TAC L1, L3's first half, L2, L3's second half; GCBLOCK expand, projection */
} lmn_op;

struct lmn_model {
    char *config;
    size_t config_len; /* bytes of CONF (a NUL inside it is refused) */
    int n_values;
    lmn_value *values;
    int64_t arena_elements;
    void *arena;
    int n_ops;
    lmn_op *ops;
    int input_value[3];
    long input_elements[3];
    int input_rank[3];                 /* the IO table's shape of each input (CONF's "inputs" must equal it) */
    int64_t input_dims[3][MAX_RANK];
    int output_value;
    double seconds[OP_COUNT];
    double stage_seconds[LMN_MAX_STAGES];
    lmn_observer observer;
    void *observer_context;
    /* per-thread scratch of the fused kernels: work_per_thread bytes (the largest op's need) x work_threads */
    unsigned char *work;
    size_t work_per_thread;
    int work_threads;
    int (*execute)(lmn_model *m, const lmn_op *op); /* the kernels of the path this model runs, and its name (lmn_isa) */
    const char *isa;
};

void lmn_error(char *err, size_t err_len, const char *fmt, ...);
/* One kernel in the path this model runs (engine.c picks it at load: lmn_set_isa); 0, or 1 for an unknown
 * opcode. Each path is a copy of kernels.c compiled with other SIMD (kernels.c's head): lmn_execute_base
 * (the baseline of the target: SSE2, NEON, or the portable loops), lmn_execute_portable, and
 * lmn_kernels_avx2 (NULL where this build has no AVX2 copy). */
typedef int (*lmn_execute_fn)(lmn_model *m, const lmn_op *op);
int lmn_execute_base(lmn_model *m, const lmn_op *op);
int lmn_execute_portable(lmn_model *m, const lmn_op *op);
extern const lmn_execute_fn lmn_kernels_avx2;

/* A TAC kernel's per-thread work area for one block of rows (groups x frames): byte offsets and the size. */
typedef struct {
    size_t msum, part, mean_codes, b_codes, pairs, sums, bytes;
} lmn_tac_work;
lmn_tac_work lmn_tac_layout(int64_t rows, int64_t frames, int64_t ch, int64_t cout);
uint32_t lmn_crc32(const unsigned char *data, size_t size);
/* The PReLU of each 8-bit code (two's complement if is_signed) at scale 2^e: v < 0 ? v * slope : v. */
void lmn_prelu_values(int64_t e, int is_signed, float slope, float table[256]);
/* Quant of float32 values (the quant_float kernel): clamp(round_half_even(x * 2^-e), lo, hi). */
/* lmn_pairs of the first cin rows of w (cin x cout, row-major); 0, or 1 out of memory */
int lmn_build_pairs(lmn_pairs *p, const int8_t *w, int64_t cin, int64_t cout);
void lmn_quant_values(const float *x, int n, int64_t e, int64_t lo, int64_t hi, int32_t *out);

#endif
