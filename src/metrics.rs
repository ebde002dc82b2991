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

/// A token issuer (its `iss`, from the configuration).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IssuerLabels {
    /// The issuer.
    pub issuer: String,
}

/// Labels of an anomaly flag: its kind and department, never a person.
#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct FlagLabels {
    /// `volume_spike`, `denial_burst` or `off_hours`.
    pub kind: String,
    /// The department (`unauthenticated` for callers without a token).
    pub department: String,
}

/// Labels of a sharing request waiting: the step (`review` by the data
/// authority, `answer` by the owner) and the owning department.
#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct StepLabels {
    /// `review` or `answer`.
    pub step: &'static str,
    /// The department that owns the dataset.
    pub owner: String,
}

/// Labels of a data objection open: the owning department.
#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct OwnerLabels {
    /// The department that owns the dataset.
    pub owner: String,
}

/// One record route's metric handles.
#[derive(Debug)]
struct HotRoute {
    operation: &'static str,
    answered: Counter,
    latency: Histogram,
}

/// Declares every metric once: its field, type and constructor, its name
/// and help in the exposition. The registry lists them in this order.
macro_rules! metrics {
    ($(
        $(#[doc = $doc:literal])*
        $field:ident: $ty:ty = $init:expr => $name:literal, $help:literal;
    )*) => {
        /// Every metric of the gateway.
        #[derive(Debug)]
        pub struct Metrics {
            registry: Registry,
            /// The record routes' handles, resolved at start: the latency series of
            /// each, and its counter of answered (`allow`, 200) requests. Other
            /// label sets are looked up in their family.
            hot: Vec<HotRoute>,
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl Metrics {
            /// All metrics, registered.
            pub fn new() -> Self {
                let mut registry = Registry::with_prefix("tongban");
                let mut metrics = Self {
                    $( $field: {
                        let metric: $ty = $init;
                        registry.register($name, $help, metric.clone());
                        metric
                    }, )*
                    hot: Vec::new(),
                    registry: Registry::default(),
                };
                metrics.registry = registry;
                metrics.hot = hot_routes(&metrics.requests, &metrics.latency);
                metrics
            }
        }
    };
}

metrics! {
    /// Requests answered.
    requests: Family<RequestLabels, Counter> = Family::default()
        => "requests",
        "Requests answered, by operation, decision and status";
    /// Time from arrival to the audit event being durable, seconds.
    latency: Family<OperationLabels, Histogram> =
        Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.000_05, 2.0, 18)))
        => "request_duration_seconds",
        "Time from arrival to a durable audit event, by operation";
    /// Requests refused by a rate limit.
    rate_limited: Family<LimitLabels, Counter> = Family::default()
        => "rate_limited",
        "Requests refused by a department limit or grant quota";
    /// Events per audit group commit.
    audit_batch_size: Histogram = Histogram::new(exponential_buckets(1.0, 2.0, 14))
        => "audit_batch_events",
        "Events per audit group commit";
    /// Time to write and sync one group commit, seconds.
    audit_flush_seconds: Histogram = Histogram::new(exponential_buckets(0.000_02, 2.0, 16))
        => "audit_flush_seconds",
        "Time to write and sync one audit group commit";
    /// Checkpoints signed.
    audit_checkpoints: Counter = Counter::default()
        => "audit_checkpoints",
        "Signed audit checkpoints";
    /// Whether the audit writer is healthy (1) or failed (0).
    audit_writer_up: Gauge = Gauge::default()
        => "audit_writer_up",
        "1 while the audit writer is healthy";
    /// TLS handshakes that failed or timed out.
    tls_handshake_failures: Counter = Counter::default()
        => "tls_handshake_failures",
        "TLS handshakes that failed or timed out";
    /// Client certificates refused at the handshake, by reason.
    client_certs_refused: Family<CertRefusalLabels, Counter> = Family::default()
        => "tls_client_certs_refused",
        "Client certificates refused at the TLS handshake, by reason";
    /// Next-update time (Unix seconds) of each CRL in force.
    crl_next_update: Family<CrlLabels, Gauge> = Family::default()
        => "tls_crl_next_update_timestamp_seconds",
        "When each client-certificate CRL in force must be replaced (Unix time)";
    /// Revoked serials listed by each CRL in force.
    crl_revoked: Family<CrlLabels, Gauge> = Family::default()
        => "tls_crl_revoked_certificates",
        "Revoked certificates listed by each client-certificate CRL in force";
    /// CRL (and client CA) reloads refused; the lists in force stayed.
    crl_reload_failures: Counter = Counter::default()
        => "tls_crl_reload_failures",
        "CRL or client CA reloads refused (the lists in force stayed)";
    /// When each issuer's published key set was last fetched (Unix seconds).
    token_keys_fetched: Family<IssuerLabels, Gauge> = Family::default()
        => "token_keys_fetched_timestamp_seconds",
        "When each token issuer's published key set was last fetched or read (Unix time; alert well before jwks_stale_max_secs)";
    /// Fetches of a published key set that failed (the set in force stayed).
    token_keys_fetch_failures: Family<IssuerLabels, Counter> = Family::default()
        => "token_keys_fetch_failures",
        "Fetches of a token issuer's published key set that failed (the set in force stayed)";
    /// Cluster mode: the PostgreSQL policy version this node enforces.
    cluster_policy_version: Gauge = Gauge::default()
        => "cluster_policy_version",
        "Cluster mode: the PostgreSQL policy version this node enforces (0 on a single node)";
    /// Cluster mode: checks for a new policy version that failed (PostgreSQL
    /// unreachable, a version that does not validate here).
    cluster_sync_failures: Counter = Counter::default()
        => "cluster_policy_sync_failures",
        "Cluster mode: failed checks for a new policy version (the set in force stayed)";
    /// Cluster mode: the last audit event of this node in PostgreSQL.
    cluster_audit_shipped: Gauge = Gauge::default()
        => "cluster_audit_shipped_seq",
        "Cluster mode: the last audit event of this node copied to PostgreSQL";
    /// Cluster mode: durable audit events of this node not yet in PostgreSQL.
    cluster_audit_lag: Gauge = Gauge::default()
        => "cluster_audit_lag_events",
        "Cluster mode: durable audit events of this node not yet in PostgreSQL";
    /// Cluster mode: shipping attempts that failed.
    cluster_audit_ship_failures: Counter = Counter::default()
        => "cluster_audit_ship_failures",
        "Cluster mode: failed attempts to copy audit events to PostgreSQL (they are retried)";
    /// Cluster mode with Redis: whether Redis counts the limits (1) or the
    /// node decides alone with its share (0).
    cluster_redis_up: Gauge = Gauge::default()
        => "cluster_redis_up",
        "Cluster mode with Redis: 1 while Redis counts the rate limits, 0 while this node enforces its share";
    /// Cluster mode: limit checks this node decided alone (Redis away or not configured).
    cluster_limit_fallbacks: Counter = Counter::default()
        => "cluster_limit_fallbacks",
        "Cluster mode: rate-limit checks this node decided alone with its share";
    /// Cluster mode: the live nodes a limit is shared by when a node decides alone.
    cluster_limit_share: Gauge = Gauge::default()
        => "cluster_limit_share",
        "Cluster mode: live nodes sharing each rate limit when a node decides alone";
    /// Open connections.
    connections_open: Gauge = Gauge::default()
        => "connections_open",
        "Open client connections";
    /// Connections refused because the connection limit was reached.
    connections_refused: Counter = Counter::default()
        => "connections_refused",
        "Connections refused at the connection limit";
    /// Connections closed for waiting too long (before a first request, or
    /// idle between requests).
    connections_idle_closed: Counter = Counter::default()
        => "connections_idle_closed",
        "Connections closed for waiting too long before or between requests";
    /// Connections refused because their source had too many open.
    connections_refused_per_source: Counter = Counter::default()
        => "connections_refused_per_source",
        "Connections refused because their source address had limits.max_connections_per_source open";
    /// Refusals before authentication past their source's limit (counted
    /// into summary events, not audited one by one).
    unauthenticated_limited: Counter = Counter::default()
        => "unauthenticated_limited",
        "Refusals before authentication past their source's limit (summarised, not audited one by one)";
    /// Free space of the data directory's file system, bytes.
    data_disk_free_bytes: Gauge = Gauge::default()
        => "data_disk_free_bytes",
        "Free space of the data directory's file system";
    /// The policy version in force (value 1, version as a label).
    policy_info: Family<PolicyLabels, Gauge> = Family::default()
        => "policy_info",
        "The policy version in force";
    /// Reloads of the policy directory refused since start.
    policy_reload_failures: Gauge = Gauge::default()
        => "policy_reload_failures",
        "Reloads of the policy directory refused since start";
    /// Whether each upstream-provided dataset's circuit is closed (1) or open (0).
    provider_up: Family<DatasetLabels, Gauge> = Family::default()
        => "provider_up",
        "1 while an upstream-provided dataset's circuit is closed";
    /// Calls to upstream providers, by dataset and outcome.
    provider_calls: Family<ProviderCallLabels, Counter> = Family::default()
        => "provider_calls",
        "Calls to upstream providers, by dataset and outcome";
    /// Time an upstream took to answer, by dataset.
    provider_seconds: Family<DatasetLabels, Histogram> =
        Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.000_5, 2.0, 14)))
        => "provider_duration_seconds",
        "Time an upstream provider took to answer, by dataset";
    /// Fields an upstream returned that the catalog does not know (dropped).
    provider_dropped_fields: Family<DatasetLabels, Counter> = Family::default()
        => "provider_dropped_fields",
        "Fields an upstream returned that its catalog entry does not have (dropped)";
    /// Today's anomaly flags, by kind and department (set by each check).
    anomaly_flags: Family<FlagLabels, Gauge> = Family::default()
        => "anomaly_flags",
        "Anomaly flags raised today (local day), by kind and department, as of the last check";
    /// Flags announced (counted once, posted to the webhook), by kind and department.
    anomaly_flags_raised: Family<FlagLabels, Counter> = Family::default()
        => "anomaly_flags_raised",
        "New anomaly flags announced, by kind and department";
    /// When the last check of today's flags finished, seconds since the epoch.
    anomaly_check_timestamp: Gauge = Gauge::default()
        => "anomaly_check_timestamp_seconds",
        "When the last check of today's anomaly flags finished";
    /// 1 when the working-day calendar holds today's year, 0 when it counts
    /// Monday to Friday alone.
    calendar_covers_today: Gauge = Gauge::default()
        => "calendar_covers_today",
        "1 when the working-day calendar holds this year's holidays and make-up working days";
    /// Residents' objections not answered yet (as of the last check).
    objections_open: Gauge = Gauge::default()
        => "objections_open",
        "Residents' objections not answered yet, as of the last check";
    /// Open objections past their due day (as of the last check).
    objections_overdue: Gauge = Gauge::default()
        => "objections_overdue",
        "Residents' objections open past their due day, as of the last check";
    /// Sharing requests waiting, by step and owner (as of the last check).
    sharing_requests_open: Family<StepLabels, Gauge> = Family::default()
        => "sharing_requests_open",
        "Sharing requests waiting for the data authority's review or the owner's answer, by step and owning department, as of the last check";
    /// Those past their step's due day.
    sharing_requests_overdue: Family<StepLabels, Gauge> = Family::default()
        => "sharing_requests_overdue",
        "Sharing requests past the due day of the step they wait for, by step and owning department, as of the last check";
    /// Data objections not answered yet, by owner (as of the last check).
    data_objections_open: Family<OwnerLabels, Gauge> = Family::default()
        => "data_objections_open",
        "Data objections (疑义) not answered yet, by owning department, as of the last check";
    /// Those past their due day.
    data_objections_overdue: Family<OwnerLabels, Gauge> = Family::default()
        => "data_objections_overdue",
        "Data objections open past their due day, by owning department, as of the last check";
    /// Flags posted to the webhook.
    alert_webhook_sent: Counter = Counter::default()
        => "alert_webhook_sent",
        "Anomaly flags posted to the alert webhook";
    /// Flags the webhook did not accept after every retry.
    alert_webhook_failed: Counter = Counter::default()
        => "alert_webhook_failed",
        "Anomaly flags the alert webhook did not accept after every retry";
    /// Flags dropped because the webhook's queue was full.
    alert_webhook_dropped: Counter = Counter::default()
        => "alert_webhook_dropped",
        "Anomaly flags dropped because the alert webhook's queue was full";
}

/// The record routes' handles.
fn hot_routes(
    requests: &Family<RequestLabels, Counter>,
    latency: &Family<OperationLabels, Histogram>,
) -> Vec<HotRoute> {
    ["lookup", "verify", "batch", "catalog"]
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
        .collect()
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
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
