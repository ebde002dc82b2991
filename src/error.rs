//! The one conversion from errors to `application/problem+json` (RFC 9457).
//!
//! Every refusal and failure the gateway answers is an [`ApiError`]: a stable
//! `type` (`/problems/<slug>`, documented in the README), a `title`, a
//! `detail` that tells the caller what to fix, and never data the caller may
//! not see.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::audit::Outcome;
use crate::domain::InvalidId;
use crate::pipeline::authn::AuthError;
use crate::policy::index::{Denial, DenyReason};

/// The prefix of every problem `type`.
pub const PROBLEM_BASE: &str = "/problems/";

/// A refusal or failure, ready to be answered and audited.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable problem slug (the end of `type`).
    pub slug: &'static str,
    /// Short, fixed summary.
    pub title: &'static str,
    /// What happened and what to do about it.
    pub detail: String,
    /// Extra members (e.g. a list of policy errors).
    pub extra: Map<String, Value>,
    /// `WWW-Authenticate` for 401.
    pub www_authenticate: Option<String>,
    /// `Retry-After` seconds for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A problem with no extra members.
    pub fn new(
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            slug,
            title,
            detail: detail.into(),
            extra: Map::new(),
            www_authenticate: None,
            retry_after: None,
        }
    }

    /// How the audit log classes it: client-side refusals are denials, the rest failures.
    pub fn outcome(&self) -> Outcome {
        if self.status.is_server_error() {
            Outcome::Error
        } else {
            Outcome::Deny
        }
    }

    /// 400 for a malformed identifier in the path or a header.
    pub fn invalid_input(slug: &'static str, title: &'static str, e: &InvalidId) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            slug,
            title,
            format!("{} is not valid: {}", e.what, e.reason),
        )
    }

    /// 400 for a header that is missing, repeated or not text.
    pub fn bad_header(name: &str, problem: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-header",
            "A request header is missing or malformed",
            format!("header {name} {problem}"),
        )
    }

    /// 403 for a route that needs a role the caller does not hold.
    pub fn role_required(role: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "role-required",
            "This route needs another role",
            format!("this route needs role {role}"),
        )
    }

    /// 404 for a path the gateway does not serve.
    pub fn no_route() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "no-such-route",
            "No such route",
            "the gateway serves no resource at this path; see the README for its routes",
        )
    }

    /// 429 with the time to wait.
    pub fn rate_limited(what: String, wait: std::time::Duration) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Rate limit exceeded",
            what,
        );
        e.retry_after = Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
        e
    }

    /// 503 when the audit record cannot be made durable: no data leaves.
    pub fn audit_unavailable() -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit-unavailable",
            "The audit log cannot be written",
            "the request could not be recorded in the audit log, so no data was released; try again later",
        );
        e.retry_after = Some(5);
        e
    }

    /// 401 for a token and a connection that name two callers.
    pub fn identity(slug: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        let mut err = Self::new(StatusCode::UNAUTHORIZED, slug, title, detail);
        err.www_authenticate = Some(format!(
            "Bearer realm=\"tongban\", error=\"invalid_token\", error_description=\"{title}\""
        ));
        err
    }

    /// 403 for every request of a suspended department.
    pub fn department_suspended(dept: &str, since: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "department-suspended",
            "The department is suspended",
            format!(
                "department {dept} is suspended by the exchange's administrators (since {since}); no request of its systems is served until it is resumed"
            ),
        )
    }

    /// The refusal for a provider failure, naming the dataset. The cause is
    /// logged, not answered: consumers learn nothing of the owner's systems.
    pub fn from_provider(e: &crate::provider::ProviderError) -> Self {
        use crate::provider::ProviderError as P;
        match e {
            P::Unavailable { dataset, .. } | P::NotConfigured(dataset) => {
                let mut err = Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "upstream-unavailable",
                    "The owner's system is unavailable",
                    format!(
                        "the provider of dataset {dataset} cannot be reached now; nothing was disclosed, try again later"
                    ),
                );
                err.retry_after = Some(10);
                err.extra.insert("dataset".into(), json!(dataset));
                err
            }
            P::Timeout { dataset, millis } => {
                let mut err = Self::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream-timeout",
                    "The owner's system did not answer in time",
                    format!("the provider of dataset {dataset} did not answer within {millis} ms"),
                );
                err.extra.insert("dataset".into(), json!(dataset));
                err
            }
            P::InvalidAnswer { dataset, .. } => {
                let mut err = Self::new(
                    StatusCode::BAD_GATEWAY,
                    "upstream-invalid-answer",
                    "The owner's system answered invalidly",
                    format!(
                        "the provider of dataset {dataset} answered something its catalog entry does not allow; nothing was disclosed"
                    ),
                );
                err.extra.insert("dataset".into(), json!(dataset));
                err
            }
            P::Store(_) | P::BadRecord { .. } => Self::new(
                StatusCode::BAD_GATEWAY,
                "provider-failed",
                "The data provider failed",
                "the gateway's store could not answer for this dataset".to_owned(),
            ),
        }
    }

    /// The response body as JSON.
    pub fn body(&self, request_id: Option<&str>, audit_seq: Option<u64>) -> Value {
        let mut body = json!({
            "type": format!("{PROBLEM_BASE}{}", self.slug),
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let Value::Object(map) = &mut body {
            if let Some(id) = request_id {
                map.insert("request_id".into(), json!(id));
            }
            if let Some(seq) = audit_seq {
                map.insert("audit_seq".into(), json!(seq));
            }
            map.extend(self.extra.clone());
        }
        body
    }

    /// The full response.
    pub fn to_response(&self, request_id: Option<&str>, audit_seq: Option<u64>) -> Response {
        let body = serde_json::to_vec(&self.body(request_id, audit_seq)).unwrap_or_default();
        let mut resp = (self.status, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(value) = self
            .www_authenticate
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            h.insert(header::WWW_AUTHENTICATE, value);
        }
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.to_response(None, None)
    }
}

impl From<&AuthError> for ApiError {
    fn from(e: &AuthError) -> Self {
        let (slug, title) = match e {
            AuthError::Missing => ("token-missing", "Authentication required"),
            AuthError::Expired => ("token-expired", "The token has expired"),
            AuthError::Revoked => ("token-revoked", "The token has been revoked"),
            AuthError::UnknownDepartment => (
                "unknown-department",
                "The token's department is not registered",
            ),
            AuthError::OutOfScope(_) => (
                "issuer-out-of-scope",
                "The token's issuer may not vouch for this",
            ),
            _ => ("token-invalid", "The token was refused"),
        };
        let mut err = Self::new(StatusCode::UNAUTHORIZED, slug, title, e.to_string());
        let mut challenge = "Bearer realm=\"tongban\"".to_owned();
        if let Some(code) = e.bearer_error() {
            let description = e.to_string().replace(['"', '\\'], "'");
            challenge.push_str(&format!(
                ", error=\"{code}\", error_description=\"{description}\""
            ));
        }
        err.www_authenticate = Some(challenge);
        err
    }
}

impl From<&Denial> for ApiError {
    fn from(d: &Denial) -> Self {
        let (status, title) = match d.reason {
            DenyReason::UnknownDataset => (StatusCode::NOT_FOUND, "No such dataset"),
            DenyReason::UnknownField => (StatusCode::BAD_REQUEST, "No such field"),
            DenyReason::CaseRefRequired => {
                (StatusCode::BAD_REQUEST, "A case reference is required")
            }
            DenyReason::CaseRefFormat => (
                StatusCode::BAD_REQUEST,
                "The case reference has the wrong form",
            ),
            DenyReason::DatasetNotShared => (StatusCode::FORBIDDEN, "The dataset is not shared"),
            DenyReason::NoGrant => (StatusCode::FORBIDDEN, "No grant allows this"),
            DenyReason::PurposeNotGranted => (StatusCode::FORBIDDEN, "The purpose is not granted"),
            DenyReason::RoleNotGranted => {
                (StatusCode::FORBIDDEN, "Your roles are not granted this")
            }
            DenyReason::OperationNotGranted => {
                (StatusCode::FORBIDDEN, "The operation is not granted")
            }
            DenyReason::GrantNotInForce => (StatusCode::FORBIDDEN, "The grant is not in force"),
            DenyReason::FieldVerifyOnly => {
                (StatusCode::FORBIDDEN, "The field may only be verified")
            }
            DenyReason::FieldNotGranted => (StatusCode::FORBIDDEN, "The field is not granted"),
            DenyReason::FieldMaskedNotVerifiable => {
                (StatusCode::FORBIDDEN, "A masked field cannot be verified")
            }
            DenyReason::NoFieldsGranted => (StatusCode::FORBIDDEN, "No field may be disclosed"),
        };
        Self::new(status, d.reason.slug(), title, d.detail.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_token_gets_a_bare_bearer_challenge() {
        let e = ApiError::from(&AuthError::Missing);
        assert_eq!(
            e.www_authenticate.as_deref(),
            Some("Bearer realm=\"tongban\"")
        );
        let e = ApiError::from(&AuthError::Expired);
        assert!(
            e.www_authenticate
                .unwrap()
                .contains("error=\"invalid_token\"")
        );
    }

    #[test]
    fn retry_after_rounds_up() {
        let e = ApiError::rate_limited("x".into(), std::time::Duration::from_millis(1500));
        assert_eq!(e.retry_after, Some(2));
    }
}
