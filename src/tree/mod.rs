//! `MapleTree<V>`: an RCU B-tree of non-overlapping `u64` ranges with gap
//! augmentation. API SKELETON — implementation lands with issue 2.

mod error;

pub use error::{Error, ErrorKind, ValidateError};

use crate::srcu::{Srcu, SrcuGuard};
use std::marker::PhantomData;
use std::ops::Range;

/// A B-tree of non-overlapping half-open `u64` ranges.
pub struct MapleTree<V> {
    domain: Srcu,
    _v: PhantomData<V>,
}

/// A read handle: a consistent snapshot of the tree, valid while held.
pub struct ReadGuard<'a, V> {
    _g: SrcuGuard<'a>,
    _v: PhantomData<&'a V>,
}

/// A write transaction: changes become visible at once on `commit`.
pub struct WriteTxn<'a, V> {
    _t: &'a MapleTree<V>,
}

/// In-order iterator over entries `(range, &value)`; double-ended.
pub struct Iter<'a, V> {
    _v: PhantomData<&'a V>,
}

impl<'a, V> Iterator for Iter<'a, V> {
    type Item = (Range<u64>, &'a V);
    fn next(&mut self) -> Option<Self::Item> {
        todo!()
    }
}

impl<'a, V> DoubleEndedIterator for Iter<'a, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        todo!()
    }
}

impl<V> Default for MapleTree<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> MapleTree<V> {
    /// An empty tree with its own reclamation domain.
    pub fn new() -> Self {
        todo!()
    }
    /// The tree's reclamation domain.
    pub fn domain(&self) -> &Srcu {
        &self.domain
    }
}

impl<V: Send + Sync> MapleTree<V> {
    /// Inserts `range -> value`.
    pub fn insert(&self, range: Range<u64>, value: V) -> Result<(), Error<V>> {
        let _ = (range, value);
        todo!()
    }
    /// Removes the entry containing `addr`.
    pub fn remove(&self, addr: u64) -> Option<Range<u64>> {
        let _ = addr;
        todo!()
    }
    /// A read handle.
    pub fn pin(&self) -> ReadGuard<'_, V> {
        todo!()
    }
    /// Lowest-first allocation.
    pub fn alloc_range(
        &self,
        size: u64,
        align: u64,
        within: Range<u64>,
        value: V,
    ) -> Result<Range<u64>, Error<V>> {
        let _ = (size, align, within, value);
        todo!()
    }
    /// Highest-first allocation.
    pub fn alloc_range_rev(
        &self,
        size: u64,
        align: u64,
        within: Range<u64>,
        value: V,
    ) -> Result<Range<u64>, Error<V>> {
        let _ = (size, align, within, value);
        todo!()
    }
    /// Number of entries.
    pub fn len(&self) -> usize {
        todo!()
    }
    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Checks every invariant.
    pub fn validate(&self) -> Result<(), ValidateError> {
        todo!()
    }
    /// Starts a write transaction.
    pub fn write(&self) -> WriteTxn<'_, V> {
        todo!()
    }
}

impl<'a, V> ReadGuard<'a, V> {
    /// The entry containing `addr`.
    pub fn get(&self, addr: u64) -> Option<(Range<u64>, &V)> {
        let _ = addr;
        todo!()
    }
    /// First entry whose end > addr.
    pub fn next(&self, addr: u64) -> Option<(Range<u64>, &V)> {
        let _ = addr;
        todo!()
    }
    /// Last entry whose start < addr.
    pub fn prev(&self, addr: u64) -> Option<(Range<u64>, &V)> {
        let _ = addr;
        todo!()
    }
    /// All entries in order.
    pub fn iter(&self) -> Iter<'_, V> {
        todo!()
    }
    /// Entries overlapping `r`, in order.
    pub fn range(&self, r: Range<u64>) -> Iter<'_, V> {
        let _ = r;
        todo!()
    }
    /// Free ranges inside `within`, in order.
    pub fn gaps(&self, within: Range<u64>) -> impl Iterator<Item = Range<u64>> + '_ {
        let _ = within;
        std::iter::empty()
    }
    /// Lowest aligned free start.
    pub fn find_gap(&self, size: u64, align: u64, within: Range<u64>) -> Option<u64> {
        let _ = (size, align, within);
        todo!()
    }
    /// Highest aligned free start.
    pub fn find_gap_rev(&self, size: u64, align: u64, within: Range<u64>) -> Option<u64> {
        let _ = (size, align, within);
        todo!()
    }
}

impl<'a, V: Send + Sync> WriteTxn<'a, V> {
    /// Inserts against the pending state.
    pub fn insert(&mut self, range: Range<u64>, value: V) -> Result<(), Error<V>> {
        let _ = (range, value);
        todo!()
    }
    /// Removes against the pending state.
    pub fn remove(&mut self, addr: u64) -> Option<Range<u64>> {
        let _ = addr;
        todo!()
    }
    /// The entry containing `addr` in the pending state.
    pub fn get(&self, addr: u64) -> Option<(Range<u64>, &V)> {
        let _ = addr;
        todo!()
    }
    /// First pending entry whose end > addr.
    pub fn next(&self, addr: u64) -> Option<(Range<u64>, &V)> {
        let _ = addr;
        todo!()
    }
    /// Last pending entry whose start < addr.
    pub fn prev(&self, addr: u64) -> Option<(Range<u64>, &V)> {
        let _ = addr;
        todo!()
    }
    /// Pending entries overlapping `r`, in order.
    pub fn range(&self, r: Range<u64>) -> Iter<'_, V> {
        let _ = r;
        todo!()
    }
    /// Lowest aligned free start in the pending state.
    pub fn find_gap(&self, size: u64, align: u64, within: Range<u64>) -> Option<u64> {
        let _ = (size, align, within);
        todo!()
    }
    /// Highest aligned free start in the pending state.
    pub fn find_gap_rev(&self, size: u64, align: u64, within: Range<u64>) -> Option<u64> {
        let _ = (size, align, within);
        todo!()
    }
    /// Publishes all changes at once.
    pub fn commit(self) {
        todo!()
    }
}
