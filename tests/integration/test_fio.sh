#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# fio with data verification (crc32c headers in every block) on the mount: random read/write
# at 4k, random writes at 1k and at unaligned odd sizes with two jobs on separate files,
# buffered and O_DIRECT, sequential in 7000-byte pieces; then, after an unmount and a fresh
# mount, checksums of every file must be unchanged and fio --verify_only checks what the
# daemon stored (not the page cache). Zero verify errors, exit status 0.
. "$(dirname "$0")/lib.sh"
lib_setup
command -v fio >/dev/null || fail "fio is not installed (apt-get install fio)"

B=$WORK/backing M=$WORK/mnt K=$WORK/key
make_keyring "$B" "$K"
mount_fs "$B" "$M" "$K"

COMMON=(--ioengine=psync --verify=crc32c --verify_fatal=1 --do_verify=1 --randrepeat=1
    --group_reporting=0 --fallocate=none --verify_state_save=0)
cd "$WORK" || fail "cd $WORK" # fio may leave state files in the current folder

# run_fio NAME ARGS...: run fio in the mount (folder $M/NAME), log to $WORK/NAME.log; fail on
# a non-zero exit, any verify error, or err= other than 0.
run_fio() {
    local name=$1
    shift
    mkdir -p "$M/$name"
    if ! limit 120 fio --name="$name" --directory="$M/$name" "${COMMON[@]}" "$@" \
        --output="$WORK/$name.log"; then
        check_fail "fio $name exited with an error: $(grep -iE 'verify|err|bad' "$WORK/$name.log" | head -n 5)"
        return 1
    fi
    if grep -qiE 'verify: bad|bad magic|crc32c: verify failed|verify type mismatch|fio: pid=.*err=' "$WORK/$name.log"; then
        check_fail "fio $name reported verify errors: $(grep -iE 'verify|bad' "$WORK/$name.log" | head -n 5)"
        return 1
    fi
    if grep -E 'err= *[1-9]' "$WORK/$name.log"; then
        check_fail "fio $name reported an error"
        return 1
    fi
    say "fio $name: $(grep -E '^ +(READ|WRITE):' "$WORK/$name.log" | sed 's/ (.*//' | tr -s ' ' | tr '\n' ';')"
}

# 1. random read/write, 4k, 64 MiB, buffered and then O_DIRECT
run_fio randrw4k --rw=randrw --bs=4k --size=64m --runtime=20
run_fio randrw4k_direct --rw=randrw --bs=4k --size=32m --runtime=15 --direct=1
# 2. random writes at 1k (read-modify-write of every block), two jobs on separate files
run_fio randw1k --rw=randwrite --bs=1k --size=8m --numjobs=2 --runtime=20
# 3. unaligned odd sizes at unaligned offsets, two jobs; buffered and O_DIRECT
#    (blockalign turns fio's random map off, so writes may overlap; fio keeps the latest)
run_fio odd --rw=randwrite --bsrange=1000-13000 --blockalign=512 --size=16m --numjobs=2 --runtime=20
run_fio odd_direct --rw=randwrite --bsrange=1000-13000 --blockalign=512 --size=8m --numjobs=2 \
    --runtime=20 --direct=1
# 4. sequential writes in 7000-byte pieces (never block aligned) with a verify pass; the size
#    is a multiple of 7000 so that --verify_only below finds the file as written
run_fio seq7000 --rw=write --bs=7000 --size=21000000 --numjobs=2

# 5. What the daemon stored, not the page cache: checksums of every fio file now, and after a
#    remount; and fio --verify_only (same seeds, same offsets and patterns, reads only).
sums() {
    limit 60 "$PY" - "$M" <<'EOF2'
import hashlib, os, sys
root = sys.argv[1]
for dp, dn, fn in sorted(os.walk(root)):
    for n in sorted(fn):
        p = os.path.join(dp, n)
        with open(p, "rb") as f:
            print(hashlib.sha256(f.read()).hexdigest(), os.path.relpath(p, root))
EOF2
}
sums >"$WORK/before.sum" || check_fail "reading the fio files back"
[ "$(wc -l <"$WORK/before.sum")" -ge 10 ] || check_fail "fio files missing: $(cat "$WORK/before.sum")"
unmount "$M"
mount_fs "$B" "$M" "$K"
sums >"$WORK/after.sum" || check_fail "reading the fio files back after the remount"
if ! diff "$WORK/before.sum" "$WORK/after.sum" >"$WORK/sums.diff"; then
    check_fail "fio files differ after the remount (page cache vs stored): $(head -n 6 "$WORK/sums.diff")"
fi
run_fio randw1k --rw=randwrite --bs=1k --size=8m --numjobs=2 --runtime=20 --verify_only
run_fio seq7000 --rw=write --bs=7000 --size=21000000 --numjobs=2 --verify_only
unmount "$M"
lib_finish
