#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# bench_mount_images.sh: images through the mount, side by side in one run on one disk with
# gocryptfs (the reference encrypting FUSE filesystem) and with imgcryptfs -o images=off (every
# file a sealed block file), for each pixel coder asked for (-o coder=fixed, -o coder=neural;
# one fresh backing folder and mount each).
#
# Image sets, made at run time (bench_mount_images.py gen; kept in BENCH_CORPUS if given):
#   png  N 8-bit 512x512 PNGs written by Pillow (zlib level 6) from slices of the brain MRI
#        volumes ch2 and ch2better (mricron-data): every axis, flipped and zoomed variants;
#   dcm  N 16-bit native DICOM files (explicit VR little endian, 12 bits stored) on the header of
#        pydicom's MR_small.dcm, pixels from slices of inia19-t1-brain (values x10).
#   In each set the first S files (by name) are consecutive slices of one volume: a series.
# Printed, from the same run:
#   Ingest   cp -r of each set (source in the page cache) into each mount, between two copies of
#            it into gocryptfs (just before, and once the mount is idle again): MB/s and the
#            ratio to gocryptfs's (the mean time of its two copies); for images=network,
#            the time until the root xattr user.imgcryptfs.backlog reads 0 (from the end of the
#            copy, and from its start), images converted per second (images stored as
#            containers / time from the start of the copy to backlog 0), and how each file ended
#            up stored (user.imgcryptfs.storage).
#   Stored   backing bytes / plaintext bytes per set: the apparent sizes of the backing files
#            that the set added (so the keyring and anything there before are not counted),
#            beside gocryptfs, images=off and JPEG-LS lossless (CharLS, through bench_pixcode
#            size, as refcoders.sh does) of the same pixels over an even sample of the set; and
#            where the containers' bytes go (pixel stream, autoencoder features, envelope,
#            framing), from imgcrypt inspect of the new backing files (no key needed).
#   Reads    cold: one 512x512 file after drop_caches, on a fresh mount with cache_mb=0 (K files
#            spread over the set, median; beside it, in the same run, zlib compressing the same
#            rows at the file's level: the PNG's filtered rows, DICOM pixel data at level 6).
#            Between the drop and the timed file another file of the set is read, so that the
#            daemon's code and libraries are in memory again (as in a daemon that has been
#            serving) while the timed file's bytes are in no cache; the same files read as the
#            first read after a drop (code paged in too) are shown beside (1st);
#            warm: a second read of the file (its pages dropped with posix_fadvise, so the read
#            reaches the daemon: for a stored image its plaintext cache), median of 11, and its
#            ratio to the same file's warm read as a block file (images=off), the two read in
#            turn so that a burst of other load hits both;
#            series: the S files of the series read one after another, after drop_caches on a
#            fresh mount with default options (a viewer scrolling through a series).
#   Every file read is hashed against its source; a mismatch is reported.
# Targets (issue 14): copy >= 0.9x gocryptfs; stored <= 0.70 (png), <= 0.40 (dcm); cold read of
# a DICOM <= 10 ms, of a PNG <= zlib's time for its rows; warm read <= 1.2x a block file's.
#
# Usage (as root, Debian 12): bash tests/bench/bench_mount_images.sh
#   Default: N=1000 per set, both coders: about 6.5 CPU-minutes, most of it the conversions
#   (coder=neural alone about half); 17-20 minutes of wall time when the 2 cores were shared at
#   a load average of 10-15. BENCH_N=50 for a quick run (about a minute), BENCH_CODERS=fixed
#   to leave the slower coder out.
# Environment:
#   BENCH_N=1000             images per set
#   BENCH_SERIES=200         files of the series (default: N/5, at most 200)
#   BENCH_READS=9            files timed for the cold and warm reads, spread over the set
#   BENCH_JLS_N=100          files of each set coded with JPEG-LS (an even sample; 0: none)
#   BENCH_CODERS="fixed neural"   the -o coder= values measured, one mount each
#   BENCH_IC_OPTS=OPTS       more -o options for those mounts (e.g. workers=1)
#   BENCH_WAIT_MAX=900       seconds to wait for the backlog to reach 0 before giving up
#   BENCH_DIR=/var/tmp       where the work folder is made (all mounts live on its disk)
#   BENCH_CORPUS=DIR         make the image sets there and reuse them in later runs
#   BENCH_OUT=FILE           also write the table there
#   BENCH_KEEP=1             keep the work folder (logs, backing folders)
#   IMGC_BIN=DIR             imgcrypt/imgcryptfs (default build/bin, built if missing)
#   IMGC_BUILD=DIR           build folder with bench/bench_pixcode for JPEG-LS (default build)
# Needs: gocryptfs fuse3 python3-pil python3-pydicom mricron-data libcharls2 (JPEG-LS; without
# it that column says so).
# Everything it mounts is unmounted and every process it starts is stopped on exit (trap),
# Ctrl-C included.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
py=/usr/bin/python3
helper=$here/bench_mount_images.py

say() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- configuration
posint() { case "$2" in '' | *[!0-9]*) die "$1 must be a non-negative integer" ;; esac; }
N=${BENCH_N:-1000}
SERIES=${BENCH_SERIES:-}
READS=${BENCH_READS:-9}
JLS_N=${BENCH_JLS_N:-100}
CODERS=${BENCH_CODERS-fixed neural}
IC_OPTS=${BENCH_IC_OPTS:-}
WAIT_MAX=${BENCH_WAIT_MAX:-900}
KEEP=${BENCH_KEEP:-0}
for v in N READS JLS_N WAIT_MAX; do posint "BENCH_$v" "${!v}"; done
[ -z "$SERIES" ] || posint BENCH_SERIES "$SERIES"
if [ "$N" -lt 1 ] || [ "$READS" -lt 1 ]; then die "BENCH_N and BENCH_READS must be at least 1"; fi
# the series is a fifth of the set at most, unless asked: the rest gives the set its variety
[ -n "$SERIES" ] || SERIES=$((N / 5 < 200 ? N / 5 : 200))
[ "$SERIES" -le "$N" ] || SERIES=$N
[ "$SERIES" -ge 1 ] || SERIES=1
[ "$READS" -le "$N" ] || READS=$N
[ "$JLS_N" -le "$N" ] || JLS_N=$N
for c in $CODERS; do
    case "$c" in fixed | neural | smallest) ;; *) die "unknown coder '$c' in BENCH_CODERS" ;; esac
done

# ---------------------------------------------------------------- prerequisites
[ "$(id -u)" = 0 ] || die "run as root (mounting, drop_caches)"
[ -c /dev/fuse ] || die "/dev/fuse is missing: FUSE is not available here"
for t in fusermount3 mountpoint gocryptfs cp; do
    command -v "$t" >/dev/null || die "$t not found (apt-get install fuse3 gocryptfs)"
done
"$py" -c 'import PIL, pydicom' 2>/dev/null || die "Pillow and pydicom needed (apt-get install python3-pil python3-pydicom)"
[ -d /usr/share/mricron/templates ] || die "mricron-data not installed (apt-get install mricron-data)"

BASE=${BENCH_DIR:-/var/tmp}
mkdir -p "$BASE" || die "cannot create $BASE"
W=$(mktemp -d "$BASE/imgcryptfs-bench-images.XXXXXX") || die "cannot create a work folder in $BASE"
case "$W" in *[[:space:]]*) rmdir "$W"; die "BENCH_DIR must not contain white space" ;; esac
T=$W/tools
LOGS=$W/logs
KV=$W/results.kv
mkdir -p "$T" "$LOGS"
: >"$KV"

declare -A MNT=() PID=() BACK=()

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

# shellcheck disable=SC2317  # run by the trap
cleanup() {
    local rc=$? f
    trap - EXIT INT TERM
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
kv() { echo "$1 $2" >>"$KV"; }       # KEY VALUE...
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
backing_bytes() { "$py" "$helper" bytes "$1"; }

# ---------------------------------------------------------------- tools
if [ -n "${IMGC_BIN:-}" ]; then
    IBIN=$IMGC_BIN
else
    IBIN=$root/build/bin
    if [ ! -x "$IBIN/imgcryptfs" ] || [ ! -x "$IBIN/imgcrypt" ]; then
        say "building imgcryptfs in $root/build"
        bash "$root/scripts/build.sh" >"$LOGS/build.log" 2>&1 || die "build failed, see $LOGS/build.log"
    fi
fi
for b in imgcrypt imgcryptfs; do
    [ -x "$IBIN/$b" ] || die "$IBIN/$b not found"
    cp "$IBIN/$b" "$T/$b" # a private copy: a rebuild during the run does not change what is measured
done
PIXPROG=${IMGC_BUILD:-$root/build}/bench/bench_pixcode
[ -x "$PIXPROG" ] || cmake --build "${IMGC_BUILD:-$root/build}" --target bench_pixcode >/dev/null 2>&1
JLS_NOTE=""
if [ "$JLS_N" = 0 ]; then
    JLS_NOTE="not measured (BENCH_JLS_N=0)"
elif [ ! -x "$PIXPROG" ]; then
    JLS_NOTE="not measured: no $PIXPROG"
elif [[ $(ldconfig -p) != *libcharls.so.2* ]]; then # (grep -q in a pipe: SIGPIPE under pipefail)
    JLS_NOTE="not measured: CharLS missing (apt-get install libcharls2)"
fi

IMGC_VERSION="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
[ -n "$(git -C "$root" status --porcelain -- fs codec keys nn mount-tools 2>/dev/null)" ] && IMGC_VERSION+="+dirty"
IMGC_VERSION+=" (built $(date -r "$IBIN/imgcryptfs" '+%Y-%m-%d %H:%M'))"

# ---------------------------------------------------------------- the image sets
CORPUS=${BENCH_CORPUS:-$W/corpus}
stamp="n=$N series=$SERIES gen=$(sha256sum "$helper" | cut -c1-16)"
if [ "$(cat "$CORPUS/stamp" 2>/dev/null)" != "$stamp" ]; then
    say "making the image sets in $CORPUS ($N PNG, $N DICOM, 512x512)"
    rm -rf "$CORPUS/png" "$CORPUS/dcm" "$CORPUS/stamp"
    mkdir -p "$CORPUS" || die "cannot create $CORPUS"
    t0=$(now)
    for s in png dcm; do
        "$py" "$helper" gen --kind "$s" --out "$CORPUS/$s" --n "$N" --series "$SERIES" >"$LOGS/gen-$s.log" 2>&1 &
    done
    for s in png dcm; do wait -n || die "making the image sets failed, see $LOGS/gen-*.log"; done
    echo "$stamp" >"$CORPUS/stamp"
    GEN="made in $(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }') s"
    say "image sets $GEN"
else
    GEN="reused from $CORPUS"
fi
SETS="png dcm"
declare -A SAMPLE=() JSAMPLE=() SERIESF=() PRIMER=()
for s in $SETS; do
    mapfile -t all < <(find "$CORPUS/$s" -maxdepth 1 -type f -name "im*.$s" | sort)
    [ "${#all[@]}" = "$N" ] || die "$CORPUS/$s holds ${#all[@]} files, not $N"
    kv "plain.$s" "$(awk '{ s += $1 } END { print s }' < <(stat -c %s "${all[@]}"))"
    sample=() jsample=()
    for ((i = 0; i < READS; i++)); do sample+=("$(basename "${all[$((i * N / READS + N / (2 * READS)))]}")"); done
    for ((i = 0; i < JLS_N; i++)); do jsample+=("${all[$((i * N / JLS_N))]}"); done
    SAMPLE[$s]="${sample[*]}"
    # read between drop_caches and each timed cold read: the last file that is not timed
    for ((i = N - 1; i >= 0; i--)); do
        case " ${sample[*]} " in *" $(basename "${all[$i]}") "*) ;; *) PRIMER[$s]=$(basename "${all[$i]}"); break ;; esac
    done
    JSAMPLE[$s]="${jsample[*]}"
    SERIESF[$s]="$(for f in "${all[@]:0:$SERIES}"; do basename "$f"; done | tr '\n' ' ')"
done

files_in() { # DIR NAMES...: the names as paths in DIR
    local d=$1 f
    shift
    for f in "$@"; do echo "$d/$f"; done
}

say "reference figures: zlib on the rows of the read sample, JPEG-LS of $JLS_N files per set"
for s in $SETS; do
    # shellcheck disable=SC2086
    mapfile -t fl < <(files_in "$CORPUS/$s" ${SAMPLE[$s]})
    kv "zlib.$s" "$("$py" "$helper" zlib "${fl[@]}" | cut -d' ' -f2-)"
    if [ -z "$JLS_NOTE" ]; then
        # shellcheck disable=SC2086
        r=$("$py" "$helper" jls "$PIXPROG" ${JSAMPLE[$s]} 2>>"$LOGS/jls.log")
        kv "jls.$s" "$(echo "$r" | cut -d' ' -f2-)"
    fi
done

# ---------------------------------------------------------------- the filesystems
# Names: gc (gocryptfs), off (imgcryptfs -o images=off), and one per coder.
(umask 077 && head -c 32 /dev/urandom >"$W/ic.key")

fs_setup() {
    local f=$1
    mkdir -p "$W/$f-backing" "$W/$f-mnt"
    MNT[$f]=$W/$f-mnt
    BACK[$f]=$W/$f-backing
    if [ "$f" = gc ]; then
        gocryptfs -q -init -extpass 'echo benchpass' -scryptn 10 "${BACK[$f]}" >"$LOGS/gc-init.log" 2>&1 ||
            die "gocryptfs -init failed, see $LOGS/gc-init.log"
    else
        "$T/imgcrypt" init --keyfile "$W/ic.key" --kdf-cost 10 "${BACK[$f]}" >"$LOGS/$f-init.log" 2>&1 ||
            die "imgcrypt init failed, see $LOGS/$f-init.log"
    fi
}

# Each daemon runs in the foreground as our child, so we know its pid; we wait for the mount.
fs_mount() { # NAME [EXTRA -o OPTIONS]
    local f=$1 extra=${2:+,$2} m=${MNT[$1]} i log=$LOGS/$1.log
    echo "--- mount $(date -u +%T) ${2:-}" >>"$log"
    case "$f" in
    gc) gocryptfs -q -fg -extpass 'echo benchpass' "${BACK[$f]}" "$m" >>"$log" 2>&1 & ;;
    off) "$T/imgcryptfs" -f -o "keyfile=$W/ic.key,images=off$extra" "${BACK[$f]}" "$m" >>"$log" 2>&1 & ;;
    *) "$T/imgcryptfs" -f -o "keyfile=$W/ic.key,images=network,coder=$f${IC_OPTS:+,$IC_OPTS}$extra" \
        "${BACK[$f]}" "$m" >>"$log" 2>&1 & ;;
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
    local f=$1 m=${MNT[$1]} i
    for i in $(seq 100); do
        fusermount3 -u "$m" 2>/dev/null && break
        mountpoint -q "$m" || break
        sleep 0.2
    done
    mountpoint -q "$m" && die "$f: cannot unmount $m"
    for i in $(seq 300); do kill -0 "${PID[$f]}" 2>/dev/null || break; sleep 0.1; done
    stop_pid "${PID[$f]}"
    PID[$f]=""
}

label() {
    case "$1" in gc) echo gocryptfs ;; off) echo images=off ;; *) echo "coder=$1" ;; esac
}

# ---------------------------------------------------------------- ingest
copy_into() { # FS SET DEST: copy time (s) and bytes the backing folder grew by -> kv
    local f=$1 s=$2 dest=$3 b0 t0 t1
    sync
    find "${BACK[$f]}" -type f | sort >"$W/before.lst"
    b0=$(backing_bytes "${BACK[$f]}")
    t0=$(now)
    cp -r "$CORPUS/$s" "$dest" || die "$f: cp -r of the $s set failed"
    t1=$(now)
    COPY_T0=$t0 COPY_T1=$t1 COPY_B0=$b0
}

ingest() { # FS (off or a coder): each set between two copies of it into gocryptfs
    local f=$1 s out zero peak t_all
    for s in $SETS; do
        cat "$CORPUS/$s"/* >/dev/null # the source comes from the page cache for both copies
        say "$(label "$f"): copying the $s set (gocryptfs first)"
        copy_into gc "$s" "${MNT[gc]}/$f-$s"
        kv "gccopy.$f.$s" "$(awk -v a="$COPY_T0" -v b="$COPY_T1" 'BEGIN { printf "%.4f", b - a }')"
        sync
        kv "bytes.gc.$s" $(($(backing_bytes "${BACK[gc]}") - COPY_B0))
        copy_into "$f" "$s" "${MNT[$f]}/$s"
        kv "copy.$f.$s" "$(awk -v a="$COPY_T0" -v b="$COPY_T1" 'BEGIN { printf "%.4f", b - a }')"
        if [ "$f" != off ]; then
            out=$("$py" "$helper" backlog "${MNT[$f]}" --timeout "$WAIT_MAX") || die "$f: reading the backlog failed"
            read -r zero t_all _ peak <<<"$out"
            if [ "$zero" = zero ]; then
                kv "drain.$f.$s" "$(awk -v a="$COPY_T1" -v b="$t_all" 'BEGIN { printf "%.3f", b - a }')"
                kv "conv.$f.$s" "$(awk -v a="$COPY_T0" -v b="$t_all" 'BEGIN { printf "%.3f", b - a }')"
            else
                say "$f: the backlog still read $t_all after $WAIT_MAX s"
                kv "drain.$f.$s" timeout
            fi
            kv "peak.$f.$s" "$peak"
        fi
        kv "storage.$f.$s" "$("$py" "$helper" storage "${MNT[$f]}/$s")"
        sync
        kv "bytes.$f.$s" $(($(backing_bytes "${BACK[$f]}") - COPY_B0))
        if [ "$f" != off ]; then
            find "${BACK[$f]}" -type f | sort >"$W/after.lst"
            comm -13 "$W/before.lst" "$W/after.lst" >"$W/new.lst"
            kv "anatomy.$f.$s" "$("$py" "$helper" anatomy "$T/imgcrypt" "$W/new.lst")"
        fi
        # gocryptfs once more, now that this mount is idle: the ratio is to the mean of the two,
        # so that a drift of the machine's load over the pair cancels out
        copy_into gc "$s" "${MNT[gc]}/$f-$s.again"
        kv "gccopy2.$f.$s" "$(awk -v a="$COPY_T0" -v b="$COPY_T1" 'BEGIN { printf "%.4f", b - a }')"
    done
}

# ---------------------------------------------------------------- reads
reads() { # FS DIR-PREFIX: cold, warm and series reads of each set -> kv
    local f=$1 pre=$2 s out vs
    local cold_opt=
    [ "$f" = gc ] || cold_opt=cache_mb=0
    fs_umount "$f"
    fs_mount "$f" "$cold_opt"
    for s in $SETS; do
        say "$(label "$f"): cold reads of $READS $s files"
        # shellcheck disable=SC2086
        mapfile -t fl < <(files_in "${MNT[$f]}/$pre$s" ${SAMPLE[$s]})
        out=$("$py" "$helper" read --mode cold --src "$CORPUS/$s" \
            ${PRIMER[$s]:+--primer "${MNT[$f]}/$pre$s/${PRIMER[$s]}"} "${fl[@]}") || die "$f: cold read failed"
        kv "cold.$f.$s" "$(echo "$out" | awk '$1 == "ms" { print $2, $3, $4 }')"
        kv "first.$f.$s" "$(echo "$out" | awk '$1 == "first" { print $2, $3, $4 }')"
        kv "mism.$f.$s.cold" "$(echo "$out" | awk '$1 == "mismatch" { print $2 }')"
    done
    fs_umount "$f"
    fs_mount "$f"
    for s in $SETS; do
        say "$(label "$f"): warm reads of $READS $s files"
        # shellcheck disable=SC2086
        mapfile -t fl < <(files_in "${MNT[$f]}/$pre$s" ${SAMPLE[$s]})
        vs=
        [ "$f" = off ] || vs=${MNT[off]}/$s
        out=$("$py" "$helper" read --mode warm --src "$CORPUS/$s" ${vs:+--vs "$vs"} "${fl[@]}") ||
            die "$f: warm read failed"
        kv "warm.$f.$s" "$(echo "$out" | awk '$1 == "ms" { print $2, $3, $4 }')"
        kv "wratio.$f.$s" "$(echo "$out" | awk '$1 == "ratio" { print $2 }')"
        kv "mism.$f.$s.warm" "$(echo "$out" | awk '$1 == "mismatch" { print $2 }')"
    done
    for s in $SETS; do
        say "$(label "$f"): series of $SERIES $s files, cold"
        fs_umount "$f"
        drop_caches
        fs_mount "$f"
        # shellcheck disable=SC2086
        mapfile -t fl < <(files_in "${MNT[$f]}/$pre$s" ${SERIESF[$s]})
        out=$("$py" "$helper" read --mode series --src "$CORPUS/$s" "${fl[@]}") || die "$f: series read failed"
        kv "series.$f.$s" "$(echo "$out" | awk '$1 == "s" { print $2 }')"
        kv "mism.$f.$s.series" "$(echo "$out" | awk '$1 == "mismatch" { print $2 }')"
    done
}

# ---------------------------------------------------------------- run
say "work folder $W ($(df -PT "$W" | awk 'NR == 2 { print $2 " on " $1 }'))"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
T_START=$(now)
TARGETS="off $CODERS"
fs_setup gc
fs_mount gc
# images=off stays mounted: the warm reads of the others are paired with its block files.
for f in $TARGETS; do
    fs_setup "$f"
    fs_mount "$f"
    ingest "$f"
    reads "$f" ""
    [ "$f" = off ] || fs_umount "$f"
done
# gocryptfs's reads, of the copy made beside images=off
reads gc "off-"
fs_umount off
fs_umount gc
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
for f in $TARGETS; do
    kv "convfail.$f" "$(grep -c 'conversion of' "$LOGS/$f.log" 2>/dev/null || echo 0)"
    kv "leftover.$f" "$(find "${BACK[$f]}" -name '.imgcryptfs.tmp.*' | wc -l)"
done
# CPU time of the script and of everything it waited for (the daemons included): beside the wall
# time, how much of the machine this run had
times >"$W/times.txt" # in this shell: a pipe would run it in a child
read -r _ _ cu cs < <(tr '\n' ' ' <"$W/times.txt")
kv meta.cpu "$(echo "$cu $cs" | awk '{ split($1, u, "m"); split($2, s, "m"); printf "%.0f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }')"
kv meta.n "$N"
kv meta.series "$SERIES"
kv meta.gen "$GEN"
kv meta.reads "$READS"
kv meta.jls_n "$JLS_N"
kv meta.jls_note "$JLS_NOTE"
kv meta.targets "$TARGETS"
kv meta.icopts "${IC_OPTS:-none}"
kv meta.sets "$SETS"
kv meta.version "imgcryptfs $IMGC_VERSION, $(gocryptfs --version 2>/dev/null | awk '{ print $1, $2 }' | tr -d ';'), Pillow $("$py" -c 'import PIL; print(PIL.__version__)'), pydicom $("$py" -c 'import pydicom; print(pydicom.__version__)'), zlib $("$py" -c 'import zlib; print(zlib.ZLIB_RUNTIME_VERSION)')"
kv meta.host "$(uname -r), $(nproc) CPU ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM"
kv meta.disk "$(df -PT "$W" | awk 'NR == 2 { print $2 " " $1 }')"
kv meta.load "$LOAD_START at start, $LOAD_END at end"
kv meta.wall "$(awk -v a="$T_START" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }')"

"$py" "$helper" report "$KV" >"$W/table.txt" || die "report failed (results in $KV)"
cat "$W/table.txt"
if [ -n "${BENCH_OUT:-}" ]; then
    cp "$W/table.txt" "$BENCH_OUT" && say "table written to $BENCH_OUT"
fi
exit 0
