//! Instruction-count probe for issue 12's read targets, meant to run under
//! callgrind where wall time is too noisy (`docs/BENCHMARKS.md`):
//!
//! ```text
//! cargo build --release --example layout_probe
//! valgrind --tool=callgrind --callgrind-out-file=cg.out \
//!     target/release/examples/layout_probe [N] [churn|random] [vma|guard]
//! callgrind_annotate --inclusive=yes cg.out | grep probe_
//! ```
//!
//! Each `probe_*` function runs one kind of query over the same inputs
//! (the benches' VMA shape, random-order inserts, optionally churned), so
//! the ratio of two functions' inclusive instruction counts is the ratio of
//! instructions per query. It also prints the tree's height.
//!
//! With `PROBE_TIME=R` in the environment it also times each probe, R
//! rounds, and prints the fastest round's thread CPU time per query (for
//! alternated A/B runs of two builds; a loaded machine still biases them).
//! `PROBE_WINDOWS=W` repeats the first W gap-search windows (the benches
//! rotate over 256, whose paths stay in the caches; the default 4096 do not).
//! `PROBE_ONLY=gap_rev_4k` (a row's name) times only that row, for a
//! sampling profiler (`perf record -e cpu-clock`).

#[path = "../benches/common/mod.rs"]
mod common;

use common::*;
use maple_rcu::MapleTree;
use std::collections::BTreeMap;
use std::hint::black_box;

const QUERIES: usize = 1 << 16;

#[inline(never)]
fn probe_maple_get(t: &MapleTree<u64>, addrs: &[u64]) -> u64 {
    let g = t.pin();
    addrs
        .iter()
        .fold(0, |acc, &a| fold(acc, g.get(a).map(|(r, v)| (r.start, *v))))
}

#[inline(never)]
fn probe_btree_get(m: &BTreeMap<u64, (u64, u64)>, addrs: &[u64]) -> u64 {
    addrs.iter().fold(0, |acc, &a| fold(acc, btree_get(m, a)))
}

#[inline(never)]
fn probe_vec_get(v: &[(u64, u64, u64)], addrs: &[u64]) -> u64 {
    addrs.iter().fold(0, |acc, &a| fold(acc, vec_get(v, a)))
}

/// Forward 4 KiB searches at `align` from every window start in `los`.
#[inline(never)]
fn probe_gap(t: &MapleTree<u64>, los: &[u64], align: u64) -> u64 {
    let g = t.pin();
    los.iter()
        .map(|&lo| g.try_find_gap(PAGE, align, lo..u64::MAX).ok().unwrap_or(0))
        .fold(0, u64::wrapping_add)
}

/// Reverse 4 KiB searches at `align` below every window end in `his`.
#[inline(never)]
fn probe_gap_rev(t: &MapleTree<u64>, his: &[u64], align: u64) -> u64 {
    let g = t.pin();
    his.iter()
        .map(|&hi| g.try_find_gap_rev(PAGE, align, 0..hi).ok().unwrap_or(0))
        .fold(0, u64::wrapping_add)
}

#[inline(never)]
fn probe_gap_rev_4k(t: &MapleTree<u64>, his: &[u64]) -> u64 {
    probe_gap_rev(t, his, PAGE)
}

#[inline(never)]
fn probe_gap_rev_2m(t: &MapleTree<u64>, his: &[u64]) -> u64 {
    probe_gap_rev(t, his, 2 * MIB)
}

#[inline(never)]
fn probe_gap_rev_1g(t: &MapleTree<u64>, his: &[u64]) -> u64 {
    probe_gap_rev(t, his, GIB)
}

#[inline(never)]
fn probe_gap_4k(t: &MapleTree<u64>, los: &[u64]) -> u64 {
    probe_gap(t, los, PAGE)
}

#[inline(never)]
fn probe_gap_2m(t: &MapleTree<u64>, los: &[u64]) -> u64 {
    probe_gap(t, los, 2 * MIB)
}

#[inline(never)]
fn probe_gap_1g(t: &MapleTree<u64>, los: &[u64]) -> u64 {
    probe_gap(t, los, GIB)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(256 << 10, |s| s.parse().expect("N"));
    let churn = args.next().is_some_and(|s| s == "churn");
    let guard = args.next().is_some_and(|s| s == "guard");
    let ranges = if guard {
        guard_layout(n, 13)
    } else {
        vma_layout(n, 12)
    };
    let addrs = vma_lookup_addrs(&ranges, QUERIES, 7);
    let tree = maple_commits(&ranges, churn);
    let bt = btree_churned(&ranges, churn);
    let vec = sorted_vec(&ranges);
    let mut rng = Rng::new(99);
    let field_end = ranges.last().unwrap().1;
    let los: Vec<u64> = (0..QUERIES / 16)
        .map(|_| rng.range(BASE, field_end) & !(PAGE - 1))
        .collect();
    let his: Vec<u64> = (0..QUERIES / 16)
        .map(|_| rng.range(BASE, field_end) & !(PAGE - 1))
        .collect();
    // `PROBE_WINDOWS=W`: the first W windows, repeated (the benches rotate
    // over 256, whose paths stay cached).
    let w = std::env::var("PROBE_WINDOWS")
        .ok()
        .and_then(|w| w.parse().ok());
    let (los, his) = match w {
        Some(w) => (
            los.iter()
                .take(w)
                .cycle()
                .take(los.len())
                .copied()
                .collect(),
            his.iter()
                .take(w)
                .cycle()
                .take(his.len())
                .copied()
                .collect(),
        ),
        None => (los, his),
    };
    let sums = [
        probe_maple_get(&tree, &addrs),
        probe_btree_get(&bt, &addrs),
        probe_vec_get(&vec, &addrs),
        probe_gap_4k(&tree, &los),
        probe_gap_2m(&tree, &los),
        probe_gap_1g(&tree, &los),
        probe_gap_rev_4k(&tree, &his),
        probe_gap_rev_2m(&tree, &his),
        probe_gap_rev_1g(&tree, &his),
    ];
    assert_eq!(sums[0], sums[1]);
    assert_eq!(sums[1], sums[2]);
    black_box(sums);
    if let Some(rounds) = std::env::var("PROBE_TIME")
        .ok()
        .and_then(|r| r.parse().ok())
    {
        // `PROBE_ONLY=name` times only that probe (for a sampling profiler).
        let only = std::env::var("PROBE_ONLY").ok();
        let per = |name: &str, f: &dyn Fn() -> u64, queries: usize| -> f64 {
            if only.as_deref().is_some_and(|o| o != name) {
                return f64::NAN;
            }
            (0..rounds)
                .map(|_| {
                    let t0 = thread_cpu_now();
                    black_box(f());
                    (thread_cpu_now() - t0).as_nanos() as f64 / queries as f64
                })
                .fold(f64::INFINITY, f64::min)
        };
        let g = los.len();
        let rows: [(&str, f64); 8] = [
            (
                "maple_get",
                per("maple_get", &|| probe_maple_get(&tree, &addrs), QUERIES),
            ),
            (
                "btree_get",
                per("btree_get", &|| probe_btree_get(&bt, &addrs), QUERIES),
            ),
            (
                "gap_fwd_4k",
                per("gap_fwd_4k", &|| probe_gap_4k(&tree, &los), g),
            ),
            (
                "gap_fwd_2m",
                per("gap_fwd_2m", &|| probe_gap_2m(&tree, &los), g),
            ),
            (
                "gap_fwd_1g",
                per("gap_fwd_1g", &|| probe_gap_1g(&tree, &los), g),
            ),
            (
                "gap_rev_4k",
                per("gap_rev_4k", &|| probe_gap_rev_4k(&tree, &his), g),
            ),
            (
                "gap_rev_2m",
                per("gap_rev_2m", &|| probe_gap_rev_2m(&tree, &his), g),
            ),
            (
                "gap_rev_1g",
                per("gap_rev_1g", &|| probe_gap_rev_1g(&tree, &his), g),
            ),
        ];
        for (name, ns) in rows {
            println!("{name:>12} {ns:8.1} ns");
        }
    }
    println!(
        "N = {n}, churn = {churn}, guard = {guard}, height {}, {QUERIES} lookups, {} gap searches each",
        tree.height(),
        los.len()
    );
}
