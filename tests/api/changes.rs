//! What the console's people need of the API: a change says why, a save
//! that changes nothing is refused, a deny-list entry can be lifted, the
//! search can leave out the officers' own reads, and the disclosure report
//! says what kind of use each was.

use hyper::StatusCode;
use serde_json::{Value, json};

use crate::admin::{call, get_grant};
use crate::audit_review::officer_get;
use crate::helpers::TestGateway;
use crate::proof::lookup;

const GRANT: &str = "yibao-enroll-hukou";

#[tokio::test]
async fn a_change_says_why_and_a_save_that_changes_nothing_is_refused() {
    let gw = TestGateway::start().await;
    let (mut grant, etag) = get_grant(&gw, GRANT).await;
    grant["title"] = json!("医保参保登记核验户籍（修订）");
    grant["reason"] = json!("按 2026 年参保登记规程调整名称");
    let put = |body: String, etag: String| {
        let gw = &gw;
        async move {
            call(
                gw,
                "PUT",
                &format!("/v1/admin/grants/{GRANT}"),
                Some(("application/json", body)),
                &[("if-match", etag.as_str())],
            )
            .await
        }
    };
    let r = put(grant.to_string(), etag).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["grant"]["version"], 2);
    assert!(r.body["grant"].get("reason").is_none(), "{}", r.text);
    let e = gw.store().await.get(r.audit_seq()).unwrap().unwrap().body;
    let detail: Value = serde_json::from_str(e.detail.as_deref().unwrap()).unwrap();
    assert_eq!(detail["reason"], "按 2026 年参保登记规程调整名称");
    let h = call(
        &gw,
        "GET",
        &format!("/v1/admin/history?id={GRANT}"),
        None,
        &[],
    )
    .await;
    assert_eq!(
        h.body["changes"][0]["reason"], "按 2026 年参保登记规程调整名称",
        "{}",
        h.text
    );

    // The same again: nothing saved, no version made.
    let (same, etag) = get_grant(&gw, GRANT).await;
    let r = put(same.to_string(), etag.clone()).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.problem_type(), Some("/problems/no-change"));
    let (after, etag_after) = get_grant(&gw, GRANT).await;
    assert_eq!(after["version"], 2);
    assert_eq!(etag_after, etag);

    // A reason too long, or not text, is refused; in TOML it is a top-level key.
    let mut long = same.clone();
    long["title"] = json!("另一个名称");
    long["reason"] = json!("长".repeat(501));
    assert_eq!(
        put(long.to_string(), etag.clone()).await.status,
        StatusCode::BAD_REQUEST
    );
    long["reason"] = json!(7);
    assert_eq!(
        put(long.to_string(), etag.clone()).await.status,
        StatusCode::BAD_REQUEST
    );
    reasons_in_toml_and_in_the_query(&gw).await;
}

/// A TOML body names its reason as a top-level key; a revert and a delete
/// name theirs in the query.
async fn reasons_in_toml_and_in_the_query(gw: &TestGateway) {
    let toml = r#"reason = "TOML 的理由"
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
        gw,
        "PUT",
        "/v1/admin/grants/yibao-enroll-hunyin",
        Some(("application/toml", toml.into())),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let h = call(
        gw,
        "GET",
        "/v1/admin/history?id=yibao-enroll-hunyin",
        None,
        &[],
    )
    .await;
    assert_eq!(h.body["changes"][0]["reason"], "TOML 的理由", "{}", h.text);

    // A delete and a revert say why in the query.
    let r = call(
        gw,
        "POST",
        &format!("/v1/admin/grants/{GRANT}/revert?to=2&reason=%E5%9B%9E%E9%80%80"),
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let (_, etag) = get_grant(gw, GRANT).await;
    let r = call(
        gw,
        "DELETE",
        &format!("/v1/admin/grants/{GRANT}?reason=%E5%81%9C%E7%94%A8"),
        None,
        &[("if-match", etag.as_str())],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let h = call(
        gw,
        "GET",
        &format!("/v1/admin/history?id={GRANT}"),
        None,
        &[],
    )
    .await;
    let reasons: Vec<&str> = h.body["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["reason"].as_str())
        .collect();
    assert_eq!(reasons[..2], ["停用", "回退"], "{}", h.text);
}

#[tokio::test]
async fn a_deny_list_entry_is_lifted_audited_and_the_token_served_again() {
    let gw = TestGateway::start().await;
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    assert_eq!(lookup(&gw, &id, None).await.status, StatusCode::OK);
    let r = call(
        &gw,
        "POST",
        "/v1/admin/revoked-tokens",
        Some((
            "application/json",
            json!({"sub": "clerk-007", "reason": "令牌泄露"}).to_string(),
        )),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["id"], "sub:clerk-007");
    assert_eq!(
        lookup(&gw, &id, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let list = call(&gw, "GET", "/v1/admin/revoked-tokens", None, &[]).await;
    assert_eq!(list.body["entries"][0]["id"], "sub:clerk-007");

    // Only an administrator; then lifted with a reason, in force at once.
    let officer = gw.token("shujuju", "officer-1", &["privacy_officer"]);
    let r = gw
        .client()
        .request(
            "DELETE",
            "/v1/admin/revoked-tokens/sub:clerk-007",
            &[("authorization".to_owned(), format!("Bearer {officer}"))],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = call(
        &gw,
        "DELETE",
        "/v1/admin/revoked-tokens/sub:clerk-007",
        Some((
            "application/json",
            json!({"reason": "已更换密钥，误报"}).to_string(),
        )),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let e = gw.store().await.get(r.audit_seq()).unwrap().unwrap().body;
    assert_eq!(e.operation, "policy.lift_revoked_token");
    assert!(
        e.detail.as_deref().unwrap().contains("已更换密钥"),
        "{:?}",
        e.detail
    );
    assert_eq!(lookup(&gw, &id, None).await.status, StatusCode::OK);
    let r = call(
        &gw,
        "DELETE",
        "/v1/admin/revoked-tokens/sub:clerk-007",
        None,
        &[],
    )
    .await;
    assert_eq!(
        r.problem_type(),
        Some("/problems/revoked-token-not-found"),
        "{}",
        r.text
    );
    // Lifted for good: a restart does not bring it back.
    let (home, config) = crate::audit_review::stop_and_take_home(gw).await;
    let gw = TestGateway::start_on(home, config, tongban::clock::Clock::system()).await;
    assert_eq!(lookup(&gw, &id, None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_search_leaves_out_the_officers_own_reads_and_finds_a_resident_by_pseudonym() {
    let gw = TestGateway::start().await;
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    assert_eq!(lookup(&gw, &id, None).await.status, StatusCode::OK);
    // An officer's read, then the search that shows it.
    officer_get(&gw, "/v1/audit/stats").await;
    let all = officer_get(&gw, "/v1/audit/events").await;
    let kinds = |r: &crate::helpers::TestResponse| -> Vec<String> {
        r.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(
        kinds(&all).iter().any(|k| k == "audit_review"),
        "{}",
        all.text
    );
    let queries = officer_get(&gw, "/v1/audit/events?kind=query").await;
    assert!(
        !kinds(&queries).is_empty() && kinds(&queries).iter().all(|k| k == "query"),
        "{}",
        queries.text
    );
    let two = officer_get(&gw, "/v1/audit/events?kind=query,audit_review").await;
    assert!(kinds(&two).len() > kinds(&queries).len());
    assert_eq!(
        officer_get(&gw, "/v1/audit/events?kind=reads").await.status,
        StatusCode::BAD_REQUEST
    );

    // By pseudonym, as events show it: the same events, and no ID in the link.
    let by_id = officer_get(&gw, &format!("/v1/audit/events?resident={id}&kind=query")).await;
    let pseudonym = by_id.body["events"][0]["resident"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        by_id.body["pseudonym"],
        pseudonym.as_str(),
        "the search names it for a link"
    );
    let by_pseudonym = officer_get(
        &gw,
        &format!("/v1/audit/events?pseudonym={pseudonym}&kind=query"),
    )
    .await;
    assert_eq!(by_pseudonym.body["events"], by_id.body["events"]);
    for bad in [
        format!("pseudonym={pseudonym}&resident={id}"),
        "pseudonym=xyz".into(),
    ] {
        assert_eq!(
            officer_get(&gw, &format!("/v1/audit/events?{bad}"))
                .await
                .status,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn the_disclosure_report_says_a_verify_told_only_whether_a_condition_holds() {
    let gw = TestGateway::start().await;
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    assert_eq!(lookup(&gw, &id, None).await.status, StatusCode::OK);
    let r = officer_get(&gw, &format!("/v1/audit/residents/{id}/disclosures")).await;
    let d = &r.body["disclosures"][0];
    assert_eq!(d["operation"], "lookup", "{}", r.text);
    assert!(d["use_zh"].as_str().unwrap().starts_with("查询"), "{d}");
    assert_eq!(
        d["purpose_title"], "最低生活保障审核",
        "purposes are shown by title: {d}"
    );
    assert!(
        r.body["issued_by"].as_str().unwrap().starts_with("数据局"),
        "{}",
        r.text
    );
    let csv = officer_get(
        &gw,
        &format!("/v1/audit/residents/{id}/disclosures?format=csv"),
    )
    .await;
    assert!(
        csv.text.contains("使用方式 Kind of use") && csv.text.contains("查询：提供了下列信息"),
        "{}",
        csv.text
    );
}

#[tokio::test]
async fn the_report_names_the_issuing_body_the_configuration_names() {
    let gw = TestGateway::start_with(|c, _| {
        c.residents.report_issuer = Some("某某市大数据中心".into());
    })
    .await;
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    let r = officer_get(&gw, &format!("/v1/audit/residents/{id}/disclosures")).await;
    assert_eq!(r.body["issued_by"], "某某市大数据中心", "{}", r.text);
}

#[tokio::test]
async fn a_grant_read_as_toml_is_sent_back_as_it_was_read() {
    let gw = TestGateway::start().await;
    let (_, etag) = get_grant(&gw, GRANT).await;
    let toml = call(
        &gw,
        "GET",
        &format!("/v1/admin/grants/{GRANT}"),
        None,
        &[("accept", "application/toml")],
    )
    .await;
    assert!(toml.text.starts_with("[[grant]]"), "{}", toml.text);
    let edited = format!(
        "reason = \"改名称\"\n{}",
        toml.text
            .replace("医保参保登记核验户籍", "医保参保登记核验户籍（TOML 修订）")
    );
    let r = call(
        &gw,
        "PUT",
        &format!("/v1/admin/grants/{GRANT}"),
        Some(("application/toml", edited)),
        &[("if-match", etag.as_str())],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.body["grant"]["title"],
        "医保参保登记核验户籍（TOML 修订）"
    );
    let h = call(
        &gw,
        "GET",
        &format!("/v1/admin/history?id={GRANT}"),
        None,
        &[],
    )
    .await;
    assert_eq!(h.body["changes"][0]["reason"], "改名称", "{}", h.text);
}
