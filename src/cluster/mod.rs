//! Cluster mode: several gateway nodes sharing one policy set in PostgreSQL.
//!
//! Every version of the policy set is a row of `tongban_policy_version`
//! holding all of its files; a change is one transaction that takes an
//! advisory lock, checks that the set it was prepared against is still the
//! newest, inserts the next version and notifies `tongban_policy`. Nodes
//! listen on that channel (and compare versions every
//! `cluster.policy_check_secs` in case a notification was missed), and
//! apply a new version as they apply a reload from files: validated whole,
//! audited, then swapped in. Each node keeps the last version it applied in
//! its data directory, so that it can start while PostgreSQL is down.

pub mod audit;
mod flags;
mod idempotency;
mod kept;
pub mod limits;
mod objections;
mod schema;
pub mod stops;
pub mod store;

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

pub use store::{
    ChangeMeta, ChangeTx, ClusterError, Heartbeat, NodeRow, PolicyStore, StoredVersion, VersionRow,
};

use crate::policy::PolicySources;

/// The notification channel of policy changes; the payload is the version.
pub const POLICY_CHANNEL: &str = "tongban_policy";

/// A node's side of the cluster.
#[derive(Debug)]
pub struct Cluster {
    /// This node's id.
    pub node_id: String,
    /// The policy versions in PostgreSQL.
    pub store: PolicyStore,
    /// How often to compare versions in case a notification was missed.
    pub check_every: Duration,
    /// How often this node reports itself in `tongban_node`.
    pub heartbeat_every: Duration,
    /// The audit shipper's progress.
    pub shipping: audit::ShipState,
    /// Cluster-wide rate limits.
    pub limits: limits::ClusterLimits,
    /// Every node's answer-signing public keys, as PostgreSQL last listed them.
    pub answer_keys: std::sync::RwLock<Vec<serde_json::Value>>,
    /// Whether this node's `policies/` files differ from the version it
    /// enforces, as last compared (at start and on SIGHUP).
    pub policy_files_differ: std::sync::atomic::AtomicBool,
    applied: AtomicI64,
    cache: sled::Tree,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Cached {
    version: i64,
    files: std::collections::BTreeMap<String, String>,
}

impl Cluster {
    /// The node's cluster state; `cache` is the tree that keeps the last
    /// applied version.
    pub fn new(
        node_id: &str,
        store: PolicyStore,
        check_secs: u64,
        heartbeat_secs: u64,
        limits: limits::ClusterLimits,
        cache: sled::Tree,
    ) -> Self {
        Self {
            node_id: node_id.to_owned(),
            store,
            check_every: Duration::from_secs(check_secs.max(1)),
            heartbeat_every: Duration::from_secs(heartbeat_secs.max(1)),
            shipping: audit::ShipState::default(),
            limits,
            answer_keys: std::sync::RwLock::new(Vec::new()),
            policy_files_differ: std::sync::atomic::AtomicBool::new(false),
            applied: AtomicI64::new(0),
            cache,
        }
    }

    /// The version of the set in force on this node (0 before any).
    pub fn applied(&self) -> i64 {
        self.applied.load(Ordering::SeqCst)
    }

    /// Records that `version` (with these files) is in force on this node,
    /// and keeps it for a start without PostgreSQL.
    pub fn set_applied(&self, version: i64, sources: &PolicySources) -> Result<(), sled::Error> {
        self.applied.store(version, Ordering::SeqCst);
        let value = serde_json::to_vec(&Cached {
            version,
            files: sources.files.clone(),
        })
        .unwrap_or_default();
        self.cache.insert("head", value)?;
        self.cache.flush()?;
        Ok(())
    }

    /// Compares the files of `dir` with the version in force: in cluster
    /// mode a node serves PostgreSQL's version, never its own files, so a
    /// hand edit there is said to take no effect (with the commands that
    /// reconcile the two), not ignored in silence. A missing directory is
    /// nothing to compare.
    pub fn compare_policy_files(&self, dir: &std::path::Path) {
        let Ok(local) = PolicySources::read_dir(dir) else {
            return;
        };
        let Some((version, sources)) = self.cached() else {
            return;
        };
        let differ = local != sources;
        self.policy_files_differ
            .store(differ, std::sync::atomic::Ordering::Release);
        if differ {
            tracing::warn!(
                dir = %dir.display(),
                version,
                "the policy files here differ from the version this node enforces (PostgreSQL's); they take no effect in cluster mode: `tongban policy pull` writes the version in force here, `tongban policy push` makes these files the next version"
            );
        }
    }

    /// The last version this node applied, kept in its data directory.
    pub fn cached(&self) -> Option<(i64, PolicySources)> {
        let bytes = self.cache.get("head").ok().flatten()?;
        let c: Cached = serde_json::from_slice(&bytes).ok()?;
        Some((c.version, PolicySources { files: c.files }))
    }
}
