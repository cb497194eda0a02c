//! Shared workload for the benches: a VMA-like layout of page-aligned ranges
//! and the competing index structures built from it.
//!
//! Every bench uses the same deterministic generator, so the numbers of
//! different benches and runs describe the same data.

#![allow(dead_code)] // each bench uses a different subset

use crossbeam_skiplist::SkipMap;
use maple_rcu::MapleTree;
use rangemap::RangeMap;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::RwLock;

pub const PAGE: u64 = 4096;
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;
/// Where the first range starts (page-aligned, user-space-like).
pub const BASE: u64 = 0x5555_0000_0000;

/// SplitMix64: tiny, deterministic, good enough for workloads.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
    pub fn index(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.index(i + 1);
            v.swap(i, j);
        }
    }
}

/// `n` sorted, non-overlapping, page-aligned ranges `start..end`, VMA-like:
/// sizes mostly 1-16 pages, some up to 1 MiB, a few up to 16 MiB; gaps of
/// 1-16 pages (never zero, so every gap holds misses), and one gap in 512 of
/// 2-64 MiB (where 2 MiB-aligned allocations fit).
pub fn layout(n: usize, seed: u64) -> Vec<(u64, u64)> {
    let mut rng = Rng::new(seed);
    let mut v = Vec::with_capacity(n);
    let mut pos = BASE;
    for _ in 0..n {
        let gap = if rng.index(512) == 0 {
            rng.range(512, 16384)
        } else {
            rng.range(1, 16)
        };
        let p = rng.index(100);
        let size = if p < 80 {
            rng.range(1, 16)
        } else if p < 98 {
            rng.range(17, 256)
        } else {
            rng.range(257, 4096)
        };
        let start = pos + gap * PAGE;
        let end = start + size * PAGE;
        v.push((start, end));
        pos = end;
    }
    v
}

/// `count` lookup addresses: half inside a random range (hits), half inside
/// the gap in front of a random range (misses), shuffled.
pub fn lookup_addrs(ranges: &[(u64, u64)], count: usize, seed: u64) -> Vec<u64> {
    let mut rng = Rng::new(seed);
    let mut v: Vec<u64> = (0..count)
        .map(|k| {
            let i = rng.index(ranges.len());
            let (s, e) = ranges[i];
            if k % 2 == 0 {
                rng.range(s, e - 1)
            } else {
                let prev_end = if i == 0 { BASE } else { ranges[i - 1].1 };
                rng.range(prev_end, s - 1)
            }
        })
        .collect();
    rng.shuffle(&mut v);
    v
}

/// The values stored with range `i`: `i` itself.
pub fn value(i: usize) -> u64 {
    i as u64
}

/// The order in which every structure is built: random, and the same for
/// all, so that node fill and heap placement are those of a map that grew
/// over time (a bulk build from sorted input would pack one contender's
/// nodes densely and in address order, flattering it at large N).
pub fn build_order(n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(0xb111d).shuffle(&mut order);
    order
}

/// A MapleTree holding `ranges` (one transaction, so that the build retires
/// nothing).
pub fn maple(ranges: &[(u64, u64)]) -> MapleTree<u64> {
    fill(MapleTree::new(), ranges)
}

/// `t` (empty) filled with `ranges` as by [`maple`].
pub fn fill(t: MapleTree<u64>, ranges: &[(u64, u64)]) -> MapleTree<u64> {
    let mut w = t.write();
    for i in build_order(ranges.len()) {
        let (s, e) = ranges[i];
        w.insert(s..e, value(i)).unwrap();
    }
    w.commit();
    t
}

/// `start -> (end, value)`.
pub fn btree(ranges: &[(u64, u64)]) -> BTreeMap<u64, (u64, u64)> {
    let mut m = BTreeMap::new();
    for i in build_order(ranges.len()) {
        let (s, e) = ranges[i];
        m.insert(s, (e, value(i)));
    }
    m
}

/// `(start, end, value)` sorted by start.
pub fn sorted_vec(ranges: &[(u64, u64)]) -> Vec<(u64, u64, u64)> {
    ranges
        .iter()
        .enumerate()
        .map(|(i, &(s, e))| (s, e, value(i)))
        .collect()
}

pub fn skipmap(ranges: &[(u64, u64)]) -> SkipMap<u64, (u64, u64)> {
    let m = SkipMap::new();
    for i in build_order(ranges.len()) {
        let (s, e) = ranges[i];
        m.insert(s, (e, value(i)));
    }
    m
}

pub fn rangemap(ranges: &[(u64, u64)]) -> RangeMap<u64, u64> {
    let mut m = RangeMap::new();
    for i in build_order(ranges.len()) {
        let (s, e) = ranges[i];
        m.insert(s..e, value(i));
    }
    m
}

// ---- point lookups: each returns (start, value) of the entry containing `a`.

#[inline]
pub fn btree_get(m: &BTreeMap<u64, (u64, u64)>, a: u64) -> Option<(u64, u64)> {
    let (&s, &(e, v)) = m.range(..=a).next_back()?;
    (a < e).then_some((s, v))
}

#[inline]
pub fn vec_get(v: &[(u64, u64, u64)], a: u64) -> Option<(u64, u64)> {
    let i = v.partition_point(|x| x.0 <= a).checked_sub(1)?;
    let (s, e, val) = v[i];
    (a < e).then_some((s, val))
}

#[inline]
pub fn skip_get(m: &SkipMap<u64, (u64, u64)>, a: u64) -> Option<(u64, u64)> {
    let ent = m.upper_bound(Bound::Included(&a))?;
    let (e, v) = *ent.value();
    (a < e).then_some((*ent.key(), v))
}

#[inline]
pub fn rangemap_get(m: &RangeMap<u64, u64>, a: u64) -> Option<(u64, u64)> {
    m.get_key_value(&a).map(|(r, &v)| (r.start, v))
}

#[inline]
pub fn rw_get(m: &RwLock<BTreeMap<u64, (u64, u64)>>, a: u64) -> Option<(u64, u64)> {
    btree_get(&m.read().unwrap(), a)
}

/// Folds a lookup result into a checksum (so nothing is optimised away).
#[inline(always)]
pub fn fold(acc: u64, r: Option<(u64, u64)>) -> u64 {
    match r {
        Some((s, v)) => acc.wrapping_add(s ^ v),
        None => acc.wrapping_add(1),
    }
}

/// The median of a sample (benches that time themselves report it).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Human-readable N (64, 4Ki, 256Ki, 1Mi).
pub fn n_label(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{}Mi", n >> 20)
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{}Ki", n >> 10)
    } else {
        n.to_string()
    }
}

/// Criterion measurement: CPU time of the benchmarking thread
/// (`CLOCK_THREAD_CPUTIME_ID`, user + system), not wall time.
///
/// The benches run on a 2-core machine shared with other builds; wall time
/// then counts whole time slices spent descheduled, which swamps
/// differences of a few ns. Thread CPU time counts only the work of the
/// measured thread (it still sees the cache pollution of the other
/// processes). Single-threaded benches only: work done by other threads is
/// not counted.
pub struct ThreadTime(criterion::measurement::WallTime);

pub fn thread_cpu_now() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant
    // every Linux supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl criterion::measurement::Measurement for ThreadTime {
    type Intermediate = std::time::Duration;
    type Value = std::time::Duration;
    fn start(&self) -> Self::Intermediate {
        thread_cpu_now()
    }
    fn end(&self, i: Self::Intermediate) -> Self::Value {
        thread_cpu_now() - i
    }
    fn add(&self, a: &Self::Value, b: &Self::Value) -> Self::Value {
        *a + *b
    }
    fn zero(&self) -> Self::Value {
        std::time::Duration::ZERO
    }
    fn to_f64(&self, v: &Self::Value) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn criterion::measurement::ValueFormatter {
        self.0.formatter()
    }
}

/// The criterion configuration of the single-threaded benches.
pub fn cpu_criterion() -> criterion::Criterion<ThreadTime> {
    criterion::Criterion::default().with_measurement(ThreadTime(criterion::measurement::WallTime))
}

// ---- issue 12 shapes: VMA-like ranges of 1-16 pages with gaps of 0-16 pages,
// built by random-order inserts, optionally churned afterwards.

/// `n` sorted ranges of 1-16 pages separated by gaps of 0-16 pages (a zero
/// gap makes two ranges touch), starting at `BASE`.
pub fn vma_layout(n: usize, seed: u64) -> Vec<(u64, u64)> {
    let mut rng = Rng::new(seed);
    let mut v = Vec::with_capacity(n);
    let mut pos = BASE;
    for _ in 0..n {
        let start = pos + rng.range(0, 16) * PAGE;
        let end = start + rng.range(1, 16) * PAGE;
        v.push((start, end));
        pos = end;
    }
    v
}

/// `n` one-to-sixteen-page ranges each followed by a one-page guard hole:
/// every hole is a free interval far too small to hold a 2 MiB-aligned
/// start (only those that happen to contain a 2 MiB boundary do).
pub fn guard_layout(n: usize, seed: u64) -> Vec<(u64, u64)> {
    let mut rng = Rng::new(seed);
    let mut v = Vec::with_capacity(n);
    let mut pos = BASE;
    for _ in 0..n {
        let start = pos + PAGE;
        let end = start + rng.range(1, 16) * PAGE;
        v.push((start, end));
        pos = end;
    }
    v
}

/// The churn applied to every contender after its random-order build: the
/// ranges at these indices are removed (in this order) and then inserted
/// again (in reverse order). Half of the ranges, chosen at random.
pub fn churn_order(n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(0xc4u64 << 8).shuffle(&mut order);
    order.truncate(n / 2);
    order
}

/// A MapleTree holding `ranges`, built by random-order inserts with one
/// commit each and, with `churn`, then put through `churn_order` (one
/// commit per remove and per insert). Waits for the retired nodes to be
/// reclaimed, so only the live version remains.
pub fn maple_commits(ranges: &[(u64, u64)], churn: bool) -> MapleTree<u64> {
    let t = MapleTree::new();
    for i in build_order(ranges.len()) {
        let (s, e) = ranges[i];
        t.insert(s..e, value(i)).unwrap();
    }
    if churn {
        let c = churn_order(ranges.len());
        for &i in &c {
            t.remove(ranges[i].0).unwrap();
        }
        for &i in c.iter().rev() {
            let (s, e) = ranges[i];
            t.insert(s..e, value(i)).unwrap();
        }
    }
    t.domain()
        .barrier()
        .expect("bench values do not panic on drop");
    t
}

/// A BTreeMap built and churned like `maple_commits`.
pub fn btree_churned(ranges: &[(u64, u64)], churn: bool) -> BTreeMap<u64, (u64, u64)> {
    let mut m = btree(ranges);
    if churn {
        let c = churn_order(ranges.len());
        for &i in &c {
            m.remove(&ranges[i].0).unwrap();
        }
        for &i in c.iter().rev() {
            let (s, e) = ranges[i];
            m.insert(s, (e, value(i)));
        }
    }
    m
}

/// As `lookup_addrs`, for layouts with zero gaps: misses are drawn only from
/// non-empty gaps.
pub fn vma_lookup_addrs(ranges: &[(u64, u64)], count: usize, seed: u64) -> Vec<u64> {
    let mut rng = Rng::new(seed);
    let mut v: Vec<u64> = (0..count)
        .map(|k| {
            loop {
                let i = rng.index(ranges.len());
                let (s, e) = ranges[i];
                if k % 2 == 0 {
                    break rng.range(s, e - 1);
                }
                let prev_end = if i == 0 { BASE } else { ranges[i - 1].1 };
                if prev_end < s {
                    break rng.range(prev_end, s - 1);
                }
            }
        })
        .collect();
    rng.shuffle(&mut v);
    v
}

/// The overwriting-store sequence of `benches/store.rs`, identical for
/// every contender: a fresh value on `start..start + len`, `start` a random
/// page in or just before a random entry of the layout, `len` 1-24 pages.
pub struct Stores {
    ranges: Vec<(u64, u64)>,
    rng: Rng,
    next_val: u64,
}

impl Stores {
    pub fn new(ranges: &[(u64, u64)]) -> Self {
        Self {
            ranges: ranges.to_vec(),
            rng: Rng::new(13),
            next_val: 1 << 40,
        }
    }

    pub fn next(&mut self) -> (std::ops::Range<u64>, u64) {
        let (s, e) = self.ranges[self.rng.index(self.ranges.len())];
        let pages = (e - s) / PAGE;
        let start = s - 8 * PAGE + self.rng.range(0, pages + 8) * PAGE;
        let len = self.rng.range(1, 24) * PAGE;
        self.next_val += 1;
        (start..start + len, self.next_val)
    }
}

/// Runs `op(thread)` `iters` times on each of two threads, started
/// together; wall time from the start until both finished (per operation
/// per thread, as criterion's `iter_custom` expects).
pub fn two_threads(
    iters: u64,
    op: std::sync::Arc<dyn Fn(u64) + Send + Sync>,
) -> std::time::Duration {
    use std::sync::{Arc, Barrier};
    let bar = Arc::new(Barrier::new(3));
    let hs: Vec<_> = (0..2u64)
        .map(|t| {
            let (bar, op) = (bar.clone(), op.clone());
            std::thread::spawn(move || {
                bar.wait();
                for _ in 0..iters {
                    op(t);
                }
                bar.wait();
            })
        })
        .collect();
    bar.wait();
    let t0 = std::time::Instant::now();
    bar.wait();
    let d = t0.elapsed();
    for h in hs {
        h.join().unwrap();
    }
    d
}
