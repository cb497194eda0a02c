//! Threaded tests of `maple_rcu::srcu` through its public API (issue 3).

#[path = "common/watchdog.rs"]
mod watchdog;

use maple_rcu::srcu::{Srcu, SrcuGuard};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

fn assert_send<T: Send>() {}
fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn auto_traits() {
    assert_send_sync::<Srcu>();
    assert_send::<SrcuGuard<'static>>();
}

/// Sets the flag when dropped, so that a failing assertion inside a
/// `thread::scope` stops the looping threads instead of hanging the test.
struct StopOnDrop<'a>(&'a AtomicBool);
impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Spawns `n` threads that call `body` until `stop` is set.
fn spawn_loops<'s, 'e: 's>(
    s: &'s thread::Scope<'s, 'e>,
    n: usize,
    stop: &'e AtomicBool,
    body: impl Fn() + Send + Clone + 'e,
) {
    for _ in 0..n {
        let body = body.clone();
        s.spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                body();
            }
        });
    }
}

/// Counts its drops.
struct Counted(Arc<AtomicUsize>);
impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn synchronize_waits_for_a_sleeping_reader() {
    let d = Srcu::new();
    let finished = AtomicBool::new(false);
    let entered = Barrier::new(2);
    thread::scope(|s| {
        s.spawn(|| {
            let g = d.read();
            entered.wait();
            thread::sleep(Duration::from_millis(100));
            finished.store(true, Ordering::Relaxed);
            drop(g);
        });
        entered.wait();
        let t = Instant::now();
        d.synchronize();
        assert!(
            finished.load(Ordering::Relaxed),
            "returned before the reader ended"
        );
        assert!(
            t.elapsed() >= Duration::from_millis(80),
            "{:?}",
            t.elapsed()
        );
    });
}

#[test]
fn synchronize_does_not_wait_for_a_reader_that_began_after_it() {
    let d = Srcu::new();
    let (release_late, late_rx) = mpsc::channel::<()>();
    let late_holding = Barrier::new(2);
    thread::scope(|s| {
        // An old reader keeps the grace period in its second scan for 150 ms.
        let old = d.read();
        let syncer = s.spawn(|| {
            let t = Instant::now();
            d.synchronize();
            t.elapsed()
        });
        thread::sleep(Duration::from_millis(30)); // the flip has happened
        let (d, late_holding) = (&d, &late_holding);
        s.spawn(move || {
            let g = d.read(); // began after synchronize: on the new index
            late_holding.wait();
            let _ = late_rx.recv_timeout(Duration::from_secs(3));
            drop(g);
        });
        late_holding.wait();
        thread::sleep(Duration::from_millis(120));
        drop(old);
        let took = syncer.join().unwrap();
        release_late.send(()).unwrap();
        assert!(
            took >= Duration::from_millis(140),
            "did not wait for the old reader: {took:?}"
        );
        assert!(
            took < Duration::from_secs(2),
            "waited for the late reader: {took:?}"
        );
    });
}

#[test]
fn callbacks_run_exactly_once_in_grace_period_order() {
    const PRODUCERS: usize = 3;
    const PER: usize = 3000;
    let d = Srcu::new();
    let ran: Arc<Vec<AtomicUsize>> =
        Arc::new((0..PRODUCERS * PER).map(|_| AtomicUsize::new(0)).collect());
    let log = Arc::new(Mutex::new(Vec::with_capacity(PRODUCERS * PER)));
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        // Readers come and go, some sleeping, so grace periods take a while.
        let reader = || {
            let g = d.read();
            thread::sleep(Duration::from_micros(50));
            drop(g);
        };
        spawn_loops(s, 2, &stop, reader);
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let (d, ran, log) = (&d, ran.clone(), log.clone());
                s.spawn(move || {
                    for i in 0..PER {
                        let id = p * PER + i;
                        let (ran, log) = (ran.clone(), log.clone());
                        d.call(move || {
                            ran[id].fetch_add(1, Ordering::Relaxed);
                            log.lock().unwrap().push(id);
                        });
                        match i % 500 {
                            0 => d.synchronize(),
                            250 => d.poll().unwrap(),
                            _ => {}
                        }
                    }
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        d.barrier().unwrap();
        stop.store(true, Ordering::Relaxed);
    });
    for (id, n) in ran.iter().enumerate() {
        assert_eq!(
            n.load(Ordering::Relaxed),
            1,
            "callback {id} ran {} times",
            n.load(Ordering::Relaxed)
        );
    }
    // Each producer's callbacks were queued one after another, so they need
    // non-decreasing grace periods and must run in queue order.
    let log = log.lock().unwrap();
    assert_eq!(log.len(), PRODUCERS * PER);
    for p in 0..PRODUCERS {
        let mine: Vec<usize> = log.iter().copied().filter(|id| id / PER == p).collect();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "producer {p} out of order"
        );
    }
}

#[test]
fn callback_queued_after_synchronize_runs_after_earlier_ones() {
    let d = Srcu::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    let g = d.read();
    for i in 0..3 {
        let l = log.clone();
        d.call(move || l.lock().unwrap().push(i));
        d.poll().unwrap();
    }
    assert!(
        log.lock().unwrap().is_empty(),
        "ran while a reader that predates it is inside"
    );
    drop(g);
    d.synchronize();
    let l = log.clone();
    d.call(move || l.lock().unwrap().push(3));
    d.barrier().unwrap();
    assert_eq!(*log.lock().unwrap(), [0, 1, 2, 3]);
}

#[test]
fn barrier_waits_for_every_queued_callback() {
    let d = Srcu::new();
    let n = Arc::new(AtomicUsize::new(0));
    let entered = Barrier::new(2);
    thread::scope(|s| {
        s.spawn(|| {
            let _g = d.read();
            entered.wait();
            thread::sleep(Duration::from_millis(50));
        });
        entered.wait();
        for _ in 0..1000 {
            let n = n.clone();
            d.call(move || {
                n.fetch_add(1, Ordering::Relaxed);
            });
        }
        assert_eq!(n.load(Ordering::Relaxed), 0, "ran under a live reader");
        let t = Instant::now();
        d.barrier().unwrap();
        assert_eq!(n.load(Ordering::Relaxed), 1000);
        assert!(t.elapsed() >= Duration::from_millis(30));
    });
    d.barrier().unwrap(); // nothing pending: returns at once
}

#[test]
fn dropping_the_domain_runs_pending_callbacks() {
    let n = Arc::new(AtomicUsize::new(0));
    let d = Srcu::new();
    {
        let _g = d.read();
        for _ in 0..100 {
            d.retire(Box::new(Counted(n.clone())));
            let n = n.clone();
            d.call(move || {
                n.fetch_add(1, Ordering::Relaxed);
            });
        }
        d.poll().unwrap();
        assert_eq!(n.load(Ordering::Relaxed), 0);
    }
    drop(d);
    assert_eq!(n.load(Ordering::Relaxed), 200);
}

#[test]
fn a_stalled_reader_delays_only_its_own_domain() {
    const N: usize = 100_000;
    let stalled = Srcu::new();
    let busy = Srcu::new();
    let freed_stalled = Arc::new(AtomicUsize::new(0));
    let freed_busy = Arc::new(AtomicUsize::new(0));
    let (release, rx) = mpsc::channel::<()>();
    let holding = Barrier::new(2);
    thread::scope(|s| {
        let release = release; // dropped on unwind too, freeing the reader
        let (stalled_ref, holding_ref) = (&stalled, &holding);
        s.spawn(move || {
            let g = stalled_ref.read();
            holding_ref.wait();
            rx.recv().unwrap();
            drop(g);
        });
        holding.wait();
        for _ in 0..1000 {
            stalled.retire(Box::new(Counted(freed_stalled.clone())));
        }
        for _ in 0..N {
            busy.retire(Box::new(Counted(freed_busy.clone())));
        }
        stalled.poll().unwrap();
        busy.poll().unwrap();
        // No barrier: the opportunistic polls alone must have reclaimed nearly all.
        let freed = freed_busy.load(Ordering::Relaxed);
        assert!(
            freed >= N - 1000,
            "busy domain reclaimed only {freed} of {N}"
        );
        assert_eq!(freed_stalled.load(Ordering::Relaxed), 0);
        busy.synchronize(); // not held up either
        busy.barrier().unwrap();
        assert_eq!(freed_busy.load(Ordering::Relaxed), N);
        release.send(()).unwrap();
    });
    stalled.barrier().unwrap();
    assert_eq!(freed_stalled.load(Ordering::Relaxed), 1000);
}

#[test]
fn guard_taken_on_one_thread_dropped_on_another() {
    let d = Srcu::new();
    let dropped = AtomicBool::new(false);
    thread::scope(|s| {
        let (tx, rx) = mpsc::channel::<SrcuGuard<'_>>();
        let (d_ref, dropped) = (&d, &dropped);
        s.spawn(move || tx.send(d_ref.read()).unwrap())
            .join()
            .unwrap();
        let dropper = s.spawn(move || {
            let g = rx.recv().unwrap();
            thread::sleep(Duration::from_millis(50));
            dropped.store(true, Ordering::Relaxed);
            drop(g);
        });
        d.synchronize();
        assert!(dropped.load(Ordering::Relaxed));
        dropper.join().unwrap();
    });
    // The counts balance although lock and unlock hit different slots.
    let t = Instant::now();
    d.synchronize();
    assert!(t.elapsed() < Duration::from_millis(500));
}

#[test]
fn thread_exits_while_its_guard_lives_on() {
    let d = Srcu::new();
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        let g = s.spawn(|| d.read()).join().unwrap(); // that thread is gone
        // New threads reuse the exited thread's id and slot meanwhile.
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..1000 {
                    drop(d.read());
                }
            })
            .join()
            .unwrap();
        }
        let done = &done;
        let d = &d;
        let syncer = s.spawn(move || {
            d.synchronize();
            done.store(true, Ordering::Relaxed);
        });
        thread::sleep(Duration::from_millis(50));
        assert!(
            !done.load(Ordering::Relaxed),
            "synchronize ignored a live guard of an exited thread"
        );
        drop(g);
        syncer.join().unwrap();
        assert!(done.load(Ordering::Relaxed));
    });
}

#[test]
fn synchronize_completes_while_readers_keep_arriving() {
    let d = Srcu::new();
    let stop = AtomicBool::new(false);
    let reads = AtomicUsize::new(0);
    thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        let reader = || {
            // Overlapping readers: a new one starts before the old ends.
            let a = d.read();
            let b = d.read();
            drop(a);
            std::hint::black_box(&b);
            drop(b);
            reads.fetch_add(1, Ordering::Relaxed);
        };
        spawn_loops(s, 2, &stop, reader);
        while reads.load(Ordering::Relaxed) < 1000 {
            thread::yield_now();
        }
        let t = Instant::now();
        for _ in 0..200 {
            d.synchronize();
        }
        let took = t.elapsed();
        stop.store(true, Ordering::Relaxed);
        assert!(
            took < Duration::from_secs(5),
            "200 synchronize took {took:?}"
        );
    });
}

/// A value that readers check for "retired": retirement marks it (instead of
/// freeing it, so the test itself stays sound when the domain is wrong).
struct Node {
    retired: AtomicBool,
}

#[test]
fn readers_never_see_a_retired_value() {
    const SWAPS: usize = 1000;
    let d = Srcu::new();
    let nodes: Arc<Vec<Node>> = Arc::new(
        (0..=SWAPS)
            .map(|_| Node {
                retired: AtomicBool::new(false),
            })
            .collect(),
    );
    let current = AtomicUsize::new(0); // index of the published node
    let stop = AtomicBool::new(false);
    let checks = AtomicUsize::new(0);
    thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        let reader = || {
            let g = d.read();
            let i = current.load(Ordering::Acquire);
            // A critical section long enough (~µs) for a wrong grace period
            // to retire the node under it.
            for _ in 0..16 {
                assert!(
                    !nodes[i].retired.load(Ordering::Relaxed),
                    "node {i} retired under a reader"
                );
                for _ in 0..64 {
                    std::hint::spin_loop();
                }
            }
            drop(g);
            checks.fetch_add(1, Ordering::Relaxed);
            thread::yield_now(); // leave the writer some CPU on small machines
        };
        spawn_loops(s, 2, &stop, reader);
        for i in 1..=SWAPS {
            if i % 100 == 1 {
                // Make sure readers really overlap the writer, even when the
                // scheduler favours it.
                let seen = checks.load(Ordering::Relaxed);
                while checks.load(Ordering::Relaxed) < seen + 20 {
                    thread::yield_now();
                }
            }
            let old = current.swap(i, Ordering::AcqRel);
            if i % 2 == 0 {
                let nodes = nodes.clone();
                d.call(move || nodes[old].retired.store(true, Ordering::Relaxed));
            } else {
                d.synchronize();
                nodes[old].retired.store(true, Ordering::Relaxed);
            }
        }
        d.barrier().unwrap();
        stop.store(true, Ordering::Relaxed);
    });
    assert!(checks.load(Ordering::Relaxed) >= 200);
    assert_eq!(
        nodes
            .iter()
            .filter(|n| n.retired.load(Ordering::Relaxed))
            .count(),
        SWAPS
    );
}

#[test]
fn helper_thread_reclaims_without_callers_driving() {
    let d = Srcu::with_helper_thread();
    let freed = Arc::new(AtomicUsize::new(0));
    let g = d.read();
    for _ in 0..10 {
        d.retire(Box::new(Counted(freed.clone()))); // 10 < 64: no opportunistic poll
    }
    thread::sleep(Duration::from_millis(20));
    assert_eq!(
        freed.load(Ordering::Relaxed),
        0,
        "freed under a live reader"
    );
    drop(g);
    let t = Instant::now();
    while freed.load(Ordering::Relaxed) < 10 && t.elapsed() < Duration::from_secs(2) {
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        freed.load(Ordering::Relaxed),
        10,
        "the helper did not reclaim"
    );
    // Pending work at the last drop still runs, wherever the domain dies.
    d.retire(Box::new(Counted(freed.clone())));
    let weak = Arc::downgrade(&d);
    drop(d);
    let t = Instant::now();
    while weak.strong_count() > 0 && t.elapsed() < Duration::from_secs(2) {
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(weak.strong_count(), 0);
    assert_eq!(freed.load(Ordering::Relaxed), 11);
}

/// Issue 10 item 5 (a). `call` and `retire` used to run ready callbacks inline
/// (an opportunistic poll every 64 queued entries), so a callback that calls
/// `synchronize` (allowed, S9) could run inside `call` on a thread holding a
/// guard and wait for that guard forever: this test deadlocked (watchdog)
/// before. Now they only queue, and the callback runs in `barrier`.
#[test]
fn call_and_retire_never_run_callbacks_so_one_may_synchronize() {
    watchdog::within(60, "call with a guard held", || {
        let d = Arc::new(Srcu::new());
        let ran = Arc::new(AtomicUsize::new(0));
        {
            let (d2, ran) = (d.clone(), ran.clone());
            d.call(move || {
                d2.synchronize();
                ran.fetch_add(1, Ordering::SeqCst);
            });
        }
        d.synchronize(); // its grace period has passed: the callback is ready
        let g = d.read();
        for i in 0..300u64 {
            d.call(|| {});
            d.retire(Box::new(i));
        }
        assert_eq!(ran.load(Ordering::SeqCst), 0, "call/retire ran a callback");
        drop(g);
        d.barrier().unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    });
}

/// Panics caught on the helper thread are reported once, by a later `poll`
/// on any thread; a panicking callback stops neither the helper nor the
/// callbacks queued after it.
#[test]
fn helper_thread_panics_are_reported_by_the_next_poll() {
    let d = Srcu::with_helper_thread();
    let ran = Arc::new(AtomicUsize::new(0));
    d.call(|| panic!("helper callback panic (expected by the test)"));
    for _ in 0..3 {
        let ran = ran.clone();
        d.call(move || {
            ran.fetch_add(1, Ordering::SeqCst);
        });
    }
    let t0 = Instant::now();
    let err = loop {
        // Whichever thread ran it (the helper or this poll), it is reported
        // here exactly once.
        if let Err(e) = d.poll() {
            break e;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "never reported");
        thread::sleep(Duration::from_millis(1));
    };
    assert_eq!(err.count(), 1);
    assert_eq!(
        err.message(),
        Some("helper callback panic (expected by the test)")
    );
    d.barrier().unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 3);
}

/// Issue 13 §5: a `with_reclaimer` domain runs callbacks with no call, in
/// order; one that panics is reported by the next `poll`; one may
/// `synchronize` another domain (the reclaimer holds no lock meanwhile).
#[test]
fn the_reclaimer_runs_callbacks_without_a_call() {
    watchdog::within(60, "reclaimer callbacks", || {
        let d = Srcu::with_reclaimer();
        assert!(d.is_auto());
        let other = Arc::new(Srcu::new());
        let (tx, rx) = mpsc::channel();
        for i in 0..3 {
            let (tx, other) = (tx.clone(), other.clone());
            d.call(move || {
                other.synchronize();
                tx.send(i).unwrap();
            });
        }
        let got: Vec<i32> = (0..3)
            .map(|_| rx.recv_timeout(Duration::from_secs(2)).expect("ran"))
            .collect();
        assert_eq!(got, [0, 1, 2]);
        d.call(move || panic!("callback panic (expected by the test)"));
        d.call(move || tx.send(3).unwrap());
        assert_eq!(rx.recv_timeout(Duration::from_secs(2)), Ok(3));
        let err = d.poll().unwrap_err();
        assert_eq!(err.message(), Some("callback panic (expected by the test)"));
        d.poll().unwrap();
    });
}
