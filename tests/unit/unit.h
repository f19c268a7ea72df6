/* SPDX-License-Identifier: MIT */
/*
 * Shared by the unit-test executables: one per module (test_<module>.c holds main), with further
 * suites of that module in tests/unit/<module>_*.c, which register themselves with
 * UNIT_SUITE(make_suite) and are linked into the same executable.
 */
#ifndef IMGCRYPTFS_TESTS_UNIT_H
#define IMGCRYPTFS_TESTS_UNIT_H

#include <check.h>
#include <stddef.h>

void unit_register(Suite *(*make)(void));
/* Read a whole file into a new buffer (one spare byte at the end); fails the test on error. */
unsigned char *unit_read_file(const char *path, size_t *len);
/* True when IMGC_QUICK=1: the sanitizer builds run the slow corpus tests on a subset of their
 * settings (same code paths, fewer repetitions of them). */
int unit_quick(void);
/* Run `first` and every registered suite; returns the exit status for main. */
int unit_run(Suite *first);

#define UNIT_SUITE(make)                                                                           \
    __attribute__((constructor)) static void unit_register_##make(void)                            \
    {                                                                                              \
        unit_register(make);                                                                       \
    }

#endif
