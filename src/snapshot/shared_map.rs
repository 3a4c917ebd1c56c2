//! A persistent map for the directory: every write makes a new version that shares all it did
//! not change with the previous one, as the snapshot published after each admin write must.
//!
//! imbl's HAMT did this at about 160 bytes of nodes per entry: at 100,000 principals, as much
//! as the principals themselves. This map is [`SHARDS`] std hash maps, each behind an `Arc`. A
//! clone copies one pointer; a write copies the array of shard pointers and the one shard it
//! changes (1/256 of the map: a few microseconds at 100,000 entries); an entry costs what it
//! costs in a std hash map, about 35 bytes; a lookup hashes the key twice (shard, then slot).

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::Arc;

const SHARDS: usize = 256;

type Shard<V> = HashMap<Arc<str>, V>;

pub struct SharedMap<V> {
    shards: Arc<[Arc<Shard<V>>; SHARDS]>,
    len: usize,
}

/// The shard of `key`. A fixed hash: keys chosen to land in one shard only make that shard's
/// copies bigger, and each shard's own table is seeded at random.
fn shard_of(key: &str) -> usize {
    (BuildHasherDefault::<DefaultHasher>::default().hash_one(key) % SHARDS as u64) as usize
}

impl<V> Default for SharedMap<V> {
    fn default() -> SharedMap<V> {
        let empty = Arc::new(HashMap::new());
        SharedMap { shards: Arc::new(std::array::from_fn(|_| empty.clone())), len: 0 }
    }
}

impl<V> Clone for SharedMap<V> {
    fn clone(&self) -> SharedMap<V> {
        SharedMap { shards: self.shards.clone(), len: self.len }
    }
}

impl<V: std::fmt::Debug> std::fmt::Debug for SharedMap<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<V> SharedMap<V> {
    pub fn get(&self, key: &str) -> Option<&V> {
        self.shards[shard_of(key)].get(key)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &V)> {
        self.shards.iter().flat_map(|shard| shard.iter())
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, value)| value)
    }
}

impl<V: Clone> SharedMap<V> {
    /// Inserts or replaces; returns the value replaced.
    pub fn insert(&mut self, key: Arc<str>, value: V) -> Option<V> {
        let at = shard_of(&key);
        let replaced = Arc::make_mut(&mut Arc::make_mut(&mut self.shards)[at]).insert(key, value);
        if replaced.is_none() {
            self.len += 1;
        }
        replaced
    }

    /// Removes `key`; returns its value. Copies nothing when the key is absent.
    pub fn remove(&mut self, key: &str) -> Option<V> {
        let at = shard_of(key);
        if !self.shards[at].contains_key(key) {
            return None;
        }
        let removed = Arc::make_mut(&mut Arc::make_mut(&mut self.shards)[at]).remove(key);
        self.len -= usize::from(removed.is_some());
        removed
    }
}

impl<'a, V> IntoIterator for &'a SharedMap<V> {
    type Item = (&'a Arc<str>, &'a V);
    type IntoIter = Box<dyn Iterator<Item = (&'a Arc<str>, &'a V)> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> Arc<str> {
        format!("user/111122223333/user{i}").into()
    }

    #[test]
    fn inserts_replaces_and_removes() {
        let mut map = SharedMap::default();
        for i in 0..1_000 {
            assert_eq!(map.insert(key(i), i), None);
        }
        assert_eq!(map.len(), 1_000);
        assert_eq!(map.insert(key(7), 70), Some(7));
        assert_eq!(map.len(), 1_000);
        assert_eq!(map.get(&key(7)), Some(&70));
        assert_eq!(map.remove(&key(7)), Some(70));
        assert_eq!(map.remove(&key(7)), None);
        assert_eq!(map.get(&key(7)), None);
        assert_eq!(map.len(), 999);
        let mut seen: Vec<usize> = map.values().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..1_000).filter(|i| *i != 7).collect::<Vec<_>>());
    }

    #[test]
    fn a_version_is_unchanged_by_writes_to_a_later_one() {
        let mut first = SharedMap::default();
        for i in 0..100 {
            first.insert(key(i), i);
        }
        let mut second = first.clone();
        second.insert(key(1), 10);
        second.insert(key(500), 500);
        second.remove(&key(2));
        assert_eq!(
            (first.get(&key(1)), first.get(&key(500)), first.get(&key(2))),
            (Some(&1), None, Some(&2))
        );
        assert_eq!(
            (second.get(&key(1)), second.get(&key(500)), second.get(&key(2))),
            (Some(&10), Some(&500), None)
        );
        assert_eq!((first.len(), second.len()), (100, 100));
        // Shards no write touched are shared, not copied.
        let shared = (0..SHARDS).filter(|at| Arc::ptr_eq(&first.shards[*at], &second.shards[*at])).count();
        assert!(shared >= SHARDS - 3, "{shared} of {SHARDS} shards shared");
    }
}
