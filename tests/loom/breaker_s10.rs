//! breaker10: loom models of R-M5's hand-off (DESIGN §4.8, "R-M5: a free
//! step never waits; it is handed to the writer in its way") to writer
//! kinds other than `mm::free_step_handed_to_neighbour_writer`'s mprotect:
//! a FIXED mmap just below the span, a FIXED_NOREPLACE mmap that fails with
//! EEXIST after its lock, a madvise(DONTFORK), an mremap shrink whose
//! source lock is rounded out over the span, brk (the whole space), a stack
//! growth (and a refused one) whose guard-gap lock reaches into the span,
//! and a fault's `Try::Orphan` free step handed to a munmap under
//! `WriterLocking::Global`. Each: the span's last VMA is unmapped on one
//! thread while the other thread's writer holds or waits for part of the
//! span; at the end no table is linked in a span without a VMA
//! (`tables_kept == 0`, `check()`), frames balance.
//!
//! Preemption bound 2 (the bound at which removing the receiver's drain is
//! caught by `mm::free_step_handed_to_neighbour_writer`). Times at bound 2
//! (release, one thread, machine shared): brk 1.2 s, noreplace 1.8 s,
//! fixed mmap 1.6 s, madvise 5.9 s, mremap 7.1 s, refused stack growth
//! 4.2 s, Global orphan 0.7 s; stack growth 220 s (ignored). Checked by
//! mutation: with the drain of mmap removed `handoff_to_failing_noreplace_mmap`
//! fails (the FIXED model was not reached: loom aborts the binary on the
//! first failure); of mremap, `handoff_to_mremap_shrink`; of brk,
//! `handoff_to_brk`; of madvise, `handoff_to_madvise_dontfork`; the fault's
//! after stack growth, `handoff_to_refused_stack_growth`; of munmap,
//! `orphan_handed_to_munmap_under_global_locking` (each: `check()` finds a
//! table left in a span with no VMA).

use super::mm::{A, FIXED, P, RW, model_bounded};
use loom::sync::Arc;
use loom::thread;
use maple_rcu::mm::{
    Access, AddressSpace, Advice, FaultError, FaultOutcome, FaultPolicy, MapFlags, MmError, Prot,
    RemapFlags, WriterLocking,
};

const SPAN: u64 = 2 << 20;
/// A GROWSDOWN VMA in the span above `A`'s, low enough that a growth's
/// guard-gap lock reaches down into `A`'s span.
const ST: u64 = A + SPAN + 16 * P;

fn balanced(mm: &AddressSpace) {
    mm.check().unwrap();
    let s = mm.stats();
    assert_eq!(s.tables_kept, 0, "table left in an empty span: {s:?}");
    assert_eq!(s.frames_allocated, s.frames_live + s.frames_freed, "{s:?}");
}

/// `mm` with a written private page at `A` (the only VMA of its span); a
/// thread unmaps it while this thread runs `op`, the neighbour writer.
fn vs_neighbour(mm: AddressSpace, op: impl Fn(&AddressSpace)) {
    let mm = Arc::new(mm);
    mm.mmap(Some(A), P, RW, FIXED).unwrap();
    mm.write(A, 1).unwrap();
    let w = {
        let mm = mm.clone();
        thread::spawn(move || mm.munmap(A, P).unwrap())
    };
    op(&mm);
    w.join().unwrap();
    assert!(mm.translate(A).is_none());
    assert!(
        mm.vmas()
            .iter()
            .all(|v| v.range.end <= A || v.range.start >= A + SPAN),
        "{:x?}",
        mm.vmas()
    );
    balanced(&mm);
}

/// A FIXED mmap of the page just below the span (in the span below): its
/// contagion margin reaches one page into the span.
#[test]
fn handoff_to_fixed_mmap_below_span() {
    model_bounded(2, || {
        vs_neighbour(AddressSpace::new(), |mm| {
            assert_eq!(mm.mmap(Some(A - P), P, Prot::READ, FIXED), Ok(A - P));
        })
    });
}

/// A FIXED_NOREPLACE mmap over the VMA just below the span: EEXIST, after
/// its lock was held (the early return must still drain).
#[test]
fn handoff_to_failing_noreplace_mmap() {
    model_bounded(2, || {
        let mm = AddressSpace::new();
        mm.mmap(Some(A - P), P, Prot::READ, FIXED).unwrap();
        vs_neighbour(mm, |mm| {
            let f = MapFlags::PRIVATE | MapFlags::ANONYMOUS | MapFlags::FIXED_NOREPLACE;
            assert_eq!(mm.mmap(Some(A - P), P, Prot::READ, f), Err(MmError::Exist));
        })
    });
}

/// madvise(DONTFORK) of the VMA just below the span (a write lock with the
/// contagion margin).
#[test]
fn handoff_to_madvise_dontfork() {
    model_bounded(2, || {
        let mm = AddressSpace::new();
        mm.mmap(Some(A - P), P, Prot::READ, FIXED).unwrap();
        vs_neighbour(mm, |mm| mm.madvise(A - P, P, Advice::DontFork).unwrap())
    });
}

/// mremap shrinking `[A - 2P, A)` to one page: the source lock (margin one
/// page past its end, rounded out to 2 MiB) covers the whole span; it frees
/// its own source tables (`Tables::Free`) and must also drain.
#[test]
fn handoff_to_mremap_shrink() {
    model_bounded(2, || {
        let mm = AddressSpace::new();
        mm.mmap(Some(A - 2 * P), 2 * P, Prot::READ, FIXED).unwrap();
        vs_neighbour(mm, |mm| {
            assert_eq!(
                mm.mremap(A - 2 * P, 2 * P, P, RemapFlags::empty(), None),
                Ok(A - 2 * P)
            );
        })
    });
}

/// brk far away: the whole space is write-locked.
#[test]
fn handoff_to_brk() {
    model_bounded(2, || {
        let mm = AddressSpace::new();
        let heap = A + 8 * SPAN;
        mm.set_initial_brk(heap);
        vs_neighbour(mm, move |mm| assert_eq!(mm.brk(heap + P), heap + P))
    });
}

/// A stack growth in the span above: its lock (the guard gap below the
/// faulting page) reaches into the span; the fault drains after it.
/// About 220 s at bound 2 (the successful growth commits a VMA: many more
/// interleavings than the refused one, which covers the same drain).
#[test]
#[ignore = "about 220 s; handoff_to_refused_stack_growth covers the same drain"]
fn handoff_to_stack_growth() {
    model_bounded(2, || {
        let mm = AddressSpace::new();
        mm.mmap(Some(ST), P, RW, FIXED | MapFlags::GROWSDOWN)
            .unwrap();
        vs_neighbour(mm, |mm| {
            assert_eq!(mm.fault(ST - P, Access::Write), Ok(FaultOutcome::Installed));
        })
    });
}

/// As [`handoff_to_stack_growth`], with RLIMIT_STACK at one page: the
/// growth is refused (Segv) after the lock was held.
#[test]
fn handoff_to_refused_stack_growth() {
    model_bounded(2, || {
        let mut mm = AddressSpace::new();
        mm.set_stack_rlimit(P);
        mm.mmap(Some(ST), P, RW, FIXED | MapFlags::GROWSDOWN)
            .unwrap();
        vs_neighbour(mm, |mm| {
            assert_eq!(mm.fault(ST - P, Access::Write), Err(FaultError::Segv));
        })
    });
}

/// `WriterLocking::Global`: munmap frees its tables under the whole-space
/// lock, so the only free step is a fault's `Try::Orphan` (it linked a
/// table under the dying VMA after the munmap's free), whose `try_read` of
/// the whole space the munmap refuses while it holds it: handed to the
/// munmap's drain. The fault answers Ok or Segv; nothing is left.
#[test]
fn orphan_handed_to_munmap_under_global_locking() {
    model_bounded(2, || {
        let mm = Arc::new(AddressSpace::with_locking(
            FaultPolicy::Speculative,
            WriterLocking::Global,
        ));
        crate::mm::fault_vs_munmap_on(mm, true);
    });
}

/// The same race under `WriterLocking::Range`, with the fault's orphan free
/// step refused by a third party, an mprotect of the VMA below the span
/// (three threads: heavy).
#[test]
#[ignore = "three threads; run by hand"]
fn orphan_handed_to_neighbour_mprotect() {
    model_bounded(2, || {
        let mm = Arc::new(AddressSpace::new());
        mm.mmap(Some(A - P), P, Prot::READ, FIXED).unwrap();
        mm.mmap(Some(A), P, RW, FIXED).unwrap();
        mm.write(A, 1).unwrap();
        let w = {
            let mm = mm.clone();
            thread::spawn(move || mm.munmap(A, P).unwrap())
        };
        let n = {
            let mm = mm.clone();
            thread::spawn(move || mm.mprotect(A - P, P, Prot::NONE).unwrap())
        };
        let r = mm.fault(A, Access::Write);
        assert!(matches!(r, Ok(_) | Err(FaultError::Segv)), "{r:?}");
        w.join().unwrap();
        n.join().unwrap();
        assert!(mm.translate(A).is_none());
        balanced(&mm);
    });
}
