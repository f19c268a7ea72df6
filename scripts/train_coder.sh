#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Reproduce the shipped coder model, models/coder-default.pixnet (the neural predictor of the
# pixel coder, codec/pixel/pixnet.h gives its file format), from Debian packages, and measure it
# against the fixed predictor 0 on the held-out images.
#
# Data (apt-get install mricron-data python3-pydicom; the slices are written as PGM, no PIL):
# same hold-out as scripts/train_ae.sh:
#   - slices of the brain MRI volumes ch2, ch2better (8-bit) and inia19-t1-brain (16-bit)
#     cut by scripts/nii_slices.py, 40 per axis and volume;
#   - the native-pixel DICOM files ExplVR_BigEnd, SC_rgb_jpeg_dcmd, SC_rgb_small_odd of
#     python3-pydicom.
# Held out, never trained on: every slice whose index lies in [0.44 N, 0.56 N) of its axis
# (slices in [0.38 N, 0.44 N) and [0.56 N, 0.62 N) are used for neither), and every file of
# TESTDATA (../shared/testdata) and of tests/data.
#
# Training: one OpenBLAS thread, fixed seed; deterministic on a given machine and OpenBLAS
# build. Two sets of two small networks (passes D and C: 15 features, three hidden layers of
# 32, two outputs), CODER_EPOCHS x CODER_STEPS mini-batches each: set 0 (planes of fewer than
# 256 values) on every training image, about 3.5 minutes on one core (255 images); set 1 (the
# others: 12- and 16-bit scans) on the 16-bit slices only (inia19-t1-brain, 84 images), about
# 2.5 minutes; then merged into one model file (imgcrypt train --coder --merge).
#
# usage: scripts/train_coder.sh [BUILD_DIR [WORK_DIR [TESTDATA]]]
#   BUILD_DIR  holds bin/imgcrypt (default build)
#   WORK_DIR   scratch folder for slices, the model and logs (default /tmp/imgc-train-coder)
#   TESTDATA   held-out test images (default ../shared/testdata next to the repository)
# Environment: CODER_EPOCHS (60), CODER_STEPS (400), CODER_HIDDEN (32), CODER_LAYERS (3),
# CODER_SEED (1), CODER_INSTALL=1 to install the model as the default (what was done for the
# shipped models/coder-default.pixnet; see codec/pixel/pixnet.h for its figures).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
work=${2:-/tmp/imgc-train-coder}
testdata=${3:-$root/../shared/testdata}
imgcrypt=$build/bin/imgcrypt
py=/usr/bin/python3
pydicom_files=/usr/lib/python3/dist-packages/pydicom/data/test_files

[ -x "$imgcrypt" ] || { echo "train_coder: $imgcrypt is not built" >&2; exit 1; }
[ -d /usr/share/mricron/templates ] || { echo "train_coder: apt-get install mricron-data" >&2; exit 1; }
[ -d "$pydicom_files" ] || { echo "train_coder: apt-get install python3-pydicom" >&2; exit 1; }

rm -rf "$work/all" "$work/train" "$work/heldout"
mkdir -p "$work/all" "$work/train" "$work/heldout"
"$py" "$root/scripts/nii_slices.py" --out "$work/all" --per-axis 40 --format pgm

# Split by slice position (as scripts/train_ae.sh); volume sizes from the NIfTI headers.
"$py" "$root/scripts/heldout_split.py" "$work"
for f in ExplVR_BigEnd.dcm SC_rgb_jpeg_dcmd.dcm SC_rgb_small_odd.dcm; do
    ln -s "$pydicom_files/$f" "$work/train/$f"
done

rm -rf "$work/wide"
mkdir -p "$work/wide"
for f in "$work"/train/*-16.pgm; do
    ln -s "$(readlink -f "$f")" "$work/wide/"
done

model=$work/coder.pixnet
start=$(date +%s)
for set in narrow wide; do
    data=$work/train
    [ "$set" = wide ] && data=$work/wide
    "$imgcrypt" train --coder --data "$data" --epochs "${CODER_EPOCHS:-60}" \
        --steps "${CODER_STEPS:-400}" --hidden "${CODER_HIDDEN:-32}" \
        --layers "${CODER_LAYERS:-3}" --seed "${CODER_SEED:-1}" --out "$work/coder-$set.pixnet"
done 2>&1 | tee "$work/train.log"
"$imgcrypt" train --coder --merge "$work/coder-narrow.pixnet" "$work/coder-wide.pixnet" \
    --out "$model" 2>&1 | tee -a "$work/train.log"
echo "training took $(($(date +%s) - start)) s" | tee -a "$work/train.log"

# Held-out figures: predictor 1 (this model) against predictor 0, bits per sample.
shopt -s nullglob
{
    echo "== held-out slices"
    "$imgcrypt" train --coder --eval "$model" "$work"/heldout/*.pgm
    echo "== tests/data"
    "$imgcrypt" train --coder --eval "$model" "$root"/tests/data/*.png "$root"/tests/data/*.pgm \
        "$root"/tests/data/*.dcm 2>/dev/null
    if [ -d "$testdata" ]; then
        echo "== testdata"
        "$imgcrypt" train --coder --eval "$model" "$testdata"/* 2>/dev/null
    fi
} 2>&1 | tee "$work/eval.log"

if [ "${CODER_INSTALL:-0}" = 1 ]; then
    cp "$model" "$root/models/coder-default.pixnet"
    echo "installed $root/models/coder-default.pixnet ($(stat -c %s "$model") bytes)"
fi
