//! `/proc/pid/maps` out ([`AddressSpace::maps_string`]) and in
//! ([`AddressSpace::from_maps`]), using the kernel-exact printer and parser
//! in `procmaps.rs` (also re-exported by [`crate::trace`]).

use super::TASK_SIZE;
use super::error::MmError;
use super::flags::{FaultPolicy, MapSource, Prot};
use super::pagetable::PAGE;
use super::procmaps::{MapsEntry, parse_maps};
use super::shmem::{ShmMap, Shmem};
use super::space::AddressSpace;
use super::vma::{Attrs, FileMap, Spec, Vma, VmaInfo};
use std::ops::Range;

/// FNV-1a, to give path-only files (`00:00 0 /path`) a stable identity.
fn path_id(path: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h | 1 << 63
}

impl Vma {
    /// Linux `vma_is_initial_heap`, for anonymous VMAs without a name.
    fn is_heap(&self, brk: &Range<u64>) -> bool {
        let a = &self.spec.attrs;
        a.file.is_none()
            && a.name.is_none()
            && self.spec.range.start <= brk.end
            && self.spec.range.end >= brk.start
    }

    pub(crate) fn info(&self, brk: &Range<u64>) -> VmaInfo {
        let a = &self.spec.attrs;
        VmaInfo {
            range: self.range(),
            prot: a.prot,
            shared: a.shared,
            growsdown: a.growsdown,
            source: match &a.file {
                None => MapSource::Anonymous,
                Some(f) => MapSource::File {
                    id: f.id,
                    offset: f.offset,
                },
            },
            name: match &a.file {
                Some(f) => f.path.clone(),
                None if self.is_heap(brk) => Some("[heap]".to_string()),
                None => a.name.clone(),
            },
        }
    }

    fn maps_entry(&self, brk: &Range<u64>) -> MapsEntry {
        let a = &self.spec.attrs;
        let (offset, dev, inode, deleted) = match &a.file {
            Some(f) => (f.offset, f.dev, f.inode, f.deleted),
            None => (0, (0, 0), 0, false),
        };
        MapsEntry {
            start: self.spec.range.start,
            end: self.spec.range.end,
            read: a.prot.contains(Prot::READ),
            write: a.prot.contains(Prot::WRITE),
            exec: a.prot.contains(Prot::EXEC),
            shared: a.shared,
            offset,
            dev,
            inode,
            path: self.info(brk).name,
            deleted,
        }
    }
}

impl AddressSpace {
    /// The VMAs in `/proc/pid/maps` format, byte for byte as Linux prints
    /// them (padding to column 73 before a name), one line each, ending in
    /// `\n`. VMAs above TASK_SIZE given to `from_maps` (`[vsyscall]`) come last.
    pub fn maps_string(&self) -> String {
        let brk = self.brk_range();
        let pin = self.tree.pin();
        let mut out = String::new();
        for (_, v) in pin.iter() {
            out.push_str(&v.maps_entry(&brk).format_line());
            out.push('\n');
        }
        for e in &self.gate {
            out.push_str(&e.format_line());
            out.push('\n');
        }
        out
    }

    /// An address space holding exactly the VMAs of a `/proc/pid/maps` text
    /// (kernel or single-space form), with the `Speculative` policy.
    /// `[heap]` sets the program break to its range; `[stack]` is GROWSDOWN;
    /// lines above TASK_SIZE (`[vsyscall]`) are kept apart and printed back.
    pub fn from_maps(text: &str) -> Result<AddressSpace, MmError> {
        Self::from_maps_with_policy(text, FaultPolicy::Speculative)
    }

    /// [`from_maps`](Self::from_maps) with a chosen fault policy.
    pub fn from_maps_with_policy(text: &str, policy: FaultPolicy) -> Result<AddressSpace, MmError> {
        let entries = parse_maps(text)?;
        let mut mm = AddressSpace::with_policy(policy);
        let gate = &mut mm.gate;
        let mut heap: Option<Range<u64>> = None;
        {
            let mut txn = mm.tree.write();
            for (i, e) in entries.into_iter().enumerate() {
                let line = i + 1;
                let bad = |why| MmError::BadMapsLine { line, why };
                if e.start >= TASK_SIZE {
                    gate.push(e);
                    continue;
                }
                if e.start % PAGE != 0 || e.end % PAGE != 0 || e.offset % PAGE != 0 {
                    return Err(bad("not page aligned"));
                }
                if e.end > TASK_SIZE {
                    return Err(bad("crosses TASK_SIZE"));
                }
                let mut prot = Prot::empty();
                prot.set(Prot::READ, e.read);
                prot.set(Prot::WRITE, e.write);
                prot.set(Prot::EXEC, e.exec);
                let mut attrs = Attrs::anon(prot, e.shared);
                let is_file = e.inode != 0 || e.path.as_deref().is_some_and(|p| p.starts_with('/'));
                if is_file {
                    let id = if e.inode != 0 {
                        e.inode ^ (u64::from(e.dev.0) << 52) ^ (u64::from(e.dev.1) << 40)
                    } else {
                        path_id(e.path.as_deref().unwrap_or(""))
                    };
                    attrs.file = Some(FileMap {
                        id,
                        offset: e.offset,
                        dev: e.dev,
                        inode: e.inode,
                        path: e.path.clone(),
                        deleted: e.deleted,
                    });
                } else {
                    match e.path.as_deref() {
                        Some("[heap]") => {
                            let h = heap.get_or_insert(e.start..e.end);
                            h.end = e.end;
                        }
                        Some("[stack]") => {
                            attrs.growsdown = true;
                            attrs.name = e.path.clone();
                        }
                        _ => attrs.name = e.path.clone(),
                    }
                }
                if attrs.shared && attrs.file.is_none() {
                    attrs.shm = Some(ShmMap {
                        obj: Shmem::new(&mm.pt.frames),
                        pgoff: 0,
                    });
                }
                let range = e.start..e.end;
                let spec = Spec {
                    range: range.clone(),
                    attrs,
                };
                if txn.insert(range, Vma::new(spec)).is_err() {
                    return Err(bad("overlaps an earlier line"));
                }
            }
            txn.commit();
        }
        if let Some(h) = heap {
            let mut w = mm.brk_lock();
            w.start_brk = h.start;
            w.brk = h.end;
        }
        Ok(mm)
    }
}

impl AddressSpace {
    /// Sets the start of the heap and the program break to `addr`, as `exec`
    /// does (replays take it from the trace's first `brk(NULL)`). The heap is
    /// empty afterwards; existing VMAs are not touched.
    pub fn set_initial_brk(&self, addr: u64) {
        let mut w = self.brk_lock();
        w.start_brk = addr;
        w.brk = addr;
    }
}
