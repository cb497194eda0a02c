//! Torture test in the spirit of Linux's rcutorture: reader threads check the
//! invariants of whatever version they pin, continuously, while a writer
//! changes the structure as fast as it can; at the end every value must be
//! accounted for.
//!
//! `#[ignore]` by default. Run for `TORTURE_SECS` seconds (default 10):
//!
//! ```text
//! TORTURE_SECS=60 cargo test --release --test torture -- --ignored
//! ```
//!
//! The harness ([`run`]) knows nothing about the structure under test: each
//! subsystem is a [`Section`] (readers, a writer step, final accounting).
//! `TreeSection` tortures `MapleTree`; `MmSection` tortures three
//! `AddressSpace`s (one per `FaultPolicy`): fault threads are its readers,
//! mmap/munmap/mprotect/mremap/madvise its writer steps, frame/VMA/table
//! accounting its end. The two tests run side by side (libtest's default two
//! test threads), so the whole run takes `TORTURE_SECS`, not twice that.

#[path = "common/tree_model.rs"]
mod tree_model;

use maple_rcu::MapleTree;
use maple_rcu::mm::{
    Access, AddressSpace, Advice, FaultError, FaultPolicy, MapFlags, MmError, Prot, RemapFlags,
    TASK_SIZE,
};
use maple_rcu::tree::ErrorKind;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tree_model::Model;

// ---------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------

/// SplitMix64: a tiny deterministic generator, seeded per thread.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0; the bias is irrelevant here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

/// One subsystem under torture.
trait Section: Sync {
    /// One reader pass (pins, checks, unpins); returns the number of checks.
    fn read(&self, reader: usize, rng: &mut Rng) -> u64;
    /// One writer step; returns whether it published a change.
    fn write(&self, rng: &mut Rng) -> bool;
    /// After every thread has stopped: accounting; returns a summary line.
    fn finish(self) -> String;
}

fn torture_secs() -> u64 {
    std::env::var("TORTURE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

/// Sets the flag when dropped, also on unwind: a panicking thread stops the others.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs `readers` reader threads and one writer (this thread) for
/// `TORTURE_SECS`, then `finish`. A failed check in any thread fails the test.
fn run<S: Section>(name: &str, s: S, readers: usize) {
    let secs = torture_secs();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let stop = AtomicBool::new(false);
    let (mut writes, mut commits) = (0u64, 0u64);
    let reads: Vec<(u64, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..readers)
            .map(|k| {
                let (s, stop) = (&s, &stop);
                scope.spawn(move || {
                    let _stop = StopOnDrop(stop);
                    let mut rng = Rng(0x5eed + k as u64);
                    let (mut passes, mut checks) = (0u64, 0u64);
                    while !stop.load(Ordering::Relaxed) {
                        checks += s.read(k, &mut rng);
                        passes += 1;
                    }
                    (passes, checks)
                })
            })
            .collect();
        let mut rng = Rng(0xdead_beef);
        let _stop = StopOnDrop(&stop);
        while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            commits += u64::from(s.write(&mut rng));
            writes += 1;
        }
        stop.store(true, Ordering::Relaxed);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let summary = s.finish();
    let passes: u64 = reads.iter().map(|r| r.0).sum();
    let checks: u64 = reads.iter().map(|r| r.1).sum();
    println!(
        "torture {name}: {secs} s, {readers} readers: {passes} passes, {checks} checks; \
         writer: {writes} transactions, {commits} committed; {summary}"
    );
    assert!(passes > 0 && commits > 0, "nothing happened");
}

// ---------------------------------------------------------------------------
// MapleTree
// ---------------------------------------------------------------------------

const LIVE: u64 = 0x11FE_11FE_11FE_11FE;
const DEAD: u64 = 0xDEAD_DEAD_DEAD_DEAD;
/// Entries live in `[0, SPACE)`, except the marker at `[u64::MAX - 1, u64::MAX)`.
const SPACE: u64 = 1 << 28;
/// The writer keeps the population around this size.
const TARGET: usize = 3000;
const MARKER: Range<u64> = u64::MAX - 1..u64::MAX;

/// A value that knows its own range and is poisoned when dropped, so a
/// reader that reaches a freed value (a reclamation bug) sees `DEAD` (or ASan
/// reports a use after free).
struct Val {
    range: Range<u64>,
    /// For the marker: the generation and the entry count of its version.
    generation: u64,
    count: usize,
    magic: u64,
    live: Arc<AtomicUsize>,
}

impl Val {
    fn new(range: Range<u64>, generation: u64, count: usize, live: &Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, Ordering::Relaxed);
        Self {
            range,
            generation,
            count,
            magic: LIVE,
            live: live.clone(),
        }
    }
}

impl Drop for Val {
    fn drop(&mut self) {
        assert_eq!(self.magic, LIVE, "value dropped twice");
        self.magic = DEAD;
        self.live.fetch_sub(1, Ordering::Relaxed);
    }
}

struct TreeSection {
    t: MapleTree<Val>,
    live: Arc<AtomicUsize>,
    /// The generation of the last committed version (writer-owned).
    generation: AtomicUsize,
    /// The newest generation each reader has seen (never goes back).
    seen: Vec<AtomicUsize>,
}

impl TreeSection {
    fn new(readers: usize) -> Self {
        let live = Arc::new(AtomicUsize::new(0));
        let t = MapleTree::new();
        t.insert(MARKER, Val::new(MARKER, 0, 1, &live))
            .unwrap_or_else(|_| unreachable!());
        Self {
            t,
            live,
            generation: AtomicUsize::new(0),
            seen: (0..readers).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    /// A random range of 1 byte .. 64 KiB inside `SPACE`.
    fn range(rng: &mut Rng) -> Range<u64> {
        let max = if rng.chance(4) { 1 << 16 } else { 64 };
        let len = 1 + rng.below(max);
        let s = rng.below(SPACE - len);
        s..s + len
    }
}

impl Section for TreeSection {
    fn read(&self, reader: usize, rng: &mut Rng) -> u64 {
        let r = self.t.pin();
        let mut checks = 0u64;
        // 1. The whole version: sorted, non-overlapping, values match their
        //    ranges and are alive; the marker is last and counts the entries.
        let mut all: Vec<(Range<u64>, u64)> = Vec::with_capacity(TARGET * 2);
        let mut marker = None;
        let mut prev_end = 0;
        for (k, v) in r.iter() {
            assert_eq!(v.magic, LIVE, "reader reached a dropped value at {k:?}");
            assert_eq!(v.range, k, "value stored under the wrong range");
            assert!(
                k.start < k.end && k.start >= prev_end,
                "order: {k:?} after {prev_end:#x}"
            );
            prev_end = k.end;
            if k == MARKER {
                marker = Some((v.generation, v.count));
            }
            all.push((k, v.generation));
        }
        let (generation, count) = marker.expect("marker missing");
        assert_eq!(all.last().map(|e| e.0.clone()), Some(MARKER));
        assert_eq!(all.len(), count, "a transaction is half visible");
        // Versions never go back in time for one reader.
        let newest = self.seen[reader].fetch_max(generation as usize, Ordering::Relaxed);
        assert!(
            newest <= generation as usize,
            "generation went back: {newest} -> {generation}"
        );
        checks += all.len() as u64 + 2;

        // 2. Backwards iteration gives the same entries.
        let back: Vec<(Range<u64>, u64)> = r.iter().rev().map(|(k, v)| (k, v.generation)).collect();
        assert!(back.iter().rev().eq(all.iter()), "iter().rev() differs");

        // 3. Point and gap queries agree with the iteration (via the model).
        let m = Model {
            map: all.iter().map(|(k, g)| (k.start, (k.end, *g))).collect(),
        };
        assert_eq!(r.gaps(0..u64::MAX).collect::<Vec<_>>(), m.free());
        for _ in 0..32 {
            let a = rng.below(SPACE + 0x1000);
            let pick = |e: Option<(Range<u64>, &Val)>| e.map(|(k, v)| (k, v.generation));
            assert_eq!(pick(r.get(a)), m.get(a), "get {a:#x}");
            assert_eq!(pick(r.next(a)), m.next(a), "next {a:#x}");
            assert_eq!(pick(r.prev(a)), m.prev(a), "prev {a:#x}");
            let max = if rng.chance(2) { 64 } else { 1 << 16 };
            let size = 1 + rng.below(max);
            let align = 1 << rng.below(14);
            let lo = rng.below(SPACE);
            let w = lo..lo + 1 + rng.below(SPACE / 8);
            assert_eq!(
                r.try_find_gap(size, align, w.clone()).ok(),
                m.find_gap(size, align, w.clone(), false),
                "find_gap({size:#x}, {align:#x}, {w:x?})"
            );
            assert_eq!(
                r.try_find_gap_rev(size, align, w.clone()).ok(),
                m.find_gap(size, align, w.clone(), true),
                "find_gap_rev({size:#x}, {align:#x}, {w:x?})"
            );
            let got: Vec<_> = r.range(w.clone()).map(|(k, v)| (k, v.generation)).collect();
            assert_eq!(got, m.range(w), "range");
            checks += 7;
        }

        // 4. Snapshot stability: sometimes hold the version while the writer
        //    commits, then read it again: same entries, all values alive.
        if rng.chance(8) {
            std::thread::sleep(Duration::from_micros(rng.below(2000)));
            let again = r.iter().map(|(k, v)| {
                assert_eq!(v.magic, LIVE, "pinned value was dropped");
                (k, v.generation)
            });
            assert!(again.eq(all.iter().cloned()), "a pinned version changed");
            checks += all.len() as u64;
        }
        checks
    }

    fn write(&self, rng: &mut Rng) -> bool {
        let generation = self.generation.load(Ordering::Relaxed) as u64 + 1;
        let mut w = self.t.write();
        for _ in 0..1 + rng.below(8) {
            let grow = w.len() < TARGET;
            match rng.below(8) {
                0..=2 if grow || rng.chance(2) => {
                    let r = Self::range(rng);
                    let v = Val::new(r.clone(), generation, 0, &self.live);
                    // Refused (overlap): the value comes back and drops here.
                    let _ = w.insert(r, v);
                }
                3 if grow => {
                    let (size, align) = (1 + rng.below(0x4000), 1 << rng.below(13));
                    let lo = rng.below(SPACE / 2);
                    let within = lo..lo + SPACE / 4;
                    // find_gap on the pending version, then alloc_range with
                    // the same arguments must take exactly that range.
                    let rev = rng.chance(2);
                    let at = if rev {
                        w.try_find_gap_rev(size, align, within.clone()).ok()
                    } else {
                        w.try_find_gap(size, align, within.clone()).ok()
                    };
                    let r = at.map_or(0..1, |s| s..s + size);
                    let v = Val::new(r.clone(), generation, 0, &self.live);
                    let got = if rev {
                        w.alloc_range_rev(size, align, within, v)
                    } else {
                        w.alloc_range(size, align, within, v)
                    };
                    match (at, got) {
                        (Some(_), Ok(g)) => assert_eq!(g, r),
                        (None, Err(e)) => assert_eq!(e.kind, ErrorKind::NoSpace),
                        (at, got) => panic!("find_gap {at:?} but alloc {:?}", got.err()),
                    }
                }
                _ => {
                    let a = rng.below(SPACE);
                    if let Some((r, _)) = w.next(a).filter(|(r, _)| *r != MARKER) {
                        assert_eq!(w.remove(r.start), Some(r));
                    }
                }
            }
        }
        // Replace the marker: it records this version's generation and size.
        w.remove(MARKER.start).expect("marker missing");
        let count = w.len() + 1;
        let v = Val::new(MARKER, generation, count, &self.live);
        w.insert(MARKER, v).unwrap_or_else(|_| unreachable!());
        if rng.chance(32) {
            w.validate().unwrap();
        }
        if rng.chance(8) {
            return false; // dropped: aborted; readers must never see it
        }
        w.commit();
        self.generation
            .store(generation as usize, Ordering::Relaxed);
        if generation.is_multiple_of(16) {
            self.t.reclaim().unwrap();
        }
        if generation.is_multiple_of(64) {
            self.t.validate().unwrap();
        }
        true
    }

    fn finish(self) -> String {
        self.t.validate().unwrap();
        let len = self.t.len();
        let committed = self.generation.load(Ordering::Relaxed);
        let before_barrier = self.live.load(Ordering::Relaxed);
        self.t.domain().barrier().unwrap();
        let live = self.live.load(Ordering::Relaxed);
        assert_eq!(live, len, "after barrier every retired value is dropped");
        let counter = self.live.clone();
        drop(self.t);
        assert_eq!(
            counter.load(Ordering::Relaxed),
            0,
            "dropping the tree frees every value"
        );
        format!(
            "{committed} generations, final len {len}, {before_barrier} values live before \
             barrier, {live} after, 0 after drop"
        )
    }
}

#[test]
#[ignore = "torture: run explicitly (TORTURE_SECS, default 10)"]
fn torture_tree() {
    run("tree", TreeSection::new(2), 2);
}

// ---------------------------------------------------------------------------
// mm: AddressSpace
// ---------------------------------------------------------------------------

const PG: u64 = 4096;
const RW: Prot = Prot::READ.union(Prot::WRITE);
const FIXED: MapFlags = MapFlags::PRIVATE
    .union(MapFlags::ANONYMOUS)
    .union(MapFlags::FIXED);
/// The stable region: even pages stay mapped RW for the whole run (faults on
/// them must succeed); the writer splits and merges the VMA around them by
/// changing, unmapping, remapping and moving the odd pages.
const STABLE: u64 = 0x2000_0000;
const STABLE_PAGES: u64 = 64;
/// Where an odd stable page is moved to and back from.
const SCRATCH: u64 = 0x2800_0000;
/// The churn region (two 2 MiB page-table spans, so tables are emptied,
/// retired and repopulated): anything goes.
const CHURN: u64 = 0x3000_0000;
const CHURN_PAGES: u64 = 1024;
const POLICIES: [FaultPolicy; 4] = FaultPolicy::ALL;

struct MmSection {
    spaces: Vec<AddressSpace>,
    /// Each space's live children (issue 14): forked and exited by the
    /// writer; readers fault in them (holding an `Arc`, so an exit may
    /// complete on a reader thread) and call `try_to_unmap` on the family.
    children: Vec<Mutex<Vec<Arc<AddressSpace>>>>,
    /// Forks, exits and `try_to_unmap` calls so far.
    forks: AtomicUsize,
    exits: AtomicUsize,
    unmaps: AtomicUsize,
    /// Writer steps so far (picks the space: the writer rotates).
    steps: AtomicUsize,
    /// Writer-side counts: calls, successful calls, M5 page checks.
    calls: AtomicUsize,
    m5_checks: AtomicUsize,
}

impl MmSection {
    fn new() -> Self {
        let spaces: Vec<AddressSpace> = POLICIES
            .iter()
            .map(|&p| AddressSpace::with_policy(p))
            .collect();
        for mm in &spaces {
            mm.mmap(Some(STABLE), STABLE_PAGES * PG, RW, FIXED).unwrap();
            mm.mmap(Some(CHURN), CHURN_PAGES * PG, RW, FIXED).unwrap();
        }
        Self {
            children: spaces.iter().map(|_| Mutex::new(Vec::new())).collect(),
            spaces,
            forks: AtomicUsize::new(0),
            exits: AtomicUsize::new(0),
            unmaps: AtomicUsize::new(0),
            steps: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
            m5_checks: AtomicUsize::new(0),
        }
    }

    /// Invariant M5 right after a writer call returned: no PTE in `r` grants
    /// more than the VMA now covering it allows, and a PTE only lies inside a
    /// VMA. The PTE is read first: VMAs change only by this (the only)
    /// writer, or grow by a reader's stack expansion, which happens before
    /// any PTE the expansion lets in.
    fn m5(&self, mm: &AddressSpace, r: Range<u64>, what: &str) {
        let ptes: Vec<(u64, Prot)> = (r.start..r.end.min(TASK_SIZE))
            .step_by(PG as usize)
            .filter_map(|a| mm.translate(a).map(|t| (a, t.prot)))
            .collect();
        let vmas = mm.vmas();
        for (a, prot) in ptes {
            let v = vmas.iter().find(|v| v.range.contains(&a));
            let v = v.unwrap_or_else(|| panic!("{what}: PTE at {a:#x} outside every VMA"));
            assert!(
                v.prot.contains(prot),
                "{what}: PTE at {a:#x} grants {prot:?}, VMA {:x?} allows {:?}",
                v.range,
                v.prot
            );
        }
        self.m5_checks
            .fetch_add(((r.end - r.start) / PG) as usize, Ordering::Relaxed);
    }

    /// A random page of the stable or the churn region.
    fn any_page(rng: &mut Rng) -> u64 {
        if rng.chance(2) {
            STABLE + rng.below(STABLE_PAGES) * PG
        } else {
            CHURN + rng.below(CHURN_PAGES) * PG
        }
    }

    /// Unmaps the frame `mm` maps at a random page from the whole family
    /// (`try_to_unmap`), if one is mapped there.
    fn unmap_some(&self, mm: &AddressSpace, rng: &mut Rng) {
        if let Some(t) = mm.translate(Self::any_page(rng)) {
            mm.try_to_unmap(t.frame);
            self.unmaps.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A family step on space `i` (issue 14): fork a child (at most two
    /// live: the oldest exits), exit one, or `try_to_unmap` a frame.
    fn family_step(&self, i: usize, rng: &mut Rng) -> bool {
        let mm = &self.spaces[i];
        match rng.below(3) {
            0 => {
                let c = Arc::new(mm.fork());
                self.forks.fetch_add(1, Ordering::Relaxed);
                let old = {
                    let mut l = self.children[i].lock().unwrap();
                    l.push(c);
                    (l.len() > 2).then(|| l.remove(0))
                };
                // Exit outside the list's lock (a reader may hold it last).
                if old.is_some() {
                    self.exits.fetch_add(1, Ordering::Relaxed);
                }
                drop(old);
            }
            1 => {
                let c = self.children[i].lock().unwrap().pop();
                if c.is_some() {
                    self.exits.fetch_add(1, Ordering::Relaxed);
                }
                drop(c);
            }
            _ => self.unmap_some(mm, rng),
        }
        true
    }

    /// A reader pass in a child of space `i`, if it has one: faults, reads
    /// and writes anywhere (any outcome: the child's VMAs are the parent's
    /// at fork time), and now and then `try_to_unmap` of its frames.
    fn read_child(&self, i: usize, rng: &mut Rng) -> u64 {
        let c = {
            let l = self.children[i].lock().unwrap();
            if l.is_empty() {
                return 0;
            }
            l[rng.below(l.len() as u64) as usize].clone()
        };
        for _ in 0..16 {
            let a = Self::any_page(rng);
            match rng.below(4) {
                0 => {
                    let _ = c.write(a, rng.next());
                }
                1 => {
                    let _ = c.read(a);
                }
                2 => self.unmap_some(&c, rng),
                _ => {
                    let _ = c.fault(a, Access::Write);
                }
            }
        }
        16
    }

    /// A page-aligned range of 1..=32 pages inside the churn region.
    fn churn_range(rng: &mut Rng) -> (u64, u64) {
        let n = 1 + rng.below(32);
        let a = CHURN + rng.below(CHURN_PAGES - n) * PG;
        (a, n * PG)
    }

    fn random_prot(rng: &mut Rng) -> Prot {
        [Prot::NONE, Prot::READ, RW, RW | Prot::EXEC][rng.below(4) as usize]
    }

    /// One call on the stable region (odd pages only).
    fn stable_step(&self, mm: &AddressSpace, rng: &mut Rng) -> bool {
        let odd = STABLE + (rng.below(STABLE_PAGES / 2) * 2 + 1) * PG;
        let r = odd..odd + PG;
        let ok = match rng.below(6) {
            0 => mm.mprotect(odd, PG, Prot::READ).is_ok(),
            1 => mm.mprotect(odd, PG, Prot::NONE).is_ok(),
            // Merges the whole region back (ENOMEM if an odd page is out).
            2 => mm.mprotect(STABLE, STABLE_PAGES * PG, RW).is_ok(),
            3 => mm.munmap(odd, PG).is_ok(),
            4 => mm.mmap(Some(odd), PG, RW, FIXED).is_ok(),
            _ => {
                // Move the odd page out and back (its frame travels along).
                let mf = RemapFlags::MAYMOVE | RemapFlags::FIXED;
                match mm.mremap(odd, PG, PG, mf, Some(SCRATCH)) {
                    Ok(d) => {
                        assert_eq!(d, SCRATCH);
                        self.m5(mm, SCRATCH..SCRATCH + PG, "mremap out");
                        assert_eq!(mm.mremap(SCRATCH, PG, PG, mf, Some(odd)), Ok(odd));
                        true
                    }
                    // The odd page is not mapped right now.
                    Err(e) => {
                        assert_eq!(e, MmError::Fault);
                        false
                    }
                }
            }
        };
        self.m5(mm, r, "stable");
        if rng.chance(16) {
            let _ = mm.madvise(STABLE, STABLE_PAGES * PG, Advice::DontNeed);
            self.m5(mm, STABLE..STABLE + STABLE_PAGES * PG, "madvise stable");
        }
        ok
    }

    /// One call on the churn region.
    fn churn_step(&self, mm: &AddressSpace, rng: &mut Rng) -> bool {
        let (a, len) = Self::churn_range(rng);
        match rng.below(10) {
            0..=2 => {
                let prot = Self::random_prot(rng);
                let mut flags = FIXED;
                if rng.chance(8) {
                    flags |= MapFlags::GROWSDOWN;
                } else if rng.chance(8) {
                    flags = (flags - MapFlags::PRIVATE) | MapFlags::SHARED;
                }
                let r = if rng.chance(6) {
                    let off = rng.below(16) * PG;
                    mm.mmap_file(Some(a), len, prot, flags - MapFlags::ANONYMOUS, 7, off)
                } else {
                    mm.mmap(Some(a), len, prot, flags)
                };
                assert_eq!(r, Ok(a), "mmap FIXED {a:#x} {len:#x} {flags:?}");
                self.m5(mm, a..a + len, "mmap");
                let v = mm.vmas();
                let v = v.iter().find(|v| v.range.contains(&a)).unwrap();
                assert_eq!(v.prot, prot, "mmap: new VMA's prot");
                true
            }
            3 | 4 => {
                assert_eq!(mm.munmap(a, len), Ok(()));
                self.m5(mm, a..a + len, "munmap");
                for v in mm.vmas() {
                    if v.range.start < a + len && a < v.range.end {
                        assert!(v.growsdown, "munmap left {:x?} in {a:#x}+{len:#x}", v.range);
                    }
                }
                true
            }
            5 | 6 => {
                let prot = Self::random_prot(rng);
                let r = mm.mprotect(a, len, prot);
                assert!(matches!(r, Ok(()) | Err(MmError::NoMem)), "mprotect: {r:?}");
                self.m5(mm, a..a + len, "mprotect");
                if r.is_ok() {
                    for v in mm.vmas() {
                        if v.range.start < a + len && a < v.range.end {
                            assert_eq!(v.prot, prot, "mprotect: {:x?}", v.range);
                        }
                    }
                }
                r.is_ok()
            }
            7 | 8 => {
                let (b, new_len) = Self::churn_range(rng);
                let (flags, target, new_len) = match rng.below(4) {
                    0 => (RemapFlags::empty(), None, len / 2 / PG * PG + PG),
                    1 => (RemapFlags::MAYMOVE, None, new_len),
                    2 => (RemapFlags::MAYMOVE | RemapFlags::FIXED, Some(b), new_len),
                    _ => (
                        RemapFlags::MAYMOVE | RemapFlags::FIXED | RemapFlags::DONTUNMAP,
                        Some(b),
                        len,
                    ),
                };
                let r = mm.mremap(a, len, new_len, flags, target);
                self.m5(mm, a..a + len, "mremap source");
                match r {
                    Ok(d) => {
                        self.m5(mm, d..d + new_len, "mremap target");
                        if !(CHURN..CHURN + CHURN_PAGES * PG).contains(&d) {
                            // Moved to the top: give it back.
                            mm.munmap(d, new_len).unwrap();
                            self.m5(mm, d..d + new_len, "munmap moved");
                        }
                        true
                    }
                    Err(MmError::Fault | MmError::NoMem | MmError::Inval) => false,
                    Err(e) => panic!("mremap: {e:?}"),
                }
            }
            _ => {
                let r = mm.madvise(a, len, Advice::DontNeed);
                assert!(matches!(r, Ok(()) | Err(MmError::NoMem)), "madvise: {r:?}");
                self.m5(mm, a..a + len, "madvise");
                r.is_ok()
            }
        }
    }
}

impl Section for MmSection {
    fn read(&self, reader: usize, rng: &mut Rng) -> u64 {
        let i = (reader + rng.below(3) as usize) % 3;
        if rng.chance(4) {
            return self.read_child(i, rng);
        }
        let mm = &self.spaces[i];
        if rng.chance(8) {
            // Racing the writer's munmap, mremap, fork and the faults.
            self.unmap_some(mm, rng);
        }
        let mut checks = 0;
        for _ in 0..64 {
            if rng.chance(2) {
                // A stable page: must always succeed, whatever the writer does.
                let a = STABLE + rng.below(STABLE_PAGES / 2) * 2 * PG + rng.below(PG);
                let acc = if rng.chance(2) {
                    Access::Write
                } else {
                    Access::Read
                };
                let r = mm.fault(a, acc);
                assert!(
                    r.is_ok(),
                    "{:?}: stable page {a:#x} {acc:?}: {r:?}",
                    mm.policy()
                );
            } else {
                // The churn region (and the odd stable pages): any outcome,
                // but never a permission the VMA lacks.
                let a = if rng.chance(4) {
                    STABLE + rng.below(STABLE_PAGES) * PG
                } else {
                    CHURN + rng.below(CHURN_PAGES) * PG
                };
                let acc = [Access::Read, Access::Write, Access::Exec][rng.below(3) as usize];
                match mm.fault(a, acc) {
                    Ok(_) | Err(FaultError::Segv | FaultError::Access) => {}
                }
            }
            checks += 1;
        }
        checks
    }

    fn write(&self, rng: &mut Rng) -> bool {
        let step = self.steps.fetch_add(1, Ordering::Relaxed);
        let mm = &self.spaces[step % 3];
        self.calls.fetch_add(1, Ordering::Relaxed);
        if rng.chance(8) {
            self.family_step(step % 3, rng)
        } else if rng.chance(3) {
            self.stable_step(mm, rng)
        } else {
            self.churn_step(mm, rng)
        }
    }

    fn finish(self) -> String {
        let mut out = Vec::new();
        for (mm, children) in self.spaces.iter().zip(&self.children) {
            // The whole family: exact frame counts and rmap (M6, M10), then
            // the children exit and the parent is alone again.
            let children = std::mem::take(&mut *children.lock().unwrap());
            let mut family: Vec<&AddressSpace> = vec![mm];
            family.extend(children.iter().map(|c| &**c));
            AddressSpace::check_family(&family)
                .unwrap_or_else(|e| panic!("{:?} family: {e}", mm.policy()));
            drop(family);
            drop(children);
            let p = mm.policy();
            mm.check().unwrap_or_else(|e| panic!("{p:?}: {e}"));
            let s = mm.stats();
            // M6 with shared objects (issue 14): frames an object holds are
            // live without being mapped.
            assert_eq!(
                s.frames_allocated,
                s.frames_live + s.frames_freed,
                "{p:?}: {s:?}"
            );
            assert!(s.frames_mapped <= s.frames_live, "{p:?}: {s:?}");
            assert_eq!(s.vmas, mm.vmas().len() as u64, "{p:?}: VMA count");
            assert!(s.tables_freed <= s.tables_allocated, "{p:?}: {s:?}");
            assert_eq!(
                s.faults,
                s.installed + s.present + s.upgraded + s.segv + s.access_errors + s.cow_copies,
                "{p:?}: every fault has one outcome"
            );
            // Even pages of the stable region are still there, RW.
            for i in (0..STABLE_PAGES).step_by(2) {
                let v = mm.vmas();
                let a = STABLE + i * PG;
                let v = v
                    .iter()
                    .find(|v| v.range.contains(&a))
                    .expect("stable page");
                assert_eq!(v.prot, RW, "{p:?}: stable page {a:#x}");
            }
            out.push(format!(
                "{p:?}: {} faults ({} installed, {} present, {} upgraded, {} segv, {} access, \
                 {} retries, {} fallbacks, {} stack growths), {} VMAs, frames {}+{}={}, \
                 tables {} allocated / {} freed",
                s.faults,
                s.installed,
                s.present,
                s.upgraded,
                s.segv,
                s.access_errors,
                s.retries,
                s.fallbacks,
                s.stack_growths,
                s.vmas,
                s.frames_mapped,
                s.frames_freed,
                s.frames_allocated,
                s.tables_allocated,
                s.tables_freed
            ));
            // Unmapping everything frees every frame and every last-level table.
            mm.munmap(0, TASK_SIZE).unwrap();
            // Removed shared-anonymous VMAs release their objects' frames
            // when they are freed, after a grace period.
            mm.reclaim();
            mm.check()
                .unwrap_or_else(|e| panic!("{p:?} after munmap all: {e}"));
            let e = mm.stats();
            assert_eq!((e.vmas, e.frames_mapped), (0, 0), "{p:?}");
            assert_eq!(e.frames_allocated, e.frames_freed, "{p:?}");
        }
        format!(
            "{} writer calls, {} pages checked for M5, {} forks, {} exits, {} try_to_unmap; {}",
            self.calls.load(Ordering::Relaxed),
            self.m5_checks.load(Ordering::Relaxed),
            self.forks.load(Ordering::Relaxed),
            self.exits.load(Ordering::Relaxed),
            self.unmaps.load(Ordering::Relaxed),
            out.join("; ")
        )
    }
}

#[test]
#[ignore = "torture: run explicitly (TORTURE_SECS, default 10)"]
fn torture_mm() {
    run("mm", MmSection::new(), 2);
}
