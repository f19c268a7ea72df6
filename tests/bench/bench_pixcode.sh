#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# bench_pixcode.sh: the lossless pixel coder (codec/pixcode.h) against the standard lossless
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
have() { command -v "$1" >/dev/null 2>&1; }

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
"$prog" size "$work"/in/* 2>"$work/size.err" >"$work/size.txt" || {
    cat "$work/size.err" >&2
    grep -q FAILED "$work/size.err" && { say "a round trip failed"; exit 1; }
}

idat() { # the IDAT bytes of a PNG
    $py - "$1" <<'EOF'
import struct, sys
b = open(sys.argv[1], 'rb').read(); i = 8; n = 0
while i + 8 <= len(b):
    l, t = struct.unpack('>I4s', b[i:i + 8])
    if t == b'IDAT': n += l
    i += 12 + l
print(n)
EOF
}

same_pixels() { # two PNMs with equal samples (headers may differ in whitespace)
    $py - "$1" "$2" <<'EOF'
import sys
def px(p):
    b = open(p, 'rb').read(); f = b.split(maxsplit=4)
    return f[1:4], f[4] if len(f) > 4 else b''
a, b = px(sys.argv[1]), px(sys.argv[2])
sys.exit(0 if a[0] == b[0] and len(a[1]) == len(b[1]) and a[1] == b[1] else 1)
EOF
}

# one line per image: name optipng j2k jxl zstd (bytes, - where not applicable)
: >"$work/ext.txt"
for f in "$work"/in/*; do
    b=$(basename "$f")
    t=$work/tmp/x
    rm -f "$t".*
    opt=- j2k=- jxl=- zst=-
    if "$prog" dump "$f" "$t.pnm" "$t.raw" 2>/dev/null; then
        if have opj_compress; then
            opj_compress -i "$t.pnm" -o "$t.j2k" >/dev/null 2>&1 && j2k=$(stat -c %s "$t.j2k")
        fi
        if have cjxl; then
            # counted only when djxl gives the samples back exactly
            if cjxl -d 0 --quiet "$t.pnm" "$t.jxl" >/dev/null 2>&1; then
                jxl=$(stat -c %s "$t.jxl")
                ext=pgm
                head -c 2 "$t.pnm" | grep -q P6 && ext=ppm
                djxl "$t.jxl" "$t.back.$ext" >/dev/null 2>&1 &&
                    same_pixels "$t.pnm" "$t.back.$ext" || jxl=lossy
            fi
        fi
    fi
    if [ -f "$t.raw" ] && have zstd; then
        zstd -q -19 -f "$t.raw" -o "$t.zst" && zst=$(stat -c %s "$t.zst")
    fi
    case "$b" in
    *.png) have optipng && optipng -quiet -o2 -out "$t.opt.png" "$f" && opt=$(idat "$t.opt.png") ;;
    esac
    echo "$b $opt $j2k $jxl $zst" >>"$work/ext.txt"
done

$py - "$work/size.txt" "$work/ext.txt" <<'EOF'
import sys, statistics
rows = {}
for line in open(sys.argv[1]).read().splitlines()[1:]:
    p = line.split()
    rows[p[0]] = {'n': float(p[1]), 'pixcode': p[2], 'idat': p[3], 'jpegls': p[4]}
for line in open(sys.argv[2]):
    name, opt, j2k, jxl, zst = line.split()
    if name not in rows:
        continue
    r = rows[name]
    for k, v in (('optipng', opt), ('j2k', j2k), ('jxl', jxl), ('zstd', zst)):
        r[k] = '%.4f' % (8.0 * int(v) / r['n']) if v not in ('-', 'lossy') else v
cols = ['pixcode', 'idat', 'optipng', 'jpegls', 'j2k', 'jxl', 'zstd']
print('%-44s %9s ' % ('bits per sample', 'samples') + ' '.join('%8s' % c for c in cols))
for name in sorted(rows):
    r = rows[name]
    print('%-44s %9d ' % (name, r['n']) + ' '.join('%8s' % r.get(c, '-') for c in cols))
def med(names, c):
    v = [float(rows[n][c]) for n in names if rows[n].get(c, '-') not in ('-', 'lossy')]
    return ('%8.3f' % statistics.median(v)) if v else '%8s' % '-'
png = [n for n in rows if n.endswith('.png')]
print('%-44s %9d ' % ('MEDIAN over PNG inputs', len(png)) + ' '.join(med(png, c) for c in cols))
print('%-44s %9d ' % ('MEDIAN over all inputs', len(rows)) + ' '.join(med(list(rows), c) for c in cols))
wins = sum(1 for n in rows if rows[n].get('jpegls', '-') != '-' and float(rows[n]['pixcode']) <= float(rows[n]['jpegls']))
print('pixcode <= JPEG-LS on %d of %d images' % (wins, sum(1 for n in rows if rows[n].get('jpegls', '-') != '-')))
EOF

say "speed (images/s; the whole image, planes coded stripe by stripe)"
for size in 256 512; do
    for th in 1 2; do
        printf '%sx%s 8-bit, ' "$size" "$size"
        "$prog" speed "$th" "$work/s$size"/*.png
    done
done
