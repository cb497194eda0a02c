//! Hostile use of `store`/`erase`/cursors and of the narrow leaves (I10),
//! against the plain model (`common::tree_model`), with counted values.
//!
//! Unlike `splice_cursor.rs` (a dense 0..2000 band), the addresses here come
//! from several far-apart bands: 0, every multiple of 2^32 up to 2^34 (where
//! a leaf's span stops fitting 32 bits and it must switch format), the top
//! of the key space (ranges ending at `u64::MAX`), and any `u64`; erases and
//! stores can span the whole space. After every step: `validate()`, the
//! contents, and (on `Check`) every gap search, a structural `Clone` and a
//! bulk build of the same contents, each validated and compared.

#[path = "common/counted.rs"]
mod counted;
#[path = "common/tree_model.rs"]
mod tree_model;

use counted::{Log, Val, model_all, tagged};
use maple_rcu::MapleTree;
use maple_rcu::tree::ErrorKind;
use proptest::prelude::*;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use tree_model::Model;

const G: u64 = 1 << 32;

/// Addresses from far-apart bands (module docs).
fn addr() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 0..3000u64,
        4 => (0..4u64, 0..3000u64, any::<bool>())
            .prop_map(|(k, d, below)| if below { (k + 1) * G - d } else { (k + 1) * G + d }),
        2 => (u64::MAX - 3000)..=u64::MAX,
        1 => any::<u64>(),
    ]
}

fn len() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => 0..6u64,
        3 => 0..4000u64,
        1 => Just(G),
        1 => Just(u64::MAX),
    ]
}

#[derive(Debug, Clone)]
enum Op {
    Store(u64, u64),
    Erase(u64, u64),
    Insert(u64, u64),
    Remove(u64),
    /// A cursor at the address: remove the entry there (if any), then
    /// walk next/prev (`true`: next) and remove again.
    CursorRemove(u64, bool),
    /// A cursor at the address stores a range at its position.
    CursorStore(u64, u64),
    /// Gap searches, Clone and bulk build of the pending contents.
    Check(u64, u64, u32, u64),
    Commit,
    Abort,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (addr(), len()).prop_map(|(s, l)| Op::Store(s, l)),
        3 => (addr(), len()).prop_map(|(s, l)| Op::Erase(s, l)),
        8 => (addr(), 1..5u64).prop_map(|(s, l)| Op::Insert(s, l)),
        2 => addr().prop_map(Op::Remove),
        2 => (addr(), any::<bool>()).prop_map(|(a, f)| Op::CursorRemove(a, f)),
        2 => (addr(), len()).prop_map(|(a, l)| Op::CursorStore(a, l)),
        2 => (addr(), len(), 0..40u32, 1..4000u64).prop_map(|(a, w, al, sz)| Op::Check(a, w, al, sz)),
        1 => Just(Op::Commit),
        1 => Just(Op::Abort),
    ]
}

fn rng(s: u64, l: u64) -> Range<u64> {
    s..s.saturating_add(l)
}

/// Gap searches of `w` against the model's brute force.
fn check_gaps(
    w: &maple_rcu::tree::WriteTxn<'_, Val>,
    m: &Model,
    win: Range<u64>,
    size: u64,
    align: u64,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(w.gaps(win.clone()).collect::<Vec<_>>(), m.gaps(win.clone()));
    prop_assert_eq!(
        w.try_find_gap(size, align, win.clone()).ok(),
        m.find_gap(size, align, win.clone(), false)
    );
    prop_assert_eq!(
        w.try_find_gap_rev(size, align, win.clone()).ok(),
        m.find_gap(size, align, win, true)
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]
    #[test]
    fn far_bands_differential_counted(
        seed in prop::collection::vec((addr(), 1..5u64), 0..300),
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let log = Arc::new(Log::default());
        let t: MapleTree<Val> = MapleTree::with_manual_reclaim();
        let mut committed = Model::default();
        {
            let mut w = t.write();
            for (i, (s, l)) in seed.into_iter().enumerate() {
                let r = rng(s, l);
                if committed.insert(r.clone(), i as u64).is_ok() {
                    w.insert(r, log.make(i as u64)).unwrap();
                } else {
                    prop_assert!(w.insert(r, log.make(i as u64)).is_err());
                }
            }
            w.validate().unwrap();
            w.commit();
        }
        let mut m = committed.clone();
        let mut w = t.write();
        let mut tag = 1u64 << 40;
        for op in ops {
            tag += 1;
            match op {
                Op::Store(s, l) => {
                    let r = rng(s, l);
                    let got = w.store(r.clone(), log.make(tag)).map_err(|e| e.kind);
                    let want = m.store(r, tag).map_err(|_| ErrorKind::EmptyRange);
                    prop_assert_eq!(got, want);
                }
                Op::Erase(s, l) => {
                    let r = rng(s, l);
                    let want = if r.is_empty() { Err(ErrorKind::EmptyRange) } else { Ok(m.cut(r.clone())) };
                    prop_assert_eq!(w.erase(r), want);
                }
                Op::Insert(s, l) => {
                    let r = rng(s, l);
                    let got = w.insert(r.clone(), log.make(tag)).is_ok();
                    prop_assert_eq!(got, m.insert(r, tag).is_ok());
                }
                Op::Remove(a) => prop_assert_eq!(w.remove(a), m.remove(a)),
                Op::CursorRemove(a, fwd) => {
                    let mut c = w.cursor(a);
                    let here = m.next(a);
                    prop_assert_eq!(c.get().map(|(r, v)| (r, v.tag)), here.clone());
                    if let Some((r, _)) = &here {
                        m.map.remove(&r.start);
                        prop_assert_eq!(c.remove(), Some(r.clone()));
                        prop_assert!(c.get().is_none());
                    }
                    let pos = here.as_ref().map_or(u64::MAX, |(r, _)| r.start);
                    let step = if fwd {
                        if here.is_some() { m.next(pos) } else { None }
                    } else {
                        m.prev(pos)
                    };
                    let got = if fwd { c.next() } else { c.prev() };
                    prop_assert_eq!(got.map(|(r, v)| (r, v.tag)), step.clone());
                    c.validate().unwrap();
                    if let Some((r, _)) = step {
                        m.map.remove(&r.start);
                        prop_assert_eq!(c.remove(), Some(r));
                        c.validate().unwrap();
                    }
                }
                Op::CursorStore(a, l) => {
                    let r = rng(a, l);
                    let mut c = w.cursor(a);
                    let got = c.store(r.clone(), log.make(tag)).map_err(|e| e.kind);
                    let want = m.store(r.clone(), tag).map_err(|_| ErrorKind::EmptyRange);
                    prop_assert_eq!(got, want);
                    if want.is_ok() {
                        prop_assert_eq!(c.get().map(|(r, v)| (r, v.tag)), Some((r, tag)));
                        let after = m.next(a.saturating_add(l));
                        let after = after.filter(|(n, _)| n.start >= a.saturating_add(l));
                        prop_assert_eq!(c.next().map(|(r, v)| (r, v.tag)), after);
                    }
                    c.validate().unwrap();
                }
                Op::Check(a, wl, al, size) => {
                    let win = rng(a, wl);
                    check_gaps(&w, &m, win, size, 1u64 << al)?;
                    check_gaps(&w, &m, 0..u64::MAX, size, 1u64 << al)?;
                    // The same contents built three ways.
                    let copy: Vec<(Range<u64>, Val)> =
                        w.iter().map(|(r, v)| (r, v.clone())).collect();
                    let bulk: MapleTree<Val> = copy.into_iter().collect();
                    bulk.validate().unwrap();
                    prop_assert_eq!(tagged(bulk.pin().iter()), model_all(&m));
                    let cl = bulk.clone();
                    cl.validate().unwrap();
                    prop_assert_eq!(tagged(cl.pin().iter()), model_all(&m));
                    // An edit of the clone does not show in the original.
                    {
                        let mut cw = cl.write();
                        cw.erase(0..u64::MAX).unwrap();
                        cw.validate().unwrap();
                        cw.commit();
                    }
                    prop_assert_eq!(tagged(bulk.pin().iter()), model_all(&m));
                    bulk.validate().unwrap();
                }
                Op::Commit => {
                    w.commit();
                    committed = m.clone();
                    t.validate().unwrap();
                    w = t.write();
                }
                Op::Abort => {
                    drop(w);
                    m = committed.clone();
                    t.validate().unwrap();
                    prop_assert_eq!(tagged(t.pin().iter()), model_all(&m));
                    w = t.write();
                }
            }
            w.validate().unwrap();
            prop_assert_eq!(w.len(), m.map.len());
            prop_assert_eq!(tagged(w.iter()), model_all(&m));
            log.none_twice();
        }
        w.commit();
        t.validate().unwrap();
        prop_assert_eq!(tagged(t.pin().iter()), model_all(&m));
        t.reclaim().unwrap();
        drop(t);
        log.all_dropped_once();
    }
}

/// A tree of `n` entries `k*10..k*10+5` for `k` in `0..n` around `base`.
fn filled(log: &Arc<Log>, base: u64, n: u64) -> (MapleTree<Val>, Model) {
    let t = MapleTree::with_manual_reclaim();
    let mut m = Model::default();
    let mut w = t.write();
    for k in 0..n {
        let r = base + k * 10..base + k * 10 + 5;
        m.insert(r.clone(), k).unwrap();
        w.insert(r, log.make(k)).unwrap();
    }
    w.commit();
    (t, m)
}

#[test]
#[allow(
    clippy::reversed_empty_ranges,
    reason = "reversed ranges are the input under test"
)]
fn empty_and_reversed_ranges_are_typed_errors_and_change_nothing() {
    let log = Arc::new(Log::default());
    let (t, m) = filled(&log, G - 500, 100);
    let mut w = t.write();
    for r in [5..5, 7..3, u64::MAX..u64::MAX, G..G, G..G - 1, 0..0] {
        let made = log.made();
        let e = w.store(r.clone(), log.make(9)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::EmptyRange);
        assert_eq!(e.value.tag, 9, "the value comes back");
        drop(e);
        assert_eq!(w.erase(r.clone()), Err(ErrorKind::EmptyRange));
        let mut c = w.cursor(r.start);
        assert_eq!(
            c.store(r.clone(), log.make(9)).map_err(|e| e.kind),
            Err(ErrorKind::EmptyRange)
        );
        assert_eq!(log.made(), made + 2);
        w.validate().unwrap();
        assert_eq!(tagged(w.iter()), model_all(&m));
    }
    w.commit();
    t.reclaim().unwrap();
    drop(t);
    log.all_dropped_once();
}

/// `V::clone` panics in the middle split of a store or erase: the pending
/// version is unchanged (its own earlier edits included), the stored value is
/// dropped once by the unwinding, and the transaction stays usable.
#[test]
fn a_panicking_clone_leaves_the_pending_version_unchanged() {
    let log = Arc::new(Log::default());
    for base in [0, G - 300, G + 7, u64::MAX - 3000] {
        let (t, mut m) = filled(&log, base, 200);
        let mut w = t.write();
        // Pending edits first, so "unchanged" covers more than the committed tree.
        w.store(base + 3..base + 42, log.make(1000)).unwrap();
        m.store(base + 3..base + 42, 1000).unwrap();
        w.insert(base + 2500..base + 2900, log.make(1001)).unwrap();
        m.insert(base + 2500..base + 2900, 1001).unwrap();
        for (i, r) in [
            base + 2600..base + 2700,
            base + 2501..base + 2899,
            base + 2700..base + 2701,
        ]
        .into_iter()
        .enumerate()
        {
            let erase = i == 1;
            let before = log.live();
            log.panic_next_clone.store(true, Relaxed);
            let res = catch_unwind(AssertUnwindSafe(|| {
                if erase {
                    w.erase(r.clone()).map(drop).map_err(drop)
                } else {
                    w.store(r.clone(), log.make(7)).map_err(drop)
                }
            }));
            assert!(res.is_err(), "clone should have panicked for {r:?}");
            assert!(!log.panic_next_clone.load(Relaxed), "clone ran");
            assert_eq!(log.live(), before, "the stored value was dropped, once");
            log.none_twice();
            w.validate().unwrap();
            assert_eq!(tagged(w.iter()), model_all(&m));
        }
        // Still usable: the same split succeeds now.
        w.store(base + 2600..base + 2700, log.make(1002)).unwrap();
        m.store(base + 2600..base + 2700, 1002).unwrap();
        w.validate().unwrap();
        assert_eq!(tagged(w.iter()), model_all(&m));
        w.commit();
        t.validate().unwrap();
        assert_eq!(tagged(t.pin().iter()), model_all(&m));
        t.reclaim().unwrap();
        drop(t);
    }
    log.all_dropped_once();
}

/// Cursor edits at the first and last entries and in the middle (enough to
/// split and merge leaves), then an abort: the committed version is intact,
/// and every value of the pending version is dropped exactly once.
#[test]
fn aborting_after_cursor_edits_keeps_the_old_version_and_drops_once() {
    let log = Arc::new(Log::default());
    for base in [0, G - 5000, u64::MAX - 20_000] {
        let (t, m) = filled(&log, base, 1000);
        for round in 0..4u64 {
            let mut w = t.write();
            {
                let mut c = w.cursor_front();
                for _ in 0..50 {
                    c.remove();
                    c.next();
                }
            }
            {
                let mut c = w.cursor_back();
                for k in 0..50 {
                    c.replace(log.make(5000 + k)).unwrap();
                    c.prev();
                    c.remove();
                    c.prev();
                }
                let r = c.get().unwrap().0;
                c.store(r.start + 1..r.end + 30, log.make(6000)).unwrap();
                c.validate().unwrap();
            }
            {
                let mut c = w.cursor(base + 4000);
                for k in 0..200 {
                    let s = base + 4000 + k * 10 + 5;
                    if round % 2 == 0 {
                        c.insert(s..s + 3, log.make(7000 + k)).unwrap();
                    } else {
                        c.store(s - 2..s + 6, log.make(7000 + k)).unwrap();
                    }
                    c.next();
                }
                c.validate().unwrap();
            }
            w.validate().unwrap();
            drop(w);
            t.validate().unwrap();
            assert_eq!(tagged(t.pin().iter()), model_all(&m));
            log.none_twice();
        }
        t.reclaim().unwrap();
        drop(t);
    }
    log.all_dropped_once();
}

/// A trimmed entry keeps its boxed value: `&V` has the same address before
/// and after, in the pending version, the committed one and an old pinned
/// snapshot (DESIGN §2.1), also when the trim moves the entry across a
/// narrow/wide re-encoding.
#[test]
fn trimmed_values_keep_their_address() {
    let log = Arc::new(Log::default());
    for base in [1000, G - 40, u64::MAX - 200] {
        let t: MapleTree<Val> = MapleTree::with_manual_reclaim();
        let mut w = t.write();
        for k in 0..40u64 {
            w.insert(base - 1000 + k * 2..base - 1000 + k * 2 + 1, log.make(k))
                .unwrap();
        }
        w.insert(base..base + 100, log.make(1)).unwrap();
        w.commit();
        let addr = |g: &dyn Fn(u64) -> Option<*const Val>, a| g(a).map(|p| p as usize);
        let pinned = t.pin();
        let old = addr(&|a| pinned.get(a).map(|(_, v)| v as *const Val), base + 50).unwrap();
        let mut w = t.write();
        w.store(base - 10..base + 10, log.make(2)).unwrap(); // trims the left side
        w.erase(base + 90..base + 200).unwrap(); // trims the right side
        w.store(base + 20..base + 30, log.make(3)).unwrap(); // splits: left piece keeps it
        let (r, v) = w.get(base + 15).unwrap();
        assert_eq!((r, v as *const Val as usize), (base + 10..base + 20, old));
        let (r, v) = w.get(base + 50).unwrap();
        assert_eq!(r, base + 30..base + 90);
        assert_ne!(v as *const Val as usize, old, "the right piece is a clone");
        w.validate().unwrap();
        w.commit();
        let (r, v) = t
            .pin()
            .get(base + 12)
            .map(|(r, v)| (r, v as *const Val as usize))
            .unwrap();
        assert_eq!((r, v), (base + 10..base + 20, old));
        let (r, v) = pinned.get(base + 99).unwrap();
        assert_eq!((r, v as *const Val as usize), (base..base + 100, old));
        drop(pinned);
        t.reclaim().unwrap();
        drop(t);
    }
    log.all_dropped_once();
}

/// A version's contents, as the model lists them.
type Contents = Vec<(Range<u64>, u64)>;

/// A small xorshift, so the threaded test needs no shared strategy.
fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// Readers pinned while a writer commits multi-leaf stores and erases (in a
/// default tree: the reclaimer thread drops removed values concurrently).
/// Every commit also stores its version number at the top of the key space,
/// and the writer records the model of each version before committing it;
/// a reader's whole snapshot must equal the model of the version it reads,
/// and no value it can reach may have been dropped (a drop before the grace
/// period shows up as a dropped id).
#[test]
fn pinned_readers_see_exactly_one_committed_version() {
    const TOP: u64 = u64::MAX - 1;
    let log = Arc::new(Log::default());
    let t: Arc<MapleTree<Val>> = Arc::new(MapleTree::new());
    let versions: Arc<Mutex<Vec<Arc<Contents>>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let mut m = Model::default();
    m.insert(TOP..u64::MAX, 0).unwrap();
    t.insert(TOP..u64::MAX, log.make(0)).unwrap();
    versions.lock().unwrap().push(Arc::new(model_all(&m)));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (t, versions, done, log) = (t.clone(), versions.clone(), done.clone(), log.clone());
            std::thread::spawn(move || {
                let mut seen = 0;
                while !done.load(Relaxed) {
                    let g = t.pin();
                    let v = g.get(TOP).expect("the version entry").1.tag as usize;
                    let want = versions.lock().unwrap()[v].clone();
                    let got = tagged(g.iter());
                    assert_eq!(got, *want, "snapshot of version {v}");
                    // The same snapshot by cursor, both ways (leaf crossings
                    // re-descend from the snapshot's root, never a newer one).
                    let mut c = g.cursor(0);
                    let mut fwd = Vec::new();
                    while let Some((r, val)) = c.get() {
                        fwd.push((r, val.tag));
                        c.next();
                    }
                    assert_eq!(fwd, *want, "cursor walk of version {v}");
                    let mut c = g.cursor(u64::MAX);
                    let mut back = Vec::new();
                    while let Some((r, val)) = c.prev() {
                        back.push((r, val.tag));
                    }
                    back.reverse();
                    assert_eq!(back, *want, "backward cursor walk of version {v}");
                    let drops = log.drops.lock().unwrap();
                    for (_, val) in g.iter().step_by(17) {
                        assert_eq!(drops[val.id], 0, "value reachable after its drop");
                    }
                    drop(drops);
                    seen += 1;
                }
                seen
            })
        })
        .collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for version in 1..=1500u64 {
        let mut w = t.write();
        for _ in 0..4 {
            let r = xorshift(&mut seed);
            let base = [0, G - 2000, 3 * G - 1000][(r % 3) as usize];
            let s = base + (r >> 8) % 4000;
            let l = 1 + (r >> 40) % if r & 16 == 0 { 8 } else { 600 };
            let tag = version << 8 | (r & 0xff);
            if r & 32 == 0 {
                w.erase(s..s + l).unwrap();
                m.cut(s..s + l);
            } else {
                w.store(s..s + l, log.make(tag)).unwrap();
                m.store(s..s + l, tag).unwrap();
            }
        }
        w.store(TOP..u64::MAX, log.make(version)).unwrap();
        m.store(TOP..u64::MAX, version).unwrap();
        w.validate().unwrap();
        versions.lock().unwrap().push(Arc::new(model_all(&m)));
        w.commit();
        t.validate().unwrap();
    }
    done.store(true, Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    assert_eq!(tagged(t.pin().iter()), model_all(&m));
    drop(Arc::into_inner(t).expect("the readers are gone"));
    log.all_dropped_once();
}

/// The one-transaction forms under a panicking `V::clone` and a panicking
/// `retain` predicate: the unwinding aborts the transaction (the tree is
/// unchanged), the writer lock is released and usable (not poisoned into a
/// panic or a deadlock), and nothing leaks or is dropped twice.
#[test]
fn panics_in_one_transaction_calls_release_the_writer_lock() {
    let log = Arc::new(Log::default());
    let (t, m) = filled(&log, G - 1000, 300);
    log.panic_next_clone.store(true, Relaxed);
    let res = catch_unwind(AssertUnwindSafe(|| t.store(G - 999..G - 998, log.make(1))));
    assert!(res.is_err());
    t.validate().unwrap();
    assert_eq!(tagged(t.pin().iter()), model_all(&m));
    let res = catch_unwind(AssertUnwindSafe(|| {
        let mut w = t.write();
        w.erase(G - 1000..G + 10).unwrap();
        let mut n = 0;
        w.retain(|_, _| {
            n += 1;
            assert!(n < 50, "hostile predicate");
            n % 2 == 0
        });
    }));
    assert!(res.is_err());
    t.validate().unwrap();
    assert_eq!(tagged(t.pin().iter()), model_all(&m));
    // The lock is free and the tree takes writes.
    let mut w = t.write();
    w.retain(|r, _| r.start % 20 == (G - 1000) % 20);
    w.commit();
    t.insert(0..1, log.make(2)).unwrap();
    assert_eq!(t.len(), 151);
    t.validate().unwrap();
    t.reclaim().unwrap();
    drop(t);
    log.all_dropped_once();
}

// The cloned-cursor reproducer (commit 5891f21) no longer compiles: it is
// the `compile_fail` doctest on `CursorMut`.
