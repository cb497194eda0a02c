//! SRCU-like sleepable read-side domains built on epochs (see docs/DESIGN.md §Srcu).
//!
//! API SKELETON — the implementation lands with issue 3. Signatures are fixed.

use std::marker::PhantomData;

/// An independent sleepable-RCU domain.
///
/// TEMPORARY STAND-IN until issue 3 merges: never frees before the domain is
/// dropped (trivially safe, unbounded memory).
pub struct Srcu {
    pending: crate::sync::Mutex<Vec<Deferred>>,
}

/// A read-side critical section of one [`Srcu`] domain. `Send`: it may be
/// dropped on another thread than the one that took it.
pub struct SrcuGuard<'a> {
    _d: PhantomData<&'a Srcu>,
}

/// A type-erased destructor that runs after a grace period (crate-internal
/// batch retirement, used by the tree for nodes and values).
pub(crate) struct Deferred {
    data: *mut (),
    call: unsafe fn(*mut ()),
}

// SAFETY: `Deferred::new`'s requirement 1 says the pointee may be dropped on any thread.
unsafe impl Send for Deferred {}

impl Deferred {
    /// # Safety
    /// 1. `call(data)` may be run once, on any thread.
    /// 2. Whatever `data` refers to stays valid until the owning domain runs
    ///    the callback or is dropped.
    pub(crate) unsafe fn new(data: *mut (), call: unsafe fn(*mut ())) -> Self {
        Self { data, call }
    }

    /// Runs the destructor.
    pub(crate) fn run(self) {
        // SAFETY: requirement 1 of `Deferred::new`: run exactly once (self is consumed).
        unsafe { (self.call)(self.data) }
    }
}

impl Default for Srcu {
    fn default() -> Self {
        Self::new()
    }
}

impl Srcu {
    /// A new, empty domain.
    pub fn new() -> Self {
        Self {
            pending: crate::sync::Mutex::new(Vec::new()),
        }
    }
    /// Enter a read-side critical section. Never blocks.
    pub fn read(&self) -> SrcuGuard<'_> {
        SrcuGuard { _d: PhantomData }
    }
    /// Wait until every reader that began before this call has ended.
    pub fn synchronize(&self) {
        todo!("issue 3")
    }
    /// Run `f` after a grace period. Never blocks.
    pub fn call<F: FnOnce() + Send + 'static>(&self, f: F) {
        let _ = f;
        todo!("issue 3")
    }
    /// Drop `value` after a grace period. Never blocks.
    pub fn retire<T: Send + 'static>(&self, value: Box<T>) {
        let _ = value;
        todo!("issue 3")
    }
    /// Wait until every callback queued before this call has run.
    pub fn barrier(&self) {
        todo!("issue 3")
    }
    /// Advance grace periods without blocking and run ready callbacks.
    pub fn poll(&self) {
        todo!("issue 3")
    }
    /// Queue a batch of raw destructors behind one grace period. Never blocks;
    /// may advance grace periods opportunistically.
    ///
    /// # Safety
    /// Each `Deferred` satisfies the requirements of [`Deferred::new`].
    pub(crate) unsafe fn defer_batch(&self, batch: Vec<Deferred>) {
        self.pending.lock().unwrap().extend(batch);
    }
}

impl Drop for Srcu {
    fn drop(&mut self) {
        for d in std::mem::take(&mut *self.pending.lock().unwrap()) {
            d.run();
        }
    }
}
