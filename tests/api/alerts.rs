//! Anomaly flags on the working-day calendar: holidays and make-up working
//! days, the rules file, stable flag identities.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tongban::provider::serve;

use crate::audit_review::officer_get;
use crate::helpers::TestGateway;

const HUKOU: &str = "/v1/datasets/gongan.hukou/records";

/// One authorized lookup by minzheng's clerk-007, at the gateway's time.
async fn one_lookup(gw: &TestGateway) {
    let id = &gw.sample_ids("gongan.hukou", 1)[0];
    let mz = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let r = gw
        .get(
            &format!("{HUKOU}/{id}"),
            Some(&mz),
            Some("dibao_review"),
            Some("MZ-2026-1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

fn off_hours(body: &Value) -> Vec<(String, String, String)> {
    body["flags"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "off_hours")
        .map(|f| {
            (
                f["day"].as_str().unwrap().to_owned(),
                f["detail"].as_str().unwrap().to_owned(),
                f["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_holiday_and_a_makeup_saturday_are_classified_on_the_calendar() {
    // 10:00 on Friday 2 October 2026, a day of the 国庆 holiday.
    let start = time::macros::datetime!(2026-10-02 10:00 +08:00);
    let clock = tongban::clock::Clock::manual(start);
    let gw = TestGateway::start_at(|_, _| {}, clock.clone()).await;
    one_lookup(&gw).await;
    // 10:00 on Saturday 10 October, worked instead of a holiday (调休).
    clock.advance(Duration::from_secs(8 * 86_400));
    one_lookup(&gw).await;
    // 10:00 on Sunday 11 October, an ordinary weekend day.
    clock.advance(Duration::from_secs(86_400));
    one_lookup(&gw).await;
    // 10:00 on Monday 12 October, an ordinary working day.
    clock.advance(Duration::from_secs(86_400));
    one_lookup(&gw).await;

    let r = officer_get(&gw, "/v1/audit/stats?from=2026-10-01&to=2026-10-12").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let flagged = off_hours(&r.body);
    let days: Vec<&str> = flagged.iter().map(|(d, _, _)| d.as_str()).collect();
    assert_eq!(days, ["2026-10-02", "2026-10-11"], "{flagged:?}");
    assert!(flagged[0].1.contains("holiday (国庆节)"), "{flagged:?}");
    assert!(flagged[1].1.contains("weekend"), "{flagged:?}");
    // The identity names kind, department and day, and not the clerk.
    let id = &flagged[0].2;
    assert!(id.starts_with("off_hours:minzheng:2026-10-02:"), "{id}");
    assert!(!id.contains("clerk"), "{id}");
    // The same flag found again, in a wider window, has the same identity.
    let again = officer_get(&gw, "/v1/audit/stats?from=2026-09-01&to=2026-10-31").await;
    assert_eq!(off_hours(&again.body), flagged);
}

/// What a webhook received; it refuses the first `refuse` posts with 503.
#[derive(Default)]
struct Received {
    refuse: usize,
    seen: usize,
    bodies: Vec<Value>,
}

/// An HTTPS webhook on the demo home's server certificate (no client
/// certificate asked), on `listener`.
fn start_webhook(
    home: &std::path::Path,
    listener: std::net::TcpListener,
    received: Arc<Mutex<Received>>,
) -> oneshot::Sender<()> {
    let chain: Vec<_> =
        rustls::pki_types::pem::PemObject::pem_file_iter(home.join("certs/server.pem"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let key =
        <rustls::pki_types::PrivateKeyDer as rustls::pki_types::pem::PemObject>::from_pem_file(
            home.join("certs/server-key.pem"),
        )
        .unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let app = Router::new().route(
        "/hook",
        axum::routing::post(move |body: Bytes| {
            let received = received.clone();
            async move {
                let mut r = received.lock().unwrap();
                r.seen += 1;
                if r.seen <= r.refuse {
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                r.bodies.push(serde_json::from_slice(&body).unwrap());
                StatusCode::NO_CONTENT
            }
        }),
    );
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve::run(listener, Arc::new(tls), app, async move {
        let _ = stopped.await;
    }));
    stop
}

async fn metrics(gw: &TestGateway) -> String {
    gw.client()
        .request("GET", "/metrics", &[])
        .await
        .unwrap()
        .text
}

async fn review(
    gw: &TestGateway,
    id: &str,
    body: Value,
    token: &str,
) -> crate::helpers::TestResponse {
    gw.client()
        .request_with_body(
            "POST",
            &format!("/v1/audit/flags/{id}/review"),
            &[
                ("authorization".to_owned(), format!("Bearer {token}")),
                ("content-type".to_owned(), "application/json".to_owned()),
            ],
            Bytes::from(body.to_string()),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn new_flags_are_counted_posted_once_without_the_person_and_marked_reviewed() {
    let start = time::macros::datetime!(2026-10-02 10:00 +08:00);
    let clock = tongban::clock::Clock::manual(start);
    let received = Arc::new(Mutex::new(Received {
        refuse: 1,
        ..Received::default()
    }));
    let mut stop = None;
    let gw = TestGateway::start_at(
        |c, home| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            c.alerts.webhook_url = Some(format!("https://127.0.0.1:{port}/hook"));
            c.alerts.webhook_ca = Some(home.join("certs/ca.pem"));
            c.alerts.webhook_retries = 2;
            c.alerts.interval_secs = 0;
            stop = Some(start_webhook(home, listener, received.clone()));
        },
        clock.clone(),
    )
    .await;
    one_lookup(&gw).await;

    let flags = tongban::alerts::check(&gw.gw).await.unwrap();
    assert_eq!(flags.len(), 1, "{flags:?}");
    let id = flags[0].id.clone();
    let text = metrics(&gw).await;
    assert!(
        text.contains(r#"tongban_anomaly_flags{kind="off_hours",department="minzheng"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"tongban_anomaly_flags_raised_total{kind="off_hours",department="minzheng"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains("tongban_calendar_covers_today 1"), "{text}");
    assert!(!text.contains("clerk-007"), "a person in the metrics");
    the_alerting_rules_name_only_exported_metrics(&text);

    // Posted once, after the webhook refused the first attempt.
    for _ in 0..100 {
        if !received.lock().unwrap().bodies.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    {
        let r = received.lock().unwrap();
        assert_eq!(r.bodies.len(), 1, "{:?}", r.bodies);
        assert_eq!(r.seen, 2);
        let body = &r.bodies[0];
        assert_eq!(body["id"], id.as_str());
        assert_eq!(body["kind"], "off_hours");
        assert_eq!(body["department"], "minzheng");
        assert_eq!(body["day"], "2026-10-02");
        assert!(!body.to_string().contains("clerk"), "{body}");
    }
    // A second check finds the same flag: nothing new is announced.
    tongban::alerts::check(&gw.gw).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(received.lock().unwrap().seen, 2);
    assert!(metrics(&gw).await.contains(
        r#"tongban_anomaly_flags_raised_total{kind="off_hours",department="minzheng"} 1"#
    ));
    assert!(
        metrics(&gw)
            .await
            .contains("tongban_alert_webhook_sent_total 1")
    );

    an_officer_marks_it_reviewed(&gw, &id).await;

    // The next day, today's count is back to zero.
    clock.advance(Duration::from_secs(86_400));
    tongban::alerts::check(&gw.gw).await.unwrap();
    assert!(
        metrics(&gw)
            .await
            .contains(r#"tongban_anomaly_flags{kind="off_hours",department="minzheng"} 0"#)
    );
    drop(stop);
}

#[tokio::test]
async fn a_changed_rules_file_is_audited_and_in_force_and_a_broken_one_changes_nothing() {
    // 10:30 on an ordinary Monday: inside the default working hours.
    let start = time::macros::datetime!(2026-10-12 10:30 +08:00);
    let gw = TestGateway::start_at(|_, _| {}, tongban::clock::Clock::manual(start)).await;
    one_lookup(&gw).await;
    let r = officer_get(&gw, "/v1/audit/stats?from=2026-10-12&to=2026-10-12").await;
    assert!(off_hours(&r.body).is_empty());

    let file = gw.home.path().join("anomaly.toml");
    std::fs::write(&file, "[off_hours]\nstart_hour = 11\n").unwrap();
    assert_eq!(gw.gw.reload_flag_rules("test").await, Ok(true));
    assert_eq!(gw.gw.reload_flag_rules("test").await, Ok(false));
    let r = officer_get(&gw, "/v1/audit/stats?from=2026-10-12&to=2026-10-12").await;
    assert_eq!(off_hours(&r.body).len(), 1, "{}", r.text);
    let r = officer_get(&gw, "/v1/audit/events?consumer=shujuju").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let events: Vec<&Value> = r.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["operation"] == "config.anomaly_rules")
        .collect();
    assert_eq!(events.len(), 1, "{}", r.text);
    let detail: Value = serde_json::from_str(events[0]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["before"]["off_hours"]["start_hour"], 8);
    assert_eq!(detail["after"]["off_hours"]["start_hour"], 11);
    assert_eq!(detail["after"]["calendar_years"], json!([2026]));

    std::fs::write(&file, "[off_hours]\nstart_hour = 30\n").unwrap();
    let e = gw.gw.reload_flag_rules("test").await.unwrap_err();
    assert!(e.contains("off_hours"), "{e}");
    assert_eq!(gw.gw.flag_rules.load().working_hours, (11, 20));
}

#[tokio::test]
async fn a_full_webhook_queue_drops_and_counts() {
    let (home, _) = crate::helpers::demo_home();
    let config = tongban::config::AlertsConfig {
        webhook_url: Some("https://127.0.0.1:9/hook".into()),
        webhook_ca: Some(home.path().join("certs/ca.pem")),
        webhook_queue: std::num::NonZeroUsize::new(1).unwrap(),
        ..tongban::config::AlertsConfig::default()
    };
    let hook = tongban::alerts::webhook::Webhook::from_config(&config)
        .unwrap()
        .unwrap();
    let metrics = tongban::metrics::Metrics::new();
    for n in 0..3 {
        hook.offer(json!({"id": n}), &metrics);
    }
    assert_eq!(metrics.alert_webhook_dropped.get(), 2);
}

/// The alerting rules name only metrics the gateway exports (`text`: its
/// `/metrics` once every family has a series).
fn the_alerting_rules_name_only_exported_metrics(text: &str) {
    let rules = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/prometheus/tongban-alerts.yml"),
    )
    .unwrap();
    let mut named = std::collections::BTreeSet::new();
    for (i, _) in rules.match_indices("tongban_") {
        let name: String = rules[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        named.insert(name);
    }
    assert!(named.len() >= 5, "{named:?}");
    for name in named {
        let family = name.strip_suffix("_total").unwrap_or(&name);
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{name} is not a metric of the gateway"
        );
    }
}

/// An officer marks the flag `id` reviewed; the mark shows in the
/// statistics and is audited; others cannot, and unknown flags are refused.
async fn an_officer_marks_it_reviewed(gw: &TestGateway, id: &str) {
    let (gw, id) = (gw, id.to_owned());
    // An officer marks it reviewed; the mark shows in the statistics.
    let officer = gw.token("shujuju", "officer-1", &["privacy_officer"]);
    let clerk = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let r = review(gw, &id, json!({"note": "国庆值班，已核实"}), &clerk).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let r = review(gw, &id, json!({"note": "  "}), &officer).await;
    assert_eq!(
        r.problem_type(),
        Some("/problems/invalid-reason"),
        "{}",
        r.text
    );
    let unknown = id.replace("2026-10-02", "2026-10-01");
    for bad in [
        unknown.as_str(),
        "off_hours:minzheng",
        "x:y:2026-10-02:0123456789abcdef",
    ] {
        let r = review(gw, bad, json!({"note": "n"}), &officer).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{bad}: {}", r.text);
        assert_eq!(r.problem_type(), Some("/problems/flag-not-found"));
    }
    let r = review(gw, &id, json!({"note": "国庆值班，已核实"}), &officer).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["review"]["by"], "shujuju/officer-1");
    let r = officer_get(gw, "/v1/audit/stats?from=2026-10-02&to=2026-10-02").await;
    let flag = &r.body["flags"][0];
    assert_eq!(flag["id"], id.as_str());
    assert_eq!(flag["review"]["note"], "国庆值班，已核实");
    let r = officer_get(gw, "/v1/audit/events?consumer=shujuju").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let events = r.body["events"].as_array().unwrap();
    let marks: Vec<&Value> = events
        .iter()
        .filter(|e| e["operation"] == "audit.flag-review" && e["decision"] == "allow")
        .collect();
    assert_eq!(marks.len(), 1, "{events:?}");
    assert!(marks[0]["detail"].as_str().unwrap().contains(&id));
}

#[tokio::test]
async fn each_check_reads_only_what_arrived_since_and_finds_what_a_full_count_finds() {
    // 22:00 on a Monday: every disclosure is outside working hours.
    let start = time::macros::datetime!(2026-10-12 22:00 +08:00);
    let clock = tongban::clock::Clock::manual(start);
    let gw = TestGateway::start_at(|c, _| c.alerts.interval_secs = 0, clock.clone()).await;
    let day = time::macros::date!(2026 - 10 - 12);
    for round in 0..3 {
        for _ in 0..=round {
            one_lookup(&gw).await;
        }
        clock.advance(Duration::from_secs(60));
        let checked = tongban::alerts::check(&gw.gw).await.unwrap();
        let full = tongban::alerts::flags_of_day(&gw.gw, day, true)
            .await
            .unwrap();
        let view = |f: &[tongban::audit::stats::Flag]| {
            let mut v: Vec<(String, String, Vec<u64>)> = f
                .iter()
                .map(|f| (f.id.clone(), f.detail.clone(), f.events.clone()))
                .collect();
            v.sort();
            v
        };
        assert_eq!(view(&checked), view(&full), "round {round}");
        let n = (1..=round + 1).sum::<usize>();
        assert!(
            checked[0].detail.starts_with(&format!("{n} disclosures")),
            "round {round}: {}",
            checked[0].detail
        );
    }
}

#[tokio::test]
async fn a_flag_raised_after_the_days_last_check_is_announced_the_next_morning() {
    // 19:00 on Monday 12 October: a check finds nothing.
    let start = time::macros::datetime!(2026-10-12 19:00 +08:00);
    let clock = tongban::clock::Clock::manual(start);
    let gw = TestGateway::start_at(|c, _| c.alerts.interval_secs = 0, clock.clone()).await;
    assert!(tongban::alerts::check(&gw.gw).await.unwrap().is_empty());
    // A disclosure at 23:00, then nothing until the next morning's check.
    clock.advance(Duration::from_secs(4 * 3600));
    one_lookup(&gw).await;
    clock.advance(Duration::from_secs(10 * 3600));
    let today = tongban::alerts::check(&gw.gw).await.unwrap();
    assert!(today.is_empty(), "{today:?}");
    let text = metrics(&gw).await;
    assert!(
        text.contains(
            r#"tongban_anomaly_flags_raised_total{kind="off_hours",department="minzheng"} 1"#
        ),
        "yesterday's late flag was not announced: {text}"
    );
}
