//! Adversarial tests of `RangeLock`'s lock-free fast path (DESIGN §7, R7–R9)
//! mixed with every other way in: table requests, `try_` requests,
//! `RangeLockSet` nesting (R5), `wait`, guards dropped on another thread,
//! panics while holding guards, more threads than fast-path slots, and ranges
//! at the very top of the `u64` space.
//!
//! Exclusion is checked with one counter per unit of a 48-unit space placed
//! at `u64::MAX - 48`: a writer swaps -1 into every unit of its range and
//! expects 0; a reader increments and expects a non-negative value. Hangs
//! (a waiter that never wakes) are detected with a generous watchdog.

use maple_rcu::{RangeLock, RangeLockError, RangeLockSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

const UNITS: u64 = 48;
const BASE: u64 = u64::MAX - UNITS;

/// Only an unbounded wait (a lost wake-up or a deadlock) reaches this.
const HANG: Duration = Duration::from_secs(120);

struct Space {
    lock: RangeLock,
    units: Vec<AtomicI64>,
    /// Completed operations (progress for the watchdog).
    ops: AtomicU64,
}

impl Space {
    fn new() -> Space {
        Space {
            lock: RangeLock::new(),
            units: (0..UNITS).map(|_| AtomicI64::new(0)).collect(),
            ops: AtomicU64::new(0),
        }
    }

    fn enter_write(&self, a: u64, b: u64) {
        for u in a..b {
            let v = self.units[u as usize].swap(-1, Ordering::SeqCst);
            assert_eq!(v, 0, "writer of [{a}, {b}) found unit {u} = {v}");
        }
    }

    fn leave_write(&self, a: u64, b: u64) {
        for u in a..b {
            let v = self.units[u as usize].swap(0, Ordering::SeqCst);
            assert_eq!(v, -1, "writer of [{a}, {b}) leaving: unit {u} = {v}");
        }
    }

    fn enter_read(&self, a: u64, b: u64) {
        for u in a..b {
            let v = self.units[u as usize].fetch_add(1, Ordering::SeqCst);
            assert!(v >= 0, "reader of [{a}, {b}) found unit {u} = {v}");
        }
    }

    fn leave_read(&self, a: u64, b: u64) {
        for u in a..b {
            let v = self.units[u as usize].fetch_sub(1, Ordering::SeqCst);
            assert!(v >= 1, "reader of [{a}, {b}) leaving: unit {u} = {v}");
        }
    }

    fn enter(&self, a: u64, b: u64, w: bool) {
        if w {
            self.enter_write(a, b)
        } else {
            self.enter_read(a, b)
        }
    }

    fn leave(&self, a: u64, b: u64, w: bool) {
        if w {
            self.leave_write(a, b)
        } else {
            self.leave_read(a, b)
        }
    }
}

/// xorshift64*.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// A non-empty unit range, mostly short.
    fn range(&mut self) -> (u64, u64) {
        let a = self.below(UNITS);
        let max = if self.below(4) == 0 { UNITS } else { 4 };
        let len = 1 + self.below(max);
        (a, (a + len).min(UNITS))
    }
}

fn addr(u: u64) -> u64 {
    BASE + u
}

fn spin(rng: &mut Rng) {
    for _ in 0..rng.below(64) {
        std::hint::spin_loop();
    }
    if rng.below(16) == 0 {
        thread::yield_now();
    }
}

/// One random operation of thread `me`. `dropper` takes guards to drop on
/// another thread.
fn one_op<'a>(s: &'a Space, rng: &mut Rng, dropper: &mpsc::Sender<Box<dyn FnOnce() + Send + 'a>>) {
    let lock = &s.lock;
    match rng.below(9) {
        0 | 1 => {
            let (a, b) = rng.range();
            let g = lock.write(addr(a), addr(b)).unwrap();
            s.enter_write(a, b);
            spin(rng);
            s.leave_write(a, b);
            drop(g);
        }
        2 | 3 => {
            let (a, b) = rng.range();
            let g = lock.read(addr(a), addr(b)).unwrap();
            s.enter_read(a, b);
            spin(rng);
            s.leave_read(a, b);
            drop(g);
        }
        4 => {
            let (a, b) = rng.range();
            let w = rng.below(2) == 0;
            let r = if w {
                lock.try_write(addr(a), addr(b))
                    .map(|g| Box::new(g) as Box<dyn Send + '_>)
            } else {
                lock.try_read(addr(a), addr(b))
                    .map(|g| Box::new(g) as Box<dyn Send + '_>)
            };
            match r {
                Ok(g) => {
                    s.enter(a, b, w);
                    spin(rng);
                    s.leave(a, b, w);
                    drop(g);
                }
                Err(e) => assert_eq!(e, RangeLockError::WouldBlock),
            }
        }
        5 => {
            // A set of up to three ranges, lowest first, mixed modes, some
            // `try_`; entering each range as soon as it is held.
            let mut set: RangeLockSet<'_> = lock.set();
            let mut held: Vec<(u64, u64, bool)> = Vec::new();
            let mut lo = rng.below(UNITS / 2);
            for _ in 0..1 + rng.below(3) {
                if lo >= UNITS {
                    break;
                }
                let b = (lo + 1 + rng.below(6)).min(UNITS);
                let w = rng.below(2) == 0;
                let tried = rng.below(4) == 0;
                let r = match (w, tried) {
                    (true, false) => set.write(addr(lo), addr(b)),
                    (false, false) => set.read(addr(lo), addr(b)),
                    (true, true) => set.try_write(addr(lo), addr(b)),
                    (false, true) => set.try_read(addr(lo), addr(b)),
                };
                match r {
                    Ok(()) => {
                        s.enter(lo, b, w);
                        held.push((lo, b, w));
                    }
                    Err(e) => assert_eq!(e, RangeLockError::WouldBlock),
                }
                // An out-of-order request is refused, never granted.
                if let Some(&(ha, _, _)) = held.first() {
                    assert!(matches!(
                        set.try_read(addr(ha), addr(ha) + 1),
                        Err(RangeLockError::Order { .. })
                    ));
                }
                lo = b + rng.below(3);
                spin(rng);
            }
            for &(a, b, w) in &held {
                s.leave(a, b, w);
            }
            drop(set);
        }
        6 => {
            let (a, b) = rng.range();
            lock.wait(addr(a), addr(b)).unwrap();
        }
        7 => {
            // A guard handed to another thread, which leaves the range and
            // drops it there.
            let (a, b) = rng.range();
            let w = rng.below(2) == 0;
            let s2 = s;
            if w {
                let g = lock.write(addr(a), addr(b)).unwrap();
                s.enter(a, b, w);
                dropper
                    .send(Box::new(move || {
                        s2.leave(a, b, w);
                        drop(g);
                    }))
                    .unwrap();
            } else {
                let g = lock.read(addr(a), addr(b)).unwrap();
                s.enter(a, b, w);
                dropper
                    .send(Box::new(move || {
                        s2.leave(a, b, w);
                        drop(g);
                    }))
                    .unwrap();
            }
        }
        _ => {
            // A panic while holding a guard (and a set): both released
            // during unwinding.
            let (a, b) = rng.range();
            let w = rng.below(2) == 0;
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut set = lock.set();
                if w {
                    set.write(addr(a), addr(b)).unwrap();
                } else {
                    set.read(addr(a), addr(b)).unwrap();
                }
                s.enter(a, b, w);
                s.leave(a, b, w);
                std::panic::resume_unwind(Box::new("breaker: deliberate"));
            }));
            assert!(r.is_err());
        }
    }
    s.ops.fetch_add(1, Ordering::Relaxed);
}

/// `threads` workers (more than the 16 fast-path slots when asked) doing
/// `iters` random operations each, one dropper thread, and a watchdog.
fn stress(threads: usize, iters: u64, seed: u64) {
    let s = Space::new();
    let s: &Space = &s;
    let done = AtomicBool::new(false);
    thread::scope(|sc| {
        let (tx, rx) = mpsc::channel::<Box<dyn FnOnce() + Send + '_>>();
        let dropper = sc.spawn(move || {
            for f in rx {
                f();
            }
        });
        let done = &done;
        let watchdog = sc.spawn(move || {
            let mut last = 0;
            let mut since = Instant::now();
            while !done.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(50));
                let now = s.ops.load(Ordering::Relaxed);
                if now != last {
                    last = now;
                    since = Instant::now();
                } else if since.elapsed() > HANG {
                    eprintln!("no progress for {HANG:?}: {:?}", s.lock);
                    std::process::abort();
                }
            }
        });
        let workers: Vec<_> = (0..threads)
            .map(|k| {
                let tx = tx.clone();
                sc.spawn(move || {
                    let mut rng = Rng(seed ^ (k as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                    for _ in 0..iters {
                        one_op(s, &mut rng, &tx);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        drop(tx);
        dropper.join().unwrap();
        done.store(true, Ordering::Relaxed);
        watchdog.join().unwrap();
    });
    assert_eq!(s.lock.requests(), 0, "{:?}", s.lock);
    for u in &s.units {
        assert_eq!(u.load(Ordering::SeqCst), 0);
    }
    // Everything free: the whole space can be written.
    drop(s.lock.try_write(addr(0), u64::MAX).unwrap());
}

#[test]
fn mixed_stress_short() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |i| {
        if i.payload().downcast_ref::<&str>() != Some(&"breaker: deliberate") {
            prev(i)
        }
    }));
    stress(4, 3_000, 1);
    stress(20, 300, 2); // more threads than fast-path slots
}

#[test]
#[ignore = "long: run with --ignored"]
fn mixed_stress_long() {
    for seed in 0..20 {
        stress(6, 40_000, seed);
        stress(24, 4_000, seed + 100);
    }
}

/// A slow-path waiter whose only obstacle is a fast-path holder wakes when
/// that holder releases, including when the release happens on another
/// thread; repeated so the release races the waiter's queueing.
#[test]
fn slow_waiter_wakes_on_fast_release() {
    let lock = RangeLock::new();
    for i in 0..2_000u64 {
        thread::scope(|sc| {
            let lock = &lock;
            let g = lock.write(10, 20).unwrap(); // fast path (nothing queued)
            let waiter = sc.spawn(move || {
                // A nested request (always the table) and a top-level one.
                if i % 2 == 0 {
                    let mut set = lock.set();
                    set.read(0, 5).unwrap();
                    set.write(15, 25).unwrap();
                } else {
                    drop(lock.write(15, 25).unwrap());
                }
            });
            if i % 3 == 0 {
                thread::yield_now();
            }
            // Release on a third thread half of the time.
            if i % 2 == 0 {
                sc.spawn(move || drop(g)).join().unwrap();
            } else {
                drop(g);
            }
            waiter.join().unwrap();
        });
        assert_eq!(lock.requests(), 0);
    }
}

/// A queued writer is not starved by a stream of fast-path readers: once it
/// queues, `slow != 0` closes the fast path. Bounded by iterations: the
/// readers stop after the writer got in (or after a huge count, which fails).
#[test]
fn fast_reader_stream_does_not_starve_queued_writer() {
    for _ in 0..20 {
        let lock = Arc::new(RangeLock::new());
        let got = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..3)
            .map(|k| {
                let (lock, got) = (lock.clone(), got.clone());
                thread::spawn(move || {
                    let mut n = 0u64;
                    while !got.load(Ordering::Relaxed) {
                        // Overlapping readers, each keeping [40, 60) busy.
                        let _g = lock.read(k * 10 + 30, k * 10 + 70).unwrap();
                        for _ in 0..200 {
                            std::hint::spin_loop();
                        }
                        n += 1;
                        assert!(n < 50_000_000, "writer starved by fast readers");
                    }
                })
            })
            .collect();
        thread::sleep(Duration::from_millis(2));
        let g = lock.write(45, 55).unwrap();
        got.store(true, Ordering::Relaxed);
        drop(g);
        for r in readers {
            r.join().unwrap();
        }
        assert_eq!(lock.requests(), 0);
    }
}

/// Filling all 8 writers' fast-path slots (and more) with disjoint holders, then
/// conflicting `try_` and blocking requests against each of them.
#[test]
fn slot_exhaustion_and_try() {
    let lock = RangeLock::new();
    let guards: Vec<_> = (0..40u64)
        .map(|i| lock.write(i * 10, i * 10 + 5).unwrap())
        .collect();
    assert_eq!(lock.requests(), 40);
    for i in 0..40u64 {
        assert_eq!(
            lock.try_read(i * 10 + 4, i * 10 + 6).unwrap_err(),
            RangeLockError::WouldBlock
        );
        assert_eq!(
            lock.try_write(i * 10, i * 10 + 1).unwrap_err(),
            RangeLockError::WouldBlock
        );
        // Gaps are free.
        drop(lock.try_write(i * 10 + 5, i * 10 + 10).unwrap());
    }
    // Release in a scattered order; a blocking waiter over everything wakes.
    thread::scope(|sc| {
        let l = &lock;
        let w = sc.spawn(move || l.write(0, 400).map(drop));
        let mut guards = guards;
        while !guards.is_empty() {
            let k = (guards.len() * 7 + 3) % guards.len();
            drop(guards.swap_remove(k));
            thread::yield_now();
        }
        w.join().unwrap().unwrap();
    });
    assert_eq!(lock.requests(), 0);
}

/// Hostile ranges: typed errors, no panics, and nothing left behind.
#[test]
fn hostile_ranges() {
    let lock = RangeLock::new();
    for &(a, b) in &[
        (5u64, 4u64),
        (u64::MAX, 0),
        (u64::MAX, u64::MAX),
        (0, 0),
        (u64::MAX, u64::MAX - 1),
    ] {
        assert!(lock.read(a, b).is_err());
        assert!(lock.write(a, b).is_err());
        assert!(lock.try_read(a, b).is_err());
        assert!(lock.try_write(a, b).is_err());
        assert!(lock.wait(a, b).is_err());
        let mut set = lock.set();
        assert!(set.read(a, b).is_err());
        assert!(set.try_write(a, b).is_err());
        assert!(set.is_empty());
    }
    let g = lock.write(u64::MAX - 1, u64::MAX).unwrap();
    assert!(lock.try_read(0, u64::MAX).is_err());
    let h = lock.read(0, u64::MAX - 1).unwrap();
    let mut set = lock.set();
    assert_eq!(set.try_write(1, 2).unwrap_err(), RangeLockError::WouldBlock);
    set.try_read(1, 2).unwrap();
    assert_eq!(
        set.try_read(0, 1).unwrap_err(),
        RangeLockError::Order {
            start: 0,
            held_end: 2
        }
    );
    assert_eq!(
        set.try_write(u64::MAX - 1, u64::MAX).unwrap_err(),
        RangeLockError::WouldBlock
    );
    drop((g, h, set));
    assert_eq!(lock.requests(), 0);
    lock.wait(0, u64::MAX).unwrap();
}

/// The readers' slots (16) overflowing into the table: 40 readers of
/// overlapping ranges all hold at once (readers never check each other's
/// slots), and every writer overlapping any of them is refused, whether the
/// reader sits in a fast slot or in the table; a writer in a gap is granted.
#[test]
fn overlapping_readers_fill_their_slots_and_exclude_writers() {
    let lock = RangeLock::new();
    let guards: Vec<_> = (0..40u64)
        .map(|i| lock.try_read(i * 10, i * 10 + 15).unwrap())
        .collect();
    assert_eq!(lock.requests(), 40);
    for i in 0..40u64 {
        assert_eq!(
            lock.try_write(i * 10 + 2, i * 10 + 3).unwrap_err(),
            RangeLockError::WouldBlock
        );
        // Another reader over the same place shares.
        drop(lock.try_read(i * 10 + 2, i * 10 + 3).unwrap());
    }
    drop(lock.try_write(500, 510).unwrap());
    drop(guards);
    assert_eq!(lock.requests(), 0);
    drop(lock.try_write(0, 500).unwrap());
}
