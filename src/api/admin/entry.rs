//! Grants and catalog entries are edited the same way: list them, read one
//! (JSON, or TOML with `Accept: application/toml`), create or replace one,
//! delete one. Those routes are written once, here, over [`Entry`]; the
//! files `grants.rs` and `datasets.rs` name them and document them.
//!
//! Invariant: a write names the entry in its path and its body alike,
//! replaces or deletes only under the `If-Match` of what is in force, and
//! goes through [`prepare_change`] (validated with the whole set, applied
//! only after its audit event is durable).

use std::fmt::Display;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::change::{lock_policy, prepare_change, respond_change, stored};
use super::{admin, check_precondition, not_found, parse_body, path_id, wants_toml};
use crate::api::{Answer, RequestContext, finish};
use crate::audit::EventKind;
use crate::domain::{DatasetId, GrantId};
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::policy::edit::{Change, dataset_etag, dataset_toml, grant_etag, grant_toml};
use crate::policy::load::PolicySet;
use crate::policy::model::{DatasetSpec, GrantSpec};
use crate::problem::{EntryKind, IdInput, Problem};

/// The operations an entry's routes record in their audit events.
pub(super) struct Operations {
    pub list: &'static str,
    pub get: &'static str,
    pub put: &'static str,
    pub delete: &'static str,
}

/// An entry of the policy set that administrators edit whole.
pub(super) trait Entry: Serialize + DeserializeOwned + Sized {
    /// Its identifier.
    type Id: Display + PartialEq;
    /// Its kind, as problems name it.
    const KIND: EntryKind;
    /// `grant` or `dataset`: the member that holds it in an answer.
    const NAME: &'static str;
    /// `grants` or `datasets`: the member that holds the list.
    const PLURAL: &'static str;
    /// Whether reading one names the file it lives in.
    const NAMES_FILE: bool;
    /// What its routes record.
    const OPERATIONS: Operations;

    /// Parses an identifier from a path.
    fn parse_id(raw: &str) -> Result<Self::Id, ApiError>;
    /// Its identifier.
    fn id(&self) -> &Self::Id;
    /// The entry in force under `id`, and its file.
    fn find<'s>(set: &'s PolicySet, id: &Self::Id) -> Option<(&'s Self, &'s str)>;
    /// Every entry in force, with its summary for the list.
    fn summaries(set: &PolicySet) -> Vec<Value>;
    /// Its entity tag.
    fn etag(&self) -> String;
    /// Its TOML, as its file holds it.
    fn toml(&self) -> String;
    /// Numbers a replacement of `current` (grants count their versions).
    fn renumber(&mut self, current: Option<&Self>);
    /// Whether it says what `current` says (its number and provenance aside).
    fn same_as(&self, current: &Self) -> bool;
    /// The change that stores it.
    fn put(self) -> Change;
    /// The change that removes the entry `id`.
    fn delete(id: Self::Id) -> Change;
}

impl Entry for GrantSpec {
    type Id = GrantId;
    const KIND: EntryKind = EntryKind::Grant;
    const NAME: &'static str = "grant";
    const PLURAL: &'static str = "grants";
    const NAMES_FILE: bool = true;
    const OPERATIONS: Operations = Operations {
        list: "policy.list_grants",
        get: "policy.get_grant",
        put: "policy.put_grant",
        delete: "policy.delete_grant",
    };

    fn parse_id(raw: &str) -> Result<GrantId, ApiError> {
        GrantId::parse(raw).map_err(|e| ApiError::from(Problem::InvalidId(IdInput::Grant, e)))
    }
    fn id(&self) -> &GrantId {
        &self.id
    }
    fn find<'s>(set: &'s PolicySet, id: &GrantId) -> Option<(&'s Self, &'s str)> {
        set.grants.get(id).map(|g| (&g.spec, g.file.as_str()))
    }
    fn summaries(set: &PolicySet) -> Vec<Value> {
        set.grants
            .values()
            .map(|g| {
                let s = &g.spec;
                json!({
                    "id": s.id, "version": s.version, "etag": grant_etag(s), "title": s.title, "file": g.file,
                    "consumer": s.consumer, "roles": s.roles, "purposes": s.purposes, "operations": s.operations,
                    "datasets": s.access.iter().map(|a| a.dataset.to_string()).collect::<Vec<_>>(),
                })
            })
            .collect()
    }
    fn etag(&self) -> String {
        grant_etag(self)
    }
    fn toml(&self) -> String {
        grant_toml(self)
    }
    fn renumber(&mut self, current: Option<&Self>) {
        self.version = current.map_or(1, |g| g.version + 1);
        // Provenance is the sharing workflow's to write: an edit keeps the
        // grant's own, and cannot give one.
        self.provenance = current.and_then(|g| g.provenance.clone());
    }
    fn same_as(&self, current: &Self) -> bool {
        let mut mine = self.clone();
        mine.version = current.version;
        mine.provenance.clone_from(&current.provenance);
        grant_toml(&mine) == grant_toml(current)
    }
    fn put(self) -> Change {
        Change::PutGrant(Box::new(self))
    }
    fn delete(id: GrantId) -> Change {
        Change::DeleteGrant(id)
    }
}

impl Entry for DatasetSpec {
    type Id = DatasetId;
    const KIND: EntryKind = EntryKind::Dataset;
    const NAME: &'static str = "dataset";
    const PLURAL: &'static str = "datasets";
    const NAMES_FILE: bool = false;
    const OPERATIONS: Operations = Operations {
        list: "policy.list_datasets",
        get: "policy.get_dataset",
        put: "policy.put_dataset",
        delete: "policy.delete_dataset",
    };

    fn parse_id(raw: &str) -> Result<DatasetId, ApiError> {
        DatasetId::parse(raw).map_err(|e| ApiError::from(Problem::InvalidId(IdInput::Dataset, e)))
    }
    fn id(&self) -> &DatasetId {
        &self.id
    }
    fn find<'s>(set: &'s PolicySet, id: &DatasetId) -> Option<(&'s Self, &'s str)> {
        set.datasets.get(id).map(|d| (&d.spec, d.file.as_str()))
    }
    fn summaries(set: &PolicySet) -> Vec<Value> {
        set.datasets
            .values()
            .map(|d| json!({"id": d.spec.id, "title": d.spec.title, "owner": d.spec.owner, "class": d.spec.class, "etag": dataset_etag(&d.spec), "fields": d.spec.fields.len()}))
            .collect()
    }
    fn etag(&self) -> String {
        dataset_etag(self)
    }
    fn toml(&self) -> String {
        dataset_toml(self)
    }
    fn renumber(&mut self, _current: Option<&Self>) {}
    fn same_as(&self, current: &Self) -> bool {
        dataset_toml(self) == dataset_toml(current)
    }
    fn put(self) -> Change {
        Change::PutDataset(Box::new(self))
    }
    fn delete(id: DatasetId) -> Change {
        Change::DeleteDataset(id)
    }
}

/// Every entry of the kind, with its ETag.
pub(super) async fn list<E: Entry>(
    gw: Arc<Gateway>,
    ctx: RequestContext,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, E::OPERATIONS.list);
    let result = admin(&gw, &headers, &mut event).map(|_| {
        let policy = gw.policy.snapshot();
        let mut body = Map::new();
        body.insert("policy_version".into(), json!(policy.version()));
        body.insert(E::PLURAL.into(), Value::Array(E::summaries(&policy.set)));
        Answer::ok(body)
    });
    finish(&gw, &ctx, event, result).await
}

/// One entry as its file holds it, its ETag in `ETag`.
pub(super) async fn get<E: Entry>(
    gw: Arc<Gateway>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, E::OPERATIONS.get);
    let result = (|| {
        admin(&gw, &headers, &mut event)?;
        let id = E::parse_id(&path_id(path)?)?;
        event.detail = Some(format!("{}={id}", E::NAME));
        let policy = gw.policy.snapshot();
        let (entry, file) =
            E::find(&policy.set, &id).ok_or_else(|| not_found(E::NAME, &id.to_string()))?;
        if wants_toml(&headers) {
            return Ok(Answer::Raw {
                content_type: "application/toml",
                filename: None,
                body: axum::body::Body::from(entry.toml()),
            });
        }
        let etag = entry.etag();
        let mut body = Map::new();
        body.insert(E::NAME.into(), json!(entry));
        body.insert("etag".into(), json!(etag));
        if E::NAMES_FILE {
            body.insert("file".into(), json!(file));
        }
        Ok(Answer::Json {
            proof: None,
            status: StatusCode::OK,
            body,
            etag: Some(etag),
        })
    })();
    finish(&gw, &ctx, event, result).await
}

/// Creates or replaces an entry; replacing needs `If-Match`.
pub(super) async fn put<E: Entry>(
    gw: Arc<Gateway>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, E::OPERATIONS.put);
    // Authenticated first: only an administrator can make another wait on the lock.
    let who = match admin(&gw, &headers, &mut event) {
        Ok(who) => who,
        Err(e) => return respond_change(&gw, &ctx, event, Err(e)).await,
    };
    let _guard = lock_policy(&gw).await;
    let result = (|| {
        let id = E::parse_id(&path_id(path)?)?;
        let (mut entry, reason): (E, _) = entry_body(&headers, body)?;
        if *entry.id() != id {
            return Err(Problem::IdMismatch {
                kind: E::KIND,
                body: entry.id().to_string(),
                path: id.to_string(),
            }
            .into());
        }
        let policy = gw.policy.snapshot();
        let current = E::find(&policy.set, &id).map(|(e, _)| e);
        check_precondition(&headers, current.map(E::etag).as_deref())?;
        if current.is_some_and(|c| entry.same_as(c)) {
            return Err(Problem::NoChange {
                kind: E::KIND,
                id: id.to_string(),
            }
            .into());
        }
        entry.renumber(current);
        let created = current.is_none();
        let etag = entry.etag();
        let value = json!(entry);
        let (body, apply) = prepare_change(&gw, &who, &mut event, entry.put(), "put")?;
        let apply = apply.with_reason(&mut event, reason);
        Ok((stored(body, E::NAME, value, etag, created), apply))
    })();
    respond_change(&gw, &ctx, event, result).await
}

/// Deletes an entry; needs `If-Match`.
pub(super) async fn delete<E: Entry>(
    gw: Arc<Gateway>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    params: Result<Query<ReasonParams>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, E::OPERATIONS.delete);
    // Authenticated first: only an administrator can make another wait on the lock.
    let who = match admin(&gw, &headers, &mut event) {
        Ok(who) => who,
        Err(e) => return respond_change(&gw, &ctx, event, Err(e)).await,
    };
    let _guard = lock_policy(&gw).await;
    let result = (|| {
        let id = E::parse_id(&path_id(path)?)?;
        let policy = gw.policy.snapshot();
        let (current, _) =
            E::find(&policy.set, &id).ok_or_else(|| not_found(E::NAME, &id.to_string()))?;
        check_precondition(&headers, Some(&current.etag()))?;
        let Query(ReasonParams { reason }) = params.map_err(|e| crate::api::bad_query(&e))?;
        let reason = super::reason(reason)?;
        let (body, apply) = prepare_change(&gw, &who, &mut event, E::delete(id), "delete")?;
        Ok((Answer::ok(body), apply.with_reason(&mut event, reason)))
    })();
    respond_change(&gw, &ctx, event, result).await
}

/// The optional reason of a change named in the query (`?reason=`), where
/// the request has no body (a delete, a revert).
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReasonParams {
    /// Why (optional; up to 500 characters; in the audit log and the history).
    pub(crate) reason: Option<String>,
}

/// A grant or dataset as a body holds it (JSON, or TOML), and the change's
/// `reason` beside its members (optional; up to 500 characters).
fn entry_body<E: Entry>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(E, Option<String>), ApiError> {
    let toml_body = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().unwrap_or("").trim() == "application/toml");
    let not_text = || {
        ApiError::from(Problem::InvalidBody(crate::problem::BodyFault::Json(
            "reason: expected a string".into(),
        )))
    };
    if toml_body {
        let mut table: toml::Table = parse_body(headers, body, true)?;
        // A grant as its file holds it, and as a read with `Accept:
        // application/toml` answers (`[[grant]]`, one of them), is taken
        // as the grant itself: what was read can be sent back.
        if E::NAME == "grant" && table.len() <= 2 {
            if let Some(toml::Value::Array(list)) = table.get("grant") {
                if let [toml::Value::Table(one)] = list.as_slice() {
                    let one = one.clone();
                    let reason = table.remove("reason");
                    table = one;
                    if let Some(r) = reason {
                        table.insert("reason".into(), r);
                    }
                }
            }
        }
        let reason = match table.remove("reason") {
            None => None,
            Some(toml::Value::String(r)) => Some(r),
            Some(_) => return Err(not_text()),
        };
        let entry = table.try_into().map_err(|e: toml::de::Error| {
            ApiError::from(Problem::InvalidBody(crate::problem::BodyFault::Toml(
                e.to_string().trim_end().to_owned(),
            )))
        })?;
        Ok((entry, super::reason(reason)?))
    } else {
        // A body that is neither is refused naming both forms.
        let mut value: Value = parse_body(headers, body, true)?;
        let reason = match value.as_object_mut().and_then(|o| o.remove("reason")) {
            None | Some(Value::Null) => None,
            Some(Value::String(r)) => Some(r),
            Some(_) => return Err(not_text()),
        };
        let entry = serde_json::from_value(value).map_err(|e| {
            ApiError::from(Problem::InvalidBody(crate::problem::BodyFault::Json(
                e.to_string(),
            )))
        })?;
        Ok((entry, super::reason(reason)?))
    }
}
