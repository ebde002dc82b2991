//! Admission of a resident to their own record (`/v1/me/…`): a token of a
//! `kind = "resident"` issuer, not revoked, within the resident's own rate
//! limit (`[residents] rate`). The resident's ID number is pseudonymized at
//! once: a resident's own calls are recorded under the department
//! `resident` and the subject `resident:<pseudonym>`, never the ID or the
//! token's `sub`. They are not filed under the resident (the `resident`
//! field stays empty): a resident reading their record does not add to it.

use std::num::NonZeroU32;
use std::sync::Arc;

use axum::http::{HeaderMap, header};
use governor::{Quota, RateLimiter};

use crate::audit::EventBody;
use crate::clock::Clock;
use crate::domain::ResidentId;
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::pipeline::authn::{Principal, RESIDENTS};
use crate::pipeline::rate_limit::RateSpec;
use crate::problem::Limit;

type Keyed = RateLimiter<
    [u8; 16],
    governor::state::keyed::HashMapStateStore<[u8; 16]>,
    Clock,
    governor::middleware::NoOpMiddleware<governor::nanos::Nanos>,
>;

/// Each resident's limit on `/v1/me/…`, keyed by pseudonym.
#[derive(Debug)]
pub struct ResidentLimit {
    spec: RateSpec,
    limiter: Keyed,
}

impl ResidentLimit {
    /// A limit of `spec` per resident.
    pub fn new(spec: RateSpec, clock: &Clock) -> Self {
        let period = spec.per / spec.count.get();
        let quota = Quota::with_period(period.max(std::time::Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(spec.count);
        Self {
            spec,
            limiter: RateLimiter::hashmap_with_clock(quota, clock.clone()),
        }
    }

    /// Forgets the residents who have not asked lately (the map stays
    /// bounded by the residents active within one period).
    pub fn forget_quiet(&self) {
        self.limiter.retain_recent();
    }
}

/// A resident admitted to their own record.
#[derive(Debug)]
pub struct Resident {
    /// The ID number (never written anywhere).
    pub id: ResidentId,
    /// Its pseudonym, as the audit log keys the resident.
    pub pseudonym: [u8; 16],
    /// The token's principal.
    pub principal: Arc<Principal>,
}

/// Authenticates a resident and records them in `event` by pseudonym.
pub fn admit(
    gw: &Gateway,
    headers: &HeaderMap,
    event: &mut EventBody,
) -> Result<Resident, ApiError> {
    let principal = gw
        .auth
        .authenticate_resident(
            headers
                .get_all(header::AUTHORIZATION)
                .iter()
                .map(|v| v.as_bytes()),
        )
        .map_err(|e| ApiError::from(&e))?;
    let Some(id) = principal.resident.clone() else {
        return Err(ApiError::from(
            &crate::pipeline::authn::AuthError::Malformed,
        ));
    };
    let pseudonym = gw.pseudonyms.pseudonym(&id);
    // Admitted: a refusal from here on is the resident's, not a stranger's.
    event.dept = Some(RESIDENTS.into());
    event.subject = Some(format!("{RESIDENTS}:{}", crate::domain::hex(&pseudonym)).into());
    event.roles = principal
        .roles
        .iter()
        .map(crate::domain::Role::shared)
        .collect();
    if super::admit::revoked(gw, &principal) {
        return Err(ApiError::from(&crate::pipeline::authn::AuthError::Revoked));
    }
    if principal.bound_certificate.is_some()
        && principal.bound_certificate != event.cert_fingerprint
    {
        return Err(crate::problem::Problem::CertificateBindingMismatch.into());
    }
    let limit = &gw.resident_limit;
    if let Err(not_until) = limit.limiter.check_key(&pseudonym) {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(&gw.clock));
        return Err(ApiError::rate_limited(
            Limit::Resident {
                spec: limit.spec.to_string(),
            },
            wait,
        ));
    }
    Ok(Resident {
        id,
        pseudonym,
        principal,
    })
}
