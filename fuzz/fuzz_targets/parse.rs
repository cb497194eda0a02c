//! `parse`: the strace and `/proc/pid/maps` parsers never panic on any input,
//! and their results agree with each other:
//! * strict `parse_strace` fails exactly at the first error lenient mode reports,
//!   and succeeds with the same trace when lenient mode reports none;
//! * whatever `parse_maps` accepts prints (`format_maps`) and parses back to
//!   the same entries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use maple_rcu::trace::{format_maps, parse_maps, parse_strace, parse_strace_lenient};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (trace, errors) = parse_strace_lenient(&text);
    match parse_strace(&text) {
        Ok(t) => {
            assert!(
                errors.is_empty(),
                "strict accepted, lenient found {errors:?}"
            );
            assert_eq!(t, trace);
        }
        Err(e) => assert_eq!(Some(&e), errors.first()),
    }

    if let Ok(entries) = parse_maps(&text) {
        let printed = format_maps(&entries);
        let back = parse_maps(&printed)
            .unwrap_or_else(|e| panic!("printed maps do not parse: {e}\n{printed}"));
        assert_eq!(back, entries, "printed:\n{printed}");
    }
});
