/* Running a loaded model: inputs into the arena, the kernels in order, the waveform out. */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static const char *const KERNEL_NAMES[OP_COUNT] = {
    "", "quant_float", "requant", "linear", "conv", "integer_norm", "add_int", "binary_float", "prelu_table",
    "table", "copy", "zero", "reduce_mean", "resize", "conv_transpose", "tac", "prelu_quant", "gcblock"};

/* The SIMD paths (kernels.c's head), worst first: the portable loops, the target's baseline, and AVX2 where
 * this build has it and the CPU (and its OS) supports AVX2 and FMA. */
#if defined(LMN_PAIRS) && defined(__AVX2__)
#define BASE_NAME "avx2" /* the whole build compiled for AVX2 (e.g. -march=native): not a distributed build */
#elif defined(LMN_PAIRS) && defined(__SSE2__)
#define BASE_NAME "sse2"
#elif defined(LMN_PAIRS) && defined(__aarch64__)
#define BASE_NAME "neon"
#else
#define BASE_NAME "portable"
#endif

static int cpu_has_avx2(void)
{
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

typedef struct {
    const char *name;
    lmn_execute_fn execute;
} isa_path;

/* the paths this build has and this CPU runs, worst first; returns how many */
static int isa_paths(isa_path paths[3])
{
    int n = 0;
    if (strcmp(BASE_NAME, "portable") != 0) {
        paths[n].name = "portable";
        paths[n++].execute = lmn_execute_portable;
    }
    paths[n].name = BASE_NAME;
    paths[n++].execute = lmn_execute_base;
    if (lmn_kernels_avx2 != NULL && strcmp(BASE_NAME, "avx2") != 0 && cpu_has_avx2()) {
        paths[n].name = "avx2";
        paths[n++].execute = lmn_kernels_avx2;
    }
    return n;
}

const char *lmn_isa_list(void)
{
    static char list[64];
    isa_path paths[3];
    int i, n = isa_paths(paths);
    size_t at = 0;
    for (i = 0; i < n; i++)
        at += (size_t)snprintf(list + at, sizeof list - at, "%s%s", i ? " " : "", paths[i].name);
    return list;
}

int lmn_set_isa(lmn_model *m, const char *isa, char *err, size_t err_len)
{
    isa_path paths[3];
    int i, n = isa_paths(paths);
    if (isa == NULL || isa[0] == '\0' || strcmp(isa, "best") == 0) {
        m->execute = paths[n - 1].execute;
        m->isa = paths[n - 1].name;
        return 0;
    }
    for (i = 0; i < n; i++)
        if (strcmp(isa, paths[i].name) == 0) {
            m->execute = paths[i].execute;
            m->isa = paths[i].name;
            return 0;
        }
    if (strcmp(isa, "avx2") == 0 && lmn_kernels_avx2 != NULL)
        lmn_error(err, err_len, "native engine: SIMD path avx2 asked for (LIMUSE_NATIVE_ISA or lmn_set_isa), but this "
                  "CPU lacks AVX2/FMA; paths here: %s", lmn_isa_list());
    else
        lmn_error(err, err_len, "native engine: SIMD path '%.32s' asked for (LIMUSE_NATIVE_ISA or lmn_set_isa) is not "
                  "in this build for this CPU; paths here: %s", isa, lmn_isa_list());
    return 1;
}

const char *lmn_isa(const lmn_model *m) { return m->isa; }

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const char *lmn_config_json(const lmn_model *m) { return m->config; }

long lmn_input_elements(const lmn_model *m, int which)
{
    return which >= 0 && which < 3 && m->input_value[which] >= 0 ? m->input_elements[which] : 0;
}

long lmn_output_samples(const lmn_model *m) { return (long)m->values[m->output_value].size; }

size_t lmn_scratch_bytes(const lmn_model *m)
{
    /* the arena, and the fused kernels' per-thread scratch for the threads of the last run (at least one) */
    return (size_t)m->arena_elements * 4 + m->work_per_thread * (size_t)(m->work_threads > 1 ? m->work_threads : 1);
}

int lmn_kernel_count(void) { return OP_COUNT; }

const char *lmn_kernel_name(int opcode) { return opcode > 0 && opcode < OP_COUNT ? KERNEL_NAMES[opcode] : ""; }

double lmn_kernel_seconds(const lmn_model *m, int opcode)
{
    return opcode > 0 && opcode < OP_COUNT ? m->seconds[opcode] : 0.0;
}

double lmn_stage_seconds(const lmn_model *m, int stage)
{
    return stage >= 0 && stage < LMN_MAX_STAGES ? m->stage_seconds[stage] : 0.0;
}

void lmn_reset_times(lmn_model *m)
{
    memset(m->seconds, 0, sizeof m->seconds);
    memset(m->stage_seconds, 0, sizeof m->stage_seconds);
}

int lmn_run(lmn_model *m, const lmn_buffers *buffers, int threads, char *err, size_t err_len)
{
    static const char *const NAMES[3] = {"mixture", "voiceprint", "visual"};
    int i, workers = 1;
    if (buffers == NULL) {
        lmn_error(err, err_len, "native engine: no buffers given; expected the run's input and output arrays");
        return 1;
    }
    for (i = 0; i < 3; i++) {
        size_t want = m->input_value[i] >= 0 ? (size_t)m->input_elements[i] : 0;
        if (want == 0 && (buffers->inputs[i] != NULL || buffers->input_elements[i] != 0)) {
            lmn_error(err, err_len, "native engine: %s given; this model has no %s input", NAMES[i], NAMES[i]);
            return 1;
        }
        if (want > 0 && (buffers->inputs[i] == NULL || buffers->input_elements[i] != want)) {
            lmn_error(err, err_len, "native engine: %s of %zu floats; this model expects %zu", NAMES[i],
                      buffers->inputs[i] == NULL ? (size_t)0 : buffers->input_elements[i], want);
            return 1;
        }
    }
    if (buffers->out == NULL || buffers->out_elements < (size_t)lmn_output_samples(m)) {
        lmn_error(err, err_len, "native engine: output array of %zu floats; this model writes %ld",
                  buffers->out == NULL ? (size_t)0 : buffers->out_elements, lmn_output_samples(m));
        return 1;
    }
#ifdef _OPENMP
    if (threads > 0)
        omp_set_num_threads(threads);
    workers = omp_get_max_threads();
#else
    (void)threads;
#endif
    if (m->arena == NULL) {
        m->arena = calloc((size_t)m->arena_elements, 4);
        if (m->arena == NULL) {
            lmn_error(err, err_len, "native engine: cannot allocate %zu bytes of activation memory",
                      lmn_scratch_bytes(m));
            return 1;
        }
    }
    if (m->work_per_thread > 0 && m->work_threads < workers) { /* grown before the kernels, never inside */
        free(m->work);
        m->work_threads = 0;
        m->work = (unsigned char *)malloc(m->work_per_thread * (size_t)workers);
        if (m->work == NULL) {
            lmn_error(err, err_len, "native engine: cannot allocate %zu bytes of kernel scratch",
                      m->work_per_thread * (size_t)workers);
            return 1;
        }
        m->work_threads = workers;
    }
    for (i = 0; i < 3; i++) { /* sizes checked above: exactly the value's elements */
        int id = m->input_value[i];
        if (id >= 0)
            memcpy((float *)m->arena + m->values[id].offset, buffers->inputs[i], (size_t)m->values[id].size * 4);
    }
    for (i = 0; i < m->n_ops; i++) {
        double started = now(), spent;
        if (m->execute(m, &m->ops[i]) != 0) {
            lmn_error(err, err_len, "native engine: kernel %d has an unknown opcode", i);
            return 1;
        }
        spent = now() - started;
        m->seconds[m->ops[i].opcode] += spent;
        m->stage_seconds[m->ops[i].stage] += spent;
        if (m->observer != NULL)
            m->observer(m->observer_context, i);
    }
    memcpy(buffers->out, (float *)m->arena + m->values[m->output_value].offset, (size_t)lmn_output_samples(m) * 4);
    return 0;
}

void lmn_set_observer(lmn_model *m, lmn_observer observer, void *context)
{
    m->observer = observer;
    m->observer_context = context;
}

const void *lmn_value_data(const lmn_model *m, int id, int *is_float, long *elements)
{
    if (m->arena == NULL || id < 0 || id >= m->n_values)
        return NULL;
    *is_float = m->values[id].kind == KIND_FLOAT;
    *elements = (long)m->values[id].size;
    return (const int32_t *)m->arena + m->values[id].offset;
}
