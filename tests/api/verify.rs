//! Verification (数据核验): yes or no, never the value.

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestGateway, TestResponse};

/// `caller` is (department, role); `record` is (dataset, resident ID); `why` is (purpose, case reference).
async fn verify(
    gw: &TestGateway,
    caller: (&str, &str),
    record: (&str, &str),
    why: (&str, &str),
    body: Value,
) -> TestResponse {
    let ((dept, role), (dataset, id), (purpose, case)) = (caller, record, why);
    let tok = gw.token(dept, "clerk-1", &[role]);
    let headers = vec![
        ("authorization".to_owned(), format!("Bearer {tok}")),
        ("x-purpose".to_owned(), purpose.to_owned()),
        ("x-case-ref".to_owned(), case.to_owned()),
        ("content-type".to_owned(), "application/json".to_owned()),
    ];
    gw.client()
        .request_with_body(
            "POST",
            &format!("/v1/datasets/{dataset}/records/{id}/verify"),
            &headers,
            Bytes::from(body.to_string()),
        )
        .await
        .unwrap()
}

/// A resident whose 社保 record has a contribution base.
fn employed(gw: &TestGateway) -> (String, Value) {
    let text = std::fs::read_to_string(gw.home.path().join("samples/renshe.shebao.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["contribution_base"].is_number())
        .map(|r| (r["id_number"].as_str().unwrap().to_owned(), r))
        .unwrap()
}

#[tokio::test]
async fn a_verify_only_field_is_checked_without_disclosing_it() {
    let gw = TestGateway::start().await;
    let (id, record) = employed(&gw);
    let base = record["contribution_base"].as_i64().unwrap();
    let body = json!({"conditions": [
        {"field": "contribution_base", "op": ">=", "value": base},
        {"field": "contribution_base", "op": "<=", "value": base - 1},
        {"field": "insured_status", "op": "in", "value": ["参保缴费", "暂停缴费"]},
        {"field": "monthly_pension", "op": "exists"},
    ]});
    let r = verify(
        &gw,
        ("minzheng", "dibao_reviewer"),
        ("renshe.shebao", &id),
        ("dibao_review", "MZ-2026-1"),
        body,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let matches: Vec<bool> = r.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["match"].as_bool().unwrap())
        .collect();
    assert_eq!(matches, [true, false, true, false]);
    assert_eq!(r.body["match"], false);
    assert!(r.body.get("record").is_none());
    assert!(
        !r.text.contains(&base.to_string()),
        "the value left the gateway: {}",
        r.text
    );
    assert!(!r.text.contains(record["employer"].as_str().unwrap()));

    // Audited with the fields checked and the outcomes, not the values.
    let e = gw.gw.audit_store.get(r.audit_seq()).unwrap().unwrap().body;
    assert_eq!(e.operation, "verify");
    assert_eq!(
        e.fields,
        ["contribution_base", "insured_status", "monthly_pension"]
    );
    let detail = e.detail.unwrap();
    assert!(
        detail.contains("\"match\":true") && !detail.contains(&base.to_string()),
        "{detail}"
    );

    // And it cannot be looked up.
    let tok = gw.token("minzheng", "clerk-1", &["dibao_reviewer"]);
    let r = gw
        .get(
            &format!("/v1/datasets/renshe.shebao/records/{id}?fields=contribution_base"),
            Some(&tok),
            Some("dibao_review"),
            Some("MZ-1"),
        )
        .await;
    assert_eq!(r.problem_type(), Some("/problems/field-verify-only"));
}

#[tokio::test]
async fn verification_is_refused_where_no_grant_allows_it() {
    let gw = TestGateway::start().await;
    let (id, _) = employed(&gw);
    let hukou_id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    let one = json!({"conditions": [{"field": "name", "op": "equals", "value": "张三"}]});
    // yibao may look up 户籍 but not verify against it.
    let r = verify(
        &gw,
        ("yibao", "enrollment_clerk"),
        ("gongan.hukou", &hukou_id),
        ("medical_insurance_enrollment", "YB-1"),
        one,
    )
    .await;
    assert_eq!(
        r.problem_type(),
        Some("/problems/operation-not-granted"),
        "{}",
        r.text
    );
    // A field outside the grant, one outside the dataset, a value of the wrong type, no conditions.
    let cases = [
        (
            json!({"conditions": [{"field": "employer", "op": "exists"}]}),
            "/problems/field-not-granted",
        ),
        (
            json!({"conditions": [{"field": "salary", "op": "exists"}]}),
            "/problems/unknown-field",
        ),
        (
            json!({"conditions": [{"field": "contribution_base", "op": ">=", "value": "lots"}]}),
            "/problems/invalid-condition",
        ),
        (
            json!({"conditions": [{"field": "insured_status", "op": ">=", "value": "a"}]}),
            "/problems/invalid-condition",
        ),
        (json!({"conditions": []}), "/problems/invalid-condition"),
        (
            json!({"conditions": [{"field": "insured_status", "op": "like", "value": "a"}]}),
            "/problems/invalid-body",
        ),
        (
            json!({"conditions": [{"field": "insured_status", "op": "exists"}], "extra": 1}),
            "/problems/invalid-body",
        ),
    ];
    for (body, problem) in cases {
        let r = verify(
            &gw,
            ("minzheng", "dibao_reviewer"),
            ("renshe.shebao", &id),
            ("dibao_review", "MZ-1"),
            body.clone(),
        )
        .await;
        assert_eq!(r.problem_type(), Some(problem), "{body}: {}", r.text);
    }
    let many: Vec<Value> = (0..17)
        .map(|_| json!({"field": "insured_status", "op": "exists"}))
        .collect();
    let r = verify(
        &gw,
        ("minzheng", "dibao_reviewer"),
        ("renshe.shebao", &id),
        ("dibao_review", "MZ-1"),
        json!({"conditions": many}),
    )
    .await;
    assert_eq!(r.problem_type(), Some("/problems/invalid-condition"));
}

#[tokio::test]
async fn school_admission_checks_home_ownership_in_season() {
    let in_season = time::macros::datetime!(2026-05-01 10:00 +08:00);
    let gw = TestGateway::start_at(|_, _| {}, tongban::clock::Clock::manual(in_season)).await;
    let id = gw.sample_ids("ziranziyuan.budongchan", 1)[0].clone();
    let body = json!({"conditions": [{"field": "property_count", "op": ">=", "value": 1}]});
    let r = verify(
        &gw,
        ("jiaoyu", "admissions_clerk"),
        ("ziranziyuan.budongchan", &id),
        ("school_admission", "JY-2026-0042"),
        body.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = verify(
        &gw,
        ("jiaoyu", "admissions_clerk"),
        ("ziranziyuan.budongchan", &id),
        ("school_admission", "MZ-2026-0042"),
        body,
    )
    .await;
    assert_eq!(r.problem_type(), Some("/problems/case-ref-format"));
}
