//! Batch queries: many residents, one purpose; answers per ID; one audit event per resident.

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestGateway, TestResponse, texts};

async fn batch(
    gw: &TestGateway,
    dept: &str,
    role: &str,
    purpose: &str,
    body: Value,
) -> TestResponse {
    let tok = gw.token(dept, "batch-1", &[role]);
    let headers = vec![
        ("authorization".to_owned(), format!("Bearer {tok}")),
        ("x-purpose".to_owned(), purpose.to_owned()),
        ("content-type".to_owned(), "application/json".to_owned()),
    ];
    gw.client()
        .request_with_body(
            "POST",
            "/v1/datasets/gongan.hukou/records:batch",
            &headers,
            Bytes::from(body.to_string()),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn each_id_gets_its_answer_and_its_audit_event() {
    let gw = TestGateway::start().await;
    let ids = gw.sample_ids("gongan.hukou", 3);
    let unknown = "11010519491231002X";
    let body = json!({"resident_ids": [ids[0], ids[1], "123", unknown, ids[2]]});
    let r = batch(&gw, "renshe", "pension_clerk", "pension_eligibility", body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let results = r.body["results"].as_array().unwrap();
    let statuses: Vec<&str> = results
        .iter()
        .map(|x| x["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["found", "found", "invalid_id", "not_found", "found"]
    );
    for x in results.iter().filter(|x| x["status"] == "found") {
        let keys: Vec<&String> = x["record"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["hukou_status", "name"]);
    }
    for id in &ids {
        assert!(!r.text.contains(id.as_str()), "a full ID left the gateway");
    }
    // One event per resident, consecutive, in one group commit.
    let first = r.body["audit"]["seq"].as_u64().unwrap();
    let last = r.body["audit"]["last_seq"].as_u64().unwrap();
    assert_eq!(last - first, 4);
    let store = gw.store().await;
    let events: Vec<_> = (first..=last)
        .map(|s| store.get(s).unwrap().unwrap().body)
        .collect();
    let pseudonym = |id: &str| {
        gw.gw
            .pseudonyms
            .pseudonym(&tongban::domain::ResidentId::parse(id).unwrap())
    };
    assert_eq!(events[0].resident, Some(pseudonym(&ids[0])));
    assert_eq!(texts(&events[0].fields), ["hukou_status", "name"]);
    assert_eq!(events[2].resident, None);
    assert_eq!(events[2].status, 400);
    assert_eq!(events[3].status, 404);
    assert!(events[3].fields.is_empty());
    assert!(
        events
            .iter()
            .all(|e| e.operation == "batch" && e.request_id == r.request_id())
    );

    // The disclosure report of a resident in the batch lists it.
    let officer = gw.token("shujuju", "officer-1", &["privacy_officer"]);
    let d = gw
        .get(
            &format!("/v1/audit/residents/{}/disclosures", ids[1]),
            Some(&officer),
            None,
            None,
        )
        .await;
    assert_eq!(d.body["count"], 1);
    assert_eq!(d.body["disclosures"][0]["operation"], "batch");
}

#[tokio::test]
async fn batches_are_bounded_by_the_grant_and_the_gateway() {
    let gw = TestGateway::start_with(|c, _| c.limits.max_batch_ids = 600).await;
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    let over_grant: Vec<&str> = (0..501).map(|_| id.as_str()).collect();
    let r = batch(
        &gw,
        "renshe",
        "pension_clerk",
        "pension_eligibility",
        json!({"resident_ids": over_grant}),
    )
    .await;
    assert_eq!(
        r.problem_type(),
        Some("/problems/batch-too-large"),
        "{}",
        r.text
    );
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("renshe-pension-alive")
    );
    let over_gateway: Vec<&str> = (0..601).map(|_| id.as_str()).collect();
    let r = batch(
        &gw,
        "renshe",
        "pension_clerk",
        "pension_eligibility",
        json!({"resident_ids": over_gateway}),
    )
    .await;
    assert!(
        r.body["detail"].as_str().unwrap().contains("the gateway"),
        "{}",
        r.text
    );
    let r = batch(
        &gw,
        "renshe",
        "pension_clerk",
        "pension_eligibility",
        json!({"resident_ids": []}),
    )
    .await;
    assert_eq!(r.problem_type(), Some("/problems/batch-too-large"));
    // Not granted: one event for the refusal, nothing disclosed.
    let before = gw.store().await.len();
    let r = batch(
        &gw,
        "minzheng",
        "dibao_reviewer",
        "dibao_review",
        json!({"resident_ids": [id]}),
    )
    .await;
    assert_eq!(r.problem_type(), Some("/problems/operation-not-granted"));
    assert_eq!(gw.store().await.len(), before + 1);
}

#[tokio::test]
async fn a_batch_beyond_what_is_left_of_the_grant_quota_gets_429() {
    let gw = TestGateway::start_with(|config, _| {
        let file = config.policies_dir.join("grants/renshe-pension.toml");
        let text = std::fs::read_to_string(&file).unwrap();
        let limited = text.replace("quota = \"600/min\"", "quota = \"5/min\"");
        assert_ne!(text, limited);
        std::fs::write(file, limited).unwrap();
    })
    .await;
    let ids = gw.sample_ids("gongan.hukou", 3);
    let three = json!({ "resident_ids": ids });
    let r = batch(
        &gw,
        "renshe",
        "pension_clerk",
        "pension_eligibility",
        three.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // Two are left of five: three more are refused whole, with no record.
    let r = batch(&gw, "renshe", "pension_clerk", "pension_eligibility", three).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    assert!(r.headers.contains_key("retry-after"));
    assert!(r.body.get("results").is_none(), "{}", r.text);
    assert!(r.text.contains("renshe-pension-alive"), "{}", r.text);
    // It says the batch is too large for what is left, not that the quota is gone.
    assert!(
        r.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("cannot cover 3 residents")),
        "{}",
        r.text
    );
    // The two that are left still pass.
    let two = json!({ "resident_ids": &ids[..2] });
    let r = batch(&gw, "renshe", "pension_clerk", "pension_eligibility", two).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}
