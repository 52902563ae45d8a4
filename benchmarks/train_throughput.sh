#!/usr/bin/env bash
# Training throughput of the streaming loop on the CPU: 1 process of 2 threads, then 2 processes
# (torchrun, Gloo) of 1 thread each; one data worker per process; the default recipe (batch 16 of
# 96 px crops, natural-16-16-16's plan). Prints steps/s and crops/s of each.
#
#   benchmarks/train_throughput.sh TRAIN_DIR [STEPS]
set -eu
DATA=${1:?TRAIN_DIR}
STEPS=${2:-300}
PY=${PYTHON:-python3}
OUT=$(mktemp -d)
common=(train "$DATA" --split holdout-train --name tp --encoder-from natural-16-16-16 --arch 16,16,16
    --steps "$STEPS" --batch 16 --patch 96 --workers 1 --device cpu -f)
rate() { grep -o "step $STEPS/$STEPS.*steps/s" | grep -o "[0-9.]* steps/s" | cut -d' ' -f1; }
r1=$("$PY" -m maxswitch "${common[@]}" -o "$OUT/a.safetensors" -t 2 2>&1 | rate)
r2=$(OMP_NUM_THREADS=1 "$PY" -m torch.distributed.run --standalone --nproc_per_node=2 \
    -m maxswitch "${common[@]}" -o "$OUT/b.safetensors" -t 1 2>&1 | rate)
for x in "1 process, 2 threads:$r1" "2 processes, 1 thread each:$r2"; do
    echo "${x%%:*}: ${x##*:} steps/s, $(echo "${x##*:} * 16" | bc) crops/s (global batch 16)"
done
rm -rf "$OUT"
