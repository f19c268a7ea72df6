#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Make the golden containers: stored images made once and committed (tests/data/golden/FORMAT,
# FORMAT naming the container and pixel stream versions they were made with), which
# tests/integration/test_golden.sh decodes on every run and compares byte for byte with the
# original files and with the previews recorded here. They are what proves that a change of the
# code does not silently break images stored by an earlier release: never remake a folder that
# is committed; when a format changes, make a new folder next to the old ones and keep those.
#
# Folders: v0 was made with this script by the code of commit 871372b (features zlib-coded,
# keyring without models), v1 by the code of the commit that added this script (features by the
# latent coder, default autoencoder in the keyring), v2 with GOLDEN_CODER=neural by the code of
# the commit that shipped the default coder model (pixel streams by the neural predictor 1,
# default autoencoder and coder model in the keyring). kinds1 holds only the kinds that took the
# image path later (an interlaced PNG, a 32-bit RT Dose grid, a YBR_FULL_422 DICOM, a plain
# PGM), made with GOLDEN_SRCS by the code of the commit that added it (fixed predictor). v3 was
# made with GOLDEN_CODER=neural-only by the code of the commit that shipped pixel stream version
# 2 (tables with their classes coded against each other) and coder model version 2 (two network
# sets: 8-bit planes and 16-bit ones), both in every one of its containers.
#
# A folder holds:
#   key                       the 32-byte key file of its keyring (test material, not a secret)
#   store/imgcryptfs.keyring  the keyring (imgcrypt init --keyfile key --kdf-cost 10), with the
#                             default models of its day in its model list
#   inputs/                   originals that tests/data does not hold (made here: a 4-frame
#                             DICOM, a 16-bit PNG of prime size, an RGB PNG, a tiny PGM)
#   NAME.ct                   imgcrypt encrypt of each original
#   MANIFEST                  per container: its name, the original's path (relative to
#                             tests/data), the original's SHA-256, and the SHA-256 of its
#                             preview's header and rows (tests/integration/png_samples.py of
#                             imgcrypt preview; "-" for a container without features)
#
# usage: scripts/make_golden.sh [BUILD_DIR] [FOLDER_NAME]   (default build, v1)
# Environment: GOLDEN_CODER=fixed|neural|smallest, imgcrypt encrypt's --coder (default fixed);
#              GOLDEN_SRCS="FILE..." (paths relative to tests/data): store these originals
#              instead of the default list, and make no inputs/.
# Needs python3 with Pillow and pydicom (apt-get install python3-pil python3-pydicom).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
name=${2:-v1}
imgcrypt=$build/bin/imgcrypt
out=$root/tests/data/golden/$name
py=/usr/bin/python3

[ -x "$imgcrypt" ] || { echo "make_golden: $imgcrypt is not built" >&2; exit 1; }
[ ! -e "$out" ] || { echo "make_golden: $out exists; golden files are never remade" >&2; exit 1; }
mkdir -p "$out"
cd "$out"
srcs="mri-t1-sagittal-256.png mri-t1-axial-12in16bit.png mri-t1-axial-8bit.pgm CT_small.dcm
    MR_small_bigendian.dcm SC_rgb_small_odd.dcm golden/$name/inputs/mr-4frames.dcm
    golden/$name/inputs/grey16-41x37.png golden/$name/inputs/rgb-96x80.png
    golden/$name/inputs/tiny-7x5.pgm"
[ -z "${GOLDEN_SRCS:-}" ] || srcs=$GOLDEN_SRCS

[ -n "${GOLDEN_SRCS:-}" ] || mkdir inputs
[ -n "${GOLDEN_SRCS:-}" ] || "$py" - "$root/tests/data" "$out/inputs" <<'EOF'
import sys, pydicom
from PIL import Image
data, out = sys.argv[1], sys.argv[2]
# a multi-frame DICOM: MR_small's 64x64 16-bit frame and three shifted copies of it
import struct
ds = pydicom.dcmread(data + '/MR_small.dcm')
assert ds.BitsAllocated == 16 and ds.file_meta.TransferSyntaxUID == '1.2.840.10008.1.2.1'
n = ds.Rows * ds.Columns
frame = struct.unpack('<%dh' % n, ds.PixelData[:2 * n])
ds.NumberOfFrames = 4
ds.PixelData = b''.join(struct.pack('<%dh' % n, *((v + 37 * k) % 4096 for v in frame))
                        for k in range(4))
ds.save_as(out + '/mr-4frames.dcm', write_like_original=True)
# 16-bit grey PNG of prime size, RGB PNG, from the test slices
im = Image.open(data + '/mri-t1-axial-12in16bit.png')
im.crop((20, 30, 20 + 41, 30 + 37)).save(out + '/grey16-41x37.png')
Image.open(data + '/mri-t1-rgb.png').crop((40, 40, 136, 120)).save(out + '/rgb-96x80.png')
# a tiny image: too small for features
with open(out + '/tiny-7x5.pgm', 'wb') as f:
    f.write(b'P5\n7 5\n255\n' + bytes((x * 31 + y * 17) % 256 for y in range(5) for x in range(7)))
EOF

head -c 32 /dev/urandom >key
chmod 600 key
"$imgcrypt" init --keyfile key --kdf-cost 10 store >/dev/null

: >MANIFEST
for src in $srcs; do
    ct=$(basename "$src").ct
    "$imgcrypt" encrypt --keyfile key --coder "${GOLDEN_CODER:-fixed}" store \
        "$root/tests/data/$src" "$ct"
    [ "$(head -c 4 "$ct" | od -An -tx1 | tr -d ' ')" = 89504e47 ] ||
        { echo "make_golden: $src was not stored as an image" >&2; exit 1; }
    pv=-
    if "$imgcrypt" preview --keyfile key store "$ct" preview.png 2>/dev/null; then
        pv=$("$py" "$root/tests/integration/png_samples.py" preview.png)
        rm preview.png
    fi
    printf '%s %s %s %s\n' "$ct" "$src" "$(sha256sum <"$root/tests/data/$src" | cut -d' ' -f1)" \
        "$pv" >>MANIFEST
done
echo "made $(wc -l <MANIFEST) golden containers in $out"
