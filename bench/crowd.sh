#!/usr/bin/env bash
# One `tribune crowd` measurement against a fresh release `tribune serve` (docs/BENCHMARKS.md, §4).
# The server is pinned to core 0, the speaker and the crowd to core 1.
#
#   bench/crowd.sh                                   # 5 000 listeners, flash, ramp 1 000/s, 30 s
#   LISTENERS=18000 RAMP=3000 SECONDS_RUN=30 BATCH_MS=20 bench/crowd.sh
#   SCENARIO=steady EXTRA="--stay 10" LISTENERS=2000 bench/crowd.sh
set -euo pipefail
cd "$(dirname "$0")/.."
LISTENERS=${LISTENERS:-5000}
RAMP=${RAMP:-1000}
SECONDS_RUN=${SECONDS_RUN:-30}
BATCH_MS=${BATCH_MS:-20}
SCENARIO=${SCENARIO:-flash}
PORT=${PORT:-18095}
OUT=${OUT:-/tmp/tribune-crowd}
. bench/lib.sh
tribune_build
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)"
tribune_node_with_speaker "$PORT" "$OUT/serve.log" crowd $((SECONDS_RUN + 30)) --batch-ms "$BATCH_MS"
NAME="$OUT/crowd-$SCENARIO-$LISTENERS-b$BATCH_MS"
echo "date: $(date -u +%FT%TZ)  nproc: $(nproc)  cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)" | tee "$NAME.txt"
set -x
taskset -c 1 "$BIN" crowd --server "http://127.0.0.1:$PORT" --room "$ROOM" --listeners "$LISTENERS" \
  --ramp "$RAMP" --seconds "$SECONDS_RUN" --scenario "$SCENARIO" --server-pid "$TRIBUNE_PID" \
  --json "$NAME.json" --chart "$NAME.svg" ${EXTRA:-} | tee -a "$NAME.txt"
