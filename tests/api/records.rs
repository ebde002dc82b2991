//! Online imports of an embedded dataset's records: checked whole, audited,
//! put in force in one step while the gateway serves.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestGateway, TestResponse};

const RECORDS: &str = "/v1/admin/datasets/gongan.hukou/records";

/// `method` of `body` (with `content_type`) to the hukou records, by `roles`.
async fn send(
    gw: &TestGateway,
    method: &str,
    roles: &[&str],
    content_type: &str,
    body: impl Into<Bytes>,
) -> TestResponse {
    let tok = gw.token("shujuju", "admin-1", roles);
    gw.client()
        .request_with_body(
            method,
            RECORDS,
            &[
                ("authorization".to_owned(), format!("Bearer {tok}")),
                ("content-type".to_owned(), content_type.to_owned()),
            ],
            body.into(),
        )
        .await
        .unwrap()
}

async fn import(gw: &TestGateway, method: &str, lines: &[Value]) -> TestResponse {
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    send(gw, method, &["policy_admin"], "application/x-ndjson", body).await
}

async fn name_of(gw: &TestGateway, id: &str) -> (StatusCode, Value) {
    let tok = gw.token("renshe", "clerk-1", &["pension_clerk"]);
    let r = gw
        .get(
            &format!("/v1/datasets/gongan.hukou/records/{id}?fields=name"),
            Some(&tok),
            Some("pension_eligibility"),
            None,
        )
        .await;
    (r.status, r.body["record"]["name"].clone())
}

fn sample(gw: &TestGateway) -> Vec<Value> {
    std::fs::read_to_string(gw.home.path().join("samples/gongan.hukou.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn a_replacement_and_a_merge_are_checked_audited_and_put_in_force() {
    let gw = TestGateway::start().await;
    let all = sample(&gw);
    let ids: Vec<String> = all[..3]
        .iter()
        .map(|r| r["id_number"].as_str().unwrap().to_owned())
        .collect();
    let mut renamed = all[0].clone();
    renamed["name"] = json!("李四");

    // Replace the whole set with two records.
    let r = import(&gw, "PUT", &[renamed.clone(), all[1].clone()]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["mode"], "replace");
    assert_eq!(r.body["rows"], 2);
    assert_eq!(r.body["held_after"], 2);
    assert_eq!(r.body["held_before"], all.len());
    assert_eq!(name_of(&gw, &ids[0]).await.1, "李四");
    assert_eq!(name_of(&gw, &ids[2]).await.0, StatusCode::NOT_FOUND);
    let e = gw.store().await.get(r.audit_seq()).unwrap().unwrap().body;
    assert_eq!(e.operation, "data.import");
    assert_eq!(e.dataset.as_deref(), Some("gongan.hukou"));
    let detail: Value = serde_json::from_str(e.detail.as_deref().unwrap()).unwrap();
    assert_eq!(detail["sha256"], r.body["sha256"]);
    assert_eq!(detail["sha256"].as_str().unwrap().len(), 64);
    assert!(!e.detail.unwrap().contains("李四"), "a value in the log");

    // A merge adds one back and keeps the others.
    let r = import(&gw, "POST", &[all[2].clone()]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["mode"], "merge");
    assert_eq!(r.body["held_after"], 3);
    assert_eq!(name_of(&gw, &ids[0]).await.1, "李四");
    assert_eq!(name_of(&gw, &ids[2]).await.0, StatusCode::OK);

    // CSV, with a header row.
    let csv = format!("id_number,name\n{},王五\n", ids[1]);
    let r = send(&gw, "POST", &["policy_admin"], "text/csv", csv).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(name_of(&gw, &ids[1]).await.1, "王五");
}

#[tokio::test]
async fn bad_rows_refuse_the_whole_import_and_name_each_line_without_its_values() {
    let gw = TestGateway::start().await;
    let all = sample(&gw);
    let id0 = all[0]["id_number"].as_str().unwrap().to_owned();
    let before = name_of(&gw, &id0).await.1;
    let mut renamed = all[0].clone();
    renamed["name"] = json!("李四");
    let body = [
        renamed,
        json!({"id_number": "110101199810229456", "name": "赵六"}),
        json!({"id_number": all[1]["id_number"], "nickname": "秘密的值"}),
        all[2].clone(),
        all[2].clone(),
    ];
    let r = import(&gw, "PUT", &body).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.problem_type(), Some("/problems/invalid-records"));
    let errors: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].starts_with("line 2: id_number"), "{errors:?}");
    assert!(errors[1].starts_with("line 3:") && errors[1].contains("nickname"));
    assert!(errors[2].starts_with("line 5:") && errors[2].contains("twice"));
    for secret in ["秘密的值", "赵六", "李四"] {
        assert!(!r.text.contains(secret), "{secret} in {}", r.text);
    }
    // Nothing changed; the refusal is audited.
    assert_eq!(name_of(&gw, &id0).await.1, before);
    let e = gw.store().await.get(r.audit_seq()).unwrap().unwrap().body;
    assert_eq!(e.reason.as_deref(), Some("invalid-records"));

    // Not JSON Lines nor CSV; not a policy administrator.
    let r = send(&gw, "PUT", &["policy_admin"], "application/json", "{}").await;
    assert_eq!(r.problem_type(), Some("/problems/unsupported-media-type"));
    let r = send(&gw, "PUT", &["privacy_officer"], "text/csv", "id_number\n").await;
    assert_eq!(r.problem_type(), Some("/problems/role-required"));
}

#[tokio::test]
async fn an_import_is_not_bounded_by_the_body_limit_but_by_its_own() {
    let gw = TestGateway::start_with(|config, _| {
        config.limits.max_body_bytes = 1024;
        config.limits.max_import_bytes = 64 * 1024;
    })
    .await;
    let all = sample(&gw);
    // Well over the body limit, within the import limit.
    let some: Vec<Value> = all.iter().take(40).cloned().collect();
    let r = import(&gw, "PUT", &some).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.body["bytes"].as_u64().unwrap() > 1024);
    // Over the import limit: refused, nothing changed.
    let many: Vec<Value> = all.iter().cycle().take(2000).cloned().collect();
    let r = import(&gw, "PUT", &many).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
    assert_eq!(r.problem_type(), Some("/problems/body-too-large"));
    let id = all[0]["id_number"].as_str().unwrap();
    assert_eq!(name_of(&gw, id).await.0, StatusCode::OK);
    let leftovers: Vec<_> = std::fs::read_dir(&gw.gw.config.data_dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("import-"))
        .collect();
    assert!(leftovers.is_empty(), "a spool file is left: {leftovers:?}");
}

#[tokio::test]
async fn lookups_during_a_replacement_see_the_old_records_or_the_new_and_a_restart_keeps_it() {
    let mut gw = TestGateway::start().await;
    let all = sample(&gw);
    let id0 = all[0]["id_number"].as_str().unwrap().to_owned();
    let old = name_of(&gw, &id0).await.1;
    let stop = Arc::new(AtomicBool::new(false));
    let gw_ref = &gw;
    let watcher = async {
        let mut seen = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let (status, name) = name_of(gw_ref, &id0).await;
            assert_eq!(status, StatusCode::OK, "a lookup during the import");
            seen.push(name);
        }
        seen
    };
    let importer = async {
        let mut renamed: Vec<Value> = all.clone();
        for r in &mut renamed {
            r["name"] = json!("新名");
        }
        let r = import(gw_ref, "PUT", &renamed).await;
        // Keep looking a moment after.
        let again = name_of(gw_ref, &id0).await;
        stop.store(true, Ordering::Relaxed);
        (r, again)
    };
    let (seen, (r, again)) = tokio::join!(watcher, importer);
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(again.1, "新名");
    assert!(seen.iter().all(|n| *n == old || *n == "新名"), "{seen:?}");

    // The new generation is the one in force after a restart.
    gw.stop().await;
    let (config, clock) = (gw.gw.config.clone(), gw.clock.clone());
    let home = gw.take_home();
    drop(gw);
    let gw = TestGateway::start_on(home, config, clock).await;
    assert_eq!(name_of(&gw, &id0).await.1, "新名");
}

#[tokio::test]
async fn a_dataset_its_owner_answers_cannot_be_imported() {
    let gw = TestGateway::start_with(|_, home| {
        let file = home.join("policies/datasets/gongan.hukou.toml");
        let text = std::fs::read_to_string(&file).unwrap();
        let text = text.replacen(
            "\n[[field]]",
            "\nprovider = { kind = \"http\", base_url = \"https://127.0.0.1:9\" }\n\n[[field]]",
            1,
        );
        std::fs::write(&file, text).unwrap();
    })
    .await;
    let r = import(&gw, "PUT", &[]).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.problem_type(), Some("/problems/dataset-not-embedded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_imports_through_a_running_gateway() {
    let gw = TestGateway::start().await;
    let all = sample(&gw);
    let id = all[0]["id_number"].as_str().unwrap().to_owned();
    let mut renamed = all[0].clone();
    renamed["name"] = json!("命令行");
    let dir = gw.home.path();
    std::fs::write(dir.join("one.jsonl"), format!("{renamed}\n")).unwrap();
    std::fs::write(dir.join("bad.csv"), "id_number,name\n123,x\n").unwrap();
    std::fs::write(
        dir.join("admin.token"),
        gw.token("shujuju", "admin-1", &["policy_admin"]),
    )
    .unwrap();
    let run = |file: &str, replace: bool| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_tongban"));
        c.args(["import", "--url", &format!("https://{}", gw.addr), "--ca"])
            .arg(dir.join("certs/ca.pem"))
            .arg("--token-file")
            .arg(dir.join("admin.token"))
            .args(["--dataset", "gongan.hukou"])
            .arg(dir.join(file));
        if replace {
            c.arg("--replace");
        }
        tokio::task::spawn_blocking(move || c.output().unwrap())
    };
    let out = run("one.jsonl", false).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["mode"], "merge");
    assert_eq!(name_of(&gw, &id).await.1, "命令行");
    let out = run("bad.csv", true).await.unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 2: id_number"), "{stderr}");
    assert!(stderr.contains("invalid-records"), "{stderr}");
    assert_eq!(name_of(&gw, &id).await.1, "命令行");
}
