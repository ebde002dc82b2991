//! Operations: metrics, connection limits, slow clients, oversized headers, traces.

use std::time::{Duration, Instant};

use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::TestGateway;

const HUKOU: &str = "/v1/datasets/gongan.hukou/records";

#[tokio::test]
async fn metrics_count_requests_and_the_audit_writer_without_leaking_ids() {
    let gw = TestGateway::start().await;
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    let tok = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    gw.get(
        &format!("{HUKOU}/{id}"),
        Some(&tok),
        Some("dibao_review"),
        Some("MZ-1"),
    )
    .await;
    gw.get(
        &format!("{HUKOU}/{id}"),
        Some(&tok),
        Some("school_admission"),
        Some("MZ-1"),
    )
    .await;
    let r = gw.client().request("GET", "/metrics", &[]).await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = &r.text;
    for needle in [
        "tongban_requests_total{operation=\"lookup\",decision=\"allow\",status=\"200\"} 1",
        "tongban_requests_total{operation=\"lookup\",decision=\"deny\",status=\"403\"} 1",
        "tongban_request_duration_seconds_bucket{",
        "tongban_audit_batch_events_count",
        "tongban_audit_flush_seconds_bucket",
        "tongban_audit_writer_up 1",
        "tongban_policy_info{version=\"",
        "tongban_connections_open",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    assert!(
        !text.contains(&id) && !text.contains("clerk-007"),
        "metrics hold no resident IDs or subjects"
    );
}

#[tokio::test]
async fn metrics_can_live_on_their_own_address_only() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = TestGateway::start_with(|c, _| c.metrics_listen = Some(addr)).await;
    let r = gw.client().request("GET", "/metrics", &[]).await.unwrap();
    assert_eq!(r.status, StatusCode::NOT_FOUND, "not on the HTTPS listener");
    let doc = gw
        .client()
        .request("GET", "/openapi.json", &[])
        .await
        .unwrap();
    assert!(
        doc.body["paths"].get("/metrics").is_none(),
        "nor in its description"
    );
    assert!(doc.body["paths"].get("/healthz").is_some());
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
            s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "the metrics listener did not come up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        text.starts_with("HTTP/1.1 200") && text.contains("tongban_requests_total"),
        "{text}"
    );
    // The operator's own address also gives readiness with its details.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    assert!(
        text.starts_with("HTTP/1.1 200") && text.contains("\"policy_version\""),
        "{text}"
    );
}

/// Anyone may ask whether the gateway is ready; only the operator's staff
/// learn its policy version, providers and their errors.
#[tokio::test]
async fn readiness_tells_anyone_ready_or_not_and_only_operator_staff_the_details() {
    let gw = TestGateway::start().await;
    let clerk = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let foreign_admin = gw.token("yibao", "admin-9", &["policy_admin"]);
    for token in [
        None,
        Some(&clerk),
        Some(&foreign_admin),
        Some(&"not-a-token".to_owned()),
    ] {
        let headers: Vec<(String, String)> = token
            .map(|t| vec![("authorization".to_owned(), format!("Bearer {t}"))])
            .unwrap_or_default();
        let r = gw
            .client()
            .request("GET", "/readyz", &headers)
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, serde_json::json!({"status": "ready"}), "{token:?}");
    }
    for role in ["policy_admin", "privacy_officer"] {
        let staff = gw.token("shujuju", "ops-1", &[role]);
        let auth = ("authorization".to_owned(), format!("Bearer {staff}"));
        let r = gw
            .client()
            .request("GET", "/readyz", &[auth])
            .await
            .unwrap();
        assert_eq!(r.body["status"], "ready");
        assert!(r.body["policy_version"].is_string(), "{role}: {}", r.text);
        assert!(r.body["providers"].is_object(), "{role}: {}", r.text);
    }
}

#[tokio::test]
async fn connections_past_the_limit_are_closed_and_counted() {
    let gw = TestGateway::start_with(|c, _| c.limits.max_connections = 2).await;
    let client = gw.client();
    // Two connections, each with a request in flight (its body still to come).
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut tls = client.connect().await.unwrap();
        tls.write_all(
            b"POST /v1/datasets/gongan.hukou/records:batch HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n",
        )
        .await
        .unwrap();
        busy.push(tls);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        client.connect().await.is_err(),
        "a third connection was served while both were busy"
    );
    let mut refused = 1;
    drop(busy);
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.request("GET", "/healthz", &[]).await.is_err() {
        // Until the busy ones' requests end, new ones are refused too.
        refused += 1;
        assert!(
            Instant::now() < deadline,
            "no connection was accepted after the others closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = client.request("GET", "/metrics", &[]).await.unwrap();
    assert!(
        r.text
            .contains(&format!("tongban_connections_refused_total {refused}\n")),
        "{refused} refused: {}",
        r.text
    );
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let gw = TestGateway::start_with(|c, _| c.limits.header_timeout_secs = 1).await;
    let mut tls = gw.client().connect().await.unwrap();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nx-slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection stayed open");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The gateway still serves others.
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
async fn oversized_and_hostile_headers_are_refused_cleanly() {
    let gw = TestGateway::start().await;
    let big = vec![("x-big".to_owned(), "a".repeat(80 * 1024))];
    // Either a 431 or a closed connection is a refusal; never a 2xx.
    if let Ok(r) = gw.client().request("GET", "/healthz", &big).await {
        assert_eq!(r.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
    let many: Vec<(String, String)> = (0..200)
        .map(|i| (format!("x-h{i}"), "v".to_owned()))
        .collect();
    if let Ok(r) = gw.client().request("GET", "/healthz", &many).await {
        assert!(r.status.is_client_error(), "{}", r.status);
    }
    // Duplicate purpose headers are refused, not guessed at.
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    let tok = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let headers = vec![
        ("authorization".to_owned(), format!("Bearer {tok}")),
        ("x-purpose".to_owned(), "dibao_review".to_owned()),
        ("x-purpose".to_owned(), "school_admission".to_owned()),
        ("x-case-ref".to_owned(), "MZ-1".to_owned()),
        (
            "traceparent".to_owned(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
        ),
    ];
    let r = gw
        .client()
        .request("GET", &format!("{HUKOU}/{id}"), &headers)
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.problem_type(), Some("/problems/invalid-header"));
    assert_eq!(
        gw.client()
            .request("GET", "/healthz", &[])
            .await
            .unwrap()
            .status,
        StatusCode::OK
    );
}

#[test]
fn only_well_formed_traceparents_are_taken() {
    use axum::http::HeaderValue;
    let t = |s: &str| tongban::api::trace_id(Some(&HeaderValue::from_str(s).unwrap()));
    assert_eq!(
        t("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(
        t("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        None
    );
    assert_eq!(
        t("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
        None
    );
    assert_eq!(
        t("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        None
    );
    assert_eq!(t("garbage"), None);
}

async fn served_certificate(gw: &TestGateway) -> Vec<u8> {
    let tls = gw.client().connect().await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .as_ref()
        .to_vec()
}

#[tokio::test]
async fn a_renewed_certificate_is_served_to_new_connections_while_open_ones_go_on() {
    use http_body_util::{BodyExt, Full};
    let gw = TestGateway::start().await;
    let before = served_certificate(&gw).await;

    // An open keep-alive connection, used once before the renewal.
    let tls = gw.client().connect().await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let get = || {
        hyper::Request::get("/healthz")
            .header("host", "localhost")
            .body(Full::new(bytes::Bytes::new()))
            .unwrap()
    };
    assert_eq!(
        sender.send_request(get()).await.unwrap().status(),
        StatusCode::OK
    );

    // Renew: a new key and certificate from the same CA, written in place.
    let home = gw.home.path();
    std::fs::remove_file(home.join("certs/server.pem")).unwrap();
    std::fs::remove_file(home.join("certs/server-key.pem")).unwrap();
    tongban::dev::devpki::ensure(home, &[]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if served_certificate(&gw).await != before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not served within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let file = std::fs::read_to_string(home.join("certs/server.pem")).unwrap();
    assert!(file.contains("BEGIN CERTIFICATE"));

    // The connection opened before the renewal still works.
    let r = sender.send_request(get()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let _ = r.into_body().collect().await;

    // A broken pair is refused; the renewed one stays in use.
    std::fs::write(home.join("certs/server-key.pem"), "not a key").unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        gw.client()
            .request("GET", "/healthz", &[])
            .await
            .unwrap()
            .status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_requests_in_flight_and_flushes_the_log() {
    let mut gw = TestGateway::start().await;
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    let tok = gw.token("renshe", "batch-1", &["pension_clerk"]);
    let client = gw.client();
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let (client, tok, id) = (client.clone(), tok.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            let headers = vec![
                ("authorization".to_owned(), format!("Bearer {tok}")),
                ("x-purpose".to_owned(), "pension_eligibility".to_owned()),
            ];
            client
                .request("GET", &format!("{HUKOU}/{id}"), &headers)
                .await
        }));
    }
    // Stop once requests are in flight: connections are open and some answers are being written.
    let deadline = Instant::now() + Duration::from_secs(20);
    while gw.gw.metrics.connections_open.get() < 10
        || gw
            .gw
            .audit
            .stats()
            .events
            .load(std::sync::atomic::Ordering::Relaxed)
            < 5
    {
        assert!(Instant::now() < deadline, "requests did not start");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    gw.stop().await;
    let mut answered = Vec::new();
    for t in tasks {
        if let Ok(r) = t.await.unwrap() {
            if r.status == StatusCode::OK {
                answered.push((r.audit_seq(), r.request_id()));
            }
        }
    }
    assert!(!answered.is_empty());
    for (seq, request_id) in answered {
        let e = gw
            .store()
            .await
            .get(seq)
            .unwrap()
            .expect("every answered request is in the log");
        assert_eq!(e.body.request_id, request_id);
    }
    let report = gw
        .store()
        .await
        .verify(Some(&gw.gw.checkpoint_signer.keyring()))
        .unwrap();
    assert!(
        report.ok() && report.last_checkpoint == Some(report.head_seq),
        "a last checkpoint covers the log: {report:?}"
    );
    assert!(!gw.gw.audit.is_healthy(), "the writer has stopped");
}

/// Every route the OpenAPI document must describe, with its method.
const ROUTES: &[(&str, &str)] = &[
    ("/v1/catalog", "get"),
    ("/v1/datasets/{dataset}/records/{resident_id}", "get"),
    (
        "/v1/datasets/{dataset}/records/{resident_id}/verify",
        "post",
    ),
    ("/v1/datasets/{dataset}/records:batch", "post"),
    ("/v1/audit/events", "get"),
    ("/v1/audit/events/{seq}", "get"),
    ("/v1/audit/residents/{resident_id}/disclosures", "get"),
    ("/v1/audit/verify", "get"),
    ("/v1/audit/export", "get"),
    ("/v1/audit/stats", "get"),
    ("/v1/audit/flags/{id}/review", "post"),
    ("/v1/me/disclosures", "get"),
    ("/v1/me/objections", "get"),
    ("/v1/me/objections", "post"),
    ("/v1/audit/objections", "get"),
    ("/v1/audit/objections/{id}/reply", "post"),
    ("/v1/sharing/requests", "get"),
    ("/v1/sharing/requests", "post"),
    ("/v1/sharing/requests/{id}/review", "post"),
    ("/v1/sharing/requests/{id}/answer", "post"),
    ("/v1/sharing/requests/{id}/withdraw", "post"),
    ("/v1/sharing/directory", "get"),
    ("/v1/admin/revoked-tokens/{id}", "delete"),
    ("/v1/objections", "get"),
    ("/v1/objections", "post"),
    ("/v1/objections/{id}/answer", "post"),
    ("/v1/sharing/grants/{id}/revoke", "post"),
    ("/v1/audit/checkpoint-key", "get"),
    ("/v1/admin/grants", "get"),
    ("/v1/admin/grants/{id}", "get"),
    ("/v1/admin/grants/{id}", "put"),
    ("/v1/admin/grants/{id}", "delete"),
    ("/v1/admin/grants/{id}/revert", "post"),
    ("/v1/admin/datasets", "get"),
    ("/v1/admin/datasets/{id}", "get"),
    ("/v1/admin/datasets/{id}", "put"),
    ("/v1/admin/datasets/{id}", "delete"),
    ("/v1/admin/validate", "post"),
    ("/v1/admin/decide", "post"),
    ("/v1/admin/history", "get"),
    ("/v1/admin/departments", "get"),
    ("/v1/admin/cluster", "get"),
    ("/v1/admin/cluster/versions", "get"),
    ("/v1/admin/departments/{dept}/suspend", "post"),
    ("/v1/admin/departments/{dept}/resume", "post"),
    ("/v1/admin/revoked-tokens", "get"),
    ("/v1/admin/revoked-tokens", "post"),
    ("/healthz", "get"),
    ("/readyz", "get"),
    ("/metrics", "get"),
    ("/openapi.json", "get"),
    ("/.well-known/jwks.json", "get"),
    ("/problems/{slug}", "get"),
    ("/v1/audit/prune", "post"),
    ("/v1/admin/datasets/{id}/records", "put"),
    ("/v1/admin/datasets/{id}/records", "post"),
    ("/v1/admin/backup", "get"),
    ("/v1/cases", "get"),
    ("/v1/audit/evaluation", "get"),
];

#[tokio::test]
async fn the_openapi_document_describes_every_route_with_its_security_and_refusals() {
    let gw = TestGateway::start().await;
    let r = gw
        .client()
        .request("GET", "/openapi.json", &[])
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    let doc = &r.body;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let expected = ROUTES;
    let documented: usize = paths
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert_eq!(documented, expected.len(), "{:?}", paths.keys());
    for &(path, method) in expected {
        let op = &paths[path][method];
        assert!(op.is_object(), "{method} {path} is not described");
        assert!(op["operationId"].is_string());
        if path.starts_with("/v1/") {
            let security = op["security"].as_array().unwrap();
            assert!(security.iter().all(|s| s.get("bearer").is_some()));
            for status in ["401", "403", "429", "503", "default"] {
                assert_eq!(
                    op["responses"][status]["content"]["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{method} {path} {status}"
                );
            }
        } else {
            assert!(op.get("security").is_none(), "{path} needs no token");
        }
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["client_certificate"]["type"], "mutualTLS");
    let problem = &doc["components"]["schemas"]["Problem"];
    for member in ["type", "title", "status", "detail"] {
        assert!(
            problem["required"]
                .as_array()
                .unwrap()
                .contains(&member.into())
        );
    }
    // Every route that answers is described: one the document lacks is 404.
    let r = gw
        .client()
        .request("GET", "/v1/nothing", &[])
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// A flood of requests without a valid token from one address fills the
/// audit log only up to the per-source limit; past it the refusals are
/// answered 429 at once and counted into one summary event per source and
/// minute. Authenticated requests from the same address are unaffected.
#[tokio::test]
async fn an_unauthenticated_flood_is_summarised_not_audited_one_by_one() {
    let gw = TestGateway::start_with(|c, _| {
        c.limits.unauthenticated_per_source = "20/min".parse().unwrap();
    })
    .await;
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    let path = format!("/v1/datasets/gongan.hukou/records/{id}");
    let before = gw.store().await.len();
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..100 {
        let junk = ("authorization".to_owned(), format!("Bearer junk.{i}.x"));
        let r = gw.client().request("GET", &path, &[junk]).await.unwrap();
        *statuses.entry(r.status.as_u16()).or_insert(0) += 1;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(
                r.problem_type(),
                Some("/problems/unauthenticated-rate-limited")
            );
            assert!(r.headers.contains_key("retry-after"));
            assert!(r.headers.get("x-audit-seq").is_none());
        }
    }
    assert_eq!(statuses.get(&401), Some(&20), "{statuses:?}");
    assert_eq!(statuses.get(&429), Some(&80), "{statuses:?}");
    assert_eq!(
        gw.store().await.len(),
        before + 20,
        "only the refusals within the limit"
    );

    // A token refused after it verified (bound to a certificate this
    // connection does not have) counts as unauthenticated too.
    let now = gw.clock.unix_secs();
    let key = std::fs::read(gw.home.path().join("keys/issuer.pem")).unwrap();
    let bound = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &serde_json::json!({
            "iss": tongban::dev::demo::DEMO_ISSUER, "aud": tongban::dev::demo::DEMO_AUDIENCE,
            "sub": "clerk-007", "dept": "minzheng", "roles": ["dibao_reviewer"],
            "iat": now, "exp": now + 600, "cnf": {"x5t#S256": "A".repeat(43)},
        }),
        &jsonwebtoken::EncodingKey::from_ec_pem(&key).unwrap(),
    )
    .unwrap();
    let r = gw
        .get(&path, Some(&bound), Some("dibao_review"), Some("MZ-1"))
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);

    // The same address, authenticated: served.
    let tok = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let r = gw
        .get(&path, Some(&tok), Some("dibao_review"), Some("MZ-1"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    // The minute's summary: one event for the source, with the count.
    gw.gw.write_unauthenticated_summaries().await;
    let summary = gw
        .store()
        .await
        .events_desc(1, u64::MAX)
        .map(|e| e.unwrap().1)
        .find(|e| e.body.operation == "unauthenticated.summary")
        .expect("a summary event");
    assert_eq!(&*summary.body.source, "127.0.0.1");
    let detail: serde_json::Value =
        serde_json::from_str(summary.body.detail.as_deref().unwrap()).unwrap();
    assert_eq!(detail["count"], 81, "{detail}");
    assert_eq!(gw.store().await.len(), before + 22);
}

/// Below the data directory's low-water mark the gateway says it is not
/// ready, before a full disk stops its audit log.
#[tokio::test]
async fn readiness_fails_below_the_disk_low_water_mark() {
    let gw = TestGateway::start_with(|c, _| c.audit.disk_low_water_mb = u64::MAX >> 21).await;
    let r = gw.readiness().await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.body["disk"]["state"], "low", "{}", r.text);
    assert!(r.body["disk"]["free_mb"].as_u64().unwrap() > 0);
    let m = gw.client().request("GET", "/metrics", &[]).await.unwrap();
    assert!(
        m.text.contains("tongban_data_disk_free_bytes"),
        "{}",
        m.text
    );

    let gw = TestGateway::start().await;
    let r = gw.readiness().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["disk"]["state"], "ok");
}

/// Connections that finish the handshake and then send nothing, over
/// HTTP/1.1 or HTTP/2, cannot hold every slot: each is closed once its
/// first request is overdue, and a new client is served.
#[tokio::test]
async fn idle_connections_cannot_lock_everyone_out() {
    let gw = TestGateway::start_with(|c, _| {
        c.limits.max_connections = 4;
        c.limits.first_request_timeout_secs = 1;
    })
    .await;
    let mut held = Vec::new();
    for i in 0..4 {
        let client = if i % 2 == 0 {
            gw.client()
        } else {
            gw.client().h2()
        };
        held.push(client.connect().await.unwrap());
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(6);
    while gw.client().request("GET", "/healthz", &[]).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "idle connections held every slot"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for mut tls in held {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "an idle connection stayed open");
    }
    let r = gw.client().request("GET", "/metrics", &[]).await.unwrap();
    assert!(
        r.text.contains("tongban_connections_idle_closed_total 4"),
        "{}",
        r.text
    );
}

/// Between requests too: a keep-alive connection with nothing in flight is
/// closed after `keepalive_idle_secs`; one source holds at most
/// `max_connections_per_source` connections.
#[tokio::test]
async fn keep_alive_idles_end_and_one_source_holds_only_its_share() {
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper_util::rt::TokioIo;

    let gw = TestGateway::start_with(|c, _| {
        c.limits.keepalive_idle_secs = 1;
        c.limits.max_connections_per_source = 2;
    })
    .await;
    let tls = gw.client().connect().await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    let closed = tokio::spawn(conn);
    let req = || {
        hyper::Request::get("/healthz")
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    assert_eq!(
        sender.send_request(req()).await.unwrap().status(),
        StatusCode::OK
    );
    let ended = tokio::time::timeout(Duration::from_secs(5), closed).await;
    assert!(ended.is_ok(), "the idle keep-alive connection stayed open");

    let a = gw.client().connect().await.unwrap();
    let b = gw.client().connect().await.unwrap();
    assert!(
        gw.client().request("GET", "/healthz", &[]).await.is_err(),
        "a third connection from the same source was served"
    );
    drop((a, b));
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.client().request("GET", "/healthz", &[]).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the source's slots did not come back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Behind a trusted balancer (TLS passthrough, PROXY protocol v2), the
/// client's address from the header is the caller's source, in the audit
/// log and for every per-source rule; a trusted peer must send the header.
#[tokio::test]
async fn behind_a_trusted_balancer_the_proxy_header_names_the_caller() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::TokioIo;

    let gw = TestGateway::start_with(|c, _| {
        c.limits.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend([0x21, 0x11, 0, 12, 203, 0, 113, 7, 127, 0, 0, 1]);
    header.extend(4000u16.to_be_bytes());
    header.extend(443u16.to_be_bytes());
    let tls = gw.client().connect_after(&header).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let tok = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let req = hyper::Request::get("/v1/catalog")
        .header("host", "localhost")
        .header("authorization", format!("Bearer {tok}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let seq: u64 = resp.headers()["x-audit-seq"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let _ = resp.into_body().collect().await;
    let event = gw.store().await.get(seq).unwrap().unwrap().body;
    assert_eq!(&*event.source, "203.0.113.7:4000");

    // The trusted peer's own connection without a header: refused.
    assert!(gw.client().request("GET", "/healthz", &[]).await.is_err());
}

/// At the connection limit the connection idle the longest makes room for a
/// new client, rather than the new client being refused.
#[tokio::test]
async fn at_the_limit_the_oldest_idle_connection_makes_room() {
    let gw = TestGateway::start_with(|c, _| {
        c.limits.max_connections = 3;
        c.limits.first_request_timeout_secs = 60;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(gw.client().connect().await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let r = gw.client().request("GET", "/healthz", &[]).await;
    assert!(r.is_ok(), "the new client was refused: {:?}", r.err());
    assert!(started.elapsed() < Duration::from_secs(3));
    // The oldest of the idle ones was closed.
    let mut oldest = held.remove(0);
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), oldest.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the oldest idle connection stayed open");
}

/// Every refusal's `type` resolves: `GET /problems/<slug>` says what
/// happened and what to do, in the language asked for first and the other
/// after; an unknown slug is 404; the text is escaped HTML, not markup.
#[tokio::test]
async fn every_problem_type_resolves_to_a_page_in_chinese_and_english() {
    use tongban::problem::{Lang, ProblemType};
    let gw = TestGateway::start().await;
    let zh = [("accept-language".to_owned(), "zh-CN,zh;q=0.9".to_owned())];
    for t in ProblemType::ALL {
        let path = format!("/problems/{}", t.slug());
        let r = gw.client().request("GET", &path, &zh).await.unwrap();
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.headers["content-language"], "zh");
        assert!(
            r.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let [en, zh_advice] = tongban::api::problems::advice(*t);
        let escape = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
        };
        let (at_zh, at_en) = (
            r.text.find(&escape(zh_advice)).expect("the Chinese advice"),
            r.text.find(&escape(en)).expect("the English advice"),
        );
        assert!(at_zh < at_en, "{path}: Chinese first when asked for");
        assert!(r.text.contains(&escape(t.title(Lang::Zh))), "{path}");
        assert!(r.text.contains(&t.status().as_u16().to_string()), "{path}");
    }
    let r = gw.get("/problems/token-missing", None, None, None).await;
    assert_eq!(r.headers["content-language"], "en");
    assert!(r.text.contains("Bearer &lt;JWT&gt;") && !r.text.contains("<JWT>"));
    assert_eq!(
        r.headers["content-security-policy"],
        "default-src 'none'; style-src 'unsafe-inline'"
    );
    let r = gw.get("/problems/no-such-thing", None, None, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // A real refusal's type, followed.
    let refusal = gw
        .get("/v1/datasets/gongan.hukou/records/x", None, None, None)
        .await;
    let page = gw
        .get(refusal.problem_type().unwrap(), None, None, None)
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", refusal.text);
}

/// The OpenAPI document carries what an integrator's generated client needs
/// besides the bodies: on each refusal status the problem types it can
/// answer with, the response headers, and a server.
#[tokio::test]
async fn the_openapi_document_names_each_operations_problem_types_and_headers() {
    use tongban::problem::ProblemType;
    let gw = TestGateway::start().await;
    let doc = gw.get("/openapi.json", None, None, None).await.body;
    assert_eq!(doc["servers"][0]["url"], "/");
    let lookup = &doc["paths"]["/v1/datasets/{dataset}/records/{resident_id}"]["get"]["responses"];
    let types = |responses: &serde_json::Value, status: &str| -> Vec<String> {
        responses[status]["x-problem-types"]
            .as_array()
            .unwrap_or_else(|| panic!("{status}: {}", responses[status]))
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect()
    };
    assert!(types(lookup, "401").contains(&"/problems/token-missing".to_owned()));
    assert!(types(lookup, "403").contains(&"/problems/no-grant".to_owned()));
    assert!(types(lookup, "404").contains(&"/problems/resident-not-found".to_owned()));
    assert!(!types(lookup, "403").contains(&"/problems/role-required".to_owned()));
    for (status, header) in [
        ("200", "X-Request-Id"),
        ("200", "X-Audit-Seq"),
        ("200", "Preference-Applied"),
        ("401", "WWW-Authenticate"),
        ("429", "Retry-After"),
        ("503", "Retry-After"),
        ("403", "X-Audit-Seq"),
    ] {
        assert!(
            lookup[status]["headers"][header].is_object(),
            "lookup {status} lacks {header}"
        );
    }
    // A verify names its Idempotency-Key, what a replay says, and the
    // problems of a key.
    let verify = &doc["paths"]["/v1/datasets/{dataset}/records/{resident_id}/verify"]["post"];
    let params: Vec<&str> = verify["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(params.contains(&"Idempotency-Key"), "{params:?}");
    let responses = &verify["responses"];
    assert!(responses["200"]["headers"]["Idempotent-Replayed"].is_object());
    assert!(lookup["200"]["headers"]["Idempotent-Replayed"].is_null());
    assert!(types(responses, "422").contains(&"/problems/idempotency-key-reused".to_owned()));
    assert!(types(responses, "409").contains(&"/problems/idempotency-key-in-flight".to_owned()));
    assert!(responses["409"]["headers"]["Retry-After"].is_object());
    assert_eq!(
        doc["components"]["schemas"]["Comparison"]["x-enum-varnames"],
        serde_json::json!(["EQUALS", "IN", "AT_LEAST", "AT_MOST", "EXISTS"]),
        "code-friendly names, in the order of the values"
    );
    // Bodies with a member the gateway does not know are refused: said so.
    for body in [
        "BatchRequest",
        "VerifyRequest",
        "RevokeRequest",
        "SuspendRequest",
        "DecideRequest",
    ] {
        assert_eq!(
            doc["components"]["schemas"][body]["additionalProperties"], false,
            "{body}"
        );
    }
    let put = &doc["paths"]["/v1/admin/grants/{id}"]["put"]["responses"];
    assert!(types(put, "412").contains(&"/problems/precondition-failed".to_owned()));
    assert!(!types(put, "403").contains(&"/problems/no-grant".to_owned()));
    // Every problem type an operation can give is named by one.
    let named: std::collections::BTreeSet<String> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .flat_map(|op| {
            op["responses"]
                .as_object()
                .into_iter()
                .flat_map(|r| r.values())
        })
        .flat_map(|r| r["x-problem-types"].as_array().cloned().unwrap_or_default())
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    for t in ProblemType::ALL {
        if matches!(t, ProblemType::NoSuchRoute | ProblemType::MethodNotAllowed) {
            continue;
        }
        assert!(
            named.contains(&format!("/problems/{}", t.slug())),
            "{} is named by no operation",
            t.slug()
        );
    }
}

/// The department operations (catalog, lookup, verify, batch) carry a full
/// example of their answer and of their body, each naming what its schema
/// requires and nothing else; the catalog's conditions and verify
/// predicates are typed.
#[tokio::test]
async fn the_department_operations_have_full_examples_and_typed_conditions() {
    let gw = TestGateway::start().await;
    let doc = gw.get("/openapi.json", None, None, None).await.body;
    let schema = |r: &serde_json::Value| -> serde_json::Value {
        let name = r["$ref"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned();
        doc["components"]["schemas"][name].clone()
    };
    let fits = |example: &serde_json::Value, schema: &serde_json::Value, what: &str| {
        let example = example
            .as_object()
            .unwrap_or_else(|| panic!("{what}: no example"));
        let props = schema["properties"].as_object().unwrap();
        for key in example.keys() {
            assert!(
                props.contains_key(key),
                "{what}: {key} is not in the schema"
            );
        }
        for req in schema["required"].as_array().into_iter().flatten() {
            assert!(
                example.contains_key(req.as_str().unwrap()),
                "{what}: {req} is missing"
            );
        }
    };
    for (path, method) in [
        ("/v1/catalog", "get"),
        ("/v1/datasets/{dataset}/records/{resident_id}", "get"),
        (
            "/v1/datasets/{dataset}/records/{resident_id}/verify",
            "post",
        ),
        ("/v1/datasets/{dataset}/records:batch", "post"),
    ] {
        let op = &doc["paths"][path][method];
        let ok = &op["responses"]["200"]["content"]["application/json"];
        fits(
            &ok["example"],
            &schema(&ok["schema"]),
            &format!("{method} {path} 200"),
        );
        if method == "post" {
            let body = &op["requestBody"]["content"]["application/json"];
            fits(
                &body["example"],
                &schema(&body["schema"]),
                &format!("{method} {path} body"),
            );
        }
    }
    // The catalog's conditions and verify predicates are typed.
    let entry = &doc["components"]["schemas"]["CatalogEntry"]["properties"];
    assert_eq!(
        entry["conditions"]["$ref"],
        "#/components/schemas/CatalogConditions"
    );
    assert_eq!(
        entry["verify_predicates"]["items"]["$ref"],
        "#/components/schemas/Condition"
    );
}
