// SPDX-License-Identifier: MIT
/*
 * Fuzz target: the DICOM adapter. Any input is split; success must join back byte for byte,
 * failure must be a clean -ENOTSUP or -EFBIG (fuzz_image.h). The corpus holds small DICOM
 * files, so the mutations mostly reach the DICOM parser.
 */
#include "tests/fuzz/fuzz_image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_image_check(data, size);
    return 0;
}
