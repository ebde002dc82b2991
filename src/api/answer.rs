//! Typed answers: each JSON shape of a record route is one struct, serialized
//! straight to bytes, whose schema is the one the OpenAPI document shows.
//! Members are declared in name order, the order answers have always had.

use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::openapi::FieldValue;
use crate::audit::event::Text;
use crate::pipeline::verify::Outcome;

/// Where the request was recorded in the audit log.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditRef {
    /// For a batch: the last of its consecutive events (one per resident).
    #[schema(nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
    /// The request's id (also in `X-Request-Id`).
    pub request_id: String,
    /// Sequence number of the request's audit event.
    pub seq: u64,
}

/// The grant an answer was given under.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GrantRef {
    /// Grant id.
    #[schema(value_type = String)]
    pub id: Text,
    /// Grant version.
    pub version: u32,
}

/// `GET /v1/datasets/{dataset}/records/{resident_id}`: the granted fields only.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordAnswer {
    /// The audit event.
    pub audit: AuditRef,
    /// The case reference named in `X-Case-Ref`.
    #[schema(required = true)]
    pub case_ref: Option<String>,
    /// The dataset.
    #[schema(value_type = String)]
    pub dataset: Text,
    /// The grant that allowed it.
    pub grant: GrantRef,
    /// Version of the policy set that decided.
    #[schema(value_type = String)]
    pub policy_version: Text,
    /// With `Prefer: signed`, or under a grant that requires it: a compact
    /// JWS (EdDSA) of what was disclosed, verifiable with `/.well-known/jwks.json`.
    #[schema(nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proof: Option<String>,
    /// The purpose named in `X-Purpose`.
    #[schema(value_type = String)]
    pub purpose: Text,
    /// Exactly the granted fields (masked where the grant says so).
    #[schema(value_type = std::collections::BTreeMap<String, FieldValue>)]
    pub record: Box<RawValue>,
    /// The resident ID, masked.
    #[schema(example = "110101********9455")]
    pub resident: String,
}

/// `POST …/records/{resident_id}/verify`: yes or no per condition, never
/// the values.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyAnswer {
    /// The audit event.
    pub audit: AuditRef,
    /// The case reference named in `X-Case-Ref`.
    #[schema(required = true)]
    pub case_ref: Option<String>,
    /// The dataset.
    #[schema(value_type = String)]
    pub dataset: Text,
    /// The grant that allowed it.
    pub grant: GrantRef,
    /// Whether every condition holds.
    #[serde(rename = "match")]
    pub matches: bool,
    /// Version of the policy set that decided.
    #[schema(value_type = String)]
    pub policy_version: Text,
    /// With `Prefer: signed`, or under a grant that requires it: a compact
    /// JWS (EdDSA) of what was disclosed, verifiable with `/.well-known/jwks.json`.
    #[schema(nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proof: Option<String>,
    /// The purpose named in `X-Purpose`.
    #[schema(value_type = String)]
    pub purpose: Text,
    /// The resident ID, masked.
    #[schema(example = "110101********9455")]
    pub resident: String,
    /// One outcome per condition, in order.
    pub results: Vec<Outcome>,
}

/// `POST /v1/datasets/{dataset}/records:batch`: one answer per ID, in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchAnswer {
    /// The audit events: `seq` to `last_seq`, one per resident answered.
    pub audit: AuditRef,
    /// The case reference named in `X-Case-Ref`.
    #[schema(required = true)]
    pub case_ref: Option<String>,
    /// The dataset.
    #[schema(value_type = String)]
    pub dataset: Text,
    /// The grant that allowed it.
    pub grant: GrantRef,
    /// Version of the policy set that decided.
    #[schema(value_type = String)]
    pub policy_version: Text,
    /// With `Prefer: signed`, or under a grant that requires it: a compact
    /// JWS (EdDSA) of what was disclosed, verifiable with `/.well-known/jwks.json`.
    #[schema(nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proof: Option<String>,
    /// The purpose named in `X-Purpose`.
    #[schema(value_type = String)]
    pub purpose: Text,
    /// One per ID, in the order sent.
    pub results: Vec<BatchItem>,
}

/// What became of one ID of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    /// Found; `record` holds the granted fields.
    Found,
    /// The dataset holds no record of this resident.
    NotFound,
    /// Not a valid resident ID; `detail` says why.
    InvalidId,
}

/// One answer of a batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchItem {
    /// Why the ID is invalid.
    #[schema(nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Position of the ID in the request.
    pub index: usize,
    /// The granted fields (when found), masked where the grant says so.
    #[schema(nullable = false, value_type = Option<std::collections::BTreeMap<String, FieldValue>>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<Box<RawValue>>,
    /// The resident ID, masked (absent for an invalid ID).
    #[schema(nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resident: Option<String>,
    /// What became of it.
    pub status: BatchStatus,
}

/// A record route's typed answer, whose audit reference (and proof, when
/// signed) is filled in once its events are durable.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Typed {
    /// A lookup.
    Record(RecordAnswer),
    /// A verification.
    Verify(VerifyAnswer),
    /// A batch.
    Batch(BatchAnswer),
}

impl Typed {
    /// Fills in where the answer was recorded, and its proof.
    pub fn seal(&mut self, audit: AuditRef, proof: Option<String>) {
        let (slot, proof_slot) = match self {
            Self::Record(a) => (&mut a.audit, &mut a.proof),
            Self::Verify(a) => (&mut a.audit, &mut a.proof),
            Self::Batch(a) => (&mut a.audit, &mut a.proof),
        };
        *slot = audit;
        *proof_slot = proof;
    }
}

impl AuditRef {
    /// A place holder until the answer's events are numbered.
    pub fn pending() -> Self {
        Self {
            last_seq: None,
            request_id: String::new(),
            seq: 0,
        }
    }
}
