#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# `imgcrypt inspect` as a user runs it over tests/data: DICOM and PGM files split and join back
# exactly with the geometry the files themselves state (read independently, with pydicom or
# dcmdump and a PNM header parser), compressed DICOMs and text are generic with their reason,
# PNGs are exact or generic (never a mismatch, whether or not the PNG adapter is built in),
# --json is one valid object per line with every field, an unreadable file gives exit 1 while
# the others are still listed, a stored image (container) shows without a key only its public
# header (version 1: which models decoding it needs; version 2: version, file id and bucketed
# section lengths) and with --keyring and a secret everything, and no patient data from the
# DICOM headers is ever printed.
#
# Needs the imgcrypt binary and /usr/bin/python3; pydicom (or dcmdump) for the DICOM geometry
# cross-check, skipped without either.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
[ -x /usr/bin/python3 ] || skip "/usr/bin/python3 is missing"
lib_setup_tool
DATA=$IMGC_TESTDATA

# row FILE: the human-output line of FILE, without the heading. Columns: 1 FORMAT, 2 GEOMETRY,
# 3 BITS, 4 BYTES, 5 ENVELOPE, 6 RECIPE, 7 %, 8 JOIN, 9 FILE (names here have no spaces).
row() {
    awk -v f="$1" 'NR > 1 && $9 == f' "$T/out"
}

# field FILE N: column N of FILE's line.
field() {
    row "$1" | awk -v n="$2" '{ print $n }'
}

# want_exact FILE FORMAT GEOMETRY BITS: FILE is taken by an adapter and joins back exactly.
want_exact() {
    local f=$1 line
    line=$(row "$f")
    [[ -n $line ]] || fail "$f is not listed"
    [[ $(field "$f" 1) == "$2" ]] || fail "$f: format $(field "$f" 1), expected $2"
    [[ $(field "$f" 2) == "$3" ]] || fail "$f: geometry $(field "$f" 2), expected $3"
    [[ $(field "$f" 3) == "$4" ]] || fail "$f: bits $(field "$f" 3), expected $4"
    [[ $(field "$f" 4) == "$(stat -c %s "$f")" ]] || fail "$f: wrong byte count"
    [[ $(field "$f" 5) =~ ^[0-9]+$ ]] || fail "$f: envelope size missing"
    [[ $(field "$f" 8) == exact ]] || fail "$f: join is $(field "$f" 8), expected exact"
}

# want_generic FILE REASON: FILE is generic and the reason contains REASON.
want_generic() {
    local line
    line=$(row "$1")
    [[ -n $line ]] || fail "$1 is not listed"
    [[ $(field "$1" 1) == generic ]] || fail "$1: format $(field "$1" 1), expected generic"
    [[ $line == *"($2"* ]] || fail "$1: reason does not say '$2': $line"
}

# The geometry a DICOM file states, as "CxFxHxW BITS", read without our code.
HAVE_PYDICOM=0
"$PY" -c 'import pydicom' 2>/dev/null && HAVE_PYDICOM=1
dicom_geometry() {
    if [[ $HAVE_PYDICOM == 1 ]]; then
        "$PY" - "$1" <<'EOF'
import sys, pydicom
d = pydicom.dcmread(sys.argv[1], stop_before_pixels=True)
frames = int(getattr(d, "NumberOfFrames", 1) or 1)
print(f"{d.SamplesPerPixel}x{frames}x{d.Rows}x{d.Columns} {d.BitsAllocated}")
EOF
    elif command -v dcmdump >/dev/null; then
        dcmdump -q "$1" | awk '
            /^\(0028,0002\)/ { c = $3 } /^\(0028,0008\)/ { f = $3; gsub(/[][]/, "", f) }
            /^\(0028,0010\)/ { h = $3 } /^\(0028,0011\)/ { w = $3 } /^\(0028,0100\)/ { b = $3 }
            END { if (f == "") f = 1; print c "x" f "x" h "x" w " " b }'
    fi
}

# The geometry a binary PNM file states, as "CxFxHxW BITS/SIGNIFICANT", from its header.
pnm_geometry() {
    "$PY" - "$1" <<'EOF'
import re, sys
data = open(sys.argv[1], "rb").read(4096)
magic, rest = data[:2], data[2:]
tokens = []
while len(tokens) < 3:
    rest = re.sub(rb"^(\s|#[^\n]*\n)+", b"", rest)
    m = re.match(rb"\d+", rest)
    tokens.append(int(m.group()))
    rest = rest[m.end():]
w, h, maxval = tokens
c = 3 if magic == b"P6" else 1
print(f"{c}x1x{h}x{w} {8 if maxval < 256 else 16}/{maxval.bit_length()}")
EOF
}

step "generated inputs"
# An 8-bit P6 with a comment, a 16-bit P6, a text file, and a file beyond the 4 GiB limit
# (sparse: nothing is read).
{
    printf 'P6\n# made by test_inspect\n7 5\n255\n'
    head -c $((7 * 5 * 3)) /dev/urandom
} >rgb8.ppm
{
    printf 'P6 3 2 65535\n'
    head -c $((3 * 2 * 3 * 2)) /dev/urandom
} >rgb16.ppm
printf 'Patient notes are not an image.\n' >notes.txt
truncate -s $(((1 << 32) + 1)) huge.bin

shopt -s nullglob
DCM=("$DATA"/*.dcm)
PGM=("$DATA"/*.pgm)
PNG=("$DATA"/*.png)
shopt -u nullglob
[[ ${#DCM[@]} -gt 0 && ${#PGM[@]} -gt 0 ]] || fail "no test images in $DATA"
FILES=("${DCM[@]}" "${PGM[@]}" "${PNG[@]}" "$T/rgb8.ppm" "$T/rgb16.ppm" "$T/notes.txt"
    "$T/huge.bin")

step "human output over tests/data"
expect 0 "$IMGCRYPT" inspect "${FILES[@]}"
[[ $(head -n 1 "$T/out") == FORMAT* ]] || fail "no heading"
[[ $(($(wc -l <"$T/out") - 1)) == "${#FILES[@]}" ]] || fail "not one line per file"
[[ ! -s $T/err ]] || fail "unexpected messages on stderr"
! grep -q MISMATCH "$T/out" || fail "a file does not join back exactly"

step "native DICOM: exact, with the geometry the file states"
NATIVE=(CT_small ExplVR_BigEnd MR_small MR_small_bigendian MR_small_implicit SC_rgb_small_odd)
want_exact "$DATA/MR_small.dcm" DICOM 1x1x64x64 16/16
for n in "${NATIVE[@]}"; do
    f=$DATA/$n.dcm
    [[ -f $f ]] || continue
    geo=$(dicom_geometry "$f")
    if [[ -z $geo ]]; then
        echo "   (no pydicom or dcmdump: $n geometry not cross-checked)"
        [[ $(field "$f" 8) == exact ]] || fail "$f: not exact"
        continue
    fi
    want_exact "$f" DICOM "${geo% *}" "$(field "$f" 3)"
    [[ $(field "$f" 3) == "${geo#* }"/* ]] || fail "$f: bits $(field "$f" 3), file says ${geo#* }"
done

step "compressed DICOM: RLE exact, with its RLE section as the recipe; the rest generic"
want_exact "$DATA/MR_small_RLE.dcm" DICOM 1x1x64x64 16/16
[[ $(field "$DATA/MR_small_RLE.dcm" 6) =~ ^[0-9]+$ ]] || fail "RLE: no recipe size"
want_generic "$DATA/JPEG2000.dcm" "DICOM: encapsulated JPEG 2000"
for f in "${DCM[@]}"; do
    case $(field "$f" 1) in
    DICOM) [[ $(field "$f" 8) == exact ]] || fail "$f: not exact" ;;
    generic) [[ $(row "$f") == *"(DICOM: "* ]] || fail "$f: generic without a DICOM reason" ;;
    *) fail "$f: format $(field "$f" 1)" ;;
    esac
done

step "PNM: exact, with the geometry of the header"
for f in "${PGM[@]}" "$T/rgb8.ppm" "$T/rgb16.ppm"; do
    geo=$(pnm_geometry "$f")
    want_exact "$f" PNM "${geo% *}" "${geo#* }"
done
want_exact "$T/rgb8.ppm" PNM 3x1x5x7 8/8
want_exact "$T/rgb16.ppm" PNM 3x1x2x3 16/16
for f in "${PGM[@]}"; do
    # binary: no recipe; plain (P2): its layout, a few bytes
    if [[ $(head -c 2 "$f") == P2 ]]; then
        [[ $(field "$f" 6) =~ ^[0-9]+$ ]] || fail "$f: no layout size for a plain PGM"
    else
        [[ $(field "$f" 6) == - ]] || fail "$f: a recipe for a binary PGM"
    fi
done

step "PNG: exact or generic with a PNG reason, never a mismatch"
for f in "${PNG[@]}"; do
    case $(field "$f" 1) in
    PNG)
        [[ $(field "$f" 8) == exact ]] || fail "$f: not exact"
        wh=$("$PY" -c 'import sys
from PIL import Image
im = Image.open(sys.argv[1]); print(f"x{im.height}x{im.width}")' "$f" 2>/dev/null || true)
        [[ -z $wh || $(field "$f" 2) == *"$wh" ]] || fail "$f: geometry $(field "$f" 2), file is $wh"
        [[ $(field "$f" 6) != - ]] || fail "$f: no recipe column for a PNG"
        ;;
    generic) [[ $(row "$f") == *"(PNG: "* ]] || fail "$f: generic without a PNG reason" ;;
    *) fail "$f: format $(field "$f" 1)" ;;
    esac
done

step "not an image, or too large: generic"
want_generic "$T/notes.txt" "not a supported image format"
want_generic "$T/huge.bin" "file beyond limits"
[[ $(field "$T/huge.bin" 4) == $(((1 << 32) + 1)) ]] || fail "huge.bin: wrong byte count"

step "stored images: a PNG that says which models decoding it needs"
# The golden containers (tests/data/golden): v2's pixels are coded by the neural predictor with
# the coder model its keyring lists, v1's by the fixed predictor; tiny-7x5 has no features.
G=$DATA/golden
expect 0 "$IMGCRYPT" info "$G/v2/store"
coder=$(awk '$2 == "coder" { print substr($1, 1, 16) }' "$T/out")
ae=$(awk '$2 == "autoencoder" { print substr($1, 1, 16) }' "$T/out")
[[ -n $coder && -n $ae ]] || fail "the golden v2 keyring lists no coder model or autoencoder"
expect 0 "$IMGCRYPT" inspect "$G/v2/mri-t1-axial-8bit.pgm.ct" "$G/v1/mri-t1-axial-8bit.pgm.ct" \
    "$G/v1/tiny-7x5.pgm.ct" "$DATA/mri-t1-axial-8bit.png"
[[ $(row "$G/v2/mri-t1-axial-8bit.pgm.ct") == *"(stored image: features by autoencoder $ae, pixels by coder model $coder)" ]] ||
    fail "a v2 container does not name its models: $(row "$G/v2/mri-t1-axial-8bit.pgm.ct")"
[[ $(row "$G/v1/mri-t1-axial-8bit.pgm.ct") == *"pixels by the fixed predictor)" ]] ||
    fail "a v1 container does not say it needs no coder model"
[[ $(row "$G/v1/tiny-7x5.pgm.ct") == *"(stored image: no features, pixels by the fixed predictor)" ]] ||
    fail "a container without features does not say so"
[[ $(row "$DATA/mri-t1-axial-8bit.png") != *"stored image"* ]] || fail "a plain PNG is called a stored image"
expect 0 "$IMGCRYPT" inspect --json "$G/v2/mri-t1-axial-8bit.pgm.ct"
grep -q "\"reason\":\"stored image: features by autoencoder $ae, pixels by coder model $coder\"" "$T/out" ||
    fail "--json does not give the stored image's models as its reason"

step "a stored image of today (container v2): public header only without a key, all with it"
# CT_small.dcm: a 128 x 128 16-bit DICOM. Without a key nothing of it may show but the version,
# the file id and bucketed lengths; with the keyring its format, geometry, size and models.
ORIG=$DATA/CT_small.dcm
expect 0 "$IMGCRYPT" inspect "$ORIG"
geo=$(field "$ORIG" 2)
bits=$(field "$ORIG" 3)
size=$(stat -c %s "$ORIG")
head -c 32 /dev/urandom >"$T/key"
head -c 32 /dev/urandom >"$T/key2"
chmod 600 "$T/key" "$T/key2"
expect 0 "$IMGCRYPT" init --keyfile "$T/key" --kdf-cost 10 "$T/store"
expect 0 "$IMGCRYPT" init --keyfile "$T/key2" --kdf-cost 10 "$T/store2"
expect 0 "$IMGCRYPT" info "$T/store"
ae=$(awk '$2 == "autoencoder" { print substr($1, 1, 16) }' "$T/out" | tail -n 1)
[[ -n $ae ]] || fail "the new keyring lists no autoencoder"
expect 0 "$IMGCRYPT" encrypt --keyfile "$T/key" --coder fixed "$T/store" "$ORIG" "$T/ct.png"
id=$(od -An -tx1 -j49 -N16 "$T/ct.png" | tr -d ' \n') # file id: icHd data (41) + 8
expect 0 "$IMGCRYPT" inspect "$T/ct.png"
line=$(row "$T/ct.png")
[[ $line =~ \(stored\ image\ v2,\ file\ id\ $id:\ features\ ([0-9]+),\ envelope\ ([0-9]+),\ pixels\ ([0-9]+)\ bytes\ sealed\ \(bucketed\)\;\ format,\ geometry,\ size\ and\ models\ sealed\)$ ]] ||
    fail "a v2 container without a key: $line"
for n in "${BASH_REMATCH[@]:1}"; do
    ((n % 256 == 0)) || fail "section length $n is not on the bucket grid"
done
reason=${line#*(stored image}
for leak in DICOM "${geo#1x1x}" "$size" "$ae"; do
    [[ $reason != *"$leak"* ]] || fail "without a key, inspect shows '$leak': $line"
done
expect 0 "$IMGCRYPT" inspect --json "$T/ct.png"
grep -q "\"reason\":\"stored image v2, file id $id: features" "$T/out" || fail "--json without a key"
expect 0 "$IMGCRYPT" inspect --keyring "$T/store/imgcryptfs.keyring" --keyfile "$T/key" \
    "$T/ct.png" "$G/v1/tiny-7x5.pgm.ct"
[[ $(row "$T/ct.png") == *"(stored image v2, file id $id, DICOM $geo ${bits%/*}-bit, $size bytes: features by autoencoder $ae, pixels by the fixed predictor)" ]] ||
    fail "a v2 container with its keyring: $(row "$T/ct.png")"
[[ $(row "$G/v1/tiny-7x5.pgm.ct") == *"(stored image v1, file id "*", PNM 1x1x5x7 8-bit, 46 bytes: no features, pixels by the fixed predictor)" ]] ||
    fail "a v1 container with a keyring: $(row "$G/v1/tiny-7x5.pgm.ct")"
expect 5 "$IMGCRYPT" inspect --keyring "$T/store2/imgcryptfs.keyring" --keyfile "$T/key2" \
    "$T/ct.png"
[[ $(row "$T/ct.png") == *"models sealed: the keyring does not open them)" ]] ||
    fail "another keyring: $(row "$T/ct.png")"
grep -q "authentication failed" "$T/err" || fail "another keyring: no message"
expect 2 "$IMGCRYPT" inspect --keyfile "$T/key" "$T/ct.png"

step "standard input"
expect 0 "$IMGCRYPT" inspect "$DATA/MR_small.dcm"
sed 's|[^ ]*MR_small.dcm$|-|' "$T/out" >"$T/human-mr"
rc=0
"$IMGCRYPT" inspect - <"$DATA/MR_small.dcm" >"$T/out" 2>"$T/err" || rc=$?
cat "$T/out" "$T/err" >>"$ALL_OUTPUT"
[[ $rc == 0 ]] || fail "exit $rc for standard input"
[[ $(row -) == "$(sed -n 2p "$T/human-mr")" ]] || fail "standard input not seen as the file is"

step "--json: one object per line, with every field, agreeing with the table"
expect 0 "$IMGCRYPT" inspect "${FILES[@]}"
cp "$T/out" "$T/human"
expect 0 "$IMGCRYPT" inspect --json "${FILES[@]}"
"$PY" - "$T/out" "$T/human" "${FILES[@]}" <<'EOF' || fail "JSON output is wrong"
import json, sys
out, human, files = sys.argv[1], sys.argv[2], sys.argv[3:]
keys = {"file", "bytes", "format", "channels", "frames", "height", "width", "bits",
        "significant", "envelope_bytes", "recipe_bytes", "recipe_percent", "join", "reason",
        "error"}
lines = open(out, encoding="utf-8").read().splitlines()
table = {l.split()[8]: l.split() for l in open(human).read().splitlines()[1:]}
assert len(lines) == len(files), (len(lines), len(files))
for line, name in zip(lines, files):
    o = json.loads(line)
    assert isinstance(o, dict) and set(o) == keys, (name, sorted(o))
    assert o["file"] == name and o["error"] is None, o
    t = table[name]
    assert o["format"] == t[0] and o["bytes"] == int(t[3]), (o, t)
    if o["format"] == "generic":
        assert o["join"] is None and o["channels"] is None and o["reason"], o
    else:
        geo = "x".join(str(o[k]) for k in ("channels", "frames", "height", "width"))
        assert geo == t[1] and f"{o['bits']}/{o['significant']}" == t[2], (o, t)
        assert o["envelope_bytes"] == int(t[4]) and o["join"] == t[7] == "exact", (o, t)
        assert (o["recipe_bytes"] is None) == (t[5] in ("-", "?")), o
        # a recipe: PNG, plain PNM, and DICOM RLE Lossless (its transfer syntax UID, NUL-padded)
        rle = b"1.2.840.10008.1.2.5\0" in open(name, "rb").read(4096)
        assert o["format"] in ("PNG", "PNM") or t[5] == "-" or rle, o
EOF

step "--json escapes file names"
odd=$T/$'we"ird\\name\tÉ.pgm'
cp "$DATA/mri-t1-axial-8bit.pgm" "$odd"
expect 0 "$IMGCRYPT" inspect --json "$odd"
"$PY" -c 'import json, sys
o = json.loads(open(sys.argv[1], encoding="utf-8").read())
assert o["file"] == sys.argv[2] and o["join"] == "exact", o' "$T/out" "$odd" ||
    fail "file name not escaped"
expect 0 "$IMGCRYPT" inspect "$odd"
grep -qF '\x09' "$T/out" || fail "control character in a name not shown as \\x09"

step "a missing file: exit 1, the others still listed"
expect 1 "$IMGCRYPT" inspect "$DATA/MR_small.dcm" "$T/no-such-file.dcm" "${PGM[0]}"
want_exact "$DATA/MR_small.dcm" DICOM 1x1x64x64 16/16
[[ $(field "${PGM[0]}" 8) == exact ]] || fail "file after the missing one not listed"
grep -qF "no-such-file.dcm" "$T/err" || fail "missing file not named on stderr"
expect 1 "$IMGCRYPT" inspect --json "$T/no-such-file.dcm" "$DATA/MR_small.dcm"
"$PY" -c 'import json, sys
a, b = [json.loads(l) for l in open(sys.argv[1])]
assert a["error"] and a["format"] is None, a
assert b["join"] == "exact" and b["error"] is None, b' "$T/out" || fail "JSON for a missing file"
expect 1 "$IMGCRYPT" inspect "$T"

step "command line"
expect 2 "$IMGCRYPT" inspect
expect 2 "$IMGCRYPT" inspect --bogus "$DATA/MR_small.dcm"
expect 0 "$IMGCRYPT" inspect --help
grep -q inspect "$T/out" || fail "--help does not show inspect"

step "no patient data in anything printed"
# The patient's name (PN values have a '^'), and every longer string of the header.
NAME=$(strings -n 6 "$DATA/MR_small.dcm" | grep -m 1 -E '^[A-Za-z]+\^[A-Za-z0-9]+' |
    sed 's/ *$//')
[[ -n $NAME ]] || fail "no patient name found in MR_small.dcm"
! grep -qF -- "$NAME" "$ALL_OUTPUT" || fail "patient name '$NAME' printed"
while IFS= read -r s; do
    s=${s%% }
    [[ ${#s} -ge 8 ]] || continue
    ! grep -qF -- "$s" "$ALL_OUTPUT" || fail "header string '$s' of MR_small.dcm printed"
done < <(strings -n 8 "$DATA/MR_small.dcm")

echo "PASS"
