//! Dry runs: would a set of changes load, and who would gain or lose access.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::change::edit_error;
use super::{admin, parse_body};
use crate::api::openapi as doc;
use crate::api::{Answer, RequestContext, finish};
use crate::audit::EventKind;
use crate::domain::{DatasetId, GrantId};
use crate::gateway::Gateway;
use crate::policy::edit::{Change, prepare};
use crate::policy::model::{DatasetSpec, GrantSpec};
use crate::problem::Lang;

/// One proposed change in `POST /v1/admin/validate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "action", rename_all = "snake_case")]
pub(crate) enum ProposedChange {
    /// Create or replace a grant.
    PutGrant { grant: Box<GrantSpec> },
    /// Delete a grant.
    DeleteGrant { id: GrantId },
    /// Create or replace a dataset.
    PutDataset { dataset: Box<DatasetSpec> },
    /// Delete a dataset.
    DeleteDataset { id: DatasetId },
}

/// Body of `POST /v1/admin/validate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ValidateBody {
    changes: Vec<ProposedChange>,
}

/// Dry-run changes: would the policy set load, and who would gain or lose access.
#[utoipa::path(
    post,
    path = "/v1/admin/validate",
    tag = "admin",
    operation_id = "admin_validate",
    request_body = doc::ValidateRequest,
    responses(
        (status = 200, description = "The verdict; nothing is changed", body = doc::ValidateAnswer),
        (status = 415, description = "Not JSON", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn validate_changes(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, "policy.validate");
    let result = (|| {
        admin(&gw, &headers, &mut event)?;
        let proposal: ValidateBody = parse_body(&headers, body, true)?;
        let policy = gw.policy.snapshot();
        let mut set = policy.set.clone();
        let mut errors = Vec::new();
        for change in proposal.changes {
            let change = match change {
                ProposedChange::PutGrant { grant } => Change::PutGrant(grant),
                ProposedChange::DeleteGrant { id } => Change::DeleteGrant(id),
                ProposedChange::PutDataset { dataset } => Change::PutDataset(dataset),
                ProposedChange::DeleteDataset { id } => Change::DeleteDataset(id),
            };
            let (kind, id) = (change.kind(), change.id());
            match prepare(&set, &change) {
                Ok(p) => set = p.set,
                Err(e) => {
                    let e = edit_error(e, kind, &id);
                    errors.push(json!({"change": format!("{kind} {id}"), "problem": e.slug(), "detail": e.detail(Lang::En), "errors": e.extra.get("errors"), "grants": e.extra.get("grants")}));
                    break;
                }
            }
        }
        let access: Vec<String> = crate::policy::diff::diff(&policy.set, &set)
            .iter()
            .map(ToString::to_string)
            .collect();
        let mut body = Map::new();
        body.insert("valid".into(), json!(errors.is_empty()));
        body.insert("errors".into(), Value::Array(errors));
        body.insert("access_changes".into(), json!(access));
        body.insert("policy_version".into(), json!(set.version));
        Ok(Answer::ok(body))
    })();
    finish(&gw, &ctx, event, result).await
}
