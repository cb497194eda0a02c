//! Sharded event counters: each thread bumps its own cache line (Relaxed),
//! `stats()` sums the shards. No fault writes a counter another thread's
//! fault writes, unless more threads than shards run at once.

use crate::sync::{AtomicU64, Ordering, shard_index};

/// The counted events.
#[derive(Clone, Copy, Debug)]
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
}

const N_CTR: usize = Ctr::CowReuses as usize + 1;
#[cfg(not(loom))]
const SHARDS: usize = 16;
#[cfg(loom)]
const SHARDS: usize = 1;

/// One cache-line-aligned set of counters.
#[repr(align(128))]
struct Shard([AtomicU64; N_CTR]);

pub(crate) struct Counters {
    shards: Box<[Shard]>,
}

impl Counters {
    pub(crate) fn new() -> Counters {
        Counters {
            shards: (0..SHARDS)
                .map(|_| Shard(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect(),
        }
    }

    #[inline]
    fn slot(&self, c: Ctr) -> (usize, &AtomicU64) {
        let s = shard_index() % SHARDS;
        (s, &self.shards[s].0[c as usize])
    }

    /// Adds `n` to this thread's shard of `c`.
    #[inline]
    pub(crate) fn add(&self, c: Ctr, n: u64) {
        // Relaxed: a statistic; nothing is published through it.
        self.slot(c).1.fetch_add(n, Ordering::Relaxed);
    }

    /// The sum over shards (exact when no thread is counting concurrently).
    pub(crate) fn sum(&self, c: Ctr) -> u64 {
        self.shards
            .iter()
            // Relaxed: a statistic.
            .map(|s| s.0[c as usize].load(Ordering::Relaxed))
            .sum()
    }
}

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
