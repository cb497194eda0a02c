//! Narrow leaves (I10) at the exact edge of their format: a leaf whose span
//! `end[n-1] - start[0]` is 2^32 - 1 (narrow) or 2^32 (wide), reached by
//! inserting, storing, trimming the first entry (which moves the base) or the
//! last one, erasing and removing, at several bases (0, just below 2^32,
//! just below `u64::MAX - 2^32`, and so that the last end is `u64::MAX`).
//! After every step: `validate()` (which checks I10's "narrow exactly when
//! the span fits"), the contents, point queries and every gap search against
//! the model, with gap sizes near 2^32 and near 2^44.
//!
//! Narrow inner nodes (I11) likewise: page-aligned keys whose inner nodes
//! are narrow at scale 2^12 with gaps near 2^32 pages, and a proptest that
//! mixes page-aligned keys with unaligned ones (which drop a node's scale
//! to 2^0, and may make it wide or split it) over spans on both sides of
//! 2^32 and 2^44 bytes.

#[path = "common/tree_model.rs"]
mod tree_model;

use maple_rcu::MapleTree;
use proptest::prelude::*;
use std::ops::Range;
use tree_model::Model;

const G: u64 = 1 << 32;
/// A page: the scale of a narrow inner node over page-aligned keys (I11).
const P: u64 = 1 << 12;

struct Pair {
    t: MapleTree<u64>,
    m: Model,
    tag: u64,
}

impl Pair {
    fn new() -> Self {
        Self {
            t: MapleTree::with_manual_reclaim(),
            m: Model::default(),
            tag: 0,
        }
    }

    fn insert(&mut self, r: Range<u64>) {
        self.tag += 1;
        let got = self.t.insert(r.clone(), self.tag).is_ok();
        assert_eq!(
            got,
            self.m.insert(r.clone(), self.tag).is_ok(),
            "insert {r:?}"
        );
        self.check(&r);
    }

    fn store(&mut self, r: Range<u64>) {
        self.tag += 1;
        let mut w = self.t.write();
        let got = w.store(r.clone(), self.tag).is_ok();
        w.commit();
        assert_eq!(
            got,
            self.m.store(r.clone(), self.tag).is_ok(),
            "store {r:?}"
        );
        self.check(&r);
    }

    fn erase(&mut self, r: Range<u64>) {
        let mut w = self.t.write();
        let got = w.erase(r.clone()).ok();
        w.commit();
        let want = (!r.is_empty()).then(|| self.m.cut(r.clone()));
        assert_eq!(got, want, "erase {r:?}");
        self.check(&r);
    }

    fn remove(&mut self, a: u64) {
        assert_eq!(self.t.remove(a), self.m.remove(a), "remove {a:#x}");
        self.check(&(a..a.saturating_add(1)));
    }

    /// Everything, after the step that touched `r`.
    fn check(&self, r: &Range<u64>) {
        self.t
            .validate()
            .unwrap_or_else(|e| panic!("after a step on {r:?}: {e}"));
        let g = self.t.pin();
        let all: Vec<_> = g.iter().map(|(r, &v)| (r, v)).collect();
        let want: Vec<_> = self.m.map.iter().map(|(&s, &(e, v))| (s..e, v)).collect();
        assert_eq!(all, want, "contents after a step on {r:?}");
        let probes = self
            .m
            .map
            .iter()
            .flat_map(|(&s, &(e, _))| [s.saturating_sub(1), s, e - 1, e])
            .chain([0, r.start, r.end.saturating_sub(1), r.end, u64::MAX]);
        for a in probes {
            assert_eq!(g.get(a).map(|(r, &v)| (r, v)), self.m.get(a), "get {a:#x}");
            assert_eq!(
                g.next(a).map(|(r, &v)| (r, v)),
                self.m.next(a),
                "next {a:#x}"
            );
            assert_eq!(
                g.prev(a).map(|(r, &v)| (r, v)),
                self.m.prev(a),
                "prev {a:#x}"
            );
        }
        assert_eq!(
            g.gaps(0..u64::MAX).collect::<Vec<_>>(),
            self.m.gaps(0..u64::MAX)
        );
        for size in [1, G - 2, G - 1, G, G + 1, 3, P * G - P, P * G, P * G + P] {
            for align in [1, 2, 1 << 12, G] {
                for w in [0..u64::MAX, r.start..r.end.max(r.start.saturating_add(1))] {
                    if w.is_empty() {
                        continue;
                    }
                    let f = g.try_find_gap(size, align, w.clone()).ok();
                    let b = g.try_find_gap_rev(size, align, w.clone()).ok();
                    let ctx = format!("size {size:#x} align {align:#x} in {w:x?}");
                    assert_eq!(f, self.m.find_gap(size, align, w.clone(), false), "{ctx}");
                    assert_eq!(b, self.m.find_gap(size, align, w, true), "rev {ctx}");
                }
            }
        }
    }
}

/// Bases: the leaf's first start. The last one puts the far end at u64::MAX.
fn bases() -> [u64; 5] {
    [0, 7, G - 3, u64::MAX - 2 * G, u64::MAX - G]
}

/// 13 unit entries at `b..b + 13`, then one entry whose end is `b + span`.
fn edge_leaf(b: u64, span: u64) -> Pair {
    let mut p = Pair::new();
    for k in 0..13 {
        p.insert(b + k..b + k + 1);
    }
    p.insert(b + span - 1..b + span);
    p
}

#[test]
fn the_span_edge_is_exact_both_ways() {
    for b in bases() {
        for span in [G - 1, G] {
            let mut p = edge_leaf(b, span);
            // Widen by one at the end, shrink back, at the start likewise.
            let e = b + span;
            p.store(e - 1..e.saturating_add(1));
            p.store(e - 1..e);
            p.erase(e.min(u64::MAX - 1)..e.saturating_add(1));
            p.erase(b..b + 1); // moves the base up by one
            p.insert(b..b + 1);
            p.store(b + 13..b + span - 1); // fills the middle, trims nothing
            p.erase(b + 14..b + span - 2); // a middle split of that entry
            p.remove(b + 14);
            p.store(b + 2..b + span); // swallows the far entry, trims nothing
            p.erase(b..b + span); // everything
        }
    }
}

#[test]
fn trimming_the_first_entry_rebases_the_leaf() {
    for b in [0, 7, G - 3, u64::MAX - G - 60] {
        let mut p = Pair::new();
        p.insert(b..b + 100);
        for k in 1..13 {
            p.insert(b + 100 + k..b + 101 + k);
        }
        p.insert(b + G + 50..b + G + 60); // span G + 60: wide
        // Trim the first entry from the left until the span fits.
        for cut in [10, 59, 60, 61, 99] {
            p.erase(b..b + cut);
        }
        // And grow it back to the left past the edge.
        p.store(b + 30..b + 99);
        p.store(b + 59..b + 62);
    }
}

/// Many leaves on both sides of every format edge: enough entries that
/// splits and merges mix narrow and wide leaves, then wide erases and
/// stores across them, a structural clone and a bulk build of the result.
#[test]
fn mixed_format_splits_merges_clone_and_bulk() {
    for b in [0, G - 5000, u64::MAX - 14 * G] {
        let mut p = Pair::new();
        // Alternate: a cluster of 9 small entries, then a jump of ~2^32.
        let mut at = b;
        for c in 0..12u64 {
            for k in 0..9 {
                p.insert(at + k * 3..at + k * 3 + 2);
            }
            at += G - 20 + c * 7;
        }
        for c in 0..12u64 {
            let s = b + c * (G - 20) + 10;
            p.erase(s..s + 6);
            p.store(s + 1..s + G / 2);
        }
        p.erase(b + G / 3..b + 5 * G);
        p.store(b + 7 * G - 3..b + 7 * G + 3);
        let copy = p.t.clone();
        copy.validate().unwrap();
        let bulk: MapleTree<u64> = p.t.pin().iter().map(|(r, &v)| (r, v)).collect();
        bulk.validate().unwrap();
        let a: Vec<_> = p.t.pin().iter().map(|(r, &v)| (r, v)).collect();
        let c: Vec<_> = copy.pin().iter().map(|(r, &v)| (r, v)).collect();
        let k: Vec<_> = bulk.pin().iter().map(|(r, &v)| (r, v)).collect();
        assert_eq!(a, c);
        assert_eq!(a, k);
        for r in [b..b + 1, b + G - 30..b + G + 30] {
            for t in [&copy, &bulk] {
                let mut w = t.write();
                w.erase(r.clone()).unwrap();
                w.store(r.start + 1..r.end + G, 9).unwrap();
                w.validate().unwrap();
                w.commit();
            }
        }
    }
}

/// Sorted entries whose gaps and lengths straddle 2^32, so consecutive
/// leaves of a dense bulk packing keep switching format.
fn sorted_mixed() -> impl Strategy<Value = Vec<Range<u64>>> {
    let step = prop_oneof![
        4 => 0..4u64,
        2 => (G - 3)..(G + 3),
        1 => Just(2 * G),
    ];
    let len = prop_oneof![4 => 1..4u64, 1 => (G - 2)..(G + 2)];
    (any::<u64>(), prop::collection::vec((step, len), 0..120)).prop_map(|(base, steps)| {
        let mut at = base % (1 << 40);
        let mut out = Vec::new();
        for (gap, l) in steps {
            let Some(s) = at.checked_add(gap) else { break };
            let Some(e) = s.checked_add(l) else { break };
            out.push(s..e);
            at = e;
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    /// The bulk append (`try_extend` after the last entry: the right spine
    /// is rebuilt with the old last leaf's entries packed with the new
    /// ones) on mixed-format input, the existing part built by single
    /// inserts or by a bulk build; optionally one bad entry (empty, or
    /// overlapping its predecessor), which must fail with that entry's
    /// value and leave the tree unchanged.
    #[test]
    fn bulk_append_of_mixed_formats(
        rs in sorted_mixed(),
        cut in any::<prop::sample::Index>(),
        by_insert in any::<bool>(),
        bad in prop::option::of((any::<prop::sample::Index>(), any::<bool>())),
    ) {
        let k = if rs.is_empty() { 0 } else { cut.index(rs.len() + 1) };
        let (old, new) = rs.split_at(k);
        let t: MapleTree<u64> = if by_insert {
            let t = MapleTree::with_manual_reclaim();
            for (i, r) in old.iter().enumerate() {
                t.insert(r.clone(), i as u64).unwrap();
            }
            t
        } else {
            old.iter().cloned().zip(0..).collect()
        };
        t.validate().unwrap();
        let mut m = Model::default();
        for (i, r) in old.iter().enumerate() {
            m.insert(r.clone(), i as u64).unwrap();
        }
        let mut items: Vec<_> = new.iter().cloned().zip(k as u64..).collect();
        let mut want_err = None;
        if let Some((at, empty)) = bad.filter(|_| !items.is_empty()) {
            let j = at.index(items.len());
            let r = items[j].0.clone();
            items[j].0 = if empty {
                r.start..r.start
            } else {
                let prev_end = if j > 0 { items[j - 1].0.end } else { old.last().map_or(0, |r| r.end) };
                prev_end.saturating_sub(1)..r.end
            };
            if items[j].0.is_empty() || prev_overlaps(&items, j, old) {
                want_err = Some(items[j].1);
            }
        }
        let before: Vec<_> = t.pin().iter().map(|(r, &v)| (r, v)).collect();
        match t.try_extend(items.clone()) {
            Ok(()) => {
                prop_assert_eq!(want_err, None);
                for (r, v) in items {
                    m.insert(r, v).unwrap();
                }
            }
            Err(e) => {
                prop_assert_eq!(Some(e.value), want_err, "{:?}", e.kind);
                let after: Vec<_> = t.pin().iter().map(|(r, &v)| (r, v)).collect();
                prop_assert_eq!(after, before);
            }
        }
        t.validate().unwrap();
        let all: Vec<_> = t.pin().iter().map(|(r, &v)| (r, v)).collect();
        let want: Vec<_> = m.map.iter().map(|(&s, &(e, v))| (s..e, v)).collect();
        prop_assert_eq!(all, want);
    }
}

/// Whether the (non-empty) `items[j]` overlaps the entry before it.
fn prev_overlaps(items: &[(Range<u64>, u64)], j: usize, old: &[Range<u64>]) -> bool {
    let prev_end = if j > 0 {
        Some(items[j - 1].0.end)
    } else {
        old.last().map(|r| r.end)
    };
    prev_end.is_some_and(|e| e > items[j].0.start)
}

#[derive(Debug, Clone)]
enum EdgeOp {
    Insert(u64, u64),
    Remove(u64),
    Store(u64, u64),
    Erase(u64, u64),
    Commit,
}

/// Addresses in two clusters 2^32 apart, from a base `b`: a leaf holding
/// both sits exactly at its format's edge, and in one transaction its
/// leaves are fresh, so inserts and removes take the in-place paths (a
/// narrow leaf edited where its base and format stay).
fn edge_op() -> impl Strategy<Value = EdgeOp> {
    let a = prop_oneof![0..40u64, (G - 40)..(G + 40)];
    prop_oneof![
        6 => (a.clone(), 1..3u64).prop_map(|(s, l)| EdgeOp::Insert(s, l)),
        3 => a.clone().prop_map(EdgeOp::Remove),
        2 => (a.clone(), 1..50u64).prop_map(|(s, l)| EdgeOp::Store(s, l)),
        1 => (a, 1..50u64).prop_map(|(s, l)| EdgeOp::Erase(s, l)),
        1 => Just(EdgeOp::Commit),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    #[test]
    fn in_place_leaf_edits_at_the_format_edge(
        b in prop_oneof![Just(0u64), Just(G - 20), Just(u64::MAX - G - 100), any::<u32>().prop_map(u64::from)],
        ops in prop::collection::vec(edge_op(), 1..150),
    ) {
        let t: MapleTree<u64> = MapleTree::with_manual_reclaim();
        let mut m = Model::default();
        let mut w = t.write();
        for (tag, op) in ops.into_iter().enumerate() {
            let tag = tag as u64;
            match op {
                EdgeOp::Insert(s, l) => {
                    let r = b + s..b + s + l;
                    prop_assert_eq!(w.insert(r.clone(), tag).is_ok(), m.insert(r, tag).is_ok());
                }
                EdgeOp::Remove(s) => prop_assert_eq!(w.remove(b + s), m.remove(b + s)),
                EdgeOp::Store(s, l) => {
                    let r = b + s..b + s + l;
                    w.store(r.clone(), tag).unwrap();
                    m.store(r, tag).unwrap();
                }
                EdgeOp::Erase(s, l) => {
                    let r = b + s..b + s + l;
                    prop_assert_eq!(w.erase(r.clone()).ok(), Some(m.cut(r)));
                }
                EdgeOp::Commit => {
                    w.commit();
                    t.validate().unwrap();
                    w = t.write();
                }
            }
            w.validate().unwrap();
            let all: Vec<_> = w.iter().map(|(r, &v)| (r, v)).collect();
            let want: Vec<_> = m.map.iter().map(|(&s, &(e, v))| (s..e, v)).collect();
            prop_assert_eq!(all, want);
            prop_assert_eq!(w.gaps(0..u64::MAX).collect::<Vec<_>>(), m.gaps(0..u64::MAX));
        }
        w.commit();
        t.validate().unwrap();
    }
}

/// Two clusters of twenty one-page entries, a gap of `G - d` pages (d near
/// 0) between them: inner nodes narrow at scale 2^12 whose stored gap is
/// close to the largest 32-bit offset. Gap searches of every size around it,
/// before and after the far cluster moves by one page either way (the
/// scaled span crossing `u32::MAX`).
#[test]
fn page_scaled_gaps_near_2_pow_44() {
    for b in [0, 5 * P, u64::MAX - 3 * G * P] {
        for d in [60, 45, 41] {
            let mut p = Pair::new();
            for k in 0..20 {
                p.insert(b + 2 * k * P..b + (2 * k + 1) * P);
            }
            let far = b + 40 * P + (G - d) * P;
            for k in 0..20 {
                p.insert(far + 2 * k * P..far + (2 * k + 1) * P);
            }
            let gap = (G - d + 1) * P;
            let g = p.t.pin();
            for size in [gap - P, gap - 1, gap, gap + 1, gap + P] {
                for align in [1, P, 2 * P, 1 << 30] {
                    let w = 0..u64::MAX;
                    assert_eq!(
                        g.try_find_gap(size, align, w.clone()).ok(),
                        p.m.find_gap(size, align, w.clone(), false),
                        "size {size:#x} align {align:#x}"
                    );
                    assert_eq!(
                        g.try_find_gap_rev(size, align, w.clone()).ok(),
                        p.m.find_gap(size, align, w, true),
                        "rev size {size:#x} align {align:#x}"
                    );
                }
            }
            drop(g);
            // Move the far cluster's last entry out by one page and back.
            let last = far + 38 * P;
            p.remove(last);
            p.insert(last + P..last + 2 * P);
            p.remove(last + P);
            p.insert(last..last + P);
            // And the near cluster's first entry off the page scale.
            p.remove(b);
            p.insert(b + 1..b + P);
            p.remove(b + 1);
            p.insert(b..b + P);
        }
    }
}

/// One step of `mixed_scales`: `(slot, odd, len)` name a key `slot *
/// stride + odd` (odd = 0: page-aligned) and a length in pages (plus `odd`).
#[derive(Clone, Debug)]
enum ScaleOp {
    Insert(u64, u64, u64),
    Remove(u64, u64),
    Store(u64, u64, u64),
    Erase(u64, u64, u64),
}

fn scale_op() -> impl Strategy<Value = ScaleOp> {
    let slot = 0..400u64;
    let odd = prop_oneof![6 => Just(0u64), 1 => 1..P];
    let len = 1..6u64;
    prop_oneof![
        8 => (slot.clone(), odd.clone(), len.clone()).prop_map(|(s, o, l)| ScaleOp::Insert(s, o, l)),
        3 => (slot.clone(), odd.clone()).prop_map(|(s, o)| ScaleOp::Remove(s, o)),
        1 => (slot.clone(), odd.clone(), len.clone()).prop_map(|(s, o, l)| ScaleOp::Store(s, o, l)),
        1 => (slot, odd, len).prop_map(|(s, o, l)| ScaleOp::Erase(s, o, l)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    /// Page-aligned and unaligned keys mixed, with slot strides that put
    /// inner nodes' byte spans below 2^32, between 2^32 and 2^44, and past
    /// 2^44 (so their formats are narrow at scale 2^12, narrow at 2^0,
    /// wide, or split when an unaligned key arrives or is exposed): the
    /// whole `Pair::check` (validate, contents, point queries, gap
    /// searches) after every step.
    #[test]
    fn mixed_scales(
        stride in prop_oneof![Just(4 * P), Just(G / 64), Just(G * 16), Just(G * P / 128)],
        b in prop_oneof![Just(0u64), Just(P), Just(u64::MAX - 401 * (G * 16))],
        ops in prop::collection::vec(scale_op(), 1..320),
    ) {
        let mut p = Pair::new();
        for op in ops {
            // Below u64::MAX, so that every range below is non-empty.
            let at = |s: u64, o: u64| {
                b.saturating_add(s.saturating_mul(stride)).saturating_add(o).min(u64::MAX - 1)
            };
            match op {
                ScaleOp::Insert(s, o, l) => {
                    let a = at(s, o);
                    p.insert(a..a.saturating_add(l * P));
                }
                ScaleOp::Remove(s, o) => p.remove(at(s, o)),
                ScaleOp::Store(s, o, l) => {
                    let a = at(s, o);
                    p.store(a..a.saturating_add(l * stride));
                }
                ScaleOp::Erase(s, o, l) => {
                    let a = at(s, o);
                    p.erase(a..a.saturating_add(l * stride));
                }
            }
        }
    }
}
