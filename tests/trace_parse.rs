//! Tests of `maple_rcu::trace`: the strace and `/proc/pid/maps` parsers on
//! the real recordings in `tests/data/`, hand-written tricky lines, and
//! property tests (round trips; no input panics).

use maple_rcu::trace::*;
use proptest::prelude::*;

const PY1_TRACE: &str = include_str!("data/py1.trace");
const PY2_TRACE: &str = include_str!("data/py2.trace");
const PY3_TRACE: &str = include_str!("data/py3.trace");
const JVM_TRACE: &str = include_str!("data/jvm-g1-8threads.trace");
const PY1_MAPS: &str = include_str!("data/py1.maps");
const PY2_MAPS: &str = include_str!("data/py2.maps");
const PY3_MAPS: &str = include_str!("data/py3.maps");
const PY1_INITIAL: &str = include_str!("data/py1.initial");
const PY2_INITIAL: &str = include_str!("data/py2.initial");
const PY3_INITIAL: &str = include_str!("data/py3.initial");
const JVM_INITIAL: &str = include_str!("data/jvm-g1-8threads.initial");

const TRACES: [(&str, &str); 4] = [
    ("py1", PY1_TRACE),
    ("py2", PY2_TRACE),
    ("py3", PY3_TRACE),
    ("jvm", JVM_TRACE),
];

// ---------------------------------------------------------------------------
// Real traces
// ---------------------------------------------------------------------------

/// Per trace: (name, [mmap, munmap, mprotect, mremap, brk, madvise], failed
/// calls, marker line). The counts were taken with grep, independently of the
/// parser: lines whose text after the pid starts with `NAME(`.
const EXPECTED: [(&str, [usize; 6], usize, Option<usize>); 4] = [
    ("py1", [1610, 469, 767, 309, 22, 1], 70, Some(3175)),
    ("py2", [1679, 492, 719, 265, 22, 1], 51, Some(3175)),
    ("py3", [1630, 456, 751, 318, 22, 1], 61, Some(3175)),
    ("jvm", [1785, 22, 538, 0, 4, 17], 0, None),
];

/// An independent, naive scan: the text after an optional `PID ` prefix.
fn body(line: &str) -> &str {
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    match line[digits..].strip_prefix(' ') {
        Some(rest) if digits > 0 => rest,
        _ => line,
    }
}

#[test]
fn real_traces_parse_completely() {
    for ((name, text), (ename, counts, failures, marker)) in TRACES.iter().zip(EXPECTED) {
        assert_eq!(*name, ename);
        let t = parse_strace(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (lenient, errors) = parse_strace_lenient(text);
        assert!(errors.is_empty(), "{name}: {errors:?}");
        assert_eq!(lenient, t);

        for (call, want) in MEMORY_CALLS.iter().zip(counts) {
            assert_eq!(t.count(call), want, "{name}: {call}");
            // No memory call was skipped or left unfinished.
            assert!(!t.skipped_by_name.contains_key(*call), "{name}: {call}");
        }
        assert!(t.unfinished.is_empty(), "{name}: {:?}", t.unfinished);
        assert_eq!(t.calls.len(), counts.iter().sum::<usize>());
        let failed = t
            .calls
            .iter()
            .filter(|c| c.result.errno().is_some())
            .count();
        assert_eq!(failed, failures, "{name}");
        assert!(t.calls.iter().all(|c| c.result != SysResult::Unknown));
        assert_eq!(
            t.calls
                .get(t.marker().unwrap_or(usize::MAX))
                .map(|c| c.line),
            marker
        );
        assert_eq!(t.lines, text.lines().count());

        // Every non-memory, non-event line is accounted for as skipped.
        let lines: Vec<&str> = text.lines().collect();
        let starts = lines
            .iter()
            .filter(|l| {
                let b = body(l);
                !b.starts_with("<...") && !b.starts_with("+++") && !b.starts_with("---")
            })
            .count();
        assert_eq!(starts, t.calls.len() + t.skipped, "{name}");
        assert_eq!(t.other_lines, 0, "{name}");

        // Records point at their lines and come in completion order.
        let mut last = 0;
        for c in &t.calls {
            assert!(c.line > last, "{name}: order at line {}", c.line);
            last = c.line;
            let (start, end) = (body(lines[c.start_line - 1]), body(lines[c.line - 1]));
            assert!(
                start.starts_with(&format!("{}(", c.call.name())),
                "{name}:{}",
                c.line
            );
            if c.start_line != c.line {
                assert!(start.ends_with("<unfinished ...>"));
                assert!(end.starts_with(&format!("<... {} resumed>", c.call.name())));
            }
        }
    }
}

#[test]
fn real_traces_details() {
    let jvm = parse_strace(JVM_TRACE).unwrap();
    // 37 memory calls in the JVM trace were split across two lines.
    let split = jvm.calls.iter().filter(|c| c.start_line != c.line).count();
    assert_eq!(split, 37);
    assert_eq!(jvm.skipped_by_name["clone3"], 27);
    assert_eq!(jvm.skipped_by_name["execve"], 1);
    assert_eq!((jvm.exits, jvm.signals), (28, 12));
    assert!(jvm.calls.iter().all(|c| c.pid.is_some()));
    // Line 1063/1065: `mmap(... <unfinished ...>` completed two lines later.
    let c = jvm.calls.iter().find(|c| c.start_line == 1063).unwrap();
    assert_eq!((c.line, c.pid), (1065, Some(11340)));
    assert_eq!(c.result, SysResult::Ok(0x7fff_f42a_6000));
    assert_eq!(
        c.call,
        Syscall::Mmap {
            addr: 0,
            len: 1 << 20,
            prot: PROT_READ | PROT_WRITE,
            flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK,
            fd: -1,
            offset: 0
        }
    );

    let py1 = parse_strace(PY1_TRACE).unwrap();
    assert!(py1.calls.iter().all(|c| c.pid.is_none()));
    assert_eq!(py1.calls[0].call, Syscall::Brk { addr: 0 });
    assert_eq!(py1.calls[0].result, SysResult::Ok(0x5555_5555_9000));
    let efault = py1.calls.iter().find(|c| c.line == 260).unwrap();
    assert_eq!(
        efault.result,
        SysResult::Err {
            errno: 14,
            name: "EFAULT".into()
        }
    );
    // Some calls come after the marker; a replay stops at it.
    assert!(py1.marker().unwrap() < py1.calls.len() - 1);
}

// ---------------------------------------------------------------------------
// Real maps
// ---------------------------------------------------------------------------

#[test]
fn maps_files_round_trip_byte_for_byte() {
    for (name, text) in [("py1", PY1_MAPS), ("py2", PY2_MAPS), ("py3", PY3_MAPS)] {
        let entries = parse_maps(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(entries.len(), text.lines().count());
        assert_eq!(format_maps(&entries), text, "{name}");
        let named = |n: &str| {
            entries
                .iter()
                .filter(|e| e.path.as_deref() == Some(n))
                .count()
        };
        assert_eq!(named("[heap]"), 1);
        assert_eq!(named("[stack]"), 1);
        assert_eq!(named("[vdso]"), 1);
        let vsyscall = entries.last().unwrap();
        assert_eq!(vsyscall.path.as_deref(), Some("[vsyscall]"));
        assert_eq!(vsyscall.start, 0xffff_ffff_ff60_0000);
        assert_eq!(vsyscall.prot(), PROT_EXEC);
        assert!(entries.iter().any(|e| e.deleted));
        assert!(entries.iter().any(|e| e.path.is_none()));
        assert!(entries.windows(2).all(|w| w[0].end <= w[1].start));
    }
    let py1 = parse_maps(PY1_MAPS).unwrap();
    let deleted = py1.iter().find(|e| e.deleted).unwrap();
    assert!(deleted.path.as_deref().unwrap().starts_with("/var/tmp/tmp"));
    assert!(!deleted.path.as_deref().unwrap().ends_with("(deleted)"));
    assert_eq!(py1[0].dev, (0xfe, 0));
    assert_eq!(py1[0].inode, 18504);
}

/// The `*.initial` files were sanitised to a single-space form (no padding,
/// dev 00:00, inode 0): they round-trip through `format_compact`, and through
/// the kernel format to the same entries.
#[test]
fn initial_files_round_trip() {
    for text in [PY1_INITIAL, PY2_INITIAL, PY3_INITIAL, JVM_INITIAL] {
        let entries = parse_maps(text).unwrap();
        assert_eq!(entries.len(), 13);
        let compact: String = entries.iter().map(|e| e.format_compact() + "\n").collect();
        assert_eq!(compact, text);
        assert_eq!(parse_maps(&format_maps(&entries)).unwrap(), entries);
        assert_eq!(entries[4].path.as_deref(), Some("[vvar]"));
        assert_eq!(entries[4].start, 0x7fff_f7fc_2000);
    }
}

// ---------------------------------------------------------------------------
// Hand-written tricky lines
// ---------------------------------------------------------------------------

fn calls(text: &str) -> Vec<TraceCall> {
    parse_strace(text).unwrap_or_else(|e| panic!("{e}")).calls
}

fn err(text: &str) -> ParseError {
    parse_strace(text).unwrap_err()
}

#[test]
fn resumed_calls_across_pids_complete_in_line_order() {
    let text = "\
100 mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0 <unfinished ...>
[pid   200] mprotect(0x1000, 4096, PROT_NONE <unfinished ...>
300 munmap(0x5000, 8192) = 0
200 <... mprotect resumed>) = 0
100 <... mmap resumed>)               = 0x7f0000000000
";
    let c = calls(text);
    let got: Vec<_> = c
        .iter()
        .map(|c| (c.call.name(), c.pid, c.start_line, c.line))
        .collect();
    assert_eq!(
        got,
        [
            ("munmap", Some(300), 3, 3),
            ("mprotect", Some(200), 2, 4),
            ("mmap", Some(100), 1, 5),
        ]
    );
    assert_eq!(
        c[1].call,
        Syscall::Mprotect {
            addr: 0x1000,
            len: 4096,
            prot: PROT_NONE
        }
    );
    assert_eq!(c[2].result, SysResult::Ok(0x7f00_0000_0000));
}

#[test]
fn resumed_with_remaining_arguments() {
    // strace may interrupt a call in the middle of its arguments.
    let text = "\
7 mremap(0x10000, 4096 <unfinished ...>
8 brk(NULL) = 0x555555559000
7 <... mremap resumed>, 8192, MREMAP_MAYMOVE|MREMAP_FIXED, 0x20000) = 0x20000
";
    let c = calls(text);
    assert_eq!(
        c[1].call,
        Syscall::Mremap {
            old_addr: 0x10000,
            old_len: 4096,
            new_len: 8192,
            flags: MREMAP_MAYMOVE | MREMAP_FIXED,
            new_addr: Some(0x20000)
        }
    );
}

#[test]
fn non_memory_calls_are_skipped_and_counted() {
    let text = "\
1 clone3({flags=CLONE_VM|CLONE_FS, child_tid=0x7ffff691f990, stack_size=0xfef80} <unfinished ...>
2 mmap(0x1000, 4096, PROT_READ, MAP_SHARED, 3, 4096) = 0x1000
1 <... clone3 resumed> => {parent_tid=[11354]}, 88) = 11354
1 pkey_mprotect(0x1000, 4096, PROT_READ, 1) = 0
execve(\"/bin/x\", [\"x\", \"a,b)\"], 0x7ffe /* 3 vars */) = 0
<... futex resumed>) = ?
strace: Process 5 attached

";
    let t = parse_strace(text).unwrap();
    assert_eq!(t.calls.len(), 1);
    assert_eq!(t.skipped, 4);
    assert_eq!(t.skipped_by_name["clone3"], 1);
    assert_eq!(t.skipped_by_name["pkey_mprotect"], 1);
    assert_eq!(t.skipped_by_name["futex"], 1);
    assert_eq!(t.other_lines, 2);
}

#[test]
fn events_and_unfinished_calls() {
    let text = "\
11340 --- SIGSEGV {si_signo=SIGSEGV, si_code=SEGV_MAPERR, si_addr=NULL} ---
11341 mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0 <unfinished ...>
11341 +++ killed by SIGKILL +++
11342 munmap(0x1000, 4096 <unfinished ...>
11342 <... munmap resumed>) = ?
[pid 11343] madvise(0x1000, 4096, MADV_DONTNEED <unfinished ...>
+++ exited with 0 +++
";
    let t = parse_strace(text).unwrap();
    assert_eq!((t.signals, t.exits), (1, 2));
    assert_eq!(t.calls.len(), 1);
    assert_eq!(t.calls[0].result, SysResult::Unknown);
    let unfinished: Vec<_> = t
        .unfinished
        .iter()
        .map(|u| (u.line, u.pid, u.name.as_str()))
        .collect();
    assert_eq!(
        unfinished,
        [(2, Some(11341), "mmap"), (6, Some(11343), "madvise")]
    );
    assert!(t.unfinished[0].text.ends_with("-1, 0"));
}

#[test]
fn results() {
    let c = calls(
        "\
mmap(NULL, 1099511627776, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = -1 ENOMEM (Cannot allocate memory)
mmap(0x10000, 4096, PROT_READ, MAP_PRIVATE|MAP_FIXED_NOREPLACE|MAP_ANONYMOUS, -1, 0) = -1 EEXIST (File exists)
munmap(0x1001, 4096) = -1 EINVAL (Invalid argument) <0.000007>
mprotect(0x1000, 4096, PROT_READ) = ? ERESTARTSYS (To be restarted if SA_RESTART is set)
mprotect(0x1000, 4096, PROT_READ) = -1 (errno 12)
brk(0x1000) = 0x555555559000
munmap(0x1000, 4096) = ?
",
    );
    let errnos: Vec<_> = c.iter().map(|c| c.result.errno()).collect();
    assert_eq!(
        errnos,
        [
            Some(12),
            Some(17),
            Some(22),
            Some(512),
            Some(12),
            None,
            None
        ]
    );
    assert_eq!(c[4].result.to_string(), "-1 ENOMEM");
    assert_eq!(c[5].result.ok(), Some(0x5555_5555_9000));
    assert_eq!(c[6].result, SysResult::Unknown);
}

#[test]
fn numbers_flags_and_odd_spacing() {
    let c = calls(
        "\
mmap(0x7f0000000000,8192,PROT_READ|0x10000000,0x40000,-1,0x1000)=0x7f0000000000
mmap(NULL,  4096 ,\tPROT_EXEC|PROT_READ /* PROT_??? */, MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB|21<<MAP_HUGE_SHIFT, 4</tmp/a b>, 4096)   =   0x1000  \r
mmap(NULL, 4096, 0x7, MAP_SHARED_VALIDATE|MAP_SYNC|MAP_POPULATE|MAP_NORESERVE|MAP_GROWSDOWN|MAP_DENYWRITE, -100, 0) = 0x2000
mprotect(0x1000, 4096, PROT_READ|PROT_WRITE|PROT_EXEC|PROT_GROWSDOWN) = 0
madvise(0x1000, 4096, 0x3f /* MADV_??? */) = 0
madvise(0x1000, 4096, MADV_FREE) = 0
",
    );
    assert_eq!(
        c[0].call,
        Syscall::Mmap {
            addr: 0x7f00_0000_0000,
            len: 8192,
            prot: PROT_READ | 0x1000_0000,
            flags: 0x40000,
            fd: -1,
            offset: 0x1000
        }
    );
    assert_eq!(
        c[1].call,
        Syscall::Mmap {
            addr: 0,
            len: 4096,
            prot: PROT_EXEC | PROT_READ,
            flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | (21 << MAP_HUGE_SHIFT),
            fd: 4,
            offset: 4096
        }
    );
    assert_eq!(c[1].result, SysResult::Ok(0x1000));
    let Syscall::Mmap {
        prot, flags, fd, ..
    } = c[2].call
    else {
        panic!()
    };
    assert_eq!((prot, fd), (7, -100));
    assert_eq!(flags, 0x3 | 0x80000 | 0x8000 | 0x4000 | 0x100 | 0x800);
    assert_eq!(
        c[3].call,
        Syscall::Mprotect {
            addr: 0x1000,
            len: 4096,
            prot: 0x0100_0007
        }
    );
    assert_eq!(
        c[4].call,
        Syscall::Madvise {
            addr: 0x1000,
            len: 4096,
            advice: 0x3f
        }
    );
    assert_eq!(
        c[5].call,
        Syscall::Madvise {
            addr: 0x1000,
            len: 4096,
            advice: MADV_FREE
        }
    );
}

#[test]
fn timestamps() {
    let c = calls(
        "\
10:01:02 brk(NULL) = 0x1000
123 10:01:02.123456 brk(NULL) = 0x1000
[pid 9] 1700000000.123456 brk(NULL) = 0x1000 <0.000011>
     0.000042 brk(NULL) = 0x1000
",
    );
    let times: Vec<_> = c.iter().map(|c| c.time.as_deref()).collect();
    assert_eq!(
        times,
        [
            Some("10:01:02"),
            Some("10:01:02.123456"),
            Some("1700000000.123456"),
            Some("0.000042")
        ]
    );
    assert_eq!(c[1].pid, Some(123));
    assert_eq!(c[2].pid, Some(9));
}

#[test]
fn marker() {
    let c = calls("madvise(NULL, 0, MADV_NORMAL) = 0\nmadvise(0x1000, 0, MADV_NORMAL) = 0\n");
    assert!(c[0].is_marker());
    assert!(!c[1].is_marker());
    assert!(!Syscall::Brk { addr: 0 }.is_marker());
}

#[test]
fn malformed_memory_lines_are_errors_with_line_numbers() {
    let e = err("brk(NULL) = 0x1000\nmmap(NULL, 4096, PROT_READ) = 0x1000\n");
    assert_eq!(e.line, 2);
    assert_eq!(
        e.kind,
        ParseErrorKind::ArgCount {
            call: "mmap",
            expected: "6",
            found: 3
        }
    );
    assert_eq!(e.to_string(), "line 2: mmap: expected 6 arguments, found 3");

    let kinds = [
        (
            "munmap(0x10g0, 4096) = 0",
            ParseErrorKind::BadNumber("0x10g0".into()),
        ),
        (
            "munmap(0x1000, -4096) = 0",
            ParseErrorKind::BadNumber("-4096".into()),
        ),
        ("munmap(0x1000, 4096)", ParseErrorKind::MissingResult),
        ("munmap(0x1000, 4096 = 0", ParseErrorKind::Unbalanced),
        (
            "munmap(0x1000, 4096) = banana",
            ParseErrorKind::BadResult("banana".into()),
        ),
        (
            "munmap(0x1000, 4096) = -1",
            ParseErrorKind::BadResult("-1".into()),
        ),
        (
            "munmap(0x1000, 4096) = -1 EBOGUS (x)",
            ParseErrorKind::BadResult("-1 EBOGUS (x)".into()),
        ),
        (
            "mprotect(0x1000, 4096, PROT_FLY) = 0",
            ParseErrorKind::UnknownFlag("PROT_FLY".into()),
        ),
        (
            "mprotect(0x1000, 4096, PROT_READ|) = 0",
            ParseErrorKind::UnknownFlag(String::new()),
        ),
        (
            "mmap(NULL, 1, PROT_READ, MAP_PRIVATE, 0x1g, 0) = 0",
            ParseErrorKind::BadNumber("0x1g".into()),
        ),
        (
            "mprotect(0x1000, 4096, 0x100000000) = 0",
            ParseErrorKind::BadNumber("0x100000000".into()),
        ),
        (
            "brk(18446744073709551616) = 0",
            ParseErrorKind::BadNumber("18446744073709551616".into()),
        ),
        (
            "brk() = 0",
            ParseErrorKind::ArgCount {
                call: "brk",
                expected: "1",
                found: 0,
            },
        ),
        (
            "mremap(0, 1, 2) = 0",
            ParseErrorKind::ArgCount {
                call: "mremap",
                expected: "4 or 5",
                found: 3,
            },
        ),
        (
            "7 <... mmap resumed>) = 0",
            ParseErrorKind::OrphanResume("mmap".into()),
        ),
    ];
    for (line, kind) in kinds {
        let e = err(line);
        assert_eq!((e.line, &e.kind), (1, &kind), "{line}");
    }

    let e = err("7 mmap(NULL, 1 <unfinished ...>\n7 <... munmap resumed>) = 0\n");
    assert_eq!(e.line, 2);
    assert_eq!(
        e.kind,
        ParseErrorKind::ResumeMismatch {
            resumed: "munmap".into(),
            pending: "mmap".into(),
            pending_line: 1
        }
    );
}

#[test]
fn lenient_mode_collects_bad_lines() {
    let text = "\
brk(NULL) = 0x1000
mmap(NULL) = 0x1
munmap(0x1000, 4096) = 0
mprotect(x, 1, PROT_READ) = 0
1 <... madvise resumed>) = 0
";
    let (t, errors) = parse_strace_lenient(text);
    assert_eq!(t.calls.len(), 2);
    let lines: Vec<_> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [2, 4, 5]);
    assert_eq!(parse_strace(text).unwrap_err().line, 2);
}

#[test]
fn maps_tricky_lines() {
    let text = "\
00400000-00452000 r-xp 00000000 103:02 1234567 /usr/bin/my prog
7f0000000000-7f0000001000 rw-s 00000000 00:05 99                         /dev/shm/a (deleted) (deleted)
7f0000001000-7f0000002000 ---p 00000000 00:00 0
7f0000002000-7f0000003000 rw-p 00000000 00:00 0                          [anon:jemalloc]

7f0000003000-7f0000004000 r--p 00001000 fe:00 1   (deleted)
";
    let e = parse_maps(text).unwrap();
    assert_eq!(e.len(), 5);
    assert_eq!(e[0].path.as_deref(), Some("/usr/bin/my prog"));
    assert_eq!(e[0].dev, (0x103, 2));
    assert_eq!(e[0].start, 0x40_0000);
    assert!(e[0].exec && !e[0].write && !e[0].shared);
    assert_eq!(e[1].path.as_deref(), Some("/dev/shm/a (deleted)"));
    assert!(e[1].deleted && e[1].shared);
    assert_eq!(e[2].path, None);
    assert_eq!(e[2].prot(), PROT_NONE);
    assert_eq!(e[3].path.as_deref(), Some("[anon:jemalloc]"));
    // A name that is only "(deleted)" is a name, not a deleted empty path.
    assert_eq!(e[4].path.as_deref(), Some("(deleted)"));
    assert!(!e[4].deleted);
    let line = e[0].format_line();
    assert_eq!(line.find("/usr"), Some(73), "{line}");
    assert!(line.starts_with("00400000-00452000 r-xp 00000000 103:02 1234567 "));

    let bad = parse_maps("7f0000000000-7f0000001000 rw-p 00000000 00:00 0\nnot a maps line\n")
        .unwrap_err();
    assert_eq!(bad.line, 2);
    assert!(matches!(
        bad.kind,
        ParseErrorKind::BadField { field: "range", .. }
    ));
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

fn errno_result() -> impl Strategy<Value = SysResult> {
    prop_oneof![
        any::<u64>().prop_map(SysResult::Ok),
        Just(SysResult::Ok(0)),
        Just(SysResult::Unknown),
        prop::sample::select(vec![
            "ENOMEM", "EINVAL", "EFAULT", "EEXIST", "EAGAIN", "EPERM"
        ])
        .prop_map(|n| SysResult::Err {
            errno: errno_number(n).unwrap(),
            name: n.into()
        }),
    ]
}

fn syscall() -> impl Strategy<Value = Syscall> {
    prop_oneof![
        (
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
            any::<i64>(),
            any::<u64>()
        )
            .prop_map(|(addr, len, prot, flags, fd, offset)| Syscall::Mmap {
                addr,
                len,
                prot,
                flags,
                fd,
                offset
            }),
        (any::<u64>(), any::<u64>()).prop_map(|(addr, len)| Syscall::Munmap { addr, len }),
        (any::<u64>(), any::<u64>(), any::<u32>())
            .prop_map(|(addr, len, prot)| Syscall::Mprotect { addr, len, prot }),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            any::<Option<u64>>()
        )
            .prop_map(
                |(old_addr, old_len, new_len, flags, new_addr)| Syscall::Mremap {
                    old_addr,
                    old_len,
                    new_len,
                    flags,
                    new_addr
                }
            ),
        any::<u64>().prop_map(|addr| Syscall::Brk { addr }),
        (any::<u64>(), any::<u64>(), any::<u32>())
            .prop_map(|(addr, len, advice)| Syscall::Madvise { addr, len, advice }),
    ]
}

fn maps_entry() -> impl Strategy<Value = MapsEntry> {
    let path = prop_oneof![
        Just(None),
        "[a-z\\[/._-][a-z\\[\\]/. _-]{0,40}[a-z\\]]".prop_map(Some),
        Just(Some("[stack]".to_string())),
    ];
    // Mostly user-space sized values (a header narrower than the padding
    // column), sometimes anything.
    let small_or_any = |small: u64| prop_oneof![3 => 0..small, 1 => any::<u64>()];
    let dev = prop_oneof![3 => (0..256u32, 0..256u32), 1 => any::<(u32, u32)>()];
    (
        small_or_any(1 << 47),
        small_or_any(1 << 32).prop_map(|l| l.max(1)),
        any::<[bool; 5]>(),
        small_or_any(1 << 32),
        dev,
        small_or_any(1 << 24),
        path,
    )
        .prop_map(|(start, len, f, offset, dev, inode, path)| MapsEntry {
            start: start.min(u64::MAX - len),
            end: start.min(u64::MAX - len) + len,
            read: f[0],
            write: f[1],
            exec: f[2],
            shared: f[3],
            offset,
            dev,
            inode,
            deleted: f[4] && path.is_some(),
            path,
        })
}

/// Lines of all real inputs, for mutation.
fn real_lines() -> Vec<&'static str> {
    TRACES
        .iter()
        .map(|(_, t)| *t)
        .chain([PY1_MAPS, JVM_INITIAL])
        .flat_map(str::lines)
        .step_by(7)
        .collect()
}

#[derive(Clone, Debug)]
enum Mutation {
    Delete(usize, usize),
    Insert(usize, char),
    Replace(usize, char),
    Truncate(usize),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let ch = prop_oneof![
        prop::sample::select(vec![
            '(', ')', ',', '|', '<', '>', ' ', '-', '=', '?', 'x', '0', '\n', '{', '"', '[', ']',
            '.', ':'
        ]),
        any::<char>(),
    ];
    prop_oneof![
        (any::<usize>(), 0..20usize).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<usize>(), ch.clone()).prop_map(|(i, c)| Mutation::Insert(i, c)),
        (any::<usize>(), ch).prop_map(|(i, c)| Mutation::Replace(i, c)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Mutation::Duplicate(i, j)),
    ]
}

fn mutate(line: &str, muts: &[Mutation]) -> String {
    let mut chars: Vec<char> = line.chars().collect();
    for m in muts {
        let n = chars.len().max(1);
        match *m {
            Mutation::Delete(i, k) => {
                let i = i % n;
                let end = (i + k).min(chars.len());
                if i < end {
                    chars.drain(i..end);
                }
            }
            Mutation::Insert(i, c) => chars.insert(i % (chars.len() + 1), c),
            Mutation::Replace(i, c) => {
                if !chars.is_empty() {
                    chars[i % n] = c;
                }
            }
            Mutation::Truncate(i) => chars.truncate(i % n),
            Mutation::Duplicate(i, j) => {
                let (i, j) = (i % n, j % n);
                let (a, b) = (i.min(j), i.max(j));
                if b <= chars.len() {
                    let piece: Vec<char> = chars[a..b].to_vec();
                    chars.splice(b..b, piece);
                }
            }
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_input_never_panics(text in "\\PC{0,200}", bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let lossy = String::from_utf8_lossy(&bytes);
        for t in [text.as_str(), &lossy] {
            let _ = parse_strace(t);
            let _ = parse_strace_lenient(t);
            let _ = parse_maps(t);
        }
    }

    #[test]
    fn mutated_real_lines_never_panic(
        picks in prop::collection::vec((any::<prop::sample::Index>(), prop::collection::vec(mutation(), 1..4)), 1..6)
    ) {
        let lines = real_lines();
        let text: Vec<String> = picks
            .iter()
            .map(|(i, muts)| mutate(lines[i.index(lines.len())], muts))
            .collect();
        let text = text.join("\n");
        let (_, errors) = parse_strace_lenient(&text);
        if let Err(e) = parse_strace(&text) {
            // Strict mode stops at the first error lenient mode reports.
            prop_assert_eq!(Some(&e), errors.first());
        }
        let _ = parse_maps(&text);
    }

    #[test]
    fn printed_calls_parse_back(call in syscall(), result in errno_result(), pid in any::<Option<u32>>()) {
        let tc = TraceCall { line: 1, start_line: 1, pid, time: None, call, result };
        let line = tc.to_string();
        let t = parse_strace(&line).map_err(|e| TestCaseError::fail(format!("{line}: {e}")))?;
        prop_assert_eq!(t.calls, vec![tc], "{}", line);
    }

    /// Pairs of calls on two pids, both split into `<unfinished ...>` and
    /// `<... resumed>`, completing in either order: each is joined with its
    /// own first half and they come out in completion order.
    #[test]
    fn split_calls_join_per_pid(a in syscall(), b in syscall(), ra in errno_result(), rb in errno_result(), b_first: bool) {
        let split = |pid: u32, c: &Syscall, r: &SysResult| {
            let text = c.to_string();
            let head = text.strip_suffix(')').unwrap();
            (format!("{pid} {head} <unfinished ...>"), format!("{pid} <... {} resumed>) = {r}", c.name()))
        };
        let (a1, a2) = split(1, &a, &ra);
        let (b1, b2) = split(2, &b, &rb);
        let lines = if b_first { [a1, b1, b2, a2] } else { [a1, b1, a2, b2] };
        let t = parse_strace(&lines.join("\n")).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got: Vec<_> = t.calls.iter().map(|c| (c.pid, c.start_line, c.line, c.call.clone(), c.result.clone())).collect();
        let ea = (Some(1), 1, if b_first { 4 } else { 3 }, a, ra);
        let eb = (Some(2), 2, if b_first { 3 } else { 4 }, b, rb);
        let want = if b_first { vec![eb, ea] } else { vec![ea, eb] };
        prop_assert_eq!(got, want);
    }

    #[test]
    fn printed_maps_entries_parse_back(e in maps_entry()) {
        let line = e.format_line();
        prop_assert_eq!(&line.parse::<MapsEntry>(), &Ok(e.clone()), "{}", line);
        // The kernel format puts a name at column 73 unless the header is
        // wider; then one extra space follows the header's own.
        if let Some(path) = &e.path {
            let name = if e.deleted { format!("{path} (deleted)") } else { path.clone() };
            let header = e.format_compact().len() - name.len();
            prop_assert_eq!(line.len() - name.len(), header.max(72) + 1);
            prop_assert!(line.ends_with(&name));
        }
        prop_assert_eq!(e.format_compact().parse::<MapsEntry>(), Ok(e));
    }
}
