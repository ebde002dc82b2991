//! `tongban backup` of a gateway under load, `tongban restore` elsewhere:
//! the chain verifies, every event acknowledged before the backup is there,
//! and the restored home serves what the original held.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::helpers::{TestGateway, TestResponse};

fn tongban(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tongban"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn admin_post(gw: &TestGateway, path: &str, body: Value) -> TestResponse {
    let tok = gw.token("shujuju", "admin-1", &["policy_admin"]);
    gw.client()
        .request_with_body(
            "POST",
            path,
            &[
                ("authorization".to_owned(), format!("Bearer {tok}")),
                ("content-type".to_owned(), "application/json".to_owned()),
            ],
            Bytes::from(body.to_string()),
        )
        .await
        .unwrap()
}

/// `tongban backup` of `gw` into `out`, as a policy administrator (run
/// on a blocking thread: the gateway serves meanwhile).
async fn backup(gw: &TestGateway, out: &Path, keys: bool) -> std::process::Output {
    let token = gw.home.path().join("admin.token");
    let tok = gw.token("shujuju", "admin-1", &["policy_admin"]);
    std::fs::write(&token, tok).unwrap();
    let url = format!("https://{}", gw.addr);
    let ca = gw.home.path().join("certs/ca.pem");
    let mut args: Vec<String> = vec![
        "backup".into(),
        "--url".into(),
        url,
        "--ca".into(),
        ca.to_string_lossy().into_owned(),
        "--token-file".into(),
        token.to_string_lossy().into_owned(),
        "--out".into(),
        out.to_string_lossy().into_owned(),
    ];
    if keys {
        args.push("--keys".into());
    }
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        tongban(&args)
    })
    .await
    .unwrap()
}

/// Lookups by four clients until `stop`; each answer's audit sequence
/// number and request id go to `acked`.
async fn load(gw: &TestGateway, stop: &AtomicBool, acked: &Mutex<Vec<(u64, String)>>) {
    let ids = gw.sample_ids("gongan.hukou", 20);
    let tok = gw.token("minzheng", "clerk-9", &["dibao_reviewer"]);
    let worker = |w: usize| {
        let (ids, tok) = (ids.clone(), tok.clone());
        async move {
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                let r = gw
                    .get(
                        &format!("/v1/datasets/gongan.hukou/records/{}", ids[i % ids.len()]),
                        Some(&tok),
                        Some("dibao_review"),
                        Some("MZ-2026-9"),
                    )
                    .await;
                // Answered or refused (the grant's quota runs out): every
                // answer names its durable event.
                if r.headers.contains_key("x-audit-seq") {
                    acked.lock().await.push((r.audit_seq(), r.request_id()));
                }
                i += 4;
            }
        }
    };
    tokio::join!(worker(0), worker(1), worker(2), worker(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_elsewhere_with_every_acknowledged_event() {
    let gw = TestGateway::start_with(|config, _| config.backup.allow_keys = true).await;
    let id0 = state_besides_the_log(&gw).await;

    let stop = AtomicBool::new(false);
    let acked = Mutex::new(Vec::new());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.tar");
    let (before, out) = {
        let taking = async {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            // Everything acknowledged until now must be in the backup.
            let before: Vec<(u64, String)> = acked.lock().await.clone();
            let out = backup(&gw, &file, true).await;
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            stop.store(true, Ordering::Relaxed);
            (before, out)
        };
        let ((before, out), ()) = tokio::join!(taking, load(&gw, &stop, &acked));
        (before, out)
    };
    assert!(out.status.success(), "{}", text(&out));
    assert!(before.len() > 10, "too little load: {}", before.len());
    let after = acked.lock().await.len();
    assert!(after > before.len(), "no load during the backup");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let snapshot = summary["snapshot"]["seq"].as_u64().unwrap();
    assert_eq!(summary["keys"], true);

    // Restored elsewhere (an empty directory): the chain and every
    // signature verify.
    let restored_home = tempfile::tempdir().unwrap();
    let elsewhere = restored_home.path().to_owned();
    let out = tongban(&[
        "restore",
        "--from",
        file.to_str().unwrap(),
        "--home",
        elsewhere.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let restored: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(restored["head_seq"], snapshot);
    assert_eq!(restored["signatures_verified"], true);
    let out = tongban(&["audit", "verify", "--home", elsewhere.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));

    // Every event acknowledged before the backup, as acknowledged.
    {
        let db = tongban::datadir::open_path(&elsewhere.join("data")).unwrap();
        let store = tongban::audit::AuditStore::open(&db, &elsewhere.join("data")).unwrap();
        for (seq, request_id) in &before {
            assert!(
                *seq <= snapshot,
                "{seq} acknowledged before, after the point"
            );
            let e = store
                .get(*seq)
                .unwrap()
                .unwrap_or_else(|| panic!("acknowledged event {seq} is not restored"));
            assert_eq!(&e.body.request_id, request_id);
        }
        assert!(store.indexes_consistent().unwrap());
    }

    serves_what_the_original_held(&gw, restored_home, &id0, snapshot).await;
}

/// State besides the log: a suspension of weijian, and an imported
/// record (the first hukou resident, renamed); that resident's ID.
async fn state_besides_the_log(gw: &TestGateway) -> String {
    let r = admin_post(
        gw,
        "/v1/admin/departments/weijian/suspend",
        json!({"reason": "drill"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let hukou = std::fs::read_to_string(gw.home.path().join("samples/gongan.hukou.jsonl")).unwrap();
    let mut first: Value = serde_json::from_str(hukou.lines().next().unwrap()).unwrap();
    let id0 = first["id_number"].as_str().unwrap().to_owned();
    first["name"] = json!("备份前改名");
    let tok = gw.token("shujuju", "admin-1", &["policy_admin"]);
    let r = gw
        .client()
        .request_with_body(
            "POST",
            "/v1/admin/datasets/gongan.hukou/records",
            &[
                ("authorization".to_owned(), format!("Bearer {tok}")),
                ("content-type".to_owned(), "application/x-ndjson".to_owned()),
            ],
            Bytes::from(format!("{first}\n")),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    id0
}

/// The restored home serves what the original held (the imported record,
/// the suspension), once given the original's TLS files and issuer key;
/// its log goes on after the snapshot point.
async fn serves_what_the_original_held(
    gw: &TestGateway,
    restored_home: tempfile::TempDir,
    id0: &str,
    snapshot: u64,
) {
    let elsewhere = restored_home.path().to_owned();
    for sub in ["certs", "keys"] {
        copy_dir(&gw.home.path().join(sub), &elsewhere.join(sub));
    }
    let config = tongban::config::Config::load(&elsewhere.join("tongban.toml")).unwrap();
    let again = TestGateway::start_on(restored_home, config, gw.clock.clone()).await;
    let tok = again.token("renshe", "clerk-1", &["pension_clerk"]);
    let r = again
        .get(
            &format!("/v1/datasets/gongan.hukou/records/{id0}?fields=name"),
            Some(&tok),
            Some("pension_eligibility"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["record"]["name"], "备份前改名");
    let tok = again.token("weijian", "doctor-1", &["doctor"]);
    let r = again
        .get(
            &format!("/v1/datasets/gongan.hukou/records/{id0}"),
            Some(&tok),
            Some("treatment"),
            None,
        )
        .await;
    assert_eq!(r.problem_type(), Some("/problems/department-suspended"));
    // The log goes on after the snapshot point.
    assert!(r.audit_seq() > snapshot);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_backup_restores_nothing_and_a_home_is_never_overwritten() {
    let gw = TestGateway::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b.tar");
    let out = backup(&gw, &file, false).await;
    assert!(out.status.success(), "{}", text(&out));

    // Without the keys: restored, the chain verified, the keys named as missing.
    let plain = dir.path().join("plain");
    let out = tongban(&[
        "restore",
        "--from",
        file.to_str().unwrap(),
        "--home",
        plain.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("pseudonym"), "{}", text(&out));
    assert!(!plain.join("data/pseudonym.key").exists());

    // Into a home that holds something: refused.
    let out = tongban(&[
        "restore",
        "--from",
        file.to_str().unwrap(),
        "--home",
        plain.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("not empty"), "{}", text(&out));

    // One byte of a record changed: refused before anything is written.
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes
        .windows(12)
        .rposition(|w| w == b"hukou_status")
        .expect("a record in the backup");
    bytes[at] ^= 0x20;
    let damaged = dir.path().join("damaged.tar");
    std::fs::write(&damaged, bytes).unwrap();
    let target = dir.path().join("from-damaged");
    let out = tongban(&[
        "restore",
        "--from",
        damaged.to_str().unwrap(),
        "--home",
        target.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(!target.exists(), "a damaged backup wrote a home");

    // By default no key leaves through the API.
    let tok = gw.token("shujuju", "admin-1", &["policy_admin"]);
    let r = gw
        .get("/v1/admin/backup?keys=true", Some(&tok), None, None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(r.problem_type(), Some("/problems/backup-keys-refused"));

    // A privacy officer cannot take one.
    let tok = gw.token("shujuju", "officer-1", &["privacy_officer"]);
    let r = gw.get("/v1/admin/backup", Some(&tok), None, None).await;
    assert_eq!(r.problem_type(), Some("/problems/role-required"));
}
