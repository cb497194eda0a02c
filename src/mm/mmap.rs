//! `mmap` (anonymous and file).

use crate::mm::error::MmError;
use crate::mm::flags::{MapFlags, Prot};
use crate::mm::pagetable::PAGE;
use crate::mm::placement::{Thp, get_unmapped_area, round_hint_to_min};
use crate::mm::retire::After;
use crate::mm::space::{AddressSpace, page_up};
use crate::mm::vma::{Attrs, FileMap, Spec};

impl AddressSpace {
    /// `mmap` of anonymous memory (`MapFlags::ANONYMOUS` is implied). `hint`
    /// is the address argument (`None` = NULL). Returns the start address.
    pub fn mmap(
        &self,
        hint: Option<u64>,
        len: u64,
        prot: Prot,
        flags: MapFlags,
    ) -> Result<u64, MmError> {
        self.do_mmap(hint, len, prot, flags, None)
    }

    /// `mmap` of file `file_id` at byte `offset`.
    pub fn mmap_file(
        &self,
        hint: Option<u64>,
        len: u64,
        prot: Prot,
        flags: MapFlags,
        file_id: u64,
        offset: u64,
    ) -> Result<u64, MmError> {
        self.do_mmap(hint, len, prot, flags, Some((file_id, offset)))
    }

    pub(crate) fn do_mmap(
        &self,
        hint: Option<u64>,
        len: u64,
        prot: Prot,
        flags: MapFlags,
        file: Option<(u64, u64)>,
    ) -> Result<u64, MmError> {
        let offset = file.map_or(0, |f| f.1);
        if !offset.is_multiple_of(PAGE) || len == 0 {
            return Err(MmError::Inval);
        }
        // Linux's `do_mmap` switches on the map type only after placement
        // (so a bad type loses to ENOMEM/EPERM/EEXIST); the THP rule only
        // needs to know whether a valid type is shared.
        let map_type = match flags.bits() & 0x3 {
            1 if file.is_none() && flags.contains(MapFlags::GROWSDOWN) => Err(MmError::Inval),
            1 => Ok(true),
            2 => Ok(false),
            _ => Err(MmError::Inval),
        };
        let shared = map_type.clone().unwrap_or(false);
        let len = page_up(len).ok_or(MmError::NoMem)?;
        if file.is_some() && offset.checked_add(len).is_none() {
            return Err(MmError::Overflow);
        }
        let fixed = flags.intersects(MapFlags::FIXED | MapFlags::FIXED_NOREPLACE);
        let hint = hint.unwrap_or(0);
        let hint = if fixed { hint } else { round_hint_to_min(hint) };
        let thp = Thp::rule(len, file.is_none() && !shared, file.map(|f| f.1));
        let _w = self.write_lock();
        let txn = self.tree.write();
        // Linux `do_mmap`: "Too many mappings?" before placement.
        if self.too_many_maps(txn.len()) {
            return Err(MmError::NoMem);
        }
        let addr = get_unmapped_area(&txn, hint, len, fixed, thp)?;
        let range = addr..addr + len;
        if flags.contains(MapFlags::FIXED_NOREPLACE) && txn.range(range.clone()).next().is_some() {
            return Err(MmError::Exist);
        }
        map_type?;
        // `__mmap_region` unmaps what the range covers with the munmap rule.
        if self.unmap_needs_room(&txn, &range) {
            return Err(MmError::NoMem);
        }
        let mut attrs = Attrs::anon(prot, shared);
        attrs.growsdown = flags.contains(MapFlags::GROWSDOWN);
        if let Some((id, offset)) = file {
            attrs.file = Some(FileMap {
                id,
                offset,
                dev: (0, 0),
                inode: id,
                path: None,
                deleted: false,
            });
        }
        let spec = Spec {
            range: range.clone(),
            attrs,
        };
        self.replace(txn, range.clone(), vec![spec], After::Unmap(vec![range]));
        Ok(addr)
    }
}
