//! Routes for policy administrators: read and change grants and the catalog,
//! dry-run a change, explain a decision, read the history, revert.
//!
//! Every route needs role `policy_admin` in the operator department. A change
//! is prepared and validated as a whole under the policy lock, recorded in
//! the audit log (durably, with before and after), and only then written to
//! its file and swapped in, in one step.

mod backup;
mod change;
mod cluster;
mod data_objections;
mod datasets;
mod decide;
mod departments;
mod entry;
mod grants;
mod history;
mod records;
mod sharing;
mod tokens;
mod validate;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::EventBody;
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::pipeline::admit::staff;
use crate::pipeline::authn::Principal;
use crate::problem::{BodyFault, EntryKind, Precondition, Problem};

/// The role every route here needs.
pub const POLICY_ADMIN: &str = "policy_admin";

pub(crate) fn router() -> OpenApiRouter<Arc<Gateway>> {
    OpenApiRouter::new()
        .routes(routes!(grants::list_grants))
        .routes(routes!(
            grants::get_grant,
            grants::put_grant,
            grants::delete_grant
        ))
        .routes(routes!(grants::revert_grant))
        .routes(routes!(datasets::list_datasets))
        .routes(routes!(
            datasets::get_dataset,
            datasets::put_dataset,
            datasets::delete_dataset
        ))
        .routes(routes!(validate::validate_changes))
        .routes(routes!(decide::decide))
        .routes(routes!(history::history))
        .routes(routes!(departments::list_departments))
        .routes(routes!(cluster::cluster_state))
        .routes(routes!(cluster::cluster_versions))
        .routes(routes!(departments::suspend_department))
        .routes(routes!(departments::resume_department))
        .routes(routes!(tokens::list_revoked_tokens, tokens::revoke_token))
        .routes(routes!(tokens::lift_revoked_token))
        .routes(routes!(records::replace_records, records::import_records))
        .routes(routes!(backup::backup))
        .routes(routes!(sharing::file_request, sharing::list_requests))
        .routes(routes!(sharing::review_request))
        .routes(routes!(sharing::answer_request))
        .routes(routes!(sharing::withdraw_request))
        .routes(routes!(sharing::directory))
        .routes(routes!(
            data_objections::file_objection,
            data_objections::list_objections
        ))
        .routes(routes!(data_objections::answer_objection))
        .routes(routes!(sharing::revoke_grant))
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

/// Which kind of entry a change names ("grant", "dataset" or "revoked-token").
fn entry_kind(kind: &str) -> EntryKind {
    match kind {
        "grant" => EntryKind::Grant,
        "revoked-token" => EntryKind::RevokedToken,
        _ => EntryKind::Dataset,
    }
}

fn path_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(p)| p).map_err(|e| super::bad_path(&e))
}

/// An optional change reason (`reason` in an admin body): trimmed, none
/// when empty, at most 500 characters.
pub(crate) fn reason(text: Option<String>) -> Result<Option<String>, ApiError> {
    let text = text.map(|r| r.trim().to_owned()).filter(|r| !r.is_empty());
    if text.as_ref().is_some_and(|r| r.chars().count() > 500) {
        return Err(Problem::InvalidReason.into());
    }
    Ok(text)
}

/// A required text (a reason, a note, a reply): trimmed, 1 to 500
/// characters.
pub(crate) fn required_reason(text: &str) -> Result<String, ApiError> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > 500 {
        return Err(Problem::InvalidReason.into());
    }
    Ok(text.to_owned())
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

/// A streamed body that could not be read: too slow (408), or broken.
fn body_error(e: &axum::Error) -> ApiError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<super::BodyTimedOut>() {
            return ApiError::from(Problem::RequestTimeout(err.to_string()));
        }
        source = err.source();
    }
    bad_body(BodyFault::Unreadable(e.to_string()))
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
