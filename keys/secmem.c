// SPDX-License-Identifier: MIT
/*
 * Locked memory for secrets. Each allocation gets its own pages so that munlock of one secret
 * never unlocks another; the cost is a page per key handle, which is small next to the risk of
 * a key reaching swap or a core file. mlock is best effort (RLIMIT_MEMLOCK may refuse it);
 * MADV_DONTDUMP and the wipe on free always apply.
 */
#include <openssl/crypto.h>
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

void *keys_secure_alloc(size_t len)
{
    size_t n = round_pages(len ? len : 1);
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    (void)mlock(p, n);
    (void)madvise(p, n, MADV_DONTDUMP);
    return p;
}

void keys_secure_free(void *p, size_t len)
{
    if (!p)
        return;
    size_t n = round_pages(len ? len : 1);
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
