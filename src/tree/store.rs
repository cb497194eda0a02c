//! Overwriting writes: `store` (Linux `mtree_store_range`), `erase` (punch a
//! hole), exact-range removal, `clear` and `retain`.
//!
//! `store` and `erase` are one call to the transaction's splice
//! (`splice.rs`): one descent and one leaf splice when the affected entries
//! lie in one leaf, one round per leaf otherwise. A trimmed entry keeps its
//! boxed value, so readers of the old version and of the new one share that
//! value, exactly as they share every untouched entry after a copy-on-write,
//! and a `&V` keeps its address (§2.1). Only when an entry is cut in the
//! middle does the second piece need a new value: `V::clone`, the one piece
//! of user code these methods run under the writer lock. It runs before
//! anything is changed, so a panicking `clone` leaves the transaction as it
//! was.

use super::{Error, ErrorKind, MapleTree, WriteTxn};
use alloc::vec::Vec;
use core::ops::Range;
use core::ptr;

impl<V: Send> WriteTxn<'_, V> {
    /// Stores `range -> value` in the pending version, overwriting whatever
    /// was there (Linux `mtree_store_range`, rangemap's `insert`): entries
    /// inside `range` are removed, an entry sticking out on one side is
    /// trimmed to the part outside (it keeps its value, at the same address),
    /// and an entry containing `range` with room on both sides is split in
    /// two, the right piece getting `value.clone()` of the old value. Equal
    /// neighbours are not merged (no coalescing). Removed values are retired
    /// as by [`remove`](Self::remove).
    ///
    /// **`V::clone` runs under the writer lock**, only for that split and
    /// before anything changes: it must not write to this tree (deadlock); if
    /// it panics the pending version is unchanged. Nothing else of yours runs.
    ///
    /// O(height) when the overlapped entries lie in one leaf (one descent,
    /// one leaf splice, one copy of the path); otherwise O(l · height) for
    /// the l leaves they span, i.e. O((1 + k / 5) · height) for k entries,
    /// plus one insert ([DESIGN §2.8](crate::docs::design#28-api)).
    ///
    /// # Errors
    /// [`ErrorKind::EmptyRange`] for `start >= end`, with the value given back.
    ///
    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// let mut w = t.write();
    /// w.insert(0..100, 'a').unwrap();
    /// w.store(40..60, 'b').unwrap(); // splits 'a' in two
    /// w.store(90..110, 'c').unwrap(); // trims the right piece
    /// let v: Vec<_> = w.iter().map(|(r, v)| (r, *v)).collect();
    /// assert_eq!(v, [(0..40, 'a'), (40..60, 'b'), (60..90, 'a'), (90..110, 'c')]);
    /// w.commit();
    /// ```
    pub fn store(&mut self, range: Range<u64>, value: V) -> Result<(), Error<V>>
    where
        V: Clone,
    {
        if range.start >= range.end {
            return Err(Error::new(ErrorKind::EmptyRange, value));
        }
        self.core
            .splice(range.start, range.end, Some(value), V::clone);
        Ok(())
    }

    /// Removes `range` from the pending version (punches a hole): entries
    /// inside it are removed, entries sticking out are trimmed or split as by
    /// [`store`](Self::store) (same `V::clone` contract, same complexity).
    /// Returns how many entries were removed, trimmed or split.
    ///
    /// # Errors
    /// [`ErrorKind::EmptyRange`] for `start >= end` (nothing changes).
    ///
    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// let mut w = t.write();
    /// w.insert(0..10, 'a').unwrap();
    /// w.insert(10..20, 'b').unwrap();
    /// assert_eq!(w.erase(5..12), Ok(2));
    /// let v: Vec<_> = w.iter().map(|(r, v)| (r, *v)).collect();
    /// assert_eq!(v, [(0..5, 'a'), (12..20, 'b')]);
    /// ```
    pub fn erase(&mut self, range: Range<u64>) -> Result<usize, ErrorKind>
    where
        V: Clone,
    {
        if range.start >= range.end {
            return Err(ErrorKind::EmptyRange);
        }
        Ok(self.core.splice(range.start, range.end, None, V::clone))
    }

    /// Removes the entry that is exactly `range` (vm-allocator's `free`).
    /// Its value is retired as by [`remove`](Self::remove). Runs no user
    /// code. O(height).
    ///
    /// # Errors
    /// The pending version is unchanged: [`ErrorKind::EmptyRange`] for
    /// `start >= end`, [`ErrorKind::NotFound`] if no entry overlaps `range`,
    /// [`ErrorKind::NotExact`] if one does but none is exactly `range`.
    ///
    /// ```
    /// use maple_rcu::tree::ErrorKind;
    /// let t = maple_rcu::MapleTree::new();
    /// let mut w = t.write();
    /// w.insert(0x1000..0x3000, ()).unwrap();
    /// assert_eq!(w.remove_exact(0x1000..0x2000), Err(ErrorKind::NotExact));
    /// assert_eq!(w.remove_exact(0x4000..0x5000), Err(ErrorKind::NotFound));
    /// assert_eq!(w.remove_exact(0x1000..0x3000), Ok(()));
    /// assert!(w.is_empty());
    /// ```
    pub fn remove_exact(&mut self, range: Range<u64>) -> Result<(), ErrorKind> {
        self.find_exact(&range)?;
        self.core.remove(range.start);
        Ok(())
    }

    /// The value pointer of the entry that is exactly `range`, or why not.
    pub(super) fn find_exact(&self, range: &Range<u64>) -> Result<*mut V, ErrorKind> {
        if range.start >= range.end {
            return Err(ErrorKind::EmptyRange);
        }
        match self.next(range.start) {
            Some((r, v)) if r == *range => Ok(ptr::from_ref(v).cast_mut()),
            Some((r, _)) if r.start < range.end => Err(ErrorKind::NotExact),
            _ => Err(ErrorKind::NotFound),
        }
    }

    /// Removes every entry from the pending version; their values are
    /// retired as by [`remove`](Self::remove). Runs no user code.
    /// O(n): one walk over the nodes, no descent per entry.
    ///
    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// t.insert(0..1, 'a').unwrap();
    /// let mut w = t.write();
    /// w.clear();
    /// assert!(w.is_empty());
    /// w.commit();
    /// assert!(t.is_empty());
    /// ```
    pub fn clear(&mut self) {
        self.core.clear_all();
    }

    /// Keeps only the entries for which `keep(range, &value)` is true,
    /// visiting them in order; the others are retired as by
    /// [`remove`](Self::remove).
    ///
    /// **`keep` runs under the writer lock** (it is your code between this
    /// transaction's calls): it may read the tree, but writing to it
    /// deadlocks. If it panics, nothing has been removed yet.
    /// O(n + m · height) for n entries, m removed.
    ///
    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// let mut w = t.write();
    /// for i in 0..10u64 {
    ///     w.insert(i * 10..i * 10 + 5, i).unwrap();
    /// }
    /// w.retain(|_, v| v % 2 == 0);
    /// assert_eq!(w.iter().map(|(_, v)| *v).collect::<Vec<_>>(), [0, 2, 4, 6, 8]);
    /// ```
    pub fn retain(&mut self, mut keep: impl FnMut(Range<u64>, &V) -> bool) {
        let doomed: Vec<u64> = self
            .iter()
            .filter(|(r, v)| !keep(r.clone(), v))
            .map(|(r, _)| r.start)
            .collect();
        for s in doomed {
            self.core.remove(s);
        }
    }

    /// Takes the just-removed value `p` back out of the `removed` list, so
    /// commit does not retire it: the caller gives it a new owner.
    pub(super) fn keep_value(&mut self, p: *mut V) {
        unlist(&mut self.core.removed, p);
    }
}

/// Removes the last record of `p` from one of the transaction's value lists.
/// `Core::remove` appends, so it is the last element.
fn unlist<V>(list: &mut Vec<*mut V>, p: *mut V) {
    let i = list
        .iter()
        .rposition(|&q| q == p)
        .expect("the value was just listed");
    list.remove(i);
}

impl<V: Send> MapleTree<V> {
    /// [`WriteTxn::store`] as one transaction: stores `range -> value`,
    /// trimming or splitting whatever it overlaps (no coalescing), and
    /// publishes the result at once.
    ///
    /// **`V::clone` runs under the writer lock** when an entry containing
    /// `range` must be split (see [`WriteTxn::store`]); nothing else of yours
    /// runs. O(height) when the overlapped entries lie in one leaf, else
    /// O(height) per leaf they span (see [`WriteTxn::store`]).
    ///
    /// Takes the writer lock: **deadlocks** if this thread holds a
    /// [`WriteTxn`] of this tree ([more](MapleTree#deadlocks-by-contract)).
    ///
    /// # Errors
    /// [`ErrorKind::EmptyRange`], with the value given back.
    ///
    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// t.store(0..100, "rw").unwrap();
    /// t.store(0x10..0x20, "ro").unwrap();
    /// t.erase(0x18..0x30).unwrap();
    /// let r = t.pin();
    /// let v: Vec<_> = r.iter().map(|(r, v)| (r, *v)).collect();
    /// assert_eq!(v, [(0..0x10, "rw"), (0x10..0x18, "ro"), (0x30..100, "rw")]);
    /// ```
    pub fn store(&self, range: Range<u64>, value: V) -> Result<(), Error<V>>
    where
        V: Clone,
    {
        let mut w = self.write();
        w.store(range, value)?;
        w.commit();
        Ok(())
    }

    /// [`WriteTxn::erase`] as one transaction: punches the hole `range`
    /// (same `V::clone` contract) and returns how many entries it removed,
    /// trimmed or split.
    ///
    /// Takes the writer lock: **deadlocks** if this thread holds a
    /// [`WriteTxn`] of this tree ([more](MapleTree#deadlocks-by-contract)).
    ///
    /// # Errors
    /// [`ErrorKind::EmptyRange`] (nothing changes).
    ///
    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// t.insert(0..100, 'a').unwrap();
    /// assert_eq!(t.erase(40..60), Ok(1));
    /// assert_eq!(t.len(), 2);
    /// assert_eq!(t.pin().get(50), None);
    /// ```
    pub fn erase(&self, range: Range<u64>) -> Result<usize, ErrorKind>
    where
        V: Clone,
    {
        let mut w = self.write();
        let n = w.erase(range)?;
        w.commit();
        Ok(n)
    }

    /// [`WriteTxn::remove_exact`] as one transaction. To get the value back
    /// as well, use [`MapleTree::take_exact`].
    ///
    /// Takes the writer lock: **deadlocks** if this thread holds a
    /// [`WriteTxn`] of this tree ([more](MapleTree#deadlocks-by-contract)).
    ///
    /// # Errors
    /// As [`WriteTxn::remove_exact`]; the tree is unchanged.
    ///
    /// ```
    /// use maple_rcu::tree::ErrorKind;
    /// let t = maple_rcu::MapleTree::new();
    /// t.insert(0x1000..0x3000, ()).unwrap();
    /// assert_eq!(t.remove_exact(0x1000..0x2000), Err(ErrorKind::NotExact));
    /// assert_eq!(t.remove_exact(0x1000..0x3000), Ok(()));
    /// ```
    pub fn remove_exact(&self, range: Range<u64>) -> Result<(), ErrorKind> {
        let mut w = self.write();
        w.remove_exact(range)?;
        w.commit();
        Ok(())
    }

    /// Removes every entry in one transaction (readers see all or none of
    /// them). Values are retired as by [`MapleTree::remove`]. Runs no user
    /// code. O(n).
    ///
    /// Takes the writer lock: **deadlocks** if this thread holds a
    /// [`WriteTxn`] of this tree ([more](MapleTree#deadlocks-by-contract)).
    ///
    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// t.insert(0..1, 'a').unwrap();
    /// t.clear();
    /// assert!(t.is_empty());
    /// ```
    pub fn clear(&self) {
        let mut w = self.write();
        w.clear();
        w.commit();
    }

    /// [`WriteTxn::retain`] as one transaction. **`keep` runs under the
    /// writer lock**: it may read the tree (`pin`), but writing to it
    /// deadlocks. O(n + m · height).
    ///
    /// Takes the writer lock: **deadlocks** if this thread holds a
    /// [`WriteTxn`] of this tree ([more](MapleTree#deadlocks-by-contract)).
    ///
    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// t.insert(0..1, 1).unwrap();
    /// t.insert(1..2, 2).unwrap();
    /// t.retain(|r, _| r.start > 0);
    /// assert_eq!(t.pin().first(), Some((1..2, &2)));
    /// ```
    pub fn retain(&self, keep: impl FnMut(Range<u64>, &V) -> bool) {
        let mut w = self.write();
        w.retain(keep);
        w.commit();
    }
}
