// SPDX-License-Identifier: MIT
/*
 * Fuzz target: the block file reader. Any backing file must read back as authenticated bytes
 * or fail with -EBADMSG (never a crash, never unauthenticated bytes), and a write on top of it
 * must either fail cleanly or leave a file that reads back what was written.
 */
#include <errno.h>

#include "codec/store/blockfile.h"
#include "keys/keys.h"
#include "tests/fuzz/fuzz_common.h"

int keys_key_from_bytes(const uint8_t *bytes, enum keys_key_kind kind, struct keys_key **out);

static const struct keys_key *fuzz_key(void)
{
    static struct keys_key *key;
    uint8_t raw[32];
    memset(raw, 0x24, sizeof(raw)); /* the content key the seed files were made with */
    if (!key && keys_key_from_bytes(raw, KEYS_KEY_GCM, &key) != 0)
        abort();
    return key;
}

/* Holes on top of whatever the file holds: a write far past the end, a punched range; each
 * must fail cleanly or read back as zeros where it says. */
static void holes(struct codec_bf *bf, uint64_t after, uint8_t a, uint8_t b)
{
    static const char end[] = "end";
    uint8_t buf[2 * CODEC_BF_BLOCK];
    uint64_t far = after + (uint64_t)(a + 1) * 3 * CODEC_BF_BLOCK;
    ssize_t w = codec_bf_write(bf, end, sizeof(end), far, NULL);
    if (w != (ssize_t)sizeof(end)) {
        if (w != -EBADMSG)
            abort();
        return;
    }
    if (codec_bf_read(bf, buf, CODEC_BF_BLOCK, far - CODEC_BF_BLOCK, NULL) == CODEC_BF_BLOCK)
        for (size_t i = 0; i < CODEC_BF_BLOCK; i++)
            if (buf[i] != 0)
                abort();
    uint64_t off = (uint64_t)b * 211, len = sizeof(buf);
    int rc = codec_bf_punch(bf, off, len, NULL);
    if (rc == 0 && codec_bf_read(bf, buf, len, off, NULL) == (ssize_t)len) {
        for (size_t i = 0; i < len; i++)
            if (buf[i] != 0)
                abort();
    } else if (rc != 0 && rc != -EBADMSG) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    struct codec_bf *bf = NULL;
    uint8_t buf[3 * CODEC_BF_BLOCK];
    int fd = fuzz_temp_file(data, size, path);
    if (codec_bf_open(fd, fuzz_key(), (int)(size & 1), &bf) == 0) {
        uint64_t plain = 0;
        int rc = codec_bf_size(bf, &plain); /* a size no block layout gives is -EBADMSG */
        if (rc != 0 && rc != -EBADMSG)
            abort();
        for (uint64_t off = 0; off < plain; off += sizeof(buf)) {
            ssize_t n = codec_bf_read(bf, buf, sizeof(buf), off, NULL);
            if (n != -EBADMSG && (n <= 0 || (size_t)n > sizeof(buf)))
                abort();
        }
        static const char msg[] = "written by the fuzzer";
        uint64_t at = size ? data[0] * 97u : 0;
        ssize_t w = codec_bf_write(bf, msg, sizeof(msg), at, NULL);
        if (w == (ssize_t)sizeof(msg)) {
            if (codec_bf_read(bf, buf, sizeof(msg), at, NULL) != (ssize_t)sizeof(msg) ||
                memcmp(buf, msg, sizeof(msg)) != 0)
                abort();
            if (size > 2)
                holes(bf, at + sizeof(msg), data[1], data[2]);
        } else if (w != -EBADMSG) {
            abort();
        }
        codec_bf_close(bf);
    }
    const char *seed_path = getenv("IMGC_FUZZ_WRITE_SEED");
    if (seed_path && size == 0) {
        /* Seed maker: a fresh three-block file written through the API; with
         * IMGC_FUZZ_SEED_HOLES, one of nine blocks with two holes (version 2). */
        int out = open(seed_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
        struct codec_bf *sb = NULL;
        memset(buf, 'a', sizeof(buf));
        if (out < 0 || codec_bf_open(out, fuzz_key(), 1, &sb) != 0 ||
            codec_bf_write(sb, buf, 2 * CODEC_BF_BLOCK + 100, 0, NULL) < 0)
            abort();
        if (getenv("IMGC_FUZZ_SEED_HOLES") &&
            (codec_bf_write(sb, buf, 100, 8 * CODEC_BF_BLOCK, NULL) < 0 ||
             codec_bf_punch(sb, CODEC_BF_BLOCK, CODEC_BF_BLOCK, NULL) != 0))
            abort();
        codec_bf_close(sb);
        close(out);
    }
    close(fd);
    unlink(path);
    return 0;
}
