//! Sets and maps keyed by 16-bit packet ids and topic aliases, with a zero-sized hasher:
//! every session and connection carries a few of them, and `RandomState` would add 16
//! bytes to each. Keys come from clients but are at most 65,536 distinct values and each
//! collection is bounded by a receive maximum or alias maximum, so a fixed hash cannot be
//! turned into long probe chains.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Fibonacci hashing: multiplying by an odd constant keeps distinct keys distinct in the
/// low bits (the bucket) and spreads them in the high bits (the control byte).
#[derive(Debug, Default, Clone, Copy)]
pub struct U16Hasher(u64);

const K: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for U16Hasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(K);
        }
    }

    fn write_u16(&mut self, n: u16) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(K);
    }
}

/// A set of packet ids.
pub type U16Set = HashSet<u16, BuildHasherDefault<U16Hasher>>;

/// A [`U16Set`] allocated on first insert: 8 bytes instead of 32 in every session that never
/// uses it (packet ids of QoS 1/2 messages, for example). Once allocated it stays, so a
/// steady flow does not allocate per message.
#[derive(Debug, Default, Clone)]
pub struct LazyU16Set(Option<Box<U16Set>>);

impl LazyU16Set {
    /// Adds `id`; false if it was there.
    pub fn insert(&mut self, id: u16) -> bool {
        self.0.get_or_insert_with(Box::default).insert(id)
    }

    /// Removes `id`; false if it was not there.
    pub fn remove(&mut self, id: &u16) -> bool {
        self.0.as_mut().is_some_and(|s| s.remove(id))
    }

    /// Removes every id.
    pub fn clear(&mut self) {
        if let Some(s) = self.0.as_mut() {
            s.clear();
        }
    }

    /// Whether `id` is in the set.
    pub fn contains(&self, id: &u16) -> bool {
        self.0.as_ref().is_some_and(|s| s.contains(id))
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |s| s.len())
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ids, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        self.0.iter().flat_map(|s| s.iter().copied())
    }
}

/// A map keyed by packet id or topic alias.
pub type U16Map<V> = HashMap<u16, V, BuildHasherDefault<U16Hasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lazy_sets_behave_like_sets() {
        let mut s = LazyU16Set::default();
        assert!(!s.contains(&7) && s.is_empty() && !s.remove(&7));
        assert!(s.insert(7) && !s.insert(7) && s.contains(&7) && s.len() == 1);
        assert_eq!(s.iter().collect::<Vec<_>>(), [7]);
        assert!(s.remove(&7) && s.is_empty() && !s.contains(&7));
        s.insert(8);
        s.clear();
        assert!(s.is_empty());
    }

    #[test]
    fn sets_behave_like_sets() {
        let mut s = U16Set::default();
        for i in 0..=u16::MAX {
            assert!(s.insert(i));
        }
        assert!(!s.insert(7));
        assert_eq!(s.len(), 65_536);
        for i in (0..=u16::MAX).step_by(2) {
            assert!(s.remove(&i));
        }
        assert!(s.contains(&1) && !s.contains(&2));
        assert_eq!(std::mem::size_of::<U16Set>(), 32);
    }
}
