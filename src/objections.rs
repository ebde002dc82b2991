//! Residents' objections (异议) against a use of their data (PIPL Art.
//! 44–50), and the privacy officers' answers. An objection names one
//! disclosure of the resident's own record and holds the resident's words;
//! it is `open` until an officer answers (`answered`) or closes it
//! (`closed`), and is due within `[residents] objection_answer_days`
//! working days on the working-day calendar. Kept by id in a sled tree
//! (synced before the answer leaves) on a single node, in PostgreSQL in
//! cluster mode; residents are named by pseudonym only.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::cluster::Cluster;

/// Where an objection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Lodged, not answered yet.
    Open,
    /// An officer answered; the resident may object again to the same use.
    Answered,
    /// Closed by an officer.
    Closed,
}

impl State {
    /// Its name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Answered => "answered",
            Self::Closed => "closed",
        }
    }

    /// The state of its name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(Self::Open),
            "answered" => Some(Self::Answered),
            "closed" => Some(Self::Closed),
            _ => None,
        }
    }
}

/// An officer's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The answer, for the resident.
    pub text: String,
    /// Who answered (`department/subject`).
    pub by: String,
    /// When, ms since the epoch.
    pub at_ms: i64,
}

/// One objection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Objection {
    /// Its id (`YYYYMMDD-` and 16 hex digits).
    pub id: String,
    /// The resident's pseudonym (hex).
    pub resident: String,
    /// The node whose log holds the disclosure objected to.
    pub node: String,
    /// The disclosure's sequence number there.
    pub seq: u64,
    /// What the disclosure was, as the resident's record showed it.
    pub disclosure: serde_json::Value,
    /// The resident's words.
    pub text: String,
    /// When it was lodged, ms since the epoch.
    pub filed_ms: i64,
    /// The last day an answer is due (`YYYY-MM-DD`, local).
    pub due: String,
    /// Where it stands.
    pub state: State,
    /// The officer's answer, once there is one.
    pub reply: Option<Reply>,
}

pub use crate::datadir::StoreError;

/// The objections.
pub struct Objections {
    backend: Backend,
}

impl std::fmt::Debug for Objections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Objections").finish_non_exhaustive()
    }
}

enum Backend {
    Local {
        /// id → objection
        tree: sled::Tree,
        /// resident ‖ id → ()
        by_resident: sled::Tree,
        data_dir: PathBuf,
        /// One change at a time: a check and its write are one step.
        writing: tokio::sync::Mutex<()>,
    },
    Cluster(Arc<Cluster>),
}

/// What became of an objection lodged.
#[derive(Debug, PartialEq, Eq)]
pub enum Lodged {
    /// Kept.
    Taken,
    /// One about the same use is open already: its id.
    AlreadyOpen(String),
}

impl Objections {
    /// The objections of a cluster (in PostgreSQL) or of a single node (in `db`).
    pub fn open(
        cluster: Option<&Arc<Cluster>>,
        db: &sled::Db,
        data_dir: &std::path::Path,
    ) -> sled::Result<Self> {
        Ok(Self {
            backend: match cluster {
                Some(c) => Backend::Cluster(c.clone()),
                None => Backend::Local {
                    tree: db.open_tree("objections")?,
                    by_resident: db.open_tree("objections_by_resident")?,
                    data_dir: data_dir.to_owned(),
                    writing: tokio::sync::Mutex::new(()),
                },
            },
        })
    }

    /// Keeps a new objection, unless one about the same use is open (two
    /// lodged at once: one is kept); durable when it returns.
    pub async fn lodge(&self, o: &Objection) -> Result<Lodged, StoreError> {
        match &self.backend {
            Backend::Local {
                tree,
                by_resident,
                data_dir,
                writing,
            } => {
                let _one = writing.lock().await;
                let open = self
                    .list(Some(&o.resident))
                    .await?
                    .into_iter()
                    .find(|x| x.state == State::Open && x.node == o.node && x.seq == o.seq);
                if let Some(x) = open {
                    return Ok(Lodged::AlreadyOpen(x.id));
                }
                tree.insert(o.id.as_bytes(), serde_json::to_vec(o)?)?;
                by_resident.insert(format!("{}/{}", o.resident, o.id).as_bytes(), &[])?;
                tree.flush()?;
                crate::datadir::sync_db_file(data_dir)?;
                Ok(Lodged::Taken)
            }
            Backend::Cluster(c) => Ok(c.store.objection_lodge(o).await?),
        }
    }

    /// Keeps an objection's answer, unless it was closed meanwhile (false);
    /// durable when it returns.
    pub async fn answer(&self, o: &Objection) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Local {
                tree,
                data_dir,
                writing,
                ..
            } => {
                let _one = writing.lock().await;
                match self.get(&o.id).await? {
                    Some(x) if x.state != State::Closed => {}
                    _ => return Ok(false),
                }
                tree.insert(o.id.as_bytes(), serde_json::to_vec(o)?)?;
                tree.flush()?;
                crate::datadir::sync_db_file(data_dir)?;
                Ok(true)
            }
            Backend::Cluster(c) => Ok(c.store.objection_answer(o).await?),
        }
    }

    /// The objection `id`.
    pub async fn get(&self, id: &str) -> Result<Option<Objection>, StoreError> {
        match &self.backend {
            Backend::Local { tree, .. } => Ok(match tree.get(id.as_bytes())? {
                Some(bytes) => Some(serde_json::from_slice(&bytes)?),
                None => None,
            }),
            Backend::Cluster(c) => Ok(c.store.objection_get(id).await?),
        }
    }

    /// Every objection, or one resident's (by pseudonym, hex), newest first.
    pub async fn list(&self, resident: Option<&str>) -> Result<Vec<Objection>, StoreError> {
        let mut all = match &self.backend {
            Backend::Local {
                tree, by_resident, ..
            } => {
                let mut out = Vec::new();
                match resident {
                    // The resident's own, by the index.
                    Some(r) => {
                        for item in by_resident.scan_prefix(format!("{r}/").as_bytes()) {
                            let (k, _) = item?;
                            let id = k.get(r.len() + 1..).unwrap_or_default();
                            if let Some(v) = tree.get(id)? {
                                out.push(serde_json::from_slice(&v)?);
                            }
                        }
                    }
                    None => {
                        for item in tree.iter() {
                            let (_, v) = item?;
                            out.push(serde_json::from_slice(&v)?);
                        }
                    }
                }
                out
            }
            Backend::Cluster(c) => c.store.objections(resident).await?,
        };
        all.sort_by(|a: &Objection, b| b.filed_ms.cmp(&a.filed_ms).then(b.id.cmp(&a.id)));
        Ok(all)
    }
}
