//! `mremap`: shrink, grow in place, move, DONTUNMAP.

use crate::mm::error::MmError;
use crate::mm::flags::RemapFlags;
use crate::mm::pagetable::PAGE;
use crate::mm::placement::{Thp, get_unmapped_area};
use crate::mm::retire::{After, Edit};
use crate::mm::space::{AddressSpace, page_up};
use crate::mm::vma::{Spec, Vma};
use crate::mm::{MMAP_MIN_ADDR, TASK_SIZE};
use crate::tree::WriteTxn;

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
        // Coarse: mremap locks the whole space (docs/DESIGN.md §4.8).
        let _w = self.lock_whole();
        let txn = self.tree.write();
        // `check_mremap_params`' map-count reserve, before the lookup.
        if to && self.mremap_to_needs_room(self.map_count(&txn)) {
            return Err(MmError::NoMem);
        }
        let Some((vr, v)) = txn.get(old) else {
            return Err(MmError::Fault);
        };
        // Linux: after the lookup, a shrinking remap is always allowed — it
        // just unmaps the tail, across VMA boundaries (no `vma_to_resize`).
        if !to && new_len <= old_len {
            drop(txn);
            if new_len < old_len {
                self.unmap_checked(old + new_len..old + old_len)?;
            }
            return Ok(old);
        }
        // `mremap_to` shrinks the source first, so only `new_len` bytes of
        // it must lie in the VMA (`vma_to_resize`).
        let checked = if to { old_len.min(new_len) } else { old_len };
        if old + checked > vr.end {
            return Err(MmError::Fault);
        }
        let vspec = v.spec.clone();
        if let Some(dst) = target {
            if dst < MMAP_MIN_ADDR {
                return Err(MmError::Perm);
            }
            // Linux `mremap_to`: a move that also shrinks unmaps the source's
            // excess tail first (across VMAs), then moves `new_len` bytes.
            let (txn, old_len) = if old_len > new_len {
                drop(txn);
                self.unmap_locked(old + new_len..old + old_len);
                (self.tree.write(), new_len)
            } else {
                (txn, old_len)
            };
            if self.move_needs_room(self.map_count(&txn)) {
                return Err(MmError::NoMem);
            }
            self.move_vma(txn, &vspec, old, old_len, new_len, dst, dontunmap);
            return Ok(dst);
        }
        if dontunmap {
            // Not FIXED: a new place (old_len == new_len here).
            let moved = vspec.slice(old..old + old_len);
            let file_off = moved.attrs.file.as_ref().map(|f| f.offset);
            let thp = Thp::rule(new_len, file_off.is_none() && !moved.attrs.shared, file_off);
            let dst = get_unmapped_area(&txn, n, new_len, false, thp)?;
            if self.move_needs_room(self.map_count(&txn)) {
                return Err(MmError::NoMem);
            }
            self.move_vma(txn, &vspec, old, old_len, new_len, dst, true);
            return Ok(dst);
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
            return Ok(old);
        }
        if !flags.contains(RemapFlags::MAYMOVE) {
            return Err(MmError::NoMem);
        }
        let moved = vspec.slice(old..old + old_len);
        let file_off = moved.attrs.file.as_ref().map(|f| f.offset);
        let anon_private = file_off.is_none() && !moved.attrs.shared;
        let thp = Thp::rule(new_len, anon_private, file_off);
        let dst = get_unmapped_area(&txn, 0, new_len, false, thp)?;
        if self.move_needs_room(self.map_count(&txn)) {
            return Err(MmError::NoMem);
        }
        self.move_vma(txn, &vspec, old, old_len, new_len, dst, dontunmap);
        Ok(dst)
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
            After::Unmap(vec![src])
        };
        let move_ptes = || {
            pt.zap_range(target.start, target.end);
            pt.move_range(old, dst, keep);
        };
        self.finish(e, Some(&move_ptes), work);
    }
}
