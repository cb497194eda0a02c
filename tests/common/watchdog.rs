//! Deadlock tests that fail instead of hanging CI: the body runs on its own
//! thread, and the test fails if it has not finished within the limit (the
//! stuck thread is left behind; the harness exits the process at the end).

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Runs `f` on a new thread; returns its result, re-raises its panic, or
/// panics with "deadlock" if it has not finished after `secs` seconds.
pub fn within<T: Send + 'static>(
    secs: u64,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let h = thread::Builder::new()
        .name(what.into())
        .spawn(move || {
            let r = f();
            let _ = tx.send(());
            r
        })
        .expect("spawn the watched thread");
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: not finished after {secs} s (deadlock)")
        }
        // Finished, or panicked (the sender was dropped while unwinding).
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => match h.join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        },
    }
}
