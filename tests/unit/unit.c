// SPDX-License-Identifier: MIT
/* Suite registry of the unit-test executables (see unit.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/unit.h"

#define UNIT_MAX_SUITES 32

static Suite *(*registered[UNIT_MAX_SUITES])(void);
static int count;

void unit_register(Suite *(*make)(void))
{
    if (count == UNIT_MAX_SUITES)
        abort();
    registered[count++] = make;
}

int unit_run(Suite *first)
{
    SRunner *sr = srunner_create(first);
    for (int i = 0; i < count; i++)
        srunner_add_suite(sr, registered[i]());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr), ran = srunner_ntests_run(sr);
    srunner_free(sr);
    /* CTest runs one suite per entry (CK_RUN_SUITE): a name that matches nothing is an error,
     * not a pass */
    if (ran == 0) {
        fprintf(stderr, "no test ran (CK_RUN_SUITE=%s)\n",
                getenv("CK_RUN_SUITE") ? getenv("CK_RUN_SUITE") : "");
        return EXIT_FAILURE;
    }
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

unsigned char *unit_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    ck_assert_int_ge(n, 0);
    rewind(f);
    unsigned char *buf = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

int unit_quick(void)
{
    const char *q = getenv("IMGC_QUICK");
    return q && strcmp(q, "1") == 0;
}
