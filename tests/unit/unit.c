// SPDX-License-Identifier: MIT
/* Suite registry of the unit-test executables (see unit.h). */
#include <stdlib.h>

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
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
