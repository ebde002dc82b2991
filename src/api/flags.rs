//! `POST /v1/audit/flags/{id}/review`: a privacy officer marks an anomaly
//! flag reviewed, with a note. The flag must be one the statistics raise
//! on its day under the rules in force; the mark is audited (the event is
//! durable before the mark is kept) and shows in every later statistics
//! answer, on every node in cluster mode.

use std::sync::Arc;

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::admin::parse_body;
use super::audit::PRIVACY_OFFICER;
use super::openapi as doc;
use super::{Answer, RequestContext, bad_path, finish, finish_then};
use crate::alerts::reviews::Review;
use crate::audit::EventKind;
use crate::audit::query::format_time;
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::pipeline::admit::staff;
use crate::problem::Problem;

pub(crate) fn router() -> OpenApiRouter<Arc<Gateway>> {
    OpenApiRouter::new().routes(routes!(review))
}

/// Body of a review mark.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReviewBody {
    note: String,
}

/// A review mark as the API shows it.
pub(crate) fn review_json(r: &Review, offset: time::UtcOffset) -> Value {
    json!({"by": r.by, "at": format_time(r.at_ms, offset), "note": r.note})
}

/// The day a well-formed flag id names (`kind:department:YYYY-MM-DD:digest`).
fn flag_day(id: &str) -> Option<time::Date> {
    let mut parts = id.split(':');
    let (kind, dept, day, digest) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let kind_ok = matches!(kind, "volume_spike" | "denial_burst" | "off_hours");
    let dept_ok = !dept.is_empty()
        && dept.len() <= 64
        && dept
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b));
    let digest_ok = digest.len() == 16 && digest.bytes().all(|b| b.is_ascii_hexdigit());
    if !(kind_ok && dept_ok && digest_ok) || parts.next().is_some() {
        return None;
    }
    time::Date::parse(
        day,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()
}

/// Mark an anomaly flag reviewed, with what the reviewer found (1 to 500
/// characters). A later mark replaces an earlier one; each is audited.
#[utoipa::path(
    post,
    path = "/v1/audit/flags/{id}/review",
    tag = "audit",
    operation_id = "audit_flag_review",
    params(("id" = String, Path, description = "The flag's id, as the statistics list it (kind:department:day:caller digest)")),
    request_body = doc::ReviewRequest,
    responses(
        (status = 200, description = "Marked reviewed", body = doc::FlagReview),
        (status = 404, description = "No such flag", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
async fn review(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut event = ctx.event(EventKind::AuditReview, "audit.flag-review");
    let prepared = async {
        let who = staff(&gw, &headers, &mut event, PRIVACY_OFFICER)?;
        let Path(id) = path.map_err(|e| bad_path(&e))?;
        let not_found = || ApiError::from(Problem::FlagNotFound { id: id.clone() });
        let day = flag_day(&id).ok_or_else(not_found)?;
        let ReviewBody { note } = parse_body(&headers, body, false)?;
        let note = crate::api::admin::required_reason(&note)?;
        event.detail = Some(json!({"flag": id, "note": note}).to_string());
        let flags = crate::alerts::flags_of_day(&gw, day, id.starts_with("volume_spike:"))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "the flags of a day could not be computed");
                ApiError::from(Problem::AuditReadFailed { logged: true })
            })?;
        if !flags.iter().any(|f| f.id == id) {
            return Err(not_found());
        }
        let review = Review {
            by: format!("{}/{}", who.dept, who.subject),
            at_ms: ctx.time_ms,
            note,
        };
        Ok((id, review))
    }
    .await;
    match prepared {
        Ok((id, review)) => {
            let mut body = Map::new();
            body.insert("id".into(), json!(id));
            body.insert("review".into(), review_json(&review, gw.utc_offset));
            // Kept only once the event that records it is durable.
            finish_then(&gw, &ctx, event, Ok(Answer::ok(body)), async |_| {
                gw.alerts.reviews.mark(&id, &review).await.map_err(|e| {
                    tracing::error!(error = %e, "a flag review could not be stored");
                    ApiError::from(Problem::ReviewNotStored)
                })
            })
            .await
        }
        Err(e) => finish(&gw, &ctx, event, Err(e)).await,
    }
}
