//! The gateway's state: configuration, clock, the policy in force, the token
//! verifier, the audit writer and the data providers, opened together.

use std::collections::BTreeMap;
use std::sync::Arc;

use time::{Date, UtcOffset};

use crate::audit::checkpoint::CheckpointSigner;
use crate::audit::{AuditError, AuditStore, AuditWriter, Pseudonymizer, WriterOptions};
use crate::clock::Clock;
use crate::config::Config;
use crate::domain::DeptId;
use crate::pipeline::authn::{Authenticator, IssuerError};
use crate::pipeline::rate_limit::RateSpec;
use crate::policy::load::load_dir;
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
    dept_rates: DeptRates,
}

#[derive(Debug, Clone)]
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

    fn rate(&self, dept: &DeptId) -> RateSpec {
        self.named
            .get(dept.as_str())
            .copied()
            .unwrap_or(self.default)
    }
}

impl Gateway {
    /// Opens the data directory, loads policies and starts the audit writer.
    pub fn open(config: Config, clock: Clock) -> Result<Arc<Self>, StartError> {
        config.check().map_err(StartError::Config)?;
        let utc_offset = config.utc_offset().map_err(StartError::Config)?;
        let dept_rates = DeptRates::from_config(&config)?;
        let set = load_dir(&config.policies_dir).map_err(StartError::Policy)?;
        let policy = CompiledPolicy::compile(set, |d| dept_rates.rate(d), None, &clock);
        let auth = Authenticator::new(
            &config.issuers,
            config.limits.max_token_bytes,
            clock.clone(),
        )?;

        std::fs::create_dir_all(&config.data_dir)?;
        let db = sled::Config::new()
            .path(&config.data_dir)
            .cache_capacity(config.cache_mb.saturating_mul(1024 * 1024))
            .open()?;
        let pseudonyms = Pseudonymizer::open(&config.data_dir)?;
        let audit_store = AuditStore::open(&db)?;
        let checkpoint_signer = Arc::new(CheckpointSigner::open(&config.data_dir)?);
        let audit = AuditWriter::start(
            audit_store.clone(),
            &config.data_dir,
            checkpoint_signer.clone(),
            WriterOptions {
                node: config.node_id.clone(),
                durability: config.audit.durability,
                max_batch: config.audit.max_batch,
                checkpoint_every: config.audit.checkpoint_every,
                checkpoint_interval: std::time::Duration::from_secs(config.audit.checkpoint_secs),
                clock: clock.clone(),
            },
        )?;
        let providers = Providers::embedded(EmbeddedStore::new(db));
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
            dept_rates,
        }))
    }

    /// Today in the gateway's calendar.
    pub fn today(&self) -> Date {
        self.clock.now_utc().to_offset(self.utc_offset).date()
    }

    /// Re-reads the policy directory; on success the new set is in force at once,
    /// on failure the set in force stays and the errors are returned.
    pub fn reload_policy(&self) -> Result<String, Vec<PolicyError>> {
        let set = load_dir(&self.config.policies_dir)?;
        let current = self.policy.snapshot();
        let compiled = CompiledPolicy::compile(
            set,
            |d| self.dept_rates.rate(d),
            Some(&current),
            &self.clock,
        );
        let version = compiled.version().to_owned();
        self.policy.swap(compiled);
        Ok(version)
    }

    /// Whether the gateway can serve: policies loaded and the audit writer healthy.
    pub fn is_ready(&self) -> bool {
        self.audit.is_healthy()
    }

    /// Flushes and stops the audit writer. Call after the server has drained.
    pub async fn shutdown(&self) {
        self.audit.close().await;
    }
}
