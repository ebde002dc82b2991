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
    let (cert, key) = tongban::devpki::foreign_client_cert("minzheng").unwrap();
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
    assert_eq!(gw.gw.audit_store.len(), 0, "nothing reached the gateway");

    // The department's own certificate: served, and its fingerprint is in the event.
    let r = gw
        .client_as("minzheng")
        .request("GET", &path, &headers)
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let (cert_path, _) = tongban::devpki::DevPkiPaths::client(gw.home.path(), "minzheng");
    let der = CertificateDer::pem_file_iter(cert_path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let event = gw.gw.audit_store.get(r.audit_seq()).unwrap().unwrap();
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
        gw.gw
            .audit_store
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
