#!/usr/bin/env bash
# WebRTC (WHEP) listeners against WebSocket listeners, node CPU per listener, same node and room:
# a node pinned to core 0 with one room and a tone speaker; first WS_COUNT WebSocket listeners
# (hold_listeners), then WHEP_COUNT WHEP players (aiortc, tests/whip/play.py --sessions), each
# held while the node's CPU (utime + stime, /proc/PID/stat) is read over WINDOW seconds, against
# the same node with the speaker alone.
#
#   bash bench/whep-listeners.sh              # WS_COUNT=2000 WHEP_COUNT=100 WINDOW=15 RUNS=3
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
WS_COUNT=${WS_COUNT:-2000}
WHEP_COUNT=${WHEP_COUNT:-100}
WINDOW=${WINDOW:-15}
RUNS=${RUNS:-3}
PORT=${PORT:-8099}
tribune_build
cargo build --release -q -p tribune-client --example hold_listeners
LOG=$(mktemp)
HZ=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$TRIBUNE_PID/stat"; }
# node_cpu: % of one core the node used over WINDOW seconds.
node_cpu() {
  local a b
  a=$(cpu_ticks)
  sleep "$WINDOW"
  b=$(cpu_ticks)
  awk -v a="$a" -v b="$b" -v hz="$HZ" -v w="$WINDOW" 'BEGIN { printf "%.2f", 100 * (b - a) / hz / w }'
}
metric() { curl -sf "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

date -u
tribune_node_with_speaker "$PORT" "$LOG" "whep listeners" $((RUNS * (3 * WINDOW + 40) + 20)) \
  --max-webrtc-listeners $((WHEP_COUNT + 10))
for run in $(seq "$RUNS"); do
  base=$(node_cpu)
  taskset -c 1 "$CARGO_TARGET_DIR/release/examples/hold_listeners" --server "http://127.0.0.1:$PORT" \
    --room "$ROOM" --count "$WS_COUNT" --seconds $((WINDOW + 8)) --per-addr 5000 >"$LOG.ws" 2>&1 &
  holder=$!
  sleep 4
  ws_n=$(metric tribune_listeners)
  batch=$(metric tribune_batch_interval_ms)
  ws=$(node_cpu)
  wait "$holder" || true
  sleep 2
  ticket_json=$(curl -sf -X POST -H 'content-type: application/json' -d '{}' \
    "http://127.0.0.1:$PORT/api/rooms/$ROOM/join")
  ticket=$(echo "$ticket_json" | sed -E 's/.*"ticket":"([^"]+)".*/\1/')
  # One ticket per node would be one listener: each player joins with its own.
  taskset -c 1 python3 - "$PORT" "$ROOM" "$WHEP_COUNT" $((WINDOW + 8)) >"$LOG.whep" 2>&1 <<'PY' &
import json, subprocess, sys, urllib.request
port, room, count, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
tickets = []
for _ in range(count):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/rooms/{room}/join", data=b"{}",
                                 headers={"content-type": "application/json"}, method="POST")
    tickets.append(json.load(urllib.request.urlopen(req))["ticket"])
# play.py takes one token; run the sessions in one process with per-session tickets.
sys.argv = ["play.py", f"http://127.0.0.1:{port}/api/rooms/{room}/whep", "", "--seconds", secs,
            "--sessions", str(count)]
sys.path.insert(0, "tests/whip")
import asyncio, play
orig = play.play
async def with_ticket(args, index):
    args = type("A", (), dict(vars(args)))()
    args.token = tickets[index]
    return await orig(args, index)
play.play = with_ticket
sys.exit(asyncio.run(play.main()))
PY
  players=$!
  for _ in $(seq 60); do
    n=$(metric 'tribune_whep_sessions{kind="listener"}')
    [ "${n:-0}" -ge "$WHEP_COUNT" ] && break
    sleep 0.5
  done
  sleep 3
  whep_n=$(metric 'tribune_whep_sessions{kind="listener"}')
  whep=$(node_cpu)
  wait "$players" || true
  echo "run $run: WebSocket batch interval ${batch} ms"
  awk -v r="$run" -v base="$base" -v ws="$ws" -v wsn="$ws_n" -v whep="$whep" -v whepn="$whep_n" 'BEGIN {
    per_ws = (ws - base) / wsn; per_whep = (whep - base) / whepn
    printf "run %d: speaker only %.2f %%; %d WebSocket listeners %.2f %% (%.4f %% each, %.0f per core); %d WHEP listeners %.2f %% (%.4f %% each, %.0f per core); WHEP / WS per listener %.1fx\n",
      r, base, wsn, ws, per_ws, 100 / per_ws, whepn, whep, per_whep, 100 / per_whep, per_whep / per_ws }'
done
grep -h '"event": "done"' "$LOG.whep" | head -c 300; echo
