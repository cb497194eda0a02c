//! Whole-tree operations for instruction counting (`valgrind --tool=callgrind`):
//! the structural copy against N inserts, the bulk build against N inserts,
//! and `clear` against one removal per entry, on `n` VMA-like ranges (1-16
//! pages, 1-16 page holes) built by random-order inserts, `u64` values.
//! Each measured step is a `measure_*` function, so
//!
//! ```sh
//! cargo build --release --example bulk_cost
//! valgrind --tool=callgrind --toggle-collect='*measure_*' \
//!     target/release/examples/bulk_cost 65536
//! callgrind_annotate --inclusive=yes callgrind.out.* | grep measure_
//! ```
//!
//! gives each step's instructions (the result's drop is outside). Trees are
//! manual (`with_manual_reclaim`) so no reclaimer thread runs.

use maple_rcu::MapleTree;
use std::hint::black_box;
use std::ops::Range;

type Items = Vec<(Range<u64>, u64)>;

#[inline(never)]
fn measure_clone(t: &MapleTree<u64>) -> MapleTree<u64> {
    t.clone_with_manual_reclaim()
}

#[inline(never)]
fn measure_clone_by_inserts(t: &MapleTree<u64>) -> MapleTree<u64> {
    let u = MapleTree::with_manual_reclaim();
    let mut w = u.write();
    for (r, v) in t.pin().iter() {
        w.insert(r, *v).unwrap();
    }
    w.commit();
    u
}

#[inline(never)]
fn measure_build_sorted(items: Items) -> MapleTree<u64> {
    let t = MapleTree::with_manual_reclaim();
    t.try_extend(items).unwrap();
    t
}

#[inline(never)]
fn measure_build_by_inserts(items: Items) -> MapleTree<u64> {
    let t = MapleTree::with_manual_reclaim();
    let mut w = t.write();
    for (r, v) in items {
        w.insert(r, v).unwrap();
    }
    w.commit();
    t
}

#[inline(never)]
fn measure_clear(t: &MapleTree<u64>) {
    t.clear();
}

#[inline(never)]
fn measure_clear_by_removals(t: &MapleTree<u64>) {
    let mut w = t.write();
    while let Some((r, _)) = w.first() {
        w.remove(r.start);
    }
    w.commit();
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(65536, |a| a.parse().unwrap());
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    let mut items: Items = Vec::new();
    let mut pos = 0x5555_0000_0000u64;
    for i in 0..n {
        let s = pos + (1 + rnd(16)) * 4096;
        pos = s + (1 + rnd(16)) * 4096;
        items.push((s..pos, i));
    }
    let mut shuffled = items.clone();
    for i in (1..shuffled.len()).rev() {
        shuffled.swap(i, rnd(i as u64 + 1) as usize);
    }
    // The source tree: random-order inserts (not measured).
    let t = MapleTree::with_manual_reclaim();
    t.try_extend(shuffled).unwrap();
    black_box(measure_clone(&t));
    black_box(measure_clone_by_inserts(&t));
    black_box(measure_build_sorted(items.clone()));
    black_box(measure_build_by_inserts(items));
    let (a, b) = (t.clone_with_manual_reclaim(), t.clone_with_manual_reclaim());
    measure_clear(&a);
    measure_clear_by_removals(&b);
    println!("n = {n}, height {}", t.height());
}
