//! Reader throughput at N = 256Ki VMA-like ranges, on threads:
//!
//! * `1reader`: one reader thread alone;
//! * `1reader+writer`: one reader while one writer thread removes or
//!   re-inserts a random entry at a fixed rate (one operation per 20 µs,
//!   spinning between operations; a writer that cannot keep up runs flat out);
//! * `2readers`: two reader threads, no writer (scaling).
//!
//! Contenders: MapleTree (one `pin()` per lookup, like a fault handler),
//! `RwLock<BTreeMap>` (one read lock per lookup) and a copy-on-write
//! `ArcSwap<BTreeMap>` (one `load()` per lookup; the writer clones the map).
//!
//! `iter_custom`: each sample starts the threads, lines them up on a barrier,
//! and returns the wall time the readers needed for `iters` lookups in total
//! (split evenly over the readers), so the reported time is per lookup and
//! `2readers` shows aggregate throughput. Wall time on a shared 2-core
//! machine includes time slices lost to other processes, so each benchmark
//! also prints the readers' median CPU time per lookup, and the writer's
//! achieved rate.

#[path = "common/mod.rs"]
mod common;

use arc_swap::ArcSwap;
use common::*;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use maple_rcu::MapleTree;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, RwLock};
use std::time::{Duration, Instant};

const N: usize = 256 << 10;
const POOL: usize = 64 * 1024;
const WRITE_PERIOD: Duration = Duration::from_micros(20);

/// One contender: a lookup and a single-entry write.
trait Index: Sync {
    fn lookup(&self, a: u64) -> Option<(u64, u64)>;
    fn remove(&self, start: u64);
    fn insert(&self, start: u64, end: u64, v: u64);
}

impl Index for MapleTree<u64> {
    #[inline]
    fn lookup(&self, a: u64) -> Option<(u64, u64)> {
        self.pin().get(a).map(|(r, v)| (r.start, *v))
    }
    fn remove(&self, start: u64) {
        MapleTree::remove(self, start).unwrap();
    }
    fn insert(&self, start: u64, end: u64, v: u64) {
        MapleTree::insert(self, start..end, v).unwrap();
    }
}

impl Index for RwLock<BTreeMap<u64, (u64, u64)>> {
    #[inline]
    fn lookup(&self, a: u64) -> Option<(u64, u64)> {
        rw_get(self, a)
    }
    fn remove(&self, start: u64) {
        self.write().unwrap().remove(&start).unwrap();
    }
    fn insert(&self, start: u64, end: u64, v: u64) {
        self.write().unwrap().insert(start, (end, v));
    }
}

impl Index for ArcSwap<BTreeMap<u64, (u64, u64)>> {
    #[inline]
    fn lookup(&self, a: u64) -> Option<(u64, u64)> {
        btree_get(&self.load(), a)
    }
    fn remove(&self, start: u64) {
        let mut m = BTreeMap::clone(&self.load());
        m.remove(&start).unwrap();
        self.store(Arc::new(m));
    }
    fn insert(&self, start: u64, end: u64, v: u64) {
        let mut m = BTreeMap::clone(&self.load());
        m.insert(start, (end, v));
        self.store(Arc::new(m));
    }
}

/// Removes a random entry, then puts it back, alternately, one operation per
/// `WRITE_PERIOD`, until `stop`. Returns the number of operations.
fn writer<I: Index>(idx: &I, ranges: &[(u64, u64)], seed: u64, stop: &AtomicBool) -> u64 {
    let mut rng = Rng::new(seed);
    let mut ops = 0u64;
    let mut removed: Option<usize> = None;
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match removed.take() {
            Some(i) => idx.insert(ranges[i].0, ranges[i].1, value(i)),
            None => {
                let i = rng.index(ranges.len());
                idx.remove(ranges[i].0);
                removed = Some(i);
            }
        }
        ops += 1;
        next += WRITE_PERIOD;
        let mut now = Instant::now();
        // Spin (not yield/sleep): on a loaded machine a yielding thread
        // loses whole time slices and misses the rate by orders of magnitude,
        // and sleeps are far coarser than 20 µs.
        while now < next && !stop.load(Ordering::Relaxed) {
            std::hint::spin_loop();
            now = Instant::now();
        }
        // A writer that fell behind does not burst to catch up.
        if now > next + 10 * WRITE_PERIOD {
            next = now;
        }
    }
    if let Some(i) = removed {
        idx.insert(ranges[i].0, ranges[i].1, value(i));
    }
    ops
}

/// What one sample measured.
struct Sample {
    /// Wall time until the last reader finished (what criterion reports).
    wall: Duration,
    /// CPU time of all readers together.
    cpu: Duration,
    lookups: u64,
    writer_ops: u64,
    writer_time: Duration,
}

/// Runs `readers` reader threads doing `iters` lookups in total (and a writer
/// if `write`).
fn run<I: Index>(
    idx: &I,
    ranges: &[(u64, u64)],
    addrs: &[u64],
    readers: usize,
    write: bool,
    iters: u64,
    seed: u64,
) -> Sample {
    let stop = AtomicBool::new(false);
    let start = Barrier::new(readers + 1);
    std::thread::scope(|s| {
        let w = write.then(|| {
            s.spawn(|| {
                let t = Instant::now();
                let ops = writer(idx, ranges, seed, &stop);
                (ops, t.elapsed())
            })
        });
        let hs: Vec<_> = (0..readers)
            .map(|r| {
                let start = &start;
                let per = iters.div_ceil(readers as u64);
                s.spawn(move || {
                    let mut k = (r * POOL / readers + (seed as usize % POOL)) % POOL;
                    start.wait();
                    let t = Instant::now();
                    let c = thread_cpu_now();
                    let mut acc = 0;
                    for _ in 0..per {
                        acc = fold(acc, idx.lookup(addrs[k]));
                        k += 1;
                        if k == POOL {
                            k = 0;
                        }
                    }
                    black_box(acc);
                    (t.elapsed(), thread_cpu_now() - c)
                })
            })
            .collect();
        start.wait();
        let (mut wall, mut cpu) = (Duration::ZERO, Duration::ZERO);
        for h in hs {
            let (w, c) = h.join().unwrap();
            wall = wall.max(w);
            cpu += c;
        }
        stop.store(true, Ordering::Relaxed);
        let (ops, wt) = w.map_or((0, Duration::ZERO), |h| h.join().unwrap());
        Sample {
            wall,
            cpu,
            lookups: iters.div_ceil(readers as u64) * readers as u64,
            writer_ops: ops,
            writer_time: wt,
        }
    })
}

fn concurrent(c: &mut Criterion) {
    eprintln!(
        "    /proc/loadavg at start: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let ranges = layout(N, 42);
    let addrs = lookup_addrs(&ranges, POOL, 7);
    let tree = maple(&ranges);
    let rw = RwLock::new(btree(&ranges));
    let cow = ArcSwap::from_pointee(btree(&ranges));

    for (name, readers, write) in [
        ("1reader", 1, false),
        ("1reader+writer", 1, true),
        ("2readers", 2, false),
    ] {
        let mut g = c.benchmark_group(format!("concurrent/{name}"));
        g.throughput(Throughput::Elements(1))
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .sample_size(20);

        fn bench<I: Index>(
            g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
            id: &str,
            idx: &I,
            ranges: &[(u64, u64)],
            addrs: &[u64],
            readers: usize,
            write: bool,
        ) {
            let mut cpu_per_lookup = Vec::new();
            let (mut ops, mut secs) = (0u64, 0f64);
            let mut seed = 1;
            g.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    seed += 1;
                    let s = run(idx, ranges, addrs, readers, write, iters, seed);
                    cpu_per_lookup.push(s.cpu.as_nanos() as f64 / s.lookups as f64);
                    ops += s.writer_ops;
                    secs += s.writer_time.as_secs_f64();
                    s.wall
                })
            });
            // Reader CPU time per lookup (immune to time slices lost to other
            // processes, not to contention): the median over every sample.
            eprintln!(
                "    {id}: reader CPU time per lookup {:.1} ns (median of {} samples, incl. warm-up)",
                median(&mut cpu_per_lookup),
                cpu_per_lookup.len()
            );
            if write {
                eprintln!(
                    "    {id}: writer achieved {:.0} ops/s (target {:.0})",
                    ops as f64 / secs,
                    1.0 / WRITE_PERIOD.as_secs_f64()
                );
            }
        }
        bench(&mut g, "maple_pin", &tree, &ranges, &addrs, readers, write);
        bench(
            &mut g,
            "rwlock_btreemap",
            &rw,
            &ranges,
            &addrs,
            readers,
            write,
        );
        bench(
            &mut g,
            "arcswap_cow_btreemap",
            &cow,
            &ranges,
            &addrs,
            readers,
            write,
        );
        g.finish();
    }
    tree.validate().unwrap();
}

criterion_group!(benches, concurrent);
criterion_main!(benches);
