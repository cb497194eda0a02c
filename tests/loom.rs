//! Loom models of every publish / retire / validate protocol in the crate.
//! Run: `LOOM_MAX_PREEMPTIONS=2 RUSTFLAGS='--cfg loom' CARGO_TARGET_DIR=target/loom cargo test --release --test loom`
#![cfg(loom)]

#[path = "loom/breaker.rs"]
mod breaker;
#[path = "loom/breaker_s10.rs"]
mod breaker_s10;
#[path = "loom/breaker_s11.rs"]
mod breaker_s11;
#[path = "loom/breaker_s14.rs"]
mod breaker_s14;
#[path = "loom/breaker_s16.rs"]
mod breaker_s16;
#[path = "loom/breaker_s7.rs"]
mod breaker_s7;
#[path = "loom/breaker_s8.rs"]
mod breaker_s8;
#[path = "loom/breaker_s8b.rs"]
mod breaker_s8b;
#[path = "loom/mm.rs"]
mod mm;
#[path = "loom/rangelock.rs"]
mod rangelock;
#[path = "loom/srcu.rs"]
mod srcu;
#[path = "loom/tree.rs"]
mod tree;
#[path = "loom/unlink.rs"]
mod unlink;
