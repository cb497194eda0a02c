//! Linux x86-64 numeric values of the flags and errno names that appear in
//! `strace -e trace=memory` output, with name tables for parsing and printing.
//!
//! The values are the kernel's UAPI values (`asm-generic/mman-common.h`,
//! `linux/mman.h`, `asm/mman.h` for x86, `asm-generic/errno*.h`), spelled out
//! here so that the trace is decoded the same way on any host.

use crate::parse::ParseErrorKind;

/// `PROT_NONE`: no access.
pub const PROT_NONE: u32 = 0;
/// `PROT_READ`.
pub const PROT_READ: u32 = 0x1;
/// `PROT_WRITE`.
pub const PROT_WRITE: u32 = 0x2;
/// `PROT_EXEC`.
pub const PROT_EXEC: u32 = 0x4;
/// `PROT_SEM`.
pub const PROT_SEM: u32 = 0x8;
/// `PROT_GROWSDOWN`: mprotect extends down to the start of a growsdown VMA.
pub const PROT_GROWSDOWN: u32 = 0x0100_0000;
/// `PROT_GROWSUP`.
pub const PROT_GROWSUP: u32 = 0x0200_0000;

/// `MAP_SHARED`.
pub const MAP_SHARED: u32 = 0x01;
/// `MAP_PRIVATE`.
pub const MAP_PRIVATE: u32 = 0x02;
/// `MAP_SHARED_VALIDATE`: `MAP_SHARED` that rejects unknown flags.
pub const MAP_SHARED_VALIDATE: u32 = 0x03;
/// `MAP_DROPPABLE`.
pub const MAP_DROPPABLE: u32 = 0x08;
/// `MAP_TYPE`: the mask of the mapping type (shared / private / ...).
pub const MAP_TYPE: u32 = 0x0f;
/// `MAP_FIXED`.
pub const MAP_FIXED: u32 = 0x10;
/// `MAP_ANONYMOUS`.
pub const MAP_ANONYMOUS: u32 = 0x20;
/// `MAP_32BIT` (x86-64).
pub const MAP_32BIT: u32 = 0x40;
/// `MAP_ABOVE4G` (x86-64).
pub const MAP_ABOVE4G: u32 = 0x80;
/// `MAP_GROWSDOWN`.
pub const MAP_GROWSDOWN: u32 = 0x100;
/// `MAP_DENYWRITE` (ignored by the kernel).
pub const MAP_DENYWRITE: u32 = 0x800;
/// `MAP_EXECUTABLE` (ignored by the kernel).
pub const MAP_EXECUTABLE: u32 = 0x1000;
/// `MAP_LOCKED`.
pub const MAP_LOCKED: u32 = 0x2000;
/// `MAP_NORESERVE`.
pub const MAP_NORESERVE: u32 = 0x4000;
/// `MAP_POPULATE`.
pub const MAP_POPULATE: u32 = 0x8000;
/// `MAP_NONBLOCK`.
pub const MAP_NONBLOCK: u32 = 0x1_0000;
/// `MAP_STACK`.
pub const MAP_STACK: u32 = 0x2_0000;
/// `MAP_HUGETLB`.
pub const MAP_HUGETLB: u32 = 0x4_0000;
/// `MAP_SYNC`.
pub const MAP_SYNC: u32 = 0x8_0000;
/// `MAP_FIXED_NOREPLACE`.
pub const MAP_FIXED_NOREPLACE: u32 = 0x10_0000;
/// `MAP_UNINITIALIZED`.
pub const MAP_UNINITIALIZED: u32 = 0x400_0000;
/// `MAP_HUGE_SHIFT`: hugetlb page size is `log2(size) << MAP_HUGE_SHIFT`;
/// strace prints it as `21<<MAP_HUGE_SHIFT`.
pub const MAP_HUGE_SHIFT: u32 = 26;
/// `MAP_HUGE_MASK`: the width mask of the hugetlb size field.
pub const MAP_HUGE_MASK: u32 = 0x3f;

/// `MREMAP_MAYMOVE`.
pub const MREMAP_MAYMOVE: u32 = 1;
/// `MREMAP_FIXED`: a fifth argument gives the new address.
pub const MREMAP_FIXED: u32 = 2;
/// `MREMAP_DONTUNMAP`.
pub const MREMAP_DONTUNMAP: u32 = 4;

/// `MADV_NORMAL` (also the advice of the replay marker `madvise(NULL, 0, MADV_NORMAL)`).
pub const MADV_NORMAL: u32 = 0;
/// `MADV_RANDOM`.
pub const MADV_RANDOM: u32 = 1;
/// `MADV_SEQUENTIAL`.
pub const MADV_SEQUENTIAL: u32 = 2;
/// `MADV_WILLNEED`.
pub const MADV_WILLNEED: u32 = 3;
/// `MADV_DONTNEED`: zap the pages (anonymous memory reads back as zeros).
pub const MADV_DONTNEED: u32 = 4;
/// `MADV_FREE`.
pub const MADV_FREE: u32 = 8;
/// `MADV_REMOVE`.
pub const MADV_REMOVE: u32 = 9;
/// `MADV_DONTFORK`.
pub const MADV_DONTFORK: u32 = 10;
/// `MADV_DOFORK`.
pub const MADV_DOFORK: u32 = 11;
/// `MADV_MERGEABLE`.
pub const MADV_MERGEABLE: u32 = 12;
/// `MADV_UNMERGEABLE`.
pub const MADV_UNMERGEABLE: u32 = 13;
/// `MADV_HUGEPAGE`.
pub const MADV_HUGEPAGE: u32 = 14;
/// `MADV_NOHUGEPAGE`.
pub const MADV_NOHUGEPAGE: u32 = 15;
/// `MADV_DONTDUMP`.
pub const MADV_DONTDUMP: u32 = 16;
/// `MADV_DODUMP`.
pub const MADV_DODUMP: u32 = 17;
/// `MADV_WIPEONFORK`.
pub const MADV_WIPEONFORK: u32 = 18;
/// `MADV_KEEPONFORK`.
pub const MADV_KEEPONFORK: u32 = 19;
/// `MADV_COLD`.
pub const MADV_COLD: u32 = 20;
/// `MADV_PAGEOUT`.
pub const MADV_PAGEOUT: u32 = 21;
/// `MADV_POPULATE_READ`.
pub const MADV_POPULATE_READ: u32 = 22;
/// `MADV_POPULATE_WRITE`.
pub const MADV_POPULATE_WRITE: u32 = 23;
/// `MADV_DONTNEED_LOCKED`.
pub const MADV_DONTNEED_LOCKED: u32 = 24;
/// `MADV_COLLAPSE`.
pub const MADV_COLLAPSE: u32 = 25;
/// `MADV_HWPOISON`.
pub const MADV_HWPOISON: u32 = 100;
/// `MADV_SOFT_OFFLINE`.
pub const MADV_SOFT_OFFLINE: u32 = 101;
/// `MADV_GUARD_INSTALL`.
pub const MADV_GUARD_INSTALL: u32 = 102;
/// `MADV_GUARD_REMOVE`.
pub const MADV_GUARD_REMOVE: u32 = 103;

/// Bit names of `prot`, in strace's printing order.
pub(crate) const PROT_NAMES: &[(&str, u32)] = &[
    ("PROT_READ", PROT_READ),
    ("PROT_WRITE", PROT_WRITE),
    ("PROT_EXEC", PROT_EXEC),
    ("PROT_SEM", PROT_SEM),
    ("PROT_GROWSDOWN", PROT_GROWSDOWN),
    ("PROT_GROWSUP", PROT_GROWSUP),
    ("PROT_NONE", PROT_NONE),
];

/// Mapping types (the `MAP_TYPE` field), printed first by strace.
const MAP_TYPE_NAMES: &[(&str, u32)] = &[
    ("MAP_SHARED_VALIDATE", MAP_SHARED_VALIDATE),
    ("MAP_SHARED", MAP_SHARED),
    ("MAP_PRIVATE", MAP_PRIVATE),
    ("MAP_DROPPABLE", MAP_DROPPABLE),
];

/// Bit names of the mmap `flags` outside `MAP_TYPE`.
const MAP_BIT_NAMES: &[(&str, u32)] = &[
    ("MAP_FIXED", MAP_FIXED),
    ("MAP_ANONYMOUS", MAP_ANONYMOUS),
    ("MAP_32BIT", MAP_32BIT),
    ("MAP_ABOVE4G", MAP_ABOVE4G),
    ("MAP_GROWSDOWN", MAP_GROWSDOWN),
    ("MAP_DENYWRITE", MAP_DENYWRITE),
    ("MAP_EXECUTABLE", MAP_EXECUTABLE),
    ("MAP_LOCKED", MAP_LOCKED),
    ("MAP_NORESERVE", MAP_NORESERVE),
    ("MAP_POPULATE", MAP_POPULATE),
    ("MAP_NONBLOCK", MAP_NONBLOCK),
    ("MAP_STACK", MAP_STACK),
    ("MAP_HUGETLB", MAP_HUGETLB),
    ("MAP_SYNC", MAP_SYNC),
    ("MAP_FIXED_NOREPLACE", MAP_FIXED_NOREPLACE),
    ("MAP_UNINITIALIZED", MAP_UNINITIALIZED),
];

/// Names accepted in mmap flags besides the type and bit names.
const MAP_ALIAS_NAMES: &[(&str, u32)] = &[
    ("MAP_ANON", MAP_ANONYMOUS),
    ("MAP_FILE", 0),
    ("MAP_HUGE_2MB", 21 << MAP_HUGE_SHIFT),
    ("MAP_HUGE_1GB", 30 << MAP_HUGE_SHIFT),
];

const MREMAP_NAMES: &[(&str, u32)] = &[
    ("MREMAP_MAYMOVE", MREMAP_MAYMOVE),
    ("MREMAP_FIXED", MREMAP_FIXED),
    ("MREMAP_DONTUNMAP", MREMAP_DONTUNMAP),
];

const MADV_NAMES: &[(&str, u32)] = &[
    ("MADV_NORMAL", MADV_NORMAL),
    ("MADV_RANDOM", MADV_RANDOM),
    ("MADV_SEQUENTIAL", MADV_SEQUENTIAL),
    ("MADV_WILLNEED", MADV_WILLNEED),
    ("MADV_DONTNEED", MADV_DONTNEED),
    ("MADV_FREE", MADV_FREE),
    ("MADV_REMOVE", MADV_REMOVE),
    ("MADV_DONTFORK", MADV_DONTFORK),
    ("MADV_DOFORK", MADV_DOFORK),
    ("MADV_MERGEABLE", MADV_MERGEABLE),
    ("MADV_UNMERGEABLE", MADV_UNMERGEABLE),
    ("MADV_HUGEPAGE", MADV_HUGEPAGE),
    ("MADV_NOHUGEPAGE", MADV_NOHUGEPAGE),
    ("MADV_DONTDUMP", MADV_DONTDUMP),
    ("MADV_DODUMP", MADV_DODUMP),
    ("MADV_WIPEONFORK", MADV_WIPEONFORK),
    ("MADV_KEEPONFORK", MADV_KEEPONFORK),
    ("MADV_COLD", MADV_COLD),
    ("MADV_PAGEOUT", MADV_PAGEOUT),
    ("MADV_POPULATE_READ", MADV_POPULATE_READ),
    ("MADV_POPULATE_WRITE", MADV_POPULATE_WRITE),
    ("MADV_DONTNEED_LOCKED", MADV_DONTNEED_LOCKED),
    ("MADV_COLLAPSE", MADV_COLLAPSE),
    ("MADV_HWPOISON", MADV_HWPOISON),
    ("MADV_SOFT_OFFLINE", MADV_SOFT_OFFLINE),
    ("MADV_GUARD_INSTALL", MADV_GUARD_INSTALL),
    ("MADV_GUARD_REMOVE", MADV_GUARD_REMOVE),
];

/// Linux errno names and numbers (x86-64; the generic table), including the
/// kernel-internal restart codes strace shows after `= ?`.
const ERRNO_NAMES: &[(&str, i32)] = &[
    ("EPERM", 1),
    ("ENOENT", 2),
    ("ESRCH", 3),
    ("EINTR", 4),
    ("EIO", 5),
    ("ENXIO", 6),
    ("E2BIG", 7),
    ("ENOEXEC", 8),
    ("EBADF", 9),
    ("ECHILD", 10),
    ("EAGAIN", 11),
    ("ENOMEM", 12),
    ("EACCES", 13),
    ("EFAULT", 14),
    ("ENOTBLK", 15),
    ("EBUSY", 16),
    ("EEXIST", 17),
    ("EXDEV", 18),
    ("ENODEV", 19),
    ("ENOTDIR", 20),
    ("EISDIR", 21),
    ("EINVAL", 22),
    ("ENFILE", 23),
    ("EMFILE", 24),
    ("ENOTTY", 25),
    ("ETXTBSY", 26),
    ("EFBIG", 27),
    ("ENOSPC", 28),
    ("ESPIPE", 29),
    ("EROFS", 30),
    ("EMLINK", 31),
    ("EPIPE", 32),
    ("EDOM", 33),
    ("ERANGE", 34),
    ("EDEADLK", 35),
    ("ENAMETOOLONG", 36),
    ("ENOLCK", 37),
    ("ENOSYS", 38),
    ("ENOTEMPTY", 39),
    ("ELOOP", 40),
    ("ENOMSG", 42),
    ("EIDRM", 43),
    ("ECHRNG", 44),
    ("EL2NSYNC", 45),
    ("EL3HLT", 46),
    ("EL3RST", 47),
    ("ELNRNG", 48),
    ("EUNATCH", 49),
    ("ENOCSI", 50),
    ("EL2HLT", 51),
    ("EBADE", 52),
    ("EBADR", 53),
    ("EXFULL", 54),
    ("ENOANO", 55),
    ("EBADRQC", 56),
    ("EBADSLT", 57),
    ("EBFONT", 59),
    ("ENOSTR", 60),
    ("ENODATA", 61),
    ("ETIME", 62),
    ("ENOSR", 63),
    ("ENONET", 64),
    ("ENOPKG", 65),
    ("EREMOTE", 66),
    ("ENOLINK", 67),
    ("EADV", 68),
    ("ESRMNT", 69),
    ("ECOMM", 70),
    ("EPROTO", 71),
    ("EMULTIHOP", 72),
    ("EDOTDOT", 73),
    ("EBADMSG", 74),
    ("EOVERFLOW", 75),
    ("ENOTUNIQ", 76),
    ("EBADFD", 77),
    ("EREMCHG", 78),
    ("ELIBACC", 79),
    ("ELIBBAD", 80),
    ("ELIBSCN", 81),
    ("ELIBMAX", 82),
    ("ELIBEXEC", 83),
    ("EILSEQ", 84),
    ("ERESTART", 85),
    ("ESTRPIPE", 86),
    ("EUSERS", 87),
    ("ENOTSOCK", 88),
    ("EDESTADDRREQ", 89),
    ("EMSGSIZE", 90),
    ("EPROTOTYPE", 91),
    ("ENOPROTOOPT", 92),
    ("EPROTONOSUPPORT", 93),
    ("ESOCKTNOSUPPORT", 94),
    ("EOPNOTSUPP", 95),
    ("EPFNOSUPPORT", 96),
    ("EAFNOSUPPORT", 97),
    ("EADDRINUSE", 98),
    ("EADDRNOTAVAIL", 99),
    ("ENETDOWN", 100),
    ("ENETUNREACH", 101),
    ("ENETRESET", 102),
    ("ECONNABORTED", 103),
    ("ECONNRESET", 104),
    ("ENOBUFS", 105),
    ("EISCONN", 106),
    ("ENOTCONN", 107),
    ("ESHUTDOWN", 108),
    ("ETOOMANYREFS", 109),
    ("ETIMEDOUT", 110),
    ("ECONNREFUSED", 111),
    ("EHOSTDOWN", 112),
    ("EHOSTUNREACH", 113),
    ("EALREADY", 114),
    ("EINPROGRESS", 115),
    ("ESTALE", 116),
    ("EUCLEAN", 117),
    ("ENOTNAM", 118),
    ("ENAVAIL", 119),
    ("EISNAM", 120),
    ("EREMOTEIO", 121),
    ("EDQUOT", 122),
    ("ENOMEDIUM", 123),
    ("EMEDIUMTYPE", 124),
    ("ECANCELED", 125),
    ("ENOKEY", 126),
    ("EKEYEXPIRED", 127),
    ("EKEYREVOKED", 128),
    ("EKEYREJECTED", 129),
    ("EOWNERDEAD", 130),
    ("ENOTRECOVERABLE", 131),
    ("ERFKILL", 132),
    ("EHWPOISON", 133),
    // Aliases: accepted when parsing, never printed (the first name wins).
    ("EWOULDBLOCK", 11),
    ("EDEADLOCK", 35),
    ("ENOTSUP", 95),
    // Kernel-internal codes that strace shows after `= ?`.
    ("ERESTARTSYS", 512),
    ("ERESTARTNOINTR", 513),
    ("ERESTARTNOHAND", 514),
    ("ENOIOCTLCMD", 515),
    ("ERESTART_RESTARTBLOCK", 516),
];

/// The Linux errno number of an errno name (`"ENOMEM"` → 12). strace's
/// `ERRNO_<n>` spelling for unnamed codes gives `n`.
pub fn errno_number(name: &str) -> Option<i32> {
    if let Some(n) = name.strip_prefix("ERRNO_") {
        return n.parse().ok();
    }
    ERRNO_NAMES
        .iter()
        .find(|&&(n, _)| n == name)
        .map(|&(_, v)| v)
}

/// The errno name of a Linux errno number (12 → `"ENOMEM"`).
pub fn errno_name(errno: i32) -> Option<&'static str> {
    ERRNO_NAMES
        .iter()
        .find(|&&(_, v)| v == errno)
        .map(|&(n, _)| n)
}

/// Which flag vocabulary a `|`-joined list is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FlagKind {
    Prot,
    Map,
    Mremap,
    Madv,
}

impl FlagKind {
    fn lookup(self, name: &str) -> Option<u32> {
        let tables: &[&[(&str, u32)]] = match self {
            FlagKind::Prot => &[PROT_NAMES],
            FlagKind::Map => &[MAP_TYPE_NAMES, MAP_BIT_NAMES, MAP_ALIAS_NAMES],
            FlagKind::Mremap => &[MREMAP_NAMES],
            FlagKind::Madv => &[MADV_NAMES],
        };
        tables
            .iter()
            .flat_map(|t| t.iter())
            .find(|&&(n, _)| n == name)
            .map(|&(_, v)| v)
    }
}

/// Removes `/* ... */` comments (strace annotates unknown bits with
/// `/* PROT_??? */`). An unterminated comment is removed to the end.
fn strip_comments(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains("/*") {
        return s.into();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        rest = match rest[i + 2..].find("*/") {
            Some(j) => &rest[i + 2 + j + 2..],
            None => "",
        };
    }
    out.push_str(rest);
    out.into()
}

/// Parses an unsigned number as strace prints it: `NULL`, `0x...` hex, or
/// decimal.
pub(crate) fn parse_u64(tok: &str) -> Result<u64, ParseErrorKind> {
    let bad = || ParseErrorKind::BadNumber(tok.to_string());
    if tok == "NULL" {
        return Ok(0);
    }
    let (digits, radix) = match tok.strip_prefix("0x").or_else(|| tok.strip_prefix("0X")) {
        Some(h) => (h, 16),
        None => (tok, 10),
    };
    // `from_str_radix` accepts a leading `+`; strace never prints one.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    u64::from_str_radix(digits, radix).map_err(|_| bad())
}

/// Parses a signed decimal (or hex) number, e.g. an fd of `-1`. A `-y`
/// decoration such as `3</usr/lib/libc.so.6>` is accepted and dropped.
pub(crate) fn parse_i64(tok: &str) -> Result<i64, ParseErrorKind> {
    let bad = || ParseErrorKind::BadNumber(tok.to_string());
    let num = match tok.find('<') {
        Some(i) if tok.ends_with('>') => &tok[..i],
        _ => tok,
    };
    match num.strip_prefix('-') {
        Some(abs) => {
            let v = parse_u64(abs).map_err(|_| bad())?;
            0i64.checked_sub_unsigned(v).ok_or_else(bad)
        }
        None => i64::try_from(parse_u64(num).map_err(|_| bad())?).map_err(|_| bad()),
    }
}

/// Parses a `|`-joined flag list of the given vocabulary into its numeric
/// value. Tokens are names, numbers (`0x40000`), or `N<<MAP_HUGE_SHIFT`.
pub(crate) fn parse_flags(s: &str, kind: FlagKind) -> Result<u32, ParseErrorKind> {
    let s = strip_comments(s);
    let mut value = 0u32;
    for tok in s.split('|') {
        let tok = tok.trim();
        let v = if let Some(v) = kind.lookup(tok) {
            v
        } else if let Some((n, shift)) = tok.split_once("<<") {
            let shift = match shift.trim() {
                "MAP_HUGE_SHIFT" if kind == FlagKind::Map => MAP_HUGE_SHIFT,
                other => return Err(ParseErrorKind::UnknownFlag(other.to_string())),
            };
            let n = parse_u64(n.trim())?;
            u32::try_from(n)
                .ok()
                .filter(|&n| n <= MAP_HUGE_MASK)
                .map(|n| n << shift)
                .ok_or_else(|| ParseErrorKind::BadNumber(tok.to_string()))?
        } else if tok.starts_with(|c: char| c.is_ascii_digit()) {
            u32::try_from(parse_u64(tok)?)
                .map_err(|_| ParseErrorKind::BadNumber(tok.to_string()))?
        } else {
            return Err(ParseErrorKind::UnknownFlag(tok.to_string()));
        };
        value |= v;
    }
    Ok(value)
}

/// Appends the names of the bits of `value` found in `names` (single-bit
/// entries only), then any leftover bits in hex, all joined by `|`.
fn push_bits(out: &mut Vec<String>, mut value: u32, names: &[(&str, u32)]) {
    for &(name, bit) in names {
        if bit != 0 && value & bit == bit {
            out.push(name.to_string());
            value &= !bit;
        }
    }
    if value != 0 {
        out.push(format!("{value:#x}"));
    }
}

/// Formats `prot` as strace does: `PROT_READ|PROT_WRITE`, `PROT_NONE`,
/// unknown bits in hex.
pub fn format_prot(prot: u32) -> String {
    if prot == 0 {
        return "PROT_NONE".to_string();
    }
    let mut out = Vec::new();
    push_bits(&mut out, prot, PROT_NAMES);
    out.join("|")
}

/// Formats mmap `flags` as strace does: the mapping type first, then the
/// flag bits, then `N<<MAP_HUGE_SHIFT`, unknown bits in hex.
pub fn format_map_flags(flags: u32) -> String {
    let mut out = Vec::new();
    let ty = flags & MAP_TYPE;
    match MAP_TYPE_NAMES.iter().find(|&&(_, v)| v == ty) {
        Some(&(name, _)) => out.push(name.to_string()),
        None if ty != 0 => out.push(format!("{ty:#x}")),
        None => {}
    }
    let huge = (flags >> MAP_HUGE_SHIFT) & MAP_HUGE_MASK;
    let rest = flags & !MAP_TYPE & !(MAP_HUGE_MASK << MAP_HUGE_SHIFT);
    push_bits(&mut out, rest, MAP_BIT_NAMES);
    if huge != 0 {
        out.push(format!("{huge}<<MAP_HUGE_SHIFT"));
    }
    if out.is_empty() {
        "0".to_string()
    } else {
        out.join("|")
    }
}

/// Formats mremap `flags`: `MREMAP_MAYMOVE|MREMAP_FIXED`, or `0`.
pub fn format_mremap_flags(flags: u32) -> String {
    let mut out = Vec::new();
    push_bits(&mut out, flags, MREMAP_NAMES);
    if out.is_empty() {
        "0".to_string()
    } else {
        out.join("|")
    }
}

/// Formats an madvise advice: its `MADV_*` name, or the number if unknown.
pub fn format_advice(advice: u32) -> String {
    match MADV_NAMES.iter().find(|&&(_, v)| v == advice) {
        Some(&(name, _)) => name.to_string(),
        None => advice.to_string(),
    }
}
