#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# `imgcrypt train` as a user runs it: one short epoch on a few generated PGM images (8- and
# 16-bit) writes a model with its integer decoder, the same seed writes the same bytes,
# `--eval` of that model and of the built-in `default` prints PSNR, SSIM and bits per pixel of
# the float and the integer decoder for each image and their mean, `--quantize` gives an
# integer decoder to a model, `--keyring` stores the model in a keyring's model list (id: the
# first 16 bytes of the SHA-256 of the model file) and `--eval keyring:ID` measures it from
# there; `train --coder` trains coder models, --merge makes one of two sets, and --keyring or
# --add makes a model the one the keyring codes with (--add default: the shipped one again);
# bad arguments, missing or corrupt models, wrong secrets and folders without images each give
# a one-line error and a non-zero exit status.
#
# Needs the imgcrypt binary, /usr/bin/python3 (to write the images; no modules needed) and three
# of the test images (the coder needs more samples than the generated ones hold).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
[ -x /usr/bin/python3 ] || skip "/usr/bin/python3 is missing"
lib_setup_tool

step "generate images"
mkdir data empty
"$PY" - data <<'EOF'
import math, random, struct, sys
random.seed(7)
def pgm(path, w, h, maxval, f):
    with open(path, 'wb') as out:
        out.write(b'P5\n%d %d\n%d\n' % (w, h, maxval))
        for y in range(h):
            row = [max(0, min(maxval, int(f(x / w, y / h) * maxval + random.uniform(-2, 2))))
                   for x in range(w)]
            out.write(bytes(row) if maxval < 256 else b''.join(struct.pack('>H', v) for v in row))
for i in range(4):
    pgm('%s/slice-%d.pgm' % (sys.argv[1], i), 40 + 3 * i, 48, 255,
        lambda x, y: 0.2 + 0.5 * ((x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.1) + 0.2 * x)
pgm('%s/deep-0.pgm' % sys.argv[1], 33, 20, 4095, lambda x, y: 0.5 + 0.4 * math.sin(6 * x + y))
pgm('%s/deep-1.pgm' % sys.argv[1], 17, 29, 4095, lambda x, y: y)
EOF
echo "not an image" >data/notes.txt

step "train one short epoch"
expect 0 "$IMGCRYPT" train --data data --epochs 1 --steps 6 --batch 2 --crop 32 --seed 3 \
    --out model.params
[[ -s model.params ]] || fail "no model written"
grep -q '^training on 6 images from 6 files (1 files skipped)' "$T/err" ||
    fail "no summary of the data"
grep -Eq '^epoch 1/1: loss [0-9.]+ +mse [0-9.]+ .* bpp [0-9.]+' "$T/err" ||
    fail "no per-epoch loss line (not a tty: plain lines)"
grep -q $'\r' "$T/err" && fail "carriage returns in output that is not a tty"
[[ $(head -c 4 model.params) == IMAE ]] || fail "model file magic"
[[ $(od -An -tu4 -j4 -N4 model.params | tr -d ' ') == 2 ]] || fail "model file version"

step "same seed, same model"
expect 0 "$IMGCRYPT" train --data data --epochs 1 --steps 6 --batch 2 --crop 32 --seed 3 \
    --out again.params
cmp -s model.params again.params || fail "two runs with one seed differ"
expect 0 "$IMGCRYPT" train --data data --epochs 1 --steps 6 --batch 2 --crop 32 --seed 4 \
    --out other.params
cmp -s model.params other.params && fail "another seed gave the same model"

# check_eval N: $T/out has a heading, N image rows with finite figures, a mean and a median.
check_eval() {
    local rows
    head -n1 "$T/out" | grep -q 'PSNR(dB) *SSIM *BPP *CODED *INT-PSNR' || fail "no heading"
    rows=$(awk 'NR > 1 && $NF ~ /\.pgm$/' "$T/out" | wc -l)
    [[ $rows == "$1" ]] || fail "$rows image rows, expected $1"
    # the coded rate (latent coder) is within 15% of the ideal one (prior), plus the coder's
    # header (at most 1 + 4 bytes per latent channel, 12 channels) over the image's pixels
    awk 'NR > 1 && $NF ~ /\.pgm$/ {
            split($10, d, "x")
            if ($1 !~ /^-?[0-9.]+$/ || $2 !~ /^-?[0-9.]+$/ || $3 !~ /^[0-9.]+$/ ||
                $4 !~ /^[0-9.]+$/ || $5 !~ /^-?[0-9.]+$/ || $6 !~ /^-?[0-9.]+$/ ||
                $2 > 1 || $6 > 1 || $3 <= 0 || $4 <= 0 ||
                $4 > 1.15 * $3 + 8 * 61 / (d[1] * d[2]) + 0.001) bad = 1
         } END { exit bad }' "$T/out" || fail "an image row without figures (float and integer)"
    grep -Eq "^ +[0-9.]+ +[0-9.]+ +[0-9.]+ .*mean of $1\$" "$T/out" || fail "no mean row"
    grep -q "median of $1\$" "$T/out" || fail "no median row"
}

step "eval the trained model"
expect 0 "$IMGCRYPT" train --eval model.params data/slice-0.pgm data/slice-1.pgm data/deep-0.pgm
check_eval 3
[[ -s $T/err ]] && fail "unexpected messages"

step "eval the built-in model"
expect 0 "$IMGCRYPT" train --eval default data/*.pgm
check_eval 6

step "eval: a file that is not an image is reported, the others are measured"
expect 1 "$IMGCRYPT" train --eval default data/slice-0.pgm data/notes.txt
error_says
check_eval 1

step "quantize a model: the float weights stay, an integer decoder is added"
expect 0 "$IMGCRYPT" train --quantize model.params --data data --out requant.params
cmp -s model.params requant.params || fail "quantising the same model on its data changed it"
expect 0 "$IMGCRYPT" train --quantize default --data data --out default-here.params
[[ -s default-here.params ]] || fail "no quantised model written"
expect 2 "$IMGCRYPT" train --quantize model.params --out x.params
error_says
expect 2 "$IMGCRYPT" train --quantize model.params --data data --init model.params
error_says

step "keyring: train stores the model, info lists it, eval loads it"
printf 'train-test-passphrase\n' >pf
chmod 600 pf
expect 0 "$IMGCRYPT" init --passfile pf --kdf-cost 10 backing
expect 0 "$IMGCRYPT" train --data data --epochs 1 --steps 6 --batch 2 --crop 32 --seed 3 \
    --out kr.params --keyring backing --passfile pf
cmp -s model.params kr.params || fail "the model written with --keyring differs"
id=$(sha256sum kr.params | cut -c1-32)
grep -q "added model $id to keyring backing/imgcryptfs.keyring" "$T/err" ||
    fail "no message naming the model id $id"
expect 0 "$IMGCRYPT" info backing
# the default autoencoder and coder model that init put there, and this one
grep -q "^models: *3\$" "$T/out" || fail "info does not count three models"
grep -Eq "^  $id  autoencoder +$(stat -c %s kr.params) bytes" "$T/out" ||
    fail "info does not list the model with its id, kind and size"
expect 0 "$IMGCRYPT" train --eval "keyring:$id" --keyring backing --passfile pf data/slice-0.pgm
check_eval 1
expect 0 "$IMGCRYPT" train --eval model.params data/slice-0.pgm
cp "$T/out" file.eval
expect 0 "$IMGCRYPT" train --eval "keyring:$id" --keyring backing/imgcryptfs.keyring \
    --passfile pf data/slice-0.pgm
diff <(cut -c1-45 file.eval) <(cut -c1-45 "$T/out") >/dev/null ||
    fail "the model from the keyring measures otherwise than its file"
step "keyring: the same model again is kept once; another one is added"
expect 0 "$IMGCRYPT" train --quantize kr.params --data data --out kr2.params --keyring backing \
    --passfile pf
grep -q "holds model $id already" "$T/err" || fail "a model already held was not recognised"
expect 0 "$IMGCRYPT" train --quantize other.params --data data --out other2.params \
    --keyring backing --passfile pf
expect 0 "$IMGCRYPT" info backing
grep -q "^models: *4\$" "$T/out" || fail "info does not count four models"
expect 2 "$IMGCRYPT" train --eval keyring: --keyring backing --passfile pf data/slice-0.pgm
error_says
expect 0 "$IMGCRYPT" train --eval "keyring:${id:0:8}" --keyring backing --passfile pf \
    data/slice-0.pgm
check_eval 1
step "keyring: refusals"
printf 'not-the-passphrase\n' >wrong
chmod 600 wrong
expect 3 "$IMGCRYPT" train --data data --epochs 1 --steps 1 --out y.params --keyring backing \
    --passfile wrong
error_says
[[ -e y.params ]] && fail "trained before the keyring was unlocked"
expect 1 "$IMGCRYPT" train --eval keyring:ffff --keyring backing --passfile pf data/slice-0.pgm
error_says
expect 2 "$IMGCRYPT" train --eval keyring:xyz --keyring backing --passfile pf data/slice-0.pgm
error_says
expect 2 "$IMGCRYPT" train --eval "keyring:$id" data/slice-0.pgm
error_says
expect 2 "$IMGCRYPT" train --data data --passfile pf
error_says
expect 1 "$IMGCRYPT" train --data data --epochs 1 --steps 1 --out y.params --keyring no-such
error_says
expect 0 "$IMGCRYPT" info backing
grep -q "^models: *4\$" "$T/out" || fail "a refused command changed the keyring"

step "bad arguments"
expect 2 "$IMGCRYPT" train
error_says
expect 2 "$IMGCRYPT" train --data data --epochs 0
error_says
expect 2 "$IMGCRYPT" train --data data --epochs many
error_says
expect 2 "$IMGCRYPT" train --data data --crop 40
error_says
expect 2 "$IMGCRYPT" train --data data --arch 1,2,3
error_says
expect 2 "$IMGCRYPT" train --data data extra
error_says
expect 2 "$IMGCRYPT" train --eval default
error_says
expect 2 "$IMGCRYPT" train --eval default --data data data/slice-0.pgm
error_says
expect 2 "$IMGCRYPT" train --data empty
error_says
expect nonzero "$IMGCRYPT" train --data "$T/no-such-folder"
error_says

step "coder models: train, merge, put into a keyring (--keyring, --add), code with them"
mkdir c8 c16
cp "$IMGC_TESTDATA/mri-t1-sagittal-64.pgm" "$IMGC_TESTDATA/mri-t1-axial-8bit.pgm" c8/
cp "$IMGC_TESTDATA/mri-t1-axial-12bit.pgm" c16/
expect 0 "$IMGCRYPT" train --coder --data c8 --epochs 1 --steps 5 --seed 3 --out narrow.pixnet
expect 0 "$IMGCRYPT" train --coder --data c16 --epochs 1 --steps 5 --seed 3 --out wide.pixnet
expect 0 "$IMGCRYPT" train --coder --merge narrow.pixnet wide.pixnet --out merged.pixnet
expect 2 "$IMGCRYPT" train --coder --merge merged.pixnet wide.pixnet --out x.pixnet
error_says "one-set"
[[ -e x.pixnet ]] && fail "a merged model was written after a refusal"
# the shipped coder model, which init put into the keyring
expect 0 "$IMGCRYPT" info backing
did=$(awk '$2 == "coder" { print $1; exit }' "$T/out")
[ -n "$did" ] || fail "info lists no coder model"
mid=$(sha256sum merged.pixnet | cut -c1-32)
coded_by() { # IN OUT: encrypt IN with the keyring's coder model only; its id (16 hex digits)
    expect 0 "$IMGCRYPT" encrypt --passfile pf --coder neural-only backing "$1" "$2"
    expect 0 "$IMGCRYPT" inspect --keyring backing/imgcryptfs.keyring --passfile pf "$2"
    sed -n 's/.*pixels by coder model \([0-9a-f]*\)).*/\1/p' "$T/out"
}
expect 0 "$IMGCRYPT" train --coder --add merged.pixnet --keyring backing --passfile pf
grep -q "holds coder model $mid" "$T/err" || fail "--add does not name the model's id $mid"
[ "$(coded_by data/slice-0.pgm merged.ct)" = "${mid:0:16}" ] ||
    fail "after --add of a model the keyring does not code with it"
expect 0 "$IMGCRYPT" train --coder --add default --keyring backing --passfile pf
grep -q "holds coder model $did" "$T/err" || fail "--add default does not name $did"
[ "$(coded_by data/slice-0.pgm default.ct)" = "${did:0:16}" ] ||
    fail "after --add default the keyring does not code with the shipped model again"
expect 0 "$IMGCRYPT" decrypt --passfile pf backing merged.ct merged.pgm
cmp -s merged.pgm data/slice-0.pgm || fail "the image coded by the other model no longer decodes"
# the model that codes already: the keyring file is left exactly as it is
cp backing/imgcryptfs.keyring ring.before
expect 0 "$IMGCRYPT" train --coder --add default --keyring backing --passfile pf
grep -q "holds coder model $did (it coded already; the keyring is unchanged)" "$T/err" ||
    fail "--add of the coding model does not say the keyring is unchanged"
cmp -s ring.before backing/imgcryptfs.keyring || fail "--add of the coding model rewrote the keyring"
expect 2 "$IMGCRYPT" train --coder --add default
error_says "--keyring"
expect nonzero "$IMGCRYPT" train --coder --add "$T/no-such.pixnet" --keyring backing --passfile pf
error_says "no-such.pixnet"
expect nonzero "$IMGCRYPT" train --coder --add default --keyring backing --passfile wrong
error_says

step "missing and corrupt models are refused"
expect nonzero "$IMGCRYPT" train --eval "$T/no-such.params" data/slice-0.pgm
error_says
cp model.params bad.params
printf '\x01' | dd of=bad.params bs=1 seek=100 conv=notrunc status=none
expect 5 "$IMGCRYPT" train --eval bad.params data/slice-0.pgm
error_says
head -c 200 model.params >short.params
expect 5 "$IMGCRYPT" train --eval short.params data/slice-0.pgm
error_says
expect 5 "$IMGCRYPT" train --data data --epochs 1 --steps 1 --init short.params --out x.params
error_says
[[ -e x.params ]] && fail "a model was written after a failure"

echo "PASS"
