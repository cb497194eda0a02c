//! The three embeddings of issue 13 (`examples/embed/`), per operation, each
//! group holding every contender (the one-run table with throughput under
//! concurrency is `cargo run --release --example embeddings`):
//!
//! * `embed_registry`: one reader's lookup (wall time) while a writer thread
//!   replaces modules at 10k/s: `MapleTree` / `RwLock<BTreeMap>` /
//!   `ArcSwap<Vec>`;
//! * `embed_alloc/{1Ki,16Ki}`: a steady-state exact free + aligned alloc
//!   (thread CPU time): `MapleTree` (two commits a step, or one
//!   transaction) / a `BTreeMap` free list;
//! * `embed_attrs/{mixed,set,get}`: one operation of the attribute map
//!   (thread CPU time): `MapleTree` / rangemap / nodit. `mixed` is the
//!   example's 60 % set / 20 % punch / 20 % get, whose entry count stays
//!   level; punches alone would empty the map as they are timed, so they
//!   are measured only inside `mixed`.

#[path = "common/mod.rs"]
mod common;
#[path = "../examples/embed/mod.rs"]
mod embed;

use common::*;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use embed::attrs::{self, AttrMap, Op};
use embed::guest_alloc::{self, GuestAlloc};
use embed::registry::{self, Registry};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn quick<M: criterion::measurement::Measurement>(g: &mut BenchmarkGroup<'_, M>) {
    g.throughput(Throughput::Elements(1))
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(20);
}

const SLOTS: u64 = 1024;

fn registry_lookup<R: Registry>(g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    let reg = R::new();
    let mut live = registry::populate(&reg, SLOTS);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let (mut rng, mut id) = (Rng::new(11), SLOTS);
            let period = Duration::from_micros(100);
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                id = registry::churn(&reg, &mut live, &mut rng, id);
                next += period;
                if let Some(d) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
            }
        });
        let pcs = registry::pcs(SLOTS, 1 << 16, 100);
        let mut i = 0;
        g.bench_function(R::NAME, |b| {
            b.iter(|| {
                i = (i + 1) & (pcs.len() - 1);
                reg.lookup(pcs[i])
            })
        });
        stop.store(true, Ordering::Relaxed);
    });
}

fn registry(c: &mut Criterion) {
    let mut g = c.benchmark_group("embed_registry");
    quick(&mut g);
    registry_lookup::<registry::Maple>(&mut g);
    registry_lookup::<registry::RwBTree>(&mut g);
    registry_lookup::<registry::SwapVec>(&mut g);
    g.finish();
}

fn alloc_step<A: GuestAlloc>(g: &mut BenchmarkGroup<'_, ThreadTime>, live: usize) {
    let mut rng = Rng::new(3);
    let (mut a, mut held) = guest_alloc::warm::<A>(live, &mut rng);
    g.bench_function(A::NAME, |b| {
        b.iter(|| guest_alloc::step(&mut a, &mut held, &mut rng))
    });
}

fn alloc(c: &mut Criterion<ThreadTime>) {
    for live in [1usize << 10, 16 << 10] {
        let mut g = c.benchmark_group(format!("embed_alloc/{}", n_label(live)));
        quick(&mut g);
        alloc_step::<guest_alloc::Maple>(&mut g, live);
        alloc_step::<guest_alloc::MapleTxn>(&mut g, live);
        alloc_step::<guest_alloc::FreeList>(&mut g, live);
        g.finish();
    }
}

/// The workload's operations: all of them, or only sets, or only gets.
fn ops_of(kind: &str) -> Vec<Op> {
    attrs::ops(1 << 18, 2)
        .into_iter()
        .filter(|op| {
            matches!(
                (kind, op),
                ("set", Op::Set(..)) | ("get", Op::Get(_)) | ("mixed", _)
            )
        })
        .collect()
}

fn attr_op<M: AttrMap>(g: &mut BenchmarkGroup<'_, ThreadTime>, ops: &[Op]) {
    let mut m = attrs::warm::<M>(64 << 10);
    let mut i = 0;
    g.bench_function(M::NAME, |b| {
        b.iter(|| {
            i = (i + 1) % ops.len();
            black_box(attrs::apply(&mut m, &ops[i]))
        })
    });
}

fn attr_map(c: &mut Criterion<ThreadTime>) {
    for name in ["mixed", "set", "get"] {
        let ops = ops_of(name);
        let mut g = c.benchmark_group(format!("embed_attrs/{name}"));
        quick(&mut g);
        attr_op::<attrs::Maple>(&mut g, &ops);
        attr_op::<attrs::Rangemap>(&mut g, &ops);
        attr_op::<attrs::Nodit>(&mut g, &ops);
        g.finish();
    }
}

criterion_group! {
    name = wall;
    config = Criterion::default();
    targets = registry
}
criterion_group! {
    name = cpu;
    config = cpu_criterion();
    targets = alloc, attr_map
}
criterion_main!(wall, cpu);
