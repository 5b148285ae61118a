//! Keyed entries that live only while something holds them: the gate serializing an account's
//! connect, disconnect and delete, the waker of its outbox drain, the wake-up of the requests
//! waiting for one send. Each is taken as a guard whose drop removes the entry once nobody else
//! holds it (a dropped request included), so a map holds what is in use now, not every key
//! ever touched. Every clone and drop of an entry happens under the map's lock: its count of
//! holders is then exact. It knows no account, client or store.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// A map of shared entries, each made on first use and removed with its last holder.
#[derive(Debug)]
pub(super) struct Registry<K, V> {
    map: Mutex<HashMap<K, Arc<V>>>,
}

impl<K, V> Default for Registry<K, V> {
    fn default() -> Self {
        Registry {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Copy, V: Default> Registry<K, V> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Arc<V>>> {
        // A panic elsewhere while holding the lock leaves the map itself consistent.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry of `key` (made now if there is none), held until the guard drops.
    pub(super) fn hold(&self, key: K) -> Held<'_, K, V> {
        let value = self.lock().entry(key).or_default().clone();
        Held {
            owner: self,
            key,
            value: Some(value),
        }
    }

    /// Runs `f` on the entry of `key` if someone holds it (never makes one: a key nobody
    /// holds has nobody to tell).
    pub(super) fn with(&self, key: K, f: impl FnOnce(&V)) {
        if let Some(v) = self.lock().get(&key) {
            f(v);
        }
    }

    /// How many entries are held now.
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// One holder of a [`Registry`] entry.
#[derive(Debug)]
pub(super) struct Held<'a, K: Hash + Eq + Copy, V: Default> {
    owner: &'a Registry<K, V>,
    key: K,
    /// Always Some until the drop takes it (under the map's lock).
    value: Option<Arc<V>>,
}

impl<K: Hash + Eq + Copy, V: Default> std::ops::Deref for Held<'_, K, V> {
    type Target = V;

    fn deref(&self) -> &V {
        // Set at construction and taken only by `drop`.
        self.value.as_deref().unwrap_or_else(|| unreachable!())
    }
}

impl<K: Hash + Eq + Copy, V: Default> Drop for Held<'_, K, V> {
    fn drop(&mut self) {
        let mut map = self.owner.lock();
        drop(self.value.take());
        if map
            .get(&self.key)
            .is_some_and(|v| Arc::strong_count(v) == 1)
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_lives_while_held_and_goes_with_its_last_holder() {
        let r: Registry<u32, tokio::sync::Notify> = Registry::default();
        let a = r.hold(1);
        let b = r.hold(1);
        let c = r.hold(2);
        assert_eq!(r.len(), 2);
        let mut told = 0;
        r.with(1, |_| told += 1);
        r.with(3, |_| told += 10);
        assert_eq!((told, r.len()), (1, 2), "`with` never makes an entry");
        drop(a);
        assert_eq!(r.len(), 2, "still held by b");
        drop(b);
        drop(c);
        assert_eq!(r.len(), 0);
    }

    #[tokio::test]
    async fn holders_share_one_entry_so_a_gate_still_excludes() {
        let r: Registry<u32, tokio::sync::Mutex<u32>> = Registry::default();
        let first = r.hold(7);
        let mut g = first.lock().await;
        let second = r.hold(7);
        assert!(second.try_lock().is_err(), "the same mutex");
        *g += 1;
        drop(g);
        drop(first);
        assert_eq!(*second.lock().await, 1);
        drop(second);
        assert_eq!(r.len(), 0);
    }
}
