//! The asymmetric fence: a nearly free barrier for readers, a heavy one for
//! grace periods.
//!
//! Where Linux's srcutree puts `smp_mb()` on both sides, we split the cost:
//!
//! * asymmetric mode (Linux with `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`):
//!   [`Barrier::light`] is only a compiler fence, and [`Barrier::heavy`] is the
//!   `membarrier` syscall, which makes every running thread of the process
//!   execute a full memory barrier (a thread that is not running passed one in
//!   the context switch). Each light/heavy pair then orders like a pair of
//!   `fence(SeqCst)`s.
//! * fallback (no membarrier, Miri, and always under loom, which cannot model
//!   the syscall): both are `fence(SeqCst)`.
//!
//! The mode is fixed per domain when it is created, after the process-wide
//! registration has succeeded, so a domain never mixes modes.

use crate::sync::{Ordering, compiler_fence, fence};

/// A domain's barrier pair (see the module docs).
#[derive(Clone, Copy, Debug)]
pub(super) struct Barrier {
    asymmetric: bool,
}

impl Barrier {
    /// Asymmetric if this process could register for expedited membarrier.
    pub(super) fn new() -> Self {
        Self {
            asymmetric: membarrier::available(),
        }
    }

    /// SeqCst fences on both sides, whatever the platform offers.
    pub(super) fn symmetric() -> Self {
        Self { asymmetric: false }
    }

    /// Whether the read side runs without hardware fences.
    pub(super) fn is_asymmetric(self) -> bool {
        self.asymmetric
    }

    /// The read-side barrier (Linux's `smp_mb()` B and C in `srcu_read_lock`/
    /// `srcu_read_unlock`). Pairs with [`Barrier::heavy`].
    #[inline(always)]
    pub(super) fn light(self) {
        if self.asymmetric {
            // Only the compiler may not reorder; the CPU is ordered by the
            // heavy side's membarrier, which pairs with this point.
            compiler_fence(Ordering::SeqCst);
        } else {
            // SeqCst: pairs with the SeqCst fence in `heavy`.
            fence(Ordering::SeqCst);
        }
    }

    /// The grace-period-side barrier (Linux's `smp_mb()` A in
    /// `srcu_readers_active_idx_check`). Pairs with [`Barrier::light`].
    pub(super) fn heavy(self) {
        if self.asymmetric {
            membarrier::expedited();
        } else {
            // SeqCst: pairs with the SeqCst fence in `light`.
            fence(Ordering::SeqCst);
        }
    }
}

#[cfg(all(target_os = "linux", not(loom), not(miri)))]
mod membarrier {
    use crate::sync::{AtomicU8, Ordering};

    const CMD_QUERY: libc::c_long = 0;
    const CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
    const CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

    const UNKNOWN: u8 = 0;
    const YES: u8 = 1;
    const NO: u8 = 2;
    static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);

    fn membarrier(cmd: libc::c_long) -> libc::c_long {
        // SAFETY: membarrier takes (cmd, flags, cpu_id) integers and touches no
        // user memory; an unsupported command only returns an error.
        unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                cmd,
                0 as libc::c_long,
                0 as libc::c_long,
            )
        }
    }

    /// Registers the process for private expedited membarrier (once).
    pub(super) fn available() -> bool {
        // Acquire: pairs with the Release store below (the registration
        // syscall completed before YES was published).
        match STATE.load(Ordering::Acquire) {
            YES => return true,
            NO => return false,
            _ => {}
        }
        let mask = membarrier(CMD_QUERY);
        let needed = CMD_PRIVATE_EXPEDITED | CMD_REGISTER_PRIVATE_EXPEDITED;
        // Registering twice (two racing first domains) is harmless.
        let ok =
            mask >= 0 && mask & needed == needed && membarrier(CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
        // Release: pairs with the Acquire load above.
        STATE.store(if ok { YES } else { NO }, Ordering::Release);
        ok
    }

    /// A full memory barrier on every running thread of this process.
    pub(super) fn expedited() {
        let r = membarrier(CMD_PRIVATE_EXPEDITED);
        // Cannot fail after a successful registration; if it ever did, readers
        // relying on it would be unordered, so stop rather than free early.
        assert_eq!(
            r, 0,
            "membarrier(PRIVATE_EXPEDITED) failed after registration"
        );
    }
}

#[cfg(not(all(target_os = "linux", not(loom), not(miri))))]
mod membarrier {
    pub(super) fn available() -> bool {
        false
    }
    pub(super) fn expedited() {
        unreachable!("membarrier is never selected on this platform")
    }
}
