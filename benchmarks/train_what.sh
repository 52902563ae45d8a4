#!/usr/bin/env bash
# Train the what+where family (decoders that read the switches and a what part) on this machine's
# CPUs: two queues of one-thread runs side by side, each run resumable (--resume) from its
# checkpoint. Fine-tunes start from the switch-only model with the same encoder (--init-from);
# new channel plans start from scratch. Usage: benchmarks/train_what.sh [DATA] [OUT_DIR]
# (DATA: the folder holding train-bsds500/; OUT_DIR: runs/what). docs/TRAINING.md has the figures.
# The training list: BSDS500's 280 holdout-train photographs and 60 random screens drawn by
# examples/screens.py --train (flat panels and text, which photographs lack; never the test screens).
set -euo pipefail
DATA=${1:-../shared/data}
OUT=${2:-runs/what}
MS=${MAXSWITCH:-.venv/bin/maxswitch}
T=$DATA/train-bsds500
mkdir -p "$OUT"
PY=${PYTHON:-.venv/bin/python}
LIST=$OUT/train-list.txt
if [ ! -f "$LIST" ]; then
  "$PY" examples/screens.py --train "$OUT/screens-train" 60 > /dev/null
  "$PY" -c "import sys; from maxswitch.training.train import select_split; from maxswitch.training.dataset import list_images; [print(p.resolve()) for p in select_split(list_images(sys.argv[1]), 'holdout-train')]" "$T" > "$LIST"
  ls "$PWD/$OUT/screens-train"/*.png >> "$LIST"
fi
run() {  # NAME ARCH MINUTES LR [extra options]
  local name=$1 arch=$2 minutes=$3 lr=$4
  shift 4
  local out=$OUT/$name.safetensors
  [ -f "$out" ] && { echo "$name: done already ($out)"; return; }
  local resume=()
  [ -f "$out.ckpt" ] && resume=(--resume)
  nice -n 5 "$MS" train "$LIST" -o "$out" --name "$name" --arch "$arch" --what 8,4,8 \
    --val "$T" --val-split holdout-val -t 1 --workers 1 \
    --minutes "$minutes" --lr "$lr" "${resume[@]}" "$@" >> "$OUT/$name.log" 2>&1
}
queue_a() {
  run what-2-4-8 2,4,8 60 2e-3 --encoder-seed 24
  run what-16-16-16 16,16,16 25 1e-3 --encoder-from natural-16-16-16 --init-from natural-16-16-16
}
queue_b() {
  run what-4-8-16 4,8,16 25 1e-3 --encoder-from natural-4-8-16 --init-from natural-4-8-16
  run what-6-12-24 6,12,24 25 1e-3 --encoder-from natural-6-12-24 --init-from natural-6-12-24
  run what-2-6-12 2,6,12 30 2e-3 --encoder-seed 26
}
queue_a & queue_b & wait
