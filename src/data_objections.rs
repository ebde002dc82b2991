//! Data objections (疑义、错误信息快速校核): a consuming department reports
//! a shared record as doubtful or wrong to the department that owns it,
//! naming the dataset, the field, the resident and what seems wrong (never
//! a value: the gateway does not take one), and the reporter's own
//! disclosure of that field of that resident (its audit reference): only
//! what a consumer was given can it report. The owner's data steward checks
//! it in its own system and answers (`corrected`, `confirmed` or
//! `not_ours`) within `[sharing] objection_days` working days; the reporter
//! reads the answer. The resident ID reaches the owner's stewards only: it
//! is kept sealed (AES-256-GCM under a key derived from the pseudonym key,
//! bound to the objection), shown masked to everyone else, and the audit
//! log names the resident by pseudonym as everywhere. Kept by id
//! ([`crate::kept`]).

use serde::{Deserialize, Serialize};

/// The prefix of an objection's id.
pub const ID_PREFIX: &str = "DO-";

/// The label the resident ID is sealed under.
pub const SEAL_LABEL: &str = "data objection resident id";

/// Where an objection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Reported, waiting for the owner's answer.
    Open,
    /// Answered by the owner.
    Answered,
}

impl State {
    /// Its name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Answered => "answered",
        }
    }
}

/// What the owner found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The record was wrong and is corrected at the source.
    Corrected,
    /// The record was checked and is right.
    Confirmed,
    /// Not the owner's to answer (another department's record or field).
    NotOurs,
}

impl Outcome {
    /// The outcome of its name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "corrected" => Some(Self::Corrected),
            "confirmed" => Some(Self::Confirmed),
            "not_ours" => Some(Self::NotOurs),
            _ => None,
        }
    }
}

/// The owner's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// What it found.
    pub outcome: Outcome,
    /// Its words for the reporter.
    pub note: Option<String>,
    /// Who answered (`department/subject`).
    pub by: String,
    /// When, ms since the epoch.
    pub at_ms: i64,
}

/// One objection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataObjection {
    /// Its id (`DO-YYYYMMDD-` and 16 hex digits).
    pub id: String,
    /// The reporting department.
    pub consumer: String,
    /// Who reported it (`department/subject`).
    pub filed_by: String,
    /// The department that owns the dataset.
    pub owner: String,
    /// The dataset.
    pub dataset: String,
    /// The field thought wrong.
    pub field: String,
    /// The node whose log holds the reporter's disclosure of it.
    pub node: String,
    /// That disclosure's sequence number there.
    pub seq: u64,
    /// The resident's pseudonym (hex), as the audit log names them.
    pub resident: String,
    /// The resident ID masked (`110101********1234`), for everyone else.
    pub masked_id: String,
    /// The resident ID sealed for the owner's stewards ([`SEAL_LABEL`],
    /// bound to [`DataObjection::seal_context`]).
    pub sealed_id: String,
    /// What seems wrong, in the reporter's words.
    pub what: String,
    /// When it was reported, ms since the epoch.
    pub filed_ms: i64,
    /// The last day of the owner's answer (`YYYY-MM-DD`, local).
    pub due: String,
    /// Where it stands.
    pub state: State,
    /// The owner's answer, once there is one.
    pub answer: Option<Answer>,
}

impl DataObjection {
    /// What the resident ID is sealed for: this objection, its owner and
    /// dataset (moved to another record, or with its owner changed in the
    /// store, it does not open).
    pub fn seal_context(&self) -> String {
        format!("{}\n{}\n{}", self.id, self.owner, self.dataset)
    }
}

impl crate::kept::Record for DataObjection {
    const TREE: &'static str = "data_objections";
    const TABLE: &'static str = "tongban_data_objection";
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

/// The data objections.
pub type DataObjections = crate::kept::Kept<DataObjection>;
