//! A fixed write workload for instruction counting (`valgrind --tool=callgrind`):
//! a tree of 4096 entries, then `ops` rounds of two single-operation commits
//! (remove a pseudo-random entry, re-insert it), with `domain().poll()` every
//! 64 rounds. The instruction counts in docs/DESIGN.md §2.7 come from it.
//!
//! `cargo build --release --example write_churn` then
//! `valgrind --tool=callgrind target/release/examples/write_churn [u64|string] [ops]`
//! (run once with `ops` = 0 and subtract, to leave the setup out).
//! The tree is manual (`with_manual_reclaim`), so no reclaimer thread's work
//! mixes into the counts.

use maple_rcu::MapleTree;
use std::hint::black_box;

fn run<V: Send + Sync>(make: impl Fn(u64) -> V, ops: u64) {
    let t = MapleTree::with_manual_reclaim();
    for i in 0..4096u64 {
        t.insert(i * 16..i * 16 + 8, make(i)).unwrap();
    }
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for op in 0..ops {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = x % 4096;
        if t.remove(i * 16).is_some() {
            t.insert(i * 16..i * 16 + 8, make(i)).unwrap();
        }
        if op % 64 == 63 {
            black_box(t.domain().poll()).expect("no value's drop panics here");
        }
    }
    black_box(t.len());
}

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "u64".into());
    let ops: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    match kind.as_str() {
        "string" => run(|i| i.to_string(), ops),
        _ => run(|i| i, ops),
    }
}
