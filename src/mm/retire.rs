//! The replace-and-retire core every writer uses (docs/DESIGN.md §4.2, M2, M7):
//! `edit` computes the new VMAs in a pending tree transaction, `finish` kills
//! the replaced ones, does the PTE work, commits and frees emptied tables.

use crate::mm::flags::FaultPolicy;
use crate::mm::flags::Prot;
use crate::mm::pagetable::PMD_SPAN;
use crate::mm::space::AddressSpace;
use crate::mm::vma::{Spec, Vma};
use crate::tree::WriteTxn;
use std::ops::Range;

/// Work on PTEs, done after the replaced VMAs are dead and before the commit
/// publishes their replacements (M7); `Unmap` also frees emptied tables
/// after the commit.
pub(crate) enum After {
    None,
    /// Zap these ranges (before the commit) and free the tables the commit
    /// left without a VMA (after it).
    Unmap(Vec<Range<u64>>),
    /// Take away what `Prot` does not allow in the range (before the commit).
    Protect(Range<u64>, Prot),
}

/// A spec tagged with whether it is new in this edit (only new specs merge).
pub(crate) struct Piece {
    pub(crate) spec: Spec,
    pub(crate) new: bool,
}

impl AddressSpace {
    /// Rewrites `range` in the pending version: every VMA overlapping it is
    /// cut to outside `range` (the cut pieces keep their attributes), the
    /// `new` specs (inside `range`) are added, and new specs merge with each
    /// other and with touching neighbours. Unchanged VMAs are left alone
    /// unless `zap`: a writer that zaps `range` replaces every VMA
    /// overlapping it, even by an identical copy, so that all of them are
    /// dead while their PTEs go (M7).
    /// Returns the VMAs replaced (to be marked dead before commit).
    pub(crate) fn edit(
        &self,
        txn: &mut WriteTxn<'_, Vma>,
        range: Range<u64>,
        new: Vec<Spec>,
        zap: bool,
        replaced: &mut Vec<*const Vma>,
    ) {
        let olds: Vec<(Range<u64>, *const Vma, Spec)> = txn
            .range(range.clone())
            .map(|(r, v)| (r, v as *const Vma, v.spec.clone()))
            .collect();
        let mut pieces: Vec<Piece> = Vec::new();
        for (r, _, s) in &olds {
            if r.start < range.start {
                pieces.push(Piece {
                    spec: s.slice(r.start..range.start),
                    new: false,
                });
            }
            if r.end > range.end {
                pieces.push(Piece {
                    spec: s.slice(range.end..r.end),
                    new: false,
                });
            }
        }
        pieces.extend(
            new.into_iter()
                .filter(|s| s.range.start < s.range.end)
                .map(|spec| Piece { spec, new: true }),
        );
        pieces.sort_by_key(|p| p.spec.range.start);
        let mut touched: Vec<(Range<u64>, *const Vma, Spec)> = olds;
        // Neighbours that a new spec at the edge merges with.
        if let Some(first) = pieces.first().filter(|p| p.new)
            && let Some((r, v)) = txn.prev(first.spec.range.start)
            && r.end == first.spec.range.start
            && v.spec.merges_with(&first.spec)
        {
            touched.push((r, v as *const Vma, v.spec.clone()));
            pieces.insert(
                0,
                Piece {
                    spec: v.spec.clone(),
                    new: false,
                },
            );
        }
        if let Some(last) = pieces.last().filter(|p| p.new)
            && let Some((r, v)) = txn.get(last.spec.range.end)
            && r.start == last.spec.range.end
            && last.spec.merges_with(&v.spec)
        {
            touched.push((r, v as *const Vma, v.spec.clone()));
            pieces.push(Piece {
                spec: v.spec.clone(),
                new: false,
            });
        }
        // Merge pass: adjacent mergeable pieces fuse when one of them is new.
        let mut merged: Vec<Piece> = Vec::with_capacity(pieces.len());
        for p in pieces {
            if let Some(last) = merged.last_mut()
                && (last.new || p.new)
                && last.spec.merges_with(&p.spec)
            {
                last.spec.range.end = p.spec.range.end;
                last.new = true;
                continue;
            }
            merged.push(p);
        }
        // Keep VMAs that come out unchanged (never when zapping: M7).
        let mut keep = vec![false; merged.len()];
        touched.retain(|(_, _, s)| {
            if zap {
                return true;
            }
            if let Some(i) = merged.iter().position(|p| &p.spec == s) {
                keep[i] = true;
                false
            } else {
                true
            }
        });
        for (r, v, _) in touched {
            replaced.push(v);
            txn.remove(r.start);
        }
        for (p, k) in merged.into_iter().zip(keep) {
            if !k {
                let r = p.spec.range.clone();
                let ok = txn.insert(r, Vma::new(p.spec));
                debug_assert!(ok.is_ok(), "edit left an overlap");
            }
        }
    }

    /// The replace-and-retire step (docs/DESIGN.md §4.2, M2 and M7): marks
    /// `replaced` dead (write-locking and detaching them first under
    /// `PerVmaLock`), runs `before_commit` (mremap's move) and the PTE work
    /// of `work` while they are dead and their replacements unpublished,
    /// commits, then frees the tables the commit left without a VMA.
    ///
    /// No fault can install into, or keep a permission in, the PTEs changed
    /// here: a fault that validated its (replaced) VMA under a PTL before our
    /// section on that PTL is undone by it; one after sees `dead` (our dead
    /// store precedes our PTL sections and probes: races 1 and 2); the new
    /// VMAs are not reachable until the commit, after all PTE work.
    pub(crate) fn finish(
        &self,
        txn: WriteTxn<'_, Vma>,
        replaced: Vec<*const Vma>,
        before_commit: impl FnOnce(),
        work: After,
    ) {
        for &v in &replaced {
            // SAFETY: each pointer came from this pending transaction, which
            // keeps removed values alive until it commits (below).
            let v = unsafe { &*v };
            if self.policy == FaultPolicy::PerVmaLock {
                v.lock.write_lock();
            }
            v.mark_dead();
            if self.policy == FaultPolicy::PerVmaLock {
                v.lock.detach();
            }
        }
        before_commit();
        match &work {
            After::None => {}
            After::Unmap(ranges) => {
                for r in ranges {
                    self.pt.zap_range(r.start, r.end);
                }
            }
            After::Protect(r, prot) => self.pt.protect_range(r.start, r.end, *prot),
        }
        txn.commit();
        if let After::Unmap(ranges) = work {
            let pin = self.tree.pin();
            let empty = |base: u64| pin.range(base..base + PMD_SPAN).next().is_none();
            for r in ranges {
                self.pt
                    .free_tables(r.start, r.end, self.tree.domain(), &empty);
            }
        }
    }

    /// One-range convenience: edit + finish.
    pub(crate) fn replace(
        &self,
        mut txn: WriteTxn<'_, Vma>,
        range: Range<u64>,
        new: Vec<Spec>,
        work: After,
    ) {
        let mut replaced = Vec::new();
        let zap = matches!(work, After::Unmap(_));
        self.edit(&mut txn, range, new, zap, &mut replaced);
        self.finish(txn, replaced, || {}, work);
    }

    /// Replaces every VMA overlapping `range` by an identical copy, so that
    /// the originals can be dead while PTEs under them move (mremap
    /// DONTUNMAP's source, M7). No merging: the VMAs stay as they are.
    pub(crate) fn renew(
        &self,
        txn: &mut WriteTxn<'_, Vma>,
        range: Range<u64>,
        replaced: &mut Vec<*const Vma>,
    ) {
        let olds: Vec<(Range<u64>, *const Vma, Spec)> = txn
            .range(range)
            .map(|(r, v)| (r, v as *const Vma, v.spec.clone()))
            .collect();
        for (r, v, spec) in olds {
            replaced.push(v);
            txn.remove(r.start);
            let ok = txn.insert(r, Vma::new(spec));
            debug_assert!(ok.is_ok(), "renew left an overlap");
        }
    }
}
