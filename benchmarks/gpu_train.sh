#!/usr/bin/env bash
# One GPU session, prepared to fit a short lease: the CUDA tests, a throughput measurement, and
# the ladder's decoders retrained (same encoders as the shipped models, so their files and
# context models stay valid) plus natural-48-96-192's context model, all at once on one GPU.
#
#   benchmarks/gpu_train.sh TRAIN_DIR OUT_DIR [MINUTES]
#
# TRAIN_DIR: BSDS500's training photos (the holdout-train split trains, holdout-val validates).
# OUT_DIR receives run.log (everything printed) and results.tar (models and per-run logs).
# Run from the project root with a python3 that has torch (CUDA build) and the project's
# dependencies; it was run through the device tool with the wheels of zstandard and
# constriction carried (docs/TRAINING.md, "Training on a GPU", has the figures).
set -u
PY=${PYTHON:-python3}
DATA=${1:?TRAIN_DIR}
OUT=${2:?OUT_DIR}
MIN=${3:-5.5}
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu AMP= runs the same plumbing on a CPU, for a dry run
AMP=${AMP---amp}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
WORK=$(mktemp -d)
mkdir -p "$WORK/models" "$WORK/logs"
log() { echo "[$(date -u +%T)] $*" | tee -a "$OUT/run.log"; }

log "gpu: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader)"
log "torch: $("$PY" -c 'import torch; print(torch.__version__, torch.cuda.get_device_name())')"
log "cpus: $(nproc)"

if [ "${STAGE:-all}" = contexts ]; then  # a second, shorter lease: the other rungs' context models
    "$PY" -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tee -a "$OUT/run.log"
    for name in natural-6-12-24 natural-8-16-32 natural-16-16-16 natural-32-32-32; do
        timeout 420 "$PY" -m maxswitch train-context "$name" "$DATA" --split holdout-train --val "$DATA" \
            --val-split holdout-val -o "$WORK/models/ctx-$name.safetensors" -f --minutes "$MIN" --batch 32 \
            --symbols 32768 --device "$DEVICE" -t 3 >"$WORK/logs/ctx-$name.log" 2>&1 &
    done
    wait
    for f in "$WORK"/logs/*.log; do log "$(basename "$f"): $(grep -E 'wrote|validation|rror' "$f" | tail -2 | tr '\n' ' ')"; done
    tar -C "$WORK" -cf "$OUT/results.tar" models logs
    log "done"
    exit 0
fi

# 1. the CUDA tests (skipped on machines without a GPU)
"$PY" -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tee -a "$OUT/run.log"

train=("$PY" -m maxswitch train "$DATA" --split holdout-train --val "$DATA" --val-split holdout-val --device "$DEVICE" -f)

# 2. throughput, alone on the GPU: the CPU recipe (batch 16, 96 px, fp32), then the GPU recipe
log "throughput: batch 16, patch 96, fp32, 300 steps"
"${train[@]}" -o "$WORK/tp1.safetensors" --name tp1 --arch 16,16,16 --encoder-from natural-16-16-16 \
    --steps ${TP_STEPS:-300} -t 2 2>&1 | grep -E "step 300|training on" | tee -a "$OUT/run.log"
log "throughput: batch 64, patch 128, bf16 autocast, 300 steps"
"${train[@]}" -o "$WORK/tp2.safetensors" --name tp2 --arch 16,16,16 --encoder-from natural-16-16-16 \
    --steps ${TP_STEPS:-300} --batch 64 --patch 128 $AMP -t 2 2>&1 | grep -E "step 300|training on" | tee -a "$OUT/run.log"

# 3. the ladder's decoders, version 2, and natural-48-96-192's context model, side by side
log "ladder: ${MIN} minutes of training each, 7 processes on one GPU"
pids=()
run() {  # NAME ARCH [extra args]
    local name=$1 arch=$2
    shift 2
    timeout 480 "${train[@]}" -o "$WORK/models/$name.safetensors" --name "$name" --arch "$arch" \
        --minutes "$MIN" --batch 64 --patch 128 $AMP -t 2 --model-version 2 "$@" \
        >"$WORK/logs/$name.log" 2>&1 &
    pids+=($!)
}
for spec in natural-6-12-24:6,12,24 natural-8-16-32:8,16,32 natural-16-16-16:16,16,16 \
    natural-32-32-32:32,32,32 natural-48-96-192:48,96,192; do
    run "${spec%%:*}" "${spec##*:}" --encoder-from "${spec%%:*}"
done
# a capacity lever measured at GPU budget: the cheapest rung with a wider decoder
run natural-6-12-24-w96 6,12,24 --encoder-from natural-6-12-24 --widths 96,64,48
timeout 480 "$PY" -m maxswitch train-context natural-48-96-192 "$DATA" --split holdout-train \
    --val "$DATA" --val-split holdout-val -o "$WORK/models/ctx-natural-48-96-192.safetensors" -f \
    --minutes "$MIN" --batch 32 --symbols 32768 --device "$DEVICE" -t 2 >"$WORK/logs/ctx-natural-48-96-192.log" 2>&1 &
pids+=($!)
for p in "${pids[@]}"; do wait "$p"; done
nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader | tee -a "$OUT/run.log"
for f in "$WORK"/logs/*.log; do
    log "$(basename "$f"): $(grep -E 'wrote|validation|Error|error' "$f" | tail -2 | tr '\n' ' ')"
done
tar -C "$WORK" --exclude "*.ckpt" -cf "$OUT/results.tar" models logs
log "done"
