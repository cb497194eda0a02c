//! Copy-on-write mutation inside one write transaction (docs/DESIGN.md §2.5).
//!
//! A transaction works on a private *working root*. A node is mutable in place
//! only if this transaction allocated it (`hdr.txn == self.txn`, I6): nobody
//! else can see it before commit. Any other node is published and immutable;
//! [`Core::cow`] copies it (values are shared pointers, never copied) and
//! records the original for retirement at commit. Each path is therefore copied
//! at most once per transaction, however many operations it holds.

use super::node::{
    Header, Inner, InnerItem, KIND_INNER, KIND_LEAF, Leaf, NodePool, Slots, Summary, as_inner,
    as_leaf, copy_node, distribute, gather, inner_item, place, release, split_point,
};
use alloc::vec::Vec;
use core::mem::MaybeUninit;
use core::ptr;

/// The mutable state of one write transaction.
pub(crate) struct Core<V> {
    /// This transaction's id (I6).
    pub(crate) txn: u64,
    /// Working root: null for an empty tree.
    pub(crate) root: *mut Header,
    pub(crate) len: usize,
    /// Published nodes replaced by this transaction: retired at commit.
    pub(crate) old_nodes: Vec<*mut Header>,
    /// Values removed by this transaction: retired at commit.
    pub(crate) removed: Vec<*mut V>,
    /// Values inserted by this transaction: dropped on abort.
    pub(crate) inserted: Vec<*mut V>,
    pub(crate) dirty: bool,
    /// The tree's node pool (§2.7); it lives with the `Core` in the writer
    /// state.
    pub(crate) pool: NodePool,
}

/// Empties a list for reuse by the next transaction, keeping its memory
/// unless a large transaction grew it (that would stay allocated for the
/// tree's lifetime).
fn recycle_list<T>(v: &mut Vec<T>) {
    const KEEP: usize = 256;
    if v.capacity() > KEEP {
        *v = Vec::new();
    } else {
        v.clear();
    }
}

/// A node pointer with its kind resolved, mutable (fresh) or not.
pub(super) enum Node<'a, V> {
    Leaf(&'a mut Leaf<V>),
    Inner(&'a mut Inner),
}

/// # Safety
/// `n` is a live node allocated by the current transaction (fresh, I6), so no
/// other reference to it exists while the returned borrow lives.
pub(super) unsafe fn fresh<'a, V>(n: *mut Header) -> Node<'a, V> {
    // SAFETY: caller's requirement: live and exclusively ours.
    unsafe {
        if (*n).kind == KIND_LEAF {
            Node::Leaf(&mut *n.cast::<Leaf<V>>())
        } else {
            Node::Inner(&mut *n.cast::<Inner>())
        }
    }
}

/// The summary of a non-empty node.
///
/// # Safety
/// `n` is live.
pub(super) unsafe fn summary_of<V>(n: *const Header) -> Summary {
    // SAFETY: caller's requirement; the kind tag selects the view.
    unsafe {
        if (*n).kind == KIND_LEAF {
            as_leaf::<V>(n).summary()
        } else {
            as_inner(n).summary()
        }
    }
}

/// Slot count of a node.
///
/// # Safety
/// `n` is live.
unsafe fn len_of(n: *const Header) -> usize {
    // SAFETY: caller's requirement.
    unsafe { (*n).len as usize }
}

/// Slot capacity of a node in its current format (it depends on its keys,
/// I10 and I11: an item added may still not fit).
///
/// # Safety
/// `n` is live.
unsafe fn cap_of(n: *const Header) -> usize {
    // SAFETY: caller's requirement; the kind tag selects the view.
    unsafe {
        if (*n).kind == KIND_LEAF {
            as_leaf::<()>(n).cap()
        } else {
            as_inner(n).cap()
        }
    }
}

/// Below its kind's minimum (I1)?
///
/// # Safety
/// `n` is live.
pub(super) unsafe fn underfull(n: *const Header) -> bool {
    // SAFETY: caller's requirement.
    unsafe {
        let min = if (*n).kind == KIND_LEAF {
            Leaf::<()>::MIN
        } else {
            Inner::MIN
        };
        len_of(n) < min
    }
}

/// Most levels a tree has: every inner node has two children or more
/// (I1), so a tree of height `h` holds at least `2^(h - 1)` entries, fewer
/// than `2^64`.
const MAX_HEIGHT: usize = 64;

/// The inner nodes a descent passed, root first, with the child it took at
/// each (writers copy them bottom-up afterwards).
/// Only the first `len` entries are initialised (an uninitialised array: a
/// zeroed one cost ~50 instructions per commit).
pub(super) struct Path {
    node: [MaybeUninit<*mut Header>; MAX_HEIGHT],
    idx: [MaybeUninit<u8>; MAX_HEIGHT],
    len: usize,
}

impl Path {
    #[inline(always)]
    fn new() -> Self {
        Self {
            node: [MaybeUninit::uninit(); MAX_HEIGHT],
            idx: [MaybeUninit::uninit(); MAX_HEIGHT],
            len: 0,
        }
    }

    #[inline(always)]
    fn push(&mut self, n: *mut Header, i: usize) {
        // Cannot overflow: see MAX_HEIGHT (an index panic otherwise).
        self.node[self.len].write(n);
        self.idx[self.len].write(i as u8);
        self.len += 1;
    }

    /// The node at depth `d < len`.
    #[inline(always)]
    fn node(&self, d: usize) -> *mut Header {
        assert!(d < self.len);
        // SAFETY: entries below `len` were written by `push`.
        unsafe { self.node[d].assume_init() }
    }

    /// The child taken at depth `d < len`.
    #[inline(always)]
    fn idx(&self, d: usize) -> usize {
        assert!(d < self.len);
        // SAFETY: entries below `len` were written by `push`.
        usize::from(unsafe { self.idx[d].assume_init() })
    }

    /// The summary that the node at depth `d` has in its parent's slot
    /// (`None` for the root, `d == 0`), read from the path as descended.
    ///
    /// # Safety
    /// The path's node at depth `d - 1` is live and not written since the
    /// descent (writers copy bottom-up and read a level before changing it).
    #[inline(always)]
    unsafe fn slot_summary(&self, d: usize) -> Option<Summary> {
        let d = d.checked_sub(1)?;
        // SAFETY: our requirement.
        Some(unsafe { as_inner(self.node(d)) }.slot_summary(self.idx(d)))
    }
}

impl<V> Core<V> {
    /// The state between transactions: no working root, empty lists,
    /// an empty pool (kept in the writer state, §2.7).
    pub(crate) fn idle() -> Self {
        Self {
            txn: 0,
            root: ptr::null_mut(),
            len: 0,
            old_nodes: Vec::new(),
            removed: Vec::new(),
            inserted: Vec::new(),
            dirty: false,
            pool: NodePool::default(),
        }
    }

    /// Starts transaction `txn` on the published `root` holding `len`
    /// entries, in place: the pool and the (empty) lists stay, so a
    /// commit allocates nothing it does not keep.
    #[inline]
    pub(crate) fn begin(&mut self, txn: u64, root: *mut Header, len: usize) {
        debug_assert!(self.old_nodes.is_empty() && self.removed.is_empty());
        debug_assert!(self.inserted.is_empty() && !self.dirty);
        (self.txn, self.root, self.len) = (txn, root, len);
    }

    /// Ends the transaction (committed, or aborted after `abort`): empties
    /// the lists for the next one, keeping their memory unless a large
    /// transaction grew them. What an aborted transaction listed was
    /// neither retired nor dropped, and is forgotten here.
    #[inline]
    pub(crate) fn end(&mut self) {
        recycle_list(&mut self.old_nodes);
        recycle_list(&mut self.removed);
        recycle_list(&mut self.inserted);
        self.dirty = false;
    }

    /// Returns a node of this transaction with `n`'s contents: `n` itself if
    /// it is fresh, else a copy (the original is retired at commit).
    ///
    /// # Safety
    /// `n` is live and reachable from the working root.
    pub(super) unsafe fn cow(&mut self, n: *mut Header) -> *mut Header {
        // SAFETY: our requirement.
        let hdr = unsafe { &*n };
        if hdr.txn == self.txn {
            return n;
        }
        self.old_nodes.push(n);
        // SAFETY: our requirement.
        unsafe { copy_node(&mut self.pool, n, self.txn) }
    }

    /// Drops `n` from the working tree: freed now if fresh (never published),
    /// else retired at commit.
    ///
    /// # Safety
    /// `n` is live and no longer reachable from the working root.
    pub(crate) unsafe fn discard(&mut self, n: *mut Header) {
        // SAFETY: our requirement.
        if unsafe { (*n).txn } == self.txn {
            // SAFETY: fresh nodes were never published (I6), and `n` is unlinked.
            let buf = unsafe { release(n) };
            self.pool.give(buf);
        } else {
            self.old_nodes.push(n);
        }
    }

    /// Inserts `start..end -> val`. The caller checked that the range is
    /// non-empty and overlaps nothing.
    pub(crate) fn insert(&mut self, start: u64, end: u64, val: *mut V) {
        let free = self.insert_if_free(start, end, val);
        assert!(free, "Core::insert: the caller checked for overlaps");
    }

    /// Inserts `start..end -> val` (`start < end`) unless it overlaps an
    /// entry; returns whether it did (if not, nothing changed and `val` is
    /// still the caller's). One descent both checks for an overlap and
    /// finds the path, which is then copied bottom-up (`Path`): nothing is
    /// copied for an insert that fails, and no level is searched twice.
    pub(crate) fn insert_if_free(&mut self, start: u64, end: u64, val: *mut V) -> bool {
        debug_assert!(start < end);
        if self.root.is_null() {
            self.note_insert(val);
            let mut l = Leaf::new(self.txn);
            l.set_items(&[(start, end, val)]);
            self.root = place(&mut self.pool, KIND_LEAF, l);
            return true;
        }
        let mut path = Path::new();
        // The first start after `start` outside the current subtree: the
        // first child right of the path at the deepest level that has one.
        let mut succ = u64::MAX;
        let mut n = self.root;
        // SAFETY: the working root is live (writer lock) and every node on
        // the path is reachable from it (R1 for the writer's own version).
        let (leaf, pos) = unsafe {
            loop {
                if (*n).kind == KIND_LEAF {
                    let l = as_leaf::<V>(n);
                    let pos = l.count_lt_start(start);
                    // The entries before and after `start`: the one before
                    // is in this leaf (the descent took the last child whose
                    // first start is <= start), unless none is.
                    let pred_end = if pos > 0 { l.end(pos - 1) } else { 0 };
                    let succ_start = if pos < l.len() { l.start(pos) } else { succ };
                    if pred_end > start || succ_start < end {
                        return false;
                    }
                    break (n, pos);
                }
                let inn = as_inner(n);
                let i = inn.count_le_min(start).saturating_sub(1);
                if i + 1 < inn.len() {
                    succ = inn.min(i + 1);
                }
                path.push(n, i);
                n = inn.child(i);
            }
        };
        self.note_insert(val);
        // SAFETY: nothing was written since the descent.
        let before = unsafe { path.slot_summary(path.len) };
        // SAFETY: `leaf` is live and reachable.
        let l_ptr = unsafe { self.cow(leaf) };
        // SAFETY: `cow` returned a node of this transaction.
        let Node::Leaf(l) = (unsafe { fresh::<V>(l_ptr) }) else {
            unreachable!("the descent ended at a leaf")
        };
        let split = self.insert_slot(l, pos, (start, end, val));
        let s = match (split, before) {
            (None, Some(b)) => Some(l.summary_after_insert(pos, b)),
            _ => None,
        };
        // SAFETY: the path's nodes are live and reachable and only the
        // leaf below them changed; `l_ptr` and `split` are fresh.
        unsafe { self.relink_path(&path, before, l_ptr, split, s) };
        true
    }

    /// Bookkeeping of an insert that will happen.
    fn note_insert(&mut self, val: *mut V) {
        self.dirty = true;
        self.inserted.push(val);
        self.len += 1;
    }

    /// Copies the inner nodes of `path` bottom-up, pointing each at the
    /// fresh replacement of the child below it, `c` (with its new right
    /// half `split`, and its new summary `s` when known) or, if a removal
    /// left `c` underfull, merging or redistributing it (`rebalance`), and
    /// installs the top as the working root (`set_root`). `was`: the replaced node's
    /// summary in its parent's slot (`path.slot_summary(path.len)`, read
    /// before the change). Each level's slot summary is read once: as the
    /// `before` of the level below and the `was` of its own.
    ///
    /// # Safety
    /// The path's nodes are live, reachable from the working root and
    /// unchanged since the descent, each the parent of the next and the
    /// last the parent of the node `c` replaces; `c` and `split` are fresh.
    unsafe fn relink_path(
        &mut self,
        path: &Path,
        mut was: Option<Summary>,
        mut c: *mut Header,
        mut split: Option<*mut Header>,
        mut s: Option<Summary>,
    ) {
        for d in (0..path.len).rev() {
            let (p, i) = (path.node(d), path.idx(d));
            // SAFETY: our requirement: the level above `d` is not written
            // yet (bottom-up).
            let above = unsafe { path.slot_summary(d) };
            // SAFETY: our requirement.
            let p = unsafe { self.cow(p) };
            // SAFETY: `cow` returned an inner node of this transaction.
            let inn = unsafe { &mut *p.cast::<Inner>() };
            // SAFETY: `c` is live and fresh.
            if unsafe { underfull(c) } {
                // A removal below (an insert never leaves a node underfull).
                // A node that split has more than `INNER_CAP` slots between
                // its halves: neither is underfull.
                debug_assert!(split.is_none());
                inn.set_child(i, c);
                // SAFETY: `inn`'s children are live; `c` is fresh.
                (split, s) = (unsafe { self.rebalance(inn, i) }, None);
            } else {
                let Some(w) = was else {
                    unreachable!("a node below the root has a slot summary")
                };
                // SAFETY: `c` is live and non-empty.
                let cs = s.unwrap_or_else(|| unsafe { summary_of::<V>(c) });
                // SAFETY: `inn`'s children are live; `c` and a split half
                // are fresh.
                (split, s) = unsafe { self.relink(inn, i, (c, cs), split, (w, above)) };
            }
            (c, was) = (p, above);
        }
        // SAFETY: `c` and `split` are fresh, the new top of the tree.
        unsafe { self.set_root(c, split) };
    }

    /// Installs the result of an operation as the working root: a new root above
    /// a split, or the tree shrunk from the top (I1).
    ///
    /// # Safety
    /// `n` and `split` are fresh; `n` is the working tree's new top node.
    pub(super) unsafe fn set_root(&mut self, n: *mut Header, split: Option<*mut Header>) {
        if let Some(right) = split {
            let mut r = Inner::new(self.txn);
            // SAFETY: both halves are live fresh nodes.
            unsafe {
                r.insert_item(0, inner_item(n, summary_of::<V>(n)));
                r.insert_item(1, inner_item(right, summary_of::<V>(right)));
            }
            self.root = place(&mut self.pool, KIND_INNER, r);
            return;
        }
        // SAFETY: our requirement: `n` is fresh.
        self.root = unsafe {
            match fresh::<V>(n) {
                Node::Leaf(l) if l.len() == 0 => {
                    self.discard(n);
                    ptr::null_mut()
                }
                Node::Inner(inn) if inn.len() == 1 => {
                    let c = inn.child(0);
                    self.discard(n);
                    c
                }
                _ => n,
            }
        };
    }

    /// Child `i` of the fresh node `p` was replaced by the fresh `c` with
    /// summary `cs` (`new`), which may have split off the fresh right half
    /// `split`: updates the slot and links `split`
    /// ([`link_split`](Self::link_split)). `(was, before)`: slot `i`'s old
    /// summary and `p`'s summary before the change (`None` if unknown).
    /// Returns `p`'s own new right half if `p` split, and else, when cheap
    /// (`before` known and nothing split), `p`'s new summary.
    ///
    /// # Safety
    /// As [`link_split`](Self::link_split), with `c` in slot `i`.
    pub(super) unsafe fn relink(
        &mut self,
        p: &mut Inner,
        i: usize,
        (c, cs): (*mut Header, Summary),
        split: Option<*mut Header>,
        (was, before): (Summary, Option<Summary>),
    ) -> (Option<*mut Header>, Option<Summary>) {
        if !p.set(i, c, cs) {
            // `c`'s keys fit no format with `p`'s other slots (I11): split
            // `p`, with `split` linked behind `c`.
            let mut new = [inner_item(c, cs); 2];
            let k = match split {
                Some(r) => {
                    // SAFETY: our requirement: `r` is live.
                    new[1] = inner_item(r, unsafe { summary_of::<V>(r) });
                    2
                }
                None => 1,
            };
            return (self.replace_slots(p, i, 1, &new[..k]), None);
        }
        let Some(r) = split else {
            return (None, before.map(|b| p.summary_after(i, was, cs, b)));
        };
        // SAFETY: our requirement.
        (unsafe { self.link_split(p, i, r) }, None)
    }

    /// Replaces slots `at..at + del` of the fresh node `p` with `new`; when
    /// the result does not fit one node (it has more children than a wide
    /// node holds and no narrow encoding, I11: a key off the scale of the
    /// others, or a span past 32-bit offsets), splits `p` in two and returns
    /// the new right half. Both halves fit: at most `INNER_NARROW_CAP + 1`
    /// slots, more than `INNER_CAP`, cut near the middle.
    pub(super) fn replace_slots(
        &mut self,
        p: &mut Inner,
        at: usize,
        del: usize,
        new: &[InnerItem],
    ) -> Option<*mut Header> {
        let mut items = gather(p, None, None);
        items.splice(at..at + del, new.iter().copied());
        if Inner::fits(&items) {
            p.set_items(&items);
            return None;
        }
        let k = split_point::<Inner>(&items).expect("an overfull inner node splits in two");
        let mut right = Inner::new(self.txn);
        distribute(&items, k, p, &mut right);
        Some(place(&mut self.pool, KIND_INNER, right))
    }

    /// Points slots `li` and `li + 1` of the fresh node `p` at `a` and `b`
    /// with their summaries; splits `p` if they fit no format (as
    /// [`replace_slots`](Self::replace_slots)), returning its right half.
    fn set_pair(
        &mut self,
        p: &mut Inner,
        li: usize,
        a: (*mut Header, Summary),
        b: (*mut Header, Summary),
    ) -> Option<*mut Header> {
        if p.set(li, a.0, a.1) && p.set(li + 1, b.0, b.1) {
            return None;
        }
        self.replace_slots(p, li, 2, &[inner_item(a.0, a.1), inner_item(b.0, b.1)])
    }

    /// Child `i` of the fresh node `p` just split off the fresh right half
    /// `r`: spreads the slots over a neighbour ([`share`](Self::share)) or
    /// else links `r` at `i + 1`. Returns `p`'s own new right half if that
    /// split `p` (insert and the one-descent splice both end a split so).
    ///
    /// # Safety
    /// As [`share`](Self::share).
    pub(super) unsafe fn link_split(
        &mut self,
        p: &mut Inner,
        i: usize,
        r: *mut Header,
    ) -> Option<*mut Header> {
        // SAFETY: our requirement.
        if let Some(split) = unsafe { self.share(p, i, r) } {
            return split;
        }
        // SAFETY: `r` is live (fresh and not freed by `share`, which
        // returned false and changed nothing).
        let it = inner_item(r, unsafe { summary_of::<V>(r) });
        self.insert_slot(p, i + 1, it)
    }

    /// Inserts into a fresh node, splitting it when full; returns the new right node.
    pub(super) fn insert_slot<N: Slots + NewNode>(
        &mut self,
        node: &mut N,
        pos: usize,
        it: N::Item,
    ) -> Option<*mut Header> {
        if node.insert_item(pos, it) {
            return None;
        }
        let items = gather(node, None, Some((pos, it)));
        // At most CAP + 1 slots when the node was full, or more than
        // `Leaf::CAP` (10) when a new key widened a narrow leaf: the middle
        // cut leaves both halves within `Leaf::CAP` and at least MIN.
        let k = split_point::<N>(&items).expect("a node plus one slot splits in two");
        let mut right = N::empty(self.txn);
        distribute(&items, k, node, &mut right);
        Some(place(&mut self.pool, N::KIND, right))
    }

    /// Child `i` of the fresh node `p` just split into itself and the fresh
    /// right half `r` (not linked into `p`). If a neighbour of child `i` has
    /// a free slot, spreads the three nodes' slots over two (the neighbour,
    /// copied, and child `i`), frees `r` and returns `Some`: an overflow then
    /// costs one sibling copy instead of a new node, which keeps nodes about
    /// 80 % full under random inserts instead of about 69 % (fewer nodes,
    /// lower trees). The `Some` holds `p`'s new right half in the rare case
    /// that the two new summaries fit no format of `p` (I11, `set_pair`).
    /// Returns `None`, changing nothing, when both neighbours are full.
    ///
    /// # Safety
    /// `p`'s children are live and `p.child[i]` is fresh; `r` is fresh,
    /// unlinked, of the same kind as `p.child[i]`.
    pub(super) unsafe fn share(
        &mut self,
        p: &mut Inner,
        i: usize,
        r: *mut Header,
    ) -> Option<Option<*mut Header>> {
        // SAFETY: children of `p` are live.
        let room = |k: usize| unsafe { cap_of(p.child(k)) - len_of(p.child(k)) };
        let left = if i > 0 { room(i - 1) } else { 0 };
        let right = if i + 1 < p.len() { room(i + 1) } else { 0 };
        if left == 0 && right == 0 {
            return None;
        }
        // Spread over (li, li + 1): the neighbour with more room, and `i`.
        let li = if left >= right { i - 1 } else { i };
        // SAFETY: our requirements, passed on.
        unsafe {
            if (*r).kind == KIND_LEAF {
                self.spread3::<Leaf<V>>(p, li, i, r)
            } else {
                self.spread3::<Inner>(p, li, i, r)
            }
        }
    }

    /// `share` for children `li`, `li + 1` of `p` (one of them child `i`,
    /// which split off `r`), with their kind `N`: redistributes the three
    /// nodes' slots over the two if some cut fits (a leaf's capacity depends
    /// on its keys, I10, I11), else changes nothing and returns `None`; the
    /// `Some` holds `p`'s right half if it split (as `share`).
    ///
    /// # Safety
    /// As `share`; `N` is the kind of the children.
    unsafe fn spread3<N: Slots + NewNode>(
        &mut self,
        p: &mut Inner,
        li: usize,
        i: usize,
        r: *mut Header,
    ) -> Option<Option<*mut Header>> {
        // SAFETY: our requirements: the children and `r` are live nodes of
        // kind `N`; these shared views end before any node is written.
        let items = unsafe {
            let a = N::view(p.child(li));
            let b = N::view(p.child(li + 1));
            let r = N::view(r);
            let mut items = gather(a, Some(b), None);
            // `r` follows child `i` in key order.
            let at = if li == i { a.len() } else { items.len() };
            items.splice(at..at, (0..r.len()).map(|k| r.item(k)));
            items
        };
        let k = split_point::<N>(&items)?;
        let nb = if li == i { i + 1 } else { i - 1 };
        // SAFETY: the neighbour is live and reachable; `cow` gives a fresh
        // copy distinct from child `i` and from `r`; both children are then
        // fresh and distinct, so the mutable views do not alias.
        unsafe {
            p.set_child(nb, self.cow(p.child(nb)));
            let (a_ptr, b_ptr) = (p.child(li), p.child(li + 1));
            let (a, b) = (N::view_mut(a_ptr), N::view_mut(b_ptr));
            distribute(&items, k, a, b);
            self.discard(r);
            Some(self.set_pair(p, li, (a_ptr, a.summary()), (b_ptr, b.summary())))
        }
    }

    /// Removes the entry starting at `start`, which must exist.
    pub(crate) fn remove(&mut self, start: u64) {
        let r = self.remove_at(start);
        assert!(
            r.is_some_and(|(s, _)| s == start),
            "Core::remove: an entry starts at {start:#x}"
        );
    }

    /// Removes the entry containing `addr` and returns its range, or `None`
    /// (nothing changed) if no entry contains it. One descent finds it and
    /// the path, which is then copied bottom-up (as `insert_if_free`).
    pub(crate) fn remove_at(&mut self, addr: u64) -> Option<(u64, u64)> {
        let mut path = Path::new();
        let mut n = self.root;
        if n.is_null() {
            return None;
        }
        // SAFETY: the working root is live (writer lock) and every node on
        // the path is reachable from it.
        let (leaf, j) = unsafe {
            loop {
                if (*n).kind == KIND_LEAF {
                    break (n, as_leaf::<V>(n).find(addr)?);
                }
                let inn = as_inner(n);
                // The last child whose first start is <= addr (I3).
                let i = inn.count_le_min(addr).checked_sub(1)?;
                path.push(n, i);
                n = inn.child(i);
            }
        };
        self.dirty = true;
        self.len -= 1;
        // SAFETY: nothing was written since the descent.
        let before = unsafe { path.slot_summary(path.len) };
        // SAFETY: `leaf` is live and reachable.
        let l_ptr = unsafe { self.cow(leaf) };
        // SAFETY: `cow` returned a node of this transaction.
        let Node::Leaf(l) = (unsafe { fresh::<V>(l_ptr) }) else {
            unreachable!("the descent ended at a leaf")
        };
        let s = before.and_then(|b| l.summary_after_remove(j, b));
        let (start, end, v) = l.remove_item(j);
        self.removed.push(v);
        // SAFETY: the path's nodes are live and reachable and only the
        // leaf below them changed; `l_ptr` is fresh.
        unsafe { self.relink_path(&path, before, l_ptr, None, s) };
        Some((start, end))
    }

    /// Fixes the underfull child `i` of the fresh node `p` by merging it with
    /// a sibling or, if both are too full to merge, redistributing evenly.
    /// Returns `p`'s new right half in the rare case that the new summaries
    /// fit no format of `p` (I11, `replace_slots`).
    ///
    /// # Safety
    /// `p`'s children are live; `p` has at least two children (I1).
    pub(super) unsafe fn rebalance(&mut self, p: &mut Inner, i: usize) -> Option<*mut Header> {
        let (li, ri) = if i > 0 { (i - 1, i) } else { (0, 1) };
        // SAFETY: children of `p` are live and reachable.
        let (a, b) = unsafe { (self.cow(p.child(li)), p.child(ri)) };
        // SAFETY: `a` is fresh; `b` is live (fresh or published, only read here
        // unless copied); they are distinct nodes.
        unsafe {
            match (fresh::<V>(a), (*b).kind == KIND_LEAF) {
                (Node::Leaf(la), true) => self.join(p, li, a, la, as_leaf::<V>(b)),
                (Node::Inner(ia), false) => self.join(p, li, a, ia, as_inner(b)),
                _ => unreachable!("siblings at one level have one kind (I4)"),
            }
        }
    }

    /// Merge or redistribute children `li` (fresh `a`) and `li + 1` (`b`) of `p`.
    ///
    /// # Safety
    /// `a_ptr` is `a`, fresh; `b` is `p.child[li + 1]`, live.
    unsafe fn join<N: Slots + NewNode>(
        &mut self,
        p: &mut Inner,
        li: usize,
        a_ptr: *mut Header,
        a: &mut N,
        b: &N,
    ) -> Option<*mut Header> {
        let b_ptr = p.child(li + 1);
        if a.append_from(b) {
            // Removing a slot always fits (`Slots::remove_item`); then the
            // merged summary may not (I11).
            p.remove_item(li + 1);
            // SAFETY: `b` is unlinked from the working tree now.
            unsafe { self.discard(b_ptr) };
            let s = a.summary();
            if p.set(li, a_ptr, s) {
                None
            } else {
                self.replace_slots(p, li, 1, &[inner_item(a_ptr, s)])
            }
        } else {
            let items = gather(a, Some(b), None);
            // SAFETY: `b_ptr` is live and reachable.
            let b2_ptr = unsafe { self.cow(b_ptr) };
            // SAFETY: `b2_ptr` is fresh and distinct from `a`.
            let b2 = unsafe { N::view_mut(b2_ptr) };
            // One node is underfull and the two do not fit in one: more
            // than `Leaf::CAP` (10) slots but at most MIN - 1 + the larger
            // format's capacity, so the middle cut fits and keeps MIN each.
            let k = split_point::<N>(&items).expect("two nodes that do not merge redistribute");
            distribute(&items, k, a, b2);
            self.set_pair(p, li, (a_ptr, a.summary()), (b2_ptr, b2.summary()))
        }
    }

    /// Abort: frees every fresh node and returns every value this
    /// transaction inserted, for the caller to drop once it has released the
    /// writer lock (user code). Published nodes and values are untouched.
    /// Inserted values came from `Box::into_raw`, were never published, and
    /// are dropped only by abort's caller or retired via `removed` (commit),
    /// never both.
    pub(crate) fn abort(&mut self) -> Vec<*mut V> {
        // SAFETY: the working root's fresh nodes were never published (I6).
        unsafe { self.free_fresh(self.root) };
        self.root = ptr::null_mut();
        self.dirty = false;
        core::mem::take(&mut self.inserted)
    }

    /// # Safety
    /// `n` is null or live; fresh nodes under it are unpublished.
    unsafe fn free_fresh(&mut self, n: *mut Header) {
        // SAFETY: our requirement.
        if n.is_null() || unsafe { (*n).txn } != self.txn {
            // A published node: every node under it is published too.
            return;
        }
        // SAFETY: our requirement; a fresh node's children are live.
        unsafe {
            if (*n).kind != KIND_LEAF {
                let inn = as_inner(n);
                for i in 0..inn.len() {
                    self.free_fresh(inn.child(i));
                }
            }
            let buf = release(n);
            self.pool.give(buf);
        }
    }
}

/// A new empty node of one kind (used by splits).
pub(crate) trait NewNode: Sized {
    const KIND: u8;
    fn empty(txn: u64) -> Self;
    /// # Safety
    /// `n` is a fresh node of this kind with no other live reference.
    unsafe fn view_mut<'a>(n: *mut Header) -> &'a mut Self;
    /// # Safety
    /// `n` is a live node of this kind, not written while the view lives.
    unsafe fn view<'a>(n: *const Header) -> &'a Self;
}

impl<V> NewNode for Leaf<V> {
    const KIND: u8 = KIND_LEAF;
    fn empty(txn: u64) -> Self {
        Leaf::new(txn)
    }
    unsafe fn view_mut<'a>(n: *mut Header) -> &'a mut Self {
        // SAFETY: caller's requirement.
        unsafe { &mut *n.cast() }
    }
    unsafe fn view<'a>(n: *const Header) -> &'a Self {
        // SAFETY: caller's requirement.
        unsafe { as_leaf(n) }
    }
}

impl NewNode for Inner {
    const KIND: u8 = KIND_INNER;
    fn empty(txn: u64) -> Self {
        Inner::new(txn)
    }
    unsafe fn view_mut<'a>(n: *mut Header) -> &'a mut Self {
        // SAFETY: caller's requirement.
        unsafe { &mut *n.cast() }
    }
    unsafe fn view<'a>(n: *const Header) -> &'a Self {
        // SAFETY: caller's requirement.
        unsafe { as_inner(n) }
    }
}
