//! Backups of a running gateway, and restores into a new home.
//!
//! A backup is one tar file: `manifest.json` first (what it holds, the
//! snapshot point, and the size and SHA-256 of every other entry), then
//! the audit log through the snapshot point (`audit/events.bin`: each
//! stored event, length-prefixed, from the anchor on; `audit/checkpoints.bin`;
//! `audit/meta.json`: anchor, exported mark, prune records), each embedded
//! dataset's records in force (`data/<dataset>.kv`), the gateway's other
//! stores (`trees/<name>.kv`: suspensions, the token deny-list, the policy
//! history), the policy files in force (`policies/…`), the configuration
//! (`config/tongban.toml`) and, when the operator asks, the keys of the
//! data directory (`keys/…`: the pseudonym key, the checkpoint keys, the
//! answer-signing keys).
//!
//! The snapshot point is a checkpoint signed for the backup: every event
//! acknowledged before the backup began is at or before it, and the chain
//! through it verifies. The gateway takes it while serving: requests go on
//! (their events come after the point); imports, prunes and policy changes
//! wait for the backup.
//!
//! A restore checks every entry against the manifest before it writes
//! anything, builds the new home (`tongban.toml`, `policies/`, `data/`),
//! files the events and derives the indexes, and verifies the chain (and
//! with the keys, every checkpoint signature) before it reports success.

use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::audit::checkpoint::SignedCheckpoint;
use crate::audit::{AuditError, AuditStore};
use crate::domain::{DatasetId, hex};
use crate::policy::load::PolicySources;
use crate::provider::EmbeddedStore;

/// The `format` of a manifest.
pub const FORMAT: &str = "tongban-backup";
/// The version of the layout written.
pub const VERSION: u32 = 1;
/// Events filed per batch at a restore.
const BATCH: usize = 4096;

/// What a backup holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The layout's version ([`VERSION`]).
    pub version: u32,
    /// The software that wrote it (`tongban 1.2.3`).
    pub software: String,
    /// The node it was taken from.
    pub node_id: String,
    /// When, RFC 3339.
    pub created: String,
    /// The audit log's snapshot point.
    pub snapshot: Snapshot,
    /// Whether the keys of the data directory are in it.
    pub keys: bool,
    /// Records held per embedded dataset.
    pub datasets: BTreeMap<String, u64>,
    /// Every other entry, in the order of the file.
    pub entries: Vec<EntrySum>,
}

/// The audit log's state in a backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// The last event in it (covered by a signed checkpoint).
    pub seq: u64,
    /// That event's hash, hex.
    pub hash: String,
    /// The event the chain starts after (0 unless pruned).
    pub anchor_seq: u64,
    /// How many events it holds.
    pub events: u64,
    /// How many signed checkpoints.
    pub checkpoints: u64,
}

/// One entry's size and checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntrySum {
    /// Its path in the archive.
    pub path: String,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct AuditMeta {
    anchor_seq: u64,
    anchor_hash: String,
    exported_through: u64,
    prunes: Vec<(u64, String)>,
}

/// Why a backup or a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A file could not be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] sled::Error),
    /// The audit log failed.
    #[error("audit log: {0}")]
    Audit(#[from] AuditError),
    /// The backup is not one this gateway can restore, or is damaged.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> BackupError {
    BackupError::Invalid(message.into())
}

/// What a backup is taken from.
#[derive(Debug)]
pub struct Sources<'a> {
    /// The gateway's database.
    pub db: &'a sled::Db,
    /// Its audit log.
    pub audit: &'a AuditStore,
    /// Its embedded records.
    pub embedded: &'a EmbeddedStore,
    /// The embedded datasets of the catalog.
    pub datasets: Vec<DatasetId>,
    /// The policy files in force.
    pub policies: &'a PolicySources,
    /// The configuration file's text, if the gateway was started from one.
    pub config: Option<String>,
    /// The files it names that are configuration too: the working-day
    /// calendar and the anomaly rules ([`CONFIG_FILES`]), each by its name
    /// there, with its text.
    pub config_files: Vec<(&'static str, String)>,
    /// The data directory (for its keys).
    pub data_dir: &'a Path,
    /// The node's id.
    pub node_id: &'a str,
    /// The snapshot point: a sequence number covered by a signed checkpoint.
    pub through: u64,
    /// Whether to include the keys.
    pub keys: bool,
    /// Now, RFC 3339.
    pub created: String,
}

/// Trees not copied as they are: the audit log (copied as events), the
/// dataset generations (copied as each dataset's records in force), the
/// idempotency keys (a day's digests, no use elsewhere).
fn copied_as_is(name: &str) -> bool {
    !(name.starts_with("audit/")
        || name.starts_with("data/")
        || name == "provider/generations"
        || name == "idempotency")
}

/// The keys of a data directory, relative to it.
fn key_files(data_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for name in [
        crate::audit::pseudonym::KEY_FILE,
        crate::audit::checkpoint::ED25519_KEY_FILE,
        crate::audit::checkpoint::SM2_KEY_FILE,
    ] {
        if data_dir.join(name).is_file() {
            out.push(PathBuf::from(name));
        }
    }
    for dir in [crate::audit::checkpoint::RETIRED_DIR, crate::proof::DIR] {
        if let Ok(list) = std::fs::read_dir(data_dir.join(dir)) {
            let mut names: Vec<PathBuf> = list
                .filter_map(Result::ok)
                .filter(|e| e.path().is_file())
                .map(|e| Path::new(dir).join(e.file_name()))
                .collect();
            names.sort();
            out.extend(names);
        }
    }
    out
}

/// The key files (and key directories, ending in `/`) a backup may hold.
fn key_files_named() -> [String; 5] {
    [
        crate::audit::pseudonym::KEY_FILE.to_owned(),
        crate::audit::checkpoint::ED25519_KEY_FILE.to_owned(),
        crate::audit::checkpoint::SM2_KEY_FILE.to_owned(),
        format!("{}/", crate::audit::checkpoint::RETIRED_DIR),
        format!("{}/", crate::proof::DIR),
    ]
}

/// Whether `name` is the key file `known`, or a plain file in the key
/// directory `known` (ending in `/`).
fn key_path_is(name: &str, known: &str) -> bool {
    match known.strip_suffix('/') {
        Some(dir) => name
            .strip_prefix(dir)
            .and_then(|r| r.strip_prefix('/'))
            .is_some_and(|f| !f.is_empty() && !f.contains('/')),
        None => name == known,
    }
}

/// A file of the staging directory being written, hashed as it goes.
struct Part {
    path: String,
    out: BufWriter<std::fs::File>,
    digest: aws_lc_rs::digest::Context,
    bytes: u64,
}

impl Write for Part {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.digest.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

struct Staging {
    dir: PathBuf,
    sums: Vec<EntrySum>,
}

impl Staging {
    fn part(&self, path: &str) -> std::io::Result<Part> {
        let file = self.dir.join(self.sums.len().to_string());
        Ok(Part {
            path: path.to_owned(),
            out: BufWriter::new(std::fs::File::create(file)?),
            digest: aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256),
            bytes: 0,
        })
    }

    fn done(&mut self, mut part: Part) -> std::io::Result<()> {
        part.out.flush()?;
        self.sums.push(EntrySum {
            path: part.path,
            bytes: part.bytes,
            sha256: hex(part.digest.finish().as_ref()),
        });
        Ok(())
    }

    fn put(&mut self, path: &str, bytes: &[u8]) -> std::io::Result<()> {
        let mut part = self.part(path)?;
        part.write_all(bytes)?;
        self.done(part)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn put_len(w: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    w.write_all(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes())?;
    w.write_all(bytes)
}

/// The largest record a backup holds (an event, a stored record, a
/// checkpoint): a longer length is damage, not a reason to allocate.
const MAX_RECORD: usize = 64 << 20;

fn read_len(r: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_RECORD {
        return Err(std::io::Error::other(format!(
            "a record of {len} bytes: the backup is damaged"
        )));
    }
    let mut bytes = vec![0u8; len];
    r.read_exact(&mut bytes)?;
    Ok(Some(bytes))
}

/// Writes a backup of `src` to `out` (through a temporary file beside it,
/// synced, then renamed): the manifest.
pub fn write(src: &Sources<'_>, out: &Path) -> Result<Manifest, BackupError> {
    let mut staging = Staging {
        dir: out.with_extension("parts"),
        sums: Vec::new(),
    };
    let _ = std::fs::remove_dir_all(&staging.dir);
    std::fs::create_dir_all(&staging.dir)?;
    let snapshot = write_audit(src, &mut staging)?;
    let mut datasets = BTreeMap::new();
    for dataset in &src.datasets {
        let mut part = staging.part(&format!("data/{dataset}.kv"))?;
        let mut n = 0;
        for item in src
            .embedded
            .records(dataset)
            .map_err(|e| invalid(e.to_string()))?
        {
            let (k, v) = item?;
            put_len(&mut part, &k)?;
            put_len(&mut part, &v)?;
            n += 1;
        }
        staging.done(part)?;
        datasets.insert(dataset.to_string(), n);
    }
    let mut names: Vec<String> = src
        .db
        .tree_names()
        .iter()
        .filter_map(|n| String::from_utf8(n.to_vec()).ok())
        .filter(|n| copied_as_is(n))
        .collect();
    names.sort();
    for name in names {
        let tree = src.db.open_tree(&name)?;
        let encoded =
            percent_encoding::utf8_percent_encode(&name, percent_encoding::NON_ALPHANUMERIC);
        let mut part = staging.part(&format!("trees/{encoded}.kv"))?;
        for item in tree.iter() {
            let (k, v) = item?;
            put_len(&mut part, &k)?;
            put_len(&mut part, &v)?;
        }
        staging.done(part)?;
    }
    for (file, text) in &src.policies.files {
        staging.put(&format!("policies/{file}"), text.as_bytes())?;
    }
    if let Some(config) = &src.config {
        staging.put("config/tongban.toml", redact(config).as_bytes())?;
    }
    for (name, text) in &src.config_files {
        staging.put(&format!("config/{name}"), text.as_bytes())?;
    }
    if src.keys {
        for rel in key_files(src.data_dir) {
            let bytes = std::fs::read(src.data_dir.join(&rel))?;
            staging.put(&format!("keys/{}", rel.display()), &bytes)?;
        }
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        software: format!("tongban {}", env!("CARGO_PKG_VERSION")),
        node_id: src.node_id.to_owned(),
        created: src.created.clone(),
        snapshot,
        keys: src.keys,
        datasets,
        entries: staging.sums.clone(),
    };
    let tmp = out.with_extension("tmp");
    {
        let mut tar = tar::Builder::new(BufWriter::new(std::fs::File::create(&tmp)?));
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| invalid(e.to_string()))?;
        append(&mut tar, "manifest.json", json.len() as u64, &json[..])?;
        for (i, sum) in staging.sums.iter().enumerate() {
            let file = std::fs::File::open(staging.dir.join(i.to_string()))?;
            append(&mut tar, &sum.path, sum.bytes, file)?;
        }
        let file = tar.into_inner()?.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, out)?;
    Ok(manifest)
}

/// The configuration without the passwords a URL may hold
/// (`postgres://user:password@…`, `redis://:password@…`): a backup is not
/// where a password travels; the restore lists the URL to complete.
fn redact(config: &str) -> String {
    let mut out = String::with_capacity(config.len());
    for line in config.split_inclusive('\n') {
        match line.find("://") {
            Some(scheme) => {
                let rest = &line[scheme + 3..];
                match (rest.find('@'), rest.find(':')) {
                    (Some(at), Some(colon)) if colon < at => {
                        out.push_str(&line[..scheme + 3 + colon + 1]);
                        out.push_str("REDACTED");
                        out.push_str(&rest[at..]);
                    }
                    _ => out.push_str(line),
                }
            }
            None => out.push_str(line),
        }
    }
    out
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    size: u64,
    data: impl Read,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o600);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, path, data)
}

/// The audit log through `src.through`: events, checkpoints, meta.
fn write_audit(src: &Sources<'_>, staging: &mut Staging) -> Result<Snapshot, BackupError> {
    let (anchor_seq, anchor_hash) = src.audit.anchor()?;
    let mut part = staging.part("audit/events.bin")?;
    let mut events = 0;
    let mut last = anchor_seq;
    for item in src.audit.raw_events(anchor_seq + 1, src.through) {
        let (seq, stored) = item?;
        part.write_all(&seq.to_be_bytes())?;
        put_len(&mut part, &stored)?;
        events += 1;
        last = seq;
    }
    staging.done(part)?;
    if last != src.through {
        return Err(invalid(format!(
            "the audit log ends at {last}, before the snapshot point {}",
            src.through
        )));
    }
    let hash = match src.audit.get_with_hash(last)? {
        Some((_, h)) => hex(&h),
        None => hex(&anchor_hash),
    };
    let mut part = staging.part("audit/checkpoints.bin")?;
    let mut checkpoints = 0;
    for cp in src.audit.checkpoints()? {
        if cp.checkpoint.seq <= src.through {
            put_len(&mut part, &cp.encode())?;
            checkpoints += 1;
        }
    }
    staging.done(part)?;
    let meta = AuditMeta {
        anchor_seq,
        anchor_hash: hex(&anchor_hash),
        exported_through: src.audit.exported_through()?.min(src.through),
        prunes: src.audit.prune_records_by_seq()?,
    };
    let json = serde_json::to_vec_pretty(&meta).map_err(|e| invalid(e.to_string()))?;
    staging.put("audit/meta.json", &json)?;
    Ok(Snapshot {
        seq: last,
        hash,
        anchor_seq,
        events,
        checkpoints,
    })
}

/// Reads the manifest of the backup `file` and checks every entry against
/// it (present, in order, of its size and checksum, nothing else).
pub fn check(file: &Path) -> Result<Manifest, BackupError> {
    let mut archive = tar::Archive::new(BufReader::new(std::fs::File::open(file)?));
    let mut entries = archive.entries()?;
    let mut first = entries
        .next()
        .ok_or_else(|| invalid("the file is empty"))??;
    if first.path()?.to_str() != Some("manifest.json") {
        return Err(invalid(
            "the file does not begin with manifest.json: not a tongban backup",
        ));
    }
    let mut json = Vec::new();
    first.read_to_end(&mut json)?;
    let manifest: Manifest = serde_json::from_slice(&json)
        .map_err(|e| invalid(format!("manifest.json cannot be read: {e}")))?;
    if manifest.format != FORMAT {
        return Err(invalid("manifest.json is not a tongban backup's"));
    }
    if manifest.version > VERSION {
        return Err(invalid(format!(
            "the backup's layout is version {}, newer than this tongban reads ({VERSION}): restore with {}",
            manifest.version, manifest.software
        )));
    }
    let mut expected = manifest.entries.iter();
    for entry in entries {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let want = expected
            .next()
            .ok_or_else(|| invalid(format!("{path} is not in the manifest")))?;
        if want.path != path {
            return Err(invalid(format!(
                "{path} where the manifest has {}",
                want.path
            )));
        }
        let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut bytes = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = entry.read(&mut buf)?;
            if n == 0 {
                break;
            }
            digest.update(&buf[..n]);
            bytes += n as u64;
        }
        if bytes != want.bytes || hex(digest.finish().as_ref()) != want.sha256 {
            return Err(invalid(format!(
                "{path} does not match its checksum in the manifest: the backup is damaged"
            )));
        }
    }
    if let Some(missing) = expected.next() {
        return Err(invalid(format!(
            "{} is missing: the backup is cut short",
            missing.path
        )));
    }
    Ok(manifest)
}

/// Removes what an import or a backup stopped half-way left in the data
/// directory (`import-*.part`, `backup-*` files and staging directories):
/// called at start, when no request can be using them.
pub fn remove_leftovers(data_dir: &Path) {
    let Ok(list) = std::fs::read_dir(data_dir) else {
        return;
    };
    for entry in list.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = (name.starts_with("import-") && name.ends_with(".part"))
            || (name.starts_with("backup-")
                && [".tar", ".tmp", ".parts"].iter().any(|e| name.ends_with(e)));
        if !ours {
            continue;
        }
        let path = entry.path();
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match removed {
            Ok(()) => {
                tracing::info!(file = %path.display(), "removed what a stopped import or backup left");
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot remove what a stopped import or backup left");
            }
        }
    }
}

/// What a restore built.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    /// The new home.
    pub home: PathBuf,
    /// The backup's manifest.
    pub manifest: Manifest,
    /// Events in the restored log (after its anchor).
    pub events: u64,
    /// Its last event.
    pub head_seq: u64,
    /// Whether checkpoint signatures were verified (the keys were in the backup).
    pub signatures_verified: bool,
    /// What the operator still has to bring (TLS files, keys).
    pub missing: Vec<String>,
}

/// A path of the archive, safe to join under a directory.
fn relative(path: &str) -> Result<&Path, BackupError> {
    let p = Path::new(path);
    if p.components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
    {
        Ok(p)
    } else {
        Err(invalid(format!("{path}: not a plain relative path")))
    }
}

/// Builds a new home in `home` (absent or empty) from the backup `file`.
pub fn restore(file: &Path, home: &Path) -> Result<Restored, BackupError> {
    let manifest = check(file)?;
    if home.exists() && std::fs::read_dir(home)?.next().is_some() {
        return Err(invalid(format!(
            "{} is not empty: a restore builds a new home",
            home.display()
        )));
    }
    let data_dir = home.join("data");
    std::fs::create_dir_all(&data_dir)?;
    std::fs::create_dir_all(home.join("policies"))?;
    let db = crate::datadir::open_path(&data_dir).map_err(|e| invalid(e.to_string()))?;
    let store = AuditStore::open(&db, &data_dir)?;
    let mut archive = tar::Archive::new(BufReader::new(std::fs::File::open(file)?));
    let mut config = None;
    for entry in archive.entries()?.skip(1) {
        let entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let to = Destination {
            home,
            data_dir: &data_dir,
            db: &db,
            store: &store,
        };
        if let Some(text) = to.entry(&path, entry)? {
            config = Some(text);
        }
    }
    db.flush()?;
    std::fs::File::open(data_dir.join("db"))?.sync_all()?;
    drop(store);
    let store = AuditStore::open(&db, &data_dir)?;
    let signer = crate::audit::checkpoint::CheckpointSigner::open(&data_dir).ok();
    let report = store.verify(signer.as_ref().map(|s| s.keyring()).as_ref())?;
    if !report.ok() {
        return Err(invalid(format!(
            "the restored audit chain does not verify: {}",
            report
                .broken
                .as_ref()
                .map(|b| format!("event {}: {}", b.seq, b.problem))
                .unwrap_or_default()
        )));
    }
    let (head_seq, head_hash) = store.head()?;
    if head_seq != manifest.snapshot.seq || hex(&head_hash) != manifest.snapshot.hash {
        return Err(invalid(
            "the restored log does not end at the backup's snapshot point",
        ));
    }
    db.flush()?;
    let missing = write_config(home, config.as_deref(), &data_dir)?;
    Ok(Restored {
        home: home.to_owned(),
        events: report.checked,
        head_seq,
        signatures_verified: signer.is_some(),
        manifest,
        missing,
    })
}

/// Where a restore writes.
struct Destination<'a> {
    home: &'a Path,
    data_dir: &'a Path,
    db: &'a sled::Db,
    store: &'a AuditStore,
}

impl Destination<'_> {
    /// Writes one entry of the archive; the configuration's text is
    /// returned, not written (it is adjusted to the new home at the end).
    fn entry(&self, path: &str, mut entry: impl Read) -> Result<Option<String>, BackupError> {
        let (home, data_dir, db, store) = (self.home, self.data_dir, self.db, self.store);
        if let Some(name) = path.strip_prefix("policies/") {
            let to = home.join("policies").join(relative(name)?);
            if let Some(dir) = to.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::io::copy(&mut entry, &mut std::fs::File::create(to)?)?;
        } else if let Some(name) = path.strip_prefix("keys/") {
            // Only the keys a backup holds, never another file of the data
            // directory (its database above all).
            if !key_files_named().iter().any(|k| key_path_is(name, k)) {
                return Err(invalid(format!("{path}: not a key a backup holds")));
            }
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            let to = data_dir.join(relative(name)?);
            if let Some(dir) = to.parent() {
                std::fs::create_dir_all(dir)?;
            }
            crate::audit::pseudonym::write_private(&to, &bytes)?;
        } else if path == "config/tongban.toml" {
            let mut text = String::new();
            entry.read_to_string(&mut text)?;
            return Ok(Some(text));
        } else if let Some((_, name)) = path
            .strip_prefix("config/")
            .and_then(|n| CONFIG_FILES.iter().find(|(_, file)| *file == n))
        {
            std::io::copy(&mut entry, &mut std::fs::File::create(home.join(name))?)?;
        } else if let Some(name) = path
            .strip_prefix("data/")
            .and_then(|n| n.strip_suffix(".kv"))
        {
            let dataset =
                DatasetId::parse(name).map_err(|_| invalid(format!("{path}: not a dataset")))?;
            fill(
                &db.open_tree(format!("data/{dataset}"))?,
                &mut BufReader::new(entry),
            )?;
        } else if let Some(name) = path
            .strip_prefix("trees/")
            .and_then(|n| n.strip_suffix(".kv"))
        {
            let name = percent_encoding::percent_decode_str(name)
                .decode_utf8()
                .map_err(|_| invalid(format!("{path}: not a tree name")))?;
            if !copied_as_is(&name) {
                return Err(invalid(format!("{path}: not a tree a backup holds")));
            }
            fill(&db.open_tree(name.as_bytes())?, &mut BufReader::new(entry))?;
        } else if path == "audit/events.bin" {
            restore_events(store, &mut BufReader::new(entry))?;
        } else if path == "audit/checkpoints.bin" {
            let mut r = BufReader::new(entry);
            while let Some(bytes) = read_len(&mut r)? {
                let cp = SignedCheckpoint::decode(&bytes)
                    .ok_or_else(|| invalid("a checkpoint cannot be read"))?;
                store.restore_checkpoint(&cp)?;
            }
        } else if path == "audit/meta.json" {
            let meta: AuditMeta = serde_json::from_reader(entry)
                .map_err(|e| invalid(format!("audit/meta.json: {e}")))?;
            let mut hash = [0u8; 32];
            if !crate::domain::unhex(&meta.anchor_hash, &mut hash) {
                return Err(invalid("audit/meta.json: the anchor hash is not hex"));
            }
            store.restore_meta((meta.anchor_seq, hash), meta.exported_through, &meta.prunes)?;
        } else {
            return Err(invalid(format!("{path}: unknown entry")));
        }
        Ok(None)
    }
}

/// Inserts the length-prefixed pairs of `r` into `tree`.
fn fill(tree: &sled::Tree, r: &mut impl Read) -> Result<(), BackupError> {
    let mut batch = sled::Batch::default();
    let mut n = 0;
    while let Some(k) = read_len(r)? {
        let v = read_len(r)?.ok_or_else(|| invalid("a record is cut short"))?;
        batch.insert(k, v);
        n += 1;
        if n % BATCH == 0 {
            tree.apply_batch(std::mem::take(&mut batch))?;
        }
    }
    tree.apply_batch(batch)?;
    Ok(())
}

fn restore_events(store: &AuditStore, r: &mut impl Read) -> Result<(), BackupError> {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let mut seq = [0u8; 8];
        match r.read_exact(&mut seq) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e.into()),
        }
        let stored = read_len(r)?.ok_or_else(|| invalid("an event is cut short"))?;
        batch.push((u64::from_be_bytes(seq), stored));
        if batch.len() == BATCH {
            store.restore_events(std::mem::take(&mut batch))?;
        }
    }
    if !batch.is_empty() {
        store.restore_events(batch)?;
    }
    Ok(())
}

/// The files beside the configuration a backup holds: (section, key) of
/// `tongban.toml` that names it, and its name in the backup and in a
/// restored home.
pub const CONFIG_FILES: [((&str, &str), &str); 2] = [
    (("calendar", "file"), "calendar.toml"),
    (("alerts", "rules"), "anomaly.toml"),
];

/// Writes the restored home's `tongban.toml`: the backup's, with its data
/// and policy directories the new home's. What the configuration names
/// and the home lacks (TLS files, issuer keys) is listed.
fn write_config(
    home: &Path,
    text: Option<&str>,
    data_dir: &Path,
) -> Result<Vec<String>, BackupError> {
    let mut missing = Vec::new();
    if !data_dir.join(crate::audit::pseudonym::KEY_FILE).exists() {
        missing.push(format!(
            "data/{}: the resident pseudonym key (copy it from the original home; a new one would cut every earlier disclosure off from its resident)",
            crate::audit::pseudonym::KEY_FILE
        ));
    }
    let Some(text) = text else {
        missing.push("tongban.toml: the backup holds no configuration".into());
        return Ok(missing);
    };
    let mut table: toml::Table =
        toml::from_str(text).map_err(|e| invalid(format!("config/tongban.toml: {e}")))?;
    let standard = |key: &str, value: &str| table.get(key).and_then(|v| v.as_str()) == Some(value);
    let mut rewrite = !(standard("data_dir", "data") && standard("policies_dir", "policies"));
    table.insert("data_dir".into(), "data".into());
    table.insert("policies_dir".into(), "policies".into());
    // The calendar and the rules the backup holds are in the home, by their
    // own names.
    for ((section, key), name) in CONFIG_FILES {
        let Some(t) = table.get_mut(section).and_then(|v| v.as_table_mut()) else {
            continue;
        };
        if t.contains_key(key) && home.join(name).exists() {
            rewrite |= t.get(key).and_then(|v| v.as_str()) != Some(name);
            t.insert(key.into(), name.into());
        }
    }
    let text = if rewrite {
        toml::to_string(&table).map_err(|e| invalid(e.to_string()))?
    } else {
        text.to_owned()
    };
    if text.contains(":REDACTED@") {
        missing.push(
            "tongban.toml: a password in a URL (PostgreSQL, Redis) was left out of the backup (REDACTED): put it back, or give it through the environment".into(),
        );
    }
    std::fs::write(home.join("tongban.toml"), &text)?;
    match crate::config::Config::load(&home.join("tongban.toml")) {
        Ok(config) => {
            for file in config.files_named() {
                if !file.exists() {
                    missing.push(format!("{}: named by tongban.toml", file.display()));
                }
            }
        }
        Err(e) => missing.push(format!("tongban.toml: {e}")),
    }
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_stopped_import_or_backup_left_is_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for f in [
            "import-01ab.part",
            "backup-01ab.tar",
            "backup-01ab.tmp",
            "db",
            "pseudonym.key",
            "import-notes.txt",
        ] {
            std::fs::write(d.join(f), b"x").unwrap();
        }
        std::fs::create_dir(d.join("backup-01ab.parts")).unwrap();
        std::fs::write(d.join("backup-01ab.parts/0"), b"x").unwrap();
        remove_leftovers(d);
        let mut left: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["db", "import-notes.txt", "pseudonym.key"]);
    }

    #[test]
    fn a_backup_holds_no_password_and_restores_only_known_keys() {
        let config = "node_id = \"a\"\n[cluster]\npostgres_url = \"postgres://tongban:s3cret@db:5432/tongban\"\nredis_url = \"redis://:hunter2@cache:6379\"\nurl = \"https://example.org/x\"\n";
        let r = redact(config);
        assert!(!r.contains("s3cret") && !r.contains("hunter2"), "{r}");
        assert!(
            r.contains("postgres://tongban:REDACTED@db:5432/tongban"),
            "{r}"
        );
        assert!(r.contains("https://example.org/x"));
        for ok in [
            "pseudonym.key",
            "audit-checkpoint.key",
            "answer-keys/k1.pem",
            "audit-checkpoint-retired/old.key",
        ] {
            assert!(key_files_named().iter().any(|k| key_path_is(ok, k)), "{ok}");
        }
        for bad in [
            "db",
            "conf",
            "answer-keys/",
            "answer-keys/a/b",
            "answer-keysx/k",
            "../db",
        ] {
            assert!(
                !key_files_named().iter().any(|k| key_path_is(bad, k)),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_length_beyond_any_record_is_damage_not_an_allocation() {
        let mut bytes: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0];
        assert!(read_len(&mut bytes).is_err());
        let mut bytes: &[u8] = &[0, 0, 0, 2, b'o', b'k'];
        assert_eq!(read_len(&mut bytes).unwrap().unwrap(), b"ok");
        assert!(read_len(&mut bytes).unwrap().is_none());
    }
}
