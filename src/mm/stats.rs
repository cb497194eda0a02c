//! Per-thread event counters, Linux's per-CPU counters without the CPU:
//! every thread owns one slot of counters per address space (a
//! [`SlotTable`] indexed by the thread's small recycled id, the same
//! registry Srcu uses), and only the owner writes it, so an update is a
//! Relaxed load and a Relaxed store of the thread's own cache lines, never a
//! read-modify-write ([DESIGN §4](crate::docs::design#4-mm), "Statistics"). `stats()` sums the
//! slots with Relaxed loads; the sums are exact at quiescent points, however
//! many threads have counted (ids are per live thread, and a slot outlives its
//! thread: the next owner of the id continues its counts).
//!
//! A fault makes ONE update, at its end: `fault_done(path, result)` adds one
//! to the cell `[path][outcome]`; `faults`, the per-path and the per-outcome
//! totals are sums of cells. Frame numbers come from the frame table
//! (`frame.rs`), which a fork family shares.

use super::error::FaultError;
use super::flags::FaultOutcome;
use crate::srcu::slots::{Cached, SlotTable};
use crate::srcu::thread_id::Cache;
use crate::sync::{AtomicU64, Ordering};

/// The counted events, as `stats()` reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum Ctr {
    Faults,
    SpeculativeOk,
    VmaLockOk,
    LockedOk,
    Retries,
    Fallbacks,
    Segv,
    AccessErr,
    Installed,
    Present,
    Upgraded,
    StackGrowths,
    FramesAllocated,
    FramesFreed,
    TablesAllocated,
    TablesFreed,
    /// COW write faults that copied the frame.
    CowCopies,
    /// COW write faults that reused the frame (refcount 1).
    CowReuses,
    /// Placements that waited for a held area (mmap.rs, `place`).
    PlaceWaits,
}

/// The path a fault completed on (the first index of a fault cell).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum Path {
    /// The speculative (lockless) path.
    Speculative,
    /// Under a per-VMA read reference.
    VmaLock,
    /// Under the address-space lock (policy `MmapLock`, or a fallback).
    Locked,
    /// Rejected before any path (an address at or above TASK_SIZE).
    None,
}
const N_PATH: usize = Path::None as usize + 1;

/// The outcome a fault returned (the second index of a fault cell): the
/// discriminant itself, errors after the four successes, so the index is a
/// byte and a select, not a table lookup.
#[inline(always)]
fn outcome(r: &Result<FaultOutcome, FaultError>) -> usize {
    match *r {
        Ok(o) => o as usize,
        Err(e) => N_OK + e as usize,
    }
}
/// Cell indexes of the outcomes (the order of the enums' variants).
const INSTALLED: usize = FaultOutcome::Installed as usize;
const PRESENT: usize = FaultOutcome::Present as usize;
const UPGRADED: usize = FaultOutcome::Upgraded as usize;
const COPIED: usize = FaultOutcome::Copied as usize;
const N_OK: usize = COPIED + 1;
const SEGV: usize = N_OK + FaultError::Segv as usize;
const ACCESS: usize = N_OK + FaultError::Access as usize;
const N_OUTCOME: usize = ACCESS + 1;

/// The non-fault events (each has its own counter in a slot).
const N_EVENT: usize = 9;

/// Index of an event counter in `Slot::events`, `None` for fault totals.
#[inline(always)]
const fn event(c: Ctr) -> Option<usize> {
    match c {
        Ctr::Retries => Some(0),
        Ctr::Fallbacks => Some(1),
        Ctr::StackGrowths => Some(2),
        Ctr::FramesAllocated => Some(3),
        Ctr::FramesFreed => Some(4),
        Ctr::TablesAllocated => Some(5),
        Ctr::TablesFreed => Some(6),
        Ctr::CowReuses => Some(7),
        Ctr::PlaceWaits => Some(8),
        _ => None,
    }
}

/// One thread's counters (S1 of [DESIGN §3](crate::docs::design#3-srcu) applies: one writer, the
/// live owner of the slot's id), alone on its cache lines.
#[repr(align(128))]
#[derive(Default)]
pub(crate) struct Slot {
    /// Faults completed, by path and outcome.
    faults: [[AtomicU64; N_OUTCOME]; N_PATH],
    /// The other events, indexed by `event`.
    events: [AtomicU64; N_EVENT],
}

impl Cached for Slot {
    const CACHE: Cache = Cache::Stats;
}

/// Adds `n` to a counter of a slot the caller owns: a plain load and store.
#[inline(always)]
fn bump_owned(a: &AtomicU64, n: u64) {
    // Relaxed: a statistic with a single writer (S1); nothing is published
    // through it. The sums are exact once the writers are joined (or have
    // handed their id over through the registry mutex).
    a.store(a.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// Adds `n` to a counter of the shared fallback slot (several writers).
#[cold]
fn bump_shared(a: &AtomicU64, n: u64) {
    // Relaxed: a statistic; atomicity alone keeps it exact.
    a.fetch_add(n, Ordering::Relaxed);
}

/// The counters of one address space.
pub(crate) struct Counters {
    slots: SlotTable<Slot>,
}

impl Counters {
    pub(crate) fn new() -> Counters {
        Counters {
            slots: SlotTable::new(),
        }
    }

    /// Adds `n` to event `c` in this thread's slot. `c` must be an event,
    /// not a fault total (those are counted by [`Counters::fault_done`]).
    #[inline]
    pub(crate) fn add(&self, c: Ctr, n: u64) {
        let Some(e) = event(c) else {
            debug_assert!(false, "{c:?} is counted by fault_done");
            return;
        };
        self.slots.with(
            |s| bump_owned(&s.events[e], n),
            |s| bump_shared(&s.events[e], n),
        );
    }

    /// Counts one fault that completed on `path` with result `r`: the
    /// fault's only counter update.
    #[inline]
    pub(crate) fn fault_done(&self, path: Path, r: &Result<FaultOutcome, FaultError>) {
        let (p, o) = (path as usize, outcome(r));
        self.slots.with(
            |s| bump_owned(&s.faults[p][o], 1),
            |s| bump_shared(&s.faults[p][o], 1),
        );
    }

    /// The sum over slots (exact when no thread is counting concurrently).
    pub(crate) fn sum(&self, c: Ctr) -> u64 {
        let mut total = 0u64;
        // Relaxed loads: statistics.
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let cells = |s: &Slot, f: &dyn Fn(usize, usize) -> bool| -> u64 {
            let mut t = 0u64;
            for (p, row) in s.faults.iter().enumerate() {
                for (o, a) in row.iter().enumerate() {
                    if f(p, o) {
                        t = t.wrapping_add(ld(a));
                    }
                }
            }
            t
        };
        self.slots.for_each(|s| {
            let v = match c {
                Ctr::Faults => cells(s, &|_, _| true),
                Ctr::SpeculativeOk => cells(s, &|p, _| p == Path::Speculative as usize),
                Ctr::VmaLockOk => cells(s, &|p, _| p == Path::VmaLock as usize),
                Ctr::LockedOk => cells(s, &|p, _| p == Path::Locked as usize),
                Ctr::Installed => cells(s, &|_, o| o == INSTALLED),
                Ctr::Present => cells(s, &|_, o| o == PRESENT),
                Ctr::Upgraded => cells(s, &|_, o| o == UPGRADED),
                Ctr::Segv => cells(s, &|_, o| o == SEGV),
                Ctr::AccessErr => cells(s, &|_, o| o == ACCESS),
                Ctr::CowCopies => cells(s, &|_, o| o == COPIED),
                _ => event(c).map_or(0, |e| ld(&s.events[e])),
            };
            total = total.wrapping_add(v);
        });
        total
    }
}

const _: () = assert!(matches!(event(Ctr::PlaceWaits), Some(i) if i == N_EVENT - 1));

/// A snapshot of an address space's counters (exact when no call is running).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmStats {
    /// Calls to `fault`.
    pub faults: u64,
    /// Faults completed on the speculative (lockless) path.
    pub speculative_ok: u64,
    /// Faults completed under a per-VMA read lock.
    pub vma_lock_ok: u64,
    /// Faults completed under the address-space lock (policy `MmapLock`, or fallbacks).
    pub locked_ok: u64,
    /// Optimistic attempts that had to start over (dead VMA, unlinked table,
    /// write-locked VMA).
    pub retries: u64,
    /// Faults that gave up the optimistic path and took the address-space lock.
    pub fallbacks: u64,
    /// Faults answered `Segv`.
    pub segv: u64,
    /// Faults answered `Access`.
    pub access_errors: u64,
    /// Faults that mapped a new frame.
    pub installed: u64,
    /// Faults that found a good PTE already there.
    pub present: u64,
    /// Faults that added a permission to a present PTE.
    pub upgraded: u64,
    /// Faults that grew a GROWSDOWN stack.
    pub stack_growths: u64,
    /// Frames ever allocated in the frame table (shared by the fork family).
    pub frames_allocated: u64,
    /// Frames freed in the frame table (their last reference dropped).
    pub frames_freed: u64,
    /// Frames mapped now (present PTEs). Balance: allocated = mapped + freed.
    pub frames_mapped: u64,
    /// Page-table pages ever allocated (all levels; the root is not counted).
    pub tables_allocated: u64,
    /// Last-level tables unlinked and retired through Srcu.
    pub tables_freed: u64,
    /// Last-level tables linked at the time of the call in a 2 MiB span
    /// that holds no VMA: tables whose free step (DESIGN §4.8, "Freeing
    /// tables") has not run yet. Exact (counted by a walk of the tables
    /// under the whole-space read lock, not by events), and 0 at every
    /// quiescent point (`check()` fails otherwise).
    pub tables_kept: u64,
    /// Times a placement (mmap without FIXED) waited, holding nothing:
    /// because no unheld area fits (it waits for held ones), or because
    /// only readers held its candidate (it waits for them and searches
    /// again: DESIGN §4.8).
    pub place_waits: u64,
    /// VMAs now.
    pub vmas: u64,
    /// Frames live in the frame table this space shares with its fork
    /// family (refcount > 0). `frames_allocated` and `frames_freed` count
    /// that whole table too: `allocated = freed + live` (M6); for a space
    /// that never forked, `live = mapped`.
    pub frames_live: u64,
    /// Write faults on a private page that copied its frame (COW).
    pub cow_copies: u64,
    /// Write faults on a write-protected private page that reused its frame
    /// because it held the only reference.
    pub cow_reuses: u64,
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// More threads than the old 16 shards, some of them starting after
    /// others exited (recycled ids): every count exact.
    #[test]
    fn exact_with_many_threads() {
        let c = Counters::new();
        const PER: u64 = 6000;
        for _wave in 0..2 {
            std::thread::scope(|s| {
                for _ in 0..40 {
                    s.spawn(|| {
                        for i in 0..PER {
                            c.add(Ctr::FramesAllocated, 1);
                            let r = if i % 2 == 0 {
                                Ok(FaultOutcome::Installed)
                            } else {
                                Err(FaultError::Access)
                            };
                            c.fault_done(Path::Speculative, &r);
                            c.add(Ctr::FramesFreed, 1);
                        }
                    });
                }
            });
        }
        let n = 2 * 40 * PER;
        assert_eq!(c.sum(Ctr::FramesAllocated), n);
        assert_eq!(c.sum(Ctr::FramesFreed), n);
        assert_eq!(c.sum(Ctr::Faults), n);
        assert_eq!(c.sum(Ctr::SpeculativeOk), n);
        assert_eq!(c.sum(Ctr::Installed), n / 2);
        assert_eq!(c.sum(Ctr::AccessErr), n / 2);
        assert_eq!(c.sum(Ctr::LockedOk) + c.sum(Ctr::Segv), 0);
    }

    /// Every (path, outcome) pair lands in its own cell: `k` faults of the
    /// `k`-th pair, then each total is the sum of exactly its pairs (catches
    /// an outcome index shared by two outcomes or out of the summed range).
    #[test]
    fn every_cell_is_distinct() {
        let c = Counters::new();
        let results = [
            Ok(FaultOutcome::Installed),
            Ok(FaultOutcome::Present),
            Ok(FaultOutcome::Upgraded),
            Ok(FaultOutcome::Copied),
            Err(FaultError::Segv),
            Err(FaultError::Access),
        ];
        let paths = [Path::Speculative, Path::VmaLock, Path::Locked, Path::None];
        let n = |pi: usize, ri: usize| (pi * results.len() + ri + 1) as u64;
        for (pi, &p) in paths.iter().enumerate() {
            for (ri, r) in results.iter().enumerate() {
                for _ in 0..n(pi, ri) {
                    c.fault_done(p, r);
                }
            }
        }
        let by_r = |ri: usize| (0..paths.len()).map(|pi| n(pi, ri)).sum::<u64>();
        let by_p = |pi: usize| (0..results.len()).map(|ri| n(pi, ri)).sum::<u64>();
        assert_eq!(c.sum(Ctr::Installed), by_r(0));
        assert_eq!(c.sum(Ctr::Present), by_r(1));
        assert_eq!(c.sum(Ctr::Upgraded), by_r(2));
        assert_eq!(c.sum(Ctr::CowCopies), by_r(3));
        assert_eq!(c.sum(Ctr::Segv), by_r(4));
        assert_eq!(c.sum(Ctr::AccessErr), by_r(5));
        assert_eq!(c.sum(Ctr::SpeculativeOk), by_p(0));
        assert_eq!(c.sum(Ctr::VmaLockOk), by_p(1));
        assert_eq!(c.sum(Ctr::LockedOk), by_p(2));
        assert_eq!(c.sum(Ctr::Faults), (0..4).map(by_p).sum::<u64>());
        assert_eq!(c.sum(Ctr::Retries), 0);
    }
}
