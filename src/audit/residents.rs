//! The exact index of audit events by resident pseudonym, for resident
//! searches and disclosure reports.
//!
//! One sled key per event cost as much as the rest of an audit write
//! together (about 12 µs an event) and 40% of the log's disk, so the index
//! is kept in two parts:
//!
//! - the **tail**: the entries of the events after the last sealed segment,
//!   in memory, rebuilt from the events themselves when the store opens (at
//!   most one segment's worth to read);
//! - sealed **segments**: once the log passes a multiple of
//!   [`SEGMENT_EVENTS`], the tail's entries up to it are written to
//!   `audit/resident_segments`, one sled value per (bucket, segment), where
//!   the bucket is the pseudonym's first 12 bits (pseudonyms are HMAC
//!   outputs, so buckets fill evenly). A value lists its entries
//!   (pseudonym ‖ seq) in sequence order: one insert per 16 events or so,
//!   about 25 bytes an entry.
//!
//! A search reads the tail, then one key range of the resident's bucket,
//! newest segment first: about 150 small values for ten million events.
//! `audit/meta` `resident_sealed_through` names the last boundary whose
//! values are all written and flushed; sealing runs off the commit path, and
//! a crash during it leaves values that the next open writes again, whole.
//!
//! Logs written before this layout have a per-event index tree
//! (`audit/by_resident`, complete up to `indexed_through`): it is still
//! read, never written.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::tree::{AuditError, key_seq};

/// Sequence numbers per sealed segment.
pub const SEGMENT_EVENTS: u64 = 65_536;
/// A pseudonym's first 12 bits choose its bucket.
const BUCKET_SHIFT: u32 = 4;
const SEGMENT_VERSION: u8 = 1;
const ENTRY: usize = 24;

const SEGMENTS: &str = "audit/resident_segments";
const LEGACY: &str = "audit/by_resident";
const SEALED_THROUGH: &[u8] = b"resident_sealed_through";
/// Up to where the legacy per-event tree is complete.
const LEGACY_THROUGH: &[u8] = b"indexed_through";

/// A pseudonym as stored in events.
pub type Pseudonym = [u8; 16];

#[derive(Debug, Default)]
struct Tail {
    /// Every event at or below this is in the segments or the legacy tree.
    sealed_through: u64,
    /// The highest sequence number whose entry (if any) is here or sealed.
    indexed_through: u64,
    /// Sequence numbers above `sealed_through`, ascending, per resident.
    seqs: HashMap<Pseudonym, Vec<u64>>,
}

/// The resident index of one audit store; clones share the tail.
#[derive(Debug, Clone)]
pub struct ResidentIndex {
    db: sled::Db,
    segments: sled::Tree,
    legacy: sled::Tree,
    meta: sled::Tree,
    legacy_through: u64,
    tail: Arc<RwLock<Tail>>,
    sealing: Arc<Mutex<()>>,
    sealing_in_background: Arc<AtomicBool>,
}

fn bucket(p: &Pseudonym) -> u16 {
    u16::from_be_bytes([p[0], p[1]]) >> BUCKET_SHIFT
}

/// The segment holding `seq`: segment `k` covers `((k-1)·S, k·S]`.
fn segment_of(seq: u64) -> u64 {
    seq.div_ceil(SEGMENT_EVENTS)
}

fn segment_key(bucket: u16, segment: u64) -> [u8; 10] {
    let mut key = [0u8; 10];
    key[..2].copy_from_slice(&bucket.to_be_bytes());
    key[2..].copy_from_slice(&segment.to_be_bytes());
    key
}

fn encode(entries: &[(Pseudonym, u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + entries.len() * ENTRY);
    out.push(SEGMENT_VERSION);
    for (p, seq) in entries {
        out.extend_from_slice(p);
        out.extend_from_slice(&seq.to_be_bytes());
    }
    out
}

fn decode(key: &[u8], value: &[u8]) -> Result<Vec<(Pseudonym, u64)>, AuditError> {
    let corrupt = || AuditError::Corrupt {
        // Only for the message: a key too short to hold a segment number names segment 0.
        seq: key_seq(key.get(2..).unwrap_or_default()).saturating_mul(SEGMENT_EVENTS),
        message: "a resident index segment cannot be decoded".into(),
    };
    let (&version, rest) = value.split_first().ok_or_else(corrupt)?;
    if version != SEGMENT_VERSION || rest.len() % ENTRY != 0 {
        return Err(corrupt());
    }
    Ok(rest
        .chunks_exact(ENTRY)
        .map(|e| {
            let mut p = [0u8; 16];
            p.copy_from_slice(&e[..16]);
            (p, key_seq(&e[16..]))
        })
        .collect())
}

impl ResidentIndex {
    /// Opens the index trees; the tail is empty until [`Self::catch_up`].
    pub fn open(db: &sled::Db, meta: &sled::Tree) -> Result<Self, AuditError> {
        let legacy = db.open_tree(LEGACY)?;
        let legacy_through = if legacy.is_empty() {
            0
        } else {
            meta.get(LEGACY_THROUGH)?.map_or(0, |v| key_seq(&v))
        };
        let sealed = meta
            .get(SEALED_THROUGH)?
            .map_or(0, |v| key_seq(&v))
            .max(legacy_through);
        Ok(Self {
            db: db.clone(),
            segments: db.open_tree(SEGMENTS)?,
            legacy,
            meta: meta.clone(),
            legacy_through,
            tail: Arc::new(RwLock::new(Tail {
                sealed_through: sealed,
                indexed_through: sealed,
                seqs: HashMap::new(),
            })),
            sealing: Arc::default(),
            sealing_in_background: Arc::default(),
        })
    }

    /// The highest sequence number the index has seen.
    pub fn indexed_through(&self) -> u64 {
        self.tail.read().map_or(0, |t| t.indexed_through)
    }

    /// Adds the entries of committed events (in sequence order; events
    /// already indexed are skipped). Returns whether a segment is due.
    pub fn add(&self, events: impl IntoIterator<Item = (u64, Option<Pseudonym>)>) -> bool {
        let Ok(mut tail) = self.tail.write() else {
            return false;
        };
        for (seq, resident) in events {
            if seq <= tail.indexed_through {
                continue;
            }
            tail.indexed_through = seq;
            if let Some(p) = resident {
                tail.seqs.entry(p).or_default().push(seq);
            }
        }
        tail.indexed_through >= next_boundary(tail.sealed_through)
    }

    /// Seals every segment the log has passed, in this thread.
    pub fn seal_due(&self) -> Result<u64, AuditError> {
        let Ok(_one_at_a_time) = self.sealing.lock() else {
            return Ok(0);
        };
        let mut sealed = 0;
        loop {
            let (boundary, entries) = {
                let Ok(tail) = self.tail.read() else {
                    return Ok(sealed);
                };
                let boundary = next_boundary(tail.sealed_through);
                if tail.indexed_through < boundary {
                    return Ok(sealed);
                }
                let mut by_bucket: BTreeMap<u16, Vec<(Pseudonym, u64)>> = BTreeMap::new();
                for (p, seqs) in &tail.seqs {
                    for &seq in seqs.iter().take_while(|&&s| s <= boundary) {
                        by_bucket.entry(bucket(p)).or_default().push((*p, seq));
                    }
                }
                (boundary, by_bucket)
            };
            let segment = segment_of(boundary);
            for (b, mut list) in entries {
                list.sort_unstable_by_key(|(_, seq)| *seq);
                self.segments
                    .insert(segment_key(b, segment), encode(&list))?;
            }
            // The values are durable before the mark that says they are complete.
            self.db.flush()?;
            self.meta.insert(SEALED_THROUGH, &boundary.to_be_bytes())?;
            if let Ok(mut tail) = self.tail.write() {
                tail.sealed_through = boundary;
                tail.seqs.retain(|_, seqs| {
                    seqs.retain(|&s| s > boundary);
                    !seqs.is_empty()
                });
            }
            sealed += 1;
        }
    }

    /// Seals due segments on a thread of its own (one at a time), so that no
    /// group commit waits on a few thousand index inserts.
    pub fn seal_in_background(&self) {
        if self.sealing_in_background.swap(true, Ordering::AcqRel) {
            return;
        }
        let index = self.clone();
        let spawned = std::thread::Builder::new()
            .name("audit-index".into())
            .spawn(move || {
                if let Err(e) = index.seal_due() {
                    tracing::warn!(error = %e, "sealing a resident index segment failed; it stays in memory and is tried again");
                }
                index.sealing_in_background.store(false, Ordering::Release);
            });
        if spawned.is_err() {
            self.sealing_in_background.store(false, Ordering::Release);
        }
    }

    /// Sequence numbers of the events about `p` below `before`, newest first.
    pub fn seqs(
        &self,
        p: &Pseudonym,
        before: u64,
    ) -> impl Iterator<Item = Result<u64, AuditError>> + use<> {
        let (sealed, mut recent) = match self.tail.read() {
            // A resident with no event in the tail has none there.
            Ok(t) => (t.sealed_through, t.seqs.get(p).cloned().unwrap_or_default()),
            Err(_) => (0, Vec::new()),
        };
        recent.retain(|&s| s < before);
        recent.reverse();
        let p = *p;
        let b = bucket(&p);
        let top = segment_of(before.saturating_sub(1).min(sealed));
        let sealed_part = self
            .segments
            .range(segment_key(b, 0)..=segment_key(b, top))
            .rev()
            .flat_map(move |item| {
                let found: Vec<Result<u64, AuditError>> = match item
                    .map_err(AuditError::from)
                    .and_then(|(k, v)| decode(&k, &v))
                {
                    Err(e) => vec![Err(e)],
                    Ok(list) => list
                        .into_iter()
                        .rev()
                        .filter(|(q, s)| *q == p && *s < before && *s <= sealed)
                        .map(|(_, s)| Ok(s))
                        .collect(),
                };
                found
            });
        let mut end = [0u8; 24];
        end[..16].copy_from_slice(&p);
        end[16..].copy_from_slice(&before.min(self.legacy_through + 1).to_be_bytes());
        let legacy_part = self
            .legacy
            .range(&p[..]..&end[..])
            .rev()
            .map(|item| Ok(key_seq(&item?.0[16..])));
        recent
            .into_iter()
            .map(Ok)
            .chain(sealed_part)
            .chain(legacy_part)
    }

    /// Removes the entries of events up to `through` (after a prune).
    pub fn prune_through(&self, through: u64) -> Result<(), AuditError> {
        let _one_at_a_time = self.sealing.lock();
        for item in self.segments.iter() {
            let (key, value) = item?;
            let segment = key_seq(&key[2..]);
            if segment.saturating_mul(SEGMENT_EVENTS) <= through {
                self.segments.remove(key)?;
            } else if (segment - 1).saturating_mul(SEGMENT_EVENTS) < through {
                let kept: Vec<_> = decode(&key, &value)?
                    .into_iter()
                    .filter(|(_, s)| *s > through)
                    .collect();
                if kept.is_empty() {
                    self.segments.remove(key)?;
                } else {
                    self.segments.insert(key, encode(&kept))?;
                }
            }
        }
        if let Ok(mut tail) = self.tail.write() {
            tail.seqs.retain(|_, seqs| {
                seqs.retain(|&s| s > through);
                !seqs.is_empty()
            });
        }
        Ok(())
    }

    /// Every entry the index holds, for consistency checks.
    pub fn entries(&self) -> Result<BTreeSet<(Pseudonym, u64)>, AuditError> {
        let mut out = BTreeSet::new();
        // One look at the tail: its entries and the bound of the sealed ones.
        let sealed = match self.tail.read() {
            Ok(tail) => {
                for (p, seqs) in &tail.seqs {
                    out.extend(seqs.iter().map(|s| (*p, *s)));
                }
                tail.sealed_through
            }
            Err(_) => 0,
        };
        for item in self.segments.iter() {
            let (key, value) = item?;
            out.extend(
                decode(&key, &value)?
                    .into_iter()
                    .filter(|(_, s)| *s <= sealed),
            );
        }
        for item in self.legacy.iter() {
            let (key, _) = item?;
            if key.len() == 24 {
                let mut p = [0u8; 16];
                p.copy_from_slice(&key[..16]);
                out.insert((p, key_seq(&key[16..])));
            }
        }
        Ok(out)
    }

    /// Removes the legacy entry of one event (pruning).
    pub fn remove_legacy(&self, p: &Pseudonym, seq: u64) -> Result<(), AuditError> {
        let mut key = [0u8; 24];
        key[..16].copy_from_slice(p);
        key[16..].copy_from_slice(&seq.to_be_bytes());
        self.legacy.remove(key)?;
        Ok(())
    }
}

/// The first segment boundary above `sealed`.
fn next_boundary(sealed: u64) -> u64 {
    (sealed / SEGMENT_EVENTS + 1) * SEGMENT_EVENTS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: u8) -> Pseudonym {
        let mut p = [0u8; 16];
        p[0] = n;
        p[15] = n;
        p
    }

    fn index() -> (tempfile::TempDir, ResidentIndex) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::datadir::open_path(dir.path()).unwrap();
        let meta = db.open_tree("audit/meta").unwrap();
        (dir, ResidentIndex::open(&db, &meta).unwrap())
    }

    fn seqs(index: &ResidentIndex, who: u8, before: u64) -> Vec<u64> {
        index.seqs(&p(who), before).map(Result::unwrap).collect()
    }

    #[test]
    fn finds_entries_in_the_tail_and_in_sealed_segments_newest_first() {
        let (_dir, index) = index();
        let n = SEGMENT_EVENTS * 2 + 100;
        let due = index.add((1..=n).map(|s| (s, Some(p((s % 7) as u8)))));
        assert!(due);
        let before: Vec<u64> = seqs(&index, 3, u64::MAX);
        assert_eq!(index.seal_due().unwrap(), 2);
        assert_eq!(seqs(&index, 3, u64::MAX), before);
        let expected: Vec<u64> = (1..=n).rev().filter(|s| s % 7 == 3).collect();
        assert_eq!(before, expected);
        // Below a bound that falls inside a sealed segment.
        let bound = SEGMENT_EVENTS + 10;
        let expected: Vec<u64> = (1..bound).rev().filter(|s| s % 7 == 3).collect();
        assert_eq!(seqs(&index, 3, bound), expected);
        assert!(seqs(&index, 9, u64::MAX).is_empty());
        assert_eq!(index.entries().unwrap().len() as u64, n);
    }

    #[test]
    fn reopening_keeps_sealed_segments_and_reindexing_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::datadir::open_path(dir.path()).unwrap();
        let meta = db.open_tree("audit/meta").unwrap();
        let index = ResidentIndex::open(&db, &meta).unwrap();
        let n = SEGMENT_EVENTS + 5;
        index.add((1..=n).map(|s| (s, Some(p((s % 3) as u8)))));
        index.seal_due().unwrap();
        let again = ResidentIndex::open(&db, &meta).unwrap();
        assert_eq!(again.indexed_through(), SEGMENT_EVENTS);
        // The store feeds the tail again from its events; the sealed ones are skipped.
        again.add((1..=n).map(|s| (s, Some(p((s % 3) as u8)))));
        assert_eq!(seqs(&again, 1, u64::MAX), seqs(&index, 1, u64::MAX));
    }

    #[test]
    fn prune_removes_entries_at_or_below_the_bound() {
        let (_dir, index) = index();
        let n = SEGMENT_EVENTS * 2 + 10;
        index.add((1..=n).map(|s| (s, Some(p(1)))));
        index.seal_due().unwrap();
        let through = SEGMENT_EVENTS + 3;
        index.prune_through(through).unwrap();
        let left = seqs(&index, 1, u64::MAX);
        assert_eq!(left.len() as u64, n - through);
        assert!(left.iter().all(|&s| s > through));
    }

    #[test]
    fn a_log_indexed_per_event_before_segments_is_still_searched() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::datadir::open_path(dir.path()).unwrap();
        let meta = db.open_tree("audit/meta").unwrap();
        let legacy = db.open_tree(LEGACY).unwrap();
        for seq in [2u64, 5, 9] {
            let mut key = [0u8; 24];
            key[..16].copy_from_slice(&p(4));
            key[16..].copy_from_slice(&seq.to_be_bytes());
            legacy.insert(key, &[]).unwrap();
        }
        meta.insert(LEGACY_THROUGH, &10u64.to_be_bytes()).unwrap();
        let index = ResidentIndex::open(&db, &meta).unwrap();
        assert_eq!(index.indexed_through(), 10);
        index.add((1..=20).map(|s| (s, (s % 2 == 0).then(|| p(4)))));
        assert_eq!(seqs(&index, 4, u64::MAX), vec![20, 18, 16, 14, 12, 9, 5, 2]);
        assert_eq!(seqs(&index, 4, 13), vec![12, 9, 5, 2]);
        assert_eq!(seqs(&index, 4, 5), vec![2]);
        index.remove_legacy(&p(4), 5).unwrap();
        assert_eq!(seqs(&index, 4, 10), vec![9, 2]);
    }
}
