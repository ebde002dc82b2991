//! How every policy change is carried out: prepared and validated as a
//! whole under the policy lock, described in its audit event, and applied
//! (files written or the cluster transaction committed, then swapped in)
//! only after that event is durable.
//!
//! Invariant: no change is written or swapped in before its audit event is
//! durable, and a change prepared on a node behind the cluster is refused.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::cluster::cluster_unavailable;
use super::not_found;
use crate::api::{Answer, RequestContext, finish, finish_then};
use crate::audit::EventBody;
use crate::cluster::{ChangeMeta, ChangeTx};
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::pipeline::authn::Principal;
use crate::policy::edit::{Change, EditError, Prepared, apply_files, prepare};
use crate::policy::history::HistoryEntry;
use crate::problem::Problem;

pub(super) fn edit_error(e: EditError, kind: &str, id: &str) -> ApiError {
    match e {
        EditError::Invalid(errors) => {
            let mut err = ApiError::from(Problem::InvalidPolicy {
                errors: errors.iter().map(ToString::to_string).collect(),
            });
            err.extra.insert("errors".into(), json!(errors));
            err
        }
        EditError::NotFound => not_found(kind, id),
        EditError::InUse(grants) => ApiError::from(Problem::DatasetInUse {
            dataset: id.to_owned(),
            grants,
        }),
    }
}

/// A prepared change with what the history needs; applied after its audit event is durable.
pub(super) struct Apply<'g> {
    gw: &'g Gateway,
    prepared: Prepared,
    entry: HistoryEntry,
}

impl Apply<'_> {
    /// The change with its reason: in its audit event and its history.
    pub(super) fn with_reason(mut self, event: &mut EventBody, reason: Option<String>) -> Self {
        if let Some(r) = &reason {
            if let Some(Ok(Value::Object(mut d))) =
                event.detail.as_deref().map(serde_json::from_str::<Value>)
            {
                d.insert("reason".into(), json!(r));
                event.detail = Some(Value::Object(d).to_string());
            }
        }
        self.entry.reason = reason;
        self
    }

    pub(super) async fn run(self, seq: u64, tx: Option<ChangeTx>) -> Result<(), ApiError> {
        let failed = |what: String| {
            tracing::error!(error = %what, "policy change could not be applied");
            ApiError::from(Problem::PolicyWriteFailed)
        };
        match (tx, &self.gw.cluster) {
            (Some(tx), Some(cluster)) => {
                let meta = ChangeMeta {
                    node_id: cluster.node_id.clone(),
                    author: self.entry.author.clone(),
                    action: self.entry.action.clone(),
                    reason: self.entry.reason.clone(),
                    summary: format!(
                        "{} {} {}",
                        self.entry.action, self.entry.kind, self.entry.id
                    ),
                };
                let version = tx
                    .commit(&self.prepared.set.sources, &meta)
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                if let Err(e) = cluster.set_applied(version, &self.prepared.set.sources) {
                    tracing::error!(error = %e, "the applied policy version could not be kept");
                }
                self.gw.metrics.cluster_policy_version.set(version);
            }
            _ => apply_files(&self.gw.config.policies_dir, &self.prepared.writes)
                .map_err(|e| failed(e.to_string()))?,
        }
        let compiled = self.gw.compile(self.prepared.set);
        self.gw.policy.swap(compiled);
        let mut entry = self.entry;
        entry.seq = seq;
        if let Err(e) = self.gw.policy_history.record(&entry) {
            tracing::error!(error = %e, "policy history could not be recorded");
        }
        Ok(())
    }
}

/// Prepares a change and describes it in the event; the caller holds the policy lock.
pub(super) fn prepare_change<'g>(
    gw: &'g Gateway,
    who: &Principal,
    event: &mut EventBody,
    change: Change,
    action: &str,
) -> Result<(Map<String, Value>, Apply<'g>), ApiError> {
    let (kind, id) = (change.kind(), change.id());
    let current = gw.policy.snapshot();
    let prepared = prepare(&current.set, &change).map_err(|e| edit_error(e, kind, &id))?;
    let access: Vec<String> = prepared.access.iter().map(ToString::to_string).collect();
    let version = match &change {
        Change::PutGrant(g) => Some(g.version),
        _ => None,
    };
    event.detail = Some(json!({"action": action, "kind": kind, "id": id, "version": version, "before": prepared.before, "after": prepared.after, "access": access}).to_string());
    event.policy_version = Some(prepared.set.version.as_str().into());
    let entry = HistoryEntry {
        seq: 0,
        time_ms: gw.clock.unix_millis(),
        author: format!("{}/{}", who.dept, who.subject),
        action: action.to_owned(),
        kind: kind.to_owned(),
        id: id.clone(),
        version,
        before: prepared.before.clone(),
        after: prepared.after.clone(),
        access: access.clone(),
        reason: None,
    };
    let mut body = Map::new();
    body.insert("kind".into(), json!(kind));
    body.insert("id".into(), json!(id));
    body.insert("policy_version".into(), json!(prepared.set.version));
    body.insert("access_changes".into(), json!(access));
    Ok((
        body,
        Apply {
            gw,
            prepared,
            entry,
        },
    ))
}

/// The answer to a stored change: the entry, its new ETag, 201 if it was created.
pub(super) fn stored(
    mut body: Map<String, Value>,
    member: &str,
    value: Value,
    etag: String,
    created: bool,
) -> Answer {
    body.insert(member.into(), value);
    body.insert("etag".into(), json!(etag));
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Answer::Json {
        status,
        body,
        etag: Some(etag),
        proof: None,
    }
}

pub(super) async fn respond_change(
    gw: &Gateway,
    ctx: &RequestContext,
    event: EventBody,
    result: Result<(Answer, Apply<'_>), ApiError>,
) -> Response {
    match result {
        Ok((answer, apply)) => {
            let tx = match begin_cluster_change(gw).await {
                Ok(tx) => tx,
                Err(e) => return finish(gw, ctx, event, Err(e)).await,
            };
            finish_then(gw, ctx, event, Ok(answer), |seq| apply.run(seq, tx)).await
        }
        Err(e) => finish(gw, ctx, event, Err(e)).await,
    }
}

/// Takes the lock every policy change holds. In cluster mode it first
/// brings this node to the newest version in PostgreSQL (if PostgreSQL
/// answers), so that the change is prepared against what the cluster enforces.
pub(super) async fn lock_policy(gw: &Gateway) -> tokio::sync::MutexGuard<'_, ()> {
    let guard = gw.policy_lock.lock().await;
    if gw.cluster.is_some() {
        if let Err(e) = gw.sync_cluster_locked("admin edit").await {
            tracing::warn!(error = %e, "policy version not checked before an edit");
        }
    }
    guard
}

/// In cluster mode, the change's transaction in PostgreSQL: it holds the
/// cluster-wide policy lock from before the change's audit event until the
/// new version is committed, and it is refused if another node committed a
/// version since this one was brought up to date.
pub(super) async fn begin_cluster_change(gw: &Gateway) -> Result<Option<ChangeTx>, ApiError> {
    let Some(cluster) = &gw.cluster else {
        return Ok(None);
    };
    let tx = cluster
        .store
        .begin_change()
        .await
        .map_err(|e| cluster_unavailable(&e))?;
    if tx.head() != cluster.applied() {
        tx.rollback().await;
        let _ = gw.sync_cluster_locked("admin edit").await;
        return Err(Problem::PolicyChangedElsewhere.into());
    }
    Ok(Some(tx))
}
