//! Hostile input over both HTTP versions: trickled bodies, malformed JSON,
//! bytes that are not UTF-8, overlong segments, and HTTP/2 with the same
//! answers and refusals as HTTP/1.1.

use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{Client, TestGateway, TestResponse};

const HUKOU: &str = "/v1/datasets/gongan.hukou/records";

fn query_headers(token: &str) -> Vec<(String, String)> {
    vec![
        ("authorization".to_owned(), format!("Bearer {token}")),
        ("x-purpose".to_owned(), "pension_eligibility".to_owned()),
        ("content-type".to_owned(), "application/json".to_owned()),
    ]
}

async fn post(client: &Client, path: &str, token: &str, body: &str) -> TestResponse {
    client
        .request_with_body(
            "POST",
            path,
            &query_headers(token),
            Bytes::from(body.to_owned()),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn a_client_that_trickles_its_body_gets_408_and_is_audited() {
    let gw = TestGateway::start_with(|c, _| c.limits.body_timeout_secs = 1).await;
    let tok = gw.token("renshe", "clerk-1", &["pension_clerk"]);
    let mut tls = gw.client().connect().await.unwrap();
    let head = format!(
        "POST {HUKOU}:batch HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {tok}\r\n\
         x-purpose: pension_eligibility\r\ncontent-type: application/json\r\n\
         content-length: 200\r\n\r\n{{\"resident_ids\": ["
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf))
        .await
        .expect("no answer to a trickled body")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("/problems/request-timeout"), "{answer}");
    let seq: u64 = answer
        .lines()
        .find_map(|l| l.strip_prefix("x-audit-seq: "))
        .expect("audited")
        .trim()
        .parse()
        .unwrap();
    let event = gw.store().await.get(seq).unwrap().unwrap().body;
    assert_eq!(event.reason.as_deref(), Some("request-timeout"));
    assert_eq!(event.dept.as_deref(), Some("renshe"));
    assert_eq!(event.status, 408);
}

#[tokio::test]
async fn malformed_and_mistyped_bodies_are_refused_before_any_lookup() {
    let gw = TestGateway::start().await;
    let tok = gw.token("renshe", "clerk-1", &["pension_clerk"]);
    let before = gw.store().await.len();
    let path = format!("{HUKOU}:batch");
    let cases = [
        ("{\"resident_ids\": [", "invalid-body"),
        ("{\"resident_ids\": \"110101199810229455\"}", "invalid-body"),
        ("{\"resident_ids\": [], \"smuggled\": true}", "invalid-body"),
        ("[1, 2, 3]", "invalid-body"),
        ("\u{feff}{\"resident_ids\": []}", "invalid-body"),
        ("", "invalid-body"),
    ];
    for (body, slug) in cases {
        let r = post(&gw.client(), &path, &tok, body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body:?}: {}", r.text);
        assert_eq!(
            r.problem_type(),
            Some(format!("/problems/{slug}").as_str()),
            "{body:?}"
        );
    }
    // Not UTF-8 at all.
    let r = gw
        .client()
        .request_with_body(
            "POST",
            &path,
            &query_headers(&tok),
            Bytes::from_static(b"{\"resident_ids\": [\"\xff\xfe\"]}"),
        )
        .await
        .unwrap();
    assert_eq!(r.problem_type(), Some("/problems/invalid-body"));
    // Another media type.
    let mut headers = query_headers(&tok);
    headers[2].1 = "text/plain".to_owned();
    let r = gw
        .client()
        .request_with_body("POST", &path, &headers, Bytes::from_static(b"{}"))
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Past the body limit.
    let big = format!("{{\"resident_ids\": [\"{}\"]}}", "1".repeat(70 * 1024));
    let r = post(&gw.client(), &path, &tok, &big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.problem_type(), Some("/problems/body-too-large"));
    // Every refusal was audited, and none disclosed anything.
    assert_eq!(gw.store().await.len(), before + 9);
    for seq in before + 1..=before + 9 {
        let e = gw.store().await.get(seq as u64).unwrap().unwrap().body;
        assert!(e.fields.is_empty() && e.resident.is_none(), "{e:?}");
    }
}

#[tokio::test]
async fn paths_that_are_not_utf8_or_too_long_are_refused_cleanly() {
    let gw = TestGateway::start().await;
    let tok = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let auth = [
        ("x-purpose", "dibao_review"),
        ("x-case-ref", "MZ-1"),
        ("authorization", tok.as_str()),
    ];
    let headers: Vec<(String, String)> = auth
        .iter()
        .map(|(k, v)| {
            let v = if *k == "authorization" {
                format!("Bearer {v}")
            } else {
                (*v).to_owned()
            };
            ((*k).to_owned(), v)
        })
        .collect();
    // (path, status, problem slug)
    let long = "1".repeat(4000);
    let cases = [
        (format!("{HUKOU}/%FF%FE%FD"), "invalid-path"),
        (
            "/v1/datasets/%C0%AE%C0%AE/records/1".to_owned(),
            "invalid-path",
        ),
        (format!("{HUKOU}/{long}"), "invalid-resident-id"),
        (
            format!("/v1/datasets/{long}.hukou/records/1"),
            "invalid-dataset-id",
        ),
        (
            format!("{HUKOU}/%2e%2e%2f%2e%2e%2fadmin"),
            "invalid-resident-id",
        ),
        (
            format!("{HUKOU}/110101199810229455%0d%0ax-injected:%201"),
            "invalid-resident-id",
        ),
    ];
    for (path, slug) in cases {
        let r = gw.client().request("GET", &path, &headers).await.unwrap();
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.text);
        assert_eq!(
            r.problem_type(),
            Some(format!("/problems/{slug}").as_str()),
            "{path}"
        );
        assert!(r.headers.get("x-injected").is_none());
    }
    // Raw bytes that are not UTF-8 in the request line, and a URI past every
    // buffer: refused by the HTTP layer, never an answer with data.
    let raw = gw
        .client()
        .raw(b"GET /v1/datasets/gongan.hukou/records/\xff\xfe HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await;
    assert!(raw.is_empty() || raw.starts_with("HTTP/1.1 400"), "{raw}");
    let huge = format!(
        "GET {HUKOU}/{} HTTP/1.1\r\nhost: localhost\r\n\r\n",
        "9".repeat(100 * 1024)
    );
    let raw = gw.client().raw(huge.as_bytes()).await;
    assert!(
        raw.is_empty() || raw.starts_with("HTTP/1.1 4"),
        "{}",
        &raw[..raw.len().min(200)]
    );
    assert_eq!(
        gw.client()
            .request("GET", "/healthz", &[])
            .await
            .unwrap()
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn http2_gets_the_same_answers_and_refusals_as_http1() {
    let gw = TestGateway::start().await;
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    let tok = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let h2 = gw.client().h2();
    let h1 = gw.client();
    let headers = vec![
        ("authorization".to_owned(), format!("Bearer {tok}")),
        ("x-purpose".to_owned(), "dibao_review".to_owned()),
        ("x-case-ref".to_owned(), "MZ-1".to_owned()),
    ];
    let path = format!("{HUKOU}/{id}");
    let a = h2.request("GET", &path, &headers).await.unwrap();
    let b = h1.request("GET", &path, &headers).await.unwrap();
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["record"], b.body["record"]);
    assert_ne!(
        a.audit_seq(),
        b.audit_seq(),
        "each request has its own event"
    );

    // Refusals are the same problems.
    let mut twice = headers.clone();
    twice.push(("x-purpose".to_owned(), "school_admission".to_owned()));
    let r = h2.request("GET", &path, &twice).await.unwrap();
    assert_eq!(r.problem_type(), Some("/problems/invalid-header"));
    let r = h2
        .request("GET", &format!("{HUKOU}/..%2F..%2Fetc%2Fpasswd"), &headers)
        .await
        .unwrap();
    assert_eq!(r.problem_type(), Some("/problems/invalid-resident-id"));
    let r = h2.request("GET", &path, &headers[..1]).await.unwrap();
    assert_eq!(r.problem_type(), Some("/problems/purpose-required"));
    let r = h2
        .request(
            "GET",
            &path,
            &[("authorization".to_owned(), "Bearer x.y.z".to_owned())],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // An oversized header list is refused, never served.
    let mut big = headers.clone();
    big.push(("x-big".to_owned(), "a".repeat(80 * 1024)));
    if let Ok(r) = h2.request("GET", &path, &big).await {
        assert!(r.status.is_client_error(), "{}", r.status);
    }
    // A trickled body has the same deadline over HTTP/2 (checked over HTTP/1.1
    // above); a complete one of the wrong kind gets the same 415.
    let renshe = gw.token("renshe", "clerk-1", &["pension_clerk"]);
    let mut headers = query_headers(&renshe);
    headers[2].1 = "text/plain".to_owned();
    let r = h2
        .request_with_body(
            "POST",
            &format!("{HUKOU}:batch"),
            &headers,
            Bytes::from_static(b"{}"),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", r.text);
    assert_eq!(
        h2.request("GET", "/healthz", &[]).await.unwrap().status,
        StatusCode::OK
    );
}

/// Over HTTP/2 an oversized body or header set gets the problem answer it
/// gets over HTTP/1.1 (413 `body-too-large`, 431 `headers-too-large`), not a
/// reset stream.
#[tokio::test]
async fn oversized_bodies_and_headers_get_the_same_problem_over_http2_as_over_http1() {
    let gw = TestGateway::start().await;
    let tok = gw.token("renshe", "batch-1", &["pension_clerk"]);
    let path = "/v1/datasets/gongan.hukou/records:batch";
    let big = format!("{{\"resident_ids\": [\"{}\"]}}", "1".repeat(70 * 1024));
    let headers = query_headers(&tok);
    for (proto, client) in [("HTTP/1.1", gw.client()), ("HTTP/2", gw.client().h2())] {
        let r = client
            .request_with_body("POST", path, &headers, Bytes::from(big.clone()))
            .await
            .unwrap_or_else(|e| panic!("{proto}: {e}"));
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{proto}");
        assert_eq!(
            r.problem_type(),
            Some("/problems/body-too-large"),
            "{proto}"
        );

        let mut big_headers = headers.clone();
        big_headers.push(("x-big".to_owned(), "a".repeat(40 * 1024)));
        let r = client
            .request("GET", "/v1/catalog", &big_headers)
            .await
            .unwrap_or_else(|e| panic!("{proto}: {e}"));
        assert_eq!(
            r.status,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "{proto}"
        );
        assert_eq!(
            r.problem_type(),
            Some("/problems/headers-too-large"),
            "{proto}"
        );
    }
}
