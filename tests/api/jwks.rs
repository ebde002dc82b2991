//! Token keys as identity providers publish them: an in-test identity
//! provider (HTTPS, OpenID Connect discovery, a JWK Set it rotates) and a
//! gateway that trusts it with Keycloak's claim layout.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper::StatusCode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};

use tongban::config::{ClaimNames, Config, IssuerConfig};
use tongban::dev::demo::DEMO_AUDIENCE;

use crate::helpers::{TestGateway, TestResponse};

/// One ES256 signing key of the identity provider.
struct SigningKey {
    pem: String,
    jwk: Value,
}

impl SigningKey {
    fn new(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let point = pair.public_key_raw(); // 0x04 || x || y
        Self {
            pem: pair.serialize_pem(),
            jwk: json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                        "y": URL_SAFE_NO_PAD.encode(&point[33..65])}),
        }
    }
}

/// What the identity provider publishes, and how often it was asked.
#[derive(Clone, Default)]
struct Published {
    issuer: Arc<Mutex<String>>,
    keys: Arc<Mutex<Vec<Value>>>,
    up: Arc<AtomicBool>,
    fetches: Arc<AtomicUsize>,
}

impl Published {
    fn set(&self, keys: &[&SigningKey]) {
        *self.keys.lock().unwrap() = keys.iter().map(|k| k.jwk.clone()).collect();
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Waits until the gateway has fetched the set `n` more times.
    async fn fetched_again(&self, n: usize) {
        let from = self.fetches();
        let start = Instant::now();
        while self.fetches() < from + n {
            assert!(start.elapsed() < Duration::from_secs(10), "no refresh");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn discovery(State(p): State<Published>) -> impl IntoResponse {
    let issuer = p.issuer.lock().unwrap().clone();
    axum::Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/protocol/openid-connect/certs"),
    }))
}

async fn certs(State(p): State<Published>) -> axum::response::Response {
    if !p.up.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    p.fetches.fetch_add(1, Ordering::SeqCst);
    axum::Json(json!({"keys": *p.keys.lock().unwrap()})).into_response()
}

/// An HTTPS identity provider on the demo home's server certificate (no
/// client certificate asked for), serving a realm's discovery document
/// and JWK Set. Returns its issuer URL.
fn start_idp(home: &Path, published: &Published) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let issuer = format!("https://127.0.0.1:{}/realms/province", addr.port());
    *published.issuer.lock().unwrap() = issuer.clone();
    published.up.store(true, Ordering::SeqCst);
    let chain = CertificateDer::pem_file_iter(home.join("certs/server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(home.join("certs/server-key.pem")).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let app = Router::new()
        .route(
            "/realms/province/.well-known/openid-configuration",
            axum::routing::get(discovery),
        )
        .route(
            "/realms/province/protocol/openid-connect/certs",
            axum::routing::get(certs),
        )
        .with_state(published.clone());
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    tokio::spawn(tongban::provider::serve::run(
        listener,
        Arc::new(tls),
        app,
        std::future::pending(),
    ));
    issuer
}

/// An issuer trusted through discovery, with Keycloak's claim layout.
fn trust(config: &mut Config, home: &Path, issuer: &str, min_refetch: u64) {
    let mut c: IssuerConfig = config.issuers[0].clone();
    c.issuer = issuer.to_owned();
    c.public_key = None;
    c.discovery = true;
    c.jwks_ca = Some(home.join("certs/ca.pem"));
    c.jwks_refresh_secs = std::num::NonZeroU64::new(1).unwrap();
    c.jwks_min_refetch_secs = min_refetch;
    c.jwks_stale_max_secs = 60;
    c.departments = Some(vec!["minzheng".into()]);
    c.roles = Vec::new();
    c.claims = ClaimNames {
        department: "attributes.dept".into(),
        roles: "realm_access.roles".into(),
        subject: "preferred_username".into(),
    };
    config.issuers.push(c);
}

/// A token as Keycloak shapes it: roles under `realm_access`, its own
/// roles beside the gateway's, the department in a user attribute.
fn keycloak_token(gw: &TestGateway, issuer: &str, key: &SigningKey, kid: Option<&str>) -> String {
    let now = gw.clock.unix_secs();
    let claims = json!({
        "iss": issuer, "aud": DEMO_AUDIENCE, "sub": "f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
        "preferred_username": "clerk-007", "iat": now, "exp": now + 300,
        "realm_access": {"roles": ["dibao_reviewer", "offline_access", "default-roles-province"]},
        "attributes": {"dept": "minzheng"},
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_pem(key.pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

async fn lookup(gw: &TestGateway, token: &str) -> TestResponse {
    let id = gw.sample_ids("renshe.shebao", 1).remove(0);
    gw.get(
        &format!("/v1/datasets/renshe.shebao/records/{id}"),
        Some(token),
        Some("dibao_review"),
        Some("MZ-2026-000123"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_provider_that_rotates_its_keys_needs_no_restart() {
    let published = Published::default();
    let (k1, k2) = (SigningKey::new("k1"), SigningKey::new("k2"));
    published.set(&[&k1]);
    let mut issuer = String::new();
    let gw = TestGateway::start_with(|config, home| {
        issuer = start_idp(home, &published);
        trust(config, home, &issuer, 0);
    })
    .await;

    // Keycloak's layout: the caller is the mapped subject and department,
    // with the gateway's role; the provider's own roles are left out.
    let r = lookup(&gw, &keycloak_token(&gw, &issuer, &k1, Some("k1"))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let event = gw
        .store()
        .await
        .get(r.audit_seq())
        .unwrap()
        .expect("the lookup's event");
    assert_eq!(event.body.subject.as_deref(), Some("clerk-007"));
    assert_eq!(event.body.dept.as_deref(), Some("minzheng"));

    // The provider starts signing with a new key: accepted at once, the
    // set fetched again for it.
    published.set(&[&k1, &k2]);
    let before = published.fetches();
    let r = lookup(&gw, &keycloak_token(&gw, &issuer, &k2, Some("k2"))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(published.fetches() > before);

    // k1 withdrawn: after the next refresh its tokens are refused, the one
    // verified (and cached) above too.
    let old = keycloak_token(&gw, &issuer, &k1, Some("k1"));
    assert_eq!(lookup(&gw, &old).await.status, StatusCode::OK);
    published.set(&[&k2]);
    published.fetched_again(1).await;
    let r = lookup(&gw, &old).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert_eq!(r.problem_type(), Some("/problems/token-invalid"));
    // A token without kid is verified against the only key there is.
    let r = lookup(&gw, &keycloak_token(&gw, &issuer, &k2, None)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // A token signed by k1 that names k2 does not verify.
    let r = lookup(&gw, &keycloak_token(&gw, &issuer, &k1, Some("k2"))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);

    // The provider goes down: the set fetched last keeps verifying within
    // jwks_stale_max_secs (60 here), and not a second longer.
    published.up.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let fresh = keycloak_token(&gw, &issuer, &k2, Some("k2"));
    assert_eq!(lookup(&gw, &fresh).await.status, StatusCode::OK);
    let ready = gw.readiness().await;
    let of_idp = |body: &Value| {
        body["token_keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["issuer"] == issuer.as_str())
            .cloned()
            .unwrap_or(Value::Null)
    };
    let keys = &of_idp(&ready.body);
    assert_eq!(keys["issuer"], issuer.as_str(), "{}", ready.text);
    assert_eq!(keys["kids"], json!(["k2"]));
    assert_eq!(keys["usable"], true);
    assert!(
        keys["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("503")),
        "{keys}"
    );
    let metrics = gw
        .client()
        .request("GET", "/metrics", &[])
        .await
        .unwrap()
        .text;
    let failures = format!("tongban_token_keys_fetch_failures_total{{issuer=\"{issuer}\"}} ");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with(&failures) && !l.ends_with(" 0")),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "tongban_token_keys_fetched_timestamp_seconds{{issuer=\"{issuer}\"}}"
        )),
        "{metrics}"
    );
    gw.clock.advance(Duration::from_secs(61));
    let r = lookup(&gw, &keycloak_token(&gw, &issuer, &k2, Some("k2"))).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.problem_type(), Some("/problems/token-keys-unavailable"));
    assert!(r.headers.contains_key("retry-after"));
    assert_eq!(of_idp(&gw.readiness().await.body)["usable"], false);
    // The demo issuer's tokens are untouched by another issuer's trouble.
    let clerk = gw.token("minzheng", "clerk-008", &["dibao_reviewer"]);
    assert_eq!(lookup(&gw, &clerk).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_naming_unknown_keys_cannot_make_the_gateway_hammer_the_provider() {
    let published = Published::default();
    let k1 = SigningKey::new("k1");
    published.set(&[&k1]);
    let mut issuer = String::new();
    let gw = TestGateway::start_with(|config, home| {
        issuer = start_idp(home, &published);
        trust(config, home, &issuer, 30);
    })
    .await;
    let r = lookup(&gw, &keycloak_token(&gw, &issuer, &k1, Some("k1"))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let before = published.fetches();
    for i in 0..20 {
        let kid = format!("forged-{i}");
        let r = lookup(&gw, &keycloak_token(&gw, &issuer, &k1, Some(&kid))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    }
    // At most one fetch for all twenty within jwks_min_refetch_secs (and
    // the periodic refresh of one second).
    let during = published.fetches() - before;
    assert!(during <= 3, "{during} fetches for 20 unknown kids");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_file_is_read_again_when_it_changes() {
    let (k1, k2) = (SigningKey::new("k1"), SigningKey::new("k2"));
    let issuer = "https://idp.example/realms/file".to_owned();
    let gw = TestGateway::start_with(|config, home| {
        let file = home.join("keys/idp-jwks.json");
        std::fs::write(&file, json!({"keys": [k1.jwk]}).to_string()).unwrap();
        trust(config, home, &issuer, 0);
        let c = config.issuers.last_mut().unwrap();
        c.discovery = false;
        c.jwks_ca = None;
        c.jwks_file = Some(file);
    })
    .await;
    let t1 = keycloak_token(&gw, &issuer, &k1, Some("k1"));
    assert_eq!(lookup(&gw, &t1).await.status, StatusCode::OK);
    let file = gw.home.path().join("keys/idp-jwks.json");
    std::fs::write(&file, json!({"keys": [k2.jwk]}).to_string()).unwrap();
    let t2 = keycloak_token(&gw, &issuer, &k2, Some("k2"));
    let start = Instant::now();
    while lookup(&gw, &t2).await.status != StatusCode::OK {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the file was not read again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(lookup(&gw, &t1).await.status, StatusCode::UNAUTHORIZED);
    // A file that no longer loads leaves the set in force.
    std::fs::write(&file, "{\"keys\": [").unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(lookup(&gw, &t2).await.status, StatusCode::OK);
}

#[test]
fn an_issuer_configuration_that_cannot_work_is_refused_at_start() {
    let (home, config) = crate::helpers::demo_home();
    let mut base = config.issuers[0].clone();
    base.issuer = "https://idp.example/realms/x".into();
    let refused = |edit: &dyn Fn(&mut IssuerConfig), said: &str| {
        let mut c = base.clone();
        edit(&mut c);
        let err = tongban::pipeline::authn::Authenticator::new(
            &[c],
            "shujuju",
            8192,
            tongban::clock::Clock::system(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains(said), "{err}");
    };
    let ca = home.path().join("certs/ca.pem");
    // Two sources of the same keys.
    refused(
        &|c| c.jwks_url = Some("https://idp.example/certs".into()),
        "set one",
    );
    refused(
        &|c| {
            c.public_key = None;
            c.jwks_url = Some("https://idp.example/certs".into());
            c.discovery = true;
        },
        "set one",
    );
    // Not over HTTPS, or without the CA to verify it with.
    refused(
        &|c| {
            c.public_key = None;
            c.jwks_url = Some("http://idp.example/certs".into());
            c.jwks_ca = Some(ca.clone());
        },
        "https://",
    );
    refused(
        &|c| {
            c.public_key = None;
            c.jwks_url = Some("https://idp.example/certs".into());
        },
        "jwks_ca",
    );
    // HS256 secrets never come from a published set.
    refused(
        &|c| {
            c.public_key = None;
            c.algorithms = vec!["HS256".into()];
            c.jwks_url = Some("https://idp.example/certs".into());
            c.jwks_ca = Some(ca.clone());
        },
        "HS256",
    );
    refused(
        &|c| c.claims.roles = "realm_access..roles".into(),
        "claims.roles",
    );
}

/// An issuer's `public_key` file is read again when it changes: the
/// identity provider's new key verifies at once, without a restart, and a
/// token of the key it replaced is refused, the one verified (and cached)
/// before too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_public_key_file_takes_effect_without_a_restart() {
    let gw = TestGateway::start().await;
    let old = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    assert_eq!(lookup(&gw, &old).await.status, StatusCode::OK);

    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let public = gw.home.path().join("keys/issuer.pub.pem");
    std::fs::write(&public, pair.public_key_pem()).unwrap();
    let now = gw.clock.unix_secs();
    let new = tongban::dev::devpki::mint_token(
        pair.serialize_pem().as_bytes(),
        tongban::dev::demo::DEMO_ISSUER,
        DEMO_AUDIENCE,
        "minzheng",
        "clerk-007",
        &["dibao_reviewer".to_owned()],
        now,
        300,
    )
    .unwrap();
    let start = Instant::now();
    while lookup(&gw, &new).await.status != StatusCode::OK {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the new key was not read"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = lookup(&gw, &old).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    // A file that does not load leaves the key in force.
    std::fs::write(&public, "-----BEGIN PUBLIC KEY-----\nnot a key\n").unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(lookup(&gw, &new).await.status, StatusCode::OK);
}
