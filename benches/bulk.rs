//! Whole-tree operations (src/tree/bulk.rs) against what they replace, at
//! N = 1Ki, 64Ki and 1Mi VMA-like ranges (`common::layout`), `u64` values:
//!
//! * `clone/*`: the structural copy (`Clone`, Linux `__mt_dup`) of a tree
//!   built by random-order inserts, against copying it by N inserts in
//!   address order in one transaction (what a clone cost before), and
//!   `BTreeMap::clone` for scale.
//! * `build/*`: `FromIterator` from sorted input (the bulk build) against
//!   N inserts in address order in one transaction (the old `FromIterator`)
//!   and `BTreeMap::from_iter` (which also bulk-builds sorted input).
//! * `clear/*`: the O(n) `clear` against one removal per entry.
//!
//! Time is the thread's CPU time (`common::ThreadTime`); the result's drop is
//! outside the measurement (`iter_with_large_drop`).

#[path = "common/mod.rs"]
mod common;

use common::*;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use maple_rcu::MapleTree;
use std::collections::BTreeMap;
use std::time::Duration;

const SIZES: [usize; 3] = [1 << 10, 1 << 16, 1 << 20];

fn entries(ranges: &[(u64, u64)]) -> Vec<(std::ops::Range<u64>, u64)> {
    ranges
        .iter()
        .enumerate()
        .map(|(i, &(s, e))| (s..e, value(i)))
        .collect()
}

/// N inserts in address order, one transaction.
fn inserts(items: &[(std::ops::Range<u64>, u64)]) -> MapleTree<u64> {
    let t = MapleTree::new();
    let mut w = t.write();
    for (r, v) in items {
        w.insert(r.clone(), *v).unwrap();
    }
    w.commit();
    t
}

fn bench_bulk(c: &mut Criterion<ThreadTime>) {
    for n in SIZES {
        let ranges = layout(n, 1);
        let items = entries(&ranges);
        let src = maple(&ranges);
        let bt = btree(&ranges);
        let label = n_label(n);
        let mut g = c.benchmark_group(format!("clone/{label}"));
        g.throughput(Throughput::Elements(n as u64));
        g.sample_size(10).warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(if n >= 1 << 20 { 8 } else { 2 }));
        g.bench_function("maple_clone", |b| b.iter_with_large_drop(|| src.clone()));
        g.bench_function("maple_n_inserts", |b| {
            b.iter_with_large_drop(|| {
                let t = MapleTree::new();
                let mut w = t.write();
                for (r, v) in src.pin().iter() {
                    w.insert(r, *v).unwrap();
                }
                w.commit();
                t
            })
        });
        g.bench_function("btreemap_clone", |b| b.iter_with_large_drop(|| bt.clone()));
        g.finish();

        let mut g = c.benchmark_group(format!("build/{label}"));
        g.throughput(Throughput::Elements(n as u64));
        g.sample_size(10).warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(if n >= 1 << 20 { 8 } else { 2 }));
        g.bench_function("maple_from_sorted_iter", |b| {
            b.iter_batched(
                || items.clone(),
                |v| v.into_iter().collect::<MapleTree<u64>>(),
                BatchSize::PerIteration,
            )
        });
        g.bench_function("maple_n_inserts", |b| {
            b.iter_with_large_drop(|| inserts(&items))
        });
        g.bench_function("btreemap_from_sorted_iter", |b| {
            b.iter_batched(
                || items.clone(),
                |v| {
                    v.into_iter()
                        .map(|(r, x)| (r.start, (r.end, x)))
                        .collect::<BTreeMap<_, _>>()
                },
                BatchSize::PerIteration,
            )
        });
        g.finish();

        let mut g = c.benchmark_group(format!("clear/{label}"));
        g.throughput(Throughput::Elements(n as u64));
        g.sample_size(10).warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(if n >= 1 << 20 { 8 } else { 2 }));
        g.bench_function("maple_clear", |b| {
            b.iter_batched(
                || src.clone(),
                |t| {
                    t.clear();
                    t
                },
                BatchSize::PerIteration,
            )
        });
        g.bench_function("maple_remove_each", |b| {
            b.iter_batched(
                || src.clone(),
                |t| {
                    let mut w = t.write();
                    while let Some((r, _)) = w.first() {
                        w.remove(r.start);
                    }
                    w.commit();
                    t
                },
                BatchSize::PerIteration,
            )
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = cpu_criterion();
    targets = bench_bulk
}
criterion_main!(benches);
