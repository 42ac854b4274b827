#!/usr/bin/env bash
# Blocking LL-HLS playlist requests per second: N players doing blocking reloads against the
# origin directly, then the same through nginx with deploy/nginx-edge.conf (docs/BENCHMARKS.md).
#
#   bench/hls-load.sh                       # COUNTS="1000 4000" SECONDS_RUN=20
#   COUNTS="2000" SECONDS_RUN=30 bench/hls-load.sh
#
# One fresh release `tribune serve` on 127.0.0.1:$PORT with one room where `tribune speak
# --tone 440` talks, and one nginx (the shipped config, origin and listen addresses rewritten
# with sed, run from a temporary prefix) on 127.0.0.1:$EDGE_PORT. For every N the hls_load
# example runs against the origin, then against nginx; it reports responses/s, the CPU share of
# the origin and of nginx (master + workers), the requests that reached the origin, and how late
# collapsed answers came (spread_ms). Needs nginx (apt-get install nginx); loopback only.
#
# Environment: COUNTS ("1000 4000"), SECONDS_RUN (20), RAMP (2), WARM (3), PORT (18092),
# EDGE_PORT (18093), OUT (/tmp/tribune-bench), CARGO_TARGET_DIR (default ./target).
set -euo pipefail
# The node under test and every room creation share this operator key.
export TRIBUNE_API_KEY=${TRIBUNE_API_KEY:-bench-operator-key-0123456789}
cd "$(dirname "$0")/.."

COUNTS=${COUNTS:-"1000 4000"}
SECONDS_RUN=${SECONDS_RUN:-20}
RAMP=${RAMP:-2}
WARM=${WARM:-3}
PORT=${PORT:-18092}
EDGE_PORT=${EDGE_PORT:-18093}
OUT=${OUT:-/tmp/tribune-bench}
TARGET=${CARGO_TARGET_DIR:-target}
mkdir -p "$OUT"
URL="http://127.0.0.1:$PORT"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { echo "nginx is required (apt-get install nginx)" >&2; exit 1; }

echo "== build (release)" >&2
cargo build --release --locked -p tribune --bin tribune >&2
cargo build --release --locked -p tribune-client --example hls_load >&2
BIN="$TARGET/release/tribune"
LOAD="$TARGET/release/examples/hls_load"
ulimit -n "$(ulimit -Hn)"

SERVER="" SPEAKER="" EDGE="" PREFIX=""
# stop PID: SIGTERM (nginx's master stops its workers), up to 5 s, then SIGKILL; only processes
# this script started.
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
  stop "$SPEAKER"
  stop "$SERVER"
  EDGE="" SPEAKER="" SERVER=""
  [ -z "$PREFIX" ] || rm -rf "$PREFIX"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
jstr() { grep -o "\"$1\":\"[^\"]*\"" "$2" | head -1 | cut -d'"' -f4; }
for p in "$PORT" "$EDGE_PORT"; do
  if port_open "$p"; then
    echo "127.0.0.1:$p is already in use; set PORT / EDGE_PORT" >&2
    exit 1
  fi
done

echo "== machine" >&2
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  nproc: $(nproc)  cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')  $("$NGINX" -v 2>&1)  loadavg: $(cut -d" " -f1-3 /proc/loadavg)"

"$BIN" serve --listen "127.0.0.1:$PORT" 2>"$OUT/hls-load-server.log" &
SERVER=$!
for _ in $(seq 1 100); do
  port_open "$PORT" && break
  sleep 0.1
done
timeout 20 "$BIN" room create --server "$URL" --title "hls load" --json >"$OUT/hls-load-room.json"
room=$(jstr id "$OUT/hls-load-room.json")
token=$(jstr host_token "$OUT/hls-load-room.json")
TRIBUNE_TOKEN="$token" "$BIN" speak --server "$URL" --room "$room" --tone 440 --seconds 3600 \
  2>"$OUT/hls-load-speak.log" &
SPEAKER=$!

PREFIX=$(mktemp -d /tmp/tribune-edge-bench.XXXXXX)
chmod 755 "$PREFIX" # as root, nginx's workers (nobody) write the cache under it
sed -e "s/server 127\.0\.0\.1:8080;/server 127.0.0.1:$PORT;/" \
  -e "s/listen 8081;/listen 127.0.0.1:$EDGE_PORT;/" deploy/nginx-edge.conf >"$PREFIX/nginx.conf"
"$NGINX" -p "$PREFIX" -c "$PREFIX/nginx.conf" -e stderr -g 'daemon off;' 2>"$OUT/hls-load-nginx.log" &
EDGE=$!
for _ in $(seq 1 100); do
  port_open "$EDGE_PORT" && break
  sleep 0.1
done
sleep 3

pids_of_edge() {
  local args="--pid nginx:$EDGE"
  for w in $(pgrep -P "$EDGE"); do args="$args --pid nginx:$w"; done
  echo "$args"
}
for n in $COUNTS; do
  for via in origin nginx; do
    if [ "$via" = origin ]; then base="$URL"; else base="http://127.0.0.1:$EDGE_PORT"; fi
    out="$OUT/hls-load-$via-$n.json"
    # shellcheck disable=SC2046
    timeout $((RAMP + WARM + SECONDS_RUN + 90)) "$LOAD" --url "$base/hls/$room/live.m3u8" \
      --clients "$n" --seconds "$SECONDS_RUN" --ramp "$RAMP" --warm "$WARM" \
      --pid "origin:$SERVER" $(pids_of_edge) --metrics "$URL" >"$out"
    echo "$via N=$n loadavg $(cut -d" " -f1-3 /proc/loadavg): $(cat "$out")"
    sleep 2
  done
done
stop_all
