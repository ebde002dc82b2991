//! Departments and their emergency stop: list them with their standing,
//! suspend one, resume it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{admin, parse_body, path_id};
use crate::api::openapi as doc;
use crate::api::{Answer, RequestContext, finish, finish_then};
use crate::audit::EventKind;
use crate::audit::query::format_time;
use crate::cluster::stops::StopChange;
use crate::domain::DeptId;
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::problem::{IdInput, Problem};

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

pub(super) fn suspension_store_failed(e: &crate::stops::StopsError) -> ApiError {
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
pub(super) async fn list_departments(
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
pub(super) async fn suspend_department(
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
        let reason = super::required_reason(&reason)?;
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
pub(super) async fn resume_department(
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
