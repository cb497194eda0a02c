//! Four-level page tables of 512 entries with a lock per last-level table
//! (split PTL), populated on demand with CAS, and a simulated frame allocator.
//!
//! Who touches what ([DESIGN §4](crate::docs::design#4-mm)):
//! * Faulters walk without locks (Acquire loads), populate missing upper
//!   entries with a CAS, then lock the last-level table's PTL, check the table
//!   is still `linked` and their VMA is not dead (M4), and only then read or
//!   write PTEs. They hold the tree's Srcu guard for the whole fault, which
//!   keeps every table they reached alive (M3).
//! * Writers (under the address-space writer lock) visit the upper entries of
//!   a range with *probe* RMWs (`probe`), change PTEs under the PTL, and may
//!   unlink an emptied last-level table (PTL held, `linked = false`, then the
//!   parent entry cleared) and retire it through the Srcu domain. Upper-level
//!   tables are only freed when the address space is dropped.

use super::flags::Prot;
use super::frame::FrameTable;
use super::rmap::Pv;
use super::stats::{Counters, Ctr};
use crate::srcu::{Deferred, Srcu};
#[cfg(not(loom))]
use crate::sync::AtomicUsize;
#[cfg(not(loom))]
use crate::sync::lock;
use crate::sync::{
    Arc, AtomicBool, AtomicPtr, AtomicU64, LiveCell, Mutex, MutexGuard, Ordering, lock_spinning,
};
use std::ptr;

/// A writer's per-table visitor: (PMD entry, table, table base, lo, hi).
type TableFn<'a> = dyn FnMut(&AtomicPtr<()>, &PteTable, u64, u64, u64) + 'a;

/// Bytes per page.
pub(crate) const PAGE: u64 = 4096;
const ENTRIES: usize = 512;
/// Bytes covered by one last-level table.
pub(crate) const PMD_SPAN: u64 = PAGE * ENTRIES as u64;
/// Page tables translate addresses below this (48-bit virtual addresses).
pub(crate) const VA_LIMIT: u64 = 1 << 48;

/// PTE bits.
pub(crate) const PTE_PRESENT: u64 = 1 << 0;
pub(crate) const PTE_READ: u64 = 1 << 1;
pub(crate) const PTE_WRITE: u64 = 1 << 2;
pub(crate) const PTE_EXEC: u64 = 1 << 3;
pub(crate) const PTE_ACCESSED: u64 = 1 << 5;
pub(crate) const PTE_DIRTY: u64 = 1 << 6;
/// A swap entry (`try_to_unmap`, rmap.rs): not present, holds a reference
/// to the frame in its frame number bits.
pub(crate) const PTE_SWAP: u64 = 1 << 9;
pub(crate) const PTE_PERM: u64 = PTE_READ | PTE_WRITE | PTE_EXEC;
const PFN_SHIFT: u32 = 12;

/// The PTE permission bits a protection allows.
pub(crate) fn perm_bits(p: Prot) -> u64 {
    let mut b = 0;
    if p.contains(Prot::READ) {
        b |= PTE_READ;
    }
    if p.contains(Prot::WRITE) {
        b |= PTE_WRITE;
    }
    if p.contains(Prot::EXEC) {
        b |= PTE_EXEC;
    }
    b
}

/// The frame number of a PTE.
pub(crate) fn pte_pfn(pte: u64) -> u64 {
    pte >> PFN_SHIFT
}

/// An upper-level table (PGD, PUD or PMD): pointers to the next level.
struct Dir {
    next: [AtomicPtr<()>; ENTRIES],
    live: LiveCell,
}

/// A last-level table: 512 PTEs and their lock.
pub(crate) struct PteTable {
    pte: [AtomicU64; ENTRIES],
    /// The split page-table lock, in stripes of `ENTRIES / STRIPES` PTEs
    /// (DESIGN §4.6, "PTL stripes"): every PTE change happens while its
    /// stripe is held, every `linked` change while all of them are.
    ptl: [Stripe; STRIPES],
    /// False once a writer unlinked this table from its parent (guarded by `ptl`).
    linked: AtomicBool,
    /// The return shard of the thread that unlinked it (`free_tables`), read
    /// by the Srcu callback that frees it (`free_pte_table`).
    #[cfg(not(loom))]
    home: AtomicUsize,
    live: LiveCell,
}

// SAFETY: `Dir` is shared by walkers on many threads; its entries are
// atomics, and `live` (a loom-only liveness probe, zero-sized otherwise) is
// only read by walkers and written by `free` after the tables are unreachable
// — exactly the ordering loom checks through it.
unsafe impl Sync for Dir {}
// SAFETY: as for `Dir`: no thread affinity; owned data only.
unsafe impl Send for Dir {}
// SAFETY: PTEs and `linked` are atomics accessed under `ptl`; `live` as for
// `Dir` (killed only by `free_pte_table` after a grace period, M3).
unsafe impl Sync for PteTable {}
// SAFETY: as for `Dir`.
unsafe impl Send for PteTable {}

/// PTL stripes per last-level table: 8 of 64 PTEs (256 KiB of address
/// space) each, so two threads' blocks in one table (placed blocks that
/// merged) fault and zap without meeting. Two under loom (the protocol
/// with more than one stripe, at less cost).
#[cfg(not(loom))]
const STRIPES: usize = 8;
#[cfg(loom)]
const STRIPES: usize = 2;
/// PTEs per stripe.
const STRIPE_PTES: usize = ENTRIES / STRIPES;

/// One PTL stripe, on a cache line of its own: a stripe's lock and unlock
/// write it, and the neighbouring stripe may belong to another thread.
#[cfg_attr(not(loom), repr(align(64)))]
struct Stripe(Mutex<()>);

impl Dir {
    fn new() -> Box<Dir> {
        Box::new(Dir {
            next: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
            live: LiveCell::new(),
        })
    }
}

impl PteTable {
    fn new() -> Box<PteTable> {
        Box::new(PteTable {
            pte: std::array::from_fn(|_| AtomicU64::new(0)),
            ptl: std::array::from_fn(|_| Stripe(Mutex::new(()))),
            linked: AtomicBool::new(true),
            #[cfg(not(loom))]
            home: AtomicUsize::new(0),
            live: LiveCell::new(),
        })
    }

    /// Locks the PTL stripe of `addr` (inside this table's span).
    #[inline]
    pub(crate) fn lock_at(&self, addr: u64) -> Ptl<'_> {
        self.live.touch();
        let stripe = idx(addr, 0) / STRIPE_PTES;
        Ptl {
            t: self,
            stripe,
            // Spinning first: a stripe is held for one PTE (a fault) or at
            // most 64 (a zap of the stripe, a few microseconds), and a park
            // costs 0.25-0.5 ms of wake-up on this VM (DESIGN §4.8, "PTL
            // stripes").
            _g: lock_spinning(&self.ptl[stripe].0),
        }
    }

    /// Locks every stripe, lowest first (the one lock order among stripes:
    /// nobody holding a stripe waits for a lower one of the same table, and
    /// nobody holds two stripes but here, so stripes add no deadlock). The
    /// whole table: needed to change `linked`.
    pub(crate) fn lock_all(&self) -> PtlAll<'_> {
        self.live.touch();
        PtlAll {
            t: self,
            _g: std::array::from_fn(|i| lock_spinning(&self.ptl[i].0)),
        }
    }
}

/// `a..b`, inside one table, cut at PTL stripe boundaries.
fn stripe_parts(a: u64, b: u64) -> impl Iterator<Item = (u64, u64)> {
    const STEP: u64 = STRIPE_PTES as u64 * PAGE;
    let next = move |x: u64| ((x / STEP + 1) * STEP).min(b);
    std::iter::successors((a < b).then_some(a), move |&x| {
        let n = next(x);
        (n < b).then_some(n)
    })
    .map(move |x| (x, next(x)))
}

/// A held PTL stripe: the only way to read or write the PTEs it covers.
pub(crate) struct Ptl<'t> {
    t: &'t PteTable,
    stripe: usize,
    _g: MutexGuard<'t, ()>,
}

/// Every stripe of one table held (`PteTable::lock_all`).
pub(crate) struct PtlAll<'t> {
    t: &'t PteTable,
    _g: [MutexGuard<'t, ()>; STRIPES],
}

impl PtlAll<'_> {
    /// Whether the table is still reachable from the root (race 1).
    fn linked(&self) -> bool {
        // Relaxed: written only under every stripe, which we hold.
        self.t.linked.load(Ordering::Relaxed)
    }

    /// Marks the table unlinked (race 1): under every stripe, so a walker
    /// holding any one of them sees `linked` stable.
    fn unlink(&self) {
        // Relaxed: read only under a stripe, all of which we hold.
        self.t.linked.store(false, Ordering::Relaxed);
    }

    /// The PTE for `addr`.
    fn get(&self, addr: u64) -> u64 {
        // Relaxed: PTEs are written only under their stripe; we hold all.
        self.t.pte[idx(addr, 0)].load(Ordering::Relaxed)
    }
}

impl Ptl<'_> {
    /// Whether the table is still reachable from the root (race 1). Stable
    /// while any stripe is held: it changes only under all of them.
    pub(crate) fn linked(&self) -> bool {
        // Relaxed: written only under every stripe, one of which we hold.
        self.t.linked.load(Ordering::Relaxed)
    }

    fn check_held(&self, addr: u64) {
        debug_assert_eq!(
            idx(addr, 0) / STRIPE_PTES,
            self.stripe,
            "PTE at {addr:#x} outside the stripe held"
        );
    }

    /// The PTE for `addr`.
    pub(crate) fn get(&self, addr: u64) -> u64 {
        self.check_held(addr);
        // Relaxed: PTEs are written only under their stripe, which we hold.
        self.t.pte[idx(addr, 0)].load(Ordering::Relaxed)
    }

    /// Calls `f(addr, pte)` for each swap entry in `a..b` (inside this
    /// table) and stores what it returns, if anything.
    pub(crate) fn each_swap(&self, a: u64, b: u64, f: impl FnMut(u64, u64) -> Option<u64>) {
        self.each_with(PTE_SWAP, a, b, f);
    }

    /// Calls `f(addr, pte)` for each present PTE in `a..b` (inside this
    /// table) and stores what it returns, if anything.
    pub(crate) fn each_present(&self, a: u64, b: u64, f: impl FnMut(u64, u64) -> Option<u64>) {
        self.each_with(PTE_PRESENT, a, b, f);
    }

    /// `f` on each PTE in `a..b` with `bit` set; stores what it returns.
    fn each_with(&self, bit: u64, a: u64, b: u64, mut f: impl FnMut(u64, u64) -> Option<u64>) {
        let mut a = a;
        while a < b {
            let pte = self.get(a);
            if pte & bit != 0
                && let Some(new) = f(a, pte)
            {
                self.set(a, new);
            }
            a += PAGE;
        }
    }

    /// Sets the PTE for `addr`.
    pub(crate) fn set(&self, addr: u64, pte: u64) {
        self.check_held(addr);
        // Relaxed: PTEs are read and written only under their stripe.
        self.t.pte[idx(addr, 0)].store(pte, Ordering::Relaxed);
    }
}

#[inline]
fn idx(addr: u64, level: u32) -> usize {
    ((addr >> (12 + 9 * level)) & (ENTRIES as u64 - 1)) as usize
}

/// Free last-level tables a thread keeps for reuse, at most this many; it
/// trades half of them with the process-wide depot when it overflows or
/// runs dry.
#[cfg(not(loom))]
const TABLE_STASH_MAX: usize = 16;
/// Free tables the depot keeps (4 MiB); beyond that they go to the allocator.
#[cfg(not(loom))]
const TABLE_DEPOT_MAX: usize = 1024;

#[cfg(not(loom))]
crate::sync::thread_local! {
    /// This thread's free last-level tables: every PTE 0, PTL unlocked,
    /// reachable by no other thread. A table an munmap frees is reused by a
    /// later populate instead of a 4 KiB zeroed allocation then and a free
    /// into another thread's malloc arena now (the free runs on whichever
    /// thread reclaims): two threads mapping and unmapping in one space
    /// spent about a third of their extra CPU time over separate spaces in
    /// glibc's arena code (perf, examples/writer_cost.rs). Emptied into the
    /// allocator on thread exit.
    static TABLE_STASH: std::cell::RefCell<Vec<Box<PteTable>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Free tables in transit between threads' stashes (a thread that frees more
/// tables than it populates hands them to one that populates more), taken
/// and given half a stash at a time.
#[cfg(not(loom))]
static TABLE_DEPOT: Mutex<Vec<Box<PteTable>>> = Mutex::new(Vec::new());

/// Shards of `TABLE_RETURN` (threads by `shard_index`; two threads that
/// share one still get their own tables back, just through one list).
#[cfg(not(loom))]
const RETURN_SHARDS: usize = 16;

/// Tables on their way home: the Srcu callback that frees a retired table
/// runs on whichever thread reclaims, and pushing the table into *that*
/// thread's stash made each thread of two writing disjoint ranges of one
/// space populate, about every other loop, a table whose PTE and PTL lines
/// the other core had written last (its zap, its faults): about nine
/// cross-core misses per munmap + refault, which perf showed in `install`'s
/// PTL lock and in the locked instructions after its PTE stores (issue 11,
/// seventh session). So the callback hands a table that another thread
/// retired to that thread's return list (it touches only the table's
/// `home` word), and `new_pte_table` looks there before the depot, like
/// Linux freeing RCU-deferred page tables on the CPU that queued them.
#[cfg(not(loom))]
static TABLE_RETURN: [crossbeam_utils::CachePadded<Mutex<Vec<Box<PteTable>>>>; RETURN_SHARDS] =
    [const { crossbeam_utils::CachePadded::new(Mutex::new(Vec::new())) }; RETURN_SHARDS];

/// This thread's `TABLE_RETURN` shard.
#[cfg(not(loom))]
fn return_shard() -> usize {
    crate::sync::shard_index() % RETURN_SHARDS
}

/// A new, empty, linked last-level table: one from this thread's stash if it
/// has one (refilled from its return list, then from the depot), else a
/// fresh one (always under loom, where a table's liveness cell dies with
/// it).
fn new_pte_table() -> Box<PteTable> {
    #[cfg(not(loom))]
    if let Some(t) = TABLE_STASH
        .try_with(|s| {
            let mut s = s.borrow_mut();
            if s.is_empty() {
                let mut r = lock(&TABLE_RETURN[return_shard()]);
                s.append(&mut r);
            }
            if s.is_empty() {
                let mut d = lock(&TABLE_DEPOT);
                let n = d.len().min(TABLE_STASH_MAX / 2);
                let at = d.len() - n;
                s.extend(d.drain(at..));
            }
            s.pop()
        })
        .ok()
        .flatten()
    {
        debug_assert!(t.pte.iter().all(|e| e.load(Ordering::Relaxed) == 0));
        // Relaxed: the table is ours alone until the populate CAS (Release)
        // publishes it.
        t.linked.store(true, Ordering::Relaxed);
        return t;
    }
    PteTable::new()
}

/// Drops a retired last-level table (an Srcu callback), or keeps it in this
/// thread's stash: it is empty (`free_tables` unlinks only tables without a
/// PTE, and nobody installs into an unlinked table), and after the grace
/// period no walker can reach it.
///
/// # Safety
/// 1. `p` came from `Box::into_raw` of a table from `new_pte_table`, is
///    unlinked, a grace period has passed since, and it is freed exactly once.
unsafe fn free_pte_table(p: *mut ()) {
    // SAFETY: requirement 1.
    let t = unsafe { Box::from_raw(p.cast::<PteTable>()) };
    t.live.kill();
    #[cfg(not(loom))]
    {
        // Relaxed: written by the unlinker before it queued this callback;
        // the domain's queue orders that before this run (S5).
        let home = t.home.load(Ordering::Relaxed);
        if home != return_shard() {
            let mut r = lock(&TABLE_RETURN[home]);
            if r.len() < TABLE_STASH_MAX {
                r.push(t);
                return;
            }
        }
        // A thread already tearing down its thread-locals frees it instead.
        let _ = TABLE_STASH.try_with(|s| {
            let mut s = s.borrow_mut();
            if s.len() == TABLE_STASH_MAX {
                let mut d = lock(&TABLE_DEPOT);
                let room = TABLE_DEPOT_MAX.saturating_sub(d.len());
                let at = s.len() - (TABLE_STASH_MAX / 2).min(room);
                d.extend(s.drain(at..));
                if d.len() == TABLE_DEPOT_MAX {
                    s.truncate(TABLE_STASH_MAX / 2);
                }
            }
            s.push(t);
        });
    }
    #[cfg(loom)]
    drop(t);
}

/// The page tables of one address space, and the frame table it shares
/// with its fork family.
pub(crate) struct PageTables {
    root: Box<Dir>,
    pub(crate) ctr: Counters,
    pub(crate) frames: Arc<FrameTable>,
    /// This space's id in the family's rmap (rmap.rs): pv entries name it.
    pub(crate) id: u64,
}

/// A probe of an upper-level entry by a writer: an RMW that writes back the
/// value it read, so it reads the latest value in the entry's modification
/// order and heads a release sequence ([DESIGN §4.4](crate::docs::design#44-orderings), race 2).
fn probe(e: &AtomicPtr<()>) -> *mut () {
    // Relaxed: a first guess; the CAS below is what orders.
    let mut cur = e.load(Ordering::Relaxed);
    loop {
        // AcqRel: Release makes every VMA `dead` store before this probe
        // visible to a faulter whose populate-CAS reads from it; Acquire
        // pairs with the faulter's populate-CAS (Release), so we see the
        // table it installed. Failure Relaxed: we loop and try again.
        match e.compare_exchange(cur, cur, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return cur,
            Err(now) => cur = now,
        }
    }
}

/// A writer's read of the entry at `level` over its range (race 2): a
/// [`probe`] where a faulter's populate CAS can still write the entry, a
/// load where it cannot.
///
/// An upper entry (`level` 2 or 3, pointing to a `Dir`) that is non-null
/// never changes again: upper tables are never unlinked or freed before
/// the page tables are dropped. So no populate CAS can follow, and race 2
/// has nothing to order there: a faulter below it populates (or loads) a
/// lower entry, which the writer probes in turn. Only a null upper entry,
/// or a last-level one (`level` 1, which `free_tables` unlinks and a fault
/// repopulates), needs the RMW. Skipping it matters when two writers work
/// in different windows of one space: the PGD entry and the PUD line are
/// shared by both, and a probe is a write (issue 11, seventh session:
/// `for_each_table::visit` took 10× the samples with a shared space).
fn probe_at(e: &AtomicPtr<()>, level: u32) -> *mut () {
    if level >= 2 {
        // Acquire: pairs with the populate CAS (Release) that installed the
        // table, so its contents are visible. Non-null is final (above).
        let p = e.load(Ordering::Acquire);
        if !p.is_null() {
            return p;
        }
    }
    probe(e)
}

impl PageTables {
    /// New empty tables sharing `frames`, boxed (rmap walkers reach them
    /// at this address until exit) and registered in the family's rmap with
    /// the space's Srcu `domain` (rmap.rs).
    pub(crate) fn new(frames: Arc<FrameTable>, domain: &Arc<Srcu>) -> Box<PageTables> {
        let pt = Box::new(PageTables {
            root: Dir::new(),
            ctr: Counters::new(),
            id: frames.rmap.next_id(),
            frames,
        });
        pt.frames.rmap.register(&pt, domain);
        pt
    }

    /// The pv entry of this space's PTE for `addr`.
    pub(crate) fn pv(&self, addr: u64) -> Pv {
        Pv {
            mm: self.id,
            addr: addr & !(PAGE - 1),
        }
    }

    /// Allocates a frame holding `value` (one reference, one mapping: the
    /// PTE the caller installs under its PTL) and returns its number (never 0).
    pub(crate) fn alloc_frame(&self, value: u64) -> u64 {
        self.ctr.add(Ctr::FramesAllocated, 1);
        self.frames.alloc(value)
    }

    /// Drops the mapping of a present PTE being cleared (under its PTL); the
    /// frame is freed if that was its last reference.
    pub(crate) fn free_frame(&self, pte: u64) {
        if self.frames.unmap(pte_pfn(pte)) {
            self.ctr.add(Ctr::FramesFreed, 1);
        }
    }

    /// The PTE for a new frame with the VMA's permissions.
    pub(crate) fn new_pte(pfn: u64, prot: Prot, dirty: bool) -> u64 {
        (pfn << PFN_SHIFT)
            | PTE_PRESENT
            | PTE_ACCESSED
            | perm_bits(prot)
            | if dirty { PTE_DIRTY } else { 0 }
    }

    /// Walks to the last-level table of `addr` without locks, creating missing
    /// tables with a CAS when `populate`. `addr < VA_LIMIT`.
    ///
    /// The returned table may be unlinked and retired concurrently; it stays
    /// allocated while the caller holds `_pin` (a read guard of the Srcu
    /// domain passed to `zap_range`), and the caller must check
    /// [`Ptl::linked`] under its lock before using it (race 1).
    pub(crate) fn walk<'g, T>(
        &'g self,
        pin: &'g T,
        addr: u64,
        populate: bool,
    ) -> Option<&'g PteTable> {
        self.walk_fresh(pin, addr, populate).map(|(t, _)| t)
    }

    /// [`walk`](Self::walk), also telling whether this call linked the
    /// last-level table itself (its populate CAS won). A fault that linked
    /// a table and then finds its VMA dead runs munmap's free step on the
    /// span (fault.rs, `Try::Orphan`; DESIGN §4.8, "Freeing tables").
    pub(crate) fn walk_fresh<'g, T>(
        &'g self,
        _pin: &'g T,
        addr: u64,
        populate: bool,
    ) -> Option<(&'g PteTable, bool)> {
        debug_assert!(addr < VA_LIMIT);
        let mut linked_here = false;
        let mut dir: &Dir = &self.root;
        let mut level = 3;
        loop {
            dir.live.touch();
            let e = &dir.next[idx(addr, level)];
            // Acquire: pairs with the Release of the populate-CAS (below) or
            // of a writer's probe, so the child's contents are visible.
            let mut p = e.load(Ordering::Acquire);
            if p.is_null() {
                if !populate {
                    return None;
                }
                let fresh: *mut () = if level == 1 {
                    Box::into_raw(new_pte_table()).cast()
                } else {
                    Box::into_raw(Dir::new()).cast()
                };
                // AcqRel on success: Release publishes the new table's
                // contents and, when this CAS reads from a writer's probe,
                // makes that writer's `dead` stores happen before our later
                // check (race 2); Acquire on failure: pairs with the winner's
                // Release so we see its table.
                match e.compare_exchange(p, fresh, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => {
                        self.ctr.add(Ctr::TablesAllocated, 1);
                        linked_here = level == 1;
                        p = fresh;
                    }
                    Err(winner) => {
                        // SAFETY: `fresh` was never published; we own it.
                        unsafe {
                            if level == 1 {
                                drop(Box::from_raw(fresh.cast::<PteTable>()));
                            } else {
                                drop(Box::from_raw(fresh.cast::<Dir>()));
                            }
                        }
                        p = winner;
                    }
                }
            }
            if level == 1 {
                // SAFETY: level-1 entries point to live `PteTable`s; this one
                // is kept allocated by the caller's Srcu guard even if it is
                // unlinked concurrently (it is retired only after unlinking).
                return Some((unsafe { &*p.cast::<PteTable>() }, linked_here));
            }
            // SAFETY: upper levels point to `Dir`s, which are freed only when
            // the page tables are dropped (`&self` is borrowed).
            dir = unsafe { &*p.cast::<Dir>() };
            level -= 1;
        }
    }

    /// `for_each_table`, cut at PTL stripe boundaries: `f(table, a, b)` for
    /// each part `a..b` of `lo..hi` that lies in one stripe, in address
    /// order. Each PTE's change is one section of its own stripe (races 1
    /// and 2 reason per PTE, DESIGN §4.6, "PTL stripes").
    fn for_each_part(
        &self,
        lo: u64,
        hi: u64,
        probing: bool,
        f: &mut dyn FnMut(&PteTable, u64, u64),
    ) {
        self.for_each_table(lo, hi, probing, &mut |_, t, _, a, b| {
            for (a, b) in stripe_parts(a, b) {
                f(t, a, b);
            }
        });
    }

    /// Writer side: visits every last-level table overlapping `lo..hi` with
    /// its PMD entry, the table's base address and the part of `lo..hi` it
    /// covers. Upper entries are read with probe RMWs. A table is freed
    /// only by a thread holding a range lock over its whole 2 MiB span
    /// (DESIGN §4.8, "Freeing tables"): a write lock, or a read lock and a
    /// pin of the domain tables are retired through. So the caller holds
    /// a write lock overlapping every span it visits (its own writer area,
    /// or the whole space), which excludes both, or a pin of that domain
    /// (readers: `free_tables`, `table_spans`, `stats`, `check`, madvise,
    /// fork), so no table visited is freed meanwhile (M3).
    fn for_each_table(&self, lo: u64, hi: u64, probing: bool, f: &mut TableFn<'_>) {
        fn visit(dir: &Dir, level: u32, lo: u64, hi: u64, probing: bool, f: &mut TableFn<'_>) {
            let span = 1u64 << (12 + 9 * level);
            let mut a = lo;
            while a < hi {
                let base = a & !(span - 1);
                let end = (base + span).min(hi);
                let e = &dir.next[idx(a, level)];
                let p = if probing {
                    probe_at(e, level)
                } else {
                    // Acquire: pairs with the populate CAS's Release. Only for
                    // readers of PTEs (stats, checks), which need no probe.
                    e.load(Ordering::Acquire)
                };
                if !p.is_null() {
                    if level == 1 {
                        // SAFETY: the caller's range lock excludes whoever
                        // could free this table, or its pin delays the
                        // free (see the function's comment): it is live.
                        f(e, unsafe { &*p.cast::<PteTable>() }, base, a, end);
                    } else {
                        // SAFETY: upper tables live until drop.
                        visit(unsafe { &*p.cast::<Dir>() }, level - 1, a, end, probing, f);
                    }
                }
                a = base + span;
            }
        }
        let hi = hi.min(VA_LIMIT);
        if lo < hi {
            visit(&self.root, 3, lo, hi, probing, f);
        }
    }

    /// Zaps every PTE in `lo..hi` (frames freed), under each table's PTL.
    ///
    /// Caller: a writer with every VMA covering `lo..hi` in the published
    /// version dead and the replacements unpublished (M7), or madvise under
    /// the address-space read lock (a racing fault then linearises before the
    /// zap or after it; both are Linux's MADV_DONTNEED). Upper entries are
    /// read with probes (race 2).
    pub(crate) fn zap_range(&self, lo: u64, hi: u64) {
        let mut freed = 0u64;
        self.for_each_part(lo, hi, true, &mut |t, a, b| {
            let ptl = t.lock_at(a);
            ptl.each_present(a, b, |addr, pte| {
                let removed = self.frames.rmap_remove(pte_pfn(pte), self.pv(addr));
                debug_assert!(removed, "PTE at {addr:#x} without its pv entry (M10)");
                freed += u64::from(self.frames.unmap(pte_pfn(pte)));
                Some(0)
            });
            ptl.each_swap(a, b, |_, pte| {
                freed += u64::from(self.frames.put(pte_pfn(pte)));
                Some(0)
            });
        });
        self.ctr.add(Ctr::FramesFreed, freed);
    }

    /// After a commit: unlinks every last-level table overlapping `lo..hi`
    /// whose 2 MiB span holds no VMA in the committed version
    /// (`span_empty(base)`), and retires it through `domain` (race 1).
    ///
    /// Caller: holds a range lock over each such span, for writing (the
    /// writer that zapped `lo..hi` before its commit, `Tables::Free`) or
    /// for reading (munmap's free step and a fault that linked a table
    /// under a dying VMA, `free_empty_spans`), so no writer changes a VMA
    /// or walks a table there meanwhile; and `_pin`, a read guard of
    /// `domain`, so a table another reader unlinks under us stays
    /// allocated. Such a table holds no PTE: the zap removed those of
    /// faults that validated before it, and every later fault in the span
    /// found its VMA dead (the zap's PTL section or probe follows the dead
    /// store, race 2) or found no VMA in the committed version.
    ///
    /// Idempotent: two free steps may run on one span at once (readers);
    /// a table whose `linked` is already false under its PTL was unlinked
    /// by the other, which also cleared the entry and retired it: skipped.
    /// Only the thread that flips `linked` writes the entry other than by a
    /// probe (which writes back what it read), and no populate replaces a
    /// non-null entry, so its swap reads this table and clears it.
    pub(crate) fn free_tables<T>(
        &self,
        _pin: &T,
        lo: u64,
        hi: u64,
        domain: &Srcu,
        span_empty: &dyn Fn(u64) -> bool,
    ) {
        // The usual munmap frees one table: it goes to the domain as one
        // entry, with no `Vec`. A `Vec` allocated here and freed by
        // whichever thread runs the batch was a cross-thread malloc/free per
        // munmap when two writers share a space (perf: `_int_malloc` under
        // `free_tables`, issue 11).
        let mut first: Option<Deferred> = None;
        let mut more: Vec<Deferred> = Vec::new();
        self.for_each_table(lo, hi, true, &mut |entry, t, base, _, _| {
            if !span_empty(base) {
                return;
            }
            let ptl = t.lock_all();
            if !ptl.linked() {
                return;
            }
            debug_assert!(
                (0..ENTRIES as u64).all(|i| ptl.get(base + i * PAGE) == 0),
                "a PTE in a span with no VMA at {base:#x}"
            );
            // Race 1: under every stripe.
            ptl.unlink();
            // Relaxed: read by the callback after the grace period (see
            // `free_pte_table`).
            #[cfg(not(loom))]
            t.home.store(return_shard(), Ordering::Relaxed);
            drop(ptl);
            // AcqRel swap. Release: a walker that still loads the old
            // pointer finds the table unlinked under its PTL, one that
            // loads null populates a fresh table (pairs with the Acquire
            // load in `walk`); Acquire: pairs with the populate CAS and the
            // probes (Release) of this entry, relied on by nothing after it
            // (the check below compares the pointer only).
            //
            // A plain `store(null, Release)` would be as correct by the
            // memory model (DESIGN §4.8, "Freeing tables", issue 11): every
            // other write to a non-null entry is a probe, an RMW writing
            // back the value it read, and comes right after the write it
            // read in the entry's modification order. So a probe after our
            // store in that order writes back null (or a fresh table a
            // later populate linked), never this table T, and a thread that
            // happens after the store cannot read T. But loom 0.7.3 does
            // not order a plain store after a concurrent RMW
            // (tokio-rs/loom#254): with the store, `mm::fault_vs_munmap` at
            // bound 3 left the other free step's probe (CAS(T, T), which
            // read our probe) unordered with the store, so the fault's next
            // walk, the model's end check (`tables_kept` 1) and the final
            // drop read T in the entry, and T was freed twice. With loom
            // patched to order them, the store passes. The swap is checked
            // by loom as it is, costs one locked instruction per freed
            // table, and lets us assert that nobody else wrote the entry
            // (tests/loom/unlink.rs: the minimal reproduction).
            let was = entry.swap(ptr::null_mut(), Ordering::AcqRel);
            let p: *mut PteTable = ptr::from_ref(t).cast_mut();
            debug_assert_eq!(was, p.cast(), "the entry changed under its unlinker");
            // SAFETY: Deferred::new: 1. plain data, droppable on any thread;
            // 2. unlinked above, so the domain's grace period covers every
            // walker that could still hold it (M3).
            let d = unsafe { Deferred::new(p.cast(), free_pte_table) };
            match first {
                None => first = Some(d),
                Some(_) => more.push(d),
            }
        });
        let Some(first) = first else { return };
        self.ctr.add(Ctr::TablesFreed, 1 + more.len() as u64);
        if more.is_empty() {
            // SAFETY: the entry satisfies Deferred::new (above).
            unsafe { domain.defer(first) };
        } else {
            more.push(first);
            // SAFETY: each entry satisfies Deferred::new (above).
            unsafe { domain.defer_batch(more) };
        }
    }

    /// Removes every permission `prot` does not allow from the PTEs in `lo..hi`.
    /// Caller: a writer with the VMAs covering `lo..hi` dead, or unchanged
    /// with `prot` already (M7).
    pub(crate) fn protect_range(&self, lo: u64, hi: u64, prot: Prot) {
        let keep = !(PTE_PERM & !perm_bits(prot));
        self.for_each_part(lo, hi, true, &mut |t, a, b| {
            let ptl = t.lock_at(a);
            ptl.each_present(a, b, |_, pte| (pte & !keep != 0).then_some(pte & keep));
        });
    }

    /// Moves the PTEs of `from..from + len` to `to..` (target must be empty).
    /// Caller: writer, with the source VMAs dead and the target unpublished.
    pub(crate) fn move_range(&self, from: u64, to: u64, len: u64) {
        let mut moved: Vec<(u64, u64)> = Vec::new();
        self.for_each_part(from, from + len, true, &mut |t, a, b| {
            let ptl = t.lock_at(a);
            // Present PTEs keep their pv entry (at the old address) until
            // the target PTE is set: an rmap walker meanwhile finds no PTE
            // there and looks again (rmap.rs). Swap entries move too.
            ptl.each_present(a, b, |a, pte| {
                moved.push((a, pte));
                Some(0)
            });
            ptl.each_swap(a, b, |a, pte| {
                moved.push((a, pte));
                Some(0)
            });
        });
        for (src, pte) in moved {
            let addr = src - from + to;
            let t = self
                .walk(&(), addr, true)
                .expect("populating walk always returns a table");
            let ptl = t.lock_at(addr);
            let old = ptl.get(addr);
            debug_assert_eq!(old, 0, "mremap target {addr:#x} not zapped");
            if pte & PTE_PRESENT != 0 {
                self.frames
                    .rmap_move(pte_pfn(pte), self.pv(src), self.pv(addr));
            }
            ptl.set(addr, pte);
        }
    }

    /// fork: copies the present PTEs of `lo..hi` (one VMA, `shared` if
    /// MAP_SHARED) into `child` (`copy_present_pte`). Under each parent
    /// table's PTL: the child's mapping takes a reference from the parent's
    /// (refcount and mapcount + 1); in a private VMA a writable parent PTE is
    /// write-protected, and the child's copy is never writable, so the frame
    /// is COW-shared; a shared VMA's PTE is copied as is (clean). The child's
    /// PTEs are set after the parent PTL is released (the child is not
    /// reachable by any other thread yet).
    ///
    /// Caller: fork, holding the parent's whole-space range lock for reading,
    /// which excludes every writer: no table is freed and no VMA changes.
    /// Parent faults may run: each PTE's copy is one PTL critical section,
    /// so a racing fault is ordered before it (copied) or after it (sees
    /// the write-protected PTE and the refcount 2, or installs a frame the
    /// child does not get). Tables a racing fault populates after our visit
    /// hold only such later installs.
    pub(crate) fn copy_to(&self, child: &PageTables, lo: u64, hi: u64, shared: bool) {
        let mut batch: Vec<(u64, u64)> = Vec::new();
        self.for_each_part(lo, hi, false, &mut |t, a, b| {
            batch.clear();
            {
                let ptl = t.lock_at(a);
                // Swap entries: a reference each, no mapping (`copy_nonpresent_pte`).
                ptl.each_swap(a, b, |addr, pte| {
                    self.frames.get(pte_pfn(pte));
                    batch.push((addr, pte));
                    None
                });
                ptl.each_present(a, b, |addr, pte| {
                    self.frames.dup(pte_pfn(pte));
                    // The child's entry exists before its PTE (rmap.rs);
                    // the child is registered already.
                    self.frames.rmap_add(pte_pfn(pte), child.pv(addr), false);
                    if shared {
                        batch.push((addr, pte & !(PTE_DIRTY | PTE_ACCESSED)));
                        None
                    } else {
                        batch.push((addr, pte & !(PTE_WRITE | PTE_ACCESSED)));
                        (pte & PTE_WRITE != 0).then_some(pte & !PTE_WRITE)
                    }
                });
            }
            let Some(&(first, _)) = batch.first() else {
                return;
            };
            let ct = child
                .walk(&(), first, true)
                .expect("populating walk always returns a table");
            // One stripe: the batch lies in the part `a..b`.
            let cptl = ct.lock_at(first);
            for &(addr, pte) in batch.iter() {
                cptl.set(addr, pte);
            }
        });
    }

    /// The bases of the 2 MiB spans in `lo..hi` that have a last-level
    /// table linked now (a hint: one may be freed or populated right
    /// after). Skips absent upper tables, so a huge hole costs nothing.
    /// `_pin`: a read guard of the domain tables are retired through, which
    /// keeps every table the walk meets allocated (M3).
    pub(crate) fn table_spans<T>(&self, _pin: &T, lo: u64, hi: u64) -> Vec<u64> {
        let mut out = Vec::new();
        self.for_each_table(lo, hi, false, &mut |_, _, base, _, _| out.push(base));
        out
    }

    /// Swap entries in `lo..hi` as `(addr, pte)` (a range lock over
    /// `lo..hi`, and `_pin`, a read guard of the domain tables are retired
    /// through: a free step may unlink a table meanwhile, §4.8).
    pub(crate) fn swapped<T>(&self, _pin: &T, lo: u64, hi: u64) -> Vec<(u64, u64)> {
        self.entries(PTE_SWAP, lo, hi)
    }

    /// Present PTEs in `lo..hi` as `(addr, pte)` (as [`swapped`](Self::swapped)).
    pub(crate) fn present<T>(&self, _pin: &T, lo: u64, hi: u64) -> Vec<(u64, u64)> {
        self.entries(PTE_PRESENT, lo, hi)
    }

    /// PTEs in `lo..hi` with `bit` set.
    fn entries(&self, bit: u64, lo: u64, hi: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        self.for_each_part(lo, hi, false, &mut |t, a, b| {
            let ptl = t.lock_at(a);
            ptl.each_with(bit, a, b, |a, pte| {
                out.push((a, pte));
                None
            });
        });
        out
    }
}

impl Drop for PageTables {
    /// Exit: tears the tables down in bulk. `&mut self` means no walker,
    /// fault or writer can reach them, so PTEs are read with plain loads,
    /// no PTL is taken and no PTE is cleared; only each mapped frame's
    /// counts are atomics (the frames are shared with the family).
    fn drop(&mut self) {
        // Normally done already by `AddressSpace::drop` (before its tree's
        // domain goes); idempotent.
        self.frames.rmap.exit(self.id);
        fn free(frames: &FrameTable, dir: Box<Dir>, level: u32) {
            // Loom: a walker still in the tables is a race (rmap.rs).
            dir.live.kill();
            for e in &dir.next {
                // Relaxed: `&mut self`, no other thread.
                let p = e.load(Ordering::Relaxed);
                if p.is_null() {
                    continue;
                }
                // SAFETY: linked entries are exclusively owned by their parent
                // (retired tables were unlinked first); `&mut` excludes walkers.
                unsafe {
                    if level == 1 {
                        let t = Box::from_raw(p.cast::<PteTable>());
                        // Loom: a walker still in the table is a race
                        // (rmap.rs, "Lifetime").
                        t.live.kill();
                        for pte in &t.pte {
                            // Relaxed: as above.
                            let pte = pte.load(Ordering::Relaxed);
                            if pte & PTE_PRESENT != 0 {
                                frames.unmap(pte_pfn(pte));
                            } else if pte & PTE_SWAP != 0 {
                                frames.put(pte_pfn(pte));
                            }
                        }
                    } else {
                        free(frames, Box::from_raw(p.cast::<Dir>()), level - 1);
                    }
                }
            }
        }
        let root = std::mem::replace(&mut self.root, Dir::new());
        free(&self.frames, root, 3);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A table retired by this thread and freed (its Srcu callback) on
    /// another goes back to this thread's return list; the freeing thread's
    /// stash does not keep it. Before `TABLE_RETURN`, the freeing thread
    /// kept it, and two writers of one space populated tables whose lines
    /// the other core wrote last.
    ///
    /// Other test threads share the static lists (threads fold onto
    /// `RETURN_SHARDS`), so the freeing thread is one whose shard differs
    /// from ours, and the test looks for the table in our list right after
    /// the free instead of allocating (which could pull another thread's
    /// table from the shared list first; breaker7 saw that flake at 16 test
    /// threads).
    #[test]
    fn a_table_freed_on_another_thread_goes_home() {
        let home = return_shard();
        let t = new_pte_table();
        t.home.store(home, Ordering::Relaxed);
        let p = Box::into_raw(t) as usize;
        let in_home = |p: usize| {
            let mut r = lock(&TABLE_RETURN[home]);
            r.iter()
                .position(|t| ptr::from_ref(&**t) as usize == p)
                .map(|i| r.swap_remove(i))
        };
        let mut freed = false;
        for _ in 0..64 {
            freed = std::thread::spawn(move || {
                if return_shard() == home {
                    return false; // the same shard: not "another thread" here
                }
                // SAFETY: free_pte_table 1: from `Box::into_raw` of a table
                // from `new_pte_table`, never linked, freed once (here).
                unsafe { free_pte_table(p as *mut ()) };
                let kept = TABLE_STASH
                    .with(|s| s.borrow().iter().any(|t| ptr::from_ref(&**t) as usize == p));
                assert!(!kept, "the freeing thread kept another thread's table");
                true
            })
            .join()
            .unwrap();
            if freed {
                break;
            }
        }
        assert!(freed, "no thread with another shard in 64 tries");
        // Another thread of our shard may have taken it in between (it
        // then reuses it, which is what the list is for); almost always it
        // is still there.
        drop(in_home(p));
    }
}

#[cfg(all(test, not(loom)))]
mod stripe_tests {
    use super::{PAGE, PMD_SPAN, STRIPE_PTES, stripe_parts};

    /// The parts tile `a..b` in order, each inside one stripe.
    #[test]
    fn stripe_parts_tile_the_range_within_stripes() {
        let step = STRIPE_PTES as u64 * PAGE;
        let base = 7 * PMD_SPAN;
        for (a, b) in [
            (0, PAGE),
            (0, PMD_SPAN),
            (step - PAGE, step + PAGE),
            (step, 2 * step),
            (3 * PAGE, 5 * step + 9 * PAGE),
            (PMD_SPAN - PAGE, PMD_SPAN),
        ] {
            let (a, b) = (base + a, base + b);
            let parts: Vec<_> = stripe_parts(a, b).collect();
            assert_eq!(parts.first().unwrap().0, a);
            assert_eq!(parts.last().unwrap().1, b);
            for w in parts.windows(2) {
                assert_eq!(w[0].1, w[1].0);
            }
            for &(x, y) in &parts {
                assert!(x < y && (x / step) == ((y - 1) / step), "{x:#x}..{y:#x}");
            }
        }
        assert_eq!(stripe_parts(base, base).count(), 0);
    }
}
