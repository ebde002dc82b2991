//! TLS and client certificates.

use hyper::StatusCode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::helpers::{Client, TestGateway};
use tongban::config::ClientAuth;

#[tokio::test]
async fn required_client_certificates_refuse_strangers_and_record_fingerprints() {
    let gw =
        TestGateway::start_with(|config, _| config.tls.client_auth = ClientAuth::Required).await;
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    let tok = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let path = format!("/v1/datasets/gongan.hukou/records/{id}");
    let headers = vec![
        ("authorization".to_owned(), format!("Bearer {tok}")),
        ("x-purpose".to_owned(), "dibao_review".to_owned()),
        ("x-case-ref".to_owned(), "MZ-1".to_owned()),
    ];

    // No certificate: refused.
    assert!(gw.client().request("GET", &path, &headers).await.is_err());

    // A certificate from another CA: refused.
    let (cert, key) = tongban::dev::devpki::foreign_client_cert("minzheng").unwrap();
    let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let stranger = Client::with_identity(
        gw.addr,
        &gw.home.path().join("certs/ca.pem"),
        Some((chain, key)),
    );
    assert!(stranger.request("GET", &path, &headers).await.is_err());
    assert_eq!(gw.store().await.len(), 0, "nothing reached the gateway");

    // The department's own certificate: served, and its fingerprint is in the event.
    let r = gw
        .client_as("minzheng")
        .request("GET", &path, &headers)
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let (cert_path, _) = tongban::dev::devpki::DevPkiPaths::client(gw.home.path(), "minzheng");
    let der = CertificateDer::pem_file_iter(cert_path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let event = gw.store().await.get(r.audit_seq()).unwrap().unwrap();
    assert_eq!(
        event.body.cert_fingerprint,
        Some(tongban::audit::event::sha256(der.as_ref()))
    );
}

#[tokio::test]
async fn optional_mode_serves_callers_without_certificates() {
    let gw = TestGateway::start().await;
    let r = gw.client().request("GET", "/healthz", &[]).await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    let tok = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let r = gw.get("/v1/catalog", Some(&tok), None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        gw.store()
            .await
            .get(r.audit_seq())
            .unwrap()
            .unwrap()
            .body
            .cert_fingerprint,
        None
    );
}

#[test]
fn the_demo_ca_publishes_a_revocation_list_the_server_certificate_names() {
    use rustls::pki_types::CertificateRevocationListDer;
    let (home, _) = crate::helpers::demo_home();
    let crl_path = home.path().join("certs/ca.crl");
    let crl = CertificateRevocationListDer::from_pem_file(&crl_path).expect("a PEM CRL");
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(home.path().join("certs/ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::server::WebPkiClientVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        provider,
    )
    .with_crls([crl])
    .build()
    .expect("the CRL is one a verifier takes");
    let server = CertificateDer::from_pem_file(home.path().join("certs/server.pem")).unwrap();
    let uri = format!(
        "file://{}",
        std::path::absolute(&crl_path).unwrap().display()
    );
    assert!(
        server.windows(uri.len()).any(|w| w == uri.as_bytes()),
        "the server certificate names {uri} as its CRL distribution point"
    );
}

/// The SHA-256 thumbprint of a department's demo client certificate.
fn thumbprint(gw: &TestGateway, dept: &str) -> [u8; 32] {
    let (cert_path, _) = tongban::dev::devpki::DevPkiPaths::client(gw.home.path(), dept);
    let der = CertificateDer::pem_file_iter(cert_path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    tongban::audit::event::sha256(der.as_ref())
}

/// A token signed by the demo issuer with the given claims.
fn signed(gw: &TestGateway, claims: &serde_json::Value) -> String {
    let key = std::fs::read(gw.home.path().join("keys/issuer.pem")).unwrap();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        claims,
        &jsonwebtoken::EncodingKey::from_ec_pem(&key).unwrap(),
    )
    .unwrap()
}

fn lookup_headers(tok: &str) -> Vec<(String, String)> {
    vec![
        ("authorization".to_owned(), format!("Bearer {tok}")),
        ("x-purpose".to_owned(), "dibao_review".to_owned()),
        ("x-case-ref".to_owned(), "MZ-1".to_owned()),
    ]
}

/// One caller, one identity: a client certificate names its department, and
/// a token of another department over it is refused, in every client-auth
/// mode; a token bound to a certificate (`cnf.x5t#S256`) is accepted only
/// over a connection with that certificate.
#[tokio::test]
async fn a_certificate_and_a_token_must_name_the_same_caller() {
    for mode in [ClientAuth::Optional, ClientAuth::Required] {
        let gw = TestGateway::start_with(|c, _| c.tls.client_auth = mode).await;
        let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
        let path = format!("/v1/datasets/gongan.hukou/records/{id}");
        let minzheng = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
        let r = gw
            .client_as("minzheng")
            .request("GET", &path, &lookup_headers(&minzheng))
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::OK, "{mode:?}: {}", r.text);

        // renshe's certificate with minzheng's token.
        let r = gw
            .client_as("renshe")
            .request("GET", &path, &lookup_headers(&minzheng))
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{mode:?}: {}", r.text);
        assert_eq!(
            r.problem_type(),
            Some("/problems/certificate-department-mismatch")
        );
        assert!(!r.text.contains("hukou_address"));
        let event = gw.store().await.get(r.audit_seq()).unwrap().unwrap().body;
        assert_eq!(event.status, 401, "refused and audited");
    }

    let gw = TestGateway::start().await;
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    let path = format!("/v1/datasets/gongan.hukou/records/{id}");
    let now = gw.clock.unix_secs();
    let bound = |t: &str| {
        signed(
            &gw,
            &serde_json::json!({
                "iss": tongban::dev::demo::DEMO_ISSUER, "aud": tongban::dev::demo::DEMO_AUDIENCE,
                "sub": "clerk-007", "dept": "minzheng", "roles": ["dibao_reviewer"],
                "iat": now, "exp": now + 600, "cnf": {"x5t#S256": t},
            }),
        )
    };
    let b64 = |b: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    };
    let tok = bound(&b64(&thumbprint(&gw, "minzheng")));
    let r = gw
        .client_as("minzheng")
        .request("GET", &path, &lookup_headers(&tok))
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = gw
        .client()
        .request("GET", &path, &lookup_headers(&tok))
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert_eq!(
        r.problem_type(),
        Some("/problems/certificate-binding-mismatch")
    );
    // Bound to another certificate (another department's thumbprint).
    let tok = bound(&b64(&thumbprint(&gw, "renshe")));
    let r = gw
        .client_as("minzheng")
        .request("GET", &path, &lookup_headers(&tok))
        .await
        .unwrap();
    assert_eq!(
        r.problem_type(),
        Some("/problems/certificate-binding-mismatch"),
        "{}",
        r.text
    );
    // A thumbprint that is not one.
    let r = gw
        .client_as("minzheng")
        .request("GET", &path, &lookup_headers(&bound("x")))
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
}

/// Each issuer vouches only for the departments and staff roles it is
/// configured for: only the operator's own issuer mints staff.
#[tokio::test]
async fn an_issuer_vouches_only_for_its_departments_and_staff_roles() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let public = key.public_key_pem();
    let private = key.serialize_pem();
    let gw = TestGateway::start_with(|c, home| {
        let path = home.join("keys/medical.pub.pem");
        std::fs::write(&path, &public).unwrap();
        let mut issuer = c.issuers[0].clone();
        issuer.issuer = "https://idp.yibao.example".into();
        issuer.public_key = Some(path);
        issuer.departments = None;
        issuer.roles = Vec::new();
        c.issuers.push(issuer);
    })
    .await;
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    let now = gw.clock.unix_secs();
    let mint = |dept: &str, roles: &[&str]| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
            &serde_json::json!({
                "iss": "https://idp.yibao.example", "aud": tongban::dev::demo::DEMO_AUDIENCE,
                "sub": "x-1", "dept": dept, "roles": roles, "iat": now, "exp": now + 600,
            }),
            &jsonwebtoken::EncodingKey::from_ec_pem(private.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    // Without `departments`: every registered department but the operator's.
    let r = gw
        .get(
            &format!("/v1/datasets/gongan.hukou/records/{id}"),
            Some(&mint("yibao", &["enrollment_clerk"])),
            Some("medical_insurance_enrollment"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for (dept, role, path) in [
        ("shujuju", "privacy_officer", "/v1/audit/events"),
        ("shujuju", "policy_admin", "/v1/admin/grants"),
        ("yibao", "policy_admin", "/v1/catalog"),
    ] {
        let r = gw.get(path, Some(&mint(dept, &[role])), None, None).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{dept}/{role}: {}",
            r.text
        );
        assert_eq!(
            r.problem_type(),
            Some("/problems/issuer-out-of-scope"),
            "{dept}/{role}"
        );
    }
    // The demo's issuer names its departments and staff roles: officers work.
    let officer = gw.token("shujuju", "officer-1", &["privacy_officer"]);
    let r = gw.get("/v1/audit/events", Some(&officer), None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}
