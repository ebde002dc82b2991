//! One connection, from its accept to its close: the PROXY header of a
//! trusted balancer, the per-source limit, the TLS handshake (bounded in
//! time), what the handshake tells about the caller ([`Connection`]), and
//! HTTP/1.1 or HTTP/2 (ALPN) until the connection ends, stays idle too long
//! or is closed to make room for another.
//!
//! Invariant: a connection's requests are served only after its handshake,
//! and each carries the [`Connection`] it came on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::{HANDSHAKE_TIMEOUT, OpenConnection, phases, proxy_protocol, tls, tracked};
use crate::api::{ConnInfo, Connection, WriteProgress, build_app};
use crate::audit::event::sha256;
use crate::gateway::Gateway;

/// What every connection's task shares, made once at start.
pub(super) struct Shared {
    app: axum::Router,
    builder: auto::Builder<TokioExecutor>,
    pub(super) tls_state: Arc<tls::TlsState>,
    per_source: Arc<phases::PerSource>,
    trusted: Vec<proxy_protocol::Cidr>,
    first_request: Duration,
    /// How long an HTTP/1.1 and an HTTP/2 connection may stay idle.
    idle: (Duration, Duration),
    max_per_source: usize,
}

impl Shared {
    pub(super) fn new(gw: &Arc<Gateway>, tls_state: Arc<tls::TlsState>) -> Self {
        let limits = &gw.config.limits;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(limits.header_timeout_secs))
            .max_buf_size(64 * 1024);
        builder
            .http2()
            .max_concurrent_streams(256)
            // The same bound on headers as HTTP/1.1's buffer; hyper's defaults
            // already limit rapid stream resets (CVE-2023-44487).
            .max_header_list_size(64 * 1024)
            // Pings find peers that went away without closing.
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20))
            .timer(TokioTimer::new());
        Self {
            app: build_app(gw.clone()),
            builder,
            tls_state,
            per_source: Arc::new(phases::PerSource::default()),
            trusted: limits.trusted_proxies.clone(),
            first_request: Duration::from_secs(limits.first_request_timeout_secs.max(1)),
            idle: (
                Duration::from_secs(limits.keepalive_idle_secs.max(1)),
                Duration::from_secs(limits.http2_idle_timeout_secs.max(1)),
            ),
            max_per_source: limits.max_connections_per_source.max(1),
        }
    }
}

/// What the accept loop hands a connection's task.
pub(super) struct Accepted {
    /// Its place under the connection limit.
    pub(super) open: OpenConnection,
    /// Its entry among the open connections, and the signal to close.
    pub(super) registered: phases::RegistrySlot,
    pub(super) close: Arc<tokio::sync::Notify>,
    pub(super) activity: Arc<phases::Activity>,
    /// The TLS configuration in force when it was accepted.
    pub(super) tls: Arc<tls::Tls>,
    pub(super) watcher: Watcher,
}

/// Serves one accepted TCP connection until it ends.
pub(super) async fn serve(
    shared: Arc<Shared>,
    accepted: Accepted,
    tcp: TcpStream,
    peer: SocketAddr,
) {
    let Accepted {
        open: guard,
        registered: _registered,
        close,
        activity,
        tls,
        watcher,
    } = accepted;
    let (mut tcp, mut peer) = (tcp, peer);
    // Behind a trusted balancer, the client is who its PROXY header names.
    if shared.trusted.iter().any(|c| c.contains(peer.ip())) {
        match tokio::time::timeout(
            shared.first_request,
            proxy_protocol::read_client_address(&mut tcp, peer),
        )
        .await
        {
            Ok(Ok(client)) => peer = client,
            Ok(Err(e)) => {
                tracing::debug!(peer = %peer, error = %e, "a trusted proxy's connection refused");
                return;
            }
            Err(_) => return,
        }
    }
    let Some(_source) = shared.per_source.admit(peer.ip(), shared.max_per_source) else {
        // One source may not hold every slot.
        guard.gw.metrics.connections_refused_per_source.inc();
        return;
    };
    let Some(stream) = handshake(&guard.gw, &tls, tcp, peer).await else {
        return;
    };
    let writes = Arc::new(WriteProgress::default());
    let info = ConnInfo::new(connection_of(
        &stream,
        peer,
        &shared.tls_state,
        &tls,
        &writes,
    ));
    // Each request is in flight from its arrival until its answer's
    // body is sent or dropped (the guard spans the handler, the
    // answer's body the rest), or until its future is dropped.
    let of_connection = activity.clone();
    let (gw, app) = (guard.gw.clone(), shared.app.clone());
    let service = tower::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(info.clone());
        let in_flight = phases::InFlight::new(of_connection.clone());
        let app = app.clone();
        let activity = of_connection.clone();
        let gw = gw.clone();
        async move {
            // A plain lookup, the hot path, is served without the
            // router; everything else through it.
            let res = match crate::api::query::plain_lookup(&req) {
                Some(target) => Ok(crate::api::query::serve_lookup(gw, req, target).await),
                None => tower::ServiceExt::oneshot(app, req).await,
            };
            let res = res.map(|res: axum::response::Response| {
                res.map(|inner| axum::body::Body::new(phases::EndGuard::new(inner, activity)))
            });
            drop(in_flight);
            res
        }
    });
    let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
    let conn = shared.builder.serve_connection_with_upgrades(
        TokioIo::new(tracked::Tracked::new(stream, writes)),
        TowerToHyperService::new(service),
    );
    let idle_limit = if http2 { shared.idle.1 } else { shared.idle.0 };
    tokio::select! {
        served = watcher.watch(conn) => {
            if let Err(e) = served {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
        }
        () = activity.idle_for_too_long(shared.first_request, idle_limit) => {
            // Dropping the connection closes it.
            guard.gw.metrics.connections_idle_closed.inc();
        }
        () = close.notified() => {
            // The idle connection of longest standing, at the limit.
            guard.gw.metrics.connections_idle_closed.inc();
        }
    }
}

/// The TLS handshake, bounded in time; a resumed session whose client
/// certificate no longer passes is refused. `None` when it failed (counted
/// and logged at debug level).
async fn handshake(
    gw: &Gateway,
    tls: &tls::Tls,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    let acceptor = TlsAcceptor::from(tls.config.clone());
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            gw.metrics.tls_handshake_failures.inc();
            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            gw.metrics.tls_handshake_failures.inc();
            tracing::debug!(peer = %peer, "TLS handshake timed out");
            return None;
        }
    };
    if let Err(e) = tls.recheck_resumed(stream.get_ref().1) {
        gw.metrics.tls_handshake_failures.inc();
        tracing::debug!(peer = %peer, error = %e, "resumed session refused: its client certificate no longer passes");
        return None;
    }
    Some(stream)
}

/// What the handshake tells about the caller: the client certificate's
/// fingerprint, its standing (checked again on later requests) and the
/// department it names (its subject's CN).
fn connection_of(
    stream: &TlsStream<TcpStream>,
    peer: SocketAddr,
    tls_state: &Arc<tls::TlsState>,
    tls: &Arc<tls::Tls>,
    writes: &Arc<WriteProgress>,
) -> Connection {
    let certs = stream.get_ref().1.peer_certificates();
    let cert_fingerprint = certs
        .and_then(|certs| certs.first())
        .map(|cert| sha256(cert.as_ref()));
    let cert_status = certs.filter(|c| !c.is_empty()).map(|chain| {
        Arc::new(tls::CertCheck::new(chain, tls_state.clone(), tls))
            as Arc<dyn crate::api::ClientCertStatus>
    });
    let cert_department = certs.and_then(|c| c.first()).and_then(|cert| {
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
        let cn = parsed.subject().iter_common_name().next()?.as_str().ok()?;
        Some(Arc::<str>::from(cn))
    });
    Connection {
        peer: Some(peer),
        cert_fingerprint,
        cert_status,
        writes: Some(writes.clone()),
        cert_department,
        token_memo: crate::pipeline::authn::TokenMemo::default(),
        source: std::sync::OnceLock::new(),
    }
}
