//! The address space's writers (issue 11): one loop = `mmap` 64 pages with
//! MAP_FIXED + `munmap`, optionally writing every page in between.
//!
//! * `writers/1thread`: one thread, writers under range locks
//!   (`WriterLocking::Range`) against the whole-space lock
//!   (`WriterLocking::Global`, what Linux's `mmap_lock` gives), in an empty
//!   space and in one holding 1,024 other VMAs (a tree several levels deep,
//!   as in a real process).
//! * `writers/2threads` and `writers/2threads_pages`: two threads, each
//!   looping in its own 1 GiB window, without and with the 64 page writes:
//!   one space under range locks, one space under the global lock, and each
//!   thread in its own space (the no-sharing ideal on this machine). Wall
//!   time per loop, per thread.
//! * `writers/2threads_pages_placed`: as `2threads_pages`, but the mmaps
//!   are not FIXED: in one space the two threads' blocks land next to each
//!   other (top-down), merge, share a 2 MiB span and its page table, and
//!   each thread's munmap splits the VMA the other's block merged into
//!   (lock contagion, free steps handed off: DESIGN §4.8, R11/R12 of §7.1).
//!
//! `examples/writer_cost.rs` measures the two-thread ratio more steadily
//! (alternated rounds, separate processes); docs/BENCHMARKS.md.

mod common;

use common::{PAGE, two_threads};
use criterion::{Criterion, criterion_group, criterion_main};
use maple_rcu::mm::{Access, AddressSpace, FaultPolicy, MapFlags, Prot, WriterLocking};
use std::sync::Arc;
use std::time::Duration;

/// Pages per mapping.
const PAGES: u64 = 64;

fn space(locking: WriterLocking, background: u64) -> AddressSpace {
    let mm = AddressSpace::with_locking(FaultPolicy::Speculative, locking);
    let fixed = MapFlags::PRIVATE | MapFlags::ANONYMOUS | MapFlags::FIXED;
    // One-page VMAs with one-page holes (none merge), away from the windows.
    for k in 0..background {
        mm.mmap(Some(0x1000_0000 + k * 2 * PAGE), PAGE, Prot::READ, fixed)
            .unwrap();
    }
    mm
}

/// One loop in the window at `at` (`None`: placed by the space, not
/// FIXED): map, write `writes` pages, unmap.
fn one_loop(mm: &AddressSpace, at: Option<u64>, writes: u64) {
    let rw = Prot::READ | Prot::WRITE;
    let flags = match at {
        Some(_) => MapFlags::PRIVATE | MapFlags::ANONYMOUS | MapFlags::FIXED,
        None => MapFlags::PRIVATE | MapFlags::ANONYMOUS,
    };
    let a = mm.mmap(at, PAGES * PAGE, rw, flags).unwrap();
    for p in 0..writes {
        mm.fault(a + p * PAGE, Access::Write).unwrap();
    }
    mm.munmap(a, PAGES * PAGE).unwrap();
}

fn one_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("writers/1thread");
    for background in [0u64, 1024] {
        for (name, locking) in [
            ("range", WriterLocking::Range),
            ("global", WriterLocking::Global),
        ] {
            let mm = space(locking, background);
            g.bench_function(format!("{name}/{background}vmas"), |b| {
                b.iter(|| one_loop(&mm, Some(0x4000_0000), 0))
            });
        }
    }
    g.finish();
}

fn pair(c: &mut Criterion, group: &str, writes: u64, fixed: bool) {
    let mut g = c.benchmark_group(group);
    let setups: [(&str, Vec<Arc<AddressSpace>>); 3] = [
        (
            "one space, range locks",
            vec![Arc::new(space(WriterLocking::Range, 0))],
        ),
        (
            "one space, global lock",
            vec![Arc::new(space(WriterLocking::Global, 0))],
        ),
        (
            "separate spaces",
            (0..2)
                .map(|_| Arc::new(space(WriterLocking::Range, 0)))
                .collect(),
        ),
    ];
    for (name, spaces) in setups {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let spaces = spaces.clone();
                // Thread `t` loops in its own window of `spaces[t % len]`.
                two_threads(
                    iters,
                    Arc::new(move |t| {
                        let mm = &spaces[t as usize % spaces.len()];
                        let at = fixed.then_some(0x4000_0000 + (t << 30));
                        one_loop(mm, at, writes)
                    }),
                )
            })
        });
        for mm in &spaces {
            mm.check().unwrap();
        }
    }
    g.finish();
}

fn two(c: &mut Criterion) {
    pair(c, "writers/2threads", 0, true);
    pair(c, "writers/2threads_pages", PAGES, true);
    pair(c, "writers/2threads_pages_placed", PAGES, false);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = one_thread, two
}
criterion_main!(benches);
