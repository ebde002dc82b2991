//! Stage one of the request path: the connection a request came on, what
//! the TLS accept loop learned about it (peer, client certificate, its
//! department) and what its requests remember across each other.
//!
//! Invariant: a request sees exactly the connection it arrived on, through
//! [`CONNECTION`], for the whole of its handling.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The connection a request came on: one shared [`Connection`], cloned
/// into each request as one reference count.
#[derive(Debug, Clone, Default)]
pub struct ConnInfo(Arc<Connection>);

impl ConnInfo {
    /// Shares `connection` with the requests that come on it.
    pub fn new(connection: Connection) -> Self {
        Self(Arc::new(connection))
    }
}

impl std::ops::Deref for ConnInfo {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.0
    }
}

/// What the TLS accept loop learned about a connection, and what its
/// requests remember across each other (the last verified token).
#[derive(Debug, Default)]
pub struct Connection {
    /// The peer's address.
    pub peer: Option<SocketAddr>,
    /// SHA-256 of the verified client certificate, if one was presented.
    pub cert_fingerprint: Option<[u8; 32]>,
    /// Whether that certificate still passes the client trust in force (a
    /// CRL loaded since the handshake may revoke it).
    pub cert_status: Option<Arc<dyn ClientCertStatus>>,
    /// How far the connection's writes got (what an export waits on before
    /// it counts as delivered).
    pub writes: Option<Arc<WriteProgress>>,
    /// The department the client certificate names (its subject's CN).
    pub cert_department: Option<Arc<str>>,
    /// The last token verified on this connection.
    pub token_memo: crate::pipeline::authn::TokenMemo,
    /// The peer's address as its events record it, written once.
    pub source: std::sync::OnceLock<crate::audit::event::Text>,
}

impl Connection {
    /// The peer's address as text (empty if unknown), formatted once per
    /// connection.
    pub fn source(&self) -> crate::audit::event::Text {
        self.source
            .get_or_init(|| self.peer.map(|p| p.to_string()).unwrap_or_default().into())
            .clone()
    }
}

tokio::task_local! {
    /// The connection a request came on, for the whole of its handling:
    /// authentication binds the token to it (the certificate's department,
    /// RFC 8705 `cnf`) wherever a handler authenticates.
    pub static CONNECTION: ConnInfo;
}

/// What a connection's writer reports: each flush that succeeded, and
/// whether a write failed or the connection went away. An answer that must
/// know it was delivered (an export, which retention then counts) waits for
/// a successful flush after its last byte.
#[derive(Debug, Default)]
pub struct WriteProgress {
    flushes: std::sync::atomic::AtomicU64,
    ended: std::sync::atomic::AtomicBool,
    changed: tokio::sync::Notify,
}

impl WriteProgress {
    /// A flush handed everything written so far to the kernel.
    pub fn flushed(&self) {
        self.flushes
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.changed.notify_waiters();
    }

    /// A write or flush failed, or the connection closed: nothing more is delivered.
    pub fn ended(&self) {
        self.ended.store(true, std::sync::atomic::Ordering::Release);
        self.changed.notify_waiters();
    }

    /// Successful flushes so far.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether a flush succeeded after `flushes` had been counted, waiting
    /// at most `within`; false once the connection failed or closed first.
    pub async fn flushed_since(&self, flushes: u64, within: Duration) -> bool {
        let wait = async {
            loop {
                let changed = self.changed.notified();
                if self.flushes() > flushes {
                    return true;
                }
                if self.ended.load(std::sync::atomic::Ordering::Acquire) {
                    return false;
                }
                changed.await;
            }
        };
        tokio::time::timeout(within, wait).await.unwrap_or(false)
    }
}

/// The standing of a connection's client certificate, checked again on the
/// requests that follow the handshake.
pub trait ClientCertStatus: Send + Sync + std::fmt::Debug {
    /// Whether the certificate still passes; once it fails it stays failed.
    fn still_valid(&self) -> bool;
}
