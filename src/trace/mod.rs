//! Real programs' memory traces: a parser for `strace -f -e trace=memory`
//! output ([`parse_strace`]) and a parser and printer for `/proc/pid/maps`
//! ([`parse_maps`], [`MapsEntry`]).
//!
//! Flags are decoded to their Linux numeric values, exported here as
//! `PROT_*`, `MAP_*`, `MREMAP_*` and `MADV_*` consts, so that the address
//! space model can convert them into its own flag types. See
//! [DESIGN §6](crate::docs::design#6-trace-parsing) for the formats accepted and what a replay must know about them.

mod flags;
pub mod replay;
mod strace;

pub use crate::mm::procmaps::{MapsEntry, format_maps, parse_maps};
pub use crate::parse::{ParseError, ParseErrorKind};
pub use flags::*;
pub use strace::{
    MEMORY_CALLS, StraceParser, SysResult, Syscall, Trace, TraceCall, Unfinished, parse_strace,
    parse_strace_lenient,
};
