//! Routes for privacy officers (个人信息保护负责人): search the audit log,
//! report every disclosure of one resident, verify the chain, export it with
//! its signed checkpoints, and read daily statistics with anomaly flags.
//!
//! Every route needs role `privacy_officer` in the operator department; every
//! use is itself an audit event that says what was searched.

use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use time::UtcOffset;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi as doc;
use super::{Answer, RequestContext, bad_path, bad_query, finish};
use crate::audit::export::{
    ExportFormat, checkpoint_record, csv_header, event_record, export_suites, header_line,
};
use crate::audit::query::{self as q, EventFilter, event_json};
use crate::audit::stats::StatsBuilder;
use crate::audit::{EventBody, EventKind, Outcome};
use crate::cluster::audit::Position;
use crate::domain::ResidentId;
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::pipeline::admit::staff;
use crate::problem::{ClusterRead, IdInput, PathFault, Problem, QueryFault};

/// The role every route here needs.
pub const PRIVACY_OFFICER: &str = "privacy_officer";
const MAX_LIMIT: usize = 1000;

pub(crate) fn router() -> OpenApiRouter<Arc<Gateway>> {
    OpenApiRouter::new()
        .routes(routes!(search))
        .routes(routes!(one_event))
        .routes(routes!(disclosures))
        .routes(routes!(verify))
        .routes(routes!(export))
        .routes(routes!(stats))
        .routes(routes!(checkpoint_key))
}

/// Authenticates a privacy officer of the operator department.
pub(crate) fn officer(
    gw: &Gateway,
    headers: &HeaderMap,
    event: &mut EventBody,
) -> Result<(), ApiError> {
    staff(gw, headers, event, PRIVACY_OFFICER).map(|_| ())
}

/// Waits until the store holds every event acknowledged so far (the
/// applier files them in sled behind the writer): an officer's read then
/// misses none. A store that stays behind is answered 503.
pub(crate) async fn caught_up(gw: &Gateway) -> Result<(), ApiError> {
    gw.audit.caught_up().await.map_err(|e| {
        tracing::error!(error = %e, "an officer's read found the audit store behind its write-ahead file");
        ApiError::audit_unavailable()
    })
}

/// Whether a report is asked for as CSV (`format=csv`) rather than JSON
/// (`format=json`, the default).
pub(crate) fn wants_csv(format: Option<&str>) -> Result<bool, ApiError> {
    match format {
        None | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        Some(_) => Err(expected("format", &["json", "csv"])),
    }
}

/// The window `[from, to]` of a report, in ms: `to` defaults to now, `from`
/// to `default_days` before it; `from` after `to` is refused.
pub(crate) fn window(
    gw: &Gateway,
    from: Option<&str>,
    to: Option<&str>,
    default_days: i64,
) -> Result<(i64, i64), ApiError> {
    let offset = gw.utc_offset;
    let to = to
        .map(|s| parse_time("to", s, offset, true))
        .transpose()?
        .unwrap_or_else(|| gw.clock.unix_millis());
    let from = from
        .map(|s| parse_time("from", s, offset, false))
        .transpose()?
        .unwrap_or(to - default_days * 86_400_000);
    if from > to {
        return Err(bad_param(QueryFault::FromAfterTo));
    }
    Ok((from, to))
}

pub(crate) fn bad_param(fault: QueryFault) -> ApiError {
    ApiError::from(Problem::InvalidQuery(fault))
}

pub(crate) fn expected(param: &'static str, values: &'static [&'static str]) -> ApiError {
    bad_param(QueryFault::Expected { param, values })
}

pub(crate) fn parse_time(
    param: &'static str,
    s: &str,
    offset: UtcOffset,
    end_of_day: bool,
) -> Result<i64, ApiError> {
    q::parse_time(s, offset, end_of_day).map_err(|reason| {
        bad_param(QueryFault::Time {
            param,
            reason: reason.to_owned(),
        })
    })
}

fn resident_pseudonym(gw: &Gateway, s: &str) -> Result<[u8; 16], ApiError> {
    let id = ResidentId::parse(s)
        .map_err(|e| ApiError::from(Problem::InvalidId(IdInput::Resident, e)))?;
    Ok(gw.pseudonyms.pseudonym(&id))
}

/// Filters of `GET /v1/audit/events`; all of them must hold.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct SearchParams {
    /// A resident ID (matched through its pseudonym; never stored in clear).
    resident: Option<String>,
    /// A resident's pseudonym, as events show it (32 hex digits): a search
    /// whose link names no ID. Not with `resident`.
    pseudonym: Option<String>,
    /// Kinds of event, comma-separated: `query` (departments' requests),
    /// `audit_review` (officers' and residents' reads), `policy_admin`
    /// (administration and the sharing workflow), `other`. Default: every kind.
    kind: Option<String>,
    /// Consumer department.
    consumer: Option<String>,
    /// The caller (`sub` of the token).
    subject: Option<String>,
    /// Dataset id.
    dataset: Option<String>,
    /// Purpose code.
    purpose: Option<String>,
    /// Case reference (办件编号), exactly as recorded (a 文号 such as
    /// `民低保〔2026〕123号` percent-encoded in the query, as any query value).
    case_ref: Option<String>,
    /// `allow`, `deny` or `error`.
    decision: Option<String>,
    /// From this time: RFC 3339, or a day `YYYY-MM-DD` in the gateway's calendar.
    from: Option<String>,
    /// Up to this time (a day includes its last millisecond).
    to: Option<String>,
    /// The node whose chain holds the event (cluster mode).
    node: Option<String>,
    /// `cluster` (default in cluster mode: every node, from PostgreSQL) or
    /// `node` (this node's own log only, as on a single node).
    scope: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Events per page, 1 to 1000 (default 100).
    limit: Option<usize>,
}

fn filter_from(gw: &Gateway, p: &SearchParams) -> Result<EventFilter, ApiError> {
    let decision = match p.decision.as_deref() {
        None => None,
        Some("allow") => Some(Outcome::Allow),
        Some("deny") => Some(Outcome::Deny),
        Some("error") => Some(Outcome::Error),
        Some(_) => return Err(expected("decision", &["allow", "deny", "error"])),
    };
    let offset = gw.utc_offset;
    let resident = match (p.resident.as_deref(), p.pseudonym.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(expected("pseudonym", &["absent when resident is given"]));
        }
        (Some(r), None) => Some(resident_pseudonym(gw, r)?),
        (None, Some(h)) => {
            let mut bytes = [0u8; 16];
            if !crate::domain::unhex(h, &mut bytes) {
                return Err(expected("pseudonym", &["32 hex digits, as events show it"]));
            }
            Some(bytes)
        }
        (None, None) => None,
    };
    let mut kinds = Vec::new();
    for k in p
        .kind
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .filter(|k| !k.is_empty())
    {
        let kind = EventKind::parse(k.trim())
            .ok_or_else(|| expected("kind", &["query", "audit_review", "policy_admin", "other"]))?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    Ok(EventFilter {
        resident,
        kinds,
        consumer: p.consumer.clone(),
        subject: p.subject.clone(),
        dataset: p.dataset.clone(),
        purpose: p.purpose.clone(),
        case_ref: p
            .case_ref
            .as_deref()
            .map(|c| {
                crate::domain::CaseRef::parse(c)
                    .map(|c| c.to_string())
                    .map_err(|e| ApiError::from(Problem::InvalidId(IdInput::CaseRef, e)))
            })
            .transpose()?,
        owner: None,
        decision,
        from_ms: p
            .from
            .as_deref()
            .map(|s| parse_time("from", s, offset, false))
            .transpose()?,
        to_ms: p
            .to
            .as_deref()
            .map(|s| parse_time("to", s, offset, true))
            .transpose()?,
        node: p.node.clone(),
    })
}

/// Whether a read covers the cluster (from PostgreSQL) or this node's log.
pub(crate) fn cluster_scope<'g>(
    gw: &'g Gateway,
    scope: Option<&str>,
) -> Result<Option<&'g crate::cluster::Cluster>, ApiError> {
    match scope {
        None | Some("cluster") => Ok(gw.cluster.as_deref()),
        Some("node") => Ok(None),
        Some(_) => Err(expected("scope", &["cluster", "node"])),
    }
}

/// PostgreSQL cannot serve a cluster-wide read now.
pub(crate) fn central_unavailable(e: &crate::cluster::ClusterError, what: ClusterRead) -> ApiError {
    tracing::error!(error = %e, "the central audit copy cannot be read");
    ApiError::from(Problem::CentralAuditUnavailable(what))
}

/// An opaque cursor: the sequence number the next page starts below.
fn encode_cursor(before: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{before}"))
}

/// An opaque cursor of a cluster-wide search: the last event of the page.
fn encode_position(p: &Position) -> String {
    URL_SAFE_NO_PAD.encode(format!("c1:{}:{}:{}", p.time_ms, p.seq, p.node))
}

fn decode_position(s: &str) -> Result<Position, ApiError> {
    let text = URL_SAFE_NO_PAD
        .decode(s)
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    text.as_deref()
        .and_then(|t| t.strip_prefix("c1:"))
        .and_then(|t| {
            let mut parts = t.splitn(3, ':');
            Some(Position {
                time_ms: parts.next()?.parse().ok()?,
                seq: parts.next()?.parse().ok()?,
                node: parts.next()?.to_owned(),
            })
        })
        .ok_or_else(|| bad_param(QueryFault::Cursor { cluster: true }))
}

fn decode_cursor(s: &str) -> Result<u64, ApiError> {
    URL_SAFE_NO_PAD
        .decode(s)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|t| t.strip_prefix("v1:").and_then(|n| n.parse().ok()))
        .ok_or_else(|| bad_param(QueryFault::Cursor { cluster: false }))
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::audit::AuditError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "audit store read failed");
            Err(Problem::AuditReadFailed { logged: true }.into())
        }
        Err(_) => Err(Problem::AuditReadFailed { logged: false }.into()),
    }
}

/// Search the audit log, newest first, with opaque cursors.
///
/// The search itself is an audit event recording its filters (a resident as
/// its pseudonym).
#[utoipa::path(
    get,
    path = "/v1/audit/events",
    tag = "audit",
    operation_id = "audit_search",
    params(SearchParams),
    responses((status = 200, description = "One page of events", body = doc::SearchAnswer)),
)]
async fn search(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    params: Result<Query<SearchParams>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::AuditReview, "audit.search");
    let result = run_search(&gw, &mut event, params, &headers).await;
    finish(&gw, &ctx, event, result).await
}

async fn run_search(
    gw: &Gateway,
    event: &mut EventBody,
    params: Result<Query<SearchParams>, QueryRejection>,
    headers: &HeaderMap,
) -> Result<Answer, ApiError> {
    // A data steward sees the use of its own department's datasets only.
    let steward = crate::pipeline::admit::reviewer(gw, headers, event)?;
    caught_up(gw).await?;
    let Query(p) = params.map_err(|e| bad_query(&e))?;
    let mut filter = filter_from(gw, &p)?;
    filter.owner = steward.map(|d| d.to_string());
    event.resident = filter.resident;
    event.detail = Some(filter.describe());
    let limit = p.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(bad_param(QueryFault::Limit));
    }
    let (events, next_cursor) = match cluster_scope(gw, p.scope.as_deref())? {
        Some(cluster) => {
            let after = p.cursor.as_deref().map(decode_position).transpose()?;
            let page = cluster
                .search(&gw.audit_store, &filter, after, limit)
                .await
                .map_err(|e| central_unavailable(&e, ClusterRead::Search))?;
            (page.events, page.next.as_ref().map(encode_position))
        }
        None if filter
            .node
            .as_ref()
            .is_some_and(|n| *n != gw.config.node_id) =>
        {
            (Vec::new(), None)
        }
        None => {
            let before = p.cursor.as_deref().map(decode_cursor).transpose()?;
            let store = gw.audit_store.clone();
            let f = filter.clone();
            let page = blocking(move || q::search(&store, &f, before, limit)).await?;
            (page.events, page.next_before.map(encode_cursor))
        }
    };
    let offset = gw.utc_offset;
    let mut body = Map::new();
    body.insert(
        "events".into(),
        Value::Array(
            events
                .iter()
                .map(|(e, h)| event_json(e, h, offset))
                .collect(),
        ),
    );
    body.insert("next_cursor".into(), json!(next_cursor));
    // The resident searched for, as a pseudonym: what a link may carry.
    if let Some(r) = filter.resident {
        body.insert("pseudonym".into(), json!(crate::domain::hex(&r)));
    }
    Ok(Answer::ok(body))
}

/// One audit event, with its hash and the previous hash.
#[utoipa::path(
    get,
    path = "/v1/audit/events/{seq}",
    tag = "audit",
    operation_id = "audit_event",
    params(("seq" = u64, Path, description = "Sequence number"), EventParams),
    responses(
        (status = 200, description = "The event", body = doc::AuditEvent),
        (status = 404, description = "No such event", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
async fn one_event(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    params: Result<Query<EventParams>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::AuditReview, "audit.event");
    let result = async {
        officer(&gw, &headers, &mut event)?;
        caught_up(&gw).await?;
        let Path(seq) = path.map_err(|e| bad_path(&e))?;
        let seq: u64 = seq
            .parse()
            .map_err(|_| ApiError::from(Problem::InvalidPath(PathFault::Sequence)))?;
        let Query(p) = params.map_err(|e| bad_query(&e))?;
        let node = p.node.unwrap_or_else(|| gw.config.node_id.clone());
        event.detail = Some(format!("node={node}&seq={seq}"));
        let found = if node == gw.config.node_id {
            let store = gw.audit_store.clone();
            blocking(move || store.get_with_hash(seq)).await?
        } else if let Some(cluster) = &gw.cluster {
            cluster
                .store
                .event(&node, seq)
                .await
                .map_err(|e| central_unavailable(&e, ClusterRead::OtherNodesEvent))?
        } else {
            None
        };
        let (e, h) = found.ok_or_else(|| {
            ApiError::from(Problem::EventNotFound {
                node: node.clone(),
                seq,
            })
        })?;
        let Value::Object(body) = event_json(&e, &h, gw.utc_offset) else {
            unreachable!("event_json builds an object")
        };
        Ok(Answer::ok(body))
    }
    .await;
    finish(&gw, &ctx, event, result).await
}

/// Query of one event.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventParams {
    /// The node whose chain holds it (default: this node; another node's
    /// event is read from PostgreSQL in cluster mode).
    node: Option<String>,
}

/// Query of the disclosure report.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReportParams {
    /// `json` (default) or `csv` (bilingual headings, with a BOM for spreadsheet programs).
    format: Option<String>,
}

/// Every time a resident's data left the gateway: who, when, why, which fields.
///
/// Printable, and downloadable as CSV to hand to the resident.
#[utoipa::path(
    get,
    path = "/v1/audit/residents/{resident_id}/disclosures",
    tag = "audit",
    operation_id = "audit_disclosures",
    params(
        ("resident_id" = String, Path, description = "The resident's ID number", pattern = "^[0-9]{17}[0-9X]$"),
        ReportParams,
    ),
    responses(
        (status = 200, description = "The report", content(
            (doc::DisclosureReport = "application/json"),
            (String = "text/csv"),
        )),
    ),
)]
async fn disclosures(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    params: Result<Query<ReportParams>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::AuditReview, "audit.disclosures");
    let result = async {
        officer(&gw, &headers, &mut event)?;
        caught_up(&gw).await?;
        let Path(raw) = path.map_err(|e| bad_path(&e))?;
        let id = ResidentId::parse(&raw).map_err(|e| ApiError::from(Problem::InvalidId(IdInput::Resident, e)))?;
        let pseudonym = gw.pseudonyms.pseudonym(&id);
        event.resident = Some(pseudonym);
        let Query(p) = params.map_err(|e| bad_query(&e))?;
        let csv = wants_csv(p.format.as_deref())?;
        event.detail = Some(format!("format={}", if csv { "csv" } else { "json" }));
        let list = resident_disclosures(&gw, pseudonym).await?;
        let policy = gw.policy.snapshot();
        let dept_name = |d: &str| policy.set.departments.get(d).map(|x| x.name.clone()).unwrap_or_default();
        let dataset = |d: &str| policy.set.datasets.get(d);
        if csv {
            let mut w = csv::Writer::from_writer(Vec::from("\u{feff}".as_bytes()));
            let _ = w.write_record(["时间 Time", "部门 Department", "部门名称 Department name", "经办人 Person", "用途 Purpose", "办件编号 Case reference", "数据集 Dataset", "数据集名称 Dataset title", "字段 Fields", "授权 Grant", "审计序号 Audit seq", "签名凭证 Signed proof", "节点 Node", "使用方式 Kind of use"]);
            for d in &list {
                let fields = d.fields.iter().map(|f| field_title(dataset(&d.dataset), f)).collect::<Vec<_>>().join("；");
                let _ = w.write_record([
                    d.time.as_str(), &d.consumer, &dept_name(&d.consumer), &d.subject, policy.set.purposes.get(&d.purpose).unwrap_or(&d.purpose),
                    d.case_ref.as_deref().unwrap_or(""), &d.dataset, &dataset(&d.dataset).map(|x| x.spec.title.clone()).unwrap_or_default(),
                    &fields, d.grant.as_deref().unwrap_or(""), &d.seq.to_string(),
                    d.proof.as_deref().unwrap_or(""), &d.node, super::me::use_words(&d.operation).0,
                ].map(|c| crate::audit::export::spreadsheet_safe(c).into_owned()));
            }
            let bytes = w.into_inner().unwrap_or_default();
            return Ok(Answer::Raw {
                content_type: "text/csv; charset=utf-8",
                filename: Some(format!("disclosures-{}.csv", &id.masked().replace('*', "x"))),
                body: axum::body::Body::from(bytes),
            });
        }
        let items: Vec<Value> = list
            .iter()
            .map(|d| {
                json!({
                    "node": d.node, "seq": d.seq, "time": d.time, "consumer": d.consumer, "consumer_name": dept_name(&d.consumer),
                    "subject": d.subject, "purpose": d.purpose, "purpose_title": policy.set.purposes.get(&d.purpose), "case_ref": d.case_ref, "operation": d.operation,
                    "dataset": d.dataset, "dataset_title": dataset(&d.dataset).map(|x| x.spec.title.clone()),
                    "fields": d.fields.iter().map(|f| json!({"name": f, "title": field_title(dataset(&d.dataset), f)})).collect::<Vec<_>>(),
                    "grant": d.grant,
                    "use_zh": super::me::use_words(&d.operation).0, "use_en": super::me::use_words(&d.operation).1,
                    "signed": d.proof.is_some(), "proof": d.proof,
                })
            })
            .collect();
        let mut body = Map::new();
        body.insert("resident".into(), json!(id.masked()));
        let issuer = gw.config.residents.report_issuer.clone().unwrap_or_else(|| dept_name(&gw.config.operator_department));
        body.insert("issued_by".into(), json!(issuer));
        body.insert("generated_at".into(), json!(q::format_time(gw.clock.unix_millis(), gw.utc_offset)));
        body.insert("count".into(), json!(items.len()));
        body.insert("disclosures".into(), Value::Array(items));
        Ok(Answer::ok(body))
    }
    .await;
    finish(&gw, &ctx, event, result).await
}

/// Every disclosure of the resident whose pseudonym is `pseudonym`, newest
/// first: this node's, and in cluster mode every node's.
pub(crate) async fn resident_disclosures(
    gw: &Gateway,
    pseudonym: [u8; 16],
) -> Result<Vec<q::Disclosure>, ApiError> {
    let store = gw.audit_store.clone();
    let offset = gw.utc_offset;
    let list = blocking(move || q::disclosures(&store, &pseudonym, offset)).await?;
    match &gw.cluster {
        Some(cluster) => cluster_disclosures(gw, cluster, &pseudonym, list).await,
        None => Ok(list),
    }
}

/// In cluster mode, a resident's disclosures through every node: the central
/// copy in PostgreSQL, and this node's own events not shipped there yet.
/// Without PostgreSQL the report would be incomplete, so it is refused.
async fn cluster_disclosures(
    gw: &Gateway,
    cluster: &crate::cluster::Cluster,
    pseudonym: &[u8; 16],
    local: Vec<q::Disclosure>,
) -> Result<Vec<q::Disclosure>, ApiError> {
    let central = cluster
        .store
        .resident_events(pseudonym)
        .await
        .map_err(|e| central_unavailable(&e, ClusterRead::DisclosureReport))?;
    Ok(merged(gw, &central, local))
}

/// The disclosures of the central copy's `central` events and this node's
/// `local` ones not shipped yet, each once, newest first.
pub(crate) fn merged(
    gw: &Gateway,
    central: &[crate::audit::event::Event],
    local: Vec<q::Disclosure>,
) -> Vec<q::Disclosure> {
    let mut seen = std::collections::BTreeSet::new();
    let mut list: Vec<q::Disclosure> = central
        .iter()
        .filter_map(|e| q::Disclosure::of(e, gw.utc_offset))
        .collect();
    for d in &list {
        seen.insert((d.node.clone(), d.seq));
    }
    list.extend(
        local
            .into_iter()
            .filter(|d| !seen.contains(&(d.node.clone(), d.seq))),
    );
    list.sort_by(|a, b| {
        b.time_ms
            .cmp(&a.time_ms)
            .then(a.node.cmp(&b.node))
            .then(b.seq.cmp(&a.seq))
    });
    list
}

pub(crate) fn field_title(dataset: Option<&crate::policy::load::Dataset>, field: &str) -> String {
    dataset
        .and_then(|d| d.fields.get(field))
        .map(|f| {
            if f.title.is_empty() {
                field.to_owned()
            } else {
                format!("{} {field}", f.title)
            }
        })
        .unwrap_or_else(|| field.to_owned())
}

/// Recompute the hash chain and check every signed checkpoint.
#[utoipa::path(
    get,
    path = "/v1/audit/verify",
    tag = "audit",
    operation_id = "audit_verify",
    responses((status = 200, description = "The verdict; on failure, the first broken link", body = doc::VerifyReport)),
)]
async fn verify(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::AuditReview, "audit.verify");
    let result = async {
        officer(&gw, &headers, &mut event)?;
        caught_up(&gw).await?;
        // Never in the middle of a prune (the chain's start moves).
        let _unpruned = gw.audit_prune_lock.read().await;
        let store = gw.audit_store.clone();
        let keys = gw.checkpoint_signer.keyring();
        let report = blocking(move || store.verify(Some(&keys))).await?;
        let mut body = Map::new();
        body.insert(
            "verdict".into(),
            json!(if report.ok() { "intact" } else { "broken" }),
        );
        if let Value::Object(r) = serde_json::to_value(&report).unwrap_or_default() {
            body.extend(r);
        }
        Ok(Answer::ok(body))
    }
    .await;
    finish(&gw, &ctx, event, result).await
}

/// Query of the export.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ExportParams {
    /// From this time: RFC 3339, or a day `YYYY-MM-DD`.
    from: Option<String>,
    /// Up to this time.
    to: Option<String>,
    /// `ndjson` (default) or `csv`.
    format: Option<String>,
    /// Only this node's chain (cluster mode; default: every node's).
    node: Option<String>,
    /// `cluster` (default in cluster mode: the central copy in PostgreSQL)
    /// or `node` (this node's own log).
    scope: Option<String>,
    /// `false`: a copy to read (the console's download), which retention
    /// does not count as the range's archive. Default `true`: once
    /// delivered, the range counts as exported.
    archive: Option<bool>,
}

/// Export events with the signed checkpoints that cover them, streamed.
///
/// A checkpoint is signed first, so the export verifies offline with
/// `tongban audit verify --export FILE --pubkey FILE`.
#[utoipa::path(
    get,
    path = "/v1/audit/export",
    tag = "audit",
    operation_id = "audit_export",
    params(ExportParams),
    responses(
        (status = 200, description = "A header line, the events and checkpoints", content(
            (String = "application/x-ndjson"),
            (String = "text/csv"),
        )),
    ),
)]
async fn export(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    params: Result<Query<ExportParams>, QueryRejection>,
    version: axum::http::Version,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::AuditReview, "audit.export");
    // Over HTTP/2 a flush of the connection says nothing of one stream's
    // bytes (they wait on its flow-control window): such an export is
    // served, but retention does not count it; nor a copy asked for as one.
    let copy = params
        .as_ref()
        .is_ok_and(|Query(p)| p.archive == Some(false));
    let delivered = if copy || version >= axum::http::Version::HTTP_2 {
        Delivered::Never
    } else {
        Delivered::After(ctx.conn.writes.clone())
    };
    let result = run_export(&gw, &mut event, params, &headers, delivered).await;
    finish(&gw, &ctx, event, result).await
}

/// The connection an export goes out on: the export counts as delivered
/// (retention may then prune what it holds) only once a flush after its
/// last byte succeeded. A client that drops mid-stream, or before that
/// flush, leaves the mark where it was.
#[derive(Debug, Clone)]
enum Delivered {
    /// After a flush past the last byte (None: not on a network connection,
    /// a router called in-process).
    After(Option<Arc<crate::api::WriteProgress>>),
    /// Never counted (an export over HTTP/2).
    Never,
}

impl Delivered {
    /// Runs `mark` once what was handed to the connection so far is delivered.
    fn then(&self, mark: impl Future<Output = ()> + Send + 'static) {
        let Self::After(writes) = self else {
            return;
        };
        let writes = writes.clone();
        let since = writes.as_ref().map(|w| w.flushes());
        tokio::spawn(async move {
            let delivered = match (writes, since) {
                (Some(w), Some(n)) => w.flushed_since(n, std::time::Duration::from_secs(60)).await,
                // Not on a network connection (a router called in-process).
                _ => true,
            };
            if delivered {
                mark.await;
            }
        });
    }
}

async fn run_export(
    gw: &Arc<Gateway>,
    event: &mut EventBody,
    params: Result<Query<ExportParams>, QueryRejection>,
    headers: &HeaderMap,
    delivered: Delivered,
) -> Result<Answer, ApiError> {
    officer(gw, headers, event)?;
    caught_up(gw).await?;
    let Query(p) = params.map_err(|e| bad_query(&e))?;
    let format = match p.format.as_deref() {
        None | Some("ndjson") => ExportFormat::Ndjson,
        Some("csv") => ExportFormat::Csv,
        Some(_) => return Err(expected("format", &["ndjson", "csv"])),
    };
    let offset = gw.utc_offset;
    let from = p
        .from
        .as_deref()
        .map(|s| parse_time("from", s, offset, false))
        .transpose()?;
    let to =
        p.to.as_deref()
            .map(|s| parse_time("to", s, offset, true))
            .transpose()?;
    let scope = cluster_scope(gw, p.scope.as_deref())?;
    event.detail = Some(format!(
        "from={}&to={}&format={}&scope={}{}",
        p.from.as_deref().unwrap_or(""),
        p.to.as_deref().unwrap_or(""),
        if format == ExportFormat::Csv {
            "csv"
        } else {
            "ndjson"
        },
        if scope.is_some() { "cluster" } else { "node" },
        p.node
            .as_deref()
            .map(|n| format!("&node={n}"))
            .unwrap_or_default(),
    ));
    if let Some(cluster) = scope {
        let sections = cluster
            .store
            .export_sections(p.node.as_deref(), from, to)
            .await
            .map_err(|e| central_unavailable(&e, ClusterRead::Export))?;
        return Ok(central_export(
            gw,
            sections,
            format,
            p.node.as_deref(),
            delivered,
        ));
    }
    if let Some(n) = p.node.as_deref()
        && n != gw.config.node_id
    {
        return Err(bad_param(QueryFault::OtherNode {
            this_node: gw.config.node_id.clone(),
        }));
    }
    local_export(gw, from, to, format, delivered).await
}

/// An export of this node's log: every event in the window (extended to
/// the checkpoint that covers its last one), after the header line and the
/// checkpoints, streamed from the store a thousand events at a time.
async fn local_export(
    gw: &Arc<Gateway>,
    from: Option<i64>,
    to: Option<i64>,
    format: ExportFormat,
    delivered: Delivered,
) -> Result<Answer, ApiError> {
    let offset = gw.utc_offset;
    // Every exported event must be covered by a signed checkpoint.
    let covered = gw
        .audit
        .checkpoint_now()
        .await
        .map_err(|_| ApiError::audit_unavailable())?;
    // That checkpoint, and every event it covers, filed.
    caught_up(gw).await?;
    let store = gw.audit_store.clone();
    let range = blocking(move || q::seq_range(&store, from, to, covered)).await?;
    let store = gw.audit_store.clone();
    let (lo, hi, prelude) = match range {
        None => (1, 0, String::new()),
        Some((lo, hi)) => export_prelude(gw, &store, (lo, hi), format).await?,
    };
    let prelude = if prelude.is_empty() && format == ExportFormat::Csv {
        csv_header()
    } else {
        prelude
    };
    let chunks = event_chunks(store, (lo, hi), offset, format, delivered);
    let head =
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(prelude)) });
    let body = axum::body::Body::from_stream(futures_util::StreamExt::chain(head, chunks));
    let (content_type, ext) = match format {
        ExportFormat::Ndjson => ("application/x-ndjson", "ndjson"),
        ExportFormat::Csv => ("text/csv; charset=utf-8", "csv"),
    };
    Ok(Answer::Raw {
        content_type,
        filename: Some(format!(
            "tongban-audit-{}-{lo}-{hi}.{ext}",
            gw.config.node_id
        )),
        body,
    })
}

/// The events `lo..=hi`, streamed in order a thousand at a time; once the
/// last is handed over and delivered, the range is marked exported.
fn event_chunks(
    store: crate::audit::AuditStore,
    (lo, hi): (u64, u64),
    offset: time::UtcOffset,
    format: ExportFormat,
    delivered: Delivered,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::unfold(Some(lo), move |next| {
        let store = store.clone();
        let delivered = delivered.clone();
        async move {
            let next = next?;
            if next > hi {
                if hi >= lo {
                    delivered.then(async move {
                        let _ = store.mark_exported(lo, hi);
                    });
                }
                return None;
            }
            let end = (next + 1023).min(hi);
            let text = tokio::task::spawn_blocking(move || {
                let mut out = String::new();
                for item in store
                    .events_desc(next, end)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                {
                    match item {
                        Ok((_, e, h)) => out.push_str(&event_record(&e, &h, offset, format)),
                        Err(e) => return Err(std::io::Error::other(e.to_string())),
                    }
                }
                Ok(out)
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
            Some((text.map(Bytes::from), Some(end + 1)))
        }
    })
}

/// What precedes an export's events: the header line (NDJSON) or row
/// (CSV), then the checkpoints in the range. The range is extended to the
/// first checkpoint at or after `hi`, so that its tail is covered.
async fn export_prelude(
    gw: &Arc<Gateway>,
    store: &crate::audit::AuditStore,
    (lo, hi): (u64, u64),
    format: ExportFormat,
) -> Result<(u64, u64, String), ApiError> {
    let offset = gw.utc_offset;
    let s = store.clone();
    let (checkpoints, first) = blocking(move || {
        let cps = s.checkpoints()?;
        let first = s.get(lo)?;
        Ok((cps, first))
    })
    .await?;
    let prev = first.as_ref().map(|e| e.prev_hash).unwrap_or([0; 32]);
    // Extend to the first checkpoint at or after `hi`, so the tail is covered.
    let hi = checkpoints
        .iter()
        .map(|c| c.checkpoint.seq)
        .find(|s| *s >= hi)
        .unwrap_or(hi);
    let mut prelude = String::new();
    if format == ExportFormat::Ndjson {
        let suites = export_suites(
            first.as_ref(),
            checkpoints
                .iter()
                .filter(|c| c.checkpoint.seq >= lo && c.checkpoint.seq <= hi),
        );
        prelude.push_str(&header_line(
            &gw.config.node_id,
            (lo - 1, prev),
            offset,
            &gw.checkpoint_signer.key_id(),
            &suites,
        ));
    } else {
        prelude.push_str(&csv_header());
    }
    for cp in checkpoints
        .iter()
        .filter(|c| c.checkpoint.seq >= lo && c.checkpoint.seq <= hi)
    {
        prelude.push_str(&checkpoint_record(cp, offset, format));
    }
    Ok((lo, hi, prelude))
}

/// An export of the central copy: one section per node (NDJSON: a header
/// line, the checkpoints, the events; CSV: one header row, then the rows of
/// each node), streamed from PostgreSQL a thousand events at a time.
fn central_export(
    gw: &Arc<Gateway>,
    sections: Vec<crate::cluster::audit::ExportSection>,
    format: ExportFormat,
    node: Option<&str>,
    delivered: Delivered,
) -> Answer {
    let offset = gw.utc_offset;
    let mut parts = Vec::with_capacity(sections.len());
    for (i, sec) in sections.into_iter().enumerate() {
        let mut prelude = String::new();
        match format {
            ExportFormat::Ndjson => {
                let key_id = sec
                    .checkpoints
                    .last()
                    .map(|c| c.checkpoint.key_id.clone())
                    .unwrap_or_default();
                let suites = export_suites(Some(&sec.first), &sec.checkpoints);
                prelude.push_str(&header_line(
                    &sec.node, sec.anchor, offset, &key_id, &suites,
                ));
            }
            ExportFormat::Csv if i == 0 => prelude.push_str(&csv_header()),
            ExportFormat::Csv => {}
        }
        for cp in &sec.checkpoints {
            prelude.push_str(&checkpoint_record(cp, offset, format));
        }
        parts.push((prelude, sec.node, sec.lo, sec.hi));
    }
    let head = if parts.is_empty() && format == ExportFormat::Csv {
        csv_header()
    } else {
        String::new()
    };
    let gw = gw.clone();
    // (section, next event to send, or None before the section's prelude)
    let chunks = futures_util::stream::unfold((0usize, None::<u64>), move |(i, next)| {
        let gw = gw.clone();
        let part = parts.get(i).cloned();
        let delivered = delivered.clone();
        async move {
            let (prelude, node, lo, hi) = part?;
            let Some(next) = next else {
                return Some((Ok(Bytes::from(prelude)), (i, Some(lo))));
            };
            if next > hi {
                // The section went out whole: once delivered, retention of
                // the central copy may count it.
                let gw = gw.clone();
                delivered.then(async move {
                    if let Some(c) = &gw.cluster
                        && let Err(e) = c.store.mark_exported(&node, lo, hi).await
                    {
                        tracing::warn!(error = %e, node = %node, "the export could not be recorded");
                    }
                });
                return Some((Ok(Bytes::new()), (i + 1, None)));
            }
            let end = (next + 999).min(hi);
            let rows = match &gw.cluster {
                Some(c) => c.store.events_range(&node, next, end).await,
                None => Ok(Vec::new()),
            };
            let text = rows
                .map(|rows| {
                    rows.iter()
                        .map(|(e, h)| event_record(e, h, offset, format))
                        .collect::<String>()
                })
                .map(Bytes::from)
                .map_err(|e| std::io::Error::other(e.to_string()));
            Some((text, (i, Some(end + 1))))
        }
    });
    let head =
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(head)) });
    let (content_type, ext) = match format {
        ExportFormat::Ndjson => ("application/x-ndjson", "ndjson"),
        ExportFormat::Csv => ("text/csv; charset=utf-8", "csv"),
    };
    Answer::Raw {
        content_type,
        filename: Some(format!(
            "tongban-audit-{}.{ext}",
            node.map_or_else(
                || "cluster".to_owned(),
                |n| format!(
                    "cluster-{}",
                    n.chars()
                        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
                        .collect::<String>()
                )
            )
        )),
        body: axum::body::Body::from_stream(futures_util::StreamExt::chain(head, chunks)),
    }
}

/// Query of the statistics.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct StatsParams {
    /// From this time (default: 7 days before `to`).
    from: Option<String>,
    /// Up to this time (default: now).
    to: Option<String>,
    /// `cluster` (default in cluster mode: every node) or `node` (this node's log).
    scope: Option<String>,
}

/// Counts per day and anomaly flags, each linking to its events.
#[utoipa::path(
    get,
    path = "/v1/audit/stats",
    tag = "audit",
    operation_id = "audit_stats",
    params(StatsParams),
    responses((status = 200, description = "Counts and flags", body = doc::StatsAnswer)),
)]
async fn stats(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    params: Result<Query<StatsParams>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::AuditReview, "audit.stats");
    let result = async {
        // A data steward counts the use of its own department's datasets only.
        let steward =
            crate::pipeline::admit::reviewer(&gw, &headers, &mut event)?.map(|d| d.to_string());
        caught_up(&gw).await?;
        let Query(p) = params.map_err(|e| bad_query(&e))?;
        let offset = gw.utc_offset;
        let (from, to) = window(&gw, p.from.as_deref(), p.to.as_deref(), 7)?;
        let scope = cluster_scope(&gw, p.scope.as_deref())?;
        event.detail = Some(format!(
            "from={from}&to={to}&scope={}",
            if scope.is_some() { "cluster" } else { "node" }
        ));
        let stats = match scope {
            Some(cluster) => {
                let rules = gw.flag_rules.load_full();
                let mut builder = StatsBuilder::new(from, offset, rules);
                let mut window = builder.window(to);
                window.owner.clone_from(&steward);
                cluster
                    .scan(&gw.audit_store, &window, |e| builder.add(e))
                    .await
                    .map_err(|e| central_unavailable(&e, ClusterRead::Statistics))?;
                builder.finish(&gw.pseudonyms)
            }
            None => {
                let (store, rules, gw2) = (
                    gw.audit_store.clone(),
                    gw.flag_rules.load_full(),
                    gw.clone(),
                );
                blocking(move || {
                    crate::audit::stats::stats(
                        &store,
                        (from, to),
                        steward.as_deref(),
                        offset,
                        rules,
                        &gw2.pseudonyms,
                    )
                })
                .await?
            }
        };
        let mut body = Map::new();
        body.insert("from".into(), json!(q::format_time(from, offset)));
        body.insert("to".into(), json!(q::format_time(to, offset)));
        if let Value::Object(s) = serde_json::to_value(&stats).unwrap_or_default() {
            body.extend(s);
        }
        // Each flag with its review mark, if it has one.
        let ids: Vec<String> = stats.flags.iter().map(|f| f.id.clone()).collect();
        // Without the marks (PostgreSQL away, say) the counts still answer,
        // and say the marks are missing.
        let marks = match gw.alerts.reviews.of(&ids).await {
            Ok(marks) => marks,
            Err(e) => {
                tracing::warn!(error = %e, "flag review marks could not be read");
                body.insert("reviews_unavailable".into(), json!(true));
                std::collections::HashMap::new()
            }
        };
        // A steward learns that a flag was reviewed, not by whom or what was found.
        let is_steward = event
            .roles
            .iter()
            .all(|r| &**r != crate::api::audit::PRIVACY_OFFICER);
        if let Some(Value::Array(flags)) = body.get_mut("flags") {
            for f in flags.iter_mut() {
                let mark = f["id"].as_str().and_then(|id| marks.get(id));
                f["review"] = match mark {
                    None => Value::Null,
                    Some(_) if is_steward => json!({"reviewed": true}),
                    Some(r) => super::flags::review_json(r, offset),
                };
            }
        }
        Ok(Answer::ok(body))
    }
    .await;
    finish(&gw, &ctx, event, result).await
}

/// The public key that verifies the signed checkpoints (PEM).
#[utoipa::path(
    get,
    path = "/v1/audit/checkpoint-key",
    tag = "audit",
    operation_id = "audit_checkpoint_key",
    responses((status = 200, description = "The checkpoint public keys (Ed25519, and SM2 when the gm suite is or was in use), SubjectPublicKeyInfo PEM, one block each", body = String, content_type = "application/x-pem-file")),
)]
async fn checkpoint_key(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::AuditReview, "audit.checkpoint-key");
    let result = officer(&gw, &headers, &mut event).map(|()| Answer::Raw {
        content_type: "application/x-pem-file",
        filename: Some("tongban-checkpoint.pub.pem".into()),
        body: axum::body::Body::from(gw.checkpoint_signer.public_key_pem()),
    });
    finish(&gw, &ctx, event, result).await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::Delivered;
    use crate::api::WriteProgress;

    /// Waits a little for `rx`: `Some(true)` if the mark ran, `Some(false)`
    /// if it was given up, `None` if it is still waiting.
    async fn outcome(rx: tokio::sync::oneshot::Receiver<()>) -> Option<bool> {
        match tokio::time::timeout(Duration::from_millis(100), rx).await {
            Ok(Ok(())) => Some(true),
            Ok(Err(_)) => Some(false),
            Err(_) => None,
        }
    }

    /// An export counts as delivered only once a flush after its last byte
    /// succeeded: not when the last byte was merely handed to the
    /// connection, and never if the connection fails first.
    #[tokio::test]
    async fn an_export_is_marked_only_after_a_flush_past_its_end() {
        let writes = Arc::new(WriteProgress::default());
        writes.flushed();
        let delivered = Delivered::After(Some(writes.clone()));

        let (tx, rx) = tokio::sync::oneshot::channel();
        delivered.then(async move {
            let _ = tx.send(());
        });
        let waiting = tokio::spawn(outcome(rx));
        tokio::time::sleep(Duration::from_millis(20)).await;
        writes.flushed();
        assert_eq!(waiting.await.unwrap(), Some(true), "flushed past the end");

        let (tx, rx) = tokio::sync::oneshot::channel();
        delivered.then(async move {
            let _ = tx.send(());
        });
        assert_eq!(
            outcome(rx).await,
            None,
            "nothing flushed since the end: not yet"
        );

        let (tx, rx) = tokio::sync::oneshot::channel();
        delivered.then(async move {
            let _ = tx.send(());
        });
        writes.ended();
        assert_eq!(
            outcome(rx).await,
            Some(false),
            "the connection failed first"
        );
    }
}
