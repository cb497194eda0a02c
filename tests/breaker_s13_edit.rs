//! breaker13 on commit 5ee95f6 (`retire.rs::edit_fast` and the per-thread
//! reuse of an edit's vectors, `SPARE`), through the public API only.
//!
//! * `random_ops_match_a_linux_merge_model`: random FIXED mmaps (private
//!   and shared anonymous, files at contiguous and non-contiguous offsets,
//!   two file ids, two protections, GROWSDOWN), munmaps, mprotects and
//!   madvise DONTFORK/DOFORK/WIPEONFORK in a 48-page window; after every
//!   call `vmas()` must equal an independent model (a sorted `Vec` cut and
//!   merged with Linux's `vma_merge` rules: only new pieces merge) and
//!   `check()` must pass.
//! * `mapping_between_neighbours_merges_exactly`: the fast path's cases
//!   spelled out (hole with a mergeable prev, next, both, neither; file
//!   offsets off by one page; shared never merges).
//! * `munmap_of_many_vmas_around_the_fast_limit`: unmaps over 1..=12 VMAs
//!   (the fast path stops at 8) with partial first/last VMAs, every page
//!   value outside the range kept, frames balanced.
//! * `two_spaces_interleaved_on_one_thread`: writers on two spaces and a
//!   forked child alternate on one thread (mremap moves with both edits in
//!   one `Edit`, brk, stack growth), VMA counts and page values checked.
//! * `concurrent_writers_every_policy`: threads map, write, mprotect,
//!   mremap and unmap their own windows (adjacent, so placed VMAs merge
//!   across threads) under every `FaultPolicy` and both lockings.
//! * `placed_blocks_of_several_threads_merge_and_split`: placed mmaps of
//!   three threads merge into shared VMAs; each thread checks, mprotects
//!   and unmaps only its own blocks; values, frames and `check()` at the
//!   end.
//! * `writer_in_a_thread_local_destructor`: a writer call made from a
//!   thread-local destructor (after `SPARE` was destroyed) must work as it
//!   did before 5ee95f6. Runs in a child process (a TLS destructor that
//!   panics aborts the process).
//! * `thread_keeps_no_memory_of_a_big_unmap`: after a thread unmapped
//!   20,000 VMAs in one call and dropped its space, what its exit frees
//!   (thread-local caches) must stay small (`SPARE` keeps the largest log
//!   a thread ever made: 4.5 MB here, 36 KB before 5ee95f6). Child
//!   process, counting allocator.

use maple_rcu::mm::{
    Access, AddressSpace, Advice, FaultPolicy, MapFlags, MapSource, Prot, RemapFlags, VmaInfo,
    WriterLocking,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};

/// Live heap bytes of the process (meaningful in the child processes,
/// which run one test alone).
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: forwards to `System`, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(l) }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs test `name` alone in a child process with `env` set; its status
/// and stderr.
fn child(name: &str, env: &str) -> (std::process::ExitStatus, String) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(env, "1")
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const P: u64 = 4096;
const BASE: u64 = 0x1000_0000;
const WINDOW: u64 = 48;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x % n
    }
}

/// A model VMA: what `vmas()` shows plus the flags that only decide merges.
#[derive(Clone, Debug, PartialEq)]
struct M {
    start: u64,
    end: u64,
    prot: Prot,
    shared: bool,
    growsdown: bool,
    /// (id, offset of `start`)
    file: Option<(u64, u64)>,
    dontfork: bool,
    wipeonfork: bool,
    new: bool,
}

impl M {
    fn slice(&self, s: u64, e: u64) -> M {
        let mut m = self.clone();
        m.file = m.file.map(|(id, off)| (id, off + (s - self.start)));
        m.start = s;
        m.end = e;
        m.new = false;
        m
    }

    /// Linux's `is_mergeable_vma` + file offset continuity; shared
    /// anonymous memory never merges (each mmap is its own shmem object).
    fn merges(&self, n: &M) -> bool {
        self.end == n.start
            && self.prot == n.prot
            && self.shared == n.shared
            && self.growsdown == n.growsdown
            && self.dontfork == n.dontfork
            && self.wipeonfork == n.wipeonfork
            && match (self.file, n.file) {
                (None, None) => !self.shared,
                (Some((a, o)), Some((b, p))) => a == b && o + (self.end - self.start) == p,
                _ => false,
            }
    }

    fn info(&self) -> VmaInfo {
        VmaInfo {
            range: self.start..self.end,
            prot: self.prot,
            shared: self.shared,
            growsdown: self.growsdown,
            source: match self.file {
                None => MapSource::Anonymous,
                Some((id, offset)) => MapSource::File { id, offset },
            },
            name: None,
        }
    }
}

#[derive(Default)]
struct Model(Vec<M>);

impl Model {
    /// Cuts `[s, e)` out and adds `new` (inside it), merging new pieces
    /// with each other and with their neighbours.
    fn edit(&mut self, s: u64, e: u64, new: Vec<M>) {
        let mut out = Vec::new();
        for v in self.0.drain(..) {
            if v.end <= s || e <= v.start {
                out.push(v);
                continue;
            }
            if v.start < s {
                out.push(v.slice(v.start, s));
            }
            if e < v.end {
                out.push(v.slice(e, v.end));
            }
        }
        out.extend(new.into_iter().map(|mut m| {
            m.new = true;
            m
        }));
        out.sort_by_key(|m| m.start);
        let mut merged: Vec<M> = Vec::new();
        for m in out {
            if let Some(l) = merged.last_mut()
                && (l.new || m.new)
                && l.merges(&m)
            {
                l.end = m.end;
                l.new = true;
                continue;
            }
            merged.push(m);
        }
        for m in &mut merged {
            m.new = false;
        }
        self.0 = merged;
    }

    fn covered(&self, s: u64, e: u64) -> bool {
        let mut cur = s;
        for v in &self.0 {
            if v.end <= cur || v.start >= e {
                continue;
            }
            if v.start > cur {
                return false;
            }
            cur = v.end;
        }
        cur >= e
    }

    /// The pieces of `[s, e)` (covered) with `f` applied.
    fn pieces(&self, s: u64, e: u64, f: impl Fn(&mut M)) -> Vec<M> {
        self.0
            .iter()
            .filter(|v| v.start < e && s < v.end)
            .map(|v| {
                let mut m = v.slice(v.start.max(s), v.end.min(e));
                f(&mut m);
                m
            })
            .collect()
    }

    fn infos(&self) -> Vec<VmaInfo> {
        self.0.iter().map(M::info).collect()
    }
}

fn anon(start: u64, end: u64, prot: Prot, shared: bool) -> M {
    M {
        start,
        end,
        prot,
        shared,
        growsdown: false,
        file: None,
        dontfork: false,
        wipeonfork: false,
        new: true,
    }
}

fn window(mm: &AddressSpace) -> Vec<VmaInfo> {
    mm.vmas()
        .into_iter()
        .filter(|v| v.range.start >= BASE && v.range.end <= BASE + WINDOW * P * 2)
        .collect()
}

const FIXED_ANON: MapFlags = MapFlags::PRIVATE
    .union(MapFlags::ANONYMOUS)
    .union(MapFlags::FIXED);

fn random_run(seed: u64, steps: usize, mm: &AddressSpace) {
    let mut rng = Rng(seed);
    let mut model = Model::default();
    let rw = Prot::READ | Prot::WRITE;
    for step in 0..steps {
        let a = BASE + rng.below(WINDOW) * P;
        let n = 1 + rng.below(8);
        let e = a + n * P;
        let prot = if rng.below(3) == 0 { Prot::READ } else { rw };
        let what;
        match rng.below(10) {
            0..=2 => {
                let shared = rng.below(5) == 0;
                let growsdown = !shared && rng.below(8) == 0;
                let mut f = if shared {
                    MapFlags::SHARED | MapFlags::ANONYMOUS | MapFlags::FIXED
                } else {
                    FIXED_ANON
                };
                if growsdown {
                    f |= MapFlags::GROWSDOWN;
                }
                what = format!("mmap anon {a:#x}+{n} {prot:?} {f:?}");
                mm.mmap(Some(a), n * P, prot, f).unwrap();
                let mut m = anon(a, e, prot, shared);
                m.growsdown = growsdown;
                model.edit(a, e, vec![m]);
            }
            3..=5 => {
                let id = 1 + rng.below(2);
                // Mostly the offset that continues a mapping of the file at
                // address = BASE + offset; sometimes one page off.
                let off = (a - BASE) + if rng.below(4) == 0 { P } else { 0 };
                let shared = rng.below(4) == 0;
                let f = if shared {
                    MapFlags::SHARED | MapFlags::FIXED
                } else {
                    MapFlags::PRIVATE | MapFlags::FIXED
                };
                what = format!("mmap file {id} off {off:#x} at {a:#x}+{n} {prot:?} {f:?}");
                mm.mmap_file(Some(a), n * P, prot, f, id, off).unwrap();
                let mut m = anon(a, e, prot, shared);
                m.file = Some((id, off));
                model.edit(a, e, vec![m]);
            }
            6 | 7 => {
                what = format!("munmap {a:#x}+{n}");
                mm.munmap(a, n * P).unwrap();
                model.edit(a, e, Vec::new());
            }
            8 => {
                if !model.covered(a, e) {
                    continue;
                }
                what = format!("mprotect {a:#x}+{n} {prot:?}");
                mm.mprotect(a, n * P, prot).unwrap();
                let new = model.pieces(a, e, |m| m.prot = prot);
                model.edit(a, e, new);
            }
            _ => {
                if !model.covered(a, e) {
                    continue;
                }
                let adv = match rng.below(4) {
                    0 => Advice::DontFork,
                    1 => Advice::DoFork,
                    2 => Advice::WipeOnFork,
                    _ => Advice::KeepOnFork,
                };
                if adv == Advice::WipeOnFork
                    && model
                        .pieces(a, e, |_| {})
                        .iter()
                        .any(|m| m.shared || m.file.is_some())
                {
                    continue;
                }
                what = format!("madvise {a:#x}+{n} {adv:?}");
                mm.madvise(a, n * P, adv).unwrap();
                let new = model.pieces(a, e, |m| match adv {
                    Advice::DontFork => m.dontfork = true,
                    Advice::DoFork => m.dontfork = false,
                    Advice::WipeOnFork => m.wipeonfork = true,
                    _ => m.wipeonfork = false,
                });
                model.edit(a, e, new);
            }
        }
        assert_eq!(
            window(mm),
            model.infos(),
            "seed {seed:#x} step {step}: after {what}\n{}",
            mm.maps_string()
        );
        mm.check()
            .unwrap_or_else(|err| panic!("seed {seed:#x} step {step} {what}: {err}"));
    }
}

#[test]
fn random_ops_match_a_linux_merge_model() {
    for seed in 1..=60u64 {
        let mm = AddressSpace::new();
        random_run(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1, 150, &mm);
    }
    // The same under the global writer lock (munmap takes the planned path).
    for seed in 1..=10u64 {
        let mm = AddressSpace::with_locking(FaultPolicy::PerVmaLock, WriterLocking::Global);
        random_run(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1, 150, &mm);
    }
}

#[test]
fn mapping_between_neighbours_merges_exactly() {
    let rw = Prot::READ | Prot::WRITE;
    let a = |i: u64| BASE + i * P;
    let ranges = |mm: &AddressSpace| -> Vec<(u64, u64)> {
        window(mm)
            .iter()
            .map(|v| ((v.range.start - BASE) / P, (v.range.end - BASE) / P))
            .collect()
    };
    // prev merges, next does not (other prot).
    let mm = AddressSpace::new();
    mm.mmap(Some(a(0)), 2 * P, rw, FIXED_ANON).unwrap();
    mm.mmap(Some(a(3)), P, Prot::READ, FIXED_ANON).unwrap();
    mm.mmap(Some(a(2)), P, rw, FIXED_ANON).unwrap();
    assert_eq!(ranges(&mm), [(0, 3), (3, 4)]);
    // next merges, prev does not.
    mm.munmap(a(2), P).unwrap();
    mm.mmap(Some(a(2)), P, Prot::READ, FIXED_ANON).unwrap();
    assert_eq!(ranges(&mm), [(0, 2), (2, 4)]);
    assert_eq!(window(&mm)[1].prot, Prot::READ);
    // both merge (general path).
    mm.munmap(a(2), P).unwrap();
    mm.mprotect(a(3), P, rw).unwrap();
    mm.mmap(Some(a(2)), P, rw, FIXED_ANON).unwrap();
    assert_eq!(ranges(&mm), [(0, 4)]);
    mm.check().unwrap();

    // Files: the prev keeps its offset, the next's offset is replaced by
    // the new spec's.
    let fx = MapFlags::PRIVATE | MapFlags::FIXED;
    let mm = AddressSpace::new();
    mm.mmap_file(Some(a(0)), 2 * P, rw, fx, 5, 10 * P).unwrap();
    mm.mmap_file(Some(a(2)), P, rw, fx, 5, 12 * P).unwrap();
    assert_eq!(ranges(&mm), [(0, 3)]);
    assert_eq!(
        window(&mm)[0].source,
        MapSource::File {
            id: 5,
            offset: 10 * P
        }
    );
    mm.mmap_file(Some(a(6)), P, rw, fx, 5, 20 * P).unwrap();
    mm.mmap_file(Some(a(5)), P, rw, fx, 5, 19 * P).unwrap();
    assert_eq!(ranges(&mm), [(0, 3), (5, 7)]);
    assert_eq!(
        window(&mm)[1].source,
        MapSource::File {
            id: 5,
            offset: 19 * P
        }
    );
    // Off by one page on either side, another id, shared-vs-private: no merge.
    mm.mmap_file(Some(a(3)), P, rw, fx, 5, 14 * P).unwrap();
    mm.mmap_file(Some(a(4)), P, rw, fx, 6, 18 * P).unwrap();
    assert_eq!(ranges(&mm), [(0, 3), (3, 4), (4, 5), (5, 7)]);
    mm.munmap(a(3), 2 * P).unwrap();
    mm.mmap_file(
        Some(a(3)),
        P,
        rw,
        MapFlags::SHARED | MapFlags::FIXED,
        5,
        13 * P,
    )
    .unwrap();
    assert_eq!(ranges(&mm), [(0, 3), (3, 4), (5, 7)]);
    // Then both merge: offsets 10..13 then 13..14 then the hole 4..5 at 18.
    mm.munmap(a(3), P).unwrap();
    mm.mmap_file(Some(a(3)), P, rw, fx, 5, 13 * P).unwrap();
    mm.mmap_file(Some(a(4)), P, rw, fx, 5, 18 * P).unwrap();
    assert_eq!(ranges(&mm), [(0, 4), (4, 7)]);
    mm.check().unwrap();

    // Shared anonymous never merges, in either direction.
    let sh = MapFlags::SHARED | MapFlags::ANONYMOUS | MapFlags::FIXED;
    let mm = AddressSpace::new();
    mm.mmap(Some(a(0)), P, rw, sh).unwrap();
    mm.mmap(Some(a(2)), P, rw, sh).unwrap();
    mm.mmap(Some(a(1)), P, rw, sh).unwrap();
    assert_eq!(ranges(&mm), [(0, 1), (1, 2), (2, 3)]);
    // Each keeps its own object: values stay apart.
    for i in 0..3 {
        mm.write(a(i), 100 + i).unwrap();
    }
    for i in 0..3 {
        assert_eq!(mm.read(a(i)).unwrap(), 100 + i);
    }
    // DONTFORK differs: no merge with prev; WIPEONFORK prev, same next.
    let mm = AddressSpace::new();
    mm.mmap(Some(a(0)), P, rw, FIXED_ANON).unwrap();
    mm.madvise(a(0), P, Advice::DontFork).unwrap();
    mm.mmap(Some(a(1)), P, rw, FIXED_ANON).unwrap();
    assert_eq!(ranges(&mm), [(0, 1), (1, 2)]);
    mm.madvise(a(0), 2 * P, Advice::DontFork).unwrap();
    assert_eq!(ranges(&mm), [(0, 2)]);
    mm.check().unwrap();
}

#[test]
fn munmap_of_many_vmas_around_the_fast_limit() {
    let rw = Prot::READ | Prot::WRITE;
    for locking in [WriterLocking::Range, WriterLocking::Global] {
        for k in 1..=12u64 {
            for (cut_first, cut_last) in
                [(false, false), (true, false), (false, true), (true, true)]
            {
                let mm = AddressSpace::with_locking(FaultPolicy::Speculative, locking);
                // 14 two-page VMAs of alternating protection (no merges),
                // pages written with their address.
                for i in 0..14 {
                    let p = if i % 2 == 0 {
                        rw
                    } else {
                        Prot::READ | Prot::EXEC
                    };
                    mm.mmap(Some(BASE + 2 * i * P), 2 * P, rw, FIXED_ANON)
                        .unwrap();
                    for j in 0..2 {
                        let x = BASE + (2 * i + j) * P;
                        mm.write(x, x).unwrap();
                    }
                    mm.mprotect(BASE + 2 * i * P, 2 * P, p).unwrap();
                }
                // Unmap over VMAs 1..=k (k VMAs), from inside the first when
                // cut_first, to inside the last when cut_last.
                let s = BASE + 2 * P + if cut_first { P } else { 0 };
                let e = BASE + 2 * (k + 1) * P - if cut_last { P } else { 0 };
                if s >= e {
                    continue;
                }
                let before = window(&mm).len();
                mm.munmap(s, e - s).unwrap();
                let after = window(&mm);
                let expect = before - k as usize + cut_first as usize + cut_last as usize;
                assert_eq!(
                    after.len(),
                    expect,
                    "k {k} {cut_first} {cut_last} {locking:?}"
                );
                for i in 0..28 {
                    let x = BASE + i * P;
                    let inside = (s..e).contains(&x);
                    assert_eq!(mm.translate(x).is_some(), !inside, "page {i}");
                    if !inside {
                        assert_eq!(mm.read(x).unwrap(), x, "page {i} k {k}");
                        let v = after.iter().find(|v| v.range.contains(&x)).unwrap();
                        let want = if (i / 2) % 2 == 0 {
                            rw
                        } else {
                            Prot::READ | Prot::EXEC
                        };
                        assert_eq!(v.prot, want);
                    } else {
                        assert!(!after.iter().any(|v| v.range.contains(&x)));
                    }
                }
                mm.check().unwrap();
                let st = mm.stats();
                assert_eq!(st.frames_allocated, st.frames_mapped + st.frames_freed);
                assert_eq!(st.frames_mapped, 28 - (e - s) / P);
            }
        }
    }
}

#[test]
fn two_spaces_interleaved_on_one_thread() {
    let rw = Prot::READ | Prot::WRITE;
    let a = AddressSpace::new();
    let b = AddressSpace::with_policy(FaultPolicy::MmapLock);
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut ma = Model::default();
    let mut mb = Model::default();
    for step in 0..400 {
        let (mm, model) = if step % 2 == 0 {
            (&a, &mut ma)
        } else {
            (&b, &mut mb)
        };
        let x = BASE + rng.below(WINDOW) * P;
        let n = 1 + rng.below(10);
        match rng.below(4) {
            0 | 1 => {
                let prot = if rng.below(2) == 0 { rw } else { Prot::READ };
                mm.mmap(Some(x), n * P, prot, FIXED_ANON).unwrap();
                model.edit(x, x + n * P, vec![anon(x, x + n * P, prot, false)]);
                if prot == rw {
                    mm.write(x, x).unwrap();
                }
            }
            2 => {
                mm.munmap(x, n * P).unwrap();
                model.edit(x, x + n * P, Vec::new());
            }
            _ => {
                // A move of a whole VMA to the top of the window (two edits
                // in one `Edit`: the unmap of the source, the map of the
                // target, merging with what is there).
                let top = BASE + WINDOW * P;
                let Some(v) = model.0.iter().find(|v| v.end <= top).cloned() else {
                    continue;
                };
                let dst = top + rng.below(WINDOW / 2) * P;
                let len = v.end - v.start;
                let got = mm
                    .mremap(
                        v.start,
                        len,
                        len,
                        RemapFlags::MAYMOVE | RemapFlags::FIXED,
                        Some(dst),
                    )
                    .unwrap();
                assert_eq!(got, dst);
                model.edit(v.start, v.end, Vec::new());
                let mut m = v.clone();
                m.start = dst;
                m.end = dst + len;
                model.edit(dst, dst + len, vec![m]);
            }
        }
        assert_eq!(window(mm), model.infos(), "step {step}");
        mm.check().unwrap();
        // Brk and stack growth on the other space in between.
        if step % 50 == 0 {
            let other = if step % 2 == 0 { &b } else { &a };
            let r = other.brk_range();
            other.brk(r.end + 3 * P);
            other.brk(r.end + P);
        }
    }
    let child = a.fork();
    let stack = 0x3000_0000;
    child
        .mmap(Some(stack), 4 * P, rw, FIXED_ANON | MapFlags::GROWSDOWN)
        .unwrap();
    child.write(stack - P, 7).unwrap();
    assert_eq!(child.read(stack - P).unwrap(), 7);
    child.check().unwrap();
    AddressSpace::check_family(&[&a, &child]).unwrap();
    // Frames are counted per fork family (`a`'s are shared with the child).
    let sb = b.stats();
    assert_eq!(sb.frames_allocated, sb.frames_mapped + sb.frames_freed);
}

#[test]
fn concurrent_writers_every_policy() {
    let rw = Prot::READ | Prot::WRITE;
    for policy in FaultPolicy::ALL {
        for locking in [WriterLocking::Range, WriterLocking::Global] {
            let mm = Arc::new(AddressSpace::with_locking(policy, locking));
            let threads = 3u64;
            let per = 16u64;
            let hs: Vec<_> = (0..threads)
                .map(|t| {
                    let mm = Arc::clone(&mm);
                    std::thread::spawn(move || {
                        let lo = BASE + t * per * P;
                        let mut rng = Rng(0xdead_beef ^ ((t + 1) * 0x1_0000_0001));
                        for round in 0..150u64 {
                            let i = rng.below(per - 4);
                            let n = 1 + rng.below(4);
                            let x = lo + i * P;
                            mm.mmap(Some(x), n * P, rw, FIXED_ANON).unwrap();
                            for j in 0..n {
                                mm.write(x + j * P, round * 1000 + j + 1).unwrap();
                            }
                            if rng.below(3) == 0 {
                                mm.mprotect(x, n * P, Prot::READ).unwrap();
                            }
                            for j in 0..n {
                                assert_eq!(mm.read(x + j * P).unwrap(), round * 1000 + j + 1);
                            }
                            if n > 1 && rng.below(2) == 0 {
                                // Shrink in place, then unmap the rest.
                                mm.mremap(x, n * P, P, RemapFlags::empty(), None).unwrap();
                                assert_eq!(mm.read(x).unwrap(), round * 1000 + 1);
                                assert!(mm.fault(x + P, Access::Read).is_err());
                            }
                            mm.munmap(x, n * P).unwrap();
                            assert!(mm.fault(x, Access::Read).is_err());
                        }
                        // Leave the whole window mapped (merging with the
                        // neighbours' windows), written.
                        mm.mmap(Some(lo), per * P, rw, FIXED_ANON).unwrap();
                        for j in 0..per {
                            mm.write(lo + j * P, t * 100 + j).unwrap();
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            mm.check().unwrap();
            let w = window(&mm);
            assert_eq!(w.len(), 1, "{policy:?} {locking:?}: {w:?}");
            assert_eq!(w[0].range, BASE..BASE + threads * per * P);
            for t in 0..threads {
                for j in 0..per {
                    assert_eq!(mm.read(BASE + (t * per + j) * P).unwrap(), t * 100 + j);
                }
            }
            let st = mm.stats();
            assert_eq!(st.frames_allocated, st.frames_mapped + st.frames_freed);
            assert_eq!(st.frames_mapped, threads * per);
        }
    }
}

/// A space unmapped from a thread-local destructor.
struct UnmapOnDrop(Option<(Arc<AddressSpace>, u64)>);

impl Drop for UnmapOnDrop {
    fn drop(&mut self) {
        if let Some((mm, a)) = self.0.take() {
            mm.munmap(a, P).unwrap();
            mm.mmap(Some(a), P, Prot::READ, FIXED_ANON).unwrap();
            mm.check().unwrap();
            eprintln!("destructor writers done");
        }
    }
}

std::thread_local! {
    static LATE: std::cell::RefCell<UnmapOnDrop> =
        const { std::cell::RefCell::new(UnmapOnDrop(None)) };
}

fn tls_destructor_scenario() {
    let mm = Arc::new(AddressSpace::new());
    let m2 = Arc::clone(&mm);
    std::thread::spawn(move || {
        // Registered first, so destroyed after everything the writers below
        // register (thread-local destructors run last-registered first).
        LATE.with(|_| {});
        m2.mmap(Some(BASE), 4 * P, Prot::READ | Prot::WRITE, FIXED_ANON)
            .unwrap();
        m2.write(BASE, 1).unwrap();
        m2.munmap(BASE + 3 * P, P).unwrap();
        LATE.with(|l| l.borrow_mut().0 = Some((Arc::clone(&m2), BASE)));
    })
    .join()
    .unwrap();
    assert_eq!(window(&mm).len(), 2, "{}", mm.maps_string());
    mm.check().unwrap();
}

#[test]
fn writer_in_a_thread_local_destructor() {
    if std::env::var_os("BREAKER13_TLS_CHILD").is_some() {
        tls_destructor_scenario();
        return;
    }
    let (status, err) = child("writer_in_a_thread_local_destructor", "BREAKER13_TLS_CHILD");
    assert!(
        status.success() && err.contains("destructor writers done"),
        "a writer called from a thread-local destructor failed: {status:?}\n{err}"
    );
}

/// Bytes a thread's exit frees after it unmapped `n` VMAs in one munmap
/// and dropped its space.
fn freed_at_exit(n: u64) -> isize {
    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let h = std::thread::spawn(move || {
        let mm = AddressSpace::new();
        for i in 0..n {
            let p = if i % 2 == 0 {
                Prot::READ
            } else {
                Prot::READ | Prot::WRITE
            };
            mm.mmap(Some(BASE + i * P), P, p, FIXED_ANON).unwrap();
        }
        mm.munmap(BASE, n * P).unwrap();
        mm.reclaim();
        drop(mm);
        tx.send(LIVE.load(Relaxed)).unwrap();
        done_rx.recv().unwrap();
    });
    let before_exit = rx.recv().unwrap();
    done_tx.send(()).unwrap();
    h.join().unwrap();
    before_exit - LIVE.load(Relaxed)
}

#[test]
fn thread_keeps_no_memory_of_a_big_unmap() {
    if std::env::var_os("BREAKER13_MEM_CHILD").is_some() {
        let small = freed_at_exit(100);
        let big = freed_at_exit(20_000);
        eprintln!("freed at exit: {small} after 100 VMAs, {big} after 20000");
        assert!(
            big < small + (1 << 20),
            "a thread keeps {big} bytes after unmapping 20,000 VMAs ({small} after 100)"
        );
        return;
    }
    let (status, err) = child(
        "thread_keeps_no_memory_of_a_big_unmap",
        "BREAKER13_MEM_CHILD",
    );
    assert!(status.success(), "{status:?}\n{err}");
}

/// Placed (non-FIXED) mappings of several threads land next to each other
/// and merge into shared VMAs (the fast path's prev/next merges across
/// threads); each thread writes, reads back, mprotects and unmaps only its
/// own blocks, under every policy. At the end every thread's surviving
/// blocks keep their values, `check()` passes and frames balance.
#[test]
fn placed_blocks_of_several_threads_merge_and_split() {
    let rw = Prot::READ | Prot::WRITE;
    let placed = MapFlags::PRIVATE | MapFlags::ANONYMOUS;
    for policy in FaultPolicy::ALL {
        let mm = Arc::new(AddressSpace::with_policy(policy));
        let hs: Vec<_> = (0..3u64)
            .map(|t| {
                let mm = Arc::clone(&mm);
                std::thread::spawn(move || {
                    let mut rng = Rng(0x51_7cc1_b727_220b ^ ((t + 1) << 32));
                    let mut mine: Vec<(u64, u64, u64)> = Vec::new();
                    for round in 0..1500u64 {
                        if mine.len() < 6 && rng.below(3) != 0 {
                            let n = 1 + rng.below(3);
                            let a = mm.mmap(None, n * P, rw, placed).unwrap();
                            let v = (t << 40) | (round << 8);
                            for j in 0..n {
                                mm.write(a + j * P, v + j).unwrap();
                            }
                            mine.push((a, n, v));
                        } else if !mine.is_empty() {
                            let i = rng.below(mine.len() as u64) as usize;
                            let (a, n, v) = mine.swap_remove(i);
                            for j in 0..n {
                                assert_eq!(mm.read(a + j * P).unwrap(), v + j, "{policy:?}");
                            }
                            if rng.below(2) == 0 {
                                mm.mprotect(a, n * P, Prot::READ).unwrap();
                                mm.mprotect(a, n * P, rw).unwrap();
                            }
                            // (Another thread may place a block here at once.)
                            mm.munmap(a, n * P).unwrap();
                        }
                    }
                    mine
                })
            })
            .collect();
        let mut left = Vec::new();
        for h in hs {
            left.extend(h.join().unwrap());
        }
        mm.check().unwrap();
        for &(a, n, v) in &left {
            for j in 0..n {
                assert_eq!(mm.read(a + j * P).unwrap(), v + j);
            }
        }
        let pages: u64 = left.iter().map(|b| b.1).sum();
        let st = mm.stats();
        assert_eq!(st.frames_allocated, st.frames_mapped + st.frames_freed);
        assert_eq!(st.frames_mapped, pages, "{policy:?}");
        // Adjacent blocks of different threads merged into one VMA.
        let vmas = mm.vmas();
        let mapped: u64 = vmas.iter().map(|v| (v.range.end - v.range.start) / P).sum();
        assert_eq!(mapped, pages);
    }
}
