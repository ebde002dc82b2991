//! A case's materials (免提交清单): everything obtained under one case
//! reference, for the department whose case it is and the privacy officers.

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestGateway, TestResponse};

const WENHAO: &str = "民低保〔2026〕123号";

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

async fn hukou(gw: &TestGateway, (dept, role, purpose): (&str, &str, &str), id: &str, case: &str) {
    let tok = gw.token(dept, "clerk-1", &[role]);
    let r = gw
        .get(
            &format!("/v1/datasets/gongan.hukou/records/{id}"),
            Some(&tok),
            Some(purpose),
            Some(&enc(case)),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

async fn shebao_verify(gw: &TestGateway, id: &str, case: &str) {
    let tok = gw.token("minzheng", "clerk-2", &["dibao_reviewer"]);
    let r = gw
        .client()
        .request_with_body(
            "POST",
            &format!("/v1/datasets/renshe.shebao/records/{id}/verify"),
            &[
                ("authorization".to_owned(), format!("Bearer {tok}")),
                ("x-purpose".to_owned(), "dibao_review".to_owned()),
                ("x-case-ref".to_owned(), enc(case)),
                ("content-type".to_owned(), "application/json".to_owned()),
            ],
            Bytes::from(
                json!({"conditions": [{"field": "insured_status", "op": "exists"}]}).to_string(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

async fn case(gw: &TestGateway, token: &str, query: &str) -> TestResponse {
    gw.get(&format!("/v1/cases?{query}"), Some(token), None, None)
        .await
}

const DIBAO: (&str, &str, &str) = ("minzheng", "dibao_reviewer", "dibao_review");
const ENROLL: (&str, &str, &str) = ("yibao", "enrollment_clerk", "medical_insurance_enrollment");

#[tokio::test]
async fn a_case_lists_exactly_what_its_department_obtained_under_it() {
    let gw = TestGateway::start().await;
    let ids = gw.sample_ids("gongan.hukou", 3);
    let shebao = gw.sample_ids("renshe.shebao", 1)[0].clone();
    hukou(&gw, DIBAO, &ids[0], "MZ-2026-7").await;
    shebao_verify(&gw, &shebao, "MZ-2026-7").await;
    hukou(&gw, DIBAO, &ids[1], "MZ-2026-70").await;
    hukou(&gw, DIBAO, &ids[2], WENHAO).await;
    // Another department's case under the same reference.
    hukou(&gw, ENROLL, &ids[1], "MZ-2026-7").await;

    let clerk = gw.token("minzheng", "clerk-9", &["dibao_reviewer"]);
    let r = case(&gw, &clerk, "case_ref=MZ-2026-7").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["consumer"], "minzheng");
    assert_eq!(r.body["count"], 2, "{}", r.text);
    let m = r.body["materials"].as_array().unwrap();
    assert_eq!(m[0]["dataset"], "gongan.hukou");
    assert_eq!(m[0]["owner"], "gongan");
    assert!(m[0]["owner_name"].as_str().unwrap().contains("公安局"));
    assert_eq!(m[0]["operation"], "lookup");
    assert_eq!(m[0]["subject"], "clerk-1");
    assert!(
        m[0]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["title"].as_str().unwrap().starts_with("姓名")),
        "{}",
        r.text
    );
    assert_eq!(m[1]["dataset"], "renshe.shebao");
    assert_eq!(m[1]["operation"], "verify");
    for id in &ids {
        assert!(
            !r.text.contains(id.as_str()),
            "a resident ID in a case list"
        );
    }
    // Audited, with its case.
    let e = gw.store().await.get(r.audit_seq()).unwrap().unwrap().body;
    assert_eq!(e.operation, "audit.case");
    assert_eq!(e.case_ref.as_deref(), Some("MZ-2026-7"));

    // A 文号, percent-encoded in the query.
    let r = case(&gw, &clerk, &format!("case_ref={}", enc(WENHAO))).await;
    assert_eq!(r.body["count"], 1, "{}", r.text);
    assert_eq!(r.body["case_ref"], WENHAO);

    // Another department's case: refused to a department, open to an officer.
    let r = case(&gw, &clerk, "case_ref=MZ-2026-7&consumer=yibao").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(r.problem_type(), Some("/problems/other-departments-case"));
    let officer = gw.token("shujuju", "officer-1", &["privacy_officer"]);
    let r = case(&gw, &officer, "case_ref=MZ-2026-7&consumer=yibao").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["count"], 1);
    let yibao = gw.token("yibao", "clerk-4", &["enrollment_clerk"]);
    let r = case(&gw, &yibao, "case_ref=MZ-2026-7").await;
    assert_eq!(r.body["count"], 1, "{}", r.text);

    // As a spreadsheet.
    let r = case(&gw, &clerk, "case_ref=MZ-2026-7&format=csv").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.starts_with('\u{feff}'));
    assert!(r.text.contains("提供部门 Owner"));
    assert_eq!(r.text.lines().count(), 3, "{}", r.text);

    // The officers' search filters by case reference (with its department).
    let r = gw
        .get(
            "/v1/audit/events?case_ref=MZ-2026-7&consumer=minzheng",
            Some(&officer),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let events = r.body["events"].as_array().unwrap();
    assert!(events.iter().all(|e| e["case_ref"] == "MZ-2026-7"));
    // The two queries, and the case's own views (each one audited with it).
    let queries: Vec<&Value> = events.iter().filter(|e| e["kind"] == "query").collect();
    assert_eq!(queries.len(), 2, "{}", r.text);
    assert!(events.iter().any(|e| e["operation"] == "audit.case"));
    let r = gw
        .get(
            "/v1/audit/events?case_ref=MZ-2026-7",
            Some(&officer),
            None,
            None,
        )
        .await;
    let all: Vec<&Value> = r.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "query")
        .collect();
    assert_eq!(all.len(), 3, "{}", r.text);
}

#[tokio::test]
async fn a_case_needs_its_reference_and_a_token() {
    let gw = TestGateway::start().await;
    let clerk = gw.token("minzheng", "clerk-9", &["dibao_reviewer"]);
    let r = case(&gw, &clerk, "").await;
    assert_eq!(
        r.problem_type(),
        Some("/problems/invalid-query"),
        "{}",
        r.text
    );
    let r = case(&gw, &clerk, "case_ref=a%20b").await;
    assert_eq!(
        r.problem_type(),
        Some("/problems/invalid-case-ref"),
        "{}",
        r.text
    );
    let r = gw.get("/v1/cases?case_ref=MZ-1", None, None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = case(&gw, &clerk, "case_ref=MZ-1").await;
    assert_eq!(r.body["count"], 0, "{}", r.text);
}
