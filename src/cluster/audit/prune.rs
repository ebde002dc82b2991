//! Retention of the central copy: whole monthly partitions dropped, oldest
//! first, each node's anchor moved to its last dropped event.

use super::read::open_row;
use super::ship::LOCK_PARTITION;
use crate::cluster::store::{ClusterError, PolicyStore};

impl PolicyStore {
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
        let mut report = CentralPruneReport {
            dry_run,
            partitions: Vec::new(),
            limited_by: "nothing older than the retention period".into(),
        };
        for ((year, month), name) in partitions(&client).await? {
            if month_end_ms(year, month) > cutoff_ms {
                report.limited_by = "retention period".into();
                break;
            }
            let nodes = match prunable(&client, &name).await? {
                Ok(nodes) => nodes,
                Err(limited_by) => {
                    report.limited_by = limited_by;
                    break;
                }
            };
            if !dry_run {
                drop_partition(&mut client, &name, &nodes).await?;
            }
            report.partitions.push(PrunedPartition {
                partition: name,
                month: format!("{year:04}-{month:02}"),
                nodes,
            });
        }
        Ok(report)
    }
}

/// The central copy's monthly partitions, oldest first.
async fn partitions(
    client: &tokio_postgres::Client,
) -> Result<Vec<((i32, u8), String)>, ClusterError> {
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
    Ok(months)
}

/// Each node's events in partition `name`, if every one of them is
/// exported from the central copy and covered by a signed checkpoint;
/// otherwise what holds the partition back.
async fn prunable(
    client: &tokio_postgres::Client,
    name: &str,
) -> Result<Result<Vec<PrunedNode>, String>, ClusterError> {
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
            return Ok(Err(format!(
                "{name}: node {node}'s events through {through} are not yet exported from the central copy (exported through {exported})"
            )));
        }
        if covered < through {
            return Ok(Err(format!(
                "{name}: node {node}'s events through {through} are not yet covered by a signed checkpoint"
            )));
        }
        nodes.push(PrunedNode {
            node_id: node,
            through_seq: u64::try_from(through).unwrap_or(0),
            events: u64::try_from(events).unwrap_or(0),
        });
    }
    Ok(Ok(nodes))
}

/// Drops partition `name` in one transaction that moves each node's anchor
/// to its last event there and records the prune.
async fn drop_partition(
    client: &mut deadpool_postgres::Object,
    name: &str,
    nodes: &[PrunedNode],
) -> Result<(), ClusterError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_PARTITION])
        .await?;
    for n in nodes {
        let through = i64::try_from(n.through_seq).unwrap_or(i64::MAX);
        let row = tx
            .query_one(
                &format!("SELECT node_id, seq, stored FROM {name} WHERE node_id = $1 AND seq = $2"),
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
    Ok(())
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
