//! Instruction-count probe for issue 13's store target (`benches/store.rs`'s
//! workload), meant to run under callgrind where wall time is too noisy:
//!
//! ```text
//! cargo build --release --example store_cost
//! valgrind --tool=callgrind --toggle-collect='*measure_*' \
//!     --callgrind-out-file=cg.out target/release/examples/store_cost [N] [ops]
//! callgrind_annotate --inclusive=yes cg.out | grep measure_
//! ```
//!
//! Both contenders hold the benches' VMA layout of `N` ranges (default
//! 64Ki) and run the same `ops` (default 20,000) overwriting stores
//! (`common::Stores`: 0-3 entries trimmed, split or swallowed each):
//! `MapleTree::store` (one commit each, on a manual-reclaim tree so no
//! reclaimer thread runs; `u64` values and node memory are recycled inline
//! by later commits, and that is counted), the same in transactions of 16
//! stores (`ops` rounded down to a multiple of 16), and rangemap's `insert`;
//! then 200 wide erases of 2 MiB in one commit (`measure_erase_wide`, which
//! prints how many entries they touched).

#[path = "../benches/common/mod.rs"]
mod common;

use common::*;
use maple_rcu::MapleTree;
use rangemap::RangeMap;
use std::hint::black_box;

#[inline(never)]
fn measure_store_maple(t: &MapleTree<u64>, ranges: &[(u64, u64)], ops: usize) {
    let mut s = Stores::new(ranges);
    for _ in 0..ops {
        let (r, v) = s.next();
        t.store(r, v).unwrap();
    }
}

/// 16 stores per commit: the commit's share of the cost amortised.
#[inline(never)]
fn measure_store_maple_txn16(t: &MapleTree<u64>, ranges: &[(u64, u64)], ops: usize) {
    let mut s = Stores::new(ranges);
    for _ in 0..ops / 16 {
        let mut w = t.write();
        for _ in 0..16 {
            let (r, v) = s.next();
            w.store(r, v).unwrap();
        }
        w.commit();
    }
}

/// 200 wide erases (2 MiB windows, about 40 entries each) in one commit:
/// the multi-round path (DESIGN §2.8). Returns the entries touched.
#[inline(never)]
fn measure_erase_wide(t: &MapleTree<u64>, ranges: &[(u64, u64)]) -> usize {
    let mut rng = Rng::new(7);
    let mut w = t.write();
    let mut n = 0;
    for _ in 0..200 {
        let (s, _) = ranges[rng.index(ranges.len())];
        n += w.erase(s..s + 512 * PAGE).unwrap();
    }
    w.commit();
    n
}

#[inline(never)]
fn measure_store_rangemap(m: &mut RangeMap<u64, u64>, ranges: &[(u64, u64)], ops: usize) {
    let mut s = Stores::new(ranges);
    for _ in 0..ops {
        let (r, v) = s.next();
        m.insert(r, v);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(64 << 10, |a| a.parse().expect("N"));
    let ops: usize = args.next().map_or(20_000, |a| a.parse().expect("ops"));
    let ranges = layout(n, 42);
    let build = || fill(MapleTree::with_manual_reclaim(), &ranges);
    let (t, t16) = (build(), build());
    let mut m = rangemap(&ranges);
    measure_store_maple(&t, &ranges, ops);
    measure_store_maple_txn16(&t16, &ranges, ops);
    measure_store_rangemap(&mut m, &ranges, ops);
    t.validate().unwrap();
    let wide = fill(MapleTree::with_manual_reclaim(), &ranges);
    let erased = measure_erase_wide(&wide, &ranges);
    wide.validate().unwrap();
    println!("wide erases touched {erased} entries");
    let same = t
        .pin()
        .iter()
        .zip(m.iter())
        .take(1000)
        .all(|((a, v), (b, w))| a == *b && v == w);
    println!(
        "n={n} ops={ops} entries maple={} rangemap={} same-prefix={same}",
        t.len(),
        m.len()
    );
    black_box((&t, &m));
}
