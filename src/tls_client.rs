//! Outgoing HTTPS: the client the gateway calls departments' upstream APIs
//! and identity providers with. HTTP/1.1 over rustls, HTTPS only, no
//! redirects followed, trusting only the CA certificates it is given.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The roots of trust in a PEM file: every certificate in it; a file that
/// holds none is an error (the caller names the file).
pub fn roots(ca: &Path) -> Result<rustls::RootCertStore, String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| err(&e))? {
        roots.add(cert.map_err(|e| err(&e))?).map_err(|e| err(&e))?;
    }
    if roots.is_empty() {
        return Err(err(&"holds no certificate"));
    }
    Ok(roots)
}

/// A rustls client configuration's first step: the gateway's crypto
/// provider and its safe protocol versions.
pub fn builder()
-> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, rustls::Error> {
    rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
}

/// The HTTPS client over `tls`: connections time out after
/// `connect_timeout`, and at most `max_idle` idle ones are kept per host
/// for 30 s.
pub fn client<B>(
    tls: rustls::ClientConfig,
    connect_timeout: Duration,
    max_idle: usize,
) -> Client<HttpsConnector<HttpConnector>, B>
where
    B: hyper::body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(max_idle)
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(https)
}
