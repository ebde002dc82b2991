//! The cluster's sharing requests: one table, the request as JSON beside
//! its state, so that a change is made only from the state it was decided in.

use super::store::{ClusterError, PolicyStore};
use crate::sharing::Request;

fn decode(text: &str) -> Result<Request, ClusterError> {
    serde_json::from_str(text).map_err(|e| {
        ClusterError::Database(format!(
            "a sharing request in PostgreSQL cannot be read: {e}"
        ))
    })
}

impl PolicyStore {
    /// Keeps a request: a new one (`was` none), or a change from the state
    /// `was`; false if another change came first.
    pub async fn sharing_put(&self, r: &Request, was: Option<&str>) -> Result<bool, ClusterError> {
        let doc = serde_json::to_string(r).map_err(|e| ClusterError::Database(e.to_string()))?;
        let client = self.pool().get().await?;
        let n = match was {
            None => {
                client
                    .execute(
                        "INSERT INTO tongban_sharing_request (id, state, filed_ms, doc)
                         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                        &[&r.id, &r.state.as_str(), &r.filed_ms, &doc],
                    )
                    .await?
            }
            Some(state) => {
                client
                    .execute(
                        "UPDATE tongban_sharing_request SET state = $2, doc = $3
                          WHERE id = $1 AND state = $4",
                        &[&r.id, &r.state.as_str(), &doc, &state],
                    )
                    .await?
            }
        };
        Ok(n == 1)
    }

    /// The request `id`.
    pub async fn sharing_get(&self, id: &str) -> Result<Option<Request>, ClusterError> {
        let client = self.pool().get().await?;
        let row = client
            .query_opt(
                "SELECT doc FROM tongban_sharing_request WHERE id = $1",
                &[&id],
            )
            .await?;
        row.map(|r| decode(&r.get::<_, String>(0))).transpose()
    }

    /// Every request.
    pub async fn sharing_list(&self) -> Result<Vec<Request>, ClusterError> {
        let client = self.pool().get().await?;
        let rows = client
            .query("SELECT doc FROM tongban_sharing_request", &[])
            .await?;
        rows.iter()
            .map(|r| decode(&r.get::<_, String>(0)))
            .collect()
    }
}
