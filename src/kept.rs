//! Small records of the workflows (sharing requests, data objections),
//! kept by id with the state they stand in: in a sled tree of the data
//! directory (synced before a change is acknowledged) on a single node, in
//! a PostgreSQL table in cluster mode. A change is made only from the state
//! it was decided in, so two decisions at once cannot both take effect.

use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cluster::Cluster;
pub use crate::datadir::StoreError;

/// A record kept by id, with a state.
pub trait Record: Serialize + DeserializeOwned {
    /// Its sled tree on a single node.
    const TREE: &'static str;
    /// Its PostgreSQL table in cluster mode (columns `id`, `state`,
    /// `filed_ms`, `doc`).
    const TABLE: &'static str;
    /// Its id.
    fn id(&self) -> &str;
    /// The name of the state it stands in.
    fn state(&self) -> &'static str;
    /// When it was filed, ms since the epoch (lists are newest first).
    fn filed_ms(&self) -> i64;
}

/// The records of one kind.
pub struct Kept<T> {
    backend: Backend,
    kind: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Kept<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept").finish_non_exhaustive()
    }
}

enum Backend {
    Local { tree: sled::Tree, data_dir: PathBuf },
    Cluster(Arc<Cluster>),
}

impl<T: Record> Kept<T> {
    /// The records of a cluster (in PostgreSQL) or of a single node (in `db`).
    pub fn open(
        cluster: Option<&Arc<Cluster>>,
        db: &sled::Db,
        data_dir: &std::path::Path,
    ) -> sled::Result<Self> {
        Ok(Self {
            backend: match cluster {
                Some(c) => Backend::Cluster(c.clone()),
                None => Backend::Local {
                    tree: db.open_tree(T::TREE)?,
                    data_dir: data_dir.to_owned(),
                },
            },
            kind: PhantomData,
        })
    }

    /// Keeps `r` (new or changed) if the stored one still stands in `was`
    /// (none: new); false if another change came first. Durable when it
    /// returns.
    pub async fn put(&self, r: &T, was: Option<&str>) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Local { tree, data_dir } => {
                let old = match was {
                    None => None,
                    Some(_) => tree.get(r.id().as_bytes())?,
                };
                let matches = match (&old, was) {
                    (None, None) => true,
                    (Some(bytes), Some(state)) => {
                        serde_json::from_slice::<T>(bytes)?.state() == state
                    }
                    _ => false,
                };
                if !matches {
                    return Ok(false);
                }
                let swapped = tree
                    .compare_and_swap(r.id().as_bytes(), old, Some(serde_json::to_vec(r)?))?
                    .is_ok();
                if swapped {
                    tree.flush()?;
                    crate::datadir::sync_db_file(data_dir)?;
                }
                Ok(swapped)
            }
            Backend::Cluster(c) => {
                let doc = serde_json::to_string(r)?;
                Ok(c.store
                    .kept_put(T::TABLE, r.id(), r.state(), r.filed_ms(), &doc, was)
                    .await?)
            }
        }
    }

    /// The record `id`.
    pub async fn get(&self, id: &str) -> Result<Option<T>, StoreError> {
        match &self.backend {
            Backend::Local { tree, .. } => Ok(match tree.get(id.as_bytes())? {
                Some(bytes) => Some(serde_json::from_slice(&bytes)?),
                None => None,
            }),
            Backend::Cluster(c) => match c.store.kept_get(T::TABLE, id).await? {
                Some(doc) => Ok(Some(serde_json::from_str(&doc)?)),
                None => Ok(None),
            },
        }
    }

    /// Every record, newest first.
    pub async fn list(&self) -> Result<Vec<T>, StoreError> {
        let mut all: Vec<T> = match &self.backend {
            Backend::Local { tree, .. } => {
                let mut out = Vec::new();
                for item in tree.iter() {
                    let (_, v) = item?;
                    out.push(serde_json::from_slice(&v)?);
                }
                out
            }
            Backend::Cluster(c) => {
                let mut out = Vec::new();
                for doc in c.store.kept_list(T::TABLE).await? {
                    out.push(serde_json::from_str(&doc)?);
                }
                out
            }
        };
        all.sort_by(|a, b| b.filed_ms().cmp(&a.filed_ms()).then(b.id().cmp(a.id())));
        Ok(all)
    }
}

/// A new record id: `prefix`, the local day and 64 random bits
/// (`SR-20261207-` and 16 hex digits).
pub fn new_id(prefix: &str, day: time::Date) -> String {
    let mut bits = [0u8; 8];
    let _ = aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut bits);
    format!(
        "{prefix}{:04}{:02}{:02}-{}",
        day.year(),
        u8::from(day.month()),
        day.day(),
        crate::domain::hex(&bits)
    )
}

/// Whether `id` has the form [`new_id`] gives with `prefix`.
pub fn well_formed(prefix: &str, id: &str) -> bool {
    let Some(rest) = id.strip_prefix(prefix) else {
        return false;
    };
    rest.len() == 25
        && rest.as_bytes()[8] == b'-'
        && rest[..8].bytes().all(|b| b.is_ascii_digit())
        && rest[9..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_well_formed_with_their_prefix_only() {
        let day = time::macros::date!(2026 - 12 - 07);
        let id = new_id("SR-", day);
        assert!(id.starts_with("SR-20261207-"));
        assert!(well_formed("SR-", &id));
        assert!(!well_formed("DO-", &id));
        assert!(!well_formed("SR-", &id.to_uppercase()));
        assert!(!well_formed("SR-", &id[..id.len() - 1]));
        let bare = new_id("", day);
        assert!(well_formed("", &bare));
        assert!(!well_formed("", &format!("{bare}0")));
        assert!(!well_formed("SR-", "SR-2026120x-0123456789abcdef"));
    }
}
