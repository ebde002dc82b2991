//! The HTTP surface, one router per audience, and the one place where a
//! request's audit event is appended before its answer leaves.

pub mod admin;
pub mod answer;
pub mod audit;
pub mod cases;
pub mod console;
pub mod evaluation;
pub mod flags;
pub mod me;
pub mod objections;
pub mod openapi;
pub mod ops;
pub mod problems;
pub mod query;
pub mod request_id;
pub mod retention;

use std::future::Future as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::audit::{EventBody, EventKind, Outcome};
use crate::error::ApiError;
use crate::gateway::Gateway;
pub use crate::pipeline::connection::{
    CONNECTION, ClientCertStatus, ConnInfo, Connection, WriteProgress,
};
use crate::problem::{PathFault, Problem, ProblemType, QueryFault};
pub use request_id::RequestId;

/// Refuses every request on a connection whose client certificate no longer
/// passes (revoked by a CRL loaded after the handshake, or its CRL went
/// stale): 401 `client-certificate-revoked`, audited, and on HTTP/1.1 the
/// connection is closed so that the client has to handshake again.
async fn client_certificate_guard(
    axum::extract::State(gw): axum::extract::State<Arc<Gateway>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match at_the_door(&gw, req.headers(), req.extensions()) {
        None => {
            published_keys_for(&gw, req.headers()).await;
            // Only a request made in-process lacks it: no peer, no certificate.
            let conn = req
                .extensions()
                .get::<ConnInfo>()
                .cloned()
                .unwrap_or_default();
            CONNECTION.scope(conn, next.run(req)).await
        }
        Some(refusal) => refuse_at_the_door(&gw, req.into_parts().0, refusal).await,
    }
}

/// Serves a request outside the router as its layers would: refused at the
/// door, or served by `serve` within its connection's scope.
pub(crate) async fn through_the_door<F: std::future::Future<Output = Response>>(
    gw: &Gateway,
    parts: Parts,
    serve: impl FnOnce(Parts) -> F,
) -> Response {
    if let Some(refusal) = at_the_door(gw, &parts.headers, &parts.extensions) {
        return refuse_at_the_door(gw, parts, refusal).await;
    }
    published_keys_for(gw, &parts.headers).await;
    // Only a request made in-process lacks it: no peer, no certificate.
    let conn = parts
        .extensions
        .get::<ConnInfo>()
        .cloned()
        .unwrap_or_default();
    CONNECTION.scope(conn, serve(parts)).await
}

/// A token whose issuer publishes its keys, naming a key the published set
/// lacks: the set is fetched again before the token is verified (at most
/// once per `jwks_min_refetch_secs`). Nothing when no issuer publishes keys.
async fn published_keys_for(gw: &Gateway, headers: &axum::http::HeaderMap) {
    if gw.auth.publishes_keys() {
        let authorization = headers
            .get_all(axum::http::header::AUTHORIZATION)
            .iter()
            .map(|v| v.as_bytes());
        gw.auth.fetch_keys_for(authorization).await;
    }
}

/// Why a request is answered before any route looks at it.
#[derive(Debug, Clone, Copy)]
enum AtTheDoor {
    /// Its connection's client certificate no longer passes.
    Revoked,
    /// Its headers take this many bytes, over the limit.
    HeadersTooLarge(usize),
}

/// What every request passes before its route: its connection's client
/// certificate still passes, and its headers are within the limit (the
/// same bound over HTTP/1.1 and HTTP/2, answered as a problem).
fn at_the_door(
    gw: &Gateway,
    headers: &axum::http::HeaderMap,
    extensions: &axum::http::Extensions,
) -> Option<AtTheDoor> {
    let revoked = extensions
        .get::<ConnInfo>()
        .and_then(|c| c.cert_status.as_ref())
        .is_some_and(|s| !s.still_valid());
    if revoked {
        return Some(AtTheDoor::Revoked);
    }
    let header_bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    (header_bytes > gw.config.limits.max_header_bytes)
        .then_some(AtTheDoor::HeadersTooLarge(header_bytes))
}

/// The answer to a request refused at the door, audited; on HTTP/1.1 the
/// connection is closed.
async fn refuse_at_the_door(gw: &Gateway, parts: Parts, refusal: AtTheDoor) -> Response {
    let http1 = parts.version < axum::http::Version::HTTP_2;
    let ctx = RequestContext::of(&parts, gw);
    let (event, e) = match refusal {
        AtTheDoor::Revoked => (
            ctx.event(
                EventKind::Other,
                ProblemType::ClientCertificateRevoked.slug(),
            ),
            ApiError::from(Problem::ClientCertificateRevoked),
        ),
        AtTheDoor::HeadersTooLarge(bytes) => (
            ctx.event(EventKind::Other, ProblemType::HeadersTooLarge.slug()),
            ApiError::from(Problem::HeadersTooLarge {
                bytes,
                limit: gw.config.limits.max_header_bytes,
            }),
        ),
    };
    let mut response = finish(gw, &ctx, event, Err(e)).await;
    if http1 {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// Every documented route: each is registered with its OpenAPI description.
fn routes(metrics_here: bool) -> utoipa_axum::router::OpenApiRouter<Arc<Gateway>> {
    utoipa_axum::router::OpenApiRouter::new()
        .merge(ops::router(metrics_here))
        .merge(problems::router())
        .merge(query::router())
        .merge(cases::router())
        .merge(flags::router())
        .merge(me::router())
        .merge(objections::router())
        .merge(evaluation::router())
        .merge(audit::router())
        .merge(retention::router())
        .merge(admin::router())
}

/// The OpenAPI 3.1 description of the gateway's routes, as `/openapi.json` serves it.
pub fn openapi_document(metrics_here: bool) -> utoipa::openapi::OpenApi {
    let (_, paths) = routes(metrics_here).split_for_parts();
    openapi::document(paths)
}

/// Builds the whole router over the gateway state.
pub fn build_app(gw: Arc<Gateway>) -> Router {
    let (router, _) = routes(gw.config.metrics_listen.is_none()).split_for_parts();
    router
        .merge(console::router())
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        // Bodies (admin edits, batches) are bounded in size before any handler
        // reads them, and in time: a client that trickles its body gets 408.
        .layer(axum::extract::DefaultBodyLimit::max(
            gw.config.limits.max_body_bytes,
        ))
        .layer(axum::middleware::map_request(with_body_deadline(
            Duration::from_secs(gw.config.limits.body_timeout_secs.max(1)),
            Duration::from_secs(gw.config.limits.import_timeout_secs.max(1)),
        )))
        .layer(axum::middleware::from_fn_with_state(
            gw.clone(),
            client_certificate_guard,
        ))
        .with_state(gw)
}

/// The body of a request read past its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimedOut(Duration);

/// Wraps every request body that is still to come in a deadline: `import`
/// for an online import of records, `limit` for every other.
fn with_body_deadline(
    limit: Duration,
    import: Duration,
) -> impl Fn(axum::extract::Request) -> std::future::Ready<axum::extract::Request>
+ Clone
+ Send
+ Sync
+ 'static {
    move |req: axum::extract::Request| {
        use axum::body::HttpBody as _;
        if req.body().is_end_stream() {
            return std::future::ready(req);
        }
        let (parts, body) = req.into_parts();
        let is_import = parts.uri.path().starts_with("/v1/admin/datasets/")
            && parts.uri.path().ends_with("/records");
        let limit = if is_import { import } else { limit };
        let body = axum::body::Body::new(DeadlineBody {
            inner: body,
            deadline: Box::pin(tokio::time::sleep(limit)),
            limit,
        });
        std::future::ready(axum::extract::Request::from_parts(parts, body))
    }
}

/// A body that fails with [`BodyTimedOut`] if it is not complete by its deadline.
struct DeadlineBody {
    inner: axum::body::Body,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

impl axum::body::HttpBody for DeadlineBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if let std::task::Poll::Ready(frame) = std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            return std::task::Poll::Ready(frame);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut(this.limit)))));
        }
        std::task::Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl std::fmt::Debug for DeadlineBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadlineBody")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

/// Per-request facts gathered before any stage runs.
#[derive(Debug)]
pub struct RequestContext {
    /// Returned in `X-Request-Id` and recorded in the audit event.
    pub request_id: RequestId,
    /// When the request arrived (monotonic).
    pub started: Instant,
    /// When the request arrived, ms since the epoch.
    pub time_ms: i64,
    /// The connection it came on.
    pub conn: ConnInfo,
    /// The W3C trace id from a valid `traceparent` header, for logs and upstreams.
    pub trace_id: Option<String>,
    /// The language its refusals are told in (`Accept-Language`).
    pub lang: crate::problem::Lang,
    /// Counts the request as on its way to the audit writer until its
    /// event is queued (a group waits for it, briefly).
    pub in_flight: crate::audit::writer::InFlight,
}

/// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), if valid.
pub fn trace_id(traceparent: Option<&axum::http::HeaderValue>) -> Option<String> {
    let s = traceparent?.to_str().ok()?;
    let parts: Vec<&str> = s.trim().split('-').collect();
    let hex = |p: &str, n: usize| {
        p.len() == n
            && p.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let ok = parts.len() == 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && parts[1].bytes().any(|b| b != b'0')
        && hex(parts[2], 16)
        && parts[2].bytes().any(|b| b != b'0')
        && hex(parts[3], 2);
    ok.then(|| parts[1].to_owned())
}

impl FromRequestParts<Arc<Gateway>> for RequestContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        gw: &Arc<Gateway>,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self::of(parts, gw))
    }
}

/// The request's headers, moved out of the request rather than copied: the
/// last extractor of a handler that reads them (after [`RequestContext`]).
#[derive(Debug)]
pub struct Headers(pub axum::http::HeaderMap);

impl<S: Send + Sync> FromRequestParts<S> for Headers {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(std::mem::take(&mut parts.headers)))
    }
}

impl RequestContext {
    /// The context of a request that has just arrived.
    pub fn of(parts: &Parts, gw: &Gateway) -> Self {
        Self {
            request_id: RequestId::next(),
            started: Instant::now(),
            time_ms: gw.clock.unix_millis(),
            // In-process requests only: no peer, no certificate.
            conn: parts
                .extensions
                .get::<ConnInfo>()
                .cloned()
                .unwrap_or_default(),
            trace_id: trace_id(parts.headers.get("traceparent")),
            lang: crate::problem::Lang::negotiate(
                parts
                    .headers
                    .get(header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok()),
            ),
            in_flight: gw.audit.in_flight(),
        }
    }

    /// A fresh audit event for this request.
    pub fn event(&self, kind: EventKind, operation: &'static str) -> EventBody {
        let mut e = EventBody::system(self.time_ms, kind, operation);
        e.request_id.push_str(&self.request_id);
        e.cert_fingerprint = self.conn.cert_fingerprint;
        e.source = self.conn.source();
        e.outcome = Outcome::Deny;
        e
    }
}

/// A successful answer, before its audit sequence number is known.
#[derive(Debug)]
pub enum Answer {
    /// A JSON object; `audit` is added when the event is durable.
    Json {
        /// HTTP status.
        status: StatusCode,
        /// The members.
        body: Map<String, Value>,
        /// An entity tag for `ETag`.
        etag: Option<String>,
        /// Claims to sign into a proof (signed answers), once the audit
        /// sequence numbers are known; the proof is added as `proof`.
        proof: Option<Box<Map<String, Value>>>,
    },
    /// A record route's answer, typed; its `audit` is filled in once the
    /// events are durable.
    Typed {
        /// The answer.
        answer: Box<answer::Typed>,
        /// Claims to sign into its proof, as for [`Answer::Json`].
        proof: Option<Box<Map<String, Value>>>,
    },
    /// Anything else (CSV, NDJSON streams), sent as it is.
    Raw {
        /// `Content-Type`.
        content_type: &'static str,
        /// Offered file name, for downloads.
        filename: Option<String>,
        /// The body.
        body: axum::body::Body,
    },
}

impl Answer {
    /// 200 with `body`.
    pub fn ok(body: Map<String, Value>) -> Self {
        Self::Json {
            status: StatusCode::OK,
            body,
            etag: None,
            proof: None,
        }
    }

    /// 200 with a record route's typed answer, and the claims of its proof.
    pub fn typed(answer: answer::Typed, proof: Option<Box<Map<String, Value>>>) -> Self {
        Self::Typed {
            answer: Box::new(answer),
            proof,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::Json { status, .. } => *status,
            Self::Raw { .. } | Self::Typed { .. } => StatusCode::OK,
        }
    }
}

/// Appends the request's audit event, waits until it is durable, then builds
/// the response. If the event cannot be made durable, the answer is dropped
/// and the caller gets 503: no data leaves unaudited.
pub async fn finish(
    gw: &Gateway,
    ctx: &RequestContext,
    event: EventBody,
    result: Result<Answer, ApiError>,
) -> Response {
    finish_then(gw, ctx, event, result, |_| async { Ok(()) }).await
}

/// As [`finish`], and once the event is durable (and only then) runs
/// `after_audit` with its sequence number: a policy change takes effect only
/// after the event that records it. If that step fails, its error is answered
/// instead of the prepared answer.
pub async fn finish_then(
    gw: &Gateway,
    ctx: &RequestContext,
    event: EventBody,
    result: Result<Answer, ApiError>,
    after_audit: impl AfterAudit,
) -> Response {
    finish_events(gw, ctx, event, Vec::new(), result, after_audit).await
}

/// What runs once a request's event is durable (given its sequence number),
/// before the answer leaves: putting a change in force.
pub trait AfterAudit: FnOnce(u64) -> Self::Fut {
    /// Its future.
    type Fut: std::future::Future<Output = Result<(), ApiError>>;
}

impl<F, Fut> AfterAudit for F
where
    F: FnOnce(u64) -> Fut,
    Fut: std::future::Future<Output = Result<(), ApiError>>,
{
    type Fut = Fut;
}

/// As [`finish`] for a request that discloses records of many residents (a
/// batch): on success `per_resident` are appended instead of `event`, one per
/// resident, in one group commit, so disclosure reports stay exact. On a
/// refusal, `event` alone records it. `after_audit` as for [`finish_then`].
pub async fn finish_batch(
    gw: &Gateway,
    ctx: &RequestContext,
    event: EventBody,
    per_resident: Vec<EventBody>,
    result: Result<Answer, ApiError>,
    after_audit: impl AfterAudit,
) -> Response {
    finish_events(gw, ctx, event, per_resident, result, after_audit).await
}

async fn finish_events(
    gw: &Gateway,
    ctx: &RequestContext,
    mut event: EventBody,
    per_resident: Vec<EventBody>,
    result: Result<Answer, ApiError>,
    after_audit: impl AfterAudit,
) -> Response {
    if let Some(refused) = summarised_refusal(gw, ctx, &event, &result) {
        return refused;
    }
    record_outcome(&mut event, &result);
    let latency_us = u32::try_from(ctx.started.elapsed().as_micros()).unwrap_or(u32::MAX);
    event.latency_us = latency_us;
    let (operation, status, outcome) = (event.operation.clone(), event.status, event.outcome);
    let reason = event.reason.clone();
    let dept = event.dept.clone();
    let events = if result.is_ok() && !per_resident.is_empty() {
        per_resident
            .into_iter()
            .map(|mut e| {
                e.latency_us = latency_us;
                e
            })
            .collect()
    } else {
        vec![event]
    };
    let count = events.len() as u64;
    // A signed answer: the writer signs it once the events are numbered and
    // records its hash in them, so the log names every proof it issued.
    let slot: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let mut result = result;
    let finalize = proof_finalizer(gw, &mut result, &slot);
    let mut response = match gw
        .audit
        .append_on_way(events, finalize, Some(&ctx.in_flight))
        .await
    {
        Err(e) => {
            tracing::error!(request_id = %ctx.request_id, error = %e, "audit append failed; answering 503");
            ApiError::audit_unavailable().to_response_in(ctx.lang, Some(&ctx.request_id), None)
        }
        Ok(seq) => {
            let result = match result {
                Ok(answer) => after_audit(seq).await.map(|()| answer),
                Err(e) => Err(e),
            };
            let proof = slot.lock().ok().and_then(|mut s| s.take());
            let mut response = match result {
                Ok(answer) => {
                    answer.into_response_with(seq, seq + count - 1, &ctx.request_id, proof)
                }
                Err(e) => e.to_response_in(ctx.lang, Some(&ctx.request_id), Some(seq)),
            };
            response
                .headers_mut()
                .insert("x-audit-seq", HeaderValue::from(seq));
            response
        }
    };
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    let answered = response.status().as_u16();
    let seconds = ctx.started.elapsed().as_secs_f64();
    gw.metrics.observe_request(
        &operation,
        outcome.as_str(),
        answered,
        seconds,
        reason.as_deref(),
    );
    // One line per request: never a token, a resident ID or a field value.
    crate::logsink::Access {
        request_id: &ctx.request_id,
        trace_id: ctx.trace_id.as_deref().unwrap_or(""),
        operation: &operation,
        dept: dept.as_deref().unwrap_or("-"),
        decision: outcome.as_str(),
        reason: reason.as_deref().unwrap_or("-"),
        status: answered,
        recorded_status: status,
        events: count,
        latency_us: u64::try_from(ctx.started.elapsed().as_micros()).unwrap_or(u64::MAX),
    }
    .log();
    response
}

/// A refusal before authentication, from a source past its limit: counted
/// for the minute's summary event instead of audited on its own, and
/// answered at once (429). `None` for every other result.
fn summarised_refusal(
    gw: &Gateway,
    ctx: &RequestContext,
    event: &EventBody,
    result: &Result<Answer, ApiError>,
) -> Option<Response> {
    // A refusal before authentication, past its source's limit: counted for
    // the minute's summary event, not audited on its own, answered at once.
    // Before admission: no principal yet, or a token refused after all
    // (revoked, bound to another certificate, of another department than
    // the certificate's), or a suspended department.
    let before_admission = result.as_ref().is_err_and(|e| {
        event.dept.is_none()
            || e.status() == StatusCode::UNAUTHORIZED
            || e.kind() == ProblemType::DepartmentSuspended
    });
    if !before_admission {
        return None;
    }
    let peer = ctx.conn.peer?;
    if gw.unauthenticated.admit(peer.ip()) {
        return None;
    }
    ctx.in_flight.release();
    gw.metrics.unauthenticated_limited.inc();
    let mut e = ApiError::from(Problem::UnauthenticatedRateLimited {
        spec: gw.unauthenticated.spec().to_string(),
    });
    e.retry_after = Some(gw.unauthenticated.spec().per.as_secs().max(1));
    let mut response = e.to_response_in(ctx.lang, Some(&ctx.request_id), None);
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    Some(response)
}

/// The request's outcome, as its event records it.
fn record_outcome(event: &mut EventBody, result: &Result<Answer, ApiError>) {
    match result {
        Ok(answer) => {
            event.status = answer.status().as_u16();
            event.outcome = Outcome::Allow;
            event.reason = None;
        }
        Err(e) => {
            event.status = e.status().as_u16();
            event.outcome = e.outcome();
            event.reason = Some(e.slug().into());
            event.fields.clear();
        }
    }
}

/// For a signed answer, what the audit writer runs once the request's
/// events are numbered: it signs the proof, naming them, leaves it in
/// `slot` and returns its hash for the events to record.
fn proof_finalizer(
    gw: &Gateway,
    result: &mut Result<Answer, ApiError>,
    slot: &Arc<std::sync::Mutex<Option<String>>>,
) -> Option<crate::audit::writer::Finalizer> {
    match result {
        Ok(Answer::Json { proof, .. } | Answer::Typed { proof, .. }) => {
            proof.take().map(|claims| {
                let keys = gw.answer_keys.load_full();
                let slot = Arc::clone(slot);
                let mut claims = *claims;
                Box::new(move |first: u64, last: u64| {
                    claims.insert("audit_seq".into(), json!(first));
                    if last > first {
                        claims.insert("last_seq".into(), json!(last));
                    }
                    let jws = keys.sign(&claims);
                    let hash = crate::proof::proof_hash(&jws);
                    if let Ok(mut s) = slot.lock() {
                        *s = Some(jws);
                    }
                    hash
                }) as crate::audit::writer::Finalizer
            })
        }
        _ => None,
    }
}

impl Answer {
    fn into_response_with(
        self,
        seq: u64,
        last_seq: u64,
        request_id: &str,
        proof: Option<String>,
    ) -> Response {
        match self {
            Answer::Json {
                status,
                mut body,
                etag,
                ..
            } => {
                let signed = proof.is_some();
                if let Some(p) = proof {
                    body.insert("proof".into(), Value::String(p));
                }
                let audit = if last_seq > seq {
                    json!({"seq": seq, "last_seq": last_seq, "request_id": request_id})
                } else {
                    json!({"seq": seq, "request_id": request_id})
                };
                body.insert("audit".into(), audit);
                let mut response = json_response(status, &body, signed);
                if let Some(v) = etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
                    response.headers_mut().insert(header::ETAG, v);
                }
                response
            }
            Answer::Typed { mut answer, .. } => {
                let signed = proof.is_some();
                let audit = answer::AuditRef {
                    last_seq: (last_seq > seq).then_some(last_seq),
                    request_id: request_id.to_owned(),
                    seq,
                };
                answer.seal(audit, proof);
                json_response(StatusCode::OK, &answer, signed)
            }
            Answer::Raw {
                content_type,
                filename,
                body,
            } => {
                let mut response = (StatusCode::OK, body).into_response();
                let h = response.headers_mut();
                h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
                let disposition = filename.and_then(|f| {
                    HeaderValue::from_str(&format!("attachment; filename=\"{f}\"")).ok()
                });
                if let Some(v) = disposition {
                    h.insert(header::CONTENT_DISPOSITION, v);
                }
                response
            }
        }
    }
}

/// `body` serialized as a JSON answer (`Preference-Applied: signed` when it
/// carries a proof).
fn json_response(status: StatusCode, body: &impl serde::Serialize, signed: bool) -> Response {
    // One buffer sized for a typical answer: no regrowth while serializing.
    let mut bytes = Vec::with_capacity(1024);
    let mut response = match serde_json::to_writer(&mut bytes, body) {
        Ok(()) => {
            let mut r = (status, bytes).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "an answer could not be serialized");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    if signed {
        response
            .headers_mut()
            .insert("preference-applied", HeaderValue::from_static("signed"));
    }
    response
}

async fn no_route(
    axum::extract::State(gw): axum::extract::State<Arc<Gateway>>,
    ctx: RequestContext,
) -> Response {
    let event = ctx.event(EventKind::Other, "no-route");
    finish(&gw, &ctx, event, Err(Problem::NoSuchRoute.into())).await
}

async fn method_not_allowed(
    axum::extract::State(gw): axum::extract::State<Arc<Gateway>>,
    ctx: RequestContext,
) -> Response {
    let event = ctx.event(EventKind::Other, ProblemType::MethodNotAllowed.slug());
    let e = ApiError::from(Problem::MethodNotAllowed);
    finish(&gw, &ctx, event, Err(e)).await
}

/// Reads a JSON body into `T`: 415 for another media type, 413 past the
/// body limit, 400 with serde's message (line and column) when malformed.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(
    headers: &axum::http::HeaderMap,
    body: Result<bytes::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<T, ApiError> {
    admin::parse_body(headers, body, false)
}

/// 400 for a query string that does not parse into the route's parameters.
pub(crate) fn bad_query(e: &axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::from(Problem::InvalidQuery(QueryFault::Unreadable(e.body_text())))
}

/// 400 for a path whose segments cannot be read (bad percent-encoding, not UTF-8).
pub(crate) fn bad_path(e: &axum::extract::rejection::PathRejection) -> ApiError {
    ApiError::from(Problem::InvalidPath(PathFault::Unreadable(e.body_text())))
}
