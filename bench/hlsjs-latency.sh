#!/usr/bin/env bash
# LL-HLS glass-to-ear latency with hls.js in headless Chromium, lowLatencyMode on vs off in the
# same session (docs/BENCHMARKS.md). Builds the release binary, installs the browser tests'
# npm packages (playwright-core, hls.js) and runs bench/hlsjs-latency.mjs.
#
#   bash bench/hlsjs-latency.sh                    # RUN_S=60 WARM_S=10 SAMPLE_MS=250 ROUNDS=1
#   ROUNDS=2 RUN_S=30 bash bench/hlsjs-latency.sh
# Needs Debian's chromium (CHROMIUM=path to use another). Everything runs on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}
echo "== build (release)" >&2
cargo build --release --locked -p tribune --bin tribune >&2
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error >&2)
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  nproc: $(nproc)  cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')  chromium: $(chromium --version 2>/dev/null | head -1)  loadavg: $(cut -d' ' -f1-3 /proc/loadavg)"
TRIBUNE_BIN="$(cd "$TARGET" && pwd)/release/tribune" node bench/hlsjs-latency.mjs
