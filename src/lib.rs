// The crate page is the README. Its links to `docs/*.md` are reference
// links; the definitions below come first, and in Markdown the first
// definition of a label wins, so under rustdoc they point at the `docs`
// module (the same files, rendered), while GitHub uses the README's own.
#![doc = "[design]: crate::docs::design"]
#![doc = "[testing]: crate::docs::testing"]
#![doc = "[benchmarks]: crate::docs::benchmarks"]
#![doc = ""]
#![doc = include_str!("../README.md")]
#![deny(unsafe_op_in_unsafe_fn)]
// Without `std` the crate is the tree core on `core` + `alloc`; a stray
// `std::` path in a core module then fails to build (docs/DESIGN.md §2.9).
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub(crate) mod sync;

mod panicked;
pub mod platform;
pub mod tree;

#[cfg(feature = "std")]
pub mod parse;
#[cfg(feature = "std")]
pub mod srcu;
#[cfg(feature = "std")]
pub mod trace;

#[cfg(feature = "std")]
pub mod mm;
#[cfg(feature = "std")]
pub mod rangelock;

/// The design documents, rendered from `docs/*.md` in the repository, so that
/// links from the API docs resolve under `cargo doc` (and on GitHub, where
/// the same files are read directly). Section anchors are the headings'
/// GitHub-style ids, e.g. [`design#24-gap-search`](docs::design#24-gap-search).
// Prose written for GitHub: list items there continue lazily on purpose.
#[allow(clippy::doc_lazy_continuation)]
#[cfg(feature = "std")]
pub mod docs {
    #[doc = include_str!("../docs/DESIGN.md")]
    pub mod design {}
    #[doc = include_str!("../docs/TESTING.md")]
    pub mod testing {}
    #[doc = include_str!("../docs/BENCHMARKS.md")]
    pub mod benchmarks {}
}

#[cfg(all(feature = "uffd", target_os = "linux", not(loom)))]
pub mod uffd;

#[cfg(feature = "std")]
pub use rangelock::{
    RangeLock, RangeLockError, RangeLockSet, RangeMode, RangeReadGuard, RangeWriteGuard,
};
pub use tree::{MapleTree, ReadGuard, WriteTxn};
