# shellcheck shell=bash
# SPDX-License-Identifier: MIT
# Helpers of the test_images_*.sh tests (sourced after lib.sh): the read-only xattrs the mount
# shows for images (user.imgcryptfs.storage on a file, user.imgcryptfs.backlog on the root),
# waiting until every conversion is done, hashes of files read through the mount with their
# cached pages dropped first, and the backing entry of a file. images_util.py (beside this
# file) builds the image sets and does the parts that are easier in Python.

IMGU=$LIB_DIR/images_util.py
export IMGC_TESTDATA
# The tests' own Python scripts import images_util's helpers.
export PYTHONPATH=$LIB_DIR${PYTHONPATH:+:$PYTHONPATH}

# The tools the image tests use; fails, naming the Debian package, when one is missing.
images_need() {
    local t
    for t in "$@"; do
        case $t in
        getfattr) command -v getfattr >/dev/null || fail "getfattr is missing (apt-get install attr)" ;;
        pngcheck) command -v pngcheck >/dev/null || fail "pngcheck is missing (apt-get install pngcheck)" ;;
        pydicom) "$PY" -c 'import pydicom' 2>/dev/null || fail "pydicom is missing for $PY (apt-get install python3-pydicom)" ;;
        pil) "$PY" -c 'import PIL' 2>/dev/null || fail "Pillow is missing for $PY (apt-get install python3-pil)" ;;
        mricron) [ -d /usr/share/mricron/templates ] || fail "mricron-data is missing (apt-get install mricron-data)" ;;
        dcmtk) { command -v storescp && command -v storescu; } >/dev/null ||
            fail "storescp/storescu are missing (apt-get install dcmtk)" ;;
        *) fail "images_need: unknown tool $t" ;;
        esac
    done
}

# storage_of FILE: the value of user.imgcryptfs.storage ("image coder=... autoencoder=...",
# "blocks", "queued"), or "ERROR" when the xattr cannot be read.
storage_of() {
    getfattr --absolute-names -n user.imgcryptfs.storage --only-values -- "$1" 2>/dev/null || echo ERROR
}

# storage_kind FILE: the first word of storage_of (image, blocks, queued or ERROR).
storage_kind() {
    local v
    v=$(storage_of "$1")
    echo "${v%% *}"
}

# backlog_of MNT: the root's user.imgcryptfs.backlog (files queued or converting), or ERROR.
backlog_of() {
    getfattr --absolute-names -n user.imgcryptfs.backlog --only-values -- "$1" 2>/dev/null || echo ERROR
}

# wait_backlog MNT [SECONDS]: until the backlog has read 0 three times in a row, 0.2 s apart
# (a release reaches the daemon a moment after close(2) returns, so one 0 right after a close
# proves little). Fails after SECONDS (default 120), giving the last value, or after 10 s
# without a readable value.
wait_backlog() {
    local m=$1 secs=${2:-120} v zeros=0 start=$SECONDS errors=0
    while :; do
        v=$(backlog_of "$m")
        if [ "$v" = 0 ]; then
            zeros=$((zeros + 1))
            [ "$zeros" -ge 3 ] && return 0
        else
            zeros=0
        fi
        if [ "$v" = ERROR ]; then
            errors=$((errors + 1))
            [ "$errors" -lt 50 ] || fail "user.imgcryptfs.backlog of $m cannot be read: $(getfattr -n user.imgcryptfs.backlog "$m" 2>&1 | head -n 1)"
        else
            errors=0
        fi
        [ $((SECONDS - start)) -lt "$secs" ] || fail "backlog of $m is still '$v' after ${secs}s"
        sleep 0.2
    done
}

# sha_list ROOT [FILE...]: `sha256  relpath` of each file under ROOT (or of the files named),
# read fresh (cached pages dropped first); a read that fails gives `ERROR:<errno>`.
sha_list() {
    limit 300 "$PY" "$IMGU" sha "$@"
}

# same_hashes WHAT EXPECTED ACTUAL: every line of the two sha_list outputs agrees; one check
# failure per file that differs, reads an error, or is missing.
same_hashes() {
    local what=$1 exp=$2 act=$3 bad
    bad=$(LC_ALL=C join -j 2 -a 1 -e MISSING -o 0,1.1,2.1 <(awk '{print $1, $2}' "$exp" | LC_ALL=C sort -k2) \
        <(awk '{print $1, $2}' "$act" | LC_ALL=C sort -k2) | awk '$2 != $3 { print $1 " (" $3 ")" }')
    if [ -n "$bad" ]; then
        check_fail "$what: $(wc -l <<<"$bad") file(s) read back other bytes or fail: $(head -n 5 <<<"$bad" | tr '\n' ' ')"
        return 1
    fi
    [ "$(wc -l <"$exp")" -gt 0 ] || check_fail "$what: no files compared"
    return 0
}

# backing_of MNT BACKING FILE...: the backing entry (relative to BACKING) of each file, one a
# line, `-` where none has its inode number.
backing_of() {
    limit 120 "$PY" "$IMGU" backing "$@"
}

# head_magic FILE: `png` (PNG signature), `blocks` (IMGCBF), or the first bytes in hex.
head_magic() {
    local h
    h=$(head -c 8 -- "$1" | od -An -tx1 | tr -d ' \n')
    case $h in
    89504e470d0a1a0a) echo png ;;
    494d47434246*) echo blocks ;;
    *) echo "${h:-empty}" ;;
    esac
}

# tmp_leftovers BACKING: the conversion's temporary entries found in the backing folder.
tmp_leftovers() {
    find "$1" -name '.imgcryptfs.tmp.*' 2>/dev/null
}
