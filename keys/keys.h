/* SPDX-License-Identifier: MIT */
/*
 * keys: the keyring, the secrets that unlock it, key derivation and the AEAD helpers.
 *
 * Every secret of imgcryptfs lives here. Other modules hold opaque key handles and call the seal
 * and open functions below; raw key bytes never leave this module. The trade-off: one extra
 * indirection per block, in exchange for a single place where keys are made, stored in locked
 * memory and wiped.
 *
 * Keyring file format (version 1). All integers little-endian.
 *
 *   offset  size  field
 *   0       8     magic "IMGCRKEY"
 *   8       2     version = 1
 *   10      1     KDF id: 1 = scrypt(passphrase), 2 = 32-byte key file
 *   11      1     scrypt log2(N), 10..20 (0 for a key file)
 *   12      1     scrypt r, 8 (0 for a key file)
 *   13      1     scrypt p, 1 (0 for a key file)
 *   14      2     reserved, 0
 *   16      32    salt (random; for a key file, the HKDF salt)
 *   48      16    filesystem id (random)
 *   64      8     creation time, seconds since the epoch
 *   72      4     model count M, 0..KEYS_MAX_MODELS
 *   76      4     body length B: bytes of sealed body, 72 + sum(model sizes)
 *   80      12    body nonce (random, fresh on every write of the file)
 *   92      4     reserved, 0
 *   96      M*32  model table, one entry per model:
 *                   16 model id, 4 kind (KEYS_MODEL_*), 4 reserved 0, 8 weight bytes
 *   H       B     body ciphertext, H = 96 + 32*M
 *   H+B     16    body GCM tag
 *   H+B+16  32    SHA-256 of every byte before it (a checksum for diagnostics, not security)
 *
 * The body is AES-256-GCM under the key-encryption key (KEK) with the 96-byte fixed header and
 * the model table (bytes 0..H-1) as associated data, so the public fields that `imgcrypt info`
 * shows are authenticated once the keyring is unlocked. Body plaintext:
 *
 *   0   32  master key
 *   32  16  filesystem id (must equal the header's)
 *   48  8   creation time (must equal the header's)
 *   56  4   model count (must equal M)
 *   60  12  reserved, 0
 *   72  ... model weights, in table order, each as many bytes as its table entry says
 *
 * KEK: scrypt(passphrase, salt, N, r, p) to 32 bytes; or, for a key file,
 * HKDF-SHA256(ikm = the 32 file bytes, salt, info = "imgcryptfs keyring kek v1").
 * The KDF runs before anything in the file is authenticated, so the reader accepts only the cost
 * parameters the writer writes (r = 8, p = 1) and at most KEYS_SCRYPT_MAX_MEM bytes of scrypt
 * memory (128 * r * N): a planted keyring cannot make an unlock take gigabytes or minutes.
 * Builds before this rule wrote log2(N) up to 22 (4 GiB); such a keyring is refused by name and
 * must be re-wrapped at cost 20 or less (imgcrypt passwd --kdf-cost) by the build that wrote it.
 * Only the keyring's own AEAD uses the KEK; the body nonce is random per write, and a KEK
 * changes with every new salt, so a (KEK, nonce) pair is never reused in practice.
 */
#ifndef IMGCRYPTFS_KEYS_H
#define IMGCRYPTFS_KEYS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define KEYS_MAGIC "IMGCRKEY"
#define KEYS_VERSION 1
#define KEYS_KDF_SCRYPT 1
#define KEYS_KDF_KEYFILE 2
#define KEYS_LOGN_MIN 10
#define KEYS_LOGN_MAX 20     /* 1 GiB with r = 8: the most KEYS_SCRYPT_MAX_MEM allows */
#define KEYS_LOGN_DEFAULT 17 /* 128 MiB with r = 8: about 0.4 s on the reference machine */
#define KEYS_SCRYPT_R 8
#define KEYS_SCRYPT_P 1
#define KEYS_SCRYPT_MAX_MEM (1ull << 30) /* 128 * r * N bytes, checked before the KDF runs */
#define KEYS_MAX_MODELS 64
#define KEYS_MAX_MODEL_BYTES (64u << 20)
#define KEYS_MAX_BODY_BYTES (256u << 20)
#define KEYS_MAX_PASSPHRASE 4096
#define KEYS_KEYFILE_BYTES 32
#define KEYS_ID_BYTES 16
#define KEYS_NONCE_BYTES 12
#define KEYS_TAG_BYTES 16
#define KEYS_FIXED_HEADER 96
#define KEYS_MODEL_ENTRY 32

/* Model kinds held in the keyring. */
enum keys_model_kind {
    KEYS_MODEL_AUTOENCODER = 1,
    KEYS_MODEL_CODER = 2,
};

/* ---- Secrets that unlock a keyring --------------------------------------------------------- */

enum keys_source_kind {
    KEYS_SRC_TTY,      /* prompt on /dev/tty without echo */
    KEYS_SRC_PASSFILE, /* first line of a file (owner-only permissions) */
    KEYS_SRC_EXTPASS,  /* first line printed by a command run through /bin/sh -c */
    KEYS_SRC_KEYFILE,  /* exactly 32 raw bytes (owner-only permissions) */
};

struct keys_source {
    enum keys_source_kind kind;
    const char *arg; /* file or command; NULL for KEYS_SRC_TTY */
};

/* A passphrase or key-file content in locked memory. */
struct keys_secret;

/*
 * Read a secret. For KEYS_SRC_TTY, `prompt` is shown; with `confirm` set the passphrase is
 * asked twice and must match. Returns 0, -EPERM for unsafe file permissions (see
 * keys_check_private), -EINVAL for an empty passphrase or a key file that is not 32 bytes,
 * -EKEYREJECTED when the confirmation differs, -ENOTTY without a terminal, -EIO when an
 * extpass command fails, or -errno; a one-line reason goes to `why` (if not NULL).
 * The caller owns *out and frees it with keys_secret_free.
 */
int keys_secret_read(const struct keys_source *src, const char *prompt, int confirm,
                     struct keys_secret **out, char *why, size_t whylen);
void keys_secret_free(struct keys_secret *s);
/* Whether the secret is a raw key file (KDF 2) rather than a passphrase (KDF 1). */
int keys_secret_is_keyfile(const struct keys_secret *s);

/*
 * Refuse a file holding secrets that others could read or change: it must be a regular file
 * owned by the caller's effective uid, with no group or other permission bits. `fd` is an open
 * descriptor of `path`. Returns 0 or -EPERM, and then writes into `why` (if not NULL) a one-line
 * message naming the file and the command that fixes it.
 */
int keys_check_private(int fd, const char *path, char *why, size_t whylen);

/* ---- The keyring --------------------------------------------------------------------------- */

/* An unlocked keyring: the master key in locked memory plus the model list. Opaque. */
struct keys_ring;

/* What `imgcrypt info` shows: the public header, readable without a secret. */
struct keys_model_info {
    uint8_t id[KEYS_ID_BYTES];
    uint32_t kind;
    uint64_t bytes;
};

struct keys_ring_info {
    unsigned version;
    unsigned kdf;   /* KEYS_KDF_* */
    unsigned log_n; /* scrypt only */
    unsigned r, p;  /* scrypt only */
    uint8_t fs_id[KEYS_ID_BYTES];
    uint64_t created; /* seconds since the epoch */
    uint32_t model_count;
    struct keys_model_info models[KEYS_MAX_MODELS];
    uint64_t file_bytes;
    int unsafe_perms; /* 1 when keys_ring_open would refuse the file's owner or mode */
};

/*
 * Create a new keyring at `path` with a fresh master key and filesystem id, sealed under
 * `secret` (scrypt at cost log_n for a passphrase). The file is written with mode 0400 through a
 * temporary file, fsync and a link that never replaces an existing file. Returns 0, -EEXIST if
 * `path` exists, -EINVAL for a cost outside KEYS_LOGN_MIN..MAX, or -errno.
 */
int keys_ring_create(const char *path, const struct keys_secret *secret, unsigned log_n);

/*
 * Read the public header of a keyring without unlocking it; the fields are authenticated only
 * when the keyring is unlocked. Unsafe permissions do not stop it (it reads nothing secret):
 * they set out->unsafe_perms and the message in why. Returns 0, -EBADMSG when the file is corrupt
 * or not a keyring (checksum, magic, version, limits), -EFBIG when it is larger than any keyring
 * can be, or -errno.
 */
int keys_ring_info(const char *path, struct keys_ring_info *out, char *why, size_t whylen);

/*
 * Open and unlock a keyring. Returns 0, -EPERM (unsafe permissions; message in why),
 * -EBADMSG (corrupt or foreign file), -EKEYREJECTED (wrong passphrase or key, or a keyring
 * modified by someone who also fixed its checksum), or -errno. The caller owns *out.
 * Makes the process non-dumpable: from here on it holds keys.
 */
int keys_ring_open(const char *path, const struct keys_secret *secret, struct keys_ring **out,
                   char *why, size_t whylen);
void keys_ring_close(struct keys_ring *ring);

/*
 * Write the same master key, filesystem id, creation time and models to `path`, sealed under
 * `secret` with a fresh salt and nonce (cost log_n for a passphrase), atomically: temporary
 * file in the same folder, fsync, rename over `path`, fsync of the folder. Returns 0 or -errno.
 */
int keys_ring_rewrap(const struct keys_ring *ring, const char *path,
                     const struct keys_secret *secret, unsigned log_n);

/* Public fields of an unlocked keyring. */
void keys_ring_fs_id(const struct keys_ring *ring, uint8_t out[KEYS_ID_BYTES]);

/*
 * The scrypt cost (log2 N) this keyring was unlocked with, or 0 when it was unlocked with a key
 * file. Unlike keys_ring_info, whose header read may no longer describe the file that was
 * opened, this is the cost that produced the KEK which authenticated the keyring: use it to
 * keep the cost when sealing the keyring again (keys_ring_rewrap).
 */
unsigned keys_ring_kdf_cost(const struct keys_ring *ring);

/*
 * Models held in the keyring. keys_ring_model gives model `index` (0..count-1): its table entry
 * and a pointer to its weights, valid until keys_ring_close. keys_ring_add_model appends a copy
 * in memory (persist with keys_ring_rewrap); it returns -EEXIST for a known id, -EFBIG past the
 * limits. Not thread-safe against each other: add models before sharing the ring.
 */
uint32_t keys_ring_model_count(const struct keys_ring *ring);
int keys_ring_model(const struct keys_ring *ring, uint32_t index, struct keys_model_info *info,
                    const uint8_t **weights);
int keys_ring_add_model(struct keys_ring *ring, uint32_t kind, const uint8_t id[KEYS_ID_BYTES],
                        const void *weights, size_t len);
/* Move the model `id` to the end of the list, as if it had been added last (the last added
 * model of a kind is the one that encodes). 0, or -ENOENT when the ring does not hold it. */
int keys_ring_raise_model(struct keys_ring *ring, const uint8_t id[KEYS_ID_BYTES]);

/* ---- Keys and AEAD ------------------------------------------------------------------------- */

/* A 256-bit (AEAD) or 512-bit (AES-SIV) key in locked memory. Opaque; safe to share between
 * threads for sealing and opening. */
struct keys_key;

enum keys_key_kind {
    KEYS_KEY_GCM, /* AES-256-GCM, 32 bytes */
    KEYS_KEY_SIV, /* AES-256-SIV, 64 bytes */
};

/*
 * Derive a subkey from the master key: HKDF-SHA256(master, salt = filesystem id,
 * info = "imgcryptfs v1 " || label). Distinct labels give independent keys (one per purpose:
 * "names", "content", "features", ...). The caller owns *out.
 */
int keys_ring_subkey(const struct keys_ring *ring, const char *label, enum keys_key_kind kind,
                     struct keys_key **out);

/*
 * Derive a child key: HKDF-SHA256(parent, salt = ctx, info = "imgcryptfs v1 " || label).
 * Per-file keys are keys_key_derive(content_key, "file", file_id, 16, ...).
 */
int keys_key_derive(const struct keys_key *parent, const char *label, const void *ctx,
                    size_t ctx_len, enum keys_key_kind kind, struct keys_key **out);
void keys_key_free(struct keys_key *key);

/* Fill buf with bytes from OpenSSL's CSPRNG. Returns 0 or -EIO. */
int keys_random(void *buf, size_t len);

/*
 * AES-256-GCM. Seal writes len bytes of ciphertext to `out` (may equal `in`) and a 16-byte tag.
 * Open checks the tag in constant time; on failure it wipes `out` and returns -EBADMSG.
 * The caller supplies the nonce and is responsible for its uniqueness under `key` (the block
 * file and container draw it from keys_random). Thread-safe.
 */
int keys_gcm_seal(const struct keys_key *key, const uint8_t nonce[KEYS_NONCE_BYTES],
                  const void *aad, size_t aad_len, const void *in, size_t len, void *out,
                  uint8_t tag[KEYS_TAG_BYTES]);
int keys_gcm_open(const struct keys_key *key, const uint8_t nonce[KEYS_NONCE_BYTES],
                  const void *aad, size_t aad_len, const void *in, size_t len, void *out,
                  const uint8_t tag[KEYS_TAG_BYTES]);

/*
 * AES-256-SIV (RFC 5297), deterministic: the same (key, aad, plaintext) always gives the same
 * output, which is what file names need. Output is 16-byte synthetic IV || ciphertext, len + 16
 * bytes; len must be at least 1. Seal returns the output length, open the plaintext length;
 * -ENAMETOOLONG when out_cap is too small, -EBADMSG when open fails authentication.
 */
ssize_t keys_siv_seal(const struct keys_key *key, const void *aad, size_t aad_len, const void *in,
                      size_t len, uint8_t *out, size_t out_cap);
ssize_t keys_siv_open(const struct keys_key *key, const void *aad, size_t aad_len,
                      const uint8_t *in, size_t len, uint8_t *out, size_t out_cap);

/* Plain SHA-256 (not secret), for checksums and hashed long names. */
int keys_sha256(const void *data, size_t len, uint8_t out[32]);

/* Keep this process from dumping core or being ptrace-attached by other users. */
void keys_harden_process(void);

/*
 * Secrets (key handles, passphrases, keyring bodies, model weights) sit in memory that keys/
 * mlocks. mlock can fail (RLIMIT_MEMLOCK without CAP_IPC_LOCK); the memory is still wiped on
 * free and kept out of core dumps, but may reach swap. keys/ prints nothing: register `warn`
 * here and it is called once per process, at the first failure, with the negative errno and the
 * length that stayed unlocked, from whichever thread allocated (possibly holding an internal
 * lock: `warn` must not call keys/). Register before the first secret is allocated, before
 * other threads start; NULL unregisters. keys_memlock_status returns 0 while every lock
 * succeeded, else the first failure's negative errno.
 *
 * Not locked, and why: the AES key schedules inside OpenSSL's cipher contexts (the per-thread
 * contexts in keys/crypto.c) and the transient KDF states. OpenSSL 3 providers allocate them with
 * OPENSSL_zalloc, not its secure heap (CRYPTO_secure_malloc_init would not cover them), and no
 * public call returns their address to lock; routing every OpenSSL allocation through locked
 * memory (CRYPTO_set_mem_functions) would lock far more than keys and must precede OpenSSL's
 * first allocation. OpenSSL cleanses them when the context is freed. On a machine where swap
 * may hold secrets, use encrypted swap or none.
 */
void keys_set_memlock_warning(void (*warn)(void *arg, int err, size_t len), void *arg);
int keys_memlock_status(void);

#endif
