//! Iterators built on the entry iterator ([`Iter`]): the free ranges of a
//! window, from either end.
//!
//! Kept apart from `read.rs` (the descent and the entry iterator, which the
//! node-layout work owns): everything here uses only `Iter`'s public
//! double-ended interface.

use super::Iter;
use core::fmt;
use core::iter::FusedIterator;
use core::ops::Range;

/// The free ranges inside a window, in address order; double-ended (see
/// `ReadGuard::gaps`). Front and back may be mixed: together they yield each
/// gap exactly once.
pub struct Gaps<'a, V> {
    entries: Iter<'a, V>,
    /// Everything below `lo` has been yielded from the front.
    lo: u64,
    /// Everything at or above `hi` has been yielded from the back.
    hi: u64,
}

impl<'a, V> Gaps<'a, V> {
    /// The gaps of `within`, given the entries overlapping it.
    pub(crate) fn new(entries: Iter<'a, V>, within: Range<u64>) -> Self {
        Self {
            entries,
            lo: within.start,
            hi: within.end,
        }
    }
}

impl<V> Iterator for Gaps<'_, V> {
    type Item = Range<u64>;

    fn next(&mut self) -> Option<Range<u64>> {
        while self.lo < self.hi {
            match self.entries.next() {
                Some((r, _)) => {
                    // The first entry may start before the window: the
                    // candidate is then empty (or reversed) and skipped.
                    let gap = self.lo..r.start.min(self.hi);
                    self.lo = r.end;
                    if !gap.is_empty() {
                        return Some(gap);
                    }
                }
                None => {
                    // No entry left between the two ends.
                    let gap = self.lo..self.hi;
                    self.lo = self.hi;
                    return Some(gap);
                }
            }
        }
        None
    }
}

impl<V> DoubleEndedIterator for Gaps<'_, V> {
    fn next_back(&mut self) -> Option<Range<u64>> {
        while self.lo < self.hi {
            match self.entries.next_back() {
                Some((r, _)) => {
                    let gap = r.end.max(self.lo)..self.hi;
                    self.hi = r.start;
                    if !gap.is_empty() {
                        return Some(gap);
                    }
                }
                None => {
                    let gap = self.lo..self.hi;
                    self.hi = self.lo;
                    return Some(gap);
                }
            }
        }
        None
    }
}

impl<V> FusedIterator for Gaps<'_, V> {}

impl<V> fmt::Debug for Gaps<'_, V> {
    /// The part of the window not yet consumed (the gaps themselves are
    /// computed lazily, so they are not listed).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gaps")
            .field("remaining", &(self.lo..self.hi.max(self.lo)))
            .finish_non_exhaustive()
    }
}
