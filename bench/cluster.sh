#!/usr/bin/env bash
# Issue 14's figures: one origin and two edge processes on this machine, each edge with a crowd
# of its own, against a lone node in the same session (docs/BENCHMARKS.md §10).
#
#   bench/cluster.sh                          # 3 rounds of: lone 18 000; cluster 2 × 500;
#                                             #   cluster 2 × 18 000
#   PER_EDGE=5000 ROUNDS=1 HOLD=15 bench/cluster.sh
#
# Layout on 2 cores: the lone node on core 0 with its crowd on core 1 (as compare-icecast.sh);
# in the cluster, edge A and the origin on core 0 with edge B's crowd, edge B on core 1 with
# edge A's crowd, so each edge has a core and shares it with a crowd that is not its own. The
# speaker runs on core 1. Each crowd joins through its own edge (`--server` is the edge) and
# samples that edge's CPU (`--server-pid`); the origin's CPU is read from /proc over the same
# hold window. One process holds < 20 000 sockets (the open-file limit), hence 18 000 per edge
# and per crowd. Everything stays on 127.0.0.1; every run and wait is bounded.
#
# Environment: PER_EDGE (18000), SMALL (500 per edge: the origin's baseline), RAMP (joins/s
# per crowd, 1000), HOLD (30), SETTLE (3), ROUNDS (3), OUT (/tmp/tribune-cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

PER_EDGE=${PER_EDGE:-18000}
SMALL=${SMALL:-500}
RAMP=${RAMP:-1000}
HOLD=${HOLD:-30}
SETTLE=${SETTLE:-3}
ROUNDS=${ROUNDS:-3}
OUT=${OUT:-/tmp/tribune-cluster}
SECRET=bench-cluster-secret-0123456789
ORIGIN_PORT=18600
EDGE_A_PORT=18601
EDGE_B_PORT=18602
LONE_PORT=18603
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)"
tribune_build

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  PIDS=()
}
trap cleanup EXIT

# ticks PID: CPU time (user + system) of a process, in clock ticks.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# serve CORE PORT LOG [flags...]: a node pinned to CORE; prints its pid.
serve() {
  local core=$1 port=$2 log=$3
  shift 3
  port_free "$port" || return 1
  # Its stdout goes to the log too: the caller reads this function's output until it closes.
  taskset -c "$core" "$BIN" serve --listen "127.0.0.1:$port" --no-data "$@" >"$log" 2>&1 &
  local pid=$!
  for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && { echo "$pid"; return 0; }
    sleep 0.1
  done
  echo "tribune serve did not answer on port $port (see $log)" >&2
  return 1
}

# crowd CORE PORT PID N NAME: a crowd of N on the node at PORT (whose server process is PID).
crowd() {
  local core=$1 port=$2 pid=$3 n=$4 name=$5 secs=$6
  timeout $((secs + 60)) taskset -c "$core" "$BIN" crowd --server "http://127.0.0.1:$port" \
    --room "$ROOM" --listeners "$n" --ramp "$RAMP" --seconds "$secs" --server-pid "$pid" \
    --json "$name.json" >"$name.txt" 2>"$name.progress" || echo "crowd failed ($name.progress)" >&2
}

secs_for() { python3 -c "import math; print(math.ceil(($1 - 1) / $RAMP) + $SETTLE + $HOLD + 1)"; }

lone() {
  local n=$1 name=$2 secs
  secs=$(secs_for "$n")
  local node
  node=$(serve 0 "$LONE_PORT" "$name.serve.log")
  PIDS+=("$node")
  tribune_room "$LONE_PORT" lone
  tribune_speaker "$LONE_PORT" $((secs + 20))
  PIDS+=("$SPEAKER_PID")
  sleep 2
  crowd 1 "$LONE_PORT" "$node" "$n" "$name" "$secs"
  cleanup
  sleep 2
}

cluster() {
  local n=$1 name=$2 secs
  secs=$(secs_for "$n")
  local origin a b
  origin=$(serve 0 "$ORIGIN_PORT" "$name.origin.log" --role origin --secret "$SECRET")
  PIDS+=("$origin")
  a=$(serve 0 "$EDGE_A_PORT" "$name.a.log" --role edge --secret "$SECRET" \
    --upstream "http://127.0.0.1:$ORIGIN_PORT")
  PIDS+=("$a")
  b=$(serve 1 "$EDGE_B_PORT" "$name.b.log" --role edge --secret "$SECRET" \
    --upstream "http://127.0.0.1:$ORIGIN_PORT")
  PIDS+=("$b")
  tribune_room "$ORIGIN_PORT" cluster
  tribune_speaker "$ORIGIN_PORT" $((secs + 20))
  PIDS+=("$SPEAKER_PID")
  sleep 2
  crowd 1 "$EDGE_A_PORT" "$a" "$n" "$name.a" "$secs" &
  local ca=$!
  crowd 0 "$EDGE_B_PORT" "$b" "$n" "$name.b" "$secs" &
  local cb=$!
  # The origin's CPU over the crowds' hold window (after the ramp and the settle time).
  local ramp_s=$((secs - SETTLE - HOLD - 1))
  sleep $((ramp_s + SETTLE + 1))
  local t0 c0 t1 c1
  t0=$(date +%s.%N)
  c0=$(ticks "$origin")
  sleep "$HOLD"
  t1=$(date +%s.%N)
  c1=$(ticks "$origin")
  wait "$ca" "$cb" || true
  python3 -c "import os; print(round(($c1 - $c0) / os.sysconf('SC_CLK_TCK') / ($t1 - $t0) * 100, 2))" \
    >"$name.origin-cpu"
  cleanup
  sleep 2
}

{
  echo "# Tribune cluster: $(date -u +%FT%TZ)"
  echo
  echo "$(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //');" \
    "tribune $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo '+dirty');" \
    "$PER_EDGE per edge (baseline $SMALL), ramp $RAMP/s per crowd, hold $HOLD s after ramp + $SETTLE s"
} >"$OUT/results.md"
for round in $(seq "$ROUNDS"); do
  echo "== round $round: lone node, $PER_EDGE listeners" >&2
  lone "$PER_EDGE" "$OUT/r$round-lone"
  echo "== round $round: cluster, 2 × $SMALL listeners" >&2
  cluster "$SMALL" "$OUT/r$round-small"
  echo "== round $round: cluster, 2 × $PER_EDGE listeners" >&2
  cluster "$PER_EDGE" "$OUT/r$round-big"
done
python3 bench/cluster_table.py "$OUT" "$ROUNDS" | tee -a "$OUT/results.md"
echo "results: $OUT/results.md" >&2
