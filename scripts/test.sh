#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The test command (also what CI runs): install what is missing, build with warnings as errors,
# run every unit and integration test; then the unit tests and the fuzz corpora again in an
# ASan+UBSan build; then the daemon built with ThreadSanitizer under two concurrency tests (a
# report fails the run); then clang-tidy with the repository's .clang-tidy over every tracked .c
# file (scripts/tidy.sh; a warning fails the run; IMGC_TIDY=0 skips it); then, where clang is
# installed, a short libFuzzer run of every fuzz target (scripts/fuzz_campaign.sh,
# IMGC_FUZZ_SECONDS each, default 10; 0 skips it). A crash found is left in
# build-fuzz/campaign/crashes and fails the run: copy it into tests/data/crashers/<target>/
# once fixed.
# Exits non-zero when any stage fails; the stages all run either way.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/setup.sh"
status=0
stage() { printf '\n==== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

stage "build and all tests"
bash "$root/scripts/build.sh" -DIMGCRYPTFS_WERROR=ON
ctest --test-dir "$root/build" --output-on-failure -j2 || status=1

stage "unit tests and fuzz corpora under ASan+UBSan"
cmake -S "$root" -B "$root/build-asan" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DIMGCRYPTFS_WERROR=ON -DIMGCRYPTFS_SANITIZE=address,undefined >/dev/null
# only what the unit and fuzz tests run (test_<module>, fuzz_<target>)
targets=$(cd "$root/tests" && ls unit/test_*.c fuzz/fuzz_*.c | sed 's|.*/||; s|\.c$||')
# shellcheck disable=SC2086
cmake --build "$root/build-asan" -j2 --target $targets >/dev/null
ASAN_OPTIONS=detect_leaks=1 IMGC_QUICK=1 \
    ctest --test-dir "$root/build-asan" --output-on-failure -j2 -L 'unit|fuzz' || status=1

stage "the daemon under ThreadSanitizer: concurrent writers, conversions racing writes"
cmake -S "$root" -B "$root/build-tsan" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DIMGCRYPTFS_WERROR=ON -DIMGCRYPTFS_SANITIZE=thread >/dev/null
cmake --build "$root/build-tsan" -j2 --target imgcryptfs imgcrypt mount.imgcryptfs >/dev/null
rm -rf "$root/build-tsan/reports" && mkdir -p "$root/build-tsan/reports"
for t in test_concurrent_append test_images_races; do
    [ -f "$root/tests/integration/$t.sh" ] || continue
    TSAN_OPTIONS="halt_on_error=1 exitcode=66 log_path=$root/build-tsan/reports/$t" \
        IMGC_BIN="$root/build-tsan/bin" bash "$root/tests/integration/$t.sh" >/dev/null 2>&1 ||
        { echo "$t failed under ThreadSanitizer"; status=1; }
done
if ls "$root/build-tsan/reports"/* >/dev/null 2>&1; then
    echo "ThreadSanitizer reports:"
    head -60 "$root/build-tsan/reports"/*
    status=1
else
    echo "no ThreadSanitizer report"
fi

if command -v clang-tidy >/dev/null && [ "${IMGC_TIDY:-1}" != 0 ]; then
    stage "clang-tidy over every tracked .c file"
    IMGC_TIDY_JOBS=2 bash "$root/scripts/tidy.sh" || status=1
fi

secs=${IMGC_FUZZ_SECONDS:-10}
if command -v clang >/dev/null && [ "$secs" != 0 ]; then
    stage "libFuzzer, ${secs} s per target"
    # the short form of the campaign: no merge into tests/fuzz/corpus, no copy of crashes
    bash "$root/scripts/fuzz_campaign.sh" -n -j 1 -t "$secs" || status=1
fi
exit "$status"
