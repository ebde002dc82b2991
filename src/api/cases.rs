//! `GET /v1/cases`: everything obtained under one case (办件), the list of
//! materials the resident did not have to bring (免提交清单).
//!
//! A case reference is unique only within the department that named it,
//! so a case is a department's: any token of that department sees its own
//! cases (`consumer` defaults to the caller's department and may name no
//! other), and the operator's privacy officers see any department's. Read
//! from the exact case index (in cluster mode from PostgreSQL, with this
//! node's events not shipped yet); audited.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::audit::{blocking, caught_up, central_unavailable, field_title, merged};
use super::openapi as doc;
use super::{Answer, RequestContext, bad_query, finish};
use crate::audit::query as q;
use crate::audit::{EventBody, EventKind};
use crate::domain::{CaseRef, DeptId};
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::pipeline::admit::{authenticate, check_department_limit};
use crate::problem::{ClusterRead, IdInput, Problem};

pub(crate) fn router() -> OpenApiRouter<Arc<Gateway>> {
    OpenApiRouter::new().routes(routes!(case))
}

/// Query of a case.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct CaseParams {
    /// The case reference (办件编号), exactly as it was sent in
    /// `X-Case-Ref` (a 文号 is percent-encoded in the query, as any value).
    case_ref: String,
    /// The department whose case it is. Default: the caller's; only the
    /// operator's privacy officers may name another.
    consumer: Option<String>,
    /// `json` (default) or `csv` (bilingual headings, with a BOM).
    format: Option<String>,
}

/// Everything obtained under one case (免提交清单): from which department,
/// which dataset and fields, when, by whom, under which grant, and the
/// signed proof if one was issued. Oldest first.
#[utoipa::path(
    get,
    path = "/v1/cases",
    tag = "records",
    operation_id = "case_materials",
    params(CaseParams),
    responses(
        (status = 200, description = "The case's materials", content(
            (doc::CaseMaterials = "application/json"),
            (String = "text/csv"),
        )),
    ),
)]
async fn case(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    params: Result<Query<CaseParams>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::AuditReview, "audit.case");
    let result = run(&gw, &mut event, params, &headers).await;
    finish(&gw, &ctx, event, result).await
}

async fn run(
    gw: &Arc<Gateway>,
    event: &mut EventBody,
    params: Result<Query<CaseParams>, QueryRejection>,
    headers: &HeaderMap,
) -> Result<Answer, ApiError> {
    let (consumer, case_ref, csv) = admit(gw, event, params, headers).await?;
    caught_up(gw).await?;
    let list = materials(gw, &consumer, &case_ref).await?;
    Ok(render(gw, &consumer, &case_ref, &list, csv))
}

/// The caller, the case and its department (the caller's own, unless an
/// officer names another), and whether CSV is asked for.
async fn admit(
    gw: &Gateway,
    event: &mut EventBody,
    params: Result<Query<CaseParams>, QueryRejection>,
    headers: &HeaderMap,
) -> Result<(DeptId, CaseRef, bool), ApiError> {
    let policy = gw.policy.snapshot();
    event.policy_version = Some(policy.version_text());
    let principal = authenticate(gw, &policy, headers, event)?;
    let Query(p) = params.map_err(|e| bad_query(&e))?;
    let case_ref = CaseRef::parse(&p.case_ref)
        .map_err(|e| ApiError::from(Problem::InvalidId(IdInput::CaseRef, e)))?;
    event.case_ref = Some(case_ref.to_string());
    let consumer = match &p.consumer {
        Some(c) => DeptId::parse(c)
            .map_err(|e| ApiError::from(Problem::InvalidId(IdInput::Department, e)))?,
        None => principal.dept.clone(),
    };
    let officer = principal.has_role(super::audit::PRIVACY_OFFICER)
        && principal.dept.as_str() == gw.config.operator_department;
    if consumer != principal.dept && !officer {
        return Err(Problem::OtherDepartmentsCase {
            consumer: consumer.to_string(),
        }
        .into());
    }
    check_department_limit(gw, &policy, &principal).await?;
    let csv = super::audit::wants_csv(p.format.as_deref())?;
    event.detail =
        Some(json!({"consumer": consumer, "format": if csv { "csv" } else { "json" }}).to_string());
    Ok((consumer, case_ref, csv))
}

/// The disclosures under the case, oldest first: this node's, from its
/// case index, and in cluster mode every node's from PostgreSQL.
async fn materials(
    gw: &Gateway,
    consumer: &DeptId,
    case_ref: &CaseRef,
) -> Result<Vec<q::Disclosure>, ApiError> {
    let store = gw.audit_store.clone();
    let offset = gw.utc_offset;
    let (dept, case) = (consumer.to_string(), case_ref.to_string());
    let local = blocking(move || {
        let mut out = Vec::new();
        for seq in store.seqs_for_case(&dept, &case)? {
            if let Some(e) = store.get(seq)? {
                out.extend(q::Disclosure::of(&e, offset));
            }
        }
        Ok(out)
    })
    .await?;
    let mut list = match &gw.cluster {
        None => local,
        Some(cluster) => {
            let central = cluster
                .store
                .case_events(consumer.as_str(), case_ref.as_str())
                .await
                .map_err(|e| central_unavailable(&e, ClusterRead::Case))?;
            merged(gw, &central, local)
        }
    };
    list.sort_by(|a, b| {
        a.time_ms
            .cmp(&b.time_ms)
            .then(a.node.cmp(&b.node))
            .then(a.seq.cmp(&b.seq))
    });
    Ok(list)
}

/// The list as JSON, or as a spreadsheet with bilingual headings.
fn render(
    gw: &Gateway,
    consumer: &DeptId,
    case_ref: &CaseRef,
    list: &[q::Disclosure],
    csv: bool,
) -> Answer {
    let policy = gw.policy.snapshot();
    let name = |d: &str| {
        policy
            .set
            .departments
            .get(d)
            .map(|x| x.name.clone())
            .unwrap_or_default()
    };
    let dataset = |d: &str| policy.set.datasets.get(d);
    let owner = |d: &str| {
        dataset(d).map_or_else(
            || d.split('.').next().unwrap_or_default().to_owned(),
            |x| x.spec.owner.to_string(),
        )
    };
    let fields_of = |d: &q::Disclosure| -> Vec<(String, String)> {
        d.fields
            .iter()
            .map(|f| (f.clone(), field_title(dataset(&d.dataset), f)))
            .collect()
    };
    if csv {
        let mut w = csv::Writer::from_writer(Vec::from("\u{feff}".as_bytes()));
        let _ = w.write_record([
            "时间 Time",
            "提供部门 Owner",
            "部门名称 Owner name",
            "数据集 Dataset",
            "数据集名称 Dataset title",
            "字段 Fields",
            "经办人 Person",
            "用途 Purpose",
            "操作 Operation",
            "授权 Grant",
            "签名凭证 Signed proof",
            "审计序号 Audit seq",
            "节点 Node",
        ]);
        for d in list {
            let fields: Vec<String> = fields_of(d).into_iter().map(|(_, t)| t).collect();
            let o = owner(&d.dataset);
            let title = dataset(&d.dataset)
                .map(|x| x.spec.title.clone())
                .unwrap_or_default();
            let row = [
                d.time.as_str(),
                &o,
                &name(&o),
                &d.dataset,
                &title,
                &fields.join("；"),
                &d.subject,
                &d.purpose,
                &d.operation,
                d.grant.as_deref().unwrap_or(""),
                d.proof.as_deref().unwrap_or(""),
                &d.seq.to_string(),
                &d.node,
            ];
            let _ =
                w.write_record(row.map(|c| crate::audit::export::spreadsheet_safe(c).into_owned()));
        }
        return Answer::Raw {
            content_type: "text/csv; charset=utf-8",
            filename: Some(format!("case-{consumer}.csv")),
            body: axum::body::Body::from(w.into_inner().unwrap_or_default()),
        };
    }
    let materials: Vec<Value> = list
        .iter()
        .map(|d| {
            let o = owner(&d.dataset);
            let fields: Vec<Value> = fields_of(d)
                .into_iter()
                .map(|(name, title)| json!({"name": name, "title": title}))
                .collect();
            json!({
                "time": d.time, "owner": o, "owner_name": name(&o),
                "dataset": d.dataset, "dataset_title": dataset(&d.dataset).map(|x| x.spec.title.clone()),
                "fields": fields, "subject": d.subject, "purpose": d.purpose,
                "operation": d.operation, "grant": d.grant,
                "signed": d.proof.is_some(), "proof": d.proof, "node": d.node, "seq": d.seq,
            })
        })
        .collect();
    let mut body = Map::new();
    body.insert("case_ref".into(), json!(case_ref.as_str()));
    body.insert("consumer".into(), json!(consumer));
    body.insert("consumer_name".into(), json!(name(consumer.as_str())));
    body.insert(
        "generated_at".into(),
        json!(q::format_time(gw.clock.unix_millis(), gw.utc_offset)),
    );
    body.insert("count".into(), json!(materials.len()));
    body.insert("materials".into(), Value::Array(materials));
    Answer::ok(body)
}
