//! A hypervisor-style guest address allocator (MMIO windows, BARs, hotplug
//! memory): allocate `size` bytes aligned to `align`, lowest fit first,
//! inside a window; free by the exact range handed out (vm-allocator's
//! `AddressAllocator::free`, which refuses anything else).

use crate::common::Rng;
use maple_rcu::MapleTree;
use std::collections::BTreeMap;
use std::ops::Range;

/// Exact free refused: the range is not one this allocator handed out.
#[derive(Debug, PartialEq, Eq)]
pub struct NotAllocated;

pub trait GuestAlloc: Sized {
    const NAME: &'static str;
    /// An allocator owning `window`.
    fn new(window: Range<u64>) -> Self;
    /// The lowest `align`-aligned free range of `size` bytes.
    fn alloc(&mut self, size: u64, align: u64) -> Option<Range<u64>>;
    /// Frees exactly `r`, as returned by `alloc`.
    fn free(&mut self, r: Range<u64>) -> Result<(), NotAllocated>;
    /// Frees exactly `r` (panics if it is not an allocation), then
    /// allocates as `alloc` (the freed space is available to it).
    fn free_and_alloc(&mut self, r: Range<u64>, size: u64, align: u64) -> Option<Range<u64>> {
        self.free(r).unwrap();
        self.alloc(size, align)
    }
}

/// `MapleTree<()>` of the allocated ranges: `alloc_range` is the gap search
/// (O(height) per candidate, see `ReadGuard::try_find_gap`), `free` is
/// `remove_exact`. The tree may also be read lock-free by other threads
/// (e.g. vCPU threads resolving MMIO exits) while this one allocates.
pub struct Maple {
    tree: MapleTree<()>,
    window: Range<u64>,
}

impl GuestAlloc for Maple {
    const NAME: &'static str = "MapleTree";
    fn new(window: Range<u64>) -> Self {
        Self {
            tree: MapleTree::new(),
            window,
        }
    }
    fn alloc(&mut self, size: u64, align: u64) -> Option<Range<u64>> {
        self.tree
            .alloc_range(size, align, self.window.clone(), ())
            .ok()
    }
    fn free(&mut self, r: Range<u64>) -> Result<(), NotAllocated> {
        self.tree.remove_exact(r).map_err(|_| NotAllocated)
    }
}

/// [`Maple`] with a step's free and alloc in one `WriteTxn`: one commit
/// instead of two, and readers see both changes at once.
pub struct MapleTxn(Maple);

impl GuestAlloc for MapleTxn {
    const NAME: &'static str = "MapleTree, 1 txn/step";
    fn new(window: Range<u64>) -> Self {
        Self(Maple::new(window))
    }
    fn alloc(&mut self, size: u64, align: u64) -> Option<Range<u64>> {
        self.0.alloc(size, align)
    }
    fn free(&mut self, r: Range<u64>) -> Result<(), NotAllocated> {
        self.0.free(r)
    }
    fn free_and_alloc(&mut self, r: Range<u64>, size: u64, align: u64) -> Option<Range<u64>> {
        let mut w = self.0.tree.write();
        w.remove_exact(r).unwrap();
        let got = w.alloc_range(size, align, self.0.window.clone(), ()).ok();
        w.commit();
        got
    }
}

/// The classic free list: `BTreeMap` start -> end of the free ranges,
/// first fit in address order (a linear scan of the free ranges until one
/// holds an aligned block), neighbours coalesced on free; a second map of
/// the allocated ranges checks exact frees.
pub struct FreeList {
    free: BTreeMap<u64, u64>,
    used: BTreeMap<u64, u64>,
}

impl GuestAlloc for FreeList {
    const NAME: &'static str = "BTreeMap free list";
    fn new(window: Range<u64>) -> Self {
        Self {
            free: BTreeMap::from([(window.start, window.end)]),
            used: BTreeMap::new(),
        }
    }
    fn alloc(&mut self, size: u64, align: u64) -> Option<Range<u64>> {
        let (s, e, a) = self.free.iter().find_map(|(&s, &e)| {
            let a = s.checked_next_multiple_of(align)?;
            (a < e && e - a >= size).then_some((s, e, a))
        })?;
        self.free.remove(&s);
        if s < a {
            self.free.insert(s, a);
        }
        if a + size < e {
            self.free.insert(a + size, e);
        }
        self.used.insert(a, a + size);
        Some(a..a + size)
    }
    fn free(&mut self, r: Range<u64>) -> Result<(), NotAllocated> {
        if self.used.get(&r.start) != Some(&r.end) {
            return Err(NotAllocated);
        }
        self.used.remove(&r.start);
        let (mut s, mut e) = (r.start, r.end);
        if let Some((&ps, &pe)) = self.free.range(..s).next_back()
            && pe == s
        {
            self.free.remove(&ps);
            s = ps;
        }
        if let Some(ne) = self.free.remove(&e) {
            e = ne;
        }
        self.free.insert(s, e);
        Ok(())
    }
}

/// The guest-physical window the allocators own (64 GiB above 4 GiB).
pub const WINDOW: Range<u64> = (4 << 30)..(68 << 30);

/// One request: a BAR-like power-of-two size of 4 KiB-32 MiB (mostly
/// small), aligned to its size (capped at 2 MiB) half of the time, else to
/// 4 KiB.
pub fn request(rng: &mut Rng) -> (u64, u64) {
    let p = rng.index(100);
    let shift = if p < 70 {
        rng.range(12, 16)
    } else if p < 95 {
        rng.range(17, 21)
    } else {
        rng.range(22, 25)
    };
    let size = 1u64 << shift;
    let align = if rng.index(2) == 0 {
        size.min(2 << 20)
    } else {
        4096
    };
    (size, align)
}

/// A steady-state allocator with `live` allocations, built by the same
/// sequence of allocations and frees for every contender (so the free
/// space is fragmented the same way), and the list of live ranges.
pub fn warm<A: GuestAlloc>(live: usize, rng: &mut Rng) -> (A, Vec<Range<u64>>) {
    let mut a = A::new(WINDOW);
    let mut held = Vec::with_capacity(live);
    for _ in 0..live {
        let (size, align) = request(rng);
        held.push(a.alloc(size, align).expect("window holds the warm-up"));
    }
    for _ in 0..live * 4 {
        step(&mut a, &mut held, rng);
    }
    (a, held)
}

/// One steady-state step: frees a random live allocation (exactly), then
/// allocates a new one. Returns the new range.
pub fn step<A: GuestAlloc>(a: &mut A, held: &mut [Range<u64>], rng: &mut Rng) -> Range<u64> {
    let i = rng.index(held.len());
    let (size, align) = request(rng);
    let r = a
        .free_and_alloc(held[i].clone(), size, align)
        .expect("window has room");
    held[i] = r.clone();
    r
}

/// Checks that both allocators (lowest fit, both) hand out the same ranges
/// for the same sequence, and both refuse a free that is not exactly an
/// allocation.
pub fn agree(live: usize, steps: usize) {
    let (mut a, mut ha) = warm::<Maple>(live, &mut Rng::new(3));
    let (mut b, mut hb) = warm::<FreeList>(live, &mut Rng::new(3));
    let (mut c, mut hc) = warm::<MapleTxn>(live, &mut Rng::new(3));
    assert_eq!((&ha, &hc), (&hb, &hb));
    let (mut ra, mut rb, mut rc) = (Rng::new(4), Rng::new(4), Rng::new(4));
    for _ in 0..steps {
        let x = step(&mut b, &mut hb, &mut rb);
        assert_eq!(step(&mut a, &mut ha, &mut ra), x);
        assert_eq!(step(&mut c, &mut hc, &mut rc), x);
    }
    let r = ha[0].clone();
    for bad in [
        r.start..r.end - 1,
        r.start + 1..r.end,
        r.start..r.end + 4096,
    ] {
        assert_eq!(a.free(bad.clone()), Err(NotAllocated));
        assert_eq!(b.free(bad), Err(NotAllocated));
    }
    a.tree.validate().unwrap();
}
