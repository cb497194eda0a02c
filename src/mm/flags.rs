//! The argument types of the mm calls, with Linux's numeric values so a trace
//! replay converts raw numbers with `from_bits_retain` / [`Advice::from_linux`].

use bitflags::bitflags;

bitflags! {
    /// `PROT_*` (Linux values). [`Prot::empty`] is `PROT_NONE`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct Prot: u32 {
        /// `PROT_READ`.
        const READ = 0x1;
        /// `PROT_WRITE`.
        const WRITE = 0x2;
        /// `PROT_EXEC`.
        const EXEC = 0x4;
        /// `PROT_SEM` (accepted, no effect).
        const SEM = 0x8;
        /// `PROT_GROWSDOWN`: mprotect extends down to the start of a growsdown VMA.
        const GROWSDOWN = 0x0100_0000;
        /// `PROT_GROWSUP` (never valid on x86-64 VMAs).
        const GROWSUP = 0x0200_0000;
    }
}

impl Prot {
    /// `PROT_NONE`.
    pub const NONE: Prot = Prot::empty();
    /// The access bits a VMA keeps (`READ | WRITE | EXEC`).
    pub const ACCESS: Prot = Prot::READ.union(Prot::WRITE).union(Prot::EXEC);
}

bitflags! {
    /// `MAP_*` (Linux x86-64 values). Unknown bits are kept and ignored, as
    /// the kernel ignores them for plain `MAP_SHARED` / `MAP_PRIVATE`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct MapFlags: u32 {
        /// `MAP_SHARED`.
        const SHARED = 0x01;
        /// `MAP_PRIVATE`.
        const PRIVATE = 0x02;
        /// `MAP_FIXED`: place exactly at the address, replacing what is there.
        const FIXED = 0x10;
        /// `MAP_ANONYMOUS`.
        const ANONYMOUS = 0x20;
        /// `MAP_GROWSDOWN`: a stack that faults grow downwards.
        const GROWSDOWN = 0x100;
        /// `MAP_DENYWRITE` (ignored).
        const DENYWRITE = 0x800;
        /// `MAP_EXECUTABLE` (ignored).
        const EXECUTABLE = 0x1000;
        /// `MAP_LOCKED` (not modelled).
        const LOCKED = 0x2000;
        /// `MAP_NORESERVE` (not modelled).
        const NORESERVE = 0x4000;
        /// `MAP_POPULATE` (not modelled: pages are faulted on demand).
        const POPULATE = 0x8000;
        /// `MAP_NONBLOCK`.
        const NONBLOCK = 0x1_0000;
        /// `MAP_STACK` (no effect on placement).
        const STACK = 0x2_0000;
        /// `MAP_HUGETLB` (not modelled).
        const HUGETLB = 0x4_0000;
        /// `MAP_FIXED_NOREPLACE`: as FIXED, but EEXIST over an existing mapping.
        const FIXED_NOREPLACE = 0x10_0000;
        /// Keep unknown bits.
        const _ = !0;
    }
}

bitflags! {
    /// `MREMAP_*` (Linux values).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct RemapFlags: u32 {
        /// `MREMAP_MAYMOVE`.
        const MAYMOVE = 1;
        /// `MREMAP_FIXED`: move to the given new address (needs MAYMOVE).
        const FIXED = 2;
        /// `MREMAP_DONTUNMAP`: move the pages, keep the old mapping (empty).
        const DONTUNMAP = 4;
        /// Keep unknown bits (they make the call fail with EINVAL).
        const _ = !0;
    }
}

/// `madvise` advice. Only `DontNeed` changes state; the others are accepted
/// and (beyond Linux's hole rule) have no modelled effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Advice {
    /// `MADV_NORMAL` (0).
    Normal,
    /// `MADV_RANDOM` (1).
    Random,
    /// `MADV_SEQUENTIAL` (2).
    Sequential,
    /// `MADV_WILLNEED` (3).
    WillNeed,
    /// `MADV_DONTNEED` (4): zap the pages; the next fault gets a zeroed frame.
    DontNeed,
    /// `MADV_FREE` (8): lazily freed in Linux; not modelled (no effect).
    Free,
    /// `MADV_DONTFORK` (10): fork does not copy the range (VM_DONTCOPY;
    /// splits VMAs).
    DontFork,
    /// `MADV_DOFORK` (11): undoes `DontFork`.
    DoFork,
    /// `MADV_WIPEONFORK` (18): the child gets the range as an empty mapping
    /// (private anonymous VMAs only, EINVAL otherwise; splits VMAs).
    WipeOnFork,
    /// `MADV_KEEPONFORK` (19): undoes `WipeOnFork`.
    KeepOnFork,
}

impl Advice {
    /// The advice for a Linux `MADV_*` number; `None` for the ones this model
    /// does not know (the caller reports EINVAL, as Linux does for invalid advice).
    pub fn from_linux(advice: u32) -> Option<Advice> {
        Some(match advice {
            0 => Advice::Normal,
            1 => Advice::Random,
            2 => Advice::Sequential,
            3 => Advice::WillNeed,
            4 => Advice::DontNeed,
            8 => Advice::Free,
            10 => Advice::DontFork,
            11 => Advice::DoFork,
            18 => Advice::WipeOnFork,
            19 => Advice::KeepOnFork,
            _ => return None,
        })
    }

    /// The Linux `MADV_*` number.
    pub fn to_linux(self) -> u32 {
        match self {
            Advice::Normal => 0,
            Advice::Random => 1,
            Advice::Sequential => 2,
            Advice::WillNeed => 3,
            Advice::DontNeed => 4,
            Advice::Free => 8,
            Advice::DontFork => 10,
            Advice::DoFork => 11,
            Advice::WipeOnFork => 18,
            Advice::KeepOnFork => 19,
        }
    }
}

/// The kind of access that faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// A load.
    Read,
    /// A store.
    Write,
    /// An instruction fetch.
    Exec,
}

impl Access {
    /// The protection bit this access needs.
    pub fn needs(self) -> Prot {
        match self {
            Access::Read => Prot::READ,
            Access::Write => Prot::WRITE,
            Access::Exec => Prot::EXEC,
        }
    }
}

/// How faults find and pin their VMA (issue 4; [DESIGN §4](crate::docs::design#4-mm)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum FaultPolicy {
    /// Lockless lookup under the tree's Srcu guard, validation under the PTE
    /// lock; no shared write on the fast path (ours; the default).
    #[default]
    Speculative,
    /// Lockless lookup, then a per-VMA read reference (Linux 6.4+/6.15).
    PerVmaLock,
    /// The classic process-wide lock: faults read-lock the whole space,
    /// which excludes every writer.
    MmapLock,
    /// Range locks (Lespinasse): a fault read-locks the 2 MiB-aligned range
    /// around the address (anonymous VMA) or the VMA's range (file VMA), so
    /// only writers on that range exclude it.
    RangeLock,
}

impl FaultPolicy {
    /// Every policy, in declaration order (what tests and benches run each
    /// case under).
    ///
    /// ```
    /// use maple_rcu::mm::FaultPolicy;
    /// assert_eq!(FaultPolicy::ALL.len(), 4);
    /// assert_eq!(FaultPolicy::ALL[0], FaultPolicy::default());
    /// ```
    pub const ALL: [FaultPolicy; 4] = [
        FaultPolicy::Speculative,
        FaultPolicy::PerVmaLock,
        FaultPolicy::MmapLock,
        FaultPolicy::RangeLock,
    ];
}

/// How writers (mmap, munmap, mprotect, mremap, brk, stack growth) exclude
/// each other (issue 11; [DESIGN §4.8](crate::docs::design#48-range-locks-writers-on-disjoint-ranges-run-in-parallel-issue-11)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum WriterLocking {
    /// Writers on disjoint ranges run in parallel: each write-locks the range
    /// it changes, extended to whole VMAs and mergeable neighbours.
    #[default]
    Range,
    /// Every writer locks the whole address space (the old `mmap_lock` held
    /// for write), for comparison.
    Global,
}

/// How a fault completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultOutcome {
    /// A new zeroed frame was mapped.
    Installed,
    /// A PTE already granted the access (another thread got there first).
    Present,
    /// A present PTE was given the missing permission the VMA allows (for
    /// a write in a private VMA: only on a frame it alone references).
    Upgraded,
    /// A write to a private page whose frame has other references (COW
    /// after fork, or a pin): the contents were copied to a new frame.
    Copied,
}

/// What backs a new mapping (for a replay that builds calls generically).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapSource {
    /// Anonymous memory.
    Anonymous,
    /// A file, identified by number, at a byte offset.
    File {
        /// The file's identity.
        id: u64,
        /// Byte offset of the mapping's first page in the file.
        offset: u64,
    },
}
