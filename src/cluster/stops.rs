//! The emergency stops shared by the cluster: department suspensions and
//! the token deny-list. A stop made through any node is in force there at
//! once (as on a single node) and is appended to `tongban_stop_change`, a
//! log every node applies in order (notified like policy changes, and
//! compared every `policy_check_secs`). While PostgreSQL cannot be reached
//! a node keeps its own stops in an outbox in its data directory and
//! appends them when it can: an emergency stop never waits for the cluster.

use serde::{Deserialize, Serialize};
use tokio_postgres::types::Json;

use super::Cluster;
use super::store::{ClusterError, PolicyStore};
use crate::stops::revocation::Revocation;
use crate::stops::suspension::Suspension;

/// Serializes appends, so ids are committed in order and a node reading
/// `id > mark` never skips one committed late.
const LOCK_STOPS: i64 = 0x746f_6e67_6261_6e04;

/// One emergency stop, or its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum StopChange {
    /// A department suspended.
    Suspend {
        /// The department.
        dept: String,
        /// Why, by whom, since when.
        suspension: Suspension,
    },
    /// A department resumed.
    Resume {
        /// The department.
        dept: String,
        /// When, ms since the epoch, by the clock of the node it was made
        /// on (absent in stops logged before it was recorded: applied as
        /// they come).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at_ms: Option<i64>,
    },
    /// Tokens revoked.
    DenyTokens {
        /// The revocation (`denial` in the log, as it has always been written).
        #[serde(rename = "denial")]
        revocation: Revocation,
    },
    /// A deny-list entry lifted before it expired.
    LiftTokens {
        /// The entry (`jti:…` or `sub:…`).
        id: String,
        /// When the denial lifted was made: a newer one of the same id
        /// stays in force.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at_ms: Option<i64>,
    },
}

impl PolicyStore {
    /// Appends stops made on `node_id` to the log, in one transaction, and
    /// notifies every node.
    pub async fn record_stops(
        &self,
        node_id: &str,
        changes: &[StopChange],
    ) -> Result<(), ClusterError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_STOPS])
            .await?;
        for c in changes {
            tx.execute(
                "INSERT INTO tongban_stop_change (change, node_id) VALUES ($1, $2)",
                &[&Json(c), &node_id],
            )
            .await?;
        }
        tx.execute("SELECT pg_notify($1, 'stop')", &[&super::POLICY_CHANNEL])
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The stops after `after` in the log, in order (at most 1,000): id,
    /// the node they were made on, the stop.
    pub async fn stops_after(
        &self,
        after: i64,
    ) -> Result<Vec<(i64, String, StopChange)>, ClusterError> {
        let client = self.pool().get().await?;
        let rows = client
            .query(
                "SELECT id, node_id, change FROM tongban_stop_change WHERE id > $1
                  ORDER BY id LIMIT 1000",
                &[&after],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let id: i64 = r.get(0);
                let Json(change): Json<StopChange> = r.try_get(2).map_err(|e| {
                    ClusterError::Database(format!(
                        "stop {id} in tongban_stop_change cannot be read: {e}"
                    ))
                })?;
                Ok((id, r.get(1), change))
            })
            .collect()
    }
}

const MARK: &[u8] = b"stops/applied";
const OUTBOX: &[u8] = b"stops/outbox/";

impl Cluster {
    /// The last stop of the log this node applied.
    pub fn stops_applied(&self) -> i64 {
        self.cache
            .get(MARK)
            .ok()
            .flatten()
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, i64::from_be_bytes)
    }

    /// Records that the log is applied through `id`.
    pub fn set_stops_applied(&self, id: i64) -> Result<(), sled::Error> {
        self.cache.insert(MARK, &id.to_be_bytes())?;
        self.cache.flush()?;
        Ok(())
    }

    /// Keeps a stop made here for the log, until PostgreSQL takes it.
    pub fn queue_stop(&self, change: &StopChange) -> Result<(), sled::Error> {
        // After the last kept one (the caller holds the gateway's stops lock).
        let n = match self.cache.scan_prefix(OUTBOX).next_back() {
            Some(item) => {
                let (k, _) = item?;
                k.get(OUTBOX.len()..)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map_or(0, u64::from_be_bytes)
                    + 1
            }
            None => 0,
        };
        let mut key = OUTBOX.to_vec();
        key.extend_from_slice(&n.to_be_bytes());
        self.cache
            .insert(key, serde_json::to_vec(change).unwrap_or_default())?;
        self.cache.flush()?;
        Ok(())
    }

    /// The stops waiting for PostgreSQL, oldest first, with their keys.
    pub fn outbox(&self) -> Vec<(sled::IVec, StopChange)> {
        self.cache
            .scan_prefix(OUTBOX)
            .filter_map(Result::ok)
            .filter_map(|(k, v)| Some((k, serde_json::from_slice(&v).ok()?)))
            .collect()
    }

    /// Removes stops PostgreSQL took.
    pub fn clear_outbox(&self, keys: &[sled::IVec]) -> Result<(), sled::Error> {
        let mut batch = sled::Batch::default();
        for k in keys {
            batch.remove(k.clone());
        }
        self.cache.apply_batch(batch)?;
        self.cache.flush()?;
        Ok(())
    }
}
