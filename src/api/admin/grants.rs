//! Grants: read, list, create or replace, delete, and restore an earlier
//! version from the history.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

use super::change::{lock_policy, prepare_change, respond_change, stored};
use super::entry;
use super::{admin, check_precondition, path_id};
use crate::api::openapi as doc;
use crate::api::{RequestContext, bad_query};
use crate::audit::EventKind;
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::policy::edit::{Change, grant_etag};
use crate::policy::model::{GrantSpec, GrantsFile};
use crate::problem::Problem;

/// Every grant, with its ETag.
#[utoipa::path(
    get,
    path = "/v1/admin/grants",
    tag = "admin",
    operation_id = "admin_list_grants",
    responses((status = 200, description = "The grants", body = doc::GrantList)),
)]
pub(super) async fn list_grants(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    headers: HeaderMap,
) -> Response {
    entry::list::<GrantSpec>(gw, ctx, headers).await
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
pub(super) async fn get_grant(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    entry::get::<GrantSpec>(gw, ctx, path, headers).await
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
pub(super) async fn put_grant(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    entry::put::<GrantSpec>(gw, ctx, path, headers, body).await
}

/// Delete a grant (needs `If-Match`).
#[utoipa::path(
    delete,
    path = "/v1/admin/grants/{id}",
    tag = "admin",
    operation_id = "admin_delete_grant",
    params(("id" = String, Path, description = "Grant id", pattern = "^[a-z0-9][a-z0-9._-]{0,95}$", example = "minzheng-dibao-hukou"), ("If-Match" = Option<String>, Header, description = "The ETag of the entry as you read it; required to replace or delete an existing entry"), entry::ReasonParams),
    responses(
        (status = 200, description = "Deleted; who loses access", body = doc::ChangeAnswer),
        (status = 404, description = "No such grant", body = doc::Problem, content_type = "application/problem+json"),
        (status = 412, description = "The ETag does not match", body = doc::Problem, content_type = "application/problem+json"),
        (status = 428, description = "If-Match is required", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn delete_grant(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    params: Result<Query<entry::ReasonParams>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    entry::delete::<GrantSpec>(gw, ctx, path, params, headers).await
}

/// Query of a revert.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct RevertParams {
    /// The version to restore (from the history); stored as a new version.
    to: u32,
    /// Why (optional; up to 500 characters; in the audit log and the history).
    reason: Option<String>,
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
pub(super) async fn revert_grant(
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
        let id = <GrantSpec as entry::Entry>::parse_id(&path_id(path)?)?;
        let Query(p) = params.map_err(|e| bad_query(&e))?;
        let reason = super::reason(p.reason.clone())?;
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
        let apply = apply.with_reason(&mut event, reason);
        Ok((stored(body, "grant", json!(spec), etag, false), apply))
    })();
    respond_change(&gw, &ctx, event, result).await
}
