//! Exporting a range of the log with the signed checkpoints that cover it,
//! and verifying such an export offline, with nothing but the public key.
//!
//! NDJSON: a `header` line (node, suite, anchor: the sequence number and hash
//! of the event before the range), then `checkpoint` lines, then one `event`
//! line per event. Every event line carries `canonical` (base64 of the exact
//! bytes that were hashed) and `hash`; the readable members are derived from
//! the canonical bytes and the verifier checks that they agree.
//! CSV: one row per record with a `record` column (`event` or `checkpoint`)
//! and the same `canonical` column; the anchor is in the first event's
//! `prev_hash`.

use std::io::BufRead;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Serialize;
use serde_json::{Value, json};
use time::UtcOffset;

use super::chain::{ChainVerifier, VerifyReport};
use super::checkpoint::{Keyring, SignedCheckpoint};
use super::event::{Event, Hash, suite_of};
use super::query::{event_json, format_time};
use super::suite::Suite;
use crate::domain::hex;

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// Newline-delimited JSON.
    Ndjson,
    /// Comma-separated values with a header row.
    Csv,
}

/// CSV columns, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "record",
    "seq",
    "time",
    "node",
    "request_id",
    "kind",
    "operation",
    "consumer",
    "subject",
    "roles",
    "cert_fingerprint",
    "source",
    "dataset",
    "resident",
    "purpose",
    "case_ref",
    "fields",
    "decision",
    "reason",
    "grant",
    "policy_version",
    "status",
    "latency_us",
    "detail",
    "prev_hash",
    "hash",
    "canonical",
    "suite",
];

/// The suites of the epochs an export of events from `first` on holds: the
/// first event's, then the new suite of every checkpoint in the range that
/// changes suite.
pub fn export_suites<'a>(
    first: Option<&Event>,
    checkpoints: impl IntoIterator<Item = &'a SignedCheckpoint>,
) -> Vec<Suite> {
    let mut suites: Vec<Suite> = first.map(|e| suite_of(e.version)).into_iter().collect();
    for cp in checkpoints {
        if cp.checkpoint.previous.is_some()
            && let Some(s) = cp.checkpoint.suite()
            && suites.last() != Some(&s)
        {
            suites.push(s);
        }
    }
    suites
}

/// The header line of an NDJSON export: the node, the suite of its first
/// event (`suite`) and of every epoch in it (`suites`), the active
/// checkpoint key, the UTC offset of the readable times, and the anchor.
pub fn header_line(
    node: &str,
    anchor: (u64, Hash),
    offset: UtcOffset,
    key_id: &str,
    suites: &[Suite],
) -> String {
    let names: Vec<&str> = suites.iter().map(|s| s.name()).collect();
    let v = json!({
        "type": "header",
        "format": "tongban-audit-export",
        "version": 1,
        "node": node,
        "suite": names.first().copied().unwrap_or(Suite::default().name()),
        "suites": names,
        "key_id": key_id,
        "utc_offset": offset
            .format(time::macros::format_description!("[offset_hour sign:mandatory]:[offset_minute]:[offset_second]"))
            .unwrap_or_default(),
        "anchor": {"seq": anchor.0, "hash": hex(&anchor.1)},
    });
    format!("{v}\n")
}

/// One checkpoint as an NDJSON line or CSV row.
pub fn checkpoint_record(cp: &SignedCheckpoint, offset: UtcOffset, format: ExportFormat) -> String {
    let c = &cp.checkpoint;
    let encoded = B64.encode(cp.encode());
    match format {
        ExportFormat::Ndjson => {
            let v = json!({
                "type": "checkpoint", "seq": c.seq, "head_hash": hex(&c.head_hash), "time": format_time(c.time_ms, offset),
                "node": c.node, "suite": c.suite, "key_id": c.key_id, "signature": B64.encode(&cp.signature),
                "previous": c.previous.as_ref().map(|p| json!({"suite": p.suite, "key_id": p.key_id})),
                "previous_signature": cp.previous_signature.as_ref().map(|s| B64.encode(s)),
                "encoded": encoded,
            });
            format!("{v}\n")
        }
        ExportFormat::Csv => {
            let mut row = vec![String::new(); CSV_COLUMNS.len()];
            row[0] = "checkpoint".into();
            row[1] = c.seq.to_string();
            row[2] = format_time(c.time_ms, offset);
            row[3] = c.node.clone();
            row[25] = hex(&c.head_hash);
            row[26] = encoded;
            row[27] = c.suite.clone();
            csv_line(&row)
        }
    }
}

/// One event as an NDJSON line or CSV row.
pub fn event_record(event: &Event, hash: &Hash, offset: UtcOffset, format: ExportFormat) -> String {
    let canonical = B64.encode(event.canonical());
    let mut v = event_json(event, hash, offset);
    match format {
        ExportFormat::Ndjson => {
            if let Value::Object(m) = &mut v {
                m.insert("type".into(), json!("event"));
                m.insert("canonical".into(), json!(canonical));
            }
            format!("{v}\n")
        }
        ExportFormat::Csv => {
            let text = |k: &str| match &v[k] {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                Value::Array(a) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(";"),
                Value::Object(o) => format!(
                    "{}@{}",
                    o.get("id").and_then(Value::as_str).unwrap_or(""),
                    // Shown as written; the chain, not this cell, is what is verified.
                    o.get("version")
                        .map(ToString::to_string)
                        .unwrap_or_default()
                ),
                other => other.to_string(),
            };
            let mut row: Vec<String> = CSV_COLUMNS.iter().map(|c| text(c)).collect();
            row[0] = "event".into();
            row[26] = canonical;
            row[27] = suite_of(event.version).name().to_owned();
            csv_line(&row)
        }
    }
}

/// The CSV header row.
pub fn csv_header() -> String {
    let row: Vec<String> = CSV_COLUMNS.iter().map(|c| (*c).to_owned()).collect();
    csv_line(&row)
}

fn csv_line(fields: &[String]) -> String {
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    let _ = w.write_record(fields.iter().map(|f| spreadsheet_safe(f).into_owned()));
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// A CSV cell as a spreadsheet shows it and never runs it: a cell starting
/// with `=`, `+`, `-`, `@`, a tab or a carriage return (a formula to Excel,
/// WPS and LibreOffice; caller-chosen strings such as a token's `sub` or a
/// case reference reach these files) gets a leading `'`. Every CSV the
/// gateway writes (exports, disclosure reports) passes its cells through
/// this; the export verifier reads such a cell without the `'`.
pub fn spreadsheet_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => std::borrow::Cow::Owned(format!("'{cell}")),
        _ => std::borrow::Cow::Borrowed(cell),
    }
}

/// A cell as written before [`spreadsheet_safe`] made it safe.
fn unsafe_cell(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if spreadsheet_safe(rest).len() != rest.len() => rest,
        _ => cell,
    }
}

/// Writes a whole export of `[lo, hi]` (with the checkpoints in it) to `out`.
pub fn write_export(
    store: &super::store::AuditStore,
    range: Option<(u64, u64)>,
    format: ExportFormat,
    offset: UtcOffset,
    node: &str,
    key_id: &str,
    out: &mut impl std::io::Write,
) -> Result<(), super::store::AuditError> {
    let checkpoints = store.checkpoints()?;
    let Some((lo, hi)) = range else {
        if format == ExportFormat::Csv {
            out.write_all(csv_header().as_bytes())?;
        }
        return Ok(());
    };
    let first = store.get(lo)?;
    let prev = first.as_ref().map_or([0; 32], |e| e.prev_hash);
    let in_range = || {
        checkpoints
            .iter()
            .filter(|c| (lo..=hi).contains(&c.checkpoint.seq))
    };
    match format {
        ExportFormat::Ndjson => {
            let suites = export_suites(first.as_ref(), in_range());
            out.write_all(header_line(node, (lo - 1, prev), offset, key_id, &suites).as_bytes())?;
        }
        ExportFormat::Csv => out.write_all(csv_header().as_bytes())?,
    }
    for cp in in_range() {
        out.write_all(checkpoint_record(cp, offset, format).as_bytes())?;
    }
    for item in store.raw_events(lo, hi) {
        let (seq, value) = item?;
        let (event, hash, _) =
            Event::open(&value).map_err(|e| super::store::AuditError::Corrupt {
                seq,
                message: e.to_string(),
            })?;
        out.write_all(event_record(&event, &hash, offset, format).as_bytes())?;
    }
    store.mark_exported(lo, hi)?;
    Ok(())
}

/// The result of verifying an export offline.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    /// The chain check over the exported range.
    pub chain: VerifyReport,
    /// The node named by the export.
    pub node: Option<String>,
    /// The suite of the export's first epoch (see `chain.epochs` for all).
    pub suite: String,
    /// Events after the last checkpoint, not covered by a signature.
    pub uncovered_tail: u64,
    /// Lines or rows that are not part of the format.
    pub problems: Vec<String>,
}

impl ExportReport {
    /// Whether the export verified: intact chain, every checkpoint signed, nothing foreign.
    pub fn ok(&self) -> bool {
        self.chain.ok() && self.problems.is_empty()
    }
}

/// Verifies an export (NDJSON or CSV, detected) with the checkpoint public
/// keys (Ed25519 and/or SM2). An export of a cluster holds one chain per
/// node (NDJSON: a section from each header line on; CSV: the rows of each
/// node), each verified on its own: one report per chain, in file order.
pub fn verify_export(
    reader: impl BufRead,
    public_key: &Keyring,
) -> Result<Vec<ExportReport>, std::io::Error> {
    let mut lines = reader.lines().peekable();
    let first = match lines.peek() {
        Some(Ok(l)) => l.clone(),
        Some(Err(_)) => {
            return Err(lines
                .next()
                .and_then(Result::err)
                .unwrap_or_else(|| std::io::Error::other("read")));
        }
        None => String::new(),
    };
    let mut reports = if first.trim_start().starts_with('{') {
        verify_ndjson(lines, public_key)?
    } else {
        let text: String = lines.collect::<Result<Vec<_>, _>>()?.join("\n");
        verify_csv(&text, public_key)
    };
    // One chain per node: a node twice could hide the events between.
    let mut seen = std::collections::HashSet::new();
    for r in &mut reports {
        if let Some(node) = &r.node
            && !seen.insert(node.clone())
        {
            r.problems
                .push(format!("node {node} has more than one section"));
        }
    }
    Ok(reports)
}

/// The readable form of an event next to its canonical bytes.
enum Shown<'a> {
    Json(&'a Value),
    Csv(&'a csv::StringRecord),
}

fn same_instant(a: &str, b: &str) -> bool {
    let parse = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
    };
    parse(a).is_some() && parse(a) == parse(b)
}

struct Walk<'k> {
    verifier: Option<ChainVerifier>,
    checkpoints: Vec<SignedCheckpoint>,
    next_cp: usize,
    key: &'k Keyring,
    /// The suites the header names, to compare with what the events are.
    header_suites: Option<Vec<String>>,
    offset: UtcOffset,
    broken: Option<super::chain::BrokenLink>,
    problems: Vec<String>,
}

impl<'k> Walk<'k> {
    fn new(key: &'k Keyring) -> Self {
        Walk {
            verifier: None,
            checkpoints: Vec::new(),
            next_cp: 0,
            key,
            header_suites: None,
            offset: UtcOffset::UTC,
            broken: None,
            problems: Vec::new(),
        }
    }

    fn event(&mut self, seq: u64, canonical: &str, hash: &str, shown: Shown<'_>) {
        if self.broken.is_some() {
            return;
        }
        let Ok(bytes) = B64.decode(canonical) else {
            self.problems
                .push(format!("event {seq}: canonical is not base64"));
            return;
        };
        let Some(recorded) = unhex32(hash) else {
            self.problems
                .push(format!("event {seq}: hash is not 32 bytes of hex"));
            return;
        };
        let mut stored = bytes.clone();
        stored.extend_from_slice(&recorded);
        if self.verifier.is_none() {
            // No header anchor (CSV): the first event's own prev_hash anchors the range.
            let anchor = Event::open(&stored)
                .map(|(e, _, _)| (seq.saturating_sub(1), e.prev_hash))
                .unwrap_or((0, [0; 32]));
            self.verifier = Some(ChainVerifier::from_anchor(anchor.0, anchor.1));
        }
        let Some(v) = self.verifier.as_mut() else {
            return;
        };
        if let Err(b) = v.check(seq, &stored) {
            self.broken = Some(b);
            return;
        }
        if let Ok((event, _, _)) = Event::open(&stored) {
            match shown {
                Shown::Json(shown) => {
                    let derived = event_json(&event, &recorded, self.offset);
                    if let (Value::Object(d), Value::Object(s)) = (&derived, shown) {
                        for (k, val) in s {
                            if k != "type" && k != "canonical" && d.get(k) != Some(val) {
                                self.problems.push(format!(
                                    "event {seq}: \"{k}\" does not match the canonical bytes"
                                ));
                            }
                        }
                    }
                }
                Shown::Csv(row) => {
                    let line = event_record(&event, &recorded, UtcOffset::UTC, ExportFormat::Csv);
                    let mut reader = csv::ReaderBuilder::new()
                        .has_headers(false)
                        .from_reader(line.as_bytes());
                    if let Some(Ok(derived)) = reader.records().next() {
                        for (i, name) in CSV_COLUMNS.iter().enumerate() {
                            if *name == "suite" && row.get(i).is_none() {
                                // Exports from before the suite column.
                                continue;
                            }
                            // Exports from before cells were made safe hold them as they were.
                            let (have, want) = (
                                unsafe_cell(row.get(i).unwrap_or("")),
                                unsafe_cell(derived.get(i).unwrap_or("")),
                            );
                            let same = if *name == "time" {
                                same_instant(have, want)
                            } else {
                                have == want
                            };
                            if !same {
                                self.problems.push(format!(
                                    "event {seq}: \"{name}\" does not match the canonical bytes"
                                ));
                            }
                        }
                    }
                }
            }
        }
        while let Some(cp) = self.checkpoints.get(self.next_cp) {
            if cp.checkpoint.seq > seq {
                break;
            }
            self.next_cp += 1;
            if cp.checkpoint.seq == seq {
                if let Err(b) = v.check_checkpoint(cp, Some(self.key)) {
                    self.broken = Some(b);
                    return;
                }
            }
        }
    }

    fn checkpoint(&mut self, encoded: &str) {
        match B64
            .decode(encoded)
            .ok()
            .and_then(|b| SignedCheckpoint::decode(&b))
        {
            Some(cp) => self.checkpoints.push(cp),
            None => self.problems.push("a checkpoint cannot be decoded".into()),
        }
    }

    fn finish(mut self, node: Option<String>) -> ExportReport {
        self.checkpoints.sort_by_key(|c| c.checkpoint.seq);
        // No header line: walked from the genesis, so the first event names the gap.
        let verifier = self.verifier.unwrap_or_default();
        let head = verifier.head();
        let last_cp = verifier.report(None).last_checkpoint.unwrap_or(0);
        let mut broken = self.broken;
        if broken.is_none()
            && let Some(cp) = self.checkpoints.iter().find(|c| c.checkpoint.seq > head)
        {
            broken = Some(super::chain::BrokenLink {
                seq: head + 1,
                problem: format!(
                    "a signed checkpoint covers event {} but the export ends at {head} (events removed from the end)",
                    cp.checkpoint.seq
                ),
            });
        }
        if broken.is_none() {
            for cp in &self.checkpoints {
                if let Err(problem) = cp.check(self.key) {
                    broken = Some(super::chain::BrokenLink {
                        seq: cp.checkpoint.seq,
                        problem: problem.to_string(),
                    });
                    break;
                }
            }
        }
        let chain = verifier.report(broken);
        let found: Vec<String> = chain.epochs.iter().map(|e| e.suite.clone()).collect();
        if let Some(named) = &self.header_suites
            && chain.broken.is_none()
            && !found.is_empty()
            && *named != found
        {
            self.problems.push(format!(
                "the header names suites {named:?} but the events are {found:?}"
            ));
        }
        ExportReport {
            suite: found
                .first()
                .cloned()
                .unwrap_or_else(|| Suite::default().name().to_owned()),
            chain,
            node,
            uncovered_tail: head.saturating_sub(last_cp),
            problems: self.problems,
        }
    }
}

fn verify_ndjson(
    lines: impl Iterator<Item = std::io::Result<String>>,
    key: &Keyring,
) -> Result<Vec<ExportReport>, std::io::Error> {
    let mut reports = Vec::new();
    let mut walk = Walk::new(key);
    let mut node = None;
    let mut started = false;
    for (i, line) in lines.enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            walk.problems.push(format!("line {}: not JSON", i + 1));
            continue;
        };
        match v["type"].as_str() {
            Some("header") => {
                if started {
                    // The next node's chain.
                    reports.push(std::mem::replace(&mut walk, Walk::new(key)).finish(node.take()));
                }
                started = true;
                node = v["node"].as_str().map(str::to_owned);
                if v["suite"].as_str().and_then(Suite::parse).is_none() {
                    walk.problems.push(format!(
                        "suite {} is not supported by this verifier",
                        v["suite"]
                    ));
                }
                // Exports from before suites could change name one suite only.
                walk.header_suites = Some(match v["suites"].as_array() {
                    Some(list) => list
                        .iter()
                        // A suite that is not text names no suite: its checkpoints then fail.
                        .map(|s| s.as_str().unwrap_or_default().to_owned())
                        .collect(),
                    None => vec![v["suite"].as_str().unwrap_or_default().to_owned()],
                });
                walk.offset = v["utc_offset"]
                    .as_str()
                    .and_then(|o| {
                        UtcOffset::parse(
                            o,
                            time::macros::format_description!(
                                "[offset_hour sign:mandatory]:[offset_minute]:[offset_second]"
                            ),
                        )
                        .ok()
                    })
                    .unwrap_or(UtcOffset::UTC);
                let seq = v["anchor"]["seq"].as_u64().unwrap_or(0);
                let hash = v["anchor"]["hash"]
                    .as_str()
                    .and_then(unhex32)
                    .unwrap_or([0; 32]);
                walk.verifier = Some(ChainVerifier::from_anchor(seq, hash));
            }
            Some("checkpoint") => {
                started = true;
                walk.checkpoint(v["encoded"].as_str().unwrap_or(""));
            }
            Some("event") => {
                started = true;
                if walk.verifier.is_none() {
                    walk.problems.push("events come before any header".into());
                }
                if let (Some(n), Some(shown)) = (&node, v["node"].as_str())
                    && n != shown
                {
                    walk.problems.push(format!(
                        "line {}: an event of node {shown} in the section of node {n}",
                        i + 1
                    ));
                }
                let seq = v["seq"].as_u64().unwrap_or(0);
                walk.checkpoints.sort_by_key(|c| c.checkpoint.seq);
                walk.event(
                    seq,
                    v["canonical"].as_str().unwrap_or(""),
                    v["hash"].as_str().unwrap_or(""),
                    Shown::Json(&v),
                );
            }
            _ => walk
                .problems
                .push(format!("line {}: unknown record type", i + 1)),
        }
    }
    reports.push(walk.finish(node));
    Ok(reports)
}

fn verify_csv(text: &str, key: &Keyring) -> Vec<ExportReport> {
    // Rows per node, in the order the nodes first appear.
    let mut order: Vec<String> = Vec::new();
    let mut rows: std::collections::HashMap<String, Vec<csv::StringRecord>> =
        std::collections::HashMap::new();
    let mut problems = Vec::new();
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    for (i, row) in reader.records().enumerate() {
        let Ok(row) = row else {
            problems.push(format!("row {}: not CSV", i + 2));
            continue;
        };
        match row.get(0) {
            Some("checkpoint" | "event") => {
                // A row without a node is walked as node "", whose chain it then breaks.
                let node = row.get(3).unwrap_or_default().to_owned();
                if !rows.contains_key(&node) {
                    order.push(node.clone());
                }
                rows.entry(node).or_default().push(row);
            }
            _ => problems.push(format!("row {}: unknown record type", i + 2)),
        }
    }
    if order.is_empty() {
        order.push(String::new());
    }
    let mut reports = Vec::new();
    for node in order {
        let mut walk = Walk::new(key);
        walk.problems = std::mem::take(&mut problems);
        let mut events = Vec::new();
        // `order` lists the nodes of `rows`, each once.
        for row in rows.remove(&node).unwrap_or_default() {
            if row.get(0) == Some("checkpoint") {
                walk.checkpoint(unsafe_cell(row.get(26).unwrap_or("")));
            } else {
                let seq = row.get(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                events.push((seq, row));
            }
        }
        walk.checkpoints.sort_by_key(|c| c.checkpoint.seq);
        for (seq, row) in &events {
            walk.event(
                *seq,
                unsafe_cell(row.get(26).unwrap_or("")),
                unsafe_cell(row.get(25).unwrap_or("")),
                Shown::Csv(row),
            );
        }
        let named = (!node.is_empty() && !events.is_empty()).then_some(node);
        reports.push(walk.finish(named));
    }
    reports
}

fn unhex32(s: &str) -> Option<Hash> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
