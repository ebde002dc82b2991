//! Admission: the stages a request passes, in order, before anything is
//! fetched. Each refusal is an [`ApiError`], recorded in the request's audit
//! event by [`crate::api::finish`]; each stage records in the event what it
//! learnt as soon as it knows it, so a refusal says how far the request got.
//!
//! The stages, in the order a record request meets them:
//!
//! 1. connection identity: the TLS handshake and the client certificate
//!    (`server`), then on every request its certificate's standing and the
//!    header size (`api::client_certificate_guard`);
//! 2. authenticate: a verified token becomes a [`Principal`] ([`authenticate`],
//!    over [`crate::pipeline::authn`]);
//! 3. stops: a revoked token, a token bound to another certificate or over
//!    another department's certificate, a suspended department
//!    ([`crate::stops`]);
//! 4. the request's own inputs: dataset, resident, purpose, case reference
//!    ([`dataset_of`], [`purpose_and_case`]);
//! 5. department limit: the department's rate limit, cluster-wide where
//!    Redis is configured ([`check_department_limit`]);
//! 6. decide: the grant and the fields it gives ([`crate::policy::decide`]);
//! 7. the operation's own check: a verify's predicates and budget, a batch's
//!    size (passed in by the handler); before it, for a verify or batch
//!    naming an `Idempotency-Key`, whether it repeats an answered request
//!    ([`crate::pipeline::idempotency`]);
//! 8. grant quota: the grant's quota, charged for every resident asked.
//!
//! The staff routes (audit, admin) stop after 3 with [`staff`], which also
//! checks the role and counts the department limit on this node alone.

use std::sync::Arc;

use axum::http::{HeaderMap, header};

use crate::audit::EventBody;
use crate::cluster::limits::LimitKey;
use crate::domain::{CaseRef, DatasetId, FieldName, Purpose, Role};
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::pipeline::authn::Principal;
use crate::policy::decide::Allowance;
use crate::policy::model::Operation;
use crate::policy::{CompiledPolicy, Decision, DecisionRequest};
use crate::problem::{HeaderFault, IdInput, Limit, Problem};

/// Authenticates and records the caller in the event.
pub fn authenticate(
    gw: &Gateway,
    policy: &CompiledPolicy,
    headers: &HeaderMap,
    event: &mut EventBody,
) -> Result<Arc<Principal>, ApiError> {
    let authorization = || {
        headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .map(|v| v.as_bytes())
    };
    let known = |d: &str| policy.knows_department(d);
    // On a connection, its memo of the last verified token.
    let principal = crate::pipeline::connection::CONNECTION
        .try_with(|c| {
            gw.auth
                .authenticate_on(authorization(), known, Some(&c.token_memo))
        })
        .unwrap_or_else(|_| gw.auth.authenticate(authorization(), known))
        .map_err(|e| ApiError::from(&e))?;
    event.dept = Some(principal.dept.shared());
    event.subject = Some(principal.subject.clone());
    event.roles = principal.roles.iter().map(Role::shared).collect();
    if revoked(gw, &principal) {
        return Err(ApiError::from(&crate::pipeline::authn::AuthError::Revoked));
    }
    bind_to_connection(&principal, event.cert_fingerprint)?;
    if let Some(s) = gw.suspensions.get(principal.dept.as_str()) {
        return Err(Problem::DepartmentSuspended {
            dept: principal.dept.to_string(),
            since: crate::audit::query::format_time(s.at_ms, gw.utc_offset),
        }
        .into());
    }
    Ok(principal)
}

/// Whether the deny-list refuses the token of `principal`.
pub fn revoked(gw: &Gateway, principal: &Principal) -> bool {
    gw.revocations
        .refuses(
            principal.token_id.as_deref(),
            &principal.subject,
            principal.issued_at,
            gw.clock.unix_millis(),
        )
        .is_some()
}

/// One caller, one identity: a client certificate names a department (its
/// CN), and a token over that connection must name the same one; a token
/// bound to a certificate (`cnf.x5t#S256`) is accepted only over a
/// connection whose certificate has that thumbprint. `fingerprint` is the
/// connection's certificate as the request's context recorded it.
pub fn bind_to_connection(
    principal: &Principal,
    fingerprint: Option<[u8; 32]>,
) -> Result<(), ApiError> {
    let cert_department = crate::pipeline::connection::CONNECTION
        .try_with(|c| c.cert_department.clone())
        .ok()
        .flatten();
    if fingerprint.is_some() && cert_department.as_deref() != Some(principal.dept.as_str()) {
        return Err(Problem::CertificateDepartmentMismatch {
            certificate: cert_department.as_deref().map(str::to_owned),
            token: principal.dept.to_string(),
        }
        .into());
    }
    if let Some(bound) = principal.bound_certificate
        && fingerprint != Some(bound)
    {
        return Err(Problem::CertificateBindingMismatch.into());
    }
    Ok(())
}

/// Authenticates a member of the operator department's staff holding `role`
/// (`privacy_officer`, `policy_admin`); everyone else gets 403.
pub fn staff(
    gw: &Gateway,
    headers: &HeaderMap,
    event: &mut EventBody,
    role: &str,
) -> Result<Arc<Principal>, ApiError> {
    let policy = gw.policy.snapshot();
    event.policy_version = Some(policy.version_text());
    let principal = authenticate(gw, &policy, headers, event)?;
    let operator = &gw.config.operator_department;
    if !principal.has_role(role) || principal.dept.as_str() != operator {
        return Err(Problem::RoleRequired {
            role: role.to_owned(),
            operator: operator.clone(),
        }
        .into());
    }
    check_department_limit_here(&policy, &principal)?;
    Ok(principal)
}

/// Who reviews the log: a privacy officer of the operator department
/// (`None`: everything), or a `data_steward` of a department (its
/// department: the use of that department's datasets only). Everyone
/// else gets 403. Counted against the department limit on this node.
pub fn reviewer(
    gw: &Gateway,
    headers: &HeaderMap,
    event: &mut EventBody,
) -> Result<Option<crate::domain::DeptId>, ApiError> {
    let policy = gw.policy.snapshot();
    event.policy_version = Some(policy.version_text());
    let principal = authenticate(gw, &policy, headers, event)?;
    let operator = &gw.config.operator_department;
    let scope = if principal.has_role("privacy_officer") && principal.dept.as_str() == operator {
        None
    } else if principal.has_role("data_steward") {
        Some(principal.dept.clone())
    } else {
        return Err(Problem::RoleRequired {
            role: "privacy_officer (or a department's data_steward)".to_owned(),
            operator: operator.clone(),
        }
        .into());
    };
    check_department_limit_here(&policy, &principal)?;
    Ok(scope)
}

pub async fn check_department_limit(
    gw: &Gateway,
    policy: &CompiledPolicy,
    principal: &Principal,
) -> Result<(), ApiError> {
    if let Some(limit) = policy.department_limit(&principal.dept) {
        gw.check_limit(LimitKey::Department(principal.dept.as_str()), limit, 1)
            .await
            .map_err(|wait| over_department_limit(principal, limit, wait))?;
    }
    Ok(())
}

fn over_department_limit(
    principal: &Principal,
    limit: &crate::pipeline::rate_limit::RateLimit,
    wait: std::time::Duration,
) -> ApiError {
    ApiError::rate_limited(
        Limit::Department {
            dept: principal.dept.to_string(),
            spec: limit.spec.to_string(),
        },
        wait,
    )
}

/// The department limit on this node's limiter alone: for the operator's
/// staff (privacy officers, administrators), whose routes are not the
/// exchange's traffic and are not counted cluster-wide.
fn check_department_limit_here(
    policy: &CompiledPolicy,
    principal: &Principal,
) -> Result<(), ApiError> {
    if let Some(limit) = policy.department_limit(&principal.dept) {
        limit
            .check()
            .map_err(|wait| over_department_limit(principal, limit, wait))?;
    }
    Ok(())
}

/// A header that must appear at most once, as text.
pub fn single_header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Problem::InvalidHeader {
            name: name.to_owned(),
            fault: HeaderFault::Repeated,
        }
        .into());
    }
    std::str::from_utf8(first.as_bytes())
        .map(|s| Some(s.trim()))
        .map_err(|_| {
            ApiError::from(Problem::InvalidHeader {
                name: name.to_owned(),
                fault: HeaderFault::NotText,
            })
        })
}

/// `X-Purpose` (required) and `X-Case-Ref` (optional here; grants may require it).
pub fn purpose_and_case(
    headers: &HeaderMap,
    event: &mut EventBody,
) -> Result<(Purpose, Option<CaseRef>), ApiError> {
    let purpose = single_header(headers, "x-purpose")?
        .ok_or_else(|| ApiError::from(Problem::PurposeRequired))?;
    let purpose = Purpose::parse(purpose)
        .map_err(|e| ApiError::from(Problem::InvalidId(IdInput::Purpose, e)))?;
    event.purpose = Some(purpose.shared());
    let case_ref = single_header(headers, "x-case-ref")?
        .map(|c| {
            CaseRef::from_header(c)
                .map_err(|e| ApiError::from(Problem::InvalidId(IdInput::CaseRef, e)))
        })
        .transpose()?;
    event.case_ref = case_ref.as_ref().map(ToString::to_string);
    Ok((purpose, case_ref))
}

/// Parses the dataset id of the path and records it in the event.
pub fn dataset_of(raw: &str, event: &mut EventBody) -> Result<DatasetId, ApiError> {
    let dataset = DatasetId::parse(raw)
        .map_err(|e| ApiError::from(Problem::InvalidId(IdInput::Dataset, e)))?;
    event.dataset = Some(dataset.shared());
    Ok(dataset)
}

/// The fields named in `?fields=`: at most 64, each a field name.
pub fn parse_fields(list: &str) -> Result<Vec<FieldName>, ApiError> {
    let fields: Vec<FieldName> = list
        .split(',')
        .map(|f| FieldName::parse(f.trim()))
        .collect::<Result<_, _>>()
        .map_err(|e| ApiError::from(Problem::InvalidId(IdInput::FieldList, e)))?;
    if fields.len() > 64 {
        return Err(Problem::TooManyFields { max: 64 }.into());
    }
    Ok(fields)
}

/// What a record operation asks, for stages 5 to 8.
#[derive(Debug)]
pub struct Ask<'a> {
    /// Who asks (authenticated, past the stops).
    pub principal: &'a Principal,
    /// The dataset.
    pub dataset: &'a DatasetId,
    /// The purpose named.
    pub purpose: &'a Purpose,
    /// The case reference named.
    pub case_ref: Option<&'a CaseRef>,
    /// The operation.
    pub operation: Operation,
    /// The fields asked for, if the caller named them.
    pub requested: Option<&'a [FieldName]>,
    /// How many residents the request is about (the quota charged).
    pub residents: u32,
    /// Whether the grant's quota is charged: not for the replay of an
    /// idempotent retry ([`crate::pipeline::idempotency`]).
    pub charged: bool,
}

/// Stages 5 to 8: the department limit, the decision (recording the grant
/// in the event), the operation's own `check` under the grant, and the
/// grant's quota. Nothing is fetched yet.
pub async fn grant(
    gw: &Gateway,
    policy: &CompiledPolicy,
    event: &mut EventBody,
    ask: &Ask<'_>,
    check: impl FnOnce(&Allowance) -> Result<(), ApiError>,
) -> Result<Allowance, ApiError> {
    // 5. The department's rate limit.
    check_department_limit(gw, policy, ask.principal).await?;
    // 6. The decision: which grant, which fields.
    let decision = policy.decide(&DecisionRequest {
        consumer: &ask.principal.dept,
        roles: &ask.principal.roles,
        dataset: ask.dataset,
        operation: ask.operation,
        purpose: ask.purpose,
        case_ref: ask.case_ref,
        requested: ask.requested,
        today: gw.today(),
    });
    let allowance = match decision {
        Decision::Allow(a) => a,
        Decision::Deny(d) => return Err(ApiError::from(&d)),
    };
    let grant = &allowance.grant;
    event.grant = Some((grant.id().shared(), grant.version()));
    // 7. What the operation itself may ask under the grant, before the
    // quota is charged.
    check(&allowance)?;
    // 8. The grant's quota, for every resident asked (once: a replay of an
    // idempotent retry is not charged again).
    if let Some(quota) = grant.limit.as_ref().filter(|_| ask.charged) {
        let n = ask.residents;
        gw.check_limit(LimitKey::Grant(grant.id().as_str()), quota, n)
            .await
            .map_err(|wait| {
                let (grant, spec) = (grant.id().to_string(), quota.spec.to_string());
                let limit = if ask.operation == Operation::Batch {
                    Limit::GrantBatch { grant, spec, n }
                } else {
                    Limit::Grant { grant, spec }
                };
                ApiError::rate_limited(limit, wait)
            })?;
    }
    Ok(allowance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_list_names_at_most_64_fields_each_a_field_name() {
        let names = |n: usize| {
            (0..n)
                .map(|i| format!("f{i}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let fields = parse_fields("name, hukou_status").unwrap();
        assert_eq!(
            fields.iter().map(FieldName::as_str).collect::<Vec<_>>(),
            ["name", "hukou_status"]
        );
        assert_eq!(parse_fields(&names(64)).unwrap().len(), 64);
        let e = parse_fields(&names(65)).unwrap_err();
        assert_eq!(e.slug(), "invalid-field-list");
        assert!(e.detail(crate::problem::Lang::En).contains("64"));
        for bad in ["", "name,,phone", "Name", "name;phone"] {
            assert_eq!(
                parse_fields(bad).unwrap_err().slug(),
                "invalid-field-list",
                "{bad:?}"
            );
        }
    }
}
