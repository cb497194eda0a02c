//! `mremap`: shrink, grow in place, move, DONTUNMAP.

use crate::mm::error::MmError;
use crate::mm::flags::RemapFlags;
use crate::mm::flags::WriterLocking;
use crate::mm::pagetable::PAGE;
use crate::mm::placement::{Thp, get_unmapped_area};
use crate::mm::retire::{After, Edit, Tables};
use crate::mm::space::{AddressSpace, claim_extent, granted, page_up};
use crate::mm::vma::{Spec, Vma};
use crate::mm::{MMAP_MIN_ADDR, TASK_SIZE};
use crate::rangelock::RangeLockSet;
use crate::tree::WriteTxn;
use std::ops::Range;

impl AddressSpace {
    /// `mremap`. `new_addr` is the target for `RemapFlags::FIXED`.
    pub fn mremap(
        &self,
        old: u64,
        old_len: u64,
        new_len: u64,
        flags: RemapFlags,
        new_addr: Option<u64>,
    ) -> Result<u64, MmError> {
        // R-M5: declared first, so dropped last, after every lock below.
        let _drain = self.drain_on_exit();
        let known = RemapFlags::MAYMOVE | RemapFlags::FIXED | RemapFlags::DONTUNMAP;
        if !known.contains(flags)
            || (flags.contains(RemapFlags::FIXED) && !flags.contains(RemapFlags::MAYMOVE))
            || (flags.contains(RemapFlags::DONTUNMAP)
                && (!flags.contains(RemapFlags::MAYMOVE) || old_len != new_len))
            || !old.is_multiple_of(PAGE)
        {
            return Err(MmError::Inval);
        }
        let old_len = page_up(old_len).ok_or(MmError::Inval)?;
        let new_len = page_up(new_len).ok_or(MmError::Inval)?;
        if new_len == 0 || old_len == 0 || old > TASK_SIZE || old_len > TASK_SIZE - old {
            return Err(MmError::Inval);
        }
        // Linux 6.17 `check_mremap_params`: "Is the new length silly?" (6.16
        // and older: ENOMEM later, from `get_unmapped_area`). Without it,
        // `old + new_len` below overflowed.
        if new_len > TASK_SIZE {
            return Err(MmError::Inval);
        }
        // FIXED or DONTUNMAP: Linux's `mremap_to`, which always moves and
        // checks the new address first (for DONTUNMAP without FIXED it is
        // only a placement hint).
        let dontunmap = flags.contains(RemapFlags::DONTUNMAP);
        let to = flags.contains(RemapFlags::FIXED) || dontunmap;
        let n = new_addr.unwrap_or(0);
        if to {
            if !n.is_multiple_of(PAGE) || new_len > TASK_SIZE || n > TASK_SIZE - new_len {
                return Err(MmError::Inval);
            }
            if old + old_len > n && n + new_len > old {
                return Err(MmError::Inval);
            }
        }
        let target = flags.contains(RemapFlags::FIXED).then_some(n);
        // Range locks (docs/DESIGN.md §4.8): the source area (whole VMAs,
        // room to grow in place, out to 2 MiB for the tables a move or
        // shrink may free) and the target area, lowest first. A placement
        // that lands outside what we hold relocks with it and runs again.
        let src = old..old + old_len.max(new_len);
        let mut tgt = target.map(|d| d..d + new_len);
        let p = RemapArgs {
            old,
            old_len,
            new_len,
            flags,
            n,
            target,
            dontunmap,
            to,
        };
        let mut waits = 0;
        loop {
            let mut set = self.lock_remap(src.clone(), tgt.clone());
            match self.mremap_locked(&mut set, &p) {
                Step::Done(r) => return r,
                Step::Relock(t) => {
                    drop(set);
                    tgt = Some(t);
                }
                Step::Wait if waits < 64 => {
                    drop(set);
                    waits += 1;
                    granted(self.rl.wait(0, u64::MAX));
                }
                Step::Wait => return Err(MmError::NoMem),
            }
        }
    }

    /// Locks the source area `src` (with 2 MiB spans) and the target area
    /// `tgt` (if known) lowest first, one range when they touch; revalidates
    /// like [`lock_for`](Self::lock_for).
    fn lock_remap(&self, src: Range<u64>, tgt: Option<Range<u64>>) -> RangeLockSet<'_> {
        let mut set = self.rl.set();
        if self.locking == WriterLocking::Global {
            granted(set.write(0, u64::MAX));
            return set;
        }
        self.reclaim_retired();
        let areas = |pin: &crate::tree::ReadGuard<'_, Vma>| {
            let s = self.lock_extent(pin, &src, true);
            match &tgt {
                None => vec![s],
                Some(t) => {
                    let t = self.lock_extent(pin, t, false);
                    if t.start <= s.end && s.start <= t.end {
                        let union = s.start.min(t.start)..s.end.max(t.end);
                        vec![union]
                    } else if t.start < s.start {
                        vec![t, s]
                    } else {
                        vec![s, t]
                    }
                }
            }
        };
        let mut want = areas(&self.tree.pin());
        loop {
            for a in &want {
                granted(set.write(a.start, a.end));
            }
            let now = areas(&self.tree.pin());
            if now.iter().all(|n| holds(&set, n)) {
                return set;
            }
            set.release_all();
            // Grow each area to cover what it needs now (and what we had).
            want = now;
        }
    }

    /// Everything after the argument checks, under `set`.
    fn mremap_locked(&self, set: &mut RangeLockSet<'_>, p: &RemapArgs) -> Step {
        let RemapArgs {
            old,
            old_len,
            new_len,
            flags,
            n,
            target,
            dontunmap,
            to,
        } = *p;
        let txn = self.tree.write();
        // `check_mremap_params`' map-count reserve, before the lookup.
        if to && self.mremap_to_needs_room(self.map_count(&txn)) {
            return Step::Done(Err(MmError::NoMem));
        }
        let Some((vr, v)) = txn.get(old) else {
            return Step::Done(Err(MmError::Fault));
        };
        // Linux: after the lookup, a shrinking remap is always allowed — it
        // just unmaps the tail, across VMA boundaries (no `vma_to_resize`).
        if !to && new_len <= old_len {
            drop(txn);
            if new_len < old_len
                && let Err(e) = self.unmap_checked(old + new_len..old + old_len, Tables::Free)
            {
                return Step::Done(Err(e));
            }
            return Step::Done(Ok(old));
        }
        // `mremap_to` shrinks the source first, so only `new_len` bytes of
        // it must lie in the VMA (`vma_to_resize`).
        let checked = if to { old_len.min(new_len) } else { old_len };
        if old + checked > vr.end {
            return Step::Done(Err(MmError::Fault));
        }
        let vspec = v.spec.clone();
        if let Some(dst) = target {
            if dst < MMAP_MIN_ADDR {
                return Step::Done(Err(MmError::Perm));
            }
            // Linux `mremap_to`: a move that also shrinks unmaps the source's
            // excess tail first (across VMAs), then moves `new_len` bytes.
            let (txn, old_len) = if old_len > new_len {
                drop(txn);
                self.unmap_locked(old + new_len..old + old_len, Tables::Free);
                (self.tree.write(), new_len)
            } else {
                (txn, old_len)
            };
            if self.move_needs_room(self.map_count(&txn)) {
                return Step::Done(Err(MmError::NoMem));
            }
            self.move_vma(txn, &vspec, old, old_len, new_len, dst, dontunmap);
            return Step::Done(Ok(dst));
        }
        if dontunmap {
            // Not FIXED: a new place (old_len == new_len here).
            let moved = vspec.slice(old..old + old_len);
            let file_off = moved.attrs.file.as_ref().map(|f| f.offset);
            let thp = Thp::rule(new_len, file_off.is_none() && !moved.attrs.shared, file_off);
            let dst = match self.remap_place(&txn, set, n, new_len, thp) {
                Ok(d) => d,
                Err(step) => return step,
            };
            if self.move_needs_room(self.map_count(&txn)) {
                return Step::Done(Err(MmError::NoMem));
            }
            self.move_vma(txn, &vspec, old, old_len, new_len, dst, true);
            return Step::Done(Ok(dst));
        }
        // Grow in place when the old range ends the VMA and the gap allows.
        let new_end = old + new_len;
        if old + old_len == vr.end
            && new_end <= TASK_SIZE
            && txn.range(vr.end..new_end).next().is_none()
        {
            let mut s = vspec.clone();
            s.range.end = new_end;
            self.replace(txn, vr.start..new_end, vec![s], After::None);
            return Step::Done(Ok(old));
        }
        if !flags.contains(RemapFlags::MAYMOVE) {
            return Step::Done(Err(MmError::NoMem));
        }
        let moved = vspec.slice(old..old + old_len);
        let file_off = moved.attrs.file.as_ref().map(|f| f.offset);
        let anon_private = file_off.is_none() && !moved.attrs.shared;
        let thp = Thp::rule(new_len, anon_private, file_off);
        let dst = match self.remap_place(&txn, set, 0, new_len, thp) {
            Ok(d) => d,
            Err(step) => return step,
        };
        if self.move_needs_room(self.map_count(&txn)) {
            return Step::Done(Err(MmError::NoMem));
        }
        self.move_vma(txn, &vspec, old, old_len, new_len, dst, dontunmap);
        Step::Done(Ok(dst))
    }

    /// `get_unmapped_area` for a moving mremap, under `set`: the area found
    /// must be held; if not, claim it with `try_write` when it lies above
    /// what we hold (the lock order), else relock with it.
    fn remap_place(
        &self,
        txn: &WriteTxn<'_, Vma>,
        set: &mut RangeLockSet<'_>,
        hint: u64,
        len: u64,
        thp: Thp,
    ) -> Result<u64, Step> {
        let dst = match get_unmapped_area(txn, hint, len, false, thp) {
            Ok(d) => d,
            Err(MmError::NoMem) if self.rl.requests() > set.ranges().count() => {
                return Err(Step::Wait);
            }
            Err(e) => return Err(Step::Done(Err(e))),
        };
        let need = claim_extent(txn, &(dst..dst + len));
        if holds(set, &need)
            || (need.start >= set.held_end() && set.try_write(need.start, need.end).is_ok())
        {
            Ok(dst)
        } else {
            Err(Step::Relock(dst..dst + len))
        }
    }

    /// Moves `[old, old + old_len)` of the VMA `vspec` to `dst` with length
    /// `new_len` (its PTEs move with it), unmapping whatever was at the
    /// target, in one commit. The source VMAs are dead (with DONTUNMAP they
    /// are replaced by identical copies published by the commit) and the
    /// target is not yet published while the PTEs move, so no fault can
    /// install on either side until the commit (M7).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn move_vma(
        &self,
        txn: WriteTxn<'_, Vma>,
        vspec: &Spec,
        old: u64,
        old_len: u64,
        new_len: u64,
        dst: u64,
        dontunmap: bool,
    ) {
        let mut moved = vspec.slice(old..old + old_len);
        moved.range = dst..dst + new_len;
        let mut e = Edit::new(txn);
        let src = old..old + old_len;
        if dontunmap {
            self.renew(&mut e, src.clone());
        } else {
            self.edit(&mut e, src.clone(), Vec::new(), true);
        }
        let target = dst..dst + new_len;
        self.edit(&mut e, target.clone(), vec![moved], true);
        let pt = &self.pt;
        let keep = old_len.min(new_len);
        // The source keeps a VMA under DONTUNMAP: nothing to zap or free
        // there (its PTEs all moved). Otherwise zap what did not move (the
        // source beyond `new_len` was unmapped already by mremap) and free
        // its emptied tables after the commit.
        let work = if dontunmap {
            After::None
        } else {
            After::Unmap(src, Tables::Free)
        };
        let move_ptes = || {
            pt.zap_range(target.start, target.end);
            pt.move_range(old, dst, keep);
        };
        self.finish(e, Some(&move_ptes), work);
    }
}

/// The arguments of one mremap call after its checks.
#[derive(Clone, Copy)]
struct RemapArgs {
    old: u64,
    old_len: u64,
    new_len: u64,
    flags: RemapFlags,
    n: u64,
    target: Option<u64>,
    dontunmap: bool,
    to: bool,
}

/// How an attempt under the locks ended.
enum Step {
    Done(Result<u64, MmError>),
    /// The placement chose this target outside the held areas: relock.
    Relock(Range<u64>),
    /// No room while other writers are in flight: wait for them, retry.
    Wait,
}

/// Whether `set` holds all of `r` in one of its ranges.
fn holds(set: &RangeLockSet<'_>, r: &Range<u64>) -> bool {
    set.ranges().any(|(s, e, _)| s <= r.start && r.end <= e)
}
