//! Policy administrators: safe, attributable, reversible, live changes.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestGateway, TestResponse};

const HUKOU: &str = "/v1/datasets/gongan.hukou/records";

fn admin_token(gw: &TestGateway) -> String {
    gw.token("shujuju", "admin-1", &["policy_admin"])
}

pub(crate) async fn call(
    gw: &TestGateway,
    method: &str,
    path: &str,
    body: Option<(&str, String)>,
    extra: &[(&str, &str)],
) -> TestResponse {
    let mut headers = vec![(
        "authorization".to_owned(),
        format!("Bearer {}", admin_token(gw)),
    )];
    for (k, v) in extra {
        headers.push(((*k).to_owned(), (*v).to_owned()));
    }
    let bytes = match body {
        Some((ct, text)) => {
            headers.push(("content-type".to_owned(), ct.to_owned()));
            Bytes::from(text)
        }
        None => Bytes::new(),
    };
    gw.client()
        .request_with_body(method, path, &headers, bytes)
        .await
        .unwrap()
}

pub(crate) async fn yibao_fields(gw: &TestGateway) -> (BTreeSet<String>, u64) {
    let id = &gw.sample_ids("gongan.hukou", 1)[0];
    let tok = gw.token("yibao", "clerk-2", &["enrollment_clerk"]);
    let r = gw
        .get(
            &format!("{HUKOU}/{id}"),
            Some(&tok),
            Some("medical_insurance_enrollment"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let keys = r.body["record"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    (keys, r.body["grant"]["version"].as_u64().unwrap())
}

pub(crate) fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

pub(crate) async fn get_grant(gw: &TestGateway, id: &str) -> (Value, String) {
    let r = call(gw, "GET", &format!("/v1/admin/grants/{id}"), None, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let etag = r.headers["etag"].to_str().unwrap().to_owned();
    (r.body["grant"].clone(), etag)
}

#[tokio::test]
async fn admin_routes_need_a_policy_admin_of_the_operator() {
    let gw = TestGateway::start().await;
    for (dept, role) in [
        ("yibao", "enrollment_clerk"),
        ("shujuju", "privacy_officer"),
        ("yibao", "policy_admin"),
    ] {
        let tok = gw.token(dept, "x", &[role]);
        for path in [
            "/v1/admin/grants",
            "/v1/admin/datasets",
            "/v1/admin/history",
            "/v1/admin/grants/yibao-enroll-hukou",
        ] {
            let r = gw.get(path, Some(&tok), None, None).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{dept}/{role} {path}");
        }
    }
    let r = call(&gw, "GET", "/v1/admin/grants", None, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body["grants"].as_array().unwrap().len() >= 7);
}

#[tokio::test]
async fn a_valid_edit_is_audited_written_and_in_force_at_once() {
    let gw = TestGateway::start().await;
    assert_eq!(
        yibao_fields(&gw).await,
        (set(&["name", "gender", "birth_date", "hukou_address"]), 1)
    );
    let (mut grant, etag) = get_grant(&gw, "yibao-enroll-hukou").await;
    grant["access"][0]["fields"] = json!(["name", "gender"]);
    grant["access"][0]["masked"] = json!({"hukou_address": "address"});
    let r = call(
        &gw,
        "PUT",
        "/v1/admin/grants/yibao-enroll-hukou",
        Some(("application/json", grant.to_string())),
        &[("if-match", &etag)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["grant"]["version"], 2);
    assert!(
        r.body["access_changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c.as_str().unwrap().contains("birth_date"))
    );
    assert_ne!(r.headers["etag"].to_str().unwrap(), etag);

    // In force for the next query, and on disk.
    assert_eq!(
        yibao_fields(&gw).await,
        (set(&["name", "gender", "hukou_address"]), 2)
    );
    let file = std::fs::read_to_string(gw.gw.config.policies_dir.join("grants/yibao-enroll.toml"))
        .unwrap();
    assert!(
        file.contains("version = 2") && file.starts_with("# 医保局"),
        "{file}"
    );

    // An audit event with author, before and after; and a history entry with a diff.
    let e = gw.store().await.get(r.audit_seq()).unwrap().unwrap().body;
    assert_eq!(e.kind, tongban::audit::EventKind::PolicyAdmin);
    assert_eq!(e.subject.as_deref(), Some("admin-1"));
    let detail: Value = serde_json::from_str(e.detail.as_deref().unwrap()).unwrap();
    assert!(
        detail["before"].as_str().unwrap().contains("birth_date")
            && !detail["after"].as_str().unwrap().contains("birth_date")
    );
    let h = call(
        &gw,
        "GET",
        "/v1/admin/history?kind=grant&id=yibao-enroll-hukou",
        None,
        &[],
    )
    .await;
    let change = &h.body["changes"][0];
    assert_eq!(change["author"], "shujuju/admin-1");
    assert_eq!(change["seq"].as_u64(), Some(r.audit_seq()));
    assert!(
        change["diff"]
            .as_str()
            .unwrap()
            .contains("-fields = [\"name\", \"gender\", \"birth_date\", \"hukou_address\"]"),
        "{}",
        change["diff"]
    );
}

#[tokio::test]
async fn stale_or_missing_etags_cannot_overwrite_another_admins_edit() {
    let gw = TestGateway::start().await;
    let (grant, etag) = get_grant(&gw, "yibao-enroll-hukou").await;
    let mut first = grant.clone();
    first["title"] = json!("first admin");
    let mut second = grant.clone();
    second["title"] = json!("second admin");
    let path = "/v1/admin/grants/yibao-enroll-hukou";
    let r = call(
        &gw,
        "PUT",
        path,
        Some(("application/json", second.to_string())),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_REQUIRED);
    let if_match = [("if-match", etag.as_str())];
    let (a, b) = tokio::join!(
        call(
            &gw,
            "PUT",
            path,
            Some(("application/json", first.to_string())),
            &if_match
        ),
        call(
            &gw,
            "PUT",
            path,
            Some(("application/json", second.to_string())),
            &if_match
        ),
    );
    let statuses = BTreeSet::from([a.status.as_u16(), b.status.as_u16()]);
    assert_eq!(
        statuses,
        BTreeSet::from([200, 412]),
        "{} / {}",
        a.text,
        b.text
    );
    let loser = if a.status == StatusCode::PRECONDITION_FAILED {
        &a
    } else {
        &b
    };
    assert_eq!(loser.problem_type(), Some("/problems/precondition-failed"));
    let (now, _) = get_grant(&gw, "yibao-enroll-hukou").await;
    assert_eq!(now["version"], 2, "exactly one edit won");
}

#[tokio::test]
async fn an_invalid_edit_changes_nothing() {
    let gw = TestGateway::start().await;
    let file = gw.gw.config.policies_dir.join("grants/yibao-enroll.toml");
    let before = std::fs::read(&file).unwrap();
    let version = gw.gw.policy.snapshot().version().to_owned();
    let (mut grant, etag) = get_grant(&gw, "yibao-enroll-hukou").await;
    grant["access"][0]["fields"] = json!(["name", "ethnicty"]);
    let r = call(
        &gw,
        "PUT",
        "/v1/admin/grants/yibao-enroll-hukou",
        Some(("application/json", grant.to_string())),
        &[("if-match", &etag)],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.problem_type(), Some("/problems/invalid-policy"));
    let errors = r.body["errors"].as_array().unwrap();
    assert_eq!(errors[0]["file"], "grants/yibao-enroll.toml");
    assert_eq!(errors[0]["entry"], "grant \"yibao-enroll-hukou\"");
    assert!(errors[0]["message"].as_str().unwrap().contains("ethnicty"));
    assert_eq!(std::fs::read(&file).unwrap(), before);
    assert_eq!(gw.gw.policy.snapshot().version(), version);
    assert_eq!(yibao_fields(&gw).await.1, 1);

    // Malformed bodies and media types.
    let r = call(
        &gw,
        "PUT",
        "/v1/admin/grants/yibao-enroll-hukou",
        Some(("application/json", "{".into())),
        &[("if-match", &etag)],
    )
    .await;
    assert_eq!(r.problem_type(), Some("/problems/invalid-body"));
    let r = call(
        &gw,
        "PUT",
        "/v1/admin/grants/yibao-enroll-hukou",
        Some(("text/plain", "x".into())),
        &[("if-match", &etag)],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = call(
        &gw,
        "PUT",
        "/v1/admin/grants/other-id",
        Some(("application/json", grant.to_string())),
        &[],
    )
    .await;
    assert_eq!(r.problem_type(), Some("/problems/id-mismatch"));
    let big = format!("{{\"x\": \"{}\"}}", "a".repeat(70 * 1024));
    let r = call(
        &gw,
        "PUT",
        "/v1/admin/grants/yibao-enroll-hukou",
        Some(("application/json", big)),
        &[("if-match", &etag)],
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
}

#[tokio::test]
async fn toml_bodies_new_grants_and_deletes() {
    let gw = TestGateway::start().await;
    let toml = r#"
id = "yibao-enroll-hunyin"
consumer = "yibao"
roles = ["enrollment_clerk"]
purposes = ["medical_insurance_enrollment"]
operations = ["lookup"]
basis = "城乡居民医保家庭参保核验"

[conditions]
case_ref_required = true

[[access]]
dataset = "minzheng.hunyin"
fields = ["marital_status"]
"#;
    let r = call(
        &gw,
        "PUT",
        "/v1/admin/grants/yibao-enroll-hunyin",
        Some(("application/toml", toml.into())),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert!(
        gw.gw
            .config
            .policies_dir
            .join("grants/yibao-enroll-hunyin.toml")
            .exists()
    );
    let etag = r.headers["etag"].to_str().unwrap().to_owned();
    let t = call(
        &gw,
        "GET",
        "/v1/admin/grants/yibao-enroll-hunyin",
        None,
        &[("accept", "application/toml")],
    )
    .await;
    assert!(t.text.contains("marital_status"), "{}", t.text);
    let r = call(
        &gw,
        "DELETE",
        "/v1/admin/grants/yibao-enroll-hunyin",
        None,
        &[("if-match", &etag)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        !gw.gw
            .config
            .policies_dir
            .join("grants/yibao-enroll-hunyin.toml")
            .exists()
    );

    // A dataset that grants use cannot be deleted; the answer names them.
    let d = call(&gw, "GET", "/v1/admin/datasets/renshe.shebao", None, &[]).await;
    let etag = d.headers["etag"].to_str().unwrap().to_owned();
    let r = call(
        &gw,
        "DELETE",
        "/v1/admin/datasets/renshe.shebao",
        None,
        &[("if-match", &etag)],
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.body["grants"], json!(["minzheng-dibao-shebao"]));
}

/// A JSON body POSTed by the administrator.
async fn post_json(gw: &TestGateway, path: &str, body: &Value) -> TestResponse {
    call(
        gw,
        "POST",
        path,
        Some(("application/json", body.to_string())),
        &[],
    )
    .await
}

#[tokio::test]
async fn validate_and_decide_explain_without_changing_anything() {
    let gw = TestGateway::start().await;
    let (mut grant, _) = get_grant(&gw, "yibao-enroll-hukou").await;
    grant["access"][0]["fields"] = json!(["name", "phone"]);
    let body = json!({"changes": [{"action": "put_grant", "grant": grant}]});
    let r = post_json(&gw, "/v1/admin/validate", &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["valid"], true);
    let changes = r.body["access_changes"].as_array().unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c.as_str().unwrap().contains("gains phone")),
        "{changes:?}"
    );
    assert_eq!(yibao_fields(&gw).await.1, 1, "validation applies nothing");
    let body = json!({"changes": [{"action": "delete_dataset", "id": "gongan.hukou"}]});
    let r = post_json(&gw, "/v1/admin/validate", &body).await;
    assert_eq!(r.body["valid"], false);

    let ask = |purpose: &str, roles: Value| json!({"dept": "minzheng", "roles": roles, "dataset": "gongan.hukou", "operation": "lookup", "purpose": purpose, "case_ref": "MZ-1"});
    let r = post_json(
        &gw,
        "/v1/admin/decide",
        &ask("dibao_review", json!(["dibao_reviewer"])),
    )
    .await;
    assert_eq!(r.body["decision"], "allow", "{}", r.text);
    assert_eq!(r.body["grant"]["id"], "minzheng-dibao-hukou");
    assert!(
        r.body["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "id_number" && f["mask"] == "id_number")
    );
    let r = post_json(
        &gw,
        "/v1/admin/decide",
        &ask("dibao_review", json!(["archivist"])),
    )
    .await;
    assert_eq!(r.body["decision"], "deny");
    assert_eq!(r.body["reason"], "role-not-granted");
    assert_eq!(r.body["nearest_grant"], "minzheng-dibao-hukou");
    let r = post_json(
        &gw,
        "/v1/admin/decide",
        &ask("school_admission", json!(["dibao_reviewer"])),
    )
    .await;
    assert_eq!(r.body["reason"], "purpose-not-granted");
    let mut q = ask("school_admission", json!(["admissions_clerk"]));
    q["dept"] = json!("jiaoyu");
    q["case_ref"] = json!("JY-2026-0001");
    q["date"] = json!("2026-10-01");
    let r = post_json(&gw, "/v1/admin/decide", &q).await;
    assert_eq!(r.body["reason"], "grant-not-in-force", "{}", r.text);
    q["date"] = json!("2026-05-01");
    q["case_ref"] = json!("MZ-2026-1");
    let r = post_json(&gw, "/v1/admin/decide", &q).await;
    assert_eq!(r.body["reason"], "case-ref-format", "{}", r.text);
}

#[tokio::test]
async fn history_and_revert_round_trip() {
    let gw = TestGateway::start().await;
    let (original, _) = yibao_fields(&gw).await;
    let (mut grant, etag) = get_grant(&gw, "yibao-enroll-hukou").await;
    grant["access"][0]["fields"] = json!(["name"]);
    let r = call(
        &gw,
        "PUT",
        "/v1/admin/grants/yibao-enroll-hukou",
        Some(("application/json", grant.to_string())),
        &[("if-match", &etag)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(yibao_fields(&gw).await, (set(&["name"]), 2));
    // Version 1 is known from the files only; version 2 from the history.
    let r = call(
        &gw,
        "POST",
        "/v1/admin/grants/yibao-enroll-hukou/revert?to=9",
        None,
        &[],
    )
    .await;
    assert_eq!(r.problem_type(), Some("/problems/version-not-found"));
    let (mut grant, etag) = get_grant(&gw, "yibao-enroll-hukou").await;
    grant["access"][0]["fields"] = json!(["name", "gender"]);
    call(
        &gw,
        "PUT",
        "/v1/admin/grants/yibao-enroll-hukou",
        Some(("application/json", grant.to_string())),
        &[("if-match", &etag)],
    )
    .await;
    assert_eq!(yibao_fields(&gw).await, (set(&["name", "gender"]), 3));
    let r = call(
        &gw,
        "POST",
        "/v1/admin/grants/yibao-enroll-hukou/revert?to=2",
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(yibao_fields(&gw).await, (set(&["name"]), 4));
    let h = call(
        &gw,
        "GET",
        "/v1/admin/history?id=yibao-enroll-hukou",
        None,
        &[],
    )
    .await;
    let actions: Vec<&str> = h.body["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["revert", "put", "put"]);
    // Version 1 came from the files, before any recorded change: the first
    // change recorded it as its "before", so it can be put back too.
    let r = call(
        &gw,
        "POST",
        "/v1/admin/grants/yibao-enroll-hukou/revert?to=1",
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(yibao_fields(&gw).await, (original, 5));
}

#[tokio::test]
async fn hand_edits_take_effect_within_two_seconds_and_invalid_ones_do_not() {
    let gw = TestGateway::start_with(|_, _| {}).await;
    let file = gw.gw.config.policies_dir.join("grants/yibao-enroll.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace(
            "fields = [\"name\", \"gender\", \"birth_date\", \"hukou_address\"]",
            "fields = [\"name\"]",
        ),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        if yibao_fields(&gw).await.0 == set(&["name"]) {
            break;
        }
        if Instant::now() >= deadline {
            let r = gw.readiness().await;
            panic!("the hand edit was not in force within 2 s: {}", r.text);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let h = call(
        &gw,
        "GET",
        "/v1/admin/history?id=yibao-enroll-hukou",
        None,
        &[],
    )
    .await;
    assert_eq!(h.body["changes"][0]["author"], "files");

    // An invalid edit is refused: the set in force stays, /readyz says why.
    std::fs::write(&file, "[[grant]]\nid = \"broken\"\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = gw.readiness().await;
        if r.body["policy_reload"]["error"].is_string() {
            assert!(
                r.body["policy_reload"]["error"]
                    .as_str()
                    .unwrap()
                    .contains("grants/yibao-enroll.toml")
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the invalid edit was not reported"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(yibao_fields(&gw).await.0, set(&["name"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_during_swaps_see_the_old_or_the_new_set_never_a_mix() {
    let gw = TestGateway::start().await;
    let a = set(&["name", "gender", "birth_date", "hukou_address"]);
    let b = set(&["hukou_status", "household_id"]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    let tok = gw.token("yibao", "clerk-2", &["enrollment_clerk"]);
    let client = gw.client();
    let reader = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let headers = vec![
                ("authorization".to_owned(), format!("Bearer {tok}")),
                (
                    "x-purpose".to_owned(),
                    "medical_insurance_enrollment".to_owned(),
                ),
            ];
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = client
                    .request("GET", &format!("{HUKOU}/{id}"), &headers)
                    .await
                    .unwrap();
                let keys: BTreeSet<String> = r.body["record"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .cloned()
                    .collect();
                seen.push((keys, r.body["grant"]["version"].as_u64().unwrap()));
            }
            seen
        })
    };
    for round in 0..10 {
        let (mut grant, etag) = get_grant(&gw, "yibao-enroll-hukou").await;
        let fields: Vec<&String> = if round % 2 == 0 {
            b.iter().collect()
        } else {
            a.iter().collect()
        };
        grant["access"][0]["fields"] = json!(fields);
        let r = call(
            &gw,
            "PUT",
            "/v1/admin/grants/yibao-enroll-hukou",
            Some(("application/json", grant.to_string())),
            &[("if-match", &etag)],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = reader.await.unwrap();
    assert!(!seen.is_empty());
    for (keys, version) in seen {
        // Odd versions carry set A (the files' version 1 too), even ones set B.
        let expected = if version % 2 == 1 { &a } else { &b };
        assert_eq!(&keys, expected, "version {version} answered a mix");
    }
}

#[test]
fn policy_diff_names_who_gains_and_loses() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");
    let (home, config) = crate::helpers::demo_home();
    let file = config.policies_dir.join("grants/yibao-enroll.toml");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("\"birth_date\", ", "\"phone\", ");
    std::fs::write(&file, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tongban"))
        .args(["policy", "diff", dir, config.policies_dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("+ yibao/enrollment_clerk lookup gongan.hukou for medical_insurance_enrollment: gains phone"), "{text}");
    assert!(text.contains("loses birth_date"), "{text}");
    drop(home);
}

/// The policy lock is taken only once the caller is known to be an
/// administrator: while an edit holds it, edits by anyone else are refused
/// at once rather than queued behind it.
#[tokio::test]
async fn edits_by_non_administrators_are_refused_without_waiting_on_the_policy_lock() {
    let gw = TestGateway::start().await;
    let clerk = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let _edit_in_progress = gw.gw.policy_lock.lock().await;
    let grant = "/v1/admin/grants/minzheng-dibao-hukou";
    let dataset = "/v1/admin/datasets/gongan.hukou";
    let revert = "/v1/admin/grants/minzheng-dibao-hukou/revert?to=1";
    for (token, want) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some(&clerk), StatusCode::FORBIDDEN),
    ] {
        for (method, path) in [
            ("PUT", grant),
            ("DELETE", grant),
            ("POST", revert),
            ("PUT", dataset),
            ("DELETE", dataset),
        ] {
            let mut headers = vec![
                ("content-type".to_owned(), "application/json".to_owned()),
                ("if-match".to_owned(), "\"x\"".to_owned()),
            ];
            if let Some(t) = token {
                headers.push(("authorization".to_owned(), format!("Bearer {t}")));
            }
            let r = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                gw.client()
                    .request_with_body(method, path, &headers, bytes::Bytes::from("{}")),
            )
            .await
            .unwrap_or_else(|_| panic!("{method} {path} waited on the policy lock"))
            .unwrap();
            assert_eq!(r.status, want, "{method} {path}: {}", r.text);
        }
    }
}

/// A department limit changed in `tongban.toml` takes effect without a
/// restart (file change; SIGHUP does the same), audited before it is in
/// force; a file that does not load leaves the limits in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_department_limit_changed_in_the_configuration_needs_no_restart() {
    let gw = TestGateway::start().await;
    let yibao = gw.token("yibao", "clerk-2", &["enrollment_clerk"]);
    let id = gw.sample_ids("gongan.hukou", 1).remove(0);
    let path = format!("/v1/datasets/gongan.hukou/records/{id}");
    let lookup = || {
        gw.get(
            &path,
            Some(&yibao),
            Some("medical_insurance_enrollment"),
            None,
        )
    };
    for _ in 0..5 {
        assert_eq!(lookup().await.status, StatusCode::OK);
    }
    let file = gw.home.path().join("tongban.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        format!("{text}\n[rate_limit.departments]\nyibao = \"2/min\"\n"),
    )
    .unwrap();
    let start = Instant::now();
    loop {
        let r = lookup().await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the new limit is not in force"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Recorded before it was in force, with what changed.
    let store = gw.store().await;
    let (head, _) = store.head().unwrap();
    let change = (1..=head)
        .rev()
        .filter_map(|s| store.get(s).unwrap())
        .find(|e| e.body.operation == "config.rate_limits")
        .expect("the change is audited");
    let detail: Value = serde_json::from_str(change.body.detail.as_deref().unwrap()).unwrap();
    assert_eq!(detail["after"]["departments"]["yibao"], "2/min", "{detail}");
    assert_eq!(detail["before"]["departments"], json!({}), "{detail}");
    // Another department is not limited by yibao's change.
    let mz = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let r = gw
        .get(
            &format!("/v1/datasets/gongan.hukou/records/{id}"),
            Some(&mz),
            Some("dibao_review"),
            Some("MZ-2026-1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // A broken file leaves the limits in force.
    std::fs::write(
        &file,
        format!("{text}\n[rate_limit.departments]\nyibao = \"often\"\n"),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(lookup().await.status, StatusCode::TOO_MANY_REQUESTS);
}
