//! Stack growth (`expand_stack`), called by the fault path.

use crate::mm::pagetable::PAGE;
use crate::mm::retire::After;
use crate::mm::space::AddressSpace;
use crate::mm::stats::Ctr;
use crate::mm::vma::Vma;
use crate::mm::{MMAP_MIN_ADDR, STACK_GUARD_GAP};

impl AddressSpace {
    /// Linux `expand_stack`: grows the GROWSDOWN VMA above `addr` down to
    /// `addr`'s page. False when the guard rules refuse.
    pub(crate) fn expand_stack_locked(&self, addr: u64) -> bool {
        let txn = self.tree.write();
        let Some((r, v)) = txn.next(addr) else {
            return false;
        };
        let (r, vp, vspec) = (r, v as *const Vma, v.spec.clone());
        if r.start <= addr {
            return true; // someone else grew it
        }
        if !vspec.attrs.growsdown {
            return false;
        }
        let new_start = addr & !(PAGE - 1);
        if new_start < MMAP_MIN_ADDR {
            return false;
        }
        if let Some((pr, pv)) = txn.prev(r.start) {
            if pr.end > new_start {
                return false;
            }
            if !pv.spec.attrs.growsdown
                && !pv.prot().is_empty()
                && new_start - pr.end < STACK_GUARD_GAP
            {
                return false;
            }
        }
        if !self.stack_growth_fits(r.end, new_start) {
            return false; // RLIMIT_STACK
        }
        let delta = r.start - new_start;
        let mut s = vspec;
        if let Some(f) = &mut s.attrs.file {
            let Some(o) = f.offset.checked_sub(delta) else {
                return false;
            };
            f.offset = o;
        }
        s.range.start = new_start;
        let mut replaced = Vec::new();
        let mut txn = txn;
        // Not `edit` with merging: Linux does not merge on stack expansion.
        txn.remove(r.start);
        replaced.push(vp);
        let ok = txn.insert(s.range.clone(), Vma::new(s));
        debug_assert!(ok.is_ok());
        self.finish(txn, replaced, || {}, After::None);
        self.pt.ctr.add(Ctr::StackGrowths, 1);
        true
    }
}
