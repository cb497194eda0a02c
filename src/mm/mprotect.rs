//! `mprotect`.

use crate::mm::error::MmError;
use crate::mm::flags::Prot;
use crate::mm::limits::ProtectStop;
use crate::mm::pagetable::PAGE;
use crate::mm::retire::After;
use crate::mm::space::{AddressSpace, page_up};

impl AddressSpace {
    /// `mprotect`: a hole → ENOMEM after the VMAs before it were changed.
    pub fn mprotect(&self, addr: u64, len: u64, prot: Prot) -> Result<(), MmError> {
        // R-M5: declared first, so dropped last, after every lock below.
        let _drain = self.drain_on_exit();
        // Linux's order (`do_mprotect_pkey`): both GROWS bits, alignment,
        // zero length (success), overflow (ENOMEM), then unknown bits.
        let grows = prot & (Prot::GROWSDOWN | Prot::GROWSUP);
        if grows == Prot::GROWSDOWN | Prot::GROWSUP || !addr.is_multiple_of(PAGE) {
            return Err(MmError::Inval);
        }
        if len == 0 {
            return Ok(());
        }
        let len = page_up(len).ok_or(MmError::NoMem)?;
        let mut start = addr;
        let end = addr.checked_add(len).ok_or(MmError::NoMem)?;
        if prot.bits() & !Prot::all().bits() != 0 {
            return Err(MmError::Inval);
        }
        let newprot = prot & Prot::ACCESS;
        let _w = self.lock_for(addr..end, false);
        let txn = self.tree.write();
        let Some((first, fv)) = txn.next(start) else {
            return Err(MmError::NoMem);
        };
        if first.start >= end {
            return Err(MmError::NoMem);
        }
        if grows.contains(Prot::GROWSDOWN) {
            if !fv.spec.attrs.growsdown {
                return Err(MmError::Inval);
            }
            start = first.start;
        } else if first.start > start {
            return Err(MmError::NoMem);
        } else if grows.contains(Prot::GROWSUP) {
            return Err(MmError::Inval); // no VM_GROWSUP VMAs on x86-64
        }
        let mut new = Vec::new();
        let mut cur = start;
        let mut hole = false;
        for (r, v) in txn.range(start..end) {
            if r.start > cur {
                hole = true;
                break;
            }
            let mut s = v.spec.slice(r.start.max(start)..r.end.min(end));
            s.attrs.prot = newprot;
            new.push(s);
            cur = r.end.min(end);
        }
        hole |= cur < end;
        if cur > start {
            // vm.max_map_count: Linux's loop may run out of VMAs part way.
            match self.mprotect_stop(&txn, start..cur, newprot) {
                None => self.replace(txn, start..cur, new, After::Protect(start..cur, newprot)),
                Some(ProtectStop::SplitOnly(at)) => {
                    self.split_only(txn, at);
                    return Err(MmError::NoMem);
                }
                Some(ProtectStop::At(at)) => {
                    if at > start {
                        let new = new
                            .into_iter()
                            .filter(|s| s.range.start < at)
                            .map(|s| s.slice(s.range.start..s.range.end.min(at)))
                            .collect();
                        self.replace(txn, start..at, new, After::Protect(start..at, newprot));
                    }
                    return Err(MmError::NoMem);
                }
            }
        }
        if hole { Err(MmError::NoMem) } else { Ok(()) }
    }
}
