//! The lock-free fast path of [`RangeLock`](super::RangeLock) (docs/DESIGN.md
//! §7.1, R7–R9): a few slots, each holding one granted top-level request
//! that overlapped nothing when it was made, so requests that meet no
//! conflict take no mutex, neither to acquire nor to release.
//!
//! A slot's `state` word is `gen << 3 | granted << 2 | kind`: `kind` is
//! [`FREE`], [`CLAIMED`] (being filled in by its claimer: not a request
//! yet) or [`READ`]/[`WRITE`] (a request over `[start, end)`, checking
//! for conflicts or granted); `granted` is set once the request holds the
//! lock (R12: only a granted holder refuses a `try_` outright; a requester
//! still checking may back off). Every claim increments `gen`, so a checker
//! that loads the same word twice knows the range it read in between
//! belongs to that request.
//!
//! The handshake with the slow path is Dekker's, with SeqCst fences (loom
//! checks fences, not SeqCst accesses): a fast requester publishes its slot,
//! fences, then loads `slow`; a slow requester increments `slow`, fences,
//! then loads the slots. In the single total order of SeqCst fences one of
//! the two comes second, and its loads see the other's store.

use crate::sync::{AtomicU64, Ordering};

pub(super) const FREE: u64 = 0;
pub(super) const CLAIMED: u64 = 1;
pub(super) const READ: u64 = 2;
pub(super) const WRITE: u64 = 3;
const KIND: u64 = 3;
const GRANTED: u64 = 4;
const GEN: u64 = 8;

/// Fast-path slots per lock for readers, then for writers (more readers,
/// or more writers, than this at once fall back to the table). Slots
/// `0..READ_SLOTS` hold readers, `READ_SLOTS..SLOTS` writers (R7): a
/// reader checks only the writers' slots, so two threads read-locking
/// disjoint ranges never load each other's slot lines (each claim,
/// publish and free stays in the claimer's cache); they meet only when a
/// writer publishes. Fewer writer slots: writers are the rarer requests,
/// and every reader scans them.
#[cfg(not(loom))]
pub(super) const READ_SLOTS: usize = 16;
#[cfg(not(loom))]
pub(super) const WRITE_SLOTS: usize = 8;
#[cfg(loom)]
pub(super) const READ_SLOTS: usize = 2;
#[cfg(loom)]
pub(super) const WRITE_SLOTS: usize = 2;
/// All slots.
pub(super) const SLOTS: usize = READ_SLOTS + WRITE_SLOTS;

/// One fast-path request, on its own cache line pair.
#[repr(align(128))]
pub(super) struct Slot {
    state: AtomicU64,
    start: AtomicU64,
    end: AtomicU64,
}

impl Slot {
    pub(super) fn new() -> Slot {
        Slot {
            state: AtomicU64::new(FREE),
            start: AtomicU64::new(0),
            end: AtomicU64::new(0),
        }
    }

    /// Claims the slot if it is free. Returns the claimed state word.
    pub(super) fn claim(&self) -> Option<u64> {
        // Relaxed: a first look; the CAS decides.
        let cur = self.state.load(Ordering::Relaxed);
        if cur & KIND != FREE {
            return None;
        }
        let claimed = (cur & !(KIND | GRANTED)).wrapping_add(GEN) | CLAIMED;
        // Acquire: reads from the previous holder's release (`free`), so its
        // critical section happens before ours, and it heads nothing we need;
        // a checker that reads our later `publish` is ordered after that
        // release through us (R9). Failure Relaxed: we try another slot.
        self.state
            .compare_exchange(cur, claimed, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| claimed)
    }

    /// Publishes the claimed slot as a request over `[start, end)`.
    pub(super) fn publish(&self, claimed: u64, start: u64, end: u64, write: bool) {
        // Release: a checker whose (Acquire) load of the range reads these
        // stores is ordered after our claim CAS, so its second load of the
        // state word sees the new `gen` and it discards the range (R8: the
        // seqlock read in `request`). Relaxed stores here let a checker take
        // our range for the slot's previous request, whose two state loads
        // both predate our claim, and skip waiting for that request (loom
        // `breaker::fast_slot_reuse_reads_consistent_range`).
        self.start.store(start, Ordering::Release);
        self.end.store(end, Ordering::Release);
        let kind = if write { WRITE } else { READ };
        // Release: the range above; pairs with the Acquire loads of
        // `request`. The caller's SeqCst fence that follows makes it the
        // publishing half of the Dekker handshake (R8).
        self.state.store(claimed & !KIND | kind, Ordering::Release);
    }

    /// Marks the published write request of this slot granted (R12; readers
    /// are never marked, so a `try_write` that meets only readers takes the
    /// table path, and a reader's grant costs no extra store): the bit
    /// tells a `try_` checker that the request holds the lock, so refusing
    /// it is exact. A checker that reads the word before and after this
    /// store sees the same request (`request_granted` compares the words
    /// without this bit).
    pub(super) fn mark_granted(&self) {
        // Relaxed: only this slot's holder writes a claimed slot.
        let cur = self.state.load(Ordering::Relaxed);
        // Release: a checker's Acquire load of the state word may read this
        // store instead of `publish`'s, and a plain store heads a release
        // sequence of its own (C++20): Release keeps the range stores of
        // `publish` visible to it (R8's seqlock read, R9).
        self.state.store(cur | GRANTED, Ordering::Release);
    }

    /// Shrinks the published request of a slot this thread holds to
    /// `[start, end)`, inside the published range (R10).
    pub(super) fn narrow(&self, start: u64, end: u64) {
        // Release (both): a checker that loads either new bound (Acquire,
        // in `request`) and so sees us no longer covering part of the old
        // range is ordered after everything we did there. A checker may
        // read one new bound and one old: that range lies between the new
        // and the old one, so it waits at worst as for the old range (a
        // conflict it reports is real or conservative, never missed). The
        // state word is unchanged: the slot still holds the same request.
        self.start.store(start, Ordering::Release);
        self.end.store(end, Ordering::Release);
    }

    /// Releases the slot (end of the request, or a retreat).
    pub(super) fn free(&self) {
        // Relaxed: only this slot's holder writes a claimed slot.
        let cur = self.state.load(Ordering::Relaxed);
        // Release: ends our critical section for the next claimer (its
        // Acquire CAS) and for checkers (the Acquire loads of `request`);
        // the caller fences (SeqCst) before it loads `slow` (R8).
        self.state
            .store(cur & !(KIND | GRANTED) | FREE, Ordering::Release);
    }

    /// The request this slot holds, if any, as `(start, end, write)`, or
    /// `Err(())` when it changed while being read (the caller treats that as
    /// a conflict: conservative, R8).
    #[allow(clippy::result_unit_err)]
    pub(super) fn request(&self) -> Result<Option<(u64, u64, bool)>, ()> {
        self.request_granted()
            .map(|r| r.map(|(a, b, w, _)| (a, b, w)))
    }

    /// [`request`](Self::request), and whether the request is granted
    /// (R12).
    #[allow(clippy::result_unit_err)]
    pub(super) fn request_granted(&self) -> Result<Option<(u64, u64, bool, bool)>, ()> {
        // Acquire: pairs with the Release of `publish` (the range) and of
        // `free` (the holder's critical section); the callers' SeqCst fence
        // before this load is the checking half of Dekker (R8).
        let s1 = self.state.load(Ordering::Acquire);
        let kind = s1 & KIND;
        if kind == FREE || kind == CLAIMED {
            return Ok(None);
        }
        // Acquire: published by the store we read `s1` from; and if a later
        // claimer's range is read instead, its Release store orders that
        // claim before `s2`, which then differs (see `publish`).
        let start = self.start.load(Ordering::Acquire);
        let end = self.end.load(Ordering::Acquire);
        // Acquire: same word (same `gen`) again means the range above is
        // that request's and it was still held; another word means the
        // holder left (we read its release, or a later claim continuing it).
        let s2 = self.state.load(Ordering::Acquire);
        // The `granted` bit aside: a request that was granted while we read
        // is the same request (same `gen`), and its range is the one read.
        // Counting it as changed would be wrong, not just conservative: a
        // table waiter that saw a conflict in a slot that changed relies on
        // the holder's release to re-check it (R8), and a request that was
        // merely granted has no release coming soon (loom
        // `rangelock::converted_table_grants_exclude_each_other` deadlocked
        // that way).
        if s1 & !GRANTED != s2 & !GRANTED {
            return Err(());
        }
        Ok(Some((start, end, kind == WRITE, s2 & GRANTED != 0)))
    }
}
