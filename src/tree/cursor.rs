//! Cursors (Linux `ma_state`): a position in one version of the tree that
//! moves to neighbouring entries without a descent per step, and, inside a
//! [`WriteTxn`], edits at that position (docs/DESIGN.md §2.8).
//!
//! A cursor is either **on an entry** or **in a gap** at an address:
//! * on an entry it caches the entry's leaf and slot, so `get` is O(1) and
//!   `next`/`prev` step inside the leaf in O(1), descending again
//!   (O(height)) only to cross into the neighbouring leaf: amortised O(1)
//!   per step, as [`Iter`](super::Iter);
//! * in a gap at `a`, `next` moves to the first entry ending above `a` and
//!   `prev` to the last entry starting below `a`. Moving past the last entry
//!   leaves the cursor in the gap at `u64::MAX` (so `prev` comes back to the
//!   last entry), moving before the first leaves it at 0 (so `next` comes
//!   back to the first). Removing the current entry leaves the cursor in the
//!   gap at the entry's start.
//!
//! An edit through [`CursorMut`] changes nodes (copy-on-write, merges,
//! splits), so the cached leaf is dropped and the cursor re-seeks its
//! position from the root: O(height) per edit on top of the edit itself.

use super::node::{Header, Leaf, Slots};
use super::read::{self, LeafPos};
use super::{Error, ErrorKind, ReadGuard, WriteTxn};
use core::marker::PhantomData;
use core::ops::Range;

/// Where a cursor is.
enum Pos<V> {
    /// On entry `idx` of `leaf` (a leaf of the cursor's version).
    Entry(*const Leaf<V>, usize),
    /// In a gap, at this address.
    Gap(u64),
}

// Not derived: that would require `V: Copy`.
impl<V> Clone for Pos<V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<V> Copy for Pos<V> {}

/// A read cursor over one version: a [`ReadGuard`]'s snapshot
/// ([`ReadGuard::cursor`]), or a transaction's pending version through
/// [`CursorMut`] (which offers the same reads and moves).
///
/// ```
/// let t = maple_rcu::MapleTree::new();
/// for i in 0..5u64 {
///     t.insert(i * 10..i * 10 + 5, i).unwrap();
/// }
/// let r = t.pin();
/// let mut c = r.cursor(17); // in a gap: the next entry
/// assert_eq!(c.get(), Some((20..25, &2)));
/// assert_eq!(c.next(), Some((30..35, &3)));
/// assert_eq!(c.prev(), Some((20..25, &2)));
/// ```
pub struct Cursor<'a, V> {
    root: *const Header,
    pos: Pos<V>,
    _v: PhantomData<&'a V>,
}

// SAFETY: as `ReadGuard`: a cursor only reads immutable nodes (I6) kept alive
// by the guard or the writer lock it borrows, and hands out `&V`.
unsafe impl<V: Sync> Send for Cursor<'_, V> {}
// SAFETY: as above; `&Cursor` only reads.
unsafe impl<V: Sync> Sync for Cursor<'_, V> {}

impl<V> Clone for Cursor<'_, V> {
    fn clone(&self) -> Self {
        Self {
            root: self.root,
            pos: self.pos,
            _v: PhantomData,
        }
    }
}

impl<V> core::fmt::Debug for Cursor<'_, V> {
    /// The current entry's range, or the gap address.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match (self.get(), self.pos) {
            (Some((r, _)), _) => f.debug_tuple("Cursor").field(&r).finish(),
            (None, Pos::Gap(a)) => f.debug_struct("Cursor").field("gap_at", &a).finish(),
            (None, Pos::Entry(..)) => unreachable!("an entry position has an entry"),
        }
    }
}

impl<V: Send> core::fmt::Debug for CursorMut<'_, '_, V> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.cur.fmt(f)
    }
}

impl<'a, V> Cursor<'a, V> {
    /// A cursor on the first entry ending above `addr` (the entry containing
    /// `addr`, else the next one), or in the gap at `u64::MAX` if none.
    ///
    /// # Safety
    /// R1 for `root`, for `'a`.
    unsafe fn seek(root: *const Header, addr: u64) -> Self {
        let mut c = Self {
            root,
            pos: Pos::Gap(addr),
            _v: PhantomData,
        };
        // SAFETY: our requirement.
        let p = unsafe { read::next::<V>(root, addr) };
        c.land(p, u64::MAX);
        c
    }

    /// Moves onto `p`, or into the gap at `miss` if there is none.
    fn land(&mut self, p: Option<LeafPos<'_, V>>, miss: u64) {
        self.pos = match p {
            Some(p) => Pos::Entry(p.leaf, p.idx),
            None => Pos::Gap(miss),
        };
    }

    /// The leaf position of the current entry.
    fn here(&self) -> Option<LeafPos<'_, V>> {
        match self.pos {
            Pos::Entry(leaf, idx) => Some(LeafPos {
                // SAFETY: R1 (the constructor's requirement) keeps the leaf
                // of the cursor's version live and unchanged while `self`
                // exists; `CursorMut` re-seeks after every change it makes.
                leaf: unsafe { &*leaf },
                idx,
            }),
            Pos::Gap(_) => None,
        }
    }

    /// The entry after the cursor's position, without moving.
    fn after(&self) -> Option<LeafPos<'_, V>> {
        match self.here() {
            Some(p) if p.idx + 1 < p.leaf.len() => Some(LeafPos {
                leaf: p.leaf,
                idx: p.idx + 1,
            }),
            // SAFETY: R1 for `root`.
            Some(p) => unsafe { read::next::<V>(self.root, p.leaf.item(p.idx).1) },
            None => match self.pos {
                // SAFETY: R1 for `root`.
                Pos::Gap(a) => unsafe { read::next::<V>(self.root, a) },
                Pos::Entry(..) => unreachable!(),
            },
        }
    }

    /// The entry before the cursor's position, without moving.
    fn before(&self) -> Option<LeafPos<'_, V>> {
        match self.here() {
            Some(p) if p.idx > 0 => Some(LeafPos {
                leaf: p.leaf,
                idx: p.idx - 1,
            }),
            // SAFETY: R1 for `root`.
            Some(p) => unsafe { read::prev::<V>(self.root, p.leaf.item(p.idx).0) },
            None => match self.pos {
                // SAFETY: R1 for `root`.
                Pos::Gap(a) => unsafe { read::prev::<V>(self.root, a) },
                Pos::Entry(..) => unreachable!(),
            },
        }
    }

    /// The current entry, or `None` in a gap. O(1).
    ///
    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// t.insert(10..20, 'a').unwrap();
    /// let r = t.pin();
    /// assert_eq!(r.cursor(0).get(), Some((10..20, &'a')));
    /// assert_eq!(r.cursor(20).get(), None); // nothing ends above 20
    /// ```
    pub fn get(&self) -> Option<(Range<u64>, &V)> {
        self.here().map(|p| p.entry())
    }

    /// Moves to the next entry and returns it; past the last entry, moves
    /// into the gap at `u64::MAX` and returns `None`. Amortised O(1): a
    /// descent only to cross into the next leaf.
    ///
    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// t.insert(0..1, 'a').unwrap();
    /// t.insert(5..6, 'b').unwrap();
    /// let r = t.pin();
    /// let mut c = r.cursor(0);
    /// assert_eq!(c.next(), Some((5..6, &'b')));
    /// assert_eq!(c.next(), None);
    /// assert_eq!(c.prev(), Some((5..6, &'b'))); // back from the end
    /// ```
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<(Range<u64>, &V)> {
        let p = self.after().map(|p| (p.leaf as *const Leaf<V>, p.idx));
        self.pos = match p {
            Some((l, i)) => Pos::Entry(l, i),
            None => Pos::Gap(u64::MAX),
        };
        self.get()
    }

    /// Moves to the previous entry and returns it; before the first entry,
    /// moves into the gap at 0 and returns `None`. Amortised O(1).
    ///
    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// t.insert(0..1, 'a').unwrap();
    /// t.insert(5..6, 'b').unwrap();
    /// let r = t.pin();
    /// let mut c = r.cursor(5);
    /// assert_eq!(c.prev(), Some((0..1, &'a')));
    /// assert_eq!(c.prev(), None);
    /// assert_eq!(c.next(), Some((0..1, &'a'))); // back from the start
    /// ```
    pub fn prev(&mut self) -> Option<(Range<u64>, &V)> {
        let p = self.before().map(|p| (p.leaf as *const Leaf<V>, p.idx));
        self.pos = match p {
            Some((l, i)) => Pos::Entry(l, i),
            None => Pos::Gap(0),
        };
        self.get()
    }

    /// The entry [`next`](Self::next) would move to, without moving.
    /// O(1) inside a leaf, else O(height).
    ///
    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// t.insert(0..1, 'a').unwrap();
    /// t.insert(5..6, 'b').unwrap();
    /// let r = t.pin();
    /// let c = r.cursor(0);
    /// assert_eq!(c.peek_next(), Some((5..6, &'b')));
    /// assert_eq!(c.get(), Some((0..1, &'a')));
    /// ```
    pub fn peek_next(&self) -> Option<(Range<u64>, &V)> {
        self.after().map(|p| p.entry())
    }

    /// The entry [`prev`](Self::prev) would move to, without moving.
    /// O(1) inside a leaf, else O(height).
    ///
    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// t.insert(0..1, 'a').unwrap();
    /// let r = t.pin();
    /// assert_eq!(r.cursor(3).peek_prev(), Some((0..1, &'a'))); // from the gap at 3
    /// ```
    pub fn peek_prev(&self) -> Option<(Range<u64>, &V)> {
        self.before().map(|p| p.entry())
    }

    /// Linux `mas_find(limit)`: moves to the next entry if it starts below
    /// `limit` and returns it; otherwise returns `None` and does not move.
    /// Costs as [`next`](Self::next).
    ///
    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// t.insert(0..1, 'a').unwrap();
    /// t.insert(5..6, 'b').unwrap();
    /// let r = t.pin();
    /// let mut c = r.cursor(0);
    /// assert_eq!(c.find(5), None); // 'b' starts at the limit
    /// assert_eq!(c.find(6), Some((5..6, &'b')));
    /// ```
    pub fn find(&mut self, limit: u64) -> Option<(Range<u64>, &V)> {
        let p = self.after().filter(|p| p.leaf.item(p.idx).0 < limit);
        let p = p.map(|p| (p.leaf as *const Leaf<V>, p.idx));
        let (l, i) = p?;
        self.pos = Pos::Entry(l, i);
        self.get()
    }

    /// The free range between the previous entry (or 0) and the current
    /// entry; in a gap, the free range containing the cursor's address.
    /// `None` if it is empty (adjacent entries). O(1) inside a leaf, else
    /// O(height).
    ///
    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// t.insert(0..10, ()).unwrap();
    /// t.insert(20..30, ()).unwrap();
    /// t.insert(30..40, ()).unwrap();
    /// let r = t.pin();
    /// assert_eq!(r.cursor(25).gap_before(), Some(10..20));
    /// assert_eq!(r.cursor(35).gap_before(), None);
    /// assert_eq!(r.cursor(40).gap_before(), Some(40..u64::MAX)); // in the gap
    /// ```
    pub fn gap_before(&self) -> Option<Range<u64>> {
        let lo = self.before().map_or(0, |p| p.leaf.item(p.idx).1);
        let hi = match self.here() {
            Some(p) => p.leaf.item(p.idx).0,
            None => self.after().map_or(u64::MAX, |p| p.leaf.item(p.idx).0),
        };
        (lo < hi).then_some(lo..hi)
    }

    /// The free range between the current entry and the next one (or
    /// `u64::MAX`); in a gap, as [`gap_before`](Self::gap_before). `None` if
    /// it is empty. O(1) inside a leaf, else O(height).
    ///
    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// t.insert(0..10, ()).unwrap();
    /// t.insert(20..30, ()).unwrap();
    /// let r = t.pin();
    /// assert_eq!(r.cursor(0).gap_after(), Some(10..20));
    /// assert_eq!(r.cursor(20).gap_after(), Some(30..u64::MAX));
    /// ```
    pub fn gap_after(&self) -> Option<Range<u64>> {
        let Some(p) = self.here() else {
            return self.gap_before();
        };
        let lo = p.leaf.item(p.idx).1;
        let hi = self.after().map_or(u64::MAX, |p| p.leaf.item(p.idx).0);
        (lo < hi).then_some(lo..hi)
    }
}

impl<'a, V> ReadGuard<'a, V> {
    /// A cursor on the first entry ending above `addr` (the entry containing
    /// `addr`, else the next one; in the gap at `u64::MAX` if there is none).
    /// O(height); its moves are amortised O(1) ([`Cursor`]).
    ///
    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// t.insert(10..20, 'a').unwrap();
    /// let r = t.pin();
    /// assert_eq!(r.cursor(15).get(), Some((10..20, &'a')));
    /// assert_eq!(r.cursor(5).get(), Some((10..20, &'a')));
    /// ```
    pub fn cursor(&self, addr: u64) -> Cursor<'_, V> {
        // SAFETY: R1 holds for the guard's root while `self` is borrowed.
        unsafe { Cursor::seek(self.root(), addr) }
    }
}

/// A cursor inside a [`WriteTxn`] that can edit at its position
/// ([`WriteTxn::cursor`]). It has a [`Cursor`]'s reads and moves over the
/// pending version, each borrowing the `CursorMut` itself. Every edit
/// re-seeks the cursor from the root (O(height)) after the edit's own cost.
///
/// It does not dereference to its inner `Cursor`: that cursor's lifetime is
/// the whole borrow of the transaction and `Cursor` is `Clone`, so a clone
/// would outlive this cursor's edits and read this transaction's nodes while
/// they change in place or go back to the pool (R1 broken, a `&V` from an
/// unused slot's null pointer). This does not compile:
///
/// ```compile_fail,E0614
/// let t = maple_rcu::MapleTree::new();
/// let mut w = t.write();
/// w.insert(0..5, 0u64).unwrap();
/// let mut cm = w.cursor(0);
/// let stale = (*cm).clone();
/// cm.remove();
/// stale.get();
/// ```
///
/// ```
/// let t = maple_rcu::MapleTree::new();
/// let mut w = t.write();
/// for i in 0..6u64 {
///     w.insert(i * 10..i * 10 + 5, i).unwrap();
/// }
/// // Remove every odd value, walking once.
/// let mut c = w.cursor_front();
/// while let Some((_, v)) = c.get() {
///     if v % 2 == 1 {
///         c.remove();
///     }
///     c.next();
/// }
/// let v: Vec<_> = w.iter().map(|(_, v)| *v).collect();
/// assert_eq!(v, [0, 2, 4]);
/// ```
pub struct CursorMut<'t, 'a, V: Send> {
    txn: &'t mut WriteTxn<'a, V>,
    cur: Cursor<'t, V>,
}

// Not `Deref<Target = Cursor>`: see the type's docs (a clone of the target
// would outlive the edits). Each read borrows `self`.
impl<V: Send> CursorMut<'_, '_, V> {
    /// [`Cursor::get`]: the current entry, or `None` in a gap. O(1).
    pub fn get(&self) -> Option<(Range<u64>, &V)> {
        self.cur.get()
    }

    /// [`Cursor::next`]: moves to the next entry. Amortised O(1).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<(Range<u64>, &V)> {
        self.cur.next()
    }

    /// [`Cursor::prev`]: moves to the previous entry. Amortised O(1).
    pub fn prev(&mut self) -> Option<(Range<u64>, &V)> {
        self.cur.prev()
    }

    /// [`Cursor::peek_next`]: the next entry, without moving.
    pub fn peek_next(&self) -> Option<(Range<u64>, &V)> {
        self.cur.peek_next()
    }

    /// [`Cursor::peek_prev`]: the previous entry, without moving.
    pub fn peek_prev(&self) -> Option<(Range<u64>, &V)> {
        self.cur.peek_prev()
    }

    /// [`Cursor::find`]: moves to the next entry starting below `limit`.
    pub fn find(&mut self, limit: u64) -> Option<(Range<u64>, &V)> {
        self.cur.find(limit)
    }

    /// [`Cursor::gap_before`].
    pub fn gap_before(&self) -> Option<Range<u64>> {
        self.cur.gap_before()
    }

    /// [`Cursor::gap_after`].
    pub fn gap_after(&self) -> Option<Range<u64>> {
        self.cur.gap_after()
    }
}

impl<'t, 'a, V: Send> CursorMut<'t, 'a, V> {
    /// Re-seeks after an edit: onto the entry starting at `at` if `on`, else
    /// into the gap at `at`.
    fn reseek(&mut self, at: u64, on: bool) {
        if !on {
            // No node pointer kept: nothing to look up.
            self.cur.root = self.txn.root();
            self.cur.pos = Pos::Gap(at);
            return;
        }
        // SAFETY: R1 for the working root under the writer lock; the
        // transaction is borrowed by this cursor, so only the cursor changes
        // it, and it re-seeks after every change.
        self.cur = unsafe { Cursor::seek(self.txn.root(), at) };
    }

    /// The current entry's range, if on one.
    fn range(&self) -> Option<Range<u64>> {
        self.cur.get().map(|(r, _)| r)
    }

    /// Checks every invariant on the pending version, as
    /// [`WriteTxn::validate`]. O(n).
    ///
    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// let mut w = t.write();
    /// w.insert(0..10, 'a').unwrap();
    /// let mut c = w.cursor(0);
    /// c.remove();
    /// c.validate().unwrap();
    /// ```
    pub fn validate(&self) -> Result<(), super::ValidateError> {
        self.txn.validate()
    }

    /// Removes the current entry and returns its range; the cursor moves
    /// into the gap at the entry's start (so `next` gives the entry after
    /// it and `prev` the one before). The value is retired as by
    /// [`WriteTxn::remove`]. In a gap, does nothing and returns `None`.
    /// Runs no user code. O(height).
    ///
    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// let mut w = t.write();
    /// w.insert(0..1, 'a').unwrap();
    /// w.insert(5..6, 'b').unwrap();
    /// let mut c = w.cursor(0);
    /// assert_eq!(c.remove(), Some(0..1));
    /// assert_eq!(c.get(), None);
    /// assert_eq!(c.next(), Some((5..6, &'b')));
    /// ```
    pub fn remove(&mut self) -> Option<Range<u64>> {
        let r = self.range()?;
        self.txn.core.remove(r.start);
        self.reseek(r.start, false);
        Some(r)
    }

    /// Replaces the current entry's value; the old one is retired as by
    /// [`WriteTxn::remove`] (readers may still hold it, so it cannot be
    /// handed back). The cursor stays on the entry. Runs no user code.
    /// O(height): one descent, one leaf splice.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] in a gap, with the value given back.
    ///
    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// let mut w = t.write();
    /// w.insert(0..10, 'a').unwrap();
    /// let mut c = w.cursor(0);
    /// assert_eq!(c.replace('z').ok(), Some(0..10));
    /// assert_eq!(c.get(), Some((0..10, &'z')));
    /// ```
    pub fn replace(&mut self, value: V) -> Result<Range<u64>, Error<V>> {
        let Some(r) = self.range() else {
            return Err(Error::new(ErrorKind::NotFound, value));
        };
        // Exactly one entry, covered: no piece, so `clone` never runs.
        self.txn
            .core
            .splice(r.start, r.end, Some(value), |_| unreachable!("no split"));
        self.reseek(r.start, true);
        Ok(r)
    }

    /// Inserts `range -> value` (as [`WriteTxn::insert`]) and moves onto the
    /// new entry. Runs no user code. O(height).
    ///
    /// # Errors
    /// As [`WriteTxn::insert`] (the cursor does not move).
    ///
    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// let mut w = t.write();
    /// w.insert(0..10, 'a').unwrap();
    /// let mut c = w.cursor(0);
    /// c.insert(20..30, 'b').unwrap();
    /// assert_eq!(c.prev(), Some((0..10, &'a')));
    /// assert!(c.insert(5..25, 'c').is_err());
    /// ```
    pub fn insert(&mut self, range: Range<u64>, value: V) -> Result<(), Error<V>> {
        let s = range.start;
        self.txn.insert(range, value)?;
        self.reseek(s, true);
        Ok(())
    }

    /// Stores `range -> value`, overwriting what overlaps it (as
    /// [`WriteTxn::store`], same `V::clone` contract and cost), and moves
    /// onto the new entry.
    ///
    /// # Errors
    /// [`ErrorKind::EmptyRange`], with the value given back (the cursor does
    /// not move).
    ///
    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// let mut w = t.write();
    /// w.insert(0..10, 'a').unwrap();
    /// let mut c = w.cursor(0);
    /// c.store(5..15, 'b').unwrap();
    /// assert_eq!(c.get(), Some((5..15, &'b')));
    /// assert_eq!(c.prev(), Some((0..5, &'a')));
    /// ```
    pub fn store(&mut self, range: Range<u64>, value: V) -> Result<(), Error<V>>
    where
        V: Clone,
    {
        let s = range.start;
        self.txn.store(range, value)?;
        self.reseek(s, true);
        Ok(())
    }
}

impl<'a, V: Send> WriteTxn<'a, V> {
    /// A cursor over the pending version, on the first entry ending above
    /// `addr` (the entry containing `addr`, else the next one; in the gap at
    /// `u64::MAX` if none), that can edit there ([`CursorMut`]). O(height).
    ///
    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// let mut w = t.write();
    /// w.insert(10..20, 'a').unwrap();
    /// let mut c = w.cursor(12);
    /// assert_eq!(c.replace('b').ok(), Some(10..20));
    /// w.commit();
    /// assert_eq!(t.pin().get(12), Some((10..20, &'b')));
    /// ```
    pub fn cursor(&mut self, addr: u64) -> CursorMut<'_, 'a, V> {
        // SAFETY: R1 for the working root under the writer lock; the cursor
        // borrows the transaction, so only it changes the tree meanwhile.
        let cur = unsafe { Cursor::seek(self.root(), addr) };
        CursorMut { txn: self, cur }
    }

    /// [`cursor`](Self::cursor) on the first entry. O(height).
    ///
    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// let mut w = t.write();
    /// w.insert(10..20, 'a').unwrap();
    /// assert_eq!(w.cursor_front().get(), Some((10..20, &'a')));
    /// ```
    pub fn cursor_front(&mut self) -> CursorMut<'_, 'a, V> {
        self.cursor(0)
    }

    /// A cursor on the last entry (in the gap at `u64::MAX` if the pending
    /// version is empty). O(height).
    ///
    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// let mut w = t.write();
    /// w.insert(0..1, 'a').unwrap();
    /// w.insert(10..20, 'b').unwrap();
    /// let mut c = w.cursor_back();
    /// assert_eq!(c.get(), Some((10..20, &'b')));
    /// assert_eq!(c.prev(), Some((0..1, &'a')));
    /// ```
    pub fn cursor_back(&mut self) -> CursorMut<'_, 'a, V> {
        let mut c = self.cursor(u64::MAX);
        c.prev();
        c
    }
}
