//! breaker11: loom models of R-M6 (DESIGN §4.8; `retire.rs::unmap_own_range`):
//! munmap write-locks exactly its range and, under the tree's writer mutex,
//! kills the VMA it splits and publishes the remainder, which lies outside
//! its lock. Each model: a two-page VMA at `A` (values 1 and 2), a thread
//! unmaps page 0 while this thread works on page 1 — the remainder — with
//! another writer or a fault, under several fault policies. At the end:
//! the exact VMAs, page 0 without a PTE, page 1's value as the serial
//! orders say (a write that returned Ok is never lost, no fault on the
//! remainder fails), `check()`, no table kept, frames balanced. All at
//! preemption bound 2; the module's 17 non-ignored models take about 37 s
//! together (release, two test threads). Mutations of `unmap_own_range`
//! (all reverted): zapping the killed VMAs' whole range fails
//! `munmap_vs_dontneed_remainder_rangelock` (loom stops at the first
//! failure); skipping the kill fails
//! `munmap_vs_fault_in_unmapped_part_speculative`; committing before
//! killing fails only the ignored three-thread
//! `remainder_mprotect_vs_fault_on_killed_vma_pervma`.
//! (munmap of both pages is `mm::narrowing_munmaps_of_both_halves`; a
//! write fault on the remainder under Speculative / PerVmaLock is
//! `mm::narrowing_munmap_*_vs_fault_on_remainder*`; a FIXED mmap of a
//! remainder page and a write under Speculative is
//! `mm::narrowing_munmap_vs_fixed_mmap_write`.)

use super::mm::{A, FIXED, P, RW, balanced, model_bounded};
use loom::sync::Arc;
use loom::thread;
use maple_rcu::mm::{AddressSpace, Advice, FaultError, FaultPolicy, MapFlags, MmError, Prot};

fn written(policy: FaultPolicy) -> Arc<AddressSpace> {
    let mm = Arc::new(AddressSpace::with_policy(policy));
    mm.mmap(Some(A), 2 * P, RW, FIXED).unwrap();
    mm.write(A, 1).unwrap();
    mm.write(A + P, 2).unwrap();
    mm
}

/// munmap of page 0 on a thread while `op` runs here on page 1; then the
/// common checks and `after`.
fn vs_remainder(
    policy: FaultPolicy,
    op: impl Fn(&AddressSpace) + Sync + Send + 'static,
    after: impl Fn(&AddressSpace) + Sync + Send + 'static,
) {
    vs_remainder_zapped(policy, false, op, after);
}

/// [`vs_remainder`], with page 0 first zapped (DONTNEED) if `zap0`.
fn vs_remainder_zapped(
    policy: FaultPolicy,
    zap0: bool,
    op: impl Fn(&AddressSpace) + Sync + Send + 'static,
    after: impl Fn(&AddressSpace) + Sync + Send + 'static,
) {
    model_bounded(2, move || {
        let mm = written(policy);
        if zap0 {
            mm.madvise(A, P, Advice::DontNeed).unwrap();
        }
        let w = {
            let mm = mm.clone();
            thread::spawn(move || mm.munmap(A, P).unwrap())
        };
        op(&mm);
        w.join().unwrap();
        assert!(mm.translate(A).is_none(), "{policy:?}: PTE left at A");
        let v = mm.vmas();
        assert_eq!(v.len(), 1, "{policy:?}: {v:x?}");
        assert_eq!(v[0].range, A + P..A + 2 * P, "{policy:?}");
        assert_eq!(mm.stats().tables_kept, 0, "{policy:?}");
        after(&mm);
        balanced(&mm);
    });
}

/// (a) mprotect of page 1 (READ): the remainder keeps its value and is
/// read-only, whichever went first.
fn mprotect_remainder(policy: FaultPolicy) {
    vs_remainder(
        policy,
        |mm| assert_eq!(mm.mprotect(A + P, P, Prot::READ), Ok(())),
        move |mm| {
            assert_eq!(mm.vmas()[0].prot, Prot::READ, "{policy:?}");
            assert_eq!(mm.read(A + P), Ok(2), "{policy:?}: value lost");
            assert_eq!(mm.write(A + P, 3), Err(FaultError::Access));
        },
    );
}

#[test]
fn munmap_vs_mprotect_remainder_speculative() {
    mprotect_remainder(FaultPolicy::Speculative);
}

#[test]
fn munmap_vs_mprotect_remainder_pervma() {
    mprotect_remainder(FaultPolicy::PerVmaLock);
}

#[test]
fn munmap_vs_mprotect_remainder_rangelock() {
    mprotect_remainder(FaultPolicy::RangeLock);
}

/// (b) A write fault on page 1 under the `RangeLock` policy (its read
/// lock of the 2 MiB range conflicts with the munmap's write lock of page
/// 0) and `MmapLock`: never Segv, never lost.
fn write_remainder(policy: FaultPolicy) {
    vs_remainder(
        policy,
        |mm| assert_eq!(mm.write(A + P, 7), Ok(())),
        |mm| assert_eq!(mm.read(A + P), Ok(7), "write lost"),
    );
}

#[test]
fn munmap_vs_write_remainder_rangelock() {
    write_remainder(FaultPolicy::RangeLock);
}

#[test]
fn munmap_vs_write_remainder_mmaplock() {
    write_remainder(FaultPolicy::MmapLock);
}

/// (c) mmap FIXED over page 1 and a write there: the new page's value
/// stays (the unmap's zap must not reach it).
fn fixed_over_remainder(policy: FaultPolicy) {
    vs_remainder(
        policy,
        |mm| {
            assert_eq!(mm.mmap(Some(A + P), P, RW, FIXED), Ok(A + P));
            assert_eq!(mm.write(A + P + 8, 9), Ok(()));
        },
        // (A page holds one value: not 2, the old frame's.)
        |mm| assert_eq!(mm.read(A + P + 8), Ok(9), "write lost"),
    );
}

#[test]
fn munmap_vs_fixed_over_remainder_pervma() {
    fixed_over_remainder(FaultPolicy::PerVmaLock);
}

#[test]
fn munmap_vs_fixed_over_remainder_rangelock() {
    fixed_over_remainder(FaultPolicy::RangeLock);
}

/// (d) madvise DONTNEED of page 1 (a reader, not excluded by the unmap's
/// lock of page 0) and a write back: the write stays.
fn dontneed_remainder(policy: FaultPolicy) {
    vs_remainder(
        policy,
        |mm| {
            assert_eq!(mm.madvise(A + P, P, Advice::DontNeed), Ok(()));
            assert_eq!(mm.write(A + P, 5), Ok(()));
        },
        |mm| assert_eq!(mm.read(A + P), Ok(5), "write lost"),
    );
}

#[test]
fn munmap_vs_dontneed_remainder_speculative() {
    dontneed_remainder(FaultPolicy::Speculative);
}

#[test]
fn munmap_vs_dontneed_remainder_pervma() {
    dontneed_remainder(FaultPolicy::PerVmaLock);
}

#[test]
fn munmap_vs_dontneed_remainder_rangelock() {
    dontneed_remainder(FaultPolicy::RangeLock);
}

/// FIXED_NOREPLACE over page 1 (EEXIST, after its lock of the whole VMA)
/// and a read of page 1: its value stays.
#[test]
fn munmap_vs_noreplace_over_remainder() {
    vs_remainder(
        FaultPolicy::Speculative,
        |mm| {
            let f = MapFlags::PRIVATE | MapFlags::ANONYMOUS | MapFlags::FIXED_NOREPLACE;
            assert_eq!(mm.mmap(Some(A + P), P, RW, f), Err(MmError::Exist));
            assert_eq!(mm.read(A + P), Ok(2));
        },
        |mm| assert_eq!(mm.read(A + P), Ok(2)),
    );
}

/// A FIXED_NOREPLACE page just above the VMA merges with it (its margin
/// holds the whole VMA) and is written; the unmap of page 0 leaves the
/// merged remainder `[A + P, A + 3P)` with both values.
#[test]
fn munmap_vs_merging_noreplace_above() {
    model_bounded(2, || {
        let mm = written(FaultPolicy::Speculative);
        let w = {
            let mm = mm.clone();
            thread::spawn(move || mm.munmap(A, P).unwrap())
        };
        let f = MapFlags::PRIVATE | MapFlags::ANONYMOUS | MapFlags::FIXED_NOREPLACE;
        assert_eq!(mm.mmap(Some(A + 2 * P), P, RW, f), Ok(A + 2 * P));
        assert_eq!(mm.write(A + 2 * P, 4), Ok(()));
        w.join().unwrap();
        let v = mm.vmas();
        assert_eq!(v.len(), 1, "{v:x?}");
        assert_eq!(v[0].range, A + P..A + 3 * P);
        assert_eq!(mm.read(A + P), Ok(2));
        assert_eq!(mm.read(A + 2 * P), Ok(4));
        assert!(mm.translate(A).is_none());
        balanced(&mm);
    });
}

/// A write fault that *installs* a fresh frame on page 1 (never touched:
/// the fault links nothing new, the table is page 0's) through the VMA
/// the munmap kills, under every policy with a lockless or range part.
fn install_remainder(policy: FaultPolicy) {
    model_bounded(2, move || {
        let mm = Arc::new(AddressSpace::with_policy(policy));
        mm.mmap(Some(A), 2 * P, RW, FIXED).unwrap();
        mm.write(A, 1).unwrap();
        let w = {
            let mm = mm.clone();
            thread::spawn(move || mm.munmap(A, P).unwrap())
        };
        assert_eq!(mm.write(A + P, 6), Ok(()), "{policy:?}");
        w.join().unwrap();
        assert_eq!(mm.read(A + P), Ok(6), "{policy:?}: write lost");
        assert!(mm.translate(A).is_none(), "{policy:?}: PTE left at A");
        assert_eq!(mm.vmas().len(), 1);
        assert_eq!(mm.stats().tables_kept, 0);
        balanced(&mm);
    });
}

#[test]
fn munmap_vs_install_on_remainder_speculative() {
    install_remainder(FaultPolicy::Speculative);
}

#[test]
fn munmap_vs_install_on_remainder_pervma() {
    install_remainder(FaultPolicy::PerVmaLock);
}

#[test]
fn munmap_vs_install_on_remainder_rangelock() {
    install_remainder(FaultPolicy::RangeLock);
}

/// Three threads: munmap of page 0 of a three-page VMA `V` (kills `V`,
/// publishes the remainder `[A + P, A + 3P)`), an mprotect of page 2 to
/// READ (its area the remainder plus its margin, disjoint from the
/// munmap's lock), and a write fault installing page 2 (never touched),
/// which may have read `V` itself. `V` must be dead before the remainder
/// is published: else the mprotect can take page 2's permissions away
/// while `V` is live, and the fault validate `V` under the PTL after that
/// and install a writable PTE under a READ VMA. Committing before killing
/// in `unmap_own_range` fails the PerVmaLock model (the kill waits for the
/// fault's read reference); both are ignored (about 290 s each).
fn remainder_mprotect_vs_fault_on_killed(policy: FaultPolicy) {
    remainder_mprotect_vs_fault_on_killed_at(policy, 2);
}

fn remainder_mprotect_vs_fault_on_killed_at(policy: FaultPolicy, bound: usize) {
    model_bounded(bound, move || {
        let mm = Arc::new(AddressSpace::with_policy(policy));
        mm.mmap(Some(A), 3 * P, RW, FIXED).unwrap();
        mm.write(A, 1).unwrap();
        let u = {
            let mm = mm.clone();
            thread::spawn(move || mm.munmap(A, P).unwrap())
        };
        let w = {
            let mm = mm.clone();
            thread::spawn(move || mm.mprotect(A + 2 * P, P, Prot::READ).unwrap())
        };
        let r = mm.write(A + 2 * P, 5);
        u.join().unwrap();
        w.join().unwrap();
        assert!(
            matches!(r, Ok(()) | Err(FaultError::Access)),
            "{policy:?}: {r:?}"
        );
        if let Some(pte) = mm.translate(A + 2 * P) {
            assert_eq!(pte.prot, Prot::READ, "{policy:?}: writable PTE under READ");
        }
        balanced(&mm);
    });
}

#[test]
#[ignore = "three threads: about 290 s at bound 2; run by hand after touching R-M6"]
fn remainder_mprotect_vs_fault_on_killed_vma_speculative() {
    remainder_mprotect_vs_fault_on_killed(FaultPolicy::Speculative);
}

/// The PerVmaLock model at preemption bound 1, in CI: 2.4 s, and it still
/// fails (a causality violation on the killed VMA) when `unmap_own_range`
/// commits before it kills (eleventh session, coordinator).
#[test]
fn remainder_mprotect_vs_fault_on_killed_vma_pervma_bound1() {
    remainder_mprotect_vs_fault_on_killed_at(FaultPolicy::PerVmaLock, 1);
}

#[test]
#[ignore = "three threads: about 290 s at bound 2 (the mutation is found in about 100 s); run by hand after touching R-M6"]
fn remainder_mprotect_vs_fault_on_killed_vma_pervma() {
    remainder_mprotect_vs_fault_on_killed(FaultPolicy::PerVmaLock);
}

/// A write fault *inside* the unmapped page 0 (on the VMA the munmap
/// splits; page 0 first zapped, so the fault installs): Ok before the
/// munmap, or Segv after; never a PTE left at `A` (the kill precedes the
/// zap, M7), the remainder's value kept. Skipping the kill in
/// `unmap_own_range` fails it ("PTE left at A").
fn fault_in_unmapped_part(policy: FaultPolicy) {
    vs_remainder_zapped(
        policy,
        true,
        |mm| {
            let r = mm.write(A, 9);
            assert!(matches!(r, Ok(()) | Err(FaultError::Segv)), "{r:?}");
        },
        |mm| assert_eq!(mm.read(A + P), Ok(2)),
    );
}

#[test]
fn munmap_vs_fault_in_unmapped_part_speculative() {
    fault_in_unmapped_part(FaultPolicy::Speculative);
}

#[test]
fn munmap_vs_fault_in_unmapped_part_rangelock() {
    fault_in_unmapped_part(FaultPolicy::RangeLock);
}
