//! breaker9 on the commit that queues removed values' drops after the
//! writer lock is released (`DropLater`, docs/DESIGN.md §2.5 "Values' drops
//! are queued after the unlock") and on S12 (a drained domain queue gives a
//! burst's capacity back).
//!
//! * Re-entrant drops: a removed value's `Drop` inserts and removes on its
//!   own tree and on another tree of the same domain, calls `reclaim`,
//!   `poll`, `call` and `retire`; one commit removing one value (`One`) or
//!   many (`Many`). A watchdog turns a deadlock into a failure.
//! * Panicking drops: every panic reported once (by `reclaim`, `poll`,
//!   `barrier`, or the tree's drop), no other value leaked.
//! * Premature drops: readers pinned across other threads' commits check
//!   that every value they reached is undropped (a per-value flag set in
//!   `Drop`, and a seal the drop breaks) while a driver thread runs
//!   `reclaim`/`poll`/`barrier`/`synchronize`.
//! * Leaks: counted values are all dropped, exactly once, after mixes of
//!   committed and aborted transactions, tree drops with values still
//!   queued, shared domains.
//! * Memory: a manual tree whose values have drop glue but take no memory
//!   (a zero-sized type) keeps its node garbage bounded without any reclaim
//!   (only the domain's queue grows, by one entry per commit); once driven,
//!   the drained queue gives its memory back (S12).
//!
//! ASan: `RUSTC_BOOTSTRAP=1 RUSTFLAGS=-Zsanitizer=address
//! CARGO_TARGET_DIR=target/asan cargo test --target x86_64-unknown-linux-gnu
//! --test breaker_s9_tree`.

#[path = "common/rng.rs"]
mod rng;

#[path = "common/watchdog.rs"]
mod watchdog;
use maple_rcu::MapleTree;
use maple_rcu::srcu::{Panicked, Srcu};
use rng::Rng;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};
use watchdog::within;

// ---------------------------------------------------------------------------
// Live heap bytes (for the memory tests).

struct Counting;
static HEAP: AtomicI64 = AtomicI64::new(0);
// SAFETY: forwards to `System`, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        HEAP.fetch_add(l.size() as i64, Relaxed);
        // SAFETY: forwarded.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        HEAP.fetch_sub(l.size() as i64, Relaxed);
        // SAFETY: forwarded.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        HEAP.fetch_add(l.size() as i64, Relaxed);
        // SAFETY: forwarded.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        HEAP.fetch_add(n as i64 - l.size() as i64, Relaxed);
        // SAFETY: forwarded.
        unsafe { System.realloc(p, l, n) }
    }
}
#[global_allocator]
static A: Counting = Counting;

/// Every test runs alone: they share the value counters and the heap count.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    // The bombs' expected panics are not printed (the rest are).
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&"bomb") {
                default(info);
            }
        }));
    });
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn secs() -> f64 {
    std::env::var("B9_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.5)
}

// ---------------------------------------------------------------------------
// Tracked values: an id, a seal the drop breaks, a dropped flag per id.

const MAGIC: u64 = 0x5eed_f00d_dead_beef;
const IDS: usize = 1 << 24;
static NEXT_ID: AtomicU64 = AtomicU64::new(0);
static DROPPED: [AtomicU64; IDS / 64] = [const { AtomicU64::new(0) }; IDS / 64];
/// Tracked values alive (made and not yet dropped).
static LIVE: AtomicI64 = AtomicI64::new(0);

fn dropped(id: u64) -> bool {
    DROPPED[(id / 64) as usize].load(SeqCst) & (1 << (id % 64)) != 0
}

/// Ids left before the flag table is full (writers stop well before).
fn ids_left() -> bool {
    NEXT_ID.load(Relaxed) < (IDS - (1 << 20)) as u64
}

struct Tracked {
    id: u64,
    seal: u64,
}

impl Tracked {
    fn new() -> Self {
        let id = NEXT_ID.fetch_add(1, Relaxed);
        assert!((id as usize) < IDS, "out of ids");
        LIVE.fetch_add(1, Relaxed);
        Self {
            id,
            seal: id ^ MAGIC,
        }
    }

    /// The id, after checking the value was not dropped (read through a
    /// reference a pinned reader got from the tree).
    fn check(&self) -> u64 {
        // SAFETY: plain reads of our own fields; volatile so that a drop
        // racing with us is not optimised away.
        let (id, seal) = unsafe {
            (
                std::ptr::read_volatile(&self.id),
                std::ptr::read_volatile(&self.seal),
            )
        };
        assert_eq!(seal, id ^ MAGIC, "value {id} read after its drop (seal)");
        assert!(!dropped(id), "value {id} read under a pin after its drop");
        id
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let id = self.id;
        assert_eq!(self.seal, id ^ MAGIC, "value {id} dropped twice (seal)");
        let bit = 1 << (id % 64);
        let old = DROPPED[(id / 64) as usize].fetch_or(bit, SeqCst);
        assert_eq!(old & bit, 0, "value {id} dropped twice");
        // SAFETY: our own field; volatile so the poisoning is not elided.
        unsafe { std::ptr::write_volatile(&mut self.seal, 0) };
        LIVE.fetch_sub(1, Relaxed);
    }
}

fn live() -> i64 {
    LIVE.load(SeqCst)
}

/// Drives `d` until no tracked value is alive beyond `keep`, summing the
/// panics it reports. Fails after 10 s.
fn drain_to(d: &Srcu, keep: i64) -> usize {
    let t0 = Instant::now();
    let mut panics = 0;
    loop {
        if let Err(e) = d.barrier() {
            panics += e.count();
        }
        if live() <= keep {
            return panics;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{} values never dropped",
            live() - keep
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// Removes every entry in one commit (the `Many` path).
fn clear<V: Send>(t: &MapleTree<V>) {
    let mut w = t.write();
    w.clear();
    w.commit();
}

// ---------------------------------------------------------------------------
// Re-entrant drops.

/// What a re-entrant value's drop may reach: its tree, a second tree on the
/// same domain (weakly: the values live in the trees).
struct Ctx {
    a: Weak<MapleTree<Reent>>,
    b: Weak<MapleTree<Reent>>,
    calls: Arc<AtomicUsize>,
}

struct Reent {
    t: Tracked,
    depth: u32,
    ctx: Option<Arc<Ctx>>,
}

impl Reent {
    fn leaf() -> Self {
        Self {
            t: Tracked::new(),
            depth: 0,
            ctx: None,
        }
    }
}

/// A key for a re-entrant insert: above every key the tests use directly.
fn reent_key(id: u64, salt: u64) -> u64 {
    (1 << 40) + ((id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ salt) % 4096) * 16
}

impl Drop for Reent {
    fn drop(&mut self) {
        let Some(ctx) = self.ctx.take() else { return };
        let id = self.t.id;
        for (n, w) in [&ctx.a, &ctx.b].into_iter().enumerate() {
            let Some(t) = w.upgrade() else { continue };
            // Insert a child (which re-enters in its turn when removed), and
            // remove what sits at two other keys: one alone (`One`), then
            // several in one transaction (`Many`).
            let child = Reent {
                t: Tracked::new(),
                depth: self.depth.saturating_sub(1),
                ctx: (self.depth > 1).then(|| ctx.clone()),
            };
            let _ = t.insert(reent_key(id, n as u64)..reent_key(id, n as u64) + 8, child);
            t.remove(reent_key(id, 7 + n as u64));
            {
                let mut w = t.write();
                for s in 0..4 {
                    w.remove(reent_key(id, 100 + s));
                }
                w.insert(
                    reent_key(id, 200 + n as u64)..reent_key(id, 200 + n as u64) + 8,
                    Reent::leaf(),
                )
                .ok();
                if id.is_multiple_of(5) {
                    drop(w); // aborted: the leaf is dropped here
                } else {
                    w.commit();
                }
            }
            // Driving the domain from inside one of its entries: returns
            // (the runner is busy); panics reported here are not ours.
            let _ = t.reclaim();
            let _ = t.domain().poll();
            let calls = ctx.calls.clone();
            t.domain().call(move || {
                calls.fetch_add(1, Relaxed);
            });
            t.domain().retire(Box::new(Tracked::new()));
            if id.is_multiple_of(3) {
                t.domain().synchronize();
            }
        }
    }
}

fn reent(depth: u32, ctx: &Arc<Ctx>) -> Reent {
    Reent {
        t: Tracked::new(),
        depth,
        ctx: Some(ctx.clone()),
    }
}

/// Re-entrant drops on one tree and on another tree of the same domain,
/// run by `reclaim`, `poll`, `barrier` and (with the reclaimer) the
/// reclaimer thread; then both trees dropped with values still queued.
/// Every value is dropped once; every `call` runs.
fn reentrant_round(d: Arc<Srcu>, shared: bool) {
    let base = live();
    let a = Arc::new(MapleTree::<Reent>::with_domain(d.clone()));
    let b = if shared {
        Arc::new(MapleTree::<Reent>::with_domain(d.clone()))
    } else {
        Arc::new(MapleTree::<Reent>::with_manual_reclaim())
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let ctx = Arc::new(Ctx {
        a: Arc::downgrade(&a),
        b: Arc::downgrade(&b),
        calls: calls.clone(),
    });
    let mut r = Rng(0x1234);
    for i in 0..400u64 {
        let k = i % 64 * 16;
        let t = if i % 2 == 0 { &a } else { &b };
        t.insert(k..k + 8, reent(1 + (i % 3) as u32, &ctx)).ok();
        match r.below(6) {
            0 => {
                t.remove(k);
            }
            1 => {
                // Many: several removals in one commit.
                let mut w = t.write();
                for j in 0..8 {
                    w.remove(j * 16 + (i % 8) * 128);
                }
                w.commit();
            }
            2 => {
                // Aborted transaction with removals: nothing dropped, the
                // removed values stay.
                // A failed insert's value is dropped after the
                // transaction: its drop writes to the tree.
                let mut w = t.write();
                w.remove(k);
                let failed = w.insert(k + 9..k + 10, reent(2, &ctx)).err();
                drop(w);
                drop(failed);
            }
            3 => clear(t),
            4 => {
                let _ = t.reclaim();
            }
            _ => {
                let _ = d.poll();
            }
        }
        if i % 50 == 0 {
            d.barrier().unwrap();
        }
    }
    a.validate().unwrap();
    b.validate().unwrap();
    drop(ctx);
    // The trees go away with values in them and drops queued; drops running
    // now (tree drop, drain, domain) find the trees gone.
    drop(a);
    drop(b);
    assert_eq!(drain_to(&d, base), 0, "a drop panicked");
    assert_eq!(live(), base, "values leaked or dropped twice");
    assert!(calls.load(Relaxed) > 0);
}

#[test]
fn reentrant_drops_manual_domain() {
    let _s = serial();
    within(60, "reentrant manual", || {
        reentrant_round(Arc::new(Srcu::new()), true);
        reentrant_round(Arc::new(Srcu::new()), false);
    });
}

#[test]
fn reentrant_drops_on_the_reclaimer() {
    let _s = serial();
    within(60, "reentrant reclaimer", || {
        reentrant_round(Srcu::with_reclaimer(), true);
        reentrant_round(Srcu::with_reclaimer(), false);
    });
}

/// A tree that owns its domain, whose values' drops write to it, reclaim it
/// and hold the last `Arc` to it (so the tree is dropped inside one of its
/// own domain's entries).
#[test]
fn reentrant_drops_own_domain_last_arc_in_a_value() {
    let _s = serial();
    within(60, "own domain", || {
        for auto in [false, true] {
            let base = live();
            let a = Arc::new(if auto {
                MapleTree::<Reent>::new()
            } else {
                MapleTree::<Reent>::with_manual_reclaim()
            });
            let ctx = Arc::new(Ctx {
                a: Arc::downgrade(&a),
                b: Weak::new(),
                calls: Arc::new(AtomicUsize::new(0)),
            });
            for i in 0..300u64 {
                a.insert(i * 16..i * 16 + 8, reent(2, &ctx)).unwrap();
                if i % 3 == 0 {
                    a.remove((i / 2) * 16);
                }
            }
            // The last strong reference goes into a value and is dropped
            // with it (a plain holder with drop glue via its Arc).
            struct Holder(#[allow(dead_code)] Arc<MapleTree<Reent>>);
            drop(ctx);
            if auto {
                // In the tree's own domain: the reclaimer thread drops the
                // tree inside one of its domain's entries.
                a.domain().retire(Box::new(Holder(a.clone())));
                drop(a);
            } else {
                let d = Arc::new(Srcu::new());
                d.retire(Box::new(Holder(a)));
                d.barrier().unwrap();
            }
            // With the reclaimer, a drop running there may hold a strong
            // reference (upgraded) a little longer: the tree is then
            // dropped there. Either way every value is dropped soon.
            let t0 = Instant::now();
            while live() != base && t0.elapsed() < Duration::from_secs(10) {
                thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(live(), base, "auto={auto}: values never dropped");
        }
    });
}

// ---------------------------------------------------------------------------
// Panicking drops.

/// A tracked value whose drop panics (after the tracked part is dropped)
/// when `boom`, and optionally first removes an entry of its tree.
struct Bomb {
    _t: Tracked,
    boom: bool,
    tree: Option<Weak<MapleTree<Bomb>>>,
}

impl Drop for Bomb {
    fn drop(&mut self) {
        if let Some(t) = self.tree.take().and_then(|w| w.upgrade()) {
            // Re-enters the tree before panicking (its lock is free).
            t.remove(1 << 30);
            t.insert((1 << 30) + 1..(1 << 30) + 2, Bomb::quiet(false))
                .ok();
            t.remove((1 << 30) + 1);
        }
        if self.boom {
            panic!("bomb");
        }
    }
}

impl Bomb {
    fn quiet(boom: bool) -> Self {
        Self {
            _t: Tracked::new(),
            boom,
            tree: None,
        }
    }
}

/// Counts the payloads of `r` (each must be the bombs' message).
fn count(r: Result<(), Panicked>) -> usize {
    match r {
        Ok(()) => 0,
        Err(e) => {
            let n = e.count();
            for p in e.into_payloads() {
                let m = p
                    .downcast_ref::<&str>()
                    .copied()
                    .or(p.downcast_ref::<String>().map(String::as_str));
                assert_eq!(m, Some("bomb"), "unexpected payload");
            }
            n
        }
    }
}

/// Removals one per commit (`One`) and many per commit (`Many`, `clear`),
/// some values panicking, some re-entering: every panic is reported exactly
/// once across `reclaim`/`poll`/`barrier`, and every value is dropped.
/// `bombs` counts panics queued on the domain before (another tree's).
fn panicking_round(
    t: Arc<MapleTree<Bomb>>,
    mut bombs: usize,
    drive: &dyn Fn(&MapleTree<Bomb>) -> usize,
) {
    // The other tree's queued bombs are still alive.
    let base = live() - bombs as i64;
    let mut reported = 0;
    let mut r = Rng(99);
    for round in 0..40u64 {
        for i in 0..32u64 {
            let boom = r.below(4) == 0;
            let tree = (r.below(3) == 0).then(|| Arc::downgrade(&t));
            if t.insert(
                i * 16..i * 16 + 8,
                Bomb {
                    _t: Tracked::new(),
                    boom,
                    tree,
                },
            )
            .is_ok()
                && boom
            {
                bombs += 1;
            }
        }
        match round % 4 {
            0 => {
                for i in 0..32 {
                    t.remove(i * 16);
                }
            }
            1 => {
                let mut w = t.write();
                for i in 0..32 {
                    w.remove(i * 16);
                }
                w.commit();
            }
            2 => {
                // Half one by one, then the rest in one commit; an aborted
                // removal in between drops nothing.
                for i in 0..16 {
                    t.remove(i * 16);
                }
                let mut w = t.write();
                w.remove(16 * 16);
                drop(w);
                clear(&t);
            }
            _ => {
                let mut w = t.write();
                w.retain(|r, _| r.start % 32 == 0);
                w.commit();
                clear(&t);
            }
        }
        reported += drive(&t);
    }
    // Whatever is still queued: the domain's barrier reports it.
    let t0 = Instant::now();
    while live() > base {
        reported += count(t.domain().barrier());
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "values never dropped"
        );
    }
    reported += count(t.domain().barrier());
    assert_eq!(reported, bombs, "panics reported");
    assert_eq!(live(), base, "values leaked");
}

#[test]
fn panicking_drops_reported_once_manual() {
    let _s = serial();
    within(60, "panics manual", || {
        panicking_round(Arc::new(MapleTree::with_manual_reclaim()), 0, &|t| {
            count(t.reclaim())
        });
        panicking_round(Arc::new(MapleTree::with_manual_reclaim()), 0, &|t| {
            count(t.domain().poll())
        });
        panicking_round(Arc::new(MapleTree::with_manual_reclaim()), 0, &|t| {
            count(t.domain().barrier())
        });
        let d = Arc::new(Srcu::new());
        let other = MapleTree::<Bomb>::with_domain(d.clone());
        other.insert(0..1, Bomb::quiet(true)).unwrap();
        other.remove(0);
        panicking_round(Arc::new(MapleTree::with_domain(d.clone())), 1, &|t| {
            count(t.reclaim())
        });
    });
}

#[test]
fn panicking_drops_reported_once_reclaimer() {
    let _s = serial();
    within(60, "panics reclaimer", || {
        panicking_round(Arc::new(MapleTree::new()), 0, &|t| count(t.reclaim()));
        panicking_round(Arc::new(MapleTree::new()), 0, &|_| 0);
        let d = Srcu::with_reclaimer();
        panicking_round(Arc::new(MapleTree::with_domain(d.clone())), 0, &|t| {
            count(t.domain().poll())
        });
    });
}

/// A tree dropped with panicking values both in it and still queued: its
/// drop runs them all and re-raises one panic; nothing leaks.
#[test]
fn tree_drop_with_panicking_values_queued_leaks_nothing() {
    let _s = serial();
    for auto in [false, true] {
        let base = live();
        let t = if auto {
            MapleTree::new()
        } else {
            MapleTree::with_manual_reclaim()
        };
        let g = t.pin(); // holds every removal in the queue
        for i in 0..100u64 {
            t.insert(i * 16..i * 16 + 8, Bomb::quiet(i % 7 == 0))
                .unwrap();
        }
        for i in 0..50u64 {
            t.remove(i * 16);
        }
        let mut w = t.write();
        for i in 50..80u64 {
            w.remove(i * 16);
        }
        w.commit();
        drop(g);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(t)));
        // The reclaimer may have run (and kept) some panics already; the
        // drop re-raises the first of those it ran itself.
        assert!(auto || r.is_err(), "the tree's drop reported no panic");
        assert_eq!(live(), base, "auto={auto}: values leaked");
    }
}

// ---------------------------------------------------------------------------
// Premature drops: pinned readers against removing writers and a driver.

/// One writer on its own key window: single removals (`One`), replacements,
/// multi-removal commits (`Many`), aborted removals, `take` handles dropped
/// unready, `clear` of nothing else's keys via `retain`.
fn race_writer(t: &MapleTree<Tracked>, who: u64, stop: &AtomicBool, commits: &AtomicU64) {
    let base = who << 32;
    let mut r = Rng(0xabcd ^ who);
    let key = |r: &mut Rng| base + r.below(256) * 16;
    while !stop.load(Relaxed) && ids_left() {
        match r.below(10) {
            0..=2 => {
                let k = key(&mut r);
                let _ = t.insert(k..k + 8, Tracked::new());
            }
            3 => {
                t.remove(key(&mut r));
            }
            4 => {
                // Replace: one value out, one in.
                let k = key(&mut r);
                let mut w = t.write();
                w.remove(k);
                let _ = w.insert(k..k + 8, Tracked::new());
                w.commit();
            }
            5 | 6 => {
                // Many values out in one commit.
                let mut w = t.write();
                for _ in 0..1 + r.below(12) {
                    w.remove(key(&mut r));
                }
                w.commit();
            }
            7 => {
                // Aborted: the removed values stay in the tree, undropped.
                let mut w = t.write();
                for _ in 0..4 {
                    w.remove(key(&mut r));
                }
                let k = key(&mut r);
                let _ = w.insert(k + 9..k + 10, Tracked::new());
                drop(w);
            }
            8 => {
                if let Some((_, h)) = t.take(key(&mut r)) {
                    drop(h); // not ready: queued on the domain
                }
            }
            _ => {
                let lo = key(&mut r);
                let mut w = t.write();
                w.retain(|rg, _| !(lo..lo + 64).contains(&rg.start));
                w.commit();
            }
        }
        commits.fetch_add(1, Relaxed);
    }
}

/// Pins, collects references to the values of a random window, waits for
/// some commits of the others, checks every reference again (undropped,
/// same id).
fn race_reader(t: &MapleTree<Tracked>, seed: u64, stop: &AtomicBool, commits: &AtomicU64) -> u64 {
    let mut r = Rng(seed);
    let mut checked = 0;
    while !stop.load(Relaxed) {
        let g = t.pin();
        let who = r.below(2);
        let lo = (who << 32) + r.below(256) * 16;
        let seen: Vec<(&Tracked, u64)> = g
            .range(lo..lo + 64 * 16)
            .map(|(_, v)| (v, v.check()))
            .collect();
        let hold = r.below(50);
        let at = commits.load(Relaxed);
        let t0 = Instant::now();
        while commits.load(Relaxed) < at + hold
            && !stop.load(Relaxed)
            && t0.elapsed() < Duration::from_millis(20)
        {
            for (v, id) in &seen {
                assert_eq!(v.check(), *id, "value changed under a pin");
            }
            thread::yield_now();
        }
        for (v, id) in &seen {
            assert_eq!(v.check(), *id, "value changed under a pin");
        }
        checked += seen.len() as u64;
    }
    checked
}

/// Drives the domain: `reclaim`, `poll`, `barrier`, `synchronize`.
fn race_driver(t: &MapleTree<Tracked>, stop: &AtomicBool) {
    let mut i = 0u64;
    while !stop.load(Relaxed) {
        match i % 8 {
            0..=3 => t.reclaim().unwrap(),
            4 | 5 => t.domain().poll().unwrap(),
            6 => t.domain().barrier().unwrap(),
            _ => t.domain().synchronize(),
        }
        i += 1;
        if i.is_multiple_of(16) {
            thread::yield_now();
        }
    }
}

fn race(t: Arc<MapleTree<Tracked>>, driver: bool, secs: f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(AtomicU64::new(0));
    let mut ws = Vec::new();
    for who in 0..2 {
        let (t, s, c) = (t.clone(), stop.clone(), commits.clone());
        ws.push(thread::spawn(move || race_writer(&t, who, &s, &c)));
    }
    let mut rs = Vec::new();
    for k in 0..2 {
        let (t, s, c) = (t.clone(), stop.clone(), commits.clone());
        rs.push(thread::spawn(move || race_reader(&t, k + 1, &s, &c)));
    }
    let dr = driver.then(|| {
        let (t, s) = (t.clone(), stop.clone());
        thread::spawn(move || race_driver(&t, &s))
    });
    let t0 = Instant::now();
    while t0.elapsed().as_secs_f64() < secs
        && !ws.iter().any(|h| h.is_finished())
        && !rs.iter().any(|h| h.is_finished())
    {
        thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Relaxed);
    for h in ws {
        h.join().unwrap();
    }
    let checked: u64 = rs.into_iter().map(|h| h.join().unwrap()).sum();
    if let Some(h) = dr {
        h.join().unwrap();
    }
    assert!(checked > 0, "readers saw nothing");
    assert!(commits.load(Relaxed) > 1000, "too few commits");
    t.validate().unwrap();
}

#[test]
fn pinned_readers_never_see_a_dropped_value_manual() {
    let _s = serial();
    let base = live();
    let t = Arc::new(MapleTree::with_manual_reclaim());
    race(t.clone(), true, secs());
    drop(t);
    assert_eq!(live(), base, "values leaked");
}

#[test]
fn pinned_readers_never_see_a_dropped_value_reclaimer() {
    let _s = serial();
    let base = live();
    // Only the reclaimer thread drops values in the first run.
    let t = Arc::new(MapleTree::new());
    race(t.clone(), false, secs());
    race(t.clone(), true, secs() / 2.0);
    drop(t);
    assert_eq!(live(), base, "values leaked");
}

/// Two trees on one domain, each raced; the values of the dropped trees
/// are dropped by the domain afterwards.
#[test]
fn pinned_readers_never_see_a_dropped_value_shared_domain() {
    let _s = serial();
    for auto in [false, true] {
        let base = live();
        let d = if auto {
            Srcu::with_reclaimer()
        } else {
            Arc::new(Srcu::new())
        };
        let a = Arc::new(MapleTree::with_domain(d.clone()));
        let b = Arc::new(MapleTree::with_domain(d.clone()));
        let bb = b.clone();
        let h = thread::spawn(move || race(bb, true, secs() / 2.0));
        race(a.clone(), !auto, secs() / 2.0);
        h.join().unwrap();
        drop((a, b));
        assert_eq!(drain_to(&d, base), 0);
    }
}

// ---------------------------------------------------------------------------
// Memory bounds.

/// A value with drop glue and no memory: only the domain's queue entry and
/// the tree's node garbage remain to be measured.
struct Z;
static Z_DROPS: AtomicU64 = AtomicU64::new(0);
impl Drop for Z {
    fn drop(&mut self) {
        Z_DROPS.fetch_add(1, Relaxed);
    }
}

fn heap() -> i64 {
    HEAP.load(SeqCst)
}

/// `n` commits, each inserting and removing one `Z` (one removed value with
/// drop glue per commit: the `One` path); every 8th removes two at once.
fn churn_z(t: &MapleTree<Z>, from: u64, n: u64) {
    for i in from..from + n {
        let k = (i % 64) * 16;
        t.insert(k..k + 8, Z).unwrap();
        if i % 8 == 0 {
            t.insert(k + 8..k + 9, Z).unwrap();
            let mut w = t.write();
            w.remove(k);
            w.remove(k + 8);
            w.commit();
        } else {
            t.remove(k).unwrap();
        }
    }
}

/// A manual tree whose values have drop glue, never reclaimed: its node
/// garbage must stay bounded (the period tags it: DESIGN §2.5, since a
/// commit's `defer` no longer does); only the domain's queue grows, one
/// entry (32 bytes) per commit. Then one `barrier` drops every value and
/// the drained queue gives its memory back (S12).
#[test]
fn manual_tree_of_drop_glue_values_keeps_node_garbage_bounded() {
    let _s = serial();
    let t = MapleTree::<Z>::with_manual_reclaim();
    for k in 0..3000u64 {
        t.insert((1 << 30) + k * 16..(1 << 30) + k * 16 + 8, Z)
            .unwrap();
    }
    assert!(t.height() >= 2);
    let z0 = Z_DROPS.load(Relaxed);
    churn_z(&t, 0, 20_000);
    let base = heap();
    const N: u64 = 200_000;
    churn_z(&t, 20_000, N);
    let grew = heap() - base;
    // Node garbage unbounded: >= 2 nodes of 256 bytes per commit (> 100 MB);
    // the queue: 32 bytes per entry, up to twice that while it doubles.
    assert!(
        grew < (N * 80) as i64,
        "live heap grew {grew} bytes over {N} commits ({} per commit)",
        grew / N as i64
    );
    assert_eq!(
        Z_DROPS.load(Relaxed),
        z0,
        "a manual tree dropped without a call"
    );
    t.domain().barrier().unwrap();
    t.reclaim().unwrap();
    assert_eq!(Z_DROPS.load(Relaxed) - z0, 220_000 + 220_000 / 8);
    let kept = heap() - base;
    // The drained queue keeps at most QUEUE_KEEP (1024) entries' capacity.
    assert!(
        kept < 256 << 10,
        "after the barrier {kept} bytes are still held (queue capacity kept?)"
    );
}

/// A reader holds grace periods back during a burst of commits with values
/// that own memory (`String`), on the reclaimer: after it leaves and a
/// `barrier`, the live heap is back near where it started.
#[test]
fn burst_held_by_a_reader_gives_memory_back_after_barrier() {
    let _s = serial();
    for auto in [true, false] {
        let t = if auto {
            MapleTree::<String>::new()
        } else {
            MapleTree::<String>::with_manual_reclaim()
        };
        for i in 0..20_000u64 {
            let k = (i % 64) * 16;
            t.insert(k..k + 8, format!("warm {i:>20}")).unwrap();
            t.remove(k).unwrap();
        }
        t.domain().barrier().unwrap();
        let base = heap();
        let g = t.pin();
        for i in 0..200_000u64 {
            let k = (i % 64) * 16;
            t.insert(k..k + 8, format!("burst {i:>20}")).unwrap();
            t.remove(k).unwrap();
            if !auto && i % 1000 == 0 {
                t.reclaim().unwrap(); // nothing can pass: the reader
            }
        }
        let peak = heap() - base;
        assert!(peak > 8 << 20, "the reader held nothing back? {peak}");
        drop(g);
        t.domain().barrier().unwrap();
        t.reclaim().unwrap();
        // One more period so the tree's own garbage batches are recycled.
        for i in 0..200u64 {
            t.insert(i * 16..i * 16 + 8, String::new()).unwrap();
            t.remove(i * 16).unwrap();
        }
        t.domain().barrier().unwrap();
        t.reclaim().unwrap();
        let kept = heap() - base;
        assert!(
            kept < 2 << 20,
            "auto={auto}: {kept} bytes kept after the burst (peak {peak})"
        );
    }
}

/// After a burst held back by a reader, the writers do not stop: a writer
/// thread keeps committing (one `Z` removed per commit) while another
/// thread drives the domain (`reclaim`, or the reclaimer thread). The
/// queue's burst capacity must be given back while the churn goes on, not
/// only once everything stops (S12 shrinks only a queue drained empty).
#[test]
fn burst_capacity_given_back_under_continued_churn() {
    let _s = serial();
    for auto in [false, true] {
        let t = Arc::new(if auto {
            MapleTree::<Z>::new()
        } else {
            MapleTree::<Z>::with_manual_reclaim()
        });
        churn_z(&t, 0, 20_000);
        t.domain().barrier().unwrap();
        t.reclaim().unwrap();
        let base = heap();
        let g = t.pin();
        churn_z(&t, 0, 300_000);
        let peak = heap() - base;
        drop(g);
        let stop = Arc::new(AtomicBool::new(false));
        let w = {
            let (t, stop) = (t.clone(), stop.clone());
            thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Relaxed) {
                    churn_z(&t, i, 100);
                    i += 100;
                }
            })
        };
        let t0 = Instant::now();
        let mut low = i64::MAX;
        while t0.elapsed() < Duration::from_secs(2) {
            if !auto {
                t.reclaim().unwrap();
            } else {
                thread::sleep(Duration::from_millis(1));
            }
            low = low.min(heap() - base);
        }
        stop.store(true, Relaxed);
        w.join().unwrap();
        assert!(
            low < 2 << 20,
            "auto={auto}: while the churn went on, the live heap never fell \
             below {low} bytes above the start (burst peak {peak})"
        );
    }
}
