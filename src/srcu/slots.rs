//! Per-thread reader counters of one domain.
//!
//! Every thread owns one [`Slot`] per domain, found by its small recycled
//! thread id ([`super::thread_id`]) in a [`SlotTable`]: bucket `b` holds `2^b`
//! slots, is allocated on first use and never moves or shrinks until the
//! domain is dropped (S3), like the `thread_local` crate's or seize's tables.
//! So a slot outlives the thread that wrote it: the next thread to get the id
//! continues its counts, and a guard dropped after its thread exited is
//! counted wherever it is dropped. Only the sums over all slots matter (S2).
//!
//! A slot has a single writer at a time, its id's owner (S1), so increments
//! are a plain Relaxed load and store, no read-modify-write. The one slot that
//! may have several writers, the domain's fallback slot (for threads whose
//! thread-locals are already destroyed), is bumped with `fetch_add`.
//!
//! The table is generic over the slot type: the address space's statistics
//! (`mm::stats`) keep their per-thread counters in a `SlotTable` too, with
//! their own one-entry slot cache ([`thread_id::Cache`]).

use super::thread_id::{self, Cache};
use crate::sync::{AtomicPtr, AtomicU64, AtomicUsize, Ordering, lazy_static};
use std::ptr;

lazy_static! {
    /// Source of domain uids (S10); 0 is never handed out.
    static ref NEXT_UID: AtomicU64 = AtomicU64::new(1);
}

/// Number of buckets: ids up to `2^BUCKETS - 2` (ids are recycled, so this
/// bounds the number of threads alive at once). Tiny under loom so that a scan
/// is a handful of loads.
#[cfg(not(loom))]
const BUCKETS: usize = 32;
#[cfg(loom)]
const BUCKETS: usize = 3;

/// Which counter of a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Counter {
    /// `locks[idx]`: bumped by `Srcu::read`.
    Lock,
    /// `unlocks[idx]`: bumped by dropping a guard.
    Unlock,
}

/// A slot type of a [`SlotTable`]: names the one-entry thread cache
/// ([`thread_id::Cache`]) its tables use. A constant, not a table field, so
/// that the cache lookup on every access indexes the thread-local cache
/// array at a fixed offset instead of loading and scaling a field first.
pub(crate) trait Cached: Default {
    /// The thread cache of every table of this slot type.
    const CACHE: Cache;
}

impl Cached for Slot {
    const CACHE: Cache = Cache::Srcu;
}

/// One thread's reader counters, alone on its cache line(s) so that readers
/// on different threads never write the same line (128 bytes: adjacent-line
/// prefetchers pair 64-byte lines, as crossbeam's `CachePadded` assumes).
#[repr(align(128))]
#[derive(Default)]
pub(super) struct Slot {
    locks: [AtomicUsize; 2],
    unlocks: [AtomicUsize; 2],
}

const _: () = assert!(std::mem::size_of::<Slot>() == 128 || cfg!(loom));

impl Slot {
    #[inline(always)]
    fn counter(&self, which: Counter, idx: usize) -> &AtomicUsize {
        match which {
            Counter::Lock => &self.locks[idx & 1],
            Counter::Unlock => &self.unlocks[idx & 1],
        }
    }

    /// Single-writer increment (S1): the caller owns this slot's id.
    #[inline(always)]
    pub(super) fn bump_owned(&self, which: Counter, idx: usize) {
        let c = self.counter(which, idx);
        c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }

    /// Multi-writer increment, for the shared fallback slot.
    #[cold]
    pub(super) fn bump_shared(&self, which: Counter, idx: usize) {
        self.counter(which, idx).fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub(super) fn load(&self, which: Counter, idx: usize) -> usize {
        self.counter(which, idx).load(Ordering::Relaxed)
    }
}

/// `id` → (bucket, index in bucket): bucket `b` holds ids `2^b - 1 ..= 2^(b+1) - 2`.
#[inline(always)]
fn locate(id: usize) -> (usize, usize) {
    let n = id + 1;
    let bucket = (usize::BITS - 1 - n.leading_zeros()) as usize;
    (bucket, n - (1 << bucket))
}

/// A lock-free, grow-only table of slots indexed by thread id, plus the
/// shared fallback slot.
pub(crate) struct SlotTable<S: Cached> {
    /// Unique per table for the life of the process, so a thread's cached
    /// `(uid, slot)` can never name a slot of a dropped table (S10).
    uid: u64,
    /// Bucket `b`: null or a leaked `Box<[S]>` of length `2^b`.
    buckets: [AtomicPtr<S>; BUCKETS],
    /// For threads whose thread-locals are gone (a guard dropped, or a read
    /// begun, by a thread-local destructor): several writers, so `fetch_add`.
    fallback: S,
}

impl<S: Cached> SlotTable<S> {
    /// An empty table (its threads cache their slot in `S::CACHE`).
    pub(crate) fn new() -> Self {
        Self {
            // Relaxed: uniqueness needs only the RMW's atomicity.
            uid: NEXT_UID.fetch_add(1, Ordering::Relaxed),
            buckets: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
            fallback: S::default(),
        }
    }

    /// Runs `owned` on the calling thread's own slot, of which it is the only
    /// writer (S1), or `shared` on the fallback slot, which has several
    /// writers, when the thread's thread-locals are already destroyed.
    #[inline(always)]
    pub(crate) fn with<R>(&self, owned: impl FnOnce(&S) -> R, shared: impl FnOnce(&S) -> R) -> R {
        match thread_id::last_slot(S::CACHE, self.uid) {
            // SAFETY: S10: the cache holds `(self.uid, p)` only while `p` is
            // this thread's slot in the table with that uid, which is `self`
            // (uids are never reused), alive for `&self`; slots never move (S3).
            Some(p) => owned(unsafe { &*p.cast::<S>() }),
            None => match self.own_slot() {
                Some(slot) => owned(slot),
                None => shared(&self.fallback),
            },
        }
    }

    /// The calling thread's slot (cached for the next call), or `None` while
    /// the thread is being torn down.
    #[inline(never)]
    fn own_slot(&self) -> Option<&S> {
        let id = thread_id::current()?;
        let slot = self.get(id);
        thread_id::set_last_slot(S::CACHE, self.uid, ptr::from_ref(slot).cast());
        Some(slot)
    }

    /// Every slot: the fallback slot, then each published thread slot. Each
    /// slot is visited once; the caller loads its counters Relaxed.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&S)) {
        f(&self.fallback);
        for (b, bucket) in self.buckets.iter().enumerate() {
            // Acquire: pairs with the AcqRel CAS in `alloc_bucket`.
            let p = bucket.load(Ordering::Acquire);
            if p.is_null() {
                continue;
            }
            // SAFETY: a published bucket is a live slice of length 2^b (S3).
            let slots = unsafe { &*ptr::slice_from_raw_parts(p, 1 << b) };
            slots.iter().for_each(&mut f);
        }
    }

    /// The slot of thread `id`, allocating its bucket on first use.
    #[inline]
    fn get(&self, id: usize) -> &S {
        let (b, i) = locate(id);
        // Acquire: pairs with the AcqRel CAS in `alloc_bucket`, so the
        // bucket's initialised slots are visible.
        let p = self.buckets[b].load(Ordering::Acquire);
        if p.is_null() {
            return self.alloc_bucket(b, i);
        }
        // SAFETY: a non-null bucket pointer is a live `Box<[Slot]>` of length
        // 2^b (S3: freed only in `Drop`, which `&self` excludes), and `i < 2^b`
        // by `locate`.
        unsafe { &*p.add(i) }
    }

    #[cold]
    #[inline(never)]
    fn alloc_bucket(&self, b: usize, i: usize) -> &S {
        let fresh: Box<[S]> = (0..1usize << b).map(|_| S::default()).collect();
        let fresh = Box::into_raw(fresh) as *mut S;
        // AcqRel: Release publishes the initialised slots to `get`/`sum`
        // (their Acquire loads); Acquire (and Acquire on failure) sees the
        // winner's slots if another thread raced us.
        let p = match self.buckets[b].compare_exchange(
            ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => fresh,
            Err(winner) => {
                // SAFETY: `fresh` came from `Box::into_raw` of a slice of
                // length 2^b just above and was never shared (the CAS failed).
                drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(fresh, 1 << b)) });
                winner
            }
        };
        // SAFETY: `p` is a published bucket of length 2^b (S3) and `i < 2^b`.
        unsafe { &*p.add(i) }
    }
}

impl SlotTable<Slot> {
    /// Adds one to `which[idx]` in the calling thread's slot.
    #[inline(always)]
    pub(super) fn bump(&self, which: Counter, idx: usize) {
        self.with(|s| s.bump_owned(which, idx), |s| s.bump_shared(which, idx));
    }

    /// Sum of counter `which[idx]` over every slot, wrapping. Not a snapshot:
    /// each counter is loaded once, Relaxed, at its own moment (the scan's
    /// argument in [DESIGN §3](crate::docs::design#3-srcu) needs no more).
    pub(super) fn sum(&self, which: Counter, idx: usize) -> usize {
        let mut total = 0usize;
        self.for_each(|s| total = total.wrapping_add(s.load(which, idx)));
        total
    }
}

impl<S: Cached> Drop for SlotTable<S> {
    fn drop(&mut self) {
        for (b, bucket) in self.buckets.iter().enumerate() {
            let p = bucket.load(Ordering::Relaxed); // &mut self: no concurrent access
            if !p.is_null() {
                // SAFETY: `p` is the `Box<[S]>` of length 2^b published by
                // `alloc_bucket`; nobody else can reach it any more (&mut self).
                drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(p, 1 << b)) });
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
pub(super) mod tests {
    use super::*;

    #[test]
    fn locate_covers_ids_densely() {
        assert_eq!(locate(0), (0, 0));
        assert_eq!(locate(1), (1, 0));
        assert_eq!(locate(2), (1, 1));
        assert_eq!(locate(3), (2, 0));
        assert_eq!(locate(6), (2, 3));
        assert_eq!(locate(7), (3, 0));
        for id in 0..10_000usize {
            let (b, i) = locate(id);
            assert!(i < 1 << b);
            assert_eq!((1 << b) - 1 + i, id);
        }
    }

    #[test]
    fn sums_span_buckets_and_slots_are_stable() {
        let t = SlotTable::<Slot>::new();
        let a = t.get(0) as *const Slot;
        for id in [0, 1, 2, 5, 100] {
            t.get(id).bump_owned(Counter::Lock, 1);
        }
        t.get(5).bump_owned(Counter::Unlock, 1);
        t.fallback.bump_shared(Counter::Unlock, 1);
        assert_eq!(t.sum(Counter::Lock, 1), 5);
        assert_eq!(t.sum(Counter::Lock, 0), 0);
        assert_eq!(t.sum(Counter::Unlock, 1), 2);
        assert_eq!(t.get(0) as *const Slot, a, "slots never move");
    }

    #[test]
    fn bump_uses_the_calling_threads_slot() {
        let t = SlotTable::<Slot>::new();
        t.bump(Counter::Lock, 0);
        std::thread::scope(|s| {
            s.spawn(|| t.bump(Counter::Unlock, 0));
        });
        assert_eq!(t.sum(Counter::Lock, 0), 1);
        assert_eq!(t.sum(Counter::Unlock, 0), 1);
        assert_eq!(t.fallback.load(Counter::Lock, 0), 0);
    }

    /// The fallback slot's unlock count of index `idx` (for module tests).
    pub(in crate::srcu) fn fallback_unlocks(t: &SlotTable<Slot>, idx: usize) -> usize {
        t.fallback.load(Counter::Unlock, idx)
    }
}
