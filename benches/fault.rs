//! The cost of one page fault, single-threaded, per fault policy:
//!
//! * `present/<policy>`: a write fault on a page whose PTE is already there
//!   and writable (`FaultOutcome::Present`): lookup, walk, PTL, statistics;
//! * `install/<policy>`: a write fault that maps a new frame
//!   (`Installed`), plus its share of the `madvise(DONTNEED)` that zaps the
//!   512 pages again after each pass.
//!
//! CPU time of the benchmarking thread (`common::ThreadTime`), per fault. For
//! load-independent numbers use instruction counts instead:
//! `examples/fault_cost.rs` under callgrind (docs/BENCHMARKS.md, "Fault path").

#[path = "common/mod.rs"]
mod common;

use common::*;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use maple_rcu::mm::{Access, AddressSpace, Advice, FaultPolicy, MapFlags, Prot};
use std::hint::black_box;

const PAGES: u64 = 512;

fn space(policy: FaultPolicy) -> (AddressSpace, u64) {
    let mm = AddressSpace::with_policy(policy);
    let a = mm
        .mmap(
            None,
            PAGES * PAGE,
            Prot::READ | Prot::WRITE,
            MapFlags::PRIVATE | MapFlags::ANONYMOUS,
        )
        .unwrap();
    (mm, a)
}

fn fault(c: &mut Criterion<ThreadTime>) {
    let mut g = c.benchmark_group("fault");
    g.throughput(Throughput::Elements(PAGES));
    for (name, policy) in [
        ("spec", FaultPolicy::Speculative),
        ("vma", FaultPolicy::PerVmaLock),
        ("mmap", FaultPolicy::MmapLock),
    ] {
        let (mm, a) = space(policy);
        for p in 0..PAGES {
            mm.fault(a + p * PAGE, Access::Write).unwrap();
        }
        g.bench_function(format!("present/{name}"), |b| {
            b.iter(|| {
                for p in 0..PAGES {
                    black_box(mm.fault(a + p * PAGE, Access::Write)).unwrap();
                }
            })
        });
        g.bench_function(format!("install/{name}"), |b| {
            b.iter(|| {
                mm.madvise(a, PAGES * PAGE, Advice::DontNeed).unwrap();
                for p in 0..PAGES {
                    black_box(mm.fault(a + p * PAGE, Access::Write)).unwrap();
                }
            })
        });
        let s = mm.stats();
        assert_eq!(s.frames_allocated, s.frames_mapped + s.frames_freed);
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = cpu_criterion();
    targets = fault
}
criterion_main!(benches);
