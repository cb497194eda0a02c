//! Backing stores: an [`Image`] (a snapshot file mapped read-only, or bytes
//! copied into page-aligned anonymous memory) and [`Backing`], what one
//! range of registered memory is filled from.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;

/// The system page size.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no memory preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as u64 } else { 4096 }
}

/// Read-only, page-aligned bytes that faults are filled from. The mapping is
/// rounded up to whole pages (the tail of the last page reads as zeros), so
/// any page that starts below [`Image::len`] can be copied whole.
#[derive(Debug)]
pub struct Image {
    ptr: NonNull<u8>,
    len: usize,
    map_len: usize,
}

// SAFETY: the mapping is never written after construction and is unmapped
// only by `Drop`, so shared references from any thread are sound.
unsafe impl Send for Image {}
// SAFETY: as above.
unsafe impl Sync for Image {}

impl Image {
    /// `len` bytes of anonymous memory filled by `fill` (which sees a zeroed
    /// buffer), then made read-only.
    pub fn generate(len: usize, fill: impl FnOnce(&mut [u8])) -> io::Result<Image> {
        let page = page_size() as usize;
        let map_len = len.div_ceil(page).max(1) * page;
        // SAFETY: a fresh private anonymous mapping; no existing memory is
        // affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `p` is a writable mapping of `map_len >= len` bytes that
        // only this function references.
        fill(unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), len) });
        // SAFETY: `p .. p + map_len` is our mapping.
        unsafe { libc::mprotect(p, map_len, libc::PROT_READ) };
        Ok(Image {
            // SAFETY: mmap never returns null on success.
            ptr: unsafe { NonNull::new_unchecked(p.cast()) },
            len,
            map_len,
        })
    }

    /// A copy of `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> io::Result<Image> {
        Image::generate(bytes.len(), |b| b.copy_from_slice(bytes))
    }

    /// A snapshot file, mapped private and read-only (as Firecracker does).
    /// Truncating the file while mapped is the caller's problem (SIGBUS).
    pub fn open(path: &Path) -> io::Result<Image> {
        let f = File::open(path)?;
        let len = f.metadata()?.len() as usize;
        if len == 0 {
            return Image::generate(0, |_| ());
        }
        let page = page_size() as usize;
        let map_len = len.div_ceil(page) * page;
        // SAFETY: a fresh read-only private mapping of an fd we own; no
        // existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                f.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Image {
            // SAFETY: mmap never returns null on success.
            ptr: unsafe { NonNull::new_unchecked(p.cast()) },
            len,
            map_len,
        })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty image.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr .. ptr + len` is mapped read-only for `self`'s life.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The whole page of `page` bytes at `off`, if `off` is inside the image
    /// (the tail past `len` in the last page reads as zeros).
    fn page_at(&self, off: u64, page: u64) -> Option<&[u8]> {
        let off = usize::try_from(off).ok()?;
        if off >= self.len || off + page as usize > self.map_len {
            return None;
        }
        // SAFETY: `off + page <= map_len`, all mapped read-only for `self`'s
        // life.
        Some(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(off), page as usize) })
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        // SAFETY: our own mapping; `&mut self` means no slice of it is alive.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.map_len) };
    }
}

/// What a range of registered memory is filled from.
#[derive(Clone, Debug)]
pub enum Backing {
    /// The image's bytes from `offset` on (page-aligned): the range's first
    /// page is the image page at `offset`. Pages past the image's end are
    /// zero-filled.
    Image {
        /// The bytes.
        image: Arc<Image>,
        /// Image offset of the range's first byte.
        offset: u64,
    },
    /// Zero-fill: a fresh region without a snapshot, or a range the program
    /// dropped with `madvise(DONTNEED)`.
    Zero,
}

/// How one faulting page is resolved.
#[derive(Clone, Copy, Debug)]
pub enum Fill<'a> {
    /// `UFFDIO_COPY` from this page-sized slice.
    Copy(&'a [u8]),
    /// `UFFDIO_ZEROPAGE`.
    Zero,
}

impl Backing {
    /// The backing of the piece that starts `delta` bytes into this one.
    pub fn skip(&self, delta: u64) -> Backing {
        match self {
            Backing::Image { image, offset } => Backing::Image {
                image: image.clone(),
                offset: offset + delta,
            },
            Backing::Zero => Backing::Zero,
        }
    }

    /// The fill for the page `delta` bytes into this backing's range.
    pub fn fill(&self, delta: u64, page: u64) -> Fill<'_> {
        match self {
            Backing::Image { image, offset } => match image.page_at(offset + delta, page) {
                Some(p) => Fill::Copy(p),
                None => Fill::Zero,
            },
            Backing::Zero => Fill::Zero,
        }
    }

    /// True for [`Backing::Zero`].
    pub fn is_zero(&self) -> bool {
        matches!(self, Backing::Zero)
    }
}
