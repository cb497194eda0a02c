//! Counted tree values for the differential tests: every value made is
//! numbered, each drop is counted, so a test can assert that every value was
//! dropped exactly once (no leak, no double drop). `Val::clone` can be made
//! to panic once (`Log::panic_next_clone`). Include next to
//! `common/tree_model.rs` (as `mod tree_model`).
#![allow(dead_code)]

use super::tree_model::Model;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Per value id, how many times it was dropped.
#[derive(Default)]
pub struct Log {
    pub drops: Mutex<Vec<u32>>,
    /// The next `clone` panics (and clears the flag).
    pub panic_next_clone: AtomicBool,
}

impl Log {
    pub fn make(self: &Arc<Self>, tag: u64) -> Val {
        let mut d = self.drops.lock().unwrap();
        d.push(0);
        Val {
            tag,
            id: d.len() - 1,
            log: self.clone(),
        }
    }
    pub fn made(&self) -> usize {
        self.drops.lock().unwrap().len()
    }
    pub fn live(&self) -> usize {
        self.drops
            .lock()
            .unwrap()
            .iter()
            .filter(|&&n| n == 0)
            .count()
    }
    /// Every value made so far was dropped exactly once.
    pub fn all_dropped_once(&self) {
        let d = self.drops.lock().unwrap();
        for (id, &n) in d.iter().enumerate() {
            assert_eq!(n, 1, "value {id} dropped {n} times");
        }
    }
    /// No value was dropped twice.
    pub fn none_twice(&self) {
        let d = self.drops.lock().unwrap();
        for (id, &n) in d.iter().enumerate() {
            assert!(n <= 1, "value {id} dropped {n} times");
        }
    }
}

/// A value that records its drop; `tag` is what the model stores.
pub struct Val {
    pub tag: u64,
    pub id: usize,
    pub log: Arc<Log>,
}

impl Clone for Val {
    fn clone(&self) -> Self {
        if self.log.panic_next_clone.swap(false, Relaxed) {
            panic!("hostile clone");
        }
        self.log.make(self.tag)
    }
}

impl Drop for Val {
    fn drop(&mut self) {
        self.log.drops.lock().unwrap()[self.id] += 1;
    }
}

pub fn tagged<'a>(it: impl Iterator<Item = (Range<u64>, &'a Val)>) -> Vec<(Range<u64>, u64)> {
    it.map(|(r, v)| (r, v.tag)).collect()
}

pub fn model_all(m: &Model) -> Vec<(Range<u64>, u64)> {
    m.map.iter().map(|(&s, &(e, v))| (s..e, v)).collect()
}
