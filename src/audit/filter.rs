//! Filters of an audit search: what the store's block summaries, the
//! officers' search and the cluster's reads all test events against.

use super::event::{Event, EventKind, Outcome, Text};
use crate::domain::hex;

/// Filters of an event search; every filter given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// The resident's pseudonym (derived from the plain ID by the caller).
    pub resident: Option<[u8; 16]>,
    /// The consuming department.
    pub consumer: Option<String>,
    /// The caller's subject.
    pub subject: Option<String>,
    /// The dataset.
    pub dataset: Option<String>,
    /// The purpose.
    pub purpose: Option<String>,
    /// The case reference (办件编号), exactly.
    pub case_ref: Option<String>,
    /// The department whose datasets were asked for (a data steward's
    /// scope): the dataset id's `<owner>.` prefix.
    pub owner: Option<String>,
    /// The decision.
    pub decision: Option<Outcome>,
    /// Earliest time, ms (inclusive).
    pub from_ms: Option<i64>,
    /// Latest time, ms (inclusive).
    pub to_ms: Option<i64>,
    /// The node whose chain holds the event (cluster mode).
    pub node: Option<String>,
    /// The kinds of event (any when empty): `query` alone leaves out the
    /// officers' and administrators' own reads and changes.
    pub kinds: Vec<EventKind>,
}

/// Whether `dataset` (`<owner>.<name>`) belongs to `owner`.
pub fn owned_by(dataset: Option<&str>, owner: &str) -> bool {
    dataset
        .and_then(|d| d.split_once('.'))
        .is_some_and(|(o, _)| o == owner)
}

impl EventFilter {
    /// Whether one event matches.
    pub fn matches(&self, e: &Event) -> bool {
        let b = &e.body;
        let eq = |want: &Option<String>, have: &Option<Text>| {
            want.as_deref().is_none_or(|w| have.as_deref() == Some(w))
        };
        self.resident.is_none_or(|r| b.resident == Some(r))
            && eq(&self.consumer, &b.dept)
            && eq(&self.subject, &b.subject)
            && eq(&self.dataset, &b.dataset)
            && eq(&self.purpose, &b.purpose)
            && self
                .case_ref
                .as_deref()
                .is_none_or(|c| b.case_ref.as_deref() == Some(c))
            && self
                .owner
                .as_deref()
                .is_none_or(|o| owned_by(b.dataset.as_deref(), o))
            && self.decision.is_none_or(|d| b.outcome == d)
            && self.from_ms.is_none_or(|f| b.time_ms >= f)
            && self.to_ms.is_none_or(|t| b.time_ms <= t)
            && self.node.as_ref().is_none_or(|n| *n == e.node)
            && (self.kinds.is_empty() || self.kinds.contains(&b.kind))
    }

    /// A description for the audit event of the search itself (no resident ID).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(r) = &self.resident {
            parts.push(format!("resident={}", hex(r)));
        }
        for (k, v) in [
            ("consumer", &self.consumer),
            ("subject", &self.subject),
            ("dataset", &self.dataset),
            ("purpose", &self.purpose),
            ("case_ref", &self.case_ref),
            ("owner", &self.owner),
            ("node", &self.node),
        ] {
            if let Some(v) = v {
                parts.push(format!("{k}={v}"));
            }
        }
        if let Some(d) = self.decision {
            parts.push(format!("decision={}", d.as_str()));
        }
        if let Some(f) = self.from_ms {
            parts.push(format!("from={f}"));
        }
        if let Some(t) = self.to_ms {
            parts.push(format!("to={t}"));
        }
        if !self.kinds.is_empty() {
            let kinds: Vec<&str> = self.kinds.iter().map(|k| k.as_str()).collect();
            parts.push(format!("kind={}", kinds.join(",")));
        }
        parts.join("&")
    }
}
