//! A range-attribute map (page protections, cache policies, memory types):
//! set an attribute over a range, overwriting what was there, punch holes,
//! and look up the attribute of an address.
//!
//! `MapleTree::store`/`erase` follow Linux (`mtree_store_range`): no
//! coalescing of equal neighbours, like nodit's `insert_overwrite`/`cut`;
//! rangemap coalesces, so it may hold fewer entries for the same contents.

use crate::common::Rng;
use maple_rcu::MapleTree;
use nodit::interval::ie;
use nodit::{Interval, NoditMap};
use rangemap::RangeMap;
use std::ops::Range;

pub const PAGE: u64 = 4096;
/// The attributed window: 1 Mi pages (4 GiB).
pub const PAGES: u64 = 1 << 20;

pub trait AttrMap: Sized {
    const NAME: &'static str;
    fn new() -> Self;
    /// Sets `r` to `attr`, overwriting (and splitting) what overlaps it.
    fn set(&mut self, r: Range<u64>, attr: u32);
    /// Removes every attribute inside `r`.
    fn punch(&mut self, r: Range<u64>);
    fn get(&self, addr: u64) -> Option<u32>;
    fn len(&self) -> usize;
}

/// `MapleTree::store`/`erase`: one commit each, readable lock-free by
/// other threads meanwhile.
pub struct Maple(MapleTree<u32>);

impl AttrMap for Maple {
    const NAME: &'static str = "MapleTree";
    fn new() -> Self {
        Self(MapleTree::new())
    }
    fn set(&mut self, r: Range<u64>, attr: u32) {
        self.0.store(r, attr).unwrap();
    }
    fn punch(&mut self, r: Range<u64>) {
        self.0.erase(r).unwrap();
    }
    fn get(&self, addr: u64) -> Option<u32> {
        self.0.pin().get(addr).map(|(_, &a)| a)
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// rangemap's `RangeMap` (`insert` overwrites and coalesces, `remove`).
pub struct Rangemap(RangeMap<u64, u32>);

impl AttrMap for Rangemap {
    const NAME: &'static str = "rangemap";
    fn new() -> Self {
        Self(RangeMap::new())
    }
    fn set(&mut self, r: Range<u64>, attr: u32) {
        self.0.insert(r, attr);
    }
    fn punch(&mut self, r: Range<u64>) {
        self.0.remove(r);
    }
    fn get(&self, addr: u64) -> Option<u32> {
        self.0.get(&addr).copied()
    }
    fn len(&self) -> usize {
        self.0.iter().count()
    }
}

/// nodit's `NoditMap` (`insert_overwrite`, `cut`; no coalescing).
pub struct Nodit(NoditMap<u64, Interval<u64>, u32>);

impl AttrMap for Nodit {
    const NAME: &'static str = "nodit";
    fn new() -> Self {
        Self(NoditMap::new())
    }
    fn set(&mut self, r: Range<u64>, attr: u32) {
        drop(self.0.insert_overwrite(ie(r.start, r.end), attr));
    }
    fn punch(&mut self, r: Range<u64>) {
        drop(self.0.cut(ie(r.start, r.end)));
    }
    fn get(&self, addr: u64) -> Option<u32> {
        self.0.get_at_point(addr).copied()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// One operation of the attribute workload.
#[derive(Clone, Debug)]
pub enum Op {
    Set(Range<u64>, u32),
    Punch(Range<u64>),
    Get(u64),
}

/// A random range of 1-64 pages in the window.
fn pages(rng: &mut Rng) -> Range<u64> {
    let start = rng.range(0, PAGES - 64) * PAGE;
    start..start + rng.range(1, 64) * PAGE
}

/// `n` operations: 60 % set (one of 8 attributes), 20 % punch, 20 % get.
pub fn ops(n: usize, seed: u64) -> Vec<Op> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| match rng.index(10) {
            0..=5 => Op::Set(pages(&mut rng), rng.index(8) as u32),
            6 | 7 => Op::Punch(pages(&mut rng)),
            _ => Op::Get(rng.range(0, PAGES * PAGE - 1)),
        })
        .collect()
}

/// Applies `op`; returns the attribute a `Get` found (0 otherwise), so
/// that lookups are not optimised away.
#[inline]
pub fn apply<M: AttrMap>(m: &mut M, op: &Op) -> u32 {
    match op {
        Op::Set(r, a) => {
            m.set(r.clone(), *a);
            0
        }
        Op::Punch(r) => {
            m.punch(r.clone());
            0
        }
        Op::Get(a) => m.get(*a).map_or(0, |x| x + 1),
    }
}

/// A map after `n` warm-up operations (about `0.4 n` entries at 16 Ki, the
/// same for every contender but rangemap, which coalesces).
pub fn warm<M: AttrMap>(n: usize) -> M {
    let mut m = M::new();
    for op in ops(n, 1) {
        apply(&mut m, &op);
    }
    m
}

/// Checks that the contenders agree on every lookup of the workload and at
/// random addresses, and that maple and nodit (neither coalesces) hold the
/// same number of entries.
pub fn agree(warm_ops: usize, ops_n: usize) {
    let mut a = warm::<Maple>(warm_ops);
    let mut b = warm::<Rangemap>(warm_ops);
    let mut c = warm::<Nodit>(warm_ops);
    for op in &ops(ops_n, 2) {
        let x = apply(&mut a, op);
        assert_eq!((apply(&mut b, op), apply(&mut c, op)), (x, x), "{op:?}");
    }
    assert_eq!(a.len(), c.len());
    let mut rng = Rng::new(9);
    for _ in 0..100_000 {
        let p = rng.range(0, PAGES * PAGE - 1);
        let x = a.get(p);
        assert_eq!((b.get(p), c.get(p)), (x, x), "{p:#x}");
    }
    a.0.validate().unwrap();
}
