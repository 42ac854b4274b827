#!/usr/bin/env python3
"""Table rows for bench/compare-icecast.sh from `tribune crowd --json` reports.

  compare_icecast.py REPORT.json SERVER N RAMP SETTLE HOLD IDLE_RSS_MB   # one markdown row
  compare_icecast.py --ratios RESULTS.md                                # Tribune/Icecast CPU

The server's CPU is the mean of the per-second samples of the hold window only: from SETTLE s
after the ramp's last arrival ((N - 1) / RAMP) for HOLD s. RSS is the largest sample in that
window; KB per listener is its growth over the idle server (source connected, no listener)
divided by the mean number of open connections in the window. Latency p99 is the whole run's.
The stream rate is the audio bytes received per open connection-second (Icecast's includes the
burst on connect, so it reads a little high on short runs). Server wait is the hold window's mean
run-queue wait summed over the server's threads, % of wall time: other work on the server's
core, or a multi-threaded server's threads queueing behind each other on that one core.
"""
import json
import sys


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def fmt(x, spec=".1f"):
    return "-" if x is None else format(x, spec)


def row(path, server, n, ramp, settle, hold, idle):
    try:
        with open(path) as f:
            r = json.load(f)
    except (OSError, ValueError) as e:
        return f"| {server} | {n} | no report ({e}) | | | | | | | | | | |"
    t0 = (n - 1) / ramp + settle
    pts = [p for p in r["timeline"] if t0 < p["t_s"] <= t0 + hold + 1e-6]
    cpu = mean(p["server_cpu_pct"] for p in pts)
    conn = mean(p["connected"] for p in pts)
    wait = mean(p.get("server_wait_pct") for p in pts)
    rss = max((p["server_rss_mb"] for p in pts if p["server_rss_mb"] is not None), default=None)
    per_1000 = cpu / (conn / 1000) if cpu is not None and conn else None
    kb = (rss - idle) * 1024 / conn if rss is not None and conn else None
    rss_s = f"{fmt(rss)} ({idle:.1f})" if rss is not None else "-"
    # Audio bytes per open connection-second over the run: the stream's rate as received.
    conn_s = sum(p["connected"] for p in r["timeline"])
    kbps = r["bytes_received"] * 8 / 1000 / conn_s if conn_s else None
    return (
        f"| {server} | {n} | {r['listeners_connected']} | {fmt(cpu)} | {fmt(per_1000, '.2f')} "
        f"| {rss_s} | {fmt(kb)} | {fmt(r['latency_ms']['p99'])} | {r['frames_lost']} "
        f"| {r['skips']} | {r['disconnects']} | {fmt(kbps)} | {fmt(wait, '.0f')} |"
    )


def ratios(results):
    cpu = {}
    with open(results) as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) < 5 or cells[0] not in ("icecast", "tribune"):
                continue
            try:
                cpu[(cells[0], int(cells[1]))] = (float(cells[3]), float(cells[4]))
            except ValueError:
                continue
    out = ["", "Tribune / Icecast server CPU per step (below 0.40 meets the issue's goal):", ""]
    for n in sorted({k[1] for k in cpu}):
        t, i = cpu.get(("tribune", n)), cpu.get(("icecast", n))
        if t and i and i[0] > 0 and i[1] > 0:
            out.append(f"- {n} listeners: {t[0] / i[0]:.2f}× (per 1 000 listeners: {t[1] / i[1]:.2f}×)")
        else:
            out.append(f"- {n} listeners: -")
    return "\n".join(out)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--ratios":
        print(ratios(sys.argv[2]))
    elif len(sys.argv) == 8:
        a = sys.argv
        print(row(a[1], a[2], int(a[3]), float(a[4]), float(a[5]), float(a[6]), float(a[7])))
    else:
        sys.exit(__doc__)
