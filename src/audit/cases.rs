//! The case index: every event that names a case reference, by the
//! department that named it and the reference, exactly (a case reference
//! is unique only within its department).
//!
//! One sled tree, `audit/by_case`: a key per event, `dept 0x00 case_ref
//! 0x00 seq` (big-endian), no value: a case's events are one prefix scan,
//! oldest first. Neither a department id nor a case reference holds a
//! zero byte. The index is brought up to date when a case is read, from
//! the events after `case_indexed_through` (in `audit/meta`): the request
//! path and the applier never write it (an insert per event cost a fifth
//! of a lookup's instructions), and a case read pays only for the events
//! since the last one. A prune removes the entries of the events it
//! removes.

use super::event::EventBody;
use super::tree::{AuditError, key_seq};

const TREE: &str = "audit/by_case";
const THROUGH: &[u8] = b"case_indexed_through";

/// The case index of one audit store.
#[derive(Debug, Clone)]
pub struct CaseIndex {
    tree: sled::Tree,
    meta: sled::Tree,
    /// Held while the index catches up with the log.
    catching_up: std::sync::Arc<std::sync::Mutex<()>>,
}

fn prefix(dept: &str, case_ref: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(dept.len() + case_ref.len() + 10);
    key.extend_from_slice(dept.as_bytes());
    key.push(0);
    key.extend_from_slice(case_ref.as_bytes());
    key.push(0);
    key
}

impl CaseIndex {
    /// Opens the index tree.
    pub fn open(db: &sled::Db, meta: &sled::Tree) -> Result<Self, AuditError> {
        Ok(Self {
            tree: db.open_tree(TREE)?,
            meta: meta.clone(),
            catching_up: std::sync::Arc::default(),
        })
    }

    /// The last sequence number indexed (with everything before it).
    pub fn indexed_through(&self) -> Result<u64, AuditError> {
        Ok(self.meta.get(THROUGH)?.map_or(0, |v| key_seq(&v)))
    }

    /// The lock a catch-up holds (one at a time).
    pub fn catching_up(&self) -> std::sync::MutexGuard<'_, ()> {
        self.catching_up
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds events (in sequence order); adding one twice leaves the index
    /// as it was.
    pub fn add<'a>(
        &self,
        events: impl IntoIterator<Item = (u64, &'a EventBody)>,
    ) -> Result<(), AuditError> {
        let mut batch = sled::Batch::default();
        let mut keys = 0;
        for (seq, body) in events {
            if let (Some(dept), Some(case_ref)) = (&body.dept, &body.case_ref) {
                let mut key = prefix(dept, case_ref);
                key.extend_from_slice(&seq.to_be_bytes());
                batch.insert(key, &[][..]);
                keys += 1;
            }
        }
        if keys > 0 {
            self.tree.apply_batch(batch)?;
        }
        Ok(())
    }

    /// Records that every event through `through` is indexed.
    pub fn mark(&self, through: u64) -> Result<(), AuditError> {
        self.meta.insert(THROUGH, &through.to_be_bytes())?;
        Ok(())
    }

    /// The sequence numbers of the events of `dept` under `case_ref`, oldest first.
    pub fn seqs(&self, dept: &str, case_ref: &str) -> Result<Vec<u64>, AuditError> {
        let prefix = prefix(dept, case_ref);
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(&prefix) {
            let (key, _) = item?;
            out.push(key_seq(&key[prefix.len()..]));
        }
        Ok(out)
    }

    /// Removes the entries of the events through `through` (a prune).
    pub fn prune_through(&self, through: u64) -> Result<(), AuditError> {
        for item in self.tree.iter() {
            let (key, _) = item?;
            if key.len() >= 8 && key_seq(&key[key.len() - 8..]) <= through {
                self.tree.remove(key)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(dept: &str, case_ref: Option<&str>) -> EventBody {
        EventBody {
            time_ms: 0,
            request_id: String::new(),
            kind: crate::audit::EventKind::Query,
            operation: "lookup".into(),
            dept: Some(dept.into()),
            subject: None,
            roles: Vec::new(),
            cert_fingerprint: None,
            source: "-".into(),
            dataset: None,
            resident: None,
            purpose: None,
            case_ref: case_ref.map(str::to_owned),
            fields: Vec::new(),
            outcome: crate::audit::Outcome::Allow,
            reason: None,
            grant: None,
            policy_version: None,
            status: 200,
            latency_us: 0,
            detail: None,
            proof: None,
        }
    }

    #[test]
    fn a_case_is_its_departments_and_exact() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let meta = db.open_tree("audit/meta").unwrap();
        let index = CaseIndex::open(&db, &meta).unwrap();
        let events = [
            body("minzheng", Some("MZ-1")),
            body("minzheng", Some("MZ-10")),
            body("jiaoyu", Some("MZ-1")),
            body("minzheng", None),
            body("minzheng", Some("MZ-1")),
        ];
        index
            .add(events.iter().enumerate().map(|(i, b)| (i as u64 + 1, b)))
            .unwrap();
        assert_eq!(index.seqs("minzheng", "MZ-1").unwrap(), [1, 5]);
        assert_eq!(index.seqs("minzheng", "MZ-10").unwrap(), [2]);
        assert_eq!(index.seqs("jiaoyu", "MZ-1").unwrap(), [3]);
        assert!(index.seqs("minzheng", "MZ").unwrap().is_empty());
        index.mark(5).unwrap();
        assert_eq!(index.indexed_through().unwrap(), 5);
        index.prune_through(2).unwrap();
        assert_eq!(index.seqs("minzheng", "MZ-1").unwrap(), [5]);
        assert!(index.seqs("minzheng", "MZ-10").unwrap().is_empty());
    }
}
