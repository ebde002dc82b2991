//! The case index: every event that names a case reference, by the
//! department that named it and the reference, exactly (a case reference
//! is unique only within its department).
//!
//! One sled tree, `audit/by_case`: a key per event, `dept 0x00 case_ref
//! 0x00 seq` (big-endian), no value: a case's events are one prefix scan,
//! oldest first. Neither a department id nor a case reference holds a
//! zero byte. The applier adds a group's events after filing them; what a
//! stop left unindexed is indexed at open, from the events after
//! `case_indexed_through` (in `audit/meta`, written every 4096 events). A
//! prune removes the entries of
//! the events it removes.

use super::event::EventBody;
use super::tree::{AuditError, key_seq};

const TREE: &str = "audit/by_case";
const THROUGH: &[u8] = b"case_indexed_through";

/// The case index of one audit store.
#[derive(Debug, Clone)]
pub struct CaseIndex {
    tree: sled::Tree,
    meta: sled::Tree,
    /// A group could not be indexed: the mark stays where it was, so the
    /// next open indexes it (and every group after it) again.
    gap: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The mark as last written (it is written every [`MARK_EVERY`]
    /// events, not per group: on the applier's path a write per group
    /// costs as much as the index itself; the next open indexes again what
    /// came after it, which adding twice leaves as it was).
    written: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Events between two writes of the mark.
const MARK_EVERY: u64 = 4096;

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
        let written = meta.get(THROUGH)?.map_or(0, |v| key_seq(&v));
        Ok(Self {
            tree: db.open_tree(TREE)?,
            meta: meta.clone(),
            gap: std::sync::Arc::default(),
            written: std::sync::Arc::new(written.into()),
        })
    }

    /// The last sequence number indexed (with everything before it).
    pub fn indexed_through(&self) -> Result<u64, AuditError> {
        Ok(self.meta.get(THROUGH)?.map_or(0, |v| key_seq(&v)))
    }

    /// Adds the events of a group (in sequence order), and moves the mark.
    pub fn add<'a>(
        &self,
        events: impl IntoIterator<Item = (u64, &'a EventBody)>,
    ) -> Result<(), AuditError> {
        let mut batch = sled::Batch::default();
        let mut through = None;
        let mut keys = 0;
        for (seq, body) in events {
            through = Some(seq);
            if let (Some(dept), Some(case_ref)) = (&body.dept, &body.case_ref) {
                let mut key = prefix(dept, case_ref);
                key.extend_from_slice(&seq.to_be_bytes());
                batch.insert(key, &[][..]);
                keys += 1;
            }
        }
        use std::sync::atomic::Ordering;
        let Some(through) = through else {
            return Ok(());
        };
        if keys > 0 {
            if let Err(e) = self.tree.apply_batch(batch) {
                self.gap.store(true, Ordering::Release);
                return Err(e.into());
            }
        }
        let written = self.written.load(Ordering::Acquire);
        if !self.gap.load(Ordering::Acquire) && through >= written + MARK_EVERY {
            self.meta.insert(THROUGH, &through.to_be_bytes())?;
            self.written.store(through, Ordering::Release);
        }
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
        // The mark moves every 4096 events (the next open indexes the rest again).
        assert_eq!(index.indexed_through().unwrap(), 0);
        let many: Vec<EventBody> = (0..4096).map(|_| body("minzheng", None)).collect();
        index
            .add(many.iter().enumerate().map(|(i, b)| (i as u64 + 6, b)))
            .unwrap();
        assert_eq!(index.indexed_through().unwrap(), 4101);
        index.prune_through(2).unwrap();
        assert_eq!(index.seqs("minzheng", "MZ-1").unwrap(), [5]);
        assert!(index.seqs("minzheng", "MZ-10").unwrap().is_empty());
    }
}
