//! breaker7: the tree's open garbage batch (issue 12, seventh session) on
//! the no_std platform seam (`MapleTree::with_platform`): drop-free values
//! ride in the open batch and are freed by the tree itself (no value stash
//! without std), so a batch freed before its grace period shows as a
//! changed value under a pin (or under ASan). Two trees share one domain;
//! readers pinned across 1..200 commits of both re-read every reference.
//! The grace-period source and spin lock are copies of tests/nostd.rs's.
//!
//! Run: `cargo test --no-default-features --test breaker_s7_nostd`.
#![cfg(not(feature = "std"))]

#[path = "common/rng.rs"]
mod rng;

use maple_rcu::MapleTree;
use maple_rcu::platform::{Deferred, GracePeriod, Panicked, Payload, RawLock};
use rng::Rng;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex};
use std::thread;

/// A simple, correct grace-period source: grace period `c` completes at a
/// moment when no reader is inside (a global reader count, no per-CPU state).
/// Readers of a busy tree can hold it off forever; good enough for tests,
/// not for a kernel.
#[derive(Default)]
struct Quiescent {
    readers: AtomicUsize,
    requested: AtomicU64,
    completed: AtomicU64,
    queue: Mutex<Vec<(u64, Deferred)>>,
    /// Read sections entered (to check the tree really pins through us).
    reads: AtomicU64,
}

impl Quiescent {
    fn take_ready(&self) -> Vec<Deferred> {
        let done = self.completed.load(Ordering::Acquire);
        let mut q = self.queue.lock().unwrap();
        let (ready, wait) = std::mem::take(&mut *q)
            .into_iter()
            .partition::<Vec<_>, _>(|(c, _)| *c <= done);
        *q = wait;
        ready.into_iter().map(|(_, d)| d).collect()
    }

    /// Runs what is ready, outside the queue lock (a value's drop is user
    /// code and may use the tree).
    fn run_ready(&self) {
        self.advance();
        for d in self.take_ready() {
            d.run();
        }
    }

    fn pending(&self) -> usize {
        self.queue.lock().unwrap().len()
    }
}

// SAFETY: I7. A request is a SeqCst RMW of `requested` after a SeqCst fence
// (so after the tree's unlinking store); `advance` loads `requested`, fences,
// and completes up to it only if it then sees no reader. A reader that
// entered before the request is counted by that load (its SeqCst increment
// and fence precede the requester's fence, which precedes ours) unless it
// already left (its Release decrement, read by our SeqCst load, orders its
// section before the completion); one that entered after the requester's
// fence sees the unlinking store, so cannot reach what was unlinked.
// Completion is a Release `fetch_max`, read with Acquire by `gp_passed`.
// Nothing but `poll`, `synchronize`'s caller and `drain` runs an entry.
unsafe impl GracePeriod for Quiescent {
    fn read_lock(&self) -> usize {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.readers.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        0
    }
    unsafe fn read_unlock(&self, _token: usize) {
        self.readers.fetch_sub(1, Ordering::Release);
    }
    fn start_poll(&self) -> u64 {
        fence(Ordering::SeqCst);
        self.requested.fetch_add(1, Ordering::SeqCst) + 1
    }
    fn gp_passed(&self, cookie: u64) -> bool {
        self.completed.load(Ordering::Acquire) >= cookie
    }
    fn advance(&self) {
        let r = self.requested.load(Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.readers.load(Ordering::SeqCst) == 0 {
            self.completed.fetch_max(r, Ordering::Release);
        }
    }
    fn defer(&self, d: Deferred) -> u64 {
        let c = self.start_poll();
        self.queue.lock().unwrap().push((c, d));
        c
    }
    fn poll(&self) -> Result<(), Panicked> {
        self.run_ready();
        Ok(())
    }
    fn synchronize(&self) {
        let c = self.start_poll();
        while !self.gp_passed(c) {
            self.advance();
            thread::yield_now();
        }
    }
    unsafe fn drain(&self) -> Vec<Payload> {
        self.run_ready();
        Vec::new()
    }
}

impl Drop for Quiescent {
    fn drop(&mut self) {
        // No guard can exist: guards borrow a tree, and a tree holds an Arc.
        for (_, d) in self.queue.get_mut().unwrap().drain(..) {
            d.run();
        }
    }
}

/// A test-and-set spin lock, yielding while held; the flag is shared so a
/// test can see whether the lock is held.
#[derive(Default)]
struct Spin(Arc<AtomicBool>);

// SAFETY: the CAS admits one holder at a time; Acquire on success pairs with
// the Release store in `unlock`, so each holder sees the previous one's writes.
unsafe impl RawLock for Spin {
    fn lock(&self) {
        while !self.try_lock() {
            thread::yield_now();
        }
    }
    fn try_lock(&self) -> bool {
        self.0
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }
    unsafe fn unlock(&self) {
        self.0.store(false, Ordering::Release);
    }
}

#[test]
fn pinned_readers_across_open_batches_on_a_shared_platform_domain() {
    let d = Arc::new(Quiescent::default());
    let trees: Arc<[MapleTree<[u64; 2]>; 2]> = Arc::new([
        MapleTree::with_platform(d.clone(), Box::new(Spin::default())),
        MapleTree::with_platform(d.clone(), Box::new(Spin::default())),
    ]);
    let commits = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut hs = Vec::new();
    for w in 0..2u64 {
        let (ts, c, s) = (trees.clone(), commits.clone(), stop.clone());
        hs.push(thread::spawn(move || {
            let mut r = Rng(0x77 + w);
            let mut i = 0u64;
            while !s.load(Ordering::Relaxed) {
                let t = &ts[(r.below(2)) as usize];
                let k = (w << 32) + r.below(300) * 16;
                i += 1;
                if r.below(2) == 0 {
                    let _ = t.insert(k..k + 8, [i, !i]);
                } else {
                    t.remove(k);
                }
                if i.is_multiple_of(97) {
                    t.reclaim().unwrap();
                }
                c.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut rs = Vec::new();
    for k in 0..2u64 {
        let (ts, c, s) = (trees.clone(), commits.clone(), stop.clone());
        rs.push(thread::spawn(move || {
            let mut r = Rng(0x99 + k);
            let mut pins = 0u64;
            while !s.load(Ordering::Relaxed) {
                let t = &ts[(r.below(2)) as usize];
                let g = t.pin();
                let seen: Vec<(Range<u64>, &[u64; 2], [u64; 2])> =
                    g.iter().map(|(r, v)| (r, v, *v)).collect();
                for (_, v, _) in &seen {
                    assert_eq!(v[1], !v[0], "corrupt value");
                }
                let hold = 1 + r.below(200);
                let at = c.load(Ordering::Relaxed);
                while c.load(Ordering::Relaxed) < at + hold && !s.load(Ordering::Relaxed) {
                    thread::yield_now();
                }
                let again: Vec<(Range<u64>, [u64; 2])> = g.iter().map(|(r, v)| (r, *v)).collect();
                assert_eq!(again.len(), seen.len(), "pinned version changed");
                for ((r1, v, n), (r2, n2)) in seen.iter().zip(&again) {
                    assert_eq!((r1, n), (r2, n2), "pinned version changed");
                    assert_eq!(**v, *n, "value under {r1:?} changed under a pin");
                }
                pins += 1;
            }
            pins
        }));
    }
    thread::sleep(std::time::Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        h.join().unwrap();
    }
    let pins: u64 = rs.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(pins > 0);
    assert!(commits.load(Ordering::Relaxed) > 200);
    for t in trees.iter() {
        t.validate().unwrap();
        t.reclaim().unwrap();
    }
    assert!(d.reads.load(Ordering::Relaxed) > 0);
    assert_eq!(d.pending(), 0, "drop-free values never reach the domain");
}
