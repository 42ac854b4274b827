#!/usr/bin/env bash
# Speaker-to-speaker delay on the stage between two WebRTC clients (aiortc) on loopback: the
# host's capture of a beep to the guest's decode of it (bench/stage_latency.py), idle, then the
# same with 10 000 WebSocket listeners in the room and a long batch interval.
#
#   bash bench/stage-latency.sh                 # 30 s each, 3 runs each
#   SECONDS_EACH=20 RUNS=1 bash bench/stage-latency.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
SECONDS_EACH=${SECONDS_EACH:-30}
RUNS=${RUNS:-3}
PORT=${PORT:-8097}
tribune_build
cargo build --release -q -p tribune-client --example hold_listeners
LOG=$(mktemp)
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

run() { # run LABEL [serve flags...]: one node, one room, RUNS measurements; prints JSON lines
  local label=$1
  shift
  tribune_serve "$PORT" "$LOG" "$@"
  tribune_room "$PORT" "stage latency"
  local guest
  guest=$(curl -sf -X POST -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d '{}' "http://127.0.0.1:$PORT/api/rooms/$ROOM/speakers" | sed -E 's/.*"token":"([^"]+)".*/\1/')
  local holder=
  if [ -n "${LISTENERS:-}" ]; then
    taskset -c 0 "$CARGO_TARGET_DIR/release/examples/hold_listeners" --server "http://127.0.0.1:$PORT" \
      --room "$ROOM" --count "$LISTENERS" --seconds $((RUNS * (SECONDS_EACH + 8) + 30)) \
      --per-addr 5000 >"$LOG.holders" 2>&1 &
    holder=$!
    for _ in $(seq 60); do
      n=$(curl -sf "http://127.0.0.1:$PORT/metrics" | awk '/^tribune_listeners /{print $2}')
      [ "${n:-0}" -ge "$LISTENERS" ] && break
      sleep 1
    done
    sleep 3
    echo "listeners connected: $n" >&2
  fi
  for i in $(seq "$RUNS"); do
    echo -n "$label run $i: "
    taskset -c 1 python3 bench/stage_latency.py "http://127.0.0.1:$PORT" "$ROOM" "$TOKEN" "$guest" \
      --seconds "$SECONDS_EACH"
  done
  curl -sf "http://127.0.0.1:$PORT/metrics" | grep -E '^tribune_(batch_interval_ms|listeners|mix_minus_encodes_total|frames_sent_total|room_concealed_frames_total|room_late_frames_total|speaker_jitter_depth_frames)[ {]'
  # The node's own part (speaker packet in -> mix-minus packet out), from its histogram.
  curl -sf "http://127.0.0.1:$PORT/metrics" | awk -F'[{}" ]+' '
    /^tribune_stage_delay_seconds_bucket/ { le[n] = $3; c[n++] = $NF }
    END { for (i = 0; i < n; i++) { if (!p50 && c[i] >= c[n-1] * 0.5) p50 = le[i];
          if (!p99 && c[i] >= c[n-1] * 0.99) p99 = le[i] }
          printf "node stage delay (bucket bounds, s): p50 <= %s, p99 <= %s over %d frames\n", p50, p99, c[n-1] }'
  [ -n "$holder" ] && kill "$holder" 2>/dev/null || true
  kill "$TRIBUNE_PID"
  wait "$TRIBUNE_PID" 2>/dev/null || true
}

date -u
run idle
PORT=$((PORT + 1))
LISTENERS=10000 run "10000 WS listeners, --batch-ms 500" --batch-ms 500 --batch-max-ms 500 --max-listeners 20000 --join-rate 20000
