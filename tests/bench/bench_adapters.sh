#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# bench_adapters.sh: the image adapters (split + join) on a corpus made at run time, per writer:
#   throughput in MB/s of file (split, join, split+join), and for PNG the recipe (the IDAT
#   section: chunk lengths, filter types, deflate description) as % of the file, median and
#   worst; beside them, from the same run, libpng decoding the same file and zlib recompressing
#   its rows at the file's level (bench_adapters.c says how each figure is taken).
#
# Corpus: slices of the brain MRI volumes of mricron-data (scripts/nii_slices.py), resized to
# 512x512 and 2048x2048, 8-bit (ch2) and 16-bit (inia19-t1-brain; ch2 only for advpng), written by
#   pillow       Pillow's PNG writer, default settings (zlib level 6, memLevel 9)
#   pillow-opt   Pillow with optimize=True (level 9)
#   imagemagick  ImageMagick's convert (libpng + zlib)
#   imagemagick-adam7  the same, interlaced (convert -interlace PNG)
#   optipng      optipng -o2 (libpng + zlib, its own trials)
#   pngcrush     pngcrush (libpng + zlib)
#   zopflipng    zopflipng (zopfli: not zlib; 512 only, it is slow)
#   advpng       advpng -z -3 (7-Zip's deflate: not zlib; RGB copies of the slices, since advpng
#                takes no grey images; 512 only)
#   pgm          the same slices as PGM (P5)
#   pgm-plain    the same slices as plain PGM (P2, ImageMagick's convert -compress none)
#   dicom        the native DICOM files of python3-pydicom (their own sizes)
#   dicom-words32  pydicom's RT Dose grids (Bits Allocated 32, two 16-bit planes per sample)
#   dicom-ybr422   pydicom's YBR_FULL_422 file (subsampled chroma, four half-width planes)
#   dicom-rle      pydicom's RLE Lossless files the adapter takes (8-, 16- and 32-bit; the
#                  recipe is the RLE section: skeleton and one byte per run)
# and the PNGs of tests/data as written.
#
# Usage: bash tests/bench/bench_adapters.sh   (needs the packages scripts/setup.sh installs)
# Environment: IMGC_BUILD=DIR (default build; the program is DIR/bench/bench_adapters),
#              BENCH_OUT=FILE (also write the summary lines there), BENCH_KEEP=1 (keep corpus)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${IMGC_BUILD:-$root/build}
prog=$build/bench/bench_adapters
[ -x "$prog" ] || cmake --build "$build" --target bench_adapters >/dev/null
work=$(mktemp -d /tmp/imgc-bench-adapters-XXXXXX)
cleanup() { [ "${BENCH_KEEP:-0}" = 1 ] && echo "corpus kept in $work" >&2 || rm -rf "$work"; }
trap cleanup EXIT
py=/usr/bin/python3
say() { printf '[bench] %s\n' "$*" >&2; }

say "making the corpus in $work"
for size in 512 2048; do
    per=3
    [ "$size" = 2048 ] && per=1
    $py "$root/scripts/nii_slices.py" --out "$work/base-$size" --per-axis $per \
        --volumes ch2,inia19-t1-brain --size $size >/dev/null
    for w in pillow pillow-opt imagemagick imagemagick-adam7 optipng pngcrush zopflipng advpng; do
        mkdir -p "$work/$w-$size"
    done
    for f in "$work/base-$size"/*.png; do
        b=$(basename "$f")
        cp "$f" "$work/pillow-$size/$b"
        $py -c "import sys; from PIL import Image; Image.open(sys.argv[1]).save(sys.argv[2], optimize=True)" \
            "$f" "$work/pillow-opt-$size/$b"
        convert "$f" "$work/imagemagick-$size/$b"
        convert "$f" -interlace PNG "$work/imagemagick-adam7-$size/$b"
        optipng -quiet -o2 -out "$work/optipng-$size/$b" "$f"
        pngcrush -q "$f" "$work/pngcrush-$size/$b" 2>/dev/null
        if [ "$size" = 512 ]; then
            zopflipng -y --iterations=3 "$f" "$work/zopflipng-$size/$b" >/dev/null
            # advpng takes RGB and palette images only: an RGB copy of the slice
            $py -c "import sys; from PIL import Image; Image.open(sys.argv[1]).convert('RGB').save(sys.argv[2])" \
                "$f" "$work/advpng-$size/$b"
            advpng -q -f -z -3 "$work/advpng-$size/$b"
        fi
    done
done
mkdir -p "$work/pgm-512"
$py "$root/scripts/nii_slices.py" --out "$work/pgm-512" --per-axis 3 --volumes ch2,inia19-t1-brain \
    --format pgm >/dev/null
mkdir -p "$work/pgm-plain-512"
for f in "$work/pgm-512"/*.pgm; do
    convert "$f" -compress none "$work/pgm-plain-512/$(basename "$f")"
done

out=$work/summary.txt
: >"$out"
run() { # GROUP FILE...
    local g=$1
    shift
    [ $# -gt 0 ] || return 0
    "$prog" "$g" "$@" | tee -a "$work/all.txt" | grep '^SUMMARY' >>"$out" || {
        say "$g: a file did not join back exactly (see above)"
        exit 1
    }
}
for size in 512 2048; do
    for w in pillow pillow-opt imagemagick imagemagick-adam7 optipng pngcrush zopflipng advpng; do
        shopt -s nullglob
        run "$w-$size" "$work/$w-$size"/*.png
    done
done
run pgm "$work/pgm-512"/*.pgm
run pgm-plain "$work/pgm-plain-512"/*.pgm
mapfile -t dicoms < <(ls /usr/lib/python3/dist-packages/pydicom/data/test_files/*.dcm)
"$prog" dicom "${dicoms[@]}" >"$work/dicom.txt" 2>/dev/null || true
grep '^SUMMARY' "$work/dicom.txt" >>"$out"
pyd=/usr/lib/python3/dist-packages/pydicom/data/test_files
run dicom-words32 "$pyd"/rtdose.dcm "$pyd"/rtdose_1frame.dcm "$pyd"/rtdose_expb.dcm \
    "$pyd"/rtdose_expb_1frame.dcm
run dicom-ybr422 "$pyd"/SC_ybr_full_422_uncompressed.dcm
run dicom-rle "$pyd"/MR_small_RLE.dcm "$pyd"/SC_rgb_rle.dcm "$pyd"/SC_rgb_rle_2frame.dcm \
    "$pyd"/SC_rgb_rle_16bit.dcm "$pyd"/SC_rgb_rle_16bit_2frame.dcm "$pyd"/rtdose_rle.dcm \
    "$pyd"/rtdose_rle_1frame.dcm
run tests-data "$root"/tests/data/*.png

echo
echo "Image adapters, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores; MB/s of file; reference columns from the same run"
cat "$out"
[ -n "${BENCH_OUT:-}" ] && cp "$out" "$BENCH_OUT"
exit 0
