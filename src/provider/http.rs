//! Upstream providers: the owning department's own REST API.
//!
//! The contract an upstream implements (also in docs/integrating.md):
//!
//! - `GET {base_url}/records/{resident_id}`: 200 with the record as a JSON
//!   object (field name to value), or 404 if the department holds none.
//! - `POST {base_url}/records:batch` with `{"resident_ids": [...]}`: 200 with
//!   `{"records": {"<resident_id>": {…} | null, …}}`; an ID left out or null
//!   has no record.
//!
//! The gateway calls it over mutual TLS (its client certificate, the
//! configured CA), with a connect timeout, a per-dataset answer timeout, a
//! bounded pool and a bound on requests in flight, retries only after a
//! connection failure (never once a request was sent), and a circuit breaker
//! per upstream so a department that is down fails fast without slowing the
//! others. Every answer is checked against the catalog before minimization:
//! fields the catalog does not have are dropped (and counted), a value of the
//! wrong type rejects the whole answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{ACCEPT, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Map, Value, json};

use super::{DataProvider, FetchContext, ProviderError, ProviderFuture};
use crate::config::UpstreamConfig;
use crate::domain::{FieldName, ResidentId};
use crate::metrics::{DatasetLabels, Metrics, ProviderCallLabels};
use crate::pipeline::minimize::Record;
use crate::policy::load::Dataset;
use crate::policy::model::ProviderSpec;
use crate::provider::import::check_type;

/// Largest answer read from an upstream: one record, or one batch.
const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;
/// Most IDs sent in one batch call.
const BATCH_CHUNK: usize = 500;

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;
/// The client every upstream shares, swapped whole on a reload.
type SharedClient = Arc<arc_swap::ArcSwap<HttpsClient>>;

/// The upstream client could not be set up from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamSetupError {
    /// A certificate or key file.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The TLS configuration.
    #[error("upstream TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// Every upstream the gateway calls, one per base URL, created on first use
/// (datasets can be switched to an upstream by a policy edit).
#[derive(Debug)]
pub struct Upstreams {
    /// Swapped whole when the client certificate, its key or the CA change.
    client: SharedClient,
    config: UpstreamConfig,
    user_agent: String,
    metrics: Arc<Metrics>,
    by_url: Mutex<HashMap<String, Arc<Upstream>>>,
}

impl Upstreams {
    /// Reads the CA, the client certificate and key, and builds the pool.
    pub fn new(
        config: &UpstreamConfig,
        node: &str,
        metrics: Arc<Metrics>,
    ) -> Result<Self, UpstreamSetupError> {
        let client = Arc::new(arc_swap::ArcSwap::from_pointee(build_client(config)?));
        Ok(Self {
            client,
            config: config.clone(),
            user_agent: format!("tongban/{} ({node})", env!("CARGO_PKG_VERSION")),
            metrics,
            by_url: Mutex::new(HashMap::new()),
        })
    }

    /// The upstream at `base_url` (shared by every dataset it serves).
    pub fn upstream(&self, base_url: &str) -> Arc<Upstream> {
        let base = base_url.trim_end_matches('/').to_owned();
        let mut map = self
            .by_url
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(base.clone())
            .or_insert_with(|| {
                Arc::new(Upstream {
                    base,
                    client: self.client.clone(),
                    breaker: Breaker::new(
                        self.config.breaker_failures.get(),
                        Duration::from_secs(self.config.breaker_open_secs.max(1)),
                    ),
                    permits: tokio::sync::Semaphore::new(self.config.max_in_flight.get()),
                    retries: self.config.retries,
                    batch_concurrency: self.config.batch_concurrency.get(),
                    user_agent: self.user_agent.clone(),
                    metrics: self.metrics.clone(),
                })
            })
            .clone()
    }

    /// Builds the client again from the certificate, key and CA files and
    /// swaps it in: new calls use it, calls under way finish on the old one.
    /// Files that do not load leave the client in force.
    pub fn reload_tls(&self) -> Result<(), UpstreamSetupError> {
        self.client.store(Arc::new(build_client(&self.config)?));
        Ok(())
    }

    /// The files the client is built from.
    pub fn tls_files(&self) -> Vec<std::path::PathBuf> {
        vec![
            self.config.ca.clone(),
            self.config.client_cert.clone(),
            self.config.client_key.clone(),
        ]
    }

    /// The health of the upstream at `base_url`, as its breaker sees it.
    pub fn health(&self, base_url: &str) -> UpstreamHealth {
        self.upstream(base_url).breaker.health()
    }
}

/// The HTTPS client of every upstream: the upstreams' CA, the gateway's
/// client certificate and key (read from their files now), HTTP/1.1.
fn build_client(config: &UpstreamConfig) -> Result<HttpsClient, UpstreamSetupError> {
    let file_err = |path: &std::path::Path, reason: String| UpstreamSetupError::File {
        path: path.display().to_string(),
        reason,
    };
    let roots = crate::tls_client::roots(&config.ca).map_err(|e| UpstreamSetupError::File {
        path: config.ca.display().to_string(),
        reason: e,
    })?;
    let chain = CertificateDer::pem_file_iter(&config.client_cert)
        .map_err(|e| file_err(&config.client_cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(&config.client_cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(file_err(&config.client_cert, "holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&config.client_key)
        .map_err(|e| file_err(&config.client_key, e.to_string()))?;
    let tls = crate::tls_client::builder()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    Ok(crate::tls_client::client(
        tls,
        Duration::from_millis(config.connect_timeout_ms.max(1)),
        config.max_idle_per_host,
    ))
}

/// One upstream API.
#[derive(Debug)]
pub struct Upstream {
    base: String,
    client: SharedClient,
    breaker: Breaker,
    permits: tokio::sync::Semaphore,
    retries: u32,
    batch_concurrency: usize,
    user_agent: String,
    metrics: Arc<Metrics>,
}

/// The parts of a dataset's `http` provider a call needs.
struct CallSpec {
    timeout: Duration,
    batch: bool,
}

fn call_spec(dataset: &Dataset) -> CallSpec {
    match &dataset.spec.provider {
        Some(ProviderSpec::Http {
            timeout_ms, batch, ..
        }) => CallSpec {
            timeout: Duration::from_millis(*timeout_ms),
            batch: *batch,
        },
        _ => CallSpec {
            timeout: Duration::from_secs(2),
            batch: false,
        },
    }
}

impl Upstream {
    fn request(
        &self,
        ctx: FetchContext<'_>,
        dataset: &Dataset,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Request<Full<Bytes>>, String> {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, self.user_agent.as_str())
            .header("x-request-id", ctx.request_id)
            .header("x-tongban-consumer", ctx.consumer)
            .header("x-tongban-purpose", ctx.purpose)
            .header("x-tongban-dataset", dataset.spec.id.as_str());
        if let Some(trace) = ctx.trace_id {
            b = b.header("traceparent", format!("00-{trace}-{}-01", span_id()));
        }
        let body = match body {
            Some(v) => {
                b = b.header(CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(v.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        b.body(body)
            .map_err(|e| format!("the request cannot be built ({e})"))
    }

    /// One call: admitted by the breaker, bounded in flight and in time,
    /// retried only after a connection failure.
    async fn call(
        &self,
        dataset: &Dataset,
        timeout: Duration,
        make: impl Fn() -> Result<Request<Full<Bytes>>, String>,
    ) -> Result<(StatusCode, Bytes), ProviderError> {
        let id = &dataset.spec.id;
        let labels = DatasetLabels {
            dataset: id.to_string(),
        };
        if !self.breaker.admit() {
            self.count(id, "circuit_open");
            return Err(ProviderError::Unavailable {
                dataset: id.clone(),
                reason: "its circuit is open after repeated failures".into(),
            });
        }
        let started = Instant::now();
        let attempt = async {
            let _permit = self.permits.acquire().await.ok();
            let client = self.client.load_full();
            let mut tries = 0;
            loop {
                match client.request(make()?).await {
                    Ok(resp) => {
                        let status = resp.status();
                        let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
                            .collect()
                            .await
                            .map_err(|e| format!("reading the answer: {e}"))?
                            .to_bytes();
                        return Ok((status, body));
                    }
                    Err(e) if e.is_connect() && tries < self.retries => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(20 * u64::from(tries))).await;
                    }
                    Err(e) if e.is_connect() => return Err(format!("cannot connect ({e})")),
                    Err(e) => return Err(format!("the request failed ({e})")),
                }
            }
        };
        let result = tokio::time::timeout(timeout, attempt).await;
        self.metrics
            .provider_seconds
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        match result {
            Err(_) => {
                self.breaker.failure("timeout");
                self.count(id, "timeout");
                Err(ProviderError::Timeout {
                    dataset: id.clone(),
                    millis: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                })
            }
            Ok(Err(reason)) => {
                self.breaker.failure(&reason);
                self.count(id, "unavailable");
                Err(ProviderError::Unavailable {
                    dataset: id.clone(),
                    reason,
                })
            }
            Ok(Ok((status, _)))
                if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS =>
            {
                let reason = format!("it answered {status}");
                self.breaker.failure(&reason);
                self.count(id, "unavailable");
                Err(ProviderError::Unavailable {
                    dataset: id.clone(),
                    reason,
                })
            }
            Ok(Ok(answer)) => {
                self.breaker.success();
                Ok(answer)
            }
        }
    }

    fn count(&self, dataset: &crate::domain::DatasetId, outcome: &'static str) {
        self.metrics
            .provider_calls
            .get_or_create(&ProviderCallLabels {
                dataset: dataset.to_string(),
                outcome,
            })
            .inc();
    }

    fn invalid(&self, dataset: &Dataset, message: String) -> ProviderError {
        self.count(&dataset.spec.id, "invalid");
        tracing::warn!(dataset = %dataset.spec.id, upstream = %self.base, problem = %message, "upstream answer refused");
        ProviderError::InvalidAnswer {
            dataset: dataset.spec.id.clone(),
            message,
        }
    }

    async fn get_one(
        &self,
        ctx: FetchContext<'_>,
        dataset: &Dataset,
        resident: &ResidentId,
        timeout: Duration,
    ) -> Result<Option<Record>, ProviderError> {
        let path = format!("/records/{}", resident.as_str());
        let (status, body) = self
            .call(dataset, timeout, || {
                self.request(ctx, dataset, Method::GET, &path, None)
            })
            .await?;
        match status {
            StatusCode::OK => {
                let value: Value = serde_json::from_slice(&body)
                    .map_err(|_| self.invalid(dataset, "the answer is not JSON".into()))?;
                let Value::Object(map) = value else {
                    return Err(self.invalid(dataset, "the answer is not a JSON object".into()));
                };
                let record = self.check(dataset, map)?;
                self.count(&dataset.spec.id, "found");
                Ok(Some(record))
            }
            StatusCode::NOT_FOUND => {
                self.count(&dataset.spec.id, "not_found");
                Ok(None)
            }
            other => Err(self.invalid(dataset, format!("unexpected status {other}"))),
        }
    }

    async fn post_batch(
        &self,
        ctx: FetchContext<'_>,
        dataset: &Dataset,
        residents: &[ResidentId],
        timeout: Duration,
    ) -> Result<Vec<Option<Record>>, ProviderError> {
        let body =
            json!({"resident_ids": residents.iter().map(ResidentId::as_str).collect::<Vec<_>>()});
        let (status, answer) = self
            .call(dataset, timeout, || {
                self.request(ctx, dataset, Method::POST, "/records:batch", Some(&body))
            })
            .await?;
        if status != StatusCode::OK {
            return Err(self.invalid(dataset, format!("unexpected status {status}")));
        }
        let mut value: Value = serde_json::from_slice(&answer)
            .map_err(|_| self.invalid(dataset, "the batch answer is not JSON".into()))?;
        let Some(Value::Object(records)) = value.get_mut("records").map(Value::take) else {
            return Err(self.invalid(dataset, "the batch answer has no \"records\" object".into()));
        };
        let mut records = records;
        let mut out = Vec::with_capacity(residents.len());
        for id in residents {
            match records.remove(id.as_str()) {
                None | Some(Value::Null) => {
                    self.count(&dataset.spec.id, "not_found");
                    out.push(None);
                }
                Some(Value::Object(map)) => {
                    out.push(Some(self.check(dataset, map)?));
                    self.count(&dataset.spec.id, "found");
                }
                Some(_) => {
                    return Err(self.invalid(dataset, "a batch record is not a JSON object".into()));
                }
            }
        }
        if !records.is_empty() {
            tracing::warn!(dataset = %dataset.spec.id, upstream = %self.base, extra = records.len(), "upstream answered for residents not asked about; ignored");
        }
        Ok(out)
    }

    /// The answer as the catalog allows it: unknown fields dropped (and
    /// counted), a value of the wrong type refuses the whole answer.
    fn check(&self, dataset: &Dataset, map: Map<String, Value>) -> Result<Record, ProviderError> {
        let mut record = Record::new();
        let mut dropped: Vec<String> = Vec::new();
        for (name, value) in map {
            match dataset.fields.get(name.as_str()) {
                Some(spec) => {
                    check_type(spec.kind, &value).map_err(|expected| {
                        self.invalid(dataset, format!("field \"{name}\" is not {expected}"))
                    })?;
                    record.insert(name, value);
                }
                // The record key is not a field unless the catalog lists it.
                None if name == "id_number" => {}
                None => dropped.push(name),
            }
        }
        if !dropped.is_empty() {
            self.metrics
                .provider_dropped_fields
                .get_or_create(&DatasetLabels {
                    dataset: dataset.spec.id.to_string(),
                })
                .inc_by(dropped.len() as u64);
            // Names only, and only names that are field codes: a careless
            // upstream could put anything in a key.
            let names: Vec<&str> = dropped
                .iter()
                .map(|n| {
                    if FieldName::parse(n).is_ok() {
                        n.as_str()
                    } else {
                        "<not a field name>"
                    }
                })
                .take(16)
                .collect();
            tracing::warn!(dataset = %dataset.spec.id, upstream = %self.base, fields = ?names, "upstream returned fields its catalog entry does not have; dropped");
        }
        Ok(record)
    }
}

impl DataProvider for Upstream {
    fn fetch<'a>(
        &'a self,
        ctx: FetchContext<'a>,
        dataset: &'a Dataset,
        resident: &'a ResidentId,
    ) -> ProviderFuture<'a, Option<Record>> {
        Box::pin(async move {
            let spec = call_spec(dataset);
            self.get_one(ctx, dataset, resident, spec.timeout).await
        })
    }

    fn fetch_many<'a>(
        &'a self,
        ctx: FetchContext<'a>,
        dataset: &'a Dataset,
        residents: &'a [ResidentId],
    ) -> ProviderFuture<'a, Vec<Option<Record>>> {
        Box::pin(async move {
            let spec = call_spec(dataset);
            if spec.batch {
                let mut out = Vec::with_capacity(residents.len());
                for chunk in residents.chunks(BATCH_CHUNK) {
                    out.extend(self.post_batch(ctx, dataset, chunk, spec.timeout).await?);
                }
                return Ok(out);
            }
            let mut calls: Vec<ProviderFuture<'a, Option<Record>>> =
                Vec::with_capacity(residents.len());
            for id in residents {
                calls.push(Box::pin(self.get_one(ctx, dataset, id, spec.timeout)));
            }
            let answers: Vec<Result<Option<Record>, ProviderError>> =
                futures_util::stream::iter(calls)
                    .buffered(self.batch_concurrency.max(1))
                    .collect()
                    .await;
            answers.into_iter().collect()
        })
    }
}

/// A random W3C span id (16 hex digits, not all zero).
fn span_id() -> String {
    let mut id = [0u8; 8];
    let _ = aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut id);
    id[0] |= 1;
    crate::domain::hex(&id)
}

/// An upstream's state as its circuit breaker sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UpstreamHealth {
    /// `up` (closed), `down` (open) or `trial` (half-open: one call decides).
    pub state: &'static str,
    /// Consecutive failures.
    pub failures: u32,
    /// The last failure, if any (never a field value or resident ID).
    pub last_error: Option<String>,
}

/// A circuit breaker: closed until `threshold` consecutive failures, then
/// open (refusing at once) for `open_for`, then one trial call decides.
#[derive(Debug)]
struct Breaker {
    threshold: u32,
    open_for: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Debug)]
struct BreakerState {
    failures: u32,
    open_until: Option<Instant>,
    trial_since: Option<Instant>,
    last_error: Option<String>,
}

impl Breaker {
    fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            open_for,
            state: Mutex::new(BreakerState {
                failures: 0,
                open_until: None,
                trial_since: None,
                last_error: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a call may go out now.
    fn admit(&self) -> bool {
        let mut s = self.lock();
        let now = Instant::now();
        match s.open_until {
            None => true,
            Some(until) if now < until => false,
            Some(_) => match s.trial_since {
                // One trial at a time; a trial that never reported back (its
                // caller went away) is replaced after another open period.
                Some(since) if now.duration_since(since) < self.open_for => false,
                _ => {
                    s.trial_since = Some(now);
                    true
                }
            },
        }
    }

    fn success(&self) {
        let mut s = self.lock();
        s.failures = 0;
        s.open_until = None;
        s.trial_since = None;
    }

    fn failure(&self, reason: &str) {
        let mut s = self.lock();
        s.failures = s.failures.saturating_add(1);
        s.last_error = Some(reason.to_owned());
        if s.trial_since.is_some() || s.failures >= self.threshold {
            s.open_until = Some(Instant::now() + self.open_for);
            s.trial_since = None;
        }
    }

    fn health(&self) -> UpstreamHealth {
        let s = self.lock();
        let state = match s.open_until {
            None => "up",
            Some(until) if Instant::now() < until => "down",
            Some(_) => "trial",
        };
        UpstreamHealth {
            state,
            failures: s.failures,
            last_error: s.last_error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_the_threshold_and_one_trial_closes_it() {
        let b = Breaker::new(3, Duration::from_millis(50));
        for _ in 0..2 {
            assert!(b.admit());
            b.failure("down");
        }
        assert!(b.admit(), "still closed below the threshold");
        b.failure("down");
        assert!(!b.admit(), "open after three failures");
        assert_eq!(b.health().state, "down");
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.admit(), "one trial after the open period");
        assert!(!b.admit(), "only one trial at a time");
        b.failure("still down");
        assert!(!b.admit(), "a failed trial opens it again");
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.admit());
        b.success();
        assert!(b.admit() && b.admit(), "a good trial closes it");
        assert_eq!(b.health().state, "up");
        assert_eq!(b.health().failures, 0);
    }
}
