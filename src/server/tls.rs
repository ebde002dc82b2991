//! TLS: rustls with TLS 1.2 and 1.3 only, AEAD suites only (the aws-lc-rs
//! provider's defaults), ALPN for HTTP/2 and HTTP/1.1, session resumption by
//! tickets and by id, and client certificates off, optional or required,
//! checked against CRLs (see [`super::client_trust`]).
//!
//! The server certificate is served through [`ReloadableCert`]: a reload
//! swaps the certificate and key for new handshakes, while connections
//! already open keep theirs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;

use super::client_trust::{ClientTrust, CrlSummary, TrustMetrics};
use crate::config::{StaleCrl, TlsConfig};

use super::pem::file_err;
pub(crate) use super::pem::now_secs;
pub use super::pem::{TlsError, read_certs};

/// The server certificate and key, swapped whole on reload.
#[derive(Debug)]
pub struct ReloadableCert {
    current: ArcSwap<CertifiedKey>,
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
}

impl ReloadableCert {
    /// Loads the certificate chain and key from their files.
    pub fn load(cert: &Path, key: &Path, provider: Arc<CryptoProvider>) -> Result<Self, TlsError> {
        let certified = certified_key(cert, key, &provider)?;
        Ok(Self {
            current: ArcSwap::from_pointee(certified),
            cert: cert.to_owned(),
            key: key.to_owned(),
            provider,
        })
    }

    /// Reads the files again; on success new handshakes use the new pair. On
    /// failure (half-written files, a key that does not match) the pair in
    /// use stays and the error is returned.
    pub fn reload(&self) -> Result<(), TlsError> {
        let certified = certified_key(&self.cert, &self.key, &self.provider)?;
        self.current.store(Arc::new(certified));
        Ok(())
    }

    /// The files to watch.
    pub fn paths(&self) -> [&Path; 2] {
        [&self.cert, &self.key]
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn certified_key(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = read_certs(cert)?;
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| file_err(key, format!("holds no usable private key: {e}")))?;
    CertifiedKey::from_der(chain, key_der, provider)
        .map_err(|e| file_err(key, format!("does not match the certificate: {e}")))
}

/// A connection's client certificate, checked again against the trust in
/// force when that has changed since the last check, and at least once a
/// minute (a CRL in force can go stale).
#[derive(Debug)]
pub struct CertCheck {
    chain: Vec<CertificateDer<'static>>,
    tls: Arc<TlsState>,
    generation: std::sync::atomic::AtomicU64,
    checked_at: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicBool,
}

/// How often a connection's certificate is checked again without a reload.
const RECHECK_SECS: u64 = 60;

impl CertCheck {
    /// The chain of a connection whose handshake used `tls`.
    pub fn new(chain: &[CertificateDer<'_>], tls: Arc<TlsState>, handshake: &Tls) -> Self {
        Self {
            chain: chain.iter().map(|c| c.clone().into_owned()).collect(),
            tls,
            generation: std::sync::atomic::AtomicU64::new(handshake.generation),
            checked_at: std::sync::atomic::AtomicU64::new(now_secs()),
            failed: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl crate::api::ClientCertStatus for CertCheck {
    fn still_valid(&self) -> bool {
        use std::sync::atomic::Ordering::{Acquire, Release};
        if self.failed.load(Acquire) {
            return false;
        }
        let generation = self.tls.generation();
        let now = now_secs();
        if generation == self.generation.load(Acquire)
            && now < self.checked_at.load(Acquire) + RECHECK_SECS
        {
            return true;
        }
        let current = self.tls.current();
        if current.verify_chain(&self.chain).is_err() {
            // The verifier has logged and counted the reason.
            self.failed.store(true, Release);
            return false;
        }
        self.generation.store(current.generation, Release);
        self.checked_at.store(now, Release);
        true
    }
}

/// The server's TLS configuration: the reloadable certificate and the
/// client trust (CAs and CRLs). A change of the client trust builds a new
/// configuration that handshakes from then on use; connections already open
/// keep theirs. Session tickets and the session cache are kept across
/// changes; a resumed session skips rustls's client-certificate check, so
/// the accept loop checks a resumed session's certificate again against the
/// trust in force ([`Tls::recheck_resumed`]).
#[derive(Debug)]
pub struct TlsState {
    current: ArcSwap<Tls>,
    cert: Arc<ReloadableCert>,
    trust: Option<ClientTrust>,
    provider: Arc<CryptoProvider>,
    crls: ArcSwap<Vec<CrlSummary>>,
    /// Counts trust reloads: a connection verified under an older one is
    /// checked again at its next request.
    generation: std::sync::atomic::AtomicU64,
    ticketer: Arc<dyn rustls::server::ProducesTickets>,
    sessions: Arc<dyn rustls::server::StoresServerSessions>,
}

/// One TLS configuration and the client verifier it was built with.
#[derive(Debug)]
pub struct Tls {
    /// For the acceptor.
    pub config: Arc<ServerConfig>,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    /// The trust generation it was built in.
    pub generation: u64,
}

impl Tls {
    /// Checks a client certificate chain (end entity first) against this
    /// configuration's client trust, now.
    pub fn verify_chain(&self, chain: &[CertificateDer<'_>]) -> Result<(), rustls::Error> {
        let (Some(verifier), Some((end_entity, intermediates))) =
            (&self.verifier, chain.split_first())
        else {
            return Ok(());
        };
        verifier
            .verify_client_cert(
                end_entity,
                intermediates,
                rustls::pki_types::UnixTime::now(),
            )
            .map(|_| ())
    }

    /// After a handshake: a resumed session whose client presented a
    /// certificate at its full handshake is checked again against the
    /// client trust of this configuration (revocation, expiry). `Err` means
    /// the connection must be closed.
    pub fn recheck_resumed(&self, conn: &rustls::ServerConnection) -> Result<(), rustls::Error> {
        if conn.handshake_kind() != Some(rustls::HandshakeKind::Resumed) {
            return Ok(());
        }
        self.verify_chain(conn.peer_certificates().unwrap_or_default())
    }
}

impl TlsState {
    /// Loads the certificate, key, client CAs and CRLs of `tls`.
    pub fn load(tls: &TlsConfig, metrics: Option<TrustMetrics>) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cert = Arc::new(ReloadableCert::load(&tls.cert, &tls.key, provider.clone())?);
        let trust = ClientTrust::new(tls, provider.clone(), metrics);
        let (verifier, crls) = match &trust {
            Some(t) => {
                let (v, crls) = t.build(std::time::SystemTime::now(), true, &[])?;
                (Some(v), crls)
            }
            None => (None, Vec::new()),
        };
        let ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
        let sessions: Arc<dyn rustls::server::StoresServerSessions> =
            rustls::server::ServerSessionMemoryCache::new(16_384);
        let config = build_config(
            &provider,
            verifier.clone(),
            cert.clone(),
            &ticketer,
            &sessions,
        )?;
        Ok(Self {
            current: ArcSwap::from_pointee(Tls {
                config: Arc::new(config),
                verifier,
                generation: 0,
            }),
            cert,
            trust,
            provider,
            crls: ArcSwap::from_pointee(crls),
            generation: std::sync::atomic::AtomicU64::new(0),
            ticketer,
            sessions,
        })
    }

    /// The configuration new handshakes use.
    pub fn current(&self) -> Arc<Tls> {
        self.current.load_full()
    }

    /// The server certificate.
    pub fn certificate(&self) -> &Arc<ReloadableCert> {
        &self.cert
    }

    /// The CRLs in force.
    pub fn crls(&self) -> Arc<Vec<CrlSummary>> {
        self.crls.load_full()
    }

    /// The files whose change means a reload.
    pub fn watched(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = self.cert.paths().iter().map(|p| p.to_path_buf()).collect();
        if let Some(t) = &self.trust {
            paths.extend(t.paths());
        }
        paths
    }

    /// Reloads the client CAs and CRLs. On success new handshakes check
    /// against them; on failure the ones in force stay and the error says why.
    pub fn reload_trust(&self) -> Result<Option<Arc<Vec<CrlSummary>>>, TlsError> {
        let Some(trust) = &self.trust else {
            return Ok(None);
        };
        let (verifier, crls) =
            trust.build(std::time::SystemTime::now(), false, &self.crls.load())?;
        let config = build_config(
            &self.provider,
            Some(verifier.clone()),
            self.cert.clone(),
            &self.ticketer,
            &self.sessions,
        )?;
        let crls = Arc::new(crls);
        self.crls.store(crls.clone());
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel)
            + 1;
        self.current.store(Arc::new(Tls {
            config: Arc::new(config),
            verifier: Some(verifier),
            generation,
        }));
        Ok(Some(crls))
    }

    /// How many times the client trust was reloaded.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether a CRL in force past its next update refuses certificates.
    pub fn stale_policy(&self) -> Option<StaleCrl> {
        self.trust.as_ref().map(ClientTrust::stale_policy)
    }
}

fn build_config(
    provider: &Arc<CryptoProvider>,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    resolver: Arc<ReloadableCert>,
    ticketer: &Arc<dyn rustls::server::ProducesTickets>,
    sessions: &Arc<dyn rustls::server::StoresServerSessions>,
) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // The provider's suites are ordered strongest first; keep that order
    // rather than the client's.
    config.ignore_client_order = true;
    config.ticketer = ticketer.clone();
    config.session_storage = sessions.clone();
    Ok(config)
}

/// Builds the server's TLS configuration around a reloadable certificate
/// (without metrics; the gateway itself uses [`TlsState`]).
pub fn server_config(
    tls: &TlsConfig,
) -> Result<(Arc<ServerConfig>, Arc<ReloadableCert>), TlsError> {
    let state = TlsState::load(tls, None)?;
    Ok((state.current().config.clone(), state.cert.clone()))
}
