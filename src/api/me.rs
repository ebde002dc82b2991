//! A resident's own record (`/v1/me/…`), opened by a resident's token
//! (`[[issuer]] kind = "resident"`): every use of the resident's data, in
//! plain words, and the objections (异议) the resident lodged against them
//! (PIPL Art. 44–50). Each call is audited under the resident's pseudonym
//! and limited per resident (`[residents] rate`). The department's clerk
//! is named only where `[residents] show_clerk` says so.

use std::sync::Arc;

use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::admin::parse_body;
use super::audit::{caught_up, field_title, resident_disclosures};
use super::openapi as doc;
use super::{Answer, RequestContext, finish, finish_then};
use crate::audit::EventKind;
use crate::audit::query as q;
use crate::domain::hex;
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::objections::{Lodged, Objection, State as ObjState};
use crate::pipeline::resident;
use crate::policy::CompiledPolicy;
use crate::problem::{ObjectionFault, Problem};

pub(crate) fn router() -> OpenApiRouter<Arc<Gateway>> {
    OpenApiRouter::new()
        .routes(routes!(my_disclosures))
        .routes(routes!(lodge_objection, my_objections))
}

/// The most objections one resident may have open at once.
pub const MAX_OPEN: usize = 20;

/// An objection as the resident reads it (the officer who answered is not
/// named).
pub(crate) fn objection_for_resident(o: &Objection, gw: &Gateway) -> Value {
    let today = gw.today().to_string();
    json!({
        "id": o.id,
        "state": o.state.as_str(),
        "filed_at": q::format_time(o.filed_ms, gw.utc_offset),
        "due": o.due,
        "overdue": o.state == ObjState::Open && today > o.due,
        "text": o.text,
        "disclosure": o.disclosure,
        "reply": o.reply.as_ref().map(|r| json!({
            "text": r.text,
            "at": q::format_time(r.at_ms, gw.utc_offset),
        })),
    })
}

/// Body of an objection.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ObjectionBody {
    /// The node of the use objected to (default: this node).
    node: Option<String>,
    seq: u64,
    text: String,
}

/// Lodge an objection (异议) against one use of my data, in my own words
/// (1 to 500 characters). The privacy officers answer it within
/// `[residents] objection_answer_days` working days (`due`).
#[utoipa::path(
    post,
    path = "/v1/me/objections",
    tag = "residents",
    operation_id = "lodge_objection",
    request_body = doc::ObjectionRequest,
    responses(
        (status = 200, description = "Lodged", body = doc::MyObjection),
        (status = 404, description = "No such use in my record", body = doc::Problem, content_type = "application/problem+json"),
        (status = 409, description = "One about this use is open, or too many are", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
async fn lodge_objection(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut event = ctx.event(EventKind::AuditReview, "me.objection");
    let prepared = async {
        let me = resident::admit(&gw, &headers, &mut event)?;
        let ObjectionBody { node, seq, text } = parse_body(&headers, body, false)?;
        let text = crate::api::admin::required_reason(&text)?;
        let node = node.unwrap_or_else(|| gw.config.node_id.clone());
        caught_up(&gw).await?;
        let list = resident_disclosures(&gw, me.pseudonym).await?;
        let Some(use_) = list.iter().find(|d| d.node == node && d.seq == seq) else {
            return Err(Problem::DisclosureNotFound { node, seq }.into());
        };
        let resident = hex(&me.pseudonym);
        let mine = gw
            .objections
            .list(Some(&resident))
            .await
            .map_err(|e| stored(&e))?;
        let open: Vec<&Objection> = mine.iter().filter(|o| o.state == ObjState::Open).collect();
        if let Some(o) = open.iter().find(|o| o.node == node && o.seq == seq) {
            return Err(Problem::ObjectionConflict(ObjectionFault::AlreadyOpen {
                id: o.id.clone(),
            })
            .into());
        }
        if open.len() >= MAX_OPEN {
            return Err(
                Problem::ObjectionConflict(ObjectionFault::TooMany { max: MAX_OPEN }).into(),
            );
        }
        let today = gw.today();
        let days = gw.config.residents.objection_answer_days;
        let due = gw.flag_rules.load().calendar.add_working_days(today, days);
        let policy = gw.policy.snapshot();
        let o = Objection {
            id: crate::kept::new_id("", today),
            resident,
            node,
            seq,
            disclosure: plain(use_, &policy, gw.config.residents.show_clerk),
            text,
            filed_ms: ctx.time_ms,
            due: due.to_string(),
            state: ObjState::Open,
            reply: None,
        };
        event.detail = Some(
            json!({"objection": o.id, "node": o.node, "seq": o.seq, "due": o.due}).to_string(),
        );
        Ok(o)
    }
    .await;
    match prepared {
        Ok(o) => {
            let body = objection_for_resident(&o, &gw)
                .as_object()
                .cloned()
                .unwrap_or_default();
            // Kept only once the event that records it is durable.
            finish_then(&gw, &ctx, event, Ok(Answer::ok(body)), async |_| {
                match gw.objections.lodge(&o).await.map_err(|e| stored(&e))? {
                    Lodged::Taken => Ok(()),
                    // Another lodged at the same moment was kept.
                    Lodged::AlreadyOpen(id) => {
                        Err(Problem::ObjectionConflict(ObjectionFault::AlreadyOpen { id }).into())
                    }
                }
            })
            .await
        }
        Err(e) => finish(&gw, &ctx, event, Err(e)).await,
    }
}

/// An objection store that failed.
pub(crate) fn stored(e: &crate::objections::StoreError) -> ApiError {
    tracing::error!(error = %e, "objections could not be read or written");
    ApiError::from(Problem::ObjectionNotStored)
}

/// My objections and where each stands (`open`, `answered`, `closed`),
/// with the answer once there is one. Newest first.
#[utoipa::path(
    get,
    path = "/v1/me/objections",
    tag = "residents",
    operation_id = "my_objections",
    responses(
        (status = 200, description = "The resident's objections", body = doc::MyObjections),
    ),
)]
async fn my_objections(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::AuditReview, "me.objections");
    let result = async {
        let me = resident::admit(&gw, &headers, &mut event)?;
        let list = gw
            .objections
            .list(Some(&hex(&me.pseudonym)))
            .await
            .map_err(|e| stored(&e))?;
        let items: Vec<Value> = list
            .iter()
            .map(|o| objection_for_resident(o, &gw))
            .collect();
        let mut body = Map::new();
        body.insert("count".into(), json!(items.len()));
        body.insert("objections".into(), Value::Array(items));
        Ok::<_, ApiError>(Answer::ok(body))
    }
    .await;
    finish(&gw, &ctx, event, result).await
}

/// What a kind of use told the department, in words.
pub(crate) fn use_words(operation: &str) -> (&'static str, &'static str) {
    match operation {
        "verify" => (
            "核验：只告知是否符合条件，未提供数据本身",
            "a check: only whether a condition is met was told, not the data",
        ),
        "batch" => (
            "批量查询：提供了下列信息",
            "a batch query: the information below was provided",
        ),
        _ => (
            "查询：提供了下列信息",
            "a query: the information below was provided",
        ),
    }
}

/// One disclosure as the resident reads it.
pub(crate) fn plain(d: &q::Disclosure, policy: &CompiledPolicy, show_clerk: bool) -> Value {
    let dept = policy.set.departments.get(d.consumer.as_str());
    let dataset = policy.set.datasets.get(d.dataset.as_str());
    let grant = d
        .grant
        .as_deref()
        .and_then(|g| g.split('@').next())
        .and_then(|g| policy.set.grants.get(g));
    let (zh, en) = use_words(&d.operation);
    let mut v = json!({
        "node": d.node,
        "seq": d.seq,
        "time": d.time,
        "department": d.consumer,
        "department_name": dept.map(|x| x.name.clone()),
        "purpose": d.purpose,
        // The purpose's own title; else the grant's, which says what it is for.
        "purpose_title": policy.set.purposes.get(&d.purpose).cloned().or_else(|| grant.map(|g| g.spec.title.clone())),
        "basis": grant.map(|g| g.spec.basis.clone()),
        "case_ref": d.case_ref,
        "dataset": d.dataset,
        "dataset_title": dataset.map(|x| x.spec.title.clone()),
        "fields": d.fields.iter().map(|f| field_title(dataset, f)).collect::<Vec<_>>(),
        "operation": d.operation,
        "use_zh": zh,
        "use_en": en,
        "signed": d.proof.is_some(),
    });
    if show_clerk {
        v["clerk"] = json!(d.subject);
    }
    v
}

/// Every use of my data: which department, for what purpose and on what
/// legal basis, under which case, which information (by title), what kind
/// of use (a query, or a check that told only yes or no), and when. Newest
/// first.
#[utoipa::path(
    get,
    path = "/v1/me/disclosures",
    tag = "residents",
    operation_id = "my_disclosures",
    responses(
        (status = 200, description = "The resident's record of use", body = doc::MyDisclosures),
    ),
)]
async fn my_disclosures(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::AuditReview, "me.disclosures");
    let result = async {
        let me = resident::admit(&gw, &headers, &mut event)?;
        caught_up(&gw).await?;
        let list = resident_disclosures(&gw, me.pseudonym).await?;
        let policy = gw.policy.snapshot();
        let show_clerk = gw.config.residents.show_clerk;
        let items: Vec<Value> = list.iter().map(|d| plain(d, &policy, show_clerk)).collect();
        let mut body = Map::new();
        body.insert("resident".into(), json!(me.id.masked()));
        body.insert(
            "generated_at".into(),
            json!(q::format_time(gw.clock.unix_millis(), gw.utc_offset)),
        );
        body.insert("count".into(), json!(items.len()));
        body.insert("disclosures".into(), Value::Array(items));
        Ok::<_, ApiError>(Answer::ok(body))
    }
    .await;
    finish(&gw, &ctx, event, result).await
}
