//! The typed error shared by the strace and `/proc/pid/maps` parsers: a
//! 1-based line number and what was wrong with that line.

/// A line that could not be parsed, with its 1-based line number.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct ParseError {
    /// The 1-based line number in the parsed text. For a call split into
    /// `<unfinished ...>` and `<... resumed>` lines it is the completing line.
    pub line: usize,
    /// What was wrong.
    pub kind: ParseErrorKind,
}

impl ParseError {
    pub(crate) fn new(line: usize, kind: ParseErrorKind) -> Self {
        Self { line, kind }
    }
}

/// What was wrong with a line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// A memory call's argument list has no closing parenthesis, or brackets
    /// and quotes inside it are unbalanced.
    #[error("unbalanced parentheses, brackets or quotes")]
    Unbalanced,
    /// A memory call has the wrong number of arguments.
    #[error("{call}: expected {expected} arguments, found {found}")]
    ArgCount {
        /// The call's name.
        call: &'static str,
        /// How many arguments it takes (e.g. `"6"` or `"4 or 5"`).
        expected: &'static str,
        /// How many the line has.
        found: usize,
    },
    /// A number (address, length, fd, offset) that does not parse or overflows.
    #[error("bad number `{0}`")]
    BadNumber(String),
    /// A flag name that is not a known `PROT_*`, `MAP_*`, `MREMAP_*` or
    /// `MADV_*` name (its numeric value is therefore unknown).
    #[error("unknown flag `{0}`")]
    UnknownFlag(String),
    /// A memory call line without `= result` after its argument list.
    #[error("missing `= result` after the arguments")]
    MissingResult,
    /// A result that is not a number, `-1 ERRNO (...)`, or `?`.
    #[error("bad result `{0}`")]
    BadResult(String),
    /// `<... NAME resumed>` for a memory call with no pending
    /// `<unfinished ...>` call of that pid.
    #[error("`<... {0} resumed>` without a matching `<unfinished ...>` line")]
    OrphanResume(String),
    /// `<... NAME resumed>` while the pid's pending call is another syscall.
    #[error("`<... {resumed} resumed>` but the pending call (line {pending_line}) is `{pending}`")]
    ResumeMismatch {
        /// The name on the resumed line.
        resumed: String,
        /// The name of the pending call.
        pending: String,
        /// The line on which the pending call started.
        pending_line: usize,
    },
    /// A maps line field is missing.
    #[error("maps: missing field `{0}`")]
    MissingField(&'static str),
    /// A maps line field is malformed.
    #[error("maps: bad {field} `{text}`")]
    BadField {
        /// Which field (`range`, `perms`, `offset`, `dev`, `inode`).
        field: &'static str,
        /// The offending text.
        text: String,
    },
}
