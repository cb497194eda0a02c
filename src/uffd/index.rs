//! Where a fault's backing is looked up: the [`Index`] trait and three
//! implementations — [`TreeIndex`] (a [`MapleTree`], lock-free lookups, the
//! subject) and two baselines measured in the same run: [`LinearIndex`]
//! (Firecracker's example handler: a linear scan over a `Vec` of regions plus
//! a `HashSet` of removed pages) and [`RwLockIndex`] (`RwLock<BTreeMap>`).
//!
//! All three store *range records*: REMOVE of `[s, e)` replaces the pieces
//! of the regions it covers by a [`Backing::Zero`] record (the tree and the
//! B-tree map; the linear baseline keeps Firecracker's per-page set), and
//! UNMAP deletes them. Every change is replace-and-retire: the tree publishes
//! the new pieces with one commit and retires the old values to its Srcu
//! domain, so a handler that looked up the old piece may keep using it.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::sync::{PoisonError, RwLock};

use super::image::{Backing, Fill};
use crate::MapleTree;

/// A region's range overlaps one already indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("range overlaps an indexed region")]
pub struct Overlap;

/// The pager's region index.
pub trait Index: Send + Sync + 'static {
    /// Short name for reports.
    const NAME: &'static str;

    /// Adds a region. Errors if it overlaps an indexed one.
    fn add(&self, range: Range<u64>, backing: Backing) -> Result<(), Overlap>;

    /// Calls `f` with the fill for the page at `page` (`None`: not indexed).
    /// The slice in a [`Fill::Copy`] stays valid for the whole call.
    fn with_fill<R>(&self, page: u64, page_size: u64, f: impl FnOnce(Option<Fill<'_>>) -> R) -> R;

    /// REMOVE event: `range` reads as zeros from now on where it is indexed.
    fn remove(&self, range: Range<u64>);

    /// UNMAP event: `range` is no longer indexed.
    fn unmap(&self, range: Range<u64>);

    /// Number of records (regions and their pieces).
    fn records(&self) -> usize;
}

/// The new records replacing `old` (which all overlap `cut`): the parts
/// outside `cut` keep their backing (shifted), the parts inside become
/// [`Backing::Zero`] if `zero`, else disappear.
fn carve(
    old: Vec<(Range<u64>, Backing)>,
    cut: &Range<u64>,
    zero: bool,
) -> Vec<(Range<u64>, Backing)> {
    let mut out = Vec::with_capacity(old.len() + 2);
    for (r, b) in old {
        if r.start < cut.start {
            out.push((r.start..cut.start, b.clone()));
        }
        if zero {
            out.push((r.start.max(cut.start)..r.end.min(cut.end), Backing::Zero));
        }
        if r.end > cut.end {
            out.push((cut.end..r.end, b.skip(cut.end - r.start)));
        }
    }
    // Adjacent zero records coalesce (repeated drops do not fragment).
    let mut merged: Vec<(Range<u64>, Backing)> = Vec::with_capacity(out.len());
    for (r, b) in out {
        if let Some((pr, pb)) = merged.last_mut()
            && pb.is_zero()
            && b.is_zero()
            && pr.end == r.start
        {
            pr.end = r.end;
            continue;
        }
        merged.push((r, b));
    }
    merged
}

/// The subject: a [`MapleTree`] of range records; lookups are lock-free
/// (`pin()` + `get`), REMOVE/UNMAP are one write transaction each.
#[derive(Default)]
pub struct TreeIndex {
    tree: MapleTree<Backing>,
}

impl TreeIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// The tree (for validation and inspection).
    pub fn tree(&self) -> &MapleTree<Backing> {
        &self.tree
    }

    fn replace(&self, cut: Range<u64>, zero: bool) {
        if cut.start >= cut.end {
            return;
        }
        let mut w = self.tree.write();
        let old: Vec<(Range<u64>, Backing)> =
            w.range(cut.clone()).map(|(r, b)| (r, b.clone())).collect();
        if old.is_empty() {
            return;
        }
        // Also absorb a zero record touching the cut on either side, so
        // repeated drops of neighbouring pages keep one record.
        let mut old = old;
        let mut span = cut.clone();
        if zero {
            if let Some((r, b)) = w.prev(cut.start)
                && b.is_zero()
                && r.end == cut.start
                && r.start < old[0].0.start
            {
                old.insert(0, (r.clone(), Backing::Zero));
                span.start = r.start;
            }
            if let Some((r, b)) = w.next(cut.end) {
                let last = old.last().map(|(r, _)| r.end).unwrap_or(0);
                if b.is_zero() && r.start == cut.end && r.start >= last {
                    old.push((r.clone(), Backing::Zero));
                    span.end = r.end;
                }
            }
        }
        for (r, _) in &old {
            w.remove(r.start);
        }
        let cut_span = if zero { span } else { cut };
        for (r, b) in carve(old, &cut_span, zero) {
            // Cannot overlap: every piece lies inside a removed record.
            let _ = w.insert(r, b);
        }
        w.commit();
    }
}

impl Index for TreeIndex {
    const NAME: &'static str = "maple";

    fn add(&self, range: Range<u64>, backing: Backing) -> Result<(), Overlap> {
        self.tree.insert(range, backing).map_err(|_| Overlap)
    }

    #[inline]
    fn with_fill<R>(&self, page: u64, page_size: u64, f: impl FnOnce(Option<Fill<'_>>) -> R) -> R {
        let g = self.tree.pin();
        match g.get(page) {
            Some((r, b)) => f(Some(b.fill(page - r.start, page_size))),
            None => f(None),
        }
    }

    fn remove(&self, range: Range<u64>) {
        self.replace(range, true);
    }

    fn unmap(&self, range: Range<u64>) {
        self.replace(range, false);
    }

    fn records(&self) -> usize {
        self.tree.len()
    }
}

/// Baseline: `RwLock<BTreeMap<start, (end, backing)>>`, the same range
/// records as [`TreeIndex`].
#[derive(Default)]
pub struct RwLockIndex {
    map: RwLock<BTreeMap<u64, (u64, Backing)>>,
}

impl RwLockIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    fn replace(&self, cut: Range<u64>, zero: bool) {
        if cut.start >= cut.end {
            return;
        }
        let mut m = self.map.write().unwrap_or_else(PoisonError::into_inner);
        let mut old = Vec::new();
        for (&s, (e, b)) in m.range(..cut.end).rev() {
            if *e <= cut.start {
                break;
            }
            old.push((s..*e, b.clone()));
        }
        old.reverse();
        for (r, _) in &old {
            m.remove(&r.start);
        }
        for (r, b) in carve(old, &cut, zero) {
            m.insert(r.start, (r.end, b));
        }
    }
}

impl Index for RwLockIndex {
    const NAME: &'static str = "rwlock-btreemap";

    fn add(&self, range: Range<u64>, backing: Backing) -> Result<(), Overlap> {
        let mut m = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, (e, _))) = m.range(..range.end).next_back()
            && *e > range.start
        {
            return Err(Overlap);
        }
        m.insert(range.start, (range.end, backing));
        Ok(())
    }

    fn with_fill<R>(&self, page: u64, page_size: u64, f: impl FnOnce(Option<Fill<'_>>) -> R) -> R {
        let m = self.map.read().unwrap_or_else(PoisonError::into_inner);
        match m.range(..=page).next_back() {
            Some((&s, (e, b))) if *e > page => f(Some(b.fill(page - s, page_size))),
            _ => f(None),
        }
    }

    fn remove(&self, range: Range<u64>) {
        self.replace(range, true);
    }

    fn unmap(&self, range: Range<u64>) {
        self.replace(range, false);
    }

    fn records(&self) -> usize {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[derive(Default)]
struct Linear {
    regions: Vec<(Range<u64>, Backing)>,
    removed: HashSet<u64>,
}

/// Baseline: Firecracker's example handler — a linear scan over a `Vec` of
/// regions, and a `HashSet` of removed page addresses (behind an `RwLock`
/// so that N handler threads can share it).
pub struct LinearIndex {
    inner: RwLock<Linear>,
    page: u64,
}

impl Default for LinearIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl LinearIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self {
            inner: RwLock::default(),
            page: super::image::page_size(),
        }
    }
}

impl Index for LinearIndex {
    const NAME: &'static str = "linear-vec-hashset";

    fn add(&self, range: Range<u64>, backing: Backing) -> Result<(), Overlap> {
        let mut l = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if l.regions
            .iter()
            .any(|(r, _)| r.start < range.end && range.start < r.end)
        {
            return Err(Overlap);
        }
        l.regions.push((range, backing));
        Ok(())
    }

    fn with_fill<R>(&self, page: u64, page_size: u64, f: impl FnOnce(Option<Fill<'_>>) -> R) -> R {
        let l = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        match l.regions.iter().find(|(r, _)| r.contains(&page)) {
            Some(_) if l.removed.contains(&page) => f(Some(Fill::Zero)),
            Some((r, b)) => f(Some(b.fill(page - r.start, page_size))),
            None => f(None),
        }
    }

    fn remove(&self, range: Range<u64>) {
        let mut l = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let mut p = range.start;
        while p < range.end {
            l.removed.insert(p);
            p += self.page;
        }
    }

    fn unmap(&self, range: Range<u64>) {
        let mut l = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let old = std::mem::take(&mut l.regions);
        let (hit, mut keep): (Vec<_>, Vec<_>) = old
            .into_iter()
            .partition(|(r, _)| r.start < range.end && range.start < r.end);
        keep.extend(carve(hit, &range, false));
        l.regions = keep;
        let mut p = range.start;
        while p < range.end {
            l.removed.remove(&p);
            p += self.page;
        }
    }

    fn records(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .regions
            .len()
    }
}
