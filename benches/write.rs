//! Writes: steady-state churn (remove a random entry, re-insert one removed
//! earlier) in transactions of k = 1, 8, 64 operations, at N = 4Ki, 64Ki and 256Ki,
//! MapleTree vs BTreeMap vs RwLock<BTreeMap>.
//!
//! k = 1 is a plain `insert`/`remove` (one commit each); for the RwLock one
//! transaction is one write-lock acquisition. Removals and re-insertions hit
//! different random entries (a FIFO of 64 removed entries sits between them),
//! so a transaction touches about k random leaves. Reported time is per
//! operation (`Throughput::Elements(k)`), measured as the thread's CPU time
//! (see `common::ThreadTime`; MapleTree's values are `u64`, so commits recycle
//! all of their garbage inline on the writing thread, and it is counted).

#[path = "common/mod.rs"]
mod common;

use common::*;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::collections::{BTreeMap, VecDeque};
use std::sync::RwLock;
use std::time::Duration;

const HOLES: usize = 64;

/// The sequence of operations, identical for every contender.
struct Churn {
    ranges: Vec<(u64, u64)>,
    present: Vec<bool>,
    removed: VecDeque<usize>,
    rng: Rng,
    remove_next: bool,
}

enum Op {
    Insert(usize),
    Remove(usize),
}

impl Churn {
    /// The churn state and the entries to remove before it starts.
    fn new(ranges: &[(u64, u64)]) -> (Self, Vec<usize>) {
        let mut c = Self {
            ranges: ranges.to_vec(),
            present: vec![true; ranges.len()],
            removed: VecDeque::new(),
            rng: Rng::new(5),
            remove_next: true,
        };
        let mut pre = Vec::new();
        while c.removed.len() < HOLES {
            let i = c.pick();
            c.present[i] = false;
            c.removed.push_back(i);
            pre.push(i);
        }
        (c, pre)
    }

    fn pick(&mut self) -> usize {
        loop {
            let i = self.rng.index(self.ranges.len());
            if self.present[i] {
                return i;
            }
        }
    }

    fn next(&mut self) -> Op {
        self.remove_next = !self.remove_next;
        if !self.remove_next {
            let i = self.pick();
            self.present[i] = false;
            self.removed.push_back(i);
            Op::Remove(i)
        } else {
            let i = self.removed.pop_front().unwrap();
            self.present[i] = true;
            Op::Insert(i)
        }
    }
}

fn write(c: &mut Criterion<ThreadTime>) {
    for n in [4usize << 10, 64 << 10, 256 << 10] {
        let ranges = layout(n, 42);
        for k in [1usize, 8, 64] {
            let mut g = c.benchmark_group(format!("write/{}/k{}", n_label(n), k));
            g.throughput(Throughput::Elements(k as u64))
                .warm_up_time(Duration::from_millis(300))
                .measurement_time(Duration::from_millis(1500))
                .sample_size(20);

            g.bench_function("maple", |b| {
                let tree = maple(&ranges);
                let (mut churn, pre) = Churn::new(&ranges);
                for i in pre {
                    tree.remove(ranges[i].0).unwrap();
                }
                b.iter(|| {
                    let mut w = tree.write();
                    for _ in 0..k {
                        match churn.next() {
                            Op::Insert(i) => {
                                let (s, e) = ranges[i];
                                w.insert(s..e, value(i)).unwrap();
                            }
                            Op::Remove(i) => {
                                w.remove(ranges[i].0).unwrap();
                            }
                        }
                    }
                    w.commit();
                });
                tree.validate().unwrap();
            });

            let apply = |m: &mut BTreeMap<u64, (u64, u64)>, op: Op| match op {
                Op::Insert(i) => {
                    let (s, e) = ranges[i];
                    assert!(m.insert(s, (e, value(i))).is_none());
                }
                Op::Remove(i) => {
                    m.remove(&ranges[i].0).unwrap();
                }
            };
            g.bench_function("btreemap", |b| {
                let mut m = btree(&ranges);
                let (mut churn, pre) = Churn::new(&ranges);
                for i in pre {
                    m.remove(&ranges[i].0).unwrap();
                }
                b.iter(|| {
                    for _ in 0..k {
                        apply(&mut m, churn.next());
                    }
                });
            });
            g.bench_function("rwlock_btreemap", |b| {
                let m = RwLock::new(btree(&ranges));
                let (mut churn, pre) = Churn::new(&ranges);
                for i in pre {
                    m.write().unwrap().remove(&ranges[i].0).unwrap();
                }
                b.iter(|| {
                    let mut w = m.write().unwrap();
                    for _ in 0..k {
                        apply(&mut w, churn.next());
                    }
                });
            });
            g.finish();
        }
    }
}

criterion_group! {
    name = benches;
    config = cpu_criterion();
    targets = write
}
criterion_main!(benches);
