//! Idempotent retries of verify and batch: the `Idempotency-Key` header.
//!
//! A department system that got no answer (a timeout, a dropped connection)
//! sends the same request again under the same key. Within 24 hours of the
//! first, a retry of the same request (same dataset, resident, purpose,
//! case reference and body) is admitted again like any request (token,
//! stops, department limit, grant) but is not charged to the grant's quota
//! or the verify budget a second time, and its one audit event is a
//! `replay` naming the first request's events. The same key with another
//! request is refused (`idempotency-key-reused`); a retry while the first is
//! still being answered is asked to wait (`idempotency-key-in-flight`). A
//! key is the caller's own: it is scoped by department and subject.
//!
//! Only keyed digests are kept (of department, subject and key; of the
//! request), never an answer: a replay asks the owner again. On a single
//! node the record is a sled tree, synced before the answer leaves; in
//! cluster mode a PostgreSQL table, so a retry is honoured on any node.
//! A request refused, or whose event could not be made durable, leaves no
//! record: its retry is a first request.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};

use crate::cluster::Cluster;
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::pipeline::admit::single_header;
use crate::pipeline::authn::Principal;
use crate::policy::model::Operation;
use crate::problem::{ClusterRead, HeaderFault, Problem};

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// How long a key is honoured after its first request.
pub const WINDOW_MS: i64 = 24 * 60 * 60 * 1000;
/// A reservation older than this was never finished (its node stopped
/// during the request) and is given up.
pub const ABANDONED_MS: i64 = 5 * 60 * 1000;
/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// What is kept of a request: keyed digests of who asked under which key,
/// and of what was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    /// Of the department, the subject and the key.
    pub key: [u8; 32],
    /// Of the operation, the path, the purpose, the case reference and the body.
    pub request: [u8; 32],
}

/// The first request's events, which a replay names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct First {
    /// The node that answered it.
    pub node: String,
    /// Its first event.
    pub first_seq: u64,
    /// Its last event (a batch has one per resident).
    pub last_seq: u64,
    /// When it was first asked, ms since the epoch.
    pub at_ms: i64,
}

impl First {
    /// The detail of a replay's event: the operation repeated and the
    /// first request's events, then `more` (the operation's own detail,
    /// a JSON object).
    pub fn detail(&self, operation: Operation, more: Option<&str>) -> String {
        let mut detail = serde_json::Map::new();
        detail.insert(
            "replay_of".into(),
            serde_json::json!({
                "operation": operation.as_str(),
                "node": self.node,
                "first_seq": self.first_seq,
                "last_seq": self.last_seq,
            }),
        );
        if let Some(serde_json::Value::Object(more)) =
            more.and_then(|m| serde_json::from_str(m).ok())
        {
            detail.extend(more);
        }
        serde_json::Value::Object(detail).to_string()
    }
}

/// Where a key stands when a request names it.
#[derive(Debug)]
pub enum Begin {
    /// Not seen (or expired): reserved for this request.
    Fresh,
    /// Answered before, for the same request.
    Replay(First),
    /// Used before for another request.
    Reused,
    /// The first request is still being answered.
    InFlight,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    request: [u8; 32],
    first: First,
}

/// The keys seen in the last 24 hours.
pub struct Idempotency {
    node: String,
    backend: Backend,
}

impl std::fmt::Debug for Idempotency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idempotency")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

enum Backend {
    Local {
        tree: sled::Tree,
        data_dir: PathBuf,
        /// Keys reserved by requests being answered, with their request.
        pending: Mutex<HashMap<[u8; 32], [u8; 32]>>,
    },
    Cluster(Arc<Cluster>),
}

/// Why the keys cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// This node's store or disk.
    #[error(transparent)]
    Local(#[from] std::io::Error),
    /// PostgreSQL.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::store::ClusterError),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        Self::Local(e.into())
    }
}

impl Idempotency {
    /// The keys of a cluster's node (in PostgreSQL) or of a single node
    /// (in `db`).
    pub fn open(
        cluster: Option<&Arc<Cluster>>,
        db: &sled::Db,
        config: &crate::config::Config,
    ) -> sled::Result<Arc<Self>> {
        Ok(Arc::new(match cluster {
            Some(c) => Self::cluster(c.clone()),
            None => Self::local(db, &config.data_dir, &config.node_id)?,
        }))
    }

    /// A single node's keys, in the tree `idempotency` of `db`.
    pub fn local(db: &sled::Db, data_dir: &std::path::Path, node: &str) -> sled::Result<Self> {
        Ok(Self {
            node: node.to_owned(),
            backend: Backend::Local {
                tree: db.open_tree("idempotency")?,
                data_dir: data_dir.to_owned(),
                pending: Mutex::default(),
            },
        })
    }

    /// A cluster's keys, in PostgreSQL.
    pub fn cluster(cluster: Arc<Cluster>) -> Self {
        Self {
            node: cluster.node_id.clone(),
            backend: Backend::Cluster(cluster),
        }
    }

    /// Where `fp` stands at `now_ms`; reserves it if it is free.
    pub async fn begin(&self, fp: &Fingerprint, now_ms: i64) -> Result<Begin, StoreError> {
        match &self.backend {
            Backend::Local { tree, pending, .. } => {
                let mut pending = pending.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(request) = pending.get(&fp.key) {
                    return Ok(if *request == fp.request {
                        Begin::InFlight
                    } else {
                        Begin::Reused
                    });
                }
                if let Some(bytes) = tree.get(fp.key)? {
                    // An entry that cannot be read held only digests: it is
                    // taken as absent, like an expired one.
                    if let Ok(s) = postcard::from_bytes::<Stored>(&bytes)
                        && s.first.at_ms >= now_ms - WINDOW_MS
                    {
                        return Ok(if s.request == fp.request {
                            Begin::Replay(s.first)
                        } else {
                            Begin::Reused
                        });
                    }
                }
                pending.insert(fp.key, fp.request);
                Ok(Begin::Fresh)
            }
            Backend::Cluster(c) => Ok(c
                .store
                .idempotency_begin(
                    fp,
                    &self.node,
                    now_ms,
                    now_ms - WINDOW_MS,
                    now_ms - ABANDONED_MS,
                )
                .await?),
        }
    }

    /// Records `first` under the reservation of `fp`, durably (synced on a
    /// single node, committed in PostgreSQL in a cluster).
    async fn commit(&self, fp: &Fingerprint, first: &First) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Local {
                tree,
                data_dir,
                pending,
            } => {
                let stored = Stored {
                    request: fp.request,
                    first: first.clone(),
                };
                let bytes = postcard::to_allocvec(&stored)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                let written = (|| -> Result<(), StoreError> {
                    crate::faults::point(data_dir, "idempotency.insert")?;
                    tree.insert(fp.key, bytes)?;
                    tree.flush()?;
                    crate::faults::point(data_dir, "idempotency.sync")?;
                    std::fs::File::open(data_dir.join("db"))?.sync_data()?;
                    Ok(())
                })();
                pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&fp.key);
                written
            }
            Backend::Cluster(c) => Ok(c.store.idempotency_commit(fp, first).await?),
        }
    }

    /// Gives up the reservation of `fp` (the request was not answered).
    fn release(&self, fp: Fingerprint) {
        match &self.backend {
            Backend::Local { pending, .. } => {
                let mut pending = pending.lock().unwrap_or_else(PoisonError::into_inner);
                if pending.get(&fp.key) == Some(&fp.request) {
                    pending.remove(&fp.key);
                }
            }
            Backend::Cluster(c) => {
                let (c, node) = (c.clone(), self.node.clone());
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(async move {
                        if let Err(e) = c.store.idempotency_release(&fp, &node).await {
                            tracing::warn!(error = %e, "an idempotency key's reservation could not be given up; it lapses after five minutes");
                        }
                    });
                }
            }
        }
    }

    /// Removes the keys older than the window; how many.
    pub async fn purge(&self, now_ms: i64) -> Result<u64, StoreError> {
        let expired = now_ms - WINDOW_MS;
        match &self.backend {
            Backend::Local { tree, .. } => {
                let mut n = 0;
                for entry in tree.iter() {
                    let (key, bytes) = entry?;
                    let old = postcard::from_bytes::<Stored>(&bytes)
                        .map_or(true, |s| s.first.at_ms < expired);
                    if old {
                        tree.remove(key)?;
                        n += 1;
                    }
                }
                Ok(n)
            }
            Backend::Cluster(c) => Ok(c.store.idempotency_purge(expired).await?),
        }
    }

    /// The keys recorded (answered), for tests and statistics.
    pub fn recorded(&self) -> usize {
        match &self.backend {
            Backend::Local { tree, .. } => tree.len(),
            Backend::Cluster(_) => 0,
        }
    }
}

/// A key reserved by a first request; given up when dropped unanswered.
struct Reservation {
    store: Arc<Idempotency>,
    fp: Fingerprint,
    at_ms: i64,
    done: bool,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.done {
            self.store.release(self.fp);
        }
    }
}

/// A request's standing as a retry: no key, a first request holding its
/// key's reservation, or a replay.
#[derive(Default)]
pub struct Retry {
    reservation: Option<Reservation>,
    replay: Option<First>,
}

impl std::fmt::Debug for Retry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retry")
            .field("reserved", &self.reservation.is_some())
            .field("replay", &self.replay)
            .finish()
    }
}

impl Retry {
    /// The first request this one repeats, if it is a replay.
    pub fn replay(&self) -> Option<&First> {
        self.replay.as_ref()
    }

    /// Whether the grant's quota and the verify budget are charged: not
    /// for a replay.
    pub fn charges(&self) -> bool {
        self.replay.is_none()
    }

    /// Once the request's events (`first_seq..=last_seq`) are durable: a
    /// first request's key is recorded before its answer leaves. A record
    /// that fails is logged and the answer still leaves (its retry is then
    /// charged as a first request: nothing is disclosed without an event).
    pub async fn answered(mut self, first_seq: u64, last_seq: u64) {
        let Some(mut r) = self.reservation.take() else {
            return;
        };
        let first = First {
            node: r.store.node.clone(),
            first_seq,
            last_seq,
            at_ms: r.at_ms,
        };
        if let Err(e) = r.store.commit(&r.fp, &first).await {
            tracing::warn!(error = %e, seq = first_seq, "an idempotency key could not be recorded; its retry will be charged again");
        }
        r.done = true;
    }
}

/// The `Idempotency-Key` of a request, if it names one: 1 to 255 visible
/// ASCII characters, bare or as a structured-field string (`"…"`, RFC 8941).
pub fn key_of(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(raw) = single_header(headers, HEADER)? else {
        return Ok(None);
    };
    let key = raw
        .strip_prefix('"')
        .and_then(|k| k.strip_suffix('"'))
        .unwrap_or(raw);
    let visible = |c: char| c.is_ascii_graphic() && c != '"' && c != '\\';
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.chars().all(visible) {
        return Err(Problem::InvalidHeader {
            name: "Idempotency-Key".into(),
            fault: HeaderFault::IdempotencyKey { max: MAX_KEY_LEN },
        }
        .into());
    }
    Ok(Some(key))
}

/// The idempotency stage of a verify or batch, after the request's inputs
/// and before the department limit: a request naming a key reserves it
/// (`retry` then holds the reservation), is found to repeat an answered
/// one (`retry` then names it), or is refused.
pub async fn admit(
    gw: &Gateway,
    principal: &Principal,
    headers: &HeaderMap,
    request: &[&[u8]],
    retry: &mut Retry,
) -> Result<(), ApiError> {
    let Some(key) = key_of(headers)? else {
        return Ok(());
    };
    let fp = Fingerprint {
        key: gw.pseudonyms.digest(
            "idempotency key",
            &[
                principal.dept.as_str().as_bytes(),
                principal.subject.as_bytes(),
                key.as_bytes(),
            ],
        ),
        request: gw.pseudonyms.digest("idempotent request", request),
    };
    let now = gw.clock.unix_millis();
    let begun = gw.idempotency.begin(&fp, now).await.map_err(|e| {
        tracing::warn!(error = %e, "idempotency keys cannot be read");
        match e {
            StoreError::Cluster(_) => ApiError::from(Problem::CentralAuditUnavailable(
                ClusterRead::IdempotencyKey,
            )),
            StoreError::Local(_) => ApiError::audit_unavailable(),
        }
    })?;
    match begun {
        Begin::Fresh => {
            retry.reservation = Some(Reservation {
                store: gw.idempotency.clone(),
                fp,
                at_ms: now,
                done: false,
            });
        }
        Begin::Replay(first) => retry.replay = Some(first),
        Begin::Reused => return Err(Problem::IdempotencyKeyReused.into()),
        Begin::InFlight => return Err(Problem::IdempotencyKeyInFlight.into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(key: u8, request: u8) -> Fingerprint {
        Fingerprint {
            key: [key; 32],
            request: [request; 32],
        }
    }

    fn store() -> (tempfile::TempDir, Arc<Idempotency>) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::datadir::open_path(dir.path()).unwrap();
        let s = Idempotency::local(&db, dir.path(), "n1").unwrap();
        (dir, Arc::new(s))
    }

    #[tokio::test]
    async fn a_key_is_reserved_then_replayed_and_refused_for_another_request() {
        let (_dir, s) = store();
        let now = 1_000_000_000;
        assert!(matches!(
            s.begin(&fp(1, 1), now).await.unwrap(),
            Begin::Fresh
        ));
        // While the first is answered.
        assert!(matches!(
            s.begin(&fp(1, 1), now).await.unwrap(),
            Begin::InFlight
        ));
        assert!(matches!(
            s.begin(&fp(1, 2), now).await.unwrap(),
            Begin::Reused
        ));
        let first = First {
            node: "n1".into(),
            first_seq: 7,
            last_seq: 9,
            at_ms: now,
        };
        s.commit(&fp(1, 1), &first).await.unwrap();
        match s.begin(&fp(1, 1), now + 1).await.unwrap() {
            Begin::Replay(f) => assert_eq!(f, first),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            s.begin(&fp(1, 2), now + 1).await.unwrap(),
            Begin::Reused
        ));
        // After the window, the key is free again; a purge removes it.
        assert!(matches!(
            s.begin(&fp(1, 2), now + WINDOW_MS + 1).await.unwrap(),
            Begin::Fresh
        ));
        s.release(fp(1, 2));
        assert_eq!(s.purge(now + WINDOW_MS + 1).await.unwrap(), 1);
        assert_eq!(s.recorded(), 0);
    }

    #[tokio::test]
    async fn an_unanswered_reservation_is_given_up() {
        let (_dir, s) = store();
        let mut retry = Retry::default();
        assert!(matches!(s.begin(&fp(3, 3), 0).await.unwrap(), Begin::Fresh));
        retry.reservation = Some(Reservation {
            store: s.clone(),
            fp: fp(3, 3),
            at_ms: 0,
            done: false,
        });
        drop(retry);
        assert!(matches!(s.begin(&fp(3, 3), 0).await.unwrap(), Begin::Fresh));
    }

    #[test]
    fn a_key_is_visible_ascii_bare_or_quoted() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(HEADER, v.parse().unwrap());
            key_of(&h).map(|k| k.map(str::to_owned))
        };
        assert_eq!(with("abc-123").unwrap().as_deref(), Some("abc-123"));
        assert_eq!(with("\"abc-123\"").unwrap().as_deref(), Some("abc-123"));
        assert_eq!(key_of(&HeaderMap::new()).unwrap(), None);
        for bad in ["\"\"", "a b", &"k".repeat(256), "a\"b"] {
            assert_eq!(with(bad).unwrap_err().slug(), "invalid-header", "{bad:?}");
        }
    }

    #[test]
    fn a_replay_detail_names_the_first_events_before_the_operations_own() {
        let first = First {
            node: "n1".into(),
            first_seq: 7,
            last_seq: 9,
            at_ms: 0,
        };
        let d: serde_json::Value =
            serde_json::from_str(&first.detail(Operation::Verify, Some(r#"{"results":[1]}"#)))
                .unwrap();
        assert_eq!(d["replay_of"]["operation"], "verify");
        assert_eq!(d["replay_of"]["first_seq"], 7);
        assert_eq!(d["replay_of"]["last_seq"], 9);
        assert_eq!(d["results"][0], 1);
    }
}
