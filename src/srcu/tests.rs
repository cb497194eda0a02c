//! Unit tests of the state machine and counters (threaded tests live in
//! tests/srcu.rs).

use super::*;
use std::sync::Arc as StdArc;
use std::sync::atomic::AtomicUsize as StdAtomicUsize;

fn phase(d: &Srcu) -> u64 {
    d.gp.gp_seq.load(Ordering::Relaxed) & PHASE_MASK
}

fn completed_gps(d: &Srcu) -> u64 {
    completed(d.gp.gp_seq.load(Ordering::Relaxed))
}

fn counter() -> (StdArc<StdAtomicUsize>, impl Fn() -> usize) {
    let c = StdArc::new(StdAtomicUsize::new(0));
    let c2 = c.clone();
    (c, move || c2.load(Ordering::Relaxed))
}

#[test]
fn snapshot_needs_a_grace_period_that_starts_later() {
    assert_eq!(snapshot(0), 1); // idle, 0 done: the next one
    assert_eq!(snapshot(SCAN1), 2); // the current one may have scanned already
    assert_eq!(snapshot(SCAN2), 2);
    assert_eq!(snapshot(4 * 7), 8);
    assert_eq!(snapshot(4 * 7 + SCAN2), 9);
}

#[test]
fn guard_counts_balance_per_index() {
    for d in [Srcu::new(), Srcu::with_fence_readers()] {
        assert!(d.drained(0) && d.drained(1));
        let g = d.read();
        assert_eq!(g.idx, 0);
        assert!(!d.drained(0));
        assert!(d.drained(1));
        drop(g);
        assert!(d.drained(0));
    }
}

#[test]
fn poll_is_idle_without_requests() {
    let d = Srcu::new();
    d.poll().unwrap();
    assert_eq!((completed_gps(&d), phase(&d)), (0, IDLE));
}

#[test]
fn grace_period_walks_scan1_flip_scan2() {
    let d = Srcu::new();
    let (c, ran) = counter();
    let g0 = d.read(); // on index 0
    d.call(move || {
        c.fetch_add(1, Ordering::Relaxed);
    });
    d.poll().unwrap();
    // Index 1 was drained, so the GP flipped and now waits for index 0.
    assert_eq!((completed_gps(&d), phase(&d)), (0, SCAN2));
    assert_eq!(d.idx.load(Ordering::Relaxed), 1);
    let g1 = d.read(); // after the flip: index 1, not waited for
    assert_eq!(g1.idx, 1);
    d.poll().unwrap();
    assert_eq!(
        (phase(&d), ran()),
        (SCAN2, 0),
        "reader on the old index holds the GP"
    );
    drop(g0);
    d.poll().unwrap();
    assert_eq!((completed_gps(&d), phase(&d), ran()), (1, IDLE, 1));
    // The next GP drains index 0 (empty), flips back to 0 and waits for g1.
    d.call(|| {});
    d.poll().unwrap();
    assert_eq!((completed_gps(&d), phase(&d)), (1, SCAN2));
    assert_eq!(d.idx.load(Ordering::Relaxed), 2);
    drop(g1);
    d.poll().unwrap();
    assert_eq!((completed_gps(&d), phase(&d)), (2, IDLE));
    assert_eq!(d.idx.load(Ordering::Relaxed), 2);
}

#[test]
fn callback_queued_mid_grace_period_waits_for_the_next() {
    let d = Srcu::new();
    let order = StdArc::new(Mutex::new(Vec::new()));
    let g = d.read();
    let o = order.clone();
    d.call(move || lock(&o).push(1));
    d.poll().unwrap(); // GP 1 in Scan2, held by g
    let o = order.clone();
    d.call(move || lock(&o).push(2));
    {
        let q = lock(&d.gp.queue);
        let needs: Vec<u64> = q.entries.iter().map(|(n, _)| *n).collect();
        assert_eq!(needs, [1, 2]);
        assert_eq!(q.requested, 2);
    }
    drop(g);
    d.poll().unwrap(); // completes GP 1, runs 1, then GP 2 at once (no readers), runs 2
    assert_eq!(completed_gps(&d), 2);
    assert_eq!(*lock(&order), [1, 2]);
}

#[test]
fn poll_never_waits_for_a_held_guard() {
    let d = Srcu::new();
    let (c, ran) = counter();
    let _g = d.read();
    for _ in 0..10 * POLL_EVERY {
        let c = c.clone();
        d.call(move || {
            c.fetch_add(1, Ordering::Relaxed);
        });
    }
    let t = std::time::Instant::now();
    for _ in 0..100 {
        d.poll().unwrap();
    }
    assert!(t.elapsed() < Duration::from_secs(1));
    assert_eq!(ran(), 0);
    assert_eq!(lock(&d.gp.queue).pending, 10 * POLL_EVERY);
}

struct Counted(StdArc<StdAtomicUsize>);
impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Queueing advances grace periods every POLL_EVERY entries but runs
/// nothing (S11); one later `poll` then frees everything at once. Such
/// opportunistic starts are spaced by MIN_GP_GAP, so a fast burst may
/// complete only the first.
#[test]
fn retire_advances_opportunistically_but_runs_nothing() {
    let d = Srcu::new();
    let (c, freed) = counter();
    for _ in 0..10 * POLL_EVERY {
        d.retire(Box::new(Counted(c.clone())));
    }
    assert_eq!(freed(), 0, "retire ran a destructor");
    assert!(completed_gps(&d) >= 1, "no GP");
    d.poll().unwrap();
    assert_eq!(freed(), 10 * POLL_EVERY);
    d.barrier().unwrap();
    assert_eq!(freed(), 10 * POLL_EVERY);
    assert_eq!(lock(&d.gp.queue).pending, 0);
}

/// `set_min_gp_gap` is per domain: with an hour's gap, a domain whose first
/// opportunistic start is done starts no second one for a burst below
/// PRESSURE, while a domain left at the default, fed the same burst after
/// sleeping past MIN_GP_GAP, does; with a zero gap every POLL_EVERY-th
/// call starts one.
#[test]
fn min_gp_gap_is_per_domain() {
    let (c, freed) = counter();
    let burst = |d: &Srcu| {
        for _ in 0..POLL_EVERY {
            d.retire(Box::new(Counted(c.clone())));
        }
    };
    let slow = Srcu::new();
    slow.set_min_gp_gap(Duration::from_secs(3600));
    let default = Srcu::new();
    let eager = Srcu::new();
    eager.set_min_gp_gap(Duration::ZERO);
    for d in [&slow, &default, &eager] {
        burst(d);
        assert!(completed_gps(d) >= 1, "the first start is always allowed");
    }
    std::thread::sleep(MIN_GP_GAP * 2);
    for d in [&slow, &default, &eager] {
        let before = completed_gps(d);
        burst(d);
        let started = completed_gps(d) > before;
        assert_eq!(
            started,
            !std::ptr::eq(d, &slow),
            "gap of the domain ignored"
        );
    }
    let before = completed_gps(&eager);
    for _ in 0..4 {
        burst(&eager);
    }
    assert!(
        completed_gps(&eager) >= before + 4,
        "a zero gap still spaced"
    );
    for d in [&slow, &default, &eager] {
        d.barrier().unwrap();
    }
    assert_eq!(freed(), 10 * POLL_EVERY);
}

/// `postponing` moves the opportunistic advance of a queueing call out of
/// the closure (the mm writers' tree commit) to its end: inside, crossing
/// POLL_EVERY starts no grace period; when the closure returns, the one
/// postponed advance starts and completes it (no reader). A nested call
/// leaves it to the outer one, and another domain is not postponed.
#[test]
fn postponing_moves_opportunistic_advances_after_the_closure() {
    let d = Srcu::new();
    let other = Srcu::new();
    let (c, freed) = counter();
    d.postponing(|| {
        d.postponing(|| {
            for _ in 0..POLL_EVERY {
                d.retire(Box::new(Counted(c.clone())));
            }
        });
        assert_eq!((completed_gps(&d), phase(&d)), (0, IDLE), "advanced inside");
        for _ in 0..POLL_EVERY {
            other.retire(Box::new(Counted(c.clone())));
        }
        assert!(completed_gps(&other) >= 1, "another domain was postponed");
    });
    assert!(completed_gps(&d) >= 1, "the postponed advance did not run");
    assert_eq!(freed(), 0, "an advance ran a destructor");
    d.poll().unwrap();
    other.poll().unwrap();
    assert_eq!(freed(), 2 * POLL_EVERY);
}

/// Past PRESSURE pending destructors, every POLL_EVERY-th queueing call
/// starts a grace period whatever the time since the last one, so memory
/// stays bounded by a count; the entries still run only in `poll`.
#[test]
fn pressure_overrides_the_gap_between_grace_periods() {
    let d = Srcu::new();
    let (c, freed) = counter();
    for _ in 0..PRESSURE {
        d.retire(Box::new(Counted(c.clone())));
    }
    let before = completed_gps(&d);
    for _ in 0..PRESSURE {
        d.retire(Box::new(Counted(c.clone())));
    }
    let gps = completed_gps(&d) - before;
    // One per POLL_EVERY retirements, no reader in the way.
    assert!(gps >= (PRESSURE / POLL_EVERY) as u64, "only {gps} GPs");
    assert_eq!(freed(), 0, "retire ran a destructor");
    d.poll().unwrap();
    assert_eq!(freed(), 2 * PRESSURE);
}

/// A spaced start within MIN_GP_GAP of the last start is refused (unless
/// under pressure); an `Always` start never is. Timing-robust: a round in
/// which the thread was descheduled past the gap is retried, not judged.
#[test]
fn spaced_starts_wait_min_gp_gap() {
    let mut judged = 0;
    for _ in 0..1000 {
        let mut last = LastStart::default();
        assert!(
            last.may_start(Start::Spaced, 0, MIN_GP_GAP),
            "the first start"
        );
        let t0 = last.at.unwrap();
        let spaced = last.may_start(Start::Spaced, 0, MIN_GP_GAP);
        let pressed = last.may_start(Start::Spaced, PRESSURE, MIN_GP_GAP);
        let always = last.may_start(Start::Always, 0, MIN_GP_GAP);
        if t0.elapsed() >= MIN_GP_GAP {
            continue;
        }
        assert!(!spaced, "a spaced start within the gap");
        assert!(pressed && always, "pressure or a waiter is refused");
        judged += 1;
        if judged == 10 {
            return;
        }
    }
    panic!("never ran a round within {MIN_GP_GAP:?}");
}

/// S14: an `Always` advance serves what was requested when it started,
/// and does not chase requests that keep arriving while it runs. Before,
/// a requester on another thread kept `advance` chaining grace periods (two
/// `membarrier`s each) for as long as it kept requesting: 12× the grace
/// periods of separate domains for two mm writers of one space. With a
/// 10 s gap, every start but the one a call owes is refused, so a call
/// completes at most the grace period it found running and one more.
#[test]
fn always_advance_does_not_chase_concurrent_requests() {
    let d = Srcu::new();
    d.set_min_gp_gap(std::time::Duration::from_secs(10));
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let t = std::time::Instant::now();
            while t.elapsed() < std::time::Duration::from_millis(200) {
                d.start_poll();
            }
            stop.store(true, Ordering::Relaxed);
        });
        let mut calls = 0u64;
        let mut worst = 0;
        while !stop.load(Ordering::Relaxed) {
            let before = completed_gps(&d);
            d.advance();
            worst = worst.max(completed_gps(&d) - before);
            calls += 1;
        }
        assert!(worst <= 2, "one advance completed {worst} grace periods");
        assert!(calls > 0);
    });
    // What was requested before a call is still served by it.
    let cookie = d.start_poll();
    d.advance();
    assert!(d.gp_passed(cookie), "advance left a prior request waiting");
}

#[test]
fn defer_batch_runs_each_destructor_once() {
    unsafe fn bump(p: *mut ()) {
        // SAFETY: `p` is the `&'static StdAtomicUsize` passed below.
        unsafe { &*p.cast::<StdAtomicUsize>() }.fetch_add(1, Ordering::Relaxed);
    }
    static HITS: StdAtomicUsize = StdAtomicUsize::new(0);
    let d = Srcu::new();
    let p = std::ptr::from_ref(&HITS).cast_mut().cast::<()>();
    let batch: Vec<Deferred> = (0..10)
        // SAFETY: 1. `bump` only increments a static atomic, on any thread,
        // any number of times. 2. `HITS` is static.
        .map(|_| unsafe { Deferred::new(p, bump) })
        .collect();
    let g = d.read();
    // SAFETY: each Deferred satisfies `Deferred::new` (above).
    unsafe { d.defer_batch(batch) };
    // SAFETY: an empty batch trivially satisfies the requirements.
    unsafe { d.defer_batch(Vec::new()) };
    assert_eq!(lock(&d.gp.queue).pushed, 1, "an empty batch queues nothing");
    d.poll().unwrap();
    assert_eq!(HITS.load(Ordering::Relaxed), 0);
    drop(g);
    d.barrier().unwrap();
    assert_eq!(HITS.load(Ordering::Relaxed), 10);
    d.barrier().unwrap();
    assert_eq!(HITS.load(Ordering::Relaxed), 10);
}

#[test]
fn drop_runs_pending_callbacks_in_order() {
    let order = StdArc::new(Mutex::new(Vec::new()));
    let d = Srcu::new();
    let g = d.read();
    for i in 0..5 {
        let o = order.clone();
        d.call(move || lock(&o).push(i));
        d.poll().unwrap();
    }
    drop(g);
    assert!(lock(&order).is_empty());
    drop(d);
    assert_eq!(*lock(&order), [0, 1, 2, 3, 4]);
}

#[test]
fn callbacks_may_reenter_the_domain() {
    let d = StdArc::new(Srcu::new());
    let (c, ran) = counter();
    let d2 = d.clone();
    d.call(move || {
        let c2 = c.clone();
        d2.call(move || {
            c2.fetch_add(1, Ordering::Relaxed);
        });
        d2.poll().unwrap(); // run_ready is busy (us): must not deadlock
        d2.synchronize();
        c.fetch_add(1, Ordering::Relaxed);
    });
    d.barrier().unwrap();
    assert!(ran() >= 1);
    d.barrier().unwrap();
    assert_eq!(ran(), 2);
    // The inner callback holds a clone of the domain: break the cycle.
    drop(d);
}

/// Issue 10 item 5 (c), domain side: a panicking callback used to escape
/// from whatever call ran it and leak the rest of its batch. Now every
/// callback runs, and the runner reports each panic once.
#[test]
fn panicking_callbacks_are_caught_reported_and_leak_nothing() {
    let d = Srcu::new();
    let (c, ran) = counter();
    d.call(|| panic!("first callback panic (expected by the test)"));
    for _ in 0..3 {
        let c = c.clone();
        d.call(move || {
            c.fetch_add(1, Ordering::Relaxed);
        });
    }
    d.call(|| panic!("second callback panic (expected by the test)"));
    // A batch with a panicking destructor in the middle.
    unsafe fn bump(p: *mut ()) {
        // SAFETY: `p` points at the test's counter `c`, alive until the
        // barrier that runs the batch has returned.
        unsafe { &*p.cast::<StdAtomicUsize>() }.fetch_add(1, Ordering::Relaxed);
    }
    unsafe fn boom(_: *mut ()) {
        panic!("batch destructor panic (expected by the test)");
    }
    let p = std::ptr::from_ref(&*c).cast_mut().cast::<()>();
    // SAFETY: Deferred::new: 1. `bump` only bumps an atomic and `boom`
    // touches nothing, so both may run on any thread; 2. the barrier below
    // runs the batch while `c` is still alive.
    let batch = unsafe {
        vec![
            Deferred::new(p, bump),
            Deferred::new(p, boom),
            Deferred::new(p, bump),
        ]
    };
    // SAFETY: as above.
    unsafe { d.defer_batch(batch) };
    let err = d.barrier().unwrap_err();
    assert_eq!(err.count(), 3);
    assert_eq!(
        err.message(),
        Some("first callback panic (expected by the test)")
    );
    assert_eq!(ran(), 5, "a panic skipped or leaked the rest");
    d.call(|| {});
    d.barrier().unwrap(); // reported once; nothing poisoned or lost
}

/// The domain's drop runs every pending callback, then re-raises the first
/// panic (it has no caller to return a report to).
#[test]
fn drop_runs_everything_then_resumes_the_first_panic() {
    let d = Srcu::new();
    let (c, ran) = counter();
    let g = d.read(); // keeps everything pending until the drop
    d.call(|| panic!("drop-time callback panic (expected by the test)"));
    {
        let c = c.clone();
        d.call(move || {
            c.fetch_add(1, Ordering::Relaxed);
        });
    }
    d.poll().unwrap();
    assert_eq!(ran(), 0);
    drop(g);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(d)));
    let payload = r.unwrap_err();
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"drop-time callback panic (expected by the test)")
    );
    assert_eq!(ran(), 1);
}

#[test]
fn guard_dropped_during_thread_teardown_uses_the_fallback_slot() {
    use std::cell::RefCell;
    static D: std::sync::LazyLock<Srcu> = std::sync::LazyLock::new(Srcu::new);
    struct Holder(RefCell<Option<SrcuGuard<'static>>>);
    std::thread_local! {
        static HOLDER: Holder = const { Holder(RefCell::new(None)) };
    }
    impl Drop for Holder {
        fn drop(&mut self) {
            // Runs after this thread's registration is gone: both the unlock
            // of the held guard and this new read go to the fallback slot.
            drop(self.0.borrow_mut().take());
            drop(D.read());
        }
    }
    std::thread::spawn(|| {
        // Register HOLDER's destructor before the srcu registration's, so
        // that it runs after it (destructors run in reverse order).
        HOLDER.with(|_| {});
        let g = D.read();
        HOLDER.with(|h| *h.0.borrow_mut() = Some(g));
    })
    .join()
    .unwrap();
    assert_eq!(slots::tests::fallback_unlocks(&D.slots, 0), 2);
    assert!(D.drained(0) && D.drained(1));
    D.synchronize();
}

#[test]
fn slot_cache_never_outlives_its_domain() {
    // Same stack slot, so very likely the same address: the cache is keyed
    // by uid, not address, so the new domain must count in its own table.
    let mut d = Srcu::new();
    drop(d.read());
    for _ in 0..3 {
        d = Srcu::new();
        let g = d.read();
        assert!(!d.drained(0), "lock went to a dead domain's slot");
        drop(g);
        assert!(d.drained(0));
    }
    // Alternating domains miss the one-entry cache but still count right.
    let (a, b) = (Srcu::new(), Srcu::new());
    let ga = a.read();
    let gb = b.read();
    let ga2 = a.read();
    drop(gb);
    assert!(b.drained(0) && !a.drained(0));
    drop((ga, ga2));
    assert!(a.drained(0));
}

/// S12: a burst held back by a reader leaves no peak-sized queue behind
/// once it drains. Fails without the shrink in `run_ready` (capacity stays
/// at the burst's ~16k entries).
#[test]
fn drained_queue_gives_a_burst_capacity_back() {
    let d = Srcu::new();
    let (c, ran) = counter();
    let g = d.read();
    for _ in 0..10_000 {
        let c = c.clone();
        d.call(move || {
            c.fetch_add(1, Ordering::Relaxed);
        });
    }
    assert!(lock(&d.gp.queue).entries.capacity() >= 10_000);
    drop(g);
    d.barrier().unwrap();
    assert_eq!(ran(), 10_000);
    let q = lock(&d.gp.queue);
    assert!(q.entries.is_empty());
    assert!(
        q.entries.capacity() <= QUEUE_KEEP,
        "kept {} entries' capacity",
        q.entries.capacity()
    );
}
