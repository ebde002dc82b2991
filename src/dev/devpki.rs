//! Development PKI for `tongban demo` and the tests: a CA, a server
//! certificate, one client certificate per department, and an ES256 token
//! issuer key pair. Never for production: keys are generated on the spot and
//! written next to the certificates.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, RevocationReason, RevokedCertParams, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::audit::pseudonym::write_private;
use crate::server::client_trust::canonical_serial;

/// The development PKI could not be written.
#[derive(Debug, thiserror::Error)]
pub enum DevPkiError {
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// What was asked cannot be done (no CA, no such certificate, …).
    #[error("{0}")]
    Refused(String),
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
        // Whole or not at all: a gateway watching the file never reads half.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
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
        // Nothing revoked yet.
        let crl = sign_crl(&issuer, 1, now, Vec::new())?;
        write(&paths.crl, &crl, false)?;
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
        issue_client_with(&issuer, home, dept, now, 825)?;
    }

    if !paths.issuer_key.exists() || !paths.issuer_public.exists() {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        write(&paths.issuer_key, &key.serialize_pem(), true)?;
        write(&paths.issuer_public, &key.public_key_pem(), false)?;
    }
    Ok(paths)
}

/// A client certificate just issued.
#[derive(Debug, Clone)]
pub struct IssuedClient {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, mode 0600).
    pub key: PathBuf,
    /// Its serial number, hex.
    pub serial: String,
}

/// A department id or certificate name safe to use as a file name.
fn check_name(dept: &str) -> Result<(), DevPkiError> {
    // "-key" would make a certificate file name another's key file name.
    let ok = !dept.is_empty()
        && dept.len() <= 64
        && dept.starts_with(|c: char| c.is_ascii_lowercase())
        && !dept.ends_with("-key")
        && dept
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(DevPkiError::Refused(format!(
            "\"{dept}\" is not a department id (lowercase letters, digits, _ and -)"
        )))
    }
}

/// The development CA of `home`, to sign with.
fn load_issuer(home: &Path, now: OffsetDateTime) -> Result<Issuer<'static, KeyPair>, DevPkiError> {
    let paths = DevPkiPaths::under(home);
    let key_path = home.join("certs/ca-key.pem");
    let pem = match std::fs::read_to_string(&key_path) {
        Ok(pem) if paths.ca.exists() => pem,
        _ => {
            return Err(DevPkiError::Refused(format!(
                "{} has no development CA (certs/ca.pem and certs/ca-key.pem); run `tongban demo --home {} --no-serve` first",
                home.display(),
                home.display()
            )));
        }
    };
    Ok(Issuer::new(ca_params(now)?, KeyPair::from_pem(&pem)?))
}

/// A random, positive 128-bit serial number.
fn random_serial() -> Result<SerialNumber, DevPkiError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| DevPkiError::Refused("the system has no randomness to offer".into()))?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn issue_client_with(
    issuer: &Issuer<'_, KeyPair>,
    home: &Path,
    dept: &str,
    now: OffsetDateTime,
    days: i64,
) -> Result<IssuedClient, DevPkiError> {
    let (cert_path, key_path) = DevPkiPaths::client(home, dept);
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, dept);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "tongban demo department");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(days);
    let serial = random_serial()?;
    params.serial_number = Some(serial.clone());
    let cert = params.signed_by(&key, issuer)?;
    write(&key_path, &key.serialize_pem(), true)?;
    write(&cert_path, &cert.pem(), false)?;
    Ok(IssuedClient {
        cert: cert_path,
        key: key_path,
        serial: crate::domain::hex(&serial.to_bytes()),
    })
}

/// Issues a fresh client certificate and key for `dept` under `home`
/// (`certs/clients/<dept>.pem`, `-key.pem`), replacing any it had; valid
/// for `days`. The old certificate stays valid until it is revoked.
pub fn issue_client(home: &Path, dept: &str, days: i64) -> Result<IssuedClient, DevPkiError> {
    check_name(dept)?;
    if !(1..=3650).contains(&days) {
        return Err(DevPkiError::Refused(
            "--days must be between 1 and 3650".into(),
        ));
    }
    let now = OffsetDateTime::now_utc();
    let issuer = load_issuer(home, now)?;
    issue_client_with(&issuer, home, dept, now, days)
}

/// A CRL of the development CA (PEM): issued a minute before `now` and
/// valid for a year, like a CA that publishes rarely.
fn sign_crl(
    issuer: &Issuer<'_, KeyPair>,
    crl_number: u64,
    now: OffsetDateTime,
    revoked: Vec<RevokedCertParams>,
) -> Result<String, DevPkiError> {
    crl_with_validity(
        issuer,
        crl_number,
        now - Duration::minutes(1),
        now + Duration::days(365),
        revoked,
    )
}

fn crl_with_validity(
    issuer: &Issuer<'_, KeyPair>,
    crl_number: u64,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
    revoked: Vec<RevokedCertParams>,
) -> Result<String, DevPkiError> {
    Ok(CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: SerialNumber::from(crl_number),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(issuer)?
    .pem()?)
}

/// An empty CRL signed by `home`'s development CA with the given number and
/// validity (PEM), written nowhere: for tests of CRLs that are stale,
/// replayed or about to expire.
pub fn empty_crl(
    home: &Path,
    crl_number: u64,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
) -> Result<String, DevPkiError> {
    let issuer = load_issuer(home, OffsetDateTime::now_utc())?;
    crl_with_validity(&issuer, crl_number, this_update, next_update, Vec::new())
}

/// Which certificate to revoke.
#[derive(Debug, Clone)]
pub enum RevokeTarget {
    /// The department's current client certificate (`certs/clients/<dept>.pem`).
    Department(String),
    /// A serial number, hex (colons allowed).
    Serial(String),
    /// The certificate in a PEM file.
    File(PathBuf),
}

/// What a revocation did.
#[derive(Debug, Clone)]
pub struct Revocation {
    /// The serial revoked, hex.
    pub serial: String,
    /// The new CRL's number.
    pub crl_number: u64,
    /// How many certificates the CRL now lists.
    pub listed: usize,
    /// The serial was listed already (the CRL is re-signed all the same).
    pub already: bool,
    /// The CRL file.
    pub crl: PathBuf,
}

/// Parses a reason code name (`key-compromise`, `superseded`, …).
pub fn revocation_reason(name: &str) -> Option<RevocationReason> {
    Some(match name {
        "unspecified" => RevocationReason::Unspecified,
        "key-compromise" => RevocationReason::KeyCompromise,
        "affiliation-changed" => RevocationReason::AffiliationChanged,
        "superseded" => RevocationReason::Superseded,
        "cessation-of-operation" => RevocationReason::CessationOfOperation,
        "privilege-withdrawn" => RevocationReason::PrivilegeWithdrawn,
        _ => return None,
    })
}

fn reason_from_code(code: u8) -> Option<RevocationReason> {
    Some(match code {
        0 => RevocationReason::Unspecified,
        1 => RevocationReason::KeyCompromise,
        2 => RevocationReason::CaCompromise,
        3 => RevocationReason::AffiliationChanged,
        4 => RevocationReason::Superseded,
        5 => RevocationReason::CessationOfOperation,
        6 => RevocationReason::CertificateHold,
        8 => RevocationReason::RemoveFromCrl,
        9 => RevocationReason::PrivilegeWithdrawn,
        10 => RevocationReason::AaCompromise,
        _ => return None,
    })
}

fn parse_hex_serial(text: &str) -> Result<Vec<u8>, DevPkiError> {
    let digits: String = text.chars().filter(|c| *c != ':').collect();
    let bad = || DevPkiError::Refused(format!("\"{text}\" is not a hexadecimal serial number"));
    if digits.is_empty()
        || digits.len() > 40
        || digits.len() % 2 != 0
        || !digits.chars().all(|c| c.is_ascii_hexdigit())
    {
        return Err(bad());
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).map_err(|_| bad()))
        .collect()
}

fn serial_of_file(path: &Path) -> Result<Vec<u8>, DevPkiError> {
    let refused = |why: String| DevPkiError::Refused(format!("{}: {why}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| refused(e.to_string()))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&bytes)
        .map_err(|e| refused(format!("is not a PEM certificate: {e}")))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| refused(format!("is not a certificate: {e}")))?;
    Ok(cert.raw_serial().to_vec())
}

/// Adds a certificate to the development CA's CRL (`certs/ca.crl`) and
/// re-signs it with a higher CRL number. The file is replaced whole, so a
/// gateway watching it reads the old list or the new one, never half.
pub fn revoke(
    home: &Path,
    target: &RevokeTarget,
    reason: RevocationReason,
) -> Result<Revocation, DevPkiError> {
    let now = OffsetDateTime::now_utc();
    let issuer = load_issuer(home, now)?;
    let paths = DevPkiPaths::under(home);
    let serial = match target {
        RevokeTarget::Department(dept) => {
            check_name(dept)?;
            let (cert, _) = DevPkiPaths::client(home, dept);
            if !cert.exists() {
                return Err(DevPkiError::Refused(format!(
                    "{} has no client certificate for {dept} ({})",
                    home.display(),
                    cert.display()
                )));
            }
            serial_of_file(&cert)?
        }
        RevokeTarget::Serial(text) => parse_hex_serial(text)?,
        RevokeTarget::File(path) => serial_of_file(path)?,
    };
    // A serial is a positive INTEGER: its DER form has no redundant zero byte.
    let serial = canonical_serial(&serial).to_vec();
    let mut revoked = Vec::new();
    let mut number = 0u64;
    let existing = match std::fs::read(&paths.crl) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        // Anything else (a permission, a disk error) must not be taken for
        // "nothing revoked yet": the new list would lift every revocation.
        Err(reason) => {
            return Err(DevPkiError::Io {
                path: paths.crl.clone(),
                reason,
            });
        }
    };
    if let Some(bytes) = existing {
        let refused = |why: String| DevPkiError::Refused(format!("{}: {why}", paths.crl.display()));
        let (_, pem) = x509_parser::pem::parse_x509_pem(&bytes)
            .map_err(|e| refused(format!("is not PEM: {e}")))?;
        let (_, crl) =
            <x509_parser::revocation_list::CertificateRevocationList as x509_parser::prelude::FromDer<_>>::from_der(&pem.contents)
                .map_err(|e| refused(format!("is not a CRL: {e}")))?;
        number = match crl.crl_number() {
            Some(n) => u64::try_from(n)
                .ok()
                .filter(|n| *n < u64::MAX)
                .ok_or_else(|| refused("its CRL number is too large to follow".into()))?,
            None => 0,
        };
        for entry in crl.iter_revoked_certificates() {
            revoked.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(entry.raw_serial()),
                revocation_time: entry.revocation_date.to_datetime(),
                reason_code: entry
                    .reason_code()
                    .and_then(|(_, code)| reason_from_code(code.0)),
                invalidity_date: None,
            });
        }
    }
    let already = revoked
        .iter()
        .any(|r| canonical_serial(&r.serial_number.to_bytes()) == serial.as_slice());
    if !already {
        revoked.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&serial),
            revocation_time: now,
            reason_code: Some(reason),
            invalidity_date: None,
        });
    }
    let listed = revoked.len();
    let crl_number = number + 1;
    let crl = sign_crl(&issuer, crl_number, now, revoked)?;
    write(&paths.crl, &crl, false)?;
    Ok(Revocation {
        serial: crate::domain::hex(&serial),
        crl_number,
        listed,
        already,
        crl: paths.crl,
    })
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

/// Signs a resident's development token with the ES256 issuer key
/// (`keys/issuer.pem`).
/// A resident's ES256 token: `iss`, `aud`, the ID number at the dotted
/// `claim` (nested objects for a path), `iat`, `nbf`, `exp`, `jti`.
pub fn mint_resident_token(
    issuer_key_pem: &[u8],
    issuer: &str,
    audience: &str,
    claim: &str,
    id: &str,
    now: i64,
    ttl_secs: i64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let key = jsonwebtoken::EncodingKey::from_ec_pem(issuer_key_pem)?;
    let mut jti = [0u8; 8];
    let _ = aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut jti);
    let mut value = serde_json::Value::String(id.to_owned());
    let parts: Vec<&str> = claim.split('.').collect();
    for name in parts.iter().skip(1).rev() {
        value = serde_json::json!({ *name: value });
    }
    let mut claims = serde_json::json!({
        "iss": issuer,
        "aud": audience,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_secs,
        "jti": crate::domain::hex(&jti),
    });
    claims[parts[0]] = value;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &claims,
        &key,
    )
}

/// Signs a development token with the ES256 issuer key (`keys/issuer.pem`):
/// a department's (`dept`, `roles`, `sub` …).
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
        "jti": crate::domain::hex(&jti),
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &claims,
        &key,
    )
}
