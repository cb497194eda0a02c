//! The two-writer workload run by `nostd.rs` (on the test platform) and
//! `tree.rs` (on `Srcu`): two readers check every snapshot while two writers
//! each replace one of their own keys per commit (`erase` + `insert`) and
//! call the non-blocking `reclaim` every 64 commits or so, whose `try_lock`
//! fails whenever the other writer holds the lock.
//!
//! Entry `k` is `k*8..k*8+s` with value `k*8` for `s` in 1..8, so a reader
//! seeing a torn or freed node reads a wrong value or range. What it caught:
//! a failed `try_lock` that released the holder's lock (no_std `Lock`), which
//! let both writers into the writer state and retired nodes twice (I7):
//! a double free under ASan, the retire check's panic in debug builds.
#![allow(dead_code)]

use super::rng::Rng;
use maple_rcu::MapleTree;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

/// Keys of the workload; entry `k` starts at `k * 8`.
pub const KEYS: u64 = 512;

/// Fills `t` with the workload's entries, runs it (`commits` per writer),
/// then checks the tree's structure and entry count.
pub fn run(t: &MapleTree<u64>, commits: usize) {
    for k in 0..KEYS {
        t.insert(k * 8..k * 8 + 1, k * 8).unwrap();
    }
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let r = t.pin();
                    let mut n = 0;
                    for (range, &v) in &r {
                        assert_eq!(range.start, v);
                        assert!(range.start % 8 == 0 && range.end - range.start < 8);
                        n += 1;
                    }
                    assert_eq!(n, KEYS);
                }
            });
        }
        let writers: Vec<_> = (0..2u64)
            .map(|w| {
                s.spawn(move || {
                    let mut g = Rng(w + 7);
                    for _ in 0..commits {
                        // Writer w owns the keys with k % 2 == w.
                        let k = g.below(KEYS / 2) * 2 + w;
                        // Replace the key's entry whole, in one commit.
                        let mut tx = t.write();
                        tx.erase(k * 8..k * 8 + 8).unwrap();
                        tx.insert(k * 8..k * 8 + 1 + g.below(7), k * 8).unwrap();
                        tx.commit();
                        if g.below(64) == 0 {
                            t.reclaim().unwrap();
                        }
                    }
                })
            })
            .collect();
        // Stop the readers before re-raising a writer's panic: otherwise
        // the scope waits for them forever and the test hangs, not fails.
        let joined: Vec<_> = writers.into_iter().map(|h| h.join()).collect();
        stop.store(true, Ordering::Relaxed);
        for r in joined {
            r.unwrap();
        }
    });
    t.validate().unwrap();
    assert_eq!(t.len() as u64, KEYS);
}
