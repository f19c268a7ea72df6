#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Cut axial, coronal and sagittal slices out of the brain MRI volumes of Debian's mricron-data
package (NIfTI-1, .nii.gz) and write them as images, for tests, benchmarks and training.

8-bit volumes (ch2, ch2better) give 8-bit slices as stored; the float volume (inia19-t1-brain)
gives 16-bit slices with values v * 10 rounded (0..~3830, the range of a 12-bit scanner).
Slices are evenly spaced through the middle 80% of each axis; the rest of the volume is mostly
air. Pure Python (gzip, struct, array): no numpy needed.

usage: nii_slices.py --out DIR [--per-axis N] [--format png|pgm] [--volumes ch2,inia19-t1-brain]
                     [--size N]
"""
import argparse
import array
import gzip
import os
import struct
import sys

TEMPLATES = '/usr/share/mricron/templates'
DEFAULT_VOLUMES = ['ch2', 'ch2better', 'inia19-t1-brain']


def load(name):
    """The volume as (dims x, y, z), a flat list of ints, and the bit depth of the slices."""
    raw = gzip.open(os.path.join(TEMPLATES, name + '.nii.gz')).read()
    endian = '<' if struct.unpack('<i', raw[:4])[0] == 348 else '>'
    dim = struct.unpack(endian + '8h', raw[40:56])
    datatype, bitpix = struct.unpack(endian + 'hh', raw[70:74])
    offset = int(struct.unpack(endian + 'f', raw[108:112])[0])
    nx, ny, nz = dim[1], dim[2], dim[3]
    code = {2: 'B', 4: 'h', 512: 'H', 16: 'f'}.get(datatype)
    if code is None:
        sys.exit('%s: NIfTI datatype %d not handled' % (name, datatype))
    vox = array.array(code, raw[offset:offset + bitpix // 8 * nx * ny * nz])
    if endian != ('<' if sys.byteorder == 'little' else '>'):
        vox.byteswap()
    if code == 'B':
        return (nx, ny, nz), vox, 8
    return (nx, ny, nz), [max(0, min(65535, int(round(v * 10)))) for v in vox], 16


def slices(dims, vox, per_axis):
    """(axis name, index, width, height, rows top to bottom) for each slice."""
    nx, ny, nz = dims
    at = lambda x, y, z: vox[x + nx * (y + ny * z)]
    for axis, n in (('axial', nz), ('coronal', ny), ('sagittal', nx)):
        for k in range(per_axis):
            i = int(n * (0.1 + 0.8 * (k + 0.5) / per_axis))
            if axis == 'axial':
                w, h, px = nx, ny, lambda c, r: at(c, ny - 1 - r, i)
            elif axis == 'coronal':
                w, h, px = nx, nz, lambda c, r: at(c, i, nz - 1 - r)
            else:
                w, h, px = ny, nz, lambda c, r: at(i, c, nz - 1 - r)
            yield axis, i, w, h, [[px(c, r) for c in range(w)] for r in range(h)]


def write(path, fmt, bits, w, h, rows, size):
    if fmt == 'pgm':
        with open(path, 'wb') as f:
            f.write(b'P5\n%d %d\n%d\n' % (w, h, 255 if bits == 8 else 4095))
            for row in rows:
                if bits == 8:
                    f.write(bytes(row))
                else:
                    f.write(b''.join(struct.pack('>H', min(v, 4095)) for v in row))
        return
    from PIL import Image
    if bits == 8:
        im = Image.frombytes('L', (w, h), bytes(v for row in rows for v in row))
    else:
        im = Image.frombytes('I;16', (w, h), b''.join(struct.pack('<H', v) for row in rows for v in row))
    if size:
        # bicubic overshoots, which 8-bit clamps; 16-bit takes bilinear, which cannot overshoot
        im = im.resize((size, size), Image.BICUBIC) if bits == 8 else \
            im.convert('I').resize((size, size), Image.BILINEAR).convert('I;16')
    im.save(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--out', required=True)
    ap.add_argument('--per-axis', type=int, default=3)
    ap.add_argument('--format', choices=('png', 'pgm'), default='png')
    ap.add_argument('--volumes', default=','.join(DEFAULT_VOLUMES))
    ap.add_argument('--size', type=int, default=0, help='resize to SIZE x SIZE (PNG only)')
    a = ap.parse_args()
    if not os.path.isdir(TEMPLATES):
        sys.exit('mricron-data is not installed (apt-get install mricron-data)')
    os.makedirs(a.out, exist_ok=True)
    n = 0
    for name in a.volumes.split(','):
        dims, vox, bits = load(name)
        for axis, i, w, h, rows in slices(dims, vox, a.per_axis):
            path = os.path.join(a.out, '%s-%s-%03d-%d.%s' % (name, axis, i, bits, a.format))
            write(path, a.format, bits, w, h, rows, a.size)
            n += 1
    print('%d slices in %s' % (n, a.out))


if __name__ == '__main__':
    main()
