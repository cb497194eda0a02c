//! Page contents: `read` and `write` through the page tables (a hardware
//! access: a present PTE granting the access is used as is, otherwise the
//! access faults and tries again), and `get_page`, a read-only reference to
//! a frame (a GUP pin, like vmsplice's). [DESIGN §4.9](crate::docs::design#49-processes-frames-fork-and-copy-on-write-issue-14).
//!
//! Per-page atomicity: each access reads or writes the frame's one `u64`
//! inside the PTL critical section that found the PTE, so a fork (which
//! copies each PTE in one critical section of the same PTL) gives the child
//! the page before or after a racing write, never a mix.

use super::TASK_SIZE;
use super::error::FaultError;
use super::flags::Access;
use super::frame::FrameTable;
use super::pagetable::{PTE_ACCESSED, PTE_DIRTY, PTE_PRESENT, PageTables, Ptl, perm_bits, pte_pfn};
use super::space::AddressSpace;
use crate::sync::Arc;

/// A reference to a frame taken by [`AddressSpace::get_page`]: the frame
/// stays allocated, with its contents, until this is dropped, whatever
/// happens to the mappings (a reference, not a mapping: the COW rule
/// counts it, M9).
pub struct PageRef {
    frames: Arc<FrameTable>,
    pfn: u64,
}

impl PageRef {
    /// The frame's number (as [`Pte::frame`](super::Pte::frame)).
    pub fn frame(&self) -> u64 {
        self.pfn
    }

    /// The frame's contents now.
    pub fn read(&self) -> u64 {
        self.frames.value(self.pfn)
    }
}

impl Drop for PageRef {
    fn drop(&mut self) {
        self.frames.put(self.pfn);
    }
}

impl std::fmt::Debug for PageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageRef").field("frame", &self.pfn).finish()
    }
}

impl AddressSpace {
    /// Reads the value of the page holding `addr` (a read fault first if no
    /// readable PTE maps it: a fresh page reads 0).
    pub fn read(&self, addr: u64) -> Result<u64, FaultError> {
        self.with_page(addr, Access::Read, |pt, _, _, pte| {
            pt.frames.value(pte_pfn(pte))
        })
    }

    /// Writes the value of the page holding `addr` (a write fault first if
    /// no writable PTE maps it: that is where copy-on-write happens).
    pub fn write(&self, addr: u64, value: u64) -> Result<(), FaultError> {
        self.with_page(addr, Access::Write, |pt, ptl, a, pte| {
            pt.frames.set_value(pte_pfn(pte), value);
            if pte & PTE_DIRTY == 0 {
                ptl.set(a, pte | PTE_DIRTY | PTE_ACCESSED);
            }
        })
    }

    /// Takes a reference to the frame mapped at `addr` (a read fault first
    /// if needed), as `get_user_pages` without FOLL_WRITE.
    pub fn get_page(&self, addr: u64) -> Result<PageRef, FaultError> {
        self.with_page(addr, Access::Read, |pt, _, _, pte| {
            // From the reference our PTE holds, under its PTL (frame.rs).
            pt.frames.get(pte_pfn(pte));
            PageRef {
                frames: pt.frames.clone(),
                pfn: pte_pfn(pte),
            }
        })
    }

    /// Runs `f` under the PTL of a present PTE of `addr` granting `access`,
    /// faulting until there is one.
    fn with_page<R>(
        &self,
        addr: u64,
        access: Access,
        f: impl FnOnce(&PageTables, &Ptl<'_>, u64, u64) -> R,
    ) -> Result<R, FaultError> {
        if addr >= TASK_SIZE {
            return Err(FaultError::Segv);
        }
        let need = perm_bits(access.needs());
        loop {
            {
                // The pin keeps the table alive while we use it (M3).
                let pin = self.tree.pin();
                if let Some(t) = self.pt.walk(&pin, addr, false) {
                    let ptl = t.lock_at(addr);
                    let pte = ptl.get(addr);
                    if ptl.linked() && pte & PTE_PRESENT != 0 && pte & need != 0 {
                        return Ok(f(&self.pt, &ptl, addr, pte));
                    }
                }
            }
            self.fault(addr, access)?;
        }
    }
}
