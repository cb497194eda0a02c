//! `validate()`: checks every tree invariant of docs/DESIGN.md §2.2 on one
//! version of the tree. Tests call it after every mutation.

use super::ValidateError;
use super::node::{
    Header, INNER_CAP, INNER_MIN, KIND_LEAF, LEAF_CAP, LEAF_MIN, Summary, as_inner, as_leaf,
};
use std::collections::HashSet;

struct Walk {
    /// Transactions `>= next_txn` are not committed (I6).
    next_txn: u64,
    leaf_depth: Option<usize>,
    /// End of the previous entry in key order (I2 across leaves).
    prev_end: u64,
    entries: usize,
    seen: HashSet<usize>,
}

fn fail(invariant: u32, detail: String) -> Result<(), ValidateError> {
    Err(ValidateError { invariant, detail })
}

/// Validates the tree under `root` holding `len` entries.
///
/// # Safety
/// R1 (read.rs) for `root`.
pub(crate) unsafe fn validate<V>(
    root: *const Header,
    len: usize,
    next_txn: u64,
) -> Result<(), ValidateError> {
    let mut w = Walk {
        next_txn,
        leaf_depth: None,
        prev_end: 0,
        entries: 0,
        seen: HashSet::new(),
    };
    if !root.is_null() {
        // SAFETY: R1.
        unsafe { node::<V>(&mut w, root, 0, true)? };
    }
    if w.entries != len {
        return fail(
            9,
            format!("len() is {len} but the tree holds {} entries", w.entries),
        );
    }
    Ok(())
}

/// # Safety
/// R1 for `n`.
unsafe fn node<V>(
    w: &mut Walk,
    n: *const Header,
    depth: usize,
    is_root: bool,
) -> Result<Summary, ValidateError> {
    if n.is_null() {
        return Err(ValidateError {
            invariant: 5,
            detail: format!("null child at depth {depth}"),
        });
    }
    if !w.seen.insert(n as usize) {
        return Err(ValidateError {
            invariant: 9,
            detail: format!("node {n:p} reachable twice"),
        });
    }
    // SAFETY: R1.
    let hdr = unsafe { &*n };
    if hdr.txn >= w.next_txn {
        fail(
            6,
            format!(
                "node {n:p} of uncommitted transaction {} is reachable",
                hdr.txn
            ),
        )?;
    }
    let len = hdr.len as usize;
    if hdr.kind == KIND_LEAF {
        // SAFETY: R1 and the kind tag.
        let l = unsafe { as_leaf::<V>(n) };
        let min = if is_root { 1 } else { LEAF_MIN };
        if !(min..=LEAF_CAP).contains(&len) {
            fail(
                1,
                format!("leaf {n:p} holds {len} entries (allowed {min}..={LEAF_CAP})"),
            )?;
        }
        match w.leaf_depth {
            None => w.leaf_depth = Some(depth),
            Some(d) if d != depth => fail(4, format!("leaf at depth {depth}, another at {d}"))?,
            _ => {}
        }
        for j in 0..len {
            let (s, e) = (l.start[j], l.end[j]);
            if s >= e {
                fail(2, format!("entry {s:#x}..{e:#x} is empty or reversed"))?;
            }
            if (w.entries > 0 && s < w.prev_end) || l.val[j].is_null() {
                fail(
                    2,
                    format!(
                        "entry {s:#x}..{e:#x} overlaps or precedes the one before (end {:#x}) or has no value",
                        w.prev_end
                    ),
                )?;
            }
            w.prev_end = e;
            w.entries += 1;
        }
        for j in len..LEAF_CAP {
            if l.start[j] != u64::MAX || l.end[j] != u64::MAX || !l.val[j].is_null() {
                fail(
                    5,
                    format!("unused leaf slot {j} of {n:p} is not the sentinel"),
                )?;
            }
        }
        Ok(l.summary())
    } else {
        // SAFETY: R1 and the kind tag.
        let inn = unsafe { as_inner(n) };
        let min = if is_root { 2 } else { INNER_MIN };
        if !(min..=INNER_CAP).contains(&len) {
            fail(
                1,
                format!("inner {n:p} holds {len} children (allowed {min}..={INNER_CAP})"),
            )?;
        }
        for i in 0..len {
            // SAFETY: R1: children of a reachable node are reachable.
            let s = unsafe { node::<V>(w, inn.child[i], depth + 1, false)? };
            let stored = Summary {
                min: inn.min[i],
                max: inn.max[i],
                gap: inn.gap[i],
            };
            if s != stored {
                fail(
                    3,
                    format!("child {i} of {n:p}: stored summary {stored:x?}, recomputed {s:x?}"),
                )?;
            }
        }
        for i in len..INNER_CAP {
            let unused = inn.min[i] == u64::MAX && inn.max[i] == u64::MAX && inn.gap[i] == u64::MAX;
            if !unused || !inn.child[i].is_null() {
                fail(
                    5,
                    format!("unused inner slot {i} of {n:p} is not the sentinel"),
                )?;
            }
        }
        Ok(inn.summary())
    }
}
