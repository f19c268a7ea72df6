// SPDX-License-Identifier: MIT
/*
 * Leftovers of an interrupted mount. Files and folders are made under temporary names
 * (FS_TMP_PREFIX + the mount's tag) and renamed into place; a daemon killed in between leaves
 * the temporary entry, never visible in the mount but in the way of an rmdir and on disk.
 * At mount a thread walks the backing folder once and removes every temporary entry whose tag
 * is not this mount's. A walk of a large store costs a listing of every folder, so it runs
 * beside the mount rather than before it, and gives up when the mount goes (the next mount
 * walks again); rmdir removes such entries on its own as well.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "fs/fs_int.h"

/* Deeper folders are left to rmdir's own clean-up: the walk holds one descriptor per level. */
#define SWEEP_MAX_DEPTH 512

static unsigned long sweep_dir(struct fs_ctx *c, int dir_fd, unsigned depth)
{
    unsigned long removed = 0;
    int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return 0;
    }
    struct dirent *e;
    while (!c->stopping && (e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (fs_tmp_foreign(c, e->d_name)) {
            if (fs_tmp_remove(dirfd(d), e->d_name) == 0)
                removed++;
            continue;
        }
        if (fs_is_reserved(e->d_name) &&
            strncmp(e->d_name, FS_LONG_PREFIX, sizeof(FS_LONG_PREFIX) - 1) != 0)
            continue;
        if (e->d_type != DT_DIR && e->d_type != DT_UNKNOWN)
            continue;
        if (depth >= SWEEP_MAX_DEPTH)
            continue;
        int sub = openat(dirfd(d), e->d_name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0)
            continue;
        removed += sweep_dir(c, sub, depth + 1);
        close(sub);
    }
    closedir(d);
    return removed;
}

unsigned long fs_sweep(struct fs_ctx *c)
{
    return sweep_dir(c, c->root.fd, 0);
}
