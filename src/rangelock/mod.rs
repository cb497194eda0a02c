//! `RangeLock`: reader–writer locks over half-open `u64` ranges `[start, end)`.
//!
//! Overlapping writers exclude each other and readers; overlapping readers
//! share; requests on disjoint ranges never wait for each other.
//!
//! # Design
//! After the interval-tree range lock of Jan Kara and Davidlohr Bueso (Linux
//! `range_rwlock` series). One mutex protects a table of every *held and
//! waiting* request, an interval treap keyed by `(start, arrival)` and
//! augmented with the subtree's largest `end` (`tree.rs`). A new request,
//! under the mutex, visits the requests overlapping it, counts the
//! *conflicting* ones (overlap, and at least one of the two writes) that it
//! must wait for into its `blocking` count, and inserts itself. With a count of
//! zero it holds the lock at once (one mutex round trip, no allocation once the
//! arena is warm). Otherwise it parks until the count reaches zero. A release
//! removes the request and, if anything waits for it (`dependents > 0`),
//! decrements the count of every conflicting request overlapping it, waking
//! those that reach zero. A top-level request first tries a lock-free fast
//! path (`fast.rs`): while no request is in the table, it publishes its range
//! in one of a few slots and is granted unless another slot conflicts;
//! table requests see (and wait for) published slots through a Dekker
//! handshake. A top-level request that went to the table and found nothing
//! to wait for is held in a slot too (R11), and a `try_` refused by a
//! granted writer's slot returns without the table (R12). The invariants
//! (R1–R12), the fairness and the deadlock-freedom argument are in
//! [DESIGN §7, "Range locks: the primitive"](crate::docs::design#7-range-locks-the-primitive).
//!
//! # Fairness
//! A request made with [`RangeLock::read`], [`RangeLock::write`] or as the
//! first request of a [`RangeLockSet`] is *top-level*: it waits for exactly
//! the conflicting requests that arrived before it (FIFO among conflicting
//! requests). So a writer is never starved by a stream of later readers, nor
//! readers by a stream of later writers. A *nested* request (any later request
//! of a non-empty [`RangeLockSet`]) waits for conflicting requests that hold
//! their lock and for waiting nested requests that start at or above it; it
//! goes ahead of every other waiting request (R5). This is what makes
//! address-ordered nesting deadlock-free: under plain FIFO, a thread holding
//! `[0, 10)` and asking for `[15, 30)` deadlocks with a thread that queued for
//! `[5, 20)` in between. The price: a waiting request can be overtaken by
//! nested requests, i.e. by threads that already hold part of the lock.
//!
//! # Lock order and deadlock freedom
//! * A thread that holds a guard of a `RangeLock` must not *block* on another
//!   request of the same lock through [`RangeLock::read`], [`RangeLock::write`]
//!   or [`RangeLock::wait`]; `try_` requests are always allowed.
//! * To hold several ranges at once, use one [`RangeLockSet`] and request them
//!   **lowest address first**: each request must start at or above the end of
//!   every range the set holds ([`RangeLockError::Order`] otherwise). To lock
//!   something lower, release the set (or drop guards) and start again from
//!   the lowest range, then revalidate.
//!
//! Why this cannot deadlock (in full in [DESIGN §7.3](crate::docs::design#73-lock-order-and-deadlock-freedom)): a top-level
//! waiter's thread holds nothing, and only later top-level requests wait for
//! it, which in turn wait only for earlier ones or nested ones, so no cycle
//! passes through a top-level waiter. Between nested waiters `T → U`, either
//! `T` waits for a held range `G` of `U`, and then
//! `T.request.start < G.end <= U.request.start`, or for `U`'s waiting nested
//! request, which then starts higher, or as high and earlier. The pair
//! (start, earlier arrival) of the waited-on request strictly increases along
//! any chain, so no cycle closes.
//!
//! # Empty and inverted ranges
//! `start > end` is [`RangeLockError::Inverted`]. An empty range (`start ==
//! end`) is [`RangeLockError::Empty`]: it would exclude nothing, and in an
//! address-space model it always means a caller bug. No method panics on bad
//! input.

mod fast;
mod tree;

use crate::sync::{self, AtomicUsize, Mutex, Ordering, fence, shard_index, thread};
use crossbeam_utils::CachePadded;
use std::fmt;
use tree::{NIL, Table};

/// What a request wants: shared or exclusive access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RangeMode {
    /// Shared with other readers of overlapping ranges.
    Read,
    /// Exclusive against every overlapping request.
    Write,
}

/// What [`RangeLock::conflicting_mode`] reports: the smallest range
/// covering the conflicting requests, and their strongest mode.
pub type Conflicts = ((u64, u64), RangeMode);

/// A hull of requests' ranges, `None` when there are none.
type Hull = Option<(u64, u64)>;

/// Errors of [`RangeLock`] and [`RangeLockSet`] requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RangeLockError {
    /// `start > end`.
    #[error("range [{start:#x}, {end:#x}) has start > end")]
    Inverted {
        /// Requested start.
        start: u64,
        /// Requested end.
        end: u64,
    },
    /// `start == end`: empty ranges are not locks.
    #[error("empty range at {start:#x}")]
    Empty {
        /// Requested start (= end).
        start: u64,
    },
    /// A [`RangeLockSet`] request below the end of a range the set holds
    /// (the lock order is lowest address first).
    #[error("range at {start:#x} is below {held_end:#x}, the end of a range this set holds")]
    Order {
        /// Requested start.
        start: u64,
        /// The highest end the set holds.
        held_end: u64,
    },
    /// A `try_` request would have had to wait.
    #[error("range is locked")]
    WouldBlock,
    /// [`narrow`](RangeWriteGuard::narrow) to a range that is not inside the
    /// one the guard holds.
    #[error("range [{start:#x}, {end:#x}) is not inside the held [{held_start:#x}, {held_end:#x})")]
    NotInside {
        /// Requested start.
        start: u64,
        /// Requested end.
        end: u64,
        /// Start of the range held.
        held_start: u64,
        /// End of the range held.
        held_end: u64,
    },
}

/// Rounds of spinning (each a retry under the mutex) before a blocking
/// request queues and parks: about 10–30 µs in all. None under loom, whose
/// models need every wait to be a real block.
#[cfg(not(loom))]
const SPINS: u32 = 24;
#[cfg(loom)]
const SPINS: u32 = 0;

/// Backoff between spin rounds: exponential busy-wait hints, then yields.
fn spin_wait(round: u32) {
    if round < 12 {
        for _ in 0..(4u32 << round.min(8)) {
            std::hint::spin_loop();
        }
    } else {
        thread::yield_now();
    }
}

fn check(start: u64, end: u64) -> Result<(), RangeLockError> {
    if start > end {
        Err(RangeLockError::Inverted { start, end })
    } else if start == end {
        Err(RangeLockError::Empty { start })
    } else {
        Ok(())
    }
}

/// A reader–writer lock over `[start, end)` ranges of `u64`, fair among
/// conflicting requests. See the [module docs](self) for the lock order.
///
/// ```
/// use maple_rcu::RangeLock;
/// let lock = RangeLock::new();
/// let a = lock.write(0x1000, 0x3000).unwrap();
/// let b = lock.write(0x3000, 0x5000).unwrap(); // disjoint: no wait
/// assert!(lock.try_read(0x2000, 0x4000).is_err());
/// drop((a, b));
/// assert!(lock.try_read(0x2000, 0x4000).is_ok());
/// ```
pub struct RangeLock {
    /// The slow path's state, on cache lines of its own (`CachePadded`):
    /// slow-path requests and `conflicting` write its mutex, which must not
    /// evict `slow` and `fast`, read by every fast-path request, or
    /// whatever an embedder puts next to the lock (DESIGN §7.1).
    table: CachePadded<Mutex<Table>>,
    /// Requests in the table plus requesters on their way to it (R7): while
    /// it is not 0, no request is granted on the fast path.
    slow: AtomicUsize,
    /// Granted top-level requests that took the fast path (R7).
    fast: Box<[fast::Slot]>,
}

/// What the fast path (R7) made of a request.
enum Fast {
    /// Granted in this slot.
    Granted(usize),
    /// A granted writer's slot conflicts and no request is in the table.
    Conflict,
    /// A request is in the table (or on its way there), or every slot of
    /// the request's mode is taken: the table path decides.
    Table,
}

/// Where a granted request is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Grant {
    /// In the table, at this index.
    Table(u32),
    /// In this fast-path slot.
    Fast(usize),
}

impl Default for RangeLock {
    fn default() -> Self {
        Self::new()
    }
}

impl RangeLock {
    /// An unlocked range lock.
    pub fn new() -> Self {
        Self {
            table: CachePadded::new(Mutex::new(Table::new())),
            slow: AtomicUsize::new(0),
            fast: (0..fast::SLOTS).map(|_| fast::Slot::new()).collect(),
        }
    }

    /// Locks `[start, end)` for reading, sleeping while a conflicting earlier
    /// request exists. Must not be called while this thread holds a guard of
    /// this lock (see the lock order).
    pub fn read(&self, start: u64, end: u64) -> Result<RangeReadGuard<'_>, RangeLockError> {
        let g = self.grant(start, end, false, false, true)?;
        Ok(RangeReadGuard(Held::new(self, g, start, end)))
    }

    /// Locks `[start, end)` for writing, sleeping while a conflicting earlier
    /// request exists. Must not be called while this thread holds a guard of
    /// this lock (see the lock order).
    pub fn write(&self, start: u64, end: u64) -> Result<RangeWriteGuard<'_>, RangeLockError> {
        let g = self.grant(start, end, true, false, true)?;
        Ok(RangeWriteGuard(Held::new(self, g, start, end)))
    }

    /// Locks `[start, end)` for reading if no request (held or waiting)
    /// conflicts with it; [`RangeLockError::WouldBlock`] otherwise. Never
    /// sleeps (beyond the internal mutex); allowed while holding guards.
    /// Conservative at the edges: a conflicting request that is being made
    /// at the same moment (still checking on the lock-free path) may refuse
    /// it and then back off; it is never granted while a conflicting
    /// request holds.
    pub fn try_read(&self, start: u64, end: u64) -> Result<RangeReadGuard<'_>, RangeLockError> {
        let g = self.grant(start, end, false, false, false)?;
        Ok(RangeReadGuard(Held::new(self, g, start, end)))
    }

    /// Locks `[start, end)` for writing if no request (held or waiting)
    /// overlaps it; [`RangeLockError::WouldBlock`] otherwise. Conservative
    /// at the edges as [`try_read`](Self::try_read); two `try_write`s of a
    /// free range at once never both fail (DESIGN §7.1, R12).
    pub fn try_write(&self, start: u64, end: u64) -> Result<RangeWriteGuard<'_>, RangeLockError> {
        let g = self.grant(start, end, true, false, false)?;
        Ok(RangeWriteGuard(Held::new(self, g, start, end)))
    }

    /// Waits, holding nothing afterwards, until every request overlapping
    /// `[start, end)` that arrived before this call has been released (it
    /// queues a write request and drops it once granted). For "release
    /// everything, wait for that area, then retry". Same rule as
    /// [`write`](Self::write): do not call while holding a guard of this lock.
    pub fn wait(&self, start: u64, end: u64) -> Result<(), RangeLockError> {
        self.write(start, end).map(drop)
    }

    /// An empty [`RangeLockSet`] for holding several ranges in address order.
    pub fn set(&self) -> RangeLockSet<'_> {
        RangeLockSet {
            lock: self,
            held: Vec::new(),
        }
    }

    /// The smallest range covering every request, held or waiting, that a
    /// write request for `[start, end)` would wait for now: `Ok(None)` if
    /// there is none. A snapshot (requests come and go right after), for a
    /// caller whose `try_write` failed and who would rather go elsewhere
    /// than wait (the lock-aware placement of `mmap`, DESIGN §4.8). Scans
    /// the fast slots, and the table under its mutex when a request is in
    /// it (§7.4: O(log n + k log n)); a fast slot that changes while read
    /// is skipped.
    /// The lock's own requests are untouched: no cost and no effect on
    /// fairness for anyone else. [`conflicting_mode`](Self::conflicting_mode)
    /// also says whether only readers conflict.
    pub fn conflicting(&self, start: u64, end: u64) -> Result<Option<(u64, u64)>, RangeLockError> {
        Ok(self.hulls(start, end)?.0)
    }

    /// What a write of `[start, end)` would wait for, by mode:
    /// `((lo, hi), RangeMode::Read)` when every conflicting request is a
    /// reader (held or waiting), `(lo, hi)` their hull; `((lo, hi),
    /// RangeMode::Write)` when at least one is a writer (a pending
    /// [`wait`](Self::wait) counts as one), and then `(lo, hi)` is the hull
    /// of the conflicting **writers only**: readers are left out, so a
    /// whole-space reader next to a small writer does not make the writer's
    /// area look like everything. A caller that meets only readers knows its
    /// write would wait only for them (the placement of `mmap` waits for
    /// readers, and skips only writers' areas, DESIGN §4.8). Same snapshot
    /// and cost as [`conflicting`](Self::conflicting), which reports the
    /// hull of all of them.
    pub fn conflicting_mode(
        &self,
        start: u64,
        end: u64,
    ) -> Result<Option<Conflicts>, RangeLockError> {
        Ok(match self.hulls(start, end)? {
            (_, Some(w)) => Some((w, RangeMode::Write)),
            (all, None) => all.map(|h| (h, RangeMode::Read)),
        })
    }

    /// One snapshot of the requests conflicting with a write of `[start,
    /// end)`: the hull of all of them, and the hull of the writers among
    /// them (`None` if none writes).
    fn hulls(&self, start: u64, end: u64) -> Result<(Hull, Hull), RangeLockError> {
        check(start, end)?;
        let (mut all, mut writers) = ((u64::MAX, 0u64), (u64::MAX, 0u64));
        let mut add = |a: u64, b: u64, w: bool| {
            if a < end && start < b {
                all = (all.0.min(a), all.1.max(b));
                if w {
                    writers = (writers.0.min(a), writers.1.max(b));
                }
            }
        };
        for s in self.fast.iter() {
            if let Ok(Some((a, b, w))) = s.request() {
                add(a, b, w);
            }
        }
        // Acquire: reads from the last decrement, so the requests that left
        // the table before are gone from it; a snapshot either way. With
        // none in the table (or on its way there: those count too), the
        // mutex is not taken: a placement that skips a held area (R12's
        // refusal, then this) touches no line but the slots (§7.1, R12).
        if self.slow.load(Ordering::Acquire) != 0 {
            let mut t = sync::lock(&self.table);
            let ov = t.overlaps(start, end);
            for &o in &ov {
                let n = t.node(o);
                add(n.start, n.end, n.write);
            }
            t.put_scratch(ov);
        }
        let some = |(lo, hi): (u64, u64)| (lo < hi).then_some((lo, hi));
        Ok((some(all), some(writers)))
    }

    /// Number of requests in the table, held and waiting (a snapshot, for
    /// diagnostics and tests).
    pub fn requests(&self) -> usize {
        let fast = self
            .fast
            .iter()
            .filter(|s| matches!(s.request(), Ok(Some(_)) | Err(())))
            .count();
        sync::lock(&self.table).len() + fast
    }

    /// R7: grants a top-level request without the mutex if no request is in
    /// the table or on its way there and no fast-path request conflicts.
    fn acquire_fast(&self, start: u64, end: u64, write: bool) -> Fast {
        // Relaxed: a hint only; the SeqCst load after publishing decides.
        if self.slow.load(Ordering::Relaxed) != 0 {
            return Fast::Table;
        }
        let Some(i) = self.claim_slot(start, end, write) else {
            return Fast::Table;
        };
        // SeqCst: Dekker (R8), pairs with the fence in `grant` after a slow
        // requester's increment and with the fences of other fast
        // requesters: whichever fence comes second in the total order, its
        // thread's loads below see the other's store.
        fence(Ordering::SeqCst);
        // Acquire: reads from the last decrement (a Release RMW; all of them
        // form one release sequence), so every request that left the table
        // before is ordered before us (R9).
        let verdict = if self.slow.load(Ordering::Acquire) != 0 {
            Fast::Table
        } else {
            match self.fast_conflict_by(Some(i), start, end, write) {
                None => {
                    if write {
                        self.fast[i].mark_granted();
                    }
                    return Fast::Granted(i);
                }
                Some(true) => Fast::Conflict,
                Some(false) => Fast::Table,
            }
        };
        self.release_fast(i);
        verdict
    }

    /// Claims a free slot of the request's mode (readers among the readers'
    /// slots, writers among the writers', R7), starting at the thread's
    /// shard, and publishes `[start, end)` in it. `None` if all are taken.
    fn claim_slot(&self, start: u64, end: u64, write: bool) -> Option<usize> {
        let (base, n) = if write {
            (fast::READ_SLOTS, fast::WRITE_SLOTS)
        } else {
            (0, fast::READ_SLOTS)
        };
        let first = shard_index() % n;
        let (i, claimed) = (0..n)
            .map(|k| base + (first + k) % n)
            .find_map(|i| self.fast[i].claim().map(|c| (i, c)))?;
        self.fast[i].publish(claimed, start, end, write);
        Some(i)
    }

    /// Whether a fast-path request other than slot `except` conflicts with
    /// `[start, end)` (a slot that changed while read counts as one). A
    /// reader looks only at the writers' slots: readers never conflict, and
    /// not loading the other readers' slots keeps their lines out of our
    /// cache, so a reader's claim and free stay local (R7).
    fn fast_conflict(&self, except: Option<usize>, start: u64, end: u64, write: bool) -> bool {
        self.fast_conflict_by(except, start, end, write).is_some()
    }

    /// [`fast_conflict`](Self::fast_conflict), and by whom: `None` (no
    /// conflict), `Some(true)` (a granted writer conflicts: a `try_` may be
    /// refused at once, R12), `Some(false)` (only requesters still checking,
    /// or slots that changed while read: they may back off, so the table
    /// path decides).
    fn fast_conflict_by(
        &self,
        except: Option<usize>,
        start: u64,
        end: u64,
        write: bool,
    ) -> Option<bool> {
        let from = if write { 0 } else { fast::READ_SLOTS };
        let mut found = None;
        for (k, s) in self.fast[from..].iter().enumerate() {
            if Some(from + k) == except {
                continue;
            }
            match s.request_granted() {
                Ok(None) => {}
                Ok(Some((a, b, w, granted))) => {
                    if (w || write) && a < end && start < b {
                        if granted {
                            return Some(true);
                        }
                        found = Some(false);
                    }
                }
                Err(()) => found = Some(false),
            }
        }
        found
    }

    /// Releases fast-path slot `i`; if slow requests exist, re-checks the
    /// table's requests that wait for fast-path holders (R8).
    fn release_fast(&self, i: usize) {
        self.fast[i].free();
        self.recheck_fast_waiters();
    }

    /// After a fast-path holder freed or narrowed its slot: re-checks the
    /// table's requests that wait for fast-path holders (R8), granting
    /// those that no fast-path request blocks any more.
    fn recheck_fast_waiters(&self) {
        // SeqCst: pairs with the fence in `grant`: a slow requester that saw
        // our slot held (or wider) fenced before we did, so this load sees
        // its increment, and we re-check its wait below (R8). The mm free
        // step's hand-off (R-M5, `AddressSpace::drain_deferred`) also
        // relies on every fast release ending with this fence.
        fence(Ordering::SeqCst);
        // Relaxed: only decides whether to take the mutex, which orders the
        // re-check.
        if self.slow.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut wake: Vec<thread::Thread> = Vec::new();
        {
            let mut t = sync::lock(&self.table);
            let waiting = std::mem::take(&mut t.fast_waiters);
            for idx in waiting {
                let n = t.node(idx);
                if self.fast_conflict(None, n.start, n.end, n.write) {
                    t.fast_waiters.push(idx);
                    continue;
                }
                let n = t.node_mut(idx);
                n.fast_wait = false;
                n.blocking -= 1;
                if n.blocking == 0
                    && let Some(w) = n.waiter.take()
                {
                    wake.push(w);
                }
            }
        }
        for w in wake {
            w.unpark();
        }
    }

    /// Grants a request: on the fast path when it is top-level and nothing
    /// else is in the way (R7), else through the table.
    fn grant(
        &self,
        start: u64,
        end: u64,
        write: bool,
        nested: bool,
        block: bool,
    ) -> Result<Grant, RangeLockError> {
        check(start, end)?;
        if !nested {
            match self.acquire_fast(start, end, write) {
                Fast::Granted(i) => return Ok(Grant::Fast(i)),
                // R12: a `try_` request that met a conflicting *granted*
                // fast-path writer, with no request in the table, is
                // refused here: that holder held a conflicting range when
                // we looked, so the request would have had to wait; the
                // table path would only add the mutex, a fence and two
                // RMWs of `slow` shared with every other requester. A
                // conflicting requester still checking (not yet granted)
                // may back off, so then the table path decides (two
                // `try_write`s of a free range must not refuse each other:
                // loom `breaker_s14::two_try_writes_on_a_free_lock_one_wins`).
                // The holder's release ends with R8's fence, as R-M5's
                // hand-off needs (`AddressSpace::drain_deferred`).
                Fast::Conflict if !block => return Err(RangeLockError::WouldBlock),
                Fast::Conflict | Fast::Table => {}
            }
        }
        // Relaxed: the announcing half of the Dekker handshake (R8); the
        // fence below orders it before our scans of the fast slots (in
        // `acquire`, under the mutex). Undone when our request leaves the
        // table (`release_grant`) or is refused.
        self.slow.fetch_add(1, Ordering::Relaxed);
        // SeqCst: pairs with the fences of `acquire_fast` and `release_fast`.
        fence(Ordering::SeqCst);
        let r = self.acquire(start, end, write, nested, block);
        if !matches!(r, Ok(Grant::Table(_))) {
            // Release: as the decrement in `release_grant`; for a grant that
            // ended in a slot (R11), this also publishes the slot to fast
            // requesters that read 0 here (Acquire).
            self.slow.fetch_sub(1, Ordering::Release);
        }
        r
    }

    /// Releases a granted request.
    fn release_grant(&self, g: Grant) {
        match g {
            Grant::Fast(i) => self.release_fast(i),
            Grant::Table(idx) => {
                self.release(idx);
                // Release: our request left the table; a fast requester whose
                // Acquire load reads 0 from here on is ordered after our
                // critical section (R9).
                self.slow.fetch_sub(1, Ordering::Release);
            }
        }
    }

    /// The request protocol (R3). `nested`: the caller's set holds a lock, so
    /// it goes ahead of waiting requests (R5). `block`: wait, or fail with
    /// `WouldBlock` instead. A top-level request granted without waiting
    /// is held in a fast-path slot if one is free, not in the table (R11).
    fn acquire(
        &self,
        start: u64,
        end: u64,
        write: bool,
        nested: bool,
        block: bool,
    ) -> Result<Grant, RangeLockError> {
        // The thread handle is fetched only on the slow path, outside the
        // mutex, and before anything is inserted: nothing between the
        // insertion and the grant can panic, so a waiting request is never
        // abandoned in the table (R6).
        let mut me: Option<thread::Thread> = None;
        let mut spins = 0u32;
        let mut fast_wait;
        let idx = loop {
            let mut t = sync::lock(&self.table);
            let ov = t.overlaps(start, end);
            let mut before = 0u32;
            let mut jumped = 0u32;
            for &o in &ov {
                let n = t.node(o);
                if n.conflicts(start, end, write) {
                    if nested && goes_ahead_of(n, start) {
                        jumped += 1;
                    } else {
                        before += 1;
                    }
                }
            }
            // R8: granted fast-path requests that conflict are waited for
            // like granted ones in the table (one count for all of them,
            // cleared by the fast release that leaves none).
            if self.fast_conflict(None, start, end, write) {
                before += 1;
                fast_wait = true;
            } else {
                fast_wait = false;
            }
            if before > 0 && !block {
                t.put_scratch(ov);
                return Err(RangeLockError::WouldBlock);
            }
            // A short spin before queueing (top-level requests only): a
            // conflicting holder that releases within a few microseconds is
            // waited for without a park/unpark pair per hand-off, which
            // otherwise turns two threads taking turns into a convoy of
            // context switches. A spinning request is not in the table, so it
            // never passes a queued one: every retry still counts waiting
            // conflicting requests (FIFO, R4), and after `SPINS` rounds it
            // queues like any other.
            #[cfg_attr(
                loom,
                allow(clippy::absurd_extreme_comparisons, reason = "no spin under loom")
            )]
            let spin = spins < SPINS;
            if before > 0 && !nested && spin {
                t.put_scratch(ov);
                drop(t);
                spin_wait(spins);
                spins += 1;
                continue;
            }
            if before > 0 && me.is_none() {
                t.put_scratch(ov);
                drop(t);
                me = Some(thread::current());
                continue;
            }
            // R11: nothing to wait for. A top-level request holds its grant
            // in a free slot rather than in the table, so that it does not
            // keep `slow` above 0, which would send every other request to
            // the table for as long as it is held: two threads whose
            // requests overlapped in time once then alternated in the table
            // (about two table requests per mmap + munmap loop of each
            // thread where placed blocks merged; issue 11). Published under
            // the mutex, after the scan above, and before our decrement of
            // `slow` in `grant`: a table requester sees the slot when it
            // takes the mutex, a fast requester sees `slow > 0` until the
            // slot is published (the Dekker argument of R8 with the slot
            // published late), and one that reads our decrement sees it.
            if before == 0
                && !nested
                && let Some(i) = self.claim_slot(start, end, write)
            {
                if write {
                    self.fast[i].mark_granted();
                }
                t.put_scratch(ov);
                return Ok(Grant::Fast(i));
            }
            let i = t.insert(start, end, write, nested);
            // R2: record who waits for whom, exactly once per conflicting pair.
            for &o in &ov {
                let n = t.node_mut(o);
                if n.conflicts(start, end, write) {
                    if nested && goes_ahead_of(n, start) {
                        n.blocking += 1; // R5: `i` goes first.
                    } else {
                        n.dependents += 1;
                    }
                }
            }
            t.put_scratch(ov);
            let n = t.node_mut(i);
            n.blocking = before;
            n.dependents = jumped;
            n.fast_wait = fast_wait;
            if fast_wait {
                t.fast_waiters.push(i);
            }
            if before == 0 {
                return Ok(Grant::Table(i));
            }
            let n = t.node_mut(i);
            n.waiter = me.take();
            break i;
        };
        // Sleep until the last request we wait for is released (it sets our
        // count to 0 under the mutex, then unparks us). `park` may return
        // spuriously or for an old token, so re-check under the mutex.
        loop {
            thread::park();
            let t = sync::lock(&self.table);
            if t.node(idx).blocking == 0 {
                return Ok(Grant::Table(idx));
            }
        }
    }

    /// Shrinks granted request `g`, now `[os, oe)`, to `[start, end)` inside
    /// it (R10, DESIGN §7.1): requests that waited for it only because of
    /// the part given up stop counting it, and those left waiting for
    /// nothing are woken. Never blocks.
    fn narrow_grant(&self, g: Grant, (os, oe): (u64, u64), start: u64, end: u64) {
        match g {
            Grant::Fast(i) => {
                self.fast[i].narrow(start, end);
                self.recheck_fast_waiters();
            }
            Grant::Table(idx) => {
                let mut wake: Vec<thread::Thread> = Vec::new();
                {
                    let mut t = sync::lock(&self.table);
                    debug_assert_eq!((t.node(idx).start, t.node(idx).end), (os, oe));
                    let dropped = stop_waiting_for(&mut t, idx, Some((start, end)), &mut wake);
                    t.node_mut(idx).dependents -= dropped;
                    t.rekey(idx, start, end);
                }
                for w in wake {
                    w.unpark();
                }
            }
        }
    }

    /// Releases granted request `idx` (R4).
    fn release(&self, idx: u32) {
        let mut wake: Vec<thread::Thread> = Vec::new();
        {
            let mut t = sync::lock(&self.table);
            let seen = stop_waiting_for(&mut t, idx, None, &mut wake);
            debug_assert_eq!(seen, t.node(idx).dependents, "R2: dependents count");
            t.remove(idx);
        }
        for w in wake {
            w.unpark();
        }
    }
}

/// Granted request `idx` gives up its range, or (`keep`) all of it but
/// `keep`: every request conflicting with what it gives up waits for it
/// (R2: it is granted) and stops; those left waiting for nothing go to
/// `wake`. Returns how many stopped. Under the table mutex.
fn stop_waiting_for(
    t: &mut Table,
    idx: u32,
    keep: Option<(u64, u64)>,
    wake: &mut Vec<thread::Thread>,
) -> u32 {
    let n = t.node(idx);
    debug_assert_eq!(n.blocking, 0, "giving up a request that is not granted");
    let (start, end, write) = (n.start, n.end, n.write);
    if n.dependents == 0 {
        return 0;
    }
    let ov = t.overlaps(start, end);
    let mut stopped = 0;
    for &o in &ov {
        if o == idx {
            continue;
        }
        let m = t.node_mut(o);
        if m.conflicts(start, end, write) && !keep.is_some_and(|(a, b)| m.conflicts(a, b, write)) {
            stopped += 1;
            m.blocking -= 1;
            if m.blocking == 0
                && let Some(w) = m.waiter.take()
            {
                wake.push(w);
            }
        }
    }
    t.put_scratch(ov);
    stopped
}

/// R5: whether a new *nested* request starting at `start` goes ahead of the
/// conflicting request `n` (which then waits for it) instead of waiting for
/// `n`. It goes ahead of every waiting top-level request, and of a waiting
/// nested request that starts lower; it waits for granted requests and for
/// waiting nested requests that start at or above `start`. So along every
/// wait between nested requests the waited-on request starts higher, or
/// starts as high and arrived earlier: no cycle ([DESIGN §7.3](crate::docs::design#73-lock-order-and-deadlock-freedom)).
fn goes_ahead_of(n: &tree::Node, start: u64) -> bool {
    n.blocking > 0 && (!n.nested || n.start < start)
}

impl fmt::Debug for RangeLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RangeLock");
        match sync::try_lock(&self.table) {
            Some(t) => {
                let mut entries = t.entries();
                entries.extend(
                    self.fast
                        .iter()
                        .filter_map(|s| s.request().ok().flatten())
                        .map(|(s, e, w)| (s, e, w, 0)),
                );
                entries.sort_by_key(|&(s, e, _, _)| (s, e));
                let e: Vec<_> = entries
                    .into_iter()
                    .map(|(s, e, w, b)| {
                        let mode = if w { "W" } else { "R" };
                        let state = if b == 0 { "held" } else { "waiting" };
                        format!("{mode} [{s:#x}, {e:#x}) {state}")
                    })
                    .collect();
                d.field("requests", &e)
            }
            None => d.field("requests", &"<busy>"),
        };
        d.finish()
    }
}

/// A granted request; releases it on drop (also during unwinding).
struct Held<'a> {
    lock: &'a RangeLock,
    grant: Grant,
    start: u64,
    end: u64,
}

impl<'a> Held<'a> {
    fn new(lock: &'a RangeLock, grant: Grant, start: u64, end: u64) -> Self {
        debug_assert_ne!(grant, Grant::Table(NIL));
        Self {
            lock,
            grant,
            start,
            end,
        }
    }
}

impl Held<'_> {
    /// Shrinks the held range to `[start, end)`, which must lie inside it.
    fn narrow(&mut self, start: u64, end: u64) -> Result<(), RangeLockError> {
        check(start, end)?;
        if start < self.start || end > self.end {
            return Err(RangeLockError::NotInside {
                start,
                end,
                held_start: self.start,
                held_end: self.end,
            });
        }
        if (start, end) != (self.start, self.end) {
            self.lock
                .narrow_grant(self.grant, (self.start, self.end), start, end);
            self.start = start;
            self.end = end;
        }
        Ok(())
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.lock.release_grant(self.grant);
    }
}

/// Shared access to `[start, end)` of a [`RangeLock`]; released on drop.
/// `Send`: it may be dropped on another thread.
#[must_use = "the range is unlocked when the guard is dropped"]
pub struct RangeReadGuard<'a>(Held<'a>);

/// Exclusive access to `[start, end)` of a [`RangeLock`]; released on drop.
/// `Send`: it may be dropped on another thread.
#[must_use = "the range is unlocked when the guard is dropped"]
pub struct RangeWriteGuard<'a>(Held<'a>);

macro_rules! guard_common {
    ($t:ident, $name:literal) => {
        impl $t<'_> {
            /// First address of the locked range.
            pub fn start(&self) -> u64 {
                self.0.start
            }
            /// End (exclusive) of the locked range.
            pub fn end(&self) -> u64 {
                self.0.end
            }
            /// Keeps only `[start, end)` of the locked range, releasing the
            /// rest at once: requests that waited only for the part given
            /// up are granted (FIFO order among the others is unchanged).
            /// Never blocks. [`RangeLockError::NotInside`] (and nothing
            /// changes) unless `[start, end)` is a non-empty range inside
            /// the held one. For a writer that needed a wide area to decide
            /// and publish, and only part of it for slow work after (an
            /// address space's munmap did so until it locked only its own
            /// range: DESIGN §4.8, R-M4 and R-M6).
            ///
            /// ```
            /// use maple_rcu::RangeLock;
            /// let lock = RangeLock::new();
            /// let mut g = lock.write(0x1000, 0x5000).unwrap();
            /// assert!(lock.try_write(0x1000, 0x2000).is_err());
            /// g.narrow(0x3000, 0x5000).unwrap();
            /// assert!(lock.try_write(0x1000, 0x3000).is_ok());
            /// assert!(lock.try_write(0x4000, 0x5000).is_err());
            /// ```
            pub fn narrow(&mut self, start: u64, end: u64) -> Result<(), RangeLockError> {
                self.0.narrow(start, end)
            }
        }
        impl fmt::Debug for $t<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}[{:#x}, {:#x})", $name, self.0.start, self.0.end)
            }
        }
    };
}
guard_common!(RangeReadGuard, "RangeReadGuard");
guard_common!(RangeWriteGuard, "RangeWriteGuard");

/// Several ranges of one [`RangeLock`], acquired lowest address first and
/// released together on drop (or by [`release_all`](Self::release_all)).
///
/// The first request is top-level (FIFO). Each later one must start at or
/// above the end of every range held ([`RangeLockError::Order`] otherwise) and
/// is *nested*: it waits for conflicting requests that hold their lock and
/// for waiting nested ones that start at or above it, going ahead of other
/// waiting ones, which keeps address-ordered nesting deadlock-free (module
/// docs). One thread should use one set per lock and
/// hold no other guard of that lock while a set request blocks.
#[must_use = "the ranges are unlocked when the set is dropped"]
pub struct RangeLockSet<'a> {
    lock: &'a RangeLock,
    held: Vec<(Held<'a>, RangeMode)>,
}

impl<'a> RangeLockSet<'a> {
    fn add(
        &mut self,
        start: u64,
        end: u64,
        mode: RangeMode,
        block: bool,
    ) -> Result<(), RangeLockError> {
        check(start, end)?;
        let held_end = self.held_end();
        if !self.held.is_empty() && start < held_end {
            return Err(RangeLockError::Order { start, held_end });
        }
        let nested = !self.held.is_empty();
        let g = self
            .lock
            .grant(start, end, mode == RangeMode::Write, nested, block)?;
        self.held.push((Held::new(self.lock, g, start, end), mode));
        Ok(())
    }

    /// Adds a read lock on `[start, end)`, sleeping if needed.
    pub fn read(&mut self, start: u64, end: u64) -> Result<(), RangeLockError> {
        self.add(start, end, RangeMode::Read, true)
    }

    /// Adds a write lock on `[start, end)`, sleeping if needed.
    pub fn write(&mut self, start: u64, end: u64) -> Result<(), RangeLockError> {
        self.add(start, end, RangeMode::Write, true)
    }

    /// Adds a read lock on `[start, end)` if that needs no waiting.
    pub fn try_read(&mut self, start: u64, end: u64) -> Result<(), RangeLockError> {
        self.add(start, end, RangeMode::Read, false)
    }

    /// Adds a write lock on `[start, end)` if that needs no waiting.
    pub fn try_write(&mut self, start: u64, end: u64) -> Result<(), RangeLockError> {
        self.add(start, end, RangeMode::Write, false)
    }

    /// The highest end held (0 when empty): the next request must start at
    /// or above it.
    pub fn held_end(&self) -> u64 {
        self.held.last().map_or(0, |(h, _)| h.end)
    }

    /// The held ranges, in address order.
    pub fn ranges(&self) -> impl Iterator<Item = (u64, u64, RangeMode)> + '_ {
        self.held.iter().map(|(h, m)| (h.start, h.end, *m))
    }

    /// Whether the set holds nothing.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Releases every range; the set can then start again from any address.
    pub fn release_all(&mut self) {
        self.held.clear();
    }
}

impl fmt::Debug for RangeLockSet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.held
                    .iter()
                    .map(|(h, m)| format!("{m:?} [{:#x}, {:#x})", h.start, h.end)),
            )
            .finish()
    }
}

/// Guards and sets may move to (and be dropped on) another thread.
const _: () = {
    const fn send<T: Send>() {}
    send::<RangeReadGuard<'static>>();
    send::<RangeWriteGuard<'static>>();
    send::<RangeLockSet<'static>>();
};

#[cfg(test)]
mod tests;
