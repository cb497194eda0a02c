//! Where a panicking callback or deferred drop is reported ([DESIGN §3.7, "Where user code
//! runs"](crate::docs::design#37-where-user-code-runs)).
//!
//! Every callback, retired value's drop and tree value's drop runs under
//! [`catch_unwind`](crate::sync::catch_unwind): one panic never stops the
//! rest of the queue, and never leaks the rest of its batch. The payloads are
//! collected and handed to the caller that ran them, as a [`Panicked`].
//!
//! Without the `std` feature nothing is caught (there is no `catch_unwind`):
//! a panicking destructor goes to the embedder's panic handler, and no
//! `Panicked` is ever made ([DESIGN §2.9](crate::docs::design#29-no_std--alloc-the-tree-core)).

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::any::Any;
use core::fmt;

/// A caught panic's payload, as `std::panic::catch_unwind` returns it.
pub type Payload = Box<dyn Any + Send + 'static>;

/// The panics of the callbacks or deferred drops that one call ran.
///
/// Returned by [`Srcu::poll`](crate::srcu::Srcu::poll),
/// [`Srcu::barrier`](crate::srcu::Srcu::barrier) and
/// [`MapleTree::reclaim`](crate::MapleTree::reclaim) after they ran *every*
/// entry that was ready, so nothing was skipped or leaked because of the
/// panic. [`Panicked::resume`] re-raises the first panic (for callers who want
/// a panicking destructor to panic their thread, as an inline drop would), and
/// [`Panicked::into_payloads`] gives every payload.
///
/// It is `Send + Sync + 'static` and implements `std::error::Error`, so it
/// travels through `?` into `Box<dyn Error + Send + Sync>`.
#[must_use = "a callback or a value's drop panicked; report or resume it"]
pub struct Panicked {
    /// At least one payload, in the order the panics happened.
    payloads: Vec<Payload>,
}

// SAFETY: `Sync` lets several threads hold `&Panicked` at once. Through a
// shared reference this type exposes only `count` and `message`, which read a
// payload only after downcasting it to `&'static str` or `String`, both `Sync`;
// a payload of any other (possibly `!Sync`) type is never reachable through
// `&Panicked`. Owned access (`into_payloads`, `resume`) needs the value itself.
unsafe impl Sync for Panicked {}

impl Panicked {
    /// `None` if nothing panicked (without std nothing is caught, so this
    /// is never called).
    #[cfg_attr(not(feature = "std"), allow(dead_code))]
    pub(crate) fn from_payloads(payloads: Vec<Payload>) -> Option<Self> {
        (!payloads.is_empty()).then_some(Self { payloads })
    }

    /// Adds a caught payload to `into`. A payload that is itself a
    /// `Panicked` (a batch that caught panics of its own and re-raised them
    /// together, like the tree's value batches) is flattened.
    pub(crate) fn collect(into: &mut Vec<Payload>, payload: Payload) {
        match payload.downcast::<Panicked>() {
            Ok(inner) => into.extend(inner.payloads),
            Err(other) => into.push(other),
        }
    }

    /// How many callbacks or drops panicked (at least 1).
    ///
    /// ```
    /// let d = maple_rcu::srcu::Srcu::new();
    /// d.call(|| panic!("one"));
    /// d.call(|| panic!("two"));
    /// assert_eq!(d.barrier().unwrap_err().count(), 2);
    /// ```
    pub fn count(&self) -> usize {
        self.payloads.len()
    }

    /// The first panic's message, if it was a string (as `panic!` makes).
    ///
    /// ```
    /// let d = maple_rcu::srcu::Srcu::new();
    /// d.call(|| panic!("callback {}", 7));
    /// assert_eq!(d.barrier().unwrap_err().message(), Some("callback 7"));
    /// ```
    pub fn message(&self) -> Option<&str> {
        message(&self.payloads[0])
    }

    /// Every payload, in the order the panics happened.
    ///
    /// ```
    /// let d = maple_rcu::srcu::Srcu::new();
    /// d.call(|| std::panic::panic_any(1u32));
    /// d.call(|| std::panic::panic_any(2u32));
    /// let p = d.barrier().unwrap_err().into_payloads();
    /// let v: Vec<u32> = p.into_iter().map(|x| *x.downcast::<u32>().unwrap()).collect();
    /// assert_eq!(v, [1, 2]);
    /// ```
    pub fn into_payloads(self) -> Vec<Payload> {
        self.payloads
    }

    /// Re-raises the first panic with `std::panic::resume_unwind` (the other
    /// payloads are dropped).
    ///
    /// ```
    /// let d = maple_rcu::srcu::Srcu::new();
    /// d.call(|| panic!("boom"));
    /// let p = d.barrier().unwrap_err();
    /// let resume = std::panic::AssertUnwindSafe(move || p.resume());
    /// let caught = std::panic::catch_unwind(resume).unwrap_err();
    /// assert_eq!(caught.downcast_ref::<&str>(), Some(&"boom"));
    /// ```
    #[cfg(feature = "std")]
    pub fn resume(self) -> ! {
        let first = self.payloads.into_iter().next();
        std::panic::resume_unwind(first.expect("a Panicked holds at least one payload"))
    }
}

/// The message of a `panic!` payload.
fn message(p: &Payload) -> Option<&str> {
    if let Some(s) = p.downcast_ref::<&'static str>() {
        Some(s)
    } else {
        p.downcast_ref::<String>().map(String::as_str)
    }
}

impl fmt::Debug for Panicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Panicked")
            .field("count", &self.count())
            .field("first", &self.message())
            .finish()
    }
}

impl fmt::Display for Panicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} deferred callback(s) or drop(s) panicked",
            self.count()
        )?;
        match self.message() {
            Some(m) => write!(f, "; first: {m}"),
            None => Ok(()),
        }
    }
}

impl core::error::Error for Panicked {}

/// Runs `f`, catching a panic into `panics` (flattening a `Panicked`).
#[inline]
pub(crate) fn run_caught(panics: &mut Vec<Payload>, f: impl FnOnce()) {
    if let Err(p) = crate::sync::catch_unwind(f) {
        Panicked::collect(panics, p);
    }
}

/// Re-raises the first of `panics` unless this thread is already unwinding
/// (a second panic would abort): for destructors (the domain's and the tree's
/// `Drop`), which have no caller to return a report to.
#[cfg(feature = "std")]
pub(crate) fn resume_first(panics: Vec<Payload>) {
    if let Some(p) = Panicked::from_payloads(panics)
        && !crate::sync::thread::panicking()
    {
        p.resume();
    }
}

/// Without std nothing is caught, so there is nothing to re-raise.
#[cfg(not(feature = "std"))]
pub(crate) fn resume_first(panics: Vec<Payload>) {
    debug_assert!(panics.is_empty(), "nothing is caught without std");
}

/// Re-raises the panics of a batch of drops as one `Panicked` payload: the
/// runner that caught it flattens it into its report
/// ([`Panicked::collect`]), so each drop's panic is reported once.
#[cfg(feature = "std")]
pub(crate) fn reraise(panics: Vec<Payload>) {
    if let Some(p) = Panicked::from_payloads(panics) {
        std::panic::resume_unwind(Box::new(p));
    }
}

/// Without std nothing is caught, so there is nothing to re-raise.
#[cfg(not(feature = "std"))]
pub(crate) fn reraise(panics: Vec<Payload>) {
    debug_assert!(panics.is_empty(), "nothing is caught without std");
}
