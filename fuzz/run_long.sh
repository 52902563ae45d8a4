#!/usr/bin/env bash
# Run the atheris engine at lowest priority for SECONDS (default 3900) in one process at a time.
# If libFuzzer stops early (a crash it caught itself: timeout, out-of-memory, signal), its crash
# file is kept in WORK and a new run continues with the time left. Logs: WORK/atheris-N.log.
set -u
cd "$(dirname "$0")/.."
SECONDS_TOTAL=${1:-3900}
WORK=${WORK:-fuzz/work}
PY=${PY:-.venv/bin/python}
mkdir -p "$WORK"
start=$(date +%s)
i=0
while :; do
  left=$(( SECONDS_TOTAL - ($(date +%s) - start) ))
  [ "$left" -lt 30 ] && break
  i=$((i + 1))
  nice -n 19 "$PY" fuzz/fuzz_msw.py --engine atheris --seconds "$left" --work "$WORK" \
      --stats "$WORK/stats-atheris-$i.json" -- -artifact_prefix="$WORK/" > "$WORK/atheris-$i.log" 2>&1
  echo "run $i exited $? after $(( $(date +%s) - start )) s" >> "$WORK/runs.log"
done
grep -h "^Done" "$WORK"/atheris-*.log | awk '{n += $2; t += $5} END {print "total:", n, "runs in", t, "s"}' >> "$WORK/runs.log"
