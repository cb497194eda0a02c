//! VMAs: immutable once published (M1), except for the `dead` flag and the
//! per-VMA lock word.

use super::flags::{MapSource, Prot};
use super::pagetable::PAGE;
use super::shmem::ShmMap;
use crate::sync::{AtomicBool, AtomicU32, Ordering, thread};
use std::ops::Range;

/// The file behind a file-backed VMA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileMap {
    /// The file's identity.
    pub(crate) id: u64,
    /// Byte offset in the file of the VMA's first page.
    pub(crate) offset: u64,
    /// Device and inode printed in /proc/pid/maps.
    pub(crate) dev: (u32, u32),
    pub(crate) inode: u64,
    /// Path printed in /proc/pid/maps, if known.
    pub(crate) path: Option<String>,
    pub(crate) deleted: bool,
}

/// Everything about a VMA except its range and its runtime words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Attrs {
    /// Only `Prot::ACCESS` bits.
    pub(crate) prot: Prot,
    pub(crate) shared: bool,
    pub(crate) growsdown: bool,
    pub(crate) file: Option<FileMap>,
    /// A pseudo name of an anonymous VMA (`[stack]`, `[vdso]`, `[anon:x]`).
    pub(crate) name: Option<String>,
    /// MAP_SHARED anonymous memory: the backing object and this VMA's page
    /// offset in it (`shmem.rs`). `None` for private or file VMAs.
    pub(crate) shm: Option<ShmMap>,
    /// `MADV_DONTFORK` (Linux's VM_DONTCOPY): fork leaves the VMA out.
    pub(crate) dontfork: bool,
    /// `MADV_WIPEONFORK`: fork gives the child the VMA without its pages.
    pub(crate) wipeonfork: bool,
}

impl Attrs {
    /// Anonymous memory with the given protection.
    pub(crate) fn anon(prot: Prot, shared: bool) -> Attrs {
        Attrs {
            prot: prot & Prot::ACCESS,
            shared,
            growsdown: false,
            file: None,
            name: None,
            shm: None,
            dontfork: false,
            wipeonfork: false,
        }
    }

    /// The attributes of the part of a VMA starting `delta` bytes later.
    pub(crate) fn advanced(&self, delta: u64) -> Attrs {
        let mut a = self.clone();
        if let Some(f) = &mut a.file {
            f.offset = f.offset.wrapping_add(delta);
        }
        if let Some(m) = &mut a.shm {
            m.pgoff = m.pgoff.wrapping_add(delta / PAGE);
        }
        a
    }
}

/// A VMA description before it is published (a writer's working value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Spec {
    pub(crate) range: Range<u64>,
    pub(crate) attrs: Attrs,
}

impl Spec {
    /// The sub-range `r` (inside `self.range`) with its file offset adjusted.
    pub(crate) fn slice(&self, r: Range<u64>) -> Spec {
        debug_assert!(self.range.start <= r.start && r.end <= self.range.end);
        Spec {
            attrs: self.attrs.advanced(r.start - self.range.start),
            range: r,
        }
    }

    /// Whether `self` and the spec right after it merge into one VMA
    /// (anonymous private with equal flags, or contiguous pieces of a file).
    pub(crate) fn merges_with(&self, next: &Spec) -> bool {
        let (a, b) = (&self.attrs, &next.attrs);
        if self.range.end != next.range.start
            || a.prot != b.prot
            || a.shared != b.shared
            || a.growsdown != b.growsdown
            || a.name != b.name
            || a.dontfork != b.dontfork
            || a.wipeonfork != b.wipeonfork
        {
            return false;
        }
        match (&a.file, &b.file) {
            (None, None) => !a.shared,
            (Some(f), Some(g)) => {
                f.id == g.id
                    && f.dev == g.dev
                    && f.inode == g.inode
                    && f.path == g.path
                    && f.deleted == g.deleted
                    && f.offset.wrapping_add(self.range.end - self.range.start) == g.offset
            }
            _ => false,
        }
    }
}

/// A published VMA. Lives at a stable address inside the tree (its value),
/// is never edited after publication except `dead` and `lock` (M1), and is
/// freed through the tree's Srcu domain after a grace period (M3).
pub(crate) struct Vma {
    pub(crate) spec: Spec,
    /// Set by the writer that replaces or removes this VMA, before it
    /// publishes the replacement and before it touches any PTE (M2).
    dead: AtomicBool,
    /// The per-VMA lock word (used by `FaultPolicy::PerVmaLock` only).
    pub(crate) lock: VmaLock,
}

impl Vma {
    pub(crate) fn new(spec: Spec) -> Vma {
        Vma {
            spec,
            dead: AtomicBool::new(false),
            lock: VmaLock::new(),
        }
    }

    /// Whether a writer has replaced (or is replacing) this VMA.
    #[inline]
    pub(crate) fn is_dead(&self) -> bool {
        // Acquire: pairs with the Release store in `mark_dead`. The checks
        // that matter (under the PTL, M4) get their order from the PTL or
        // from the table-probe chain (docs/DESIGN.md §4.4); this Acquire only
        // makes the early fast-path check see a dead VMA as early as possible.
        self.dead.load(Ordering::Acquire)
    }

    /// Marks this VMA replaced. Called by the writer under the writer lock,
    /// before commit and before any PTE change (M2).
    pub(crate) fn mark_dead(&self) {
        // Release: pairs with the Acquire load in `is_dead`; the orders that
        // close races (2)/(4) come from the PTL and the probe RMWs that follow
        // this store in program order (docs/DESIGN.md §4.4).
        self.dead.store(true, Ordering::Release);
    }

    pub(crate) fn range(&self) -> Range<u64> {
        self.spec.range.clone()
    }

    pub(crate) fn prot(&self) -> Prot {
        self.spec.attrs.prot
    }
}

/// A published VMA's description for users.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmaInfo {
    /// The addresses covered, page aligned.
    pub range: Range<u64>,
    /// `READ`/`WRITE`/`EXEC`.
    pub prot: Prot,
    /// `MAP_SHARED` rather than private.
    pub shared: bool,
    /// A stack (`MAP_GROWSDOWN`).
    pub growsdown: bool,
    /// Anonymous, or which file at which offset.
    pub source: MapSource,
    /// The name /proc/pid/maps prints, if any (`[heap]` is computed).
    pub name: Option<String>,
}

/// The per-VMA lock of Linux 6.15 (`vm_refcnt`): 0 detached, 1 attached,
/// `1 + n` with `n` readers, `WRITER` set while a writer holds or waits.
pub(crate) struct VmaLock(AtomicU32);

const ATTACHED: u32 = 1;
const WRITER: u32 = 1 << 31;

impl VmaLock {
    fn new() -> VmaLock {
        VmaLock(AtomicU32::new(ATTACHED))
    }

    /// Takes a read reference unless the VMA is detached or write-locked.
    pub(crate) fn try_read(&self) -> bool {
        let mut c = self.0.load(Ordering::Relaxed);
        loop {
            if c == 0 || c & WRITER != 0 || c >= WRITER - 1 {
                return false;
            }
            // Acquire: pairs with the Release of `write_unlock`, so a reader
            // admitted after an aborted writer sees everything it did.
            match self
                .0
                .compare_exchange_weak(c, c + 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => c = now,
            }
        }
    }

    /// Drops a read reference taken by `try_read`.
    pub(crate) fn read_unlock(&self) {
        // Release: pairs with the Acquire loads in `write_lock`: everything
        // this reader did (PTE installs) happens before the writer proceeds.
        self.0.fetch_sub(1, Ordering::Release);
    }

    /// Excludes new readers and waits for the current ones (writer lock held).
    pub(crate) fn write_lock(&self) {
        // Acquire: pairs with `read_unlock`'s Release of readers that already left.
        let mut c = self.0.fetch_or(WRITER, Ordering::Acquire) | WRITER;
        while c & !WRITER > ATTACHED {
            thread::yield_now();
            // Acquire: pairs with `read_unlock`'s Release (see above).
            c = self.0.load(Ordering::Acquire);
        }
    }

    /// Releases a write lock without detaching (the VMA stays published).
    #[allow(dead_code)]
    pub(crate) fn write_unlock(&self) {
        // Release: pairs with the Acquire CAS in `try_read`.
        self.0.fetch_and(!WRITER, Ordering::Release);
    }

    /// Detaches a write-locked VMA that the writer replaced: readers fail forever.
    pub(crate) fn detach(&self) {
        // Release: pairs with the Acquire CAS in `try_read` (which fails on 0).
        self.0.store(0, Ordering::Release);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn anon(r: Range<u64>, prot: Prot) -> Spec {
        Spec {
            range: r,
            attrs: Attrs::anon(prot, false),
        }
    }

    fn file(r: Range<u64>, offset: u64) -> Spec {
        let mut attrs = Attrs::anon(Prot::READ, false);
        attrs.file = Some(FileMap {
            id: 1,
            offset,
            dev: (0, 0),
            inode: 1,
            path: None,
            deleted: false,
        });
        Spec { range: r, attrs }
    }

    #[test]
    fn merge_rules() {
        let rw = Prot::READ | Prot::WRITE;
        assert!(anon(0..10, rw).merges_with(&anon(10..20, rw)));
        assert!(
            !anon(0..10, rw).merges_with(&anon(11..20, rw)),
            "not touching"
        );
        assert!(!anon(0..10, rw).merges_with(&anon(10..20, Prot::READ)));
        let mut shared = anon(10..20, rw);
        shared.attrs.shared = true;
        let mut shared0 = anon(0..10, rw);
        shared0.attrs.shared = true;
        assert!(
            !shared0.merges_with(&shared),
            "shared anonymous never merges"
        );
        assert!(file(0..0x2000, 0x1000).merges_with(&file(0x2000..0x3000, 0x3000)));
        assert!(!file(0..0x2000, 0).merges_with(&file(0x2000..0x3000, 0x3000)));
        assert!(!anon(0..0x2000, Prot::READ).merges_with(&file(0x2000..0x3000, 0)));
        let s = file(0x1000..0x5000, 0x8000).slice(0x3000..0x4000);
        assert_eq!(s.attrs.file.unwrap().offset, 0xa000);
    }

    #[test]
    fn vma_lock_states() {
        let l = VmaLock::new();
        assert!(l.try_read());
        assert!(l.try_read());
        l.read_unlock();
        l.read_unlock();
        l.write_lock();
        assert!(!l.try_read(), "writer excludes readers");
        l.write_unlock();
        assert!(l.try_read());
        l.read_unlock();
        l.write_lock();
        l.detach();
        assert!(!l.try_read(), "detached");
    }
}
