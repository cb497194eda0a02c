//! Breaker's loom models: the RangeLock fast path against `try_` requests
//! on the table and against its own slot reuse (R7–R9), and rmap walkers
//! against munmap, MADV_DONTNEED and each other (docs/DESIGN.md §4.9, M10).
//! Two or three threads, a few operations each.

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use maple_rcu::RangeLock;
use maple_rcu::mm::{AddressSpace, Advice, MapFlags, Prot};

const P: u64 = 4096;
const A: u64 = 0x1000_0000;
const RW: Prot = Prot::READ.union(Prot::WRITE);
const FIXED: MapFlags = MapFlags::PRIVATE
    .union(MapFlags::ANONYMOUS)
    .union(MapFlags::FIXED);

struct Locked {
    lock: RangeLock,
    /// Data of [0, 10) and of [20, 40).
    low: UnsafeCell<u32>,
    high: UnsafeCell<u32>,
}

fn locked() -> Arc<Locked> {
    Arc::new(Locked {
        lock: RangeLock::new(),
        low: UnsafeCell::new(0),
        high: UnsafeCell::new(0),
    })
}

/// Caller holds a write lock covering `c`'s range; loom checks it.
fn bump(c: &UnsafeCell<u32>) {
    // SAFETY: exclusive by the range lock; loom reports a race otherwise.
    c.with_mut(|p| unsafe { *p += 1 });
}

/// A `try_write` through the table (the main thread's set holds a range,
/// so its second request is nested, never fast) racing the release of a
/// conflicting fast-path holder. Either it is refused, or it holds the
/// range after the holder (loom checks the data). Afterwards nothing is
/// left behind: no request, no `slow` count (a fresh fast request and a
/// blocking write over everything succeed).
#[test]
fn try_write_vs_fast_release() {
    loom::model(|| {
        let s = locked();
        let s1 = s.clone();
        let a = thread::spawn(move || {
            let g = s1.lock.write(20, 30).unwrap();
            bump(&s1.high);
            drop(g);
        });
        {
            let mut set = s.lock.set();
            set.write(0, 10).unwrap();
            bump(&s.low);
            if set.try_write(25, 35).is_ok() {
                bump(&s.high);
            }
        }
        a.join().unwrap();
        assert_eq!(s.lock.requests(), 0);
        drop(s.lock.try_write(0, 40).unwrap());
    });
}

/// Slot reuse (the `gen` in the state word): thread A takes [0, 10) and
/// then [20, 30) on the fast path, most likely in the same slot, while
/// thread B takes [25, 35): B's check must never read A's old range with
/// the new request's state (or the reverse) and grant an overlap.
#[test]
fn fast_slot_reuse_vs_fast_check() {
    loom::model(|| {
        let s = locked();
        let s1 = s.clone();
        let a = thread::spawn(move || {
            drop(s1.lock.write(0, 10).unwrap());
            let g = s1.lock.write(20, 30).unwrap();
            bump(&s1.high);
            drop(g);
        });
        let g = s.lock.write(25, 35).unwrap();
        bump(&s.high);
        drop(g);
        a.join().unwrap();
        assert_eq!(s.lock.requests(), 0);
    });
}

/// Slot reuse, the harmful order: thread A holds [20, 30) on the fast path,
/// releases it and takes [0, 10) (its next claim, likely in the same slot),
/// while thread B takes [25, 35). B's check of A's slot reads the state
/// word, the range, then the state word again: if the range could come
/// from A's *next* request while both state loads still return the old
/// one (a seqlock read without ordering of the range loads before the
/// second state load), B would see "[0, 10)" for A's old request on
/// [20, 30), take its range without waiting, and race A's old critical
/// section on the `high` data. loom reports that race.
#[test]
fn fast_slot_reuse_reads_consistent_range() {
    loom::model(|| {
        let s = locked();
        let s1 = s.clone();
        let a = thread::spawn(move || {
            let g = s1.lock.write(20, 30).unwrap();
            bump(&s1.high);
            drop(g);
            let g = s1.lock.write(0, 10).unwrap();
            bump(&s1.low);
            drop(g);
        });
        let g = s.lock.write(25, 35).unwrap();
        bump(&s.high);
        drop(g);
        a.join().unwrap();
        assert_eq!(s.lock.requests(), 0);
    });
}

fn model_family(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.max_branches = 200_000;
    b.check(f);
}

/// A space with one private page at `A` holding 1.
fn one_page() -> Arc<AddressSpace> {
    let p = Arc::new(AddressSpace::new());
    p.mmap(Some(A), P, RW, FIXED).unwrap();
    p.write(A, 1).unwrap();
    p
}

fn frame_at(mm: &AddressSpace) -> u64 {
    mm.translate(A).expect("mapped").frame
}

fn balanced(mm: &AddressSpace) {
    mm.reclaim();
    AddressSpace::check_family(&[mm]).unwrap();
    let s = mm.stats();
    assert_eq!(
        (s.frames_live, s.frames_allocated),
        (0, s.frames_freed),
        "{s:?}"
    );
}

/// `try_to_unmap` racing munmap of the page (zap under the PTL, then the
/// table's retirement): the walker ends, nothing maps the frame, and the
/// frame (and a swap entry the walker may have made) is freed exactly once.
#[test]
fn try_to_unmap_vs_munmap() {
    model_family(|| {
        let p = one_page();
        let f = frame_at(&p);
        let w = {
            let p = p.clone();
            thread::spawn(move || p.try_to_unmap(f))
        };
        p.munmap(A, P).unwrap();
        assert!(w.join().unwrap(), "an unmapped page is mapped nowhere");
        balanced(&p);
    });
}

/// `try_to_unmap` racing MADV_DONTNEED (a zap under the read lock): the
/// page reads 0 afterwards whichever came first (a swap entry is zapped
/// too), and the counts balance.
#[test]
fn try_to_unmap_vs_dontneed() {
    model_family(|| {
        let p = one_page();
        let f = frame_at(&p);
        let w = {
            let p = p.clone();
            thread::spawn(move || p.try_to_unmap(f))
        };
        p.madvise(A, P, Advice::DontNeed).unwrap();
        w.join().unwrap();
        assert_eq!(p.read(A), Ok(0));
        p.munmap(A, P).unwrap();
        balanced(&p);
    });
}

/// Two walkers on one COW-shared frame (from the parent and from the
/// child): both finish with the frame mapped nowhere, each PTE became one
/// swap entry (not two, no double swap-out), and contents survive.
#[test]
fn two_walkers_same_frame() {
    model_family(|| {
        let p = one_page();
        let c = Arc::new(p.fork());
        let f = frame_at(&p);
        let w = {
            let c = c.clone();
            thread::spawn(move || c.try_to_unmap(f))
        };
        assert!(p.try_to_unmap(f));
        assert!(w.join().unwrap());
        assert!(p.translate(A).is_none() && c.translate(A).is_none());
        AddressSpace::check_family(&[&p, &c]).unwrap();
        assert_eq!((p.read(A), c.read(A)), (Ok(1), Ok(1)));
        AddressSpace::check_family(&[&p, &c]).unwrap();
    });
}

/// Srcu, the scan pre-check (DESIGN §3.3) with two readers in two slots:
/// the lock and unlock sums are read slot by slot, so one reader leaving and
/// the other entering between the writer's unlock sum, its unfenced
/// pre-check and its fenced lock sum can make the sums agree by accident.
/// The writer replaces the value and `synchronize`s (never spaced: a
/// waiter), then frees it; neither reader may see it freed, and
/// `synchronize` must return (loom reports a livelock as a deadlock or
/// branch overflow).
#[test]
fn srcu_precheck_with_two_readers_in_two_slots() {
    use super::srcu::{Shared, model};
    model(|| {
        let s = Shared::new();
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                thread::spawn(move || s.read_and_check())
            })
            .collect();
        s.replace_and_synchronize();
        for r in readers {
            r.join().unwrap();
        }
    });
}

/// Srcu, an opportunistic start (a `retire` crossing `POLL_EVERY`, 2 under
/// loom) racing a waiter on another thread, with a reader: the waiter's
/// `synchronize` must not return before the reader that predates it, and
/// the retired values must not be freed under the reader.
#[test]
fn srcu_opportunistic_start_vs_synchronize() {
    use super::srcu::{Retired, Shared, model};
    model(|| {
        let s = Shared::new();
        let r = {
            let s = s.clone();
            thread::spawn(move || s.read_and_check())
        };
        let q = {
            let s = s.clone();
            thread::spawn(move || {
                for _ in 0..2 {
                    let old = s.publish();
                    s.domain.retire(Box::new(Retired(old)));
                }
            })
        };
        s.replace_and_synchronize();
        q.join().unwrap();
        r.join().unwrap();
        s.domain.barrier().unwrap();
    });
}
