//! `AddressSpace` and the writer calls (mmap, munmap, mprotect, mremap, brk,
//! madvise), all built on one replace-and-retire step (docs/DESIGN.md §4.2):
//! compute the new VMAs in a pending tree transaction, write-lock (policy
//! `PerVmaLock`) and mark dead every VMA being replaced, commit once, then fix
//! or zap PTEs under their PTLs. Replaced VMAs are retired by the commit.

use super::error::MmError;
use super::flags::{Advice, FaultPolicy, MapFlags, Prot, RemapFlags};
use super::pagetable::{PAGE, PMD_SPAN, PTE_DIRTY, PTE_EXEC, PTE_PRESENT, PTE_READ, PTE_WRITE};
use super::pagetable::{PageTables, pte_pfn};
use super::placement::{Thp, get_unmapped_area, round_hint_to_min, vm_start_gap};
use super::stats::{Counters, Ctr, MmStats};
use super::vma::{Attrs, FileMap, Spec, Vma, VmaInfo};
use super::{DEFAULT_BRK, MMAP_MIN_ADDR, STACK_GUARD_GAP, TASK_SIZE};
use crate::sync::RwLock;
use crate::trace::MapsEntry;
use crate::tree::{MapleTree, WriteTxn};
use std::ops::Range;

/// State owned by the writer lock.
pub(crate) struct WState {
    pub(crate) start_brk: u64,
    pub(crate) brk: u64,
}

/// A process address space. `Send + Sync`; every call takes `&self`.
pub struct AddressSpace {
    pub(crate) tree: MapleTree<Vma>,
    pub(crate) pt: PageTables,
    /// The old `mmap_lock`: writers take it for write; `MmapLock` faults,
    /// fallbacks, madvise and stats take it for read.
    pub(crate) lock: RwLock<WState>,
    pub(crate) policy: FaultPolicy,
    /// VMAs above TASK_SIZE (`[vsyscall]`), kept apart like Linux's gate VMA.
    pub(crate) gate: Vec<MapsEntry>,
}

/// A page-table entry as seen by [`AddressSpace::translate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pte {
    /// The frame number.
    pub frame: u64,
    /// The permissions the PTE grants.
    pub prot: Prot,
    /// Written since mapped.
    pub dirty: bool,
}

/// Work on PTEs after the commit.
enum After {
    None,
    /// Zap these ranges and free emptied tables.
    Unmap(Vec<Range<u64>>),
    /// Take away what `Prot` does not allow in the range.
    Protect(Range<u64>, Prot),
}

fn page_up(len: u64) -> Option<u64> {
    len.checked_add(PAGE - 1).map(|l| l & !(PAGE - 1))
}

/// A spec tagged with whether it is new in this edit (only new specs merge).
struct Piece {
    spec: Spec,
    new: bool,
}

impl Default for AddressSpace {
    fn default() -> Self {
        Self::new()
    }
}

impl AddressSpace {
    /// An empty address space (no VMAs) with the `Speculative` fault policy.
    pub fn new() -> AddressSpace {
        Self::with_policy(FaultPolicy::Speculative)
    }

    /// An empty address space with the given fault policy.
    pub fn with_policy(policy: FaultPolicy) -> AddressSpace {
        AddressSpace {
            tree: MapleTree::new(),
            pt: PageTables::new(),
            lock: RwLock::new(WState {
                start_brk: DEFAULT_BRK,
                brk: DEFAULT_BRK,
            }),
            policy,
            gate: Vec::new(),
        }
    }

    /// The fault policy.
    pub fn policy(&self) -> FaultPolicy {
        self.policy
    }

    pub(crate) fn write_lock(&self) -> crate::sync::RwLockWriteGuard<'_, WState> {
        // Removed VMAs and emptied page tables wait in the tree's domain, which
        // commits never run (DESIGN §3.7): each writer call frees what earlier
        // ones retired. Only crate destructors are queued there (the domain is
        // not public), and none of them panics.
        if let Err(p) = self.tree.reclaim() {
            p.resume();
        }
        self.lock.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn read_lock(&self) -> crate::sync::RwLockReadGuard<'_, WState> {
        self.lock.read().unwrap_or_else(|e| e.into_inner())
    }

    // ----- the replace-and-retire step -------------------------------------

    /// Rewrites `range` in the pending version: every VMA overlapping it is
    /// cut to outside `range` (the cut pieces keep their attributes), the
    /// `new` specs (inside `range`) are added, and new specs merge with each
    /// other and with touching neighbours. Unchanged VMAs are left alone.
    /// Returns the VMAs replaced (to be marked dead before commit).
    fn edit(
        &self,
        txn: &mut WriteTxn<'_, Vma>,
        range: Range<u64>,
        new: Vec<Spec>,
        replaced: &mut Vec<*const Vma>,
    ) {
        let olds: Vec<(Range<u64>, *const Vma, Spec)> = txn
            .range(range.clone())
            .map(|(r, v)| (r, v as *const Vma, v.spec.clone()))
            .collect();
        let mut pieces: Vec<Piece> = Vec::new();
        for (r, _, s) in &olds {
            if r.start < range.start {
                pieces.push(Piece {
                    spec: s.slice(r.start..range.start),
                    new: false,
                });
            }
            if r.end > range.end {
                pieces.push(Piece {
                    spec: s.slice(range.end..r.end),
                    new: false,
                });
            }
        }
        pieces.extend(
            new.into_iter()
                .filter(|s| s.range.start < s.range.end)
                .map(|spec| Piece { spec, new: true }),
        );
        pieces.sort_by_key(|p| p.spec.range.start);
        let mut touched: Vec<(Range<u64>, *const Vma, Spec)> = olds;
        // Neighbours that a new spec at the edge merges with.
        if let Some(first) = pieces.first().filter(|p| p.new)
            && let Some((r, v)) = txn.prev(first.spec.range.start)
            && r.end == first.spec.range.start
            && v.spec.merges_with(&first.spec)
        {
            touched.push((r, v as *const Vma, v.spec.clone()));
            pieces.insert(
                0,
                Piece {
                    spec: v.spec.clone(),
                    new: false,
                },
            );
        }
        if let Some(last) = pieces.last().filter(|p| p.new)
            && let Some((r, v)) = txn.get(last.spec.range.end)
            && r.start == last.spec.range.end
            && last.spec.merges_with(&v.spec)
        {
            touched.push((r, v as *const Vma, v.spec.clone()));
            pieces.push(Piece {
                spec: v.spec.clone(),
                new: false,
            });
        }
        // Merge pass: adjacent mergeable pieces fuse when one of them is new.
        let mut merged: Vec<Piece> = Vec::with_capacity(pieces.len());
        for p in pieces {
            if let Some(last) = merged.last_mut()
                && (last.new || p.new)
                && last.spec.merges_with(&p.spec)
            {
                last.spec.range.end = p.spec.range.end;
                last.new = true;
                continue;
            }
            merged.push(p);
        }
        // Keep VMAs that come out unchanged.
        let mut keep = vec![false; merged.len()];
        touched.retain(|(_, _, s)| {
            if let Some(i) = merged.iter().position(|p| &p.spec == s) {
                keep[i] = true;
                false
            } else {
                true
            }
        });
        for (r, v, _) in touched {
            replaced.push(v);
            txn.remove(r.start);
        }
        for (p, k) in merged.into_iter().zip(keep) {
            if !k {
                let r = p.spec.range.clone();
                let ok = txn.insert(r, Vma::new(p.spec));
                debug_assert!(ok.is_ok(), "edit left an overlap");
            }
        }
    }

    /// Marks `replaced` dead (write-locking and detaching them first under
    /// `PerVmaLock`), runs `before_commit`, commits, and does `after`.
    fn finish(
        &self,
        txn: WriteTxn<'_, Vma>,
        replaced: Vec<*const Vma>,
        before_commit: impl FnOnce(),
        after: After,
    ) {
        for &v in &replaced {
            // SAFETY: each pointer came from this pending transaction, which
            // keeps removed values alive until it commits (below).
            let v = unsafe { &*v };
            if self.policy == FaultPolicy::PerVmaLock {
                v.lock.write_lock();
            }
            v.mark_dead();
            if self.policy == FaultPolicy::PerVmaLock {
                v.lock.detach();
            }
        }
        before_commit();
        txn.commit();
        match after {
            After::None => {}
            After::Unmap(ranges) => {
                let pin = self.tree.pin();
                let empty = |base: u64| pin.range(base..base + PMD_SPAN).next().is_none();
                for r in ranges {
                    self.pt
                        .zap_range(r.start, r.end, self.tree.domain(), Some(&empty));
                }
            }
            After::Protect(r, prot) => self.pt.protect_range(r.start, r.end, prot),
        }
    }

    /// One-range convenience: edit + finish.
    fn replace(&self, mut txn: WriteTxn<'_, Vma>, range: Range<u64>, new: Vec<Spec>, after: After) {
        let mut replaced = Vec::new();
        self.edit(&mut txn, range, new, &mut replaced);
        self.finish(txn, replaced, || {}, after);
    }

    // ----- mmap -------------------------------------------------------------

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

    fn do_mmap(
        &self,
        hint: Option<u64>,
        len: u64,
        prot: Prot,
        flags: MapFlags,
        file: Option<(u64, u64)>,
    ) -> Result<u64, MmError> {
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
        let _w = self.write_lock();
        let txn = self.tree.write();
        let addr = get_unmapped_area(&txn, hint, len, fixed, thp)?;
        let range = addr..addr + len;
        if flags.contains(MapFlags::FIXED_NOREPLACE) && txn.range(range.clone()).next().is_some() {
            return Err(MmError::Exist);
        }
        map_type?;
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
        let spec = Spec {
            range: range.clone(),
            attrs,
        };
        self.replace(txn, range.clone(), vec![spec], After::Unmap(vec![range]));
        Ok(addr)
    }

    // ----- munmap -----------------------------------------------------------

    /// `munmap`: holes are fine; VMAs are split at the edges.
    pub fn munmap(&self, addr: u64, len: u64) -> Result<(), MmError> {
        if !addr.is_multiple_of(PAGE) || addr > TASK_SIZE || len > TASK_SIZE - addr {
            return Err(MmError::Inval);
        }
        let len = page_up(len).ok_or(MmError::Inval)?;
        if len == 0 {
            return Err(MmError::Inval);
        }
        let _w = self.write_lock();
        self.unmap_locked(addr..addr + len);
        Ok(())
    }

    fn unmap_locked(&self, r: Range<u64>) {
        let txn = self.tree.write();
        self.replace(txn, r.clone(), Vec::new(), After::Unmap(vec![r]));
    }

    // ----- mprotect ---------------------------------------------------------

    /// `mprotect`: a hole → ENOMEM after the VMAs before it were changed.
    pub fn mprotect(&self, addr: u64, len: u64, prot: Prot) -> Result<(), MmError> {
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
        let _w = self.write_lock();
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
            self.replace(txn, start..cur, new, After::Protect(start..cur, newprot));
        }
        if hole { Err(MmError::NoMem) } else { Ok(()) }
    }

    // ----- mremap -----------------------------------------------------------

    /// `mremap`. `new_addr` is the target for `RemapFlags::FIXED`.
    pub fn mremap(
        &self,
        old: u64,
        old_len: u64,
        new_len: u64,
        flags: RemapFlags,
        new_addr: Option<u64>,
    ) -> Result<u64, MmError> {
        let known = RemapFlags::MAYMOVE | RemapFlags::FIXED | RemapFlags::DONTUNMAP;
        if !known.contains(flags)
            || (flags.contains(RemapFlags::FIXED) && !flags.contains(RemapFlags::MAYMOVE))
            || (flags.contains(RemapFlags::DONTUNMAP)
                && (!flags.contains(RemapFlags::MAYMOVE) || old_len != new_len))
            || !old.is_multiple_of(PAGE)
        {
            return Err(MmError::Inval);
        }
        let old_len = page_up(old_len).ok_or(MmError::Inval)?;
        let new_len = page_up(new_len).ok_or(MmError::Inval)?;
        if new_len == 0 || old_len == 0 || old > TASK_SIZE || old_len > TASK_SIZE - old {
            return Err(MmError::Inval);
        }
        // FIXED or DONTUNMAP: Linux's `mremap_to`, which always moves and
        // checks the new address first (for DONTUNMAP without FIXED it is
        // only a placement hint).
        let dontunmap = flags.contains(RemapFlags::DONTUNMAP);
        let to = flags.contains(RemapFlags::FIXED) || dontunmap;
        let n = new_addr.unwrap_or(0);
        if to {
            if !n.is_multiple_of(PAGE) || new_len > TASK_SIZE || n > TASK_SIZE - new_len {
                return Err(MmError::Inval);
            }
            if old + old_len > n && n + new_len > old {
                return Err(MmError::Inval);
            }
        }
        let target = flags.contains(RemapFlags::FIXED).then_some(n);
        let _w = self.write_lock();
        let txn = self.tree.write();
        let Some((vr, v)) = txn.get(old) else {
            return Err(MmError::Fault);
        };
        // Linux: after the lookup, a shrinking remap is always allowed — it
        // just unmaps the tail, across VMA boundaries (no `vma_to_resize`).
        if !to && new_len <= old_len {
            drop(txn);
            if new_len < old_len {
                self.unmap_locked(old + new_len..old + old_len);
            }
            return Ok(old);
        }
        // `mremap_to` shrinks the source first, so only `new_len` bytes of
        // it must lie in the VMA (`vma_to_resize`).
        let checked = if to { old_len.min(new_len) } else { old_len };
        if old + checked > vr.end {
            return Err(MmError::Fault);
        }
        let vspec = v.spec.clone();
        if let Some(dst) = target {
            if dst < MMAP_MIN_ADDR {
                return Err(MmError::Perm);
            }
            // Linux `mremap_to`: a move that also shrinks unmaps the source's
            // excess tail first (across VMAs), then moves `new_len` bytes.
            let (txn, old_len) = if old_len > new_len {
                drop(txn);
                self.unmap_locked(old + new_len..old + old_len);
                (self.tree.write(), new_len)
            } else {
                (txn, old_len)
            };
            self.move_vma(txn, &vspec, old, old_len, new_len, dst, dontunmap);
            return Ok(dst);
        }
        if dontunmap {
            // Not FIXED: a new place (old_len == new_len here).
            let moved = vspec.slice(old..old + old_len);
            let file_off = moved.attrs.file.as_ref().map(|f| f.offset);
            let thp = Thp::rule(new_len, file_off.is_none() && !moved.attrs.shared, file_off);
            let dst = get_unmapped_area(&txn, n, new_len, false, thp)?;
            self.move_vma(txn, &vspec, old, old_len, new_len, dst, true);
            return Ok(dst);
        }
        // Grow in place when the old range ends the VMA and the gap allows.
        let new_end = old + new_len;
        if old + old_len == vr.end
            && new_end <= TASK_SIZE
            && txn.range(vr.end..new_end).next().is_none()
        {
            let mut s = vspec.clone();
            s.range.end = new_end;
            self.replace(txn, vr.start..new_end, vec![s], After::None);
            return Ok(old);
        }
        if !flags.contains(RemapFlags::MAYMOVE) {
            return Err(MmError::NoMem);
        }
        let moved = vspec.slice(old..old + old_len);
        let file_off = moved.attrs.file.as_ref().map(|f| f.offset);
        let anon_private = file_off.is_none() && !moved.attrs.shared;
        let thp = Thp::rule(new_len, anon_private, file_off);
        let dst = get_unmapped_area(&txn, 0, new_len, false, thp)?;
        self.move_vma(txn, &vspec, old, old_len, new_len, dst, dontunmap);
        Ok(dst)
    }

    /// Moves `[old, old + old_len)` of the VMA `vspec` to `dst` with length
    /// `new_len` (its PTEs move with it), unmapping whatever was at the
    /// target, in one commit. The source VMAs are dead and the target is not
    /// yet published while the PTEs move, so no fault can touch either side.
    #[allow(clippy::too_many_arguments)]
    fn move_vma(
        &self,
        mut txn: WriteTxn<'_, Vma>,
        vspec: &Spec,
        old: u64,
        old_len: u64,
        new_len: u64,
        dst: u64,
        dontunmap: bool,
    ) {
        let mut moved = vspec.slice(old..old + old_len);
        moved.range = dst..dst + new_len;
        let mut replaced = Vec::new();
        let src = old..old + old_len;
        if !dontunmap {
            self.edit(&mut txn, src.clone(), Vec::new(), &mut replaced);
        }
        let target = dst..dst + new_len;
        self.edit(&mut txn, target.clone(), vec![moved], &mut replaced);
        let pt = &self.pt;
        let domain = self.tree.domain();
        let keep = old_len.min(new_len);
        self.finish(
            txn,
            replaced,
            || {
                pt.zap_range(target.start, target.end, domain, None);
                pt.move_range(old, dst, keep);
            },
            After::Unmap(vec![src]),
        );
    }

    // ----- brk --------------------------------------------------------------

    /// `brk`: the new break on success, the old one on failure.
    pub fn brk(&self, new: u64) -> u64 {
        let mut w = self.write_lock();
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
            w.brk = new;
            self.unmap_locked(newbrk..oldbrk);
            return new;
        }
        let txn = self.tree.write();
        if let Some((_, next)) = txn.next(oldbrk)
            && newbrk + PAGE > vm_start_gap(next)
        {
            return orig;
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
        let w = self.read_lock();
        w.start_brk..w.brk
    }

    // ----- madvise ----------------------------------------------------------

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
        let _r = self.read_lock();
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
                self.pt.zap_range(p.start, p.end, self.tree.domain(), None);
            }
        }
        if hole { Err(MmError::NoMem) } else { Ok(()) }
    }

    // ----- stack growth (called by the fault path under the writer lock) ----

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

    // ----- inspection -------------------------------------------------------

    /// A snapshot of the VMAs below TASK_SIZE, in address order.
    pub fn vmas(&self) -> Vec<VmaInfo> {
        let brk = self.brk_range();
        let pin = self.tree.pin();
        pin.iter().map(|(_, v)| v.info(&brk)).collect()
    }

    /// The PTE mapping `addr`, if one is present.
    pub fn translate(&self, addr: u64) -> Option<Pte> {
        if addr >= TASK_SIZE {
            return None;
        }
        let pin = self.tree.pin();
        let t = self.pt.walk(&pin, addr, false)?;
        let ptl = t.lock();
        let pte = ptl.get(addr);
        if !ptl.linked() || pte & PTE_PRESENT == 0 {
            return None;
        }
        let mut prot = Prot::empty();
        prot.set(Prot::READ, pte & PTE_READ != 0);
        prot.set(Prot::WRITE, pte & PTE_WRITE != 0);
        prot.set(Prot::EXEC, pte & PTE_EXEC != 0);
        Some(Pte {
            frame: pte_pfn(pte),
            prot,
            dirty: pte & PTE_DIRTY != 0,
        })
    }

    /// The counters (sums of per-thread shards; exact when no call runs).
    pub fn stats(&self) -> MmStats {
        let _r = self.read_lock();
        let c: &Counters = &self.pt.ctr;
        MmStats {
            faults: c.sum(Ctr::Faults),
            speculative_ok: c.sum(Ctr::SpeculativeOk),
            vma_lock_ok: c.sum(Ctr::VmaLockOk),
            locked_ok: c.sum(Ctr::LockedOk),
            retries: c.sum(Ctr::Retries),
            fallbacks: c.sum(Ctr::Fallbacks),
            segv: c.sum(Ctr::Segv),
            access_errors: c.sum(Ctr::AccessErr),
            installed: c.sum(Ctr::Installed),
            present: c.sum(Ctr::Present),
            upgraded: c.sum(Ctr::Upgraded),
            stack_growths: c.sum(Ctr::StackGrowths),
            frames_allocated: c.sum(Ctr::FramesAllocated),
            frames_freed: c.sum(Ctr::FramesFreed),
            frames_mapped: self.pt.present(0, TASK_SIZE).len() as u64,
            tables_allocated: c.sum(Ctr::TablesAllocated),
            tables_freed: c.sum(Ctr::TablesFreed),
            vmas: self.tree.len() as u64,
        }
    }

    /// Checks the model's invariants at a quiescent point: the tree's own
    /// invariants, VMAs page aligned and non-overlapping, no PTE outside a
    /// VMA, no PTE granting more than its VMA allows (M5), frames balance.
    pub fn check(&self) -> Result<(), String> {
        let _r = self.read_lock();
        self.tree.validate().map_err(|e| e.to_string())?;
        let pin = self.tree.pin();
        let mut last = 0;
        for (r, v) in pin.iter() {
            if r.start % PAGE != 0 || r.end % PAGE != 0 || r.start < last || r != v.range() {
                return Err(format!("bad VMA {r:x?}"));
            }
            if v.is_dead() {
                return Err(format!("dead VMA published at {r:x?}"));
            }
            last = r.end;
        }
        let present = self.pt.present(0, TASK_SIZE);
        for &(a, pte) in &present {
            let Some((_, v)) = pin.get(a) else {
                return Err(format!("PTE at {a:#x} outside every VMA"));
            };
            let allowed = super::pagetable::perm_bits(v.prot());
            if pte & (PTE_READ | PTE_WRITE | PTE_EXEC) & !allowed != 0 {
                return Err(format!("PTE at {a:#x} grants more than {:?}", v.prot()));
            }
        }
        let c = &self.pt.ctr;
        let (al, fr) = (c.sum(Ctr::FramesAllocated), c.sum(Ctr::FramesFreed));
        if al != present.len() as u64 + fr {
            return Err(format!(
                "frames do not balance: allocated {al} != mapped {} + freed {fr}",
                present.len()
            ));
        }
        Ok(())
    }
}

impl std::fmt::Debug for AddressSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddressSpace")
            .field("policy", &self.policy)
            .field("vmas", &self.tree.len())
            .finish_non_exhaustive()
    }
}

#[allow(dead_code)]
fn _assert_traits() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<AddressSpace>();
}
