//! The evaluation (评估): how much the exchange spares residents, per month
//! and per consumer → owner department pair, counted from the log.
//!
//! Definitions (the README and docs/auditing.md state them the same way):
//!
//! - a **disclosure** is an allowed query event that let fields leave
//!   (lookup, batch, verify, or a replay of one);
//! - **cases served**: the distinct case references (办件) the consumer
//!   named on its disclosures from the owner's datasets that month;
//! - **materials obtained** (instead of from the resident): the distinct
//!   pairs (case reference, dataset) among the month's lookup and batch
//!   disclosures, and their replays, that named a case;
//! - **verify answers** (instead of a paper certificate, 证明): the allowed
//!   verify requests, their replays not counted again;
//! - **without a case**: lookup and batch disclosures that named no case.
//!
//! - **grants made** and **days to grant**: the sharing requests approved
//!   that month (renewals included), and the mean working days from filing
//!   to approval;
//! - **objections answered** and **days to answer**: the data objections
//!   the owner answered that month, and the mean working days from report
//!   to answer.
//!
//! A month is the gateway calendar's (`YYYY-MM`); the owner is the
//! dataset id's `<owner>.` prefix.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use time::UtcOffset;

use super::event::{Event, EventKind, Outcome};

/// One month of one consumer → owner pair.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Row {
    /// `YYYY-MM`, the gateway calendar.
    pub month: String,
    /// The consuming department.
    pub consumer: String,
    /// The department whose data it was.
    pub owner: String,
    /// Distinct cases served.
    pub cases: u64,
    /// Distinct (case, dataset) materials obtained through the exchange.
    pub materials: u64,
    /// Verify answers given.
    pub verify_answers: u64,
    /// Lookup and batch disclosures that named no case.
    pub without_case: u64,
    /// Every disclosure counted.
    pub disclosures: u64,
    /// Sharing requests approved into grants.
    pub grants_made: u64,
    /// Their mean working days from filing to approval (one decimal).
    pub days_to_grant: Option<f64>,
    /// Data objections the owner answered.
    pub objections_answered: u64,
    /// Their mean working days from report to answer (one decimal).
    pub days_to_answer: Option<f64>,
}

/// A workflow item finished: a grant made, an objection answered.
#[derive(Debug, Clone)]
pub struct Done {
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// The consuming (reporting) department.
    pub consumer: String,
    /// The owning department.
    pub owner: String,
    /// A grant (else an objection's answer).
    pub grant: bool,
    /// Working days it took.
    pub working_days: u32,
}

#[derive(Debug, Default)]
struct Cell {
    cases: BTreeSet<String>,
    materials: BTreeSet<(String, String)>,
    verify_answers: u64,
    without_case: u64,
    disclosures: u64,
    grants: (u64, u64),
    answers: (u64, u64),
}

/// The mean of `total` over `n`, to one decimal; none of nothing.
fn mean((n, total): (u64, u64)) -> Option<f64> {
    #[allow(clippy::cast_precision_loss)]
    (n > 0).then(|| (total as f64 * 10.0 / n as f64).round() / 10.0)
}

/// The evaluation gathered one event at a time, in any order.
#[derive(Debug)]
pub struct Builder {
    offset: UtcOffset,
    cells: BTreeMap<(String, String, String), Cell>,
}

impl Builder {
    /// Months in the calendar of `offset`.
    pub fn new(offset: UtcOffset) -> Self {
        Self {
            offset,
            cells: BTreeMap::new(),
        }
    }

    fn month(&self, time_ms: i64) -> String {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(time_ms) * 1_000_000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
            .to_offset(self.offset);
        format!("{:04}-{:02}", t.year(), u8::from(t.month()))
    }

    /// Counts one finished workflow item.
    pub fn add_done(&mut self, d: &Done) {
        let month = self.month(d.at_ms);
        let cell = self
            .cells
            .entry((month, d.consumer.clone(), d.owner.clone()))
            .or_default();
        let sums = if d.grant {
            &mut cell.grants
        } else {
            &mut cell.answers
        };
        sums.0 += 1;
        sums.1 += u64::from(d.working_days);
    }

    /// Counts one event.
    pub fn add(&mut self, e: &Event) {
        let b = &e.body;
        if b.kind != EventKind::Query || b.outcome != Outcome::Allow || b.fields.is_empty() {
            return;
        }
        let (Some(consumer), Some(dataset)) = (&b.dept, &b.dataset) else {
            return;
        };
        let owner = dataset.split('.').next().unwrap_or_default();
        let month = self.month(b.time_ms);
        let cell = self
            .cells
            .entry((month, consumer.to_string(), owner.to_owned()))
            .or_default();
        cell.disclosures += 1;
        // What a replay repeats (its detail names the first operation).
        let operation = if b.operation == "replay" {
            replayed(b.detail.as_deref())
        } else {
            Some(b.operation.as_ref())
        };
        if let Some(case) = &b.case_ref {
            cell.cases.insert(case.clone());
        }
        match operation {
            Some("verify") if b.operation != "replay" => cell.verify_answers += 1,
            Some("lookup" | "batch") => match &b.case_ref {
                Some(case) => {
                    cell.materials.insert((case.clone(), dataset.to_string()));
                }
                None => cell.without_case += 1,
            },
            _ => {}
        }
    }

    /// The rows, by month, consumer and owner.
    pub fn finish(self) -> Vec<Row> {
        self.cells
            .into_iter()
            .map(|((month, consumer, owner), c)| Row {
                month,
                consumer,
                owner,
                cases: c.cases.len() as u64,
                materials: c.materials.len() as u64,
                verify_answers: c.verify_answers,
                without_case: c.without_case,
                disclosures: c.disclosures,
                grants_made: c.grants.0,
                days_to_grant: mean(c.grants),
                objections_answered: c.answers.0,
                days_to_answer: mean(c.answers),
            })
            .collect()
    }
}

/// The operation a replay's detail names (`replay_of.operation`).
fn replayed(detail: Option<&str>) -> Option<&'static str> {
    let v: serde_json::Value = serde_json::from_str(detail?).ok()?;
    match v["replay_of"]["operation"].as_str()? {
        "verify" => Some("verify"),
        "lookup" => Some("lookup"),
        "batch" => Some("batch"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::tests::body;

    fn event(seq: u64, edit: impl FnOnce(&mut crate::audit::EventBody)) -> Event {
        let mut b = body(u32::try_from(seq).unwrap());
        b.kind = EventKind::Query;
        b.outcome = Outcome::Allow;
        b.fields = vec!["name".into()];
        b.dept = Some("minzheng".into());
        b.dataset = Some("gongan.hukou".into());
        b.operation = "lookup".into();
        b.time_ms = 1_780_000_000_000; // 2026-05-28
        edit(&mut b);
        Event {
            version: crate::audit::event::FORMAT_VERSION,
            seq,
            node: "n1".into(),
            prev_hash: [0; 32],
            body: b,
        }
    }

    #[test]
    fn cases_materials_and_verify_answers_are_counted_as_defined() {
        let mut e = Builder::new(UtcOffset::from_hms(8, 0, 0).unwrap());
        let case = |c: &str| Some(c.to_owned());
        e.add(&event(1, |b| b.case_ref = case("MZ-1")));
        // The same material twice is one; another dataset of the case is another.
        e.add(&event(2, |b| b.case_ref = case("MZ-1")));
        e.add(&event(3, |b| {
            b.case_ref = case("MZ-1");
            b.dataset = Some("gongan.other".into());
        }));
        e.add(&event(4, |b| b.case_ref = case("MZ-2")));
        e.add(&event(5, |b| b.case_ref = None));
        e.add(&event(6, |b| {
            b.operation = "verify".into();
            b.case_ref = case("MZ-3");
        }));
        // A replay of the verify is not a second answer.
        e.add(&event(7, |b| {
            b.operation = "replay".into();
            b.case_ref = case("MZ-3");
            b.detail = Some(r#"{"replay_of":{"operation":"verify"}}"#.into());
        }));
        // Refused, or nothing left: not counted.
        e.add(&event(8, |b| b.outcome = Outcome::Deny));
        e.add(&event(9, |b| b.fields.clear()));
        // Another owner, another month.
        e.add(&event(10, |b| b.dataset = Some("renshe.shebao".into())));
        e.add(&event(11, |b| b.time_ms += 10 * 86_400_000));
        let rows = e.finish();
        assert_eq!(rows.len(), 3, "{rows:?}");
        let may = &rows[0];
        assert_eq!(
            (may.month.as_str(), may.owner.as_str()),
            ("2026-05", "gongan")
        );
        assert_eq!(may.cases, 3);
        assert_eq!(may.materials, 3);
        assert_eq!(may.verify_answers, 1);
        assert_eq!(may.without_case, 1);
        assert_eq!(may.disclosures, 7);
        assert_eq!(rows[1].owner, "renshe");
        assert_eq!(rows[2].month, "2026-06");
    }
}
