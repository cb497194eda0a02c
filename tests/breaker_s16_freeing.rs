//! breaker16 on R-M7 (DESIGN §4.8, "Freeing tables"): a free step refused
//! by a writer is dropped when the span has a VMA, on the argument that
//! whoever removes the span's last VMA runs its own free step after its
//! commit. Every writer that removes a VMA is exercised here, not only
//! munmap: mremap (FIXED move, placed move, DONTUNMAP, shrink, grow in
//! place), mmap FIXED over a mapping, mprotect, madvise(DONTNEED), brk, and
//! speculative read faults on other threads' pages (the `Try::Orphan`
//! step).
//!
//! - `owned_pages_in_shared_spans_*`: threads own interleaved page ranges
//!   in four shared 2 MiB spans (their ranges touch, so their VMAs merge
//!   and splits cross threads), apply random writers to their own pages
//!   only and keep a serial model of them (prot and value per page), and
//!   read-fault other threads' pages. Every call's result is checked
//!   against the model as it returns; at the end (quiescent) no table is
//!   linked in an empty span (`tables_kept`), `check()` passes, each page
//!   has the model's protection and value; then everything is unmapped and
//!   no table, frame or VMA is left.

#[path = "common/frames.rs"]
mod frames;
#[path = "common/race.rs"]
mod race;
#[path = "common/rng.rs"]
mod rng;
#[path = "common/watchdog.rs"]
mod watchdog;

use maple_rcu::mm::{
    Access, AddressSpace, Advice, FaultError, FaultPolicy, MapFlags, Prot, RemapFlags,
    WriterLocking,
};
use rng::Rng;
use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};
use std::thread;

const P: u64 = 4096;
const SPAN: u64 = 2 << 20;
const SPANS: u64 = 4;
const BASE: u64 = 0x4000_0000;
/// Pages each thread owns per span, `[PER * t, PER * (t + 1))`.
const PER: u64 = 8;
const RW: Prot = Prot::READ.union(Prot::WRITE);
const ANON: MapFlags = MapFlags::PRIVATE.union(MapFlags::ANONYMOUS);
const FIXED: MapFlags = ANON.union(MapFlags::FIXED);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Page {
    prot: Prot,
    val: u64,
}

/// One thread's pages: address → state (absent = unmapped).
type Model = BTreeMap<u64, Page>;

fn own(t: u64, span: u64, k: u64) -> u64 {
    BASE + span * SPAN + (PER * t + k) * P
}

fn prot_of(r: &mut Rng) -> Prot {
    match r.below(4) {
        0 => Prot::READ,
        1 => Prot::NONE,
        _ => RW,
    }
}

fn all_mapped(m: &Model, a: u64, n: u64) -> bool {
    (0..n).all(|i| m.contains_key(&(a + i * P)))
}

/// Reads `a` and checks it against the model.
fn check_read(mm: &AddressSpace, m: &Model, a: u64, what: &str) {
    let got = mm.read(a);
    let want = match m.get(&a) {
        None => Err(FaultError::Segv),
        Some(p) if !p.prot.contains(Prot::READ) => Err(FaultError::Access),
        Some(p) => Ok(p.val),
    };
    assert_eq!(got, want, "{what}: read {a:#x}");
}

/// Maps our unmapped page `a` (FIXED, or moved in from a placed page by
/// mremap FIXED), writes it, then removes it with one of the writers that
/// remove a VMA, so the span is often empty between two calls of ours.
fn lifecycle(mm: &AddressSpace, r: &mut Rng, m: &Model, t: u64, a: u64, v: u64, what: &str) {
    let k = (a - BASE) % SPAN / P - PER * t;
    let two = k + 1 < PER && !m.contains_key(&(a + P)) && r.below(4) == 0;
    let n = if two { 2 } else { 1 };
    if r.below(3) == 0 {
        let d = mm.mmap(None, n * P, RW, ANON).unwrap();
        mm.write(d, v ^ 1).unwrap();
        let got = mm.mremap(
            d,
            n * P,
            n * P,
            RemapFlags::MAYMOVE | RemapFlags::FIXED,
            Some(a),
        );
        assert_eq!(got, Ok(a), "{what}: move in");
        assert_eq!(mm.read(a), Ok(v ^ 1), "{what}: moved in");
    } else {
        assert_eq!(mm.mmap(Some(a), n * P, RW, FIXED), Ok(a), "{what}");
    }
    mm.write(a, v).unwrap();
    assert_eq!(mm.read(a), Ok(v), "{what}");
    if two {
        // Shrink (the tail's table freed under the mover's lock).
        assert_eq!(
            mm.mremap(a, 2 * P, P, RemapFlags::empty(), None),
            Ok(a),
            "{what}"
        );
        assert_eq!(mm.read(a + P), Err(FaultError::Segv), "{what}");
    }
    match r.below(5) {
        0 => assert_eq!(mm.munmap(a, P), Ok(()), "{what}"),
        1 => {
            // Move to a free page of ours in another span, unmap it there.
            let span = (a - BASE) / SPAN;
            let to = (0..PER)
                .map(|j| own(t, (span + 1 + r.below(SPANS - 1)) % SPANS, j))
                .find(|b| !m.contains_key(b));
            if let Some(b) = to {
                let got = mm.mremap(a, P, P, RemapFlags::MAYMOVE | RemapFlags::FIXED, Some(b));
                assert_eq!(got, Ok(b), "{what}: move out");
                assert_eq!(mm.read(b), Ok(v), "{what}: moved out");
                assert_eq!(mm.munmap(b, P), Ok(()), "{what}");
            } else {
                assert_eq!(mm.munmap(a, P), Ok(()), "{what}");
            }
        }
        2 => {
            // A placed move away that leaves the source (DONTUNMAP), then
            // both unmapped.
            let d = mm
                .mremap(a, P, P, RemapFlags::MAYMOVE | RemapFlags::DONTUNMAP, None)
                .unwrap();
            assert_eq!(mm.read(d), Ok(v), "{what}");
            assert_eq!(mm.read(a), Ok(0), "{what}");
            assert_eq!(mm.munmap(a, P), Ok(()), "{what}");
            assert_eq!(mm.munmap(d, P), Ok(()), "{what}");
        }
        3 => {
            // FIXED over it (its PTEs zapped, the span keeps a VMA), then
            // unmapped.
            assert_eq!(mm.mmap(Some(a), P, Prot::READ, FIXED), Ok(a), "{what}");
            assert_eq!(mm.read(a), Ok(0), "{what}");
            assert_eq!(mm.munmap(a, P), Ok(()), "{what}");
        }
        _ => {
            assert_eq!(mm.mprotect(a, P, Prot::READ), Ok(()), "{what}");
            assert_eq!(mm.madvise(a, P, Advice::DontNeed), Ok(()), "{what}");
            assert_eq!(mm.read(a), Ok(0), "{what}");
            assert_eq!(mm.munmap(a, P), Ok(()), "{what}");
        }
    }
    assert_eq!(mm.read(a), Err(FaultError::Segv), "{what}");
}

/// Every `EPOCH` iterations the threads unmap all their pages at once
/// (one munmap per page, so their free steps meet each other's locks),
/// meet, and one of them counts the tables left in empty spans.
const EPOCH: u64 = 64;

/// What the threads share besides the space: the epoch barrier and the
/// worst `tables_kept` seen at an epoch's quiescent point.
struct Epochs {
    bar: Barrier,
    kept: std::sync::atomic::AtomicU64,
}

fn end_epoch(mm: &AddressSpace, e: &Epochs, m: &mut Model, r: &mut Rng) {
    let mut pages: Vec<u64> = m.keys().copied().collect();
    // A random order, so the last unmapper of a span varies.
    for j in (1..pages.len()).rev() {
        pages.swap(j, r.below(j as u64 + 1) as usize);
    }
    for a in pages {
        mm.munmap(a, P).unwrap();
    }
    m.clear();
    if e.bar.wait().is_leader() {
        let kept = mm.stats().tables_kept;
        e.kept.fetch_max(kept, std::sync::atomic::Ordering::Relaxed);
    }
    e.bar.wait();
}

fn worker(
    mm: &AddressSpace,
    t: u64,
    threads: u64,
    iters: u64,
    seed: u64,
    transient: bool,
    epochs: &Epochs,
) -> Model {
    let mut r = Rng((seed << 8) ^ (t + 1) | 1);
    let mut m = Model::new();
    let heap0 = mm.brk_range().end;
    for i in 0..iters {
        if i % EPOCH == EPOCH - 1 {
            end_epoch(mm, epochs, &mut m, &mut r);
            continue;
        }
        let what = format!("thread {t} iter {i} seed {seed}");
        let span = r.below(SPANS);
        let k = r.below(PER);
        let a = own(t, span, k);
        // Pages of ours from `a` to the end of our range in this span.
        let room = PER - k;
        if transient && r.below(4) != 0 {
            if m.contains_key(&a) {
                assert_eq!(mm.munmap(a, P), Ok(()), "{what}");
                m.remove(&a);
            } else {
                lifecycle(mm, &mut r, &m, t, a, (t << 48) | (i + 1), &what);
            }
            continue;
        }
        match r.below(16) {
            0 | 1 => {
                let n = 1 + r.below(room.min(3));
                let prot = prot_of(&mut r);
                assert_eq!(mm.mmap(Some(a), n * P, prot, FIXED), Ok(a), "{what}");
                for j in 0..n {
                    m.insert(a + j * P, Page { prot, val: 0 });
                }
            }
            2 | 3 => {
                let n = 1 + r.below(room.min(3));
                assert_eq!(mm.munmap(a, n * P), Ok(()), "{what}");
                for j in 0..n {
                    m.remove(&(a + j * P));
                }
            }
            4 => {
                let n = 1 + r.below(room.min(2));
                if all_mapped(&m, a, n) {
                    let prot = prot_of(&mut r);
                    assert_eq!(mm.mprotect(a, n * P, prot), Ok(()), "{what}");
                    for j in 0..n {
                        m.get_mut(&(a + j * P)).unwrap().prot = prot;
                    }
                }
            }
            5..=7 => {
                let v = (t << 48) | (i + 1);
                let got = mm.write(a, v);
                match m.get_mut(&a) {
                    None => assert_eq!(got, Err(FaultError::Segv), "{what}"),
                    Some(p) if !p.prot.contains(Prot::WRITE) => {
                        assert_eq!(got, Err(FaultError::Access), "{what}")
                    }
                    Some(p) => {
                        assert_eq!(got, Ok(()), "{what}");
                        p.val = v;
                    }
                }
                check_read(mm, &m, a, &what);
            }
            8 => {
                // mremap FIXED: our page `a` to another page of ours,
                // maybe in another span (source tables freed under the
                // mover's lock, `Tables::Free`).
                let to = own(t, r.below(SPANS), r.below(PER));
                if let Some(&p) = m.get(&a)
                    && to != a
                {
                    let got = mm.mremap(a, P, P, RemapFlags::MAYMOVE | RemapFlags::FIXED, Some(to));
                    assert_eq!(got, Ok(to), "{what}: mremap {a:#x} -> {to:#x}");
                    m.remove(&a);
                    m.insert(to, p);
                    check_read(mm, &m, to, &what);
                }
            }
            9 => {
                // Grow in place into our next page, or shrink back.
                if k + 1 < PER {
                    let b = a + P;
                    match (m.get(&a).copied(), m.contains_key(&b)) {
                        (Some(p), false) => {
                            assert_eq!(
                                mm.mremap(a, P, 2 * P, RemapFlags::empty(), None),
                                Ok(a),
                                "{what}: grow"
                            );
                            m.insert(
                                b,
                                Page {
                                    prot: p.prot,
                                    val: 0,
                                },
                            );
                        }
                        (Some(_), true) => {
                            assert_eq!(
                                mm.mremap(a, 2 * P, P, RemapFlags::empty(), None),
                                Ok(a),
                                "{what}: shrink"
                            );
                            m.remove(&b);
                        }
                        _ => {}
                    }
                }
            }
            10 => {
                // A placed move away (DONTUNMAP keeps `a`, empty), or a
                // move that must leave (growing over our mapped next page).
                if let Some(p) = m.get(&a).copied() {
                    let grow = k + 1 < PER && m.contains_key(&(a + P)) && r.below(2) == 0;
                    let (flags, new_len) = if grow {
                        (RemapFlags::MAYMOVE, 2 * P)
                    } else {
                        (RemapFlags::MAYMOVE | RemapFlags::DONTUNMAP, P)
                    };
                    let d = mm
                        .mremap(a, P, new_len, flags, None)
                        .unwrap_or_else(|e| panic!("{what}: placed mremap: {e:?}"));
                    assert!(
                        !(BASE..BASE + SPANS * SPAN).contains(&d),
                        "{what}: placed into the shared spans at {d:#x}"
                    );
                    if p.prot.contains(Prot::READ) {
                        assert_eq!(mm.read(d), Ok(p.val), "{what}: moved value");
                    }
                    if grow {
                        m.remove(&a);
                    } else {
                        m.insert(
                            a,
                            Page {
                                prot: p.prot,
                                val: 0,
                            },
                        );
                    }
                    assert_eq!(mm.munmap(d, new_len), Ok(()), "{what}");
                    check_read(mm, &m, a, &what);
                }
            }
            11 => {
                let n = 1 + r.below(room.min(2));
                if all_mapped(&m, a, n) {
                    assert_eq!(mm.madvise(a, n * P, Advice::DontNeed), Ok(()), "{what}");
                    for j in 0..n {
                        m.get_mut(&(a + j * P)).unwrap().val = 0;
                    }
                }
            }
            12 | 13 => {
                // Read-fault other threads' pages: installs into their
                // tables, meets their dying VMAs (`Try::Orphan`).
                let o = (t + 1 + r.below(threads)) % threads;
                let b = own(o, r.below(SPANS), r.below(PER));
                let _ = mm.fault(b, Access::Read);
            }
            14 => {
                // A placed mmap hinted into the spans, above every owned
                // page: lands there (sharing a table with us) or far away.
                let hint = BASE + r.below(SPANS) * SPAN + (64 + 4 * t + r.below(4)) * P;
                let d = mm.mmap(Some(hint), P, RW, ANON).unwrap();
                assert!(
                    !(BASE..BASE + SPANS * SPAN).contains(&d) || (d - BASE) % SPAN >= 64 * P,
                    "{what}: placed among owned pages at {d:#x}"
                );
                mm.write(d, i).unwrap();
                assert_eq!(mm.read(d), Ok(i), "{what}");
                assert_eq!(mm.munmap(d, P), Ok(()), "{what}");
            }
            _ => {
                // Thread 0 moves the break (whole-space lock, `Tables::Free`
                // for its shrink), everyone else faults a page of ours.
                if t == 0 {
                    let cur = mm.brk_range().end;
                    let new = if cur > heap0 && r.below(2) == 0 {
                        heap0
                    } else {
                        cur + P
                    };
                    assert_eq!(mm.brk(new), new, "{what}: brk");
                    if new > heap0 {
                        mm.write(new - P, i).unwrap();
                    }
                } else {
                    let _ = mm.fault(a, Access::Read);
                }
            }
        }
    }
    m
}

fn round(
    policy: FaultPolicy,
    locking: WriterLocking,
    threads: u64,
    iters: u64,
    seed: u64,
    transient: bool,
) {
    let what =
        format!("{policy:?} {locking:?} {threads} threads seed {seed} transient {transient}");
    let mm = Arc::new(AddressSpace::with_locking(policy, locking));
    let heap0 = mm.brk_range().end;
    let go = Arc::new(Barrier::new(threads as usize));
    let epochs = Arc::new(Epochs {
        bar: Barrier::new(threads as usize),
        kept: Default::default(),
    });
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let (mm, go, epochs) = (mm.clone(), go.clone(), epochs.clone());
            thread::spawn(move || {
                go.wait();
                worker(&mm, t, threads, iters, seed, transient, &epochs)
            })
        })
        .collect();
    let models: Vec<Model> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    let kept = epochs.kept.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        kept, 0,
        "{what}: tables left in empty spans at an epoch's end"
    );
    let s = mm.stats();
    if std::env::var_os("S16_VERBOSE").is_some() {
        eprintln!("{what}: {s:?}");
    }
    assert_eq!(s.tables_kept, 0, "{what}: table in an empty span: {s:?}");
    if let Err(e) = mm.check() {
        panic!("{what}: check: {e}");
    }
    // Each page: the model's protection and value.
    let vmas = mm.vmas();
    for (t, m) in models.iter().enumerate() {
        for span in 0..SPANS {
            for k in 0..PER {
                let a = own(t as u64, span, k);
                let v = vmas.iter().find(|v| v.range.contains(&a));
                assert_eq!(
                    v.map(|v| v.prot),
                    m.get(&a).map(|p| p.prot),
                    "{what}: thread {t} page {a:#x}"
                );
                check_read(&mm, m, a, &what);
            }
        }
    }
    // Only our pages and the heap are left.
    for v in &vmas {
        let ours = v.range.start >= BASE && v.range.end <= BASE + SPANS * SPAN;
        assert!(
            ours || v.range.start >= heap0 - P,
            "{what}: VMA left {v:x?}"
        );
    }
    mm.munmap(BASE, SPANS * SPAN).unwrap();
    assert_eq!(mm.brk(heap0), heap0);
    let s = mm.stats();
    assert_eq!(s.tables_kept, 0, "{what}: after unmapping all: {s:?}");
    let left: Vec<_> = mm
        .vmas()
        .into_iter()
        .filter(|v| v.range.start < heap0)
        .collect();
    assert!(left.is_empty(), "{what}: {left:x?}");
    mm.check().unwrap();
    frames::assert_all_freed(&mm, &what);
}

fn rounds(locking: WriterLocking, seed0: u64) {
    let iters: u64 = std::env::var("S16_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let mut seed = seed0;
    for policy in [
        FaultPolicy::Speculative,
        FaultPolicy::PerVmaLock,
        FaultPolicy::RangeLock,
        FaultPolicy::MmapLock,
    ] {
        for threads in [2, 4] {
            round(policy, locking, threads, iters, seed, false);
            round(policy, locking, threads, iters, seed, true);
            seed += 1;
        }
    }
}

#[test]
fn owned_pages_in_shared_spans_range_locking() {
    watchdog::within(120, "range", || rounds(WriterLocking::Range, 0x1600));
}

#[test]
fn owned_pages_in_shared_spans_global_locking() {
    watchdog::within(120, "global", || rounds(WriterLocking::Global, 0x1680));
}

/// The same at length: `S16_ITERS` per thread (default 50,000), four
/// threads, many seeds.
#[test]
#[ignore = "long: about a minute per 50,000 iterations"]
fn owned_pages_in_shared_spans_long() {
    let iters = race::env_u64("S16_ITERS", 50_000);
    let seeds = race::env_u64("S16_SEEDS", 4);
    for seed in 0..seeds {
        for policy in [FaultPolicy::Speculative, FaultPolicy::PerVmaLock] {
            round(policy, WriterLocking::Range, 4, iters, 0x1700 + seed, false);
            round(policy, WriterLocking::Range, 4, iters, 0x1700 + seed, true);
        }
    }
}
