#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Configure and build imgcryptfs into build/ (RelWithDebInfo, two jobs). Extra arguments go to
# cmake's configure step, e.g. -DIMGCRYPTFS_WERROR=ON or -DIMGCRYPTFS_SANITIZE=address,undefined.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"
cmake --build "$root/build" -j2
