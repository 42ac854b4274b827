#!/usr/bin/env bash
# Runs every check and test of the project on a fresh machine. Installs what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests need: Debian's Chromium for the browser tests, ffmpeg to play LL-HLS,
# nginx as an LL-HLS edge, redis-server for the shared room store.
need=(chromium ffmpeg nginx redis-server)
if ((${#need[@]})); then
  missing=()
  for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if ((${#missing[@]})); then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
fi

# Python packages: aiortc (a real WebRTC stack) publishes over WHIP in the server's tests.
py="${TRIBUNE_PYTHON:-python3}"
if ! "$py" -c "import aiortc, av, numpy" >/dev/null 2>&1; then
  "$py" -m pip install -q --disable-pip-version-check -r tests/whip/requirements.txt ||
    "$py" -m pip install -q --disable-pip-version-check --break-system-packages \
      -r tests/whip/requirements.txt
fi

# A one-off build gains nothing from incremental state, which doubles the target directory.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

echo "== format"
cargo fmt --all -- --check
echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== tests"
cargo test --workspace --locked
echo "== browser tests (headless Chromium)"
cargo build -p tribune --locked
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error && npm test)
echo "== fuzz (short)"
bash scripts/fuzz-smoke.sh 20
