//! fork, copy-on-write and the frame table (issue 14, docs/DESIGN.md §4.9):
//! scenario tests, a differential proptest of page contents across a fork
//! family, threaded fork/fault/write interleavings with exact frame
//! accounting, and (ignored) the parent's fault throughput while forking.

#[path = "common/frames.rs"]
mod frames;
use frames::assert_all_freed;
use maple_rcu::mm::Access;
use maple_rcu::mm::{AddressSpace, Advice, FaultError, FaultOutcome, FaultPolicy, MapFlags, Prot};
use proptest::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

const P: u64 = 4096;
const A: u64 = 0x1000_0000;
const S: u64 = 0x2000_0000;
const RW: Prot = Prot::READ.union(Prot::WRITE);
const PRIV: MapFlags = MapFlags::PRIVATE
    .union(MapFlags::ANONYMOUS)
    .union(MapFlags::FIXED);
const SHARED: MapFlags = MapFlags::SHARED
    .union(MapFlags::ANONYMOUS)
    .union(MapFlags::FIXED);
const POLICIES: [FaultPolicy; 4] = FaultPolicy::ALL;

fn family_ok(spaces: &[&AddressSpace]) {
    AddressSpace::check_family(spaces).unwrap();
}

#[test]
fn private_pages_are_copied_on_write() {
    for policy in POLICIES {
        let p = AddressSpace::with_policy(policy);
        p.mmap(Some(A), 4 * P, RW, PRIV).unwrap();
        for i in 0..4 {
            p.write(A + i * P, 100 + i).unwrap();
        }
        let c = p.fork();
        family_ok(&[&p, &c]);
        for i in 0..4 {
            let (pp, cp) = (
                p.translate(A + i * P).unwrap(),
                c.translate(A + i * P).unwrap(),
            );
            assert_eq!(pp.frame, cp.frame, "shared after fork");
            assert_eq!(pp.prot, Prot::READ, "parent write-protected");
            assert_eq!(cp.prot, Prot::READ, "child write-protected");
            assert_eq!(c.read(A + i * P), Ok(100 + i));
        }
        // The parent's write copies (refcount 2); the child keeps the old value.
        let old = p.translate(A).unwrap().frame;
        assert_eq!(p.fault(A, Access::Write), Ok(FaultOutcome::Copied));
        assert_ne!(p.translate(A).unwrap().frame, old);
        assert_eq!(c.translate(A).unwrap().frame, old);
        p.write(A, 7).unwrap();
        assert_eq!((p.read(A), c.read(A)), (Ok(7), Ok(100)));
        // The child's write to page 0 now reuses: it holds the only reference.
        assert_eq!(c.fault(A, Access::Write), Ok(FaultOutcome::Upgraded));
        assert_eq!(c.translate(A).unwrap().frame, old);
        // Page 1: the child writes first (copy), then the parent reuses.
        c.write(A + P, 8).unwrap();
        let f1 = p.translate(A + P).unwrap().frame;
        assert_eq!(p.fault(A + P, Access::Write), Ok(FaultOutcome::Upgraded));
        assert_eq!(p.translate(A + P).unwrap().frame, f1);
        assert_eq!((p.read(A + P), c.read(A + P)), (Ok(101), Ok(8)));
        // A read fault never makes a shared frame writable.
        assert_eq!(p.translate(A + 2 * P).unwrap().prot, Prot::READ);
        let s = p.stats();
        assert_eq!((s.cow_copies, s.cow_reuses), (1, 1), "{s:?}");
        family_ok(&[&p, &c]);
        drop(c);
        family_ok(&[&p]);
        let s = p.stats();
        assert_eq!(s.frames_live, s.frames_mapped, "{s:?}");
        assert_eq!(s.frames_allocated, s.frames_live + s.frames_freed);
    }
}

/// CVE-2020-29374: reusing on mapcount 1 leaks the parent's later writes
/// into a reference the child still holds. The refcount rule copies.
#[test]
fn reuse_needs_refcount_one_not_mapcount() {
    let p = AddressSpace::new();
    p.mmap(Some(A), P, RW, PRIV).unwrap();
    p.write(A, 1).unwrap();
    let c = p.fork();
    let pin = c.get_page(A).unwrap();
    c.munmap(A, P).unwrap();
    // Mapcount 1 (the parent's PTE), refcount 2 (the pin).
    assert_eq!(p.fault(A, Access::Write), Ok(FaultOutcome::Copied));
    p.write(A, 2).unwrap();
    assert_eq!(
        pin.read(),
        1,
        "the child's reference sees the parent's write"
    );
    assert_ne!(p.translate(A).unwrap().frame, pin.frame());
    drop(pin);
    family_ok(&[&p, &c]);
}

#[test]
fn read_only_at_fork_then_mprotect_writable() {
    for policy in POLICIES {
        let p = AddressSpace::with_policy(policy);
        p.mmap(Some(A), 2 * P, RW, PRIV).unwrap();
        p.write(A, 5).unwrap();
        assert_eq!(p.read(A + P), Ok(0)); // a read-faulted page
        p.mprotect(A, 2 * P, Prot::READ).unwrap();
        let c = p.fork();
        assert_eq!(c.write(A, 1), Err(FaultError::Access));
        c.mprotect(A, 2 * P, RW).unwrap();
        p.mprotect(A, 2 * P, RW).unwrap();
        c.write(A, 6).unwrap();
        c.write(A + P, 9).unwrap();
        assert_eq!((p.read(A), p.read(A + P)), (Ok(5), Ok(0)));
        p.write(A, 7).unwrap();
        assert_eq!((c.read(A), c.read(A + P)), (Ok(6), Ok(9)));
        assert_eq!(p.read(A), Ok(7));
        family_ok(&[&p, &c]);
    }
}

#[test]
fn shared_pages_stay_shared() {
    let p = AddressSpace::new();
    p.mmap(Some(S), 2 * P, RW, SHARED).unwrap();
    p.write(S, 1).unwrap();
    p.write(S + P, 2).unwrap();
    let c = p.fork();
    assert_eq!(c.translate(S).unwrap().prot, RW, "shared stays writable");
    c.write(S, 3).unwrap();
    assert_eq!(p.read(S), Ok(3));
    p.write(S + P, 4).unwrap();
    assert_eq!(c.read(S + P), Ok(4));
    assert_eq!(p.stats().cow_copies + c.stats().cow_copies, 0);
    family_ok(&[&p, &c]);
}

/// MAP_SHARED anonymous memory has a backing object: a page first faulted
/// after the fork, or zapped by DONTNEED and refaulted, is the object's
/// page in every member; a split, mprotect or mremap keeps the page
/// offsets; the frames go when the last VMA mapping the object is freed.
#[test]
fn shared_object_survives_fork_dontneed_and_munmap() {
    for policy in POLICIES {
        let p = AddressSpace::with_policy(policy);
        p.mmap(Some(S), 4 * P, RW, SHARED).unwrap();
        p.write(S, 1).unwrap();
        let c = p.fork();
        // First faulted after the fork, in the child: the parent sees it.
        c.write(S + P, 2).unwrap();
        assert_eq!(p.read(S + P), Ok(2));
        assert_eq!(
            p.translate(S + P).unwrap().frame,
            c.translate(S + P).unwrap().frame
        );
        // Zapped and refaulted: the same page, not a fresh zero page.
        let f = p.translate(S).unwrap().frame;
        p.madvise(S, 2 * P, Advice::DontNeed).unwrap();
        assert_eq!(p.translate(S), None);
        assert_eq!(p.read(S), Ok(1));
        assert_eq!(p.translate(S).unwrap().frame, f);
        c.madvise(S, 4 * P, Advice::DontNeed).unwrap();
        family_ok(&[&p, &c]);
        // Split by mprotect, moved by mremap: offsets follow the pages.
        c.mprotect(S + 2 * P, P, Prot::READ).unwrap();
        c.write(S + 3 * P, 4).unwrap();
        assert_eq!(p.read(S + 3 * P), Ok(4));
        let m = c
            .mremap(
                S + P,
                P,
                P,
                maple_rcu::mm::RemapFlags::MAYMOVE | maple_rcu::mm::RemapFlags::FIXED,
                Some(A),
            )
            .unwrap();
        assert_eq!(m, A);
        c.write(A, 5).unwrap();
        assert_eq!(p.read(S + P), Ok(5));
        family_ok(&[&p, &c]);
        // Unmapped everywhere: the object and its pages go (after the
        // retired VMAs' grace period).
        p.munmap(S, 4 * P).unwrap();
        c.munmap(S, 4 * P).unwrap();
        c.munmap(A, P).unwrap();
        p.reclaim();
        c.reclaim();
        family_ok(&[&p, &c]);
        assert_eq!(p.stats().frames_live, 0, "{policy:?}");
    }
}

#[test]
fn nested_fork_and_exit() {
    let p = AddressSpace::new();
    p.mmap(Some(A), 3 * P, RW, PRIV).unwrap();
    for i in 0..3 {
        p.write(A + i * P, i).unwrap();
    }
    let c = p.fork();
    c.write(A, 10).unwrap();
    let g = c.fork();
    assert_eq!(
        [g.read(A), g.read(A + P), g.read(A + 2 * P)],
        [Ok(10), Ok(1), Ok(2)]
    );
    // Page 1 is shared three ways.
    let f = p.translate(A + P).unwrap().frame;
    assert_eq!(g.translate(A + P).unwrap().frame, f);
    g.write(A + P, 11).unwrap();
    p.write(A + P, 12).unwrap();
    assert_eq!(
        [p.read(A + P), c.read(A + P), g.read(A + P)],
        [Ok(12), Ok(1), Ok(11)]
    );
    family_ok(&[&p, &c, &g]);
    drop(c);
    family_ok(&[&p, &g]);
    drop(p);
    family_ok(&[&g]);
    let s = g.stats();
    assert_eq!(s.frames_live, s.frames_mapped);
}

// ----- differential test against a model of per-process page contents ------

const NPRIV: u64 = 6;
const NSHARED: u64 = 2;

/// MADV_DONTFORK / MADV_WIPEONFORK (Linux semantics): madvise splits the
/// VMA; fork leaves a DONTFORK range out of the child and gives it a
/// WIPEONFORK range empty (zero pages, the flag kept, so a grandchild gets
/// it empty too); DOFORK / KEEPONFORK undo and merge back; WIPEONFORK on a
/// shared VMA is EINVAL; a hole gives ENOMEM after the mapped parts.
#[test]
fn dontfork_and_wipeonfork() {
    for policy in POLICIES {
        let p = AddressSpace::with_policy(policy);
        p.mmap(Some(A), 6 * P, RW, PRIV).unwrap();
        p.mmap(Some(S), P, RW, SHARED).unwrap();
        for i in 0..6 {
            p.write(A + i * P, 10 + i).unwrap();
        }
        p.madvise(A + P, P, Advice::DontFork).unwrap();
        p.madvise(A + 3 * P, 2 * P, Advice::WipeOnFork).unwrap();
        assert_eq!(
            p.vmas().len(),
            5 + 1,
            "split into five, plus the shared one"
        );
        assert_eq!(
            p.madvise(S, P, Advice::WipeOnFork).unwrap_err(),
            maple_rcu::mm::MmError::Inval
        );
        assert_eq!(
            p.madvise(A + 5 * P, 3 * P, Advice::DontFork).unwrap_err(),
            maple_rcu::mm::MmError::NoMem,
            "hole after the mapped part"
        );
        let c = p.fork();
        family_ok(&[&p, &c]);
        assert_eq!(c.read(A), Ok(10));
        assert_eq!(
            c.read(A + P),
            Err(FaultError::Segv),
            "DONTFORK: not in the child"
        );
        assert_eq!(c.read(A + 2 * P), Ok(12));
        assert_eq!(
            (c.read(A + 3 * P), c.read(A + 4 * P)),
            (Ok(0), Ok(0)),
            "wiped"
        );
        assert_eq!(
            c.read(A + 5 * P),
            Err(FaultError::Segv),
            "DONTFORK by the partial call"
        );
        assert_eq!(p.read(A + 3 * P), Ok(13), "the parent keeps its pages");
        c.write(A + 3 * P, 99).unwrap();
        let g = c.fork();
        assert_eq!(g.read(A + 3 * P), Ok(0), "the flag is inherited");
        // Undo: the VMAs merge back and fork copies everything again.
        p.madvise(A, 6 * P, Advice::DoFork).unwrap();
        p.madvise(A, 6 * P, Advice::KeepOnFork).unwrap();
        assert_eq!(p.vmas().len(), 2, "merged back");
        let c2 = p.fork();
        for i in 0..6 {
            assert_eq!(c2.read(A + i * P), Ok(10 + i));
        }
        family_ok(&[&p, &c, &g, &c2]);
    }
}

/// `try_to_unmap` (the reverse map): a private page COW-shared by parent,
/// child and grandchild, a page the parent alone maps, and a MAP_SHARED page
/// mapped in all three are unmapped everywhere; the next access maps the
/// same frame again (a swap-cache hit, contents kept), and the COW rule
/// still holds afterwards. Moved pages (mremap) are found at their new
/// address. `check_family` (exact rmap, M10) after every step.
#[test]
fn try_to_unmap_everywhere() {
    for policy in POLICIES {
        let p = AddressSpace::with_policy(policy);
        p.mmap(Some(A), 4 * P, RW, PRIV).unwrap();
        p.mmap(Some(S), P, RW, SHARED).unwrap();
        p.write(A, 1).unwrap();
        p.write(S, 9).unwrap();
        let c = p.fork();
        let g = c.fork();
        p.write(A + P, 2).unwrap();
        family_ok(&[&p, &c, &g]);
        let f = p.translate(A).unwrap().frame;
        assert_eq!(c.translate(A).unwrap().frame, f);
        assert!(g.try_to_unmap(f), "{policy:?}");
        for m in [&p, &c, &g] {
            assert_eq!(m.translate(A), None, "{policy:?}: still mapped");
        }
        family_ok(&[&p, &c, &g]);
        // A read maps the same frame again, read-only (refcount 3).
        assert_eq!(c.read(A), Ok(1));
        assert_eq!(c.translate(A).unwrap().frame, f);
        assert_eq!(c.translate(A).unwrap().prot, Prot::READ);
        // A write copies (shared); the others keep the old contents.
        assert_eq!(p.fault(A, Access::Write), Ok(FaultOutcome::Copied));
        p.write(A, 5).unwrap();
        assert_eq!((p.read(A), c.read(A), g.read(A)), (Ok(5), Ok(1), Ok(1)));
        family_ok(&[&p, &c, &g]);
        // The parent's own page: after try_to_unmap a write reuses it.
        let f2 = p.translate(A + P).unwrap().frame;
        assert!(c.try_to_unmap(f2));
        assert_eq!(p.translate(A + P), None);
        assert_eq!(p.fault(A + P, Access::Write), Ok(FaultOutcome::Installed));
        assert_eq!(p.translate(A + P).unwrap().frame, f2);
        assert_eq!(p.read(A + P), Ok(2));
        // The shared object's page: unmapped, then found in the object.
        let fs = p.translate(S).unwrap().frame;
        assert!(p.try_to_unmap(fs));
        family_ok(&[&p, &c, &g]);
        g.write(S, 10).unwrap();
        assert_eq!(g.translate(S).unwrap().frame, fs);
        assert_eq!((p.read(S), c.read(S)), (Ok(10), Ok(10)));
        // mremap moves the pv entry with the PTE; swap entries move too.
        p.write(A + 2 * P, 3).unwrap();
        let f3 = p.translate(A + 2 * P).unwrap().frame;
        assert!(p.try_to_unmap(f));
        let to = A + 64 * P;
        let r = maple_rcu::mm::RemapFlags::MAYMOVE | maple_rcu::mm::RemapFlags::FIXED;
        p.mremap(A + 2 * P, P, P, r, Some(to)).unwrap();
        family_ok(&[&p, &c, &g]);
        assert!(p.try_to_unmap(f3));
        assert_eq!(p.translate(to), None);
        family_ok(&[&p, &c, &g]);
        assert_eq!(p.read(to), Ok(3));
        // Exit of members with swap entries and stale pv entries.
        assert!(p.try_to_unmap(p.translate(to).unwrap().frame));
        drop(c);
        assert!(p.try_to_unmap(f));
        family_ok(&[&p, &g]);
        drop(g);
        assert_eq!(p.read(A), Ok(5));
        assert!(p.try_to_unmap(12345), "never allocated");
        p.munmap(A, 128 * P).unwrap();
        p.munmap(S, P).unwrap();
        p.reclaim();
        family_ok(&[&p]);
        let st = p.stats();
        assert_eq!(st.frames_live, 0, "{st:?}");
    }
}

#[derive(Clone, Debug)]
enum Op {
    Write(usize, u64, u64),
    Read(usize, u64),
    Fork(usize),
    Exit(usize),
    Protect(usize, u64, bool),
    DontNeed(usize, u64),
    WriteShared(usize, u64, u64),
    ReadShared(usize, u64),
    DontNeedShared(usize, u64),
    UnmapShared(usize),
    /// `try_to_unmap` of the frame process p maps at private page i.
    TryToUnmap(usize, u64),
    /// `try_to_unmap` of the frame process p maps at shared page i.
    TryToUnmapShared(usize, u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4usize, 0..NPRIV, 1..1000u64).prop_map(|(p, i, v)| Op::Write(p, i, v)),
        3 => (0..4usize, 0..NPRIV).prop_map(|(p, i)| Op::Read(p, i)),
        2 => (0..4usize).prop_map(Op::Fork),
        1 => (0..4usize).prop_map(Op::Exit),
        2 => (0..4usize, 0..NPRIV, any::<bool>()).prop_map(|(p, i, w)| Op::Protect(p, i, w)),
        1 => (0..4usize, 0..NPRIV).prop_map(|(p, i)| Op::DontNeed(p, i)),
        2 => (0..4usize, 0..NSHARED, 1..1000u64).prop_map(|(p, i, v)| Op::WriteShared(p, i, v)),
        2 => (0..4usize, 0..NSHARED).prop_map(|(p, i)| Op::ReadShared(p, i)),
        1 => (0..4usize, 0..NSHARED).prop_map(|(p, i)| Op::DontNeedShared(p, i)),
        1 => (0..4usize).prop_map(Op::UnmapShared),
        2 => (0..4usize, 0..NPRIV).prop_map(|(p, i)| Op::TryToUnmap(p, i)),
        1 => (0..4usize, 0..NSHARED).prop_map(|(p, i)| Op::TryToUnmapShared(p, i)),
    ]
}

/// One process of the model: its private pages' values and writability,
/// and whether it still maps the shared region.
#[derive(Clone)]
struct Proc {
    val: Vec<u64>,
    writable: Vec<bool>,
    shared: bool,
}

/// The frames every space maps, without faulting (`translate`).
fn frames_at(spaces: &[AddressSpace], addr: u64) -> Vec<u64> {
    spaces
        .iter()
        .filter_map(|s| s.translate(addr).map(|p| p.frame))
        .collect()
}

/// `try_to_unmap` of the frame `spaces[p % len]` maps at `addr` (if any):
/// it succeeds (nothing races), and no member maps that frame anywhere
/// afterwards (every PTE that mapped it is a swap entry, or gone for a
/// shared object's page). Contents are untouched: the model does not change
/// (a swap slot keeps them, docs/DESIGN.md §4.9).
fn unmap_everywhere(spaces: &[AddressSpace], p: usize, addr: u64) {
    let Some(pte) = spaces[p % spaces.len()].translate(addr) else {
        return;
    };
    assert!(spaces[0].try_to_unmap(pte.frame));
    for s in spaces {
        for a in (0..NPRIV)
            .map(|i| A + i * P)
            .chain((0..NSHARED).map(|i| S + i * P))
        {
            assert_ne!(s.translate(a).map(|t| t.frame), Some(pte.frame), "{a:#x}");
        }
    }
}

fn run_family(policy: FaultPolicy, ops: &[Op]) {
    let root = AddressSpace::with_policy(policy);
    root.mmap(Some(A), NPRIV * P, RW, PRIV).unwrap();
    root.mmap(Some(S), NSHARED * P, RW, SHARED).unwrap();
    // Shared pages are faulted only by ReadShared/WriteShared (so first
    // faults before and after forks, and refaults after DONTNEED, both
    // happen): every member that maps the region sees the object's page.
    let mut spaces = vec![root];
    let mut model = vec![Proc {
        val: vec![0; NPRIV as usize],
        writable: vec![true; NPRIV as usize],
        shared: true,
    }];
    let mut shared = [0u64; NSHARED as usize];
    // Whether the object holds page i (faulted while mapped).
    let mut in_obj = [false; NSHARED as usize];
    for o in ops {
        match *o {
            Op::Write(p, i, v) => {
                let p = p % spaces.len();
                let r = spaces[p].write(A + i * P, v);
                if model[p].writable[i as usize] {
                    assert_eq!(r, Ok(()));
                    model[p].val[i as usize] = v;
                } else {
                    assert_eq!(r, Err(FaultError::Access));
                }
            }
            Op::Read(p, i) => {
                let p = p % spaces.len();
                assert_eq!(
                    spaces[p].read(A + i * P),
                    Ok(model[p].val[i as usize]),
                    "{o:?}"
                );
            }
            Op::Fork(p) => {
                let p = p % spaces.len();
                if spaces.len() < 4 {
                    let c = spaces[p].fork();
                    spaces.push(c);
                    model.push(model[p].clone());
                }
            }
            Op::Exit(p) => {
                if spaces.len() > 1 {
                    let p = p % spaces.len();
                    spaces.swap_remove(p);
                    model.swap_remove(p);
                }
            }
            Op::Protect(p, i, w) => {
                let p = p % spaces.len();
                let prot = if w { RW } else { Prot::READ };
                spaces[p].mprotect(A + i * P, P, prot).unwrap();
                model[p].writable[i as usize] = w;
            }
            Op::DontNeed(p, i) => {
                let p = p % spaces.len();
                spaces[p].madvise(A + i * P, P, Advice::DontNeed).unwrap();
                model[p].val[i as usize] = 0;
            }
            Op::WriteShared(p, i, v) => {
                let p = p % spaces.len();
                let r = spaces[p].write(S + i * P, v);
                if model[p].shared {
                    assert_eq!(r, Ok(()), "{o:?}");
                    shared[i as usize] = v;
                    in_obj[i as usize] = true;
                } else {
                    assert_eq!(r, Err(FaultError::Segv), "{o:?}");
                }
            }
            Op::ReadShared(p, i) => {
                let p = p % spaces.len();
                let r = spaces[p].read(S + i * P);
                if model[p].shared {
                    assert_eq!(r, Ok(shared[i as usize]), "{o:?}");
                    in_obj[i as usize] = true;
                } else {
                    assert_eq!(r, Err(FaultError::Segv), "{o:?}");
                }
            }
            Op::DontNeedShared(p, i) => {
                // The PTE goes; the page stays in the object (shmem).
                let p = p % spaces.len();
                if model[p].shared {
                    spaces[p].madvise(S + i * P, P, Advice::DontNeed).unwrap();
                }
            }
            Op::UnmapShared(p) => {
                let p = p % spaces.len();
                spaces[p].munmap(S, NSHARED * P).unwrap();
                model[p].shared = false;
            }
            Op::TryToUnmap(p, i) => unmap_everywhere(&spaces, p, A + i * P),
            Op::TryToUnmapShared(p, i) => unmap_everywhere(&spaces, p, S + i * P),
        }
        if model.iter().all(|m| !m.shared) {
            // The last mapping is gone: the object's pages go with it.
            in_obj = [false; NSHARED as usize];
        }
        // Contents are the model's (reads refault swap entries; skipped
        // right after try_to_unmap so the next op meets the swap entries).
        if !matches!(o, Op::TryToUnmap(..)) {
            for (s, m) in spaces.iter().zip(&model) {
                for i in 0..NPRIV {
                    assert_eq!(s.read(A + i * P), Ok(m.val[i as usize]), "after {o:?}");
                }
            }
        }
        // Shared pages stay shared: every PTE of page i in the family maps
        // the same frame (checked without faulting them in).
        for i in 0..NSHARED {
            let f = frames_at(&spaces, S + i * P);
            assert!(f.windows(2).all(|w| w[0] == w[1]), "after {o:?}: {f:?}");
            assert!(f.is_empty() || in_obj[i as usize], "after {o:?}");
        }
        let refs: Vec<&AddressSpace> = spaces.iter().collect();
        AddressSpace::check_family(&refs).unwrap();
    }
    // Exact accounting once the retired VMAs are freed: the live frames are
    // those mapped plus the object's pages no PTE maps (none once no member
    // maps the region: the object was dropped with its last VMA).
    for (s, m) in spaces.iter().zip(&model) {
        s.reclaim();
        for i in 0..NPRIV {
            assert_eq!(s.read(A + i * P), Ok(m.val[i as usize]));
        }
    }
    let mut mapped = std::collections::BTreeSet::new();
    for i in 0..NPRIV {
        mapped.extend(frames_at(&spaces, A + i * P));
    }
    let mut held = 0;
    for i in 0..NSHARED {
        let f = frames_at(&spaces, S + i * P);
        held += u64::from(f.is_empty() && in_obj[i as usize]);
        mapped.extend(f);
    }
    assert_eq!(spaces[0].stats().frames_live, mapped.len() as u64 + held);
    // And every member's shared reads agree with the model.
    for (s, m) in spaces.iter().zip(&model) {
        for i in 0..NSHARED {
            let want = if m.shared {
                Ok(shared[i as usize])
            } else {
                Err(FaultError::Segv)
            };
            assert_eq!(s.read(S + i * P), want);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn family_matches_model(policy in 0..4usize, ops in prop::collection::vec(op(), 1..40)) {
        run_family(POLICIES[policy], &ops);
    }
}

// ----- threads: try_to_unmap racing faults, fork, mremap and exit ------------

/// A writer thread writes page after page of the parent, an unmapper thread
/// calls `try_to_unmap` on whatever frames the parent and the latest child
/// map, and the main thread forks (a child lives for two rounds), moves a
/// page out and back with mremap, and DONTNEEDs another. Afterwards each of
/// the writer's pages holds its last value (contents survive swap-out and
/// moves), the family's rmap and counts are exact, and everything balances.
#[test]
fn try_to_unmap_races_faults_fork_and_mremap() {
    const N: u64 = 16;
    for policy in POLICIES {
        let p = Arc::new(AddressSpace::with_policy(policy));
        p.mmap(Some(A), N * P, RW, PRIV).unwrap();
        p.mmap(Some(S), 2 * P, RW, PRIV).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let kids: Arc<std::sync::Mutex<Vec<Arc<AddressSpace>>>> = Arc::default();
        let writer = {
            let (p, stop) = (p.clone(), stop.clone());
            thread::spawn(move || {
                let mut last = vec![0; N as usize];
                let mut v = 0;
                while !stop.load(Ordering::Relaxed) {
                    v += 1;
                    let i = v % N;
                    p.write(A + i * P, v).unwrap();
                    last[i as usize] = v;
                }
                last
            })
        };
        let unmapper = {
            let (p, stop, kids) = (p.clone(), stop.clone(), kids.clone());
            thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let a = if n.is_multiple_of(3) {
                        S
                    } else {
                        A + (n % N) * P
                    };
                    let kid = kids.lock().unwrap().last().cloned();
                    let m = kid.as_deref().unwrap_or(&p);
                    if let Some(t) = m.translate(a) {
                        m.try_to_unmap(t.frame);
                    }
                }
            })
        };
        let flags = maple_rcu::mm::RemapFlags::MAYMOVE | maple_rcu::mm::RemapFlags::FIXED;
        for round in 0..400u64 {
            p.write(S, round).unwrap();
            let c = Arc::new(p.fork());
            assert_eq!(c.read(S), Ok(round));
            let old = {
                let mut k = kids.lock().unwrap();
                k.push(c);
                (k.len() > 2).then(|| k.remove(0))
            };
            drop(old);
            assert_eq!(p.mremap(S, P, P, flags, Some(S + 8 * P)), Ok(S + 8 * P));
            assert_eq!(p.mremap(S + 8 * P, P, P, flags, Some(S)), Ok(S));
            assert_eq!(p.read(S), Ok(round));
            p.madvise(S + P, P, Advice::DontNeed).unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        let last = writer.join().unwrap();
        unmapper.join().unwrap();
        for i in 0..N {
            assert_eq!(
                p.read(A + i * P),
                Ok(last[i as usize]),
                "{policy:?} page {i}"
            );
        }
        let kids = std::mem::take(&mut *kids.lock().unwrap());
        let mut all: Vec<&AddressSpace> = vec![&p];
        all.extend(kids.iter().map(|k| &**k));
        family_ok(&all);
        drop(all);
        drop(kids);
        p.munmap(A, N * P).unwrap();
        p.munmap(S, 16 * P).unwrap();
        assert_all_freed(&p, "");
    }
}

// ----- threads: forks racing the parent's faults and writes -----------------

/// A writer thread writes `(page << 32) | seq` to each page in turn while the
/// main thread forks. Each child must see, for each page, a value the writer
/// wrote for that page, no older than the writer's last completed write
/// before the fork started and no newer than its last started write after
/// it ended (per-page atomicity). Children then scribble; the parent must
/// not see it. Frames balance exactly at the end.
#[test]
fn fork_races_parent_writes() {
    const PAGES: u64 = 8;
    const FORKS: usize = 60;
    for policy in POLICIES {
        let p = Arc::new(AddressSpace::with_policy(policy));
        p.mmap(Some(A), PAGES * P, RW, PRIV).unwrap();
        let done: Arc<Vec<AtomicU64>> = Arc::new((0..PAGES).map(|_| AtomicU64::new(0)).collect());
        let started: Arc<Vec<AtomicU64>> =
            Arc::new((0..PAGES).map(|_| AtomicU64::new(0)).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let bar = Arc::new(Barrier::new(2));
        let w = {
            let (p, done, started, stop, bar) = (
                p.clone(),
                done.clone(),
                started.clone(),
                stop.clone(),
                bar.clone(),
            );
            thread::spawn(move || {
                bar.wait();
                let mut seq = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    for i in 0..PAGES {
                        started[i as usize].store(seq, Ordering::SeqCst);
                        p.write(A + i * P, (i << 32) | seq).unwrap();
                        done[i as usize].store(seq, Ordering::SeqCst);
                    }
                    seq += 1;
                }
            })
        };
        bar.wait();
        let mut forks = 0;
        while forks < FORKS || done[PAGES as usize - 1].load(Ordering::SeqCst) < 20 {
            forks += 1;
            let lo: Vec<u64> = done.iter().map(|d| d.load(Ordering::SeqCst)).collect();
            let c = p.fork();
            let hi: Vec<u64> = started.iter().map(|d| d.load(Ordering::SeqCst)).collect();
            for i in 0..PAGES {
                let v = c.read(A + i * P).unwrap();
                let (page, seq) = (v >> 32, v & 0xffff_ffff);
                if v != 0 {
                    assert_eq!(page, i, "page {i} holds another page's value");
                }
                assert!(
                    seq >= lo[i as usize] && seq <= hi[i as usize],
                    "{policy:?} page {i}: child saw {seq}, window {}..={}",
                    lo[i as usize],
                    hi[i as usize]
                );
                c.write(A + i * P, u64::MAX).unwrap();
            }
            drop(c);
        }
        stop.store(true, Ordering::Relaxed);
        w.join().unwrap();
        for i in 0..PAGES {
            let v = p.read(A + i * P).unwrap();
            assert_eq!(v, (i << 32) | done[i as usize].load(Ordering::SeqCst));
            assert!(v != 0, "the writer wrote every page");
        }
        AddressSpace::check_family(&[&p]).unwrap();
        let s = p.stats();
        assert_eq!(s.frames_live, s.frames_mapped, "{s:?}");
        assert_eq!(s.frames_allocated, s.frames_freed + s.frames_live);
    }
}

/// Two processes of one family fault, write, munmap and fork concurrently;
/// afterwards every frame's counts are exact (no leak, no double free).
#[test]
fn threaded_family_accounting_is_exact() {
    for policy in POLICIES {
        let p = Arc::new(AddressSpace::with_policy(policy));
        p.mmap(Some(A), 16 * P, RW, PRIV).unwrap();
        for i in 0..16 {
            p.write(A + i * P, i).unwrap();
        }
        let c = Arc::new(p.fork());
        let bar = Arc::new(Barrier::new(3));
        let kids = Arc::new(std::sync::Mutex::new(Vec::new()));
        let hs: Vec<_> = [p.clone(), c.clone()]
            .into_iter()
            .enumerate()
            .map(|(t, s)| {
                let (bar, kids) = (bar.clone(), kids.clone());
                thread::spawn(move || {
                    bar.wait();
                    for r in 0..200u64 {
                        let i = (r * 7 + t as u64) % 16;
                        match r % 5 {
                            0 | 1 => s.write(A + i * P, r).unwrap(),
                            2 => {
                                s.read(A + i * P).unwrap();
                            }
                            3 => s.madvise(A + i * P, P, Advice::DontNeed).unwrap(),
                            _ => {
                                if r % 25 == 4 {
                                    kids.lock().unwrap().push(s.fork());
                                } else {
                                    s.write(A + i * P, r).unwrap();
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        let forker = {
            let (p, bar, kids) = (p.clone(), bar.clone(), kids.clone());
            thread::spawn(move || {
                bar.wait();
                for _ in 0..20 {
                    let k = p.fork();
                    k.write(A, 1).unwrap();
                    kids.lock().unwrap().push(k);
                }
            })
        };
        for h in hs {
            h.join().unwrap();
        }
        forker.join().unwrap();
        let kids = std::mem::take(&mut *kids.lock().unwrap());
        let mut all: Vec<&AddressSpace> = vec![&p, &c];
        all.extend(kids.iter());
        AddressSpace::check_family(&all).unwrap();
        drop(all);
        drop(kids);
        drop(c);
        AddressSpace::check_family(&[&p]).unwrap();
    }
}

// ----- measurement -------------------------------------------------------------

/// The parent's fault throughput (touch, DONTNEED, touch again) with and
/// without a thread forking in a loop, per policy. `cargo test --release
/// --test fork -- --ignored --nocapture fork_fault_throughput`.
#[test]
#[ignore]
fn fork_fault_throughput() {
    const PAGES: u64 = 256;
    for policy in POLICIES {
        let mut line = format!("{policy:?}:");
        for forking in [false, true] {
            let p = Arc::new(AddressSpace::with_policy(policy));
            p.mmap(Some(A), PAGES * P, RW, PRIV).unwrap();
            p.mmap(Some(S), 1024 * P, RW, PRIV).unwrap();
            for i in 0..1024 {
                p.write(S + i * P, i).unwrap();
            }
            let stop = Arc::new(AtomicBool::new(false));
            let forks = Arc::new(AtomicU64::new(0));
            let f = forking.then(|| {
                let (p, stop, forks) = (p.clone(), stop.clone(), forks.clone());
                thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        drop(p.fork());
                        forks.fetch_add(1, Ordering::Relaxed);
                    }
                })
            });
            let t0 = std::time::Instant::now();
            let mut n = 0u64;
            while t0.elapsed().as_millis() < 500 {
                for i in 0..PAGES {
                    p.write(A + i * P, i).unwrap();
                }
                p.madvise(A, PAGES * P, Advice::DontNeed).unwrap();
                n += PAGES;
            }
            let secs = t0.elapsed().as_secs_f64();
            stop.store(true, Ordering::Relaxed);
            if let Some(f) = f {
                f.join().unwrap();
            }
            line += &format!(
                "  {} faults/s{}",
                (n as f64 / secs) as u64,
                if forking {
                    format!(
                        " while forking ({} forks/s)",
                        (forks.load(Ordering::Relaxed) as f64 / secs) as u64
                    )
                } else {
                    String::new()
                }
            );
        }
        println!("{line}");
    }
}

/// Exit against unmapping everything: 1,000 VMAs, 100,000 touched pages.
/// `cargo test --release --test fork -- --ignored --nocapture exit_vs_munmap`.
#[test]
#[ignore]
fn exit_vs_munmap() {
    const VMAS: u64 = 1000;
    const PAGES: u64 = 100;
    let build = || {
        let mm = AddressSpace::new();
        for v in 0..VMAS {
            // A one-page hole between VMAs keeps them apart.
            let at = A + v * (PAGES + 1) * P;
            mm.mmap(Some(at), PAGES * P, RW, PRIV).unwrap();
            for i in 0..PAGES {
                mm.write(at + i * P, i).unwrap();
            }
        }
        mm
    };
    // Best of five of each (the machine is shared).
    let (mut unmap, mut exit) = (std::time::Duration::MAX, std::time::Duration::MAX);
    for _ in 0..5 {
        let mm = build();
        let t = std::time::Instant::now();
        for v in 0..VMAS {
            mm.munmap(A + v * (PAGES + 1) * P, PAGES * P).unwrap();
        }
        drop(mm);
        unmap = unmap.min(t.elapsed());
        let mm = build();
        let t = std::time::Instant::now();
        drop(mm);
        exit = exit.min(t.elapsed());
    }
    println!("munmap everything then drop: {unmap:?}; drop (bulk exit): {exit:?}");
    // Exit of one member while the family lives on (an empty sibling forked
    // first keeps the frame table, so this is the space's own teardown).
    let mut member = std::time::Duration::MAX;
    for _ in 0..5 {
        let keep = AddressSpace::new();
        let mm = keep.fork();
        for v in 0..VMAS {
            let at = A + v * (PAGES + 1) * P;
            mm.mmap(Some(at), PAGES * P, RW, PRIV).unwrap();
            for i in 0..PAGES {
                mm.write(at + i * P, i).unwrap();
            }
        }
        let t = std::time::Instant::now();
        drop(mm);
        member = member.min(t.elapsed());
        drop(keep);
    }
    println!("drop of one member, the family living on: {member:?}");
}

/// Fork time of a space with 1,000 VMAs (one-page holes between them),
/// untouched and with one written page each: best of 200 forks (the child
/// is dropped outside the timing). `cargo test --release --test fork --
/// --ignored --nocapture fork_time`.
#[test]
#[ignore]
fn fork_time() {
    const VMAS: u64 = 1000;
    for touched in [false, true] {
        let mm = AddressSpace::new();
        for v in 0..VMAS {
            let at = A + v * 2 * P;
            mm.mmap(Some(at), P, RW, PRIV).unwrap();
            if touched {
                mm.write(at, v).unwrap();
            }
        }
        assert_eq!(mm.vmas().len(), VMAS as usize);
        let mut best = std::time::Duration::MAX;
        let mut total = std::time::Duration::ZERO;
        for _ in 0..200 {
            let t = std::time::Instant::now();
            let c = mm.fork();
            let e = t.elapsed();
            best = best.min(e);
            total += e;
            drop(c);
        }
        println!(
            "fork of {VMAS} VMAs ({}): best {best:?}, mean {:?}",
            if touched {
                "one written page each"
            } else {
                "untouched"
            },
            total / 200
        );
    }
}
