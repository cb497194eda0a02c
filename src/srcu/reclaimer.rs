//! The process-wide reclaimer: one lazily started thread that runs the ready
//! callbacks of every domain created by [`Srcu::with_reclaimer`] (and so of
//! every default [`MapleTree`](crate::MapleTree)), [DESIGN §3.7](crate::docs::design#37-where-user-code-runs).
//!
//! # Registration
//! A domain is *kicked* onto the reclaimer's work list by the queueing call
//! that makes its queue non-empty (`Queue::kicked`, set and cleared under the
//! domain's queue lock, so exactly one `Weak` per domain is on the list while
//! it has pending entries, and none otherwise). The list holds `Weak`s only:
//! a dropped domain fails to upgrade and is forgotten; a domain with nothing
//! pending is not on the list at all. So the list is as long as the number of
//! live domains with pending work, and it keeps nothing alive.
//!
//! # The thread
//! Started by the first kick. Its loop: wait on the condvar while the list
//! is empty (no timer, no busy wait); take the whole list (under the list
//! lock, which is never held while anything else runs); for each domain that
//! still upgrades, advance its grace periods and run its ready entries
//! (`Srcu::reclaimer_visit`: each under `catch_unwind`, panics kept in the
//! domain for its next `poll`/`barrier`); put back the ones still pending;
//! drop the strong reference (if it was the last, the domain's own `Drop`
//! runs its leftovers here, its panics discarded like the helper thread's);
//! then sleep `TICK` before the next pass, doubling up to `MAX_TICK` while
//! passes make no progress (a reader holds a grace period up). A kick only
//! notifies the condvar when the thread is waiting on it, so a busy writer
//! costs one list push per reclaimer pass, not a wake-up per commit.
//!
//! # Locks and blocking
//! The thread holds the list lock only to take or extend the list, and a
//! domain's internal locks only as `poll` does: no lock of ours is held while
//! a callback runs, so a callback may call `synchronize` on any domain, write
//! to any tree, or queue more work (which kicks the list, never waiting for
//! the thread). A callback that blocks delays every registered domain's
//! reclamation until it returns; one that panics is caught.

#[cfg(not(loom))]
pub(super) use imp::Registration;

/// Under loom every domain is manual: no global thread, so models stay
/// deterministic (DESIGN §3.5).
#[cfg(loom)]
pub(super) struct Registration;

#[cfg(loom)]
impl Registration {
    pub(super) fn manual() -> Self {
        Self
    }

    pub(super) fn is_auto(&self) -> bool {
        false
    }

    pub(super) fn kick(&self) {}
}

#[cfg(not(loom))]
mod imp {
    use super::super::Srcu;
    use crate::sync::{Condvar, Mutex, Weak, catch_unwind, lazy_static, lock, thread};
    use std::time::Duration;

    /// The pause after a pass that ran something or still has work: batches a
    /// busy writer's commits into one pass per tick.
    const TICK: Duration = Duration::from_millis(1);
    /// The longest pause while passes make no progress (readers hold grace
    /// periods up): bounds the extra delay after the last such reader ends.
    const MAX_TICK: Duration = Duration::from_millis(16);

    /// A domain's link to the reclaimer: `Some` for [`Srcu::with_reclaimer`].
    pub(in crate::srcu) struct Registration(Option<Weak<Srcu>>);

    impl Registration {
        /// Not registered: the domain runs callbacks only when driven.
        pub(in crate::srcu) fn manual() -> Self {
            Self(None)
        }

        /// Registered through `me`, a weak reference to the domain itself.
        pub(in crate::srcu) fn auto(me: Weak<Srcu>) -> Self {
            Self(Some(me))
        }

        pub(in crate::srcu) fn is_auto(&self) -> bool {
            self.0.is_some()
        }

        /// Puts the domain on the work list; called (outside the domain's
        /// locks) by the queueing call that set `Queue::kicked`. Never blocks
        /// beyond the list lock, and runs nothing.
        pub(in crate::srcu) fn kick(&self) {
            if let Some(me) = &self.0 {
                kick(me.clone());
            }
        }
    }

    /// The work list and the thread's state.
    #[derive(Default)]
    struct State {
        /// Domains with pending entries (one `Weak` each, see the module docs).
        work: Vec<Weak<Srcu>>,
        /// The thread has been spawned.
        started: bool,
        /// The thread is waiting on the condvar (only then does a kick notify).
        idle: bool,
    }

    struct Shared {
        state: Mutex<State>,
        wake: Condvar,
    }

    lazy_static! {
        static ref RECLAIMER: Shared = Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        };
    }

    fn kick(me: Weak<Srcu>) {
        let mut st = lock(&RECLAIMER.state);
        st.work.push(me);
        if !st.started {
            // If the spawn fails (resource limits), the domain stays on the list
            // and behaves as a manual one until a later kick starts the thread.
            st.started = thread::Builder::new()
                .name("maple-rcu-reclaimer".into())
                .spawn(run)
                .is_ok();
        } else if st.idle {
            st.idle = false;
            RECLAIMER.wake.notify_one();
        }
    }

    /// The reclaimer thread's loop (never returns: it lives as long as the
    /// process, idle on the condvar when nothing is pending).
    fn run() {
        let mut pause = TICK;
        loop {
            let work = {
                let mut st = lock(&RECLAIMER.state);
                while st.work.is_empty() {
                    st.idle = true;
                    st = RECLAIMER.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                st.idle = false;
                std::mem::take(&mut st.work)
            };
            let mut progress = false;
            let mut again = Vec::new();
            for w in work {
                let Some(d) = w.upgrade() else {
                    continue; // dropped: forget it
                };
                let (pending, moved) = d.reclaimer_visit();
                progress |= moved;
                if pending {
                    again.push(w);
                }
                // If ours was the last `Arc`, this drops the domain, whose `Drop`
                // runs what is left; a panic there has no one to go to.
                let _ = catch_unwind(move || drop(d));
            }
            if !again.is_empty() {
                lock(&RECLAIMER.state).work.append(&mut again);
            }
            pause = if progress {
                TICK
            } else {
                (pause * 2).min(MAX_TICK)
            };
            thread::backoff_sleep(pause);
        }
    }
}
