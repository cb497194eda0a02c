#!/usr/bin/env python3
"""Prints the tables of docs/BENCHMARKS.md from one `cargo bench` run.

Reads criterion's medians from target/criterion (per element, see
bench_table.py) and the concurrent bench's extra lines (reader CPU time,
writer rate) from the saved `cargo bench` output given as the first argument.
    cargo bench 2>&1 | tee bench.log; scripts/bench_doc.py bench.log
"""
import json
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"
med = {}
# dep/* rows live one directory deeper
for b in [*root.glob("*/*/new/benchmark.json"), *root.glob("*/*/*/new/benchmark.json")]:
    meta = json.loads(b.read_text())
    est = json.loads((b.parent / "estimates.json").read_text())
    thr = meta.get("throughput") or {}
    med[(meta["group_id"], meta["function_id"])] = est["median"]["point_estimate"] / thr.get("Elements", 1)


def ns(x):
    if x is None:
        return "–"
    if x >= 1e6:
        return f"{x / 1e6:.2f} ms"
    if x >= 1e4:
        return f"{x / 1e3:.1f} µs"
    if x >= 1e3:
        return f"{x / 1e3:.2f} µs"
    return f"{x:.1f} ns"


def r(a, b):
    return f"{a / b:.2f}×" if a and b else "–"


NS = ["64", "4Ki", "256Ki", "1Mi"]


def lookup_table(title, rows, ratios, bases):
    print(title + "\n")
    print("| contender | " + " | ".join(f"N = {n}" for n in NS) + " |")
    print("|---|" + "---:|" * len(NS))
    for f in rows:
        print(f"| {f} | " + " | ".join(ns(med.get((f"lookup/{n}", f))) for n in NS) + " |")
    for f in ratios:
        for base in bases:
            print(f"| *{f} / {base}* | " + " | ".join(
                r(med.get((f"lookup/{n}", f)), med.get((f"lookup/{n}", base))) for n in NS) + " |")


lookup_table("### Lookup: median time per lookup (independent lookups, batch of 1024)",
             ["maple_guard", "maple_guard_noval", "maple_pin", "btreemap", "sorted_vec",
              "rwlock_btreemap", "skipmap", "rangemap"],
             ["maple_guard", "maple_pin"], ["btreemap", "sorted_vec"])
lookup_table("\n### Lookup latency: each address depends on the previous result",
             ["dep/maple_guard", "dep/maple_pin", "dep/btreemap", "dep/sorted_vec"],
             ["dep/maple_guard", "dep/maple_pin"], ["dep/btreemap", "dep/sorted_vec"])

print("\n### Gap search: median time per query\n")
print("| N | size@align | maple_fwd | maple_rev | btree_scan_fwd | btree_scan_rev | rangemap_gaps_fwd | scan_fwd / maple_fwd | maple_fwd / lookup |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for n in ["4Ki", "256Ki", "1Mi"]:
    look = med.get((f"lookup/{n}", "maple_guard"))
    for sa in ["4KiB@4KiB", "4KiB@2MiB", "2MiB@4KiB", "2MiB@2MiB", "1GiB@4KiB", "1GiB@2MiB"]:
        g = f"gap/{n}/{sa}"
        v = {f: med.get((g, f)) for f in ["maple_fwd", "maple_rev", "btree_scan_fwd", "btree_scan_rev", "rangemap_gaps_fwd"]}
        sp = v["btree_scan_fwd"] / v["maple_fwd"] if v["maple_fwd"] and v["btree_scan_fwd"] else None
        print(f"| {n} | {sa} | " + " | ".join(ns(v[f]) for f in v) +
              f" | {sp:.1f}× | {r(v['maple_fwd'], look)} |" if sp else " | – | – |")

print("\n### Writes: median time per operation (churn: remove a random entry / re-insert one)\n")
print("| N | k ops per txn | maple | btreemap | rwlock_btreemap | maple / btreemap |")
print("|---|---:|---:|---:|---:|---:|")
for n in ["4Ki", "256Ki"]:
    for k in [1, 8, 64]:
        g = f"write/{n}/k{k}"
        m, b, w = (med.get((g, f)) for f in ["maple", "btreemap", "rwlock_btreemap"])
        print(f"| {n} | {k} | {ns(m)} | {ns(b)} | {ns(w)} | {r(m, b)} |")

extra = {}
if len(sys.argv) > 1:
    case = None
    for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
        m = re.match(r"Benchmarking concurrent/([^/]+)/", line)
        if m:
            case = m.group(1)
        m = re.match(r"\s+(\S+): reader CPU time per lookup ([\d.]+) ns", line)
        if m and case:
            extra[(case, m.group(1), "cpu")] = float(m.group(2))
        m = re.match(r"\s+(\S+): writer achieved (\d+) ops/s", line)
        if m and case:
            extra[(case, m.group(1), "wops")] = int(m.group(2))
print("\n### Concurrent readers, N = 256Ki: median time per lookup\n")
print("| case | contender | wall / lookup (criterion) | reader CPU / lookup | writer ops/s |")
print("|---|---|---:|---:|---:|")
for case in ["1reader", "1reader+writer", "2readers"]:
    for f in ["maple_pin", "rwlock_btreemap", "arcswap_cow_btreemap"]:
        w = med.get((f"concurrent/{case}", f))
        c = extra.get((case, f, "cpu"))
        o = extra.get((case, f, "wops"))
        print(f"| {case} | {f} | {ns(w)} | {ns(c) if c else '–'} | {o if o is not None else '–'} |")
print("\n| contender | with writer / without (throughput, wall) | 2 readers / 1 reader (throughput, wall) |")
print("|---|---:|---:|")
for f in ["maple_pin", "rwlock_btreemap", "arcswap_cow_btreemap"]:
    one = med.get(("concurrent/1reader", f))
    wr = med.get(("concurrent/1reader+writer", f))
    two = med.get(("concurrent/2readers", f))
    print(f"| {f} | {one / wr:.2f} | {one / two:.2f} |")
