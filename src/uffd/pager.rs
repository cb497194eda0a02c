//! The pager: registered regions, N handler threads, and the fill gate that
//! keeps a COPY from resurrecting a page the program dropped
//! ([DESIGN §8](crate::docs::design#8-real-faults-the-userfaultfd-pager-srcuffd-feature-uffd-linux-only), invariants U1–U6).

use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use super::image::{Backing, Fill, page_size};
use super::index::{Index, TreeIndex};
use super::sys::{Event, Uffd, Unavailable};

/// Counters kept by the handler threads (all `Relaxed`: statistics only).
#[derive(Default, Debug)]
struct Counters {
    faults: AtomicU64,
    copies: AtomicU64,
    zeropages: AtomicU64,
    wakes: AtomicU64,
    eexist: AtomicU64,
    eagain: AtomicU64,
    enoent: AtomicU64,
    unindexed: AtomicU64,
    other_errors: AtomicU64,
    removes: AtomicU64,
    unmaps: AtomicU64,
    handler_cpu_ns: AtomicU64,
}

/// A snapshot of the pager's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// PAGEFAULT events read.
    pub faults: u64,
    /// Successful `UFFDIO_COPY`s.
    pub copies: u64,
    /// Successful `UFFDIO_ZEROPAGE`s.
    pub zeropages: u64,
    /// `UFFDIO_WAKE`s issued (after EEXIST, ENOENT or an unindexed address).
    pub wakes: u64,
    /// COPY/ZEROPAGE that found the page present (another handler filled it).
    pub eexist: u64,
    /// COPY/ZEROPAGE refused while a REMOVE/UNMAP event was unread (retried).
    pub eagain: u64,
    /// COPY/ZEROPAGE whose range is no longer registered (unmapped).
    pub enoent: u64,
    /// Faults at addresses the index does not hold (woken, not filled).
    pub unindexed: u64,
    /// Any other ioctl error.
    pub other_errors: u64,
    /// REMOVE events applied.
    pub removes: u64,
    /// UNMAP events applied.
    pub unmaps: u64,
    /// CPU time of handler threads that have exited, in nanoseconds.
    pub handler_cpu_ns: u64,
}

/// Knobs for tests: not part of the supported API.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    /// Take the fill gate (U2, U3). `false` reintroduces the REMOVE-vs-COPY
    /// race, so that a test can show it detects it.
    pub gate: bool,
    /// Sleep this long between the lookup and the COPY (widens the race).
    pub fill_delay: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            gate: true,
            fill_delay: Duration::ZERO,
        }
    }
}

/// A region of registered memory (plain data: the program owns the mapping
/// and may `madvise`/`munmap` it; the pager follows through events).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First byte (page-aligned).
    pub addr: u64,
    /// Length in bytes (whole pages).
    pub len: u64,
}

impl Region {
    /// `addr .. addr + len`.
    pub fn range(&self) -> Range<u64> {
        self.addr..self.addr + self.len
    }
}

/// A userfaultfd pager: regions of this process registered in MISSING mode,
/// resolved from the [`Index`] by handler threads ([`Pager::spawn`]).
pub struct Pager<I: Index = TreeIndex> {
    uffd: Uffd,
    index: I,
    /// The fill gate: shared for lookup+fill, exclusive for reading events
    /// and applying REMOVE/UNMAP, and for adding regions (U2–U4).
    gate: RwLock<()>,
    page: u64,
    stats: Counters,
    stop: AtomicBool,
    tuning: Tuning,
}

impl<I: Index> std::fmt::Debug for Pager<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pager")
            .field("index", &I::NAME)
            .field("uffd", &self.uffd)
            .finish_non_exhaustive()
    }
}

impl<I: Index> Pager<I> {
    /// Opens a userfaultfd (falling back to `UFFD_USER_MODE_ONLY`) and wraps
    /// `index`, which should be empty.
    pub fn new(index: I) -> Result<Arc<Self>, Unavailable> {
        Self::with_tuning(index, Tuning::default())
    }

    #[doc(hidden)]
    pub fn with_tuning(index: I, tuning: Tuning) -> Result<Arc<Self>, Unavailable> {
        Ok(Arc::new(Self {
            uffd: Uffd::open()?,
            index,
            gate: RwLock::new(()),
            page: page_size(),
            stats: Counters::default(),
            stop: AtomicBool::new(false),
            tuning,
        }))
    }

    /// The userfaultfd.
    pub fn uffd(&self) -> &Uffd {
        &self.uffd
    }

    /// The index.
    pub fn index(&self) -> &I {
        &self.index
    }

    /// The page size.
    pub fn page_size(&self) -> u64 {
        self.page
    }

    /// Maps `len` bytes (rounded up to pages) of private anonymous memory
    /// wherever the kernel chooses, indexes it with `backing` and registers
    /// it. Nothing is populated: every first touch is a fault.
    pub fn map(&self, len: u64, backing: Backing) -> io::Result<Region> {
        self.map_inner(None, len, backing)
    }

    /// As [`Pager::map`] at exactly `addr`, with `MAP_FIXED_NOREPLACE`:
    /// fails with `EEXIST` rather than replace an existing mapping.
    pub fn map_at(&self, addr: u64, len: u64, backing: Backing) -> io::Result<Region> {
        self.map_inner(Some(addr), len, backing)
    }

    fn map_inner(&self, addr: Option<u64>, len: u64, backing: Backing) -> io::Result<Region> {
        let len = len.div_ceil(self.page).max(1) * self.page;
        // U4: a kernel-chosen address can be one whose munmap has not yet
        // had its UNMAP event read (the VMA is gone, the event pending), so
        // the index still holds it. Such an address is parked (kept mapped,
        // unregistered, so the kernel picks another) and released at the end.
        let mut parked = Vec::new();
        let result = loop {
            let region = match mmap_anon(addr, len) {
                Ok(r) => r,
                Err(e) => break Err(e),
            };
            let added = {
                // Exclusive: the add is ordered against every event read.
                let _x = self.gate.write().unwrap_or_else(PoisonError::into_inner);
                self.index.add(region.range(), backing.clone()).is_ok()
            };
            if added {
                break Ok(region);
            }
            parked.push(region);
            if addr.is_some() || parked.len() >= 64 {
                break Err(io::Error::other(
                    "the new mapping overlaps an indexed region (UNMAP events not being read?)",
                ));
            }
        };
        for r in parked {
            // SAFETY: our own unregistered mapping; nothing references it.
            unsafe { libc::munmap(r.addr as *mut _, r.len as usize) };
        }
        let region = result?;
        if let Err(e) = self.uffd.register(region.addr, region.len) {
            // SAFETY: as above; never registered, so no UNMAP event follows
            // and the index entry is dropped by hand.
            unsafe { libc::munmap(region.addr as *mut _, region.len as usize) };
            let _x = self.gate.write().unwrap_or_else(PoisonError::into_inner);
            self.index.unmap(region.range());
            return Err(e);
        }
        Ok(region)
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        let c = &self.stats;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            faults: l(&c.faults),
            copies: l(&c.copies),
            zeropages: l(&c.zeropages),
            wakes: l(&c.wakes),
            eexist: l(&c.eexist),
            eagain: l(&c.eagain),
            enoent: l(&c.enoent),
            unindexed: l(&c.unindexed),
            other_errors: l(&c.other_errors),
            removes: l(&c.removes),
            unmaps: l(&c.unmaps),
            handler_cpu_ns: l(&c.handler_cpu_ns),
        }
    }

    /// Starts `n >= 1` handler threads. They run until [`Handlers::stop`]
    /// (or drop).
    pub fn spawn(self: &Arc<Self>, n: usize) -> io::Result<Handlers<I>> {
        self.stop.store(false, Ordering::Relaxed);
        let mut threads = Vec::new();
        for i in 0..n.max(1) {
            let p = self.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("uffd-handler-{i}"))
                    .spawn(move || p.run())?,
            );
        }
        Ok(Handlers {
            pager: self.clone(),
            threads,
        })
    }

    fn run(&self) {
        let mut events = Vec::with_capacity(64);
        let mut pending: Vec<u64> = Vec::new();
        let mut faults: Vec<u64> = Vec::new();
        // Relaxed: the flag only ends the loop; joining orders the rest.
        while !self.stop.load(Ordering::Relaxed) {
            events.clear();
            let read = {
                // U2: events are read, and REMOVE/UNMAP applied, under the
                // exclusive gate, so no lookup+fill overlaps the window in
                // which the kernel may zap a range the index does not yet
                // record as removed.
                let _x = self.gate_write();
                let r = self.uffd.read_events(&mut events, 64);
                for ev in &events {
                    match *ev {
                        Event::Remove { start, end } => {
                            self.index.remove(start..end);
                            self.stats.removes.fetch_add(1, Ordering::Relaxed);
                        }
                        Event::Unmap { start, end } => {
                            self.index.unmap(start..end);
                            self.stats.unmaps.fetch_add(1, Ordering::Relaxed);
                        }
                        Event::PageFault { addr, .. } => faults.push(addr),
                        Event::Other(_) => {}
                    }
                }
                r
            };
            self.stats
                .faults
                .fetch_add(faults.len() as u64, Ordering::Relaxed);
            for addr in faults.drain(..) {
                self.resolve(addr, &mut pending);
            }
            // Faults refused with EAGAIN while a REMOVE/UNMAP was unread:
            // the event has been read by now (by us above or by another
            // handler), so retry them; a still-unread event makes them wait
            // another round.
            if !pending.is_empty() {
                let retry = std::mem::take(&mut pending);
                for addr in retry {
                    self.resolve(addr, &mut pending);
                }
            }
            match read {
                Ok(n) if n > 0 => {}
                Ok(_) => {
                    let timeout = if pending.is_empty() { 50 } else { 1 };
                    self.uffd.poll(timeout);
                }
                Err(_) => {
                    self.stats.other_errors.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        self.stats
            .handler_cpu_ns
            .fetch_add(thread_cpu_ns(), Ordering::Relaxed);
    }

    fn gate_write(&self) -> Option<std::sync::RwLockWriteGuard<'_, ()>> {
        self.tuning
            .gate
            .then(|| self.gate.write().unwrap_or_else(PoisonError::into_inner))
    }

    /// Looks `addr` up and fills its page (U3, U5, U6).
    fn resolve(&self, addr: u64, pending: &mut Vec<u64>) {
        let page = addr & !(self.page - 1);
        let len = self.page;
        let result = {
            // U3: lookup and fill under the shared gate.
            let _s = self
                .tuning
                .gate
                .then(|| self.gate.read().unwrap_or_else(PoisonError::into_inner));
            self.index.with_fill(page, len, |fill| {
                if !self.tuning.fill_delay.is_zero() {
                    std::thread::sleep(self.tuning.fill_delay);
                }
                match fill {
                    None => None,
                    Some(Fill::Zero) => Some((self.uffd.zeropage(page, len), false)),
                    Some(Fill::Copy(src)) => {
                        // SAFETY: 1. `src` is a page-sized slice of an image
                        // that the index keeps alive for the whole closure
                        // (`with_fill`).
                        let r = unsafe { self.uffd.copy(page, src.as_ptr(), len) };
                        Some((r, true))
                    }
                }
            })
        };
        let s = &self.stats;
        match result {
            Some((Ok(()), true)) => {
                s.copies.fetch_add(1, Ordering::Relaxed);
            }
            Some((Ok(()), false)) => {
                s.zeropages.fetch_add(1, Ordering::Relaxed);
            }
            Some((Err(libc::EAGAIN), _)) => {
                // U5: an unread REMOVE/UNMAP; retry after reading events.
                s.eagain.fetch_add(1, Ordering::Relaxed);
                pending.push(addr);
            }
            Some((Err(e), _)) => {
                // U6: EEXIST (filled by another handler: its COPY woke only
                // the threads waiting then, so wake ours), ENOENT (range
                // unmapped: the thread retries and sees the real mapping
                // state) and anything else: wake, never leave it asleep.
                match e {
                    libc::EEXIST => s.eexist.fetch_add(1, Ordering::Relaxed),
                    libc::ENOENT => s.enoent.fetch_add(1, Ordering::Relaxed),
                    _ => s.other_errors.fetch_add(1, Ordering::Relaxed),
                };
                self.wake(page);
            }
            None => {
                s.unindexed.fetch_add(1, Ordering::Relaxed);
                self.wake(page);
            }
        }
    }

    fn wake(&self, page: u64) {
        let _ = self.uffd.wake(page, self.page);
        self.stats.wakes.fetch_add(1, Ordering::Relaxed);
    }
}

/// A private anonymous read-write mapping of `len` bytes, at exactly `addr`
/// (`MAP_FIXED_NOREPLACE`) or where the kernel chooses.
fn mmap_anon(addr: Option<u64>, len: u64) -> io::Result<Region> {
    let mut flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    if addr.is_some() {
        flags |= libc::MAP_FIXED_NOREPLACE;
    }
    let hint = addr.unwrap_or(0) as *mut libc::c_void;
    // SAFETY: MAP_FIXED_NOREPLACE (or no address) never replaces an existing
    // mapping, so no memory anything references is affected.
    let p = unsafe {
        libc::mmap(
            hint,
            len as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    if addr.is_some_and(|a| a != p as u64) {
        // Kernels before 4.17 treat MAP_FIXED_NOREPLACE as a hint.
        // SAFETY: the mapping we just created.
        unsafe { libc::munmap(p, len as usize) };
        return Err(io::Error::from_raw_os_error(libc::EEXIST));
    }
    Ok(Region {
        addr: p as u64,
        len,
    })
}

/// CPU time of the calling thread, in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: one valid `timespec` to write.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The running handler threads of one pager.
pub struct Handlers<I: Index> {
    pager: Arc<Pager<I>>,
    threads: Vec<JoinHandle<()>>,
}

impl<I: Index> Handlers<I> {
    /// Stops and joins the threads; their CPU time is then in
    /// [`Stats::handler_cpu_ns`]. Threads still blocked in a fault at this
    /// point stay blocked until the userfaultfd is closed.
    pub fn stop(mut self) -> Stats {
        self.stop_inner();
        self.pager.stats()
    }

    fn stop_inner(&mut self) {
        self.pager.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl<I: Index> Drop for Handlers<I> {
    fn drop(&mut self) {
        self.stop_inner();
    }
}
