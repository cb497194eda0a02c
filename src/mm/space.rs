//! `AddressSpace`: its state, constructors and inspection (`vmas`,
//! `translate`, `stats`, `check`). The writers live one per file beside it
//! (`mmap.rs`, `munmap.rs`, `mprotect.rs`, `mremap.rs`, `brk.rs`,
//! `madvise.rs`, `stack.rs`), all built on the replace-and-retire core in
//! `retire.rs` ([DESIGN §4.2](crate::docs::design#42-replace-and-retire-writers)): kill the VMAs being replaced, do the PTE
//! work, then publish the replacements in one commit (M2, M7).

use super::flags::{FaultPolicy, Prot, WriterLocking};
use super::frame::FrameTable;
use super::pagetable::{PAGE, PMD_SPAN, PTE_DIRTY, PTE_EXEC, PTE_PRESENT, PTE_READ, PTE_WRITE};
use super::pagetable::{PageTables, pte_pfn};
use super::procmaps::MapsEntry;
use super::stats::{Counters, Ctr, MmStats};
use super::vma::{Vma, VmaInfo};
use super::{DEFAULT_BRK, TASK_SIZE};
use crate::rangelock::{RangeLock, RangeReadGuard, RangeWriteGuard};
use crate::sync::{Arc, Mutex, RwLock};
use crate::sync::{AtomicUsize, Ordering, fence};
use crate::tree::{MapleTree, ReadGuard, WriteTxn};
use std::ops::Range;

/// State owned by the writer lock.
pub(crate) struct WState {
    pub(crate) start_brk: u64,
    pub(crate) brk: u64,
}

/// A process address space. `Send + Sync`; every call takes `&self`.
pub struct AddressSpace {
    pub(crate) tree: MapleTree<Vma>,
    /// Boxed: the family's rmap walkers reach the tables at this address
    /// until exit (rmap.rs).
    pub(crate) pt: Box<PageTables>,
    /// The program break (`brk` holds it across its call; innermost after
    /// the range lock).
    pub(crate) lock: RwLock<WState>,
    /// The writers' range lock ([DESIGN §4.8](crate::docs::design#48-range-locks-writers-on-disjoint-ranges-run-in-parallel-issue-11)): writers write-lock
    /// their area, `MmapLock`/`RangeLock` faults, fallbacks and madvise
    /// read-lock theirs, coarse callers take `[0, u64::MAX)`.
    pub(crate) rl: RangeLock,
    /// Free steps handed to the writers in their way (R-M5, DESIGN §4.8,
    /// "Freeing tables"): bases of 2 MiB spans to look at again, each
    /// listed once. Taken by [`drain_deferred`](Self::drain_deferred) at
    /// the end of every writer call. An entry may be stale (its step ran
    /// after all): the next drain finds nothing to free there.
    pub(crate) deferred: Mutex<Vec<u64>>,
    /// `deferred.len()`, stored under its mutex and read without it: the
    /// store-buffering pair of R-M5.
    pub(crate) deferred_n: AtomicUsize,
    /// VMAs that writers between their two transactions will add; changed
    /// and read only under the tree's writer mutex (limits.rs).
    pub(crate) reserved_maps: AtomicUsize,
    pub(crate) policy: FaultPolicy,
    pub(crate) locking: WriterLocking,
    /// VMAs above TASK_SIZE (`[vsyscall]`), kept apart like Linux's gate VMA.
    pub(crate) gate: Vec<MapsEntry>,
    /// `RLIMIT_STACK` in bytes (`limits.rs`).
    pub(crate) stack_rlimit: u64,
    /// `vm.max_map_count` (`limits.rs`).
    pub(crate) max_map_count: u64,
}

/// Writer calls per thread between two polls of the tree's domain.
#[cfg(not(loom))]
const RECLAIM_EVERY: u32 = 64;
#[cfg(loom)]
const RECLAIM_EVERY: u32 = 1;

/// A range-lock result for a range we built ourselves (never empty or
/// inverted, and the blocking calls never return `WouldBlock`).
pub(crate) fn granted<G>(r: Result<G, crate::rangelock::RangeLockError>) -> G {
    match r {
        Ok(g) => g,
        Err(e) => unreachable!("range lock refused a valid range: {e}"),
    }
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

/// True when no VMA of `pin`'s version lies in the 2 MiB span starting at
/// `base`: the condition under which that span's last-level table may be
/// freed (race 1, DESIGN §4.5; munmap's free step and `Tables::Free`).
pub(crate) fn span_has_no_vma(pin: &ReadGuard<'_, Vma>, base: u64) -> bool {
    pin.range(base..base + PMD_SPAN).next().is_none()
}

pub(crate) fn page_up(len: u64) -> Option<u64> {
    len.checked_add(PAGE - 1).map(|l| l & !(PAGE - 1))
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
        Self::with_locking(policy, WriterLocking::default())
    }

    /// An empty address space with the given fault policy and writer locking.
    pub fn with_locking(policy: FaultPolicy, locking: WriterLocking) -> AddressSpace {
        AddressSpace::from_parts(
            Arc::new(FrameTable::new()),
            WState {
                start_brk: DEFAULT_BRK,
                brk: DEFAULT_BRK,
            },
            policy,
            locking,
            Vec::new(),
            super::DEFAULT_STACK_RLIMIT,
            super::DEFAULT_MAX_MAP_COUNT,
        )
    }

    /// An address space with no VMAs: a fresh tree (its own Srcu domain,
    /// `vma_tree`), page tables sharing `frames` (registered in the family's
    /// rmap before any PTE exists, rmap.rs), and the given brk state,
    /// policies and limits. The one constructor of the struct: `new` and
    /// `with_locking` pass defaults, `fork` the parent's settings.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_parts(
        frames: Arc<FrameTable>,
        brk: WState,
        policy: FaultPolicy,
        locking: WriterLocking,
        gate: Vec<MapsEntry>,
        stack_rlimit: u64,
        max_map_count: u64,
    ) -> AddressSpace {
        let tree = vma_tree();
        let pt = PageTables::new(frames, tree.domain_arc());
        AddressSpace {
            tree,
            pt,
            lock: RwLock::new(brk),
            rl: RangeLock::new(),
            deferred: Mutex::new(Vec::new()),
            deferred_n: AtomicUsize::new(0),
            reserved_maps: AtomicUsize::new(0),
            policy,
            locking,
            gate,
            stack_rlimit,
            max_map_count,
        }
    }

    /// How writers exclude each other.
    pub fn writer_locking(&self) -> WriterLocking {
        self.locking
    }

    /// The fault policy.
    pub fn policy(&self) -> FaultPolicy {
        self.policy
    }

    pub(crate) fn brk_lock(&self) -> crate::sync::RwLockWriteGuard<'_, WState> {
        self.lock.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn brk_read(&self) -> crate::sync::RwLockReadGuard<'_, WState> {
        self.lock.read().unwrap_or_else(|e| e.into_inner())
    }

    // ----- range locks (docs/DESIGN.md §4.8) ------------------------------

    /// The whole address space for writing: what every writer takes under
    /// `WriterLocking::Global`, and the coarse writers (brk, mremap) always.
    pub(crate) fn lock_whole(&self) -> RangeWriteGuard<'_> {
        self.reclaim_retired();
        granted(self.rl.write(0, u64::MAX))
    }

    /// The whole address space for reading (`MmapLock` faults, `stats`,
    /// `check`): excludes every writer.
    pub(crate) fn read_whole(&self) -> RangeReadGuard<'_> {
        granted(self.rl.read(0, u64::MAX))
    }

    /// Frees what earlier writer calls retired. Removed VMAs and emptied page
    /// tables wait in the tree's domain, which commits never run (DESIGN
    /// §3.7). An address space's tree reclaims manually (not through the
    /// process-wide reclaimer): a VMA's drop can release shared-object frames,
    /// and `check()` must see the frame table at rest, so the frees run on
    /// writer threads, here, holding no lock yet. Only crate destructors are
    /// queued there (the domain is not public), and none of them panics.
    ///
    /// Polling the domain costs about 1.5k instructions (callgrind,
    /// examples/writer_cost.rs), and a poll that advances a grace period
    /// issues `membarrier(PRIVATE_EXPEDITED)`, which interrupts every CPU
    /// running a thread of this process, even threads of other spaces.
    /// Polling on every 8th call cost 0.5 membarriers per mmap/touch/munmap
    /// loop; two such threads in *separate* spaces of one process ran at
    /// 12.0 µs per loop each, against 6.8 µs when polling every 64th call
    /// (`perf stat -e syscalls:sys_enter_membarrier`, writer_cost). So each
    /// thread polls on every 64th writer call, with `poll_lazy`: it starts a
    /// new grace period only 200 µs after the domain's last start (or with
    /// many destructors pending), because two writer threads of one space
    /// otherwise chained one every ~43 µs (DESIGN §3.3, "rate of grace
    /// periods"). Garbage stays bounded by 64 calls' worth per writing
    /// thread plus 200 µs of the space's writers.
    pub(crate) fn reclaim_retired(&self) {
        crate::sync::thread_local! {
            static CALLS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
        }
        let n = CALLS.with(|c| {
            let n = c.get().wrapping_add(1);
            c.set(n);
            n
        });
        // Node garbage is recycled by the commits themselves (DESIGN §2.7),
        // so the domain's poll is all `MapleTree::reclaim` would do here.
        if n.is_multiple_of(RECLAIM_EVERY)
            && let Err(p) = self.tree.domain().poll_lazy()
        {
            p.resume();
        }
    }

    /// `r` for reading (madvise, fallback faults); the whole space under
    /// `WriterLocking::Global`, like Linux's mmap_lock.
    pub(crate) fn read_range(&self, r: Range<u64>) -> RangeReadGuard<'_> {
        match self.locking {
            WriterLocking::Global => self.read_whole(),
            WriterLocking::Range => granted(self.rl.read(r.start, r.end.max(r.start + 1))),
        }
    }

    /// `read_range` without waiting: `None` if a writer holds part of `r`,
    /// or waits for it (FIFO, R4).
    pub(crate) fn try_read_range(&self, r: Range<u64>) -> Option<RangeReadGuard<'_>> {
        let (s, e) = match self.locking {
            WriterLocking::Global => (0, u64::MAX),
            WriterLocking::Range => (r.start, r.end.max(r.start + 1)),
        };
        self.rl.try_read(s, e).ok()
    }

    /// Ends every writer call (mmap, munmap, mprotect, mremap, brk,
    /// madvise, stack growth), after it released all its range locks: runs
    /// the free steps that other threads handed to it because it held, or
    /// waited for, part of their span (R-M5, [DESIGN §4.8](crate::docs::design#48-range-locks-writers-on-disjoint-ranges-run-in-parallel-issue-11),
    /// "Freeing tables"). Costs one load when none is pending.
    pub(crate) fn drain_deferred(&self) {
        // Relaxed, and no fence of our own: the store-buffering pair of
        // R-M5 needs our releases ordered before this load, and the range
        // lock orders each of them already. A step is handed to us only
        // when its `try_read` met our request, fast-path or in the table.
        // A fast-path release ends with R8's `fence(SeqCst)` (after its
        // slot store; `defer_span` fences after its count store, and the
        // refused `try_read` fences again before it scans the slots), so
        // this load or that scan sees the other's store. A table release
        // takes the table's mutex after the refused `try_read` held it
        // (that saw our request there), so the count store happens-before
        // this load. So a writer call pays one load, not an `mfence`.
        if self.deferred_n.load(Ordering::Relaxed) == 0 {
            return;
        }
        let spans = {
            let mut d = crate::sync::lock(&self.deferred);
            // Relaxed: written under the mutex; R-M5's ordering is the
            // range lock's and `defer_span`'s fence (above).
            self.deferred_n.store(0, Ordering::Relaxed);
            std::mem::take(&mut *d)
        };
        for base in spans {
            // R-M7: most handed steps meet a span this call (or another
            // writer) has put a VMA in since; they are dropped without the
            // span's lock.
            if !self.span_has_vma_now(base) {
                self.free_span(base);
            }
        }
    }

    /// Whether the span at `base` has a VMA in the current version (R-M7,
    /// [DESIGN §4.8](crate::docs::design#48-range-locks-writers-on-disjoint-ranges-run-in-parallel-issue-11),
    /// "Freeing tables"). Then no table of the span is garbage yet, and the
    /// free step of the span is not needed now: the writer that removes
    /// the span's last VMA commits after this snapshot and runs a free
    /// step of its own after that commit (munmap's `free_empty_spans`, or
    /// the freeing under its lock of the span). Takes and drops a pin.
    pub(crate) fn span_has_vma_now(&self, base: u64) -> bool {
        !span_has_no_vma(&self.tree.pin(), base)
    }

    /// A guard that runs [`drain_deferred`](Self::drain_deferred) when
    /// dropped. Every writer call declares it first, so it is dropped last,
    /// after the call's range locks, on every return path. Not while
    /// panicking (a free step is no place for a second panic).
    pub(crate) fn drain_on_exit(&self) -> DrainOnExit<'_> {
        DrainOnExit(self)
    }

    /// Hands the free step of the span at `base` to the writers that hold
    /// or wait for part of it (R-M5): records it (once: an entry already
    /// there is taken by a drain that runs the step after we looked), then
    /// fences. The caller then tries the span's read lock once more.
    pub(crate) fn defer_span(&self, base: u64) {
        {
            let mut d = crate::sync::lock(&self.deferred);
            if !d.contains(&base) {
                d.push(base);
            }
            // Relaxed: see `drain_deferred`.
            self.deferred_n.store(d.len(), Ordering::Relaxed);
        }
        // SeqCst: pairs with the fence that ends a fast-path release (R8),
        // before the writer's load in `drain_deferred` (store buffering):
        // our count store precedes it, the caller's second `try_read` (a
        // read of the fast slots) follows it. (A refused `try_read` also
        // fences in `grant`; this one states the pairing where it is
        // needed.)
        fence(Ordering::SeqCst);
    }

    /// The area a writer that changes `r` must hold (R-M1): `r` and one page
    /// on each side (so two writers making touching VMAs never run at once
    /// and miss a merge), extended to the whole VMAs that overlap it (they
    /// may be split, merged or replaced), and with `span` out to 2 MiB
    /// boundaries (the last-level tables an unmap may free, race 1).
    pub(crate) fn lock_extent(
        &self,
        view: &ReadGuard<'_, Vma>,
        r: &Range<u64>,
        span: bool,
    ) -> Range<u64> {
        let m = margin(r);
        extent(m.clone(), view.range(m).map(|(vr, _)| vr), span)
    }
}

/// Grace-period spacing of an address space's domain
/// ([`Srcu::set_min_gp_gap`](crate::Srcu::set_min_gp_gap); DESIGN §4.8,
/// "Grace-period spacing"): 1 ms instead of the default 200 µs. About 3
/// times fewer `membarrier`s; two writer threads of one space ran 6.5 %
/// (placed) and 0.6 % (FIXED) faster, two threads in two spaces of one
/// process 8-13 % (tenth session, BENCHMARKS).
const GP_GAP: std::time::Duration = std::time::Duration::from_millis(1);

/// An empty VMA tree with its own, manually reclaimed domain, spaced
/// `GP_GAP` apart.
pub(crate) fn vma_tree() -> MapleTree<Vma> {
    let tree = MapleTree::with_manual_reclaim();
    tree.domain().set_min_gp_gap(GP_GAP);
    tree
}

/// See [`AddressSpace::drain_on_exit`].
pub(crate) struct DrainOnExit<'a>(&'a AddressSpace);

impl Drop for DrainOnExit<'_> {
    fn drop(&mut self) {
        if !crate::sync::thread::panicking() {
            self.0.drain_deferred();
        }
    }
}

/// Rounds of `try_area` before a writer queues for its area: about 2-4 µs
/// of backoff in all here (one `spin_loop` is ~50 ns on this VM).
#[cfg(not(loom))]
const AREA_TRIES: u32 = 4;

/// `r` and one page on each side: R-M1's contagion margin.
fn margin(r: &Range<u64>) -> Range<u64> {
    r.start.saturating_sub(PAGE)..r.end.saturating_add(PAGE)
}

/// The area a placement inside a transaction claims for `r` (R-M1, no
/// spans: a new mapping frees no table): `lock_extent` on the pending
/// version.
pub(crate) fn claim_extent(txn: &WriteTxn<'_, Vma>, r: &Range<u64>) -> Range<u64> {
    let m = margin(r);
    extent(m.clone(), txn.range(m).map(|(vr, _)| vr), false)
}

/// `r` extended to the `overlapping` ranges, and with `span` to 2 MiB.
pub(crate) fn extent(
    r: Range<u64>,
    overlapping: impl Iterator<Item = Range<u64>>,
    span: bool,
) -> Range<u64> {
    {
        let (mut lo, mut hi) = (r.start, r.end);
        for vr in overlapping {
            lo = lo.min(vr.start);
            hi = hi.max(vr.end);
        }
        if span {
            lo &= !(PMD_SPAN - 1);
            hi = hi.checked_next_multiple_of(PMD_SPAN).unwrap_or(u64::MAX);
        }
        lo..hi
    }
}

impl AddressSpace {
    /// Write-locks the area a writer changing `r` needs (see
    /// [`lock_extent`](Self::lock_extent)), the whole space under
    /// `WriterLocking::Global`. Blocks; the caller holds no range lock.
    /// Revalidates after the wait: if the VMAs there changed meanwhile so
    /// that the area grew, locks the larger area instead.
    pub(crate) fn lock_for(&self, r: Range<u64>, span: bool) -> RangeWriteGuard<'_> {
        self.lock_area(r, |view, want| self.lock_extent(view, want, span))
    }

    /// munmap's lock (R-M6, [DESIGN §4.8](crate::docs::design#48-range-locks-writers-on-disjoint-ranges-run-in-parallel-issue-11)):
    /// exactly `r`, not extended to the VMAs overlapping it and with no
    /// contagion margin. Every other writer's area holds whole VMAs, so it
    /// overlaps `r` whenever it holds any part of a VMA the unmap changes;
    /// the unmap reads and edits the VMAs under the tree's writer mutex
    /// (`unmap_own_range`). Blocks; the caller holds no range lock.
    pub(crate) fn lock_exactly(&self, r: Range<u64>) -> RangeWriteGuard<'_> {
        self.reclaim_retired();
        granted(self.rl.write(r.start, r.end))
    }

    /// Write-locks `area(snapshot, r)`, revalidating after the wait (see
    /// [`lock_for`](Self::lock_for)).
    fn lock_area(
        &self,
        r: Range<u64>,
        area: impl Fn(&ReadGuard<'_, Vma>, &Range<u64>) -> Range<u64>,
    ) -> RangeWriteGuard<'_> {
        if self.locking == WriterLocking::Global {
            return self.lock_whole();
        }
        self.reclaim_retired();
        let mut want = r;
        loop {
            let (g, l) = self.try_area(&want, &area).unwrap_or_else(|| {
                let l = area(&self.tree.pin(), &want);
                (granted(self.rl.write(l.start, l.end)), l)
            });
            let now = area(&self.tree.pin(), &want);
            if now.start >= l.start && now.end <= l.end {
                return g;
            }
            drop(g);
            want = l.start.min(now.start)..l.end.max(now.end);
        }
    }

    /// Before queueing: a few `try_write`s of the area, each recomputed on
    /// a fresh snapshot. The writer in the way is often about to commit a
    /// change that shrinks our area (another thread's munmap splitting the
    /// VMA both blocks merged into, R-M6):
    /// a request queued on the stale, larger area would wait for that
    /// writer's whole zap. `try_write` never passes a waiting conflicting
    /// request (FIFO, R4). None under loom (the blocking path is the
    /// protocol; this is a shortcut into the same revalidation).
    fn try_area(
        &self,
        want: &Range<u64>,
        area: &impl Fn(&ReadGuard<'_, Vma>, &Range<u64>) -> Range<u64>,
    ) -> Option<(RangeWriteGuard<'_>, Range<u64>)> {
        #[cfg(loom)]
        let _ = (want, area);
        #[cfg(not(loom))]
        for round in 0..AREA_TRIES {
            let l = area(&self.tree.pin(), want);
            if let Ok(g) = self.rl.try_write(l.start, l.end) {
                return Some((g, l));
            }
            for _ in 0..(8u32 << round) {
                std::hint::spin_loop();
            }
        }
        None
    }

    /// Adds `n` (may be negative) to the VMAs reserved by writers between
    /// their two transactions. Caller holds the tree's writer mutex (a
    /// `WriteTxn`), which orders every access: Relaxed.
    pub(crate) fn reserve_maps(&self, n: isize) {
        if n != 0 {
            self.reserved_maps.fetch_add(n as usize, Ordering::Relaxed);
        }
    }

    /// The VMA count `vm.max_map_count` checks see: the pending version's,
    /// plus what writers in flight will add (limits.rs). Under the tree's
    /// writer mutex (`txn`).
    pub(crate) fn map_count(&self, txn: &WriteTxn<'_, Vma>) -> usize {
        // Relaxed: see `reserve_maps`.
        txn.len() + self.reserved_maps.load(Ordering::Relaxed)
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
        let ptl = t.lock_at(addr);
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

    /// Last-level tables linked now in a 2 MiB span that holds no VMA in
    /// `pin`'s version (`MmStats::tables_kept`): O(tables) plus a tree
    /// lookup per table. 0 at every quiescent point (`check()`).
    fn tables_without_vma(&self, pin: &ReadGuard<'_, Vma>) -> u64 {
        let spans = self.pt.table_spans(pin, 0, TASK_SIZE);
        spans
            .into_iter()
            .filter(|&b| span_has_no_vma(pin, b))
            .count() as u64
    }

    /// The counters (sums of per-thread shards; exact when no call runs).
    pub fn stats(&self) -> MmStats {
        let _r = self.read_whole();
        // A free step (a reader too) may unlink a table while we walk.
        let pin = self.tree.pin();
        let c: &Counters = &self.pt.ctr;
        let f = self.pt.frames.totals();
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
            frames_allocated: f.allocated,
            frames_freed: f.freed,
            frames_mapped: self.pt.present(&pin, 0, TASK_SIZE).len() as u64,
            tables_allocated: c.sum(Ctr::TablesAllocated),
            tables_freed: c.sum(Ctr::TablesFreed),
            tables_kept: self.tables_without_vma(&pin),
            place_waits: c.sum(Ctr::PlaceWaits),
            vmas: self.tree.len() as u64,
            frames_live: f.allocated.saturating_sub(f.freed),
            cow_copies: c.sum(Ctr::CowCopies),
            cow_reuses: c.sum(Ctr::CowReuses),
        }
    }

    /// Checks the model's invariants at a quiescent point: the tree's own
    /// invariants, VMAs page aligned and non-overlapping, no PTE outside a
    /// VMA, no PTE granting more than its VMA allows (M5), every mapped
    /// frame live with a writable PTE of a private VMA its only mapping (M8),
    /// and the frame table balanced (M6). The frame table is shared with
    /// the fork family: call this when no member of the family runs a call.
    pub fn check(&self) -> Result<(), String> {
        let _r = self.read_whole();
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
        let present = self.pt.present(&pin, 0, TASK_SIZE);
        for &(a, pte) in &present {
            let Some((_, v)) = pin.get(a) else {
                return Err(format!("PTE at {a:#x} outside every VMA"));
            };
            let allowed = super::pagetable::perm_bits(v.prot());
            if pte & (PTE_READ | PTE_WRITE | PTE_EXEC) & !allowed != 0 {
                return Err(format!("PTE at {a:#x} grants more than {:?}", v.prot()));
            }
            let (refs, maps, _) = self.pt.frames.counts(pte_pfn(pte));
            if refs == 0 || maps == 0 {
                return Err(format!("PTE at {a:#x} maps a free frame ({refs}, {maps})"));
            }
            if pte & PTE_WRITE != 0 && !v.spec.attrs.shared && maps != 1 {
                return Err(format!(
                    "writable private PTE at {a:#x} maps a frame mapped {maps} times (M8)"
                ));
            }
            if v.spec.attrs.shared != v.spec.attrs.shm.is_some() && v.spec.attrs.file.is_none() {
                return Err(format!(
                    "shared anonymous VMA {r:x?} without its object",
                    r = v.range()
                ));
            }
        }
        let swapped = self.pt.swapped(&pin, 0, TASK_SIZE);
        for &(a, _) in &swapped {
            if pin.get(a).is_none() {
                return Err(format!("swap entry at {a:#x} outside every VMA"));
            }
        }
        // Every table a writer emptied is freed by its free step, and one a
        // fault linked under a dying VMA by the fault (DESIGN §4.8,
        // "Freeing tables"): at a quiescent point no span without a VMA
        // keeps a last-level table.
        let kept = self.tables_without_vma(&pin);
        if kept != 0 {
            return Err(format!(
                "{kept} last-level table(s) linked in 2 MiB spans with no VMA"
            ));
        }
        let live = self.pt.frames.audit()?;
        // Alone (never forked, no pin outstanding; the family's shared
        // objects hold the table too): every live frame is mapped here
        // exactly `maps` times and referenced by those PTEs and its object
        // alone — the old M6, allocated = mapped + freed, plus object pages.
        // Relaxed: quiescent.
        let objects = self.pt.frames.objects.load(Ordering::Relaxed);
        if Arc::strong_count(&self.pt.frames) == 1 + objects {
            let id = self.pt.id;
            let present: Vec<_> = present.iter().map(|&(a, p)| (id, a, p)).collect();
            Self::exact(&self.pt.frames, &present, &swapped, live)?;
        }
        Ok(())
    }

    /// Every live frame (`live`, from `audit`) has refcount = mapping PTEs
    /// (in `present`, the PTEs of every member) + its object's reference,
    /// and mapcount = mapping PTEs; no frame is live without either.
    ///
    /// Swap entries (`swapped`, every member's) hold a reference each. The
    /// rmap is exact (M10): a frame's pv entries naming live spaces are
    /// exactly the `(space, addr)` of the PTEs mapping it.
    fn exact(
        frames: &FrameTable,
        present: &[(u64, u64, u64)],
        swapped: &[(u64, u64)],
        live: Vec<(u64, u32, u32, u32)>,
    ) -> Result<(), String> {
        use std::collections::{HashMap, HashSet};
        let mut mapped: HashMap<u64, Vec<(u64, u64)>> = HashMap::new();
        for &(id, a, pte) in present {
            mapped.entry(pte_pfn(pte)).or_default().push((id, a));
        }
        let mut swaps: HashMap<u64, u32> = HashMap::new();
        for &(_, pte) in swapped {
            *swaps.entry(pte_pfn(pte)).or_default() += 1;
        }
        let ids: HashSet<u64> = frames.rmap.live_ids().into_iter().collect();
        let n_live = live.len();
        let mut seen = 0;
        let mut seen_swapped = 0;
        for (pfn, refs, maps, held) in live {
            let ptes = mapped.get(&pfn).map(Vec::as_slice).unwrap_or(&[]);
            let n = ptes.len() as u32;
            let sw = swaps.get(&pfn).copied().unwrap_or(0);
            seen += usize::from(n > 0);
            seen_swapped += usize::from(sw > 0);
            if refs != n + sw + held || maps != n {
                return Err(format!(
                    "frame {pfn}: refcount {refs}, mapcount {maps}, object {held}, mapped by {n} PTEs, {sw} swap entries"
                ));
            }
            if n == 0 && held == 0 && sw == 0 {
                return Err(format!("frame {pfn} live but neither mapped nor held"));
            }
            let mut want: Vec<(u64, u64)> = ptes.to_vec();
            let mut have: Vec<(u64, u64)> = frames
                .rmap_entries(pfn)
                .into_iter()
                .filter(|pv| ids.contains(&pv.mm))
                .map(|pv| (pv.mm, pv.addr))
                .collect();
            want.sort_unstable();
            have.sort_unstable();
            if want != have {
                return Err(format!(
                    "frame {pfn}: rmap {have:x?} but mapped at {want:x?} (M10)"
                ));
            }
        }
        if seen_swapped != swaps.len() {
            return Err(format!(
                "{} swapped frames, {seen_swapped} live",
                swaps.len()
            ));
        }
        if seen != mapped.len() {
            return Err(format!(
                "{n_live} live frames, {} mapped, {seen} of them live",
                mapped.len()
            ));
        }
        Ok(())
    }

    /// [`check`](Self::check) for every member of a fork family, plus the
    /// exact per-frame counts (M9): with no [`PageRef`](super::PageRef)
    /// outstanding, every live frame's refcount is the number of PTEs
    /// mapping it in `spaces` plus 1 if a MAP_SHARED anonymous object holds
    /// it, and its mapcount the number of PTEs; `spaces` must be every space
    /// sharing the frame table (no other member alive). Quiescent only.
    pub fn check_family(spaces: &[&AddressSpace]) -> Result<(), String> {
        let Some(first) = spaces.first() else {
            return Ok(());
        };
        let mut present = Vec::new();
        let mut swapped = Vec::new();
        for s in spaces {
            if !Arc::ptr_eq(&s.pt.frames, &first.pt.frames) {
                return Err("spaces of different fork families".into());
            }
            s.check()?;
            let id = s.pt.id;
            let pin = s.tree.pin();
            present.extend(
                s.pt.present(&pin, 0, TASK_SIZE)
                    .into_iter()
                    .map(|(a, p)| (id, a, p)),
            );
            swapped.extend(s.pt.swapped(&pin, 0, TASK_SIZE));
        }
        let frames = &first.pt.frames;
        if frames.rmap.live_ids().len() != spaces.len() {
            return Err("check_family needs every live member of the family".into());
        }
        Self::exact(frames, &present, &swapped, frames.audit()?)
    }

    /// Runs the deferred frees now: waits for a grace period of the tree's
    /// domain and drops the VMAs and tables writers retired before this
    /// call (and with the last VMA of a MAP_SHARED anonymous object, the
    /// object and its frames). Writers poll for this every few calls; tests
    /// call it to see exact frame counts after an munmap. Must not be
    /// called from a thread inside another call of this space.
    pub fn reclaim(&self) {
        if let Err(p) = self.tree.domain().barrier() {
            p.resume();
        }
        if let Err(p) = self.tree.reclaim() {
            p.resume();
        }
    }
}

impl Drop for AddressSpace {
    /// Exit, first step: leave the family's rmap and wait out its walkers
    /// working on this space (rmap.rs), before the tree (and its domain,
    /// which they pin) goes; then the fields drop: the tree, and the page
    /// tables in bulk (`PageTables::drop`).
    fn drop(&mut self) {
        self.pt.frames.rmap.exit(self.pt.id);
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::RECLAIM_EVERY;
    use crate::mm::{Access, AddressSpace, MapFlags, Prot};
    use crate::srcu::PRESSURE;

    /// A busy writer that never calls `reclaim` keeps its space's garbage
    /// bounded through its own polls and commits, although their grace-period
    /// starts are spaced (DESIGN §3.3): by the 200 µs gap, the domain's
    /// PRESSURE, or the tree's node-batch pressure, whichever comes first.
    /// With all three refusing (only the first start allowed) the pending
    /// count grows with the loop (19.9k of 20k entries: checked).
    #[test]
    fn writer_polls_bound_the_garbage_without_reclaim() {
        let mm = AddressSpace::new();
        let rw = Prot::READ | Prot::WRITE;
        let mut most = 0;
        for _ in 0..10_000 {
            let a = mm
                .mmap(None, 4096, rw, MapFlags::PRIVATE | MapFlags::ANONYMOUS)
                .unwrap();
            mm.fault(a, Access::Write).unwrap();
            mm.munmap(a, 4096).unwrap();
            most = most.max(mm.tree.domain().pending());
        }
        let bound = PRESSURE + 4 * RECLAIM_EVERY as usize;
        assert!(most <= bound, "{most} destructors pending, bound {bound}");
        mm.reclaim();
        mm.check().unwrap();
    }
}
