#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# bench_generic.sh: throughput of imgcryptfs's generic sealed path, side by side in one run on
# one disk with
#   plain        the backing folder itself (no FUSE)
#   passthrough  libfuse's example passthrough_ll (FUSE without crypto: the bound for any
#                FUSE filesystem), built from /usr/share/doc/libfuse3-dev/examples at run time
#   gocryptfs    the reference encrypting FUSE filesystem (AES-256-GCM, 4 KiB blocks too)
#   imgcryptfs   this project
#
# Metrics (median of BENCH_REPEAT runs each):
#   a) sequential write of one file, dd bs=1M conv=fsync (the fsync is in the time), MB/s
#   b) sequential read of it after a remount and drop_caches, dd bs=1M, MB/s
#   c) small files: create N files of 4 KiB then sync(); remount; list and read them all back
#      (content checked), files/s per phase and combined = N / (t_create + t_read)
#   d) fio 4 KiB random read/write (randrw 50/50, psync, one job) on a 128 MiB file laid out
#      beforehand and cold-mounted: buffered (as applications do), and O_DIRECT (every request
#      reaches the daemon), IOPS = read + write IOPS;
#      plus a verify pass: fio randwrite with crc32c verify, then a remount and fio --verify_only;
#      the sum of the errors of both is reported (must be 0).
#
# Usage (as root, Debian 12; needs fio, gocryptfs, gcc, pkg-config, libfuse3-dev, fuse3):
#   bash tests/bench/bench_generic.sh
# Environment:
#   BENCH_DIR=/var/tmp     where the work folder is made (all four filesystems live on its disk)
#   BENCH_REPEAT=3         runs per measurement (median reported)
#   BENCH_QUICK=1          sanity run: 64 MiB file, 500 files, 5 s fio, 1 repeat
#   BENCH_OUT=FILE         also write the result table (and the raw samples) to FILE
#   BENCH_FS="plain passthrough gocryptfs imgcryptfs"   subset / order of the columns
#   BENCH_FIO_DIRECT=1     also run the O_DIRECT fio row (0 to skip it)
#   BENCH_KEEP=1           keep the work folder (logs, perf data) instead of deleting it
#   BENCH_PERF=1           perf record -g the imgcryptfs daemon during every timed phase
#                          (data in BENCH_PERF_DIR, default WORK/perf; implies BENCH_KEEP=1)
#   IMGC_BIN=DIR           imgcrypt/imgcryptfs binaries (default: build/bin, built if missing)
#
# Everything it mounts is unmounted and every process it starts is stopped on exit (trap),
# including on Ctrl-C. (A TERM sent to the script alone takes effect once the running step,
# at most one fio run, has ended: bash runs traps between commands.)
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

say() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- configuration
QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
    SEQ_MB=64 NFILES=500 FIO_TIME=5 REPEAT=${BENCH_REPEAT:-1} VERIFY_SIZE=16m
else
    SEQ_MB=256 NFILES=2000 FIO_TIME=20 REPEAT=${BENCH_REPEAT:-3} VERIFY_SIZE=32m
fi
SMALL_SIZE=4096
FIO_SIZE=128m
FIO_DIRECT=${BENCH_FIO_DIRECT:-1}
FSLIST=${BENCH_FS:-plain passthrough gocryptfs imgcryptfs}
KEEP=${BENCH_KEEP:-0}
PERF=${BENCH_PERF:-0}
[ "$PERF" = 1 ] && KEEP=1
case "$REPEAT" in '' | *[!0-9]* | 0) die "BENCH_REPEAT must be a positive integer" ;; esac
for f in $FSLIST; do
    case "$f" in plain | passthrough | gocryptfs | imgcryptfs) ;; *) die "unknown filesystem '$f' in BENCH_FS" ;; esac
done

# ---------------------------------------------------------------- prerequisites
[ "$(id -u)" = 0 ] || die "run as root (mounting, drop_caches)"
[ -c /dev/fuse ] || die "/dev/fuse is missing: FUSE is not available here"
for t in fio fusermount3 gcc pkg-config mountpoint dd; do
    command -v "$t" >/dev/null || die "$t not found (apt-get install fio fuse3 gcc pkg-config libfuse3-dev)"
done
pkg-config --exists fuse3 || die "libfuse3 development files missing (apt-get install libfuse3-dev)"

BASE=${BENCH_DIR:-/var/tmp}
mkdir -p "$BASE" || die "cannot create $BASE"
W=$(mktemp -d "$BASE/imgcryptfs-bench.XXXXXX") || die "cannot create a work folder in $BASE"
case "$W" in *[[:space:]]*) rmdir "$W"; die "BENCH_DIR must not contain white space" ;; esac
T=$W/tools
R=$W/results
LOGS=$W/logs
PERF_DIR=${BENCH_PERF_DIR:-$W/perf}
mkdir -p "$T" "$R" "$LOGS"

declare -A MNT=() PID=() AVAIL=() NOTE=()
PERF_PID=""

# ---------------------------------------------------------------- cleanup (trap)
stop_pid() { # PID: TERM, wait up to 5 s, then KILL
    local p=$1 i
    kill -0 "$p" 2>/dev/null || return 0
    kill -TERM "$p" 2>/dev/null
    for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
    return 0
}

cleanup() {
    local rc=$? f
    trap - EXIT INT TERM
    if [ -n "$PERF_PID" ]; then kill -INT "$PERF_PID" 2>/dev/null; wait "$PERF_PID" 2>/dev/null; fi
    for f in "${!MNT[@]}"; do
        if mountpoint -q "${MNT[$f]}" 2>/dev/null; then
            fusermount3 -u "${MNT[$f]}" 2>/dev/null || { sleep 1; fusermount3 -u "${MNT[$f]}" 2>/dev/null; } ||
                fusermount3 -uz "${MNT[$f]}" 2>/dev/null || umount -l "${MNT[$f]}" 2>/dev/null
        fi
    done
    for f in "${!PID[@]}"; do [ -n "${PID[$f]}" ] && stop_pid "${PID[$f]}"; done
    if [ "$KEEP" = 1 ]; then
        say "work folder kept: $W"
    elif grep -q " $W/" /proc/self/mounts; then
        say "something is still mounted under $W; not deleting it"
    else
        rm -rf --one-file-system "$W"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", b - a }'; }

DROP_OK=0
drop_caches() {
    sync
    if [ -w /proc/sys/vm/drop_caches ] && echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
        DROP_OK=1
    fi
}

record() { echo "$3" >>"$R/$1.$2"; } # METRIC FS VALUE

median() { # FILE -> median, or "n/a"
    [ -s "$1" ] || { echo n/a; return; }
    sort -g "$1" | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
total() { [ -s "$1" ] && awk '{ s += $1 } END { print s + 0 }' "$1" || echo n/a; }

perf_start() { # FS PHASE
    [ "$PERF" = 1 ] && [ "$1" = imgcryptfs ] && [ -n "${PID[$1]:-}" ] || return 0
    mkdir -p "$PERF_DIR"
    perf record -q -g -F 999 -p "${PID[$1]}" -o "$PERF_DIR/$1-$2-r$REP.data" >/dev/null 2>&1 &
    PERF_PID=$!
    sleep 0.5
}
perf_stop() {
    [ -n "$PERF_PID" ] || return 0
    kill -INT "$PERF_PID" 2>/dev/null
    wait "$PERF_PID" 2>/dev/null
    PERF_PID=""
}

# ---------------------------------------------------------------- tools
if [ -n "${IMGC_BIN:-}" ]; then
    IBIN=$IMGC_BIN
else
    IBIN=$root/build/bin
    if [ ! -x "$IBIN/imgcryptfs" ] || [ ! -x "$IBIN/imgcrypt" ]; then
        say "building imgcryptfs in $root/build"
        { cmake -S "$root" -B "$root/build" && cmake --build "$root/build" -j"$(nproc)"; } >"$LOGS/build.log" 2>&1 ||
            die "build failed, see $LOGS/build.log"
    fi
fi
for b in imgcrypt imgcryptfs; do
    [ -x "$IBIN/$b" ] || die "$IBIN/$b not found"
    cp "$IBIN/$b" "$T/$b" # a private copy: a rebuild during the run does not change what is measured
done

# What was measured: the commit, +dirty when the sources differed from it when the run began.
IMGC_VERSION="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
git -C "$root" status --porcelain -- fs codec keys nn mount-tools 2>/dev/null | grep -q . && IMGC_VERSION+="+dirty"
IMGC_VERSION+=" ($IBIN, built $(date -r "$IBIN/imgcryptfs" '+%Y-%m-%d %H:%M'))"

gcc -O2 -Wall -o "$T/bench_smallfiles" "$here/bench_smallfiles.c" >"$LOGS/smallfiles-build.log" 2>&1 ||
    die "cannot build bench_smallfiles, see $LOGS/smallfiles-build.log"

build_passthrough() {
    local ex=/usr/share/doc/libfuse3-dev/examples f
    for f in passthrough_ll.c passthrough_helpers.h; do
        if [ -f "$ex/$f" ]; then cp "$ex/$f" "$T/$f"
        elif [ -f "$ex/$f.gz" ]; then gzip -dc "$ex/$f.gz" >"$T/$f"
        elif [ "$f" = passthrough_ll.c ]; then NOTE[passthrough]="no $ex/passthrough_ll.c"; return 1
        fi
    done
    # shellcheck disable=SC2046
    gcc -O2 -o "$T/passthrough_ll" "$T/passthrough_ll.c" $(pkg-config --cflags --libs fuse3) \
        >"$LOGS/passthrough-build.log" 2>&1 || { NOTE[passthrough]="passthrough_ll did not build"; return 1; }
}

for f in $FSLIST; do AVAIL[$f]=1; done
if [ -n "${AVAIL[passthrough]:-}" ] && ! build_passthrough; then
    say "passthrough column skipped: ${NOTE[passthrough]}"
    AVAIL[passthrough]=0
fi
if [ -n "${AVAIL[gocryptfs]:-}" ] && ! command -v gocryptfs >/dev/null; then
    say "gocryptfs column skipped: gocryptfs not installed (apt-get install gocryptfs)"
    NOTE[gocryptfs]="not installed"
    AVAIL[gocryptfs]=0
fi

# ---------------------------------------------------------------- the four filesystems
fs_dir() { # where the benchmark's files go
    case "$1" in
    plain) echo "$W/plain" ;;
    *) echo "${MNT[$1]}" ;;
    esac
}

fs_setup() {
    case "$1" in
    plain) mkdir -p "$W/plain" ;;
    passthrough) mkdir -p "$W/pt-src" "$W/pt-mnt"; MNT[passthrough]=$W/pt-mnt ;;
    gocryptfs)
        mkdir -p "$W/gc-cipher" "$W/gc-mnt"
        MNT[gocryptfs]=$W/gc-mnt
        gocryptfs -q -init -extpass 'echo benchpass' -scryptn 10 "$W/gc-cipher" >"$LOGS/gocryptfs-init.log" 2>&1 ||
            die "gocryptfs -init failed, see $LOGS/gocryptfs-init.log"
        ;;
    imgcryptfs)
        mkdir -p "$W/ic-backing" "$W/ic-mnt"
        MNT[imgcryptfs]=$W/ic-mnt
        (umask 077 && head -c 32 /dev/urandom >"$W/ic.key")
        "$T/imgcrypt" init --keyfile "$W/ic.key" --kdf-cost 10 "$W/ic-backing" >"$LOGS/imgcrypt-init.log" 2>&1 ||
            die "imgcrypt init failed, see $LOGS/imgcrypt-init.log"
        ;;
    esac
}

# Every daemon runs in the foreground as our child, so we know its pid; we wait for the mount.
fs_mount() {
    local f=$1 m=${MNT[$1]:-} i log
    [ "$f" = plain ] && return 0
    log=$LOGS/$f.log
    case "$f" in
    passthrough) "$T/passthrough_ll" -f -o "source=$W/pt-src,cache=auto" "$m" >>"$log" 2>&1 & ;;
    gocryptfs) gocryptfs -q -fg -extpass 'echo benchpass' "$W/gc-cipher" "$m" >>"$log" 2>&1 & ;;
    imgcryptfs) "$T/imgcryptfs" -f -o "keyfile=$W/ic.key" "$W/ic-backing" "$m" >>"$log" 2>&1 & ;;
    esac
    PID[$f]=$!
    for i in $(seq 200); do
        mountpoint -q "$m" && return 0
        kill -0 "${PID[$f]}" 2>/dev/null || { PID[$f]=""; tail -n 20 "$log" >&2; die "$f: daemon exited before mounting"; }
        sleep 0.05
    done
    die "$f: not mounted after 10 s, see $log"
}

fs_umount() {
    local f=$1 m=${MNT[$1]:-} i
    [ "$f" = plain ] && return 0
    for i in $(seq 50); do
        fusermount3 -u "$m" 2>/dev/null && break
        mountpoint -q "$m" || break
        sleep 0.2
    done
    mountpoint -q "$m" && die "$f: cannot unmount $m"
    for i in $(seq 300); do kill -0 "${PID[$f]}" 2>/dev/null || break; sleep 0.1; done
    stop_pid "${PID[$f]}"
    PID[$f]=""
}

# Cold state: unmount (all dirty data reaches the backing folder), drop the page cache, mount.
cold() {
    fs_umount "$1"
    drop_caches
    fs_mount "$1"
}

# ---------------------------------------------------------------- measurements
bench_seq() {
    local f=$1 d t0 t1 s bytes=$((SEQ_MB * 1048576)) got
    d=$(fs_dir "$f")
    rm -f "$d/seq.dat"
    cold "$f"
    perf_start "$f" seqwrite
    t0=$(now)
    dd if=/dev/zero of="$d/seq.dat" bs=1M count="$SEQ_MB" conv=fsync status=none || die "$f: dd write failed"
    t1=$(now)
    perf_stop
    s=$(elapsed "$t0" "$t1")
    record seqw "$f" "$(awk -v b="$bytes" -v s="$s" 'BEGIN { printf "%.1f", b / 1e6 / s }')"
    cold "$f"
    perf_start "$f" seqread
    t0=$(now)
    got=$(dd if="$d/seq.dat" of=/dev/null bs=1M 2>&1 | awk '/bytes/ { print $1 }') || die "$f: dd read failed"
    t1=$(now)
    perf_stop
    [ "$got" = "$bytes" ] || die "$f: read back $got bytes of $bytes"
    s=$(elapsed "$t0" "$t1")
    record seqr "$f" "$(awk -v b="$bytes" -v s="$s" 'BEGIN { printf "%.1f", b / 1e6 / s }')"
    rm -f "$d/seq.dat"
}

bench_small() {
    local f=$1 d out tc tr ec er
    d=$(fs_dir "$f")
    rm -rf "$d/small"
    mkdir "$d/small"
    cold "$f"
    perf_start "$f" smallcreate
    out=$("$T/bench_smallfiles" create "$d/small" "$NFILES" "$SMALL_SIZE") || die "$f: small-file create failed"
    perf_stop
    read -r tc ec <<<"$out"
    cold "$f"
    perf_start "$f" smallread
    out=$("$T/bench_smallfiles" read "$d/small" "$NFILES" "$SMALL_SIZE") || die "$f: small-file read failed"
    perf_stop
    read -r tr er <<<"$out"
    record smc "$f" "$(awk -v n="$NFILES" -v s="$tc" 'BEGIN { printf "%.0f", n / s }')"
    record smr "$f" "$(awk -v n="$NFILES" -v s="$tr" 'BEGIN { printf "%.0f", n / s }')"
    record smt "$f" "$(awk -v n="$NFILES" -v a="$tc" -v b="$tr" 'BEGIN { printf "%.0f", n / (a + b) }')"
    record smerr "$f" $((ec + er))
    rm -rf "$d/small"
}

fio_iops() { # terse v3: field 8 = read IOPS, 49 = write IOPS, 5 = error
    awk -F';' '$1 == 3 { if ($5 != 0) print "ERR"; else printf "%.0f\n", $8 + $49 }' "$1"
}

bench_fio() {
    local f=$1 d file iops
    d=$(fs_dir "$f")
    file=$d/fio.dat
    rm -f "$file"
    fio --name=layout --filename="$file" --size="$FIO_SIZE" --rw=write --bs=1M --ioengine=psync \
        --fallocate=none --end_fsync=1 --output="$LOGS/fio-layout-$f.txt" || die "$f: fio layout failed"
    local common=(--filename="$file" --size="$FIO_SIZE" --rw=randrw --rwmixread=50 --bs=4k
                  --ioengine=psync --iodepth=1 --numjobs=1 --runtime="$FIO_TIME" --time_based
                  --fallocate=none --randseed=20240601 --output-format=terse --terse-version=3)
    cold "$f"
    perf_start "$f" randrw
    fio --name=randrw "${common[@]}" --output="$LOGS/fio-randrw-$f.r$REP.txt" 2>>"$LOGS/fio-$f.err"
    perf_stop
    iops=$(fio_iops "$LOGS/fio-randrw-$f.r$REP.txt")
    { [ -n "$iops" ] && [ "$iops" != ERR ]; } || die "$f: fio randrw failed, see $LOGS/fio-randrw-$f.r$REP.txt"
    record rrw "$f" "$iops"
    if [ "$FIO_DIRECT" = 1 ]; then
        cold "$f"
        perf_start "$f" randrw-direct
        fio --name=randrw-direct "${common[@]}" --direct=1 --output="$LOGS/fio-direct-$f.r$REP.txt" 2>>"$LOGS/fio-$f.err"
        perf_stop
        iops=$(fio_iops "$LOGS/fio-direct-$f.r$REP.txt")
        if [ -n "$iops" ] && [ "$iops" != ERR ]; then
            record rrwd "$f" "$iops"
        else
            local why
            why=$(grep -m1 -o 'io_u error.*' "$LOGS/fio-$f.err" 2>/dev/null | sed 's/ on file [^:]*//')
            say "$f: fio with O_DIRECT failed (${why:-see $LOGS/fio-direct-$f.r$REP.txt}); reported as n/a"
            case "${NOTE[$f]:-}" in *O_DIRECT*) ;; *)
                NOTE[$f]="${NOTE[$f]:+${NOTE[$f]}; }O_DIRECT fio failed: ${why:-error}"
                [ "$f" = passthrough ] && NOTE[$f]+=" (passthrough_ll opens the backing file O_DIRECT; its request buffers are not aligned)"
                ;;
            esac
        fi
    fi
    rm -f "$file"
}

json_errors() { # fio JSON: total_err, plus 1 if the job stopped on an error it did not count
    awk '/"total_err"/ { gsub(/[^0-9]/, "", $0); t += $0 } /"error" :/ { gsub(/[^0-9]/, "", $0); if ($0 != 0) e = 1 }
         END { if (NR == 0) print 1; else print t + (t == 0 && e ? 1 : 0) }' "$1"
}

bench_verify() {
    local f=$1 d e1 e2
    d=$(fs_dir "$f")
    rm -f "$d/verify.dat"
    local vj=(--name=verify --filename="$d/verify.dat" --rw=randwrite --bs=4k --size="$VERIFY_SIZE"
              --ioengine=psync --fallocate=none --verify=crc32c --verify_fatal=0
              --verify_state_save=0
              --continue_on_error=all --randseed=4321 --output-format=json)
    fio "${vj[@]}" --do_verify=1 --output="$LOGS/fio-verify-$f.r$REP.json" 2>>"$LOGS/fio-$f.err"
    e1=$(json_errors "$LOGS/fio-verify-$f.r$REP.json")
    cold "$f" # verify again from the backing folder, not from the page cache
    fio "${vj[@]}" --verify_only --output="$LOGS/fio-reverify-$f.r$REP.json" 2>>"$LOGS/fio-$f.err"
    e2=$(json_errors "$LOGS/fio-reverify-$f.r$REP.json")
    record verr "$f" $((e1 + e2))
    rm -f "$d/verify.dat"
}

# ---------------------------------------------------------------- run
say "work folder $W ($(df -PT "$W" | awk 'NR == 2 { print $2 " on " $1 }'))"
say "mode: $([ "$QUICK" = 1 ] && echo quick || echo full), repeat $REPEAT, seq ${SEQ_MB} MiB, $NFILES small files, fio ${FIO_TIME}s"
for f in $FSLIST; do
    [ "${AVAIL[$f]}" = 1 ] || continue
    fs_setup "$f"
    fs_mount "$f"
done

# Filesystems take turns within each phase, so a burst of load elsewhere on the machine is
# spread over all columns rather than landing on one.
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for REP in $(seq "$REPEAT"); do
    for phase in seq small fio verify; do
        for f in $FSLIST; do
            [ "${AVAIL[$f]}" = 1 ] || continue
            say "run $REP/$REPEAT $f: $phase"
            "bench_$phase" "$f"
        done
    done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

for f in $FSLIST; do [ "${AVAIL[$f]}" = 1 ] && fs_umount "$f"; done

# ---------------------------------------------------------------- report
# id | label | unit | target ratio imgcryptfs/gocryptfs ("" = none) | how (median|total)
METRICS=(
    "seqw|seq write ${SEQ_MB} MiB, dd 1M+fsync|MB/s|1.0|median"
    "seqr|seq read ${SEQ_MB} MiB, cold, dd 1M|MB/s|1.5|median"
    "smc|small: create ${NFILES}x4K +sync|files/s|1.2|median"
    "smr|small: read ${NFILES}x4K, cold|files/s|1.2|median"
    "smt|small: combined N/(tc+tr)|files/s|1.2|median"
    "rrw|fio randrw 4k psync ${FIO_TIME}s|IOPS|1.0|median"
    "rrwd|fio randrw 4k O_DIRECT ${FIO_TIME}s|IOPS||median"
    "verr|fio verify errors (sum)|count|0|total"
    "smerr|small-file errors (sum)|count|0|total"
)

cols=()
for f in plain passthrough gocryptfs imgcryptfs; do
    case " $FSLIST " in *" $f "*) cols+=("$f") ;; esac
done

report() {
    local line id label unit target how f v g i ratio verdict
    echo "imgcryptfs generic-path benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "host: $(uname -r), $(nproc) CPU ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM"
    echo "disk: $W on $(df -PT "$W" | awk 'NR == 2 { print $2 " " $1 }')"
    echo "versions: imgcryptfs $IMGC_VERSION, $(gocryptfs --version 2>/dev/null | awk '{ print $1, $2 }' | tr -d ';')," \
        "libfuse $(pkg-config --modversion fuse3), $(fio --version)"
    echo "mode: $([ "$QUICK" = 1 ] && echo quick || echo full); median of $REPEAT run(s); drop_caches $([ "$DROP_OK" = 1 ] && echo used || echo 'NOT permitted (remount only)')"
    echo "load average (1/5/15 min): $LOAD_START at start, $LOAD_END at end (other work on the machine skews FUSE columns most)"
    echo "daemons: passthrough_ll -o cache=auto (no writeback cache); gocryptfs defaults; imgcryptfs defaults"
    echo
    printf '%-36s %-8s' metric unit
    for f in "${cols[@]}"; do printf ' %11s' "$f"; done
    printf ' %9s %7s %5s\n' "img/gocfs" target ok
    for line in "${METRICS[@]}"; do
        IFS='|' read -r id label unit target how <<<"$line"
        [ "$id" = rrwd ] && [ "$FIO_DIRECT" != 1 ] && continue
        printf '%-36s %-8s' "$label" "$unit"
        declare -A val=()
        for f in "${cols[@]}"; do
            if [ "${AVAIL[$f]}" != 1 ]; then v=n/a
            elif [ "$how" = total ]; then v=$(total "$R/$id.$f")
            else v=$(median "$R/$id.$f")
            fi
            val[$f]=$v
            printf ' %11s' "$v"
        done
        i=${val[imgcryptfs]:-n/a} g=${val[gocryptfs]:-n/a}
        ratio=-
        if [ "$how" = median ] && [ "$i" != n/a ] && [ "$g" != n/a ]; then
            ratio=$(awk -v a="$i" -v b="$g" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }')
        fi
        verdict=-
        if [ "$how" = total ] && [ "$i" != n/a ]; then
            [ "$i" = 0 ] && verdict=PASS || verdict=FAIL
            target="=0"
        elif [ -n "$target" ] && [ "$ratio" != - ]; then
            verdict=$(awk -v r="${ratio%x}" -v t="$target" 'BEGIN { print (r >= t) ? "PASS" : "FAIL" }')
            target=">=${target}x"
        elif [ -n "$target" ]; then
            target=">=${target}x"
        else
            target=info
        fi
        printf ' %9s %7s %5s\n' "$ratio" "$target" "$verdict"
        unset val
    done
    for f in "${cols[@]}"; do
        [ -n "${NOTE[$f]:-}" ] && echo "note: $f: ${NOTE[$f]}"
    done
    echo
    echo "targets: seq write >= 1.0x gocryptfs, seq read >= 1.5x, small files >= 1.2x, fio randrw >= 1.0x with 0 verify errors"
    echo "MB/s = 10^6 bytes/s; files/s of one phase = N / its time; combined = N / (t_create + t_read)"
}

samples() {
    local line id label f
    echo "raw samples (one per run):"
    for line in "${METRICS[@]}"; do
        IFS='|' read -r id label _ <<<"$line"
        for f in "${cols[@]}"; do
            [ -s "$R/$id.$f" ] && printf '  %-36s %-12s %s\n' "$label" "$f" "$(tr '\n' ' ' <"$R/$id.$f")"
        done
    done
}

{ report; echo; samples; } >"$W/table.txt"
cat "$W/table.txt"
if [ -n "${BENCH_OUT:-}" ]; then
    cp "$W/table.txt" "$BENCH_OUT" && say "table written to $BENCH_OUT"
fi
[ "$PERF" = 1 ] && say "perf data in $PERF_DIR (perf report -i FILE --no-children)"
exit 0
