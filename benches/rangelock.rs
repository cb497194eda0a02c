//! `RangeLock` costs next to `std::sync::RwLock` and `std::sync::Mutex`.
//!
//! * `uncontended`: one lock + unlock on one thread. `RangeLock` with 0, 16
//!   and 1024 *other* disjoint ranges held (write-locked below and above the
//!   measured range, so the request walks a tree of that size); the std
//!   locks as the floor.
//! * `2threads_disjoint`: two threads, each locking + unlocking its own range
//!   (write) of one `RangeLock`, against both threads on one shared `Mutex`
//!   (what a single address-space lock gives) and against one `Mutex` per
//!   thread (no sharing at all). Wall time per operation, per thread.

mod common;

use common::two_threads;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use crossbeam_utils::CachePadded;
use maple_rcu::RangeLock;
use std::hint::black_box;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

const PAGE: u64 = 4096;

/// A lock with `n` disjoint write-held ranges around the measured one, which
/// is `[mid, mid + 16 pages)`.
fn with_held(n: u64) -> (&'static RangeLock, u64) {
    let lock: &'static RangeLock = Box::leak(Box::new(RangeLock::new()));
    let mid = (n / 2) * 32 * PAGE + 16 * PAGE;
    for i in 0..n {
        let s = i * 32 * PAGE;
        let s = if s >= mid { s + 32 * PAGE } else { s };
        std::mem::forget(lock.write(s, s + 16 * PAGE).unwrap());
    }
    (lock, mid)
}

fn uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("rangelock/uncontended");
    for n in [0u64, 16, 1024] {
        let (lock, mid) = with_held(n);
        g.bench_with_input(BenchmarkId::new("RangeLock::read", n), &n, |b, _| {
            b.iter(|| {
                drop(black_box(
                    lock.read(black_box(mid), mid + 16 * PAGE).unwrap(),
                ))
            })
        });
        g.bench_with_input(BenchmarkId::new("RangeLock::write", n), &n, |b, _| {
            b.iter(|| {
                drop(black_box(
                    lock.write(black_box(mid), mid + 16 * PAGE).unwrap(),
                ))
            })
        });
    }
    let rw = RwLock::new(0u64);
    g.bench_function("RwLock::read", |b| {
        b.iter(|| drop(black_box(rw.read().unwrap())))
    });
    g.bench_function("RwLock::write", |b| {
        b.iter(|| drop(black_box(rw.write().unwrap())))
    });
    let m = Mutex::new(0u64);
    g.bench_function("Mutex::lock", |b| {
        b.iter(|| drop(black_box(m.lock().unwrap())))
    });
    g.finish();
}

fn two_threads_disjoint(c: &mut Criterion) {
    let mut g = c.benchmark_group("rangelock/2threads_disjoint");
    let lock = Arc::new(RangeLock::new());
    g.bench_function("RangeLock::write", |b| {
        let lock = lock.clone();
        b.iter_custom(move |iters| {
            let lock = lock.clone();
            two_threads(
                iters,
                Arc::new(move |t| {
                    let s = t << 30;
                    drop(black_box(lock.write(s, s + 64 * PAGE).unwrap()));
                }),
            )
        })
    });
    let shared = Arc::new(Mutex::new(0u64));
    g.bench_function("shared Mutex", |b| {
        let m = shared.clone();
        b.iter_custom(move |iters| {
            let m = m.clone();
            two_threads(iters, Arc::new(move |_| drop(black_box(m.lock().unwrap()))))
        })
    });
    // Each on its own cache lines: two adjacent mutexes share a line, and
    // the two threads' locks then bounce it (46 ns per operation here,
    // more than one shared mutex).
    let own = Arc::new([
        CachePadded::new(Mutex::new(0u64)),
        CachePadded::new(Mutex::new(0u64)),
    ]);
    g.bench_function("Mutex per thread", |b| {
        let m = own.clone();
        b.iter_custom(move |iters| {
            let m = m.clone();
            two_threads(
                iters,
                Arc::new(move |t| drop(black_box(m[t as usize].lock().unwrap()))),
            )
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = uncontended, two_threads_disjoint
}
criterion_main!(benches);
