#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# `imgcrypt encrypt / decrypt / preview` as a user meets them: every test file round-trips
# exactly (cmp) under a fresh keyring, through files and through stdin/stdout; images become
# containers that pngcheck and Pillow open as ordinary PNGs, other files block files; previews
# are PNGs; a wrong keyring, a wrong key file or a changed byte gives a one-line message, the
# documented exit code and no output file (nor a temporary one) left behind.
#
# Needs only the imgcrypt binary; pngcheck and python3 with Pillow are used where present.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
lib_setup_tool
DATA=$IMGC_TESTDATA
HAVE_PIL=0
"$PY" -c 'import PIL.Image' 2>/dev/null && HAVE_PIL=1
HAVE_PNGCHECK=0
command -v pngcheck >/dev/null && HAVE_PNGCHECK=1

# No output and no temporary file next to it.
nothing_left() {
    [[ ! -e $1 ]] || fail "$1 was left behind"
    local stray
    stray=$(find "$(dirname "$1")" -maxdepth 1 -name "$(basename "$1").tmp.*" | head -n1)
    [[ -z $stray ]] || fail "temporary file $stray was left behind"
}

is_container() { [[ $(head -c 8 "$1" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]]; }
is_blockfile() { [[ $(head -c 6 "$1") == IMGCBF ]]; }

pil_check() { # FILE: opens and decodes fully; prints mode and size
    "$PY" -c 'import sys, PIL.Image as I
im = I.open(sys.argv[1]); im.load(); print(im.mode, im.size[0], im.size[1])' "$1"
}

step "keyrings"
mkdir -p store other
head -c 32 /dev/urandom >key && chmod 600 key
head -c 32 /dev/urandom >key2 && chmod 600 key2
expect 0 "$IMGCRYPT" init --keyfile key --kdf-cost 10 store
expect 0 "$IMGCRYPT" init --keyfile key2 --kdf-cost 10 other

step "round trips of the test data"
n_ct=0
n_bf=0
for f in "$DATA"/*; do
    [[ -f $f ]] || continue
    b=$(basename "$f")
    STEP="round trip $b"
    expect 0 "$IMGCRYPT" encrypt --keyfile key store "$f" "$b.enc"
    expect 0 "$IMGCRYPT" decrypt --keyfile key store "$b.enc" "$b.dec"
    cmp -s "$f" "$b.dec" || fail "$b: decrypted bytes differ"
    if is_container "$b.enc"; then
        n_ct=$((n_ct + 1))
        if [[ $HAVE_PNGCHECK == 1 ]]; then
            pngcheck -q "$b.enc" >"$T/err" 2>&1 || fail "$b: pngcheck refuses the container"
        fi
        if [[ $HAVE_PIL == 1 ]]; then
            mode=$(pil_check "$b.enc" 2>"$T/err") || fail "$b: Pillow cannot read the container"
            [[ $mode == L\ * ]] || fail "$b: container is not 8-bit grey for Pillow ($mode)"
        fi
        # the stored form shows nothing of the original's header
        if grep -aq DICM "$b.enc"; then fail "$b: DICOM header visible in the container"; fi
        rc=0
        "$IMGCRYPT" preview --keyfile key store "$b.enc" "$b.preview.png" 2>"$T/err" || rc=$?
        if [[ $rc == 0 ]]; then
            if [[ $HAVE_PNGCHECK == 1 ]]; then
                pngcheck -q "$b.preview.png" >"$T/err" 2>&1 || fail "$b: pngcheck refuses the preview"
            fi
            if [[ $HAVE_PIL == 1 ]]; then
                pil_check "$b.preview.png" >/dev/null 2>"$T/err" || fail "$b: Pillow cannot read the preview"
                case $b in
                *.png | *.pgm)
                    want=$("$PY" -c 'import sys, PIL.Image as I; im = I.open(sys.argv[1]); print(*im.size)' "$f")
                    got=$("$PY" -c 'import sys, PIL.Image as I; im = I.open(sys.argv[1]); print(*im.size)' "$b.preview.png")
                    [[ $want == "$got" ]] || fail "$b: preview is $got, image $want"
                    ;;
                esac
            fi
        else
            [[ $rc == 1 ]] || fail "$b: preview exited $rc"
            error_says
            nothing_left "$b.preview.png"
        fi
    elif is_blockfile "$b.enc"; then
        n_bf=$((n_bf + 1))
    else
        fail "$b: stored form is neither a container nor a block file"
    fi
done
STEP="round trips"
[[ $n_ct -ge 10 ]] || fail "only $n_ct files became containers"
echo "   $n_ct containers, $n_bf block files"

step "previews show what the file shows: YBR 4:2:2 in colour, 32-bit doses in grey"
# The raster's channels of these files are not the file's samples (codec.h): Y0 Y1 Cb Cr at
# half width, two 16-bit words per sample. A viewer shows RGB at full width, and a dose.
if [[ $HAVE_PIL == 1 ]] && "$PY" -c 'import pydicom, numpy' 2>/dev/null; then
    check=$LIB_DIR/preview_check.py
    "$PY" "$check" dose "$DATA/rtdose.dcm" dose-le.dcm || fail "cannot make a 32-bit dose grid"
    "$PY" "$check" dose "$DATA/rtdose_expb.dcm" dose-be.dcm || fail "cannot make a 32-bit dose grid"
    # the lowest PSNR a preview may have (the autoencoder is lossy; channels taken as the
    # file's samples give 7-9 dB)
    for f in "$DATA/SC_ybr_full_422_uncompressed.dcm:14" dose-le.dcm:20 dose-be.dcm:20; do
        b=$(basename "${f%:*}")
        STEP="preview of $b"
        expect 0 "$IMGCRYPT" encrypt --keyfile key store "${f%:*}" "$b.pv.enc"
        expect 0 "$IMGCRYPT" decrypt --keyfile key store "$b.pv.enc" "$b.pv.dec"
        cmp -s "${f%:*}" "$b.pv.dec" || fail "$b: decrypted bytes differ"
        expect 0 "$IMGCRYPT" preview --keyfile key store "$b.pv.enc" "$b.pv.png"
        psnr=$("$PY" "$check" compare "$b.pv.png" "${f%:*}" "${f##*:}" 2>"$T/err") ||
            fail "$b: $(cat "$T/err")"
        echo "   $b: preview $psnr dB"
    done
else
    echo "   skipped: python3 with Pillow, pydicom and numpy is needed"
fi

step "coder modes"
# The keyring holds the shipped coder model (init puts it in): --coder neural codes with it
# unless a sample says predictor 0 codes smaller (never more than 0.5% above fixed),
# neural-only always codes with it, smallest keeps the smaller of both, fixed predictor 0;
# neural is the default; all give back the bytes.
# On the axial test slice the neural predictor is measurably smaller (codec/pixel/pixnet.h).
for f in "$DATA"/mri-t1-axial-8bit.png "$DATA"/mri-t1-coronal-512.png "$DATA"/MR_small.dcm; do
    b=$(basename "$f")
    for mode in fixed neural smallest neural-only; do
        STEP="coder $mode $b"
        expect 0 "$IMGCRYPT" encrypt --keyfile key --coder $mode store "$f" "$b.$mode.enc"
        expect 0 "$IMGCRYPT" decrypt --keyfile key store "$b.$mode.enc" "$b.$mode.dec"
        cmp -s "$f" "$b.$mode.dec" || fail "$b: --coder $mode: decrypted bytes differ"
    done
    STEP="coder sizes $b"
    sf=$(stat -c %s "$b.fixed.enc")
    sn=$(stat -c %s "$b.neural.enc")
    ss=$(stat -c %s "$b.smallest.enc")
    so=$(stat -c %s "$b.neural-only.enc")
    [[ $ss -le $sf && $ss -le $sn && $ss -le $so ]] ||
        fail "$b: smallest $ss, fixed $sf, neural $sn, neural-only $so"
    ((sn * 1000 <= sf * 1005)) || fail "$b: neural $sn bytes, fixed $sf"
    "$IMGCRYPT" inspect --keyring store/imgcryptfs.keyring --keyfile key "$b.neural-only.enc" |
        grep -q "pixels by coder model" || fail "$b: --coder neural-only did not code with the model"
    echo "   $b: fixed $sf, neural $sn, smallest $ss, neural-only $so bytes"
done
STEP="coder sizes"
a8=mri-t1-axial-8bit.png
[[ $(stat -c %s $a8.neural.enc) -lt $(stat -c %s $a8.fixed.enc) ]] ||
    fail "the neural predictor does not make the axial slice smaller"
"$IMGCRYPT" encrypt --keyfile key store "$DATA/$a8" default.enc 2>/dev/null
"$IMGCRYPT" inspect --keyring store/imgcryptfs.keyring --keyfile key default.enc |
    grep -q "pixels by coder model" ||
    fail "the default is not --coder neural"
expect 2 "$IMGCRYPT" encrypt --keyfile key --coder best store "$DATA/$a8" bad.enc
error_says
nothing_left bad.enc

step "stdin and stdout"
img=$DATA/mri-t1-axial-8bit.png
"$IMGCRYPT" encrypt --keyfile key store - - <"$img" >piped.enc 2>"$T/err" || fail "encrypt - -"
is_container piped.enc || fail "piped output is not a container"
"$IMGCRYPT" decrypt --keyfile key store - - <piped.enc >piped.dec 2>"$T/err" || fail "decrypt - -"
cmp -s "$img" piped.dec || fail "piped round trip differs"
"$IMGCRYPT" preview --keyfile key store - - <piped.enc >piped.png 2>"$T/err" || fail "preview - -"
is_container piped.png || fail "preview on stdout is not a PNG"

step "files that are not images"
printf 'plain text, not an image\n' >text.txt
: >empty
for f in text.txt empty; do
    expect 0 "$IMGCRYPT" encrypt --keyfile key store "$f" "$f.enc"
    is_blockfile "$f.enc" || fail "$f did not become a block file"
    expect 0 "$IMGCRYPT" decrypt --keyfile key store "$f.enc" "$f.dec"
    cmp -s "$f" "$f.dec" || fail "$f: round trip differs"
done
"$IMGCRYPT" encrypt --keyfile key store - - <text.txt >text.pipe.enc 2>"$T/err" || fail "encrypt text - -"
"$IMGCRYPT" decrypt --keyfile key store - - <text.pipe.enc >text.pipe.dec 2>"$T/err" || fail "decrypt text - -"
cmp -s text.txt text.pipe.dec || fail "piped text round trip differs"
expect 5 "$IMGCRYPT" preview --keyfile key store text.txt.enc text.png
error_says
nothing_left "$T/text.png"

step "wrong keyring"
ct=mri-t1-coronal-512.png.enc
expect 5 "$IMGCRYPT" decrypt --keyfile key2 other "$ct" wrong.dec
error_says
nothing_left "$T/wrong.dec"
expect 5 "$IMGCRYPT" preview --keyfile key2 other "$ct" wrong.png
error_says
nothing_left "$T/wrong.png"
expect 5 "$IMGCRYPT" decrypt --keyfile key2 other text.txt.enc wrong.txt
error_says
nothing_left "$T/wrong.txt"

step "wrong key file for the keyring"
expect 3 "$IMGCRYPT" decrypt --keyfile key2 store "$ct" wrong.dec
error_says
nothing_left "$T/wrong.dec"

step "changed bytes"
size=$(stat -c %s "$ct")
for pos in 40 100 200 $((size / 2)) $((size - 20)) $((size - 5)); do
    cp "$ct" bad.enc
    printf '\x5a' | dd of=bad.enc bs=1 seek="$pos" conv=notrunc status=none
    cmp -s "$ct" bad.enc && continue # the byte was 0x5a already
    expect 5 "$IMGCRYPT" decrypt --keyfile key store bad.enc bad.dec
    error_says
    nothing_left "$T/bad.dec"
    rc=0
    "$IMGCRYPT" decrypt --keyfile key store - - <bad.enc >bad.out 2>"$T/err" || rc=$?
    [[ $rc == 5 ]] || fail "tampered stdin: exit $rc"
    [[ ! -s bad.out ]] || fail "tampered stdin: bytes written to stdout"
done
cp text.txt.enc bad.enc
# byte 40 is a random nonce byte: flip it rather than write a value it may hold already
byte=$(od -An -tu1 -j40 -N1 text.txt.enc | tr -d ' ')
printf "\\x$(printf %02x $((byte ^ 0xff)))" | dd of=bad.enc bs=1 seek=40 conv=notrunc status=none
cmp -s text.txt.enc bad.enc && fail "byte 40 of the block file did not change"
expect 5 "$IMGCRYPT" decrypt --keyfile key store bad.enc bad.dec
nothing_left "$T/bad.dec"
head -c 1000 "$ct" >cut.enc
expect 5 "$IMGCRYPT" decrypt --keyfile key store cut.enc bad.dec
error_says
nothing_left "$T/bad.dec"

step "outputs are never overwritten silently"
echo keep >exists
expect 6 "$IMGCRYPT" decrypt --keyfile key store "$ct" exists
error_says
[[ $(cat exists) == keep ]] || fail "existing output changed"
expect 0 "$IMGCRYPT" decrypt --force --keyfile key store "$ct" exists
cmp -s "$DATA/mri-t1-coronal-512.png" exists || fail "--force output differs"

step "usage errors"
expect 2 "$IMGCRYPT" encrypt --keyfile key store onlyone
expect 2 "$IMGCRYPT" preview --no-features --keyfile key store "$ct" x.png
expect 1 "$IMGCRYPT" encrypt --keyfile key store missing-input out.enc
error_says
nothing_left "$T/out.enc"

echo "PASS"
