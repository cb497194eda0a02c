//! Attacks on S14 (an `Always` advance no longer chains grace periods for
//! requests made while it runs) through *bounded garbage*: with fewer
//! grace periods, what waits for one must still not grow without bound.
//! Observed through a counting global allocator (live heap bytes of the
//! whole process; the tests here are serialized by `SERIAL` so that only
//! one runs at a time), the address space's own counters, and for the
//! tree the live count of removed values.
//!
//! Each test samples the live heap while two writers run flat out and
//! checks that it *plateaus*: the peak of the last quarter of the run is
//! not far above the peak of the second quarter (linear growth, i.e.
//! garbage never freed, doubles it), and stays under an absolute bound.

use maple_rcu::MapleTree;
use maple_rcu::mm::{Access, AddressSpace, FaultPolicy, MapFlags, Prot, WriterLocking};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Live heap bytes of the process.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to `System`, only counting sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            LIVE.fetch_add(l.size() as isize, Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Relaxed);
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            LIVE.fetch_add(l.size() as isize, Relaxed);
        }
        p
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            LIVE.fetch_add(new as isize - l.size() as isize, Relaxed);
        }
        q
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

static SERIAL: Mutex<()> = Mutex::new(());

fn live() -> isize {
    LIVE.load(Relaxed)
}

/// Resident set size of the process in KiB (/proc/self/statm), if known.
fn rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4)
}

/// Samples `f()` every 5 ms while `running`; returns the samples.
fn sample(running: &AtomicBool, f: impl Fn() -> isize) -> Vec<isize> {
    let mut v = Vec::with_capacity(4096);
    while running.load(Relaxed) {
        v.push(f());
        std::thread::sleep(Duration::from_millis(5));
    }
    v
}

/// (peak of the second quarter, peak of the last quarter) of `s`.
fn quarters(s: &[isize]) -> (isize, isize) {
    let n = s.len();
    assert!(n >= 8, "too few samples ({n})");
    let q2 = s[n / 4..n / 2].iter().copied().max().unwrap_or(0);
    let q4 = s[3 * n / 4..].iter().copied().max().unwrap_or(0);
    (q2, q4)
}

/// Asserts a plateau: the last quarter's peak at most 1.5× the second's
/// plus `slack` bytes, and every sample under `cap` bytes.
fn assert_plateau(what: &str, s: &[isize], slack: isize, cap: isize) {
    let (q2, q4) = quarters(s);
    let peak = s.iter().copied().max().unwrap_or(0);
    eprintln!(
        "{what}: {} samples, live heap above baseline: q2 peak {} KiB, q4 peak {} KiB, peak {} KiB",
        s.len(),
        q2 / 1024,
        q4 / 1024,
        peak / 1024
    );
    assert!(
        q4 <= q2 + q2 / 2 + slack,
        "{what}: live heap grows: second quarter peak {q2} B, last quarter peak {q4} B"
    );
    assert!(peak <= cap, "{what}: live heap peak {peak} B over {cap} B");
}

/// Two writers in one space for `dur` (or `loops` each): mmap(64 pages),
/// write-fault `faults` of them, munmap. Returns (samples of live heap
/// above the baseline, loops done by both).
fn two_writers_one_space(dur: Duration, loops: u64, faults: u64) -> (Vec<isize>, u64) {
    let mm = AddressSpace::with_locking(FaultPolicy::Speculative, WriterLocking::Range);
    let rw = Prot::READ | Prot::WRITE;
    let anon = MapFlags::PRIVATE | MapFlags::ANONYMOUS | MapFlags::FIXED;
    let base = live();
    let running = AtomicBool::new(true);
    let done = AtomicU64::new(0);
    let finished = AtomicU64::new(0);
    let samples = std::thread::scope(|s| {
        for i in 0..2u64 {
            let (mm, done, running, finished) = (&mm, &done, &running, &finished);
            s.spawn(move || {
                let window = 0x4000_0000 + (i << 30);
                let start = Instant::now();
                let mut n = 0;
                while n < loops && start.elapsed() < dur {
                    let a = mm.mmap(Some(window), 64 * 4096, rw, anon).unwrap();
                    for p in 0..faults {
                        mm.fault(a + p * 4096, Access::Write).unwrap();
                    }
                    mm.munmap(a, 64 * 4096).unwrap();
                    n += 1;
                }
                done.fetch_add(n, Relaxed);
                if finished.fetch_add(1, Relaxed) == 1 {
                    running.store(false, Relaxed);
                }
            });
        }
        sample(&running, || live() - base)
    });
    let st = mm.stats();
    eprintln!(
        "faults={faults}: {} loops, frames live {} mapped {}, tables allocated {} freed {} kept {}, rss {:?} KiB",
        done.load(Relaxed),
        st.frames_live,
        st.frames_mapped,
        st.tables_allocated,
        st.tables_freed,
        st.tables_kept,
        rss_kib()
    );
    assert_eq!(st.vmas, 0);
    assert_eq!(st.frames_live, 0, "frames leaked");
    mm.check().unwrap();
    (samples, done.load(Relaxed))
}

/// Two writers in one space, with the page writes: the live heap
/// plateaus (tables and VMA nodes retired through the space's domain are
/// freed as fast as they are retired on average).
#[test]
fn two_writers_one_space_with_writes_plateau() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (s, _) = two_writers_one_space(Duration::from_millis(1200), u64::MAX, 64);
    assert_plateau("writes", &s, 4 << 20, 256 << 20);
}

/// The same without the page writes (writers only: every loop retires VMA
/// tree garbage, and the writers' `poll_lazy` is `Spaced`).
#[test]
fn two_writers_one_space_without_writes_plateau() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (s, _) = two_writers_one_space(Duration::from_millis(1200), u64::MAX, 0);
    assert_plateau("no writes", &s, 4 << 20, 256 << 20);
}

/// The long run: 200k loops per writer, with and without the writes.
/// About 2.2 s in release on the 2-vCPU VM (1.4 s + 0.7 s; live heap 2.4 MiB
/// and 0.24 MiB above the baseline, flat), well over a minute in debug,
/// hence ignored.
/// `cargo test --release --test breaker_s12_memory -- --ignored --nocapture`
#[test]
#[ignore = "release only: ~2 s there, over a minute in debug"]
fn two_writers_one_space_200k_loops_plateau() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for faults in [64, 0] {
        let t = Instant::now();
        let (s, n) = two_writers_one_space(Duration::from_secs(600), 200_000, faults);
        eprintln!("faults={faults}: {n} loops in {:?}", t.elapsed());
        assert_eq!(n, 400_000);
        assert_plateau("200k", &s, 4 << 20, 256 << 20);
    }
}

/// A `MapleTree<u64>` (default: reclaimer domain), two threads committing
/// insert/remove in disjoint ranges at full speed, a third pinning and
/// dropping readers: the tree's node garbage (recycled only by commits
/// once their grace period passed, pressed past `PRESSED` waiting commits
/// with an `Always` advance that S14 now limits to its own target) keeps
/// the live heap on a plateau.
#[test]
fn tree_two_committers_and_a_reader_plateau() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for gap in [None, Some(Duration::from_secs(10))] {
        let t: MapleTree<u64> = MapleTree::new();
        if let Some(g) = gap {
            t.domain().set_min_gp_gap(g);
        }
        for k in 0..1000u64 {
            t.insert((3 << 40) + k * 4..(3 << 40) + k * 4 + 2, k)
                .unwrap();
        }
        let base = live();
        let running = AtomicBool::new(true);
        let commits = AtomicU64::new(0);
        let samples = std::thread::scope(|s| {
            for w in 0..2u64 {
                let (t, running, commits) = (&t, &running, &commits);
                s.spawn(move || {
                    let mut i = 0u64;
                    while running.load(Relaxed) {
                        let k = (w << 40) + (i % 4096) * 4;
                        t.insert(k..k + 2, i).unwrap();
                        t.remove(k).unwrap();
                        i += 1;
                    }
                    commits.fetch_add(2 * i, Relaxed);
                });
            }
            let (t, running) = (&t, &running);
            s.spawn(move || {
                let mut i = 0u64;
                while running.load(Relaxed) {
                    let g = t.pin();
                    std::hint::black_box(g.get((3 << 40) + (i % 1000) * 4));
                    if i.is_multiple_of(64) {
                        std::thread::sleep(Duration::from_micros(100));
                    }
                    drop(g);
                    i += 1;
                }
            });
            let stopper = s.spawn(move || {
                std::thread::sleep(Duration::from_millis(1200));
                running.store(false, Relaxed);
            });
            let v = sample(running, || live() - base);
            stopper.join().unwrap();
            v
        });
        eprintln!("gap {gap:?}: {} commits", commits.load(Relaxed));
        assert_plateau(&format!("tree, gap {gap:?}"), &samples, 2 << 20, 64 << 20);
        assert_eq!(t.len(), 1000);
        t.validate().unwrap();
    }
}
