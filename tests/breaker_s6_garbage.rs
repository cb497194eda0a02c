//! breaker6 on `commit` (issue 12: one garbage batch per commit, the writer
//! state's parts as an `Option`, the ending transaction's `Core` taken out
//! of a `ManuallyDrop`, cheaper summaries, `Inner::set` in place).
//!
//! Counted values (a live count; a drop of a dead value panics: no double
//! drop), transactions of several steps that commit or abort, `Clone`s that
//! panic mid-store, `retain` closures that panic, a value whose drop panics,
//! `reclaim()` from another thread racing the commits, readers pinned
//! across many commits that check every value they see (a use after free
//! shows as a bad checksum, or under ASan), drop-free values (`[u64; 4]`,
//! which ride in the batch's list). After every transaction: `validate()`
//! and the contents against a `BTreeMap` model; at the end, every value
//! dropped exactly once.
//!
//! ASan: `RUSTC_BOOTSTRAP=1 RUSTFLAGS=-Zsanitizer=address
//! CARGO_TARGET_DIR=target/asan cargo test --target x86_64-unknown-linux-gnu
//! --test breaker_s6_garbage`.

#[path = "common/rng.rs"]
mod rng;
#[path = "common/tree_model.rs"]
mod tree_model;

use maple_rcu::MapleTree;
use rng::Rng;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use tree_model::Model;

/// Per-test counters (tests run in parallel).
#[derive(Default)]
struct Counts {
    live: AtomicI64,
    /// Clones left before one panics (0: never).
    clone_bomb: AtomicU64,
}

const MAGIC: u64 = 0x5eed_cafe_f00d_d00d;

struct Counted {
    tag: u64,
    check: u64,
    c: Arc<Counts>,
}

impl Counted {
    fn new(tag: u64, c: &Arc<Counts>) -> Self {
        c.live.fetch_add(1, Ordering::Relaxed);
        Counted {
            tag,
            check: tag ^ MAGIC,
            c: c.clone(),
        }
    }
    fn ok(&self) -> u64 {
        assert_eq!(
            self.check,
            self.tag ^ MAGIC,
            "value {:#x} corrupted (freed?)",
            self.tag
        );
        self.tag
    }
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        let b = self.c.clone_bomb.load(Ordering::Relaxed);
        if b == 1 {
            self.c.clone_bomb.store(0, Ordering::Relaxed);
            panic!("clone bomb");
        }
        if b > 1 {
            self.c.clone_bomb.store(b - 1, Ordering::Relaxed);
        }
        Counted::new(self.ok(), &self.c)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        assert_eq!(
            self.check,
            self.tag ^ MAGIC,
            "double drop of {:#x}",
            self.tag
        );
        self.check = !MAGIC;
        self.c.live.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Keys not page-aligned half the time (narrow inner nodes' shift changes).
fn range(r: &mut Rng, odd: bool) -> Range<u64> {
    let unit = if odd { 1 + r.below(9) } else { 4096 };
    let a = r.below(3000) * unit * 4;
    let n = if r.below(8) == 0 { 200 } else { 6 };
    a..a + (1 + r.below(n)) * unit
}

fn check(t: &MapleTree<Counted>, m: &Model) {
    t.validate().unwrap();
    let g = t.pin();
    let got: Vec<_> = g.iter().map(|(r, v)| (r, v.ok())).collect();
    let want: Vec<_> = m.map.iter().map(|(&s, &(e, v))| (s..e, v)).collect();
    assert_eq!(got, want);
}

/// One transaction of 1..8 steps on `t`, mirrored on a copy of `m`; it
/// commits, aborts, or unwinds from a clone bomb / a panicking `retain`.
fn txn(t: &MapleTree<Counted>, m: &mut Model, r: &mut Rng, c: &Arc<Counts>, tag: &mut u64) {
    let mut mm = m.clone();
    let odd = r.below(2) == 0;
    let steps = 1 + r.below(8);
    let bomb = r.below(6) == 0;
    let abort = r.below(5) == 0;
    let mut plan = Vec::new();
    for _ in 0..steps {
        plan.push((r.below(10), range(r, odd), r.below(7)));
    }
    let res = catch_unwind(AssertUnwindSafe(|| {
        let mut w = t.write();
        if bomb {
            c.clone_bomb.store(1 + steps, Ordering::Relaxed);
        }
        for (op, rg, k) in plan {
            *tag += 1;
            match op {
                0..=3 => {
                    let ok = w.insert(rg.clone(), Counted::new(*tag, c)).is_ok();
                    assert_eq!(ok, mm.insert(rg, *tag).is_ok());
                }
                4..=6 => {
                    w.store(rg.clone(), Counted::new(*tag, c)).unwrap();
                    mm.store(rg, *tag).unwrap();
                }
                7 => {
                    let n = w.erase(rg.clone()).unwrap();
                    assert_eq!(n, mm.cut(rg));
                }
                8 => {
                    assert_eq!(w.remove(rg.start), mm.remove(rg.start));
                }
                _ => {
                    // Drops every entry whose tag % 7 == k; panics half way
                    // through if a bomb is set.
                    let mut seen = 0;
                    w.retain(|_, v| {
                        seen += 1;
                        if bomb && seen == 3 {
                            panic!("retain bomb");
                        }
                        v.ok() % 7 != k
                    });
                    mm.map.retain(|_, &mut (_, v)| v % 7 != k);
                }
            }
        }
        w.validate().unwrap();
        if !abort {
            w.commit();
        }
    }));
    c.clone_bomb.store(0, Ordering::Relaxed);
    if let Err(e) = &res {
        let msg = e
            .downcast_ref::<&str>()
            .copied()
            .or(e.downcast_ref::<String>().map(|s| s.as_str()))
            .unwrap_or("");
        if !msg.contains("bomb") {
            std::panic::resume_unwind(res.unwrap_err());
        }
    }
    if res.is_ok() && !abort {
        *m = mm;
    }
    check(t, m);
}

fn churn(t: &MapleTree<Counted>, c: &Arc<Counts>, seed: u64, txns: usize) {
    let mut r = Rng(seed | 1);
    let mut m = Model::default();
    let mut tag = 0;
    // Readers pinned across many commits (the pin spans all below).
    let old = t.pin();
    let mut held: Vec<(Range<u64>, u64)> = Vec::new();
    for i in 0..txns {
        txn(t, &mut m, &mut r, c, &mut tag);
        if i % 50 == 0 {
            for (rg, v) in old.iter() {
                held.push((rg, v.ok()));
            }
            held.truncate(64);
        }
        if i % 7 == 0 {
            let _ = t.reclaim();
        }
    }
    // The old snapshot still reads what it read.
    for (rg, v) in &held {
        assert_eq!(
            old.get(rg.start).map(|(r, v)| (r, v.ok())),
            Some((rg.clone(), *v))
        );
    }
    drop(old);
}

/// A value whose drop panics when its id is a multiple of 5, and whose
/// clone panics when its id is 999.
struct Bomb(u64, Arc<AtomicI64>);

impl Clone for Bomb {
    fn clone(&self) -> Self {
        if self.0 == 999 {
            panic!("clone bomb");
        }
        self.1.fetch_add(1, Ordering::Relaxed);
        Bomb(self.0, self.1.clone())
    }
}

impl Drop for Bomb {
    fn drop(&mut self) {
        self.1.fetch_sub(1, Ordering::Relaxed);
        if self.0.is_multiple_of(5) {
            panic!("drop bomb {}", self.0);
        }
    }
}

/// Both reclaim modes: manual (`reclaim()` every few transactions) and the
/// domain's reclaimer thread.
#[test]
fn counted_values_freed_once() {
    for (seed, manual) in [(0xabc, true), (0xdef, false)] {
        let c = Arc::new(Counts::default());
        {
            let t: MapleTree<Counted> = if manual {
                MapleTree::with_manual_reclaim()
            } else {
                MapleTree::new()
            };
            churn(&t, &c, seed, 1500);
            t.reclaim().unwrap();
        }
        let live = c.live.load(Ordering::Relaxed);
        assert_eq!(live, 0, "manual {manual}: values leaked or dropped twice");
    }
}

/// `reclaim()` from another thread racing commits and aborts, and a reader
/// thread re-pinning and checking every value it sees.
#[test]
fn reclaim_and_readers_race_commits() {
    let c = Arc::new(Counts::default());
    {
        let t: MapleTree<Counted> = MapleTree::with_manual_reclaim();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let _ = t.reclaim();
                    std::thread::yield_now();
                }
            });
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let g = t.pin();
                    let mut n = 0;
                    for (_, v) in g.iter() {
                        v.ok();
                        n += 1;
                        if n % 64 == 0 {
                            std::thread::yield_now();
                        }
                    }
                }
            });
            churn(&t, &c, 0x777, 1200);
            stop.store(true, Ordering::Relaxed);
        });
        t.reclaim().unwrap();
    }
    assert_eq!(c.live.load(Ordering::Relaxed), 0);
}

/// A value whose drop panics, removed by a commit: the panic surfaces from
/// `reclaim` (S11), every other value is still dropped once, and the tree
/// keeps working.
#[test]
fn a_panicking_drop_in_a_batch() {
    let live = Arc::new(AtomicI64::new(0));
    {
        let t: MapleTree<Bomb> = MapleTree::with_manual_reclaim();
        for k in 0..400u64 {
            live.fetch_add(1, Ordering::Relaxed);
            t.insert(k * 3..k * 3 + 2, Bomb(k, live.clone())).unwrap();
        }
        let mut panics = 0;
        for k in 0..400u64 {
            let mut w = t.write();
            if k % 3 == 0 {
                w.erase(k * 3..k * 3 + 5).unwrap();
            } else {
                w.remove(k * 3);
            }
            w.commit();
            t.validate().unwrap();
            if k % 10 == 0 && t.reclaim().is_err() {
                panics += 1;
            }
        }
        while t.reclaim().is_err() {
            panics += 1;
        }
        assert!(panics > 0);
        assert_eq!(t.len(), 0);
        live.fetch_add(1, Ordering::Relaxed);
        t.insert(0..1, Bomb(1, live.clone())).unwrap();
        // Pending drops may still panic from the tree's drop: counted anyway.
        let _ = catch_unwind(AssertUnwindSafe(move || drop(t)));
    }
    assert_eq!(live.load(Ordering::Relaxed), 0);
}

/// Drop-free values ride in the batch's list behind the nodes: a pinned
/// reader keeps reading them (checksummed) across many commits that remove
/// them; ASan/LSan catch a free before the grace period or a leak.
#[test]
fn drop_free_values_in_the_batch_list() {
    let t: MapleTree<[u64; 4]> = MapleTree::with_manual_reclaim();
    let val = |k: u64| [k, k ^ MAGIC, k.rotate_left(7), !k];
    for round in 0..30u64 {
        for k in 0..200u64 {
            let a = (k * 37 + round) % 1000 * 4096 + round;
            let _ = t.insert(a..a + 4095, val(a));
        }
        let g = t.pin();
        let seen: Vec<_> = g
            .iter()
            .map(|(r, v)| (r.start, *v, v as *const [u64; 4]))
            .collect();
        for k in 0..300u64 {
            let mut w = t.write();
            let a = (k * 13 + round) % 1100 * 4096;
            match k % 3 {
                0 => drop(w.erase(a..a + 3 * 4096 + 5)),
                1 => drop(w.store(a + 7..a + 4096, val(a + 7))),
                _ => drop(w.remove(a + round)),
            }
            if k % 11 == 0 {
                drop(w); // abort
            } else {
                w.commit();
            }
            if k % 5 == 0 {
                t.reclaim().unwrap();
            }
        }
        t.validate().unwrap();
        // Still readable through the old pin.
        for &(s, copy, p) in &seen {
            // SAFETY: `g` pins the version these were read from (I7).
            let v = unsafe { &*p };
            assert_eq!(*v, copy, "value at {s:#x} changed under a pin");
            assert_eq!(*v, val(v[0]), "value at {s:#x} corrupted");
        }
        drop(g);
        t.reclaim().unwrap();
    }
}

/// An aborted transaction whose inserted values panic when dropped (the
/// drops run in `WriteTxn`'s drop, after the writer lock and the parts went
/// back): every value dropped once, the panic surfaces from the drop, and
/// the tree takes the next transactions. Then the same while already
/// unwinding (a panicking `Clone` in a store): no abort, values dropped.
#[test]
fn aborted_inserts_with_panicking_drops() {
    let live = Arc::new(AtomicI64::new(0));
    let mk = |k: u64| {
        live.fetch_add(1, Ordering::Relaxed);
        Bomb(k, live.clone())
    };
    let t: MapleTree<Bomb> = MapleTree::with_manual_reclaim();
    t.insert(1_000_000..1_000_100, mk(999)).unwrap();
    for round in 0..50u64 {
        let r = catch_unwind(AssertUnwindSafe(|| {
            let mut w = t.write();
            for k in 0..12 {
                w.insert(round * 100 + k * 4..round * 100 + k * 4 + 3, mk(k))
                    .unwrap();
            }
            if round % 2 == 1 {
                // Splits the 999 entry: its clone panics (unwinding drops w).
                let _ = w.store(1_000_010..1_000_020, mk(1));
            }
            drop(w);
        }));
        assert!(r.is_err(), "round {round}: a drop or clone panicked");
        t.validate().unwrap();
        assert_eq!(t.len(), 1);
        // The writer state is whole again: commits work.
        let mut w = t.write();
        w.insert(5_000_000 + round..5_000_001 + round, mk(1))
            .unwrap();
        w.commit();
        assert!(t.remove(5_000_000 + round).is_some());
    }
    while t.reclaim().is_err() {}
    drop(t);
    assert_eq!(live.load(Ordering::Relaxed), 0);
}
