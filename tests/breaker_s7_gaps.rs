//! breaker7 on `rev` (issue 12, seventh session: the reverse gap search
//! specialised per direction, the reverse inner step's child order (top
//! edge child, middle children, child 0), `rank_le_upto`'s folded clamp,
//! narrow leaves' `count_le_end`/`count_le_start` with saturated offsets).
//!
//! * Narrow leaves at their offset limit: entries whose last end lies at
//!   `base + u32::MAX - 1`, `base + u32::MAX` (the largest narrow span) and
//!   `+ u32::MAX + 1` (wide), at bases 0, odd, 2^32 - 1, near `u64::MAX`;
//!   windows whose ends sit at every offset around `u32::MAX`, sizes 1..4
//!   and exact gap sizes, alignments 1 .. 2^32.
//! * A sliding hole: a dense tree (gaps of 0 or 1 unit) of height 3+, with
//!   one hole of `h` units opened at every position in turn; the only fit of
//!   `h` (and of `h` at the hole's own alignment) must be found by both
//!   searches, and `alloc_range_rev` must claim it: a reverse step that
//!   skips child 0 or the top child of any node misses it.
//! * Everything against the model (tests/common/tree_model.rs), and
//!   `validate()` after every mutation.

#[path = "common/rng.rs"]
mod rng;
#[path = "common/tree_model.rs"]
mod tree_model;

use maple_rcu::{MapleTree, ReadGuard};
use rng::Rng;
use std::ops::Range;
use tree_model::Model;

const M32: u64 = u32::MAX as u64;

fn query(g: &ReadGuard<'_, u64>, m: &Model, size: u64, align: u64, w: Range<u64>, ctx: &str) {
    let f = g.try_find_gap(size, align, w.clone()).ok();
    assert_eq!(
        f,
        m.find_gap(size, align, w.clone(), false),
        "fwd size {size:#x} align {align:#x} in {w:x?} {ctx}"
    );
    let b = g.try_find_gap_rev(size, align, w.clone()).ok();
    assert_eq!(
        b,
        m.find_gap(size, align, w.clone(), true),
        "rev size {size:#x} align {align:#x} in {w:x?} {ctx}"
    );
}

fn build(entries: &[Range<u64>]) -> (MapleTree<u64>, Model) {
    let t = MapleTree::with_manual_reclaim();
    let mut m = Model::default();
    for (i, r) in entries.iter().enumerate() {
        let a = t.insert(r.clone(), i as u64).is_ok();
        assert_eq!(a, m.insert(r.clone(), i as u64).is_ok(), "insert {r:x?}");
        t.validate().unwrap();
    }
    (t, m)
}

fn around(x: u64) -> impl Iterator<Item = u64> {
    [
        x.wrapping_sub(2),
        x.wrapping_sub(1),
        x,
        x.wrapping_add(1),
        x.wrapping_add(2),
    ]
    .into_iter()
    .filter(move |&y| y.abs_diff(x) <= 2)
}

#[test]
fn narrow_leaves_at_their_offset_limit() {
    let bases = [
        0u64,
        1,
        4095,
        M32,
        M32 + 1,
        (1 << 40) + 3,
        u64::MAX - 2 * M32 - 7,
        u64::MAX - M32 - 1,
    ];
    let aligns = [1u64, 2, 8, 4096, 1 << 21, 1 << 30, 1 << 31, 1 << 32];
    for &base in &bases {
        for span in [M32 - 1, M32, M32 + 1] {
            let Some(top) = base.checked_add(span) else {
                continue;
            };
            // A narrow-leaf's worth of entries: the first at the base, a few
            // odd ones in the middle, two at the top with one-unit gaps.
            let mut es = vec![base..base + 1, base + 3..base + 4];
            for k in 1..6u64 {
                let a = base + k * (span / 7) + k;
                es.push(a..a + 2 + k);
            }
            es.push(top - 5..top - 3);
            es.push(top - 2..top - 1);
            es.push(top - 1..top);
            for drop_last in [false, true] {
                let es = if drop_last {
                    &es[..es.len() - 1]
                } else {
                    &es[..]
                };
                let (t, m) = build(es);
                let g = t.pin();
                let ctx = format!("base {base:#x} span {span:#x} drop_last {drop_last}");
                let ends = around(base + M32 - 1)
                    .chain(around(base + M32 + 1))
                    .chain(around(top))
                    .chain([u64::MAX, base + span / 2]);
                let ends: Vec<u64> = ends.collect();
                let starts: Vec<u64> = around(base)
                    .chain(around(top - 6))
                    .chain([0, base + span / 3])
                    .collect();
                for &lo in &starts {
                    for &hi in &ends {
                        if lo >= hi {
                            continue;
                        }
                        for size in [1u64, 2, 3, 4, span / 7 - 20, M32, M32 + 1, 1 << 40] {
                            for &al in &aligns {
                                query(&g, &m, size.max(1), al, lo..hi, &ctx);
                            }
                        }
                    }
                }
                // Point lookups at the same offsets.
                for &x in ends.iter().chain(&starts) {
                    let got = [g.get(x), g.next(x), g.prev(x)].map(|e| e.map(|(r, &v)| (r, v)));
                    assert_eq!(
                        got,
                        [m.get(x), m.next(x), m.prev(x)],
                        "lookups {x:#x} {ctx}"
                    );
                }
            }
        }
    }
}

/// A dense tree with a hole slid over every position: both searches and
/// `alloc_range_rev` find exactly the model's answer.
fn sliding_hole(base: u64, unit: u64, n: u64, hole: u64, seed: u64) {
    let mut r = Rng(seed | 1);
    let mut es = Vec::new();
    let mut a = base;
    for _ in 0..n {
        let len = unit * (1 + r.below(3));
        es.push(a..a + len);
        // Gaps of 0 or 1 unit: never `hole` units (hole >= 2).
        a += len + unit * r.below(2);
    }
    let (t, mut m) = build(&es);
    assert!(t.height() >= 3, "height {}", t.height());
    let end = a;
    let mut i = 0usize;
    while i + 1 < es.len() {
        // Open a hole at entry i: remove entries until the hole's free run
        // (with its neighbouring gaps) is at least `hole` units.
        let mut j = i;
        let mut removed = Vec::new();
        loop {
            let free_lo = if i == 0 { base } else { es[i - 1].end };
            let free_hi = if j + 1 < es.len() {
                es[j + 1].start
            } else {
                end
            };
            assert_eq!(t.remove(es[j].start), m.remove(es[j].start));
            removed.push(es[j].clone());
            if free_hi - free_lo >= hole * unit || j + 2 >= es.len() {
                break;
            }
            j += 1;
        }
        t.validate().unwrap();
        {
            let g = t.pin();
            let ctx = format!("hole at entry {i} base {base:#x} unit {unit:#x}");
            for size in [hole * unit, hole * unit - 1, unit + 1] {
                for al in [1, unit << 1, unit << 4] {
                    query(&g, &m, size, al, base..end, &ctx);
                    if size == hole * unit {
                        query(&g, &m, size, al, 0..u64::MAX, &ctx);
                        query(&g, &m, size, al, es[i].start..es[j].end, &ctx);
                    }
                }
            }
        }
        // The reverse allocator claims the model's answer.
        let want = m.find_gap(hole * unit, 1, base..end, true);
        let got = t.alloc_range_rev(hole * unit, 1, base..end, u64::MAX).ok();
        assert_eq!(
            got.as_ref().map(|r| r.start),
            want,
            "alloc_range_rev hole {i}"
        );
        if let Some(g) = got {
            m.insert(g.clone(), u64::MAX).unwrap();
            assert_eq!(t.remove(g.start), m.remove(g.start));
        }
        for rg in removed {
            t.insert(rg.clone(), 0).unwrap();
            m.insert(rg, 0).unwrap();
        }
        t.validate().unwrap();
        i = j + 1 + r.below(5) as usize;
    }
}

#[test]
fn a_sliding_hole_is_found_in_every_child() {
    for (k, (base, unit)) in [
        (0u64, 1u64),
        (7, 1),
        (1 << 20, 4096),
        (0x7f00_0000_0000, 4096),
        (u64::MAX - (1 << 36), 4096),
        (u64::MAX - (1 << 24), 1),
        (1 << 33, 1 << 21),
    ]
    .into_iter()
    .enumerate()
    {
        for hole in [2, 4, 7] {
            sliding_hole(base, unit, 1500, hole, 0x5eed + k as u64 * 3 + hole);
        }
    }
}
