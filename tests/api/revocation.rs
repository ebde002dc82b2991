//! Client-certificate revocation: `tongban cert revoke` and `cert issue`
//! against a running gateway with the demo CRL in `tls.client_crls`, CRLs
//! that must be refused on reload, a CRL going stale in force, and the
//! `tongban admin` emergency stops.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hyper::StatusCode;
use time::OffsetDateTime;

use crate::helpers::{Client, TestGateway};
use tongban::clock::Clock;
use tongban::config::{ClientAuth, StaleCrl};
use tongban::metrics::{CertRefusalLabels, CrlLabels};

fn tongban(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tongban"))
        .args(args)
        .output()
        .expect("tongban runs")
}

fn client_of(gw: &TestGateway, dept: &str) -> Client {
    let (cert, key) = tongban::dev::devpki::DevPkiPaths::client(gw.home.path(), dept);
    Client::new(
        gw.addr,
        &gw.home.path().join("certs/ca.pem"),
        Some((cert, key)),
    )
}

/// Whether a request on a new connection with this client's certificate is served.
async fn served(client: &Client) -> bool {
    matches!(client.request("GET", "/healthz", &[]).await, Ok(r) if r.status == StatusCode::OK)
}

/// Waits (up to five seconds) for `served` to become `want`.
async fn until_served(client: &Client, want: bool) -> bool {
    for _ in 0..50 {
        if served(client).await == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn refused(gw: &TestGateway, reason: &'static str) -> u64 {
    gw.gw
        .metrics
        .client_certs_refused
        .get_or_create(&CertRefusalLabels { reason })
        .get()
}

fn listed(gw: &TestGateway) -> i64 {
    gw.gw
        .metrics
        .crl_revoked
        .get_or_create(&CrlLabels {
            issuer: "CN=tongban development CA, O=tongban demo".into(),
        })
        .get()
}

async fn start_required() -> TestGateway {
    TestGateway::start_at(
        |config, _| config.tls.client_auth = ClientAuth::Required,
        Clock::system(),
    )
    .await
}

#[tokio::test]
async fn a_revoked_certificate_is_refused_after_the_reload_and_a_fresh_one_is_served() {
    let gw = start_required().await;
    let home = gw.home.path().to_str().unwrap().to_owned();
    // One client, reused: its TLS session cache must not let a revoked
    // certificate back in by resuming a session from before the revocation.
    let minzheng = client_of(&gw, "minzheng");
    let gongan = client_of(&gw, "gongan");
    assert!(served(&minzheng).await);
    assert!(served(&minzheng).await, "a resumed session is served too");
    assert!(served(&gongan).await);

    let out = tongban(&["cert", "revoke", "--home", &home, "--dept", "minzheng"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("revoked serial "), "{said}");

    assert!(
        until_served(&minzheng, false).await,
        "the revoked certificate is refused within five seconds"
    );
    assert!(!served(&minzheng).await, "and stays refused");
    assert!(refused(&gw, "revoked") >= 1, "counted by reason");
    assert_eq!(listed(&gw), 1);
    assert!(served(&gongan).await, "other departments are untouched");

    // Revoking it again is harmless and says so.
    let out = tongban(&["cert", "revoke", "--home", &home, "--dept", "minzheng"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("already revoked"));

    // A fresh certificate for the department works at once.
    let out = tongban(&["cert", "issue", "--home", &home, "--dept", "minzheng"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(served(&client_of(&gw, "minzheng")).await);

    // Path tricks are refused before any file is touched.
    let out = tongban(&["cert", "issue", "--home", &home, "--dept", "../escape"]);
    assert!(!out.status.success());
    assert!(!gw.home.path().join("certs/escape.pem").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_opened_before_the_revocation_is_refused_at_its_next_request() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let gw = start_required().await;
    let home = gw.home.path().to_str().unwrap().to_owned();
    let minzheng = client_of(&gw, "minzheng");
    // Two connections opened before the revocation: HTTP/1.1 and HTTP/2.
    let (mut h1, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(minzheng.connect().await.unwrap()))
            .await
            .unwrap();
    tokio::spawn(conn);
    let (mut h2, conn) = hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        TokioIo::new(minzheng.clone().h2().connect().await.unwrap()),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let request = |uri: &str| {
        hyper::Request::get(uri)
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    // The certificate passes; the catalog wants a token (401 token-…).
    for r in [
        h1.send_request(request("/v1/catalog")).await.unwrap(),
        h2.send_request(request("https://localhost/v1/catalog"))
            .await
            .unwrap(),
    ] {
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("/problems/token-"));
    }

    let out = tongban(&["cert", "revoke", "--home", &home, "--dept", "minzheng"]);
    assert!(out.status.success());
    let mut reloaded = false;
    for _ in 0..50 {
        if listed(&gw) == 1 {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reloaded, "the CRL is reloaded");

    for (version, r) in [
        (
            "HTTP/1.1",
            h1.send_request(request("/v1/catalog")).await.unwrap(),
        ),
        (
            "HTTP/2",
            h2.send_request(request("https://localhost/v1/catalog"))
                .await
                .unwrap(),
        ),
        (
            "HTTP/2, a lookup (served without the router)",
            h2.send_request(request(
                "https://localhost/v1/datasets/gongan.hukou/records/110101199810229455",
            ))
            .await
            .unwrap(),
        ),
    ] {
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{version}");
        if version == "HTTP/1.1" {
            assert_eq!(r.headers()["connection"], "close");
        }
        let seq: u64 = r.headers()["x-audit-seq"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body: serde_json::Value =
            serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert!(
            body["type"]
                .as_str()
                .unwrap()
                .ends_with("/client-certificate-revoked"),
            "{version}: {body}"
        );
        let event = gw.store().await.get(seq).unwrap().unwrap().body;
        assert_eq!(event.operation, "client-certificate-revoked");
        assert!(event.cert_fingerprint.is_some());
    }
    assert!(!served(&minzheng).await, "nor can it open a new connection");
}

/// A CRL over `home`'s development CA, with the given validity.
fn crl_signed_by_home_ca(home: &Path, next_update: OffsetDateTime) -> String {
    let this_update = OffsetDateTime::now_utc() - time::Duration::hours(2);
    tongban::dev::devpki::empty_crl(home, 100, this_update, next_update).unwrap()
}

#[tokio::test]
async fn a_crl_that_is_invalid_foreign_or_expired_is_refused_and_the_one_in_force_stays() {
    let gw = start_required().await;
    let home = gw.home.path().to_owned();
    let crl_path = home.join("certs/ca.crl");
    let minzheng = client_of(&gw, "minzheng");
    // The list before the revocation: in date, signed by the CA, but older.
    let older = std::fs::read(&crl_path).unwrap();
    let out = tongban(&[
        "cert",
        "revoke",
        "--home",
        home.to_str().unwrap(),
        "--dept",
        "minzheng",
    ]);
    assert!(out.status.success());
    assert!(until_served(&minzheng, false).await);

    let (other_home, _) = crate::helpers::demo_home();
    let attempts: Vec<(&str, Vec<u8>)> = vec![
        (
            "not a CRL",
            b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n".to_vec(),
        ),
        ("DER garbage", vec![0x30, 0x03, 0x02, 0x01, 0x00]),
        ("older than the list in force (a replay)", older),
        (
            "signed by another CA",
            std::fs::read(other_home.path().join("certs/ca.crl")).unwrap(),
        ),
        (
            "past its next update",
            crl_signed_by_home_ca(&home, OffsetDateTime::now_utc() - time::Duration::hours(1))
                .into_bytes(),
        ),
    ];
    for (i, (what, bytes)) in attempts.into_iter().enumerate() {
        let tmp = home.join("certs/incoming.crl");
        std::fs::write(&tmp, &bytes).unwrap();
        std::fs::rename(&tmp, &crl_path).unwrap();
        let failures = i as u64 + 1;
        let mut seen = false;
        for _ in 0..50 {
            if gw.gw.metrics.crl_reload_failures.get() >= failures {
                seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(seen, "{what}: the reload is refused");
        assert_eq!(listed(&gw), 1, "{what}: the list in force stays");
        assert!(
            !served(&minzheng).await,
            "{what}: the revoked certificate stays refused"
        );
        assert!(
            served(&client_of(&gw, "gongan")).await,
            "{what}: others are served"
        );
    }
}

#[tokio::test]
async fn a_crl_past_its_next_update_in_force_refuses_certificates_unless_told_to_accept() {
    for policy in [StaleCrl::Refuse, StaleCrl::Accept] {
        let gw = TestGateway::start_at(
            |config, home| {
                config.tls.client_auth = ClientAuth::Required;
                config.tls.stale_crl = policy;
                // Valid for three more seconds.
                let crl = crl_signed_by_home_ca(
                    home,
                    OffsetDateTime::now_utc() + time::Duration::seconds(3),
                );
                std::fs::write(home.join("certs/ca.crl"), crl).unwrap();
            },
            Clock::system(),
        )
        .await;
        let gongan = client_of(&gw, "gongan");
        assert!(
            served(&gongan).await,
            "{policy:?}: served while the CRL is fresh"
        );
        tokio::time::sleep(Duration::from_secs(4)).await;
        match policy {
            StaleCrl::Refuse => {
                assert!(!served(&gongan).await, "fails closed once the CRL is stale");
                assert!(refused(&gw, "crl_expired") >= 1);
            }
            StaleCrl::Accept => assert!(served(&gongan).await, "tolerated when told to"),
        }
    }
}

fn jti_of(token: &str) -> String {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_commands_suspend_resume_and_deny_a_token_on_a_running_gateway() {
    let gw = TestGateway::start_at(|_, _| {}, Clock::system()).await;
    let home = gw.home.path().to_str().unwrap().to_owned();
    let url = format!("https://{}", gw.addr);
    let admin = |args: &[&str]| {
        let mut all = vec!["admin"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--home", &home, "--url", &url]);
        tongban(&all)
    };
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    let clerk = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let lookup = async |tok: &str| {
        gw.client()
            .request(
                "GET",
                &format!("/v1/datasets/gongan.hukou/records/{id}"),
                &[
                    ("authorization".to_owned(), format!("Bearer {tok}")),
                    ("x-purpose".to_owned(), "dibao_review".to_owned()),
                    ("x-case-ref".to_owned(), "MZ-2026-7".to_owned()),
                ],
            )
            .await
            .unwrap()
    };
    assert_eq!(lookup(&clerk).await.status, StatusCode::OK);

    let out = admin(&[
        "suspend",
        "minzheng",
        "--reason",
        "breach under investigation",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = lookup(&clerk).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.problem_type().unwrap().ends_with("/department-suspended"));
    let out = admin(&["departments"]);
    let listing: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let minzheng = listing["departments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "minzheng")
        .unwrap();
    assert_eq!(minzheng["suspended"], true);

    let out = admin(&["resume", "minzheng"]);
    assert!(out.status.success());
    assert_eq!(lookup(&clerk).await.status, StatusCode::OK);

    let jti = jti_of(&clerk);
    let out = admin(&[
        "revoke-token",
        "--jti",
        &jti,
        "--expires",
        "2d",
        "--reason",
        "token leaked",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = lookup(&clerk).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.problem_type().unwrap().ends_with("/token-revoked"));
    let fresh = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    assert_eq!(
        lookup(&fresh).await.status,
        StatusCode::OK,
        "other tokens are served"
    );

    // Refusals come back as a non-zero exit with the problem's title and type.
    let out = admin(&["suspend", "shujuju", "--reason", "x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot-suspend-operator"));
    let out = admin(&["suspend", "../admin", "--reason", "x"]);
    assert!(!out.status.success());
    // A token without the role is refused by the gateway.
    let out = Command::new(env!("CARGO_BIN_EXE_tongban"))
        .args(["admin", "revoked-tokens", "--url", &url, "--ca"])
        .arg(gw.home.path().join("certs/ca.pem"))
        .env("TONGBAN_TOKEN", &fresh)
        .output()
        .unwrap();
    assert!(!out.status.success());
}
