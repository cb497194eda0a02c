//! Unit tests of the request protocol; threaded fairness and stress tests
//! are in tests/rangelock.rs, loom models in tests/loom/rangelock.rs.

use super::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Waits (polling) until `lock` has `n` requests; panics after 5 s.
fn until_requests(lock: &RangeLock, n: usize) {
    let t0 = Instant::now();
    while lock.requests() != n {
        assert!(t0.elapsed() < Duration::from_secs(5), "{lock:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn validate(lock: &RangeLock) {
    sync::lock(&lock.table).validate();
}

#[test]
fn bad_input_is_a_typed_error() {
    let l = RangeLock::new();
    assert_eq!(
        l.write(5, 4).unwrap_err(),
        RangeLockError::Inverted { start: 5, end: 4 }
    );
    assert_eq!(
        l.read(7, 7).unwrap_err(),
        RangeLockError::Empty { start: 7 }
    );
    assert_eq!(
        l.try_read(u64::MAX, 0).unwrap_err(),
        RangeLockError::Inverted {
            start: u64::MAX,
            end: 0
        }
    );
    assert_eq!(
        l.wait(3, 3).unwrap_err(),
        RangeLockError::Empty { start: 3 }
    );
    let mut s = l.set();
    assert_eq!(
        s.write(9, 1).unwrap_err(),
        RangeLockError::Inverted { start: 9, end: 1 }
    );
    assert!(s.is_empty());
    assert_eq!(l.requests(), 0);
    // The full u64 span is a valid range.
    let g = l.write(0, u64::MAX).unwrap();
    assert_eq!((g.start(), g.end()), (0, u64::MAX));
}

#[test]
fn readers_share_writers_exclude_disjoint_never_conflict() {
    let l = RangeLock::new();
    let r1 = l.read(0, 100).unwrap();
    let r2 = l.try_read(50, 150).unwrap();
    assert_eq!(
        l.try_write(99, 100).unwrap_err(),
        RangeLockError::WouldBlock
    );
    assert_eq!(
        l.try_write(140, 141).unwrap_err(),
        RangeLockError::WouldBlock
    );
    let w = l.try_write(150, 200).unwrap(); // adjacent: half-open
    assert_eq!(
        l.try_read(199, 300).unwrap_err(),
        RangeLockError::WouldBlock
    );
    let w2 = l.try_write(200, 300).unwrap();
    validate(&l);
    drop(r1);
    assert!(l.try_write(0, 50).is_ok());
    assert_eq!(l.try_write(0, 51).unwrap_err(), RangeLockError::WouldBlock);
    drop((r2, w, w2));
    assert_eq!(l.requests(), 0);
    assert!(l.try_write(0, u64::MAX).is_ok());
}

#[test]
fn fifo_a_waiting_request_blocks_later_conflicting_ones() {
    let l = Arc::new(RangeLock::new());
    let w = l.write(0, 10).unwrap();
    let l2 = l.clone();
    let waiter = std::thread::spawn(move || {
        let r = l2.read(5, 15).unwrap();
        (r.start(), r.end())
    });
    until_requests(&l, 2);
    // [12, 20) is not held by anyone, but a reader that arrived earlier waits
    // on [5, 15): a writer must queue behind it; a reader need not.
    assert_eq!(l.try_write(12, 20).unwrap_err(), RangeLockError::WouldBlock);
    let r = l.try_read(12, 20).unwrap();
    let s = format!("{l:?}");
    assert!(s.contains("R [0x5, 0xf) waiting"), "{s}");
    assert!(s.contains("W [0x0, 0xa) held"), "{s}");
    validate(&l);
    drop(w);
    assert_eq!(waiter.join().unwrap(), (5, 15));
    drop(r);
    assert_eq!(l.requests(), 0);
}

#[test]
fn nested_request_goes_ahead_of_waiting_one() {
    // The deadlock that plain FIFO would have: this thread holds [0, 10),
    // another waits for [5, 20) (behind us), and we want [15, 30).
    let l = Arc::new(RangeLock::new());
    let mut set = l.set();
    set.write(0, 10).unwrap();
    let l2 = l.clone();
    let other = std::thread::spawn(move || drop(l2.write(5, 20).unwrap()));
    until_requests(&l, 2);
    assert_eq!(l.try_write(15, 30).unwrap_err(), RangeLockError::WouldBlock);
    // Blocking call: would hang forever under plain FIFO.
    set.write(15, 30).unwrap();
    validate(&l);
    assert_eq!(
        set.ranges().collect::<Vec<_>>(),
        [(0, 10, RangeMode::Write), (15, 30, RangeMode::Write)]
    );
    assert_eq!(
        format!("{set:?}"),
        "[\"Write [0x0, 0xa)\", \"Write [0xf, 0x1e)\"]"
    );
    drop(set);
    other.join().unwrap();
    assert_eq!(l.requests(), 0);
}

#[test]
fn set_enforces_address_order() {
    let l = RangeLock::new();
    let mut s = l.set();
    s.read(100, 200).unwrap();
    assert_eq!(
        s.write(50, 60).unwrap_err(),
        RangeLockError::Order {
            start: 50,
            held_end: 200
        }
    );
    assert_eq!(
        s.write(199, 300).unwrap_err(),
        RangeLockError::Order {
            start: 199,
            held_end: 200
        }
    );
    s.try_write(200, 300).unwrap();
    assert_eq!(s.held_end(), 300);
    s.release_all();
    assert_eq!(l.requests(), 0);
    s.write(0, 1).unwrap(); // after release, start anywhere
    assert_eq!(l.requests(), 1);
}

#[test]
fn guard_is_released_on_another_thread_and_on_panic() {
    let l = RangeLock::new();
    let g = l.write(0, 10).unwrap();
    std::thread::scope(|s| {
        s.spawn(move || drop(g));
    });
    assert_eq!(l.requests(), 0);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _g = l.write(0, 10).unwrap();
        panic!("boom");
    }));
    assert!(r.is_err());
    assert_eq!(l.requests(), 0);
    assert!(l.try_write(0, 10).is_ok());
}

#[test]
fn debug_output() {
    let l = RangeLock::new();
    let g = l.write(0x1000, 0x2000).unwrap();
    let r = l.read(0x3000, 0x4000).unwrap();
    assert_eq!(format!("{g:?}"), "RangeWriteGuard[0x1000, 0x2000)");
    assert_eq!(format!("{r:?}"), "RangeReadGuard[0x3000, 0x4000)");
    assert_eq!(
        format!("{l:?}"),
        "RangeLock { requests: [\"W [0x1000, 0x2000) held\", \"R [0x3000, 0x4000) held\"] }"
    );
}

/// Single-threaded differential test of the table: random `try_` requests
/// and releases against a brute-force model of held ranges.
#[test]
fn try_requests_match_a_brute_force_model() {
    let l = RangeLock::new();
    let mut held: Vec<(RangeModeGuard<'_>, u64, u64, bool)> = Vec::new();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for step in 0..20_000 {
        if !held.is_empty() && rnd(3) == 0 {
            let i = rnd(held.len() as u64) as usize;
            held.swap_remove(i);
        } else if !held.is_empty() && rnd(4) == 0 {
            // Narrow a held guard to a random range: inside (granted, the
            // model shrinks) or not (NotInside, nothing changes).
            let i = rnd(held.len() as u64) as usize;
            let (s, e) = (held[i].1, held[i].2);
            let ns = s.saturating_sub(1) + rnd(e - s + 1);
            let ne = ns + 1 + rnd(e - s + 1);
            let r = held[i].0.narrow(ns, ne);
            if s <= ns && ne <= e {
                r.unwrap();
                (held[i].1, held[i].2) = (ns, ne);
            } else {
                assert!(matches!(r, Err(RangeLockError::NotInside { .. })), "{r:?}");
            }
        } else {
            let start = rnd(1000);
            let span = if rnd(8) == 0 { 500 } else { 20 };
            let end = start + 1 + rnd(span);
            let write = rnd(2) == 0;
            let expect_ok = !held
                .iter()
                .any(|&(_, s, e, w)| (w || write) && s < end && start < e);
            let got = if write {
                l.try_write(start, end).map(RangeModeGuard::W)
            } else {
                l.try_read(start, end).map(RangeModeGuard::R)
            };
            match got {
                Ok(g) => {
                    assert!(
                        expect_ok,
                        "step {step}: granted a conflicting {start}..{end}"
                    );
                    held.push((g, start, end, write));
                }
                Err(e) => {
                    assert_eq!(e, RangeLockError::WouldBlock);
                    assert!(!expect_ok, "step {step}: refused a free {start}..{end}");
                }
            }
        }
        assert_eq!(l.requests(), held.len());
        if step % 64 == 0 {
            validate(&l);
        }
    }
}

enum RangeModeGuard<'a> {
    R(RangeReadGuard<'a>),
    W(RangeWriteGuard<'a>),
}

impl RangeModeGuard<'_> {
    fn narrow(&mut self, start: u64, end: u64) -> Result<(), RangeLockError> {
        match self {
            RangeModeGuard::R(g) => g.narrow(start, end),
            RangeModeGuard::W(g) => g.narrow(start, end),
        }
    }
}

/// R10: narrowing a held write lock grants, at once, a waiter that wanted
/// only the part given up (whether the holder took the fast path or the
/// table), keeps waiting one that still overlaps, and rejects a range not
/// inside with a typed error that changes nothing.
#[test]
fn narrow_grants_waiters_of_the_part_given_up() {
    let l = Arc::new(RangeLock::new());
    // Fast path: nothing else is in the lock.
    let mut a = l.write(0, 10).unwrap();
    let spawn = |s: u64, e: u64| {
        let l = l.clone();
        std::thread::spawn(move || drop(l.write(s, e).unwrap()))
    };
    let low = spawn(0, 5);
    until_requests(&l, 2);
    // In the table now (it waits for a's slot): later requests go there.
    let mut b = l.write(100, 200).unwrap();
    let mid = spawn(100, 150);
    let high = spawn(150, 160);
    until_requests(&l, 5);
    validate(&l);
    assert_eq!(
        a.narrow(5, 11).unwrap_err(),
        RangeLockError::NotInside {
            start: 5,
            end: 11,
            held_start: 0,
            held_end: 10
        }
    );
    assert_eq!(
        a.narrow(5, 5).unwrap_err(),
        RangeLockError::Empty { start: 5 }
    );
    assert_eq!((a.start(), a.end()), (0, 10));
    a.narrow(5, 10).unwrap();
    low.join().unwrap();
    assert_eq!((a.start(), a.end()), (5, 10));
    assert_eq!(l.try_write(4, 6).unwrap_err(), RangeLockError::WouldBlock);
    b.narrow(150, 200).unwrap();
    mid.join().unwrap();
    validate(&l);
    until_requests(&l, 3);
    assert!(!high.is_finished());
    drop(b);
    high.join().unwrap();
    drop(a);
    assert_eq!(l.requests(), 0);
    validate(&l);
}

#[test]
fn waiters_are_counted_and_woken_in_a_chain() {
    // W0 held; R1, R2 (readers) and W3 queue; dropping W0 grants R1 and R2
    // together, and W3 only after both.
    let l = Arc::new(RangeLock::new());
    let w0 = l.write(0, 100).unwrap();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut hs = Vec::new();
    for (k, (s, e, w)) in [(0, 50, false), (40, 100, false), (10, 60, true)]
        .into_iter()
        .enumerate()
    {
        let (l2, o2) = (l.clone(), order.clone());
        hs.push(std::thread::spawn(move || {
            if w {
                let _g = l2.write(s, e).unwrap();
                o2.lock().unwrap().push(k);
            } else {
                let _g = l2.read(s, e).unwrap();
                o2.lock().unwrap().push(k);
                std::thread::sleep(Duration::from_millis(20));
            }
        }));
        until_requests(&l, k + 2);
    }
    validate(&l);
    drop(w0);
    for h in hs {
        h.join().unwrap();
    }
    let o = order.lock().unwrap().clone();
    assert_eq!(o[2], 2, "writer granted before the earlier readers: {o:?}");
}

/// `conflicting` reports the hull of every request a write would wait for,
/// fast-path and table alike, and nothing for a free range.
#[test]
fn conflicting_reports_the_hull_of_overlapping_requests() {
    let lock = RangeLock::new();
    assert_eq!(lock.conflicting(0, 100), Ok(None));
    let fast = lock.write(10, 20).unwrap();
    let mut set = lock.set();
    set.read(22, 25).unwrap();
    set.read(30, 40).unwrap(); // nested: through the table
    assert_eq!(lock.conflicting(0, 100), Ok(Some((10, 40))));
    assert_eq!(lock.conflicting(15, 23), Ok(Some((10, 25))));
    // By mode: with a writer among them, only the writers' hull; a
    // reader far out (here [22, 40)) does not widen it.
    assert_eq!(
        lock.conflicting_mode(0, 100),
        Ok(Some(((10, 20), RangeMode::Write)))
    );
    assert_eq!(
        lock.conflicting_mode(21, 35),
        Ok(Some(((22, 40), RangeMode::Read)))
    );
    assert_eq!(lock.conflicting(20, 22), Ok(None));
    assert_eq!(lock.conflicting(40, 50), Ok(None));
    assert!(lock.conflicting(5, 5).is_err());
    assert!(lock.try_write(15, 23).is_err());
    drop(fast);
    assert_eq!(lock.conflicting(0, 21), Ok(None));
    set.release_all();
    assert_eq!(lock.conflicting(0, 100), Ok(None));
    validate(&lock);
}

/// R11: a top-level request that takes the table path only because another
/// request is in the table, and waits for nothing, is held in a fast-path
/// slot: the table keeps only the waiting request, and `slow` counts only
/// it. Without R11 the request sits in the table and `slow` is 2.
#[test]
fn table_grant_without_wait_is_held_in_a_slot() {
    let l = Arc::new(RangeLock::new());
    let holder = l.write(0, 10).unwrap();
    assert!(matches!(holder.0.grant, Grant::Fast(_)));
    let waiter = {
        let l = Arc::clone(&l);
        std::thread::spawn(move || {
            let g = l.write(5, 15).unwrap();
            assert!(matches!(g.0.grant, Grant::Table(_)), "it waited");
        })
    };
    // The waiter is in the table (after its spin) and keeps `slow` at 1.
    let t0 = Instant::now();
    while sync::lock(&l.table).len() != 1 {
        assert!(t0.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(1));
    }
    for mode in [RangeMode::Write, RangeMode::Read] {
        let g = match mode {
            RangeMode::Write => l.write(100, 110).map(|g| g.0.grant),
            RangeMode::Read => l.read(100, 110).map(|g| g.0.grant),
        }
        .unwrap();
        assert!(matches!(g, Grant::Fast(_)), "{mode:?}: {g:?}");
        assert_eq!(sync::lock(&l.table).len(), 1, "{mode:?}");
        assert_eq!(l.slow.load(Ordering::Relaxed), 1, "{mode:?}");
    }
    // A held slot blocks the table as any fast grant does (R8).
    let g = l.write(200, 210).unwrap();
    assert!(matches!(g.0.grant, Grant::Fast(_)));
    assert_eq!(
        l.try_write(205, 300).unwrap_err(),
        RangeLockError::WouldBlock
    );
    drop(g);
    drop(holder);
    waiter.join().unwrap();
    assert_eq!(l.slow.load(Ordering::Relaxed), 0);
    assert_eq!(l.requests(), 0);
    validate(&l);
}

/// R12: a `try_` request refused because of a conflicting fast-path holder
/// never goes through the table: it is refused while the test holds the
/// table's mutex (through the table it would wait for that mutex), and
/// every slot is free again afterwards.
#[test]
fn try_refused_by_a_fast_holder_skips_the_table() {
    let l = Arc::new(RangeLock::new());
    let holder = l.write(0, 100).unwrap();
    let table = sync::lock(&l.table);
    let (tx, rx) = std::sync::mpsc::channel();
    let refuser = {
        let l = Arc::clone(&l);
        std::thread::spawn(move || {
            for i in 0..1000u64 {
                let (a, b) = (i % 90, i % 90 + 20);
                assert_eq!(l.try_read(a, b).unwrap_err(), RangeLockError::WouldBlock);
                assert_eq!(l.try_write(a, b).unwrap_err(), RangeLockError::WouldBlock);
            }
            tx.send(()).unwrap();
        })
    };
    let done = rx.recv_timeout(Duration::from_secs(5));
    drop(table);
    refuser.join().unwrap();
    assert!(done.is_ok(), "a refused try_ waited for the table's mutex");
    assert_eq!(l.slow.load(Ordering::Relaxed), 0);
    drop(holder);
    assert!(l.fast.iter().all(|s| matches!(s.request(), Ok(None))));
    assert!(l.try_write(0, 100).is_ok());
    validate(&l);
}
