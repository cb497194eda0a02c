//! mm: every call and every row of issue 4's semantics table, placement,
//! splits/merges, faults, frames balance — each under all three fault
//! policies — plus a differential proptest and threaded invariant tests.

#[path = "common/mm_model.rs"]
mod mm_model;

use maple_rcu::mm::{
    Access, AddressSpace, Advice, FaultError, FaultOutcome, FaultPolicy, HPAGE_SIZE, MMAP_BASE,
    MapFlags, MapSource, MmError, Prot, RemapFlags, STACK_GUARD_GAP, TASK_SIZE, VmaInfo,
    WriterLocking,
};
use proptest::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const P: u64 = 4096;
const RW: Prot = Prot::READ.union(Prot::WRITE);
const ANON: MapFlags = MapFlags::PRIVATE.union(MapFlags::ANONYMOUS);
const FIXED: MapFlags = ANON.union(MapFlags::FIXED);
const POLICIES: [FaultPolicy; 4] = FaultPolicy::ALL;

/// Runs `f` once per fault policy, then checks the invariants.
fn each(f: impl Fn(&AddressSpace)) {
    for p in POLICIES {
        for l in [WriterLocking::Range, WriterLocking::Global] {
            let mm = AddressSpace::with_locking(p, l);
            f(&mm);
            mm.check().unwrap_or_else(|e| panic!("{p:?} {l:?}: {e}"));
        }
    }
}

fn ranges(mm: &AddressSpace) -> Vec<(u64, u64, Prot)> {
    mm.vmas()
        .into_iter()
        .map(|v: VmaInfo| (v.range.start, v.range.end, v.prot))
        .collect()
}

fn balance(mm: &AddressSpace) {
    let s = mm.stats();
    assert_eq!(s.frames_allocated, s.frames_live + s.frames_freed, "{s:?}");
}

// ----- mmap ------------------------------------------------------------------

#[test]
fn mmap_errors() {
    each(|mm| {
        let e = |r: Result<u64, MmError>| r.unwrap_err().errno();
        assert_eq!(e(mm.mmap(None, 0, RW, ANON)), 22);
        assert_eq!(e(mm.mmap(None, P, RW, MapFlags::ANONYMOUS)), 22);
        assert_eq!(
            e(mm.mmap(None, P, RW, ANON | MapFlags::SHARED)),
            22,
            "both SHARED and PRIVATE"
        );
        assert_eq!(e(mm.mmap_file(None, P, RW, MapFlags::PRIVATE, 7, 100)), 22);
        assert_eq!(e(mm.mmap(Some(0x10000123), P, RW, FIXED)), 22);
        assert_eq!(e(mm.mmap(Some(0x1000), P, RW, FIXED)), 1);
        assert_eq!(e(mm.mmap(None, u64::MAX - 10, RW, ANON)), 12);
        assert_eq!(e(mm.mmap(None, 1 << 47, RW, ANON)), 12);
        let a = mm.mmap(Some(0x2000_0000), 4 * P, RW, FIXED).unwrap();
        assert_eq!(a, 0x2000_0000);
        let nr = ANON | MapFlags::FIXED_NOREPLACE;
        assert_eq!(e(mm.mmap(Some(0x2000_0000 + P), P, RW, nr)), 17);
        assert_eq!(e(mm.mmap(Some(0x2000_0000 - P), 2 * P, RW, nr)), 17);
        assert_eq!(
            mm.mmap(Some(0x2000_0000 - P), P, RW, nr),
            Ok(0x2000_0000 - P)
        );
        assert!(
            mm.vmas().len() == 1,
            "FIXED_NOREPLACE merges with its neighbour"
        );
        assert_eq!(MmError::Inval.to_string(), "invalid argument (EINVAL)");
    });
}

#[test]
fn mmap_rounds_len_and_places_top_down() {
    each(|mm| {
        let a = mm.mmap(None, 1, RW, ANON).unwrap();
        assert_eq!(a, MMAP_BASE - P);
        let b = mm.mmap(None, P + 1, Prot::READ, ANON).unwrap();
        assert_eq!(b, a - 2 * P);
        let c = mm.mmap(None, P, RW, ANON).unwrap();
        assert_eq!(c, b - P);
        assert_eq!(
            ranges(mm),
            vec![(c, b, RW), (b, a, Prot::READ), (a, MMAP_BASE, RW)]
        );
        // A freed hole is reused top-down.
        mm.munmap(b, 2 * P).unwrap();
        assert_eq!(mm.mmap(None, P, Prot::READ, ANON).unwrap(), a - P);
    });
}

#[test]
fn mmap_hints() {
    each(|mm| {
        // A free hint is used, rounded down to a page.
        assert_eq!(mm.mmap(Some(0x4000_0123), P, RW, ANON), Ok(0x4000_0000));
        // An occupied hint is ignored (top-down placement instead).
        assert_eq!(mm.mmap(Some(0x4000_0000), P, RW, ANON), Ok(MMAP_BASE - P));
        // A hint below mmap_min_addr is raised to it.
        assert_eq!(mm.mmap(Some(0x5000), P, RW, ANON), Ok(0x10000));
        // A hint that would cross TASK_SIZE is ignored.
        assert_eq!(
            mm.mmap(Some(0x7fff_ffff_e000), 4 * P, RW, ANON),
            Ok(MMAP_BASE - 5 * P)
        );
    });
}

#[test]
fn mmap_fixed_replaces_and_zaps() {
    each(|mm| {
        let a = mm.mmap(None, 4 * P, RW, ANON).unwrap();
        for i in 0..4 {
            assert_eq!(
                mm.fault(a + i * P, Access::Write),
                Ok(FaultOutcome::Installed)
            );
        }
        let b = mm.mmap(Some(a + P), 2 * P, Prot::READ, FIXED).unwrap();
        assert_eq!(b, a + P);
        assert_eq!(
            ranges(mm),
            vec![
                (a, a + P, RW),
                (a + P, a + 3 * P, Prot::READ),
                (a + 3 * P, a + 4 * P, RW)
            ]
        );
        assert!(mm.translate(a + P).is_none() && mm.translate(a + 2 * P).is_none());
        assert!(mm.translate(a).is_some() && mm.translate(a + 3 * P).is_some());
        assert_eq!(mm.stats().frames_freed, 2);
        balance(mm);
    });
}

#[test]
fn thp_padded_rule() {
    each(|mm| {
        let a = mm.mmap(None, HPAGE_SIZE, RW, ANON).unwrap();
        // Padded search: start = base - 4 MiB; off_sub = (0 - start) mod 2 MiB.
        let start = MMAP_BASE - 2 * HPAGE_SIZE;
        let off_sub = 0u64.wrapping_sub(start) & (HPAGE_SIZE - 1);
        let want = if off_sub == 0 {
            start + HPAGE_SIZE
        } else {
            start + off_sub
        };
        assert_eq!(a, want);
        assert_eq!(a % HPAGE_SIZE, 0);
        // Not a multiple of 2 MiB: the plain search, right below.
        let b = mm.mmap(None, HPAGE_SIZE + P, RW, ANON).unwrap();
        assert_eq!(b, a - HPAGE_SIZE - P);
        // With a hint the THP rule does not apply.
        let h = 0x1000_1000;
        assert_eq!(mm.mmap(Some(h), HPAGE_SIZE, RW, ANON), Ok(h));
        // Shared anonymous memory is not THP aligned.
        let s = mm
            .mmap(None, HPAGE_SIZE, RW, MapFlags::SHARED | MapFlags::ANONYMOUS)
            .unwrap();
        assert_eq!(s, b - HPAGE_SIZE);
        // A file range containing an aligned 2 MiB block: offset kept congruent.
        let off = 0x1000;
        let f = mm
            .mmap_file(None, 3 * HPAGE_SIZE, Prot::READ, MapFlags::PRIVATE, 9, off)
            .unwrap();
        assert_eq!(f.wrapping_sub(off) % HPAGE_SIZE, 0);
        // A small file range without such a block: plain search.
        let g = mm
            .mmap_file(None, 2 * P, Prot::READ, MapFlags::PRIVATE, 9, 0)
            .unwrap();
        assert!(g + 2 * P <= f || g >= f + 3 * HPAGE_SIZE, "no overlap");
    });
}

#[test]
fn thp_padded_differs_from_exact_aligned() {
    // A 2 MiB-aligned 2 MiB hole exists right under MMAP_BASE's aligned
    // boundary, but the padded search (len + 2 MiB) does not fit there.
    let mm = AddressSpace::new();
    let top = MMAP_BASE & !(HPAGE_SIZE - 1); // 0x7ffff7e00000
    // Occupy [top - 2 MiB - P, top - 2 MiB) and [top, MMAP_BASE): leaves an
    // exactly aligned 2 MiB hole [top - 2 MiB, top).
    mm.mmap(Some(top), MMAP_BASE - top, RW, FIXED).unwrap();
    mm.mmap(Some(top - HPAGE_SIZE - P), P, Prot::READ, FIXED)
        .unwrap();
    let a = mm.mmap(None, HPAGE_SIZE, RW, ANON).unwrap();
    assert!(
        a < top - HPAGE_SIZE - P,
        "padded search skips the tight hole: {a:#x}"
    );
    assert_eq!(a % HPAGE_SIZE, 0);
}

#[test]
fn growsdown_guard_gap() {
    each(|mm| {
        let top = MMAP_BASE - 0x10_0000;
        let s = mm
            .mmap(Some(top - 4 * P), 4 * P, RW, FIXED | MapFlags::GROWSDOWN)
            .unwrap();
        // Fill everything above the stack so the next search lands below it.
        mm.mmap(Some(top), MMAP_BASE - top, RW, FIXED).unwrap();
        let a = mm.mmap(None, P, RW, ANON).unwrap();
        assert_eq!(a, s - STACK_GUARD_GAP - P);
        // A hint inside the guard gap is ignored.
        let h = mm.mmap(Some(s - 2 * P), P, RW, ANON).unwrap();
        assert_ne!(h, s - 2 * P);
        // FIXED may still map inside the gap.
        assert_eq!(mm.mmap(Some(s - 2 * P), P, RW, FIXED), Ok(s - 2 * P));
    });
}

// ----- munmap ----------------------------------------------------------------

#[test]
fn munmap_rules() {
    each(|mm| {
        assert_eq!(mm.munmap(0x10001, P).unwrap_err().errno(), 22);
        assert_eq!(mm.munmap(0x10000, 0).unwrap_err().errno(), 22);
        assert_eq!(mm.munmap(0x7fff_ffff_f000, 2 * P).unwrap_err().errno(), 22);
        assert_eq!(mm.munmap(0x10000, P), Ok(()), "a hole is fine");
        let a = mm.mmap(None, 8 * P, RW, ANON).unwrap();
        for i in 0..8 {
            mm.fault(a + i * P, Access::Write).unwrap();
        }
        mm.munmap(a + 2 * P, 3 * P).unwrap();
        assert_eq!(
            ranges(mm),
            vec![(a, a + 2 * P, RW), (a + 5 * P, a + 8 * P, RW)]
        );
        assert_eq!(mm.fault(a + 3 * P, Access::Read), Err(FaultError::Segv));
        assert!(mm.translate(a + 2 * P).is_none());
        assert!(mm.translate(a + 5 * P).is_some());
        // Spanning a hole and both fragments.
        mm.munmap(a, 8 * P).unwrap();
        assert!(mm.vmas().is_empty());
        let s = mm.stats();
        assert_eq!(
            (s.frames_allocated, s.frames_freed, s.frames_mapped),
            (8, 8, 0)
        );
        assert!(s.tables_freed >= 1, "emptied PTE table retired: {s:?}");
    });
}

// ----- mprotect ----------------------------------------------------------------

#[test]
fn mprotect_split_and_merge() {
    each(|mm| {
        let a = mm.mmap(None, 3 * P, RW, ANON).unwrap();
        for i in 0..3 {
            mm.fault(a + i * P, Access::Write).unwrap();
        }
        mm.mprotect(a + P, P, Prot::READ).unwrap();
        assert_eq!(
            ranges(mm),
            vec![
                (a, a + P, RW),
                (a + P, a + 2 * P, Prot::READ),
                (a + 2 * P, a + 3 * P, RW)
            ]
        );
        // Invariant 1: the PTE no longer grants write.
        assert_eq!(mm.translate(a + P).unwrap().prot, Prot::READ);
        assert_eq!(mm.fault(a + P, Access::Write), Err(FaultError::Access));
        assert_eq!(mm.fault(a + P, Access::Read), Ok(FaultOutcome::Present));
        mm.mprotect(a + P, P, RW).unwrap();
        assert_eq!(ranges(mm), vec![(a, a + 3 * P, RW)]);
        assert_eq!(mm.fault(a + P, Access::Write), Ok(FaultOutcome::Upgraded));
        // Same protection: nothing changes.
        mm.mprotect(a, 3 * P, RW).unwrap();
        assert_eq!(ranges(mm), vec![(a, a + 3 * P, RW)]);
        balance(mm);
    });
}

#[test]
fn mprotect_errors_and_partial_effect() {
    each(|mm| {
        assert_eq!(mm.mprotect(0x10001, P, RW).unwrap_err().errno(), 22);
        assert_eq!(mm.mprotect(0x10000, 0, RW), Ok(()));
        assert_eq!(mm.mprotect(0x10000, P, RW).unwrap_err().errno(), 12);
        assert_eq!(
            mm.mprotect(0x10000, P, Prot::from_bits_retain(0x40))
                .unwrap_err()
                .errno(),
            22
        );
        let a = mm.mmap(None, 2 * P, RW, ANON).unwrap();
        let b = mm.mmap(Some(a - 2 * P), P, RW, FIXED).unwrap();
        assert_eq!(b, a - 2 * P);
        // [b, b+P) mapped, [b+P, a) hole, [a, a+2P) mapped.
        assert_eq!(mm.mprotect(b, 4 * P, Prot::READ).unwrap_err().errno(), 12);
        assert_eq!(
            ranges(mm),
            vec![(b, b + P, Prot::READ), (a, a + 2 * P, RW)],
            "the VMA before the hole was changed, the one after was not"
        );
        // Starting in a hole: nothing changes.
        assert_eq!(
            mm.mprotect(b + P, 3 * P, Prot::NONE).unwrap_err().errno(),
            12
        );
        assert_eq!(ranges(mm)[1], (a, a + 2 * P, RW));
    });
}

// ----- mremap ------------------------------------------------------------------

#[test]
fn mremap_errors() {
    each(|mm| {
        let a = mm.mmap(None, 4 * P, RW, ANON).unwrap();
        let e = |r: Result<u64, MmError>| r.unwrap_err().errno();
        assert_eq!(e(mm.mremap(a + 1, P, P, RemapFlags::MAYMOVE, None)), 22);
        assert_eq!(e(mm.mremap(a, P, 0, RemapFlags::MAYMOVE, None)), 22);
        assert_eq!(
            e(mm.mremap(a, P, P, RemapFlags::FIXED, Some(0x1000_0000))),
            22
        );
        let mf = RemapFlags::MAYMOVE | RemapFlags::FIXED;
        assert_eq!(
            e(mm.mremap(a, 2 * P, 2 * P, mf, Some(a + P))),
            22,
            "overlap"
        );
        assert_eq!(e(mm.mremap(a - P, P, 2 * P, RemapFlags::MAYMOVE, None)), 14);
        assert_eq!(e(mm.mremap(a, 5 * P, 6 * P, RemapFlags::MAYMOVE, None)), 14);
        let b = mm.mmap(Some(a - P), P, Prot::READ, FIXED).unwrap();
        assert_eq!(
            e(mm.mremap(b, 2 * P, 3 * P, RemapFlags::MAYMOVE, None)),
            14,
            "old range spans two VMAs"
        );
        // Cannot grow in place and may not move.
        assert_eq!(e(mm.mremap(b, P, 2 * P, RemapFlags::empty(), None)), 12);
    });
}

#[test]
fn mremap_shrink_grow_move() {
    each(|mm| {
        let a = mm.mmap(Some(0x1000_0000), 4 * P, RW, FIXED).unwrap();
        for i in 0..4 {
            mm.fault(a + i * P, Access::Write).unwrap();
        }
        let f0 = mm.translate(a).unwrap().frame;
        // Shrink unmaps the tail.
        assert_eq!(mm.mremap(a, 4 * P, 2 * P, RemapFlags::empty(), None), Ok(a));
        assert_eq!(ranges(mm), vec![(a, a + 2 * P, RW)]);
        assert!(mm.translate(a + 2 * P).is_none());
        // Grow in place.
        assert_eq!(mm.mremap(a, 2 * P, 3 * P, RemapFlags::empty(), None), Ok(a));
        assert_eq!(ranges(mm), vec![(a, a + 3 * P, RW)]);
        // Block the next page; growing must move, PTEs with it.
        mm.mmap(Some(a + 3 * P), P, Prot::READ, FIXED).unwrap();
        let n = mm
            .mremap(a, 3 * P, 5 * P, RemapFlags::MAYMOVE, None)
            .unwrap();
        assert_eq!(n, MMAP_BASE - 5 * P);
        assert_eq!(mm.translate(n).unwrap().frame, f0);
        assert!(mm.translate(a).is_none());
        assert_eq!(mm.fault(a, Access::Read), Err(FaultError::Segv));
        assert_eq!(mm.fault(n, Access::Read), Ok(FaultOutcome::Present));
        assert_eq!(
            mm.fault(n + 4 * P, Access::Read),
            Ok(FaultOutcome::Installed)
        );
        // FIXED move over an existing mapping replaces it.
        let t = 0x2000_0000;
        mm.mmap(Some(t), 8 * P, Prot::READ, FIXED).unwrap();
        mm.fault(t, Access::Read).unwrap();
        let mf = RemapFlags::MAYMOVE | RemapFlags::FIXED;
        assert_eq!(
            mm.mremap(n, 2 * P, 2 * P, mf, Some(t + 2 * P)),
            Ok(t + 2 * P)
        );
        assert_eq!(mm.translate(t + 2 * P).unwrap().frame, f0);
        assert_eq!(
            ranges(mm)
                .into_iter()
                .filter(|r| r.0 >= t && r.1 <= t + 8 * P)
                .collect::<Vec<_>>(),
            vec![
                (t, t + 2 * P, Prot::READ),
                (t + 2 * P, t + 4 * P, RW),
                (t + 4 * P, t + 8 * P, Prot::READ)
            ]
        );
        balance(mm);
    });
}

// ----- brk -----------------------------------------------------------------------

#[test]
fn brk_grow_shrink_fail() {
    each(|mm| {
        let base = mm.brk(0);
        assert_eq!(base, maple_rcu::mm::DEFAULT_BRK, "brk(0) returns the break");
        assert_eq!(mm.brk(base - P), base, "below the start fails");
        assert_eq!(mm.brk(base + 3 * P + 5), base + 3 * P + 5);
        assert_eq!(ranges(mm), vec![(base, base + 4 * P, RW)]);
        assert!(mm.maps_string().contains("[heap]"));
        mm.fault(base + 3 * P, Access::Write).unwrap();
        assert_eq!(mm.brk(base + P), base + P);
        assert_eq!(ranges(mm), vec![(base, base + P, RW)]);
        assert!(mm.translate(base + 3 * P).is_none());
        // Colliding with the next mapping fails (one page must stay free).
        mm.mmap(Some(base + 10 * P), P, RW, FIXED).unwrap();
        assert_eq!(mm.brk(base + 10 * P), base + P);
        assert_eq!(mm.brk(base + 9 * P), base + 9 * P);
        balance(mm);
    });
}

// ----- madvise ---------------------------------------------------------------------

#[test]
fn madvise_dontneed_and_holes() {
    each(|mm| {
        assert_eq!(
            mm.madvise(0x10001, P, Advice::DontNeed)
                .unwrap_err()
                .errno(),
            22
        );
        assert_eq!(mm.madvise(0x10000, 0, Advice::DontNeed), Ok(()));
        assert_eq!(
            mm.madvise(0x10000, P, Advice::Normal).unwrap_err().errno(),
            12
        );
        let a = mm.mmap(None, 4 * P, RW, ANON).unwrap();
        for i in 0..4 {
            mm.fault(a + i * P, Access::Write).unwrap();
        }
        mm.madvise(a, 2 * P, Advice::DontNeed).unwrap();
        assert!(mm.translate(a).is_none());
        assert_eq!(mm.stats().frames_freed, 2);
        assert_eq!(mm.fault(a, Access::Read), Ok(FaultOutcome::Installed));
        // A hole after the mapping: ENOMEM, but the mapped part was zapped.
        assert_eq!(
            mm.madvise(a + 3 * P, 2 * P, Advice::DontNeed)
                .unwrap_err()
                .errno(),
            12
        );
        assert!(mm.translate(a + 3 * P).is_none());
        assert_eq!(mm.madvise(a, 4 * P, Advice::Normal), Ok(()));
        assert_eq!(ranges(mm), vec![(a, a + 4 * P, RW)]);
        assert_eq!(Advice::from_linux(4), Some(Advice::DontNeed));
        assert_eq!(Advice::from_linux(999), None);
        balance(mm);
    });
}

// ----- faults ------------------------------------------------------------------------

#[test]
fn fault_outcomes() {
    each(|mm| {
        assert_eq!(mm.fault(0x10000, Access::Read), Err(FaultError::Segv));
        assert_eq!(mm.fault(u64::MAX, Access::Read), Err(FaultError::Segv));
        let a = mm.mmap(None, 2 * P, Prot::READ, ANON).unwrap();
        assert_eq!(mm.fault(a, Access::Write), Err(FaultError::Access));
        assert_eq!(mm.fault(a, Access::Exec), Err(FaultError::Access));
        assert_eq!(mm.fault(a + 5, Access::Read), Ok(FaultOutcome::Installed));
        assert_eq!(mm.fault(a + 7, Access::Read), Ok(FaultOutcome::Present));
        let n = mm.mmap(None, P, Prot::NONE, ANON).unwrap();
        assert_eq!(mm.fault(n, Access::Read), Err(FaultError::Access));
        let s = mm.stats();
        assert_eq!(
            (s.faults, s.segv, s.access_errors, s.installed, s.present),
            (7, 2, 3, 1, 1)
        );
        assert_eq!(s.fallbacks, 0);
        match mm.policy() {
            // The address above TASK_SIZE is refused before any path runs.
            FaultPolicy::Speculative => assert_eq!(s.speculative_ok, 6),
            FaultPolicy::PerVmaLock => assert_eq!(s.vma_lock_ok, 6),
            FaultPolicy::MmapLock | FaultPolicy::RangeLock => assert_eq!(s.locked_ok, 6),
        }
    });
}

#[test]
fn fault_grows_stack() {
    each(|mm| {
        let top = 0x7000_0000;
        let s = mm
            .mmap(Some(top - 4 * P), 4 * P, RW, FIXED | MapFlags::GROWSDOWN)
            .unwrap();
        assert_eq!(
            mm.fault(s - 3 * P + 8, Access::Write),
            Ok(FaultOutcome::Installed)
        );
        assert_eq!(ranges(mm), vec![(s - 3 * P, top, RW)]);
        assert!(mm.vmas()[0].growsdown);
        assert_eq!(mm.stats().stack_growths, 1);
        // A mapping within the guard gap below stops growth into it.
        let low = s - 3 * P - STACK_GUARD_GAP - 10 * P;
        mm.mmap(Some(low), P, RW, FIXED).unwrap();
        assert_eq!(
            mm.fault(low + P + 9 * P, Access::Read),
            Err(FaultError::Segv)
        );
        // Below a non-growsdown VMA: plain Segv.
        assert_eq!(mm.fault(low - P, Access::Read), Err(FaultError::Segv));
    });
}

// ----- maps ------------------------------------------------------------------------

#[test]
fn maps_round_trip_real_files() {
    for name in ["py1", "py2", "py3"] {
        let text = std::fs::read_to_string(format!("tests/data/{name}.maps")).unwrap();
        let mm = AddressSpace::from_maps(&text).unwrap();
        assert_eq!(mm.maps_string(), text, "{name}");
        mm.check().unwrap();
    }
    let init = std::fs::read_to_string("tests/data/jvm-g1-8threads.initial").unwrap();
    let mm = AddressSpace::from_maps(&init).unwrap();
    assert!(!mm.vmas().is_empty());
    assert_eq!(AddressSpace::from_maps("zzz").unwrap_err().errno(), 22);
    assert_eq!(
        AddressSpace::from_maps("1000-3000 rw-p 0 00:00 0\n2000-4000 rw-p 0 00:00 0\n")
            .unwrap_err()
            .errno(),
        22
    );
}

#[test]
fn maps_format_and_file_merge() {
    let mm = AddressSpace::new();
    let a = mm
        .mmap_file(
            Some(0x40_0000),
            2 * P,
            Prot::READ,
            MapFlags::PRIVATE | MapFlags::FIXED,
            3,
            0,
        )
        .unwrap();
    // Contiguous offsets of the same file merge.
    mm.mmap_file(
        Some(a + 2 * P),
        P,
        Prot::READ,
        MapFlags::PRIVATE | MapFlags::FIXED,
        3,
        2 * P,
    )
    .unwrap();
    assert_eq!(mm.vmas().len(), 1);
    // Non-contiguous offsets do not.
    mm.mmap_file(
        Some(a + 3 * P),
        P,
        Prot::READ,
        MapFlags::PRIVATE | MapFlags::FIXED,
        3,
        9 * P,
    )
    .unwrap();
    assert_eq!(mm.vmas().len(), 2);
    assert_eq!(
        mm.vmas()[1].source,
        MapSource::File {
            id: 3,
            offset: 9 * P
        }
    );
    // mprotect of a middle part of a file VMA keeps offsets right.
    mm.mprotect(a + P, P, Prot::READ | Prot::EXEC).unwrap();
    let s = mm.maps_string();
    assert_eq!(
        s,
        "00400000-00401000 r--p 00000000 00:00 3 \n\
         00401000-00402000 r-xp 00001000 00:00 3 \n\
         00402000-00403000 r--p 00002000 00:00 3 \n\
         00403000-00404000 r--p 00009000 00:00 3 \n"
    );
    let back = AddressSpace::from_maps(&s).unwrap();
    assert_eq!(back.maps_string(), s);
}

// ----- differential proptest against a page model ---------------------------------
//
// The driver and the model are shared with the fuzz target `mm_ops`
// (tests/common/mm_model.rs); operations are shaped from raw numbers by the
// same `op_from_raw` the fuzzer uses.

fn raw() -> impl Strategy<Value = (u8, u32)> {
    (any::<u8>(), any::<u32>())
}

fn op() -> impl Strategy<Value = mm_model::Op> {
    (any::<u8>(), raw(), raw(), raw(), any::<u8>(), any::<u8>())
        .prop_map(|(k, a, b, c, f, g)| mm_model::op_from_raw(k, a, b, c, f, g))
}

proptest! {
    // `PROPTEST_CASES` raises the count for a longer run.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(256)
    ))]
    #[test]
    fn differential_against_page_model(ops in proptest::collection::vec(op(), 1..48)) {
        mm_model::run_all(&ops);
    }
}

/// The cases the fuzzer and the proptest found (each was a bug in `src/mm`
/// or in the first model), replayed under every policy.
#[test]
fn model_regressions() {
    use mm_model::Op;
    let dontunmap = RemapFlags::MAYMOVE | RemapFlags::DONTUNMAP;
    let cases: Vec<Vec<Op>> = vec![
        // MREMAP_DONTUNMAP without FIXED must move (it returned `old` and did nothing).
        vec![
            Op::Mmap {
                hint: Some(0x10_0000),
                len: 2 * P,
                prot: RW,
                flags: FIXED,
                file: None,
            },
            Op::Fault(0x10_0000, Access::Write),
            Op::Mremap {
                old: 0x10_0000,
                old_len: 2 * P,
                new_len: 2 * P,
                flags: dontunmap,
                new_addr: None,
            },
            Op::Fault(0x10_0000, Access::Read),
        ],
        // brk shrink with nothing mapped in [newbrk, oldbrk) fails (Linux).
        vec![
            Op::Brk(maple_rcu::mm::DEFAULT_BRK + 3 * P),
            Op::Munmap(maple_rcu::mm::DEFAULT_BRK, 3 * P),
            Op::Brk(maple_rcu::mm::DEFAULT_BRK + P),
        ],
        // mprotect: zero length wins over unknown prot bits; ENOMEM before GROWSUP's EINVAL.
        vec![
            Op::Mprotect(0x10_0000, 0, Prot::from_bits_retain(0x40)),
            Op::Mprotect(0x10_0000, u64::MAX, Prot::from_bits_retain(0x40)),
            Op::Mmap {
                hint: Some(0x10_1000),
                len: P,
                prot: RW,
                flags: FIXED,
                file: None,
            },
            Op::Mprotect(0x10_0000, 2 * P, Prot::READ | Prot::GROWSUP),
        ],
        // mmap: the map type is checked after placement; shared anonymous GROWSDOWN is EINVAL.
        vec![
            Op::Mmap {
                hint: Some(0x1000),
                len: P,
                prot: RW,
                flags: MapFlags::ANONYMOUS | MapFlags::FIXED,
                file: None,
            },
            Op::Mmap {
                hint: None,
                len: P,
                prot: RW,
                flags: MapFlags::SHARED | MapFlags::ANONYMOUS | MapFlags::GROWSDOWN,
                file: None,
            },
        ],
    ];
    for ops in &cases {
        mm_model::run_all(ops);
    }
}

// ----- threaded invariants -----------------------------------------------------------

/// Faulters on pages that stay mapped vs writers that split/merge/munmap/
/// mprotect around them: never Segv on a stable page (invariant 2), never
/// Access on a page whose prot always allows the access, frames balance at
/// the end and every PTE is within its VMA's prot (invariants 1, 3).
fn torture(policy: FaultPolicy) {
    let mm = Arc::new(AddressSpace::with_policy(policy));
    let base = 0x2000_0000;
    let n = 64u64;
    mm.mmap(Some(base), n * P, RW, FIXED).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut hs = Vec::new();
    for t in 0..3u64 {
        let (mm, stop) = (mm.clone(), stop.clone());
        hs.push(std::thread::spawn(move || {
            let mut i = t;
            while !stop.load(Ordering::Relaxed) {
                // Even pages stay mapped RW throughout.
                let pg = (i * 7) % (n / 2) * 2;
                let r = mm.fault(base + pg * P, Access::Write);
                assert!(r.is_ok(), "{policy:?}: stable page {pg} got {r:?}");
                // Odd pages come and go.
                let _ = mm.fault(base + (pg + 1) * P, Access::Read);
                i += 1;
            }
        }));
    }
    for round in 0..300u64 {
        let pg = (round * 5) % (n / 2) * 2 + 1;
        let a = base + pg * P;
        match round % 4 {
            0 => mm.mprotect(a, P, Prot::READ).unwrap(),
            1 => mm.mprotect(a, P, RW).unwrap(),
            2 => mm.munmap(a, P).unwrap(),
            _ => {
                mm.mmap(Some(a), P, RW, FIXED).unwrap();
            }
        }
        if round % 16 == 0 {
            mm.madvise(base, n * P, Advice::DontNeed).unwrap_or(());
        }
    }
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        h.join().unwrap();
    }
    mm.check().unwrap();
    balance(&mm);
}

#[test]
fn torture_speculative() {
    torture(FaultPolicy::Speculative);
}

#[test]
fn torture_per_vma_lock() {
    torture(FaultPolicy::PerVmaLock);
}

#[test]
fn torture_mmap_lock() {
    torture(FaultPolicy::MmapLock);
}

/// Invariant 4 in the large: faulters race munmap of whole 2 MiB tables (so
/// tables are unlinked and retired under them) and re-mmap.
#[test]
fn torture_table_free() {
    for policy in POLICIES {
        let mm = Arc::new(AddressSpace::with_policy(policy));
        let base = 0x4000_0000;
        let stop = Arc::new(AtomicBool::new(false));
        let mut hs = Vec::new();
        for t in 0..2u64 {
            let (mm, stop) = (mm.clone(), stop.clone());
            hs.push(std::thread::spawn(move || {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let _ = mm.fault(base + (i % 1024) * P, Access::Write);
                    i += 3;
                }
            }));
        }
        for _ in 0..200 {
            mm.mmap(Some(base), 2 * HPAGE_SIZE, RW, FIXED).unwrap();
            mm.munmap(base, 2 * HPAGE_SIZE).unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        for h in hs {
            h.join().unwrap();
        }
        mm.check().unwrap();
        let s = mm.stats();
        assert_eq!(s.frames_mapped, 0);
        balance(&mm);
    }
}

// ----- issue 10 items 4 and 6: arithmetic on user input, Linux limits -----------

/// Runs `f` once per fault policy on a space built by `setup`.
fn each_with(setup: impl Fn(&mut AddressSpace), f: impl Fn(&AddressSpace)) {
    for p in POLICIES {
        let mut mm = AddressSpace::with_policy(p);
        setup(&mut mm);
        f(&mm);
        mm.check().unwrap_or_else(|e| panic!("{p:?}: {e}"));
    }
}

/// Issue 10 item 4: `old + new_len` overflowed (a panic in the test profile,
/// `Ok(a)` in release). Linux 6.17's `check_mremap_params` refuses
/// `new_len > TASK_SIZE` with EINVAL first.
#[test]
fn mremap_huge_new_len_is_einval() {
    each(|mm| {
        let a = mm.mmap(None, P, RW, ANON).unwrap();
        let before = mm.maps_string();
        for new_len in [u64::MAX - 8191, u64::MAX - P + 1, 1 << 63, TASK_SIZE + P] {
            for flags in [RemapFlags::MAYMOVE, RemapFlags::empty()] {
                assert_eq!(mm.mremap(a, P, new_len, flags, None), Err(MmError::Inval));
                mm.check().unwrap();
            }
            assert_eq!(
                mm.mremap(
                    a,
                    P,
                    new_len,
                    RemapFlags::MAYMOVE | RemapFlags::FIXED,
                    Some(0x20_0000)
                ),
                Err(MmError::Inval)
            );
        }
        assert_eq!(mm.maps_string(), before);
    });
}

/// RLIMIT_STACK: a GROWSDOWN VMA may grow while `vm_end - new_start <=
/// rlimit` (`acct_stack_growth`: `size > rlimit` fails), for any GROWSDOWN
/// VMA; a fault past it is Segv and changes nothing.
#[test]
fn stack_rlimit_caps_growth() {
    let top = 0x7000_0000_0000u64;
    let grows = ANON.union(MapFlags::FIXED).union(MapFlags::GROWSDOWN);
    each(|mm| {
        assert_eq!(mm.stack_rlimit(), 8 << 20);
        let s = mm.mmap(Some(top - 4 * P), 4 * P, RW, grows).unwrap();
        // Exactly 8 MiB: allowed.
        let lowest = top - (8 << 20);
        assert_eq!(mm.fault(lowest, Access::Read), Ok(FaultOutcome::Installed));
        mm.check().unwrap();
        assert_eq!(ranges(mm), vec![(lowest, top, RW)]);
        // One page more: Segv, nothing changes.
        assert_eq!(mm.fault(lowest - 1, Access::Write), Err(FaultError::Segv));
        assert_eq!(
            mm.fault(lowest - 100 * (1 << 30), Access::Read),
            Err(FaultError::Segv)
        );
        assert_eq!(ranges(mm), vec![(lowest, top, RW)]);
        assert!(s > lowest);
    });
    // Settable per space; a smaller limit refuses a growth the default allows.
    each_with(
        |mm| mm.set_stack_rlimit(16 * P),
        |mm| {
            mm.mmap(Some(top - 4 * P), 4 * P, RW, grows).unwrap();
            assert_eq!(mm.fault(top - 17 * P, Access::Read), Err(FaultError::Segv));
            assert_eq!(
                mm.fault(top - 16 * P, Access::Read),
                Ok(FaultOutcome::Installed)
            );
            assert_eq!(ranges(mm), vec![(top - 16 * P, top, RW)]);
        },
    );
}

/// A real process's maps (from `from_maps`): a fault far below `[stack]`
/// used to grow it by ~100 GiB.
#[test]
fn stack_rlimit_applies_to_imported_maps() {
    let maps = "\
555555554000-555555556000 r--p 00000000 08:01 1 /usr/bin/cat
7ffffffde000-7ffffffff000 rw-p 00000000 00:00 0                          [stack]
";
    let mm = AddressSpace::from_maps(maps).unwrap();
    let before = mm.maps_string();
    assert_eq!(
        mm.fault(0x7fe0_0000_0000, Access::Read),
        Err(FaultError::Segv)
    );
    assert_eq!(
        mm.fault(0x7fff_ff7f_f000 - P, Access::Read),
        Err(FaultError::Segv)
    );
    assert_eq!(mm.maps_string(), before);
    // Within 8 MiB of the stack's end: grows.
    assert_eq!(
        mm.fault(0x7fff_ff7f_f000, Access::Read),
        Ok(FaultOutcome::Installed)
    );
    mm.check().unwrap();
}

/// Three separate 1-page VMAs at `BASE`, `BASE + 2P`, `BASE + 4P` and a
/// 5-page VMA at `BASE + 8P` (prot R so nothing merges by accident).
const BASE: u64 = 0x10_0000;
fn four_vmas(mm: &AddressSpace) {
    for a in [BASE, BASE + 2 * P, BASE + 4 * P] {
        mm.mmap(Some(a), P, RW, FIXED).unwrap();
    }
    mm.mmap(Some(BASE + 8 * P), 5 * P, Prot::READ, FIXED)
        .unwrap();
    assert_eq!(mm.stats().vmas, 4);
}

/// vm.max_map_count, mmap and brk: `map_count > max` fails (Linux 6.17
/// `do_mmap` / `do_brk_flags`), so a mapping at exactly the limit is still
/// allowed and the count can reach `max + 1`.
#[test]
fn max_map_count_mmap_and_brk() {
    each_with(
        |mm| mm.set_max_map_count(4),
        |mm| {
            four_vmas(mm);
            // count == max: allowed.
            mm.mmap(Some(BASE + 20 * P), P, RW, FIXED).unwrap();
            assert_eq!(mm.stats().vmas, 5);
            let before = mm.maps_string();
            // count > max: ENOMEM, FIXED or not, even where it would merge.
            assert_eq!(
                mm.mmap(Some(BASE + 30 * P), P, RW, FIXED),
                Err(MmError::NoMem)
            );
            assert_eq!(mm.mmap(None, P, RW, ANON), Err(MmError::NoMem));
            assert_eq!(
                mm.mmap(Some(BASE + 21 * P), P, RW, FIXED),
                Err(MmError::NoMem)
            );
            let brk = mm.brk_range();
            assert_eq!(mm.brk(brk.end + P), brk.end);
            assert_eq!(mm.maps_string(), before);
            mm.check().unwrap();
            // Back at the limit, brk may create its VMA.
            mm.munmap(BASE + 20 * P, P).unwrap();
            assert_eq!(mm.brk(brk.end + P), brk.end + P);
            assert_eq!(mm.stats().vmas, 5);
            mm.check().unwrap();
        },
    );
}

/// munmap (`vms_gather_munmap_vmas`): only an unmap strictly inside one VMA
/// is refused at the limit; a split at one end is not checked.
#[test]
fn max_map_count_munmap() {
    each_with(
        |mm| mm.set_max_map_count(4),
        |mm| {
            four_vmas(mm);
            let before = mm.maps_string();
            // Both ends inside the 5-page VMA, count == max: ENOMEM.
            assert_eq!(mm.munmap(BASE + 9 * P, P), Err(MmError::NoMem));
            assert_eq!(mm.maps_string(), before);
            mm.check().unwrap();
            // One end only: allowed at the limit (count stays 4).
            mm.munmap(BASE + 12 * P, P).unwrap();
            mm.munmap(BASE + 8 * P, P).unwrap();
            assert_eq!(mm.stats().vmas, 4);
            // Across a VMA boundary, splitting both outer VMAs: allowed.
            mm.munmap(BASE + 10 * P, 2 * P).unwrap();
            mm.check().unwrap();
            // Below the limit the middle split is fine.
            mm.munmap(BASE, P).unwrap();
            mm.mmap(Some(BASE + 40 * P), 3 * P, RW, FIXED).unwrap();
            assert_eq!(mm.stats().vmas, 4);
            assert_eq!(mm.munmap(BASE + 41 * P, P), Err(MmError::NoMem));
            mm.munmap(BASE + 2 * P, P).unwrap();
            mm.munmap(BASE + 41 * P, P).unwrap();
            assert_eq!(mm.stats().vmas, 4);
            // brk shrink and mremap shrink use the same rule.
            let before = mm.maps_string();
            assert_eq!(
                mm.mremap(BASE + 40 * P, P, P / 2, RemapFlags::empty(), None),
                Ok(BASE + 40 * P)
            );
            assert_eq!(mm.maps_string(), before, "shrink to the same page count");
            mm.check().unwrap();
        },
    );
}

/// mprotect: `split_vma` refuses at `map_count >= max`; merges never fail;
/// the VMAs before the failing one keep their change (Linux's partial effect).
#[test]
fn max_map_count_mprotect() {
    each_with(
        |mm| mm.set_max_map_count(4),
        |mm| {
            four_vmas(mm);
            let before = mm.maps_string();
            // A split at one end of the 5-page VMA: count == max → ENOMEM.
            assert_eq!(mm.mprotect(BASE + 8 * P, P, RW), Err(MmError::NoMem));
            assert_eq!(mm.maps_string(), before);
            // Whole VMAs need no split; a prot the VMA already has needs nothing.
            mm.mprotect(BASE + 8 * P, 5 * P, Prot::READ).unwrap();
            mm.mprotect(BASE + 2 * P, P, Prot::READ).unwrap();
            assert_eq!(mm.stats().vmas, 4);
            mm.check().unwrap();
            // A merge with the neighbour instead of a split: allowed.
            mm.mmap(Some(BASE + 13 * P), P, RW, FIXED).unwrap();
            mm.munmap(BASE + 13 * P, P).unwrap();
            mm.munmap(BASE, P).unwrap();
            mm.mmap(Some(BASE + 7 * P), P, RW, FIXED).unwrap();
            // VMAs: [2P,3P) R, [4P,5P) RW, [7P,8P) RW, [8P,13P) R.
            assert_eq!(mm.stats().vmas, 4);
            mm.mprotect(BASE + 8 * P, P, RW).unwrap();
            assert_eq!(
                ranges(mm)[2..],
                [
                    (BASE + 7 * P, BASE + 9 * P, RW),
                    (BASE + 9 * P, BASE + 13 * P, Prot::READ)
                ]
            );
        },
    );
    // Partial effect across VMAs: the first VMAs change, then the split of
    // the last one fails.
    each_with(
        |mm| mm.set_max_map_count(4),
        |mm| {
            let shared = MapFlags::SHARED | MapFlags::ANONYMOUS | MapFlags::FIXED;
            mm.mmap(Some(BASE), 8 * P, RW, shared).unwrap();
            mm.mmap(Some(BASE + 8 * P), 5 * P, Prot::READ, FIXED)
                .unwrap();
            mm.mmap(Some(BASE + 20 * P), P, RW, FIXED).unwrap();
            mm.mmap(Some(BASE + 22 * P), P, RW, FIXED).unwrap();
            assert_eq!(mm.stats().vmas, 4);
            // Whole first (shared) VMA → NONE (no split), then the private
            // R VMA's first page, which cannot merge with a shared VMA: a
            // split at count == max → ENOMEM after the first change.
            assert_eq!(mm.mprotect(BASE, 9 * P, Prot::empty()), Err(MmError::NoMem));
            assert_eq!(
                ranges(mm)[..2],
                [
                    (BASE, BASE + 8 * P, Prot::empty()),
                    (BASE + 8 * P, BASE + 13 * P, Prot::READ)
                ]
            );
            mm.check().unwrap();
        },
    );
    // Strictly inside one VMA at max - 1: the first split succeeds, the
    // second fails — Linux leaves the VMA split in two, prot unchanged.
    each_with(
        |mm| mm.set_max_map_count(5),
        |mm| {
            four_vmas(mm);
            assert_eq!(mm.mprotect(BASE + 9 * P, P, RW), Err(MmError::NoMem));
            assert_eq!(
                ranges(mm)[3..],
                [
                    (BASE + 8 * P, BASE + 9 * P, Prot::READ),
                    (BASE + 9 * P, BASE + 13 * P, Prot::READ)
                ]
            );
            assert_eq!(mm.stats().vmas, 5);
        },
    );
}

/// mremap: FIXED / DONTUNMAP need `map_count + 2 < max - 3`
/// (`check_mremap_params`), every move `map_count < max - 3`
/// (`prep_move_vma`); growing in place needs nothing.
#[test]
fn max_map_count_mremap() {
    let mv = RemapFlags::MAYMOVE;
    // Count 4: FIXED needs max > 9 (4 + 2 >= max - 3 fails up to max = 9).
    for (max, fixed_ok, move_ok) in [(9, false, true), (10, true, true), (7, false, false)] {
        each_with(
            |mm| mm.set_max_map_count(max),
            |mm| {
                four_vmas(mm);
                let before = mm.maps_string();
                let r = mm.mremap(BASE, P, P, mv | RemapFlags::FIXED, Some(BASE + 30 * P));
                assert_eq!(r.is_ok(), fixed_ok, "max {max}: {r:?}");
                if !fixed_ok {
                    assert_eq!(r, Err(MmError::NoMem));
                    assert_eq!(mm.maps_string(), before);
                    let r = mm.mremap(BASE, P, P, mv | RemapFlags::DONTUNMAP, None);
                    assert_eq!(r, Err(MmError::NoMem));
                }
                mm.check().unwrap();
                // Grow the 1-page VMA at BASE + 4P past its neighbour: a move.
                mm.mmap(Some(BASE + 5 * P), P, Prot::READ, FIXED).ok();
                let before = mm.maps_string();
                let r = mm.mremap(BASE + 4 * P, P, 2 * P, mv, None);
                assert_eq!(r.is_ok(), move_ok, "max {max}: {r:?}");
                if !move_ok {
                    assert_eq!(r, Err(MmError::NoMem));
                    assert_eq!(mm.maps_string(), before);
                    // Growing in place into free space needs no room.
                    let top = ranges(mm).last().unwrap().1;
                    assert!(mm.mremap(top - 5 * P, 5 * P, 6 * P, mv, None).is_ok());
                }
                mm.check().unwrap();
            },
        );
    }
}

/// mremap(DONTUNMAP) without FIXED takes a fitting hint as is, and
/// `__get_unmapped_area`'s `security_mmap_addr` refuses one below
/// mmap_min_addr with EPERM (the model used to move elsewhere and succeed).
#[test]
fn mremap_dontunmap_hint_below_mmap_min_addr() {
    let du = RemapFlags::MAYMOVE | RemapFlags::DONTUNMAP;
    each(|mm| {
        let a = mm.mmap(Some(BASE), 2 * P, RW, FIXED).unwrap();
        mm.fault(a, Access::Write).unwrap();
        let before = mm.maps_string();
        for hint in [P, 0x8000, 0x10000 - 2 * P] {
            assert_eq!(
                mm.mremap(a, 2 * P, 2 * P, du, Some(hint)),
                Err(MmError::Perm)
            );
            assert_eq!(mm.maps_string(), before);
            mm.check().unwrap();
        }
        assert!(mm.translate(a).is_some());
        // A hint that does not fit (crosses into the VMA above it) is not
        // taken: the search places it elsewhere.
        mm.mmap(Some(0x10000), P, RW, FIXED).unwrap();
        let r = mm.mremap(a, 2 * P, 2 * P, du, Some(0x10000 - P)).unwrap();
        assert!(r >= 0x10000 && r != 0x10000 - P);
        // Hint 0 = no hint.
        assert!(mm.mremap(a, 2 * P, 2 * P, du, Some(0)).unwrap() >= 0x10000);
    });
}
