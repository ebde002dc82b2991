//! The sharing workflow's routes (`/v1/sharing/…`): a consuming department
//! files a request (共享申请); the data authority reviews it; the owning
//! department's data steward answers it. An approval becomes a grant
//! through the administrators' edit path (validated as a whole, audited,
//! then written or committed in the cluster's transaction), with its
//! provenance; a request changes state only from the state it was decided
//! in, so two answers at once cannot both take effect.

use std::sync::Arc;

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::change::{begin_cluster_change, lock_policy, prepare_change};
use super::parse_body;
use crate::api::openapi as doc;
use crate::api::{Answer, RequestContext, bad_path, finish, finish_then};
use crate::audit::EventKind;
use crate::audit::query::format_time;
use crate::domain::GrantId;
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::pipeline::admit::authenticate;
use crate::pipeline::authn::Principal;
use crate::policy::edit::Change;
use crate::policy::model::{GrantSpec, Provenance, SharingClass};
use crate::problem::{Problem, SharingFault};
use crate::sharing::{Request, State as ReqState, Step};

/// The data authority's role (of the operator department).
pub(super) const DATA_AUTHORITY: &str = "data_authority";
/// An owner's steward role.
pub(super) const DATA_STEWARD: &str = "data_steward";

/// Who a caller is to the workflow.
pub(super) struct Caller {
    pub(super) principal: Arc<Principal>,
    /// `department/subject`.
    pub(super) name: String,
    /// Of the operator department with `data_authority`.
    pub(super) authority: bool,
    /// Of the operator department, reading everything (officers, administrators).
    pub(super) overseer: bool,
}

pub(super) fn caller(
    gw: &Gateway,
    headers: &HeaderMap,
    event: &mut crate::audit::EventBody,
) -> Result<Caller, ApiError> {
    let policy = gw.policy.snapshot();
    event.policy_version = Some(policy.version_text());
    let principal = authenticate(gw, &policy, headers, event)?;
    let operator = principal.dept.as_str() == gw.config.operator_department;
    Ok(Caller {
        name: format!("{}/{}", principal.dept, principal.subject),
        authority: operator && principal.has_role(DATA_AUTHORITY),
        overseer: operator
            && ["privacy_officer", "policy_admin", DATA_AUTHORITY]
                .iter()
                .any(|r| principal.has_role(r)),
        principal,
    })
}

/// A request as the API shows it; a renewal with the grant it would
/// replace as it now is (`renews_current`), for the reviewer and the owner
/// to see what changes.
fn request_json(r: &Request, gw: &Gateway) -> Value {
    let today = gw.today().to_string();
    let overdue = match r.state {
        ReqState::Filed => today > r.review_due,
        ReqState::Reviewed => r.answer_due.as_ref().is_some_and(|d| today > *d),
        _ => false,
    };
    json!({
        "id": r.id,
        "state": r.state.as_str(),
        "consumer": r.consumer,
        "owner": r.owner,
        "dataset": r.dataset,
        "class": r.class,
        "renews": r.renews,
        "renews_version": r.renews_version,
        "renews_current": r.renews.as_deref().and_then(|g| {
            let id = GrantId::parse(g).ok()?;
            gw.policy.snapshot().set.grants.get(&id).map(|g| json!(g.spec))
        }),
        "use_case": r.use_case,
        "grant": r.grant,
        "filed_at": format_time(r.filed_ms, gw.utc_offset),
        "review_due": r.review_due,
        "answer_due": r.answer_due,
        "overdue": overdue,
        "history": r.history.iter().map(|s| json!({
            "action": s.action, "by": s.by, "at": format_time(s.at_ms, gw.utc_offset), "reason": s.reason,
        })).collect::<Vec<_>>(),
    })
}

fn store_failed(e: &crate::sharing::StoreError) -> ApiError {
    tracing::error!(error = %e, "sharing requests could not be read or written");
    ApiError::from(Problem::SharingNotStored)
}

/// Body of a request: the grant asked for, without its id, version and
/// consumer (the request names them), and the use case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileBody {
    use_case: String,
    grant: Value,
    #[serde(default)]
    renews: Option<String>,
}

/// File a sharing request (共享申请): the grant asked for, complete (title,
/// roles, purposes, operations, legal basis, conditions, and one dataset's
/// fields, masks, verify-only fields and predicates), and the use case. It
/// is checked as a grant would be; a 不予共享 dataset cannot be asked for.
#[utoipa::path(
    post,
    path = "/v1/sharing/requests",
    tag = "sharing",
    operation_id = "sharing_file",
    request_body = doc::SharingFile,
    responses(
        (status = 201, description = "Filed", body = doc::SharingRequest),
        (status = 403, description = "The dataset is not to be shared", body = doc::Problem, content_type = "application/problem+json"),
        (status = 422, description = "The grant asked for would not be valid; `errors` lists why", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn file_request(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, "sharing.file");
    let prepared = async {
        let who = caller(&gw, &headers, &mut event)?;
        if who.principal.dept.as_str() == gw.config.operator_department {
            return Err(Problem::Sharing(SharingFault::NotYours {
                what: "a request is filed by the consuming department".into(),
            })
            .into());
        }
        let FileBody {
            use_case,
            grant,
            renews,
        } = parse_body(&headers, body, false)?;
        let use_case = super::required_reason(&use_case)?;
        let today = gw.today();
        let id = crate::kept::new_id(crate::sharing::ID_PREFIX, today);
        let (grant, owner, dataset, class) = asked_grant(&gw, &who, &id, grant, renews.as_deref())?;
        let grant_id = grant.id.to_string();
        let renews_version = renews
            .as_ref()
            .and_then(|_| gw.policy.snapshot().set.grants.get(&grant.id).map(|g| g.spec.version));
        let calendar = gw.flag_rules.load().calendar.clone();
        let request = Request {
            id,
            consumer: who.principal.dept.to_string(),
            owner,
            dataset,
            class: class.into(),
            use_case,
            grant,
            state: ReqState::Filed,
            filed_ms: ctx.time_ms,
            review_due: calendar
                .add_working_days(today, gw.config.sharing.review_days)
                .to_string(),
            answer_due: None,
            history: vec![Step {
                action: "filed".into(),
                by: who.name,
                at_ms: ctx.time_ms,
                reason: None,
            }],
            renews: renews.map(|_| grant_id.clone()),
            renews_version,
        };
        event.detail = Some(
            json!({"request": request.id, "dataset": request.dataset, "owner": request.owner, "renews": request.renews})
                .to_string(),
        );
        Ok(request)
    }
    .await;
    match prepared {
        Ok(r) => {
            let body = request_json(&r, &gw)
                .as_object()
                .cloned()
                .unwrap_or_default();
            let answer = Answer::Json {
                status: axum::http::StatusCode::CREATED,
                body,
                etag: None,
                proof: None,
            };
            finish_then(&gw, &ctx, event, Ok(answer), async |_| {
                gw.sharing
                    .requests
                    .put(&r, None)
                    .await
                    .map_err(|e| store_failed(&e))
                    .map(|_| ())
            })
            .await
        }
        Err(e) => finish(&gw, &ctx, event, Err(e)).await,
    }
}

/// The grant a request asks for: `grant` with the request's id (a
/// renewal's: the id of the grant it renews) and the caller's department,
/// checked as an edit would be; with the dataset's owner, id and class. A
/// 不予共享 dataset cannot be asked for; a renewal renews a grant of the
/// caller's department on the same dataset alone.
fn asked_grant(
    gw: &Gateway,
    who: &Caller,
    id: &str,
    grant: Value,
    renews: Option<&str>,
) -> Result<(GrantSpec, String, String, &'static str), ApiError> {
    let mut grant = grant;
    if let Value::Object(g) = &mut grant {
        g.insert(
            "id".into(),
            json!(format!("req-{}", id[3..].to_ascii_lowercase())),
        );
        g.insert("consumer".into(), json!(who.principal.dept.as_str()));
        g.remove("version");
        g.remove("provenance");
    }
    let mut grant: GrantSpec = serde_json::from_value(grant).map_err(|e| {
        ApiError::from(Problem::InvalidPolicy {
            errors: vec![format!("grant: {e}")],
        })
    })?;
    let policy = gw.policy.snapshot();
    let [access] = grant.access.as_slice() else {
        return Err(Problem::InvalidPolicy {
                errors: vec!["grant.access: a request asks for one dataset (file one request per owner's dataset)".into()],
            }
            .into());
    };
    let dataset = policy
        .set
        .datasets
        .get(access.dataset.as_str())
        .ok_or_else(|| {
            ApiError::from(Problem::InvalidPolicy {
                errors: vec![format!(
                    "grant.access: dataset {} is not in the catalog",
                    access.dataset
                )],
            })
        })?;
    let class = match dataset.spec.class {
        SharingClass::None => {
            return Err(Problem::Sharing(SharingFault::NotToBeShared {
                dataset: access.dataset.to_string(),
            })
            .into());
        }
        SharingClass::Unconditional => "unconditional",
        SharingClass::Conditional => "conditional",
    };
    if let Some(old) = renews {
        grant.id = renewed(
            &policy.set,
            who.principal.dept.as_str(),
            old,
            access.dataset.as_str(),
        )
        .ok_or_else(|| {
            ApiError::from(Problem::InvalidPolicy {
                errors: vec![format!(
                    "renews: {old} is not a grant of {} on dataset {} alone",
                    who.principal.dept, access.dataset
                )],
            })
        })?;
        // It replaces the grant when approved: a later start would leave the
        // consumer without access until then.
        let today = gw.today().to_string();
        if grant
            .conditions
            .valid_from
            .as_ref()
            .is_some_and(|from| *from > today)
        {
            return Err(Problem::InvalidPolicy {
                errors: vec![format!(
                    "grant.conditions.valid_from: a renewal takes effect when approved; leave valid_from unset or not after {today}"
                )],
            }
            .into());
        }
    }
    // The grant must be valid as it is asked for: checked as an edit would be.
    crate::policy::edit::prepare(&policy.set, &Change::PutGrant(Box::new(grant.clone())))
        .map_err(|e| super::change::edit_error(e, "grant", grant.id.as_str()))?;
    let (owner, dataset) = (dataset.spec.owner.to_string(), access.dataset.to_string());
    Ok((grant, owner, dataset, class))
}

/// The grant `old` if it is `consumer`'s and opens `dataset` alone: what
/// a renewal may replace.
fn renewed(
    set: &crate::policy::PolicySet,
    consumer: &str,
    old: &str,
    dataset: &str,
) -> Option<GrantId> {
    let id = GrantId::parse(old).ok()?;
    let g = set.grants.get(&id)?;
    (g.spec.consumer.as_str() == consumer
        && g.spec.access.len() == 1
        && g.spec.access[0].dataset.as_str() == dataset)
        .then_some(id)
}

/// Sharing requests, newest first: a department's own (filed, or on its
/// datasets for its data steward); every one for the data authority, the
/// privacy officers and the administrators.
#[utoipa::path(
    get,
    path = "/v1/sharing/requests",
    tag = "sharing",
    operation_id = "sharing_list",
    responses((status = 200, description = "The requests", body = doc::SharingList)),
)]
pub(super) async fn list_requests(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, "sharing.list");
    let result = async {
        let who = caller(&gw, &headers, &mut event)?;
        let dept = who.principal.dept.to_string();
        let steward = who.principal.has_role(DATA_STEWARD);
        let all = gw
            .sharing
            .requests
            .list()
            .await
            .map_err(|e| store_failed(&e))?;
        let mine: Vec<Value> = all
            .iter()
            .filter(|r| who.overseer || r.consumer == dept || (steward && r.owner == dept))
            .map(|r| request_json(r, &gw))
            .collect();
        let mut body = Map::new();
        body.insert("count".into(), json!(mine.len()));
        body.insert("requests".into(), Value::Array(mine));
        Ok::<_, ApiError>(Answer::ok(body))
    }
    .await;
    finish(&gw, &ctx, event, result).await
}

/// A decision on a request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecisionBody {
    decision: String,
    #[serde(default)]
    reason: Option<String>,
    /// The owner may approve fewer fields than asked.
    #[serde(default)]
    fields: Option<Vec<String>>,
}

/// Which step a decision is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Review,
    Answer,
}

/// The data authority's review (审核): `approve` (for unconditional data,
/// the grant is made at once; otherwise the owner answers next),
/// `refuse` or `return` (both with a `reason`).
#[utoipa::path(
    post,
    path = "/v1/sharing/requests/{id}/review",
    tag = "sharing",
    operation_id = "sharing_review",
    params(("id" = String, Path, description = "The request's id")),
    request_body = doc::SharingDecision,
    responses(
        (status = 200, description = "Decided", body = doc::SharingRequest),
        (status = 404, description = "No such request", body = doc::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not waiting for this step", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn review_request(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    decide(gw, ctx, path, headers, body, Stage::Review).await
}

/// The owner's answer (答复), by a `data_steward` of the department that
/// owns the dataset: `approve` (optionally with `fields`, fewer than
/// asked), `refuse` or `return` (both with a `reason`).
#[utoipa::path(
    post,
    path = "/v1/sharing/requests/{id}/answer",
    tag = "sharing",
    operation_id = "sharing_answer",
    params(("id" = String, Path, description = "The request's id")),
    request_body = doc::SharingDecision,
    responses(
        (status = 200, description = "Decided", body = doc::SharingRequest),
        (status = 403, description = "Not the owner's steward", body = doc::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such request", body = doc::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not waiting for this step", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn answer_request(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    decide(gw, ctx, path, headers, body, Stage::Answer).await
}

async fn decide(
    gw: Arc<Gateway>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    stage: Stage,
) -> Response {
    let operation = if stage == Stage::Review {
        "sharing.review"
    } else {
        "sharing.answer"
    };
    let mut event = ctx.event(EventKind::PolicyAdmin, operation);
    let decided = async {
        let who = caller(&gw, &headers, &mut event)?;
        let Path(id) = path.map_err(|e| bad_path(&e))?;
        let not_found = || ApiError::from(Problem::SharingRequestNotFound { id: id.clone() });
        if !crate::kept::well_formed(crate::sharing::ID_PREFIX, &id) {
            return Err(not_found());
        }
        let DecisionBody { decision, reason, fields } = parse_body(&headers, body, false)?;
        let reason = super::reason(reason)?;
        let mut r = gw.sharing.requests.get(&id).await.map_err(|e| store_failed(&e))?.ok_or_else(not_found)?;
        let (waiting, allowed) = match stage {
            Stage::Review => (ReqState::Filed, who.authority),
            Stage::Answer => (
                ReqState::Reviewed,
                who.principal.has_role(DATA_STEWARD) && who.principal.dept.as_str() == r.owner,
            ),
        };
        if !allowed {
            return Err(Problem::Sharing(SharingFault::NotYours {
                what: match stage {
                    Stage::Review => "the data authority (data_authority of the operator department) reviews requests".into(),
                    Stage::Answer => format!("a data_steward of {} answers requests for its data", r.owner),
                },
            })
            .into());
        }
        if r.state != waiting {
            return Err(Problem::Sharing(SharingFault::NotWaiting {
                id: r.id.clone(),
                state: r.state.as_str().into(),
            })
            .into());
        }
        let was = r.state;
        apply_decision(&gw, &mut r, &who, stage, DecisionBody { decision, reason, fields }, ctx.time_ms)?;
        Ok((r, was, who))
    }
    .await;
    let (r, was, who) = match decided {
        Ok(d) => d,
        Err(e) => return finish(&gw, &ctx, event, Err(e)).await,
    };
    if r.state != ReqState::Approved {
        event.detail = Some(json!({"request": r.id, "state": r.state.as_str()}).to_string());
        let body = request_json(&r, &gw)
            .as_object()
            .cloned()
            .unwrap_or_default();
        return finish_then(&gw, &ctx, event, Ok(Answer::ok(body)), async |_| {
            kept(&gw, &r, was).await
        })
        .await;
    }
    approve(&gw, &ctx, event, r, was, &who).await
}

/// An approval: the grant through the administrators' edit path, under the
/// policy lock. A renewal whose grant ended or changed since filing is
/// refused instead (kept so, with why, and answered 409).
async fn approve(
    gw: &Gateway,
    ctx: &RequestContext,
    mut event: crate::audit::EventBody,
    mut r: Request,
    was: ReqState,
    who: &Caller,
) -> Response {
    let _guard = lock_policy(gw).await;
    let before = match hold_renewal(gw, &mut r) {
        Ok(before) => before,
        Err(fault) => {
            let e = ApiError::from(Problem::Sharing(fault));
            refuse_stale(gw, &r.id, was, &e, ctx.time_ms).await;
            return finish(gw, ctx, event, Err(e)).await;
        }
    };
    let grant_id: GrantId = r.grant.id.clone();
    let prepared = prepare_change(
        gw,
        &who.principal,
        &mut event,
        Change::PutGrant(Box::new(r.grant.clone())),
        "sharing.approve",
    );
    let (mut body, apply) = match prepared {
        Ok(p) => p,
        Err(e) => return finish(gw, ctx, event, Err(e)).await,
    };
    body.insert("request".into(), request_json(&r, gw));
    body.insert("grant_id".into(), json!(grant_id.as_str()));
    let tx = match begin_cluster_change(gw).await {
        Ok(tx) => tx,
        Err(e) => return finish(gw, ctx, event, Err(e)).await,
    };
    finish_then(gw, ctx, event, Ok(Answer::ok(body)), async |seq| {
        // The request first: a grant never appears for a request another
        // answer changed meanwhile.
        kept(gw, &r, was).await?;
        apply.run(seq, tx).await?;
        // The request the renewed grant came from says so.
        if let Some(earlier) = before {
            mark(
                gw,
                &earlier,
                &[ReqState::Approved],
                ReqState::Renewed,
                Step {
                    action: "renewed".into(),
                    by: who.name.clone(),
                    at_ms: ctx.time_ms,
                    reason: Some(format!("renewed by {}", r.id)),
                },
            )
            .await;
        }
        Ok(())
    })
    .await
}

/// Moves request `id` from one of `from` to `to` with `step`, if it is
/// still in one of them; a failure is logged (the change it follows took
/// effect already).
async fn mark(gw: &Gateway, id: &str, from: &[ReqState], to: ReqState, step: Step) {
    match gw.sharing.requests.get(id).await {
        Ok(Some(mut r)) if from.contains(&r.state) => {
            let was = r.state;
            r.state = to;
            r.history.push(step);
            if let Err(e) = kept(gw, &r, was).await {
                tracing::warn!(request = %id, error = ?e.kind(), "a sharing request could not be marked {}", to.as_str());
            }
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(request = %id, error = %e, "a sharing request could not be read to be marked");
        }
    }
}

/// A renewal refused because its grant ended or changed: kept `refused`,
/// with the gateway's reason, so that it leaves the queue.
async fn refuse_stale(gw: &Gateway, id: &str, was: ReqState, e: &ApiError, now: i64) {
    let step = Step {
        action: "refused".into(),
        by: "tongban".into(),
        at_ms: now,
        reason: Some(e.detail(crate::problem::Lang::Zh)),
    };
    mark(gw, id, &[was], ReqState::Refused, step).await;
}

/// A decision's effect on the request (its state, history, and for an
/// approval the grant's fields and provenance).
fn apply_decision(
    gw: &Gateway,
    r: &mut Request,
    who: &Caller,
    stage: Stage,
    d: DecisionBody,
    now: i64,
) -> Result<(), ApiError> {
    let DecisionBody {
        decision,
        reason,
        fields,
    } = d;
    let step = |action: &str, reason: Option<String>| Step {
        action: action.into(),
        by: who.name.clone(),
        at_ms: now,
        reason,
    };
    match decision.as_str() {
        "refuse" | "return" => {
            let Some(reason) = reason else {
                return Err(Problem::Sharing(SharingFault::ReasonRequired { decision }).into());
            };
            r.state = if decision == "refuse" {
                ReqState::Refused
            } else {
                ReqState::Returned
            };
            r.history.push(step(
                if decision == "refuse" {
                    "refused"
                } else {
                    "returned"
                },
                Some(reason),
            ));
        }
        "approve" if stage == Stage::Review && r.class == "conditional" => {
            r.state = ReqState::Reviewed;
            let calendar = gw.flag_rules.load().calendar.clone();
            r.answer_due = Some(
                calendar
                    .add_working_days(gw.today(), gw.config.sharing.answer_days)
                    .to_string(),
            );
            r.history.push(step("reviewed", reason));
        }
        "approve" => {
            if let Some(fields) = fields {
                narrow(&mut r.grant, &fields)?;
            }
            if stage == Stage::Review {
                r.history.push(step("reviewed", reason.clone()));
            }
            r.history.push(step("approved", reason));
            r.state = ReqState::Approved;
            let reviewed_by = r
                .history
                .iter()
                .find(|s| s.action == "reviewed")
                .map(|s| s.by.clone())
                .unwrap_or_default();
            r.grant.provenance = Some(Provenance {
                request: r.id.clone(),
                filed_by: r.history.first().map(|s| s.by.clone()).unwrap_or_default(),
                reviewed_by,
                approved_by: who.name.clone(),
                approved_at: format_time(now, gw.utc_offset),
                use_case: r.use_case.clone(),
                renews: None,
            });
        }
        _ => return Err(Problem::Sharing(SharingFault::UnknownDecision { decision }).into()),
    }
    Ok(())
}

/// An approved renewal replaces the grant it renews, which must still be
/// in force, at the version it was filed against (a steward may have
/// revoked it, an administrator narrowed it, since: the renewal must not
/// bring it back or undo that): its version follows that grant's, and its
/// provenance names the request that grant came from, which this returns.
fn hold_renewal(gw: &Gateway, r: &mut Request) -> Result<Option<String>, SharingFault> {
    let Some(old) = r.renews.clone() else {
        return Ok(None);
    };
    let policy = gw.policy.snapshot();
    let current = renewed(&policy.set, &r.consumer, &old, &r.dataset)
        .and_then(|id| policy.set.grants.get(&id))
        .ok_or_else(|| SharingFault::RenewsGone {
            grant: old.clone(),
            changed: None,
        })?;
    if r.renews_version.is_some_and(|v| v != current.spec.version) {
        return Err(SharingFault::RenewsGone {
            grant: old,
            changed: Some(current.spec.version),
        });
    }
    r.grant.version = current.spec.version + 1;
    let before = current.spec.provenance.as_ref().map(|p| p.request.clone());
    if let Some(p) = r.grant.provenance.as_mut() {
        p.renews.clone_from(&before);
    }
    Ok(before)
}

/// Keeps the request's new state, from the state it was decided in.
async fn kept(gw: &Gateway, r: &Request, was: ReqState) -> Result<(), ApiError> {
    match gw.sharing.requests.put(r, Some(was.as_str())).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(Problem::Sharing(SharingFault::NotWaiting {
            id: r.id.clone(),
            state: "changed meanwhile".into(),
        })
        .into()),
        Err(e) => Err(store_failed(&e)),
    }
}

/// The owner approves `fields` only, a subset of those asked for.
fn narrow(grant: &mut GrantSpec, fields: &[String]) -> Result<(), ApiError> {
    let Some(access) = grant.access.first_mut() else {
        return Ok(());
    };
    let asked: Vec<String> = access
        .fields
        .iter()
        .map(ToString::to_string)
        .chain(access.masked.keys().map(ToString::to_string))
        .chain(access.verify_only.iter().map(ToString::to_string))
        .collect();
    if let Some(extra) = fields.iter().find(|f| !asked.contains(f)) {
        return Err(Problem::Sharing(SharingFault::MoreThanAsked {
            field: extra.clone(),
        })
        .into());
    }
    access
        .fields
        .retain(|f| fields.iter().any(|x| x == f.as_str()));
    access
        .masked
        .retain(|f, _| fields.iter().any(|x| x == f.as_str()));
    access
        .verify_only
        .retain(|f| fields.iter().any(|x| x == f.as_str()));
    access
        .verify_predicates
        .retain(|p| fields.iter().any(|x| x == p.field.as_str()));
    Ok(())
}

/// Body of a revocation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokeBody {
    reason: String,
}

/// The owner revokes a grant on its data: a `data_steward` of the
/// department that owns every dataset the grant opens ends it at once,
/// with a reason (1 to 500 characters), through the administrators' edit
/// path (audited first). The request the grant came from, if any, is
/// marked `revoked` with the reason, where the consumer reads it.
#[utoipa::path(
    post,
    path = "/v1/sharing/grants/{id}/revoke",
    tag = "sharing",
    operation_id = "sharing_revoke",
    params(("id" = String, Path, description = "The grant's id")),
    request_body = doc::SharingRevoke,
    responses(
        (status = 200, description = "Revoked; who loses access", body = doc::ChangeAnswer),
        (status = 403, description = "Not the owner's steward", body = doc::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such grant", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn revoke_grant(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, "sharing.revoke");
    let checked = async {
        let who = caller(&gw, &headers, &mut event)?;
        let id = GrantId::parse(&super::path_id(path)?)
            .map_err(|e| ApiError::from(Problem::InvalidId(crate::problem::IdInput::Grant, e)))?;
        let RevokeBody { reason } = parse_body(&headers, body, false)?;
        let reason = super::required_reason(&reason)?;
        let policy = gw.policy.snapshot();
        let grant = policy
            .set
            .grants
            .get(&id)
            .ok_or_else(|| super::not_found("grant", id.as_str()))?;
        let dept = who.principal.dept.as_str();
        let owns_all = grant.spec.access.iter().all(|a| {
            policy
                .set
                .datasets
                .get(a.dataset.as_str())
                .is_some_and(|d| d.spec.owner.as_str() == dept)
        });
        if !(who.principal.has_role(DATA_STEWARD) && owns_all) {
            return Err(Problem::Sharing(SharingFault::NotYours {
                what: "a data_steward of the department that owns every dataset the grant opens revokes it".into(),
            })
            .into());
        }
        let request = grant.spec.provenance.as_ref().map(|p| p.request.clone());
        Ok((who, id, reason, request))
    }
    .await;
    let (who, id, reason, request) = match checked {
        Ok(c) => c,
        Err(e) => return finish(&gw, &ctx, event, Err(e)).await,
    };
    let _guard = lock_policy(&gw).await;
    let prepared = prepare_change(
        &gw,
        &who.principal,
        &mut event,
        Change::DeleteGrant(id.clone()),
        "sharing.revoke",
    );
    let (body, apply) = match prepared {
        Ok(p) => p,
        Err(e) => return finish(&gw, &ctx, event, Err(e)).await,
    };
    // The reason is part of the record.
    if let Some(Ok(Value::Object(mut d))) =
        event.detail.as_deref().map(serde_json::from_str::<Value>)
    {
        d.insert("reason".into(), json!(reason));
        d.insert("request".into(), json!(request));
        event.detail = Some(Value::Object(d).to_string());
    }
    let tx = match begin_cluster_change(&gw).await {
        Ok(tx) => tx,
        Err(e) => return finish(&gw, &ctx, event, Err(e)).await,
    };
    let now = ctx.time_ms;
    finish_then(&gw, &ctx, event, Ok(Answer::ok(body)), async |seq| {
        apply.run(seq, tx).await?;
        after_revocation(&gw, &who.name, id.as_str(), request, &reason, now).await;
        Ok(())
    })
    .await
}

/// After a revocation: the request the grant came from is marked
/// `revoked` with the reason, where the consumer reads it; a renewal of the
/// grant still waiting is refused, there being nothing left to renew.
async fn after_revocation(
    gw: &Gateway,
    by: &str,
    id: &str,
    request: Option<String>,
    reason: &str,
    now: i64,
) {
    let step = |action: &str, why: String| Step {
        action: action.into(),
        by: by.to_owned(),
        at_ms: now,
        reason: Some(why),
    };
    if let Some(rid) = request {
        mark(
            gw,
            &rid,
            &[ReqState::Approved],
            ReqState::Revoked,
            step("revoked", reason.to_owned()),
        )
        .await;
    }
    match gw.sharing.requests.list().await {
        Ok(all) => {
            for r in all.iter().filter(|r| {
                r.renews.as_deref() == Some(id)
                    && matches!(r.state, ReqState::Filed | ReqState::Reviewed)
            }) {
                let why = format!("续期的授权已由数据所属部门撤销：{reason}");
                mark(
                    gw,
                    &r.id,
                    &[r.state],
                    ReqState::Refused,
                    step("refused", why),
                )
                .await;
            }
        }
        Err(e) => tracing::warn!(error = %e, "renewals of a revoked grant could not be read"),
    }
}

/// Body of a withdrawal.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WithdrawBody {
    #[serde(default)]
    reason: Option<String>,
}

/// The consuming department withdraws its request (撤回) while it waits
/// for a step or was returned for changes: any of its staff, with an
/// optional reason kept in the request's history.
#[utoipa::path(
    post,
    path = "/v1/sharing/requests/{id}/withdraw",
    tag = "sharing",
    operation_id = "sharing_withdraw",
    params(("id" = String, Path, description = "The request's id")),
    request_body = doc::SharingWithdraw,
    responses(
        (status = 200, description = "Withdrawn", body = doc::SharingRequest),
        (status = 403, description = "Not the consuming department", body = doc::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such request", body = doc::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Decided already", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn withdraw_request(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, "sharing.withdraw");
    let withdrawn = async {
        let who = caller(&gw, &headers, &mut event)?;
        let Path(id) = path.map_err(|e| bad_path(&e))?;
        let not_found = || ApiError::from(Problem::SharingRequestNotFound { id: id.clone() });
        if !crate::kept::well_formed(crate::sharing::ID_PREFIX, &id) {
            return Err(not_found());
        }
        let WithdrawBody { reason } = parse_body(&headers, body, false)?;
        let reason = super::reason(reason)?;
        let mut r = gw
            .sharing
            .requests
            .get(&id)
            .await
            .map_err(|e| store_failed(&e))?
            .ok_or_else(not_found)?;
        // Another department's request is not found, as one that does not exist.
        if r.consumer != who.principal.dept.as_str() {
            return Err(not_found());
        }
        if !matches!(
            r.state,
            ReqState::Filed | ReqState::Reviewed | ReqState::Returned
        ) {
            return Err(Problem::Sharing(SharingFault::NotWaiting {
                id: r.id.clone(),
                state: r.state.as_str().into(),
            })
            .into());
        }
        let was = r.state;
        r.state = ReqState::Withdrawn;
        r.history.push(Step {
            action: "withdrawn".into(),
            by: who.name,
            at_ms: ctx.time_ms,
            reason,
        });
        event.detail = Some(json!({"request": r.id, "state": r.state.as_str()}).to_string());
        Ok((r, was))
    }
    .await;
    let (r, was) = match withdrawn {
        Ok(w) => w,
        Err(e) => return finish(&gw, &ctx, event, Err(e)).await,
    };
    let body = request_json(&r, &gw)
        .as_object()
        .cloned()
        .unwrap_or_default();
    finish_then(&gw, &ctx, event, Ok(Answer::ok(body)), async |_| {
        kept(&gw, &r, was).await
    })
    .await
}

/// The sharing directory (共享目录): every dataset of the catalog, with
/// its owner, sharing class and fields (names, titles, types,
/// sensitivity), and every department by name, for any department's staff
/// to see what it may ask for, and for the console to show names rather
/// than codes. Never a value, a provider's address or a grant.
#[utoipa::path(
    get,
    path = "/v1/sharing/directory",
    tag = "sharing",
    operation_id = "sharing_directory",
    responses((status = 200, description = "The directory", body = doc::SharingDirectory)),
)]
pub(super) async fn directory(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, "sharing.directory");
    let result = caller(&gw, &headers, &mut event).map(|_| {
        let policy = gw.policy.snapshot();
        let name = |d: &str| {
            policy
                .set
                .departments
                .get(d)
                .map(|x| x.name.clone())
                .unwrap_or_default()
        };
        let datasets: Vec<Value> = policy
            .set
            .datasets
            .values()
            .map(|d| {
                json!({
                    "dataset": d.spec.id.as_str(),
                    "title": d.spec.title,
                    "description": d.spec.description,
                    "owner": d.spec.owner.as_str(),
                    "owner_name": name(d.spec.owner.as_str()),
                    "class": d.spec.class,
                    "fields": d.spec.fields.iter().map(|f| json!({
                        "name": f.name.as_str(), "title": f.title, "type": f.kind, "sensitivity": f.sensitivity,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let departments: Vec<Value> = policy
            .set
            .departments
            .values()
            .map(|d| json!({"id": d.id.as_str(), "name": d.name}))
            .collect();
        let mut body = Map::new();
        body.insert("datasets".into(), Value::Array(datasets));
        body.insert("departments".into(), Value::Array(departments));
        let purposes: Vec<Value> = policy
            .set
            .purposes
            .iter()
            .map(|(id, title)| json!({"id": id, "title": title}))
            .collect();
        body.insert("purposes".into(), Value::Array(purposes));
        Answer::ok(body)
    });
    finish(&gw, &ctx, event, result).await
}
