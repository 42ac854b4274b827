#!/usr/bin/env bash
# WHIP sessions per core: K concurrent aiortc publishers (one Python process) into one room of a
# release node on loopback; the node's CPU is read from /proc/PID/stat over a steady window.
#
#   bash bench/whip-load.sh                # K = 1 10 20 40, 20 s windows
#   COUNTS="1 5" WINDOW=10 bash bench/whip-load.sh
#
# Prints one line per K: node CPU %, per-session CPU %, Opus frames accepted per second (should be
# 50 × K: otherwise the publisher could not keep up), the mixer's part (decoding every speaker,
# encoding the program), and the rest: WebRTC ingest (UDP, SRTP, str0m) plus the node's idle cost.
set -euo pipefail
# The node under test and every room creation share this operator key.
export TRIBUNE_API_KEY=${TRIBUNE_API_KEY:-bench-operator-key-0123456789}
cd "$(dirname "$0")/.."
counts=${COUNTS:-1 10 20 40}
window=${WINDOW:-20}
port=${PORT:-18443}
py=${TRIBUNE_PYTHON:-python3}
target=${CARGO_TARGET_DIR:-target}
cargo build --release -p tribune --locked -q
bin="$target/release/tribune"
base="http://127.0.0.1:$port"
tck=$(getconf CLK_TCK)

"$bin" serve --listen "127.0.0.1:$port" 2>/dev/null &
node=$!
trap 'kill $node 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
metric() { curl -s "$base/metrics" | awk -v m="tribune_$1" '$1 == m {print $2}'; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"
printf '%-4s %10s %14s %10s %10s %8s %9s\n' K node_cpu_% per_session_% frames/s expected mixer_% ingest_%
for k in $counts; do
  json=$("$bin" room create --server "$base" --title "load $k" --json)
  id=$(echo "$json" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  token=$(echo "$json" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["host_token"])')
  log=$(mktemp)
  "$py" tests/whip/publish.py "$base/api/rooms/$id/whip" "$token" --sessions "$k" \
    --seconds $((window + 8)) >"$log" 2>&1 &
  pub=$!
  sleep 6 # connect and settle
  c0=$(cpu_ticks $node); f0=$(metric whip_frames_total); m0=$(metric mixer_busy_microseconds_total)
  t0=$(date +%s.%N)
  sleep "$window"
  c1=$(cpu_ticks $node); f1=$(metric whip_frames_total); m1=$(metric mixer_busy_microseconds_total)
  t1=$(date +%s.%N)
  wait $pub || { echo "publisher failed:"; tail -5 "$log"; exit 1; }
  rm -f "$log"
  curl -s -X POST "$base/api/rooms/$id/end" -H "authorization: Bearer $token" >/dev/null
  awk -v k="$k" -v c=$((c1 - c0)) -v f=$((f1 - f0)) -v m=$((m1 - m0)) -v t0="$t0" -v t1="$t1" \
    -v tck="$tck" 'BEGIN {
      s = t1 - t0; cpu = 100 * c / tck / s
      mix = 100 * m / 1e6 / s
      printf "%-4d %10.1f %14.2f %10.0f %10d %8.1f %9.1f\n", k, cpu, cpu / k, f / s, 50 * k, mix, cpu - mix
    }'
done
