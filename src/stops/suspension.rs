//! Department suspension: the emergency stop for a breached department.
//!
//! Suspensions are kept in a [`DurableMap`] (`admin/suspensions`,
//! department → record): a check costs one atomic load and one map lookup,
//! and a change reaches every connection, open ones included, on its next
//! request.
//!
//! Stops are ordered by the time they were made at their node (a cluster's
//! nodes share them through PostgreSQL, and one cut off from it makes them
//! alone): a suspension or resumption older than the newest change in force
//! for the same department is recorded but not applied, so a resumption
//! made on a node cut off from the others never lifts a suspension made
//! later elsewhere. Within the clock-skew window between two nodes a
//! suspension wins. Each department's last resumption is kept too
//! (`admin/resumptions`), for that comparison.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use super::{DurableMap, Edit, StopsError};

const TREE: &str = "admin/suspensions";
const RESUMED: &str = "admin/resumptions";

/// Why and since when a department is suspended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    /// The reason given.
    pub reason: String,
    /// Who suspended it (`dept/subject`).
    pub by: String,
    /// When, ms since the epoch (at the node it was made on).
    pub at_ms: i64,
    /// The node it was made on (empty: this one, before nodes were recorded).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
}

/// When and where a department was last resumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resumption {
    /// When, ms since the epoch (at the node it was made on).
    pub at_ms: i64,
    /// The node it was made on.
    pub node: String,
}

/// A stop change's place in the order: when, where, and whether it suspends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp<'a> {
    /// When it was made, ms since the epoch, by its node's clock.
    pub at_ms: i64,
    /// The node it was made on.
    pub node: &'a str,
    /// A suspension (else a resumption).
    pub suspends: bool,
}

/// Whether `change` is to be applied over `last`, the newest change in
/// force for the same department. Changes of one node follow its one clock
/// exactly (a replay of the same change applies again, harmlessly); between
/// nodes, a change more than `skew_ms` older than `last` is not applied, one
/// more than `skew_ms` newer is, and within the window a suspension wins.
pub fn supersedes(change: Stamp<'_>, last: Option<Stamp<'_>>, skew_ms: i64) -> bool {
    let Some(last) = last else {
        return true;
    };
    if change.node == last.node {
        return change.at_ms >= last.at_ms;
    }
    if change.at_ms > last.at_ms.saturating_add(skew_ms) {
        true
    } else if change.at_ms < last.at_ms.saturating_sub(skew_ms) {
        false
    } else {
        change.suspends || !last.suspends
    }
}

/// The change in force for a department: its suspension while it is
/// suspended (one is stored only when it supersedes what was in force, even
/// over a resumption stamped later within the skew window), else its last
/// resumption.
fn last<'a>(
    suspension: Option<&'a Suspension>,
    resumption: Option<&'a Resumption>,
) -> Option<Stamp<'a>> {
    match (suspension, resumption) {
        (Some(s), _) => Some(Stamp {
            at_ms: s.at_ms,
            node: &s.node,
            suspends: true,
        }),
        (None, Some(r)) => Some(Stamp {
            at_ms: r.at_ms,
            node: &r.node,
            suspends: false,
        }),
        (None, None) => None,
    }
}

/// The time to stamp a change made on `node` at `now_ms`, after `last`: by
/// more than the skew window when `last` came from another node.
pub fn stamp_after(last: Option<Stamp<'_>>, node: &str, now_ms: i64, skew_ms: i64) -> i64 {
    match last {
        Some(last) if last.node == node => now_ms.max(last.at_ms + 1),
        Some(last) => now_ms.max(last.at_ms.saturating_add(skew_ms) + 1),
        None => now_ms,
    }
}

/// The suspended departments, and each one's last resumption.
#[derive(Debug)]
pub struct Suspensions {
    suspended: DurableMap<Suspension>,
    resumed: DurableMap<Resumption>,
    /// Held by every change, from its decision to its swap.
    changing: Mutex<()>,
}

impl Suspensions {
    /// Loads the suspensions from `db`, the database in `data_dir`.
    pub fn open(db: &sled::Db, data_dir: &Path) -> Result<Self, StopsError> {
        Ok(Self {
            suspended: DurableMap::open(db, TREE, data_dir, |_| true)?,
            resumed: DurableMap::open(db, RESUMED, data_dir, |_| true)?,
            changing: Mutex::new(()),
        })
    }

    /// The suspension of `dept`, if it is suspended.
    pub fn get(&self, dept: &str) -> Option<Suspension> {
        self.suspended.get(dept)
    }

    /// Every suspension in force.
    pub fn all(&self) -> Arc<HashMap<String, Suspension>> {
        self.suspended.all()
    }

    /// The change in force for `dept`, and its stamp.
    fn last_of<T>(&self, dept: &str, f: impl FnOnce(Option<Stamp<'_>>) -> T) -> T {
        let suspended = self.suspended.all();
        let resumed = self.resumed.all();
        f(last(suspended.get(dept), resumed.get(dept)))
    }

    /// The time to stamp a change made on `node` now for `dept`: its clock,
    /// but after every change this node has seen for the department (by
    /// more than the skew window when that one came from another node), so
    /// that what an administrator does after seeing a stop is ordered after it.
    pub fn stamp_now(&self, dept: &str, node: &str, now_ms: i64, skew_ms: i64) -> i64 {
        self.last_of(dept, |last| stamp_after(last, node, now_ms, skew_ms))
    }

    /// Whether a change stamped `change` would be applied now.
    pub fn would_apply(&self, dept: &str, change: Stamp<'_>, skew_ms: i64) -> bool {
        self.last_of(dept, |last| supersedes(change, last, skew_ms))
    }

    /// Suspends `dept` by a change made on this node (`suspension.node`)
    /// now (`suspension.at_ms`), stamped as [`Self::change_here`] stamps.
    /// Returns the stamp.
    pub fn suspend_here(
        &self,
        dept: &str,
        suspension: Suspension,
        skew_ms: i64,
    ) -> Result<i64, StopsError> {
        let (node, now_ms) = (suspension.node.clone(), suspension.at_ms);
        self.change_here(dept, &node, now_ms, Some(suspension), skew_ms)
    }

    /// Resumes `dept` by a change made on `node` at `now_ms`, stamped as
    /// [`Self::change_here`] stamps. Returns the stamp.
    pub fn resume_here(
        &self,
        dept: &str,
        node: &str,
        now_ms: i64,
        skew_ms: i64,
    ) -> Result<i64, StopsError> {
        self.change_here(dept, node, now_ms, None, skew_ms)
    }

    /// Suspends (`Some`) or resumes (`None`) `dept` by a change made on
    /// `node` now: stamped after every change seen for the department, under
    /// the same lock as the change itself. Returns the stamp.
    fn change_here(
        &self,
        dept: &str,
        node: &str,
        now_ms: i64,
        suspension: Option<Suspension>,
        skew_ms: i64,
    ) -> Result<i64, StopsError> {
        let _one = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        let at_ms = self.stamp_now(dept, node, now_ms, skew_ms);
        match suspension {
            Some(mut s) => {
                s.at_ms = at_ms;
                s.node = node.to_owned();
                self.store_suspension(dept, s)?;
            }
            None => self.store_resumption(
                dept,
                Resumption {
                    at_ms,
                    node: node.to_owned(),
                },
            )?,
        }
        Ok(at_ms)
    }

    /// Suspends `dept` (or replaces its reason) unless a newer change is in
    /// force; durable before it takes effect. Returns whether it was applied.
    pub fn suspend(
        &self,
        dept: &str,
        suspension: Suspension,
        skew_ms: i64,
    ) -> Result<bool, StopsError> {
        let stamp = Stamp {
            at_ms: suspension.at_ms,
            node: &suspension.node,
            suspends: true,
        };
        self.change_if_newer(dept, stamp, skew_ms, || {
            self.store_suspension(dept, suspension.clone())
        })
    }

    /// Lifts the suspension of `dept` unless a newer change is in force;
    /// returns whether it was applied (a department not suspended is
    /// resumed all the same: the resumption is recorded for the order).
    pub fn resume(
        &self,
        dept: &str,
        resumption: Resumption,
        skew_ms: i64,
    ) -> Result<bool, StopsError> {
        let stamp = Stamp {
            at_ms: resumption.at_ms,
            node: &resumption.node,
            suspends: false,
        };
        self.change_if_newer(dept, stamp, skew_ms, || {
            self.store_resumption(dept, resumption.clone())
        })
    }

    /// Makes a change stamped `stamp` under the lock every change holds,
    /// unless a newer change for `dept` is in force; returns whether it did.
    fn change_if_newer(
        &self,
        dept: &str,
        stamp: Stamp<'_>,
        skew_ms: i64,
        store: impl FnOnce() -> Result<(), StopsError>,
    ) -> Result<bool, StopsError> {
        let _one = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        if !self.would_apply(dept, stamp, skew_ms) {
            return Ok(false);
        }
        store()?;
        Ok(true)
    }

    /// Saves, syncs, then enforces a suspension (the caller holds `changing`).
    fn store_suspension(&self, dept: &str, suspension: Suspension) -> Result<(), StopsError> {
        self.suspended
            .apply([Edit::Put(dept.to_owned(), suspension)])
    }

    /// Records the resumption, then lifts the suspension, each durable
    /// before it is in force (the caller holds `changing`): a crash between
    /// the two leaves the department suspended, as it was.
    fn store_resumption(&self, dept: &str, resumption: Resumption) -> Result<(), StopsError> {
        self.resumed
            .apply([Edit::Put(dept.to_owned(), resumption)])?;
        if self.suspended.get(dept).is_some() {
            self.suspended.apply([Edit::Remove(dept.to_owned())])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(at_ms: i64, node: &str, suspends: bool) -> Stamp<'_> {
        Stamp {
            at_ms,
            node,
            suspends,
        }
    }

    #[test]
    fn stops_are_ordered_by_time_and_a_suspension_wins_within_the_skew() {
        let skew = 5_000;
        // Nothing in force: anything applies.
        assert!(supersedes(stamp(1, "a", false), None, skew));
        // (change, the change in force, applied?)
        let cases = [
            // One node, one clock: exact order, replays apply again.
            (stamp(10, "a", false), stamp(9, "a", true), true),
            (stamp(8, "a", false), stamp(9, "a", true), false),
            (stamp(9, "a", true), stamp(9, "a", true), true),
            // A resumption made earlier elsewhere never lifts a later suspension.
            (stamp(100_000, "a", false), stamp(200_000, "b", true), false),
            // Later by more than the skew: applies.
            (stamp(206_000, "a", false), stamp(200_000, "b", true), true),
            // Within the skew a suspension wins, whichever came second.
            (stamp(203_000, "a", false), stamp(200_000, "b", true), false),
            (stamp(197_000, "a", true), stamp(200_000, "b", false), true),
            (stamp(190_000, "a", true), stamp(200_000, "b", false), false),
            // The window's edges are inside it.
            (stamp(205_000, "a", false), stamp(200_000, "b", true), false),
            (stamp(195_000, "a", true), stamp(200_000, "b", false), true),
            // Within it, a change of the same kind as the one in force applies.
            (stamp(201_000, "a", false), stamp(200_000, "b", false), true),
            (stamp(199_000, "a", true), stamp(200_000, "b", true), true),
        ];
        for (change, last, applies) in cases {
            assert_eq!(
                supersedes(change, Some(last), skew),
                applies,
                "{change:?} over {last:?}"
            );
        }
    }

    /// A change is stamped after what this node has seen: by one ms after
    /// its own, by more than the skew window after another node's, and at
    /// its own clock when that is later.
    #[test]
    fn a_change_is_stamped_after_what_was_seen() {
        let skew = 5_000;
        assert_eq!(stamp_after(None, "a", 100, skew), 100);
        assert_eq!(
            stamp_after(Some(stamp(500, "a", true)), "a", 100, skew),
            501
        );
        assert_eq!(
            stamp_after(Some(stamp(500, "a", true)), "a", 900, skew),
            900
        );
        assert_eq!(
            stamp_after(Some(stamp(500, "b", true)), "a", 100, skew),
            5_501
        );
        assert_eq!(
            stamp_after(Some(stamp(500, "b", true)), "a", 9_000, skew),
            9_000
        );
    }

    fn store() -> (tempfile::TempDir, Suspensions) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::datadir::open_path(dir.path()).unwrap();
        let s = Suspensions::open(&db, dir.path()).unwrap();
        (dir, s)
    }

    fn suspension(at_ms: i64, node: &str) -> Suspension {
        Suspension {
            reason: "r".into(),
            by: "shujuju/admin".into(),
            at_ms,
            node: node.into(),
        }
    }

    #[test]
    fn a_stale_resumption_is_recorded_nowhere_and_lifts_nothing() {
        let (_dir, s) = store();
        assert!(
            s.suspend("minzheng", suspension(200_000, "b"), 5_000)
                .unwrap()
        );
        let stale = Resumption {
            at_ms: 100_000,
            node: "a".into(),
        };
        assert!(!s.resume("minzheng", stale, 5_000).unwrap());
        assert!(s.get("minzheng").is_some());
        // An administrator on node a, having seen the suspension, resumes
        // with a clock behind: stamped after it, and applied.
        let at = s.stamp_now("minzheng", "a", 150_000, 5_000);
        assert!(at > 205_000, "{at}");
        assert!(
            s.resume(
                "minzheng",
                Resumption {
                    at_ms: at,
                    node: "a".into()
                },
                5_000
            )
            .unwrap()
        );
        assert!(s.get("minzheng").is_none());
        // And the suspension replayed from the log stays lifted.
        assert!(
            !s.suspend("minzheng", suspension(200_000, "b"), 5_000)
                .unwrap()
        );
        assert!(s.get("minzheng").is_none());
    }

    /// Within the skew window a suspension wins even over a resumption
    /// stamped after it; a later stale resumption is then compared with the
    /// suspension in force, not with the resumption it beat.
    #[test]
    fn a_suspension_that_won_within_the_skew_stays_in_force() {
        let (_dir, s) = store();
        let skew = 5_000;
        let r = |at_ms: i64, node: &str| Resumption {
            at_ms,
            node: node.into(),
        };
        assert!(s.resume("yibao", r(200_000, "b"), skew).unwrap());
        assert!(s.suspend("yibao", suspension(197_000, "a"), skew).unwrap());
        assert!(!s.resume("yibao", r(199_000, "c"), skew).unwrap());
        assert!(!s.resume("yibao", r(201_000, "b"), skew).unwrap());
        assert!(
            s.get("yibao").is_some(),
            "suspended, as on the node that made it"
        );
    }

    /// Changes made at once from many threads: every change saved is the
    /// one enforced.
    #[test]
    fn concurrent_changes_are_each_saved_and_enforced() {
        let (dir, s) = store();
        let s = Arc::new(s);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..20 {
                        let dept = format!("d{t}_{i}");
                        s.suspend(&dept, suspension(1_000 + i, "a"), 5_000).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(s.all().len(), 160, "every suspension saved is in force");
        drop(s);
        let db = crate::datadir::open_path(dir.path()).unwrap();
        let again = Suspensions::open(&db, dir.path()).unwrap();
        assert_eq!(again.all().len(), 160);
    }
}
