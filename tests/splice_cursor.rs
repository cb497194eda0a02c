//! The one-descent store/erase (`src/tree/splice.rs`) and the cursors
//! (`src/tree/cursor.rs`) against a plain model (`common::tree_model`), on
//! dense layouts where one store or erase spans many leaves, with counted
//! values: every value made (inserted, stored, or cloned by a split) is
//! dropped exactly once, and `validate()` runs after every step.

#[path = "common/counted.rs"]
mod counted;
#[path = "common/tree_model.rs"]
mod tree_model;
#[path = "common/tree_ops.rs"]
mod tree_ops;

use counted::{Log, Val, model_all, tagged};
use maple_rcu::MapleTree;
use proptest::prelude::*;
use std::ops::Range;
use std::sync::Arc;
use tree_model::Model;

#[derive(Debug, Clone)]
enum Op {
    Store(u64, u64),
    Erase(u64, u64),
    Insert(u64, u64),
    Remove(u64),
    RemoveExact(u64, u64),
    Commit,
    Abort,
}

/// Small entries on a small space: stores and erases of up to 400 cover up
/// to about 200 entries (20+ leaves), so the multi-round path runs often.
fn op() -> impl Strategy<Value = Op> {
    // A band across 2^32 too: leaves there switch between the narrow and
    // the wide format (I10) as stores widen or shrink their span.
    let a = prop_oneof![
        8 => 0..2000u64,
        1 => (1u64 << 32) - 1000..(1u64 << 32) + 1000,
        1 => (u64::MAX - 500)..=u64::MAX,
    ];
    prop_oneof![
        5 => (a.clone(), 0..8u64).prop_map(|(s, l)| Op::Store(s, l)),
        2 => (a.clone(), 0..400u64).prop_map(|(s, l)| Op::Store(s, l)),
        2 => (a.clone(), 0..400u64).prop_map(|(s, l)| Op::Erase(s, l)),
        6 => (a.clone(), 1..4u64).prop_map(|(s, l)| Op::Insert(s, l)),
        2 => a.clone().prop_map(Op::Remove),
        1 => (a, 0..6u64).prop_map(|(s, l)| Op::RemoveExact(s, l)),
        1 => Just(Op::Commit),
        1 => Just(Op::Abort),
    ]
}

/// The range `s..s + l`, clamped at the top of the key space.
fn rng(s: u64, l: u64) -> Range<u64> {
    s..s.saturating_add(l)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn store_erase_differential_counted(
        seed in prop::collection::vec((0..2000u64, 1..4u64), 0..400),
        ops in prop::collection::vec(op(), 1..200),
    ) {
        let log = Arc::new(Log::default());
        let t: MapleTree<Val> = MapleTree::with_manual_reclaim();
        let mut committed = Model::default();
        {
            let mut w = t.write();
            for (i, (s, l)) in seed.into_iter().enumerate() {
                let r = rng(s * 4, l);
                if committed.insert(r.clone(), i as u64).is_ok() {
                    w.insert(r, log.make(i as u64)).unwrap();
                }
            }
            w.commit();
        }
        let mut m = committed.clone();
        let mut w = t.write();
        let mut tag = 1u64 << 32;
        for op in ops {
            tag += 1;
            match op {
                Op::Store(s, l) => {
                    let r = rng(s, l);
                    let got = w.store(r.clone(), log.make(tag)).map_err(|e| e.kind);
                    prop_assert_eq!(got.is_ok(), m.store(r, tag).is_ok());
                }
                Op::Erase(s, l) => {
                    let r = rng(s, l);
                    let want = (!r.is_empty()).then(|| m.cut(r.clone()));
                    prop_assert_eq!(w.erase(r).ok(), want);
                }
                Op::Insert(s, l) => {
                    let r = rng(s, l);
                    let got = w.insert(r.clone(), log.make(tag)).is_ok();
                    prop_assert_eq!(got, m.insert(r, tag).is_ok());
                }
                Op::Remove(a) => prop_assert_eq!(w.remove(a), m.remove(a)),
                Op::RemoveExact(s, l) => {
                    let r = rng(s, l);
                    let want = tree_ops::remove_exact_expect(&mut m, r.clone());
                    prop_assert_eq!(w.remove_exact(r), want);
                }
                Op::Commit => {
                    w.commit();
                    committed = m.clone();
                    w = t.write();
                }
                Op::Abort => {
                    drop(w);
                    m = committed.clone();
                    w = t.write();
                }
            }
            w.validate().unwrap();
            prop_assert_eq!(w.len(), m.map.len());
            prop_assert_eq!(tagged(w.iter()), model_all(&m));
        }
        w.commit();
        t.validate().unwrap();
        prop_assert_eq!(tagged(t.pin().iter()), model_all(&m));
        t.reclaim().unwrap();
        drop(t);
        log.all_dropped_once();
    }
}

#[derive(Debug, Clone)]
enum CurOp {
    Next,
    Prev,
    PeekNext,
    PeekPrev,
    Find(u64),
    Gaps,
    Remove,
    Replace,
    Insert(u64, u64),
    Store(u64, u64),
    Seek(u64),
}

fn cur_op() -> impl Strategy<Value = CurOp> {
    prop_oneof![
        6 => Just(CurOp::Next),
        4 => Just(CurOp::Prev),
        1 => Just(CurOp::PeekNext),
        1 => Just(CurOp::PeekPrev),
        1 => (0..40u64).prop_map(CurOp::Find),
        1 => Just(CurOp::Gaps),
        2 => Just(CurOp::Remove),
        2 => Just(CurOp::Replace),
        2 => (0..20u64, 1..4u64).prop_map(|(d, l)| CurOp::Insert(d, l)),
        2 => (0..20u64, 0..30u64).prop_map(|(d, l)| CurOp::Store(d, l)),
        1 => (0..1000u64).prop_map(CurOp::Seek),
    ]
}

/// The model cursor: on an entry (its start) or in a gap at an address.
#[derive(Debug, Clone, Copy, PartialEq)]
enum MPos {
    On(u64),
    Gap(u64),
}

fn m_after(m: &Model, p: MPos) -> Option<(Range<u64>, u64)> {
    match p {
        MPos::On(s) => m.next(m.map[&s].0),
        MPos::Gap(a) => m.next(a),
    }
}

fn m_before(m: &Model, p: MPos) -> Option<(Range<u64>, u64)> {
    match p {
        MPos::On(s) | MPos::Gap(s) => m.prev(s),
    }
}

fn m_get(m: &Model, p: MPos) -> Option<(Range<u64>, u64)> {
    match p {
        MPos::On(s) => Some((s..m.map[&s].0, m.map[&s].1)),
        MPos::Gap(_) => None,
    }
}

fn m_seek(m: &Model, a: u64) -> MPos {
    m.next(a)
        .map_or(MPos::Gap(u64::MAX), |(r, _)| MPos::On(r.start))
}

fn one(e: Option<(Range<u64>, &Val)>) -> Option<(Range<u64>, u64)> {
    e.map(|(r, v)| (r, v.tag))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn cursor_walks_and_edits_differential(
        seed in prop::collection::vec((0..300u64, 1..3u64), 0..200),
        start in 0..1000u64,
        ops in prop::collection::vec(cur_op(), 1..150),
    ) {
        let log = Arc::new(Log::default());
        let t: MapleTree<Val> = MapleTree::with_manual_reclaim();
        let mut m = Model::default();
        let mut w = t.write();
        for (i, (s, l)) in seed.into_iter().enumerate() {
            let r = rng(s * 3, l);
            if m.insert(r.clone(), i as u64).is_ok() {
                w.insert(r, log.make(i as u64)).unwrap();
            }
        }
        let mut tag = 1u64 << 32;
        let mut ops = ops.into_iter().peekable();
        let mut at = start;
        while ops.peek().is_some() {
            let mut c = w.cursor(at);
            let mut p = m_seek(&m, at);
            for op in ops.by_ref() {
                tag += 1;
                prop_assert_eq!(one(c.get()), m_get(&m, p));
                match op {
                    CurOp::Next => {
                        let want = m_after(&m, p);
                        p = want.as_ref().map_or(MPos::Gap(u64::MAX), |(r, _)| MPos::On(r.start));
                        prop_assert_eq!(one(c.next()), want);
                    }
                    CurOp::Prev => {
                        let want = m_before(&m, p);
                        p = want.as_ref().map_or(MPos::Gap(0), |(r, _)| MPos::On(r.start));
                        prop_assert_eq!(one(c.prev()), want);
                    }
                    CurOp::PeekNext => prop_assert_eq!(one(c.peek_next()), m_after(&m, p)),
                    CurOp::PeekPrev => prop_assert_eq!(one(c.peek_prev()), m_before(&m, p)),
                    CurOp::Find(d) => {
                        let base = match p { MPos::On(s) | MPos::Gap(s) => s };
                        let limit = base.saturating_add(d);
                        let want = m_after(&m, p).filter(|(r, _)| r.start < limit);
                        if let Some((r, _)) = &want {
                            p = MPos::On(r.start);
                        }
                        prop_assert_eq!(one(c.find(limit)), want);
                    }
                    CurOp::Gaps => {
                        let lo = m_before(&m, p).map_or(0, |(r, _)| r.end);
                        let hi = match p {
                            MPos::On(s) => s,
                            MPos::Gap(_) => m_after(&m, p).map_or(u64::MAX, |(r, _)| r.start),
                        };
                        prop_assert_eq!(c.gap_before(), (lo < hi).then_some(lo..hi));
                        let want_after = match p {
                            MPos::On(s) => {
                                let lo = m.map[&s].0;
                                let hi = m_after(&m, p).map_or(u64::MAX, |(r, _)| r.start);
                                (lo < hi).then_some(lo..hi)
                            }
                            MPos::Gap(_) => (lo < hi).then_some(lo..hi),
                        };
                        prop_assert_eq!(c.gap_after(), want_after);
                    }
                    CurOp::Remove => {
                        let want = match p {
                            MPos::On(s) => {
                                let r = s..m.map[&s].0;
                                m.map.remove(&s);
                                p = MPos::Gap(s);
                                Some(r)
                            }
                            MPos::Gap(_) => None,
                        };
                        prop_assert_eq!(c.remove(), want);
                    }
                    CurOp::Replace => {
                        let got = c.replace(log.make(tag)).map_err(|e| e.kind);
                        match p {
                            MPos::On(s) => {
                                let e = m.map[&s].0;
                                m.map.insert(s, (e, tag));
                                prop_assert_eq!(got, Ok(s..e));
                            }
                            MPos::Gap(_) => prop_assert!(got.is_err()),
                        }
                    }
                    CurOp::Insert(d, l) | CurOp::Store(d, l) => {
                        let base = match p { MPos::On(s) | MPos::Gap(s) => s };
                        let r = rng(base.saturating_add(d), l);
                        let (got, want) = if matches!(op, CurOp::Insert(..)) {
                            (c.insert(r.clone(), log.make(tag)).is_ok(), m.insert(r.clone(), tag).is_ok())
                        } else {
                            (c.store(r.clone(), log.make(tag)).is_ok(), m.store(r.clone(), tag).is_ok())
                        };
                        prop_assert_eq!(got, want);
                        if want {
                            p = MPos::On(r.start);
                        }
                    }
                    CurOp::Seek(a) => {
                        at = a;
                        break;
                    }
                }
                c.validate().unwrap();
                prop_assert_eq!(one(c.get()), m_get(&m, p));
            }
            prop_assert_eq!(tagged(w.iter()), model_all(&m));
        }
        w.validate().unwrap();
        prop_assert_eq!(tagged(w.iter()), model_all(&m));
        w.commit();
        t.validate().unwrap();
        t.reclaim().unwrap();
        drop(t);
        log.all_dropped_once();
    }
}
