//! breaker10 on R-M5 (DESIGN §4.8, "R-M5: a free step never waits; it is
//! handed to the writer in its way"): munmap's free step (and a fault's
//! `Try::Orphan` free step) `try_read`s its 2 MiB span; refused, it records
//! the span in `deferred` and relies on the writer in its way, whose writer
//! call ends with `drain_deferred`.
//!
//! Every test here races an *unmapper* (maps a page of span `S`, writes and
//! reads it back, unmaps it: `S` is then empty and its table must go) with a
//! *neighbour*: a writer of one kind whose range lock overlaps `S` but which
//! leaves no VMA in `S` (mprotect / madvise / FIXED mmap of the VMA just
//! below `S`, whose one-page contagion margin reaches into it; mremap whose
//! source span lock covers `S`; brk, which locks the whole space; a stack
//! growth whose guard-gap lock reaches down into `S`; a placement claiming a
//! hinted area next to `S`; writers that fail with EINVAL / ENOMEM / EEXIST
//! after taking their lock; a munmap of a hole in `S`). Both threads start
//! each iteration together (a spin barrier) with random small delays, and
//! after every iteration, at a quiescent point, the test asserts
//! `stats().tables_kept == 0` (no last-level table linked in a span without
//! a VMA), and after every round `check()` (which includes the same and the
//! frame balance) and that the unmapper's values were read back.
//!
//! Oracles are deterministic: whatever the interleaving, at a quiescent
//! point no span without a VMA keeps a table (DESIGN §4.8, "No table is
//! left"). Env: `S10_ITERS` (iterations per round and kind, default 300),
//! `S10_SEED`. About 6-7 s for the file (release, 2 cores).
//!
//! Mutations (release, two runs each, all reverted): a writer's drain
//! removed — mprotect: `handoff_to_mprotect`, `_einval`, `_enomem` and the
//! orphan trio fail; madvise: `handoff_to_madvise_fork`; mmap:
//! `handoff_to_fixed_mmap` and the trio; mremap: `handoff_to_mremap` and the
//! trio; brk: `handoff_to_brk` and the trio; the fault's after stack growth:
//! `handoff_to_refused_stack_growth` (both runs); mprotect's drain declared
//! after its lock (so run before the release): as removed; `defer_span`
//! recording nothing: 12 to 13 tests. Not caught here: munmap's drain
//! removed (under `Range` its own free step covers its range's spans; the
//! loom model `breaker_s10::orphan_handed_to_munmap_under_global_locking`
//! catches it), either SeqCst fence removed (x86; loom's business), the
//! free step's second `try_read` removed (caught in 1 of 4 runs), a drain
//! running only the first listed step (1 of 4 runs).

#[path = "common/race.rs"]
mod race;
#[path = "common/rng.rs"]
mod rng;
#[path = "common/watchdog.rs"]
mod watchdog;

use maple_rcu::mm::{
    Access, AddressSpace, Advice, FaultError, FaultOutcome, FaultPolicy, MapFlags, MmError, Prot,
    RemapFlags, STACK_GUARD_GAP, WriterLocking,
};
use race::{Party, delay, quiescent, race, repeat_until};
use rng::Rng;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

const P: u64 = 4096;
const SPAN: u64 = 2 << 20;
/// The contested span `S = [B, B + SPAN)`.
const B: u64 = 0x4000_0000;
const RW: Prot = Prot::READ.union(Prot::WRITE);
const ANON: MapFlags = MapFlags::PRIVATE.union(MapFlags::ANONYMOUS);
const FIXED: MapFlags = ANON.union(MapFlags::FIXED);
/// The stack VMA of the stack kinds: in the span above `S`, low enough that
/// a growth's guard-gap lock (`page - STACK_GUARD_GAP - P`) reaches into `S`.
const ST: u64 = B + SPAN + 16 * P;
/// The program break of the brk kind: far from `S`.
const BRK: u64 = B + 64 * SPAN;

const _: () = assert!(ST - P - STACK_GUARD_GAP - P < B + SPAN);

fn iters() -> u64 {
    race::env_u64("S10_ITERS", 300)
}

fn seed() -> u64 {
    race::env_u64("S10_SEED", 0x5eed_0010)
}

/// The neighbour's writer kinds (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// mprotect of `[B - P, B)` (READ <-> NONE).
    Mprotect,
    /// mprotect of `[B - 2P, B)`, whose first page is a hole: ENOMEM after
    /// the lock.
    MprotectHole,
    /// mprotect with PROT_GROWSDOWN on a VMA that is not GROWSDOWN: EINVAL
    /// after the lock.
    MprotectInval,
    /// madvise DONTFORK / DOFORK of `[B - P, B)` (a write lock).
    MadviseFork,
    /// madvise DONTNEED of `[B - P, B)`: a reader (refuses no free step).
    MadviseDontNeed,
    /// mmap FIXED of `[B - P, B)` over itself (READ / NONE).
    MmapFixed,
    /// mmap FIXED_NOREPLACE of `[B - P, B)` over a VMA: EEXIST after the lock.
    MmapNoReplace,
    /// Placed (non-FIXED) mmap hinted at `B - P` (its claim reaches into
    /// `S`), then munmap of it.
    MmapHinted,
    /// mremap of `[B - 2P, B)`: shrink to one page (`Tables::Free`), grow
    /// back in place; the source lock is rounded out to 2 MiB and covers `S`.
    Mremap,
    /// brk up one page and back down (the whole space write-locked).
    Brk,
    /// A write fault one page below the GROWSDOWN VMA at `ST` (the stack
    /// grows), then munmap of the grown page.
    StackGrow,
    /// The same fault with RLIMIT_STACK at one page: growth refused (Segv)
    /// after the lock.
    StackRefused,
    /// munmap of a hole high in `S` (its lock lies in `S`).
    HoleMunmap,
}

const KINDS: [Kind; 13] = [
    Kind::Mprotect,
    Kind::MprotectHole,
    Kind::MprotectInval,
    Kind::MadviseFork,
    Kind::MadviseDontNeed,
    Kind::MmapFixed,
    Kind::MmapNoReplace,
    Kind::MmapHinted,
    Kind::Mremap,
    Kind::Brk,
    Kind::StackGrow,
    Kind::StackRefused,
    Kind::HoleMunmap,
];

/// A space for `kind`: the neighbour's VMAs (READ or NONE, so they never
/// merge with the unmapper's RW page).
fn space(kind: Kind, policy: FaultPolicy, locking: WriterLocking) -> Arc<AddressSpace> {
    let mut mm = AddressSpace::with_locking(policy, locking);
    if kind == Kind::StackRefused {
        mm.set_stack_rlimit(P);
    }
    let mm = Arc::new(mm);
    match kind {
        Kind::Mremap => {
            mm.mmap(Some(B - 2 * P), 2 * P, Prot::READ, FIXED).unwrap();
        }
        Kind::MmapHinted | Kind::HoleMunmap => {}
        Kind::Brk => mm.set_initial_brk(BRK),
        Kind::StackGrow | Kind::StackRefused => {
            mm.mmap(Some(ST), P, RW, FIXED | MapFlags::GROWSDOWN)
                .unwrap();
        }
        _ => {
            mm.mmap(Some(B - P), P, Prot::READ, FIXED).unwrap();
        }
    }
    mm
}

/// One neighbour operation of `kind` (iteration `i`); asserts its result.
fn neighbour(mm: &AddressSpace, kind: Kind, i: u64) {
    let odd = i % 2 == 1;
    let ro = if odd { Prot::NONE } else { Prot::READ };
    match kind {
        Kind::Mprotect => mm.mprotect(B - P, P, ro).unwrap(),
        Kind::MprotectHole => {
            assert_eq!(mm.mprotect(B - 2 * P, 2 * P, ro), Err(MmError::NoMem));
        }
        Kind::MprotectInval => {
            assert_eq!(
                mm.mprotect(B - P, P, Prot::READ | Prot::GROWSDOWN),
                Err(MmError::Inval)
            );
        }
        Kind::MadviseFork => {
            let a = if odd {
                Advice::DoFork
            } else {
                Advice::DontFork
            };
            mm.madvise(B - P, P, a).unwrap();
        }
        Kind::MadviseDontNeed => mm.madvise(B - P, P, Advice::DontNeed).unwrap(),
        Kind::MmapFixed => assert_eq!(mm.mmap(Some(B - P), P, ro, FIXED), Ok(B - P)),
        Kind::MmapNoReplace => {
            let f = ANON | MapFlags::FIXED_NOREPLACE;
            assert_eq!(mm.mmap(Some(B - P), P, ro, f), Err(MmError::Exist));
        }
        Kind::MmapHinted => {
            // The hint is free, but a placement skips a candidate whose
            // area a writer holds (the unmapper's): then it lands elsewhere.
            let a = mm.mmap(Some(B - P), P, Prot::READ, ANON).unwrap();
            mm.munmap(a, P).unwrap();
        }
        Kind::Mremap => {
            let grown = mm
                .vmas()
                .iter()
                .any(|v| v.range.start == B - 2 * P && v.range.end == B);
            let (old, new) = if grown { (2 * P, P) } else { (P, 2 * P) };
            assert_eq!(
                mm.mremap(B - 2 * P, old, new, RemapFlags::empty(), None),
                Ok(B - 2 * P)
            );
        }
        Kind::Brk => {
            let want = if odd { BRK } else { BRK + P };
            assert_eq!(mm.brk(want), want);
        }
        Kind::StackGrow => {
            let r = mm.fault(ST - P, Access::Write);
            assert_eq!(r, Ok(FaultOutcome::Installed));
            mm.munmap(ST - P, P).unwrap();
        }
        Kind::StackRefused => {
            assert_eq!(mm.fault(ST - P, Access::Write), Err(FaultError::Segv));
        }
        Kind::HoleMunmap => mm.munmap(B + SPAN - 8 * P, P).unwrap(),
    }
}

/// The unmapper's operation: map a page of `S`, write `v`, read it back,
/// unmap it (S is then empty).
fn unmapper(mm: &AddressSpace, off: u64, v: u64) {
    let a = B + off;
    assert_eq!(mm.mmap(Some(a), P, RW, FIXED), Ok(a));
    mm.write(a, v).unwrap();
    assert_eq!(mm.read(a), Ok(v), "value at {a:#x} lost");
    mm.munmap(a, P).unwrap();
}

fn round_end(mm: &AddressSpace, what: &str) {
    if let Err(e) = mm.check() {
        panic!("{what}: check: {e}");
    }
    let s = mm.stats();
    assert_eq!(s.tables_kept, 0, "{what}: {s:?}");
    assert_eq!(
        s.frames_allocated,
        s.frames_live + s.frames_freed,
        "{what}: {s:?}"
    );
    assert!(
        mm.vmas()
            .iter()
            .all(|v| v.range.end <= B || v.range.start >= B + SPAN),
        "{what}: a VMA left in S: {:x?}",
        mm.vmas()
    );
}

/// The unmapper against the neighbour of `kind`, `n` iterations, a
/// quiescent check after each. The neighbour repeats its operation until
/// the unmapper's is over (so one of its calls is likely in the unmapper's
/// free step's way; with its kind's drain removed, no later call drains).
fn duel(kind: Kind, policy: FaultPolicy, locking: WriterLocking, n: u64, seed: u64) {
    let mm = space(kind, policy, locking);
    let what = format!("{kind:?} {policy:?} {locking:?} seed {seed:#x}");
    let mut r = Rng(seed | 1);
    let offs = [0, P, 2 * P, 3 * P, 64 * P];
    race(
        &mm,
        n,
        &what,
        vec![repeating(kind, seed ^ 0x9e37_79b9_7f4a_7c15)],
        |mm, i| {
            delay(&mut r, 400);
            let off = offs[r.below(offs.len() as u64) as usize];
            unmapper(mm, off, (seed << 20) ^ i);
        },
        |_, _| {},
    );
    round_end(&mm, &what);
}

/// The unmapper against the neighbour `kind` under each fault policy
/// (`RangeLock` writers). Each iteration ends at a quiescent point with no
/// table in `S`.
fn every_policy(kind: Kind) {
    let n = iters();
    let s = seed() ^ ((kind as u64) << 32);
    watchdog::within(120, &format!("{kind:?}"), move || {
        for (pi, policy) in [
            FaultPolicy::Speculative,
            FaultPolicy::PerVmaLock,
            FaultPolicy::MmapLock,
            FaultPolicy::RangeLock,
        ]
        .into_iter()
        .enumerate()
        {
            duel(
                kind,
                policy,
                WriterLocking::Range,
                n,
                s ^ ((pi as u64) << 40),
            );
        }
    });
}

macro_rules! kind_tests {
    ($($name:ident => $kind:ident,)*) => {$(
        /// The hand-off to this neighbour kind (see [`Kind`]).
        #[test]
        fn $name() {
            every_policy(Kind::$kind);
        }
    )*};
}

kind_tests! {
    handoff_to_mprotect => Mprotect,
    handoff_to_mprotect_enomem => MprotectHole,
    handoff_to_mprotect_einval => MprotectInval,
    handoff_to_madvise_fork => MadviseFork,
    madvise_dontneed_reader_neighbour => MadviseDontNeed,
    handoff_to_fixed_mmap => MmapFixed,
    handoff_to_noreplace_mmap_eexist => MmapNoReplace,
    handoff_to_hinted_placement => MmapHinted,
    handoff_to_mremap => Mremap,
    handoff_to_brk => Brk,
    handoff_to_stack_growth => StackGrow,
    handoff_to_refused_stack_growth => StackRefused,
    handoff_to_hole_munmap => HoleMunmap,
}

/// The same under `WriterLocking::Global`: munmap frees under the whole
/// space (no free step), but every writer still drains, and a fault's
/// orphan free step try_reads the whole space.
#[test]
fn handoff_under_global_locking() {
    let n = iters() / 2;
    let s = seed();
    watchdog::within(120, "handoff_under_global_locking", move || {
        for policy in [FaultPolicy::Speculative, FaultPolicy::RangeLock] {
            for (ki, kind) in KINDS.into_iter().enumerate() {
                duel(kind, policy, WriterLocking::Global, n, s ^ ki as u64);
            }
        }
    });
}

/// Three parties: the unmapper, a faulter writing the unmapper's page in a
/// loop (dying VMAs: `Try::Orphan` free steps, which may be refused by the
/// neighbour and handed to it), and a neighbour. Faults answer Ok or Segv;
/// quiescent check each iteration; every policy with a speculative part.
#[test]
fn orphan_free_steps_handed_to_neighbours() {
    let n = iters();
    let s = seed();
    watchdog::within(120, "orphan_free_steps_handed_to_neighbours", move || {
        for policy in [
            FaultPolicy::Speculative,
            FaultPolicy::PerVmaLock,
            FaultPolicy::RangeLock,
        ] {
            for kind in [
                Kind::Mprotect,
                Kind::MmapFixed,
                Kind::Mremap,
                Kind::Brk,
                Kind::StackRefused,
                Kind::MprotectHole,
            ] {
                trio(kind, policy, WriterLocking::Range, n, s ^ kind as u64);
            }
        }
    });
}

/// The trio under `WriterLocking::Global`: munmap frees under the whole
/// space, so the faults' orphan free steps (a `try_read` of the whole
/// space) are the only free steps, refused by any writer: by the munmap
/// itself (then its drain runs them) or the neighbour.
#[test]
fn orphan_free_steps_under_global_locking() {
    let n = iters();
    let s = seed();
    watchdog::within(120, "orphan_free_steps_under_global_locking", move || {
        for policy in [FaultPolicy::Speculative, FaultPolicy::PerVmaLock] {
            for kind in [Kind::MadviseDontNeed, Kind::Mprotect, Kind::StackRefused] {
                trio(kind, policy, WriterLocking::Global, n, s ^ kind as u64);
            }
        }
    });
}

fn trio(kind: Kind, policy: FaultPolicy, locking: WriterLocking, n: u64, seed: u64) {
    let mm = space(kind, policy, locking);
    let what = format!("trio {kind:?} {policy:?} {locking:?} seed {seed:#x}");
    let mut rf = Rng(seed ^ 0x0fed_cba9_8765_4321 | 1);
    let faulter: Party = Box::new(move |mm, _, _| {
        delay(&mut rf, 200);
        for _ in 0..1 + rf.below(4) {
            let res = mm.fault(B, Access::Write);
            assert!(
                matches!(
                    res,
                    Ok(FaultOutcome::Installed | FaultOutcome::Present) | Err(FaultError::Segv)
                ),
                "{res:?}"
            );
        }
    });
    let mut r = Rng(seed | 1);
    race(
        &mm,
        n,
        &what,
        vec![repeating(kind, seed ^ 0x1234_5678_9abc_def1), faulter],
        |mm, i| {
            delay(&mut r, 300);
            assert_eq!(mm.mmap(Some(B), P, RW, FIXED), Ok(B));
            mm.write(B + 8, i).unwrap();
            assert_eq!(mm.read(B + 8), Ok(i));
            mm.munmap(B, P).unwrap();
        },
        |mm, _| assert!(mm.translate(B).is_none(), "{what}: PTE left at {B:#x}"),
    );
    round_end(&mm, &what);
}

/// The neighbour of `kind` as a party: after a random delay, repeats its
/// operation until the main thread's part is over (so one of its calls is
/// likely in the way of the main thread's free step).
fn repeating(kind: Kind, seed: u64) -> Party {
    let mut r = Rng(seed | 1);
    let mut j = 0;
    Box::new(move |mm, _, done| {
        delay(&mut r, 200);
        repeat_until(done, || {
            neighbour(mm, kind, j);
            j += 1;
        });
    })
}

/// Several unmappers in one span (each owns a page; the span is empty only
/// when all are unmapped at once, so each free step may meet the others'
/// writers: chains of hand-offs, drains handing on to yet another writer),
/// with a neighbour mprotect and brk on two more threads. No deadlock
/// (watchdog), and no table kept at each quiescent point.
#[test]
fn chains_of_handoffs_between_unmappers() {
    let n = iters();
    let s = seed();
    watchdog::within(120, "chains_of_handoffs_between_unmappers", move || {
        for policy in [FaultPolicy::Speculative, FaultPolicy::MmapLock] {
            let mut mm = AddressSpace::with_policy(policy);
            mm.set_stack_rlimit(P);
            let mm = Arc::new(mm);
            mm.mmap(Some(B - P), P, Prot::READ, FIXED).unwrap();
            mm.set_initial_brk(BRK);
            mm.mmap(Some(ST), P, RW, FIXED | MapFlags::GROWSDOWN)
                .unwrap();
            const U: u64 = 3;
            let parties = (0..U + 1)
                .map(|t| {
                    let mut r = Rng(s ^ (t + 1).wrapping_mul(0x9e37_79b9) | 1);
                    Box::new(move |mm: &AddressSpace, i: u64, _: &AtomicBool| {
                        delay(&mut r, 300);
                        if t < U {
                            // Pages 2 apart: separate VMAs, disjoint locks.
                            unmapper(mm, 2 * t * P + 8 * P, i);
                        } else {
                            neighbour(mm, Kind::Mprotect, i);
                            neighbour(mm, Kind::Brk, i);
                            neighbour(mm, Kind::StackRefused, i);
                        }
                    }) as Party
                })
                .collect();
            let what = format!("chains {policy:?}");
            race(&mm, n, &what, parties, |_, _| {}, |_, _| {});
            round_end(&mm, &what);
        }
    });
}

/// fork'd children: the neighbour forks (a whole-space reader of the
/// parent) and runs the unmapper's pattern in the child meanwhile (the
/// child's own free steps), while the parent's unmapper and an mprotect
/// neighbour race. At each quiescent point: no table kept in the parent,
/// and `check_family` over the parent and the live children.
#[test]
fn handoff_with_forks() {
    let n = iters() / 3;
    let s = seed();
    watchdog::within(120, "handoff_with_forks", move || {
        let mm = space(
            Kind::Mprotect,
            FaultPolicy::Speculative,
            WriterLocking::Range,
        );
        let kids: Arc<std::sync::Mutex<Vec<AddressSpace>>> = Arc::default();
        let mut rn = Rng(s ^ 77 | 1);
        let mprotect: Party = Box::new(move |mm, i, _| {
            delay(&mut rn, 300);
            neighbour(mm, Kind::Mprotect, i);
        });
        let mut rf = Rng(s ^ 99 | 1);
        let k2 = kids.clone();
        let forker: Party = Box::new(move |mm, i, _| {
            delay(&mut rf, 300);
            let c = mm.fork();
            // The child's own span S: map, write, unmap (a free step of
            // the child), and the parent's page (if it was copied)
            // unmapped in the child too.
            unmapper(&c, 32 * P, i);
            let _ = c.munmap(B, 64 * P);
            quiescent(&c, "child");
            let mut k = k2.lock().unwrap();
            k.push(c);
            if k.len() > 3 {
                k.remove(0);
            }
        });
        let mut r = Rng(s | 1);
        race(
            &mm,
            n,
            "fork",
            vec![mprotect, forker],
            |mm, i| {
                delay(&mut r, 300);
                unmapper(mm, [0, P, 2 * P][r.below(3) as usize], i);
            },
            |mm, i| {
                let k = kids.lock().unwrap();
                let mut fam: Vec<&AddressSpace> = vec![mm];
                fam.extend(k.iter());
                if let Err(e) = AddressSpace::check_family(&fam) {
                    panic!("fork iter {i}: check_family: {e}");
                }
            },
        );
        kids.lock().unwrap().clear();
        round_end(&mm, "forks");
    });
}

/// Two unmappers in two spans (`S` and two spans above), and brk, which
/// write-locks the whole space: both free steps may be refused by it in one
/// call, so its drain must run every step on its list, not just one.
#[test]
fn several_spans_handed_to_one_writer() {
    let n = iters();
    let s = seed();
    watchdog::within(120, "several_spans_handed_to_one_writer", move || {
        for policy in [FaultPolicy::Speculative, FaultPolicy::RangeLock] {
            let mm = space(Kind::Brk, policy, WriterLocking::Range);
            let what = format!("several {policy:?}");
            let parties = (0..2u64)
                .map(|t| {
                    let mut r = Rng(s ^ (t + 5).wrapping_mul(0x9e37_79b9) | 1);
                    Box::new(move |mm: &AddressSpace, i: u64, _: &AtomicBool| {
                        delay(&mut r, 300);
                        if t == 0 {
                            neighbour(mm, Kind::Brk, i);
                        } else {
                            unmapper(mm, 2 * SPAN + 5 * P, i);
                        }
                    }) as Party
                })
                .collect();
            let mut r = Rng(s | 1);
            race(
                &mm,
                n,
                &what,
                parties,
                |mm, i| {
                    delay(&mut r, 300);
                    unmapper(mm, 3 * P, i);
                },
                |_, _| {},
            );
            round_end(&mm, &what);
        }
    });
}

/// A munmap queued for (or holding) an extent that reached into `S`
/// through a VMA crossing into it, which the unmapper then removed: the
/// unmapper's free step of `S` is refused by that munmap, whose own free
/// step covers only the spans of its range (below `S`), so its drain must
/// run it. Unmapper: map `[B - P, B + P)`, write and read `B`, unmap it
/// all. Neighbour: munmap `[B - P, B)` (the lower half, or a hole).
#[test]
fn handoff_to_munmap_whose_extent_left_the_span() {
    let n = iters();
    let s = seed();
    watchdog::within(
        120,
        "handoff_to_munmap_whose_extent_left_the_span",
        move || {
            for policy in [FaultPolicy::Speculative, FaultPolicy::MmapLock] {
                let mm = Arc::new(AddressSpace::with_policy(policy));
                let what = format!("munmap-extent {policy:?}");
                let mut rn = Rng(s ^ 31 | 1);
                let lower: Party = Box::new(move |mm, _, done| {
                    delay(&mut rn, 200);
                    repeat_until(done, || mm.munmap(B - P, P).unwrap());
                });
                let mut r = Rng(s | 1);
                race(
                    &mm,
                    n,
                    &what,
                    vec![lower],
                    |mm, i| {
                        delay(&mut r, 300);
                        assert_eq!(mm.mmap(Some(B - P), 2 * P, RW, FIXED), Ok(B - P));
                        mm.write(B, i).unwrap();
                        assert_eq!(mm.read(B), Ok(i));
                        mm.munmap(B - P, 2 * P).unwrap();
                    },
                    |_, _| {},
                );
                round_end(&mm, &what);
            }
        },
    );
}

/// One munmap empties eight spans at once (a 16 MiB VMA with a page
/// written in each span) while brk (the whole space) repeats: all eight
/// free steps may be refused by one brk call and recorded together, so a
/// drain must run every step on its list.
#[test]
fn many_spans_handed_in_one_munmap() {
    const N: u64 = 8;
    const BIG: u64 = B + 4 * SPAN;
    let n = iters() / 3;
    let s = seed();
    watchdog::within(120, "many_spans_handed_in_one_munmap", move || {
        let mm = space(Kind::Brk, FaultPolicy::Speculative, WriterLocking::Range);
        race(
            &mm,
            n,
            "many spans",
            vec![repeating(Kind::Brk, s ^ 41)],
            |mm, i| {
                assert_eq!(mm.mmap(Some(BIG), N * SPAN, RW, FIXED), Ok(BIG));
                for k in 0..N {
                    mm.write(BIG + k * SPAN + 8 * P, i + k).unwrap();
                }
                for k in 0..N {
                    assert_eq!(mm.read(BIG + k * SPAN + 8 * P), Ok(i + k));
                }
                mm.munmap(BIG, N * SPAN).unwrap();
            },
            |_, _| {},
        );
        round_end(&mm, "many spans");
    });
}
