//! Operations routes: liveness and readiness. Not audited, no resident data.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use crate::gateway::Gateway;

/// Health routes are cheap and unaudited; everything under `/v1` is audited.
pub(crate) fn router() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// `GET /healthz`: the process is up.
pub(crate) async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: policies loaded and the audit writer healthy.
pub(crate) async fn readyz(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    let policy = gw.policy.snapshot();
    let audit_ok = gw.audit.is_healthy();
    let status = if audit_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": if audit_ok { "ready" } else { "not_ready" },
            "node": gw.config.node_id,
            "policy_version": policy.version(),
            "grants": policy.set.grants.len(),
            "datasets": policy.set.datasets.len(),
            "audit_writer": if audit_ok { "healthy" } else { "failed" },
            "policy_reload": gw.reload_status.read().map(|s| s.clone()).unwrap_or_default(),
        })),
    )
}
