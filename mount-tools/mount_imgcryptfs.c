// SPDX-License-Identifier: MIT
/*
 * mount.imgcryptfs: the helper mount(8) runs for `mount -t imgcryptfs` and fstab lines of type
 * imgcryptfs. mount(8) calls it as `mount.imgcryptfs BACKING MOUNTPOINT [-sfnv] [-o OPTS]`; it
 * runs the imgcryptfs daemon beside it (or from PATH) with the options, which the daemon
 * filters (fstab-only options such as nofail and x-systemd.* are dropped there).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mount-tools/tool.h"

int main(int argc, char **argv)
{
    const char *pos[2];
    const char *opts = NULL;
    int npos = 0;
    char self[PATH_MAX], daemon[PATH_MAX];
    tool_set_prog("mount.imgcryptfs");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-o") == 0 && i + 1 < argc)
            opts = argv[++i];
        else if (strncmp(argv[i], "-o", 2) == 0)
            opts = argv[i] + 2;
        else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            printf("usage: mount.imgcryptfs BACKING MOUNTPOINT [-o OPTIONS]\nSee "
                   "mount.imgcryptfs(8).\n");
            return TOOL_EXIT_OK;
        } else if (argv[i][0] == '-')
            continue; /* -s (sloppy), -f (fake), -n (no mtab), -v (verbose) from mount(8) */
        else if (npos < 2)
            pos[npos++] = argv[i];
        else {
            tool_error("too many arguments");
            return TOOL_EXIT_USAGE;
        }
    }
    if (npos != 2) {
        tool_error("usage: mount.imgcryptfs BACKING MOUNTPOINT [-o OPTIONS]");
        return TOOL_EXIT_USAGE;
    }
    /* Prefer the daemon beside this helper, then ../bin, then where it is installed, then PATH. */
    const char *prog = "imgcryptfs";
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0';
            /* next to this program, or in ../bin from it (the build tree) */
            if ((snprintf(daemon, sizeof(daemon), "%s/imgcryptfs", self) < (int)sizeof(daemon) &&
                 access(daemon, X_OK) == 0) ||
                (snprintf(daemon, sizeof(daemon), "%s/../bin/imgcryptfs", self) <
                     (int)sizeof(daemon) &&
                 access(daemon, X_OK) == 0))
                prog = daemon;
#ifdef IMGCRYPTFS_BINDIR
            else if (access(IMGCRYPTFS_BINDIR "/imgcryptfs", X_OK) == 0)
                prog = IMGCRYPTFS_BINDIR "/imgcryptfs";
#endif
        }
    }
    char *args[6];
    int k = 0;
    args[k++] = (char *)"imgcryptfs";
    if (opts && *opts) {
        args[k++] = (char *)"-o";
        args[k++] = (char *)opts;
    }
    args[k++] = (char *)pos[0];
    args[k++] = (char *)pos[1];
    args[k] = NULL;
    if (strchr(prog, '/'))
        execv(prog, args);
    else
        execvp(prog, args);
    tool_error("cannot run imgcryptfs: %s", strerror(errno));
    return TOOL_EXIT_IO;
}
