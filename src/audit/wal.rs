//! The audit log's write-ahead file: where a group commit becomes durable.
//!
//! Each group commit writes one record holding exactly what it then inserts
//! into sled (its event chunks, block summaries and checkpoint), appends it
//! to the current segment file in `<data_dir>/audit-wal/` and syncs that file
//! (`fdatasync`) from the writer thread itself; only then are the sled
//! inserts made and the requests answered. sled is flushed in the background
//! instead of once per group: every second or so the writer starts a new
//! segment and a thread of its own flushes sled, syncs its file, and removes
//! the segments whose records sled now holds.
//!
//! Opening the audit store replays what is left (an unclean stop), in order:
//! the records' inserts are plain overwrites with their final values, so
//! replaying a record sled already holds changes nothing. A record cut short
//! at the end of the last segment (the process died inside the write) was
//! never acknowledged and is dropped; a damaged record anywhere else is an
//! error, as any damaged part of the log is.
//!
//! Record: `u32` payload length, `u32` CRC-32 of the payload (both
//! little-endian), payload. Payload: `u64` the highest sequence number the
//! record covers, then entries of `u8` tree, `u32` key length, key, `u32`
//! value length, value.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The directory of segment files, inside the data directory.
pub const DIR: &str = "audit-wal";
/// No record is larger than this (a damaged length must not allocate gigabytes).
const RECORD_MAX: usize = 256 << 20;

/// Which audit tree an entry goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tree {
    Events = 0,
    Blocks = 1,
    Checkpoints = 2,
}

impl Tree {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Events),
            1 => Some(Self::Blocks),
            2 => Some(Self::Checkpoints),
            _ => None,
        }
    }
}

/// One insert of a group commit.
pub(crate) type Entry = (Tree, Vec<u8>, Vec<u8>);

/// Frames a group's entries as one record; `seq` is the highest sequence
/// number it covers.
pub(crate) fn encode(seq: u64, entries: &[Entry]) -> Vec<u8> {
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
    let crc = crc32fast::hash(&out[8..]);
    out[..4].copy_from_slice(&len.to_le_bytes());
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    out
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

/// Splits a segment's bytes into records: the records, and where the first
/// bytes that are not a whole, intact record start (`None`: none follow).
fn split(bytes: &[u8]) -> (Vec<Record>, Option<usize>) {
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let record = (rest.len() >= 8)
            .then(|| {
                let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
                let payload = rest.get(8..8 + len).filter(|_| len <= RECORD_MAX)?;
                (crc32fast::hash(payload) == crc)
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

/// What [`read_all`] found.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    /// Every intact record, oldest first.
    pub records: Vec<Record>,
    /// The last segment read (0: none).
    pub last_segment: u64,
    /// Bytes dropped from the end of the last segment (a write cut short).
    pub torn_bytes: u64,
}

/// Reads every segment in `dir`. A damaged record before the end of the
/// last segment is an error naming the file and offset.
pub(crate) fn read_all(dir: &Path) -> io::Result<Replay> {
    let found = segments(dir)?;
    let mut replay = Replay::default();
    for (i, (number, path)) in found.iter().enumerate() {
        let mut bytes = Vec::new();
        File::open(path)?.read_to_end(&mut bytes)?;
        let (records, bad) = split(&bytes);
        replay.records.extend(records);
        replay.last_segment = *number;
        if let Some(at) = bad {
            if i + 1 < found.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "audit write-ahead file {} is damaged at byte {at}, before later segments",
                        path.display()
                    ),
                ));
            }
            replay.torn_bytes = (bytes.len() - at) as u64;
        }
    }
    Ok(replay)
}

/// Removes the segments numbered up to `number`.
pub(crate) fn remove_through(dir: &Path, number: u64) -> io::Result<()> {
    for (n, path) in segments(dir)? {
        if n <= number {
            std::fs::remove_file(path)?;
        }
    }
    Ok(())
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
}

impl Wal {
    /// Starts a new segment after every one in `dir`; `sync`: `fdatasync` each append.
    pub(crate) fn create(dir: &Path, sync: bool) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let number = segments(dir)?.last().map_or(1, |(n, _)| n + 1);
        let file = Self::open_segment(dir, number)?;
        Ok(Self {
            dir: dir.to_owned(),
            number,
            file,
            len: 0,
            opened: Instant::now(),
            sync,
            broken: false,
        })
    }

    fn open_segment(dir: &Path, number: u64) -> io::Result<File> {
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(segment_path(dir, number))?;
        // The new file's name must survive a power cut with its contents.
        File::open(dir)?.sync_all()?;
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
        let written = self.file.write_all(record).and_then(|()| {
            if self.sync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        match written {
            Ok(()) => {
                self.len += record.len() as u64;
                Ok(())
            }
            Err(e) => {
                if self
                    .file
                    .set_len(self.len)
                    .and_then(|()| self.file.sync_data())
                    .is_err()
                {
                    self.broken = true;
                }
                Err(e)
            }
        }
    }

    /// Bytes in the current segment.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// How long the current segment has been open.
    pub(crate) fn age(&self) -> std::time::Duration {
        self.opened.elapsed()
    }

    /// Starts the next segment; returns the number of the one it ends.
    pub(crate) fn rotate(&mut self) -> io::Result<u64> {
        let file = Self::open_segment(&self.dir, self.number + 1)?;
        let ended = self.number;
        self.number += 1;
        self.file = file;
        self.len = 0;
        self.opened = Instant::now();
        Ok(ended)
    }

    /// The current segment's number.
    pub(crate) fn number(&self) -> u64 {
        self.number
    }

    /// The segment directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(n: u8) -> Vec<Entry> {
        vec![
            (Tree::Events, vec![n; 8], vec![n; 40]),
            (Tree::Blocks, vec![n, 1], vec![]),
            (Tree::Checkpoints, vec![], vec![7; 3]),
        ]
    }

    #[test]
    fn records_read_back_as_written_and_a_cut_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(dir.path(), true).unwrap();
        for n in 1..=3 {
            wal.append(&encode(u64::from(n), &entries(n))).unwrap();
        }
        let whole = read_all(dir.path()).unwrap();
        assert_eq!(whole.records.len(), 3);
        assert_eq!(whole.records[1].seq, 2);
        assert_eq!(whole.records[1].entries, entries(2));
        assert_eq!(whole.torn_bytes, 0);

        // The process dies inside the fourth write: part of it is on disk.
        let fourth = encode(4, &entries(4));
        wal.file.write_all(&fourth[..fourth.len() - 5]).unwrap();
        let cut = read_all(dir.path()).unwrap();
        assert_eq!(cut.records.len(), 3);
        assert_eq!(cut.torn_bytes, fourth.len() as u64 - 5);
    }

    #[test]
    fn a_damaged_record_before_a_later_segment_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(dir.path(), false).unwrap();
        wal.append(&encode(1, &entries(1))).unwrap();
        wal.append(&encode(2, &entries(2))).unwrap();
        let first = wal.rotate().unwrap();
        wal.append(&encode(3, &entries(3))).unwrap();
        assert_eq!(read_all(dir.path()).unwrap().records.len(), 3);

        let path = segment_path(dir.path(), first);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() - 3;
        bytes[at] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let err = read_all(dir.path()).unwrap_err();
        assert!(err.to_string().contains("damaged"), "{err}");

        remove_through(dir.path(), first).unwrap();
        let rest = read_all(dir.path()).unwrap();
        assert_eq!(rest.records.len(), 1);
        assert_eq!(rest.records[0].seq, 3);
    }

    #[test]
    fn a_damaged_length_does_not_allocate_and_is_not_read() {
        let mut record = encode(9, &entries(9));
        record[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        let (records, bad) = split(&record);
        assert!(records.is_empty());
        assert_eq!(bad, Some(0));
    }

    #[test]
    fn a_new_writer_starts_after_the_segments_left() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(dir.path(), false).unwrap();
        wal.append(&encode(1, &entries(1))).unwrap();
        let again = Wal::create(dir.path(), false).unwrap();
        assert_eq!(again.number(), wal.number() + 1);
        let left = read_all(dir.path()).unwrap();
        assert_eq!(left.records.len(), 1);
        assert_eq!(left.last_segment, again.number());
    }
}
