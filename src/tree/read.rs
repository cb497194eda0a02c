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

use super::node::{Header, InnerKeys, KIND_LEAF, Keys, Leaf, align_exp_or0, as_inner, as_leaf};
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
        if self.rev {
            self.fit_dir::<true>(fs, fe)
        } else {
            self.fit_dir::<false>(fs, fe)
        }
    }

    /// [`fit`](Self::fit) for the direction `REV` (`== self.rev`).
    #[inline(always)]
    fn fit_dir<const REV: bool>(&self, fs: u64, fe: u64) -> Option<u64> {
        debug_assert_eq!(REV, self.rev);
        let a = fs.max(self.lo);
        let b = fe.min(self.hi);
        if b <= a || b - a < self.size {
            return None;
        }
        let mask = self.align - 1;
        if REV {
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
            && self.in_window(lo, hi)
            && (best - self.size >= self.align - 1
                || self.align.trailing_zeros() <= u32::from(al()))
    }

    /// Does `[lo, hi)` meet the window in at least `size` bytes?
    #[inline(always)]
    fn in_window(&self, lo: u64, hi: u64) -> bool {
        lo < self.hi && hi > self.lo && hi.min(self.hi) - lo.max(self.lo) >= self.size
    }
}

/// Gap search (docs/DESIGN.md §2.4). A subtree reached with bounds `[lo, hi)`
/// owns the free space in front of each of its entries starting at `lo`, plus
/// the space after its last entry up to `hi` (I8). Descends only into children
/// whose owned space can hold `size`; O(height) when `align == 1`.
///
/// # Safety
/// R1 for `n` (non-null).
pub(crate) unsafe fn find_gap<V, const REV: bool>(
    n: *const Header,
    lo: u64,
    hi: u64,
    q: &GapQuery,
    sc: &Scaled,
) -> Option<u64> {
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
            q.fit_dir::<REV>(fs, fe)
        };
        // (Starting at the first interval that meets the window, found by
        // counting over `start`/`end`, measured 10 % slower at 256Ki: it
        // touches the whole key arrays; the rejected intervals cost less.)
        // Intervals ending at or before the window's start (forward), or
        // starting at or after its end (reverse), cannot hold a fit: skip
        // them with one count over the (narrow: 32-bit) keys.
        if REV {
            let last = if q.hi == 0 {
                0
            } else {
                l.count_le_end(q.hi - 1)
            };
            // (Plain loops: a `RangeInclusive` adapter measured slower.)
            let mut k = last + 1;
            while k > 0 {
                k -= 1;
                if let Some(s) = fit(k) {
                    return Some(s);
                }
            }
            None
        } else {
            let mut k = l.count_le_start(q.lo);
            while k <= len {
                if let Some(s) = fit(k) {
                    return Some(s);
                }
                k += 1;
            }
            None
        }
    } else {
        // Every array of the node is read: start loading all of it.
        prefetch_lines::<1, INNER_LINES>(n);
        // SAFETY: R1 and the kind tag.
        let inn = unsafe { as_inner(n) };
        // Children entirely outside the window are skipped by counting over
        // `max` (vectorised, two cache lines): child `i` ends its owned space
        // at `max[i]` unless it is the last, and begins it at `max[i - 1]`.
        let len = inn.len();
        let (first, last) = if REV {
            (0, inn.first_max_ge(q.hi))
        } else {
            (inn.first_max_gt(q.lo), len - 1)
        };
        // The query in this node's scale: its parent's, unless the shift
        // differs (I11; 0 for a wide node, as `InnerKeys` has it).
        let shift = u32::from(inn.hdr.shift);
        let local;
        let sc = if shift == sc.shift {
            sc
        } else {
            local = Scaled::new(q, shift);
            &local
        };
        // SAFETY: R1 passed through for the children; `first <= last < len`.
        unsafe {
            match inn.keys() {
                Keys::Narrow(k) => {
                    InnerStep::new(&k, len, lo, hi, q, sc).run::<V, REV>(first, last)
                }
                Keys::Wide(k) => InnerStep::new(&k, len, lo, hi, q, sc).run::<V, REV>(first, last),
            }
        }
    }
}

/// A query's `size` and `size + align - 1` in units of `2^shift`, rounded
/// up (see [`InnerStep`]), and `log2(align)`: computed for the root's scale
/// and again only where a node's shift differs from its parent's.
pub(crate) struct Scaled {
    shift: u32,
    size_o: u64,
    need_o: u64,
    a: u32,
}

impl Scaled {
    #[inline]
    pub(crate) fn new(q: &GapQuery, shift: u32) -> Self {
        Self {
            shift,
            // `size >= 1` (a valid query).
            size_o: ceil_shr(q.size, shift),
            // Saturated past u64::MAX: no interval is that long, and no
            // stored `best_o` reaches `ceil(u64::MAX / 2^shift)` either
            // (`best_o << shift` is a length below 2^64).
            need_o: ceil_shr(q.size.saturating_add(q.align - 1), shift),
            a: q.align.trailing_zeros(),
        }
    }
}

/// `x / 2^s` rounded up, for `x >= 1` and `s < 64`.
#[inline(always)]
fn ceil_shr(x: u64, s: u32) -> u64 {
    ((x - 1) >> s) + 1
}

/// The inner step of [`find_gap`] over one format's stored keys, compiled
/// once per format and direction (DESIGN §2.4): tries the children in
/// order (reverse order for `_rev`) and descends into those that can hold
/// an answer.
///
/// A child other than the first and the last has bounds that are keys of
/// this node (`[max[i - 1], max[i])`, I8), so its largest owned interval
/// is `best = max(gap[i], min[i] - max[i - 1])`, a multiple of `2^shift`
/// stored as `best_o = best >> shift`. For any `x`, `best >= x` ⟺
/// `best_o >= ceil(x / 2^shift)`, so the size test (`x = size`) and the
/// test that makes the alignment test unnecessary (`x = size + align - 1`)
/// are made exactly on the stored offsets, with `x` scaled once per node
/// (`size_o`, `need_o`). A child that fails the size test is skipped
/// without decoding a key; one that passes it but not `need_o` is then
/// tested on its own gaps' stored exponent `al[i]` and, failing that, on
/// the link interval `[max[i - 1], min[i])` (it owns no space after
/// `max[i]`), decoded; the window test comes last. The first and last
/// children (bounds from the parent) take the plain test on decoded keys.
/// Every test is exact, so the search visits the same subtrees in the same
/// order as with decoded keys.
struct InnerStep<'k, 'q, N> {
    k: &'k N,
    /// Children; at most `N::CAP`, which lets the compiler drop bounds checks.
    len: usize,
    /// The node's bounds (I8).
    lo: u64,
    hi: u64,
    q: &'q GapQuery,
    /// `q` in this node's scale, passed on to the children.
    sc: &'q Scaled,
    base: u64,
    shift: u32,
    size_o: u64,
    need_o: u64,
    /// `log2(align)`.
    a: u32,
}

impl<'k, 'q, N: InnerKeys> InnerStep<'k, 'q, N> {
    #[inline(always)]
    fn new(k: &'k N, len: usize, lo: u64, hi: u64, q: &'q GapQuery, sc: &'q Scaled) -> Self {
        let shift = k.shift();
        debug_assert_eq!(shift, sc.shift);
        Self {
            k,
            len: len.min(N::CAP),
            lo,
            hi,
            q,
            base: k.base(),
            shift,
            sc,
            size_o: sc.size_o,
            need_o: sc.need_o,
            a: sc.a,
        }
    }

    #[inline(always)]
    fn key(&self, o: N::K) -> u64 {
        self.base + (o.into() << self.shift)
    }

    /// The first or last child `i`: bounds from the parent for its first
    /// or last side, the plain test on decoded keys. `Some` of the child's
    /// bounds if it can hold an answer.
    #[inline(always)]
    fn edge(&self, i: usize) -> Option<(u64, u64)> {
        let (k, q, len) = (self.k, self.q, self.len);
        let (mn, mx) = (self.key(k.min_o(i)), self.key(k.max_o(i)));
        let clo = if i == 0 {
            self.lo
        } else {
            self.key(k.max_o(i - 1))
        };
        let chi = if i + 1 == len { self.hi } else { mx };
        let best = (k.gap_o(i).into() << self.shift)
            .max(mn - clo)
            .max(chi - mx);
        let al = || {
            k.al(i)
                .max(align_exp_or0(clo, mn))
                .max(align_exp_or0(mx, chi))
        };
        q.may_fit(clo, chi, best, al).then_some((clo, chi))
    }

    /// A child `i` with `0 < i < len - 1`: the test on stored offsets.
    #[inline(always)]
    fn middle(&self, i: usize) -> Option<(u64, u64)> {
        let (k, q) = (self.k, self.q);
        let (p, m) = (k.max_o(i - 1), k.min_o(i));
        let best_o: u64 = k.gap_o(i).max(m - p).into();
        if best_o < self.size_o {
            return None;
        }
        let clo = self.key(p);
        // A multiple of `2^a` lies in the link `[clo, min[i])` iff
        // `clo - 1` and `min[i] - 1` differ above bit `a - 1` (`clo >= 1`:
        // an entry's end; `a < 64`).
        if best_o < self.need_o
            && u32::from(k.al(i)) < self.a
            && ((clo - 1) ^ (self.key(m) - 1)) >> self.a == 0
        {
            return None;
        }
        let chi = self.key(k.max_o(i));
        q.in_window(clo, chi).then_some((clo, chi))
    }

    /// Can child `i` (`i < len`) hold an answer? `Some` of its bounds if so.
    fn test(&self, i: usize) -> Option<(u64, u64)> {
        if i == 0 || i + 1 == self.len {
            self.edge(i)
        } else {
            self.middle(i)
        }
    }

    /// Descends into child `i` with bounds `b` if the test gave them.
    ///
    /// # Safety
    /// R1 for the node; `i < len`.
    #[inline(always)]
    unsafe fn descend<V, const REV: bool>(&self, i: usize, b: Option<(u64, u64)>) -> Option<u64> {
        let (clo, chi) = b?;
        // SAFETY: R1: children of a reachable node are reachable.
        unsafe { find_gap::<V, REV>(self.k.child(i), clo, chi, self.q, self.sc) }
    }

    /// Children `first..=last` in the search's direction.
    ///
    /// # Safety
    /// R1 for the node; `first <= last < len`.
    #[inline(always)]
    unsafe fn run<V, const REV: bool>(&self, first: usize, last: usize) -> Option<u64> {
        // SAFETY: passed through.
        unsafe {
            if REV {
                self.rev::<V>(first, last)
            } else {
                self.fwd::<V>(first, last)
            }
        }
    }

    /// Children `first..=last`, lowest first, the edge test chosen per child
    /// ([`test`](Self::test)). (Hoisting the edges out of the loop, as
    /// [`rev`](Self::rev) does, ran 93 fewer instructions per forward
    /// 4 KiB search but measured 6 ns slower: 76 -> 82 ns, loaded machine.)
    ///
    /// # Safety
    /// R1 for the node; `first <= last < len`.
    #[inline(always)]
    unsafe fn fwd<V>(&self, first: usize, last: usize) -> Option<u64> {
        // (Plain loops: `RangeInclusive` adapters measured slower here.)
        let end = last.min(self.len - 1) + 1;
        let mut i = first;
        while i < end {
            // SAFETY: R1 passed through; `i <= last < len`.
            if let Some(r) = unsafe { self.descend::<V, false>(i, self.test(i)) } {
                return Some(r);
            }
            i += 1;
        }
        None
    }

    /// Children `first..=last`, highest first. The edge children (`len - 1`,
    /// `0`) are tried outside the loop, so the loop body holds only the
    /// middle test and no per-child edge branch (the verdicts of
    /// [`test`](Self::test)).
    ///
    /// # Safety
    /// R1 for the node; `first <= last < len`.
    #[inline(always)]
    unsafe fn rev<V>(&self, first: usize, last: usize) -> Option<u64> {
        let len = self.len;
        // (No clamp to `len - 1` here: it would sit between the count and
        // the child's address, and `find_gap`'s count already gives it.)
        debug_assert!(first <= last && last < len);
        let top = last;
        // The next child to try is `i - 1`.
        let mut i = top + 1;
        if i == len {
            i = top;
            // SAFETY: R1 passed through; `top < len`.
            if let Some(r) = unsafe { self.descend::<V, true>(top, self.edge(top)) } {
                return Some(r);
            }
        }
        // `1 <= stop <= i - 1 < len - 1` inside the loop: a middle child.
        let stop = first.max(1);
        while i > stop {
            i -= 1;
            // SAFETY: R1 passed through; `first <= i <= top < len`.
            if let Some(r) = unsafe { self.descend::<V, true>(i, self.middle(i)) } {
                return Some(r);
            }
        }
        // Child 0, unless the top edge was child 0 (`len == 1`) or `first > 0`.
        if first == 0 && i > 0 {
            // SAFETY: R1 passed through; `0 < len`.
            return unsafe { self.descend::<V, true>(0, self.edge(0)) };
        }
        None
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
    let sc = Scaled::new(q, 12);
    // SAFETY: R1. (One search per direction: each recursion holds only its
    // own direction's code.)
    unsafe {
        if q.rev {
            find_gap::<V, true>(root, 0, u64::MAX, q, &sc)
        } else {
            find_gap::<V, false>(root, 0, u64::MAX, q, &sc)
        }
    }
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

#[cfg(all(test, not(loom)))]
mod tests {
    //! The gap search's tests on stored offsets (`InnerStep`) against a
    //! plain model, on trees whose narrow inner nodes have shifts other
    //! than 12 and on wide ones: sizes, `size + align - 1` and window
    //! bounds are rounded into each node's scale, so the queries sit at
    //! and next to multiples of the scale and next to free intervals'
    //! lengths.
    use super::super::MapleTree;
    use super::super::node::{Header, Inner, KIND_LEAF, Keys, align_exp_or0, as_inner, as_leaf};
    use super::{GapQuery, InnerStep, Scaled, find_gap};
    use crate::sync::Ordering;
    use alloc::vec::Vec;

    use proptest::prelude::Rng as _;
    use proptest::test_runner::{RngAlgorithm, TestRng};

    /// A deterministic generator (the test is reproducible as it stands).
    struct Rng(TestRng);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0.next_u64() % n
        }
        fn pick<T: Copy>(&mut self, v: &[T]) -> T {
            v[self.below(v.len() as u64) as usize]
        }
    }

    /// The lowest (highest) aligned fit over the free intervals between
    /// the sorted `ranges`, in `[lo, hi)`.
    fn model(
        ranges: &[(u64, u64)],
        size: u64,
        align: u64,
        lo: u64,
        hi: u64,
        rev: bool,
    ) -> Option<u64> {
        let mut free = Vec::new();
        let mut pos = 0;
        for &(s, e) in ranges {
            if pos < s {
                free.push((pos, s));
            }
            pos = e;
        }
        if pos < u64::MAX {
            free.push((pos, u64::MAX));
        }
        let mut fits = free.into_iter().filter_map(|(fs, fe)| {
            let (a, b) = (fs.max(lo), fe.min(hi));
            if b <= a || b - a < size {
                return None;
            }
            if rev {
                let s = (b - size) & !(align - 1);
                (s >= a).then_some(s)
            } else {
                let s = a.checked_next_multiple_of(align)?;
                (s <= b - size).then_some(s)
            }
        });
        if rev { fits.next_back() } else { fits.next() }
    }

    /// `(wide, shift)` of every inner node under `n`.
    fn formats(n: *const Header, out: &mut Vec<(bool, u8)>) {
        // SAFETY: test-only: `n` is a live node of a tree no one writes.
        unsafe {
            if (*n).kind == KIND_LEAF {
                return;
            }
            let inn = as_inner(n);
            out.push((inn.is_wide(), inn.hdr.shift));
            for &c in inn.children() {
                formats(c, out);
            }
        }
    }

    /// `n` ranges at scale `2^s` from an unaligned base: every start, end
    /// and gap a random multiple of `2^s` (lengths 1-16 units, gaps 0-16
    /// units and now and then `big` units), inserted in random order.
    fn build(rng: &mut Rng, n: usize, s: u32, big: u64) -> (MapleTree<u64>, Vec<(u64, u64)>) {
        let unit = 1u64 << s;
        let mut pos = 0x1234_5677u64;
        let mut ranges = Vec::new();
        for _ in 0..n {
            let gap = if rng.below(16) == 0 {
                big
            } else {
                rng.below(17)
            };
            let start = pos + gap * unit;
            let end = start + (1 + rng.below(16)) * unit;
            ranges.push((start, end));
            pos = end;
        }
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let t = MapleTree::new();
        for &i in &order {
            t.insert(ranges[i].0..ranges[i].1, i as u64).unwrap();
        }
        t.validate().unwrap();
        (t, ranges)
    }

    fn check(t: &MapleTree<u64>, ranges: &[(u64, u64)], s: u32, rng: &mut Rng, queries: usize) {
        let unit = 1u64 << s;
        let g = t.pin();
        let keys: Vec<u64> = ranges.iter().flat_map(|&(a, b)| [a, b]).collect();
        for _ in 0..queries {
            let j = rng.below(10);
            let align = match j {
                0 => 1,
                1 => 1 << rng.below(64),
                _ => 1 << (12 + rng.below(19)), // 4 KiB ..= 1 GiB
            };
            // A free interval's length, where `>= size` and
            // `>= size + align - 1` flip.
            let k = rng.below(ranges.len() as u64 - 1) as usize;
            let free = ranges[k + 1].0 - ranges[k].1;
            let m = (1 + rng.below(40)) * unit;
            let size = match rng.below(8) {
                0 => 1 + rng.below(unit.max(2)),
                1 => m,
                2 => m + 1,
                3 => m - 1,
                4 | 5 => free.wrapping_add(rng.pick(&[0, 1, u64::MAX])),
                6 => free
                    .wrapping_sub(align - 1)
                    .wrapping_add(rng.pick(&[0, 1, 2, u64::MAX])),
                _ => 1 + rng.below(1 << (s + 8)),
            }
            .max(1);
            let bound = |rng: &mut Rng| {
                let key = rng.pick(&keys);
                match rng.below(4) {
                    0 => key,
                    1 => key + 1,
                    2 => key - 1,
                    _ => key + rng.below(unit * 8),
                }
            };
            let (lo, hi) = match rng.below(4) {
                0 => (0, u64::MAX),
                1 => (bound(rng), u64::MAX),
                2 => (0, bound(rng)),
                _ => {
                    let (a, b) = (bound(rng), bound(rng));
                    (a.min(b), a.max(b))
                }
            };
            if lo >= hi {
                continue;
            }
            for rev in [false, true] {
                let got = if rev {
                    g.try_find_gap_rev(size, align, lo..hi)
                } else {
                    g.try_find_gap(size, align, lo..hi)
                };
                assert_eq!(
                    got.ok(),
                    model(ranges, size, align, lo, hi, rev),
                    "shift {s}, size {size:#x}, align {align:#x}, {lo:#x}..{hi:#x}, rev {rev}"
                );
            }
        }
    }

    /// The test on decoded keys that `InnerStep::test` must equal.
    fn decoded(inn: &Inner, i: usize, lo: u64, hi: u64, q: &GapQuery) -> Option<(u64, u64)> {
        let len = inn.len();
        let s = inn.slot_summary(i);
        let clo = if i == 0 { lo } else { inn.max(i - 1) };
        let chi = if i + 1 == len { hi } else { s.max };
        let best = s.gap.max(s.min - clo).max(chi - s.max);
        let al = || {
            s.al.max(align_exp_or0(clo, s.min))
                .max(align_exp_or0(s.max, chi))
        };
        q.may_fit(clo, chi, best, al).then_some((clo, chi))
    }

    /// For every inner node under `n` (reached with bounds `[lo, hi)`, I8)
    /// and `queries` queries drawn next to its own children's bounds and
    /// largest intervals, every child's verdict on stored offsets equals
    /// the verdict on decoded keys (so the search visits the same
    /// subtrees: no answer lost, no extra descent). Returns the children
    /// tested.
    fn step_matches(n: *const Header, lo: u64, hi: u64, rng: &mut Rng, queries: usize) -> usize {
        // SAFETY: test-only: `n` is a live node of a tree no one writes.
        let inn = unsafe {
            if (*n).kind == KIND_LEAF {
                return 0;
            }
            as_inner(n)
        };
        let len = inn.len();
        let bounds = |i: usize| {
            let clo = if i == 0 { lo } else { inn.max(i - 1) };
            (clo, if i + 1 == len { hi } else { inn.max(i) })
        };
        let mut tested = 0;
        for _ in 0..queries {
            let j = rng.below(len as u64) as usize;
            let (clo, chi) = bounds(j);
            let s = inn.slot_summary(j);
            let best = s.gap.max(s.min - clo).max(chi - s.max);
            let align = 1u64 << rng.below(64);
            let size = match rng.below(4) {
                0 => best,
                1 => best.wrapping_add(rng.pick(&[1, u64::MAX])),
                2 => best
                    .wrapping_sub(align - 1)
                    .wrapping_add(rng.pick(&[0, 1, u64::MAX])),
                _ => 1 + rng.below(best.max(1).saturating_mul(2)),
            }
            .max(1);
            let at = |rng: &mut Rng| {
                let (a, b) = bounds(rng.below(len as u64) as usize);
                rng.pick(&[
                    a,
                    b,
                    a + 1,
                    b - 1,
                    a.saturating_sub(1),
                    b.saturating_add(1),
                    0,
                    u64::MAX,
                ])
            };
            let (wlo, whi) = (at(rng), at(rng));
            let (wlo, whi) = (wlo.min(whi), wlo.max(whi));
            if wlo >= whi {
                continue;
            }
            let q = GapQuery {
                size,
                align,
                lo: wlo,
                hi: whi,
                rev: rng.below(2) == 0,
            };
            let sc = Scaled::new(&q, u32::from(inn.hdr.shift));
            for i in 0..len {
                let got = match inn.keys() {
                    Keys::Narrow(k) => InnerStep::new(&k, len, lo, hi, &q, &sc).test(i),
                    Keys::Wide(k) => InnerStep::new(&k, len, lo, hi, &q, &sc).test(i),
                };
                assert_eq!(
                    got,
                    decoded(inn, i, lo, hi, &q),
                    "child {i} of {len}, {q:?}"
                );
                tested += 1;
            }
        }
        for i in 0..len {
            let (clo, chi) = bounds(i);
            tested += step_matches(inn.child(i), clo, chi, rng, queries);
        }
        tested
    }

    /// The entries under `n`, in order.
    fn entries(n: *const Header, out: &mut Vec<(u64, u64)>) {
        // SAFETY: test-only: `n` is a live node of a tree no one writes.
        unsafe {
            if (*n).kind == KIND_LEAF {
                let l = as_leaf::<u64>(n);
                out.extend((0..l.len()).map(|j| (l.start(j), l.end(j))));
                return;
            }
            for &c in as_inner(n).children() {
                entries(c, out);
            }
        }
    }

    /// The search started at every inner node `n` with its own bounds
    /// `[lo, hi)` (I8), in both directions, against a model of the free
    /// space that node owns: the loops over children (forward: the edge
    /// test per child; reverse: the top edge, the middles, then child 0,
    /// DESIGN §2.4) must try each candidate child once, in order, including
    /// the first and the last. Windows end at, next to and between the
    /// children's bounds and the node's own, and sizes sit at the owned
    /// intervals' lengths, so that often exactly one child (child 0, the
    /// last child, or the one whose bound the window cuts) holds the
    /// answer. Returns the queries checked.
    fn subtree_matches(n: *const Header, lo: u64, hi: u64, rng: &mut Rng, queries: usize) -> usize {
        // SAFETY: test-only: `n` is a live node of a tree no one writes.
        let inn = unsafe {
            if (*n).kind == KIND_LEAF {
                return 0;
            }
            as_inner(n)
        };
        let len = inn.len();
        let mut under = Vec::new();
        entries(n, &mut under);
        // The owned free intervals (I8): from `lo`, between entries, to `hi`.
        let mut free = Vec::new();
        let mut pos = lo;
        for &(a, b) in &under {
            if pos < a {
                free.push((pos, a));
            }
            pos = b;
        }
        if pos < hi {
            free.push((pos, hi));
        }
        let mut marks = vec![lo, hi];
        for i in 0..len {
            marks.extend([inn.min(i), inn.max(i)]);
        }
        let mut checked = 0;
        for _ in 0..queries {
            let at = |rng: &mut Rng| {
                let m = rng.pick(&marks);
                match rng.below(4) {
                    0 => m.saturating_sub(1),
                    1 => m.saturating_add(1),
                    _ => m,
                }
            };
            let (a, b) = (at(rng), at(rng));
            let (wlo, whi) = match rng.below(4) {
                0 => (lo, a.max(lo + 1)),
                1 => (a.min(hi - 1), hi),
                _ => (a.min(b), a.max(b)),
            };
            if wlo >= whi {
                continue;
            }
            let align = match rng.below(4) {
                0 => 1,
                1 => 1 << rng.below(64),
                _ => 1 << (12 + rng.below(19)),
            };
            let size = if free.is_empty() || rng.below(4) == 0 {
                1 + rng.below(1 << 16)
            } else {
                let (fs, fe) = rng.pick(&free);
                (fe - fs).wrapping_add(rng.pick(&[0, 0, 1, u64::MAX]))
            }
            .max(1);
            for rev in [false, true] {
                let q = GapQuery {
                    size,
                    align,
                    lo: wlo,
                    hi: whi,
                    rev,
                };
                let sc = Scaled::new(&q, u32::from(inn.hdr.shift));
                // SAFETY: R1: `n` is a node of a tree no one writes, with
                // the bounds its parent gives it.
                let got = unsafe {
                    if rev {
                        find_gap::<u64, true>(n, lo, hi, &q, &sc)
                    } else {
                        find_gap::<u64, false>(n, lo, hi, &q, &sc)
                    }
                };
                let want = free.iter().filter_map(|&(fs, fe)| q.fit(fs, fe));
                let want = if rev { want.max() } else { want.min() };
                assert_eq!(
                    got, want,
                    "node of {len} children [{lo:#x}, {hi:#x}), {q:?}"
                );
                checked += 1;
            }
        }
        for i in 0..len {
            let clo = if i == 0 { lo } else { inn.max(i - 1) };
            let chi = if i + 1 == len { hi } else { inn.max(i) };
            checked += subtree_matches(inn.child(i), clo, chi, rng, queries);
        }
        checked
    }

    /// Every inner node, searched on its own (see [`subtree_matches`]), on
    /// small trees (a root of two or three children: no middle child) and
    /// larger ones, narrow and wide.
    #[test]
    fn every_node_searches_its_children_in_order() {
        let mut rng = Rng(TestRng::deterministic_rng(RngAlgorithm::ChaCha));
        for (s, big) in [(12, 1 << 14), (0, 1 << 10), (21, 1 << 9), (12, 1 << 40)] {
            for n in [15, 20, 30, 60, 400, 2000] {
                let (t, _) = build(&mut rng, n, s, big);
                let root = t.root.load(Ordering::Relaxed);
                let checked = subtree_matches(root, 0, u64::MAX, &mut rng, 60);
                assert!(checked > 0 || t.height() == 1, "n {n}: no inner node");
            }
        }
    }

    #[test]
    fn scaled_inner_tests_match_the_model() {
        let mut rng = Rng(TestRng::deterministic_rng(RngAlgorithm::ChaCha));
        // (scale, occasional gap in units, expect a wide node)
        for (s, big, wide) in [
            (0, 1 << 10, false),
            (3, 1 << 12, false),
            (12, 1 << 14, false),
            (13, 1 << 20, false),
            (21, 1 << 9, false),
            (30, 1 << 8, false),
            (0, 1 << 34, true),
            (12, 1 << 40, true),
        ] {
            for n in [40, 700, 3000] {
                let (t, ranges) = build(&mut rng, n, s, big);
                let mut f = Vec::new();
                formats(t.root.load(Ordering::Relaxed), &mut f);
                if n > 40 {
                    // The scale the keys were drawn at is some node's shift
                    // (narrow), or some node is wide.
                    assert!(
                        f.iter()
                            .any(|&(w, sh)| if wide { w } else { !w && u32::from(sh) == s }),
                        "scale {s}: {f:?}"
                    );
                }
                check(&t, &ranges, s, &mut rng, 3000);
                let root = t.root.load(Ordering::Relaxed);
                assert!(step_matches(root, 0, u64::MAX, &mut rng, 1000) > 0 || n <= 40);
            }
        }
    }
}
