//! Attacks on S14 (an `Always` advance forces only the grace periods its
//! callers requested, DESIGN §3.3): delaying a start is safe (S5), so the
//! risk is *liveness*. Every `Always` caller (`synchronize`, `barrier`,
//! `poll`, `Retired::try_take`/`wait`, `remove_wait`, the reclaimer) must
//! still finish, or free what was queued before it, while other threads
//! flood the domain with requests, in a domain whose spacing is 10 s, so
//! that every `Spaced` start (the ones S14 demotes to) is refused unless
//! `PRESSURE` destructors wait. The deterministic tests at the top pin down
//! *which* grace periods one call still owes: those requested before it,
//! including one requested while another caller's grace period ran.

#[path = "common/watchdog.rs"]
mod watchdog;

use maple_rcu::MapleTree;
use maple_rcu::srcu::Srcu;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The hostile spacing: no `Spaced` start happens during a test.
const HOSTILE_GAP: Duration = Duration::from_secs(10);

fn hostile_domain() -> Arc<Srcu> {
    let d = Arc::new(Srcu::new());
    d.set_min_gp_gap(HOSTILE_GAP);
    d
}

/// Leaves `d`'s state machine in the middle of a grace period that a
/// reader on another thread holds up, and returns a way to end that reader.
/// The grace period was started (by a `poll`, `Always`) before anything the
/// caller queues next, so what it queues next needs the *following* grace
/// period: the one S14 must still let the next `Always` call start.
fn grace_period_held(d: &Arc<Srcu>) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (pinned_tx, pinned_rx) = std::sync::mpsc::channel();
    let (end_tx, end_rx) = std::sync::mpsc::channel::<()>();
    let d2 = d.clone();
    let h = std::thread::spawn(move || {
        let g = d2.read();
        pinned_tx.send(()).unwrap();
        let _ = end_rx.recv();
        drop(g);
    });
    pinned_rx.recv().unwrap();
    let first = Arc::new(AtomicBool::new(false));
    let f = first.clone();
    d.call(move || f.store(true, Relaxed));
    // Starts grace period 1 (nothing started before: the spacing allows
    // a first start) and scans as far as the reader allows.
    d.poll().unwrap();
    assert!(!first.load(Relaxed), "ran under a reader");
    (end_tx, h)
}

/// One `poll` with no reader runs every callback queued before it, even
/// one queued while another grace period (started before it was queued)
/// was held up: that poll completes the old grace period *and starts the
/// one the callback needs*. Its target is taken when it first finds the
/// machine idle, after the old one completed. Catches the mutation "demote
/// to Spaced after the first loop iteration" (the second start is refused
/// by the 10 s spacing and the callback stays queued).
#[test]
fn one_poll_runs_a_callback_queued_during_an_older_grace_period() {
    let d = hostile_domain();
    let (end, h) = grace_period_held(&d);
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    d.call(move || r.store(true, Relaxed));
    end.send(()).unwrap();
    h.join().unwrap();
    d.poll().unwrap();
    assert!(
        ran.load(Relaxed),
        "one poll with no reader left a callback queued before it"
    );
}

/// The same for `Retired::try_take` (one `advance`, no blocking): a value
/// taken while an older grace period is held up is returned by the first
/// `try_take` after the reader ends, as its documentation promises ("no
/// reader: advancing completes the grace period at once").
#[test]
fn one_try_take_completes_a_grace_period_requested_during_an_older_one() {
    let d = hostile_domain();
    let t: MapleTree<String> = MapleTree::with_domain(d.clone());
    t.insert(0..10, "x".into()).unwrap();
    let (end, h) = grace_period_held(&d);
    let (_, retired) = t.take(5).unwrap();
    assert!(!retired.is_ready());
    end.send(()).unwrap();
    h.join().unwrap();
    match retired.try_take() {
        Ok(v) => assert_eq!(v, "x"),
        Err(_) => panic!("try_take with no reader did not complete its grace period"),
    }
}

/// And for the reclaimer (its visits advance `Always`): a value removed
/// from a default tree while an older grace period is held up is dropped
/// with no further call once the reader ends, despite a 10 s spacing.
#[test]
fn reclaimer_frees_what_waits_behind_an_older_grace_period() {
    let t: MapleTree<Arc<()>> = MapleTree::new();
    t.domain().set_min_gp_gap(HOSTILE_GAP);
    let probe = Arc::new(());
    t.insert(0..10, probe.clone()).unwrap();
    t.insert(20..30, probe.clone()).unwrap();
    // A reader holds the grace period that the first removal's drop waits
    // for; the second removal then needs the one after.
    let g = t.pin();
    t.remove(0).unwrap();
    t.domain().poll().unwrap();
    t.remove(20).unwrap();
    drop(g);
    let from = Instant::now();
    while Arc::strong_count(&probe) > 1 {
        assert!(
            from.elapsed() < Duration::from_secs(3),
            "reclaimer left {} removed values undropped for 3 s",
            Arc::strong_count(&probe) - 1
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    eprintln!("dropped after {:?}", from.elapsed());
}

/// What the flooders do to the domain.
#[derive(Clone, Copy, Debug)]
enum Flood {
    /// `Srcu::call` (every `POLL_EVERY`th advances `Spaced`).
    Call,
    /// `Srcu::retire`.
    Retire,
    /// Insert/remove commits of a tree sharing the domain (its pressed
    /// `advance_spaced(true)` is an `Always` caller too).
    Commits,
    /// `MapleTree::take` (one `start_poll` each) with `try_take` loops.
    Take,
    /// `synchronize` in a loop (a competing `Always` caller).
    Sync,
}

const FLOODS: [Flood; 5] = [
    Flood::Call,
    Flood::Retire,
    Flood::Commits,
    Flood::Take,
    Flood::Sync,
];

/// Runs `victim` `rounds` times while `kind` floods `d` from one thread
/// (and a third thread takes short read sections); each victim call must
/// return within 5 s. Returns the slowest victim call.
fn under_flood(
    d: &Arc<Srcu>,
    kind: Flood,
    rounds: usize,
    victim: impl Fn(usize) + Send + Sync + 'static,
) -> Duration {
    let stop = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicUsize::new(0));
    let flooder = {
        let (d, stop, dropped) = (d.clone(), stop.clone(), dropped.clone());
        std::thread::spawn(move || {
            let t: MapleTree<u64> = MapleTree::with_domain(d.clone());
            let mut i = 0u64;
            while !stop.load(Relaxed) {
                i += 1;
                match kind {
                    Flood::Call => {
                        let c = dropped.clone();
                        d.call(move || {
                            c.fetch_add(1, Relaxed);
                        });
                    }
                    Flood::Retire => d.retire(Box::new(vec![i])),
                    Flood::Commits => {
                        let k = (1 << 40) | ((i % 256) * 4);
                        t.insert(k..k + 2, i).unwrap();
                        t.remove(k).unwrap();
                    }
                    Flood::Take => {
                        let k = (1 << 40) | ((i % 256) * 4);
                        t.insert(k..k + 2, i).unwrap();
                        let (_, mut h) = t.take(k).unwrap();
                        for _ in 0..4 {
                            match h.try_take() {
                                Ok(_) => break,
                                Err(back) => h = back,
                            }
                        }
                    }
                    Flood::Sync => d.synchronize(),
                }
                if i.is_multiple_of(4096) && !matches!(kind, Flood::Sync) {
                    // Keep queued callbacks from growing without bound
                    // (nothing else runs them in a manual domain).
                    d.poll().unwrap();
                }
            }
        })
    };
    let reader = {
        let (d, stop) = (d.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Relaxed) {
                let g = d.read();
                std::hint::black_box(&g);
                drop(g);
                std::thread::yield_now();
            }
        })
    };
    let victim = Arc::new(victim);
    let mut worst = Duration::ZERO;
    for round in 0..rounds {
        let v = victim.clone();
        let t = Instant::now();
        watchdog::within(5, "victim", move || v(round));
        worst = worst.max(t.elapsed());
    }
    stop.store(true, Relaxed);
    flooder.join().unwrap();
    reader.join().unwrap();
    worst
}

/// `synchronize` returns under every flood, each call within 5 s, and a
/// value retired before it is not reachable after (checked by a callback
/// queued before it that a following `barrier` runs).
#[test]
fn synchronize_returns_under_every_flood() {
    for kind in FLOODS {
        let d = hostile_domain();
        let d2 = d.clone();
        let worst = under_flood(&d, kind, 200, move |_| d2.synchronize());
        eprintln!("{kind:?}: slowest synchronize {worst:?}");
    }
}

/// `barrier` returns under every flood, and every callback queued before
/// it has run when it does.
#[test]
fn barrier_runs_earlier_callbacks_under_every_flood() {
    for kind in FLOODS {
        let d = hostile_domain();
        let d2 = d.clone();
        let worst = under_flood(&d, kind, 100, move |_| {
            let ran = Arc::new(AtomicUsize::new(0));
            for _ in 0..3 {
                let r = ran.clone();
                d2.call(move || {
                    r.fetch_add(1, Relaxed);
                });
            }
            d2.barrier().unwrap();
            assert_eq!(
                ran.load(Relaxed),
                3,
                "barrier returned before its callbacks ran"
            );
        });
        eprintln!("{kind:?}: slowest barrier {worst:?}");
    }
}

/// Repeated `poll`s (never blocking) run a callback queued before them
/// within a bounded time under every flood: each poll's target includes
/// it, so the 10 s spacing never stands in its way.
#[test]
fn polls_run_earlier_callbacks_under_every_flood() {
    for kind in FLOODS {
        let d = hostile_domain();
        let d2 = d.clone();
        let polls = Arc::new(AtomicU64::new(0));
        let p2 = polls.clone();
        let worst = under_flood(&d, kind, 100, move |_| {
            let ran = Arc::new(AtomicBool::new(false));
            let r = ran.clone();
            d2.call(move || r.store(true, Relaxed));
            while !ran.load(Relaxed) {
                d2.poll().unwrap();
                p2.fetch_add(1, Relaxed);
                std::thread::yield_now();
            }
        });
        eprintln!(
            "{kind:?}: slowest poll loop {worst:?}, {:.1} polls per callback",
            polls.load(Relaxed) as f64 / 100.0
        );
    }
}

/// `remove_wait` and `Retired::wait` on a tree of the flooded domain
/// return, and `try_take` succeeds after a bounded number of tries with
/// the reader thread only taking short sections.
#[test]
fn tree_waiters_return_under_every_flood() {
    for kind in FLOODS {
        let d = hostile_domain();
        let t: Arc<MapleTree<String>> = Arc::new(MapleTree::with_domain(d.clone()));
        let t2 = t.clone();
        let tries = Arc::new(Mutex::new(0u64));
        let tries2 = tries.clone();
        let worst = under_flood(&d, kind, 150, move |round| {
            let k = round as u64 * 16;
            t2.insert(k..k + 8, k.to_string()).unwrap();
            match round % 3 {
                0 => assert_eq!(t2.remove_wait(k + 1), Some((k..k + 8, k.to_string()))),
                1 => assert_eq!(t2.take(k).unwrap().1.wait(), k.to_string()),
                _ => {
                    let (_, mut h) = t2.take(k).unwrap();
                    let mut n = 0u64;
                    loop {
                        n += 1;
                        match h.try_take() {
                            Ok(v) => break assert_eq!(v, k.to_string()),
                            Err(back) => h = back,
                        }
                        std::thread::yield_now();
                    }
                    let mut m = tries2.lock().unwrap();
                    *m = (*m).max(n);
                }
            }
        });
        eprintln!(
            "{kind:?}: slowest tree wait {worst:?}, most try_takes {}",
            tries.lock().unwrap()
        );
        assert!(t.is_empty());
    }
}

/// The reclaimer under a commit flood, 10 s spacing: values removed from a
/// default tree keep being dropped while two threads commit at full
/// speed (the undropped count stays bounded), and all are dropped within
/// 3 s after the flood stops, with no further call.
#[test]
fn reclaimer_keeps_up_with_two_committers() {
    struct Counted(Arc<AtomicU64>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Relaxed);
        }
    }
    let t: Arc<MapleTree<Counted>> = Arc::new(MapleTree::new());
    t.domain().set_min_gp_gap(HOSTILE_GAP);
    let dropped = Arc::new(AtomicU64::new(0));
    let removed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut hs = Vec::new();
    for w in 0..2u64 {
        let (t, dropped, removed, stop) =
            (t.clone(), dropped.clone(), removed.clone(), stop.clone());
        hs.push(std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Relaxed) {
                let k = (w << 32) | ((i % 512) * 4);
                t.insert(k..k + 2, Counted(dropped.clone())).unwrap();
                t.remove(k).unwrap();
                removed.fetch_add(1, Relaxed);
                i += 1;
            }
        }));
    }
    let start = Instant::now();
    let mut worst = 0u64;
    while start.elapsed() < Duration::from_millis(1500) {
        std::thread::sleep(Duration::from_millis(5));
        let r = removed.load(Relaxed);
        let d = dropped.load(Relaxed);
        worst = worst.max(r.saturating_sub(d));
    }
    stop.store(true, Relaxed);
    for h in hs {
        h.join().unwrap();
    }
    let total = removed.load(Relaxed);
    let from = Instant::now();
    while dropped.load(Relaxed) < total {
        assert!(
            from.elapsed() < Duration::from_secs(3),
            "{} of {total} removed values undropped 3 s after the flood",
            total - dropped.load(Relaxed)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    eprintln!(
        "{total} removals, at most {worst} undropped, all dropped {:?} after",
        from.elapsed()
    );
    // Generous: the reclaimer visits every 1 ms and each visit serves
    // everything requested before it; 100k would be ~0.1 s of both
    // writers' removals never freed.
    assert!(worst < 100_000, "{worst} removed values undropped at once");
}
