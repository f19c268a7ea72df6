#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A libFuzzer campaign over the fuzz targets (tests/fuzz/fuzz_*.c): builds them with clang and
# ASan+UBSan into build-fuzz/, runs each one for a while, then minimises what it found back into
# tests/fuzz/corpus/<target>/ and prints, per target, executions, exec/s, corpus files before and
# after, and the coverage libFuzzer reports. A crash is copied into tests/data/crashers/<target>/
# and fails the run. Long runs and the short CI run are the same script; the working corpus
# (build-fuzz/campaign/<target>/corpus) is kept between runs, so runs add up.
#
# usage: scripts/fuzz_campaign.sh [-t SECONDS | -H HOURS] [-r RUNS] [-j JOBS] [-n] [TARGET[:SECONDS]...]
#   -t SECONDS  per target (default 600)
#   -H HOURS    in all, split evenly over the targets run (instead of -t)
#   -r RUNS     stop each target after RUNS executions (split over its jobs); then -t and -H
#               are only a bound (none unless given)
#   -j JOBS     libFuzzer jobs per target (-jobs/-workers; default half the cores, at least 1)
#   -n          leave tests/fuzz/corpus and tests/data/crashers alone (CI): no merge, no copy
#   TARGET      png, dicom, ... (default: every target); TARGET:SECONDS sets its own duration
# Environment: IMGC_FUZZ_NICE (default 19) is the niceness of the fuzzers.
# A time-boxed session can end a target early: `kill -INT` its fuzz_TARGET processes (every job
# and, with -j, their parent): what they ran is counted and the corpus merged as at the end of
# its time ("stopped").
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bdir="$root/build-fuzz"
work="$bdir/campaign"
secs=600 hours="" merge=1 runs="" secs_given=0
jobs=$(($(nproc) / 2))
[ "$jobs" -ge 1 ] || jobs=1
while getopts "t:H:r:j:n" opt; do
    case $opt in
    t) secs=$OPTARG secs_given=1 ;;
    H) hours=$OPTARG secs_given=1 ;;
    r) runs=$OPTARG ;;
    j) jobs=$OPTARG ;;
    n) merge=0 ;;
    *) sed -n '10,19p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
command -v clang >/dev/null || { echo "fuzz: clang is needed for libFuzzer" >&2; exit 2; }

all=$(find "$root/tests/fuzz" -maxdepth 1 -name 'fuzz_*.c' | sed 's|.*/fuzz_||; s/\.c$//' | sort)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets <<<"$all"
for t in "${targets[@]}"; do
    grep -qx "${t%%:*}" <<<"$all" || { echo "fuzz: no target ${t%%:*} (have: $(tr "\n" " " <<<"$all"))" >&2; exit 2; }
done
if [ -n "$hours" ]; then
    secs=$(awk -v h="$hours" -v n=${#targets[@]} 'BEGIN { printf "%d", h * 3600 / n }')
fi
[ -z "$runs" ] || [ "$secs_given" = 1 ] || secs=0
nice=${IMGC_FUZZ_NICE:-19}
flags=(-max_len=65536 -timeout=20 -rss_limit_mb=2048 -print_final_stats=1)

CC=clang cmake -S "$root" -B "$bdir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DIMGCRYPTFS_FUZZ=ON -DIMGCRYPTFS_SANITIZE=address,undefined >/dev/null
# shellcheck disable=SC2046
cmake --build "$bdir" -j2 --target $(for t in "${targets[@]}"; do echo "fuzz_${t%%:*}"; done) >/dev/null

count() { find "$1" -maxdepth 1 -type f ! -name '.*' 2>/dev/null | wc -l; }
# sum of a final-stats field over the logs of one target
stat_sum() { cat "$@" 2>/dev/null | awk -v k="$STAT:" '$1 == k { s += $2 } END { print s + 0 }'; }

# Merge the working corpus and the committed one into a fresh folder (libFuzzer keeps the
# smallest inputs that together cover every feature) and swap it in only if that succeeded.
# Hand-made seeds (any name but a 40-digit hash) stay, under their name, even when redundant:
# they are the readable examples of each format.
merge_back() {
    local what=$1 exe=$2 dst="$root/tests/fuzz/corpus/$1" fresh
    fresh=$(mktemp -d "$work/$what/merged.XXXXXX")
    mkdir -p "$dst"
    if ! nice -n "$nice" "$exe" -merge=1 "${flags[@]}" "$fresh" "$dst" "$work/$what/corpus" \
        >"$work/$what/merge.log" 2>&1; then
        echo "  merge failed (see $work/$what/merge.log); tests/fuzz/corpus/$what unchanged"
        rm -rf "$fresh"
        return 1
    fi
    find "$fresh" -type f -size +64k -delete
    local f h
    for f in "$dst"/*; do
        [ -f "$f" ] || continue
        [[ $(basename "$f") =~ ^[0-9a-f]{40}$ ]] && continue
        h=$(sha1sum "$f" | cut -d' ' -f1)
        rm -f "$fresh/$h"
        cp "$f" "$fresh/"
    done
    if [ "$(count "$fresh")" -eq 0 ]; then
        echo "  merge left nothing; tests/fuzz/corpus/$what unchanged"
        rm -rf "$fresh"
        return 1
    fi
    rm -rf "$dst" && mv "$fresh" "$dst"
}

# Whether a run that ended with status $2 was only interrupted (SIGINT), not a crash: no input
# was saved, and every log given ends its run with libFuzzer's final statistics and holds no
# sanitizer or libFuzzer error. A single fuzzer exits 72 then; the parent of -jobs exits 1.
interrupted() {
    local what=$1 rc=$2 log
    shift 2
    [ "$rc" -eq 72 ] || [ "$rc" -eq 1 ] || return 1
    find "$work/crashes" -maxdepth 1 -name "$what-*" | grep -q . && return 1
    for log in "$@"; do
        grep -q '^stat::number_of_executed_units:' "$log" 2>/dev/null || return 1
        grep -Eq '^==[0-9]+==ERROR|ERROR: libFuzzer|runtime error:' "$log" && return 1
    done
    return 0
}

# Run one target; prints its line of the summary, returns 1 on a crash.
run_target() {
    local what=${1%%:*} len=$secs exe="$bdir/tests/fuzz_${1%%:*}" dir="$work/${1%%:*}"
    [ "$1" = "$what" ] || len=${1#*:}
    mkdir -p "$dir/corpus" "$work/crashes"
    rm -f "$dir"/fuzz-*.log "$dir/run.log" "$work/crashes/$what"-*
    local seeds=("$root/tests/fuzz/corpus/$what") before
    [ -d "$root/tests/data/crashers/$what" ] && seeds+=("$root/tests/data/crashers/$what")
    before=$(count "$root/tests/fuzz/corpus/$what")
    local par=()
    [ "$jobs" -gt 1 ] && par=(-jobs="$jobs" -workers="$jobs")
    [ -n "$runs" ] && par+=(-runs=$(((runs + jobs - 1) / jobs)))
    local rc=0 t0=$SECONDS
    (cd "$dir" && nice -n "$nice" "$exe" "${flags[@]}" -max_total_time="$len" "${par[@]}" \
        -artifact_prefix="$work/crashes/$what-" corpus "${seeds[@]}" >run.log 2>&1) || rc=$?
    len=$((SECONDS - t0))
    local logs=("$dir/run.log")
    [ "$jobs" -gt 1 ] && logs=("$dir"/fuzz-*.log)
    local stopped=0
    if [ "$rc" -ne 0 ] && interrupted "$what" "$rc" "${logs[@]}"; then
        rc=0 stopped=1
    fi
    local execs cov crashes
    execs=$(STAT=stat::number_of_executed_units stat_sum "${logs[@]}")
    cov=$(grep -ho 'cov: [0-9]*' "${logs[@]}" 2>/dev/null | awk '$2 > m { m = $2 } END { print m + 0 }')
    crashes=$(find "$work/crashes" -maxdepth 1 -name "$what-*" -type f | wc -l)
    printf '%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$what" "$len" "$execs" >>"$work/history.tsv"
    local after=$before
    if [ "$merge" = 1 ] && [ "$crashes" -eq 0 ] && [ "$rc" -eq 0 ]; then
        merge_back "$what" "$exe" && after=$(count "$root/tests/fuzz/corpus/$what")
    fi
    local result=ok
    [ "$stopped" = 1 ] && result=stopped
    [ "$rc" -ne 0 ] && result="CRASH rc=$rc"
    printf '%-10s %12s %8s %6s %6s %6s  %s\n' "$what" "$execs" "$((execs / (len > 0 ? len : 1)))" \
        "$before" "$after" "$cov" "$result"
    if [ "$crashes" -gt 0 ] || [ "$rc" -ne 0 ]; then
        if [ "$merge" = 1 ] && [ "$crashes" -gt 0 ]; then
            mkdir -p "$root/tests/data/crashers/$what"
            cp "$work/crashes/$what"-* "$root/tests/data/crashers/$what/"
        fi
        return 1
    fi
}

echo "fuzz: ${#targets[@]} targets, ${secs} s each unless given (0: no bound)${runs:+, $runs executions each}, $jobs job(s), nice $nice"
printf '%-10s %12s %8s %6s %6s %6s  %s\n' target execs exec/s before after cov result
failed=()
for t in "${targets[@]}"; do
    run_target "$t" || failed+=("${t%%:*}")
done
[ ${#failed[@]} -eq 0 ] && exit 0
echo
for what in "${failed[@]}"; do
    echo "fuzz: $what CRASHED: log $work/$what/ (run.log or fuzz-*.log), inputs:"
    find "$work/crashes" -maxdepth 1 -name "$what-*" -type f | sed 's/^/  /'
    tail -n 30 "$work/$what"/run.log "$work/$what"/fuzz-*.log 2>/dev/null | sed 's/^/    /'
    [ "$merge" = 1 ] && echo "  copied to tests/data/crashers/$what/: fix the parser so they fail cleanly"
done
exit 1
