//! The differential driver over `AddressSpace` and a page-granular model:
//! one operation enum (mmap incl. FIXED / FIXED_NOREPLACE / hints / GROWSDOWN
//! / file maps, munmap, mprotect, mremap incl. MAYMOVE / FIXED / DONTUNMAP,
//! brk, madvise, fault), applied to both; every result compared (errno, the
//! address, the fault outcome), then every VMA (range, prot, shared,
//! growsdown, file and offset), every PTE (present, permissions) and the frame
//! counters compared, and `check()` run after every operation.
//!
//! The model is a map page → (attributes, VMA id, PTE permissions if a frame
//! is mapped). A VMA is a maximal run of contiguous pages with the same id;
//! new pages get fresh ids and merge with mergeable neighbours, as Linux's
//! `vma_merge` does (anonymous private with equal flags; contiguous pieces of
//! one file). Where the real call chooses an address (non-FIXED mmap, mremap
//! moves) the model checks the choice (page aligned, at or above
//! mmap_min_addr, below TASK_SIZE, free, the hint taken when it fits) and
//! follows it.
//!
//! Shared by the stable proptest (`tests/mm.rs::differential_against_page_model`)
//! and the libFuzzer target (`fuzz/fuzz_targets/mm_ops.rs`); both build `Op`s
//! through the same shaping functions ([`op_from_raw`]) from raw numbers.
#![allow(dead_code)]

use maple_rcu::mm::{
    Access, AddressSpace, Advice, DEFAULT_BRK, DEFAULT_STACK_RLIMIT, FaultError, FaultOutcome,
    FaultPolicy, MMAP_BASE, MMAP_MIN_ADDR, MapFlags, MapSource, MmError, Prot, RemapFlags,
    STACK_GUARD_GAP, TASK_SIZE,
};
use std::collections::BTreeMap;
use std::ops::Range;

pub const P: u64 = 4096;
/// The dense window most addresses land in.
pub const BASE: u64 = 0x10_0000;
pub const WIN: u32 = 128;
/// A stack growth larger than this many pages is skipped (not applied to
/// either side) to keep the page model small.
pub const MAX_GROWTH: u64 = 4096;

/// One call. Values are used as given (bad input on purpose).
#[derive(Clone, Debug)]
pub enum Op {
    Mmap {
        hint: Option<u64>,
        len: u64,
        prot: Prot,
        flags: MapFlags,
        /// `(file id, byte offset)`: `mmap_file`.
        file: Option<(u64, u64)>,
    },
    Munmap(u64, u64),
    Mprotect(u64, u64, Prot),
    Mremap {
        old: u64,
        old_len: u64,
        new_len: u64,
        flags: RemapFlags,
        new_addr: Option<u64>,
    },
    Brk(u64),
    Madvise(u64, u64, Advice),
    Fault(u64, Access),
}

// ----- shaping raw numbers into colliding arguments ----------------------------

const EDGES: [u64; 13] = [
    0,
    P,
    MMAP_MIN_ADDR - P,
    MMAP_MIN_ADDR,
    BASE - 1,
    TASK_SIZE - P,
    TASK_SIZE,
    TASK_SIZE + P,
    DEFAULT_BRK,
    1 << 47,
    u64::MAX - P + 1,
    u64::MAX,
    MMAP_BASE,
];

/// A value where `addr + len` or a page rounding overflows or crosses
/// TASK_SIZE: pages just below TASK_SIZE and `u64::MAX`, `u64::MAX - 8191`
/// (issue 10's mremap), 2^63 and up, unaligned values at TASK_SIZE, and
/// lengths just too long for the space.
pub fn near_top(x: u32) -> u64 {
    let k = u64::from(x >> 4) % 4;
    match x % 7 {
        0 => TASK_SIZE - (k + 1) * P,
        1 => TASK_SIZE - k,
        2 => u64::MAX - k * P,
        3 => u64::MAX - 8191 - k * P,
        4 => (1 << 63) + k * P,
        // Just too long to fit above mmap_min_addr (valid huge lengths
        // would make the page model allocate billions of pages).
        5 => TASK_SIZE - MMAP_MIN_ADDR + (k + 1) * P,
        _ => TASK_SIZE + 1 + k * P,
    }
}

/// An address: mostly a page of the window, sometimes unaligned, near
/// `MMAP_BASE` (where non-FIXED maps go), an edge value or near the top
/// ([`near_top`]).
pub fn addr(sel: u8, x: u32) -> u64 {
    let page = BASE + u64::from(x % WIN) * P;
    match sel % 16 {
        0..=9 => page,
        10 => near_top(x),
        11 => page + u64::from(x >> 16) % P,
        12 | 13 => MMAP_BASE - u64::from(x % 64 + 1) * P,
        _ => EDGES[x as usize % EDGES.len()],
    }
}

/// A length: mostly 1..16 pages, sometimes unaligned, 0, or past TASK_SIZE
/// (huge lengths always fail where they would create pages).
pub fn len(sel: u8, x: u32) -> u64 {
    let pages = u64::from(x % 16 + 1);
    match sel % 16 {
        0..=10 => pages * P,
        11 => (pages - 1) * P + 1 + u64::from(x >> 8) % (P - 1),
        12 => 0,
        13 => u64::from(WIN) * P,
        14 => [u64::MAX, u64::MAX - P + 2, 1 << 47, TASK_SIZE + 1][x as usize % 4],
        _ => near_top(x),
    }
}

/// A protection: mostly R/W/X combinations, sometimes with SEM, GROWSDOWN,
/// GROWSUP or an unknown bit.
pub fn prot(b: u8) -> Prot {
    let base = u32::from(b & 7);
    let extra = match b >> 4 {
        0 => 0x8,
        1 => 0x0100_0000,
        2 => 0x0200_0000,
        3 => 0x0300_0000,
        4 => 0x40,
        _ => 0,
    };
    Prot::from_bits_retain(base | extra)
}

/// mmap flags: the map type (sometimes none or both), FIXED,
/// FIXED_NOREPLACE, GROWSDOWN, ANONYMOUS, and sometimes ignored bits.
pub fn map_flags(b: u8, fixed: bool) -> MapFlags {
    let mut f = match b % 8 {
        0 => MapFlags::empty(),
        1 | 7 => MapFlags::SHARED,
        6 => MapFlags::SHARED | MapFlags::PRIVATE,
        _ => MapFlags::PRIVATE,
    };
    f |= MapFlags::ANONYMOUS;
    if fixed {
        f |= if b & 0x08 != 0 {
            MapFlags::FIXED_NOREPLACE
        } else {
            MapFlags::FIXED
        };
    }
    if b & 0x30 == 0x30 {
        f |= MapFlags::GROWSDOWN;
    }
    if b & 0xc0 == 0xc0 {
        f |= MapFlags::NORESERVE | MapFlags::STACK;
    }
    f
}

/// Builds one operation from raw numbers (the fuzzer's and proptest's shared
/// generator): `kind` picks the call, `a`..`c` shape addresses and lengths,
/// `f` and `g` flags.
pub fn op_from_raw(kind: u8, a: (u8, u32), b: (u8, u32), c: (u8, u32), f: u8, g: u8) -> Op {
    match kind % 16 {
        0..=2 => {
            let fixed = kind % 16 != 2;
            let hint = (fixed || g & 1 != 0).then(|| addr(a.0, a.1));
            let file = (g & 6 == 6).then(|| {
                let off = match g >> 5 {
                    0 => 0x123,
                    1 => !(P - 1), // the last page offset: offset + len overflows
                    n => u64::from(n) * P,
                };
                (u64::from(g >> 3 & 1) + 1, off)
            });
            Op::Mmap {
                hint,
                len: len(b.0, b.1),
                prot: prot(f & 0x0f | (c.0 & 0x70)),
                flags: map_flags(f, fixed),
                file,
            }
        }
        3 | 4 => Op::Munmap(addr(a.0, a.1), len(b.0, b.1)),
        5 | 6 => Op::Mprotect(addr(a.0, a.1), len(b.0, b.1), prot(f)),
        7 | 8 => {
            let mut flags = RemapFlags::from_bits_retain(u32::from(f & 7));
            if f & 0xf8 == 0xf8 {
                flags |= RemapFlags::from_bits_retain(8);
            } else if f & 0x38 != 0 {
                flags.remove(RemapFlags::DONTUNMAP);
            }
            let old_len = len(b.0, b.1);
            let new_len = if flags.contains(RemapFlags::DONTUNMAP) && g & 1 == 0 {
                old_len
            } else {
                len(c.0, c.1)
            };
            Op::Mremap {
                old: addr(a.0, a.1),
                old_len,
                new_len,
                flags,
                new_addr: (g & 2 != 0).then(|| addr(c.0, c.1.rotate_left(7))),
            }
        }
        9 => Op::Brk(match a.0 % 8 {
            0 => 0,
            1 => DEFAULT_BRK - P,
            2 => TASK_SIZE + 1,
            3 => u64::MAX,
            4 => DEFAULT_BRK + u64::from(a.1 % 0x9000),
            _ => DEFAULT_BRK + u64::from(a.1 % 24) * P,
        }),
        10 | 11 => Op::Madvise(
            addr(a.0, a.1),
            len(b.0, b.1),
            match f % 8 {
                0 => Advice::Normal,
                1 => Advice::WillNeed,
                2 => Advice::Free,
                _ => Advice::DontNeed,
            },
        ),
        _ => {
            let mut at = addr(a.0, a.1);
            if f & 1 != 0 {
                at = at.wrapping_add(u64::from(b.1) % P);
            }
            // Just below the window or the top region: stack growth.
            if f & 6 == 6 {
                at = at.wrapping_sub(P);
            }
            Op::Fault(
                at,
                match g % 4 {
                    0 => Access::Read,
                    1 => Access::Exec,
                    _ => Access::Write,
                },
            )
        }
    }
}

// ----- the model ---------------------------------------------------------------

/// A page's VMA attributes. `file` is `(id, byte offset of this page)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    pub prot: Prot,
    pub shared: bool,
    pub grows: bool,
    pub file: Option<(u64, u64)>,
}

impl Attr {
    fn at(self, delta: u64) -> Attr {
        Attr {
            file: self.file.map(|(id, o)| (id, o.wrapping_add(delta))),
            ..self
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Page {
    pub attr: Attr,
    pub vma: u64,
    /// The PTE's permissions when a frame is mapped.
    pub pte: Option<Prot>,
    /// MAP_SHARED anonymous: the backing object and the page's offset in it.
    pub obj: Option<(u64, u64)>,
}

/// Whether the page `a` and the page right after it, `b`, may be one VMA.
fn mergeable(a: &Attr, b: &Attr) -> bool {
    a.prot == b.prot
        && a.shared == b.shared
        && a.grows == b.grows
        && match (a.file, b.file) {
            (None, None) => !a.shared,
            (Some((i, o)), Some((j, q))) => i == j && o.wrapping_add(P) == q,
            _ => false,
        }
}

/// `do_mmap`'s map-type switch (after placement in Linux): shared or
/// private; EINVAL for none or both, and for a shared anonymous GROWSDOWN map.
fn map_type(flags: MapFlags, file: bool) -> Result<bool, MmError> {
    let shared = match flags.bits() & 3 {
        1 => true,
        2 => false,
        _ => return Err(MmError::Inval),
    };
    if shared && !file && flags.contains(MapFlags::GROWSDOWN) {
        return Err(MmError::Inval);
    }
    Ok(shared)
}

fn page_up(l: u64) -> Option<u64> {
    l.checked_add(P - 1).map(|l| l & !(P - 1))
}

#[derive(Debug)]
pub struct Model {
    pub pages: BTreeMap<u64, Page>,
    next_id: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub allocated: u64,
    pub freed: u64,
    /// MAP_SHARED anonymous objects: id → the page offsets they hold.
    pub objs: BTreeMap<u64, std::collections::BTreeSet<u64>>,
    /// Whether any object was ever made (the harness then reclaims).
    pub had_objects: bool,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            pages: BTreeMap::new(),
            next_id: 1,
            start_brk: DEFAULT_BRK,
            brk: DEFAULT_BRK,
            allocated: 0,
            freed: 0,
            objs: BTreeMap::new(),
            had_objects: false,
        }
    }
}

impl Model {
    fn fresh(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The VMA containing `a`.
    pub fn vma_at(&self, a: u64) -> Option<(Range<u64>, Attr)> {
        let p = a & !(P - 1);
        let id = self.pages.get(&p)?.vma;
        let mut lo = p;
        while lo >= P && self.pages.get(&(lo - P)).is_some_and(|q| q.vma == id) {
            lo -= P;
        }
        let mut hi = p + P;
        while self.pages.get(&hi).is_some_and(|q| q.vma == id) {
            hi += P;
        }
        Some((lo..hi, self.pages[&lo].attr))
    }

    /// The VMA containing `a` or the first one above it.
    pub fn next_vma(&self, a: u64) -> Option<(Range<u64>, Attr)> {
        let (&p, _) = self.pages.range((a & !(P - 1))..).next()?;
        self.vma_at(p)
    }

    /// The last VMA ending at or below `a`.
    pub fn prev_vma(&self, a: u64) -> Option<(Range<u64>, Attr)> {
        let (&p, _) = self.pages.range(..a).next_back()?;
        self.vma_at(p)
    }

    pub fn vmas(&self) -> Vec<(Range<u64>, Attr)> {
        let mut out: Vec<(Range<u64>, Attr)> = Vec::new();
        let mut last: Option<(u64, u64)> = None; // (end, id)
        for (&a, pg) in &self.pages {
            match (last, out.last_mut()) {
                (Some((end, id)), Some(v)) if end == a && id == pg.vma => v.0.end = a + P,
                _ => out.push((a..a + P, pg.attr)),
            }
            last = Some((a + P, pg.vma));
        }
        out
    }

    /// Whether a free `len`-byte window exists where placement searches:
    /// below `MMAP_BASE` (top-down) or above `PAGE_ALIGN(TASK_SIZE / 3)`
    /// (the bottom-up fallback), clear of GROWSDOWN guard gaps. Lengths near
    /// TASK_SIZE fit nowhere.
    fn room_for(&self, len: u64) -> bool {
        let legacy = (TASK_SIZE / 3 + P - 1) & !(P - 1);
        let mut lo = MMAP_MIN_ADDR;
        let fits = |a: u64, b: u64| {
            let top = b.min(MMAP_BASE);
            let fit = |x: u64, y: u64| y > x && y - x >= len;
            fit(a, top) || fit(a.max(legacy), b)
        };
        let mut any = false;
        for (r, at) in self.vmas() {
            let end = if at.grows {
                r.start.saturating_sub(STACK_GUARD_GAP)
            } else {
                r.start
            };
            any |= fits(lo, end);
            lo = lo.max(r.end);
        }
        any || fits(lo, TASK_SIZE)
    }

    fn free_in(&self, r: &Range<u64>) -> bool {
        self.pages.range(r.clone()).next().is_none()
    }

    /// Removes the pages of `r`, freeing their frames.
    fn clear(&mut self, r: Range<u64>) {
        let gone: Vec<u64> = self.pages.range(r).map(|(&a, _)| a).collect();
        for a in gone {
            // An object's page stays in the object (freed with it, `gc`).
            if self
                .pages
                .remove(&a)
                .is_some_and(|p| p.pte.is_some() && p.obj.is_none())
            {
                self.freed += 1;
            }
        }
    }

    /// Drops the objects no page maps any more, freeing their pages (the
    /// real object goes with its last VMA, after `reclaim`).
    pub fn gc(&mut self) {
        let used: std::collections::BTreeSet<u64> = self
            .pages
            .values()
            .filter_map(|p| p.obj.map(|o| o.0))
            .collect();
        let gone: Vec<u64> = self
            .objs
            .keys()
            .copied()
            .filter(|i| !used.contains(i))
            .collect();
        for i in gone {
            self.freed += self.objs.remove(&i).unwrap().len() as u64;
        }
    }

    /// Maps `r` (after clearing it) with `attr` for its first page.
    fn map(&mut self, r: Range<u64>, attr: Attr) {
        self.clear(r.clone());
        let obj = (attr.shared && attr.file.is_none()).then(|| {
            let id = self.fresh();
            self.objs.insert(id, Default::default());
            self.had_objects = true;
            id
        });
        for a in r.clone().step_by(P as usize) {
            let page = Page {
                attr: attr.at(a - r.start),
                vma: 0,
                pte: None,
                obj: obj.map(|id| (id, (a - r.start) / P)),
            };
            self.pages.insert(a, page);
        }
        self.settle(r);
    }

    /// The pages of `r` (all mapped) are new: group them into VMAs (adjacent
    /// mergeable pages fuse) and merge the edge groups with mergeable
    /// neighbours — `edit`'s rule, and Linux's `vma_merge`.
    fn settle(&mut self, r: Range<u64>) {
        if r.is_empty() {
            return;
        }
        let mut id = self.fresh();
        // Left neighbour: its whole VMA (scanning leftwards only) joins.
        if r.start >= P
            && let Some(left) = self.pages.get(&(r.start - P)).copied()
            && mergeable(&left.attr, &self.pages[&r.start].attr)
        {
            let mut a = r.start - P;
            loop {
                self.pages.get_mut(&a).unwrap().vma = id;
                if a < P || self.pages.get(&(a - P)).is_none_or(|q| q.vma != left.vma) {
                    break;
                }
                a -= P;
            }
        }
        // Pages of one spec (same old id) stay together; specs fuse when mergeable.
        let mut prev: Option<(Attr, u64)> = None;
        for a in r.clone().step_by(P as usize) {
            let pg = self.pages.get_mut(&a).expect("settle over a hole");
            if prev.is_some_and(|(p, old)| old != pg.vma && !mergeable(&p, &pg.attr)) {
                self.next_id += 1;
                id = self.next_id;
            }
            prev = Some((pg.attr, pg.vma));
            pg.vma = id;
        }
        let prev = prev.map(|p| p.0);
        if let Some(right) = self.pages.get(&r.end).copied()
            && mergeable(&prev.unwrap(), &right.attr)
        {
            let mut a = r.end;
            while self.pages.get(&a).is_some_and(|q| q.vma == right.vma) {
                self.pages.get_mut(&a).unwrap().vma = id;
                a += P;
            }
        }
    }

    /// A fresh id for the whole of `r` without merging (stack growth).
    fn relabel(&mut self, r: Range<u64>) {
        let id = self.fresh();
        for (_, pg) in self.pages.range_mut(r) {
            pg.vma = id;
        }
    }

    /// x86's hint rule: `[a, a + len)` inside the space and below the next
    /// VMA's `vm_start_gap`.
    fn hint_fits(&self, a: u64, len: u64) -> bool {
        a >= MMAP_MIN_ADDR && self.hint_fits_raw(a, len)
    }

    /// [`hint_fits`](Self::hint_fits) without the mmap_min_addr floor (x86's
    /// `mmap_address_hint_valid` and the gap below the next VMA).
    fn hint_fits_raw(&self, a: u64, len: u64) -> bool {
        if len > TASK_SIZE || a > TASK_SIZE - len {
            return false;
        }
        match self.next_vma(a) {
            None => true,
            Some((r, at)) => {
                let gap = if at.grows {
                    r.start.saturating_sub(STACK_GUARD_GAP)
                } else {
                    r.start
                };
                a + len <= gap && r.start >= a + len
            }
        }
    }

    /// Asserts that `got` is a valid placement of `len` bytes; `hint` (0 =
    /// none) must be taken when it fits.
    fn check_placement(&self, what: &str, got: u64, len: u64, hint: u64) {
        assert!(
            got.is_multiple_of(P) && got >= MMAP_MIN_ADDR && got <= TASK_SIZE - len,
            "{what}: placed at {got:#x} (len {len:#x})"
        );
        assert!(
            self.free_in(&(got..got + len)),
            "{what}: placed over a mapping at {got:#x}"
        );
        if hint != 0 && self.hint_fits(hint, len) {
            assert_eq!(got, hint, "{what}: a free hint must be taken");
        }
    }

    /// Moves `[old, old + keep)`'s frames to `dst` and maps
    /// `[dst, dst + new_len)` with the attributes of the VMA at `old`.
    fn move_pages(&mut self, old: u64, old_len: u64, new_len: u64, dst: u64, dontunmap: bool) {
        let attr = self.pages[&old].attr;
        let obj = self.pages[&old].obj;
        let keep = old_len.min(new_len);
        let frames: Vec<(u64, Option<Prot>)> = (0..keep / P)
            .map(|i| (i * P, self.pages[&(old + i * P)].pte))
            .collect();
        if dontunmap {
            for (_, pg) in self.pages.range_mut(old..old + old_len) {
                pg.pte = None;
            }
        } else {
            // Frames move, they are not freed.
            let gone: Vec<u64> = self
                .pages
                .range(old..old + old_len)
                .map(|(&a, _)| a)
                .collect();
            let moved: Vec<u64> = gone.iter().copied().filter(|&a| a < old + keep).collect();
            for a in gone {
                let pg = self.pages.remove(&a).unwrap();
                if pg.pte.is_some() && !moved.contains(&a) && pg.obj.is_none() {
                    self.freed += 1;
                }
            }
        }
        self.map(dst..dst + new_len, attr);
        if let Some((id, off)) = obj {
            // The moved VMA keeps its object (`map` made an empty one).
            for i in 0..new_len / P {
                self.pages.get_mut(&(dst + i * P)).unwrap().obj = Some((id, off + i));
            }
        }
        for (d, pte) in frames {
            self.pages.get_mut(&(dst + d)).unwrap().pte = pte;
        }
    }

    // ----- the calls -----------------------------------------------------

    /// The expected outcome of `mmap`; `real` is what the real call returned
    /// (its placement is checked and followed).
    pub fn mmap(
        &mut self,
        hint: Option<u64>,
        len: u64,
        prot: Prot,
        flags: MapFlags,
        file: Option<(u64, u64)>,
        real: &Result<u64, MmError>,
    ) -> Result<u64, MmError> {
        let offset = file.map_or(0, |f| f.1);
        if !offset.is_multiple_of(P) || len == 0 {
            return Err(MmError::Inval);
        }
        let len = page_up(len).ok_or(MmError::NoMem)?;
        if file.is_some() && offset.checked_add(len).is_none() {
            return Err(MmError::Overflow);
        }
        let fixed = flags.intersects(MapFlags::FIXED | MapFlags::FIXED_NOREPLACE);
        let hint = hint.unwrap_or(0);
        if len > TASK_SIZE {
            return Err(MmError::NoMem);
        }
        let addr = if fixed {
            if hint > TASK_SIZE - len {
                return Err(MmError::NoMem);
            }
            if !hint.is_multiple_of(P) {
                return Err(MmError::Inval);
            }
            if hint < MMAP_MIN_ADDR {
                return Err(MmError::Perm);
            }
            hint
        } else {
            let h = hint & !(P - 1);
            let h = if h != 0 && h < MMAP_MIN_ADDR {
                MMAP_MIN_ADDR
            } else {
                h
            };
            match real {
                Ok(a) => {
                    self.check_placement("mmap", *a, len, h);
                    *a
                }
                // The window always has room: only the map type (checked
                // after placement) may fail a non-FIXED map.
                Err(MmError::NoMem) if !self.room_for(len) => return Err(MmError::NoMem),
                Err(e) => {
                    return Err(map_type(flags, file.is_some())
                        .err()
                        .unwrap_or_else(|| panic!("non-FIXED mmap failed: {e:?}")));
                }
            }
        };
        let range = addr..addr + len;
        if flags.contains(MapFlags::FIXED_NOREPLACE) && !self.free_in(&range) {
            return Err(MmError::Exist);
        }
        let shared = map_type(flags, file.is_some())?;
        let grows = flags.contains(MapFlags::GROWSDOWN);
        let attr = Attr {
            prot: prot & Prot::ACCESS,
            shared,
            grows,
            file,
        };
        self.map(range, attr);
        Ok(addr)
    }

    pub fn munmap(&mut self, addr: u64, len: u64) -> Result<(), MmError> {
        if !addr.is_multiple_of(P) || addr > TASK_SIZE || len > TASK_SIZE - addr {
            return Err(MmError::Inval);
        }
        let len = page_up(len).unwrap();
        if len == 0 {
            return Err(MmError::Inval);
        }
        self.clear(addr..addr + len);
        Ok(())
    }

    pub fn mprotect(&mut self, addr: u64, len: u64, prot: Prot) -> Result<(), MmError> {
        let grows = prot & (Prot::GROWSDOWN | Prot::GROWSUP);
        if grows == Prot::GROWSDOWN | Prot::GROWSUP || !addr.is_multiple_of(P) {
            return Err(MmError::Inval);
        }
        if len == 0 {
            return Ok(());
        }
        let len = page_up(len).ok_or(MmError::NoMem)?;
        let end = addr.checked_add(len).ok_or(MmError::NoMem)?;
        if prot.bits() & !Prot::all().bits() != 0 {
            return Err(MmError::Inval);
        }
        let mut start = addr;
        let Some((first, fa)) = self.next_vma(start) else {
            return Err(MmError::NoMem);
        };
        if first.start >= end {
            return Err(MmError::NoMem);
        }
        if grows.contains(Prot::GROWSDOWN) {
            if !fa.grows {
                return Err(MmError::Inval);
            }
            start = first.start;
        } else {
            if first.start > start {
                return Err(MmError::NoMem);
            }
            if grows.contains(Prot::GROWSUP) {
                return Err(MmError::Inval);
            }
        }
        let new = prot & Prot::ACCESS;
        let mut cur = start;
        while cur < end {
            let Some(pg) = self.pages.get_mut(&cur) else {
                break;
            };
            pg.attr.prot = new;
            pg.pte = pg.pte.map(|p| p & new);
            cur += P;
        }
        self.settle(start..cur);
        if cur < end {
            Err(MmError::NoMem)
        } else {
            Ok(())
        }
    }

    pub fn mremap(
        &mut self,
        old: u64,
        old_len: u64,
        new_len: u64,
        flags: RemapFlags,
        new_addr: Option<u64>,
        real: &Result<u64, MmError>,
    ) -> Result<u64, MmError> {
        let known = RemapFlags::MAYMOVE | RemapFlags::FIXED | RemapFlags::DONTUNMAP;
        let dontunmap = flags.contains(RemapFlags::DONTUNMAP);
        if !known.contains(flags)
            || (flags.contains(RemapFlags::FIXED) && !flags.contains(RemapFlags::MAYMOVE))
            || (dontunmap && (!flags.contains(RemapFlags::MAYMOVE) || old_len != new_len))
            || !old.is_multiple_of(P)
        {
            return Err(MmError::Inval);
        }
        let old_len = page_up(old_len).ok_or(MmError::Inval)?;
        let new_len = page_up(new_len).ok_or(MmError::Inval)?;
        if new_len == 0 || old_len == 0 || old > TASK_SIZE || old_len > TASK_SIZE - old {
            return Err(MmError::Inval);
        }
        // Linux 6.17 `check_mremap_params`: "Is the new length silly?"
        if new_len > TASK_SIZE {
            return Err(MmError::Inval);
        }
        // `mremap_to` (FIXED or DONTUNMAP) checks the new address first.
        let to = flags.contains(RemapFlags::FIXED) || dontunmap;
        let n = new_addr.unwrap_or(0);
        if to {
            if !n.is_multiple_of(P) || new_len > TASK_SIZE || n > TASK_SIZE - new_len {
                return Err(MmError::Inval);
            }
            if old + old_len > n && n + new_len > old {
                return Err(MmError::Inval);
            }
        }
        let Some((vr, _)) = self.vma_at(old) else {
            return Err(MmError::Fault);
        };
        if !to && new_len <= old_len {
            self.clear(old + new_len..old + old_len);
            return Ok(old);
        }
        let checked = if to { old_len.min(new_len) } else { old_len };
        if old + checked > vr.end {
            return Err(MmError::Fault);
        }
        if flags.contains(RemapFlags::FIXED) {
            if n < MMAP_MIN_ADDR {
                return Err(MmError::Perm);
            }
            let old_len = if old_len > new_len {
                self.clear(old + new_len..old + old_len);
                new_len
            } else {
                old_len
            };
            self.move_pages(old, old_len, new_len, n, dontunmap);
            return Ok(n);
        }
        let new_end = old + new_len;
        if !dontunmap
            && old + old_len == vr.end
            && new_end <= TASK_SIZE
            && self.free_in(&(vr.end..new_end))
        {
            let attr = self.pages[&vr.start].attr;
            // One spec: the whole VMA, grown.
            for (_, pg) in self.pages.range_mut(vr.clone()) {
                pg.vma = 0;
            }
            let obj = self.pages[&vr.start].obj;
            for a in (vr.end..new_end).step_by(P as usize) {
                let page = Page {
                    attr: attr.at(a - vr.start),
                    vma: 0,
                    pte: None,
                    obj: obj.map(|(id, off)| (id, off + (a - vr.start) / P)),
                };
                self.pages.insert(a, page);
            }
            self.settle(vr.start..new_end);
            return Ok(old);
        }
        if !flags.contains(RemapFlags::MAYMOVE) {
            return Err(MmError::NoMem);
        }
        // DONTUNMAP without FIXED: a hint that fits is taken as is, and
        // `__get_unmapped_area`'s `security_mmap_addr` refuses it (EPERM)
        // below mmap_min_addr.
        if dontunmap && n != 0 && n < MMAP_MIN_ADDR && self.hint_fits_raw(n, new_len) {
            return Err(MmError::Perm);
        }
        if *real == Err(MmError::NoMem) && !self.room_for(new_len) {
            return Err(MmError::NoMem);
        }
        let dst = *real
            .as_ref()
            .unwrap_or_else(|e| panic!("mremap move found no room: {e:?}"));
        self.check_placement("mremap", dst, new_len, if dontunmap { n } else { 0 });
        self.move_pages(old, old_len, new_len, dst, dontunmap);
        Ok(dst)
    }

    pub fn brk(&mut self, new: u64) -> u64 {
        let orig = self.brk;
        if new < self.start_brk || new > TASK_SIZE {
            return orig;
        }
        let (newbrk, oldbrk) = (page_up(new).unwrap(), page_up(self.brk).unwrap());
        if oldbrk == newbrk {
            self.brk = new;
            return new;
        }
        if new <= self.brk {
            // Linux: shrinking needs a VMA in [newbrk, oldbrk).
            if self.free_in(&(newbrk..oldbrk)) {
                return orig;
            }
            self.brk = new;
            self.clear(newbrk..oldbrk);
            return new;
        }
        if let Some((r, at)) = self.next_vma(oldbrk) {
            let gap = if at.grows {
                r.start.saturating_sub(STACK_GUARD_GAP)
            } else {
                r.start
            };
            if newbrk + P > gap {
                return orig;
            }
        }
        let attr = Attr {
            prot: Prot::READ | Prot::WRITE,
            shared: false,
            grows: false,
            file: None,
        };
        self.map(oldbrk..newbrk, attr);
        self.brk = new;
        new
    }

    pub fn madvise(&mut self, addr: u64, len: u64, advice: Advice) -> Result<(), MmError> {
        if !addr.is_multiple_of(P) {
            return Err(MmError::Inval);
        }
        let len = page_up(len).ok_or(MmError::Inval)?;
        let end = addr.checked_add(len).ok_or(MmError::Inval)?;
        if end == addr {
            return Ok(());
        }
        let mut hole = false;
        let mut cur = addr;
        for (&a, pg) in self.pages.range_mut(addr..end) {
            hole |= a != cur;
            cur = a + P;
            if advice == Advice::DontNeed && pg.pte.take().is_some() && pg.obj.is_none() {
                self.freed += 1;
            }
        }
        hole |= cur < end;
        if hole { Err(MmError::NoMem) } else { Ok(()) }
    }

    /// The expected fault result, or `None` when the fault would grow a stack
    /// by more than `MAX_GROWTH` pages (the op is skipped).
    pub fn fault(&mut self, addr: u64, access: Access) -> Option<Result<FaultOutcome, FaultError>> {
        if addr >= TASK_SIZE {
            return Some(Err(FaultError::Segv));
        }
        let p = addr & !(P - 1);
        if !self.pages.contains_key(&p) {
            let Some((r, at)) = self.next_vma(p) else {
                return Some(Err(FaultError::Segv));
            };
            if !at.grows || p < MMAP_MIN_ADDR {
                return Some(Err(FaultError::Segv));
            }
            if let Some((pr, pa)) = self.prev_vma(r.start)
                && !pa.grows
                && !pa.prot.is_empty()
                && p - pr.end < STACK_GUARD_GAP
            {
                return Some(Err(FaultError::Segv));
            }
            // RLIMIT_STACK (`acct_stack_growth`): the whole VMA after growing.
            if r.end - p > DEFAULT_STACK_RLIMIT {
                return Some(Err(FaultError::Segv));
            }
            let delta = r.start - p;
            if at.file.is_some_and(|(_, o)| o < delta) {
                return Some(Err(FaultError::Segv));
            }
            if delta / P > MAX_GROWTH {
                return None;
            }
            let base = at.at(delta.wrapping_neg());
            for a in (p..r.start).step_by(P as usize) {
                let page = Page {
                    attr: base.at(a - p),
                    vma: 0,
                    pte: None,
                    obj: None,
                };
                self.pages.insert(a, page);
            }
            self.relabel(p..r.end);
        }
        let pg = self.pages.get_mut(&p).unwrap();
        let need = access.needs();
        if !pg.attr.prot.contains(need) {
            return Some(Err(FaultError::Access));
        }
        Some(Ok(match pg.pte {
            None => {
                pg.pte = Some(pg.attr.prot);
                // A shared object's page is allocated once (shmem).
                let fresh = match pg.obj {
                    Some((id, off)) => self.objs.get_mut(&id).unwrap().insert(off),
                    None => true,
                };
                self.allocated += u64::from(fresh);
                FaultOutcome::Installed
            }
            Some(pp) if pp.contains(need) => FaultOutcome::Present,
            Some(pp) => {
                pg.pte = Some(pp | pg.attr.prot);
                FaultOutcome::Upgraded
            }
        }))
    }
}

// ----- the harness ---------------------------------------------------------------

/// The real address space and the model, compared after every operation.
pub struct Harness {
    pub mm: AddressSpace,
    pub m: Model,
    /// Operations applied (skipped ones not counted).
    pub applied: usize,
}

impl Harness {
    pub fn new(policy: FaultPolicy) -> Harness {
        Harness {
            mm: AddressSpace::with_policy(policy),
            m: Model::default(),
            applied: 0,
        }
    }

    /// Applies `op` to both sides and compares everything.
    pub fn apply(&mut self, op: &Op) {
        let (mm, m) = (&self.mm, &mut self.m);
        match *op {
            Op::Mmap {
                hint,
                len,
                prot,
                flags,
                file,
            } => {
                let r = match file {
                    None => mm.mmap(hint, len, prot, flags),
                    Some((id, off)) => mm.mmap_file(hint, len, prot, flags, id, off),
                };
                let want = m.mmap(hint, len, prot, flags, file, &r);
                assert_eq!(r, want, "{op:?}");
            }
            Op::Munmap(a, l) => assert_eq!(mm.munmap(a, l), m.munmap(a, l), "{op:?}"),
            Op::Mprotect(a, l, p) => {
                assert_eq!(mm.mprotect(a, l, p), m.mprotect(a, l, p), "{op:?}")
            }
            Op::Mremap {
                old,
                old_len,
                new_len,
                flags,
                new_addr,
            } => {
                let r = mm.mremap(old, old_len, new_len, flags, new_addr);
                let want = m.mremap(old, old_len, new_len, flags, new_addr, &r);
                assert_eq!(r, want, "{op:?}");
            }
            Op::Brk(b) => {
                assert_eq!(mm.brk(b), m.brk(b), "{op:?}");
                let r = mm.brk_range();
                assert_eq!((r.start, r.end), (m.start_brk, m.brk), "{op:?}");
            }
            Op::Madvise(a, l, adv) => {
                assert_eq!(mm.madvise(a, l, adv), m.madvise(a, l, adv), "{op:?}")
            }
            Op::Fault(a, acc) => {
                let Some(want) = m.fault(a, acc) else {
                    return;
                };
                assert_eq!(mm.fault(a, acc), want, "{op:?}");
            }
        }
        self.applied += 1;
        self.m.gc();
        self.compare(op);
    }

    /// VMAs, PTEs, frame counters and `check()`.
    pub fn compare(&self, op: &Op) {
        let (mm, m) = (&self.mm, &self.m);
        let real: Vec<(Range<u64>, Attr)> = mm
            .vmas()
            .into_iter()
            .map(|v| {
                let file = match v.source {
                    MapSource::Anonymous => None,
                    MapSource::File { id, offset } => Some((id, offset)),
                };
                let attr = Attr {
                    prot: v.prot,
                    shared: v.shared,
                    grows: v.growsdown,
                    file,
                };
                (v.range, attr)
            })
            .collect();
        assert_eq!(real, m.vmas(), "VMAs after {op:?}");
        let mut present = 0;
        for (&a, pg) in &m.pages {
            let t = mm.translate(a).map(|t| t.prot);
            assert_eq!(t, pg.pte, "PTE at {a:#x} after {op:?}");
            present += u64::from(pg.pte.is_some());
        }
        if m.had_objects {
            // The real object goes with its last VMA's Srcu grace period.
            mm.reclaim();
        }
        let s = mm.stats();
        assert_eq!(
            (s.frames_allocated, s.frames_freed, s.frames_mapped),
            (m.allocated, m.freed, present),
            "frames after {op:?}"
        );
        mm.check()
            .unwrap_or_else(|e| panic!("check after {op:?}: {e}"));
    }
}

/// Runs `ops` under every fault policy.
pub fn run_all(ops: &[Op]) {
    for p in FaultPolicy::ALL {
        let mut h = Harness::new(p);
        for op in ops {
            h.apply(op);
        }
    }
}
