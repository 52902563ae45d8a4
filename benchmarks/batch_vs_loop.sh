#!/bin/bash
# usage: benchmarks/batch_vs_loop.sh [KODAK_DIR]   (needs bc; writes to /tmp/bl and /tmp/bb)
# the README's old shell loop against one --output-dir call, 24 Kodak images, default settings and zstd
cd "$(dirname "$0")/.."
K=${1:-../shared/data/kodak}
for coding in auto zstd; do
  rm -rf /tmp/bl /tmp/bb; mkdir -p /tmp/bl /tmp/bb
  s=$(date +%s.%N)
  for f in $K/*.png; do b=$(basename "$f" .png); .venv/bin/maxswitch encode "$f" "/tmp/bl/$b.msw" --coding $coding --quiet || echo "failed: $f"; done
  e=$(date +%s.%N)
  loop=$(echo "$e - $s" | bc)
  s=$(date +%s.%N)
  .venv/bin/maxswitch encode --output-dir /tmp/bb --coding $coding --quiet $K/*.png
  e=$(date +%s.%N)
  batch=$(echo "$e - $s" | bc)
  s=$(date +%s.%N)
  .venv/bin/maxswitch encode --output-dir /tmp/bb -f -j 2 --coding $coding --quiet $K/*.png
  e=$(date +%s.%N)
  batchj=$(echo "$e - $s" | bc)
  cmp <(cat /tmp/bl/*.msw | sha256sum) <(cat /tmp/bb/*.msw | sha256sum) && same=yes || same=no
  echo "coding $coding: loop $loop s, one call $batch s, one call -j 2 $batchj s, identical files: $same"
done
