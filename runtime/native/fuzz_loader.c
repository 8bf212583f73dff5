/* Fuzz target for the packed-model loader (libFuzzer, or a replay driver for a saved corpus).
 *
 *   clang -std=c99 -g -O1 -fsanitize=fuzzer,address,undefined -ffp-contract=off \
 *       fuzz_loader.c model.c kernels.c engine.c -lm -o fuzz_loader && ./fuzz_loader fuzz_corpus/
 *   gcc -std=c99 -g -O1 -fsanitize=address,undefined -DLMN_FUZZ_REPLAY ... -o replay && ./replay FILES...
 *
 * A mutated file almost never has a valid checksum, so the harness also loads a copy whose size field and
 * CRC-32 are rewritten to match: the mutations then reach the section, value and kernel parsers.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limuse_native.h"
#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void load_once(const uint8_t *data, size_t size)
{
    lmn_model *model = NULL;
    char err[LMN_ERR_LEN];
    if (lmn_load(data, size, &model, err, sizeof err) == 0)
        lmn_free(model);
    else if (err[0] == '\0' || strchr(err, '\n') != NULL)
        abort(); /* every refusal is one line */
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
