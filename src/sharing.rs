//! Sharing requests (共享申请), as the sharing rules run them: a consuming
//! department files a request for a grant; the data authority (政务数据主管
//! 部门, `data_authority` of the operator department) reviews it within
//! `[sharing] review_days` working days; the owning department's
//! `data_steward` answers within `answer_days` (unconditional data is
//! authorized on the review alone). An approved request becomes a grant,
//! through the same validated, audited path as an administrator's edit,
//! with its provenance. A grant's validity ends; a renewal is a new
//! request naming the grant it renews. Kept by id ([`crate::kept`]).

use serde::{Deserialize, Serialize};

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
    /// Approved, then its grant renewed by a later request (named in the
    /// history), which the grant now comes from.
    Renewed,
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
            Self::Renewed => "renewed",
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
    /// The grant this request renews (its consumer's, on the same
    /// dataset): approved, the renewal replaces it under the same id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renews: Option<String>,
    /// The version of that grant when the renewal was filed: approved, the
    /// renewal replaces that version only (a grant changed since is not
    /// overwritten).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renews_version: Option<u32>,
}

pub use crate::kept::StoreError;

impl crate::kept::Record for Request {
    const TREE: &'static str = "sharing_requests";
    const TABLE: &'static str = "tongban_sharing_request";
    fn id(&self) -> &str {
        &self.id
    }
    fn state(&self) -> &'static str {
        self.state.as_str()
    }
    fn filed_ms(&self) -> i64 {
        self.filed_ms
    }
}

/// The sharing requests.
pub type Requests = crate::kept::Kept<Request>;

/// The prefix of a request's id.
pub const ID_PREFIX: &str = "SR-";

/// The sharing workflow's records: requests and data objections.
#[derive(Debug)]
pub struct Workflow {
    /// Sharing requests (共享申请).
    pub requests: Requests,
    /// Data objections (疑义、纠错) to owners.
    pub objections: crate::data_objections::DataObjections,
}

impl Workflow {
    /// The records of a cluster (in PostgreSQL) or of a single node (in `db`).
    pub fn open(
        cluster: Option<&std::sync::Arc<crate::cluster::Cluster>>,
        db: &sled::Db,
        data_dir: &std::path::Path,
    ) -> sled::Result<Self> {
        Ok(Self {
            requests: Requests::open(cluster, db, data_dir)?,
            objections: crate::data_objections::DataObjections::open(cluster, db, data_dir)?,
        })
    }
}
