//! A tiny, deterministic driver for counting the instructions of one fault
//! under `valgrind --tool=callgrind` (load-independent, unlike wall time).
//!
//! ```text
//! cargo build --release --example fault_cost
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/fault_cost 512 0
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/fault_cost 512 20
//! ```
//!
//! Arguments: `pages rounds [policy]`. It maps `pages` pages, write-faults each
//! once (`Installed`), then write-faults all of them `rounds` more times
//! (`Present`). The difference of the totals of two runs that differ only in
//! `rounds` divided by `pages × Δrounds` is the cost of one present-page fault;
//! two runs that differ in `pages` (rounds 0) give the cost of an installing
//! fault (with its share of page-table allocation). Policy: `spec` (default),
//! `vma`, `mmap`.

use maple_rcu::mm::{Access, AddressSpace, FaultPolicy, MapFlags, Prot};
use std::hint::black_box;

fn main() {
    let mut args = std::env::args().skip(1);
    let pages: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(512);
    let rounds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let policy = match args.next().as_deref() {
        None | Some("spec") => FaultPolicy::Speculative,
        Some("vma") => FaultPolicy::PerVmaLock,
        Some("mmap") => FaultPolicy::MmapLock,
        Some(p) => {
            eprintln!("unknown policy {p:?} (spec | vma | mmap)");
            std::process::exit(2);
        }
    };
    let mm = AddressSpace::with_policy(policy);
    let len = pages * 4096;
    let a = mm
        .mmap(
            None,
            len,
            Prot::READ | Prot::WRITE,
            MapFlags::PRIVATE | MapFlags::ANONYMOUS,
        )
        .unwrap();
    for p in 0..pages {
        black_box(mm.fault(a + p * 4096, Access::Write)).unwrap();
    }
    for _ in 0..rounds {
        for p in 0..pages {
            black_box(mm.fault(a + p * 4096, Access::Write)).unwrap();
        }
    }
    let s = mm.stats();
    assert_eq!(s.faults, pages * (rounds + 1));
    assert_eq!(s.installed, pages);
    println!(
        "faults {} installed {} present {}",
        s.faults, s.installed, s.present
    );
}
