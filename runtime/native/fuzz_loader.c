/* Fuzz target for the packed-model loader and one run of what it accepts (libFuzzer, or a replay driver
 * for a saved corpus).
 *
 *   clang -std=c99 -g -O1 -fsanitize=fuzzer,address,undefined -ffp-contract=off \
 *       fuzz_loader.c model.c kernels.c kernels_portable.c kernels_avx2.c engine.c -lm -o fuzz_loader && ./fuzz_loader fuzz_corpus/
 *   gcc -std=c99 -g -O1 -fsanitize=address,undefined -DLMN_FUZZ_REPLAY ... -o replay && ./replay FILES...
 *
 * A mutated file almost never has a valid checksum, so the harness also loads a copy whose size field and
 * CRC-32 are rewritten to match: the mutations then reach the CONF, section, value and kernel parsers.
 * A model that loads runs once on zero inputs, with arrays of exactly the sizes the engine reports (a
 * loader check that lets an inconsistent kernel through shows up there as a sanitizer finding), and
 * once with a mixture array one float short, which the run must refuse without reading it. The corpus
 * holds a tiny real model (tiny_model.packed.bin), so mutations start from files that load.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limuse_native.h"
#include "model.h"

/* Runs only models whose activation memory stays small: the fuzzer's memory limit is for the loader. */
#define FUZZ_MAX_SCRATCH ((size_t)64 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void one_line(const char *err)
{
    if (err[0] == '\0' || strchr(err, '\n') != NULL)
        abort(); /* every refusal is one line */
}

static void run_once(lmn_model *model)
{
    lmn_buffers buffers;
    char err[LMN_ERR_LEN];
    float *arrays[3] = {NULL, NULL, NULL};
    int i, ok = 1;
    memset(&buffers, 0, sizeof buffers);
    if (lmn_scratch_bytes(model) > FUZZ_MAX_SCRATCH || (size_t)lmn_output_samples(model) > FUZZ_MAX_SCRATCH / 4)
        return;
    for (i = 0; i < 3; i++) {
        long n = lmn_input_elements(model, i);
        if (n > 0) {
            /* exactly n floats: reading past them is a heap overflow under AddressSanitizer */
            arrays[i] = (float *)calloc((size_t)n, sizeof(float));
            ok = ok && arrays[i] != NULL;
            buffers.inputs[i] = arrays[i];
            buffers.input_elements[i] = (size_t)n;
        }
    }
    buffers.out_elements = (size_t)lmn_output_samples(model);
    buffers.out = (float *)malloc(buffers.out_elements * sizeof(float));
    if (ok && buffers.out != NULL) {
        err[0] = '\0';
        if (lmn_run(model, &buffers, 1, err, sizeof err) != 0)
            one_line(err);
        buffers.input_elements[0]--; /* one float short: refused before any copy */
        if (lmn_run(model, &buffers, 1, err, sizeof err) == 0)
            abort();
        one_line(err);
    }
    free(buffers.out);
    for (i = 0; i < 3; i++)
        free(arrays[i]);
}

static void load_once(const uint8_t *data, size_t size)
{
    lmn_model *model = NULL;
    char err[LMN_ERR_LEN];
    err[0] = '\0';
    if (lmn_load(data, size, &model, err, sizeof err) == 0) {
        run_once(model);
        lmn_free(model);
    } else {
        one_line(err);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy;
    uint32_t crc;
    load_once(data, size);
    if (size < 24 || size > (1u << 24))
        return 0;
    copy = (uint8_t *)malloc(size);
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    copy[12] = (uint8_t)size;
    copy[13] = (uint8_t)(size >> 8);
    copy[14] = (uint8_t)(size >> 16);
    copy[15] = (uint8_t)(size >> 24);
    crc = lmn_crc32(copy + 20, size - 20);
    copy[16] = (uint8_t)crc;
    copy[17] = (uint8_t)(crc >> 8);
    copy[18] = (uint8_t)(crc >> 16);
    copy[19] = (uint8_t)(crc >> 24);
    load_once(copy, size);
    free(copy);
    return 0;
}

#ifdef LMN_FUZZ_REPLAY
int main(int argc, char **argv)
{
    int i;
    for (i = 1; i < argc; i++) {
        FILE *file = fopen(argv[i], "rb");
        uint8_t *data;
        long size;
        if (file == NULL) {
            fprintf(stderr, "replay: cannot open %s\n", argv[i]);
            return 2;
        }
        fseek(file, 0, SEEK_END);
        size = ftell(file);
        fseek(file, 0, SEEK_SET);
        data = (uint8_t *)malloc((size_t)size + 1);
        if (data == NULL || fread(data, 1, (size_t)size, file) != (size_t)size) {
            fprintf(stderr, "replay: cannot read %s\n", argv[i]);
            return 2;
        }
        fclose(file);
        LLVMFuzzerTestOneInput(data, (size_t)size);
        free(data);
    }
    printf("replayed %d inputs\n", argc - 1);
    return 0;
}
#endif
