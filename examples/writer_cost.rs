//! Writer cost (issue 11's "≤ 1.1× the global-lock path"): `loops` rounds
//! of mmap(64 pages) → write every page → munmap, FIXED or placed, under
//! `WriterLocking::Range` or `Global`, by `threads` threads (default 1) in
//! one address space, thread `i` in its own 1 GiB window. Meant for
//! `valgrind --tool=callgrind` (instruction counts do not depend on load)
//! with one thread, and for `perf record` with two:
//!
//! ```text
//! cargo build --release --example writer_cost
//! valgrind --tool=callgrind target/release/examples/writer_cost range fixed 2000
//! perf record -g target/release/examples/writer_cost range fixed 200000 2
//! target/release/examples/writer_cost range fixed 200000 2 sep   # separate spaces
//! target/release/examples/writer_cost range fixed 200000 2 one rangelock   # fault policy
//! ```
//!
//! The fifth argument is `sep` (separate spaces), `alt` (both, alternated:
//! see below) or anything else (`one`: one shared space); the sixth the
//! fault policy, `speculative` (default),
//! `pervma`, `mmaplock` or `rangelock`; the seventh the pages faulted per
//! loop (0 to 64, default 64).
//!
//! `alt` runs the shared space and the separate spaces in turn, `ALT_ROUNDS`
//! rounds (default 20) of `loops / rounds` loops each, in one process with
//! the spaces kept warm, and prints both times and their ratio (separate
//! time ÷ shared time, the issue's "vs separate"), overall and the median
//! of the rounds. This VM's speed drifts by up to 2× over minutes; two runs
//! one after the other compare different phases, alternated rounds of a few
//! milliseconds compare the same ones. Every setup keeps its threads (or
//! processes) for the whole run, and a round's time is the longest time a
//! worker measured around its own loops (since the eleventh session: before,
//! threads were spawned every round and timed from outside, which charged
//! each round their start-up and wake-up). `ALT_FRESH=1` makes new spaces
//! every round (as fault_storm's slices do). `ALT_PROC=1` adds a third
//! setup to every round: each thread's loops run in its own *process*
//! (this binary re-executed as a child, driven over its stdin/stdout), the
//! no-sharing ideal the issue names. Separate spaces in one process still
//! share the allocator, the process's `membarrier`s (every grace period of
//! any space interrupts every CPU running a thread of the process) and the
//! caches of whatever the runtime keeps per process; separate processes
//! share only the machine. `PHASES=1` prints, per thread
//! (and per round with `alt`), the wall time of mmap, the faults and munmap
//! per loop, and the thread's CPU and run-queue time from
//! `/proc/thread-self/schedstat`: on CPU or waiting. `PREFILL=N` maps N
//! one-page background VMAs into every space first (a deeper tree, as in a
//! real process).
use maple_rcu::mm::{Access, AddressSpace, FaultPolicy, MapFlags, Prot, WriterLocking};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.get(1).map(String::as_str) == Some(CHILD) {
        return child(&a[2..]);
    }
    let locking = match a.get(1).map(String::as_str) {
        Some("global") => WriterLocking::Global,
        _ => WriterLocking::Range,
    };
    let fixed = a.get(2).map(String::as_str) != Some("placed");
    let loops: u64 = a.get(3).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let threads: u64 = a.get(4).and_then(|s| s.parse().ok()).unwrap_or(1).max(1);
    // `sep`: each thread in its own address space (the no-sharing control).
    let sep = a.get(5).map(String::as_str) == Some("sep");
    let policy = match a.get(6).map(String::as_str) {
        Some("pervma") => FaultPolicy::PerVmaLock,
        Some("mmaplock") => FaultPolicy::MmapLock,
        Some("rangelock") => FaultPolicy::RangeLock,
        _ => FaultPolicy::Speculative,
    };
    // Pages write-faulted per loop (default all 64): 0 leaves only the
    // writers, which tells a fault-path cost from a writer-path one.
    let faults: u64 = a.get(7).and_then(|s| s.parse().ok()).unwrap_or(64);
    if a.get(5).map(String::as_str) == Some("alt") {
        return alternate(locking, policy, fixed, loops, threads, faults);
    }
    let spaces: Vec<AddressSpace> = (0..if sep { threads } else { 1 })
        .map(|_| AddressSpace::with_locking(policy, locking))
        .collect();
    spaces.iter().for_each(prefill);
    let t = std::time::Instant::now();
    std::thread::scope(|s| {
        for i in 0..threads {
            let mm = &spaces[if sep { i as usize } else { 0 }];
            s.spawn(move || run(mm, fixed, 0x4000_0000 + (i << 30), loops, faults));
        }
    });
    let dt = t.elapsed();
    println!(
        "{locking:?} {policy:?} fixed={fixed} threads={threads} sep={sep} faults={faults}: {:.0} ns/loop per thread",
        dt.as_nanos() as f64 / loops as f64
    );
    // Where the shared space made threads wait or retry (per thread-loop):
    // a fault retried (it met a dead VMA: a writer replaced or killed it),
    // fell back to the page read lock (and so waited for the writer), or a
    // placement waited for a held area.
    let n = (loops * threads) as f64;
    let (mut retries, mut fallbacks, mut place_waits) = (0, 0, 0);
    for mm in &spaces {
        let st = mm.stats();
        retries += st.retries;
        fallbacks += st.fallbacks;
        place_waits += st.place_waits;
    }
    println!(
        "per loop: {:.3} fault retries, {:.3} fallbacks, {:.4} placement waits",
        retries as f64 / n,
        fallbacks as f64 / n,
        place_waits as f64 / n
    );
}

/// `PREFILL=N`: N one-page VMAs (one-page holes between them, so none
/// merge) below, between and above the threads' windows, as a process's
/// other mappings: the tree is then several levels deep instead of one
/// leaf. Every space of a run gets the same.
fn prefill(mm: &AddressSpace) {
    let n: u64 = std::env::var("PREFILL")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let anon = MapFlags::PRIVATE | MapFlags::ANONYMOUS | MapFlags::FIXED;
    for base in [0x1000_0000u64, 0x7000_0000, 0xb000_0000, 0xf000_0000] {
        for k in 0..n / 4 {
            mm.mmap(Some(base + k * 0x2000), 4096, Prot::READ, anon)
                .unwrap();
        }
    }
}

fn run(mm: &AddressSpace, fixed: bool, window: u64, loops: u64, faults: u64) {
    let rw = Prot::READ | Prot::WRITE;
    let anon = MapFlags::PRIVATE | MapFlags::ANONYMOUS;
    let pages = 64u64;
    // `PHASES=1`: per thread, the wall time of each phase of a loop and
    // the thread's CPU and run-queue time (/proc/thread-self/schedstat),
    // so that waits (off CPU) tell apart from work (on CPU).
    let phases = std::env::var("PHASES").is_ok_and(|v| v == "1");
    let sched0 = phases.then(schedstat);
    let mut ns = [0u128; 3];
    let mut t = std::time::Instant::now();
    let t0 = t;
    let mut lap = |i: usize| {
        if phases {
            let now = std::time::Instant::now();
            ns[i] += (now - t).as_nanos();
            t = now;
        }
    };
    for _ in 0..loops {
        let addr = if fixed {
            mm.mmap(Some(window), pages * 4096, rw, anon | MapFlags::FIXED)
        } else {
            mm.mmap(None, pages * 4096, rw, anon)
        }
        .unwrap();
        lap(0);
        for p in 0..faults.min(pages) {
            mm.fault(addr + p * 4096, Access::Write).unwrap();
        }
        lap(1);
        mm.munmap(addr, pages * 4096).unwrap();
        lap(2);
    }
    if let Some((cpu0, rq0)) = sched0 {
        let (cpu1, rq1) = schedstat();
        let l = u128::from(loops.max(1));
        eprintln!(
            "{}: per loop mmap {} faults {} munmap {} ns; wall {} cpu {} runqueue {} ns",
            std::thread::current().name().unwrap_or("-"),
            ns[0] / l,
            ns[1] / l,
            ns[2] / l,
            t0.elapsed().as_nanos() / l,
            u128::from(cpu1 - cpu0) / l,
            u128::from(rq1 - rq0) / l,
        );
    }
}

/// This thread's time on CPU and waiting on a run queue, in ns.
fn schedstat() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let mut f = s.split_whitespace().map(|x| x.parse().unwrap_or(0));
    (f.next().unwrap_or(0), f.next().unwrap_or(0))
}

/// Persistent worker threads of one `alt` setup, named `one` or `sep`, so
/// that `perf report --sort comm,symbol` of an `alt` run splits the setups.
/// Kept for the whole run, as the `ALT_PROC` children are: threads spawned
/// afresh every round would pay their first-use costs (thread-local slots,
/// a new frame-table shard, a malloc arena) in every round, in one process
/// only.
struct Crew {
    go: Vec<std::sync::mpsc::Sender<(std::sync::Arc<AddressSpace>, u64)>>,
    done: std::sync::mpsc::Receiver<std::time::Duration>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Crew {
    fn new(name: &str, threads: u64, fixed: bool, faults: u64) -> Crew {
        let (tx, done) = std::sync::mpsc::channel();
        let (mut go, mut workers) = (Vec::new(), Vec::new());
        for i in 0..threads {
            let (g, rx) = std::sync::mpsc::channel::<(std::sync::Arc<AddressSpace>, u64)>();
            let tx = tx.clone();
            go.push(g);
            workers.push(
                std::thread::Builder::new()
                    .name(name.into())
                    .spawn(move || {
                        for (mm, loops) in rx {
                            let t = std::time::Instant::now();
                            run(&mm, fixed, 0x4000_0000 + (i << 30), loops, faults);
                            tx.send(t.elapsed()).expect("main alive");
                        }
                    })
                    .expect("spawn"),
            );
        }
        Crew { go, done, workers }
    }

    /// Worker `i` runs `loops` loops in `spaces[i % spaces.len()]`, all at
    /// once; returns the longest time a worker measured around its own
    /// loops (the concurrent phase, without the wake-up of a sleeping
    /// worker, up to 0.5 ms on this VM: measured as the children are).
    fn round(&self, spaces: &[std::sync::Arc<AddressSpace>], loops: u64) -> std::time::Duration {
        for (i, g) in self.go.iter().enumerate() {
            g.send((spaces[i % spaces.len()].clone(), loops))
                .expect("worker alive");
        }
        (0..self.go.len())
            .map(|_| self.done.recv().expect("worker alive"))
            .max()
            .unwrap_or_default()
    }
}

impl Drop for Crew {
    fn drop(&mut self) {
        self.go.clear(); // the workers' loops end
        for w in self.workers.drain(..) {
            let ok = w.join().is_ok();
            assert!(ok || std::thread::panicking(), "worker panicked");
        }
    }
}

/// The `alt` mode: shared and separate spaces in alternated short rounds.
fn alternate(
    locking: WriterLocking,
    policy: FaultPolicy,
    fixed: bool,
    loops: u64,
    threads: u64,
    faults: u64,
) {
    let rounds: u64 = std::env::var("ALT_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
        .max(1);
    let per = (loops / rounds).max(1);
    // `ALT_FRESH=1`: new spaces every round (as fault_storm's slices).
    let fresh = std::env::var("ALT_FRESH").is_ok_and(|v| v == "1");
    let space = || {
        let mm = std::sync::Arc::new(AddressSpace::with_locking(policy, locking));
        prefill(&mm);
        mm
    };
    let mut one = vec![space()];
    let mut sep: Vec<_> = (0..threads).map(|_| space()).collect();
    let (crew_one, crew_sep) = (
        Crew::new("one", threads, fixed, faults),
        Crew::new("sep", threads, fixed, faults),
    );
    let (mut t_one, mut t_sep, mut t_proc) = (0f64, 0f64, 0f64);
    let mut ratios = Vec::new();
    let mut procs = std::env::var("ALT_PROC")
        .is_ok_and(|v| v == "1")
        .then(|| Children::spawn(locking, policy, fixed, threads, faults));
    for r in 0..rounds {
        if fresh && r > 0 {
            one = vec![space()];
            sep = (0..threads).map(|_| space()).collect();
        }
        // Alternate which goes first, so neither always follows the other.
        let (a, b) = if r % 2 == 0 {
            let a = crew_one.round(&one, per);
            (a, crew_sep.round(&sep, per))
        } else {
            let b = crew_sep.round(&sep, per);
            (crew_one.round(&one, per), b)
        };
        t_one += a.as_secs_f64();
        t_sep += b.as_secs_f64();
        // The processes run after both; what precedes them alternates.
        if let Some(c) = procs.as_mut() {
            t_proc += c.round(per).as_secs_f64();
        }
        ratios.push(b.as_secs_f64() / a.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    let n = (per * rounds) as f64;
    println!(
        "{locking:?} {policy:?} fixed={fixed} threads={threads} faults={faults} alt x{rounds}: \
         one {:.0} ns/loop, sep {:.0} ns/loop, sep/one {:.3} (median round {:.3}, \
         quartiles {:.3}-{:.3})",
        t_one * 1e9 / n,
        t_sep * 1e9 / n,
        t_sep / t_one,
        ratios[ratios.len() / 2],
        ratios[ratios.len() / 4],
        ratios[ratios.len() * 3 / 4],
    );
    if procs.is_some() {
        println!(
            "  separate processes: {:.0} ns/loop, proc/one {:.3}, proc/sep {:.3}",
            t_proc * 1e9 / n,
            t_proc / t_one,
            t_proc / t_sep
        );
    }
    drop((crew_one, crew_sep));
    for mm in one.iter().chain(&sep) {
        mm.check().expect("address space consistent after the run");
    }
}

/// The first argument that makes this binary an `ALT_PROC` child.
const CHILD: &str = "--alt-proc-child";

/// `ALT_PROC` children: one process per thread, each with its own space.
struct Children(Vec<std::process::Child>);

impl Children {
    fn spawn(
        locking: WriterLocking,
        policy: FaultPolicy,
        fixed: bool,
        threads: u64,
        faults: u64,
    ) -> Children {
        use std::process::{Command, Stdio};
        let exe = std::env::current_exe().expect("own path");
        let kids = (0..threads)
            .map(|i| {
                Command::new(&exe)
                    .args([
                        CHILD,
                        if locking == WriterLocking::Global {
                            "global"
                        } else {
                            "range"
                        },
                        if fixed { "fixed" } else { "placed" },
                        &format!("{policy:?}"),
                        &faults.to_string(),
                        &i.to_string(),
                    ])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("spawn a child process")
            })
            .collect();
        Children(kids)
    }

    /// Every child runs `loops` loops at once; returns the longest time a
    /// child measured around its own loops (the wall time of the
    /// concurrent phase, without the pipe round trip and the wake-up of a
    /// sleeping child, which cost up to 0.5 ms on this VM).
    fn round(&mut self, loops: u64) -> std::time::Duration {
        use std::io::{BufRead, BufReader, Write};
        for c in &mut self.0 {
            let w = c.stdin.as_mut().expect("piped");
            writeln!(w, "{loops}").expect("child alive");
            w.flush().expect("child alive");
        }
        let mut longest = std::time::Duration::ZERO;
        for c in &mut self.0 {
            let mut line = String::new();
            BufReader::new(c.stdout.as_mut().expect("piped"))
                .read_line(&mut line)
                .expect("child reply");
            let ns: u64 = line
                .trim()
                .strip_prefix("done ")
                .and_then(|n| n.parse().ok())
                .expect("child failed");
            longest = longest.max(std::time::Duration::from_nanos(ns));
        }
        longest
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            drop(c.stdin.take()); // EOF: the child checks its space and exits
            let ok = c.wait().is_ok_and(|s| s.success());
            assert!(ok || std::thread::panicking(), "child failed");
        }
    }
}

/// An `ALT_PROC` child: one space, thread `i`'s window; runs the loops
/// each line of stdin asks for and answers `done` and their time in ns,
/// until EOF.
fn child(a: &[String]) {
    use std::io::{BufRead, Write};
    let locking = match a[0].as_str() {
        "global" => WriterLocking::Global,
        _ => WriterLocking::Range,
    };
    let fixed = a[1] == "fixed";
    let policy = match a[2].as_str() {
        "PerVmaLock" => FaultPolicy::PerVmaLock,
        "MmapLock" => FaultPolicy::MmapLock,
        "RangeLock" => FaultPolicy::RangeLock,
        _ => FaultPolicy::Speculative,
    };
    let faults: u64 = a[3].parse().expect("faults");
    let i: u64 = a[4].parse().expect("index");
    let mm = AddressSpace::with_locking(policy, locking);
    prefill(&mm);
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let loops: u64 = line.expect("stdin").trim().parse().expect("loops");
        let t = std::time::Instant::now();
        run(&mm, fixed, 0x4000_0000 + (i << 30), loops, faults);
        let ns = t.elapsed().as_nanos();
        writeln!(out, "done {ns}")
            .and_then(|()| out.flush())
            .expect("stdout");
    }
    mm.check().expect("address space consistent after the run");
}
