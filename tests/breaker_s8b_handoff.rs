//! breaker8b on the eighth session's free-step hand-off (`PendingFrees`,
//! `PteTable::unmappers`, DESIGN §4.8 "Free-step hand-off") and on
//! `lock_area`'s `try_area` (R-M1 revalidation of an area recomputed before
//! queueing).
//!
//! The hand-off itself was reverted the same session (BENCHMARKS, "Issue 11,
//! eighth session"): every munmap now runs its own free step again. The
//! oracles below hold for that free step too, and these tests stay as its
//! stress.
//!
//! Oracles: at the quiescent end no VMA is left, no PTE survives, no
//! last-level table is linked in a span with no VMA (`tables_kept == 0`,
//! `check()`), the family checks (`check_family`) and every frame is freed
//! (`assert_all_freed`); a fault answers Ok or Segv only. The try_area
//! differential: threads running disjoint scripts of mmap/mprotect/munmap/
//! writes end in the same per-page state (mapped, prot, value) as the same
//! scripts run one after the other.

#[path = "common/frames.rs"]
mod frames;
#[path = "common/rng.rs"]
mod rng;
#[path = "common/watchdog.rs"]
mod watchdog;

use maple_rcu::mm::{
    Access, AddressSpace, FaultError, FaultPolicy, MapFlags, MmError, Prot, RemapFlags,
};
use rng::Rng;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

const P: u64 = 4096;
const SPAN: u64 = 2 << 20;
const B: u64 = 0x4000_0000;
const RW: Prot = Prot::READ.union(Prot::WRITE);
const RWX: Prot = RW.union(Prot::EXEC);
const FIXED: MapFlags = MapFlags::PRIVATE
    .union(MapFlags::ANONYMOUS)
    .union(MapFlags::FIXED);
/// Pages of the contested region at `B` (all in one 2 MiB span).
const NP: u64 = 96;
/// Pages per chunk (the unit one owner unmaps).
const CH: u64 = 4;
/// Where the mover sends chunks (another span).
const DEST: u64 = B + 8 * SPAN;
/// The heap, in the same span as the region.
const HEAP: u64 = B + 200 * P;

fn chunk(i: u64) -> u64 {
    B + i * CH * P
}

/// munmap `a..a+len`, retrying on ENOMEM (split in three at the limit):
/// another owner's unmap will make room.
fn unmap_retry(mm: &AddressSpace, a: u64, len: u64) {
    loop {
        match mm.munmap(a, len) {
            Ok(()) => return,
            Err(MmError::NoMem) => thread::yield_now(),
            Err(e) => panic!("munmap {a:#x}+{len:#x}: {e:?}"),
        }
    }
}

/// One round: the region laid out per `mode` (0: one VMA; 1: VMAs of 8
/// pages alternating RW/RWX, so nothing merges; 2: VMAs of 7 pages with a
/// one-page hole after each), every page written; then three unmappers
/// take disjoint chunks, a mover mremaps (move out of the span, shrink in
/// place) and unmaps its chunks, a faulter writes anywhere in the region
/// (dying VMAs: `Try::Orphan` free steps), a heap thread grows and shrinks
/// brk in the same span (`Tables::Free` under the whole space), and a
/// forker forks now and then (children kept or dropped at once, checked
/// with the parent at the end). `limit`: a `vm.max_map_count` close to the
/// VMAs in use, so splits in three fail with ENOMEM and are retried.
fn storm(seed: u64, mode: u64, policy: FaultPolicy, limit: Option<u64>) {
    let mut mm0 = AddressSpace::with_policy(policy);
    if let Some(l) = limit {
        mm0.set_max_map_count(l);
    }
    let mm = Arc::new(mm0);
    mm.set_initial_brk(HEAP);
    match mode {
        0 => {
            mm.mmap(Some(B), NP * P, RW, FIXED).unwrap();
        }
        1 => {
            for k in 0..NP / 8 {
                let prot = if k % 2 == 0 { RW } else { RWX };
                mm.mmap(Some(B + k * 8 * P), 8 * P, prot, FIXED).unwrap();
            }
        }
        _ => {
            let mut a = B;
            while a < B + NP * P {
                let len = (7 * P).min(B + NP * P - a);
                mm.mmap(Some(a), len, RW, FIXED).unwrap();
                a += 8 * P;
            }
        }
    }
    for p in 0..NP {
        let _ = mm.write(B + p * P, p + 1);
    }
    let nchunks = NP / CH;
    let done = Arc::new(AtomicBool::new(false));
    let children: Arc<Mutex<Vec<AddressSpace>>> = Arc::new(Mutex::new(Vec::new()));
    let bar = Arc::new(Barrier::new(7));
    let mut hs = Vec::new();
    // Unmappers 0..3 and the mover (owner 3).
    for owner in 0..4u64 {
        let (mm, bar) = (mm.clone(), bar.clone());
        hs.push(thread::spawn(move || {
            let mut r = Rng(seed ^ (owner + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let mut mine: Vec<u64> = (0..nchunks).filter(|i| i % 4 == owner).collect();
            for i in (1..mine.len()).rev() {
                mine.swap(i, r.below(i as u64 + 1) as usize);
            }
            bar.wait();
            for i in mine {
                let a = chunk(i);
                if owner == 3 {
                    match r.below(3) {
                        0 => {
                            let d = DEST + i * CH * P;
                            let f = RemapFlags::MAYMOVE | RemapFlags::FIXED;
                            if let Ok(n) = mm.mremap(a, CH * P, CH * P, f, Some(d)) {
                                assert_eq!(n, d);
                                let _ = mm.write(d, 7);
                                unmap_retry(&mm, d, CH * P);
                            }
                        }
                        1 => {
                            let _ = mm.mremap(a, CH * P, P, RemapFlags::empty(), None);
                        }
                        _ => {}
                    }
                }
                // Pieces: sometimes the chunk at once, sometimes page by page.
                if r.below(2) == 0 {
                    unmap_retry(&mm, a, CH * P);
                } else {
                    for p in 0..CH {
                        unmap_retry(&mm, a + p * P, P);
                    }
                }
            }
        }));
    }
    // Faulter.
    {
        let (mm, bar, done) = (mm.clone(), bar.clone(), done.clone());
        hs.push(thread::spawn(move || {
            let mut r = Rng(seed.rotate_left(17) | 1);
            bar.wait();
            while !done.load(Ordering::Relaxed) {
                let a = B + r.below(NP) * P;
                let acc = if r.below(2) == 0 {
                    Access::Write
                } else {
                    Access::Read
                };
                let x = mm.fault(a, acc);
                assert!(matches!(x, Ok(_) | Err(FaultError::Segv)), "{a:#x}: {x:?}");
            }
        }));
    }
    // Heap in the same span.
    {
        let (mm, bar, done) = (mm.clone(), bar.clone(), done.clone());
        hs.push(thread::spawn(move || {
            let mut r = Rng(seed.rotate_left(29) | 1);
            bar.wait();
            while !done.load(Ordering::Relaxed) {
                let n = 1 + r.below(48);
                let got = mm.brk(HEAP + n * P);
                if got == HEAP + n * P {
                    let _ = mm.write(HEAP + (n - 1) * P, n);
                }
                if r.below(3) == 0 {
                    assert_eq!(mm.brk(HEAP), HEAP);
                }
            }
            assert_eq!(mm.brk(HEAP), HEAP);
        }));
    }
    // Forker.
    {
        let (mm, bar, done, ch) = (mm.clone(), bar.clone(), done.clone(), children.clone());
        hs.push(thread::spawn(move || {
            let mut r = Rng(seed.rotate_left(41) | 1);
            bar.wait();
            let mut n = 0;
            while !done.load(Ordering::Relaxed) && n < 6 {
                // (`check` needs the whole family quiescent: children are
                // checked at the end; a dropped child exits mid-storm.)
                let c = mm.fork();
                if r.below(2) == 0 {
                    ch.lock().unwrap().push(c);
                }
                n += 1;
                thread::yield_now();
            }
        }));
    }
    let mut hs = hs.into_iter();
    for h in hs.by_ref().take(4) {
        h.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    for h in hs {
        h.join().unwrap();
    }
    let ctx = format!("seed {seed:#x} mode {mode} {policy:?} limit {limit:?}: ");
    assert!(mm.vmas().is_empty(), "{ctx}{:?}", mm.vmas());
    for p in 0..NP {
        assert!(mm.translate(B + p * P).is_none(), "{ctx}PTE at page {p}");
    }
    let s = mm.stats();
    assert_eq!(s.tables_kept, 0, "{ctx}table left in an empty span: {s:?}");
    mm.check().unwrap_or_else(|e| panic!("{ctx}{e}"));
    {
        let ch = children.lock().unwrap();
        let mut fam: Vec<&AddressSpace> = vec![&mm];
        fam.extend(ch.iter());
        AddressSpace::check_family(&fam).unwrap_or_else(|e| panic!("{ctx}{e}"));
        for c in ch.iter() {
            c.check().unwrap_or_else(|e| panic!("{ctx}child: {e}"));
        }
    }
    children.lock().unwrap().clear();
    frames::assert_all_freed(&mm, &ctx);
}

fn storms(rounds: u64, salt: u64) {
    for i in 0..rounds {
        let seed = (i + 1).wrapping_mul(0x2545_f491_4f6c_dd1d) ^ salt;
        let policy = [
            FaultPolicy::Speculative,
            FaultPolicy::PerVmaLock,
            FaultPolicy::MmapLock,
        ][(i % 3) as usize];
        let limit = if i % 4 == 3 { Some(NP / 8 + 8) } else { None };
        storm(seed, i % 3, policy, limit);
    }
}

/// Short: runs in CI.
#[test]
fn handoff_storm_short() {
    watchdog::within(60, "handoff_storm_short", || storms(120, 0));
}

/// Long: `cargo test --release --test breaker_s8b_handoff -- --ignored`.
#[test]
#[ignore = "heavy"]
fn handoff_storm_long() {
    watchdog::within(1200, "handoff_storm_long", || storms(3000, 0x5eed));
}

/// Many threads, each unmapping single pages of one written VMA in one span
/// (every munmap registers in the same table; at most one runs the free
/// step), with a faulter on the dying VMA. Ends with no table kept.
fn one_table(seed: u64, threads: u64, policy: FaultPolicy) {
    let mm = Arc::new(AddressSpace::with_policy(policy));
    let n = threads * 8;
    mm.mmap(Some(B), n * P, RW, FIXED).unwrap();
    for p in 0..n {
        mm.write(B + p * P, p).unwrap();
    }
    let bar = Arc::new(Barrier::new(threads as usize + 1));
    let done = Arc::new(AtomicBool::new(false));
    let f = {
        let (mm, bar, done) = (mm.clone(), bar.clone(), done.clone());
        thread::spawn(move || {
            let mut r = Rng(seed | 1);
            bar.wait();
            while !done.load(Ordering::Relaxed) {
                let x = mm.fault(B + r.below(n) * P, Access::Write);
                assert!(matches!(x, Ok(_) | Err(FaultError::Segv)), "{x:?}");
            }
        })
    };
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let (mm, bar) = (mm.clone(), bar.clone());
            thread::spawn(move || {
                let mut r = Rng(seed ^ (t + 7).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
                let mut mine: Vec<u64> = (0..n).filter(|p| p % threads == t).collect();
                for i in (1..mine.len()).rev() {
                    mine.swap(i, r.below(i as u64 + 1) as usize);
                }
                bar.wait();
                for p in mine {
                    mm.munmap(B + p * P, P).unwrap();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    f.join().unwrap();
    assert!(mm.vmas().is_empty());
    let s = mm.stats();
    assert_eq!(s.tables_kept, 0, "seed {seed:#x}: {s:?}");
    mm.check().unwrap();
    frames::assert_all_freed(&mm, "one_table: ");
}

#[test]
fn one_table_many_unmappers_short() {
    watchdog::within(60, "one_table_short", || {
        for i in 0..200u64 {
            one_table(
                i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                2 + i % 5,
                FaultPolicy::Speculative,
            );
        }
    });
}

#[test]
#[ignore = "heavy"]
fn one_table_many_unmappers_long() {
    watchdog::within(1200, "one_table_long", || {
        for i in 0..5000u64 {
            let pol = [FaultPolicy::Speculative, FaultPolicy::PerVmaLock][(i % 2) as usize];
            one_table(
                i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xabc,
                2 + i % 7,
                pol,
            );
        }
    });
}

// ---- try_area: concurrent disjoint scripts vs the same scripts serially ----

#[derive(Clone, Debug)]
enum Op {
    Map(u64, u64, Prot),
    Protect(u64, u64, Prot),
    Unmap(u64, u64),
    Write(u64, u64),
}

/// A script for thread `t` over its own pages `[t*W, (t+1)*W)` of a region
/// where neighbouring threads' blocks touch (so their VMAs merge and split
/// next door: the area each writer locks grows and shrinks between tries).
const W: u64 = 16;

fn script(seed: u64, t: u64, len: usize) -> Vec<Op> {
    let mut r = Rng(seed ^ (t + 3).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let base = B + t * W * P;
    (0..len)
        .map(|_| {
            let a = base + r.below(W) * P;
            let n = 1 + r.below((base + W * P - a) / P);
            let prot = [RW, Prot::READ, RWX][r.below(3) as usize];
            match r.below(4) {
                0 => Op::Map(a, n * P, prot),
                1 => Op::Protect(a, n * P, prot),
                2 => Op::Unmap(a, n * P),
                _ => Op::Write(a, r.next()),
            }
        })
        .collect()
}

fn run(mm: &AddressSpace, ops: &[Op]) {
    for op in ops {
        match *op {
            Op::Map(a, l, p) => {
                mm.mmap(Some(a), l, p, FIXED).unwrap();
            }
            Op::Protect(a, l, p) => {
                let _ = mm.mprotect(a, l, p);
            }
            Op::Unmap(a, l) => mm.munmap(a, l).unwrap(),
            Op::Write(a, v) => {
                let _ = mm.write(a, v);
            }
        }
    }
}

/// (prot, value) of each mapped page of `0..threads*W`.
fn pages(mm: &AddressSpace, threads: u64) -> BTreeMap<u64, (u32, Option<u64>)> {
    let mut m = BTreeMap::new();
    for v in mm.vmas() {
        let mut a = v.range.start;
        while a < v.range.end {
            let val = mm.translate(a).map(|_| mm.read(a).unwrap_or(u64::MAX));
            m.insert((a - B) / P, (v.prot.bits(), val));
            a += P;
        }
    }
    assert!(m.keys().all(|&p| p < threads * W));
    m
}

fn differential(seed: u64, threads: u64, len: usize) {
    let scripts: Vec<Vec<Op>> = (0..threads).map(|t| script(seed, t, len)).collect();
    let serial = AddressSpace::new();
    for s in &scripts {
        run(&serial, s);
    }
    let mm = Arc::new(AddressSpace::new());
    let bar = Arc::new(Barrier::new(threads as usize));
    let hs: Vec<_> = scripts
        .iter()
        .cloned()
        .map(|s| {
            let (mm, bar) = (mm.clone(), bar.clone());
            thread::spawn(move || {
                bar.wait();
                run(&mm, &s);
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    mm.check().unwrap();
    serial.check().unwrap();
    assert_eq!(mm.stats().tables_kept, 0, "seed {seed:#x}");
    let (a, b) = (pages(&mm, threads), pages(&serial, threads));
    assert_eq!(a, b, "seed {seed:#x}: concurrent vs serial");
    for v in mm.vmas() {
        mm.munmap(v.range.start, v.range.end - v.range.start)
            .unwrap();
    }
    for v in serial.vmas() {
        serial
            .munmap(v.range.start, v.range.end - v.range.start)
            .unwrap();
    }
    assert_eq!(mm.stats().tables_kept, 0);
    frames::assert_all_freed(&mm, "differential: ");
}

#[test]
fn try_area_differential_short() {
    watchdog::within(60, "try_area_differential_short", || {
        for i in 0..200u64 {
            differential(i.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1, 2 + i % 3, 60);
        }
    });
}

#[test]
#[ignore = "heavy"]
fn try_area_differential_long() {
    watchdog::within(1200, "try_area_differential_long", || {
        for i in 0..4000u64 {
            differential(i.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x77, 2 + i % 4, 120);
        }
    });
}

/// Starvation: a writer whose area keeps changing (its neighbour's VMAs merge
/// into and split from its own, in a tight loop of mprotect on the
/// neighbour's pages) must still get through: `try_area` gives up and
/// queues FIFO. Each of its calls must finish within the watchdog.
#[test]
fn try_area_writer_not_starved() {
    watchdog::within(60, "try_area_writer_not_starved", || {
        let mm = Arc::new(AddressSpace::new());
        mm.mmap(Some(B), 64 * P, RW, FIXED).unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let hogs: Vec<_> = (0..2u64)
            .map(|h| {
                let (mm, done) = (mm.clone(), done.clone());
                thread::spawn(move || {
                    let a = B + (32 + h * 16) * P;
                    let mut k = 0u64;
                    while !done.load(Ordering::Relaxed) {
                        let prot = if k.is_multiple_of(2) { Prot::READ } else { RW };
                        mm.mprotect(a, 16 * P, prot).unwrap();
                        k += 1;
                    }
                })
            })
            .collect();
        for i in 0..2000u64 {
            let prot = if i % 2 == 0 { RWX } else { RW };
            mm.mprotect(B + 31 * P, P, prot).unwrap();
            mm.munmap(B + 30 * P, P).unwrap();
            mm.mmap(Some(B + 30 * P), P, RW, FIXED).unwrap();
        }
        done.store(true, Ordering::Relaxed);
        for h in hogs {
            h.join().unwrap();
        }
        mm.check().unwrap();
    });
}
