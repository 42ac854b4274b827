#!/usr/bin/env bash
# What an origin's look for rooms without an origin costs (every origin makes one every
# 2–2.5 s): the look's time and Redis's CPU time per look for 1 000, 10 000 and 100 000 stored
# rooms; ROUNDS rounds (docs/BENCHMARKS.md §11).
#
#   bench/orphan-look.sh                # 3 rounds of 20 looks per size
#   LOOKS=5 ROUNDS=1 bench/orphan-look.sh
#
# A redis-server of its own on a Unix socket (started and stopped by the example). Every run is
# bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
LOOKS=${LOOKS:-20}
ROUNDS=${ROUNDS:-3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -p tribune-store --example orphan_look >&2
for round in $(seq "$ROUNDS"); do
  echo "round $round" >&2
  timeout 300 "$CARGO_TARGET_DIR/release/examples/orphan_look" "$LOOKS"
done
