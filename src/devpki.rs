//! Development PKI for `tongban demo` and the tests: a CA, a server
//! certificate, one client certificate per department, and an ES256 token
//! issuer key pair. Never for production: keys are generated on the spot and
//! written next to the certificates.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::audit::pseudonym::write_private;

/// The development PKI could not be written.
#[derive(Debug, thiserror::Error)]
pub enum DevPkiError {
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A file could not be written.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: std::io::Error,
    },
}

/// The files of a development PKI under a home directory.
#[derive(Debug, Clone)]
pub struct DevPkiPaths {
    /// `certs/ca.pem`.
    pub ca: PathBuf,
    /// `certs/server.pem`.
    pub server_cert: PathBuf,
    /// `certs/server-key.pem`.
    pub server_key: PathBuf,
    /// `keys/issuer.pem` (PKCS#8).
    pub issuer_key: PathBuf,
    /// `keys/issuer.pub.pem` (SPKI).
    pub issuer_public: PathBuf,
    /// `certs/ca.crl`: the CA's certificate revocation list (PEM).
    pub crl: PathBuf,
}

impl DevPkiPaths {
    /// The paths under `home`.
    pub fn under(home: &Path) -> Self {
        Self {
            ca: home.join("certs/ca.pem"),
            server_cert: home.join("certs/server.pem"),
            server_key: home.join("certs/server-key.pem"),
            issuer_key: home.join("keys/issuer.pem"),
            issuer_public: home.join("keys/issuer.pub.pem"),
            crl: home.join("certs/ca.crl"),
        }
    }

    /// A department's client certificate and key.
    pub fn client(home: &Path, dept: &str) -> (PathBuf, PathBuf) {
        (
            home.join(format!("certs/clients/{dept}.pem")),
            home.join(format!("certs/clients/{dept}-key.pem")),
        )
    }
}

fn write(path: &Path, text: &str, private: bool) -> Result<(), DevPkiError> {
    let io = |reason| DevPkiError::Io {
        path: path.to_owned(),
        reason,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    if private {
        write_private(path, text.as_bytes()).map_err(io)
    } else {
        std::fs::write(path, text).map_err(io)
    }
}

fn ca_params(now: OffsetDateTime) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "tongban development CA");
    dn.push(DnType::OrganizationName, "tongban demo");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(3650);
    Ok(params)
}

/// Writes whatever part of the development PKI is missing under `home`;
/// existing files are kept. Client certificates are made for `departments`.
pub fn ensure(home: &Path, departments: &[&str]) -> Result<DevPkiPaths, DevPkiError> {
    let paths = DevPkiPaths::under(home);
    let now = OffsetDateTime::now_utc();
    let ca_key_path = home.join("certs/ca-key.pem");

    let ca_key = match std::fs::read_to_string(&ca_key_path) {
        Ok(pem) if paths.ca.exists() => KeyPair::from_pem(&pem)?,
        _ => {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
            let cert = ca_params(now)?.self_signed(&key)?;
            write(&ca_key_path, &key.serialize_pem(), true)?;
            write(&paths.ca, &cert.pem(), false)?;
            // A new CA invalidates everything it signed before.
            let _ = std::fs::remove_file(&paths.server_cert);
            let _ = std::fs::remove_file(&paths.crl);
            let _ = std::fs::remove_dir_all(home.join("certs/clients"));
            key
        }
    };
    let issuer = Issuer::new(ca_params(now)?, ca_key);

    if !paths.crl.exists() {
        // Nothing revoked yet; valid for a year, like a CA that publishes rarely.
        let crl = CertificateRevocationListParams {
            this_update: now - Duration::minutes(1),
            next_update: now + Duration::days(365),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)?;
        write(&paths.crl, &crl.pem()?, false)?;
    }

    if !paths.server_cert.exists() || !paths.server_key.exists() {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ])?;
        params
            .distinguished_name
            .push(DnType::CommonName, "tongban gateway (development)");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        // Where the development CA publishes its revocation list: this
        // machine's file system, the only place a one-machine PKI has.
        let crl_path = std::path::absolute(&paths.crl).unwrap_or_else(|_| paths.crl.clone());
        params.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec![format!("file://{}", crl_path.display())],
        }];
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(825);
        let cert = params.signed_by(&key, &issuer)?;
        write(&paths.server_key, &key.serialize_pem(), true)?;
        write(&paths.server_cert, &cert.pem(), false)?;
    }

    for dept in departments {
        let (cert_path, key_path) = DevPkiPaths::client(home, dept);
        if cert_path.exists() && key_path.exists() {
            continue;
        }
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, *dept);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "tongban demo department");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(825);
        let cert = params.signed_by(&key, &issuer)?;
        write(&key_path, &key.serialize_pem(), true)?;
        write(&cert_path, &cert.pem(), false)?;
    }

    if !paths.issuer_key.exists() || !paths.issuer_public.exists() {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        write(&paths.issuer_key, &key.serialize_pem(), true)?;
        write(&paths.issuer_public, &key.public_key_pem(), false)?;
    }
    Ok(paths)
}

/// A CA unrelated to any home, with one client certificate: for tests that
/// present a certificate the gateway must refuse. Returns (cert PEM, key PEM).
pub fn foreign_client_cert(name: &str) -> Result<(String, String), rcgen::Error> {
    let now = OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let issuer = Issuer::new(ca_params(now)?, ca_key);
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(30);
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Signs a development token with the ES256 issuer key (`keys/issuer.pem`).
#[allow(clippy::too_many_arguments)]
pub fn mint_token(
    issuer_key_pem: &[u8],
    issuer: &str,
    audience: &str,
    dept: &str,
    subject: &str,
    roles: &[String],
    now: i64,
    ttl_secs: i64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let key = jsonwebtoken::EncodingKey::from_ec_pem(issuer_key_pem)?;
    let mut jti = [0u8; 8];
    let _ = aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut jti);
    let claims = serde_json::json!({
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "dept": dept,
        "roles": roles,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_secs,
        "jti": crate::policy::load::hex(&jti),
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &claims,
        &key,
    )
}
