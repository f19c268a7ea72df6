// SPDX-License-Identifier: MIT
/*
 * Fuzz target: the keyring parser. Any input must be refused cleanly or, for a well-formed
 * keyring, unlocked only with the right key file. Inputs asking for an scrypt cost above 2^12
 * are only parsed, not unlocked, to keep each run fast. When the input's last byte is odd the
 * harness drops it and rewrites the trailing SHA-256, so mutations get past the checksum and
 * reach the header checks and the AEAD, as a deliberate attacker's would.
 */
#include <stdio.h>
#include <sys/stat.h>

#include "keys/keys.h"
#include "tests/fuzz/fuzz_common.h"

static struct keys_secret *fuzz_secret(void)
{
    static struct keys_secret *secret;
    if (secret)
        return secret;
    uint8_t key[KEYS_KEYFILE_BYTES];
    char path[64];
    memset(key, 0x42, sizeof(key)); /* the key file the seed keyrings were made with */
    int fd = fuzz_temp_file(key, sizeof(key), path);
    fchmod(fd, 0600);
    close(fd);
    struct keys_source src = {KEYS_SRC_KEYFILE, path};
    if (keys_secret_read(&src, NULL, 0, &secret, NULL, 0) != 0)
        abort();
    unlink(path);
    return secret;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64], why[512];
    struct keys_ring_info info;
    struct keys_ring *ring = NULL;
    struct keys_secret *secret = fuzz_secret();
    uint8_t *copy = malloc(size + 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    if (size > 33 && (data[size - 1] & 1)) {
        size--;
        (void)keys_sha256(copy, size - 32, copy + size - 32);
    }
    int fd = fuzz_temp_file(copy, size, path);
    free(copy);
    fchmod(fd, 0600);
    close(fd);
    if (keys_ring_info(path, &info, why, sizeof(why)) == 0 &&
        (info.kdf == KEYS_KDF_KEYFILE || info.log_n <= 12) &&
        keys_ring_open(path, secret, &ring, why, sizeof(why)) == 0) {
        struct keys_key *k = NULL;
        if (keys_ring_subkey(ring, "content", KEYS_KEY_GCM, &k) != 0)
            abort();
        keys_key_free(k);
        for (uint32_t i = 0; i < keys_ring_model_count(ring); i++) {
            struct keys_model_info mi;
            const uint8_t *w = NULL;
            if (keys_ring_model(ring, i, &mi, &w) != 0 || (mi.bytes && !w))
                abort();
        }
        keys_ring_close(ring);
    }
    unlink(path);
    return 0;
}
