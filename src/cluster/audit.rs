//! The central copy of every node's audit chain in PostgreSQL: the shipper
//! that streams this node's durable events there, and the reader that
//! verifies each node's copy (`tongban audit verify --cluster`).
//!
//! Each node's own chain stays the record that requests wait for
//! (fail-closed, durable in its write-ahead file before an answer leaves).
//! The shipper copies what the node's applier has filed in sled, in order,
//! a bounded batch at a time: each batch is one
//! transaction that inserts its events (`ON CONFLICT DO NOTHING`: shipping
//! is at-least-once, the table holds each `(node_id, seq)` once), the
//! checkpoints they reach, and the node's new shipped-through mark, so a
//! crash anywhere resumes from the last committed batch. Events are stored
//! as their sealed bytes (what the chain hashes) beside searchable columns
//! decoded from them; verification recomputes the chain from the bytes and
//! checks that the columns say what the bytes say.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio_postgres::Client;

use super::Cluster;
use super::store::{ClusterError, PolicyStore};
use crate::audit::AuditStore;
use crate::audit::chain::{BrokenLink, ChainVerifier, VerifyReport};
use crate::audit::checkpoint::{Keyring, SignedCheckpoint};
use crate::audit::event::{Event, EventKind, GENESIS, Hash};
use crate::audit::filter::EventFilter;

/// Serializes the creation of monthly partitions across nodes.
const LOCK_PARTITION: i64 = 0x746f_6e67_6261_6e03;

/// What the shipper has done, for metrics, `/readyz` and the heartbeat.
#[derive(Debug, Default)]
pub struct ShipState {
    /// Events up to this sequence number are in PostgreSQL.
    pub shipped: AtomicU64,
    /// The last checkpoint in PostgreSQL.
    shipped_checkpoint: AtomicU64,
    /// Whether the mark was read from PostgreSQL since start.
    resumed: AtomicBool,
    /// Whether the last attempt failed.
    pub failing: AtomicBool,
    /// Why, if it did.
    pub last_error: Mutex<Option<String>>,
    /// Months whose partition exists.
    partitions: Mutex<BTreeSet<(i32, u8)>>,
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

fn kind_str(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Query => "query",
        EventKind::AuditReview => "audit_review",
        EventKind::PolicyAdmin => "policy_admin",
        EventKind::Other => "other",
    }
}

/// (year, month) of a time in ms since the epoch, UTC.
fn month_of(ms: i64) -> (i32, u8) {
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
            "SELECT pg_advisory_xact_lock({LOCK_PARTITION});
             CREATE TABLE IF NOT EXISTS tongban_audit_event_y{year:04}m{month:02}
               PARTITION OF tongban_audit_event
               FOR VALUES FROM ('{year:04}-{month:02}-01 00:00:00+00') TO ('{ny:04}-{nm:02}-01 00:00:00+00');"
        ))
        .await?;
    Ok(())
}

/// One event as rows of the central copy.
#[derive(Default)]
struct Columns {
    node: Vec<String>,
    seq: Vec<i64>,
    time_ms: Vec<i64>,
    kind: Vec<&'static str>,
    operation: Vec<String>,
    dept: Vec<Option<String>>,
    subject: Vec<Option<String>>,
    dataset: Vec<Option<String>>,
    resident: Vec<Option<Vec<u8>>>,
    purpose: Vec<Option<String>>,
    case_ref: Vec<Option<String>>,
    outcome: Vec<&'static str>,
    reason: Vec<Option<String>>,
    status: Vec<i32>,
    grant_id: Vec<Option<String>>,
    fields: Vec<String>,
    request_id: Vec<String>,
    stored: Vec<Vec<u8>>,
}

/// Why a local event is not shipped.
#[derive(Debug, thiserror::Error)]
enum Unshippable {
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
    fn push(&mut self, seq: u64, stored: Vec<u8>) -> Result<(), Unshippable> {
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

    /// Every event of every node that names this resident (its pseudonym),
    /// newest first, decoded from the sealed bytes (a row whose bytes do not
    /// match their hash is refused: run `audit verify --cluster`).
    pub async fn resident_events(&self, resident: &[u8; 16]) -> Result<Vec<Event>, ClusterError> {
        let client = self.pool().get().await?;
        let rows = client
            .query(
                "SELECT node_id, seq, stored FROM tongban_audit_event WHERE resident = $1
                  ORDER BY time DESC, node_id, seq DESC",
                &[&resident.as_slice()],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let (event, _) = open_row(&r)?;
            if event.body.resident.as_ref() != Some(resident) {
                return Err(altered(&event.node, event.seq));
            }
            out.push(event);
        }
        Ok(out)
    }

    /// Events of every node that match `filter`, newest first (by time, then
    /// node and sequence number, descending), strictly after `after` in that
    /// order, at most `limit`. Decoded from the sealed bytes; the filter is
    /// checked again on them, so an altered column cannot make a row match.
    pub async fn search_events(
        &self,
        filter: &EventFilter,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<Vec<(Event, Hash)>, ClusterError> {
        type Param = Box<dyn tokio_postgres::types::ToSql + Sync + Send>;
        let mut conds: Vec<String> = Vec::new();
        let mut params: Vec<Param> = Vec::new();
        let mut add = |cond: &str, value: Param| {
            params.push(value);
            conds.push(cond.replace('?', &format!("${}", params.len())));
        };
        if let Some(r) = filter.resident {
            add("resident = ?", Box::new(r.to_vec()));
        }
        for (column, value) in [
            ("dept", &filter.consumer),
            ("subject", &filter.subject),
            ("dataset", &filter.dataset),
            ("purpose", &filter.purpose),
            ("node_id", &filter.node),
        ] {
            if let Some(v) = value {
                add(&format!("{column} = ?"), Box::new(v.clone()));
            }
        }
        if let Some(d) = filter.decision {
            add("outcome = ?", Box::new(d.as_str().to_owned()));
        }
        // The same expression as the insert, so equal times compare equal.
        if let Some(from) = filter.from_ms {
            add("time >= to_timestamp(?::bigint / 1000.0)", Box::new(from));
        }
        if let Some(to) = filter.to_ms {
            add("time <= to_timestamp(?::bigint / 1000.0)", Box::new(to));
        }
        if let Some(p) = after {
            params.push(Box::new(p.time_ms));
            params.push(Box::new(p.node.clone()));
            params.push(Box::new(i64::try_from(p.seq).unwrap_or(i64::MAX)));
            let n = params.len();
            conds.push(format!(
                "(time, node_id COLLATE \"C\", seq) < (to_timestamp(${}::bigint / 1000.0), ${}, ${n})",
                n - 2,
                n - 1
            ));
        }
        let sql = format!(
            "SELECT node_id, seq, stored FROM tongban_audit_event{}{}
              ORDER BY time DESC, node_id COLLATE \"C\" DESC, seq DESC LIMIT {}",
            if conds.is_empty() { "" } else { " WHERE " },
            conds.join(" AND "),
            limit.max(1)
        );
        let client = self.pool().get().await?;
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        let rows = client.query(&sql, &refs).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let (event, hash) = open_row(r)?;
            if filter.matches(&event) {
                out.push((event, hash));
            } else {
                tracing::warn!(
                    node = %event.node,
                    seq = event.seq,
                    "a row of the central audit copy matched a search its sealed bytes do not; run tongban audit verify --cluster"
                );
            }
        }
        Ok(out)
    }

    /// The pieces of an export of the central copy: for `node` (or every
    /// node that shipped), the contiguous range of its events from the first
    /// at or after `from` to the last at or before `to`, extended to the
    /// first checkpoint at or after it (or cut at the last checkpoint, so
    /// every exported event is covered by a signature), with its anchor and
    /// the checkpoints in it. Nodes with nothing covered are left out.
    pub async fn export_sections(
        &self,
        node: Option<&str>,
        from: Option<i64>,
        to: Option<i64>,
    ) -> Result<Vec<ExportSection>, ClusterError> {
        let client = self.pool().get().await?;
        let nodes: Vec<String> = match node {
            Some(n) => vec![n.to_owned()],
            None => client
                .query(
                    "SELECT node_id FROM tongban_audit_shipped ORDER BY node_id COLLATE \"C\"",
                    &[],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect(),
        };
        let mut out = Vec::new();
        for node in nodes {
            let range = client
                .query_one(
                    // Above the node's anchor: after retention dropped a month,
                    // a few of its events timed in the next month stay below it.
                    "SELECT min(seq), max(seq) FROM tongban_audit_event
                      WHERE node_id = $1
                        AND seq > coalesce((SELECT anchor_seq FROM tongban_audit_shipped WHERE node_id = $1), 0)
                        AND ($2::bigint IS NULL OR time >= to_timestamp($2::bigint / 1000.0))
                        AND ($3::bigint IS NULL OR time <= to_timestamp($3::bigint / 1000.0))",
                    &[&node, &from, &to],
                )
                .await?;
            let (Some(lo), Some(last)) = (
                range.get::<_, Option<i64>>(0),
                range.get::<_, Option<i64>>(1),
            ) else {
                continue;
            };
            let mut checkpoints = Vec::new();
            for r in client
                .query(
                    "SELECT seq, signed FROM tongban_audit_checkpoint
                      WHERE node_id = $1 AND seq >= $2 ORDER BY seq",
                    &[&node, &lo],
                )
                .await?
            {
                let bytes: Vec<u8> = r.get(1);
                let cp = SignedCheckpoint::decode(&bytes).ok_or_else(|| {
                    ClusterError::Database(format!(
                        "checkpoint {} of node {node} in PostgreSQL cannot be decoded; run tongban audit verify --cluster",
                        r.get::<_, i64>(0)
                    ))
                })?;
                checkpoints.push(cp);
            }
            let (lo, last) = (
                u64::try_from(lo).unwrap_or(0),
                u64::try_from(last).unwrap_or(0),
            );
            let covered = checkpoints
                .iter()
                .map(|c| c.checkpoint.seq)
                .find(|&s| s >= last)
                .or_else(|| checkpoints.last().map(|c| c.checkpoint.seq));
            let Some(hi) = covered.filter(|&hi| hi >= lo) else {
                continue;
            };
            checkpoints.retain(|c| c.checkpoint.seq <= hi);
            // On the connection held (a second one from the pool could wait
            // behind other exports holding theirs).
            let Some((first, _)) = event_on(&client, &node, lo).await? else {
                continue;
            };
            out.push(ExportSection {
                anchor: (lo - 1, first.prev_hash),
                node,
                lo,
                hi,
                checkpoints,
                first,
            });
        }
        Ok(out)
    }

    /// The rows of `node` with `lo <= seq <= hi`, in order (a missing row is
    /// missing here too: the export's verifier names the gap).
    pub async fn events_range(
        &self,
        node: &str,
        lo: u64,
        hi: u64,
    ) -> Result<Vec<(Event, Hash)>, ClusterError> {
        let client = self.pool().get().await?;
        let rows = client
            .query(
                "SELECT node_id, seq, stored FROM tongban_audit_event
                  WHERE node_id = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq",
                &[
                    &node,
                    &i64::try_from(lo).unwrap_or(i64::MAX),
                    &i64::try_from(hi).unwrap_or(i64::MAX),
                ],
            )
            .await?;
        rows.iter().map(open_row).collect()
    }

    /// Records that a cluster export held `node`'s events `lo..=hi` whole.
    /// As on a node, the mark moves only when the range joins what was
    /// exported before (or starts at the node's anchor in PostgreSQL).
    pub async fn mark_exported(&self, node: &str, lo: u64, hi: u64) -> Result<(), ClusterError> {
        let client = self.pool().get().await?;
        let (lo, hi) = (
            i64::try_from(lo).unwrap_or(i64::MAX),
            i64::try_from(hi).unwrap_or(i64::MAX),
        );
        client
            .execute(
                "INSERT INTO tongban_audit_exported (node_id, through_seq, updated_at)
                 SELECT $1, $3, now() FROM tongban_audit_shipped s
                  WHERE s.node_id = $1
                    AND $2 <= greatest(s.anchor_seq, coalesce(
                          (SELECT through_seq FROM tongban_audit_exported WHERE node_id = $1), 0)) + 1
                 ON CONFLICT (node_id) DO UPDATE
                   SET through_seq = greatest(tongban_audit_exported.through_seq, EXCLUDED.through_seq),
                       updated_at = now()",
                &[&node, &lo, &hi],
            )
            .await?;
        Ok(())
    }

    /// Retention of the central copy: drops whole monthly partitions, oldest
    /// first, that ended before `cutoff_ms`, as long as every node's events
    /// in them were exported from the central copy and are covered by a
    /// signed checkpoint there. Each node's anchor moves to its last dropped
    /// event (in the same transaction as the drop, with a record in
    /// `tongban_audit_prune`), so `audit verify --cluster` verifies the rest.
    pub async fn prune_central(
        &self,
        cutoff_ms: i64,
        dry_run: bool,
    ) -> Result<CentralPruneReport, ClusterError> {
        let mut client = self.pool().get().await?;
        let mut months: Vec<((i32, u8), String)> = client
            .query(
                "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                  WHERE i.inhparent = 'tongban_audit_event'::regclass",
                &[],
            )
            .await?
            .iter()
            .filter_map(|r| {
                let name: String = r.get(0);
                let month = parse_partition(&name)?;
                Some((month, name))
            })
            .collect();
        months.sort();
        let mut report = CentralPruneReport {
            dry_run,
            partitions: Vec::new(),
            limited_by: "nothing older than the retention period".into(),
        };
        'months: for ((year, month), name) in months {
            if month_end_ms(year, month) > cutoff_ms {
                report.limited_by = "retention period".into();
                break;
            }
            let mut nodes = Vec::new();
            for r in client
                .query(
                    &format!(
                        "SELECT node_id, max(seq), count(*) FROM {name} GROUP BY node_id ORDER BY node_id"
                    ),
                    &[],
                )
                .await?
            {
                let node: String = r.get(0);
                let through: i64 = r.get(1);
                let events: i64 = r.get(2);
                let limits = client
                    .query_one(
                        "SELECT coalesce((SELECT through_seq FROM tongban_audit_exported WHERE node_id = $1), 0),
                                coalesce((SELECT max(seq) FROM tongban_audit_checkpoint WHERE node_id = $1), 0)",
                        &[&node],
                    )
                    .await?;
                let (exported, covered): (i64, i64) = (limits.get(0), limits.get(1));
                if exported < through {
                    report.limited_by = format!(
                        "{name}: node {node}'s events through {through} are not yet exported from the central copy (exported through {exported})"
                    );
                    break 'months;
                }
                if covered < through {
                    report.limited_by = format!(
                        "{name}: node {node}'s events through {through} are not yet covered by a signed checkpoint"
                    );
                    break 'months;
                }
                nodes.push(PrunedNode {
                    node_id: node,
                    through_seq: u64::try_from(through).unwrap_or(0),
                    events: u64::try_from(events).unwrap_or(0),
                });
            }
            if !dry_run {
                let tx = client.transaction().await?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_PARTITION])
                    .await?;
                for n in &nodes {
                    let through = i64::try_from(n.through_seq).unwrap_or(i64::MAX);
                    let row = tx
                        .query_one(
                            &format!(
                                "SELECT node_id, seq, stored FROM {name} WHERE node_id = $1 AND seq = $2"
                            ),
                            &[&n.node_id, &through],
                        )
                        .await?;
                    let (_, hash) = open_row(&row)?;
                    tx.execute(
                        "UPDATE tongban_audit_shipped SET anchor_seq = $2, anchor_hash = $3
                          WHERE node_id = $1 AND anchor_seq < $2",
                        &[&n.node_id, &through, &hash.as_slice()],
                    )
                    .await?;
                    tx.execute(
                        "DELETE FROM tongban_audit_checkpoint WHERE node_id = $1 AND seq < $2",
                        &[&n.node_id, &through],
                    )
                    .await?;
                    tx.execute(
                        "INSERT INTO tongban_audit_prune (partition, node_id, through_seq, anchor_hash, events)
                         VALUES ($1, $2, $3, $4, $5)",
                        &[
                            &name,
                            &n.node_id,
                            &through,
                            &hash.as_slice(),
                            &i64::try_from(n.events).unwrap_or(i64::MAX),
                        ],
                    )
                    .await?;
                }
                tx.batch_execute(&format!("DROP TABLE {name}")).await?;
                tx.commit().await?;
            }
            report.partitions.push(PrunedPartition {
                partition: name,
                month: format!("{year:04}-{month:02}"),
                nodes,
            });
        }
        Ok(report)
    }

    /// One event of one node's central copy.
    pub async fn event(&self, node: &str, seq: u64) -> Result<Option<(Event, Hash)>, ClusterError> {
        let client = self.pool().get().await?;
        event_on(&client, node, seq).await
    }

    /// Verifies every node's central copy: its chain from its anchor (no gap,
    /// no altered or moved row), the searchable columns against the sealed
    /// bytes, and its checkpoints' signatures against `keys` (or, without
    /// them, the keys the nodes registered).
    pub async fn verify_audit(
        &self,
        keys: Option<&Keyring>,
    ) -> Result<Vec<NodeVerifyReport>, ClusterError> {
        let client = self.pool().get().await?;
        let nodes = client
            .query(
                "SELECT node_id, through_seq, anchor_seq, anchor_hash FROM tongban_audit_shipped
                 ORDER BY node_id",
                &[],
            )
            .await?;
        let mut out = Vec::new();
        for row in nodes {
            let node: String = row.get(0);
            let through: i64 = row.get(1);
            let anchor_seq: i64 = row.get(2);
            let anchor_hash: Vec<u8> = row.get(3);
            let mut anchor = GENESIS;
            if anchor_hash.len() == 32 {
                anchor.copy_from_slice(&anchor_hash);
            }
            let own_keys;
            let keys = match keys {
                Some(k) => k,
                None => {
                    let mut ring = Keyring::new(Vec::new());
                    for r in client
                        .query(
                            "SELECT public_pem FROM tongban_audit_key WHERE node_id = $1",
                            &[&node],
                        )
                        .await?
                    {
                        let pem: String = r.get(0);
                        ring.extend(Keyring::from_pem(&pem));
                    }
                    own_keys = ring;
                    &own_keys
                }
            };
            let report = verify_node(
                &client,
                &node,
                (u64::try_from(anchor_seq).unwrap_or(0), anchor),
                keys,
            )
            .await?;
            let shipped_through = u64::try_from(through).unwrap_or(0);
            let mut report = report;
            if report.broken.is_none() && report.head_seq < shipped_through {
                report.broken = Some(BrokenLink {
                    seq: report.head_seq + 1,
                    problem: format!(
                        "the node shipped events through {shipped_through}, but the copy ends at {} (rows removed from the end)",
                        report.head_seq
                    ),
                });
            }
            out.push(NodeVerifyReport {
                node_id: node,
                shipped_through,
                report,
            });
        }
        Ok(out)
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

/// One event of one node's central copy, on `client`.
async fn event_on(
    client: &Client,
    node: &str,
    seq: u64,
) -> Result<Option<(Event, Hash)>, ClusterError> {
    let row = client
        .query_opt(
            "SELECT node_id, seq, stored FROM tongban_audit_event WHERE node_id = $1 AND seq = $2",
            &[&node, &i64::try_from(seq).unwrap_or(i64::MAX)],
        )
        .await?;
    row.as_ref().map(open_row).transpose()
}

/// Decodes a `(node_id, seq, stored)` row, refusing one whose sealed bytes
/// do not match their hash or their place.
fn open_row(r: &tokio_postgres::Row) -> Result<(Event, Hash), ClusterError> {
    let node: String = r.get(0);
    let seq: i64 = r.get(1);
    let stored: Vec<u8> = r.get(2);
    match Event::open(&stored) {
        Ok((e, recorded, recomputed))
            if recorded == recomputed
                && e.node == node
                && i64::try_from(e.seq).ok() == Some(seq) =>
        {
            Ok((e, recorded))
        }
        _ => Err(altered(&node, u64::try_from(seq).unwrap_or(0))),
    }
}

fn altered(node: &str, seq: u64) -> ClusterError {
    ClusterError::Database(format!(
        "the central copy of event {seq} of node {node} does not match its hash; run tongban audit verify --cluster"
    ))
}

/// A place in the cluster-wide order of events (newest first: time, then
/// node and sequence number, descending): a search goes on after it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// The event's time, ms since the epoch.
    pub time_ms: i64,
    /// Its node.
    pub node: String,
    /// Its sequence number.
    pub seq: u64,
}

impl Position {
    /// The position of an event.
    pub fn of(e: &Event) -> Self {
        Self {
            time_ms: e.body.time_ms,
            node: e.node.clone(),
            seq: e.seq,
        }
    }
}

/// What a retention run over the central copy did, or would do.
#[derive(Debug, serde::Serialize)]
pub struct CentralPruneReport {
    /// Whether nothing was removed.
    pub dry_run: bool,
    /// The monthly partitions dropped (or that would be), oldest first.
    pub partitions: Vec<PrunedPartition>,
    /// What held it back.
    pub limited_by: String,
}

/// One dropped monthly partition.
#[derive(Debug, serde::Serialize)]
pub struct PrunedPartition {
    /// The table.
    pub partition: String,
    /// `YYYY-MM` (UTC).
    pub month: String,
    /// Each node's events in it.
    pub nodes: Vec<PrunedNode>,
}

/// One node's events in a dropped partition.
#[derive(Debug, serde::Serialize)]
pub struct PrunedNode {
    /// The node.
    pub node_id: String,
    /// Its last event there: its new anchor.
    pub through_seq: u64,
    /// How many.
    pub events: u64,
}

/// The month of a partition `tongban_audit_event_yYYYYmMM`.
fn parse_partition(name: &str) -> Option<(i32, u8)> {
    let rest = name.strip_prefix("tongban_audit_event_y")?;
    let (year, month) = rest.split_once('m')?;
    let (year, month) = (year.parse().ok()?, month.parse().ok()?);
    (1..=12).contains(&month).then_some((year, month))
}

/// The first millisecond after a month (UTC).
fn month_end_ms(year: i32, month: u8) -> i64 {
    let (y, m) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    time::Date::from_calendar_date(
        y,
        time::Month::try_from(m).unwrap_or(time::Month::January),
        1,
    )
    .map(|d| d.midnight().assume_utc().unix_timestamp() * 1000)
    .unwrap_or(i64::MAX)
}

/// One node's piece of an export of the central copy.
#[derive(Debug)]
pub struct ExportSection {
    /// The node.
    pub node: String,
    /// Its first exported event.
    pub lo: u64,
    /// Its last exported event (a checkpoint covers it).
    pub hi: u64,
    /// The sequence number and hash before `lo`.
    pub anchor: (u64, Hash),
    /// The checkpoints in `[lo, hi]`, in order.
    pub checkpoints: Vec<SignedCheckpoint>,
    /// The event `lo`.
    pub first: Event,
}

/// One page of a cluster-wide search.
#[derive(Debug)]
pub struct ClusterPage {
    /// The events with their hashes, newest first.
    pub events: Vec<(Event, Hash)>,
    /// Where the next page starts; `None` when there is no more.
    pub next: Option<Position>,
}

impl Cluster {
    /// How far this node's chain is in PostgreSQL: the shipper's mark, or
    /// PostgreSQL's before the shipper has read it.
    async fn shipped_mark(&self) -> Result<u64, ClusterError> {
        if self.shipping.resumed.load(Ordering::Acquire) {
            Ok(self.shipping.shipped.load(Ordering::Acquire))
        } else {
            self.store.shipped_through(&self.node_id).await
        }
    }

    /// Searches every node's events: the central copy, and this node's own
    /// events not shipped there yet (a search sees a lookup made a moment
    /// ago through this node).
    pub async fn search(
        &self,
        audit: &AuditStore,
        filter: &EventFilter,
        after: Option<Position>,
        limit: usize,
    ) -> Result<ClusterPage, ClusterError> {
        let limit = limit.max(1);
        // The mark first: whatever ships meanwhile is read twice, never missed.
        let shipped = self.shipped_mark().await?;
        let mut events = self
            .store
            .search_events(filter, after.as_ref(), limit + 1)
            .await?;
        if filter.node.as_ref().is_none_or(|n| *n == self.node_id) {
            let audit = audit.clone();
            let f = filter.clone();
            let after = after.clone();
            let local = tokio::task::spawn_blocking(move || {
                unshipped(&audit, shipped, &f, after.as_ref(), limit + 1)
            })
            .await
            .map_err(|e| ClusterError::Database(format!("reading the local audit log: {e}")))??;
            let seen: BTreeSet<(String, u64)> = events
                .iter()
                .map(|(e, _)| (e.node.clone(), e.seq))
                .collect();
            events.extend(
                local
                    .into_iter()
                    .filter(|(e, _)| !seen.contains(&(e.node.clone(), e.seq))),
            );
            events.sort_by_key(|(e, _)| std::cmp::Reverse(Position::of(e)));
        }
        let next = (events.len() > limit).then(|| Position::of(&events[limit - 1].0));
        events.truncate(limit);
        Ok(ClusterPage { events, next })
    }

    /// Every event in `filter`'s window of every node, in pages, to `each`.
    pub async fn scan(
        &self,
        audit: &AuditStore,
        filter: &EventFilter,
        mut each: impl FnMut(&Event),
    ) -> Result<(), ClusterError> {
        let mut after = None;
        loop {
            let page = self.search(audit, filter, after, 5000).await?;
            for (e, _) in &page.events {
                each(e);
            }
            match page.next {
                Some(p) => after = Some(p),
                None => return Ok(()),
            }
        }
    }
}

/// This node's events after `shipped` that match, strictly after `after`,
/// newest first, at most `limit`: the ones the central copy lacks.
fn unshipped(
    audit: &AuditStore,
    shipped: u64,
    filter: &EventFilter,
    after: Option<&Position>,
    limit: usize,
) -> Result<Vec<(Event, Hash)>, ClusterError> {
    let local = |e: crate::audit::AuditError| {
        ClusterError::Database(format!("the local audit log cannot be read: {e}"))
    };
    let (head, _) = audit.head().map_err(local)?;
    let mut out = Vec::new();
    if head > shipped {
        for item in audit.events_desc(shipped + 1, head) {
            let (_, event, hash) = item.map_err(local)?;
            if filter.matches(&event) && after.is_none_or(|a| Position::of(&event) < *a) {
                out.push((event, hash));
            }
        }
    }
    out.sort_by_key(|(e, _)| std::cmp::Reverse(Position::of(e)));
    out.truncate(limit);
    Ok(out)
}

/// One node's central copy, verified.
#[derive(Debug, serde::Serialize)]
pub struct NodeVerifyReport {
    /// The node.
    pub node_id: String,
    /// How far its shipper says it shipped.
    pub shipped_through: u64,
    /// The chain's verification.
    pub report: VerifyReport,
}

/// Pages through one node's rows in sequence order (10,000 at a time, so
/// memory stays bounded whatever the log's size) and verifies them.
async fn verify_node(
    client: &Client,
    node: &str,
    anchor: (u64, Hash),
    keys: &Keyring,
) -> Result<VerifyReport, ClusterError> {
    let mut checkpoints = Vec::new();
    for r in client
        .query(
            "SELECT seq, signed FROM tongban_audit_checkpoint WHERE node_id = $1 ORDER BY seq",
            &[&node],
        )
        .await?
    {
        let seq: i64 = r.get(0);
        let bytes: Vec<u8> = r.get(1);
        match SignedCheckpoint::decode(&bytes) {
            Some(cp) => checkpoints.push(cp),
            None => {
                return Ok(ChainVerifier::from_anchor(anchor.0, anchor.1).report(Some(
                    BrokenLink {
                        seq: u64::try_from(seq).unwrap_or(0),
                        problem: "the checkpoint's row cannot be decoded (altered in PostgreSQL)"
                            .into(),
                    },
                )));
            }
        }
    }
    let mut v = ChainVerifier::from_anchor(anchor.0, anchor.1);
    let mut cps = checkpoints
        .iter()
        .filter(|c| c.checkpoint.seq > anchor.0)
        .peekable();
    let mut after: i64 = i64::try_from(anchor.0).unwrap_or(0);
    loop {
        let page = client
            .query(
                "SELECT seq, stored, (extract(epoch FROM time) * 1000)::bigint, kind, operation,
                        dept, subject, dataset, resident, purpose, case_ref, outcome, reason,
                        status, grant_id, fields::text, request_id
                   FROM tongban_audit_event WHERE node_id = $1 AND seq > $2
                  ORDER BY seq LIMIT 10000",
                &[&node, &after],
            )
            .await?;
        if page.is_empty() {
            break;
        }
        for r in &page {
            let seq: i64 = r.get(0);
            let seq_u = u64::try_from(seq).unwrap_or(0);
            let stored: Vec<u8> = r.get(1);
            if let Err(b) = v.check(seq_u, &stored) {
                return Ok(v.report(Some(b)));
            }
            // The bytes hold; the columns searched by officers must say the same.
            let mut c = Columns::default();
            let same = c.push(seq_u, stored).is_ok()
                && c.node[0] == node
                && c.time_ms[0] == r.get::<_, i64>(2)
                && c.kind[0] == r.get::<_, String>(3)
                && c.operation[0] == r.get::<_, String>(4)
                && c.dept[0] == r.get::<_, Option<String>>(5)
                && c.subject[0] == r.get::<_, Option<String>>(6)
                && c.dataset[0] == r.get::<_, Option<String>>(7)
                && c.resident[0] == r.get::<_, Option<Vec<u8>>>(8)
                && c.purpose[0] == r.get::<_, Option<String>>(9)
                && c.case_ref[0] == r.get::<_, Option<String>>(10)
                && c.outcome[0] == r.get::<_, String>(11)
                && c.reason[0] == r.get::<_, Option<String>>(12)
                && c.status[0] == r.get::<_, i32>(13)
                && c.grant_id[0] == r.get::<_, Option<String>>(14)
                && serde_json::from_str::<serde_json::Value>(&c.fields[0]).ok()
                    == serde_json::from_str::<serde_json::Value>(&r.get::<_, String>(15)).ok()
                && c.request_id[0] == r.get::<_, String>(16);
            if !same {
                return Ok(v.report(Some(BrokenLink {
                    seq: seq_u,
                    problem: "the row's columns do not say what its sealed bytes say (altered in PostgreSQL)".into(),
                })));
            }
            while let Some(cp) = cps.next_if(|c| c.checkpoint.seq <= seq_u) {
                if cp.checkpoint.seq < seq_u {
                    continue;
                }
                if let Err(b) = v.check_checkpoint(cp, Some(keys)) {
                    return Ok(v.report(Some(b)));
                }
            }
            after = seq;
        }
    }
    if let Some(cp) = cps.next() {
        let broken = BrokenLink {
            seq: v.head() + 1,
            problem: format!(
                "a signed checkpoint covers event {} but the copy ends at {} (rows removed from the end)",
                cp.checkpoint.seq,
                v.head()
            ),
        };
        return Ok(v.report(Some(broken)));
    }
    Ok(v.report(None))
}
