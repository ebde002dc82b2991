//! Block summaries: for every block of 4096 consecutive events, which
//! consumers, datasets, purposes, subjects and decisions occur in it and its
//! time range (a zone map). A search skips every block that cannot match, at
//! the cost of one small insert per group commit instead of one index insert
//! per event and filter.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::event::{EventBody, Outcome};
use super::filter::EventFilter;

/// Events per block.
pub const BLOCK_EVENTS: u64 = 4096;
/// Distinct subjects kept per block before the set is dropped (then any subject may match).
const MAX_SUBJECTS: usize = 512;

/// The block holding event `seq` (sequence numbers start at 1).
pub fn block_of(seq: u64) -> u64 {
    seq.saturating_sub(1) / BLOCK_EVENTS
}

/// The first and last sequence number of a block.
pub fn block_range(block: u64) -> (u64, u64) {
    (block * BLOCK_EVENTS + 1, (block + 1) * BLOCK_EVENTS)
}

/// What occurs in one block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockSummary {
    /// First event summarized.
    pub first_seq: u64,
    /// Last event summarized.
    pub last_seq: u64,
    /// Earliest event time, ms.
    pub min_time_ms: i64,
    /// Latest event time, ms.
    pub max_time_ms: i64,
    /// Consumer departments.
    pub consumers: BTreeSet<String>,
    /// Datasets.
    pub datasets: BTreeSet<String>,
    /// Purposes.
    pub purposes: BTreeSet<String>,
    /// Subjects, unless there were too many to keep.
    pub subjects: Option<BTreeSet<String>>,
    /// Bit per outcome (allow 1, deny 2, error 4).
    pub outcomes: u8,
}

fn outcome_bit(o: Outcome) -> u8 {
    match o {
        Outcome::Allow => 1,
        Outcome::Deny => 2,
        Outcome::Error => 4,
    }
}

impl BlockSummary {
    /// Adds one event.
    pub fn add(&mut self, seq: u64, e: &EventBody) {
        if self.first_seq == 0 {
            self.first_seq = seq;
            self.min_time_ms = e.time_ms;
            self.max_time_ms = e.time_ms;
            self.subjects = Some(BTreeSet::new());
        }
        self.last_seq = seq;
        self.min_time_ms = self.min_time_ms.min(e.time_ms);
        self.max_time_ms = self.max_time_ms.max(e.time_ms);
        let put = |set: &mut BTreeSet<String>, v: &Option<crate::audit::event::Text>| {
            if let Some(v) = v {
                if !set.contains(&**v) {
                    set.insert(v.to_string());
                }
            }
        };
        put(&mut self.consumers, &e.dept);
        put(&mut self.datasets, &e.dataset);
        put(&mut self.purposes, &e.purpose);
        if let Some(subjects) = &mut self.subjects {
            put(subjects, &e.subject);
            if subjects.len() > MAX_SUBJECTS {
                self.subjects = None;
            }
        }
        self.outcomes |= outcome_bit(e.outcome);
    }

    /// Whether any event of the block can match `f` (false means: skip the block).
    pub fn may_match(&self, f: &EventFilter) -> bool {
        let has = |set: &BTreeSet<String>, want: &Option<String>| {
            want.as_ref().is_none_or(|w| set.contains(w))
        };
        has(&self.consumers, &f.consumer)
            && has(&self.datasets, &f.dataset)
            && f.owner.as_deref().is_none_or(|o| {
                self.datasets
                    .iter()
                    .any(|d| super::filter::owned_by(Some(d), o))
            })
            && has(&self.purposes, &f.purpose)
            && self.subjects.as_ref().is_none_or(|s| has(s, &f.subject))
            && f.decision
                .is_none_or(|d| self.outcomes & outcome_bit(d) != 0)
            && f.from_ms.is_none_or(|from| self.max_time_ms >= from)
            && f.to_ms.is_none_or(|to| self.min_time_ms <= to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::tests::body;

    #[test]
    fn a_summary_rules_out_what_never_occurs() {
        let mut s = BlockSummary::default();
        s.add(1, &body(1));
        s.add(2, &body(2));
        assert_eq!((s.first_seq, s.last_seq), (1, 2));
        let f = |consumer: &str| EventFilter {
            consumer: Some(consumer.into()),
            ..EventFilter::default()
        };
        assert!(s.may_match(&f("minzheng")));
        assert!(!s.may_match(&f("renshe")));
        assert!(!s.may_match(&EventFilter {
            decision: Some(Outcome::Deny),
            ..EventFilter::default()
        }));
        assert!(!s.may_match(&EventFilter {
            from_ms: Some(s.max_time_ms + 1),
            ..EventFilter::default()
        }));
        assert_eq!(block_of(1), 0);
        assert_eq!(block_of(4096), 0);
        assert_eq!(block_of(4097), 1);
        assert_eq!(block_range(1), (4097, 8192));
    }
}
