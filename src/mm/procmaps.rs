//! A parser and printer for `/proc/pid/maps` (re-exported by `crate::trace`; it lives
//! here so that `mm` does not depend on `trace`).
//!
//! The kernel prints each VMA (`fs/proc/task_mmu.c`, `show_vma_header_prefix`
//! and `show_map_vma`) as
//! `%08lx-%08lx %c%c%c%c %08llx %02x:%02x %lu ` and then, if the VMA has a
//! name, pads with spaces to column 72, adds one more space and the name. A
//! name therefore starts at column 73, or (when the header is already wider
//! than 72 columns) two spaces after the inode. A VMA without a name keeps
//! the trailing space after the inode. [`MapsEntry::format_line`] reproduces this byte for
//! byte; [`MapsEntry::format_compact`] prints the single-space form some tools
//! (and the sanitised `*.initial` files) use. The parser accepts both.

use crate::parse::{ParseError, ParseErrorKind};

// Linux `PROT_*` values (the same bits as `mm::Prot`).
const PROT_READ: u32 = 0x1;
const PROT_WRITE: u32 = 0x2;
const PROT_EXEC: u32 = 0x4;
use std::fmt;
use std::str::FromStr;

/// The column (0-based) the kernel pads the header to before the name's
/// leading space: `25 + sizeof(void *) * 6 - 1` on a 64-bit kernel.
const NAME_PAD: usize = 25 + 8 * 6 - 1;

/// The suffix `d_path` appends to the name of an unlinked file.
const DELETED: &str = " (deleted)";

/// One line of `/proc/pid/maps`: one VMA.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MapsEntry {
    /// First address of the VMA.
    pub start: u64,
    /// One past the last address of the VMA (`start < end`).
    pub end: u64,
    /// `r`: readable.
    pub read: bool,
    /// `w`: writable.
    pub write: bool,
    /// `x`: executable.
    pub exec: bool,
    /// `s` (may be shared) rather than `p` (private).
    pub shared: bool,
    /// File offset in bytes (the page offset times the page size).
    pub offset: u64,
    /// Device `(major, minor)` of the backing file; `(0, 0)` when anonymous.
    pub dev: (u32, u32),
    /// Inode of the backing file; 0 when anonymous.
    pub inode: u64,
    /// The name: a file path (without the ` (deleted)` suffix), or a pseudo
    /// name such as `[heap]`, `[stack]`, `[vdso]`, `[vvar]`, `[vsyscall]`.
    /// `None` for an unnamed (anonymous) VMA.
    pub path: Option<String>,
    /// The path ended with ` (deleted)`: the file was unlinked.
    pub deleted: bool,
}

impl MapsEntry {
    /// The protection as `PROT_*` bits (`PROT_READ | PROT_WRITE`, ...).
    pub fn prot(&self) -> u32 {
        let bit = |on: bool, b: u32| if on { b } else { 0 };
        bit(self.read, PROT_READ) | bit(self.write, PROT_WRITE) | bit(self.exec, PROT_EXEC)
    }

    /// The size in bytes (0 for a hand-built entry with `end < start`: the
    /// fields are public, so this must not underflow).
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether the entry covers no bytes (never true of a parsed entry).
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// The fields up to and including the space after the inode.
    fn header(&self) -> String {
        let flag = |on: bool, c: char| if on { c } else { '-' };
        format!(
            "{:08x}-{:08x} {}{}{}{} {:08x} {:02x}:{:02x} {} ",
            self.start,
            self.end,
            flag(self.read, 'r'),
            flag(self.write, 'w'),
            flag(self.exec, 'x'),
            if self.shared { 's' } else { 'p' },
            self.offset,
            self.dev.0,
            self.dev.1,
            self.inode
        )
    }

    fn push_name(&self, out: &mut String) {
        if let Some(path) = &self.path {
            out.push_str(path);
            if self.deleted {
                out.push_str(DELETED);
            }
        }
    }

    /// The line exactly as the kernel prints it (without the newline).
    pub fn format_line(&self) -> String {
        let mut out = self.header();
        if self.path.is_some() {
            while out.len() < NAME_PAD {
                out.push(' ');
            }
            out.push(' ');
            self.push_name(&mut out);
        }
        out
    }

    /// The single-space form `start-end perms offset dev inode name`, with no
    /// padding and no trailing space (the form of the `*.initial` files).
    pub fn format_compact(&self) -> String {
        let mut out = self.header();
        if self.path.is_some() {
            self.push_name(&mut out);
        } else {
            out.pop();
        }
        out
    }
}

/// Prints [`MapsEntry::format_line`], the kernel's format.
impl fmt::Display for MapsEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.format_line())
    }
}

/// Takes the next space-delimited field, skipping leading spaces.
fn field<'a>(rest: &mut &'a str, name: &'static str) -> Result<&'a str, ParseErrorKind> {
    let s = rest.trim_start_matches(' ');
    let end = s.find(' ').unwrap_or(s.len());
    if end == 0 {
        return Err(ParseErrorKind::MissingField(name));
    }
    *rest = &s[end..];
    Ok(&s[..end])
}

fn hex(text: &str, field: &'static str) -> Result<u64, ParseErrorKind> {
    // `from_str_radix` would also accept a leading `+`.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(field, text));
    }
    u64::from_str_radix(text, 16).map_err(|_| bad(field, text))
}

fn hex32(text: &str, field: &'static str) -> Result<u32, ParseErrorKind> {
    u32::try_from(hex(text, field)?).map_err(|_| bad(field, text))
}

fn bad(field: &'static str, text: &str) -> ParseErrorKind {
    ParseErrorKind::BadField {
        field,
        text: text.to_string(),
    }
}

/// Parses one maps line (without its newline).
impl FromStr for MapsEntry {
    type Err = ParseErrorKind;

    fn from_str(line: &str) -> Result<Self, Self::Err> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let mut rest = line;
        let range = field(&mut rest, "range")?;
        let (start, end) = range.split_once('-').ok_or_else(|| bad("range", range))?;
        let (start, end) = (hex(start, "range")?, hex(end, "range")?);
        if start >= end {
            return Err(bad("range", range));
        }
        let perms = field(&mut rest, "perms")?;
        let p = perms.as_bytes();
        let ok = p.len() == 4
            && matches!(p[0], b'r' | b'-')
            && matches!(p[1], b'w' | b'-')
            && matches!(p[2], b'x' | b'-')
            && matches!(p[3], b's' | b'p');
        if !ok {
            return Err(bad("perms", perms));
        }
        let offset = hex(field(&mut rest, "offset")?, "offset")?;
        let dev = field(&mut rest, "dev")?;
        let (major, minor) = dev.split_once(':').ok_or_else(|| bad("dev", dev))?;
        let dev = (hex32(major, "dev")?, hex32(minor, "dev")?);
        let inode = field(&mut rest, "inode")?;
        if !inode.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("inode", inode));
        }
        let inode = inode.parse().map_err(|_| bad("inode", inode))?;
        let name = rest.trim_start_matches(' ');
        let (path, deleted) = match name.strip_suffix(DELETED) {
            _ if name.is_empty() => (None, false),
            Some(p) if !p.is_empty() => (Some(p.to_string()), true),
            _ => (Some(name.to_string()), false),
        };
        Ok(MapsEntry {
            start,
            end,
            read: p[0] == b'r',
            write: p[1] == b'w',
            exec: p[2] == b'x',
            shared: p[3] == b's',
            offset,
            dev,
            inode,
            path,
            deleted,
        })
    }
}

/// Parses a whole maps file; blank lines are skipped, any other bad line is
/// an error with its 1-based line number.
pub fn parse_maps(text: &str) -> Result<Vec<MapsEntry>, ParseError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| l.parse().map_err(|kind| ParseError::new(i + 1, kind)))
        .collect()
}

/// Prints entries in the kernel's format, one line each, each ending in `\n`.
pub fn format_maps(entries: &[MapsEntry]) -> String {
    let mut out = String::new();
    for e in entries {
        out.push_str(&e.format_line());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_columns() {
        let named = "555555554000-555555555000 r--p 00000000 fe:00 18504                      /opt/python3.11/bin/python3.11";
        let e: MapsEntry = named.parse().unwrap();
        assert_eq!(e.format_line(), named);
        assert_eq!(e.prot(), PROT_READ);
        let anon = "7fffd7000000-7fffd7200000 r-xp 00000000 00:00 0 ";
        let e: MapsEntry = anon.parse().unwrap();
        assert_eq!(e.path, None);
        assert_eq!(e.format_line(), anon);
        assert_eq!(e.format_compact(), anon.trim_end());
        let vsys =
            "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]";
        let e: MapsEntry = vsys.parse().unwrap();
        assert_eq!(e.format_line(), vsys);
    }

    #[test]
    fn wide_header_gets_two_spaces() {
        let e = MapsEntry {
            start: 0xffff_ffff_ff60_0000,
            end: 0xffff_ffff_ff60_1000,
            read: true,
            write: false,
            exec: false,
            shared: true,
            offset: 0x1234_5678_9abc,
            dev: (0x103, 0x2),
            inode: 123_456_789_012,
            path: Some("/a b".into()),
            deleted: true,
        };
        let line = e.format_line();
        assert!(
            line.ends_with(" 103:02 123456789012  /a b (deleted)"),
            "{line}"
        );
        assert_eq!(line.parse::<MapsEntry>().unwrap(), e);
    }

    #[test]
    fn bad_fields() {
        let err = |l: &str| l.parse::<MapsEntry>().unwrap_err();
        assert_eq!(err(""), ParseErrorKind::MissingField("range"));
        assert!(matches!(
            err("1000-1000 r--p 0 00:00 0"),
            ParseErrorKind::BadField { field: "range", .. }
        ));
        assert!(matches!(
            err("1000-2000 rw-q 0 00:00 0"),
            ParseErrorKind::BadField { field: "perms", .. }
        ));
        assert!(matches!(
            err("1000-2000 rw-p 0 0000 0"),
            ParseErrorKind::BadField { field: "dev", .. }
        ));
        assert!(matches!(
            err("1000-2000 rw-p 0 00:00 x"),
            ParseErrorKind::BadField { field: "inode", .. }
        ));
        assert_eq!(
            err("1000-2000 rw-p 0 00:00"),
            ParseErrorKind::MissingField("inode")
        );
    }
}
