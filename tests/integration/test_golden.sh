#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The golden containers (tests/data/golden/*, made once by scripts/make_golden.sh and never
# remade): every one must still decrypt to exactly the original bytes (cmp, and the SHA-256
# its MANIFEST recorded when it was made), with 1 and 2 coder threads and with OpenBLAS at 1 and
# 2 threads; every preview must show what it showed then: the SHA-256 of its header and rows
# (png_samples.py; not of the file, whose deflate settings may change) as recorded (the integer
# decoder gives the same samples on every machine and thread count; one recorded preview was
# changed on purpose since: kinds1's YBR 4:2:2 DICOM, shown in RGB at full width, not as its
# four raster channels); a golden keyring must
# still unlock; a coder model a container names must be in its keyring's list, and at least one
# folder (v2) must have been coded by the neural predictor. A failure here means a change broke
# images that an earlier release stored.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
lib_setup_tool
DATA=$IMGC_TESTDATA
HERE=$LIB_DIR

folders=0
checked=0
previews=0
neural=0
# The coder model id a container names, zeros for predictor 0 (codec/store/container.h): in a
# version 1 container (a 128-byte "icHd" chunk) the header field at offset 48 of its data, which
# starts at byte 41 of the file; a version 2 container (48 bytes) seals it in its meta, which
# inspect opens with the keyring (and names by its first 16 hex digits).
coder_of() { # CONTAINER KEYRING KEYFILE
    if [[ $(od -An -tx1 -j33 -N4 "$1" | tr -d ' \n') == 00000080 ]]; then
        od -An -tx1 -j89 -N16 "$1" | tr -d ' \n'
        return
    fi
    local id
    id=$("$IMGCRYPT" inspect --keyring "$2" --keyfile "$3" "$1" |
        sed -n 's/.*pixels by coder model \([0-9a-f]*\)).*/\1/p')
    echo "${id:-00000000000000000000000000000000}"
}
for g in "$DATA"/golden/*/; do
    [[ -f $g/MANIFEST ]] || continue
    folders=$((folders + 1))
    v=$(basename "$g")
    echo "== golden/$v"
    # git keeps no modes: give the key material the permissions imgcrypt demands
    w=$T/$v
    mkdir -p "$w/store"
    cp "$g/key" "$w/key"
    cp "$g/store/imgcryptfs.keyring" "$w/store/"
    chmod 600 "$w/key" "$w/store/imgcryptfs.keyring"
    chmod 700 "$w/store"
    "$IMGCRYPT" info "$w/store" >"$w/info" 2>"$T/err" ||
        fail "$v: imgcrypt info of its keyring failed"
    while read -r ct src sum pv; do
        orig=$DATA/$src
        cid=$(coder_of "$g/$ct" "$w/store/imgcryptfs.keyring" "$w/key")
        if [[ $cid != 00000000000000000000000000000000 ]]; then
            grep -Eq "^  $cid[0-9a-f]*  coder " "$w/info" ||
                fail "$v/$ct: names coder model $cid, which its keyring does not list"
            neural=$((neural + 1))
        fi
        [[ -f $orig ]] || fail "$v/$ct: original $src is missing"
        [[ $(sha256sum <"$orig" | cut -d' ' -f1) == "$sum" ]] ||
            fail "$v/$ct: original $src is not the file the container was made from"
        for threads in 1 2; do
            for blas in 1 2; do
                rm -f "$w/out"
                OPENBLAS_NUM_THREADS=$blas "$IMGCRYPT" decrypt --keyfile "$w/key" --threads \
                    "$threads" "$w/store" "$g/$ct" "$w/out" 2>"$T/err" ||
                    fail "$v/$ct: decrypt failed (threads $threads, OpenBLAS $blas)"
                cmp -s "$orig" "$w/out" ||
                    fail "$v/$ct: decrypted bytes differ from $src (threads $threads, OpenBLAS $blas)"
            done
        done
        checked=$((checked + 1))
        if [[ $pv != - ]]; then
            for blas in 1 2; do
                rm -f "$w/pv.png"
                OPENBLAS_NUM_THREADS=$blas "$IMGCRYPT" preview --keyfile "$w/key" "$w/store" \
                    "$g/$ct" "$w/pv.png" 2>"$T/err" || fail "$v/$ct: preview failed"
                [[ $("$PY" "$HERE/png_samples.py" "$w/pv.png") == "$pv" ]] ||
                    fail "$v/$ct: preview differs from the recorded one (OpenBLAS $blas)"
            done
            previews=$((previews + 1))
        else
            # a container made without features must still say so, not fail otherwise
            rc=0
            "$IMGCRYPT" preview --keyfile "$w/key" "$w/store" "$g/$ct" "$w/none.png" 2>"$T/err" ||
                rc=$?
            [[ $rc != 0 && ! -e $w/none.png ]] || fail "$v/$ct: a preview appeared from nothing"
        fi
    done <"$g/MANIFEST"
done
[[ $folders -gt 0 ]] || fail "no golden folder under $DATA/golden"
[[ $checked -ge 10 && $previews -ge 8 ]] || fail "too few golden files: $checked, $previews previews"
[[ $neural -ge 8 ]] || fail "only $neural golden containers coded by the neural predictor"
echo "golden: $folders folder(s), $checked containers decrypted exactly ($neural by the neural" \
    "predictor), $previews previews identical"
