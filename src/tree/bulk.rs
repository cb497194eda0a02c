//! Whole-tree operations that never search: the structural copy (`Clone`,
//! Linux `__mt_dup`), the bulk build from sorted input behind
//! `FromIterator`/`Extend`, and the O(n) `clear`
//! ([DESIGN §2.8](crate::docs::design#28-api-issue-13-the-parts-that-do-not-need-the-node-layout)).
//!
//! They use the node layout only through a narrow interface: the empty
//! constructors (`NewNode::empty`), `Slots::set_items`, the summaries
//! (`Slots::summary`, `Inner::slot_summary`), `place`, and the
//! transaction's `discard`. Everything they build belongs to the running
//! transaction (I6) and is published by its commit (O1), like any insert.
//!
//! # Packing
//! A level of slots goes into nodes filled in order, each as full as its
//! format allows (`CAP`; a leaf up to 14 when its span fits 32-bit offsets,
//! I10), except the last two, which share their slots evenly when the last
//! one alone would be below the minimum (I1): `a + r` slots with `a >= CAP`
//! and `r < MIN` give two nodes of at least `(CAP + 1) / 2 >= MIN`. Each node's summary is
//! computed once, from its own slots, when it is built.

use super::garbage;
use super::node::{
    Header, INNER_NARROW_CAP, Inner, KIND_INNER, KIND_LEAF, Leaf, NARROW_CAP, NodePool, Slots,
    Summary, as_inner, as_leaf, inner_item, place, release, split_point,
};
use super::write::{Core, NewNode};
use super::{MapleTree, WriteTxn};
use alloc::vec::Vec;
use core::ops::Range;
use core::ptr;

/// Sizes of the nodes one level of `items` is packed into (module docs):
/// each node as full as its format allows, then the last two share their
/// slots when the last alone would be below the minimum (I1).
fn packing<N: Slots>(items: &[N::Item]) -> Vec<usize> {
    debug_assert!(!items.is_empty());
    let mut sizes = Vec::with_capacity(items.len() / N::CAP + 2);
    let mut p = 0;
    while p < items.len() {
        let rest = &items[p..];
        // `N::CAP` slots always fit; a leaf may take more (I10).
        let k = (N::CAP.min(rest.len())..=N::MAX.min(rest.len()))
            .rev()
            .find(|&k| N::fits(&rest[..k]))
            .expect("CAP slots fit");
        sizes.push(k);
        p += k;
    }
    if let [.., a, b] = sizes[..]
        && b < N::MIN
    {
        // `a >= CAP` (the greedy took at least that), so `a + b` is over
        // CAP and under 2 * MIN + CAP: the middle cut fits (split_point).
        let two = &items[items.len() - a - b..];
        let k = split_point::<N>(two).expect("two packed nodes split");
        let n = sizes.len();
        sizes[n - 2] = k;
        sizes[n - 1] = a + b - k;
    }
    sizes
}

impl<V> Core<V> {
    /// Builds one level of fresh nodes of kind `N` from `n` slots in key
    /// order, appending each node and its summary to `out`.
    fn pack<N: Slots + NewNode>(
        &mut self,
        items: &[N::Item],
        out: &mut Vec<(*mut Header, Summary)>,
    ) {
        let mut p = 0;
        for k in packing::<N>(items) {
            let mut node = N::empty(self.txn);
            node.set_items(&items[p..p + k]);
            p += k;
            let s = node.summary();
            out.push((place(&mut self.pool, N::KIND, node), s));
        }
    }

    /// Appends `items` after every entry of the working version without a
    /// search: the right spine (the path to the last entry) is rebuilt
    /// bottom-up with the new entries packed densely behind what it held,
    /// and new levels are added on top as needed. O(k + height · CAP) for k
    /// items. The replaced spine nodes are discarded (retired at commit if
    /// published). The values are recorded as inserted (abort drops them).
    ///
    /// The caller checked that every range is non-empty, that each starts at
    /// or after the previous one's end, and that the first starts at or
    /// after the working version's last end. Each value came from
    /// `garbage::boxed` (or `Box::into_raw`) and is owned by the transaction
    /// from now on.
    pub(crate) fn append_sorted(&mut self, items: Vec<(u64, u64, *mut V)>) {
        if items.is_empty() {
            return;
        }
        self.dirty = true;
        self.len += items.len();
        self.inserted.extend(items.iter().map(|&(_, _, v)| v));
        // The right spine, root first.
        let mut spine = Vec::new();
        let mut n = self.root;
        while !n.is_null() {
            spine.push(n);
            // SAFETY: the working root and its descendants are live (writer
            // lock, R1); the kind tag selects the view.
            n = unsafe {
                if (*n).kind == KIND_LEAF {
                    ptr::null_mut()
                } else {
                    let inn = as_inner(n);
                    inn.child(inn.len() - 1)
                }
            };
        }
        let mut level = Vec::new();
        match spine.pop() {
            None => self.pack::<Leaf<V>>(&items, &mut level),
            Some(leaf) => {
                // SAFETY: live (as above) and a leaf (the spine ends at one).
                let l = unsafe { as_leaf::<V>(leaf) };
                let old = (0..l.len()).map(|j| l.item(j));
                let all: Vec<_> = old.chain(items).collect();
                self.pack::<Leaf<V>>(&all, &mut level);
                // SAFETY: live; unlinked once the spine above is rebuilt
                // (it is not reachable from the new root).
                unsafe { self.discard(leaf) };
            }
        }
        // Rebuild the spine's inner nodes bottom-up: each keeps its children
        // but the last (just rebuilt), followed by the rebuilt nodes.
        while let Some(p) = spine.pop() {
            // SAFETY: live inner node of the spine.
            let inn = unsafe { as_inner(p) };
            let keep = inn.len() - 1;
            let below = core::mem::take(&mut level);
            let slots: Vec<_> = (0..keep)
                .map(|i| inn.item(i))
                .chain(below.into_iter().map(|(c, s)| inner_item(c, s)))
                .collect();
            self.pack::<Inner>(&slots, &mut level);
            // SAFETY: live; not reachable from the new root.
            unsafe { self.discard(p) };
        }
        // New levels on top until one root remains (it has >= 2 children).
        while level.len() > 1 {
            let below = core::mem::take(&mut level);
            let slots: Vec<_> = below.into_iter().map(|(c, s)| inner_item(c, s)).collect();
            self.pack::<Inner>(&slots, &mut level);
        }
        self.root = level[0].0;
    }

    /// Unlinks every entry of the working version in one walk, without a
    /// descent per entry: O(n). Values go to `removed` (retired at commit);
    /// published nodes to `old_nodes`, fresh ones back to the pool now.
    pub(crate) fn clear_all(&mut self) {
        let root = core::mem::replace(&mut self.root, ptr::null_mut());
        if root.is_null() {
            return;
        }
        self.dirty = true;
        self.len = 0;
        // SAFETY: the old working root is live and, from now on, unreachable
        // from the working root.
        unsafe { self.unlink_all(root) };
    }

    /// # Safety
    /// `n` is live and no longer reachable from the working root.
    unsafe fn unlink_all(&mut self, n: *mut Header) {
        // SAFETY: our requirement; the kind tag selects the view. Children
        // are read before `discard` may release `n`.
        unsafe {
            if (*n).kind == KIND_LEAF {
                let l = as_leaf::<V>(n);
                self.removed.extend_from_slice(l.vals());
            } else {
                let inn = as_inner(n);
                for i in 0..inn.len() {
                    self.unlink_all(inn.child(i));
                }
            }
            self.discard(n);
        }
    }
}

/// A structural copy in progress: the nodes built so far, released again if
/// a `V::clone` panics (the cloned values are in the transaction's
/// `inserted` list, which the abort drops).
struct Dup<'c, V> {
    core: &'c mut Core<V>,
    made: Vec<*mut Header>,
    entries: usize,
}

impl<V: Clone> Dup<'_, V> {
    /// A copy of the subtree under `n`, owned by the transaction: same
    /// shape, same keys, the inner slots' summaries copied (the copied
    /// children have the same ones), each value cloned once into a new box.
    ///
    /// # Safety
    /// `n` is a live node of a version a read guard holds (R1) for the whole
    /// call.
    unsafe fn copy(&mut self, n: *const Header) -> *mut Header {
        let txn = self.core.txn;
        // SAFETY: our requirement; the kind tag selects the view.
        let p = unsafe {
            // loom: a read of the node that its free must be ordered after.
            (*n).live.touch();
            if (*n).kind == KIND_LEAF {
                let src = as_leaf::<V>(n);
                // The values of a tree built in random order lie anywhere on
                // the heap: ask for all of them before the first clone.
                for &v in src.vals() {
                    prefetch(v.cast(), 1);
                }
                let mut l = Leaf::<V>::new(txn);
                let mut items = [(0, 0, ptr::null_mut()); NARROW_CAP];
                for (j, slot) in items.iter_mut().enumerate().take(src.len()) {
                    // User code: a panic leaves the clones made so far in
                    // `inserted` (dropped by the abort) and the nodes in `made`.
                    let v = garbage::boxed((*src.val(j)).clone());
                    self.core.inserted.push(v);
                    *slot = (src.start(j), src.end(j), v);
                }
                // The source's entries, so they fit (in its format).
                l.set_items(&items[..src.len()]);
                self.entries += src.len();
                place(&mut self.core.pool, KIND_LEAF, l)
            } else {
                let src = as_inner(n);
                for &c in src.children() {
                    prefetch(c.cast(), 4);
                }
                let mut inn = Inner::new(txn);
                let mut items = [(0, 0, 0, 0, ptr::null_mut()); INNER_NARROW_CAP];
                for (i, slot) in items.iter_mut().enumerate().take(src.len()) {
                    // One leaf ahead: its values while this one is copied.
                    if let Some(&next) = src.children().get(i + 1)
                        && (*next).kind == KIND_LEAF
                    {
                        let l = as_leaf::<V>(next);
                        for &v in l.vals() {
                            prefetch(v.cast(), 1);
                        }
                    }
                    let c = self.copy(src.child(i));
                    *slot = inner_item(c, src.slot_summary(i));
                }
                // The source's slots, so they fit (in its format).
                inn.set_items(&items[..src.len()]);
                place(&mut self.core.pool, KIND_INNER, inn)
            }
        };
        self.made.push(p);
        p
    }
}

/// Asks the CPU to start loading `lines` cache lines at `p`: only a hint
/// (it never faults and changes nothing a program can observe).
#[inline(always)]
fn prefetch(p: *const u8, lines: usize) {
    #[cfg(target_arch = "x86_64")]
    for line in 0..lines {
        use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch never faults, whatever the address, and reads
        // nothing into the program (`wrapping_add` keeps the arithmetic
        // defined).
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64 * line).cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, lines);
}

impl<V> Drop for Dup<'_, V> {
    fn drop(&mut self) {
        let pool: &mut NodePool = &mut self.core.pool;
        for n in self.made.drain(..) {
            // SAFETY: release requirements: 1. from `place`, released once
            // (drained); 2. never published: not linked to any root.
            pool.give(unsafe { release(n) });
        }
    }
}

impl<V: Send + Clone> MapleTree<V> {
    /// Copies the latest published version into `dst`, which must be a new,
    /// empty tree: node by node, one `V::clone` per entry, no search.
    fn dup_into(&self, dst: &Self) {
        let src = self.pin();
        if src.root.is_null() {
            return;
        }
        let mut w = dst.write();
        assert!(w.core.root.is_null(), "dup_into: the target is not empty");
        // Dirty from the start, so a panicking clone aborts and drops the
        // values cloned so far.
        w.core.dirty = true;
        let mut d = Dup {
            core: &mut w.core,
            made: Vec::new(),
            entries: 0,
        };
        // SAFETY: `src` pins the version whose root this is (R1).
        let root = unsafe { d.copy(src.root) };
        let entries = d.entries;
        d.made.clear(); // linked under `root` now: the transaction owns them
        drop(d);
        w.core.root = root;
        w.core.len = entries;
        w.commit();
    }

    /// [`Clone::clone`] for a tree of any `V: Send + Clone`: the same
    /// structural copy, into a tree made by
    /// [`MapleTree::with_manual_reclaim`] (so `V` need not be `'static`).
    /// O(n); see [`Clone for MapleTree`](MapleTree#impl-Clone-for-MapleTree<V>)
    /// for what runs where.
    ///
    /// ```
    /// let s = String::from("borrowed");
    /// let t = maple_rcu::MapleTree::with_manual_reclaim();
    /// t.insert(0..1, s.as_str()).unwrap();
    /// let u = t.clone_with_manual_reclaim();
    /// assert_eq!(t, u);
    /// assert!(!u.domain().is_auto());
    /// ```
    #[cfg(feature = "std")]
    pub fn clone_with_manual_reclaim(&self) -> Self {
        let t = Self::with_manual_reclaim();
        self.dup_into(&t);
        t
    }

    /// The structural copy ([`Clone::clone`] with `std`) for a `no_std`
    /// build: a new tree on `domain` and `lock`, as
    /// [`MapleTree::with_platform`] makes, holding a copy of the latest
    /// published version. O(n); `V::clone` runs as for `Clone`.
    #[cfg(not(feature = "std"))]
    pub fn clone_with_platform(
        &self,
        domain: crate::sync::Arc<crate::platform::Domain>,
        lock: alloc::boxed::Box<dyn crate::platform::RawLock>,
    ) -> Self
    where
        V: 'static,
    {
        let t = Self::with_platform(domain, lock);
        self.dup_into(&t);
        t
    }
}

/// A structural copy of the latest published version (Linux `__mt_dup`):
/// the node structure of one snapshot (a read guard is held for the copy)
/// is copied node by node, each value cloned once into a new box, with no
/// search, no insertion and no rebalancing: O(n). The copy has the same
/// entries, shape, fill and summaries, and its own domain, as
/// [`MapleTree::new`] makes. Writers of `self` are not blocked (the copy
/// reads a snapshot).
///
/// **`V::clone` runs** under the *new* tree's writer lock (no one else can
/// reach that tree) while this thread holds a read guard of `self`: it may
/// read or write `self`, but must not wait for `self`'s readers
/// ([deadlocks](MapleTree#deadlocks-by-contract)). If it panics, the clones
/// made so far are dropped and the panic propagates.
///
/// ```
/// let t: maple_rcu::MapleTree<String> =
///     (0..1000u64).map(|i| (i * 4..i * 4 + 2, i.to_string())).collect();
/// let u = t.clone();
/// assert_eq!(t, u);
/// assert_eq!(t.height(), u.height());
/// t.remove(0);
/// assert_eq!((t.len(), u.len()), (999, 1000));
/// ```
#[cfg(feature = "std")]
impl<V: Send + Clone + 'static> Clone for MapleTree<V> {
    fn clone(&self) -> Self {
        let t = Self::new();
        self.dup_into(&t);
        t
    }
}

/// Is `items` sorted and non-overlapping, every range non-empty, the first
/// starting at or after `after`?
fn sorted_after<V>(items: &[(Range<u64>, V)], after: u64) -> bool {
    let mut prev = after;
    items.iter().all(|(r, _)| {
        let ok = r.start >= prev && r.start < r.end;
        prev = r.end;
        ok
    })
}

impl<V: Send> WriteTxn<'_, V> {
    /// The bulk build: if `items` are sorted, non-overlapping, non-empty
    /// ranges that all lie at or after the pending version's last entry,
    /// appends them without a search (dense nodes, `Core::append_sorted`)
    /// and returns `Ok`; else changes nothing and gives them back.
    pub(crate) fn append_sorted(
        &mut self,
        items: Vec<(Range<u64>, V)>,
    ) -> Result<(), Vec<(Range<u64>, V)>> {
        let after = self.last().map_or(0, |(r, _)| r.end);
        if !sorted_after(&items, after) {
            return Err(items);
        }
        let raw = items
            .into_iter()
            .map(|(r, v)| (r.start, r.end, garbage::boxed(v)))
            .collect();
        self.core.append_sorted(raw);
        Ok(())
    }
}
