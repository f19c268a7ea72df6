// SPDX-License-Identifier: MIT
/*
 * The shipped autoencoder, built into the library: the bytes of models/ae-default.params are
 * pulled in by the assembler's .incbin, which finds the file through the include path
 * (-I <source root>) that every target of the build already has.
 *
 * Including the file at build time keeps one binary source of truth in the repository rather
 * than a generated C array of several MiB. The price: the compiler's dependency scan does not
 * see the file, so CMakeLists.txt names it as this object's dependency (and a unit test
 * compares these bytes with models/ae-default.params).
 */
#include <stddef.h>
#include <stdint.h>

#include "nn/ae.h"

__asm__(".pushsection .rodata\n"
        ".balign 16\n"
        ".hidden nn_ae_default_start\n"
        "nn_ae_default_start:\n"
        ".incbin \"models/ae-default.params\"\n"
        ".hidden nn_ae_default_end\n"
        "nn_ae_default_end:\n"
        ".popsection\n");

extern const uint8_t nn_ae_default_start[], nn_ae_default_end[];

const uint8_t *nn_ae_default_bytes(size_t *len)
{
    *len = (size_t)(nn_ae_default_end - nn_ae_default_start);
    return nn_ae_default_start;
}
