//! The bad-input catalogue of docs/TESTING.md, one test per public call.
//!
//! Every row: snapshot the entries, make the call with the bad input, assert
//! the error kind (or the `None`/empty answer) and that a refused value comes
//! back, then assert the entries, `len()` and `validate()` are unchanged. Row
//! ids (`T-insert-3`, `P-maps-2`, ...) are the ones the catalogue cites.

#[path = "common/tree_model.rs"]
mod tree_model;
#[path = "common/tree_ops.rs"]
mod tree_ops;

use maple_rcu::MapleTree;
use maple_rcu::trace::{ParseErrorKind, parse_maps, parse_strace, parse_strace_lenient};
use maple_rcu::tree::{Error, ErrorKind};
use std::ops::Range;
use tree_ops::entries;

const MAX: u64 = u64::MAX;
/// The fixture's regular entries: `BASE + i * STRIDE .. + LEN` for `i < N`.
const BASE: u64 = 0x10_0000;
const STRIDE: u64 = 0x3000;
const LEN: u64 = 0x1000;
const N: u64 = 200;

/// A three-level tree with entries at both ends of the key space:
/// `[0, 0x1000)`, `N` regular entries, and `[MAX - 0x1000, MAX)`.
fn fixture() -> MapleTree<u64> {
    let t = MapleTree::new();
    t.insert(0..0x1000, 1).unwrap();
    for i in 0..N {
        let s = BASE + i * STRIDE;
        t.insert(s..s + LEN, 100 + i).unwrap();
    }
    t.insert(MAX - 0x1000..MAX, 2).unwrap();
    t.validate().unwrap();
    t
}

/// Runs `call` on `t` and asserts that nothing observable changed.
fn unchanged<R>(row: &str, t: &MapleTree<u64>, call: impl FnOnce(&MapleTree<u64>) -> R) -> R {
    let before = entries(t);
    let len = t.len();
    let out = call(t);
    assert_eq!(entries(t), before, "{row}: entries changed");
    assert_eq!(t.len(), len, "{row}: len changed");
    t.validate()
        .unwrap_or_else(|e| panic!("{row}: validate: {e}"));
    out
}

/// The refused kind, after checking the value came back.
fn refused<T: std::fmt::Debug>(row: &str, r: Result<T, Error<u64>>, value: u64) -> ErrorKind {
    let e = r.expect_err(row);
    assert_eq!(e.value, value, "{row}: value not given back");
    e.kind
}

#[test]
#[allow(clippy::reversed_empty_ranges)]
fn insert_rows() {
    let t = fixture();
    let r0 = BASE..BASE + LEN;
    let rows: &[(&str, Range<u64>, ErrorKind)] = &[
        ("T-insert-1 empty", 0x5000..0x5000, ErrorKind::EmptyRange),
        ("T-insert-1 empty at 0", 0..0, ErrorKind::EmptyRange),
        ("T-insert-1 empty at MAX", MAX..MAX, ErrorKind::EmptyRange),
        ("T-insert-2 reversed", 0x7000..0x5000, ErrorKind::EmptyRange),
        ("T-insert-2 reversed MAX..0", MAX..0, ErrorKind::EmptyRange),
        ("T-insert-3 same range", r0.clone(), ErrorKind::Overlap),
        (
            "T-insert-3 contained",
            r0.start + 1..r0.end - 1,
            ErrorKind::Overlap,
        ),
        (
            "T-insert-3 containing",
            r0.start - 1..r0.end + 1,
            ErrorKind::Overlap,
        ),
        (
            "T-insert-3 left edge",
            r0.start - 0x10..r0.start + 1,
            ErrorKind::Overlap,
        ),
        (
            "T-insert-3 right edge",
            r0.end - 1..r0.end + 0x10,
            ErrorKind::Overlap,
        ),
        (
            "T-insert-3 spans many",
            BASE + LEN..BASE + 50 * STRIDE,
            ErrorKind::Overlap,
        ),
        ("T-insert-3 whole space", 0..MAX, ErrorKind::Overlap),
        (
            "T-insert-4 last byte below MAX",
            MAX - 1..MAX,
            ErrorKind::Overlap,
        ),
        ("T-insert-4 byte 0", 0..1, ErrorKind::Overlap),
    ];
    for (row, r, kind) in rows {
        let got = unchanged(row, &t, |t| refused(row, t.insert(r.clone(), 77), 77));
        assert_eq!(got, *kind, "{row}");
    }
    // The same rows inside a transaction: the pending version is unchanged
    // and the transaction stays usable; committing nothing changes nothing.
    unchanged("T-insert-5 in a transaction", &t, |t| {
        let mut w = t.write();
        for (row, r, kind) in rows {
            let before: Vec<_> = w.iter().map(|(r, v)| (r, *v)).collect();
            assert_eq!(refused(row, w.insert(r.clone(), 78), 78), *kind, "{row}");
            let after: Vec<_> = w.iter().map(|(r, v)| (r, *v)).collect();
            assert_eq!(before, after, "{row}: pending version changed");
            w.validate().unwrap();
        }
        w.commit();
    });
    // Not errors, the boundaries of the rows above: touching neighbours is
    // fine, and an entry may end at MAX (MAX itself is never inside one).
    let t = fixture();
    t.insert(BASE + LEN..BASE + STRIDE, 5).unwrap();
    t.remove(MAX - 1).unwrap();
    t.insert(MAX - 1..MAX, 6).unwrap();
    t.validate().unwrap();
}

#[test]
fn remove_rows() {
    let t = fixture();
    for (row, a) in [
        ("T-remove-1 unmapped (gap)", BASE + LEN + 5),
        ("T-remove-1 an entry's end (exclusive)", BASE + LEN),
        ("T-remove-1 below the first regular entry", BASE - 1),
        ("T-remove-2 u64::MAX", MAX),
    ] {
        assert_eq!(unchanged(row, &t, |t| t.remove(a)), None, "{row}");
    }
    let e: MapleTree<u64> = MapleTree::new();
    for a in [0, 1, MAX] {
        assert_eq!(
            unchanged("T-remove-3 empty tree", &e, |t| t.remove(a)),
            None
        );
    }
    unchanged("T-remove-4 in an aborted transaction", &t, |t| {
        let mut w = t.write();
        assert_eq!(w.remove(BASE + LEN), None);
        assert_eq!(w.remove(BASE), Some(BASE..BASE + LEN));
        assert_eq!(w.remove(BASE), None, "removed twice");
        // dropped: aborted
    });
}

#[test]
fn lookup_rows() {
    let t = fixture();
    unchanged("T-get", &t, |t| {
        let r = t.pin();
        let v = |e: Option<(Range<u64>, &u64)>| e.map(|(r, v)| (r, *v));
        // T-get-1 unmapped; T-get-2 u64::MAX (never inside an entry).
        assert_eq!(v(r.get(BASE + LEN)), None);
        assert_eq!(v(r.get(MAX)), None);
        // T-next-1 unmapped: the next entry; T-next-2 past the last: None.
        assert_eq!(
            v(r.next(BASE + LEN)),
            Some((BASE + STRIDE..BASE + STRIDE + LEN, 101))
        );
        assert_eq!(v(r.next(MAX)), None);
        // T-prev-1 0: nothing starts below 0; T-prev-2 MAX: the last entry.
        assert_eq!(v(r.prev(0)), None);
        assert_eq!(v(r.prev(MAX)), Some((MAX - 0x1000..MAX, 2)));
    });
    let e: MapleTree<u64> = MapleTree::new();
    let r = e.pin();
    for a in [0, 1, MAX] {
        assert!(r.get(a).is_none() && r.next(a).is_none() && r.prev(a).is_none());
    }
}

#[test]
#[allow(clippy::reversed_empty_ranges)]
fn range_and_gaps_rows() {
    let t = fixture();
    unchanged("T-range", &t, |t| {
        let r = t.pin();
        for (row, w) in [
            ("T-range-1 empty window", BASE..BASE),
            ("T-range-2 reversed window", BASE + 10..BASE),
            ("T-range-3 MAX..MAX", MAX..MAX),
            ("T-range-4 a gap", BASE + LEN..BASE + STRIDE),
        ] {
            assert_eq!(r.range(w.clone()).count(), 0, "{row}");
            assert_eq!(r.range(w.clone()).rev().count(), 0, "{row}");
        }
        for (row, w) in [
            ("T-gaps-1 empty window", BASE..BASE),
            ("T-gaps-2 reversed window", BASE + 10..BASE),
            ("T-gaps-3 fully occupied window", BASE..BASE + LEN),
        ] {
            assert_eq!(r.gaps(w).count(), 0, "{row}");
        }
        // T-gaps-4 the top: the free space ends at MAX - 0x1000.
        let top: Vec<_> = r.gaps(MAX - 0x2000..MAX).collect();
        assert_eq!(top, vec![MAX - 0x2000..MAX - 0x1000]);
    });
}

/// `(row, size, align, window, error)`; the deprecated `find_gap(_rev)`
/// answer `None` to all of them, `try_find_gap(_rev)` the error, and
/// `alloc_range(_rev)` the error and the value back.
#[allow(clippy::reversed_empty_ranges)]
fn gap_rows() -> Vec<(&'static str, u64, u64, Range<u64>, ErrorKind)> {
    use ErrorKind::*;
    let free = BASE + LEN..BASE + STRIDE; // one 0x2000-byte hole
    vec![
        ("T-gap-1 zero size", 0, 1, free.clone(), ZeroSize),
        (
            "T-gap-1 zero size wins over every other error",
            0,
            3,
            5..5,
            ZeroSize,
        ),
        ("T-gap-2 align 0", 1, 0, free.clone(), BadAlignment),
        ("T-gap-2 align 3", 1, 3, free.clone(), BadAlignment),
        (
            "T-gap-2 align 0x3000",
            1,
            0x3000,
            free.clone(),
            BadAlignment,
        ),
        ("T-gap-2 align u64::MAX", 1, MAX, free.clone(), BadAlignment),
        ("T-gap-3 empty window", 1, 1, 0x5000..0x5000, EmptyWindow),
        ("T-gap-3 reversed window", 1, 1, 0x6000..0x5000, EmptyWindow),
        ("T-gap-3 MAX..MAX", 1, 1, MAX..MAX, EmptyWindow),
        (
            "T-gap-4 window fully occupied",
            1,
            1,
            BASE..BASE + LEN,
            NoSpace,
        ),
        (
            "T-gap-4 size larger than the hole",
            0x2001,
            1,
            free.clone(),
            NoSpace,
        ),
        (
            "T-gap-4 size larger than the window",
            0x11,
            1,
            free.start..free.start + 0x10,
            NoSpace,
        ),
        (
            "T-gap-4 no aligned fit in the hole",
            0x1000,
            0x4000,
            free.clone(),
            NoSpace,
        ),
        ("T-gap-5 size u64::MAX", MAX, 1, 0..MAX, NoSpace),
        (
            "T-gap-5 size u64::MAX - 1 (free < size)",
            MAX - 1,
            1,
            0..MAX,
            NoSpace,
        ),
        // Rounding the start up to the alignment would overflow u64.
        (
            "T-gap-5 align 2^63 above 2^63",
            1,
            1 << 63,
            (1 << 63) + 1..MAX,
            NoSpace,
        ),
        (
            "T-gap-5 huge size + align near MAX",
            0x800,
            1 << 62,
            MAX - 0x1800..MAX,
            NoSpace,
        ),
        (
            "T-gap-5 window at the top, taken",
            1,
            1,
            MAX - 0x1000..MAX,
            NoSpace,
        ),
    ]
}

#[test]
#[allow(deprecated, reason = "the Option-returning find_gap's contract")]
fn find_gap_rows() {
    let t = fixture();
    unchanged("T-gap", &t, |t| {
        let r = t.pin();
        for (row, size, align, w, kind) in gap_rows() {
            assert_eq!(r.find_gap(size, align, w.clone()), None, "{row}");
            assert_eq!(r.find_gap_rev(size, align, w.clone()), None, "{row} rev");
            assert_eq!(r.try_find_gap(size, align, w.clone()), Err(kind), "{row}");
            assert_eq!(
                r.try_find_gap_rev(size, align, w.clone()),
                Err(kind),
                "{row} rev"
            );
        }
    });
}

#[test]
fn alloc_range_rows() {
    let t = fixture();
    for (row, size, align, w, kind) in gap_rows() {
        let fwd = unchanged(row, &t, |t| {
            refused(row, t.alloc_range(size, align, w.clone(), 9), 9)
        });
        let rev = unchanged(row, &t, |t| {
            refused(row, t.alloc_range_rev(size, align, w.clone(), 9), 9)
        });
        assert_eq!((fwd, rev), (kind, kind), "{row}");
    }
    unchanged("T-alloc-6 in a transaction", &t, |t| {
        let mut w = t.write();
        let before: Vec<_> = w.iter().map(|(r, v)| (r, *v)).collect();
        for (row, size, align, win, kind) in gap_rows() {
            assert_eq!(
                refused(row, w.alloc_range(size, align, win.clone(), 8), 8),
                kind
            );
            assert_eq!(
                refused(row, w.alloc_range_rev(size, align, win, 8), 8),
                kind
            );
        }
        let after: Vec<_> = w.iter().map(|(r, v)| (r, *v)).collect();
        assert_eq!(before, after, "pending version changed");
        w.validate().unwrap();
        w.commit();
    });
    // The boundaries: the last fit below an occupied top, and a fit that ends
    // exactly at MAX on a tree whose top is free.
    assert_eq!(
        t.pin().try_find_gap_rev(0x10, 0x10, 0..MAX).ok(),
        Some(MAX - 0x101f)
    );
    let e: MapleTree<u64> = MapleTree::new();
    assert_eq!(
        e.alloc_range_rev(0x10, 0x10, 0..MAX, 1).unwrap(),
        MAX - 0x1f..MAX - 0xf
    );
    assert_eq!(e.alloc_range(1, 1, MAX - 1..MAX, 2).unwrap(), MAX - 1..MAX);
    e.validate().unwrap();
}

#[test]
fn transaction_rows() {
    let t = fixture();
    // T-txn-1 a transaction with only refused operations is not dirty: its
    // commit publishes nothing.
    unchanged("T-txn-1 refused-only commit", &t, |t| {
        let mut w = t.write();
        assert!(w.insert(BASE..BASE + 1, 1).is_err());
        assert!(w.alloc_range(0, 1, 0..10, 1).is_err());
        assert_eq!(w.remove(MAX), None);
        w.commit();
    });
    // T-txn-2 an aborted transaction full of successful changes.
    unchanged("T-txn-2 abort", &t, |t| {
        let mut w = t.write();
        for i in 0..N {
            w.remove(BASE + i * STRIDE).unwrap();
        }
        w.insert(0x1000..MAX - 0x1000, 3).unwrap();
        w.validate().unwrap();
        assert_eq!(w.len(), 3);
    });
}

// ---------------------------------------------------------------------------
// Parsers (the strace and maps rows not already in tests/trace_parse.rs)
// ---------------------------------------------------------------------------

fn maps_err(line: &str) -> ParseErrorKind {
    let e = parse_maps(line).expect_err(line);
    assert_eq!(e.line, 1, "{line}");
    e.kind
}

fn bad_field(kind: &ParseErrorKind) -> &'static str {
    match kind {
        ParseErrorKind::BadField { field, .. } => field,
        ParseErrorKind::MissingField(field) => field,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn maps_rows() {
    // P-maps-1 empty text (and blank lines): no entries, no error.
    assert_eq!(parse_maps("").unwrap(), vec![]);
    assert_eq!(parse_maps("\n  \n\r\n").unwrap(), vec![]);
    let ok = " r--p 00000000 00:00 0";
    for (row, line, field) in [
        ("P-maps-2 empty range", format!("1000-1000{ok}"), "range"),
        ("P-maps-2 reversed range", format!("2000-1000{ok}"), "range"),
        (
            "P-maps-3 address overflows u64",
            format!("0-10000000000000000{ok}"),
            "range",
        ),
        (
            "P-maps-3 end u64::MAX + 1",
            format!("fffffffffffff000-1{ok}"),
            "range",
        ),
        ("P-maps-4 no dash", format!("1000{ok}"), "range"),
        ("P-maps-4 sign", format!("+1000-2000{ok}"), "range"),
        ("P-maps-5 perms", "1000-2000 rwxx 0 00:00 0".into(), "perms"),
        (
            "P-maps-5 perms short",
            "1000-2000 rw 0 00:00 0".into(),
            "perms",
        ),
        (
            "P-maps-6 offset",
            "1000-2000 r--p 0x0 00:00 0".into(),
            "offset",
        ),
        (
            "P-maps-7 dev no colon",
            "1000-2000 r--p 0 0000 0".into(),
            "dev",
        ),
        (
            "P-maps-7 dev > u32",
            "1000-2000 r--p 0 100000000:00 0".into(),
            "dev",
        ),
        (
            "P-maps-8 inode",
            "1000-2000 r--p 0 00:00 -1".into(),
            "inode",
        ),
        (
            "P-maps-8 inode > u64",
            "1000-2000 r--p 0 00:00 18446744073709551616".into(),
            "inode",
        ),
        ("P-maps-9 missing perms", "1000-2000".into(), "perms"),
        (
            "P-maps-9 missing inode",
            "1000-2000 r--p 0 00:00".into(),
            "inode",
        ),
    ] {
        assert_eq!(bad_field(&maps_err(&line)), field, "{row}: {line}");
    }
    // The u64::MAX edge that is fine: a VMA may end at the top of the space.
    let e = parse_maps(&format!("fffffffffffff000-ffffffffffffffff{ok}")).unwrap();
    assert_eq!(e[0].end, MAX);
}

#[test]
fn strace_rows() {
    // P-strace-1 empty text: an empty trace.
    let t = parse_strace("").unwrap();
    assert_eq!((t.calls.len(), t.lines), (0, 0));
    // P-strace-2 numbers at the u64 edge: MAX parses, MAX + 1 is BadNumber.
    let t = parse_strace("munmap(0xffffffffffffffff, 18446744073709551615) = 0").unwrap();
    assert_eq!(t.calls.len(), 1);
    for line in [
        "munmap(0x10000000000000000, 4096) = 0",
        "munmap(0x1000, 18446744073709551616) = 0",
    ] {
        let e = parse_strace(line).unwrap_err();
        assert!(
            matches!(e.kind, ParseErrorKind::BadNumber(_)),
            "{line}: {e}"
        );
    }
    // P-strace-3 the parser stays usable after an error and the bad line is
    // dropped: the result equals that of the same text without the line.
    let good = [
        "brk(NULL) = 0x1000",
        "7 mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0 <unfinished ...>",
        "8 munmap(0x1000, 4096) = 0",
        "7 <... mmap resumed>) = 0x7f0000000000",
    ];
    let bad = [
        "mmap(NULL, 4096, PROT_READ) = 0x1000",
        "munmap(0x1000, 4096 = 0",
        "mprotect(0x1000, 4096, PROT_FLY) = 0",
        "8 <... mmap resumed>) = 0",
        "munmap(0x1000, 4096) = -1 EBOGUS (x)",
    ];
    for b in bad {
        for at in 0..=good.len() {
            let mut with: Vec<&str> = good.to_vec();
            with.insert(at, b);
            let mut without = with.clone();
            without[at] = "strace: a note";
            let (t_with, e_with) = parse_strace_lenient(&with.join("\n"));
            let (mut t_without, e_without) = parse_strace_lenient(&without.join("\n"));
            assert_eq!((e_with.len(), e_without.len()), (1, 0), "{b}");
            assert_eq!(e_with[0].line, at + 1);
            // The note stands in for the bad line: one more "other" line.
            t_without.other_lines -= 1;
            assert_eq!(t_with, t_without, "bad line {b:?} at {at}");
        }
    }
    // P-strace-4 a resumed line naming another call abandons the pending one
    // (it lands in `unfinished`) and is an error; lenient mode goes on.
    let (t, errors) =
        parse_strace_lenient("7 mmap(NULL, 1 <unfinished ...>\n7 <... munmap resumed>) = 0\n");
    assert_eq!(errors.len(), 1);
    assert_eq!(t.unfinished.len(), 1);
    assert!(t.calls.is_empty());
}

// ---------------------------------------------------------------------------
// mm (AddressSpace): rows M-*. Each row snapshots the maps text, the frame
// counters, the program break and every fixture page's PTE, makes the call,
// asserts the errno (or the documented non-error answer), and asserts the
// snapshot unchanged and `check()` clean — except the rows Linux documents as
// partial (mprotect and madvise over holes), which assert the partial effect.
// ---------------------------------------------------------------------------

use maple_rcu::mm::{
    Access, AddressSpace, Advice, DEFAULT_BRK, FaultError, MapFlags, MmError, Prot, Pte,
    RemapFlags, TASK_SIZE,
};

const P: u64 = 4096;
const RW: Prot = Prot::READ.union(Prot::WRITE);
const ANON: MapFlags = MapFlags::PRIVATE.union(MapFlags::ANONYMOUS);
const FIXED: MapFlags = ANON.union(MapFlags::FIXED);
/// VMA `A`: 8 pages RW, all faulted; hole of 2 pages; `B`: 4 pages R, faulted.
const A: u64 = 0x1000_0000;
const B: u64 = A + 10 * P;
/// A GROWSDOWN stack of 4 pages ending at `STACK_TOP`.
const STACK_TOP: u64 = 0x2000_0000;
/// A file mapping (file 5, offset 0), 4 pages R.
const FILE: u64 = 0x3000_0000;

fn mm_fixture() -> AddressSpace {
    let mm = AddressSpace::new();
    mm.mmap(Some(A), 8 * P, RW, FIXED).unwrap();
    mm.mmap(Some(B), 4 * P, Prot::READ, FIXED).unwrap();
    mm.mmap(
        Some(STACK_TOP - 4 * P),
        4 * P,
        RW,
        FIXED | MapFlags::GROWSDOWN,
    )
    .unwrap();
    mm.mmap_file(
        Some(FILE),
        4 * P,
        Prot::READ,
        MapFlags::PRIVATE | MapFlags::FIXED,
        5,
        0,
    )
    .unwrap();
    assert_eq!(mm.brk(DEFAULT_BRK + 3 * P), DEFAULT_BRK + 3 * P);
    for i in 0..8 {
        mm.fault(A + i * P, Access::Write).unwrap();
    }
    for i in 0..4 {
        mm.fault(B + i * P, Access::Read).unwrap();
        mm.fault(STACK_TOP - (i + 1) * P, Access::Write).unwrap();
        mm.fault(FILE + i * P, Access::Read).unwrap();
    }
    mm.fault(DEFAULT_BRK, Access::Write).unwrap();
    mm.check().unwrap();
    mm
}

/// Every page of the fixture and its neighbourhood.
fn fixture_pages() -> Vec<u64> {
    let mut v: Vec<u64> = (A - 2 * P..B + 6 * P).step_by(P as usize).collect();
    v.extend((STACK_TOP - 8 * P..STACK_TOP + P).step_by(P as usize));
    v.extend((FILE..FILE + 5 * P).step_by(P as usize));
    v.extend((DEFAULT_BRK..DEFAULT_BRK + 4 * P).step_by(P as usize));
    v
}

#[derive(Debug, PartialEq)]
struct MmSnap {
    maps: String,
    frames: (u64, u64, u64),
    vmas: u64,
    brk: Range<u64>,
    ptes: Vec<Option<Pte>>,
}

fn snap(mm: &AddressSpace) -> MmSnap {
    let s = mm.stats();
    MmSnap {
        maps: mm.maps_string(),
        frames: (s.frames_allocated, s.frames_freed, s.frames_mapped),
        vmas: s.vmas,
        brk: mm.brk_range(),
        ptes: fixture_pages().iter().map(|&a| mm.translate(a)).collect(),
    }
}

/// Runs `call` on a fresh fixture and asserts that nothing observable changed.
fn mm_unchanged<R>(row: &str, call: impl FnOnce(&AddressSpace) -> R) -> R {
    let mm = mm_fixture();
    let before = snap(&mm);
    let out = call(&mm);
    assert_eq!(snap(&mm), before, "{row}: state changed");
    mm.check().unwrap_or_else(|e| panic!("{row}: check: {e}"));
    out
}

fn errno<T: std::fmt::Debug>(row: &str, r: Result<T, MmError>) -> i32 {
    r.expect_err(row).errno()
}

const EINVAL: i32 = 22;
const ENOMEM: i32 = 12;
const EEXIST: i32 = 17;
const EFAULT: i32 = 14;
const EPERM: i32 = 1;
const EOVERFLOW: i32 = 75;

#[test]
fn mmap_rows() {
    type Call = Box<dyn Fn(&AddressSpace) -> Result<u64, MmError>>;
    let none = MapFlags::ANONYMOUS | MapFlags::FIXED;
    let rows: Vec<(&str, Call, i32)> = vec![
        (
            "M-mmap-1 zero length",
            Box::new(|mm| mm.mmap(None, 0, RW, ANON)),
            EINVAL,
        ),
        (
            "M-mmap-1 zero length FIXED",
            Box::new(|mm| mm.mmap(Some(A), 0, RW, FIXED)),
            EINVAL,
        ),
        (
            "M-mmap-2 unaligned file offset",
            Box::new(|mm| mm.mmap_file(None, P, RW, MapFlags::PRIVATE, 5, 0x123)),
            EINVAL,
        ),
        (
            "M-mmap-3 FIXED unaligned addr",
            Box::new(|mm| mm.mmap(Some(A + 1), P, RW, FIXED)),
            EINVAL,
        ),
        (
            "M-mmap-4 len rounds past u64::MAX",
            Box::new(|mm| mm.mmap(None, u64::MAX - 10, RW, ANON)),
            ENOMEM,
        ),
        (
            "M-mmap-4 len > TASK_SIZE",
            Box::new(|mm| mm.mmap(None, 1 << 47, RW, ANON)),
            ENOMEM,
        ),
        (
            "M-mmap-5 FIXED addr + len past TASK_SIZE",
            Box::new(|mm| mm.mmap(Some(TASK_SIZE - P), 2 * P, RW, FIXED)),
            ENOMEM,
        ),
        (
            "M-mmap-5 FIXED above TASK_SIZE",
            Box::new(|mm| mm.mmap(Some(TASK_SIZE + P), P, RW, FIXED)),
            ENOMEM,
        ),
        (
            "M-mmap-5 FIXED at u64::MAX page",
            Box::new(|mm| mm.mmap(Some(u64::MAX - P + 1), P, RW, FIXED)),
            ENOMEM,
        ),
        (
            "M-mmap-6 FIXED below mmap_min_addr",
            Box::new(|mm| mm.mmap(Some(0x1000), P, RW, FIXED)),
            EPERM,
        ),
        (
            "M-mmap-6 FIXED at 0",
            Box::new(|mm| mm.mmap(Some(0), P, RW, FIXED)),
            EPERM,
        ),
        (
            "M-mmap-7 neither SHARED nor PRIVATE",
            Box::new(move |mm| mm.mmap(Some(A), P, RW, none)),
            EINVAL,
        ),
        (
            "M-mmap-7 both SHARED and PRIVATE",
            Box::new(move |mm| {
                mm.mmap(Some(A), P, RW, none | MapFlags::SHARED | MapFlags::PRIVATE)
            }),
            EINVAL,
        ),
        (
            "M-mmap-7 no type, non-FIXED",
            Box::new(|mm| mm.mmap(None, P, RW, MapFlags::ANONYMOUS)),
            EINVAL,
        ),
        (
            "M-mmap-7 no type loses to EPERM (type checked after placement)",
            Box::new(move |mm| mm.mmap(Some(0x1000), P, RW, none)),
            EPERM,
        ),
        (
            "M-mmap-8 FIXED_NOREPLACE inside a mapping",
            Box::new(|mm| mm.mmap(Some(A + P), P, RW, ANON | MapFlags::FIXED_NOREPLACE)),
            EEXIST,
        ),
        (
            "M-mmap-8 FIXED_NOREPLACE over a hole and a mapping",
            Box::new(|mm| mm.mmap(Some(A + 8 * P), 4 * P, RW, ANON | MapFlags::FIXED_NOREPLACE)),
            EEXIST,
        ),
        (
            "M-mmap-9 file offset + len overflows",
            Box::new(|mm| mm.mmap_file(None, 2 * P, Prot::READ, MapFlags::PRIVATE, 5, !(P - 1))),
            EOVERFLOW,
        ),
        (
            "M-mmap-10 shared anonymous GROWSDOWN",
            Box::new(|mm| {
                mm.mmap(
                    None,
                    P,
                    RW,
                    MapFlags::SHARED | MapFlags::ANONYMOUS | MapFlags::GROWSDOWN,
                )
            }),
            EINVAL,
        ),
    ];
    for (row, call, want) in rows {
        assert_eq!(errno(row, mm_unchanged(row, call)), want, "{row}");
    }
}

#[test]
fn munmap_rows() {
    let rows: &[(&str, u64, u64)] = &[
        ("M-munmap-1 unaligned addr", A + 1, P),
        ("M-munmap-2 zero length", A, 0),
        ("M-munmap-3 addr + len past TASK_SIZE", TASK_SIZE - P, 2 * P),
        ("M-munmap-3 addr above TASK_SIZE", TASK_SIZE + P, P),
        ("M-munmap-3 len u64::MAX (overflow)", A, u64::MAX),
        ("M-munmap-3 u64::MAX page", u64::MAX - P + 1, P),
    ];
    for &(row, a, l) in rows {
        assert_eq!(
            errno(row, mm_unchanged(row, |mm| mm.munmap(a, l))),
            EINVAL,
            "{row}"
        );
    }
    // Not an error: a hole (and below mmap_min_addr) unmaps nothing.
    mm_unchanged("M-munmap-4 hole", |mm| mm.munmap(A + 8 * P, 2 * P)).unwrap();
    mm_unchanged("M-munmap-4 page 0", |mm| mm.munmap(0, P)).unwrap();
}

#[test]
fn mprotect_rows() {
    let bad = Prot::from_bits_retain(0x40);
    let rows: &[(&str, u64, u64, Prot, i32)] = &[
        ("M-mprotect-1 unaligned", A + 1, P, Prot::READ, EINVAL),
        (
            "M-mprotect-3 len overflows",
            A,
            u64::MAX,
            Prot::READ,
            ENOMEM,
        ),
        (
            "M-mprotect-3 len overflows (unknown bit too)",
            A,
            u64::MAX,
            bad,
            ENOMEM,
        ),
        ("M-mprotect-4 unknown prot bit", A, P, bad, EINVAL),
        (
            "M-mprotect-5 GROWSDOWN | GROWSUP",
            A,
            P,
            Prot::READ | Prot::GROWSDOWN | Prot::GROWSUP,
            EINVAL,
        ),
        (
            "M-mprotect-6 GROWSDOWN on a non-stack VMA",
            A + P,
            P,
            Prot::READ | Prot::GROWSDOWN,
            EINVAL,
        ),
        (
            "M-mprotect-7 GROWSUP (no such VMAs on x86-64)",
            A,
            P,
            Prot::READ | Prot::GROWSUP,
            EINVAL,
        ),
        (
            "M-mprotect-8 starts in a hole",
            A + 8 * P,
            4 * P,
            Prot::READ,
            ENOMEM,
        ),
        (
            "M-mprotect-8 nothing mapped",
            0x10000,
            P,
            Prot::READ,
            ENOMEM,
        ),
        (
            "M-mprotect-8 above TASK_SIZE",
            TASK_SIZE,
            P,
            Prot::READ,
            ENOMEM,
        ),
    ];
    for &(row, a, l, p, want) in rows {
        assert_eq!(
            errno(row, mm_unchanged(row, |mm| mm.mprotect(a, l, p))),
            want,
            "{row}"
        );
    }
    // Zero length: success, even with a bad prot (Linux checks it later).
    mm_unchanged("M-mprotect-2 zero length", |mm| mm.mprotect(A, 0, bad)).unwrap();
    mm_unchanged("M-mprotect-2 zero length unaligned-free", |mm| {
        mm.mprotect(0, 0, Prot::READ)
    })
    .unwrap();
    // M-mprotect-9, partial effect: A is changed up to the hole, B is not.
    let mm = mm_fixture();
    let before = snap(&mm);
    assert_eq!(
        mm.mprotect(A + 4 * P, 10 * P, Prot::READ)
            .unwrap_err()
            .errno(),
        ENOMEM
    );
    let v = mm.vmas();
    let got: Vec<(Range<u64>, Prot)> = v
        .iter()
        .take(3)
        .map(|v| (v.range.clone(), v.prot))
        .collect();
    assert_eq!(
        got,
        vec![
            (A..A + 4 * P, RW),
            (A + 4 * P..A + 8 * P, Prot::READ),
            (B..B + 4 * P, Prot::READ)
        ],
        "M-mprotect-9: split at A+4P, hole stops it"
    );
    for i in 4..8 {
        assert_eq!(
            mm.translate(A + i * P).unwrap().prot,
            Prot::READ,
            "PTE downgraded"
        );
    }
    assert_eq!(mm.translate(A).unwrap().prot, RW);
    let s = mm.stats();
    assert_eq!(
        (s.frames_allocated, s.frames_freed, s.frames_mapped),
        before.frames
    );
    mm.check().unwrap();
    // GROWSDOWN extends the change down to the stack's start.
    let mm = mm_fixture();
    mm.mprotect(STACK_TOP - P, P, Prot::READ | Prot::GROWSDOWN)
        .unwrap();
    assert!(
        mm.vmas()
            .iter()
            .any(|v| v.range == (STACK_TOP - 4 * P..STACK_TOP) && v.prot == Prot::READ)
    );
}

#[test]
fn mremap_rows() {
    let mv = RemapFlags::MAYMOVE;
    let mf = RemapFlags::MAYMOVE | RemapFlags::FIXED;
    let du = RemapFlags::MAYMOVE | RemapFlags::DONTUNMAP;
    let t = 0x4000_0000;
    type Row = (&'static str, u64, u64, u64, RemapFlags, Option<u64>, i32);
    let rows: &[Row] = &[
        (
            "M-mremap-1 unknown flag",
            A,
            P,
            P,
            RemapFlags::from_bits_retain(8) | mv,
            None,
            EINVAL,
        ),
        (
            "M-mremap-2 FIXED without MAYMOVE",
            A,
            P,
            P,
            RemapFlags::FIXED,
            Some(t),
            EINVAL,
        ),
        (
            "M-mremap-3 DONTUNMAP without MAYMOVE",
            A,
            P,
            P,
            RemapFlags::DONTUNMAP,
            None,
            EINVAL,
        ),
        (
            "M-mremap-3 DONTUNMAP changing the length",
            A,
            P,
            2 * P,
            du,
            None,
            EINVAL,
        ),
        (
            "M-mremap-4 unaligned old address",
            A + 1,
            P,
            P,
            mv,
            None,
            EINVAL,
        ),
        ("M-mremap-5 new length 0", A, P, 0, mv, None, EINVAL),
        (
            "M-mremap-5 old length 0 (private)",
            A,
            0,
            P,
            mv,
            None,
            EINVAL,
        ),
        (
            "M-mremap-5 new length rounds past u64::MAX",
            A,
            P,
            u64::MAX,
            mv,
            None,
            EINVAL,
        ),
        (
            "M-mremap-6 old range past TASK_SIZE",
            TASK_SIZE - P,
            2 * P,
            P,
            mv,
            None,
            EINVAL,
        ),
        (
            "M-mremap-7 FIXED target unaligned",
            A,
            P,
            P,
            mf,
            Some(t + 1),
            EINVAL,
        ),
        (
            "M-mremap-7 FIXED target past TASK_SIZE",
            A,
            P,
            2 * P,
            mf,
            Some(TASK_SIZE - P),
            EINVAL,
        ),
        (
            "M-mremap-8 FIXED target overlaps the source",
            A,
            4 * P,
            4 * P,
            mf,
            Some(A + 2 * P),
            EINVAL,
        ),
        (
            "M-mremap-8 DONTUNMAP hint overlaps the source",
            A,
            4 * P,
            4 * P,
            du,
            Some(A + 2 * P),
            EINVAL,
        ),
        (
            "M-mremap-9 old address not in a VMA",
            A + 8 * P,
            P,
            2 * P,
            mv,
            None,
            EFAULT,
        ),
        (
            "M-mremap-9 shrink at an unmapped address",
            A + 8 * P,
            2 * P,
            P,
            RemapFlags::empty(),
            None,
            EFAULT,
        ),
        (
            "M-mremap-10 grow: old range crosses the VMA end",
            A + 6 * P,
            4 * P,
            8 * P,
            mv,
            None,
            EFAULT,
        ),
        (
            "M-mremap-11 move: first min(old,new) bytes cross the VMA end",
            A + 6 * P,
            4 * P,
            3 * P,
            mf,
            Some(t),
            EFAULT,
        ),
        (
            "M-mremap-12 cannot grow in place, may not move",
            A,
            8 * P,
            12 * P,
            RemapFlags::empty(),
            None,
            ENOMEM,
        ),
        (
            "M-mremap-13 FIXED target below mmap_min_addr",
            A,
            P,
            P,
            mf,
            Some(0x1000),
            EPERM,
        ),
    ];
    for &(row, old, ol, nl, f, na, want) in rows {
        let r = mm_unchanged(row, |mm| mm.mremap(old, ol, nl, f, na));
        assert_eq!(errno(row, r), want, "{row}");
    }
    // Not an error: a shrink in place unmaps the tail across VMA boundaries
    // (and the hole) — Linux's documented behaviour.
    let mm = mm_fixture();
    assert_eq!(
        mm.mremap(A + 4 * P, 12 * P, 2 * P, RemapFlags::empty(), None),
        Ok(A + 4 * P)
    );
    let v: Vec<Range<u64>> = mm.vmas().iter().map(|v| v.range.clone()).take(2).collect();
    assert_eq!(
        v,
        vec![A..A + 6 * P, STACK_TOP - 4 * P..STACK_TOP],
        "B is gone too"
    );
    let s = mm.stats();
    assert_eq!(s.frames_freed, 2 + 4, "A's tail and all of B zapped");
    mm.check().unwrap();
}

#[test]
fn brk_rows() {
    let top = DEFAULT_BRK + 3 * P;
    let rows: &[(&str, u64)] = &[
        ("M-brk-1 below the start of the heap", DEFAULT_BRK - P),
        ("M-brk-1 0 (the query form)", 0),
        ("M-brk-2 above TASK_SIZE", TASK_SIZE + 1),
        ("M-brk-2 u64::MAX", u64::MAX),
    ];
    for &(row, b) in rows {
        assert_eq!(
            mm_unchanged(row, |mm| mm.brk(b)),
            top,
            "{row}: returns the old break"
        );
    }
    // M-brk-3: into a mapping (one page must stay free below the next VMA).
    let mm = mm_fixture();
    mm.mmap(Some(top + 4 * P), P, RW, FIXED).unwrap();
    let before = snap(&mm);
    assert_eq!(mm.brk(top + 4 * P), top, "M-brk-3 up to the next VMA");
    assert_eq!(mm.brk(top + 3 * P + 1), top, "M-brk-3 within a page of it");
    assert_eq!(mm.brk(top + 8 * P), top, "M-brk-3 past it");
    assert_eq!(snap(&mm), before, "M-brk-3: state changed");
    // M-brk-4: shrinking with nothing mapped in [newbrk, oldbrk) fails.
    let mm = mm_fixture();
    mm.munmap(DEFAULT_BRK, 3 * P).unwrap();
    let before = snap(&mm);
    assert_eq!(mm.brk(DEFAULT_BRK + P), top, "M-brk-4");
    assert_eq!(snap(&mm), before, "M-brk-4: state changed");
    mm.check().unwrap();
}

#[test]
fn madvise_rows() {
    let rows: &[(&str, u64, u64, i32)] = &[
        ("M-madvise-1 unaligned", A + 1, P, EINVAL),
        ("M-madvise-2 len rounds past u64::MAX", A, u64::MAX, EINVAL),
        (
            "M-madvise-2 addr + len overflows",
            u64::MAX - P + 1,
            2 * P,
            EINVAL,
        ),
        ("M-madvise-4 nothing mapped", 0x10000, P, ENOMEM),
        (
            "M-madvise-4 the hole between A and B",
            A + 8 * P,
            2 * P,
            ENOMEM,
        ),
        ("M-madvise-4 above TASK_SIZE", TASK_SIZE, P, ENOMEM),
    ];
    for &(row, a, l, want) in rows {
        for adv in [Advice::DontNeed, Advice::Normal] {
            let r = mm_unchanged(row, |mm| mm.madvise(a, l, adv));
            assert_eq!(errno(row, r), want, "{row} {adv:?}");
        }
    }
    mm_unchanged("M-madvise-3 zero length", |mm| {
        mm.madvise(A, 0, Advice::DontNeed)
    })
    .unwrap();
    // M-madvise-5, partial effect: every mapped part in the range is zapped,
    // VMAs unchanged, then ENOMEM for the hole.
    let mm = mm_fixture();
    let before = snap(&mm);
    assert_eq!(
        mm.madvise(A + 6 * P, 6 * P, Advice::DontNeed)
            .unwrap_err()
            .errno(),
        ENOMEM
    );
    assert_eq!(mm.maps_string(), before.maps, "M-madvise-5: VMAs unchanged");
    for i in 6..8 {
        assert!(mm.translate(A + i * P).is_none(), "zapped before the hole");
    }
    for i in 0..2 {
        assert!(mm.translate(B + i * P).is_none(), "zapped after the hole");
    }
    assert!(mm.translate(A + 5 * P).is_some() && mm.translate(B + 2 * P).is_some());
    let s = mm.stats();
    assert_eq!(
        (s.frames_allocated, s.frames_freed),
        (before.frames.0, before.frames.1 + 4)
    );
    mm.check().unwrap();
    // Other advice over a hole: ENOMEM and no effect.
    let r = mm_unchanged("M-madvise-5 WillNeed", |mm| {
        mm.madvise(A + 6 * P, 6 * P, Advice::WillNeed)
    });
    assert_eq!(errno("M-madvise-5 WillNeed", r), ENOMEM);
}

#[test]
fn fault_rows() {
    let rows: &[(&str, u64, Access, FaultError)] = &[
        (
            "M-fault-1 unmapped (the hole)",
            A + 8 * P,
            Access::Read,
            FaultError::Segv,
        ),
        ("M-fault-1 page 0", 0, Access::Read, FaultError::Segv),
        (
            "M-fault-2 TASK_SIZE",
            TASK_SIZE,
            Access::Read,
            FaultError::Segv,
        ),
        (
            "M-fault-2 u64::MAX",
            u64::MAX,
            Access::Write,
            FaultError::Segv,
        ),
        (
            "M-fault-3 write to a read-only VMA",
            B,
            Access::Write,
            FaultError::Access,
        ),
        (
            "M-fault-3 exec in an RW VMA",
            A,
            Access::Exec,
            FaultError::Access,
        ),
        (
            "M-fault-3 write to a read-only file map",
            FILE,
            Access::Write,
            FaultError::Access,
        ),
        (
            "M-fault-4 below a non-stack VMA",
            A - P,
            Access::Write,
            FaultError::Segv,
        ),
        (
            "M-fault-4 far below the stack, past a mapping's guard gap",
            FILE + 4 * P,
            Access::Read,
            FaultError::Segv,
        ),
    ];
    for &(row, a, acc, want) in rows {
        let mm = mm_fixture();
        let before = snap(&mm);
        assert_eq!(mm.fault(a, acc), Err(want), "{row}");
        assert_eq!(snap(&mm), before, "{row}: state changed");
        mm.check().unwrap();
    }
    // M-fault-4: inside the guard gap above a mapping, the stack does not grow.
    let mm = mm_fixture();
    let gap_end = STACK_TOP - 4 * P - maple_rcu::mm::STACK_GUARD_GAP;
    mm.mmap(Some(gap_end - P), 2 * P, RW, FIXED).unwrap();
    let before = snap(&mm);
    assert_eq!(
        mm.fault(gap_end + 2 * P, Access::Read),
        Err(FaultError::Segv),
        "M-fault-4 guard gap"
    );
    assert_eq!(snap(&mm), before, "M-fault-4 guard gap: state changed");
    // translate outside the space
    assert_eq!(mm.translate(u64::MAX), None);
    assert_eq!(mm.translate(TASK_SIZE), None);
}

#[test]
fn from_maps_rows() {
    let rows: &[(&str, &str)] = &[
        ("M-maps-1 not maps syntax", "zzz\n"),
        (
            "M-maps-1 reversed range",
            "3000-1000 rw-p 00000000 00:00 0\n",
        ),
        (
            "M-maps-2 unaligned start",
            "10001000-10002001 rw-p 00000000 00:00 0\n",
        ),
        (
            "M-maps-2 unaligned offset",
            "10001000-10002000 r--p 00000123 08:01 42 /f\n",
        ),
        (
            "M-maps-3 overlapping lines",
            "10000000-10003000 rw-p 00000000 00:00 0\n10002000-10004000 rw-p 00000000 00:00 0\n",
        ),
        (
            "M-maps-4 crosses TASK_SIZE",
            "7fffffffe000-800000000000 rw-p 00000000 00:00 0\n",
        ),
    ];
    for &(row, text) in rows {
        let e = AddressSpace::from_maps(text).expect_err(row);
        assert_eq!(e.errno(), EINVAL, "{row}: {e}");
    }
    // Not errors: lines out of order, lines above TASK_SIZE ([vsyscall]), empty text.
    let mm = AddressSpace::from_maps(
        "20000000-20001000 rw-p 00000000 00:00 0\n10000000-10001000 r--p 00000000 00:00 0\n",
    )
    .unwrap();
    assert_eq!(mm.vmas().len(), 2);
    mm.check().unwrap();
    assert!(AddressSpace::from_maps("").unwrap().vmas().is_empty());
}

/// Issue 10 item 4: `MapsEntry` has public fields, so a hand-built entry
/// may have `end < start`; `len()` used to underflow (a panic in the test
/// profile). It is 0 now, like `is_empty()` says.
#[test]
fn maps_entry_len_never_underflows() {
    let mut e: maple_rcu::trace::MapsEntry = "1000-2000 r--p 00000000 00:00 0".parse().unwrap();
    assert_eq!(e.len(), 0x1000);
    e.start = 0x3000;
    assert_eq!(e.len(), 0);
    assert!(e.is_empty());
    e.start = u64::MAX;
    e.end = 0;
    assert_eq!(e.len(), 0);
}
