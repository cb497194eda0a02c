//! The backing object of MAP_SHARED anonymous memory (Linux's shmem inode
//! behind `/dev/zero (deleted)`): the object's frames by page offset, so a
//! page of a shared mapping is the same frame in every VMA of the family
//! that maps it, whenever it is first faulted and however often it is
//! zapped (MADV_DONTNEED) and refaulted. [DESIGN §4.9](crate::docs::design#49-processes-frames-fork-and-copy-on-write-issue-14), "MAP_SHARED".
//!
//! The object holds one reference to each of its frames (counted in the
//! frame's `held` word, so `check_family` can tell it from a pin); a PTE
//! mapping the frame holds another. The VMAs that map the object hold an
//! `Arc` of it (a VMA's [`Attrs`](super::vma::Attrs), cloned by splits,
//! mremap and fork); when the last such VMA is freed (after its Srcu grace
//! period, M3) the object drops its frame references.
//!
//! **Lock order**: a PTL, then the object's `pages` mutex, then a frame
//! shard's mutex (inside `alloc`/`put`) or a frame's pv mutex (clearing a
//! fresh frame's stale entries). The object's mutex is taken only by
//! a fault installing a PTE in a shared VMA, under the PTL of that PTE, and
//! by nothing that takes a PTL under it; `Drop` takes it alone.

use super::frame::FrameTable;
use crate::sync::{Arc, Mutex, Ordering, lock};
use std::collections::BTreeMap;

/// A shared anonymous memory object.
pub(crate) struct Shmem {
    frames: Arc<FrameTable>,
    /// Page offset → frame number; each entry holds one reference.
    pages: Mutex<BTreeMap<u64, u64>>,
}

impl Shmem {
    /// A new, empty object whose frames come from `frames`.
    pub(crate) fn new(frames: &Arc<FrameTable>) -> Arc<Shmem> {
        // Relaxed: a count read only by checks at quiescent points.
        frames.objects.fetch_add(1, Ordering::Relaxed);
        Arc::new(Shmem {
            frames: frames.clone(),
            pages: Mutex::new(BTreeMap::new()),
        })
    }

    /// The frame of page `pgoff`, with a new mapping and reference for the
    /// caller's PTE: the object's frame (`dup`), or a fresh zeroed one that
    /// the object then holds too (`alloc` calls `fresh`). Caller: a fault,
    /// under the PTL of the empty PTE it is about to set, after validation
    /// (so a failed attempt touches nothing).
    ///
    /// A fresh frame's stale pv entries (of exited spaces that mapped it
    /// before it was freed) are dropped here, under the object's lock,
    /// before any other space can find the frame in the object and add its
    /// entry: so the caller adds its own with `fresh = false`. Clearing in
    /// the caller's `rmap_add(.., fresh)`, after this lock is released,
    /// wiped the entry of a fork relative that mapped the frame in between
    /// (M10; loom `mm::shared_anon_first_faults_in_parent_and_child`).
    pub(crate) fn get_or_insert(&self, pgoff: u64, alloc: impl FnOnce() -> u64) -> u64 {
        let mut pages = lock(&self.pages);
        if let Some(&pfn) = pages.get(&pgoff) {
            // From the object's reference, under its lock (M9: the object
            // drops it only in `Drop`, when no VMA maps it any more).
            self.frames.dup(pfn);
            return pfn;
        }
        let pfn = alloc();
        self.frames.rmap_clear(pfn);
        self.frames.hold(pfn);
        pages.insert(pgoff, pfn);
        pfn
    }

    /// Frames the object holds (tests, checks).
    #[allow(dead_code)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.pages).len()
    }
}

impl Drop for Shmem {
    /// The last VMA mapping the object is gone: drop its frame references
    /// (frames no PTE maps any more are freed here).
    fn drop(&mut self) {
        let pages = std::mem::take(&mut *lock(&self.pages));
        for pfn in pages.into_values() {
            self.frames.release(pfn);
        }
        // Relaxed: see `new`.
        self.frames.objects.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A VMA's place in a shared object: the object and the page offset of the
/// VMA's first page. Compared by object identity.
#[derive(Clone)]
pub(crate) struct ShmMap {
    pub(crate) obj: Arc<Shmem>,
    pub(crate) pgoff: u64,
}

impl PartialEq for ShmMap {
    fn eq(&self, o: &ShmMap) -> bool {
        Arc::ptr_eq(&self.obj, &o.obj) && self.pgoff == o.pgoff
    }
}

impl Eq for ShmMap {}

impl std::fmt::Debug for ShmMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmMap")
            .field("obj", &Arc::as_ptr(&self.obj))
            .field("pgoff", &self.pgoff)
            .finish()
    }
}

#[allow(dead_code)]
fn _assert_traits() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Shmem>();
}
