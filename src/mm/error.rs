//! Typed errors of the mm calls, with the errno Linux would return.

/// Why an mm call failed. Each maps to the errno Linux returns for it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MmError {
    /// `EINVAL` (22): malformed arguments.
    #[error("invalid argument (EINVAL)")]
    Inval,
    /// `ENOMEM` (12): no room, or a hole where a mapping was required.
    #[error("out of address space or range not mapped (ENOMEM)")]
    NoMem,
    /// `EEXIST` (17): `MAP_FIXED_NOREPLACE` over an existing mapping.
    #[error("mapping exists (EEXIST)")]
    Exist,
    /// `EFAULT` (14): mremap's old range is not inside one VMA.
    #[error("bad address (EFAULT)")]
    Fault,
    /// `EPERM` (1): a fixed mapping below `mmap_min_addr`.
    #[error("operation not permitted (EPERM)")]
    Perm,
    /// `EACCES` (13): access not permitted by the mapping's file.
    #[error("permission denied (EACCES)")]
    Access,
    /// `EOVERFLOW` (75): file offset plus length overflows.
    #[error("offset overflow (EOVERFLOW)")]
    Overflow,
    /// `from_maps`: a line that is not /proc/pid/maps syntax (errno EINVAL).
    #[error("bad maps text: {0}")]
    Parse(#[from] crate::parse::ParseError),
    /// `from_maps`: a line that parses but cannot be a VMA here (unaligned,
    /// overlapping, out of order); errno EINVAL.
    #[error("maps line {line}: {why}")]
    BadMapsLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: &'static str,
    },
}

impl MmError {
    /// The Linux errno value.
    pub fn errno(&self) -> i32 {
        match self {
            MmError::Inval | MmError::Parse(_) | MmError::BadMapsLine { .. } => 22,
            MmError::NoMem => 12,
            MmError::Exist => 17,
            MmError::Fault => 14,
            MmError::Perm => 1,
            MmError::Access => 13,
            MmError::Overflow => 75,
        }
    }
}

/// Why a page fault could not be resolved (the signal Linux would send).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum FaultError {
    /// No VMA covers the address (`SIGSEGV`, `SEGV_MAPERR`).
    #[error("segmentation fault: address not mapped")]
    Segv,
    /// The VMA does not allow the access (`SIGSEGV`, `SEGV_ACCERR`).
    #[error("segmentation fault: access not permitted")]
    Access,
}
