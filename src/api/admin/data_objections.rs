//! Data objections' routes (`/v1/objections`): a consuming department
//! reports a shared record as doubtful or wrong (疑义、纠错); the owning
//! department's data steward answers. The resident ID is sealed at rest
//! and opened for the owner's stewards only.

use std::sync::Arc;

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::parse_body;
use super::sharing::{Caller, DATA_STEWARD, caller};
use crate::api::openapi as doc;
use crate::api::{Answer, RequestContext, bad_path, finish, finish_then};
use crate::audit::EventKind;
use crate::audit::query::format_time;
use crate::data_objections::{self as objections, DataObjection, Outcome, State as ObjState};
use crate::domain::ResidentId;
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::policy::CompiledPolicy;
use crate::problem::{IdInput, Problem};

fn store_failed(e: &crate::kept::StoreError) -> ApiError {
    tracing::error!(error = %e, "data objections could not be read or written");
    ApiError::from(Problem::DataObjectionNotStored)
}

fn invalid(what: impl Into<String>) -> ApiError {
    ApiError::from(Problem::InvalidDataObjection { what: what.into() })
}

/// How a caller sees an objection: the owner's stewards with the resident
/// ID while it is open, everyone else who may see it (and the stewards once
/// it is answered) masked; none for anyone else.
#[derive(Clone, Copy, PartialEq, Eq)]
enum View {
    Owner,
    Masked,
}

fn view(who: &Caller, o: &DataObjection) -> Option<View> {
    let dept = who.principal.dept.as_str();
    if dept == o.owner && who.principal.has_role(DATA_STEWARD) {
        Some(View::Owner)
    } else if who.overseer || dept == o.consumer {
        Some(View::Masked)
    } else {
        None
    }
}

/// An objection as the API shows it to a caller with `view`.
fn objection_json(gw: &Gateway, o: &DataObjection, view: View) -> Value {
    let resident_id = (view == View::Owner && o.state == ObjState::Open).then(|| {
        let opened = gw.pseudonyms.open_sealed(
            objections::SEAL_LABEL,
            o.seal_context().as_bytes(),
            &o.sealed_id,
        );
        if opened.is_none() {
            tracing::error!(objection = %o.id, "a data objection's resident ID does not open with this node's pseudonym key");
        }
        opened.and_then(|b| String::from_utf8(b).ok())
    });
    let overdue = o.state == ObjState::Open && gw.today().to_string() > o.due;
    json!({
        "id": o.id,
        "state": o.state.as_str(),
        "consumer": o.consumer,
        "filed_by": o.filed_by,
        "owner": o.owner,
        "dataset": o.dataset,
        "field": o.field,
        "node": o.node,
        "seq": o.seq,
        "resident_id_masked": o.masked_id,
        "resident_id": resident_id.flatten(),
        "what": o.what,
        "filed_at": format_time(o.filed_ms, gw.utc_offset),
        "due": o.due,
        "overdue": overdue,
        "answer": o.answer.as_ref().map(|a| json!({
            "outcome": a.outcome, "note": a.note, "by": a.by, "at": format_time(a.at_ms, gw.utc_offset),
        })),
    })
}

/// Body of a report.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReportBody {
    dataset: String,
    field: String,
    resident_id: String,
    what: String,
    #[serde(default)]
    node: Option<String>,
    seq: u64,
}

/// Whether `text` holds something shaped like a resident ID (17 digits and
/// a check character): the free text of an objection or an answer says
/// what seems wrong, never whom or which value.
fn holds_an_id(text: &str) -> bool {
    static ID: std::sync::LazyLock<Option<regex::Regex>> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"[0-9]{17}[0-9Xx]").ok());
    ID.as_ref().is_none_or(|re| re.is_match(text))
}

/// Whether a grant in force today shows `field` of `dataset` to the
/// caller's department under one of its roles (as a value, masked, or in
/// a verify): only what a consumer sees can it report.
fn shown(
    policy: &CompiledPolicy,
    who: &Caller,
    today: time::Date,
    dataset: &str,
    field: &str,
) -> bool {
    policy.set.grants.values().any(|g| {
        g.spec.consumer.as_str() == who.principal.dept.as_str()
            && g.in_force(today)
            && g.spec
                .roles
                .iter()
                .any(|r| who.principal.has_role(r.as_str()))
            && g.spec.access.iter().any(|a| {
                a.dataset.as_str() == dataset
                    && (a.fields.iter().any(|f| f.as_str() == field)
                        || a.masked.keys().any(|f| f.as_str() == field)
                        || a.verify_only.iter().any(|f| f.as_str() == field))
            })
    })
}

/// The caller's department was given `field` of `dataset` about
/// `resident` in the disclosure `(node, seq)`: otherwise the report is
/// refused, the same way whether or not the resident or the event exists.
async fn given(
    gw: &Gateway,
    who: &Caller,
    resident: &ResidentId,
    (node, seq): (&str, u64),
    (dataset, field): (&str, &str),
) -> Result<(), ApiError> {
    crate::api::audit::caught_up(gw).await?;
    let list =
        crate::api::audit::resident_disclosures(gw, gw.pseudonyms.pseudonym(resident)).await?;
    let found = list.iter().any(|d| {
        d.node == node
            && d.seq == seq
            && d.consumer == who.principal.dept.as_str()
            && d.dataset == dataset
            && d.fields.iter().any(|f| f == field)
    });
    if found {
        Ok(())
    } else {
        Err(Problem::DataObjectionNotYours {
            what: format!(
                "event {seq} of node {node} is not a disclosure of field {field} of this resident to your department: name the audit reference of the lookup that gave it"
            ),
        }
        .into())
    }
}

/// A new objection `o` with its due day and the resident ID sealed for it.
fn sealed(
    gw: &Gateway,
    mut o: DataObjection,
    resident: &ResidentId,
) -> Result<DataObjection, ApiError> {
    let calendar = gw.flag_rules.load().calendar.clone();
    o.due = calendar
        .add_working_days(gw.today(), gw.config.sharing.objection_days)
        .to_string();
    o.sealed_id = gw
        .pseudonyms
        .seal(
            objections::SEAL_LABEL,
            o.seal_context().as_bytes(),
            resident.as_str().as_bytes(),
        )
        .ok_or_else(|| {
            tracing::error!("a data objection's resident ID could not be sealed");
            ApiError::from(Problem::DataObjectionNotStored)
        })?;
    Ok(o)
}

/// Report a record as doubtful or wrong (疑义、纠错) to the department that
/// owns it: the dataset, the field, the resident ID, what seems wrong (1
/// to 1000 characters; never a value or an ID), and the audit reference
/// (`node`, `seq`) of the caller's department's disclosure of that field of
/// that resident (the `audit` of the lookup's answer). Only a field a grant
/// in force shows one of the caller's roles, and that the department was
/// given, can be reported. The owner's data steward answers within
/// `[sharing] objection_days` working days.
#[utoipa::path(
    post,
    path = "/v1/objections",
    tag = "sharing",
    operation_id = "data_objection_file",
    request_body = doc::DataObjectionFile,
    responses(
        (status = 201, description = "Reported", body = doc::DataObjection),
        (status = 400, description = "Not a valid report", body = doc::Problem, content_type = "application/problem+json"),
        (status = 403, description = "No grant in force shows this field to the caller", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn file_objection(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, "objection.file");
    let prepared = async {
        let who = caller(&gw, &headers, &mut event)?;
        let ReportBody {
            dataset,
            field,
            resident_id,
            what,
            node,
            seq,
        } = parse_body(&headers, body, false)?;
        let resident = ResidentId::parse(resident_id.trim())
            .map_err(|e| ApiError::from(Problem::InvalidId(IdInput::Resident, e)))?;
        event.resident = Some(gw.pseudonyms.pseudonym(&resident));
        let policy = gw.policy.snapshot();
        let entry = policy
            .set
            .datasets
            .get(dataset.as_str())
            .filter(|d| d.fields.keys().any(|f| f.as_str() == field))
            .ok_or_else(|| {
                invalid(format!(
                    "dataset {dataset} has no field {field} in the catalog"
                ))
            })?;
        event.dataset = Some(entry.spec.id.as_str().into());
        let what = what.trim().to_owned();
        if what.is_empty() || what.chars().count() > 1000 || holds_an_id(&what) {
            return Err(invalid(
                "what seems wrong is said in 1 to 1000 characters, without an ID number",
            ));
        }
        let today = gw.today();
        if !shown(&policy, &who, today, &dataset, &field) {
            return Err(Problem::DataObjectionNotYours {
                what: format!("no grant in force shows field {field} of {dataset} to your roles"),
            }
            .into());
        }
        let node = node.unwrap_or_else(|| gw.config.node_id.clone());
        given(&gw, &who, &resident, (&node, seq), (&dataset, &field)).await?;
        let o = sealed(
            &gw,
            DataObjection {
                node,
                seq,
                consumer: who.principal.dept.to_string(),
                filed_by: who.name.clone(),
                owner: entry.spec.owner.to_string(),
                dataset,
                field,
                resident: crate::domain::hex(&gw.pseudonyms.pseudonym(&resident)),
                masked_id: resident.masked(),
                sealed_id: String::new(),
                what,
                filed_ms: ctx.time_ms,
                due: String::new(),
                state: ObjState::Open,
                answer: None,
                id: crate::kept::new_id(objections::ID_PREFIX, today),
            },
            &resident,
        )?;
        event.detail =
            Some(json!({"objection": o.id, "owner": o.owner, "field": o.field}).to_string());
        Ok((o, who))
    }
    .await;
    let (o, who) = match prepared {
        Ok(p) => p,
        Err(e) => return finish(&gw, &ctx, event, Err(e)).await,
    };
    let shown_as = view(&who, &o).unwrap_or(View::Masked);
    let body = objection_json(&gw, &o, shown_as)
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
        match gw.sharing.objections.put(&o, None).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                tracing::error!(objection = %o.id, "a new data objection's id is taken");
                Err(ApiError::from(Problem::DataObjectionNotStored))
            }
            Err(e) => Err(store_failed(&e)),
        }
    })
    .await
}

/// Data objections, newest first: those the caller's department reported
/// (resident ID masked); those on its data for its data steward (with the
/// resident ID); every one, masked, for the data authority, the privacy
/// officers and the administrators.
#[utoipa::path(
    get,
    path = "/v1/objections",
    tag = "sharing",
    operation_id = "data_objection_list",
    responses((status = 200, description = "The objections", body = doc::DataObjectionList)),
)]
pub(super) async fn list_objections(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    headers: HeaderMap,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, "objection.list");
    let result = async {
        let who = caller(&gw, &headers, &mut event)?;
        let all = gw
            .sharing
            .objections
            .list()
            .await
            .map_err(|e| store_failed(&e))?;
        let mut opened = Vec::new();
        let mine: Vec<Value> = all
            .iter()
            .filter_map(|o| {
                let v = view(&who, o)?;
                if v == View::Owner && o.state == ObjState::Open {
                    opened.push(o.id.as_str());
                }
                Some(objection_json(&gw, o, v))
            })
            .collect();
        // Whose resident IDs this reading showed, for the record.
        event.detail =
            Some(json!({"count": mine.len(), "resident_ids_shown_for": opened}).to_string());
        let mut body = Map::new();
        body.insert("count".into(), json!(mine.len()));
        body.insert("objections".into(), Value::Array(mine));
        Ok::<_, ApiError>(Answer::ok(body))
    }
    .await;
    finish(&gw, &ctx, event, result).await
}

/// Body of an answer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AnswerBody {
    outcome: String,
    #[serde(default)]
    note: Option<String>,
}

/// The owner's answer, by a `data_steward` of the department that owns the
/// dataset: `corrected` (wrong, and put right at the source), `confirmed`
/// (checked, and right) or `not_ours` (with a note saying whose), and an
/// optional note (up to 500 characters) the reporter reads.
#[utoipa::path(
    post,
    path = "/v1/objections/{id}/answer",
    tag = "sharing",
    operation_id = "data_objection_answer",
    params(("id" = String, Path, description = "The objection's id")),
    request_body = doc::DataObjectionAnswer,
    responses(
        (status = 200, description = "Answered", body = doc::DataObjection),
        (status = 403, description = "Not the owner's steward", body = doc::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such objection for the caller", body = doc::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Answered already", body = doc::Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn answer_objection(
    State(gw): State<Arc<Gateway>>,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut event = ctx.event(EventKind::PolicyAdmin, "objection.answer");
    let decided = async {
        let who = caller(&gw, &headers, &mut event)?;
        let Path(id) = path.map_err(|e| bad_path(&e))?;
        let not_found = || ApiError::from(Problem::DataObjectionNotFound { id: id.clone() });
        if !crate::kept::well_formed(objections::ID_PREFIX, &id) {
            return Err(not_found());
        }
        let AnswerBody { outcome, note } = parse_body(&headers, body, false)?;
        let outcome = Outcome::parse(&outcome).ok_or_else(|| {
            invalid(format!(
                "outcome \"{outcome}\": expected corrected, confirmed or not_ours"
            ))
        })?;
        let note = note.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
        if note.as_ref().is_some_and(|n| n.chars().count() > 500) {
            return Err(invalid("a note is at most 500 characters"));
        }
        if outcome == Outcome::NotOurs && note.is_none() {
            return Err(invalid("not_ours needs a note saying whose the record is"));
        }
        if note.as_deref().is_some_and(holds_an_id) {
            return Err(invalid("a note says what was found, without an ID number"));
        }
        let mut o = gw
            .sharing
            .objections
            .get(&id)
            .await
            .map_err(|e| store_failed(&e))?
            .ok_or_else(not_found)?;
        match view(&who, &o) {
            None => return Err(not_found()),
            Some(View::Masked) => {
                return Err(Problem::DataObjectionNotYours {
                    what: format!(
                        "a data_steward of {} answers objections on its data",
                        o.owner
                    ),
                }
                .into());
            }
            Some(View::Owner) => {}
        }
        let mut resident = [0u8; 16];
        if crate::domain::unhex(&o.resident, &mut resident) {
            event.resident = Some(resident);
        }
        event.dataset = Some(o.dataset.as_str().into());
        if o.state != ObjState::Open {
            return Err(Problem::DataObjectionAnswered { id: o.id.clone() }.into());
        }
        o.state = ObjState::Answered;
        o.answer = Some(objections::Answer {
            outcome,
            note,
            by: who.name.clone(),
            at_ms: ctx.time_ms,
        });
        event.detail = Some(json!({"objection": o.id, "outcome": outcome}).to_string());
        Ok(o)
    }
    .await;
    let o = match decided {
        Ok(o) => o,
        Err(e) => return finish(&gw, &ctx, event, Err(e)).await,
    };
    let body = objection_json(&gw, &o, View::Owner)
        .as_object()
        .cloned()
        .unwrap_or_default();
    finish_then(&gw, &ctx, event, Ok(Answer::ok(body)), async |_| {
        match gw
            .sharing
            .objections
            .put(&o, Some(ObjState::Open.as_str()))
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(Problem::DataObjectionAnswered { id: o.id.clone() }.into()),
            Err(e) => Err(store_failed(&e)),
        }
    })
    .await
}
