//! Overwriting stores (issue 13 §1): random stores that overlap 0-3 existing
//! entries (trim, split, swallow), MapleTree::store (one commit each) vs
//! rangemap's `insert` (which also overwrites), at N = 4Ki and 256Ki.
//!
//! Each store puts a fresh value (a counter, so rangemap never coalesces
//! equal neighbours and both hold the same entries) on `start..start + len`,
//! with `start` a random page in or just before a random entry of the initial
//! layout and `len` 1-24 pages. Both contenders run the same sequence from
//! the same initial layout. Time is the thread's CPU time per store
//! (`common::ThreadTime`; MapleTree's `u64` values are recycled inline by
//! later commits, and that is counted).

#[path = "common/mod.rs"]
mod common;

use common::*;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::time::Duration;

fn store(c: &mut Criterion<ThreadTime>) {
    for n in [4usize << 10, 256 << 10] {
        let ranges = layout(n, 42);
        let mut g = c.benchmark_group(format!("store/{}", n_label(n)));
        g.throughput(Throughput::Elements(1))
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_millis(1500))
            .sample_size(20);

        g.bench_function("maple", |b| {
            let tree = maple(&ranges);
            let mut ops = Stores::new(&ranges);
            b.iter(|| {
                let (r, v) = ops.next();
                tree.store(r, v).unwrap();
            });
            tree.validate().unwrap();
        });
        // 16 stores per commit (time per store): the commit's own share.
        g.bench_function("maple_txn16", |b| {
            let tree = maple(&ranges);
            let mut ops = Stores::new(&ranges);
            b.iter_custom(|iters| {
                let t0 = thread_cpu_now();
                let mut left = iters;
                while left > 0 {
                    let mut w = tree.write();
                    for _ in 0..left.min(16) {
                        let (r, v) = ops.next();
                        w.store(r, v).unwrap();
                    }
                    w.commit();
                    left -= left.min(16);
                }
                thread_cpu_now() - t0
            });
            tree.validate().unwrap();
        });
        g.bench_function("rangemap", |b| {
            let mut m = rangemap(&ranges);
            let mut ops = Stores::new(&ranges);
            b.iter(|| {
                let (r, v) = ops.next();
                m.insert(r, v);
            });
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = cpu_criterion();
    targets = store
}
criterion_main!(benches);
