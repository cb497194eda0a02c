//! Small, recycled per-thread ids: the index of a thread's counter slot in
//! every domain's [`SlotTable`](super::slots::SlotTable).
//!
//! A thread gets the smallest free id on its first read-side operation and
//! gives it back when it exits, so ids (and therefore slot tables) stay as
//! small as the number of threads alive at once. An id is owned by at most one
//! live thread at a time; ownership passes from an exiting thread to the next
//! one through the registry mutex, which orders the old owner's last counter
//! stores before the new owner's first loads (invariant S1 in [DESIGN](crate::docs::design)).

use crate::sync::{Arc, Mutex, lazy_static, lock, thread_local};
use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ptr;

/// The free list of ids: hand out the smallest free id first.
#[derive(Default)]
struct IdAlloc {
    /// Lowest never-used id.
    next: usize,
    /// Ids returned by exited threads.
    free: BinaryHeap<Reverse<usize>>,
}

type Registry = Arc<Mutex<IdAlloc>>;

lazy_static! {
    /// The process-wide registry (per model execution under loom).
    static ref REGISTRY: Registry = Arc::new(Mutex::new(IdAlloc::default()));
}

/// Owns a thread's id; its destructor (run at thread exit) returns the id.
struct Registration {
    id: usize,
    /// Held so that the id can be returned even after the global itself is gone
    /// (loom drops its lazy statics before the main thread's thread-locals).
    registry: Registry,
}

impl Registration {
    fn new() -> Self {
        let registry: Registry = Arc::clone(&REGISTRY);
        let id = {
            let mut ids = lock(&registry);
            match ids.free.pop() {
                Some(Reverse(id)) => id,
                None => {
                    ids.next += 1;
                    ids.next - 1
                }
            }
        };
        Self { id, registry }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // From now on this thread uses the shared fallback slot (see
        // `current`), and no cached slot pointer survives the id (S10).
        let _ = CACHED.try_with(|c| c.set(0));
        let _ = LAST.try_with(|c| c.iter().for_each(|c| c.set((0, ptr::null()))));
        // The mutex release orders every counter store this thread made into
        // its slots before the next owner's acquisition of the id (S1).
        let mut ids = lock(&self.registry);
        ids.free.push(Reverse(self.id));
    }
}

thread_local! {
    /// `id + 1` of this thread, 0 when not (or no longer) registered. No
    /// destructor, so the fast path is a plain thread-local load.
    static CACHED: Cell<usize> = const { Cell::new(0) };
    /// Owns the id and returns it at thread exit.
    static REGISTRATION: Registration = Registration::new();
    /// One-entry caches, one per [`Cache`]: `(uid of the table, this
    /// thread's slot in it)` of the table of that kind this thread used last.
    /// Uid 0 is never assigned (S10).
    static LAST: [Cell<(u64, *const ())>; CACHES] =
        const { [const { Cell::new((0, ptr::null())) }; CACHES] };
}

/// Which kind of slot table a cached slot belongs to: each kind has its own
/// one-entry cache, so a fault that uses the tree's Srcu domain and the
/// address space's statistics hits both caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cache {
    /// Srcu domains' reader counters.
    Srcu,
    /// `mm` statistics counters.
    Stats,
}

const CACHES: usize = 2;

/// This thread's cached slot pointer for the `cache`-kind table with `uid`,
/// if the last table of that kind it used was that one.
#[inline(always)]
pub(super) fn last_slot(cache: Cache, uid: u64) -> Option<*const ()> {
    match LAST.try_with(|c| c[cache as usize].get()) {
        Ok((u, p)) if u == uid => Some(p),
        _ => None,
    }
}

/// Caches `slot` as this thread's slot in the `cache`-kind table with `uid`.
/// The caller must own the slot's id (it came from [`current`]).
pub(super) fn set_last_slot(cache: Cache, uid: u64, slot: *const ()) {
    let _ = LAST.try_with(|c| c[cache as usize].set((uid, slot)));
}

/// This thread's id, or `None` while the thread is being torn down (its
/// registration was already destroyed); callers then use the fallback slot.
#[inline]
pub(super) fn current() -> Option<usize> {
    match CACHED.try_with(Cell::get) {
        Ok(0) | Err(_) => register(),
        Ok(id) => Some(id - 1),
    }
}

#[cold]
#[inline(never)]
fn register() -> Option<usize> {
    let id = REGISTRATION.try_with(|r| r.id).ok()?;
    CACHED.try_with(|c| c.set(id + 1)).ok()?;
    Some(id)
}
