//! `validate()`: checks every tree invariant of docs/DESIGN.md §2.2 on one
//! version of the tree. Tests call it after every mutation.

use super::ValidateError;
use super::node::{Header, INNER_MIN, KIND_LEAF, LEAF_MIN, NARROW_CAP, Summary, as_inner, as_leaf};
use alloc::{format, string::String};
/// Nodes seen so far (I9: no node is reachable twice). Without std, a
/// `BTreeSet` (O(log n) per node instead of O(1)).
#[cfg(feature = "std")]
type Seen = std::collections::HashSet<usize>;
#[cfg(not(feature = "std"))]
type Seen = alloc::collections::BTreeSet<usize>;

struct Walk {
    /// Transactions `>= next_txn` are not committed (I6).
    next_txn: u64,
    leaf_depth: Option<usize>,
    /// End of the previous entry in key order (I2 across leaves).
    prev_end: u64,
    entries: usize,
    seen: Seen,
}

fn fail(invariant: u32, detail: String) -> Result<(), ValidateError> {
    Err(ValidateError { invariant, detail })
}

/// Validates the tree under `root` holding `len` entries.
///
/// # Safety
/// R1 (read.rs) for `root`.
pub(crate) unsafe fn validate<V>(
    root: *const Header,
    len: usize,
    next_txn: u64,
) -> Result<(), ValidateError> {
    let mut w = Walk {
        next_txn,
        leaf_depth: None,
        prev_end: 0,
        entries: 0,
        seen: Seen::new(),
    };
    if !root.is_null() {
        // SAFETY: R1.
        unsafe { node::<V>(&mut w, root, 0, true)? };
    }
    if w.entries != len {
        return fail(
            9,
            format!("len() is {len} but the tree holds {} entries", w.entries),
        );
    }
    Ok(())
}

/// # Safety
/// R1 for `n`.
unsafe fn node<V>(
    w: &mut Walk,
    n: *const Header,
    depth: usize,
    is_root: bool,
) -> Result<Summary, ValidateError> {
    if n.is_null() {
        return Err(ValidateError {
            invariant: 5,
            detail: format!("null child at depth {depth}"),
        });
    }
    if !w.seen.insert(n as usize) {
        return Err(ValidateError {
            invariant: 9,
            detail: format!("node {n:p} reachable twice"),
        });
    }
    // SAFETY: R1.
    let hdr = unsafe { &*n };
    if hdr.txn >= w.next_txn {
        fail(
            6,
            format!(
                "node {n:p} of uncommitted transaction {} is reachable",
                hdr.txn
            ),
        )?;
    }
    let len = hdr.len as usize;
    if hdr.kind == KIND_LEAF {
        // SAFETY: R1 and the kind tag.
        let l = unsafe { as_leaf::<V>(n) };
        let min = if is_root { 1 } else { LEAF_MIN };
        let cap = l.cap();
        if !(min..=cap).contains(&len) {
            fail(
                1,
                format!("leaf {n:p} holds {len} entries (allowed {min}..={cap})"),
            )?;
        }
        match w.leaf_depth {
            None => w.leaf_depth = Some(depth),
            Some(d) if d != depth => fail(4, format!("leaf at depth {depth}, another at {d}"))?,
            _ => {}
        }
        for j in 0..len {
            let (s, e) = (l.start(j), l.end(j));
            if s >= e {
                fail(2, format!("entry {s:#x}..{e:#x} is empty or reversed"))?;
            }
            if (w.entries > 0 && s < w.prev_end) || l.val(j).is_null() {
                fail(
                    2,
                    format!(
                        "entry {s:#x}..{e:#x} overlaps or precedes the one before (end {:#x}) or has no value",
                        w.prev_end
                    ),
                )?;
            }
            w.prev_end = e;
            w.entries += 1;
        }
        if !l.sentinels_ok() {
            fail(
                5,
                format!(
                    "an unused slot of leaf {n:p} is not the sentinel, or its base is not its first start"
                ),
            )?;
        }
        // I10: narrow exactly when the span fits 32-bit offsets.
        let narrow =
            len > 0 && len <= NARROW_CAP && l.end(len - 1) - l.start(0) <= u64::from(u32::MAX);
        if len > 0 && l.is_wide() == narrow {
            fail(
                10,
                format!(
                    "leaf {n:p} ({len} entries over {:#x}..{:#x}) is {} but should not be",
                    l.start(0),
                    l.end(len - 1),
                    if narrow { "wide" } else { "narrow" }
                ),
            )?;
        }
        Ok(l.summary())
    } else {
        // SAFETY: R1 and the kind tag.
        let inn = unsafe { as_inner(n) };
        let min = if is_root { 2 } else { INNER_MIN };
        let cap = inn.cap();
        if !(min..=cap).contains(&len) {
            fail(
                1,
                format!("inner {n:p} holds {len} children (allowed {min}..={cap})"),
            )?;
        }
        // I11: narrow exactly when the slots have a narrow encoding, with
        // their common scale. Checked before the children: a wrong format
        // or shift decodes to wrong summaries (I3) too.
        if let Some(why) = inn.format_error() {
            fail(11, format!("inner {n:p} ({len} children) is {why}"))?;
        }
        for i in 0..len {
            // SAFETY: R1: children of a reachable node are reachable.
            let s = unsafe { node::<V>(w, inn.child(i), depth + 1, false)? };
            let stored = inn.slot_summary(i);
            if s != stored {
                fail(
                    3,
                    format!("child {i} of {n:p}: stored summary {stored:x?}, recomputed {s:x?}"),
                )?;
            }
        }
        if !inn.sentinels_ok() {
            fail(
                5,
                format!("an unused inner slot of {n:p} is not the sentinel"),
            )?;
        }
        Ok(inn.summary())
    }
}

#[cfg(all(test, not(loom), feature = "std"))]
mod tests {
    use super::super::MapleTree;
    use super::super::node::{Header, INNER_CAP, Inner, InnerItem, KIND_LEAF, Leaf, Slots};
    use crate::sync::Ordering;

    /// A tree of height >= 2 (so it has inner nodes).
    fn tree() -> MapleTree<u64> {
        let t = MapleTree::new();
        for i in 0..200u64 {
            t.insert(i * 3 * 4096..(i * 3 + 1) * 4096, i).unwrap();
        }
        t.validate().unwrap();
        assert!(t.height() >= 2);
        t
    }

    /// Applies `f` to the published root, checks that validate() reports
    /// invariant `inv`, then undoes the change with `undo`.
    fn corrupt(inv: u32, f: impl Fn(&mut Inner), undo: impl Fn(&mut Inner)) {
        let t = tree();
        let root: *mut Header = t.root.load(Ordering::Relaxed);
        // SAFETY: test-only: no reader or writer is active, the root is a
        // live inner node owned by `t`, and the change is undone before drop.
        let inn = unsafe {
            assert_ne!((*root).kind, KIND_LEAF);
            &mut *root.cast::<Inner>()
        };
        f(inn);
        let e = t.validate().unwrap_err();
        assert_eq!(e.invariant, inv, "{e:?}");
        undo(inn);
        t.validate().unwrap();
    }

    /// Re-encodes `n` with slot `i`'s item changed by `f` (canonically:
    /// the format stays right, I11).
    fn edit(n: &mut Inner, i: usize, f: impl Fn(&mut InnerItem)) {
        let mut items: Vec<_> = (0..n.len()).map(|k| n.item(k)).collect();
        f(&mut items[i]);
        n.set_items(&items);
    }

    #[test]
    fn validate_catches_corrupted_summaries_and_sentinels() {
        corrupt(
            3,
            |n| edit(n, 0, |s| s.2 += 4096),
            |n| edit(n, 0, |s| s.2 -= 4096),
        );
        corrupt(
            3,
            |n| edit(n, 1, |s| s.3 ^= 1),
            |n| edit(n, 1, |s| s.3 ^= 1),
        );
        corrupt(
            3,
            |n| edit(n, 0, |s| s.1 -= 4096),
            |n| edit(n, 0, |s| s.1 += 4096),
        );
        corrupt(5, |n| n.poke_unused_al(0), |n| n.poke_unused_al(u8::MAX));
    }

    #[test]
    fn validate_catches_a_non_canonical_inner_format() {
        // The root's few page-aligned children are narrow with a shift of
        // at least 12 (tested), so a wide copy of the same slots, or the
        // same slots at a smaller scale, decodes right but is not canonical.
        let t = tree();
        let root: *mut Header = t.root.load(Ordering::Relaxed);
        // SAFETY: as in `corrupt`.
        let inn = unsafe { &mut *root.cast::<Inner>() };
        let (w, s, l) = (inn.is_wide(), inn.hdr.shift, inn.len());
        assert!(!w && s >= 12 && l <= INNER_CAP, "{w} {s} {l}");
        let items: Vec<_> = (0..inn.len()).map(|k| inn.item(k)).collect();
        inn.force_encoding(&items, None);
        assert_eq!(t.validate().unwrap_err().invariant, 11);
        inn.force_encoding(&items, Some(u32::from(s) - 1));
        assert_eq!(t.validate().unwrap_err().invariant, 11);
        inn.set_items(&items);
        t.validate().unwrap();
    }

    #[test]
    fn validate_catches_corrupted_leaf_order() {
        let t = tree();
        let mut n: *mut Header = t.root.load(Ordering::Relaxed);
        // SAFETY: as in `corrupt`: the first leaf is live and exclusively ours.
        unsafe {
            while (*n).kind != KIND_LEAF {
                n = (*n.cast::<Inner>()).child(0);
            }
            let l = &mut *n.cast::<Leaf<u64>>();
            let mut items: Vec<_> = (0..l.len()).map(|j| l.item(j)).collect();
            let good = items.clone();
            items[1].0 = items[0].1 - 1;
            l.set_items(&items);
            let e = t.validate().unwrap_err();
            assert!(e.invariant == 2 || e.invariant == 3, "{e:?}");
            l.set_items(&good);
        }
        t.validate().unwrap();
    }

    /// `(wide, shift, children)` of the published root (an inner node).
    fn root_format(t: &MapleTree<u64>) -> (bool, u8, usize) {
        let root: *mut Header = t.root.load(Ordering::Relaxed);
        // SAFETY: test-only: no writer is active and the root is live.
        let inn = unsafe {
            assert_ne!((*root).kind, KIND_LEAF);
            &*root.cast::<Inner>()
        };
        (inn.is_wide(), inn.hdr.shift, inn.len())
    }

    /// Eleven clusters 2^31 bytes apart of fourteen one-page entries, 16
    /// pages apart, built in bulk: one full narrow leaf per cluster under
    /// a root of eleven children, narrow at shift 12 (a byte span of
    /// 2^34.3 has no narrow encoding at shift 0). In cluster 5 the second
    /// entry starts a byte before its page; every stored key stays on the
    /// page scale while the cluster's first entry exists.
    fn eleven_clusters() -> (MapleTree<u64>, u64) {
        let c5 = 5 << 31;
        let items = (0..11u64).flat_map(|c| {
            (0..14u64).map(move |j| {
                let s = (c << 31) + j * 16 * 4096;
                let s = if c == 5 && j == 1 { s - 1 } else { s };
                (s..(c << 31) + (j * 16 + 1) * 4096, c * 14 + j)
            })
        });
        let t: MapleTree<u64> = items.collect();
        t.validate().unwrap();
        assert_eq!(t.height(), 2);
        assert_eq!(root_format(&t), (false, 12, 11));
        (t, c5)
    }

    /// A removal that exposes an off-scale key as a child's first start
    /// splits a narrow inner node that holds more children than the wide
    /// format (I11; `Core::relink`): the tree grows a level on a removal,
    /// and the node returns to narrow at shift 12 when the key is covered
    /// again.
    #[test]
    fn a_removal_exposing_an_unaligned_key_splits_a_full_narrow_node() {
        let (t, c5) = eleven_clusters();
        assert_eq!(t.remove(c5), Some(c5..c5 + 4096));
        t.validate().unwrap();
        assert_eq!(t.height(), 3, "the root split");
        t.insert(c5..c5 + 4096, 70).unwrap();
        t.validate().unwrap();
        // Same removal through an erase (the one-descent splice), and a
        // store that covers the off-scale key again.
        let (t, c5) = eleven_clusters();
        let mut w = t.write();
        assert_eq!(w.erase(c5..c5 + 4096).unwrap(), 1);
        w.validate().unwrap();
        w.commit();
        assert_eq!(t.height(), 3);
        let mut w = t.write();
        w.store(c5..c5 + 17 * 4096, 99).unwrap();
        w.validate().unwrap();
        w.commit();
        assert_eq!(t.len(), 11 * 14 - 1);
    }

    /// An unaligned key arriving under a narrow root of at most seven
    /// children (as a child's last end, so the root stores it): over a byte span past 2^32 the root goes wide, under it
    /// the root stays narrow at shift 0; removing the key restores shift 12.
    #[test]
    fn an_unaligned_key_makes_the_root_wide_or_unscaled_and_back() {
        for (stride, want) in [(1u64 << 31, (true, 0)), (1 << 26, (false, 0))] {
            let t: MapleTree<u64> = (0..4 * 14u64)
                .map(|k| {
                    let s = (k / 14) * stride + (k % 14) * 16 * 4096;
                    (s..s + 4096, k)
                })
                .collect();
            t.validate().unwrap();
            assert_eq!(root_format(&t), (false, 12, 4));
            // Between clusters 0 and 1: the last end under child 0.
            let odd = stride - 8 * 4096 + 1;
            t.insert(odd..odd + 4096, 1000).unwrap();
            t.validate().unwrap();
            let (w, s, _) = root_format(&t);
            assert_eq!((w, s), want, "stride {stride:#x}");
            t.remove(odd).unwrap();
            t.validate().unwrap();
            assert_eq!(root_format(&t).1, 12);
        }
    }
}
