//! Idempotent retries (`Idempotency-Key`) of verify and batch: checked
//! again, answered again, not charged again, recorded as one `replay`.

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestGateway, TestResponse, texts};

/// A POST of `body` to `path` by `sub` of `dept` with `roles`, for
/// `purpose` (with a case reference for 低保 reviews), under `key` if any.
async fn post(
    gw: &TestGateway,
    (dept, sub, roles): (&str, &str, &[&str]),
    (path, purpose): (&str, &str),
    key: Option<&str>,
    body: &Value,
) -> TestResponse {
    let tok = gw.token(dept, sub, roles);
    let mut headers = vec![
        ("authorization".to_owned(), format!("Bearer {tok}")),
        ("x-purpose".to_owned(), purpose.to_owned()),
        ("content-type".to_owned(), "application/json".to_owned()),
    ];
    if purpose == "dibao_review" {
        headers.push(("x-case-ref".to_owned(), "MZ-2026-1".to_owned()));
    }
    if let Some(k) = key {
        headers.push(("idempotency-key".to_owned(), k.to_owned()));
    }
    gw.client()
        .request_with_body("POST", path, &headers, Bytes::from(body.to_string()))
        .await
        .unwrap()
}

const CLERK: (&str, &str, &[&str]) = ("minzheng", "clerk-1", &["dibao_reviewer"]);

fn verify_path(id: &str) -> String {
    format!("/v1/datasets/renshe.shebao/records/{id}/verify")
}

fn insured() -> Value {
    json!({"conditions": [{"field": "insured_status", "op": "in", "value": ["参保缴费", "暂停缴费"]}]})
}

#[tokio::test]
async fn a_verify_retry_is_answered_again_without_spending_the_budget() {
    let gw = TestGateway::start().await;
    let ids = gw.sample_ids("renshe.shebao", 2);
    let path = verify_path(&ids[0]);
    let ask = |key: Option<&'static str>, body: Value| {
        let (gw, path) = (&gw, path.clone());
        async move { post(gw, CLERK, (&path, "dibao_review"), key, &body).await }
    };
    let first = ask(Some("retry-1"), insured()).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert!(!first.headers.contains_key("idempotent-replayed"));
    let first_seq = first.audit_seq();

    // More retries than the day's budget (5): each is answered, as the
    // first was, and recorded as one replay naming the first event.
    for _ in 0..6 {
        let r = ask(Some("retry-1"), insured()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.headers["idempotent-replayed"], "true");
        assert_eq!(r.body["results"], first.body["results"]);
        assert_ne!(r.audit_seq(), first_seq);
        let e = gw.store().await.get(r.audit_seq()).unwrap().unwrap().body;
        assert_eq!(e.operation, "replay");
        assert_eq!(e.outcome, tongban::audit::Outcome::Allow);
        assert_eq!(texts(&e.fields), ["insured_status"]);
        assert!(e.resident.is_some());
        let detail: Value = serde_json::from_str(e.detail.as_deref().unwrap()).unwrap();
        assert_eq!(detail["replay_of"]["operation"], "verify");
        assert_eq!(detail["replay_of"]["first_seq"], first_seq);
        assert_eq!(detail["replay_of"]["last_seq"], first_seq);
        assert!(detail["results"].is_array(), "{detail}");
    }
    // The first request was charged once: four more fresh ones fit the
    // budget of five, the next does not.
    for n in 0..4 {
        let r = ask(None, insured()).await;
        assert_eq!(r.status, StatusCode::OK, "fresh request {n}: {}", r.text);
    }
    let r = ask(None, insured()).await;
    assert_eq!(r.problem_type(), Some("/problems/verify-budget-exhausted"));

    // The same key with another question, or about another resident, is
    // refused; and records nothing under the key.
    let other = json!({"conditions": [{"field": "monthly_pension", "op": "exists"}]});
    let r = ask(Some("retry-1"), other).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.problem_type(), Some("/problems/idempotency-key-reused"));
    let r = post(
        &gw,
        CLERK,
        (&verify_path(&ids[1]), "dibao_review"),
        Some("retry-1"),
        &insured(),
    )
    .await;
    assert_eq!(r.problem_type(), Some("/problems/idempotency-key-reused"));
    let e = gw.store().await.get(r.audit_seq()).unwrap().unwrap().body;
    assert_eq!(e.reason.as_deref(), Some("idempotency-key-reused"));

    // A key is its subject's: another clerk's same key is a first request
    // (here refused by the budget, as a first request is).
    let other_clerk = ("minzheng", "clerk-2", &["dibao_reviewer"][..]);
    let r = post(
        &gw,
        other_clerk,
        (&path, "dibao_review"),
        Some("retry-1"),
        &insured(),
    )
    .await;
    assert_eq!(r.problem_type(), Some("/problems/verify-budget-exhausted"));

    // A malformed key is refused before anything is asked.
    let r = ask(Some("two words"), insured()).await;
    assert_eq!(r.problem_type(), Some("/problems/invalid-header"));
}

#[tokio::test]
async fn a_replay_is_checked_again_and_survives_a_restart() {
    let mut gw = TestGateway::start().await;
    let id = gw.sample_ids("renshe.shebao", 1)[0].clone();
    let path = verify_path(&id);
    let first = post(&gw, CLERK, (&path, "dibao_review"), Some("k-7"), &insured()).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);

    // The same person under a token without the role: the grant is decided
    // again, and refuses.
    let no_role = ("minzheng", "clerk-1", &["archivist"][..]);
    let r = post(
        &gw,
        no_role,
        (&path, "dibao_review"),
        Some("k-7"),
        &insured(),
    )
    .await;
    assert_eq!(
        r.problem_type(),
        Some("/problems/role-not-granted"),
        "{}",
        r.text
    );

    // The key is on disk: after a restart the retry is still a replay.
    gw.stop().await;
    let (config, clock) = (gw.gw.config.clone(), gw.clock.clone());
    let home = gw.take_home();
    drop(gw);
    let gw = TestGateway::start_on(home, config, clock).await;
    let r = post(&gw, CLERK, (&path, "dibao_review"), Some("k-7"), &insured()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.headers["idempotent-replayed"], "true");

    // A suspended department's replay is refused like any request.
    let tok = gw.token("shujuju", "admin-1", &["policy_admin"]);
    let r = gw
        .client()
        .request_with_body(
            "POST",
            "/v1/admin/departments/minzheng/suspend",
            &[
                ("authorization".to_owned(), format!("Bearer {tok}")),
                ("content-type".to_owned(), "application/json".to_owned()),
            ],
            Bytes::from(json!({"reason": "drill"}).to_string()),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = post(&gw, CLERK, (&path, "dibao_review"), Some("k-7"), &insured()).await;
    assert_eq!(r.problem_type(), Some("/problems/department-suspended"));
}

#[tokio::test]
async fn a_batch_retry_is_recorded_per_resident_and_is_not_charged_to_the_quota() {
    let gw = TestGateway::start_with(|config, _| {
        let file = config.policies_dir.join("grants/renshe-pension.toml");
        let text = std::fs::read_to_string(&file).unwrap();
        let limited = text.replace("quota = \"600/min\"", "quota = \"5/min\"");
        assert_ne!(text, limited);
        std::fs::write(file, limited).unwrap();
    })
    .await;
    let ids = gw.sample_ids("gongan.hukou", 3);
    let body = json!({ "resident_ids": ids, "fields": ["name"] });
    let clerk = ("renshe", "batch-1", &["pension_clerk"][..]);
    let path = "/v1/datasets/gongan.hukou/records:batch";
    let first = post(
        &gw,
        clerk,
        (path, "pension_eligibility"),
        Some("b-1"),
        &body,
    )
    .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let (lo, hi) = (
        first.body["audit"]["seq"].as_u64().unwrap(),
        first.body["audit"]["last_seq"].as_u64().unwrap(),
    );
    assert_eq!(hi - lo, 2);

    // Three replays of three residents: nine more than the quota of five
    // has left (two), all answered; each recorded as its first request
    // was, one event per resident (so each resident's disclosure report
    // lists it), each a replay naming the first request's events.
    for _ in 0..3 {
        let before = gw.store().await.len();
        let r = post(
            &gw,
            clerk,
            (path, "pension_eligibility"),
            Some("b-1"),
            &body,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.headers["idempotent-replayed"], "true");
        assert_eq!(r.body["results"], first.body["results"]);
        assert_eq!(gw.store().await.len(), before + 3);
        let (seq, last) = (
            r.body["audit"]["seq"].as_u64().unwrap(),
            r.body["audit"]["last_seq"].as_u64().unwrap(),
        );
        assert_eq!(last - seq, 2);
        for s in seq..=last {
            let e = gw.store().await.get(s).unwrap().unwrap().body;
            assert_eq!(e.operation, "replay");
            assert_eq!(texts(&e.fields), ["name"]);
            assert!(e.resident.is_some());
            let detail: Value = serde_json::from_str(e.detail.as_deref().unwrap()).unwrap();
            assert_eq!(detail["replay_of"]["operation"], "batch");
            assert_eq!(detail["replay_of"]["first_seq"], lo);
            assert_eq!(detail["replay_of"]["last_seq"], hi);
        }
    }
    // The quota still has two left.
    let two = json!({ "resident_ids": &ids[..2] });
    let r = post(&gw, clerk, (path, "pension_eligibility"), None, &two).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // The same key with members reordered is the same request; with
    // another list it is not.
    let reordered = json!({ "fields": ["name"], "resident_ids": ids });
    let r = post(
        &gw,
        clerk,
        (path, "pension_eligibility"),
        Some("b-1"),
        &reordered,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = post(&gw, clerk, (path, "pension_eligibility"), Some("b-1"), &two).await;
    assert_eq!(r.problem_type(), Some("/problems/idempotency-key-reused"));
}
