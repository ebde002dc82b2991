//! The catalog: read, list, create or replace, delete (refused while a
//! grant uses the dataset).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::entry;
use crate::api::RequestContext;
use crate::api::openapi as doc;
use crate::gateway::Gateway;
use crate::policy::model::DatasetSpec;

/// Every dataset of the catalog, with its ETag.
#[utoipa::path(
    get,
    path = "/v1/admin/datasets",
    tag = "admin",
    operation_id = "admin_list_datasets",
    responses((status = 200, description = "The catalog", body = doc::DatasetList)),
)]
pub(super) async fn list_datasets(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    headers: HeaderMap,
) -> Response {
    entry::list::<DatasetSpec>(gw, ctx, headers).await
}

/// One catalog entry (JSON, or TOML with `Accept: application/toml`).
#[utoipa::path(
    get,
    path = "/v1/admin/datasets/{id}",
    tag = "admin",
    operation_id = "admin_get_dataset",
    params(("id" = String, Path, description = "Dataset id", pattern = "^[a-z][a-z0-9_]{0,31}\\.[a-z][a-z0-9_]{0,63}$", example = "gongan.hukou")),
    responses(
        (status = 200, description = "The dataset; its ETag is in `ETag`", content(
            (doc::DatasetDocument = "application/json"),
            (String = "application/toml"),
        )),
        (status = 404, description = "No such dataset", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn get_dataset(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    entry::get::<DatasetSpec>(gw, ctx, path, headers).await
}

/// Create or replace a catalog entry (JSON or TOML body), in force at once.
#[utoipa::path(
    put,
    path = "/v1/admin/datasets/{id}",
    tag = "admin",
    operation_id = "admin_put_dataset",
    params(("id" = String, Path, description = "Dataset id", pattern = "^[a-z][a-z0-9_]{0,31}\\.[a-z][a-z0-9_]{0,63}$", example = "gongan.hukou"), ("If-Match" = Option<String>, Header, description = "The ETag of the entry as you read it; required to replace or delete an existing entry"), ("If-None-Match" = Option<String>, Header, description = "`*`: create only, never replace")),
    request_body(description = "The dataset: the fields of a dataset file", content(
        (Object = "application/json"),
        (String = "application/toml"),
    )),
    responses(
        (status = 200, description = "Replaced", body = doc::ChangeAnswer),
        (status = 201, description = "Created", body = doc::ChangeAnswer),
        (status = 412, description = "The ETag does not match", body = doc::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON or TOML", body = doc::Problem, content_type = "application/problem+json"),
        (status = 422, description = "The policy set would not load", body = doc::Problem, content_type = "application/problem+json"),
        (status = 428, description = "If-Match is required", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn put_dataset(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    entry::put::<DatasetSpec>(gw, ctx, path, headers, body).await
}

/// Delete a catalog entry (needs `If-Match`; refused while a grant uses it).
#[utoipa::path(
    delete,
    path = "/v1/admin/datasets/{id}",
    tag = "admin",
    operation_id = "admin_delete_dataset",
    params(("id" = String, Path, description = "Dataset id", pattern = "^[a-z][a-z0-9_]{0,31}\\.[a-z][a-z0-9_]{0,63}$", example = "gongan.hukou"), ("If-Match" = Option<String>, Header, description = "The ETag of the entry as you read it; required to replace or delete an existing entry"), entry::ReasonParams),
    responses(
        (status = 200, description = "Deleted", body = doc::ChangeAnswer),
        (status = 404, description = "No such dataset", body = doc::Problem, content_type = "application/problem+json"),
        (status = 412, description = "The ETag does not match", body = doc::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Grants still use it", body = doc::Problem, content_type = "application/problem+json"),
        (status = 428, description = "If-Match is required", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn delete_dataset(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    params: Result<Query<entry::ReasonParams>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    entry::delete::<DatasetSpec>(gw, ctx, path, params, headers).await
}
