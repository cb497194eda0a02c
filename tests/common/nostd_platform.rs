//! The no_std tests' platform (tests/nostd.rs, tests/breaker_s7_nostd.rs): a
//! simple grace-period source and a spin lock for `MapleTree::with_platform`.
#![allow(dead_code)]

use maple_rcu::platform::{Deferred, GracePeriod, Panicked, Payload, RawLock};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex};
use std::thread;

/// A simple, correct grace-period source: grace period `c` completes at a
/// moment when no reader is inside (a global reader count, no per-CPU state).
/// Readers of a busy tree can hold it off forever; good enough for tests,
/// not for a kernel.
#[derive(Default)]
pub struct Quiescent {
    pub readers: AtomicUsize,
    pub requested: AtomicU64,
    pub completed: AtomicU64,
    pub queue: Mutex<Vec<(u64, Deferred)>>,
    /// Read sections entered (to check the tree really pins through us).
    pub reads: AtomicU64,
}

impl Quiescent {
    pub fn take_ready(&self) -> Vec<Deferred> {
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
    pub fn run_ready(&self) {
        self.advance();
        for d in self.take_ready() {
            d.run();
        }
    }

    pub fn pending(&self) -> usize {
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
pub struct Spin(pub Arc<AtomicBool>);

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
