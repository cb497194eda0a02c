//! breaker14: loom models of R11 (a table grant that waits for nothing is
//! held in a fast-path slot) and R12 (a `try_` refused by a fast-path
//! holder skips the table), DESIGN §7.1, and of the R-M5 hand-off
//! (§4.8, "Freeing tables") at the range-lock level.
//!
//! `slow > 0` is forced where a model needs the table path: the main
//! thread's set holds a nested request, which is always a table node
//! (R5/R7), so every other top-level request goes through the table and,
//! waiting for nothing, is converted (R11).
//!
//! Data protected by a range is a `loom::cell::UnsafeCell`: loom reports
//! any two accesses not ordered by the lock.
//!
//! The nine non-ignored models take about 15 s together (release, one
//! test thread; `converted_grant_narrow_vs_writer` 7 s at bound 2, 123 s
//! at bound 3). Mutations (all reverted): R11 without `before == 0`: five
//! models fail (the chain, both FIFO models, the narrow and the refused
//! try); the decrement of `slow` after a conversion Relaxed instead of
//! Release (a fast requester that reads 0 from it need not see the slot):
//! `chain_of_three_writers_with_conversions` and (at bound 3)
//! `refused_try_vs_blocking_table_requester` fail; the fence of
//! `recheck_fast_waiters` removed (R8's and R-M5's release fence):
//! `handoff_refused_by_converted_holder` reports the lost free step, the
//! other two hand-off models a deadlock (a table waiter never re-checked).
//!
//! FINDING at 09aa07c: `two_try_writes_on_a_free_lock_one_wins` (fixed since)
//! fails: with R12 two `try_write`s of one range of a free lock can both
//! be refused; with R12's early return disabled it passes.

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering, fence};
use loom::thread;
use maple_rcu::RangeLock;

struct Shared {
    lock: RangeLock,
    /// One cell per contested area (index chosen by the model).
    cells: [UnsafeCell<u32>; 2],
}

fn shared() -> Arc<Shared> {
    Arc::new(Shared {
        lock: RangeLock::new(),
        cells: [UnsafeCell::new(0), UnsafeCell::new(0)],
    })
}

impl Shared {
    /// Caller holds a write lock covering cell `c`'s area.
    fn bump(&self, c: usize) -> u32 {
        self.cells[c].with_mut(|p| {
            // SAFETY: exclusive by the range lock; loom checks it.
            unsafe {
                *p += 1;
                *p
            }
        })
    }

    /// Caller holds a lock covering cell `c`'s area.
    fn get(&self, c: usize) -> u32 {
        // SAFETY: no writer inside by the range lock; loom checks it.
        self.cells[c].with(|p| unsafe { *p })
    }

    /// Yields until `n` requests wait in the table (fixes arrival order).
    fn until_waiting(&self, n: usize) {
        while format!("{:?}", self.lock).matches("waiting").count() != n {
            thread::yield_now();
        }
    }
}

fn model(bound: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.max_branches = 100_000;
    b.preemption_bound = Some(bound);
    b.check(f);
}

/// Holds a nested request in the table for the whole closure (`slow > 0`).
fn with_table_in_use(s: &Shared, f: impl FnOnce()) {
    let mut set = s.lock.set();
    set.write(1000, 1010).unwrap();
    set.write(1020, 1030).unwrap();
    f();
    drop(set);
}

/// A converted grant (R11) of [40, 60) narrows to [40, 45) while a writer
/// of [50, 55) races it (converted first, or queued on its slot). The
/// writer's access to cell 0 ([50, 55)) must be ordered after the holder's,
/// made before the narrow; cell 1 ([40, 45)) stays the holder's.
fn converted_narrow(table: bool) {
    model(2, move || {
        let s = shared();
        let s1 = s.clone();
        let a = thread::spawn(move || {
            let mut g = s1.lock.write(40, 60).unwrap();
            s1.bump(0);
            g.narrow(40, 45).unwrap();
            s1.bump(1);
        });
        let s2 = s.clone();
        let b = thread::spawn(move || {
            let _g = s2.lock.write(50, 55).unwrap();
            s2.bump(0);
        });
        let join = || {
            a.join().unwrap();
            b.join().unwrap();
        };
        if table {
            with_table_in_use(&s, join);
        } else {
            join();
        }
        assert_eq!(s.get(0), 2);
        assert_eq!(s.get(1), 1);
        assert_eq!(s.lock.requests(), 0);
    });
}

#[test]
fn converted_grant_narrow_vs_writer() {
    converted_narrow(true);
}

/// FIFO across a conversion (R11): a writer of [5, 15) queues behind a held
/// [0, 10); then a request of [12, 20), which conflicts only with the
/// queued writer (not with the holder's slot), arrives. It must not be
/// converted past the queued writer: it sees the queued writer's write.
fn converted_does_not_pass_queued(second_reads: bool) {
    model(3, move || {
        let s = shared();
        let h = s.lock.write(0, 10).unwrap();
        let s1 = s.clone();
        let a = thread::spawn(move || {
            let _g = s1.lock.write(5, 15).unwrap();
            s1.bump(0);
        });
        s.until_waiting(1);
        let s2 = s.clone();
        let b = thread::spawn(move || {
            if second_reads {
                let _g = s2.lock.read(12, 20).unwrap();
                assert_eq!(s2.get(0), 1, "reader passed the queued writer");
            } else {
                let _g = s2.lock.write(12, 20).unwrap();
                assert_eq!(s2.bump(0), 2, "writer passed the queued writer");
            }
        });
        s.until_waiting(2);
        drop(h);
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(s.lock.requests(), 0);
    });
}

#[test]
fn converted_writer_does_not_pass_queued_writer() {
    converted_does_not_pass_queued(false);
}

#[test]
fn converted_reader_does_not_pass_queued_writer() {
    converted_does_not_pass_queued(true);
}

/// R-M5 at the lock level: a "free step" `try_read`s [5, 6); refused, it
/// stores a flag, fences (SeqCst, as `defer_span`), and tries again;
/// refused again, it leaves the work to the writer in its way. The writer
/// of [0, 10) loads the flag after its release (Relaxed, as
/// `drain_deferred`). Nothing may be lost: a twice-refused step implies the
/// writer saw the flag. `table`: `slow > 0`, so the writer's grant is a
/// converted one (R11) and the `try_read`s go through the table; otherwise
/// the refusals are R12's.
fn handoff(table: bool, bound: usize) {
    model(bound, move || {
        let lock = Arc::new(RangeLock::new());
        let flag = Arc::new(AtomicBool::new(false));
        let saw = Arc::new(AtomicBool::new(false));
        let w = {
            let (lock, flag, saw) = (lock.clone(), flag.clone(), saw.clone());
            thread::spawn(move || {
                drop(lock.write(0, 10).unwrap());
                // Relaxed: as `drain_deferred`.
                saw.store(flag.load(Ordering::Relaxed), Ordering::Relaxed);
            })
        };
        let step = || {
            if lock.try_read(5, 6).is_ok() {
                return false;
            }
            flag.store(true, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            lock.try_read(5, 6).is_err()
        };
        let handed = if table {
            let mut set = lock.set();
            set.write(1000, 1010).unwrap();
            set.write(1020, 1030).unwrap();
            let h = step();
            w.join().unwrap();
            drop(set);
            h
        } else {
            let h = step();
            w.join().unwrap();
            h
        };
        assert!(
            !handed || saw.load(Ordering::Relaxed),
            "free step lost: refused twice, and the writer never saw it"
        );
        assert_eq!(lock.requests(), 0);
    });
}

#[test]
fn handoff_refused_by_fast_holder() {
    handoff(false, 3);
}

#[test]
fn handoff_refused_by_converted_holder() {
    handoff(true, 3);
}

/// R12's refusal next to a blocking table requester: A holds [0, 10) on
/// the fast path, a `try_write` of [5, 15) races a blocking writer of
/// [5, 15). Nothing is left behind and the blocking writer is granted.
#[test]
fn refused_try_vs_blocking_table_requester() {
    model(2, || {
        let s = shared();
        let s1 = s.clone();
        let a = thread::spawn(move || {
            let _g = s1.lock.write(0, 10).unwrap();
            s1.bump(0);
        });
        let s2 = s.clone();
        let b = thread::spawn(move || {
            let _g = s2.lock.write(5, 15).unwrap();
            s2.bump(0);
        });
        if let Ok(_g) = s.lock.try_write(5, 15) {
            s.bump(0);
        }
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(s.lock.requests(), 0);
        let _g = s.lock.write(0, 20).unwrap();
        assert!((2..=3).contains(&s.get(0)));
    });
}

/// A chain of three writers, [0, 10), [5, 15) and [12, 20): the outer two
/// never conflict, the middle one conflicts with both. Cell 0 is [5, 10),
/// cell 1 is [12, 15). Whatever mix of fast grants, conversions (R11) and
/// queued requests the interleaving makes, the accesses are ordered.
#[test]
fn chain_of_three_writers_with_conversions() {
    model(2, || {
        let s = shared();
        let s1 = s.clone();
        let a = thread::spawn(move || {
            let _g = s1.lock.write(0, 10).unwrap();
            s1.bump(0);
        });
        let s2 = s.clone();
        let b = thread::spawn(move || {
            let _g = s2.lock.write(5, 15).unwrap();
            s2.bump(0);
            s2.bump(1);
        });
        {
            let _g = s.lock.write(12, 20).unwrap();
            s.bump(1);
        }
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(s.get(0), 2);
        assert_eq!(s.get(1), 2);
        assert_eq!(s.lock.requests(), 0);
    });
}

/// [`chain_of_three_writers_with_conversions`] with a reader in the
/// middle: [0, 10) written, [5, 15) read (its conversion, R11, lands in a
/// reader slot, which a fast writer of [12, 20) must see: a writer checks
/// every slot, R7), [12, 20) written.
#[test]
fn chain_with_converted_reader_in_the_middle() {
    model(2, || {
        let s = shared();
        let s1 = s.clone();
        let a = thread::spawn(move || {
            let _g = s1.lock.write(0, 10).unwrap();
            s1.bump(0);
        });
        let s2 = s.clone();
        let b = thread::spawn(move || {
            let _g = s2.lock.read(5, 15).unwrap();
            assert!(s2.get(0) <= 1);
            assert!(s2.get(1) <= 1);
        });
        {
            let _g = s.lock.write(12, 20).unwrap();
            s.bump(1);
        }
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(s.lock.requests(), 0);
    });
}

/// Two `try_write`s of the same range of a free lock, at once: nothing is
/// held or waiting, so at least one of them must be granted ("WouldBlock:
/// would have had to wait"). Before R12 this held: the two fast attempts
/// may refuse each other, but each retreats (frees its slot) before its
/// table path, and the later table scan finds the other's slot freed.
/// With R12 neither goes on to the table: both refused. Failed at 09aa07c
/// (and passed with R12's early return disabled); fixed by the slot's
/// `granted` bit: R12 refuses only on a granted holder.
#[test]
fn two_try_writes_on_a_free_lock_one_wins() {
    model(3, || {
        let lock = Arc::new(RangeLock::new());
        let won = Arc::new(AtomicBool::new(false));
        let t = {
            let (lock, won) = (lock.clone(), won.clone());
            thread::spawn(move || {
                if lock.try_write(0, 10).is_ok() {
                    // Relaxed: read after join.
                    won.store(true, Ordering::Relaxed);
                }
            })
        };
        let me = lock.try_write(0, 10).is_ok();
        t.join().unwrap();
        assert!(
            me || won.load(Ordering::Relaxed),
            "both try_writes refused on a free lock"
        );
        assert_eq!(lock.requests(), 0);
    });
}

/// R-M5 with two writers of [0, 10) (the second may queue behind the
/// first in the table, or be converted after it, R11) and a free step's
/// two `try_read`s of [5, 6) in between: a step refused twice was seen by
/// at least one of the writers' loads after their releases.
#[test]
fn handoff_between_two_writers() {
    handoff_two_writers(2);
}

/// [`handoff_between_two_writers`] at preemption bound 3.
#[test]
#[ignore = "about 30 s"]
fn handoff_between_two_writers_bound3() {
    handoff_two_writers(3);
}

fn handoff_two_writers(bound: usize) {
    model(bound, || {
        let lock = Arc::new(RangeLock::new());
        let flag = Arc::new(AtomicBool::new(false));
        let saw = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
        let ws: Vec<_> = (0..2usize)
            .map(|k| {
                let (lock, flag, saw) = (lock.clone(), flag.clone(), saw.clone());
                thread::spawn(move || {
                    drop(lock.write(0, 10).unwrap());
                    // Relaxed: as `drain_deferred`.
                    saw[k].store(flag.load(Ordering::Relaxed), Ordering::Relaxed);
                })
            })
            .collect();
        let handed = lock.try_read(5, 6).is_err() && {
            flag.store(true, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            lock.try_read(5, 6).is_err()
        };
        for w in ws {
            w.join().unwrap();
        }
        assert!(
            !handed || saw.iter().any(|s| s.load(Ordering::Relaxed)),
            "free step lost between two writers"
        );
        assert_eq!(lock.requests(), 0);
    });
}
