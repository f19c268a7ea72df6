// SPDX-License-Identifier: MIT
/*
 * The shipped coder model, built into the library: the bytes of models/coder-default.pixnet
 * pulled in by the assembler's .incbin through the include path (-I <source root>), as
 * nn/ae_default.c does for the autoencoder.
 *
 * One binary source of truth in the repository rather than a generated C array; the price is
 * that the compiler's dependency scan does not see the file, so CMakeLists.txt names it as
 * this object's dependency (and a unit test compares these bytes with the file).
 */
#include <stddef.h>
#include <stdint.h>

#include "codec/pixel/pixnet.h"

__asm__(".pushsection .rodata\n"
        ".balign 16\n"
        ".hidden codec_pixnet_default_start\n"
        "codec_pixnet_default_start:\n"
        ".incbin \"models/coder-default.pixnet\"\n"
        ".hidden codec_pixnet_default_end\n"
        "codec_pixnet_default_end:\n"
        ".popsection\n");

extern const uint8_t codec_pixnet_default_start[], codec_pixnet_default_end[];

const uint8_t *codec_pixnet_default_bytes(size_t *len)
{
    *len = (size_t)(codec_pixnet_default_end - codec_pixnet_default_start);
    return codec_pixnet_default_start;
}
