//! breaker7: the tree's open garbage batch (issue 12, seventh session) on
//! the no_std platform seam (`MapleTree::with_platform`): drop-free values
//! ride in the open batch and are freed by the tree itself (no value stash
//! without std), so a batch freed before its grace period shows as a
//! changed value under a pin (or under ASan). Two trees share one domain;
//! readers pinned across 1..200 commits of both re-read every reference.
//! The grace-period source and spin lock are tests/nostd.rs's
//! (`tests/common/nostd_platform.rs`).
//!
//! Run: `cargo test --no-default-features --test breaker_s7_nostd`.
#![cfg(not(feature = "std"))]

#[path = "common/nostd_platform.rs"]
mod nostd_platform;
#[path = "common/rng.rs"]
mod rng;

use maple_rcu::MapleTree;
use nostd_platform::{Quiescent, Spin};
use rng::Rng;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

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
