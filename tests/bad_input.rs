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

/// `(row, size, align, window, error)`; `find_gap(_rev)` answers `None` to
/// all of them and `alloc_range(_rev)` gives the error and the value back.
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
fn find_gap_rows() {
    let t = fixture();
    unchanged("T-gap", &t, |t| {
        let r = t.pin();
        for (row, size, align, w, _) in gap_rows() {
            assert_eq!(r.find_gap(size, align, w.clone()), None, "{row}");
            assert_eq!(r.find_gap_rev(size, align, w.clone()), None, "{row} rev");
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
    assert_eq!(t.pin().find_gap_rev(0x10, 0x10, 0..MAX), Some(MAX - 0x101f));
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
