//! breaker6 on `share` (issue 11): the RangeLock fast path's slots split by
//! mode (readers claim only readers' slots and check only writers' slots,
//! R7). Every slot of both kinds held at once, then requests that overflow
//! to the table (a reader that overlaps everything, writers that conflict
//! with fast writers, with fast readers), released in an order that makes
//! each slow waiter depend on a fast release's re-check (R8); and a stress
//! with far more readers and writers than slots, guards sent to other
//! threads, exclusion checked with counters, hangs turned into failures by
//! timeouts.

#[path = "common/rng.rs"]
mod rng;

use maple_rcu::RangeLock;
use rng::Rng;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Barrier, mpsc};
use std::thread;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

/// Waits until `f` holds, failing after `T`.
fn until(what: &str, f: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < T, "hang: {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn every_slot_held_then_slow_waiters_hand_off() {
    let lock = RangeLock::new();
    // 20 readers (more than 16 reader slots) on units 0..20, 10 writers
    // (more than 8 writer slots) on units 100..110, all held at once.
    let release = Barrier::new(31);
    let held = AtomicU64::new(0);
    let slow_w = AtomicBool::new(false);
    let slow_r = AtomicBool::new(false);
    let slow_rw = AtomicBool::new(false);
    thread::scope(|s| {
        for i in 0..20u64 {
            let (lock, release, held) = (&lock, &release, &held);
            s.spawn(move || {
                let g = lock.read(i, i + 1).unwrap();
                held.fetch_add(1, Ordering::SeqCst);
                release.wait();
                drop(g);
            });
        }
        for i in 0..10u64 {
            let (lock, release, held) = (&lock, &release, &held);
            s.spawn(move || {
                let g = lock.write(100 + i, 101 + i).unwrap();
                held.fetch_add(1, Ordering::SeqCst);
                release.wait();
                // Writers leave one by one, slowly: each fast release
                // re-checks the slow waiters.
                thread::sleep(Duration::from_millis(2 * i));
                drop(g);
            });
        }
        until("30 disjoint holders", || held.load(Ordering::SeqCst) == 30);
        assert_eq!(lock.requests(), 30);
        // Everything is taken: conflicting requests are refused now.
        assert!(lock.try_write(5, 6).is_err(), "a writer over a held reader");
        assert!(
            lock.try_read(105, 106).is_err(),
            "a reader over a held writer"
        );
        assert!(lock.try_read(5, 6).is_ok(), "two readers share");
        assert_eq!(lock.conflicting(0, 200).unwrap(), Some((0, 110)));
        // Slow waiters: a writer over readers 3..7, a reader over every
        // writer, a writer over everything.
        s.spawn(|| {
            let g = lock.write(3, 7).unwrap();
            slow_w.store(true, Ordering::SeqCst);
            drop(g);
        });
        s.spawn(|| {
            let g = lock.read(50, 200).unwrap();
            slow_r.store(true, Ordering::SeqCst);
            drop(g);
        });
        until("slow requests queued", || lock.requests() >= 32);
        s.spawn(|| {
            let g = lock.write(0, 200).unwrap();
            slow_rw.store(true, Ordering::SeqCst);
            drop(g);
        });
        thread::sleep(Duration::from_millis(20));
        assert!(
            !slow_w.load(Ordering::SeqCst),
            "writer granted over readers"
        );
        assert!(
            !slow_r.load(Ordering::SeqCst),
            "reader granted over writers"
        );
        assert!(!slow_rw.load(Ordering::SeqCst), "writer granted over all");
        release.wait();
        until("slow writer over readers", || slow_w.load(Ordering::SeqCst));
        until("slow reader over writers", || slow_r.load(Ordering::SeqCst));
        until("slow writer over all", || slow_rw.load(Ordering::SeqCst));
    });
    assert_eq!(lock.requests(), 0);
    // And the fast path is usable again by both kinds.
    let a = lock.try_read(0, 10).unwrap();
    let b = lock.try_read(0, 10).unwrap();
    assert!(lock.try_write(9, 11).is_err());
    drop((a, b));
    let _w = lock.try_write(9, 11).unwrap();
    assert!(lock.try_read(10, 12).is_err());
}

const UNITS: u64 = 32;

struct Space {
    lock: RangeLock,
    units: Vec<AtomicI64>,
    ops: AtomicU64,
}

impl Space {
    fn enter(&self, a: u64, b: u64, w: bool) {
        for u in a..b {
            let v = if w {
                self.units[u as usize].swap(-1, Ordering::SeqCst)
            } else {
                self.units[u as usize].fetch_add(1, Ordering::SeqCst)
            };
            assert!(
                if w { v == 0 } else { v >= 0 },
                "[{a},{b}) w={w}: unit {u} = {v}"
            );
        }
    }
    fn leave(&self, a: u64, b: u64, w: bool) {
        for u in a..b {
            let v = if w {
                self.units[u as usize].swap(0, Ordering::SeqCst)
            } else {
                self.units[u as usize].fetch_sub(1, Ordering::SeqCst)
            };
            assert!(
                if w { v == -1 } else { v >= 1 },
                "[{a},{b}) w={w} leaving: unit {u} = {v}"
            );
        }
    }
}

/// `readers` threads that mostly read and `writers` that mostly write, on a
/// small space (so most requests overlap), for `iters` each; a third of the
/// guards are dropped by another thread.
fn stress(readers: usize, writers: usize, iters: u64, seed: u64) {
    let s = Space {
        lock: RangeLock::new(),
        units: (0..UNITS).map(|_| AtomicI64::new(0)).collect(),
        ops: AtomicU64::new(0),
    };
    let done = AtomicBool::new(false);
    thread::scope(|sc| {
        let (tx, rx) = mpsc::channel::<(Box<dyn Send + '_>, u64, u64, bool)>();
        let s = &s;
        sc.spawn(move || {
            for (g, a, b, w) in rx {
                s.leave(a, b, w);
                drop(g);
                s.ops.fetch_add(1, Ordering::Relaxed);
            }
        });
        let mut hs = Vec::new();
        for t in 0..readers + writers {
            let tx = tx.clone();
            hs.push(sc.spawn(move || {
                let mut r = Rng(seed ^ (t as u64 + 1).wrapping_mul(0x9e37_79b9));
                let writer = t >= readers;
                for _ in 0..iters {
                    let a = r.below(UNITS);
                    let n = if r.below(8) == 0 { UNITS } else { 3 };
                    let b = (a + 1 + r.below(n)).min(UNITS);
                    let w = if writer {
                        r.below(8) != 0
                    } else {
                        r.below(16) == 0
                    };
                    let g: Box<dyn Send + '_> = match (w, r.below(6)) {
                        (true, 0) => match s.lock.try_write(a, b) {
                            Ok(g) => Box::new(g),
                            Err(_) => continue,
                        },
                        (false, 0) => match s.lock.try_read(a, b) {
                            Ok(g) => Box::new(g),
                            Err(_) => continue,
                        },
                        (true, _) => Box::new(s.lock.write(a, b).unwrap()),
                        (false, _) => Box::new(s.lock.read(a, b).unwrap()),
                    };
                    s.enter(a, b, w);
                    for _ in 0..r.below(32) {
                        std::hint::spin_loop();
                    }
                    if r.below(3) == 0 {
                        tx.send((g, a, b, w)).unwrap();
                    } else {
                        s.leave(a, b, w);
                        drop(g);
                        s.ops.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        drop(tx);
        // Watchdog: progress at least every T.
        sc.spawn(|| {
            let mut last = (0, Instant::now());
            while !done.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(20));
                let n = s.ops.load(Ordering::Relaxed);
                if n != last.0 {
                    last = (n, Instant::now());
                }
                if last.1.elapsed() > T {
                    eprintln!(
                        "hang: no progress for {T:?} at {n} ops, {} requests",
                        s.lock.requests()
                    );
                    std::process::abort();
                }
            }
        });
        for h in hs {
            h.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
    });
    assert_eq!(s.lock.requests(), 0);
    assert!(s.units.iter().all(|u| u.load(Ordering::SeqCst) == 0));
}

#[test]
fn more_readers_and_writers_than_slots() {
    stress(24, 12, 400, 0x51);
}

/// Long variant: `cargo test --release --test breaker_s6_rangelock -- --ignored`.
#[test]
#[ignore = "breaker6: long stress variant (a minute or more)"]
fn more_readers_and_writers_than_slots_long() {
    for seed in 0..20 {
        stress(20 + seed as usize % 8, 6 + seed as usize % 5, 20_000, seed);
    }
}
