//! `tree_ops`: random operation sequences on `MapleTree<u64>` and the BTreeMap
//! model, through the same driver as the stable proptest in `tests/tree.rs`
//! (`tests/common/tree_ops.rs`): every result compared, `validate()` after every
//! mutation, transactions (commit and abort) checked for isolation.
//!
//! Addresses are shaped so that operations collide: most land in a small dense
//! window, some near `u64::MAX`, some page-sized, some anywhere.
#![no_main]

#[path = "../../tests/common/tree_model.rs"]
mod tree_model;
#[path = "../../tests/common/tree_ops.rs"]
mod tree_ops;

use arbitrary::{Arbitrary, Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use maple_rcu::MapleTree;
use tree_ops::{Harness, Op, TxnOp};

/// Where an address lands.
#[derive(Arbitrary)]
enum Addr {
    Low(u16),
    High(u16),
    Page(u16),
    Any(u64),
}

fn addr(u: &mut Unstructured<'_>) -> Result<u64> {
    Ok(match u.arbitrary()? {
        Addr::Low(x) => u64::from(x % 4096),
        Addr::High(x) => u64::MAX - u64::from(x % 4096),
        Addr::Page(x) => u64::from(x) << 12,
        Addr::Any(x) => x,
    })
}

/// A length or size: mostly small, sometimes 0, pages, or anything.
fn len(u: &mut Unstructured<'_>) -> Result<u64> {
    Ok(match u.int_in_range(0u8..=15)? {
        0 => 0,
        1 => u64::from(u.arbitrary::<u16>()?) << 12,
        2 => u.arbitrary()?,
        _ => u.int_in_range(1..=100)?,
    })
}

/// Mostly small powers of two; sometimes huge ones, 0, or anything.
fn align(u: &mut Unstructured<'_>) -> Result<u64> {
    Ok(match u.int_in_range(0u8..=15)? {
        0 => 1 << u.int_in_range(13..=63)?,
        1 => u.arbitrary()?,
        _ => 1 << u.int_in_range(0..=12)?,
    })
}

type GapArgs = (u64, u64, u64, u64, bool);

fn gap_args(u: &mut Unstructured<'_>) -> Result<GapArgs> {
    Ok((len(u)?, align(u)?, addr(u)?, addr(u)?, u.arbitrary()?))
}

/// A `range` query: the window and the zig-zag pattern.
fn range_args(u: &mut Unstructured<'_>) -> Result<(u64, u64, u64)> {
    Ok((addr(u)?, addr(u)?, u.arbitrary()?))
}

#[derive(Debug)]
struct FuzzOp(Op);
#[derive(Debug)]
struct FuzzTxnOp(TxnOp);

impl<'a> Arbitrary<'a> for FuzzTxnOp {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Self(match u.int_in_range(0u8..=9)? {
            0..=3 => TxnOp::Insert(addr(u)?, len(u)?),
            4 | 5 => TxnOp::Remove(addr(u)?),
            6 => {
                let (s, a, lo, hi, r) = gap_args(u)?;
                TxnOp::Alloc(s, a, lo, hi, r)
            }
            7 => TxnOp::Get(addr(u)?),
            8 => {
                let (a, b, z) = range_args(u)?;
                TxnOp::Range(a, b, z)
            }
            _ => {
                let (s, a, lo, hi, r) = gap_args(u)?;
                if u.arbitrary()? {
                    TxnOp::Gap(s, a, lo, hi, r)
                } else {
                    TxnOp::Next(lo)
                }
            }
        }))
    }
}

impl<'a> Arbitrary<'a> for FuzzOp {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Self(match u.int_in_range(0u8..=15)? {
            0..=4 => Op::Insert(addr(u)?, len(u)?),
            5 | 6 => Op::Remove(addr(u)?),
            7 | 8 => {
                let (s, a, lo, hi, r) = gap_args(u)?;
                Op::Alloc(s, a, lo, hi, r)
            }
            9 => {
                let ops: Vec<FuzzTxnOp> = u.arbitrary()?;
                Op::Txn(ops.into_iter().map(|o| o.0).collect(), u.arbitrary()?)
            }
            10 => Op::Get(addr(u)?),
            11 => Op::Next(addr(u)?),
            12 => Op::Prev(addr(u)?),
            13 => {
                let (a, b, z) = range_args(u)?;
                Op::Range(a, b, z)
            }
            14 => {
                let (s, a, lo, hi, r) = gap_args(u)?;
                Op::Gap(s, a, lo, hi, r)
            }
            _ => Op::Gaps(addr(u)?, addr(u)?),
        }))
    }
}

fuzz_target!(|ops: Vec<FuzzOp>| {
    let mut h = Harness::with_tree(MapleTree::new());
    for op in ops {
        h.apply(op.0);
    }
    h.finish();
});
