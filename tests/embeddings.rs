//! The three embeddings of issue 13 (`examples/embed/`) agree with the
//! structures they are measured against: same lookups, same allocated
//! addresses, same attributes (the example checks the same before timing).

#[path = "../benches/common/mod.rs"]
mod common;
#[path = "../examples/embed/mod.rs"]
mod embed;

#[test]
fn registry_agrees_with_rwlock_btreemap_and_arcswap_vec() {
    embed::registry::agree(256, 2000);
}

#[test]
fn guest_allocator_agrees_with_a_btreemap_free_list() {
    embed::guest_alloc::agree(512, 5000);
}

#[test]
fn attribute_map_agrees_with_rangemap_and_nodit() {
    embed::attrs::agree(8 << 10, 50_000);
}
