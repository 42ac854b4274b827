#!/usr/bin/env bash
# Runs every fuzz target for a short, bounded time (default 20 s each). Uses cargo-fuzz on the
# machine's stable toolchain (RUSTC_BOOTSTRAP enables the sanitizer flags it needs).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-20}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
export RUSTC_BOOTSTRAP=1
cd fuzz
for target in $(cargo fuzz list); do
  echo "== fuzz $target (${secs}s)"
  log=$(mktemp)
  if ! cargo fuzz run "$target" -- -max_total_time="$secs" -rss_limit_mb=2048 >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz target $target failed"
    exit 1
  fi
  grep -E "^Done" "$log" || tail -n 5 "$log"
  rm -f "$log"
done
