#!/usr/bin/env bash
# Room creations and moderation actions per second through the HTTP API: a node with its
# embedded store (SQLite under --data-dir, each change durable before the 2xx) against one that
# keeps rooms in memory (--no-data), alternating, RUNS times each, same session. Prints each
# run's JSON and the medians with their spread.
#
#   bash bench/room-ops.sh          (ROOMS=500 ACTIONS=4000 CONCURRENCY=32 RUNS=3 PORT=18741)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
ROOMS=${ROOMS:-500} ACTIONS=${ACTIONS:-4000} CONCURRENCY=${CONCURRENCY:-32} RUNS=${RUNS:-3}
PORT=${PORT:-18741}
tribune_build
cargo build --release -q -p tribune --example room_ops
OPS="$CARGO_TARGET_DIR/release/examples/room_ops"
WORK=$(mktemp -d)
trap 'kill $TRIBUNE_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
declare -A RESULTS
for run in $(seq "$RUNS"); do
  for mode in sqlite memory; do
    if [ "$mode" = sqlite ]; then
      rm -rf "$WORK/data"
      flags=(--data-dir "$WORK/data")
    else
      flags=(--no-data)
    fi
    tribune_serve "$PORT" "$WORK/serve.log" "${flags[@]}" --max-rooms 100000
    # The load generator on the other core, the node on core 0.
    out=$(taskset -c 1 "$OPS" "http://127.0.0.1:$PORT" "$TRIBUNE_API_KEY" "$ROOMS" "$ACTIONS" "$CONCURRENCY")
    kill "$TRIBUNE_PID"; wait "$TRIBUNE_PID" 2>/dev/null || true
    echo "run $run $mode $out"
    RESULTS[$mode]+="$out"$'\n'
  done
done
for mode in sqlite memory; do
  printf '%s' "${RESULTS[$mode]}" | python3 -c '
import json, sys, statistics
rows = [json.loads(l) for l in sys.stdin if l.strip()]
for k in ("rooms_per_s", "actions_per_s", "create_p50_ms", "action_p50_ms"):
    v = sorted(r[k] for r in rows)
    print(f"'"$mode"' {k}: median {statistics.median(v):.1f} (spread {v[0]:.1f}-{v[-1]:.1f})")
'
done
