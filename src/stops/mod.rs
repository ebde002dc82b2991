//! The emergency stops: department suspensions ([`suspension`]) and token
//! revocations ([`revocation`]). Both are checked on every request after
//! authentication, and both are kept the same way, in a [`DurableMap`].
//!
//! Invariant: a stop is written and synced to disk before it is put in
//! force, and changes to one map are made one at a time, so no stop is
//! answered but lost on a crash, and none is saved but not enforced.
//! Invariant: a stored stop that cannot be read stops the gateway from
//! starting; it is never dropped (that would lift it).

pub mod revocation;
pub mod suspension;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why the stops cannot be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum StopsError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] sled::Error),
    /// The disk failed (the sync, or a fault seam).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A stored entry cannot be read: the gateway refuses to start rather
    /// than lift the stop it held.
    #[error(
        "the stop stored in {tree} under {key:?} cannot be read ({reason}); restore the data directory from a backup, or remove the entry with care: it may be a stop in force"
    )]
    Unreadable {
        /// The tree.
        tree: &'static str,
        /// The key, as text.
        key: String,
        /// Why.
        reason: String,
    },
}

/// A map kept in a sled tree and, for the request path, in memory behind an
/// `ArcSwap`: a read is one atomic load and one lookup; a change is written,
/// synced (sled's own flush does not fsync, sled issue #1452), and only then
/// swapped in, one change at a time.
#[derive(Debug)]
pub struct DurableMap<V> {
    name: &'static str,
    tree: sled::Tree,
    data_dir: PathBuf,
    /// Held by every change from its write to its swap.
    changing: Mutex<()>,
    current: ArcSwap<HashMap<String, V>>,
}

/// One change to a [`DurableMap`].
#[derive(Debug)]
pub enum Edit<V> {
    /// Store `V` under the key (replacing what was there).
    Put(String, V),
    /// Remove the key.
    Remove(String),
}

impl<V: Serialize + DeserializeOwned + Clone> DurableMap<V> {
    /// Loads the tree `name` of `db` (the database in `data_dir`). Entries
    /// for which `keep` is false (expired) are removed; an entry that cannot
    /// be read is an error.
    pub fn open(
        db: &sled::Db,
        name: &'static str,
        data_dir: &Path,
        keep: impl Fn(&V) -> bool,
    ) -> Result<Self, StopsError> {
        let tree = db.open_tree(name)?;
        let mut map = HashMap::new();
        let mut expired = Vec::new();
        for item in &tree {
            let (k, v) = item?;
            let key = String::from_utf8(k.to_vec()).map_err(|e| StopsError::Unreadable {
                tree: name,
                key: String::from_utf8_lossy(&k).into_owned(),
                reason: e.to_string(),
            })?;
            let value: V = serde_json::from_slice(&v).map_err(|e| StopsError::Unreadable {
                tree: name,
                key: key.clone(),
                reason: e.to_string(),
            })?;
            if keep(&value) {
                map.insert(key, value);
            } else {
                expired.push(key);
            }
        }
        let durable = Self {
            name,
            tree,
            data_dir: data_dir.to_owned(),
            changing: Mutex::new(()),
            current: ArcSwap::from_pointee(map),
        };
        if !expired.is_empty() {
            // Housekeeping at start, not a stop: no fault seam.
            durable.write(|_| expired.into_iter().map(Edit::Remove), false)?;
        }
        Ok(durable)
    }

    /// The entry under `key`.
    pub fn get(&self, key: &str) -> Option<V> {
        let map = self.current.load();
        if map.is_empty() {
            return None;
        }
        map.get(key).cloned()
    }

    /// Whether the map is empty (one atomic load).
    pub fn is_empty(&self) -> bool {
        self.current.load().is_empty()
    }

    /// Every entry in force.
    pub fn all(&self) -> Arc<HashMap<String, V>> {
        self.current.load_full()
    }

    /// Writes `edits` in one batch, syncs, then puts them in force.
    pub fn apply(&self, edits: impl IntoIterator<Item = Edit<V>>) -> Result<(), StopsError> {
        self.write(|_| edits, true)
    }

    /// As [`Self::apply`], with the edits chosen from the entries in force
    /// under the same lock as the write, so that no change made meanwhile
    /// is undone by a choice made on a stale view.
    pub fn apply_with<E: IntoIterator<Item = Edit<V>>>(
        &self,
        edits: impl FnOnce(&HashMap<String, V>) -> E,
    ) -> Result<(), StopsError> {
        self.write(edits, true)
    }

    /// Writes the edits chosen from the entries in force in one batch,
    /// syncs, then puts them in force; each step passes its fault seam when
    /// `seams`.
    fn write<E: IntoIterator<Item = Edit<V>>>(
        &self,
        edits: impl FnOnce(&HashMap<String, V>) -> E,
        seams: bool,
    ) -> Result<(), StopsError> {
        let point = |name| {
            if seams {
                crate::faults::point(&self.data_dir, name)
            } else {
                Ok(())
            }
        };
        let _one = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        let mut batch = sled::Batch::default();
        let mut map = (**self.current.load()).clone();
        for edit in edits(&map) {
            match edit {
                Edit::Put(key, value) => {
                    let bytes = serde_json::to_vec(&value).map_err(|e| {
                        StopsError::Io(std::io::Error::other(format!("{}: {key}: {e}", self.name)))
                    })?;
                    batch.insert(key.as_bytes(), bytes);
                    map.insert(key, value);
                }
                Edit::Remove(key) => {
                    batch.remove(key.as_bytes());
                    map.remove(&key);
                }
            }
        }
        point("stops.insert")?;
        self.tree.apply_batch(batch)?;
        point("stops.flush")?;
        self.tree.flush()?;
        point("stops.sync")?;
        std::fs::File::open(self.data_dir.join("db"))?.sync_data()?;
        self.current.store(Arc::new(map));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_survives_a_reopen_and_an_unreadable_one_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = crate::datadir::open_path(dir.path()).unwrap();
            let m: DurableMap<u32> = DurableMap::open(&db, "t", dir.path(), |_| true).unwrap();
            m.apply([Edit::Put("a".into(), 1), Edit::Put("b".into(), 2)])
                .unwrap();
            m.apply([Edit::Remove("b".into())]).unwrap();
            assert_eq!(m.get("a"), Some(1));
            assert_eq!(m.get("b"), None);
        }
        {
            let db = crate::datadir::open_path(dir.path()).unwrap();
            let m: DurableMap<u32> = DurableMap::open(&db, "t", dir.path(), |_| true).unwrap();
            assert_eq!(m.all().len(), 1);
            // An expired entry is dropped at open, from the disk too.
            drop(m);
            let m: DurableMap<u32> = DurableMap::open(&db, "t", dir.path(), |v| *v > 1).unwrap();
            assert!(m.is_empty());
            assert!(db.open_tree("t").unwrap().is_empty());
            db.open_tree("t").unwrap().insert("c", "not json").unwrap();
            let err = DurableMap::<u32>::open(&db, "t", dir.path(), |_| true).unwrap_err();
            assert!(
                matches!(&err, StopsError::Unreadable { key, .. } if key == "c"),
                "{err}"
            );
        }
    }
}
