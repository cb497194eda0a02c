//! The userfaultfd UAPI (`linux/userfaultfd.h`) as raw `#[repr(C)]` structs and
//! ioctl numbers, and [`Uffd`], a thin owner of one userfaultfd.
//!
//! The ioctl numbers are `_IOWR`/`_IOR(0xAA, nr, struct)`; the size field of
//! each number is checked against the struct at compile time below.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `UFFD_API`: the only API version.
const UFFD_API: u64 = 0xAA;
/// `UFFD_USER_MODE_ONLY`: a `userfaultfd(2)` flag (Linux 5.11+); faults raised
/// by the kernel itself (e.g. `read(2)` into a registered range) are not
/// reported, and no privilege is needed even with
/// `vm.unprivileged_userfaultfd = 0`.
const UFFD_USER_MODE_ONLY: libc::c_int = 1;

const UFFDIO_API: libc::c_ulong = 0xC018_AA3F;
const UFFDIO_REGISTER: libc::c_ulong = 0xC020_AA00;
const UFFDIO_UNREGISTER: libc::c_ulong = 0x8010_AA01;
const UFFDIO_WAKE: libc::c_ulong = 0x8010_AA02;
const UFFDIO_COPY: libc::c_ulong = 0xC028_AA03;
const UFFDIO_ZEROPAGE: libc::c_ulong = 0xC020_AA04;

const UFFDIO_REGISTER_MODE_MISSING: u64 = 1 << 0;
/// `1 << _UFFDIO_COPY` and `1 << _UFFDIO_ZEROPAGE` in `uffdio_register.ioctls`.
const REGISTER_NEEDS: u64 = (1 << 0x03) | (1 << 0x04);

const UFFD_EVENT_PAGEFAULT: u8 = 0x12;
const UFFD_EVENT_REMOVE: u8 = 0x15;
const UFFD_EVENT_UNMAP: u8 = 0x16;
const UFFD_PAGEFAULT_FLAG_WRITE: u64 = 1 << 0;

/// `UFFD_FEATURE_EVENT_REMOVE`: madvise(DONTNEED/REMOVE) raises an event.
pub const FEATURE_EVENT_REMOVE: u64 = 1 << 3;
/// `UFFD_FEATURE_EVENT_UNMAP`: munmap (and mremap shrink) raises an event.
pub const FEATURE_EVENT_UNMAP: u64 = 1 << 6;

#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioRange {
    start: u64,
    len: u64,
}

#[repr(C)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioCopy {
    dst: u64,
    src: u64,
    len: u64,
    mode: u64,
    copy: i64,
}

#[repr(C)]
struct UffdioZeropage {
    range: UffdioRange,
    mode: u64,
    zeropage: i64,
}

/// `struct uffd_msg` (`__packed` in C, but every field is naturally aligned,
/// so `repr(C)` has the same 32-byte layout): `event` at 0, the union `arg`
/// at 8. `arg.pagefault = {flags, address, ptid}`,
/// `arg.remove = {start, end}` (also used by UNMAP).
#[repr(C)]
#[derive(Clone, Copy)]
struct UffdMsg {
    event: u8,
    _reserved1: u8,
    _reserved2: u16,
    _reserved3: u32,
    arg: [u64; 3],
}

const fn ioc_size(nr: libc::c_ulong) -> usize {
    ((nr >> 16) & 0x3fff) as usize
}
const _: () = assert!(ioc_size(UFFDIO_API) == size_of::<UffdioApi>());
const _: () = assert!(ioc_size(UFFDIO_REGISTER) == size_of::<UffdioRegister>());
const _: () = assert!(ioc_size(UFFDIO_UNREGISTER) == size_of::<UffdioRange>());
const _: () = assert!(ioc_size(UFFDIO_WAKE) == size_of::<UffdioRange>());
const _: () = assert!(ioc_size(UFFDIO_COPY) == size_of::<UffdioCopy>());
const _: () = assert!(ioc_size(UFFDIO_ZEROPAGE) == size_of::<UffdioZeropage>());
const _: () = assert!(size_of::<UffdMsg>() == 32);

/// One event read from the userfaultfd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A thread touched a missing page of a registered range and sleeps until
    /// a COPY, ZEROPAGE or WAKE covers `addr`.
    PageFault {
        /// The faulting address (not page-aligned).
        addr: u64,
        /// The access was a write.
        write: bool,
    },
    /// `madvise(DONTNEED)` on `[start, end)`: the kernel zaps the range once
    /// this event has been read.
    Remove {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
    },
    /// `munmap` of `[start, end)` (already unmapped when it is read).
    Unmap {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
    },
    /// An event this crate does not request (FORK, REMAP): its raw code.
    Other(u8),
}

impl Event {
    fn from_msg(m: &UffdMsg) -> Event {
        match m.event {
            UFFD_EVENT_PAGEFAULT => Event::PageFault {
                addr: m.arg[1],
                write: m.arg[0] & UFFD_PAGEFAULT_FLAG_WRITE != 0,
            },
            UFFD_EVENT_REMOVE => Event::Remove {
                start: m.arg[0],
                end: m.arg[1],
            },
            UFFD_EVENT_UNMAP => Event::Unmap {
                start: m.arg[0],
                end: m.arg[1],
            },
            e => Event::Other(e),
        }
    }
}

/// Why userfaultfd could not be had.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// Both `userfaultfd(O_CLOEXEC|O_NONBLOCK)` and the same with
    /// `UFFD_USER_MODE_ONLY` failed (old kernel, seccomp, no privilege).
    #[error(
        "userfaultfd(2) failed: {full} (and with UFFD_USER_MODE_ONLY: {user_only}); \
         need Linux 5.11+ and either CAP_SYS_PTRACE, vm.unprivileged_userfaultfd=1 or user-mode-only support"
    )]
    Syscall {
        /// The error of the plain call.
        full: io::Error,
        /// The error of the user-mode-only call.
        user_only: io::Error,
    },
    /// The `UFFDIO_API` handshake failed or lacks a feature we need.
    #[error("UFFDIO_API handshake failed (need EVENT_REMOVE and EVENT_UNMAP): {0}")]
    Api(io::Error),
}

/// The outcome of a resolving ioctl: `Ok` or the errno it failed with.
pub type IoctlResult = Result<(), i32>;

/// One userfaultfd, opened non-blocking and close-on-exec, with the API
/// handshake done and EVENT_REMOVE | EVENT_UNMAP enabled.
#[derive(Debug)]
pub struct Uffd {
    fd: OwnedFd,
    features: u64,
    user_mode_only: bool,
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

impl Uffd {
    /// Opens a userfaultfd: first without flags beyond `O_CLOEXEC|O_NONBLOCK`,
    /// then, if that is refused, with `UFFD_USER_MODE_ONLY`; then performs the
    /// `UFFDIO_API` handshake requesting the REMOVE and UNMAP events.
    pub fn open() -> Result<Uffd, Unavailable> {
        let base = libc::O_CLOEXEC | libc::O_NONBLOCK;
        let open = |flags: libc::c_int| -> io::Result<OwnedFd> {
            // SAFETY: userfaultfd(2) takes one int of flags and returns a new
            // fd or -1; it touches no memory of ours.
            let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, flags) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` is a fresh descriptor that nothing else owns.
            Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
        };
        let (fd, user_mode_only) = match open(base) {
            Ok(fd) => (fd, false),
            Err(full) => match open(base | UFFD_USER_MODE_ONLY) {
                Ok(fd) => (fd, true),
                Err(user_only) => return Err(Unavailable::Syscall { full, user_only }),
            },
        };
        let mut api = UffdioApi {
            api: UFFD_API,
            features: FEATURE_EVENT_REMOVE | FEATURE_EVENT_UNMAP,
            ioctls: 0,
        };
        // SAFETY: UFFDIO_API reads and writes one `uffdio_api`, which `api`
        // is (layout checked above) and which lives across the call.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), UFFDIO_API, &mut api) };
        if r < 0 {
            return Err(Unavailable::Api(io::Error::last_os_error()));
        }
        Ok(Uffd {
            fd,
            features: api.features,
            user_mode_only,
        })
    }

    /// The feature bits the kernel reported after the handshake.
    pub fn features(&self) -> u64 {
        self.features
    }

    /// True when the fd was opened with `UFFD_USER_MODE_ONLY` (the plain call
    /// was refused).
    pub fn user_mode_only(&self) -> bool {
        self.user_mode_only
    }

    /// Registers `[start, start + len)` in MISSING mode. Checks that the
    /// kernel allows COPY and ZEROPAGE there (anonymous private memory).
    pub fn register(&self, start: u64, len: u64) -> io::Result<()> {
        let mut reg = UffdioRegister {
            range: UffdioRange { start, len },
            mode: UFFDIO_REGISTER_MODE_MISSING,
            ioctls: 0,
        };
        // SAFETY: UFFDIO_REGISTER reads and writes one `uffdio_register`; the
        // kernel validates the range against our own mappings.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), UFFDIO_REGISTER, &mut reg) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        if reg.ioctls & REGISTER_NEEDS != REGISTER_NEEDS {
            return Err(io::Error::other(
                "range does not support UFFDIO_COPY and UFFDIO_ZEROPAGE",
            ));
        }
        Ok(())
    }

    /// Unregisters `[start, start + len)`.
    pub fn unregister(&self, start: u64, len: u64) -> io::Result<()> {
        let mut range = UffdioRange { start, len };
        // SAFETY: UFFDIO_UNREGISTER reads one `uffdio_range`.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), UFFDIO_UNREGISTER, &mut range) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// `UFFDIO_COPY` of `len` bytes from `src` to the page-aligned `dst`,
    /// waking the threads that wait on the range.
    ///
    /// # Safety
    /// 1. `src .. src + len` is readable memory of this process for the whole
    ///    call (the kernel copies from it with `copy_from_user`, so an
    ///    unmapped source is an EFAULT, not UB; the requirement is that no
    ///    Rust reference to it is invalidated by the copy, which only reads).
    pub unsafe fn copy(&self, dst: u64, src: *const u8, len: u64) -> IoctlResult {
        let mut c = UffdioCopy {
            dst,
            src: src as u64,
            len,
            mode: 0,
            copy: 0,
        };
        // SAFETY: UFFDIO_COPY reads and writes one `uffdio_copy`; the kernel
        // only reads `src` (requirement 1) and writes `dst`, which is memory
        // registered with this fd that no Rust reference covers (a missing
        // page).
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), UFFDIO_COPY, &mut c) };
        if r < 0 { Err(errno()) } else { Ok(()) }
    }

    /// `UFFDIO_ZEROPAGE` on `[dst, dst + len)`, waking the waiters.
    pub fn zeropage(&self, dst: u64, len: u64) -> IoctlResult {
        let mut z = UffdioZeropage {
            range: UffdioRange { start: dst, len },
            mode: 0,
            zeropage: 0,
        };
        // SAFETY: UFFDIO_ZEROPAGE reads and writes one `uffdio_zeropage`; it
        // maps the zero page into missing PTEs of our registered range only.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), UFFDIO_ZEROPAGE, &mut z) };
        if r < 0 { Err(errno()) } else { Ok(()) }
    }

    /// `UFFDIO_WAKE` on `[start, start + len)`: wakes threads waiting there
    /// without filling anything (they retry the access).
    pub fn wake(&self, start: u64, len: u64) -> IoctlResult {
        let mut range = UffdioRange { start, len };
        // SAFETY: UFFDIO_WAKE reads one `uffdio_range`.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), UFFDIO_WAKE, &mut range) };
        if r < 0 { Err(errno()) } else { Ok(()) }
    }

    /// Reads up to `out.len()` pending events without blocking; returns how
    /// many were read (0 when none was pending). Reading a REMOVE or UNMAP
    /// event lets the thread that raised it continue.
    pub fn read_events(&self, out: &mut Vec<Event>, max: usize) -> io::Result<usize> {
        const BATCH: usize = 64;
        let mut buf = [UffdMsg {
            event: 0,
            _reserved1: 0,
            _reserved2: 0,
            _reserved3: 0,
            arg: [0; 3],
        }; BATCH];
        let n = max.clamp(1, BATCH);
        // SAFETY: `buf` is writable for `n` messages; read(2) writes at most
        // that many bytes.
        let r = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                n * size_of::<UffdMsg>(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) => Ok(0),
                _ => Err(e),
            };
        }
        let got = r as usize / size_of::<UffdMsg>();
        out.extend(buf[..got].iter().map(Event::from_msg));
        Ok(got)
    }

    /// Waits up to `timeout_ms` for an event to be readable.
    pub fn poll(&self, timeout_ms: i32) -> bool {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid `pollfd`.
        let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        r > 0 && p.revents & libc::POLLIN != 0
    }
}
