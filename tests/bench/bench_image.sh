#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# bench_image.sh: the image path end to end (codec_pipeline_encode / decode / preview, through the
# library's API: bench_image.c), beside the reference lossless coders of the same run
# (refcoders.sh), and a summary of the targets of the image-path issue, each met or missed.
#
# Corpus, made at run time: the images of ../shared/testdata (else tests/data): PNG, PGM and
# DICOM (encapsulated DICOM is refused by the image path and listed as such); slices of the
# brain MRI volumes of mricron-data (scripts/nii_slices.py), 8-bit (ch2, ch2better) and 16-bit
# (inia19-t1-brain, 12-bit range), PNG at their own size; for speed, ch2 slices resized to
# 256x256 and 512x512 (8-bit PNG, and the same pixels as PGM to show the cost of the PNG
# adapter apart).
# Printed:
#   1. per file: original and stored size, ratio, sections, latent and pixel-stream bits,
#      encode/decode/preview ms (bench_image size; every container decoded and compared);
#   2. bits per sample: ours (stream: the pixel stream of predictor 0, --coder fixed; neural: the
#      stream of --coder neural, the tools' default: the neural predictor unless a sample of the
#      stripes says predictor 0 codes smaller; stored: the whole container, fixed) beside
#      the PNG's IDAT, optipng -o2, JPEG-LS (CharLS), JPEG 2000 (OpenJPEG), JPEG XL (cjxl -d 0)
#      and zstd -19 of the raw samples, per file and as medians (PNG inputs, all inputs);
#   3. speed at 256^2 and 512^2 (bench_image speed): images/s both ways on two cores, ms per
#      image, preview, and where the time goes; then PGM with --coder neural (256^2, 512^2) and
#      smallest (512^2);
#   4. the summary: each target, the measured figure, met or missed.
# Timings come from a 2-core machine shared with other work: indicative, not a reference.
#
# Usage: bash tests/bench/bench_image.sh      (a few minutes with the defaults)
# Environment: IMGC_BUILD=DIR (default build; the programs are DIR/bench/bench_image and
#              DIR/bench/bench_pixcode, the latter for JPEG-LS and the PNM dumps),
#              BENCH_PER_AXIS=N (corpus slices per axis and volume, default 2),
#              BENCH_SPEED_PER_AXIS=N (speed-set slices per axis, default 2: 6 images a set),
#              BENCH_RUNS=N (runs of each timing, median taken; default 5), BENCH_KEEP=1
# Needs: optipng libcharls2 libopenjp2-tools libjxl-tools zstd mricron-data python3-pil
# (Debian packages; a missing reference coder gives "-" in its column).
# Exit status: 1 when a container does not decode to its input or an encode fails.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${IMGC_BUILD:-$root/build}
prog=$build/bench/bench_image
pixprog=$build/bench/bench_pixcode
[ -x "$prog" ] || cmake --build "$build" --target bench_image >/dev/null
[ -x "$pixprog" ] || cmake --build "$build" --target bench_pixcode >/dev/null
work=$(mktemp -d /tmp/imgc-bench-image-XXXXXX)
cleanup() { [ "${BENCH_KEEP:-0}" = 1 ] && echo "corpus kept in $work" >&2 || rm -rf "$work"; }
trap cleanup EXIT
py=/usr/bin/python3
say() { printf '[bench] %s\n' "$*" >&2; }
# shellcheck source=refcoders.sh
. "$here/refcoders.sh"
runs=${BENCH_RUNS:-5}
kv=$work/kv.txt
kv2=$work/kv-neural.txt

missing=
for p in optipng libcharls2 libopenjp2-tools libjxl-tools zstd mricron-data python3-pil; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
[ -z "$missing" ] || say "not installed:$missing (apt-get install$missing)"

say "making the corpus in $work"
mkdir -p "$work/in" "$work/ref"
shared=$root/../shared/testdata
[ -d "$shared" ] || shared=$root/tests/data
for f in "$shared"/*.png "$shared"/*.pgm "$shared"/*.dcm; do
    [ -f "$f" ] && cp "$f" "$work/in/"
done
$py "$root/scripts/nii_slices.py" --out "$work/in" --per-axis "${BENCH_PER_AXIS:-2}" \
    --volumes ch2,ch2better,inia19-t1-brain >/dev/null
for size in 256 512; do
    $py "$root/scripts/nii_slices.py" --out "$work/png$size" --volumes ch2 --size "$size" \
        --per-axis "${BENCH_SPEED_PER_AXIS:-2}" >/dev/null
    mkdir -p "$work/pgm$size"
    $py - "$work/png$size" "$work/pgm$size" <<'EOF'
import os, sys
from PIL import Image
for f in sorted(os.listdir(sys.argv[1])):
    Image.open(os.path.join(sys.argv[1], f)).save(os.path.join(sys.argv[2], f[:-4] + '.pgm'))
EOF
done

echo "== Stored form per file (codec_pipeline_encode, threads 2; sizes in bytes; ms: median of 3;"
echo "   feat/env: whole icFt/icEv chunks, pixels: sealed stream, png: the rest of the container)"
say "encoding $(ls "$work/in" | wc -l) images through the container"
"$prog" -k "$kv" size "$work"/in/* || {
    say "a round trip failed"
    exit 1
}

say "the same through --coder neural (the tools' default)"
"$prog" -k "$kv2" -c neural size "$work"/in/* >"$work/neural.txt" || {
    say "a round trip failed (coder neural)"
    exit 1
}

say "reference coders"
refc_measure "$pixprog" "$work/ref" "$work"/in/*
# ours beside the references: stream and stored bits per sample from bench_image, the PNG's
# IDAT and JPEG-LS from bench_pixcode size
$py - "$kv" "$work/ref/size.txt" "$kv2" >"$work/ours.txt" <<'EOF'
import sys
ref, neural = {}, {}
for line in open(sys.argv[2]).read().splitlines()[1:]:
    p = line.split()
    ref[p[0]] = (p[3], p[4])
for line in open(sys.argv[3]):
    p = line.split()
    if p[0] == 'file':
        neural[p[1]] = int(p[10])
print('image samples stream neural stored idat jpegls')
for line in open(sys.argv[1]):
    p = line.split()
    if p[0] != 'file':
        continue
    name, samples, stored, stream = p[1], int(p[4]), int(p[7]), int(p[10])
    idat, jls = ref.get(name, ('-', '-'))
    sm = '%.4f' % (8.0 * neural[name] / samples) if name in neural else '-'
    print(name, samples, '%.4f' % (8.0 * stream / samples), sm,
          '%.4f' % (8.0 * stored / samples), idat, jls)
EOF
echo
echo "== Bits per sample (stream: our pixel stream, predictor 0, --coder fixed; neural: the stream"
echo "   of --coder neural, the tools' default; stored: our whole container, fixed; the others code"
echo "   the pixels only; every coder lossless)"
refc_table "$work/ours.txt" "$work/ref/ext.txt"

echo
echo "== Speed (bench_image speed; median of $runs runs; $(nproc) cores shared with other work,"
echo "   load average $(cut -d' ' -f1-3 /proc/loadavg) at the start: indicative figures)"
for size in 256 512; do
    for fmt in png pgm; do
        say "speed ${size}x${size} $fmt"
        "$prog" -k "$kv" speed "$runs" "${size}x${size}-8bit-$fmt" "$work/$fmt$size"/*
    done
done
for cs in neural:256 neural:512 smallest:512; do
    coder=${cs%:*} size=${cs#*:}
    say "speed ${size}x${size} pgm, --coder $coder"
    echo "--coder $coder:"
    "$prog" -k "$kv" -c "$coder" speed "$runs" "${size}x${size}-8bit-pgm-$coder" \
        "$work/pgm$size"/* | grep -v parts
done

echo
echo "== Summary (timings indicative: $(nproc) shared cores, load average $(cut -d' ' -f1-3 /proc/loadavg))"
$py - "$kv" "$work/ours.txt" "$work/ref/ext.txt" <<'EOF'
import sys, statistics
files, refused, speed = [], [], {}
for line in open(sys.argv[1]):
    p = line.split()
    if p[0] == 'file':
        files.append(dict(name=p[1], fmt=p[2], samples=int(p[4]), pixels=int(p[5]),
                          orig=int(p[6]), stored=int(p[7]), feat=int(p[8])))
    elif p[0] == 'refused':
        refused.append(p[1])
    elif p[0] == 'speed':
        speed[(p[1], p[2])] = float(p[3])
bps = {}
lines = open(sys.argv[2]).read().splitlines()
for line in lines[1:]:
    p = line.split()
    bps[p[0]] = {'n': int(p[1]), 'stream': p[2], 'neural': p[3], 'jpegls': p[6]}
for line in open(sys.argv[3]):
    name, opt, j2k, jxl, zst = line.split()
    if name in bps and jxl not in ('-', 'lossy'):
        bps[name]['jxl'] = '%.4f' % (8.0 * int(jxl) / bps[name]['n'])

rows = []
def row(target, figure, ok):
    verdict = 'info' if ok is None else ('met' if ok else 'MISSED')
    rows.append((target, figure, verdict))

stored_set = [f for f in files if f['fmt'] in ('png', 'dicom')]
over = [f for f in stored_set if f['stored'] > f['orig']]
worst = max(stored_set, key=lambda f: f['stored'] / f['orig'])
row('stored <= original, every PNG and native DICOM',
    '%d of %d; worst %.3f (%s)' % (len(stored_set) - len(over), len(stored_set),
                                   worst['stored'] / worst['orig'], worst['name']), not over)
pnm = [f for f in files if f['fmt'] == 'pnm']
if pnm:
    w = max(pnm, key=lambda f: f['stored'] / f['orig'])
    row('  (PGM inputs, no target)', '%d of %d; worst %.3f' %
        (sum(f['stored'] <= f['orig'] for f in pnm), len(pnm), w['stored'] / w['orig']), None)
row('  (encapsulated DICOM, refused: generic path)', ' '.join(refused) or 'none', None)

def paired(names, ref, ours='stream'):
    have = [n for n in names if bps[n].get(ref, '-') not in ('-', 'lossy')
            and bps[n].get(ours, '-') != '-']
    if not have:
        return None
    return (statistics.median(float(bps[n][ours]) for n in have),
            statistics.median(float(bps[n][ref]) for n in have), len(have))
allin = sorted(bps)
pngin = [n for n in allin if n.endswith('.png')]
for label, names in (('all inputs', allin), ('PNG inputs', pngin)):
    for ref, what, goal in (('jpegls', 'JPEG-LS', 'target'), ('jxl', 'JPEG XL', 'aim')):
        m = paired(names, ref)
        if m:
            row('median bps <= %s, %s (%s)' % (what, label, goal),
                '%.3f vs %.3f over %d' % m, m[0] <= m[1])
    for ref, what in (('jxl', 'JPEG XL'), ('jpegls', 'JPEG-LS')):
        m = paired(names, ref, 'neural')
        if m:
            row('neural: median bps <= %s, %s' % (what, label), '%.3f vs %.3f over %d' % m,
                m[0] <= m[1])
# the neural coder's issue: never more than 0.5% above predictor 0; at or below JPEG-LS on
# every 16-bit slice
both = [n for n in allin if bps[n]['neural'] != '-']
if both:
    r = {n: float(bps[n]['neural']) / float(bps[n]['stream']) for n in both
         if float(bps[n]['stream']) > 0}
    w = max(r, key=r.get)
    bad = [n for n in r if r[n] > 1.005]
    row('neural stream <= 1.005 x predictor 0, every input',
        '%d of %d; worst %.4f (%s)' % (len(r) - len(bad), len(r), r[w], w), not bad)
s16 = [n for n in both if n.endswith('-16.png') and bps[n]['jpegls'] not in ('-', 'lossy')]
if s16:
    lose = [n for n in s16 if float(bps[n]['neural']) > float(bps[n]['jpegls'])]
    row('neural <= JPEG-LS on every 16-bit slice', '%d of %d' % (len(s16) - len(lose), len(s16)),
        not lose)

def sp(size, fmt, key):
    return speed.get(('%dx%d-8bit-%s' % (size, size, fmt), key))
for size, goal, pub in ((512, 50, 3.65), (256, 150, 14.28)):
    a, b = sp(size, 'png', 'enc1_ips'), sp(size, 'png', 'enc2_ips')
    ga, gb = sp(size, 'pgm', 'enc1_ips'), sp(size, 'pgm', 'enc2_ips')
    if a is not None:
        row('encode >= %d images/s at %d^2 8-bit' % (goal, size),
            '%.1f/s (1 at a time %.1f, 2 at once %.1f; PGM %.1f, %.1f)' %
            (max(a, b), a, b, ga or 0, gb or 0), max(a, b) >= goal)
        row('  (published GAN scheme, GPU)', '%.2f/s' % pub, None)
for size, goal in ((512, 50), (256, 150)):
    e = sp(size, 'pgm-neural', 'enc2_ips')
    if e is not None:
        row('neural: encode >= %d images/s at %d^2 PGM (2 at once)' % (goal, size),
            '%.1f/s' % e, e >= goal)
dd = sp(512, 'pgm-neural', 'dec1_ms')
if dd is not None:
    row('neural: decode <= 12 ms per 512^2 PGM (1 at a time)', '%.1f ms' % dd, dd <= 12)
e, dd = sp(512, 'pgm-smallest', 'enc2_ips'), sp(512, 'pgm-smallest', 'dec1_ms')
if e is not None:
    row('  (512^2 PGM, --coder smallest)', 'encode %.1f/s (2 at once), decode %.1f ms' %
        (e, dd or 0), None)
d = sp(512, 'png', 'dec1_ms')
if d is not None:
    row('decode <= 20 ms per 512^2 image (1 at a time)',
        '%.1f ms (PGM %.1f ms)' % (d, sp(512, 'pgm', 'dec1_ms') or 0), d <= 20)
for size in (256, 512):
    p = sp(size, 'png', 'prev_ms')
    if p is not None:
        row('preview <= 5 ms at %d^2' % size, '%.1f ms' % p, p <= 5)
lat = [8.0 * f['feat'] / f['pixels'] for f in files if f['feat']]
if lat:
    row('latent bits per pixel (median; min, max)', '%.3f (%.3f, %.3f) over %d' %
        (statistics.median(lat), min(lat), max(lat), len(lat)), None)
for size in (256, 512):
    for fmt in ('png', 'pgm'):
        k = '%dx%d-8bit-%s' % (size, size, fmt)
        if (k, 'p_enc_ms') in speed:
            v = [speed[(k, 'p_%s_ms' % x)] for x in ('enc', 'split', 'pixenc', 'ae', 'encrest')]
            row('  encode ms at %d^2 %s: split+pixels+AE+rest' % (size, fmt.upper()),
                '%.1f = %.1f + %.1f + %.1f + %.1f' % tuple(v), None)
w = max(len(r[0]) for r in rows)
for t, f, v in rows:
    print('%-*s  %-58s %s' % (w, t, f, v))
EOF
