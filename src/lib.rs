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

pub(crate) mod sync;

pub mod parse;

pub mod srcu;
pub mod trace;
pub mod tree;

pub mod mm;
pub mod rangelock;

/// The design documents, rendered from `docs/*.md` in the repository, so that
/// links from the API docs resolve under `cargo doc` (and on GitHub, where
/// the same files are read directly). Section anchors are the headings'
/// GitHub-style ids, e.g. [`design#24-gap-search`](docs::design#24-gap-search).
// Prose written for GitHub: list items there continue lazily on purpose.
#[allow(clippy::doc_lazy_continuation)]
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

pub use rangelock::{
    RangeLock, RangeLockError, RangeLockSet, RangeMode, RangeReadGuard, RangeWriteGuard,
};
pub use tree::{MapleTree, ReadGuard, WriteTxn};
