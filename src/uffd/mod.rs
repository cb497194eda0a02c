//! A userfaultfd pager (Linux only, feature `uffd`): real page faults of real
//! threads, resolved through the crate's tree.
//!
//! The program maps regions with [`Pager::map`] (anonymous private memory,
//! registered in MISSING mode), each with a [`Backing`] — an [`Image`] (a
//! snapshot file or in-memory bytes) at an offset, or zero-fill. Handler
//! threads ([`Pager::spawn`]) read the fault events, look the page up in the
//! [`Index`] — lock-free for [`TreeIndex`] — and resolve it with
//! `UFFDIO_COPY` from the backing or `UFFDIO_ZEROPAGE`. The program's
//! `madvise(MADV_DONTNEED)` and `munmap` raise REMOVE and UNMAP events,
//! which turn the range into a zero record or drop it (replace-and-retire).
//!
//! The fill gate that keeps a COPY in flight from resurrecting a page the
//! program just dropped is described, with its invariants U1–U6, in
//! [DESIGN §8](crate::docs::design#8-real-faults-the-userfaultfd-pager-srcuffd-feature-uffd-linux-only).
//!
//! ```no_run
//! use maple_rcu::uffd::{Backing, Image, Pager, TreeIndex};
//! use std::sync::Arc;
//!
//! let pager = Pager::new(TreeIndex::new()).expect("userfaultfd");
//! let image = Arc::new(Image::generate(1 << 20, |b| b.fill(7)).unwrap());
//! let r = pager.map(1 << 20, Backing::Image { image, offset: 0 }).unwrap();
//! let handlers = pager.spawn(2).unwrap();
//! // SAFETY: the region is mapped readable and nothing else references it.
//! let first = unsafe { *(r.addr as *const u8) }; // a real fault, resolved by a handler
//! assert_eq!(first, 7);
//! println!("{:?}", handlers.stop());
//! ```

mod image;
mod index;
mod pager;
mod sys;

pub use image::{Backing, Fill, Image, page_size};
pub use index::{Index, LinearIndex, Overlap, RwLockIndex, TreeIndex};
#[doc(hidden)]
pub use pager::Tuning;
pub use pager::{Handlers, Pager, Region, Stats, thread_cpu_ns};
pub use sys::{Event, FEATURE_EVENT_REMOVE, FEATURE_EVENT_UNMAP, IoctlResult, Uffd, Unavailable};
