//! The privacy officers' queue of residents' objections:
//! `GET /v1/audit/objections` (by state, `overdue` for open ones past their
//! due day) and `POST /v1/audit/objections/{id}/reply` (an answer the
//! resident reads; `close` ends it). Both audited; an answer is kept only
//! once its event is durable.

use std::sync::Arc;

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::admin::parse_body;
use super::audit::{PRIVACY_OFFICER, expected};
use super::me::stored;
use super::openapi as doc;
use super::{Answer, RequestContext, bad_path, bad_query, finish, finish_then};
use crate::audit::EventKind;
use crate::audit::query::format_time;
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::objections::{Objection, Reply, State as ObjState};
use crate::pipeline::admit::staff;
use crate::problem::{ObjectionFault, Problem};

pub(crate) fn router() -> OpenApiRouter<Arc<Gateway>> {
    OpenApiRouter::new()
        .routes(routes!(queue))
        .routes(routes!(reply))
}

/// An objection as the officers read it.
fn for_officer(o: &Objection, gw: &Gateway) -> Value {
    let today = gw.today().to_string();
    json!({
        "id": o.id,
        "state": o.state.as_str(),
        "filed_at": format_time(o.filed_ms, gw.utc_offset),
        "due": o.due,
        "overdue": o.state == ObjState::Open && today > o.due,
        "resident": o.resident,
        "node": o.node,
        "seq": o.seq,
        "disclosure": o.disclosure,
        "text": o.text,
        "reply": o.reply.as_ref().map(|r| json!({
            "text": r.text,
            "by": r.by,
            "at": format_time(r.at_ms, gw.utc_offset),
        })),
    })
}

/// Query of the queue.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct QueueParams {
    /// `open`, `answered`, `closed`, or `overdue` (open past its due day).
    /// Default: every objection not closed.
    state: Option<String>,
}

/// Residents' objections, due soonest first.
#[utoipa::path(
    get,
    path = "/v1/audit/objections",
    tag = "audit",
    operation_id = "audit_objections",
    params(QueueParams),
    responses((status = 200, description = "The queue", body = doc::ObjectionQueue)),
)]
async fn queue(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    params: Result<Query<QueueParams>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::AuditReview, "audit.objections");
    let result = async {
        staff(&gw, &headers, &mut event, PRIVACY_OFFICER)?;
        let Query(p) = params.map_err(|e| bad_query(&e))?;
        let today = gw.today().to_string();
        let wanted: Box<dyn Fn(&Objection) -> bool + Send> = match p.state.as_deref() {
            None => Box::new(|o| o.state != ObjState::Closed),
            Some("overdue") => Box::new(move |o| o.state == ObjState::Open && today > o.due),
            Some(s) => match ObjState::parse(s) {
                Some(state) => Box::new(move |o| o.state == state),
                None => {
                    return Err(expected(
                        "state",
                        &["open", "answered", "closed", "overdue"],
                    ));
                }
            },
        };
        event.detail = p.state.as_ref().map(|s| format!("state={s}"));
        let mut list: Vec<Objection> = gw
            .objections
            .list(None)
            .await
            .map_err(|e| stored(&e))?
            .into_iter()
            .filter(|o| wanted(o))
            .collect();
        list.sort_by(|a, b| a.due.cmp(&b.due).then(a.filed_ms.cmp(&b.filed_ms)));
        let items: Vec<Value> = list.iter().map(|o| for_officer(o, &gw)).collect();
        let mut body = Map::new();
        body.insert("count".into(), json!(items.len()));
        body.insert("objections".into(), Value::Array(items));
        Ok::<_, ApiError>(Answer::ok(body))
    }
    .await;
    finish(&gw, &ctx, event, result).await
}

/// Body of an answer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplyBody {
    reply: String,
    #[serde(default)]
    close: bool,
}

/// Answer an objection (1 to 500 characters, for the resident): it becomes
/// `answered`, or `closed` with `close: true`. A later answer replaces an
/// earlier one; a closed objection takes none.
#[utoipa::path(
    post,
    path = "/v1/audit/objections/{id}/reply",
    tag = "audit",
    operation_id = "audit_objection_reply",
    params(("id" = String, Path, description = "The objection's id")),
    request_body = doc::ObjectionReply,
    responses(
        (status = 200, description = "Answered", body = doc::ObjectionAnswered),
        (status = 404, description = "No such objection", body = doc::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The objection is closed", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
async fn reply(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut event = ctx.event(EventKind::AuditReview, "audit.objection-reply");
    let prepared = async {
        let who = staff(&gw, &headers, &mut event, PRIVACY_OFFICER)?;
        let Path(id) = path.map_err(|e| bad_path(&e))?;
        let not_found = || ApiError::from(Problem::ObjectionNotFound { id: id.clone() });
        if !crate::kept::well_formed("", &id) {
            return Err(not_found());
        }
        let ReplyBody { reply, close } = parse_body(&headers, body, false)?;
        let reply = crate::api::admin::required_reason(&reply)?;
        let mut o = gw
            .objections
            .get(&id)
            .await
            .map_err(|e| stored(&e))?
            .ok_or_else(not_found)?;
        if o.state == ObjState::Closed {
            return Err(Problem::ObjectionConflict(ObjectionFault::Closed { id }).into());
        }
        o.state = if close {
            ObjState::Closed
        } else {
            ObjState::Answered
        };
        o.reply = Some(Reply {
            text: reply,
            by: format!("{}/{}", who.dept, who.subject),
            at_ms: ctx.time_ms,
        });
        // The answer the resident is given is part of the record.
        event.detail = Some(
            json!({"objection": o.id, "resident": o.resident, "state": o.state.as_str(),
                "reply": o.reply.as_ref().map(|r| r.text.clone())})
            .to_string(),
        );
        Ok(o)
    }
    .await;
    match prepared {
        Ok(o) => {
            let body = for_officer(&o, &gw)
                .as_object()
                .cloned()
                .unwrap_or_default();
            finish_then(&gw, &ctx, event, Ok(Answer::ok(body)), async |_| {
                if gw.objections.answer(&o).await.map_err(|e| stored(&e))? {
                    Ok(())
                } else {
                    // Closed by another officer at the same moment.
                    Err(
                        Problem::ObjectionConflict(ObjectionFault::Closed { id: o.id.clone() })
                            .into(),
                    )
                }
            })
            .await
        }
        Err(e) => finish(&gw, &ctx, event, Err(e)).await,
    }
}
