//! `GET /v1/audit/evaluation`: the evaluation (评估), per month and per
//! consumer → owner department pair: cases served, materials obtained
//! instead of from the resident, verify answers given instead of paper
//! certificates ([`crate::audit::evaluation`] defines each). For the
//! privacy officers, and for a data steward over its own department's data.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, json};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::audit::{blocking, caught_up, central_unavailable, cluster_scope, wants_csv, window};
use super::openapi as doc;
use super::{Answer, RequestContext, bad_query, finish};
use crate::audit::evaluation::{Builder, Done, Row};
use crate::audit::filter::EventFilter;
use crate::audit::query as q;
use crate::audit::{EventBody, EventKind};
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::problem::ClusterRead;

pub(crate) fn router() -> OpenApiRouter<Arc<Gateway>> {
    OpenApiRouter::new().routes(routes!(evaluation))
}

/// Query of the evaluation.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct EvaluationParams {
    /// From this time (default: 365 days before `to`).
    from: Option<String>,
    /// Up to this time (default: now).
    to: Option<String>,
    /// `json` (default) or `csv` (bilingual headings, with a BOM).
    format: Option<String>,
    /// `cluster` (default in cluster mode: every node) or `node`.
    scope: Option<String>,
}

/// The evaluation (评估): per month and consumer → owner pair, the cases
/// served, the materials obtained through the exchange instead of from the
/// resident (distinct case × dataset), the verify answers given instead of
/// paper certificates, and the disclosures without a case.
#[utoipa::path(
    get,
    path = "/v1/audit/evaluation",
    tag = "audit",
    operation_id = "audit_evaluation",
    params(EvaluationParams),
    responses(
        (status = 200, description = "The rows, by month, consumer and owner", content(
            (doc::EvaluationAnswer = "application/json"),
            (String = "text/csv"),
        )),
    ),
)]
async fn evaluation(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    params: Result<Query<EvaluationParams>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::AuditReview, "audit.evaluation");
    let result = run(&gw, &mut event, params, &headers).await;
    finish(&gw, &ctx, event, result).await
}

async fn run(
    gw: &Arc<Gateway>,
    event: &mut EventBody,
    params: Result<Query<EvaluationParams>, QueryRejection>,
    headers: &HeaderMap,
) -> Result<Answer, ApiError> {
    let steward = crate::pipeline::admit::reviewer(gw, headers, event)?.map(|d| d.to_string());
    caught_up(gw).await?;
    let Query(p) = params.map_err(|e| bad_query(&e))?;
    let offset = gw.utc_offset;
    let (from, to) = window(gw, p.from.as_deref(), p.to.as_deref(), 365)?;
    let csv = wants_csv(p.format.as_deref())?;
    let filter = EventFilter {
        from_ms: Some(from),
        to_ms: Some(to),
        owner: steward.clone(),
        ..EventFilter::default()
    };
    event.detail = Some(filter.describe());
    let mut builder = match cluster_scope(gw, p.scope.as_deref())? {
        Some(cluster) => {
            let mut builder = Builder::new(offset);
            cluster
                .scan(&gw.audit_store, &filter, |e| builder.add(e))
                .await
                .map_err(|e| central_unavailable(&e, ClusterRead::Statistics))?;
            builder
        }
        None => {
            let store = gw.audit_store.clone();
            blocking(move || {
                let mut builder = Builder::new(offset);
                q::scan(&store, &filter, |e| builder.add(e))?;
                Ok(builder)
            })
            .await?
        }
    };
    // The workflow's figures come from its own store: without it, the
    // evaluation says so rather than failing or counting none.
    let workflow = workflow_done(gw, (from, to), steward.as_deref()).await;
    if let Ok(done) = &workflow {
        for d in done {
            builder.add_done(d);
        }
    }
    let mut answer = render(gw, &builder.finish(), (from, to), csv);
    if let Answer::Json { body, .. } = &mut answer {
        body.insert("workflow_figures".into(), json!(workflow.is_ok()));
    }
    Ok(answer)
}

/// The grants made and the data objections answered in the window (those
/// on `owner`'s data only, for its steward), with the working days each took.
async fn workflow_done(
    gw: &Gateway,
    (from, to): (i64, i64),
    owner: Option<&str>,
) -> Result<Vec<Done>, ()> {
    let calendar = gw.flag_rules.load().calendar.clone();
    let offset = gw.utc_offset;
    let day = |ms: i64| {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
            .to_offset(offset)
            .date()
    };
    let within = |at: i64, o: &str| (from..to).contains(&at) && owner.is_none_or(|x| x == o);
    let mut done = Vec::new();
    let requests = gw.sharing.requests.list().await.map_err(|e| {
        tracing::warn!(error = %e, "sharing requests could not be read for the evaluation");
    })?;
    for r in requests {
        let approved = r.history.iter().find(|s| s.action == "approved");
        if let Some(s) = approved.filter(|s| within(s.at_ms, &r.owner)) {
            done.push(Done {
                at_ms: s.at_ms,
                working_days: calendar.working_days_between(day(r.filed_ms), day(s.at_ms)),
                consumer: r.consumer,
                owner: r.owner,
                grant: true,
            });
        }
    }
    let objections = gw.sharing.objections.list().await.map_err(|e| {
        tracing::warn!(error = %e, "data objections could not be read for the evaluation");
    })?;
    for o in objections {
        if let Some(a) = o.answer.as_ref().filter(|a| within(a.at_ms, &o.owner)) {
            done.push(Done {
                at_ms: a.at_ms,
                working_days: calendar.working_days_between(day(o.filed_ms), day(a.at_ms)),
                consumer: o.consumer,
                owner: o.owner,
                grant: false,
            });
        }
    }
    Ok(done)
}

fn render(gw: &Gateway, rows: &[Row], (from, to): (i64, i64), csv: bool) -> Answer {
    let policy = gw.policy.snapshot();
    let name = |d: &str| {
        policy
            .set
            .departments
            .get(d)
            .map(|x| x.name.clone())
            .unwrap_or_default()
    };
    if csv {
        let mut w = csv::Writer::from_writer(Vec::from("\u{feff}".as_bytes()));
        let _ = w.write_record([
            "月份 Month",
            "调用部门 Consumer",
            "调用部门名称 Consumer name",
            "提供部门 Owner",
            "提供部门名称 Owner name",
            "服务办件 Cases served",
            "免提交材料 Materials obtained",
            "核验代替证明 Verify answers",
            "无办件编号 Without a case",
            "披露 Disclosures",
            "批准的共享申请（含续期）Grants made (renewals included)",
            "授权平均工作日 Days to grant",
            "答复疑义 Objections answered",
            "答复平均工作日 Days to answer",
        ]);
        for r in rows {
            let _ = w.write_record([
                r.month.clone(),
                r.consumer.clone(),
                name(&r.consumer),
                r.owner.clone(),
                name(&r.owner),
                r.cases.to_string(),
                r.materials.to_string(),
                r.verify_answers.to_string(),
                r.without_case.to_string(),
                r.disclosures.to_string(),
                r.grants_made.to_string(),
                r.days_to_grant.map(|d| d.to_string()).unwrap_or_default(),
                r.objections_answered.to_string(),
                r.days_to_answer.map(|d| d.to_string()).unwrap_or_default(),
            ]);
        }
        return Answer::Raw {
            content_type: "text/csv; charset=utf-8",
            filename: Some("evaluation.csv".into()),
            body: axum::body::Body::from(w.into_inner().unwrap_or_default()),
        };
    }
    let items: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let mut v = json!(r);
            v["consumer_name"] = json!(name(&r.consumer));
            v["owner_name"] = json!(name(&r.owner));
            v
        })
        .collect();
    let mut body = Map::new();
    body.insert("from".into(), json!(q::format_time(from, gw.utc_offset)));
    body.insert("to".into(), json!(q::format_time(to, gw.utc_offset)));
    body.insert("rows".into(), json!(items));
    Answer::ok(body)
}
