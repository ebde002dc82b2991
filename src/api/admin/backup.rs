//! `GET /v1/admin/backup`: a consistent backup of the running gateway, as
//! one tar file ([`crate::backup`]); `tongban backup --url` is its client.
//!
//! The snapshot point is a checkpoint signed for it; the audit log is
//! copied through it while requests go on. Imports, prunes and policy
//! changes wait while the backup is written (into the data directory,
//! then streamed from there and removed).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::admin;
use crate::api::{Answer, RequestContext, bad_query, finish};
use crate::audit::EventKind;
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::policy::model::ProviderSpec;
use crate::problem::Problem;

/// Query of a backup.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct BackupParams {
    /// Include the keys of the data directory (the resident pseudonym key,
    /// the checkpoint keys, the answer-signing keys), where
    /// `backup.allow_keys` is true (else 403 `backup-keys-refused`).
    /// Default false: a backup without them restores beside the original
    /// keys.
    keys: Option<bool>,
}

/// A backup of the gateway while it serves (备份): the audit log through a
/// checkpoint signed for it, the embedded datasets, the stops, the policy
/// history, the policy files and configuration, and the keys if asked.
///
/// One tar file, `manifest.json` first (snapshot point, and the size and
/// SHA-256 of every entry). Audited (`backup`). `tongban restore --from
/// FILE --home DIR` builds a new home from it.
#[utoipa::path(
    get,
    path = "/v1/admin/backup",
    tag = "admin",
    operation_id = "admin_backup",
    params(BackupParams),
    responses(
        (status = 200, description = "The backup (application/x-tar)", content_type = "application/x-tar", body = Vec<u8>),
    ),
)]
pub(super) async fn backup(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    params: Result<Query<BackupParams>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, "backup");
    let result = async {
        admin(&gw, &headers, &mut event)?;
        let Query(params) = params.map_err(|e| bad_query(&e))?;
        let keys = params.keys.unwrap_or(false);
        if keys && !gw.config.backup.allow_keys {
            return Err(Problem::BackupKeysRefused.into());
        }
        // Writing a large log takes a while: the audit writer's groups do
        // not wait for this request's event.
        ctx.in_flight.release();
        let (file, manifest) = write(&gw, keys, &ctx).await?;
        event.detail = Some(
            json!({
                "snapshot_seq": manifest.snapshot.seq,
                "events": manifest.snapshot.events,
                "keys": keys,
                "datasets": manifest.datasets,
            })
            .to_string(),
        );
        let name = format!(
            "tongban-backup-{}-{}.tar",
            manifest.node_id, manifest.snapshot.seq
        );
        Ok(Answer::Raw {
            content_type: "application/x-tar",
            filename: Some(name),
            body: file_stream(file),
        })
    }
    .await;
    finish(&gw, &ctx, event, result).await
}

/// Writes the backup under the locks that keep it consistent; the file is
/// open and already unlinked (it goes when the answer is sent).
async fn write(
    gw: &Arc<Gateway>,
    keys: bool,
    ctx: &RequestContext,
) -> Result<(tokio::fs::File, crate::backup::Manifest), ApiError> {
    let _imports = gw.data_lock.lock().await;
    let _prunes = gw.audit_prune_lock.read().await;
    let _policy = gw.policy_lock.lock().await;
    let through = gw
        .audit
        .checkpoint_now()
        .await
        .map_err(|_| ApiError::audit_unavailable())?;
    crate::api::audit::caught_up(gw).await?;
    let out = gw
        .config
        .data_dir
        .join(format!("backup-{}.tar", &*ctx.request_id));
    let gw2 = gw.clone();
    let path = out.clone();
    let written = tokio::task::spawn_blocking(move || {
        let gw = gw2;
        let policy = gw.policy.snapshot();
        let datasets = policy
            .set
            .datasets
            .values()
            .filter(|d| !matches!(d.spec.provider, Some(ProviderSpec::Http { .. })))
            .map(|d| d.spec.id.clone())
            .collect();
        let config = gw
            .config
            .source
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok());
        let named = [
            gw.config.calendar.file.as_ref(),
            gw.config.alerts.rules.as_ref(),
        ];
        let config_files = crate::backup::CONFIG_FILES
            .iter()
            .zip(named)
            .filter_map(|((_, name), path)| Some((*name, std::fs::read_to_string(path?).ok()?)))
            .collect();
        let src = crate::backup::Sources {
            db: gw.audit_store.db(),
            audit: &gw.audit_store,
            embedded: gw.providers.embedded(),
            datasets,
            policies: &policy.set.sources,
            config,
            config_files,
            data_dir: &gw.config.data_dir,
            node_id: &gw.config.node_id,
            through,
            keys,
            created: crate::audit::query::format_time(gw.clock.unix_millis(), gw.utc_offset),
        };
        crate::backup::write(&src, &path)
    })
    .await
    .map_err(|_| failed("the backup stopped"))?
    .map_err(|e| {
        tracing::error!(error = %e, "a backup could not be written");
        failed(&e.to_string())
    })?;
    let file = tokio::fs::File::open(&out)
        .await
        .map_err(|e| failed(&e.to_string()))?;
    let _ = tokio::fs::remove_file(&out).await;
    Ok((file, written))
}

fn failed(why: &str) -> ApiError {
    ApiError::from(Problem::BackupFailed(why.to_owned()))
}

/// The body of an open file, 64 KiB at a time.
fn file_stream(file: tokio::fs::File) -> axum::body::Body {
    use tokio::io::AsyncReadExt as _;
    let stream = futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    axum::body::Body::from_stream(stream)
}
