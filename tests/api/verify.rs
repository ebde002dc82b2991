//! Verification (数据核验): yes or no, never the value.

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestGateway, TestResponse, texts};

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
    // The grant's own question of the verify-only field; free ones of the
    // fields it discloses anyway.
    let body = json!({"conditions": [
        {"field": "contribution_base", "op": ">=", "value": 3000},
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
    let insured = ["参保缴费", "暂停缴费"].contains(&record["insured_status"].as_str().unwrap());
    assert_eq!(
        matches,
        [base >= 3000, insured, !record["monthly_pension"].is_null()]
    );
    assert!(r.body.get("record").is_none());
    // Not in the answer (its audit reference aside: a random request id
    // may hold any run of digits).
    let mut answer = r.body.clone();
    answer.as_object_mut().unwrap().remove("audit");
    assert!(
        !answer.to_string().contains(&base.to_string()),
        "the value left the gateway: {}",
        r.text
    );
    assert!(!r.text.contains(record["employer"].as_str().unwrap()));

    // Audited with the fields checked and the outcomes, not the values.
    let e = gw.store().await.get(r.audit_seq()).unwrap().unwrap().body;
    assert_eq!(e.operation, "verify");
    assert_eq!(
        texts(&e.fields),
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

/// The bisection attack: sixteen `>=` conditions a request on a verify-only
/// field used to recover a 社保 contribution base to the yuan in four
/// requests. Now only the grant's own predicate may be asked of it, once per
/// request, and only five times per resident and day: the attacker learns
/// whether the base is at least 3000, and nothing else.
#[tokio::test]
async fn bisecting_a_verify_only_value_recovers_nothing_beyond_the_grants_predicate() {
    let gw = TestGateway::start().await;
    let (id, _) = employed(&gw);
    let ask = |conditions: Value| {
        verify(
            &gw,
            ("minzheng", "dibao_reviewer"),
            ("renshe.shebao", &id),
            ("dibao_review", "MZ-2026-1"),
            json!({ "conditions": conditions }),
        )
    };
    // Another threshold than the grant's, or the grant's with another op.
    for probe in [
        json!([{"field": "contribution_base", "op": ">=", "value": 8000}]),
        json!([{"field": "contribution_base", "op": "<=", "value": 3000}]),
        json!([{"field": "contribution_base", "op": "in", "value": [19400, 19401]}]),
        json!([{"field": "contribution_base", "op": "exists"}]),
    ] {
        let r = ask(probe.clone()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{probe}: {}", r.text);
        assert_eq!(
            r.problem_type(),
            Some("/problems/predicate-not-granted"),
            "{probe}"
        );
        assert!(r.body.get("results").is_none());
    }
    // Sixteen conditions on the same field, the granted one among them.
    let many: Vec<Value> = (0..16)
        .map(|i| json!({"field": "contribution_base", "op": ">=", "value": 3000 + i * 1000}))
        .collect();
    let r = ask(json!(many)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.problem_type(), Some("/problems/invalid-condition"));

    // The grant's own question: five times a day, then 429.
    let granted = json!([{"field": "contribution_base", "op": ">=", "value": 3000}]);
    for _ in 0..5 {
        let r = ask(granted.clone()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let r = ask(granted.clone()).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    assert_eq!(r.problem_type(), Some("/problems/verify-budget-exhausted"));
    assert!(r.headers.contains_key("retry-after"));

    // Every verify event records the predicates asked, never a value held.
    let e = gw
        .store()
        .await
        .get(r.audit_seq() - 1)
        .unwrap()
        .unwrap()
        .body;
    assert_eq!(e.operation, "verify");
    let detail: Value = serde_json::from_str(e.detail.as_deref().unwrap()).unwrap();
    assert_eq!(detail["predicates"], granted, "{detail}");

    // The budget is the day's, and a restart does not reset it.
    let (home, config) = crate::audit_review::stop_and_take_home(gw).await;
    let gw = TestGateway::start_on(
        home,
        config,
        tongban::clock::Clock::manual(time::OffsetDateTime::now_utc()),
    )
    .await;
    let r = verify(
        &gw,
        ("minzheng", "dibao_reviewer"),
        ("renshe.shebao", &id),
        ("dibao_review", "MZ-2026-1"),
        json!({ "conditions": granted }),
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    gw.clock.advance(std::time::Duration::from_secs(86_400));
    let r = verify(
        &gw,
        ("minzheng", "dibao_reviewer"),
        ("renshe.shebao", &id),
        ("dibao_review", "MZ-2026-1"),
        json!({ "conditions": granted }),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "the next day: {}", r.text);
}

/// A masked field cannot be verified: its raw value is exactly what the
/// mask hides (`in` lists of candidates would recover it).
#[tokio::test]
async fn a_masked_field_cannot_be_verified() {
    let gw = TestGateway::start_with(|c, _| {
        let file = c.policies_dir.join("grants/minzheng-dibao.toml");
        let text = std::fs::read_to_string(&file).unwrap();
        let text = text.replacen(
            "operations = [\"lookup\"]",
            "operations = [\"lookup\", \"verify\"]",
            1,
        );
        std::fs::write(file, text).unwrap();
    })
    .await;
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    let r = verify(
        &gw,
        ("minzheng", "dibao_reviewer"),
        ("gongan.hukou", &id),
        ("dibao_review", "MZ-2026-1"),
        json!({"conditions": [{"field": "id_number", "op": "in", "value": [id.clone(), "11010519491231002X"]}]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(
        r.problem_type(),
        Some("/problems/field-masked-not-verifiable")
    );
    assert!(r.body.get("results").is_none());
}
