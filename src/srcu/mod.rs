//! Sleepable read-side RCU domains (SRCU), after Linux's srcutree.
//!
//! # How it works
//!
//! A [`Srcu`] domain counts readers in per-thread slots of two counter pairs,
//! `locks[2]` and `unlocks[2]` (`slots.rs`). [`Srcu::read`] picks the current
//! index `i = idx & 1`, bumps its own thread's `locks[i]` with a plain Relaxed
//! store and issues the light barrier; dropping the guard issues the light
//! barrier and bumps `unlocks[i]` in the slot of whichever thread drops it.
//! Only sums over all slots matter, so guards are `Send`.
//!
//! A grace period is Linux's two-scan flip, as a non-blocking state machine
//! (`Idle → Scan1 → Scan2 → Idle`, one step per [`Srcu::poll`] at most as far
//! as readers allow): wait until the inactive index is drained (sum of unlocks,
//! heavy barrier, sum of locks, equal), flip `idx`, wait until the old index is
//! drained. A scan's heavy barrier pairs with the readers' light barriers
//! (`barrier.rs`: `membarrier` against compiler fences where Linux allows,
//! `fence(SeqCst)` on both sides otherwise and under loom).
//!
//! Callbacks are queued tagged with the number of the grace period they need
//! and run, outside every internal lock, in queue order once it has completed.
//! A domain from [`Srcu::with_reclaimer`] (the kind every default
//! [`MapleTree`](crate::MapleTree) owns) is driven by the process-wide
//! reclaimer thread: queueing work wakes it, and it runs ready callbacks
//! within milliseconds when no reader holds them up (`reclaimer.rs`). A
//! domain from [`Srcu::new`] runs nothing in the background:
//! `poll`, `synchronize`, `barrier`, and the queueing calls (every
//! `POLL_EVERY` = 64 entries; these start a new grace period at most every
//! 200 µs unless many destructors wait) advance its grace periods.
//!
//! # Where user code runs
//!
//! Callbacks ([`Srcu::call`]) and retired values' drops ([`Srcu::retire`]) run
//! only in calls that exist to run them: [`Srcu::poll`], [`Srcu::barrier`],
//! the reclaimer thread (for [`Srcu::with_reclaimer`] domains), the helper
//! thread of [`Srcu::with_helper_thread`], and the domain's `Drop`.
//! Never inside `call`, `retire`, `synchronize` or `read`, so a callback may
//! call `synchronize` and a value's drop may take the locks of whoever retired
//! it. Each runs under `catch_unwind`; the panics are returned as a
//! [`Panicked`] by the `poll` or `barrier` that ran them (panics caught on the
//! reclaimer or helper thread by the next `poll` or `barrier`; see there for
//! `Drop`). In a manual domain ([`Srcu::new`]), pending callbacks and their
//! captures stay queued until something runs them: a manual domain nobody
//! polls grows without bound.
//! The invariants `S1`..`S11` cited in comments and the ordering argument are
//! in [DESIGN §3](crate::docs::design#3-srcu).

mod barrier;
mod reclaimer;
pub(crate) mod slots;
pub(crate) mod thread_id;

pub use crate::panicked::{Panicked, Payload};
pub(crate) use crate::panicked::{resume_first, run_caught};
/// The destructor type and the advance period are shared with the tree core,
/// which names them without std (`crate::platform`).
pub(crate) use crate::platform::{Deferred, POLL_EVERY};

use crate::sync::{AtomicU64, AtomicUsize, Mutex, Ordering, lock, lock_spinning, thread, try_lock};
use barrier::Barrier;
use reclaimer::Registration;
use slots::{Counter, SlotTable};
use std::collections::VecDeque;
use std::fmt;
use std::ptr;
use std::time::Duration;

/// An opportunistic caller (a queueing call crossing `POLL_EVERY`, the
/// tree's commit-driven `advance`, the mm writers' `poll_lazy`) starts a
/// grace period only if the previous one started at least this long ago
/// (or `PRESSURE` destructors wait). Each grace period costs two heavy
/// barriers, `membarrier`s that interrupt every CPU running a thread of the
/// process; two writer threads of one space started one every ~43 µs
/// (DESIGN §3.3, "rate of grace periods"). Waiters (`synchronize`,
/// `barrier`), `poll` and the background threads are not bounded.
#[cfg(not(loom))]
const MIN_GP_GAP: Duration = Duration::from_micros(200);

/// Entries' worth of queue memory a domain keeps once its queue drains
/// (S12): a burst's peak capacity is given back, the steady state's is not
/// reallocated on every drain.
const QUEUE_KEEP: usize = 1024;

/// Destructors pending at which the `MIN_GP_GAP` bound is ignored, so grace
/// periods keep *starting* under a writer storm. This bounds how long
/// entries wait for a grace period, not how many wait to *run*: writers never
/// run destructors, so entries whose grace period has passed wait for the
/// next `poll` (the process-wide reclaimer's pass, §3.7, every 1-16 ms for a
/// default tree). A storm of 5M commits peaked at 15k-27k removed values not
/// yet dropped (`tests/breaker_srcu.rs`), not `PRESSURE`.
#[cfg(not(loom))]
pub(crate) const PRESSURE: usize = 16 * POLL_EVERY;

/// Codes of the advance postponed by `Srcu::postponing` (ordered: the
/// strongest wins).
const NONE: u8 = 0;
const SPACED: u8 = 1;
const ALWAYS: u8 = 2;

crate::sync::thread_local! {
    /// `(domain address, postponed advance)` while this thread runs
    /// `Srcu::postponing` on that domain; `(0, NONE)` otherwise.
    static POSTPONE: std::cell::Cell<(usize, u8)> = const { std::cell::Cell::new((0, NONE)) };
}

/// Whether a call may start a grace period now, or only continue one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Start {
    /// Start one whenever something is requested (waiters, `poll`, the
    /// reclaimer and helper threads).
    Always,
    /// Start one only after `MIN_GP_GAP` since the last start, or under
    /// `PRESSURE` (opportunistic callers; always under loom).
    Spaced,
}

/// `gp_seq` low bits: the phase of the current grace period.
const PHASE_MASK: u64 = 3;
/// No grace period in progress.
const IDLE: u64 = 0;
/// Waiting for the inactive index to drain.
const SCAN1: u64 = 1;
/// Index flipped; waiting for the old index to drain.
const SCAN2: u64 = 2;

/// Completed grace periods encoded in `gp_seq`.
#[inline]
fn completed(seq: u64) -> u64 {
    seq >> 2
}

/// The number of the first grace period that starts after a `gp_seq` of `seq`
/// was observed under the queue lock (S5): the next one if idle, else the one
/// after the current.
#[inline]
fn snapshot(seq: u64) -> u64 {
    completed(seq) + if seq & PHASE_MASK == IDLE { 1 } else { 2 }
}

/// An independent sleepable-RCU domain.
///
/// Readers ([`Srcu::read`]) never block and may hold their guard across
/// blocking calls or `.await`; a reader stalled in one domain delays only that
/// domain's grace periods. See the module docs for the protocol.
///
/// # Contracts
/// None of these can be checked (guards are `Send`, so "this thread holds
/// one" is unknowable); each is also named on its method.
/// * **Deadlock:** [`synchronize`](Srcu::synchronize) or
///   [`barrier`](Srcu::barrier) while this thread holds a guard of the same
///   domain (they wait for it), including a `ReadGuard` of a tree on it;
///   `barrier` from inside one of the domain's own callbacks.
/// * **No progress:** a guard that is never dropped (`mem::forget`, a
///   stalled task) holds up every later grace period of its domain:
///   callbacks stay queued and `synchronize` never returns. Other domains
///   are unaffected.
/// * **Memory:** a manual domain ([`Srcu::new`]) runs callbacks only when
///   something calls [`poll`](Srcu::poll) or [`barrier`](Srcu::barrier) (or
///   drops it); queued work grows until then.
/// * **One thread for all auto domains:** a callback that blocks on the
///   reclaimer thread ([`Srcu::with_reclaimer`]) delays every such domain.
/// * Callbacks and retired values' drops run under `catch_unwind`; their
///   panics come back as [`Panicked`] from the next `poll`/`barrier`.
///
/// ```
/// let d = maple_rcu::srcu::Srcu::new();
/// let g = d.read();
/// // d.synchronize() here would wait for `g` forever.
/// std::thread::scope(|s| {
///     s.spawn(move || drop(g)); // guards are Send: ends on another thread
/// });
/// d.synchronize();
/// ```
pub struct Srcu {
    // Read-mostly, touched by every reader: the flip counter, the barrier
    // mode and the slot table (the slots themselves are padded apart).
    /// Flipped (incremented) once per grace period; readers use `idx & 1` (S8).
    idx: AtomicUsize,
    barrier: Barrier,
    slots: SlotTable<slots::Slot>,
    // Grace-period side, boxed so its writes never share a line with the above.
    gp: Box<GpSide>,
}

impl GpSide {
    /// The domain's `MIN_GP_GAP` ([`Srcu::set_min_gp_gap`]).
    fn min_gap(&self) -> Duration {
        let gap;
        #[cfg(not(loom))]
        {
            // Relaxed: see `set_min_gp_gap`.
            gap = Duration::from_nanos(self.min_gap_ns.load(Ordering::Relaxed));
        }
        #[cfg(loom)]
        {
            gap = Duration::ZERO;
        }
        gap
    }
}

/// The writer-side state of a domain.
struct GpSide {
    /// `4 * completed + phase` (S4). Written only under `gp_lock`.
    gp_seq: AtomicU64,
    /// Held while advancing the state machine (scans, flip); only ever
    /// `try_lock`ed, so nobody blocks on it. Holds when the last grace
    /// period started (`Start::Spaced`).
    gp_lock: Mutex<LastStart>,
    /// Pending callbacks and requests. Held only for O(1) pushes and pops,
    /// never across a scan or a callback (S9).
    queue: Mutex<Queue>,
    /// Held by the one thread running callbacks, so they run in order (S6);
    /// its buffer receives each ready prefix of the queue, so popping one
    /// allocates nothing under the queue lock (S13).
    invoke: Mutex<Vec<Entry>>,
    /// Entries that have finished running, for `barrier`.
    done: AtomicU64,
    /// Panics caught on the reclaimer or helper thread, which have no caller
    /// to return them to: the next `poll` or `barrier` returns them.
    unclaimed: Mutex<Vec<Payload>>,
    /// Identifies the thread holding `invoke` (`thread_tag`), 0 if none;
    /// lets `drain` tell "another thread runs our callbacks" (wait for it)
    /// from "we are inside one of them" (waiting would deadlock).
    runner: AtomicUsize,
    /// Whether (and how) the process-wide reclaimer drives this domain.
    reclaimer: Registration,
    /// `MIN_GP_GAP` for this domain, in nanoseconds
    /// ([`Srcu::set_min_gp_gap`]).
    #[cfg(not(loom))]
    min_gap_ns: AtomicU64,
}

/// When the last grace period started, for `Start::Spaced` (under
/// `gp_lock`). Nothing under loom, where every start is allowed (time is
/// not modelled, and the bound only delays a start: liveness, never safety).
#[derive(Default)]
struct LastStart {
    #[cfg(not(loom))]
    at: Option<std::time::Instant>,
}

impl LastStart {
    /// Whether a `how` caller may start a grace period now with `pending`
    /// destructors queued; records the start if so.
    #[cfg_attr(loom, allow(unused_variables, clippy::unused_self))]
    fn may_start(&mut self, how: Start, pending: usize, gap: Duration) -> bool {
        #[cfg(not(loom))]
        {
            let now = std::time::Instant::now();
            if how == Start::Spaced
                && pending < PRESSURE
                && self.at.is_some_and(|t| now.duration_since(t) < gap)
            {
                return false;
            }
            self.at = Some(now);
        }
        true
    }
}

#[derive(Default)]
struct Queue {
    /// `(grace period needed, entry)`, needs non-decreasing (S5).
    entries: VecDeque<(u64, Entry)>,
    /// The highest grace-period number anyone waits for.
    requested: u64,
    /// Entries ever pushed.
    pushed: u64,
    /// Destructors waiting in `entries` (a batch counts its length).
    pending: usize,
    /// This domain is on the reclaimer's work list (auto domains only): set
    /// by the push that finds it clear, cleared by the reclaimer when it
    /// finds `entries` empty, both under this lock (`reclaimer.rs`).
    kicked: bool,
}

/// One queued unit: a callback or a whole batch behind one grace period.
enum Entry {
    One(Deferred),
    Batch(Vec<Deferred>),
}

impl Entry {
    fn len(&self) -> usize {
        match self {
            Entry::One(_) => 1,
            Entry::Batch(v) => v.len(),
        }
    }

    /// Runs every destructor, each under `catch_unwind` (S11), so a panic
    /// neither stops nor leaks the rest of a batch.
    fn run(self, panics: &mut Vec<Payload>) {
        match self {
            Entry::One(d) => run_caught(panics, || d.run()),
            Entry::Batch(v) => {
                for d in v {
                    run_caught(panics, || d.run());
                }
            }
        }
    }
}

/// A read-side critical section of one [`Srcu`] domain. `Send`: it may be
/// dropped on another thread than the one that took it.
#[must_use = "the critical section ends when the guard is dropped"]
pub struct SrcuGuard<'a> {
    domain: &'a Srcu,
    /// The counter index this reader bumped `locks[idx]` of (S2).
    idx: usize,
}

impl Deferred {
    /// A deferred call of `f`.
    fn from_fn<F: FnOnce() + Send + 'static>(f: F) -> Self {
        /// # Safety
        /// `p` came from `Box::<F>::into_raw` and is used only here, once.
        unsafe fn call_boxed<F: FnOnce()>(p: *mut ()) {
            // SAFETY: this function's requirement.
            let f = unsafe { Box::from_raw(p.cast::<F>()) };
            f()
        }
        let data = Box::into_raw(Box::new(f)).cast::<()>();
        // SAFETY: 1. `call_boxed::<F>` consumes the box exactly once when run,
        // and `F: Send` may run on any thread. 2. The box is owned by this
        // `Deferred` alone until then.
        unsafe { Self::new(data, call_boxed::<F>) }
    }

    /// A deferred drop of `value`.
    fn from_box<T: Send + 'static>(value: Box<T>) -> Self {
        /// # Safety
        /// `p` came from `Box::<T>::into_raw` and is used only here, once.
        unsafe fn drop_boxed<T>(p: *mut ()) {
            // SAFETY: this function's requirement.
            drop(unsafe { Box::from_raw(p.cast::<T>()) });
        }
        let data = Box::into_raw(value).cast::<()>();
        // SAFETY: 1. `drop_boxed::<T>` frees the box exactly once when run, and
        // `T: Send` may be dropped on any thread. 2. The box is owned by this
        // `Deferred` alone until then.
        unsafe { Self::new(data, drop_boxed::<T>) }
    }
}

impl Default for Srcu {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Srcu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seq = self.gp.gp_seq.load(Ordering::Relaxed);
        f.debug_struct("Srcu")
            .field("completed_grace_periods", &completed(seq))
            .field("phase", &(seq & PHASE_MASK))
            .field("membarrier", &self.barrier.is_asymmetric())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for SrcuGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrcuGuard")
            .field("idx", &self.idx)
            .finish_non_exhaustive()
    }
}

impl Srcu {
    /// A new, empty, **manual** domain: nothing runs its callbacks in the
    /// background. They run when you call [`Srcu::poll`] or
    /// [`Srcu::barrier`], or when the domain drops. For a domain that
    /// reclaims on its own, see [`Srcu::with_reclaimer`].
    ///
    /// ```
    /// let d = maple_rcu::srcu::Srcu::new();
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// d.call(move || tx.send(()).unwrap());
    /// assert!(rx.try_recv().is_err()); // queued, not run
    /// d.barrier().unwrap();
    /// assert!(rx.try_recv().is_ok());
    /// ```
    pub fn new() -> Self {
        Self::with_barrier(Barrier::new(), Registration::manual())
    }

    /// A shared domain driven by the process-wide reclaimer thread: with no
    /// reader in the way, a callback (or retired value) runs, with no further
    /// call, within one wake-up of that thread or its 1 ms pause between
    /// passes (measured max 5 ms on a loaded machine; we state ≤ 100 ms), and
    /// at most 16 ms (its longest backoff) plus scheduling after the last
    /// reader that held it up ends ([DESIGN §3.7](crate::docs::design#37-where-user-code-runs)). This is the
    /// domain every [`MapleTree::new`](crate::MapleTree::new) owns; share one
    /// between trees with [`MapleTree::with_domain`](crate::MapleTree::with_domain).
    ///
    /// One thread serves every such domain in the process. It is started by
    /// the first callback queued on any of them, sleeps on a condvar while
    /// nothing is pending, and holds each domain only through a `Weak`
    /// while it has pending work: dropping the last `Arc` ends the
    /// registration (if the reclaimer is visiting the domain at that moment,
    /// the domain is dropped, and its remaining callbacks run, on the
    /// reclaimer).
    ///
    /// Callbacks then also run on the reclaimer thread, under `catch_unwind`;
    /// a panic is kept and returned by the domain's next [`Srcu::poll`] or
    /// [`Srcu::barrier`]. `poll`, `barrier` and `synchronize` keep working
    /// (a `poll` that finds the reclaimer running this domain's callbacks
    /// returns at once). The reclaimer holds no lock while a callback runs,
    /// so a callback may call `synchronize` (on any domain), queue callbacks,
    /// or write to a tree; but **a callback that blocks delays every domain's
    /// reclamation** until it returns.
    ///
    /// ```
    /// let d = maple_rcu::srcu::Srcu::with_reclaimer();
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// d.call(move || tx.send(()).unwrap());
    /// // No poll: the reclaimer runs it.
    /// rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    /// ```
    #[cfg(not(loom))]
    pub fn with_reclaimer() -> crate::sync::Arc<Srcu> {
        crate::sync::Arc::new_cyclic(|me| {
            Self::with_barrier(Barrier::new(), Registration::auto(me.clone()))
        })
    }

    /// Whether the process-wide reclaimer drives this domain
    /// ([`Srcu::with_reclaimer`]).
    ///
    /// ```
    /// assert!(!maple_rcu::srcu::Srcu::new().is_auto());
    /// ```
    pub fn is_auto(&self) -> bool {
        self.gp.reclaimer.is_auto()
    }

    /// A shared domain with a helper thread that calls [`Srcu::poll`] every
    /// millisecond, so callbacks run and memory is reclaimed even when no
    /// caller drives progress.
    ///
    /// The thread holds only a weak reference. It exits within a millisecond
    /// of the last `Arc` being dropped (if that happens while it polls, the
    /// domain is dropped, and its pending callbacks run, on the helper thread).
    ///
    /// Callbacks that panic on the helper thread are caught; their payloads
    /// are kept in the domain and returned by the next [`Srcu::poll`] or
    /// [`Srcu::barrier`] on any thread. Panics in the domain's final drop on
    /// the helper thread have nobody to go to and are discarded.
    ///
    /// # Panics
    /// If the thread cannot be spawned.
    ///
    /// ```
    /// let d = maple_rcu::srcu::Srcu::with_helper_thread();
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// d.call(move || tx.send(()).unwrap());
    /// // No poll: the helper thread runs it.
    /// rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    /// ```
    #[cfg(not(loom))]
    pub fn with_helper_thread() -> crate::sync::Arc<Srcu> {
        use crate::sync::{Arc, Weak};
        let domain = Arc::new(Self::new());
        let weak: Weak<Srcu> = Arc::downgrade(&domain);
        thread::Builder::new()
            .name("maple-rcu-srcu-helper".into())
            .spawn(move || {
                while let Some(d) = weak.upgrade() {
                    d.try_advance(Start::Always);
                    d.run_ready(&mut Vec::new(), true);
                    // If ours was the last `Arc`, this drops the domain, which
                    // runs what is left; a panic there has no one to go to.
                    let _ = crate::sync::catch_unwind(move || drop(d));
                    thread::backoff_sleep(Duration::from_millis(1));
                }
            })
            .expect("spawn the Srcu helper thread");
        domain
    }

    /// A domain whose readers use `fence(SeqCst)` even where `membarrier` is
    /// available (the portable fallback), for comparing the two in benches.
    #[doc(hidden)]
    pub fn with_fence_readers() -> Self {
        Self::with_barrier(Barrier::symmetric(), Registration::manual())
    }

    /// Spaces opportunistic grace-period starts (those of commits, queueing
    /// calls and polls: not `synchronize`, `barrier` or the background
    /// threads) at least `gap` apart, unless many destructors wait; 200 µs
    /// by default. Each grace period costs two `membarrier` calls, which
    /// interrupt every CPU running a thread of the process; a longer gap
    /// issues fewer of them and keeps retired memory longer (about `gap`'s
    /// worth of retirements). The address spaces of [`crate::mm`] use 1 ms
    /// (DESIGN §4.8, "Grace-period spacing").
    pub fn set_min_gp_gap(&self, gap: Duration) {
        let ns = u64::try_from(gap.as_nanos()).unwrap_or(u64::MAX);
        #[cfg(not(loom))]
        {
            // Relaxed: a tuning value read at each spaced start; no data
            // is published through it.
            self.gp.min_gap_ns.store(ns, Ordering::Relaxed);
        }
        #[cfg(loom)]
        let _ = ns;
    }

    /// Whether this domain's readers rely on `membarrier` (compiler fences only).
    #[doc(hidden)]
    pub fn uses_membarrier(&self) -> bool {
        self.barrier.is_asymmetric()
    }

    fn with_barrier(barrier: Barrier, reclaimer: Registration) -> Self {
        Self {
            idx: AtomicUsize::new(0),
            barrier,
            slots: SlotTable::new(),
            gp: Box::new(GpSide {
                gp_seq: AtomicU64::new(0),
                gp_lock: Mutex::new(LastStart::default()),
                queue: Mutex::new(Queue::default()),
                invoke: Mutex::new(Vec::new()),
                done: AtomicU64::new(0),
                unclaimed: Mutex::new(Vec::new()),
                runner: AtomicUsize::new(0),
                reclaimer,
                #[cfg(not(loom))]
                min_gap_ns: AtomicU64::new(MIN_GP_GAP.as_nanos() as u64),
            }),
        }
    }

    /// Enter a read-side critical section, which lasts until the guard is
    /// dropped. Never blocks; O(1) (a per-thread counter bump and a
    /// compiler fence where `membarrier` is available). The guard may be
    /// held across blocking calls or `.await` and dropped on another thread.
    ///
    /// While this thread holds it, **do not** call [`Srcu::synchronize`] or
    /// [`Srcu::barrier`] on this domain (nor anything that waits for its
    /// readers, such as `MapleTree::remove_wait` on a tree using it): they
    /// would wait for this guard, forever.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    /// let d = maple_rcu::srcu::Srcu::new();
    /// let freed = Arc::new(AtomicBool::new(false));
    /// let g = d.read();
    /// let f = freed.clone();
    /// d.call(move || f.store(true, Ordering::Relaxed));
    /// d.poll().unwrap(); // the reader holds the grace period up
    /// assert!(!freed.load(Ordering::Relaxed));
    /// drop(g);
    /// d.barrier().unwrap();
    /// assert!(freed.load(Ordering::Relaxed));
    /// ```
    #[inline]
    pub fn read(&self) -> SrcuGuard<'_> {
        // Relaxed: which index a reader uses matters only for progress, never
        // for safety (every grace period scans both indices, §3).
        let idx = self.idx.load(Ordering::Relaxed) & 1;
        self.slots.bump(Counter::Lock, idx);
        // B: orders the lock increment before the critical section's loads;
        // pairs with the heavy barrier A of every scan (store buffering).
        self.barrier.light();
        SrcuGuard { domain: self, idx }
    }

    /// Wait until every reader that began before this call has ended.
    ///
    /// **Deadlocks** if called while the calling thread holds a guard of
    /// this domain (it would wait for itself forever), including a
    /// [`ReadGuard`](crate::ReadGuard) of a tree that uses this domain. Runs
    /// no callback, so a callback may call it (when `poll` or `barrier` runs
    /// the callback on a thread that holds no guard). Blocks for as long as
    /// the longest reader that began before it (spinning, then sleeping with
    /// a backoff).
    ///
    /// ```
    /// let d = maple_rcu::srcu::Srcu::new();
    /// let g = d.read();
    /// std::thread::scope(|s| {
    ///     let h = s.spawn(|| d.synchronize()); // waits for `g`
    ///     std::thread::sleep(std::time::Duration::from_millis(10));
    ///     assert!(!h.is_finished());
    ///     drop(g);
    ///     h.join().unwrap();
    /// });
    /// ```
    pub fn synchronize(&self) {
        let need = self.request(None);
        let mut backoff = Backoff::default();
        while self.try_advance(Start::Always) < need {
            backoff.snooze();
        }
    }

    /// Run `f` after a grace period. Never blocks, and never runs `f` or any
    /// other callback itself: `f` runs later in [`Srcu::poll`],
    /// [`Srcu::barrier`], the helper thread, or the domain's drop, under
    /// `catch_unwind` (a panic is reported there). So `f` may call
    /// `synchronize`, or take locks the caller of `call` holds.
    ///
    /// `f` may run on any thread that drives this domain, hence `Send`, and
    /// after the caller's borrows have ended, hence `'static`:
    ///
    /// ```compile_fail,E0277
    /// let d = maple_rcu::srcu::Srcu::new();
    /// let rc = std::rc::Rc::new(1);
    /// d.call(move || drop(rc));
    /// ```
    ///
    /// With `std::sync::Arc` in place of `Rc`, the same compiles:
    ///
    /// ```
    /// let d = maple_rcu::srcu::Srcu::new();
    /// let rc = std::sync::Arc::new(1);
    /// let seen = rc.clone();
    /// d.call(move || drop(rc));
    /// assert_eq!(std::sync::Arc::strong_count(&seen), 2); // not run yet
    /// d.barrier().unwrap();
    /// assert_eq!(std::sync::Arc::strong_count(&seen), 1);
    /// ```
    pub fn call<F: FnOnce() + Send + 'static>(&self, f: F) {
        self.enqueue(Entry::One(Deferred::from_fn(f)));
    }

    /// Drop `value` after a grace period. Never blocks, and runs no drop or
    /// callback itself: the drop runs where [`Srcu::call`]'s callbacks do.
    ///
    /// The value may be dropped on any thread that drives this domain, hence
    /// `Send`:
    ///
    /// ```compile_fail,E0277
    /// let d = maple_rcu::srcu::Srcu::new();
    /// d.retire(Box::new(std::rc::Rc::new(1)));
    /// ```
    ///
    /// ```
    /// let d = maple_rcu::srcu::Srcu::new();
    /// let a = std::sync::Arc::new(1);
    /// d.retire(Box::new(a.clone()));
    /// d.barrier().unwrap(); // the retired clone is dropped by now
    /// assert_eq!(std::sync::Arc::strong_count(&a), 1);
    /// ```
    pub fn retire<T: Send + 'static>(&self, value: Box<T>) {
        self.enqueue(Entry::One(Deferred::from_box(value)));
    }

    /// Wait until every callback queued before this call has run (here or
    /// on another thread), running ready callbacks meanwhile.
    ///
    /// **Deadlocks** if called from a callback of this domain, or while this
    /// thread holds one of its guards (including a
    /// [`ReadGuard`](crate::ReadGuard) of a tree that uses it).
    ///
    /// # Errors
    /// [`Panicked`] with the payloads of the callbacks that panicked while
    /// *this* call ran them (and of any the helper thread caught since the
    /// last report). Every callback queued before the call has still run:
    /// a panic skips and leaks nothing.
    ///
    /// ```
    /// let d = maple_rcu::srcu::Srcu::new();
    /// d.call(|| panic!("boom"));
    /// d.call(|| ());
    /// let e = d.barrier().unwrap_err(); // both ran; one panicked
    /// assert_eq!((e.count(), e.message()), (1, Some("boom")));
    /// assert!(d.barrier().is_ok());
    /// ```
    pub fn barrier(&self) -> Result<(), Panicked> {
        let target = lock(&self.gp.queue).pushed;
        let mut backoff = Backoff::default();
        let mut panics = Vec::new();
        loop {
            self.try_advance(Start::Always);
            self.run_ready(&mut panics, false);
            // Acquire: pairs with the Release `done` increment in
            // `run_ready`, so the callbacks' effects are visible to our caller.
            if self.gp.done.load(Ordering::Acquire) >= target {
                return self.report(panics);
            }
            backoff.snooze();
        }
    }

    /// Advance grace periods without blocking and run ready callbacks (unless
    /// another thread is already running them).
    ///
    /// The callbacks run on this thread, so they may block it: one that calls
    /// `synchronize` waits for every reader, including a guard this thread
    /// holds. Poll from a thread that holds no guard of this domain if your
    /// callbacks may do that.
    ///
    /// # Errors
    /// [`Panicked`] with the payloads of the callbacks that panicked while
    /// this call ran them (and of any the helper thread caught since the last
    /// report). Every other ready callback has still run.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    /// static RAN: AtomicUsize = AtomicUsize::new(0);
    /// let d = maple_rcu::srcu::Srcu::new();
    /// d.call(|| {
    ///     RAN.fetch_add(1, Relaxed);
    /// });
    /// // No reader: a few polls complete the grace period (each advances it
    /// // as far as readers allow) and run the callback. Never blocks.
    /// for _ in 0..10 {
    ///     d.poll().unwrap();
    /// }
    /// assert_eq!(RAN.load(Relaxed), 1);
    /// ```
    pub fn poll(&self) -> Result<(), Panicked> {
        self.poll_as(Start::Always)
    }

    /// [`Srcu::poll`] for callers that poll often on their own schedule
    /// (the mm writers): it starts a new grace period only if the last one
    /// started at least `MIN_GP_GAP` ago or many destructors wait, and
    /// otherwise only continues or completes the current one.
    ///
    /// # Errors
    /// As [`Srcu::poll`].
    pub(crate) fn poll_lazy(&self) -> Result<(), Panicked> {
        self.poll_as(Start::Spaced)
    }

    fn poll_as(&self, how: Start) -> Result<(), Panicked> {
        let mut panics = Vec::new();
        self.try_advance(how);
        self.run_ready(&mut panics, false);
        self.report(panics)
    }

    /// `panics` plus the helper thread's, as the result of `poll`/`barrier`.
    fn report(&self, mut panics: Vec<Payload>) -> Result<(), Panicked> {
        {
            let mut unclaimed = lock(&self.gp.unclaimed);
            if !unclaimed.is_empty() {
                panics.append(&mut unclaimed);
            }
        }
        Panicked::from_payloads(panics).map_or(Ok(()), Err)
    }

    /// Queue a batch of raw destructors behind one grace period. Never blocks,
    /// runs nothing; may advance grace periods opportunistically.
    ///
    /// # Safety
    /// Each `Deferred` satisfies the requirements of [`Deferred::new`].
    #[allow(dead_code, reason = "the tree's commit path (issue 2) is its user")]
    pub(crate) unsafe fn defer_batch(&self, batch: Vec<Deferred>) {
        if !batch.is_empty() {
            self.enqueue(Entry::Batch(batch));
        }
    }

    /// Queue one raw destructor behind a grace period. Never blocks, runs
    /// nothing; may advance grace periods opportunistically. Returns the
    /// number of the grace period it waits for, as [`Srcu::start_poll`].
    ///
    /// # Safety
    /// `d` satisfies the requirements of [`Deferred::new`].
    pub(crate) unsafe fn defer(&self, d: Deferred) -> u64 {
        self.request(Some(Entry::One(d)))
    }

    /// Requests a grace period that starts after this call and returns its
    /// number (a cookie for [`Srcu::gp_passed`]; Linux's
    /// `start_poll_synchronize_srcu`). Never blocks, runs nothing. Memory
    /// unlinked before this call may be reused once `gp_passed(cookie)`.
    pub(crate) fn start_poll(&self) -> u64 {
        self.request(None)
    }

    /// Whether grace period `cookie` (from [`Srcu::start_poll`] or
    /// [`Srcu::defer`]) has completed (Linux's `poll_state_synchronize_srcu`).
    /// Does not advance anything: see [`Srcu::advance`].
    #[inline]
    pub(crate) fn gp_passed(&self, cookie: u64) -> bool {
        // Acquire: pairs with the Release completion store in `try_advance`:
        // both scans of that grace period happen before the caller's reuse.
        completed(self.gp.gp_seq.load(Ordering::Acquire)) >= cookie
    }

    /// Destructors waiting in the queue (for tests elsewhere in the crate).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn pending(&self) -> usize {
        lock(&self.gp.queue).pending
    }

    /// Advances grace periods as far as readers allow. Never blocks, runs
    /// nothing.
    pub(crate) fn advance(&self) {
        self.try_advance(Start::Always);
    }

    /// [`Srcu::advance`] for opportunistic callers: starts a new grace
    /// period only as `poll_lazy` does, unless the caller's own garbage is
    /// `pressed` (the tree's node batches, which the domain does not count).
    pub(crate) fn advance_spaced(&self, pressed: bool) {
        self.advance_opportunistic(if pressed {
            Start::Always
        } else {
            Start::Spaced
        });
    }

    /// Runs `f` with this thread's *opportunistic* advances of this domain
    /// (`request` crossing a multiple of `POLL_EVERY`, `advance_spaced`)
    /// postponed, then makes the postponed advance, the strongest asked
    /// for, once `f` has returned. For a caller that queues garbage under a
    /// lock other threads wait for (the mm writers' tree commits): an
    /// advance may fence with `membarrier`, about 11 µs on the 2-vCPU VM,
    /// and made inside the commit it held the tree's writer mutex that
    /// long (issue 11, sixth session). Delaying an advance is always safe
    /// (S5 tags each entry with a grace period that starts after it was
    /// queued, whenever that is); the delay here ends with `f`. Nests: an
    /// inner call leaves the advance to the outermost one.
    pub(crate) fn postponing<R>(&self, f: impl FnOnce() -> R) -> R {
        let me = ptr::from_ref(self) as usize;
        let outer = POSTPONE.with(|p| {
            let outer = p.get();
            if outer.0 == 0 {
                p.set((me, NONE));
            }
            outer
        });
        let r = f();
        if outer.0 == 0 {
            let (_, how) = POSTPONE.with(|p| p.replace((0, NONE)));
            match how {
                NONE => {}
                SPACED => {
                    self.try_advance(Start::Spaced);
                }
                _ => {
                    self.try_advance(Start::Always);
                }
            }
        }
        r
    }

    /// An opportunistic advance: made now, or recorded for the end of
    /// this thread's `postponing` call on this domain.
    fn advance_opportunistic(&self, how: Start) {
        let me = ptr::from_ref(self) as usize;
        let code = if how == Start::Always { ALWAYS } else { SPACED };
        let postponed = POSTPONE
            .try_with(|p| {
                let (d, prev) = p.get();
                if d != me {
                    return false;
                }
                p.set((d, prev.max(code)));
                true
            })
            .unwrap_or(false);
        if !postponed {
            self.try_advance(how);
        }
    }

    /// Registers interest in the first grace period that starts after now and
    /// returns its number; pushes `entry` tagged with it (S5).
    fn request(&self, entry: Option<Entry>) -> u64 {
        // Spinning first (S13): held for a push or a pop of a ready prefix,
        // never across an allocation's arena lock once warm, so a park (a
        // millisecond on this VM) would cost far more than the wait.
        let mut q = lock_spinning(&self.gp.queue);
        // Relaxed: the Idle→Scan1 store is made under this same lock (S4), so
        // the lock orders it against this load; a completion (stored outside
        // it) seen late only makes the snapshot conservative.
        let need = snapshot(self.gp.gp_seq.load(Ordering::Relaxed));
        q.requested = q.requested.max(need);
        if let Some(entry) = entry {
            let before = q.pending;
            q.pending += entry.len();
            q.pushed += 1;
            q.entries.push_back((need, entry));
            let after = q.pending;
            let kick = !q.kicked && self.gp.reclaimer.is_auto();
            q.kicked |= kick;
            drop(q);
            if kick {
                // Outside the queue lock: the reclaimer's list lock is
                // never nested with a domain lock. Runs nothing (S11).
                self.gp.reclaimer.kick();
            }
            if before / POLL_EVERY != after / POLL_EVERY {
                // Advance only: never run a callback here (S11).
                self.advance_opportunistic(Start::Spaced);
            }
        }
        need
    }

    fn enqueue(&self, entry: Entry) {
        self.request(Some(entry));
    }

    /// Advances the grace-period state machine as far as readers allow,
    /// without blocking, starting a new grace period as `how` allows.
    /// Returns the number of completed grace periods.
    fn try_advance(&self, how: Start) -> u64 {
        let gp = &*self.gp;
        let Some(mut last_start) = try_lock(&gp.gp_lock) else {
            // Acquire: pairs with the Release completion store below, so a
            // caller that sees its grace period complete is ordered after
            // the scans that ended it.
            return completed(gp.gp_seq.load(Ordering::Acquire));
        };
        // What this call must serve: everything requested when it first
        // finds the state machine idle (which includes every request made
        // before the call). An `Always` call starts grace periods ignoring
        // the spacing only until that is covered; requests that arrive
        // while it runs are served as `Spaced` (S14: an unbounded chase of
        // concurrent requests chained one grace period after another).
        let mut target = None;
        loop {
            // Relaxed: written only under gp_lock, which we hold.
            let seq = gp.gp_seq.load(Ordering::Relaxed);
            match seq & PHASE_MASK {
                IDLE => {
                    let q = lock_spinning(&gp.queue);
                    let target = *target.get_or_insert(q.requested);
                    let how = if completed(seq) >= target {
                        Start::Spaced
                    } else {
                        how
                    };
                    if q.requested <= completed(seq)
                        || !last_start.may_start(how, q.pending, gp.min_gap())
                    {
                        return completed(seq);
                    }
                    // Relaxed, under the queue lock (S4): every entry pushed
                    // before this point is covered by this grace period; every
                    // later one sees Scan1 and waits for the next.
                    gp.gp_seq.store(seq + 1, Ordering::Relaxed);
                }
                SCAN1 => {
                    // Relaxed: idx is written only under gp_lock.
                    let cur = self.idx.load(Ordering::Relaxed);
                    if !self.drained((cur & 1) ^ 1) {
                        return completed(seq);
                    }
                    // The flip: readers from now on use the drained index, so
                    // the old one can only drain (progress; no ordering is
                    // needed for safety, §3).
                    self.idx.store(cur.wrapping_add(1), Ordering::Relaxed);
                    gp.gp_seq.store(seq + 1, Ordering::Relaxed);
                }
                SCAN2 => {
                    let old = (self.idx.load(Ordering::Relaxed) & 1) ^ 1;
                    if !self.drained(old) {
                        return completed(seq);
                    }
                    // Release: pairs with the Acquire loads of gp_seq above
                    // and in `run_ready`: both scans happen before whatever
                    // the waiter frees.
                    gp.gp_seq.store(seq - SCAN2 + 4, Ordering::Release);
                }
                _ => unreachable!("gp_seq phase"),
            }
        }
    }

    /// Whether every reader counted on index `idx` has finished (S7).
    ///
    /// A scan that fails costs the heavy barrier (a `membarrier` that
    /// interrupts every CPU running a thread of the process) for nothing,
    /// and with a reader pinned most of the time (a second writer thread of
    /// an address space) most scans fail. So the lock sum is first read
    /// without the barrier: if it already differs from the unlock sum, the
    /// index is not drained now and we return without fencing (§3.3, "the
    /// pre-check"). The decision "drained" is still made only by the unlock
    /// sum read before **A** and the lock sum read after it, as without the
    /// pre-check; that read can only make a scan give up earlier.
    fn drained(&self, idx: usize) -> bool {
        let unlocks = self.slots.sum(Counter::Unlock, idx);
        // The pre-check: a plain read, no ordering needed (it can only
        // return "not drained", which the protocol allows at any time).
        if self.slots.sum(Counter::Lock, idx) != unlocks {
            return false;
        }
        // A: pairs with the readers' B (a lock not counted below was made
        // visible after A, so that reader sees every store before A) and C
        // (an unlock counted above has its lock counted below, and the
        // reader's critical section happens before our caller's frees).
        self.barrier.heavy();
        let locks = self.slots.sum(Counter::Lock, idx);
        locks == unlocks
    }

    /// Runs the callbacks whose grace period has completed, in queue order,
    /// unless another thread is already doing so; collects their panics
    /// into `panics`, or with `keep` into `unclaimed` (for the next `poll` or
    /// `barrier`: the reclaimer and helper threads have no caller). Called
    /// only from `poll`, `barrier`, the reclaimer and the helper thread (S11).
    fn run_ready(&self, panics: &mut Vec<Payload>, keep: bool) {
        let gp = &*self.gp;
        let Some(mut ready) = try_lock(&gp.invoke) else {
            return;
        };
        // Relaxed: read back only by this thread (`drain` on this thread
        // sees its own store; any other thread sees a value that is not its
        // own tag, which is all it needs).
        gp.runner.store(thread_tag(), Ordering::Relaxed);
        loop {
            // Acquire: pairs with the Release completion store in
            // `try_advance` (S6: a callback runs after its grace period's scans).
            let done_gps = completed(gp.gp_seq.load(Ordering::Acquire));
            {
                let mut q = lock_spinning(&gp.queue);
                let n = q
                    .entries
                    .iter()
                    .take_while(|(need, _)| *need <= done_gps)
                    .count();
                if n == 0 {
                    break;
                }
                // Into the invoker's buffer (kept across calls, S13): no
                // allocation under the queue lock once warm.
                ready.extend(q.entries.drain(..n).map(|(_, e)| e));
                q.pending -= ready.iter().map(Entry::len).sum::<usize>();
                if q.entries.is_empty() && q.entries.capacity() > QUEUE_KEEP {
                    // After a burst (a reader or a busy machine held grace
                    // periods back), do not keep the peak's memory for the
                    // domain's lifetime (S12).
                    q.entries.shrink_to(QUEUE_KEEP);
                }
            }
            // Run outside the queue lock (S9): a callback may call into us.
            // Each destructor is caught (S11), so every entry completes.
            for entry in ready.drain(..) {
                entry.run(panics);
                if keep && !panics.is_empty() {
                    // Before `done`: a `barrier` that sees this entry done
                    // also sees its panic (the unclaimed lock orders them).
                    lock(&gp.unclaimed).append(panics);
                }
                // Release: pairs with the Acquire load in `barrier`.
                gp.done.fetch_add(1, Ordering::Release);
            }
        }
        if ready.capacity() > QUEUE_KEEP {
            ready.shrink_to(QUEUE_KEEP);
        }
        gp.runner.store(0, Ordering::Relaxed);
    }

    /// One visit of the reclaimer thread: advances grace periods, runs the
    /// ready entries (panics kept for the next `poll`/`barrier`), and clears
    /// `kicked` if nothing is left. Returns (still pending, made progress).
    #[cfg(not(loom))]
    fn reclaimer_visit(&self) -> (bool, bool) {
        let gp = &*self.gp;
        // Relaxed: only compared for the reclaimer's backoff.
        let before = gp.done.load(Ordering::Relaxed);
        let completed_before = completed(gp.gp_seq.load(Ordering::Relaxed));
        let completed_after = self.try_advance(Start::Always);
        self.run_ready(&mut Vec::new(), true);
        let moved =
            completed_after != completed_before || gp.done.load(Ordering::Relaxed) != before;
        let mut q = lock(&gp.queue);
        if q.entries.is_empty() {
            // Under the queue lock: the next push sees it clear and kicks.
            q.kicked = false;
            (false, moved)
        } else {
            (true, moved)
        }
    }

    /// Runs every queued entry now, without waiting for grace periods, in
    /// queue order after the entries another thread is running (it waits for
    /// that thread, unless it is this one: then the entries it holds run
    /// when our caller returns to it). Returns their panics and the
    /// unclaimed ones. For the drop of a tree that owns this domain, so that
    /// its removed values never outlive it even while the reclaimer holds a
    /// reference to the domain.
    ///
    /// Blocks while another thread runs this domain's callbacks (one of them
    /// must not wait for our caller).
    ///
    /// # Safety
    /// 1. No reader of this domain exists, and none will begin.
    pub(crate) unsafe fn drain(&self) -> Vec<Payload> {
        let gp = &*self.gp;
        let _invoking = if gp.runner.load(Ordering::Relaxed) == thread_tag() {
            None
        } else {
            Some(lock(&gp.invoke))
        };
        let entries = {
            let mut q = lock(&gp.queue);
            q.pending = 0;
            std::mem::take(&mut q.entries)
        };
        let mut panics = std::mem::take(&mut *lock(&gp.unclaimed));
        // Requirement 1: nothing a queued entry frees is reachable by a reader.
        for (_, entry) in entries {
            entry.run(&mut panics);
            // Release: pairs with the Acquire load in `barrier`.
            gp.done.fetch_add(1, Ordering::Release);
        }
        panics
    }
}

/// A nonzero number that no other live thread returns (the address of a
/// thread-local), or `usize::MAX` while this thread's thread-locals are
/// being destroyed.
fn thread_tag() -> usize {
    crate::sync::thread_local! {
        static TAG: u8 = const { 0 };
    }
    TAG.try_with(|t| ptr::from_ref(t) as usize)
        .unwrap_or(usize::MAX)
}

impl Drop for Srcu {
    /// Runs every pending entry, in queue order, each under `catch_unwind`;
    /// then re-raises the first panic, unless this thread is already
    /// unwinding (then the payloads are dropped: a second panic would abort).
    fn drop(&mut self) {
        // No guard is alive: every `SrcuGuard` borrows the domain. So no reader
        // is inside, and every pending entry may run now, in queue order.
        let entries = std::mem::take(&mut lock(&self.gp.queue).entries);
        let mut panics = std::mem::take(&mut *lock(&self.gp.unclaimed));
        for (_, entry) in entries {
            entry.run(&mut panics);
        }
        resume_first(panics);
    }
}

impl Drop for SrcuGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // C: orders the critical section before the unlock increment; pairs
        // with the heavy barrier A of the scan that counts it.
        self.domain.barrier.light();
        self.domain.slots.bump(Counter::Unlock, self.idx);
    }
}

// SAFETY: the RCU guarantee GracePeriod asks for is Srcu's own: a grace
// period requested by `start_poll`/`defer` starts after the request (S5) and
// completes only after both indexes drained (S7, S8), i.e. after every guard
// that began before it ended; completion is a Release store of `gp_seq` that
// `gp_passed` and `run_ready` load with Acquire (§3.3). None of the
// non-blocking methods runs an entry (S11).
unsafe impl crate::platform::GracePeriod for Srcu {
    fn read_lock(&self) -> usize {
        let g = self.read();
        let idx = g.idx;
        // The section stays open until `read_unlock` (S2: one unlock per lock).
        core::mem::forget(g);
        idx
    }
    unsafe fn read_unlock(&self, token: usize) {
        // The caller's requirement: `token` is the index of one open section,
        // released once; the guard's drop counts its unlock (S2).
        drop(SrcuGuard {
            domain: self,
            idx: token,
        });
    }
    fn start_poll(&self) -> u64 {
        Srcu::start_poll(self)
    }
    fn gp_passed(&self, cookie: u64) -> bool {
        Srcu::gp_passed(self, cookie)
    }
    fn advance(&self) {
        Srcu::advance(self)
    }
    fn advance_spaced(&self, pressed: bool) {
        Srcu::advance_spaced(self, pressed)
    }
    fn defer(&self, d: Deferred) -> u64 {
        // SAFETY: `d` was made by `Deferred::new`, whose caller discharged
        // its requirements (the only way to make one).
        unsafe { Srcu::defer(self, d) }
    }
    fn poll(&self) -> Result<(), Panicked> {
        Srcu::poll(self)
    }
    fn synchronize(&self) {
        Srcu::synchronize(self)
    }
    /// Runs what is ready, like `poll`: through this trait the domain may
    /// be shared, so `Srcu::drain` (which runs everything) is not allowed.
    unsafe fn drain(&self) -> Vec<Payload> {
        self.poll()
            .map_or_else(Panicked::into_payloads, |()| Vec::new())
    }
}

/// Waiting in `synchronize`/`barrier`: yield a few times, then sleep with
/// exponential backoff up to 1 ms (under loom every step is a yield).
#[derive(Default)]
struct Backoff {
    step: u32,
}

impl Backoff {
    fn snooze(&mut self) {
        if self.step < 4 {
            thread::yield_now();
        } else {
            let us = 1u64 << (self.step - 4).min(10);
            thread::backoff_sleep(Duration::from_micros(us));
        }
        self.step = self.step.saturating_add(1);
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
