//! The phases of a connection, each bounded in time: after the handshake a
//! first request within `limits.first_request_timeout_secs`, then between
//! requests at most `limits.keepalive_idle_secs` (HTTP/1.1) or
//! `limits.http2_idle_timeout_secs` (HTTP/2) with nothing in flight; and a
//! cap on the connections of one source address. Idle connections that sent
//! nothing can then no longer hold every slot of `limits.max_connections`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// What a connection's requests have done: how many are in flight (a
/// response body still being sent counts), how many were served, and when
/// the last one started or ended.
#[derive(Debug)]
pub(crate) struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    served: AtomicU64,
    /// Milliseconds after `opened` of the last start or end of a request.
    last_ms: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Release);
    }

    fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
    }

    fn end(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.touch();
    }

    /// Resolves once the connection has been idle too long: nothing in
    /// flight, and no request for `first` (before the first request) or
    /// `idle` (after it).
    pub(crate) async fn idle_for_too_long(&self, first: Duration, idle: Duration) {
        loop {
            let limit = if self.served.load(Ordering::Acquire) == 0 {
                first
            } else {
                idle
            };
            let last = Duration::from_millis(self.last_ms.load(Ordering::Acquire));
            let quiet = self.opened.elapsed().saturating_sub(last);
            if self.in_flight.load(Ordering::Acquire) == 0 && quiet >= limit {
                return;
            }
            // Look again when the limit would be reached (a request in
            // flight now will have touched `last` by then), and at least as
            // often as the shorter limit, which applies once a first request
            // has come.
            let wait = limit
                .saturating_sub(quiet)
                .min(first.min(idle))
                .max(Duration::from_millis(50));
            tokio::time::sleep(wait).await;
        }
    }
}

/// A request in flight on its connection, from its arrival until it is
/// answered or dropped (a reset HTTP/2 stream, a client gone): kept in the
/// request's extensions.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Activity>);

impl InFlight {
    /// A request arrived.
    pub(crate) fn new(activity: Arc<Activity>) -> Arc<Self> {
        activity.served.fetch_add(1, Ordering::AcqRel);
        activity.begin();
        Arc::new(Self(activity))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// A response body in flight until it is sent or dropped.
pub(crate) struct EndGuard {
    inner: axum::body::Body,
    activity: Arc<Activity>,
}

impl EndGuard {
    pub(crate) fn new(inner: axum::body::Body, activity: Arc<Activity>) -> Self {
        activity.begin();
        Self { inner, activity }
    }
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.activity.end();
    }
}

impl axum::body::HttpBody for EndGuard {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The open connections, for the accept loop: at the limit it closes the
/// connection idle the longest rather than refuse a new one.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Registered>>,
}

/// A registered connection: its activity, and how to ask it to close.
type Registered = (Arc<Activity>, Arc<tokio::sync::Notify>);

impl Registry {
    /// Registers a connection; the slot leaves the registry when dropped,
    /// and its `Notify` fires when the connection is to close.
    pub(crate) fn register(
        self: &Arc<Self>,
        activity: Arc<Activity>,
    ) -> (RegistrySlot, Arc<tokio::sync::Notify>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let close = Arc::new(tokio::sync::Notify::new());
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, (activity, close.clone()));
        (
            RegistrySlot {
                id,
                of: self.clone(),
            },
            close,
        )
    }

    /// Asks the connection idle the longest (nothing in flight) to close;
    /// false when every connection is busy.
    pub(crate) fn close_oldest_idle(&self) -> bool {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let oldest = open
            .iter()
            .filter(|(_, (a, _))| a.in_flight.load(Ordering::Acquire) == 0)
            .min_by_key(|(_, (a, _))| {
                a.opened + Duration::from_millis(a.last_ms.load(Ordering::Acquire))
            })
            .map(|(id, _)| *id);
        match oldest.and_then(|id| open.remove(&id)) {
            Some((_, close)) => {
                close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A connection's entry in the [`Registry`].
#[derive(Debug)]
pub(crate) struct RegistrySlot {
    id: u64,
    of: Arc<Registry>,
}

impl Drop for RegistrySlot {
    fn drop(&mut self) {
        self.of
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// Open connections per source address (IPv6 by /64), capped.
#[derive(Debug, Default)]
pub(crate) struct PerSource {
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerSource {
    /// Counts a connection of `ip` unless it already has `max`; the
    /// returned guard gives the slot back.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<SourceSlot> {
        let key = crate::pipeline::unauthenticated::source_key(ip);
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(key).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            key,
            of: self.clone(),
        })
    }
}

/// One connection's place in its source's count.
#[derive(Debug)]
pub(crate) struct SourceSlot {
    key: IpAddr,
    of: Arc<PerSource>,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut open = self
            .of
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_is_idle_once_nothing_is_in_flight_for_long_enough() {
        let activity = Arc::new(Activity::new());
        let request = InFlight::new(activity.clone());
        let body = EndGuard::new(axum::body::Body::empty(), activity.clone());
        drop(request);
        // A body still being sent: not idle.
        let waited = tokio::time::timeout(
            Duration::from_millis(300),
            activity.idle_for_too_long(Duration::from_secs(60), Duration::from_millis(100)),
        )
        .await;
        assert!(waited.is_err(), "idle while an answer was being sent");
        drop(body);
        let waited = tokio::time::timeout(
            Duration::from_secs(2),
            activity.idle_for_too_long(Duration::from_secs(60), Duration::from_millis(100)),
        )
        .await;
        assert!(waited.is_ok(), "not idle after the answer was sent");
    }
}
