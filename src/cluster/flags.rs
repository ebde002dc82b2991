//! The cluster's flag reviews and announced flags: two tables, so a mark
//! shows on every node and a new flag is announced by one node only.

use std::collections::HashMap;

use super::store::{ClusterError, PolicyStore};
use crate::alerts::reviews::Review;

impl PolicyStore {
    /// Marks a flag reviewed (replacing an earlier mark).
    pub async fn flag_review_put(&self, id: &str, review: &Review) -> Result<(), ClusterError> {
        let client = self.pool().get().await?;
        client
            .execute(
                "INSERT INTO tongban_flag_review (id, by_whom, at_ms, note) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET by_whom = $2, at_ms = $3, note = $4",
                &[&id, &review.by, &review.at_ms, &review.note],
            )
            .await?;
        Ok(())
    }

    /// The marks of `ids` that have one.
    pub async fn flag_reviews(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, Review>, ClusterError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let client = self.pool().get().await?;
        let rows = client
            .query(
                "SELECT id, by_whom, at_ms, note FROM tongban_flag_review WHERE id = ANY($1)",
                &[&ids],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    Review {
                        by: r.get(1),
                        at_ms: r.get(2),
                        note: r.get(3),
                    },
                )
            })
            .collect())
    }

    /// Records a flag as announced by `node`: true for the first node only.
    pub async fn flag_announce(
        &self,
        id: &str,
        node: &str,
        at_ms: i64,
    ) -> Result<bool, ClusterError> {
        let client = self.pool().get().await?;
        let n = client
            .execute(
                "INSERT INTO tongban_flag_announced (id, node_id, at_ms) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[&id, &node, &at_ms],
            )
            .await?;
        Ok(n == 1)
    }

    /// Forgets the announcements made before `before_ms`.
    pub async fn flag_announced_purge(&self, before_ms: i64) -> Result<(), ClusterError> {
        let client = self.pool().get().await?;
        client
            .execute(
                "DELETE FROM tongban_flag_announced WHERE at_ms < $1",
                &[&before_ms],
            )
            .await?;
        Ok(())
    }
}
