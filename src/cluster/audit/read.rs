//! Reading the central copy: a resident's events, the officers' search
//! (the central copy plus this node's events not shipped yet), the pieces
//! of an export, and single events.
//!
//! Invariant: every row read is checked against its sealed bytes (hash,
//! node and sequence number) before it is answered.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use tokio_postgres::Client;

use crate::audit::AuditStore;
use crate::audit::checkpoint::SignedCheckpoint;
use crate::audit::event::{Event, Hash};
use crate::audit::filter::EventFilter;
use crate::cluster::Cluster;
use crate::cluster::store::{ClusterError, PolicyStore};

impl PolicyStore {
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

    /// Every node's events recorded by `dept` under `case_ref`, oldest
    /// first, decoded from the sealed bytes (checked as a resident's are).
    pub async fn case_events(
        &self,
        dept: &str,
        case_ref: &str,
    ) -> Result<Vec<Event>, ClusterError> {
        let client = self.pool().get().await?;
        let rows = client
            .query(
                "SELECT node_id, seq, stored FROM tongban_audit_event
                  WHERE dept = $1 AND case_ref = $2 ORDER BY time, node_id, seq",
                &[&dept, &case_ref],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let (event, _) = open_row(&r)?;
            if event.body.dept.as_deref() != Some(dept)
                || event.body.case_ref.as_deref() != Some(case_ref)
            {
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
            ("case_ref", &filter.case_ref),
            ("node_id", &filter.node),
        ] {
            if let Some(v) = value {
                add(&format!("{column} = ?"), Box::new(v.clone()));
            }
        }
        if let Some(d) = filter.decision {
            add("outcome = ?", Box::new(d.as_str().to_owned()));
        }
        if let Some(owner) = &filter.owner {
            add("starts_with(dataset, ?)", Box::new(format!("{owner}.")));
        }
        if !filter.kinds.is_empty() {
            let kinds: Vec<String> = filter.kinds.iter().map(|k| k.as_str().to_owned()).collect();
            add("kind = ANY(?)", Box::new(kinds));
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

    /// One event of one node's central copy.
    pub async fn event(&self, node: &str, seq: u64) -> Result<Option<(Event, Hash)>, ClusterError> {
        let client = self.pool().get().await?;
        event_on(&client, node, seq).await
    }
}

/// One event of one node's central copy, on `client`.
pub(super) async fn event_on(
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
pub(super) fn open_row(r: &tokio_postgres::Row) -> Result<(Event, Hash), ClusterError> {
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

pub(super) fn altered(node: &str, seq: u64) -> ClusterError {
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
