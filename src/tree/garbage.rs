//! What a commit unlinks, and where it is freed (docs/DESIGN.md §2.7, §3.7).
//!
//! A commit splits its garbage by whether freeing it runs user code:
//! * **Node memory**, and removed values whose type has no drop glue
//!   (`!needs_drop::<V>()`: freeing one is a plain deallocation), stay with
//!   the writer state as a [`Batch`] tagged with a grace-period cookie. Later
//!   commits (and [`MapleTree::reclaim`](super::MapleTree::reclaim)) recycle
//!   every batch whose grace period has passed, under the writer lock they
//!   already hold: the node pool's fast path, with no callback and no queue.
//! * **Removed values with drop glue** are user code. They go to the tree's
//!   Srcu domain as one entry per commit, which runs only in `poll`,
//!   `barrier`, `MapleTree::reclaim` or the domain's drop, never inside a
//!   commit (S11), each drop under `catch_unwind`.

use super::node::{Header, NodePool, release};
use super::write::Core;
use crate::panicked::{Payload, reraise, resume_first, run_caught};
use crate::platform::{Deferred, Domain, POLL_EVERY};
use alloc::collections::VecDeque;
use alloc::{boxed::Box, vec::Vec};
use core::marker::PhantomData;
use core::mem::needs_drop;

/// The state behind the tree's writer mutex.
pub(crate) struct Writer<V> {
    /// The next transaction id (I6).
    pub(crate) next_txn: u64,
    /// The write transaction's state: the node pool, the transaction's
    /// lists (their capacity reused from one transaction to the next) and
    /// its working root. It stays here, and a `WriteTxn` works on it in
    /// place through the lock guard it holds (nothing moved in or out per
    /// transaction, §2.7); between transactions it is idle (`Core::end`).
    pub(crate) core: Core<V>,
    /// The garbage of past commits, waiting for grace periods.
    pub(crate) gc: Garbage<V>,
}

impl<V: Send> Writer<V> {
    pub(crate) fn new() -> Self {
        Self {
            next_txn: 1,
            core: Core::idle(),
            gc: Garbage::new(),
        }
    }
}

/// What past commits unlinked, until their grace periods pass.
pub(crate) struct Garbage<V> {
    /// Closed batches, oldest first; cookies are non-decreasing. Each holds
    /// the garbage of one or more retiring commits behind one grace-period
    /// cookie (`close`).
    batches: VecDeque<Batch>,
    /// The open batch: what the retiring commits since the last `close`
    /// unlinked, not yet tagged with a cookie (never collected until it
    /// is). Its `cookie` is unused.
    open: Batch,
    /// Retiring commits whose garbage waits, in `open` and in `batches`.
    waiting: usize,
    /// Emptied lists of recycled batches, reused by the next `close`s (no
    /// allocation per period once warm).
    spare: Vec<Vec<*mut Header>>,
    /// The value type, whose boxes the batches' lists hold (type-erased).
    _vals: PhantomData<*mut V>,
    /// Commits that retired something, to advance grace periods every
    /// `POLL_EVERY` of them.
    retires: usize,
    /// Debug builds: every node in `nodes` (O(log n) per node), to catch one
    /// retired twice (I7).
    #[cfg(debug_assertions)]
    queued: alloc::collections::BTreeSet<usize>,
}

/// Waiting commits at which a commit's `advance` starts a grace period even
/// if the domain started one less than its minimum gap ago.
const PRESSED: usize = 4 * POLL_EVERY;

/// Batch queue capacity kept once a burst of garbage is recycled.
const SHRINK_ABOVE: usize = 4096;

/// Spare lists kept at most (two advance periods of one-commit batches,
/// the shape they have when `V` has drop glue: each such commit closes its
/// batch).
const SPARE_MAX: usize = 2 * POLL_EVERY;

/// A spare list longer than this (a large transaction's, or a period of
/// big commits) is dropped rather than kept: about 16 entries for each of
/// a period's commits.
const SPARE_KEEP: usize = 16 * POLL_EVERY;

/// The garbage of one or more retiring commits behind one cookie: their
/// unlinked nodes, and their removed values if `V` has no drop glue
/// (`Box<V>` pointers cast to the list's element type; the writer that
/// made the batch knows `V`).
#[derive(Default)]
struct Batch {
    /// The grace period after which no reader can reach them: requested
    /// after the publishing store of every commit in the batch.
    cookie: u64,
    nodes: Vec<*mut Header>,
    vals: Vec<*mut Header>,
    /// How many commits' garbage this holds.
    commits: usize,
}

impl<V: Send> Garbage<V> {
    pub(crate) fn new() -> Self {
        Self {
            batches: VecDeque::new(),
            open: Batch::default(),
            waiting: 0,
            spare: Vec::new(),
            _vals: PhantomData,
            retires: 0,
            #[cfg(debug_assertions)]
            queued: alloc::collections::BTreeSet::new(),
        }
    }

    /// Retires what one commit unlinked, then recycles every batch whose
    /// grace period has passed. `nodes` and the drop-free `vals` move into
    /// the open batch (the caller keeps both lists' capacity). Values with
    /// drop glue are not passed here: the caller takes them out with
    /// [`take_dropping`] under the writer lock and queues them on the domain
    /// after releasing it ([`DropLater::defer`]). Runs no user code.
    ///
    /// **One grace-period request per period, not per commit** (issue 12,
    /// seventh session): the open batch collects the garbage of successive
    /// commits untagged, and is closed with one cookie (`close`) every
    /// `POLL_EVERY` retiring commits, just before that period's advance.
    /// (Until the ninth session a commit whose values had drop glue closed
    /// the batch at once with the cookie of their `defer`; that `defer` now
    /// runs after the writer lock is released.) A cookie requested later than a commit's publishing
    /// store is as good for it as one requested right after (it names a
    /// grace period that starts later still), so every commit in the batch
    /// is covered (I7); the price is that a drop-free commit's garbage
    /// waits up to `POLL_EVERY - 1` more commits (or a `reclaim`) for its
    /// tag. Before, every commit took the domain's queue lock for its own
    /// cookie (two atomic read-modify-writes on a line shared with every
    /// other user of the domain) and pushed its own record.
    ///
    /// # Safety
    /// 1. The commit's publishing store, which unlinked every node in `nodes`
    ///    and value in `vals` from the live version, happens before this call.
    /// 2. Each node came from `place`/`copy_node`, each value from
    ///    `Box::into_raw`, and each is listed once and owned by this call
    ///    from now on.
    pub(crate) unsafe fn retire(
        &mut self,
        domain: &Domain,
        pool: &mut NodePool,
        nodes: &mut Vec<*mut Header>,
        vals: &mut Vec<*mut V>,
    ) {
        if !nodes.is_empty() || !vals.is_empty() {
            #[cfg(debug_assertions)]
            for &n in nodes.iter() {
                // I7: a node is retired once. A second listing (twice in one
                // commit, or again while its first batch still waits) would
                // free it twice; debug builds stop here instead, before
                // anything is queued.
                assert!(
                    self.queued.insert(n as usize),
                    "I7: node {n:p} retired twice"
                );
            }
            // Drop-free values (none left if `V` has drop glue) join the
            // nodes in the open batch; the caller keeps its lists' memory.
            self.open.nodes.append(nodes);
            self.open
                .vals
                .extend(vals.drain(..).map(|v| v.cast::<Header>()));
            self.open.commits += 1;
            self.waiting += 1;
            // Wrapping: a `usize` counter wraps after 2^32 commits on a
            // 32-bit target; `POLL_EVERY` divides 2^32, so the period holds.
            self.retires = self.retires.wrapping_add(1);
            let period = self.retires.is_multiple_of(POLL_EVERY);
            if period {
                // After the store of every commit in the open batch (our
                // requirement 1 for each of them, in program order under
                // the writer lock).
                self.close(domain.start_poll());
            }
            if period {
                // The domain starts a grace period at most every 200 µs for
                // opportunistic callers (§3.3); past `PRESSED` waiting
                // commits it starts one regardless, so node garbage stays
                // bounded by a count, not only by time.
                domain.advance_spaced(self.waiting >= PRESSED);
            }
        }
        self.collect(domain, pool);
    }

    /// Tags the open batch with `cookie` (a grace period requested after
    /// the publishing store of every commit in it) and queues it.
    fn close(&mut self, cookie: u64) {
        if self.open.commits == 0 {
            return;
        }
        let nodes = core::mem::replace(&mut self.open.nodes, self.spare.pop().unwrap_or_default());
        let vals = core::mem::replace(&mut self.open.vals, self.spare.pop().unwrap_or_default());
        self.batches.push_back(Batch {
            cookie,
            nodes,
            vals,
            commits: core::mem::take(&mut self.open.commits),
        });
    }

    /// Closes the open batch with a grace period requested now (for
    /// `MapleTree::reclaim`, so that its `poll` can complete it). The
    /// caller made every retiring commit's store before (they ran under
    /// the writer lock it holds now).
    pub(crate) fn close_open(&mut self, domain: &Domain) {
        if self.open.commits != 0 {
            self.close(domain.start_poll());
        }
    }

    /// Recycles every pending batch whose grace period has passed: node
    /// memory to `pool` (the tree's: the committing transaction's, or the
    /// writer state's when no transaction runs), drop-free values' memory
    /// to this thread's value stash (`boxed` reuses it) or the allocator.
    /// Runs no user code.
    pub(crate) fn collect(&mut self, domain: &Domain, pool: &mut NodePool) {
        while let Some(b) = self.batches.front() {
            if !domain.gp_passed(b.cookie) {
                return;
            }

            let Some(Batch {
                mut nodes,
                mut vals,
                commits,
                ..
            }) = self.batches.pop_front()
            else {
                unreachable!("front() was Some")
            };
            for &n in &nodes {
                #[cfg(debug_assertions)]
                self.queued.remove(&(n as usize));
                // SAFETY: release requirements: 1. listed once, from
                // `place`/`copy_node` (`retire`'s requirement 2); 2. unlinked
                // before the cookie was taken (`retire`'s requirement 1,
                // `close`) and the grace period has passed (`gp_passed`
                // Acquire, I7).
                pool.give(unsafe { release(n) });
            }
            for &v in &vals {
                // SAFETY: unbox_drop requirements: a `Box<V>` from `boxed`
                // or `Box::into_raw` (`retire` listed it, cast), owned by
                // the batch, freed once, unreachable as above. `V` has no
                // drop glue, so no user code runs: the memory goes to this
                // thread's stash for the next insert's `boxed` (or to the
                // allocator).
                unsafe { unbox_drop(v.cast::<V>()) };
            }
            self.waiting -= commits;
            for list in [&mut nodes, &mut vals] {
                list.clear();
                if list.capacity() != 0
                    && list.capacity() <= SPARE_KEEP
                    && self.spare.len() < SPARE_MAX
                {
                    self.spare.push(core::mem::take(list));
                }
            }
            if self.batches.is_empty() && self.batches.capacity() > SHRINK_ABOVE {
                // After a burst of pending commits (a reader that held a
                // grace period back), do not keep the queue's memory for
                // the tree's lifetime.
                self.batches.shrink_to(SHRINK_ABOVE);
            }
        }
    }

    /// Frees every pending batch now, without waiting.
    ///
    /// # Safety
    /// No reader of the tree exists (the tree is being dropped).
    pub(crate) unsafe fn free_all(&mut self) {
        #[cfg(debug_assertions)]
        self.queued.clear();
        let open = core::mem::take(&mut self.open);
        self.waiting = 0;
        for b in self.batches.drain(..).chain(core::iter::once(open)) {
            for &n in &b.nodes {
                // SAFETY: release requirements: 1. as in `collect`; 2. no
                // reader exists (our requirement).
                unsafe { release(n) }.free();
            }
            for &v in &b.vals {
                // SAFETY: a `Box<V>` listed once by `retire`, freed once;
                // no drop glue.
                drop(unsafe { Box::from_raw(v.cast::<V>()) });
            }
        }
    }

    /// Retiring commits whose garbage still waits, tagged or not (tests).
    #[cfg(all(test, not(loom), feature = "std"))]
    pub(crate) fn pending(&self) -> usize {
        self.waiting
    }
}

/// The removed values of one commit whose type has drop glue, taken out of
/// the writer state under the writer lock ([`take_dropping`]) and queued on
/// the domain after it is released ([`DropLater::defer`]), so that the
/// domain's queue lock, a line every writer of the domain writes, is not
/// taken inside the writer's critical section (DESIGN §2.5, "Values' drops
/// are queued after the unlock").
pub(crate) enum DropLater<V> {
    None,
    One(*mut V),
    Many(Vec<*mut V>),
}

/// Takes the removed values out of `vals` when `V` has drop glue (leaving
/// `vals` empty for [`Garbage::retire`]); drop-free values stay in `vals`.
pub(crate) fn take_dropping<V>(vals: &mut Vec<*mut V>) -> DropLater<V> {
    if !needs_drop::<V>() || vals.is_empty() {
        DropLater::None
    } else if vals.len() == 1 {
        DropLater::One(vals.pop().expect("one value"))
    } else {
        DropLater::Many(core::mem::take(vals))
    }
}

impl<V: Send> DropLater<V> {
    /// Queues the values' drop behind a grace period of `domain`.
    ///
    /// # Safety
    /// 1. The publishing store of the commit that removed the values
    ///    happens before this call (program order: the commit made it, then
    ///    released the writer lock, then calls this).
    /// 2. Each value came from `Box::into_raw` (or [`boxed`]), is listed
    ///    once, and is owned by this call.
    pub(crate) unsafe fn defer(self, domain: &Domain) {
        match self {
            DropLater::None => {}
            DropLater::One(p) => {
                // SAFETY: Deferred::new requirements: 1. `drop_value::<V>`
                // drops the box once, and `V: Send` (a bound of the tree
                // type itself) may be dropped on any thread; 2. the value is
                // owned by the entry alone (our requirement 2). It runs after
                // a grace period that starts after this call, so after the
                // publishing store (our requirement 1, S5): no reader can
                // reach it (I7). One value (the common case) needs no list
                // allocated here to be freed on the thread that runs it.
                unsafe { domain.defer(Deferred::new(p.cast::<()>(), drop_value::<V>)) };
            }
            DropLater::Many(vals) => {
                let data = Box::into_raw(Box::new(vals)).cast::<()>();
                // SAFETY: Deferred::new requirements: 1. `drop_values::<V>`
                // consumes the box once, and `V: Send` may be dropped on any
                // thread; 2. the box is owned by the entry alone (our
                // requirement 2). It runs after a grace period that starts
                // after this call, so after the publishing store (our
                // requirement 1, S5), when no reader can reach the values (I7).
                unsafe { domain.defer(Deferred::new(data, drop_values::<V>)) };
            }
        }
    }
}

/// Drops boxed values one by one, each under `catch_unwind`, so that a
/// panicking drop leaks none of the others; then re-raises the first panic
/// unless this thread is already unwinding. For the tree's own `Drop` and an
/// aborted transaction's values (after the writer lock is released).
///
/// # Safety
/// Each pointer came from `Box::into_raw`, is owned by the caller, and no
/// reader can reach it.
pub(crate) unsafe fn drop_now<V>(vals: impl IntoIterator<Item = *mut V>) {
    // SAFETY: our requirement.
    resume_first(unsafe { drop_caught(vals) });
}

/// As [`drop_now`], returning the panics instead of re-raising one.
///
/// # Safety
/// As [`drop_now`].
pub(crate) unsafe fn drop_caught<V>(vals: impl IntoIterator<Item = *mut V>) -> Vec<Payload> {
    let mut panics = Vec::new();
    for v in vals {
        // SAFETY: our requirement; each is dropped once.
        run_caught(&mut panics, || drop(unsafe { Box::from_raw(v) }));
    }
    panics
}

/// The domain entry for a commit that removed one value with drop glue.
///
/// # Safety
/// `p` came from `Box::<V>::into_raw` (a removed value, passed by
/// [`Writer::retire`]) and runs once, after a grace period that began after
/// the commit's publishing store (I7), so no reader can still reach it.
unsafe fn drop_value<V>(p: *mut ()) {
    let mut panics = Vec::new();
    run_caught(&mut panics, || {
        // SAFETY: our requirement; dropped once.
        unsafe { unbox_drop(p.cast::<V>()) }
    });
    reraise(panics);
}

/// Most value allocations a thread keeps for reuse.
#[cfg(all(not(loom), feature = "std"))]
const VALUE_STASH_MAX: usize = 256;

/// Memory of dropped values (each allocated with its `Layout` by the global
/// allocator), kept by a thread for the next values it boxes.
#[cfg(all(not(loom), feature = "std"))]
struct ValueStash(Vec<(core::alloc::Layout, *mut u8)>);

#[cfg(all(not(loom), feature = "std"))]
impl Drop for ValueStash {
    fn drop(&mut self) {
        for (l, p) in self.0.drain(..) {
            // SAFETY: `p` was allocated by the global allocator with `l`
            // (a `Box` of a value of that layout) and is owned by the stash.
            unsafe { alloc::alloc::dealloc(p, l) };
        }
    }
}

#[cfg(all(not(loom), feature = "std"))]
crate::sync::thread_local! {
    /// This thread's stash of value memory. A removed value is dropped on
    /// whichever thread runs the domain's entry, usually not the one that
    /// boxed it: freeing it there went into the boxing thread's malloc
    /// arena under that arena's lock (76 % of the futex calls of two mm
    /// writer threads sharing a tree were glibc's arena lock; perf,
    /// examples/writer_cost). The stash keeps the memory on the dropping
    /// thread, whose next insert reuses it.
    static VALUE_STASH: core::cell::RefCell<ValueStash> =
        const { core::cell::RefCell::new(ValueStash(Vec::new())) };
}

/// Allocations a thread moves to or from the depot at once.
#[cfg(all(not(loom), feature = "std"))]
const DEPOT_MOVE: usize = 64;

/// Most allocations the depot keeps per layout; beyond, they are freed.
#[cfg(all(not(loom), feature = "std"))]
const DEPOT_MAX: usize = 4096;

/// The process-wide depot of value memory (a magazine layer, Bonwick's
/// allocator design): a thread whose stash is full moves `DEPOT_MOVE`
/// allocations here instead of freeing them, and a thread whose stash is
/// empty takes up to `DEPOT_MOVE` back. Why: values are dropped by the
/// thread that runs their grace period's entry, mostly not the one that
/// boxed them; with two mm writer threads the poller's stash stayed full
/// and it freed the other's VMA boxes into the other's malloc arena, whose
/// lock glibc then contended with the owner's own mallocs, and each such
/// contention put a thread to sleep (`__lll_lock_wait_private`), which on
/// this VM costs about a millisecond (BENCHMARKS, "Sleeps"). With the
/// depot the memory circulates between the threads and is freed only past
/// `DEPOT_MAX`. The lock is taken once per `DEPOT_MOVE` allocations, never
/// while the thread's stash is borrowed, and it spins before parking.
#[cfg(all(not(loom), feature = "std"))]
static DEPOT: crate::sync::Mutex<Vec<(core::alloc::Layout, Vec<usize>)>> =
    crate::sync::Mutex::new(Vec::new());

/// Moves up to `DEPOT_MOVE` allocations of `layout` from the depot into
/// this thread's stash, except one, which it returns. Lock order: the
/// depot, then the thread's stash (a thread-local `RefCell`; nothing that
/// borrows it takes the depot).
#[cfg(all(not(loom), feature = "std"))]
fn depot_take(layout: core::alloc::Layout) -> Option<*mut u8> {
    let mut d = crate::sync::lock_spinning(&DEPOT);
    let (_, v) = d.iter_mut().find(|(l, _)| *l == layout)?;
    let p = v.pop()? as *mut u8;
    let _ = VALUE_STASH.try_with(|s| {
        let mut s = s.borrow_mut();
        let n = v.len().min(DEPOT_MOVE - 1);
        s.0.extend(v.drain(v.len() - n..).map(|a| (layout, a as *mut u8)));
    });
    Some(p)
}

/// Puts allocations of `layout` into the depot; returns those it has no
/// room for (the caller frees them).
#[cfg(all(not(loom), feature = "std"))]
fn depot_put(layout: core::alloc::Layout, mut ps: Vec<usize>) -> Vec<usize> {
    let mut d = crate::sync::lock_spinning(&DEPOT);
    let i = match d.iter().position(|(l, _)| *l == layout) {
        Some(i) => i,
        None => {
            d.push((layout, Vec::new()));
            d.len() - 1
        }
    };
    let v = &mut d[i].1;
    let n = ps.len().min(DEPOT_MAX.saturating_sub(v.len()));
    v.extend(ps.drain(..n));
    ps
}

/// `Box::into_raw(Box::new(v))`, in memory from this thread's stash when it
/// holds some of `V`'s layout. The result may be freed as any `Box<V>`.
pub(crate) fn boxed<V>(v: V) -> *mut V {
    #[cfg(all(not(loom), feature = "std"))]
    {
        let layout = core::alloc::Layout::new::<V>();
        if layout.size() != 0
            && let Some(p) = VALUE_STASH
                .try_with(|s| {
                    let mut s = s.borrow_mut();
                    let i = s.0.iter().rposition(|&(l, _)| l == layout)?;
                    Some(s.0.swap_remove(i).1)
                })
                .ok()
                .flatten()
        {
            let p = p.cast::<V>();
            // SAFETY: `p` is an allocation of `V`'s layout from the global
            // allocator, owned by us (taken out of the stash), uninitialised.
            unsafe { p.write(v) };
            return p;
        }
        if layout.size() != 0 {
            // The stash has none: refill it from the depot, keeping one.
            if let Some(p) = depot_take(layout) {
                let p = p.cast::<V>();
                // SAFETY: `p` is an allocation of `V`'s layout from the
                // global allocator (depot invariant), owned by us,
                // uninitialised.
                unsafe { p.write(v) };
                return p;
            }
        }
    }
    Box::into_raw(Box::new(v))
}

/// Drops the value behind `p` and keeps its memory in this thread's stash
/// (or frees it), also when the value's drop panics.
///
/// # Safety
/// `p` came from [`boxed`] or `Box::into_raw` of a `Box<V>`, is owned by the
/// caller, and nothing uses it afterwards.
unsafe fn unbox_drop<V>(p: *mut V) {
    #[cfg(all(not(loom), feature = "std"))]
    {
        let layout = core::alloc::Layout::new::<V>();
        if layout.size() != 0 {
            /// Stashes (or frees) the memory when dropped, after the value.
            struct Mem(core::alloc::Layout, *mut u8);
            impl Drop for Mem {
                fn drop(&mut self) {
                    let (l, p) = (self.0, self.1);
                    // Full stash: `DEPOT_MOVE` allocations of this layout
                    // (with this one) leave it for the depot.
                    let mut out = Vec::new();
                    let kept = VALUE_STASH
                        .try_with(|s| {
                            let mut s = s.borrow_mut();
                            if s.0.len() >= VALUE_STASH_MAX {
                                out.reserve_exact(DEPOT_MOVE);
                                let mut i = s.0.len();
                                while i > 0 && out.len() < DEPOT_MOVE - 1 {
                                    i -= 1;
                                    if s.0[i].0 == l {
                                        out.push(s.0.swap_remove(i).1 as usize);
                                    }
                                }
                                out.push(p as usize);
                            } else {
                                s.0.push((l, p));
                            }
                        })
                        .is_ok();
                    if !kept {
                        out.push(p as usize);
                    }
                    let freed = if out.is_empty() {
                        out
                    } else {
                        depot_put(l, out)
                    };
                    for a in freed {
                        // SAFETY: allocated by the global allocator with `l`
                        // (`unbox_drop`'s requirement, or the stash's and
                        // the depot's invariant), owned by us.
                        unsafe { alloc::alloc::dealloc(a as *mut u8, l) };
                    }
                }
            }
            let _mem = Mem(layout, p.cast());
            // SAFETY: our requirement: a live, owned `V`, dropped once; its
            // memory is released by `_mem` afterwards.
            unsafe { core::ptr::drop_in_place(p) };
            return;
        }
    }
    // SAFETY: our requirement.
    drop(unsafe { Box::from_raw(p) });
}

/// The domain entry for one commit's removed values with drop glue.
///
/// # Safety
/// `p` came from `Box::<Vec<*mut V>>::into_raw` in [`Writer::retire`] and
/// runs once, after a grace period that began after the commit's publishing
/// store (I7), so no reader can still reach any of the values.
unsafe fn drop_values<V>(p: *mut ()) {
    // SAFETY: our requirement.
    let vals = unsafe { Box::from_raw(p.cast::<Vec<*mut V>>()) };
    let mut panics = Vec::new();
    for &v in vals.iter() {
        // SAFETY: unbox_drop's requirement: removed values came from
        // `boxed` or `Box::into_raw` and are dropped only here, once (our
        // requirement). Their memory goes to this thread's stash, as a
        // one-value commit's does (`drop_value`).
        run_caught(&mut panics, || unsafe { unbox_drop(v) });
    }
    reraise(panics);
}

#[cfg(all(test, not(loom), feature = "std"))]
mod tests {
    use super::super::MapleTree;
    use super::PRESSED;
    use crate::platform::POLL_EVERY;
    use crate::sync::lock;

    fn churn<V: Send>(t: &MapleTree<V>, make: impl Fn(u64) -> V, rounds: u64) {
        for i in 0..rounds {
            let k = i % 64;
            t.insert(k * 10..k * 10 + 5, make(i)).unwrap();
            t.remove(k * 10).unwrap();
        }
    }

    /// Without any reclaim call, a tree of plain data keeps at most about
    /// five advance periods of node garbage (`PRESSED` plus one period):
    /// commits recycle it themselves.
    #[test]
    fn commits_bound_node_garbage_without_reclaim() {
        let t = MapleTree::new();
        for k in 0..64u64 {
            t.insert(1000 + k * 10..1000 + k * 10 + 5, k).unwrap();
        }
        churn(&t, |i| i, 10_000);
        let pending = lock(&t.writer).gc.pending();
        assert!(pending <= PRESSED + POLL_EVERY, "{pending} batches pending");
        assert_eq!(t.domain.pending(), 0, "u64 values queued");
    }

    /// The same bound for values with drop glue, whose commits no longer
    /// close the open batch with their `defer`'s cookie (that `defer` runs
    /// after the unlock, DESIGN §2.5): the period alone tags it, and node
    /// garbage stays bounded by a count without any reclaim call.
    #[test]
    fn commits_bound_node_garbage_of_dropping_values_without_reclaim() {
        let t = MapleTree::with_manual_reclaim();
        for k in 0..64u64 {
            t.insert(1000 + k * 10..1000 + k * 10 + 5, k.to_string())
                .unwrap();
        }
        churn(&t, |i| i.to_string(), 10_000);
        let pending = lock(&t.writer).gc.pending();
        assert!(pending <= PRESSED + POLL_EVERY, "{pending} batches pending");
        assert!(t.domain.pending() <= 10_000, "values queued once each");
        t.domain().barrier().unwrap();
        assert_eq!(t.domain.pending(), 0);
    }

    /// Drop-free commits leave their garbage untagged (the open batch)
    /// until a period ends or `reclaim` tags it: with no reader, `reclaim`
    /// recycles all of it; a pinned reader holds back every batch, tagged
    /// at a period's end or by `reclaim`, until it is gone.
    #[test]
    fn open_batch_is_tagged_by_period_or_reclaim() {
        let t = MapleTree::with_manual_reclaim();
        for k in 0..64u64 {
            t.insert(1000 + k * 10..1000 + k * 10 + 5, k).unwrap();
        }
        t.reclaim().unwrap();
        assert_eq!(lock(&t.writer).gc.pending(), 0);
        // Keep the remove below off a period's end: there the batch is
        // tagged and a grace period may be started (at most every 200 µs,
        // so depending on speed: it happened under ASan) and complete at
        // once with no reader, recycling the batch before we look.
        while lock(&t.writer).gc.retires % POLL_EVERY == POLL_EVERY - 1 {
            t.insert(5000..5001, 0).unwrap();
            t.remove(5000).unwrap();
            t.reclaim().unwrap();
        }
        assert_eq!(lock(&t.writer).gc.pending(), 0);
        t.remove(1000).unwrap();
        assert_eq!(lock(&t.writer).gc.pending(), 1);
        t.reclaim().unwrap();
        assert_eq!(
            lock(&t.writer).gc.pending(),
            0,
            "reclaim tags the open batch"
        );
        let g = t.pin();
        churn(&t, |i| i, 3 * POLL_EVERY as u64 + 1);
        let held = 2 * (3 * POLL_EVERY + 1);
        assert_eq!(lock(&t.writer).gc.pending(), held);
        t.reclaim().unwrap();
        assert_eq!(lock(&t.writer).gc.pending(), held, "freed under a pin");
        assert_eq!(g.get(1000), None);
        assert_eq!(g.get(1010), Some((1010..1015, &1)));
        drop(g);
        t.reclaim().unwrap();
        assert_eq!(lock(&t.writer).gc.pending(), 0);
        t.validate().unwrap();
    }

    /// I7's debug check survives the batched record: a node listed twice in
    /// one commit, or again while its first batch waits, panics before
    /// either list is queued a second time (so the node is freed once).
    #[test]
    #[cfg(debug_assertions)]
    fn a_node_retired_twice_panics() {
        use super::super::node::{KIND_LEAF, Leaf, NodePool, place};
        use super::Garbage;
        use std::panic::{AssertUnwindSafe, catch_unwind};
        let d = crate::srcu::Srcu::new();
        let mut w = Garbage::<u64>::new();
        let mut pool = NodePool::default();
        let n = place(&mut pool, KIND_LEAF, Leaf::<u64>::new(0));
        let mut twice = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: retire requirements: 1. `n` was never published; 2.
            // from `place` (listed twice on purpose: the check must stop it).
            unsafe { w.retire(&d, &mut pool, &mut vec![n, n], &mut Vec::new()) }
        }));
        assert!(twice.is_err(), "listed twice in one commit");
        w.queued.clear();
        // SAFETY: as above, listed once.
        unsafe { w.retire(&d, &mut pool, &mut vec![n], &mut Vec::new()) };
        twice = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: as above (retired again on purpose).
            unsafe { w.retire(&d, &mut pool, &mut vec![n], &mut Vec::new()) }
        }));
        assert!(twice.is_err(), "retired again while its batch waits");
        assert_eq!(w.pending(), 1);
        // SAFETY: no reader of `d` exists; `n` is in one batch, freed once.
        unsafe { w.free_all() };
    }

    /// A failed insert (overlap found at the leaf, in the same leaf or in
    /// the next subtree) or remove (no entry) inside a transaction copies
    /// nothing: committing it publishes no new root and retires nothing.
    /// The one-descent writers check before they copy.
    #[test]
    fn failed_writes_copy_nothing() {
        use crate::sync::Ordering;
        let t = MapleTree::with_manual_reclaim();
        for k in 0..3000u64 {
            t.insert(k * 10 + 1..k * 10 + 6, k).unwrap();
        }
        assert!(t.height() >= 3);
        let root = t.root.load(Ordering::Relaxed);
        let pending = lock(&t.writer).gc.pending();
        for k in 0..3000u64 {
            let mut w = t.write();
            for r in [
                k * 10..k * 10 + 2,     // the entry's start (its successor)
                k * 10 + 5..k * 10 + 7, // its end (its predecessor)
                k * 10 + 2..k * 10 + 3, // inside it
                k * 10..k * 10 + 11,    // over it
            ] {
                let e = w.insert(r.clone(), u64::MAX).unwrap_err();
                assert_eq!(
                    (e.kind, e.value),
                    (super::super::ErrorKind::Overlap, u64::MAX),
                    "{r:?}"
                );
            }
            assert_eq!(w.remove(k * 10 + 7), None);
            assert_eq!(w.remove(k * 10), None);
            w.commit();
            assert_eq!(t.root.load(Ordering::Relaxed), root, "k = {k}");
        }
        assert_eq!(lock(&t.writer).gc.pending(), pending);
        assert_eq!(t.len(), 3000);
        t.validate().unwrap();
    }

    /// In a manual tree, values with drop glue wait in the domain until
    /// `reclaim`, which frees them all when no reader is active.
    #[test]
    fn values_with_drop_glue_wait_for_reclaim() {
        let t = MapleTree::with_manual_reclaim();
        churn(&t, |i| i.to_string(), 1000);
        assert_eq!(t.domain.pending(), 1000);
        t.reclaim().unwrap();
        assert_eq!(t.domain.pending(), 0);
        assert_eq!(lock(&t.writer).gc.pending(), 0);
    }
}
