//! Instruction-count probe for issue 12's commit target, meant to run under
//! callgrind where wall time is too noisy (`docs/BENCHMARKS.md`):
//!
//! ```text
//! cargo build --release --example commit_probe
//! valgrind --tool=callgrind --callgrind-out-file=cg.out \
//!     target/release/examples/commit_probe [N] [ops]
//! callgrind_annotate --inclusive=yes cg.out | grep churn_
//! ```
//!
//! Both contenders hold the benches' VMA layout of `N` ranges (default
//! 64Ki), built in the benches' random order, and then run the same `ops`
//! rounds (default 20,000) of "remove a random entry, re-insert it": for the
//! `MapleTree` that is two single-operation commits per round (the tree's
//! grace periods and node recycling run inline in those commits, so they are
//! counted), for the `BTreeMap` a `remove` and an `insert`. The ratio of the
//! two functions' inclusive instruction counts is the instruction ratio per
//! operation.

#[path = "../benches/common/mod.rs"]
mod common;

use common::*;
use maple_rcu::MapleTree;
use std::collections::BTreeMap;
use std::hint::black_box;

#[inline(never)]
fn churn_maple(t: &MapleTree<u64>, ranges: &[(u64, u64)], ops: usize) {
    let mut rng = Rng::new(5);
    for _ in 0..ops {
        let i = rng.index(ranges.len());
        let (s, e) = ranges[i];
        t.remove(s).expect("present");
        t.insert(s..e, value(i)).expect("free");
    }
}

#[inline(never)]
fn churn_btree(m: &mut BTreeMap<u64, (u64, u64)>, ranges: &[(u64, u64)], ops: usize) {
    let mut rng = Rng::new(5);
    for _ in 0..ops {
        let i = rng.index(ranges.len());
        let (s, e) = ranges[i];
        m.remove(&s).expect("present");
        m.insert(s, (e, value(i)));
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(64 << 10, |s| s.parse().expect("N"));
    let ops: usize = args.next().map_or(20_000, |s| s.parse().expect("ops"));
    let ranges = layout(n, 42);
    let t = maple(&ranges);
    let mut m = btree(&ranges);
    churn_maple(&t, &ranges, ops);
    churn_btree(&mut m, &ranges, ops);
    black_box((t.len(), m.len()));
    println!("N = {n}, {ops} rounds, height {}", t.height());
}
