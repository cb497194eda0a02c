//! A JIT-style code registry: modules (code regions) come and go under one
//! writer while readers map program counters to modules.
//!
//! The registry holds one module per 64 KiB slot of a code window; the
//! writer replaces a random slot's module (unload, then load a new one of a
//! new size) at a fixed rate, as a JIT does, and readers look up random PCs
//! in the window (about half hit code, half the padding after it).

use crate::common::Rng;
use arc_swap::ArcSwap;
use maple_rcu::MapleTree;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// What a lookup finds: a loaded module's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    pub id: u64,
    pub code: Range<u64>,
}

/// Where the code window starts.
pub const CODE_BASE: u64 = 0x7f00_0000_0000;
/// Each module lives in its own slot of this size (4-64 KiB of code).
pub const SLOT: u64 = 64 << 10;

/// A code registry: one writer (`load`/`unload`), any number of readers.
pub trait Registry: Send + Sync + Sized {
    const NAME: &'static str;
    fn new() -> Self;
    /// Publishes `m` (its range is free).
    fn load(&self, m: Module);
    /// Removes the module that is exactly `code`; returns its id.
    fn unload(&self, code: Range<u64>) -> u64;
    /// The id of the module whose code contains `pc`.
    fn lookup(&self, pc: u64) -> Option<u64>;
    /// Unloads the module at exactly `old` and loads `new` in one step that
    /// readers see all at once (no PC resolves to nothing in between);
    /// returns the old id.
    fn replace(&self, old: Range<u64>, new: Module) -> u64;
}

/// `MapleTree`: lock-free reads (one `pin` per lookup), copy-on-write
/// writes; unload is `remove_exact`, which refuses anything but the exact
/// module.
pub struct Maple(MapleTree<Module>);

impl Registry for Maple {
    const NAME: &'static str = "MapleTree";
    fn new() -> Self {
        Self(MapleTree::new())
    }
    fn load(&self, m: Module) {
        self.0.insert(m.code.clone(), m).unwrap();
    }
    fn unload(&self, code: Range<u64>) -> u64 {
        // take_exact hands the module back after a grace period; here only
        // its id is wanted, which may be read right away.
        let id = self.0.pin().get(code.start).unwrap().1.id;
        self.0.remove_exact(code).unwrap();
        id
    }
    fn lookup(&self, pc: u64) -> Option<u64> {
        self.0.pin().get(pc).map(|(_, m)| m.id)
    }
    fn replace(&self, old: Range<u64>, new: Module) -> u64 {
        // One transaction: one commit, one published version.
        let mut w = self.0.write();
        let id = w.get(old.start).unwrap().1.id;
        w.remove_exact(old).unwrap();
        w.insert(new.code.clone(), new).unwrap();
        w.commit();
        id
    }
}

/// `RwLock<BTreeMap>` keyed by start: readers share the lock's counter.
pub struct RwBTree(RwLock<BTreeMap<u64, Module>>);

impl Registry for RwBTree {
    const NAME: &'static str = "RwLock<BTreeMap>";
    fn new() -> Self {
        Self(RwLock::new(BTreeMap::new()))
    }
    fn load(&self, m: Module) {
        self.0.write().unwrap().insert(m.code.start, m);
    }
    fn unload(&self, code: Range<u64>) -> u64 {
        let m = self.0.write().unwrap().remove(&code.start).unwrap();
        assert_eq!(m.code, code);
        m.id
    }
    fn lookup(&self, pc: u64) -> Option<u64> {
        let g = self.0.read().unwrap();
        let (_, m) = g.range(..=pc).next_back()?;
        (pc < m.code.end).then_some(m.id)
    }
    fn replace(&self, old: Range<u64>, new: Module) -> u64 {
        let mut g = self.0.write().unwrap();
        let m = g.remove(&old.start).unwrap();
        assert_eq!(m.code, old);
        g.insert(new.code.start, new);
        m.id
    }
}

/// `ArcSwap<Vec>` sorted by start: lock-free reads, and every write copies
/// the whole vector.
pub struct SwapVec(ArcSwap<Vec<Module>>);

impl Registry for SwapVec {
    const NAME: &'static str = "ArcSwap<Vec>";
    fn new() -> Self {
        Self(ArcSwap::from_pointee(Vec::new()))
    }
    fn load(&self, m: Module) {
        let mut v = Vec::clone(&self.0.load());
        let i = v.partition_point(|x| x.code.start < m.code.start);
        v.insert(i, m);
        self.0.store(Arc::new(v));
    }
    fn unload(&self, code: Range<u64>) -> u64 {
        let mut v = Vec::clone(&self.0.load());
        let i = v.partition_point(|x| x.code.start < code.start);
        let m = v.remove(i);
        assert_eq!(m.code, code);
        self.0.store(Arc::new(v));
        m.id
    }
    fn lookup(&self, pc: u64) -> Option<u64> {
        let v = self.0.load();
        let i = v.partition_point(|x| x.code.start <= pc);
        let m = v.get(i.checked_sub(1)?)?;
        (pc < m.code.end).then_some(m.id)
    }
    fn replace(&self, old: Range<u64>, new: Module) -> u64 {
        // One copy; `new` lands where `old` was (its slot), so order holds.
        let mut v = Vec::clone(&self.0.load());
        let i = v.partition_point(|x| x.code.start < old.start);
        assert_eq!(v[i].code, old);
        let id = std::mem::replace(&mut v[i], new).id;
        self.0.store(Arc::new(v));
        id
    }
}

/// The module for slot `slot` with identity `id`: 4-64 KiB of code at the
/// slot's start.
fn module(rng: &mut Rng, slot: u64, id: u64) -> Module {
    let start = CODE_BASE + slot * SLOT;
    Module {
        id,
        code: start..start + rng.range(1, 16) * 4096,
    }
}

/// The registry's initial contents: one module per slot.
pub fn populate<R: Registry>(r: &R, slots: u64) -> Vec<Range<u64>> {
    let mut rng = Rng::new(7);
    (0..slots)
        .map(|s| {
            let m = module(&mut rng, s, s);
            let code = m.code.clone();
            r.load(m);
            code
        })
        .collect()
}

/// Random PCs in the code window (the same for every contender).
pub fn pcs(slots: u64, count: usize, seed: u64) -> Vec<u64> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|_| CODE_BASE + rng.range(0, slots * SLOT - 1))
        .collect()
}

/// One writer step: replaces a random slot's module (one atomic
/// [`Registry::replace`]). Returns the next id.
pub fn churn<R: Registry>(r: &R, live: &mut [Range<u64>], rng: &mut Rng, id: u64) -> u64 {
    let s = rng.index(live.len());
    let m = module(rng, s as u64, id);
    let old = std::mem::replace(&mut live[s], m.code.clone());
    r.replace(old, m);
    id + 1
}

/// A write period that means "no writes" (the readers' baseline).
pub const IDLE: Duration = Duration::MAX;

/// What one registry run measured.
#[derive(Debug, Clone, Copy)]
pub struct RegistryRun {
    /// Lookups per second, all readers together.
    pub lookups_per_s: f64,
    /// Fraction of lookups that found a module.
    pub hit_rate: f64,
    /// The readers' CPU time per lookup (ns): what a lookup costs,
    /// independent of how much CPU the readers got on a shared machine.
    pub cpu_ns_per_lookup: f64,
    /// Module replacements (unload + load) per second the writer achieved.
    pub writes_per_s: f64,
}

/// Runs `readers` lookup threads and one writer for `secs`, the writer
/// replacing one module every `write_period` (`Duration::ZERO`: flat out;
/// [`IDLE`]: never).
pub fn run<R: Registry>(
    slots: u64,
    readers: usize,
    secs: f64,
    write_period: Duration,
) -> RegistryRun {
    let reg = R::new();
    let mut live = populate(&reg, slots);
    let stop = AtomicBool::new(false);
    let lookups = AtomicU64::new(0);
    let hits = AtomicU64::new(0);
    let cpu_ns = AtomicU64::new(0);
    let dur = Duration::from_secs_f64(secs);
    let mut writes = 0u64;
    std::thread::scope(|s| {
        for t in 0..readers {
            let (reg, stop, lookups, hits, cpu_ns) = (&reg, &stop, &lookups, &hits, &cpu_ns);
            s.spawn(move || {
                let cpu0 = crate::common::thread_cpu_now();
                let pcs = pcs(slots, 1 << 16, 100 + t as u64);
                let (mut n, mut h) = (0u64, 0u64);
                'outer: loop {
                    for chunk in pcs.chunks(1024) {
                        for &pc in chunk {
                            h += reg.lookup(pc).is_some() as u64;
                        }
                        n += chunk.len() as u64;
                        if stop.load(Ordering::Relaxed) {
                            break 'outer;
                        }
                    }
                }
                let cpu = crate::common::thread_cpu_now() - cpu0;
                cpu_ns.fetch_add(cpu.as_nanos() as u64, Ordering::Relaxed);
                lookups.fetch_add(n, Ordering::Relaxed);
                hits.fetch_add(h, Ordering::Relaxed);
            });
        }
        let mut rng = Rng::new(11);
        let mut id = slots;
        let t0 = Instant::now();
        let mut next = t0;
        while t0.elapsed() < dur {
            if write_period == IDLE {
                std::thread::sleep(dur.saturating_sub(t0.elapsed()));
                continue;
            }
            id = churn(&reg, &mut live, &mut rng, id);
            writes += 1;
            if !write_period.is_zero() {
                next += write_period;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    let n = lookups.load(Ordering::Relaxed) as f64;
    RegistryRun {
        lookups_per_s: n / secs,
        hit_rate: hits.load(Ordering::Relaxed) as f64 / n,
        cpu_ns_per_lookup: cpu_ns.load(Ordering::Relaxed) as f64 / n,
        writes_per_s: writes as f64 / secs,
    }
}

/// Checks that every contender answers the same PCs the same way, before
/// and after `churns` module replacements.
pub fn agree(slots: u64, churns: usize) {
    let (a, b, c) = (Maple::new(), RwBTree::new(), SwapVec::new());
    let mut live = [
        populate(&a, slots),
        populate(&b, slots),
        populate(&c, slots),
    ];
    let pcs = pcs(slots, 10_000, 5);
    let check = || {
        for &p in &pcs {
            let x = a.lookup(p);
            assert_eq!((b.lookup(p), c.lookup(p)), (x, x), "pc {p:#x}");
        }
    };
    check();
    let mut rngs = [Rng::new(1), Rng::new(1), Rng::new(1)];
    for k in 0..churns as u64 {
        churn(&a, &mut live[0], &mut rngs[0], slots + k);
        churn(&b, &mut live[1], &mut rngs[1], slots + k);
        churn(&c, &mut live[2], &mut rngs[2], slots + k);
    }
    check();
}
