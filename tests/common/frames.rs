//! Frame accounting at the end of a test: once everything is unmapped, the
//! deferred frees have run and the family is consistent, every frame ever
//! allocated has been freed.

use maple_rcu::mm::AddressSpace;

/// Runs `mm`'s deferred frees (`reclaim`), checks it as a family of one
/// (`check_family`: PTEs, reverse map and refcounts agree) and asserts that
/// no frame is live and every allocated frame was freed. `ctx` prefixes the
/// failure message.
pub fn assert_all_freed(mm: &AddressSpace, ctx: &str) {
    mm.reclaim();
    AddressSpace::check_family(&[mm]).unwrap();
    let s = mm.stats();
    assert_eq!(
        (s.frames_live, s.frames_allocated),
        (0, s.frames_freed),
        "{ctx}{s:?}"
    );
}
