//! The audit log's write-ahead file: where a group commit becomes durable.
//!
//! Each group commit writes one record holding its sealed events (each
//! event's stored bytes under its sequence number) and its checkpoint,
//! appends it to the current segment file in `<data_dir>/audit-wal/` and
//! syncs that file (`fdatasync`) from the writer thread itself; then the
//! requests are answered. sled is not on that path: the applier
//! ([`super::applier`]) derives the event chunks, block summaries and
//! resident index from the same events and inserts them behind the writer,
//! and every second or so, once it has applied a segment's records, a thread
//! of its own flushes sled, syncs its file, and removes the segments whose
//! records sled now holds. (Records written before the applier hold the
//! sled entries themselves: event chunks, block summaries, checkpoint; a
//! replay reads both.)
//!
//! Segment files are reused: a removed segment becomes a spare (at most
//! [`SPARES`]), and the next segment is a spare renamed, written over from
//! its start. Writing over blocks the file already has lets `fdatasync` skip
//! the file system's journal (no size or allocation to record), which made
//! a 4 KiB write and sync about a third faster here than an append.
//!
//! Opening the audit store replays what is left (an unclean stop), in order:
//! the records' inserts are plain overwrites with their final values, so
//! replaying a record sled already holds changes nothing. Reading a segment
//! stops at its end mark (written and synced when the writer moves on to the
//! next segment) or, in the last segment, at the first bytes that are not an
//! intact record of this segment: a write cut short (never acknowledged) or
//! what a reused file held before. A damaged record before a later segment
//! is an error, as any damaged part of the log is.
//!
//! Record: `u32` payload length, `u32` CRC-32 of the segment's number (`u64`)
//! and the payload (all little-endian), payload; the CRC's segment number is
//! what tells a record from an old one of a reused file. Payload: `u64` the
//! highest sequence number the record covers, then entries of `u8` tree,
//! `u32` key length, key, `u32` value length, value. The end mark is a
//! record with an empty payload.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The directory of segment files, inside the data directory.
pub const DIR: &str = "audit-wal";
/// No record is larger than this (a damaged length must not allocate gigabytes).
const RECORD_MAX: usize = 256 << 20;
/// Removed segments kept for reuse.
pub(crate) const SPARES: usize = 2;
const SPARE_PREFIX: &str = "spare-";

/// Which audit tree an entry goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tree {
    Events = 0,
    Blocks = 1,
    Checkpoints = 2,
    /// One sealed event: key its sequence number (big-endian), value its
    /// stored bytes (the store files it in an event chunk).
    Sealed = 3,
}

impl Tree {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Events),
            1 => Some(Self::Blocks),
            2 => Some(Self::Checkpoints),
            3 => Some(Self::Sealed),
            _ => None,
        }
    }
}

/// One insert of a group commit.
pub(crate) type Entry = (Tree, Vec<u8>, Vec<u8>);

/// Frames a group's entries as one record of segment `segment`; `seq` is
/// the highest sequence number it covers.
#[cfg(test)]
pub(crate) fn encode(segment: u64, seq: u64, entries: &[Entry]) -> Vec<u8> {
    let parts: Vec<(Tree, &[u8], &[u8])> = entries
        .iter()
        .map(|(t, k, v)| (*t, k.as_slice(), v.as_slice()))
        .collect();
    encode_parts(segment, seq, &parts)
}

/// As [`encode`], from borrowed entries.
pub(crate) fn encode_parts(segment: u64, seq: u64, entries: &[(Tree, &[u8], &[u8])]) -> Vec<u8> {
    let size = 8 + entries
        .iter()
        .map(|(_, k, v)| 9 + k.len() + v.len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(8 + size);
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&seq.to_le_bytes());
    for (tree, key, value) in entries {
        out.push(*tree as u8);
        put_bytes(&mut out, key);
        put_bytes(&mut out, value);
    }
    let len = u32::try_from(out.len() - 8).unwrap_or(u32::MAX);
    let crc = checksum(segment, &out[8..]);
    out[..4].copy_from_slice(&len.to_le_bytes());
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    out
}

/// The end mark of segment `segment`.
fn end_mark(segment: u64) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[4..].copy_from_slice(&checksum(segment, &[]).to_le_bytes());
    out
}

fn checksum(segment: u64, payload: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&segment.to_le_bytes());
    crc.update(payload);
    crc.finalize()
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// A record read back: the sequence number it covers and its entries.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub seq: u64,
    pub entries: Vec<(Tree, Vec<u8>, Vec<u8>)>,
}

fn decode_payload(payload: &[u8]) -> Option<Record> {
    let mut rest = payload;
    let seq = u64::from_le_bytes(take(&mut rest, 8)?.try_into().ok()?);
    let mut entries = Vec::new();
    while !rest.is_empty() {
        let tree = Tree::from_byte(take(&mut rest, 1)?[0])?;
        let key = take_bytes(&mut rest)?;
        let value = take_bytes(&mut rest)?;
        entries.push((tree, key.to_vec(), value.to_vec()));
    }
    Some(Record { seq, entries })
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if rest.len() < n {
        return None;
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Some(head)
}

fn take_bytes<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let n = u32::from_le_bytes(take(rest, 4)?.try_into().ok()?) as usize;
    take(rest, n)
}

/// Splits the bytes of segment `segment` into records: the records, and
/// where the first bytes that are neither an intact record of this segment
/// nor its end mark start (`None`: the segment ended cleanly).
fn split(segment: u64, bytes: &[u8]) -> (Vec<Record>, Option<usize>) {
    let end = end_mark(segment);
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.starts_with(&end) {
            return (records, None);
        }
        let record = (rest.len() >= 8)
            .then(|| {
                let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
                let payload = rest
                    .get(8..8 + len)
                    .filter(|_| len <= RECORD_MAX && len > 0)?;
                (checksum(segment, payload) == crc)
                    .then(|| decode_payload(payload))
                    .flatten()
                    .map(|r| (r, 8 + len))
            })
            .flatten();
        match record {
            Some((r, n)) => {
                records.push(r);
                at += n;
            }
            None => return (records, Some(at)),
        }
    }
    (records, None)
}

/// The segment files in `dir`, oldest first.
pub(crate) fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    numbered(dir, "")
}

/// The files in `dir` named `{prefix}{number}.wal`, by number.
fn numbered(dir: &Path, prefix: &str) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        let number = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(n) = number {
            found.push((n, path));
        }
    }
    found.sort();
    Ok(found)
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:016}.wal"))
}

/// The name segment `number` has as a spare.
fn spare_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{SPARE_PREFIX}{number:016}.wal"))
}

/// What [`read_all`] found.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    /// Every intact record, oldest first.
    pub records: Vec<Record>,
    /// The last segment read (0: none).
    pub last_segment: u64,
    /// Bytes after the last intact record of the last segment (a write cut
    /// short, or what a reused file held before).
    pub unread_bytes: u64,
}

/// Reads every segment in `dir`. A damaged record before the end of the
/// last segment is an error naming the file and offset.
pub(crate) fn read_all(dir: &Path) -> io::Result<Replay> {
    let found = segments(dir)?;
    let mut replay = Replay::default();
    for (i, (number, path)) in found.iter().enumerate() {
        let mut bytes = Vec::new();
        File::open(path)?.read_to_end(&mut bytes)?;
        let (records, bad) = split(*number, &bytes);
        replay.records.extend(records);
        replay.last_segment = *number;
        if let Some(at) = bad {
            // Damage followed by an intact record or the end mark of this
            // segment is damage, wherever it is: those records were synced.
            if intact_after(*number, &bytes, at) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "audit write-ahead file {} is damaged at byte {at}, before intact records of its own",
                        path.display()
                    ),
                ));
            }
            // A damaged tail followed only by segments that hold no record
            // of their own is what a stop between two steps of a rotation
            // leaves (a file renamed in, nothing written to it yet): the end
            // of the log, as a torn last record is.
            if !only_residue(&found[i + 1..])? {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "audit write-ahead file {} is damaged at byte {at}, before later segments",
                        path.display()
                    ),
                ));
            }
            replay.unread_bytes = (bytes.len() - at) as u64;
            if let Some((last, _)) = found.last() {
                replay.last_segment = *last;
            }
            break;
        }
    }
    Ok(replay)
}

/// Whether an intact record of `segment`, or its end mark, starts anywhere
/// after `from` in `bytes`. Bytes a reused file held before never pass: their
/// checksums cover another segment's number.
fn intact_after(segment: u64, bytes: &[u8], from: usize) -> bool {
    let end = end_mark(segment);
    (from + 1..bytes.len()).any(|at| {
        let rest = &bytes[at..];
        if rest.starts_with(&end) {
            return true;
        }
        let Some(head) = rest.get(..8) else {
            return false;
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        len > 0
            && len <= RECORD_MAX
            && rest.get(8..8 + len).is_some_and(|payload| {
                checksum(segment, payload) == crc && decode_payload(payload).is_some()
            })
    })
}

/// Whether none of `segments` holds an intact record of its own.
fn only_residue(segments: &[(u64, PathBuf)]) -> io::Result<bool> {
    for (number, path) in segments {
        let mut bytes = Vec::new();
        File::open(path)?.read_to_end(&mut bytes)?;
        let (records, _) = split(*number, &bytes);
        if !records.is_empty() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Makes the names in `dir` (renames, new files, removals) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    crate::faults::point(dir, "wal.dir_sync")?;
    File::open(dir)?.sync_all()
}

/// Removes the segments numbered up to `number`, keeping up to
/// [`SPARES`] of them as spares when `keep_spares`, and the other spares too
/// when not.
pub(crate) fn remove_through(dir: &Path, number: u64, keep_spares: bool) -> io::Result<()> {
    let spares = spares(dir)?;
    let mut kept = spares.len();
    if !keep_spares {
        for (_, path) in spares {
            crate::faults::point(dir, "wal.retire.remove")?;
            std::fs::remove_file(path)?;
        }
        kept = SPARES;
    }
    // Oldest first: a stop midway leaves the newer segments, which a
    // replay applies again (their inserts are plain overwrites).
    for (n, path) in segments(dir)? {
        if n > number {
            continue;
        }
        if kept < SPARES {
            crate::faults::point(dir, "wal.retire.rename")?;
            std::fs::rename(&path, spare_path(dir, n))?;
            kept += 1;
        } else {
            crate::faults::point(dir, "wal.retire.remove")?;
            std::fs::remove_file(path)?;
        }
    }
    sync_dir(dir)
}

/// The spare files in `dir`, by the number of the segment each last was.
fn spares(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    numbered(dir, SPARE_PREFIX)
}

/// The segment the writer appends to.
#[derive(Debug)]
pub(crate) struct Wal {
    dir: PathBuf,
    number: u64,
    file: File,
    len: u64,
    opened: Instant,
    sync: bool,
    broken: bool,
    /// The current segment has its end mark: the next append starts the next one.
    ended: bool,
    /// `fdatasync`s done.
    syncs: u64,
}

impl Wal {
    /// Starts a new segment after every one in `dir`; `sync`: `fdatasync` each append.
    pub(crate) fn create(dir: &Path, sync: bool) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        // After every number used, spares' too: a reused file's old records
        // must never carry the number of the segment it becomes.
        let spare_numbers = spares(dir)?.last().map(|(n, _)| *n);
        let number = segments(dir)?
            .last()
            .map(|(n, _)| *n)
            .max(spare_numbers)
            .map_or(1, |n| n + 1);
        let file = Self::open_segment(dir, number)?;
        Ok(Self {
            dir: dir.to_owned(),
            number,
            file,
            len: 0,
            opened: Instant::now(),
            sync,
            broken: false,
            ended: false,
            syncs: 0,
        })
    }

    /// Segment `number`: a spare renamed (written over from its start), or a new file.
    fn open_segment(dir: &Path, number: u64) -> io::Result<File> {
        let path = segment_path(dir, number);
        let file = match spares(dir)?.first() {
            Some((_, spare)) => {
                crate::faults::point(dir, "wal.segment.rename")?;
                std::fs::rename(spare, &path)?;
                OpenOptions::new().write(true).open(&path)?
            }
            None => {
                crate::faults::point(dir, "wal.segment.create")?;
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)?
            }
        };
        // The file's (new) name must survive a power cut with its contents.
        sync_dir(dir)?;
        Ok(file)
    }

    /// Appends one record and (if syncing) waits until it is on disk. A
    /// failed append is cut off again; if even that fails, every later
    /// append fails too (nothing may follow a record of unknown state).
    pub(crate) fn append(&mut self, record: &[u8]) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other(
                "the audit write-ahead file could not be repaired after a failed write",
            ));
        }
        if self.ended {
            self.advance()?;
        }
        self.write(record, self.sync)
    }

    fn write(&mut self, bytes: &[u8], sync: bool) -> io::Result<()> {
        let written = crate::faults::point(&self.dir, "wal.write")
            .and_then(|()| self.file.write_all(bytes))
            .and_then(|()| if sync { self.sync_file() } else { Ok(()) });
        match written {
            Ok(()) => {
                self.len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Nothing of this write may stay: a partial record of this
                // segment would end its reading before the records after it.
                let len = self.len;
                let repaired = self
                    .file
                    .set_len(len)
                    .and_then(|()| self.file.seek(SeekFrom::Start(len)))
                    .and_then(|_| self.file.sync_data());
                if repaired.is_err() {
                    self.broken = true;
                }
                Err(e)
            }
        }
    }

    /// `fdatasync`s the current segment and counts it.
    fn sync_file(&mut self) -> io::Result<()> {
        crate::faults::point(&self.dir, "wal.sync")?;
        self.file.sync_data()?;
        self.syncs += 1;
        Ok(())
    }

    /// How many times the file was synced (each synced append and end mark).
    pub(crate) fn syncs(&self) -> u64 {
        self.syncs
    }

    /// Frames a group's entries as a record of the segment it goes to.
    #[cfg(test)]
    pub(crate) fn record(&self, seq: u64, entries: &[Entry]) -> Vec<u8> {
        let parts: Vec<(Tree, &[u8], &[u8])> = entries
            .iter()
            .map(|(t, k, v)| (*t, k.as_slice(), v.as_slice()))
            .collect();
        self.record_parts(seq, &parts)
    }

    /// As [`Self::record`], from borrowed entries.
    pub(crate) fn record_parts(&self, seq: u64, entries: &[(Tree, &[u8], &[u8])]) -> Vec<u8> {
        encode_parts(self.number + u64::from(self.ended), seq, entries)
    }

    /// Bytes in the current segment.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// How long the current segment has been open.
    pub(crate) fn age(&self) -> std::time::Duration {
        self.opened.elapsed()
    }

    /// Ends the current segment (its end mark, synced) and starts the next;
    /// returns the number of the one it ended. The end mark comes first: a
    /// stop between the steps leaves either a segment that ends cleanly, or
    /// one with records and then a file that holds none of its own, which
    /// reading takes as the end of the log. If the next segment cannot be
    /// started, the next append tries again (nothing is written after an
    /// end mark).
    pub(crate) fn rotate(&mut self) -> io::Result<u64> {
        if !self.ended {
            // A failed write is cut off again: still on this segment.
            self.write(&end_mark(self.number), true)?;
            self.ended = true;
        }
        let ended = self.number;
        self.advance()?;
        Ok(ended)
    }

    /// Starts the segment after an ended one.
    fn advance(&mut self) -> io::Result<()> {
        let file = Self::open_segment(&self.dir, self.number + 1)?;
        self.number += 1;
        self.file = file;
        self.len = 0;
        self.opened = Instant::now();
        self.ended = false;
        Ok(())
    }

    /// The current segment's number.
    pub(crate) fn number(&self) -> u64 {
        self.number
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(n: u8) -> Vec<Entry> {
        vec![
            (Tree::Events, vec![n; 8], vec![n; 40]),
            // (A key longer than 9 bytes: its length sums are checked.)
            (Tree::Blocks, vec![n; 12], vec![]),
            (Tree::Checkpoints, vec![], vec![7; 3]),
            (
                Tree::Sealed,
                u64::from(n).to_be_bytes().to_vec(),
                vec![n; 12],
            ),
        ]
    }

    #[test]
    fn records_read_back_as_written_and_a_cut_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(dir.path(), true).unwrap();
        for n in 1..=3 {
            wal.append(&wal.record(u64::from(n), &entries(n))).unwrap();
        }
        let whole = read_all(dir.path()).unwrap();
        assert_eq!(whole.records.len(), 3);
        assert_eq!(whole.records[1].seq, 2);
        assert_eq!(whole.records[1].entries, entries(2));
        assert_eq!(whole.unread_bytes, 0);

        // The process dies inside the fourth write: part of it is on disk.
        let fourth = wal.record(4, &entries(4));
        wal.file.write_all(&fourth[..fourth.len() - 5]).unwrap();
        let cut = read_all(dir.path()).unwrap();
        assert_eq!(cut.records.len(), 3);
        assert_eq!(cut.unread_bytes, fourth.len() as u64 - 5);
    }

    #[test]
    fn a_damaged_record_before_a_later_segment_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(dir.path(), false).unwrap();
        wal.append(&wal.record(1, &entries(1))).unwrap();
        wal.append(&wal.record(2, &entries(2))).unwrap();
        let first = wal.rotate().unwrap();
        wal.append(&wal.record(3, &entries(3))).unwrap();
        assert_eq!(read_all(dir.path()).unwrap().records.len(), 3);

        // A bit flipped inside the second record (before the end mark).
        let path = segment_path(dir.path(), first);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() - 8 - 3;
        bytes[at] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let err = read_all(dir.path()).unwrap_err();
        assert!(err.to_string().contains("damaged"), "{err}");

        remove_through(dir.path(), first, false).unwrap();
        let rest = read_all(dir.path()).unwrap();
        assert_eq!(rest.records.len(), 1);
        assert_eq!(rest.records[0].seq, 3);
    }

    #[test]
    fn a_damaged_length_does_not_allocate_and_is_not_read() {
        let mut record = encode(1, 9, &entries(9));
        record[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        let (records, bad) = split(1, &record);
        assert!(records.is_empty());
        assert_eq!(bad, Some(0));
    }

    /// A record longer than `RECORD_MAX` is not read, though its bytes are
    /// all there and its checksum is right.
    #[test]
    fn a_record_longer_than_the_most_is_not_read() {
        let value = vec![0; RECORD_MAX - 16];
        let record = encode(1, 9, &[(Tree::Events, vec![], value)]);
        assert_eq!(record.len(), 8 + RECORD_MAX + 1);
        let (records, bad) = split(1, &record);
        assert!(records.is_empty());
        assert_eq!(bad, Some(0));
    }

    #[test]
    fn a_new_writer_starts_after_the_segments_left() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(dir.path(), false).unwrap();
        wal.append(&wal.record(1, &entries(1))).unwrap();
        let again = Wal::create(dir.path(), false).unwrap();
        assert_eq!(again.number(), wal.number() + 1);
        let left = read_all(dir.path()).unwrap();
        assert_eq!(left.records.len(), 1);
        assert_eq!(left.last_segment, again.number());
    }

    #[test]
    fn a_directory_that_cannot_be_read_is_an_error_not_an_empty_log() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            read_all(&dir.path().join("none"))
                .unwrap()
                .records
                .is_empty()
        );
        // A file where the directory should be: reading it as a log with
        // no records would lose every acknowledged event it should hold.
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"").unwrap();
        assert!(read_all(&file).is_err());
        assert!(Wal::create(&file, false).is_err());
    }

    /// What a segment counts of itself: its bytes (what decides when it
    /// ends), its age, its syncs (one per synced append or end mark, none
    /// when not syncing).
    #[test]
    fn a_segment_counts_its_bytes_its_age_and_its_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(&dir.path().join("synced"), true).unwrap();
        let first = wal.record(1, &entries(1));
        let second = wal.record(2, &entries(2));
        wal.append(&first).unwrap();
        wal.append(&second).unwrap();
        assert_eq!(wal.len(), (first.len() + second.len()) as u64);
        assert_eq!(wal.syncs(), 2);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(wal.age() >= std::time::Duration::from_millis(50));
        let rotated = std::time::Instant::now();
        wal.rotate().unwrap();
        assert_eq!(wal.syncs(), 3, "the end mark too");
        assert_eq!(wal.len(), 0, "a new segment");
        assert!(wal.age() <= rotated.elapsed(), "its age starts again");

        let mut unsynced = Wal::create(&dir.path().join("unsynced"), false).unwrap();
        unsynced.append(&unsynced.record(1, &entries(1))).unwrap();
        assert_eq!(unsynced.syncs(), 0);
    }

    /// A write whose sync fails is cut off again, and only it: the records
    /// before it stay, and the next append follows them.
    #[test]
    fn a_failed_append_is_cut_off_and_only_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(dir.path(), true).unwrap();
        wal.append(&wal.record(1, &entries(1))).unwrap();
        wal.append(&wal.record(2, &entries(2))).unwrap();
        let before = wal.len();
        let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let plan = failing.clone();
        let _armed = crate::faults::arm(dir.path(), move |point| {
            (point == "wal.sync" && plan.load(std::sync::atomic::Ordering::SeqCst))
                .then_some(crate::faults::Fault::Fail)
        });
        assert!(wal.append(&wal.record(3, &entries(3))).is_err());
        assert_eq!(wal.len(), before);
        let read = read_all(dir.path()).unwrap();
        assert_eq!(read.records.len(), 2);
        assert_eq!(read.unread_bytes, 0, "nothing of the failed write stays");
        failing.store(false, std::sync::atomic::Ordering::SeqCst);
        wal.append(&wal.record(4, &entries(4))).unwrap();
        let seqs: Vec<u64> = read_all(dir.path())
            .unwrap()
            .records
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(seqs, [1, 2, 4]);
    }

    #[test]
    fn segments_removed_become_at_most_spares_spares() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(dir.path(), false).unwrap();
        let mut ended = 0;
        for n in 1..=5 {
            wal.append(&wal.record(u64::from(n), &entries(n))).unwrap();
            ended = wal.rotate().unwrap();
        }
        remove_through(dir.path(), ended, true).unwrap();
        assert_eq!(spares(dir.path()).unwrap().len(), SPARES);
        assert_eq!(segments(dir.path()).unwrap().len(), 1, "only the open one");
    }

    /// Every change of a name in the directory (a new segment, a spare
    /// renamed in or out, a removal) is followed by a sync of the
    /// directory, and its failure is the step's failure.
    #[test]
    fn names_are_synced_and_a_failed_directory_sync_fails_the_step() {
        let dir = tempfile::tempdir().unwrap();
        let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let plan = failing.clone();
        let _armed = crate::faults::arm(dir.path(), move |point| {
            (point == "wal.dir_sync" && plan.load(std::sync::atomic::Ordering::SeqCst))
                .then_some(crate::faults::Fault::Fail)
        });
        assert!(Wal::create(dir.path(), false).is_err(), "a new segment");
        failing.store(false, std::sync::atomic::Ordering::SeqCst);
        let mut wal = Wal::create(dir.path(), false).unwrap();
        wal.append(&wal.record(1, &entries(1))).unwrap();
        let ended = wal.rotate().unwrap();
        failing.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(
            remove_through(dir.path(), ended, true).is_err(),
            "a removal"
        );
    }

    #[test]
    fn a_reused_file_is_read_only_as_far_as_its_new_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(dir.path(), true).unwrap();
        for n in 1..=3 {
            wal.append(&wal.record(u64::from(n), &entries(n))).unwrap();
        }
        let first = wal.rotate().unwrap();
        wal.append(&wal.record(4, &entries(4))).unwrap();
        // sled holds segment 1 now: it becomes a spare, and the next segment reuses it.
        remove_through(dir.path(), first, true).unwrap();
        assert_eq!(spares(dir.path()).unwrap().len(), 1);
        wal.rotate().unwrap();
        assert!(
            spares(dir.path()).unwrap().is_empty(),
            "the spare was taken"
        );
        wal.append(&wal.record(5, &entries(5))).unwrap();

        let read = read_all(dir.path()).unwrap();
        let seqs: Vec<u64> = read.records.iter().map(|r| r.seq).collect();
        assert_eq!(
            seqs,
            [4, 5],
            "the old file's records of segment 1 are not read"
        );
        assert!(read.unread_bytes > 0, "the reused file still holds them");

        // A writer started later (segments replayed and removed, their
        // files spares) numbers its segment after the spares' numbers.
        remove_through(dir.path(), wal.number(), true).unwrap();
        let later = Wal::create(dir.path(), true).unwrap();
        assert!(later.number() > wal.number());
        assert!(read_all(dir.path()).unwrap().records.is_empty());
        let wal = later;

        // A clean stop removes every segment and spare.
        remove_through(dir.path(), wal.number(), false).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// Two reused files and a rotation stopped between renaming the spare
    /// in and ending the segment before it (what an earlier order of the
    /// steps left): the first segment's tail holds what the file held
    /// before, and the next one nothing of its own. The log reads to its
    /// last record, and opening after it starts cleanly.
    #[test]
    fn a_damaged_tail_followed_only_by_empty_segments_is_the_end_of_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(dir.path(), true).unwrap();
        for n in 1..=4 {
            wal.append(&wal.record(u64::from(n), &entries(n))).unwrap();
        }
        drop(wal);
        // Segment 2: a reused file, two records of its own then stale bytes.
        let stale = std::fs::read(segment_path(dir.path(), 1)).unwrap();
        let mut second = encode(2, 5, &entries(5));
        second.extend(encode(2, 6, &entries(6)));
        second.extend_from_slice(&stale[second.len()..]);
        std::fs::write(segment_path(dir.path(), 2), &second).unwrap();
        // Segment 3: a spare renamed in, nothing written yet.
        std::fs::write(segment_path(dir.path(), 3), &stale).unwrap();

        let read = read_all(dir.path()).unwrap();
        let seqs: Vec<u64> = read.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
        assert_eq!(read.last_segment, 3, "the residue is removed with the rest");
        assert!(read.unread_bytes > 0);

        // A record of segment 3 after the damage is not residue: an error.
        std::fs::write(segment_path(dir.path(), 3), encode(3, 7, &entries(7))).unwrap();
        let err = read_all(dir.path()).unwrap_err();
        assert!(err.to_string().contains("damaged"), "{err}");
    }

    /// Damage inside a segment followed by an intact record of that segment
    /// (or its end mark) is an error even when only an empty segment follows
    /// (the quiet node's usual state) or none does: the records after it
    /// were synced and acknowledged.
    #[test]
    fn damage_before_intact_records_of_the_same_segment_is_an_error() {
        for ended in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let mut wal = Wal::create(dir.path(), true).unwrap();
            for n in 1..=3 {
                wal.append(&wal.record(u64::from(n), &entries(n))).unwrap();
            }
            if ended {
                wal.rotate().unwrap();
            }
            drop(wal);
            let path = segment_path(dir.path(), 1);
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[20] ^= 0xff; // inside the first record
            std::fs::write(&path, bytes).unwrap();
            let err = read_all(dir.path()).unwrap_err();
            assert!(err.to_string().contains("before intact records"), "{err}");
        }
    }

    /// A rotation writes the end mark before the next segment exists, and a
    /// failure to start the next segment is retried by the next append
    /// (nothing is ever written after an end mark).
    #[test]
    fn a_rotation_ends_the_segment_first_and_retries_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(dir.path(), true).unwrap();
        wal.append(&wal.record(1, &entries(1))).unwrap();
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = order.clone();
        let fail_next_segment = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let failing = fail_next_segment.clone();
        let _armed = crate::faults::arm(dir.path(), move |point| {
            seen.lock().unwrap().push(point.to_owned());
            (point == "wal.segment.create" && failing.load(std::sync::atomic::Ordering::SeqCst))
                .then_some(crate::faults::Fault::Fail)
        });
        assert!(wal.rotate().is_err(), "the next segment could not be made");
        assert_eq!(
            order.lock().unwrap().as_slice(),
            ["wal.write", "wal.sync", "wal.segment.create"],
            "the end mark, synced, before the next segment"
        );
        assert_eq!(segments(dir.path()).unwrap().len(), 1);
        fail_next_segment.store(false, std::sync::atomic::Ordering::SeqCst);
        wal.append(&wal.record(2, &entries(2))).unwrap();
        assert_eq!(segments(dir.path()).unwrap().len(), 2);
        let seqs: Vec<u64> = read_all(dir.path())
            .unwrap()
            .records
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(seqs, [1, 2]);
    }
}
