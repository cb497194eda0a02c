//! Replays of real programs (tests/data): exact mode has zero mismatches,
//! pages and protections equal the kernel's maps at the marker, and the
//! model's placement agrees with the kernel on every non-fixed mmap.

use maple_rcu::mm::AddressSpace;
use maple_rcu::trace::replay::{self, Mode, ReplayOptions};
use maple_rcu::trace::{Trace, parse_maps, parse_strace};

fn load(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn seeded(trace: &Trace, initial: &str) -> AddressSpace {
    let space = AddressSpace::from_maps(&load(initial)).unwrap();
    if let Some(b) = replay::initial_brk(trace) {
        space.set_initial_brk(b);
    }
    space
}

fn python(n: u32, mode: Mode) {
    let trace = parse_strace(&load(&format!("py{n}.trace"))).unwrap();
    let space = seeded(&trace, &format!("py{n}.initial"));
    let rep = replay::replay(
        &space,
        &trace,
        ReplayOptions {
            mode,
            stop_at_marker: true,
        },
    );
    assert!(rep.stopped_at_marker);
    assert!(rep.calls > 3000, "{} calls", rep.calls);
    assert!(
        rep.mismatches.is_empty(),
        "py{n} {mode:?}: {:#?}",
        &rep.mismatches[..rep.mismatches.len().min(10)]
    );
    let maps = parse_maps(&load(&format!("py{n}.maps"))).unwrap();
    let diffs = replay::compare_maps(&space, &maps);
    assert!(
        diffs.is_empty(),
        "py{n} {mode:?}: {} pages differ: {:#x?}",
        replay::pages(&diffs),
        &diffs[..diffs.len().min(10)]
    );
    if mode == Mode::Placement {
        assert!(rep.placement_total > 1000);
        assert_eq!(
            rep.placement_agree, rep.placement_total,
            "misses (line, kernel, model): {:#x?}",
            rep.placement_misses
        );
    }
    space.check().unwrap();
}

#[test]
fn py1_exact() {
    python(1, Mode::Exact);
}
#[test]
fn py2_exact() {
    python(2, Mode::Exact);
}
#[test]
fn py3_exact() {
    python(3, Mode::Exact);
}
#[test]
fn py1_placement() {
    python(1, Mode::Placement);
}
#[test]
fn py2_placement() {
    python(2, Mode::Placement);
}
#[test]
fn py3_placement() {
    python(3, Mode::Placement);
}

#[test]
fn jvm_exact_from_initial_maps() {
    let trace = parse_strace(&load("jvm-g1-8threads.trace")).unwrap();
    let space = seeded(&trace, "jvm-g1-8threads.initial");
    let rep = replay::replay(
        &space,
        &trace,
        ReplayOptions {
            mode: Mode::Exact,
            stop_at_marker: false,
        },
    );
    assert_eq!(rep.calls, trace.calls.len());
    assert!(
        rep.mismatches.is_empty(),
        "{:#?}",
        &rep.mismatches[..rep.mismatches.len().min(10)]
    );
    space.check().unwrap();
}
