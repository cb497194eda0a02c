//! serde support (feature `serde`): a tree is a sequence of `(start, end,
//! value)` tuples in address order; deserializing builds it in one
//! transaction and refuses empty or overlapping ranges.

use super::{MapleTree, ReadGuard};
use core::fmt;
use core::marker::PhantomData;
use serde::de::{Deserialize, Deserializer, Error as _, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeSeq, Serializer};

impl<V: Serialize> Serialize for ReadGuard<'_, V> {
    /// The snapshot as a sequence of `(start, end, value)`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for (r, v) in self {
            seq.serialize_element(&(r.start, r.end, v))?;
        }
        seq.end()
    }
}

impl<V: Send + Serialize> Serialize for MapleTree<V> {
    /// The latest published version (one `pin()`), as a sequence of
    /// `(start, end, value)`.
    ///
    /// ```
    /// let t = maple_rcu::MapleTree::new();
    /// t.insert(1..2, "a").unwrap();
    /// assert_eq!(serde_json::to_string(&t).unwrap(), r#"[[1,2,"a"]]"#);
    /// ```
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.pin().serialize(s)
    }
}

#[cfg(feature = "std")]
impl<'de, V: Send + 'static + Deserialize<'de>> Deserialize<'de> for MapleTree<V> {
    /// From a sequence of `(start, end, value)` in any order, via
    /// [`MapleTree::try_from_iter`]: an empty or overlapping range is an
    /// error.
    ///
    /// ```
    /// use maple_rcu::MapleTree;
    /// let t: MapleTree<String> = serde_json::from_str(r#"[[1,2,"a"],[5,9,"b"]]"#).unwrap();
    /// assert_eq!(t.len(), 2);
    /// assert!(serde_json::from_str::<MapleTree<u8>>("[[1,5,0],[4,9,1]]").is_err());
    /// ```
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries<V>(PhantomData<V>);
        impl<'de, V: Send + 'static + Deserialize<'de>> Visitor<'de> for Entries<V> {
            type Value = MapleTree<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence of (start, end, value)")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some((s, e, v)) = seq.next_element::<(u64, u64, V)>()? {
                    items.push((s..e, v));
                }
                MapleTree::try_from_iter(items).map_err(|e| {
                    A::Error::custom(format_args!("MapleTree entry refused: {}", e.kind))
                })
            }
        }
        d.deserialize_seq(Entries(PhantomData))
    }
}
