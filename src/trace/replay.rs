//! Replay of a parsed strace log against an [`AddressSpace`] and comparison
//! with the kernel's `/proc/pid/maps` ([DESIGN §6](crate::docs::design#6-trace-parsing)).
//!
//! Two modes:
//! * [`Mode::Exact`]: every call at the kernel's returned address. A non-fixed
//!   `mmap` that succeeded becomes `MAP_FIXED_NOREPLACE` at the kernel's result
//!   (a divergence shows up as `EEXIST` instead of being papered over); a
//!   moving `mremap` becomes `MREMAP_FIXED` at the kernel's result, after
//!   checking that the target is free in the model. The model's success or
//!   failure (and errno) must match the kernel's for every call.
//! * [`Mode::Placement`]: each non-fixed `mmap` and each moving `mremap` is
//!   first made as the program made it, so the model chooses the address; the
//!   choice is compared with the kernel's and, on a miss, moved to the
//!   kernel's address so that one miss does not cascade.

use super::{
    MAP_FIXED, MAP_FIXED_NOREPLACE, MREMAP_FIXED, MREMAP_MAYMOVE, MapsEntry, SysResult, Syscall,
    Trace, TraceCall,
};
use crate::mm::{AddressSpace, Advice, MapFlags, MmError, PAGE_SIZE as PAGE, Prot, RemapFlags};
use std::ops::Range;
use std::time::{Duration, Instant};

/// How non-fixed placements are treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Every call at the kernel's returned address.
    #[default]
    Exact,
    /// The model places first; agreement with the kernel is counted.
    Placement,
}

/// A call whose outcome in the model differs from the kernel's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// Line of the trace on which the call completed.
    pub line: usize,
    /// The call as strace printed it.
    pub call: String,
    /// The kernel's result.
    pub kernel: SysResult,
    /// The model's result: an address/value, or an errno.
    pub model: Result<u64, i32>,
}

/// What a replay did.
#[derive(Clone, Debug, Default)]
pub struct ReplayReport {
    /// Calls applied to the model.
    pub calls: usize,
    /// Calls whose outcome differs.
    pub mismatches: Vec<Mismatch>,
    /// Non-fixed placements (mmap and moving mremap) where the model chose
    /// the kernel's address.
    pub placement_agree: usize,
    /// Non-fixed placements compared.
    pub placement_total: usize,
    /// Placement misses: `(line, kernel address, model address)`.
    pub placement_misses: Vec<(usize, u64, u64)>,
    /// Whether the replay stopped at the marker `madvise(NULL, 0, MADV_NORMAL)`.
    pub stopped_at_marker: bool,
    /// Time spent in the model's calls.
    pub elapsed: Duration,
}

impl ReplayReport {
    /// Replayed calls per second of model time.
    pub fn ops_per_sec(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Replay options.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReplayOptions {
    /// Exact or placement mode.
    pub mode: Mode,
    /// Stop at (and do not apply) the marker call.
    pub stop_at_marker: bool,
}

/// The heap start: the result of the first successful `brk(NULL)`.
pub fn initial_brk(trace: &Trace) -> Option<u64> {
    trace.calls.iter().find_map(|c| match (&c.call, &c.result) {
        (Syscall::Brk { addr: 0 }, SysResult::Ok(v)) => Some(*v),
        _ => None,
    })
}

fn errno_of(r: &Result<u64, MmError>) -> Result<u64, i32> {
    r.as_ref().map(|v| *v).map_err(|e| e.errno())
}

fn kernel_of(res: &SysResult) -> Option<Result<u64, i32>> {
    match res {
        SysResult::Ok(v) => Some(Ok(*v)),
        SysResult::Err { errno, .. } => Some(Err(*errno)),
        SysResult::Unknown => None,
    }
}

/// The model's view of one mmap call (anonymous or file-backed; the file is
/// identified by fd + offset as the best available identity).
fn do_mmap(
    space: &AddressSpace,
    hint: Option<u64>,
    len: u64,
    prot: u32,
    flags: u32,
    fd: i64,
    offset: u64,
) -> Result<u64, MmError> {
    let (p, f) = (
        Prot::from_bits_retain(prot),
        MapFlags::from_bits_retain(flags),
    );
    if f.contains(MapFlags::ANONYMOUS) || fd < 0 {
        space.mmap(hint, len, p, f)
    } else {
        space.mmap_file(hint, len, p, f, fd as u64, offset)
    }
}

fn page_up(x: u64) -> u64 {
    x.saturating_add(PAGE - 1) & !(PAGE - 1)
}

/// Whether `[a, a + len)` is free in the model.
fn is_free(space: &AddressSpace, a: u64, len: u64) -> bool {
    let end = a.saturating_add(page_up(len));
    !space
        .vmas()
        .iter()
        .any(|v| v.range.start < end && v.range.end > a)
}

/// Placement mode: counts whether the model's address `got` agrees with the
/// kernel's `k`; on a miss, `follow(model address)` moves the mapping to the
/// kernel's address so that one miss does not cascade.
fn placed(
    rep: &mut ReplayReport,
    line: usize,
    k: u64,
    got: Result<u64, MmError>,
    follow: impl FnOnce(u64) -> Result<u64, MmError>,
) -> Result<u64, i32> {
    rep.placement_total += 1;
    match got {
        Ok(a) if a == k => {
            rep.placement_agree += 1;
            Ok(a)
        }
        Ok(a) => {
            rep.placement_misses.push((line, k, a));
            errno_of(&follow(a))
        }
        Err(e) => Err(e.errno()),
    }
}

/// The result of a call that returns 0 on success.
fn done(r: Result<(), MmError>) -> Result<u64, i32> {
    r.map(|()| 0).map_err(|e| e.errno())
}

/// Applies one call; returns the model's result (an address/value or errno).
fn apply(
    space: &AddressSpace,
    c: &TraceCall,
    mode: Mode,
    rep: &mut ReplayReport,
) -> Result<u64, i32> {
    let kernel_ok = c.result.ok();
    match c.call {
        Syscall::Mmap {
            addr,
            len,
            prot,
            flags,
            fd,
            offset,
        } => {
            let fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0;
            let hint = (addr != 0).then_some(addr);
            // The call at the kernel's address, refusing to clobber anything.
            let at_kernel = |k| {
                do_mmap(
                    space,
                    Some(k),
                    len,
                    prot,
                    flags | MAP_FIXED_NOREPLACE,
                    fd,
                    offset,
                )
            };
            match (fixed, kernel_ok, mode) {
                (false, Some(k), Mode::Exact) => errno_of(&at_kernel(k)),
                (false, Some(k), Mode::Placement) => {
                    placed(
                        rep,
                        c.line,
                        k,
                        do_mmap(space, hint, len, prot, flags, fd, offset),
                        |a| {
                            // Undo the model's choice, then follow the kernel.
                            let _ = space.munmap(a, page_up(len));
                            at_kernel(k)
                        },
                    )
                }
                _ => errno_of(&do_mmap(space, hint, len, prot, flags, fd, offset)),
            }
        }
        Syscall::Munmap { addr, len } => done(space.munmap(addr, len)),
        Syscall::Mprotect { addr, len, prot } => {
            done(space.mprotect(addr, len, Prot::from_bits_retain(prot)))
        }
        Syscall::Madvise { addr, len, advice } => match Advice::from_linux(advice) {
            Some(a) => done(space.madvise(addr, len, a)),
            None => Err(22),
        },
        Syscall::Brk { addr } => Ok(space.brk(addr)),
        Syscall::Mremap {
            old_addr,
            old_len,
            new_len,
            flags,
            new_addr,
        } => {
            let rf = RemapFlags::from_bits_retain(flags);
            let moved = flags & MREMAP_FIXED == 0
                && flags & MREMAP_MAYMOVE != 0
                && kernel_ok.is_some_and(|k| k != old_addr);
            match (moved, kernel_ok, mode) {
                (true, Some(k), Mode::Exact) => {
                    if !is_free(space, k, new_len) {
                        Err(17) // the kernel's target is occupied in the model: a divergence
                    } else {
                        let fixed = rf | RemapFlags::FIXED;
                        errno_of(&space.mremap(old_addr, old_len, new_len, fixed, Some(k)))
                    }
                }
                (true, Some(k), Mode::Placement) => placed(
                    rep,
                    c.line,
                    k,
                    space.mremap(old_addr, old_len, new_len, rf, new_addr),
                    // Move the model's choice to the kernel's address.
                    |a| {
                        space.mremap(
                            a,
                            new_len,
                            new_len,
                            RemapFlags::MAYMOVE | RemapFlags::FIXED,
                            Some(k),
                        )
                    },
                ),
                _ => errno_of(&space.mremap(old_addr, old_len, new_len, rf, new_addr)),
            }
        }
    }
}

/// Replays `trace` on `space` (already seeded, e.g. by
/// [`AddressSpace::from_maps`]) and reports every divergence.
pub fn replay(space: &AddressSpace, trace: &Trace, opts: ReplayOptions) -> ReplayReport {
    let mut rep = ReplayReport::default();
    let t0 = Instant::now();
    for c in &trace.calls {
        if opts.stop_at_marker && c.is_marker() {
            rep.stopped_at_marker = true;
            break;
        }
        rep.calls += 1;
        let model = apply(space, c, opts.mode, &mut rep);
        if let Some(kernel) = kernel_of(&c.result) {
            // Calls that succeed return 0 in the kernel (munmap, mprotect, …)
            // and in the model alike; mmap/mremap/brk return addresses.
            if model != kernel {
                rep.mismatches.push(Mismatch {
                    line: c.line,
                    call: c.call.to_string(),
                    kernel: c.result.clone(),
                    model,
                });
            }
        }
    }
    rep.elapsed = t0.elapsed();
    rep
}

/// A difference between the model and a maps file, page-granular.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageDiff {
    /// Address range where both sides agree on nothing.
    pub range: Range<u64>,
    /// The kernel's protection (`rwx` bits as `PROT_*`), `None` if unmapped.
    pub kernel: Option<u32>,
    /// The model's protection, `None` if unmapped.
    pub model: Option<u32>,
}

/// Compares the model's pages and protections with a maps file, ignoring the
/// ranges of `[stack]` (grown by faults) and `[vsyscall]` entries. Returns the
/// differing ranges; their total size / 4096 is the number of differing pages.
pub fn compare_maps(space: &AddressSpace, maps: &[MapsEntry]) -> Vec<PageDiff> {
    let ignored: Vec<Range<u64>> = maps
        .iter()
        .filter(|e| matches!(e.path.as_deref(), Some("[stack]" | "[vsyscall]")))
        .map(|e| e.start..e.end)
        .collect();
    let kernel: Vec<(Range<u64>, u32)> = maps.iter().map(|e| (e.start..e.end, e.prot())).collect();
    let model: Vec<(Range<u64>, u32)> = space
        .vmas()
        .into_iter()
        .map(|v| (v.range, (v.prot & Prot::ACCESS).bits()))
        .collect();
    let mut cuts: Vec<u64> = kernel
        .iter()
        .chain(&model)
        .flat_map(|(r, _)| [r.start, r.end])
        .collect();
    cuts.extend(ignored.iter().flat_map(|r| [r.start, r.end]));
    cuts.sort_unstable();
    cuts.dedup();
    let at =
        |v: &[(Range<u64>, u32)], a: u64| v.iter().find(|(r, _)| r.contains(&a)).map(|(_, p)| *p);
    let mut out: Vec<PageDiff> = Vec::new();
    for w in cuts.windows(2) {
        let (a, b) = (w[0], w[1]);
        if ignored.iter().any(|r| r.contains(&a)) {
            continue;
        }
        let (k, m) = (at(&kernel, a), at(&model, a));
        if k == m {
            continue;
        }
        match out.last_mut() {
            Some(d) if d.range.end == a && d.kernel == k && d.model == m => d.range.end = b,
            _ => out.push(PageDiff {
                range: a..b,
                kernel: k,
                model: m,
            }),
        }
    }
    out
}

/// Number of 4 KiB pages in a diff list.
pub fn pages(diffs: &[PageDiff]) -> u64 {
    diffs
        .iter()
        .map(|d| (d.range.end - d.range.start) / PAGE)
        .sum()
}
