//! Getting a removed value back: [`Retired`], a handle that yields the value
//! once no reader can see it any more.
//!
//! A value removed by a commit may still be read through any `ReadGuard`
//! pinned before that commit, so it cannot be handed out at once. The handle
//! holds the value's box (as a raw pointer: readers may hold `&V` into it, so
//! no `Box` or `&mut` exists until the grace period has passed) and the
//! number of a grace period of the tree's domain requested after the
//! publishing store ([`Srcu::start_poll`], the cookie). Once that grace period
//! has passed (`gp_passed`, an Acquire load pairing with its Release
//! completion) every reader that could reach the value has ended (I7) and the
//! handle owns it alone.

use super::{ErrorKind, MapleTree, WriteTxn};
use crate::platform::{Deferred, Domain};
use crate::sync::Arc;
use alloc::boxed::Box;
use core::fmt;
use core::marker::PhantomData;
use core::ops::Range;
use core::ptr::{self, NonNull};

/// A value removed from a [`MapleTree`], returned after the grace period
/// that makes it unreachable: [`try_take`](Self::try_take) without blocking,
/// [`wait`](Self::wait) blocking. From [`MapleTree::take`] and
/// [`MapleTree::take_exact`].
///
/// Dropping the handle gives the value back to the tree's reclamation: it is
/// dropped there if the grace period has passed already, otherwise queued on
/// the tree's domain like any removed value (dropped by
/// [`MapleTree::reclaim`], `poll`/`barrier`, or the tree's drop).
///
/// ```
/// let t = maple_rcu::MapleTree::new();
/// t.insert(0..10, String::from("code")).unwrap();
/// let r = t.pin(); // a reader that can still see the entry
/// let (range, h) = t.take(5).unwrap();
/// assert_eq!(range, 0..10);
/// assert_eq!(r.get(5).map(|(_, v)| v.as_str()), Some("code"));
/// let h = h.try_take().unwrap_err(); // not yet: `r` is pinned
/// drop(r);
/// assert_eq!(h.wait(), "code");
/// ```
pub struct Retired<'t, V: Send> {
    domain: &'t Domain,
    /// The grace period after which no reader can reach `val`.
    cookie: u64,
    /// From `Box::into_raw`; owned by this handle alone (the tree no longer
    /// lists it anywhere), shared with readers until the grace period ends.
    val: NonNull<V>,
    _v: PhantomData<V>,
}

// SAFETY: the handle owns a `V` (moving it to another thread needs `V:
// Send`) and never hands out `&V`, so no `V: Sync` is needed; `&Srcu` is
// `Send` because `Srcu` is `Sync`.
unsafe impl<V: Send> Send for Retired<'_, V> {}
// SAFETY: `&Retired` exposes only `is_ready` (reads the domain's atomics),
// never the value.
unsafe impl<V: Send> Sync for Retired<'_, V> {}

impl<V: Send> Retired<'_, V> {
    /// Whether the grace period has passed, so [`try_take`](Self::try_take)
    /// would succeed without advancing anything. Never blocks.
    ///
    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// t.insert(0..1, 7).unwrap();
    /// let (_, h) = t.take(0).unwrap();
    /// t.domain().synchronize();
    /// assert!(h.is_ready());
    /// ```
    pub fn is_ready(&self) -> bool {
        self.domain.gp_passed(self.cookie)
    }

    /// The value if the grace period has passed (advancing grace periods as
    /// far as current readers allow first), else the handle back. Never
    /// blocks and runs no user code.
    ///
    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// t.insert(0..1, 7).unwrap();
    /// let (_, h) = t.take(0).unwrap();
    /// // No reader: advancing completes the grace period at once.
    /// assert_eq!(h.try_take().ok(), Some(7));
    /// ```
    ///
    /// # Errors
    /// The handle itself, while a reader that may see the value remains.
    pub fn try_take(self) -> Result<V, Self> {
        if !self.is_ready() {
            self.domain.advance();
            if !self.is_ready() {
                return Err(self);
            }
        }
        Ok(self.into_value())
    }

    /// Waits for the grace period, then returns the value. Runs no user code.
    ///
    /// **Deadlocks** if this thread holds a read handle of this tree
    /// ([`MapleTree::pin`], or a guard of [`MapleTree::domain`]): the grace
    /// period waits for that reader, which waits for this call.
    ///
    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// t.insert(0..1, vec![1, 2]).unwrap();
    /// let (_, h) = t.take(0).unwrap();
    /// assert_eq!(h.wait(), [1, 2]);
    /// ```
    pub fn wait(self) -> V {
        while !self.is_ready() {
            self.domain.synchronize();
        }
        self.into_value()
    }

    /// The value, once the grace period has passed.
    fn into_value(self) -> V {
        debug_assert!(self.is_ready());
        let p = self.val.as_ptr();
        core::mem::forget(self);
        // SAFETY: from `Box::into_raw`, owned by this handle alone (consumed
        // here, once), and the grace period requested after the publishing
        // store that unlinked it has passed, so no reader holds `&V` (I7).
        *unsafe { Box::from_raw(p) }
    }
}

impl<V: Send> Drop for Retired<'_, V> {
    fn drop(&mut self) {
        let p = self.val.as_ptr();
        if self.is_ready() {
            // SAFETY: as in `into_value`; dropping the handle is the owner's
            // own call, so its user code (the value's `Drop`) runs here.
            drop(unsafe { Box::from_raw(p) });
            return;
        }
        /// # Safety
        /// `p` came from `Box::<V>::into_raw` and is used only here, once,
        /// after no reader can reach it.
        unsafe fn drop_one<V>(p: *mut ()) {
            // SAFETY: this function's requirement.
            drop(unsafe { Box::from_raw(p.cast::<V>()) });
        }
        // SAFETY: Deferred::new requirements: 1. `drop_one::<V>` frees the
        // box once, and `V: Send` may be dropped on any thread; 2. the box is
        // owned by the entry alone from now on. The domain runs it after a
        // grace period that starts after this call, hence after the
        // publishing store (I7); it belongs to the tree, which `V` outlives,
        // and its drop runs what is still queued (as for removed values,
        // garbage.rs).
        unsafe { self.domain.defer(Deferred::new(p.cast(), drop_one::<V>)) };
    }
}

impl<V: Send> fmt::Debug for Retired<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retired")
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl<V: Send> MapleTree<V> {
    /// Removes the whole entry containing `addr` (as [`MapleTree::remove`])
    /// and returns its range and a [`Retired`] handle that yields the value
    /// after a grace period. Runs no user code. O(height).
    ///
    /// Takes the writer lock: **deadlocks** if this thread holds a
    /// [`WriteTxn`] of this tree ([more](MapleTree#deadlocks-by-contract)).
    ///
    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// t.insert(0..10, 'a').unwrap();
    /// let (r, h) = t.take(3).unwrap();
    /// assert_eq!((r, h.wait()), (0..10, 'a'));
    /// assert!(t.take(3).is_none());
    /// ```
    pub fn take(&self, addr: u64) -> Option<(Range<u64>, Retired<'_, V>)> {
        let mut w = self.write();
        let (r, p) = w.get(addr).map(|(r, v)| (r, ptr::from_ref(v).cast_mut()))?;
        w.core.remove(r.start);
        Some((r, self.take_commit(w, p)))
    }

    /// Removes the entry that is exactly `range` (as
    /// [`MapleTree::remove_exact`]) and returns a [`Retired`] handle for its
    /// value. Runs no user code. O(height).
    ///
    /// Takes the writer lock: **deadlocks** if this thread holds a
    /// [`WriteTxn`] of this tree ([more](MapleTree#deadlocks-by-contract)).
    ///
    /// # Errors
    /// As [`WriteTxn::remove_exact`]; the tree is unchanged.
    ///
    /// ```
    /// use maple_rcu::tree::ErrorKind;
    /// let t = maple_rcu::MapleTree::new();
    /// t.insert(0x1000..0x2000, 'a').unwrap();
    /// assert_eq!(t.take_exact(0x1000..0x1800).unwrap_err(), ErrorKind::NotExact);
    /// assert_eq!(t.take_exact(0x1000..0x2000).unwrap().wait(), 'a');
    /// ```
    pub fn take_exact(&self, range: Range<u64>) -> Result<Retired<'_, V>, ErrorKind> {
        let mut w = self.write();
        let p = w.find_exact(&range)?;
        w.core.remove(range.start);
        Ok(self.take_commit(w, p))
    }

    /// Removes the entry containing `addr`, waits for the grace period, and
    /// returns its range and value (`take(addr)` then [`Retired::wait`]).
    /// Runs no user code.
    ///
    /// **Deadlocks** if this thread holds a read handle of this tree
    /// ([`MapleTree::pin`], or a guard of [`MapleTree::domain`]), or a
    /// [`WriteTxn`] of it ([more](MapleTree#deadlocks-by-contract)). Costs a
    /// grace period (µs with no reader, as long as the slowest reader
    /// otherwise); use [`MapleTree::take`] to avoid blocking.
    ///
    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// t.insert(0..10, String::from("x")).unwrap();
    /// assert_eq!(t.remove_wait(5), Some((0..10, String::from("x"))));
    /// assert_eq!(t.remove_wait(5), None);
    /// ```
    pub fn remove_wait(&self, addr: u64) -> Option<(Range<u64>, V)> {
        self.take(addr).map(|(r, h)| (r, h.wait()))
    }

    /// Commits `w`, in which the entry holding `p` was just removed, keeping
    /// `p` out of the retired values, and hands it to a [`Retired`].
    fn take_commit(&self, mut w: WriteTxn<'_, V>, p: *mut V) -> Retired<'_, V> {
        w.keep_value(p);
        w.commit();
        // After the publishing store (in `commit`, program order): the grace
        // period this names starts after it (S5), as I7 requires.
        let cookie = self.domain.start_poll();
        Retired {
            domain: Arc::as_ref(&self.domain),
            cookie,
            // From `Box::into_raw` (every value is), hence non-null.
            val: NonNull::new(p).expect("tree values are non-null"),
            _v: PhantomData,
        }
    }
}
