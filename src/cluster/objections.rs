//! The cluster's objections: one table, the objection as JSON beside the
//! columns it is found by (id, the resident's pseudonym).

use super::store::{ClusterError, PolicyStore};
use crate::objections::Objection;

fn decode(text: &str) -> Result<Objection, ClusterError> {
    serde_json::from_str(text).map_err(|e| {
        ClusterError::Database(format!("an objection in PostgreSQL cannot be read: {e}"))
    })
}

impl PolicyStore {
    /// Keeps an objection (new or changed).
    pub async fn objection_put(&self, o: &Objection) -> Result<(), ClusterError> {
        let doc = serde_json::to_string(o).map_err(|e| ClusterError::Database(e.to_string()))?;
        let client = self.pool().get().await?;
        client
            .execute(
                "INSERT INTO tongban_objection (id, resident, filed_ms, doc) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET doc = $4",
                &[&o.id, &o.resident, &o.filed_ms, &doc],
            )
            .await?;
        Ok(())
    }

    /// The objection `id`.
    pub async fn objection_get(&self, id: &str) -> Result<Option<Objection>, ClusterError> {
        let client = self.pool().get().await?;
        let row = client
            .query_opt("SELECT doc FROM tongban_objection WHERE id = $1", &[&id])
            .await?;
        row.map(|r| decode(&r.get::<_, String>(0))).transpose()
    }

    /// Every objection, or one resident's.
    pub async fn objections(&self, resident: Option<&str>) -> Result<Vec<Objection>, ClusterError> {
        let client = self.pool().get().await?;
        let rows = match resident {
            Some(r) => {
                client
                    .query(
                        "SELECT doc FROM tongban_objection WHERE resident = $1",
                        &[&r],
                    )
                    .await?
            }
            None => {
                client
                    .query("SELECT doc FROM tongban_objection", &[])
                    .await?
            }
        };
        rows.iter()
            .map(|r| decode(&r.get::<_, String>(0)))
            .collect()
    }
}
