#!/usr/bin/env python3
"""Prints criterion medians (per element) as markdown tables.

Reads target/criterion/*/*/new/{benchmark,estimates}.json. Usage:
    scripts/bench_table.py [PREFIX ...]     # e.g. lookup gap write concurrent
Each group becomes one table: median time per element, and the ratio of
every row to the group's first row.
"""
import json
import pathlib
import sys

root = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"
prefixes = sys.argv[1:] or [""]
groups = {}
for b in sorted(root.glob("*/*/new/benchmark.json")):
    meta = json.loads(b.read_text())
    if not any(meta["group_id"].startswith(p) for p in prefixes):
        continue
    est = json.loads((b.parent / "estimates.json").read_text())
    elems = 1
    thr = meta.get("throughput") or {}
    if "Elements" in thr:
        elems = thr["Elements"]
    med = est["median"]["point_estimate"] / elems
    groups.setdefault(meta["group_id"], {})[meta["function_id"]] = med


def fmt(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.1f} ns"


def natural(g):
    # order 64 < 4Ki < 256Ki < 1Mi inside names
    import re
    def key(part):
        m = re.fullmatch(r"(\d+)(Ki|Mi|KiB|MiB|GiB)?", part)
        if not m:
            return (1, part)
        mult = {"Ki": 1 << 10, "Mi": 1 << 20, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}.get(m.group(2), 1)
        return (0, int(m.group(1)) * mult)
    return [key(p) for p in re.split(r"[/@]", g)]


for g in sorted(groups, key=natural):
    fns = groups[g]
    first = next(iter(fns))
    order = list(fns)
    print(f"\n**{g}**\n")
    print("| contender | median / op | ratio to " + order[0] + " |")
    print("|---|---:|---:|")
    base = fns[order[0]]
    for f in order:
        print(f"| {f} | {fmt(fns[f])} | {fns[f] / base:.2f} |")
