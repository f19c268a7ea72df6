#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Print the SHA-256 of what a PNG shows: its IHDR data and its filtered rows (the inflated
IDAT stream), so that two PNGs of the same picture written with other deflate settings give the
same digest. Used for the golden previews (tests/integration/test_golden.sh,
scripts/make_golden.sh). Standard library only."""
import hashlib
import struct
import sys
import zlib

data = open(sys.argv[1], 'rb').read()
if data[:8] != b'\x89PNG\r\n\x1a\n':
    sys.exit('png_samples: not a PNG')
at, ihdr, idat = 8, None, b''
while at < len(data):
    n, kind = struct.unpack('>I4s', data[at:at + 8])
    body = data[at + 8:at + 8 + n]
    if kind == b'IHDR':
        ihdr = body
    elif kind == b'IDAT':
        idat += body
    at += 12 + n
if ihdr is None or not idat:
    sys.exit('png_samples: no IHDR or IDAT')
print(hashlib.sha256(ihdr + zlib.decompress(idat)).hexdigest())
