//! The race harness of the breaker stress tests (breaker10's
//! `breaker_s10_handoff`, shared with `breaker_s11_ownrange`): parties on
//! their own threads and the main thread meet at a spin barrier, run their
//! parts of an iteration, and meet again at a quiescent point where the
//! main thread checks the space. The includer declares `mod rng`
//! (`common/rng.rs`).
#![allow(dead_code)]

use super::rng::Rng;
use maple_rcu::mm::AddressSpace;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

/// A spin barrier for `n` threads (the std one parks, and the wake-up
/// latency staggers the threads by more than an operation lasts). Yields
/// after a while so it never starves a descheduled peer.
pub struct Spin {
    n: usize,
    count: AtomicUsize,
    epoch: AtomicUsize,
}

impl Spin {
    pub fn new(n: usize) -> Spin {
        Spin {
            n,
            count: AtomicUsize::new(0),
            epoch: AtomicUsize::new(0),
        }
    }

    /// True for exactly one thread per crossing (the last to arrive).
    pub fn wait(&self) -> bool {
        let g = self.epoch.load(Ordering::Acquire);
        if self.count.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
            self.count.store(0, Ordering::Relaxed);
            self.epoch.store(g + 1, Ordering::Release);
            return true;
        }
        let mut k = 0u32;
        while self.epoch.load(Ordering::Acquire) == g {
            if k < 64 {
                std::hint::spin_loop();
                k += 1;
            } else {
                thread::yield_now();
            }
        }
        false
    }
}

pub fn delay(r: &mut Rng, max: u64) {
    for _ in 0..r.below(max) {
        std::hint::spin_loop();
    }
}

/// No last-level table linked in a 2 MiB span without a VMA.
pub fn quiescent(mm: &AddressSpace, what: &str) {
    let s = mm.stats();
    assert_eq!(
        s.tables_kept, 0,
        "{what}: table left in an empty span: {s:?}"
    );
}

/// Runs `f` at least once and until `done` (bounded, so a neighbour whose
/// operation is slow cannot make an iteration long).
pub fn repeat_until(done: &AtomicBool, mut f: impl FnMut()) {
    for _ in 0..500 {
        f();
        if done.load(Ordering::Acquire) {
            return;
        }
    }
}

/// One party of a `race`: its part of iteration `i`, given the space and
/// `done` (set by the main thread once its own part of the iteration is
/// over).
pub type Party = Box<dyn FnMut(&AddressSpace, u64, &AtomicBool) + Send>;

/// The iteration protocol of every race here: the `parties` (a thread
/// each) and the main thread meet at a spin barrier, run their parts of
/// iteration `i` (`main` on the main thread, which then sets `done`), and
/// meet again; at that quiescent point the main thread checks the space
/// (`quiescent`, then `after`) while the parties wait at a third barrier.
pub fn race(
    mm: &Arc<AddressSpace>,
    n: u64,
    what: &str,
    parties: Vec<Party>,
    mut main: impl FnMut(&AddressSpace, u64),
    mut after: impl FnMut(&AddressSpace, u64),
) {
    let bar = Arc::new(Spin::new(parties.len() + 1));
    let done = Arc::new(AtomicBool::new(false));
    let hs: Vec<_> = parties
        .into_iter()
        .map(|mut part| {
            let (mm, bar, done) = (mm.clone(), bar.clone(), done.clone());
            thread::spawn(move || {
                for i in 0..n {
                    bar.wait();
                    part(&mm, i, &done);
                    bar.wait();
                    bar.wait();
                }
            })
        })
        .collect();
    for i in 0..n {
        bar.wait();
        main(mm, i);
        done.store(true, Ordering::Release);
        bar.wait();
        quiescent(mm, &format!("{what} iter {i}"));
        after(mm, i);
        done.store(false, Ordering::Relaxed);
        bar.wait();
    }
    for h in hs {
        h.join().unwrap();
    }
}

/// The environment variable `name` as a number, else `default` (the
/// breakers' `*_ITERS` and `*_SEED` knobs).
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
