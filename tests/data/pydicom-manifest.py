#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Write pydicom-manifest.txt: what the DICOM adapter must do with each test file, decided by
pydicom (an independent parser), and a hash of the pixel planes pydicom's raw Pixel Data gives.

Usage: pydicom-manifest.py PYDICOM_DATA_DIR REPO_DATA_DIR > pydicom-manifest.txt

A line is `<where>/<path> refuse` or `<where>/<path> exact ROWS COLS SPP FRAMES BITS FNV64`,
where FNV64 is FNV-1a (64-bit) over the samples in plane order (channel, frame, row, column),
each sample as 1 byte (8-bit) or 2 bytes little-endian (16-bit). A file is `exact` when its
transfer syntax is native (explicit/implicit VR little endian, explicit VR big endian) or RLE
Lossless (the samples are those pydicom's RLE decoder gives, as if native little endian and
interleaved: RLE has one segment per sample and byte whatever Planar Configuration says), it has
Pixel Data, Bits Allocated is 8, 16 or 32, and the Pixel Data is at least as long as the geometry
(the samples are its first bytes; what follows, a pad byte or more, is kept verbatim).
The geometry is that of the planes the adapter makes: a 32-bit sample is two 16-bit samples, its
16-bit words in file order (SPP and BITS say 2 x Samples per Pixel and 16; planar data and more
than 2 samples per pixel are refused); YBR_FULL_422 (and YBR_PARTIAL_422) pixel pairs Y0 Y1 Cb Cr
are 4 samples of a pixel at half the width (COLS is Columns / 2, SPP 4; other than 3 interleaved
samples of 8 or 16 bits in even columns is refused; RLE of them is refused).
"""
import os
import sys
import warnings

import pydicom

NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}
RLE = "1.2.840.10008.1.2.5"


def fnv(values, nbytes):
    h = 0xCBF29CE484222325
    for v in values:
        for i in range(nbytes):
            h ^= (v >> (8 * i)) & 0xFF
            h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def rle_data(ds, rows, cols, spp, frames, ba):
    """pydicom's decoding of RLE Pixel Data, as native little-endian interleaved bytes."""
    import numpy

    try:
        arr = ds.pixel_array
    except Exception:
        return None
    if arr.dtype.itemsize != ba // 8 or arr.size != rows * cols * spp * frames:
        return None
    arr = numpy.ascontiguousarray(arr).reshape(frames, rows, cols, spp)
    unsigned = arr.view("u%d" % arr.dtype.itemsize)
    return unsigned.astype("<u%d" % arr.dtype.itemsize).tobytes()


def judge(path):
    with open(path, "rb") as f:
        head = f.read(132)
    if len(head) < 132 or head[128:132] != b"DICM":
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path)
        except Exception:
            return "refuse"
    ts = str(ds.file_meta.get("TransferSyntaxUID", ""))
    if (ts not in NATIVE and ts != RLE) or "PixelData" not in ds:
        return "refuse"
    try:
        rows, cols, spp, ba = ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.BitsAllocated
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        planar = int(ds.get("PlanarConfiguration", 0) or 0)
    except Exception:
        return "refuse"
    if ts == RLE:
        planar = 0
        data = rle_data(ds, rows, cols, spp, frames, ba)
        if data is None:
            return "refuse"
    if ba not in (8, 16, 32) or not (rows and cols and spp and frames):
        return "refuse"
    if ba == 32:
        if spp > 2 or (planar and spp > 1):
            return "refuse"
        spp, ba = 2 * spp, 16  # the words of each sample, in file order
    if str(ds.get("PhotometricInterpretation", "")) in ("YBR_FULL_422", "YBR_PARTIAL_422"):
        if spp != 3 or planar or cols % 2 or ba == 32 or ts == RLE:
            return "refuse"
        spp, cols = 4, cols // 2  # Y0 Y1 Cb Cr: one pixel of 4 samples per pixel pair
    if ts != RLE:
        data = ds.PixelData
    n = rows * cols * spp * frames * (ba // 8)
    if len(data) < n:
        return "refuse"  # longer: the geometry's samples, then padding the envelope keeps
    big = ts == "1.2.840.10008.1.2.2"
    vr = str(ds["PixelData"].VR)
    if big and ba == 8 and vr == "OW":
        data = bytes(data[i ^ 1] for i in range(n))
    bps = ba // 8
    samples = [
        int.from_bytes(data[i * bps:(i + 1) * bps], "big" if big else "little")
        for i in range(n // bps)
    ]
    hw = rows * cols
    planes = []
    for c in range(spp):
        for f in range(frames):
            for p in range(hw):
                if planar and spp > 1:
                    planes.append(samples[(f * spp + c) * hw + p])
                else:
                    planes.append(samples[(f * hw + p) * spp + c])
    return "exact %d %d %d %d %d %016x" % (rows, cols, spp, frames, ba, fnv(planes, bps))


def main():
    for where, root in (("pydicom", sys.argv[1]), ("repo", sys.argv[2])):
        for d, _, files in sorted(os.walk(root)):
            for name in sorted(files):
                path = os.path.join(d, name)
                verdict = judge(path)
                if verdict:
                    print("%s/%s %s" % (where, os.path.relpath(path, root), verdict))


main()
