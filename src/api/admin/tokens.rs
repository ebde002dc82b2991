//! The token deny-list: revoke one token or every token of a subject
//! issued before a time, and list what is in force.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::departments::suspension_store_failed;
use super::{admin, parse_body};
use crate::api::openapi as doc;
use crate::api::{Answer, RequestContext, finish, finish_then};
use crate::audit::EventKind;
use crate::audit::query::format_time;
use crate::cluster::stops::StopChange;
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::problem::{Problem, RevocationFault};
use crate::stops::revocation::{Revocation, RevocationTarget};

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
        "id": d.id(), "jti": d.jti(), "sub": d.sub(),
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
pub(super) async fn list_revoked_tokens(
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
pub(super) async fn revoke_token(
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
        let reason = super::required_reason(&b.reason)?;
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
            // `denial_json` builds an object.
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

/// Body of a deny-list entry's removal (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LiftBody {
    #[serde(default)]
    reason: Option<String>,
}

/// Lifts a deny-list entry before it expires (`id` as the list names it:
/// `jti:…` or `sub:…`), with an optional reason: audited, then in force on
/// every node of a cluster, as the revocation was.
#[utoipa::path(
    delete,
    path = "/v1/admin/revoked-tokens/{id}",
    tag = "admin",
    operation_id = "admin_lift_revoked_token",
    params(("id" = String, Path, description = "The entry's id (`jti:…` or `sub:…`)"), super::entry::ReasonParams),
    request_body(content = doc::LiftRequest, description = "Optional"),
    responses(
        (status = 200, description = "Lifted: the entry as it was", body = doc::RevokedToken),
        (status = 404, description = "No such entry in force", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn lift_revoked_token(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    params: Result<Query<super::entry::ReasonParams>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, "policy.lift_revoked_token");
    let prepared = (|| {
        admin(&gw, &headers, &mut event)?;
        let id = super::path_id(path)?;
        let LiftBody { reason } = match &body {
            Ok(b) if b.is_empty() => LiftBody::default(),
            _ => parse_body(&headers, body, false)?,
        };
        let Query(query) = params.map_err(|e| crate::api::bad_query(&e))?;
        let reason = super::reason(reason.or(query.reason))?;
        let entry = gw
            .revocations
            .all()
            .into_iter()
            .find(|d| d.id() == id)
            .ok_or_else(|| super::not_found("revoked-token", &id))?;
        let mut detail = denial_json(&gw, &entry);
        detail["lift_reason"] = json!(reason);
        event.detail = Some(detail.to_string());
        Ok(entry)
    })();
    match prepared {
        Ok(entry) => {
            let body = denial_json(&gw, &entry)
                .as_object()
                .cloned()
                .unwrap_or_default();
            finish_then(&gw, &ctx, event, Ok(Answer::ok(body)), async |_| {
                // Only the denial that was read: one made since stays.
                let lifted = gw
                    .revocations
                    .lift(&entry.id(), Some(entry.at_ms))
                    .map_err(|e| suspension_store_failed(&e))?;
                if !lifted {
                    return Err(super::not_found("revoked-token", &entry.id()));
                }
                gw.share_stop(StopChange::LiftTokens {
                    id: entry.id(),
                    at_ms: Some(entry.at_ms),
                })
                .await;
                Ok(())
            })
            .await
        }
        Err(e) => finish(&gw, &ctx, event, Err(e)).await,
    }
}
