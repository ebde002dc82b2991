//! The cluster's objections: one table, the objection as JSON beside the
//! columns it is found by (id, the resident's pseudonym).

use super::store::{ClusterError, PolicyStore};
use crate::objections::{Lodged, Objection};

fn decode(text: &str) -> Result<Objection, ClusterError> {
    serde_json::from_str(text).map_err(|e| {
        ClusterError::Database(format!("an objection in PostgreSQL cannot be read: {e}"))
    })
}

impl PolicyStore {
    /// Keeps a new objection, unless one about the same use is open (a
    /// unique index on the open ones decides between two lodged at once).
    pub async fn objection_lodge(&self, o: &Objection) -> Result<Lodged, ClusterError> {
        let doc = serde_json::to_string(o).map_err(|e| ClusterError::Database(e.to_string()))?;
        let seq = i64::try_from(o.seq).unwrap_or(i64::MAX);
        let client = self.pool().get().await?;
        let inserted = client
            .execute(
                "INSERT INTO tongban_objection (id, resident, node, seq, state, filed_ms, doc)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                &[
                    &o.id,
                    &o.resident,
                    &o.node,
                    &seq,
                    &o.state.as_str(),
                    &o.filed_ms,
                    &doc,
                ],
            )
            .await?;
        if inserted == 1 {
            return Ok(Lodged::Taken);
        }
        let open = client
            .query_opt(
                "SELECT id FROM tongban_objection
                  WHERE resident = $1 AND node = $2 AND seq = $3 AND state = 'open'",
                &[&o.resident, &o.node, &seq],
            )
            .await?;
        Ok(Lodged::AlreadyOpen(
            open.map(|r| r.get(0)).unwrap_or_default(),
        ))
    }

    /// Keeps an objection's answer, unless it is closed (false).
    pub async fn objection_answer(&self, o: &Objection) -> Result<bool, ClusterError> {
        let doc = serde_json::to_string(o).map_err(|e| ClusterError::Database(e.to_string()))?;
        let client = self.pool().get().await?;
        let n = client
            .execute(
                "UPDATE tongban_objection SET state = $2, doc = $3
                  WHERE id = $1 AND state <> 'closed'",
                &[&o.id, &o.state.as_str(), &doc],
            )
            .await?;
        Ok(n == 1)
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
