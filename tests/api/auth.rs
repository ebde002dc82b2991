//! Authentication: every malformed, forged, expired or misdirected token is
//! refused with 401 and `WWW-Authenticate: Bearer`, and audited.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hyper::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::TestGateway;

fn claims(gw: &TestGateway) -> Value {
    let now = gw.clock.unix_secs();
    json!({
        "iss": tongban::dev::demo::DEMO_ISSUER, "aud": tongban::dev::demo::DEMO_AUDIENCE,
        "sub": "clerk-007", "dept": "minzheng", "roles": ["dibao_reviewer"],
        "iat": now, "exp": now + 600,
    })
}

fn sign(gw: &TestGateway, claims: &Value) -> String {
    let key = std::fs::read(gw.home.path().join("keys/issuer.pem")).unwrap();
    jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        claims,
        &EncodingKey::from_ec_pem(&key).unwrap(),
    )
    .unwrap()
}

fn with(gw: &TestGateway, f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut c = claims(gw);
    f(c.as_object_mut().unwrap());
    sign(gw, &c)
}

#[tokio::test]
async fn bad_tokens_are_refused_with_401_and_audited() {
    let gw = TestGateway::start().await;
    let id = &gw.sample_ids("gongan.hukou", 1)[0];
    let path = format!("/v1/datasets/gongan.hukou/records/{id}");
    let good = sign(&gw, &claims(&gw));
    let (h, p, _) = {
        let mut parts = good.split('.');
        (
            parts.next().unwrap().to_owned(),
            parts.next().unwrap().to_owned(),
            parts.next().unwrap().to_owned(),
        )
    };
    let public_pem = std::fs::read(gw.home.path().join("keys/issuer.pub.pem")).unwrap();
    let other_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();

    let cases: Vec<(&str, String)> = vec![
        ("alg none", format!("{}.{p}.", B64.encode(br#"{"alg":"none","typ":"JWT"}"#))),
        ("stripped signature", format!("{h}.{p}.")),
        ("HS256 signed with the public key", jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims(&gw), &EncodingKey::from_secret(&public_pem)).unwrap()),
        ("signed by another key", jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims(&gw), &EncodingKey::from_ec_pem(other_key.as_bytes()).unwrap()).unwrap()),
        ("payload swapped", format!("{h}.{}.{}", B64.encode(serde_json::to_vec(&json!({"iss": tongban::dev::demo::DEMO_ISSUER, "aud": "tongban", "sub": "x", "dept": "gongan", "roles": ["dibao_reviewer"], "exp": 9_999_999_999_i64})).unwrap()), good.rsplit('.').next().unwrap())),
        ("expired", gw.token_with("minzheng", "clerk-007", &["dibao_reviewer"], -7200, 600)),
        ("not yet valid", gw.token_with("minzheng", "clerk-007", &["dibao_reviewer"], 3600, 600)),
        ("wrong issuer", with(&gw, |c| { c.insert("iss".into(), json!("someone-else")); })),
        ("wrong audience", with(&gw, |c| { c.insert("aud".into(), json!("another-gateway")); })),
        ("no audience", with(&gw, |c| { c.remove("aud"); })),
        ("no exp", with(&gw, |c| { c.remove("exp"); })),
        ("no dept", with(&gw, |c| { c.remove("dept"); })),
        ("no roles", with(&gw, |c| { c.remove("roles"); })),
        ("roles as a string", with(&gw, |c| { c.insert("roles".into(), json!("dibao_reviewer")); })),
        ("unknown department", with(&gw, |c| { c.insert("dept".into(), json!("nosuchdept")); })),
        ("department id with tricks", with(&gw, |c| { c.insert("dept".into(), json!("../minzheng")); })),
        ("not a JWT", "hello".to_owned()),
        ("oversize", format!("{h}.{}.{}", "A".repeat(9000), "B")),
    ];
    let mut expected_events = 0;
    for (what, token) in &cases {
        let r = gw
            .get(&path, Some(token), Some("dibao_review"), Some("MZ-1"))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.text);
        let challenge = r.headers["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.starts_with("Bearer ") && challenge.contains("error=\"invalid_token\""),
            "{what}: {challenge}"
        );
        assert!(
            r.problem_type()
                .is_some_and(|t| t.starts_with("/problems/")),
            "{what}"
        );
        expected_events += 1;
        let event = gw.store().await.get(r.audit_seq()).unwrap().unwrap();
        assert_eq!(event.body.status, 401, "{what}");
        assert_eq!(event.body.outcome, tongban::audit::Outcome::Deny);
        assert_eq!(
            event.body.dept, None,
            "{what}: no identity is recorded for a refused token"
        );
    }
    assert_eq!(gw.store().await.len(), expected_events);

    // Schemes and headers.
    for (what, headers) in [
        (
            "basic scheme",
            vec![("authorization", "Basic dXNlcjpwYXNz".to_owned())],
        ),
        (
            "two tokens",
            vec![
                ("authorization", format!("Bearer {good}")),
                ("authorization", format!("Bearer {good}")),
            ],
        ),
    ] {
        let headers: Vec<(String, String)> = headers
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .chain([
                ("x-purpose".to_owned(), "dibao_review".to_owned()),
                ("x-case-ref".to_owned(), "MZ-1".to_owned()),
            ])
            .collect();
        let r = gw.client().request("GET", &path, &headers).await.unwrap();
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}");
        assert!(
            r.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_request"),
            "{what}"
        );
    }

    // And the good token works.
    let r = gw
        .get(&path, Some(&good), Some("dibao_review"), Some("MZ-1"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn a_cached_token_still_expires() {
    let gw = TestGateway::start().await;
    let id = &gw.sample_ids("gongan.hukou", 1)[0];
    let path = format!("/v1/datasets/gongan.hukou/records/{id}");
    let tok = gw.token_with("minzheng", "clerk-007", &["dibao_reviewer"], 0, 60);
    assert_eq!(
        gw.get(&path, Some(&tok), Some("dibao_review"), Some("MZ-1"))
            .await
            .status,
        StatusCode::OK
    );
    gw.clock.advance(std::time::Duration::from_secs(120));
    let r = gw
        .get(&path, Some(&tok), Some("dibao_review"), Some("MZ-1"))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.problem_type(), Some("/problems/token-expired"));
}

#[tokio::test]
async fn staff_roles_do_not_reach_resident_records() {
    let gw = TestGateway::start().await;
    let id = &gw.sample_ids("gongan.hukou", 1)[0];
    let path = format!("/v1/datasets/gongan.hukou/records/{id}");
    for role in ["privacy_officer", "policy_admin"] {
        let tok = gw.token("shujuju", "staff-1", &[role]);
        let r = gw
            .get(&path, Some(&tok), Some("dibao_review"), Some("MZ-1"))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{role}");
    }
}

/// The verified-token cache is keyed on the whole token: a token already
/// verified and cached, replayed with its header and payload but another
/// signature (or none), is verified afresh and refused, on a new connection
/// and on the connection that carried the good one.
#[tokio::test]
async fn a_cached_token_with_another_signature_is_refused() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::Request;
    use hyper_util::rt::TokioIo;

    let gw = TestGateway::start().await;
    let id = &gw.sample_ids("gongan.hukou", 1)[0];
    let path = format!("/v1/datasets/gongan.hukou/records/{id}");
    let good = sign(&gw, &claims(&gw));
    let (head_payload, signature) = good.rsplit_once('.').unwrap();
    let mut other = signature.as_bytes().to_vec();
    // Another valid-looking signature: one base64url character changed
    // in the middle (the last one may carry only padding bits).
    let mid = other.len() / 2;
    other[mid] = if other[mid] == b'A' { b'B' } else { b'A' };
    let forged = [
        format!("{head_payload}.{}", String::from_utf8(other).unwrap()),
        format!("{head_payload}."),
        // Half of the token, then junk: a cache keyed on a prefix would match.
        format!("{head_payload}.{}", "A".repeat(signature.len())),
    ];

    // New connections: the good token is cached, the forgeries are not it.
    let r = gw
        .get(&path, Some(&good), Some("dibao_review"), Some("MZ-2026-1"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for token in &forged {
        let r = gw
            .get(&path, Some(token), Some("dibao_review"), Some("MZ-2026-1"))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{token}: {}", r.text);
        assert!(!r.text.contains("\"name\""), "no data for a forgery");
    }

    // One keep-alive connection: good, forged, good.
    let tls = gw.client().connect().await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    for (token, want) in [
        (&good, StatusCode::OK),
        (&forged[0], StatusCode::UNAUTHORIZED),
        (&forged[1], StatusCode::UNAUTHORIZED),
        (&forged[2], StatusCode::UNAUTHORIZED),
        (&good, StatusCode::OK),
    ] {
        let req = Request::get(&path)
            .header("host", "localhost")
            .header("authorization", format!("Bearer {token}"))
            .header("x-purpose", "dibao_review")
            .header("x-case-ref", "MZ-2026-1")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(status, want, "{token}: {}", String::from_utf8_lossy(&body));
    }
}
