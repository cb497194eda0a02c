//! The page-fault paths (docs/DESIGN.md §4.3). One interface, three policies:
//!
//! * `Speculative`: Srcu read guard (the tree pin) → lockless lookup → dead:
//!   retry; no VMA: Segv; prot: Access → walk/populate → PTL → table linked?
//!   VMA still live? → install or find a good PTE → unlock. The only shared
//!   writes are to the PTE table (its lock and entry) — never to the VMA.
//! * `PerVmaLock`: the same lookup, then a per-VMA read reference (6.15
//!   `vm_refcnt`) held across the install; writers exclude readers per VMA.
//! * `MmapLock`: the address-space lock for read around lookup and install.
//!
//! Optimistic paths retry at most `MAX_RETRIES` times, then take the locked
//! path, so every fault completes.

use super::TASK_SIZE;
use super::error::FaultError;
use super::flags::{Access, FaultOutcome, FaultPolicy};
use super::pagetable::{PTE_DIRTY, PTE_PRESENT, PageTables, perm_bits};
use super::space::AddressSpace;
use super::stats::{Ctr, Path};
use super::vma::Vma;
use crate::sync::thread;
use crate::tree::ReadGuard;

/// Optimistic attempts before falling back to the address-space lock.
const MAX_RETRIES: u32 = 8;

/// The result of one attempt.
enum Try {
    Done(Result<FaultOutcome, FaultError>),
    /// A VMA or table changed under us: start over.
    Retry,
    /// Needs the address-space lock (stack growth).
    Locked,
}

/// The VMA covering `addr` in `pin`'s version.
fn lookup<'g>(pin: &'g ReadGuard<'_, Vma>, addr: u64) -> Result<&'g Vma, Try> {
    match pin.next(addr) {
        None => Err(Try::Done(Err(FaultError::Segv))),
        Some((r, v)) if r.start > addr => {
            if v.spec.attrs.growsdown {
                Err(Try::Locked)
            } else {
                Err(Try::Done(Err(FaultError::Segv)))
            }
        }
        Some((_, v)) => Ok(v),
    }
}

impl AddressSpace {
    /// Resolves a page fault at `addr`: maps a zeroed frame (or finds or
    /// upgrades the PTE) when a VMA allows `access`, grows a GROWSDOWN stack
    /// just below it, else `Segv` / `Access`.
    pub fn fault(&self, addr: u64, access: Access) -> Result<FaultOutcome, FaultError> {
        if addr >= TASK_SIZE {
            let r = Err(FaultError::Segv);
            self.pt.ctr.fault_done(Path::None, &r);
            return r;
        }
        match self.policy {
            FaultPolicy::Speculative => self.fault_speculative(addr, access),
            FaultPolicy::PerVmaLock => self.fault_vma_lock(addr, access),
            FaultPolicy::MmapLock => self.fault_locked(addr, access),
        }
    }

    fn fault_speculative(&self, addr: u64, access: Access) -> Result<FaultOutcome, FaultError> {
        for _ in 0..MAX_RETRIES {
            // The pin (Srcu guard) ends with this statement, before we yield.
            let t = self.attempt(&self.tree.pin(), addr, access);
            match t {
                Try::Done(r) => {
                    self.pt.ctr.fault_done(Path::Speculative, &r);
                    return r;
                }
                Try::Retry => {
                    self.pt.ctr.add(Ctr::Retries, 1);
                    thread::yield_now();
                }
                Try::Locked => break,
            }
        }
        self.pt.ctr.add(Ctr::Fallbacks, 1);
        self.fault_locked(addr, access)
    }

    fn fault_vma_lock(&self, addr: u64, access: Access) -> Result<FaultOutcome, FaultError> {
        for _ in 0..MAX_RETRIES {
            match self.vma_lock_attempt(addr, access) {
                Try::Done(r) => {
                    self.pt.ctr.fault_done(Path::VmaLock, &r);
                    return r;
                }
                Try::Locked => break,
                Try::Retry => {
                    self.pt.ctr.add(Ctr::Retries, 1);
                    thread::yield_now();
                }
            }
        }
        self.pt.ctr.add(Ctr::Fallbacks, 1);
        self.fault_locked(addr, access)
    }

    /// One attempt under a per-VMA read reference.
    fn vma_lock_attempt(&self, addr: u64, access: Access) -> Try {
        let pin = self.tree.pin();
        let v = match lookup(&pin, addr) {
            Ok(v) => v,
            Err(t) => return t,
        };
        if !v.lock.try_read() {
            return Try::Retry;
        }
        let t = if !v.prot().contains(access.needs()) {
            Try::Done(Err(FaultError::Access))
        } else {
            self.install(&pin, v, addr, access)
        };
        v.lock.read_unlock();
        t
    }

    /// The classic path: the address-space lock for read (for write to grow a stack).
    pub(crate) fn fault_locked(
        &self,
        addr: u64,
        access: Access,
    ) -> Result<FaultOutcome, FaultError> {
        loop {
            {
                let _r = self.read_lock();
                let pin = self.tree.pin();
                match self.attempt(&pin, addr, access) {
                    Try::Done(r) => {
                        self.pt.ctr.fault_done(Path::Locked, &r);
                        return r;
                    }
                    // Impossible with writers excluded; harmless to loop.
                    Try::Retry => continue,
                    Try::Locked => {}
                }
            }
            let _w = self.write_lock();
            if !self.expand_stack_locked(addr) {
                let r = Err(FaultError::Segv);
                self.pt.ctr.fault_done(Path::Locked, &r);
                return r;
            }
        }
    }

    /// One lockless attempt (also used under the lock, where it cannot retry).
    fn attempt(&self, pin: &ReadGuard<'_, Vma>, addr: u64, access: Access) -> Try {
        let v = match lookup(pin, addr) {
            Ok(v) => v,
            Err(t) => return t,
        };
        if v.is_dead() {
            return Try::Retry;
        }
        if !v.prot().contains(access.needs()) {
            return Try::Done(Err(FaultError::Access));
        }
        self.install(pin, v, addr, access)
    }

    /// Walk/populate, then under the PTL: table still linked (race 1), VMA
    /// still live (race 2, M4), then install or reuse the PTE.
    fn install(&self, pin: &ReadGuard<'_, Vma>, v: &Vma, addr: u64, access: Access) -> Try {
        let pt: &PageTables = &self.pt;
        let Some(t) = pt.walk(pin, addr, true) else {
            return Try::Retry;
        };
        let ptl = t.lock();
        if !ptl.linked() || v.is_dead() {
            return Try::Retry;
        }
        let pte = ptl.get(addr);
        let need = perm_bits(access.needs());
        let dirty = if access == Access::Write {
            PTE_DIRTY
        } else {
            0
        };
        if pte & PTE_PRESENT != 0 {
            if pte & need != 0 {
                if dirty != 0 && pte & PTE_DIRTY == 0 {
                    ptl.set(addr, pte | PTE_DIRTY);
                }
                return Try::Done(Ok(FaultOutcome::Present));
            }
            ptl.set(addr, pte | perm_bits(v.prot()) | dirty);
            return Try::Done(Ok(FaultOutcome::Upgraded));
        }
        let pfn = pt.alloc_frame();
        ptl.set(addr, PageTables::new_pte(pfn, v.prot(), dirty != 0));
        Try::Done(Ok(FaultOutcome::Installed))
    }
}
