//! Explaining a decision: would this request be allowed, under which
//! grant, and if not, why.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{admin, bad_body, parse_body};
use crate::api::openapi as doc;
use crate::api::{Answer, RequestContext, finish};
use crate::audit::EventKind;
use crate::domain::{CaseRef, DatasetId, DeptId, FieldName, Purpose, Role};
use crate::gateway::Gateway;
use crate::policy::model::Operation;
use crate::policy::{Decision, DecisionRequest};
use crate::problem::{BodyFault, Lang, Problem, ProblemType};

/// Body of `POST /v1/admin/decide`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecideBody {
    dept: DeptId,
    roles: Vec<Role>,
    dataset: DatasetId,
    operation: Operation,
    purpose: Purpose,
    #[serde(default)]
    case_ref: Option<CaseRef>,
    #[serde(default)]
    fields: Option<Vec<FieldName>>,
    /// The day to decide for (`YYYY-MM-DD`); default today.
    #[serde(default)]
    date: Option<String>,
}

/// Explain a decision: would this request be allowed, under which grant, and if not, why.
#[utoipa::path(
    post,
    path = "/v1/admin/decide",
    tag = "admin",
    operation_id = "admin_decide",
    request_body = doc::DecideRequest,
    responses(
        (status = 200, description = "The decision and its reason", body = doc::DecideAnswer),
        (status = 415, description = "Not JSON", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn decide(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, "policy.decide");
    let result = (|| {
        admin(&gw, &headers, &mut event)?;
        let q: DecideBody = parse_body(&headers, body, true)?;
        let today = match &q.date {
            None => gw.today(),
            Some(d) => {
                time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]"))
                    .map_err(|_| bad_body(BodyFault::Date))?
            }
        };
        event.detail = Some(format!(
            "dept={}&dataset={}&operation={}&purpose={}",
            q.dept,
            q.dataset,
            q.operation.as_str(),
            q.purpose
        ));
        let policy = gw.policy.snapshot();
        let decision = policy.decide(&DecisionRequest {
            consumer: &q.dept,
            roles: &q.roles,
            dataset: &q.dataset,
            operation: q.operation,
            purpose: &q.purpose,
            case_ref: q.case_ref.as_ref(),
            requested: q.fields.as_deref(),
            today,
        });
        let mut body = Map::new();
        body.insert("policy_version".into(), json!(policy.version()));
        body.insert("date".into(), json!(today.to_string()));
        match decision {
            Decision::Allow(a) => {
                body.insert("decision".into(), json!("allow"));
                body.insert("grant".into(), json!({"id": a.grant.id(), "version": a.grant.version(), "basis": a.grant.grant.spec.basis}));
                let fields: Vec<Value> = a
                    .fields
                    .iter()
                    .map(|f| json!({"name": f.name, "mask": f.mask}))
                    .collect();
                body.insert("fields".into(), Value::Array(fields));
            }
            Decision::Deny(d) => {
                body.insert("decision".into(), json!("deny"));
                body.insert("reason".into(), json!(ProblemType::from(d.reason).slug()));
                body.insert(
                    "detail".into(),
                    json!(Problem::Denied(d.clone()).detail(Lang::En)),
                );
                body.insert("nearest_grant".into(), json!(d.nearest));
            }
        }
        Ok(Answer::ok(body))
    })();
    finish(&gw, &ctx, event, result).await
}
