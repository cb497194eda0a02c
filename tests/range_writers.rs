//! Range-locked writers (issue 11, docs/DESIGN.md §4.8): scripts of writers
//! and faults on disjoint windows, run concurrently on one address space,
//! end in exactly the state the same scripts reach run one after another —
//! same VMAs, same present pages with the same permissions and dirty bits —
//! under every fault policy, and `check()` holds after each run.

use maple_rcu::mm::{
    Access, AddressSpace, FaultPolicy, MapFlags, Prot, RemapFlags, VmaInfo, WriterLocking,
};
use std::sync::{Arc, Barrier};
use std::thread;

const P: u64 = 4096;
const WINDOW: u64 = 64 << 20; // 64 MiB apart: no merge, no shared 2 MiB table
const BASE: u64 = 0x1000_0000;
const THREADS: u64 = 3;
const SPAN_PAGES: u64 = 48;

#[derive(Clone, Debug)]
enum Op {
    Map(u64, u64, Prot),
    Unmap(u64, u64),
    Protect(u64, u64, Prot),
    Advise(u64, u64),
    Fault(u64, Access),
    Grow(u64, u64, u64),
    Move(u64, u64, u64),
}

/// A tiny deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn script(seed: u64, base: u64, len: usize) -> Vec<Op> {
    let mut r = Rng(seed | 1);
    let prots = [
        Prot::READ | Prot::WRITE,
        Prot::READ,
        Prot::NONE,
        Prot::READ | Prot::WRITE,
    ];
    (0..len)
        .map(|_| {
            let a = base + r.below(SPAN_PAGES) * P;
            let n = 1 + r.below(8);
            match r.below(10) {
                0..=2 => Op::Map(a, n, prots[r.below(4) as usize]),
                3 => Op::Unmap(a, n),
                4 => Op::Protect(a, n, prots[r.below(4) as usize]),
                5 => Op::Advise(a, n),
                6 => Op::Grow(a, n, n + 1 + r.below(4)),
                7 => Op::Move(a, n, base + r.below(SPAN_PAGES) * P),
                _ => Op::Fault(
                    a,
                    if r.below(2) == 0 {
                        Access::Write
                    } else {
                        Access::Read
                    },
                ),
            }
        })
        .collect()
}

fn run(mm: &AddressSpace, ops: &[Op]) {
    let fixed = MapFlags::PRIVATE | MapFlags::ANONYMOUS | MapFlags::FIXED;
    for op in ops {
        match *op {
            Op::Map(a, n, p) => {
                mm.mmap(Some(a), n * P, p, fixed).unwrap();
            }
            Op::Unmap(a, n) => mm.munmap(a, n * P).unwrap(),
            Op::Protect(a, n, p) => {
                let _ = mm.mprotect(a, n * P, p);
            }
            Op::Advise(a, n) => {
                let _ = mm.madvise(a, n * P, maple_rcu::mm::Advice::DontNeed);
            }
            Op::Grow(a, n, m) => {
                // Grow in place or fail (no MAYMOVE): stays in the window
                // as long as the window has room above.
                let _ = mm.mremap(a, n * P, m * P, RemapFlags::empty(), None);
            }
            Op::Move(a, n, to) => {
                // A FIXED move inside the window (EINVAL when it overlaps
                // its source; EFAULT when the source is not mapped).
                let f = RemapFlags::MAYMOVE | RemapFlags::FIXED;
                let _ = mm.mremap(a, n * P, n * P, f, Some(to));
            }
            Op::Fault(a, acc) => {
                let _ = mm.fault(a, acc);
            }
        }
    }
}

type State = (Vec<VmaInfo>, Vec<(u64, Prot, bool)>);

fn state(mm: &AddressSpace) -> State {
    mm.check().unwrap();
    let vmas = mm.vmas();
    let mut pages = Vec::new();
    for t in 0..THREADS {
        let base = BASE + t * WINDOW;
        for i in 0..SPAN_PAGES + 16 {
            if let Some(pte) = mm.translate(base + i * P) {
                pages.push((base + i * P, pte.prot, pte.dirty));
            }
        }
    }
    (vmas, pages)
}

fn differential(policy: FaultPolicy, locking: WriterLocking, seed: u64) {
    let scripts: Vec<Vec<Op>> = (0..THREADS)
        .map(|t| script(seed * 31 + t, BASE + t * WINDOW, 300))
        .collect();
    let serial = AddressSpace::with_locking(policy, locking);
    for s in &scripts {
        run(&serial, s);
    }
    let conc = Arc::new(AddressSpace::with_locking(policy, locking));
    let go = Arc::new(Barrier::new(THREADS as usize));
    let hs: Vec<_> = scripts
        .into_iter()
        .map(|s| {
            let (mm, go) = (conc.clone(), go.clone());
            thread::spawn(move || {
                go.wait();
                run(&mm, &s);
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(
        state(&conc),
        state(&serial),
        "{policy:?} {locking:?} seed {seed}"
    );
    let (s, c) = (serial.stats(), conc.stats());
    assert_eq!(
        s.frames_allocated - s.frames_freed,
        c.frames_allocated - c.frames_freed
    );
}

#[test]
fn disjoint_writers_concurrent_equals_serial() {
    let rounds: u64 = std::env::var("RW_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    for seed in 1..=rounds {
        for policy in FaultPolicy::ALL {
            differential(policy, WriterLocking::Range, seed);
        }
        differential(FaultPolicy::Speculative, WriterLocking::Global, seed);
    }
}

/// Writers in one window race faults on a stable mapping in another: every
/// fault on the stable mapping succeeds (no spurious Segv/Access from a
/// writer elsewhere), and installs are never lost.
#[test]
fn stable_faults_beside_churning_writers() {
    for policy in FaultPolicy::ALL {
        let mm = Arc::new(AddressSpace::with_policy(policy));
        let stable = BASE + 8 * WINDOW;
        let rw = Prot::READ | Prot::WRITE;
        let fixed = MapFlags::PRIVATE | MapFlags::ANONYMOUS | MapFlags::FIXED;
        mm.mmap(Some(stable), 256 * P, rw, fixed).unwrap();
        let w = {
            let mm = mm.clone();
            thread::spawn(move || {
                for i in 0..300u64 {
                    let a = BASE + (i % 7) * 16 * P;
                    mm.mmap(Some(a), 16 * P, rw, fixed).unwrap();
                    mm.fault(a, Access::Write).unwrap();
                    mm.mprotect(a, 4 * P, Prot::READ).unwrap();
                    mm.munmap(a, 16 * P).unwrap();
                }
            })
        };
        for round in 0..4 {
            for i in 0..256 {
                let r = mm.fault(stable + i * P, Access::Write);
                assert!(r.is_ok(), "{policy:?} round {round} page {i}: {r:?}");
            }
        }
        w.join().unwrap();
        for i in 0..256 {
            assert!(mm.translate(stable + i * P).is_some(), "{policy:?}: lost");
        }
        mm.check().unwrap();
    }
}

/// Threads each move their own mapping back and forth with placed (non-FIXED)
/// mremaps while writing to it: every page keeps its frame across moves (the
/// PTEs move with the VMA), no two threads' mappings ever overlap, and the
/// final state checks.
#[test]
fn concurrent_placed_mremaps_keep_their_pages() {
    for locking in [WriterLocking::Range, WriterLocking::Global] {
        let mm = Arc::new(AddressSpace::with_locking(
            FaultPolicy::Speculative,
            locking,
        ));
        let go = Arc::new(Barrier::new(THREADS as usize));
        let hs: Vec<_> = (0..THREADS)
            .map(|t| {
                let (mm, go) = (mm.clone(), go.clone());
                thread::spawn(move || {
                    let rw = Prot::READ | Prot::WRITE;
                    let anon = MapFlags::PRIVATE | MapFlags::ANONYMOUS;
                    let n = 4 + t;
                    let mut a = mm.mmap(None, n * P, rw, anon).unwrap();
                    for i in 0..n {
                        mm.fault(a + i * P, Access::Write).unwrap();
                    }
                    let frames: Vec<u64> = (0..n)
                        .map(|i| mm.translate(a + i * P).unwrap().frame)
                        .collect();
                    go.wait();
                    for round in 0..200 {
                        // Grow (moving when the neighbour is in the way),
                        // then shrink back: the frames travel along.
                        a = mm
                            .mremap(a, n * P, (n + 1) * P, RemapFlags::MAYMOVE, None)
                            .unwrap();
                        a = mm
                            .mremap(a, (n + 1) * P, n * P, RemapFlags::empty(), None)
                            .unwrap();
                        for (i, f) in frames.iter().enumerate() {
                            let pte = mm.translate(a + i as u64 * P);
                            assert_eq!(pte.map(|p| p.frame), Some(*f), "round {round} page {i}");
                        }
                    }
                    (a, n)
                })
            })
            .collect();
        let mut areas: Vec<(u64, u64)> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        areas.sort();
        for w in areas.windows(2) {
            assert!(w[0].0 + w[0].1 * P <= w[1].0, "overlap {areas:x?}");
        }
        mm.check().unwrap();
    }
}

/// Issue 11, munmap without the span lock (DESIGN §4.8, "Freeing tables"):
/// two threads churn non-FIXED mmap → write every page → read back →
/// munmap of 64-page blocks, which land next to each other top-down in one
/// 2 MiB span, so each munmap's table-freeing step races the other
/// thread's mmap, faults and munmap in that span. Each round every thread
/// keeps its last block mapped; between rounds (threads parked) every kept
/// page reads back what its thread wrote (no fault lost to a freed table)
/// and `check()` passes (no PTE outside a VMA). At the end, one munmap over
/// everything, alone, frees every last-level table the churn left (no
/// table leaked: kept tables are only deferred).
#[test]
fn adjacent_placed_blocks_churn_in_one_span() {
    const PAGES: u64 = 64;
    const ROUNDS: u64 = 500;
    const ITERS: u64 = 6;
    let rw = Prot::READ | Prot::WRITE;
    let anon = MapFlags::PRIVATE | MapFlags::ANONYMOUS;
    for policy in [FaultPolicy::Speculative, FaultPolicy::PerVmaLock] {
        let mm = Arc::new(AddressSpace::with_policy(policy));
        // The upper-level tables of this region, which are never freed.
        let a = mm.mmap(None, PAGES * P, rw, anon).unwrap();
        mm.write(a, 1).unwrap();
        mm.munmap(a, PAGES * P).unwrap();
        let s = mm.stats();
        let upper = s.tables_allocated - s.tables_freed;
        let lowest = Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
        let kept = Arc::new(std::sync::Mutex::new(vec![None::<u64>; 2]));
        let bar = Arc::new(Barrier::new(3));
        let value = |t: u64, round: u64, it: u64, page: u64| {
            (t << 48) | (round << 24) | (it << 12) | page | 1
        };
        let workers: Vec<_> = (0..2u64)
            .map(|t| {
                let (mm, kept, bar, lowest) =
                    (mm.clone(), kept.clone(), bar.clone(), lowest.clone());
                thread::spawn(move || {
                    for round in 0..ROUNDS {
                        let old = kept.lock().unwrap()[t as usize].take();
                        if let Some(old) = old {
                            mm.munmap(old, PAGES * P).unwrap();
                        }
                        for it in 0..ITERS {
                            let a = mm.mmap(None, PAGES * P, rw, anon).unwrap();
                            lowest.fetch_min(a, std::sync::atomic::Ordering::Relaxed);
                            for p in 0..PAGES {
                                mm.write(a + p * P, value(t, round, it, p)).unwrap();
                            }
                            for p in 0..PAGES {
                                let v = mm.read(a + p * P).unwrap();
                                assert_eq!(v, value(t, round, it, p), "{policy:?} lost write");
                            }
                            if it + 1 == ITERS {
                                kept.lock().unwrap()[t as usize] = Some(a);
                            } else {
                                mm.munmap(a, PAGES * P).unwrap();
                            }
                        }
                        bar.wait(); // round done
                        bar.wait(); // checked
                    }
                })
            })
            .collect();
        for round in 0..ROUNDS {
            bar.wait();
            let blocks = kept.lock().unwrap().clone();
            for (t, a) in blocks.iter().enumerate() {
                let a = a.expect("every thread keeps a block");
                for p in 0..PAGES {
                    let pte = mm.translate(a + p * P);
                    assert!(pte.is_some(), "{policy:?} round {round}: page lost");
                    let v = mm.read(a + p * P).unwrap();
                    assert_eq!(v, value(t as u64, round, ITERS - 1, p), "{policy:?}");
                }
            }
            mm.check().unwrap();
            bar.wait();
        }
        for w in workers {
            w.join().unwrap();
        }
        let lo = lowest.load(std::sync::atomic::Ordering::Relaxed);
        let hi = maple_rcu::mm::MMAP_BASE;
        assert!(hi - lo < 16 << 20, "blocks stayed near the top: {lo:#x}");
        mm.munmap(lo, hi - lo).unwrap();
        mm.reclaim();
        mm.check().unwrap();
        let s = mm.stats();
        eprintln!(
            "{policy:?}: tables kept {} (of {} freed)",
            s.tables_kept, s.tables_freed
        );
        assert_eq!(
            s.tables_allocated - s.tables_freed,
            upper,
            "{policy:?}: {s:?}"
        );
        assert_eq!(s.frames_mapped, 0);
    }
}
