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
    /// Under `WriterLocking::Range` it write-locks only its R-M1 extent (no
    /// 2 MiB spans) for the zap and the commit, and frees the tables it
    /// emptied after releasing it (`free_empty_spans`,
    /// [DESIGN §4.8](crate::docs::design#48-range-locks-writers-on-disjoint-ranges-run-in-parallel-issue-11),
    /// "Freeing tables"), so it no longer excludes writers in the rest of
    /// the span.
    pub fn munmap(&self, addr: u64, len: u64) -> Result<(), MmError> {
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
        let w = self.lock_for(r.clone(), false);
        self.unmap_checked(r.clone(), Tables::Keep)?;
        drop(w);
        self.free_empty_spans(&r);
        Ok(())
    }

    /// The table-freeing step of an munmap that held only its R-M1 extent
    /// (DESIGN §4.8, "Freeing tables"; race 1, §4.5). Called holding no
    /// range lock, after the commit that removed `r`'s VMAs. For each 2 MiB
    /// span overlapping `r` that has a last-level table and no VMA in the
    /// current version, `try_write`s the span (never blocks, so no lock
    /// order to keep), looks again on a snapshot taken under it, and frees
    /// the table if the span is still empty.
    ///
    /// Why the look under the lock suffices: every writer that changes a VMA
    /// in the span (mmap, munmap, mprotect, mremap, brk, stack growth)
    /// holds a write lock overlapping it from before its change until after
    /// its commit, and placements claim before they insert (§4.8): so while
    /// we hold the span, no VMA appears there, and the snapshot, taken after
    /// the grant, shows every commit of a writer that released before it
    /// (R-M3's argument). A span with no VMA in it then has only dead VMAs
    /// that faults can still find, whose PTEs their writers zapped after
    /// killing them: race 1 applies as for a writer holding the span.
    ///
    /// When the `try_write` fails, the table is left, empty: the conflicting
    /// request is a writer (which maps in the span, so the table is needed,
    /// or unmaps there and runs this step itself after it releases), a
    /// placement's claim or wait, or a reader (a fallback fault, madvise,
    /// `stats`/`check`/fork). Such a table holds no PTE (`check()` accepts
    /// it, and still fails on any PTE outside a VMA), is reused by the next
    /// fault in the span and freed by the next unmap there that finds the
    /// span quiet, or at exit. Linux keeps empty tables too (MADV_DONTNEED,
    /// and `free_pgtables`' floor and ceiling keep those shared with a
    /// neighbour).
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
            let Ok(_span) = self.rl.try_write(base, base + PMD_SPAN) else {
                self.pt.ctr.add(crate::mm::stats::Ctr::TablesKept, 1);
                continue;
            };
            let pin = self.tree.pin();
            let empty = |b: u64| span_has_no_vma(&pin, b);
            self.pt
                .free_tables(base, base + PMD_SPAN, self.tree.domain(), &empty);
        }
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
        self.replace(txn, r.clone(), Vec::new(), After::Unmap(vec![r], tables));
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
        self.replace(txn, r.clone(), Vec::new(), After::Unmap(vec![r], tables));
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::mm::pagetable::{PMD_SPAN, PTE_PRESENT, PTE_READ};
    use crate::mm::{Access, AddressSpace, MapFlags, Prot};

    /// An munmap whose span is busy leaves the emptied table linked
    /// (`tables_kept`); `check()` accepts it, the next munmap touching the
    /// span that finds it quiet frees it, and `check()` still fails on a
    /// PTE in a span with no VMA.
    #[test]
    fn busy_span_keeps_its_empty_table_and_check_still_audits_ptes() {
        let s = 0x4000_0000u64;
        let p = 4096;
        let fixed = MapFlags::PRIVATE | MapFlags::ANONYMOUS | MapFlags::FIXED;
        let busy = |mm: &AddressSpace| {
            mm.mmap(Some(s), p, Prot::READ | Prot::WRITE, fixed)
                .unwrap();
            mm.fault(s, Access::Write).unwrap();
            // Another request in the span, outside the munmap's extent.
            let g = mm.rl.try_read(s + 100 * p, s + 101 * p).unwrap();
            mm.munmap(s, p).unwrap();
            drop(g);
        };
        let mm = AddressSpace::new();
        busy(&mm);
        let st = mm.stats();
        assert_eq!((st.tables_kept, st.tables_freed), (1, 0), "{st:?}");
        assert!(mm.translate(s).is_none());
        mm.check().unwrap();
        // A quiet munmap in the span (of a hole) frees it.
        mm.munmap(s + 7 * p, p).unwrap();
        assert_eq!(mm.stats().tables_freed, 1);
        mm.check().unwrap();

        let mm = AddressSpace::new();
        busy(&mm);
        {
            let pin = mm.tree.pin();
            let t = mm.pt.walk(&pin, s, false).expect("the kept table");
            t.lock().set(s + PMD_SPAN / 2, PTE_PRESENT | PTE_READ);
        }
        let e = mm.check().unwrap_err();
        assert!(e.contains("outside every VMA"), "{e}");
        // Remove the forged PTE (it maps no frame) before the space drops.
        let pin = mm.tree.pin();
        let t = mm.pt.walk(&pin, s, false).expect("the kept table");
        t.lock().set(s + PMD_SPAN / 2, 0);
    }
}
