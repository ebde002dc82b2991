//! What officers marked reviewed, and which flags were already announced:
//! kept by flag id in a sled tree on a single node, in PostgreSQL in
//! cluster mode (so a mark made on one node shows on every node, and a
//! flag is posted once for the whole cluster).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::cluster::Cluster;

/// A flag marked reviewed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    /// Who marked it (`department/subject`).
    pub by: String,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// What the reviewer found.
    pub note: String,
}

pub use crate::datadir::StoreError;

/// The review marks and the announced flags.
pub struct Reviews {
    backend: Backend,
}

impl std::fmt::Debug for Reviews {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reviews").finish_non_exhaustive()
    }
}

enum Backend {
    Local {
        reviews: sled::Tree,
        announced: sled::Tree,
        data_dir: PathBuf,
    },
    Cluster(Arc<Cluster>),
}

impl Reviews {
    /// The marks of a cluster (in PostgreSQL) or of a single node (in `db`).
    pub fn open(
        cluster: Option<&Arc<Cluster>>,
        db: &sled::Db,
        data_dir: &std::path::Path,
    ) -> sled::Result<Self> {
        Ok(Self {
            backend: match cluster {
                Some(c) => Backend::Cluster(c.clone()),
                None => Backend::Local {
                    reviews: db.open_tree("flag_reviews")?,
                    announced: db.open_tree("flag_announced")?,
                    data_dir: data_dir.to_owned(),
                },
            },
        })
    }

    /// Marks `id` reviewed (a later mark replaces an earlier one); durable
    /// when it returns.
    pub async fn mark(&self, id: &str, review: &Review) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Local {
                reviews, data_dir, ..
            } => {
                let bytes = serde_json::to_vec(review).map_err(std::io::Error::other)?;
                reviews.insert(id.as_bytes(), bytes)?;
                reviews.flush()?;
                crate::datadir::sync_db_file(data_dir)?;
                Ok(())
            }
            Backend::Cluster(c) => Ok(c.store.flag_review_put(id, review).await?),
        }
    }

    /// The marks of `ids` that have one.
    pub async fn of(&self, ids: &[String]) -> Result<HashMap<String, Review>, StoreError> {
        match &self.backend {
            Backend::Local { reviews, .. } => {
                let mut out = HashMap::new();
                for id in ids {
                    if let Some(bytes) = reviews.get(id.as_bytes())? {
                        // A mark that cannot be read is shown as none.
                        if let Ok(r) = serde_json::from_slice(&bytes) {
                            out.insert(id.clone(), r);
                        }
                    }
                }
                Ok(out)
            }
            Backend::Cluster(c) => Ok(c.store.flag_reviews(ids).await?),
        }
    }

    /// Records that `id` was announced (counted and posted) at `at_ms`:
    /// true the first time, false ever after, on every node.
    pub async fn announce(&self, id: &str, node: &str, at_ms: i64) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Local { announced, .. } => {
                let fresh = announced
                    .compare_and_swap(id.as_bytes(), None::<&[u8]>, Some(&at_ms.to_be_bytes()))?
                    .is_ok();
                Ok(fresh)
            }
            Backend::Cluster(c) => Ok(c.store.flag_announce(id, node, at_ms).await?),
        }
    }

    /// Forgets the announcements made before `before_ms` (their day is
    /// over: the same flag cannot be found new again).
    pub async fn forget_announced(&self, before_ms: i64) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Local { announced, .. } => {
                for item in announced.iter() {
                    let (k, v) = item?;
                    let at = v
                        .as_ref()
                        .try_into()
                        .map(i64::from_be_bytes)
                        .unwrap_or(i64::MIN);
                    if at < before_ms {
                        announced.remove(k)?;
                    }
                }
                Ok(())
            }
            Backend::Cluster(c) => Ok(c.store.flag_announced_purge(before_ms).await?),
        }
    }
}
