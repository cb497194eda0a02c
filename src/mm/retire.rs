//! The replace-and-retire core every writer uses ([DESIGN §4.2](crate::docs::design#42-replace-and-retire-writers), M2,
//! M7, §4.8): `edit` computes the new VMAs in a pending tree transaction and
//! logs each change; `finish` kills the replaced VMAs, does the PTE work with
//! the tree's writer mutex released (the writer's range lock keeps its area
//! stable), replays the log in a second short transaction, commits and frees
//! emptied tables. A writer with no PTE work commits its first transaction.

use crate::mm::error::MmError;
use crate::mm::flags::FaultPolicy;
use crate::mm::flags::Prot;

use crate::mm::space::{AddressSpace, span_has_no_vma};
use crate::mm::vma::{Spec, Vma};
use crate::tree::WriteTxn;
use std::ops::Range;

/// One change of an [`Edit`], replayable on a later version (§4.8).
enum Op {
    Remove(u64),
    Insert(Spec),
}

/// A pending tree transaction of one writer, with the log of its changes and
/// the VMAs it replaces. All reads and changes go through it.
pub(crate) struct Edit<'t> {
    /// The pending version (read it freely; change it only through
    /// [`remove`](Edit::remove) and [`insert`](Edit::insert)).
    pub(crate) txn: WriteTxn<'t, Vma>,
    log: Vec<Op>,
    replaced: Vec<*const Vma>,
}

crate::sync::thread_local! {
    /// This thread's emptied `Edit` vectors, reused by its next edit: two
    /// allocations and two frees less under the tree's writer mutex per
    /// writer call (issue 11, "short tree transactions"). Only the paths
    /// without PTE work give them back (`finish`'s commit, R-M6's unmap),
    /// and only small ones ([`SPARE_MAX`]): a thread keeps no memory of a
    /// big edit. Read with `try_with` only: a writer may run from another
    /// thread-local's destructor, after this one is gone (it then uses
    /// fresh vectors; `with` would panic there, and a panic in a TLS
    /// destructor aborts the process: `breaker_s13_edit`).
    static SPARE: std::cell::Cell<Option<(Vec<Op>, Vec<*const Vma>)>> = const {
        std::cell::Cell::new(None)
    };
}

/// The largest capacity of a vector `SPARE` keeps (an edit logs a few ops
/// unless it spans many VMAs).
const SPARE_MAX: usize = 16;

impl<'t> Edit<'t> {
    pub(crate) fn new(txn: WriteTxn<'t, Vma>) -> Edit<'t> {
        let (log, replaced) = SPARE
            .try_with(std::cell::Cell::take)
            .ok()
            .flatten()
            .unwrap_or_default();
        Edit { txn, log, replaced }
    }

    /// Empties an edit's vectors (dropping the logged specs here) and keeps
    /// them for this thread's next edit, if they are small and the thread's
    /// storage still exists; else frees them.
    fn recycle(mut log: Vec<Op>, mut replaced: Vec<*const Vma>) {
        if log.capacity() > SPARE_MAX || replaced.capacity() > SPARE_MAX {
            return;
        }
        log.clear();
        replaced.clear();
        // Err only during thread exit: the vectors are freed instead.
        let _ = SPARE.try_with(|s| s.set(Some((log, replaced))));
    }

    /// Removes the entry starting at `start`; it is replaced (killed before
    /// the commit) if it is a published VMA.
    pub(crate) fn remove(&mut self, start: u64) {
        if let Some((_, v)) = self.txn.get(start) {
            self.replaced.push(v as *const Vma);
        }
        self.txn.remove(start);
        self.log.push(Op::Remove(start));
    }

    /// Inserts a new VMA (the range lock guarantees the room).
    pub(crate) fn insert(&mut self, spec: Spec) {
        let ok = self.txn.insert(spec.range.clone(), Vma::new(spec.clone()));
        debug_assert!(ok.is_ok(), "edit left an overlap");
        self.log.push(Op::Insert(spec));
    }
}

/// Work on PTEs, done after the replaced VMAs are dead and before the commit
/// publishes their replacements (M7); `Unmap` with [`Tables::Free`] also
/// frees emptied tables after the commit.
pub(crate) enum After {
    None,
    /// Zap this range (before the commit); with [`Tables::Free`], free
    /// the tables the commit left without a VMA (after it).
    Unmap(Range<u64>, Tables),
    /// Take away what `Prot` does not allow in the range (before the commit).
    Protect(Range<u64>, Prot),
}

/// Who frees the last-level tables an unmap empties (DESIGN §4.5, §4.8).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Tables {
    /// The caller's range lock covers the 2 MiB spans of the unmapped
    /// ranges (mremap, brk, `WriterLocking::Global`): free them right after
    /// the commit.
    Free,
    /// The caller holds only its R-M1 extent: free nothing here. munmap
    /// frees after releasing it
    /// ([`free_empty_spans`](AddressSpace::free_empty_spans)); mmap over a
    /// range leaves its new VMA in every span it touches, so there is
    /// nothing to free.
    Keep,
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
    pub(crate) fn edit(&self, e: &mut Edit<'_>, range: Range<u64>, new: Vec<Spec>, zap: bool) {
        if let Err(new) = Self::edit_fast(e, &range, new, zap) {
            Self::edit_general(e, range, new, zap);
        }
    }

    /// `edit` for any input: cut, add, merge, and keep what comes out
    /// unchanged.
    fn edit_general(e: &mut Edit<'_>, range: Range<u64>, new: Vec<Spec>, zap: bool) {
        let txn = &e.txn;
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
        // Not `vec![false; n]`: that is a calloc, which glibc serves
        // without its per-thread cache, from an arena that another thread's
        // frees of our VMAs keep busy (perf, examples/writer_cost).
        let mut keep = Vec::with_capacity(merged.len());
        keep.resize(merged.len(), false);
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
        for (r, _, _) in touched {
            e.remove(r.start);
        }
        for (p, k) in merged.into_iter().zip(keep) {
            if !k {
                e.insert(p.spec);
            }
        }
    }

    /// `edit`'s two common cases, done without its general machinery (four
    /// vectors and a clone of every overlapped spec, under the tree's
    /// writer mutex; issue 11, "short tree transactions"), with the same
    /// result, the same log and the same replaced VMAs:
    /// * an unmap (`new` empty, `zap`): every VMA overlapping `range` is
    ///   removed, and the parts of the first and last outside `range` are
    ///   put back (nothing merges: no piece is new);
    /// * one new spec over a hole: inserted, merged with the neighbour
    ///   before or after it when they merge (not both: the general path
    ///   decides that case, whose second merge is checked on the merged
    ///   spec).
    ///
    /// Anything else gives `new` back for the general path.
    fn edit_fast(
        e: &mut Edit<'_>,
        range: &Range<u64>,
        new: Vec<Spec>,
        zap: bool,
    ) -> Result<(), Vec<Spec>> {
        if new.is_empty() && zap {
            /// Unmaps of more VMAs take the general path.
            const FEW: usize = 8;
            let mut starts = [0u64; FEW];
            let mut n = 0;
            let (mut left, mut right) = (None, None);
            for (r, v) in e.txn.range(range.clone()) {
                if n == FEW {
                    return Err(new);
                }
                starts[n] = r.start;
                n += 1;
                if r.start < range.start {
                    left = Some(v.spec.slice(r.start..range.start));
                }
                if range.end < r.end {
                    right = Some(v.spec.slice(range.end..r.end));
                }
            }
            for &s in &starts[..n] {
                e.remove(s);
            }
            for spec in [left, right].into_iter().flatten() {
                e.insert(spec);
            }
            return Ok(());
        }
        let [spec] = new.as_slice() else {
            return Err(new);
        };
        let (start, end) = (spec.range.start, spec.range.end);
        if start >= end || start < range.start || range.end < end {
            return Err(new);
        }
        let txn = &e.txn;
        // The first entry ending above `range.start`: none overlaps
        // `range` if it starts at or after its end, and it is the
        // neighbour right after `spec` if it starts at `spec`'s end.
        let after = txn.next(range.start);
        if after.as_ref().is_some_and(|(r, _)| r.start < range.end) {
            return Err(new);
        }
        let next = after.filter(|(r, v)| r.start == end && spec.merges_with(&v.spec));
        let prev = txn
            .prev(start)
            .filter(|(r, v)| r.end == start && v.spec.merges_with(spec));
        // The merge, decided before `new` is taken apart (the neighbours
        // borrow the transaction).
        let merge = match (prev, next) {
            (None, None) => None,
            (Some((r, v)), None) => Some((r.start, Some(v.spec.clone()), end)),
            (None, Some((r, _))) => Some((r.start, None, r.end)),
            (Some(_), Some(_)) => return Err(new),
        };
        let mut spec = new.into_iter().next().expect("one spec");
        if let Some((gone, prev_spec, end)) = merge {
            e.remove(gone);
            if let Some(p) = prev_spec {
                spec = p;
            }
            spec.range.end = end;
        }
        e.insert(spec);
        Ok(())
    }

    /// The replace-and-retire step ([DESIGN §4.2](crate::docs::design#42-replace-and-retire-writers) M2, M7; §4.8): marks
    /// the replaced VMAs dead (write-locking and detaching them first under
    /// `PerVmaLock`), runs `before_commit` (mremap's move) and the PTE work
    /// of `work` while they are dead and their replacements unpublished,
    /// commits, then frees the tables the commit left without a VMA.
    ///
    /// No fault can install into, or keep a permission in, the PTEs changed
    /// here: a fault that validated its (replaced) VMA under a PTL before our
    /// section on that PTL is undone by it; one after sees `dead` (our dead
    /// store precedes our PTL sections and probes: races 1 and 2); the new
    /// VMAs are not reachable until the commit, after all PTE work.
    ///
    /// With PTE work to do, the first transaction is aborted before it and
    /// its log replayed in a second one after it, so the tree's writer mutex
    /// is never held across PTE work (§4.8). The replay reproduces the same
    /// version of the writer's area because the caller holds a range write
    /// lock over every entry the log touches (R-M1) and no other writer
    /// changes entries there.
    pub(crate) fn finish(&self, e: Edit<'_>, before_commit: Option<&dyn Fn()>, work: After) {
        let Edit { txn, log, replaced } = e;
        // SAFETY: each pointer came from `txn`, which is alive until the
        // abort or commit below and keeps removed and fresh values alive.
        let vma = |v: *const Vma| unsafe { &*v };
        let overlaps = |v: *const Vma, r: &Range<u64>| {
            let s = &vma(v).spec.range;
            s.start < r.end && r.start < s.end
        };
        let pte_work = before_commit.is_some()
            || match &work {
                After::None => false,
                After::Unmap(r, _) => replaced.iter().any(|&v| overlaps(v, r)),
                After::Protect(r, _) => replaced.iter().any(|&v| overlaps(v, r)),
            };
        if !pte_work {
            // Nothing in the page tables changes: kill and publish at once.
            for &v in &replaced {
                self.kill(vma(v));
            }
            self.commit(txn);
            Edit::recycle(log, replaced);
            return;
        }
        // Keep the replaced VMAs that are published (a VMA this transaction
        // created and then replaced again dies with the abort below). They
        // stay alive until our second commit retires them: only a writer
        // holding a range lock over them could remove them (R-M1).
        let published: Vec<*const Vma> = {
            let pin = self.tree.pin();
            replaced
                .into_iter()
                .filter(|&v| {
                    let start = vma(v).spec.range.start;
                    pin.get(start).is_some_and(|(_, p)| std::ptr::eq(p, v))
                })
                .collect()
        };
        // VMAs this call adds, reserved for `vm.max_map_count` checks of
        // writers that run meanwhile (limits.rs).
        let growth = txn.len().saturating_sub(self.tree.len());
        self.reserve_maps(growth as isize);
        drop(txn);
        self.pte_phase(&published, before_commit, &work);
        self.replay(log, growth, work);
    }

    /// The edit of an unmap of `r`, computed on a snapshot taken under the
    /// caller's range write lock over its R-M1 extent (R-M3): the log, and
    /// the published VMAs it removes. `None` when `r` lies strictly inside
    /// one VMA: that unmap adds a VMA and needs the `vm.max_map_count`
    /// check and reservation under the tree's writer mutex.
    fn plan_unmap(&self, r: &Range<u64>) -> Option<(Vec<Op>, Vec<*const Vma>)> {
        let mut log = Vec::new();
        let mut published: Vec<*const Vma> = Vec::new();
        let pin = self.tree.pin();
        for (vr, v) in pin.range(r.clone()) {
            if vr.start < r.start && r.end < vr.end {
                return None;
            }
            // What `edit(.., zap = true)` logs for an unmap: every VMA
            // overlapping `r` is replaced, its parts outside `r` are kept
            // (no new spec, so nothing merges).
            published.push(v as *const Vma);
            log.push(Op::Remove(vr.start));
            if vr.start < r.start {
                log.push(Op::Insert(v.spec.slice(vr.start..r.start)));
            }
            if r.end < vr.end {
                log.push(Op::Insert(v.spec.slice(r.end..vr.end)));
            }
        }
        // Every `Remove` precedes the `Insert`s it makes room for.
        log.sort_by_key(|op| match op {
            Op::Remove(_) => 0,
            Op::Insert(_) => 1,
        });
        Some((log, published))
    }

    /// munmap's `finish` without its first transaction (docs/DESIGN.md
    /// §4.8, R-M3): kill, zap, then replay and commit in one transaction.
    /// Returns false, having done nothing, when `r` lies strictly inside one
    /// VMA (see [`plan_unmap`](Self::plan_unmap); the caller takes the
    /// transaction path).
    pub(crate) fn unmap_planned(&self, r: &Range<u64>, tables: Tables) -> bool {
        let Some((log, published)) = self.plan_unmap(r) else {
            return false;
        };
        if published.is_empty() {
            // A hole: nothing to zap, nothing to commit (`finish` would
            // commit an unchanged version).
            return true;
        }
        let work = After::Unmap(r.clone(), tables);
        self.pte_phase(&published, None, &work);
        self.replay(log, 0, work);
        true
    }

    /// munmap under `WriterLocking::Range`, holding a write lock of
    /// exactly `r` (R-M6, [DESIGN §4.8](crate::docs::design#48-range-locks-writers-on-disjoint-ranges-run-in-parallel-issue-11),
    /// "An unmap that locks only its range"): in one transaction of the
    /// current version, under the tree's writer mutex, kill the VMAs
    /// overlapping `r` and publish their parts outside `r` live and a hole
    /// in `r`; then, holding only `r`, zap the part of `r` they covered. So
    /// the neighbours that shared a VMA with `r` (a placed block merged
    /// with another thread's) are live again at once, and their own
    /// writers never wait for our zap.
    ///
    /// Why the edit may read VMAs our lock does not wholly hold: any other
    /// writer holding part of such a VMA holds all of it (R-M1), and so
    /// overlaps `r` and excludes us; another unmap holding part of it
    /// edits under the same mutex, after or before us, from the version
    /// the first one published. Why the zap may follow the commit, when it
    /// must precede it for every writer that publishes a VMA over its zap
    /// range (M7, the lost writes of issue 10): nothing is published in
    /// `r`, and nobody can publish there until we release, since every
    /// writer that maps there holds a write lock overlapping it (a
    /// placement claims with `try_write`, a FIXED mmap waits). A fault in
    /// `r` that read a removed VMA installs only if it validated it live
    /// under the PTL before our zap's section there, which then removes
    /// its PTE (races 1 and 2: the kill precedes the zap); one on the new
    /// version finds no VMA (Segv, after the munmap). A fault outside `r`
    /// that read a removed VMA retries and finds its live remainder.
    /// `Err(NoMem)`, with nothing changed, when `r` splits one VMA in three
    /// and `vm.max_map_count` is reached.
    pub(crate) fn unmap_own_range(&self, r: &Range<u64>) -> Result<(), MmError> {
        let txn = self.tree.write();
        if self.unmap_needs_room(&txn, r) {
            return Err(MmError::NoMem);
        }
        let mut e = Edit::new(txn);
        self.edit(&mut e, r.clone(), Vec::new(), true);
        if e.replaced.is_empty() {
            // A hole: nothing to zap, nothing to commit.
            return Ok(());
        }
        let (mut lo, mut hi) = (u64::MAX, 0);
        for &v in &e.replaced {
            // SAFETY: read from `e.txn`, the current version, under the
            // writer mutex we hold: published, so alive until the commit
            // below retires it and a grace period passes (M3).
            let v = unsafe { &*v };
            lo = lo.min(v.spec.range.start);
            hi = hi.max(v.spec.range.end);
            self.kill(v);
        }
        let Edit { txn, log, replaced } = e;
        self.commit(txn);
        Edit::recycle(log, replaced);
        let zap = lo.max(r.start)..hi.min(r.end);
        self.pt.zap_range(zap.start, zap.end);
        Ok(())
    }

    /// The PTE half of `finish`: kills the replaced VMAs that are published
    /// (alive until our commit retires them: only a writer holding a range
    /// lock over them could remove them, R-M1), then runs `before_commit`
    /// and the PTE work, holding no tree mutex.
    fn pte_phase(&self, published: &[*const Vma], before_commit: Option<&dyn Fn()>, work: &After) {
        for &v in published {
            // SAFETY: published and in our locked area: alive until our
            // commit below retires it (R-M1, M3).
            self.kill(unsafe { &*v });
        }
        if let Some(f) = before_commit {
            f();
        }
        match work {
            After::None => {}
            After::Unmap(r, _) => self.pt.zap_range(r.start, r.end),
            After::Protect(r, prot) => self.pt.protect_range(r.start, r.end, *prot),
        }
    }

    /// Publishes `txn`. The grace-period advances its retirements may make
    /// (a `membarrier` each, about 11 µs here) run after the tree's writer
    /// mutex is released, not under it, where the other writers of the
    /// space would wait them out ([DESIGN §4.8](crate::docs::design#48-range-locks-writers-on-disjoint-ranges-run-in-parallel-issue-11),
    /// "What disjoint writers still share").
    fn commit(&self, txn: WriteTxn<'_, Vma>) {
        self.tree.domain_arc().postponing(|| txn.commit());
    }

    /// The second transaction of `finish`: replays `log` (R-M2), releases
    /// the `growth` reserved VMAs, commits, then frees the tables the commit
    /// left without a VMA.
    fn replay(&self, log: Vec<Op>, growth: usize, work: After) {
        let mut txn = self.tree.write();
        for op in log {
            match op {
                Op::Remove(start) => {
                    txn.remove(start);
                }
                Op::Insert(spec) => {
                    let ok = txn.insert(spec.range.clone(), Vma::new(spec));
                    debug_assert!(ok.is_ok(), "replay found its area changed");
                }
            }
        }
        self.reserve_maps(-(growth as isize));
        self.commit(txn);
        if let After::Unmap(r, Tables::Free) = work {
            let pin = self.tree.pin();
            let empty = |base: u64| span_has_no_vma(&pin, base);
            self.pt
                .free_tables(&pin, r.start, r.end, self.tree.domain(), &empty);
        }
    }

    /// Marks `v` dead; under `PerVmaLock` waits out its readers first and
    /// detaches it (M2).
    fn kill(&self, v: &Vma) {
        if self.policy == FaultPolicy::PerVmaLock {
            v.lock.write_lock();
        }
        v.mark_dead();
        if self.policy == FaultPolicy::PerVmaLock {
            v.lock.detach();
        }
    }

    /// One-range convenience: edit + finish.
    pub(crate) fn replace(
        &self,
        txn: WriteTxn<'_, Vma>,
        range: Range<u64>,
        new: Vec<Spec>,
        work: After,
    ) {
        let mut e = Edit::new(txn);
        let zap = matches!(work, After::Unmap(..));
        self.edit(&mut e, range, new, zap);
        self.finish(e, None, work);
    }

    /// Replaces every VMA overlapping `range` by an identical copy, so that
    /// the originals can be dead while PTEs under them move (mremap
    /// DONTUNMAP's source, M7). No merging: the VMAs stay as they are.
    pub(crate) fn renew(&self, e: &mut Edit<'_>, range: Range<u64>) {
        let olds: Vec<Spec> = e.txn.range(range).map(|(_, v)| v.spec.clone()).collect();
        for spec in olds {
            e.remove(spec.range.start);
            e.insert(spec);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{Edit, Op};
    use crate::mm::vma::{Attrs, Spec, Vma};
    use crate::mm::{AddressSpace, MapFlags, Prot};
    use std::ops::Range;

    const P: u64 = 4096;
    const BASE: u64 = 0x1000_0000;

    type Snapshot = (Vec<(Range<u64>, Spec)>, Vec<String>, Vec<*const Vma>);

    /// The pending version, the log and the replaced VMAs of an edit.
    fn snapshot(e: &Edit<'_>) -> Snapshot {
        let entries = e
            .txn
            .range(0..u64::MAX)
            .map(|(r, v)| (r, v.spec.clone()))
            .collect();
        let log = e
            .log
            .iter()
            .map(|op| match op {
                Op::Remove(s) => format!("remove {s:#x}"),
                Op::Insert(spec) => format!("insert {spec:?}"),
            })
            .collect();
        (entries, log, e.replaced.clone())
    }

    /// `edit_fast` (where it takes the case) and `edit_general` give the
    /// same pending version, log and replaced VMAs, on random layouts of
    /// anonymous and file VMAs of two protections (so neighbours merge or
    /// not), for random unmaps and one-spec maps; both fast cases must be
    /// taken many times, merging and not.
    #[test]
    fn fast_edits_equal_general_edits() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let prot = |k: u64| {
            if k == 0 {
                Prot::READ
            } else {
                Prot::READ | Prot::WRITE
            }
        };
        let (mut unmaps, mut maps, mut merges) = (0, 0, 0);
        for _ in 0..200 {
            let mm = AddressSpace::new();
            let fixed = MapFlags::PRIVATE | MapFlags::ANONYMOUS | MapFlags::FIXED;
            for _ in 0..12 {
                let a = BASE + rnd(40) * P;
                let len = (1 + rnd(4)) * P;
                if rnd(2) == 0 {
                    mm.mmap(Some(a), len, prot(rnd(2)), fixed).unwrap();
                } else {
                    // One file at offset = address - BASE: neighbours
                    // continue each other and merge.
                    let f = MapFlags::PRIVATE | MapFlags::FIXED;
                    mm.mmap_file(Some(a), len, prot(rnd(2)), f, 7, a - BASE)
                        .unwrap();
                }
                if rnd(3) == 0 {
                    mm.munmap(BASE + rnd(40) * P, (1 + rnd(3)) * P).unwrap();
                }
            }
            mm.check().unwrap();
            for _ in 0..30 {
                let a = BASE + rnd(44) * P;
                let range = a..a + (1 + rnd(6)) * P;
                let zap = rnd(4) != 0;
                let new = match rnd(4) {
                    0 => Vec::new(),
                    k => {
                        let s = range.start + rnd(2) * P;
                        let e = (range.end - rnd(2) * P).max(s);
                        // Anonymous, or the attributes of a VMA of the
                        // layout continued to `s` (a file VMA's offset
                        // follows, so pieces of one file merge).
                        let vmas: Vec<Spec> = {
                            let pin = mm.tree.pin();
                            pin.range(0..u64::MAX)
                                .map(|(_, v)| v.spec.clone())
                                .collect()
                        };
                        let attrs = if k == 3 && !vmas.is_empty() {
                            let v = &vmas[rnd(vmas.len() as u64) as usize];
                            v.attrs.advanced(s.wrapping_sub(v.range.start))
                        } else {
                            Attrs::anon(prot(rnd(2)), false)
                        };
                        vec![Spec { range: s..e, attrs }]
                    }
                };
                let before = mm.tree.len();
                let fast = {
                    let mut e = Edit::new(mm.tree.write());
                    AddressSpace::edit_fast(&mut e, &range, new.clone(), zap)
                        .ok()
                        .map(|()| (snapshot(&e), e.txn.len()))
                };
                let Some((fast, len)) = fast else { continue };
                let mut e = Edit::new(mm.tree.write());
                AddressSpace::edit_general(&mut e, range.clone(), new.clone(), zap);
                assert_eq!(
                    fast,
                    snapshot(&e),
                    "range {range:x?}, new {new:?}, zap {zap}"
                );
                e.txn.validate().unwrap();
                if new.is_empty() {
                    unmaps += 1;
                } else {
                    maps += 1;
                    if len <= before {
                        merges += 1;
                    }
                }
            }
        }
        assert!(
            unmaps > 300 && maps > 300 && merges > 50,
            "fast cases taken: {unmaps} unmaps, {maps} maps ({merges} merging)"
        );
    }
}
