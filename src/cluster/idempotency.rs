//! The cluster's idempotency keys: one table, so a retry is honoured on any
//! node. A row is a reservation while its `first_seq` is empty (the first
//! request is being answered on `node_id`), and the record of an answered
//! request once it is set. Only keyed hashes are kept.

use super::store::{ClusterError, PolicyStore};
use crate::pipeline::idempotency::{Begin, Fingerprint, First};

impl PolicyStore {
    /// Reserves `fp` for a first request on `node_id`, or finds what holds
    /// it: an expired row (older than `expired_ms`) or a reservation never
    /// finished (older than `abandoned_ms`: its node stopped) is removed first.
    pub async fn idempotency_begin(
        &self,
        fp: &Fingerprint,
        node_id: &str,
        now_ms: i64,
        expired_ms: i64,
        abandoned_ms: i64,
    ) -> Result<Begin, ClusterError> {
        let client = self.pool().get().await?;
        let key: &[u8] = &fp.key;
        client
            .execute(
                "DELETE FROM tongban_idempotency WHERE key = $1
                   AND (at_ms < $2 OR (first_seq IS NULL AND at_ms < $3))",
                &[&key, &expired_ms, &abandoned_ms],
            )
            .await?;
        let request: &[u8] = &fp.request;
        let inserted = client
            .execute(
                "INSERT INTO tongban_idempotency (key, request, node_id, at_ms)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&key, &request, &node_id, &now_ms],
            )
            .await?;
        if inserted == 1 {
            return Ok(Begin::Fresh);
        }
        let row = client
            .query_opt(
                "SELECT request, node_id, first_seq, last_seq, at_ms
                   FROM tongban_idempotency WHERE key = $1",
                &[&key],
            )
            .await?;
        // Removed between the insert and the read: as good as in flight.
        let Some(row) = row else {
            return Ok(Begin::InFlight);
        };
        let held: Vec<u8> = row.get(0);
        if held != fp.request {
            return Ok(Begin::Reused);
        }
        let (first, last): (Option<i64>, Option<i64>) = (row.get(2), row.get(3));
        Ok(match (first, last) {
            (Some(first), Some(last)) => Begin::Replay(First {
                node: row.get(1),
                first_seq: u64::try_from(first).unwrap_or(0),
                last_seq: u64::try_from(last).unwrap_or(0),
                at_ms: row.get(4),
            }),
            _ => Begin::InFlight,
        })
    }

    /// Records the first request's events under its reservation.
    pub async fn idempotency_commit(
        &self,
        fp: &Fingerprint,
        first: &First,
    ) -> Result<(), ClusterError> {
        let client = self.pool().get().await?;
        let (key, request): (&[u8], &[u8]) = (&fp.key, &fp.request);
        let seq = |s: u64| i64::try_from(s).unwrap_or(i64::MAX);
        client
            .execute(
                "UPDATE tongban_idempotency SET first_seq = $3, last_seq = $4, node_id = $5
                  WHERE key = $1 AND request = $2 AND first_seq IS NULL",
                &[
                    &key,
                    &request,
                    &seq(first.first_seq),
                    &seq(first.last_seq),
                    &first.node,
                ],
            )
            .await?;
        Ok(())
    }

    /// Gives up a reservation of `node_id` that was not answered.
    pub async fn idempotency_release(
        &self,
        fp: &Fingerprint,
        node_id: &str,
    ) -> Result<(), ClusterError> {
        let client = self.pool().get().await?;
        let key: &[u8] = &fp.key;
        client
            .execute(
                "DELETE FROM tongban_idempotency
                  WHERE key = $1 AND first_seq IS NULL AND node_id = $2",
                &[&key, &node_id],
            )
            .await?;
        Ok(())
    }

    /// Removes the rows older than `expired_ms`; how many.
    pub async fn idempotency_purge(&self, expired_ms: i64) -> Result<u64, ClusterError> {
        let client = self.pool().get().await?;
        Ok(client
            .execute(
                "DELETE FROM tongban_idempotency WHERE at_ms < $1",
                &[&expired_ms],
            )
            .await?)
    }
}
