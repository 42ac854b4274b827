#!/usr/bin/env bash
# LL-HLS glass-to-ear latency with ffmpeg as the player (docs/BENCHMARKS.md).
#
#   bench/hls-latency.sh                    # SECONDS_RUN=60, the four modes below
#   MODES="origin:-1:unpaced" SECONDS_RUN=120 bench/hls-latency.sh
#
# One fresh release `tribune serve` on 127.0.0.1:$PORT and, for the "edge" modes, nginx with
# deploy/nginx-edge.conf on 127.0.0.1:$EDGE_PORT (origin and listen rewritten with sed). Each
# mode runs the hls_latency example (a new room and speaker each time): a speaker sends a 100 ms
# tone burst every 500 ms, a WebSocket listener notes each burst's capture time, ffmpeg plays
# live.m3u8 into a pipe and the burst onsets coming out of it are timed on the same clock.
# A mode is WHERE:LIVE_START_INDEX:PACING, WHERE = origin | edge, PACING = unpaced (ffmpeg
# decodes as soon as it has data: when the audio is available) | paced (`-re`: ffmpeg plays in
# real time from where it started, like a player).
#
# Environment: MODES ("origin:-1:unpaced origin:-1:paced origin:-3:paced edge:-1:unpaced"),
# SECONDS_RUN (60), WARM (10), PORT (18095), EDGE_PORT (18096), OUT (/tmp/tribune-bench),
# CARGO_TARGET_DIR (default ./target). Needs ffmpeg and nginx; loopback only.
set -euo pipefail
# The node under test and every room creation share this operator key.
export TRIBUNE_API_KEY=${TRIBUNE_API_KEY:-bench-operator-key-0123456789}
cd "$(dirname "$0")/.."

MODES=${MODES:-"origin:-1:unpaced origin:-1:paced origin:-3:paced edge:-1:unpaced"}
SECONDS_RUN=${SECONDS_RUN:-60}
WARM=${WARM:-10}
PORT=${PORT:-18095}
EDGE_PORT=${EDGE_PORT:-18096}
OUT=${OUT:-/tmp/tribune-bench}
TARGET=${CARGO_TARGET_DIR:-target}
mkdir -p "$OUT"
URL="http://127.0.0.1:$PORT"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { echo "nginx is required (apt-get install nginx)" >&2; exit 1; }
command -v ffmpeg >/dev/null || { echo "ffmpeg is required (apt-get install ffmpeg)" >&2; exit 1; }

echo "== build (release)" >&2
cargo build --release --locked -p tribune --bin tribune >&2
cargo build --release --locked -p tribune-client --example hls_latency >&2
BIN="$TARGET/release/tribune"
PROBE="$TARGET/release/examples/hls_latency"

SERVER="" EDGE="" PREFIX=""
# stop PID: SIGTERM, up to 5 s, then SIGKILL; only processes this script started.
stop() {
  [ -n "$1" ] || return 0
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
stop_all() {
  stop "$EDGE"
  stop "$SERVER"
  EDGE="" SERVER=""
  [ -z "$PREFIX" ] || rm -rf "$PREFIX"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$PORT" "$EDGE_PORT"; do
  if port_open "$p"; then
    echo "127.0.0.1:$p is already in use; set PORT / EDGE_PORT" >&2
    exit 1
  fi
done

echo "== machine" >&2
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  nproc: $(nproc)  cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')  $(ffmpeg -version | head -1 | cut -d' ' -f1-3)  $("$NGINX" -v 2>&1)  loadavg: $(cut -d" " -f1-3 /proc/loadavg)"

"$BIN" serve --listen "127.0.0.1:$PORT" 2>"$OUT/hls-latency-server.log" &
SERVER=$!
PREFIX=$(mktemp -d /tmp/tribune-edge-bench.XXXXXX)
chmod 755 "$PREFIX" # as root, nginx's workers (nobody) write the cache under it
sed -e "s/server 127\.0\.0\.1:8080;/server 127.0.0.1:$PORT;/" \
  -e "s/listen 8081;/listen 127.0.0.1:$EDGE_PORT;/" deploy/nginx-edge.conf >"$PREFIX/nginx.conf"
"$NGINX" -p "$PREFIX" -c "$PREFIX/nginx.conf" -e stderr -g 'daemon off;' 2>"$OUT/hls-latency-nginx.log" &
EDGE=$!
for p in "$PORT" "$EDGE_PORT"; do
  for _ in $(seq 1 100); do
    port_open "$p" && break
    sleep 0.1
  done
done

for mode in $MODES; do
  IFS=: read -r where index pacing <<<"$mode"
  args=(--server "$URL" --seconds "$SECONDS_RUN" --warm "$WARM" --live-start-index "$index")
  [ "$where" = edge ] && args+=(--hls-base "http://127.0.0.1:$EDGE_PORT")
  [ "$pacing" = paced ] && args+=(--paced)
  out="$OUT/hls-latency-$where$index-$pacing.json"
  timeout $((SECONDS_RUN + 150)) "$PROBE" "${args[@]}" >"$out"
  echo "$mode loadavg $(cut -d" " -f1-3 /proc/loadavg): $(cat "$out")"
done
stop_all
