#!/usr/bin/env bash
# A join flood against a node at capacity (docs/BENCHMARKS.md, §5): a release `tribune serve`
# with --max-listeners CAPACITY --join-rate RATE, filled by a crowd that arrives at the
# admission rate; then joins at FLOOD_X times that rate for FLOOD_S seconds while established
# listeners leave at LEAVE_RATE a second (the seats the queue can take). The server is pinned to
# core 0, the speaker and the crowd to core 1; the crowd reads the server's /metrics.
#
#   bench/flood.sh                                  # 2 000 seats, 20 joins/s, 10x flood for 60 s
#   CAPACITY=300 RATE=20 FLOOD_S=10 bench/flood.sh  # a quick run
set -euo pipefail
cd "$(dirname "$0")/.."
CAPACITY=${CAPACITY:-2000}
RATE=${RATE:-20}
FLOOD_X=${FLOOD_X:-10}
FLOOD_S=${FLOOD_S:-60}
LEAVE_RATE=${LEAVE_RATE:-$((RATE * 5 / 4))}
PORT=${PORT:-18097}
OUT=${OUT:-/tmp/tribune-flood}
. bench/lib.sh
tribune_build
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)"
# The established crowd arrives at the admission rate, so it is admitted as it comes.
RAMP_S=$(((CAPACITY + RATE - 1) / RATE))
FLOOD_START=$((RAMP_S + 5))
SECONDS_RUN=$((FLOOD_START + FLOOD_S + 5))
FLOOD_RATE=$((RATE * FLOOD_X))
if ((LEAVE_RATE * FLOOD_S > CAPACITY)); then
  echo "LEAVE_RATE x FLOOD_S must not exceed CAPACITY (the leavers are established listeners)" >&2
  exit 2
fi
tribune_node_with_speaker "$PORT" "$OUT/serve.log" flood $((SECONDS_RUN + 30)) \
  --no-data --max-listeners "$CAPACITY" --join-rate "$RATE"
NAME="$OUT/flood-c$CAPACITY-r$RATE-x$FLOOD_X-${FLOOD_S}s"
echo "date: $(date -u +%FT%TZ)  nproc: $(nproc)  cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)" | tee "$NAME.txt"
set -x
taskset -c 1 "$BIN" crowd --server "http://127.0.0.1:$PORT" --room "$ROOM" --scenario flood \
  --listeners "$CAPACITY" --ramp "$RATE" --seconds "$SECONDS_RUN" \
  --flood-rate "$FLOOD_RATE" --flood-start "$FLOOD_START" --flood-seconds "$FLOOD_S" \
  --leave-rate "$LEAVE_RATE" --json "$NAME.json" --chart "$NAME.svg" | tee -a "$NAME.txt"
{ set +x; } 2>/dev/null
# The verdict against the issue's goals.
python3 - "$NAME.json" "$CAPACITY" "$RATE" <<'PY' | tee -a "$NAME.txt"
import json, sys
r = json.load(open(sys.argv[1])); cap = int(sys.argv[2]); rate = float(sys.argv[3])
f = r["flood"]
loss = f["established_loss_pct"]
held = f["server_listeners_max"] or f["peak_connected"]
checks = [
    ("established listeners lose <= 0.1 % of frames", loss <= 0.1, f"{loss:.4f} %"),
    ("every join request answered", f["unanswered"] == 0, f"{f['unanswered']} unanswered"),
    ("answer p99 <= 1 s", r["answer_ms"]["p99"] <= 1000, f"{r['answer_ms']['p99']:.1f} ms"),
    ("admissions >= 90 % of the rate", f["admitted_per_s"] >= 0.9 * rate,
     f"{f['admitted_per_s']:.2f}/s = {100 * f['admitted_per_s'] / rate:.1f} % of {rate:g}/s"),
    ("never over capacity by more than 1 %", held <= cap * 1.01, f"{held} of {cap}"),
]
for name, ok, got in checks:
    print(f"{'PASS' if ok else 'FAIL'}  {name}: {got}")
PY
