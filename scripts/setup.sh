#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Install what imgcryptfs needs on Debian 12, only what is missing, and make sure /dev/fuse is
# there. Silent when everything is present; safe to run again and again (as root).
set -euo pipefail

# Build: compiler, CMake, libfuse3, OpenSSL, OpenBLAS, libpng, Check.
BUILD_PKGS=(build-essential cmake pkg-config libfuse3-dev fuse3 libssl-dev libopenblas-dev
            libpng-dev check)
# Tests and the demo: real clients and real medical images.
TEST_PKGS=(attr python3 python3-pil python3-pydicom imagemagick dcmtk pngcheck zopfli advancecomp optipng pngcrush fio gocryptfs
           mricron-data xxd file procps psmisc kmod util-linux
           glusterfs-server  # test_gluster.sh: glusterd, the gluster CLI and the FUSE client
           python3-numpy  # pydicom's RLE decoder, for tests/data/pydicom-manifest.py
           clang clang-tidy)  # the libFuzzer and clang-tidy stages of scripts/test.sh

say() { printf 'setup: %s\n' "$*"; }

missing=()
for pkg in "${BUILD_PKGS[@]}" "${TEST_PKGS[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [[ $status == installed ]] || missing+=("$pkg")
done

if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        say "missing packages: ${missing[*]}"
        say "run this script as root (or: sudo apt-get install ${missing[*]})"
        exit 1
    fi
    log=$(mktemp /tmp/imgcryptfs-setup.XXXXXX)
    trap 'rm -f "$log"' EXIT
    fail() { tail -n 30 "$log" >&2; say "$1 failed"; exit 1; }
    apt_update() {
        DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$log" 2>&1 || fail "apt-get update"
        updated=1
    }
    apt_install() {
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            "${missing[@]}" >>"$log" 2>&1
    }
    # Refresh the package lists only when a package is unknown to them (a fresh machine has no
    # lists at all), or when stale lists name versions the mirror no longer has.
    updated=0
    for pkg in "${missing[@]}"; do
        cand=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
        if [[ -z $cand || $cand == "(none)" ]]; then
            apt_update
            break
        fi
    done
    say "installing ${missing[*]}"
    if ! apt_install; then
        ((updated)) && fail "apt-get install"
        apt_update
        apt_install || fail "apt-get install"
    fi
    say "installed ${#missing[@]} package(s)"
fi

# FUSE: the kernel module and /dev/fuse. Containers often lack one or the other; the build and
# the unit tests do not need them, the mount tests and the demo's mount part do.
if [[ ! -c /dev/fuse ]]; then
    if [[ $(id -u) -eq 0 ]]; then
        if command -v modprobe >/dev/null 2>&1; then
            modprobe fuse >/dev/null 2>&1 || true
        fi
        if [[ ! -c /dev/fuse ]] && grep -qw fuse /proc/filesystems 2>/dev/null; then
            mknod -m 0666 /dev/fuse c 10 229 2>/dev/null || true
        fi
    fi
fi
if [[ ! -c /dev/fuse ]]; then
    say "FUSE is unavailable: /dev/fuse is missing (load the fuse module, or give the"
    say "container --device /dev/fuse --cap-add SYS_ADMIN); mounts will not work, tests that"
    say "mount will be skipped"
elif ! (exec 3<>/dev/fuse) 2>/dev/null; then
    say "FUSE is unavailable: /dev/fuse cannot be opened by $(id -un); mounts will not work,"
    say "tests that mount will be skipped"
fi
exit 0
