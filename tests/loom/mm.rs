//! Loom models of the mm fault protocol (issue 4, docs/DESIGN.md §4):
//! fault vs split (invariant 2), fault vs munmap including the new-table race
//! (invariants 3 and 4), and the per-VMA lock's reader/writer handshake
//! (invariant 1 under `PerVmaLock`). Tiny address spaces, two threads.

use loom::sync::Arc;
use loom::thread;
use maple_rcu::mm::{Access, AddressSpace, FaultError, FaultPolicy, MapFlags, Prot};

pub(crate) const P: u64 = 4096;
pub(crate) const A: u64 = 0x1000_0000;
pub(crate) const RW: Prot = Prot::READ.union(Prot::WRITE);
pub(crate) const FIXED: MapFlags = MapFlags::PRIVATE
    .union(MapFlags::ANONYMOUS)
    .union(MapFlags::FIXED);

/// `loom::model` with room for the end-of-model checks, which walk all 256
/// top-level entries of the page tables (one loom branch each).
pub(crate) fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.max_branches = 100_000;
    b.check(f);
}

/// [`model`] at a fixed preemption bound, whatever `LOOM_MAX_PREEMPTIONS`
/// says: the heaviest models run at 2 in CI, with ignored bound-3 twins.
pub(crate) fn model_bounded(bound: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.max_branches = 100_000;
    b.preemption_bound = Some(bound);
    b.check(f);
}

/// A `Builder` for the heavy models (docs/TESTING.md, "Loom bounds"):
/// room for at least `max_branches` branches (0: loom's default), and a
/// preemption bound of at most 2 whatever `LOOM_MAX_PREEMPTIONS` says,
/// unless `LOOM_HEAVY` is set: then `LOOM_MAX_PREEMPTIONS` rules. CI runs them at 2 (each took 27-123 s of
/// the loom step at 3, 1-10 s at 2); run them at 3 by hand after touching
/// the protocol they model:
/// `LOOM_HEAVY=1 LOOM_MAX_PREEMPTIONS=3 ... cargo test --release --test loom`.
pub(crate) fn heavy(max_branches: usize) -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    b.max_branches = b.max_branches.max(max_branches);
    if std::env::var_os("LOOM_HEAVY").is_none() {
        b.preemption_bound = Some(b.preemption_bound.map_or(2, |n| n.min(2)));
    }
    b
}

/// [`model`] at the bound of the heavy models ([`heavy`]).
pub(crate) fn model_heavy(f: impl Fn() + Sync + Send + 'static) {
    heavy(100_000).check(f);
}

/// `model` with room for fork: each fork, read and `check_family` walks
/// the page tables of several spaces (all 256 top-level entries for the checks).
fn model_family(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.max_branches = 200_000;
    b.check(f);
}

pub(crate) fn balanced(mm: &AddressSpace) {
    mm.check().unwrap();
    let s = mm.stats();
    assert_eq!(s.frames_allocated, s.frames_live + s.frames_freed, "{s:?}");
}

/// Invariant 2: a fault on a page that stays mapped while a writer splits
/// its VMA (mprotect of another page) never sees Segv or Access.
#[test]
fn fault_vs_split() {
    model_heavy(|| {
        let mm = Arc::new(AddressSpace::new());
        mm.mmap(Some(A), 2 * P, RW, FIXED).unwrap();
        let w = {
            let mm = mm.clone();
            thread::spawn(move || mm.mprotect(A + P, P, Prot::READ).unwrap())
        };
        let r = mm.fault(A, Access::Write);
        assert!(r.is_ok(), "stable page faulted {r:?}");
        w.join().unwrap();
        assert_eq!(mm.vmas().len(), 2);
        balanced(&mm);
    });
}

/// Invariant 4 (and race 1/2): a fault racing munmap of a fresh mapping — the
/// faulter populates the page tables itself (the new-table race) while the
/// writer zaps and frees the emptied table. Either the fault lands before the
/// zap (and is zapped) or it sees the VMA dead / gone: no PTE survives, frames
/// balance, and the retired table is not used after it is freed.
///
/// CI explores it at preemption bound 2 (about 30 s); bound 3 takes about
/// 12 minutes, most of the loom step, and runs as the ignored
/// [`fault_vs_munmap_bound3`] (docs/TESTING.md, "Loom bounds").
#[test]
fn fault_vs_munmap() {
    model_bounded(2, || fault_vs_munmap_in(FaultPolicy::Speculative, false));
}

/// [`fault_vs_munmap`] at preemption bound 3.
#[test]
#[ignore = "about 12 minutes; run by hand after touching munmap, the fault path or R-M5"]
fn fault_vs_munmap_bound3() {
    model_bounded(3, || fault_vs_munmap_in(FaultPolicy::Speculative, false));
}

/// The race of [`fault_vs_munmap`] under `policy`; `written`: the page was
/// written first, so its last-level table exists and munmap's free step
/// unlinks it (the fault may then link a fresh one: gap 2 of DESIGN §4.8,
/// `breaker::munmap_vs_fault_on_killed_vma_frees_table`). After both: the
/// fault answered Ok or Segv, no PTE survives, and `check()` passes, which
/// includes "no last-level table linked in a span with no VMA" (a table the
/// fault linked under the dying VMA was freed by the fault), and frames
/// balance.
pub(crate) fn fault_vs_munmap_in(policy: FaultPolicy, written: bool) {
    fault_vs_munmap_on(Arc::new(AddressSpace::with_policy(policy)), written);
}

/// [`fault_vs_munmap_in`] on a given (empty) space: its policy and writer
/// locking.
pub(crate) fn fault_vs_munmap_on(mm: Arc<AddressSpace>, written: bool) {
    let policy = (mm.policy(), mm.writer_locking());
    mm.mmap(Some(A), P, RW, FIXED).unwrap();
    if written {
        mm.write(A, 1).unwrap();
    }
    let w = {
        let mm = mm.clone();
        thread::spawn(move || mm.munmap(A, P).unwrap())
    };
    let r = mm.fault(A, Access::Write);
    assert!(matches!(r, Ok(_) | Err(FaultError::Segv)), "{r:?}");
    w.join().unwrap();
    assert!(mm.translate(A).is_none(), "{policy:?}: PTE survived munmap");
    let s = mm.stats();
    assert_eq!(
        s.tables_kept, 0,
        "{policy:?}: table left in the span: {s:?}"
    );
    balanced(&mm);
}

/// The per-VMA lock handshake: a reader that got the VMA read reference
/// finishes its install before the writer changes PTEs; one that comes later
/// fails the lock and retries into the new VMA. Afterwards no PTE grants
/// write in the now read-only VMA (invariant 1).
#[test]
fn vma_lock_handshake() {
    model(|| {
        let mm = Arc::new(AddressSpace::with_policy(FaultPolicy::PerVmaLock));
        mm.mmap(Some(A), P, RW, FIXED).unwrap();
        let w = {
            let mm = mm.clone();
            thread::spawn(move || mm.mprotect(A, P, Prot::READ).unwrap())
        };
        let r = mm.fault(A, Access::Write);
        assert!(matches!(r, Ok(_) | Err(FaultError::Access)), "{r:?}");
        w.join().unwrap();
        if let Some(pte) = mm.translate(A) {
            assert!(!pte.prot.contains(Prot::WRITE), "PTE still writable");
        }
        balanced(&mm);
    });
}

/// Issue 10 item 1 (M7): mmap(MAP_FIXED) on an empty range racing a write
/// fault. The fault can only succeed on the new VMA, so if it installed, the
/// PTE must still be there when both are done (the old code committed the new
/// VMA first and zapped after, losing the install).
#[test]
fn mmap_fixed_vs_fault() {
    model(|| {
        let mm = Arc::new(AddressSpace::new());
        let w = {
            let mm = mm.clone();
            thread::spawn(move || {
                mm.mmap(Some(A), P, RW, FIXED).unwrap();
            })
        };
        let r = mm.fault(A, Access::Write);
        w.join().unwrap();
        match r {
            Ok(_) => assert!(mm.translate(A).is_some(), "installed write lost"),
            Err(e) => assert_eq!(e, FaultError::Segv),
        }
        balanced(&mm);
    });
}

/// Issue 10 item 2 (M7): mremap(MREMAP_DONTUNMAP) keeps the source mapped
/// while its PTEs move. A racing write fault on the source always succeeds
/// (the source is mapped before and after) and its frame ends at the source
/// (fault after the move) or at the target (before): nothing is freed.
#[test]
fn mremap_dontunmap_vs_fault() {
    use maple_rcu::mm::RemapFlags;
    const B: u64 = 0x2000_0000;
    model_heavy(|| {
        let mm = Arc::new(AddressSpace::new());
        mm.mmap(Some(A), P, RW, FIXED).unwrap();
        let w = {
            let mm = mm.clone();
            thread::spawn(move || {
                let f = RemapFlags::MAYMOVE | RemapFlags::FIXED | RemapFlags::DONTUNMAP;
                assert_eq!(mm.mremap(A, P, P, f, Some(B)).unwrap(), B);
            })
        };
        let r = mm.fault(A, Access::Write);
        w.join().unwrap();
        assert!(r.is_ok(), "source faulted {r:?}");
        assert!(
            mm.translate(A).is_some() || mm.translate(B).is_some(),
            "the write is at neither source nor target"
        );
        assert_eq!(mm.stats().frames_freed, 0);
        balanced(&mm);
    });
}

/// Range locks (issue 11, DESIGN §4.8): two writers making touching VMAs
/// lock one page past each end and the whole VMAs there (contagion), so they
/// never run at once and the second always sees the first and merges with
/// it: one VMA in every interleaving. The writer on the right replaces a
/// mapping, so it has PTE work between its two transactions (the window in
/// which a writer that did not lock its neighbour would merge with the dead
/// VMA and corrupt the replay: checked by removing the margin).
#[test]
fn adjacent_writers_merge() {
    model(|| {
        let mm = Arc::new(AddressSpace::new());
        mm.mmap(Some(A + P), P, RW, FIXED).unwrap();
        let w = {
            let mm = mm.clone();
            thread::spawn(move || {
                mm.mmap(Some(A + P), P, RW, FIXED).unwrap();
            })
        };
        mm.mmap(Some(A), P, RW, FIXED).unwrap();
        w.join().unwrap();
        let v = mm.vmas();
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].range, A..A + 2 * P);
        balanced(&mm);
    });
}

/// Two placements racing for the same gap get different areas (the search
/// claims its result with a range lock inside its tree transaction), and
/// the second never waits for the first's claim.
#[test]
fn placements_claim_distinct_gaps() {
    model(|| {
        let mm = Arc::new(AddressSpace::new());
        let anon = MapFlags::PRIVATE | MapFlags::ANONYMOUS;
        let w = {
            let mm = mm.clone();
            thread::spawn(move || mm.mmap(None, P, RW, anon).unwrap())
        };
        let a = mm.mmap(None, P, RW, anon).unwrap();
        let b = w.join().unwrap();
        assert_ne!(a, b);
        let v = mm.vmas();
        // The second either found the first released (adjacent, merged) or
        // still holding its claim and skipped below it, past both claim
        // margins (lock-aware placement, DESIGN §4.8), without waiting.
        match a.abs_diff(b) {
            P => assert_eq!(v.len(), 1, "adjacent anonymous VMAs merge: {v:?}"),
            d => assert_eq!((d, v.len()), (3 * P, 2), "{v:?}"),
        }
        assert_eq!(mm.stats().place_waits, 0);
        balanced(&mm);
    });
}

/// Lock-aware placement (issue 11, DESIGN §4.8): a placement whose best gap
/// (the top) is held by a FIXED mmap in flight there never waits for it
/// (`place_waits` stays 0): it goes on below the held area. Every
/// interleaving ends with the FIXED mapping at the top and the placed one
/// either below it (apart, or merged with it) or replaced by it (the
/// placement ran first, claiming the top, and the FIXED mmap mapped over it).
/// Making the placement wait for the held area instead fails the model.
#[test]
fn placement_skips_a_held_gap() {
    const TOP: u64 = maple_rcu::mm::MMAP_BASE - P;
    model(|| {
        let mm = Arc::new(AddressSpace::new());
        let w = {
            let mm = mm.clone();
            thread::spawn(move || mm.mmap(Some(TOP), P, RW, FIXED).unwrap())
        };
        let anon = MapFlags::PRIVATE | MapFlags::ANONYMOUS;
        let a = mm.mmap(None, P, RW, anon).unwrap();
        assert_eq!(w.join().unwrap(), TOP);
        assert_eq!(mm.stats().place_waits, 0, "the placement waited");
        assert!(a == TOP || a + P <= TOP, "{a:#x}");
        let v = mm.vmas();
        assert!(v.iter().any(|v| v.range.contains(&TOP)), "{v:?}");
        assert!(v.iter().any(|v| v.range.contains(&a)), "{v:?}");
        balanced(&mm);
    });
}

/// An munmap racing an mmap(MAP_FIXED_NOREPLACE) into the same range: the
/// mmap either sees the old VMA (EEXIST; the munmap then leaves a hole) or
/// maps after the munmap (its VMA survives, with no stale PTE), and a
/// write fault on it is never lost.
#[test]
fn munmap_vs_mmap_same_hole() {
    model_heavy(|| {
        let (mm, w) = page_then_munmap();
        let noreplace = MapFlags::PRIVATE | MapFlags::ANONYMOUS | MapFlags::FIXED_NOREPLACE;
        let r = mm.mmap(Some(A), P, RW, noreplace);
        w.join().unwrap();
        match r {
            Ok(a) => {
                assert_eq!(a, A);
                assert_eq!(mm.vmas().len(), 1);
                assert!(mm.translate(A).is_none(), "stale PTE in the new mapping");
            }
            Err(e) => {
                assert_eq!(e.errno(), 17, "{e:?}");
                assert!(mm.vmas().is_empty());
            }
        }
        balanced(&mm);
    });
}

/// munmap without the span lock (issue 11, DESIGN §4.8 "Freeing tables"):
/// writer A unmaps the last VMA of a 2 MiB span (its table then looks
/// freeable) while writer B maps FIXED into the same span's hole, out of
/// A's R-M1 extent, and write-faults there. A must never unlink the table
/// holding B's PTE: B's write is present at the end, A's page is gone, and
/// the table is freed (by A) or still linked for B. Skipping the emptiness
/// re-check under the span's `try_write` (freeing on the snapshot taken
/// before it) fails this model: B's install is lost.
#[test]
fn munmap_last_vma_vs_fixed_mmap_fault_same_span() {
    model_heavy(|| {
        let (mm, w) = page_then_munmap();
        // Three pages up: B's extent [A + 2P, A + 5P) misses A's [A - P, A + 2P).
        mm.mmap(Some(A + 3 * P), P, RW, FIXED).unwrap();
        let r = mm.fault(A + 3 * P, Access::Write);
        w.join().unwrap();
        assert!(r.is_ok(), "B's mapped page faulted {r:?}");
        assert!(mm.translate(A + 3 * P).is_some(), "B's install lost");
        assert!(mm.translate(A).is_none());
        balanced(&mm);
    });
}

/// R-M5 (DESIGN §4.8, "Freeing tables"): munmap's free step never waits.
/// A writer next door (an mprotect of the VMA just below the span, whose
/// contagion margin reaches one page into it) holds or waits for part of
/// the span when the free step comes: the step is handed to it, and it
/// runs it after releasing. Whatever the order, the emptied table is freed
/// by the end (`check`) and nobody waits for anybody's free step. Dropping
/// the mprotect's drain (the hand-off's receiver) leaks the table in some
/// interleaving at this bound (checked); dropping the free step's second
/// `try_read` after its record (the store-buffering window) needs three
/// preemptions: the ignored `_bound3` variant (about 110 s) catches it.
#[test]
fn free_step_handed_to_neighbour_writer() {
    free_step_handed_off(2);
}

/// [`free_step_handed_to_neighbour_writer`] at preemption bound 3.
#[test]
#[ignore = "about 110 s; run by hand after touching R-M5"]
fn free_step_handed_to_neighbour_writer_bound3() {
    free_step_handed_off(3);
}

fn free_step_handed_off(bound: usize) {
    model_bounded(bound, || {
        let mm = one_page();
        // Below the span of `A`, read-only: no merge with `A`'s VMA.
        mm.mmap(Some(A - P), P, Prot::READ, FIXED).unwrap();
        let w = {
            let mm = mm.clone();
            thread::spawn(move || mm.munmap(A, P).unwrap())
        };
        mm.mprotect(A - P, P, Prot::NONE).unwrap();
        w.join().unwrap();
        assert!(mm.translate(A).is_none());
        assert_eq!(mm.vmas().len(), 1);
        balanced(&mm);
    });
}

/// R-M7 (DESIGN §4.8, "Freeing tables"): a free step refused by a writer
/// that has put a VMA in the span is dropped, and the span's table is then
/// the job of whoever removes that VMA. Thread 1 unmaps the span's only
/// written page at `A` while thread 2 maps `A + 8P` FIXED (out of the
/// munmap's lock) and unmaps it again. At the end the span is empty and
/// its table must be freed (`check()`: no last-level table in a span
/// without a VMA), whichever free step ran, was handed off or was dropped.
///
/// Bound 1 (5 s) reaches the drain's drop (the step handed to thread 2's
/// mmap, dropped at its drain because its VMA is there; checked with a
/// panic on that path); `free_span`'s own drop (thread 2 commits between
/// the munmap's candidate look and its `try_read`) needs bound 2, about
/// 5 minutes: [`free_step_dropped_for_a_vma_its_remover_frees_bound2`].
/// A drop that does not look (every handed step dropped) fails
/// `free_step_handed_to_neighbour_writer`, not this model.
#[test]
fn free_step_dropped_for_a_vma_its_remover_frees() {
    model_bounded(1, step_dropped_for_a_vma);
}

/// [`free_step_dropped_for_a_vma_its_remover_frees`] at preemption bound 2.
#[test]
#[ignore = "about 5 minutes; run by hand after touching R-M5 or R-M7"]
fn free_step_dropped_for_a_vma_its_remover_frees_bound2() {
    model_bounded(2, step_dropped_for_a_vma);
}

fn step_dropped_for_a_vma() {
    let (mm, w) = page_then_munmap();
    let b = A + 8 * P;
    mm.mmap(Some(b), P, RW, FIXED).unwrap();
    mm.munmap(b, P).unwrap();
    w.join().unwrap();
    assert!(mm.vmas().is_empty());
    assert!(mm.translate(A).is_none());
    assert_eq!(mm.stats().tables_kept, 0);
    balanced(&mm);
}

// ---------------------------------------------------------------------------
// Hostile models (breaker): the writers-versus-faults table, rows not covered
// above, each under the policy it stresses.
// ---------------------------------------------------------------------------

/// Two VMAs share one last-level table; munmap of one frees nothing while a
/// write fault on the other (which must populate the upper levels itself)
/// installs: the install is never lost and the unmapped VMA keeps no PTE.
#[test]
fn shared_table_munmap_vs_fault_other() {
    for policy in [FaultPolicy::Speculative, FaultPolicy::PerVmaLock] {
        model(move || {
            let mm = Arc::new(AddressSpace::with_policy(policy));
            mm.mmap(Some(A), P, RW, FIXED).unwrap();
            mm.mmap(Some(A + 4 * P), P, RW, FIXED).unwrap();
            let w = {
                let mm = mm.clone();
                thread::spawn(move || mm.munmap(A, P).unwrap())
            };
            let r = mm.fault(A + 4 * P, Access::Write);
            w.join().unwrap();
            assert!(r.is_ok(), "{policy:?}: stable page faulted {r:?}");
            assert!(
                mm.translate(A + 4 * P).is_some(),
                "{policy:?}: install lost"
            );
            assert!(mm.translate(A).is_none());
            balanced(&mm);
        });
    }
}

/// mmap(FIXED) next to an identical VMA merges with it (the neighbour is
/// replaced, dead while the merged VMA is unpublished): a write fault on the
/// neighbour never fails and is never lost.
#[test]
fn merge_vs_fault_on_neighbour() {
    for policy in [FaultPolicy::Speculative, FaultPolicy::PerVmaLock] {
        model(move || {
            let mm = Arc::new(AddressSpace::with_policy(policy));
            mm.mmap(Some(A), P, RW, FIXED).unwrap();
            let w = {
                let mm = mm.clone();
                thread::spawn(move || {
                    mm.mmap(Some(A + P), P, RW, FIXED).unwrap();
                })
            };
            let r = mm.fault(A, Access::Write);
            w.join().unwrap();
            assert!(r.is_ok(), "{policy:?}: neighbour faulted {r:?}");
            assert!(mm.translate(A).is_some(), "{policy:?}: install lost");
            assert_eq!(mm.vmas().len(), 1);
            balanced(&mm);
        });
    }
}

/// mremap grow in place racing a write fault just above the old end: Segv
/// (before) or Installed and kept (after).
#[test]
fn mremap_grow_vs_fault_above() {
    use maple_rcu::mm::{FaultOutcome, RemapFlags};
    model(|| {
        let mm = Arc::new(AddressSpace::new());
        mm.mmap(Some(A), P, RW, FIXED).unwrap();
        let w = {
            let mm = mm.clone();
            thread::spawn(move || {
                assert_eq!(mm.mremap(A, P, 2 * P, RemapFlags::empty(), None), Ok(A));
            })
        };
        let r = mm.fault(A + P, Access::Write);
        w.join().unwrap();
        match r {
            Ok(o) => {
                assert_eq!(o, FaultOutcome::Installed);
                assert!(mm.translate(A + P).is_some(), "install lost");
            }
            Err(e) => assert_eq!(e, FaultError::Segv),
        }
        balanced(&mm);
    });
}

/// mprotect(R → RW) racing a write fault on a read-installed PTE: Access
/// (before) or Upgraded (after, kept writable); never a writable PTE in an R
/// VMA, never an upgrade lost.
#[test]
fn mprotect_upgrade_vs_write() {
    use maple_rcu::mm::FaultOutcome;
    model(|| {
        let mm = Arc::new(AddressSpace::with_policy(FaultPolicy::PerVmaLock));
        mm.mmap(Some(A), P, Prot::READ, FIXED).unwrap();
        mm.fault(A, Access::Read).unwrap();
        let w = {
            let mm = mm.clone();
            thread::spawn(move || mm.mprotect(A, P, RW).unwrap())
        };
        let r = mm.fault(A, Access::Write);
        w.join().unwrap();
        let pte = mm.translate(A).unwrap();
        match r {
            Ok(o) => {
                assert_eq!(o, FaultOutcome::Upgraded);
                assert!(pte.prot.contains(Prot::WRITE), "upgrade lost");
            }
            Err(e) => {
                assert_eq!(e, FaultError::Access);
                assert!(!pte.prot.contains(Prot::WRITE));
            }
        }
        balanced(&mm);
    });
}

/// Stack growth (the fault takes the writer lock) racing munmap of a VMA in
/// the guard gap: Segv (growth refused, munmap later) or Installed (munmap
/// first); a grown page is never lost.
#[test]
fn stack_growth_vs_munmap_guard() {
    use maple_rcu::mm::FaultOutcome;
    const ST: u64 = 0x3000_0000 + 64 * P;
    model_heavy(|| {
        let mm = Arc::new(AddressSpace::new());
        mm.mmap(Some(ST - P), P, RW, FIXED | MapFlags::GROWSDOWN)
            .unwrap();
        mm.mmap(Some(ST - 8 * P), P, RW, FIXED).unwrap();
        let w = {
            let mm = mm.clone();
            thread::spawn(move || mm.munmap(ST - 8 * P, P).unwrap())
        };
        let r = mm.fault(ST - 2 * P, Access::Write);
        w.join().unwrap();
        match r {
            Ok(o) => {
                assert_eq!(o, FaultOutcome::Installed);
                assert!(mm.translate(ST - 2 * P).is_some(), "grown page lost");
            }
            Err(e) => assert_eq!(e, FaultError::Segv),
        }
        balanced(&mm);
    });
}

/// fault_vs_munmap under the other two policies (the original model runs
/// Speculative only).
#[test]
fn fault_vs_munmap_other_policies() {
    for policy in [FaultPolicy::PerVmaLock, FaultPolicy::MmapLock] {
        model(move || fault_vs_munmap_in(policy, false));
    }
}

/// Statistics (docs/DESIGN.md §4, "Statistics"): two faulting threads count
/// in their own slots with plain loads and stores, and take frame numbers
/// from per-thread blocks (2 numbers per block under loom, so each thread
/// crosses a block boundary). After the join the sums are exact and every
/// mapped frame number is distinct (M6).
#[test]
fn stats_per_thread_slots() {
    model(|| {
        let mm = Arc::new(AddressSpace::new());
        mm.mmap(Some(A), 6 * P, RW, FIXED).unwrap();
        let w = {
            let mm = mm.clone();
            thread::spawn(move || {
                for p in 0..3 {
                    mm.fault(A + p * P, Access::Write).unwrap();
                }
            })
        };
        for p in 3..6 {
            mm.fault(A + p * P, Access::Write).unwrap();
        }
        w.join().unwrap();
        let s = mm.stats();
        assert_eq!(
            (s.faults, s.installed, s.frames_allocated),
            (6, 6, 6),
            "{s:?}"
        );
        let mut frames: Vec<u64> = (0..6)
            .map(|p| mm.translate(A + p * P).unwrap().frame)
            .collect();
        frames.sort_unstable();
        frames.dedup();
        assert_eq!(frames.len(), 6, "frame numbers reused");
        balanced(&mm);
    });
}

/// Issue 14: a COW break racing fork's write-protect. The page is already
/// COW-shared with a first child (refcount 2); the parent's write must copy
/// (never reuse or upgrade the shared frame) whether a second fork copies
/// the PTE before the break (the second child shares the old frame, value 1)
/// or after it (it shares the parent's new frame, value 2, write-protected
/// again). Counts are exact in every interleaving.
#[test]
fn cow_break_vs_fork() {
    model_family(|| {
        let p = Arc::new(AddressSpace::new());
        p.mmap(Some(A), P, RW, FIXED).unwrap();
        p.write(A, 1).unwrap();
        let c1 = p.fork();
        let w = {
            let p = p.clone();
            thread::spawn(move || p.write(A, 2).unwrap())
        };
        let c2 = p.fork();
        w.join().unwrap();
        assert_eq!(c1.read(A), Ok(1), "first child sees the parent's write");
        let v2 = c2.read(A).unwrap();
        assert!(v2 == 1 || v2 == 2, "second child read {v2}");
        assert_eq!(p.read(A), Ok(2));
        c2.write(A, 3).unwrap();
        assert_eq!((p.read(A), c1.read(A)), (Ok(2), Ok(1)));
        AddressSpace::check_family(&[&p, &c1, &c2]).unwrap();
    });
}

/// Issue 14: a write racing fork on an exclusively owned writable page (the
/// write either stores before fork write-protects the PTE, or takes the COW
/// fault after it and copies): the child sees the page wholly before or
/// after the write, and the parent's later writes never reach it.
#[test]
fn write_vs_fork_wrprotect() {
    model_family(|| {
        let p = Arc::new(AddressSpace::new());
        p.mmap(Some(A), P, RW, FIXED).unwrap();
        p.write(A, 1).unwrap();
        let w = {
            let p = p.clone();
            thread::spawn(move || p.write(A, 2).unwrap())
        };
        let c = p.fork();
        w.join().unwrap();
        let v = c.read(A).unwrap();
        assert!(v == 1 || v == 2, "child read {v}");
        p.write(A, 4).unwrap();
        assert_eq!(c.read(A), Ok(v), "parent's write reached the child");
        AddressSpace::check_family(&[&p, &c]).unwrap();
    });
}

/// Issue 14 §3: a first fault on a page (it populates the page tables)
/// racing fork: the child gets the page with the write or not at all
/// (it then reads a fresh zero page), and both stay consistent.
#[test]
fn first_fault_vs_fork() {
    model_family(|| {
        let p = Arc::new(AddressSpace::new());
        p.mmap(Some(A), P, RW, FIXED).unwrap();
        let w = {
            let p = p.clone();
            thread::spawn(move || p.write(A, 5).unwrap())
        };
        let c = p.fork();
        w.join().unwrap();
        let v = c.read(A).unwrap();
        assert!(v == 0 || v == 5, "child read {v}");
        assert_eq!(p.read(A), Ok(5));
        AddressSpace::check_family(&[&p, &c]).unwrap();
    });
}

/// A space with one written private page at `A`, and a thread unmapping it.
pub(crate) fn page_then_munmap() -> (Arc<AddressSpace>, thread::JoinHandle<()>) {
    let mm = one_page();
    let w = {
        let mm = mm.clone();
        thread::spawn(move || mm.munmap(A, P).unwrap())
    };
    (mm, w)
}

/// A space with one private page at `A` holding 1.
fn one_page() -> Arc<AddressSpace> {
    let p = Arc::new(AddressSpace::new());
    p.mmap(Some(A), P, RW, FIXED).unwrap();
    p.write(A, 1).unwrap();
    p
}

/// `mm.try_to_unmap(f)` on another thread.
fn spawn_unmap(mm: &Arc<AddressSpace>, f: u64) -> thread::JoinHandle<bool> {
    let mm = mm.clone();
    thread::spawn(move || mm.try_to_unmap(f))
}

/// The frame of `A` in `mm`.
fn frame_at(mm: &AddressSpace, a: u64) -> u64 {
    mm.translate(a).expect("mapped").frame
}

/// Issue 14 §4: `try_to_unmap` of a COW-shared frame racing the parent's
/// write fault (which copies, or first maps the swap entry again and then
/// copies). The walker and the fault meet on the parent's PTL and the
/// frame's pv mutex: the rmap stays exact (M10), each process keeps its
/// contents, and a true result means no live space maps the frame.
#[test]
fn try_to_unmap_vs_fault() {
    model_family(|| {
        let p = one_page();
        let c = Arc::new(p.fork());
        let f = frame_at(&p, A);
        let w = spawn_unmap(&c, f);
        p.write(A, 2).unwrap();
        let unmapped = w.join().unwrap();
        assert!(unmapped, "nothing kept the frame mapped");
        assert!(c.translate(A).is_none(), "child still maps the frame");
        assert_ne!(frame_at(&p, A), f, "the parent's write copied");
        assert_eq!((p.read(A), c.read(A)), (Ok(2), Ok(1)));
        AddressSpace::check_family(&[&p, &c]).unwrap();
    });
}

/// Issue 14 §4: `try_to_unmap` racing fork. Fork adds the child's pv entry
/// under the parent's PTL before the child's PTE exists (the child is
/// registered first), so a walker either unmaps the parent's PTE before
/// the copy (the child inherits a swap entry) or finds the child's entry
/// and, once the PTE is there, unmaps it too; a true result means neither
/// maps the frame. Contents survive either way.
#[test]
fn try_to_unmap_vs_fork() {
    model_family(|| {
        let p = one_page();
        let f = frame_at(&p, A);
        let w = spawn_unmap(&p, f);
        let c = p.fork();
        let unmapped = w.join().unwrap();
        if unmapped {
            assert!(p.translate(A).is_none() && c.translate(A).is_none());
        }
        AddressSpace::check_family(&[&p, &c]).unwrap();
        assert_eq!((p.read(A), c.read(A)), (Ok(1), Ok(1)));
        AddressSpace::check_family(&[&p, &c]).unwrap();
    });
}

/// Issue 14 §4: `try_to_unmap` racing an mremap move (Linux's
/// `take_rmap_locks` case). The move keeps the pv entry at the old address
/// until it sets the target PTE and moves the entry under the target PTL, so
/// a walker never sees an empty list while the PTE is in flight: a true
/// result means the moved page is not mapped (a swap entry moved with it).
#[test]
fn try_to_unmap_vs_mremap() {
    model_family(|| {
        let p = one_page();
        let f = frame_at(&p, A);
        let w = spawn_unmap(&p, f);
        let to = A + 4 * P;
        let flags = maple_rcu::mm::RemapFlags::MAYMOVE | maple_rcu::mm::RemapFlags::FIXED;
        assert_eq!(p.mremap(A, P, P, flags, Some(to)), Ok(to));
        let unmapped = w.join().unwrap();
        if unmapped {
            assert!(p.translate(to).is_none(), "walker missed the moved PTE");
        }
        AddressSpace::check_family(&[&p]).unwrap();
        assert_eq!(p.read(to), Ok(1));
    });
}

/// Issue 14 §6: a fault racing the exit of another process sharing the
/// frame. The parent's write on the COW-shared page copies (refcount 2) or
/// reuses it (the child's exit dropped its reference first); the counts are
/// exact either way and the parent's value is its own.
#[test]
fn fault_vs_exit_sharing_frame() {
    model_family(|| {
        let p = one_page();
        let c = p.fork();
        let w = thread::spawn(move || drop(c));
        p.write(A, 2).unwrap();
        w.join().unwrap();
        assert_eq!(p.read(A), Ok(2));
        AddressSpace::check_family(&[&p]).unwrap();
    });
}

/// Issue 14 §4: an rmap walker racing the exit of a space it works on
/// (Linux's mmgrab). Exit leaves the registry, then waits for walkers
/// holding the space's link before its tables and Srcu domain go: the
/// walker's table accesses never race with the teardown (the tables'
/// liveness cells), and the child's stale pv entry is dropped or ignored.
#[test]
fn try_to_unmap_vs_exit() {
    model_family(|| {
        let p = one_page();
        let c = p.fork();
        let f = frame_at(&p, A);
        let w = thread::spawn(move || drop(c));
        assert!(p.try_to_unmap(f));
        w.join().unwrap();
        assert!(p.translate(A).is_none());
        assert_eq!(p.read(A), Ok(1));
        AddressSpace::check_family(&[&p]).unwrap();
    });
}

// ---------------------------------------------------------------------------
// R-M4 (issue 11, eighth session): munmap commits first, then zaps under its
// lock narrowed to the unmapped part (DESIGN §4.8, "An unmap that narrows").
// ---------------------------------------------------------------------------

/// A space with one private VMA of `pages` pages at `A`, every page written
/// with its index + 1.
fn written(policy: FaultPolicy, pages: u64) -> Arc<AddressSpace> {
    let mm = Arc::new(AddressSpace::with_policy(policy));
    mm.mmap(Some(A), pages * P, RW, FIXED).unwrap();
    for i in 0..pages {
        mm.write(A + i * P, i + 1).unwrap();
    }
    mm
}

/// munmap of part of a VMA (its end, or its middle: the split in three)
/// racing a write fault on a part that stays: the remainder is live again
/// as soon as the munmap commits, and while its PTEs are zapped, so the
/// fault never fails and its write is never lost (a zap that covered more
/// than the unmapped part, or a remainder published before the old VMA
/// died, would lose it); the unmapped page keeps no PTE.
fn narrowing_munmap_vs_fault_on_remainder(policy: FaultPolicy, middle: bool) {
    model(move || {
        let mm = written(policy, 3);
        let gone = if middle { A + P } else { A + 2 * P };
        let w = {
            let mm = mm.clone();
            thread::spawn(move || mm.munmap(gone, P).unwrap())
        };
        let r = mm.write(A, 7);
        w.join().unwrap();
        assert!(r.is_ok(), "{policy:?}: remainder faulted {r:?}");
        assert_eq!(mm.read(A), Ok(7), "{policy:?}: write lost");
        assert!(mm.translate(gone).is_none(), "{policy:?}: PTE left");
        assert_eq!(mm.vmas().len(), if middle { 2 } else { 1 });
        balanced(&mm);
    });
}

#[test]
fn narrowing_munmap_end_vs_fault_on_remainder() {
    narrowing_munmap_vs_fault_on_remainder(FaultPolicy::Speculative, false);
}

#[test]
fn narrowing_munmap_middle_vs_fault_on_remainder() {
    narrowing_munmap_vs_fault_on_remainder(FaultPolicy::Speculative, true);
}

#[test]
fn narrowing_munmap_vs_fault_on_remainder_pervma() {
    narrowing_munmap_vs_fault_on_remainder(FaultPolicy::PerVmaLock, false);
}

/// The lost-write class of issue 10 against R-M4: munmap of the upper half
/// of a four-page VMA, racing mmap(MAP_FIXED) of its top page and a write
/// there. The FIXED mmap's extent (`[A + 2P, A + 5P)`) misses the remainder
/// `[A, A + 2P)`, so only the narrowed lock keeps it out during the zap:
/// if its VMA is there at the end, the write is there too; otherwise the
/// munmap came last and no PTE is left. Narrowing to the remainder instead
/// of the unmapped part fails this model (the zap removes the new write).
#[test]
fn narrowing_munmap_vs_fixed_mmap_write() {
    model_heavy(|| {
        let mm = written(FaultPolicy::Speculative, 4);
        let w = {
            let mm = mm.clone();
            thread::spawn(move || mm.munmap(A + 2 * P, 2 * P).unwrap())
        };
        let top = A + 3 * P;
        mm.mmap(Some(top), P, RW, FIXED).unwrap();
        let r = mm.write(top, 9);
        w.join().unwrap();
        if mm.vmas().iter().any(|v| v.range.contains(&top)) {
            assert!(r.is_ok(), "write into the new mapping failed {r:?}");
            assert_eq!(mm.read(top), Ok(9), "write lost");
        } else {
            assert!(mm.translate(top).is_none(), "PTE left");
        }
        assert!(mm.translate(A + 2 * P).is_none(), "PTE left");
        assert_eq!(mm.read(A), Ok(1));
        balanced(&mm);
    });
}

/// Two munmaps of the two halves of one VMA (two threads' merged blocks),
/// each narrowing to its own half: whichever goes second meets the first's
/// remainder, or its narrowed hold, never its dead VMA; both zap, the
/// emptied table is freed exactly once (`check`: no table left in a span
/// without a VMA, frames balance).
///
/// CI explores it at preemption bound 2; bound 3 (about 5 minutes) runs as
/// the ignored [`narrowing_munmaps_of_both_halves_bound3`].
#[test]
fn narrowing_munmaps_of_both_halves() {
    model_bounded(2, munmaps_of_both_halves);
}

/// [`narrowing_munmaps_of_both_halves`] at preemption bound 3.
#[test]
#[ignore = "about 5 minutes; run by hand after touching munmap's narrowing (R-M4) or R-M5"]
fn narrowing_munmaps_of_both_halves_bound3() {
    model_bounded(3, munmaps_of_both_halves);
}

fn munmaps_of_both_halves() {
    {
        let mm = written(FaultPolicy::Speculative, 2);
        let w = {
            let mm = mm.clone();
            thread::spawn(move || mm.munmap(A + P, P).unwrap())
        };
        mm.munmap(A, P).unwrap();
        w.join().unwrap();
        assert!(mm.vmas().is_empty());
        assert!(mm.translate(A).is_none() && mm.translate(A + P).is_none());
        assert_eq!(mm.stats().tables_kept, 0);
        balanced(&mm);
    }
}

/// Issue 14 (found by the torture test, twelfth session): the first faults
/// of one MAP_SHARED anonymous page in a parent and its fork child, at once.
/// The object allocates the frame for whichever comes first; the other maps
/// the same frame. Both pv entries must survive (M10): the fresh frame's
/// stale entries used to be dropped in `rmap_add(.., fresh)`, after the
/// object's lock was released, so when the other space found the frame in
/// the object and added its entry first, the clear wiped that entry and its
/// PTE was left without one (`check_family` fails; a later zap of it trips
/// "PTE without its pv entry (M10)").
#[test]
fn shared_anon_first_faults_in_parent_and_child() {
    model_family(|| {
        let p = Arc::new(AddressSpace::new());
        let shared = MapFlags::SHARED | MapFlags::ANONYMOUS | MapFlags::FIXED;
        p.mmap(Some(A), P, RW, shared).unwrap();
        let c = Arc::new(p.fork());
        let w = {
            let c = c.clone();
            thread::spawn(move || c.fault(A, Access::Read).unwrap())
        };
        p.fault(A, Access::Write).unwrap();
        w.join().unwrap();
        AddressSpace::check_family(&[&p, &c]).unwrap();
        c.munmap(A, P).unwrap();
        p.munmap(A, P).unwrap();
    });
}
