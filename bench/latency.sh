#!/usr/bin/env bash
# Loopback glass-to-ear latency of `tribune serve` (docs/BENCHMARKS.md, figure 3).
#
#   bench/latency.sh                  # --batch-ms 20 and 100; 1 listener, then 100 (+1) listeners
#   BATCHES="20" SECONDS_LISTEN=30 bench/latency.sh
#
# For every batch interval it starts a fresh release server on 127.0.0.1:$PORT, creates a live
# room with `tribune room create`, starts one `tribune speak --tone 440` with the host token and,
# after the speaker's jitter buffer has filled:
#   1. runs `tribune listen --json` alone (1 listener);
#   2. runs the hold_listeners example with --latency (100 listeners, every frame timed) and, at
#      the same time, one more `tribune listen --json`, so the CLI figure is comparable with 1.
# Latency is arrival time minus the speaker's capture timestamp of the oldest frame mixed in
# (same host clock), so it includes the speaker's WebSocket, the wait for the next mixer tick,
# the jitter buffer (target 3 frames), the batch interval and the listener's WebSocket.
# Needs only the Rust toolchain; everything goes to 127.0.0.0/8 only.
#
# Environment: BATCHES (default "20 100"), SECONDS_LISTEN (20), CROWD (100), ROUNDS (5: a new
# room and speaker each round, see below), PORT (18091),
# OUT (/tmp/tribune-bench), CARGO_TARGET_DIR (default ./target).
set -euo pipefail
# The node under test and every room creation share this operator key.
export TRIBUNE_API_KEY=${TRIBUNE_API_KEY:-bench-operator-key-0123456789}
cd "$(dirname "$0")/.."

BATCHES=${BATCHES:-"20 100"}
SECONDS_LISTEN=${SECONDS_LISTEN:-20}
CROWD=${CROWD:-100}
ROUNDS=${ROUNDS:-5}
PORT=${PORT:-18091}
OUT=${OUT:-/tmp/tribune-bench}
TARGET=${CARGO_TARGET_DIR:-target}
mkdir -p "$OUT"
URL="http://127.0.0.1:$PORT"

echo "== build (release)" >&2
cargo build --release --locked -p tribune --bin tribune >&2
cargo build --release --locked -p tribune-client --example hold_listeners >&2
BIN="$TARGET/release/tribune"
HOLDER="$TARGET/release/examples/hold_listeners"
ulimit -n "$(ulimit -Hn)"

SERVER=""
SPEAKER=""
HOLDER_PID=""
# stop PID: SIGTERM, up to 5 s for it to exit, then SIGKILL; only processes this script started.
stop() {
  [ -n "$1" ] || return 0
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
stop_all() {
  stop "$HOLDER_PID"
  stop "$SPEAKER"
  stop "$SERVER"
  HOLDER_PID="" SPEAKER="" SERVER=""
}
trap stop_all EXIT
trap 'exit 130' INT TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
jobj() { grep -o "\"$1\":{[^}]*}" "$2" | head -1 | cut -d: -f2-; }
jsub() { jobj "$1" "$3" | grep -o "\"$2\":[-0-9.]*" | head -1 | cut -d: -f2; }
jnum() { grep -o "\"$1\":[-0-9.]*" "$2" | head -1 | cut -d: -f2; }
jstr() { grep -o "\"$1\":\"[^\"]*\"" "$2" | head -1 | cut -d'"' -f4; }

echo "== machine" >&2
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  nproc: $(nproc)  cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')  listen: ${SECONDS_LISTEN}s  rounds: $ROUNDS  crowd: $CROWD  loadavg: $(cut -d" " -f1-3 /proc/loadavg)"

declare -A SUM
ROWS=()
# row BATCH ROUND WHO FILE KEY: adds a table row and sums the p50 under KEY.
row() {
  local p50
  p50=$(jsub latency_ms p50 "$4")
  SUM[$5]=$(awk -v a="${SUM[$5]:-0}" -v b="$p50" 'BEGIN { print a + b }')
  ROWS+=("| $1 | $2 | $3 | $p50 | $(jsub latency_ms p99 "$4") | $(jsub latency_ms max "$4") | $(jnum frames_received "$4") | $(jnum frames_lost "$4") |")
}
for batch in $BATCHES; do
  echo "== --batch-ms $batch" >&2
  if port_open "$PORT"; then
    echo "127.0.0.1:$PORT is already in use; set PORT" >&2
    exit 1
  fi
  "$BIN" serve --listen "127.0.0.1:$PORT" --batch-ms "$batch" 2>"$OUT/latency-server-$batch.log" &
  SERVER=$!
  for _ in $(seq 1 100); do
    port_open "$PORT" && break
    sleep 0.1
  done
  for round in $(seq 1 "$ROUNDS"); do
    # A new room and speaker each round: the phase between the speaker's 20 ms clock and the
    # mixer's is random per session and shifts every latency by 0-20 ms.
    tag="$batch-r$round"
    timeout 20 "$BIN" room create --server "$URL" --title "latency $tag" --json >"$OUT/latency-room-$tag.json"
    room=$(jstr id "$OUT/latency-room-$tag.json")
    token=$(jstr host_token "$OUT/latency-room-$tag.json")
    speak_s=$((2 * SECONDS_LISTEN + 20))
    TRIBUNE_TOKEN="$token" timeout $((speak_s + 10)) "$BIN" speak --server "$URL" --room "$room" \
      --tone 440 --seconds "$speak_s" 2>"$OUT/latency-speak-$tag.log" &
    SPEAKER=$!
    sleep 3

    one="$OUT/latency-$tag-1.json"
    timeout $((SECONDS_LISTEN + 30)) "$BIN" listen --server "$URL" --room "$room" \
      --seconds "$SECONDS_LISTEN" --json >"$one"
    row "$batch" "$round" "1 listener (tribune listen)" "$one" "$batch-1"

    crowd="$OUT/latency-$tag-crowd.json"
    cli="$OUT/latency-$tag-crowd-cli.json"
    timeout $((SECONDS_LISTEN + 200)) "$HOLDER" --server "$URL" --room "$room" --count "$CROWD" \
      --seconds "$SECONDS_LISTEN" --latency --settle 1 >"$crowd" &
    HOLDER_PID=$!
    sleep 1
    timeout $((SECONDS_LISTEN + 30)) "$BIN" listen --server "$URL" --room "$room" \
      --seconds "$SECONDS_LISTEN" --json >"$cli"
    wait "$HOLDER_PID"
    HOLDER_PID=""
    row "$batch" "$round" "$CROWD listeners (hold_listeners, all frames)" "$crowd" "$batch-crowd"
    row "$batch" "$round" "1 of $((CROWD + 1)) (tribune listen beside them)" "$cli" "$batch-cli"
    echo "round $round: crowd connected $(jnum connected "$crowd"), per-listener p50 spread $(jobj listener_p50_ms "$crowd")" >&2
    stop "$SPEAKER"
    SPEAKER=""
  done
  stop_all
  if grep -q panicked "$OUT/latency-server-$batch.log"; then
    echo "server panicked; see $OUT/latency-server-$batch.log" >&2
  fi
done

mean() { awk -v s="${SUM[$1]}" -v n="$ROUNDS" 'BEGIN { printf "%.1f", s / n }'; }
echo
echo "| --batch-ms | round | listeners | p50 ms | p99 ms | max ms | frames received | frames lost |"
echo "|---:|---:|---|---:|---:|---:|---:|---:|"
for r in "${ROWS[@]}"; do echo "$r"; done
echo
echo "| --batch-ms | mean p50 over $ROUNDS rounds: 1 listener | $CROWD listeners | 1 of $((CROWD + 1)) |"
echo "|---:|---:|---:|---:|"
for b in $BATCHES; do
  echo "| $b | $(mean "$b-1") | $(mean "$b-crowd") | $(mean "$b-cli") |"
done
echo
set -- $BATCHES
if [ $# -ge 2 ]; then
  for k in 1 crowd cli; do
    a=$(mean "$2-$k")
    b=$(mean "$1-$k")
    echo "mean p50 ratio --batch-ms $2 / --batch-ms $1 ($k): $(awk -v a="$a" -v b="$b" 'BEGIN { if (b != 0) printf "%.2f (%+.1f ms)", a / b, a - b; else print "n/a" }')"
  done
fi
for b in $BATCHES; do
  echo "--batch-ms $b: mean p50 with $CROWD+1 listeners / alone (tribune listen) = $(awk -v a="$(mean "$b-cli")" -v b="$(mean "$b-1")" 'BEGIN { if (b != 0) printf "%.2f", a / b; else print "n/a" }')"
done
echo "raw results: $OUT/latency-*.json"
