//! Typed errors of the tree. They implement `Debug` and `Display` without
//! requiring `V: Debug` (like std's `SendError<T>`), so `.unwrap()` works for
//! any value type.

use alloc::string::String;
use core::fmt;

/// Why a tree operation was refused. The tree is unchanged after any of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ErrorKind {
    /// The range is empty (`start >= end`).
    #[error("empty or reversed range")]
    EmptyRange,
    /// The range overlaps an entry already in the tree.
    #[error("range overlaps an existing entry")]
    Overlap,
    /// A gap search asked for size 0.
    #[error("size must be greater than zero")]
    ZeroSize,
    /// The alignment is not a power of two.
    #[error("alignment must be a power of two")]
    BadAlignment,
    /// The search window is empty (`within.start >= within.end`).
    #[error("empty search window")]
    EmptyWindow,
    /// No free range of the requested size and alignment fits in the window.
    #[error("no free range fits")]
    NoSpace,
    /// An exact-range removal found no entry overlapping the range.
    #[error("no entry overlaps the range")]
    NotFound,
    /// An exact-range removal found an entry overlapping the range that is
    /// not exactly that range (the tree is unchanged).
    #[error("the entry there is not exactly this range")]
    NotExact,
}

/// A refused insert, store or allocation; gives the value back.
pub struct Error<V> {
    /// What went wrong.
    pub kind: ErrorKind,
    /// The value that was passed in, returned unchanged.
    pub value: V,
}

impl<V> Error<V> {
    pub(crate) fn new(kind: ErrorKind, value: V) -> Self {
        Self { kind, value }
    }
    /// Drops the value and keeps the reason.
    pub fn into_kind(self) -> ErrorKind {
        self.kind
    }
}

impl<V> fmt::Debug for Error<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl<V> fmt::Display for Error<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.kind, f)
    }
}

impl<V> core::error::Error for Error<V> {}

/// An invariant violation found by `MapleTree::validate` (a bug in this crate).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("tree invariant I{invariant} violated: {detail}")]
pub struct ValidateError {
    /// The number of the violated invariant in [DESIGN](crate::docs::design).
    pub invariant: u32,
    /// What was found.
    pub detail: String,
}
