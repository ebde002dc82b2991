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
/// `/metrics` is here unless it has a listen address of its own.
pub(crate) fn router(metrics_here: bool) -> Router<Arc<Gateway>> {
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    if metrics_here {
        router.route("/metrics", get(metrics))
    } else {
        router
    }
}

/// The router of the separate metrics listener.
pub fn metrics_router(gw: Arc<Gateway>) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(gw)
}

/// `GET /metrics`: Prometheus exposition (OpenMetrics text).
pub(crate) async fn metrics(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    let m = &gw.metrics;
    m.audit_writer_up.set(i64::from(gw.audit.is_healthy()));
    m.policy_info.clear();
    m.policy_info
        .get_or_create(&crate::metrics::PolicyLabels {
            version: gw.policy.snapshot().version().to_owned(),
        })
        .set(1);
    let failures = gw.reload_status.read().map(|s| s.failures).unwrap_or(0);
    m.policy_reload_failures
        .set(i64::try_from(failures).unwrap_or(i64::MAX));
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
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
