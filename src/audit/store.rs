//! The audit log in sled.
//!
//! Trees: `audit/events` (chunks of up to 64 consecutive events of one group
//! commit, keyed by the big-endian sequence number of the first; each event
//! is its canonical bytes and hash: one sled key per chunk instead of per
//! event keeps appends, scans and disk use cheap), the resident index
//! ([`super::residents`]: the exact index for disclosure reports, sealed in
//! segments), `audit/blocks` (block number → [`BlockSummary`]),
//! `audit/checkpoints` (seq → signed checkpoint) and `audit/meta`.
//!
//! A group commit is durable once its record is in the write-ahead file
//! ([`super::wal`]); the applier ([`super::applier`]) then files its events
//! here (one or more chunks per group, keyed by the group's first sequence
//! number, so that filing a record again writes the same keys), block
//! summaries after them, and checkpoints. Opening the store first replays
//! what that file holds (an unclean stop), then re-derives whatever block
//! summaries are missing, and the resident index's tail from the events after
//! its last sealed segment.

pub use super::tree::AuditError;
pub(crate) use super::tree::key_seq;

use std::path::Path;

use super::blocks::{BlockSummary, block_of, block_range};
use super::chain::{VerifyReport, verify_log};
use super::checkpoint::SignedCheckpoint;
use super::event::{Event, GENESIS, Hash};
use super::residents::ResidentIndex;
use super::wal::{self, Entry, Tree};

const EVENTS: &str = "audit/events";
const BLOCKS: &str = "audit/blocks";
const CHECKPOINTS: &str = "audit/checkpoints";
const META: &str = "audit/meta";
const ANCHOR: &[u8] = b"anchor";
const EXPORTED_THROUGH: &[u8] = b"exported_through";

/// An event ready to store: sequence number, stored bytes, resident pseudonym.
pub(crate) type SealedEvent = (u64, Vec<u8>, Option<[u8; 16]>);

/// Handles on the audit trees of one sled database.
#[derive(Debug, Clone)]
pub struct AuditStore {
    db: sled::Db,
    events: sled::Tree,
    residents: ResidentIndex,
    cases: super::cases::CaseIndex,
    blocks: sled::Tree,
    checkpoints: sled::Tree,
    meta: sled::Tree,
}

impl AuditStore {
    /// Opens (creating if needed) the audit trees of the database in
    /// `data_dir`, replays the write-ahead file and repairs the index tail.
    pub fn open(db: &sled::Db, data_dir: &Path) -> Result<Self, AuditError> {
        let meta = db.open_tree(META)?;
        let store = Self {
            db: db.clone(),
            events: db.open_tree(EVENTS)?,
            residents: ResidentIndex::open(db, &meta)?,
            cases: super::cases::CaseIndex::open(db, &meta)?,
            blocks: db.open_tree(BLOCKS)?,
            checkpoints: db.open_tree(CHECKPOINTS)?,
            meta,
        };
        store.replay(data_dir)?;
        store.catch_up_index()?;
        store.residents.seal_due()?;
        let repaired = store.recover_blocks()?;
        if repaired > 0 {
            store.db.flush()?;
            tracing::warn!(
                repaired,
                "re-derived audit index entries missing after an unclean stop"
            );
        }
        Ok(store)
    }

    /// The database the trees live in.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// The last event's sequence number and recorded hash, or the anchor if none is left.
    pub fn head(&self) -> Result<(u64, Hash), AuditError> {
        match self.events.last()? {
            None => self.anchor(),
            Some((key, value)) => {
                let first = key_seq(&key);
                let events = chunk_events(first, &value)?;
                let (seq, stored) = events.last().ok_or(AuditError::Corrupt {
                    seq: first,
                    message: "empty chunk".into(),
                })?;
                let (_, recorded, _) = open(*seq, stored)?;
                Ok((*seq, recorded))
            }
        }
    }

    /// The event the remaining chain starts after: `(0, GENESIS)` unless events were pruned.
    pub fn anchor(&self) -> Result<(u64, Hash), AuditError> {
        Ok(match self.meta.get(ANCHOR)? {
            Some(v) if v.len() == 40 => {
                let mut hash = [0u8; 32];
                hash.copy_from_slice(&v[8..]);
                (key_seq(&v[..8]), hash)
            }
            _ => (0, GENESIS),
        })
    }

    /// One event by sequence number.
    pub fn get(&self, seq: u64) -> Result<Option<Event>, AuditError> {
        Ok(self.get_with_hash(seq)?.map(|(e, _)| e))
    }

    /// One event and its recorded hash.
    pub fn get_with_hash(&self, seq: u64) -> Result<Option<(Event, Hash)>, AuditError> {
        let Some((key, value)) = self
            .events
            .range(..=seq.to_be_bytes())
            .next_back()
            .transpose()?
        else {
            return Ok(None);
        };
        let Some((_, stored)) = chunk_events(key_seq(&key), &value)?
            .into_iter()
            .find(|(s, _)| *s == seq)
        else {
            return Ok(None);
        };
        let (event, recorded, _) = open(seq, &stored)?;
        Ok(Some((event, recorded)))
    }

    /// Number of events stored (after the anchor).
    pub fn len(&self) -> usize {
        let (head, _) = self.head().unwrap_or((0, GENESIS));
        let (anchor, _) = self.anchor().unwrap_or((0, GENESIS));
        usize::try_from(head.saturating_sub(anchor)).unwrap_or(usize::MAX)
    }

    /// Whether no event is stored.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Sequence numbers of the events about one resident below `before`, newest first.
    pub fn seqs_for_resident(
        &self,
        pseudonym: &[u8; 16],
        before: u64,
    ) -> impl Iterator<Item = Result<u64, AuditError>> + use<> {
        self.residents.seqs(pseudonym, before)
    }

    /// Adds committed events to the resident index; seals a segment off the
    /// commit path when one is due.
    pub(crate) fn index_committed(&self, batch: &[SealedEvent]) {
        if self
            .residents
            .add(batch.iter().map(|(seq, _, resident)| (*seq, *resident)))
        {
            self.residents.seal_in_background();
        }
    }

    /// The sequence numbers of the events `dept` recorded under `case_ref`,
    /// oldest first (the case index first catches up with the log).
    pub fn seqs_for_case(&self, dept: &str, case_ref: &str) -> Result<Vec<u64>, AuditError> {
        self.catch_up_cases()?;
        let (anchor, _) = self.anchor()?;
        let mut seqs = self.cases.seqs(dept, case_ref)?;
        seqs.retain(|s| *s > anchor);
        Ok(seqs)
    }

    /// Indexes the cases of the stored events the case index has not seen.
    fn catch_up_cases(&self) -> Result<(), AuditError> {
        let _one = self.cases.catching_up();
        let from = self.cases.indexed_through()? + 1;
        let mut pending = Vec::new();
        let mut through = None;
        for item in self.raw_events(from, u64::MAX) {
            let (seq, value) = item?;
            let (event, _, _) = open(seq, &value)?;
            through = Some(seq);
            pending.push((seq, event.body));
            if pending.len() >= 4096 {
                self.cases.add(pending.iter().map(|(s, b)| (*s, b)))?;
                self.cases.mark(seq)?;
                pending.clear();
            }
        }
        self.cases.add(pending.iter().map(|(s, b)| (*s, b)))?;
        if let Some(through) = through {
            self.cases.mark(through)?;
        }
        Ok(())
    }

    /// Indexes the stored events the resident index has not seen (at open:
    /// events replayed, or filed by a run that stopped before indexing them).
    pub(crate) fn catch_up_index(&self) -> Result<(), AuditError> {
        let from = self.residents.indexed_through() + 1;
        let mut pending = Vec::new();
        for item in self.raw_events(from, u64::MAX) {
            let (seq, value) = item?;
            let (event, _, _) = open(seq, &value)?;
            pending.push((seq, event.body.resident));
            if pending.len() >= 4096 {
                self.residents.add(pending.drain(..));
            }
        }
        self.residents.add(pending);
        Ok(())
    }

    /// The summary of one block, if written.
    pub fn block(&self, block: u64) -> Result<Option<BlockSummary>, AuditError> {
        Ok(self
            .blocks
            .get(block.to_be_bytes())?
            .and_then(|v| postcard::from_bytes(&v).ok()))
    }

    /// Stored events with `lo <= seq <= hi`, newest first.
    pub fn events_desc(
        &self,
        lo: u64,
        hi: u64,
    ) -> impl Iterator<Item = Result<(u64, Event, Hash), AuditError>> + use<> {
        self.events
            .range(..=hi.to_be_bytes())
            .rev()
            // The chunk holding `lo` is the last one needed: its key is at or below `lo`.
            .scan(false, move |done, item| {
                if *done {
                    return None;
                }
                *done = item.as_ref().map_or(true, |(k, _)| key_seq(k) <= lo);
                Some(item)
            })
            .flat_map(move |item| {
                let events: Vec<Result<(u64, Vec<u8>), AuditError>> = match item {
                    Err(e) => vec![Err(e.into())],
                    Ok((k, v)) => match chunk_events(key_seq(&k), &v) {
                        Ok(list) => list
                            .into_iter()
                            .rev()
                            .filter(|(s, _)| (lo..=hi).contains(s))
                            .map(Ok)
                            .collect(),
                        Err(e) => vec![Err(e)],
                    },
                };
                events
            })
            .map(|item| {
                let (seq, stored) = item?;
                let (event, hash, _) = open(seq, &stored)?;
                Ok((seq, event, hash))
            })
    }

    /// Stored events with `lo <= seq <= hi`, oldest first, undecoded. A chunk
    /// that cannot be split is yielded whole under its first sequence number,
    /// so a verifier reports it there.
    pub fn raw_events(
        &self,
        lo: u64,
        hi: u64,
    ) -> impl Iterator<Item = Result<(u64, Vec<u8>), sled::Error>> + use<> {
        let start = match self.events.range(..=lo.to_be_bytes()).next_back() {
            Some(Ok((k, _))) => key_seq(&k),
            _ => lo,
        };
        self.events
            .range(start.to_be_bytes()..=hi.to_be_bytes())
            .flat_map(move |item| {
                let events: Vec<Result<(u64, Vec<u8>), sled::Error>> = match item {
                    Err(e) => vec![Err(e)],
                    Ok((k, v)) => {
                        let first = key_seq(&k);
                        match chunk_events(first, &v) {
                            Ok(list) => list
                                .into_iter()
                                .filter(|(s, _)| (lo..=hi).contains(s))
                                .map(Ok)
                                .collect(),
                            Err(_) => vec![Ok((first, v.to_vec()))],
                        }
                    }
                };
                events
            })
    }

    /// Every signed checkpoint, oldest first.
    pub fn checkpoints(&self) -> Result<Vec<SignedCheckpoint>, AuditError> {
        self.checkpoints_after(0)
    }

    /// The signed checkpoints over events after `after`, oldest first.
    pub fn checkpoints_after(&self, after: u64) -> Result<Vec<SignedCheckpoint>, AuditError> {
        let mut out = Vec::new();
        for item in self.checkpoints.range((after + 1).to_be_bytes()..) {
            let (key, value) = item?;
            let cp = SignedCheckpoint::decode(&value).ok_or_else(|| AuditError::Corrupt {
                seq: key_seq(&key),
                message: "the stored checkpoint cannot be decoded".into(),
            })?;
            out.push(cp);
        }
        Ok(out)
    }

    /// The latest checkpoint's sequence number.
    pub fn last_checkpoint_seq(&self) -> Result<u64, AuditError> {
        Ok(self.checkpoints.last()?.map_or(0, |(k, _)| key_seq(&k)))
    }

    /// Recomputes the chain from its anchor and checks every checkpoint
    /// (signatures too, when a public key is given).
    pub fn verify(
        &self,
        keys: Option<&super::checkpoint::Keyring>,
    ) -> Result<VerifyReport, AuditError> {
        let checkpoints = self.checkpoints()?;
        let anchor = self.anchor()?;
        let events = self.raw_events(anchor.0 + 1, u64::MAX);
        Ok(verify_log(anchor, events, &checkpoints, keys)?)
    }

    /// What filing a group inserts, in order: its event chunks, block
    /// summaries and checkpoint (the applier files them behind the
    /// write-ahead file; a replay files a record's events the same way).
    pub(crate) fn entries(
        batch: &[SealedEvent],
        summaries: &[(u64, BlockSummary)],
        checkpoint: Option<&SignedCheckpoint>,
    ) -> Vec<Entry> {
        let mut entries = Vec::with_capacity(batch.len() / CHUNK_EVENTS + 2 + summaries.len());
        for chunk in batch.chunks(CHUNK_EVENTS) {
            let Some((first, _, _)) = chunk.first() else {
                continue;
            };
            let parts: Vec<&[u8]> = chunk
                .iter()
                .map(|(_, stored, _)| stored.as_slice())
                .collect();
            entries.push((
                Tree::Events,
                first.to_be_bytes().to_vec(),
                encode_chunk(&parts),
            ));
        }
        for (block, summary) in summaries {
            entries.push((
                Tree::Blocks,
                block.to_be_bytes().to_vec(),
                postcard::to_allocvec(summary).unwrap_or_default(),
            ));
        }
        if let Some(cp) = checkpoint {
            entries.push((
                Tree::Checkpoints,
                cp.checkpoint.seq.to_be_bytes().to_vec(),
                cp.encode(),
            ));
        }
        entries
    }

    /// The sled entries of a write-ahead record: its sealed events filed in
    /// event chunks, everything else as it is. (Block summaries and the
    /// resident index are re-derived after a replay.)
    fn from_record(entries: Vec<Entry>) -> Vec<Entry> {
        let mut sealed: Vec<SealedEvent> = Vec::new();
        let mut out = Vec::with_capacity(entries.len());
        for (tree, key, value) in entries {
            match tree {
                Tree::Sealed => sealed.push((key_seq(&key), value, None)),
                _ => out.push((tree, key, value)),
            }
        }
        let mut all = Self::entries(&sealed, &[], None);
        all.extend(out);
        all
    }

    /// Inserts a group commit's entries (no flush: the write-ahead file made them durable).
    pub(crate) fn apply(&self, entries: Vec<Entry>) -> Result<(), AuditError> {
        for (tree, key, value) in entries {
            let tree = match tree {
                Tree::Events => &self.events,
                Tree::Blocks => &self.blocks,
                Tree::Checkpoints => &self.checkpoints,
                // Filed in chunks by `from_record`; never inserted as is.
                Tree::Sealed => continue,
            };
            tree.insert(key, value)?;
        }
        Ok(())
    }

    /// Applies what the write-ahead file in `data_dir` holds above the
    /// anchor (pruned events stay pruned), makes it durable in sled, and
    /// removes the file's segments.
    fn replay(&self, data_dir: &Path) -> Result<(), AuditError> {
        let dir = data_dir.join(wal::DIR);
        let replay = wal::read_all(&dir)?;
        if replay.last_segment == 0 {
            return Ok(());
        }
        let (anchor, _) = self.anchor()?;
        let mut applied = 0u64;
        for record in replay.records {
            if record.seq > anchor {
                self.apply(Self::from_record(record.entries))?;
                applied += 1;
            }
        }
        self.db.flush()?;
        sync_db_file(data_dir)?;
        wal::remove_through(&dir, replay.last_segment, true)?;
        if applied > 0 {
            tracing::warn!(
                groups = applied,
                unread_bytes = replay.unread_bytes,
                "replayed the audit write-ahead file after an unclean stop"
            );
        }
        Ok(())
    }

    /// Records that the events `lo..=hi` were exported whole. Retention may
    /// prune only events exported with everything before them, so the mark
    /// moves only when the range joins what was exported before (or starts
    /// at the anchor): an export of last week does not let older, never
    /// exported events go.
    pub fn mark_exported(&self, lo: u64, hi: u64) -> Result<(), AuditError> {
        let current = self.exported_through()?;
        let (anchor, _) = self.anchor()?;
        if hi > current && lo <= current.max(anchor) + 1 {
            self.meta.insert(EXPORTED_THROUGH, &hi.to_be_bytes())?;
        }
        Ok(())
    }

    /// The highest sequence number known to have been exported.
    pub fn exported_through(&self) -> Result<u64, AuditError> {
        Ok(self.meta.get(EXPORTED_THROUGH)?.map_or(0, |v| key_seq(&v)))
    }

    /// Removes the events up to `through` (which must be covered by a
    /// checkpoint and exported: the caller checks), their index entries and
    /// the summaries of the blocks they fill, and makes `(through, hash)` the
    /// anchor the remaining chain verifies from. The anchor and a record of
    /// the prune are written and flushed before anything is removed, so a
    /// crash leaves a log that verifies and a prune that can be run again.
    pub fn prune_through(&self, through: u64, hash: Hash, record: &str) -> Result<u64, AuditError> {
        let mut anchor = through.to_be_bytes().to_vec();
        anchor.extend_from_slice(&hash);
        self.meta.insert(ANCHOR, anchor)?;
        let mut key = b"prune:".to_vec();
        key.extend_from_slice(&through.to_be_bytes());
        self.meta.insert(key, record.as_bytes())?;
        self.db.flush()?;
        let mut removed = 0;
        for item in self.events.range(..=through.to_be_bytes()) {
            let (k, value) = item?;
            let first = key_seq(&k);
            let events = chunk_events(first, &value)?;
            let mut keep: Vec<&[u8]> = Vec::new();
            let mut keep_from = None;
            for (seq, stored) in &events {
                if *seq <= through {
                    if let Ok((e, _, _)) = Event::open(stored) {
                        if let Some(p) = e.body.resident {
                            self.residents.remove_legacy(&p, *seq)?;
                        }
                    }
                    removed += 1;
                } else {
                    keep_from.get_or_insert(*seq);
                    keep.push(stored.as_slice());
                }
            }
            if let Some(from) = keep_from {
                self.events
                    .insert(from.to_be_bytes(), encode_chunk(&keep))?;
            }
            self.events.remove(k)?;
        }
        self.residents.prune_through(through)?;
        self.cases.prune_through(through)?;
        for item in self.blocks.iter() {
            let (k, value) = item?;
            if postcard::from_bytes::<BlockSummary>(&value)
                .is_ok_and(|s| s.last_seq <= through && block_range(key_seq(&k)).1 <= through)
            {
                self.blocks.remove(k)?;
            }
        }
        self.db.flush()?;
        Ok(removed)
    }

    /// Records of earlier prunes (JSON), oldest first.
    pub fn prune_records(&self) -> Result<Vec<String>, AuditError> {
        let mut out = Vec::new();
        for item in self.meta.scan_prefix(b"prune:") {
            let (_, v) = item?;
            out.push(String::from_utf8_lossy(&v).into_owned());
        }
        Ok(out)
    }

    /// Records of earlier prunes with the sequence number each pruned
    /// through, oldest first (for a backup).
    pub fn prune_records_by_seq(&self) -> Result<Vec<(u64, String)>, AuditError> {
        let mut out = Vec::new();
        for item in self.meta.scan_prefix(b"prune:") {
            let (k, v) = item?;
            out.push((key_seq(&k[6..]), String::from_utf8_lossy(&v).into_owned()));
        }
        Ok(out)
    }

    /// Writes a backup's state into an empty store: the anchor the chain
    /// starts after, the exported mark, the prune records.
    pub fn restore_meta(
        &self,
        anchor: (u64, Hash),
        exported_through: u64,
        prunes: &[(u64, String)],
    ) -> Result<(), AuditError> {
        if anchor.0 > 0 {
            let mut value = anchor.0.to_be_bytes().to_vec();
            value.extend_from_slice(&anchor.1);
            self.meta.insert(ANCHOR, value)?;
        }
        if exported_through > 0 {
            self.meta
                .insert(EXPORTED_THROUGH, &exported_through.to_be_bytes())?;
        }
        for (through, record) in prunes {
            let mut key = b"prune:".to_vec();
            key.extend_from_slice(&through.to_be_bytes());
            self.meta.insert(key, record.as_bytes())?;
        }
        Ok(())
    }

    /// Files consecutive stored events of a backup (their index and block
    /// summaries are derived when the store is opened again).
    pub fn restore_events(&self, events: Vec<(u64, Vec<u8>)>) -> Result<(), AuditError> {
        let sealed: Vec<SealedEvent> = events.into_iter().map(|(s, b)| (s, b, None)).collect();
        self.apply(Self::entries(&sealed, &[], None))
    }

    /// Files a signed checkpoint of a backup.
    pub fn restore_checkpoint(&self, cp: &SignedCheckpoint) -> Result<(), AuditError> {
        self.apply(Self::entries(&[], &[], Some(cp)))
    }

    /// Raw access for tests that tamper with the store.
    #[doc(hidden)]
    pub fn events_tree(&self) -> &sled::Tree {
        &self.events
    }

    /// Whether every index entry points at an event about that resident, every
    /// event is in its index, and every block summary covers its events.
    pub fn indexes_consistent(&self) -> Result<bool, AuditError> {
        let mut residents = std::collections::BTreeSet::new();
        let mut expected: std::collections::BTreeMap<u64, BlockSummary> =
            std::collections::BTreeMap::new();
        for item in self.raw_events(0, u64::MAX) {
            let (seq, value) = item?;
            let (e, _, _) = open(seq, &value)?;
            if let Some(p) = e.body.resident {
                residents.insert((p, seq));
            }
            expected.entry(block_of(seq)).or_default().add(seq, &e.body);
        }
        for (block, summary) in expected {
            if self.block(block)?.as_ref() != Some(&summary) {
                return Ok(false);
            }
        }
        Ok(self.residents.entries()? == residents)
    }

    fn recover_blocks(&self) -> Result<u64, AuditError> {
        let (last, _) = self.head()?;
        if last == 0 {
            return Ok(0);
        }
        let summarized = match self.blocks.last()? {
            Some((_, v)) => postcard::from_bytes::<BlockSummary>(&v).map_or(0, |s| s.last_seq),
            None => 0,
        };
        if summarized >= last {
            return Ok(0);
        }
        let mut repaired = 0;
        for block in block_of(summarized + 1)..=block_of(last) {
            let (lo, hi) = block_range(block);
            let mut summary = BlockSummary::default();
            for item in self.raw_events(lo, hi) {
                let (seq, value) = item?;
                let (e, _, _) = open(seq, &value)?;
                summary.add(seq, &e.body);
            }
            if summary.first_seq != 0 {
                self.blocks.insert(
                    block.to_be_bytes(),
                    postcard::to_allocvec(&summary).unwrap_or_default(),
                )?;
                repaired += 1;
            }
        }
        Ok(repaired)
    }
}

/// What `tongban audit rotate-key` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyRotation {
    /// The suite whose key was rotated.
    pub suite: String,
    /// The key rotated out (kept among the retired keys).
    pub old_key_id: String,
    /// The key that signs from now on.
    pub new_key_id: String,
    /// The head the handover checkpoint (signed by both) covers; none for
    /// an empty log.
    pub handover_seq: Option<u64>,
}

impl AuditStore {
    /// Rotates the checkpoint key of `suite` under `data_dir` (run while
    /// the gateway is stopped): a new key, the old one kept among the
    /// retired keys, and at the head a checkpoint naming both and signed by
    /// both, as at a change of suite, durable before the new key is made
    /// the active one.
    pub fn rotate_checkpoint_key(
        &self,
        data_dir: &Path,
        suite: super::suite::Suite,
        time_ms: i64,
    ) -> Result<KeyRotation, AuditError> {
        let rotation = super::checkpoint::CheckpointSigner::begin_rotation(data_dir, suite)?;
        let (seq, hash) = self.head()?;
        let handover_seq = match self.get(seq)? {
            Some(last) => {
                let cp = rotation.handover(&last.node, seq, hash, time_ms);
                self.apply(Self::entries(&[], &[], Some(&cp)))?;
                self.db().flush()?;
                sync_db_file(data_dir)?;
                Some(seq)
            }
            None => None,
        };
        let report = KeyRotation {
            suite: suite.name().to_owned(),
            old_key_id: rotation.old_key_id(),
            new_key_id: rotation.new_key_id(),
            handover_seq,
        };
        rotation.finish()?;
        Ok(report)
    }
}

/// `fdatasync`s sled's file in `data_dir` (sled's own flush does not reach
/// the device's cache).
pub(crate) fn sync_db_file(data_dir: &Path) -> Result<(), AuditError> {
    Ok(crate::datadir::sync_db_file(data_dir)?)
}

fn open(seq: u64, value: &[u8]) -> Result<(Event, Hash, Hash), AuditError> {
    Event::open(value).map_err(|e| AuditError::Corrupt {
        seq,
        message: e.to_string(),
    })
}

/// Most events in one stored chunk (kept well under sled's inline value size).
const CHUNK_EVENTS: usize = 64;
/// A chunk stored as it is.
const CHUNK_PLAIN: u8 = 1;
/// A chunk compressed with LZ4 (block format, size prepended).
const CHUNK_LZ4: u8 = 2;
/// No chunk unpacks to more than this (a damaged size must not allocate gigabytes).
const CHUNK_MAX_BYTES: usize = 16 << 20;

/// A chunk: a version byte, then each event as a 4-byte little-endian length
/// and its stored bytes, LZ4-compressed when that saves an eighth or more
/// (chunks of many events repeat node, department, dataset and purpose names).
fn encode_chunk(events: &[&[u8]]) -> Vec<u8> {
    let mut body = Vec::with_capacity(events.iter().map(|e| e.len() + 4).sum::<usize>());
    for e in events {
        body.extend_from_slice(&u32::try_from(e.len()).unwrap_or(u32::MAX).to_le_bytes());
        body.extend_from_slice(e);
    }
    let packed = lz4_flex::block::compress_prepend_size(&body);
    let (version, bytes) = if packed.len() + packed.len() / 8 < body.len() {
        (CHUNK_LZ4, packed)
    } else {
        (CHUNK_PLAIN, body)
    };
    let mut out = Vec::with_capacity(1 + bytes.len());
    out.push(version);
    out.extend_from_slice(&bytes);
    out
}

/// A stored chunk (whose first event is `first`) that cannot be read.
fn chunk_corrupt(first: u64) -> AuditError {
    AuditError::Corrupt {
        seq: first,
        message: "the stored chunk cannot be split into events".into(),
    }
}

/// The events of a stored chunk whose first event is `first`, numbered by position.
fn chunk_events(first: u64, value: &[u8]) -> Result<Vec<(u64, Vec<u8>)>, AuditError> {
    let body = unpack_chunk(first, value)?;
    Ok(split_chunk(first, &body)?
        .into_iter()
        .map(|(s, b)| (s, b.to_vec()))
        .collect())
}

/// The length-prefixed events of a stored chunk whose first event is `first`.
fn unpack_chunk(first: u64, value: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, AuditError> {
    let corrupt = || chunk_corrupt(first);
    match value.split_first() {
        Some((&CHUNK_PLAIN, rest)) => Ok(std::borrow::Cow::Borrowed(rest)),
        Some((&CHUNK_LZ4, rest)) => {
            let size = rest
                .get(..4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .ok_or_else(corrupt)?;
            if size > CHUNK_MAX_BYTES {
                return Err(corrupt());
            }
            lz4_flex::block::decompress_size_prepended(rest)
                .map(std::borrow::Cow::Owned)
                .map_err(|_| corrupt())
        }
        _ => Err(corrupt()),
    }
}

/// The events of an unpacked chunk whose first event is `first`, numbered by position.
fn split_chunk(first: u64, body: &[u8]) -> Result<Vec<(u64, &[u8])>, AuditError> {
    let corrupt = || chunk_corrupt(first);
    let mut rest = body;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (len, tail) = rest.split_at_checked(4).ok_or_else(corrupt)?;
        let len = usize::try_from(u32::from_le_bytes([len[0], len[1], len[2], len[3]]))
            .map_err(|_| corrupt())?;
        let (event, tail) = tail.split_at_checked(len).ok_or_else(corrupt)?;
        out.push((first + out.len() as u64, event));
        rest = tail;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events 1..=n chained as the writer seals them.
    fn sealed(n: u64) -> Vec<SealedEvent> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|seq| {
                let event = Event {
                    version: super::super::event::format_version(
                        super::super::suite::Suite::International,
                    ),
                    seq,
                    node: "node-1".into(),
                    prev_hash: prev,
                    body: super::super::EventBody::system(
                        1_780_000_000_000 + seq as i64,
                        super::super::EventKind::Other,
                        "test.event",
                    ),
                };
                let (stored, hash) = event.seal();
                prev = hash;
                (seq, stored, None)
            })
            .collect()
    }

    #[test]
    fn opening_replays_the_write_ahead_file_above_the_anchor() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::datadir::open_path(dir.path()).unwrap();
        let store = AuditStore::open(&db, dir.path()).unwrap();
        let events = sealed(5);
        // Events 1-2 reached sled; 3-5 were durable in the write-ahead file
        // only when the process died (sled had not flushed them).
        store
            .apply(AuditStore::entries(&events[..2], &[], None))
            .unwrap();
        let wal_dir = dir.path().join(wal::DIR);
        let mut log = wal::Wal::create(&wal_dir, true).unwrap();
        for (lo, hi) in [(0, 2), (2, 4), (4, 5)] {
            let record = log.record(hi as u64, &AuditStore::entries(&events[lo..hi], &[], None));
            log.append(&record).unwrap();
        }
        drop(store);

        let store = AuditStore::open(&db, dir.path()).unwrap();
        assert_eq!(store.head().unwrap().0, 5);
        let report = store.verify(None).unwrap();
        assert_eq!(report.checked, 5, "{report:?}");
        assert!(report.ok(), "{report:?}");
        assert!(store.indexes_consistent().unwrap());
        assert!(
            wal::segments(&wal_dir).unwrap().is_empty(),
            "replayed segments are removed"
        );

        // Records at or below the anchor (pruned events) are not brought back.
        let mut log = wal::Wal::create(&wal_dir, true).unwrap();
        log.append(&log.record(2, &AuditStore::entries(&events[..2], &[], None)))
            .unwrap();
        let mut anchor = 2u64.to_be_bytes().to_vec();
        anchor.extend_from_slice(&[9; 32]);
        store.meta.insert(ANCHOR, anchor).unwrap();
        store.events.remove(1u64.to_be_bytes()).unwrap();
        drop(store);
        let store = AuditStore::open(&db, dir.path()).unwrap();
        assert!(
            store.get(1).unwrap().is_none(),
            "a pruned event stays pruned"
        );
    }

    #[test]
    fn only_an_export_that_joins_the_exported_ones_moves_the_mark() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::datadir::open_path(dir.path()).unwrap();
        let store = AuditStore::open(&db, dir.path()).unwrap();
        store.mark_exported(5, 10).unwrap();
        assert_eq!(
            store.exported_through().unwrap(),
            0,
            "events 1 to 4 were never exported"
        );
        store.mark_exported(1, 4).unwrap();
        assert_eq!(store.exported_through().unwrap(), 4);
        store.mark_exported(5, 10).unwrap();
        assert_eq!(store.exported_through().unwrap(), 10);
        store.mark_exported(3, 20).unwrap();
        assert_eq!(store.exported_through().unwrap(), 20);
        store.mark_exported(1, 7).unwrap();
        assert_eq!(
            store.exported_through().unwrap(),
            20,
            "the mark never moves back"
        );
    }

    fn events(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                format!("node demo-1 dept minzheng dataset gongan.hukou purpose dibao_review {i}")
                    .into_bytes()
            })
            .collect()
    }

    fn round_trip(list: &[Vec<u8>]) -> (u8, Vec<Vec<u8>>) {
        let parts: Vec<&[u8]> = list.iter().map(Vec::as_slice).collect();
        let stored = encode_chunk(&parts);
        let body = unpack_chunk(7, &stored).unwrap();
        let back = split_chunk(7, &body)
            .unwrap()
            .into_iter()
            .enumerate()
            .map(|(i, (seq, b))| {
                assert_eq!(seq, 7 + i as u64);
                b.to_vec()
            })
            .collect();
        (stored[0], back)
    }

    #[test]
    fn chunks_of_alike_events_are_compressed_and_read_back_exactly() {
        let many = events(64);
        let (version, back) = round_trip(&many);
        assert_eq!(version, CHUNK_LZ4);
        assert_eq!(back, many);
        // One short event gains nothing: it is stored as it is.
        let one = vec![b"x".to_vec()];
        let (version, back) = round_trip(&one);
        assert_eq!(version, CHUNK_PLAIN);
        assert_eq!(back, one);
    }

    #[test]
    fn a_damaged_chunk_is_reported_not_unpacked() {
        let parts: Vec<Vec<u8>> = events(64);
        let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let mut stored = encode_chunk(&parts);
        // A size prefix claiming gigabytes.
        let mut huge = stored.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            unpack_chunk(3, &huge),
            Err(AuditError::Corrupt { seq: 3, .. })
        ));
        // Cut short.
        stored.truncate(stored.len() / 2);
        assert!(unpack_chunk(3, &stored).is_err());
        assert!(unpack_chunk(3, &[9, 1, 2]).is_err());
        assert!(unpack_chunk(3, &[]).is_err());
    }
}
