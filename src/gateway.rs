//! The gateway's state: configuration, clock, the policy in force, the token
//! verifier, the audit writer and the data providers, opened together.

use std::collections::BTreeMap;
use std::sync::Arc;

use time::{Date, UtcOffset};

use crate::audit::checkpoint::CheckpointSigner;
use crate::audit::{AuditError, AuditStore, AuditWriter, Pseudonymizer, WriterOptions};
use crate::audit::{EventBody, EventKind, Outcome};
use crate::clock::Clock;
use crate::cluster::stops::StopChange;
use crate::cluster::{Cluster, ClusterError, PolicyStore, StoredVersion};
use crate::config::Config;
use crate::domain::DeptId;
use crate::metrics::Metrics;
use crate::pipeline::authn::{Authenticator, IssuerError};
use crate::pipeline::rate_limit::RateSpec;
use crate::policy::diff::diff;
use crate::policy::edit::{dataset_toml, grant_toml};
use crate::policy::history::{History, HistoryEntry};
use crate::policy::load::{PolicySet, PolicySources, load_dir, validate};
use crate::policy::{CompiledPolicy, LivePolicy, PolicyError};
use crate::provider::{EmbeddedStore, Providers};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is not usable.
    #[error("{0}")]
    Config(String),
    /// The policy directory is not valid.
    #[error("the policy directory is not valid:\n{}", .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Policy(Vec<PolicyError>),
    /// The data directory could not be opened.
    #[error("data directory: {0}")]
    Store(#[from] sled::Error),
    /// The audit log could not be opened.
    #[error("{0}")]
    Audit(#[from] AuditError),
    /// A token issuer is misconfigured.
    #[error("{0}")]
    Issuer(#[from] IssuerError),
    /// A file could not be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Cluster mode cannot start.
    #[error("{0}")]
    Cluster(#[from] ClusterError),
    /// The emergency stops cannot be read.
    #[error("{0}")]
    Stops(#[from] crate::stops::StopsError),
    /// The configuration breaks a rule across its settings.
    #[error("{0}")]
    Rule(#[from] crate::config::Rule),
}

/// Why this node could not bring itself up to the cluster's policy or stops
/// (it keeps what is in force and tries again).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// PostgreSQL cannot be reached or answered an error.
    #[error("{0}")]
    Cluster(#[from] ClusterError),
    /// The cluster's newest policy version does not validate here.
    #[error("policy version {version}: {}", .errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidVersion {
        /// The version.
        version: i64,
        /// Why it does not validate.
        errors: Vec<PolicyError>,
    },
    /// This node's own record of what it applied could not be written.
    #[error("{what} could not be kept: {error}")]
    Local {
        /// What ("the applied version", "the applied stops", a stop).
        what: String,
        /// Why.
        error: String,
    },
    /// The stops made elsewhere cannot be audited here, so they wait.
    #[error("the stops cannot be audited, so they wait: {0}")]
    Audit(String),
}

/// Everything a request needs, shared by all of them.
#[derive(Debug)]
pub struct Gateway {
    /// The configuration it was opened with.
    pub config: Config,
    /// The clock.
    pub clock: Clock,
    /// The calendar offset for validity windows.
    pub utc_offset: UtcOffset,
    /// The policy in force.
    pub policy: LivePolicy,
    /// Token verification.
    pub auth: Authenticator,
    /// The audit log's writer.
    pub audit: AuditWriter,
    /// The audit log, for reading.
    pub audit_store: AuditStore,
    /// Resident pseudonyms for the audit log.
    pub pseudonyms: Pseudonymizer,
    /// The key that signs audit checkpoints.
    pub checkpoint_signer: Arc<CheckpointSigner>,
    /// Where records come from.
    pub providers: Providers,
    /// Tokens refused although valid (revoked by an administrator).
    pub revocations: crate::stops::revocation::Revocations,
    /// Departments suspended by an administrator (the emergency stop).
    pub suspensions: crate::stops::suspension::Suspensions,
    /// Verify requests per grant, resident and day.
    pub verify_budget: crate::pipeline::verify::Budget,
    /// The `Idempotency-Key`s of the last 24 hours (in PostgreSQL in
    /// cluster mode).
    pub idempotency: Arc<crate::pipeline::idempotency::Idempotency>,
    /// Refusals before authentication, per source address.
    pub unauthenticated: crate::pipeline::unauthenticated::UnauthenticatedLimit,
    /// The keys that sign answers (signed answers, 免提交).
    /// The answer-signing keys, swapped whole when `tongban keys rotate`
    /// makes another current (read again on its change and on SIGHUP).
    pub answer_keys: arc_swap::ArcSwap<crate::proof::AnswerKeys>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The history of policy changes.
    pub policy_history: History,
    /// Serializes every change of the policy in force (admin edits, reloads).
    pub policy_lock: tokio::sync::Mutex<()>,
    /// Held for writing by a retention prune, for reading by a chain
    /// verification: a verification never sees the chain's start move.
    pub audit_prune_lock: tokio::sync::RwLock<()>,
    /// Held by an online import of records and by a backup: one at a time,
    /// so a backup never holds half an import.
    pub data_lock: tokio::sync::Mutex<()>,
    /// Serializes the cluster's stops: sharing this node's, applying the log.
    stops_lock: tokio::sync::Mutex<()>,
    /// The outcome of the last reload from files (or from PostgreSQL).
    pub reload_status: std::sync::RwLock<ReloadStatus>,
    /// Cluster mode: the shared policy set in PostgreSQL.
    pub cluster: Option<Arc<Cluster>>,
    /// The department limits of `tongban.toml`, read again on its change
    /// and on SIGHUP ([`Gateway::reload_rate_limits`]).
    dept_rates: arc_swap::ArcSwap<DeptRates>,
    /// The anomaly thresholds and the working-day calendar, read again when
    /// their files change and on SIGHUP.
    pub flag_rules: arc_swap::ArcSwap<crate::audit::stats::FlagRules>,
    /// Flag review marks, announced flags and the alert webhook.
    pub alerts: crate::alerts::Alerts,
    /// Each resident's limit on their own record.
    pub resident_limit: crate::pipeline::resident::ResidentLimit,
    /// Residents' objections and the officers' answers.
    pub objections: crate::objections::Objections,
    /// The sharing workflow: requests (共享申请) and data objections (疑义).
    pub sharing: crate::sharing::Workflow,
}

/// Where a new policy set came from, for its audit events and history.
struct Origin {
    /// The audit operation: `policy.reload` or `policy.sync`.
    operation: &'static str,
    /// The event's subject.
    subject: String,
    /// The history's author and action.
    author: String,
    action: String,
    /// The version in PostgreSQL, in cluster mode.
    cluster_version: Option<i64>,
    /// Why, as the change's author said (a version of the cluster).
    reason: Option<String>,
}

/// What the last reload of the policy directory did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReloadStatus {
    /// When it ran, ms since the epoch.
    pub at_ms: i64,
    /// The errors that kept the previous set in force, if any.
    pub error: Option<String>,
    /// Reloads refused since start.
    pub failures: u64,
}

#[derive(Debug, Clone, PartialEq)]
struct DeptRates {
    default: RateSpec,
    named: BTreeMap<String, RateSpec>,
}

impl DeptRates {
    fn from_config(config: &Config) -> Result<Self, StartError> {
        let parse = |what: &str, s: &str| {
            s.parse::<RateSpec>()
                .map_err(|e| StartError::Config(format!("rate_limit.{what} \"{s}\": {e}")))
        };
        let default = parse("per_department", &config.rate_limit.per_department)?;
        let mut named = BTreeMap::new();
        for (dept, rate) in &config.rate_limit.departments {
            named.insert(dept.clone(), parse(&format!("departments.{dept}"), rate)?);
        }
        Ok(Self { default, named })
    }

    /// The limits as the configuration spells them.
    fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "per_department": self.default.to_string(),
            "departments": self
                .named
                .iter()
                .map(|(d, r)| (d.clone(), serde_json::json!(r.to_string())))
                .collect::<serde_json::Map<_, _>>(),
        })
    }

    fn rate(&self, dept: &DeptId) -> RateSpec {
        self.named
            .get(dept.as_str())
            .copied()
            .unwrap_or(self.default)
    }
}

impl Gateway {
    /// Opens the data directory, loads policies and starts the audit writer
    /// (a single node; in cluster mode use [`Gateway::start`]).
    pub fn open(config: Config, clock: Clock) -> Result<Arc<Self>, StartError> {
        if config.cluster.is_some() {
            return Err(StartError::Config(
                "[cluster] is set: the gateway starts with Gateway::start".into(),
            ));
        }
        Self::open_with(config, clock, None)
    }

    /// Opens the gateway, in cluster mode too: there it first reads the
    /// newest policy version from PostgreSQL (creating the tables if they are
    /// missing); if PostgreSQL cannot be reached it starts with the last
    /// version this node applied, and refuses to start if there is none.
    pub async fn start(mut config: Config, clock: Clock) -> Result<Arc<Self>, StartError> {
        let Some(cc) = config.cluster.clone() else {
            return Self::open(config, clock);
        };
        config.check()?;
        config.node_id = cc.node_id.to_string();
        let store = PolicyStore::new(&cc)?;
        std::fs::create_dir_all(&config.data_dir)?;
        let fingerprint = Pseudonymizer::open(&config.data_dir)?.fingerprint();
        let head = async {
            store.migrate().await?;
            // Every node must derive the same pseudonym for a resident, or a
            // disclosure report would miss the other nodes' events.
            let cluster_key = store.claim_meta("pseudonym_key", &fingerprint).await?;
            if cluster_key != fingerprint {
                return Ok(Err(format!(
                    "this node's pseudonym key ({}/pseudonym.key, fingerprint {fingerprint}) is not the cluster's (fingerprint {cluster_key}): every node must hold the same key, so that a resident's events are found on every node; copy pseudonym.key from a node of the cluster into this node's data directory (the one file `tongban keys init` names as shared; every other key stays this node's own)",
                    config.data_dir.display()
                )));
            }
            store.head().await.map(Ok)
        }
        .await;
        let head = match head {
            Ok(Err(message)) => return Err(StartError::Config(message)),
            Ok(Ok(head)) => Ok(head),
            Err(e) => Err(e),
        };
        let gw = Self::open_with(config, clock, Some((store, head)))?;
        // The stops made while this node was away are in force before it serves.
        if let Err(e) = gw.sync_cluster_stops().await {
            tracing::warn!(error = %e, "the cluster's suspensions and revoked tokens cannot be read now; this node enforces its own until they can");
        }
        if let Err(e) = gw.sync_answer_keys().await {
            tracing::warn!(error = %e, "the cluster's answer-signing keys cannot be read now; the JWK Set lists this node's until they can");
        }
        Ok(gw)
    }

    /// In cluster mode, registers this node's answer-signing public keys in
    /// PostgreSQL and reads every node's (at start and with each heartbeat).
    pub async fn sync_answer_keys(&self) -> Result<(), ClusterError> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        // `jwks` always holds a `keys` array.
        let own = self.answer_keys.load().jwks()["keys"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let all = cluster.store.answer_keys(&cluster.node_id, &own).await?;
        *cluster
            .answer_keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = all;
        Ok(())
    }

    /// The JWK Set that verifies signed answers: this node's keys, and in
    /// cluster mode every other node's too.
    pub fn jwks(&self) -> serde_json::Value {
        let mut set = self.answer_keys.load().jwks();
        if let (Some(cluster), Some(keys)) = (&self.cluster, set["keys"].as_array_mut()) {
            let others = cluster
                .answer_keys
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for jwk in others.iter() {
                if !keys.iter().any(|k| k["kid"] == jwk["kid"]) {
                    keys.push(jwk.clone());
                }
            }
        }
        set
    }

    fn open_with(
        config: Config,
        clock: Clock,
        cluster: Option<(PolicyStore, Result<Option<StoredVersion>, ClusterError>)>,
    ) -> Result<Arc<Self>, StartError> {
        config.check()?;
        let utc_offset = config.utc_offset();
        let dept_rates = DeptRates::from_config(&config)?;
        let flag_rules =
            crate::audit::stats::FlagRules::from_config(&config).map_err(StartError::Config)?;
        // A broken policy directory is reported before anything is opened.
        let from_files = (cluster.is_none())
            .then(|| load_dir(&config.policies_dir).map_err(StartError::Policy))
            .transpose()?;
        std::fs::create_dir_all(&config.data_dir)?;
        let db = crate::datadir::open(
            &sled::Config::new()
                .path(&config.data_dir)
                .cache_capacity(config.cache_mb.saturating_mul(1024 * 1024)),
        )?;
        let (set, cluster) = match (from_files, cluster) {
            (Some(set), _) => (set, None),
            (None, None) => return Err(StartError::Config("no policy set to start with".into())),
            (None, Some((store, head))) => {
                let (set, cluster) = start_cluster(&config, &db, store, head)?;
                (set, Some(cluster))
            }
        };
        let policy = CompiledPolicy::compile(set, |d| dept_rates.rate(d), None, &clock);
        let unauthenticated = crate::pipeline::unauthenticated::UnauthenticatedLimit::new(
            config.limits.unauthenticated_per_source,
            &clock,
        );
        let auth = Authenticator::new(
            &config.issuers,
            &config.operator_department,
            config.limits.max_token_bytes,
            clock.clone(),
        )?;

        let pseudonyms = Pseudonymizer::open(&config.data_dir)?;
        let audit_store = AuditStore::open(&db, &config.data_dir)?;
        let checkpoint_signer = Arc::new(CheckpointSigner::open_suite(
            &config.data_dir,
            config.audit.suite,
        )?);
        let answer_keys = arc_swap::ArcSwap::from_pointee(
            crate::proof::AnswerKeys::open(&config.data_dir)
                .map_err(|e| StartError::Config(format!("answer-signing keys: {e}")))?,
        );
        let metrics = start_metrics(cluster.as_ref());
        let audit = AuditWriter::start(
            audit_store.clone(),
            &config.data_dir,
            checkpoint_signer.clone(),
            metrics.clone(),
            writer_options(&config, &clock),
        )?;
        let policy_history = History::open(&db)?;
        let suspensions = crate::stops::suspension::Suspensions::open(&db, &config.data_dir)?;
        let revocations = crate::stops::revocation::Revocations::open(
            &db,
            &config.data_dir,
            clock.unix_millis(),
        )?;
        let idempotency =
            crate::pipeline::idempotency::Idempotency::open(cluster.as_ref(), &db, &config)?;
        crate::backup::remove_leftovers(&config.data_dir);
        let (alerts, resident_limit, objections, sharing) =
            open_accountability(&config, &clock, cluster.as_ref(), &db)?;
        let upstreams = upstreams(&config, &policy, &metrics)?;
        let providers = Providers::new(
            EmbeddedStore::open(db, Some(config.data_dir.clone()))?,
            upstreams,
        );
        Ok(Arc::new(Self {
            config,
            clock,
            utc_offset,
            policy: LivePolicy::new(policy),
            auth,
            audit,
            audit_store,
            pseudonyms,
            checkpoint_signer,
            providers,
            suspensions,
            revocations,
            verify_budget: crate::pipeline::verify::Budget::default(),
            idempotency,
            unauthenticated,
            answer_keys,
            metrics,
            policy_history,
            policy_lock: tokio::sync::Mutex::new(()),
            audit_prune_lock: tokio::sync::RwLock::new(()),
            data_lock: tokio::sync::Mutex::new(()),
            stops_lock: tokio::sync::Mutex::new(()),
            reload_status: std::sync::RwLock::new(ReloadStatus::default()),
            cluster,
            dept_rates: arc_swap::ArcSwap::from_pointee(dept_rates),
            flag_rules: arc_swap::ArcSwap::from_pointee(flag_rules),
            alerts,
            resident_limit,
            objections,
            sharing,
        }))
    }

    /// Today in the gateway's calendar.
    pub fn today(&self) -> Date {
        self.clock.now_utc().to_offset(self.utc_offset).date()
    }

    /// Compiles a validated set against the one in force (keeping limiters).
    pub fn compile(&self, set: PolicySet) -> CompiledPolicy {
        let current = self.policy.snapshot();
        let rates = self.dept_rates.load();
        CompiledPolicy::compile(set, |d| rates.rate(d), Some(&current), &self.clock)
    }

    /// Reads the department limits of `tongban.toml` again (on its change
    /// and on SIGHUP). Changed limits are audited (`config.rate_limits`,
    /// durable first) and put in force in one swap of the compiled policy,
    /// with fresh limiters for the departments whose limit changed; a file
    /// that does not load leaves the limits in force. Returns whether they
    /// changed.
    pub async fn reload_rate_limits(&self, trigger: &str) -> Result<bool, String> {
        let Some(path) = &self.config.source else {
            return Ok(false);
        };
        let fresh = Config::load(path).map_err(|e| e.to_string())?;
        let rates = DeptRates::from_config(&fresh).map_err(|e| e.to_string())?;
        let _guard = self.policy_lock.lock().await;
        let before = self.dept_rates.load_full();
        if *before == rates {
            return Ok(false);
        }
        let mut event = EventBody::system(
            self.clock.unix_millis(),
            EventKind::PolicyAdmin,
            "config.rate_limits",
        );
        event.dept = Some(self.config.operator_department.as_str().into());
        event.subject = Some(format!("configuration ({trigger})").into());
        event.status = 200;
        event.outcome = Outcome::Allow;
        event.detail = Some(
            serde_json::json!({
                "before": before.describe(),
                "after": rates.describe(),
            })
            .to_string(),
        );
        self.audit
            .append_many(vec![event])
            .await
            .map_err(|e| format!("the change cannot be audited, so it is not applied: {e}"))?;
        self.dept_rates.store(Arc::new(rates));
        let current = self.policy.snapshot();
        let rates = self.dept_rates.load();
        let compiled = CompiledPolicy::compile(
            current.set.clone(),
            |d| rates.rate(d),
            Some(&current),
            &self.clock,
        );
        self.policy.swap(compiled);
        tracing::info!(trigger, "department rate limits changed and are in force");
        Ok(true)
    }

    /// Reads the anomaly rules and the working-day calendar again (their
    /// files changed, or SIGHUP). A change is audited first
    /// (`config.anomaly_rules`, with the rules before and after), then in
    /// force; files that do not load leave the rules in force. Returns
    /// whether they changed.
    pub async fn reload_flag_rules(&self, trigger: &str) -> Result<bool, String> {
        let fresh = crate::audit::stats::FlagRules::from_config(&self.config)?;
        let _guard = self.policy_lock.lock().await;
        let before = self.flag_rules.load_full();
        if *before == fresh {
            return Ok(false);
        }
        let mut event = EventBody::system(
            self.clock.unix_millis(),
            EventKind::PolicyAdmin,
            "config.anomaly_rules",
        );
        event.dept = Some(self.config.operator_department.as_str().into());
        event.subject = Some(format!("configuration ({trigger})").into());
        event.status = 200;
        event.outcome = Outcome::Allow;
        event.detail = Some(
            serde_json::json!({"before": before.describe(), "after": fresh.describe()}).to_string(),
        );
        self.audit
            .append_many(vec![event])
            .await
            .map_err(|e| format!("the change cannot be audited, so it is not applied: {e}"))?;
        self.flag_rules.store(Arc::new(fresh));
        Ok(true)
    }

    /// Re-reads the policy directory after a hand edit (file change or
    /// SIGHUP). A valid set is audited (one event per changed grant or
    /// dataset), recorded in the history and put in force in one swap; an
    /// invalid one is refused with its errors and the set in force stays.
    /// Returns whether anything changed.
    pub async fn reload_policy_files(&self, trigger: &str) -> Result<bool, Vec<PolicyError>> {
        let _guard = self.policy_lock.lock().await;
        let result = self.reload_locked(trigger).await;
        if let Err(errors) = &result {
            for e in errors {
                tracing::error!(trigger, error = %e, "policy reload refused; the previous policy stays in force");
            }
        }
        self.note_reload(result.as_ref().err().map(|errors| {
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        }));
        result
    }

    /// Records a reload's outcome (from files or from PostgreSQL) in the
    /// reload status; returns the error it replaces.
    fn note_reload(&self, error: Option<String>) -> Option<String> {
        let mut status = self
            .reload_status
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        status.at_ms = self.clock.unix_millis();
        if error.is_some() {
            status.failures += 1;
        }
        std::mem::replace(&mut status.error, error)
    }

    async fn reload_locked(&self, trigger: &str) -> Result<bool, Vec<PolicyError>> {
        let sources = PolicySources::read_dir(&self.config.policies_dir).map_err(|e| vec![e])?;
        self.apply_sources(
            sources,
            Origin {
                operation: "policy.reload",
                subject: format!("files ({trigger})"),
                author: "files".into(),
                action: "reload".into(),
                cluster_version: None,
                reason: None,
            },
        )
        .await
    }

    /// In cluster mode, shares an emergency stop already in force on this
    /// node with the other nodes. If PostgreSQL cannot take it now it is
    /// kept (in order, behind any others kept) and shared when it can.
    /// Does nothing on a single node.
    pub async fn share_stop(&self, change: StopChange) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let _guard = self.stops_lock.lock().await;
        if let Err(e) = cluster.queue_stop(&change) {
            tracing::error!(error = %e, "a stop could not be kept for the other nodes");
        }
        if let Err(e) = self.sync_stops_locked(cluster).await {
            tracing::warn!(error = %e, "the stop is in force on this node; the other nodes get it when PostgreSQL answers again");
        }
    }

    /// In cluster mode, sends the stops kept on this node to PostgreSQL and
    /// applies, in order, every stop of the log this node has not applied:
    /// those made on other nodes are audited here first.
    pub async fn sync_cluster_stops(&self) -> Result<(), SyncError> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        let _guard = self.stops_lock.lock().await;
        self.sync_stops_locked(cluster).await
    }

    async fn sync_stops_locked(&self, cluster: &Cluster) -> Result<(), SyncError> {
        let queued = cluster.outbox();
        if !queued.is_empty() {
            let changes: Vec<StopChange> = queued.iter().map(|(_, c)| c.clone()).collect();
            cluster
                .store
                .record_stops(&cluster.node_id, &changes)
                .await?;
            let keys: Vec<sled::IVec> = queued.into_iter().map(|(k, _)| k).collect();
            cluster.clear_outbox(&keys).map_err(|e| SyncError::Local {
                what: "the stops sent".into(),
                error: e.to_string(),
            })?;
        }
        loop {
            let list = cluster.store.stops_after(cluster.stops_applied()).await?;
            let Some(last) = list.last().map(|(id, _, _)| *id) else {
                return Ok(());
            };
            let time_ms = self.clock.unix_millis();
            // Which of them take effect, in order: a stop older than the
            // newest in force for its department is recorded, not applied.
            let applies = self.stops_in_order(&list);
            let bodies: Vec<EventBody> = list
                .iter()
                .zip(&applies)
                .filter(|((_, node, _), _)| *node != cluster.node_id)
                .map(|((id, node, change), applied)| {
                    let mut e = EventBody::system(time_ms, EventKind::PolicyAdmin, "policy.sync");
                    e.dept = Some(self.config.operator_department.as_str().into());
                    e.subject = Some(format!("cluster (node {node})").into());
                    e.status = 200;
                    e.outcome = Outcome::Allow;
                    e.detail = Some(
                        serde_json::json!({"stop": change, "cluster_stop": id, "node": node, "applied": applied})
                            .to_string(),
                    );
                    e
                })
                .collect();
            if !bodies.is_empty() {
                self.audit
                    .append_many(bodies)
                    .await
                    .map_err(|e| SyncError::Audit(e.to_string()))?;
            }
            for (id, node, change) in list {
                let applied = self
                    .apply_stop(&node, &change)
                    .map_err(|e| SyncError::Local {
                        what: format!("stop {id}"),
                        error: e.to_string(),
                    })?;
                if node != cluster.node_id {
                    if applied {
                        tracing::info!(id, node = %node, stop = ?change, "a stop made on another node is in force");
                    } else {
                        tracing::info!(id, node = %node, stop = ?change, "a stop made on another node is older than the one in force: recorded, not applied");
                    }
                }
            }
            cluster
                .set_stops_applied(last)
                .map_err(|e| SyncError::Local {
                    what: "the applied stops".into(),
                    error: e.to_string(),
                })?;
        }
    }

    /// Writes the summaries of the refusals before authentication counted
    /// past the per-source limit (one event per source); the server calls
    /// it every minute and at a stop.
    pub async fn write_unauthenticated_summaries(&self) {
        let summaries = self.unauthenticated.take_summaries();
        if summaries.is_empty() {
            return;
        }
        if let Err(e) = self.audit.append_many(summaries).await {
            tracing::error!(error = %e, "the summary of refused unauthenticated requests could not be audited");
        }
    }

    /// The clock skew tolerated between nodes when ordering stops, ms.
    pub fn stop_skew_ms(&self) -> i64 {
        let secs = self
            .config
            .cluster
            .as_ref()
            .map_or(5, |c| c.stop_clock_skew_secs);
        i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    /// Applies one stop of the log, made on `node`; returns whether it took
    /// effect (false: a newer change for its department is in force).
    fn apply_stop(
        &self,
        node: &str,
        change: &StopChange,
    ) -> Result<bool, crate::stops::StopsError> {
        let skew = self.stop_skew_ms();
        match change {
            StopChange::Suspend { dept, suspension } => {
                let mut s = suspension.clone();
                if s.node.is_empty() {
                    s.node = node.to_owned();
                }
                self.suspensions.suspend(dept, s, skew)
            }
            StopChange::Resume { dept, at_ms } => {
                // Logged before resumptions carried their time: as they come.
                let at_ms =
                    at_ms.unwrap_or_else(|| self.suspensions.stamp_now(dept, node, 0, skew));
                let r = crate::stops::suspension::Resumption {
                    at_ms,
                    node: node.to_owned(),
                };
                self.suspensions.resume(dept, r, skew)
            }
            StopChange::DenyTokens { revocation } => self
                .revocations
                .add(revocation.clone(), self.clock.unix_millis())
                .map(|()| true),
            StopChange::LiftTokens { id, at_ms } => self.revocations.lift(id, *at_ms),
        }
    }

    /// Whether each stop of `list` would take effect, applied in order.
    fn stops_in_order(&self, list: &[(i64, String, StopChange)]) -> Vec<bool> {
        use crate::stops::suspension::{Stamp, supersedes};
        let skew = self.stop_skew_ms();
        // The newest change per department as the list goes on.
        let mut seen: std::collections::HashMap<&str, Stamp<'_>> = Default::default();
        list.iter()
            .map(|(_, node, change)| {
                let (dept, at_ms, suspends) = match change {
                    StopChange::Suspend { dept, suspension } => (dept, suspension.at_ms, true),
                    StopChange::Resume {
                        dept,
                        at_ms: Some(at),
                    } => (dept, *at, false),
                    StopChange::Resume { dept, at_ms: None } => {
                        // Logged before resumptions carried their time:
                        // stamped after what is in force, as apply_stop does.
                        let at = match seen.get(dept.as_str()) {
                            Some(&last) => {
                                crate::stops::suspension::stamp_after(Some(last), node, 0, skew)
                            }
                            None => self.suspensions.stamp_now(dept, node, 0, skew),
                        };
                        (dept, at, false)
                    }
                    StopChange::DenyTokens { .. } | StopChange::LiftTokens { .. } => return true,
                };
                let stamp = Stamp {
                    at_ms,
                    node,
                    suspends,
                };
                let applies = match seen.get(dept.as_str()) {
                    Some(&last) => supersedes(stamp, Some(last), skew),
                    None => self.suspensions.would_apply(dept, stamp, skew),
                };
                if applies {
                    seen.insert(dept, stamp);
                }
                applies
            })
            .collect()
    }

    /// In cluster mode, applies the newest policy version in PostgreSQL if
    /// this node does not enforce it yet (a notification, the periodic check,
    /// a reconnection). Audited like a reload from files: one event per
    /// changed grant or dataset, durable before the swap. Errors (PostgreSQL
    /// unreachable, a version that does not validate here) keep the set in
    /// force and are kept in the reload status. Returns whether anything changed.
    pub async fn sync_cluster_policy(&self, trigger: &str) -> Result<bool, SyncError> {
        let _guard = self.policy_lock.lock().await;
        let result = self.sync_cluster_locked(trigger).await;
        let error = result.as_ref().err().map(ToString::to_string);
        let previous = self.note_reload(error.clone());
        match &result {
            Ok(_) if previous.is_some() => {
                tracing::info!(trigger, "policy versions from PostgreSQL are applied again");
            }
            Ok(_) => {}
            Err(e) => {
                self.metrics.cluster_sync_failures.inc();
                // Said once, not at every check while PostgreSQL is away.
                if previous != error {
                    tracing::error!(trigger, error = %e, "policy version from PostgreSQL not applied; the set in force stays");
                }
            }
        }
        if let Some(c) = &self.cluster {
            self.metrics.cluster_policy_version.set(c.applied());
        }
        result
    }

    /// [`Gateway::sync_cluster_policy`] for a caller that holds the policy lock.
    pub async fn sync_cluster_locked(&self, trigger: &str) -> Result<bool, SyncError> {
        let Some(cluster) = &self.cluster else {
            return Ok(false);
        };
        let head = cluster.store.head_version().await?;
        if head <= cluster.applied() {
            return Ok(false);
        }
        let Some(v) = cluster.store.get(head).await? else {
            return Ok(false);
        };
        let sources = v.sources.clone();
        let changed = self
            .apply_sources(
                v.sources,
                Origin {
                    operation: "policy.sync",
                    subject: format!("cluster ({trigger})"),
                    author: v.author,
                    action: v.action,
                    cluster_version: Some(v.version),
                    reason: v.reason,
                },
            )
            .await
            .map_err(|errors| SyncError::InvalidVersion {
                version: head,
                errors,
            })?;
        cluster
            .set_applied(v.version, &sources)
            .map_err(|e| SyncError::Local {
                what: "the applied version".into(),
                error: e.to_string(),
            })?;
        tracing::info!(version = v.version, node = %v.node_id, "policy version from PostgreSQL in force");
        Ok(changed)
    }

    /// Puts a new set of policy files in force: validated whole, one audit
    /// event per changed grant or dataset (durable first), one swap, the
    /// history. Returns whether anything changed.
    async fn apply_sources(
        &self,
        sources: PolicySources,
        origin: Origin,
    ) -> Result<bool, Vec<PolicyError>> {
        let current = self.policy.snapshot();
        if sources == current.set.sources {
            return Ok(false);
        }
        let set = validate(sources)?;
        let changes = changed_entries(&current.set, &set);
        let access: Vec<String> = diff(&current.set, &set)
            .iter()
            .map(ToString::to_string)
            .collect();
        let time_ms = self.clock.unix_millis();
        let bodies: Vec<EventBody> = changes
            .iter()
            .map(|c| {
                let mut e = EventBody::system(time_ms, EventKind::PolicyAdmin, origin.operation);
                e.dept = Some(self.config.operator_department.as_str().into());
                e.subject = Some(origin.subject.as_str().into());
                e.policy_version = Some(set.version.as_str().into());
                e.status = 200;
                e.outcome = Outcome::Allow;
                let mut detail = serde_json::json!({"kind": c.kind, "id": c.id, "before": c.before, "after": c.after});
                if let Some(v) = origin.cluster_version {
                    detail["cluster_version"] = serde_json::json!(v);
                    detail["author"] = serde_json::json!(origin.author);
                }
                e.detail = Some(detail.to_string());
                e
            })
            .collect();
        let first = if bodies.is_empty() {
            0
        } else {
            self.audit.append_many(bodies).await.map_err(|e| {
                vec![PolicyError {
                    file: "(audit log)".into(),
                    entry: None,
                    message: format!("the change cannot be audited, so it is not applied: {e}"),
                }]
            })?
        };
        let version = set.version.clone();
        let rates = self.dept_rates.load();
        let compiled = CompiledPolicy::compile(set, |d| rates.rate(d), Some(&current), &self.clock);
        self.policy.swap(compiled);
        for (i, c) in changes.into_iter().enumerate() {
            let entry = HistoryEntry {
                seq: first + i as u64,
                time_ms,
                author: origin.author.clone(),
                action: origin.action.clone(),
                kind: c.kind.into(),
                id: c.id,
                version: c.version,
                before: c.before,
                after: c.after,
                access: access.clone(),
                reason: origin.reason.clone(),
            };
            if let Err(e) = self.policy_history.record(&entry) {
                tracing::error!(error = %e, "policy history could not be recorded");
            }
        }
        tracing::info!(operation = origin.operation, subject = %origin.subject, version, "policy changed");
        Ok(true)
    }

    /// Takes `n` from a rate limit: this node's limiter on a single node; in
    /// cluster mode the cluster's count (Redis, or this node's share).
    pub async fn check_limit(
        &self,
        key: crate::cluster::limits::LimitKey<'_>,
        limit: &crate::pipeline::rate_limit::RateLimit,
        n: u32,
    ) -> Result<(), std::time::Duration> {
        match &self.cluster {
            None if n == 1 => limit.check(),
            None => limit.check_n(n),
            Some(c) => c.limits.check(key, limit, n, &self.metrics).await,
        }
    }

    /// Whether the gateway can serve: the audit writer healthy and the data
    /// directory's disk above its low-water mark.
    pub fn is_ready(&self) -> bool {
        self.audit.is_healthy() && self.disk_above_low_water()
    }

    /// Free space of the data directory's file system, bytes (None: unknown).
    pub fn disk_free_bytes(&self) -> Option<u64> {
        let s = rustix::fs::statvfs(&self.config.data_dir).ok()?;
        let free = s.f_bavail.saturating_mul(s.f_frsize);
        self.metrics
            .data_disk_free_bytes
            .set(i64::try_from(free).unwrap_or(i64::MAX));
        Some(free)
    }

    /// Whether the data directory's disk has more free space than
    /// `audit.disk_low_water_mb` (unknown counts as enough: the audit
    /// writer's own failure still makes the gateway unready).
    pub fn disk_above_low_water(&self) -> bool {
        let low = self.config.audit.disk_low_water_mb.saturating_mul(1 << 20);
        self.disk_free_bytes().is_none_or(|free| free > low)
    }

    /// Flushes and stops the audit writer. Call after the server has drained.
    pub async fn shutdown(&self) {
        self.audit.close().await;
    }
}

/// A grant or dataset that differs between two sets.
struct EntryChange {
    kind: &'static str,
    id: String,
    version: Option<u32>,
    before: Option<String>,
    after: Option<String>,
}

fn changed_entries(old: &PolicySet, new: &PolicySet) -> Vec<EntryChange> {
    let mut out = Vec::new();
    let grant_ids: std::collections::BTreeSet<_> =
        old.grants.keys().chain(new.grants.keys()).collect();
    for id in grant_ids {
        let before = old.grants.get(id).map(|g| grant_toml(&g.spec));
        let after = new.grants.get(id).map(|g| grant_toml(&g.spec));
        if before != after {
            let version = new.grants.get(id).map(|g| g.spec.version);
            out.push(EntryChange {
                kind: "grant",
                id: id.to_string(),
                version,
                before,
                after,
            });
        }
    }
    let dataset_ids: std::collections::BTreeSet<_> =
        old.datasets.keys().chain(new.datasets.keys()).collect();
    for id in dataset_ids {
        let before = old.datasets.get(id).map(|d| dataset_toml(&d.spec));
        let after = new.datasets.get(id).map(|d| dataset_toml(&d.spec));
        if before != after {
            out.push(EntryChange {
                kind: "dataset",
                id: id.to_string(),
                version: None,
                before,
                after,
            });
        }
    }
    out
}

/// In cluster mode, the node's cluster and the policy set it starts with:
/// PostgreSQL's newest version, or, while PostgreSQL cannot be reached, the
/// version this node applied last.
fn start_cluster(
    config: &Config,
    db: &sled::Db,
    store: PolicyStore,
    head: Result<Option<StoredVersion>, ClusterError>,
) -> Result<(PolicySet, Arc<Cluster>), StartError> {
    let cluster = Cluster::new(
        &config.node_id,
        store,
        config
            .cluster
            .as_ref()
            .map_or(5, |c| c.policy_check_secs.get()),
        config
            .cluster
            .as_ref()
            .map_or(2, |c| c.heartbeat_secs.get()),
        match &config.cluster {
            Some(c) => crate::cluster::limits::ClusterLimits::new(c)
                .map_err(|e| StartError::Config(format!("[cluster]: {e}")))?,
            None => return Err(StartError::Config("no [cluster] section".into())),
        },
        db.open_tree("cluster/policy")?,
    );
    let (version, sources) = match head {
        Ok(Some(v)) => (v.version, v.sources),
        Ok(None) => {
            return Err(StartError::Config(format!(
                "PostgreSQL ({}) holds no policy set yet: store one with `tongban policy push DIR --config FILE`",
                cluster.store.url
            )));
        }
        Err(e) => match cluster.cached() {
            Some((version, sources)) => {
                tracing::warn!(error = %e, version, "starting with the policy version this node applied last; PostgreSQL will be asked again");
                (version, sources)
            }
            None => {
                return Err(StartError::Config(format!(
                    "{e}; and this node has applied no policy version it could start with"
                )));
            }
        },
    };
    let set = validate(sources.clone()).map_err(StartError::Policy)?;
    cluster.set_applied(version, &sources)?;
    Ok((set, Arc::new(cluster)))
}

/// The owners' own APIs, if `[upstream]` is configured; a catalog that
/// names an http provider without it does not start.
fn upstreams(
    config: &Config,
    policy: &CompiledPolicy,
    metrics: &Arc<Metrics>,
) -> Result<Option<crate::provider::Upstreams>, StartError> {
    Ok(match &config.upstream {
        Some(up) => Some(
            crate::provider::Upstreams::new(up, &config.node_id, metrics.clone())
                .map_err(|e| StartError::Config(format!("[upstream]: {e}")))?,
        ),
        None => {
            let wanting: Vec<String> = policy
                .set
                .datasets
                .values()
                .filter(|d| {
                    matches!(
                        d.spec.provider,
                        Some(crate::policy::model::ProviderSpec::Http { .. })
                    )
                })
                .map(|d| d.spec.id.to_string())
                .collect();
            if !wanting.is_empty() {
                return Err(StartError::Config(format!(
                    "datasets {} name an http provider, but tongban.toml has no [upstream] section (the gateway's client certificate and the upstreams' CA)",
                    wanting.join(", ")
                )));
            }
            None
        }
    })
}

/// The audit writer's options from `[audit]`.
/// What answers to the people the log concerns: the flag marks and alerts,
/// each resident's limit, the residents' objections.
fn open_accountability(
    config: &Config,
    clock: &Clock,
    cluster: Option<&Arc<Cluster>>,
    db: &sled::Db,
) -> Result<
    (
        crate::alerts::Alerts,
        crate::pipeline::resident::ResidentLimit,
        crate::objections::Objections,
        crate::sharing::Workflow,
    ),
    StartError,
> {
    Ok((
        crate::alerts::Alerts::open(cluster, db, config).map_err(StartError::Config)?,
        crate::pipeline::resident::ResidentLimit::new(config.residents.rate, clock),
        crate::objections::Objections::open(cluster, db, &config.data_dir)?,
        crate::sharing::Workflow::open(cluster, db, &config.data_dir)?,
    ))
}

/// The metrics at start: in cluster mode, the policy version applied and
/// whether Redis answers.
fn start_metrics(cluster: Option<&Arc<Cluster>>) -> Arc<Metrics> {
    let metrics = Arc::new(Metrics::new());
    if let Some(c) = cluster {
        metrics.cluster_policy_version.set(c.applied());
        if c.limits.redis_up().is_some() {
            metrics.cluster_redis_up.set(1);
        }
    }
    metrics
}

fn writer_options(config: &Config, clock: &Clock) -> WriterOptions {
    WriterOptions {
        node: config.node_id.clone(),
        durability: config.audit.durability,
        max_batch: config.audit.max_batch.get(),
        group_wait: std::time::Duration::from_micros(config.audit.group_wait_us.min(100_000)),
        checkpoint_every: config.audit.checkpoint_every.get(),
        checkpoint_interval: std::time::Duration::from_secs(config.audit.checkpoint_secs.get()),
        clock: clock.clone(),
    }
}
