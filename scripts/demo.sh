#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The demo: make a keyring, mount, store real medical images, look at the backing folder as a
# thief or a backup would, remount, and check that every byte comes back. Everything happens in
# a temporary folder that is unmounted and removed on every exit.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${IMGC_BIN:-$root/build/bin}
data=$root/tests/data
files=(mri-t1-axial-8bit.png mri-t1-axial-12in16bit.png mri-t1-sagittal-256.png
       mri-t1-axial-8bit.pgm MR_small.dcm CT_small.dcm)
needle='CompressedSamples^MR1' # the patient name in MR_small.dcm

step() { printf '\n== %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
die() { printf 'demo: FAILED: %s\n' "$*" >&2; exit 1; }

[[ -x $bin/imgcrypt ]] || die "$bin/imgcrypt is not built; run: bash scripts/build.sh"
PATH=$bin:$PATH

work=$(mktemp -d /tmp/imgcryptfs-demo.XXXXXX)
cleanup() {
    cd /
    if mountpoint -q "$work/mnt" 2>/dev/null; then
        fusermount3 -u "$work/mnt" 2>/dev/null || fusermount3 -u -z "$work/mnt" 2>/dev/null || true
    fi
    if mountpoint -q "$work/mnt" 2>/dev/null; then
        printf 'demo: %s is still mounted; %s left in place\n' "$work/mnt" "$work" >&2
        return
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP
cd "$work"
umask 077
echo "imgcryptfs demo in $work (removed at the end)"

step "1. A keyring for a new encrypted folder (backing/), unlocked by a passphrase file"
head -c 24 /dev/urandom | base64 >passphrase
run imgcrypt init --passfile passphrase backing
run imgcrypt info backing

if [[ ! -x $bin/imgcryptfs ]]; then
    printf '\nThe filesystem daemon (imgcryptfs) is not part of this build yet: the demo stops here.\n'
    exit 0
fi
if [[ ! -c /dev/fuse ]] || ! command -v fusermount3 >/dev/null 2>&1; then
    printf '\nFUSE is not available on this machine (no /dev/fuse or no fusermount3): the demo\n'
    printf 'stops here. See scripts/setup.sh.\n'
    exit 0
fi

step "2. Mount it and store real medical images (PNG, PGM, DICOM)"
mkdir mnt
run imgcryptfs -o passfile=passphrase backing mnt || die "imgcryptfs could not mount (exit $?)"
mountpoint -q mnt || die "imgcryptfs returned, but mnt is not a mount point"
for f in "${files[@]}"; do
    printf '$ cp tests/data/%s mnt/\n' "$f"
    cp "$data/$f" mnt/
done
run ls -l mnt
echo "Each image is converted after its last close; waiting for the backlog to empty:"
for _ in $(seq 600); do
    [[ $(getfattr -n user.imgcryptfs.backlog --only-values mnt 2>/dev/null) == 0 ]] && break
    sleep 0.1
done
for f in "${files[@]}"; do
    printf '%-28s %s\n' "$f" "$(getfattr -n user.imgcryptfs.storage --only-values "mnt/$f")"
done
printf '(image: stored as a container, pixels coded by the keyed coder; blocks: not smaller as an\n'
printf 'image, kept as a sealed block file)\n'
images=0
for f in "${files[@]}"; do
    [[ $(getfattr -n user.imgcryptfs.storage --only-values "mnt/$f") == image* ]] &&
        images=$((images + 1))
done
((images >= 4)) || die "only $images of ${#files[@]} images were stored as containers"

step "3. The backing folder: all that a backup or a thief gets"
sync
run ls -la backing
echo "Stored images are PNG pictures of noise (the sealed pixel stream); the rest is sealed blocks:"
noise=
for stored in $(find backing -maxdepth 1 -type f ! -name imgcryptfs.keyring ! -name '.imgcryptfs.*' |
                sort); do
    printf '%s: %s\n' "${stored#backing/}" "$(file -b "$stored" | cut -c1-60)"
    [[ -z $noise ]] && head -c 8 "$stored" | grep -q PNG && noise=$stored
done
[[ -n $noise ]] || die "no stored image in backing/"
printf '$ head -c 64 %s | xxd\n' "$noise"
head -c 64 "$noise" | xxd
if command -v convert >/dev/null 2>&1; then
    convert "$noise" -resize 64x64! -colorspace gray -compress none pgm:- 2>/dev/null |
        awk 'NR > 3 { for (i = 1; i <= NF; i++) s[n++] = $i }
             END { for (i = 0; i < 16 * 64; i += 64) { l = "";
                   for (j = 0; j < 64; j += 2) { v = s[4 * i + j];
                   l = l substr(" .:-=+*#%@", int(v / 25.6) + 1, 1) } print "   " l } }'
    echo "(one stored image, as any viewer shows it: noise)"
fi

step "4. Looking for the patient's name"
printf '$ grep -c -a -F %s tests/data/MR_small.dcm\n' "'$needle'"
grep -c -a -F -- "$needle" "$data/MR_small.dcm" || die "the demo's needle is not in MR_small.dcm"
printf '$ grep -r -l -a -F %s backing\n' "'$needle'"
if grep -r -l -a -F -- "$needle" backing; then
    die "the patient name is readable in the backing folder"
fi
if find backing -iname '*mri*' -o -iname '*.dcm' -o -iname '*.png' -o -iname '*.pgm' | grep .; then
    die "a plaintext file name is visible in the backing folder"
fi
echo "(no match: neither the name nor any file name is visible in backing/)"

step "5. Unmount, mount again, and read every file back"
run fusermount3 -u mnt
# Let the previous daemon finish before the next one opens the same backing folder.
if command -v fuser >/dev/null 2>&1; then
    for _ in $(seq 50); do fuser -s backing 2>/dev/null || break; sleep 0.1; done
fi
run imgcryptfs -o passfile=passphrase backing mnt || die "imgcryptfs could not mount (exit $?)"
mountpoint -q mnt || die "imgcryptfs returned, but mnt is not a mount point"
echo "sha256 of every file read back through mnt/, against the original:"
bad=0
for f in "${files[@]}"; do
    want=$(sha256sum <"$data/$f")
    if ! got=$(sha256sum <"mnt/$f"); then
        printf 'UNREADABLE %s\n' "$f"
        bad=1
    elif [[ ${got%% *} != "${want%% *}" ]]; then
        printf 'DIFFERENT  %s  %s\n' "${got%% *}" "$f"
        bad=1
    else
        printf 'same       %s  %s\n' "${got%% *}" "$f"
    fi
done
run fusermount3 -u mnt
((bad == 0)) || die "files read back differ from the originals"
printf '\nDemo passed: %d files stored sealed and read back bit for bit.\n' "${#files[@]}"
