//! A parser for `strace -f -e trace=memory` output.
//!
//! Each line is, after an optional pid prefix (`12345 ` or `[pid 12345] `)
//! and an optional timestamp (`-t`, `-tt`, `-ttt`, `-r`), one of:
//! - a complete call: `mmap(NULL, 8192, PROT_READ, MAP_PRIVATE, 3, 0) = 0x7ffff7fc0000`;
//! - the first half of a call another thread interrupted:
//!   `mmap(NULL, 8192, ... <unfinished ...>`;
//! - its second half, on a later line of the same pid: `<... mmap resumed>) = 0x...`;
//! - an event: `+++ exited with 0 +++`, `--- SIGSEGV {...} ---`;
//! - anything else (`strace: Process 12 attached`, a blank line), counted in
//!   [`Trace::other_lines`].
//!
//! The six calls that change an address space (`mmap`, `munmap`,
//! `mprotect`, `mremap`, `brk`, `madvise`) become typed [`TraceCall`]s, in
//! the order of the lines on which they **complete** (a split call is joined
//! with its `<unfinished ...>` half and takes the resumed line's number).
//! Every other syscall is skipped and counted by name. A memory-call line
//! that does not parse is a [`ParseError`] with its line number; no input
//! makes the parser panic.

use super::flags::{
    FlagKind, MADV_NORMAL, errno_name, errno_number, format_advice, format_map_flags,
    format_mremap_flags, format_prot, parse_flags, parse_i64, parse_u64,
};
use crate::parse::{ParseError, ParseErrorKind};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// One memory syscall with its decoded arguments. Flags carry the Linux
/// numeric values (see the `PROT_*`, `MAP_*`, `MREMAP_*`, `MADV_*` consts).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Syscall {
    /// `mmap(addr, len, prot, flags, fd, offset)`.
    Mmap {
        /// The hint or fixed address (`NULL` is 0).
        addr: u64,
        /// Length in bytes, as passed (not rounded).
        len: u64,
        /// `PROT_*` bits.
        prot: u32,
        /// `MAP_*` bits, including the `MAP_TYPE` field.
        flags: u32,
        /// The file descriptor; -1 for anonymous maps.
        fd: i64,
        /// The file offset in bytes.
        offset: u64,
    },
    /// `munmap(addr, len)`.
    Munmap {
        /// Start address.
        addr: u64,
        /// Length in bytes.
        len: u64,
    },
    /// `mprotect(addr, len, prot)`.
    Mprotect {
        /// Start address.
        addr: u64,
        /// Length in bytes.
        len: u64,
        /// `PROT_*` bits.
        prot: u32,
    },
    /// `mremap(old_addr, old_len, new_len, flags[, new_addr])`.
    Mremap {
        /// Start of the old range.
        old_addr: u64,
        /// Length of the old range.
        old_len: u64,
        /// Requested new length.
        new_len: u64,
        /// `MREMAP_*` bits.
        flags: u32,
        /// The fifth argument; strace prints it only with `MREMAP_FIXED`.
        new_addr: Option<u64>,
    },
    /// `brk(addr)`; `brk(NULL)` queries the break.
    Brk {
        /// Requested break (`NULL` is 0).
        addr: u64,
    },
    /// `madvise(addr, len, advice)`.
    Madvise {
        /// Start address.
        addr: u64,
        /// Length in bytes.
        len: u64,
        /// The advice number (`MADV_*`).
        advice: u32,
    },
}

/// The names of the calls decoded into [`Syscall`].
pub const MEMORY_CALLS: [&str; 6] = ["mmap", "munmap", "mprotect", "mremap", "brk", "madvise"];

impl Syscall {
    /// The syscall's name as strace prints it (`"mmap"`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Syscall::Mmap { .. } => "mmap",
            Syscall::Munmap { .. } => "munmap",
            Syscall::Mprotect { .. } => "mprotect",
            Syscall::Mremap { .. } => "mremap",
            Syscall::Brk { .. } => "brk",
            Syscall::Madvise { .. } => "madvise",
        }
    }

    /// Whether this is the replay marker `madvise(NULL, 0, MADV_NORMAL)`, a
    /// no-op a traced program issues to mark the point where its maps were
    /// captured.
    pub fn is_marker(&self) -> bool {
        matches!(
            self,
            Syscall::Madvise {
                addr: 0,
                len: 0,
                advice: MADV_NORMAL
            }
        )
    }
}

/// Prints the call as strace would, e.g.
/// `mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)`.
impl fmt::Display for Syscall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Addr(u64);
        impl fmt::Display for Addr {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.0 {
                    0 => f.write_str("NULL"),
                    a => write!(f, "{a:#x}"),
                }
            }
        }
        match *self {
            Syscall::Mmap {
                addr,
                len,
                prot,
                flags,
                fd,
                offset,
            } => write!(
                f,
                "mmap({}, {len}, {}, {}, {fd}, {offset:#x})",
                Addr(addr),
                format_prot(prot),
                format_map_flags(flags)
            ),
            Syscall::Munmap { addr, len } => write!(f, "munmap({addr:#x}, {len})"),
            Syscall::Mprotect { addr, len, prot } => {
                write!(f, "mprotect({addr:#x}, {len}, {})", format_prot(prot))
            }
            Syscall::Mremap {
                old_addr,
                old_len,
                new_len,
                flags,
                new_addr,
            } => {
                let flags = format_mremap_flags(flags);
                write!(f, "mremap({old_addr:#x}, {old_len}, {new_len}, {flags}")?;
                match new_addr {
                    Some(a) => write!(f, ", {a:#x})"),
                    None => f.write_str(")"),
                }
            }
            Syscall::Brk { addr } => write!(f, "brk({})", Addr(addr)),
            Syscall::Madvise { addr, len, advice } => {
                let advice = format_advice(advice);
                write!(f, "madvise({}, {len}, {advice})", Addr(addr))
            }
        }
    }
}

/// What the kernel returned.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SysResult {
    /// Success with this return value (an address, 0, or the new break).
    Ok(u64),
    /// `= -1 ENOMEM (Cannot allocate memory)`: failure with this errno. Also
    /// `= ? ERESTARTSYS (...)` (a call interrupted to be restarted), with the
    /// kernel-internal errno (512..=516).
    Err {
        /// The Linux errno number (`ENOMEM` is 12).
        errno: i32,
        /// The errno name as printed (`"ENOMEM"`).
        name: String,
    },
    /// `= ?`: the call never returned (its thread was killed in it).
    Unknown,
}

impl SysResult {
    /// The return value of a successful call.
    pub fn ok(&self) -> Option<u64> {
        match *self {
            SysResult::Ok(v) => Some(v),
            _ => None,
        }
    }

    /// The errno of a failed call.
    pub fn errno(&self) -> Option<i32> {
        match *self {
            SysResult::Err { errno, .. } => Some(errno),
            _ => None,
        }
    }
}

/// Prints the result as strace would after `= ` (without the message).
impl fmt::Display for SysResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SysResult::Ok(0) => f.write_str("0"),
            SysResult::Ok(v) => write!(f, "{v:#x}"),
            SysResult::Err { errno, name } if name.is_empty() => write!(f, "-1 (errno {errno})"),
            SysResult::Err { name, .. } => write!(f, "-1 {name}"),
            SysResult::Unknown => f.write_str("?"),
        }
    }
}

/// One completed memory call.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TraceCall {
    /// The 1-based line on which the call completed (its order in the trace).
    pub line: usize,
    /// The 1-based line on which the call started; differs from `line` for a
    /// call split into `<unfinished ...>` and `<... resumed>`.
    pub start_line: usize,
    /// The thread id, if the line had a pid prefix.
    pub pid: Option<u32>,
    /// The timestamp of the starting line, as printed, if present.
    pub time: Option<String>,
    /// The call and its arguments.
    pub call: Syscall,
    /// What the kernel returned.
    pub result: SysResult,
}

impl TraceCall {
    /// Whether this is the replay marker `madvise(NULL, 0, MADV_NORMAL)`.
    pub fn is_marker(&self) -> bool {
        self.call.is_marker()
    }
}

/// Prints one strace line: `[pid ][time ]call = result`.
impl fmt::Display for TraceCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(pid) = self.pid {
            write!(f, "{pid} ")?;
        }
        if let Some(time) = &self.time {
            write!(f, "{time} ")?;
        }
        write!(f, "{} = {}", self.call, self.result)
    }
}

/// A memory call that started (`<unfinished ...>`) but never completed:
/// its thread exited first, or the trace ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unfinished {
    /// The 1-based line on which it started.
    pub line: usize,
    /// The thread id, if known.
    pub pid: Option<u32>,
    /// The call's name.
    pub name: String,
    /// The text of the call up to `<unfinished ...>`.
    pub text: String,
}

/// A parsed trace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trace {
    /// Memory calls in the order of the lines on which they completed.
    pub calls: Vec<TraceCall>,
    /// How many other syscalls were skipped (each call once, split or not).
    pub skipped: usize,
    /// The skipped syscalls by name. Watch for address-space changers this
    /// parser does not decode: `pkey_mprotect`, `shmat`, `shmdt`, `mmap2`,
    /// `remap_file_pages`, `mseal`, `process_madvise`, `execve`.
    pub skipped_by_name: BTreeMap<String, usize>,
    /// `--- SIG... ---` lines.
    pub signals: usize,
    /// `+++ exited with N +++` / `+++ killed by SIG... +++` lines.
    pub exits: usize,
    /// Lines that are neither a syscall nor an event (blank lines, `strace:`
    /// messages, `-k` backtraces).
    pub other_lines: usize,
    /// Memory calls that started but never completed.
    pub unfinished: Vec<Unfinished>,
    /// The number of lines read.
    pub lines: usize,
}

impl Trace {
    /// How many calls named `name` (`"mmap"`, ...) were parsed.
    pub fn count(&self, name: &str) -> usize {
        self.calls.iter().filter(|c| c.call.name() == name).count()
    }

    /// The index in [`Trace::calls`] of the first replay marker
    /// `madvise(NULL, 0, MADV_NORMAL)`, if any.
    pub fn marker(&self) -> Option<usize> {
        self.calls.iter().position(TraceCall::is_marker)
    }
}

/// The first half of a split call, waiting for its `<... resumed>` line.
#[derive(Debug)]
struct Pending {
    name: String,
    /// The call text up to (not including) ` <unfinished ...>`.
    head: String,
    line: usize,
    time: Option<String>,
}

/// An incremental strace parser: feed lines in order, then [`finish`].
///
/// [`finish`]: StraceParser::finish
#[derive(Debug, Default)]
pub struct StraceParser {
    trace: Trace,
    pending: HashMap<Option<u32>, Pending>,
}

const UNFINISHED: &str = "<unfinished ...>";

impl StraceParser {
    /// A parser that has seen no lines.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses one line (without its newline; a trailing `\r` is ignored).
    /// `line_no` is its 1-based number, used in records and errors. After an
    /// error the parser stays usable: the bad line is dropped.
    pub fn feed_line(&mut self, line_no: usize, line: &str) -> Result<(), ParseError> {
        self.trace.lines = self.trace.lines.max(line_no);
        let line = line.strip_suffix('\r').unwrap_or(line);
        let (pid, rest) = strip_pid(line);
        let (time, body) = strip_time(rest);
        if body.is_empty() {
            self.trace.other_lines += 1;
        } else if body.starts_with("+++") {
            self.trace.exits += 1;
            if let Some(p) = self.pending.remove(&pid) {
                self.abandon(pid, p);
            }
        } else if body.starts_with("---") {
            self.trace.signals += 1;
        } else if let Some(resumed) = body.strip_prefix("<... ") {
            return self.resume(line_no, pid, resumed);
        } else {
            return self.call(line_no, line_no, pid, time, body);
        }
        Ok(())
    }

    /// Ends the input: calls still pending become [`Trace::unfinished`].
    pub fn finish(mut self) -> Trace {
        let mut pending: Vec<_> = self.pending.drain().collect();
        pending.sort_by_key(|(_, p)| p.line);
        for (pid, p) in pending {
            self.abandon(pid, p);
        }
        self.trace
    }

    /// Records a pending call that will never complete.
    fn abandon(&mut self, pid: Option<u32>, p: Pending) {
        if is_memory(&p.name) {
            self.trace.unfinished.push(Unfinished {
                line: p.line,
                pid,
                name: p.name,
                text: p.head,
            });
        }
    }

    fn skip(&mut self, name: &str) {
        self.trace.skipped += 1;
        *self
            .trace
            .skipped_by_name
            .entry(name.to_string())
            .or_default() += 1;
    }

    /// `<... NAME resumed>REST`: joins REST to the pid's pending call.
    fn resume(&mut self, line_no: usize, pid: Option<u32>, text: &str) -> Result<(), ParseError> {
        let Some((name, rest)) = text.split_once("resumed>") else {
            self.trace.other_lines += 1;
            return Ok(());
        };
        let name = name.trim();
        let err = |kind| Err(ParseError::new(line_no, kind));
        match self.pending.remove(&pid) {
            Some(p) if p.name == name => {
                let joined = format!("{}{}", p.head, rest);
                self.call(line_no, p.line, pid, p.time, &joined)
            }
            Some(p) => {
                let memory = is_memory(name) || is_memory(&p.name);
                let kind = ParseErrorKind::ResumeMismatch {
                    resumed: name.to_string(),
                    pending: p.name.clone(),
                    pending_line: p.line,
                };
                self.abandon(pid, p);
                if memory {
                    return err(kind);
                }
                self.skip(name);
                Ok(())
            }
            None if is_memory(name) => err(ParseErrorKind::OrphanResume(name.to_string())),
            None => {
                self.skip(name);
                Ok(())
            }
        }
    }

    /// A call's text `NAME(ARGS) = RESULT`, or `NAME(ARGS <unfinished ...>`.
    fn call(
        &mut self,
        line_no: usize,
        start_line: usize,
        pid: Option<u32>,
        time: Option<String>,
        text: &str,
    ) -> Result<(), ParseError> {
        let name_len = text
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '?'))
            .unwrap_or(text.len());
        let (name, args) = text.split_at(name_len);
        if name.is_empty() || !args.starts_with('(') {
            self.trace.other_lines += 1;
            return Ok(());
        }
        // The first time this call is seen; a resumed call was counted then.
        let first_seen = start_line == line_no;
        if let Some(head) = text.trim_end().strip_suffix(UNFINISHED) {
            let p = Pending {
                name: name.to_string(),
                head: head.trim_end().to_string(),
                line: start_line,
                time,
            };
            if let Some(old) = self.pending.insert(pid, p) {
                self.abandon(pid, old);
            }
            if first_seen && !is_memory(name) {
                self.skip(name);
            }
            return Ok(());
        }
        let Some(memory) = MEMORY_CALLS.iter().find(|&&m| m == name) else {
            if first_seen {
                self.skip(name);
            }
            return Ok(());
        };
        let (call, result) =
            parse_call(memory, args).map_err(|kind| ParseError::new(line_no, kind))?;
        self.trace.calls.push(TraceCall {
            line: line_no,
            start_line,
            pid,
            time,
            call,
            result,
        });
        Ok(())
    }
}

fn is_memory(name: &str) -> bool {
    MEMORY_CALLS.contains(&name)
}

/// Splits off `12345 ` or `[pid 12345] `; returns the rest trimmed at the start.
fn strip_pid(line: &str) -> (Option<u32>, &str) {
    let t = line.trim_start();
    if let Some(r) = t.strip_prefix("[pid") {
        if let Some((n, rest)) = r.split_once(']')
            && let Ok(pid) = n.trim().parse::<u32>()
        {
            return (Some(pid), rest.trim_start());
        }
        return (None, t);
    }
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0
        && t[digits..].starts_with([' ', '\t'])
        && let Ok(pid) = t[..digits].parse::<u32>()
    {
        return (Some(pid), t[digits..].trim_start());
    }
    (None, t)
}

/// Splits off a timestamp (`10:23:45`, `10:23:45.123456`,
/// `1700000000.123456`, or `-r`'s `0.000123`).
fn strip_time(s: &str) -> (Option<String>, &str) {
    let end = s.find([' ', '\t']).unwrap_or(s.len());
    let tok = &s[..end];
    let is_time = tok.starts_with(|c: char| c.is_ascii_digit())
        && tok.contains([':', '.'])
        && tok
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b':' || b == b'.');
    if is_time && end < s.len() {
        (Some(tok.to_string()), s[end..].trim_start())
    } else {
        (None, s)
    }
}

/// Splits `(ARGS)REST` into the top-level arguments and REST. Brackets and
/// quoted strings inside the arguments are skipped over.
fn split_args(s: &str) -> Result<(Vec<&str>, &str), ParseErrorKind> {
    let bytes = s.as_bytes();
    debug_assert_eq!(bytes.first(), Some(&b'('));
    let mut stack: Vec<u8> = Vec::new();
    let mut args = Vec::new();
    let mut start = 1;
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                if i >= bytes.len() {
                    return Err(ParseErrorKind::Unbalanced);
                }
            }
            b'(' => stack.push(b')'),
            b'[' => stack.push(b']'),
            b'{' => stack.push(b'}'),
            c @ (b')' | b']' | b'}') => match stack.pop() {
                Some(want) if want == c => {}
                None if c == b')' => {
                    let last = s[start..i].trim();
                    if !(args.is_empty() && last.is_empty()) {
                        args.push(last);
                    }
                    return Ok((args, &s[i + 1..]));
                }
                _ => return Err(ParseErrorKind::Unbalanced),
            },
            b',' if stack.is_empty() => {
                args.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    Err(ParseErrorKind::Unbalanced)
}

/// Parses `(ARGS) = RESULT` of the memory call `name`.
fn parse_call(name: &'static str, text: &str) -> Result<(Syscall, SysResult), ParseErrorKind> {
    let (args, rest) = split_args(text)?;
    let result = rest
        .trim_start()
        .strip_prefix('=')
        .ok_or(ParseErrorKind::MissingResult)?;
    let result = parse_result(result.trim())?;
    let count = |expected: &'static str, ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(ParseErrorKind::ArgCount {
                call: name,
                expected,
                found: args.len(),
            })
        }
    };
    let n = args.len();
    let call = match name {
        "mmap" => {
            count("6", n == 6)?;
            Syscall::Mmap {
                addr: parse_u64(args[0])?,
                len: parse_u64(args[1])?,
                prot: parse_flags(args[2], FlagKind::Prot)?,
                flags: parse_flags(args[3], FlagKind::Map)?,
                fd: parse_i64(args[4])?,
                offset: parse_u64(args[5])?,
            }
        }
        "munmap" => {
            count("2", n == 2)?;
            Syscall::Munmap {
                addr: parse_u64(args[0])?,
                len: parse_u64(args[1])?,
            }
        }
        "mprotect" => {
            count("3", n == 3)?;
            Syscall::Mprotect {
                addr: parse_u64(args[0])?,
                len: parse_u64(args[1])?,
                prot: parse_flags(args[2], FlagKind::Prot)?,
            }
        }
        "mremap" => {
            count("4 or 5", n == 4 || n == 5)?;
            Syscall::Mremap {
                old_addr: parse_u64(args[0])?,
                old_len: parse_u64(args[1])?,
                new_len: parse_u64(args[2])?,
                flags: parse_flags(args[3], FlagKind::Mremap)?,
                new_addr: args.get(4).map(|a| parse_u64(a)).transpose()?,
            }
        }
        "brk" => {
            count("1", n == 1)?;
            Syscall::Brk {
                addr: parse_u64(args[0])?,
            }
        }
        _ => {
            debug_assert_eq!(name, "madvise");
            count("3", n == 3)?;
            Syscall::Madvise {
                addr: parse_u64(args[0])?,
                len: parse_u64(args[1])?,
                advice: parse_flags(args[2], FlagKind::Madv)?,
            }
        }
    };
    Ok((call, result))
}

/// Parses what follows `= `: `0x7f..`, `0`, `-1 ENOMEM (Cannot allocate
/// memory)`, `-1 (errno 12)`, `?`, `? ERESTARTSYS (...)`, each optionally
/// followed by a `-T` duration `<0.000012>`.
fn parse_result(s: &str) -> Result<SysResult, ParseErrorKind> {
    let bad = || ParseErrorKind::BadResult(s.to_string());
    let mut s = s;
    // `-T`: a trailing `<seconds>`.
    if let Some(open) = s.rfind('<') {
        let dur = &s[open..];
        if dur.len() > 2
            && dur.ends_with('>')
            && dur[1..dur.len() - 1]
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'.')
        {
            s = s[..open].trim_end();
        }
    }
    let (value, rest) = s.split_once([' ', '\t']).unwrap_or((s, ""));
    let rest = rest.trim_start();
    // The message after the errno (or after a decoded value) is free text in
    // parentheses.
    let message_only = |r: &str| r.is_empty() || (r.starts_with('(') && r.ends_with(')'));
    if value == "?" || value.starts_with('-') {
        if value != "?" {
            parse_i64(value).map_err(|_| bad())?;
        }
        if rest.is_empty() {
            return if value == "?" {
                Ok(SysResult::Unknown)
            } else {
                Err(bad())
            };
        }
        if let Some(n) = rest.strip_prefix("(errno ") {
            let n = n.strip_suffix(')').ok_or_else(bad)?;
            let errno: i32 = n.trim().parse().map_err(|_| bad())?;
            let name = errno_name(errno).unwrap_or_default().to_string();
            return Ok(SysResult::Err { errno, name });
        }
        let (name, msg) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
        if !message_only(msg.trim()) {
            return Err(bad());
        }
        let errno = errno_number(name).ok_or_else(bad)?;
        return Ok(SysResult::Err {
            errno,
            name: name.to_string(),
        });
    }
    if !message_only(rest) {
        return Err(bad());
    }
    parse_u64(value).map(SysResult::Ok).map_err(|_| bad())
}

/// Parses a whole trace; the first malformed memory-call line is an error.
pub fn parse_strace(text: &str) -> Result<Trace, ParseError> {
    let mut p = StraceParser::new();
    for (i, line) in text.lines().enumerate() {
        p.feed_line(i + 1, line)?;
    }
    Ok(p.finish())
}

/// Parses a whole trace, collecting malformed lines instead of stopping at
/// the first; the trace holds every call that did parse.
pub fn parse_strace_lenient(text: &str) -> (Trace, Vec<ParseError>) {
    let mut p = StraceParser::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if let Err(e) = p.feed_line(i + 1, line) {
            errors.push(e);
        }
    }
    (p.finish(), errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::flags::*;

    fn one(line: &str) -> TraceCall {
        let t = parse_strace(line).unwrap();
        assert_eq!(t.calls.len(), 1, "{t:?}");
        t.calls[0].clone()
    }

    #[test]
    fn mmap_anonymous() {
        let c = one(
            "mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7ffff7fc0000",
        );
        assert_eq!(
            c.call,
            Syscall::Mmap {
                addr: 0,
                len: 8192,
                prot: PROT_READ | PROT_WRITE,
                flags: MAP_PRIVATE | MAP_ANONYMOUS,
                fd: -1,
                offset: 0
            }
        );
        assert_eq!(c.result, SysResult::Ok(0x7fff_f7fc_0000));
        assert_eq!((c.line, c.start_line, c.pid), (1, 1, None));
    }

    #[test]
    fn error_result() {
        let c =
            one("mremap(0x7ffff6e33000, 32768, 163840, MREMAP_MAYMOVE) = -1 EFAULT (Bad address)");
        assert_eq!(c.result.errno(), Some(14));
        assert_eq!(
            c.result,
            SysResult::Err {
                errno: 14,
                name: "EFAULT".into()
            }
        );
    }

    #[test]
    fn split_args_nested() {
        let (a, rest) = split_args("({a, b}, \"x,)\", [1, 2]) = 0").unwrap();
        assert_eq!(a, vec!["{a, b}", "\"x,)\"", "[1, 2]"]);
        assert_eq!(rest, " = 0");
        assert_eq!(split_args("()").unwrap().0, Vec::<&str>::new());
        assert_eq!(split_args("(a, (b)"), Err(ParseErrorKind::Unbalanced));
        assert_eq!(split_args("(a])"), Err(ParseErrorKind::Unbalanced));
    }

    #[test]
    fn pid_and_time_prefixes() {
        assert_eq!(strip_pid("123 mmap("), (Some(123), "mmap("));
        assert_eq!(strip_pid("[pid  77] x"), (Some(77), "x"));
        assert_eq!(strip_pid("mmap("), (None, "mmap("));
        assert_eq!(strip_pid("99999999999 x"), (None, "99999999999 x"));
        assert_eq!(
            strip_time("10:01:02.123 brk(NULL)"),
            (Some("10:01:02.123".into()), "brk(NULL)")
        );
        assert_eq!(strip_time("brk(NULL)"), (None, "brk(NULL)"));
    }
}
