//! Operations routes: liveness and readiness. Not audited, no resident data.

use std::sync::{Arc, OnceLock};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::gateway::Gateway;
use crate::policy::model::ProviderSpec;

/// Health routes are cheap and unaudited; everything under `/v1` is audited.
/// `/metrics` is here unless it has a listen address of its own.
pub(crate) fn router(metrics_here: bool) -> OpenApiRouter<Arc<Gateway>> {
    let router = OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(openapi_json))
        .routes(routes!(jwks));
    if metrics_here {
        router.routes(routes!(metrics))
    } else {
        router
    }
}

/// The router of the separate metrics listener (an operator's address):
/// the metrics, and readiness with its details.
pub fn metrics_router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route(
            "/readyz",
            get(|State(gw): State<Arc<Gateway>>| async move { readiness(&gw, true) }),
        )
        .with_state(gw)
}

/// Prometheus metrics (OpenMetrics text): requests, latency, audit writer,
/// rate limits, policy reloads, TLS handshakes, connections. Here unless
/// `metrics_listen` gives them an address of their own.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    operation_id = "metrics",
    responses((status = 200, description = "The metrics", body = String, content_type = "application/openmetrics-text")),
)]
pub(crate) async fn metrics(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    let m = &gw.metrics;
    m.audit_writer_up.set(i64::from(gw.audit.is_healthy()));
    // Sets tongban_data_disk_free_bytes.
    let _ = gw.disk_free_bytes();
    m.policy_info.clear();
    m.policy_info
        .get_or_create(&crate::metrics::PolicyLabels {
            version: gw.policy.snapshot().version().to_owned(),
        })
        .set(1);
    m.provider_up.clear();
    if let Some(up) = gw.providers.upstreams() {
        for d in gw.policy.snapshot().set.datasets.values() {
            if let Some(ProviderSpec::Http { base_url, .. }) = &d.spec.provider {
                m.provider_up
                    .get_or_create(&crate::metrics::DatasetLabels {
                        dataset: d.spec.id.to_string(),
                    })
                    .set(i64::from(up.health(base_url).state != "down"));
            }
        }
    }
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

/// This description: OpenAPI 3.1, generated from the routes themselves.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "ops",
    operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI document", body = Object)),
)]
pub(crate) async fn openapi_json(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    static WITH_METRICS: OnceLock<bytes::Bytes> = OnceLock::new();
    static WITHOUT_METRICS: OnceLock<bytes::Bytes> = OnceLock::new();
    let metrics_here = gw.config.metrics_listen.is_none();
    let cell = if metrics_here {
        &WITH_METRICS
    } else {
        &WITHOUT_METRICS
    };
    let spec = cell.get_or_init(|| {
        bytes::Bytes::from(
            crate::api::openapi_document(metrics_here)
                .to_json()
                .unwrap_or_default(),
        )
    });
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        spec.clone(),
    )
}

/// The public keys that verify signed answers (JWK Set, RFC 7517): the
/// current key and every earlier one, so old proofs keep verifying; in
/// cluster mode every node's, so a proof from any node verifies with the
/// set fetched through any node.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "ops",
    operation_id = "jwks",
    responses((status = 200, description = "The JWK Set", body = Object, content_type = "application/jwk-set+json")),
)]
pub(crate) async fn jwks(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    (
        [
            (axum::http::header::CONTENT_TYPE, "application/jwk-set+json"),
            (axum::http::header::CACHE_CONTROL, "max-age=300"),
        ],
        gw.jwks().to_string(),
    )
}

/// Liveness: the process is up.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "ops",
    operation_id = "healthz",
    responses((status = 200, description = "Up", body = super::openapi::Health)),
)]
pub(crate) async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Readiness: policies loaded and the audit writer healthy (503 otherwise:
/// without a working audit log the gateway refuses every query). Anyone
/// learns only ready or not; the details (policy version, providers and
/// their errors, the cluster's shipping) go to a `policy_admin` or
/// `privacy_officer` of the operator department, and to the plain-HTTP
/// metrics address when one is configured.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    operation_id = "readyz",
    responses(
        (status = 200, description = "Ready (details for operator staff)", body = super::openapi::Readiness),
        (status = 503, description = "Not ready: the audit writer has failed", body = super::openapi::Readiness),
    ),
)]
pub(crate) async fn readyz(
    State(gw): State<Arc<Gateway>>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    readiness(&gw, operator_staff(&gw, &headers))
}

/// Whether the request carries a valid token of the operator department's
/// staff (an invalid or missing one is not an error here: it only gets less).
fn operator_staff(gw: &Gateway, headers: &axum::http::HeaderMap) -> bool {
    if !headers.contains_key(axum::http::header::AUTHORIZATION) {
        return false;
    }
    let policy = gw.policy.snapshot();
    gw.auth
        .authenticate(
            headers
                .get_all(axum::http::header::AUTHORIZATION)
                .iter()
                .map(|v| v.as_bytes()),
            |d| policy.knows_department(d),
        )
        .is_ok_and(|p| {
            let fingerprint = crate::pipeline::connection::CONNECTION
                .try_with(|c| c.cert_fingerprint)
                .ok()
                .flatten();
            p.dept.as_str() == gw.config.operator_department
                && (p.has_role("policy_admin") || p.has_role("privacy_officer"))
                && !crate::pipeline::admit::revoked(gw, &p)
                && crate::pipeline::admit::bind_to_connection(&p, fingerprint).is_ok()
        })
}

fn readiness(gw: &Gateway, details: bool) -> (StatusCode, Json<serde_json::Value>) {
    let writer_ok = gw.audit.is_healthy();
    let disk_free = gw.disk_free_bytes();
    let low_water = gw.config.audit.disk_low_water_mb;
    let disk_ok = disk_free.is_none_or(|free| free > low_water.saturating_mul(1 << 20));
    let audit_ok = writer_ok && disk_ok;
    let status = if audit_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = if audit_ok { "ready" } else { "not_ready" };
    if !details {
        return (status, Json(json!({ "status": word })));
    }
    let policy = gw.policy.snapshot();
    (
        status,
        Json(json!({
            "status": word,
            "node": gw.config.node_id,
            "policy_version": policy.version(),
            "grants": policy.set.grants.len(),
            "datasets": policy.set.datasets.len(),
            "audit_writer": if writer_ok {
                "healthy"
            } else if gw.audit.is_behind() {
                "behind"
            } else {
                "failed"
            },
            "disk": {
                "free_mb": disk_free.map(|b| b >> 20),
                "low_water_mb": low_water,
                "state": if disk_ok { "ok" } else { "low" },
            },
            // A poisoned lock (a reload that panicked) reads as no reload yet.
            "policy_reload": gw.reload_status.read().map(|s| s.clone()).unwrap_or_default(),
            "providers": providers(gw, &policy),
            // Issuers that publish their keys: which, how old, and whether
            // their tokens are verified now (an issuer's do not make the
            // gateway unready: the others' still are).
            "token_keys": gw.auth.key_sources(),
            "cluster": cluster_readiness(gw),
        })),
    )
}

/// In cluster mode: the policy version in PostgreSQL this node enforces and
/// how far its audit chain is copied there. Neither makes the node unready:
/// it serves and audits locally while PostgreSQL is away. Null on a single node.
fn cluster_readiness(gw: &Gateway) -> serde_json::Value {
    let Some(c) = &gw.cluster else {
        return serde_json::Value::Null;
    };
    let shipped = c
        .shipping
        .shipped
        .load(std::sync::atomic::Ordering::Acquire);
    let durable = gw.audit.durable_seq();
    json!({
        "node_id": c.node_id,
        "policy_version": c.applied(),
        "policy_files_differ": c.policy_files_differ.load(std::sync::atomic::Ordering::Acquire),
        "audit_shipping": {
            "durable_seq": durable,
            "applied_seq": gw.audit.applied_seq(),
            "shipped_seq": shipped,
            "lag_events": durable.saturating_sub(shipped),
            "error": c.shipping.error(),
        },
    })
}

/// Each dataset's provider and, for upstreams, what their breakers know.
/// An upstream that is down does not make the gateway unready: its datasets
/// fail fast while the others are served.
fn providers(gw: &Gateway, policy: &crate::policy::CompiledPolicy) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for d in policy.set.datasets.values() {
        let entry = match (&d.spec.provider, gw.providers.upstreams()) {
            (Some(ProviderSpec::Http { base_url, .. }), Some(up)) => {
                let h = up.health(base_url);
                json!({"kind": "http", "base_url": base_url, "state": h.state,
                       "failures": h.failures, "last_error": h.last_error})
            }
            (Some(ProviderSpec::Http { base_url, .. }), None) => {
                json!({"kind": "http", "base_url": base_url, "state": "not_configured"})
            }
            _ => json!({"kind": "embedded", "state": "up"}),
        };
        out.insert(d.spec.id.to_string(), entry);
    }
    serde_json::Value::Object(out)
}
