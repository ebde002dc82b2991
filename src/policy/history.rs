//! The history of policy changes: who changed which grant or dataset, when,
//! from what to what, and what access that changed. Kept in the sled tree
//! `policy/history`, keyed by the audit sequence number of the change's
//! event, so the history and the audit chain point at each other.

use serde::{Deserialize, Serialize};

/// One change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The audit event that recorded it.
    pub seq: u64,
    /// When, ms since the epoch.
    pub time_ms: i64,
    /// `dept/subject` of the administrator, or `files` for a reload from disk.
    pub author: String,
    /// `put`, `delete`, `revert` or `reload`.
    pub action: String,
    /// `grant` or `dataset`.
    pub kind: String,
    /// The grant or dataset id.
    pub id: String,
    /// The grant version after the change.
    pub version: Option<u32>,
    /// The entry as TOML before (absent when created).
    pub before: Option<String>,
    /// The entry as TOML after (absent when deleted).
    pub after: Option<String>,
    /// Access changes, one line each.
    pub access: Vec<String>,
    /// Why, as the administrator said (`reason`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl HistoryEntry {
    /// A unified diff of before and after.
    pub fn diff(&self) -> String {
        let before = self.before.as_deref().unwrap_or("");
        let after = self.after.as_deref().unwrap_or("");
        similar::TextDiff::from_lines(before, after)
            .unified_diff()
            .context_radius(3)
            .header("before", "after")
            .to_string()
    }
}

/// The history tree.
#[derive(Debug, Clone)]
pub struct History {
    tree: sled::Tree,
}

impl History {
    /// Opens the tree in `db`.
    pub fn open(db: &sled::Db) -> Result<Self, sled::Error> {
        Ok(Self {
            tree: db.open_tree("policy/history")?,
        })
    }

    /// Records one change (the caller flushes with its next group commit or explicitly).
    pub fn record(&self, entry: &HistoryEntry) -> Result<(), sled::Error> {
        let value = serde_json::to_vec(entry).unwrap_or_default();
        self.tree.insert(entry.seq.to_be_bytes(), value)?;
        self.tree.flush()?;
        Ok(())
    }

    /// Changes, newest first, optionally of one kind and id.
    pub fn list(
        &self,
        kind: Option<&str>,
        id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, sled::Error> {
        let mut out = Vec::new();
        for item in self.tree.iter().rev() {
            let (_, v) = item?;
            let Ok(e) = serde_json::from_slice::<HistoryEntry>(&v) else {
                continue;
            };
            if kind.is_some_and(|k| k != e.kind) || id.is_some_and(|i| i != e.id) {
                continue;
            }
            out.push(e);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The latest recorded state of a grant at `version`.
    pub fn grant_version(
        &self,
        id: &str,
        version: u32,
    ) -> Result<Option<HistoryEntry>, sled::Error> {
        let entries = self.list(Some("grant"), Some(id), usize::MAX)?;
        if let Some(e) = entries
            .iter()
            .find(|e| e.version == Some(version) && e.after.is_some())
        {
            return Ok(Some(e.clone()));
        }
        // A version from before the first recorded change (loaded from the
        // files): the change that replaced it recorded it as `before`.
        Ok(entries
            .into_iter()
            .find(|e| e.version == Some(version + 1) && e.before.is_some())
            .map(|e| HistoryEntry {
                version: Some(version),
                after: e.before.clone(),
                ..e
            }))
    }
}
