//! The request table: every held and every waiting request of one
//! [`RangeLock`](super::RangeLock), in an interval treap.
//!
//! Plain data, no synchronisation: the lock keeps it inside its mutex.
//!
//! Invariants ([DESIGN §7.1](crate::docs::design#71-state-and-invariants), R1–R4):
//! * nodes live in an arena (`nodes`), addressed by `u32` index; a free slot
//!   is on `free` and is not reachable from `root`;
//! * the treap is a binary search tree on `(start, seq)` and a max-heap on
//!   `prio`; every node's `max_end` is the largest `end` in its subtree;
//! * `blocking` of a node is the number of conflicting requests in the table
//!   that it waits for, `dependents` the number of requests in the table that
//!   wait for it (R2). A node with `blocking == 0` is *granted*.

use crate::sync::thread::Thread;

/// "No node".
pub(super) const NIL: u32 = u32::MAX;

/// One request (held or waiting).
#[derive(Debug)]
pub(super) struct Node {
    pub(super) start: u64,
    pub(super) end: u64,
    /// Largest `end` in the subtree rooted here.
    max_end: u64,
    /// Arrival number: unique, increasing; the tie-break of the key.
    seq: u64,
    prio: u32,
    left: u32,
    right: u32,
    pub(super) write: bool,
    /// Made by a set that already held a lock (R5).
    pub(super) nested: bool,
    /// Requests this one still waits for (0: granted).
    pub(super) blocking: u32,
    /// Requests that wait for this one.
    pub(super) dependents: u32,
    /// The thread to unpark when `blocking` drops to 0.
    pub(super) waiter: Option<Thread>,
    /// One of `blocking` counts conflicting fast-path holders (R8); the
    /// fast release that leaves none clears it.
    pub(super) fast_wait: bool,
}

impl Node {
    fn key(&self) -> (u64, u64) {
        (self.start, self.seq)
    }

    /// Two requests conflict when they overlap and at least one writes.
    pub(super) fn conflicts(&self, start: u64, end: u64, write: bool) -> bool {
        (self.write || write) && self.start < end && start < self.end
    }
}

/// The arena-backed interval treap.
#[derive(Debug, Default)]
pub(super) struct Table {
    nodes: Vec<Node>,
    free: Vec<u32>,
    root: u32,
    len: usize,
    seq: u64,
    rng: u32,
    /// Scratch buffer for overlap queries, kept to avoid allocating.
    scratch: Vec<u32>,
    /// Requests with `fast_wait` (R8), re-checked by fast releases.
    pub(super) fast_waiters: Vec<u32>,
}

impl Table {
    pub(super) fn new() -> Self {
        Self {
            root: NIL,
            rng: 0x9e37_79b9,
            ..Self::default()
        }
    }

    /// Number of requests (held and waiting).
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn node(&self, i: u32) -> &Node {
        &self.nodes[i as usize]
    }

    pub(super) fn node_mut(&mut self, i: u32) -> &mut Node {
        &mut self.nodes[i as usize]
    }

    fn max_end(&self, i: u32) -> u64 {
        if i == NIL {
            0
        } else {
            self.nodes[i as usize].max_end
        }
    }

    fn update(&mut self, i: u32) {
        let n = &self.nodes[i as usize];
        let m = n.end.max(self.max_end(n.left)).max(self.max_end(n.right));
        self.nodes[i as usize].max_end = m;
    }

    /// Takes the overlap buffer: indices of every node that overlaps
    /// `[start, end)`, in key order. Return it with [`Self::put_scratch`].
    /// O(log n + k log n) for k overlaps (expected, treap depth).
    pub(super) fn overlaps(&mut self, start: u64, end: u64) -> Vec<u32> {
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        self.collect(self.root, start, end, &mut out);
        out
    }

    pub(super) fn put_scratch(&mut self, v: Vec<u32>) {
        self.scratch = v;
    }

    fn collect(&self, t: u32, start: u64, end: u64, out: &mut Vec<u32>) {
        if t == NIL {
            return;
        }
        let n = &self.nodes[t as usize];
        // Nothing in this subtree ends after `start`.
        if n.max_end <= start {
            return;
        }
        self.collect(n.left, start, end, out);
        // Keys to the right start at or after `n.start`.
        if n.start < end {
            if start < n.end {
                out.push(t);
            }
            self.collect(n.right, start, end, out);
        }
    }

    /// Adds a request and returns its index. O(log n) expected.
    pub(super) fn insert(&mut self, start: u64, end: u64, write: bool, nested: bool) -> u32 {
        // xorshift32: treap priorities need only be independent of the keys.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        self.seq += 1;
        let node = Node {
            start,
            end,
            max_end: end,
            seq: self.seq,
            prio: x,
            left: NIL,
            right: NIL,
            write,
            nested,
            blocking: 0,
            dependents: 0,
            waiter: None,
            fast_wait: false,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                u32::try_from(self.nodes.len() - 1).expect("more than 2^32 range-lock requests")
            }
        };
        self.root = self.insert_at(self.root, i);
        self.len += 1;
        i
    }

    fn insert_at(&mut self, t: u32, i: u32) -> u32 {
        if t == NIL {
            return i;
        }
        let key = self.nodes[i as usize].key();
        if self.nodes[i as usize].prio > self.nodes[t as usize].prio {
            let (l, r) = self.split(t, key);
            let n = &mut self.nodes[i as usize];
            n.left = l;
            n.right = r;
            self.update(i);
            return i;
        }
        if key < self.nodes[t as usize].key() {
            let c = self.insert_at(self.nodes[t as usize].left, i);
            self.nodes[t as usize].left = c;
        } else {
            let c = self.insert_at(self.nodes[t as usize].right, i);
            self.nodes[t as usize].right = c;
        }
        self.update(t);
        t
    }

    /// Splits `t` into keys `< key` and keys `>= key`.
    fn split(&mut self, t: u32, key: (u64, u64)) -> (u32, u32) {
        if t == NIL {
            return (NIL, NIL);
        }
        if self.nodes[t as usize].key() < key {
            let (a, b) = self.split(self.nodes[t as usize].right, key);
            self.nodes[t as usize].right = a;
            self.update(t);
            (t, b)
        } else {
            let (a, b) = self.split(self.nodes[t as usize].left, key);
            self.nodes[t as usize].left = b;
            self.update(t);
            (a, t)
        }
    }

    /// Joins `a` and `b`, every key of `a` below every key of `b`.
    fn merge(&mut self, a: u32, b: u32) -> u32 {
        if a == NIL {
            return b;
        }
        if b == NIL {
            return a;
        }
        if self.nodes[a as usize].prio > self.nodes[b as usize].prio {
            let c = self.merge(self.nodes[a as usize].right, b);
            self.nodes[a as usize].right = c;
            self.update(a);
            a
        } else {
            let c = self.merge(a, self.nodes[b as usize].left);
            self.nodes[b as usize].left = c;
            self.update(b);
            b
        }
    }

    /// Changes request `i`'s range to `[start, end)`, keeping its arrival
    /// number, priority and counts (the caller fixes the counts, R2).
    /// O(log n) expected.
    pub(super) fn rekey(&mut self, i: u32, start: u64, end: u64) {
        let key = self.nodes[i as usize].key();
        self.root = self.remove_at(self.root, key);
        let n = &mut self.nodes[i as usize];
        n.start = start;
        n.end = end;
        n.max_end = end;
        n.left = NIL;
        n.right = NIL;
        self.root = self.insert_at(self.root, i);
    }

    /// Removes request `i` and frees its slot. O(log n) expected.
    pub(super) fn remove(&mut self, i: u32) {
        let key = self.nodes[i as usize].key();
        self.root = self.remove_at(self.root, key);
        let n = &mut self.nodes[i as usize];
        n.waiter = None;
        n.left = NIL;
        n.right = NIL;
        self.free.push(i);
        self.len -= 1;
    }

    fn remove_at(&mut self, t: u32, key: (u64, u64)) -> u32 {
        debug_assert_ne!(t, NIL, "range-lock request missing from its table");
        if t == NIL {
            return NIL;
        }
        let n = &self.nodes[t as usize];
        match key.cmp(&n.key()) {
            std::cmp::Ordering::Equal => self.merge(n.left, n.right),
            std::cmp::Ordering::Less => {
                let c = self.remove_at(n.left, key);
                self.nodes[t as usize].left = c;
                self.update(t);
                t
            }
            std::cmp::Ordering::Greater => {
                let c = self.remove_at(n.right, key);
                self.nodes[t as usize].right = c;
                self.update(t);
                t
            }
        }
    }

    /// Checks the treap order and heap shape, `max_end`, and that the R2
    /// counts balance. Test helper.
    #[cfg(test)]
    pub(super) fn validate(&self) {
        let mut live = Vec::new();
        self.walk(self.root, &mut live);
        assert_eq!(live.len(), self.len);
        for w in live.windows(2) {
            assert!(self.node(w[0]).key() < self.node(w[1]).key());
        }
        for &i in &live {
            let n = self.node(i);
            assert!(n.start < n.end);
            for c in [n.left, n.right] {
                if c != NIL {
                    assert!(self.node(c).prio <= n.prio);
                }
            }
            let want = n.end.max(self.max_end(n.left)).max(self.max_end(n.right));
            assert_eq!(n.max_end, want);
        }
        // R2: each waits-for edge is counted once on each side (a wait for
        // fast-path holders, R8, has no side in the table).
        let blocking: u64 = live
            .iter()
            .map(|&i| u64::from(self.node(i).blocking - u32::from(self.node(i).fast_wait)))
            .sum();
        let dependents: u64 = live
            .iter()
            .map(|&i| u64::from(self.node(i).dependents))
            .sum();
        assert_eq!(blocking, dependents);
    }

    #[cfg(test)]
    fn walk(&self, t: u32, out: &mut Vec<u32>) {
        if t != NIL {
            self.walk(self.node(t).left, out);
            out.push(t);
            self.walk(self.node(t).right, out);
        }
    }

    /// Every live request as `(start, end, write, blocking)`, in
    /// address order (for `Debug` and tests).
    pub(super) fn entries(&self) -> Vec<(u64, u64, bool, u32)> {
        let mut v = Vec::with_capacity(self.len);
        self.walk_entries(self.root, &mut v);
        v
    }

    fn walk_entries(&self, t: u32, out: &mut Vec<(u64, u64, bool, u32)>) {
        if t != NIL {
            let n = self.node(t);
            self.walk_entries(n.left, out);
            out.push((n.start, n.end, n.write, n.blocking));
            self.walk_entries(n.right, out);
        }
    }
}
