//! `madvise`.

use crate::mm::error::MmError;
use crate::mm::flags::Advice;
use crate::mm::pagetable::PAGE;
use crate::mm::space::{AddressSpace, page_up};

impl AddressSpace {
    /// `madvise`: DontNeed zaps (frames freed); holes → ENOMEM after the
    /// mapped parts were done.
    pub fn madvise(&self, addr: u64, len: u64, advice: Advice) -> Result<(), MmError> {
        if !addr.is_multiple_of(PAGE) {
            return Err(MmError::Inval);
        }
        let alen = page_up(len).ok_or(MmError::Inval)?;
        let end = addr.checked_add(alen).ok_or(MmError::Inval)?;
        if end == addr {
            return Ok(());
        }
        // Like Linux's MADV_DONTNEED: the address-space lock for read.
        let _r = self.read_range(addr..end);
        let pin = self.tree.pin();
        let mut cur = addr;
        let mut hole = false;
        let mut parts = Vec::new();
        for (r, _) in pin.range(addr..end) {
            if r.start > cur {
                hole = true;
            }
            parts.push(r.start.max(addr)..r.end.min(end));
            cur = r.end.min(end);
        }
        hole |= cur < end;
        if advice == Advice::DontNeed {
            for p in parts {
                self.pt.zap_range(p.start, p.end);
            }
        }
        if hole { Err(MmError::NoMem) } else { Ok(()) }
    }
}
