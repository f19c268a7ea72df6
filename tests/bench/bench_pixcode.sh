#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# bench_pixcode.sh: the lossless pixel coder (codec/pixel/pixcode.h) against the standard lossless
# coders, in bits per sample of the pixel data, on a corpus made at run time; then encode and
# decode images per second at 256x256 and 512x512 with 1 and 2 threads.
#
# Corpus: the images of ../shared/testdata (PNG, PGM, native DICOM) and slices of the brain MRI
# volumes of mricron-data (scripts/nii_slices.py): 8-bit (ch2, ch2better) and 16-bit
# (inia19-t1-brain, 12-bit range), as PNG at their own size.
# Columns (each stream's whole size over the samples; every coder lossless):
#   pixcode  this coder (checked: decoded and compared)
#   idat     the PNG file's own IDAT chunks (PNG inputs)
#   optipng  the IDAT chunks after optipng -o2 (PNG inputs)
#   jpegls   JPEG-LS by CharLS (libcharls.so.2), one grey image per plane
#   j2k      JPEG 2000 by OpenJPEG (opj_compress, lossless default), codestream
#   jxl      JPEG XL by libjxl (cjxl -d 0, default effort)
#   zstd     zstd -19 of the raw samples
# (the reference coders are run by refcoders.sh, shared with bench_image.sh)
# Medians are printed over the PNG inputs (the figure DESIGN.md quotes) and over all inputs.
#
# Usage: bash tests/bench/bench_pixcode.sh
# Environment: IMGC_BUILD=DIR (default build; the program is DIR/bench/bench_pixcode),
#              BENCH_PER_AXIS=N (slices per axis and volume, default 4), BENCH_KEEP=1
# Needs: optipng, libcharls2, libopenjp2-tools, libjxl-tools, zstd, mricron-data, python3.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${IMGC_BUILD:-$root/build}
prog=$build/bench/bench_pixcode
[ -x "$prog" ] || cmake --build "$build" --target bench_pixcode >/dev/null
work=$(mktemp -d /tmp/imgc-bench-pixcode-XXXXXX)
cleanup() { [ "${BENCH_KEEP:-0}" = 1 ] && echo "corpus kept in $work" >&2 || rm -rf "$work"; }
trap cleanup EXIT
py=/usr/bin/python3
say() { printf '[bench] %s\n' "$*" >&2; }
# shellcheck source=refcoders.sh
. "$here/refcoders.sh"

say "making the corpus in $work"
mkdir -p "$work/in" "$work/tmp" "$work/s256" "$work/s512"
shared=$root/../shared/testdata
[ -d "$shared" ] || shared=$root/tests/data
for f in "$shared"/*.png "$shared"/*.pgm "$shared"/*.dcm; do
    [ -f "$f" ] && cp "$f" "$work/in/"
done
per=${BENCH_PER_AXIS:-4}
$py "$root/scripts/nii_slices.py" --out "$work/in" --per-axis "$per" \
    --volumes ch2,ch2better,inia19-t1-brain >/dev/null
$py "$root/scripts/nii_slices.py" --out "$work/s256" --per-axis 2 --volumes ch2 --size 256 >/dev/null
$py "$root/scripts/nii_slices.py" --out "$work/s512" --per-axis 2 --volumes ch2 --size 512 >/dev/null

say "coding $(ls "$work/in" | wc -l) images"
refc_measure "$prog" "$work" "$work"/in/*
refc_table "$work/size.txt" "$work/ext.txt"

say "speed (images/s; the whole image, planes coded stripe by stripe)"
for size in 256 512; do
    for th in 1 2; do
        printf '%sx%s 8-bit, ' "$size" "$size"
        "$prog" speed "$th" "$work/s$size"/*.png
    done
done
