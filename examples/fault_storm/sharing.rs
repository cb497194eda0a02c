//! Cases e and f: writers that share an address space only by accident (the
//! "false conflict" of issue 11), measured against the same threads each in a
//! separate address space, in the same run.

use super::{Args, PAGE, Progress, RW, anon, faulter};
use maple_rcu::mm::{Access, AddressSpace, FaultPolicy, MapFlags, Prot, WriterLocking};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

/// Each thread's window: thread `i` owns `[WINDOWS + i GiB, WINDOWS + (i+1) GiB)`.
const WINDOWS: u64 = 0x1000_0000_0000;
const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
/// Case e's block: 64 pages.
const BLOCK: u64 = 64 * PAGE;
/// Case f: a faulter's stable region, and a thread stack.
const REGION: u64 = 8 * MIB;
const STACK: u64 = 8 * MIB;
/// Case f: live thread stacks before the spawner unmaps the oldest.
const LIVE_STACKS: usize = 8;

fn window(i: usize) -> u64 {
    WINDOWS + i as u64 * GIB
}

/// Maps `len` bytes: FIXED at `at`, or wherever placement puts them.
fn map(mm: &AddressSpace, fixed: bool, at: u64, len: u64) -> u64 {
    if fixed {
        mm.mmap(Some(at), len, RW, anon() | MapFlags::FIXED)
            .unwrap()
    } else {
        mm.mmap(None, len, RW, anon()).unwrap()
    }
}

fn variant(fixed: bool) -> &'static str {
    if fixed { "fixed" } else { "nonfixed" }
}

/// A small xorshift generator (block sizes).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// What one thread of case f does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// mmap a 1–4 MiB block, write its first and last page, munmap it.
    Allocator,
    /// Write-fault every page of a stable 8 MiB region it owns, round and
    /// round, zapping it (madvise DONTNEED) after each pass.
    Faulter,
    /// Spawn a "thread stack": mmap 8 MiB, mprotect its lowest page
    /// PROT_NONE (the guard), write its top page; unmap the oldest of 8.
    Stacks,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Allocator => "allocator",
            Role::Faulter => "faulter",
            Role::Stacks => "stacks",
        }
    }
}

/// Which address space each thread uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sharing {
    /// All threads in one address space.
    Shared,
    /// Every thread in its own (the no-sharing control).
    Separate,
    /// Case f: the faulters share one address space, every writer thread
    /// shares another (the faulters' control: same writers, other space).
    Split,
}

/// Runs `roles` (thread `i` in window `i`) for `secs` and returns each
/// thread's operation count per second. Checks every space afterwards.
fn run(
    policy: FaultPolicy,
    locking: WriterLocking,
    sharing: Sharing,
    fixed: bool,
    roles: &[Role],
    e_loop: bool,
    secs: f64,
) -> Vec<f64> {
    let space_of = |i: usize| match sharing {
        Sharing::Shared => 0,
        Sharing::Separate => i,
        Sharing::Split => usize::from(roles[i] != Role::Faulter),
    };
    let n_spaces = (0..roles.len()).map(space_of).max().unwrap_or(0) + 1;
    let spaces: Vec<Arc<AddressSpace>> = (0..n_spaces)
        .map(|_| Arc::new(AddressSpace::with_locking(policy, locking)))
        .collect();
    // Faulters' regions are mapped before the clock starts.
    let regions: Vec<u64> = roles
        .iter()
        .enumerate()
        .map(|(i, r)| match r {
            Role::Faulter => map(&spaces[space_of(i)], fixed, window(i), REGION),
            _ => 0,
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(roles.len() + 1));
    let handles: Vec<_> = roles
        .iter()
        .enumerate()
        .map(|(i, &role)| {
            let mm = spaces[space_of(i)].clone();
            let (stop, start, region) = (stop.clone(), start.clone(), regions[i]);
            thread::spawn(move || {
                start.wait();
                if e_loop {
                    return block_loop(&mm, fixed, window(i), &stop);
                }
                match role {
                    Role::Faulter => {
                        let pages = (0..REGION / PAGE).map(|p| region + p * PAGE).collect();
                        faulter(&mm, pages, vec![(region, REGION)], &stop).0
                    }
                    Role::Allocator => allocator(&mm, fixed, window(i), i as u64, &stop),
                    Role::Stacks => stacks(&mm, fixed, window(i), &stop),
                }
            })
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let counts: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let elapsed = t0.elapsed().as_secs_f64();
    for mm in &spaces {
        mm.check().expect("address space consistent after the run");
    }
    counts.into_iter().map(|n| n as f64 / elapsed).collect()
}

/// Case e's loop: mmap 64 pages, write every page, munmap. Returns loops.
fn block_loop(mm: &AddressSpace, fixed: bool, win: u64, stop: &AtomicBool) -> u64 {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let a = map(mm, fixed, win, BLOCK);
        for p in 0..BLOCK / PAGE {
            mm.fault(a + p * PAGE, Access::Write).unwrap();
        }
        mm.munmap(a, BLOCK).unwrap();
        n += 1;
    }
    n
}

/// Case f's allocator. Returns blocks allocated and freed.
fn allocator(mm: &AddressSpace, fixed: bool, win: u64, seed: u64, stop: &AtomicBool) -> u64 {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (seed + 1));
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let len = (1 + rng.next() % 4) * MIB;
        let a = map(mm, fixed, win, len);
        mm.fault(a, Access::Write).unwrap();
        mm.fault(a + len - PAGE, Access::Write).unwrap();
        mm.munmap(a, len).unwrap();
        n += 1;
    }
    n
}

/// Case f's stack spawner. Returns stacks created.
fn stacks(mm: &AddressSpace, fixed: bool, win: u64, stop: &AtomicBool) -> u64 {
    let mut live = std::collections::VecDeque::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let slot = n % (LIVE_STACKS as u64 + 1);
        let a = map(mm, fixed, win + slot * STACK, STACK);
        mm.mprotect(a, PAGE, Prot::NONE).unwrap();
        mm.fault(a + STACK - PAGE, Access::Write).unwrap();
        live.push_back(a);
        if live.len() > LIVE_STACKS {
            mm.munmap(live.pop_front().unwrap(), STACK).unwrap();
        }
        n += 1;
    }
    n
}

/// Runs each setup in turn, `secs / SLICE` rounds of `SLICE` s (rotating which
/// goes first), and returns each setup's per-thread rates averaged over
/// its slices. This VM's speed drifts by up to 2× over seconds, so setups
/// run one after the other compare different phases; alternated short
/// slices compare the same ones (as `writer_cost ... alt`).
/// Seconds per slice of [`alternated`]: long enough that a run's setup (new
/// spaces and threads, first faults) stays a few percent of it.
const SLICE: f64 = 0.25;

fn alternated(secs: f64, setups: &[&dyn Fn(f64) -> Vec<f64>]) -> Vec<Vec<f64>> {
    let rounds = ((secs / SLICE).round() as usize).max(1);
    let slice = secs / rounds as f64;
    let mut acc: Vec<Vec<f64>> = vec![Vec::new(); setups.len()];
    for r in 0..rounds {
        for k in 0..setups.len() {
            let i = (k + r) % setups.len();
            let v = setups[i](slice);
            if acc[i].is_empty() {
                acc[i] = v;
            } else {
                for (a, x) in acc[i].iter_mut().zip(v) {
                    *a += x;
                }
            }
        }
    }
    for a in &mut acc {
        for x in a.iter_mut() {
            *x /= rounds as f64;
        }
    }
    acc
}

fn sum(v: &[f64]) -> f64 {
    v.iter().sum()
}

/// Case e: `threads` threads in one space vs one thread vs separate spaces.
pub(super) fn case_e(
    args: &Args,
    lockings: &[WriterLocking],
    threads: usize,
    progress: &mut Progress,
) {
    if !args.json {
        println!(
            "\nfault_storm e: {threads} threads, each loop = mmap 64 pages, write each, munmap, \
             in its own 1 GiB window; {:.1} s per setup, alternated in {SLICE} s slices",
            args.secs
        );
        println!(
            "{:<4} {:<8} {:<7} {:<12} {:>4} {:>10} {:>10} {:>8} {:>11} {:>7}",
            "case",
            "variant",
            "locking",
            "policy",
            "thr",
            "loops/s",
            "1 thr/s",
            "scaling",
            "separate/s",
            "vs sep"
        );
    }
    let roles = vec![Role::Allocator; threads];
    for fixed in args.variants() {
        for &locking in lockings {
            for policy in args.policies() {
                progress.start(&format!("case e {} {locking:?} {policy:?}", variant(fixed)));
                let shared_run =
                    |t: f64| run(policy, locking, Sharing::Shared, fixed, &roles, true, t);
                let one_run = |t: f64| {
                    run(
                        policy,
                        locking,
                        Sharing::Shared,
                        fixed,
                        &roles[..1],
                        true,
                        t,
                    )
                };
                let sep_run =
                    |t: f64| run(policy, locking, Sharing::Separate, fixed, &roles, true, t);
                let r = alternated(args.secs, &[&shared_run, &one_run, &sep_run]);
                let (shared, one, sep) = (sum(&r[0]), sum(&r[1]), sum(&r[2]));
                progress.clear();
                if args.json {
                    println!(
                        "{{\"case\":\"e\",\"policy\":\"{policy:?}\",\"locking\":\"{locking:?}\",\"variant\":\"{}\",\"threads\":{threads},\"loops_per_sec\":{shared:.0},\"one_thread_loops_per_sec\":{one:.0},\"scaling_vs_1thread\":{:.3},\"separate_loops_per_sec\":{sep:.0},\"ratio_vs_separate\":{:.3}}}",
                        variant(fixed),
                        shared / one,
                        shared / sep
                    );
                } else {
                    println!(
                        "{:<4} {:<8} {:<7} {:<12} {:>4} {:>10.0} {:>10.0} {:>7.2}x {:>11.0} {:>6.2}x",
                        "e",
                        variant(fixed),
                        format!("{locking:?}"),
                        format!("{policy:?}"),
                        threads,
                        shared,
                        one,
                        shared / one,
                        sep,
                        shared / sep
                    );
                }
            }
        }
    }
}

/// Case f: the mixed process; per role, shared vs separate spaces, and the
/// faulters vs the same writers in another space.
pub(super) fn case_f(
    args: &Args,
    lockings: &[WriterLocking],
    threads: usize,
    progress: &mut Progress,
) {
    let allocators = ((threads - 1) / 2).max(1);
    let mut roles = vec![Role::Stacks];
    roles.extend(std::iter::repeat_n(Role::Allocator, allocators));
    roles.extend(std::iter::repeat_n(Role::Faulter, threads - 1 - allocators));
    if !args.json {
        println!(
            "\nfault_storm f: {threads} threads = 1 stack spawner + {allocators} allocator(s) \
             (1-4 MiB blocks) + {} faulter(s) (stable 8 MiB region); {:.1} s per setup, \
             alternated in {SLICE} s slices; ops = stacks, blocks or faults",
            threads - 1 - allocators,
            args.secs
        );
        println!(
            "{:<4} {:<8} {:<7} {:<12} {:<9} {:>3} {:>11} {:>11} {:>7} {:>11} {:>8}",
            "case",
            "variant",
            "locking",
            "policy",
            "role",
            "thr",
            "ops/s",
            "separate/s",
            "vs sep",
            "split/s",
            "vs split"
        );
    }
    for fixed in args.variants() {
        for &locking in lockings {
            for policy in args.policies() {
                progress.start(&format!("case f {} {locking:?} {policy:?}", variant(fixed)));
                let roles = &roles;
                let setup = |sharing: Sharing| {
                    move |t: f64| run(policy, locking, sharing, fixed, roles, false, t)
                };
                let (a, b, c) = (
                    setup(Sharing::Shared),
                    setup(Sharing::Separate),
                    setup(Sharing::Split),
                );
                let mut r = alternated(args.secs, &[&a, &b, &c]).into_iter();
                let (shared, sep, split) = (
                    r.next().unwrap_or_default(),
                    r.next().unwrap_or_default(),
                    r.next().unwrap_or_default(),
                );
                progress.clear();
                for role in [Role::Stacks, Role::Allocator, Role::Faulter] {
                    let of = |v: &[f64]| -> f64 {
                        roles
                            .iter()
                            .zip(v)
                            .filter(|(r, _)| **r == role)
                            .map(|(_, x)| x)
                            .sum()
                    };
                    let n = roles.iter().filter(|r| **r == role).count();
                    let (a, b, c) = (of(&shared), of(&sep), of(&split));
                    if args.json {
                        println!(
                            "{{\"case\":\"f\",\"policy\":\"{policy:?}\",\"locking\":\"{locking:?}\",\"variant\":\"{}\",\"role\":\"{}\",\"threads\":{n},\"ops_per_sec\":{a:.0},\"separate_ops_per_sec\":{b:.0},\"ratio_vs_separate\":{:.3},\"split_ops_per_sec\":{c:.0},\"ratio_vs_split\":{:.3}}}",
                            variant(fixed),
                            role.name(),
                            a / b,
                            a / c
                        );
                    } else {
                        println!(
                            "{:<4} {:<8} {:<7} {:<12} {:<9} {:>3} {:>11.0} {:>11.0} {:>6.2}x {:>11.0} {:>7.2}x",
                            "f",
                            variant(fixed),
                            format!("{locking:?}"),
                            format!("{policy:?}"),
                            role.name(),
                            n,
                            a,
                            b,
                            a / b,
                            c,
                            a / c
                        );
                    }
                }
            }
        }
    }
}
