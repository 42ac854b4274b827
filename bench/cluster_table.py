#!/usr/bin/env python3
"""The table of bench/cluster.sh: per round, the lone node and each edge (CPU per 1 000
listeners, join and glass-to-ear p99, lost), the origin's CPU at 2 x SMALL and 2 x PER_EDGE,
and the medians (with spread) of the ratios the issue asks for."""
import json
import statistics
import sys
from pathlib import Path

out, rounds = Path(sys.argv[1]), int(sys.argv[2])


def load(name):
    p = out / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def origin_cpu(name):
    p = out / f"{name}.origin-cpu"
    return float(p.read_text()) if p.exists() else None


print()
print("| round | run | node | connected | CPU % per 1 000 | join p99 ms | glass-to-ear p99 ms | lost |")
print("|---|---|---|---|---|---|---|---|")
ratios, origin_ratios, totals = [], [], []
for r in range(1, rounds + 1):
    lone = load(f"r{r}-lone")
    edges = [load(f"r{r}-big.a"), load(f"r{r}-big.b")]
    rows = [("lone node", lone)] + [(f"edge {k}", e) for k, e in zip("AB", edges)]
    for label, rep in rows:
        if rep is None:
            print(f"| {r} | | {label} | crowd failed | | | | |")
            continue
        print(
            f"| {r} | {'lone' if label == 'lone node' else 'cluster'} | {label} | {rep['peak_connected']} "
            f"| {rep['server_cpu_pct_per_1000']} | {rep['join_ms']['p99']} | {rep['latency_ms']['p99']} "
            f"| {rep['frames_lost']} |"
        )
    if lone and all(edges) and lone["server_cpu_pct_per_1000"]:
        base = lone["server_cpu_pct_per_1000"]
        ratios.append(max(e["server_cpu_pct_per_1000"] / base for e in edges))
        totals.append(sum(e["peak_connected"] for e in edges))
    small, big = origin_cpu(f"r{r}-small"), origin_cpu(f"r{r}-big")
    if small and big:
        origin_ratios.append(big / small)
    print(f"| {r} | origin | CPU % of one core | 2 x small: {small} | 2 x big: {big} | | | |")


def med(v):
    if not v:
        return "n/a"
    return f"{statistics.median(v):.3f} ({min(v):.3f}-{max(v):.3f})"


print()
print(f"- listeners connected over both edges (per round): {totals}")
print(f"- worst edge's CPU per 1 000 / lone node's, median (spread): {med(ratios)}")
print(f"- origin CPU with 2 x big / with 2 x small, median (spread): {med(origin_ratios)}")
