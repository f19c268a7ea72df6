#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The test command (also what CI runs): install what is missing, build with warnings as errors,
# run every unit and integration test. Exits with ctest's status.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/setup.sh"
bash "$root/scripts/build.sh" -DIMGCRYPTFS_WERROR=ON
status=0
ctest --test-dir "$root/build" --output-on-failure -j2 || status=$?
exit "$status"
