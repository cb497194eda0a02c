//! Loom models of `RangeLock` (docs/DESIGN.md, "Range locks: the
//! primitive"): FIFO fairness with three requests, mutual exclusion of
//! overlapping writers and of a reader against a writer, disjoint writers
//! holding at once, and address-ordered nesting (the plain-FIFO deadlock).
//!
//! Data "protected" by a range is a `loom::cell::UnsafeCell`: loom reports any
//! two accesses not ordered by the lock as a race.

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use maple_rcu::RangeLock;

struct Shared {
    lock: RangeLock,
    data: UnsafeCell<u32>,
}

fn shared() -> Arc<Shared> {
    Arc::new(Shared {
        lock: RangeLock::new(),
        data: UnsafeCell::new(0),
    })
}

impl Shared {
    /// Caller holds a write lock covering the data's range.
    fn bump(&self) -> u32 {
        self.data.with_mut(|p| {
            // SAFETY: exclusive by the range lock; loom checks it.
            unsafe {
                *p += 1;
                *p
            }
        })
    }

    /// Caller holds a lock covering the data's range.
    fn get(&self) -> u32 {
        // SAFETY: no writer inside by the range lock; loom checks it.
        self.data.with(|p| unsafe { *p })
    }

    /// Yields until `n` requests wait in the lock's table (the models use it
    /// to fix the arrival order). Not `requests()`: a request that tries the
    /// fast path is counted while it checks, before it retreats and queues
    /// (R7), so a count would let a later request arrive first.
    fn until_waiting(&self, n: usize) {
        while format!("{:?}", self.lock).matches("waiting").count() != n {
            thread::yield_now();
        }
    }
}

/// Fairness with three requests: a held request on [0, 10) (a writer, or
/// with `first_reads` a reader), then a writer of [5, 15) and a reader of
/// [0, 20) queue in that order. When the first request leaves, the queued
/// writer must go first (FIFO): the reader sees its write. Both requests
/// first try the fast path (R7), and the first one is held through it.
fn queued_writer_goes_first(first_reads: bool) {
    loom::model(move || {
        let s = shared();
        let first = if first_reads {
            (None, Some(s.lock.read(0, 10).unwrap()))
        } else {
            (Some(s.lock.write(0, 10).unwrap()), None)
        };
        let s1 = s.clone();
        let a = thread::spawn(move || {
            let _g = s1.lock.write(5, 15).unwrap();
            s1.bump();
        });
        s.until_waiting(1);
        let s2 = s.clone();
        let b = thread::spawn(move || {
            let _g = s2.lock.read(0, 20).unwrap();
            assert_eq!(s2.get(), 1, "reader overtook the earlier writer");
        });
        s.until_waiting(2);
        drop(first);
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(s.lock.requests(), 0);
    });
}

/// RangeLock fairness with three requests: a held writer, then a writer and
/// a reader queue in that order on overlapping ranges.
#[test]
fn fairness_three_requests() {
    queued_writer_goes_first(false);
}

/// The same behind a held reader, which the last reader does not conflict
/// with: it must still not take the fast path past the queued writer (R7:
/// no fast grant while a request is in the table).
#[test]
fn fairness_fast_reader_then_writer_then_reader() {
    queued_writer_goes_first(true);
}

/// Two writers on overlapping ranges never run together.
#[test]
fn overlapping_writers_exclude() {
    loom::model(|| {
        let s = shared();
        let hs: Vec<_> = [(0, 10), (9, 20)]
            .into_iter()
            .map(|(a, b)| {
                let s = s.clone();
                thread::spawn(move || {
                    let _g = s.lock.write(a, b).unwrap();
                    s.bump();
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(s.get(), 2);
        assert_eq!(s.lock.requests(), 0);
    });
}

/// A reader and a writer (with a `try_` reader on the side) never overlap:
/// the reader sees 0 or 1, never a torn or racing access.
#[test]
fn reader_writer_exclude() {
    loom::model(|| {
        let s = shared();
        let s1 = s.clone();
        let w = thread::spawn(move || {
            let _g = s1.lock.write(0, 10).unwrap();
            s1.bump();
        });
        let s2 = s.clone();
        let r = thread::spawn(move || {
            if let Ok(_g) = s2.lock.try_read(5, 6) {
                assert!(s2.get() <= 1);
            }
            let _g = s2.lock.read(5, 6).unwrap();
            assert!(s2.get() <= 1);
        });
        w.join().unwrap();
        r.join().unwrap();
        assert_eq!(s.get(), 1);
    });
}

/// Disjoint writers hold at the same time: each waits, holding its lock,
/// until the other holds too (this deadlocks if they excluded each other).
#[test]
fn disjoint_writers_hold_together() {
    loom::model(|| {
        let lock = Arc::new(RangeLock::new());
        let flags = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
        let hs: Vec<_> = (0..2usize)
            .map(|k| {
                let (lock, flags) = (lock.clone(), flags.clone());
                thread::spawn(move || {
                    let _g = lock.write(10 * k as u64, 10 * k as u64 + 10).unwrap();
                    // Relaxed: only progress is observed, no data.
                    flags[k].store(true, Ordering::Relaxed);
                    while !flags[1 - k].load(Ordering::Relaxed) {
                        thread::yield_now();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
}

/// Address-ordered nesting: a set holding [0, 10) asks for [15, 30) while
/// another thread asks for [5, 20). Under plain FIFO this deadlocks when the
/// [5, 20) request arrives in between; loom reports a deadlock if any
/// interleaving blocks every thread.
#[test]
fn nested_set_does_not_deadlock() {
    loom::model(|| {
        let s = shared();
        let s1 = s.clone();
        let t = thread::spawn(move || {
            let _g = s1.lock.write(5, 20).unwrap();
            s1.bump();
        });
        {
            let mut set = s.lock.set();
            set.write(0, 10).unwrap();
            set.write(15, 30).unwrap();
            s.bump();
        }
        t.join().unwrap();
        assert_eq!(s.get(), 2);
    });
}

/// R8 (Dekker): a fast-path acquire racing a slow-path overlapping acquire.
/// Thread A asks for [40, 50) with nothing in the table (the fast path);
/// the main thread's set holds [0, 10) and then asks for [35, 45), a nested
/// request, which always goes through the table. Whichever comes second
/// must see the other: A's publish against the set's `slow` increment. Both
/// write the data; loom reports the race if they ever overlap.
#[test]
fn fast_acquire_vs_slow_overlapping_acquire() {
    loom::model(|| {
        let s = shared();
        let s1 = s.clone();
        let a = thread::spawn(move || {
            let _g = s1.lock.write(40, 50).unwrap();
            s1.bump();
        });
        {
            let mut set = s.lock.set();
            set.write(0, 10).unwrap();
            set.write(35, 45).unwrap();
            s.bump();
        }
        a.join().unwrap();
        assert_eq!(s.get(), 2);
        assert_eq!(s.lock.requests(), 0);
    });
}

/// R7 with the slots split by mode: a reader checks only the writers'
/// slots. Two fast readers of overlapping ranges hold at once (each waits,
/// holding, until the other holds: they never exclude each other although
/// neither loads the other's slot), and a writer overlapping both
/// (`try_write`, so it never queues in the readers' way) is granted only
/// when neither holds: the readers' `get`s never race its `bump`, and a
/// reader's value does not change while it holds. Removing the readers'
/// check of the writers' slots, or the writer's of the readers', fails it.
#[test]
fn fast_readers_share_and_exclude_a_writer() {
    // Preemption bound 2: at 3 it ran for over 5 minutes after R11/R12
    // (about 27 s at 2; fourteenth session). The readers' spin until both
    // hold multiplies every extra step of the writer's refused `try_write`.
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(|| {
        let s = shared();
        let flags = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
        let hs: Vec<_> = [(0u64, 10u64), (5, 15)]
            .into_iter()
            .enumerate()
            .map(|(k, (a, b))| {
                let (s, flags) = (s.clone(), flags.clone());
                thread::spawn(move || {
                    let _g = s.lock.read(a, b).unwrap();
                    let v = s.get();
                    // Relaxed: only progress is observed, no data.
                    flags[k].store(true, Ordering::Relaxed);
                    while !flags[1 - k].load(Ordering::Relaxed) {
                        thread::yield_now();
                    }
                    assert_eq!(s.get(), v, "a writer ran while a reader held");
                })
            })
            .collect();
        if let Ok(_g) = s.lock.try_write(8, 9) {
            // A switch point inside the critical section (loom preempts
            // only at atomics and yields), so readers can run into it.
            thread::yield_now();
            s.bump();
        }
        for h in hs {
            h.join().unwrap();
        }
        assert!(s.get() <= 1);
        assert_eq!(s.lock.requests(), 0);
    });
}

/// Two cells, one in each half of `[0, 10)`.
struct Halves {
    lock: RangeLock,
    lo: UnsafeCell<u32>,
    hi: UnsafeCell<u32>,
}

impl Halves {
    /// Caller holds a write lock covering the cell.
    fn bump(c: &UnsafeCell<u32>) -> u32 {
        c.with_mut(|p| {
            // SAFETY: exclusive by the range lock; loom checks it.
            unsafe {
                *p += 1;
                *p
            }
        })
    }
}

/// R10, `narrow`: a writer holds `[0, 10)`, writes the low cell, narrows
/// to `[5, 10)` and writes the high one. Writers of `[0, 5)` and `[5, 10)`
/// arrive at any point: the low one may run as soon as the narrow is
/// done and must see the holder's write (loom reports a race otherwise),
/// the high one only after the release, and the low one completes before
/// the holder lets go of `[5, 10)`. With `table`, two disjoint
/// writers fill the fast slots first, so the holder and the others go
/// through the table (rekey and the count hand-off); without, the holder
/// takes the fast path (the slot's new bounds and the R8 re-check).
fn narrow_releases_the_part_given_up(table: bool) {
    loom::model(move || {
        let s = Arc::new(Halves {
            lock: RangeLock::new(),
            lo: UnsafeCell::new(0),
            hi: UnsafeCell::new(0),
        });
        let fill = table.then(|| {
            (
                s.lock.write(100, 101).unwrap(),
                s.lock.write(200, 201).unwrap(),
            )
        });
        let mut g = s.lock.write(0, 10).unwrap();
        let low_done = Arc::new(AtomicBool::new(false));
        let low = {
            let (s, done) = (s.clone(), low_done.clone());
            thread::spawn(move || {
                let g = s.lock.write(0, 5).unwrap();
                assert_eq!(Halves::bump(&s.lo), 2, "ran before the holder's write");
                drop(g);
                // Relaxed: progress only.
                done.store(true, Ordering::Relaxed);
            })
        };
        let high = {
            let s = s.clone();
            thread::spawn(move || {
                let _g = s.lock.write(5, 10).unwrap();
                assert_eq!(Halves::bump(&s.hi), 2, "ran inside the narrowed hold");
            })
        };
        Halves::bump(&s.lo);
        g.narrow(5, 10).unwrap();
        thread::yield_now();
        Halves::bump(&s.hi);
        // The low writer completes while we still hold `[5, 10)` (a narrow
        // that released nothing would spin here forever: loom fails it).
        while !low_done.load(Ordering::Relaxed) {
            thread::yield_now();
        }
        drop(g);
        low.join().unwrap();
        high.join().unwrap();
        drop(fill);
        assert_eq!(s.lock.requests(), 0);
    });
}

#[test]
fn narrow_fast_holder() {
    narrow_releases_the_part_given_up(false);
}

#[test]
fn narrow_table_holder() {
    narrow_releases_the_part_given_up(true);
}

/// R11: a top-level request that goes through the table only because
/// another request is there (the main thread's set holds a nested request
/// in the table while the two threads run, so `slow > 0`), and waits for
/// nothing, is held in a fast-path slot published under the mutex. Two
/// such requests on overlapping ranges ([40, 50) and [45, 55)), from two
/// threads, must still exclude each other, whichever of them is converted
/// or queues. Both write the data; loom reports the race if they ever
/// overlap. (With the set taken after the spawns, so that the threads may
/// also go fast before it, the model took about 3 minutes; the breaker's
/// `breaker_s14` models cover those orders.)
#[test]
fn converted_table_grants_exclude_each_other() {
    loom::model(|| {
        let s = shared();
        let spawn = |a: u64, b: u64| {
            let s = s.clone();
            thread::spawn(move || {
                let _g = s.lock.write(a, b).unwrap();
                s.bump();
            })
        };
        {
            let mut set = s.lock.set();
            set.write(0, 10).unwrap();
            set.write(20, 30).unwrap();
            let t1 = spawn(40, 50);
            let t2 = spawn(45, 55);
            t1.join().unwrap();
            t2.join().unwrap();
        }
        assert_eq!(s.get(), 2);
        assert_eq!(s.lock.requests(), 0);
    });
}

/// R12: a `try_write` refused on the fast path by a conflicting holder, with
/// the holder's critical section racing: when the `try_write` succeeds, it
/// is ordered after the holder's (R9, through the slot word); when it is
/// refused, nothing is left behind (no slot, no table request, `slow` 0),
/// so a later blocking request is granted.
#[test]
fn refused_try_leaves_nothing() {
    loom::model(|| {
        let s = shared();
        let s1 = s.clone();
        let a = thread::spawn(move || {
            let _g = s1.lock.write(0, 10).unwrap();
            s1.bump();
        });
        if let Ok(_g) = s.lock.try_write(5, 15) {
            s.bump();
        }
        a.join().unwrap();
        assert_eq!(s.lock.requests(), 0);
        let _g = s.lock.write(0, 20).unwrap();
        assert!((2..=3).contains(&s.bump()));
    });
}

/// R8 with R12's `granted` bit: a table waiter that saw a conflict in a
/// slot must have a release (and its re-check) still to come. The main
/// thread holds [40, 50) on the fast path; thread M takes [0, 10),
/// unrelated, on the fast path (its slot goes claimed, published while it
/// checks, then granted) while thread W queues for [45, 55), waiting for
/// the main thread's slot. The main thread's release re-checks W, and may
/// read M's slot while M marks it granted. That read must count as M's
/// request (same `gen`), not as a slot that changed (a conflict W would
/// then wait out, with no release of M's to come before W is through: loom
/// reports the deadlock when the two state loads are compared with the
/// `granted` bit). Preemption bound 2 (it catches that; bound 3 takes
/// about 2 minutes).
#[test]
fn granting_a_slot_strands_no_waiter() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(|| {
        let s = shared();
        let g = s.lock.write(40, 50).unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let m = {
            let (s, done) = (s.clone(), done.clone());
            thread::spawn(move || {
                let _g = s.lock.write(0, 10).unwrap();
                // Held until W is through: only W's grant ends the model.
                while !done.load(Ordering::Acquire) {
                    thread::yield_now();
                }
            })
        };
        let w = {
            let s = s.clone();
            thread::spawn(move || {
                let _g = s.lock.write(45, 55).unwrap();
                s.bump();
            })
        };
        s.until_waiting(1);
        drop(g);
        w.join().unwrap();
        done.store(true, Ordering::Release);
        m.join().unwrap();
        assert_eq!(s.get(), 1);
        assert_eq!(s.lock.requests(), 0);
    });
}
