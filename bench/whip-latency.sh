#!/usr/bin/env bash
# Glass-to-ear latency from a WHIP publisher (Python aiortc) to a WebSocket listener on loopback.
# The publisher beeps every 300 ms and reports when it produced each beep; the listener decodes
# the program and notes when each beep arrives (same host clock). Release build.
#
#   bash bench/whip-latency.sh            # 30 s
#   TRIBUNE_BENCH_SECONDS=60 bash bench/whip-latency.sh
set -euo pipefail
# The node under test and every room creation share this operator key.
export TRIBUNE_API_KEY=${TRIBUNE_API_KEY:-bench-operator-key-0123456789}
cd "$(dirname "$0")/.."
cargo test --release --locked -p tribune-server --test whip_aiortc whip_latency_bench \
  -- --ignored --nocapture 2>&1 | grep -E "glass-to-ear|node arrival|test result"
