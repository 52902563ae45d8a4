#!/usr/bin/env bash
# Round 2 of the default rung (what-2-4-8): continue the shipped model on a training list with
# more screens, one CPU thread, resumable. The list: BSDS500's 280 holdout-train photographs and
# 160 random screens from examples/screens.py --train (seeds 0..159; never the test screens),
# about a third of the crops. Usage: benchmarks/train_what_screens.sh [DATA] [OUT_DIR] [MINUTES]
# (DATA: the folder holding train-bsds500/; OUT_DIR: runs/what-screens). docs/TRAINING.md has the figures.
set -euo pipefail
DATA=${1:-../shared/data}
OUT=${2:-runs/what-screens}
MINUTES=${3:-120}
MS=${MAXSWITCH:-.venv/bin/maxswitch}
PY=${PYTHON:-.venv/bin/python}
T=$DATA/train-bsds500
mkdir -p "$OUT"
LIST=$OUT/train-list.txt
if [ ! -f "$LIST" ]; then
  "$PY" examples/screens.py --train "$OUT/screens-train" 160 > /dev/null
  "$PY" -c "import sys; from maxswitch.training.train import select_split; from maxswitch.training.dataset import list_images; [print(p.resolve()) for p in select_split(list_images(sys.argv[1]), 'holdout-train')]" "$T" > "$LIST"
  ls "$PWD/$OUT/screens-train"/*.png >> "$LIST"
fi
name=what-2-4-8
out=$OUT/$name.safetensors
resume=()
[ -f "$out.ckpt" ] && resume=(--resume)
nice -n 5 "$MS" train "$LIST" -o "$out" --name "$name" --arch 2,4,8 --what 8,4,8 \
  --encoder-from what-2-4-8 --init-from what-2-4-8 --model-version 2 \
  --val "$T" --val-split holdout-val -t 1 --workers 1 --keep-checkpoint \
  --minutes "$MINUTES" --lr 1e-3 "${resume[@]}" >> "$OUT/$name.log" 2>&1
