//! Bytes per range at 1Mi VMA-like ranges: MapleTree<u64> vs
//! BTreeMap<u64, (u64, u64)> (start -> (end, value)), measured with a counting
//! global allocator (bytes requested from the allocator and still live; the
//! allocator's own per-block overhead is not included).
//!
//! The layout and the random insertion order are the benches' own
//! (benches/common/mod.rs).
//!
//! `cargo run --release --example memory [-- N]`

#[path = "../benches/common/mod.rs"]
mod common;

use common::{btree_churned, build_order, layout, maple_commits, vma_layout};
use maple_rcu::MapleTree;
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static BLOCKS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            LIVE.fetch_add(l.size(), Ordering::Relaxed);
            BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        BLOCKS.fetch_sub(1, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            LIVE.fetch_add(new, Ordering::Relaxed);
            LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        }
        q
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> (usize, usize) {
    (LIVE.load(Ordering::Relaxed), BLOCKS.load(Ordering::Relaxed))
}

struct Row {
    what: &'static str,
    bytes: usize,
    blocks: usize,
}

/// Measures the live bytes `build` leaves behind in the structure it returns.
fn measure<T>(what: &'static str, rows: &mut Vec<Row>, build: impl FnOnce() -> T) -> T {
    let (b0, k0) = live();
    let t = build();
    let (b1, k1) = live();
    rows.push(Row {
        what,
        bytes: b1 - b0,
        blocks: k1 - k0,
    });
    t
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("N"))
        .unwrap_or(1 << 20);
    let ranges = layout(n, 42);
    let order = build_order(n);
    let mut rows = Vec::new();

    // MapleTree, one insert (one commit) per range. The domain frees the
    // replaced nodes after a grace period; `barrier` waits for that, so only
    // the live version is counted.
    let t = measure("MapleTree, insert one by one, ascending", &mut rows, || {
        let t = MapleTree::new();
        for (i, &(s, e)) in ranges.iter().enumerate() {
            t.insert(s..e, i as u64).unwrap();
        }
        t.domain().barrier().unwrap();
        t
    });
    t.validate().unwrap();
    drop(t);
    let t = measure(
        "MapleTree, insert one by one, random order",
        &mut rows,
        || {
            let t = MapleTree::new();
            for &i in &order {
                let (s, e) = ranges[i];
                t.insert(s..e, i as u64).unwrap();
            }
            t.domain().barrier().unwrap();
            t
        },
    );
    drop(t);
    let t = measure(
        "MapleTree, one transaction, random order (the benches' tree)",
        &mut rows,
        || {
            let t = MapleTree::new();
            let mut w = t.write();
            for &i in &order {
                let (s, e) = ranges[i];
                w.insert(s..e, i as u64).unwrap();
            }
            w.commit();
            t
        },
    );
    let c = measure(
        "MapleTree, structural clone of that tree (Clone)",
        &mut rows,
        || t.clone(),
    );
    c.validate().unwrap();
    drop((t, c));
    let t = measure(
        "MapleTree, from sorted iterator (bulk build)",
        &mut rows,
        || {
            ranges
                .iter()
                .enumerate()
                .map(|(i, &(s, e))| (s..e, i as u64))
                .collect::<MapleTree<_>>()
        },
    );
    t.validate().unwrap();
    drop(t);

    let m = measure("BTreeMap, insert one by one, ascending", &mut rows, || {
        let mut m = BTreeMap::new();
        for (i, &(s, e)) in ranges.iter().enumerate() {
            m.insert(s, (e, i as u64));
        }
        m
    });
    drop(m);
    let m = measure(
        "BTreeMap, insert one by one, random order",
        &mut rows,
        || {
            let mut m = BTreeMap::new();
            for &i in &order {
                let (s, e) = ranges[i];
                m.insert(s, (e, i as u64));
            }
            m
        },
    );
    drop(m);
    let m = measure("BTreeMap, from sorted iterator (bulk)", &mut rows, || {
        ranges
            .iter()
            .enumerate()
            .map(|(i, &(s, e))| (s, (e, i as u64)))
            .collect::<BTreeMap<_, _>>()
    });
    drop(m);
    let v = measure(
        "sorted Vec<(u64, u64, u64)> (exact capacity)",
        &mut rows,
        || {
            ranges
                .iter()
                .enumerate()
                .map(|(i, &(s, e))| (s, e, i as u64))
                .collect::<Vec<_>>()
        },
    );
    drop(v);

    // Issue 12's shape: 1-16 pages, gaps of 0-16 pages, random-order inserts
    // with one commit each, then after churning half of them out and in.
    let vma = vma_layout(n, 12);
    let mut heights = Vec::new();
    for (churn, what_m, what_b) in [
        (
            false,
            "MapleTree, vma shape, one commit per insert, random order",
            "BTreeMap, vma shape, random order",
        ),
        (
            true,
            "MapleTree, vma shape, after churn",
            "BTreeMap, vma shape, after churn",
        ),
    ] {
        let t = measure(what_m, &mut rows, || maple_commits(&vma, churn));
        t.validate().unwrap();
        heights.push((what_m, t.height()));
        drop(t);
        let m = measure(what_b, &mut rows, || btree_churned(&vma, churn));
        drop(m);
    }

    println!("N = {n} ranges, V = u64 (MapleTree boxes each value: 8 B per range included)");
    println!();
    println!("| structure | live bytes | bytes/range | allocations |");
    println!("|---|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {:.1} | {} |",
            r.what,
            r.bytes,
            r.bytes as f64 / n as f64,
            r.blocks
        );
    }
    println!();
    for (what, h) in heights {
        println!("height: {what}: {h}");
    }
}
