//! `fork`: a child address space sharing the parent's frame table, with a
//! copy of the VMAs and of the page tables, private pages COW-shared
//! ([DESIGN §4.9](crate::docs::design#49-processes-frames-fork-and-copy-on-write-issue-14)).

use super::space::{AddressSpace, WState};
use super::vma::Vma;

impl AddressSpace {
    /// `fork`: returns a child with the parent's VMAs, brk, limits, policy
    /// and locking, and a copy of its page tables: MAP_SHARED PTEs stay
    /// writable in both, private PTEs are write-protected in both and their
    /// frames shared (refcount + 1) until a write copies or reuses them.
    ///
    /// Excludes the parent's writers with a read lock of the whole range
    /// (every writer write-locks its area); the parent's faults, whatever
    /// the policy, and madvise keep running: each PTE is copied in one PTL
    /// critical section, so each page is copied before or after a racing
    /// access (per-page atomicity), and the COW rule (refcount 1 or copy)
    /// keeps a parent write after the copy out of the child's frame.
    pub fn fork(&self) -> AddressSpace {
        // Lock order (§4.8): the brk state, then the range lock, as brk.
        let st = self.brk_read();
        let _r = self.read_whole();
        // The child is registered in the family's rmap here, before any
        // of its PTEs (and so pv entries naming it) exist (rmap.rs).
        let child = AddressSpace::from_parts(
            self.pt.frames.clone(),
            WState {
                start_brk: st.start_brk,
                brk: st.brk,
            },
            self.policy,
            self.locking,
            self.gate.clone(),
            self.stack_rlimit,
            self.max_map_count,
        );
        drop(st);
        let pin = self.tree.pin();
        // The VMA tree: a bulk build (one transaction, no search: dense
        // leaves packed bottom-up, tree/bulk.rs) from the parent's VMAs in
        // address order, less the MADV_DONTFORK ones (VM_DONTCOPY). Not a
        // structural copy: each child VMA is a new `Vma` (its own dead flag
        // and lock) of a cloned spec, and DONTFORK VMAs leave holes.
        let vmas: Vec<_> = pin
            .iter()
            .filter(|(_, v)| !v.spec.attrs.dontfork)
            .map(|(r, v)| {
                debug_assert!(!v.is_dead(), "writers are excluded");
                (r, Vma::new(v.spec.clone()))
            })
            .collect();
        let ok = child.tree.try_extend(vmas);
        debug_assert!(ok.is_ok(), "sorted and disjoint: the bulk path");
        // MADV_WIPEONFORK: the child's VMA (which keeps the flag) starts
        // empty, as Linux's `dup_mmap` skips `copy_page_range` for it.
        for (r, v) in pin.iter() {
            if v.spec.attrs.dontfork || v.spec.attrs.wipeonfork {
                continue;
            }
            self.pt
                .copy_to(&child.pt, r.start, r.end, v.spec.attrs.shared);
        }
        child
    }
}
