#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# bench_ae_quality.sh: the shipped autoencoder's previews (nn/ae.h) next to standard lossy
# codecs at the same rate, on the same held-out images, with the same metrics.
#
# Images, made at run time:
#   - held-out MRI slices exactly as scripts/train_ae.sh selects them: scripts/nii_slices.py
#     --per-axis 40 over ch2, ch2better (8-bit) and inia19-t1-brain (16-bit, 12-bit range),
#     then the training scripts' split (scripts/heldout_split.py, which train_ae.sh uses) keeps the
#     slices in [0.44 N, 0.56 N) of each axis (6 per axis and volume, 54 in all); of those,
#     BENCH_PER_AXIS per axis and volume, evenly spread, are measured;
#   - the PNG and PGM images of ../shared/testdata (tests/data when it does not exist).
# Ours: `imgcrypt train --eval default` (build/bin/imgcrypt): PSNR and SSIM of the integer
#   decoder (the one previews use) and the latent's rate as the latent coder stores it (column
#   CODED, codec/pixel/latcode.h, with its own header; the container adds a fixed 32-byte latent head
#   and the 16-byte tag of its sealed section) over width x height.
# References, one grey or RGB PNM per image (bench_quality pnm: 8-bit images as maxval 255,
#   16-bit ones as maxval 2^depth - 1, e.g. 4095) coded at the rate ours got on that image: the
#   highest quality whose whole file is at most our latent's bits, its actual bpp reported; where
#   even the lowest quality is larger, that file is used and marked '*' (counted as "over").
#     j2k   OpenJPEG opj_compress -I (9/7 wavelet) -r RATIO, raw codestream (.j2k), 8 and 16-bit
#     jpeg  libjpeg-turbo cjpeg -quality Q -optimize (Q search), whole JFIF file; 8-bit only
#           (Debian's cjpeg has no 12-bit mode: 16-bit images get "-")
#     jxl   libjxl cjxl -d DISTANCE (search over 0.05..25), effort 7, 8 and 16-bit; where
#           distance 25 is still too large, with --resampling=4 (then 8) and a distance search
#     webp  libwebp cwebp -m 6 -q Q (Q search), whole RIFF file; 8-bit only
#   and each again at 0.125 bpp (the issue's bound). Every decoded file (opj_decompress, djpeg
#   -pnm, djxl, dwebp -ppm) is measured by bench_quality compare, which calls the same
#   nn_ae_psnr / nn_ae_ssim as train --eval, against the original read by the same loader.
# Output: a per-image table at matched rate, then per group (held-out slices and testdata,
#   8-bit and 16-bit, and all 8-bit / all 16-bit) median and mean bpp, PSNR, SSIM of every codec
#   at matched rate and at 0.125 bpp, and on how many images ours beats each codec.
#
# Usage: bash tests/bench/bench_ae_quality.sh
# Environment: IMGC_BUILD=DIR (default build: DIR/bin/imgcrypt, DIR/bench/bench_quality),
#              BENCH_PER_AXIS=N held-out slices per axis and volume (default 2, 6 = all 54),
#              BENCH_JOBS=N images coded at once (default 2), BENCH_KEEP=1 keeps the work dir.
# Needs (Debian): mricron-data python3 libopenjp2-tools libjpeg-turbo-progs libjxl-tools webp;
#   a missing codec's columns are "-". (webp was not installed here before this benchmark.)
# Takes about 2 minutes on 2 cores with the defaults.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
py=/usr/bin/python3
have() { command -v "$1" >/dev/null 2>&1; }

# ---- one image through every reference codec (run by xargs, see below) ----
# usage: bench_ae_quality.sh __one IMAGE GROUP OURS_BPP TMPDIR OUT
# Writes lines "image group codec target bpp psnr ssim over" to OUT.
if [ "${1:-}" = __one ]; then
    img=$2 group=$3 ours=$4 t=$5 out=$6
    mkdir -p "$t"
    read -r w h ch bits maxval < <("$BENCH_PROG" pnm "$img" "$t/in.pnm")
    ext=pgm
    [ "$ch" = 3 ] && ext=ppm
    px=$((w * h))
    prec=1
    while [ $(((1 << prec) - 1)) -lt "$maxval" ]; do prec=$((prec + 1)); done
    size() { stat -c %s "$1"; }
    # j2k BYTES: the file for a budget of BYTES bytes (ratio against the raw bits, corrected
    # until the codestream fits)
    enc_j2k() {
        local ratio
        ratio=$(awk -v r=$((px * ch * prec)) -v b="$1" 'BEGIN { x = r / (8 * b); print (x < 1 ? 1 : x) }')
        for _ in 1 2 3 4 5 6; do
            opj_compress -i "$t/in.pnm" -o "$t/x.j2k" -I -r "$ratio" >/dev/null 2>&1 || return 1
            [ "$(size "$t/x.j2k")" -le "$1" ] && return 0
            ratio=$(awk -v x="$ratio" -v s="$(size "$t/x.j2k")" -v b="$1" 'BEGIN { print x * s / b * 1.01 }')
        done
    }
    dec_j2k() { opj_decompress -i "$t/x.j2k" -o "$t/d.$ext" >/dev/null 2>&1; }
    # A bisection over integer qualities lo..hi for the largest whose file fits: enc_q Q writes
    # $t/x.$2; ends with that file written (or the lowest quality's, which does not fit).
    search_q() { # BYTES SUFFIX LO HI ENCODER
        local bytes=$1 sfx=$2 lo=$3 hi=$4 enc=$5 mid best=-1
        while [ "$lo" -le "$hi" ]; do
            mid=$(((lo + hi) / 2))
            "$enc" "$mid"
            if [ "$(size "$t/x.$sfx")" -le "$bytes" ]; then best=$mid lo=$((mid + 1)); else hi=$((mid - 1)); fi
        done
        [ "$best" -ge 0 ] || best=$3
        "$enc" "$best"
    }
    q_jpeg() { cjpeg -quality "$1" -optimize "$t/in.pnm" >"$t/x.jpg" 2>/dev/null; }
    enc_jpeg() { search_q "$1" jpg 1 100 q_jpeg; }
    dec_jpeg() { djpeg -pnm "$t/x.jpg" >"$t/d.$ext"; }
    q_webp() { cwebp -quiet -m 6 -q "$1" "$t/in.pnm" -o "$t/x.webp" 2>/dev/null; }
    enc_webp() { search_q "$1" webp 0 100 q_webp; }
    dec_webp() { dwebp -quiet "$t/x.webp" -ppm -o "$t/d.ppm" && mv "$t/d.ppm" "$t/d.x"; }
    # jxl: bisection on log(distance) for the smallest distance that fits, with the encoder's
    # own resampling choice; where even distance 25 does not fit, with 4x4 and then 8x8
    # downsampling (the format's low-rate tool, upsampled by the decoder). cjxl 0.7 ignores the
    # distance under --resampling=2, so that one is not tried.
    d_jxl() { cjxl --quiet --num_threads=1 --resampling="$rs" -d "$1" "$t/in.pnm" "$t/x.jxl" >/dev/null 2>&1; }
    enc_jxl() {
        local lo=0.05 hi=25 mid rs
        for rs in -1 4 8; do
            d_jxl "$hi"
            [ "$(size "$t/x.jxl")" -le "$1" ] && break
        done
        [ "$(size "$t/x.jxl")" -le "$1" ] || return 0
        for _ in 1 2 3 4 5 6 7 8; do
            mid=$(awk -v a="$lo" -v b="$hi" 'BEGIN { printf "%.4f", sqrt(a * b) }')
            d_jxl "$mid"
            if [ "$(size "$t/x.jxl")" -le "$1" ]; then hi=$mid; else lo=$mid; fi
        done
        d_jxl "$hi"
    }
    dec_jxl() { djxl --quiet "$t/x.jxl" "$t/d.$ext" >/dev/null 2>&1; }
    declare -A tool=([j2k]=opj_compress [jpeg]=cjpeg [jxl]=cjxl [webp]=cwebp)
    declare -A file=([j2k]=x.j2k [jpeg]=x.jpg [jxl]=x.jxl [webp]=x.webp)
    : >"$out"
    for target in matched 0.125; do
        bpp=$ours
        [ "$target" = matched ] || bpp=$target
        bytes=$(awk -v b="$bpp" -v n="$px" 'BEGIN { printf "%d", b * n / 8 }')
        for c in j2k jpeg jxl webp; do
            if ! have "${tool[$c]}" || { [ "$bits" = 16 ] && { [ "$c" = jpeg ] || [ "$c" = webp ]; }; }; then
                continue
            fi
            rm -f "$t"/x.* "$t"/d.*
            if ! "enc_$c" "$bytes" || ! "dec_$c"; then
                echo "bench: $img: $c failed" >&2
                continue
            fi
            dec=$t/d.$ext
            [ "$c" = webp ] && dec=$t/d.x
            n=$(size "$t/${file[$c]}")
            if ! read -r psnr ssim < <("$BENCH_PROG" compare "$img" "$dec"); then
                echo "bench: $img: $c: decoded image not measured" >&2
                continue
            fi
            over=0
            [ "$n" -le "$bytes" ] || over=1
            echo "$img $group $c $target $(awk -v n="$n" -v p="$px" 'BEGIN { printf "%.5f", 8 * n / p }') $psnr $ssim $over" >>"$out"
        done
    done
    exit 0
fi

build=$(cd "${IMGC_BUILD:-$root/build}" && pwd)
imgcrypt=$build/bin/imgcrypt
prog=$build/bench/bench_quality
if [ ! -x "$imgcrypt" ] || [ ! -x "$prog" ]; then
    cmake --build "$build" --target imgcrypt bench_quality >/dev/null
fi
[ -d /usr/share/mricron/templates ] || { echo "bench: apt-get install mricron-data" >&2; exit 1; }
for t in opj_compress:libopenjp2-tools cjpeg:libjpeg-turbo-progs cjxl:libjxl-tools cwebp:webp; do
    have "${t%%:*}" || echo "bench: ${t%%:*} missing (apt-get install ${t#*:}): its columns are -" >&2
done
work=$(mktemp -d /tmp/imgc-bench-quality-XXXXXX)
cleanup() {
    if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "work dir kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
say() { printf '[bench] %s\n' "$*" >&2; }
start=$(date +%s)

# ---- held-out slices: the split of training (scripts/heldout_split.py) ----
say "cutting slices (nii_slices.py --per-axis 40, as train_ae.sh)"
mkdir -p "$work/all" "$work/train" "$work/heldout" "$work/in"
$py "$root/scripts/nii_slices.py" --out "$work/all" --per-axis 40 >/dev/null
$py "$root/scripts/heldout_split.py" "$work" >&2
per=${BENCH_PER_AXIS:-2}
# BENCH_PER_AXIS of each volume and axis's held-out slices, evenly spread
$py - "$work/heldout" "$per" <<'EOF' | while read -r f; do ln -s "$(readlink "$work/heldout/$f")" "$work/in/$f"; done
import collections, os, re, sys
d, per = sys.argv[1], int(sys.argv[2])
groups = collections.defaultdict(list)
for f in sorted(os.listdir(d)):
    m = re.match(r'(.+)-(axial|coronal|sagittal)-(\d+)-(\d+)\.png$', f)
    groups[(m.group(1), m.group(2))].append((int(m.group(3)), f))
for key in sorted(groups):
    s = sorted(groups[key])
    pick = s if per >= len(s) else [s[int((k + 0.5) * len(s) / per)] for k in range(per)]
    for _, f in pick:
        print(f)
EOF
shared=$root/../shared/testdata
[ -d "$shared" ] || shared=$root/tests/data
shopt -s nullglob
testdata=("$shared"/*.png "$shared"/*.pgm)
slices=("$work"/in/*.png)
say "${#slices[@]} held-out slices, ${#testdata[@]} testdata images ($shared)"

# ---- ours ----
"$imgcrypt" train --eval default "${slices[@]}" "${testdata[@]}" >"$work/ours.txt"
: >"$work/jobs.txt"
for f in "${slices[@]}" "${testdata[@]}"; do
    line=$(awk -v f="$f" '$NF == f' "$work/ours.txt")
    [ -n "$line" ] || { echo "bench: no figures of ours for $f" >&2; exit 1; }
    read -r _ _ _ bpp ipsnr issim _ <<<"$line" # CODED: the latent as the container stores it
    set=testdata
    [ "${f#"$work"/in/}" != "$f" ] && set=slices
    bits=$("$prog" pnm "$f" /dev/null | awk '{ print $4 }')
    echo "$f $set-$bits ours matched $bpp $ipsnr $issim 0" >>"$work/ours.tsv"
    echo "$f $set-$bits $bpp" >>"$work/jobs.txt"
done

# ---- references ----
say "coding with the references ($(wc -l <"$work/jobs.txt") images, ${BENCH_JOBS:-2} at a time)"
export BENCH_PROG=$prog
mkdir -p "$work/res"
awk '{ print $1, $2, $3, NR }' "$work/jobs.txt" |
    xargs -P "${BENCH_JOBS:-2}" -n 4 sh -c \
        'bash "$0" __one "$1" "$2" "$3" "'"$work"'/t$4" "'"$work"'/res/$4.tsv"' "$here/bench_ae_quality.sh"
cat "$work/ours.tsv" "$work"/res/*.tsv >"$work/all.tsv"

# ---- report ----
$py - "$work/all.tsv" <<'EOF'
import collections, os, statistics, sys
rows = collections.defaultdict(dict)  # (image) -> {(codec, target): (bpp, psnr, ssim, over)}
group = {}
for line in open(sys.argv[1]):
    img, g, codec, target, bpp, psnr, ssim, over = line.split()
    group[img] = g
    rows[img][(codec, target)] = (float(bpp), float(psnr), float(ssim), over == '1')
codecs = ['ours', 'j2k', 'jpeg', 'jxl', 'webp']
def cell(r, w=True):
    if r is None:
        return '%6s %6s %6s ' % ('-', '-', '-')
    return '%6.4f%s%6.2f %6.4f ' % (r[0], '*' if r[3] else ' ', r[1], r[2])
order = sorted(rows, key=lambda i: (group[i], os.path.basename(i)))
print('Per image at matched rate: bpp PSNR(dB) SSIM for each codec ("*": over our rate even at '
      'its lowest quality)')
print('%-36s %-11s ' % ('image', 'group') + ''.join('%-21s' % ('  ' + c) for c in codecs))
for i in order:
    print('%-36s %-11s ' % (os.path.basename(i)[:36], group[i]) +
          ''.join(cell(rows[i].get((c, 'matched'))) for c in codecs))
sets = [('held-out slices, 8-bit', lambda g: g == 'slices-8'),
        ('held-out slices, 16-bit', lambda g: g == 'slices-16'),
        ('testdata, 8-bit', lambda g: g == 'testdata-8'),
        ('testdata, 16-bit', lambda g: g == 'testdata-16'),
        ('all 8-bit', lambda g: g.endswith('-8')),
        ('all 16-bit', lambda g: g.endswith('-16'))]
print()
print('Summary: median and mean over the images of each set; "beats": images where ours has '
      'the higher PSNR / SSIM')
for target, label in (('matched', "at our rate (each image's own bpp)"),
                      ('0.125', 'at 0.125 bpp (ours: at its own rate, as above)')):
    print()
    print('== ' + label)
    print('%-24s %-5s %3s  %7s %7s %7s   %7s %7s %7s  %4s  %s' %
          ('set', 'codec', 'n', 'med-bpp', 'med-dB', 'med-SSIM', 'avg-bpp', 'avg-dB', 'avg-SSIM',
           'over', 'ours beats (PSNR, SSIM)'))
    for name, keep in sets:
        imgs = [i for i in order if keep(group[i])]
        if not imgs:
            continue
        for c in codecs:
            key = (c, 'matched' if c == 'ours' else target)
            got = [(i, rows[i][key]) for i in imgs if key in rows[i]]
            if not got:
                print('%-24s %-5s %3d  %s' % (name, c, 0, '-'))
                continue
            v = list(zip(*[r for _, r in got]))
            beats = ''
            if c != 'ours':
                both = [(rows[i][('ours', 'matched')], r) for i, r in got]
                beats = '%d/%d, %d/%d' % (sum(o[1] > r[1] for o, r in both), len(both),
                                          sum(o[2] > r[2] for o, r in both), len(both))
            print('%-24s %-5s %3d  %7.4f %7.2f %8.4f   %7.4f %7.2f %8.4f  %4d  %s' %
                  (name, c, len(got), statistics.median(v[0]), statistics.median(v[1]),
                   statistics.median(v[2]), statistics.mean(v[0]), statistics.mean(v[1]),
                   statistics.mean(v[2]), sum(v[3]), beats))
EOF
say "done in $(($(date +%s) - start)) s"
