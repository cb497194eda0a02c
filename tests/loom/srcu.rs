//! Loom models of the Srcu domain (issue 3).
//!
//! Under `--cfg loom` the domain's light and heavy barriers are both
//! `fence(SeqCst)` (loom cannot model membarrier), thread ids come from a
//! per-execution registry and the slot table has 3 buckets.
//!
//! "Freed" values are modelled by a write through `loom::cell::UnsafeCell`:
//! loom reports any reader access to it that is not ordered before that write,
//! which is exactly a use-after-free in the real code.

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use loom::thread;
use maple_rcu::srcu::{Srcu, SrcuGuard};

const LIVE: usize = 1;
const FREED: usize = 0xdead;

/// A heap value whose "free" is a checked write.
pub(crate) struct Value(UnsafeCell<usize>);

impl Value {
    fn new_ptr() -> *mut Value {
        Box::into_raw(Box::new(Value(UnsafeCell::new(LIVE))))
    }

    /// Reads the value; loom flags it if it races with `free`.
    ///
    /// # Safety
    /// `p` came from `new_ptr` and its `free` has not completed.
    unsafe fn check(p: *const Value) {
        // SAFETY: the caller's requirement.
        let v = unsafe { &*p }.0.with(|v| {
            // SAFETY: loom's with() hands out a valid pointer; racing accesses
            // are reported by loom itself.
            unsafe { *v }
        });
        assert_eq!(v, LIVE, "reader saw a freed value");
    }

    /// "Frees" the value: poisons it with a write that loom checks against
    /// every reader access. The memory itself is released by [`Graveyard`]
    /// after the model's threads are joined, so that a protocol bug shows up
    /// as a clean causality violation rather than as a real use-after-free.
    ///
    /// # Safety
    /// `p` came from `new_ptr` and is freed only once.
    unsafe fn free(p: *mut Value) {
        // SAFETY: the caller's requirement: `p` is live.
        unsafe { &*p }.0.with_mut(|v| {
            // SAFETY: loom's with_mut() hands out a valid pointer; a racing
            // reader is reported by loom itself.
            unsafe { *v = FREED }
        });
        GRAVEYARD.with(|g| g.0.borrow_mut().push(p));
    }
}

/// Values poisoned by `Value::free`, deallocated by [`model`] at the end of
/// each execution.
struct Graveyard(std::cell::RefCell<Vec<*mut Value>>);

std::thread_local! {
    /// Per OS thread: loom runs all threads of a model on the test's thread.
    static GRAVEYARD: Graveyard = const { Graveyard(std::cell::RefCell::new(Vec::new())) };
}

/// `loom::model`, deallocating the execution's poisoned values at its end.
pub(crate) fn model(f: impl Fn() + Sync + Send + 'static) {
    model_on(loom::model::Builder::new(), f);
}

/// [`model`] with a given `Builder` (the heavy models' bound:
/// `mm::heavy`).
pub(crate) fn model_on(b: loom::model::Builder, f: impl Fn() + Sync + Send + 'static) {
    b.check(move || {
        f();
        GRAVEYARD.with(|g| {
            for p in g.0.borrow_mut().drain(..) {
                // SAFETY: every pointer came from `Value::new_ptr`, once, and
                // all threads of the execution are joined.
                drop(unsafe { Box::from_raw(p) });
            }
        });
    });
}

/// Frees a `Value` when dropped (what `retire` gets).
pub(crate) struct Retired(pub(crate) *mut Value);
// SAFETY: the pointee is only freed, once, by whichever thread drops this.
unsafe impl Send for Retired {}
impl Drop for Retired {
    fn drop(&mut self) {
        // SAFETY: each `Retired` owns a distinct live value.
        unsafe { Value::free(self.0) }
    }
}

/// A published pointer plus the domain protecting it.
pub(crate) struct Shared {
    pub(crate) domain: Srcu,
    pub(crate) current: AtomicPtr<Value>,
}

impl Shared {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            domain: Srcu::new(),
            current: AtomicPtr::new(Value::new_ptr()),
        })
    }

    /// A reader: enter, load the published pointer, use it, leave.
    pub(crate) fn read_and_check(&self) {
        let g = self.domain.read();
        // Acquire: pairs with the AcqRel swap in `publish`.
        let p = self.current.load(Ordering::Acquire);
        // SAFETY: `p` was published and we are inside a read-side section
        // begun before it could be retired (what the model checks).
        unsafe { Value::check(p) };
        drop(g);
    }

    /// Replaces the value and frees the old one after `synchronize`.
    pub(crate) fn replace_and_synchronize(&self) {
        let old = self.publish();
        self.domain.synchronize();
        // SAFETY: unpublished before a full grace period.
        unsafe { Value::free(old) };
    }

    /// Publishes a fresh value and returns the old one (unpublished).
    pub(crate) fn publish(&self) -> *mut Value {
        // AcqRel: Release publishes the new value to readers; Acquire takes
        // ownership of the old one.
        self.current.swap(Value::new_ptr(), Ordering::AcqRel)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: no reader is left (every thread was joined).
        unsafe { Value::free(self.current.load(Ordering::Relaxed)) }
    }
}

/// Runs `writer` on the model's main thread against one concurrent reader.
fn against_a_reader(writer: impl FnOnce(&Shared)) {
    let s = Shared::new();
    let r = {
        let s = s.clone();
        thread::spawn(move || s.read_and_check())
    };
    writer(&s);
    r.join().unwrap();
}

/// (1) A reader holding a guard on a value that a writer retires never sees it
/// freed: `retire` (with its opportunistic poll) + `barrier` against a
/// concurrent reader.
#[test]
fn retire_waits_for_reader() {
    model(|| {
        against_a_reader(|s| {
            // Two retirements: the second crosses POLL_EVERY (2 under loom),
            // so `retire` itself polls, racing the reader.
            for _ in 0..2 {
                let old = s.publish();
                s.domain.retire(Box::new(Retired(old)));
            }
            s.domain.barrier().unwrap();
        });
    });
}

/// (2) A reader whose critical section observes a store made after
/// `synchronize` returned also observes every store made before it.
#[test]
fn reader_after_synchronize_sees_new_value() {
    model(|| {
        let d = Arc::new(Srcu::new());
        let data = Arc::new(AtomicUsize::new(0));
        let after = Arc::new(AtomicBool::new(false));
        let r = {
            let (d, data, after) = (d.clone(), data.clone(), after.clone());
            thread::spawn(move || {
                let g = d.read();
                // Relaxed on purpose: only the domain's barriers order these.
                if after.load(Ordering::Relaxed) {
                    assert_eq!(
                        data.load(Ordering::Relaxed),
                        1,
                        "stale read after synchronize"
                    );
                }
                drop(g);
            })
        };
        data.store(1, Ordering::Relaxed);
        d.synchronize();
        after.store(true, Ordering::Relaxed);
        r.join().unwrap();
    });
}

/// (3) The index-flip race: a reader loads `idx`, the writer completes a grace
/// period (flipping `idx`) and starts the next, and only then does the reader
/// bump `locks[old idx]` — the straggler the first scan exists for.
#[test]
fn index_flip_race() {
    model(|| {
        against_a_reader(|s| {
            for _ in 0..2 {
                s.replace_and_synchronize();
            }
        });
    });
}

/// A cell shared between threads whose every access loom checks for races.
struct Checked(UnsafeCell<usize>);
// SAFETY: accesses go through loom's `with_mut`, which reports any pair that
// is not ordered by happens-before; that is what the model tests.
unsafe impl Sync for Checked {}
// SAFETY: as above.
unsafe impl Send for Checked {}

impl Checked {
    fn bump(&self) {
        self.0.with_mut(|v| {
            // SAFETY: loom checks this access for races.
            unsafe { *v += 1 }
        });
    }
}

/// (4) `call` + `barrier`: the callback runs exactly once, after the reader
/// that predates it, while another thread polls concurrently.
#[test]
fn call_then_barrier() {
    model(|| {
        let d = Arc::new(Srcu::new());
        let in_cs = Arc::new(Checked(UnsafeCell::new(0)));
        let runs = Arc::new(AtomicUsize::new(0));
        let g = d.read();
        let poller = {
            let d = d.clone();
            thread::spawn(move || d.poll())
        };
        {
            let (in_cs, runs) = (in_cs.clone(), runs.clone());
            d.call(move || {
                // Must not race with the reader's write below.
                in_cs.bump();
                runs.fetch_add(1, Ordering::Relaxed);
            });
        }
        let reader = {
            let in_cs = in_cs.clone();
            // The guard moves to another thread, which writes, then ends it.
            // SAFETY: `d` outlives the thread (joined below).
            let g: SrcuGuard<'static> = unsafe { std::mem::transmute(g) };
            thread::spawn(move || {
                in_cs.bump();
                drop(g);
            })
        };
        d.barrier().unwrap();
        assert_eq!(runs.load(Ordering::Relaxed), 1);
        reader.join().unwrap();
        poller.join().unwrap().unwrap();
        d.barrier().unwrap();
        assert_eq!(runs.load(Ordering::Relaxed), 1);
    });
}

/// (5) A guard taken on one thread, which then exits, is dropped on another
/// (possibly reusing the first thread's id and slot); a concurrent writer's
/// `synchronize` waits for it.
#[test]
fn guard_dropped_on_another_thread() {
    model(|| {
        let s = Shared::new();
        let writer = {
            let s = s.clone();
            thread::spawn(move || s.replace_and_synchronize())
        };
        let taker = {
            let s = s.clone();
            thread::spawn(move || {
                // SAFETY: `s` outlives the guard: the thread that drops it
                // holds a clone of `s` and is joined below.
                let g: SrcuGuard<'static> = unsafe { std::mem::transmute(s.domain.read()) };
                let p = s.current.load(Ordering::Acquire);
                (g, p as usize)
            })
        };
        let (g, p) = taker.join().unwrap();
        let dropper = {
            let s = s.clone();
            thread::spawn(move || {
                // SAFETY: `p` was loaded under `g`, which is still alive.
                unsafe { Value::check(p as *const Value) };
                drop(g);
                drop(s);
            })
        };
        dropper.join().unwrap();
        writer.join().unwrap();
    });
}

/// (6) The scan's pre-check (an unfenced lock sum that lets a scan give up
/// without the heavy barrier, DESIGN §3.3): a reader that enters and leaves
/// twice, so its counts change between the writer's unlock sum, its
/// pre-check and its fenced lock sum, while the writer retires a value and
/// polls step by step (each poll's scans may give up at the pre-check) before
/// its `barrier`. Neither critical section may see the value freed.
#[test]
fn scan_precheck_races_reentering_reader() {
    model(|| {
        let s = Shared::new();
        let r = {
            let s = s.clone();
            thread::spawn(move || {
                s.read_and_check();
                s.read_and_check();
            })
        };
        let old = s.publish();
        s.domain.retire(Box::new(Retired(old)));
        s.domain.poll().unwrap();
        s.domain.poll().unwrap();
        s.domain.barrier().unwrap();
        r.join().unwrap();
    });
}
