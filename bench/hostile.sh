#!/usr/bin/env bash
# What one hostile client costs a node (docs/BENCHMARKS.md §7): 500 idle rooms (CPU and memory),
# a speaker flooding a room while its host talks (is the host heard?), and one ticket trying 300
# listen sockets (how many stay open?). Each scenario runs RUNS times against a fresh release
# node pinned to core 0 (the attacker on core 1); with OLD_BIN set, the same runs are made
# against that binary too, for a same-session comparison.
#
#   bash bench/hostile.sh                          # RUNS=3 ROOMS=500 SAMPLE_S=30
#   OLD_BIN=/tmp/old/release/tribune bash bench/hostile.sh
#
# Output: one JSON line per run (in $OUT/hostile.jsonl), then a summary table (median and
# spread of each figure). Everything stays on 127.0.0.1; every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

RUNS=${RUNS:-3}
ROOMS=${ROOMS:-500}
SAMPLE_S=${SAMPLE_S:-30}
PORT=${PORT:-18611}
OUT=${OUT:-target/bench}
mkdir -p "$OUT"
JSONL="$OUT/hostile.jsonl"
: >"$JSONL"

tribune_build
cargo build --release --locked -p tribune-client --example attack >&2
ATTACK="$CARGO_TARGET_DIR/release/examples/attack"
NEW_BIN=$BIN
URL="http://127.0.0.1:$PORT"

# cpu_ticks PID: user + system clock ticks of a process.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# rss_kb PID: resident memory, KiB.
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# idle_rooms LABEL: ROOMS rooms nobody speaks or listens in; CPU over SAMPLE_S and memory.
idle_rooms() {
  local label=$1 data
  data=$(mktemp -d)
  tribune_serve "$PORT" "$OUT/hostile-serve.log" --data-dir "$data"
  local before created=0
  before=$(rss_kb "$TRIBUNE_PID")
  for _ in $(seq "$ROOMS"); do
    if curl -sf -m 10 -X POST "$URL/api/rooms" -H "authorization: Bearer $TRIBUNE_API_KEY" \
      -H 'content-type: application/json' -d '{"title":"idle"}' >/dev/null; then
      created=$((created + 1))
    fi
  done
  sleep 5
  local t0 t1 health_ms
  t0=$(cpu_ticks "$TRIBUNE_PID")
  sleep "$SAMPLE_S"
  t1=$(cpu_ticks "$TRIBUNE_PID")
  health_ms=$(curl -s -o /dev/null -m 20 -w '%{time_total}' "$URL/healthz" | awk '{printf "%.1f", $1 * 1000}')
  local after disk
  after=$(rss_kb "$TRIBUNE_PID")
  disk=$(du -sk "$data" | cut -f1)
  stop_pid "$TRIBUNE_PID"
  rm -rf "$data"
  local hz
  hz=$(getconf CLK_TCK)
  python3 - "$label" "$created" "$t0" "$t1" "$hz" "$SAMPLE_S" "$before" "$after" "$disk" "$health_ms" >>"$JSONL" <<'EOF'
import json, sys
label, rooms, t0, t1, hz, secs, before, after, disk, health = sys.argv[1:]
cpu = (int(t1) - int(t0)) / int(hz) / float(secs) * 100
print(json.dumps({"bin": label, "scenario": "idle_rooms", "rooms": int(rooms),
                  "cpu_pct": round(cpu, 2), "rss_mb": round(int(after) / 1024, 1),
                  "kb_per_room": round((int(after) - int(before)) / max(int(rooms), 1), 1),
                  "disk_kb": int(disk), "healthz_ms": float(health)}))
EOF
}

# attack LABEL SCENARIO ARGS...: one run of the attack example against a fresh node.
attack() {
  local label=$1 scenario=$2
  shift 2
  tribune_serve "$PORT" "$OUT/hostile-serve.log" --no-data
  local line
  line=$(taskset -c 1 timeout 120 "$ATTACK" --server "$URL" "$scenario" "$@" || echo '{}')
  stop_pid "$TRIBUNE_PID"
  python3 -c 'import json,sys; d=json.loads(sys.argv[2] or "{}"); d["bin"]=sys.argv[1]; print(json.dumps(d))' \
    "$label" "$line" >>"$JSONL"
}

TRIBUNE_PID=
trap 'stop_pid "$TRIBUNE_PID"' EXIT
bins=("new:$NEW_BIN")
[ -n "${OLD_BIN:-}" ] && bins+=("old:$OLD_BIN")
for run in $(seq "$RUNS"); do
  for entry in "${bins[@]}"; do
    label=${entry%%:*}
    BIN=${entry#*:}
    echo "== run $run, $label: idle rooms, flood, ticket" >&2
    idle_rooms "$label"
    attack "$label" flood --seconds 8
    attack "$label" ticket --sockets 300
  done
done
BIN=$NEW_BIN

python3 - "$JSONL" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def fig(bin_, scenario, key):
    vals = []
    for r in rows:
        if r.get("bin") != bin_ or r.get("scenario") != scenario:
            continue
        v = r
        for k in key.split("."):
            v = v.get(k) if isinstance(v, dict) else None
        if isinstance(v, (int, float)):
            vals.append(v)
    if not vals:
        return "-"
    return f"{statistics.median(vals):g} ({min(vals):g}–{max(vals):g}, n={len(vals)})"
figures = [
    ("idle_rooms", "cpu_pct", "CPU of the idle rooms, % of one core"),
    ("idle_rooms", "rss_mb", "node RSS with the rooms, MB"),
    ("idle_rooms", "kb_per_room", "memory per idle room, KB"),
    ("idle_rooms", "disk_kb", f"disk after the sample, KB"),
    ("idle_rooms", "healthz_ms", "/healthz answer, ms"),
    ("flood", "host_heard_pct", "host tone heard during the flood, % of frames"),
    ("flood", "server_host.frames_dropped", "host frames dropped (node's count)"),
    ("flood", "server_attacker.frames_dropped", "attacker frames dropped (node's count)"),
    ("flood", "flood_frames_sent", "flood frames sent"),
    ("flood", "server_ingress_dropped", "frames dropped from the room's shared queue (any speaker's)"),
    ("flood", "listener_p99_ms", "listener p99 glass-to-ear during the flood, ms"),
    ("ticket", "sockets_open_after_2s", "sockets open after 2 s (of 300 tried)"),
    ("ticket", "server_listeners", "listeners the node counts"),
]
bins = sorted({r.get("bin") for r in rows})
print("| figure | " + " | ".join(bins) + " |")
print("|---|" + "---|" * len(bins))
for scenario, key, name in figures:
    print(f"| {name} | " + " | ".join(fig(b, scenario, key) for b in bins) + " |")
EOF
