//! The three embeddings of issue 13, each measured in one run against what
//! such a user would otherwise use (code in `examples/embed/`):
//!
//! * **registry**: a JIT-style code registry of 1 Ki and 16 Ki modules, 1
//!   writer replacing modules (at 10k/s, flat out, or not at all) and 2 readers
//!   mapping PCs to modules:
//!   lookups/s for `MapleTree`, `RwLock<BTreeMap>` and `ArcSwap<Vec>`;
//! * **alloc**: a hypervisor-style guest address allocator, steady state of
//!   free (exact) + aligned alloc: `MapleTree::alloc_range`/`remove_exact`
//!   against a `BTreeMap` first-fit free list;
//! * **attrs**: a range-attribute map, 60 % set / 20 % punch / 20 % get:
//!   `MapleTree::store`/`erase` against rangemap and nodit.
//!
//! Each embedding first checks that the contenders agree (same lookups, the
//! same addresses allocated, the same attributes), then times them.
//!
//! `cargo run --release --example embeddings -- [--case registry|alloc|attrs|all] [--secs S]`

#[path = "../benches/common/mod.rs"]
mod common;
mod embed;

use common::{Rng, thread_cpu_now};
use embed::attrs::{self, AttrMap};
use embed::guest_alloc::{self, GuestAlloc};
use embed::registry::{self, Registry as _};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn main() {
    let mut case = "all".to_string();
    let mut secs = 1.0f64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--case" => case = args.next().expect("--case NAME"),
            "--secs" => secs = args.next().expect("--secs S").parse().expect("seconds"),
            "--help" | "-h" => {
                println!("embeddings [--case registry|alloc|attrs|all] [--secs S (default 1)]");
                return;
            }
            other => panic!("unknown argument {other:?} (try --help)"),
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average at start: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    if matches!(case.as_str(), "all" | "registry") {
        registry_case(secs);
    }
    if matches!(case.as_str(), "all" | "alloc") {
        alloc_case(secs);
    }
    if matches!(case.as_str(), "all" | "attrs") {
        attrs_case(secs);
    }
}

// ---- (a) registry -----------------------------------------------------------

/// Rounds per registry row (median reported).
const ROUNDS: usize = 3;

fn registry_case(secs: f64) {
    registry::agree(1024, 1000);
    println!(
        "\n(a) code registry: N modules, 1 writer (replace a module) + 2 readers; median of {ROUNDS} interleaved rounds of {secs} s"
    );
    println!(
        "{:<18} {:>6} {:>9} {:>12} {:>9} {:>13} {:>9} {:>5} {:>13}",
        "contender",
        "N",
        "writer",
        "lookups/s",
        "vs maple",
        "CPU ns/lookup",
        "vs maple",
        "hits",
        "writer did/s"
    );
    for slots in [1024u64, 16 << 10] {
        for (label, period) in [
            ("10k/s", Duration::from_micros(100)),
            ("flat out", Duration::ZERO),
            ("none", registry::IDLE),
        ] {
            // Rounds interleave the contenders, so that a change in the
            // machine's load hits them alike; each row is the median round.
            let mut runs: [Vec<registry::RegistryRun>; 3] = Default::default();
            for _ in 0..ROUNDS {
                runs[0].push(registry::run::<registry::Maple>(slots, 2, secs, period));
                runs[1].push(registry::run::<registry::RwBTree>(slots, 2, secs, period));
                runs[2].push(registry::run::<registry::SwapVec>(slots, 2, secs, period));
            }
            let [a, b, c] = runs.map(|mut v| {
                v.sort_by(|x, y| x.lookups_per_s.total_cmp(&y.lookups_per_s));
                v[v.len() / 2]
            });
            let m = a;
            let rows = [
                (registry::Maple::NAME, a),
                (registry::RwBTree::NAME, b),
                (registry::SwapVec::NAME, c),
            ];
            for (name, r) in rows {
                println!(
                    "{:<18} {:>6} {:>9} {:>10.2} M {:>8.2}x {:>13.1} {:>8.2}x {:>4.0}% {:>13.0}",
                    name,
                    slots,
                    label,
                    r.lookups_per_s / 1e6,
                    r.lookups_per_s / m.lookups_per_s,
                    r.cpu_ns_per_lookup,
                    r.cpu_ns_per_lookup / m.cpu_ns_per_lookup,
                    r.hit_rate * 100.0,
                    r.writes_per_s
                );
            }
        }
    }
}

// ---- (b) guest allocator ----------------------------------------------------

fn alloc_case(secs: f64) {
    guest_alloc::agree(1024, 10_000);
    println!(
        "\n(b) guest address allocator: steady state, one step = exact free + aligned alloc; thread CPU time over {secs} s per row"
    );
    println!(
        "{:<22} {:>8} {:>12} {:>10}",
        "contender", "live", "ns/step", "vs maple"
    );
    for live in [1024usize, 16 << 10] {
        let m = alloc_rate::<guest_alloc::Maple>(live, secs);
        for (name, ns) in [
            (guest_alloc::Maple::NAME, m),
            (
                guest_alloc::MapleTxn::NAME,
                alloc_rate::<guest_alloc::MapleTxn>(live, secs),
            ),
            (
                guest_alloc::FreeList::NAME,
                alloc_rate::<guest_alloc::FreeList>(live, secs),
            ),
        ] {
            println!("{:<22} {:>8} {:>12.0} {:>9.2}x", name, live, ns, ns / m);
        }
    }
}

/// Thread CPU ns per steady-state step (CPU time: the machine is shared).
fn alloc_rate<A: GuestAlloc>(live: usize, secs: f64) -> f64 {
    let mut rng = Rng::new(3);
    let (mut a, mut held) = guest_alloc::warm::<A>(live, &mut rng);
    let dur = Duration::from_secs_f64(secs);
    let (t0, cpu0) = (Instant::now(), thread_cpu_now());
    let mut n = 0u64;
    while t0.elapsed() < dur {
        for _ in 0..64 {
            black_box(guest_alloc::step(&mut a, &mut held, &mut rng));
        }
        n += 64;
    }
    (thread_cpu_now() - cpu0).as_nanos() as f64 / n as f64
}

// ---- (c) attribute map ------------------------------------------------------

const WARM_OPS: usize = 64 << 10;

fn attrs_case(secs: f64) {
    attrs::agree(WARM_OPS, 200_000);
    println!(
        "\n(c) range-attribute map: 60 % set 1-64 pages (8 attributes) / 20 % punch / 20 % get, after {WARM_OPS} warm-up ops; thread CPU time over {secs} s per row"
    );
    println!(
        "{:<12} {:>10} {:>10} {:>10}",
        "contender", "ns/op", "vs maple", "entries"
    );
    let m = attrs_rate::<attrs::Maple>(secs);
    for (name, (ns, len)) in [
        (attrs::Maple::NAME, m),
        (attrs::Rangemap::NAME, attrs_rate::<attrs::Rangemap>(secs)),
        (attrs::Nodit::NAME, attrs_rate::<attrs::Nodit>(secs)),
    ] {
        println!("{:<12} {:>10.0} {:>9.2}x {:>10}", name, ns, ns / m.0, len);
    }
}

/// (thread CPU ns per op, entries at the end).
fn attrs_rate<M: AttrMap>(secs: f64) -> (f64, usize) {
    let mut m = attrs::warm::<M>(WARM_OPS);
    let ops = attrs::ops(1 << 20, 2);
    let dur = Duration::from_secs_f64(secs);
    let (t0, cpu0) = (Instant::now(), thread_cpu_now());
    let mut n = 0u64;
    let mut acc = 0u32;
    'outer: loop {
        for chunk in ops.chunks(256) {
            for op in chunk {
                acc = acc.wrapping_add(attrs::apply(&mut m, op));
            }
            n += chunk.len() as u64;
            if t0.elapsed() >= dur {
                break 'outer;
            }
        }
    }
    black_box(acc);
    (
        (thread_cpu_now() - cpu0).as_nanos() as f64 / n as f64,
        m.len(),
    )
}
