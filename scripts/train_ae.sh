#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Reproduce the shipped autoencoder, models/ae-default.params, from Debian packages, and
# measure it on the held-out images.
#
# models/ae-default.params: the default autoencoder of imgcrypt and imgcryptfs (nn/ae.h gives
# its file format; nn/ae_default.c builds it into the library).
#
# Data (apt-get install mricron-data python3-pydicom python3-pil):
#   - slices of the brain MRI volumes ch2, ch2better (8-bit) and inia19-t1-brain (16-bit, values
#     0..~3830) cut by scripts/nii_slices.py, 40 per axis and volume (360 in all);
#   - the native-pixel DICOM files of python3-pydicom that imgcrypt reads, except those that
#     ../shared/testdata holds too (CT_small, MR_small*): ExplVR_BigEnd, SC_rgb_jpeg_dcmd,
#     SC_rgb_small_odd.
# Held out for evaluation, never trained on:
#   - every slice whose index lies in [0.44 N, 0.56 N) of its axis (N slices on that axis), in
#     every volume: 54 slices; slices in [0.38 N, 0.44 N) and [0.56 N, 0.62 N) are used for
#     neither, so that at least 6% of each axis (11 mm in ch2) separates training from
#     evaluation;
#   - every file of TESTDATA (../shared/testdata: MR and CT DICOMs, axial, coronal and sagittal
#     T1 slices, 8-, 12- and 16-bit, grey and RGB).
# The testdata slices come from the same subjects as the volumes, so the held-out set measures
# generalisation to unseen slices, not to unseen subjects.
#
# Training: two runs, one OpenBLAS thread, fixed seeds; deterministic on a given machine and
# OpenBLAS build. The first trains from scratch (36 x 500 steps, step size 2e-3 down to 1e-4);
# the second continues from it with a smaller step size (30 x 500 steps, 5e-4 down to 1e-5),
# which the decaying schedule of one run does not reach. Each run ends by quantising the
# decoder on the training images (the integer decoder, which previews use). About 20 + 16
# minutes on one core of a 2 GHz Xeon.
#
# usage: scripts/train_ae.sh [BUILD_DIR [WORK_DIR [TESTDATA]]]
#   BUILD_DIR  holds bin/imgcrypt (default build)
#   WORK_DIR   scratch folder for slices, the model and logs (default /tmp/imgc-train-ae)
#   TESTDATA   held-out test images (default ../shared/testdata next to the repository)
# Environment: AE_EPOCHS (36), AE_STEPS (500 per epoch), AE_SEED (1), AE_BPP (0.10, the rate
# lambda follows on training crops), AE_FT_EPOCHS (30; 0 skips the second run), AE_FT_SEED (2),
# AE_INSTALL=0 to leave models/ untouched.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
work=${2:-/tmp/imgc-train-ae}
testdata=${3:-$root/../shared/testdata}
imgcrypt=$build/bin/imgcrypt
py=/usr/bin/python3
pydicom_files=/usr/lib/python3/dist-packages/pydicom/data/test_files

[ -x "$imgcrypt" ] || { echo "train_ae: $imgcrypt is not built" >&2; exit 1; }
[ -d /usr/share/mricron/templates ] || { echo "train_ae: apt-get install mricron-data" >&2; exit 1; }
[ -d "$pydicom_files" ] || { echo "train_ae: apt-get install python3-pydicom" >&2; exit 1; }

rm -rf "$work/all" "$work/train" "$work/heldout"
mkdir -p "$work/all" "$work/train" "$work/heldout"
"$py" "$root/scripts/nii_slices.py" --out "$work/all" --per-axis 40

# Split by slice position (see above); the volume sizes come from the NIfTI headers.
"$py" "$root/scripts/heldout_split.py" "$work"
for f in ExplVR_BigEnd.dcm SC_rgb_jpeg_dcmd.dcm SC_rgb_small_odd.dcm; do
    ln -s "$pydicom_files/$f" "$work/train/$f"
done

model=$work/ae.params
start=$(date +%s)
"$imgcrypt" train --data "$work/train" --epochs "${AE_EPOCHS:-36}" --steps "${AE_STEPS:-500}" \
    --seed "${AE_SEED:-1}" --bpp "${AE_BPP:-0.10}" --out "$work/ae-stage1.params" 2>&1 |
    tee "$work/train.log"
if [ "${AE_FT_EPOCHS:-30}" -gt 0 ]; then
    "$imgcrypt" train --data "$work/train" --init "$work/ae-stage1.params" \
        --epochs "${AE_FT_EPOCHS:-30}" --steps "${AE_STEPS:-500}" --seed "${AE_FT_SEED:-2}" \
        --bpp "${AE_BPP:-0.10}" --lr 5e-4 --lr-end 1e-5 --out "$model" 2>&1 |
        tee -a "$work/train.log"
else
    cp "$work/ae-stage1.params" "$model"
fi
echo "training took $(($(date +%s) - start)) s" | tee -a "$work/train.log"

# Held-out figures: 8-bit and 16-bit images apart.
shopt -s nullglob
eval_set() {
    local name=$1
    shift
    [ $# -gt 0 ] || return 0
    echo "== $name"
    "$imgcrypt" train --eval "$model" "$@" || true
}
{
    eval_set "held-out slices, 8-bit" "$work"/heldout/*-8.png
    eval_set "held-out slices, 16-bit" "$work"/heldout/*-16.png
    if [ -d "$testdata" ]; then
        eight=() sixteen=()
        for f in "$testdata"/*; do
            case $("$imgcrypt" inspect "$f" 2>/dev/null | awk 'NR == 2 { print $3 }') in
            8/*) eight+=("$f") ;;
            16/*) sixteen+=("$f") ;;
            esac
        done
        eval_set "testdata, 8-bit" "${eight[@]}"
        eval_set "testdata, 16-bit" "${sixteen[@]}"
    fi
} 2>&1 | tee "$work/eval.log"

if [ "${AE_INSTALL:-1}" = 1 ]; then
    cp "$model" "$root/models/ae-default.params"
    echo "installed $root/models/ae-default.params ($(stat -c %s "$model") bytes)"
fi
