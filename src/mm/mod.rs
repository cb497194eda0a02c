//! `maple_rcu::mm`: a Linux-exact model of a process address space — VMAs in
//! a [`MapleTree`](crate::MapleTree), split-PTL page tables, and page faults
//! that take no process-wide lock ([DESIGN §4](crate::docs::design#4-mm)).
//!
//! ```
//! use maple_rcu::mm::{Access, AddressSpace, FaultOutcome, MapFlags, Prot};
//! let mm = AddressSpace::new();
//! let a = mm
//!     .mmap(None, 8192, Prot::READ | Prot::WRITE, MapFlags::PRIVATE | MapFlags::ANONYMOUS)
//!     .unwrap();
//! assert_eq!(a, 0x7ffff7fff000 - 8192);
//! assert_eq!(mm.fault(a, Access::Write), Ok(FaultOutcome::Installed));
//! mm.munmap(a, 8192).unwrap();
//! let s = mm.stats();
//! assert_eq!(s.frames_allocated, s.frames_live + s.frames_freed);
//! ```

mod brk;
mod error;
mod fault;
mod flags;
mod fork;
mod frame;
mod limits;
mod madvise;
mod maps;
mod memory;
mod mmap;
mod mprotect;
mod mremap;
mod munmap;
mod pagetable;
mod placement;
pub(crate) mod procmaps;
mod retire;
mod rmap;
mod shmem;
mod space;
mod stack;
mod stats;
mod vma;

pub use error::{FaultError, MmError};
pub use flags::{
    Access, Advice, FaultOutcome, FaultPolicy, MapFlags, MapSource, Prot, RemapFlags, WriterLocking,
};
pub use limits::{DEFAULT_MAX_MAP_COUNT, DEFAULT_STACK_RLIMIT};
pub use memory::PageRef;
pub use space::{AddressSpace, Pte};
pub use stats::MmStats;
pub use vma::VmaInfo;

/// Bytes per page.
pub const PAGE_SIZE: u64 = pagetable::PAGE;
/// Bytes per PMD-sized (transparent huge) page.
pub const HPAGE_SIZE: u64 = 2 << 20;
/// The lowest address a mapping may use (`vm.mmap_min_addr`).
pub const MMAP_MIN_ADDR: u64 = 0x10000;
/// The top of the user address space (x86-64, 4-level paging).
pub const TASK_SIZE: u64 = 0x7fff_ffff_f000;
/// Where top-down placement starts without ASLR.
pub const MMAP_BASE: u64 = 0x7fff_f7ff_f000;
/// The guard gap kept free below a GROWSDOWN VMA (256 pages).
pub const STACK_GUARD_GAP: u64 = 256 * PAGE_SIZE;
/// The initial program break of [`AddressSpace::new`] (where the py traces'
/// heap starts).
pub const DEFAULT_BRK: u64 = 0x5555_5555_9000;
