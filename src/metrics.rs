//! Prometheus metrics (OpenMetrics text, encoded by `prometheus-client`).
//!
//! Requests by operation, decision and status; latency histograms; rate-limit
//! refusals; audit group-commit sizes and flush latency; checkpoints; TLS
//! handshake failures; the policy version in force and refused reloads.
//! Labels never hold a resident ID, a subject or a field value.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The operation (`lookup`, `catalog`, `audit.search`, …).
    pub operation: String,
    /// `allow`, `deny` or `error`.
    pub decision: String,
    /// The HTTP status.
    pub status: u16,
}

/// Labels of a latency observation.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// The operation.
    pub operation: String,
}

/// Labels of the policy-version info metric.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    /// The content hash of the policy set in force.
    pub version: String,
}

/// Labels of a rate-limit refusal.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    /// The operation refused.
    pub operation: String,
}

/// Labels of an upstream provider's dataset.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DatasetLabels {
    /// The dataset.
    pub dataset: String,
}

/// Labels of one call to an upstream provider.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderCallLabels {
    /// The dataset.
    pub dataset: String,
    /// `found`, `not_found`, `unavailable`, `timeout`, `invalid` or `circuit_open`.
    pub outcome: &'static str,
}

/// Labels of a refused client certificate.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertRefusalLabels {
    /// `revoked`, `crl_expired`, `revocation_unknown`, `expired`,
    /// `not_yet_valid`, `unknown_issuer`, `bad_signature`, `bad_encoding`,
    /// `wrong_usage` or `other`.
    pub reason: &'static str,
}

/// Labels of a CRL in force.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CrlLabels {
    /// The CRL's issuer (distinguished name).
    pub issuer: String,
}

/// One record route's metric handles.
#[derive(Debug)]
struct HotRoute {
    operation: &'static str,
    answered: Counter,
    latency: Histogram,
}

/// Every metric of the gateway.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// The record routes' handles, resolved at start: the latency series of
    /// each, and its counter of answered (`allow`, 200) requests. Other
    /// label sets are looked up in their family.
    hot: Vec<HotRoute>,
    /// Requests answered.
    pub requests: Family<RequestLabels, Counter>,
    /// Time from arrival to the audit event being durable, seconds.
    pub latency: Family<OperationLabels, Histogram>,
    /// Requests refused by a rate limit.
    pub rate_limited: Family<LimitLabels, Counter>,
    /// Events per audit group commit.
    pub audit_batch_size: Histogram,
    /// Time to write and sync one group commit, seconds.
    pub audit_flush_seconds: Histogram,
    /// Checkpoints signed.
    pub audit_checkpoints: Counter,
    /// Whether the audit writer is healthy (1) or failed (0).
    pub audit_writer_up: Gauge,
    /// TLS handshakes that failed or timed out.
    pub tls_handshake_failures: Counter,
    /// Client certificates refused at the handshake, by reason.
    pub client_certs_refused: Family<CertRefusalLabels, Counter>,
    /// Next-update time (Unix seconds) of each CRL in force.
    pub crl_next_update: Family<CrlLabels, Gauge>,
    /// Revoked serials listed by each CRL in force.
    pub crl_revoked: Family<CrlLabels, Gauge>,
    /// CRL (and client CA) reloads refused; the lists in force stayed.
    pub crl_reload_failures: Counter,
    /// Cluster mode: the PostgreSQL policy version this node enforces.
    pub cluster_policy_version: Gauge,
    /// Cluster mode: checks for a new policy version that failed (PostgreSQL
    /// unreachable, a version that does not validate here).
    pub cluster_sync_failures: Counter,
    /// Cluster mode: the last audit event of this node in PostgreSQL.
    pub cluster_audit_shipped: Gauge,
    /// Cluster mode: durable audit events of this node not yet in PostgreSQL.
    pub cluster_audit_lag: Gauge,
    /// Cluster mode: shipping attempts that failed.
    pub cluster_audit_ship_failures: Counter,
    /// Cluster mode with Redis: whether Redis counts the limits (1) or the
    /// node decides alone with its share (0).
    pub cluster_redis_up: Gauge,
    /// Cluster mode: limit checks this node decided alone (Redis away or not configured).
    pub cluster_limit_fallbacks: Counter,
    /// Cluster mode: the live nodes a limit is shared by when a node decides alone.
    pub cluster_limit_share: Gauge,
    /// Open connections.
    pub connections_open: Gauge,
    /// Connections refused because the connection limit was reached.
    pub connections_refused: Counter,
    /// Connections closed for waiting too long (before a first request, or
    /// idle between requests).
    pub connections_idle_closed: Counter,
    /// Connections refused because their source had too many open.
    pub connections_refused_per_source: Counter,
    /// Refusals before authentication past their source's limit (counted
    /// into summary events, not audited one by one).
    pub unauthenticated_limited: Counter,
    /// Free space of the data directory's file system, bytes.
    pub data_disk_free_bytes: Gauge,
    /// The policy version in force (value 1, version as a label).
    pub policy_info: Family<PolicyLabels, Gauge>,
    /// Reloads of the policy directory refused since start.
    pub policy_reload_failures: Gauge,
    /// Whether each upstream-provided dataset's circuit is closed (1) or open (0).
    pub provider_up: Family<DatasetLabels, Gauge>,
    /// Calls to upstream providers, by dataset and outcome.
    pub provider_calls: Family<ProviderCallLabels, Counter>,
    /// Time an upstream took to answer, by dataset.
    pub provider_seconds: Family<DatasetLabels, Histogram>,
    /// Fields an upstream returned that the catalog does not know (dropped).
    pub provider_dropped_fields: Family<DatasetLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All metrics, registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tongban");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by operation, decision and status",
            requests.clone(),
        );
        let latency = Family::<OperationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
        });
        registry.register(
            "request_duration_seconds",
            "Time from arrival to a durable audit event, by operation",
            latency.clone(),
        );
        let rate_limited = Family::<LimitLabels, Counter>::default();
        registry.register(
            "rate_limited",
            "Requests refused by a department limit or grant quota",
            rate_limited.clone(),
        );
        let audit_batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        registry.register(
            "audit_batch_events",
            "Events per audit group commit",
            audit_batch_size.clone(),
        );
        let audit_flush_seconds = Histogram::new(exponential_buckets(0.000_02, 2.0, 16));
        registry.register(
            "audit_flush_seconds",
            "Time to write and sync one audit group commit",
            audit_flush_seconds.clone(),
        );
        let audit_checkpoints = Counter::default();
        registry.register(
            "audit_checkpoints",
            "Signed audit checkpoints",
            audit_checkpoints.clone(),
        );
        let audit_writer_up = Gauge::default();
        registry.register(
            "audit_writer_up",
            "1 while the audit writer is healthy",
            audit_writer_up.clone(),
        );
        let tls_handshake_failures = Counter::default();
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            tls_handshake_failures.clone(),
        );
        let client_certs_refused = Family::<CertRefusalLabels, Counter>::default();
        registry.register(
            "tls_client_certs_refused",
            "Client certificates refused at the TLS handshake, by reason",
            client_certs_refused.clone(),
        );
        let crl_next_update = Family::<CrlLabels, Gauge>::default();
        registry.register(
            "tls_crl_next_update_timestamp_seconds",
            "When each client-certificate CRL in force must be replaced (Unix time)",
            crl_next_update.clone(),
        );
        let crl_revoked = Family::<CrlLabels, Gauge>::default();
        registry.register(
            "tls_crl_revoked_certificates",
            "Revoked certificates listed by each client-certificate CRL in force",
            crl_revoked.clone(),
        );
        let crl_reload_failures = Counter::default();
        registry.register(
            "tls_crl_reload_failures",
            "CRL or client CA reloads refused (the lists in force stayed)",
            crl_reload_failures.clone(),
        );
        let cluster_policy_version = Gauge::default();
        registry.register(
            "cluster_policy_version",
            "Cluster mode: the PostgreSQL policy version this node enforces (0 on a single node)",
            cluster_policy_version.clone(),
        );
        let cluster_sync_failures = Counter::default();
        registry.register(
            "cluster_policy_sync_failures",
            "Cluster mode: failed checks for a new policy version (the set in force stayed)",
            cluster_sync_failures.clone(),
        );
        let cluster_audit_shipped = Gauge::default();
        registry.register(
            "cluster_audit_shipped_seq",
            "Cluster mode: the last audit event of this node copied to PostgreSQL",
            cluster_audit_shipped.clone(),
        );
        let cluster_audit_lag = Gauge::default();
        registry.register(
            "cluster_audit_lag_events",
            "Cluster mode: durable audit events of this node not yet in PostgreSQL",
            cluster_audit_lag.clone(),
        );
        let cluster_audit_ship_failures = Counter::default();
        registry.register(
            "cluster_audit_ship_failures",
            "Cluster mode: failed attempts to copy audit events to PostgreSQL (they are retried)",
            cluster_audit_ship_failures.clone(),
        );
        let cluster_redis_up = Gauge::default();
        registry.register(
            "cluster_redis_up",
            "Cluster mode with Redis: 1 while Redis counts the rate limits, 0 while this node enforces its share",
            cluster_redis_up.clone(),
        );
        let cluster_limit_fallbacks = Counter::default();
        registry.register(
            "cluster_limit_fallbacks",
            "Cluster mode: rate-limit checks this node decided alone with its share",
            cluster_limit_fallbacks.clone(),
        );
        let cluster_limit_share = Gauge::default();
        registry.register(
            "cluster_limit_share",
            "Cluster mode: live nodes sharing each rate limit when a node decides alone",
            cluster_limit_share.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "Open client connections",
            connections_open.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "Connections refused at the connection limit",
            connections_refused.clone(),
        );
        let connections_idle_closed = Counter::default();
        registry.register(
            "connections_idle_closed",
            "Connections closed for waiting too long before or between requests",
            connections_idle_closed.clone(),
        );
        let connections_refused_per_source = Counter::default();
        registry.register(
            "connections_refused_per_source",
            "Connections refused because their source address had limits.max_connections_per_source open",
            connections_refused_per_source.clone(),
        );
        let unauthenticated_limited = Counter::default();
        registry.register(
            "unauthenticated_limited",
            "Refusals before authentication past their source's limit (summarised, not audited one by one)",
            unauthenticated_limited.clone(),
        );
        let data_disk_free_bytes = Gauge::default();
        registry.register(
            "data_disk_free_bytes",
            "Free space of the data directory's file system",
            data_disk_free_bytes.clone(),
        );
        let policy_info = Family::<PolicyLabels, Gauge>::default();
        registry.register(
            "policy_info",
            "The policy version in force",
            policy_info.clone(),
        );
        let policy_reload_failures = Gauge::default();
        registry.register(
            "policy_reload_failures",
            "Reloads of the policy directory refused since start",
            policy_reload_failures.clone(),
        );
        let provider_up = Family::<DatasetLabels, Gauge>::default();
        registry.register(
            "provider_up",
            "1 while an upstream-provided dataset's circuit is closed",
            provider_up.clone(),
        );
        let provider_calls = Family::<ProviderCallLabels, Counter>::default();
        registry.register(
            "provider_calls",
            "Calls to upstream providers, by dataset and outcome",
            provider_calls.clone(),
        );
        let provider_seconds = Family::<DatasetLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_5, 2.0, 14))
        });
        registry.register(
            "provider_duration_seconds",
            "Time an upstream provider took to answer, by dataset",
            provider_seconds.clone(),
        );
        let provider_dropped_fields = Family::<DatasetLabels, Counter>::default();
        registry.register(
            "provider_dropped_fields",
            "Fields an upstream returned that its catalog entry does not have (dropped)",
            provider_dropped_fields.clone(),
        );
        let hot = ["lookup", "verify", "batch", "catalog"]
            .into_iter()
            .map(|operation| HotRoute {
                operation,
                answered: requests
                    .get_or_create(&RequestLabels {
                        operation: operation.to_owned(),
                        decision: "allow".to_owned(),
                        status: 200,
                    })
                    .clone(),
                latency: latency
                    .get_or_create(&OperationLabels {
                        operation: operation.to_owned(),
                    })
                    .clone(),
            })
            .collect();
        Self {
            hot,
            provider_up,
            provider_calls,
            provider_seconds,
            provider_dropped_fields,
            registry,
            requests,
            latency,
            rate_limited,
            audit_batch_size,
            audit_flush_seconds,
            audit_checkpoints,
            audit_writer_up,
            tls_handshake_failures,
            client_certs_refused,
            crl_next_update,
            crl_revoked,
            crl_reload_failures,
            cluster_policy_version,
            cluster_sync_failures,
            cluster_audit_shipped,
            cluster_audit_lag,
            cluster_audit_ship_failures,
            cluster_redis_up,
            cluster_limit_fallbacks,
            cluster_limit_share,
            connections_open,
            connections_refused,
            unauthenticated_limited,
            data_disk_free_bytes,
            connections_idle_closed,
            connections_refused_per_source,
            policy_info,
            policy_reload_failures,
        }
    }

    /// Records one answered request.
    pub fn observe_request(
        &self,
        operation: &str,
        decision: &str,
        status: u16,
        seconds: f64,
        reason: Option<&str>,
    ) {
        let hot = self.hot.iter().find(|h| h.operation == operation);
        match hot {
            Some(h) if decision == "allow" && status == 200 => h.answered.inc(),
            _ => self
                .requests
                .get_or_create(&RequestLabels {
                    operation: operation.to_owned(),
                    decision: decision.to_owned(),
                    status,
                })
                .inc(),
        };
        match hot {
            Some(h) => h.latency.observe(seconds),
            None => self
                .latency
                .get_or_create(&OperationLabels {
                    operation: operation.to_owned(),
                })
                .observe(seconds),
        }
        if reason == Some(crate::problem::ProblemType::RateLimited.slug()) {
            self.rate_limited
                .get_or_create(&LimitLabels {
                    operation: operation.to_owned(),
                })
                .inc();
        }
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
