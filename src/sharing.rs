//! Sharing requests (共享申请), as the sharing rules run them: a consuming
//! department files a request for a grant; the data authority (政务数据主管
//! 部门, `data_authority` of the operator department) reviews it within
//! `[sharing] review_days` working days; the owning department's
//! `data_steward` answers within `answer_days` (unconditional data is
//! authorized on the review alone). An approved request becomes a grant,
//! through the same validated, audited path as an administrator's edit,
//! with its provenance. Kept by id in a sled tree (synced) on a single
//! node, in PostgreSQL in cluster mode.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::cluster::Cluster;
use crate::policy::model::GrantSpec;

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Filed, waiting for the data authority's review.
    Filed,
    /// Reviewed, waiting for the owner's answer.
    Reviewed,
    /// Approved: the grant is in force.
    Approved,
    /// Refused, with a reason.
    Refused,
    /// Returned for changes, with a reason: file it again.
    Returned,
    /// Withdrawn by the consumer.
    Withdrawn,
    /// Approved, then its grant revoked by the owner (with a reason).
    Revoked,
}

impl State {
    /// Its name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Filed => "filed",
            Self::Reviewed => "reviewed",
            Self::Approved => "approved",
            Self::Refused => "refused",
            Self::Returned => "returned",
            Self::Withdrawn => "withdrawn",
            Self::Revoked => "revoked",
        }
    }
}

/// One step of a request's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// `filed`, `reviewed`, `approved`, `refused`, `returned`.
    pub action: String,
    /// Who (`department/subject`).
    pub by: String,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// Why (required for a refusal or a return).
    pub reason: Option<String>,
}

/// A sharing request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// Its id (`SR-YYYYMMDD-` and 16 hex digits).
    pub id: String,
    /// The consuming department.
    pub consumer: String,
    /// The department that owns the dataset.
    pub owner: String,
    /// The dataset.
    pub dataset: String,
    /// Whether the owner answers (`conditional`) or the review alone
    /// authorizes (`unconditional`).
    pub class: String,
    /// The use case (应用场景) the data serves.
    pub use_case: String,
    /// The grant asked for, complete (its id is the request's grant id).
    pub grant: GrantSpec,
    /// Where it stands.
    pub state: State,
    /// When it was filed, ms since the epoch.
    pub filed_ms: i64,
    /// The last day the review is due (`YYYY-MM-DD`).
    pub review_due: String,
    /// The last day the owner's answer is due, once reviewed.
    pub answer_due: Option<String>,
    /// Every step, oldest first.
    pub history: Vec<Step>,
}

pub use crate::datadir::StoreError;

/// The sharing requests.
pub struct Requests {
    backend: Backend,
}

impl std::fmt::Debug for Requests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requests").finish_non_exhaustive()
    }
}

enum Backend {
    Local { tree: sled::Tree, data_dir: PathBuf },
    Cluster(Arc<Cluster>),
}

impl Requests {
    /// The requests of a cluster (in PostgreSQL) or of a single node (in `db`).
    pub fn open(
        cluster: Option<&Arc<Cluster>>,
        db: &sled::Db,
        data_dir: &std::path::Path,
    ) -> sled::Result<Self> {
        Ok(Self {
            backend: match cluster {
                Some(c) => Backend::Cluster(c.clone()),
                None => Backend::Local {
                    tree: db.open_tree("sharing_requests")?,
                    data_dir: data_dir.to_owned(),
                },
            },
        })
    }

    /// Keeps `r` (new or changed) if the stored one is still in `was`
    /// (none: new); false if another change came first. Durable when it
    /// returns.
    pub async fn put(&self, r: &Request, was: Option<State>) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Local { tree, data_dir } => {
                let old = match was {
                    None => None,
                    Some(_) => tree.get(r.id.as_bytes())?,
                };
                let matches = match (&old, was) {
                    (None, None) => true,
                    (Some(bytes), Some(state)) => {
                        serde_json::from_slice::<Request>(bytes)?.state == state
                    }
                    _ => false,
                };
                if !matches {
                    return Ok(false);
                }
                let swapped = tree
                    .compare_and_swap(r.id.as_bytes(), old, Some(serde_json::to_vec(r)?))?
                    .is_ok();
                if swapped {
                    tree.flush()?;
                    crate::datadir::sync_db_file(data_dir)?;
                }
                Ok(swapped)
            }
            Backend::Cluster(c) => Ok(c.store.sharing_put(r, was.map(State::as_str)).await?),
        }
    }

    /// The request `id`.
    pub async fn get(&self, id: &str) -> Result<Option<Request>, StoreError> {
        match &self.backend {
            Backend::Local { tree, .. } => Ok(match tree.get(id.as_bytes())? {
                Some(bytes) => Some(serde_json::from_slice(&bytes)?),
                None => None,
            }),
            Backend::Cluster(c) => Ok(c.store.sharing_get(id).await?),
        }
    }

    /// Every request, newest first.
    pub async fn list(&self) -> Result<Vec<Request>, StoreError> {
        let mut all: Vec<Request> = match &self.backend {
            Backend::Local { tree, .. } => {
                let mut out = Vec::new();
                for item in tree.iter() {
                    let (_, v) = item?;
                    out.push(serde_json::from_slice(&v)?);
                }
                out
            }
            Backend::Cluster(c) => c.store.sharing_list().await?,
        };
        all.sort_by(|a, b| b.filed_ms.cmp(&a.filed_ms).then(b.id.cmp(&a.id)));
        Ok(all)
    }
}

/// A new request id: the local day and 64 random bits.
pub fn new_id(day: time::Date) -> String {
    let mut bits = [0u8; 8];
    let _ = aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut bits);
    format!(
        "SR-{:04}{:02}{:02}-{}",
        day.year(),
        u8::from(day.month()),
        day.day(),
        crate::domain::hex(&bits)
    )
}

/// Whether `id` has the form of a request id.
pub fn well_formed(id: &str) -> bool {
    id.len() == 28
        && id.starts_with("SR-")
        && id.as_bytes()[11] == b'-'
        && id[3..11].bytes().all(|b| b.is_ascii_digit())
        && id[12..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}
