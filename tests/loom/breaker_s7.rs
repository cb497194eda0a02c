//! Breaker7's loom models (session 7): the tree's open garbage batch
//! (garbage.rs `Garbage::retire`/`close`, issue 12 seventh session). Under
//! loom `POLL_EVERY` is 2, so every second retiring commit closes the open
//! batch with a cookie and advances.

use loom::sync::Arc;
use loom::thread;
use maple_rcu::MapleTree;

/// The open batch must be tagged with a grace period requested AFTER the
/// publishing root store of the commit that closes it. A reader on another
/// thread completes a whole grace period (`domain().poll()`), then pins and
/// walks the tree, while the main thread makes two retiring commits (one of
/// them closes the period) and reclaims. If the cookie were requested
/// before the store (the mutation this model exists for), the reader's
/// poll can complete that grace period before it pins, the reader then
/// loads the old root, and the commit's `collect` recycles the old root's
/// nodes under it: loom's liveness cells report the use after free.
#[test]
fn open_batch_tagged_after_publish() {
    loom::model(|| {
        let t = Arc::new(MapleTree::<u64>::with_manual_reclaim());
        for i in 0..4u64 {
            t.insert(i * 10..i * 10 + 5, i).unwrap();
        }
        t.reclaim().unwrap();
        let t2 = t.clone();
        let reader = thread::spawn(move || {
            t2.domain().poll().unwrap();
            let r = t2.pin();
            let n = r.iter().count();
            assert!((2..=4).contains(&n), "saw {n} entries");
            drop(r);
        });
        t.remove(10).unwrap();
        t.remove(20).unwrap();
        t.reclaim().unwrap();
        reader.join().unwrap();
        t.reclaim().unwrap();
        t.validate().unwrap();
        assert_eq!(t.len(), 2);
    });
}

/// Two trees share one domain; one tree's drop-free commits leave an open
/// batch while the other tree's commits (values with drop glue: each
/// `defer`s, closing its own batch) and polls advance the shared domain.
/// A reader of the first tree pinned across its commits never sees a
/// recycled node (loom liveness cells).
#[test]
fn shared_domain_open_batch_vs_other_tree() {
    loom::model(|| {
        let d = Arc::new(maple_rcu::srcu::Srcu::new());
        let a = Arc::new(MapleTree::<u64>::with_domain(d.clone()));
        let b = Arc::new(MapleTree::<std::string::String>::with_domain(d.clone()));
        for i in 0..3u64 {
            a.insert(i * 10..i * 10 + 5, i).unwrap();
        }
        b.insert(0..5, "x".into()).unwrap();
        let (a2, b2) = (a.clone(), b.clone());
        let other = thread::spawn(move || {
            b2.remove(0).unwrap();
            b2.reclaim().unwrap();
            let r = a2.pin();
            let n = r.iter().count();
            assert!((1..=3).contains(&n), "saw {n} entries");
        });
        a.remove(0).unwrap();
        a.remove(10).unwrap();
        d.poll().unwrap();
        a.reclaim().unwrap();
        other.join().unwrap();
        a.reclaim().unwrap();
        a.validate().unwrap();
        assert_eq!((a.len(), b.len()), (1, 0));
    });
}
