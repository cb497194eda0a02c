//! The differential driver over `MapleTree<u64>` and the BTreeMap model in
//! `tree_model.rs`: one operation enum, applied to both, every result compared
//! (including the error kind and the value given back), `validate()` after
//! every mutation, transactions checked for isolation (the published version
//! and a reader pinned before the transaction are unchanged until commit).
//!
//! Shared by the stable proptest (`tests/tree.rs`, which generates `Op`s with
//! proptest strategies) and the libFuzzer target (`fuzz/fuzz_targets/tree_ops.rs`,
//! which implements `Arbitrary` for `Op`); both include this file and
//! `tree_model.rs` with `#[path]`.
#![allow(dead_code)]

use crate::tree_model::Model;
use maple_rcu::MapleTree;
use maple_rcu::tree::{Error, ErrorKind, WriteTxn};
use std::ops::Range;

/// One operation on the published tree. Ranges are given as `(start, len)` and
/// end at `start.saturating_add(len)`, so `len == 0` and `start == u64::MAX`
/// give empty ranges. `align` is used as given (0 and non-powers of two are
/// bad input on purpose).
#[derive(Clone, Debug)]
pub enum Op {
    Insert(u64, u64),
    Remove(u64),
    /// `(size, align, lo, hi, rev)`: `alloc_range(_rev)(size, align, lo..hi)`.
    Alloc(u64, u64, u64, u64, bool),
    /// A transaction; committed when the flag is set, else dropped (aborted).
    Txn(Vec<TxnOp>, bool),
    Get(u64),
    Next(u64),
    Prev(u64),
    /// `range(a..b)` forwards, backwards, and zig-zag: bit `i` of the pattern
    /// picks `next_back` (1) or `next` (0) for the `i`-th step.
    Range(u64, u64, u64),
    /// `(size, align, lo, hi, rev)`: `find_gap(_rev)`.
    Gap(u64, u64, u64, u64, bool),
    Gaps(u64, u64),
    /// `store(start..end(start, len))`: overwrite.
    Store(u64, u64),
    /// `erase(start..end(start, len))`: punch a hole.
    Erase(u64, u64),
    /// `remove_exact(start..end(start, len))`.
    RemoveExact(u64, u64),
    /// `take(addr)`, then `try_take`/`wait` on the handle.
    Take(u64),
    /// `retain(|r, v| (r.start ^ v) % m != 0)` (m = 0: clear).
    Retain(u64),
}

/// One operation inside a transaction (on the pending version).
#[derive(Clone, Debug)]
pub enum TxnOp {
    Insert(u64, u64),
    Remove(u64),
    Alloc(u64, u64, u64, u64, bool),
    Get(u64),
    Next(u64),
    Range(u64, u64, u64),
    Gap(u64, u64, u64, u64, bool),
    Store(u64, u64),
    Erase(u64, u64),
    RemoveExact(u64, u64),
    Retain(u64),
}

/// The predicate of `Op::Retain(m)`/`TxnOp::Retain(m)` (`m == 0`: clear).
pub fn keep(m: u64, r: &Range<u64>, v: u64) -> bool {
    m != 0 && !(r.start ^ v).is_multiple_of(m)
}

/// What `remove_exact(r)` must return on `m` (and apply it).
pub fn remove_exact_expect(m: &mut Model, r: Range<u64>) -> Result<(), ErrorKind> {
    if r.start >= r.end {
        return Err(ErrorKind::EmptyRange);
    }
    match m.range(r.clone()).first() {
        None => Err(ErrorKind::NotFound),
        Some((er, _)) if *er == r => {
            m.map.remove(&r.start);
            Ok(())
        }
        Some(_) => Err(ErrorKind::NotExact),
    }
}

/// Applies `retain` with predicate `keep(m, ..)` to the model.
pub fn retain_model(model: &mut Model, m: u64) {
    model.map.retain(|&s, &mut (e, v)| keep(m, &(s..e), v));
}

/// Compares a store's result (the value must come back on error).
fn check_store(got: Result<(), Error<u64>>, m: &mut Model, r: Range<u64>, v: u64) {
    let want = m
        .store(r.clone(), v)
        .map_err(|_| (ErrorKind::EmptyRange, v));
    assert_eq!(got.map_err(|e| (e.kind, e.value)), want, "store {r:?}");
}

/// Compares an erase's result.
fn check_erase(got: Result<usize, ErrorKind>, m: &mut Model, r: Range<u64>) {
    let want = if r.start >= r.end {
        Err(ErrorKind::EmptyRange)
    } else {
        Ok(m.cut(r.clone()))
    };
    assert_eq!(got, want, "erase {r:?}");
}

/// The end of `start + len`, clamped to the key space.
pub fn end(start: u64, len: u64) -> u64 {
    start.saturating_add(len)
}

/// The error an insert of `r` must give on `m`, if any.
pub fn insert_error(m: &Model, r: &Range<u64>) -> Option<ErrorKind> {
    if r.start >= r.end {
        Some(ErrorKind::EmptyRange)
    } else if m.overlaps(r) {
        Some(ErrorKind::Overlap)
    } else {
        None
    }
}

/// What an allocation must return on `m`: the start, or the error kind (the
/// argument checks come first, in this order).
pub fn alloc_expect(
    m: &Model,
    size: u64,
    align: u64,
    w: Range<u64>,
    rev: bool,
) -> Result<u64, ErrorKind> {
    if size == 0 {
        Err(ErrorKind::ZeroSize)
    } else if !align.is_power_of_two() {
        Err(ErrorKind::BadAlignment)
    } else if w.start >= w.end {
        Err(ErrorKind::EmptyWindow)
    } else {
        m.find_gap(size, align, w, rev).ok_or(ErrorKind::NoSpace)
    }
}

/// Compares an insert's result (the value must come back on error).
fn check_insert(got: Result<(), Error<u64>>, m: &mut Model, r: Range<u64>, v: u64) {
    let want = insert_error(m, &r);
    assert_eq!(
        got.map_err(|e| (e.kind, e.value)),
        want.map_or(Ok(()), |k| Err((k, v))),
        "insert {r:?}"
    );
    if want.is_none() {
        m.insert(r, v).unwrap();
    }
}

/// Compares an allocation's result and applies it to the model.
fn check_alloc(
    got: Result<Range<u64>, Error<u64>>,
    m: &mut Model,
    (size, align, w, rev): (u64, u64, Range<u64>, bool),
    v: u64,
) {
    let want = alloc_expect(m, size, align, w.clone(), rev);
    assert_eq!(
        got.map_err(|e| (e.kind, e.value)),
        want.map(|s| s..s + size).map_err(|k| (k, v)),
        "alloc size {size} align {align} {w:?} rev {rev}"
    );
    if let Ok(s) = want {
        m.insert(s..s + size, v).unwrap();
    }
}

/// Read-only checks shared by the published version and a transaction's
/// pending version (both have the same read methods).
macro_rules! check_reads {
    ($r:expr, $m:expr, get $a:expr) => {{
        assert_eq!($r.get($a).map(|(r, v)| (r, *v)), $m.get($a), "get {:#x}", $a);
        let all = $m.range(0..u64::MAX);
        assert_eq!($r.first().map(|(r, v)| (r, *v)), all.first().cloned(), "first");
        assert_eq!($r.last().map(|(r, v)| (r, *v)), all.last().cloned(), "last");
    }};
    ($r:expr, $m:expr, next $a:expr) => {
        assert_eq!($r.next($a).map(|(r, v)| (r, *v)), $m.next($a), "next {:#x}", $a)
    };
    ($r:expr, $m:expr, prev $a:expr) => {
        assert_eq!($r.prev($a).map(|(r, v)| (r, *v)), $m.prev($a), "prev {:#x}", $a)
    };
    ($r:expr, $m:expr, range $a:expr, $b:expr, $zig:expr) => {{
        let want = $m.range($a..$b);
        let fwd: Vec<_> = $r.range($a..$b).map(|(r, v)| (r, *v)).collect();
        assert_eq!(fwd, want, "range {:#x}..{:#x}", $a, $b);
        let mut back: Vec<_> = $r.range($a..$b).rev().map(|(r, v)| (r, *v)).collect();
        back.reverse();
        assert_eq!(back, want, "range {:#x}..{:#x} rev", $a, $b);
        // zig-zag: front items in order, then back items reversed, must
        // concatenate to the whole range, and the iterator is fused after.
        let mut it = $r.range($a..$b);
        let (mut front, mut backs) = (Vec::new(), Vec::new());
        for i in 0u32.. {
            let item = if ($zig >> (i % 64)) & 1 == 1 {
                it.next_back().map(|(r, v)| backs.push((r, *v)))
            } else {
                it.next().map(|(r, v)| front.push((r, *v)))
            };
            if item.is_none() {
                break;
            }
        }
        assert!(it.next().is_none() && it.next_back().is_none());
        backs.reverse();
        front.extend(backs);
        assert_eq!(front, want, "range {:#x}..{:#x} zig-zag {:#x}", $a, $b, $zig);
    }};
    ($r:expr, $m:expr, gap $size:expr, $align:expr, $lo:expr, $hi:expr, $rev:expr) => {{
        // The deprecated `find_gap` too: it must stay `try_find_gap(..).ok()`.
        #[allow(deprecated)]
        let got = if $rev {
            $r.find_gap_rev($size, $align, $lo..$hi)
        } else {
            $r.find_gap($size, $align, $lo..$hi)
        };
        let tried = if $rev {
            $r.try_find_gap_rev($size, $align, $lo..$hi)
        } else {
            $r.try_find_gap($size, $align, $lo..$hi)
        };
        assert_eq!(
            tried,
            alloc_expect(&$m, $size, $align, $lo..$hi, $rev),
            "try_find_gap"
        );
        assert_eq!(
            got,
            $m.find_gap($size, $align, $lo..$hi, $rev),
            "find_gap size {} align {} {:#x}..{:#x} rev {}",
            $size,
            $align,
            $lo,
            $hi,
            $rev
        );
    }};
}

/// A tree, its model, and a value counter (every value is unique).
pub struct Harness {
    pub t: MapleTree<u64>,
    pub m: Model,
    next_val: u64,
}

impl Harness {
    /// Drives `t`, which must be empty (how it was built is the caller's:
    /// `MapleTree::new()`, or a tree on a test platform in `tests/nostd.rs`).
    pub fn with_tree(t: MapleTree<u64>) -> Self {
        assert!(t.is_empty());
        Self {
            t,
            m: Model::default(),
            next_val: 0,
        }
    }

    fn val(&mut self) -> u64 {
        self.next_val += 1;
        self.next_val
    }

    /// Applies `op` to both and compares; validates after every step.
    pub fn apply(&mut self, op: Op) {
        match op {
            Op::Insert(s, l) => {
                let (v, r) = (self.val(), s..end(s, l));
                check_insert(self.t.insert(r.clone(), v), &mut self.m, r, v);
            }
            Op::Remove(a) => assert_eq!(self.t.remove(a), self.m.remove(a), "remove {a:#x}"),
            Op::Alloc(size, align, lo, hi, rev) => {
                let v = self.val();
                let got = if rev {
                    self.t.alloc_range_rev(size, align, lo..hi, v)
                } else {
                    self.t.alloc_range(size, align, lo..hi, v)
                };
                check_alloc(got, &mut self.m, (size, align, lo..hi, rev), v);
            }
            Op::Txn(ops, commit) => self.txn(ops, commit),
            Op::Get(a) => check_reads!(self.t.pin(), self.m, get a),
            Op::Next(a) => check_reads!(self.t.pin(), self.m, next a),
            Op::Prev(a) => check_reads!(self.t.pin(), self.m, prev a),
            Op::Range(a, b, zig) => {
                let r = self.t.pin();
                check_reads!(r, self.m, range a, b, zig)
            }
            Op::Gap(size, align, lo, hi, rev) => {
                check_reads!(self.t.pin(), self.m, gap size, align, lo, hi, rev)
            }
            Op::Gaps(a, b) => {
                let r = self.t.pin();
                let want = self.m.gaps(a..b);
                assert_eq!(
                    r.gaps(a..b).collect::<Vec<_>>(),
                    want,
                    "gaps {a:#x}..{b:#x}"
                );
                let mut back: Vec<_> = r.gaps(a..b).rev().collect();
                back.reverse();
                assert_eq!(back, want, "gaps {a:#x}..{b:#x} rev");
                // Alternating ends yield each gap once.
                let mut it = r.gaps(a..b);
                let (mut front, mut backs) = (Vec::new(), Vec::new());
                for i in 0.. {
                    let g = if i % 2 == 0 {
                        it.next()
                    } else {
                        it.next_back()
                    };
                    let Some(g) = g else { break };
                    if i % 2 == 0 {
                        front.push(g)
                    } else {
                        backs.push(g)
                    }
                }
                backs.reverse();
                front.extend(backs);
                assert_eq!(front, want, "gaps {a:#x}..{b:#x} zig-zag");
            }
            Op::Store(s, l) => {
                let (v, r) = (self.val(), s..end(s, l));
                check_store(self.t.store(r.clone(), v), &mut self.m, r, v);
            }
            Op::Erase(s, l) => {
                let r = s..end(s, l);
                check_erase(self.t.erase(r.clone()), &mut self.m, r);
            }
            Op::RemoveExact(s, l) => {
                let r = s..end(s, l);
                let got = self.t.remove_exact(r.clone());
                assert_eq!(
                    got,
                    remove_exact_expect(&mut self.m, r.clone()),
                    "remove_exact {r:?}"
                );
            }
            Op::Take(a) => {
                let want = self.m.get(a);
                let got = self.t.take(a).map(|(r, h)| {
                    let v = match h.try_take() {
                        Ok(v) => v,
                        Err(h) => h.wait(),
                    };
                    (r, v)
                });
                assert_eq!(got, want, "take {a:#x}");
                self.m.remove(a);
            }
            Op::Retain(m) => {
                if m == 0 {
                    self.t.clear();
                } else {
                    self.t.retain(|r, v| keep(m, &r, *v));
                }
                retain_model(&mut self.m, m);
            }
        }
        self.t.validate().unwrap();
        assert_eq!(self.t.len(), self.m.map.len());
    }

    fn txn(&mut self, ops: Vec<TxnOp>, commit: bool) {
        let mut shadow = self.m.clone();
        // A reader pinned before the transaction keeps its version after commit.
        let before = self.t.pin();
        let mut w: WriteTxn<'_, u64> = self.t.write();
        for op in ops {
            let mutated = !matches!(
                op,
                TxnOp::Get(_) | TxnOp::Next(_) | TxnOp::Range(..) | TxnOp::Gap(..)
            );
            match op {
                TxnOp::Insert(s, l) => {
                    self.next_val += 1;
                    let (v, r) = (self.next_val, s..end(s, l));
                    check_insert(w.insert(r.clone(), v), &mut shadow, r, v);
                }
                TxnOp::Remove(a) => assert_eq!(w.remove(a), shadow.remove(a), "txn remove {a:#x}"),
                TxnOp::Alloc(size, align, lo, hi, rev) => {
                    self.next_val += 1;
                    let v = self.next_val;
                    let got = if rev {
                        w.alloc_range_rev(size, align, lo..hi, v)
                    } else {
                        w.alloc_range(size, align, lo..hi, v)
                    };
                    check_alloc(got, &mut shadow, (size, align, lo..hi, rev), v);
                }
                TxnOp::Get(a) => check_reads!(w, shadow, get a),
                TxnOp::Next(a) => check_reads!(w, shadow, next a),
                TxnOp::Range(a, b, zig) => check_reads!(w, shadow, range a, b, zig),
                TxnOp::Gap(size, align, lo, hi, rev) => {
                    check_reads!(w, shadow, gap size, align, lo, hi, rev)
                }
                TxnOp::Store(s, l) => {
                    self.next_val += 1;
                    let (v, r) = (self.next_val, s..end(s, l));
                    check_store(w.store(r.clone(), v), &mut shadow, r, v);
                }
                TxnOp::Erase(s, l) => {
                    let r = s..end(s, l);
                    check_erase(w.erase(r.clone()), &mut shadow, r);
                }
                TxnOp::RemoveExact(s, l) => {
                    let r = s..end(s, l);
                    let got = w.remove_exact(r.clone());
                    assert_eq!(
                        got,
                        remove_exact_expect(&mut shadow, r.clone()),
                        "txn remove_exact {r:?}"
                    );
                }
                TxnOp::Retain(m) => {
                    if m == 0 {
                        w.clear();
                    } else {
                        w.retain(|r, v| keep(m, &r, *v));
                    }
                    retain_model(&mut shadow, m);
                }
            }
            if mutated {
                w.validate().unwrap();
            }
            assert_eq!(w.len(), shadow.map.len());
            assert_eq!(w.is_empty(), shadow.map.is_empty());
        }
        // Nothing is visible before commit.
        let committed = self.m.range(0..u64::MAX);
        assert_eq!(entries(&self.t), committed, "pending changes leaked");
        assert_eq!(self.t.len(), self.m.map.len());
        if commit {
            w.commit();
            self.m = shadow;
        } else {
            drop(w);
        }
        let old: Vec<_> = before.iter().map(|(r, v)| (r, *v)).collect();
        assert_eq!(old, committed, "a pinned reader's version changed");
        drop(before);
        assert_eq!(entries(&self.t), self.m.range(0..u64::MAX));
    }

    /// Final full comparison.
    pub fn finish(self) {
        self.t.validate().unwrap();
        assert_eq!(entries(&self.t), self.m.range(0..u64::MAX));
        let all = 0..u64::MAX;
        assert_eq!(
            self.t.pin().gaps(all.clone()).collect::<Vec<_>>(),
            self.m.free()
        );
    }
}

/// Every entry of the published version, in order.
pub fn entries(t: &MapleTree<u64>) -> Vec<(Range<u64>, u64)> {
    t.pin().iter().map(|(r, v)| (r, *v)).collect()
}
