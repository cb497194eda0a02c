//! `munmap` and the unmap helpers other writers share.

use crate::mm::TASK_SIZE;
use crate::mm::error::MmError;
use crate::mm::pagetable::PAGE;
use crate::mm::retire::{After, Edit};
use crate::mm::space::{AddressSpace, page_up};
use crate::mm::vma::Vma;
use crate::tree::WriteTxn;
use std::ops::Range;

impl AddressSpace {
    /// `munmap`: holes are fine; VMAs are split at the edges.
    pub fn munmap(&self, addr: u64, len: u64) -> Result<(), MmError> {
        if !addr.is_multiple_of(PAGE) || addr > TASK_SIZE || len > TASK_SIZE - addr {
            return Err(MmError::Inval);
        }
        let len = page_up(len).ok_or(MmError::Inval)?;
        if len == 0 {
            return Err(MmError::Inval);
        }
        let _w = self.lock_for(addr..addr + len, true);
        self.unmap_checked(addr..addr + len)
    }

    /// `unmap_locked` after the munmap rule of `vm.max_map_count`
    /// ([`unmap_needs_room`](Self::unmap_needs_room)): ENOMEM and no change
    /// when the unmap would split one VMA in three at the limit.
    pub(crate) fn unmap_checked(&self, r: Range<u64>) -> Result<(), MmError> {
        if self.unmap_planned(&r) {
            return Ok(());
        }
        let txn = self.tree.write();
        if self.unmap_needs_room(&txn, &r) {
            return Err(MmError::NoMem);
        }
        self.replace(txn, r.clone(), Vec::new(), After::Unmap(vec![r]));
        Ok(())
    }

    /// Splits the VMA containing `at` into two with its attributes, nothing
    /// else (Linux's state after `split_vma` succeeded at the start of an
    /// mprotect range and failed at its end: `limits.rs`).
    pub(crate) fn split_only(&self, txn: WriteTxn<'_, Vma>, at: u64) {
        let Some((r, v)) = txn.get(at) else {
            return;
        };
        if r.start == at {
            return;
        }
        let spec = v.spec.clone();
        let mut e = Edit::new(txn);
        e.remove(r.start);
        for part in [r.start..at, at..r.end] {
            e.insert(spec.slice(part));
        }
        self.finish(e, None, After::None);
    }

    pub(crate) fn unmap_locked(&self, r: Range<u64>) {
        let txn = self.tree.write();
        self.replace(txn, r.clone(), Vec::new(), After::Unmap(vec![r]));
    }
}
