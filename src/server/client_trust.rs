//! Client certificates: the CAs they must chain to and the revocation lists
//! (CRLs) that cut them off.
//!
//! Every CRL is checked before it is put in force: it must parse (by
//! x509-parser and by rustls's own verifier), be issued and signed by one of
//! the client CAs, and not be past its next-update time. A list that fails
//! any of these is refused with the reason, and the lists in force stay.
//! Refused client certificates are counted by reason and logged with their
//! serial and fingerprint.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use super::pem::{TlsError, read_certs};
use crate::audit::event::sha256;
use crate::config::{ClientAuth, StaleCrl, TlsConfig};
use crate::domain::hex;
use crate::metrics::{CertRefusalLabels, CrlLabels, Metrics};

/// The metrics the client-certificate checks report to.
#[derive(Debug, Clone)]
pub struct TrustMetrics {
    refused: Family<CertRefusalLabels, Counter>,
    next_update: Family<CrlLabels, Gauge>,
    revoked: Family<CrlLabels, Gauge>,
    /// Refused reloads.
    pub reload_failures: Counter,
}

impl TrustMetrics {
    /// The gateway's metrics.
    pub fn of(metrics: &Metrics) -> Self {
        Self {
            refused: metrics.client_certs_refused.clone(),
            next_update: metrics.crl_next_update.clone(),
            revoked: metrics.crl_revoked.clone(),
            reload_failures: metrics.crl_reload_failures.clone(),
        }
    }
}

/// What one CRL in force says, for the log and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlSummary {
    /// The file it came from.
    pub path: PathBuf,
    /// Its issuer's distinguished name.
    pub issuer: String,
    /// Its CRL number (hex), if it has one.
    pub number: Option<String>,
    /// Its next-update time (Unix seconds), if it has one.
    pub next_update: Option<i64>,
    /// How many certificates it revokes.
    pub revoked: usize,
}

/// The client CA and CRL files, and how to build a verifier from them.
#[derive(Debug)]
pub struct ClientTrust {
    ca: PathBuf,
    crls: Vec<PathBuf>,
    mode: ClientAuth,
    stale: StaleCrl,
    provider: Arc<CryptoProvider>,
    metrics: Option<TrustMetrics>,
}

impl ClientTrust {
    /// The trust of `tls`; `None` when client certificates are off.
    pub fn new(
        tls: &TlsConfig,
        provider: Arc<CryptoProvider>,
        metrics: Option<TrustMetrics>,
    ) -> Option<Self> {
        match (tls.client_auth, &tls.client_ca) {
            (ClientAuth::Off, _) | (_, None) => None,
            (mode, Some(ca)) => Some(Self {
                ca: ca.clone(),
                crls: tls.client_crls.clone(),
                mode,
                stale: tls.stale_crl,
                provider,
                metrics,
            }),
        }
    }

    /// The files to watch for changes.
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.ca.clone()];
        paths.extend(self.crls.iter().cloned());
        paths
    }

    /// Reads the CA and CRL files and builds a verifier from them, checking
    /// every CRL against the CAs at `now`. A CRL past its next update is
    /// refused, except at start (`initial`) with `stale_crl = "accept"`, where
    /// there is no fresher list to keep.
    pub fn build(
        &self,
        now: SystemTime,
        initial: bool,
        in_force: &[CrlSummary],
    ) -> Result<(Arc<dyn ClientCertVerifier>, Vec<CrlSummary>), TlsError> {
        let cas = read_certs(&self.ca)?;
        let mut roots = RootCertStore::empty();
        for cert in &cas {
            roots
                .add(cert.clone())
                .map_err(|e| TlsError::ClientCa(format!("{}: {e}", self.ca.display())))?;
        }
        let now_secs = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let mut ders = Vec::new();
        let mut summaries = Vec::new();
        for path in &self.crls {
            for der in read_crls(path)? {
                let stale_ok = initial && self.stale == StaleCrl::Accept;
                let summary = check_crl(path, &der, &cas, now_secs, stale_ok)?;
                summaries.push(summary);
                ders.push(der);
            }
        }
        check_order(&summaries, in_force)?;
        let mut builder =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), self.provider.clone());
        if !ders.is_empty() {
            // Only the client's own certificate is looked up: CAs are trusted
            // by configuration. A certificate whose issuer has no CRL here has
            // an unknown status and is refused (rustls's default).
            builder = builder.with_crls(ders).only_check_end_entity_revocation();
            if self.stale == StaleCrl::Refuse {
                builder = builder.enforce_revocation_expiration();
            }
        }
        if self.mode == ClientAuth::Optional {
            builder = builder.allow_unauthenticated();
        }
        let inner = builder.build().map_err(|e| {
            TlsError::ClientCa(format!(
                "{} with {}: {e}",
                self.ca.display(),
                self.crls
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        if !summaries.is_empty() {
            for ca in &cas {
                if let Ok((_, parsed)) = x509_parser::parse_x509_certificate(ca)
                    && !summaries
                        .iter()
                        .any(|s| s.issuer == parsed.subject().to_string())
                {
                    tracing::warn!(
                        ca = ?parsed.subject().to_string(),
                        "client CA has no CRL in tls.client_crls: the certificates it issued will be refused"
                    );
                }
            }
        }
        if let Some(m) = &self.metrics {
            m.next_update.clear();
            m.revoked.clear();
            for s in &summaries {
                let labels = CrlLabels {
                    issuer: s.issuer.clone(),
                };
                if let Some(t) = s.next_update {
                    m.next_update.get_or_create(&labels).set(t);
                }
                m.revoked.get_or_create(&labels).set(s.revoked as i64);
            }
        }
        let verifier = Arc::new(Counting {
            inner,
            metrics: self.metrics.clone(),
        });
        Ok((verifier, summaries))
    }

    /// Whether stale CRLs are refused or tolerated.
    pub fn stale_policy(&self) -> StaleCrl {
        self.stale
    }
}

/// A CRL number (hex) as a comparable value: without leading zeros, shorter is smaller.
fn crl_order(number: Option<&str>) -> (usize, String) {
    let digits = number.unwrap_or("").trim_start_matches('0').to_owned();
    (digits.len(), digits)
}

/// One CRL per issuer (rustls would use the first and ignore a newer one),
/// and never an older one than the list in force for that issuer: replaying
/// an old, still-dated CRL would lift the revocations made since.
fn check_order(new: &[CrlSummary], in_force: &[CrlSummary]) -> Result<(), TlsError> {
    for (i, crl) in new.iter().enumerate() {
        if new[..i].iter().any(|other| other.issuer == crl.issuer) {
            return Err(TlsError::File {
                path: crl.path.display().to_string(),
                message: format!(
                    "a second CRL of \"{}\": list only the newest CRL of each issuer",
                    crl.issuer
                ),
            });
        }
        if let Some(old) = in_force.iter().find(|o| o.issuer == crl.issuer)
            && crl_order(crl.number.as_deref()) < crl_order(old.number.as_deref())
        {
            return Err(TlsError::File {
                path: crl.path.display().to_string(),
                message: format!(
                    "its CRL number {} is lower than the one in force ({}): an older list would lift revocations",
                    crl.number.as_deref().unwrap_or("(none)"),
                    old.number.as_deref().unwrap_or("(none)")
                ),
            });
        }
    }
    Ok(())
}

/// Every CRL of a file: PEM (one or more `X509 CRL` blocks) or DER.
fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let err = |message: String| TlsError::File {
        path: path.display().to_string(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| err(format!("cannot be read: {e}")))?;
    let crls = if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(format!("is not valid PEM: {e}")))?
    } else {
        vec![CertificateRevocationListDer::from(bytes)]
    };
    if crls.is_empty() {
        return Err(err("holds no CRL".into()));
    }
    Ok(crls)
}

/// Checks one CRL: it parses, one of `cas` issued and signed it, and it is
/// neither past its next update nor issued in the future.
fn check_crl(
    path: &Path,
    der: &[u8],
    cas: &[CertificateDer<'static>],
    now: i64,
    stale_ok: bool,
) -> Result<CrlSummary, TlsError> {
    let err = |message: String| TlsError::File {
        path: path.display().to_string(),
        message,
    };
    let (rest, crl) = CertificateRevocationList::from_der(der).map_err(|e| {
        err(format!(
            "is not a CRL (PEM \"X509 CRL\" blocks or DER expected): {e}"
        ))
    })?;
    if !rest.is_empty() {
        return Err(err("has bytes after the CRL".into()));
    }
    let issuer = crl.issuer().to_string();
    let ca = cas
        .iter()
        .filter_map(|c| x509_parser::parse_x509_certificate(c).ok().map(|(_, p)| p))
        .find(|c| c.subject().as_raw() == crl.issuer().as_raw())
        .ok_or_else(|| {
            err(format!(
                "is issued by \"{issuer}\", which is not a client CA"
            ))
        })?;
    crl.verify_signature(ca.public_key()).map_err(|e| {
        err(format!(
            "its signature does not verify with the key of \"{issuer}\": {e}"
        ))
    })?;
    let next_update = crl.next_update().map(|t| t.timestamp());
    if let Some(next) = next_update
        && next <= now
    {
        if stale_ok {
            tracing::warn!(
                file = %path.display(),
                issuer = %issuer,
                "CRL is past its next update; used anyway (tls.stale_crl = \"accept\")"
            );
        } else {
            return Err(err(format!(
                "is past its next update ({}): the CA must publish a fresh one",
                crl.next_update().map(|t| t.to_string()).unwrap_or_default()
            )));
        }
    }
    // Five minutes of clock skew between the CA and this machine.
    if crl.last_update().timestamp() > now + 300 {
        return Err(err(format!(
            "is dated in the future ({})",
            crl.last_update()
        )));
    }
    Ok(CrlSummary {
        path: path.to_owned(),
        issuer,
        number: crl.crl_number().map(|n| hex(&n.to_bytes_be())),
        next_update,
        revoked: crl.iter_revoked_certificates().count(),
    })
}

/// A serial number without the leading zero bytes DER may put in front of
/// it: the same serial compares equal however it was encoded.
pub fn canonical_serial(raw: &[u8]) -> &[u8] {
    match raw.iter().position(|b| *b != 0) {
        Some(i) => &raw[i..],
        None => &[0],
    }
}

/// A serial number in hex, canonical, as `tongban cert revoke` prints it.
pub fn serial_hex(raw: &[u8]) -> String {
    hex(canonical_serial(raw))
}

/// Why a client certificate was refused, as a metric label.
fn refusal_reason(e: &rustls::Error) -> &'static str {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::Revoked => "revoked",
            CertificateError::ExpiredRevocationList
            | CertificateError::ExpiredRevocationListContext { .. } => "crl_expired",
            CertificateError::UnknownRevocationStatus => "revocation_unknown",
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "expired",
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "not_yet_valid"
            }
            CertificateError::UnknownIssuer => "unknown_issuer",
            CertificateError::BadSignature => "bad_signature",
            CertificateError::BadEncoding => "bad_encoding",
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "wrong_usage"
            }
            _ => "other",
        },
        _ => "other",
    }
}

/// A client certificate verifier that counts and logs what it refuses.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn ClientCertVerifier>,
    metrics: Option<TrustMetrics>,
}

impl Counting {
    fn refused(&self, cert: &CertificateDer<'_>, e: &rustls::Error) {
        let reason = refusal_reason(e);
        if let Some(m) = &self.metrics {
            m.refused.get_or_create(&CertRefusalLabels { reason }).inc();
        }
        log_refused(cert, reason, e);
    }
}

/// Logs a refused client certificate.
fn log_refused(cert: &CertificateDer<'_>, reason: &str, e: &rustls::Error) {
    let (serial, subject) = match x509_parser::parse_x509_certificate(cert) {
        Ok((_, c)) => (serial_hex(c.raw_serial()), c.subject().to_string()),
        Err(_) => (String::new(), String::new()),
    };
    // The subject is the caller's own text: written escaped (`?`), so a
    // line break or escape code in it cannot forge or hide log lines.
    tracing::warn!(
        reason,
        serial = %serial,
        fingerprint = %hex(&sha256(cert.as_ref())),
        subject = ?subject,
        error = %e,
        "client certificate refused"
    );
}

impl ClientCertVerifier for Counting {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
            .inspect_err(|e| self.refused(end_entity, e))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A certificate's subject is the caller's own text: a line break or an
    /// escape code in it comes out escaped, on the one line of the refusal.
    #[test]
    fn a_refused_certificates_subject_cannot_forge_a_log_line() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            "minzheng\n2026-12-06T00:00:00Z  INFO tongban::access: forged\u{1b}[2K",
        );
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            log_refused(
                cert.der(),
                "unknown-issuer",
                &rustls::Error::General("x".into()),
            );
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("client certificate refused"), "{text}");
        assert!(text.contains("minzheng\\n2026"), "{text}");
    }
}
