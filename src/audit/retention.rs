//! Retention: removing old events, only when it is safe to.
//!
//! An event may be pruned only if it is older than the retention period
//! (never less than six months), covered by a signed checkpoint, and part of
//! a completed export; in cluster mode also copied to PostgreSQL. What was pruned is recorded, and the remaining chain
//! verifies from its new anchor.

use serde::Serialize;
use serde_json::json;

use super::event::Hash;
use super::store::{AuditError, AuditStore};

/// What a prune did, or would do.
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    /// The anchor before.
    pub anchor_before: u64,
    /// The last event pruned (the new anchor), if any.
    pub through: Option<u64>,
    /// Events removed (or that would be).
    pub events: u64,
    /// What held the prune back at `through`.
    pub limited_by: &'static str,
}

/// Prunes events older than `cutoff_ms` that are exported and checkpointed
/// (and, given `shipped`, in cluster mode, copied to PostgreSQL through it).
pub fn prune(
    store: &AuditStore,
    cutoff_ms: i64,
    now_ms: i64,
    dry_run: bool,
    shipped: Option<u64>,
) -> Result<PruneReport, AuditError> {
    let (anchor, _) = store.anchor()?;
    let exported = store.exported_through()?;
    let checkpointed = store.last_checkpoint_seq()?;
    let limit = exported.min(checkpointed).min(shipped.unwrap_or(u64::MAX));
    let mut last: Option<(u64, Hash)> = None;
    let mut limited_by = "nothing older than the retention period";
    for item in store.raw_events(anchor + 1, u64::MAX) {
        let (seq, value) = item?;
        let (event, hash, _) =
            super::event::Event::open(&value).map_err(|e| AuditError::Corrupt {
                seq,
                message: e.to_string(),
            })?;
        if event.body.time_ms >= cutoff_ms {
            limited_by = "retention period";
            break;
        }
        if seq > limit {
            limited_by = if seq > exported {
                "not yet exported"
            } else if seq > checkpointed {
                "not yet covered by a signed checkpoint"
            } else {
                "not yet copied to PostgreSQL"
            };
            break;
        }
        last = Some((seq, hash));
    }
    let Some((through, hash)) = last else {
        return Ok(PruneReport {
            anchor_before: anchor,
            through: None,
            events: 0,
            limited_by,
        });
    };
    let events = through - anchor;
    if !dry_run {
        let record = json!({"time_ms": now_ms, "from": anchor + 1, "through": through, "events": events, "anchor_hash": crate::domain::hex(&hash)});
        store.prune_through(through, hash, &record.to_string())?;
    }
    Ok(PruneReport {
        anchor_before: anchor,
        through: Some(through),
        events,
        limited_by,
    })
}
