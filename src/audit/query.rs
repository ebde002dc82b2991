//! Reading the audit log for privacy officers: search with filters and
//! cursor pagination (newest first), per-resident disclosure reports, and
//! daily statistics with anomaly flags. Shared by the API and the CLI.
//!
//! A search by resident walks the exact pseudonym index; any other search
//! walks blocks newest first and skips every block whose summary rules it out.

use serde::Serialize;
use serde_json::{Value, json};
use time::{OffsetDateTime, UtcOffset};

use super::blocks::{block_of, block_range};
use super::event::{Event, EventKind, Hash, Outcome};
pub use super::filter::EventFilter;
use super::store::{AuditError, AuditStore};
use crate::domain::hex;

/// One page of results, newest first.
#[derive(Debug)]
pub struct Page {
    /// The events with their hashes.
    pub events: Vec<(Event, Hash)>,
    /// Pass as `before` to get the next page; `None` when there is no more.
    pub next_before: Option<u64>,
}

/// Blocks older than this before `from` are assumed to hold nothing newer:
/// events are timed at arrival and appended at decision, never this far apart.
const TIME_SLACK_MS: i64 = 10 * 60 * 1000;

/// Searches events with `seq < before`, newest first, up to `limit`.
pub fn search(
    store: &AuditStore,
    filter: &EventFilter,
    before: Option<u64>,
    limit: usize,
) -> Result<Page, AuditError> {
    let limit = limit.max(1);
    let (head, _) = store.head()?;
    let upper = before.unwrap_or(u64::MAX).min(head.saturating_add(1));
    let mut events = Vec::with_capacity(limit.min(1024));
    let mut more = false;
    let mut take = |event: Event, hash: Hash| {
        if events.len() == limit {
            more = true;
            return false;
        }
        events.push((event, hash));
        true
    };
    if let Some(p) = &filter.resident {
        for seq in store.seqs_for_resident(p, upper) {
            let seq = seq?;
            if let Some((event, hash)) = store.get_with_hash(seq)? {
                if filter.matches(&event) && !take(event, hash) {
                    break;
                }
            }
        }
    } else if let (Some(case_ref), Some(consumer)) = (&filter.case_ref, &filter.consumer) {
        // A department's case: its exact index, newest first.
        for seq in store.seqs_for_case(consumer, case_ref)?.into_iter().rev() {
            if seq >= upper {
                continue;
            }
            if let Some((event, hash)) = store.get_with_hash(seq)? {
                if filter.matches(&event) && !take(event, hash) {
                    break;
                }
            }
        }
    } else if upper > 1 {
        let mut block = block_of(upper - 1);
        'blocks: loop {
            let summary = store.block(block)?;
            if let (Some(s), Some(from)) = (&summary, filter.from_ms) {
                if s.max_time_ms < from - TIME_SLACK_MS {
                    break;
                }
            }
            if summary.as_ref().is_none_or(|s| s.may_match(filter)) {
                let (lo, hi) = block_range(block);
                for item in store.events_desc(lo, hi.min(upper - 1)) {
                    let (_, event, hash) = item?;
                    if filter.matches(&event) && !take(event, hash) {
                        break 'blocks;
                    }
                }
            }
            if block == 0 {
                break;
            }
            block -= 1;
        }
    }
    let next_before = if more {
        events.last().map(|(e, _)| e.seq)
    } else {
        None
    };
    Ok(Page {
        events,
        next_before,
    })
}

/// The contiguous range of sequence numbers from the first event at or after
/// `from` to the last at or before `to`.
pub fn seq_range(
    store: &AuditStore,
    from: Option<i64>,
    to: Option<i64>,
    covered: u64,
) -> Result<Option<(u64, u64)>, AuditError> {
    let (head, _) = store.head()?;
    let head = head.min(covered);
    let (anchor, _) = store.anchor()?;
    if head <= anchor {
        return Ok(None);
    }
    let hi = match to {
        None => head,
        Some(to) => {
            let page = search(
                store,
                &EventFilter {
                    to_ms: Some(to),
                    ..EventFilter::default()
                },
                Some(head + 1),
                1,
            )?;
            match page.events.first() {
                Some((e, _)) => e.seq,
                None => return Ok(None),
            }
        }
    };
    let lo = match from {
        None => anchor + 1,
        Some(from) => {
            // The oldest event at or after `from`: walk pages newest first.
            let filter = EventFilter {
                from_ms: Some(from),
                ..EventFilter::default()
            };
            let mut lo = None;
            let mut before = Some(hi + 1);
            while let Some(b) = before {
                let page = search(store, &filter, Some(b), 4096)?;
                if let Some((e, _)) = page.events.last() {
                    lo = Some(e.seq);
                }
                before = page.next_before;
            }
            match lo {
                Some(lo) => lo,
                None => return Ok(None),
            }
        }
    };
    Ok((lo <= hi).then_some((lo, hi)))
}

/// `from`/`to`: RFC 3339, or a day `YYYY-MM-DD` in the gateway's calendar
/// (from its first millisecond, or to its last).
pub fn parse_time(s: &str, offset: UtcOffset, end_of_day: bool) -> Result<i64, &'static str> {
    let ms =
        |t: OffsetDateTime| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
    if let Ok(t) = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok(ms(t));
    }
    let day = time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
        .map_err(|_| "expected a date YYYY-MM-DD or an RFC 3339 time")?;
    let t = time::PrimitiveDateTime::new(day, time::Time::MIDNIGHT).assume_offset(offset);
    Ok(if end_of_day {
        ms(t) + 86_400_000 - 1
    } else {
        ms(t)
    })
}

/// An event as the API shows it.
pub fn event_json(event: &Event, hash: &Hash, offset: UtcOffset) -> Value {
    let b = &event.body;
    json!({
        "seq": event.seq,
        "time": format_time(b.time_ms, offset),
        "node": event.node,
        "request_id": b.request_id,
        "kind": b.kind,
        "operation": b.operation,
        "consumer": b.dept,
        "subject": b.subject,
        "roles": b.roles,
        "cert_fingerprint": b.cert_fingerprint.map(|f| hex(&f)),
        "source": b.source,
        "dataset": b.dataset,
        "resident": b.resident.map(|r| hex(&r)),
        "purpose": b.purpose,
        "case_ref": b.case_ref,
        "fields": b.fields,
        "decision": b.outcome,
        "reason": b.reason,
        "grant": b.grant.as_ref().map(|(id, v)| json!({"id": id, "version": v})),
        "policy_version": b.policy_version,
        "status": b.status,
        "latency_us": b.latency_us,
        "detail": b.detail,
        "proof": b.proof.map(|p| hex(&p)),
        "prev_hash": hex(&event.prev_hash),
        "hash": hex(hash),
    })
}

/// RFC 3339 in the gateway's calendar, to the millisecond.
pub fn format_time(ms: i64, offset: UtcOffset) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .to_offset(offset);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// One time a resident's data left the gateway.
#[derive(Debug, Clone, Serialize)]
pub struct Disclosure {
    /// The node whose chain holds the event.
    pub node: String,
    /// The audit event (in that node's chain).
    pub seq: u64,
    /// When, ms since the epoch (for ordering).
    #[serde(skip)]
    pub time_ms: i64,
    /// When.
    pub time: String,
    /// Which department.
    pub consumer: String,
    /// Which person or system.
    pub subject: String,
    /// Which dataset.
    pub dataset: String,
    /// For what purpose.
    pub purpose: String,
    /// Under which case.
    pub case_ref: Option<String>,
    /// Which fields.
    pub fields: Vec<String>,
    /// Under which grant and version.
    pub grant: Option<String>,
    /// Which operation.
    pub operation: String,
    /// The hash (hex) of the signed answer issued with it, if one was.
    pub proof: Option<String>,
}

/// Every disclosure of one resident's data, newest first.
pub fn disclosures(
    store: &AuditStore,
    pseudonym: &[u8; 16],
    offset: UtcOffset,
) -> Result<Vec<Disclosure>, AuditError> {
    let mut out = Vec::new();
    for seq in store.seqs_for_resident(pseudonym, u64::MAX) {
        let Some(e) = store.get(seq?)? else { continue };
        out.extend(Disclosure::of(&e, offset));
    }
    Ok(out)
}

impl Disclosure {
    /// The disclosure an event records, if it records one (an allowed query
    /// that let fields leave).
    pub fn of(e: &Event, offset: UtcOffset) -> Option<Self> {
        let b = &e.body;
        if b.kind != EventKind::Query || b.outcome != Outcome::Allow || b.fields.is_empty() {
            return None;
        }
        // An allowed query records its department, subject, dataset and
        // purpose before its decision, so none of these is empty here.
        Some(Self {
            node: e.node.clone(),
            seq: e.seq,
            time_ms: b.time_ms,
            time: format_time(b.time_ms, offset),
            consumer: b.dept.as_deref().unwrap_or_default().to_owned(),
            subject: b.subject.as_deref().unwrap_or_default().to_owned(),
            dataset: b.dataset.as_deref().unwrap_or_default().to_owned(),
            purpose: b.purpose.as_deref().unwrap_or_default().to_owned(),
            case_ref: b.case_ref.clone(),
            fields: b.fields.iter().map(ToString::to_string).collect(),
            grant: b.grant.as_ref().map(|(id, v)| format!("{id}@{v}")),
            operation: b.operation.to_string(),
            proof: b.proof.map(|p| hex(&p)),
        })
    }
}

/// Every event of this node's log that matches `filter`, newest first, a
/// page at a time (the local twin of the cluster's `scan`).
pub fn scan(
    store: &AuditStore,
    filter: &EventFilter,
    mut each: impl FnMut(&Event),
) -> Result<(), AuditError> {
    let mut before = None;
    loop {
        let page = search(store, filter, before, 4096)?;
        for (e, _) in &page.events {
            each(e);
        }
        match page.next_before {
            Some(b) => before = Some(b),
            None => return Ok(()),
        }
    }
}
