//! Where `mmap(NULL, ...)` goes: Linux x86-64's `get_unmapped_area` without
//! ASLR, including the THP padding rule and the stack guard gap
//! (../shared/guide/reference-designs.md, "Linux x86-64 placement").

use super::error::MmError;
use super::pagetable::PAGE;
use super::vma::Vma;
use super::{HPAGE_SIZE, MMAP_BASE, MMAP_MIN_ADDR, STACK_GUARD_GAP, TASK_SIZE};
use crate::tree::WriteTxn;

/// `mmap_legacy_base` without ASLR: `PAGE_ALIGN(TASK_SIZE / 3)`, the floor of
/// the bottom-up fallback search.
const LEGACY_BASE: u64 = (TASK_SIZE / 3 + PAGE - 1) & !(PAGE - 1);

/// Linux `vm_start_gap`: a GROWSDOWN VMA claims a guard gap below itself.
pub(crate) fn vm_start_gap(v: &Vma) -> u64 {
    let s = v.spec.range.start;
    if v.spec.attrs.growsdown {
        s.saturating_sub(STACK_GUARD_GAP)
    } else {
        s
    }
}

/// Linux `round_hint_to_min`: a non-FIXED hint below `mmap_min_addr` becomes
/// `mmap_min_addr`; the hint is first rounded down to a page.
pub(crate) fn round_hint_to_min(hint: u64) -> u64 {
    let hint = hint & !(PAGE - 1);
    if hint != 0 && hint < MMAP_MIN_ADDR {
        MMAP_MIN_ADDR
    } else {
        hint
    }
}

/// `unmapped_area_topdown`: the highest `len`-byte range below `top`
/// (`MMAP_BASE` in Linux's search), at or above `MMAP_MIN_ADDR`, free and
/// clear of every GROWSDOWN guard gap.
fn topdown(txn: &WriteTxn<'_, Vma>, len: u64, top: u64) -> Option<u64> {
    let mut hi = top;
    loop {
        if hi <= MMAP_MIN_ADDR {
            return None;
        }
        let s = txn.try_find_gap_rev(len, 1, MMAP_MIN_ADDR..hi).ok()?;
        let end = s + len;
        match txn.next(end) {
            Some((_, v)) if vm_start_gap(v) < end => hi = vm_start_gap(v),
            _ => return Some(s),
        }
    }
}

/// `unmapped_area` (bottom-up) from `bottom` (`LEGACY_BASE` in Linux's
/// search), the fallback when the top-down search fails.
fn bottomup(txn: &WriteTxn<'_, Vma>, len: u64, bottom: u64) -> Option<u64> {
    let mut lo = bottom;
    loop {
        if lo >= TASK_SIZE {
            return None;
        }
        let s = txn.try_find_gap(len, 1, lo..TASK_SIZE).ok()?;
        let end = s + len;
        match txn.next(end) {
            Some((r, v)) if vm_start_gap(v) < end => lo = r.end,
            _ => return Some(s),
        }
    }
}

fn search(txn: &WriteTxn<'_, Vma>, len: u64, w: &Window) -> Option<(u64, Source)> {
    topdown(txn, len, w.top)
        .map(|a| (a, Source::TopDown))
        .or_else(|| bottomup(txn, len, w.bottom).map(|a| (a, Source::BottomUp)))
}

/// Where a placement may still look (DESIGN §4.8, "Lock-aware placement"):
/// the hint while `hint`, the top-down search below `top`, the bottom-up
/// search from `bottom`. [`Window::LINUX`] is Linux's whole search; a
/// placement whose candidate area another request holds narrows the window
/// past that area ([`Window::skip`]) and searches on instead of waiting.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    hint: bool,
    top: u64,
    bottom: u64,
}

/// Which part of the search produced a placement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// FIXED, or a hint taken as is.
    Hint,
    /// The top-down search (THP-padded or plain).
    TopDown,
    /// The bottom-up fallback.
    BottomUp,
}

impl Window {
    /// Linux's search: the hint, then top-down below `MMAP_BASE`, then
    /// bottom-up from `LEGACY_BASE`.
    pub(crate) const LINUX: Window = Window {
        hint: true,
        top: MMAP_BASE,
        bottom: LEGACY_BASE,
    };

    /// Narrows the window past `held`, a range some other request holds
    /// that conflicts with the claim of `[addr, addr + len)`, found by
    /// `from`. Top-down: the next candidate ends one page below both
    /// `held` and this candidate's end, so its one-page claim margin (R-M1)
    /// stays clear of `held`; bottom-up: it starts one page above both.
    /// Either bound moves strictly (the candidate lay inside the window), so
    /// a placement meets each held area at most once per search.
    pub(crate) fn skip(&mut self, from: Source, addr: u64, len: u64, held: (u64, u64)) {
        match from {
            Source::Hint => self.hint = false,
            Source::TopDown => self.top = held.0.min(addr + len).saturating_sub(PAGE),
            Source::BottomUp => self.bottom = held.1.max(addr).saturating_add(PAGE),
        }
    }
}

/// Whether a free `[addr, addr + len)` satisfies x86's hint rule
/// (`mmap_address_hint_valid`, then free below the next `vm_start_gap`).
/// mmap_min_addr is not part of it: see `get_unmapped_area`.
fn hint_fits(txn: &WriteTxn<'_, Vma>, addr: u64, len: u64) -> bool {
    if len > TASK_SIZE || addr > TASK_SIZE - len {
        return false;
    }
    match txn.next(addr) {
        None => true,
        Some((_, v)) => addr + len <= vm_start_gap(v),
    }
}

/// What THP alignment a mapping asks for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Thp {
    /// Not eligible.
    No,
    /// Eligible; the file offset (0 for anonymous memory).
    Offset(u64),
}

impl Thp {
    /// The guide's eligibility rule: anonymous private mappings whose length
    /// is a multiple of 2 MiB; file mappings whose range `[off, off + len)`
    /// contains a whole 2 MiB-aligned block.
    pub(crate) fn rule(len: u64, anon_private: bool, file_off: Option<u64>) -> Thp {
        match file_off {
            None if anon_private && len.is_multiple_of(HPAGE_SIZE) => Thp::Offset(0),
            None => Thp::No,
            Some(off) => {
                let Some(off_end) = off.checked_add(len) else {
                    return Thp::No;
                };
                let off_align = off.div_ceil(HPAGE_SIZE).saturating_mul(HPAGE_SIZE);
                if off_end > off_align && off_end - off_align >= HPAGE_SIZE {
                    Thp::Offset(off)
                } else {
                    Thp::No
                }
            }
        }
    }
}

/// `get_unmapped_area`. `hint` is already `round_hint_to_min`-ed when not
/// FIXED; `len` is page aligned and non-zero.
pub(crate) fn get_unmapped_area(
    txn: &WriteTxn<'_, Vma>,
    hint: u64,
    len: u64,
    fixed: bool,
    thp: Thp,
) -> Result<u64, MmError> {
    get_unmapped_area_in(txn, hint, len, fixed, thp, &Window::LINUX).map(|(a, _)| a)
}

/// [`get_unmapped_area`] within `w`, with where the result came from. With
/// [`Window::LINUX`] it is Linux's search exactly.
pub(crate) fn get_unmapped_area_in(
    txn: &WriteTxn<'_, Vma>,
    hint: u64,
    len: u64,
    fixed: bool,
    thp: Thp,
    w: &Window,
) -> Result<(u64, Source), MmError> {
    if len > TASK_SIZE {
        return Err(MmError::NoMem);
    }
    if fixed {
        if hint > TASK_SIZE - len {
            return Err(MmError::NoMem);
        }
        if !hint.is_multiple_of(PAGE) {
            return Err(MmError::Inval);
        }
        if hint < MMAP_MIN_ADDR {
            return Err(MmError::Perm);
        }
        return Ok((hint, Source::Hint));
    }
    if hint != 0 {
        if w.hint && hint_fits(txn, hint, len) {
            // `__get_unmapped_area` ends with `security_mmap_addr(addr)`:
            // EPERM below mmap_min_addr. Only mremap's DONTUNMAP hint gets
            // here with such an address (mmap's went through
            // `round_hint_to_min`).
            if hint < MMAP_MIN_ADDR {
                return Err(MmError::Perm);
            }
            return Ok((hint, Source::Hint));
        }
    } else if let Thp::Offset(off) = thp
        && let Some(padded) = len.checked_add(HPAGE_SIZE)
        && let Some((start, from)) = search(txn, padded, w)
    {
        let off_sub = off.wrapping_sub(start) & (HPAGE_SIZE - 1);
        let addr = if off_sub == 0 {
            start + HPAGE_SIZE
        } else {
            start + off_sub
        };
        return Ok((addr, from));
    }
    search(txn, len, w).ok_or(MmError::NoMem)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn thp_eligibility() {
        assert!(matches!(Thp::rule(HPAGE_SIZE, true, None), Thp::Offset(0)));
        assert!(matches!(Thp::rule(HPAGE_SIZE + PAGE, true, None), Thp::No));
        assert!(matches!(Thp::rule(HPAGE_SIZE, false, None), Thp::No));
        // File: [off, off+len) must contain an aligned 2 MiB block.
        assert!(matches!(
            Thp::rule(HPAGE_SIZE, false, Some(0)),
            Thp::Offset(0)
        ));
        assert!(matches!(Thp::rule(HPAGE_SIZE, false, Some(PAGE)), Thp::No));
        assert!(matches!(
            Thp::rule(2 * HPAGE_SIZE, false, Some(PAGE)),
            Thp::Offset(PAGE)
        ));
        assert!(matches!(
            Thp::rule(PAGE, false, Some(u64::MAX - 5)),
            Thp::No
        ));
    }

    #[test]
    fn hint_rounding() {
        assert_eq!(round_hint_to_min(0), 0);
        assert_eq!(round_hint_to_min(0x123), 0);
        assert_eq!(round_hint_to_min(0x5000), MMAP_MIN_ADDR);
        assert_eq!(round_hint_to_min(0x12_3456), 0x12_3000);
        assert_eq!(LEGACY_BASE, 0x2aaa_aaaa_b000);
    }
}
