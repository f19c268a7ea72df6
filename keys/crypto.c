// SPDX-License-Identifier: MIT
/*
 * Key handles, KDFs (HKDF-SHA256, scrypt) and AEAD (AES-256-GCM, AES-256-SIV), all from OpenSSL.
 *
 * The block file seals one 4 KiB block per call, so per-call overhead matters: each thread keeps
 * one encrypting and one decrypting GCM context with the key of the handle it last used (by
 * serial number) and only sets a new nonce when the key is unchanged. A context never leaves
 * its thread, so no lock is needed. The price: the AES key schedules in those contexts live as
 * long as the thread, in OpenSSL's ordinary heap, which keys/ cannot lock (keys.h says why);
 * OpenSSL overwrites them when a context is re-keyed and cleanses them when it is freed.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include "keys/keys_int.h"

#define HKDF_PREFIX "imgcryptfs v1 "

/* Process-wide, immutable after first use: fetched algorithm objects. */
static pthread_once_t algs_once = PTHREAD_ONCE_INIT;
static EVP_CIPHER *alg_gcm, *alg_siv;
static EVP_KDF *alg_hkdf;
static pthread_key_t tls_key;
/* The only mutable process-wide state in keys/: a counter that gives each key handle a serial
 * number, so the per-thread cache can tell handles apart even when an address is reused. */
static _Atomic uint64_t next_serial = 1;

struct tls_ctx {
    EVP_CIPHER_CTX *enc, *dec;
    uint64_t enc_serial, dec_serial;
    /* SIV keeps per-message state in its context: each message starts from a copy of a
     * context keyed once (per direction), which is cheaper than keying afresh. */
    EVP_CIPHER_CTX *siv, *siv_tpl[2];
    uint64_t siv_serial[2];
};

static void tls_free(void *p)
{
    struct tls_ctx *t = p;
    if (!t)
        return;
    EVP_CIPHER_CTX_free(t->enc); /* frees and cleanses the key schedule */
    EVP_CIPHER_CTX_free(t->dec);
    EVP_CIPHER_CTX_free(t->siv);
    EVP_CIPHER_CTX_free(t->siv_tpl[0]);
    EVP_CIPHER_CTX_free(t->siv_tpl[1]);
    OPENSSL_free(t);
}

static void algs_init(void)
{
    alg_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    alg_siv = EVP_CIPHER_fetch(NULL, "AES-256-SIV", NULL);
    alg_hkdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    (void)pthread_key_create(&tls_key, tls_free);
}

static struct tls_ctx *tls_get(void)
{
    if (pthread_once(&algs_once, algs_init) != 0 || !alg_gcm)
        return NULL;
    struct tls_ctx *t = pthread_getspecific(tls_key);
    if (t)
        return t;
    t = OPENSSL_zalloc(sizeof(*t));
    if (!t)
        return NULL;
    t->enc = EVP_CIPHER_CTX_new();
    t->dec = EVP_CIPHER_CTX_new();
    t->siv = EVP_CIPHER_CTX_new();
    t->siv_tpl[0] = EVP_CIPHER_CTX_new();
    t->siv_tpl[1] = EVP_CIPHER_CTX_new();
    if (!t->enc || !t->dec || !t->siv || !t->siv_tpl[0] || !t->siv_tpl[1] ||
        pthread_setspecific(tls_key, t) != 0) {
        tls_free(t);
        return NULL;
    }
    return t;
}

int keys_random(void *buf, size_t len)
{
    while (len > 0) {
        int n = len > (1u << 30) ? (1 << 30) : (int)len;
        if (RAND_bytes(buf, n) != 1)
            return -EIO;
        buf = (uint8_t *)buf + n;
        len -= (size_t)n;
    }
    return 0;
}

int keys_sha256(const void *data, size_t len, uint8_t out[32])
{
    unsigned int n = 0;
    return EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) == 1 && n == 32 ? 0 : -EIO;
}

static size_t kind_len(enum keys_key_kind kind)
{
    return kind == KEYS_KEY_SIV ? 64 : 32;
}

int keys_key_from_bytes(const uint8_t *bytes, enum keys_key_kind kind, struct keys_key **out)
{
    struct keys_key *k = keys_secure_alloc(sizeof(*k));
    if (!k)
        return -ENOMEM;
    k->kind = kind;
    k->len = kind_len(kind);
    k->serial = atomic_fetch_add(&next_serial, 1);
    memcpy(k->bytes, bytes, k->len);
    *out = k;
    return 0;
}

void keys_key_free(struct keys_key *key)
{
    keys_secure_free(key, sizeof(*key));
}

int keys_hkdf(const uint8_t *ikm, size_t ikm_len, const void *salt, size_t salt_len,
              const char *info, uint8_t *out, size_t out_len)
{
    int rc = -EIO;
    EVP_KDF_CTX *ctx = NULL;
    if (pthread_once(&algs_once, algs_init) != 0 || !alg_hkdf || !(ctx = EVP_KDF_CTX_new(alg_hkdf)))
        goto out;
    OSSL_PARAM params[5], *p = params;
    *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikm_len);
    if (salt_len)
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len);
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, strlen(info));
    *p = OSSL_PARAM_construct_end();
    if (EVP_KDF_derive(ctx, out, out_len, params) == 1)
        rc = 0;
out:
    EVP_KDF_CTX_free(ctx);
    return rc;
}

int keys_scrypt(const uint8_t *pass, size_t pass_len, const uint8_t *salt, size_t salt_len,
                unsigned log_n, unsigned r, unsigned p, uint8_t *out, size_t out_len)
{
    int rc = -EIO;
    /* A second guard behind the keyring parser: never more than the cap, whoever calls. */
    if (log_n > 30 || r == 0 || (uint64_t)r > (KEYS_SCRYPT_MAX_MEM >> log_n) / 128)
        return -EFBIG;
    uint64_t n = (uint64_t)1 << log_n;
    /* scrypt needs 128 * r * N bytes for V plus 128 * r * p for B; allow exactly that. */
    uint64_t maxmem = 128ull * r * (n + p) + (1u << 20);
    uint32_t r32 = r, p32 = p;
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "SCRYPT", NULL);
    EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    if (!ctx)
        goto out;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, (void *)pass, pass_len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len),
        OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r32),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p32),
        OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_KDF_derive(ctx, out, out_len, params) == 1)
        rc = 0;
    else
        rc = -ENOMEM; /* the only failure with valid parameters is the allocation */
out:
    EVP_KDF_CTX_free(ctx);
    EVP_KDF_free(kdf);
    return rc;
}

int keys_key_derive(const struct keys_key *parent, const char *label, const void *ctx,
                    size_t ctx_len, enum keys_key_kind kind, struct keys_key **out)
{
    uint8_t raw[64];
    char info[128];
    if (!parent || !label || strlen(label) + sizeof(HKDF_PREFIX) > sizeof(info))
        return -EINVAL;
    strcpy(info, HKDF_PREFIX);
    strcat(info, label);
    int rc = keys_hkdf(parent->bytes, parent->len, ctx, ctx_len, info, raw, kind_len(kind));
    if (rc == 0)
        rc = keys_key_from_bytes(raw, kind, out);
    OPENSSL_cleanse(raw, sizeof(raw));
    return rc;
}

/* Bring the thread's context to `key` with `nonce`; re-keys only when the handle changed. */
static int gcm_setup(EVP_CIPHER_CTX *c, uint64_t *serial, const struct keys_key *key,
                     const uint8_t *nonce, int enc)
{
    if (*serial != key->serial) {
        *serial = 0;
        if (EVP_CipherInit_ex2(c, alg_gcm, key->bytes, nonce, enc, NULL) != 1)
            return -EIO;
        *serial = key->serial;
        return 0;
    }
    return EVP_CipherInit_ex2(c, NULL, NULL, nonce, enc, NULL) == 1 ? 0 : -EIO;
}

int keys_gcm_seal(const struct keys_key *key, const uint8_t nonce[KEYS_NONCE_BYTES],
                  const void *aad, size_t aad_len, const void *in, size_t len, void *out,
                  uint8_t tag[KEYS_TAG_BYTES])
{
    struct tls_ctx *t = tls_get();
    int n = 0;
    if (!t)
        return -ENOMEM;
    if (!key || key->kind != KEYS_KEY_GCM || len > INT32_MAX || aad_len > INT32_MAX)
        return -EINVAL;
    if (gcm_setup(t->enc, &t->enc_serial, key, nonce, 1) != 0)
        return -EIO;
    if (aad_len && EVP_EncryptUpdate(t->enc, NULL, &n, aad, (int)aad_len) != 1)
        return -EIO;
    if (len && EVP_EncryptUpdate(t->enc, out, &n, in, (int)len) != 1)
        return -EIO;
    if (EVP_EncryptFinal_ex(t->enc, (uint8_t *)out + len, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(t->enc, EVP_CTRL_AEAD_GET_TAG, KEYS_TAG_BYTES, tag) != 1)
        return -EIO;
    return 0;
}

int keys_gcm_open(const struct keys_key *key, const uint8_t nonce[KEYS_NONCE_BYTES],
                  const void *aad, size_t aad_len, const void *in, size_t len, void *out,
                  const uint8_t tag[KEYS_TAG_BYTES])
{
    struct tls_ctx *t = tls_get();
    int n = 0;
    if (!t)
        return -ENOMEM;
    if (!key || key->kind != KEYS_KEY_GCM || len > INT32_MAX || aad_len > INT32_MAX)
        return -EINVAL;
    if (gcm_setup(t->dec, &t->dec_serial, key, nonce, 0) != 0)
        return -EIO;
    if ((aad_len && EVP_DecryptUpdate(t->dec, NULL, &n, aad, (int)aad_len) != 1) ||
        (len && EVP_DecryptUpdate(t->dec, out, &n, in, (int)len) != 1) ||
        EVP_CIPHER_CTX_ctrl(t->dec, EVP_CTRL_AEAD_SET_TAG, KEYS_TAG_BYTES, (void *)tag) != 1)
        goto fail;
    /* OpenSSL compares the tag in constant time inside Final. */
    if (EVP_DecryptFinal_ex(t->dec, (uint8_t *)out + len, &n) != 1)
        goto fail;
    return 0;
fail:
    OPENSSL_cleanse(out, len);
    return -EBADMSG;
}

/* The thread's SIV context, fresh for one message under `key` (enc: 1 seal, 0 open). */
static EVP_CIPHER_CTX *siv_start(struct tls_ctx *t, const struct keys_key *key, int enc)
{
    if (t->siv_serial[enc] != key->serial) {
        t->siv_serial[enc] = 0;
        if (EVP_CipherInit_ex2(t->siv_tpl[enc], alg_siv, key->bytes, NULL, enc, NULL) != 1)
            return NULL;
        t->siv_serial[enc] = key->serial;
    }
    return EVP_CIPHER_CTX_copy(t->siv, t->siv_tpl[enc]) == 1 ? t->siv : NULL;
}

ssize_t keys_siv_seal(const struct keys_key *key, const void *aad, size_t aad_len, const void *in,
                      size_t len, uint8_t *out, size_t out_cap)
{
    struct tls_ctx *t = tls_get();
    int n = 0;
    if (!t || !alg_siv)
        return -EIO;
    if (!key || key->kind != KEYS_KEY_SIV || len > INT32_MAX || aad_len > INT32_MAX)
        return -EINVAL;
    if (out_cap < len + KEYS_TAG_BYTES)
        return -ENAMETOOLONG;
    EVP_CIPHER_CTX *c = siv_start(t, key, 1);
    if (!c || EVP_EncryptUpdate(c, NULL, &n, aad, (int)aad_len) != 1 ||
        EVP_EncryptUpdate(c, out + KEYS_TAG_BYTES, &n, in, (int)len) != 1 ||
        EVP_EncryptFinal_ex(c, out + KEYS_TAG_BYTES + len, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, KEYS_TAG_BYTES, out) != 1)
        return -EIO;
    return (ssize_t)(len + KEYS_TAG_BYTES);
}

ssize_t keys_siv_open(const struct keys_key *key, const void *aad, size_t aad_len,
                      const uint8_t *in, size_t len, uint8_t *out, size_t out_cap)
{
    struct tls_ctx *t = tls_get();
    int n = 0;
    if (!t || !alg_siv)
        return -EIO;
    if (!key || key->kind != KEYS_KEY_SIV || len > INT32_MAX || aad_len > INT32_MAX)
        return -EINVAL;
    if (len < KEYS_TAG_BYTES)
        return -EBADMSG;
    size_t pt_len = len - KEYS_TAG_BYTES;
    if (out_cap < pt_len)
        return -ENAMETOOLONG;
    EVP_CIPHER_CTX *c = siv_start(t, key, 0);
    if (!c || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, KEYS_TAG_BYTES, (void *)in) != 1 ||
        EVP_DecryptUpdate(c, NULL, &n, aad, (int)aad_len) != 1 ||
        EVP_DecryptUpdate(c, out, &n, in + KEYS_TAG_BYTES, (int)pt_len) != 1 ||
        EVP_DecryptFinal_ex(c, out + pt_len, &n) != 1) {
        OPENSSL_cleanse(out, pt_len);
        return -EBADMSG;
    }
    return (ssize_t)pt_len;
}
