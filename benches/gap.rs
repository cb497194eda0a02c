//! Gap search: the lowest (find_gap) / highest (find_gap_rev) aligned free
//! range of a size inside a window, at N = 4Ki, 256Ki, 1Mi VMA-like ranges,
//! against a linear gap scan over a BTreeMap and `rangemap::RangeMap::gaps`.
//!
//! Each iteration answers one query; queries rotate over 256 windows with a
//! random bound (forward: `lo..u64::MAX`, reverse: `0..hi`), like mmap's
//! bottom-up / top-down searches from a varying base. Sizes 4 KiB (the next
//! gap), 2 MiB (only the rare large gaps hold it) and 1 GiB (nothing inside
//! the mapped field: the answer lies past its end), each 4 KiB- and 2 MiB-aligned.
//! Time is the thread's CPU time (see `common::ThreadTime`).

#[path = "common/mod.rs"]
mod common;

use common::*;
use criterion::{Criterion, criterion_group, criterion_main};
use rangemap::RangeMap;
use std::collections::BTreeMap;
use std::time::Duration;

const QUERIES: usize = 256;

/// The best aligned start of `size` inside free `[fs, fe)` clipped to `[lo, hi)`.
fn fit(fs: u64, fe: u64, size: u64, align: u64, lo: u64, hi: u64, rev: bool) -> Option<u64> {
    let a = fs.max(lo);
    let b = fe.min(hi);
    if b <= a || b - a < size {
        return None;
    }
    let mask = align - 1;
    if rev {
        let s = (b - size) & !mask;
        (s >= a).then_some(s)
    } else {
        let s = a.checked_add(mask)? & !mask;
        (s <= b - size).then_some(s)
    }
}

/// Linear scan over the entries from `lo` upwards.
fn btree_scan_fwd(
    m: &BTreeMap<u64, (u64, u64)>,
    size: u64,
    align: u64,
    lo: u64,
    hi: u64,
) -> Option<u64> {
    let mut pos = lo;
    if let Some((_, &(e, _))) = m.range(..lo).next_back() {
        pos = pos.max(e);
    }
    for (&s, &(e, _)) in m.range(lo..) {
        if s >= hi {
            break;
        }
        if let Some(x) = fit(pos, s, size, align, lo, hi, false) {
            return Some(x);
        }
        pos = e;
    }
    fit(pos, hi, size, align, lo, hi, false)
}

/// Linear scan over the entries from `hi` downwards.
fn btree_scan_rev(
    m: &BTreeMap<u64, (u64, u64)>,
    size: u64,
    align: u64,
    lo: u64,
    hi: u64,
) -> Option<u64> {
    let mut top = hi;
    for (&s, &(e, _)) in m.range(..hi).rev() {
        if e <= lo {
            break;
        }
        if e < top
            && let Some(x) = fit(e, top, size, align, lo, hi, true)
        {
            return Some(x);
        }
        top = top.min(s);
    }
    fit(lo, top, size, align, lo, hi, true)
}

/// First fit over `RangeMap::gaps` (forward only: its gap iterator is not
/// double-ended).
fn rangemap_fwd(m: &RangeMap<u64, u64>, size: u64, align: u64, lo: u64, hi: u64) -> Option<u64> {
    let outer = lo..hi;
    m.gaps(&outer)
        .find_map(|g| fit(g.start, g.end, size, align, lo, hi, false))
}

/// The window bounds the queries rotate over: `QUERIES` random page-aligned
/// lower bounds (forward searches) and upper bounds (reverse) in the field.
fn windows(ranges: &[(u64, u64)]) -> (Vec<u64>, Vec<u64>) {
    let field_end = ranges.last().unwrap().1;
    let mut rng = Rng::new(99);
    let mut draw = || -> Vec<u64> {
        (0..QUERIES)
            .map(|_| rng.range(BASE, field_end) & !(PAGE - 1))
            .collect()
    };
    let los = draw();
    (los, draw())
}

fn label(bytes: u64) -> String {
    if bytes >= GIB {
        format!("{}GiB", bytes / GIB)
    } else if bytes >= MIB {
        format!("{}MiB", bytes / MIB)
    } else {
        format!("{}KiB", bytes / 1024)
    }
}

fn gap(c: &mut Criterion<ThreadTime>) {
    for n in [4usize << 10, 256 << 10, 1 << 20] {
        let ranges = layout(n, 42);
        let (los, his) = windows(&ranges);
        let tree = maple(&ranges);
        let bt = btree(&ranges);
        let rmap = rangemap(&ranges);

        for (size, align) in [
            (PAGE, PAGE),
            (PAGE, 2 * MIB),
            (2 * MIB, PAGE),
            (2 * MIB, 2 * MIB),
            (GIB, PAGE),
            (GIB, 2 * MIB),
        ] {
            // Every contender must agree on every answer.
            {
                let g = tree.pin();
                for (&lo, &hi) in los.iter().zip(&his) {
                    let f = g.try_find_gap(size, align, lo..u64::MAX).ok();
                    assert_eq!(f, btree_scan_fwd(&bt, size, align, lo, u64::MAX));
                    assert_eq!(f, rangemap_fwd(&rmap, size, align, lo, u64::MAX));
                    let r = g.try_find_gap_rev(size, align, 0..hi).ok();
                    assert_eq!(r, btree_scan_rev(&bt, size, align, 0, hi));
                }
            }

            let mut g = c.benchmark_group(format!(
                "gap/{}/{}@{}",
                n_label(n),
                label(size),
                label(align)
            ));
            g.warm_up_time(Duration::from_millis(300))
                .measurement_time(Duration::from_secs(1))
                .sample_size(10);

            let mut k = 0;
            let mut next = move || {
                k = (k + 1) % QUERIES;
                k
            };
            g.bench_function("maple_fwd", |b| {
                b.iter(|| {
                    tree.pin()
                        .try_find_gap(size, align, los[next()]..u64::MAX)
                        .ok()
                })
            });
            g.bench_function("maple_rev", |b| {
                b.iter(|| {
                    tree.pin()
                        .try_find_gap_rev(size, align, 0..his[next()])
                        .ok()
                })
            });
            g.bench_function("btree_scan_fwd", |b| {
                b.iter(|| btree_scan_fwd(&bt, size, align, los[next()], u64::MAX))
            });
            g.bench_function("btree_scan_rev", |b| {
                b.iter(|| btree_scan_rev(&bt, size, align, 0, his[next()]))
            });
            g.bench_function("rangemap_gaps_fwd", |b| {
                b.iter(|| rangemap_fwd(&rmap, size, align, los[next()], u64::MAX))
            });
            g.finish();
        }
    }
}

/// Aligned against unaligned search (issue 12): 4 KiB requests at every
/// alignment from 4 KiB (the unaligned baseline: every address is
/// page-granular) to 1 GiB, lowest- and highest-first, on 256Ki ranges of
/// two shapes built by random-order inserts and churned (`benches/common`):
/// `vma` (1-16 pages, gaps 0-16 pages) and `guard` (a one-page hole after
/// every range: ~256Ki holes, almost none holding a 2 MiB-aligned start).
fn gap_align(c: &mut Criterion<ThreadTime>) {
    let n = 256usize << 10;
    for (shape, ranges) in [("vma", vma_layout(n, 12)), ("guard", guard_layout(n, 13))] {
        let (los, his) = windows(&ranges);
        let tree = maple_commits(&ranges, true);
        let bt = btree_churned(&ranges, true);
        let mut g = c.benchmark_group(format!("gap_align/{shape}/{}", n_label(n)));
        g.warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(800))
            .sample_size(10);
        for align in [PAGE, 64 << 10, 2 * MIB, 64 * MIB, GIB] {
            {
                let g = tree.pin();
                for (&lo, &hi) in los.iter().zip(&his) {
                    let f = g.try_find_gap(PAGE, align, lo..u64::MAX).ok();
                    assert_eq!(f, btree_scan_fwd(&bt, PAGE, align, lo, u64::MAX));
                    let r = g.try_find_gap_rev(PAGE, align, 0..hi).ok();
                    assert_eq!(r, btree_scan_rev(&bt, PAGE, align, 0, hi));
                }
            }
            let mut k = 0;
            let mut next = move || {
                k = (k + 1) % QUERIES;
                k
            };
            let a = label(align);
            g.bench_function(format!("fwd@{a}"), |b| {
                b.iter(|| {
                    tree.pin()
                        .try_find_gap(PAGE, align, los[next()]..u64::MAX)
                        .ok()
                })
            });
            g.bench_function(format!("rev@{a}"), |b| {
                b.iter(|| {
                    tree.pin()
                        .try_find_gap_rev(PAGE, align, 0..his[next()])
                        .ok()
                })
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = cpu_criterion();
    targets = gap, gap_align
}
criterion_main!(benches);
