#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# bench_fsx.sh: xfstests' fsx (random reads, writes, mapped reads and writes, truncates and
# every fallocate mode the filesystem takes, each checked against fsx's own copy of the file)
# on imgcryptfs and gocryptfs in one run: operations per second side by side, and whether each
# run passed. fsx turns off, at its start, the fallocate modes a filesystem refuses; the log
# says which (imgcryptfs refuses COLLAPSE_RANGE and INSERT_RANGE).
#
# fsx is not packaged by Debian: build ltp/fsx.c of an xfstests checkout and pass its path.
#
# Usage (as root): FSX=/path/to/fsx bash tests/bench/bench_fsx.sh
# Environment:
#   FSX_OPS=100000            operations per filesystem (the issue's long form: 1000000)
#   FSX_SEED=1                fsx's seed (-S)
#   FSX_ARGS=                 more fsx arguments (default profile: none)
#   FSX_FS="imgcryptfs gocryptfs"   filesystems, in order
#   IMGC_BIN=DIR              imgcrypt/imgcryptfs (default build/bin)
#   BENCH_DIR=/var/tmp        where the backing folders are made
# Exit status: 0 when every run passed, 1 otherwise. Everything mounted is unmounted on exit.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
say() { printf '[fsx] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 2; }

FSX=${FSX:-}
OPS=${FSX_OPS:-100000}
SEED=${FSX_SEED:-1}
FSLIST=${FSX_FS:-imgcryptfs gocryptfs}
BIN=${IMGC_BIN:-$root/build/bin}
[ -n "$FSX" ] && [ -x "$FSX" ] || die "set FSX to an fsx binary (ltp/fsx.c of xfstests)"
[ "$(id -u)" = 0 ] || die "run as root"
W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/imgcryptfs-fsx.XXXXXX") || die "no work folder"
MOUNTS=()
cleanup() {
    for m in "${MOUNTS[@]}"; do fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
    rm -rf "$W"
}
trap cleanup EXIT INT TERM

mount_one() { # FS: mount it on $W/FS/mnt
    local b=$W/$1/backing m=$W/$1/mnt
    mkdir -p "$b" "$m"
    head -c 32 /dev/urandom >"$W/$1/key" && chmod 600 "$W/$1/key"
    case $1 in
    imgcryptfs)
        "$BIN/imgcrypt" init --keyfile "$W/$1/key" --kdf-cost 10 "$b" >/dev/null &&
            "$BIN/imgcryptfs" -o "keyfile=$W/$1/key" "$b" "$m" ;;
    gocryptfs)
        printf 'bench-password\n' >"$W/$1/pass"
        gocryptfs -q -init -passfile "$W/$1/pass" "$b" >/dev/null &&
            gocryptfs -q -passfile "$W/$1/pass" "$b" "$m" ;;
    *) die "unknown filesystem $1" ;;
    esac || die "cannot mount $1"
    MOUNTS+=("$m")
}

status=0
printf '%-12s %10s %10s %10s  %s\n' filesystem operations seconds "ops/s" result
for fs in $FSLIST; do
    mount_one "$fs"
    start=$(date +%s.%N)
    # shellcheck disable=SC2086
    "$FSX" -N "$OPS" -S "$SEED" -P "$W/$fs" ${FSX_ARGS:-} "$W/$fs/mnt/fsxfile" \
        >"$W/$fs/fsx.log" 2>&1
    rc=$?
    secs=$(echo "$(date +%s.%N) - $start" | bc)
    result=passed
    [ "$rc" = 0 ] || { result="FAILED (exit $rc)"; status=1; }
    printf '%-12s %10s %10.1f %10.0f  %s\n' "$fs" "$OPS" "$secs" "$(echo "$OPS / $secs" | bc -l)" \
        "$result"
    grep -h "disabling" "$W/$fs/fsx.log" | sed "s/^main: /    $fs: /" | sort -u
    [ "$rc" = 0 ] || tail -40 "$W/$fs/fsx.log" >&2
done
exit "$status"
