//! Importing or replacing an embedded dataset's records while the gateway
//! serves: `PUT /v1/admin/datasets/{id}/records` (the body is the whole
//! set) and `POST …/records` (records added or replaced by ID, the others
//! kept).
//!
//! The body is JSON Lines or CSV, read as it arrives into a file of the
//! data directory (bounded by `limits.max_import_bytes` and
//! `limits.import_timeout_secs`, not by `limits.max_body_bytes`), then
//! checked row by row against the catalog into the dataset's next
//! generation beside the records in force ([`EmbeddedStore::stage`]). Any
//! bad row refuses the whole import (422 `invalid-records`, each bad line
//! named, never a value). A good one is recorded in the audit log and only
//! then put in force, in one step: a lookup sees the old records or the new.
//! One import runs at a time (a backup waits for it, and it for a backup).

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse as _, Response};
use http_body_util::BodyExt as _;
use serde_json::{Map, json};
use tokio::io::AsyncWriteExt as _;

use super::{admin, path_id};
use crate::api::openapi as doc;
use crate::api::{Answer, RequestContext, finish, finish_then};
use crate::audit::EventKind;
use crate::domain::{DatasetId, hex};
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::policy::model::ProviderSpec;
use crate::problem::{EntryKind, IdInput, Problem};
use crate::provider::embedded::Staged;
use crate::provider::import::{RowError, each_csv, each_jsonl};

/// How the body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Jsonl,
    Csv,
}

impl Format {
    fn of(headers: &HeaderMap) -> Result<Self, ApiError> {
        let media = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        match media.as_str() {
            "application/x-ndjson" | "application/jsonl" | "application/json-lines" => {
                Ok(Self::Jsonl)
            }
            "text/csv" => Ok(Self::Csv),
            _ => Err(Problem::RecordsMediaType.into()),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Jsonl => "jsonl",
            Self::Csv => "csv",
        }
    }
}

/// Replace every record of an embedded dataset (数据导入，整体替换).
///
/// The body is the dataset's whole set of records: JSON Lines
/// (`application/x-ndjson`, one object per line) or CSV (`text/csv`, a
/// header row; lists `;`-separated). Each row needs `id_number` and holds
/// only fields of the dataset, with values of their types. Checked whole
/// before anything changes; recorded in the audit log, then put in force in
/// one step.
#[utoipa::path(
    put,
    path = "/v1/admin/datasets/{id}/records",
    tag = "admin",
    operation_id = "admin_replace_records",
    params(("id" = String, Path, description = "Dataset id", pattern = "^[a-z][a-z0-9_]{0,31}\\.[a-z][a-z0-9_]{0,63}$")),
    request_body(description = "JSON Lines (one record per line) or CSV (a header row)", content(
        (String = "application/x-ndjson", example = json!("{\"id_number\":\"110101199810229455\",\"name\":\"张三\",\"hukou_status\":\"正常\"}\n")),
        (String = "text/csv", example = json!("id_number,name,hukou_status\n110101199810229455,张三,正常\n")),
    )),
    responses(
        (status = 200, description = "Imported and in force", body = doc::ImportAnswer),
        (status = 404, description = "No such dataset", body = doc::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The dataset is answered by its owner's system", body = doc::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Over limits.max_import_bytes", body = doc::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Neither JSON Lines nor CSV", body = doc::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad rows (each named by line); nothing changed", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn replace_records(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    method: Method,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    run_to_the_end(import(gw, ctx, method, path, headers, body)).await
}

/// Add or replace records of an embedded dataset by ID (数据导入，增量).
///
/// As the replacement, but the records in force that the body does not
/// name are kept.
#[utoipa::path(
    post,
    path = "/v1/admin/datasets/{id}/records",
    tag = "admin",
    operation_id = "admin_import_records",
    params(("id" = String, Path, description = "Dataset id", pattern = "^[a-z][a-z0-9_]{0,31}\\.[a-z][a-z0-9_]{0,63}$")),
    request_body(description = "JSON Lines (one record per line) or CSV (a header row)", content(
        (String = "application/x-ndjson", example = json!("{\"id_number\":\"110101199810229455\",\"name\":\"张三\",\"hukou_status\":\"正常\"}\n")),
        (String = "text/csv", example = json!("id_number,name,hukou_status\n110101199810229455,张三,正常\n")),
    )),
    responses(
        (status = 200, description = "Imported and in force", body = doc::ImportAnswer),
        (status = 404, description = "No such dataset", body = doc::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The dataset is answered by its owner's system", body = doc::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Over limits.max_import_bytes", body = doc::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Neither JSON Lines nor CSV", body = doc::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad rows (each named by line); nothing changed", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn import_records(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    method: Method,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    run_to_the_end(import(gw, ctx, method, path, headers, body)).await
}

/// Runs an import as a task of its own: a client that goes away (a reset
/// stream, a timeout) does not cut it between its audit event and the
/// swap, or let another import start while its work goes on.
async fn run_to_the_end(
    import: impl std::future::Future<Output = Response> + Send + 'static,
) -> Response {
    match tokio::spawn(import).await {
        Ok(response) => response,
        Err(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn import(
    gw: Arc<Gateway>,
    ctx: RequestContext,
    method: Method,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let replace = method == Method::PUT;
    let mut event = ctx.event(EventKind::PolicyAdmin, "data.import");
    let checked = check(&gw, &mut event, path, &headers);
    let prepared = match checked {
        Ok((dataset, spec, format)) => {
            prepare(&gw, &ctx, replace, (dataset, spec, format), body).await
        }
        // Refused before the body is read: a bounded part of it is read
        // anyway, so that the client, still sending, gets the answer
        // rather than a closed connection.
        Err(e) => {
            drain(body).await;
            Err(e)
        }
    };
    match prepared {
        Err(e) => finish(&gw, &ctx, event, Err(e)).await,
        Ok((staged, detail, lock)) => {
            event.detail = Some(detail.to_string());
            let mut body = Map::new();
            body.insert("dataset".into(), json!(event.dataset));
            if let serde_json::Value::Object(d) = detail {
                body.extend(d);
            }
            let store = gw.providers.embedded().clone();
            // In force only once the event that records it is durable.
            finish_then(&gw, &ctx, event, Ok(Answer::ok(body)), async move |_| {
                let committed = tokio::task::spawn_blocking(move || store.commit(staged))
                    .await
                    .map_err(|_| stopped())?;
                drop(lock);
                committed.map(|_| ()).map_err(|e| not_stored(&e))
            })
            .await
        }
    }
}

/// Reads and drops up to 4 MiB of a refused body, for at most five seconds.
async fn drain(body: Body) {
    use http_body_util::BodyExt;
    let limited = http_body_util::Limited::new(body, 4 << 20);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), limited.collect()).await;
}

/// What is checked before the body is read: the caller, the dataset (an
/// embedded one), the body's format.
fn check(
    gw: &Gateway,
    event: &mut crate::audit::EventBody,
    path: Result<Path<String>, PathRejection>,
    headers: &HeaderMap,
) -> Result<(DatasetId, crate::policy::load::Dataset, Format), ApiError> {
    admin(gw, headers, event)?;
    let dataset = DatasetId::parse(&path_id(path)?)
        .map_err(|e| ApiError::from(Problem::InvalidId(IdInput::Dataset, e)))?;
    event.dataset = Some(dataset.shared());
    let policy = gw.policy.snapshot();
    let spec = policy.set.datasets.get(&dataset).cloned().ok_or_else(|| {
        ApiError::from(Problem::EntryNotFound {
            kind: EntryKind::Dataset,
            id: dataset.to_string(),
        })
    })?;
    if matches!(spec.spec.provider, Some(ProviderSpec::Http { .. })) {
        return Err(Problem::DatasetNotEmbedded {
            dataset: dataset.to_string(),
        }
        .into());
    }
    let format = Format::of(headers)?;
    Ok((dataset, spec, format))
}

/// Everything before the event, once [`check`]ed: the body spooled and
/// checked into the next generation. Holds the import lock from the check
/// on (returned with the staged records, for the commit).
async fn prepare<'g>(
    gw: &'g Gateway,
    ctx: &RequestContext,
    replace: bool,
    (dataset, spec, format): (DatasetId, crate::policy::load::Dataset, Format),
    body: Body,
) -> Result<(Staged, serde_json::Value, tokio::sync::MutexGuard<'g, ()>), ApiError> {
    // A long upload holds back neither the audit writer's groups nor
    // another import or a backup: the lock is taken once the body is in.
    ctx.in_flight.release();
    let spool = spool(gw, ctx, body).await?;
    let lock = gw.data_lock.lock().await;
    let store = gw.providers.embedded().clone();
    let before = store.count(&dataset).map_err(|e| not_stored(&e))?;
    let file = spool.path.clone();
    let (staged, rows) = tokio::task::spawn_blocking(move || {
        let staged = store.stage(&dataset, replace).map_err(|e| not_stored(&e))?;
        match read_into(&file, format, &spec, &staged) {
            Ok(rows) => Ok((staged, rows)),
            Err(e) => {
                store.abandon(staged);
                Err(e)
            }
        }
    })
    .await
    .map_err(|_| stopped())??;
    let detail = json!({
        "mode": if replace { "replace" } else { "merge" },
        "format": format.as_str(),
        "rows": rows,
        "held_before": before,
        "held_after": staged.len(),
        "bytes": spool.bytes,
        "sha256": spool.sha256,
    });
    Ok((staged, detail, lock))
}

fn stopped() -> ApiError {
    ApiError::from(Problem::RecordsNotStored("the import stopped".into()))
}

fn not_stored(e: &crate::provider::ProviderError) -> ApiError {
    tracing::warn!(error = %e, "an import could not be stored");
    ApiError::from(Problem::RecordsNotStored(e.to_string()))
}

/// The body, written to a file of the data directory as it arrived
/// (removed when dropped), with its size and SHA-256.
struct Spool {
    path: PathBuf,
    bytes: u64,
    sha256: String,
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads the body into a spool file, at most `limits.max_import_bytes`.
async fn spool(gw: &Gateway, ctx: &RequestContext, body: Body) -> Result<Spool, ApiError> {
    let limit = gw.config.limits.max_import_bytes;
    let mut spool = Spool {
        path: gw
            .config
            .data_dir
            .join(format!("import-{}.part", &*ctx.request_id)),
        bytes: 0,
        sha256: String::new(),
    };
    let failed = |e: std::io::Error| ApiError::from(Problem::RecordsNotStored(e.to_string()));
    let mut file = tokio::fs::File::create(&spool.path).await.map_err(failed)?;
    let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| super::body_error(&e))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        spool.bytes += data.len() as u64;
        if spool.bytes > limit {
            return Err(Problem::ImportTooLarge { limit }.into());
        }
        digest.update(&data);
        file.write_all(&data).await.map_err(failed)?;
    }
    file.flush().await.map_err(failed)?;
    spool.sha256 = hex(digest.finish().as_ref());
    Ok(spool)
}

/// Checks every row of `file` into `staged`: how many rows, or the bad ones.
fn read_into(
    file: &std::path::Path,
    format: Format,
    spec: &crate::policy::load::Dataset,
    staged: &Staged,
) -> Result<usize, ApiError> {
    let reader = std::io::BufReader::new(
        std::fs::File::open(file)
            .map_err(|e| ApiError::from(Problem::RecordsNotStored(e.to_string())))?,
    );
    let mut sink = |id: crate::domain::ResidentId, record| {
        staged.insert(&id, &record).map_err(|e| e.to_string())
    };
    let read = match format {
        Format::Jsonl => each_jsonl(reader, spec, &mut sink),
        Format::Csv => each_csv(reader, spec, &mut sink),
    };
    read.map_err(|errors: Vec<RowError>| {
        ApiError::from(Problem::InvalidRecords {
            errors: errors.iter().map(ToString::to_string).collect(),
        })
    })
}
