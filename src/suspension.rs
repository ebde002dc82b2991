//! Department suspension: the emergency stop for a breached department.
//!
//! Suspensions are kept in sled (`admin/suspensions`, department → record)
//! and, for the request path, in an `ArcSwap`ed map: a check costs one atomic
//! load and one map lookup, and a change reaches every connection, open ones
//! included, on its next request. A change is written and synced to disk
//! before it is swapped in, so it survives a restart or a power cut.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

const TREE: &str = "admin/suspensions";

/// Why and since when a department is suspended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    /// The reason given.
    pub reason: String,
    /// Who suspended it (`dept/subject`).
    pub by: String,
    /// When, ms since the epoch.
    pub at_ms: i64,
}

/// The suspended departments.
#[derive(Debug)]
pub struct Suspensions {
    tree: sled::Tree,
    data_dir: PathBuf,
    current: ArcSwap<BTreeMap<String, Suspension>>,
}

impl Suspensions {
    /// Loads the suspensions from `db`, the database in `data_dir`.
    pub fn open(db: &sled::Db, data_dir: &Path) -> Result<Self, sled::Error> {
        let tree = db.open_tree(TREE)?;
        let mut map = BTreeMap::new();
        for item in &tree {
            let (k, v) = item?;
            if let (Ok(dept), Ok(s)) = (
                String::from_utf8(k.to_vec()),
                serde_json::from_slice::<Suspension>(&v),
            ) {
                map.insert(dept, s);
            }
        }
        Ok(Self {
            tree,
            data_dir: data_dir.to_owned(),
            current: ArcSwap::from_pointee(map),
        })
    }

    /// The suspension of `dept`, if it is suspended.
    pub fn get(&self, dept: &str) -> Option<Suspension> {
        let map = self.current.load();
        if map.is_empty() {
            return None;
        }
        map.get(dept).cloned()
    }

    /// Every suspension in force.
    pub fn all(&self) -> Arc<BTreeMap<String, Suspension>> {
        self.current.load_full()
    }

    /// Suspends `dept` (or replaces its reason); durable before it takes effect.
    pub fn suspend(&self, dept: &str, suspension: Suspension) -> Result<(), sled::Error> {
        let bytes = serde_json::to_vec(&suspension).unwrap_or_default();
        crate::faults::point(&self.data_dir, "stops.insert")?;
        self.tree.insert(dept.as_bytes(), bytes)?;
        crate::durable::sync_tree(&self.tree, &self.data_dir)?;
        let mut map = (**self.current.load()).clone();
        map.insert(dept.to_owned(), suspension);
        self.current.store(Arc::new(map));
        Ok(())
    }

    /// Lifts the suspension of `dept`; returns whether it was suspended.
    pub fn resume(&self, dept: &str) -> Result<bool, sled::Error> {
        crate::faults::point(&self.data_dir, "stops.insert")?;
        let was = self.tree.remove(dept.as_bytes())?.is_some();
        crate::durable::sync_tree(&self.tree, &self.data_dir)?;
        let mut map = (**self.current.load()).clone();
        map.remove(dept);
        self.current.store(Arc::new(map));
        Ok(was)
    }
}
