//! The one conversion from errors to `application/problem+json` (RFC 9457).
//!
//! Every refusal and failure the gateway answers is an [`ApiError`]: a stable
//! `type` (`/problems/<slug>`, documented in docs/integrating.md), a `title`, a
//! `detail` that tells the caller what to fix, and never data the caller may
//! not see. What each problem says is in [`crate::problem`].

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::audit::Outcome;
use crate::pipeline::authn::AuthError;
use crate::policy::decide::Denial;
pub use crate::problem::{Lang, Problem, ProblemType};

/// The prefix of every problem `type`.
pub const PROBLEM_BASE: &str = "/problems/";

/// A refusal or failure, ready to be answered and audited.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// What went wrong, with what its detail is told from.
    pub problem: Problem,
    /// Extra members (e.g. a list of policy errors).
    pub extra: Map<String, Value>,
    /// `WWW-Authenticate` for 401.
    pub www_authenticate: Option<String>,
    /// `Retry-After` seconds for 429 and 503.
    pub retry_after: Option<u64>,
}

impl From<Problem> for ApiError {
    fn from(problem: Problem) -> Self {
        let mut e = Self {
            problem,
            extra: Map::new(),
            www_authenticate: None,
            retry_after: None,
        };
        match &e.problem {
            // Not the caller's token but the gateway's view of its issuer: no challenge.
            Problem::Token(AuthError::KeysUnavailable) => e.retry_after = Some(30),
            Problem::Token(auth) => {
                let mut challenge = "Bearer realm=\"tongban\"".to_owned();
                if let Some(code) = auth.bearer_error() {
                    let description = auth.to_string().replace(['"', '\\'], "'");
                    challenge.push_str(&format!(
                        ", error=\"{code}\", error_description=\"{description}\""
                    ));
                }
                e.www_authenticate = Some(challenge);
            }
            Problem::CertificateDepartmentMismatch { .. } | Problem::CertificateBindingMismatch => {
                e.www_authenticate = Some(format!(
                    "Bearer realm=\"tongban\", error=\"invalid_token\", error_description=\"{}\"",
                    e.problem.kind().title(Lang::En)
                ));
            }
            Problem::UpstreamUnavailable { dataset } => {
                e.retry_after = Some(10);
                e.extra.insert("dataset".into(), json!(dataset));
            }
            Problem::UpstreamTimeout { dataset, .. }
            | Problem::UpstreamInvalidAnswer { dataset } => {
                e.extra.insert("dataset".into(), json!(dataset));
            }
            Problem::IdempotencyKeyInFlight => e.retry_after = Some(1),
            Problem::AuditUnavailable
            | Problem::CentralAuditUnavailable(_)
            | Problem::PolicyStoreUnavailable => e.retry_after = Some(5),
            Problem::DatasetInUse { grants, .. } => {
                e.extra.insert("grants".into(), json!(grants));
            }
            Problem::InvalidRecords { errors } => {
                e.extra.insert("errors".into(), json!(errors));
            }
            _ => {}
        }
        e
    }
}

impl ApiError {
    /// Its problem type.
    pub fn kind(&self) -> ProblemType {
        self.problem.kind()
    }

    /// HTTP status.
    pub fn status(&self) -> StatusCode {
        self.kind().status()
    }

    /// The stable problem slug (the end of `type`).
    pub fn slug(&self) -> &'static str {
        self.kind().slug()
    }

    /// What happened and what to do about it.
    pub fn detail(&self, lang: Lang) -> String {
        self.problem.detail(lang)
    }

    /// How the audit log classes it: client-side refusals are denials, the rest failures.
    pub fn outcome(&self) -> Outcome {
        if self.status().is_server_error() {
            Outcome::Error
        } else {
            Outcome::Deny
        }
    }

    /// 429 with the time to wait.
    pub fn rate_limited(limit: crate::problem::Limit, wait: std::time::Duration) -> Self {
        let mut e = Self::from(Problem::RateLimited(limit));
        e.retry_after = Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
        e
    }

    /// 503 when the audit record cannot be made durable: no data leaves.
    pub fn audit_unavailable() -> Self {
        Self::from(Problem::AuditUnavailable)
    }

    /// The refusal for a provider failure, naming the dataset. The cause is
    /// logged, not answered: consumers learn nothing of the owner's systems.
    pub fn from_provider(e: &crate::provider::ProviderError) -> Self {
        use crate::provider::ProviderError as P;
        Self::from(match e {
            P::Unavailable { dataset, .. } | P::NotConfigured(dataset) => {
                Problem::UpstreamUnavailable {
                    dataset: dataset.to_string(),
                }
            }
            P::Timeout { dataset, millis } => Problem::UpstreamTimeout {
                dataset: dataset.to_string(),
                millis: *millis,
            },
            P::InvalidAnswer { dataset, .. } => Problem::UpstreamInvalidAnswer {
                dataset: dataset.to_string(),
            },
            P::Store(_) | P::BadRecord { .. } => Problem::ProviderFailed,
        })
    }

    /// The response body as JSON, in English.
    pub fn body(&self, request_id: Option<&str>, audit_seq: Option<u64>) -> Value {
        self.body_in(Lang::En, request_id, audit_seq)
    }

    /// The response body as JSON, its title and detail in `lang`.
    pub fn body_in(&self, lang: Lang, request_id: Option<&str>, audit_seq: Option<u64>) -> Value {
        let kind = self.kind();
        let mut body = json!({
            "type": format!("{PROBLEM_BASE}{}", kind.slug()),
            "title": kind.title(lang),
            "status": kind.status().as_u16(),
            "detail": self.detail(lang),
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

    /// The full response, in English.
    pub fn to_response(&self, request_id: Option<&str>, audit_seq: Option<u64>) -> Response {
        self.to_response_in(Lang::En, request_id, audit_seq)
    }

    /// The full response, its title and detail in `lang` (named in
    /// `Content-Language`).
    pub fn to_response_in(
        &self,
        lang: Lang,
        request_id: Option<&str>,
        audit_seq: Option<u64>,
    ) -> Response {
        let body =
            serde_json::to_vec(&self.body_in(lang, request_id, audit_seq)).unwrap_or_default();
        let mut resp = (self.status(), body).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        h.insert(
            header::CONTENT_LANGUAGE,
            HeaderValue::from_static(lang.tag()),
        );
        h.insert(header::VARY, HeaderValue::from_static("Accept-Language"));
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
        Self::from(Problem::Token(e.clone()))
    }
}

impl From<&Denial> for ApiError {
    fn from(d: &Denial) -> Self {
        Self::from(Problem::Denied(d.clone()))
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
        let e = ApiError::rate_limited(
            crate::problem::Limit::Department {
                dept: "x".into(),
                spec: "1/s".into(),
            },
            std::time::Duration::from_millis(1500),
        );
        assert_eq!(e.retry_after, Some(2));
    }
}
