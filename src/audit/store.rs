//! The audit log in sled: events keyed by big-endian sequence number, an exact
//! index by resident pseudonym, and a little metadata.
//!
//! Index entries are plain inserts written in the same group commit as their
//! events; `indexed_through` records how far they are complete, and opening
//! the store re-derives any index entries missing after a crash.

use super::chain::{ChainVerifier, VerifyReport};
use super::event::{Event, GENESIS, Hash};

const EVENTS: &str = "audit/events";
const BY_RESIDENT: &str = "audit/by_resident";
const META: &str = "audit/meta";
const INDEXED_THROUGH: &[u8] = b"indexed_through";

/// The audit store failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// sled reported an error.
    #[error("audit store: {0}")]
    Store(#[from] sled::Error),
    /// The log file could not be synced.
    #[error("audit log sync: {0}")]
    Sync(#[from] std::io::Error),
    /// A stored event could not be decoded.
    #[error("audit event {seq}: {message}")]
    Corrupt {
        /// Its sequence number.
        seq: u64,
        /// What is wrong.
        message: String,
    },
    /// The writer has stopped; nothing can be made durable.
    #[error("the audit writer is not running")]
    WriterStopped,
}

/// An event ready to store: sequence number, stored bytes, resident pseudonym.
pub(crate) type SealedEvent = (u64, Vec<u8>, Option<[u8; 16]>);

/// Handles on the audit trees of one sled database.
#[derive(Debug, Clone)]
pub struct AuditStore {
    db: sled::Db,
    events: sled::Tree,
    by_resident: sled::Tree,
    meta: sled::Tree,
}

impl AuditStore {
    /// Opens (creating if needed) the audit trees and repairs the index tail.
    pub fn open(db: &sled::Db) -> Result<Self, AuditError> {
        let store = Self {
            db: db.clone(),
            events: db.open_tree(EVENTS)?,
            by_resident: db.open_tree(BY_RESIDENT)?,
            meta: db.open_tree(META)?,
        };
        store.recover_indexes()?;
        Ok(store)
    }

    /// The database the trees live in.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// The last event's sequence number and recorded hash, or `(0, GENESIS)`.
    pub fn head(&self) -> Result<(u64, Hash), AuditError> {
        match self.events.last()? {
            None => Ok((0, GENESIS)),
            Some((key, value)) => {
                let seq = key_seq(&key);
                let (_, recorded, _) = Event::open(&value).map_err(|e| AuditError::Corrupt {
                    seq,
                    message: e.to_string(),
                })?;
                Ok((seq, recorded))
            }
        }
    }

    /// One event by sequence number.
    pub fn get(&self, seq: u64) -> Result<Option<Event>, AuditError> {
        let Some(value) = self.events.get(seq.to_be_bytes())? else {
            return Ok(None);
        };
        let (event, _, _) = Event::open(&value).map_err(|e| AuditError::Corrupt {
            seq,
            message: e.to_string(),
        })?;
        Ok(Some(event))
    }

    /// Number of events stored.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether no event is stored.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Sequence numbers of the events about one resident, newest first.
    pub fn seqs_for_resident(
        &self,
        pseudonym: &[u8; 16],
    ) -> impl Iterator<Item = Result<u64, AuditError>> + use<> {
        self.by_resident.scan_prefix(pseudonym).rev().map(|item| {
            let (key, _) = item?;
            Ok(key_seq(&key[16..]))
        })
    }

    /// Recomputes the whole chain from genesis.
    pub fn verify(&self) -> Result<VerifyReport, AuditError> {
        let mut v = ChainVerifier::default();
        for item in &self.events {
            let (key, value) = item?;
            if let Err(broken) = v.check(key_seq(&key), &value) {
                return Ok(v.report(Some(broken)));
            }
        }
        Ok(v.report(None))
    }

    /// Appends sealed events and their index entries (no flush: the writer flushes the group).
    pub(crate) fn append(&self, batch: &[SealedEvent]) -> Result<(), AuditError> {
        for (seq, stored, _) in batch {
            self.events.insert(seq.to_be_bytes(), stored.as_slice())?;
        }
        for (seq, _, resident) in batch {
            if let Some(p) = resident {
                self.by_resident.insert(index_key(p, *seq), &[])?;
            }
        }
        if let Some((last, _, _)) = batch.last() {
            self.meta.insert(INDEXED_THROUGH, &last.to_be_bytes())?;
        }
        Ok(())
    }

    /// Raw access for tests that tamper with the store.
    #[doc(hidden)]
    pub fn events_tree(&self) -> &sled::Tree {
        &self.events
    }

    /// Whether every index entry points at an event and every event is in its index.
    pub fn indexes_consistent(&self) -> Result<bool, AuditError> {
        for item in &self.by_resident {
            let (key, _) = item?;
            let seq = key_seq(&key[16..]);
            match self.get(seq)? {
                Some(e) if e.body.resident.as_ref().map(|r| &r[..]) == Some(&key[..16]) => {}
                _ => return Ok(false),
            }
        }
        for item in &self.events {
            let (key, value) = item?;
            let seq = key_seq(&key);
            if let Ok((e, _, _)) = Event::open(&value) {
                if let Some(p) = e.body.resident {
                    if !self.by_resident.contains_key(index_key(&p, seq))? {
                        return Ok(false);
                    }
                }
            }
        }
        Ok(true)
    }

    fn recover_indexes(&self) -> Result<u64, AuditError> {
        let through = self.meta.get(INDEXED_THROUGH)?.map_or(0, |v| key_seq(&v));
        let mut repaired = 0;
        for item in self.events.range((through + 1).to_be_bytes()..) {
            let (key, value) = item?;
            let seq = key_seq(&key);
            let (event, _, _) = Event::open(&value).map_err(|e| AuditError::Corrupt {
                seq,
                message: e.to_string(),
            })?;
            if let Some(p) = event.body.resident {
                self.by_resident.insert(index_key(&p, seq), &[])?;
                repaired += 1;
            }
            self.meta.insert(INDEXED_THROUGH, &seq.to_be_bytes())?;
        }
        if repaired > 0 {
            self.db.flush()?;
            tracing::warn!(
                repaired,
                "re-derived audit index entries missing after an unclean stop"
            );
        }
        Ok(repaired)
    }
}

fn index_key(pseudonym: &[u8; 16], seq: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(pseudonym);
    key[16..].copy_from_slice(&seq.to_be_bytes());
    key
}

fn key_seq(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = bytes.len().min(8);
    b[8 - n..].copy_from_slice(&bytes[..n]);
    u64::from_be_bytes(b)
}
