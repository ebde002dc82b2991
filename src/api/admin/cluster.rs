//! The cluster as administrators see it: its nodes and the policy versions
//! committed in PostgreSQL.

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

/// The cluster's nodes: each one's address, last heartbeat, whether it is
/// alive and which policy version it enforces. On a single node (no
/// `[cluster]`), `mode` is `single` and the list is empty.
#[utoipa::path(
    get,
    path = "/v1/admin/cluster",
    tag = "admin",
    operation_id = "admin_cluster",
    responses(
        (status = 200, description = "The nodes", body = doc::ClusterState),
        (status = 503, description = "PostgreSQL cannot be reached", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn cluster_state(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, "policy.cluster");
    let result = match admin(&gw, &headers, &mut event) {
        Ok(_) => cluster_body(&gw).await,
        Err(e) => Err(e),
    };
    finish(&gw, &ctx, event, result).await
}

async fn cluster_body(gw: &Gateway) -> Result<Answer, ApiError> {
    let mut body = Map::new();
    body.insert("node_id".into(), json!(gw.config.node_id));
    let Some(cluster) = &gw.cluster else {
        body.insert("mode".into(), json!("single"));
        body.insert("policy_version".into(), Value::Null);
        body.insert("head_version".into(), Value::Null);
        body.insert("nodes".into(), json!([]));
        return Ok(Answer::ok(body));
    };
    let head = cluster
        .store
        .head_version()
        .await
        .map_err(|e| cluster_unavailable(&e))?;
    let nodes = cluster
        .store
        .nodes()
        .await
        .map_err(|e| cluster_unavailable(&e))?;
    let nodes: Vec<Value> = nodes
        .into_iter()
        .map(|n| {
            json!({
                "node_id": n.node_id,
                "listen": n.listen,
                "software": n.software,
                "started_at": format_time(n.started_ms, gw.utc_offset),
                "last_heartbeat": format_time(n.heartbeat_ms, gw.utc_offset),
                "seconds_since_heartbeat": n.seconds_since_heartbeat,
                "alive": n.alive,
                "policy_version": n.policy_version,
                "policy_current": n.policy_version == head,
                "audit_head_seq": n.audit_head,
                "audit_shipped_seq": n.audit_shipped,
                "audit_lag_events": (n.audit_head - n.audit_shipped).max(0),
            })
        })
        .collect();
    body.insert("mode".into(), json!("cluster"));
    body.insert("stops_applied".into(), json!(cluster.stops_applied()));
    body.insert("stops_pending".into(), json!(cluster.outbox().len()));
    body.insert("policy_version".into(), json!(cluster.applied()));
    body.insert("head_version".into(), json!(head));
    body.insert("nodes".into(), Value::Array(nodes));
    Ok(Answer::ok(body))
}

/// Query of the cluster's policy versions.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct VersionsParams {
    /// Most versions, 1 to 1000 (default 100).
    limit: Option<i64>,
}

/// The cluster's policy history: every version in PostgreSQL, newest first,
/// with its author, the node it was committed through, when, what it did,
/// and the files it changed. The same on every node (each node's own
/// `/v1/admin/history` holds the diffs of the changes it applied).
#[utoipa::path(
    get,
    path = "/v1/admin/cluster/versions",
    tag = "admin",
    operation_id = "admin_cluster_versions",
    params(VersionsParams),
    responses(
        (status = 200, description = "The versions", body = doc::ClusterVersions),
        (status = 409, description = "Not in cluster mode", body = doc::Problem, content_type = "application/problem+json"),
        (status = 503, description = "PostgreSQL cannot be reached", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn cluster_versions(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    params: Result<Query<VersionsParams>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, "policy.cluster-versions");
    let result = async {
        admin(&gw, &headers, &mut event)?;
        let Query(p) = params.map_err(|e| bad_query(&e))?;
        let Some(cluster) = &gw.cluster else {
            return Err(Problem::NotACluster.into());
        };
        let limit = p.limit.unwrap_or(100).clamp(1, 1000);
        let versions = cluster
            .store
            .versions(limit)
            .await
            .map_err(|e| cluster_unavailable(&e))?;
        let list: Vec<Value> = versions
            .into_iter()
            .map(|v| {
                json!({
                    "version": v.version,
                    "committed_at": format_time(v.committed_ms, gw.utc_offset),
                    "node_id": v.node_id,
                    "author": v.author,
                    "reason": v.reason,
                    "action": v.action,
                    "summary": v.summary,
                    "content_hash": v.content_hash,
                    "changed_files": v.changed_files,
                })
            })
            .collect();
        let mut body = Map::new();
        body.insert("policy_version".into(), json!(cluster.applied()));
        body.insert("versions".into(), Value::Array(list));
        Ok(Answer::ok(body))
    }
    .await;
    finish(&gw, &ctx, event, result).await
}

pub(super) fn cluster_unavailable(e: &crate::cluster::ClusterError) -> ApiError {
    tracing::error!(error = %e, "PostgreSQL cannot be reached");
    ApiError::from(Problem::PolicyStoreUnavailable)
}
