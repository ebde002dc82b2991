//! The audit log: one event per request, durable before the answer, chained,
//! pseudonymous, free of field values; fail closed when it cannot be written.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hyper::StatusCode;

use crate::helpers::{TestGateway, texts};
use tongban::audit::Outcome;
use tongban::domain::ResidentId;

#[tokio::test]
async fn every_request_leaves_exactly_one_event_with_its_decision() {
    let gw = TestGateway::start().await;
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    let tok = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let path = format!("/v1/datasets/gongan.hukou/records/{id}");
    let requests = [
        (
            Some(tok.as_str()),
            Some("dibao_review"),
            Some("MZ-2026-1"),
            200,
            Outcome::Allow,
        ),
        (
            None,
            Some("dibao_review"),
            Some("MZ-2026-1"),
            401,
            Outcome::Deny,
        ),
        (
            Some(tok.as_str()),
            Some("school_admission"),
            Some("MZ-2026-1"),
            403,
            Outcome::Deny,
        ),
        (
            Some(tok.as_str()),
            None,
            Some("MZ-2026-1"),
            400,
            Outcome::Deny,
        ),
        (
            Some(tok.as_str()),
            Some("dibao_review"),
            None,
            400,
            Outcome::Deny,
        ),
    ];
    let mut seqs = Vec::new();
    for (token, purpose, case, status, outcome) in requests {
        let r = gw.get(&path, token, purpose, case).await;
        assert_eq!(r.status.as_u16(), status, "{}", r.text);
        let event = gw
            .store()
            .await
            .get(r.audit_seq())
            .unwrap()
            .expect("event is durable before the answer");
        assert_eq!(event.body.request_id, r.request_id());
        assert_eq!(event.body.outcome, outcome);
        assert_eq!(event.body.status, status);
        seqs.push(r.audit_seq());
    }
    assert_eq!(seqs, (1..=5).collect::<Vec<u64>>());
    assert_eq!(gw.store().await.len(), 5);
    let report = gw
        .store()
        .await
        .verify(Some(&gw.gw.checkpoint_signer.keyring()))
        .unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.checked, 5);
}

#[tokio::test]
async fn an_allowed_lookup_records_who_what_why_but_no_values() {
    let gw = TestGateway::start().await;
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    let record = gw.sample_record("gongan.hukou", &id);
    let tok = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let r = gw
        .get(
            &format!("/v1/datasets/gongan.hukou/records/{id}"),
            Some(&tok),
            Some("dibao_review"),
            Some("MZ-2026-000123"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let e = gw.store().await.get(r.audit_seq()).unwrap().unwrap().body;
    assert_eq!(e.dept.as_deref(), Some("minzheng"));
    assert_eq!(e.subject.as_deref(), Some("clerk-007"));
    assert_eq!(texts(&e.roles), ["dibao_reviewer"]);
    assert_eq!(e.dataset.as_deref(), Some("gongan.hukou"));
    assert_eq!(e.purpose.as_deref(), Some("dibao_review"));
    assert_eq!(e.case_ref.as_deref(), Some("MZ-2026-000123"));
    assert_eq!(e.grant, Some(("minzheng-dibao-hukou".into(), 1)));
    assert!(texts(&e.fields).contains(&"hukou_address") && !texts(&e.fields).contains(&"phone"));
    assert_eq!(
        e.resident,
        Some(gw.gw.pseudonyms.pseudonym(&ResidentId::parse(&id).unwrap()))
    );
    assert!(e.source.starts_with("127.0.0.1:"));

    // The stored bytes hold neither the ID nor any value of the record.
    let tree = gw.store().await.events_tree();
    for item in tree.iter() {
        let (_, value) = item.unwrap();
        let bytes = value.as_ref();
        let contains = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
        assert!(!contains(&id), "the resident ID is in the audit log");
        for field in ["name", "hukou_address", "household_id", "birth_date"] {
            let v = record[field].as_str().unwrap();
            assert!(!contains(v), "the value of {field} is in the audit log");
        }
    }
}

#[tokio::test]
async fn when_the_audit_log_cannot_be_written_no_data_leaves() {
    let mut gw = TestGateway::start().await;
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    let tok = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let path = format!("/v1/datasets/gongan.hukou/records/{id}");
    assert_eq!(
        gw.get(&path, Some(&tok), Some("dibao_review"), Some("MZ-1"))
            .await
            .status,
        StatusCode::OK
    );

    gw.gw.audit.close().await;
    let r = gw
        .get(&path, Some(&tok), Some("dibao_review"), Some("MZ-1"))
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.problem_type(), Some("/problems/audit-unavailable"));
    assert!(
        !r.text.contains("hukou_address"),
        "no record data without an audit event"
    );
    assert!(r.headers.get("x-audit-seq").is_none());
    let ready = gw.client().request("GET", "/readyz", &[]).await.unwrap();
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    gw.stop().await;
}

#[tokio::test]
async fn audit_verify_cli_finds_an_altered_event() {
    let mut gw = TestGateway::start().await;
    let tok = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    for id in gw.sample_ids("gongan.hukou", 4) {
        let r = gw
            .get(
                &format!("/v1/datasets/gongan.hukou/records/{id}"),
                Some(&tok),
                Some("dibao_review"),
                Some("MZ-1"),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    gw.stop().await;
    let home_dir = gw.take_home();
    let home = home_dir.path().to_owned();
    let data_dir = gw.gw.config.data_dir.clone();
    drop(gw);
    let verify = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_tongban"))
            .args(["audit", "verify", "--home"])
            .arg(&home)
            .output()
            .unwrap()
    };
    // The gateway in this process may still hold the database briefly after stopping.
    let mut out = verify();
    for _ in 0..50 {
        if out.status.success() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        out = verify();
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    {
        let db = tongban::datadir::open_path(&data_dir).unwrap();
        let events = db.open_tree("audit/events").unwrap();
        let key = 3u64.to_be_bytes();
        let mut value = events.get(key).unwrap().unwrap().to_vec();
        let at = value.iter().position(|b| *b == b'm').unwrap();
        value[at] = b'M';
        events.insert(key, value).unwrap();
        db.flush().unwrap();
    }
    let out = verify();
    assert!(!out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["broken"]["seq"], 3, "{report}");
}

/// With `durability = "fdatasync"` (the demo's), every acknowledged event's
/// group was synced to the write-ahead file before its answer left: the
/// writer's count of synced groups covers each answer's sequence number the
/// moment the answer arrives.
#[tokio::test]
async fn every_acknowledged_group_is_synced_before_its_answer() {
    let gw = TestGateway::start().await;
    assert!(matches!(
        gw.gw.config.audit.durability,
        tongban::config::Durability::Fdatasync
    ));
    let tok = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let ids = gw.sample_ids("gongan.hukou", 8);
    let stats = gw.gw.audit.stats();
    let before = stats.syncs.load(Ordering::Acquire);
    for id in &ids {
        let r = gw
            .get(
                &format!("/v1/datasets/gongan.hukou/records/{id}"),
                Some(&tok),
                Some("dibao_review"),
                Some("MZ-1"),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let synced = stats.synced_through.load(Ordering::Acquire);
        assert!(
            synced >= r.audit_seq(),
            "event {} answered, synced only through {synced}",
            r.audit_seq()
        );
    }
    // Sequential requests: a group each, a sync each.
    assert!(stats.syncs.load(Ordering::Acquire) - before >= ids.len() as u64);
}

/// A write to the write-ahead file that fails (a full disk, say) refuses its
/// group with 503 and no data; the failed write is cut off again, so the
/// writer carries on with the next group once the disk takes writes again.
#[tokio::test]
async fn a_failed_write_ahead_append_answers_503_with_no_data_and_the_next_group_succeeds() {
    let gw = TestGateway::start().await;
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    let tok = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let path = format!("/v1/datasets/gongan.hukou/records/{id}");
    let lookup = || gw.get(&path, Some(&tok), Some("dibao_review"), Some("MZ-1"));
    let first = lookup().await;
    assert_eq!(first.status, StatusCode::OK);

    let failing = Arc::new(AtomicBool::new(true));
    let plan = failing.clone();
    let armed = tongban::faults::arm(&gw.gw.config.data_dir, move |point| {
        (point == "wal.write" && plan.load(Ordering::SeqCst))
            .then_some(tongban::faults::Fault::Fail)
    });
    let r = lookup().await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.problem_type(), Some("/problems/audit-unavailable"));
    assert!(
        !r.text.contains("hukou_address"),
        "no data without its event"
    );
    assert!(r.headers.get("x-audit-seq").is_none());

    failing.store(false, Ordering::SeqCst);
    let r = lookup().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.audit_seq(),
        first.audit_seq() + 1,
        "the refused group took no number"
    );
    drop(armed);
    let ready = gw.client().request("GET", "/readyz", &[]).await.unwrap();
    assert_eq!(ready.status, StatusCode::OK);
}

/// sled refusing durable events (the applier's inserts) takes nothing
/// acknowledged away: the answer already given stands, the gateway turns
/// unready and refuses new requests with 503 until the applier has filed
/// what it holds (it tries again every second), then serves again, and an
/// officer finds the event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_refusing_durable_events_makes_the_gateway_unready_until_they_are_filed() {
    let gw = TestGateway::start().await;
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    let tok = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let path = format!("/v1/datasets/gongan.hukou/records/{id}");
    let lookup = || gw.get(&path, Some(&tok), Some("dibao_review"), Some("MZ-1"));
    assert_eq!(lookup().await.status, StatusCode::OK);
    gw.store().await;
    let ready = async || {
        gw.client()
            .request("GET", "/readyz", &[])
            .await
            .unwrap()
            .status
    };
    let until = async |want: StatusCode| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while ready().await != want {
            assert!(
                std::time::Instant::now() < deadline,
                "readyz never answered {want}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };

    let failing = Arc::new(AtomicBool::new(true));
    let plan = failing.clone();
    let _armed = tongban::faults::arm(&gw.gw.config.data_dir, move |point| {
        (point == "audit.apply" && plan.load(Ordering::SeqCst))
            .then_some(tongban::faults::Fault::Fail)
    });
    let durable = lookup().await;
    assert_eq!(durable.status, StatusCode::OK, "durable before it is filed");
    until(StatusCode::SERVICE_UNAVAILABLE).await;
    let refused = lookup().await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.problem_type(), Some("/problems/audit-unavailable"));
    assert!(!refused.text.contains("hukou_address"), "no data");

    // An officer's read waits for the store to hold every acknowledged
    // event: asked while it is behind, it is answered once it has caught up.
    let officer = gw.token("shujuju", "officer-1", &["privacy_officer"]);
    let event_path = format!("/v1/audit/events/{}", durable.audit_seq());
    let read = gw.get(&event_path, Some(&officer), None, None);
    let recover = async {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        failing.store(false, Ordering::SeqCst);
    };
    let (found, ()) = tokio::join!(read, recover);
    assert_eq!(found.status, StatusCode::OK, "{}", found.text);
    assert_eq!(found.body["request_id"], durable.request_id());
    until(StatusCode::OK).await;
    let again = lookup().await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(
        again.audit_seq(),
        durable.audit_seq() + 2,
        "after the officer's read"
    );
    assert!(gw.store().await.indexes_consistent().unwrap());
}
