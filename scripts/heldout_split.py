#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Split MRI slices cut by nii_slices.py into training and held-out sets, by slice position.

usage: heldout_split.py WORK
Every WORK/all/VOLUME-AXIS-INDEX-BITS.(png|pgm) is linked into WORK/heldout when its index lies
in [0.44 N, 0.56 N) of its axis (N slices on that axis, from the volume's NIfTI header), into
WORK/train when it lies outside [0.38 N, 0.62 N), and nowhere otherwise: at least 6% of each
axis (11 mm in ch2) separates training from evaluation. One rule for every script that trains
or evaluates a model (scripts/train_ae.sh, scripts/train_coder.sh, tests/bench/bench_ae_quality.sh).
"""
import gzip
import os
import re
import struct
import sys

work = sys.argv[1]
dims = {}


def dims_of(name):
    if name not in dims:
        raw = gzip.open('/usr/share/mricron/templates/%s.nii.gz' % name).read(348)
        end = '<' if struct.unpack('<i', raw[:4])[0] == 348 else '>'
        d = struct.unpack(end + '8h', raw[40:56])
        dims[name] = {'sagittal': d[1], 'coronal': d[2], 'axial': d[3]}
    return dims[name]


count = {'train': 0, 'heldout': 0, 'unused': 0}
for f in sorted(os.listdir(os.path.join(work, 'all'))):
    m = re.match(r'(.+)-(axial|coronal|sagittal)-(\d+)-(\d+)\.(png|pgm)$', f)
    if not m:
        continue
    at = int(m.group(3)) / dims_of(m.group(1))[m.group(2)]
    where = 'heldout' if 0.44 <= at < 0.56 else 'unused' if 0.38 <= at < 0.62 else 'train'
    count[where] += 1
    if where != 'unused':
        os.makedirs(os.path.join(work, where), exist_ok=True)
        os.symlink(os.path.join(work, 'all', f), os.path.join(work, where, f))
print('slices: %(train)d training, %(heldout)d held out, %(unused)d unused' % count)
