//! `mm_ops`: random sequences of mmap (FIXED, FIXED_NOREPLACE, hints,
//! GROWSDOWN, file maps, bad types), munmap, mprotect, mremap (MAYMOVE, FIXED,
//! DONTUNMAP, bad flags), brk, madvise and faults on an `AddressSpace` and
//! the page-granular model, through the same driver as the stable proptest
//! `tests/mm.rs::differential_against_page_model` (`tests/common/mm_model.rs`):
//! errno, addresses, fault outcomes, every VMA, every PTE and the frame
//! counters compared, `check()` after every operation. One fault policy per
//! input (picked by its first byte), so all three are fuzzed.
//!
//! Arguments are shaped by `mm_model::op_from_raw` so that operations collide:
//! most addresses are pages of a 128-page window, some unaligned, some just
//! under `MMAP_BASE` (where non-FIXED maps land), some edge values (0,
//! `mmap_min_addr`, `TASK_SIZE`, `u64::MAX`, ...); lengths are 1..16 pages,
//! sometimes unaligned, 0, or past `TASK_SIZE`.
#![no_main]

#[path = "../../tests/common/mm_model.rs"]
mod mm_model;

use arbitrary::{Arbitrary, Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use maple_rcu::mm::FaultPolicy;
use mm_model::{Harness, Op, op_from_raw};

/// One operation, built from raw numbers by the shared shaping function.
#[derive(Debug)]
struct FuzzOp(Op);

impl<'a> Arbitrary<'a> for FuzzOp {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let kind: u8 = u.arbitrary()?;
        let a: (u8, u32) = u.arbitrary()?;
        let b: (u8, u32) = u.arbitrary()?;
        let c: (u8, u32) = u.arbitrary()?;
        let (f, g): (u8, u8) = u.arbitrary()?;
        Ok(FuzzOp(op_from_raw(kind, a, b, c, f, g)))
    }
}

#[derive(Debug)]
struct Input {
    policy: FaultPolicy,
    ops: Vec<FuzzOp>,
}

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let policy = match u.int_in_range(0u8..=2)? {
            0 => FaultPolicy::Speculative,
            1 => FaultPolicy::PerVmaLock,
            _ => FaultPolicy::MmapLock,
        };
        Ok(Input {
            policy,
            ops: u.arbitrary()?,
        })
    }
}

fuzz_target!(|input: Input| {
    let mut h = Harness::new(input.policy);
    for op in &input.ops {
        h.apply(&op.0);
    }
});
