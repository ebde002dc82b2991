//! Typed answers: each JSON shape of a record route is one struct, serialized
//! straight to bytes, whose schema is the one the OpenAPI document shows.
//! Members are declared in name order, the order answers have always had.

use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::openapi::FieldValue;

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
    pub id: String,
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
    pub dataset: String,
    /// The grant that allowed it.
    pub grant: GrantRef,
    /// Version of the policy set that decided.
    pub policy_version: String,
    /// With `Prefer: signed`, or under a grant that requires it: a compact
    /// JWS (EdDSA) of what was disclosed, verifiable with `/.well-known/jwks.json`.
    #[schema(nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proof: Option<String>,
    /// The purpose named in `X-Purpose`.
    pub purpose: String,
    /// Exactly the granted fields (masked where the grant says so).
    #[schema(value_type = std::collections::BTreeMap<String, FieldValue>)]
    pub record: Box<RawValue>,
    /// The resident ID, masked.
    #[schema(example = "110101********9455")]
    pub resident: String,
}
