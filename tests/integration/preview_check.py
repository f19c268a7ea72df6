#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Previews of DICOM files whose samples are not plain channels (imgcrypt preview).

usage: preview_check.py dose TEMPLATE OUT     a 96 x 96 one-frame RT Dose grid of 32-bit samples
                                              (a smooth dose with a hot spot), header and byte
                                              order from TEMPLATE (rtdose.dcm, rtdose_expb.dcm)
       preview_check.py compare PREVIEW DICOM MIN_PSNR
                                              the preview shows what a viewer shows of DICOM:
                                              same size, RGB for colour (YBR converted), grey
                                              for one sample (a 32-bit dose scaled to its
                                              maximum); PSNR against it at least MIN_PSNR dB
"""
import math
import sys


def cmd_dose(template, out):
    import numpy as np
    import pydicom
    ds = pydicom.dcmread(template)
    n = 96
    y, x = np.mgrid[0:n, 0:n].astype(float)
    dose = 1.8e6 * np.exp(-((x - 40) ** 2 + (y - 52) ** 2) / (2 * 18.0 ** 2))
    dose += 0.6e6 * np.exp(-((x - 70) ** 2 + (y - 30) ** 2) / (2 * 7.0 ** 2))
    ds.Rows = ds.Columns = n
    ds.NumberOfFrames = 1
    ds.GridFrameOffsetVector = [0.0]
    order = ">" if ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRBigEndian else "<"
    ds.PixelData = dose.astype(order + "u4").tobytes()
    ds.save_as(out, write_like_original=False)


def expected(dicom):
    """What a viewer shows of DICOM, as float samples (rows, cols, channels) and the top value."""
    import numpy as np
    import pydicom
    from pydicom.pixel_data_handlers.util import convert_color_space
    ds = pydicom.dcmread(dicom)
    a = ds.pixel_array
    if ds.SamplesPerPixel == 3:
        if ds.PhotometricInterpretation.startswith("YBR"):
            a = convert_color_space(a, ds.PhotometricInterpretation, "RGB")
        return a.astype(float), (1 << ds.BitsAllocated) - 1
    if ds.BitsAllocated == 32:
        a = a.astype(float) * 65535 / max(1, a.max())
        return a[..., None], 65535
    return a.astype(float)[..., None], (1 << ds.BitsAllocated) - 1


def cmd_compare(preview, dicom, min_psnr):
    import numpy as np
    from PIL import Image
    want, top = expected(dicom)
    im = Image.open(preview)
    got = np.asarray(im).astype(float)
    got = got if got.ndim == 3 else got[..., None]
    if got.shape != want.shape:
        sys.exit(f"{preview}: {im.mode} {got.shape[1]} x {got.shape[0]} x {got.shape[2]}, "
                 f"but {dicom} shows {want.shape[1]} x {want.shape[0]} x {want.shape[2]}")
    mse = ((got - want) ** 2).mean()
    psnr = math.inf if mse == 0 else 10 * math.log10(top * top / mse)
    if psnr < min_psnr:
        sys.exit(f"{preview}: PSNR {psnr:.1f} dB against {dicom}, below {min_psnr} dB")
    print(f"{psnr:.1f}")


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "dose":
        cmd_dose(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 5 and sys.argv[1] == "compare":
        cmd_compare(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
