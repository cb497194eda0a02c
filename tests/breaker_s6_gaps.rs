//! breaker6 on `gapfix` and `commit` (issue 12): gap searches and lookups on
//! narrow inner nodes (I11) against a plain model, with keys at one scale per
//! case (shift 0, 3, 12, 13, 21, 30: odd keys, multiples of 8, pages, ...),
//! at bases 0 and near `u64::MAX`, and query sizes taken from the tree's own
//! free intervals (exactly the gap, one less, one more, one scale unit more
//! or less: the edges of a scaled `ceil`), at alignments 1 .. 2^40, in
//! windows whose bounds sit inside gaps. After every mutation: `validate()`
//! (gap summaries, I11 shifts), contents and point lookups.

#[path = "common/rng.rs"]
mod rng;
#[path = "common/tree_model.rs"]
mod tree_model;

use maple_rcu::{MapleTree, ReadGuard};
use rng::Rng;
use std::ops::Range;
use tree_model::Model;

const ALIGNS: [u64; 9] = [
    1,
    2,
    8,
    1 << 12,
    1 << 13,
    1 << 21,
    1 << 30,
    1 << 40,
    1 << 63,
];

struct Case {
    t: MapleTree<u64>,
    m: Model,
    tag: u64,
    shift: u32,
    base: u64,
    /// Addresses used: `base + [0, span)`.
    span: u64,
    /// One key in `mixed` (0: none) is off this scale (an odd key or a
    /// multiple of 8 in between): a node's shift drops and comes back as
    /// such keys come and go (`Inner::set` in place or re-derived).
    mixed: u64,
}

impl Case {
    fn new(shift: u32, base: u64, span: u64) -> Self {
        Case {
            t: MapleTree::with_manual_reclaim(),
            m: Model::default(),
            tag: 0,
            shift,
            base,
            span,
            mixed: 0,
        }
    }

    /// A key at this case's scale in `base + [0, span]`.
    fn key(&self, r: &mut Rng) -> u64 {
        let units = self.span >> self.shift;
        let k = self.base + (r.below(units) << self.shift);
        if self.mixed != 0 && r.below(self.mixed) == 0 {
            let fine = r.below(1 << self.shift);
            k + if r.below(2) == 0 { fine } else { fine & !7 }
        } else {
            k
        }
    }

    fn range(&self, r: &mut Rng) -> Range<u64> {
        let a = self.key(r);
        let len = match r.below(4) {
            0 => 1 << self.shift,
            1 => (1 + r.below(4)) << self.shift,
            2 => (1 + r.below(64)) << self.shift,
            _ => (1 + r.below(1 << 16)) << self.shift,
        };
        let len = if self.mixed != 0 && r.below(self.mixed) == 0 {
            len - r.below(len)
        } else {
            len
        };
        let e = a.saturating_add(len).min(self.base + self.span);
        if e <= a {
            a - (1 << self.shift)..a
        } else {
            a..e
        }
    }

    fn step(&mut self, r: &mut Rng) {
        let rg = self.range(r);
        self.tag += 1;
        match r.below(10) {
            0..=5 => {
                let got = self.t.insert(rg.clone(), self.tag).is_ok();
                assert_eq!(
                    got,
                    self.m.insert(rg.clone(), self.tag).is_ok(),
                    "insert {rg:x?}"
                );
            }
            6 | 7 => {
                let mut w = self.t.write();
                w.store(rg.clone(), self.tag).unwrap();
                w.commit();
                self.m.store(rg.clone(), self.tag).unwrap();
            }
            8 => {
                let mut w = self.t.write();
                let n = w.erase(rg.clone()).unwrap();
                w.commit();
                assert_eq!(n, self.m.cut(rg.clone()), "erase {rg:x?}");
            }
            _ => {
                let a = rg.start;
                assert_eq!(self.t.remove(a), self.m.remove(a), "remove {a:#x}");
            }
        }
        self.t
            .validate()
            .unwrap_or_else(|e| panic!("shift {} after {rg:x?}: {e}", self.shift));
    }

    fn check_lookups(&self, r: &mut Rng) {
        let g = self.t.pin();
        let all: Vec<_> = g.iter().map(|(r, &v)| (r, v)).collect();
        let want: Vec<_> = self.m.map.iter().map(|(&s, &(e, v))| (s..e, v)).collect();
        assert_eq!(all, want, "contents, shift {}", self.shift);
        for _ in 0..64 {
            let a = self.key(r).saturating_add(r.below(3)).saturating_sub(1);
            let got = (g.get(a), g.next(a), g.prev(a));
            let got = [got.0, got.1, got.2].map(|e| e.map(|(r, &v)| (r, v)));
            let want = [self.m.get(a), self.m.next(a), self.m.prev(a)];
            assert_eq!(got, want, "get/next/prev {a:#x}");
        }
    }

    fn check_gaps(&self, r: &mut Rng, queries: usize) {
        let g = self.t.pin();
        let free = self.m.free();
        let unit = 1u64 << self.shift;
        // Huge sizes: size + align - 1 and its scaled form saturate.
        let longest = free.iter().map(|g| g.end - g.start).max().unwrap_or(0);
        let huge = [
            u64::MAX,
            u64::MAX - 1,
            1 << 63,
            (1 << 63) + 1,
            3 << 62,
            longest,
        ];
        let sizes = huge
            .into_iter()
            .chain([longest.saturating_add(1), longest - longest / 3]);
        // All of them after the fill, then after one step in 64.
        let n = if queries >= 100 || r.below(64) == 0 {
            8
        } else {
            0
        };
        for size in sizes.take(n) {
            for &align in &ALIGNS {
                for w in [0..u64::MAX, 1..u64::MAX, self.base..self.base + self.span] {
                    self.query(&g, size.max(1), align, w);
                }
            }
        }
        for q in 0..queries {
            // A size from a real gap's length, near its scaled edges.
            let gap = &free[r.below(free.len() as u64) as usize];
            let len = gap.end - gap.start;
            let size = match r.below(8) {
                0 => len,
                1 => len - 1,
                2 => len.saturating_add(1),
                3 => len.saturating_sub(unit),
                4 => len.saturating_add(unit),
                5 => 1,
                6 => unit + 1,
                _ => 1 + r.below(len.max(2)),
            }
            .max(1);
            let align = ALIGNS[r.below(ALIGNS.len() as u64) as usize];
            let within = match q % 4 {
                0 => 0..u64::MAX,
                1 => {
                    // Bounds inside gaps (or anywhere nearby).
                    let a = gap.start.saturating_add(r.below(len.max(1)));
                    let g2 = &free[r.below(free.len() as u64) as usize];
                    let b = g2
                        .start
                        .saturating_add(r.below((g2.end - g2.start).max(1)))
                        .saturating_add(1);
                    a.min(b)..a.max(b)
                }
                2 => {
                    let a = self.key(r);
                    let b = self.key(r);
                    a.min(b)..a.max(b).saturating_add(r.below(3))
                }
                _ => gap.start.saturating_sub(r.below(2))..gap.end.saturating_add(r.below(2)),
            };
            if within.is_empty() {
                continue;
            }
            self.query(&g, size, align, within);
        }
    }

    /// Both searches against the model.
    fn query(&self, g: &ReadGuard<'_, u64>, size: u64, align: u64, w: Range<u64>) {
        let ctx = format!(
            "shift {} size {size:#x} align {align:#x} in {w:x?} ({} entries)",
            self.shift,
            self.m.map.len()
        );
        let f = g.try_find_gap(size, align, w.clone()).ok();
        assert_eq!(
            f,
            self.m.find_gap(size, align, w.clone(), false),
            "fwd {ctx}"
        );
        let b = g.try_find_gap_rev(size, align, w.clone()).ok();
        assert_eq!(b, self.m.find_gap(size, align, w, true), "rev {ctx}");
    }
}

fn run(shift: u32, base: u64, span: u64, seed: u64, steps: usize, fill: usize) {
    run_mixed(shift, base, span, seed, steps, fill, 0)
}

fn run_mixed(shift: u32, base: u64, span: u64, seed: u64, steps: usize, fill: usize, mixed: u64) {
    let mut r = Rng(seed | 1);
    let mut c = Case::new(shift, base, span);
    c.mixed = mixed;
    // Empty tree first.
    c.check_gaps(&mut r, 8);
    for _ in 0..fill {
        let rg = c.range(&mut r);
        c.tag += 1;
        let _ =
            c.t.insert(rg.clone(), c.tag)
                .map(|_| c.m.insert(rg, c.tag).unwrap());
    }
    c.t.validate().unwrap();
    assert!(c.t.height() >= 2, "height {}", c.t.height());
    c.check_lookups(&mut r);
    c.check_gaps(&mut r, 200);
    for i in 0..steps {
        c.step(&mut r);
        if i % 4 == 0 {
            c.check_lookups(&mut r);
        }
        c.check_gaps(&mut r, 24);
    }
}

const SHIFTS: [u32; 6] = [0, 3, 12, 13, 21, 30];

#[test]
fn gaps_and_lookups_match_the_model_at_every_scale() {
    for (k, &s) in SHIFTS.iter().enumerate() {
        // Spans: narrow at this scale (< 2^32 units) and, for small shifts,
        // a span that crosses 2^32 units (wide nodes next to narrow ones).
        let spans = [(1u64 << 31) << s, (1u64 << 34) << s.min(29)];
        for (j, &span) in spans.iter().enumerate() {
            for base in [0, (u64::MAX - span) >> s << s] {
                run(
                    s,
                    base,
                    span,
                    0x9e37 + k as u64 * 31 + j as u64 * 7 + base % 97,
                    120,
                    600,
                );
            }
        }
    }
}

/// Dense small trees: spans of a few thousand units, so gaps are a few
/// units long and sizes hit the scale's rounding at every query.
#[test]
fn dense_trees_at_every_scale() {
    for (k, &s) in SHIFTS.iter().enumerate() {
        for base in [0u64, 1 << s, (u64::MAX - (1 << (15 + s))) >> s << s] {
            run(
                s,
                base,
                1 << (15 + s),
                0x51ed + k as u64 + base % 89,
                150,
                2500,
            );
        }
    }
}

/// Keys mostly at one scale, a few off it: stores, erases and removes move
/// the odd keys in and out of narrow inner nodes (their shift changes).
#[test]
fn mixed_scales_move_the_shift() {
    for (k, &s) in SHIFTS[1..].iter().enumerate() {
        for (j, mixed) in [3u64, 12, 40].into_iter().enumerate() {
            let span = if j == 1 {
                (1u64 << 31) << s
            } else {
                1 << (15 + s)
            };
            for base in [0u64, (u64::MAX - span) >> s << s] {
                let seed = 0x6a09 + k as u64 * 5 + j as u64 + base % 83;
                run_mixed(s, base, span, seed, 150, 2500, mixed);
            }
        }
    }
}

/// Long random variant: `cargo test --release --test breaker_s6_gaps -- --ignored`.
#[test]
#[ignore = "breaker6: long stress variant (minutes)"]
fn gaps_long() {
    for seed in 0..40u64 {
        for &s in &SHIFTS {
            let span = if seed % 2 == 0 {
                1 << (15 + s)
            } else {
                (1u64 << 31) << s
            };
            let base = if seed % 3 == 0 {
                (u64::MAX - span) >> s << s
            } else {
                seed << s
            };
            let mixed = [0, 3, 20][seed as usize % 3];
            run_mixed(s, base, span, seed * 1000 + s as u64, 400, 1500, mixed);
        }
    }
}
