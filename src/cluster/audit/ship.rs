//! The shipper: this node's durable events, in order, a bounded batch at a
//! time, into the central copy, with the checkpoints they reach and the
//! node's shipped-through mark, each batch one transaction.
//!
//! Invariant: the mark never passes an event that is not committed in
//! PostgreSQL; an event that does not match its hash is never shipped.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::audit::AuditStore;
use crate::audit::checkpoint::SignedCheckpoint;
use crate::audit::event::{Event, EventKind, Hash};
use crate::cluster::store::{ClusterError, PolicyStore};

/// What the shipper has done, for metrics, `/readyz` and the heartbeat.
#[derive(Debug, Default)]
pub struct ShipState {
    /// Events up to this sequence number are in PostgreSQL.
    pub shipped: AtomicU64,
    /// The last checkpoint in PostgreSQL.
    pub(super) shipped_checkpoint: AtomicU64,
    /// Whether the mark was read from PostgreSQL since start.
    pub(super) resumed: AtomicBool,
    /// Whether the last attempt failed.
    pub failing: AtomicBool,
    /// Why, if it did.
    pub last_error: Mutex<Option<String>>,
    /// Months whose partition exists.
    pub(super) partitions: Mutex<BTreeSet<(i32, u8)>>,
}

impl ShipState {
    /// The last error, if the last attempt failed.
    pub fn error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// (year, month) of a time in ms since the epoch, UTC.
pub(super) fn month_of(ms: i64) -> (i32, u8) {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    (t.year(), t.month() as u8)
}

async fn ensure_partition(
    client: &tokio_postgres::Transaction<'_>,
    (year, month): (i32, u8),
) -> Result<(), ClusterError> {
    let (ny, nm) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    client
        .batch_execute(&format!(
            "SET LOCAL client_min_messages = warning;
             SELECT pg_advisory_xact_lock({LOCK_PARTITION});
             CREATE TABLE IF NOT EXISTS tongban_audit_event_y{year:04}m{month:02}
               PARTITION OF tongban_audit_event
               FOR VALUES FROM ('{year:04}-{month:02}-01 00:00:00+00') TO ('{ny:04}-{nm:02}-01 00:00:00+00');"
        ))
        .await?;
    Ok(())
}

/// At the shipper's first batch: where PostgreSQL says this node's copy
/// ends (events and checkpoints), and the node's checkpoint keys registered
/// for `audit verify --cluster`.
async fn resume(
    client: &tokio_postgres::Client,
    node_id: &str,
    keys_pem: &str,
    state: &ShipState,
) -> Result<(), ClusterError> {
    let row = client
        .query_opt(
            "SELECT through_seq FROM tongban_audit_shipped WHERE node_id = $1",
            &[&node_id],
        )
        .await?;
    let through: i64 = row.map_or(0, |r| r.get(0));
    state
        .shipped
        .store(u64::try_from(through).unwrap_or(0), Ordering::Release);
    let cp: i64 = client
        .query_one(
            "SELECT coalesce(max(seq), 0) FROM tongban_audit_checkpoint WHERE node_id = $1",
            &[&node_id],
        )
        .await?
        .get(0);
    state
        .shipped_checkpoint
        .store(u64::try_from(cp).unwrap_or(0), Ordering::Release);
    client
        .execute(
            "INSERT INTO tongban_audit_key (node_id, public_pem) VALUES ($1, $2)
             ON CONFLICT DO NOTHING",
            &[&node_id, &keys_pem],
        )
        .await?;
    state.resumed.store(true, Ordering::Release);
    Ok(())
}

impl PolicyStore {
    /// Ships the next batch (at most `max` events) of this node's events
    /// filed in its store through `durable` (the applier's applied number),
    /// with the checkpoints they reach. Returns how many it shipped.
    pub async fn ship_audit(
        &self,
        node_id: &str,
        audit: &AuditStore,
        durable: u64,
        keys_pem: &str,
        state: &ShipState,
        max: u64,
    ) -> Result<u64, ClusterError> {
        let mut client = self.pool().get().await?;
        if !state.resumed.load(Ordering::Acquire) {
            resume(&client, node_id, keys_pem, state).await?;
        }
        let shipped = state.shipped.load(Ordering::Acquire);
        let shipped_cp = state.shipped_checkpoint.load(Ordering::Acquire);
        let local = |e: crate::audit::AuditError| {
            ClusterError::Database(format!("the local audit log cannot be read: {e}"))
        };
        let mut cols = Columns::default();
        let (anchor_seq, anchor_hash) = audit.anchor().map_err(local)?;
        let mut hi = shipped;
        if durable > shipped {
            let lo = shipped.max(anchor_seq) + 1;
            hi = durable.min(lo + max - 1);
            for item in audit.raw_events(lo, hi) {
                let (seq, stored) = item.map_err(|e| local(e.into()))?;
                cols.push(seq, stored).map_err(|e| {
                    ClusterError::Database(format!(
                        "local audit event {seq} cannot be shipped ({e}); run tongban audit verify on this node"
                    ))
                })?;
            }
            if cols.seq.len() as u64 != hi - lo + 1 {
                return Err(ClusterError::Database(format!(
                    "the local audit log holds {} of the events {lo}..={hi}",
                    cols.seq.len()
                )));
            }
        }
        // Checkpoints over shipped events (one may be signed after its event
        // was shipped: the periodic checkpoint of an idle log).
        let checkpoints: Vec<SignedCheckpoint> =
            if audit.last_checkpoint_seq().map_err(local)? > shipped_cp {
                audit
                    .checkpoints_after(shipped_cp)
                    .map_err(local)?
                    .into_iter()
                    .filter(|c| c.checkpoint.seq <= hi)
                    .collect()
            } else {
                Vec::new()
            };
        if cols.seq.is_empty() && checkpoints.is_empty() {
            return Ok(0);
        }
        let expected = cols.seq.len() as u64;
        let months: BTreeSet<(i32, u8)> = cols.time_ms.iter().map(|&ms| month_of(ms)).collect();
        let batch = (hi, anchor_seq, anchor_hash);
        let result = ship_batch(
            &mut client,
            node_id,
            &cols,
            &checkpoints,
            months,
            state,
            batch,
        )
        .await;
        if result.is_err() {
            // A partition dropped by retention is created again on the next try.
            state
                .partitions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clear();
        }
        result?;
        state.shipped.store(hi, Ordering::Release);
        if let Some(last) = checkpoints.last() {
            state
                .shipped_checkpoint
                .store(last.checkpoint.seq, Ordering::Release);
        }
        Ok(expected)
    }

    /// How far `node_id`'s chain is in PostgreSQL (0 if not at all).
    pub async fn shipped_through(&self, node_id: &str) -> Result<u64, ClusterError> {
        let client = self.pool().get().await?;
        let row = client
            .query_opt(
                "SELECT through_seq FROM tongban_audit_shipped WHERE node_id = $1",
                &[&node_id],
            )
            .await?;
        Ok(row.map_or(0, |r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0)))
    }
}

/// One batch of [`PolicyStore::ship_audit`] in one transaction.
#[allow(clippy::too_many_arguments)]
async fn ship_batch(
    client: &mut deadpool_postgres::Object,
    node_id: &str,
    cols: &Columns,
    checkpoints: &[SignedCheckpoint],
    months: BTreeSet<(i32, u8)>,
    state: &ShipState,
    (hi, anchor_seq, anchor_hash): (u64, u64, Hash),
) -> Result<(), ClusterError> {
    let tx = client.transaction().await?;
    for month in months {
        let known = state
            .partitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&month);
        if !known {
            ensure_partition(&tx, month).await?;
        }
    }
    tx.execute(
        "INSERT INTO tongban_audit_event
           (node_id, seq, time, kind, operation, dept, subject, dataset, resident,
            purpose, case_ref, outcome, reason, status, grant_id, fields, request_id, stored)
         SELECT $1, seq, to_timestamp(ms / 1000.0), kind, operation, dept, subject, dataset,
                resident, purpose, case_ref, outcome, reason, status, grant_id,
                fields::jsonb, request_id, stored
           FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[],
                       $7::text[], $8::text[], $9::bytea[], $10::text[], $11::text[],
                       $12::text[], $13::text[], $14::int[], $15::text[], $16::text[],
                       $17::text[], $18::bytea[])
             AS u(seq, ms, kind, operation, dept, subject, dataset, resident, purpose,
                  case_ref, outcome, reason, status, grant_id, fields, request_id, stored)
         ON CONFLICT DO NOTHING",
        &[
            &node_id,
            &cols.seq,
            &cols.time_ms,
            &cols.kind,
            &cols.operation,
            &cols.dept,
            &cols.subject,
            &cols.dataset,
            &cols.resident,
            &cols.purpose,
            &cols.case_ref,
            &cols.outcome,
            &cols.reason,
            &cols.status,
            &cols.grant_id,
            &cols.fields,
            &cols.request_id,
            &cols.stored,
        ],
    )
    .await?;
    for cp in checkpoints {
        let seq = i64::try_from(cp.checkpoint.seq).unwrap_or(i64::MAX);
        tx.execute(
            "INSERT INTO tongban_audit_checkpoint (node_id, seq, signed) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
            &[&node_id, &seq, &cp.encode()],
        )
        .await?;
    }
    let through = i64::try_from(hi).unwrap_or(i64::MAX);
    let anchor = i64::try_from(anchor_seq).unwrap_or(0);
    tx.execute(
        "INSERT INTO tongban_audit_shipped (node_id, through_seq, anchor_seq, anchor_hash, updated_at)
         VALUES ($1, $2, $3, $4, now())
         ON CONFLICT (node_id) DO UPDATE
           SET through_seq = greatest(tongban_audit_shipped.through_seq, EXCLUDED.through_seq),
               updated_at = now()",
        &[&node_id, &through, &anchor, &anchor_hash.as_slice()],
    )
    .await?;
    tx.commit().await?;
    state
        .partitions
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .extend(cols.time_ms.iter().map(|&ms| month_of(ms)));
    Ok(())
}

/// Serializes the creation of monthly partitions across nodes.
pub(super) const LOCK_PARTITION: i64 = 0x746f_6e67_6261_6e03;

fn kind_str(kind: EventKind) -> &'static str {
    kind.as_str()
}

/// One event as rows of the central copy.
#[derive(Default)]
pub(super) struct Columns {
    pub(super) node: Vec<String>,
    pub(super) seq: Vec<i64>,
    pub(super) time_ms: Vec<i64>,
    pub(super) kind: Vec<&'static str>,
    pub(super) operation: Vec<String>,
    pub(super) dept: Vec<Option<String>>,
    pub(super) subject: Vec<Option<String>>,
    pub(super) dataset: Vec<Option<String>>,
    pub(super) resident: Vec<Option<Vec<u8>>>,
    pub(super) purpose: Vec<Option<String>>,
    pub(super) case_ref: Vec<Option<String>>,
    pub(super) outcome: Vec<&'static str>,
    pub(super) reason: Vec<Option<String>>,
    pub(super) status: Vec<i32>,
    pub(super) grant_id: Vec<Option<String>>,
    pub(super) fields: Vec<String>,
    pub(super) request_id: Vec<String>,
    pub(super) stored: Vec<Vec<u8>>,
}

/// Why a local event is not shipped.
#[derive(Debug, thiserror::Error)]
pub(super) enum Unshippable {
    /// It does not decode.
    #[error("{0}")]
    Undecodable(String),
    /// It does not match its hash or the sequence number it is stored under.
    #[error("it does not match its hash or its place")]
    Altered,
    /// Its sequence number does not fit PostgreSQL's bigint.
    #[error("sequence number {0} is beyond PostgreSQL's bigint")]
    Beyond(u64),
}

impl Columns {
    pub(super) fn push(&mut self, seq: u64, stored: Vec<u8>) -> Result<(), Unshippable> {
        let (event, recorded, recomputed) =
            Event::open(&stored).map_err(|e| Unshippable::Undecodable(e.to_string()))?;
        if recorded != recomputed || event.seq != seq {
            return Err(Unshippable::Altered);
        }
        let b = event.body;
        self.node.push(event.node);
        self.seq
            .push(i64::try_from(seq).map_err(|_| Unshippable::Beyond(seq))?);
        self.time_ms.push(b.time_ms);
        self.kind.push(kind_str(b.kind));
        self.operation.push(b.operation.into_owned());
        self.dept.push(b.dept.as_deref().map(str::to_owned));
        self.subject.push(b.subject.as_deref().map(str::to_owned));
        self.dataset.push(b.dataset.as_deref().map(str::to_owned));
        self.resident.push(b.resident.map(|r| r.to_vec()));
        self.purpose.push(b.purpose.as_deref().map(str::to_owned));
        self.case_ref.push(b.case_ref);
        self.outcome.push(b.outcome.as_str());
        self.reason.push(b.reason.map(Cow::into_owned));
        self.status.push(i32::from(b.status));
        self.grant_id.push(b.grant.map(|(g, _)| g.to_string()));
        self.fields
            .push(serde_json::to_string(&b.fields).unwrap_or_else(|_| "[]".into()));
        self.request_id.push(b.request_id);
        self.stored.push(stored);
        Ok(())
    }
}
