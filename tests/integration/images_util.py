#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Helpers of the test_images_*.sh tests (run with the system python3: Pillow and pydicom).

  images_util.py set OUT             build the folder of real images the tests copy into the
                                     mount (tests/data, 512x512 slices of mricron-data's brain
                                     volumes as PNG, PGM and native DICOM, pydicom's test files,
                                     and files that are not images we store); writes
                                     OUT.expect: one line `image|blocks|any NAME` per file
  images_util.py big OUT SIDE BITS   one SIDE x SIDE PGM (P5) of BITS bits cut from a brain
                                     volume, with a little noise: a slow conversion to race
  images_util.py sha ROOT [FILE...]  `sha256  relpath` of every file under ROOT (or the files
                                     named, relative to ROOT), each read after dropping its
                                     cached pages, so that a read through a mount reaches the
                                     daemon; an unreadable file prints `ERROR:<errno>  relpath`
  images_util.py backing MNT BACKING FILE...
                                     the backing entry (relative to BACKING) of each file in
                                     the mount, matched by inode number (the mount reports the
                                     backing file's), or `-` when none matches
  images_util.py chunks FILE         the chunks of a PNG: `type offset length` per line
  images_util.py noise FILE          for a container (a PNG of 8-bit grey noise): how much
                                     zlib -9 shrinks its pixel bytes (compressed / raw), the
                                     rows' last row left out (it may end in zero padding)

Nothing here checks the filesystem by itself; the scripts decide what is right.
"""
import errno
import hashlib
import os
import random
import shutil
import struct
import subprocess
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TESTDATA = os.environ.get("IMGC_TESTDATA", os.path.join(REPO, "tests", "data"))
PYDICOM_FILES = "/usr/lib/python3/dist-packages/pydicom/data/test_files"
NII_SLICES = os.path.join(REPO, "scripts", "nii_slices.py")
TEMPLATES = "/usr/share/mricron/templates"


def fresh_read(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass
        parts = []
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                return b"".join(parts)
            parts.append(b)
    finally:
        os.close(fd)


def sha_of(path):
    try:
        return hashlib.sha256(fresh_read(path)).hexdigest()
    except OSError as e:
        return "ERROR:" + errno.errorcode.get(e.errno, str(e.errno))


def cmd_sha(root, files):
    if not files:
        files = []
        for dp, dn, fn in os.walk(root):
            dn.sort()
            for n in sorted(fn):
                files.append(os.path.relpath(os.path.join(dp, n), root))
    for rel in files:
        print(f"{sha_of(os.path.join(root, rel))}  {rel}")


def cmd_backing(mnt, backing, files):
    inodes = {}
    for dp, dn, fn in os.walk(backing):
        for n in fn:
            p = os.path.join(dp, n)
            inodes.setdefault(os.lstat(p).st_ino, os.path.relpath(p, backing))
    for f in files:
        try:
            ino = os.stat(f).st_ino
        except OSError:
            print("-")
            continue
        print(inodes.get(ino, "-"))


def png_chunks(data):
    """(type, offset of the chunk, data length) for each chunk of a PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    at, out = 8, []
    while at + 8 <= len(data):
        n, kind = struct.unpack(">I4s", data[at:at + 8])
        out.append((kind.decode("latin-1"), at, n))
        at += 12 + n
    return out


def idat_rows(data):
    """(width, height, rows without filter bytes) of an 8-bit grey PNG."""
    width = height = None
    idat = b""
    for kind, at, n in png_chunks(data):
        body = data[at + 8:at + 8 + n]
        if kind == "IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == "IDAT":
            idat += body
    raw = zlib.decompress(idat)
    return width, height, [raw[r * (width + 1) + 1:(r + 1) * (width + 1)] for r in range(height)]


def cmd_noise(path):
    w, h, rows = idat_rows(open(path, "rb").read())
    body = b"".join(rows[:-1]) if h > 1 else rows[0]
    print("%.4f %d" % (len(zlib.compress(body, 9)) / max(1, len(body)), len(body)))


def cmd_chunks(path):
    for kind, at, n in png_chunks(open(path, "rb").read()):
        print(kind, at, n)


# ---- the image set ----------------------------------------------------------------------------

def pgm(path, w, h, bits, values):
    with open(path, "wb") as f:
        maxval = 255 if bits == 8 else (1 << bits) - 1
        f.write(b"P5\n%d %d\n%d\n" % (w, h, maxval))
        if bits == 8:
            f.write(bytes(values))
        else:
            f.write(struct.pack(">%dH" % len(values), *values))


def slice_pixels(png_path):
    """Pixels of a grey PNG slice as (w, h, bits, flat list)."""
    from PIL import Image
    im = Image.open(png_path)
    im.load()
    if im.mode == "L":
        return im.size[0], im.size[1], 8, list(im.getdata())
    im = im.convert("I")
    return im.size[0], im.size[1], 16, [min(65535, max(0, v)) for v in im.getdata()]


def dicom_from(template, path, w, h, bits, values, stored_bits):
    """A native explicit-VR little-endian DICOM of one grey frame, header from template, with
    a SOP instance UID of its own (derived from the file name: the same every run)."""
    import pydicom
    from pydicom.uid import generate_uid
    ds = pydicom.dcmread(template)
    uid = generate_uid(entropy_srcs=[os.path.basename(path)])
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.Rows, ds.Columns = h, w
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = bits
    ds.BitsStored = stored_bits
    ds.HighBit = stored_bits - 1
    ds.PixelRepresentation = 0
    for tag in ("SmallestImagePixelValue", "LargestImagePixelValue", "WindowCenter", "WindowWidth"):
        if tag in ds:
            delattr(ds, tag)
    if bits == 8:
        ds.PixelData = bytes(values)
    else:
        ds.PixelData = struct.pack("<%dH" % len(values), *values)
    ds["PixelData"].VR = "OB" if bits == 8 else "OW"
    ds.save_as(path, write_like_original=False)


def make_slices(tmp):
    """512x512 slices of two brain volumes (8-bit ch2, 16-bit inia19), as PNG, via nii_slices."""
    if not os.path.isdir(TEMPLATES):
        sys.exit("mricron-data is not installed (apt-get install mricron-data)")
    for vol in ("ch2", "inia19-t1-brain"):
        subprocess.run([sys.executable, NII_SLICES, "--out", tmp, "--per-axis", "1",
                        "--volumes", vol, "--size", "512"], check=True, stdout=subprocess.DEVNULL)
    return sorted(os.path.join(tmp, n) for n in os.listdir(tmp) if n.endswith(".png"))


def cmd_set(out):
    from PIL import Image
    os.makedirs(out)
    expect = []

    def add(name, what):
        expect.append((what, name))

    # tests/data: what the adapters take (exact per tests/data/pydicom-manifest.txt), and
    # compressed DICOMs that stay block files.
    td = {
        "mri-t1-axial-12in16bit.png": "image", "mri-t1-axial-8bit.png": "image",
        "mri-t1-coronal-512-imagemagick.png": "image", "mri-t1-coronal-512.png": "image",
        "mri-t1-rgb.png": "image",
        # 256 x 256 at 2.4 bits per pixel as written: its container may not beat its block file
        "mri-t1-sagittal-256.png": "any",
        "mri-t1-axial-8bit.pgm": "image", "mri-t1-axial-12bit.pgm": "image",
        "CT_small.dcm": "image", "MR_small.dcm": "image", "MR_small_bigendian.dcm": "image",
        "MR_small_implicit.dcm": "image", "ExplVR_BigEnd.dcm": "image",
        # 3 x 3 pixels: the container may well be larger than the block file
        "SC_rgb_small_odd.dcm": "any",
        "MR_small_padded.dcm": "any",
        # RLE: the envelope keeps a byte per run, and 64 x 64 pixels code to little
        "MR_small_RLE.dcm": "any",
        "JPEG2000.dcm": "blocks", "image_dfl.dcm": "blocks",
    }
    for n, what in td.items():
        src = os.path.join(TESTDATA, n)
        if not os.path.exists(src):
            sys.exit(f"{src} is missing")
        shutil.copyfile(src, os.path.join(out, n))
        add(n, what)

    # mricron-data slices, 512 x 512: PNG as Pillow writes them, PGM and native DICOM of the
    # same pixels.
    tmp = out + ".slices"
    os.makedirs(tmp, exist_ok=True)
    slices = make_slices(tmp)
    for p in slices:
        n = os.path.basename(p)
        shutil.copyfile(p, os.path.join(out, n))
        add(n, "image")
    s8 = [p for p in slices if p.endswith("-8.png")]
    s16 = [p for p in slices if p.endswith("-16.png")]
    w, h, bits, px = slice_pixels(s8[0])
    pgm(os.path.join(out, "ch2-512-8.pgm"), w, h, 8, px)
    add("ch2-512-8.pgm", "image")
    w, h, bits, px = slice_pixels(s16[0])
    pgm(os.path.join(out, "inia19-512-12.pgm"), w, h, 12, [min(v, 4095) for v in px])
    add("inia19-512-12.pgm", "image")
    w, h, bits, px = slice_pixels(s16[1])
    dicom_from(os.path.join(TESTDATA, "CT_small.dcm"), os.path.join(out, "inia19-512-16.dcm"),
               w, h, 16, [min(v, 4095) for v in px], 12)
    add("inia19-512-16.dcm", "image")
    w, h, bits, px = slice_pixels(s8[1])
    dicom_from(os.path.join(TESTDATA, "MR_small.dcm"), os.path.join(out, "ch2-512-8.dcm"),
               w, h, 8, px, 8)
    add("ch2-512-8.dcm", "image")
    jpeg_src = os.path.join(out, os.path.basename(s8[0]))
    shutil.rmtree(tmp)

    # pydicom's test files: native ones, and compressed ones that stay block files.
    pyd = {
        "MR_small_expb.dcm": "image",
        "dicomdirtests/77654033/CT2/17106": "any",   # 16 x 16 pixels
        "liver_1frame.dcm": "any",                   # 1 bit per sample
        "JPEG-lossy.dcm": "blocks", "SC_rgb_rle.dcm": "blocks",
    }
    for n, what in pyd.items():
        src = os.path.join(PYDICOM_FILES, n)
        if not os.path.exists(src):
            sys.exit(f"{src} is missing (apt-get install python3-pydicom)")
        name = "pydicom-" + n.replace("/", "-")
        shutil.copyfile(src, os.path.join(out, name))
        add(name, what)

    # Not images we store: text, random bytes, a JPEG, a gzipped PNG, a truncated PNG.
    rnd = random.Random(14)
    with open(os.path.join(out, "notes.txt"), "w") as f:
        for i in range(2000):
            f.write(f"line {i}: not an image, {rnd.random()}\n")
    add("notes.txt", "blocks")
    with open(os.path.join(out, "random.bin"), "wb") as f:
        f.write(bytes(rnd.getrandbits(8) for _ in range(100000)))
    add("random.bin", "blocks")
    Image.open(jpeg_src).save(os.path.join(out, "slice.jpg"), quality=90)
    add("slice.jpg", "blocks")
    data = open(jpeg_src, "rb").read()
    with open(os.path.join(out, "slice.png.gz"), "wb") as f:
        f.write(zlib.compress(data, 6))
    add("slice.png.gz", "blocks")
    with open(os.path.join(out, "truncated.png"), "wb") as f:
        f.write(data[:len(data) // 2])
    add("truncated.png", "blocks")

    with open(out + ".expect", "w") as f:
        for what, name in expect:
            f.write(f"{what} {name}\n")
    print(f"{len(expect)} files in {out}", file=sys.stderr)


def cmd_big(out, side, bits):
    """A side x side PGM of a brain slice (bilinear), plus noise, so that no two are equal."""
    from PIL import Image
    tmp = out + ".tmp"
    os.makedirs(tmp, exist_ok=True)
    vol = "ch2" if bits == 8 else "inia19-t1-brain"
    subprocess.run([sys.executable, NII_SLICES, "--out", tmp, "--per-axis", "1", "--volumes", vol],
                   check=True, stdout=subprocess.DEVNULL)
    src = sorted(os.path.join(tmp, n) for n in os.listdir(tmp))[0]
    im = Image.open(src)
    im = im.convert("I").resize((side, side), Image.BILINEAR)
    rnd = random.Random(side * 31 + bits)
    top = (1 << bits) - 1
    px = [min(top, max(0, v + rnd.randint(-2, 2))) for v in im.getdata()]
    pgm(out, side, side, bits, px)
    shutil.rmtree(tmp)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "set":
        cmd_set(args[0])
    elif cmd == "big":
        cmd_big(args[0], int(args[1]), int(args[2]))
    elif cmd == "sha":
        cmd_sha(args[0], args[1:])
    elif cmd == "backing":
        cmd_backing(args[0], args[1], args[2:])
    elif cmd == "chunks":
        cmd_chunks(args[0])
    elif cmd == "noise":
        cmd_noise(args[0])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
