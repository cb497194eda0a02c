//! Linux's per-process limits on the address space ([DESIGN §4.7](crate::docs::design#47-placement-and-semantics),
//! "Limits"): `RLIMIT_STACK` for stack growth and `vm.max_map_count` for the
//! number of VMAs. The rules are Linux 6.17's; each cites the kernel code it
//! reproduces. The checks are pure functions of the VMA count (the tree's
//! `len`, O(1)) and the pending VMAs, called from the writer entry points
//! before anything changes.

use super::space::AddressSpace;
use super::vma::{Spec, Vma};
use crate::tree::WriteTxn;
use std::ops::Range;

/// Linux's default `RLIMIT_STACK` soft limit (8 MiB, `_STK_LIM`).
pub const DEFAULT_STACK_RLIMIT: u64 = 8 << 20;
/// Linux's default `vm.max_map_count` (`DEFAULT_MAX_MAP_COUNT`, 65530).
pub const DEFAULT_MAX_MAP_COUNT: u64 = 65530;

/// Where a `mprotect` that runs out of VMAs stops (Linux's partial effect).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProtectStop {
    /// The VMAs of `[start, at)` were changed; the VMA at `at` was not.
    At(u64),
    /// Nothing changed protection, but the first VMA was split at this
    /// address (`split_vma` at the start succeeded, the one at the end did
    /// not): the two halves keep the old attributes.
    SplitOnly(u64),
}

impl AddressSpace {
    /// `RLIMIT_STACK` in bytes: the largest size a GROWSDOWN VMA may reach by
    /// growing (default 8 MiB).
    pub fn stack_rlimit(&self) -> u64 {
        self.stack_rlimit
    }

    /// Sets `RLIMIT_STACK` (`setrlimit(RLIMIT_STACK)`); `u64::MAX` is
    /// `RLIM_INFINITY`. Only stack growth reads it: the mmap base stays at
    /// [`MMAP_BASE`](super::MMAP_BASE), which is Linux's for every limit up
    /// to about 127 MiB ([DESIGN §4.7](crate::docs::design#47-placement-and-semantics)).
    pub fn set_stack_rlimit(&mut self, bytes: u64) {
        self.stack_rlimit = bytes;
    }

    /// `vm.max_map_count` (default 65530).
    pub fn max_map_count(&self) -> u64 {
        self.max_map_count
    }

    /// Sets `vm.max_map_count` for this address space.
    pub fn set_max_map_count(&mut self, n: u64) {
        self.max_map_count = n;
    }

    /// `acct_stack_growth` (mm/vma.c, 6.17):
    /// `if (size > rlimit(RLIMIT_STACK)) return -ENOMEM;` with
    /// `size = vma->vm_end - address` — the whole VMA after growing, for
    /// any GROWSDOWN VMA.
    pub(crate) fn stack_growth_fits(&self, vm_end: u64, new_start: u64) -> bool {
        vm_end - new_start <= self.stack_rlimit
    }

    /// `do_mmap` (mm/mmap.c) and `do_brk_flags` (mm/vma.c), 6.17:
    /// `if (mm->map_count > sysctl_max_map_count) return -ENOMEM;` — so a
    /// new mapping is still allowed at exactly the limit.
    pub(crate) fn too_many_maps(&self, count: usize) -> bool {
        count as u64 > self.max_map_count
    }

    /// `vms_gather_munmap_vmas` (mm/vma.c, 6.17), used by munmap, brk
    /// shrinking, mremap shrinking and mmap over a mapping: only an unmap
    /// strictly inside one VMA (a split at both ends, one more VMA after)
    /// is checked — `if (vms->end < vms->vma->vm_end &&
    /// vms->vma->vm_mm->map_count >= sysctl_max_map_count) return -ENOMEM;`.
    /// A split at one end uses the unchecked `__split_vma`, since the
    /// unmap removes at least that piece again.
    pub(crate) fn unmap_needs_room(&self, txn: &WriteTxn<'_, Vma>, r: &Range<u64>) -> bool {
        matches!(txn.get(r.start), Some((vr, _)) if vr.start < r.start && r.end < vr.end)
            && self.map_count(txn) as u64 >= self.max_map_count
    }

    /// `check_mremap_params` (mm/mremap.c, 6.17), for MREMAP_FIXED or
    /// MREMAP_DONTUNMAP: `if ((current->mm->map_count + 2) >=
    /// sysctl_max_map_count - 3) return -ENOMEM;` (the target and the
    /// source may each be split in three).
    pub(crate) fn mremap_to_needs_room(&self, count: usize) -> bool {
        count as u64 + 5 >= self.max_map_count
    }

    /// `prep_move_vma` (mm/mremap.c, 6.17), before every move:
    /// `if (current->mm->map_count >= sysctl_max_map_count - 3) return -ENOMEM;`.
    pub(crate) fn move_needs_room(&self, count: usize) -> bool {
        count as u64 + 3 >= self.max_map_count
    }

    /// Replays Linux's `mprotect` loop over the VMAs of `[start, end)` (no
    /// holes: the caller stops at the first one) and returns where it runs
    /// out of VMAs, if it does. Per VMA (`mprotect_fixup` → `vma_modify`,
    /// mm/mprotect.c and mm/vma.c, 6.17): unchanged flags → nothing; else a
    /// merge with the previous VMA (range starts at the VMA) and/or the next
    /// (range ends at it) when they match, which never fails; else
    /// `split_vma` at the start, then at the end, each failing with ENOMEM
    /// when `map_count >= sysctl_max_map_count`. VMAs before the failing one
    /// keep their new protection (Linux does not roll back).
    pub(crate) fn mprotect_stop(
        &self,
        txn: &WriteTxn<'_, Vma>,
        range: Range<u64>,
        newprot: super::Prot,
    ) -> Option<ProtectStop> {
        let max = self.max_map_count;
        let mut count = self.map_count(txn) as u64;
        let mut prev: Option<Spec> = txn
            .prev(range.start)
            .filter(|(r, _)| r.end <= range.start)
            .map(|(_, v)| v.spec.clone());
        for (r, v) in txn.range(range.clone()) {
            let (s, e) = (r.start.max(range.start), r.end.min(range.end));
            if v.spec.attrs.prot == newprot {
                prev = Some(v.spec.clone());
                continue;
            }
            let mut n = v.spec.slice(s..e);
            n.attrs.prot = newprot;
            let left = s == r.start
                && prev
                    .as_ref()
                    .is_some_and(|p| p.range.end == s && p.merges_with(&n));
            let next = txn.get(r.end).map(|(_, nv)| nv.spec.clone());
            let right = e == r.end && next.as_ref().is_some_and(|x| n.merges_with(x));
            let whole = s == r.start && e == r.end;
            match (left, right) {
                (true, true) => count -= 2,
                (true, false) | (false, true) if whole => count -= 1,
                (true, false) | (false, true) => {}
                (false, false) => {
                    if s > r.start {
                        if count >= max {
                            return Some(ProtectStop::At(s));
                        }
                        count += 1;
                    }
                    if e < r.end {
                        if count >= max {
                            return Some(if s > r.start {
                                ProtectStop::SplitOnly(s)
                            } else {
                                ProtectStop::At(s)
                            });
                        }
                        count += 1;
                    }
                }
            }
            // The piece ending at `e`, as the next VMA's merge candidate.
            prev = Some(match (left, prev) {
                (true, Some(mut p)) => {
                    p.range.end = e;
                    p
                }
                _ => n,
            });
        }
        None
    }
}
