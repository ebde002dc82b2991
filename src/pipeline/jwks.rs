//! Token-signing keys as identity providers publish them: a JWK Set (RFC
//! 7517) fetched over HTTPS, directly or found through OpenID Connect
//! discovery, or read from a file. Keys are chosen by the token's `kid`;
//! the algorithm stays pinned per issuer, and only keys of a pinned
//! algorithm's type are taken from a set (never a symmetric `oct` key, never
//! a key marked for encryption, never an RSA key under 2048 bits).
//!
//! A set is fetched again every `jwks_refresh_secs`, and when a token names
//! a key the set lacks (at most once per `jwks_min_refetch_secs`, however
//! many such tokens arrive: one fetch at a time, the others wait for it). A
//! set that cannot be fetched is kept and keeps verifying for
//! `jwks_stale_max_secs` after the last good fetch; past that, the
//! issuer's tokens are refused. A file is read again when it changes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::clock::Clock;
use crate::config::IssuerConfig;

/// The largest JWK Set or discovery document read.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// How long one fetch may take, connection included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The smallest RSA modulus taken from a set, in bits.
const MIN_RSA_BITS: usize = 2048;

type HttpsClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Where a set comes from.
enum Origin {
    /// A JWK Set URL, or (`discovery`) the issuer whose OpenID configuration names it.
    Https {
        url: String,
        discovery: bool,
        client: Box<HttpsClient>,
    },
    /// A file, and the modification time it was last read at.
    File {
        path: PathBuf,
        /// A JWK Set (`jwks_file`), or one PEM public key (`public_key`).
        pem: bool,
        modified: Mutex<Option<std::time::SystemTime>>,
    },
}

/// One usable key of a set.
pub struct Key {
    alg: Algorithm,
    key: DecodingKey,
    /// As published, the JWK or the PEM text (a changed key under the same
    /// `kid` is a change of the set).
    published: String,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// The usable keys of one set.
#[derive(Default, Debug)]
pub struct KeySet {
    keys: HashMap<String, Key>,
    /// One PEM key per algorithm: a token's `kid` is not looked at.
    any_kid: bool,
    /// When the set was last fetched or read (unix seconds; 0: never).
    fetched: i64,
}

impl KeySet {
    /// The key for a token's `kid` and algorithm. A token without `kid`
    /// is verified only when the set holds exactly one key of its algorithm.
    pub fn key(&self, kid: Option<&str>, alg: Algorithm) -> Option<&DecodingKey> {
        let kid = if self.any_kid { None } else { kid };
        match kid {
            Some(kid) => self.keys.get(kid).filter(|k| k.alg == alg).map(|k| &k.key),
            None => {
                let mut of_alg = self.keys.values().filter(|k| k.alg == alg);
                match (of_alg.next(), of_alg.next()) {
                    (Some(k), None) => Some(&k.key),
                    _ => None,
                }
            }
        }
    }

    /// Whether the set names `kid`.
    pub fn has(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// The key ids, sorted.
    pub fn kids(&self) -> Vec<String> {
        let mut kids: Vec<String> = self.keys.keys().cloned().collect();
        kids.sort();
        kids
    }
}

/// One issuer's published keys, kept fresh.
pub struct JwksSource {
    issuer: String,
    origin: Origin,
    algorithms: Vec<Algorithm>,
    refresh: Duration,
    min_refetch_secs: i64,
    stale_max_secs: i64,
    current: ArcSwap<KeySet>,
    /// One fetch at a time; the others wait for it.
    fetching: tokio::sync::Mutex<()>,
    /// When the last fetch was tried (unix seconds).
    last_attempt: AtomicI64,
    /// Why the last fetch failed, if it did.
    last_error: Mutex<Option<String>>,
    /// Fetches that failed.
    failures: AtomicU64,
    /// The authenticator's key epoch, moved on at every change of the set,
    /// so that tokens verified with a key that is gone are verified again.
    epoch: Arc<AtomicU64>,
    clock: Clock,
}

impl std::fmt::Debug for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksSource")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// What `/readyz` and the metrics say of a source.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JwksStatus {
    /// The issuer.
    pub issuer: String,
    /// Where its keys come from (the URL or file).
    pub source: String,
    /// The key ids it verifies with now.
    pub kids: Vec<String>,
    /// Seconds since the set was last fetched or read (`None`: never).
    pub age_secs: Option<i64>,
    /// Whether its tokens are verified (a set, not older than the bound).
    pub usable: bool,
    /// Why the last fetch failed, if it did.
    pub last_error: Option<String>,
    /// When the set was last fetched or read (Unix seconds; 0: never).
    pub fetched: i64,
    /// Fetches that failed since the start.
    pub failures: u64,
}

impl JwksSource {
    /// The keys of an issuer configured with `public_key`: the PEM file,
    /// read here (a start with a file that does not load fails) and again
    /// when it changes and on SIGHUP, as a `jwks_file` is.
    pub fn from_pem(
        c: &IssuerConfig,
        algorithms: &[Algorithm],
        epoch: Arc<AtomicU64>,
        clock: Clock,
    ) -> Result<Option<Self>, String> {
        let Some(path) = &c.public_key else {
            return Ok(None);
        };
        let asymmetric: Vec<Algorithm> = algorithms
            .iter()
            .copied()
            .filter(|a| *a != Algorithm::HS256)
            .collect();
        if asymmetric.is_empty() {
            return Ok(None);
        }
        let source = Self::new(
            c,
            Origin::File {
                path: path.clone(),
                pem: true,
                modified: Mutex::new(None),
            },
            asymmetric,
            epoch,
            clock,
        );
        source.reload_file()?;
        Ok(Some(source))
    }

    fn new(
        c: &IssuerConfig,
        origin: Origin,
        algorithms: Vec<Algorithm>,
        epoch: Arc<AtomicU64>,
        clock: Clock,
    ) -> Self {
        Self {
            issuer: c.issuer.clone(),
            origin,
            algorithms,
            refresh: Duration::from_secs(c.jwks_refresh_secs.get()),
            min_refetch_secs: i64::try_from(c.jwks_min_refetch_secs).unwrap_or(i64::MAX),
            stale_max_secs: i64::try_from(c.jwks_stale_max_secs).unwrap_or(i64::MAX),
            current: ArcSwap::from_pointee(KeySet::default()),
            fetching: tokio::sync::Mutex::new(()),
            last_attempt: AtomicI64::new(i64::MIN),
            last_error: Mutex::new(None),
            failures: AtomicU64::new(0),
            epoch,
            clock,
        }
    }

    /// Whether a token naming a key the set lacks is worth fetching the
    /// set again for (a published set; not a PEM file).
    pub fn refetches(&self) -> bool {
        !matches!(self.origin, Origin::File { pem: true, .. })
    }

    /// Whether the issuer's tokens can be verified now (cheap: a file's
    /// keys are always there once the start read them).
    pub fn usable(&self) -> bool {
        matches!(self.origin, Origin::File { .. }) || self.keys().is_some()
    }

    /// The source an issuer configures, if it configures one: its HTTPS
    /// client is built (and a file read) here; nothing is fetched yet.
    pub fn from_config(
        c: &IssuerConfig,
        algorithms: &[Algorithm],
        epoch: Arc<AtomicU64>,
        clock: Clock,
    ) -> Result<Option<Self>, String> {
        if c.jwks_url.is_none() && c.jwks_file.is_none() && !c.discovery {
            return Ok(None);
        }
        if c.public_key.is_some() {
            return Err("public_key and a JWK Set (jwks_url, jwks_file or discovery) are two sources of the same keys: set one".into());
        }
        if algorithms.contains(&Algorithm::HS256) {
            return Err("HS256 keys are never taken from a JWK Set; use hs256_secret_env".into());
        }
        let origin = match (&c.jwks_url, &c.jwks_file, c.discovery) {
            (Some(url), None, false) => Origin::Https {
                url: https_url(url, "jwks_url")?,
                discovery: false,
                client: Box::new(client(c)?),
            },
            (None, None, true) => Origin::Https {
                url: https_url(c.issuer.trim_end_matches('/'), "the issuer (discovery)")?,
                discovery: true,
                client: Box::new(client(c)?),
            },
            (None, Some(path), false) => Origin::File {
                path: path.clone(),
                pem: false,
                modified: Mutex::new(None),
            },
            _ => {
                return Err(
                    "jwks_url, jwks_file and discovery are three ways to the same keys: set one"
                        .into(),
                );
            }
        };
        let source = Self::new(c, origin, algorithms.to_vec(), epoch, clock);
        // A file is there at start, or the start fails: it is the operator's own.
        if matches!(source.origin, Origin::File { .. }) {
            source.reload_file()?;
        }
        Ok(Some(source))
    }

    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The set in force, if it may still verify tokens: fetched, and not
    /// longer ago than the stale bound (a file's set is the operator's own
    /// and does not go stale).
    pub fn keys(&self) -> Option<arc_swap::Guard<Arc<KeySet>>> {
        let set = self.current.load();
        let fresh = matches!(self.origin, Origin::File { .. })
            || self.clock.unix_secs() - set.fetched <= self.stale_max_secs;
        (set.fetched != 0 && fresh).then_some(set)
    }

    /// A token named `kid`, which the set lacks: fetch the set again unless
    /// that was tried less than `jwks_min_refetch_secs` ago (waiting for a
    /// fetch under way instead of starting another).
    pub async fn refetch_for_unknown_kid(&self) {
        let started = self.last_attempt.load(Ordering::Acquire);
        let _one = self.fetching.lock().await;
        if self.last_attempt.load(Ordering::Acquire) != started {
            return; // another request's fetch finished meanwhile
        }
        if self.clock.unix_secs().saturating_sub(started) < self.min_refetch_secs {
            return;
        }
        self.fetch_now().await;
    }

    /// Fetches (or reads) the set now and swaps it in if it is good;
    /// keeps the one in force otherwise. Returns whether it succeeded.
    pub async fn fetch_now(&self) -> bool {
        self.last_attempt
            .store(self.clock.unix_secs(), Ordering::Release);
        let got = match &self.origin {
            Origin::Https {
                url,
                discovery,
                client,
            } => self.fetch(client, url, *discovery).await,
            Origin::File { .. } => {
                let ok = self.reload_file().is_ok();
                if !ok {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                }
                return ok;
            }
        };
        match got.and_then(|bytes| parse_set(&bytes, &self.algorithms)) {
            Ok(keys) => {
                self.install(keys);
                true
            }
            Err(e) => {
                tracing::warn!(issuer = %self.issuer, error = %e, "the issuer's JWK Set cannot be fetched; the last one fetched stays in force within jwks_stale_max_secs");
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                self.failures.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    fn install(&self, keys: HashMap<String, Key>) {
        let old = self.current.load();
        let same = old.keys.len() == keys.len()
            && keys.iter().all(|(kid, k)| {
                old.keys
                    .get(kid)
                    .is_some_and(|o| o.published == k.published)
            });
        self.current.store(Arc::new(KeySet {
            keys,
            any_kid: matches!(self.origin, Origin::File { pem: true, .. }),
            fetched: self.clock.unix_secs(),
        }));
        if !same {
            self.epoch.fetch_add(1, Ordering::AcqRel);
            tracing::info!(issuer = %self.issuer, kids = ?self.current.load().kids(), "the issuer's signing keys changed");
        }
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Reads the file again if it changed since it was last read.
    fn reload_file(&self) -> Result<(), String> {
        let Origin::File {
            path,
            pem,
            modified,
        } = &self.origin
        else {
            return Ok(());
        };
        let what = if *pem { "public key" } else { "jwks_file" };
        let now = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .map_err(|e| format!("{what} {} cannot be read: {e}", path.display()))?;
        let mut seen = modified.lock().unwrap_or_else(|p| p.into_inner());
        if *seen == Some(now) {
            return Ok(());
        }
        let read = std::fs::read(path)
            .map_err(|e| format!("{what} {} cannot be read: {e}", path.display()))
            .and_then(|b| {
                if *pem {
                    parse_pem(&b, &self.algorithms)
                } else {
                    parse_set(&b, &self.algorithms)
                        .map_err(|e| format!("jwks_file {}: {e}", path.display()))
                }
            });
        match read {
            Ok(keys) => {
                *seen = Some(now);
                self.install(keys);
                Ok(())
            }
            Err(e) => {
                tracing::warn!(issuer = %self.issuer, error = %e, "the issuer's key file does not load; the keys in force stay");
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
                Err(e)
            }
        }
    }

    async fn fetch(
        &self,
        client: &HttpsClient,
        url: &str,
        discovery: bool,
    ) -> Result<Bytes, String> {
        let jwks_url = if discovery {
            let doc = get(client, &format!("{url}/.well-known/openid-configuration")).await?;
            let doc: serde_json::Value = serde_json::from_slice(&doc)
                .map_err(|e| format!("the OpenID configuration is not JSON: {e}"))?;
            if doc["issuer"].as_str().map(|s| s.trim_end_matches('/')) != Some(url) {
                return Err(format!(
                    "the OpenID configuration names the issuer {}, not {url}",
                    doc["issuer"]
                ));
            }
            let jwks = doc["jwks_uri"]
                .as_str()
                .ok_or("the OpenID configuration has no jwks_uri")?;
            https_url(jwks, "jwks_uri")?
        } else {
            url.to_owned()
        };
        get(client, &jwks_url).await
    }

    /// Fetches (or reads) the set now, one fetch at a time: what the
    /// refresher runs every `jwks_refresh_secs` (a file: when it changes),
    /// and on SIGHUP.
    pub async fn refresh(&self) {
        let _one = self.fetching.lock().await;
        self.fetch_now().await;
    }

    /// The file the set is read from, if it is a file.
    pub fn file(&self) -> Option<&std::path::Path> {
        match &self.origin {
            Origin::File { path, .. } => Some(path),
            Origin::Https { .. } => None,
        }
    }

    /// How often the set is fetched again.
    pub fn period(&self) -> Duration {
        self.refresh
    }

    /// Its state, for `/readyz`.
    pub fn status(&self) -> JwksStatus {
        let set = self.current.load();
        JwksStatus {
            issuer: self.issuer.clone(),
            source: match &self.origin {
                Origin::Https { url, discovery, .. } => {
                    if *discovery {
                        format!("{url}/.well-known/openid-configuration")
                    } else {
                        url.clone()
                    }
                }
                Origin::File { path, .. } => path.display().to_string(),
            },
            kids: set.kids(),
            age_secs: (set.fetched != 0).then(|| self.clock.unix_secs() - set.fetched),
            usable: self.keys().is_some(),
            fetched: set.fetched,
            failures: self.failures.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

/// `url` if it is an `https://` URL.
fn https_url(url: &str, what: &str) -> Result<String, String> {
    if url.len() > 8 && url[..8].eq_ignore_ascii_case("https://") {
        Ok(url.to_owned())
    } else {
        Err(format!("{what} must be an https:// URL, not {url}"))
    }
}

/// The HTTPS client of one issuer: its CA only, HTTP/1.1, no redirects.
fn client(c: &IssuerConfig) -> Result<HttpsClient, String> {
    let ca = c
        .jwks_ca
        .as_ref()
        .ok_or("jwks_url and discovery need jwks_ca: the CA the identity provider's certificate is verified with")?;
    let roots =
        crate::tls_client::roots(ca).map_err(|e| format!("jwks_ca {}: {e}", ca.display()))?;
    let tls = crate::tls_client::builder()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(crate::tls_client::client(tls, FETCH_TIMEOUT, 1))
}

/// GET `url`: its body if the answer is 200, within the size and time bounds.
async fn get(client: &HttpsClient, url: &str) -> Result<Bytes, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let request = hyper::Request::get(uri)
        .header(hyper::header::ACCEPT, "application/json")
        .header(
            hyper::header::USER_AGENT,
            concat!("tongban/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::new())
        .map_err(|e| format!("{url}: {e}"))?;
    let fetch = async {
        let resp = client
            .request(request)
            .await
            .map_err(|e| format!("{url}: {}", error_chain(&e)))?;
        if resp.status() != hyper::StatusCode::OK {
            return Err(format!("{url} answered {}", resp.status()));
        }
        Limited::new(resp.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| format!("{url}: {e} (at most {MAX_DOCUMENT_BYTES} bytes are read)"))
    };
    tokio::time::timeout(FETCH_TIMEOUT, fetch)
        .await
        .map_err(|_| format!("{url} did not answer within {FETCH_TIMEOUT:?}"))?
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The usable keys of a JWK Set for the pinned algorithms, by `kid`
/// (a key without one under ""). A key the gateway cannot or must not use
/// is left out; a set with no usable key is an error.
pub fn parse_set(bytes: &[u8], pinned: &[Algorithm]) -> Result<HashMap<String, Key>, String> {
    let doc: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("the JWK Set is not JSON: {e}"))?;
    let list = doc["keys"]
        .as_array()
        .ok_or("the JWK Set has no \"keys\" array")?;
    let mut keys = HashMap::new();
    for value in list {
        // A key of a type this version does not know is left out, not fatal.
        let Ok(jwk) = serde_json::from_value::<Jwk>(value.clone()) else {
            continue;
        };
        let Some((alg, key)) = usable(&jwk, pinned) else {
            continue;
        };
        let kid = jwk.common.key_id.clone().unwrap_or_default();
        let published = serde_json::to_string(&jwk).unwrap_or_default();
        if keys
            .insert(
                kid.clone(),
                Key {
                    alg,
                    key,
                    published,
                },
            )
            .is_some()
        {
            return Err(format!("the JWK Set holds the key id \"{kid}\" twice"));
        }
    }
    if keys.is_empty() {
        return Err(format!(
            "the JWK Set holds no signing key for {}",
            pinned
                .iter()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(keys)
}

/// One PEM public key as the key of each pinned asymmetric algorithm.
fn parse_pem(pem: &[u8], pinned: &[Algorithm]) -> Result<HashMap<String, Key>, String> {
    let mut keys = HashMap::new();
    for &alg in pinned {
        let key = match alg {
            Algorithm::ES256 => DecodingKey::from_ec_pem(pem),
            Algorithm::RS256 => DecodingKey::from_rsa_pem(pem),
            _ => DecodingKey::from_ed_pem(pem),
        }
        .map_err(|e| format!("public key is not a {alg:?} key: {e}"))?;
        keys.insert(
            format!("{alg:?}"),
            Key {
                alg,
                key,
                published: String::from_utf8_lossy(pem).into_owned(),
            },
        );
    }
    Ok(keys)
}

/// The algorithm and key of a JWK, if it is a signing key of a pinned
/// algorithm's type.
fn usable(jwk: &Jwk, pinned: &[Algorithm]) -> Option<(Algorithm, DecodingKey)> {
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let alg = match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::RSA(p) => {
            let n = base64::Engine::decode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                p.n.trim_end_matches('='),
            )
            .ok()?;
            let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
            if bits < MIN_RSA_BITS {
                return None;
            }
            Algorithm::RS256
        }
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        // Symmetric keys are never taken from a published set.
        _ => return None,
    };
    if let Some(declared) = &jwk.common.key_algorithm {
        if declared.to_string() != format!("{alg:?}") {
            return None;
        }
    }
    if !pinned.contains(&alg) {
        return None;
    }
    DecodingKey::from_jwk(jwk).ok().map(|k| (alg, k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ec_key(kid: &str) -> serde_json::Value {
        // The P-256 public key of RFC 7515 appendix A.3.
        json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
               "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
               "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"})
    }

    #[test]
    fn only_signing_keys_of_a_pinned_algorithm_are_taken() {
        let set = json!({"keys": [
            ec_key("ec-1"),
            // Symmetric: never from a published set, even for HS256.
            {"kty": "oct", "kid": "oct-1", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI"},
            // An encryption key.
            {"kty": "EC", "crv": "P-256", "kid": "enc-1", "use": "enc",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            // An RSA key of 512 bits.
            {"kty": "RSA", "kid": "rsa-small", "e": "AQAB",
             "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw"},
            // Declared for another algorithm than its type.
            {"kty": "EC", "crv": "P-256", "kid": "liar", "alg": "RS256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            // A type this version does not know.
            {"kty": "XYZ", "kid": "odd"}
        ]});
        let keys = parse_set(set.to_string().as_bytes(), &[Algorithm::ES256]).unwrap();
        let kids: Vec<&String> = keys.keys().collect();
        assert_eq!(kids, ["ec-1"]);
        // A set with nothing for the pinned algorithms is refused whole.
        let err = parse_set(set.to_string().as_bytes(), &[Algorithm::EdDSA]).unwrap_err();
        assert!(err.contains("no signing key for EdDSA"), "{err}");
        let err = parse_set(b"{\"keys\": 1}", &[Algorithm::ES256]).unwrap_err();
        assert!(err.contains("no \"keys\" array"), "{err}");
        let dup = json!({"keys": [ec_key("a"), ec_key("a")]});
        assert!(parse_set(dup.to_string().as_bytes(), &[Algorithm::ES256]).is_err());
    }

    #[test]
    fn a_token_without_kid_is_verified_only_against_a_single_key() {
        let one = json!({"keys": [ec_key("a")]});
        let set = KeySet {
            keys: parse_set(one.to_string().as_bytes(), &[Algorithm::ES256]).unwrap(),
            any_kid: false,
            fetched: 1,
        };
        assert!(set.key(None, Algorithm::ES256).is_some());
        assert!(set.key(Some("a"), Algorithm::ES256).is_some());
        assert!(
            set.key(Some("a"), Algorithm::EdDSA).is_none(),
            "algorithm pinned per key"
        );
        assert!(set.key(Some("b"), Algorithm::ES256).is_none());
        let two = json!({"keys": [ec_key("a"), ec_key("b")]});
        let set = KeySet {
            keys: parse_set(two.to_string().as_bytes(), &[Algorithm::ES256]).unwrap(),
            any_kid: false,
            fetched: 1,
        };
        assert!(set.key(None, Algorithm::ES256).is_none());
    }
}
