//! Instruction-count probe for issue 12's read targets, meant to run under
//! callgrind where wall time is too noisy (`docs/BENCHMARKS.md`):
//!
//! ```text
//! cargo build --release --example layout_probe
//! valgrind --tool=callgrind --callgrind-out-file=cg.out \
//!     target/release/examples/layout_probe [N] [churn]
//! callgrind_annotate --inclusive=yes cg.out | grep probe_
//! ```
//!
//! Each `probe_*` function runs one kind of query over the same inputs
//! (the benches' VMA shape, random-order inserts, optionally churned), so
//! the ratio of two functions' inclusive instruction counts is the ratio of
//! instructions per query. It also prints the tree's height.

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
    let ranges = vma_layout(n, 12);
    let addrs = vma_lookup_addrs(&ranges, QUERIES, 7);
    let tree = maple_commits(&ranges, churn);
    let bt = btree_churned(&ranges, churn);
    let vec = sorted_vec(&ranges);
    let mut rng = Rng::new(99);
    let field_end = ranges.last().unwrap().1;
    let los: Vec<u64> = (0..QUERIES / 16)
        .map(|_| rng.range(BASE, field_end) & !(PAGE - 1))
        .collect();
    let sums = [
        probe_maple_get(&tree, &addrs),
        probe_btree_get(&bt, &addrs),
        probe_vec_get(&vec, &addrs),
        probe_gap_4k(&tree, &los),
        probe_gap_2m(&tree, &los),
        probe_gap_1g(&tree, &los),
    ];
    assert_eq!(sums[0], sums[1]);
    assert_eq!(sums[1], sums[2]);
    black_box(sums);
    println!(
        "N = {n}, churn = {churn}, height {}, {QUERIES} lookups, {} gap searches each",
        tree.height(),
        los.len()
    );
}
