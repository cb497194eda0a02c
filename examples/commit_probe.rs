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
//!
//! A third argument `fifo` runs `benches/write.rs`'s k = 1 sequence instead
//! (`churn_maple_fifo` / `churn_btree_fifo`): remove a random present entry,
//! then re-insert the one removed 64 removals earlier, so the re-insert
//! lands in another leaf than the removal (the same-entry rounds above make
//! the re-insert split the gap its removal merged, the worst case for the
//! incremental summaries).

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

/// `benches/write.rs`'s churn: a FIFO of 64 removed entries between a
/// removal and the re-insert of the same entry.
struct Fifo {
    present: Vec<bool>,
    removed: std::collections::VecDeque<usize>,
    rng: Rng,
}

impl Fifo {
    /// The churn state and the entries to remove before it starts.
    fn new(n: usize) -> (Self, Vec<usize>) {
        let mut f = Self {
            present: vec![true; n],
            removed: Default::default(),
            rng: Rng::new(5),
        };
        while f.removed.len() < 64 {
            let i = f.pick();
            f.present[i] = false;
            f.removed.push_back(i);
        }
        let pre = f.removed.iter().copied().collect();
        (f, pre)
    }
    fn pick(&mut self) -> usize {
        loop {
            let i = self.rng.index(self.present.len());
            if self.present[i] {
                return i;
            }
        }
    }
    /// (entry to remove, entry to re-insert)
    fn next(&mut self) -> (usize, usize) {
        let r = self.pick();
        self.present[r] = false;
        self.removed.push_back(r);
        let i = self.removed.pop_front().expect("64 removed");
        self.present[i] = true;
        (r, i)
    }
}

#[inline(never)]
fn churn_maple_fifo(t: &MapleTree<u64>, ranges: &[(u64, u64)], ops: usize) {
    let (mut f, pre) = Fifo::new(ranges.len());
    for i in pre {
        t.remove(ranges[i].0).expect("present");
    }
    for _ in 0..ops {
        let (r, i) = f.next();
        t.remove(ranges[r].0).expect("present");
        let (s, e) = ranges[i];
        t.insert(s..e, value(i)).expect("free");
    }
}

#[inline(never)]
fn churn_btree_fifo(m: &mut BTreeMap<u64, (u64, u64)>, ranges: &[(u64, u64)], ops: usize) {
    let (mut f, pre) = Fifo::new(ranges.len());
    for i in pre {
        m.remove(&ranges[i].0).expect("present");
    }
    for _ in 0..ops {
        let (r, i) = f.next();
        m.remove(&ranges[r].0).expect("present");
        let (s, e) = ranges[i];
        m.insert(s, (e, value(i)));
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(64 << 10, |s| s.parse().expect("N"));
    let ops: usize = args.next().map_or(20_000, |s| s.parse().expect("ops"));
    let fifo = args.next().is_some_and(|s| s == "fifo");
    let ranges = layout(n, 42);
    let t = maple(&ranges);
    let mut m = btree(&ranges);
    if fifo {
        churn_maple_fifo(&t, &ranges, ops);
        churn_btree_fifo(&mut m, &ranges, ops);
    } else {
        churn_maple(&t, &ranges, ops);
        churn_btree(&mut m, &ranges, ops);
    }
    black_box((t.len(), m.len()));
    println!("N = {n}, {ops} rounds, height {}", t.height());
}
