//! The token deny-list: tokens refused although their signature and expiry
//! are valid (a leaked clerk token, a compromised system).
//!
//! An entry names one token (`jti`) or every token of a subject issued
//! before a time ("every token of this clerk issued before now"), and carries
//! an expiry after which it is dropped: once every token it could match has
//! expired it has no work left, so the list cannot grow without bound. It is
//! checked after signature verification, so it applies to tokens served from
//! the verified-token cache too; an empty list costs one atomic load.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

const TREE: &str = "admin/denied_tokens";

/// One deny-list entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denial {
    /// The token id (`jti`), for one token.
    pub jti: Option<String>,
    /// The subject (`sub`), for every token of it issued before `issued_before`.
    pub sub: Option<String>,
    /// With `sub`: tokens issued (`iat`) before this, seconds since the epoch,
    /// are refused; tokens without `iat` are refused too.
    pub issued_before: Option<i64>,
    /// When the entry is dropped, ms since the epoch.
    pub expires_ms: i64,
    /// Why.
    pub reason: String,
    /// Who added it (`dept/subject`).
    pub by: String,
    /// When, ms since the epoch.
    pub at_ms: i64,
}

impl Denial {
    fn key(&self) -> String {
        match (&self.jti, &self.sub) {
            (Some(j), _) => format!("jti:{j}"),
            (None, Some(s)) => format!("sub:{s}"),
            (None, None) => String::new(),
        }
    }
}

#[derive(Debug, Default)]
struct Index {
    by_jti: HashMap<String, Denial>,
    by_sub: HashMap<String, Denial>,
}

/// The deny-list in force.
#[derive(Debug)]
pub struct DenyList {
    tree: sled::Tree,
    data_dir: PathBuf,
    /// Held by every change from its write to its swap, so none is saved
    /// but not enforced.
    changing: std::sync::Mutex<()>,
    current: ArcSwap<Index>,
}

impl DenyList {
    /// Loads the entries from `db`, dropping the expired ones.
    pub fn open(db: &sled::Db, data_dir: &Path, now_ms: i64) -> Result<Self, sled::Error> {
        let tree = db.open_tree(TREE)?;
        let list = Self {
            tree,
            data_dir: data_dir.to_owned(),
            changing: std::sync::Mutex::new(()),
            current: ArcSwap::from_pointee(Index::default()),
        };
        list.reload(now_ms)?;
        Ok(list)
    }

    fn reload(&self, now_ms: i64) -> Result<(), sled::Error> {
        let mut index = Index::default();
        for item in &self.tree {
            let (k, v) = item?;
            match serde_json::from_slice::<Denial>(&v) {
                Ok(d) if d.expires_ms > now_ms => {
                    match (&d.jti, &d.sub) {
                        (Some(j), _) => index.by_jti.insert(j.clone(), d),
                        (None, Some(s)) => index.by_sub.insert(s.clone(), d),
                        _ => None,
                    };
                }
                _ => {
                    self.tree.remove(k)?;
                }
            }
        }
        self.current.store(Arc::new(index));
        Ok(())
    }

    /// The entry that refuses a token with these claims, if any.
    pub fn refuses(
        &self,
        jti: Option<&str>,
        sub: &str,
        iat: Option<i64>,
        now_ms: i64,
    ) -> Option<Denial> {
        let index = self.current.load();
        if index.by_jti.is_empty() && index.by_sub.is_empty() {
            return None;
        }
        if let Some(d) = jti.and_then(|j| index.by_jti.get(j)) {
            if d.expires_ms > now_ms {
                return Some(d.clone());
            }
        }
        let d = index.by_sub.get(sub)?;
        let before = d.issued_before.unwrap_or(i64::MAX);
        (d.expires_ms > now_ms && iat.is_none_or(|t| t < before)).then(|| d.clone())
    }

    /// Adds an entry (replacing one for the same token or subject); durable
    /// before it takes effect. Expired entries are dropped on the way.
    pub fn add(&self, denial: Denial, now_ms: i64) -> Result<(), sled::Error> {
        self.add_many(std::iter::once(denial), now_ms)
    }

    /// Adds many entries in one durable batch, then puts them in force.
    pub fn add_many(
        &self,
        denials: impl IntoIterator<Item = Denial>,
        now_ms: i64,
    ) -> Result<(), sled::Error> {
        let _one = self
            .changing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut batch = sled::Batch::default();
        for denial in denials {
            let bytes = serde_json::to_vec(&denial).unwrap_or_default();
            batch.insert(denial.key().as_bytes(), bytes);
        }
        crate::faults::point(&self.data_dir, "stops.insert")?;
        self.tree.apply_batch(batch)?;
        crate::durable::sync_tree(&self.tree, &self.data_dir)?;
        self.reload(now_ms)
    }

    /// Every entry in force: tokens by `jti`, then subjects, each in order.
    pub fn all(&self) -> Vec<Denial> {
        let index = self.current.load();
        let mut jtis: Vec<&Denial> = index.by_jti.values().collect();
        jtis.sort_by(|a, b| a.jti.cmp(&b.jti));
        let mut subs: Vec<&Denial> = index.by_sub.values().collect();
        subs.sort_by(|a, b| a.sub.cmp(&b.sub));
        jtis.into_iter().chain(subs).cloned().collect()
    }
}
