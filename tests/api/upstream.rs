//! Upstream providers: a dataset answered by its owner's own API over mutual
//! TLS. The reference upstream (`tongban provider serve`) and a scripted one
//! run in the test, on the demo home's certificates.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use tongban::config::Config;
use tongban::provider::serve;

use crate::helpers::{TestGateway, TestResponse, texts};

const DATASET: &str = "ziranziyuan.budongchan";

/// What the scripted upstream answers, and what it saw.
#[derive(Default)]
struct Script {
    status: u16,
    body: Value,
    delay_ms: u64,
    seen: Vec<HeaderMap>,
    batch_calls: usize,
}

type Shared = Arc<Mutex<Script>>;

fn scripted(script: Shared) -> Router {
    async fn one(State(s): State<Shared>, headers: HeaderMap) -> axum::response::Response {
        let (status, body, delay) = {
            let mut s = s.lock().unwrap();
            s.seen.push(headers);
            (s.status, s.body.clone(), s.delay_ms)
        };
        tokio::time::sleep(Duration::from_millis(delay)).await;
        (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
    }
    async fn batch(
        State(s): State<Shared>,
        headers: HeaderMap,
        body: Bytes,
    ) -> axum::response::Response {
        let mut s = s.lock().unwrap();
        s.seen.push(headers);
        s.batch_calls += 1;
        let ids: Value = serde_json::from_slice(&body).unwrap();
        let mut records = serde_json::Map::new();
        for id in ids["resident_ids"].as_array().unwrap() {
            records.insert(id.as_str().unwrap().to_owned(), s.body.clone());
        }
        axum::Json(json!({"records": records})).into_response()
    }
    Router::new()
        .route("/records/{id}", axum::routing::get(one))
        .route("/records:batch", axum::routing::post(batch))
        .with_state(script)
}

/// A running upstream and the means to stop it.
struct Upstream {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    tls: Arc<rustls::ServerConfig>,
}

impl Upstream {
    async fn start(
        listener: std::net::TcpListener,
        tls: Arc<rustls::ServerConfig>,
        app: Router,
    ) -> Self {
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(serve::run(listener, tls.clone(), app, async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            tls,
        }
    }

    fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    async fn restart(&mut self, app: Router) {
        self.stop();
        let listener = std::net::TcpListener::bind(self.addr).unwrap();
        let tls = self.tls.clone();
        *self = Self::start(listener, tls, app).await;
    }
}

/// A gateway whose budongchan dataset is provided by an upstream on the demo
/// home's server certificate, requiring a client certificate from its CA.
async fn gateway_with_upstream(
    provider: &str,
    app: impl FnOnce(&Path) -> Router,
    edit: impl FnOnce(&mut Config, &Path),
) -> (TestGateway, Upstream) {
    let mut parts = None;
    let gw = TestGateway::start_with(|config, home| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let file = home.join(format!("policies/datasets/{DATASET}.toml"));
        let text = std::fs::read_to_string(&file).unwrap();
        let line = provider.replace("PORT", &port.to_string());
        let text = text.replacen(
            "\n[[field]]",
            &format!("\nprovider = {line}\n\n[[field]]"),
            1,
        );
        std::fs::write(&file, text).unwrap();
        let tls = serve::tls_config(
            &home.join("certs/server.pem"),
            &home.join("certs/server-key.pem"),
            &home.join("certs/ca.pem"),
        )
        .unwrap();
        let up = config
            .upstream
            .as_mut()
            .expect("the demo configures [upstream]");
        up.breaker_failures = std::num::NonZeroU32::new(2).unwrap();
        up.breaker_open_secs = 1;
        edit(config, home);
        parts = Some((listener, tls, app(home)));
    })
    .await;
    let (listener, tls, app) = parts.unwrap();
    (gw, Upstream::start(listener, tls, app).await)
}

const DEFAULT: &str = r#"{ kind = "http", base_url = "https://127.0.0.1:PORT", timeout_ms = 500 }"#;

async fn lookup(gw: &TestGateway, id: &str) -> TestResponse {
    let tok = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let headers = vec![
        ("authorization".to_owned(), format!("Bearer {tok}")),
        ("x-purpose".to_owned(), "dibao_review".to_owned()),
        ("x-case-ref".to_owned(), "MZ-2026-1".to_owned()),
        (
            "traceparent".to_owned(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
        ),
    ];
    gw.client()
        .request(
            "GET",
            &format!("/v1/datasets/{DATASET}/records/{id}"),
            &headers,
        )
        .await
        .unwrap()
}

async fn event_of(gw: &TestGateway, r: &TestResponse) -> tongban::audit::EventBody {
    gw.store().await.get(r.audit_seq()).unwrap().unwrap().body
}

#[tokio::test]
async fn the_reference_upstream_answers_over_mutual_tls_and_only_granted_fields_leave() {
    let (gw, _up) = gateway_with_upstream(
        DEFAULT,
        |home| {
            let set = tongban::policy::load::load_dir(&home.join("policies")).unwrap();
            let dataset = set
                .datasets
                .values()
                .find(|d| d.spec.id.as_str() == DATASET)
                .unwrap()
                .clone();
            let file = std::fs::File::open(home.join(format!("samples/{DATASET}.jsonl"))).unwrap();
            let rows =
                tongban::provider::import::read_jsonl(std::io::BufReader::new(file), &dataset)
                    .unwrap();
            serve::router(&dataset, rows)
        },
        |_, _| {},
    )
    .await;
    let id = gw.sample_ids(DATASET, 1)[0].clone();
    let r = lookup(&gw, &id).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let held = gw.sample_record(DATASET, &id);
    assert_eq!(
        r.body["record"],
        json!({"property_count": held["property_count"]})
    );
    let e = event_of(&gw, &r).await;
    assert_eq!(texts(&e.fields), ["property_count"]);
    // Not held by the owner: 404, as from the embedded store.
    let r = lookup(&gw, "11010519491231002X").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.problem_type(), Some("/problems/resident-not-found"));
    let ready = gw.readiness().await;
    assert_eq!(ready.body["providers"][DATASET]["state"], "up");
    assert_eq!(ready.body["providers"][DATASET]["kind"], "http");
}

/// The gateway presents a certificate of a CA the upstream does not trust
/// (`client.pem`, `client-key.pem` in its home).
fn present_a_foreign_certificate(config: &mut Config, home: &Path) {
    let (cert, key) = tongban::dev::devpki::foreign_client_cert("impostor").unwrap();
    std::fs::write(home.join("client.pem"), cert).unwrap();
    std::fs::write(home.join("client-key.pem"), key).unwrap();
    let up = config.upstream.as_mut().unwrap();
    up.client_cert = home.join("client.pem");
    up.client_key = home.join("client-key.pem");
}

/// A gateway presenting a certificate its upstream does not trust, and the
/// refused lookup (503) of a sample resident.
async fn refused_for_a_foreign_certificate() -> (TestGateway, Upstream, String, TestResponse) {
    let (gw, up) = gateway_with_upstream(
        DEFAULT,
        |_| {
            scripted(Arc::new(Mutex::new(Script {
                status: 200,
                body: json!({"property_count": 1}),
                ..Script::default()
            })))
        },
        present_a_foreign_certificate,
    )
    .await;
    let id = gw.sample_ids(DATASET, 1)[0].clone();
    let r = lookup(&gw, &id).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    (gw, up, id, r)
}

#[tokio::test]
async fn an_upstream_refuses_a_gateway_without_its_client_certificate() {
    let (gw, _up, _id, r) = refused_for_a_foreign_certificate().await;
    assert_eq!(r.problem_type(), Some("/problems/upstream-unavailable"));
    assert_eq!(r.body["dataset"], DATASET);
    let e = event_of(&gw, &r).await;
    assert_eq!(e.reason.as_deref(), Some("upstream-unavailable"));
    assert_eq!(e.status, 503);
    assert!(e.fields.is_empty());
}

#[tokio::test]
async fn extra_fields_are_dropped_wrong_types_refused_and_headers_propagated() {
    let script: Shared = Arc::new(Mutex::new(Script {
        status: 200,
        body: json!({"property_count": 2, "properties": [{"address": "x"}], "secret_note": "never", "id_number": "x"}),
        ..Script::default()
    }));
    let s = script.clone();
    let (gw, _up) = gateway_with_upstream(DEFAULT, move |_| scripted(s), |_, _| {}).await;
    let id = gw.sample_ids(DATASET, 1)[0].clone();
    let r = lookup(&gw, &id).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.body["record"],
        json!({"property_count": 2}),
        "only the granted field"
    );
    assert!(!r.text.contains("never") && !r.text.contains("address"));
    {
        let s = script.lock().unwrap();
        let h = s.seen.last().unwrap();
        assert_eq!(h["x-tongban-consumer"], "minzheng");
        assert_eq!(h["x-tongban-purpose"], "dibao_review");
        assert_eq!(h["x-request-id"].to_str().unwrap(), r.request_id());
        let tp = h["traceparent"].to_str().unwrap();
        assert!(
            tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{tp}"
        );
        assert!(
            !tp.contains("00f067aa0ba902b7"),
            "a span of the gateway's own"
        );
        assert!(
            h.get("authorization").is_none(),
            "the caller's token never goes upstream"
        );
    }
    let metrics = gw.client().request("GET", "/metrics", &[]).await.unwrap();
    assert!(
        metrics.text.contains(&format!(
            "tongban_provider_dropped_fields_total{{dataset=\"{DATASET}\"}} 1"
        )),
        "{}",
        metrics.text
    );

    // A value of the wrong type: the whole answer is refused, nothing leaves.
    script.lock().unwrap().body = json!({"property_count": "three"});
    let r = lookup(&gw, &id).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text);
    assert_eq!(r.problem_type(), Some("/problems/upstream-invalid-answer"));
    assert!(!r.text.contains("three"));
    // Not a JSON object, or an unexpected status: the same.
    script.lock().unwrap().body = json!([1, 2]);
    assert_eq!(lookup(&gw, &id).await.status, StatusCode::BAD_GATEWAY);
    {
        let mut s = script.lock().unwrap();
        s.status = 302;
        s.body = json!({"property_count": 1});
    }
    assert_eq!(lookup(&gw, &id).await.status, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn a_slow_upstream_times_out_and_a_down_one_fails_fast_then_recovers() {
    let script: Shared = Arc::new(Mutex::new(Script {
        status: 200,
        body: json!({"property_count": 1}),
        delay_ms: 2000,
        ..Script::default()
    }));
    let s = script.clone();
    let (gw, mut up) = gateway_with_upstream(
        r#"{ kind = "http", base_url = "https://127.0.0.1:PORT", timeout_ms = 300 }"#,
        move |_| scripted(s),
        |_, _| {},
    )
    .await;
    let id = gw.sample_ids(DATASET, 1)[0].clone();
    let started = Instant::now();
    let r = lookup(&gw, &id).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{}", r.text);
    assert_eq!(r.problem_type(), Some("/problems/upstream-timeout"));
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(
        event_of(&gw, &r).await.reason.as_deref(),
        Some("upstream-timeout")
    );

    // Down: connections refused. Two failures open the circuit.
    script.lock().unwrap().delay_ms = 0;
    up.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = lookup(&gw, &id).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    let calls_before = script.lock().unwrap().seen.len();
    let started = Instant::now();
    let r = lookup(&gw, &id).await;
    assert_eq!(r.problem_type(), Some("/problems/upstream-unavailable"));
    assert!(r.headers.contains_key("retry-after"));
    assert!(started.elapsed() < Duration::from_millis(500), "fails fast");
    let ready = gw.readiness().await;
    assert_eq!(
        ready.status,
        StatusCode::OK,
        "one department down is not the gateway down"
    );
    assert_eq!(ready.body["providers"][DATASET]["state"], "down");
    // Other datasets are served as before.
    let hukou = gw.sample_ids("gongan.hukou", 1)[0].clone();
    let ok = gw
        .get(
            &format!("/v1/datasets/gongan.hukou/records/{hukou}"),
            Some(&gw.token("minzheng", "clerk-007", &["dibao_reviewer"])),
            Some("dibao_review"),
            Some("MZ-1"),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);

    // Back up: after the open period one trial call closes the circuit.
    up.restart(scripted(script.clone())).await;
    let r = lookup(&gw, &id).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "still open");
    assert_eq!(
        script.lock().unwrap().seen.len(),
        calls_before,
        "no call while open"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = lookup(&gw, &id).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let ready = gw.readiness().await;
    assert_eq!(ready.body["providers"][DATASET]["state"], "up");
}

#[tokio::test]
async fn batches_use_the_upstream_batch_route_or_bounded_single_calls() {
    for (provider, batch_route) in [
        (DEFAULT, true),
        (
            r#"{ kind = "http", base_url = "https://127.0.0.1:PORT", batch = false }"#,
            false,
        ),
    ] {
        let script: Shared = Arc::new(Mutex::new(Script {
            status: 200,
            body: json!({"property_count": 4, "extra": 1}),
            ..Script::default()
        }));
        let s = script.clone();
        let (gw, _up) = gateway_with_upstream(
            provider,
            move |_| scripted(s),
            |_, home| {
                // Give the 低保 grant the batch operation for this test.
                let file = home.join("policies/grants/minzheng-dibao.toml");
                let text = std::fs::read_to_string(&file).unwrap();
                let text = text.replacen(
                    "operations = [\"lookup\"]\nbasis = \"《最低生活保障审核确认办法》",
                    "operations = [\"lookup\", \"batch\"]\nbasis = \"《最低生活保障审核确认办法》",
                    1,
                );
                let text = text.replacen(
                    "[grant.conditions]\ncase_ref_required = true\n\n[[grant.access]]\ndataset = \"ziranziyuan.budongchan\"",
                    "[grant.conditions]\ncase_ref_required = true\nbatch_limit = 10\n\n[[grant.access]]\ndataset = \"ziranziyuan.budongchan\"",
                    1,
                );
                std::fs::write(&file, text).unwrap();
            },
        )
        .await;
        let ids = gw.sample_ids(DATASET, 3);
        let tok = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
        let r = gw
            .client()
            .request_with_body(
                "POST",
                &format!("/v1/datasets/{DATASET}/records:batch"),
                &[
                    ("authorization".to_owned(), format!("Bearer {tok}")),
                    ("x-purpose".to_owned(), "dibao_review".to_owned()),
                    ("x-case-ref".to_owned(), "MZ-2026-1".to_owned()),
                    ("content-type".to_owned(), "application/json".to_owned()),
                ],
                Bytes::from(json!({"resident_ids": [ids[0], "bad", ids[1], ids[2]]}).to_string()),
            )
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let results = r.body["results"].as_array().unwrap();
        assert_eq!(results.len(), 4);
        assert_eq!(results[1]["status"], "invalid_id");
        for i in [0, 2, 3] {
            assert_eq!(results[i]["record"], json!({"property_count": 4}));
        }
        let s = script.lock().unwrap();
        if batch_route {
            assert_eq!((s.batch_calls, s.seen.len()), (1, 1), "one batch call");
        } else {
            assert_eq!(
                (s.batch_calls, s.seen.len()),
                (0, 3),
                "one call per valid ID"
            );
        }
        let first = r.audit_seq();
        let last = r.body["audit"]["last_seq"].as_u64().unwrap();
        assert_eq!(last - first + 1, 4, "one audit event per resident");
    }
}

/// The gateway's client certificate for upstreams is read again when its
/// files change: an upstream that refused the old one answers once the
/// certificate it trusts is in place, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_upstream_client_certificate_needs_no_restart() {
    let (gw, _up, id, _refused) = refused_for_a_foreign_certificate().await;

    // The renewed certificate, from the CA the upstream trusts: key first,
    // then the certificate, as a deployment tool writes them.
    let home = gw.home.path();
    let (cert, key) = tongban::dev::devpki::DevPkiPaths::client(home, "tongban-gateway");
    std::fs::copy(key, home.join("client-key.pem")).unwrap();
    std::fs::copy(cert, home.join("client.pem")).unwrap();
    let start = std::time::Instant::now();
    loop {
        let r = lookup(&gw, &id).await;
        if r.status == StatusCode::OK {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still refused: {}",
            r.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
