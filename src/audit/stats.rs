//! Counts per day and the anomaly flags: a subject's volume spike, a
//! caller's burst of denials, disclosures outside working time (on the
//! working-day calendar). The thresholds are [`FlagRules`], read from the
//! file `[alerts] rules` names.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;
use time::{OffsetDateTime, UtcOffset};

use super::event::{Event, EventKind, Outcome};
use super::pseudonym::Pseudonymizer;
use super::query::{EventFilter, scan};
use super::store::{AuditError, AuditStore};
use crate::calendar::{Calendar, DayKind};

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
    /// Its stable identity: kind, department, day and a keyed digest of
    /// the caller (`off_hours:minzheng:2026-10-02:4f1c…`), the same in
    /// every report that finds it; reviews name it.
    pub id: String,
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

/// Thresholds for the anomaly flags, and the calendar that says what is
/// working time.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Working hours (local), `[start, end)`, on working days.
    pub working_hours: (u8, u8),
    /// Which days are working days (法定节假日 and 调休).
    pub calendar: Arc<Calendar>,
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
            calendar: Arc::new(Calendar::weekdays_only()),
        }
    }
}

/// The rules file (`[alerts] rules`): every section and key optional,
/// defaulting to [`FlagRules::default`].
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    volume_spike: SpikeFile,
    #[serde(default)]
    denial_burst: BurstFile,
    #[serde(default)]
    off_hours: OffHoursFile,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SpikeFile {
    factor: Option<u64>,
    minimum: Option<u64>,
    history_days: Option<i64>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BurstFile {
    denials: Option<usize>,
    window_secs: Option<i64>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OffHoursFile {
    start_hour: Option<u8>,
    end_hour: Option<u8>,
}

impl FlagRules {
    /// The rules of a rules file's text, on `calendar`; every mistake names
    /// its section and key.
    pub fn parse(text: &str, calendar: Arc<Calendar>) -> Result<Self, String> {
        let file: RulesFile =
            toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?;
        let d = Self::default();
        let rules = Self {
            spike_factor: file.volume_spike.factor.unwrap_or(d.spike_factor),
            spike_min: file.volume_spike.minimum.unwrap_or(d.spike_min),
            history_days: file.volume_spike.history_days.unwrap_or(d.history_days),
            burst_denials: file.denial_burst.denials.unwrap_or(d.burst_denials),
            burst_window_secs: file.denial_burst.window_secs.unwrap_or(d.burst_window_secs),
            working_hours: (
                file.off_hours.start_hour.unwrap_or(d.working_hours.0),
                file.off_hours.end_hour.unwrap_or(d.working_hours.1),
            ),
            calendar,
        };
        let bad = |key: &str, rule: &str| Err(format!("{key}: {rule}"));
        if rules.spike_factor == 0 {
            return bad("volume_spike.factor", "must be at least 1");
        }
        if !(1..=366).contains(&rules.history_days) {
            return bad("volume_spike.history_days", "must be from 1 to 366");
        }
        if rules.burst_denials < 2 {
            return bad("denial_burst.denials", "must be at least 2");
        }
        if !(1..=86_400).contains(&rules.burst_window_secs) {
            return bad("denial_burst.window_secs", "must be from 1 to 86400");
        }
        let (start, end) = rules.working_hours;
        if start >= end || end > 24 {
            return bad(
                "off_hours",
                "start_hour must come before end_hour, and end_hour be at most 24",
            );
        }
        Ok(rules)
    }

    /// The thresholds and the calendar's years, for the audit event of a change.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "volume_spike": {"factor": self.spike_factor, "minimum": self.spike_min, "history_days": self.history_days},
            "denial_burst": {"denials": self.burst_denials, "window_secs": self.burst_window_secs},
            "off_hours": {"start_hour": self.working_hours.0, "end_hour": self.working_hours.1},
            "calendar_years": self.calendar.years().map(|(y, _)| y).collect::<Vec<_>>(),
        })
    }

    /// The rules the configuration names: `[alerts] rules` (or the
    /// defaults) on `[calendar] file` (or Monday to Friday). A file that
    /// does not load is an error naming it.
    pub fn from_config(config: &crate::config::Config) -> Result<Self, String> {
        let calendar = match &config.calendar.file {
            Some(path) => Calendar::load(path).map_err(|e| e.to_string())?,
            None => Calendar::weekdays_only(),
        };
        let calendar = Arc::new(calendar);
        match &config.alerts.rules {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                Self::parse(&text, calendar).map_err(|e| format!("{}: {e}", path.display()))
            }
            None => Ok(Self {
                calendar,
                ..Self::default()
            }),
        }
    }
}

/// Statistics over `[from_ms, to_ms]` of one node's log.
pub fn stats(
    store: &AuditStore,
    (from_ms, to_ms): (i64, i64),
    owner: Option<&str>,
    offset: UtcOffset,
    rules: Arc<FlagRules>,
    ids: &Pseudonymizer,
) -> Result<Stats, AuditError> {
    let mut builder = StatsBuilder::new(from_ms, offset, rules);
    let mut filter = builder.window(to_ms);
    filter.owner = owner.map(str::to_owned);
    scan(store, &filter, |e| builder.add(e))?;
    Ok(builder.finish(ids))
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
#[derive(Debug, Clone)]
pub struct StatsBuilder {
    from_ms: i64,
    /// The start of `from_ms`'s local day: flags are per day, so the first
    /// day's flags count the whole day, whatever its counts do.
    flags_from_ms: i64,
    offset: UtcOffset,
    rules: Arc<FlagRules>,
    days: BTreeMap<String, DayStats>,
    /// (subject key, day) → allowed disclosures
    lookups: HashMap<(String, String), Refs>,
    /// subject key → day → disclosures, over the history and the window:
    /// each day's volume is compared with the days before it.
    daily: HashMap<String, BTreeMap<String, u64>>,
    /// (caller, day) → denials, at most [`Self::denials_kept`] each
    denials: HashMap<(String, String), Vec<(i64, EventRef)>>,
    /// (subject key, day) → disclosures outside working time
    off_hours: BTreeMap<(String, String), (Refs, crate::calendar::DayKind)>,
}

impl StatsBuilder {
    /// Statistics from `from_ms` on; events before it (within the history
    /// window) only set the baseline of the volume flags.
    pub fn new(from_ms: i64, offset: UtcOffset, rules: Arc<FlagRules>) -> Self {
        let flags_from_ms =
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(from_ms) * 1_000_000)
                .ok()
                .map(|t| t.to_offset(offset).replace_time(time::Time::MIDNIGHT))
                .and_then(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok())
                .map_or(from_ms, |m| m.min(from_ms));
        Self {
            from_ms,
            flags_from_ms,
            offset,
            rules,
            days: BTreeMap::new(),
            lookups: HashMap::new(),
            daily: HashMap::new(),
            denials: HashMap::new(),
            off_hours: BTreeMap::new(),
        }
    }

    /// The events to feed: the history window and `[from_ms, to_ms]`.
    pub fn window(&self, to_ms: i64) -> EventFilter {
        EventFilter {
            from_ms: Some(self.flags_from_ms - self.rules.history_days * 86_400_000),
            to_ms: Some(to_ms),
            ..EventFilter::default()
        }
    }

    /// Counts one event.
    pub fn add(&mut self, e: &Event) {
        let b = &e.body;
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
        if disclosed {
            *self
                .daily
                .entry(who.clone())
                .or_default()
                .entry(day.clone())
                .or_default() += 1;
        }
        if b.time_ms < self.flags_from_ms {
            return;
        }
        if b.time_ms >= self.from_ms {
            self.count(e, &day);
        }
        if disclosed {
            self.lookups
                .entry((who.clone(), day.clone()))
                .or_default()
                .add(EventRef::of(e));
            let hour = local.hour();
            let rules = &self.rules;
            let kind = rules.calendar.day(local.date());
            if !kind.is_working() || hour < rules.working_hours.0 || hour >= rules.working_hours.1 {
                self.off_hours
                    .entry((who.clone(), day.clone()))
                    .or_insert_with(|| (Refs::default(), kind))
                    .0
                    .add(EventRef::of(e));
            }
        }
        if b.outcome == Outcome::Deny {
            let caller = if b.dept.is_some() {
                who
            } else {
                format!("unauthenticated/{}", source_address(&b.source))
            };
            let kept = self.denials_kept();
            let list = self.denials.entry((caller, day)).or_default();
            if list.len() < kept {
                list.push((b.time_ms, EventRef::of(e)));
            }
        }
    }

    /// The day's counts of one event of the window.
    fn count(&mut self, e: &Event, day: &str) {
        let b = &e.body;
        let d = self.days.entry(day.to_owned()).or_default();
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
    }

    /// The denials kept per caller and day. With more than `denials`
    /// times the windows in a day, some window holds a burst (pigeonhole),
    /// so the ones kept are enough to find one, in bounded memory.
    fn denials_kept(&self) -> usize {
        let windows = 86_400_i64.div_euclid(self.rules.burst_window_secs.max(1)) + 1;
        self.rules
            .burst_denials
            .saturating_mul(usize::try_from(windows).unwrap_or(usize::MAX))
            .saturating_add(1)
    }

    /// The counts and the flags raised; `ids` keys the digest of the
    /// caller in each flag's identity.
    pub fn finish(self, ids: &Pseudonymizer) -> Stats {
        let flags = self.flags(ids);
        Stats {
            days: self.days,
            flags,
        }
    }

    /// The flags raised by what was fed so far; the builder goes on
    /// counting (the alert check feeds it each new event once).
    pub fn flags(&self, ids: &Pseudonymizer) -> Vec<Flag> {
        let rules = &self.rules;
        let split = |who: &str| {
            let (d, s) = who.split_once('/').unwrap_or((who, "-"));
            let opt = |v: &str| (v != "-").then(|| v.to_owned());
            (opt(d), opt(s))
        };
        let flag =
            |kind: &'static str, who: &str, day: &str, detail: String, mut refs: Vec<EventRef>| {
                let (consumer, subject) = split(who);
                refs.truncate(MAX_REFS);
                // Keyed by kind and day too: ids of one caller's flags cannot be
                // linked across days or kinds by whoever receives them.
                let digest = ids.digest(
                    "tongban flag caller",
                    &[kind.as_bytes(), day.as_bytes(), who.as_bytes()],
                );
                Flag {
                    id: format!(
                        "{kind}:{}:{day}:{}",
                        consumer.as_deref().unwrap_or("-"),
                        crate::domain::hex(&digest[..8])
                    ),
                    kind,
                    consumer,
                    subject,
                    day: day.to_owned(),
                    detail,
                    events: refs.iter().map(|r| r.seq).collect(),
                    refs,
                }
            };
        let mut flags = Vec::new();
        let mut spikes: Vec<_> = self.lookups.iter().collect();
        spikes.sort_by(|a, b| a.0.cmp(b.0));
        for ((who, day), refs) in spikes {
            let count = refs.count;
            // The caller's days within the history before this one; a
            // caller with no earlier day has no history.
            let first = time::Date::parse(
                day,
                time::macros::format_description!("[year]-[month]-[day]"),
            )
            .ok()
            .and_then(|d| d.checked_sub(time::Duration::days(rules.history_days)))
            .map(|d| d.to_string())
            .unwrap_or_default();
            let mut past: Vec<u64> = self
                .daily
                .get(who)
                .map(|h| h.range(first..day.clone()).map(|(_, n)| *n).collect())
                .unwrap_or_default();
            past.sort_unstable();
            let median = past.get(past.len() / 2).copied().unwrap_or(0);
            let bar = (median * rules.spike_factor).max(rules.spike_min);
            if count > bar {
                let detail = format!(
                    "{count} disclosures in a day; daily median over the previous {} days: {median}",
                    rules.history_days
                );
                flags.push(flag("volume_spike", who, day, detail, refs.list()));
            }
        }
        let mut denials: Vec<_> = self.denials.iter().collect();
        denials.sort_by(|a, b| a.0.cmp(b.0));
        for ((caller, day), list) in denials {
            let mut list = list.clone();
            list.sort_unstable();
            let window = rules.burst_window_secs * 1000;
            let mut start = 0;
            for end in 0..list.len() {
                while list[end].0 - list[start].0 > window {
                    start += 1;
                }
                if end + 1 - start >= rules.burst_denials {
                    let refs: Vec<EventRef> = list[start..]
                        .iter()
                        .take_while(|(t, _)| *t - list[start].0 <= window)
                        .map(|(_, r)| r.clone())
                        .collect();
                    let detail = format!(
                        "{} or more denials within {} seconds",
                        rules.burst_denials, rules.burst_window_secs
                    );
                    flags.push(flag("denial_burst", caller, day, detail, refs));
                    break;
                }
            }
        }
        for ((who, day), (refs, kind)) in &self.off_hours {
            let (n, (start, end)) = (refs.count, rules.working_hours);
            let detail = match kind {
                DayKind::Holiday(name) => format!("{n} disclosures on a holiday ({name})"),
                DayKind::Weekend => format!("{n} disclosures on a weekend day"),
                DayKind::Workday | DayKind::MakeupWorkday => format!(
                    "{n} disclosures on a working day outside working hours ({start:02}:00–{end:02}:00)"
                ),
            };
            flags.push(flag("off_hours", who, day, detail, refs.list()));
        }
        flags
    }
}

/// The events a flag lists at most.
const MAX_REFS: usize = 100;

/// A count of events, and the first [`MAX_REFS`] of them (by node and
/// sequence number): what a flag lists, in bounded memory however many
/// events a caller makes in a day.
#[derive(Debug, Clone, Default)]
struct Refs {
    count: u64,
    kept: std::collections::BTreeSet<EventRef>,
}

impl Refs {
    fn add(&mut self, r: EventRef) {
        self.count += 1;
        self.kept.insert(r);
        if self.kept.len() > MAX_REFS {
            self.kept.pop_last();
        }
    }

    fn list(&self) -> Vec<EventRef> {
        self.kept.iter().cloned().collect()
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

#[cfg(test)]
mod rules_tests {
    use super::*;

    /// A denial by minzheng's `sub` at `time_ms`, as event `seq`.
    fn denial(seq: u64, time_ms: i64, sub: &str) -> Event {
        let mut body = crate::audit::EventBody::system(time_ms, EventKind::Query, "lookup");
        body.dept = Some("minzheng".into());
        body.subject = Some(sub.to_owned().into());
        body.outcome = Outcome::Deny;
        Event {
            version: crate::audit::event::FORMAT_VERSION,
            seq,
            node: "n".into(),
            prev_hash: crate::audit::event::GENESIS,
            body,
        }
    }

    /// A disclosure by minzheng's `sub` at `time_ms`, as event `seq`.
    fn disclosure(seq: u64, time_ms: i64, sub: &str) -> Event {
        let mut e = denial(seq, time_ms, sub);
        e.body.outcome = Outcome::Allow;
        e.body.fields = vec![crate::domain::FieldName::parse("name").unwrap().shared()];
        e
    }

    #[test]
    fn each_days_volume_is_compared_with_the_days_before_it() {
        let rules = Arc::new(FlagRules {
            spike_min: 5,
            ..FlagRules::default()
        });
        let day = 86_400_000_i64;
        let day1 = 1_789_948_800_000_i64 + 4 * 3_600_000;
        // One disclosure on day 1 (history), fifty a day on days 2 to 6.
        let mut events = vec![disclosure(1, day1, "c")];
        for d in 1..6 {
            for i in 0..50 {
                let seq = 2 + u64::try_from(d * 50 + i).unwrap();
                events.push(disclosure(seq, day1 + d * day + i, "c"));
            }
        }
        let mut b = StatsBuilder::new(day1 - 4 * 3_600_000 + day, UtcOffset::UTC, rules);
        for e in &events {
            b.add(e);
        }
        let ids = Pseudonymizer::from_secret(&[7; 32]);
        let days: Vec<String> = b
            .flags(&ids)
            .into_iter()
            .filter(|f| f.kind == "volume_spike")
            .map(|f| f.day)
            .collect();
        // The jump from 1 to 50 on day 2; days 3 to 6 are like the days before them.
        assert_eq!(days, ["2026-09-22"], "{days:?}");
    }

    #[test]
    fn a_flood_of_denials_is_kept_in_bounded_memory_and_still_flagged() {
        let rules = Arc::new(FlagRules::default());
        // Midnight (UTC), so that all of them fall on one day.
        let day_ms = 1_789_948_800_000_i64;
        let mut b = StatsBuilder::new(day_ms, UtcOffset::UTC, rules.clone());
        let kept = b.denials_kept();
        // 20 000 denials over the day, about 14 a minute.
        for i in 0..20_000u64 {
            let t = day_ms + i64::try_from(i % 1_400).unwrap() * 60_000;
            b.add(&denial(i + 1, t, "clerk-1"));
        }
        let held = b.denials.values().map(Vec::len).max().unwrap_or(0);
        assert!(
            held <= kept,
            "{held} denials held for a caller's day, more than {kept}"
        );
        let ids = Pseudonymizer::from_secret(&[7; 32]);
        let flags = b.flags(&ids);
        assert_eq!(
            flags.iter().filter(|f| f.kind == "denial_burst").count(),
            1,
            "{flags:?}"
        );
        // A quiet caller with 9 denials in a minute raises nothing.
        let mut quiet = StatsBuilder::new(day_ms, UtcOffset::UTC, rules);
        for i in 0..9 {
            quiet.add(&denial(
                i + 1,
                day_ms + i64::try_from(i).unwrap(),
                "clerk-2",
            ));
        }
        assert!(quiet.flags(&ids).is_empty());
    }

    #[test]
    fn the_example_rules_file_spells_out_the_defaults() {
        let cal = Arc::new(Calendar::weekdays_only());
        let file =
            FlagRules::parse(include_str!("../../deploy/anomaly.toml"), cal.clone()).unwrap();
        let d = FlagRules::default();
        assert_eq!(
            (file.spike_factor, file.spike_min, file.history_days),
            (d.spike_factor, d.spike_min, d.history_days)
        );
        assert_eq!(
            (
                file.burst_denials,
                file.burst_window_secs,
                file.working_hours
            ),
            (d.burst_denials, d.burst_window_secs, d.working_hours)
        );
        let partial = FlagRules::parse("[off_hours]\nstart_hour = 9\n", cal.clone()).unwrap();
        assert_eq!(partial.working_hours, (9, 20));
        assert_eq!(partial.spike_min, 50);
    }

    #[test]
    fn a_wrong_rules_file_is_refused_naming_the_key() {
        let cal = Arc::new(Calendar::weekdays_only());
        for (text, needle) in [
            ("[volume_spike]\nfactor = 0\n", "volume_spike.factor"),
            (
                "[volume_spike]\nhistory_days = 0\n",
                "volume_spike.history_days",
            ),
            ("[denial_burst]\ndenials = 1\n", "denial_burst.denials"),
            (
                "[denial_burst]\nwindow_secs = 0\n",
                "denial_burst.window_secs",
            ),
            ("[off_hours]\nstart_hour = 20\nend_hour = 8\n", "off_hours"),
            ("[off_hours]\nend_hour = 25\n", "off_hours"),
            ("[off_hour]\nend_hour = 20\n", "unknown field"),
            ("[volume_spike]\nfactr = 2\n", "unknown field"),
        ] {
            let e = FlagRules::parse(text, cal.clone()).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
