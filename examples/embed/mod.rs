//! The three embeddings of issue 13, each written against the public API
//! only and paired with the structures such a user would otherwise reach
//! for. Shared by `examples/embeddings.rs` (one run, every contender, a
//! table) and `benches/embeddings.rs` (criterion, per operation).
//!
//! * [`registry`]: a JIT-style code registry: lock-free lookups of "which
//!   module holds this PC" while modules are loaded and unloaded.
//! * [`guest_alloc`]: a hypervisor-style guest address allocator: aligned
//!   allocation and exact free (vm-allocator's `free`).
//! * [`attrs`]: a range-attribute map: set attributes over a range, punch
//!   holes.
//!
//! Every workload is deterministic (`common::Rng`), so each contender runs
//! exactly the same operations.

#![allow(dead_code)] // the example and the bench each use a subset

pub mod attrs;
pub mod guest_alloc;
pub mod registry;
