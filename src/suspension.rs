//! Department suspension: the emergency stop for a breached department.
//!
//! Suspensions are kept in sled (`admin/suspensions`, department → record)
//! and, for the request path, in an `ArcSwap`ed map: a check costs one atomic
//! load and one map lookup, and a change reaches every connection, open ones
//! included, on its next request. A change is written and synced to disk
//! before it is swapped in, so it survives a restart or a power cut; changes
//! are made one at a time, so none is saved but not enforced.
//!
//! Stops are ordered by the time they were made at their node (a cluster's
//! nodes share them through PostgreSQL, and one cut off from it makes them
//! alone): a suspension or resumption older than the newest change in force
//! for the same department is recorded but not applied, so a resumption
//! made on a node cut off from the others never lifts a suspension made
//! later elsewhere. Within the clock-skew window between two nodes a
//! suspension wins. Each department's last resumption is kept too
//! (`admin/resumptions`), for that comparison.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

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

/// The suspended departments.
#[derive(Debug)]
pub struct Suspensions {
    tree: sled::Tree,
    resumed: sled::Tree,
    data_dir: PathBuf,
    /// Held by every change, from its decision to its swap.
    changing: std::sync::Mutex<()>,
    current: ArcSwap<BTreeMap<String, Suspension>>,
}

impl Suspensions {
    /// Loads the suspensions from `db`, the database in `data_dir`.
    pub fn open(db: &sled::Db, data_dir: &Path) -> Result<Self, sled::Error> {
        let tree = db.open_tree(TREE)?;
        let mut map = BTreeMap::new();
        for item in &tree {
            let (k, v) = item?;
            if let (Ok(dept), Ok(s)) = (
                String::from_utf8(k.to_vec()),
                serde_json::from_slice::<Suspension>(&v),
            ) {
                map.insert(dept, s);
            }
        }
        Ok(Self {
            tree,
            resumed: db.open_tree(RESUMED)?,
            data_dir: data_dir.to_owned(),
            changing: std::sync::Mutex::new(()),
            current: ArcSwap::from_pointee(map),
        })
    }

    /// The suspension of `dept`, if it is suspended.
    pub fn get(&self, dept: &str) -> Option<Suspension> {
        let map = self.current.load();
        if map.is_empty() {
            return None;
        }
        map.get(dept).cloned()
    }

    /// Every suspension in force.
    pub fn all(&self) -> Arc<BTreeMap<String, Suspension>> {
        self.current.load_full()
    }

    fn resumption(&self, dept: &str) -> Result<Option<Resumption>, sled::Error> {
        Ok(self
            .resumed
            .get(dept.as_bytes())?
            .and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// The time to stamp a change made on `node` now for `dept`: its clock,
    /// but after every change this node has seen for the department (by
    /// more than the skew window when that one came from another node), so
    /// that what an administrator does after seeing a stop is ordered after it.
    pub fn stamp_now(&self, dept: &str, node: &str, now_ms: i64, skew_ms: i64) -> i64 {
        let map = self.current.load();
        let resumption = self.resumption(dept).ok().flatten();
        stamp_after(
            last(map.get(dept), resumption.as_ref()),
            node,
            now_ms,
            skew_ms,
        )
    }

    /// Suspends `dept` by a change made on this node (`suspension.node`)
    /// now: stamped after every change seen for the department, under the
    /// same lock as the change itself. Returns the stamp.
    pub fn suspend_here(
        &self,
        dept: &str,
        mut suspension: Suspension,
        skew_ms: i64,
    ) -> Result<i64, sled::Error> {
        let _one = self
            .changing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        suspension.at_ms = self.stamp_now(dept, &suspension.node, suspension.at_ms, skew_ms);
        let at = suspension.at_ms;
        self.store_suspension(dept, suspension)?;
        Ok(at)
    }

    /// Resumes `dept` by a change made on `node` at `now_ms`, stamped as
    /// [`Self::suspend_here`] stamps. Returns the stamp.
    pub fn resume_here(
        &self,
        dept: &str,
        node: &str,
        now_ms: i64,
        skew_ms: i64,
    ) -> Result<i64, sled::Error> {
        let _one = self
            .changing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let at_ms = self.stamp_now(dept, node, now_ms, skew_ms);
        self.store_resumption(
            dept,
            Resumption {
                at_ms,
                node: node.to_owned(),
            },
        )?;
        Ok(at_ms)
    }

    /// Whether a change stamped `change` would be applied now.
    pub fn would_apply(&self, dept: &str, change: Stamp<'_>, skew_ms: i64) -> bool {
        let map = self.current.load();
        let resumption = self.resumption(dept).ok().flatten();
        supersedes(change, last(map.get(dept), resumption.as_ref()), skew_ms)
    }

    /// Suspends `dept` (or replaces its reason) unless a newer change is in
    /// force; durable before it takes effect. Returns whether it was applied.
    pub fn suspend(
        &self,
        dept: &str,
        suspension: Suspension,
        skew_ms: i64,
    ) -> Result<bool, sled::Error> {
        let stamp = Stamp {
            at_ms: suspension.at_ms,
            node: &suspension.node,
            suspends: true,
        };
        self.change_if_newer(dept, stamp, skew_ms, || {
            self.store_suspension(dept, suspension.clone())
        })
    }

    /// Makes a change stamped `stamp` under the lock every change holds,
    /// unless a newer change for `dept` is in force; returns whether it did.
    fn change_if_newer(
        &self,
        dept: &str,
        stamp: Stamp<'_>,
        skew_ms: i64,
        store: impl FnOnce() -> Result<(), sled::Error>,
    ) -> Result<bool, sled::Error> {
        let _one = self
            .changing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !self.would_apply(dept, stamp, skew_ms) {
            return Ok(false);
        }
        store()?;
        Ok(true)
    }

    /// Saves, syncs, then enforces a suspension (the caller holds `changing`).
    fn store_suspension(&self, dept: &str, suspension: Suspension) -> Result<(), sled::Error> {
        let bytes = serde_json::to_vec(&suspension).unwrap_or_default();
        crate::faults::point(&self.data_dir, "stops.insert")?;
        self.tree.insert(dept.as_bytes(), bytes)?;
        crate::durable::sync_tree(&self.tree, &self.data_dir)?;
        let mut map = (**self.current.load()).clone();
        map.insert(dept.to_owned(), suspension);
        self.current.store(Arc::new(map));
        Ok(())
    }

    /// Lifts the suspension of `dept` unless a newer change is in force;
    /// returns whether it was applied (a department not suspended is
    /// resumed all the same: the resumption is recorded for the order).
    pub fn resume(
        &self,
        dept: &str,
        resumption: Resumption,
        skew_ms: i64,
    ) -> Result<bool, sled::Error> {
        let stamp = Stamp {
            at_ms: resumption.at_ms,
            node: &resumption.node,
            suspends: false,
        };
        self.change_if_newer(dept, stamp, skew_ms, || {
            self.store_resumption(dept, resumption.clone())
        })
    }

    /// Saves, syncs, then enforces a resumption (the caller holds `changing`).
    fn store_resumption(&self, dept: &str, resumption: Resumption) -> Result<(), sled::Error> {
        crate::faults::point(&self.data_dir, "stops.insert")?;
        self.resumed.insert(
            dept.as_bytes(),
            serde_json::to_vec(&resumption).unwrap_or_default(),
        )?;
        self.tree.remove(dept.as_bytes())?;
        crate::durable::sync_tree(&self.tree, &self.data_dir)?;
        let mut map = (**self.current.load()).clone();
        map.remove(dept);
        self.current.store(Arc::new(map));
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
        ];
        for (change, last, applies) in cases {
            assert_eq!(
                supersedes(change, Some(last), skew),
                applies,
                "{change:?} over {last:?}"
            );
        }
    }

    fn store() -> (tempfile::TempDir, Suspensions) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
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
        let db = sled::open(dir.path()).unwrap();
        let again = Suspensions::open(&db, dir.path()).unwrap();
        assert_eq!(again.all().len(), 160);
    }
}
