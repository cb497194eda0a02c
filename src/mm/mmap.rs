//! `mmap` (anonymous and file).

use crate::mm::error::MmError;
use crate::mm::flags::WriterLocking;
use crate::mm::flags::{MapFlags, Prot};
use crate::mm::pagetable::PAGE;
use crate::mm::placement::{
    Thp, Window, get_unmapped_area, get_unmapped_area_in, round_hint_to_min,
};
use crate::mm::retire::{After, Tables};
use crate::mm::shmem::{ShmMap, Shmem};
use crate::mm::space::{AddressSpace, claim_extent, granted, page_up};
use crate::mm::stats::Ctr;
use crate::mm::vma::Vma;
use crate::mm::vma::{Attrs, FileMap, Spec};
use crate::rangelock::{RangeMode, RangeWriteGuard};
use crate::tree::WriteTxn;

/// A placement's result: its area write-locked, the open transaction, and
/// the address.
pub(crate) type Placed<'a> = (RangeWriteGuard<'a>, WriteTxn<'a, Vma>, u64);

impl AddressSpace {
    /// Linux's "too many mappings?" check and `get_unmapped_area`, returning
    /// the address with its area write-locked ([DESIGN §4.8](crate::docs::design#48-range-locks-writers-on-disjoint-ranges-run-in-parallel-issue-11)) and the
    /// open transaction. FIXED: lock the range, then check. Otherwise the
    /// search runs in the transaction and claims its result with a
    /// `try_write` of the area before the transaction ends, so two threads
    /// never get the same area. Lock-aware (§4.8): a candidate whose area
    /// another request holds is skipped, and the search goes on past it
    /// (below it top-down, above it bottom-up); only when nothing unheld
    /// fits does it wait, holding nothing, for the first held area it
    /// skipped, and search again. With no other request in flight this is
    /// Linux's search exactly. A failed search that skipped nothing is
    /// retried while writers are in flight (their unmaps may free room).
    pub(crate) fn place(
        &self,
        hint: u64,
        len: u64,
        fixed: bool,
        thp: Thp,
    ) -> Result<Placed<'_>, MmError> {
        if fixed || self.locking == WriterLocking::Global {
            let w = if fixed {
                self.lock_for(hint..hint.saturating_add(len), false)
            } else {
                self.lock_whole()
            };
            let txn = self.tree.write();
            // Linux `do_mmap`: "Too many mappings?" before placement.
            if self.too_many_maps(self.map_count(&txn)) {
                return Err(MmError::NoMem);
            }
            let addr = get_unmapped_area(&txn, hint, len, fixed, thp)?;
            return Ok((w, txn, addr));
        }
        self.reclaim_retired();
        let mut waits = 0;
        loop {
            let txn = self.tree.write();
            if self.too_many_maps(self.map_count(&txn)) {
                return Err(MmError::NoMem);
            }
            let mut window = Window::LINUX;
            let mut first_held = None;
            let failed = loop {
                let (addr, from) = match get_unmapped_area_in(&txn, hint, len, false, thp, &window)
                {
                    Ok(found) => found,
                    Err(e) => break Err(e),
                };
                let l = claim_extent(&txn, &(addr..addr + len));
                if let Ok(w) = self.rl.try_write(l.start, l.end) {
                    return Ok((w, txn, addr));
                }
                // Held by another request (or one waiting for it): skip a
                // writer's area; wait for readers. If it left meanwhile,
                // the same candidate is tried again.
                match granted(self.rl.conflicting_mode(l.start, l.end)) {
                    Some((_, RangeMode::Read)) => break Ok((addr, l, window)),
                    Some((h, RangeMode::Write)) => {
                        first_held.get_or_insert(h);
                        window.skip(from, addr, len, h);
                    }
                    None => crate::sync::thread::yield_now(),
                }
            };
            drop(txn);
            let failed = match failed {
                Ok((addr, l, window)) => {
                    match self.place_after_readers(hint, len, thp, addr, l, &window) {
                        Some(done) => return done,
                        None => continue,
                    }
                }
                Err(e) => e,
            };
            match failed {
                MmError::NoMem if let Some((a, b)) = first_held => {
                    // Only held space could fit: wait for the best of it.
                    self.pt.ctr.add(Ctr::PlaceWaits, 1);
                    granted(self.rl.wait(a, b));
                }
                MmError::NoMem if waits < 64 && self.rl.requests() > 0 => {
                    waits += 1;
                    granted(self.rl.wait(0, u64::MAX));
                }
                e => return Err(e),
            }
        }
    }

    /// The candidate `addr` of a placement searching in `window` conflicts
    /// only with readers (a free step of munmap or of a fault holding its
    /// span, a fallback or `RangeLock` fault, madvise, `stats`/`check`/fork:
    /// none changes a VMA). Skipping it, as a writer's area, would land
    /// where no serial order puts the mapping (2 MiB lower for a free step:
    /// `breaker_place::placement_never_skips_a_whole_span_for_a_table_free`).
    /// So: holding nothing (the caller dropped its transaction), write-lock
    /// the claim `l` (FIFO: it waits for those readers only, and later
    /// readers wait for it), then take the transaction and search again in
    /// the same window. Same candidate and claim inside `l`: placed, as
    /// if the readers had not been there. Otherwise (the space changed
    /// meanwhile) `None`: release and search from scratch.
    fn place_after_readers(
        &self,
        hint: u64,
        len: u64,
        thp: Thp,
        addr: u64,
        l: std::ops::Range<u64>,
        window: &Window,
    ) -> Option<Result<Placed<'_>, MmError>> {
        self.pt.ctr.add(Ctr::PlaceWaits, 1);
        let w = granted(self.rl.write(l.start, l.end));
        let txn = self.tree.write();
        if self.too_many_maps(self.map_count(&txn)) {
            return Some(Err(MmError::NoMem));
        }
        match get_unmapped_area_in(&txn, hint, len, false, thp, window) {
            Ok((a, _)) if a == addr => {
                let now = claim_extent(&txn, &(a..a + len));
                (now.start >= l.start && now.end <= l.end).then_some(Ok((w, txn, a)))
            }
            _ => None,
        }
    }

    /// `mmap` of anonymous memory (`MapFlags::ANONYMOUS` is implied). `hint`
    /// is the address argument (`None` = NULL). Returns the start address.
    pub fn mmap(
        &self,
        hint: Option<u64>,
        len: u64,
        prot: Prot,
        flags: MapFlags,
    ) -> Result<u64, MmError> {
        self.do_mmap(hint, len, prot, flags, None)
    }

    /// `mmap` of file `file_id` at byte `offset`.
    pub fn mmap_file(
        &self,
        hint: Option<u64>,
        len: u64,
        prot: Prot,
        flags: MapFlags,
        file_id: u64,
        offset: u64,
    ) -> Result<u64, MmError> {
        self.do_mmap(hint, len, prot, flags, Some((file_id, offset)))
    }

    pub(crate) fn do_mmap(
        &self,
        hint: Option<u64>,
        len: u64,
        prot: Prot,
        flags: MapFlags,
        file: Option<(u64, u64)>,
    ) -> Result<u64, MmError> {
        // R-M5: declared first, so dropped last, after every lock below.
        let _drain = self.drain_on_exit();
        let offset = file.map_or(0, |f| f.1);
        if !offset.is_multiple_of(PAGE) || len == 0 {
            return Err(MmError::Inval);
        }
        // Linux's `do_mmap` switches on the map type only after placement
        // (so a bad type loses to ENOMEM/EPERM/EEXIST); the THP rule only
        // needs to know whether a valid type is shared.
        let map_type = match flags.bits() & 0x3 {
            1 if file.is_none() && flags.contains(MapFlags::GROWSDOWN) => Err(MmError::Inval),
            1 => Ok(true),
            2 => Ok(false),
            _ => Err(MmError::Inval),
        };
        let shared = map_type.clone().unwrap_or(false);
        let len = page_up(len).ok_or(MmError::NoMem)?;
        if file.is_some() && offset.checked_add(len).is_none() {
            return Err(MmError::Overflow);
        }
        let fixed = flags.intersects(MapFlags::FIXED | MapFlags::FIXED_NOREPLACE);
        let hint = hint.unwrap_or(0);
        let hint = if fixed { hint } else { round_hint_to_min(hint) };
        let thp = Thp::rule(len, file.is_none() && !shared, file.map(|f| f.1));
        let (_w, txn, addr) = self.place(hint, len, fixed, thp)?;
        let range = addr..addr + len;
        if flags.contains(MapFlags::FIXED_NOREPLACE) && txn.range(range.clone()).next().is_some() {
            return Err(MmError::Exist);
        }
        map_type?;
        // `__mmap_region` unmaps what the range covers with the munmap rule.
        if self.unmap_needs_room(&txn, &range) {
            return Err(MmError::NoMem);
        }
        let mut attrs = Attrs::anon(prot, shared);
        attrs.growsdown = flags.contains(MapFlags::GROWSDOWN);
        if let Some((id, offset)) = file {
            attrs.file = Some(FileMap {
                id,
                offset,
                dev: (0, 0),
                inode: id,
                path: None,
                deleted: false,
            });
        }
        if shared && file.is_none() {
            // MAP_SHARED|MAP_ANONYMOUS: a new shared object (`shmem_zero_setup`).
            attrs.shm = Some(ShmMap {
                obj: Shmem::new(&self.pt.frames),
                pgoff: 0,
            });
        }
        let spec = Spec {
            range: range.clone(),
            attrs,
        };
        self.replace(
            txn,
            range.clone(),
            vec![spec],
            After::Unmap(range, Tables::Keep),
        );
        Ok(addr)
    }
}
