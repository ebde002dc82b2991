//! Token revocations: tokens refused although their signature and expiry
//! are valid (a leaked clerk token, a compromised system).
//!
//! A revocation names one token (`jti`) or every token of a subject issued
//! before a time ("every token of this clerk issued before now"), and
//! carries an expiry after which it is dropped: once every token it could
//! match has expired it has no work left, so the list cannot grow without
//! bound. It is checked after signature verification, so it applies to
//! tokens served from the verified-token cache too; an empty list costs one
//! atomic load.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{DurableMap, Edit, StopsError};

const TREE: &str = "admin/denied_tokens";

/// A token id or a subject, as a revocation names it: 1 to 128 characters,
/// none of them a control character.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokenRef(String);

impl TokenRef {
    /// Checks the text.
    pub fn parse(s: &str) -> Result<Self, InvalidTarget> {
        if s.is_empty() || s.len() > 128 || s.chars().any(char::is_control) {
            return Err(InvalidTarget);
        }
        Ok(Self(s.to_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A revocation that names neither exactly one token nor one subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "a revocation names either a jti, or a sub (with an optional issued_before); each 1 to 128 printable characters"
)]
pub struct InvalidTarget;

/// What a revocation refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationTarget {
    /// One token, by its `jti`.
    Token(TokenRef),
    /// Every token of a subject issued (`iat`) before `issued_before`
    /// (seconds since the epoch; all of them when absent); tokens without
    /// `iat` are refused too.
    Subject {
        /// The subject (`sub`).
        sub: TokenRef,
        /// Tokens issued before this are refused.
        issued_before: Option<i64>,
    },
}

impl RevocationTarget {
    /// The target named by the members of a request or a stored entry:
    /// exactly one of `jti` and `sub`, and `issued_before` only with `sub`.
    pub fn new(
        jti: Option<&str>,
        sub: Option<&str>,
        issued_before: Option<i64>,
    ) -> Result<Self, InvalidTarget> {
        match (jti, sub) {
            (Some(j), None) if issued_before.is_none() => Ok(Self::Token(TokenRef::parse(j)?)),
            (None, Some(s)) => Ok(Self::Subject {
                sub: TokenRef::parse(s)?,
                issued_before,
            }),
            _ => Err(InvalidTarget),
        }
    }

    /// Its key in the store: `jti:<jti>` or `sub:<sub>`.
    fn key(&self) -> String {
        match self {
            Self::Token(j) => key("jti:", j.as_str()),
            Self::Subject { sub, .. } => key("sub:", sub.as_str()),
        }
    }
}

fn key(prefix: &str, id: &str) -> String {
    let mut k = String::with_capacity(prefix.len() + id.len());
    k.push_str(prefix);
    k.push_str(id);
    k
}

/// One revocation in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Stored", into = "Stored")]
pub struct Revocation {
    /// What it refuses.
    pub target: RevocationTarget,
    /// When it is dropped, ms since the epoch.
    pub expires_ms: i64,
    /// Why.
    pub reason: String,
    /// Who made it (`dept/subject`).
    pub by: String,
    /// When, ms since the epoch.
    pub at_ms: i64,
}

impl Revocation {
    /// Its id on the deny-list: `jti:` and the token's id, or `sub:` and
    /// the subject (one entry per token or subject).
    pub fn id(&self) -> String {
        self.target.key()
    }

    /// The `jti` it names, if it names one token.
    pub fn jti(&self) -> Option<&str> {
        match &self.target {
            RevocationTarget::Token(j) => Some(j.as_str()),
            RevocationTarget::Subject { .. } => None,
        }
    }

    /// The subject it names, if it names one.
    pub fn sub(&self) -> Option<&str> {
        match &self.target {
            RevocationTarget::Token(_) => None,
            RevocationTarget::Subject { sub, .. } => Some(sub.as_str()),
        }
    }

    /// With a subject: tokens issued before this (seconds) are refused.
    pub fn issued_before(&self) -> Option<i64> {
        match &self.target {
            RevocationTarget::Token(_) => None,
            RevocationTarget::Subject { issued_before, .. } => *issued_before,
        }
    }
}

/// The stored and shared form (JSON), as it has always been written.
#[derive(Serialize, Deserialize)]
struct Stored {
    jti: Option<String>,
    sub: Option<String>,
    issued_before: Option<i64>,
    expires_ms: i64,
    reason: String,
    by: String,
    at_ms: i64,
}

impl TryFrom<Stored> for Revocation {
    type Error = InvalidTarget;

    fn try_from(s: Stored) -> Result<Self, InvalidTarget> {
        Ok(Self {
            target: RevocationTarget::new(s.jti.as_deref(), s.sub.as_deref(), s.issued_before)?,
            expires_ms: s.expires_ms,
            reason: s.reason,
            by: s.by,
            at_ms: s.at_ms,
        })
    }
}

impl From<Revocation> for Stored {
    fn from(r: Revocation) -> Self {
        let (jti, sub, issued_before) = match r.target {
            RevocationTarget::Token(j) => (Some(j.0), None, None),
            RevocationTarget::Subject { sub, issued_before } => (None, Some(sub.0), issued_before),
        };
        Self {
            jti,
            sub,
            issued_before,
            expires_ms: r.expires_ms,
            reason: r.reason,
            by: r.by,
            at_ms: r.at_ms,
        }
    }
}

/// The revocations in force.
#[derive(Debug)]
pub struct Revocations {
    map: DurableMap<Revocation>,
}

impl Revocations {
    /// Loads the revocations from `db`, dropping the expired ones.
    pub fn open(db: &sled::Db, data_dir: &Path, now_ms: i64) -> Result<Self, StopsError> {
        Ok(Self {
            map: DurableMap::open(db, TREE, data_dir, |r: &Revocation| r.expires_ms > now_ms)?,
        })
    }

    /// The revocation that refuses a token with these claims, if any.
    pub fn refuses(
        &self,
        jti: Option<&str>,
        sub: &str,
        iat: Option<i64>,
        now_ms: i64,
    ) -> Option<Revocation> {
        if self.map.is_empty() {
            return None;
        }
        if let Some(r) = jti.and_then(|j| self.map.get(&key("jti:", j)))
            && r.expires_ms > now_ms
        {
            return Some(r);
        }
        let r = self.map.get(&key("sub:", sub))?;
        let before = r.issued_before().unwrap_or(i64::MAX);
        (r.expires_ms > now_ms && iat.is_none_or(|t| t < before)).then_some(r)
    }

    /// Adds a revocation (replacing one for the same token or subject);
    /// durable before it takes effect. Expired ones are dropped on the way.
    pub fn add(&self, revocation: Revocation, now_ms: i64) -> Result<(), StopsError> {
        self.add_many(std::iter::once(revocation), now_ms)
    }

    /// Adds many revocations in one durable batch, then puts them in force;
    /// the expired ones go in the same batch.
    pub fn add_many(
        &self,
        revocations: impl IntoIterator<Item = Revocation>,
        now_ms: i64,
    ) -> Result<(), StopsError> {
        // The expired ones are chosen under the map's own lock, so a
        // revocation added meanwhile is never removed as expired.
        self.map.apply_with(|current| {
            let expired: Vec<Edit<Revocation>> = current
                .iter()
                .filter(|(_, r)| r.expires_ms <= now_ms)
                .map(|(k, _)| Edit::Remove(k.clone()))
                .collect();
            expired.into_iter().chain(
                revocations
                    .into_iter()
                    .map(|r| Edit::Put(r.target.key(), r)),
            )
        })
    }

    /// Lifts the entry `id` (`jti:…` or `sub:…`, as [`Revocation::id`]
    /// names it), durably, if the one in force is the one made at `at_ms`
    /// (any, when none is named): a lift never removes a denial made after
    /// the one it was asked for. Whether it removed one.
    pub fn lift(&self, id: &str, at_ms: Option<i64>) -> Result<bool, StopsError> {
        let mut lifted = false;
        self.map.apply_with(|all| {
            lifted = all
                .get(id)
                .is_some_and(|r| at_ms.is_none_or(|at| r.at_ms == at));
            lifted.then(|| Edit::Remove(id.to_owned()))
        })?;
        Ok(lifted)
    }

    /// Every revocation in force: tokens by `jti`, then subjects, each in order.
    pub fn all(&self) -> Vec<Revocation> {
        // Keys are `jti:…` and `sub:…`: in their order, tokens come first.
        let all = self.map.all();
        let mut keys: Vec<&String> = all.keys().collect();
        keys.sort();
        keys.into_iter().map(|k| all[k].clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_one_token_or_one_subject() {
        assert!(RevocationTarget::new(Some("t1"), None, None).is_ok());
        assert!(RevocationTarget::new(Some(&"j".repeat(128)), None, None).is_ok());
        assert_eq!(
            RevocationTarget::new(Some(&"j".repeat(129)), None, None),
            Err(InvalidTarget)
        );
        assert!(RevocationTarget::new(None, Some("clerk"), Some(5)).is_ok());
        for (jti, sub, before) in [
            (None, None, None),
            (Some("t1"), Some("clerk"), None),
            (Some("t1"), None, Some(5)),
            (Some(""), None, None),
            (None, Some("a\nb"), None),
        ] {
            assert_eq!(
                RevocationTarget::new(jti, sub, before),
                Err(InvalidTarget),
                "{jti:?} {sub:?} {before:?}"
            );
        }
        // Nor can one be read back from a stored entry.
        let stored = r#"{"jti":"a","sub":"b","issued_before":null,"expires_ms":1,"reason":"r","by":"x","at_ms":0}"#;
        assert!(serde_json::from_str::<Revocation>(stored).is_err());
    }

    #[test]
    fn the_stored_form_is_unchanged() {
        let r = Revocation {
            target: RevocationTarget::new(None, Some("clerk"), Some(7)).unwrap(),
            expires_ms: 9,
            reason: "leaked".into(),
            by: "shujuju/admin".into(),
            at_ms: 1,
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"jti":null,"sub":"clerk","issued_before":7,"expires_ms":9,"reason":"leaked","by":"shujuju/admin","at_ms":1}"#
        );
        assert_eq!(serde_json::from_str::<Revocation>(&text).unwrap(), r);
        assert_eq!(
            (r.jti(), r.sub(), r.issued_before()),
            (None, Some("clerk"), Some(7))
        );
        let one = Revocation {
            target: RevocationTarget::new(Some("t-1"), None, None).unwrap(),
            ..r
        };
        assert_eq!(
            (one.jti(), one.sub(), one.issued_before()),
            (Some("t-1"), None, None)
        );
    }

    #[test]
    fn a_lift_removes_the_denial_it_names_never_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::datadir::open_path(dir.path()).unwrap();
        let list = Revocations::open(&db, dir.path(), 0).unwrap();
        let deny = |at_ms| Revocation {
            target: RevocationTarget::new(None, Some("clerk"), Some(100)).unwrap(),
            expires_ms: 1_000_000,
            reason: "r".into(),
            by: "b".into(),
            at_ms,
        };
        list.add(deny(1), 0).unwrap();
        // Denied again before a lift of the first one arrives: it stays.
        list.add(deny(5), 0).unwrap();
        assert!(!list.lift("sub:clerk", Some(1)).unwrap());
        assert!(list.refuses(None, "clerk", Some(1), 0).is_some());
        assert!(list.lift("sub:clerk", Some(5)).unwrap());
        assert!(list.refuses(None, "clerk", Some(1), 0).is_none());
        assert!(
            !list.lift("sub:clerk", None).unwrap(),
            "nothing left to lift"
        );
    }

    #[test]
    fn a_subject_revocation_refuses_tokens_issued_before_it_and_expires() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::datadir::open_path(dir.path()).unwrap();
        let list = Revocations::open(&db, dir.path(), 0).unwrap();
        assert!(list.refuses(None, "clerk", Some(1), 0).is_none());
        list.add(
            Revocation {
                target: RevocationTarget::new(None, Some("clerk"), Some(100)).unwrap(),
                expires_ms: 1_000_000,
                reason: "r".into(),
                by: "b".into(),
                at_ms: 0,
            },
            0,
        )
        .unwrap();
        assert!(list.refuses(None, "clerk", Some(99), 0).is_some());
        assert!(list.refuses(None, "clerk", None, 0).is_some());
        assert!(list.refuses(None, "clerk", Some(100), 0).is_none());
        assert!(list.refuses(None, "other", Some(1), 0).is_none());
        assert!(list.refuses(None, "clerk", Some(1), 1_000_000).is_none());
        // One token, until its revocation expires (exclusive).
        list.add(
            Revocation {
                target: RevocationTarget::new(Some("t-9"), None, None).unwrap(),
                expires_ms: 2_000,
                reason: "r".into(),
                by: "b".into(),
                at_ms: 0,
            },
            0,
        )
        .unwrap();
        assert!(list.refuses(Some("t-9"), "x", None, 1_999).is_some());
        assert!(list.refuses(Some("t-9"), "x", None, 2_000).is_none());
        drop(list);
        // Reopened before they expire, both are still in force.
        let list = Revocations::open(&db, dir.path(), 500).unwrap();
        assert!(list.refuses(None, "clerk", Some(99), 500).is_some());
        assert!(list.refuses(Some("t-9"), "x", None, 500).is_some());
        drop(list);
        assert!(
            Revocations::open(&db, dir.path(), 1_000_000)
                .unwrap()
                .all()
                .is_empty()
        );
    }

    /// Many administrators (or a node replaying the cluster's log) adding
    /// at once, while entries expire: the entry each one added last is in
    /// force, none removed as expired by another's stale view.
    #[test]
    fn concurrent_adds_never_drop_a_fresh_revocation_as_expired() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::datadir::open_path(dir.path()).unwrap();
        let list = std::sync::Arc::new(Revocations::open(&db, dir.path(), 0).unwrap());
        let threads: Vec<_> = (0..6)
            .map(|t| {
                let list = list.clone();
                std::thread::spawn(move || {
                    let sub = format!("clerk-{t}");
                    for now in 1..=150 {
                        // Each one expires before this thread's next add.
                        let r = Revocation {
                            target: RevocationTarget::new(None, Some(&sub), Some(100)).unwrap(),
                            expires_ms: now * 10 + 5,
                            reason: "r".into(),
                            by: "b".into(),
                            at_ms: now * 10,
                        };
                        list.add(r, now * 10).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        for t in 0..6 {
            assert!(
                list.refuses(None, &format!("clerk-{t}"), Some(0), 1500)
                    .is_some(),
                "clerk-{t}'s last revocation was removed"
            );
        }
    }
}
