//! breaker7 on the seventh session's mm changes (issue 11): writers that only
//! load (no probe RMW) a non-null upper page-table entry
//! (`pagetable::probe_at`), retired PTE tables returned to the retiring
//! thread's shard (`TABLE_RETURN`), frames and pv lists in aligned blocks of
//! 64 (`FrameBlock`/`PvBlock`) numbered across chunk boundaries.
//!
//! Oracles: a fault that installs into a table a zap skipped leaves a live
//! frame after munmap (`assert_all_freed`) or a PTE outside any VMA
//! (`check()`); a write started after an mprotect(READ) returned must fail
//! with `Access`, after an munmap returned with `Segv`; the live table count
//! is exactly the upper tables once nothing is mapped; contents follow a
//! per-page model through fork/COW and `try_to_unmap` (swap entries).

#[path = "common/frames.rs"]
mod frames;
#[path = "common/rng.rs"]
mod rng;
#[path = "common/watchdog.rs"]
mod watchdog;

use maple_rcu::mm::{AddressSpace, Advice, FaultError, FaultPolicy, MapFlags, Prot, WriterLocking};
use rng::Rng;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

const P: u64 = 4096;
const SPAN: u64 = 2 << 20;
const GIB: u64 = 1 << 30;
/// One PGD entry's reach (512 GiB).
const BIG: u64 = 1 << 39;
const RW: Prot = Prot::READ.union(Prot::WRITE);
const FIXED: MapFlags = MapFlags::PRIVATE
    .union(MapFlags::ANONYMOUS)
    .union(MapFlags::FIXED);

fn tables_live(mm: &AddressSpace) -> u64 {
    let s = mm.stats();
    s.tables_allocated - s.tables_freed
}

/// Upper-level tables (PMD per GiB region, PUD per 512 GiB region) for the
/// given set of touched addresses.
fn upper_for(addrs: impl IntoIterator<Item = u64>) -> u64 {
    let g: BTreeSet<u64> = addrs.into_iter().map(|a| a >> 30).collect();
    let u: BTreeSet<u64> = g.iter().map(|x| x >> 9).collect();
    (g.len() + u.len()) as u64
}

/// Writes that succeeded in `upper_round`s (the race happened: some did).
static OK_WRITES: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Copy, Debug)]
enum Wide {
    Munmap,
    ProtectRead,
    DontNeed,
}

/// A fresh space with one VMA over `NBIG` PGD entries (nothing populated);
/// two faulters write pages scattered over it, so most first faults populate
/// a new PUD, PMD and PTE table (level 3/2 entries null), while a third
/// thread runs one wide writer over the whole VMA at a random moment.
fn upper_round(policy: FaultPolicy, locking: WriterLocking, op: Wide, seed: u64) {
    const BASE: u64 = 4 * BIG;
    const NBIG: u64 = 5;
    let mm = Arc::new(AddressSpace::with_locking(policy, locking));
    mm.mmap(Some(BASE), NBIG * BIG, RW, FIXED).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let bar = Arc::new(Barrier::new(3));
    let faulters: Vec<_> = (0..2u64)
        .map(|f| {
            let (mm, done, bar) = (mm.clone(), done.clone(), bar.clone());
            let writes = writes.clone();
            thread::spawn(move || {
                let mut r = Rng(seed ^ (f + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let mut ok = Vec::new();
                bar.wait();
                for i in 0..200u64 {
                    let a = BASE
                        + r.below(NBIG) * BIG
                        + r.below(512) * GIB
                        + r.below(512) * SPAN
                        + r.below(512) * P;
                    let after = done.load(Ordering::Acquire);
                    let v = (f << 60) ^ a ^ i;
                    let res = mm.write(a, v);
                    writes.fetch_add(1, Ordering::Relaxed);
                    if after {
                        match op {
                            Wide::Munmap => assert_eq!(res, Err(FaultError::Segv), "{a:#x}"),
                            Wide::ProtectRead => {
                                assert_eq!(res, Err(FaultError::Access), "{a:#x}")
                            }
                            Wide::DontNeed => assert_eq!(res, Ok(()), "{a:#x}"),
                        }
                    }
                    if res.is_ok() {
                        ok.push((a, v));
                    }
                    if after && i % 8 == 0 {
                        break;
                    }
                }
                ok
            })
        })
        .collect();
    let mut r = Rng(seed ^ 0x1234);
    bar.wait();
    // Strike while the faulters are populating: after a random number of
    // their first writes (each of which may link new upper tables).
    let at = r.below(48);
    while writes.load(Ordering::Relaxed) < at {
        std::hint::spin_loop();
    }
    for _ in 0..r.below(500) {
        std::hint::spin_loop();
    }
    match op {
        Wide::Munmap => mm.munmap(BASE, NBIG * BIG).unwrap(),
        Wide::ProtectRead => mm.mprotect(BASE, NBIG * BIG, Prot::READ).unwrap(),
        Wide::DontNeed => mm.madvise(BASE, NBIG * BIG, Advice::DontNeed).unwrap(),
    }
    done.store(true, Ordering::Release);
    let mut written = Vec::new();
    for f in faulters {
        written.extend(f.join().unwrap());
    }
    OK_WRITES.fetch_add(written.len() as u64, Ordering::Relaxed);
    mm.check()
        .unwrap_or_else(|e| panic!("{policy:?} {locking:?} {op:?} seed {seed}: {e}"));
    match op {
        Wide::Munmap => {}
        Wide::ProtectRead => {
            // Every page written before the mprotect still reads back (the
            // last write of each address wins: addresses may repeat).
            let mut last = std::collections::BTreeMap::new();
            for (a, v) in &written {
                last.insert(*a, *v);
            }
            for (a, v) in last {
                assert_eq!(mm.read(a), Ok(v), "{a:#x} after mprotect");
                let pte = mm.translate(a).expect("present");
                assert!(
                    !pte.prot.contains(Prot::WRITE),
                    "{a:#x} writable PTE {pte:?}"
                );
            }
            mm.munmap(BASE, NBIG * BIG).unwrap();
        }
        Wide::DontNeed => mm.munmap(BASE, NBIG * BIG).unwrap(),
    }
    mm.check().unwrap();
    let touched = written.iter().map(|&(a, _)| a);
    let up = upper_for(touched);
    // Tables of addresses whose write failed were populated too (a fault
    // links tables before it finds the VMA gone), so at least `up`.
    assert!(tables_live(&mm) >= up, "{:?}", mm.stats());
    assert_eq!(mm.stats().tables_kept, 0);
    frames::assert_all_freed(&mm, &format!("{policy:?} {locking:?} {op:?} seed {seed}: "));
}

#[test]
fn first_faults_populating_upper_tables_vs_wide_writers() {
    watchdog::within(240, "upper populate", || {
        let rounds: u64 = std::env::var("B7_ROUNDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(6);
        for seed in 0..rounds {
            for policy in FaultPolicy::ALL {
                for locking in [WriterLocking::Range, WriterLocking::Global] {
                    for op in [Wide::Munmap, Wide::ProtectRead, Wide::DontNeed] {
                        upper_round(policy, locking, op, seed);
                    }
                }
            }
        }
        let ok = OK_WRITES.load(Ordering::Relaxed);
        eprintln!("upper rounds: {ok} writes succeeded");
        assert!(ok > 0, "no write raced the wide writers");
    });
}

/// Retired PTE tables go back to the retiring thread's `TABLE_RETURN` shard:
/// waves of short-lived threads (more than 16, so shards are shared, and
/// each exits with tables still waiting for their grace period) map, touch
/// and unmap small blocks in their own 2 MiB spans of TWO spaces, so a table
/// retired by one space is reused by the other; a thread reclaims and two
/// lockless walkers read random pages meanwhile. Each block reads back its own values (a reused table that was
/// not empty, or still reachable, would show another's). Afterwards: both
/// spaces `check()`, no table kept, live tables exactly the upper ones,
/// every frame freed.
fn home_round(locking: WriterLocking, waves: u64, per_wave: u64, iters: u64) {
    const W0: u64 = 0x4000_0000;
    let spaces = [
        Arc::new(AddressSpace::with_locking(FaultPolicy::default(), locking)),
        Arc::new(AddressSpace::with_locking(
            FaultPolicy::Speculative,
            locking,
        )),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let reclaimer = {
        let (spaces, stop) = (spaces.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for mm in &spaces {
                    mm.reclaim();
                }
                thread::yield_now();
            }
        })
    };
    // Lockless walkers (each space's own policy, one of them Speculative)
    // read random pages of every window: a page holds 0 or a value naming
    // its own address (a table reused while a walker could still reach it
    // would show another page's value).
    let walkers: Vec<_> = (0..2u64)
        .map(|k| {
            let (spaces, stop) = (spaces.clone(), stop.clone());
            thread::spawn(move || {
                let mut r = Rng(0xa11 + k);
                while !stop.load(Ordering::Relaxed) {
                    let x = W0 + r.below(64 * 2 * SPAN / P) * P;
                    match spaces[k as usize].read(x) {
                        Ok(v) => assert!(
                            v == 0 || v & ((1 << 48) - 1) == x,
                            "{x:#x} read {v:#x}: another page's value"
                        ),
                        Err(e) => assert_eq!(e, FaultError::Segv, "{x:#x}"),
                    }
                }
            })
        })
        .collect();
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    for w in 0..waves {
        let hs: Vec<_> = (0..per_wave)
            .map(|k| {
                let spaces = spaces.clone();
                thread::spawn(move || {
                    let t = w * per_wave + k;
                    let mut r = Rng(0x77 + t);
                    let base = W0 + (t % 64) * 2 * SPAN;
                    for i in 0..iters {
                        let mm = &spaces[((i + t) % 2) as usize];
                        let a = base + (i % 2) * SPAN + r.below(500) * P;
                        let n = 1 + r.below(8);
                        mm.mmap(Some(a), n * P, RW, FIXED).unwrap();
                        let tag = SERIAL.fetch_add(1, Ordering::Relaxed) << 48;
                        for p in 0..n {
                            assert_eq!(mm.read(a + p * P), Ok(0), "fresh page not zero");
                            mm.write(a + p * P, tag | (a + p * P)).unwrap();
                        }
                        for p in 0..n {
                            assert_eq!(mm.read(a + p * P), Ok(tag | (a + p * P)));
                        }
                        mm.munmap(a, n * P).unwrap();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    reclaimer.join().unwrap();
    for w in walkers {
        w.join().unwrap();
    }
    for mm in &spaces {
        mm.check().unwrap();
        mm.reclaim();
        let s = mm.stats();
        assert_eq!(s.tables_kept, 0, "{s:?}");
        // One PMD table (all windows lie in one GiB) and one PUD table.
        assert_eq!(tables_live(mm), 2, "{locking:?}: {s:?}");
        frames::assert_all_freed(mm, &format!("{locking:?}: "));
    }
}

#[test]
fn retired_tables_go_home_through_exiting_threads_and_two_spaces() {
    watchdog::within(240, "tables home", || {
        let iters: u64 = std::env::var("B7_HOME_ITERS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(40);
        for locking in [WriterLocking::Range, WriterLocking::Global] {
            home_round(locking, 5, 8, iters);
        }
    });
}

/// Frames numbered past one frame chunk (16,384) and across many 64-frame
/// blocks and 4,096-frame pv chunks, handed out to two threads' shards in
/// alternation; fork (every frame gets a second pv entry), COW writes in
/// both, `try_to_unmap` (rmap walk, swap entries) on frames at block and
/// chunk boundaries, exit of the child, and a per-page model throughout.
#[test]
fn frames_across_chunks_and_blocks_fork_and_rmap() {
    const A: u64 = 0x10_0000_0000;
    const N: u64 = 17_000;
    let mm = Arc::new(AddressSpace::new());
    mm.mmap(Some(A), N * P, RW, FIXED).unwrap();
    let hs: Vec<_> = (0..2u64)
        .map(|t| {
            let mm = mm.clone();
            thread::spawn(move || {
                // Alternate in runs of 50 pages: each run takes frames from
                // the thread's own shard, whose blocks are 64 frames.
                let mut p = t * 50;
                while p < N {
                    for q in p..(p + 50).min(N) {
                        mm.write(A + q * P, q * 3 + 1).unwrap();
                    }
                    p += 100;
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let mut parent: Vec<u64> = (0..N).map(|q| q * 3 + 1).collect();
    let pfns: Vec<u64> = (0..N)
        .map(|q| mm.translate(A + q * P).expect("present").frame)
        .collect();
    assert!(
        pfns.iter().any(|&f| f > 16_384),
        "no frame past the first chunk"
    );
    let distinct: BTreeSet<u64> = pfns.iter().copied().collect();
    assert_eq!(distinct.len() as u64, N, "a frame mapped twice");
    let child = mm.fork();
    AddressSpace::check_family(&[&mm, &child]).unwrap();
    let mut kid = parent.clone();
    for q in (0..N).step_by(3) {
        child.write(A + q * P, !q).unwrap();
        kid[q as usize] = !q;
    }
    for q in (0..N).step_by(5) {
        mm.write(A + q * P, q << 20).unwrap();
        parent[q as usize] = q << 20;
    }
    AddressSpace::check_family(&[&mm, &child]).unwrap();
    // Reclaim frames at block, pv-chunk and frame-chunk edges.
    let edges: BTreeSet<u64> = [
        1u64, 2, 63, 64, 65, 128, 129, 4095, 4096, 4097, 8192, 8193, 16_383, 16_384, 16_385,
        16_448, 16_449, 20_000, 20_001,
    ]
    .into_iter()
    .collect();
    let mut hit = 0;
    for q in 0..N {
        for s in [&mm, &child] {
            if let Some(pte) = s.translate(A + q * P)
                && edges.contains(&pte.frame)
            {
                assert!(s.try_to_unmap(pte.frame), "pfn {} still mapped", pte.frame);
                hit += 1;
            }
        }
    }
    assert!(hit >= 8, "only {hit} edge frames found");
    AddressSpace::check_family(&[&mm, &child]).unwrap();
    for q in 0..N {
        assert_eq!(
            mm.read(A + q * P),
            Ok(parent[q as usize]),
            "parent page {q}"
        );
        assert_eq!(child.read(A + q * P), Ok(kid[q as usize]), "child page {q}");
    }
    AddressSpace::check_family(&[&mm, &child]).unwrap();
    drop(child);
    mm.check().unwrap();
    for q in 0..N {
        assert_eq!(
            mm.read(A + q * P),
            Ok(parent[q as usize]),
            "parent page {q} after exit"
        );
    }
    mm.munmap(A, N * P).unwrap();
    frames::assert_all_freed(&mm, "");
}
