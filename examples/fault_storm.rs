//! The main job: a many-threaded process in which fault threads touch pages
//! while writer threads mmap / munmap / mprotect elsewhere, under each
//! `FaultPolicy` and each `WriterLocking`. In cases a–c every policy is
//! OFFERED the same write load (each writer is due one operation per
//! `--writer-period-us`); how much of it a writer ACHIEVES depends on the
//! policy (under `MmapLock` and `PerVmaLock` it waits for faults), so every
//! row prints the achieved writer ops/s next to the offered rate.
//!
//! ```text
//! cargo run --release --example fault_storm            # cases a–f, defaults
//! cargo run --release --example fault_storm -- --case b --secs 5 --threads 8 --json
//! cargo run --release --example fault_storm -- --case e --threads 2 --locking global
//! ```
//!
//! Cases (also in `--help`):
//! * `a` — each fault thread in its own region, writer churn (mmap + munmap) in other regions;
//! * `b` — all fault threads in ONE large shared VMA, each in its own 2 MiB chunks (they share
//!   the VMA, not a page-table lock: the cache-line-bouncing case of per-VMA reference counts);
//! * `c` — mprotect storm on the neighbours of the faulted VMAs (splits and merges next door);
//! * `d` — no writers: the pure fault-path cost of each policy;
//! * `e` — N threads each loop mmap(64 pages) → write-fault every page → munmap in its own 1 GiB
//!   window (`fixed`: MAP_FIXED in the window; `nonfixed`: placement puts the blocks next to each
//!   other, so they merge and range locks spread to neighbours). Reports loops/s, scaling against
//!   one thread, and the ratio against the same threads each in a separate address space;
//! * `f` — the mixed process: allocators mmap/munmap 1–4 MiB blocks, faulters fault a stable
//!   region they own, one thread spawns "thread stacks" (mmap 8 MiB + a PROT_NONE guard page,
//!   unmapped later). Reports each role's ops/s against every thread in its own address space,
//!   and the faulters' rate against the same writers running in another address space.

use clap::{Parser, ValueEnum};
use maple_rcu::mm::{Access, AddressSpace, FaultPolicy, MapFlags, MmStats, Prot, WriterLocking};
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const PAGE: u64 = 4096;
const CHUNK: u64 = 2 << 20;
/// Pages each fault thread cycles through before zapping its range and starting over.
const REGION_PAGES: u64 = 16 * 512;

/// The cases (`--case`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Case {
    /// Each fault thread in its own region; writers mmap + munmap 16-page
    /// mappings in other regions at the offered rate.
    A,
    /// All fault threads in ONE shared VMA, each in its own 2 MiB chunks
    /// (per-VMA reference counts bounce); writers as in a.
    B,
    /// Writers mprotect the neighbour pages of the faulted VMAs back and
    /// forth (splits and merges next door).
    C,
    /// No writers: the pure fault-path cost of each policy.
    D,
    /// N threads each loop mmap(64 pages) → write every page → munmap in its
    /// own 1 GiB window (FIXED and non-FIXED); vs one thread and vs separate
    /// address spaces.
    E,
    /// Mixed: big-block allocators (mmap/munmap 1–4 MiB), faulters on a
    /// stable region, one thread-stack spawner (8 MiB + guard page); each
    /// role vs separate address spaces.
    F,
    /// Cases a to f in turn.
    All,
}

/// Which writer locking to run (`--locking`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Locking {
    /// Writers lock the ranges they change (`WriterLocking::Range`).
    Range,
    /// Every writer locks the whole address space (`WriterLocking::Global`).
    Global,
    /// Each case under both, global first.
    Both,
}

/// Which placement variants cases e and f run (`--variant`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Variant {
    /// MAP_FIXED in each thread's window.
    Fixed,
    /// Placement picks the address (blocks land next to each other).
    Nonfixed,
    /// Both, FIXED first.
    Both,
}

/// Which fault policies to run (`--policy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PolicyArg {
    /// `FaultPolicy::MmapLock`.
    Mmaplock,
    /// `FaultPolicy::RangeLock`.
    Rangelock,
    /// `FaultPolicy::PerVmaLock`.
    Pervmalock,
    /// `FaultPolicy::Speculative`.
    Speculative,
    /// All four.
    All,
}

/// A run length in seconds: finite and positive.
fn parse_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number: {e}"))?;
    if v.is_finite() && v > 0.0 && v <= MAX_SECS {
        Ok(v)
    } else {
        Err(format!(
            "must be a positive number of seconds, at most {MAX_SECS} (a day), got {s}"
        ))
    }
}

/// The longest `--secs`: a day (larger values overflowed `Duration`).
const MAX_SECS: f64 = 86_400.0;
/// The most `--threads`: every thread is an OS thread with its own stack.
const MAX_THREADS: usize = 1024;

fn parse_threads(s: &str) -> Result<usize, String> {
    let v: usize = s
        .parse()
        .map_err(|e| format!("{s:?} is not a thread count: {e}"))?;
    if (1..=MAX_THREADS).contains(&v) {
        Ok(v)
    } else {
        Err(format!("must be 1 to {MAX_THREADS}, got {s}"))
    }
}

/// Fault scalability of the four fault policies under a fixed offered
/// write load (cases a–d), and writer scalability under range locks versus
/// the global writer lock (cases e–f).
#[derive(Parser, Debug)]
struct Args {
    /// Total threads (fault threads + writer threads); default 2 × available
    /// cores for cases a–d, the number of cores for e–f; 1 to 1024 (cases
    /// a–d use at least 2).
    #[arg(long, value_parser = parse_threads)]
    threads: Option<usize>,
    /// Seconds per run (positive). Cases e and f give each setup of a row
    /// this long, alternated with the others in 0.25 s slices.
    #[arg(long, default_value_t = 3.0, value_parser = parse_secs, allow_negative_numbers = true)]
    secs: f64,
    /// Which case to run.
    #[arg(long, value_enum, default_value = "all")]
    case: Case,
    /// Writer locking of the address spaces: range, global or both.
    #[arg(long, value_enum, default_value = "both")]
    locking: Locking,
    /// Cases e and f: FIXED windows, non-FIXED placement, or both.
    #[arg(long, value_enum, default_value = "both")]
    variant: Variant,
    /// Cases e and f: only this fault policy.
    #[arg(long, value_enum, default_value = "all")]
    policy: PolicyArg,
    /// Microseconds between two operations of one writer thread (at least 1).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    writer_period_us: u64,
    /// Print one JSON object per row instead of the table.
    #[arg(long)]
    json: bool,
    /// Also write a bar chart of faults/s per case and policy to this SVG file.
    #[arg(long)]
    svg: Option<std::path::PathBuf>,
}

/// One fault thread's pages, and the ranges it zaps after each pass.
type Work = (Vec<u64>, Vec<(u64, u64)>);

struct Row {
    case: char,
    policy: FaultPolicy,
    locking: WriterLocking,
    faults_per_sec: f64,
    writer_ops_per_sec: f64,
    p50_ns: u64,
    p99_ns: u64,
    retries: u64,
    fallbacks: u64,
    ratio: f64,
}

fn anon() -> MapFlags {
    MapFlags::PRIVATE | MapFlags::ANONYMOUS
}

const RW: Prot = Prot::READ.union(Prot::WRITE);

/// One fault thread: touches `pages` (addresses) round and round, zapping its
/// own pages (madvise DontNeed) after each pass so that faults keep
/// installing frames. Returns (faults, sampled latencies in ns).
fn faulter(
    mm: &AddressSpace,
    pages: Vec<u64>,
    zap: Vec<(u64, u64)>,
    stop: &AtomicBool,
) -> (u64, Vec<u32>) {
    let mut lat = Vec::with_capacity(1 << 16);
    let mut n = 0u64;
    'outer: loop {
        for (i, &a) in pages.iter().enumerate() {
            if i % 64 == 0 && stop.load(Ordering::Relaxed) {
                break 'outer;
            }
            if n.is_multiple_of(16) {
                let t = Instant::now();
                mm.fault(a, Access::Write)
                    .expect("fault in a mapped region");
                lat.push(t.elapsed().as_nanos().min(u32::MAX as u128) as u32);
            } else {
                mm.fault(a, Access::Write)
                    .expect("fault in a mapped region");
            }
            n += 1;
        }
        for &(a, len) in &zap {
            mm.madvise(a, len, maple_rcu::mm::Advice::DontNeed).unwrap();
        }
    }
    (n, lat)
}

/// One writer thread at a fixed average rate: `op(k)` is its k-th
/// operation, due at `start + k * period`. The writer performs every due
/// operation, then sleeps ~1 ms, so it uses only the CPU its operations need.
/// (Spinning to each 20 µs slot would burn a core share the fault threads
/// need on an oversubscribed machine; yielding would cap it at one
/// operation per scheduler tick.) Operations therefore come in bursts of about
/// 1 ms / period. After a stall of more than 100 periods it does not catch up.
fn writer(stop: &AtomicBool, period: Duration, ops: &AtomicU64, mut op: impl FnMut(u64)) {
    let mut due = Instant::now();
    let mut k = 0;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now > due + period * 100 {
            due = now;
        }
        while due <= now && !stop.load(Ordering::Relaxed) {
            op(k);
            k += 1;
            ops.fetch_add(1, Ordering::Relaxed);
            due += period;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// Writer threads of case a–d with `threads` threads in all.
fn writers(case: char, threads: usize) -> usize {
    if case == 'd' { 0 } else { (threads / 4).max(1) }
}

fn run_case(
    case: char,
    policy: FaultPolicy,
    locking: WriterLocking,
    args: &Args,
    threads: usize,
) -> Row {
    let mm = Arc::new(AddressSpace::with_locking(policy, locking));
    let writers = writers(case, threads);
    let faulters = (threads - writers).max(1);
    let stop = Arc::new(AtomicBool::new(false));
    let wops = Arc::new(AtomicU64::new(0));
    let period = Duration::from_micros(args.writer_period_us);

    // Fault regions.
    let mut work: Vec<Work> = Vec::new();
    let mut neighbours = Vec::new();
    match case {
        'b' => {
            let chunks_per = REGION_PAGES * PAGE / CHUNK;
            let len = faulters as u64 * chunks_per * CHUNK;
            let base = mm.mmap(None, len, RW, anon()).unwrap();
            for t in 0..faulters as u64 {
                let mut pages = Vec::new();
                let mut zap = Vec::new();
                for c in 0..chunks_per {
                    let chunk = base + (c * faulters as u64 + t) * CHUNK;
                    pages.extend((0..CHUNK / PAGE).map(|p| chunk + p * PAGE));
                    zap.push((chunk, CHUNK));
                }
                work.push((pages, zap));
            }
        }
        _ => {
            for _ in 0..faulters {
                let len = REGION_PAGES * PAGE;
                // For case c, a PROT_READ neighbour page on each side: the
                // writers flip them to RW (merging into the faulted VMA) and back.
                let a = mm.mmap(None, len + 2 * PAGE, RW, anon()).unwrap();
                if case == 'c' {
                    mm.mprotect(a, PAGE, Prot::READ).unwrap();
                    mm.mprotect(a + len + PAGE, PAGE, Prot::READ).unwrap();
                    neighbours.push(a);
                    neighbours.push(a + len + PAGE);
                }
                let base = a + PAGE;
                work.push((
                    (0..REGION_PAGES).map(|p| base + p * PAGE).collect(),
                    vec![(base, len)],
                ));
            }
        }
    }
    let before = mm.stats();
    let t0 = Instant::now();
    let handles: Vec<_> = work
        .into_iter()
        .map(|(pages, zap)| {
            let (mm, stop) = (mm.clone(), stop.clone());
            thread::spawn(move || faulter(&mm, pages, zap, &stop))
        })
        .collect();
    let whandles: Vec<_> = (0..writers)
        .map(|w| {
            let (mm, stop, wops, neighbours) =
                (mm.clone(), stop.clone(), wops.clone(), neighbours.clone());
            thread::spawn(move || {
                let mut live: std::collections::VecDeque<u64> = Default::default();
                writer(&stop, period, &wops, |k| match case {
                    'c' => {
                        let i = (k as usize * writers + w) % neighbours.len();
                        let p = if (k / neighbours.len() as u64).is_multiple_of(2) {
                            RW
                        } else {
                            Prot::READ
                        };
                        mm.mprotect(neighbours[i], PAGE, p).unwrap();
                    }
                    _ => {
                        live.push_back(mm.mmap(None, 16 * PAGE, RW, anon()).unwrap());
                        if live.len() > 64 {
                            mm.munmap(live.pop_front().unwrap(), 16 * PAGE).unwrap();
                        }
                    }
                });
            })
        })
        .collect();
    thread::sleep(Duration::from_secs_f64(args.secs));
    stop.store(true, Ordering::Relaxed);
    let mut faults = 0;
    let mut lat = Vec::new();
    for h in handles {
        let (n, l) = h.join().unwrap();
        faults += n;
        lat.extend(l);
    }
    for h in whandles {
        h.join().unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    let after = mm.stats();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as u64
    };
    let d = |f: fn(&MmStats) -> u64| f(&after) - f(&before);
    Row {
        case,
        policy,
        locking,
        faults_per_sec: faults as f64 / secs,
        writer_ops_per_sec: wops.load(Ordering::Relaxed) as f64 / secs,
        p50_ns: pct(0.50),
        p99_ns: pct(0.99),
        retries: d(|s| s.retries),
        fallbacks: d(|s| s.fallbacks),
        ratio: 1.0,
    }
}

/// Progress on stderr, only when it is a terminal (no escape codes in logs).
struct Progress {
    on: bool,
    done: usize,
    total: usize,
}

impl Progress {
    fn new(json: bool, total: usize) -> Progress {
        Progress {
            on: !json && std::io::stderr().is_terminal(),
            done: 0,
            total,
        }
    }

    fn start(&mut self, what: &str) {
        self.done += 1;
        if self.on {
            eprint!("\r\x1b[K[{}/{}] {what}...", self.done, self.total);
            let _ = std::io::stderr().flush();
        }
    }

    fn clear(&self) {
        if self.on {
            eprint!("\r\x1b[K");
            let _ = std::io::stderr().flush();
        }
    }
}

const POLICIES: [FaultPolicy; 4] = [
    FaultPolicy::MmapLock,
    FaultPolicy::RangeLock,
    FaultPolicy::PerVmaLock,
    FaultPolicy::Speculative,
];

impl Args {
    /// Cases e and f: the placement variants to run (true = FIXED).
    fn variants(&self) -> Vec<bool> {
        match self.variant {
            Variant::Fixed => vec![true],
            Variant::Nonfixed => vec![false],
            Variant::Both => vec![true, false],
        }
    }

    /// Cases e and f: the fault policies to run.
    fn policies(&self) -> Vec<FaultPolicy> {
        let one = match self.policy {
            PolicyArg::Mmaplock => FaultPolicy::MmapLock,
            PolicyArg::Rangelock => FaultPolicy::RangeLock,
            PolicyArg::Pervmalock => FaultPolicy::PerVmaLock,
            PolicyArg::Speculative => FaultPolicy::Speculative,
            PolicyArg::All => return POLICIES.to_vec(),
        };
        vec![one]
    }
}

fn main() {
    let args = Args::parse();
    let cores = thread::available_parallelism().map_or(2, |n| n.get());
    let threads = args.threads.unwrap_or(2 * cores).max(2);
    let cases: Vec<char> = match args.case {
        Case::A => vec!['a'],
        Case::B => vec!['b'],
        Case::C => vec!['c'],
        Case::D => vec!['d'],
        Case::E => vec!['e'],
        Case::F => vec!['f'],
        Case::All => vec!['a', 'b', 'c', 'd', 'e', 'f'],
    };
    let lockings: Vec<WriterLocking> = match args.locking {
        Locking::Range => vec![WriterLocking::Range],
        Locking::Global => vec![WriterLocking::Global],
        Locking::Both => vec![WriterLocking::Global, WriterLocking::Range],
    };
    let storm: Vec<char> = cases.iter().copied().filter(|c| *c <= 'd').collect();
    let total = lockings.len()
        * (POLICIES.len() * storm.len()
            + args.policies().len()
                * args.variants().len()
                * cases.iter().filter(|c| **c > 'd').count());
    let mut progress = Progress::new(args.json, total);
    let mut rows = Vec::new();
    if !storm.is_empty() {
        storm_cases(
            &args,
            &storm,
            &lockings,
            threads,
            cores,
            &mut progress,
            &mut rows,
        );
    }
    let wthreads = args.threads.unwrap_or(cores).max(1);
    if cases.contains(&'e') {
        sharing::case_e(&args, &lockings, wthreads, &mut progress);
    }
    if cases.contains(&'f') {
        sharing::case_f(&args, &lockings, wthreads.max(3), &mut progress);
    }
    if let Some(path) = &args.svg {
        let first: Vec<&Row> = rows.iter().filter(|r| r.locking == lockings[0]).collect();
        match chart(path, &first, threads, lockings[0]) {
            Ok(()) => eprintln!("chart written to {}", path.display()),
            Err(e) => eprintln!("could not write {}: {e}", path.display()),
        }
    }
}

/// Cases a–d: one row per case, locking and policy.
fn storm_cases(
    args: &Args,
    cases: &[char],
    lockings: &[WriterLocking],
    threads: usize,
    cores: usize,
    progress: &mut Progress,
    rows: &mut Vec<Row>,
) {
    let target = 1e6 / args.writer_period_us.max(1) as f64;
    if !args.json {
        println!(
            "fault_storm a-d: {threads} threads ({cores} cores), {:.1} s per run, \
             offered write load: 1 op / {} µs per writer ({target:.0} ops/s each; \
             wr ops/s is what the writers achieved)",
            args.secs, args.writer_period_us
        );
        println!(
            "{:<4} {:<7} {:<12} {:>12} {:>10} {:>6} {:>8} {:>8} {:>9} {:>9} {:>8}",
            "case",
            "locking",
            "policy",
            "faults/s",
            "wr ops/s",
            "wr %",
            "p50 ns",
            "p99 ns",
            "retries",
            "fallback",
            "vs mmap"
        );
    }
    for &case in cases {
        for &locking in lockings {
            let mut base = None;
            for &policy in &POLICIES {
                progress.start(&format!("case {case} {locking:?} {policy:?}"));
                let mut row = run_case(case, policy, locking, args, threads);
                progress.clear();
                let b = *base.get_or_insert(row.faults_per_sec);
                row.ratio = row.faults_per_sec / b;
                let writers = writers(case, threads);
                let offered = target * writers as f64;
                if args.json {
                    println!(
                        "{{\"case\":\"{}\",\"policy\":\"{:?}\",\"locking\":\"{:?}\",\"threads\":{threads},\"faults_per_sec\":{:.0},\"writer_ops_per_sec\":{:.0},\"writer_offered_ops_per_sec\":{offered:.0},\"p50_ns\":{},\"p99_ns\":{},\"retries\":{},\"fallbacks\":{},\"ratio_vs_mmaplock\":{:.3}}}",
                        row.case,
                        row.policy,
                        row.locking,
                        row.faults_per_sec,
                        row.writer_ops_per_sec,
                        row.p50_ns,
                        row.p99_ns,
                        row.retries,
                        row.fallbacks,
                        row.ratio
                    );
                } else {
                    let pct = if writers == 0 {
                        "-".to_string()
                    } else {
                        format!("{:.0}%", 100.0 * row.writer_ops_per_sec / offered)
                    };
                    println!(
                        "{:<4} {:<7} {:<12} {:>12.0} {:>10.0} {:>6} {:>8} {:>8} {:>9} {:>9} {:>7.2}x",
                        row.case,
                        format!("{:?}", row.locking),
                        format!("{:?}", row.policy),
                        row.faults_per_sec,
                        row.writer_ops_per_sec,
                        pct,
                        row.p50_ns,
                        row.p99_ns,
                        row.retries,
                        row.fallbacks,
                        row.ratio
                    );
                }
                rows.push(row);
            }
        }
    }
}

/// A grouped bar chart: one group per case, one bar per policy (faults/s).
fn chart(
    path: &std::path::Path,
    rows: &[&Row],
    threads: usize,
    locking: WriterLocking,
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let cases: Vec<char> = rows.iter().map(|r| r.case).fold(Vec::new(), |mut v, c| {
        if !v.contains(&c) {
            v.push(c);
        }
        v
    });
    let top = rows
        .iter()
        .map(|r| r.faults_per_sec / 1e6)
        .fold(1.0, f64::max)
        * 1.15;
    let root = SVGBackend::new(path, (800, 450)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut c = ChartBuilder::on(&root)
        .caption(
            format!(
                "fault_storm: faults/s by case and policy ({threads} threads, {locking:?} writer locking)"
            ),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0..(cases.len() * 4) as f64, 0.0..top)?;
    c.configure_mesh()
        .disable_x_mesh()
        .x_labels(cases.len() * 4)
        .x_label_formatter(&|x| {
            let i = (*x / 4.0) as usize;
            if (*x - i as f64 * 4.0 - 1.5).abs() < 0.5 {
                format!("case {}", cases.get(i).copied().unwrap_or(' '))
            } else {
                String::new()
            }
        })
        .y_desc("million faults / s")
        .draw()?;
    let colors = [
        RGBColor(200, 80, 60),
        RGBColor(140, 60, 160),
        RGBColor(230, 170, 40),
        RGBColor(40, 120, 200),
    ];
    for (j, policy) in POLICIES.iter().enumerate() {
        let color = colors[j];
        c.draw_series(rows.iter().filter(|r| r.policy == *policy).map(|r| {
            let i = cases.iter().position(|&x| x == r.case).unwrap_or(0) as f64;
            let x0 = i * 4.0 + 0.3 + j as f64;
            Rectangle::new(
                [(x0, 0.0), (x0 + 0.9, r.faults_per_sec / 1e6)],
                color.filled(),
            )
        }))?
        .label(format!("{policy:?}"))
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    c.configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    root.present()?;
    Ok(())
}

#[path = "fault_storm/sharing.rs"]
mod sharing;
