//! `munmap` and the unmap helpers other writers share.

use crate::mm::TASK_SIZE;
use crate::mm::error::MmError;
use crate::mm::flags::WriterLocking;
use crate::mm::pagetable::{PAGE, PMD_SPAN};
use crate::mm::retire::{After, Edit, Tables};
use crate::mm::space::{AddressSpace, page_up, span_has_no_vma};
use crate::mm::vma::Vma;
use crate::tree::WriteTxn;
use std::ops::Range;

impl AddressSpace {
    /// `munmap`: holes are fine; VMAs are split at the edges.
    ///
    /// Under `WriterLocking::Range` it write-locks exactly its range (no
    /// 2 MiB spans, not the whole VMAs it splits, and no contagion margin:
    /// an unmap merges nothing), edits and commits under the tree's writer
    /// mutex, zaps (`unmap_own_range`, R-M6), and frees
    /// the tables it emptied after releasing it (`free_empty_spans`,
    /// [DESIGN §4.8](crate::docs::design#48-range-locks-writers-on-disjoint-ranges-run-in-parallel-issue-11),
    /// "Freeing tables"), so it no longer excludes writers in the rest of
    /// the span.
    pub fn munmap(&self, addr: u64, len: u64) -> Result<(), MmError> {
        // R-M5: declared first, so dropped last, after every lock below.
        let _drain = self.drain_on_exit();
        if !addr.is_multiple_of(PAGE) || addr > TASK_SIZE || len > TASK_SIZE - addr {
            return Err(MmError::Inval);
        }
        let len = page_up(len).ok_or(MmError::Inval)?;
        if len == 0 {
            return Err(MmError::Inval);
        }
        let r = addr..addr + len;
        if self.locking == WriterLocking::Global {
            let _w = self.lock_whole();
            return self.unmap_checked(r, Tables::Free);
        }
        let w = self.lock_exactly(r.clone());
        let done = self.unmap_own_range(&r);
        drop(w);
        done?;
        self.free_empty_spans(&r);
        Ok(())
    }

    /// The table-freeing step of an munmap that held only its R-M1 extent
    /// (DESIGN §4.8, "Freeing tables"; race 1, §4.5), and of a fault that
    /// linked a table and then found its VMA dead (fault.rs,
    /// `Try::Orphan`). Called holding no range lock and no pin. For each
    /// 2 MiB span overlapping `r` that has a last-level table and no VMA in
    /// the current version: read-locks the span (blocking: it holds
    /// nothing, so rule (a) of §7.3 holds), looks again on a snapshot
    /// taken under it, and frees the table if the span is still empty
    /// (`free_tables`, idempotent: two free steps in one span are two
    /// readers, and the table is freed once).
    ///
    /// Why a read lock suffices: every writer that changes a VMA in the
    /// span (mmap, munmap, mprotect, mremap, brk, stack growth) or walks
    /// its tables holds a write lock overlapping it from before its change
    /// until after its commit, and placements claim before they insert
    /// (§4.8): so while we hold the span, no VMA appears there and no
    /// writer walks its table, and the snapshot, taken after the grant,
    /// shows every commit of a writer that released before it (R-M3's
    /// argument). A span with no VMA in it then has only dead VMAs that
    /// faults can still find, whose PTEs their writers zapped after killing
    /// them: race 1 applies as for a writer holding the span. Readers that
    /// walk tables meanwhile (`stats`, `check`, fork, madvise, another free
    /// step) hold a pin, which keeps a table we unlink allocated.
    ///
    /// Readers do not stop it (a placement that meets it waits for it
    /// rather than skipping the span: `place`); a writer in the span makes
    /// it wait until that writer is done, then it decides on what the
    /// writer left. So no emptied table is left linked: `check()` fails on
    /// a last-level table in a span with no VMA at a quiescent point.
    pub(crate) fn free_empty_spans(&self, r: &Range<u64>) {
        let lo = r.start & !(PMD_SPAN - 1);
        let hi = r.end.next_multiple_of(PMD_SPAN);
        let candidates = {
            let pin = self.tree.pin();
            let mut c = self.pt.table_spans(&pin, lo, hi);
            c.retain(|&b| span_has_no_vma(&pin, b));
            c
        };
        for base in candidates {
            self.free_span(base);
        }
    }

    /// The free step of one span (`free_empty_spans`), never waiting: if a
    /// writer holds or waits for part of the span, the step is handed to it
    /// (R-M5): recorded in `deferred`, which every writer call reads after
    /// releasing its locks (`drain_deferred`). A second `try_read` after
    /// the record closes the window where the writer released and looked
    /// before the record was visible (store buffering: `defer_span`'s
    /// fence against the ordering the range lock gives the writer's
    /// release, see `drain_deferred`); if it succeeds we free here.
    /// Refused, it first looks at the current version: if a VMA is in the
    /// span now (typically the refusing writer's own), the step is dropped
    /// (R-M7: whoever removes the span's last VMA runs a free step after
    /// its commit). Called holding no range lock and no pin.
    pub(crate) fn free_span(&self, base: u64) {
        let span = base..base + PMD_SPAN;
        let _span = match self.try_read_range(span.clone()) {
            Some(g) => g,
            None => {
                if self.span_has_vma_now(base) {
                    return;
                }
                self.defer_span(base);
                match self.try_read_range(span) {
                    // Our record stays: a later drain finds the step done.
                    Some(g) => g,
                    // The writer in the way reads our record after its
                    // release.
                    None => return,
                }
            }
        };
        let pin = self.tree.pin();
        let empty = |b: u64| span_has_no_vma(&pin, b);
        self.pt
            .free_tables(&pin, base, base + PMD_SPAN, self.tree.domain(), &empty);
    }

    /// `unmap_locked` after the munmap rule of `vm.max_map_count`
    /// ([`unmap_needs_room`](Self::unmap_needs_room)): ENOMEM and no change
    /// when the unmap would split one VMA in three at the limit. `tables`:
    /// whether the caller's lock covers the spans ([`Tables`]).
    pub(crate) fn unmap_checked(&self, r: Range<u64>, tables: Tables) -> Result<(), MmError> {
        if self.unmap_planned(&r, tables) {
            return Ok(());
        }
        let txn = self.tree.write();
        if self.unmap_needs_room(&txn, &r) {
            return Err(MmError::NoMem);
        }
        self.replace(txn, r.clone(), Vec::new(), After::Unmap(r, tables));
        Ok(())
    }

    /// Splits the VMA containing `at` into two with its attributes, nothing
    /// else (Linux's state after `split_vma` succeeded at the start of an
    /// mprotect range and failed at its end: `limits.rs`).
    pub(crate) fn split_only(&self, txn: WriteTxn<'_, Vma>, at: u64) {
        let Some((r, v)) = txn.get(at) else {
            return;
        };
        if r.start == at {
            return;
        }
        let spec = v.spec.clone();
        let mut e = Edit::new(txn);
        e.remove(r.start);
        for part in [r.start..at, at..r.end] {
            e.insert(spec.slice(part));
        }
        self.finish(e, None, After::None);
    }

    pub(crate) fn unmap_locked(&self, r: Range<u64>, tables: Tables) {
        let txn = self.tree.write();
        self.replace(txn, r.clone(), Vec::new(), After::Unmap(r, tables));
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::mm::pagetable::{PMD_SPAN, PTE_PRESENT, PTE_READ};
    use crate::mm::{Access, AddressSpace, MapFlags, Prot};

    /// A reader in the span (here a page read lock, as a fallback fault
    /// takes) does not stop munmap's free step: the emptied table is
    /// freed, and `tables_kept` (linked tables in spans with no VMA) is 0.
    /// A table forged into an empty span is counted by `tables_kept` and
    /// fails `check()`; the next munmap touching the span frees it. A PTE
    /// in a span with no VMA still fails `check()`.
    #[test]
    fn free_step_ignores_readers_and_check_audits_empty_spans() {
        let s = 0x4000_0000u64;
        let p = 4096;
        let fixed = MapFlags::PRIVATE | MapFlags::ANONYMOUS | MapFlags::FIXED;
        let mm = AddressSpace::new();
        mm.mmap(Some(s), p, Prot::READ | Prot::WRITE, fixed)
            .unwrap();
        mm.fault(s, Access::Write).unwrap();
        let g = mm.rl.try_read(s + 100 * p, s + 101 * p).unwrap();
        mm.munmap(s, p).unwrap();
        drop(g);
        let st = mm.stats();
        assert_eq!((st.tables_kept, st.tables_freed), (0, 1), "{st:?}");
        mm.check().unwrap();

        // A table linked in the empty span (as a fault on a dying VMA
        // would): counted and refused by check().
        {
            let pin = mm.tree.pin();
            mm.pt.walk(&pin, s, true).expect("populated");
        }
        assert_eq!(mm.stats().tables_kept, 1);
        let e = mm.check().unwrap_err();
        assert!(e.contains("spans with no VMA"), "{e}");
        // A quiet munmap in the span (of a hole) frees it.
        mm.munmap(s + 7 * p, p).unwrap();
        let st = mm.stats();
        assert_eq!((st.tables_kept, st.tables_freed), (0, 2), "{st:?}");
        mm.check().unwrap();

        // A PTE in the span with no VMA.
        {
            let pin = mm.tree.pin();
            let t = mm.pt.walk(&pin, s, true).expect("populated");
            t.lock_at(s + PMD_SPAN / 2)
                .set(s + PMD_SPAN / 2, PTE_PRESENT | PTE_READ);
        }
        let e = mm.check().unwrap_err();
        assert!(e.contains("outside every VMA"), "{e}");
        // Remove the forged PTE (it maps no frame) before the space drops.
        let pin = mm.tree.pin();
        let t = mm.pt.walk(&pin, s, false).expect("the forged table");
        t.lock_at(s + PMD_SPAN / 2).set(s + PMD_SPAN / 2, 0);
    }
}
