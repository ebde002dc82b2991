//! Routes for department systems: the catalog and record lookups.
//!
//! Each handler admits the request through [`crate::pipeline::admit`]
//! (authenticate, stops, inputs, limits, decide, quota), fetches, minimizes,
//! and hands the result to [`super::finish`], which audits before answering.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::answer::{
    AuditRef, BatchAnswer, BatchItem, BatchStatus, GrantRef, RecordAnswer, Typed, VerifyAnswer,
};
use super::openapi as doc;
use super::{
    Answer, Headers, RequestContext, bad_path, bad_query, finish, finish_batch, finish_then,
    json_body,
};
use crate::audit::event::Text;
use crate::audit::{EventBody, EventKind};
use crate::domain::{CaseRef, DatasetId, FieldName, Purpose, ResidentId};
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::pipeline::admit::{
    self, authenticate, check_department_limit, dataset_of, parse_fields, purpose_and_case,
};
use crate::pipeline::authn::Principal;
use crate::pipeline::idempotency::{self, Retry};
use crate::pipeline::minimize::Disclosure;
use crate::pipeline::minimize::minimize;
use crate::pipeline::verify::{Condition, MAX_CONDITIONS, Outcome, check_condition, evaluate};
use crate::policy::CompiledPolicy;
use crate::policy::decide::Allowance;
use crate::policy::model::Operation;
use crate::policy::model::SignedAnswers;
use crate::problem::{BatchLimit, IdInput, Problem, ProblemType};
use crate::provider::{DataProvider, FetchContext, ProviderError};

pub(crate) fn router() -> OpenApiRouter<Arc<Gateway>> {
    OpenApiRouter::new()
        .routes(routes!(catalog))
        .routes(routes!(lookup))
        .routes(routes!(verify))
        .routes(routes!(batch))
}

/// Query parameters of a lookup.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LookupParams {
    /// Comma-separated subset of fields to return (minimum necessary).
    fields: Option<String>,
}

/// Look up a resident's record: exactly the fields the grant allows.
///
/// The gateway finds the grant that gives the caller's department and role this
/// dataset for the named purpose, checks its conditions (case reference,
/// validity, quota), fetches the record from the owner and returns only the
/// granted fields, masked where the grant says so. Audited before it answers.
#[utoipa::path(
    get,
    path = "/v1/datasets/{dataset}/records/{resident_id}",
    tag = "records",
    operation_id = "lookup",
    params(
        ("dataset" = String, Path, description = "Dataset id, `<owner>.<name>`", pattern = "^[a-z][a-z0-9_]{0,31}\\.[a-z][a-z0-9_]{0,63}$", example = "gongan.hukou"),
        ("resident_id" = String, Path, description = "The resident's 18-character ID number (checksum checked)", pattern = "^[0-9]{17}[0-9X]$", example = "110101199810229455"),
        ("fields" = Option<String>, Query, description = "Comma-separated subset of the granted fields (minimum necessary)", example = "name,hukou_status"),
        ("X-Purpose" = String, Header, description = "Purpose code (用途), checked against the grant", pattern = "^[a-z][a-z0-9_]{0,63}$", example = "dibao_review"),
        ("X-Case-Ref" = Option<String>, Header, description = "Case reference (办件编号); required by grants on conditional data. ASCII as it is; with Chinese characters (a 文号 such as 民低保〔2026〕123号), percent-encoded UTF-8 (RFC 3986)", example = "MZ-2026-000123"),
        ("Prefer" = Option<String>, Header, description = "`signed` (RFC 7240): add a signed answer (`proof`) and `Preference-Applied: signed`"),
        ("traceparent" = Option<String>, Header, description = "W3C trace context; its trace id is logged and passed to upstream providers"),
    ),
    responses(
        (status = 200, description = "The granted fields", body = RecordAnswer, example = json!({
            "dataset": "gongan.hukou",
            "resident": "110101********9455",
            "record": {"name": "张三", "hukou_status": "正常", "hukou_address": "北京市东城区**街道"},
            "purpose": "dibao_review",
            "case_ref": "MZ-2026-000123",
            "grant": {"id": "minzheng-dibao-hukou", "version": 3},
            "policy_version": "9f2c41d07ab3e815",
            "audit": {"seq": 1042, "request_id": "01JF3K7Q8X2M4N6P8R0T2V4X6Z"}
        })),
        (status = 404, description = "Unknown dataset, or no record of this resident", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
async fn lookup(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    path: Result<Path<(String, String)>, PathRejection>,
    params: Result<Query<LookupParams>, QueryRejection>,
    Headers(headers): Headers,
) -> Response {
    let mut event = ctx.event(EventKind::Query, Operation::Lookup.as_str());
    let result = run_lookup(&gw, &mut event, path, params, &headers).await;
    finish(&gw, &ctx, event, result).await
}

/// The dataset and resident ID of a plain lookup, `GET
/// /v1/datasets/{dataset}/records/{resident_id}` with no percent-encoding in
/// its path, which [`serve_lookup`] serves without the router. Every other
/// request goes through the router, to the same handler for a lookup.
pub fn plain_lookup<B>(req: &axum::http::Request<B>) -> Option<(String, String)> {
    if req.method() != axum::http::Method::GET {
        return None;
    }
    let rest = req.uri().path().strip_prefix("/v1/datasets/")?;
    let (dataset, rest) = rest.split_once('/')?;
    let resident = rest.strip_prefix("records/")?;
    let plain = |s: &str| !s.is_empty() && !s.contains(['/', '%']);
    (plain(dataset) && plain(resident)).then(|| (dataset.to_owned(), resident.to_owned()))
}

/// Serves a plain lookup (see [`plain_lookup`]) as the router would: the
/// same checks at the door, the same extractors and handler, without the
/// router's layers, routing and boxing. A lookup reads no body.
pub async fn serve_lookup<B>(
    gw: Arc<Gateway>,
    req: axum::http::Request<B>,
    target: (String, String),
) -> Response {
    let (parts, _body) = req.into_parts();
    super::through_the_door(&gw.clone(), parts, |mut parts| async move {
        let ctx = RequestContext::of(&parts, &gw);
        let params = Query::try_from_uri(&parts.uri);
        let headers = std::mem::take(&mut parts.headers);
        lookup(State(gw), ctx, Ok(Path(target)), params, Headers(headers)).await
    })
    .await
}

/// What every record operation names: who, which record, for what.
struct Target {
    principal: Arc<Principal>,
    dataset: DatasetId,
    resident: ResidentId,
    purpose: Purpose,
    case_ref: Option<CaseRef>,
    trace_id: Option<String>,
    /// The resident ID exactly as the caller sent it (for a signed answer).
    resident_as_sent: String,
    /// Whether the grant's quota (and a verify's budget) is charged: not
    /// for the replay of an idempotent retry.
    charged: bool,
}

/// Authenticates, parses the path and the purpose headers, and records each in
/// the event as soon as it is known.
fn target(
    gw: &Gateway,
    policy: &CompiledPolicy,
    event: &mut EventBody,
    headers: &HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Target, ApiError> {
    event.policy_version = Some(policy.version_text());
    let principal = authenticate(gw, policy, headers, event)?;
    let Path((dataset, resident_raw)) = path.map_err(|e| bad_path(&e))?;
    let resident = resident_raw.as_str();
    let dataset = dataset_of(&dataset, event)?;
    let resident = ResidentId::parse(resident)
        .map_err(|e| ApiError::from(Problem::InvalidId(IdInput::Resident, e)))?;
    event.resident = Some(gw.pseudonyms.pseudonym(&resident));
    let (purpose, case_ref) = purpose_and_case(headers, event)?;
    Ok(Target {
        principal,
        dataset,
        resident,
        purpose,
        case_ref,
        trace_id: super::trace_id(headers.get("traceparent")),
        resident_as_sent: resident_raw,
        charged: true,
    })
}

/// Admits: department limit, decision, the operation's own check, the
/// grant's quota (then the caller fetches from [`provider_of`]).
async fn decide(
    gw: &Gateway,
    policy: &CompiledPolicy,
    event: &mut EventBody,
    t: &Target,
    operation: Operation,
    requested: Option<&[FieldName]>,
    check: impl FnOnce(&Allowance) -> Result<(), ApiError>,
) -> Result<Allowance, ApiError> {
    let ask = admit::Ask {
        principal: &t.principal,
        dataset: &t.dataset,
        purpose: &t.purpose,
        case_ref: t.case_ref.as_ref(),
        operation,
        requested,
        residents: 1,
        charged: t.charged,
    };
    admit::grant(gw, policy, event, &ask, check).await
}

/// What a provider is told about the request it serves.
fn fetch_context<'a>(event: &'a EventBody, t: &'a Target) -> FetchContext<'a> {
    FetchContext {
        request_id: &event.request_id,
        trace_id: t.trace_id.as_deref(),
        consumer: t.principal.dept.as_str(),
        purpose: t.purpose.as_str(),
    }
}

/// A provider's answer about the target's resident: its failure logged
/// and refused, no record 404.
fn found<T>(answer: Result<Option<T>, ProviderError>, t: &Target) -> Result<T, ApiError> {
    answer.map_err(|e| provider_error(&e))?.ok_or_else(|| {
        ApiError::from(Problem::ResidentNotFound {
            dataset: t.dataset.to_string(),
        })
    })
}

/// The catalog entry of `dataset` and the provider that answers for it.
fn provider_of<'p>(
    gw: &Gateway,
    policy: &'p CompiledPolicy,
    dataset: &DatasetId,
) -> Result<(&'p crate::policy::load::Dataset, Arc<dyn DataProvider>), ApiError> {
    let spec = policy
        .set
        .datasets
        .get(dataset)
        .ok_or_else(|| provider_error(&ProviderError::NotConfigured(dataset.clone())))?;
    let provider = gw
        .providers
        .for_dataset(spec)
        .map_err(|e| provider_error(&e))?;
    Ok((spec, provider))
}

/// Logs a provider failure (with its cause) and turns it into the refusal.
fn provider_error(e: &ProviderError) -> ApiError {
    tracing::warn!(error = %e, "provider failed");
    ApiError::from_provider(e)
}

/// The members every record answer shares: what was asked, and under
/// which grant and policy it was answered.
struct Head {
    case_ref: Option<String>,
    dataset: Text,
    grant: GrantRef,
    policy_version: Text,
    purpose: Text,
}

impl Head {
    fn of(
        dataset: &DatasetId,
        purpose: &Purpose,
        case_ref: Option<&CaseRef>,
        allowance: &Allowance,
        policy: &CompiledPolicy,
    ) -> Self {
        let grant = &allowance.grant;
        Self {
            case_ref: case_ref.map(|c| c.as_str().to_owned()),
            dataset: dataset.shared(),
            grant: GrantRef {
                id: grant.id().shared(),
                version: grant.version(),
            },
            policy_version: policy.version_text(),
            purpose: purpose.shared(),
        }
    }

    fn for_target(t: &Target, allowance: &Allowance, policy: &CompiledPolicy) -> Self {
        Self::of(
            &t.dataset,
            &t.purpose,
            t.case_ref.as_ref(),
            allowance,
            policy,
        )
    }
}

async fn run_lookup(
    gw: &Gateway,
    event: &mut EventBody,
    path: Result<Path<(String, String)>, PathRejection>,
    params: Result<Query<LookupParams>, QueryRejection>,
    headers: &HeaderMap,
) -> Result<Answer, ApiError> {
    let policy = gw.policy.snapshot();
    let t = target(gw, &policy, event, headers, path)?;
    let Query(params) = params.map_err(|e| bad_query(&e))?;
    let requested = params.fields.as_deref().map(parse_fields).transpose()?;
    let allowance = decide(
        gw,
        &policy,
        event,
        &t,
        Operation::Lookup,
        requested.as_deref(),
        |_| Ok(()),
    )
    .await?;
    let (spec, provider) = provider_of(gw, &policy, &t.dataset)?;
    let disclosure = found(
        provider
            .fetch_disclosed(
                fetch_context(event, &t),
                spec,
                &t.resident,
                &allowance.fields,
            )
            .await,
        &t,
    )?;
    event.fields = disclosure.names;
    let Head {
        case_ref,
        dataset,
        grant,
        policy_version,
        purpose,
    } = Head::for_target(&t, &allowance, &policy);
    let answer = Typed::Record(RecordAnswer {
        audit: AuditRef::pending(),
        case_ref,
        dataset,
        grant,
        policy_version,
        proof: None,
        purpose,
        record: disclosure.record,
        resident: t.resident.masked(),
    });
    let asked = ("resident_id", json!(t.resident_as_sent));
    signed(gw, event, headers, &allowance, &t.principal, answer, asked)
}

/// The audit operation of a replayed request.
const REPLAY: &str = "replay";

/// The idempotency stage ([`idempotency::admit`]): a request that repeats
/// an answered one is recorded as a replay.
async fn retried(
    gw: &Gateway,
    event: &mut EventBody,
    principal: &Principal,
    headers: &HeaderMap,
    request: &[&[u8]],
    retry: &mut Retry,
) -> Result<(), ApiError> {
    idempotency::admit(gw, principal, headers, request, retry).await?;
    if retry.replay().is_some() {
        event.operation = REPLAY.into();
    }
    Ok(())
}

/// What an idempotency key's request digest covers: the operation, the
/// dataset, the resident (of a verify), the purpose, the case reference and
/// the body as parsed (so a retry that reorders members is the same).
fn request_of<'a>(
    operation: Operation,
    dataset: &'a DatasetId,
    resident: Option<&'a ResidentId>,
    purpose: &'a Purpose,
    case_ref: Option<&'a CaseRef>,
    body: &'a [u8],
) -> [&'a [u8]; 6] {
    [
        operation.as_str().as_bytes(),
        dataset.as_str().as_bytes(),
        resident.map_or(&b""[..], |r| r.as_str().as_bytes()),
        purpose.as_str().as_bytes(),
        case_ref.map_or(&b"\0"[..], |c| c.as_str().as_bytes()),
        body,
    ]
}

/// Body of a verification.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = VerifyRequest)]
pub(crate) struct VerifyBody {
    /// 1 to 16 conditions.
    #[schema(min_items = 1, max_items = 16)]
    conditions: Vec<Condition>,
}

/// Verify conditions on a record (数据核验): yes or no per condition, never the values.
///
/// A grant may give a field as verify-only: it can be checked here but never
/// looked up. The audit event records the fields checked and the outcomes.
#[utoipa::path(
    post,
    path = "/v1/datasets/{dataset}/records/{resident_id}/verify",
    tag = "records",
    operation_id = "verify",
    params(
        ("dataset" = String, Path, description = "Dataset id", pattern = "^[a-z][a-z0-9_]{0,31}\\.[a-z][a-z0-9_]{0,63}$", example = "minzheng.hunyin"),
        ("resident_id" = String, Path, description = "The resident's ID number", pattern = "^[0-9]{17}[0-9X]$"),
        ("X-Purpose" = String, Header, description = "Purpose code (用途)", pattern = "^[a-z][a-z0-9_]{0,63}$"),
        ("X-Case-Ref" = Option<String>, Header, description = "Case reference (办件编号): ASCII as it is, or percent-encoded UTF-8 (RFC 3986)"),
        ("Prefer" = Option<String>, Header, description = "`signed` (RFC 7240): add a signed answer (`proof`) and `Preference-Applied: signed`"),
        ("Idempotency-Key" = Option<String>, Header, description = IDEMPOTENCY_KEY_DOC, pattern = "^[!#-\\[\\]-~]{1,255}$", example = "6f1c2e9a-1b7d-4c4e-9a51-3d2f0c8b7e10"),
    ),
    request_body(content = VerifyBody, example = json!({"conditions": [
        {"field": "contribution_base", "op": ">=", "value": 3000},
        {"field": "insured_status", "op": "in", "value": ["参保缴费", "暂停缴费"]},
        {"field": "monthly_pension", "op": "exists"}
    ]})),
    responses(
        (status = 200, description = "One outcome per condition", body = VerifyAnswer, example = json!({
            "dataset": "renshe.shebao",
            "resident": "110101********9455",
            "match": false,
            "results": [
                {"field": "contribution_base", "op": ">=", "match": true},
                {"field": "insured_status", "op": "in", "match": true},
                {"field": "monthly_pension", "op": "exists", "match": false}
            ],
            "purpose": "dibao_review",
            "case_ref": "MZ-2026-000123",
            "grant": {"id": "minzheng-dibao-shebao", "version": 2},
            "policy_version": "9f2c41d07ab3e815",
            "audit": {"seq": 1043, "request_id": "01JF3K7R2B4D6F8H0K2M4P6R8T"}
        })),
        (status = 404, description = "Unknown dataset, or no record of this resident", body = doc::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over the limit", body = doc::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not application/json", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
async fn verify(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    path: Result<Path<(String, String)>, PathRejection>,
    Headers(headers): Headers,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut event = ctx.event(EventKind::Query, Operation::Verify.as_str());
    let mut retry = Retry::default();
    let result = run_verify(&gw, &mut event, &mut retry, path, &headers, body).await;
    let replayed = retry.replay().is_some();
    let response = finish_then(&gw, &ctx, event, result, async |seq| {
        retry.answered(seq, seq).await;
        Ok(())
    })
    .await;
    mark_replayed(response, replayed)
}

/// The `Idempotency-Key` header, as the OpenAPI document describes it.
const IDEMPOTENCY_KEY_DOC: &str = "A key of the caller's choosing (1 to 255 visible ASCII characters, e.g. a UUID), to retry safely: within 24 hours the same request under the same key is checked again (token, stops, grant) and answered again without charging the quota a second time (`Idempotent-Replayed: true`); the same key with another request is refused (`idempotency-key-reused`)";

/// A replay's answer says so (`Idempotent-Replayed: true`).
fn mark_replayed(mut response: Response, replayed: bool) -> Response {
    if replayed && response.status().is_success() {
        response.headers_mut().insert(
            "idempotent-replayed",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    response
}

async fn run_verify(
    gw: &Gateway,
    event: &mut EventBody,
    retry: &mut Retry,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Answer, ApiError> {
    let policy = gw.policy.snapshot();
    let mut t = target(gw, &policy, event, headers, path)?;
    let VerifyBody { conditions } = json_body(headers, body)?;
    if conditions.is_empty() || conditions.len() > MAX_CONDITIONS {
        return Err(Problem::ConditionCount {
            max: MAX_CONDITIONS,
        }
        .into());
    }
    if let Some(dataset) = policy.set.datasets.get(&t.dataset) {
        for c in &conditions {
            let kind = dataset
                .fields
                .get(&c.field)
                .map(|f| f.kind)
                .ok_or_else(|| {
                    ApiError::from(Problem::UnknownConditionField {
                        field: c.field.to_string(),
                        dataset: t.dataset.to_string(),
                    })
                })?;
            check_condition(c, kind).map_err(|e| ApiError::from(Problem::InvalidCondition(e)))?;
        }
    }
    let mut fields: Vec<FieldName> = conditions.iter().map(|c| c.field.clone()).collect();
    fields.sort();
    fields.dedup();
    if fields.len() < conditions.len() {
        return Err(Problem::ConditionRepeated.into());
    }
    // The event records the predicates asked (the grant's own thresholds),
    // never a value held.
    event.fields = fields.iter().map(FieldName::shared).collect();
    let asked = serde_json::to_vec(&conditions).unwrap_or_default();
    let request = request_of(
        Operation::Verify,
        &t.dataset,
        Some(&t.resident),
        &t.purpose,
        t.case_ref.as_ref(),
        &asked,
    );
    retried(gw, event, &t.principal, headers, &request, retry).await?;
    t.charged = retry.charges();
    let admit = |allowance: &Allowance| admit_verify(gw, &t, &conditions, allowance);
    let allowance = decide(
        gw,
        &policy,
        event,
        &t,
        Operation::Verify,
        Some(&fields),
        admit,
    )
    .await?;
    let (spec, provider) = provider_of(gw, &policy, &t.dataset)?;
    let record = found(
        provider
            .fetch_fields(
                fetch_context(event, &t),
                spec,
                &t.resident,
                &allowance.fields,
            )
            .await,
        &t,
    )?;
    let results = evaluate(&record, &conditions);
    let detail = verify_detail(&conditions, &results);
    event.detail = Some(match retry.replay() {
        Some(first) => first.detail(Operation::Verify, Some(&detail)),
        None => detail,
    });
    let Head {
        case_ref,
        dataset,
        grant,
        policy_version,
        purpose,
    } = Head::for_target(&t, &allowance, &policy);
    let answer = Typed::Verify(VerifyAnswer {
        audit: AuditRef::pending(),
        case_ref,
        dataset,
        grant,
        matches: results.iter().all(|o| o.matches),
        policy_version,
        proof: None,
        purpose,
        resident: t.resident.masked(),
        results,
    });
    let asked = ("resident_id", json!(t.resident_as_sent));
    signed(gw, event, headers, &allowance, &t.principal, answer, asked)
}

/// A verification's audit detail: the predicates asked (the caller's own
/// values, or the grant's thresholds) and the outcomes, never a value held.
fn verify_detail(predicates: &[Condition], results: &[Outcome]) -> String {
    #[derive(serde::Serialize)]
    struct Detail<'a> {
        predicates: &'a [Condition],
        results: &'a [Outcome],
    }
    serde_json::to_string(&Detail {
        predicates,
        results,
    })
    .unwrap_or_default()
}

/// What a verify request may ask under `allowance`: of a verify-only field
/// only a predicate the grant names, exactly; and no more verify requests
/// per resident and day than the grant's budget (charged here, before the
/// fetch).
fn admit_verify(
    gw: &Gateway,
    t: &Target,
    conditions: &[Condition],
    allowance: &Allowance,
) -> Result<(), ApiError> {
    let spec = &allowance.grant.grant.spec;
    let access = spec.access.iter().find(|a| a.dataset == t.dataset);
    for c in conditions {
        let Some(access) = access else { break };
        if access.verify_only.contains(&c.field)
            && !access.verify_predicates.iter().any(|p| c.is(p))
        {
            let named: Vec<String> = access
                .verify_predicates
                .iter()
                .filter(|p| p.field == c.field)
                .map(|p| serde_json::to_string(p).unwrap_or_default())
                .collect();
            return Err(Problem::PredicateNotGranted {
                grant: spec.id.to_string(),
                field: c.field.to_string(),
                allowed: named,
            }
            .into());
        }
    }
    if !t.charged {
        return Ok(());
    }
    let limit = spec
        .conditions
        .verify_budget_per_resident_day
        .unwrap_or(crate::pipeline::verify::DEFAULT_BUDGET_PER_RESIDENT_DAY);
    let resident = gw.pseudonyms.pseudonym(&t.resident);
    let today = gw.today();
    let grant = spec.id.as_str();
    let so_far = || verifies_today(gw, grant, &resident, today);
    if !gw
        .verify_budget
        .charge(grant, resident, today, limit, so_far)
    {
        let tomorrow = today
            .next_day()
            .map(|d| d.midnight().assume_offset(gw.utc_offset).unix_timestamp())
            .unwrap_or(0);
        let wait = u64::try_from(tomorrow.saturating_sub(gw.clock.unix_secs())).unwrap_or(1);
        let mut e = ApiError::from(Problem::VerifyBudgetExhausted {
            grant: spec.id.to_string(),
            limit,
        });
        e.retry_after = Some(wait.max(1));
        return Err(e);
    }
    Ok(())
}

/// Today's verify events under `grant` about one resident, from the log.
fn verifies_today(gw: &Gateway, grant: &str, resident: &[u8; 16], today: time::Date) -> u32 {
    let since_ms = today
        .midnight()
        .assume_offset(gw.utc_offset)
        .unix_timestamp()
        * 1000;
    let mut n = 0;
    for seq in gw.audit_store.seqs_for_resident(resident, u64::MAX) {
        let Ok(seq) = seq else { break };
        let Ok(Some(event)) = gw.audit_store.get(seq) else {
            continue;
        };
        if event.body.time_ms < since_ms {
            break;
        }
        // Charged requests: answered, or asked of a resident with no record.
        if event.body.operation == "verify"
            && matches!(event.body.status, 200 | 404)
            && event
                .body
                .grant
                .as_ref()
                .is_some_and(|(g, _)| &**g == grant)
        {
            n += 1;
        }
    }
    n
}

/// Body of a batch.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BatchRequest)]
pub(crate) struct BatchBody {
    /// Resident IDs, answered in this order (at most the grant's and the gateway's batch limit).
    #[schema(min_items = 1)]
    resident_ids: Vec<String>,
    /// A subset of the granted fields (minimum necessary).
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    fields: Option<Vec<FieldName>>,
}

/// Look up many residents for one purpose and case: an answer per ID, in order.
///
/// Each answer is minimized like a lookup; one audit event per resident, all
/// in one group commit; the grant's quota is charged per resident. Needs a
/// grant with the `batch` operation.
#[utoipa::path(
    post,
    path = "/v1/datasets/{dataset}/records:batch",
    tag = "records",
    operation_id = "batch",
    params(
        ("dataset" = String, Path, description = "Dataset id", pattern = "^[a-z][a-z0-9_]{0,31}\\.[a-z][a-z0-9_]{0,63}$", example = "gongan.hukou"),
        ("X-Purpose" = String, Header, description = "Purpose code (用途)", pattern = "^[a-z][a-z0-9_]{0,63}$"),
        ("X-Case-Ref" = Option<String>, Header, description = "Case reference (办件编号): ASCII as it is, or percent-encoded UTF-8 (RFC 3986)"),
        ("Prefer" = Option<String>, Header, description = "`signed` (RFC 7240): add a signed answer (`proof`) and `Preference-Applied: signed`"),
        ("Idempotency-Key" = Option<String>, Header, description = IDEMPOTENCY_KEY_DOC, pattern = "^[!#-\\[\\]-~]{1,255}$", example = "0b8e5d3c-2f41-4a6e-8c7d-91e2a4f6b3d5"),
    ),
    request_body(content = BatchBody, example = json!({
        "resident_ids": ["110101199810229455", "11010519491231002X"],
        "fields": ["name", "hukou_status"]
    })),
    responses(
        (status = 200, description = "One answer per ID", body = BatchAnswer, example = json!({
            "dataset": "gongan.hukou",
            "results": [
                {"index": 0, "status": "found", "resident": "110101********9455", "record": {"name": "张三", "hukou_status": "正常"}},
                {"index": 1, "status": "not_found", "resident": "110105********002X", "detail": "the owner holds no record of this resident"}
            ],
            "purpose": "pension_eligibility",
            "case_ref": null,
            "grant": {"id": "renshe-pension-hukou", "version": 1},
            "policy_version": "9f2c41d07ab3e815",
            "audit": {"seq": 1044, "last_seq": 1045, "request_id": "01JF3K7S5C7E9G1J3L5N7Q9S1U"}
        })),
        (status = 404, description = "Unknown dataset", body = doc::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over the limit", body = doc::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not application/json", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
async fn batch(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    Headers(headers): Headers,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut event = ctx.event(EventKind::Query, Operation::Batch.as_str());
    let mut per_resident = Vec::new();
    let mut retry = Retry::default();
    let result = run_batch(
        &gw,
        &mut event,
        &mut per_resident,
        &mut retry,
        path,
        &headers,
        body,
    )
    .await;
    let replayed = retry.replay().is_some();
    let events = per_resident.len().max(1) as u64;
    let response = finish_batch(&gw, &ctx, event, per_resident, result, async move |seq| {
        retry.answered(seq, seq + events - 1).await;
        Ok(())
    })
    .await;
    mark_replayed(response, replayed)
}

async fn run_batch(
    gw: &Gateway,
    event: &mut EventBody,
    per_resident: &mut Vec<EventBody>,
    retry: &mut Retry,
    path: Result<Path<String>, PathRejection>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Answer, ApiError> {
    let policy = gw.policy.snapshot();
    event.policy_version = Some(policy.version_text());
    let principal = authenticate(gw, &policy, headers, event)?;
    let Path(dataset) = path.map_err(|e| bad_path(&e))?;
    let dataset = dataset_of(&dataset, event)?;
    let (purpose, case_ref) = purpose_and_case(headers, event)?;
    let BatchBody {
        resident_ids,
        fields,
    } = json_body(headers, body)?;
    let (sent, max) = (resident_ids.len(), gw.config.limits.max_batch_ids);
    if sent == 0 {
        return Err(Problem::BatchEmpty.into());
    }
    if sent > max {
        return Err(too_large(sent, max, BatchLimit::Gateway));
    }
    let asked = serde_json::to_vec(&(&resident_ids, &fields)).unwrap_or_default();
    let request = request_of(
        Operation::Batch,
        &dataset,
        None,
        &purpose,
        case_ref.as_ref(),
        &asked,
    );
    retried(gw, event, &principal, headers, &request, retry).await?;
    let ask = admit::Ask {
        principal: &principal,
        dataset: &dataset,
        purpose: &purpose,
        case_ref: case_ref.as_ref(),
        operation: Operation::Batch,
        requested: fields.as_deref(),
        residents: u32::try_from(resident_ids.len()).unwrap_or(u32::MAX),
        charged: retry.charges(),
    };
    let allowance = admit::grant(gw, &policy, event, &ask, |allowance| {
        let grant = &allowance.grant;
        let limit = grant.grant.spec.conditions.batch_limit.unwrap_or(0) as usize;
        if sent > limit {
            let by = BatchLimit::Grant(grant.id().to_string());
            return Err(too_large(sent, limit, by));
        }
        Ok(())
    })
    .await?;

    let parsed: Vec<Result<ResidentId, crate::domain::InvalidId>> = resident_ids
        .iter()
        .map(|raw| ResidentId::parse(raw))
        .collect();
    let valid: Vec<ResidentId> = parsed
        .iter()
        .filter_map(|p| p.as_ref().ok().cloned())
        .collect();
    let (spec, provider) = provider_of(gw, &policy, &dataset)?;
    let trace = super::trace_id(headers.get("traceparent"));
    let ctx = FetchContext {
        request_id: &event.request_id,
        trace_id: trace.as_deref(),
        consumer: principal.dept.as_str(),
        purpose: purpose.as_str(),
    };
    let mut records = provider
        .fetch_many(ctx, spec, &valid)
        .await
        .map_err(|e| provider_error(&e))?
        .into_iter();
    let results = batch_items(
        gw,
        event,
        per_resident,
        parsed,
        &mut records,
        &allowance,
        &dataset,
    )?;
    replay_events(per_resident, retry.replay());
    let Head {
        case_ref,
        dataset,
        grant,
        policy_version,
        purpose,
    } = Head::of(&dataset, &purpose, case_ref.as_ref(), &allowance, &policy);
    let answer = Typed::Batch(BatchAnswer {
        audit: AuditRef::pending(),
        case_ref,
        dataset,
        grant,
        policy_version,
        proof: None,
        purpose,
        results,
    });
    let asked = ("resident_ids", json!(resident_ids));
    signed(gw, event, headers, &allowance, &principal, answer, asked)
}

/// A batch of `sent` IDs over the `limit` of the gateway or the grant.
fn too_large(sent: usize, limit: usize, by: BatchLimit) -> ApiError {
    ApiError::from(Problem::BatchTooLarge { sent, limit, by })
}

/// A batch's replay (one that repeats `first`) is recorded as its first
/// request was, one event per resident (so each resident's disclosure report
/// lists it), each a `replay` naming the first request's events.
fn replay_events(per_resident: &mut [EventBody], first: Option<&idempotency::First>) {
    let Some(first) = first else { return };
    let detail = first.detail(Operation::Batch, None);
    for e in per_resident {
        e.detail = Some(detail.clone());
    }
}

/// Each resident's answer in a batch, in the order sent, with the event
/// that records it: an invalid ID refused on its own, a found record
/// minimized, a missing one reported not found.
fn batch_items(
    gw: &Gateway,
    event: &EventBody,
    per_resident: &mut Vec<EventBody>,
    parsed: Vec<Result<ResidentId, crate::domain::InvalidId>>,
    records: &mut impl Iterator<Item = Option<crate::pipeline::minimize::Record>>,
    allowance: &Allowance,
    dataset: &DatasetId,
) -> Result<Vec<BatchItem>, ApiError> {
    let mut results = Vec::with_capacity(parsed.len());
    for (index, parsed) in parsed.into_iter().enumerate() {
        let mut e = event.clone();
        let id = match parsed {
            Ok(id) => id,
            Err(err) => {
                results.push(BatchItem {
                    detail: Some(err.reason.to_string()),
                    index,
                    record: None,
                    resident: None,
                    status: BatchStatus::InvalidId,
                });
                e.status = 400;
                e.outcome = crate::audit::Outcome::Deny;
                e.reason = Some(ProblemType::InvalidResidentId.slug().into());
                per_resident.push(e);
                continue;
            }
        };
        e.resident = Some(gw.pseudonyms.pseudonym(&id));
        e.outcome = crate::audit::Outcome::Allow;
        let (record, status) = match records.next().flatten() {
            Some(record) => {
                let disclosed =
                    Disclosure::of(&minimize(record, &allowance.fields)).map_err(|err| {
                        provider_error(&ProviderError::BadRecord {
                            dataset: dataset.clone(),
                            message: format!("the record cannot be rendered ({err})"),
                        })
                    })?;
                e.fields = disclosed.names;
                e.status = 200;
                (Some(disclosed.record), BatchStatus::Found)
            }
            None => {
                e.status = 404;
                e.reason = Some(ProblemType::ResidentNotFound.slug().into());
                (None, BatchStatus::NotFound)
            }
        };
        results.push(BatchItem {
            detail: None,
            index,
            record,
            resident: Some(id.masked()),
            status,
        });
        per_resident.push(e);
    }
    Ok(results)
}

/// The typed answer, with the claims of its proof when it is to be signed
/// ([`wants_proof`]): [`claims`] plus `asked`, what the caller named (the
/// resident ID or IDs as sent).
fn signed(
    gw: &Gateway,
    event: &EventBody,
    headers: &HeaderMap,
    allowance: &Allowance,
    principal: &Principal,
    answer: Typed,
    (member, value): (&str, Value),
) -> Result<Answer, ApiError> {
    if !wants_proof(headers, allowance) {
        return Ok(Answer::typed(answer, None));
    }
    let operation = match &answer {
        Typed::Record(_) => Operation::Lookup,
        Typed::Verify(_) => Operation::Verify,
        Typed::Batch(_) => Operation::Batch,
    };
    let mut c = claims(gw, event, principal, operation, &answer)?;
    c.insert(member.into(), value);
    Ok(Answer::typed(answer, Some(c)))
}

/// Whether to sign the answer: the caller asked (`Prefer: signed`, RFC 7240)
/// or the grant requires it (then it is signed whether asked or not).
fn wants_proof(headers: &HeaderMap, allowance: &Allowance) -> bool {
    allowance.grant.grant.spec.conditions.signed_answers == SignedAnswers::Required
        || headers.get_all("prefer").iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|p| p.trim().eq_ignore_ascii_case("signed"))
            })
        })
}

/// What a signed answer attests, besides the audit sequence numbers the
/// writer adds: who asked, why, under which grant, and the answer as
/// returned (its claims are read from the answer's own members).
fn claims(
    gw: &Gateway,
    event: &EventBody,
    principal: &Principal,
    operation: Operation,
    answer: &Typed,
) -> Result<Box<Map<String, Value>>, ApiError> {
    let body = serde_json::to_value(answer).map_err(|e| {
        tracing::error!(error = %e, "an answer could not be read for its proof");
        ApiError::from(Problem::ProviderFailed)
    })?;
    let mut c = Map::new();
    c.insert(
        "iss".into(),
        json!(format!("tongban:{}", gw.config.node_id)),
    );
    c.insert("node".into(), json!(gw.config.node_id));
    c.insert("iat".into(), json!(event.time_ms.div_euclid(1000)));
    c.insert(
        "time".into(),
        json!(crate::audit::query::format_time(
            event.time_ms,
            gw.utc_offset
        )),
    );
    c.insert("jti".into(), json!(event.request_id));
    c.insert("operation".into(), json!(operation.as_str()));
    c.insert("consumer".into(), json!(principal.dept));
    c.insert("subject".into(), json!(principal.subject));
    for key in [
        "purpose",
        "case_ref",
        "dataset",
        "grant",
        "policy_version",
        "record",
        "results",
        "match",
    ] {
        if let Some(v) = body.get(key) {
            c.insert(key.into(), v.clone());
        }
    }
    Ok(Box::new(c))
}

/// The datasets and fields the caller may use, for which purposes, under which grants.
#[utoipa::path(
    get,
    path = "/v1/catalog",
    tag = "records",
    operation_id = "catalog",
    responses((status = 200, description = "What the caller's department and roles may use", body = doc::CatalogAnswer, example = json!({
        "department": "minzheng",
        "policy_version": "9f2c41d07ab3e815",
        "datasets": [{
            "dataset": "renshe.shebao",
            "title": "社会保险参保信息",
            "owner": "renshe",
            "class": "conditional",
            "grant": {"id": "minzheng-dibao-shebao", "version": 2, "title": "低保审核核查社保参保情况", "basis": "《社会救助暂行办法》第十一条"},
            "purposes": ["dibao_review"],
            "operations": ["lookup", "verify"],
            "roles": ["dibao_reviewer"],
            "conditions": {"case_ref_required": true, "case_ref_pattern": "MZ-\\d{4}-\\d{6}", "quota": "600/min"},
            "in_force": true,
            "fields": [
                {"name": "insured_status", "title": "参保状态", "type": "string", "sensitivity": "personal", "disclosure": "plain"},
                {"name": "contribution_base", "title": "缴费基数", "type": "integer", "sensitivity": "sensitive", "disclosure": "verify_only"}
            ],
            "verify_predicates": [{"field": "contribution_base", "op": ">=", "value": 3000}]
        }],
        "audit": {"seq": 1041, "request_id": "01JF3K7P4W0Y2A4C6E8G0J2L4N"}
    }))),
)]
async fn catalog(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    Headers(headers): Headers,
) -> Response {
    let mut event = ctx.event(EventKind::Query, "catalog");
    let result = run_catalog(&gw, &mut event, &headers).await;
    finish(&gw, &ctx, event, result).await
}

async fn run_catalog(
    gw: &Gateway,
    event: &mut EventBody,
    headers: &HeaderMap,
) -> Result<Answer, ApiError> {
    let policy = gw.policy.snapshot();
    event.policy_version = Some(policy.version_text());
    let principal = authenticate(gw, &policy, headers, event)?;
    check_department_limit(gw, &policy, &principal).await?;
    let today = gw.today();
    let mut entries = Vec::new();
    let mut grants: Vec<_> = policy
        .grants_of(&principal.dept)
        .filter(|g| {
            g.grant
                .spec
                .roles
                .iter()
                .any(|r| principal.roles.contains(r))
        })
        .collect();
    grants.sort_by(|a, b| a.id().cmp(b.id()));
    for g in grants {
        let spec = &g.grant.spec;
        let in_force = g.grant.valid_from.is_none_or(|d| today >= d)
            && g.grant.valid_until.is_none_or(|d| today <= d);
        for access in &spec.access {
            let Some(dataset) = policy.set.datasets.get(&access.dataset) else {
                continue;
            };
            let fields: Vec<Value> = dataset
                .spec
                .fields
                .iter()
                .filter_map(|f| {
                    let disclosure = if access.fields.contains(&f.name) {
                        "plain".to_owned()
                    } else if let Some(mask) = access.masked.get(&f.name) {
                        format!("masked:{}", serde_json::to_value(mask).ok()?.as_str()?)
                    } else if access.verify_only.contains(&f.name) {
                        "verify_only".to_owned()
                    } else {
                        return None;
                    };
                    Some(json!({
                        "name": f.name, "title": f.title, "type": f.kind,
                        "sensitivity": f.sensitivity, "disclosure": disclosure,
                    }))
                })
                .collect();
            entries.push(json!({
                "dataset": dataset.spec.id,
                "title": dataset.spec.title,
                "owner": dataset.spec.owner,
                "class": dataset.spec.class,
                "grant": {"id": spec.id, "version": spec.version, "title": spec.title, "basis": spec.basis},
                "purposes": spec.purposes,
                "operations": spec.operations,
                "roles": spec.roles,
                "conditions": spec.conditions,
                "in_force": in_force,
                "fields": fields,
                "verify_predicates": access.verify_predicates,
            }));
        }
    }
    let mut body = Map::new();
    body.insert("department".into(), json!(principal.dept));
    body.insert("policy_version".into(), json!(policy.version()));
    body.insert("datasets".into(), Value::Array(entries));
    Ok(Answer::ok(body))
}
