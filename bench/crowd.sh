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
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -p tribune >/dev/null
BIN="$CARGO_TARGET_DIR/release/tribune"
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)"
taskset -c 0 "$BIN" serve --listen "127.0.0.1:$PORT" --batch-ms "$BATCH_MS" 2>"$OUT/serve.log" &
SERVER=$!
SPEAKER=
cleanup() {
  [ -n "$SPEAKER" ] && kill "$SPEAKER" 2>/dev/null || true
  kill "$SERVER" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
ROOM_JSON=$("$BIN" room create --server "http://127.0.0.1:$PORT" --title crowd --json)
ROOM=$(echo "$ROOM_JSON" | sed -E 's/.*"id":"([^"]+)".*/\1/')
TOKEN=$(echo "$ROOM_JSON" | sed -E 's/.*"host_token":"([^"]+)".*/\1/')
taskset -c 1 "$BIN" speak --server "http://127.0.0.1:$PORT" --room "$ROOM" --token "$TOKEN" \
  --tone 440 --seconds $((SECONDS_RUN + 30)) 2>/dev/null &
SPEAKER=$!
sleep 2
NAME="$OUT/crowd-$SCENARIO-$LISTENERS-b$BATCH_MS"
echo "date: $(date -u +%FT%TZ)  nproc: $(nproc)  cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)" | tee "$NAME.txt"
set -x
taskset -c 1 "$BIN" crowd --server "http://127.0.0.1:$PORT" --room "$ROOM" --listeners "$LISTENERS" \
  --ramp "$RAMP" --seconds "$SECONDS_RUN" --scenario "$SCENARIO" --server-pid "$SERVER" \
  --json "$NAME.json" --chart "$NAME.svg" ${EXTRA:-} | tee -a "$NAME.txt"
