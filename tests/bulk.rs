//! Whole-tree operations (src/tree/bulk.rs): the structural `Clone`
//! (`__mt_dup`), the bulk build behind `FromIterator`/`Extend` and the O(n)
//! `clear`. Each is checked against the tree it copies or against one built
//! by single inserts (same entries, gaps, gap answers, `validate`), and
//! values are counted (each cloned once, dropped once).

use maple_rcu::MapleTree;
use maple_rcu::tree::ErrorKind;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts clones and drops of values.
#[derive(Default, Debug)]
struct Counts {
    made: AtomicUsize,
    cloned: AtomicUsize,
    dropped: AtomicUsize,
}

impl Counts {
    fn live(&self) -> usize {
        self.made.load(Ordering::Relaxed) + self.cloned.load(Ordering::Relaxed)
            - self.dropped.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct Counted(u64, Arc<Counts>);

impl Counted {
    fn new(v: u64, c: &Arc<Counts>) -> Self {
        c.made.fetch_add(1, Ordering::Relaxed);
        Self(v, c.clone())
    }
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        self.1.cloned.fetch_add(1, Ordering::Relaxed);
        Self(self.0, self.1.clone())
    }
}

impl PartialEq for Counted {
    fn eq(&self, o: &Self) -> bool {
        self.0 == o.0
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.1.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// Everything a reader can observe of a version: entries, gaps, the
/// answers of a few gap searches, and the height.
fn same_view<V: Send + PartialEq + std::fmt::Debug>(a: &MapleTree<V>, b: &MapleTree<V>) {
    a.validate().unwrap();
    b.validate().unwrap();
    let (ra, rb) = (a.pin(), b.pin());
    assert_eq!(ra, rb, "entries");
    assert_eq!(a.len(), b.len());
    assert!(ra.gaps(0..u64::MAX).eq(rb.gaps(0..u64::MAX)), "gaps");
    for size in [1, 3, 0x1000, 0x10_0000] {
        for align in [1, 0x1000, 1 << 20] {
            assert_eq!(
                ra.try_find_gap(size, align, 0..u64::MAX),
                rb.try_find_gap(size, align, 0..u64::MAX)
            );
            assert_eq!(
                ra.try_find_gap_rev(size, align, 0x1000..1 << 40),
                rb.try_find_gap_rev(size, align, 0x1000..1 << 40)
            );
        }
    }
}

/// VMA-shaped entries in random order: page-granular, holes between.
fn shuffled(n: u64, seed: u64) -> Vec<(Range<u64>, u64)> {
    let mut v: Vec<_> = (0..n)
        .map(|i| {
            let s = 0x1000 * (3 * i + (i * 7919 % 2));
            (s..s + 0x1000 * (1 + i % 2), i)
        })
        .collect();
    let mut x = seed | 1;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

fn inserted(items: &[(Range<u64>, u64)]) -> MapleTree<u64> {
    let t = MapleTree::new();
    for (r, v) in items {
        t.insert(r.clone(), *v).unwrap();
    }
    t
}

#[test]
fn clone_of_every_size_matches_the_original() {
    for n in (0..200).chain([1000, 5000, 40_000]) {
        let t = inserted(&shuffled(n, n + 1));
        let u = t.clone();
        same_view(&t, &u);
        assert_eq!(t.height(), u.height(), "same shape");
        // Independent afterwards: a change to one leaves the other alone.
        if n > 0 {
            t.remove(0).unwrap();
            assert_eq!(u.len() as u64, n);
            u.insert(u64::MAX - 1..u64::MAX, 7).unwrap();
            u.validate().unwrap();
            t.validate().unwrap();
        }
    }
}

#[test]
fn clone_clones_each_value_once_and_drops_each_once() {
    let c = Arc::new(Counts::default());
    {
        let t = MapleTree::new();
        for (r, v) in shuffled(3000, 9) {
            t.insert(r, Counted::new(v, &c)).unwrap();
        }
        let u = t.clone();
        assert_eq!(c.cloned.load(Ordering::Relaxed), 3000);
        same_view(&t, &u);
        // Distinct boxes: the copy's values live elsewhere.
        let (a, b) = (t.pin(), u.pin());
        for ((_, x), (_, y)) in a.iter().zip(b.iter()) {
            assert!(!std::ptr::eq(x, y));
        }
        drop((a, b));
        let w = u.clone_with_manual_reclaim();
        same_view(&u, &w);
        assert_eq!(c.cloned.load(Ordering::Relaxed), 6000);
        u.clear();
        t.remove(0x3000);
        w.validate().unwrap();
    }
    assert_eq!(c.live(), 0, "every value dropped");
    assert_eq!(c.dropped.load(Ordering::Relaxed), 9000);
}

/// A value whose clone panics on one key.
#[derive(Debug)]
struct Fragile(u64, Arc<Counts>);

impl Clone for Fragile {
    fn clone(&self) -> Self {
        assert!(self.0 != 777, "clone bomb");
        self.1.cloned.fetch_add(1, Ordering::Relaxed);
        Fragile(self.0, self.1.clone())
    }
}

impl Drop for Fragile {
    fn drop(&mut self) {
        self.1.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn a_panicking_clone_leaks_nothing() {
    let c = Arc::new(Counts::default());
    let t = MapleTree::new();
    for (r, v) in shuffled(2000, 3) {
        c.made.fetch_add(1, Ordering::Relaxed);
        t.insert(r, Fragile(v, c.clone())).unwrap();
    }
    let e = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| t.clone()));
    assert!(e.is_err());
    // The clones made before the panic are dropped again.
    assert_eq!(c.live(), 2000);
    t.validate().unwrap();
    drop(t);
    assert_eq!(c.live(), 0);
}

#[test]
fn clone_reads_one_snapshot_while_a_writer_runs() {
    let t: MapleTree<u64> = (0..20_000u64).map(|i| (i * 2..i * 2 + 1, i)).collect();
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..20_000u64 {
                let mut w = t.write();
                w.remove(i * 2).unwrap();
                w.insert(i * 2..i * 2 + 1, i + 1).unwrap();
                w.commit();
            }
        });
        for _ in 0..20 {
            let u = t.clone();
            u.validate().unwrap();
            assert_eq!(u.len(), 20_000);
            // One version: every entry present, each at its old or new value.
            for (r, v) in u.pin().iter() {
                assert!(*v == r.start / 2 || *v == r.start / 2 + 1);
            }
        }
    });
}

#[test]
fn from_sorted_iter_matches_single_inserts() {
    for n in (0..300).chain([1000, 4097, 65_536]) {
        let mut items = shuffled(n, 5);
        let t = inserted(&items);
        items.sort_by_key(|(r, _)| r.start);
        let b: MapleTree<u64> = items.iter().cloned().collect();
        same_view(&t, &b);
        assert!(b.height() <= t.height(), "dense: never taller");
    }
}

#[test]
fn bulk_built_trees_take_later_writes() {
    for n in [1, 9, 10, 11, 19, 21, 150, 151, 2000] {
        let items: Vec<_> = (0..n).map(|i| (i * 10..i * 10 + 5, i)).collect();
        let mut model: BTreeMap<u64, (u64, u64)> =
            items.iter().map(|(r, v)| (r.start, (r.end, *v))).collect();
        let t: MapleTree<u64> = items.into_iter().collect();
        t.validate().unwrap();
        // Inserts into the full leaves (split) and removals (merge).
        for i in 0..n {
            t.insert(i * 10 + 6..i * 10 + 7, 1000 + i).unwrap();
            model.insert(i * 10 + 6, (i * 10 + 7, 1000 + i));
            if i % 3 == 0 {
                t.remove(i * 10).unwrap();
                model.remove(&(i * 10));
            }
            t.validate().unwrap();
        }
        let got: Vec<_> = t
            .pin()
            .iter()
            .map(|(r, v)| (r.start, (r.end, *v)))
            .collect();
        assert_eq!(got, model.into_iter().collect::<Vec<_>>());
    }
}

#[test]
fn extend_after_the_last_entry_is_bulk_and_elsewhere_falls_back() {
    for base in [0u64, 1, 5, 10, 11, 100, 151, 1500] {
        for add in [1u64, 2, 9, 10, 11, 100, 1500] {
            let t: MapleTree<u64> = (0..base).map(|i| (i * 4..i * 4 + 2, i)).collect();
            let r = t.pin();
            // After the last entry (touching it is allowed).
            let from = if base == 0 { 0 } else { base * 4 - 2 };
            let more: Vec<_> = (0..add)
                .map(|i| (from + i * 3..from + i * 3 + 3, i))
                .collect();
            t.try_extend(more.clone()).unwrap();
            t.validate().unwrap();
            let want = inserted(
                &(0..base)
                    .map(|i| (i * 4..i * 4 + 2, i))
                    .chain(more)
                    .collect::<Vec<_>>(),
            );
            same_view(&t, &want);
            // The old snapshot is untouched.
            assert_eq!(r.iter().count() as u64, base);
            drop(r);
            // Interleaved with existing entries: the insertion path.
            if base > 2 {
                let mid = vec![(6u64..7, 9), (10..11, 9)];
                t.try_extend(mid).unwrap();
                t.validate().unwrap();
                assert_eq!(t.len() as u64, base + add + 2);
            }
        }
    }
}

#[test]
fn unsorted_and_bad_input_errors_as_before() {
    let e = MapleTree::try_from_iter([(0..4, 'a'), (3..9, 'b')]).unwrap_err();
    assert_eq!((e.kind, e.value), (ErrorKind::Overlap, 'b'));
    let e = MapleTree::try_from_iter([(0..4, 'a'), (9..9, 'b')]).unwrap_err();
    assert_eq!((e.kind, e.value), (ErrorKind::EmptyRange, 'b'));
    let e = MapleTree::try_from_iter([(8..9, 'a'), (0..4, 'b'), (3..5, 'c')]).unwrap_err();
    assert_eq!((e.kind, e.value), (ErrorKind::Overlap, 'c'));
    // Unsorted but fine: the insertion path.
    let t = MapleTree::try_from_iter([(8..9, 'a'), (0..4, 'b')]).unwrap();
    assert_eq!(t.len(), 2);
    // Extend whose input overlaps the tree: refused, tree unchanged.
    let t: MapleTree<u64> = (0..100).map(|i| (i * 2..i * 2 + 1, i)).collect();
    assert!(t.try_extend([(198..199, 0)]).is_err());
    assert!(t.try_extend([(300..310, 0), (305..306, 1)]).is_err());
    assert_eq!(t.len(), 100);
    t.validate().unwrap();
}

#[test]
fn bulk_build_counts_values() {
    let c = Arc::new(Counts::default());
    {
        let t: MapleTree<Counted> = (0..5000)
            .map(|i| (i * 2..i * 2 + 1, Counted::new(i, &c)))
            .collect();
        t.try_extend((5000..6000).map(|i| (i * 2..i * 2 + 1, Counted::new(i, &c))))
            .unwrap();
        // A refused bulk input drops its values, the tree keeps its own.
        assert!(
            t.try_extend([
                (20_000..20_001, Counted::new(0, &c)),
                (0..1, Counted::new(0, &c))
            ])
            .is_err()
        );
        assert_eq!(t.len(), 6000);
        t.validate().unwrap();
        let mut w = t.write();
        w.clear();
        assert!(w.is_empty());
        drop(w); // abort: still there
        assert_eq!(t.len(), 6000);
        t.clear();
        t.validate().unwrap();
        assert!(t.pin().iter().next().is_none());
    }
    assert_eq!(c.live(), 0);
}

#[test]
fn clear_inside_a_transaction_with_fresh_nodes() {
    let c = Arc::new(Counts::default());
    {
        let t: MapleTree<Counted> = (0..500)
            .map(|i| (i * 2..i * 2 + 1, Counted::new(i, &c)))
            .collect();
        let r = t.pin();
        let mut w = t.write();
        for i in 0..500 {
            w.insert(10_000 + i..10_000 + i + 1, Counted::new(i, &c))
                .unwrap();
        }
        w.clear();
        w.validate().unwrap();
        w.insert(5..6, Counted::new(1, &c)).unwrap();
        w.commit();
        assert_eq!(r.iter().count(), 500, "the snapshot keeps every value");
        drop(r);
        t.validate().unwrap();
        assert_eq!(t.len(), 1);
        // Clear, then abort: nothing changes.
        let mut w = t.write();
        w.insert(7..8, Counted::new(2, &c)).unwrap();
        w.clear();
        drop(w);
        assert_eq!(t.len(), 1);
        t.reclaim().unwrap();
    }
    assert_eq!(c.live(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random trees (inserts and removes in random order): the clone and the
    /// bulk build from their sorted entries look the same as the original.
    #[test]
    fn clone_and_bulk_build_match(
        ops in prop::collection::vec((0u64..4000, 1u64..40, any::<bool>()), 0..600),
    ) {
        let t = MapleTree::new();
        for (s, len, ins) in ops {
            if ins {
                let _ = t.insert(s..s + len, s);
            } else {
                t.remove(s);
            }
        }
        let u = t.clone();
        same_view(&t, &u);
        let items: Vec<_> = t.pin().iter().map(|(r, v)| (r, *v)).collect();
        let b: MapleTree<u64> = items.iter().cloned().collect();
        same_view(&t, &b);
        // Split in two: a bulk build, then a bulk extend after it.
        let k = items.len() / 3;
        let e: MapleTree<u64> = items[..k].iter().cloned().collect();
        e.try_extend(items[k..].iter().cloned()).unwrap();
        same_view(&t, &e);
    }
}

#[test]
fn txn_extend_bulk_then_abort_or_commit() {
    let c = Arc::new(Counts::default());
    {
        let t: MapleTree<Counted> = (0..300)
            .map(|i| (i * 4..i * 4 + 2, Counted::new(i, &c)))
            .collect();
        let r = t.pin();
        let mut w = t.write();
        w.extend((300..2000).map(|i| (i * 4..i * 4 + 2, Counted::new(i, &c))));
        w.validate().unwrap();
        assert_eq!(w.len(), 2000);
        drop(w); // abort: the bulk-appended values are dropped
        assert_eq!(c.live(), 300);
        t.validate().unwrap();
        let mut w = t.write();
        w.insert(1198..1199, Counted::new(0, &c)).unwrap(); // fresh spine
        w.extend((300..2000).map(|i| (i * 4..i * 4 + 2, Counted::new(i, &c))));
        w.extend([(1203..1204, Counted::new(0, &c))]); // not after: insertion
        w.validate().unwrap();
        w.commit();
        assert_eq!(r.iter().count(), 300);
        drop(r);
        t.validate().unwrap();
        assert_eq!(t.len(), 2002);
    }
    assert_eq!(c.live(), 0);
}
