//! breaker8: session 8's munmap R-M4 (commit first, narrow to the unmapped
//! part, zap) and PTL stripes (DESIGN §4.8 "R-M4: an unmap that narrows",
//! §4.6 "PTL stripes"), attacked with page *values*:
//!
//! * `windows_share_one_table_values_survive`: threads own adjacent windows
//!   of one last-level table (so their VMAs merge across windows, and every
//!   munmap, mprotect, mremap and DONTNEED crosses 64-PTE stripe boundaries
//!   at odd offsets), or of two tables (a window straddles the 2 MiB edge).
//!   Each thread keeps a page array of its window (mapped?, prot, value) and
//!   checks every read, write and fault against it, and its window's VMA
//!   coverage after every writer call. A helper thread swaps pages out
//!   (`try_to_unmap`) and forks (child `check()`) meanwhile. Every policy.
//! * `fixed_mmap_racing_munmap_never_loses_a_write`: one thread maps FIXED
//!   (or moves a page in with mremap) over a range another thread keeps
//!   unmapping with varied extents (partial, spanning holes, split in
//!   three): a read right after our write sees our value or Segv, never 0
//!   (a zap that took the page of a VMA published after the munmap's
//!   commit: the lost write R-M4 must exclude).
//! * `split_in_three_at_map_count_limit_changes_nothing`: at
//!   `max_map_count`, an munmap that would split one VMA in three fails
//!   ENOMEM and changes nothing (VMAs, values), while another thread
//!   churns VMAs elsewhere.

use maple_rcu::mm::{
    AddressSpace, Advice, FaultError, FaultPolicy, MapFlags, MmError, Prot, RemapFlags,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

const P: u64 = 4096;
const PMD: u64 = 2 << 20;

#[path = "common/rng.rs"]
mod rng;
use rng::Rng;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn fixed() -> MapFlags {
    MapFlags::PRIVATE | MapFlags::ANONYMOUS | MapFlags::FIXED
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Page {
    prot: Prot,
    value: u64,
}

/// One thread's window: `pages[i]` is the page at `base + i * P`.
struct Window {
    base: u64,
    pages: Vec<Option<Page>>,
    tag: u64,
    log: Vec<String>,
}

impl Window {
    fn addr(&self, i: usize) -> u64 {
        self.base + i as u64 * P
    }

    /// The window's VMA coverage must be the model's (only this thread
    /// changes which of its pages are mapped and their prot: merges with
    /// the neighbours' VMAs change neither).
    fn check_coverage(&self, mm: &AddressSpace, what: &str) {
        let vmas = mm.vmas();
        for (i, p) in self.pages.iter().enumerate() {
            let a = self.addr(i);
            let got = vmas.iter().find(|v| v.range.contains(&a)).map(|v| v.prot);
            assert_eq!(
                got,
                p.map(|p| p.prot),
                "{what}: page {i} ({a:#x}) coverage; last ops {:?}",
                &self.log[self.log.len().saturating_sub(8)..]
            );
        }
    }

    fn all_mapped(&self, i: usize, n: usize) -> bool {
        self.pages[i..i + n].iter().all(|p| p.is_some())
    }

    fn step(&mut self, mm: &AddressSpace, r: &mut Rng) {
        let len = self.pages.len();
        let i = r.below(len as u64) as usize;
        let n = (1 + r.below(70) as usize).min(len - i);
        let prots = [Prot::READ | Prot::WRITE, Prot::READ, Prot::NONE];
        let prot = prots[r.below(3) as usize];
        let (a, bytes) = (self.addr(i), n as u64 * P);
        match r.below(16) {
            0..=1 => {
                self.log.push(format!("mmap {i}+{n} {prot:?}"));
                mm.mmap(Some(a), bytes, prot, fixed()).unwrap();
                for p in &mut self.pages[i..i + n] {
                    *p = Some(Page { prot, value: 0 });
                }
                self.check_coverage(mm, "mmap");
            }
            2..=3 => {
                self.log.push(format!("munmap {i}+{n}"));
                mm.munmap(a, bytes).unwrap();
                for p in &mut self.pages[i..i + n] {
                    *p = None;
                }
                self.check_coverage(mm, "munmap");
            }
            4 if self.all_mapped(i, n) => {
                self.log.push(format!("mprotect {i}+{n} {prot:?}"));
                mm.mprotect(a, bytes, prot).unwrap();
                for p in self.pages[i..i + n].iter_mut().flatten() {
                    p.prot = prot;
                }
                self.check_coverage(mm, "mprotect");
            }
            5 if self.all_mapped(i, n) => {
                self.log.push(format!("dontneed {i}+{n}"));
                mm.madvise(a, bytes, Advice::DontNeed).unwrap();
                for p in self.pages[i..i + n].iter_mut().flatten() {
                    p.value = 0;
                }
            }
            6 => {
                // A FIXED move inside the window.
                let n = n.min(len / 3);
                let from = r.below((len - n) as u64) as usize;
                let to = r.below((len - n) as u64) as usize;
                if from.abs_diff(to) < n {
                    return;
                }
                self.log.push(format!("mremap {from}+{n} -> {to}"));
                let f = RemapFlags::MAYMOVE | RemapFlags::FIXED;
                let res = mm.mremap(
                    self.addr(from),
                    n as u64 * P,
                    n as u64 * P,
                    f,
                    Some(self.addr(to)),
                );
                match res {
                    Ok(got) => {
                        assert_eq!(got, self.addr(to));
                        let moved: Vec<_> = self.pages[from..from + n].to_vec();
                        assert!(moved.iter().all(|p| p.is_some()), "moved a hole");
                        for p in &mut self.pages[from..from + n] {
                            *p = None;
                        }
                        self.pages[to..to + n].copy_from_slice(&moved);
                    }
                    Err(_) => {
                        // Resync coverage (a failed FIXED mremap may have
                        // unmapped its target first, as Linux's).
                        let vmas = mm.vmas();
                        for k in 0..len {
                            let a = self.addr(k);
                            if !vmas.iter().any(|v| v.range.contains(&a)) {
                                self.pages[k] = None;
                            }
                        }
                    }
                }
                self.check_coverage(mm, "mremap");
            }
            7..=10 => {
                for k in i..i + n.min(4) {
                    let a = self.addr(k);
                    self.tag += 1;
                    let v = self.tag;
                    let res = mm.write(a, v);
                    match self.pages[k] {
                        None => assert_eq!(res, Err(FaultError::Segv), "write {k} {a:#x}"),
                        Some(ref mut p) if p.prot.contains(Prot::WRITE) => {
                            assert_eq!(res, Ok(()), "write {k} {a:#x}");
                            p.value = v;
                        }
                        Some(_) => assert_eq!(res, Err(FaultError::Access), "write {k} {a:#x}"),
                    }
                }
            }
            _ => {
                for k in i..i + n {
                    let a = self.addr(k);
                    let res = mm.read(a);
                    match self.pages[k] {
                        None => assert_eq!(res, Err(FaultError::Segv), "read {k} {a:#x}"),
                        Some(p) if p.prot.contains(Prot::READ) => assert_eq!(
                            res,
                            Ok(p.value),
                            "read page {k} ({a:#x}) lost its value; last ops {:?}",
                            &self.log[self.log.len().saturating_sub(8)..]
                        ),
                        Some(_) => assert_eq!(res, Err(FaultError::Access), "read {k} {a:#x}"),
                    }
                }
            }
        }
    }
}

/// `threads` windows of `pages` pages each, adjacent, the first at `base`.
fn shared_table_round(
    policy: FaultPolicy,
    base: u64,
    threads: u64,
    pages: u64,
    seed: u64,
    ops: u64,
) {
    let mm = Arc::new(AddressSpace::with_policy(policy));
    let stop = Arc::new(AtomicBool::new(false));
    let go = Arc::new(Barrier::new(threads as usize + 1));
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let (mm, go) = (mm.clone(), go.clone());
            thread::spawn(move || {
                let mut w = Window {
                    base: base + t * pages * P,
                    pages: vec![None; pages as usize],
                    tag: (t + 1) << 40,
                    log: Vec::new(),
                };
                let mut r = Rng(seed.wrapping_mul(0x9e37_79b9) ^ ((t + 1) * 0x1234_5678_9abc));
                go.wait();
                let mut children = Vec::new();
                for i in 0..ops {
                    w.step(&mm, &mut r);
                    if i % 97 == 50 && children.len() < 4 {
                        // A fork racing the other windows' writers and faults.
                        children.push(mm.fork());
                    }
                }
                (w, children)
            })
        })
        .collect();
    let helper = {
        let (mm, go, stop) = (mm.clone(), go.clone(), stop.clone());
        thread::spawn(move || {
            let mut r = Rng(seed ^ 0xdead_beef);
            go.wait();
            let span = threads * pages;
            let mut children = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let a = base + r.below(span) * P;
                if let Some(pte) = mm.translate(a) {
                    mm.try_to_unmap(pte.frame);
                }
                if r.below(4) == 0 && children.len() < 8 {
                    // Checked at the end: `check` needs the family quiet (M6).
                    children.push(mm.fork());
                }
                thread::yield_now();
            }
            children
        })
    };
    let mut children = Vec::new();
    let windows: Vec<Window> = hs
        .into_iter()
        .map(|h| {
            let (w, c) = h.join().unwrap();
            children.extend(c);
            w
        })
        .collect();
    stop.store(true, Ordering::Relaxed);
    children.extend(helper.join().unwrap());
    mm.check().unwrap();
    let mut family: Vec<&AddressSpace> = vec![&mm];
    family.extend(children.iter());
    AddressSpace::check_family(&family).unwrap();
    drop(family);
    // Each child holds, in every readable page of a window, 0 or a value
    // its owner wrote (tags carry the owner in bits 40..): never another
    // thread's value, never a page copied to the wrong address's owner.
    let mut checked = 0;
    for c in &children {
        let vmas = c.vmas();
        for (t, w) in windows.iter().enumerate() {
            for k in 0..w.pages.len() {
                let a = w.addr(k);
                let readable = vmas
                    .iter()
                    .any(|v| v.range.contains(&a) && v.prot.contains(Prot::READ));
                if !readable {
                    continue;
                }
                let v = c.read(a).unwrap();
                checked += usize::from(v != 0);
                assert!(
                    v == 0 || (v >> 40 == t as u64 + 1 && v <= w.tag),
                    "{policy:?}: child page {k} of window {t} ({a:#x}) holds {v:#x}"
                );
            }
        }
        c.check().unwrap();
    }
    eprintln!(
        "{policy:?}: {} children, {checked} written child pages checked",
        children.len()
    );
    drop(children);
    // Final values, read once more.
    for w in &windows {
        w.check_coverage(&mm, "final");
        for (k, p) in w.pages.iter().enumerate() {
            if let Some(p) = p
                && p.prot.contains(Prot::READ)
            {
                assert_eq!(mm.read(w.addr(k)), Ok(p.value), "final {policy:?} page {k}");
            }
        }
    }
    for w in &windows {
        mm.munmap(w.base, pages * P).unwrap();
    }
    mm.reclaim();
    let st = mm.stats();
    assert_eq!(st.tables_kept, 0, "{st:?}");
    assert_eq!(
        st.frames_allocated, st.frames_freed,
        "frames leaked: {st:?}"
    );
    mm.check().unwrap();
}

#[test]
fn windows_share_one_table_values_survive() {
    let rounds = env("B8_ROUNDS", 1);
    let ops = env("B8_OPS", 250);
    for seed in 1..=rounds {
        for policy in FaultPolicy::ALL {
            // One table: windows at pages 29.., 109.., 189.. (stripes of 64).
            shared_table_round(policy, 0x4000_0000 + 29 * P, 3, 80, seed, ops);
            // Straddling a 2 MiB edge.
            shared_table_round(policy, 0x8000_0000 + PMD - 100 * P, 3, 67, seed, ops);
        }
    }
}

/// One mapper, one unmapper, on the same 96 pages (crossing a stripe
/// boundary at page 64 of the table). The mapper's read right after its
/// write sees its value or Segv (unmapped since), never a zeroed page.
#[test]
fn fixed_mmap_racing_munmap_never_loses_a_write() {
    let iters = env("B8_RACE_ITERS", 1500);
    for policy in FaultPolicy::ALL {
        let mm = Arc::new(AddressSpace::with_policy(policy));
        let base = 0x5000_0000 + 40 * P;
        let pages = 96u64;
        let rw = Prot::READ | Prot::WRITE;
        let stop = Arc::new(AtomicBool::new(false));
        let unmaps = Arc::new(AtomicU64::new(0));
        let unmapper = {
            let (mm, stop, count) = (mm.clone(), stop.clone(), unmaps.clone());
            thread::spawn(move || {
                let mut r = Rng(77);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let i = r.below(pages);
                    let len = 1 + r.below(pages - i);
                    mm.munmap(base + i * P, len * P).unwrap();
                    n += 1;
                    count.store(n, Ordering::Relaxed);
                    if r.below(2) == 0 {
                        // Split and merge the mapper's VMAs (an mprotect
                        // changes no value; the mapper's write may then
                        // fail with Access, its read may not).
                        let j = r.below(pages - 8);
                        let prot = if r.below(2) == 0 { Prot::READ } else { rw };
                        let _ = mm.mprotect(base + j * P, (1 + r.below(8)) * P, prot);
                    }
                }
                n
            })
        };
        let mut r = Rng(99);
        let mut seen = [0u64; 3];
        let mut it = 0;
        while it < iters || unmaps.load(Ordering::Relaxed) < iters / 2 {
            it += 1;
            let i = r.below(pages - 4);
            let n = 1 + r.below(pages - i);
            let a = base + i * P;
            if r.below(5) == 0 {
                // mremap a page of our own in from far away.
                let far = 0x7000_0000u64;
                mm.mmap(Some(far), P, rw, fixed()).unwrap();
                let v = 0xabc0_0000 + it;
                mm.write(far, v).unwrap();
                let f = RemapFlags::MAYMOVE | RemapFlags::FIXED;
                mm.mremap(far, P, P, f, Some(a)).unwrap();
                match mm.read(a) {
                    Ok(x) => {
                        assert_eq!(x, v, "{policy:?} it {it}: moved page lost its value");
                        seen[0] += 1;
                    }
                    Err(FaultError::Segv) => seen[1] += 1,
                    Err(e) => panic!("{e:?}"),
                }
                continue;
            }
            mm.mmap(Some(a), n * P, rw, fixed()).unwrap();
            let k = i + r.below(n);
            let v = 0x1_0000_0000 + it;
            match mm.write(base + k * P, v) {
                Ok(()) => match mm.read(base + k * P) {
                    Ok(x) => {
                        assert_eq!(
                            x, v,
                            "{policy:?} it {it}: page {k} of {i}+{n} lost our write"
                        );
                        seen[0] += 1;
                    }
                    Err(FaultError::Segv) => seen[1] += 1,
                    Err(e) => panic!("{e:?}"),
                },
                Err(FaultError::Segv | FaultError::Access) => seen[2] += 1,
            }
        }
        stop.store(true, Ordering::Relaxed);
        let unmaps = unmapper.join().unwrap();
        mm.check().unwrap();
        mm.munmap(base, pages * P).unwrap();
        mm.reclaim();
        let st = mm.stats();
        assert_eq!(st.frames_allocated, st.frames_freed, "{st:?}");
        assert_eq!(st.tables_kept, 0, "{st:?}");
        eprintln!("{policy:?}: ok/segv-after/segv-before {seen:?}, {unmaps} unmaps");
    }
}

/// At `max_map_count`, an munmap strictly inside one VMA fails ENOMEM and
/// leaves its VMAs and values as they were; the same munmap succeeds once
/// there is room. Another thread churns VMAs far away meanwhile (its count
/// moves by 0 or +1 around our tries).
#[test]
fn split_in_three_at_map_count_limit_changes_nothing() {
    for policy in FaultPolicy::ALL {
        let mut mm = AddressSpace::with_policy(policy);
        let rw = Prot::READ | Prot::WRITE;
        let base = 0x6000_0000 + 60 * P;
        // Alternating prots so nothing merges: 20 VMAs of 8 pages.
        for j in 0..20u64 {
            let prot = if j % 2 == 0 { rw } else { Prot::READ };
            mm.mmap(Some(base + j * 8 * P), 8 * P, prot, fixed())
                .unwrap();
        }
        // The VMA we split: 130 pages (crosses two stripe boundaries).
        let big = base + 200 * P;
        mm.mmap(Some(big), 130 * P, rw, fixed()).unwrap();
        for k in 0..130 {
            mm.write(big + k * P, 1000 + k).unwrap();
        }
        let count = mm.vmas().len() as u64;
        // The churner keeps one extra VMA mapped half the time.
        mm.set_max_map_count(count + 1);
        let mm = Arc::new(mm);
        let far = 0x9000_0000u64;
        // At the limit: ENOMEM, nothing changed.
        mm.mmap(Some(far), 4 * P, rw, fixed()).unwrap();
        let before = mm.vmas();
        assert_eq!(mm.munmap(big + 64 * P, 2 * P), Err(MmError::NoMem));
        assert_eq!(mm.munmap(big + 63 * P, 2 * P), Err(MmError::NoMem));
        assert_eq!(mm.vmas(), before, "{policy:?}: ENOMEM changed VMAs");
        for k in 0..130 {
            assert_eq!(mm.read(big + k * P), Ok(1000 + k), "{policy:?} page {k}");
        }
        mm.check().unwrap();
        mm.munmap(far, 4 * P).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let churn = {
            let (mm, stop) = (mm.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if mm.mmap(Some(far), 4 * P, rw, fixed()).is_ok() {
                        let _ = mm.write(far, 5);
                        mm.munmap(far, 4 * P).unwrap();
                    }
                }
            })
        };
        let mut nomem = 0;
        let mut done = false;
        for t in 0..400u64 {
            let before: Vec<_> = mm
                .vmas()
                .into_iter()
                .filter(|v| v.range.start < 0x8000_0000)
                .collect();
            let (i, n) = (1 + t % 60, 1 + (t * 7) % 64);
            match mm.munmap(big + i * P, n * P) {
                Err(MmError::NoMem) => {
                    nomem += 1;
                    let after: Vec<_> = mm
                        .vmas()
                        .into_iter()
                        .filter(|v| v.range.start < 0x8000_0000)
                        .collect();
                    assert_eq!(before, after, "{policy:?}: ENOMEM changed VMAs");
                    for k in 0..130 {
                        assert_eq!(mm.read(big + k * P), Ok(1000 + k), "{policy:?} page {k}");
                    }
                }
                Ok(()) => {
                    for k in 0..130 {
                        let r = mm.read(big + k * P);
                        if (i..i + n).contains(&k) {
                            assert_eq!(r, Err(FaultError::Segv), "{policy:?} page {k}");
                        } else {
                            assert_eq!(r, Ok(1000 + k), "{policy:?} page {k}");
                        }
                    }
                    done = true;
                    break;
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        stop.store(true, Ordering::Relaxed);
        churn.join().unwrap();
        mm.check().unwrap();
        eprintln!("{policy:?}: {nomem} ENOMEM, split done {done}");
    }
}

/// Unmaps the pages of a block still its own (its holes may hold another
/// block now), one run at a time.
fn unmap_live(mm: &AddressSpace, a: u64, vals: &[Option<u64>]) {
    let mut k = 0;
    while k < vals.len() {
        if vals[k].is_none() {
            k += 1;
            continue;
        }
        let run = vals[k..].iter().take_while(|v| v.is_some()).count();
        mm.munmap(a + k as u64 * P, run as u64 * P).unwrap();
        k += run;
    }
}

/// Placed (non-FIXED) blocks of several threads in one space: they land
/// next to each other, merge into shared VMAs and share last-level tables
/// (the case R-M4 and the stripes were built for). Each thread keeps its
/// blocks' values and checks them, writes more, mprotects or unmaps part of
/// a block (a split, possibly in three, of a VMA merged with another
/// thread's block), and unmaps whole blocks. No value is ever lost and no
/// page of a live block Segvs (an unmapped page may be another thread's
/// next placement at once).
#[test]
fn placed_blocks_merge_and_keep_their_values() {
    let iters = env("B8_PLACED_ITERS", 300);
    for policy in FaultPolicy::ALL {
        let mm = Arc::new(AddressSpace::with_policy(policy));
        let go = Arc::new(Barrier::new(3));
        let hs: Vec<_> = (0..3u64)
            .map(|t| {
                let (mm, go) = (mm.clone(), go.clone());
                thread::spawn(move || {
                    let rw = Prot::READ | Prot::WRITE;
                    let flags = MapFlags::PRIVATE | MapFlags::ANONYMOUS;
                    let mut r = Rng(0x5eed + t * 7919);
                    // (addr, per-page value or None once unmapped)
                    let mut blocks: Vec<(u64, Vec<Option<u64>>)> = Vec::new();
                    let mut tag = (t + 1) << 40;
                    go.wait();
                    for _ in 0..iters {
                        match r.below(6) {
                            0 | 1 if blocks.len() < 6 => {
                                let n = 1 + r.below(80);
                                let a = mm.mmap(None, n * P, rw, flags).unwrap();
                                let mut vals = vec![Some(0); n as usize];
                                for (k, v) in vals.iter_mut().enumerate() {
                                    if r.below(3) == 0 {
                                        tag += 1;
                                        mm.write(a + k as u64 * P, tag).unwrap();
                                        *v = Some(tag);
                                    }
                                }
                                blocks.push((a, vals));
                            }
                            2 if !blocks.is_empty() => {
                                // Unmap part of a block: head, tail or middle.
                                let b = r.below(blocks.len() as u64) as usize;
                                let (a, vals) = &mut blocks[b];
                                let n = vals.len() as u64;
                                let i = r.below(n);
                                let m = 1 + r.below(n - i);
                                let part = &vals[i as usize..(i + m) as usize];
                                unmap_live(&mm, *a + i * P, part);
                                for v in &mut vals[i as usize..(i + m) as usize] {
                                    *v = None;
                                }
                            }
                            3 if !blocks.is_empty() => {
                                let b = r.below(blocks.len() as u64) as usize;
                                let (a, vals) = blocks.swap_remove(b);
                                unmap_live(&mm, a, &vals);
                            }
                            _ => {}
                        }
                        // Check (and write some more into) every block.
                        for (a, vals) in &mut blocks {
                            for (k, v) in vals.iter_mut().enumerate() {
                                let addr = *a + k as u64 * P;
                                match *v {
                                    // Unmapped: another thread's placement
                                    // may take the hole at once.
                                    None => {}
                                    Some(x) => {
                                        assert_eq!(
                                            mm.read(addr),
                                            Ok(x),
                                            "{policy:?} t{t} {addr:#x} lost its value"
                                        );
                                        if r.below(8) == 0 {
                                            tag += 1;
                                            mm.write(addr, tag).unwrap();
                                            *v = Some(tag);
                                        }
                                    }
                                }
                            }
                        }
                    }
                    for (a, vals) in blocks {
                        unmap_live(&mm, a, &vals);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        mm.check().unwrap();
        mm.reclaim();
        let st = mm.stats();
        assert!(mm.vmas().is_empty());
        assert_eq!(st.tables_kept, 0, "{st:?}");
        assert_eq!(st.frames_allocated, st.frames_freed, "{policy:?}: {st:?}");
    }
}

/// The lost write R-M4 must exclude, with a wide window: one thread
/// munmaps 2048 written pages (a long zap), the other polls the VMAs until
/// a page near the top is gone (the munmap has committed), then at once maps it
/// FIXED, writes and reads back. The FIXED mmap must wait for the zap
/// (the narrowed lock covers the page); a narrow that gave the page up
/// early lets the zap remove the new write (read 0).
#[test]
fn fixed_mmap_right_after_the_commit_waits_for_the_zap() {
    let rounds = env("B8_ZAP_ROUNDS", 12);
    let pages = 2048u64;
    let rw = Prot::READ | Prot::WRITE;
    for policy in FaultPolicy::ALL {
        let mm = Arc::new(AddressSpace::with_policy(policy));
        let base = 0x2_0000_0000u64;
        let mut caught_window = 0;
        for round in 0..rounds {
            mm.mmap(Some(base), pages * P, rw, fixed()).unwrap();
            for k in 0..pages {
                mm.write(base + k * P, k + 1).unwrap();
            }
            let x = base + (pages - 3) * P;
            let go = Arc::new(Barrier::new(2));
            let u = {
                let (mm, go) = (mm.clone(), go.clone());
                thread::spawn(move || {
                    go.wait();
                    mm.munmap(base, pages * P).unwrap();
                })
            };
            go.wait();
            // Not `read`: a present PTE answers it without the VMA, until
            // the zap reaches it.
            while mm.vmas().iter().any(|v| v.range.contains(&x)) {
                std::hint::spin_loop();
            }
            mm.mmap(Some(x), P, rw, fixed()).unwrap();
            let v = 0xfeed_0000 + round;
            mm.write(x, v).unwrap();
            let got = mm.read(x);
            if !u.is_finished() {
                caught_window += 1;
            }
            u.join().unwrap();
            assert_eq!(
                got,
                Ok(v),
                "{policy:?} round {round}: the zap removed our write"
            );
            assert_eq!(
                mm.read(x),
                Ok(v),
                "{policy:?} round {round}: write lost later"
            );
            mm.munmap(x, P).unwrap();
            mm.check().unwrap();
        }
        eprintln!("{policy:?}: munmap still running after our read in {caught_window}/{rounds}");
    }
}
