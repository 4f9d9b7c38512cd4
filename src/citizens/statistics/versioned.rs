//! One kind of answer about imports, kept per import version while the
//! import does not change (see `kept` for the holder of every kind). Each entry
//! is tagged with the import's `version` (bumped by every PATCH in its
//! transaction, see migration V7), and a reader first asks PostgreSQL for the
//! current version: an entry is used only when it matches, so every instance
//! of the service answers what the database holds, whichever instance
//! patched. Bounded: the oldest entries go first.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use chrono::NaiveDate;

/// What an entry answers: the import, its version, and the day the answer
/// was computed for (ages change with the date; `None` when they do not matter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub import_id: i64,
    pub version: i64,
    pub day: Option<NaiveDate>,
}

/// Entries of one kind of answer (birthdays, percentiles…).
#[derive(Debug)]
pub struct PerVersion<T> {
    capacity: usize,
    entries: Mutex<VecDeque<(Key, Arc<T>)>>,
}

impl<T> PerVersion<T> {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(VecDeque::with_capacity(capacity)),
        }
    }

    pub fn get(&self, key: Key) -> Option<Arc<T>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, value)| Arc::clone(value))
    }

    /// Drops every answer about `import_id` (an erased import).
    pub fn forget(&self, import_id: i64) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|(k, _)| k.import_id != import_id);
    }

    /// Keeps `value` as the answer for `key`, dropping the import's older
    /// answers (they can never match again) and, beyond capacity, the oldest.
    pub fn put(&self, key: Key, value: Arc<T>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|(k, _)| k.import_id != key.import_id || k.version > key.version);
        if entries.iter().any(|(k, _)| k.import_id == key.import_id) {
            return; // a newer version is already kept
        }
        while entries.len() >= self.capacity.max(1) {
            entries.pop_front();
        }
        entries.push_back((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(import_id: i64, version: i64) -> Key {
        Key {
            import_id,
            version,
            day: None,
        }
    }

    #[test]
    fn an_entry_answers_only_its_version() {
        let cache = PerVersion::new(4);
        cache.put(key(1, 0), Arc::new("v0"));
        assert_eq!(cache.get(key(1, 0)).as_deref(), Some(&"v0"));
        assert_eq!(cache.get(key(1, 1)), None);
        assert_eq!(cache.get(key(2, 0)), None);
        cache.put(key(1, 1), Arc::new("v1"));
        assert_eq!(cache.get(key(1, 0)), None);
        assert_eq!(cache.get(key(1, 1)).as_deref(), Some(&"v1"));
        // A slow reader of the old version does not replace the new one.
        cache.put(key(1, 0), Arc::new("late"));
        assert_eq!(cache.get(key(1, 0)), None);
        assert_eq!(cache.get(key(1, 1)).as_deref(), Some(&"v1"));
    }

    #[test]
    fn days_are_part_of_the_key() {
        let cache = PerVersion::new(4);
        let today = NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
        let on = |day| Key {
            day: Some(day),
            ..key(1, 0)
        };
        cache.put(on(today), Arc::new(1));
        assert_eq!(cache.get(on(today)).as_deref(), Some(&1));
        assert_eq!(cache.get(on(today.succ_opt().unwrap())), None);
    }

    #[test]
    fn forgetting_an_import_drops_its_answers_only() {
        let cache = PerVersion::new(4);
        cache.put(key(1, 0), Arc::new(1));
        cache.put(key(2, 0), Arc::new(2));
        cache.forget(1);
        assert_eq!(cache.get(key(1, 0)), None);
        assert_eq!(cache.get(key(2, 0)).as_deref(), Some(&2));
    }

    #[test]
    fn the_oldest_entries_go_beyond_capacity() {
        let cache = PerVersion::new(2);
        for id in 1..=3 {
            cache.put(key(id, 0), Arc::new(id));
        }
        assert_eq!(cache.get(key(1, 0)), None);
        assert_eq!(cache.get(key(2, 0)).as_deref(), Some(&2));
        assert_eq!(cache.get(key(3, 0)).as_deref(), Some(&3));
    }
}
