// SPDX-License-Identifier: MIT
/*
 * Locked memory for secrets. Small objects (key handles: one per open file) come from slabs of
 * locked pages carved into fixed slots, since mapping and locking pages for each one would cost
 * more than deriving the key; a slot is wiped when freed and the slabs are never unlocked or
 * returned. Larger objects (passphrases, keyrings, model weights) get pages of their own, so
 * that munlock of one never unlocks another. mlock is best effort (RLIMIT_MEMLOCK may refuse
 * it): failing an unlock or a file open over it would lock users out of their data, so the
 * first failure is reported once through the caller's warning hook (keys/ prints nothing) and
 * MADV_DONTDUMP and the wipe on free still apply.
 */
#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "keys/keys_int.h"

static size_t round_pages(size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return (len + page - 1) / page * page;
}

#define SLOT_BYTES 128
#define SLAB_BYTES (64 * 1024)

/* The slab allocator's state: process-wide by nature, guarded by slab_lock. */
static pthread_mutex_t slab_lock = PTHREAD_MUTEX_INITIALIZER;
static void *slab_free; /* free slots, linked through their first word; guarded by slab_lock */

static void *page_alloc(size_t len);

/* The warning hook: set once before threads start (keys_set_memlock_warning), then only read. */
static void (*memlock_warn)(void *arg, int err, size_t len);
static void *memlock_warn_arg;
/* 0 until the first mlock failure, then its negative errno; the first failure warns. */
static _Atomic int memlock_err;

void keys_set_memlock_warning(void (*warn)(void *arg, int err, size_t len), void *arg)
{
    memlock_warn = warn;
    memlock_warn_arg = arg;
}

int keys_memlock_status(void)
{
    return atomic_load(&memlock_err);
}

static void lock_pages(void *p, size_t n)
{
    if (mlock(p, n) == 0)
        return;
    int expected = 0, err = -errno;
    if (atomic_compare_exchange_strong(&memlock_err, &expected, err) && memlock_warn)
        memlock_warn(memlock_warn_arg, err, n);
}

static void *slot_alloc(void)
{
    pthread_mutex_lock(&slab_lock);
    if (!slab_free) {
        uint8_t *slab = page_alloc(SLAB_BYTES);
        if (!slab) {
            pthread_mutex_unlock(&slab_lock);
            return NULL;
        }
        for (size_t off = 0; off + SLOT_BYTES <= SLAB_BYTES; off += SLOT_BYTES) {
            *(void **)(slab + off) = slab_free;
            slab_free = slab + off;
        }
    }
    void *p = slab_free;
    slab_free = *(void **)p;
    pthread_mutex_unlock(&slab_lock);
    OPENSSL_cleanse(p, sizeof(void *));
    return p;
}

static void slot_free(void *p)
{
    OPENSSL_cleanse(p, SLOT_BYTES);
    pthread_mutex_lock(&slab_lock);
    *(void **)p = slab_free;
    slab_free = p;
    pthread_mutex_unlock(&slab_lock);
}

void *keys_secure_alloc(size_t len)
{
    return len <= SLOT_BYTES ? slot_alloc() : page_alloc(len);
}

static void *page_alloc(size_t len)
{
    size_t n = round_pages(len ? len : 1);
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    lock_pages(p, n);
    (void)madvise(p, n, MADV_DONTDUMP);
    return p;
}

void keys_secure_free(void *p, size_t len)
{
    if (!p)
        return;
    if (len <= SLOT_BYTES) {
        slot_free(p);
        return;
    }
    size_t n = round_pages(len);
    OPENSSL_cleanse(p, n);
    (void)munlock(p, n);
    (void)munmap(p, n);
}

void keys_harden_process(void)
{
    struct rlimit no_core = {0, 0};
    (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    (void)setrlimit(RLIMIT_CORE, &no_core);
}
