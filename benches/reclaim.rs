//! Read-side cost of `Srcu` against the reclamation schemes a tree could use
//! instead, and `synchronize` latency (issue 3). Kept under ~2 minutes:
//! `cargo bench --bench reclaim`.
//!
//! * `read_drop/1_thread`: one critical section (enter + exit), per op.
//! * `read_drop/2_threads`: two threads on the SAME domain/collector at once;
//!   time per op per thread (sharding shows as "about the 1-thread cost").
//! * `retire_box`: hand one boxed value to each scheme for deferred freeing
//!   (amortised reclamation included), one thread, no readers.
//! * `synchronize/idle_readers`: a grace period with 4 registered, idle reader
//!   threads.

use arc_swap::ArcSwap;
use criterion::{Criterion, criterion_group, criterion_main};
use maple_rcu::srcu::Srcu;
use std::hint::black_box;
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::{Duration, Instant};

/// One read-side critical section of each contender, on shared state `S`.
struct Contender<S: Sync> {
    name: &'static str,
    state: S,
    /// Runs `iters` critical sections on the calling thread.
    run: fn(&S, u64),
}

fn srcu_run(d: &Srcu, iters: u64) {
    for _ in 0..iters {
        drop(black_box(d.read()));
    }
}

fn epoch_global_run(_: &(), iters: u64) {
    for _ in 0..iters {
        drop(black_box(crossbeam_epoch::pin()));
    }
}

fn epoch_collector_run(c: &crossbeam_epoch::Collector, iters: u64) {
    let handle = c.register();
    for _ in 0..iters {
        drop(black_box(handle.pin()));
    }
}

fn seize_run(c: &seize::Collector, iters: u64) {
    for _ in 0..iters {
        drop(black_box(c.enter()));
    }
}

fn seize_owned_run(c: &seize::Collector, iters: u64) {
    for _ in 0..iters {
        drop(black_box(c.enter_owned()));
    }
}

fn arc_swap_run(a: &ArcSwap<u64>, iters: u64) {
    for _ in 0..iters {
        black_box(**a.load());
    }
}

/// Time for `iters` ops on each of `threads` threads running at once (the
/// slowest thread's time).
fn concurrent<S: Sync>(c: &Contender<S>, threads: usize, iters: u64) -> Duration {
    let start = Barrier::new(threads);
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    (c.run)(&c.state, 1000); // warm: register, allocate slots
                    start.wait();
                    let t = Instant::now();
                    (c.run)(&c.state, iters);
                    t.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap()
    })
}

fn bench_contender<S: Sync>(c: &mut Criterion, contender: Contender<S>) {
    let mut g = c.benchmark_group("read_drop");
    g.bench_function(format!("1_thread/{}", contender.name), |b| {
        b.iter_custom(|iters| concurrent(&contender, 1, iters))
    });
    g.bench_function(format!("2_threads/{}", contender.name), |b| {
        b.iter_custom(|iters| concurrent(&contender, 2, iters))
    });
    g.finish();
}

fn read_side(c: &mut Criterion) {
    let srcu = Srcu::new();
    assert!(
        srcu.uses_membarrier() || !cfg!(target_os = "linux"),
        "membarrier unavailable here"
    );
    bench_contender(
        c,
        Contender {
            name: "srcu_membarrier",
            state: srcu,
            run: srcu_run,
        },
    );
    bench_contender(
        c,
        Contender {
            name: "srcu_fence",
            state: Srcu::with_fence_readers(),
            run: srcu_run,
        },
    );
    bench_contender(
        c,
        Contender {
            name: "crossbeam_epoch_global",
            state: (),
            run: epoch_global_run,
        },
    );
    bench_contender(
        c,
        Contender {
            name: "crossbeam_epoch_collector",
            state: crossbeam_epoch::Collector::new(),
            run: epoch_collector_run,
        },
    );
    bench_contender(
        c,
        Contender {
            name: "seize_enter",
            state: seize::Collector::new(),
            run: seize_run,
        },
    );
    bench_contender(
        c,
        Contender {
            name: "seize_enter_owned",
            state: seize::Collector::new(),
            run: seize_owned_run,
        },
    );
    bench_contender(
        c,
        Contender {
            name: "arc_swap_load",
            state: ArcSwap::from_pointee(7u64),
            run: arc_swap_run,
        },
    );
}

fn synchronize_latency(c: &mut Criterion) {
    let mut g = c.benchmark_group("synchronize");
    for (name, d) in [
        ("membarrier", Srcu::new()),
        ("fence", Srcu::with_fence_readers()),
    ] {
        let d = Arc::new(d);
        // Idle readers: threads that have slots in the domain but hold no guard.
        let (tx, rx) = mpsc::channel::<()>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let (d, rx) = (d.clone(), rx.clone());
                thread::spawn(move || {
                    drop(d.read());
                    let _ = rx.lock().unwrap().recv();
                })
            })
            .collect();
        thread::sleep(Duration::from_millis(10));
        g.bench_function(format!("idle_readers/{name}"), |b| {
            b.iter(|| d.synchronize())
        });
        drop(tx);
        for r in readers {
            r.join().unwrap();
        }
    }
    g.finish();
}

fn retire_cost(c: &mut Criterion) {
    let mut g = c.benchmark_group("retire_box");
    let srcu = Srcu::new();
    g.bench_function("srcu_retire", |b| {
        b.iter(|| srcu.retire(Box::new(black_box(7u64))))
    });
    srcu.barrier().unwrap();
    let collector = crossbeam_epoch::Collector::new();
    let handle = collector.register();
    g.bench_function("crossbeam_epoch_collector_defer_destroy", |b| {
        b.iter(|| {
            let guard = handle.pin();
            let p = crossbeam_epoch::Owned::new(black_box(7u64)).into_shared(&guard);
            // SAFETY: `p` was never shared; nothing else can reach it.
            unsafe { guard.defer_destroy(p) };
        })
    });
    let seize = seize::Collector::new();
    g.bench_function("seize_retire", |b| {
        b.iter(|| {
            let p = Box::into_raw(Box::new(black_box(7u64)));
            // SAFETY: `p` is a fresh box, never shared, retired once.
            unsafe { seize.retire(p, seize::reclaim::boxed) };
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = read_side, retire_cost, synchronize_latency
}
criterion_main!(benches);
