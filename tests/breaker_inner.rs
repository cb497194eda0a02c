//! Narrow inner nodes (I11: scaled 32-bit offsets from a per-node base with
//! a per-node shift, 11 children in 256 B, else the wide 7-child form)
//! attacked through the shared differential driver (`tree_ops.rs`: every
//! operation against the BTreeMap model, `validate()` after every
//! mutation), with keys drawn at the format's edges: page-aligned keys with
//! an occasional unaligned one (the node's shift drops from 12 to 0, which
//! may make it wide or split it), slot strides whose node spans cross 2^44
//! bytes at shift 12 and 2^32 at shift 0, gap searches aligned up to 1 GiB
//! and 2^32 in pages. Every few steps the tree is structurally cloned and
//! rebuilt in bulk from its contents, and both must equal the model (and
//! answer the same gap searches). Plus readers pinned across commits that
//! check their whole snapshot.

#[path = "common/tree_model.rs"]
mod tree_model;
#[path = "common/tree_ops.rs"]
mod tree_ops;

use maple_rcu::MapleTree;
use proptest::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use tree_ops::{Harness, Op, TxnOp, entries};

const P: u64 = 1 << 12;
const G: u64 = 1 << 32;

/// Where a scenario's keys live: `base + slot * stride + odd`.
#[derive(Clone, Copy, Debug)]
struct Space {
    base: u64,
    stride: u64,
}

impl Space {
    fn at(&self, slot: u64, odd: u64) -> u64 {
        self.base
            .saturating_add(slot.saturating_mul(self.stride))
            .saturating_add(odd)
    }
}

/// Slots per space: slot 0 to slot `SLOTS - 1` spans exactly 2^32 strides.
const SLOTS: u64 = 1025;

/// Strides and bases. Page scale: `SLOTS` slots of 2^34 bytes (2^22 pages)
/// make a node whose keys reach from slot 0 to the last slot span exactly
/// 2^44 bytes, one page more than a narrow node at shift 12 holds (I11),
/// one slot less fits. Byte scale likewise with 2^22-byte slots and 2^32
/// (unaligned keys, shift 0). And the top of the key space.
fn space() -> impl Strategy<Value = Space> {
    const PS: u64 = 1 << 34;
    const BS: u64 = 1 << 22;
    prop_oneof![
        Just(Space {
            base: 0,
            stride: PS
        }),
        Just(Space {
            base: 3 * P,
            stride: PS
        }),
        Just(Space {
            base: 0,
            stride: BS
        }),
        Just(Space {
            base: G - 512 * BS,
            stride: BS
        }),
        Just(Space {
            base: u64::MAX - SLOTS * PS,
            stride: PS
        }),
    ]
}

/// A slot and an offset within it: page-aligned (mostly) or unaligned.
fn key() -> impl Strategy<Value = (u64, u64)> {
    (
        prop_oneof![1 => Just(0u64), 1 => Just(SLOTS - 1), 12 => 0..SLOTS],
        prop_oneof![8 => Just(0u64), 1 => 1..P, 1 => Just(P)],
    )
}

/// Gap alignments up to 1 GiB and 2^32 (and an error now and then).
fn align() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => prop::sample::select(vec![1u64, P, 2 << 20, 1 << 30, G]),
        1 => Just(3u64),
    ]
}

/// A step: the driver's operation with keys resolved in a `Space`, or a
/// structural clone / bulk rebuild check.
#[derive(Clone, Debug)]
enum Step {
    Op(Op),
    CloneAndBulk,
}

fn op_in(s: Space) -> impl Strategy<Value = Step> {
    let len =
        prop_oneof![4 => (1..4u64).prop_map(|l| l * P), 1 => Just(s.stride), 1 => 1..P].boxed();
    let k = move |(slot, odd): (u64, u64)| s.at(slot, odd);
    let gap = (
        prop_oneof![Just(P), Just(s.stride), Just(4 * s.stride), 1..G],
        align(),
        key().prop_map(k),
        key().prop_map(k),
        any::<bool>(),
    )
        .boxed();
    let txn = prop_oneof![
        3 => (key().prop_map(k), len.clone()).prop_map(|(a, l)| TxnOp::Insert(a, l)),
        2 => key().prop_map(k).prop_map(TxnOp::Remove),
        2 => (key().prop_map(k), len.clone()).prop_map(|(a, l)| TxnOp::Store(a, l)),
        1 => (key().prop_map(k), len.clone()).prop_map(|(a, l)| TxnOp::Erase(a, l)),
        1 => gap.clone().prop_map(|(z, al, lo, hi, r)| TxnOp::Gap(z, al, lo, hi, r)),
    ];
    prop_oneof![
        8 => (key().prop_map(k), len.clone()).prop_map(|(a, l)| Step::Op(Op::Insert(a, l))),
        3 => key().prop_map(k).prop_map(|a| Step::Op(Op::Remove(a))),
        3 => (key().prop_map(k), len.clone()).prop_map(|(a, l)| Step::Op(Op::Store(a, l))),
        2 => (key().prop_map(k), len).prop_map(|(a, l)| Step::Op(Op::Erase(a, l))),
        3 => gap.clone().prop_map(|(z, al, lo, hi, r)| Step::Op(Op::Gap(z, al, lo, hi, r))),
        1 => gap.prop_map(|(z, al, lo, hi, r)| Step::Op(Op::Alloc(z, al, lo, hi, r))),
        1 => (prop::collection::vec(txn, 0..16), any::<bool>())
            .prop_map(|(v, c)| Step::Op(Op::Txn(v, c))),
        1 => key().prop_map(k).prop_map(|a| Step::Op(Op::Next(a))),
        1 => key().prop_map(k).prop_map(|a| Step::Op(Op::Prev(a))),
        1 => Just(Step::CloneAndBulk),
    ]
}

/// The structural clone and a bulk build of `h`'s contents both validate,
/// equal the model, and answer forward and reverse gap searches (every
/// alignment up to 1 GiB) like it; the clone is unaffected by a later
/// change to the original.
fn clone_and_bulk(h: &mut Harness, s: Space) {
    let want = h.m.range(0..u64::MAX);
    let c = h.t.clone();
    c.validate().unwrap();
    assert_eq!(entries(&c), want, "clone");
    let b: MapleTree<u64> = want.iter().cloned().collect();
    b.validate().unwrap();
    assert_eq!(entries(&b), want, "bulk");
    for t in [&c, &b] {
        let g = t.pin();
        for size in [1, P, s.stride, G, 3 * s.stride] {
            for align in [1, P, 2 << 20, 1 << 30] {
                let w = s.base..s.at(SLOTS, 0);
                let ctx = format!("size {size:#x} align {align:#x} in {w:x?}");
                assert_eq!(
                    g.try_find_gap(size, align, w.clone()).ok(),
                    h.m.find_gap(size, align, w.clone(), false),
                    "{ctx}"
                );
                assert_eq!(
                    g.try_find_gap_rev(size, align, w.clone()).ok(),
                    h.m.find_gap(size, align, w, true),
                    "rev {ctx}"
                );
            }
        }
    }
    // Change the original; the clone must not see it.
    if let Some((r, _)) = want.first() {
        h.apply(Op::Remove(r.start));
        assert_eq!(entries(&c), want, "clone changed with its original");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    #[test]
    fn inner_formats_against_the_model(
        (s, steps) in space().prop_flat_map(|s| (Just(s), prop::collection::vec(op_in(s), 1..800)))
    ) {
        let mut h = Harness::with_tree(MapleTree::new());
        for step in steps {
            match step {
                Step::Op(op) => h.apply(op),
                Step::CloneAndBulk => clone_and_bulk(&mut h, s),
            }
        }
        clone_and_bulk(&mut h, s);
        if std::env::var_os("BREAKER_INNER_SIZES").is_some() {
            eprintln!("{} entries", h.m.map.len());
        }
        h.finish();
    }
}

/// Readers pinned across commits that change inner-node formats (unaligned
/// keys arriving and leaving among page-aligned ones, over spans crossing
/// 2^44 at page scale): each reader's snapshot is one committed version in
/// full. Every commit also stores its number at key 0, and the writer
/// records each version's contents before publishing it; a reader takes
/// its version's number from key 0 and compares its whole snapshot
/// (forwards and backwards) with the record.
#[test]
fn pinned_readers_see_one_whole_version() {
    const VERSIONS: u64 = 300;
    let s = Space {
        base: (1 << 44) - 64 * (G / 64),
        stride: G / 64,
    };
    let t = Arc::new(MapleTree::<u64>::new());
    // Each committed version's contents, by version number.
    type Version = Vec<(std::ops::Range<u64>, u64)>;
    let record: Arc<Mutex<Vec<Version>>> = Arc::new(Mutex::new(vec![Vec::new()]));
    let done = Arc::new(AtomicBool::new(false));
    let start = Arc::new(std::sync::Barrier::new(3));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (t, record, done, start) = (t.clone(), record.clone(), done.clone(), start.clone());
            thread::spawn(move || {
                let mut seen = 0u64;
                start.wait();
                loop {
                    let last = done.load(Ordering::Acquire);
                    let g = t.pin();
                    let v = g.get(0).map_or(0, |(_, &v)| v);
                    let fwd: Vec<_> = g.iter().map(|(r, &x)| (r, x)).collect();
                    let mut back: Vec<_> = g.iter().rev().map(|(r, &x)| (r, x)).collect();
                    back.reverse();
                    let want = record.lock().unwrap()[v as usize].clone();
                    assert_eq!(fwd, want, "snapshot of version {v}");
                    assert_eq!(back, want, "reverse snapshot of version {v}");
                    seen += 1;
                    if last {
                        break seen;
                    }
                }
            })
        })
        .collect();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    start.wait();
    for v in 1..=VERSIONS {
        let mut w = t.write();
        for _ in 0..4 {
            let slot = next() % 128;
            let odd = if next() % 5 == 0 { next() % P } else { 0 };
            let a = s.at(slot, odd);
            match next() % 3 {
                0 => {
                    let _ = w.insert(a..a + P, v);
                }
                1 => {
                    let _ = w.remove(a);
                }
                _ => {
                    let _ = w.store(a..a + s.stride / 2, v);
                }
            }
        }
        w.store(0..1, v).unwrap();
        w.validate().unwrap();
        let contents: Vec<_> = w.range(0..u64::MAX).map(|(r, &x)| (r, x)).collect();
        record.lock().unwrap().push(contents);
        w.commit();
    }
    done.store(true, Ordering::Release);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    t.validate().unwrap();
}
