//! Read-side algorithms over one root pointer (a published snapshot under a
//! read guard, or a transaction's private working root under the writer lock).
//!
//! Every function here is `unsafe` with the same requirement, named **R1** at
//! call sites:
//!
//! R1. `root` is null or a node of value type `V` such that the root and
//!     everything reachable from it stays allocated and unmodified for `'a`
//!     (guaranteed by a read guard — I6, I7 — or by the writer lock for a
//!     transaction's own root).

use super::node::{Header, KIND_LEAF, Leaf, align_exp_or0, as_inner, as_leaf};
use core::ops::Range;

/// One entry as readers see it.
pub(crate) type Entry<'a, V> = (Range<u64>, &'a V);

/// A position in a leaf: the leaf and an entry index.
pub(crate) struct LeafPos<'a, V> {
    pub(crate) leaf: &'a Leaf<V>,
    pub(crate) idx: usize,
}

impl<'a, V> LeafPos<'a, V> {
    #[inline(always)]
    pub(crate) fn entry(&self) -> Entry<'a, V> {
        let l = self.leaf;
        let j = self.idx;
        // SAFETY: I5: a used slot's value pointer is non-null and live as long
        // as the leaf is reachable (values are retired with or after the leaf, I7).
        (l.start(j)..l.end(j), unsafe { &*l.val(j) })
    }
}

/// Asks the CPU to start loading cache lines `FROM..TO` of node `n` (line
/// 0, with the header and the first pivots, is demand-loaded at once anyway).
///
/// A descent reads a node's pivots, and only after comparing them the chosen
/// child pointer or leaf entry. Without the prefetch those are two dependent
/// cache misses per level; with it, one. A leaf is lines 0-3 and so is an
/// inner node (its `min` and `child` arrays, what `get` and `prev` read, are
/// lines 0-1 of a wide node, lines 0-2 of a narrow one, I11). Prefetching never faults and changes no state a program can
/// observe.
#[inline(always)]
fn prefetch_lines<const FROM: usize, const TO: usize>(n: *const Header) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let p = n.cast::<i8>();
        for line in FROM..TO {
            // SAFETY: a prefetch is only a hint: it never faults, whatever
            // the address, and reads nothing into the program (wrapping_add
            // keeps the pointer arithmetic itself defined).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64 * line)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = n;
}

/// Cache lines of an inner node.
const INNER_LINES: usize = size_of::<super::node::Inner>() / 64;

/// Lines 1-3: a whole leaf, or an inner node's `min` and `child` arrays.
#[inline(always)]
fn prefetch_node(n: *const Header) {
    prefetch_lines::<1, 4>(n);
}

/// Walks down choosing a child with `pick(inner) -> Option<index>`, then lets
/// `leaf_pick` choose an entry index. `BY_MAX`: `pick` reads the inner
/// nodes' `max` array (else only `min`).
///
/// # Safety
/// R1.
#[inline(always)]
unsafe fn descend<'a, V, const BY_MAX: bool>(
    root: *const Header,
    pick: impl Fn(&'a super::node::Inner) -> Option<usize>,
    leaf_pick: impl Fn(&'a Leaf<V>) -> Option<usize>,
) -> Option<LeafPos<'a, V>> {
    let mut n = root;
    if n.is_null() {
        return None;
    }
    loop {
        prefetch_node(n);
        // SAFETY: R1: `n` is reachable from the root, hence live for 'a.
        let hdr = unsafe { &*n };
        hdr.live.touch();
        if hdr.kind == KIND_LEAF {
            // SAFETY: R1 and the kind tag.
            let leaf = unsafe { as_leaf::<V>(n) };
            return leaf_pick(leaf).map(|idx| LeafPos { leaf, idx });
        }
        if BY_MAX && INNER_LINES > 4 {
            // `pick` scans `max`, past line 3 in an inner node this large.
            prefetch_lines::<4, INNER_LINES>(n);
        }
        // SAFETY: R1 and the kind tag.
        let inner = unsafe { as_inner(n) };
        n = inner.child(pick(inner)?);
    }
}

/// The leaf position of the entry containing `addr`.
///
/// # Safety
/// R1.
#[inline]
pub(crate) unsafe fn get<'a, V>(root: *const Header, addr: u64) -> Option<LeafPos<'a, V>> {
    // SAFETY: R1 passed through.
    unsafe {
        descend::<V, false>(
            root,
            // last child whose first start <= addr (I3); none: addr precedes the subtree.
            |i| i.count_le_min(addr).checked_sub(1),
            |l| l.find(addr),
        )
    }
}

/// The first entry whose end > `addr` (Linux `find_vma`).
///
/// # Safety
/// R1.
#[inline]
pub(crate) unsafe fn next<'a, V>(root: *const Header, addr: u64) -> Option<LeafPos<'a, V>> {
    // Ends are sorted (I2): the number of ends <= addr is the index of the
    // first end > addr, and the first child whose last end > addr holds it.
    let first_gt = |k: usize, len: usize| (k < len).then_some(k);
    // SAFETY: R1 passed through.
    unsafe {
        descend::<V, true>(
            root,
            |i| first_gt(i.count_le_max(addr), i.len()),
            |l| first_gt(l.count_le_end(addr), l.len()),
        )
    }
}

/// The last entry whose start < `addr`.
///
/// # Safety
/// R1.
#[inline]
pub(crate) unsafe fn prev<'a, V>(root: *const Header, addr: u64) -> Option<LeafPos<'a, V>> {
    // SAFETY: R1 passed through.
    unsafe {
        descend::<V, false>(
            root,
            |i| i.count_lt_min(addr).checked_sub(1),
            |l| l.count_lt_start(addr).checked_sub(1),
        )
    }
}

/// A gap query with validated arguments.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GapQuery {
    pub(crate) size: u64,
    pub(crate) align: u64,
    pub(crate) lo: u64,
    pub(crate) hi: u64,
    pub(crate) rev: bool,
}

impl GapQuery {
    /// The best aligned start inside the free interval `[fs, fe)`, if any.
    #[inline]
    fn fit(&self, fs: u64, fe: u64) -> Option<u64> {
        let a = fs.max(self.lo);
        let b = fe.min(self.hi);
        if b <= a || b - a < self.size {
            return None;
        }
        let mask = self.align - 1;
        if self.rev {
            let s = (b - self.size) & !mask;
            (s >= a).then_some(s)
        } else {
            let s = a.checked_add(mask)? & !mask;
            (s <= b - self.size).then_some(s)
        }
    }

    /// Could the free space owned by a subtree (I8) hold an answer? `best` is
    /// the largest free interval owned by the subtree, `al()` the largest
    /// alignment exponent of one (`node::align_exp`), `[lo, hi)` its extent.
    ///
    /// The alignment test is a necessary condition only, so it may be
    /// skipped: it is evaluated last, and only when `best` is too short to
    /// hold an aligned fit wherever it starts (`best < size + align - 1`).
    #[inline]
    fn may_fit(&self, lo: u64, hi: u64, best: u64, al: impl FnOnce() -> u8) -> bool {
        best >= self.size
            && lo < self.hi
            && hi > self.lo
            && hi.min(self.hi) - lo.max(self.lo) >= self.size
            && (best - self.size >= self.align - 1
                || self.align.trailing_zeros() <= u32::from(al()))
    }
}

/// Gap search (docs/DESIGN.md §2.4). A subtree reached with bounds `[lo, hi)`
/// owns the free space in front of each of its entries starting at `lo`, plus
/// the space after its last entry up to `hi` (I8). Descends only into children
/// whose owned space can hold `size`; O(height) when `align == 1`.
///
/// # Safety
/// R1 for `n` (non-null).
pub(crate) unsafe fn find_gap<V>(n: *const Header, lo: u64, hi: u64, q: &GapQuery) -> Option<u64> {
    // SAFETY: R1.
    let hdr = unsafe { &*n };
    hdr.live.touch();
    if hdr.kind == KIND_LEAF {
        // SAFETY: R1 and the kind tag.
        let l = unsafe { as_leaf::<V>(n) };
        let len = l.len();
        // Free interval k (0..=len) is [end[k-1] or lo, start[k] or hi).
        let interval = |k: usize| {
            let fs = if k == 0 { lo } else { l.end(k - 1) };
            let fe = if k == len { hi } else { l.start(k) };
            (fs, fe)
        };
        let fit = |k: usize| {
            let (fs, fe) = interval(k);
            q.fit(fs, fe)
        };
        // (Starting at the first interval that meets the window, found by
        // counting over `start`/`end`, measured 10 % slower at 256Ki: it
        // touches the whole key arrays; the rejected intervals cost less.)
        // Intervals ending at or before the window's start (forward), or
        // starting at or after its end (reverse), cannot hold a fit: skip
        // them with one count over the (narrow: 32-bit) keys.
        if q.rev {
            let last = if q.hi == 0 {
                0
            } else {
                l.count_le_end(q.hi - 1)
            };
            (0..=last).rev().find_map(fit)
        } else {
            (l.count_le_start(q.lo)..=len).find_map(fit)
        }
    } else {
        // Every array of the node is read: start loading all of it.
        prefetch_lines::<1, INNER_LINES>(n);
        // SAFETY: R1 and the kind tag.
        let inn = unsafe { as_inner(n) };
        let len = inn.len();
        let try_child = |i: usize| {
            let s = inn.slot_summary(i);
            let clo = if i == 0 { lo } else { inn.max(i - 1) };
            let chi = if i + 1 == len { hi } else { s.max };
            let best = s.gap.max(s.min - clo).max(chi - s.max);
            let al = || {
                s.al.max(align_exp_or0(clo, s.min))
                    .max(align_exp_or0(s.max, chi))
            };
            if !q.may_fit(clo, chi, best, al) {
                return None;
            }
            // SAFETY: R1: children of a reachable node are reachable.
            unsafe { find_gap::<V>(inn.child(i), clo, chi, q) }
        };
        // Children entirely outside the window are skipped by counting over
        // `max` (vectorised, two cache lines): child `i` ends its owned space
        // at `max[i]` unless it is the last, and begins it at `max[i - 1]`.
        if q.rev {
            let last = inn.count_lt_max(q.hi).min(len - 1);
            (0..=last).rev().find_map(try_child)
        } else {
            let first = inn.count_le_max(q.lo).min(len - 1);
            (first..len).find_map(try_child)
        }
    }
}

/// Gap search from the root over the whole key space `[0, u64::MAX)`.
///
/// # Safety
/// R1.
pub(crate) unsafe fn find_gap_root<V>(root: *const Header, q: &GapQuery) -> Option<u64> {
    if root.is_null() {
        return q.fit(0, u64::MAX);
    }
    // SAFETY: R1.
    unsafe { find_gap::<V>(root, 0, u64::MAX, q) }
}

/// Double-ended iterator over the entries overlapping `[lo, hi)`.
///
/// It keeps a cursor into the current front and back leaves and re-descends
/// from the root only when a cursor leaves its leaf: amortised O(1) per entry.
pub struct Iter<'a, V> {
    root: *const Header,
    /// Entries ending at or before `lo` were consumed from the front.
    lo: u64,
    /// Entries starting at or after `hi` were consumed from the back.
    hi: u64,
    front: Option<LeafPos<'a, V>>,
    back: Option<LeafPos<'a, V>>,
}

// SAFETY: the iterator only hands out `&V` (needs V: Sync) and reads immutable
// nodes (I6); the raw root pointer is just a snapshot handle.
unsafe impl<V: Sync> Send for Iter<'_, V> {}
// SAFETY: as above; shared access only reads.
unsafe impl<V: Sync> Sync for Iter<'_, V> {}

impl<'a, V> Iter<'a, V> {
    /// # Safety
    /// R1.
    pub(crate) unsafe fn new(root: *const Header, range: Range<u64>) -> Self {
        Self {
            root,
            lo: range.start,
            hi: range.end,
            front: None,
            back: None,
        }
    }
}

impl<'a, V> Iterator for Iter<'a, V> {
    type Item = Entry<'a, V>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.lo >= self.hi {
            return None;
        }
        let pos = match self.front.take() {
            Some(p) if p.idx + 1 < p.leaf.len() => LeafPos {
                leaf: p.leaf,
                idx: p.idx + 1,
            },
            // SAFETY: R1 was established by `Iter::new`'s caller.
            _ => unsafe { next::<V>(self.root, self.lo)? },
        };
        let (r, v) = pos.entry();
        if r.start >= self.hi || r.end <= self.lo {
            self.lo = self.hi;
            return None;
        }
        self.lo = r.end;
        self.front = Some(pos);
        Some((r, v))
    }
}

impl<V> DoubleEndedIterator for Iter<'_, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.lo >= self.hi {
            return None;
        }
        let pos = match self.back.take() {
            Some(p) if p.idx > 0 => LeafPos {
                leaf: p.leaf,
                idx: p.idx - 1,
            },
            // SAFETY: R1 was established by `Iter::new`'s caller.
            _ => unsafe { prev::<V>(self.root, self.hi)? },
        };
        let (r, v) = pos.entry();
        if r.end <= self.lo || r.start >= self.hi {
            self.hi = self.lo;
            return None;
        }
        self.hi = r.start;
        self.back = Some(pos);
        Some((r, v))
    }
}

impl<V> core::iter::FusedIterator for Iter<'_, V> {}

/// The free ranges inside a window, in order (see `ReadGuard::gaps`).
pub struct Gaps<'a, V> {
    entries: Iter<'a, V>,
    pos: u64,
    end: u64,
}

impl<'a, V> Gaps<'a, V> {
    pub(crate) fn new(entries: Iter<'a, V>, within: Range<u64>) -> Self {
        Self {
            entries,
            pos: within.start,
            end: within.end,
        }
    }
}

impl<V> Iterator for Gaps<'_, V> {
    type Item = Range<u64>;

    fn next(&mut self) -> Option<Range<u64>> {
        while self.pos < self.end {
            match self.entries.next() {
                Some((r, _)) => {
                    let gap = self.pos..r.start.min(self.end);
                    self.pos = r.end;
                    if !gap.is_empty() {
                        return Some(gap);
                    }
                }
                None => {
                    let gap = self.pos..self.end;
                    self.pos = self.end;
                    return Some(gap);
                }
            }
        }
        None
    }
}

impl<V> core::iter::FusedIterator for Gaps<'_, V> {}
