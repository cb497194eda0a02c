//! Stack growth (`expand_stack`), called by the fault path.

use crate::mm::pagetable::PAGE;
use crate::mm::retire::{After, Edit};
use crate::mm::space::AddressSpace;
use crate::mm::stats::Ctr;
use crate::mm::{MMAP_MIN_ADDR, STACK_GUARD_GAP};
use std::ops::Range;

impl AddressSpace {
    /// Linux `expand_stack`: grows the GROWSDOWN VMA above `addr` down to
    /// `addr`'s page. False when the guard rules refuse; `None` when the VMA
    /// above reaches past `locked`, the area the caller write-locked (the
    /// VMAs changed before it got the lock: lock again).
    pub(crate) fn expand_stack_locked(&self, addr: u64, locked: Range<u64>) -> Option<bool> {
        let txn = self.tree.write();
        let Some((r, v)) = txn.next(addr) else {
            return Some(false);
        };
        if r.end > locked.end {
            return None;
        }
        let vspec = v.spec.clone();
        if r.start <= addr {
            return Some(true); // someone else grew it
        }
        if !vspec.attrs.growsdown {
            return Some(false);
        }
        let new_start = addr & !(PAGE - 1);
        if new_start < MMAP_MIN_ADDR {
            return Some(false);
        }
        if let Some((pr, pv)) = txn.prev(r.start) {
            if pr.end > new_start {
                return Some(false);
            }
            if !pv.spec.attrs.growsdown
                && !pv.prot().is_empty()
                && new_start - pr.end < STACK_GUARD_GAP
            {
                return Some(false);
            }
        }
        if !self.stack_growth_fits(r.end, new_start) {
            return Some(false); // RLIMIT_STACK
        }
        let delta = r.start - new_start;
        let mut s = vspec;
        if let Some(f) = &mut s.attrs.file {
            let Some(o) = f.offset.checked_sub(delta) else {
                return Some(false);
            };
            f.offset = o;
        }
        s.range.start = new_start;
        let mut e = Edit::new(txn);
        // Not `edit` with merging: Linux does not merge on stack expansion.
        e.remove(r.start);
        e.insert(s);
        self.finish(e, None, After::None);
        self.pt.ctr.add(Ctr::StackGrowths, 1);
        Some(true)
    }
}
