//! The one place that names std versus loom primitives.
#![allow(unused_imports)] // the shim re-exports the full set; not every backend item is used by every build
//!
//! Every other module imports atomics, cells, mutexes and threads from here, so
//! that `RUSTFLAGS='--cfg loom'` swaps the whole crate onto loom's model checker
//! at once (see [DESIGN](crate::docs::design), "Loom").
//!
//! Two halves ([DESIGN §2.9](crate::docs::design#29-no_std--alloc-the-tree-core)):
//! the **core** items (atomics, `Arc`, `UnsafeCell`, `LiveCell`, `catch_unwind`)
//! exist in every build, `#![no_std]` included; the **std** items (mutexes,
//! condvars, threads and `thread::panicking`, thread-locals, lazy statics) need
//! the `std` feature. Atomics come from `core`, or from `portable_atomic` with
//! the `portable-atomic` feature or on a target without native 64-bit atomics.

#[cfg(all(loom, not(feature = "std")))]
compile_error!("`--cfg loom` needs the `std` feature");

/// With the feature, the shim's atomics are `portable_atomic`'s (what the
/// `cargo test --features portable-atomic` CI line relies on).
#[cfg(all(not(loom), feature = "portable-atomic"))]
const _: fn(AtomicU64, AtomicUsize) -> (portable_atomic::AtomicU64, portable_atomic::AtomicUsize) =
    |a, b| (a, b);
/// `Arc` is `alloc`'s (std re-exports the same type).
#[cfg(not(loom))]
pub(crate) use alloc::sync::Arc;
/// Native atomics (`std::sync::atomic` is the same module).
#[cfg(all(not(loom), not(feature = "portable-atomic"), target_has_atomic = "64"))]
pub(crate) use core::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering, compiler_fence,
    fence,
};
/// `portable_atomic`'s types: forced by the `portable-atomic` feature, or
/// needed because the target has no native 64-bit atomics (transaction ids and
/// grace-period numbers are `u64`, §2.9 "Counters").
#[cfg(all(
    not(loom),
    any(feature = "portable-atomic", not(target_has_atomic = "64"))
))]
pub(crate) use portable_atomic::{
    AtomicBool, AtomicPtr, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering, compiler_fence,
    fence,
};
#[cfg(feature = "std")]
use std::sync::TryLockError;
/// Weak references (std only: used by the optional helper thread, which is
/// not modelled under loom).
#[cfg(all(not(loom), feature = "std"))]
pub(crate) use std::sync::Weak;
#[cfg(all(not(loom), feature = "std"))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `m`, ignoring poisoning: the data our mutexes protect stays
/// consistent across a panicking callback (callbacks never run under them).
#[cfg(feature = "std")]
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Locks `m` like [`lock`], first retrying `try_lock` for a bounded spin
/// (`SPIN_TRIES` rounds of up to 8 `spin_loop` hints, about 240 hints or
/// 12-15 µs in all on the 2-vCPU VM, where one hint takes about 50 ns:
/// the hypervisor's pause-loop exits), for a mutex whose holders stay a
/// microsecond or so and never sleep under it: the tree's writer mutex
/// (DESIGN §4.8, "What disjoint writers still share"). std's mutex spins
/// only while nobody is parked, then parks; on this VM a park and its
/// wake-up cost more than waiting out the holder, and once one waiter
/// parks every later hand-off goes through the kernel. Under loom: plain
/// `lock` (a spin is only repeated `try_lock`s, nothing to model).
#[cfg(feature = "std")]
#[inline]
pub(crate) fn lock_spinning<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    #[cfg(not(loom))]
    for round in 0..SPIN_TRIES {
        if let Some(g) = try_lock(m) {
            return g;
        }
        for _ in 0..(1u32 << round.min(SPIN_MAX_SHIFT)) {
            core::hint::spin_loop();
        }
    }
    lock(m)
}
/// Rounds of `lock_spinning` before it blocks.
#[cfg(all(feature = "std", not(loom)))]
const SPIN_TRIES: u32 = 32;
/// The longest pause between two tries: 2^3 = 8 `spin_loop` hints.
#[cfg(all(feature = "std", not(loom)))]
const SPIN_MAX_SHIFT: u32 = 3;

/// Tries to lock `m` without blocking, ignoring poisoning; `None` if held.
#[cfg(feature = "std")]
#[inline]
pub(crate) fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
};
#[cfg(loom)]
pub(crate) use loom::sync::{
    Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard,
};
/// loom has no compiler fence; a full fence is a sound (stronger) stand-in.
#[cfg(loom)]
pub(crate) fn compiler_fence(order: Ordering) {
    loom::sync::atomic::fence(order)
}

/// Threads: `thread::yield_now` must be loom's inside models so that optimistic
/// loops terminate under the model checker. Std only.
#[cfg(feature = "std")]
pub(crate) mod thread {
    #[cfg(loom)]
    pub(crate) use loom::thread::yield_now;
    /// Parking: a blocked range-lock request sleeps with `park` and is woken
    /// by `Thread::unpark` (loom models both, including spurious wake-ups).
    #[cfg(loom)]
    pub(crate) use loom::thread::{Thread, current, park};
    /// Named background threads (std only; see `sync::Weak`).
    #[cfg(all(not(loom), feature = "std"))]
    pub(crate) use std::thread::Builder;
    #[cfg(all(not(loom), feature = "std"))]
    pub(crate) use std::thread::yield_now;
    #[cfg(all(not(loom), feature = "std"))]
    pub(crate) use std::thread::{Thread, current, park};

    /// Whether this thread is unwinding (the same on both backends).
    #[cfg(feature = "std")]
    pub(crate) use std::thread::panicking;

    /// Sleep (std) or yield (loom, which has no time).
    #[allow(dead_code)]
    #[cfg(feature = "std")]
    pub(crate) fn backoff_sleep(d: std::time::Duration) {
        #[cfg(loom)]
        {
            let _ = d;
            loom::thread::yield_now();
        }
        #[cfg(not(loom))]
        std::thread::sleep(d);
    }
}

/// Runs `f`, catching a panic (std). Deferred user code (callbacks, value
/// drops) runs through this, so one panic neither stops nor leaks the rest
/// ([DESIGN §3.7](crate::docs::design#37-where-user-code-runs)). `AssertUnwindSafe`: `f` is consumed, and the caller
/// holds no lock and no half-updated state while it runs.
#[cfg(all(not(loom), feature = "std"))]
#[inline]
pub(crate) fn catch_unwind(f: impl FnOnce()) -> Result<(), crate::panicked::Payload> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
}

/// Without std there is no unwinding to catch: `f` runs plainly, and a panic
/// in it goes to the embedder's panic handler (kernels build with
/// `panic = "abort"`). So nothing is ever collected into a `Panicked`
/// ([DESIGN §2.9](crate::docs::design#29-no_std--alloc-the-tree-core)).
#[cfg(not(feature = "std"))]
#[inline]
pub(crate) fn catch_unwind(f: impl FnOnce()) -> Result<(), crate::panicked::Payload> {
    f();
    Ok(())
}

/// Under loom, panics are how a model reports a failure (an assertion, or a
/// causality violation inside a destructor that frees): let them through, so
/// that catching one can never hide a bug from the model checker.
#[cfg(loom)]
#[inline]
pub(crate) fn catch_unwind(f: impl FnOnce()) -> Result<(), crate::panicked::Payload> {
    f();
    Ok(())
}

/// An `UnsafeCell` with loom's closure-based API on both backends, so loom can
/// check every access for data races.
#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// std stand-in for `loom::cell::UnsafeCell` with the same closure-based API.
#[cfg(not(loom))]
#[derive(Debug, Default)]
#[repr(transparent)]
pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(loom))]
#[allow(dead_code)]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(v: T) -> Self {
        Self(core::cell::UnsafeCell::new(v))
    }
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
    pub(crate) fn into_inner(self) -> T {
        self.0.into_inner()
    }
}

/// Thread-local storage: loom needs its own `thread_local!` so each modelled
/// thread gets a fresh value.
/// Under loom: `loom::thread_local!`, also accepting std's `const { .. }`
/// initialiser form (loom's macro takes only a plain expression).
#[cfg(loom)]
macro_rules! loom_thread_local {
    () => {};
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = const { $init:expr }; $($rest:tt)*) => {
        loom::thread_local!($(#[$attr])* $vis static $name: $t = $init;);
        $crate::sync::thread_local!($($rest)*);
    };
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr; $($rest:tt)*) => {
        loom::thread_local!($(#[$attr])* $vis static $name: $t = $init;);
        $crate::sync::thread_local!($($rest)*);
    };
}
#[cfg(loom)]
pub(crate) use loom_thread_local as thread_local;
#[cfg(all(not(loom), feature = "std"))]
pub(crate) use std::thread_local;

/// A per-node liveness marker that lets loom check reclamation: readers
/// `touch()` every node they visit, and freeing a node `kill()`s it first. If a
/// free is not ordered after every reader's visit, loom reports a causality
/// violation. Zero-sized and free outside loom.
#[cfg(loom)]
#[derive(Debug)]
pub(crate) struct LiveCell(loom::cell::UnsafeCell<()>);
#[cfg(loom)]
impl LiveCell {
    pub(crate) fn new() -> Self {
        Self(loom::cell::UnsafeCell::new(()))
    }
    pub(crate) fn touch(&self) {
        self.0.with(|_| ());
    }
    pub(crate) fn kill(&self) {
        self.0.with_mut(|_| ());
    }
}
/// Zero-sized outside loom.
#[cfg(not(loom))]
#[derive(Debug, Default)]
pub(crate) struct LiveCell;
#[cfg(not(loom))]
impl LiveCell {
    #[inline(always)]
    pub(crate) fn new() -> Self {
        Self
    }
    #[inline(always)]
    pub(crate) fn touch(&self) {}
    #[inline(always)]
    pub(crate) fn kill(&self) {}
}

/// A small per-thread number used to pick a shard (the frame table's free
/// lists), so that threads
/// mostly bump different cache lines. Std: assigned round-robin on a thread's
/// first call. Loom: always 0 (models use one shard).
#[cfg(all(not(loom), feature = "std"))]
#[inline]
pub(crate) fn shard_index() -> usize {
    use std::cell::Cell;
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    std::thread_local! {
        static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SHARD.with(|s| {
        let mut v = s.get();
        if v == usize::MAX {
            // Relaxed: only spreads threads over shards; no data is published.
            v = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            s.set(v);
        }
        v
    })
}

/// Loom: one shard.
#[cfg(loom)]
pub(crate) fn shard_index() -> usize {
    0
}

/// A lazily initialised global. Under loom it is `loom::lazy_static!`, whose value
/// is reset for every model execution (loom atomics and mutexes are not `const`);
/// otherwise a `std::sync::LazyLock`. Both deref to the value.
#[cfg(loom)]
pub(crate) use loom::lazy_static;

/// std flavour of the `lazy_static!` shim: a `LazyLock` static.
#[cfg(all(not(loom), feature = "std"))]
macro_rules! lazy_static {
    ($(#[$attr:meta])* static ref $name:ident : $t:ty = $init:expr;) => {
        $(#[$attr])*
        static $name: ::std::sync::LazyLock<$t> = ::std::sync::LazyLock::new(|| $init);
    };
}
#[cfg(all(not(loom), feature = "std"))]
pub(crate) use lazy_static;
