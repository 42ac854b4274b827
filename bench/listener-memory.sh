#!/usr/bin/env bash
# User-space memory per listener connection of `tribune serve` (docs/BENCHMARKS.md, figure 2).
#
#   bench/listener-memory.sh                 # 10 000 and 1 000 listeners, scheduled and live rooms
#   COUNTS="10000" KINDS="live" HOLD=30 bench/listener-memory.sh
#
# For every (room kind, listener count) it starts a fresh release server on 127.0.0.1:$PORT,
# creates a room (scheduled: no audio flows; live: a 20 ms silence frame every 20 ms), and runs
# the hold_listeners example with --pid, which samples the server's VmRSS before the listeners
# connect, while they are held (after a settle delay) and after they have disconnected, and reads
# tribune_listeners from /metrics while they are held. $REUSE_ROUNDS more, shorter rounds with the
# same count on the same server then check that a reconnecting crowd reuses the memory freed by
# the previous one (no leak: the held RSS should not keep growing). Needs only the Rust toolchain; everything goes to 127.0.0.0/8 only.
#
# Environment: COUNTS (default "10000 1000"), KINDS ("scheduled live"), HOLD (seconds held, 20),
# REUSE_ROUNDS (2),
# PORT (18090), BATCH_MS (20), READ_BUFFER (listener WebSocket read buffer, bytes; default
# the server's own, 1024), OUT (result directory, default /tmp/tribune-bench),
# CARGO_TARGET_DIR (default ./target).
set -euo pipefail
# The node under test and every room creation share this operator key.
export TRIBUNE_API_KEY=${TRIBUNE_API_KEY:-bench-operator-key-0123456789}
cd "$(dirname "$0")/.."

COUNTS=${COUNTS:-"10000 1000"}
KINDS=${KINDS:-"scheduled live"}
HOLD=${HOLD:-20}
REUSE_ROUNDS=${REUSE_ROUNDS:-2}
PORT=${PORT:-18090}
BATCH_MS=${BATCH_MS:-20}
READ_BUFFER=${READ_BUFFER:-1024}
OUT=${OUT:-/tmp/tribune-bench}
TARGET=${CARGO_TARGET_DIR:-target}
mkdir -p "$OUT"

echo "== build (release)" >&2
cargo build --release --locked -p tribune --bin tribune >&2
cargo build --release --locked -p tribune-client --example hold_listeners >&2
BIN="$TARGET/release/tribune"
HOLDER="$TARGET/release/examples/hold_listeners"

# One process holds every listener socket and the server as many: both need a high fd limit.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 11000 ]; then
  echo "open-file hard limit $(ulimit -Hn) is below the 11 000 this benchmark needs" >&2
  exit 1
fi

SERVER_PID=""
stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}
trap stop_server EXIT
trap 'exit 130' INT TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_server() {
  if port_open "$PORT"; then
    echo "127.0.0.1:$PORT is already in use; set PORT" >&2
    exit 1
  fi
  "$BIN" serve --listen "127.0.0.1:$PORT" --batch-ms "$BATCH_MS" --ws-read-buffer "$READ_BUFFER" 2>"$1" &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    port_open "$PORT" && return 0
    sleep 0.1
  done
  echo "server did not start; see $1" >&2
  exit 1
}

# jnum KEY FILE: the first numeric value of "KEY": in a one-line JSON file.
jnum() { grep -o "\"$1\":[-0-9.]*" "$2" | head -1 | cut -d: -f2; }
# jobj KEY FILE: the flat object value of "KEY": (e.g. {"before":1,"held":2}).
jobj() { grep -o "\"$1\":{[^}]*}" "$2" | head -1 | cut -d: -f2-; }
# jsub OBJ KEY FILE: numeric field KEY of the flat object OBJ.
jsub() { jobj "$1" "$3" | grep -o "\"$2\":[-0-9.]*" | head -1 | cut -d: -f2; }
jstr() { grep -o "\"$1\":\"[^\"]*\"" "$2" | head -1 | cut -d'"' -f4; }

echo "== machine" >&2
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  nproc: $(nproc)  cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')  batch-ms: $BATCH_MS  hold: ${HOLD}s  loadavg: $(cut -d" " -f1-3 /proc/loadavg)"

declare -A PER
ROWS=()
for kind in $KINDS; do
  # A live room's ring fills for 30 s; let it fill before the "before" sample.
  if [ "$kind" = live ]; then warm=32; else warm=2; fi
  for n in $COUNTS; do
    tag="$kind-$n"
    log="$OUT/server-$tag.log"
    echo "== $kind room, $n listeners (server log: $log)" >&2
    start_server "$log"
    idle_kib=$(grep VmRSS "/proc/$SERVER_PID/status" | awk '{print $2}')
    timeout $((HOLD + warm + 400)) "$HOLDER" --server "http://127.0.0.1:$PORT" --create "$kind" \
      --count "$n" --seconds "$HOLD" --pid "$SERVER_PID" --warm "$warm" --settle 3 \
      >"$OUT/hold-$tag.json"
    room=$(jstr room "$OUT/hold-$tag.json")
    # More rounds: the same crowd again on the same server (memory reuse / leak check).
    last="$OUT/hold-$tag.json"
    for r in $(seq 2 $((REUSE_ROUNDS + 1))); do
      last="$OUT/hold-$tag-round$r.json"
      timeout 400 "$HOLDER" --server "http://127.0.0.1:$PORT" --room "$room" \
        --count "$n" --seconds 5 --pid "$SERVER_PID" --settle 3 >"$last"
    done
    alive=yes
    kill -0 "$SERVER_PID" 2>/dev/null || alive=NO
    stop_server
    if grep -q "panicked" "$log"; then
      echo "server panicked during $tag; see $log" >&2
    fi
    f="$OUT/hold-$tag.json"
    held1=$(jsub vm_rss_kib held "$f")
    held2=$(jsub vm_rss_kib held "$last")
    rss="$(jsub vm_rss_kib before "$f") → $held1 → $(jsub vm_rss_kib after "$f")"
    metric="$(jsub listeners_metric before "$f") / $(jsub listeners_metric held "$f") / $(jsub listeners_metric after "$f")"
    PER[$tag]=$(jnum kib_per_listener "$f")
    ROWS+=("| $kind | $n | $(jnum connected "$f") | $(jnum failures "$f") | $metric | $idle_kib | $rss | **$(jnum kib_per_listener "$f")** | $(jnum kib_per_listener_anon "$f") | $(jnum kib_per_listener_after_close "$f") | $((held2 - held1)) | $(jnum cpu_share_hold "$f") | $(jnum frames_lost "$f") | $alive |")
  done
done

echo
echo "| room | listeners | connected | failures | tribune_listeners (before/held/after) | idle server VmRSS KiB | server VmRSS KiB before → held → after | KiB / listener (VmRSS) | KiB / listener (RssAnon) | KiB / listener still held after close | held in last round − held in round 1, KiB ($REUSE_ROUNDS reconnects) | server CPU share while held | frames lost | server alive |"
echo "|---|---:|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---|"
for r in "${ROWS[@]}"; do echo "$r"; done
echo
for kind in $KINDS; do
  set -- $COUNTS
  if [ $# -ge 2 ]; then
    a=${PER[$kind-$1]}
    b=${PER[$kind-$2]}
    echo "$kind: per-listener cost at $1 / at $2 listeners = $(awk -v a="$a" -v b="$b" 'BEGIN { if (b != 0) printf "%.2f", a / b; else print "n/a" }')"
  fi
done
echo "raw results: $OUT/hold-*.json"
