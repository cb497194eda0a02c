//! One-descent overwrite (issue 13 §1): cut `[a, b)` out of the working tree
//! and optionally store `a..b -> value` in its place, splicing the leaf that
//! holds the affected entries once (docs/DESIGN.md §2.5, §2.8).
//!
//! # The round
//! A *round* descends once from the root with a window `[x, y)`. At each
//! inner node it routes by `x` like `insert` (the last child whose `min <=
//! x`: the only child that can hold an entry overlapping `x`, I3) and
//! *clips* `y` to the next child's `min`: entries of the next children are
//! left for a later round. Nothing is copied on the way down. At the leaf it
//! builds the new slot list (entries before the window, the piece of the
//! first overlapped entry left of `x`, the stored entry, the piece of the
//! last overlapped entry right of `y`, entries after the window; at most
//! `LEAF_CAP + 2` slots), and only then copies the path on the way back up
//! (one COW path copy, one summary per level), splitting an overfull leaf
//! (as `insert` does, sharing with a sibling when one has room) or
//! rebalancing an underfull one (as `remove` does).
//!
//! When the window was not clipped (the affected entries lie in one leaf,
//! the common case) one round is the whole operation: O(height). Otherwise
//! the next round starts at the clip point, so a cut over `k` entries spread
//! over `l` leaves costs `l` rounds: O(l · height) = O((1 + k / LEAF_MIN) ·
//! height), never one descent per entry; `store`'s entry then costs one
//! insert (its round was clipped, so it did not place the entry).
//!
//! # Values
//! A covered entry's value goes to the transaction's `removed` list (retired
//! at commit). A trimmed entry keeps its value pointer: no list changes, so
//! readers of either version share the value and a `&V` keeps its address
//! (§2.1). Only a middle split needs a new value (`clone`, user code), and it
//! runs before anything changes; a middle split is never clipped (the entry
//! extends past `y`, so `y` is `b`), so it happens in the first round.

use super::garbage;
use super::node::{
    Header, KIND_LEAF, LEAF_CAP, Leaf, LeafItem, NARROW_CAP, Slots, Summary, as_inner, as_leaf,
    distribute, leaf_fits, place, split_point,
};
use super::write::{Core, Node, fresh, summary_of, underfull};
use core::ptr;

/// Most slots a spliced leaf holds before it is split: a full leaf, plus
/// the stored entry and the right piece of a middle split.
const MAX_ITEMS: usize = if NARROW_CAP > LEAF_CAP {
    NARROW_CAP
} else {
    LEAF_CAP
} + 2;

/// What a round did to a subtree.
enum Spliced {
    /// Nothing overlapped and nothing was stored: no node was copied.
    Unchanged,
    /// The subtree's fresh replacement, its new right sibling if it split
    /// (fresh, unlinked), and otherwise its new summary (`None` for the
    /// root, whose summary nobody stores).
    Changed(*mut Header, Option<*mut Header>, Option<Summary>),
}

/// One splice's fixed arguments and running count.
struct Job<'v, V, F> {
    /// The operation's end (a leaf window ending here was not clipped).
    b: u64,
    /// The value to store, taken by the leaf that stores it.
    val: &'v mut Option<V>,
    clone: F,
    /// In the first round (only it may store: later ones start above `a`).
    first: bool,
    /// Entries removed, trimmed or split so far.
    touched: usize,
}

impl<V> Core<V> {
    /// Cuts `[a, b)` (non-empty) out of every entry overlapping it and, if
    /// `value` is `Some`, stores `a..b -> value`; returns how many entries
    /// were removed, trimmed or split. `clone` makes the value of the right
    /// piece of a middle split (it runs before anything changes; if it
    /// panics, the working tree is unchanged and `value` is dropped by the
    /// unwinding caller). See the module docs for the cost.
    pub(crate) fn splice(
        &mut self,
        a: u64,
        b: u64,
        mut value: Option<V>,
        clone: impl Fn(&V) -> V,
    ) -> usize {
        debug_assert!(a < b);
        let mut job = Job {
            b,
            val: &mut value,
            clone,
            first: true,
            touched: 0,
        };
        let mut x = a;
        while !self.root.is_null() {
            // SAFETY: the working root is live and reachable (writer lock).
            let (res, y) = unsafe { self.round(self.root, (x, b), None, &mut job) };
            if let Spliced::Changed(n, split, _) = res {
                self.dirty = true;
                // SAFETY: `n` (and `split`) are the fresh new top of the tree.
                unsafe { self.set_root(n, split) };
            }
            if y >= b {
                break;
            }
            // Only the first round may store (later ones start above `a`).
            job.first = false;
            x = y;
        }
        let touched = job.touched;
        if let Some(v) = value {
            // The tree was empty, or the window was clipped: [a, b) is free now.
            self.insert(a, b, garbage::boxed(v));
        }
        touched
    }

    /// One round over the subtree `n` with window `[x, y)`; returns what it
    /// did and the window end it used at the leaf (`<= y`: clipped if less).
    /// `job.val` is stored as `x..y` only if the leaf's window ends at
    /// `job.b`, the operation's end (not clipped).
    ///
    /// # Safety
    /// `n` is live and reachable from the working root; entries outside `n`
    /// do not overlap `[x, y)` except after `y`'s clip points (module docs).
    unsafe fn round(
        &mut self,
        n: *mut Header,
        (x, y): (u64, u64),
        was: Option<Summary>,
        job: &mut Job<'_, V, impl Fn(&V) -> V>,
    ) -> (Spliced, u64) {
        // SAFETY: our requirement.
        if unsafe { (*n).kind } == KIND_LEAF {
            // SAFETY: our requirement and the kind tag.
            let res = unsafe { self.splice_leaf(n, (x, y), was.is_some(), job) };
            return (res, y);
        }
        // SAFETY: our requirement and the kind tag; read only, not copied yet.
        let inn = unsafe { as_inner(n) };
        let len = inn.len();
        let i = inn.count_le_min(x).saturating_sub(1);
        let y = if i + 1 < len {
            y.min(inn.min(i + 1))
        } else {
            y
        };
        let slot = inn.slot_summary(i);
        // SAFETY: children of a reachable node are reachable; the clip keeps
        // the window inside child `i`'s share of the key space.
        let (res, y) = unsafe { self.round(inn.child(i), (x, y), Some(slot), job) };
        let Spliced::Changed(c, split, cs) = res else {
            return (Spliced::Unchanged, y);
        };
        // SAFETY: our requirement; a copy (or `n` itself, if fresh).
        let n = unsafe { self.cow(n) };
        // SAFETY: `cow` returned a node of this transaction, inner like `n`.
        let Node::Inner(inn) = (unsafe { fresh::<V>(n) }) else {
            unreachable!("cow keeps the kind")
        };
        // SAFETY: `c` is live and fresh; `inn`'s children are live; a split
        // `r` is fresh, unlinked and of `c`'s kind (`link_split`'s terms).
        unsafe {
            if let Some(r) = split {
                let (split, _) =
                    self.relink(inn, i, (c, summary_of::<V>(c)), Some(r), (slot, None));
                let ns = was.filter(|_| split.is_none()).map(|_| inn.summary());
                return (Spliced::Changed(n, split, ns), y);
            }
            if underfull(c) {
                inn.set_child(i, c);
                let split = self.rebalance(inn, i);
                let ns = was.filter(|_| split.is_none()).map(|_| inn.summary());
                return (Spliced::Changed(n, split, ns), y);
            }
        }
        let cs = cs.expect("a non-root child reports its summary");
        if cs == slot {
            // The child's summary is unchanged, hence this node's (most
            // stores inside a leaf): no recomputation up the path.
            inn.set_child(i, c);
            return (Spliced::Changed(n, None, was), y);
        }
        // SAFETY: `inn`'s children are live; `c` is fresh; nothing split.
        let (split, _) = unsafe { self.relink(inn, i, (c, cs), None, (slot, None)) };
        let ns = was.filter(|_| split.is_none()).map(|_| inn.summary());
        (Spliced::Changed(n, split, ns), y)
    }

    /// The leaf step of a round (module docs): stores `job.val` as `x..y` if
    /// the window was not clipped (`y == job.b`). Reports the new summary
    /// if `summarise` (a non-root leaf) and it did not split.
    ///
    /// # Safety
    /// `n` is a live leaf reachable from the working root.
    unsafe fn splice_leaf(
        &mut self,
        n: *mut Header,
        (x, y): (u64, u64),
        summarise: bool,
        job: &mut Job<'_, V, impl Fn(&V) -> V>,
    ) -> Spliced {
        let mut none = None;
        let val = if y == job.b && job.first {
            &mut *job.val
        } else {
            &mut none
        };
        // SAFETY: our requirement; read only until the copy below.
        let l = unsafe { as_leaf::<V>(n) };
        let len = l.len();
        // Overlapped: j0..j1 (starts and ends are sorted, I2; an entry
        // ending at or before `x` starts before `y`, so j0 <= j1).
        let j0 = l.count_le_end(x);
        let j1 = l.count_lt_start(y);
        if j0 == j1 && val.is_none() {
            return Spliced::Unchanged;
        }
        // User code first, while nothing has changed: the middle split.
        let split_val = match (j1 - j0 == 1).then(|| l.item(j0)) {
            // SAFETY: I5: a used slot's value is live while the leaf is.
            Some((s, e, p)) if s < x && e > y => Some(garbage::boxed((job.clone)(unsafe { &*p }))),
            _ => None,
        };
        let mut items: [LeafItem<V>; MAX_ITEMS] = [(0, 0, ptr::null_mut()); MAX_ITEMS];
        let mut k = 0;
        let mut push = |it: LeafItem<V>| {
            items[k] = it;
            k += 1;
        };
        for j in 0..j0 {
            push(l.item(j));
        }
        let mut kept = 0;
        let mut right = None;
        for j in j0..j1 {
            let (s, e, p) = l.item(j);
            if s < x {
                push((s, x, p));
                kept += 1;
            }
            if e > y {
                // The piece right of `y`: the left piece's value is `p`.
                right = Some((y, e, if s < x { split_val.expect("cloned") } else { p }));
                kept += usize::from(s >= x);
            } else if s >= x {
                self.removed.push(p);
            }
        }
        if let Some(v) = val.take() {
            let p = garbage::boxed(v);
            self.inserted.push(p);
            push((x, y, p));
            self.len += 1;
        }
        if let Some(it) = right {
            push(it);
            if split_val.is_some() {
                self.inserted.push(it.2);
                self.len += 1;
            }
        }
        for j in j1..len {
            push(l.item(j));
        }
        job.touched += j1 - j0;
        self.len -= (j1 - j0) - kept;
        // SAFETY: our requirement.
        let n = unsafe { self.cow(n) };
        // SAFETY: `cow` returned a node of this transaction, a leaf like `n`.
        let Node::Leaf(l) = (unsafe { fresh::<V>(n) }) else {
            unreachable!("cow keeps the kind")
        };
        let items = &items[..k];
        if leaf_fits(items) {
            l.set_items(items);
            let s = (summarise && k > 0).then(|| l.summary());
            return Spliced::Changed(n, None, s);
        }
        // At most `NARROW_CAP + 2` slots: two wide leaves of at least MIN.
        let cut = split_point::<Leaf<V>>(items).expect("a leaf plus two slots splits in two");
        let mut r = Leaf::<V>::new(self.txn);
        distribute(items, cut, l, &mut r);
        Spliced::Changed(n, Some(place(&mut self.pool, KIND_LEAF, r)), None)
    }
}
