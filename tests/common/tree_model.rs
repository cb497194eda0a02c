//! A plain model of the tree: `BTreeMap<start, (end, value)>` with brute-force
//! gap search. Shared by the differential tests (and the fuzz target).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ops::Range;

#[derive(Default, Clone, Debug)]
pub struct Model {
    pub map: BTreeMap<u64, (u64, u64)>,
}

impl Model {
    pub fn overlaps(&self, r: &Range<u64>) -> bool {
        self.map
            .range(..r.end)
            .next_back()
            .is_some_and(|(_, &(e, _))| e > r.start)
    }
    pub fn insert(&mut self, r: Range<u64>, v: u64) -> Result<(), &'static str> {
        if r.start >= r.end {
            return Err("empty");
        }
        if self.overlaps(&r) {
            return Err("overlap");
        }
        self.map.insert(r.start, (r.end, v));
        Ok(())
    }
    pub fn get(&self, a: u64) -> Option<(Range<u64>, u64)> {
        let (&s, &(e, v)) = self.map.range(..=a).next_back()?;
        (a < e).then_some((s..e, v))
    }
    pub fn remove(&mut self, a: u64) -> Option<Range<u64>> {
        let (r, _) = self.get(a)?;
        self.map.remove(&r.start);
        Some(r)
    }
    /// Cuts `r` out of every entry overlapping it (pieces keep their value);
    /// returns how many entries it touched.
    pub fn cut(&mut self, r: Range<u64>) -> usize {
        let hit = self.range(r.clone());
        for (er, v) in &hit {
            self.map.remove(&er.start);
            if er.start < r.start {
                self.map.insert(er.start, (r.start, *v));
            }
            if er.end > r.end {
                self.map.insert(r.end, (er.end, *v));
            }
        }
        hit.len()
    }
    /// Overwrites `r` (Linux `mtree_store_range`, no coalescing).
    pub fn store(&mut self, r: Range<u64>, v: u64) -> Result<(), &'static str> {
        if r.start >= r.end {
            return Err("empty");
        }
        self.cut(r.clone());
        self.map.insert(r.start, (r.end, v));
        Ok(())
    }
    pub fn next(&self, a: u64) -> Option<(Range<u64>, u64)> {
        if let Some(hit) = self.get(a) {
            return Some(hit);
        }
        self.map.range(a..).next().map(|(&s, &(e, v))| (s..e, v))
    }
    pub fn prev(&self, a: u64) -> Option<(Range<u64>, u64)> {
        self.map
            .range(..a)
            .next_back()
            .map(|(&s, &(e, v))| (s..e, v))
    }
    pub fn range(&self, r: Range<u64>) -> Vec<(Range<u64>, u64)> {
        if r.start >= r.end {
            return Vec::new();
        }
        let first = self
            .map
            .range(..=r.start)
            .next_back()
            .map_or(r.start, |(&s, _)| s);
        self.map
            .range(first..r.end)
            .filter(|(_, (e, _))| *e > r.start)
            .map(|(&s, &(e, v))| (s..e, v))
            .collect()
    }
    /// Free intervals of the whole space [0, u64::MAX).
    pub fn free(&self) -> Vec<Range<u64>> {
        let mut out = Vec::new();
        let mut pos = 0;
        for (&s, &(e, _)) in &self.map {
            if s > pos {
                out.push(pos..s);
            }
            pos = e;
        }
        if pos < u64::MAX {
            out.push(pos..u64::MAX);
        }
        out
    }
    /// Free intervals clipped to `w`: a walk over the entries near `w` only.
    pub fn gaps(&self, w: Range<u64>) -> Vec<Range<u64>> {
        let mut out = Vec::new();
        if w.start >= w.end {
            return out;
        }
        let mut pos = w.start;
        if let Some((_, &(e, _))) = self.map.range(..=w.start).next_back() {
            pos = pos.max(e);
        }
        for (&s, &(e, _)) in self.map.range(w.start..w.end) {
            if s > pos {
                out.push(pos..s);
            }
            pos = pos.max(e);
        }
        if pos < w.end {
            out.push(pos..w.end);
        }
        out
    }
    pub fn find_gap(&self, size: u64, align: u64, w: Range<u64>, rev: bool) -> Option<u64> {
        if size == 0 || !align.is_power_of_two() || w.start >= w.end {
            return None;
        }
        let mut fits = self.gaps(w).into_iter().filter_map(|g| {
            if g.end - g.start < size {
                return None;
            }
            if rev {
                let s = (g.end - size) / align * align;
                (s >= g.start).then_some(s)
            } else {
                let s = g.start.checked_next_multiple_of(align)?;
                (s.checked_add(size)? <= g.end).then_some(s)
            }
        });
        if rev { fits.next_back() } else { fits.next() }
    }
}
