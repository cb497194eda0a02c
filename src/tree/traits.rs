//! Standard traits: `Debug`, `PartialEq`/`Eq`, `IntoIterator` for read
//! handles, and `FromIterator`/`Extend`.
//!
//! `FromIterator` and `Extend` work inside ONE transaction (readers see all
//! of it or none): sorted input after the tree's last entry takes the bulk
//! build into dense nodes (bulk.rs), anything else one insertion per entry
//! ([DESIGN §2.8](crate::docs::design#28-api-issue-13-the-parts-that-do-not-need-the-node-layout)).

use super::{Error, Iter, MapleTree, ReadGuard, WriteTxn};
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

/// The entries of a version as a `Debug` map: `{0..16: v, ...}`.
fn fmt_entries<V: fmt::Debug>(f: &mut fmt::Formatter<'_>, it: Iter<'_, V>) -> fmt::Result {
    f.debug_map().entries(it).finish()
}

impl<V: Send + fmt::Debug> fmt::Debug for MapleTree<V> {
    /// The latest published version's entries, as a map from range to
    /// value (read through a fresh `pin()`, so it never blocks).
    ///
    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// t.insert(0x10..0x20, 'a').unwrap();
    /// assert_eq!(format!("{t:?}"), "{16..32: 'a'}");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_entries(f, self.pin().iter())
    }
}

impl<V: fmt::Debug> fmt::Debug for ReadGuard<'_, V> {
    /// The snapshot's entries, as a map from range to value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_entries(f, self.iter())
    }
}

impl<V: Send + fmt::Debug> fmt::Debug for WriteTxn<'_, V> {
    /// The pending version's entries, as a map from range to value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_entries(f, self.iter())
    }
}

impl<V> fmt::Debug for Iter<'_, V> {
    /// Opaque for now: the cursor's state lives in `read.rs`, which the
    /// node-layout work is rewriting.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter").finish_non_exhaustive()
    }
}

impl<'a, V> IntoIterator for &'a ReadGuard<'_, V> {
    type Item = (Range<u64>, &'a V);
    type IntoIter = Iter<'a, V>;

    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// t.insert(0..1, 'a').unwrap();
    /// let r = t.pin();
    /// for (range, v) in &r {
    ///     assert_eq!((range, *v), (0..1, 'a'));
    /// }
    /// ```
    fn into_iter(self) -> Iter<'a, V> {
        self.iter()
    }
}

impl<'a, V: Send> IntoIterator for &'a WriteTxn<'_, V> {
    type Item = (Range<u64>, &'a V);
    type IntoIter = Iter<'a, V>;

    fn into_iter(self) -> Iter<'a, V> {
        self.iter()
    }
}

impl<V: PartialEq<W>, W> PartialEq<ReadGuard<'_, W>> for ReadGuard<'_, V> {
    /// Same entries: equal ranges in the same order, with equal values.
    /// O(n).
    fn eq(&self, other: &ReadGuard<'_, W>) -> bool {
        let (mut a, mut b) = (self.iter(), other.iter());
        loop {
            match (a.next(), b.next()) {
                (None, None) => return true,
                (Some((ra, va)), Some((rb, vb))) if ra == rb && *va == *vb => {}
                _ => return false,
            }
        }
    }
}

impl<V: Eq> Eq for ReadGuard<'_, V> {}

impl<V: Send + PartialEq> PartialEq for MapleTree<V> {
    /// Same entries in the latest published versions (each read through its
    /// own `pin()`). O(n).
    ///
    /// ```
    /// let (a, b) = (maple_rcu::MapleTree::new(), maple_rcu::MapleTree::new());
    /// a.insert(0..2, 'x').unwrap();
    /// b.store(0..2, 'x').unwrap();
    /// assert_eq!(a, b);
    /// b.store(1..2, 'x').unwrap(); // same value, but two entries now
    /// assert_ne!(a, b);
    /// ```
    fn eq(&self, other: &Self) -> bool {
        self.pin() == other.pin()
    }
}

impl<V: Send + Eq> Eq for MapleTree<V> {}

#[cfg(feature = "std")]
impl<V: Send + 'static> MapleTree<V> {
    /// A tree of the given entries, built in one transaction (any order).
    /// The iterator runs before the writer lock is taken. The tree reclaims
    /// as [`MapleTree::new`]. Sorted input (ranges in order, none
    /// overlapping) is built bottom-up into dense nodes without a search:
    /// O(n), leaves full but for the last two; other input is inserted
    /// one entry at a time, O(n · height) (see [`MapleTree::try_extend`]).
    ///
    /// # Errors
    /// The first entry that [`MapleTree::insert`] refuses (an empty range or
    /// an overlap with an earlier entry), with its value; the other values
    /// are dropped.
    ///
    /// ```
    /// use maple_rcu::{MapleTree, tree::ErrorKind};
    /// let t = MapleTree::try_from_iter([(0..4, 'a'), (8..9, 'b')]).unwrap();
    /// assert_eq!(t.len(), 2);
    /// let e = MapleTree::try_from_iter([(0..4, 'a'), (3..9, 'b')]).unwrap_err();
    /// assert_eq!((e.kind, e.value), (ErrorKind::Overlap, 'b'));
    /// ```
    pub fn try_from_iter<I: IntoIterator<Item = (Range<u64>, V)>>(
        iter: I,
    ) -> Result<Self, Error<V>> {
        let t = Self::new();
        t.try_extend(iter)?;
        Ok(t)
    }
}

impl<V: Send> MapleTree<V> {
    /// Inserts every entry in one transaction, all or nothing. The iterator
    /// runs before the writer lock is taken. When the entries are sorted,
    /// non-overlapping and all at or after the tree's last entry's end, they
    /// are appended without a search (the path to the last entry is rebuilt
    /// with the new entries packed densely behind it): O(k + height) for k
    /// entries. Otherwise one insertion each, O(k · height), with the errors
    /// below.
    ///
    /// Takes the writer lock: **deadlocks** if this thread holds a
    /// [`WriteTxn`] of this tree ([more](MapleTree#deadlocks-by-contract)).
    ///
    /// # Errors
    /// As [`MapleTree::try_from_iter`]; the tree is then unchanged.
    ///
    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// t.insert(0..4, 'a').unwrap();
    /// assert!(t.try_extend([(8..9, 'b'), (2..3, 'c')]).is_err());
    /// assert_eq!(t.len(), 1);
    /// t.try_extend([(4..6, 'd'), (9..12, 'e')]).unwrap(); // after 'a': bulk
    /// t.try_extend([(6..8, 'c')]).unwrap(); // before 'e': one insertion
    /// assert_eq!(t.len(), 4);
    /// ```
    pub fn try_extend<I: IntoIterator<Item = (Range<u64>, V)>>(
        &self,
        iter: I,
    ) -> Result<(), Error<V>> {
        let items: Vec<_> = iter.into_iter().collect();
        let mut w = self.write();
        // The bulk build when the items are sorted after the last entry.
        let items = match w.append_sorted(items) {
            Ok(()) => {
                w.commit();
                return Ok(());
            }
            Err(items) => items,
        };
        let mut rest = items.into_iter();
        for (r, v) in rest.by_ref() {
            if let Err(e) = w.insert(r, v) {
                // Abort and unlock before any value is dropped (user code).
                drop(w);
                drop(rest);
                return Err(e);
            }
        }
        w.commit();
        Ok(())
    }
}

/// Builds a tree in one transaction.
///
/// # Panics
/// On an entry [`MapleTree::insert`] would refuse (empty range, overlap);
/// use [`MapleTree::try_from_iter`] to get an error instead.
///
/// ```
/// let t: maple_rcu::MapleTree<_> = (0..100u64).map(|i| (i * 2..i * 2 + 1, i)).collect();
/// assert_eq!(t.len(), 100);
/// ```
#[cfg(feature = "std")]
impl<V: Send + 'static> FromIterator<(Range<u64>, V)> for MapleTree<V> {
    fn from_iter<I: IntoIterator<Item = (Range<u64>, V)>>(iter: I) -> Self {
        match Self::try_from_iter(iter) {
            Ok(t) => t,
            Err(e) => panic!("MapleTree::from_iter: {}", e.kind),
        }
    }
}

/// Inserts the entries in one transaction, all or nothing.
///
/// # Panics
/// As `FromIterator` (the tree is then unchanged); use
/// [`MapleTree::try_extend`] to get an error instead.
///
/// ```
/// let mut t = maple_rcu::MapleTree::new();
/// t.extend([(0..1, 'a'), (1..2, 'b')]);
/// assert_eq!(t.len(), 2);
/// ```
impl<V: Send> Extend<(Range<u64>, V)> for MapleTree<V> {
    fn extend<I: IntoIterator<Item = (Range<u64>, V)>>(&mut self, iter: I) {
        if let Err(e) = self.try_extend(iter) {
            panic!("MapleTree::extend: {}", e.kind);
        }
    }
}

/// Inserts the entries into the pending version: the bulk build when they
/// are sorted and all at or after the pending version's last entry (as
/// [`MapleTree::try_extend`]), else one by one. The iterator runs under the
/// writer lock (it is your code inside this transaction).
///
/// # Panics
/// On an entry [`WriteTxn::insert`] refuses; the entries before it stay
/// inserted in the pending version.
///
/// ```
/// let t = maple_rcu::MapleTree::new();
/// let mut w = t.write();
/// w.extend((0..100u64).map(|i| (i * 2..i * 2 + 1, i))); // sorted: bulk
/// w.extend([(1..2, 0)]); // between two entries: one insertion
/// assert_eq!(w.len(), 101);
/// w.commit();
/// ```
impl<V: Send> Extend<(Range<u64>, V)> for WriteTxn<'_, V> {
    fn extend<I: IntoIterator<Item = (Range<u64>, V)>>(&mut self, iter: I) {
        let Err(items) = self.append_sorted(iter.into_iter().collect()) else {
            return;
        };
        for (r, v) in items {
            if let Err(e) = self.insert(r, v) {
                panic!("WriteTxn::extend: {}", e.kind);
            }
        }
    }
}
