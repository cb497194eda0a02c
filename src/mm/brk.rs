//! `brk`.

use crate::mm::TASK_SIZE;
use crate::mm::flags::Prot;
use crate::mm::pagetable::PAGE;
use crate::mm::placement::vm_start_gap;
use crate::mm::retire::{After, Tables};
use crate::mm::space::{AddressSpace, page_up};
use crate::mm::vma::{Attrs, Spec};
use std::ops::Range;

impl AddressSpace {
    /// `brk`: the new break on success, the old one on failure.
    pub fn brk(&self, new: u64) -> u64 {
        // R-M5: declared first, so dropped last, after every lock below.
        let _drain = self.drain_on_exit();
        let mut w = self.brk_lock();
        let _l = self.lock_whole();
        let orig = w.brk;
        if new < w.start_brk || new > TASK_SIZE {
            return orig;
        }
        let (Some(newbrk), Some(oldbrk)) = (page_up(new), page_up(w.brk)) else {
            return orig;
        };
        if oldbrk == newbrk {
            w.brk = new;
            return new;
        }
        if new <= w.brk {
            // Linux: a shrink with no VMA in [newbrk, oldbrk) fails.
            if self.tree.pin().range(newbrk..oldbrk).next().is_none() {
                return orig;
            }
            // Linux restores the old break when the unmap fails.
            if self.unmap_checked(newbrk..oldbrk, Tables::Free).is_err() {
                return orig;
            }
            w.brk = new;
            return new;
        }
        let txn = self.tree.write();
        if let Some((_, next)) = txn.next(oldbrk)
            && newbrk + PAGE > vm_start_gap(next)
        {
            return orig;
        }
        if self.too_many_maps(self.map_count(&txn)) {
            return orig; // `do_brk_flags`, even when it would only extend
        }
        let spec = Spec {
            range: oldbrk..newbrk,
            attrs: Attrs::anon(Prot::READ | Prot::WRITE, false),
        };
        self.replace(txn, oldbrk..newbrk, vec![spec], After::None);
        w.brk = new;
        new
    }

    /// The current program break and the start of the heap.
    pub fn brk_range(&self) -> Range<u64> {
        let w = self.brk_read();
        w.start_brk..w.brk
    }
}
