# Shell helpers shared by the bench scripts (source it; it defines functions and nothing runs).
# A Tribune node, a room and a tone speaker, as bench/crowd.sh and bench/compare-icecast.sh use
# them. Everything stays on 127.0.0.1; every wait is bounded.

# The node under test and every room creation share this operator key.
export TRIBUNE_API_KEY=${TRIBUNE_API_KEY:-bench-operator-key-0123456789}

# Builds the release binary and sets BIN. Honours CARGO_TARGET_DIR (default ./target).
tribune_build() {
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
  cargo build --release -p tribune >&2
  BIN="$CARGO_TARGET_DIR/release/tribune"
}

# port_free PORT: fails, saying so, when something already listens on 127.0.0.1:PORT (another
# server there would answer in place of the one under test).
port_free() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    echo "port $1 on 127.0.0.1 is already in use: choose another" >&2
    return 1
  fi
}

# tribune_serve PORT LOG [serve flags...]: starts `tribune serve` on 127.0.0.1:PORT pinned to
# core 0, sets TRIBUNE_PID and waits (at most 5 s) for /healthz.
tribune_serve() {
  local port=$1 log=$2
  shift 2
  port_free "$port" || return 1
  taskset -c 0 "$BIN" serve --listen "127.0.0.1:$port" "$@" 2>"$log" &
  TRIBUNE_PID=$!
  for _ in $(seq 50); do
    kill -0 "$TRIBUNE_PID" 2>/dev/null || break
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && return 0
    sleep 0.1
  done
  echo "tribune serve did not answer on port $port (see $log)" >&2
  return 1
}

# tribune_room PORT TITLE: creates a room, sets ROOM and TOKEN.
tribune_room() {
  local json
  json=$("$BIN" room create --server "http://127.0.0.1:$1" --title "$2" --json)
  ROOM=$(echo "$json" | sed -E 's/.*"id":"([^"]+)".*/\1/')
  TOKEN=$(echo "$json" | sed -E 's/.*"host_token":"([^"]+)".*/\1/')
}

# tribune_speaker PORT SECONDS: a 440 Hz tone speaker in $ROOM, pinned to core 1, for SECONDS;
# sets SPEAKER_PID.
tribune_speaker() {
  taskset -c 1 "$BIN" speak --server "http://127.0.0.1:$1" --room "$ROOM" --token "$TOKEN" \
    --tone 440 --seconds "$2" 2>/dev/null &
  SPEAKER_PID=$!
}

# tribune_node_with_speaker PORT LOG TITLE SECONDS [serve flags...]: a node, a room and a
# 440 Hz speaker talking for SECONDS, all stopped when the script exits; sets TRIBUNE_PID, ROOM,
# TOKEN and SPEAKER_PID, and leaves the speaker 2 s to start.
tribune_node_with_speaker() {
  local port=$1 log=$2 title=$3 secs=$4
  shift 4
  TRIBUNE_PID=
  SPEAKER_PID=
  trap 'stop_pid "$SPEAKER_PID"; stop_pid "$TRIBUNE_PID"' EXIT
  tribune_serve "$port" "$log" "$@"
  tribune_room "$port" "$title"
  tribune_speaker "$port" "$secs"
  sleep 2
}

# stop_pid PID: SIGTERM, then SIGKILL after 5 s; nothing if empty or gone.
stop_pid() {
  local pid=${1:-}
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# rss_mb PID: resident memory of a process in MiB (VmRSS), or empty.
rss_mb() {
  awk '/^VmRSS:/ { printf "%.2f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || true
}
