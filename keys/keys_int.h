/* SPDX-License-Identifier: MIT */
/*
 * Internals shared by the files of keys/: locked memory and the raw KDFs. Nothing outside keys/
 * includes this header.
 */
#ifndef IMGCRYPTFS_KEYS_INT_H
#define IMGCRYPTFS_KEYS_INT_H

#include "keys/keys.h"

/* Memory that is mlock'ed (best effort) and excluded from core dumps. Zeroed. Thread-safe. */
void *keys_secure_alloc(size_t len);
/* Wipes then releases; accepts NULL. `len` is the length given to keys_secure_alloc. */
void keys_secure_free(void *p, size_t len);

struct keys_secret {
    size_t len;
    int keyfile; /* 1: raw 32-byte key file, 0: passphrase */
    uint8_t bytes[KEYS_MAX_PASSPHRASE];
};

struct keys_key {
    enum keys_key_kind kind;
    size_t len;      /* 32 or 64 */
    uint64_t serial; /* unique per handle for the life of the process: keys the per-thread
                        cipher cache, so a new key at a freed key's address is never confused */
    uint8_t bytes[64];
};

/* Make a key handle from raw bytes (copied). */
int keys_key_from_bytes(const uint8_t *bytes, enum keys_key_kind kind, struct keys_key **out);
int keys_hkdf(const uint8_t *ikm, size_t ikm_len, const void *salt, size_t salt_len,
              const char *info, uint8_t *out, size_t out_len);
int keys_scrypt(const uint8_t *pass, size_t pass_len, const uint8_t *salt, size_t salt_len,
                unsigned log_n, unsigned r, unsigned p, uint8_t *out, size_t out_len);

/* Little-endian helpers for the on-disk formats. */
static inline void keys_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void keys_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void keys_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t keys_get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t keys_get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}
static inline uint64_t keys_get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

#endif
