#![doc = include_str!("../README.md")]
#![deny(unsafe_op_in_unsafe_fn)]

pub(crate) mod sync;

pub mod parse;

pub mod srcu;
pub mod trace;
pub mod tree;

pub mod mm;
pub mod rangelock;

#[cfg(all(feature = "uffd", target_os = "linux", not(loom)))]
pub mod uffd;

pub use rangelock::{
    RangeLock, RangeLockError, RangeLockSet, RangeMode, RangeReadGuard, RangeWriteGuard,
};
pub use tree::{MapleTree, ReadGuard, WriteTxn};
