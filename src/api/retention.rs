//! `POST /v1/audit/prune`: retention pruning while the gateway serves, by
//! a privacy officer of the operator department, under exactly the rules
//! of `tongban audit prune` (the same function): only events older than
//! `audit.retention_days`, exported and covered by a signed checkpoint (and,
//! in cluster mode, copied to PostgreSQL) go; the chain then starts at the
//! last one removed (its anchor). The only route that removes events. The
//! prune itself is audited, and a chain verification waits for it.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::audit::{blocking, caught_up, officer};
use super::{Answer, RequestContext, bad_query, finish};
use crate::audit::EventKind;
use crate::gateway::Gateway;
use crate::problem::Problem;

pub(crate) fn router() -> OpenApiRouter<Arc<Gateway>> {
    OpenApiRouter::new().routes(routes!(prune))
}

/// Query of a prune.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PruneParams {
    /// `true`: say what would be removed, remove nothing.
    dry_run: Option<bool>,
}

/// Remove the events past the retention period that are exported and
/// covered by a signed checkpoint (in cluster mode, also copied to
/// PostgreSQL), as `tongban audit prune` does, while the gateway serves.
#[utoipa::path(
    post,
    path = "/v1/audit/prune",
    tag = "audit",
    operation_id = "audit_prune",
    params(PruneParams),
    responses(
        (status = 200, description = "What was removed (or would be), and what held the prune back", body = super::openapi::PruneAnswer),
        (status = 409, description = "audit.retention_days is not set", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
)]
async fn prune(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    headers: HeaderMap,
    params: Result<Query<PruneParams>, QueryRejection>,
) -> Response {
    let mut event = ctx.event(EventKind::AuditReview, "audit.prune");
    let result = async {
        officer(&gw, &headers, &mut event)?;
        let Query(p) = params.map_err(|e| bad_query(&e))?;
        let days = gw
            .config
            .audit
            .retention_days
            .ok_or(Problem::RetentionNotSet)?;
        caught_up(&gw).await?;
        // A verification under way sees the chain before or after, never during.
        let _alone = gw.audit_prune_lock.write().await;
        let now = gw.clock.unix_millis();
        let cutoff = now - i64::from(days.get()) * 86_400_000;
        // In cluster mode only what PostgreSQL holds may go.
        let shipped = gw.cluster.as_ref().map(|c| {
            c.shipping
                .shipped
                .load(std::sync::atomic::Ordering::Acquire)
        });
        let dry_run = p.dry_run.unwrap_or(false);
        let store = gw.audit_store.clone();
        let report =
            blocking(move || crate::audit::retention::prune(&store, cutoff, now, dry_run, shipped))
                .await?;
        let mut body = Map::new();
        if let Value::Object(r) = serde_json::to_value(&report).unwrap_or_default() {
            body.extend(r);
        }
        body.insert("dry_run".into(), json!(dry_run));
        event.detail = Some(Value::Object(body.clone()).to_string());
        Ok(Answer::ok(body))
    }
    .await;
    finish(&gw, &ctx, event, result).await
}
