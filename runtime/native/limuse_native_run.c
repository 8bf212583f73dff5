/* limuse_native_run: a packed model on raw PCM files, for porters without Python.
 *
 *   limuse_native_run [-v] MODEL.packed.bin MIXTURE.f32 [VOICEPRINT.f32] [VISUAL.f32] OUT.f32
 *
 * -v names the SIMD path on stderr (the CPU's best, or $LIMUSE_NATIVE_ISA: limuse_native.h).
 *
 * Raw little-endian float32: the mixture as (channels, samples) channel after channel, exactly the
 * model's window (see its CONF section: window_samples, mic_channels); the voiceprint (512 values) and the
 * visual track (frames x 256) when the model has them; the output is window_samples float32 samples.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limuse_native.h"

static float *read_raw(const char *path, long count, const char *what)
{
    FILE *file = fopen(path, "rb");
    float *data;
    long size;
    if (file == NULL) {
        fprintf(stderr, "limuse_native_run: error: %s: cannot open '%s'\n", what, path);
        return NULL;
    }
    fseek(file, 0, SEEK_END);
    size = ftell(file);
    fseek(file, 0, SEEK_SET);
    if (size != count * 4) {
        fprintf(stderr, "limuse_native_run: error: %s: '%s' has %ld bytes; expected %ld float32 values (%ld bytes)\n",
                what, path, size, count, count * 4);
        fclose(file);
        return NULL;
    }
    data = (float *)malloc((size_t)count * 4);
    if (data == NULL || fread(data, 4, (size_t)count, file) != (size_t)count) {
        fprintf(stderr, "limuse_native_run: error: %s: cannot read '%s'\n", what, path);
        free(data);
        data = NULL;
    }
    fclose(file);
    return data;
}

int main(int argc, char **argv)
{
    static const char *const NAMES[3] = {"mixture", "voiceprint", "visual"};
    char err[LMN_ERR_LEN];
    lmn_model *model;
    float *inputs[3] = {NULL, NULL, NULL}, *out;
    lmn_buffers buffers;
    int i, arg = 2, needed = 0, rc = 1;
    FILE *file;
    int verbose = argc > 1 && strcmp(argv[1], "-v") == 0;
    if (verbose) {
        argv[1] = argv[0];
        argv++;
        argc--;
    }
    if (argc < 4) {
        fprintf(stderr, "usage: %s [-v] MODEL.packed.bin MIXTURE.f32 [VOICEPRINT.f32] [VISUAL.f32] OUT.f32\n", argv[0]);
        return 2;
    }
    if (lmn_load_file(argv[1], &model, err, sizeof err) != 0) {
        fprintf(stderr, "limuse_native_run: error: %s\n", err);
        return 2;
    }
    if (verbose)
        fprintf(stderr, "limuse_native_run: SIMD path %s (this CPU and build: %s)\n", lmn_isa(model), lmn_isa_list());
    for (i = 0; i < 3; i++)
        needed += lmn_input_elements(model, i) > 0;
    if (argc != 2 + needed + 1) {
        fprintf(stderr, "limuse_native_run: error: this model takes %d input file(s) (mixture%s%s) and OUT.f32\n",
                needed, lmn_input_elements(model, 1) ? ", voiceprint" : "", lmn_input_elements(model, 2) ? ", visual" : "");
        lmn_free(model);
        return 2;
    }
    for (i = 0; i < 3; i++) {
        if (lmn_input_elements(model, i) == 0)
            continue;
        inputs[i] = read_raw(argv[arg++], lmn_input_elements(model, i), NAMES[i]);
        if (inputs[i] == NULL)
            goto done;
    }
    out = (float *)malloc((size_t)lmn_output_samples(model) * 4);
    if (out == NULL)
        goto done;
    for (i = 0; i < 3; i++) {
        buffers.inputs[i] = inputs[i];
        buffers.input_elements[i] = inputs[i] != NULL ? (size_t)lmn_input_elements(model, i) : 0;
    }
    buffers.out = out;
    buffers.out_elements = (size_t)lmn_output_samples(model);
    if (lmn_run(model, &buffers, 0, err, sizeof err) != 0) {
        fprintf(stderr, "limuse_native_run: error: %s\n", err);
    } else {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.partial", argv[arg]);
        file = fopen(tmp, "wb");
        if (file != NULL && fwrite(out, 4, (size_t)lmn_output_samples(model), file) == (size_t)lmn_output_samples(model)
            && fclose(file) == 0 && rename(tmp, argv[arg]) == 0) {
            rc = 0;
        } else {
            fprintf(stderr, "limuse_native_run: error: cannot write '%s'\n", argv[arg]);
            remove(tmp);
        }
    }
    free(out);
done:
    for (i = 0; i < 3; i++)
        free(inputs[i]);
    lmn_free(model);
    return rc ? 2 : 0;
}
