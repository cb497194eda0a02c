//! The reverse map: for each frame, the PTEs that map it, across the
//! address spaces of its fork family, and `try_to_unmap`, which removes a
//! frame from all of them (page reclaim, migration). docs/DESIGN.md §4.9,
//! "Reverse map".
//!
//! **pv entries with the frame.** Each frame keeps a list of `Pv { mm, addr }`
//! (the space's id in the family, the page's address) under its own mutex,
//! as NetBSD's pmap keeps pv entries with the page rather than in a global
//! hash. The lists live in a side table indexed like the frames (chunks of
//! 4096, allocated when a frame in them is first mapped), not in `Frame`:
//! exit walks the frames and must not pay for the lists' cache lines; the
//! first entry is inline, so a page mapped once allocates nothing. An entry is added and removed in the same PTL
//! critical section that sets or clears its PTE (fault, COW, zap, fork's
//! copy, mremap's move, swap-out), so per frame the list *is* the set of
//! present PTEs (M10), with two exceptions, both short and owned by a writer
//! that holds the PTL it is about to set: fork adds the child's entry under
//! the parent's PTL before the child's PTE is set (the child is registered
//! first), and mremap's move keeps the source entry until it sets the
//! target PTE and moves the entry. Exit removes nothing: its entries go
//! stale (their space leaves the registry first) and are dropped by the
//! next walker that meets them or when the frame is reused, so exit stays
//! a bulk teardown.
//!
//! **Lock order**: range lock → PTL → shared object → frame `pv` mutex → frame
//! shard. The `pv` mutex is a leaf: taken under a PTL (or alone, by a walker
//! dropping a stale entry) and never held across any other lock. A walker
//! does not hold it while it takes a PTL: it copies the list, releases it,
//! then for each entry takes the target space's link (read), pins the
//! space's Srcu domain, takes the PTL and rechecks that the PTE still maps
//! the frame, so an entry that moved or went is simply not found there.
//!
//! **Lifetime** (Linux's mmgrab): the registry maps a live space's id to its
//! [`MmLink`]: the space's page tables (at a stable address: the space boxes
//! them) behind an `RwLock`, and its Srcu domain. A walker takes the link
//! for reading while it works on that space; exit (`AddressSpace::drop`)
//! first removes the space from the registry, then takes the link for
//! writing once and clears it, so after that no walker can reach the
//! tables, and the tree's drop may drain the domain (no reader left).

use super::frame::{BLOCK_LEN, FrameTable, MAX_FRAMES};
use super::pagetable::{PTE_PRESENT, PTE_SWAP, PageTables, pte_pfn};
use super::space::AddressSpace;
use crate::srcu::Srcu;
use crate::sync::{Arc, AtomicPtr, AtomicU64, Mutex, Ordering, RwLock, lock, thread};
use std::collections::HashMap;

/// A pv entry: the PTE at `addr` in the family member numbered `mm` maps
/// the frame (or, for a short time, is about to: module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Pv {
    /// The space's id (never 0).
    pub(crate) mm: u64,
    pub(crate) addr: u64,
}

/// A space's page tables as a walker reaches them; null after exit.
struct TablesPtr(*const PageTables);

// SAFETY: the pointer is dereferenced only by a walker holding the link's
// read lock while it is non-null, and exit nulls it under the write lock
// before the tables are dropped (module docs, "Lifetime"). `PageTables` is
// `Sync`.
unsafe impl Send for TablesPtr {}
// SAFETY: as above.
unsafe impl Sync for TablesPtr {}

/// What an rmap walker needs of one space (module docs, "Lifetime").
pub(crate) struct MmLink {
    /// The space's boxed page tables; walkers hold this for reading while
    /// they work on the space, exit takes it for writing once and nulls it.
    tables: RwLock<TablesPtr>,
    /// The space's Srcu domain (its tree's): retired tables wait for it.
    domain: Arc<Srcu>,
}

/// One frame's pv entries: the first inline (a private page has one
/// mapping: no allocation), the others in `more`. `first.mm == 0`: none.
#[derive(Default)]
struct PvList {
    first: Pv,
    more: Vec<Pv>,
}

impl PvList {
    fn clear(&mut self) {
        self.first.mm = 0;
        self.more.clear();
    }

    fn iter(&self) -> impl Iterator<Item = &Pv> {
        std::iter::once(&self.first)
            .filter(|e| e.mm != 0)
            .chain(self.more.iter())
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut Pv> {
        std::iter::once(&mut self.first)
            .filter(|e| e.mm != 0)
            .chain(self.more.iter_mut())
    }

    fn push(&mut self, pv: Pv) {
        if self.first.mm == 0 {
            self.first = pv;
        } else {
            self.more.push(pv);
        }
    }

    fn remove(&mut self, pv: Pv) -> bool {
        if self.first.mm != 0 && self.first == pv {
            self.first = self.more.pop().unwrap_or_default();
            return true;
        }
        match self.more.iter().position(|e| *e == pv) {
            Some(i) => {
                self.more.swap_remove(i);
                true
            }
            None => false,
        }
    }

    fn entries(&self) -> Vec<Pv> {
        self.iter().copied().collect()
    }
}

/// Pv lists per chunk of frames (a side table: the frames themselves stay
/// small, so exit's walk over them touches what it did before the rmap).
#[cfg(not(loom))]
const PV_BITS: u32 = 12;
#[cfg(loom)]
const PV_BITS: u32 = 2;
const PV_CHUNK: usize = 1 << PV_BITS;
const _: () = assert!(
    PV_CHUNK.is_multiple_of(BLOCK_LEN),
    "a frame block's lists lie in one chunk"
);

/// The pv lists of one frame block (`frame.rs::FrameBlock`, which says
/// why), alone in a 4 KiB-aligned slot: 64 lists of 48 bytes, 3 KiB, so a
/// third more memory per frame (64 bytes instead of 48).
#[repr(align(4096))]
struct PvBlock([Mutex<PvList>; BLOCK_LEN]);

/// The family's reverse map (in the frame table): its live spaces by id,
/// and each frame's pv list under its own mutex.
pub(crate) struct Registry {
    next: AtomicU64,
    live: Mutex<HashMap<u64, Arc<MmLink>>>,
    /// Chunk `i`: the lists of frames `i * PV_CHUNK + 1 ..`, null until a
    /// frame in it is first mapped; freed with the table.
    pv: Box<[AtomicPtr<PvBlock>]>,
}

// SAFETY: the chunks are owned by the registry, installed once by CAS and
// freed only by its `Drop`; everything else is atomics and mutexes.
unsafe impl Sync for Registry {}
// SAFETY: as above; no thread affinity.
unsafe impl Send for Registry {}

impl Registry {
    pub(crate) fn new() -> Registry {
        Registry {
            next: AtomicU64::new(1),
            live: Mutex::new(HashMap::new()),
            pv: (0..MAX_FRAMES.div_ceil(PV_CHUNK))
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
        }
    }

    /// The pv list of `pfn`, creating its chunk if `create`.
    #[cfg_attr(
        loom,
        allow(clippy::modulo_one, reason = "one frame per block under loom")
    )]
    fn list(&self, pfn: u64, create: bool) -> Option<&Mutex<PvList>> {
        let i = (pfn - 1) as usize;
        let e = &self.pv[i >> PV_BITS];
        // Acquire: pairs with the Release of the install CAS below, so the
        // chunk's initialised lists are visible.
        let mut c = e.load(Ordering::Acquire);
        if c.is_null() {
            if !create {
                return None;
            }
            let fresh: Box<[PvBlock]> = (0..PV_CHUNK / BLOCK_LEN)
                .map(|_| PvBlock(std::array::from_fn(|_| Mutex::new(PvList::default()))))
                .collect();
            let p = Box::into_raw(fresh).cast::<PvBlock>();
            // AcqRel: Release publishes the initialised chunk to the Acquire
            // loads above; Acquire on failure sees the winner's chunk.
            match e.compare_exchange(c, p, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => c = p,
                Err(winner) => {
                    // SAFETY: `p` came from `Box::into_raw` of
                    // `PV_CHUNK / BLOCK_LEN` blocks above and was never
                    // published.
                    drop(unsafe {
                        Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, PV_CHUNK / BLOCK_LEN))
                    });
                    c = winner;
                }
            }
        }
        let j = i & (PV_CHUNK - 1);
        // SAFETY: `c` points to `PV_CHUNK / BLOCK_LEN` blocks that live
        // until the registry is dropped (`&self` is borrowed); `j /
        // BLOCK_LEN` is below that.
        let b = unsafe { &*c.add(j / BLOCK_LEN) };
        Some(&b.0[j % BLOCK_LEN])
    }

    /// A fresh space id (never reused, so a stale entry never names a
    /// later space).
    pub(crate) fn next_id(&self) -> u64 {
        // Relaxed: only hands out distinct numbers.
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers `pt` (boxed: its address is stable until exit) with its
    /// space's domain, before any PTE of it can map a frame.
    pub(crate) fn register(&self, pt: &PageTables, domain: &Arc<Srcu>) {
        let link = Arc::new(MmLink {
            tables: RwLock::new(TablesPtr(pt)),
            domain: domain.clone(),
        });
        lock(&self.live).insert(pt.id, link);
    }

    /// Exit: no walker can reach `id`'s tables when this returns.
    pub(crate) fn exit(&self, id: u64) {
        let link = lock(&self.live).remove(&id);
        if let Some(link) = link {
            let mut w = link.tables.write().unwrap_or_else(|e| e.into_inner());
            w.0 = std::ptr::null();
        }
    }

    fn get(&self, id: u64) -> Option<Arc<MmLink>> {
        lock(&self.live).get(&id).cloned()
    }

    /// The ids of the live spaces (checks).
    pub(crate) fn live_ids(&self) -> Vec<u64> {
        lock(&self.live).keys().copied().collect()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        for e in self.pv.iter() {
            // Relaxed: `&mut self`, no other thread.
            let p = e.load(Ordering::Relaxed);
            if !p.is_null() {
                // SAFETY: installed by `list` from `Box::into_raw` of
                // `PV_CHUNK / BLOCK_LEN` blocks; freed once, here.
                drop(unsafe {
                    Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, PV_CHUNK / BLOCK_LEN))
                });
            }
        }
    }
}

impl FrameTable {
    /// The pv list of a mapped frame.
    fn pv(&self, pfn: u64) -> crate::sync::MutexGuard<'_, PvList> {
        lock(self.rmap.list(pfn, true).expect("created"))
    }

    /// Adds the entry of a PTE being set to map `pfn` (under its PTL).
    /// `fresh`: the frame was just allocated, drop stale entries first.
    pub(crate) fn rmap_add(&self, pfn: u64, pv: Pv, fresh: bool) {
        let mut l = self.pv(pfn);
        if fresh {
            l.clear();
        }
        debug_assert!(
            !l.iter().any(|e| *e == pv),
            "pv entry {pv:?} of frame {pfn} twice"
        );
        l.push(pv);
    }

    /// Drops the stale entries of a frame just allocated for a shared
    /// object (`Shmem::get_or_insert`, under the object's lock; lock order:
    /// object → pv).
    pub(crate) fn rmap_clear(&self, pfn: u64) {
        self.pv(pfn).clear();
    }

    /// Removes the entry of a PTE being cleared (under its PTL), or a stale
    /// one (its space exited). True if it was there.
    #[inline]
    pub(crate) fn rmap_remove(&self, pfn: u64, pv: Pv) -> bool {
        self.pv(pfn).remove(pv)
    }

    /// mremap: the PTE moved from `from` to `to.addr` (under the target
    /// PTL).
    pub(crate) fn rmap_move(&self, pfn: u64, from: Pv, to: Pv) {
        match self.pv(pfn).iter_mut().find(|e| **e == from) {
            Some(e) => *e = to,
            None => debug_assert!(false, "mremap: no pv entry {from:?} of frame {pfn}"),
        }
    }

    /// A copy of a frame's entries.
    pub(crate) fn rmap_entries(&self, pfn: u64) -> Vec<Pv> {
        match self.rmap.list(pfn, false) {
            Some(l) => lock(l).entries(),
            None => Vec::new(),
        }
    }
}

/// How one entry's visit ended.
enum Visit {
    /// Its space exited: the stale entry was dropped.
    Stale,
    /// Its PTE no longer (or not yet) maps the frame.
    Absent,
    /// Unmapped (entry removed with the PTE).
    Unmapped,
}

/// Walk rounds before `try_to_unmap` gives up on entries in flight.
#[cfg(not(loom))]
const ROUNDS: u32 = 64;
#[cfg(loom)]
const ROUNDS: u32 = 3;

/// Visits `pv` of frame `pfn` (the caller holds a reference to it).
fn visit(frames: &FrameTable, pfn: u64, pv: Pv) -> Visit {
    let stale = || {
        frames.rmap_remove(pfn, pv);
        Visit::Stale
    };
    let Some(link) = frames.rmap.get(pv.mm) else {
        return stale();
    };
    let g = link.tables.read().unwrap_or_else(|e| e.into_inner());
    if g.0.is_null() {
        return stale();
    }
    // SAFETY: non-null under the read lock: the space has not exited and
    // cannot until we release it (module docs, "Lifetime").
    let pt = unsafe { &*g.0 };
    // The space's domain: retired last-level tables stay allocated (M3).
    let pin = link.domain.read();
    let Some(t) = pt.walk(&pin, pv.addr, false) else {
        return Visit::Absent;
    };
    let ptl = t.lock_at(pv.addr);
    let pte = ptl.get(pv.addr);
    if !ptl.linked() || pte & PTE_PRESENT == 0 || pte_pfn(pte) != pfn {
        return Visit::Absent;
    }
    if !frames.rmap_remove(pfn, pv) {
        // Our entry is gone with the PTE still there: the space's exit has
        // begun (it left the registry and waits for our read lock of its
        // link), so its entries are stale, and another walker that met
        // this one after that dropped it (`stale` above). The teardown
        // unmaps the PTE; leave it. For a live space this breaks M10.
        debug_assert!(
            frames.rmap.get(pv.mm).is_none(),
            "PTE without its pv entry (M10)"
        );
        return Visit::Stale;
    }
    if frames.counts(pfn).2 != 0 {
        // A shared object holds the frame: the next fault finds it there.
        ptl.set(pv.addr, 0);
        pt.free_frame(pte);
    } else {
        // A swap entry keeps the reference (and so the contents): the next
        // fault maps the frame again (a swap-cache hit).
        ptl.set(pv.addr, swap_pte(pfn));
        frames.swap_out(pfn);
    }
    Visit::Unmapped
}

/// The swap entry of `pfn`: not present, holding the frame.
pub(crate) fn swap_pte(pfn: u64) -> u64 {
    (pfn << 12) | PTE_SWAP
}

impl AddressSpace {
    /// `try_to_unmap`: removes frame `pfn` (as [`Pte::frame`](super::Pte)
    /// shows it) from every address space of this space's fork family that
    /// maps it, as page reclaim and migration do. A frame a MAP_SHARED
    /// anonymous object holds is just unmapped (the next fault maps it from
    /// the object again); any other frame's PTEs become swap entries that
    /// keep the frame and its contents (the next access faults and maps it
    /// again, under the COW rule: a model of swap whose writeback never
    /// happens, docs/DESIGN.md §4.9).
    ///
    /// Returns whether, when it finished, no live space of the family mapped
    /// the frame (Linux's `!folio_mapped()` check after `try_to_unmap`): a
    /// racing fault, fork or mremap may map it again, and a walk gives up on
    /// a mapping in flight after a few rounds. A free frame is mapped
    /// nowhere: true. Safe to call from any thread while the family runs
    /// any calls (it takes no range lock).
    pub fn try_to_unmap(&self, pfn: u64) -> bool {
        let frames: &FrameTable = &self.pt.frames;
        if !frames.try_get(pfn) {
            return true;
        }
        // Done when a snapshot is empty: every present PTE has its entry
        // (M10), entries in flight included, so at that instant no live
        // space maps the frame.
        let mut done = false;
        for _ in 0..ROUNDS {
            let entries = frames.rmap_entries(pfn);
            if entries.is_empty() {
                done = true;
                break;
            }
            let mut in_flight = false;
            for pv in entries {
                in_flight |= matches!(visit(frames, pfn, pv), Visit::Absent);
            }
            if in_flight {
                thread::yield_now();
            }
        }
        // Our reference (may free the frame if every mapping went away
        // meanwhile and no swap entry holds it).
        if frames.put(pfn) {
            self.pt.ctr.add(super::stats::Ctr::FramesFreed, 1);
        }
        done
    }
}
