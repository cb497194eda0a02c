//! Single-threaded writer cost (issue 11's "≤ 1.1× the global-lock path"):
//! `loops` rounds of mmap(64 pages) → write every page → munmap, FIXED or
//! placed, under `WriterLocking::Range` or `Global`. Meant for
//! `valgrind --tool=callgrind` (instruction counts do not depend on load):
//!
//! ```text
//! cargo build --release --example writer_cost
//! valgrind --tool=callgrind target/release/examples/writer_cost range fixed 2000
//! ```
use maple_rcu::mm::{Access, AddressSpace, FaultPolicy, MapFlags, Prot, WriterLocking};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let locking = match a.get(1).map(String::as_str) {
        Some("global") => WriterLocking::Global,
        _ => WriterLocking::Range,
    };
    let fixed = a.get(2).map(String::as_str) != Some("placed");
    let loops: u64 = a.get(3).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let mm = AddressSpace::with_locking(FaultPolicy::Speculative, locking);
    let rw = Prot::READ | Prot::WRITE;
    let anon = MapFlags::PRIVATE | MapFlags::ANONYMOUS;
    let pages = 64u64;
    let t = std::time::Instant::now();
    for _ in 0..loops {
        let addr = if fixed {
            mm.mmap(Some(0x4000_0000), pages * 4096, rw, anon | MapFlags::FIXED)
        } else {
            mm.mmap(None, pages * 4096, rw, anon)
        }
        .unwrap();
        for p in 0..pages {
            mm.fault(addr + p * 4096, Access::Write).unwrap();
        }
        mm.munmap(addr, pages * 4096).unwrap();
    }
    let dt = t.elapsed();
    println!(
        "{locking:?} fixed={fixed}: {:.0} ns/loop",
        dt.as_nanos() as f64 / loops as f64
    );
}
