//! Node layout (docs/DESIGN.md §2.1).
//!
//! Two node kinds, 64-byte aligned, both starting with the same [`Header`]
//! so a `*mut Header` can be cast to the right kind after reading `kind`:
//!
//! ```text
//! Leaf<V>, narrow: header(16) | base | start[14]: u32 | end[14]: u32 | val[14] = 248 B
//! Leaf<V>, wide  : header(16) | start[10] | end[10] | val[10]                  = 256 B
//! Inner, narrow  : header(16) | base | min[1..11]: u32 | child[11] | max[11]: u32
//!                  | gap[11]: u32 | al[11]                                     = 251 B
//! Inner, wide    : header(16) | min[7] | child[7] | max[7] | gap[7] | al[7] | pad = 256 B
//! ```
//!
//! The inner node's arrays are ordered for `get`: its scan over `min` and
//! the chosen `child` lie in the first two cache lines (a narrow node's
//! header, base and `min` are line 0). Narrow inner nodes (I11, [`Inner`])
//! store keys as 32-bit offsets from `min[0]` scaled by the node's common
//! power of two, which gives fan-out 11 in 256 bytes. (512-byte inner
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
/// Children per wide inner node (64-bit keys): the capacity every inner
/// node has, whatever its keys.
#[cfg(not(loom))]
pub(crate) const INNER_CAP: usize = 7;
/// Children per narrow inner node (scaled 32-bit offsets from a per-node
/// base, I11), used when the node's keys allow it.
#[cfg(not(loom))]
pub(crate) const INNER_NARROW_CAP: usize = 11;
// Under loom, tiny nodes so that splits and merges happen within a few operations.
#[cfg(loom)]
pub(crate) const LEAF_CAP: usize = 3;
#[cfg(loom)]
pub(crate) const NARROW_CAP: usize = 3;
#[cfg(loom)]
pub(crate) const INNER_CAP: usize = 3;
#[cfg(loom)]
pub(crate) const INNER_NARROW_CAP: usize = 3;

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
    /// The node's format: 64-bit keys (`true`) or 32-bit offsets (`false`).
    /// See [`Leaf`] (I10) and [`Inner`] (I11).
    pub(crate) wide: bool,
    /// A narrow inner node's scale: its offsets count units of
    /// `2^shift` (I11); 0 otherwise.
    pub(crate) shift: u8,
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
            shift: 0,
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

/// An inner node, in one of two formats chosen by its children's summaries
/// (I11): *narrow* (`hdr.wide == false`) when every key it stores (each
/// child's `min`, `max` and `gap`), taken relative to `base = min[0]`, is a
/// multiple of `2^shift` (`shift` the largest such, in the header) and the
/// scaled span `(max[n - 1] - base) >> shift` is below `u32::MAX`: up to
/// `INNER_NARROW_CAP` (11) children with 32-bit scaled offsets; else
/// *wide*: up to `INNER_CAP` (7) children with 64-bit keys. Both are 256
/// bytes. A narrow node does not store `min[0]` (it is the base, offset 0),
/// so its header, base and the ten other `min` offsets are cache line 0.
/// Read through [`Inner::child`], [`Inner::slot_summary`] and the counting
/// searches; written through [`Slots`] and [`Inner::set`].
#[repr(C, align(64))]
pub(crate) struct Inner {
    pub(crate) hdr: Header,
    body: InnerBody,
}

/// The two inner formats; `hdr.wide` says which one is initialised.
#[repr(C)]
union InnerBody {
    narrow: NarrowInner,
    wide: WideInner,
}

#[derive(Clone, Copy)]
#[repr(C)]
struct NarrowInner {
    base: u64,
    /// Scaled offsets of `min[1..]` (`min[0]` is `base`).
    min: [u32; INNER_NARROW_CAP - 1],
    child: [*mut Header; INNER_NARROW_CAP],
    max: [u32; INNER_NARROW_CAP],
    gap: [u32; INNER_NARROW_CAP],
    /// Per child, the alignment exponent of its internal gaps (see
    /// [`Summary::al`]); `u8::MAX` in unused slots (I5).
    al: [u8; INNER_NARROW_CAP],
}

#[derive(Clone, Copy)]
#[repr(C)]
struct WideInner {
    min: [u64; INNER_CAP],
    child: [*mut Header; INNER_CAP],
    max: [u64; INNER_CAP],
    gap: [u64; INNER_CAP],
    al: [u8; INNER_CAP],
}

/// One inner slot: `(min, max, gap, al, child)`.
pub(crate) type InnerItem = (u64, u64, u64, u8, *mut Header);

/// The narrow encoding of inner slots `items` (in key order), `(base,
/// shift)`, or `None` when they need the wide format (I11). The shift is
/// the number of trailing zero bits common to every `min - base`, `max -
/// base` and `gap`; the scaled span must stay below `u32::MAX`, the unused
/// slots' sentinel, so that a saturated search key compares exactly.
#[inline]
fn inner_narrow(items: &[InnerItem]) -> Option<(u64, u32)> {
    let n = items.len();
    let (Some(first), Some(last)) = (items.first(), items.last()) else {
        return Some((0, 0));
    };
    if n > INNER_NARROW_CAP {
        return None;
    }
    let base = first.0;
    let mut or = 0;
    for &(mn, mx, g, _, _) in items {
        // Wrapping: validate() decodes corrupt slots too; in order they
        // are all >= base.
        or |= mn.wrapping_sub(base) | mx.wrapping_sub(base) | g;
    }
    // `or > 0`: max[0] > min[0] = base (I2).
    let shift = if or == 0 { 0 } else { or.trailing_zeros() };
    (last.1.wrapping_sub(base) >> shift < u64::from(u32::MAX)).then_some((base, shift))
}

/// Can one inner node hold `items`? Up to `INNER_CAP` always; up to
/// `INNER_NARROW_CAP` when they have a narrow encoding (I11).
#[inline]
pub(crate) fn inner_fits(items: &[InnerItem]) -> bool {
    items.len() <= INNER_CAP || inner_narrow(items).is_some()
}

const _: () = assert!(NARROW_CAP >= LEAF_CAP);

#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<Leaf<u64>>() == 256);
    assert!(size_of::<Leaf<[u8; 1000]>>() == 256);
    assert!(size_of::<Inner>() == 256);
    assert!(size_of::<Narrow<u64>>() <= 240 && size_of::<Wide<u64>>() == 240);
    assert!(size_of::<NarrowInner>() <= 240 && size_of::<WideInner>() <= 240);
    assert!(size_of::<Header>() == 16);
    assert!(align_of::<Inner>() == 64);
    assert!(align_of::<Leaf<u64>>() == 64);
    // `get` reads `min` and one `child`: a narrow node's header, base and
    // `min` are line 0; a wide node's `min` and `child` lines 0-1.
    assert!(16 + core::mem::offset_of!(NarrowInner, child) <= 64);
    assert!(16 + core::mem::offset_of!(WideInner, max) <= 128);
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
    link_exp_of(link_bits(fs, fe))
}

/// The bits `link_exp(fs, fe)` reads: `link_exp(fs, fe) ==
/// link_exp_of(link_bits(fs, fe))`. The largest of several `link_exp` is
/// `link_exp_of` of their bits or-ed together (the highest set bit of an
/// or is the highest of the highest set bits), so a summary pass folds its
/// links with one `or` each and takes one `leading_zeros` at the end.
#[inline(always)]
pub(crate) fn link_bits(fs: u64, fe: u64) -> u64 {
    debug_assert!(fs >= 1 && fs <= fe);
    (fs - 1) ^ (fe - 1)
}

/// `link_exp` from `link_bits` (or several of them or-ed together).
#[inline(always)]
pub(crate) fn link_exp_of(bits: u64) -> u8 {
    (64 - bits.leading_zeros()).saturating_sub(1) as u8
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

/// Number of `keys[k] <= x` when the keys `<= x` form a prefix of the
/// array: `keys` sorted (I2) with every unused slot above `x` (its sentinel
/// `u32::MAX` (I5), and callers saturate `x` below it). Branch-free and
/// with no clamp: the positions of `keys[k] > x` form a bit mask whose
/// lowest set bit is the answer, with bit `N` set so that an array of keys
/// all `<= x` gives `N` (issue 12, sixth session: this replaced a counted
/// compare, a popcount and a clamp to `len` on the lookup path). On
/// x86_64 the mask comes from one unsigned packed compare and one
/// `movmskps` per four keys (the last four overlap the previous ones when
/// `N` is not a multiple of 4: or-ing a lane's bit twice is harmless).
#[inline(always)]
pub(crate) fn rank_le<const N: usize>(keys: &[u32; N], x: u32) -> usize {
    gt_mask(keys, x).trailing_zeros() as usize
}

/// `rank_le(keys, x).min(cap)` for `cap <= N`, with the clamp folded into
/// the mask (bit `cap` set) instead of a compare and a select after the
/// count: a descent's next child index comes off this count, so the clamp
/// sat on the critical path of every level (issue 12, seventh session).
#[inline(always)]
pub(crate) fn rank_le_upto<const N: usize>(keys: &[u32; N], x: u32, cap: usize) -> usize {
    debug_assert!(cap <= N);
    (gt_mask(keys, x) | (1u32 << cap)).trailing_zeros() as usize
}

/// The positions of `keys[k] > x`, as bits, with bit `N` set ([`rank_le`]).
#[inline(always)]
fn gt_mask<const N: usize>(keys: &[u32; N], x: u32) -> u32 {
    const { assert!(N < 32) };
    let mut gt = 1u32 << N;
    // Fewer than four keys (the small capacities of the loom build) take
    // the scalar loop.
    #[cfg(target_arch = "x86_64")]
    if N >= 4 {
        use core::arch::x86_64::{
            __m128i, _mm_castsi128_ps, _mm_cmpgt_epi32, _mm_loadu_si128, _mm_movemask_ps,
            _mm_set1_epi32, _mm_xor_si128,
        };
        // SAFETY: SSE2 is part of the x86_64 baseline (the target enables it
        // on every x86_64 CPU), which is what these intrinsics' target
        // feature requires; each load reads `keys[o..o + 4]` with `o + 4 <=
        // N`, inside the array, and `loadu` has no alignment requirement.
        unsafe {
            // SSE2 compares signed lanes: flipping the top bit of both
            // sides turns it into the unsigned compare.
            let bias = _mm_set1_epi32(i32::MIN);
            let xb = _mm_xor_si128(_mm_set1_epi32(x as i32), bias);
            let mut c = 0;
            while c < N {
                let o = if c + 4 <= N { c } else { N - 4 };
                let k = _mm_loadu_si128(keys.as_ptr().add(o).cast::<__m128i>());
                let m = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpgt_epi32(
                    _mm_xor_si128(k, bias),
                    xb,
                )));
                gt |= (m as u32) << o;
                c += 4;
            }
        }
        return gt;
    }
    for (k, &key) in keys.iter().enumerate() {
        gt |= u32::from(key > x) << k;
    }
    gt
}

/// An inner node's per-child keys in their stored form `K` ([`Inner::keys`]):
/// key = `base + (offset << shift)` and length = `offset << shift`, with
/// `K = u32` scaled offsets in a narrow node (I11) and `K = u64`, base 0,
/// shift 0 (the keys themselves) in a wide one. A reader generic over it is
/// compiled once per format, with no format branch per child. Indices are
/// `< len`, and callers keep them below [`InnerKeys::CAP`] so that the
/// array accesses need no bounds check.
pub(crate) trait InnerKeys {
    /// The stored offset type.
    type K: Copy + Ord + Into<u64> + core::ops::Sub<Output = Self::K>;
    /// Children this format holds.
    const CAP: usize;
    fn base(&self) -> u64;
    fn shift(&self) -> u32;
    /// Offset of child `i`'s first start.
    fn min_o(&self, i: usize) -> Self::K;
    /// Offset of child `i`'s last end.
    fn max_o(&self, i: usize) -> Self::K;
    /// Child `i`'s largest inner gap, scaled.
    fn gap_o(&self, i: usize) -> Self::K;
    fn al(&self, i: usize) -> u8;
    fn child(&self, i: usize) -> *mut Header;
}

/// A narrow inner node's arrays and shift ([`Inner::keys`]).
pub(crate) struct NarrowKeys<'a> {
    b: &'a NarrowInner,
    shift: u32,
}

/// A wide inner node's arrays ([`Inner::keys`]).
pub(crate) struct WideKeys<'a>(&'a WideInner);

/// An inner node's keys in the format it is stored in.
pub(crate) enum Keys<'a> {
    Narrow(NarrowKeys<'a>),
    Wide(WideKeys<'a>),
}

impl InnerKeys for NarrowKeys<'_> {
    type K = u32;
    const CAP: usize = INNER_NARROW_CAP;
    #[inline(always)]
    fn base(&self) -> u64 {
        self.b.base
    }
    #[inline(always)]
    fn shift(&self) -> u32 {
        self.shift
    }
    #[inline(always)]
    fn min_o(&self, i: usize) -> u32 {
        // `min[0]` is the base, offset 0 (not stored).
        if i == 0 { 0 } else { self.b.min[i - 1] }
    }
    #[inline(always)]
    fn max_o(&self, i: usize) -> u32 {
        self.b.max[i]
    }
    #[inline(always)]
    fn gap_o(&self, i: usize) -> u32 {
        self.b.gap[i]
    }
    #[inline(always)]
    fn al(&self, i: usize) -> u8 {
        self.b.al[i]
    }
    #[inline(always)]
    fn child(&self, i: usize) -> *mut Header {
        self.b.child[i]
    }
}

impl InnerKeys for WideKeys<'_> {
    type K = u64;
    const CAP: usize = INNER_CAP;
    #[inline(always)]
    fn base(&self) -> u64 {
        0
    }
    #[inline(always)]
    fn shift(&self) -> u32 {
        0
    }
    #[inline(always)]
    fn min_o(&self, i: usize) -> u64 {
        self.0.min[i]
    }
    #[inline(always)]
    fn max_o(&self, i: usize) -> u64 {
        self.0.max[i]
    }
    #[inline(always)]
    fn gap_o(&self, i: usize) -> u64 {
        self.0.gap[i]
    }
    #[inline(always)]
    fn al(&self, i: usize) -> u8 {
        self.0.al[i]
    }
    #[inline(always)]
    fn child(&self, i: usize) -> *mut Header {
        self.0.child[i]
    }
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
            // Starts are at most `u32::MAX - 1` (each is below its end, at
            // most `u32::MAX`, I10), so `x - base` saturated there is exact
            // against them and below the sentinels (I5): the branch-free
            // `rank_le`, no clamp (as in `find`).
            Some(b) => {
                let c = x.checked_sub(b.base).map_or(0, |d| {
                    rank_le(&b.start, d.min(u64::from(u32::MAX - 1)) as u32)
                });
                debug_assert_eq!(
                    c,
                    Self::rel(b, x).map_or(0, |r| count_le(&b.start, self.len(), r))
                );
                c
            }
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
            // An end offset may be `u32::MAX` itself (I10), so the key is
            // not saturated: at or past `u32::MAX` every end counts; below
            // it the key is below the sentinels (I5) and the ends (sorted,
            // I2) that count are a prefix: `rank_le`, no clamp (issue 12,
            // seventh session: the reverse gap search's leaf step).
            Some(b) => {
                let c = match x.checked_sub(b.base) {
                    None => 0,
                    Some(d) if d >= u64::from(u32::MAX) => self.len(),
                    Some(d) => rank_le(&b.end, d as u32),
                };
                debug_assert_eq!(
                    c,
                    Self::rel(b, x).map_or(0, |r| count_le(&b.end, self.len(), r))
                );
                c
            }
            None => count_le(&self.wide().end, self.len(), x),
        }
    }

    /// The entry containing `x`.
    #[inline(always)]
    pub(crate) fn find(&self, x: u64) -> Option<usize> {
        let n = self.len();
        match self.narrow() {
            Some(b) => {
                // Starts are at most `u32::MAX - 1` (each is below its end,
                // at most `u32::MAX`, I10), so `d` saturated there is exact
                // against them and below the sentinels (I5): `rank_le`
                // needs no clamp to `n`. The end test takes `d` unsaturated.
                let d = x.checked_sub(b.base)?;
                let r = d.min(u64::from(u32::MAX - 1)) as u32;
                let j = rank_le(&b.start, r).checked_sub(1)?;
                debug_assert_eq!(
                    Some(j),
                    Self::rel(b, x).and_then(|r| count_le(&b.start, n, r).checked_sub(1))
                );
                (d < u64::from(b.end[j])).then_some(j)
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
    let mut bits = 0;
    // Ends are >= 1 (I2: `start < end`), so `link_bits` applies; one `or`
    // per free interval, one exponent at the end.
    for j in 1..n {
        let (e, s) = (end(j - 1), start(j));
        gap = gap.max(s - e);
        bits |= link_bits(e, s);
    }
    Summary {
        min: start(0),
        max: end(n - 1),
        gap,
        al: link_exp_of(bits),
    }
}

impl Inner {
    /// An empty (narrow) inner node.
    pub(crate) fn new(txn: u64) -> Self {
        Self {
            hdr: Header::new(KIND_INNER, txn),
            body: InnerBody {
                narrow: NarrowInner {
                    base: 0,
                    min: [u32::MAX; INNER_NARROW_CAP - 1],
                    child: [ptr::null_mut(); INNER_NARROW_CAP],
                    max: [u32::MAX; INNER_NARROW_CAP],
                    gap: [u32::MAX; INNER_NARROW_CAP],
                    al: [u8::MAX; INNER_NARROW_CAP],
                },
            },
        }
    }

    #[inline(always)]
    pub(crate) fn len(&self) -> usize {
        self.hdr.len as usize
    }

    /// Is this node in the wide (64-bit key) format?
    #[cfg(all(test, not(loom)))]
    pub(crate) fn is_wide(&self) -> bool {
        self.hdr.wide
    }

    /// The narrow body, if that is the format.
    #[inline(always)]
    fn narrow(&self) -> Option<&NarrowInner> {
        if self.hdr.wide {
            None
        } else {
            // SAFETY: `hdr.wide` names the initialised union field (I11);
            // every writer (`new`, `set_items`, `set`, a block copy with its
            // header) keeps the two in step.
            Some(unsafe { &self.body.narrow })
        }
    }

    /// The narrow body, mutable, if that is the format.
    #[inline(always)]
    fn narrow_mut(&mut self) -> Option<&mut NarrowInner> {
        if self.hdr.wide {
            None
        } else {
            // SAFETY: as in `narrow`.
            Some(unsafe { &mut self.body.narrow })
        }
    }

    /// The wide body (only when `hdr.wide`).
    #[inline(always)]
    fn wide(&self) -> &WideInner {
        debug_assert!(self.hdr.wide);
        // SAFETY: as in `narrow`; callers check `hdr.wide` first.
        unsafe { &self.body.wide }
    }

    /// The wide body, mutable (only when `hdr.wide`).
    #[inline(always)]
    fn wide_mut(&mut self) -> &mut WideInner {
        debug_assert!(self.hdr.wide);
        // SAFETY: as in `narrow`; callers check `hdr.wide` first.
        unsafe { &mut self.body.wide }
    }

    /// Children this node's format holds.
    #[inline(always)]
    pub(crate) fn cap(&self) -> usize {
        if self.hdr.wide {
            INNER_CAP
        } else {
            INNER_NARROW_CAP
        }
    }

    /// Child `i` (`i < len`; null past `len`, I5).
    #[inline(always)]
    pub(crate) fn child(&self, i: usize) -> *mut Header {
        match self.narrow() {
            Some(b) => b.child[i],
            None => self.wide().child[i],
        }
    }

    /// The used child pointers.
    #[inline]
    pub(crate) fn children(&self) -> &[*mut Header] {
        let n = self.len();
        match self.narrow() {
            Some(b) => &b.child[..n],
            None => &self.wide().child[..n],
        }
    }

    /// Points slot `i` at `c`, a node with the same summary (a copy of
    /// the old child, or the old child changed without changing its
    /// summary): the keys, hence the format, stay.
    #[inline]
    pub(crate) fn set_child(&mut self, i: usize, c: *mut Header) {
        debug_assert!(i < self.len());
        match self.narrow_mut() {
            Some(b) => b.child[i] = c,
            None => self.wide_mut().child[i] = c,
        }
    }

    /// A stored scaled offset or length, back in key units.
    #[inline(always)]
    fn unscale(&self, o: u32) -> u64 {
        u64::from(o) << self.hdr.shift
    }

    /// First start under child `i` (`i < len`).
    #[inline(always)]
    pub(crate) fn min(&self, i: usize) -> u64 {
        match self.narrow() {
            Some(b) if i == 0 => b.base,
            Some(b) => b.base + self.unscale(b.min[i - 1]),
            None => self.wide().min[i],
        }
    }

    /// Last end under child `i` (`i < len`).
    #[inline(always)]
    pub(crate) fn max(&self, i: usize) -> u64 {
        match self.narrow() {
            Some(b) => b.base + self.unscale(b.max[i]),
            None => self.wide().max[i],
        }
    }

    /// Largest gap inside child `i` (`i < len`).
    #[inline(always)]
    pub(crate) fn gap(&self, i: usize) -> u64 {
        match self.narrow() {
            Some(b) => self.unscale(b.gap[i]),
            None => self.wide().gap[i],
        }
    }

    /// Alignment exponent of child `i`'s gaps (`i < len`).
    #[inline(always)]
    pub(crate) fn al(&self, i: usize) -> u8 {
        match self.narrow() {
            Some(b) => b.al[i],
            None => self.wide().al[i],
        }
    }

    /// `x` as a scaled offset for `key <= x` tests: `floor((x - base) /
    /// 2^shift)`, saturated at `u32::MAX - 1` (exact: every stored offset
    /// is at most that, I11, and the unused slots' sentinel `u32::MAX`
    /// stays above it, I5, so [`rank_le`] needs no clamp to `len`); `None`
    /// when `x` lies below the base.
    #[inline(always)]
    fn le_key(&self, b: &NarrowInner, x: u64) -> Option<u32> {
        let d = x.checked_sub(b.base)?;
        Some((d >> self.hdr.shift).min(u64::from(u32::MAX - 1)) as u32)
    }

    /// `x` as a scaled offset for `key < x` tests: `ceil((x - base) /
    /// 2^shift)`, saturated likewise (`key < x` ⟺ `offset << shift <
    /// x - base` ⟺ `offset < ceil(..)`); `None` below the base.
    #[inline(always)]
    fn lt_key(&self, b: &NarrowInner, x: u64) -> Option<u32> {
        let d = x.checked_sub(b.base)?;
        let s = self.hdr.shift;
        // No overflow: with s > 0, d >> s < 2^63.
        let q = (d >> s) + u64::from(d & ((1u64 << s) - 1) != 0);
        Some(u32::try_from(q).unwrap_or(u32::MAX))
    }

    /// Number of children with `min <= x`.
    #[inline(always)]
    pub(crate) fn count_le_min(&self, x: u64) -> usize {
        let n = self.len();
        match self.narrow() {
            // Child 0 (offset 0) counts whenever x >= base; `le_key`
            // keeps the sentinels above the key (an empty node has no base
            // to be above: `n == 0` only for the empty root leaf).
            Some(b) => {
                let c = self.le_key(b, x).map_or(0, |r| 1 + rank_le(&b.min, r));
                debug_assert_eq!(
                    c,
                    self.le_key(b, x)
                        .map_or(0, |r| (1 + count_le(&b.min, INNER_NARROW_CAP, r)).min(n))
                );
                c
            }
            None => count_le(&self.wide().min, n, x),
        }
    }

    /// Number of children with `min < x`.
    #[inline(always)]
    pub(crate) fn count_lt_min(&self, x: u64) -> usize {
        let n = self.len();
        match self.narrow() {
            // Keys are integers: `key < x` ⟺ `key <= x - 1`.
            Some(b) => {
                let c = x.checked_sub(1).map_or(0, |y| {
                    self.le_key(b, y).map_or(0, |r| 1 + rank_le(&b.min, r))
                });
                debug_assert_eq!(
                    c,
                    self.lt_key(b, x).map_or(0, |r| {
                        (usize::from(r > 0) + count_lt(&b.min, INNER_NARROW_CAP, r)).min(n)
                    })
                );
                c
            }
            None => count_lt(&self.wide().min, n, x),
        }
    }

    /// Number of children with `max <= x`.
    #[inline(always)]
    pub(crate) fn count_le_max(&self, x: u64) -> usize {
        let n = self.len();
        match self.narrow() {
            Some(b) => {
                let c = self.le_key(b, x).map_or(0, |r| rank_le(&b.max, r));
                debug_assert_eq!(c, self.le_key(b, x).map_or(0, |r| count_le(&b.max, n, r)));
                c
            }
            None => count_le(&self.wide().max, n, x),
        }
    }

    /// `count_le_max(x).min(len - 1)`: the first child whose `max > x`, or
    /// the last child (the forward gap search's first child, §2.4), with
    /// the clamp in the count's mask ([`rank_le_upto`]). `len >= 1`.
    #[inline(always)]
    pub(crate) fn first_max_gt(&self, x: u64) -> usize {
        let n = self.len();
        debug_assert!(n >= 1);
        match self.narrow() {
            Some(b) => {
                let c = self
                    .le_key(b, x)
                    .map_or(0, |r| rank_le_upto(&b.max, r, n - 1));
                debug_assert_eq!(c, self.count_le_max(x).min(n - 1));
                c
            }
            None => count_le(&self.wide().max, n, x).min(n - 1),
        }
    }

    /// `count_lt_max(x).min(len - 1)`: the first child whose `max >= x`,
    /// or the last child (the reverse gap search's first child, §2.4),
    /// with the clamp in the count's mask ([`rank_le_upto`]). `len >= 1`.
    #[inline(always)]
    pub(crate) fn first_max_ge(&self, x: u64) -> usize {
        let n = self.len();
        debug_assert!(n >= 1);
        match self.narrow() {
            // As in `count_lt_max`: `key < x` ⟺ `key <= x - 1`.
            Some(b) => {
                let c = x.checked_sub(1).map_or(0, |y| {
                    self.le_key(b, y)
                        .map_or(0, |r| rank_le_upto(&b.max, r, n - 1))
                });
                debug_assert_eq!(c, self.count_lt_max(x).min(n - 1));
                c
            }
            None => count_lt(&self.wide().max, n, x).min(n - 1),
        }
    }

    /// Number of children with `max < x`.
    #[inline(always)]
    pub(crate) fn count_lt_max(&self, x: u64) -> usize {
        let n = self.len();
        match self.narrow() {
            // As in `count_lt_min`: `key < x` ⟺ `key <= x - 1`.
            Some(b) => {
                let c = x
                    .checked_sub(1)
                    .map_or(0, |y| self.le_key(b, y).map_or(0, |r| rank_le(&b.max, r)));
                debug_assert_eq!(c, self.lt_key(b, x).map_or(0, |r| count_lt(&b.max, n, r)));
                c
            }
            None => count_lt(&self.wide().max, n, x),
        }
    }

    /// The node's keys as stored, one type per format, for readers that
    /// test children on the stored offsets instead of decoding each key
    /// through the format branch (the gap search, DESIGN §2.4).
    #[inline(always)]
    pub(crate) fn keys(&self) -> Keys<'_> {
        match self.narrow() {
            Some(b) => Keys::Narrow(NarrowKeys {
                b,
                shift: u32::from(self.hdr.shift),
            }),
            None => Keys::Wide(WideKeys(self.wide())),
        }
    }

    /// The slots, decoded into `buf`; returns how many.
    #[inline]
    fn decode(&self, buf: &mut [InnerItem; INNER_NARROW_CAP + 1]) -> usize {
        let n = self.len();
        for (i, slot) in buf.iter_mut().enumerate().take(n) {
            *slot = self.item(i);
        }
        n
    }

    /// Whether the unused slots hold the sentinel of the node's format (I5).
    pub(crate) fn sentinels_ok(&self) -> bool {
        let n = self.len();
        match self.narrow() {
            Some(b) => {
                (n.max(1)..INNER_NARROW_CAP).all(|i| b.min[i - 1] == u32::MAX)
                    && (n..INNER_NARROW_CAP).all(|i| {
                        b.max[i] == u32::MAX
                            && b.gap[i] == u32::MAX
                            && b.al[i] == u8::MAX
                            && b.child[i].is_null()
                    })
            }
            None => {
                let w = self.wide();
                (n..INNER_CAP).all(|i| {
                    w.min[i] == u64::MAX
                        && w.max[i] == u64::MAX
                        && w.gap[i] == u64::MAX
                        && w.al[i] == u8::MAX
                        && w.child[i].is_null()
                })
            }
        }
    }

    /// Whether the format is the one the slots call for (I11): narrow
    /// exactly when they have a narrow encoding, and then with its shift
    /// (the base is `min[0]` by construction). `None` if so, else what is
    /// wrong.
    pub(crate) fn format_error(&self) -> Option<&'static str> {
        let mut buf = [(0, 0, 0, 0, ptr::null_mut()); INNER_NARROW_CAP + 1];
        let n = self.decode(&mut buf);
        match (inner_narrow(&buf[..n]), self.narrow()) {
            (None, None) => None,
            (Some(_), None) => Some("wide, but its keys have a narrow encoding"),
            (None, Some(_)) => Some("narrow, but its keys need the wide format"),
            (Some((_, s)), Some(_)) if s != u32::from(self.hdr.shift) => {
                Some("narrow with another shift than its keys' common one")
            }
            _ => None,
        }
    }

    pub(crate) fn summary(&self) -> Summary {
        let n = self.len();
        debug_assert!(n > 0);
        let Some(b) = self.narrow() else {
            let w = self.wide();
            return inner_summary_of(
                w.min[0],
                w.min[1..n].iter().copied(),
                &w.max[..n],
                &w.gap[..n],
                &w.al[..n],
                |k| k,
            );
        };
        let (base, sh) = (b.base, self.hdr.shift);
        let n = n.min(INNER_NARROW_CAP);
        let key = |o: u32| base + (u64::from(o) << sh);
        // Scaled throughout; the links' exponents need the keys.
        let (mut g, mut a) = (0, 0);
        for i in 0..n {
            (g, a) = (g.max(b.gap[i]), a.max(b.al[i]));
        }
        // No data-dependent branch: the link gaps between children are
        // never at address 0 (`max[i - 1] >= 1`), so `link_bits` applies;
        // one `or` per link, one exponent at the end.
        let mut bits = 0;
        for i in 1..n {
            let (pm, mn) = (b.max[i - 1], b.min[i - 1]);
            g = g.max(mn - pm);
            bits |= link_bits(key(pm), key(mn));
        }
        Summary {
            min: base,
            max: key(b.max[n - 1]),
            gap: u64::from(g) << sh,
            al: a.max(link_exp_of(bits)),
        }
    }

    /// The summary of child `i`'s slot.
    #[inline(always)]
    pub(crate) fn slot_summary(&self, i: usize) -> Summary {
        Summary {
            min: self.min(i),
            max: self.max(i),
            gap: self.gap(i),
            al: self.al(i),
        }
    }

    /// This node's summary after slot `i` changed from `was` to `now` (its
    /// current contents, as the caller just stored them), given the node's
    /// summary `before` that change (nothing else changed): O(1) instead of
    /// a pass over every child, whenever the largest gap and alignment
    /// exponent were attained by something that did not change or did not
    /// shrink. Exact: a changed quantity (child `i`'s gap and exponent, and
    /// the link gaps on either side of it) that shrank from the old maximum
    /// may have been the only one there, so then it recomputes. The node's
    /// first start and last end are `before`'s unless slot `i` is the first
    /// or last, and the neighbours are read only when the slot's own first
    /// start or last end moved.
    pub(crate) fn summary_after(
        &self,
        i: usize,
        was: Summary,
        now: Summary,
        before: Summary,
    ) -> Summary {
        let n = self.len();
        debug_assert_eq!(now, self.slot_summary(i));
        let (mut gap, mut al) = (before.gap, before.al);
        let mut exact = true;
        // A quantity that did not shrink, or whose old value was below the
        // old maximum, leaves the maximum at `max(before, new)`; one that
        // shrank from the maximum may have been the only one there.
        let mut changed = |old_gap: u64, new_gap: u64, old_al: u8, new_al: u8| {
            exact &= (old_gap < before.gap || new_gap >= old_gap)
                && (old_al < before.al || new_al >= old_al);
            gap = gap.max(new_gap);
            al = al.max(new_al);
        };
        changed(was.gap, now.gap, was.al, now.al);
        if i > 0 && was.min != now.min {
            let m = self.max(i - 1);
            changed(
                was.min - m,
                now.min - m,
                link_exp(m, was.min),
                link_exp(m, now.min),
            );
        }
        if i + 1 < n && was.max != now.max {
            let m = self.min(i + 1);
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
            min: if i == 0 { now.min } else { before.min },
            max: if i + 1 == n { now.max } else { before.max },
            gap,
            al,
        }
    }

    /// Points slot `i` at `child` with its summary `s`, re-encoding the
    /// node in the format the new keys call for (I11). Returns false,
    /// changing nothing, when they fit no format: the node is narrow with
    /// more children than a wide node holds, and `s` brought a key off its
    /// scale or past its offsets' range (an unaligned key, a wider span).
    /// The caller then splits the node (`Core::replace_slots`).
    #[inline]
    pub(crate) fn set(&mut self, i: usize, child: *mut Header, s: Summary) -> bool {
        debug_assert!(i < self.len());
        self.set_in_place(i, child, s) || self.set_recode(i, child, s)
    }

    /// `set` without a re-encoding, when the node is narrow, keeps its base
    /// (min[0] did not change), the new keys are on its scale and within
    /// its offsets, and the shift stays canonical (I11): some used offset
    /// is still odd (the new slot's; another's if the old slot had none;
    /// else one pass over the used offsets looks for one). Otherwise
    /// returns false, having written the slot or not; the caller
    /// re-encodes (`set_recode` decodes the slot either way).
    #[inline(always)]
    fn set_in_place(&mut self, i: usize, child: *mut Header, s: Summary) -> bool {
        let (sh, n) = (u32::from(self.hdr.shift), self.len());
        let Some(b) = self.narrow_mut() else {
            return false;
        };
        if s.min < b.base || (i == 0 && s.min != b.base) {
            return false;
        }
        let (mo, xo) = (s.min - b.base, s.max - b.base);
        if (mo | xo | s.gap) & ((1u64 << sh) - 1) != 0 || xo >> sh >= u64::from(u32::MAX) {
            return false;
        }
        // In range: the scaled span bound above covers mo and gap.
        let (mo, xo, g) = ((mo >> sh) as u32, (xo >> sh) as u32, (s.gap >> sh) as u32);
        let old_min = if i > 0 { b.min[i - 1] } else { 0 };
        let odd_before = (old_min | b.max[i] | b.gap[i]) & 1;
        if i > 0 {
            b.min[i - 1] = mo;
        }
        (b.max[i], b.gap[i], b.al[i], b.child[i]) = (xo, g, s.al, child);
        if (mo | xo | g) & 1 == 1 || odd_before == 0 {
            return true;
        }
        // The slot held an odd offset and no longer does: the shift stays
        // canonical if another used offset is still odd (one pass over the
        // used slots' offsets, against a decode and re-encode).
        let mut odd = 0;
        for k in 0..n.min(INNER_NARROW_CAP) {
            odd |= b.max[k] | b.gap[k];
        }
        for &m in &b.min[..n.saturating_sub(1).min(INNER_NARROW_CAP - 1)] {
            odd |= m;
        }
        odd & 1 == 1
    }

    /// `set` by decoding, replacing slot `i` and re-encoding (the rare
    /// case: a new base, a key off the scale, a shift that may grow).
    #[cold]
    #[inline(never)]
    fn set_recode(&mut self, i: usize, child: *mut Header, s: Summary) -> bool {
        let mut buf = [(0, 0, 0, 0, ptr::null_mut()); INNER_NARROW_CAP + 1];
        let n = self.decode(&mut buf);
        buf[i] = inner_item(child, s);
        if !inner_fits(&buf[..n]) {
            return false;
        }
        self.set_items(&buf[..n]);
        true
    }

    /// Replaces the slots with `items` (in key order, and [`inner_fits`]) in
    /// the format they call for (I11), with the sentinel in every unused
    /// slot (I5).
    pub(crate) fn set_items(&mut self, items: &[InnerItem]) {
        let n = items.len();
        if let Some((base, sh)) = inner_narrow(items) {
            let mut b = NarrowInner {
                base,
                min: [u32::MAX; INNER_NARROW_CAP - 1],
                child: [ptr::null_mut(); INNER_NARROW_CAP],
                max: [u32::MAX; INNER_NARROW_CAP],
                gap: [u32::MAX; INNER_NARROW_CAP],
                al: [u8::MAX; INNER_NARROW_CAP],
            };
            for (i, &(mn, mx, g, al, c)) in items.iter().enumerate() {
                // In range: `inner_narrow` bounds the scaled span, which
                // bounds every offset and gap.
                if i > 0 {
                    b.min[i - 1] = ((mn - base) >> sh) as u32;
                }
                b.max[i] = ((mx - base) >> sh) as u32;
                b.gap[i] = (g >> sh) as u32;
                (b.al[i], b.child[i]) = (al, c);
            }
            self.body.narrow = b;
            self.hdr.wide = false;
            self.hdr.shift = sh as u8;
        } else {
            assert!(n <= INNER_CAP, "{n} children do not fit one inner node");
            let mut b = WideInner {
                min: [u64::MAX; INNER_CAP],
                child: [ptr::null_mut(); INNER_CAP],
                max: [u64::MAX; INNER_CAP],
                gap: [u64::MAX; INNER_CAP],
                al: [u8::MAX; INNER_CAP],
            };
            for (i, &(mn, mx, g, al, c)) in items.iter().enumerate() {
                (b.min[i], b.max[i], b.gap[i], b.al[i], b.child[i]) = (mn, mx, g, al, c);
            }
            self.body.wide = b;
            self.hdr.wide = true;
            self.hdr.shift = 0;
        }
        self.hdr.len = n as u8;
    }
}

/// `Inner::summary` over one format's arrays (`n` slots): `min0` and the
/// other mins, in the format's units; `key` maps a unit back to a key for
/// the links' alignment exponents. `min`, `max` and `gap` of the result are
/// in the format's units too.
#[inline(always)]
fn inner_summary_of<K: Copy + Ord + Into<u64> + core::ops::Sub<Output = K>>(
    min0: K,
    mins: impl Iterator<Item = K>,
    max: &[K],
    gap: &[K],
    al: &[u8],
    key: impl Fn(K) -> u64,
) -> Summary {
    let mut g = gap.iter().copied().max().unwrap_or(min0);
    let a = al.iter().copied().max().unwrap_or(0);
    // No data-dependent branch: the link gaps between children are never
    // at address 0 (`max[i - 1] >= 1`), so `link_bits` applies.
    let mut bits = 0;
    for (&prev_max, mn) in max.iter().zip(mins) {
        g = g.max(mn - prev_max);
        bits |= link_bits(key(prev_max), key(mn));
    }
    Summary {
        min: min0.into(),
        max: max.last().copied().map_or(0, Into::into),
        gap: g.into(),
        al: a.max(link_exp_of(bits)),
    }
}

#[cfg(all(test, not(loom)))]
impl Inner {
    /// Test-only: writes `v` into the `al` of the first unused slot (an
    /// I5 corruption, or its undo).
    pub(crate) fn poke_unused_al(&mut self, v: u8) {
        let n = self.len();
        match self.narrow_mut() {
            Some(b) => b.al[n] = v,
            None => self.wide_mut().al[n] = v,
        }
    }

    /// Test-only: encodes `items` wide (`None`) or narrow at scale
    /// `2^shift`, whether or not that is the canonical format (I11).
    pub(crate) fn force_encoding(&mut self, items: &[InnerItem], shift: Option<u32>) {
        self.set_items(items);
        let n = items.len();
        match shift {
            None => {
                let mut b = WideInner {
                    min: [u64::MAX; INNER_CAP],
                    child: [ptr::null_mut(); INNER_CAP],
                    max: [u64::MAX; INNER_CAP],
                    gap: [u64::MAX; INNER_CAP],
                    al: [u8::MAX; INNER_CAP],
                };
                for (i, &(mn, mx, g, al, c)) in items.iter().enumerate() {
                    (b.min[i], b.max[i], b.gap[i], b.al[i], b.child[i]) = (mn, mx, g, al, c);
                }
                self.body.wide = b;
                self.hdr.wide = true;
                self.hdr.shift = 0;
            }
            Some(sh) => {
                let Some(b) = self.narrow_mut() else {
                    panic!("force_encoding: the slots need the wide format")
                };
                let base = b.base;
                for (i, &(mn, mx, g, _, _)) in items.iter().enumerate() {
                    if i > 0 {
                        b.min[i - 1] = ((mn - base) >> sh) as u32;
                    }
                    b.max[i] = ((mx - base) >> sh) as u32;
                    b.gap[i] = (g >> sh) as u32;
                }
                self.hdr.shift = sh as u8;
            }
        }
        assert_eq!(self.len(), n);
        assert!(
            (0..n).all(|i| self.item(i) == items[i]),
            "re-encoding changed a slot"
        );
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
    /// Most slots a node can hold when its keys allow the narrow format
    /// (`NARROW_CAP` for a leaf, I10; `INNER_NARROW_CAP` for an inner
    /// node, I11).
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
    let mut v = Vec::with_capacity(2 * NARROW_CAP.max(INNER_NARROW_CAP) + 2);
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

impl Slots for Inner {
    type Item = InnerItem;
    const CAP: usize = INNER_CAP;
    const MAX: usize = INNER_NARROW_CAP;
    const MIN: usize = INNER_MIN;
    #[inline]
    fn len(&self) -> usize {
        self.hdr.len as usize
    }
    #[inline]
    fn item(&self, i: usize) -> Self::Item {
        (
            self.min(i),
            self.max(i),
            self.gap(i),
            self.al(i),
            self.child(i),
        )
    }
    fn fits(items: &[Self::Item]) -> bool {
        inner_fits(items)
    }
    fn set_items(&mut self, items: &[Self::Item]) {
        Inner::set_items(self, items);
    }
    fn summary(&self) -> Summary {
        Inner::summary(self)
    }
    fn insert_item(&mut self, pos: usize, it: Self::Item) -> bool {
        let n = self.len();
        if n == INNER_NARROW_CAP.max(INNER_CAP) {
            return false;
        }
        debug_assert!(pos <= n);
        let mut buf = [(0, 0, 0, 0, ptr::null_mut()); INNER_NARROW_CAP + 1];
        self.decode(&mut buf);
        buf.copy_within(pos..n, pos + 1);
        buf[pos] = it;
        if !inner_fits(&buf[..=n]) {
            return false;
        }
        self.set_items(&buf[..=n]);
        true
    }
    fn remove_item(&mut self, pos: usize) -> Self::Item {
        let mut buf = [(0, 0, 0, 0, ptr::null_mut()); INNER_NARROW_CAP + 1];
        let n = self.decode(&mut buf);
        let it = buf[pos];
        buf.copy_within(pos + 1..n, pos);
        // Fits: fewer slots whose keys, relative to the (possibly later)
        // first min, are still multiples of the old scale, over a span no
        // wider (I11).
        self.set_items(&buf[..n - 1]);
        it
    }
    fn append_from(&mut self, other: &Self) -> bool {
        let (n, m) = (self.len(), other.len());
        if n + m > INNER_NARROW_CAP.max(INNER_CAP) {
            return false;
        }
        let mut buf = [(0, 0, 0, 0, ptr::null_mut()); INNER_NARROW_CAP + 1];
        self.decode(&mut buf);
        for k in 0..m {
            buf[n + k] = other.item(k);
        }
        if !inner_fits(&buf[..n + m]) {
            return false;
        }
        self.set_items(&buf[..n + m]);
        true
    }
}

/// The slot item an inner node stores for `child`.
pub(crate) fn inner_item(child: *mut Header, s: Summary) -> InnerItem {
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
    let (kind, len, wide, shift) = unsafe { ((*n).kind, (*n).len, (*n).wide, (*n).shift) };
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
            shift,
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
/// node kind. It lives in the writer state behind the tree's mutex (in the
/// transaction state `write::Core`, which a write transaction uses in place
/// under that lock): no lock of its own, no chunking.
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

    /// `rank_le` equals the plain count on every prefix length (the rest
    /// sentinels), for keys at and next to `x`, at the top of the range
    /// (`u32::MAX - 1`, the saturated search key) and for the overlapping
    /// last chunk of 10 and 14 keys (and the scalar loop at 2): it fails if a chunk is skipped or
    /// misplaced, if the compare is signed, or if `N` is not the default.
    #[test]
    fn rank_le_counts_sorted_prefixes() {
        fn check<const N: usize>() {
            let top = u32::MAX - 1;
            for len in 0..=N {
                for first in [0, 1, 0x7fff_fff0, top - N as u32 * 3] {
                    let mut keys = [u32::MAX; N];
                    for (k, key) in keys.iter_mut().enumerate().take(len) {
                        *key = first + 3 * k as u32;
                    }
                    let probes = keys[..len]
                        .iter()
                        .flat_map(|&k| [k.saturating_sub(1), k, k.saturating_add(1).min(top)])
                        .chain([0, 0x7fff_ffff, 0x8000_0000, top]);
                    for x in probes {
                        let want = keys.iter().filter(|&&k| k <= x).count();
                        assert_eq!(rank_le(&keys, x), want, "N {N} len {len} x {x:#x}");
                        for cap in 0..=N {
                            assert_eq!(
                                rank_le_upto(&keys, x, cap),
                                want.min(cap),
                                "N {N} len {len} x {x:#x} cap {cap}"
                            );
                        }
                    }
                }
            }
        }
        check::<2>();
        check::<4>();
        check::<10>();
        check::<14>();
    }

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

    /// `n` inner slots with the given `(min, max, gap)`, null children.
    fn inner(slots: &[(u64, u64, u64)]) -> Inner {
        let mut n = Inner::new(1);
        let items: Vec<_> = slots
            .iter()
            .map(|&(a, b, g)| (a, b, g, 3, ptr::null_mut()))
            .collect();
        n.set_items(&items);
        n
    }

    /// Every counting search agrees with the decoded keys at and around
    /// each key (and at the extremes), whatever the format and scale.
    fn searches_exact(n: &Inner) {
        let keys: Vec<_> = (0..n.len()).flat_map(|i| [n.min(i), n.max(i)]).collect();
        let probes = keys
            .iter()
            .flat_map(|&k| {
                [
                    k.wrapping_sub(1),
                    k,
                    k.wrapping_add(1),
                    k.wrapping_add(4095),
                ]
            })
            .chain([0, 1, u64::MAX - 1, u64::MAX]);
        for x in probes {
            let count = |f: &dyn Fn(usize) -> bool| (0..n.len()).filter(|&i| f(i)).count();
            assert_eq!(n.count_le_min(x), count(&|i| n.min(i) <= x), "{x:#x}");
            assert_eq!(n.count_lt_min(x), count(&|i| n.min(i) < x), "{x:#x}");
            assert_eq!(n.count_le_max(x), count(&|i| n.max(i) <= x), "{x:#x}");
            assert_eq!(n.count_lt_max(x), count(&|i| n.max(i) < x), "{x:#x}");
        }
    }

    /// I11 at its edges: the scaled span `u32::MAX - 1` is narrow and
    /// `u32::MAX` is wide (the sentinel is never a key), at scale 2^12 and
    /// 2^0; the shift is the keys' common one (an odd offset or gap drops
    /// it); eleven slots that need the wide format do not fit.
    #[test]
    fn inner_format_edges_and_exact_searches() {
        let m = u64::from(u32::MAX);
        for base in [0, 7 << 12, u64::MAX - (m << 12) - (1 << 12)] {
            for (sh, unit) in [(12, 1u64 << 12), (0, 1)] {
                // Scaled offsets: child 0 [0, 1), child 1 [3, span).
                let mk = |span: u64, g: u64| {
                    inner(&[
                        (base, base + unit, 0),
                        (base + 3 * unit, base + span * unit, g * unit),
                    ])
                };
                let n = mk(m - 1, 5);
                assert!(!n.is_wide() && u32::from(n.hdr.shift) == sh && n.sentinels_ok());
                assert!(n.format_error().is_none());
                assert_eq!(n.summary().max, base + (m - 1) * unit);
                searches_exact(&n);
                let w = mk(m, 5);
                assert!(w.is_wide() && w.hdr.shift == 0 && w.sentinels_ok());
                assert!(w.format_error().is_none());
                searches_exact(&w);
            }
            // Page-aligned keys but one gap of a page and a byte: shift 0.
            let n = inner(&[(base, base + 4096, 0), (base + 8192, base + 65536, 4097)]);
            assert!(!n.is_wide() && n.hdr.shift == 0);
            searches_exact(&n);
            // Gaps of 2^13 only, keys 2^12 apart: shift 12 from the keys.
            let n = inner(&[(base, base + 4096, 8192), (base + 8192, base + 65536, 8192)]);
            assert_eq!(n.hdr.shift, 12);
            searches_exact(&n);
        }
        // Eleven page-aligned children over 2^40 bytes: narrow at shift 12,
        // and no format once one key is off the page scale.
        let t = 1u64 << 36;
        let eleven: Vec<_> = (0..11u64).map(|i| (i * t, i * t + 4096, 0)).collect();
        let n = inner(&eleven);
        assert!(!n.is_wide() && n.hdr.shift == 12 && n.len() == 11);
        searches_exact(&n);
        let mut items: Vec<_> = (0..11).map(|i| n.item(i)).collect();
        items[4].0 += 1;
        assert!(!inner_fits(&items));
        let mut c = inner(&eleven);
        let s = Summary {
            min: 4 * t + 1,
            max: 4 * t + 4096,
            gap: 0,
            al: 3,
        };
        assert!(!c.set(4, ptr::null_mut(), s), "no format holds it");
        assert!((0..11).all(|i| c.item(i) == n.item(i)), "unchanged");
        // In place when the key stays on the scale; the shift grows when
        // the only odd offset leaves.
        let mut c = inner(&[(0, 4096, 0), (3 << 12, 8 << 12, 0)]);
        let s = |min, max| Summary {
            min,
            max,
            gap: 0,
            al: 3,
        };
        assert!(c.set(1, ptr::null_mut(), s(4 << 12, 8 << 12)));
        assert_eq!(c.hdr.shift, 12, "max[0] = 1 page still odd");
        assert!(c.set(0, ptr::null_mut(), s(0, 2 << 12)));
        assert_eq!(c.hdr.shift, 13);
        assert!(c.format_error().is_none());
        searches_exact(&c);
    }

    /// `Leaf::summary` and `Inner::summary` (which fold the links'
    /// exponents with one `or` each, `link_bits`) against the definition:
    /// the largest gap and the largest `align_exp` over every free interval
    /// between two entries (and, for an inner node, every child's stored
    /// `gap`/`al`), for random narrow and wide leaves and inner nodes at
    /// page and byte scale. validate() recomputes I3 with these same
    /// functions, so this is what checks them.
    #[test]
    fn summaries_match_the_definition() {
        // The definition, over children `(min, max, gap, al, _)` in order.
        fn reference(items: &[InnerItem]) -> Summary {
            let (mut gap, mut al) = (0, 0);
            for (i, it) in items.iter().enumerate() {
                (gap, al) = (gap.max(it.2), al.max(it.3));
                if i > 0 {
                    gap = gap.max(it.0 - items[i - 1].1);
                    al = al.max(align_exp_or0(items[i - 1].1, it.0));
                }
            }
            Summary {
                min: items[0].0,
                max: items[items.len() - 1].1,
                gap,
                al,
            }
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for round in 0..4000 {
            let unit = if round % 2 == 0 { 4096 } else { 1 };
            let far = round % 3 == 0; // spans past 32 bits: the wide format
            let step = |r: &mut dyn FnMut(u64) -> u64| {
                let s = r(1 << 20) * unit + u64::from(far) * (r(4) << 33);
                s.max(1)
            };
            let mut at = 1 + rnd(1 << 30) * unit;
            let n = 1 + rnd(NARROW_CAP as u64) as usize;
            let mut keys = Vec::new();
            for k in 0..n {
                let s = at + if k == 0 { 0 } else { step(&mut rnd) };
                let e = s + step(&mut rnd);
                keys.push((s, e));
                at = e;
            }
            if !leaf_fits(
                &keys
                    .iter()
                    .map(|&(s, e)| (s, e, ptr::null_mut::<u64>()))
                    .collect::<Vec<_>>(),
            ) {
                keys.truncate(LEAF_CAP);
            }
            // A leaf's summary is its entries' as children without gaps of
            // their own.
            let flat: Vec<InnerItem> = keys
                .iter()
                .map(|&(s, e)| (s, e, 0, 0, ptr::null_mut()))
                .collect();
            assert_eq!(leaf(&keys).summary(), reference(&flat), "leaf {keys:x?}");
            // The same keys as an inner node's children, each with a gap
            // and exponent of its own.
            let m = keys.len().min(INNER_NARROW_CAP);
            let items: Vec<InnerItem> = keys[..m]
                .iter()
                .map(|&(s, e)| {
                    let g = rnd((e - s) / unit + 1) * unit;
                    (s, e, g, rnd(40) as u8, ptr::null_mut())
                })
                .collect();
            let items = if inner_fits(&items) {
                items
            } else {
                items[..INNER_CAP.min(m)].to_vec()
            };
            let mut inn = Inner::new(1);
            inn.set_items(&items);
            assert_eq!(inn.summary(), reference(&items), "inner {items:x?}");
        }
    }
}
