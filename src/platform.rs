//! What the tree core takes from its environment: a grace-period source and a
//! writer lock ([DESIGN §2.9](crate::docs::design#29-no_std--alloc-the-tree-core)).
//!
//! With the `std` feature (the default) a tree uses the crate's own
//! [`Srcu`](crate::srcu::Srcu) domain and a `std` mutex, exactly as before:
//! [`Domain`] *is* `Srcu` and nothing here costs anything. Without `std` the
//! crate is `#![no_std]` + `alloc`, and the embedder (a kernel, a hypervisor)
//! passes both to [`MapleTree::with_platform`](crate::MapleTree): an
//! `Arc<dyn GracePeriod>` over its own RCU or epoch scheme and a
//! `Box<dyn RawLock>` over its own lock. One virtual call per `pin`, unpin and
//! lock is the price, in no_std builds only.
//!
//! The tree names its domain, guard and lock only through [`Domain`],
//! [`DomainGuard`] and the crate-private `Lock`, so no impl block of the tree
//! carries a type parameter for them.

/// The panic report of [`GracePeriod::poll`] and [`GracePeriod::drain`].
pub use crate::panicked::{Panicked, Payload};
use alloc::vec::Vec;

/// Queueing this many more callbacks (or batched destructors) while some are
/// pending advances grace periods opportunistically (it runs nothing, S11).
/// The tree uses the same period for its node garbage. Small under loom so
/// that models reach that path.
#[cfg(not(loom))]
pub(crate) const POLL_EVERY: usize = 64;
#[cfg(loom)]
pub(crate) const POLL_EVERY: usize = 2;

/// A type-erased destructor to run once after a grace period: what the tree
/// hands to [`GracePeriod::defer`] for removed values. Only the crate makes
/// one; an implementation queues it and calls [`Deferred::run`] exactly once.
pub struct Deferred {
    data: *mut (),
    call: unsafe fn(*mut ()),
}

// SAFETY: `Deferred::new`'s requirement 1 says the pointee may be dropped on any thread.
unsafe impl Send for Deferred {}

impl Deferred {
    /// # Safety
    /// 1. `call(data)` may be run once, on any thread.
    /// 2. Whatever `data` refers to stays valid until the owning domain runs
    ///    the callback or is dropped.
    pub(crate) unsafe fn new(data: *mut (), call: unsafe fn(*mut ())) -> Self {
        Self { data, call }
    }

    /// Runs the destructor (user code: a removed value's `Drop`). Run it only
    /// after the grace period [`GracePeriod::defer`] returned has completed,
    /// and not under a lock that the value's `Drop` could need
    /// ([DESIGN §3.7](crate::docs::design#37-where-user-code-runs)).
    pub fn run(self) {
        // SAFETY: requirement 1 of `Deferred::new`: run exactly once (self is consumed).
        unsafe { (self.call)(self.data) }
    }
}

impl core::fmt::Debug for Deferred {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Deferred").finish_non_exhaustive()
    }
}

/// A grace-period source for a tree built without `std`: exactly the calls
/// the tree makes on its domain (with `std` the same calls go to
/// [`Srcu`](crate::srcu::Srcu), which implements this trait too).
///
/// Cookies are `u64` grace-period numbers that never wrap (§2.9 "Counters").
///
/// # Safety
/// The implementation promises the RCU guarantee the tree's reclamation rests
/// on (I7): a grace period requested by [`start_poll`](Self::start_poll) or
/// [`defer`](Self::defer) completes only after every read-side section that
/// began before the request ended ([`read_lock`](Self::read_lock) ..
/// [`read_unlock`](Self::read_unlock)), and the completion observed by
/// [`gp_passed`](Self::gp_passed) returning `true` (or by running a deferred
/// entry) happens-after those sections' ends (Acquire on the observer's side,
/// Release or stronger at completion). A `read_lock` that returns also
/// orders the reader after every store that happened before a completed
/// grace period's start (the tree publishes with a Release store of its root
/// before requesting one, O2). `read_lock`, `read_unlock`, `start_poll`,
/// `gp_passed`, `advance` and `defer` never block and never run a deferred
/// entry (user code, S11).
pub unsafe trait GracePeriod: Send + Sync {
    /// Enters a read-side section (`MapleTree::pin`); the token goes back to
    /// `read_unlock`. Never blocks; may nest.
    fn read_lock(&self) -> usize;
    /// Leaves the section `token` was returned for. The tree may call it on
    /// another thread than `read_lock` (its guards are `Send`).
    ///
    /// # Safety
    /// `token` came from `read_lock` on this domain and is released once.
    unsafe fn read_unlock(&self, token: usize);
    /// Requests a grace period that starts after this call; returns its
    /// cookie (Linux `start_poll_synchronize_rcu`). Node garbage waits on it.
    fn start_poll(&self) -> u64;
    /// Whether grace period `cookie` has completed (Linux
    /// `poll_state_synchronize_rcu`). Must not advance anything.
    fn gp_passed(&self, cookie: u64) -> bool;
    /// Advances grace periods as far as current readers allow, without
    /// blocking and without running an entry.
    fn advance(&self);
    /// Like [`advance`](Self::advance), for an opportunistic caller (the
    /// tree's commit every `POLL_EVERY` retiring commits): an implementation may
    /// decline to *start* a new grace period if one started recently, unless
    /// `pressed` (the caller's garbage passed its bound). The default is
    /// `advance`.
    fn advance_spaced(&self, pressed: bool) {
        let _ = pressed;
        self.advance();
    }
    /// Queues `d` to run once after a grace period that starts after this
    /// call, and returns that grace period's cookie. Runs nothing now.
    fn defer(&self, d: Deferred) -> u64;
    /// Runs the queued entries whose grace period has passed, on this
    /// thread (`MapleTree::reclaim`). Without `std` nothing is caught, so an
    /// implementation returns `Ok(())` unless it catches panics itself.
    ///
    /// # Errors
    /// [`Panicked`] if an entry panicked (std's `Srcu` catches them).
    fn poll(&self) -> Result<(), Panicked>;
    /// Waits until every read-side section that began before this call has
    /// ended (`Retired::wait`). Deadlocks if this thread is in one.
    fn synchronize(&self);
    /// Called once by the drop of a tree built on this domain, after the
    /// tree freed its own nodes. An implementation that knows it serves that
    /// tree alone may run every queued entry now (no reader can remain); one
    /// that is shared runs only what is ready, or nothing, since other
    /// users' readers may still exist. Entries it leaves run later, which is
    /// why `with_platform` asks for `V: 'static`. Returns caught panics.
    ///
    /// # Safety
    /// No read-side section *of that tree* exists or will begin (every guard
    /// borrows the tree).
    unsafe fn drain(&self) -> Vec<Payload>;
}

/// A writer lock for a tree built without `std`.
///
/// # Safety
/// Mutual exclusion: between a successful `lock`/`try_lock` and the matching
/// `unlock` no other one succeeds, and each `unlock` happens-before the next
/// successful acquisition (Release/Acquire), so the writer state it guards is
/// handed over whole.
pub unsafe trait RawLock: Send + Sync {
    /// Blocks (spins, sleeps) until the lock is held by the caller.
    fn lock(&self);
    /// Takes the lock if free; `true` on success. Never blocks.
    fn try_lock(&self) -> bool;
    /// Releases the lock.
    ///
    /// # Safety
    /// The caller holds it (from `lock` or a successful `try_lock`).
    unsafe fn unlock(&self);
}

#[cfg(feature = "std")]
mod imp {
    /// The tree's grace-period domain: with `std`, the crate's own `Srcu`.
    pub type Domain = crate::srcu::Srcu;
    /// A read-side section of [`Domain`].
    pub type DomainGuard<'a> = crate::srcu::SrcuGuard<'a>;
    /// The writer lock: with `std`, a `std` mutex (poisoning ignored),
    /// taken after a bounded spin (`sync::lock_spinning`).
    pub(crate) use crate::sync::{
        Mutex as Lock, MutexGuard as LockGuard, lock_spinning as lock, try_lock,
    };
}

#[cfg(not(feature = "std"))]
mod imp {
    use super::{GracePeriod, RawLock};
    use crate::sync::UnsafeCell;
    #[cfg(debug_assertions)]
    use crate::sync::{AtomicBool, Ordering};
    use alloc::boxed::Box;
    use core::ops::{Deref, DerefMut};

    /// The tree's grace-period domain: without `std`, the embedder's.
    pub type Domain = dyn GracePeriod;

    /// A read-side section of [`Domain`]; ends when dropped. `Send`
    /// ([`GracePeriod::read_unlock`] may run on another thread).
    #[must_use = "the critical section ends when the guard is dropped"]
    pub struct DomainGuard<'a> {
        domain: &'a dyn GracePeriod,
        token: usize,
    }

    impl dyn GracePeriod {
        /// Enters a read-side section, ended by dropping the guard.
        pub fn read(&self) -> DomainGuard<'_> {
            DomainGuard {
                domain: self,
                token: self.read_lock(),
            }
        }
    }

    impl Drop for DomainGuard<'_> {
        fn drop(&mut self) {
            // SAFETY: read_unlock's requirement: the token came from
            // `read_lock` on this domain (`read`) and the guard releases it
            // once, here.
            unsafe { self.domain.read_unlock(self.token) }
        }
    }

    impl core::fmt::Debug for DomainGuard<'_> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.debug_struct("DomainGuard").finish_non_exhaustive()
        }
    }

    /// A value behind the embedder's [`RawLock`].
    pub(crate) struct Lock<T> {
        raw: Box<dyn RawLock>,
        data: UnsafeCell<T>,
        /// Debug builds: a guard exists. Checks the exclusion the raw lock
        /// and `try_lock` promise (the writer state is `&mut` to one holder).
        #[cfg(debug_assertions)]
        held: AtomicBool,
    }

    // SAFETY: the lock hands `&mut T` to one holder at a time (RawLock's
    // mutual exclusion), possibly on another thread: `T: Send` suffices, as
    // for `std::sync::Mutex`.
    unsafe impl<T: Send> Send for Lock<T> {}
    // SAFETY: as above.
    unsafe impl<T: Send> Sync for Lock<T> {}

    impl<T> Lock<T> {
        pub(crate) fn new(raw: Box<dyn RawLock>, v: T) -> Self {
            Self {
                raw,
                data: UnsafeCell::new(v),
                #[cfg(debug_assertions)]
                held: AtomicBool::new(false),
            }
        }
    }

    /// Holds a [`Lock`]; unlocks when dropped.
    pub(crate) struct LockGuard<'a, T> {
        lock: &'a Lock<T>,
    }

    impl<'a, T> LockGuard<'a, T> {
        /// The guard of a lock this thread has just taken: the only way to
        /// make one, since dropping a guard unlocks.
        fn acquired(lock: &'a Lock<T>) -> Self {
            // Relaxed: a checker only. Under correct exclusion the raw lock's
            // Acquire/Release order every swap; a second holder finds `true`.
            #[cfg(debug_assertions)]
            assert!(
                !lock.held.swap(true, Ordering::Relaxed),
                "writer lock taken while held (RawLock or try_lock broken)"
            );
            Self { lock }
        }
    }

    /// Takes `m` (blocks while another writer holds it).
    pub(crate) fn lock<T>(m: &Lock<T>) -> LockGuard<'_, T> {
        m.raw.lock();
        LockGuard::acquired(m)
    }

    /// Takes `m` if free; `None` if held. A guard is made only on success:
    /// `bool::then_some(guard)` would build it eagerly and, on failure, drop
    /// it, unlocking the lock that another thread holds (two writers then
    /// shared the writer state and retired nodes twice, I7).
    pub(crate) fn try_lock<T>(m: &Lock<T>) -> Option<LockGuard<'_, T>> {
        if m.raw.try_lock() {
            Some(LockGuard::acquired(m))
        } else {
            None
        }
    }

    impl<T> Deref for LockGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            // SAFETY: the guard holds the lock (RawLock's exclusion), so no
            // `&mut T` exists elsewhere while this borrow of the guard lives.
            self.lock.data.with(|p| unsafe { &*p })
        }
    }

    impl<T> DerefMut for LockGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            // SAFETY: as in `deref`; `&mut self` makes this the only borrow.
            self.lock.data.with_mut(|p| unsafe { &mut *p })
        }
    }

    impl<T> Drop for LockGuard<'_, T> {
        fn drop(&mut self) {
            #[cfg(debug_assertions)]
            self.lock.held.store(false, Ordering::Relaxed);
            // SAFETY: unlock's requirement: this guard was made by a
            // successful `lock`/`try_lock` (`acquired`) and unlocks once.
            unsafe { self.lock.raw.unlock() }
        }
    }
}

pub use imp::{Domain, DomainGuard};
pub(crate) use imp::{Lock, LockGuard, lock, try_lock};

/// `Srcu` through the trait, as an embedder's code would drive it: a grace
/// period waits for a section opened by `read_lock`, `defer` runs nothing
/// until `poll`, and `drain` (shared-domain semantics) runs only what is
/// ready.
#[cfg(all(test, feature = "std", not(loom)))]
mod tests {
    use super::{Deferred, GracePeriod};
    use crate::srcu::Srcu;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static RAN: AtomicUsize = AtomicUsize::new(0);

    /// # Safety
    /// None: it only bumps a counter.
    unsafe fn bump(_: *mut ()) {
        RAN.fetch_add(1, Ordering::Relaxed);
    }

    #[test]
    fn srcu_keeps_the_grace_period_contract_through_the_trait() {
        let s = Srcu::new();
        let d: &dyn GracePeriod = &s;
        let token = d.read_lock();
        let c = d.start_poll();
        // SAFETY: Deferred::new: `bump` may run once on any thread and
        // refers to nothing.
        let c2 = d.defer(unsafe { Deferred::new(core::ptr::null_mut(), bump) });
        assert!(c2 >= c);
        for _ in 0..4 {
            d.advance();
        }
        assert!(
            !d.gp_passed(c),
            "a grace period ended under an open section"
        );
        d.poll().unwrap();
        // SAFETY: no tree exists; the one section is still open, so drain
        // (which polls) must leave the entry queued.
        assert!(unsafe { d.drain() }.is_empty());
        assert_eq!(RAN.load(Ordering::Relaxed), 0, "ran under a reader");
        // SAFETY: `token` came from `read_lock` on `d`, released once.
        unsafe { d.read_unlock(token) };
        d.synchronize();
        d.advance();
        assert!(d.gp_passed(c) && d.gp_passed(c2));
        d.poll().unwrap();
        assert_eq!(RAN.load(Ordering::Relaxed), 1);
    }
}
