//! Hostile tests of the writers-versus-faults protocol (docs/DESIGN.md §4.2,
//! "Writers versus faults", M5–M7): every writer of the table raced against
//! faults on the pages it changes, on pages it must leave alone (stable
//! pages: a fault there may never fail, and its PTE may never vanish), on
//! neighbours it merges with, and on tables it shares with other VMAs; stack
//! growth against munmap/mmap of the guard gap, mprotect and RLIMIT_STACK;
//! writers refused by vm.max_map_count.
//!
//! Every check holds in every interleaving of a correct implementation.
//! `HWF_ROUNDS` (default 300) rounds per policy and test; `HWF_SECS`
//! (default 0.5) seconds per policy of the random test. E.g.
//! `HWF_ROUNDS=20000 HWF_SECS=30 cargo test --release --test writers_faults_hostile`.

use maple_rcu::mm::{
    Access, AddressSpace, Advice, FaultError, FaultOutcome, FaultPolicy, MapFlags, MmError, Prot,
    RemapFlags,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

const P: u64 = 4096;
const SPAN: u64 = 2 << 20;
const A: u64 = 0x1000_0000;
const B: u64 = 0x2000_0000;
/// A stack top well away from A and B (not 2 MiB aligned: the growth page
/// shares the stack's table).
const ST: u64 = 0x3000_0000 + 64 * P;
const R: Prot = Prot::READ;
const RW: Prot = Prot::READ.union(Prot::WRITE);
const RWX: Prot = RW.union(Prot::EXEC);
const ANON: MapFlags = MapFlags::PRIVATE.union(MapFlags::ANONYMOUS);
const FIXED: MapFlags = ANON.union(MapFlags::FIXED);
const STACK: MapFlags = FIXED.union(MapFlags::GROWSDOWN);
const POLICIES: [FaultPolicy; 3] = [
    FaultPolicy::Speculative,
    FaultPolicy::PerVmaLock,
    FaultPolicy::MmapLock,
];

fn rounds() -> usize {
    std::env::var("HWF_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
}

fn secs() -> f64 {
    std::env::var("HWF_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.5)
}

/// `rounds()` rounds: `setup` (single-threaded, may set limits), then
/// `writer` and `faulter` released together by a barrier, then
/// `verify(mm, writer's result, faulter's result)` and `check()`.
fn race<W: Send + 'static, F>(
    setup: impl Fn(&mut AddressSpace),
    writer: impl Fn(&AddressSpace) -> W + Send + Sync + 'static,
    faulter: impl Fn(&AddressSpace) -> F,
    verify: impl Fn(&AddressSpace, W, F),
) {
    let writer = Arc::new(writer);
    for policy in POLICIES {
        for round in 0..rounds() {
            let mut mm = AddressSpace::with_policy(policy);
            setup(&mut mm);
            let mm = Arc::new(mm);
            let go = Arc::new(Barrier::new(2));
            let w = {
                let (mm, go, writer) = (mm.clone(), go.clone(), writer.clone());
                thread::spawn(move || {
                    go.wait();
                    writer(&mm)
                })
            };
            go.wait();
            let f = faulter(&mm);
            let wr = w.join().unwrap();
            let ctx = format!("{policy:?} round {round}");
            verify(&mm, wr, f);
            mm.check().unwrap_or_else(|e| panic!("{ctx}: {e}"));
            let s = mm.stats();
            assert_eq!(
                s.frames_allocated,
                s.frames_live + s.frames_freed,
                "{ctx}: {s:?}"
            );
        }
    }
}

fn map(mm: &AddressSpace, at: u64, len: u64, prot: Prot) {
    assert_eq!(mm.mmap(Some(at), len, prot, FIXED).unwrap(), at);
}

fn stack(mm: &AddressSpace, top: u64, pages: u64) {
    let at = top - pages * P;
    assert_eq!(mm.mmap(Some(at), pages * P, RW, STACK).unwrap(), at);
}

fn writable(mm: &AddressSpace, a: u64) -> bool {
    mm.translate(a)
        .is_some_and(|p| p.prot.contains(Prot::WRITE))
}

/// The VMA covering `a`, if any.
fn vma_at(mm: &AddressSpace, a: u64) -> Option<maple_rcu::mm::VmaInfo> {
    mm.vmas().into_iter().find(|v| v.range.contains(&a))
}

/// Write-faults every page in `pages` (a stable mapping): each must succeed.
fn fault_stable(mm: &AddressSpace, pages: &[u64], access: Access) {
    for &a in pages {
        let r = mm.fault(a, access);
        assert!(r.is_ok(), "stable page {a:#x}: {r:?} ({:?})", mm.policy());
    }
}

fn assert_present(mm: &AddressSpace, pages: &[u64], what: &str) {
    for &a in pages {
        assert!(
            mm.translate(a).is_some(),
            "{:?}: {what}: PTE at {a:#x} lost",
            mm.policy()
        );
    }
}

// ---------------------------------------------------------------------------
// Tables shared by two VMAs in one 2 MiB span
// ---------------------------------------------------------------------------

/// munmap of X while faulting Y in the same 2 MiB span: the table must not be
/// freed (Y is there), Y's installs must stay, X's PTEs must go.
#[test]
fn shared_table_munmap_other_vma() {
    let y: Vec<u64> = (0..8).map(|i| A + 64 * P + i * P).collect();
    let y2 = y.clone();
    race(
        |mm| {
            map(mm, A, 8 * P, RW);
            map(mm, A + 64 * P, 8 * P, RW);
            for i in 0..8 {
                mm.fault(A + i * P, Access::Write).unwrap();
            }
        },
        |mm| mm.munmap(A, 8 * P).unwrap(),
        move |mm| fault_stable(mm, &y, Access::Write),
        move |mm, (), ()| {
            assert_present(mm, &y2, "fault on the other VMA of a shared table");
            for i in 0..8 {
                assert!(mm.translate(A + i * P).is_none(), "PTE survived munmap");
            }
        },
    );
}

/// The last VMA of a span is unmapped (the table is freed and retired) and
/// re-mapped while faulters hammer the span: the faulter either installs in
/// the new mapping (kept) or into the old one (zapped) or sees Segv; no
/// table is used after it is freed (run this under ASan).
#[test]
fn table_free_and_refault_same_span() {
    race(
        |mm| {
            map(mm, A, 4 * P, RW);
            mm.fault(A, Access::Write).unwrap();
        },
        |mm| {
            for _ in 0..3 {
                mm.munmap(A, 4 * P).unwrap();
                map(mm, A, 4 * P, RW);
            }
        },
        |mm| {
            let mut last = None;
            for _ in 0..64 {
                last = Some(mm.fault(A + P, Access::Write));
            }
            last.unwrap()
        },
        |mm, (), r| {
            // The last fault may have hit any of the mappings; the final
            // mapping is the only one whose install survives.
            assert!(matches!(r, Ok(_) | Err(FaultError::Segv)), "{r:?}");
            // A fault now must succeed and stay.
            mm.fault(A + 2 * P, Access::Write).unwrap();
            assert!(mm.translate(A + 2 * P).is_some());
        },
    );
}

// ---------------------------------------------------------------------------
// Stack growth
// ---------------------------------------------------------------------------

/// Stack growth racing munmap of a VMA inside the stack guard gap: before
/// the munmap growth is refused (Segv), after it is allowed.
#[test]
fn stack_growth_vs_munmap_guard_gap() {
    race(
        |mm| {
            stack(mm, ST, 4);
            map(mm, ST - 4 * P - 10 * P, P, RW);
        },
        |mm| mm.munmap(ST - 4 * P - 10 * P, P).unwrap(),
        |mm| mm.fault(ST - 5 * P, Access::Write),
        |mm, (), r| {
            let v = vma_at(mm, ST - 4 * P).unwrap();
            match r {
                Ok(FaultOutcome::Installed) => {
                    assert!(mm.translate(ST - 5 * P).is_some(), "grown page lost");
                    assert_eq!(v.range.start, ST - 5 * P);
                }
                Err(FaultError::Segv) => {
                    assert!(mm.translate(ST - 5 * P).is_none());
                    assert_eq!(v.range.start, ST - 4 * P);
                }
                r => panic!("{r:?}"),
            }
            assert!(v.growsdown);
            // The gap is free now: growth succeeds.
            mm.fault(ST - 6 * P, Access::Write).unwrap();
        },
    );
}

/// Stack growth racing mmap of a VMA into the guard gap: growth succeeds
/// (mmap after) or is refused (mmap first); a grown page is never lost.
#[test]
fn stack_growth_vs_mmap_guard_gap() {
    race(
        |mm| stack(mm, ST, 4),
        |mm| map(mm, ST - 4 * P - 10 * P, P, RW),
        |mm| mm.fault(ST - 5 * P, Access::Write),
        |mm, (), r| {
            let v = vma_at(mm, ST - 4 * P).unwrap();
            match r {
                Ok(FaultOutcome::Installed) => {
                    assert!(mm.translate(ST - 5 * P).is_some(), "grown page lost");
                    assert_eq!(v.range.start, ST - 5 * P);
                }
                Err(FaultError::Segv) => assert_eq!(v.range.start, ST - 4 * P),
                r => panic!("{r:?}"),
            }
        },
    );
}

/// mmap(FIXED, PROT_READ) of exactly the page a racing write fault grows
/// the stack into: grown-then-replaced (Installed, zapped) or mapped first
/// (Access). Either way no writable PTE stays there.
#[test]
fn stack_growth_vs_mmap_fixed_on_growth_page() {
    race(
        |mm| stack(mm, ST, 4),
        |mm| map(mm, ST - 5 * P, P, R),
        |mm| mm.fault(ST - 5 * P, Access::Write),
        |mm, (), r| {
            assert!(
                matches!(r, Ok(FaultOutcome::Installed) | Err(FaultError::Access)),
                "{r:?}"
            );
            assert!(mm.translate(ST - 5 * P).is_none(), "PTE survived the mmap");
            let v = vma_at(mm, ST - 5 * P).unwrap();
            assert_eq!(
                (v.range.clone(), v.prot, v.growsdown),
                (ST - 5 * P..ST - 4 * P, R, false)
            );
        },
    );
}

/// mprotect(PROT_READ) of the whole stack racing a write fault that grows
/// it: grown first (Installed; the grown page keeps RW as mprotect's range
/// does not cover it) or protected first (the grown stack is read-only:
/// Access).
#[test]
fn mprotect_vs_stack_growth() {
    race(
        |mm| stack(mm, ST, 4),
        |mm| mm.mprotect(ST - 4 * P, 4 * P, R).unwrap(),
        |mm| mm.fault(ST - 5 * P, Access::Write),
        |mm, (), r| match r {
            Ok(FaultOutcome::Installed) => {
                assert!(writable(mm, ST - 5 * P), "grown page lost");
                assert_eq!(vma_at(mm, ST - 5 * P).unwrap().prot, RW);
            }
            Err(FaultError::Access) => {
                assert!(mm.translate(ST - 5 * P).is_none());
                assert_eq!(vma_at(mm, ST - 5 * P).unwrap().prot, R);
            }
            r => panic!("{r:?}"),
        },
    );
}

/// mprotect(PROT_READ | PROT_GROWSDOWN) extends down to the stack's start,
/// so it covers the grown page if the growth came first: the PTE must then
/// be downgraded (M5).
#[test]
fn mprotect_growsdown_vs_stack_growth() {
    race(
        |mm| stack(mm, ST, 4),
        |mm| mm.mprotect(ST - 2 * P, P, R | Prot::GROWSDOWN).unwrap(),
        |mm| mm.fault(ST - 5 * P, Access::Write),
        |mm, (), r| {
            assert!(
                matches!(r, Ok(FaultOutcome::Installed) | Err(FaultError::Access)),
                "{r:?}"
            );
            assert!(!writable(mm, ST - 5 * P), "M5: writable PTE in a R VMA");
            assert_eq!(vma_at(mm, ST - 5 * P).unwrap().prot, R);
        },
    );
}

/// A fault on a stable stack page while another thread grows the stack
/// (and a third write-faults below the guard gap, refused): the stable fault
/// never fails and its PTE stays.
#[test]
fn stack_body_fault_vs_growth() {
    race(
        |mm| stack(mm, ST, 4),
        |mm| {
            let mut rs = Vec::new();
            for i in 5..12 {
                rs.push(mm.fault(ST - i * P, Access::Write));
            }
            rs
        },
        |mm| {
            let pages: Vec<u64> = (1..=4).map(|i| ST - i * P).collect();
            fault_stable(mm, &pages, Access::Write);
            fault_stable(mm, &pages, Access::Read);
        },
        |mm, rs, ()| {
            for (i, r) in rs.into_iter().enumerate() {
                assert_eq!(r, Ok(FaultOutcome::Installed), "growth {i}");
            }
            let pages: Vec<u64> = (1..12).map(|i| ST - i * P).collect();
            assert_present(mm, &pages, "stack");
            assert_eq!(vma_at(mm, ST - P).unwrap().range, ST - 11 * P..ST);
        },
    );
}

/// RLIMIT_STACK: growth is refused while the stack is at its limit and
/// allowed once a racing munmap shortened it from the top.
#[test]
fn rlimit_growth_vs_munmap_top() {
    race(
        |mm| {
            mm.set_stack_rlimit(8 * P);
            stack(mm, ST, 8);
            mm.fault(ST - P, Access::Write).unwrap();
        },
        |mm| mm.munmap(ST - P, P).unwrap(),
        |mm| mm.fault(ST - 9 * P, Access::Write),
        |mm, (), r| {
            let v = vma_at(mm, ST - 2 * P).unwrap();
            match r {
                Ok(FaultOutcome::Installed) => {
                    assert!(mm.translate(ST - 9 * P).is_some(), "grown page lost");
                    assert_eq!(v.range, ST - 9 * P..ST - P);
                }
                Err(FaultError::Segv) => assert_eq!(v.range, ST - 8 * P..ST - P),
                r => panic!("{r:?}"),
            }
            assert!(mm.translate(ST - P).is_none());
            assert!(v.range.end - v.range.start <= 8 * P);
        },
    );
}

/// munmap of the whole stack racing a fault that grows it: Segv (munmap
/// first: nothing above) or Installed (grown, then unmapped: zapped).
#[test]
fn stack_growth_vs_munmap_stack() {
    race(
        |mm| stack(mm, ST, 4),
        |mm| mm.munmap(ST - 4 * P, 4 * P).unwrap(),
        |mm| mm.fault(ST - 5 * P, Access::Write),
        |mm, (), r| {
            // Grown first: the grown page survives as a one-page growsdown
            // VMA below the hole, with the fault's PTE. Unmapped first: Segv.
            match vma_at(mm, ST - 5 * P) {
                Some(v) => {
                    assert_eq!(v.range, ST - 5 * P..ST - 4 * P);
                    assert!(v.growsdown);
                    assert_eq!(r, Ok(FaultOutcome::Installed));
                    assert!(mm.translate(ST - 5 * P).is_some(), "grown page lost");
                }
                None => {
                    assert_eq!(r, Err(FaultError::Segv));
                    assert!(mm.translate(ST - 5 * P).is_none());
                }
            }
        },
    );
}

// ---------------------------------------------------------------------------
// mremap
// ---------------------------------------------------------------------------

/// mremap grow in place racing a fault just above the old end (Segv until
/// the grown VMA is published) and one on the old part (stable).
#[test]
fn mremap_grow_in_place_vs_fault_above() {
    race(
        |mm| map(mm, A, 2 * P, RW),
        |mm| assert_eq!(mm.mremap(A, 2 * P, 4 * P, RemapFlags::empty(), None), Ok(A)),
        |mm| {
            fault_stable(mm, &[A + P], Access::Write);
            loop {
                match mm.fault(A + 2 * P, Access::Write) {
                    Ok(o) => break o,
                    Err(FaultError::Segv) => thread::yield_now(),
                    Err(e) => panic!("{e:?}"),
                }
            }
        },
        |mm, (), o| {
            assert_eq!(o, FaultOutcome::Installed);
            assert_present(mm, &[A + P, A + 2 * P], "mremap grow");
        },
    );
}

/// mremap grow in place whose result merges with the next VMA, while that
/// neighbour is being faulted: its faults never fail and stay.
#[test]
fn mremap_grow_merges_next_vs_fault_on_next() {
    let n: Vec<u64> = (4..8).map(|i| A + i * P).collect();
    let n2 = n.clone();
    race(
        |mm| {
            map(mm, A, 2 * P, RW);
            map(mm, A + 4 * P, 4 * P, RW);
        },
        |mm| assert_eq!(mm.mremap(A, 2 * P, 4 * P, RemapFlags::empty(), None), Ok(A)),
        move |mm| fault_stable(mm, &n, Access::Write),
        move |mm, (), ()| {
            assert_present(mm, &n2, "merged neighbour");
            assert_eq!(mm.vmas().len(), 1);
        },
    );
}

/// mremap shrink: a fault on the cut tail is zapped or refused; one on the
/// kept part is stable.
#[test]
fn mremap_shrink_vs_faults() {
    race(
        |mm| map(mm, A, 4 * P, RW),
        |mm| assert_eq!(mm.mremap(A, 4 * P, 2 * P, RemapFlags::empty(), None), Ok(A)),
        |mm| {
            let tail = mm.fault(A + 3 * P, Access::Write);
            fault_stable(mm, &[A + P], Access::Write);
            tail
        },
        |mm, (), tail| {
            assert!(matches!(tail, Ok(_) | Err(FaultError::Segv)), "{tail:?}");
            assert!(mm.translate(A + 3 * P).is_none(), "PTE survived the shrink");
            assert_present(mm, &[A + P], "kept part");
        },
    );
}

/// A moving mremap whose target merges with a neighbour being faulted.
#[test]
fn mremap_move_merges_neighbour_vs_fault() {
    let n: Vec<u64> = (0..4).map(|i| B + i * P).collect();
    let n2 = n.clone();
    race(
        |mm| {
            map(mm, B, 4 * P, RW);
            map(mm, A, 2 * P, RW);
            mm.fault(A, Access::Write).unwrap();
        },
        |mm| {
            let f = RemapFlags::MAYMOVE | RemapFlags::FIXED;
            assert_eq!(
                mm.mremap(A, 2 * P, 2 * P, f, Some(B + 4 * P)),
                Ok(B + 4 * P)
            );
        },
        move |mm| fault_stable(mm, &n, Access::Write),
        move |mm, (), ()| {
            assert_present(mm, &n2, "merged neighbour");
            assert_present(mm, &[B + 4 * P], "moved page");
            assert!(mm.translate(A).is_none());
            assert_eq!(vma_at(mm, B).unwrap().range, B..B + 6 * P);
        },
    );
}

/// DONTUNMAP whose target merges with a neighbour being faulted, and a
/// second faulter on the source (stable: it stays mapped).
#[test]
fn mremap_dontunmap_merges_neighbour_vs_fault() {
    let n: Vec<u64> = (0..4).map(|i| B + i * P).collect();
    let n2 = n.clone();
    race(
        |mm| {
            map(mm, B, 4 * P, RW);
            map(mm, A, 2 * P, RW);
            mm.fault(A + P, Access::Write).unwrap();
        },
        |mm| {
            let f = RemapFlags::MAYMOVE | RemapFlags::FIXED | RemapFlags::DONTUNMAP;
            assert_eq!(
                mm.mremap(A, 2 * P, 2 * P, f, Some(B + 4 * P)),
                Ok(B + 4 * P)
            );
        },
        move |mm| {
            fault_stable(mm, &n, Access::Write);
            mm.fault(A, Access::Write)
        },
        move |mm, (), r| {
            assert!(r.is_ok(), "DONTUNMAP source faulted {r:?}");
            assert_present(mm, &n2, "merged neighbour");
            assert_present(mm, &[B + 5 * P], "moved page");
            assert!(mm.translate(A + P).is_none(), "moved page left behind");
            // The write on the source is at the source (after) or moved.
            assert!(mm.translate(A).is_some() || mm.translate(B + 4 * P).is_some());
            assert_eq!(mm.stats().frames_freed, 0);
        },
    );
}

/// DONTUNMAP inside one VMA (source and target in the same VMA, and in the
/// same page table): faults on the rest of the VMA are stable.
#[test]
fn mremap_dontunmap_within_one_vma() {
    race(
        |mm| {
            map(mm, A, 16 * P, RW);
            mm.fault(A, Access::Write).unwrap();
        },
        |mm| {
            let f = RemapFlags::MAYMOVE | RemapFlags::FIXED | RemapFlags::DONTUNMAP;
            assert_eq!(mm.mremap(A, P, P, f, Some(A + 8 * P)), Ok(A + 8 * P));
        },
        |mm| fault_stable(mm, &[A + 2 * P, A + 12 * P, A], Access::Write),
        |mm, (), ()| {
            assert_present(mm, &[A + 2 * P, A + 12 * P, A + 8 * P], "in-VMA move");
            assert_eq!(mm.vmas().len(), 1);
            let s = mm.stats();
            // A+8P was empty; the only frame ever freed is none.
            assert_eq!(s.frames_freed, 0, "{s:?}");
        },
    );
}

/// A moving mremap (not DONTUNMAP) whose target lies inside the source VMA.
#[test]
fn mremap_move_within_one_vma() {
    race(
        |mm| {
            map(mm, A, 16 * P, RW);
            mm.fault(A, Access::Write).unwrap();
            mm.fault(A + 8 * P, Access::Write).unwrap();
        },
        |mm| {
            let f = RemapFlags::MAYMOVE | RemapFlags::FIXED;
            assert_eq!(mm.mremap(A, P, P, f, Some(A + 8 * P)), Ok(A + 8 * P));
        },
        |mm| fault_stable(mm, &[A + 2 * P, A + 12 * P], Access::Write),
        |mm, (), ()| {
            assert_present(mm, &[A + 2 * P, A + 12 * P, A + 8 * P], "in-VMA move");
            assert!(mm.translate(A).is_none());
            assert_eq!(mm.stats().frames_freed, 1);
        },
    );
}

// ---------------------------------------------------------------------------
// brk
// ---------------------------------------------------------------------------

/// brk shrink: the kept heap is stable, the cut part is zapped or refused.
#[test]
fn brk_shrink_vs_faults() {
    race(
        |mm| {
            let b = mm.brk_range().start;
            assert_eq!(mm.brk(b + 8 * P), b + 8 * P);
        },
        |mm| {
            let b = mm.brk_range().start;
            assert_eq!(mm.brk(b + 2 * P), b + 2 * P);
        },
        |mm| {
            let b = mm.brk_range().start;
            let cut = mm.fault(b + 5 * P, Access::Write);
            fault_stable(mm, &[b + P], Access::Write);
            cut
        },
        |mm, (), cut| {
            let b = mm.brk_range().start;
            assert!(matches!(cut, Ok(_) | Err(FaultError::Segv)), "{cut:?}");
            assert!(mm.translate(b + 5 * P).is_none());
            assert_present(mm, &[b + P], "kept heap");
        },
    );
}

/// brk growth (the heap VMA is replaced by a bigger one) while the old heap
/// pages are faulted: stable.
#[test]
fn brk_grow_vs_fault_on_heap() {
    race(
        |mm| {
            let b = mm.brk_range().start;
            assert_eq!(mm.brk(b + 4 * P), b + 4 * P);
        },
        |mm| {
            let b = mm.brk_range().start;
            for k in 5..9 {
                assert_eq!(mm.brk(b + k * P), b + k * P);
            }
        },
        |mm| {
            let b = mm.brk_range().start;
            let pages: Vec<u64> = (0..4).map(|i| b + i * P).collect();
            fault_stable(mm, &pages, Access::Write);
        },
        |mm, (), ()| {
            let b = mm.brk_range().start;
            let pages: Vec<u64> = (0..4).map(|i| b + i * P).collect();
            assert_present(mm, &pages, "heap");
        },
    );
}

// ---------------------------------------------------------------------------
// mmap / mprotect merges, splits, upgrades
// ---------------------------------------------------------------------------

/// mmap(FIXED) next to an identical VMA merges with it: the neighbour is
/// replaced while it is faulted; its faults never fail and stay.
#[test]
fn mmap_merges_neighbour_vs_fault() {
    let n: Vec<u64> = (0..4).map(|i| A + i * P).collect();
    let n2 = n.clone();
    race(
        |mm| {
            map(mm, A, 4 * P, RW);
            map(mm, A + 8 * P, 4 * P, RW);
        },
        |mm| map(mm, A + 4 * P, 4 * P, RW),
        move |mm| fault_stable(mm, &n, Access::Write),
        move |mm, (), ()| {
            assert_present(mm, &n2, "merged neighbour");
            assert_eq!(mm.vmas().len(), 1);
        },
    );
}

/// mprotect makes a VMA merge with its neighbour on both sides, while both
/// neighbours are faulted (stable) and the changed VMA is written
/// (Installed then downgraded, or Access).
#[test]
fn mprotect_merges_neighbours_vs_fault() {
    race(
        |mm| {
            map(mm, A, 4 * P, R);
            map(mm, A + 4 * P, 4 * P, RW);
            map(mm, A + 8 * P, 4 * P, R);
        },
        |mm| mm.mprotect(A + 4 * P, 4 * P, R).unwrap(),
        |mm| {
            fault_stable(mm, &[A + P, A + 9 * P], Access::Read);
            let w = mm.fault(A + 5 * P, Access::Write);
            fault_stable(mm, &[A + 2 * P, A + 10 * P], Access::Read);
            w
        },
        |mm, (), w| {
            assert!(
                matches!(w, Ok(FaultOutcome::Installed) | Err(FaultError::Access)),
                "{w:?}"
            );
            assert!(!writable(mm, A + 5 * P), "M5");
            assert_present(mm, &[A + P, A + 2 * P, A + 9 * P, A + 10 * P], "neighbour");
            assert_eq!(mm.vmas().len(), 1);
        },
    );
}

/// mprotect of one page in the middle (a three-way split): the pages on
/// either side keep RW and their write faults never fail.
#[test]
fn mprotect_split_stable_pages() {
    race(
        |mm| map(mm, A, 4 * P, RW),
        |mm| mm.mprotect(A + 2 * P, P, R).unwrap(),
        |mm| fault_stable(mm, &[A, A + 3 * P, A + P], Access::Write),
        |mm, (), ()| {
            for a in [A, A + P, A + 3 * P] {
                assert!(writable(mm, a), "{:?}: lost write at {a:#x}", mm.policy());
            }
            assert_eq!(mm.vmas().len(), 3);
        },
    );
}

/// mprotect(R → RW): a write fault is refused (before) or installs
/// writable (after); a read-installed PTE is upgraded afterwards.
#[test]
fn mprotect_upgrade_vs_faults() {
    race(
        |mm| {
            map(mm, A, 4 * P, R);
            mm.fault(A + 2 * P, Access::Read).unwrap();
        },
        |mm| mm.mprotect(A, 4 * P, RW).unwrap(),
        |mm| {
            (
                mm.fault(A + P, Access::Write),
                mm.fault(A + 2 * P, Access::Write),
            )
        },
        |mm, (), (w, u)| {
            match w {
                Ok(FaultOutcome::Installed) => assert!(writable(mm, A + P)),
                Err(FaultError::Access) => {}
                r => panic!("{r:?}"),
            }
            match u {
                Ok(FaultOutcome::Upgraded) => assert!(writable(mm, A + 2 * P)),
                Err(FaultError::Access) => {}
                r => panic!("{r:?}"),
            }
            // After the call every write succeeds.
            mm.fault(A + P, Access::Write).unwrap();
            mm.fault(A + 2 * P, Access::Write).unwrap();
            assert!(writable(mm, A + P) && writable(mm, A + 2 * P));
        },
    );
}

/// mprotect(RW → NONE) racing read and write faults: no PTE may grant
/// anything afterwards.
#[test]
fn mprotect_none_vs_faults() {
    race(
        |mm| {
            map(mm, A, 4 * P, RW);
            mm.fault(A, Access::Read).unwrap();
        },
        |mm| mm.mprotect(A, 4 * P, Prot::NONE).unwrap(),
        |mm| {
            (
                mm.fault(A + P, Access::Read),
                mm.fault(A, Access::Write),
                mm.fault(A + 3 * P, Access::Write),
            )
        },
        |mm, (), (a, b, c)| {
            for r in [a, b, c] {
                assert!(matches!(r, Ok(_) | Err(FaultError::Access)), "{r:?}");
            }
            for i in 0..4 {
                if let Some(p) = mm.translate(A + i * P) {
                    assert!(p.prot.is_empty(), "M5: {p:?}");
                }
            }
        },
    );
}

/// mmap(FIXED, PROT_READ) over part of a RW VMA: a write on the covered
/// page is Installed-then-zapped or refused; pages outside are stable.
#[test]
fn mmap_fixed_over_part_vs_faults() {
    race(
        |mm| map(mm, A, 4 * P, RW),
        |mm| map(mm, A + P, P, R),
        |mm| {
            let r = mm.fault(A + P, Access::Write);
            fault_stable(mm, &[A, A + 3 * P], Access::Write);
            r
        },
        |mm, (), r| {
            assert!(
                matches!(r, Ok(FaultOutcome::Installed) | Err(FaultError::Access)),
                "{r:?}"
            );
            assert!(mm.translate(A + P).is_none(), "PTE survived mmap FIXED");
            assert_present(mm, &[A, A + 3 * P], "outside the mmap");
        },
    );
}

/// madvise(DONTNEED) on one page while others in the same VMA and table
/// are faulted: those stay; after the call the advised page holds a PTE
/// only if a racing fault came after the zap.
#[test]
fn madvise_vs_neighbouring_faults() {
    race(
        |mm| {
            map(mm, A, 8 * P, RW);
            for i in 0..8 {
                mm.fault(A + i * P, Access::Write).unwrap();
            }
        },
        |mm| mm.madvise(A + 4 * P, P, Advice::DontNeed).unwrap(),
        |mm| fault_stable(mm, &[A + 3 * P, A + 5 * P, A + 6 * P], Access::Write),
        |mm, (), ()| {
            assert_present(mm, &[A + 3 * P, A + 5 * P, A + 6 * P], "madvise neighbour");
            assert!(mm.translate(A + 4 * P).is_none());
            assert_eq!(mm.stats().frames_freed, 1);
        },
    );
}

// ---------------------------------------------------------------------------
// vm.max_map_count: refused and partial writers
// ---------------------------------------------------------------------------

/// munmap of a middle page refused at the limit (ENOMEM, nothing changes):
/// a racing write on that page is stable.
#[test]
fn map_count_refused_munmap_vs_fault() {
    race(
        |mm| {
            mm.set_max_map_count(1);
            map(mm, A, 4 * P, RW);
            mm.fault(A + P, Access::Write).unwrap();
        },
        |mm| {
            assert_eq!(mm.munmap(A + P, P), Err(MmError::NoMem));
            assert_eq!(mm.mmap(Some(A + 2 * P), P, R, FIXED), Err(MmError::NoMem));
        },
        |mm| fault_stable(mm, &[A + 2 * P, A + P], Access::Write),
        |mm, (), ()| {
            assert_present(mm, &[A + P, A + 2 * P], "refused writer");
            assert_eq!(mm.vmas().len(), 1);
            assert_eq!(mm.stats().frames_freed, 0);
        },
    );
}

/// mprotect stopped by the limit after the first split (`SplitOnly`): the
/// VMA is split in two with its old protection; writes on it never fail.
#[test]
fn map_count_mprotect_split_only_vs_fault() {
    race(
        |mm| {
            mm.set_max_map_count(2);
            map(mm, A, 4 * P, RW);
        },
        |mm| assert_eq!(mm.mprotect(A + P, P, R), Err(MmError::NoMem)),
        |mm| fault_stable(mm, &[A + P, A, A + 3 * P], Access::Write),
        |mm, (), ()| {
            for a in [A, A + P, A + 3 * P] {
                assert!(writable(mm, a), "{:?}: write lost at {a:#x}", mm.policy());
            }
            assert_eq!(mm.vmas().len(), 2);
        },
    );
}

/// mprotect stopped part way (`At`): the first VMA is changed, the second
/// (which needed a split) is not; writes on the second are stable.
#[test]
fn map_count_mprotect_partial_vs_fault() {
    race(
        |mm| {
            mm.set_max_map_count(2);
            // Shared: never merges with the second VMA's changed part.
            let shared = MapFlags::SHARED | MapFlags::ANONYMOUS | MapFlags::FIXED;
            assert_eq!(mm.mmap(Some(A), 2 * P, RW, shared), Ok(A));
            map(mm, A + 2 * P, 2 * P, RWX);
        },
        |mm| assert_eq!(mm.mprotect(A, 3 * P, R), Err(MmError::NoMem)),
        |mm| {
            let w = mm.fault(A, Access::Write);
            fault_stable(mm, &[A + 2 * P, A + 3 * P], Access::Write);
            w
        },
        |mm, (), w| {
            assert!(
                matches!(w, Ok(FaultOutcome::Installed) | Err(FaultError::Access)),
                "{w:?}"
            );
            assert!(!writable(mm, A), "M5");
            assert!(writable(mm, A + 2 * P) && writable(mm, A + 3 * P));
            assert_eq!(vma_at(mm, A + 2 * P).unwrap().range, A + 2 * P..A + 4 * P);
        },
    );
}

// ---------------------------------------------------------------------------
// Random writers around a stable island
// ---------------------------------------------------------------------------

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A stable island `[A, A + 16P)` RW, pre-faulted, never the target of any
/// writer — only of merges (the random region starts right above it and in
/// the same page table, and a GROWSDOWN VMA grows in it). One writer runs
/// random mmap/munmap/mprotect/mremap/madvise/brk in the region; two
/// faulters fault the island (must never fail; frames must never change)
/// and random region pages (anything goes). After each round: `check()`,
/// balance, island frames unchanged.
#[test]
fn random_writers_stable_island() {
    const ISLAND: u64 = 16;
    const REGION: u64 = 96; // pages above the island
    let budget = Duration::from_secs_f64(secs());
    for policy in POLICIES {
        let t0 = Instant::now();
        let mut seed = 1u64;
        while t0.elapsed() < budget {
            seed += 1;
            let mm = Arc::new(AddressSpace::with_policy(policy));
            map(&mm, A, ISLAND * P, RW);
            for i in 0..ISLAND {
                mm.fault(A + i * P, Access::Write).unwrap();
            }
            let frames: Vec<u64> = (0..ISLAND)
                .map(|i| mm.translate(A + i * P).unwrap().frame)
                .collect();
            let stop = Arc::new(AtomicBool::new(false));
            let faulters: Vec<_> = (0..2)
                .map(|k| {
                    let (mm, stop) = (mm.clone(), stop.clone());
                    thread::spawn(move || {
                        let mut rng = Rng(seed * 31 + k);
                        while !stop.load(Ordering::Relaxed) {
                            let i = rng.below(ISLAND);
                            let acc = if rng.below(2) == 0 {
                                Access::Read
                            } else {
                                Access::Write
                            };
                            let r = mm.fault(A + i * P, acc);
                            assert_eq!(
                                r,
                                Ok(FaultOutcome::Present),
                                "{policy:?} seed {seed}: island page {i}"
                            );
                            let j = ISLAND + rng.below(REGION + 8);
                            let acc = if rng.below(2) == 0 {
                                Access::Read
                            } else {
                                Access::Write
                            };
                            let _ = mm.fault(A + j * P, acc);
                        }
                    })
                })
                .collect();
            let mut rng = Rng(seed);
            let pg = |rng: &mut Rng| A + (ISLAND + rng.below(REGION)) * P;
            let prots = [R, RW, RWX, Prot::NONE, RW];
            for _ in 0..40 {
                let a = pg(&mut rng);
                let len = (1 + rng.below(8)) * P;
                let len = len.min(A + (ISLAND + REGION) * P - a);
                let prot = prots[rng.below(prots.len() as u64) as usize];
                match rng.below(9) {
                    0 | 1 => {
                        let _ = mm.mmap(Some(a), len, prot, FIXED);
                    }
                    2 => {
                        let _ = mm.munmap(a, len);
                    }
                    3 => {
                        let _ = mm.mprotect(a, len, prot);
                    }
                    4 => {
                        let t = pg(&mut rng);
                        let t = t.min(A + (ISLAND + REGION) * P - len);
                        let f = match rng.below(3) {
                            0 => RemapFlags::MAYMOVE | RemapFlags::FIXED,
                            1 => RemapFlags::MAYMOVE | RemapFlags::FIXED | RemapFlags::DONTUNMAP,
                            _ => RemapFlags::empty(),
                        };
                        let nl = if f.contains(RemapFlags::DONTUNMAP) {
                            len
                        } else {
                            (1 + rng.below(8)) * P
                        };
                        let t = t.min(A + (ISLAND + REGION) * P - nl);
                        let r = mm.mremap(a, len, nl, f, Some(t));
                        // Keep everything inside the region.
                        if let Ok(d) = r
                            && (d < A + ISLAND * P || d + nl > A + (ISLAND + REGION) * P)
                        {
                            mm.munmap(d, nl).unwrap();
                        }
                    }
                    5 => {
                        let _ = mm.madvise(a, len, Advice::DontNeed);
                    }
                    6 => {
                        // A stack at the top of a random range; faults grow it.
                        let _ = mm.mmap(Some(a), P, RW, STACK);
                    }
                    7 => {
                        // mmap over [a, a+len) with RW next to the island merges
                        let _ = mm.mmap(Some(A + ISLAND * P), len, RW, FIXED);
                    }
                    _ => {
                        let _ = mm.munmap(A + ISLAND * P, len);
                    }
                }
            }
            stop.store(true, Ordering::Relaxed);
            for f in faulters {
                f.join().unwrap();
            }
            mm.check()
                .unwrap_or_else(|e| panic!("{policy:?} seed {seed}: {e}"));
            let s = mm.stats();
            assert_eq!(s.frames_allocated, s.frames_live + s.frames_freed, "{s:?}");
            for i in 0..ISLAND {
                let p = mm.translate(A + i * P).expect("island PTE lost");
                assert_eq!(p.frame, frames[i as usize], "island frame changed");
                assert!(p.prot.contains(Prot::WRITE));
            }
            assert!(
                mm.vmas()
                    .iter()
                    .all(|v| v.range.end <= A + (ISLAND + REGION) * P
                        || v.range.start >= A + (ISLAND + REGION) * P)
            );
        }
    }
}

/// Several faulters on the pages of one span while the writer cycles
/// munmap (table freed) / mmap / mremap-away / mremap-back of the only VMA:
/// memory safety of retired tables (ASan) and frame balance.
#[test]
fn many_faulters_vs_table_churn() {
    let budget = Duration::from_secs_f64(secs() / 2.0);
    for policy in POLICIES {
        let t0 = Instant::now();
        while t0.elapsed() < budget {
            let mm = Arc::new(AddressSpace::with_policy(policy));
            map(&mm, A + SPAN - 4 * P, 8 * P, RW); // straddles two tables
            let stop = Arc::new(AtomicBool::new(false));
            let fs: Vec<_> = (0..3u64)
                .map(|k| {
                    let (mm, stop) = (mm.clone(), stop.clone());
                    thread::spawn(move || {
                        let mut i = k;
                        while !stop.load(Ordering::Relaxed) {
                            i = (i + 1) % 8;
                            let r = mm.fault(A + SPAN - 4 * P + i * P, Access::Write);
                            assert!(matches!(r, Ok(_) | Err(FaultError::Segv)), "{r:?}");
                        }
                    })
                })
                .collect();
            for _ in 0..30 {
                let base = A + SPAN - 4 * P;
                mm.munmap(base, 8 * P).unwrap();
                map(&mm, base, 8 * P, RW);
                let f = RemapFlags::MAYMOVE | RemapFlags::FIXED;
                mm.mremap(base, 8 * P, 8 * P, f, Some(B)).unwrap();
                mm.mremap(B, 8 * P, 8 * P, f, Some(base)).unwrap();
                mm.madvise(base, 8 * P, Advice::DontNeed).unwrap();
            }
            stop.store(true, Ordering::Relaxed);
            for f in fs {
                f.join().unwrap();
            }
            mm.check().unwrap();
        }
    }
}
