//! Routes for policy administrators: read and change grants and the catalog,
//! dry-run a change, explain a decision, read the history, revert.
//!
//! Every route needs role `policy_admin` in the operator department. A change
//! is prepared and validated as a whole under the policy lock, recorded in
//! the audit log (durably, with before and after), and only then written to
//! its file and swapped in, in one step.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi as doc;
use super::{Answer, RequestContext, bad_query, finish, finish_then};
use crate::audit::query::format_time;
use crate::audit::{EventBody, EventKind};
use crate::cluster::stops::StopChange;
use crate::cluster::{ChangeMeta, ChangeTx};
use crate::domain::{CaseRef, DatasetId, DeptId, FieldName, GrantId, Purpose, Role};
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::pipeline::admit::staff;
use crate::pipeline::authn::Principal;
use crate::policy::edit::{
    Change, EditError, Prepared, apply_files, dataset_etag, dataset_toml, grant_etag, grant_toml,
    prepare,
};
use crate::policy::history::HistoryEntry;
use crate::policy::model::{DatasetSpec, GrantSpec, GrantsFile, Operation};
use crate::policy::{Decision, DecisionRequest};
use crate::problem::{
    BodyFault, EntryKind, IdInput, Lang, Precondition, Problem, ProblemType, RevocationFault,
};
use crate::stops::revocation::{Revocation, RevocationTarget};

/// The role every route here needs.
pub const POLICY_ADMIN: &str = "policy_admin";

pub(crate) fn router() -> OpenApiRouter<Arc<Gateway>> {
    OpenApiRouter::new()
        .routes(routes!(list_grants))
        .routes(routes!(get_grant, put_grant, delete_grant))
        .routes(routes!(revert_grant))
        .routes(routes!(list_datasets))
        .routes(routes!(get_dataset, put_dataset, delete_dataset))
        .routes(routes!(validate_changes))
        .routes(routes!(decide))
        .routes(routes!(history))
        .routes(routes!(list_departments))
        .routes(routes!(cluster_state))
        .routes(routes!(cluster_versions))
        .routes(routes!(suspend_department))
        .routes(routes!(resume_department))
        .routes(routes!(list_revoked_tokens, revoke_token))
}

/// Body of a token revocation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokeBody {
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    issued_before: Option<String>,
    #[serde(default)]
    expires: Option<String>,
    reason: String,
}

fn denial_json(gw: &Gateway, d: &Revocation) -> Value {
    json!({
        "jti": d.jti(), "sub": d.sub(),
        "issued_before": d.issued_before().map(|s| format_time(s * 1000, gw.utc_offset)),
        "expires": format_time(d.expires_ms, gw.utc_offset),
        "reason": d.reason, "by": d.by, "at": format_time(d.at_ms, gw.utc_offset),
    })
}

/// The token deny-list in force.
#[utoipa::path(
    get,
    path = "/v1/admin/revoked-tokens",
    tag = "admin",
    operation_id = "admin_list_revoked_tokens",
    responses((status = 200, description = "The entries", body = doc::RevokedTokenList)),
)]
async fn list_revoked_tokens(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, "policy.revoked_tokens");
    let result = admin(&gw, &headers, &mut event).map(|_| {
        let mut body = Map::new();
        let entries: Vec<Value> = gw
            .revocations
            .all()
            .iter()
            .map(|d| denial_json(&gw, d))
            .collect();
        body.insert("entries".into(), Value::Array(entries));
        Answer::ok(body)
    });
    finish(&gw, &ctx, event, result).await
}

/// Revoke tokens: one (`jti`), or every token of a subject issued before a
/// time (`sub`, `issued_before`, default now). Refused from the next request
/// on, cached tokens too, until the entry expires (`expires`, default 7 days
/// from now, at most a year): by then the tokens it matches have expired.
#[utoipa::path(
    post,
    path = "/v1/admin/revoked-tokens",
    tag = "admin",
    operation_id = "admin_revoke_token",
    request_body = doc::RevokeRequest,
    responses((status = 201, description = "In force", body = doc::RevokedToken)),
)]
async fn revoke_token(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, "policy.revoke_token");
    let prepared = (|| {
        let who = admin(&gw, &headers, &mut event)?;
        let b: RevokeBody = parse_body(&headers, body, false)?;
        let when = |member: &'static str, s: &str| {
            crate::audit::query::parse_time(s, gw.utc_offset, false).map_err(|e| {
                ApiError::from(Problem::InvalidRevocation(RevocationFault::Time {
                    member,
                    reason: e.to_owned(),
                }))
            })
        };
        let reason = b.reason.trim().to_owned();
        if reason.is_empty() || reason.chars().count() > 500 {
            return Err(Problem::InvalidReason.into());
        }
        let now = ctx.time_ms;
        // An entry outlives every token it can name: a token presented
        // later than that is refused for its exp anyway.
        let shortest = now.saturating_add(gw.auth.longest_token_life_secs().saturating_mul(1000));
        let expires_ms = match b.expires.as_deref() {
            Some(s) => when("expires", s)?,
            None => shortest,
        };
        if expires_ms < shortest || expires_ms > now + 366 * 86_400_000 {
            return Err(Problem::InvalidRevocation(RevocationFault::Expiry {
                shortest_secs: gw.auth.longest_token_life_secs(),
            })
            .into());
        }
        // Tokens issued (`iat`, whole seconds) before the time are refused:
        // a token issued in the second of the revocation is refused too.
        let issued_before = match b.issued_before.as_deref() {
            Some(t) => Some(when("issued_before", t)?),
            None => b.sub.is_some().then_some(now),
        }
        .map(|ms| ms.div_euclid(1000) + i64::from(ms.rem_euclid(1000) > 0));
        let target = RevocationTarget::new(b.jti.as_deref(), b.sub.as_deref(), issued_before)
            .map_err(|_| ApiError::from(Problem::InvalidRevocation(RevocationFault::Target)))?;
        let denial = Revocation {
            target,
            expires_ms,
            reason,
            by: format!("{}/{}", who.dept, who.subject),
            at_ms: now,
        };
        event.detail = Some(denial_json(&gw, &denial).to_string());
        Ok(denial)
    })();
    match prepared {
        Ok(denial) => {
            let body = denial_json(&gw, &denial)
                .as_object()
                .cloned()
                .unwrap_or_default();
            let answer = Answer::Json {
                status: StatusCode::CREATED,
                body,
                etag: None,
                proof: None,
            };
            finish_then(&gw, &ctx, event, Ok(answer), async |_| {
                gw.revocations
                    .add(denial.clone(), gw.clock.unix_millis())
                    .map_err(|e| suspension_store_failed(&e))?;
                gw.share_stop(StopChange::DenyTokens { revocation: denial })
                    .await;
                Ok(())
            })
            .await
        }
        Err(e) => finish(&gw, &ctx, event, Err(e)).await,
    }
}

fn department_state(gw: &Gateway, id: &str, name: &str) -> Value {
    let s = gw.suspensions.get(id);
    json!({
        "id": id,
        "name": name,
        "suspended": s.is_some(),
        "suspension": s.map(|s| json!({
            "reason": s.reason, "by": s.by,
            "since": format_time(s.at_ms, gw.utc_offset),
        })),
    })
}

/// The department of the path: registered in `departments.toml`.
fn department(
    gw: &Gateway,
    path: Result<Path<String>, PathRejection>,
) -> Result<(DeptId, String), ApiError> {
    let id = DeptId::parse(&path_id(path)?)
        .map_err(|e| ApiError::from(Problem::InvalidId(IdInput::Department, e)))?;
    let policy = gw.policy.snapshot();
    let name = policy
        .set
        .departments
        .get(&id)
        .map(|d| d.name.clone())
        .ok_or_else(|| ApiError::from(Problem::DepartmentNotFound { id: id.to_string() }))?;
    Ok((id, name))
}

fn suspension_store_failed(e: &crate::stops::StopsError) -> ApiError {
    ApiError::from(Problem::SuspensionNotStored(e.to_string()))
}

/// Every registered department and whether it is suspended.
#[utoipa::path(
    get,
    path = "/v1/admin/departments",
    tag = "admin",
    operation_id = "admin_list_departments",
    responses((status = 200, description = "The departments", body = doc::DepartmentList)),
)]
async fn list_departments(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, "policy.departments");
    let result = admin(&gw, &headers, &mut event).map(|_| {
        let policy = gw.policy.snapshot();
        let list: Vec<Value> = policy
            .set
            .departments
            .values()
            .map(|d| department_state(&gw, d.id.as_str(), &d.name))
            .collect();
        let mut body = Map::new();
        body.insert("departments".into(), Value::Array(list));
        Answer::ok(body)
    });
    finish(&gw, &ctx, event, result).await
}

/// The cluster's nodes: each one's address, last heartbeat, whether it is
/// alive and which policy version it enforces. On a single node (no
/// `[cluster]`), `mode` is `single` and the list is empty.
#[utoipa::path(
    get,
    path = "/v1/admin/cluster",
    tag = "admin",
    operation_id = "admin_cluster",
    responses(
        (status = 200, description = "The nodes", body = doc::ClusterState),
        (status = 503, description = "PostgreSQL cannot be reached", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
async fn cluster_state(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, "policy.cluster");
    let result = match admin(&gw, &headers, &mut event) {
        Ok(_) => cluster_body(&gw).await,
        Err(e) => Err(e),
    };
    finish(&gw, &ctx, event, result).await
}

async fn cluster_body(gw: &Gateway) -> Result<Answer, ApiError> {
    let mut body = Map::new();
    body.insert("node_id".into(), json!(gw.config.node_id));
    let Some(cluster) = &gw.cluster else {
        body.insert("mode".into(), json!("single"));
        body.insert("policy_version".into(), Value::Null);
        body.insert("head_version".into(), Value::Null);
        body.insert("nodes".into(), json!([]));
        return Ok(Answer::ok(body));
    };
    let head = cluster
        .store
        .head_version()
        .await
        .map_err(|e| cluster_unavailable(&e))?;
    let nodes = cluster
        .store
        .nodes()
        .await
        .map_err(|e| cluster_unavailable(&e))?;
    let nodes: Vec<Value> = nodes
        .into_iter()
        .map(|n| {
            json!({
                "node_id": n.node_id,
                "listen": n.listen,
                "software": n.software,
                "started_at": format_time(n.started_ms, gw.utc_offset),
                "last_heartbeat": format_time(n.heartbeat_ms, gw.utc_offset),
                "seconds_since_heartbeat": n.seconds_since_heartbeat,
                "alive": n.alive,
                "policy_version": n.policy_version,
                "policy_current": n.policy_version == head,
                "audit_head_seq": n.audit_head,
                "audit_shipped_seq": n.audit_shipped,
                "audit_lag_events": (n.audit_head - n.audit_shipped).max(0),
            })
        })
        .collect();
    body.insert("mode".into(), json!("cluster"));
    body.insert("stops_applied".into(), json!(cluster.stops_applied()));
    body.insert("stops_pending".into(), json!(cluster.outbox().len()));
    body.insert("policy_version".into(), json!(cluster.applied()));
    body.insert("head_version".into(), json!(head));
    body.insert("nodes".into(), Value::Array(nodes));
    Ok(Answer::ok(body))
}

/// Query of the cluster's policy versions.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct VersionsParams {
    /// Most versions, 1 to 1000 (default 100).
    limit: Option<i64>,
}

/// The cluster's policy history: every version in PostgreSQL, newest first,
/// with its author, the node it was committed through, when, what it did,
/// and the files it changed. The same on every node (each node's own
/// `/v1/admin/history` holds the diffs of the changes it applied).
#[utoipa::path(
    get,
    path = "/v1/admin/cluster/versions",
    tag = "admin",
    operation_id = "admin_cluster_versions",
    params(VersionsParams),
    responses(
        (status = 200, description = "The versions", body = doc::ClusterVersions),
        (status = 409, description = "Not in cluster mode", body = doc::Problem, content_type = "application/problem+json"),
        (status = 503, description = "PostgreSQL cannot be reached", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
async fn cluster_versions(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    params: Result<Query<VersionsParams>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, "policy.cluster-versions");
    let result = async {
        admin(&gw, &headers, &mut event)?;
        let Query(p) = params.map_err(|e| bad_query(&e))?;
        let Some(cluster) = &gw.cluster else {
            return Err(Problem::NotACluster.into());
        };
        let limit = p.limit.unwrap_or(100).clamp(1, 1000);
        let versions = cluster
            .store
            .versions(limit)
            .await
            .map_err(|e| cluster_unavailable(&e))?;
        let list: Vec<Value> = versions
            .into_iter()
            .map(|v| {
                json!({
                    "version": v.version,
                    "committed_at": format_time(v.committed_ms, gw.utc_offset),
                    "node_id": v.node_id,
                    "author": v.author,
                    "action": v.action,
                    "summary": v.summary,
                    "content_hash": v.content_hash,
                    "changed_files": v.changed_files,
                })
            })
            .collect();
        let mut body = Map::new();
        body.insert("policy_version".into(), json!(cluster.applied()));
        body.insert("versions".into(), Value::Array(list));
        Ok(Answer::ok(body))
    }
    .await;
    finish(&gw, &ctx, event, result).await
}

fn cluster_unavailable(e: &crate::cluster::ClusterError) -> ApiError {
    tracing::error!(error = %e, "PostgreSQL cannot be reached");
    ApiError::from(Problem::PolicyStoreUnavailable)
}

/// Body of a suspension.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SuspendBody {
    reason: String,
}

/// Suspend a department (the emergency stop): every request of its systems is
/// refused (403 `department-suspended`) from its next request on, on open
/// connections too, until it is resumed. Survives restarts. The operator
/// department cannot be suspended (its administrators must be able to resume).
#[utoipa::path(
    post,
    path = "/v1/admin/departments/{dept}/suspend",
    tag = "admin",
    operation_id = "admin_suspend_department",
    params(("dept" = String, Path, description = "Department id", pattern = "^[a-z][a-z0-9_]{0,31}$")),
    request_body = doc::SuspendRequest,
    responses(
        (status = 200, description = "Suspended", body = doc::DepartmentState),
        (status = 404, description = "No such department", body = doc::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The operator department cannot be suspended", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
async fn suspend_department(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, "policy.suspend");
    let prepared = (|| {
        let who = admin(&gw, &headers, &mut event)?;
        let (dept, name) = department(&gw, path)?;
        if dept.as_str() == gw.config.operator_department {
            return Err(Problem::CannotSuspendOperator.into());
        }
        let SuspendBody { reason } = parse_body(&headers, body, false)?;
        let reason = reason.trim().to_owned();
        if reason.is_empty() || reason.chars().count() > 500 {
            return Err(Problem::InvalidReason.into());
        }
        event.detail = Some(json!({"dept": dept, "reason": reason}).to_string());
        let suspension = crate::stops::suspension::Suspension {
            reason,
            by: format!("{}/{}", who.dept, who.subject),
            at_ms: ctx.time_ms,
            node: gw.config.node_id.clone(),
        };
        Ok((dept, name, suspension))
    })();
    match prepared {
        Ok((dept, name, suspension)) => {
            let mut body = department_state(&gw, dept.as_str(), &name);
            body["suspended"] = json!(true);
            body["suspension"] = json!({"reason": suspension.reason, "by": suspension.by,
                "since": format_time(suspension.at_ms, gw.utc_offset)});
            let body = body.as_object().cloned().unwrap_or_default();
            // In force only once the event that records it is durable.
            finish_then(&gw, &ctx, event, Ok(Answer::ok(body)), async |_| {
                let mut suspension = suspension;
                // Ordered after every stop this node has seen for the department.
                suspension.at_ms = gw
                    .suspensions
                    .suspend_here(dept.as_str(), suspension.clone(), gw.stop_skew_ms())
                    .map_err(|e| suspension_store_failed(&e))?;
                gw.share_stop(StopChange::Suspend {
                    dept: dept.to_string(),
                    suspension,
                })
                .await;
                Ok(())
            })
            .await
        }
        Err(e) => finish(&gw, &ctx, event, Err(e)).await,
    }
}

/// Lift a department's suspension.
#[utoipa::path(
    post,
    path = "/v1/admin/departments/{dept}/resume",
    tag = "admin",
    operation_id = "admin_resume_department",
    params(("dept" = String, Path, description = "Department id", pattern = "^[a-z][a-z0-9_]{0,31}$")),
    responses(
        (status = 200, description = "Resumed (or was not suspended)", body = doc::DepartmentState),
        (status = 404, description = "No such department", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
async fn resume_department(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, "policy.resume");
    let prepared = (|| {
        admin(&gw, &headers, &mut event)?;
        let (dept, name) = department(&gw, path)?;
        event.detail = Some(json!({"dept": dept}).to_string());
        Ok((dept, name))
    })();
    match prepared {
        Ok((dept, name)) => {
            let mut body = department_state(&gw, dept.as_str(), &name);
            body["suspended"] = json!(false);
            body["suspension"] = Value::Null;
            let body = body.as_object().cloned().unwrap_or_default();
            finish_then(&gw, &ctx, event, Ok(Answer::ok(body)), async |_| {
                // Ordered after every stop this node has seen for the department.
                let at_ms = gw
                    .suspensions
                    .resume_here(
                        dept.as_str(),
                        &gw.config.node_id,
                        ctx.time_ms,
                        gw.stop_skew_ms(),
                    )
                    .map_err(|e| suspension_store_failed(&e))?;
                gw.share_stop(StopChange::Resume {
                    dept: dept.to_string(),
                    at_ms: Some(at_ms),
                })
                .await;
                Ok(())
            })
            .await
        }
        Err(e) => finish(&gw, &ctx, event, Err(e)).await,
    }
}

fn admin(
    gw: &Gateway,
    headers: &HeaderMap,
    event: &mut EventBody,
) -> Result<Arc<Principal>, ApiError> {
    staff(gw, headers, event, POLICY_ADMIN)
}

fn bad_body(fault: BodyFault) -> ApiError {
    ApiError::from(Problem::InvalidBody(fault))
}

/// Which kind of entry a change names ("grant" or "dataset").
fn entry_kind(kind: &str) -> EntryKind {
    if kind == "grant" {
        EntryKind::Grant
    } else {
        EntryKind::Dataset
    }
}

fn path_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(p)| p).map_err(|e| super::bad_path(&e))
}

fn grant_id(path: Result<Path<String>, PathRejection>) -> Result<GrantId, ApiError> {
    GrantId::parse(&path_id(path)?)
        .map_err(|e| ApiError::from(Problem::InvalidId(IdInput::Grant, e)))
}

fn dataset_id(path: Result<Path<String>, PathRejection>) -> Result<DatasetId, ApiError> {
    DatasetId::parse(&path_id(path)?)
        .map_err(|e| ApiError::from(Problem::InvalidId(IdInput::Dataset, e)))
}

fn not_found(kind: &str, id: &str) -> ApiError {
    ApiError::from(Problem::EntryNotFound {
        kind: entry_kind(kind),
        id: id.to_owned(),
    })
}

/// Reads a JSON (or, where `toml` is allowed, TOML) body by `Content-Type` into `T`.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    toml: bool,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| {
        if timed_out(&e) {
            ApiError::from(Problem::RequestTimeout(e.body_text()))
        } else if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::from(Problem::BodyTooLarge(e.body_text()))
        } else {
            bad_body(BodyFault::Unreadable(e.body_text()))
        }
    })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    let text = std::str::from_utf8(&bytes).map_err(|_| bad_body(BodyFault::NotUtf8))?;
    match media {
        "application/json" => {
            serde_json::from_str(text).map_err(|e| bad_body(BodyFault::Json(e.to_string())))
        }
        "application/toml" if toml => toml::from_str(text)
            .map_err(|e| bad_body(BodyFault::Toml(e.to_string().trim_end().to_owned()))),
        _ => Err(Problem::UnsupportedMediaType { toml }.into()),
    }
}

/// Whether the body failed because its deadline passed (see `with_body_deadline`).
fn timed_out(e: &BytesRejection) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<super::BodyTimedOut>() {
            return true;
        }
        source = err.source();
    }
    false
}

fn wants_toml(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/toml"))
}

/// `If-Match` against the current entity tag: required to change or delete
/// what exists (428 without it, 412 when someone else changed it first).
fn check_precondition(headers: &HeaderMap, current: Option<&str>) -> Result<(), ApiError> {
    let if_match = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok());
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    match (current, if_match) {
        (Some(_), None) if if_none_match.is_some() => {
            Err(Problem::PreconditionFailed(Precondition::Exists).into())
        }
        (Some(_), None) => Err(Problem::PreconditionRequired.into()),
        (Some(tag), Some(m)) if m.split(',').any(|t| t.trim() == tag || t.trim() == "*") => Ok(()),
        (Some(tag), Some(_)) => {
            let mut e = ApiError::from(Problem::PreconditionFailed(Precondition::Changed));
            e.extra.insert("current_etag".into(), json!(tag));
            Err(e)
        }
        (None, Some(_)) => Err(Problem::PreconditionFailed(Precondition::Missing).into()),
        (None, None) => Ok(()),
    }
}

fn edit_error(e: EditError, kind: &str, id: &str) -> ApiError {
    match e {
        EditError::Invalid(errors) => {
            let mut err = ApiError::from(Problem::InvalidPolicy {
                errors: errors.iter().map(ToString::to_string).collect(),
            });
            err.extra.insert("errors".into(), json!(errors));
            err
        }
        EditError::NotFound => not_found(kind, id),
        EditError::InUse(grants) => ApiError::from(Problem::DatasetInUse {
            dataset: id.to_owned(),
            grants,
        }),
    }
}

/// A prepared change with what the history needs; applied after its audit event is durable.
struct Apply<'g> {
    gw: &'g Gateway,
    prepared: Prepared,
    entry: HistoryEntry,
}

impl Apply<'_> {
    async fn run(self, seq: u64, tx: Option<ChangeTx>) -> Result<(), ApiError> {
        let failed = |what: String| {
            tracing::error!(error = %what, "policy change could not be applied");
            ApiError::from(Problem::PolicyWriteFailed)
        };
        match (tx, &self.gw.cluster) {
            (Some(tx), Some(cluster)) => {
                let meta = ChangeMeta {
                    node_id: cluster.node_id.clone(),
                    author: self.entry.author.clone(),
                    action: self.entry.action.clone(),
                    summary: format!(
                        "{} {} {}",
                        self.entry.action, self.entry.kind, self.entry.id
                    ),
                };
                let version = tx
                    .commit(&self.prepared.set.sources, &meta)
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                if let Err(e) = cluster.set_applied(version, &self.prepared.set.sources) {
                    tracing::error!(error = %e, "the applied policy version could not be kept");
                }
                self.gw.metrics.cluster_policy_version.set(version);
            }
            _ => apply_files(&self.gw.config.policies_dir, &self.prepared.writes)
                .map_err(|e| failed(e.to_string()))?,
        }
        let compiled = self.gw.compile(self.prepared.set);
        self.gw.policy.swap(compiled);
        let mut entry = self.entry;
        entry.seq = seq;
        if let Err(e) = self.gw.policy_history.record(&entry) {
            tracing::error!(error = %e, "policy history could not be recorded");
        }
        Ok(())
    }
}

/// Prepares a change and describes it in the event; the caller holds the policy lock.
fn prepare_change<'g>(
    gw: &'g Gateway,
    who: &Principal,
    event: &mut EventBody,
    change: Change,
    action: &str,
) -> Result<(Map<String, Value>, Apply<'g>), ApiError> {
    let (kind, id) = (change.kind(), change.id());
    let current = gw.policy.snapshot();
    let prepared = prepare(&current.set, &change).map_err(|e| edit_error(e, kind, &id))?;
    let access: Vec<String> = prepared.access.iter().map(ToString::to_string).collect();
    let version = match &change {
        Change::PutGrant(g) => Some(g.version),
        _ => None,
    };
    event.detail = Some(json!({"action": action, "kind": kind, "id": id, "version": version, "before": prepared.before, "after": prepared.after, "access": access}).to_string());
    event.policy_version = Some(prepared.set.version.as_str().into());
    let entry = HistoryEntry {
        seq: 0,
        time_ms: gw.clock.unix_millis(),
        author: format!("{}/{}", who.dept, who.subject),
        action: action.to_owned(),
        kind: kind.to_owned(),
        id: id.clone(),
        version,
        before: prepared.before.clone(),
        after: prepared.after.clone(),
        access: access.clone(),
    };
    let mut body = Map::new();
    body.insert("kind".into(), json!(kind));
    body.insert("id".into(), json!(id));
    body.insert("policy_version".into(), json!(prepared.set.version));
    body.insert("access_changes".into(), json!(access));
    Ok((
        body,
        Apply {
            gw,
            prepared,
            entry,
        },
    ))
}

/// Every grant, with its ETag.
#[utoipa::path(
    get,
    path = "/v1/admin/grants",
    tag = "admin",
    operation_id = "admin_list_grants",
    responses((status = 200, description = "The grants", body = doc::GrantList)),
)]
async fn list_grants(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, "policy.list_grants");
    let result = admin(&gw, &headers, &mut event).map(|_| {
        let policy = gw.policy.snapshot();
        let grants: Vec<Value> = policy
            .set
            .grants
            .values()
            .map(|g| {
                let s = &g.spec;
                json!({
                    "id": s.id, "version": s.version, "etag": grant_etag(s), "title": s.title, "file": g.file,
                    "consumer": s.consumer, "roles": s.roles, "purposes": s.purposes, "operations": s.operations,
                    "datasets": s.access.iter().map(|a| a.dataset.to_string()).collect::<Vec<_>>(),
                })
            })
            .collect();
        let mut body = Map::new();
        body.insert("policy_version".into(), json!(policy.version()));
        body.insert("grants".into(), Value::Array(grants));
        Answer::ok(body)
    });
    finish(&gw, &ctx, event, result).await
}

/// One grant as its policy file holds it (JSON, or TOML with `Accept: application/toml`).
#[utoipa::path(
    get,
    path = "/v1/admin/grants/{id}",
    tag = "admin",
    operation_id = "admin_get_grant",
    params(("id" = String, Path, description = "Grant id", pattern = "^[a-z0-9][a-z0-9._-]{0,95}$", example = "minzheng-dibao-hukou")),
    responses(
        (status = 200, description = "The grant; its ETag is in `ETag`", content(
            (doc::GrantDocument = "application/json"),
            (String = "application/toml"),
        )),
        (status = 404, description = "No such grant", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
async fn get_grant(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, "policy.get_grant");
    let result = (|| {
        admin(&gw, &headers, &mut event)?;
        let id = grant_id(path)?;
        event.detail = Some(format!("grant={id}"));
        let policy = gw.policy.snapshot();
        let g = policy
            .set
            .grants
            .get(&id)
            .ok_or_else(|| not_found("grant", id.as_str()))?;
        if wants_toml(&headers) {
            return Ok(Answer::Raw {
                content_type: "application/toml",
                filename: None,
                body: axum::body::Body::from(grant_toml(&g.spec)),
            });
        }
        let mut body = Map::new();
        body.insert("grant".into(), json!(g.spec));
        body.insert("etag".into(), json!(grant_etag(&g.spec)));
        body.insert("file".into(), json!(g.file));
        Ok(Answer::Json {
            proof: None,
            status: StatusCode::OK,
            body,
            etag: Some(grant_etag(&g.spec)),
        })
    })();
    finish(&gw, &ctx, event, result).await
}

/// Create or replace a grant (JSON or TOML body), in force at once.
///
/// Validated with the whole policy set; recorded in the audit log with before
/// and after, then written to its file and swapped in. Replacing needs
/// `If-Match` with the current ETag (428 without, 412 if someone changed it).
#[utoipa::path(
    put,
    path = "/v1/admin/grants/{id}",
    tag = "admin",
    operation_id = "admin_put_grant",
    params(("id" = String, Path, description = "Grant id", pattern = "^[a-z0-9][a-z0-9._-]{0,95}$", example = "minzheng-dibao-hukou"), ("If-Match" = Option<String>, Header, description = "The ETag of the entry as you read it; required to replace or delete an existing entry"), ("If-None-Match" = Option<String>, Header, description = "`*`: create only, never replace")),
    request_body(description = "The grant: the fields of a `[[grant]]` table", content(
        (Object = "application/json"),
        (String = "application/toml"),
    )),
    responses(
        (status = 200, description = "Replaced", body = doc::ChangeAnswer),
        (status = 201, description = "Created", body = doc::ChangeAnswer),
        (status = 412, description = "The ETag does not match (someone saved first)", body = doc::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON or TOML", body = doc::Problem, content_type = "application/problem+json"),
        (status = 422, description = "The policy set would not load; `errors` lists why", body = doc::Problem, content_type = "application/problem+json"),
        (status = 428, description = "If-Match is required", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
async fn put_grant(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, "policy.put_grant");
    // Authenticated first: only an administrator can make another wait on the lock.
    let who = match admin(&gw, &headers, &mut event) {
        Ok(who) => who,
        Err(e) => return respond_change(&gw, &ctx, event, Err(e)).await,
    };
    let _guard = lock_policy(&gw).await;
    let result = (|| {
        let id = grant_id(path)?;
        let mut spec: GrantSpec = parse_body(&headers, body, true)?;
        if spec.id != id {
            return Err(Problem::IdMismatch {
                kind: EntryKind::Grant,
                body: spec.id.to_string(),
                path: id.to_string(),
            }
            .into());
        }
        let policy = gw.policy.snapshot();
        let current = policy.set.grants.get(&id);
        check_precondition(&headers, current.map(|g| grant_etag(&g.spec)).as_deref())?;
        spec.version = current.map_or(1, |g| g.spec.version + 1);
        let created = current.is_none();
        let etag = grant_etag(&spec);
        let (body, apply) = prepare_change(
            &gw,
            &who,
            &mut event,
            Change::PutGrant(Box::new(spec.clone())),
            "put",
        )?;
        Ok((stored(body, "grant", json!(spec), etag, created), apply))
    })();
    respond_change(&gw, &ctx, event, result).await
}

/// The answer to a stored change: the entry, its new ETag, 201 if it was created.
fn stored(
    mut body: Map<String, Value>,
    member: &str,
    value: Value,
    etag: String,
    created: bool,
) -> Answer {
    body.insert(member.into(), value);
    body.insert("etag".into(), json!(etag));
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Answer::Json {
        status,
        body,
        etag: Some(etag),
        proof: None,
    }
}

async fn respond_change(
    gw: &Gateway,
    ctx: &RequestContext,
    event: EventBody,
    result: Result<(Answer, Apply<'_>), ApiError>,
) -> Response {
    match result {
        Ok((answer, apply)) => {
            let tx = match begin_cluster_change(gw).await {
                Ok(tx) => tx,
                Err(e) => return finish(gw, ctx, event, Err(e)).await,
            };
            finish_then(gw, ctx, event, Ok(answer), |seq| apply.run(seq, tx)).await
        }
        Err(e) => finish(gw, ctx, event, Err(e)).await,
    }
}

/// Takes the lock every policy change holds. In cluster mode it first
/// brings this node to the newest version in PostgreSQL (if PostgreSQL
/// answers), so that the change is prepared against what the cluster enforces.
async fn lock_policy(gw: &Gateway) -> tokio::sync::MutexGuard<'_, ()> {
    let guard = gw.policy_lock.lock().await;
    if gw.cluster.is_some() {
        if let Err(e) = gw.sync_cluster_locked("admin edit").await {
            tracing::warn!(error = %e, "policy version not checked before an edit");
        }
    }
    guard
}

/// In cluster mode, the change's transaction in PostgreSQL: it holds the
/// cluster-wide policy lock from before the change's audit event until the
/// new version is committed, and it is refused if another node committed a
/// version since this one was brought up to date.
async fn begin_cluster_change(gw: &Gateway) -> Result<Option<ChangeTx>, ApiError> {
    let Some(cluster) = &gw.cluster else {
        return Ok(None);
    };
    let tx = cluster
        .store
        .begin_change()
        .await
        .map_err(|e| cluster_unavailable(&e))?;
    if tx.head() != cluster.applied() {
        tx.rollback().await;
        let _ = gw.sync_cluster_locked("admin edit").await;
        return Err(Problem::PolicyChangedElsewhere.into());
    }
    Ok(Some(tx))
}

/// Delete a grant (needs `If-Match`).
#[utoipa::path(
    delete,
    path = "/v1/admin/grants/{id}",
    tag = "admin",
    operation_id = "admin_delete_grant",
    params(("id" = String, Path, description = "Grant id", pattern = "^[a-z0-9][a-z0-9._-]{0,95}$", example = "minzheng-dibao-hukou"), ("If-Match" = Option<String>, Header, description = "The ETag of the entry as you read it; required to replace or delete an existing entry")),
    responses(
        (status = 200, description = "Deleted; who loses access", body = doc::ChangeAnswer),
        (status = 404, description = "No such grant", body = doc::Problem, content_type = "application/problem+json"),
        (status = 412, description = "The ETag does not match", body = doc::Problem, content_type = "application/problem+json"),
        (status = 428, description = "If-Match is required", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
async fn delete_grant(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, "policy.delete_grant");
    // Authenticated first: only an administrator can make another wait on the lock.
    let who = match admin(&gw, &headers, &mut event) {
        Ok(who) => who,
        Err(e) => return respond_change(&gw, &ctx, event, Err(e)).await,
    };
    let _guard = lock_policy(&gw).await;
    let result = (|| {
        let id = grant_id(path)?;
        let policy = gw.policy.snapshot();
        let current = policy
            .set
            .grants
            .get(&id)
            .ok_or_else(|| not_found("grant", id.as_str()))?;
        check_precondition(&headers, Some(&grant_etag(&current.spec)))?;
        let (body, apply) =
            prepare_change(&gw, &who, &mut event, Change::DeleteGrant(id), "delete")?;
        Ok((Answer::ok(body), apply))
    })();
    respond_change(&gw, &ctx, event, result).await
}

/// Query of a revert.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct RevertParams {
    /// The version to restore (from the history); stored as a new version.
    to: u32,
}

/// Restore an earlier version of a grant (needs `If-Match`).
#[utoipa::path(
    post,
    path = "/v1/admin/grants/{id}/revert",
    tag = "admin",
    operation_id = "admin_revert_grant",
    params(("id" = String, Path, description = "Grant id", pattern = "^[a-z0-9][a-z0-9._-]{0,95}$", example = "minzheng-dibao-hukou"), ("If-Match" = Option<String>, Header, description = "The ETag of the entry as you read it; required to replace or delete an existing entry"), RevertParams),
    responses(
        (status = 200, description = "Restored as a new version", body = doc::ChangeAnswer),
        (status = 404, description = "No such grant or version", body = doc::Problem, content_type = "application/problem+json"),
        (status = 412, description = "The ETag does not match", body = doc::Problem, content_type = "application/problem+json"),
        (status = 422, description = "The old version would not load today", body = doc::Problem, content_type = "application/problem+json"),
        (status = 428, description = "If-Match is required", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
async fn revert_grant(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    params: Result<Query<RevertParams>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, "policy.revert_grant");
    // Authenticated first: only an administrator can make another wait on the lock.
    let who = match admin(&gw, &headers, &mut event) {
        Ok(who) => who,
        Err(e) => return respond_change(&gw, &ctx, event, Err(e)).await,
    };
    let _guard = lock_policy(&gw).await;
    let result = (|| {
        let id = grant_id(path)?;
        let Query(p) = params.map_err(|e| bad_query(&e))?;
        let entry = gw
            .policy_history
            .grant_version(id.as_str(), p.to)
            .map_err(|e| ApiError::from(Problem::HistoryReadFailed(Some(e.to_string()))))?
            .ok_or_else(|| {
                ApiError::from(Problem::VersionNotFound {
                    grant: id.to_string(),
                    version: p.to,
                })
            })?;
        let mut spec = entry
            .after
            .as_deref()
            .and_then(|t| toml::from_str::<GrantsFile>(t).ok())
            .and_then(|f| f.grants.into_iter().next())
            .ok_or_else(|| ApiError::from(Problem::HistoryReadFailed(None)))?;
        let policy = gw.policy.snapshot();
        let current = policy.set.grants.get(&id);
        if headers.contains_key(header::IF_MATCH) {
            check_precondition(&headers, current.map(|g| grant_etag(&g.spec)).as_deref())?;
        }
        spec.version = current.map_or(1, |g| g.spec.version) + 1;
        let etag = grant_etag(&spec);
        let (mut body, apply) = prepare_change(
            &gw,
            &who,
            &mut event,
            Change::PutGrant(Box::new(spec.clone())),
            "revert",
        )?;
        body.insert("reverted_to".into(), json!(p.to));
        Ok((stored(body, "grant", json!(spec), etag, false), apply))
    })();
    respond_change(&gw, &ctx, event, result).await
}

/// Every dataset of the catalog, with its ETag.
#[utoipa::path(
    get,
    path = "/v1/admin/datasets",
    tag = "admin",
    operation_id = "admin_list_datasets",
    responses((status = 200, description = "The catalog", body = doc::DatasetList)),
)]
async fn list_datasets(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, "policy.list_datasets");
    let result = admin(&gw, &headers, &mut event).map(|_| {
        let policy = gw.policy.snapshot();
        let datasets: Vec<Value> = policy
            .set
            .datasets
            .values()
            .map(|d| json!({"id": d.spec.id, "title": d.spec.title, "owner": d.spec.owner, "class": d.spec.class, "etag": dataset_etag(&d.spec), "fields": d.spec.fields.len()}))
            .collect();
        let mut body = Map::new();
        body.insert("policy_version".into(), json!(policy.version()));
        body.insert("datasets".into(), Value::Array(datasets));
        Answer::ok(body)
    });
    finish(&gw, &ctx, event, result).await
}

/// One catalog entry (JSON, or TOML with `Accept: application/toml`).
#[utoipa::path(
    get,
    path = "/v1/admin/datasets/{id}",
    tag = "admin",
    operation_id = "admin_get_dataset",
    params(("id" = String, Path, description = "Dataset id", pattern = "^[a-z][a-z0-9_]{0,31}\\.[a-z][a-z0-9_]{0,63}$", example = "gongan.hukou")),
    responses(
        (status = 200, description = "The dataset; its ETag is in `ETag`", content(
            (doc::DatasetDocument = "application/json"),
            (String = "application/toml"),
        )),
        (status = 404, description = "No such dataset", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
async fn get_dataset(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, "policy.get_dataset");
    let result = (|| {
        admin(&gw, &headers, &mut event)?;
        let id = dataset_id(path)?;
        event.detail = Some(format!("dataset={id}"));
        let policy = gw.policy.snapshot();
        let d = policy
            .set
            .datasets
            .get(&id)
            .ok_or_else(|| not_found("dataset", id.as_str()))?;
        if wants_toml(&headers) {
            return Ok(Answer::Raw {
                content_type: "application/toml",
                filename: None,
                body: axum::body::Body::from(dataset_toml(&d.spec)),
            });
        }
        let mut body = Map::new();
        body.insert("dataset".into(), json!(d.spec));
        body.insert("etag".into(), json!(dataset_etag(&d.spec)));
        Ok(Answer::Json {
            proof: None,
            status: StatusCode::OK,
            body,
            etag: Some(dataset_etag(&d.spec)),
        })
    })();
    finish(&gw, &ctx, event, result).await
}

/// Create or replace a catalog entry (JSON or TOML body), in force at once.
#[utoipa::path(
    put,
    path = "/v1/admin/datasets/{id}",
    tag = "admin",
    operation_id = "admin_put_dataset",
    params(("id" = String, Path, description = "Dataset id", pattern = "^[a-z][a-z0-9_]{0,31}\\.[a-z][a-z0-9_]{0,63}$", example = "gongan.hukou"), ("If-Match" = Option<String>, Header, description = "The ETag of the entry as you read it; required to replace or delete an existing entry"), ("If-None-Match" = Option<String>, Header, description = "`*`: create only, never replace")),
    request_body(description = "The dataset: the fields of a dataset file", content(
        (Object = "application/json"),
        (String = "application/toml"),
    )),
    responses(
        (status = 200, description = "Replaced", body = doc::ChangeAnswer),
        (status = 201, description = "Created", body = doc::ChangeAnswer),
        (status = 412, description = "The ETag does not match", body = doc::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON or TOML", body = doc::Problem, content_type = "application/problem+json"),
        (status = 422, description = "The policy set would not load", body = doc::Problem, content_type = "application/problem+json"),
        (status = 428, description = "If-Match is required", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
async fn put_dataset(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, "policy.put_dataset");
    // Authenticated first: only an administrator can make another wait on the lock.
    let who = match admin(&gw, &headers, &mut event) {
        Ok(who) => who,
        Err(e) => return respond_change(&gw, &ctx, event, Err(e)).await,
    };
    let _guard = lock_policy(&gw).await;
    let result = (|| {
        let id = dataset_id(path)?;
        let spec: DatasetSpec = parse_body(&headers, body, true)?;
        if spec.id != id {
            return Err(Problem::IdMismatch {
                kind: EntryKind::Dataset,
                body: spec.id.to_string(),
                path: id.to_string(),
            }
            .into());
        }
        let policy = gw.policy.snapshot();
        let current = policy.set.datasets.get(&id);
        check_precondition(&headers, current.map(|d| dataset_etag(&d.spec)).as_deref())?;
        let created = current.is_none();
        let etag = dataset_etag(&spec);
        let (body, apply) = prepare_change(
            &gw,
            &who,
            &mut event,
            Change::PutDataset(Box::new(spec.clone())),
            "put",
        )?;
        Ok((stored(body, "dataset", json!(spec), etag, created), apply))
    })();
    respond_change(&gw, &ctx, event, result).await
}

/// Delete a catalog entry (needs `If-Match`; refused while a grant uses it).
#[utoipa::path(
    delete,
    path = "/v1/admin/datasets/{id}",
    tag = "admin",
    operation_id = "admin_delete_dataset",
    params(("id" = String, Path, description = "Dataset id", pattern = "^[a-z][a-z0-9_]{0,31}\\.[a-z][a-z0-9_]{0,63}$", example = "gongan.hukou"), ("If-Match" = Option<String>, Header, description = "The ETag of the entry as you read it; required to replace or delete an existing entry")),
    responses(
        (status = 200, description = "Deleted", body = doc::ChangeAnswer),
        (status = 404, description = "No such dataset", body = doc::Problem, content_type = "application/problem+json"),
        (status = 412, description = "The ETag does not match", body = doc::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Grants still use it", body = doc::Problem, content_type = "application/problem+json"),
        (status = 428, description = "If-Match is required", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
async fn delete_dataset(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, "policy.delete_dataset");
    // Authenticated first: only an administrator can make another wait on the lock.
    let who = match admin(&gw, &headers, &mut event) {
        Ok(who) => who,
        Err(e) => return respond_change(&gw, &ctx, event, Err(e)).await,
    };
    let _guard = lock_policy(&gw).await;
    let result = (|| {
        let id = dataset_id(path)?;
        let policy = gw.policy.snapshot();
        let current = policy
            .set
            .datasets
            .get(&id)
            .ok_or_else(|| not_found("dataset", id.as_str()))?;
        check_precondition(&headers, Some(&dataset_etag(&current.spec)))?;
        let (body, apply) =
            prepare_change(&gw, &who, &mut event, Change::DeleteDataset(id), "delete")?;
        Ok((Answer::ok(body), apply))
    })();
    respond_change(&gw, &ctx, event, result).await
}

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
async fn validate_changes(
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
async fn decide(
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

/// Query of the history.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryParams {
    /// `grant` or `dataset`.
    kind: Option<String>,
    /// One grant or dataset id.
    id: Option<String>,
    /// Most changes, 1 to 1000 (default 100).
    limit: Option<usize>,
}

/// Policy changes, newest first: author, time, diff, who gained and lost access.
#[utoipa::path(
    get,
    path = "/v1/admin/history",
    tag = "admin",
    operation_id = "admin_history",
    params(HistoryParams),
    responses((status = 200, description = "The changes", body = doc::HistoryAnswer)),
)]
async fn history(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    params: Result<Query<HistoryParams>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, "policy.history");
    let result = (|| {
        admin(&gw, &headers, &mut event)?;
        let Query(p) = params.map_err(|e| bad_query(&e))?;
        let limit = p.limit.unwrap_or(100).clamp(1, 1000);
        let entries = gw
            .policy_history
            .list(p.kind.as_deref(), p.id.as_deref(), limit)
            .map_err(|e| ApiError::from(Problem::HistoryReadFailed(Some(e.to_string()))))?;
        let changes: Vec<Value> = entries
            .iter()
            .map(|e| {
                json!({
                    "seq": e.seq, "time": format_time(e.time_ms, gw.utc_offset), "author": e.author, "action": e.action,
                    "kind": e.kind, "id": e.id, "version": e.version, "access_changes": e.access, "diff": e.diff(),
                    "before": e.before, "after": e.after,
                })
            })
            .collect();
        let mut body = Map::new();
        body.insert("changes".into(), Value::Array(changes));
        Ok(Answer::ok(body))
    })();
    finish(&gw, &ctx, event, result).await
}
