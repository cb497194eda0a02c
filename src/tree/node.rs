//! Node layout (docs/DESIGN.md §2.1).
//!
//! Two node kinds, 64-byte aligned, both starting with the same [`Header`]
//! so a `*mut Header` can be cast to the right kind after reading `kind`:
//!
//! ```text
//! Leaf<V>, narrow: header(16) | base | start[14]: u32 | end[14]: u32 | val[14] = 248 B
//! Leaf<V>, wide  : header(16) | start[10] | end[10] | val[10]                  = 256 B
//! Inner          : header(16) | min[7] | child[7] | max[7] | gap[7] | al[7] | pad = 256 B
//! ```
//!
//! The inner node's arrays are ordered for `get`: its scan over `min` and
//! the chosen `child` lie in the first two cache lines. (512-byte inner
//! nodes of fan-out 15 were tried for issue 12: height 8 -> 6 at 1Mi, but
//! lookups measured slower; docs/DESIGN.md §2.1.)
//!
//! A leaf holds entries `start(j)..end(j) -> *val(j)`, sorted and
//! non-overlapping (I2): up to 14 as 32-bit offsets from a base when their
//! span allows, else up to 10 with 64-bit keys (I10, [`Leaf`]). An inner node holds, for each child `i`, the
//! child's *summary*: `min[i]` (first start in the subtree), `max[i]` (last end)
//! and `gap[i]` (largest free gap strictly between two entries of the subtree)
//! (I3). Unused key slots hold `u64::MAX` and unused pointers are null (I5), so
//! the pivot scans below run over the full fixed-size arrays without a length
//! check in the loop (branch-free, auto-vectorised).
//!
//! Nodes are immutable once published (I6): a writer copies a node before
//! changing it unless the node was created by the writer's own transaction
//! (`hdr.txn == txn`), which no reader can have seen.

use crate::sync::LiveCell;
use alloc::vec::Vec;
use core::alloc::Layout;
use core::ptr;

/// Entries per wide leaf (64-bit keys): the capacity every leaf has,
/// whatever its keys.
#[cfg(not(loom))]
pub(crate) const LEAF_CAP: usize = 10;
/// Entries per narrow leaf (32-bit offsets from a per-leaf base), used when
/// the leaf's span `end[n - 1] - start[0]` fits in 32 bits.
#[cfg(not(loom))]
pub(crate) const NARROW_CAP: usize = 14;
/// Children per inner node.
#[cfg(not(loom))]
pub(crate) const INNER_CAP: usize = 7;
// Under loom, tiny nodes so that splits and merges happen within a few operations.
#[cfg(loom)]
pub(crate) const LEAF_CAP: usize = 3;
#[cfg(loom)]
pub(crate) const NARROW_CAP: usize = 3;
#[cfg(loom)]
pub(crate) const INNER_CAP: usize = 3;

/// Minimum entries of a non-root leaf (I1).
pub(crate) const LEAF_MIN: usize = LEAF_CAP / 2;
/// Minimum children of a non-root inner node (I1).
pub(crate) const INNER_MIN: usize = if INNER_CAP / 2 < 2 { 2 } else { INNER_CAP / 2 };

pub(crate) const KIND_LEAF: u8 = 0;
pub(crate) const KIND_INNER: u8 = 1;

/// Common prefix of both node kinds.
#[repr(C)]
pub(crate) struct Header {
    /// The write transaction that allocated this node (I6).
    pub(crate) txn: u64,
    pub(crate) kind: u8,
    pub(crate) len: u8,
    /// A leaf's format: 64-bit keys (`true`) or 32-bit offsets (`false`);
    /// `false` for inner nodes. See [`Leaf`].
    pub(crate) wide: bool,
    /// loom-only liveness marker (see `sync::LiveCell`).
    pub(crate) live: LiveCell,
}

impl Header {
    fn new(kind: u8, txn: u64) -> Self {
        Self {
            txn,
            kind,
            len: 0,
            wide: false,
            live: LiveCell::new(),
        }
    }
}

/// A leaf node, in one of two formats chosen by its contents (I10):
/// *narrow* (`hdr.wide == false`) when `end[n - 1] - start[0] < 2^32`:
/// a 64-bit base (`start[0]`) and up to `NARROW_CAP` (14) entries stored as
/// 32-bit offsets from it; else *wide*: up to `LEAF_CAP` (10) entries with
/// 64-bit keys. Both formats are 256 bytes; entries are read through
/// [`Leaf::start`], [`Leaf::end`], [`Leaf::val`] and the counting searches.
#[repr(C, align(64))]
pub(crate) struct Leaf<V> {
    pub(crate) hdr: Header,
    body: LeafBody<V>,
}

/// The two leaf formats; `hdr.wide` says which one is initialised.
#[repr(C)]
union LeafBody<V> {
    narrow: Narrow<V>,
    wide: Wide<V>,
}

#[repr(C)]
struct Narrow<V> {
    base: u64,
    start: [u32; NARROW_CAP],
    end: [u32; NARROW_CAP],
    val: [*mut V; NARROW_CAP],
}

#[repr(C)]
struct Wide<V> {
    start: [u64; LEAF_CAP],
    end: [u64; LEAF_CAP],
    val: [*mut V; LEAF_CAP],
}

// Plain data for every `V` (the values are behind raw pointers), as a union
// field must be; `derive` would demand `V: Copy`.
impl<V> Clone for Narrow<V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<V> Copy for Narrow<V> {}
impl<V> Clone for Wide<V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<V> Copy for Wide<V> {}

/// One leaf entry: `start..end -> *val`.
pub(crate) type LeafItem<V> = (u64, u64, *mut V);

/// Can one leaf hold `items` (sorted, non-overlapping)? Up to `LEAF_CAP`
/// always; up to `NARROW_CAP` when their span fits 32-bit offsets.
#[inline]
pub(crate) fn leaf_fits<V>(items: &[LeafItem<V>]) -> bool {
    let n = items.len();
    n <= LEAF_CAP || (n <= NARROW_CAP && narrow_span(items))
}

/// Does the span of the non-empty `items` fit the narrow format?
#[inline]
fn narrow_span<V>(items: &[LeafItem<V>]) -> bool {
    match (items.first(), items.last()) {
        (Some(f), Some(l)) => l.1 - f.0 <= u64::from(u32::MAX),
        _ => true,
    }
}

/// An inner node.
#[repr(C, align(64))]
pub(crate) struct Inner {
    pub(crate) hdr: Header,
    pub(crate) min: [u64; INNER_CAP],
    pub(crate) child: [*mut Header; INNER_CAP],
    pub(crate) max: [u64; INNER_CAP],
    pub(crate) gap: [u64; INNER_CAP],
    /// Per child, the alignment exponent of its internal gaps (see
    /// [`Summary::al`]); `u8::MAX` in unused slots (I5).
    pub(crate) al: [u8; INNER_CAP],
}

const _: () = assert!(NARROW_CAP >= LEAF_CAP);

#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<Leaf<u64>>() == 256);
    assert!(size_of::<Leaf<[u8; 1000]>>() == 256);
    assert!(size_of::<Inner>() == 256);
    assert!(size_of::<Narrow<u64>>() <= 240 && size_of::<Wide<u64>>() == 240);
    assert!(align_of::<Inner>() == 64);
    assert!(align_of::<Leaf<u64>>() == 64);
    // `get` reads `min` and one `child`: both in the first two cache lines.
    assert!(core::mem::offset_of!(Inner, max) <= 128);
};

/// A subtree's augmentation (I3): first start, last end, largest inner gap,
/// and the largest alignment exponent of an inner gap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Summary {
    pub(crate) min: u64,
    pub(crate) max: u64,
    pub(crate) gap: u64,
    /// `max(align_exp(g))` over the free intervals `g` strictly between two
    /// entries of the subtree (0 if there is none): an aligned search for
    /// `align > 1 << al` cannot succeed inside them (docs/DESIGN.md §2.4).
    pub(crate) al: u8,
}

/// The alignment exponent of the non-empty free interval `[fs, fe)`: the
/// largest `k` such that some multiple of `2^k` lies in `[fs, fe - 1]` (64
/// when `fs == 0`). An aligned start at `align = 2^a` exists in the
/// interval only if `a <= k`; a free interval therefore holds a fit of
/// `(size, align)` only if `fe - fs >= size` and `log2(align) <= k`.
/// For `fs >= 1`, the multiple is the prefix `fs - 1` and `fe - 1` share,
/// followed by the first bit where they differ (set) and zeros.
#[inline(always)]
pub(crate) fn align_exp(fs: u64, fe: u64) -> u8 {
    debug_assert!(fs < fe);
    if fs == 0 {
        64
    } else {
        (63 - ((fs - 1) ^ (fe - 1)).leading_zeros()) as u8
    }
}

/// `align_exp_or0(fs, fe)` for `fs >= 1`, without a branch: for an empty
/// interval the xor is 0 and the result 0, as `align_exp_or0` gives.
#[inline(always)]
pub(crate) fn link_exp(fs: u64, fe: u64) -> u8 {
    debug_assert!(fs >= 1 && fs <= fe);
    (64 - ((fs - 1) ^ (fe - 1)).leading_zeros()).saturating_sub(1) as u8
}

/// `align_exp` of `[fs, fe)`, or 0 when it is empty (no contribution).
#[inline(always)]
pub(crate) fn align_exp_or0(fs: u64, fe: u64) -> u8 {
    if fs < fe { align_exp(fs, fe) } else { 0 }
}

/// Number of `keys[k] <= x` over the whole array, clamped to `len`.
/// Unused slots hold `u64::MAX` (I5); the clamp covers `x == u64::MAX`.
#[inline(always)]
pub(crate) fn count_le<T: Copy + PartialOrd, const N: usize>(
    keys: &[T; N],
    len: usize,
    x: T,
) -> usize {
    let mut c = 0;
    for &k in keys {
        c += (k <= x) as usize;
    }
    c.min(len)
}

/// Number of `keys[k] < x` over the whole array (unused slots never count).
#[inline(always)]
pub(crate) fn count_lt<T: Copy + PartialOrd, const N: usize>(
    keys: &[T; N],
    len: usize,
    x: T,
) -> usize {
    let mut c = 0;
    for &k in keys {
        c += (k < x) as usize;
    }
    c.min(len)
}

impl<V> Leaf<V> {
    /// An empty (narrow) leaf.
    pub(crate) fn new(txn: u64) -> Self {
        Self {
            hdr: Header::new(KIND_LEAF, txn),
            body: LeafBody {
                narrow: Narrow {
                    base: 0,
                    start: [u32::MAX; NARROW_CAP],
                    end: [u32::MAX; NARROW_CAP],
                    val: [ptr::null_mut(); NARROW_CAP],
                },
            },
        }
    }

    #[inline(always)]
    pub(crate) fn len(&self) -> usize {
        self.hdr.len as usize
    }

    /// Is this leaf in the wide (64-bit key) format?
    #[inline(always)]
    pub(crate) fn is_wide(&self) -> bool {
        self.hdr.wide
    }

    /// The narrow body, if that is the format.
    #[inline(always)]
    fn narrow(&self) -> Option<&Narrow<V>> {
        if self.hdr.wide {
            None
        } else {
            // SAFETY: `hdr.wide` names the initialised union field (I10); every
            // writer (`new`, `set_items`, a block copy with its header) keeps
            // the two in step.
            Some(unsafe { &self.body.narrow })
        }
    }

    /// The narrow body, mutable, if that is the format.
    #[inline(always)]
    fn narrow_mut(&mut self) -> Option<&mut Narrow<V>> {
        if self.hdr.wide {
            None
        } else {
            // SAFETY: as in `narrow`.
            Some(unsafe { &mut self.body.narrow })
        }
    }

    /// The wide body (only when `hdr.wide`).
    #[inline(always)]
    fn wide(&self) -> &Wide<V> {
        debug_assert!(self.hdr.wide);
        // SAFETY: as in `narrow`; callers check `hdr.wide` first.
        unsafe { &self.body.wide }
    }

    /// Slots this leaf's format holds.
    #[inline(always)]
    pub(crate) fn cap(&self) -> usize {
        if self.hdr.wide { LEAF_CAP } else { NARROW_CAP }
    }

    /// Start of entry `j` (`j < len`).
    #[inline(always)]
    pub(crate) fn start(&self, j: usize) -> u64 {
        match self.narrow() {
            Some(n) => n.base + u64::from(n.start[j]),
            None => self.wide().start[j],
        }
    }

    /// End of entry `j` (`j < len`).
    #[inline(always)]
    pub(crate) fn end(&self, j: usize) -> u64 {
        match self.narrow() {
            Some(n) => n.base + u64::from(n.end[j]),
            None => self.wide().end[j],
        }
    }

    /// Value of entry `j` (`j < len`; null past `len`, I5).
    #[inline(always)]
    pub(crate) fn val(&self, j: usize) -> *mut V {
        match self.narrow() {
            Some(n) => n.val[j],
            None => self.wide().val[j],
        }
    }

    /// The used value slots.
    #[inline]
    pub(crate) fn vals(&self) -> &[*mut V] {
        let n = self.len();
        match self.narrow() {
            Some(b) => &b.val[..n],
            None => &self.wide().val[..n],
        }
    }

    /// `x` as an offset from a narrow leaf's base, saturated at `u32::MAX`
    /// (exact for every comparison with a stored offset: those are at most
    /// `u32::MAX`); `None` when `x` lies below the base.
    #[inline(always)]
    fn rel(b: &Narrow<V>, x: u64) -> Option<u32> {
        x.checked_sub(b.base)
            .map(|d| u32::try_from(d).unwrap_or(u32::MAX))
    }

    /// Number of entries with `start <= x`.
    #[inline(always)]
    pub(crate) fn count_le_start(&self, x: u64) -> usize {
        match self.narrow() {
            Some(b) => Self::rel(b, x).map_or(0, |r| count_le(&b.start, self.len(), r)),
            None => count_le(&self.wide().start, self.len(), x),
        }
    }

    /// Number of entries with `start < x`.
    #[inline(always)]
    pub(crate) fn count_lt_start(&self, x: u64) -> usize {
        match self.narrow() {
            Some(b) => Self::rel(b, x).map_or(0, |r| count_lt(&b.start, self.len(), r)),
            None => count_lt(&self.wide().start, self.len(), x),
        }
    }

    /// Number of entries with `end <= x`.
    #[inline(always)]
    pub(crate) fn count_le_end(&self, x: u64) -> usize {
        match self.narrow() {
            Some(b) => Self::rel(b, x).map_or(0, |r| count_le(&b.end, self.len(), r)),
            None => count_le(&self.wide().end, self.len(), x),
        }
    }

    /// The entry containing `x`.
    #[inline(always)]
    pub(crate) fn find(&self, x: u64) -> Option<usize> {
        let n = self.len();
        match self.narrow() {
            Some(b) => {
                let r = Self::rel(b, x)?;
                let j = count_le(&b.start, n, r).checked_sub(1)?;
                (r < b.end[j]).then_some(j)
            }
            None => {
                let w = self.wide();
                let j = count_le(&w.start, n, x).checked_sub(1)?;
                (x < w.end[j]).then_some(j)
            }
        }
    }

    /// Replaces the entries with `items` (sorted, non-overlapping, and
    /// [`leaf_fits`]) in the format they call for (I10), with the sentinel
    /// in every unused slot (I5).
    pub(crate) fn set_items(&mut self, items: &[LeafItem<V>]) {
        let n = items.len();
        assert!(leaf_fits(items), "{n} entries do not fit one leaf");
        if n <= NARROW_CAP && narrow_span(items) {
            let base = items.first().map_or(0, |f| f.0);
            let mut b = Narrow {
                base,
                start: [u32::MAX; NARROW_CAP],
                end: [u32::MAX; NARROW_CAP],
                val: [ptr::null_mut(); NARROW_CAP],
            };
            for (j, &(s, e, v)) in items.iter().enumerate() {
                // In range: narrow_span bounds every end - base.
                b.start[j] = (s - base) as u32;
                b.end[j] = (e - base) as u32;
                b.val[j] = v;
            }
            self.body.narrow = b;
            self.hdr.wide = false;
        } else {
            let mut b = Wide {
                start: [u64::MAX; LEAF_CAP],
                end: [u64::MAX; LEAF_CAP],
                val: [ptr::null_mut(); LEAF_CAP],
            };
            for (j, &(s, e, v)) in items.iter().enumerate() {
                (b.start[j], b.end[j], b.val[j]) = (s, e, v);
            }
            self.body.wide = b;
            self.hdr.wide = true;
        }
        self.hdr.len = n as u8;
    }

    /// The entries, decoded into `buf`; returns how many.
    #[inline]
    fn decode(&self, buf: &mut [LeafItem<V>; NARROW_CAP + 1]) -> usize {
        let n = self.len();
        let slots = buf.iter_mut().enumerate().take(n);
        match self.narrow() {
            Some(b) => slots.for_each(|(j, slot)| {
                *slot = (
                    b.base + u64::from(b.start[j]),
                    b.base + u64::from(b.end[j]),
                    b.val[j],
                );
            }),
            None => {
                let w = self.wide();
                slots.for_each(|(j, slot)| *slot = (w.start[j], w.end[j], w.val[j]));
            }
        }
        n
    }

    /// Whether the unused slots hold the sentinel of the leaf's format (I5)
    /// and a narrow leaf's base is its first start (I10: offset 0).
    pub(crate) fn sentinels_ok(&self) -> bool {
        let n = self.len();
        match self.narrow() {
            Some(b) => {
                (n == 0 || b.start[0] == 0)
                    && (n..NARROW_CAP).all(|j| {
                        b.start[j] == u32::MAX && b.end[j] == u32::MAX && b.val[j].is_null()
                    })
            }
            None => {
                let w = self.wide();
                (n..LEAF_CAP)
                    .all(|j| w.start[j] == u64::MAX && w.end[j] == u64::MAX && w.val[j].is_null())
            }
        }
    }

    pub(crate) fn summary(&self) -> Summary {
        let n = self.len();
        debug_assert!(n > 0);
        match self.narrow() {
            Some(b) => summary_of(
                n,
                |j| b.base + u64::from(b.start[j]),
                |j| b.base + u64::from(b.end[j]),
            ),
            None => {
                let w = self.wide();
                summary_of(n, |j| w.start[j], |j| w.end[j])
            }
        }
    }
}

impl<V> Leaf<V> {
    /// This leaf's summary after entry `pos` was inserted (nothing else
    /// changed), given its summary `before`: O(1) unless the free interval
    /// the new entry split may have been the only one to reach the old
    /// largest gap or exponent (as `Inner::summary_after`, §2.5).
    pub(crate) fn summary_after_insert(&self, pos: usize, before: Summary) -> Summary {
        let n = self.len();
        debug_assert!(n >= 2 && pos < n);
        let (mut gap, mut al) = (before.gap, before.al);
        if pos > 0 && pos + 1 < n {
            // [end(pos - 1), start(pos + 1)) was split in two smaller
            // intervals (whose gaps and exponents are no larger).
            let (e, s) = (self.end(pos - 1), self.start(pos + 1));
            if s - e >= before.gap || link_exp(e, s) >= before.al {
                return self.summary();
            }
        } else {
            // A new interval at one edge; none was lost.
            let (e, s) = if pos == 0 {
                (self.end(0), self.start(1))
            } else {
                (self.end(n - 2), self.start(n - 1))
            };
            gap = gap.max(s - e);
            al = al.max(link_exp(e, s));
        }
        Summary {
            min: self.start(0),
            max: self.end(n - 1),
            gap,
            al,
        }
    }

    /// The summary this leaf will have once entry `pos` is removed, given
    /// its summary `before` (call before removing; needs two entries or
    /// more): O(1) except when the removed entry was at an edge and the
    /// interval that goes with it may have been the only one to reach the
    /// largest gap or exponent (`None`: recompute after the removal).
    pub(crate) fn summary_after_remove(&self, pos: usize, before: Summary) -> Option<Summary> {
        let n = self.len();
        debug_assert!(n >= 2 && pos < n);
        let (mut gap, mut al) = (before.gap, before.al);
        if pos > 0 && pos + 1 < n {
            // Two intervals merge into one containing both.
            let (e, s) = (self.end(pos - 1), self.start(pos + 1));
            gap = gap.max(s - e);
            al = al.max(link_exp(e, s));
        } else {
            let (e, s) = if pos == 0 {
                (self.end(0), self.start(1))
            } else {
                (self.end(n - 2), self.start(n - 1))
            };
            if s - e >= before.gap || link_exp(e, s) >= before.al {
                return None;
            }
        }
        Some(Summary {
            min: self.start(usize::from(pos == 0)),
            max: self.end(n - 1 - usize::from(pos + 1 == n)),
            gap,
            al,
        })
    }
}

/// `Leaf::summary` over one format's key accessors.
#[inline(always)]
fn summary_of(n: usize, start: impl Fn(usize) -> u64, end: impl Fn(usize) -> u64) -> Summary {
    let mut gap = 0;
    let mut al = 0;
    // Ends are >= 1 (I2: `start < end`), so `link_exp` applies.
    for j in 1..n {
        let (e, s) = (end(j - 1), start(j));
        gap = gap.max(s - e);
        al = al.max(link_exp(e, s));
    }
    Summary {
        min: start(0),
        max: end(n - 1),
        gap,
        al,
    }
}

impl Inner {
    pub(crate) fn new(txn: u64) -> Self {
        Self {
            hdr: Header::new(KIND_INNER, txn),
            min: [u64::MAX; INNER_CAP],
            child: [ptr::null_mut(); INNER_CAP],
            max: [u64::MAX; INNER_CAP],
            gap: [u64::MAX; INNER_CAP],
            al: [u8::MAX; INNER_CAP],
        }
    }

    #[inline(always)]
    pub(crate) fn len(&self) -> usize {
        self.hdr.len as usize
    }

    pub(crate) fn summary(&self) -> Summary {
        let n = self.len();
        debug_assert!(n > 0);
        let mut gap = self.gap[0];
        let mut al = self.al[0];
        // No data-dependent branch: the link gaps between children are
        // never at address 0 (`max[i - 1] >= 1`), so `link_exp` applies.
        for i in 1..n {
            gap = gap.max(self.gap[i]).max(self.min[i] - self.max[i - 1]);
            al = al
                .max(self.al[i])
                .max(link_exp(self.max[i - 1], self.min[i]));
        }
        Summary {
            min: self.min[0],
            max: self.max[n - 1],
            gap,
            al,
        }
    }
}

impl Inner {
    /// The summary of child `i`'s slot.
    #[inline(always)]
    pub(crate) fn slot_summary(&self, i: usize) -> Summary {
        Summary {
            min: self.min[i],
            max: self.max[i],
            gap: self.gap[i],
            al: self.al[i],
        }
    }

    /// This node's summary after slot `i` changed from `was` to its current
    /// contents, given the node's summary `before` that change (nothing else
    /// changed): O(1) instead of a pass over every child, whenever the
    /// largest gap and alignment exponent were attained by something that did
    /// not change. Exact: a changed quantity (child `i`'s gap and exponent,
    /// and the link gaps on either side of it) whose old value reached the
    /// old maximum may have been the only one to, so then it recomputes.
    pub(crate) fn summary_after(&self, i: usize, was: Summary, before: Summary) -> Summary {
        let n = self.len();
        let now = self.slot_summary(i);
        let (mut gap, mut al) = (before.gap, before.al);
        let mut exact = true;
        let mut changed = |old_gap: u64, new_gap: u64, old_al: u8, new_al: u8| {
            exact &= old_gap < before.gap && old_al < before.al;
            gap = gap.max(new_gap);
            al = al.max(new_al);
        };
        changed(was.gap, now.gap, was.al, now.al);
        if i > 0 && was.min != now.min {
            let m = self.max[i - 1];
            changed(
                was.min - m,
                now.min - m,
                link_exp(m, was.min),
                link_exp(m, now.min),
            );
        }
        if i + 1 < n && was.max != now.max {
            let m = self.min[i + 1];
            changed(
                m - was.max,
                m - now.max,
                link_exp(was.max, m),
                link_exp(now.max, m),
            );
        }
        if !exact {
            return self.summary();
        }
        Summary {
            min: self.min[0],
            max: self.max[n - 1],
            gap,
            al,
        }
    }
}

/// Uniform slot access to both node kinds, so that insertion, removal,
/// splitting, merging and redistribution are written once (write.rs).
///
/// How many slots a node holds may depend on its contents (a leaf holds 14
/// entries when their span fits 32-bit offsets, else 10: I10), so writers
/// ask [`Slots::fits`] rather than compare with a constant.
pub(crate) trait Slots {
    /// One slot's contents.
    type Item: Copy;
    /// Slots a node holds whatever they contain.
    const CAP: usize;
    /// Most slots a node can hold (`CAP` for inner nodes; `NARROW_CAP` for
    /// a leaf whose keys allow it).
    const MAX: usize;
    const MIN: usize;
    fn len(&self) -> usize;
    fn item(&self, i: usize) -> Self::Item;
    /// Can one node of this kind hold `items` (in key order)?
    fn fits(items: &[Self::Item]) -> bool;
    /// Replaces the contents with `items` (which [`Slots::fits`]) and resets
    /// every slot past them to the sentinel (I5).
    fn set_items(&mut self, items: &[Self::Item]);
    fn summary(&self) -> Summary;

    /// Inserts `it` at `pos` if the result fits; else returns false and
    /// changes nothing.
    fn insert_item(&mut self, pos: usize, it: Self::Item) -> bool;

    /// Removes and returns slot `pos`, shifting left.
    fn remove_item(&mut self, pos: usize) -> Self::Item;

    /// Appends every slot of `other` (merge) if the result fits; else
    /// returns false and changes nothing.
    fn append_from(&mut self, other: &Self) -> bool;
}

/// Where to cut `items` into a left and a right node: both must fit and
/// hold at least `MIN` slots; among such cuts, the one nearest the middle
/// (the larger half left). `None` if there is none.
pub(crate) fn split_point<N: Slots>(items: &[N::Item]) -> Option<usize> {
    let n = items.len();
    let mid = n.div_ceil(2);
    let ok =
        |k: usize| k >= N::MIN && n - k >= N::MIN && N::fits(&items[..k]) && N::fits(&items[k..]);
    (0..=mid.max(n - mid)).find_map(|d| {
        if mid >= d && ok(mid - d) {
            Some(mid - d)
        } else if d > 0 && mid + d <= n && ok(mid + d) {
            Some(mid + d)
        } else {
            None
        }
    })
}

/// Puts `items[..k]` in `left` and the rest in `right` (`k` from
/// [`split_point`]).
pub(crate) fn distribute<N: Slots>(items: &[N::Item], k: usize, left: &mut N, right: &mut N) {
    left.set_items(&items[..k]);
    right.set_items(&items[k..]);
}

/// All slots of `a` then `b`, with `extra` inserted at its position.
pub(crate) fn gather<N: Slots>(
    a: &N,
    b: Option<&N>,
    extra: Option<(usize, N::Item)>,
) -> Vec<N::Item> {
    let mut v = Vec::with_capacity(2 * NARROW_CAP.max(INNER_CAP) + 2);
    v.extend((0..a.len()).map(|k| a.item(k)));
    if let Some(b) = b {
        v.extend((0..b.len()).map(|k| b.item(k)));
    }
    if let Some((pos, it)) = extra {
        v.insert(pos, it);
    }
    v
}

impl<V> Slots for Leaf<V> {
    type Item = LeafItem<V>;
    const CAP: usize = LEAF_CAP;
    const MAX: usize = NARROW_CAP;
    const MIN: usize = LEAF_MIN;
    #[inline]
    fn len(&self) -> usize {
        self.hdr.len as usize
    }
    #[inline]
    fn item(&self, i: usize) -> Self::Item {
        (self.start(i), self.end(i), self.val(i))
    }
    fn fits(items: &[Self::Item]) -> bool {
        leaf_fits(items)
    }
    fn set_items(&mut self, items: &[Self::Item]) {
        Leaf::set_items(self, items);
    }
    fn summary(&self) -> Summary {
        Leaf::summary(self)
    }
    fn insert_item(&mut self, pos: usize, it: Self::Item) -> bool {
        let n = self.len();
        // In place when the format and base stay (I10): a narrow leaf with
        // room gaining a key after its first whose end fits the offsets.
        if pos > 0
            && n < NARROW_CAP
            && let Some(b) = self.narrow_mut()
            && it.1 - b.base <= u64::from(u32::MAX)
        {
            b.start.copy_within(pos..n, pos + 1);
            b.end.copy_within(pos..n, pos + 1);
            b.val.copy_within(pos..n, pos + 1);
            // In range: it.0 > start[0] = base, and it.1 was checked.
            b.start[pos] = (it.0 - b.base) as u32;
            b.end[pos] = (it.1 - b.base) as u32;
            b.val[pos] = it.2;
            self.hdr.len += 1;
            return true;
        }
        if n == NARROW_CAP.max(LEAF_CAP) {
            return false;
        }
        let mut buf = [(0, 0, ptr::null_mut()); NARROW_CAP + 1];
        self.decode(&mut buf);
        buf.copy_within(pos..n, pos + 1);
        buf[pos] = it;
        if !leaf_fits(&buf[..=n]) {
            return false;
        }
        self.set_items(&buf[..=n]);
        true
    }
    fn remove_item(&mut self, pos: usize) -> Self::Item {
        let n = self.len();
        // In place: the base stays and the span only shrinks (I10).
        if pos > 0
            && let Some(b) = self.narrow_mut()
        {
            let it = (
                b.base + u64::from(b.start[pos]),
                b.base + u64::from(b.end[pos]),
                b.val[pos],
            );
            b.start.copy_within(pos + 1..n, pos);
            b.end.copy_within(pos + 1..n, pos);
            b.val.copy_within(pos + 1..n, pos);
            (b.start[n - 1], b.end[n - 1], b.val[n - 1]) = (u32::MAX, u32::MAX, ptr::null_mut());
            self.hdr.len -= 1;
            return it;
        }
        let mut buf = [(0, 0, ptr::null_mut()); NARROW_CAP + 1];
        let n = self.decode(&mut buf);
        let it = buf[pos];
        buf.copy_within(pos + 1..n, pos);
        // Fewer entries over a span no wider: still fits.
        self.set_items(&buf[..n - 1]);
        it
    }
    fn append_from(&mut self, other: &Self) -> bool {
        let (n, m) = (self.len(), other.len());
        if n + m > NARROW_CAP.max(LEAF_CAP) {
            return false;
        }
        let mut buf = [(0, 0, ptr::null_mut()); NARROW_CAP + 1];
        self.decode(&mut buf);
        for k in 0..m {
            buf[n + k] = other.item(k);
        }
        if !leaf_fits(&buf[..n + m]) {
            return false;
        }
        self.set_items(&buf[..n + m]);
        true
    }
}

impl Inner {
    /// Writes slot `i` without changing the length.
    #[inline]
    pub(crate) fn put(&mut self, i: usize, it: <Inner as Slots>::Item) {
        (
            self.min[i],
            self.max[i],
            self.gap[i],
            self.al[i],
            self.child[i],
        ) = it;
    }

    /// Sets the length and resets every slot at or past it to the sentinel (I5).
    pub(crate) fn truncate(&mut self, n: usize) {
        for i in n..INNER_CAP {
            self.put(i, (u64::MAX, u64::MAX, u64::MAX, u8::MAX, ptr::null_mut()));
        }
        self.set_len(n);
    }

    #[inline]
    pub(crate) fn set_len(&mut self, n: usize) {
        self.hdr.len = n as u8;
    }
}

impl Slots for Inner {
    type Item = (u64, u64, u64, u8, *mut Header);
    const CAP: usize = INNER_CAP;
    const MAX: usize = INNER_CAP;
    const MIN: usize = INNER_MIN;
    #[inline]
    fn len(&self) -> usize {
        self.hdr.len as usize
    }
    #[inline]
    fn item(&self, i: usize) -> Self::Item {
        (
            self.min[i],
            self.max[i],
            self.gap[i],
            self.al[i],
            self.child[i],
        )
    }
    fn fits(items: &[Self::Item]) -> bool {
        items.len() <= INNER_CAP
    }
    fn set_items(&mut self, items: &[Self::Item]) {
        for (k, &it) in items.iter().enumerate() {
            self.put(k, it);
        }
        self.truncate(items.len());
    }
    fn summary(&self) -> Summary {
        Inner::summary(self)
    }
    fn insert_item(&mut self, pos: usize, it: Self::Item) -> bool {
        let n = self.len();
        if n == INNER_CAP {
            return false;
        }
        debug_assert!(pos <= n);
        for k in (pos..n).rev() {
            let x = self.item(k);
            self.put(k + 1, x);
        }
        self.put(pos, it);
        self.set_len(n + 1);
        true
    }
    fn remove_item(&mut self, pos: usize) -> Self::Item {
        let n = self.len();
        let it = self.item(pos);
        for k in pos + 1..n {
            let x = self.item(k);
            self.put(k - 1, x);
        }
        self.truncate(n - 1);
        it
    }
    fn append_from(&mut self, other: &Self) -> bool {
        let (n, m) = (self.len(), other.len());
        if n + m > INNER_CAP {
            return false;
        }
        for k in 0..m {
            self.put(n + k, other.item(k));
        }
        self.set_len(n + m);
        true
    }
}

impl Inner {
    /// Points slot `i` at `child` with its summary.
    pub(crate) fn set(&mut self, i: usize, child: *mut Header, s: Summary) {
        self.put(i, inner_item(child, s));
    }
}

/// The slot item an inner node stores for `child`.
pub(crate) fn inner_item(child: *mut Header, s: Summary) -> <Inner as Slots>::Item {
    (s.min, s.max, s.gap, s.al, child)
}

/// The memory layout of a node of `kind` (the pool keeps one free list per
/// kind).
pub(crate) fn node_layout(kind: u8) -> Layout {
    if kind == KIND_LEAF {
        Layout::new::<Leaf<()>>()
    } else {
        Layout::new::<Inner>()
    }
}

/// Size of a node of `kind`, a constant where the compiler can see it (so
/// that the copy in `copy_node` is inlined, not a `memcpy` call).
#[inline(always)]
fn node_bytes(kind: u8) -> usize {
    if kind == KIND_LEAF {
        size_of::<Leaf<()>>()
    } else {
        size_of::<Inner>()
    }
}

/// Fresh node memory for `kind`: a recycled buffer from `pool`, else the
/// allocator's.
fn alloc_node(pool: &mut NodePool, kind: u8) -> *mut Header {
    let layout = node_layout(kind);
    pool.take(kind).unwrap_or_else(|| {
        // SAFETY: `layout` has a non-zero size.
        let p = unsafe { alloc::alloc::alloc(layout) };
        if p.is_null() {
            alloc::alloc::handle_alloc_error(layout);
        }
        p.cast()
    })
}

/// Writes `node` into fresh node memory taken from `pool` (or the allocator).
pub(crate) fn place<N>(pool: &mut NodePool, kind: u8, node: N) -> *mut Header {
    // Leaves of every `V` have one layout: value slots are thin pointers.
    assert!(Layout::new::<N>() == node_layout(kind));
    let p = alloc_node(pool, kind);
    // SAFETY: `p` is an allocation of `node_layout(kind)` (the allocator's,
    // or a node released through `release`, which ended the old node's
    // life) and is owned by us; `N`'s layout is that layout.
    unsafe { p.cast::<N>().write(node) };
    p
}

/// A copy of the live node `n` owned by transaction `txn`, in fresh memory
/// from `pool`: one block copy of the node, then a new header (children and
/// values are shared pointers, never copied).
///
/// # Safety
/// `n` is a live node (from `place`) and stays live during the call.
pub(crate) unsafe fn copy_node(pool: &mut NodePool, n: *const Header, txn: u64) -> *mut Header {
    // SAFETY: our requirement.
    let (kind, len, wide) = unsafe { ((*n).kind, (*n).len, (*n).wide) };
    let p = alloc_node(pool, kind);
    // SAFETY: `n` and `p` are distinct blocks of `node_layout(kind)` bytes
    // (`p` is fresh and ours, `n` live: our requirement). Every field of a
    // node is plain data except the header's loom liveness cell, whose
    // copied bytes are overwritten below without being dropped or used, so
    // the copy is a valid node of the same kind once the header is written.
    unsafe {
        ptr::copy_nonoverlapping(n.cast::<u8>(), p.cast::<u8>(), node_bytes(kind));
        p.write(Header {
            len,
            wide,
            ..Header::new(kind, txn)
        });
    }
    p
}

/// Ends a node's life and returns its memory, without touching its children
/// or values.
///
/// # Safety
/// 1. `n` came from `place` or `copy_node` and is not released yet.
/// 2. No reader can still reach `n` (it was never published, or a grace
///    period has passed since it was unlinked — I7).
pub(crate) unsafe fn release(n: *mut Header) -> NodeBuf {
    // SAFETY: requirement 1: `n` is a live node starting with a Header;
    // requirement 2: nobody else touches it any more.
    let kind = unsafe {
        (*n).live.kill();
        // The header's liveness cell is the only field with drop glue.
        core::ptr::drop_in_place(&raw mut (*n).live);
        (*n).kind
    };
    NodeBuf { ptr: n, kind }
}

/// Memory of a released node, with the kind that gives its layout.
#[derive(Clone, Copy)]
pub(crate) struct NodeBuf {
    ptr: *mut Header,
    kind: u8,
}

// SAFETY: a NodeBuf is uninitialised memory owned by whoever holds it.
unsafe impl Send for NodeBuf {}

impl NodeBuf {
    /// Returns the memory to the allocator.
    pub(crate) fn free(self) {
        // SAFETY: the memory came from `std::alloc::alloc` with this layout
        // (`alloc_node`) and is owned by us.
        unsafe { alloc::alloc::dealloc(self.ptr.cast(), node_layout(self.kind)) }
    }
}

/// Most bytes of node buffers a pool keeps per kind (1 MiB: 4096 leaves or
/// 2048 inner nodes); beyond this they go back to the allocator.
const POOL_BYTES: usize = 1 << 20;

/// Recycled node memory of one tree (docs/DESIGN.md §2.7), one free list per
/// node kind. It lives in the writer state behind the tree's mutex, and a
/// write transaction holds it (moved out of the writer state and back) while
/// it runs: no lock of its own, no chunking.
#[derive(Default)]
pub(crate) struct NodePool {
    free: [Vec<NodeBuf>; 2],
}

impl NodePool {
    /// Takes back released node memory; beyond `POOL_BYTES` per kind (and,
    /// under loom, always) it goes back to the allocator.
    #[inline]
    pub(crate) fn give(&mut self, b: NodeBuf) {
        let f = &mut self.free[usize::from(b.kind)];
        if f.len() < POOL_BYTES / node_bytes(b.kind) && cfg!(not(loom)) {
            f.push(b);
        } else {
            b.free();
        }
    }

    /// Memory for a node of `kind`, if any is stocked.
    #[inline]
    fn take(&mut self, kind: u8) -> Option<*mut Header> {
        self.free[usize::from(kind)].pop().map(|b| b.ptr)
    }
}

impl Drop for NodePool {
    fn drop(&mut self) {
        for f in &mut self.free {
            f.drain(..).for_each(NodeBuf::free);
        }
    }
}

/// Views a node as a leaf.
///
/// # Safety
/// `n` is a live leaf of value type `V` and stays live for `'a`.
#[inline(always)]
pub(crate) unsafe fn as_leaf<'a, V>(n: *const Header) -> &'a Leaf<V> {
    // SAFETY: caller's requirement.
    unsafe { &*n.cast::<Leaf<V>>() }
}

/// Views a node as an inner node.
///
/// # Safety
/// `n` is a live inner node and stays live for `'a`.
#[inline(always)]
pub(crate) unsafe fn as_inner<'a>(n: *const Header) -> &'a Inner {
    // SAFETY: caller's requirement.
    unsafe { &*n.cast::<Inner>() }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn leaf(items: &[(u64, u64)]) -> Leaf<u64> {
        let mut l = Leaf::new(1);
        let v = ptr::NonNull::<u64>::dangling().as_ptr();
        let items: Vec<_> = items.iter().map(|&(s, e)| (s, e, v)).collect();
        l.set_items(&items);
        l
    }

    /// The format follows the span exactly at the 32-bit limit (I10), the
    /// offset searches agree with the keys there, and `sentinels_ok` sees
    /// a base that is not the first start.
    #[test]
    fn narrow_exactly_when_the_span_fits() {
        let b = 5u64 << 40;
        let max = u64::from(u32::MAX);
        let l = leaf(&[(b, b + 1), (b + max - 1, b + max)]);
        assert!(!l.is_wide() && l.sentinels_ok());
        assert_eq!((l.start(1), l.end(1)), (b + max - 1, b + max));
        for (x, le_start, lt_start, le_end) in [
            (b - 1, 0, 0, 0),
            (b, 1, 0, 0),
            (b + 1, 1, 1, 1),
            (b + max - 1, 2, 1, 1),
            (b + max, 2, 2, 2),
            (u64::MAX, 2, 2, 2),
        ] {
            assert_eq!(l.count_le_start(x), le_start, "{x:#x}");
            assert_eq!(l.count_lt_start(x), lt_start, "{x:#x}");
            assert_eq!(l.count_le_end(x), le_end, "{x:#x}");
        }
        assert_eq!(l.find(b + max - 1), Some(1));
        assert_eq!(l.find(b + max), None);
        let w = leaf(&[(b, b + 1), (b + max, b + max + 1)]);
        assert!(w.is_wide() && w.sentinels_ok());
        let mut c = leaf(&[(b, b + 1), (b + 2, b + 3)]);
        // SAFETY: `c` is narrow (checked), so that is the initialised field.
        unsafe {
            assert!(!c.is_wide());
            c.body.narrow.base -= 1;
            c.body.narrow.start[0] += 1;
            c.body.narrow.end[0] += 1;
            c.body.narrow.start[1] += 1;
            c.body.narrow.end[1] += 1;
        }
        assert_eq!(c.start(0), b, "same keys, another base");
        assert!(!c.sentinels_ok());
    }
}
