//! Writers versus faults (docs/DESIGN.md §4.2, invariant M7 and the writers
//! table): every writer that publishes, zaps, moves or protects, raced
//! against a fault that must not lose an install or keep a permission.
//!
//! Each round starts both threads at a barrier; the checks are ones a correct
//! implementation passes in every interleaving, so a failure is a real lost
//! write (the loom models in tests/loom/mm.rs cover the same races
//! exhaustively on tiny spaces). `ROUNDS` rounds per policy keep the test
//! around a second; `WF_ROUNDS=100000` runs it longer.

use maple_rcu::mm::{
    Access, AddressSpace, FaultError, FaultOutcome, FaultPolicy, MapFlags, Prot, RemapFlags,
};
use std::sync::{Arc, Barrier};
use std::thread;

const P: u64 = 4096;
const A: u64 = 0x1000_0000;
const B: u64 = 0x2000_0000;
const RW: Prot = Prot::READ.union(Prot::WRITE);
const FIXED: MapFlags = MapFlags::PRIVATE
    .union(MapFlags::ANONYMOUS)
    .union(MapFlags::FIXED);
const POLICIES: [FaultPolicy; 4] = FaultPolicy::ALL;

fn rounds() -> usize {
    std::env::var("WF_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500)
}

/// Runs `rounds()` rounds of `setup` (single-threaded), then `writer` and
/// `faulter` started together, then `verify(mm, faulter's result)`.
fn race<R: Send + 'static>(
    policy: FaultPolicy,
    setup: impl Fn(&AddressSpace),
    writer: impl Fn(&AddressSpace) + Send + Sync + 'static,
    faulter: impl Fn(&AddressSpace) -> R + Send + Sync + 'static,
    verify: impl Fn(&AddressSpace, R),
) {
    let writer = Arc::new(writer);
    let faulter = Arc::new(faulter);
    for round in 0..rounds() {
        let mm = Arc::new(AddressSpace::with_policy(policy));
        setup(&mm);
        let go = Arc::new(Barrier::new(2));
        let w = {
            let (mm, go, writer) = (mm.clone(), go.clone(), writer.clone());
            thread::spawn(move || {
                go.wait();
                writer(&mm);
            })
        };
        go.wait();
        let r = faulter(&mm);
        w.join().unwrap();
        verify(&mm, r);
        mm.check()
            .unwrap_or_else(|e| panic!("{policy:?} round {round}: {e}"));
    }
}

/// Faults `addr` for write until it is mapped (Segv while the mapping is not
/// yet there); returns the outcome of the successful fault.
fn fault_until_mapped(mm: &AddressSpace, addr: u64) -> FaultOutcome {
    loop {
        match mm.fault(addr, Access::Write) {
            Ok(o) => return o,
            Err(FaultError::Segv) => thread::yield_now(),
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
}

/// Issue 10 item 1: mmap(MAP_FIXED) over an empty range publishes the new
/// VMA; a write fault that can only have hit the new VMA must stay installed.
/// Before the fix the zap ran after the commit and removed it (35/3000).
#[test]
fn mmap_fixed_keeps_racing_write() {
    for policy in POLICIES {
        race(
            policy,
            |_| {},
            |mm| {
                mm.mmap(Some(A), 4 * P, RW, FIXED).unwrap();
            },
            |mm| fault_until_mapped(mm, A + P),
            |mm, o| {
                assert_eq!(o, FaultOutcome::Installed);
                assert!(
                    mm.translate(A + P).is_some(),
                    "{policy:?}: a successful write fault on the new VMA was lost"
                );
            },
        );
    }
}

/// mmap(MAP_FIXED) over an existing mapping with the same attributes (the
/// edit could keep the VMA): a fault that starts after the call returned
/// must not be zapped; the zap must leave no PTE of the old mapping.
#[test]
fn mmap_fixed_over_identical_mapping() {
    for policy in POLICIES {
        race(
            policy,
            |mm| {
                mm.mmap(Some(A), 4 * P, RW, FIXED).unwrap();
                mm.fault(A, Access::Write).unwrap();
            },
            |mm| {
                mm.mmap(Some(A), 4 * P, RW, FIXED).unwrap();
            },
            |mm| mm.fault(A + P, Access::Write),
            |mm, r| {
                assert!(r.is_ok(), "{r:?}");
                // The old page A was zapped by the mmap.
                assert!(mm.translate(A).is_none(), "{policy:?}: old PTE survived");
                // A fault after the call is never lost.
                mm.fault(A + 2 * P, Access::Write).unwrap();
                assert!(mm.translate(A + 2 * P).is_some());
            },
        );
    }
}

/// Issue 10 item 2: mremap(MREMAP_DONTUNMAP) keeps the source VMA. A write
/// fault on the source either happened before the move (its frame moved to
/// the target) or after (it stays at the source); it is never lost.
/// Before the fix 14/3000 frames ended at neither place.
#[test]
fn mremap_dontunmap_keeps_racing_write() {
    for policy in POLICIES {
        race(
            policy,
            |mm| {
                mm.mmap(Some(A), 2 * P, RW, FIXED).unwrap();
                mm.fault(A + P, Access::Write).unwrap();
            },
            |mm| {
                let f = RemapFlags::MAYMOVE | RemapFlags::FIXED | RemapFlags::DONTUNMAP;
                assert_eq!(mm.mremap(A, 2 * P, 2 * P, f, Some(B)).unwrap(), B);
            },
            |mm| {
                // Write until the move is visible (the source has no PTE
                // after it unless we put one there), a few times more after.
                let mut after = 0;
                while after < 3 {
                    let r = mm.fault(A, Access::Write).unwrap();
                    if mm.translate(B + P).is_some() {
                        after += 1;
                    }
                    let _ = r;
                }
            },
            |mm, ()| {
                // Nothing in this race may free a frame: the move carries
                // every PTE and the target was empty.
                let s = mm.stats();
                assert_eq!(
                    s.frames_freed, 0,
                    "{policy:?}: a write fault's frame was zapped: {s:?}"
                );
                assert!(mm.translate(A).is_some(), "last write lost");
                assert!(mm.translate(B + P).is_some(), "moved page lost");
                assert!(mm.translate(A + P).is_none(), "moved page left behind");
            },
        );
    }
}

/// A moving mremap: a write fault on the source before the move travels with
/// it; one after finds no VMA. The frame is never lost and never left at the
/// source.
#[test]
fn mremap_move_keeps_racing_write() {
    for policy in POLICIES {
        race(
            policy,
            |mm| {
                mm.mmap(Some(A), 2 * P, RW, FIXED).unwrap();
            },
            |mm| {
                let f = RemapFlags::MAYMOVE | RemapFlags::FIXED;
                assert_eq!(mm.mremap(A, 2 * P, 2 * P, f, Some(B)).unwrap(), B);
            },
            |mm| mm.fault(A, Access::Write),
            |mm, r| {
                assert!(mm.translate(A).is_none(), "PTE left at the source");
                match r {
                    Ok(FaultOutcome::Installed) => {
                        assert!(mm.translate(B).is_some(), "{policy:?}: write lost")
                    }
                    Err(FaultError::Segv) => assert!(mm.translate(B).is_none()),
                    r => panic!("{r:?}"),
                }
            },
        );
    }
}

/// mprotect(RW → R) racing a write fault: after the call no PTE is writable;
/// the fault either wrote before (Installed, then downgraded) or was refused.
#[test]
fn mprotect_downgrade_vs_write() {
    for policy in POLICIES {
        race(
            policy,
            |mm| {
                mm.mmap(Some(A), 4 * P, RW, FIXED).unwrap();
            },
            |mm| mm.mprotect(A, 2 * P, Prot::READ).unwrap(),
            |mm| mm.fault(A + P, Access::Write),
            |mm, r| {
                assert!(
                    matches!(r, Ok(FaultOutcome::Installed) | Err(FaultError::Access)),
                    "{r:?}"
                );
                if let Some(pte) = mm.translate(A + P) {
                    assert!(
                        !pte.prot.contains(Prot::WRITE),
                        "{policy:?}: still writable"
                    );
                }
            },
        );
    }
}

/// brk growth racing a fault on the new heap page: once the fault succeeds
/// the page stays.
#[test]
fn brk_grow_keeps_racing_write() {
    for policy in POLICIES {
        race(
            policy,
            |_| {},
            |mm| {
                let b = mm.brk_range().end;
                assert_eq!(mm.brk(b + 4 * P), b + 4 * P);
            },
            |mm| {
                let b = mm.brk_range().start;
                fault_until_mapped(mm, b + P)
            },
            |mm, o| {
                assert_eq!(o, FaultOutcome::Installed);
                assert!(mm.translate(mm.brk_range().start + P).is_some());
            },
        );
    }
}
