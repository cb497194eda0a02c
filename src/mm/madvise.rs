//! `madvise`.

use crate::mm::error::MmError;
use crate::mm::flags::Advice;
use crate::mm::pagetable::PAGE;
use crate::mm::retire::After;
use crate::mm::space::{AddressSpace, page_up};

impl AddressSpace {
    /// `madvise`: DontNeed zaps (frames freed); holes → ENOMEM after the
    /// mapped parts were done.
    pub fn madvise(&self, addr: u64, len: u64, advice: Advice) -> Result<(), MmError> {
        // R-M5: declared first, so dropped last, after every lock below.
        let _drain = self.drain_on_exit();
        if !addr.is_multiple_of(PAGE) {
            return Err(MmError::Inval);
        }
        let alen = page_up(len).ok_or(MmError::Inval)?;
        let end = addr.checked_add(alen).ok_or(MmError::Inval)?;
        if end == addr {
            return Ok(());
        }
        if matches!(
            advice,
            Advice::DontFork | Advice::DoFork | Advice::WipeOnFork | Advice::KeepOnFork
        ) {
            return self.madvise_fork(addr, end, advice);
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

    /// MADV_DONTFORK/DOFORK/WIPEONFORK/KEEPONFORK: a VMA flag over
    /// `[addr, end)`, splitting VMAs at the edges and merging like
    /// mprotect (Linux's `madvise_update_vma`), under a range write lock.
    /// As Linux's `madvise_walk_vmas`: holes give ENOMEM after the mapped
    /// parts were changed; WIPEONFORK on a shared or file VMA stops there
    /// with EINVAL, the VMAs before it changed. No PTE changes.
    fn madvise_fork(&self, addr: u64, end: u64, advice: Advice) -> Result<(), MmError> {
        let _w = self.lock_for(addr..end, false);
        let txn = self.tree.write();
        let mut new = Vec::new();
        let mut cur = addr;
        let mut hole = false;
        let mut err = None;
        for (r, v) in txn.range(addr..end) {
            if advice == Advice::WipeOnFork && (v.spec.attrs.shared || v.spec.attrs.file.is_some())
            {
                err = Some(MmError::Inval);
                break;
            }
            hole |= r.start > cur;
            let mut s = v.spec.slice(r.start.max(addr)..r.end.min(end));
            match advice {
                Advice::DontFork => s.attrs.dontfork = true,
                Advice::DoFork => s.attrs.dontfork = false,
                Advice::WipeOnFork => s.attrs.wipeonfork = true,
                _ => s.attrs.wipeonfork = false,
            }
            cur = r.end.min(end);
            new.push(s);
        }
        hole |= err.is_none() && cur < end;
        if let (Some(first), Some(last)) = (new.first(), new.last()) {
            let span = first.range.start..last.range.end;
            self.replace(txn, span, new, After::None);
        }
        match err {
            Some(e) => Err(e),
            None if hole => Err(MmError::NoMem),
            None => Ok(()),
        }
    }
}
