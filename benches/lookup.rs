//! Point lookup of random addresses (half hits, half misses) at N = 64, 4Ki,
//! 256Ki, 1Mi VMA-like ranges: MapleTree (guard held across a batch, and one
//! pin per lookup) against the structures a user would otherwise pick.
//!
//! One criterion group per N; every iteration looks up a batch of 1024
//! precomputed addresses taken in turn from a pool of 64Ki, and the reported
//! time is per lookup (`Throughput::Elements(1024)`), measured as the
//! thread's CPU time (see `common::ThreadTime`). Rows `dep/*` chain each
//! lookup's address to the previous result, so they measure the latency of
//! one lookup instead of the throughput of independent (overlapping) ones.

#[path = "common/mod.rs"]
mod common;

use common::*;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use maple_rcu::MapleTree;
use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::Duration;

const BATCH: usize = 1024;
const POOL: usize = 64 * 1024;

/// Runs `f` over consecutive batches of `addrs`.
fn batches<'a>(addrs: &'a [u64]) -> impl FnMut() -> &'a [u64] {
    let mut k = 0;
    move || {
        let b = &addrs[k..k + BATCH];
        k = (k + BATCH) % addrs.len();
        b
    }
}

/// Looks up every address of `batch` with `f`, each address depending on the
/// previous result (through `acc & mask`, with `mask` an opaque zero), so
/// lookups cannot overlap in the CPU: the latency of one isolated lookup,
/// as in a fault handler, rather than the throughput of independent ones.
#[inline(always)]
fn dependent(batch: &[u64], mut f: impl FnMut(u64) -> Option<(u64, u64)>) -> u64 {
    let mask = std::hint::black_box(0u64);
    batch
        .iter()
        .fold(0, |acc, &a| fold(acc, f(a.wrapping_add(acc & mask))))
}

/// The rows every lookup group has: MapleTree with one guard per batch,
/// BTreeMap (`range(..=a).next_back()`) and binary search over a sorted Vec.
fn rows(
    g: &mut BenchmarkGroup<'_, ThreadTime>,
    addrs: &[u64],
    tree: &MapleTree<u64>,
    bt: &BTreeMap<u64, (u64, u64)>,
    vec: &[(u64, u64, u64)],
) {
    g.bench_function("maple_guard", |b| {
        let mut next = batches(addrs);
        b.iter(|| {
            let batch = next();
            let r = tree.pin();
            batch.iter().fold(0, |acc, &a| {
                fold(acc, r.get(a).map(|(rg, v)| (rg.start, *v)))
            })
        })
    });
    g.bench_function("btreemap", |b| {
        let mut next = batches(addrs);
        b.iter(|| next().iter().fold(0, |acc, &a| fold(acc, btree_get(bt, a))))
    });
    g.bench_function("sorted_vec", |b| {
        let mut next = batches(addrs);
        b.iter(|| next().iter().fold(0, |acc, &a| fold(acc, vec_get(vec, a))))
    });
}

fn lookup(c: &mut Criterion<ThreadTime>) {
    for n in [64usize, 4 << 10, 256 << 10, 1 << 20] {
        let ranges = layout(n, 42);
        let addrs = lookup_addrs(&ranges, POOL, 7);
        let tree = maple(&ranges);
        let bt = btree(&ranges);
        let vec = sorted_vec(&ranges);
        let rw = RwLock::new(btree(&ranges));
        let skip = skipmap(&ranges);
        let rmap = rangemap(&ranges);

        // Every contender must agree on every answer.
        {
            let g = tree.pin();
            for &a in &addrs {
                let want = btree_get(&bt, a);
                assert_eq!(g.get(a).map(|(r, v)| (r.start, *v)), want);
                assert_eq!(vec_get(&vec, a), want);
                assert_eq!(skip_get(&skip, a), want);
                assert_eq!(rangemap_get(&rmap, a), want);
            }
        }

        let mut g = c.benchmark_group(format!("lookup/{}", n_label(n)));
        g.throughput(Throughput::Elements(BATCH as u64))
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .sample_size(30);

        rows(&mut g, &addrs, &tree, &bt, &vec);
        // The same without reading the value: MapleTree boxes values (stable
        // addresses), so a hit costs one more dependent load than in the
        // maps that store `V` inline; this row shows the index alone.
        g.bench_function("maple_guard_noval", |b| {
            let mut next = batches(&addrs);
            b.iter(|| {
                let batch = next();
                let r = tree.pin();
                batch.iter().fold(0, |acc, &a| {
                    fold(acc, r.get(a).map(|(rg, _)| (rg.start, rg.end)))
                })
            })
        });
        g.bench_function("maple_pin", |b| {
            let mut next = batches(&addrs);
            b.iter(|| {
                next().iter().fold(0, |acc, &a| {
                    fold(acc, tree.pin().get(a).map(|(rg, v)| (rg.start, *v)))
                })
            })
        });
        g.bench_function("rwlock_btreemap", |b| {
            let mut next = batches(&addrs);
            b.iter(|| next().iter().fold(0, |acc, &a| fold(acc, rw_get(&rw, a))))
        });
        g.bench_function("skipmap", |b| {
            let mut next = batches(&addrs);
            b.iter(|| {
                next()
                    .iter()
                    .fold(0, |acc, &a| fold(acc, skip_get(&skip, a)))
            })
        });
        g.bench_function("rangemap", |b| {
            let mut next = batches(&addrs);
            b.iter(|| {
                next()
                    .iter()
                    .fold(0, |acc, &a| fold(acc, rangemap_get(&rmap, a)))
            })
        });

        // Latency-bound rows (see `dependent`).
        g.bench_function("dep/maple_guard", |b| {
            let mut next = batches(&addrs);
            b.iter(|| {
                let r = tree.pin();
                dependent(next(), |a| r.get(a).map(|(rg, v)| (rg.start, *v)))
            })
        });
        g.bench_function("dep/maple_pin", |b| {
            let mut next = batches(&addrs);
            b.iter(|| dependent(next(), |a| tree.pin().get(a).map(|(rg, v)| (rg.start, *v))))
        });
        g.bench_function("dep/btreemap", |b| {
            let mut next = batches(&addrs);
            b.iter(|| dependent(next(), |a| btree_get(&bt, a)))
        });
        g.bench_function("dep/sorted_vec", |b| {
            let mut next = batches(&addrs);
            b.iter(|| dependent(next(), |a| vec_get(&vec, a)))
        });
        g.finish();
    }
}

/// Issue 12's shapes: 256Ki and 1Mi ranges of 1-16 pages with gaps of 0-16
/// pages, built by random-order inserts with one commit each (`random`) and
/// after churning half of them out and back in (`churn`), against a
/// BTreeMap built and churned the same way and a sorted Vec, back to back in
/// one process (the ratios are what the targets are stated in).
fn lookup_vma(c: &mut Criterion<ThreadTime>) {
    for n in [256usize << 10, 1 << 20] {
        let ranges = vma_layout(n, 12);
        let addrs = vma_lookup_addrs(&ranges, POOL, 7);
        let vec = sorted_vec(&ranges);
        for churn in [false, true] {
            let tree = maple_commits(&ranges, churn);
            let bt = btree_churned(&ranges, churn);
            {
                let g = tree.pin();
                for &a in &addrs {
                    let want = btree_get(&bt, a);
                    assert_eq!(g.get(a).map(|(r, v)| (r.start, *v)), want);
                    assert_eq!(vec_get(&vec, a), want);
                }
            }
            let shape = if churn { "churn" } else { "random" };
            let mut g = c.benchmark_group(format!("lookup_vma/{}/{shape}", n_label(n)));
            g.throughput(Throughput::Elements(BATCH as u64))
                .warm_up_time(Duration::from_millis(300))
                .measurement_time(Duration::from_secs(1))
                .sample_size(20);
            rows(&mut g, &addrs, &tree, &bt, &vec);
            g.finish();
            eprintln!(
                "lookup_vma/{}/{shape}: height {}",
                n_label(n),
                tree.height()
            );
        }
    }
}

criterion_group! {
    name = benches;
    config = cpu_criterion();
    targets = lookup, lookup_vma
}
criterion_main!(benches);
