//! The page-fault paths ([DESIGN §4.3](crate::docs::design#43-the-fault-protocol)). One interface, three policies:
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

use super::error::FaultError;
use super::flags::Prot;
use super::flags::WriterLocking;
use super::flags::{Access, FaultOutcome, FaultPolicy};
use super::pagetable::{PAGE, PMD_SPAN};
use super::pagetable::{
    PTE_DIRTY, PTE_PRESENT, PTE_SWAP, PTE_WRITE, PageTables, perm_bits, pte_pfn,
};
use super::space::AddressSpace;
use super::space::granted;
use super::stats::{Ctr, Path};
use super::vma::Vma;
use super::{STACK_GUARD_GAP, TASK_SIZE};
use crate::sync::thread;
use crate::tree::ReadGuard;

/// Optimistic attempts before falling back to the address-space lock.
const MAX_RETRIES: u32 = 8;

/// The result of one attempt.
enum Try {
    Done(Result<FaultOutcome, FaultError>),
    /// A VMA or table changed under us: start over.
    Retry,
    /// As `Retry`, but this attempt linked the last-level table of the span
    /// at this base and then found its VMA dead (killed after our lookup):
    /// free it if the span holds no VMA (munmap's free step, DESIGN §4.8,
    /// "Freeing tables"), holding no lock and no pin, then start over.
    Orphan(u64),
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
            FaultPolicy::MmapLock => self.fault_locked(addr, access, true),
            FaultPolicy::RangeLock => self.fault_range_lock(addr, access),
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
                Try::Retry | Try::Orphan(_) => {
                    self.orphan(&t);
                    self.pt.ctr.add(Ctr::Retries, 1);
                    thread::yield_now();
                }
                Try::Locked => break,
            }
        }
        self.pt.ctr.add(Ctr::Fallbacks, 1);
        self.fault_locked(addr, access, false)
    }

    /// After an attempt that returned `Try::Orphan(base)` (and released
    /// everything): frees the table it linked if its span holds no VMA
    /// (`free_empty_spans`: a read lock of the span, a fresh snapshot,
    /// idempotent). Without it the table stayed linked and empty in a span
    /// with no VMA, counted nowhere (loom
    /// `breaker::munmap_vs_fault_on_killed_vma_frees_table`).
    fn orphan(&self, t: &Try) {
        if let Try::Orphan(base) = *t {
            self.free_empty_spans(&(base..base + PMD_SPAN));
        }
    }

    /// `RangeLock` (Lespinasse's design): read-lock the 2 MiB-aligned range
    /// around `addr` (an anonymous VMA) or the VMA's range (a file VMA), then
    /// look up and fault under it. The mapping of `addr` does not change
    /// while the lock is held (every writer changing it write-locks it,
    /// R-M1), but its VMA may be killed and republished unchanged there by
    /// an munmap of another part of it (R-M6): the attempt then retries.
    fn fault_range_lock(&self, addr: u64, access: Access) -> Result<FaultOutcome, FaultError> {
        loop {
            let l = {
                let pin = self.tree.pin();
                match lookup(&pin, addr) {
                    Ok(v) if v.spec.attrs.file.is_none() => {
                        let lo = addr & !(PMD_SPAN - 1);
                        lo..lo + PMD_SPAN
                    }
                    Ok(v) => v.spec.range.clone(),
                    // Segv: no VMA in a consistent snapshot, as the
                    // speculative path decides it.
                    Err(Try::Done(r)) => {
                        self.pt.ctr.fault_done(Path::Locked, &r);
                        return r;
                    }
                    Err(_) => return self.fault_locked(addr, access, false),
                }
            };
            let g = self.read_range(l);
            match self.attempt(&self.tree.pin(), addr, access) {
                Try::Done(r) => {
                    self.pt.ctr.fault_done(Path::Locked, &r);
                    return r;
                }
                t @ (Try::Retry | Try::Orphan(_)) => {
                    drop(g);
                    self.orphan(&t);
                    self.pt.ctr.add(Ctr::Retries, 1);
                    thread::yield_now();
                }
                Try::Locked => {
                    drop(g);
                    return self.fault_locked(addr, access, false);
                }
            }
        }
    }

    fn fault_vma_lock(&self, addr: u64, access: Access) -> Result<FaultOutcome, FaultError> {
        for _ in 0..MAX_RETRIES {
            match self.vma_lock_attempt(addr, access) {
                Try::Done(r) => {
                    self.pt.ctr.fault_done(Path::VmaLock, &r);
                    return r;
                }
                Try::Locked => break,
                t @ (Try::Retry | Try::Orphan(_)) => {
                    self.orphan(&t);
                    self.pt.ctr.add(Ctr::Retries, 1);
                    thread::yield_now();
                }
            }
        }
        self.pt.ctr.add(Ctr::Fallbacks, 1);
        self.fault_locked(addr, access, false)
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

    /// The locked path: `whole` (policy `MmapLock`) read-locks the whole
    /// space like Linux's mmap_lock; otherwise (the fallback of the
    /// optimistic policies) only `addr`'s page, which excludes every writer
    /// that changes the mapping of that page or frees its table (R-M1), so
    /// the attempt completes unless an munmap of another part of its VMA
    /// (which locks only its own range, R-M6) killed the VMA meanwhile: then
    /// it retries, holding nothing while it yields, and finds the live
    /// remainder, with the page's mapping unchanged. Stack growth
    /// write-locks the stack VMA and the guard gap below it.
    pub(crate) fn fault_locked(
        &self,
        addr: u64,
        access: Access,
        whole: bool,
    ) -> Result<FaultOutcome, FaultError> {
        let page = addr & !(PAGE - 1);
        loop {
            {
                let r = if whole {
                    self.read_whole()
                } else {
                    self.read_range(page..page + PAGE)
                };
                let pin = self.tree.pin();
                match self.attempt(&pin, addr, access) {
                    Try::Done(r) => {
                        self.pt.ctr.fault_done(Path::Locked, &r);
                        return r;
                    }
                    // Only after an munmap of another part of the VMA
                    // (R-M6); never spin holding the lock.
                    t @ (Try::Retry | Try::Orphan(_)) => {
                        drop((pin, r));
                        self.orphan(&t);
                        thread::yield_now();
                        continue;
                    }
                    Try::Locked => {}
                }
            }
            match self.grow_stack(addr) {
                Some(true) => {}
                Some(false) => {
                    let r = Err(FaultError::Segv);
                    self.pt.ctr.fault_done(Path::Locked, &r);
                    return r;
                }
                None => thread::yield_now(),
            }
        }
    }

    /// Grows the GROWSDOWN VMA above `addr` under a write lock of it and the
    /// guard gap below `addr` (everything `expand_stack` reads). `None`: the
    /// VMAs changed before we got the lock; try again.
    fn grow_stack(&self, addr: u64) -> Option<bool> {
        // R-M5: declared first, so dropped last, after the write lock.
        let _drain = self.drain_on_exit();
        let page = addr & !(PAGE - 1);
        let end = match self.tree.pin().next(addr) {
            Some((r, _)) => r.end,
            None => return Some(false),
        };
        let lo = page.saturating_sub(STACK_GUARD_GAP + PAGE);
        let _w = match self.locking {
            WriterLocking::Global => self.lock_whole(),
            WriterLocking::Range => granted(self.rl.write(lo, end.max(lo + 1))),
        };
        let locked = if self.locking == WriterLocking::Global {
            0..u64::MAX
        } else {
            lo..end
        };
        self.expand_stack_locked(addr, locked)
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
        let Some((t, linked_here)) = pt.walk_fresh(pin, addr, true) else {
            return Try::Retry;
        };
        let ptl = t.lock_at(addr);
        if !ptl.linked() || v.is_dead() {
            // A table we linked for a VMA killed after our lookup: nobody
            // else may look at this span again (its writer's free step may
            // be over), so we run the free step (gap 2 of DESIGN §4.8).
            if linked_here && ptl.linked() {
                return Try::Orphan(addr & !(PMD_SPAN - 1));
            }
            return Try::Retry;
        }
        let mut pte = ptl.get(addr);
        let need = perm_bits(access.needs());
        let mut swapped_in = false;
        if pte & PTE_SWAP != 0 {
            // A swap entry (`try_to_unmap`, rmap.rs): its reference becomes
            // the mapping again, without write in a private VMA; the COW
            // rule below then decides a write (reuse on refcount 1, else
            // copy), as Linux's `do_swap_page`.
            let pfn = pte_pfn(pte);
            pt.frames.swap_in(pfn);
            pt.frames.rmap_add(pfn, pt.pv(addr), false);
            let mut perms = perm_bits(v.prot());
            if !v.spec.attrs.shared {
                perms &= !PTE_WRITE;
            }
            pte = PageTables::new_pte(pfn, Prot::empty(), false) | perms;
            ptl.set(addr, pte);
            swapped_in = true;
        }
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
                return Try::Done(Ok(if swapped_in {
                    FaultOutcome::Installed
                } else {
                    FaultOutcome::Present
                }));
            }
            let mut perms = perm_bits(v.prot());
            // The COW rule (M8, M9): in a private VMA, write is granted only
            // on a frame whose refcount is 1. Under this PTL nobody can add
            // a reference to a frame only this PTE references (frame.rs), so
            // the test holds until we unlock.
            if !v.spec.attrs.shared && perms & PTE_WRITE != 0 {
                let pfn = pte_pfn(pte);
                if !pt.frames.exclusive(pfn) {
                    if access != Access::Write {
                        perms &= !PTE_WRITE;
                    } else {
                        // Copy: a new frame with the old contents; our PTE
                        // drops its reference to the shared one.
                        let copy = pt.alloc_frame(pt.frames.value(pfn));
                        pt.frames.rmap_add(copy, pt.pv(addr), true);
                        ptl.set(addr, PageTables::new_pte(copy, v.prot(), true));
                        let removed = pt.frames.rmap_remove(pfn, pt.pv(addr));
                        debug_assert!(removed, "PTE without its pv entry (M10)");
                        pt.free_frame(pte);
                        return Try::Done(Ok(FaultOutcome::Copied));
                    }
                } else if access == Access::Write && pte & PTE_WRITE == 0 {
                    pt.ctr.add(Ctr::CowReuses, 1);
                }
            }
            ptl.set(addr, pte | perms | dirty);
            return Try::Done(Ok(if swapped_in {
                FaultOutcome::Installed
            } else {
                FaultOutcome::Upgraded
            }));
        }
        let (pfn, fresh) = match &v.spec.attrs.shm {
            // MAP_SHARED anonymous: the object's frame of this page, or a
            // fresh one the object keeps (lock order: PTL → object, shmem.rs).
            // Never `fresh` below: the object cleared a fresh frame's stale
            // pv entries under its lock, and another space may have added
            // its entry since.
            Some(m) => {
                let pgoff = m.pgoff + (addr - v.spec.range.start) / PAGE;
                (m.obj.get_or_insert(pgoff, || pt.alloc_frame(0)), false)
            }
            None => (pt.alloc_frame(0), true),
        };
        // After the object's lock is released: PTL → pv (rmap.rs).
        pt.frames.rmap_add(pfn, pt.pv(addr), fresh);
        ptl.set(addr, PageTables::new_pte(pfn, v.prot(), dirty != 0));
        Try::Done(Ok(FaultOutcome::Installed))
    }
}
