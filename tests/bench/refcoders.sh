# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# refcoders.sh: the reference lossless coders that the image benchmarks print beside ours, in
# bits per sample of the pixel data, measured on the same corpus in the same run. Sourced, not
# run, by bench_pixcode.sh and bench_image.sh (bash, set -euo pipefail in the caller).
#
#   refc_measure PIXPROG WORK FILE...
#       PIXPROG is bench_pixcode (its `size` and `dump` commands do the in-process part). Writes
#       WORK/size.txt: `bench_pixcode size` (a header line, then per image: name, samples, and
#         bits per sample of pixcode (decoded and compared), the PNG's own IDAT chunks (PNG
#         inputs) and JPEG-LS by CharLS (libcharls.so.2)); images the adapters refuse (e.g.
#         encapsulated DICOM) are left out;
#       WORK/ext.txt: per image `name optipng j2k jxl zstd`, in bytes ("-" not applicable or
#         tool missing, "lossy" when djxl did not give the samples back):
#         optipng  the IDAT chunks after optipng -o2 (PNG inputs)
#         j2k      JPEG 2000 by OpenJPEG (opj_compress, lossless default), codestream
#         jxl      JPEG XL by libjxl (cjxl -d 0, default effort)
#         zstd     zstd -19 of the raw samples
#       Returns 1 when a pixcode round trip failed.
#   refc_table SIZE EXT
#       Prints bits per sample per image and the medians (PNG inputs, all inputs). SIZE is a
#       file shaped like WORK/size.txt whose header names the columns: every column but idat
#       and jpegls is one of ours and comes first; then idat optipng jpegls j2k jxl zstd.
#       Ends with how often our first column is at or below JPEG-LS.
#
# The other coders are told the bits the largest sample needs (a 12-bit scan in 16-bit words is
# a 12-bit image to them too), except cjxl, which gets 8 or 16 (cjxl 0.7 codes other PNM
# depths lossily). Each plane is one grey image to JPEG-LS.
# Needs: optipng, libcharls2, libopenjp2-tools, libjxl-tools, zstd, python3 (a missing tool
# gives "-" in its column).

refc_py=/usr/bin/python3

refc_have() { command -v "$1" >/dev/null 2>&1; }

refc_idat() { # the IDAT bytes of a PNG
    $refc_py - "$1" <<'EOF'
import struct, sys
b = open(sys.argv[1], 'rb').read(); i = 8; n = 0
while i + 8 <= len(b):
    l, t = struct.unpack('>I4s', b[i:i + 8])
    if t == b'IDAT': n += l
    i += 12 + l
print(n)
EOF
}

refc_same_pixels() { # two PNMs with equal samples (headers may differ in whitespace)
    $refc_py - "$1" "$2" <<'EOF'
import sys
def px(p):
    b = open(p, 'rb').read(); f = b.split(maxsplit=4)
    return f[1:4], f[4] if len(f) > 4 else b''
a, b = px(sys.argv[1]), px(sys.argv[2])
sys.exit(0 if a[0] == b[0] and len(a[1]) == len(b[1]) and a[1] == b[1] else 1)
EOF
}

refc_measure() {
    local prog=$1 work=$2
    shift 2
    mkdir -p "$work/tmp"
    "$prog" size "$@" 2>"$work/size.err" >"$work/size.txt" || {
        cat "$work/size.err" >&2
        if grep -q FAILED "$work/size.err"; then
            printf '[bench] %s\n' "a round trip failed" >&2
            return 1
        fi
    }
    local f b t opt j2k jxl zst ext
    : >"$work/ext.txt"
    for f in "$@"; do
        b=$(basename "$f")
        t=$work/tmp/x
        rm -f "$t".*
        opt=- j2k=- jxl=- zst=-
        if "$prog" dump "$f" "$t.pnm" "$t.raw" 2>/dev/null; then
            if refc_have opj_compress; then
                opj_compress -i "$t.pnm" -o "$t.j2k" >/dev/null 2>&1 && j2k=$(stat -c %s "$t.j2k")
            fi
            if refc_have cjxl; then
                # counted only when djxl gives the samples back exactly
                if cjxl -d 0 --quiet "$t.pnm" "$t.jxl" >/dev/null 2>&1; then
                    jxl=$(stat -c %s "$t.jxl")
                    ext=pgm
                    head -c 2 "$t.pnm" | grep -q P6 && ext=ppm
                    djxl "$t.jxl" "$t.back.$ext" >/dev/null 2>&1 &&
                        refc_same_pixels "$t.pnm" "$t.back.$ext" || jxl=lossy
                fi
            fi
        fi
        if [ -f "$t.raw" ] && refc_have zstd; then
            zstd -q -19 -f "$t.raw" -o "$t.zst" && zst=$(stat -c %s "$t.zst")
        fi
        case "$b" in
        *.png)
            refc_have optipng && optipng -quiet -o2 -out "$t.opt.png" "$f" &&
                opt=$(refc_idat "$t.opt.png")
            ;;
        esac
        echo "$b $opt $j2k $jxl $zst" >>"$work/ext.txt"
    done
    rm -f "$work/tmp"/x.*
}

refc_table() {
    $refc_py - "$1" "$2" <<'EOF'
import sys, statistics
lines = open(sys.argv[1]).read().splitlines()
head = lines[0].split()
ours = [c for c in head[2:] if c not in ('idat', 'jpegls')]
rows = {}
for line in lines[1:]:
    p = line.split()
    rows[p[0]] = dict(zip(head[2:], p[2:]), n=float(p[1]))
for line in open(sys.argv[2]):
    name, opt, j2k, jxl, zst = line.split()
    if name not in rows:
        continue
    r = rows[name]
    for k, v in (('optipng', opt), ('j2k', j2k), ('jxl', jxl), ('zstd', zst)):
        r[k] = '%.4f' % (8.0 * int(v) / r['n']) if v not in ('-', 'lossy') else v
cols = ours + ['idat', 'optipng', 'jpegls', 'j2k', 'jxl', 'zstd']
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
o = ours[0]
have = [n for n in rows if rows[n].get('jpegls', '-') != '-' and rows[n].get(o, '-') != '-']
wins = sum(1 for n in have if float(rows[n][o]) <= float(rows[n]['jpegls']))
print('%s <= JPEG-LS on %d of %d images' % (o, wins, len(have)))
EOF
}
