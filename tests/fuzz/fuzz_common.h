/* SPDX-License-Identifier: MIT */
/* Shared by the fuzz targets: put the input in a private temporary file. */
#ifndef IMGCRYPTFS_FUZZ_COMMON_H
#define IMGCRYPTFS_FUZZ_COMMON_H

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Write data to a new 0600 temporary file; returns its descriptor, path in `path`. */
static inline int fuzz_temp_file(const uint8_t *data, size_t size, char path[64])
{
    strcpy(path, "/tmp/imgc-fuzz-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0)
        abort();
    if (size && write(fd, data, size) != (ssize_t)size)
        abort();
    return fd;
}

#endif
