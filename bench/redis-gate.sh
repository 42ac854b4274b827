#!/usr/bin/env bash
# The cluster's admission gate in Redis: decisions per second one node gets with 16 callers at
# once (the most a node lets wait on the gate), through the one gate a node holds (one
# multiplexed connection) and through a gate (a connection) per caller, in the same session;
# ROUNDS rounds (docs/BENCHMARKS.md §11).
#
#   bench/redis-gate.sh                 # 3 rounds, 16 callers, 5 s each way
#   THREADS=4 SECONDS_EACH=3 ROUNDS=1 bench/redis-gate.sh
#
# A redis-server of its own on a Unix socket (started and stopped by the example); the callers
# and Redis share this machine's cores. Every run is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-16}
SECONDS_EACH=${SECONDS_EACH:-5}
ROUNDS=${ROUNDS:-3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -p tribune-store --example gate_throughput >&2
for round in $(seq "$ROUNDS"); do
  echo "round $round" >&2
  timeout 120 "$CARGO_TARGET_DIR/release/examples/gate_throughput" "$THREADS" "$SECONDS_EACH"
done
