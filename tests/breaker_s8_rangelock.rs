//! breaker8: `RangeWriteGuard::narrow` / `RangeReadGuard::narrow` (R10,
//! DESIGN §7.1) under threads. Every unit of a 96-unit lock space is an
//! atomic word: a writer claims it with a CAS from 0 (so a second writer or
//! a reader inside a write-held unit fails the test at once), readers add
//! one and must find no writer bit. Holders give units back *before*
//! narrowing them away, and check the units they keep are still theirs
//! after. Mixed: plain guards on the fast path and in the table, narrowed
//! once, twice, to the same range, with bad input (nothing may change);
//! `RangeLockSet`s (nested requests) of reads and writes; `try_*`, `wait`
//! and `conflicting_mode` racing the narrows. A watchdog fails the test if
//! no thread makes progress for 20 s (a waiter left waiting for a part
//! given up, or a deadlock).

use maple_rcu::{RangeLock, RangeLockError, RangeMode, RangeWriteGuard};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

const UNITS: u64 = 96;
const W: u64 = 1 << 63;

#[path = "common/rng.rs"]
mod rng;
use rng::Rng;

struct Shared {
    lock: RangeLock,
    units: Vec<AtomicU64>,
    progress: AtomicU64,
}

impl Shared {
    fn take_w(&self, a: u64, b: u64, me: u64) {
        for u in a..b {
            let r = self.units[u as usize].compare_exchange(
                0,
                W | me,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
            assert!(
                r.is_ok(),
                "writer {me} on unit {u} found {:#x} (lock {:?})",
                r.unwrap_err(),
                self.lock
            );
        }
    }
    fn give_w(&self, a: u64, b: u64, me: u64) {
        for u in a..b {
            let r = self.units[u as usize].compare_exchange(
                W | me,
                0,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
            assert!(
                r.is_ok(),
                "writer {me} lost unit {u}: {:#x}",
                r.unwrap_err()
            );
        }
    }
    fn still_w(&self, a: u64, b: u64, me: u64) {
        for u in a..b {
            assert_eq!(
                self.units[u as usize].load(Ordering::Acquire),
                W | me,
                "unit {u}"
            );
        }
    }
    fn take_r(&self, a: u64, b: u64) {
        for u in a..b {
            let prev = self.units[u as usize].fetch_add(1, Ordering::AcqRel);
            assert_eq!(
                prev & W,
                0,
                "reader on unit {u} held by writer {:#x}",
                prev & !W
            );
        }
    }
    fn give_r(&self, a: u64, b: u64) {
        for u in a..b {
            let prev = self.units[u as usize].fetch_sub(1, Ordering::AcqRel);
            assert!(prev & W == 0 && prev > 0, "unit {u}: {prev:#x}");
        }
    }
    fn still_r(&self, a: u64, b: u64) {
        for u in a..b {
            let v = self.units[u as usize].load(Ordering::Acquire);
            assert!(v & W == 0 && v > 0, "unit {u}: {v:#x}");
        }
    }
}

fn range(r: &mut Rng) -> (u64, u64) {
    let a = r.below(UNITS - 1);
    let wide = r.below(4) == 0;
    let n = 1 + r.below(if wide { UNITS } else { 12 });
    (a, (a + n).min(UNITS))
}

fn sub(r: &mut Rng, a: u64, b: u64) -> (u64, u64) {
    let x = a + r.below(b - a);
    let y = x + 1 + r.below(b - x);
    (x, y)
}

/// Bad narrows: typed errors, and the guard's range does not change.
fn bad_narrows(
    r: &mut Rng,
    a: u64,
    b: u64,
    mut narrow: impl FnMut(u64, u64) -> Result<(), RangeLockError>,
) {
    let k = r.below(4);
    let res = match k {
        0 if a > 0 => narrow(a - 1, b),
        1 if b < UNITS => narrow(a, b + 1),
        2 => narrow(b, b),
        _ => narrow(b, a),
    };
    match (k, res) {
        (0, Err(RangeLockError::NotInside { .. })) if a > 0 => {}
        (1, Err(RangeLockError::NotInside { .. })) if b < UNITS => {}
        (2, Err(RangeLockError::Empty { .. })) => {}
        (_, Err(RangeLockError::Inverted { .. })) if a < b => {}
        (_, Err(RangeLockError::Empty { .. })) if a + 1 == b || a == b => {}
        (_, e) => panic!("bad narrow of [{a}, {b}) case {k}: {e:?}"),
    }
}

fn worker(s: &Shared, me: u64, seed: u64, iters: u64) {
    let mut r = Rng(seed);
    for _ in 0..iters {
        let (a, b) = range(&mut r);
        match r.below(10) {
            0..=3 => {
                let mut g = s.lock.write(a, b).unwrap();
                s.take_w(a, b, me);
                let (mut ga, mut gb) = (a, b);
                for _ in 0..r.below(4) {
                    bad_narrows(&mut r, ga, gb, |x, y| g.narrow(x, y));
                    assert_eq!((g.start(), g.end()), (ga, gb));
                    let (x, y) = if r.below(5) == 0 {
                        (ga, gb)
                    } else {
                        sub(&mut r, ga, gb)
                    };
                    s.give_w(ga, x, me);
                    s.give_w(y, gb, me);
                    g.narrow(x, y).unwrap();
                    (ga, gb) = (x, y);
                    thread::yield_now();
                    s.still_w(ga, gb, me);
                    // The part given up is free for others now: a try on
                    // it may succeed (or meet someone else's request).
                    if x > a
                        && r.below(2) == 0
                        && let Ok(g2) = s.lock.try_write(a, x)
                    {
                        s.take_w(a, x, me);
                        s.give_w(a, x, me);
                        drop(g2);
                    }
                    assert!(
                        s.lock.try_read(ga, gb).is_err(),
                        "try_read inside a held write"
                    );
                    match s.lock.conflicting_mode(ga, gb).unwrap() {
                        Some(((lo, hi), RangeMode::Write)) => assert!(lo <= ga && gb <= hi),
                        other => {
                            panic!("conflicting_mode over our own write [{ga},{gb}): {other:?}")
                        }
                    }
                }
                s.give_w(ga, gb, me);
                drop(g);
            }
            4..=5 => {
                let mut g = s.lock.read(a, b).unwrap();
                s.take_r(a, b);
                let (mut ga, mut gb) = (a, b);
                for _ in 0..r.below(3) {
                    bad_narrows(&mut r, ga, gb, |x, y| g.narrow(x, y));
                    let (x, y) = sub(&mut r, ga, gb);
                    s.give_r(ga, x);
                    s.give_r(y, gb);
                    g.narrow(x, y).unwrap();
                    (ga, gb) = (x, y);
                    thread::yield_now();
                    s.still_r(ga, gb);
                    assert!(
                        s.lock.try_write(ga, gb).is_err(),
                        "try_write inside a held read"
                    );
                }
                s.give_r(ga, gb);
                drop(g);
            }
            6..=7 => {
                // A set: up to three ranges, ascending, mixed modes.
                let mut set = s.lock.set();
                let mut held = Vec::new();
                let mut at = a;
                for _ in 0..1 + r.below(3) {
                    if at >= UNITS - 1 {
                        break;
                    }
                    let x = at + r.below(4).min(UNITS - 1 - at);
                    let y = (x + 1 + r.below(6)).min(UNITS);
                    let w = r.below(2) == 0;
                    let ok = if r.below(6) == 0 {
                        if w {
                            set.try_write(x, y)
                        } else {
                            set.try_read(x, y)
                        }
                    } else if w {
                        set.write(x, y)
                    } else {
                        set.read(x, y)
                    };
                    match ok {
                        Ok(()) => {
                            if w {
                                s.take_w(x, y, me)
                            } else {
                                s.take_r(x, y)
                            }
                            held.push((x, y, w));
                        }
                        Err(RangeLockError::WouldBlock) => {}
                        Err(e) => panic!("{e:?}"),
                    }
                    at = y;
                    thread::yield_now();
                }
                for (x, y, w) in held {
                    if w {
                        s.give_w(x, y, me)
                    } else {
                        s.give_r(x, y)
                    }
                }
                drop(set);
            }
            8 => {
                if let Ok(g) = s.lock.try_write(a, b) {
                    s.take_w(a, b, me);
                    s.give_w(a, b, me);
                    drop(g);
                } else {
                    let _ = s.lock.conflicting_mode(a, b).unwrap();
                }
            }
            _ => s.lock.wait(a, b).unwrap(),
        }
        s.progress.fetch_add(1, Ordering::Relaxed);
    }
}

/// `table`: a held request and a waiter behind it, outside the units,
/// keep every request on the table path (narrows then rekey).
fn stress(threads: u64, iters: u64, seed: u64, table: bool) {
    let s = Arc::new(Shared {
        lock: RangeLock::new(),
        units: (0..UNITS).map(|_| AtomicU64::new(0)).collect(),
        progress: AtomicU64::new(0),
    });
    let hold = table.then(|| s.lock.write(1000, 1001).unwrap());
    let waiter = table.then(|| {
        let s2 = s.clone();
        let h = thread::spawn(move || drop(s2.lock.write(1000, 1001).unwrap()));
        while s.lock.requests() == 0 {
            thread::yield_now();
        }
        h
    });
    let done = Arc::new(AtomicBool::new(false));
    let go = Arc::new(Barrier::new(threads as usize));
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let (s, go) = (s.clone(), go.clone());
            thread::spawn(move || {
                go.wait();
                worker(&s, t + 1, seed * 1000 + t + 1, iters);
            })
        })
        .collect();
    let dog = {
        let (s, done) = (s.clone(), done.clone());
        thread::spawn(move || {
            let mut last = (0, Instant::now());
            while !done.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(50));
                let p = s.progress.load(Ordering::Relaxed);
                if p != last.0 {
                    last = (p, Instant::now());
                } else if last.1.elapsed() > Duration::from_secs(20) {
                    eprintln!("no progress for 20 s at {p}: {:?}", s.lock);
                    std::process::abort();
                }
            }
        })
    };
    for h in hs {
        h.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    dog.join().unwrap();
    drop(hold);
    if let Some(h) = waiter {
        h.join().unwrap();
    }
    assert_eq!(s.lock.requests(), 0);
    for (u, v) in s.units.iter().enumerate() {
        assert_eq!(v.load(Ordering::Relaxed), 0, "unit {u}");
    }
}

#[test]
fn narrowing_holders_keep_exclusion_and_progress() {
    let rounds: u64 = std::env::var("B8_RL_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let iters: u64 = std::env::var("B8_RL_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    for seed in 1..=rounds {
        stress(4, iters, seed, seed % 2 == 0);
    }
}

/// Keeps `l`'s table in use: holds `[at, at + 1)` and queues a second
/// writer of it behind the guard (a held table request is forced by a
/// waiter already queued). Drop the guard, then join the thread.
fn table_in_use(l: &Arc<RangeLock>, at: u64) -> (RangeWriteGuard<'_>, thread::JoinHandle<()>) {
    let g = l.write(at, at + 1).unwrap();
    let l2 = l.clone();
    let h = thread::spawn(move || drop(l2.write(at, at + 1).unwrap()));
    while l.requests() == 0 {
        thread::yield_now();
    }
    (g, h)
}

/// A waiter that wanted only the part given up is granted while the
/// holder still holds the rest, whichever path (fast slot or table) the
/// holder took, and after repeated narrows; one that still overlaps keeps
/// waiting.
#[test]
fn narrow_grants_exactly_the_waiters_of_the_part_given_up() {
    for table in [false, true] {
        let l = Arc::new(RangeLock::new());
        let _fill = table.then(|| table_in_use(&l, 1000));
        let mut g = l.write(0, 64).unwrap();
        let spawn = |a: u64, b: u64, w: bool| {
            let l = l.clone();
            thread::spawn(move || {
                if w {
                    drop(l.write(a, b).unwrap())
                } else {
                    drop(l.read(a, b).unwrap())
                }
            })
        };
        let hs = [
            spawn(0, 8, true),
            spawn(8, 16, false),
            spawn(20, 40, true),
            spawn(56, 64, false),
            spawn(40, 41, true),
        ];
        let base = if table { 1 } else { 0 };
        while l.requests() < base + 5 + usize::from(table) {
            thread::yield_now();
        }
        g.narrow(8, 64).unwrap();

        let t0 = Instant::now();
        while !hs[0].is_finished() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "table {table}: [0,8) not granted"
            );
            thread::yield_now();
        }
        g.narrow(16, 50).unwrap();
        for i in [1, 3] {
            let t0 = Instant::now();
            while !hs[i].is_finished() {
                assert!(
                    t0.elapsed() < Duration::from_secs(10),
                    "table {table}: waiter {i} not granted"
                );
                thread::yield_now();
            }
        }
        thread::sleep(Duration::from_millis(50));
        assert!(!hs[2].is_finished() && !hs[4].is_finished());
        g.narrow(41, 50).unwrap();
        let t0 = Instant::now();
        while !hs[2].is_finished() || !hs[4].is_finished() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "table {table}: [20,41) not granted"
            );
            thread::yield_now();
        }
        drop(g);
        for h in hs {
            h.join().unwrap();
        }
        if let Some((g, h)) = _fill {
            drop(g);
            h.join().unwrap();
        }
        assert_eq!(l.requests(), 0);
    }
}

/// Narrows at the edges of the `u64` range, on the fast path and in the
/// table (a queued waiter keeps the table in use): the part given up is
/// free for `try_write` at once, the part kept is not, and repeated
/// narrows down to one unit at `u64::MAX - 1` keep the table consistent.
#[test]
fn narrow_at_the_edges_of_u64() {
    const M: u64 = u64::MAX;
    for table in [false, true] {
        let l = Arc::new(RangeLock::new());
        let fill = table.then(|| table_in_use(&l, 5));
        let mut g = l.write(7, M).unwrap();
        let mut r = l.read(0, 5).unwrap();
        for (a, b) in [(8, M), (M / 2, M), (M - 3, M), (M - 2, M - 1)] {
            g.narrow(a, b).unwrap();
            assert_eq!((g.start(), g.end()), (a, b));
            assert!(
                l.try_write(7, a).is_ok(),
                "table {table}: [7, {a:#x}) given up"
            );
            assert_eq!(
                l.try_read(a, b).unwrap_err(),
                RangeLockError::WouldBlock,
                "table {table}: [{a:#x}, {b:#x}) kept"
            );
            if b < M {
                assert!(l.try_write(b, M).is_ok());
            }
        }
        assert_eq!(
            g.narrow(M - 1, M).unwrap_err(),
            RangeLockError::NotInside {
                start: M - 1,
                end: M,
                held_start: M - 2,
                held_end: M - 1
            }
        );
        r.narrow(0, 1).unwrap();
        r.narrow(0, 1).unwrap();
        assert!(l.try_write(1, 5).is_ok());
        assert!(l.try_write(0, 1).is_err());
        assert!(l.try_read(0, 1).is_ok());
        drop((g, r));
        if let Some((g, h)) = fill {
            drop(g);
            h.join().unwrap();
        }
        assert_eq!(l.requests(), 0);
        assert!(l.try_write(0, M).is_ok());
    }
}
