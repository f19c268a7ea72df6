#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Run clang-tidy with the repository's .clang-tidy over every tracked .c file (or the files
# named as arguments); exits non-zero when any warning is printed. The compile commands come
# from a configure-only CMake tree, build-tidy/ (clang as the compiler when installed, so the
# flags are ones clang-tidy understands) in the Debug configuration, so that the analyzer takes
# every assert as a fact; nothing is compiled. IMGC_TIDY_JOBS files at a time
# (default 2).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bdir="$root/build-tidy"
command -v clang-tidy >/dev/null || { echo "tidy: clang-tidy is not installed" >&2; exit 2; }
if [ ! -f "$bdir/compile_commands.json" ]; then
    cc=cc
    command -v clang >/dev/null && cc=clang
    CC=$cc cmake -S "$root" -B "$bdir" -DCMAKE_BUILD_TYPE=Debug \
        -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null
fi
cd "$root"
if [ $# -gt 0 ]; then
    files=("$@")
else
    mapfile -t files < <(git ls-files '*.c')
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
printf '%s\n' "${files[@]}" |
    xargs -P "${IMGC_TIDY_JOBS:-2}" -n 4 clang-tidy -p "$bdir" --quiet >"$out" 2>/dev/null || true
# one line per warning: file:line:col: warning: text [check]
warnings=$(grep -E '^[^ ].*:[0-9]+:[0-9]+: (warning|error):' "$out" | sort -u || true)
if [ -z "$warnings" ]; then
    echo "tidy: ${#files[@]} files, no warning"
    exit 0
fi
grep -A3 -E ': (warning|error):' "$out" || true
echo
echo "tidy: $(printf '%s\n' "$warnings" | wc -l) warnings in ${#files[@]} files:"
printf '%s\n' "$warnings" | sed -E 's/:.*\[([^]]*)\]$/ \1/' | sort | uniq -c | sort -rn
exit 1
