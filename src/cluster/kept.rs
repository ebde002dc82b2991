//! The cluster's workflow records (sharing requests, data objections): one
//! table each, the record as JSON beside its id, state and filing time, so
//! that a change is made only from the state it was decided in.

use super::store::{ClusterError, PolicyStore};

impl PolicyStore {
    /// Keeps a record in `table`: a new one (`was` none), or a change from
    /// the state `was`; false if another change came first. `table` is one
    /// of the gateway's own names, never a caller's.
    pub async fn kept_put(
        &self,
        table: &'static str,
        id: &str,
        state: &str,
        filed_ms: i64,
        doc: &str,
        was: Option<&str>,
    ) -> Result<bool, ClusterError> {
        let client = self.pool().get().await?;
        let n =
            match was {
                None => {
                    client
                        .execute(
                            &format!(
                                "INSERT INTO {table} (id, state, filed_ms, doc)
                             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"
                            ),
                            &[&id, &state, &filed_ms, &doc],
                        )
                        .await?
                }
                Some(was) => client
                    .execute(
                        &format!(
                            "UPDATE {table} SET state = $2, doc = $3 WHERE id = $1 AND state = $4"
                        ),
                        &[&id, &state, &doc, &was],
                    )
                    .await?,
            };
        Ok(n == 1)
    }

    /// The record `id` of `table`, as JSON.
    pub async fn kept_get(
        &self,
        table: &'static str,
        id: &str,
    ) -> Result<Option<String>, ClusterError> {
        let client = self.pool().get().await?;
        let row = client
            .query_opt(&format!("SELECT doc FROM {table} WHERE id = $1"), &[&id])
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Every record of `table`, as JSON.
    pub async fn kept_list(&self, table: &'static str) -> Result<Vec<String>, ClusterError> {
        let client = self.pool().get().await?;
        let rows = client
            .query(&format!("SELECT doc FROM {table}"), &[])
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}
