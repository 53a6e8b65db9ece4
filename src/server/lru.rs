//! A bounded map that drops its least recently used entry when full (never cleared whole), for
//! the pages' caches.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// At most `capacity` entries; a get or an insert makes an entry the most recently used.
pub struct Lru<K, V> {
    capacity: usize,
    clock: u64,
    entries: HashMap<K, (V, u64)>,
    by_use: BTreeMap<u64, K>,
}

impl<K: Hash + Eq + Clone, V: Clone> Lru<K, V> {
    /// An empty map holding at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        Lru {
            capacity: capacity.max(1),
            clock: 0,
            entries: HashMap::new(),
            by_use: BTreeMap::new(),
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// The value at `key`, now the most recently used.
    pub fn get(&mut self, key: &K) -> Option<V> {
        let now = self.tick();
        let (value, used) = self.entries.get_mut(key)?;
        self.by_use.remove(used);
        *used = now;
        self.by_use.insert(now, key.clone());
        Some(value.clone())
    }

    /// Puts `value` at `key`, dropping the least recently used entry when full.
    pub fn insert(&mut self, key: K, value: V) {
        let now = self.tick();
        if let Some((_, used)) = self.entries.remove(&key) {
            self.by_use.remove(&used);
        }
        while self.entries.len() >= self.capacity {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        self.by_use.insert(now, key.clone());
        self.entries.insert(key, (value, now));
    }

    /// How many entries it holds.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_the_least_recently_used_only() {
        let mut lru = Lru::new(2);
        lru.insert("a", 1);
        lru.insert("b", 2);
        assert_eq!(lru.get(&"a"), Some(1));
        lru.insert("c", 3);
        assert_eq!(lru.len(), 2);
        assert_eq!(lru.get(&"b"), None);
        assert_eq!(lru.get(&"a"), Some(1));
        assert_eq!(lru.get(&"c"), Some(3));
        lru.insert("c", 4);
        assert_eq!(lru.get(&"c"), Some(4));
        assert_eq!(lru.len(), 2);
    }
}
