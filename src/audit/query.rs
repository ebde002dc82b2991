//! Reading the audit log for privacy officers: search with filters and
//! cursor pagination (newest first), per-resident disclosure reports, and
//! daily statistics with anomaly flags. Shared by the API and the CLI.
//!
//! A search by resident walks the exact pseudonym index; any other search
//! walks blocks newest first and skips every block whose summary rules it out.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::{Value, json};
use time::{OffsetDateTime, UtcOffset, Weekday};

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

/// Counts per day and the unusual patterns found.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Per local day: totals and counts by consumer, dataset, purpose and decision.
    pub days: BTreeMap<String, DayStats>,
    /// Unusual patterns, each with the events behind it.
    pub flags: Vec<Flag>,
}

/// Counts of one day.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DayStats {
    /// Events.
    pub total: u64,
    /// By consumer department.
    pub by_consumer: BTreeMap<String, u64>,
    /// By dataset.
    pub by_dataset: BTreeMap<String, u64>,
    /// By purpose.
    pub by_purpose: BTreeMap<String, u64>,
    /// By decision.
    pub by_decision: BTreeMap<String, u64>,
    /// By node whose chain holds the events (one on a single node).
    pub by_node: BTreeMap<String, u64>,
    /// By the grant that decided.
    pub by_grant: BTreeMap<String, u64>,
    /// Distinct cases (department and case reference) named.
    pub cases: u64,
    #[serde(skip)]
    case_set: std::collections::BTreeSet<String>,
}

/// An unusual pattern.
#[derive(Debug, Clone, Serialize)]
pub struct Flag {
    /// `volume_spike`, `denial_burst` or `off_hours`.
    pub kind: &'static str,
    /// Whose.
    pub consumer: Option<String>,
    /// Whose.
    pub subject: Option<String>,
    /// Which day.
    pub day: String,
    /// What was seen.
    pub detail: String,
    /// The sequence numbers of the events behind it (at most 100), in the
    /// chains `refs` names.
    pub events: Vec<u64>,
    /// The events behind it: node and sequence number (at most 100).
    pub refs: Vec<EventRef>,
}

/// Thresholds for the anomaly flags.
#[derive(Debug, Clone)]
pub struct FlagRules {
    /// A subject's lookups in a day above `spike_factor ×` its daily median over the history window…
    pub spike_factor: u64,
    /// …and at least this many.
    pub spike_min: u64,
    /// Days of history before `from` to compare with.
    pub history_days: i64,
    /// Denials by one caller within `burst_window_secs` that make a burst.
    pub burst_denials: usize,
    /// The burst window.
    pub burst_window_secs: i64,
    /// Working hours (local), `[start, end)`; weekends are outside.
    pub working_hours: (u8, u8),
}

impl Default for FlagRules {
    fn default() -> Self {
        Self {
            spike_factor: 3,
            spike_min: 50,
            history_days: 30,
            burst_denials: 10,
            burst_window_secs: 300,
            working_hours: (8, 20),
        }
    }
}

/// Statistics over `[from_ms, to_ms]` of one node's log.
pub fn stats(
    store: &AuditStore,
    (from_ms, to_ms): (i64, i64),
    owner: Option<&str>,
    offset: UtcOffset,
    rules: &FlagRules,
) -> Result<Stats, AuditError> {
    let mut builder = StatsBuilder::new(from_ms, offset, rules);
    let mut filter = builder.window(to_ms);
    filter.owner = owner.map(str::to_owned);
    scan(store, &filter, |e| builder.add(e))?;
    Ok(builder.finish())
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

/// One event of one node's chain.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct EventRef {
    /// The node.
    pub node: String,
    /// Its sequence number there.
    pub seq: u64,
}

impl EventRef {
    fn of(e: &Event) -> Self {
        Self {
            node: e.node.clone(),
            seq: e.seq,
        }
    }
}

/// Statistics gathered one event at a time, in any order (one node's log,
/// or the cluster's central copy).
#[derive(Debug)]
pub struct StatsBuilder<'r> {
    from_ms: i64,
    offset: UtcOffset,
    rules: &'r FlagRules,
    days: BTreeMap<String, DayStats>,
    /// (subject key, day) → allowed disclosures
    lookups: HashMap<(String, String), Vec<EventRef>>,
    history: HashMap<String, BTreeMap<String, u64>>,
    denials: HashMap<String, Vec<(i64, EventRef)>>,
    off_hours: BTreeMap<(String, String), Vec<EventRef>>,
}

impl<'r> StatsBuilder<'r> {
    /// Statistics from `from_ms` on; events before it (within the history
    /// window) only set the baseline of the volume flags.
    pub fn new(from_ms: i64, offset: UtcOffset, rules: &'r FlagRules) -> Self {
        Self {
            from_ms,
            offset,
            rules,
            days: BTreeMap::new(),
            lookups: HashMap::new(),
            history: HashMap::new(),
            denials: HashMap::new(),
            off_hours: BTreeMap::new(),
        }
    }

    /// The events to feed: the history window and `[from_ms, to_ms]`.
    pub fn window(&self, to_ms: i64) -> EventFilter {
        EventFilter {
            from_ms: Some(self.from_ms - self.rules.history_days * 86_400_000),
            to_ms: Some(to_ms),
            ..EventFilter::default()
        }
    }

    /// Counts one event.
    pub fn add(&mut self, e: &Event) {
        let b = &e.body;
        let rules = self.rules;
        let local = OffsetDateTime::from_unix_timestamp_nanos(i128::from(b.time_ms) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
            .to_offset(self.offset);
        let day = local.date().to_string();
        let who = format!(
            "{}/{}",
            b.dept.as_deref().unwrap_or("-"),
            b.subject.as_deref().unwrap_or("-")
        );
        let disclosed =
            b.kind == EventKind::Query && b.outcome == Outcome::Allow && !b.fields.is_empty();
        if b.time_ms < self.from_ms {
            if disclosed {
                *self.history.entry(who).or_default().entry(day).or_default() += 1;
            }
            return;
        }
        let d = self.days.entry(day.clone()).or_default();
        d.total += 1;
        let bump = |m: &mut BTreeMap<String, u64>, k: Option<&str>| {
            *m.entry(k.unwrap_or("-").to_owned()).or_default() += 1;
        };
        bump(&mut d.by_consumer, b.dept.as_deref());
        bump(&mut d.by_dataset, b.dataset.as_deref());
        bump(&mut d.by_purpose, b.purpose.as_deref());
        if let Some((grant, _)) = &b.grant {
            bump(&mut d.by_grant, Some(grant));
        }
        if let (Some(dept), Some(case)) = (&b.dept, &b.case_ref) {
            if d.case_set.insert(format!("{dept}\u{0}{case}")) {
                d.cases += 1;
            }
        }
        bump(&mut d.by_decision, Some(b.outcome.as_str()));
        bump(&mut d.by_node, Some(&e.node));
        if disclosed {
            self.lookups
                .entry((who.clone(), day.clone()))
                .or_default()
                .push(EventRef::of(e));
            let hour = local.hour();
            let weekend = matches!(local.weekday(), Weekday::Saturday | Weekday::Sunday);
            if weekend || hour < rules.working_hours.0 || hour >= rules.working_hours.1 {
                self.off_hours
                    .entry((who.clone(), day))
                    .or_default()
                    .push(EventRef::of(e));
            }
        }
        if b.outcome == Outcome::Deny {
            let caller = if b.dept.is_some() {
                who
            } else {
                format!("unauthenticated/{}", source_address(&b.source))
            };
            self.denials
                .entry(caller)
                .or_default()
                .push((b.time_ms, EventRef::of(e)));
        }
    }

    /// The counts and the flags raised.
    pub fn finish(self) -> Stats {
        let Self {
            offset,
            rules,
            days,
            lookups,
            history,
            denials,
            off_hours,
            ..
        } = self;
        let split = |who: &str| {
            let (d, s) = who.split_once('/').unwrap_or((who, "-"));
            let opt = |v: &str| (v != "-").then(|| v.to_owned());
            (opt(d), opt(s))
        };
        let flag = |kind, who: &str, day: String, detail: String, mut refs: Vec<EventRef>| {
            let (consumer, subject) = split(who);
            refs.truncate(100);
            Flag {
                kind,
                consumer,
                subject,
                day,
                detail,
                events: refs.iter().map(|r| r.seq).collect(),
                refs,
            }
        };
        let mut flags = Vec::new();
        let mut spikes: Vec<_> = lookups.into_iter().collect();
        spikes.sort();
        for ((who, day), mut refs) in spikes {
            let count = refs.len() as u64;
            // A caller with no earlier day has no history.
            let mut past: Vec<u64> = history
                .get(&who)
                .map(|h| h.values().copied().collect())
                .unwrap_or_default();
            past.sort_unstable();
            let median = past.get(past.len() / 2).copied().unwrap_or(0);
            let bar = (median * rules.spike_factor).max(rules.spike_min);
            if count > bar {
                refs.sort();
                let detail = format!(
                    "{count} disclosures in a day; daily median over the previous {} days: {median}",
                    rules.history_days
                );
                flags.push(flag("volume_spike", &who, day, detail, refs));
            }
        }
        let mut denials: Vec<_> = denials.into_iter().collect();
        denials.sort();
        for (caller, mut list) in denials {
            list.sort_unstable();
            let window = rules.burst_window_secs * 1000;
            let mut start = 0;
            for end in 0..list.len() {
                while list[end].0 - list[start].0 > window {
                    start += 1;
                }
                if end + 1 - start >= rules.burst_denials {
                    // RFC 3339 begins with the date (an unformattable time is "").
                    let day = format_time(list[start].0, offset)
                        .get(..10)
                        .unwrap_or_default()
                        .to_owned();
                    let refs: Vec<EventRef> = list[start..]
                        .iter()
                        .take_while(|(t, _)| *t - list[start].0 <= window)
                        .map(|(_, r)| r.clone())
                        .collect();
                    let detail = format!(
                        "{} or more denials within {} seconds",
                        rules.burst_denials, rules.burst_window_secs
                    );
                    flags.push(flag("denial_burst", &caller, day, detail, refs));
                    break;
                }
            }
        }
        for ((who, day), mut refs) in off_hours {
            refs.sort();
            let detail = format!(
                "{} disclosures outside working hours ({:02}:00–{:02}:00 on weekdays)",
                refs.len(),
                rules.working_hours.0,
                rules.working_hours.1
            );
            flags.push(flag("off_hours", &who, day, detail, refs));
        }
        Stats { days, flags }
    }
}

/// The address of an event's `source` (`ip:port`, `[ipv6]:port`, or an
/// address alone), so each caller counts apart, IPv6 ones included.
fn source_address(source: &str) -> String {
    if let Ok(a) = source.parse::<std::net::SocketAddr>() {
        return a.ip().to_string();
    }
    if let Ok(ip) = source.parse::<std::net::IpAddr>() {
        return ip.to_string();
    }
    source.to_owned()
}

#[cfg(test)]
mod source_tests {
    use super::source_address;

    #[test]
    fn ipv6_callers_count_apart() {
        assert_eq!(source_address("10.0.0.7:51234"), "10.0.0.7");
        assert_eq!(source_address("[2001:db8::1]:443"), "2001:db8::1");
        assert_eq!(source_address("[2001:db8::2]:443"), "2001:db8::2");
        assert_eq!(source_address("2001:db8::3"), "2001:db8::3");
        assert_eq!(source_address("127.0.0.1"), "127.0.0.1");
    }
}
