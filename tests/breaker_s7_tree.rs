//! breaker7 on the tree's open garbage batch (issue 12, seventh session:
//! garbage.rs `Garbage::retire`/`close`, one grace-period request per
//! `POLL_EVERY` = 64 retiring commits, `WriteTxn` on the writer's `Core` in
//! place).
//!
//! * Readers pinned across 1..200 commits keep a snapshot of (range, value)
//!   read through the guard, and read every reference again at the end: a
//!   node or a drop-free value freed early is reused at once (node pool,
//!   the thread's value stash) by the next commit, so it shows as a changed
//!   value (or under ASan). Run for `u64` (drop-free: values ride in the
//!   open batch), `String` (drop glue: some commits `defer`, closing the
//!   batch; insert-only commits leave it open) and a tree sharing its
//!   domain with another tree whose commits and polls advance the domain.
//! * Memory stays bounded without any `reclaim` call or reader: 10^5 commits
//!   (a counting global allocator measures live bytes).
//!
//! ASan: `RUSTC_BOOTSTRAP=1 RUSTFLAGS=-Zsanitizer=address
//! CARGO_TARGET_DIR=target/asan cargo test --target x86_64-unknown-linux-gnu
//! --test breaker_s7_tree`.

#[path = "common/rng.rs"]
mod rng;

use maple_rcu::MapleTree;
use maple_rcu::srcu::Srcu;
use rng::Rng;
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// Live heap bytes of the whole test process.
struct Counting;
static LIVE: AtomicI64 = AtomicI64::new(0);
// SAFETY: forwards to `System`, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as i64 - l.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded.
        unsafe { System.realloc(p, l, n) }
    }
}
#[global_allocator]
static A: Counting = Counting;

/// Tests that measure `LIVE` run alone (the others allocate concurrently).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A value made from a number, read back as the number (so snapshots can
/// be compared whatever V is).
trait Val: Send + Sync + 'static {
    fn make(x: u64) -> Self;
    fn num(&self) -> u64;
}
impl Val for u64 {
    fn make(x: u64) -> Self {
        x
    }
    fn num(&self) -> u64 {
        *self
    }
}
impl Val for String {
    fn make(x: u64) -> Self {
        format!("v{x:016x}")
    }
    fn num(&self) -> u64 {
        assert!(
            self.len() == 17 && self.starts_with('v'),
            "corrupt {self:?}"
        );
        u64::from_str_radix(&self[1..], 16).expect("corrupt value")
    }
}
impl Val for [u64; 3] {
    fn make(x: u64) -> Self {
        [x, !x, x.rotate_left(17)]
    }
    fn num(&self) -> u64 {
        assert_eq!(*self, Self::make(self[0]), "corrupt value");
        self[0]
    }
}

/// One thread's commits on its own key window: inserts, removes, stores,
/// multi-step transactions (some aborted), every commit counted.
fn writer<V: Val>(t: &MapleTree<V>, who: u64, commits: &AtomicU64, stop: &AtomicBool, seed: u64) {
    let base = who << 40;
    let mut r = Rng(seed ^ (who + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut mine: BTreeMap<u64, u64> = BTreeMap::new();
    let mut next = who << 48;
    let key = |r: &mut Rng| base + r.below(400) * 16;
    while !stop.load(Ordering::Relaxed) {
        match r.below(8) {
            0..=2 => {
                let k = key(&mut r);
                next += 1;
                if t.insert(k..k + 8, V::make(next)).is_ok() {
                    mine.insert(k, next);
                }
            }
            3..=4 => {
                let k = key(&mut r);
                let seen = t.pin().get(k).map(|(r, v)| (r.start, v.num()));
                assert_eq!(seen, mine.get(&k).map(|&v| (k, v)), "get {k:#x}");
                let got = t.remove(k).map(|r| r.start);
                assert_eq!(got, mine.remove(&k).map(|_| k), "remove {k:#x}");
            }
            5 => {
                // Insert-only transaction (drop glue or not: no value
                // leaves the tree, so nothing is deferred).
                let mut w = t.write();
                let mut added = Vec::new();
                for _ in 0..3 {
                    let k = key(&mut r);
                    next += 1;
                    if w.insert(k..k + 8, V::make(next)).is_ok() {
                        added.push((k, next));
                    }
                }
                if r.below(4) == 0 {
                    drop(w);
                } else {
                    w.commit();
                    mine.extend(added);
                }
            }
            _ => {
                // Replace: remove + insert in one transaction.
                let Some((&k, _)) = mine.range(key(&mut r)..).next() else {
                    continue;
                };
                let mut w = t.write();
                assert!(w.remove(k).is_some());
                next += 1;
                w.insert(k..k + 8, V::make(next)).unwrap();
                w.commit();
                mine.insert(k, next);
            }
        }
        commits.fetch_add(1, Ordering::Relaxed);
    }
    let g = t.pin();
    let got: BTreeMap<u64, u64> = g
        .range(base..base + (1 << 40))
        .map(|(r, v)| (r.start, v.num()))
        .collect();
    assert_eq!(got, mine, "writer {who}'s window");
}

/// Readers pinned across `1..=200` commits of the others: every reference
/// read at pin time still reads the same value at the end of the pin.
fn reader<V: Val>(t: &MapleTree<V>, commits: &AtomicU64, stop: &AtomicBool, seed: u64) -> u64 {
    let mut r = Rng(seed ^ 0xbead);
    let mut pins = 0;
    while !stop.load(Ordering::Relaxed) {
        let g = t.pin();
        let seen: Vec<(Range<u64>, &V, u64)> = g.iter().map(|(r, v)| (r, v, v.num())).collect();
        let hold = 1 + r.below(200);
        let at = commits.load(Ordering::Relaxed);
        while commits.load(Ordering::Relaxed) < at + hold && !stop.load(Ordering::Relaxed) {
            thread::yield_now();
        }
        // Walk the pinned version again (nodes) and every reference (values).
        let again: Vec<(Range<u64>, u64)> = g.iter().map(|(r, v)| (r, v.num())).collect();
        assert_eq!(again.len(), seen.len(), "pinned version changed length");
        for ((r1, v, n), (r2, n2)) in seen.iter().zip(&again) {
            assert_eq!((r1, *n), (r2, *n2), "pinned version changed");
            assert_eq!(v.num(), *n, "value under {r1:?} changed under a pin");
        }
        pins += 1;
    }
    pins
}

fn race<V: Val>(t: Arc<MapleTree<V>>, extra: impl FnOnce(&AtomicBool) + Send + 'static, secs: f64) {
    let commits = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut hs = Vec::new();
    for w in 0..2u64 {
        let (t, c, s) = (t.clone(), commits.clone(), stop.clone());
        hs.push(thread::spawn(move || {
            writer(&t, w, &c, &s, 7);
            0
        }));
    }
    for k in 0..2u64 {
        let (t, c, s) = (t.clone(), commits.clone(), stop.clone());
        hs.push(thread::spawn(move || reader(&t, &c, &s, k)));
    }
    {
        let (t, s) = (t.clone(), stop.clone());
        hs.push(thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                t.reclaim().unwrap();
                thread::yield_now();
            }
            0
        }));
    }
    let s = stop.clone();
    let ex = thread::spawn(move || extra(&s));
    thread::sleep(std::time::Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let pins: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
    ex.join().unwrap();
    assert!(pins > 0);
    assert!(commits.load(Ordering::Relaxed) > 200, "too few commits");
    t.validate().unwrap();
}

fn secs() -> f64 {
    std::env::var("B7_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0)
}

#[test]
fn pinned_readers_across_commits_drop_free_values() {
    let _s = serial();
    race(Arc::new(MapleTree::<u64>::new()), |_| {}, secs());
    race(
        Arc::new(MapleTree::<[u64; 3]>::with_manual_reclaim()),
        |_| {},
        secs(),
    );
}

#[test]
fn pinned_readers_across_commits_values_with_drop_glue() {
    let _s = serial();
    race(Arc::new(MapleTree::<String>::new()), |_| {}, secs());
    race(
        Arc::new(MapleTree::<String>::with_manual_reclaim()),
        |_| {},
        secs(),
    );
}

/// Two trees on one domain: the raced tree (drop-free values, open batch),
/// and another whose commits defer values and whose thread polls and
/// synchronizes the shared domain.
#[test]
fn pinned_readers_across_commits_shared_domain() {
    let _s = serial();
    for auto in [false, true] {
        let d = if auto {
            Srcu::with_reclaimer()
        } else {
            Arc::new(Srcu::new())
        };
        let a = Arc::new(MapleTree::<u64>::with_domain(d.clone()));
        let b = Arc::new(MapleTree::<String>::with_domain(d.clone()));
        let other = move |stop: &AtomicBool| {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                b.insert(i % 50..i % 50 + 1, format!("{i}")).unwrap();
                b.remove(i % 50).unwrap();
                match i % 3 {
                    0 => d.poll().unwrap(),
                    1 => b.reclaim().unwrap(),
                    _ => d.synchronize(),
                }
                i += 1;
            }
        };
        race(a, other, secs());
    }
}

/// 10^5 retiring commits with no `reclaim` call and no reader keep the
/// tree's garbage bounded (about `PRESSED` + a period of commits' nodes):
/// the live heap after 10^5 commits is no more than a little above that
/// after 10^4.
#[test]
fn memory_bounded_without_reclaim() {
    let _s = serial();
    fn run<V: Val>(t: &MapleTree<V>, n: u64, from: u64) {
        for i in from..from + n {
            let k = (i % 64) * 10;
            t.insert(k..k + 5, V::make(i)).unwrap();
            t.remove(k).unwrap();
        }
    }
    fn check<V: Val>(t: MapleTree<V>, what: &str) {
        for k in 0..2000u64 {
            t.insert(100_000 + k * 10..100_000 + k * 10 + 5, V::make(k))
                .unwrap();
        }
        run(&t, 10_000, 0);
        let base = LIVE.load(Ordering::Relaxed);
        run(&t, 100_000, 20_000);
        let after = LIVE.load(Ordering::Relaxed);
        // The first 10^4 commits reached the steady state; 10^5 more must
        // not add more than a steady-state amount (256 KiB is far below
        // 10^5 commits' node garbage: several hundred bytes each).
        assert!(
            after - base < 256 << 10,
            "{what}: live heap grew {} bytes over 10^5 commits",
            after - base
        );
        drop(t);
    }
    check(MapleTree::<u64>::new(), "u64, new");
    check(MapleTree::<u64>::with_manual_reclaim(), "u64, manual");
    check(
        MapleTree::<[u64; 3]>::with_manual_reclaim(),
        "[u64;3], manual",
    );
    // Values with drop glue in a tree with its reclaimer thread: the
    // reclaimer drops them as fast as the scheduler lets it, so how far the
    // domain's queue and the tree's node pool grow depends on the machine's
    // load. After `barrier` every value is dropped, the drained queue has
    // given its peak capacity back (DESIGN S12; exact unit test
    // `srcu::tests::drained_queue_gives_a_burst_capacity_back`), and what
    // stays is the node pool (at most 1 MiB, `POOL_BYTES`) and the garbage
    // lists: 1.1-1.4 MB measured. 4 * 10^5 commits' values unfreed would
    // be over 20 MB; the queue's retained peak was 1.7-2.4 MB.
    {
        let t = MapleTree::<String>::new();
        let base = LIVE.load(Ordering::Relaxed);
        run(&t, 400_000, 0);
        t.domain().barrier().unwrap();
        let grew = LIVE.load(Ordering::Relaxed) - base;
        assert!(grew < 2 << 20, "String, new: live heap grew {grew} bytes");
    }
    let d = Arc::new(Srcu::new());
    let other = MapleTree::<String>::with_domain(d.clone());
    other.insert(0..1, "x".into()).unwrap();
    check(
        MapleTree::<u64>::with_domain(d.clone()),
        "u64, shared manual domain",
    );
}
