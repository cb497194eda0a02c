//! Replays a real program's `strace -f -e trace=memory` log against the
//! address-space model and compares the result with the kernel's.
//!
//! ```text
//! cargo run --release --example replay -- tests/data/py1.trace \
//!     --initial tests/data/py1.initial --final tests/data/py1.maps --mode placement
//! ```
//! With `--json` the last line is one JSON object with the keys `calls`,
//! `mismatches`, `placement_agree`, `placement_total`, `pages_differing`,
//! `vmas`, `ops_per_sec`.

use clap::{Parser, ValueEnum};
use maple_rcu::mm::AddressSpace;
use maple_rcu::trace::replay::{self, Mode, ReplayOptions};
use maple_rcu::trace::{parse_maps, parse_strace};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ModeArg {
    Exact,
    Placement,
}

/// Replay an strace memory log on the maple-rcu address-space model.
#[derive(Parser, Debug)]
struct Args {
    /// The strace log (`strace -f -e trace=memory`).
    trace: PathBuf,
    /// /proc/pid/maps of the process before the trace (seeds the model).
    #[arg(long)]
    initial: Option<PathBuf>,
    /// /proc/pid/maps at the marker `madvise(NULL, 0, MADV_NORMAL)`, to compare with.
    #[arg(long = "final")]
    final_maps: Option<PathBuf>,
    /// exact: every call at the kernel's address; placement: the model places first.
    #[arg(long, value_enum, default_value = "exact")]
    mode: ModeArg,
    /// Replay past the marker instead of stopping at it.
    #[arg(long)]
    no_stop: bool,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
}

fn read(p: &PathBuf) -> Result<String, String> {
    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
}

fn run(args: Args) -> Result<(), String> {
    let trace =
        parse_strace(&read(&args.trace)?).map_err(|e| format!("{}: {e}", args.trace.display()))?;
    let space = match &args.initial {
        Some(p) => {
            AddressSpace::from_maps(&read(p)?).map_err(|e| format!("{}: {e}", p.display()))?
        }
        None => AddressSpace::new(),
    };
    if let Some(b) = replay::initial_brk(&trace) {
        space.set_initial_brk(b);
    }
    let mode = match args.mode {
        ModeArg::Exact => Mode::Exact,
        ModeArg::Placement => Mode::Placement,
    };
    let rep = replay::replay(
        &space,
        &trace,
        ReplayOptions {
            mode,
            stop_at_marker: !args.no_stop,
        },
    );
    println!("calls replayed     {}", rep.calls);
    println!("mismatches         {}", rep.mismatches.len());
    for m in rep.mismatches.iter().take(20) {
        println!(
            "  line {}: {} kernel {} model {:?}",
            m.line, m.call, m.kernel, m.model
        );
    }
    println!(
        "placement agree    {}/{}",
        rep.placement_agree, rep.placement_total
    );
    for (line, k, m) in rep.placement_misses.iter().take(20) {
        println!("  line {line}: kernel {k:#x} model {m:#x}");
    }
    let pages = match &args.final_maps {
        Some(p) => {
            let maps = parse_maps(&read(p)?).map_err(|e| format!("{}: {e}", p.display()))?;
            let diffs = replay::compare_maps(&space, &maps);
            for d in diffs.iter().take(20) {
                println!(
                    "  differs {:#x}-{:#x}: kernel {:?} model {:?}",
                    d.range.start, d.range.end, d.kernel, d.model
                );
            }
            let n = replay::pages(&diffs);
            println!("pages differing    {n}");
            Some(n)
        }
        None => None,
    };
    let vmas = space.vmas().len();
    println!("final VMAs         {vmas}");
    println!("replay ops/s       {:.0}", rep.ops_per_sec());
    if args.json {
        println!(
            "{{\"calls\":{},\"mismatches\":{},\"placement_agree\":{},\"placement_total\":{},\"pages_differing\":{},\"vmas\":{},\"ops_per_sec\":{:.1}}}",
            rep.calls,
            rep.mismatches.len(),
            rep.placement_agree,
            rep.placement_total,
            pages.map_or("null".to_string(), |n| n.to_string()),
            vmas,
            rep.ops_per_sec()
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("replay: {e}");
            ExitCode::FAILURE
        }
    }
}
