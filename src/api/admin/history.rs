//! The node's own history of policy changes, with their diffs.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::IntoParams;

use super::admin;
use crate::api::openapi as doc;
use crate::api::{Answer, RequestContext, bad_query, finish};
use crate::audit::EventKind;
use crate::audit::query::format_time;
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::problem::Problem;

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
pub(super) async fn history(
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
                    "seq": e.seq, "time": format_time(e.time_ms, gw.utc_offset), "author": e.author, "action": e.action, "reason": e.reason,
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
