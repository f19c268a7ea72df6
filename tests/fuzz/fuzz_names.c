// SPDX-License-Identifier: MIT
/*
 * Fuzz target: backing entry names as readdir meets them. Base64url decoding must accept only
 * canonical encodings, and a name must decrypt to a valid file name or be refused.
 */
#include <errno.h>
#include <limits.h>

#include "fs/fs_int.h"
#include "tests/fuzz/fuzz_common.h"

int keys_key_from_bytes(const uint8_t *bytes, enum keys_key_kind kind, struct keys_key **out);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct fs_ctx c;
    uint8_t raw[64], dirid[KEYS_ID_BYTES] = {0}, dec[600];
    char enc[800], out[NAME_MAX + 2], again[800];
    if (!c.name_key) {
        memset(raw, 0x11, sizeof(raw));
        if (keys_key_from_bytes(raw, KEYS_KEY_SIV, &c.name_key) != 0)
            abort();
    }
    if (size >= sizeof(enc))
        return 0;
    memcpy(enc, data, size);
    enc[size] = '\0';
    ssize_t n = fs_b64_decode(enc, strlen(enc), dec, sizeof(dec));
    if (n >= 0) {
        /* Canonical: encoding the decoded bytes gives the input back. */
        fs_b64_encode(dec, (size_t)n, again);
        if (strcmp(again, enc) != 0)
            abort();
    }
    if (fs_name_decrypt(&c, dirid, enc, out, sizeof(out)) == 0) {
        if (strchr(out, '/') || strlen(out) == 0 || strlen(out) > NAME_MAX)
            abort();
    }
    return 0;
}
