#!/usr/bin/env bash
# Tribune against Icecast 2, measured by one instrument (`tribune crowd`), step by step in
# listener count (issue 5, docs/CROWD.md). Both servers carry the same 32 kbps Opus stream of a
# 440 Hz tone; each server is pinned to core 0, the load (the crowd and the audio source:
# ffmpeg or the Tribune speaker) to core 1.
#
#   bench/compare-icecast.sh                              # steps 1000 5000 10000 18000, 30 s hold
#   STEPS="500 2000" HOLD=15 bench/compare-icecast.sh     # a quick run
#   BATCH_MS=100 SERVERS=tribune bench/compare-icecast.sh
#   RPS=1 bench/compare-icecast.sh                        # receive work charged to the receiver
#   BUSY_POLL=0 bench/compare-icecast.sh                  # the crowd sleeps when idle
#
# Environment: STEPS, HOLD (seconds measured after the ramp, 30), SETTLE (seconds after the ramp
# left out of the hold, 3), ICECAST_RAMP (joins/s, 100: Icecast's listen backlog is 5, faster
# ramps drop connections), TRIBUNE_RAMP (1000), BATCH_MS and BATCH_MAX_MS (tribune serve
# --batch-ms and --batch-max-ms; unset: the server's defaults), SERVERS ("icecast tribune"), ICECAST_PORT (18000), TRIBUNE_PORT (18497),
# BURST_SIZE (Icecast burst-on-connect bytes, 8192 ≈ 2 s at 32 kbps), OUT (result directory,
# /tmp/tribune-compare-icecast), CARGO_TARGET_DIR (./target), BUSY_POLL (1: the crowd keeps its
# core busy instead of sleeping, so the server's core does not also pay for waking it up after
# every write; docs/CROWD.md).
#
# Installs icecast2 and ffmpeg with apt-get when missing (needs root, Debian). Icecast 2.4 will
# not run as root: it is started as its package's user, with its open-file limit raised in that
# shell. Traffic stays on 127.0.0.0/8; every run and wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

STEPS=${STEPS:-"1000 5000 10000 18000"}
HOLD=${HOLD:-30}
SETTLE=${SETTLE:-3}
ICECAST_RAMP=${ICECAST_RAMP:-100}
TRIBUNE_RAMP=${TRIBUNE_RAMP:-1000}
BATCH_MS=${BATCH_MS:-}
BATCH_MAX_MS=${BATCH_MAX_MS:-}
SERVERS=${SERVERS:-"icecast tribune"}
ICECAST_PORT=${ICECAST_PORT:-18000}
TRIBUNE_PORT=${TRIBUNE_PORT:-18497}
BURST_SIZE=${BURST_SIZE:-8192}
BUSY_POLL=${BUSY_POLL:-1}
OUT=${OUT:-/tmp/tribune-compare-icecast}
FDS=20000
MOUNT=tribune.opus
mkdir -p "$OUT"
RESULTS="$OUT/results.md"

# --- tools --------------------------------------------------------------------------------------
need_pkgs=()
command -v icecast2 >/dev/null || need_pkgs+=(icecast2)
command -v ffmpeg >/dev/null || need_pkgs+=(ffmpeg)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "== installing ${need_pkgs[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "${need_pkgs[@]}" >&2
fi
# (Read whole: `grep -q` closing the pipe early would fail the pipeline under pipefail.)
encoders=$(ffmpeg -hide_banner -encoders 2>/dev/null || true)
protocols=$(ffmpeg -hide_banner -protocols 2>/dev/null || true)
grep -q libopus <<<"$encoders" || { echo "ffmpeg has no libopus" >&2; exit 1; }
grep -q icecast <<<"$protocols" || { echo "ffmpeg has no icecast output" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed for the table" >&2; exit 1; }
ICE_USER=
for u in icecast2 icecast; do getent passwd "$u" >/dev/null && { ICE_USER=$u; break; }; done
[ -n "$ICE_USER" ] || { echo "no icecast2/icecast user (the package creates it)" >&2; exit 1; }
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$FDS" ]; then
  FDS=$(ulimit -Hn)
  echo "open-file hard limit is $FDS: steps above ~$((FDS - 600)) listeners cannot be held" >&2
fi
ulimit -n "$FDS"
tribune_build

# --- processes ----------------------------------------------------------------------------------
SERVER_PID=
LOAD_PID=
WORK=$(mktemp -d /tmp/compare-icecast.XXXXXX)
chmod 755 "$WORK"
# RPS=1 steers loopback's receive processing (the listeners' TCP receive path, run in softirq)
# to the load core, as a real network runs it on the listeners' machines; without it the kernel
# charges it to the sending server (about 40 % of Tribune's CPU at 18 000 listeners, perf).
RPS=${RPS:-0}
RPS_FILE=/sys/class/net/lo/queues/rx-0/rps_cpus
OLD_RPS=
if [ "$RPS" = 1 ]; then
  OLD_RPS=$(cat "$RPS_FILE")
  echo 2 >"$RPS_FILE"
fi
cleanup() {
  stop_pid "$LOAD_PID"
  stop_pid "$SERVER_PID"
  [ -n "$OLD_RPS" ] && echo "$OLD_RPS" >"$RPS_FILE"
  rm -rf "$WORK"
}
trap cleanup EXIT

icecast_conf() {
  local dir=$1
  cat >"$dir/icecast.xml" <<XML
<icecast>
  <location>bench</location>
  <admin>bench@localhost</admin>
  <limits>
    <clients>20000</clients>
    <sources>2</sources>
    <queue-size>524288</queue-size>
    <client-timeout>30</client-timeout>
    <header-timeout>15</header-timeout>
    <source-timeout>10</source-timeout>
    <burst-on-connect>1</burst-on-connect>
    <burst-size>$BURST_SIZE</burst-size>
  </limits>
  <authentication>
    <source-password>$PASS</source-password>
    <relay-password>$PASS</relay-password>
    <admin-user>admin</admin-user>
    <admin-password>$PASS</admin-password>
  </authentication>
  <hostname>127.0.0.1</hostname>
  <listen-socket>
    <port>$ICECAST_PORT</port>
    <bind-address>127.0.0.1</bind-address>
  </listen-socket>
  <fileserve>1</fileserve>
  <paths>
    <basedir>/usr/share/icecast2</basedir>
    <logdir>$dir</logdir>
    <webroot>/usr/share/icecast2/web</webroot>
    <adminroot>/usr/share/icecast2/admin</adminroot>
    <pidfile>$dir/icecast.pid</pidfile>
  </paths>
  <logging>
    <accesslog>access.log</accesslog>
    <errorlog>error.log</errorlog>
    <loglevel>2</loglevel>
  </logging>
  <security>
    <chroot>0</chroot>
  </security>
</icecast>
XML
}

# start_icecast DIR: Icecast as its own user on core 0, fed by ffmpeg on core 1; sets SERVER_PID
# (Icecast itself, from its pid file) and LOAD_PID (ffmpeg).
start_icecast() {
  local dir=$1 secs=$2
  PASS=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
  icecast_conf "$dir"
  chown -R "$ICE_USER" "$dir"
  port_free "$ICECAST_PORT" || return 1
  taskset -c 0 su -s /bin/bash "$ICE_USER" -c "ulimit -n $FDS && exec icecast2 -c $dir/icecast.xml" \
    >"$dir/stdout.log" 2>&1 &
  SERVER_PID=
  for _ in $(seq 50); do
    if [ -s "$dir/icecast.pid" ] && curl -sf "http://127.0.0.1:$ICECAST_PORT/status-json.xsl" >/dev/null; then
      SERVER_PID=$(cat "$dir/icecast.pid")
      break
    fi
    sleep 0.1
  done
  [ -n "$SERVER_PID" ] || { echo "icecast did not start:" >&2; cat "$dir"/*.log >&2; return 1; }
  local limit
  limit=$(awk '/Max open files/ { print $4 }' "/proc/$SERVER_PID/limits")
  echo "icecast pid $SERVER_PID ($ICE_USER), open-file limit $limit" >&2
  taskset -c 1 ffmpeg -hide_banner -loglevel error -nostdin -re \
    -f lavfi -i "sine=frequency=440:sample_rate=48000" -t "$secs" -ac 1 \
    -c:a libopus -b:a 32k -frame_duration 20 -application audio -page_duration 100000 \
    -content_type audio/ogg -f ogg "icecast://source:$PASS@127.0.0.1:$ICECAST_PORT/$MOUNT" \
    2>"$dir/ffmpeg.log" &
  LOAD_PID=$!
  for _ in $(seq 50); do
    case $(curl -sf "http://127.0.0.1:$ICECAST_PORT/status-json.xsl" || true) in
      *"/$MOUNT"*) return 0 ;;
    esac
    sleep 0.1
  done
  echo "the mount did not appear (see $dir/ffmpeg.log)" >&2
  return 1
}

start_tribune() {
  local dir=$1 secs=$2
  local flags=(--no-data)
  [ -n "$BATCH_MS" ] && flags+=(--batch-ms "$BATCH_MS")
  [ -n "$BATCH_MAX_MS" ] && flags+=(--batch-max-ms "$BATCH_MAX_MS")
  tribune_serve "$TRIBUNE_PORT" "$dir/serve.log" "${flags[@]}"
  SERVER_PID=$TRIBUNE_PID
  tribune_room "$TRIBUNE_PORT" compare
  tribune_speaker "$TRIBUNE_PORT" "$secs"
  LOAD_PID=$SPEAKER_PID
}

# --- steps --------------------------------------------------------------------------------------
{
  echo "# Tribune vs Icecast: $(date -u +%FT%TZ)"
  echo
  echo "$(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(icecast2 -v 2>/dev/null | head -1);" \
    "tribune $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo '+dirty')," \
    "--batch-ms ${BATCH_MS:-default}, --batch-max-ms ${BATCH_MAX_MS:-default}; hold ${HOLD} s after ramp + ${SETTLE} s; Icecast burst ${BURST_SIZE} B;" \
    "loopback receive processing on $([ "$RPS" = 1 ] && echo "the load core (RPS=1)" || echo "the sender's core");" \
    "the crowd $([ "$BUSY_POLL" = 1 ] && echo "busy-polls (BUSY_POLL=1)" || echo "sleeps when idle (BUSY_POLL=0)")"
  echo
  echo "| server | listeners | connected | CPU % of one core | CPU % per 1 000 | RSS MB (idle) | KB per listener | p99 latency ms | lost | skips (gaps+stalls) | disconnects | stream kbit/s | server wait % |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
} >"$RESULTS"
cat "$RESULTS"
for n in $STEPS; do
  for server in $SERVERS; do
    if [ "$server" = icecast ]; then ramp=$ICECAST_RAMP; else ramp=$TRIBUNE_RAMP; fi
    ramp_s=$(python3 -c "import math; print(math.ceil(($n - 1) / $ramp))")
    secs=$((ramp_s + SETTLE + HOLD + 1))
    dir="$WORK/$server-$n"
    mkdir -p "$dir"
    echo "== $server, $n listeners, ramp $ramp/s, $secs s" >&2
    if [ "$server" = icecast ]; then
      start_icecast "$dir" $((secs + 20))
      target=(--icecast "http://127.0.0.1:$ICECAST_PORT/$MOUNT")
    else
      start_tribune "$dir" $((secs + 20))
      target=(--server "http://127.0.0.1:$TRIBUNE_PORT" --room "$ROOM")
    fi
    sleep 3
    idle=$(rss_mb "$SERVER_PID")
    name="$OUT/$server-$n"
    busy=()
    [ "$BUSY_POLL" = 1 ] && busy=(--busy-poll)
    timeout $((secs + 60)) taskset -c 1 "$BIN" crowd "${target[@]}" --listeners "$n" --ramp "$ramp" \
      --seconds "$secs" --server-pid "$SERVER_PID" --json "$name.json" --chart "$name.svg" "${busy[@]}" \
      >"$name.txt" 2>"$name.progress" || echo "crowd failed (see $name.progress)" >&2
    for f in "$dir"/*.log; do [ -e "$f" ] && cp "$f" "$OUT/$server-$n.$(basename "$f")"; done
    stop_pid "$LOAD_PID"
    stop_pid "$SERVER_PID"
    LOAD_PID=
    SERVER_PID=
    sleep 2
    python3 bench/compare_icecast.py "$name.json" "$server" "$n" "$ramp" "$SETTLE" "$HOLD" "${idle:-0}" \
      | tee -a "$RESULTS"
  done
done
python3 bench/compare_icecast.py --ratios "$RESULTS" | tee -a "$RESULTS"
cat <<'NOTE' | tee -a "$RESULTS"

CPU: mean of the server's per-second samples over the hold window (after the ramp and the
settle time), percent of one core; RSS: largest sample in the window, with the idle server
(source connected, no listener) in parentheses; KB per listener: growth over idle / listeners.
p99 latency: Tribune glass-to-ear (capture timestamp to arrival); Icecast lateness against the
stream clock (granule positions), which leaves out the constant delay of ffmpeg's pages and the
burst on connect (docs/CROWD.md). lost: 20 ms frames (Icecast: Ogg page gaps × packets per
page). skips: sequence gaps, plus (Icecast) stalls of more than 1 s without a byte. stream
kbit/s: audio bytes received per open connection-second. server wait %: run-queue wait summed
over the server's threads, % of wall time: other work on its core, or (Tribune runs several
threads) its own threads queueing behind each other on the one core it is pinned to.
NOTE
echo "results: $RESULTS (JSON, charts and logs in $OUT)" >&2
