/* limuse_native: the LiMuSE integer engine for packed models (<name>.packed.bin, see FORMAT.md).
 *
 * C99, libc and libm only; OpenMP is used when the compiler enables it (-fopenmp) and ignored otherwise.
 * Every function that can fail returns 0 on success and writes a one-line message into err otherwise.
 */
#ifndef LIMUSE_NATIVE_H
#define LIMUSE_NATIVE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LMN_FORMAT_VERSION 3
#define LMN_ERR_LEN 256
#define LMN_MAX_STAGES 32

typedef struct lmn_model lmn_model;

/* Parses and checks a packed model held in memory (the bytes are copied where needed; the caller may
 * free them afterwards). The file is untrusted: every count, offset and size is checked first. */
int lmn_load(const unsigned char *data, size_t size, lmn_model **model, char *err, size_t err_len);
int lmn_load_file(const char *path, lmn_model **model, char *err, size_t err_len);
void lmn_free(lmn_model *model);

/* The CONF section: a JSON object (preset, recipe, window_samples, mic_channels, inputs, ...). */
const char *lmn_config_json(const lmn_model *model);

/* Elements of input `which` (0 mixture (1, C, S), 1 voiceprint (1, 512), 2 visual (1, V, 256)), or 0 if
 * the model has no such input; the output's sample count. */
long lmn_input_elements(const lmn_model *model, int which);
long lmn_output_samples(const lmn_model *model);

/* Bytes of activation memory one run needs: the arena, plus the fused kernels' per-thread scratch for the
 * threads of the last run (one before any run). Allocated before the kernels run, never inside them. */
size_t lmn_scratch_bytes(const lmn_model *model);

/* The caller's arrays of one run, each with the number of floats it holds: inputs[which] (which as in
 * lmn_input_elements; NULL and 0 where the model has no such input) and out. */
typedef struct lmn_buffers {
    const float *inputs[3];
    size_t input_elements[3];
    float *out;
    size_t out_elements;
} lmn_buffers;

/* Runs one window: each input must hold exactly lmn_input_elements() floats and out at least
 * lmn_output_samples(); anything else is refused before a byte is copied (a model never reads or writes
 * past the caller's arrays). threads <= 0 keeps the OpenMP default. */
int lmn_run(lmn_model *model, const lmn_buffers *buffers, int threads, char *err, size_t err_len);

/* SIMD paths. One build runs on any x86-64 (or aarch64) and picks its path at run time: "portable" (the
 * plain C loops), the target's baseline ("sse2" on x86-64, "neon" on aarch64) and "avx2" where the CPU has
 * AVX2 and FMA. Every path gives the same bytes. lmn_load takes the best one, or the one named by the
 * environment variable LIMUSE_NATIVE_ISA ("best" or empty: the best); naming a path this build or CPU
 * lacks makes lmn_load fail with a one-line error. lmn_isa_list: the paths available here, worst first,
 * space-separated; lmn_isa: the path a model runs; lmn_set_isa: switch it (NULL or "best": the best). */
const char *lmn_isa_list(void);
const char *lmn_isa(const lmn_model *model);
int lmn_set_isa(lmn_model *model, const char *isa, char *err, size_t err_len);

/* Seconds spent in each kernel type during the runs so far (index = opcode, FORMAT.md), and the names. */
int lmn_kernel_count(void);
const char *lmn_kernel_name(int opcode);
double lmn_kernel_seconds(const lmn_model *model, int opcode);
/* Seconds per stage (the top-level modules listed in the CONF section's "stages"). */
double lmn_stage_seconds(const lmn_model *model, int stage);
void lmn_reset_times(lmn_model *model);

/* For checking a port kernel by kernel: observer(context, k) is called after kernel k of every run, and
 * lmn_value_data gives value id's storage in the arena (int32 codes or float32; NULL before the first run). */
typedef void (*lmn_observer)(void *context, int kernel);
void lmn_set_observer(lmn_model *model, lmn_observer observer, void *context);
const void *lmn_value_data(const lmn_model *model, int id, int *is_float, long *elements);

#ifdef __cplusplus
}
#endif
#endif
