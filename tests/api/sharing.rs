//! The sharing workflow: a department files a request, the data authority
//! reviews it, the owner's steward answers it, and an approval becomes a
//! grant (with its provenance) under which a lookup then succeeds.

use std::time::Duration;

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestGateway, TestResponse};

const BUDONGCHAN: &str = "/v1/datasets/ziranziyuan.budongchan/records";

pub(crate) async fn post(gw: &TestGateway, path: &str, token: &str, body: Value) -> TestResponse {
    gw.client()
        .request_with_body(
            "POST",
            path,
            &[
                ("authorization".to_owned(), format!("Bearer {token}")),
                ("content-type".to_owned(), "application/json".to_owned()),
            ],
            Bytes::from(body.to_string()),
        )
        .await
        .unwrap()
}

/// yibao asks for the property count of ziranziyuan's real-estate register.
fn budongchan_request(dataset: &str, field: &str) -> Value {
    json!({
        "use_case": "城乡居民医保参保缴费困难认定：核实名下不动产",
        "grant": {
            "title": "医保缴费困难认定核验不动产",
            "roles": ["enrollment_clerk"],
            "purposes": ["medical_insurance_enrollment"],
            "operations": ["lookup"],
            "basis": "《社会保险法》第二十五条",
            "conditions": {"case_ref_required": true},
            "access": [{"dataset": dataset, "fields": [field]}],
        },
    })
}

/// `r` is a refusal of type `slug`.
pub(crate) fn refused_as(r: &TestResponse, slug: &str) {
    assert_eq!(
        r.problem_type(),
        Some(format!("/problems/{slug}").as_str()),
        "{}",
        r.text
    );
}

struct People {
    yibao: String,
    authority: String,
    steward: String,
    other_steward: String,
}

fn people(gw: &TestGateway) -> People {
    People {
        yibao: gw.token("yibao", "clerk-3", &["enrollment_clerk"]),
        authority: gw.token("shujuju", "reviewer-1", &["data_authority"]),
        steward: gw.token("ziranziyuan", "steward-1", &["data_steward"]),
        other_steward: gw.token("gongan", "steward-2", &["data_steward"]),
    }
}

async fn yibao_lookup(gw: &TestGateway, token: &str, id: &str) -> TestResponse {
    gw.get(
        &format!("{BUDONGCHAN}/{id}"),
        Some(token),
        Some("medical_insurance_enrollment"),
        Some("YB-2026-1"),
    )
    .await
}

#[tokio::test]
async fn a_request_goes_from_filing_to_a_grant_and_a_lookup_then_succeeds() {
    let gw = TestGateway::start().await;
    let p = people(&gw);
    let id = gw.sample_ids("ziranziyuan.budongchan", 1)[0].clone();
    assert_eq!(
        yibao_lookup(&gw, &p.yibao, &id).await.status,
        StatusCode::FORBIDDEN
    );

    let r = post(
        &gw,
        "/v1/sharing/requests",
        &p.yibao,
        budongchan_request("ziranziyuan.budongchan", "property_count"),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["state"], "filed");
    assert_eq!(r.body["owner"], "ziranziyuan");
    let req = r.body["id"].as_str().unwrap().to_owned();
    let review = format!("/v1/sharing/requests/{req}/review");
    let answer = format!("/v1/sharing/requests/{req}/answer");

    // Only the data authority reviews; the owner cannot answer before it.
    let r = post(&gw, &review, &p.steward, json!({"decision": "approve"})).await;
    refused_as(&r, "sharing-not-yours");
    let r = post(&gw, &answer, &p.steward, json!({"decision": "approve"})).await;
    refused_as(&r, "sharing-request-state");
    let r = post(
        &gw,
        &review,
        &p.authority,
        json!({"decision": "approve", "reason": "符合共享目录"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.body["state"], "reviewed",
        "a conditional request waits for the owner"
    );
    assert!(r.body["answer_due"].is_string());
    assert_eq!(
        yibao_lookup(&gw, &p.yibao, &id).await.status,
        StatusCode::FORBIDDEN
    );

    // A steward of another department cannot answer; the owner's can.
    let r = post(
        &gw,
        &answer,
        &p.other_steward,
        json!({"decision": "approve"}),
    )
    .await;
    refused_as(&r, "sharing-not-yours");
    let r = post(
        &gw,
        &answer,
        &p.steward,
        json!({"decision": "approve", "fields": ["name"]}),
    )
    .await;
    refused_as(&r, "invalid-sharing-decision");
    let r = post(&gw, &answer, &p.steward, json!({"decision": "approve"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let grant = r.body["grant_id"].as_str().unwrap().to_owned();
    assert_eq!(r.body["request"]["state"], "approved");

    // The grant is in force, with its provenance; the lookup succeeds.
    let ok = yibao_lookup(&gw, &p.yibao, &id).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert!(
        ok.body["record"].get("property_count").is_some(),
        "{}",
        ok.text
    );
    the_grant_carries_its_provenance(&gw, &grant, &req).await;
    // A decided request takes no second answer.
    let r = post(
        &gw,
        &answer,
        &p.steward,
        json!({"decision": "refuse", "reason": "晚了"}),
    )
    .await;
    refused_as(&r, "sharing-request-state");

    each_side_sees_its_share(&gw, &p).await;
}

#[tokio::test]
async fn refusals_need_a_reason_returns_go_back_and_unconditional_or_unshared_data_take_their_own_way()
 {
    let gw = TestGateway::start().await;
    let p = people(&gw);
    let file = |dataset: &'static str, field: &'static str| {
        let (gw, tok) = (&gw, p.yibao.clone());
        async move {
            post(
                gw,
                "/v1/sharing/requests",
                &tok,
                budongchan_request(dataset, field),
            )
            .await
        }
    };
    // A refusal needs a reason.
    let r = file("ziranziyuan.budongchan", "property_count").await;
    let review = format!(
        "/v1/sharing/requests/{}/review",
        r.body["id"].as_str().unwrap()
    );
    let r = post(&gw, &review, &p.authority, json!({"decision": "refuse"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = post(
        &gw,
        &review,
        &p.authority,
        json!({"decision": "refuse", "reason": "用途与数据不相称"}),
    )
    .await;
    assert_eq!(r.body["state"], "refused", "{}", r.text);
    // A return for changes.
    let r = file("ziranziyuan.budongchan", "property_count").await;
    let review = format!(
        "/v1/sharing/requests/{}/review",
        r.body["id"].as_str().unwrap()
    );
    let r = post(
        &gw,
        &review,
        &p.authority,
        json!({"decision": "return", "reason": "请补充办件编号规则"}),
    )
    .await;
    assert_eq!(r.body["state"], "returned", "{}", r.text);
    // Unconditional data: the review alone authorizes.
    let r = file("renshe.zhiye_zige", "certificate_name").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["class"], "unconditional");
    let review = format!(
        "/v1/sharing/requests/{}/review",
        r.body["id"].as_str().unwrap()
    );
    let r = post(&gw, &review, &p.authority, json!({"decision": "approve"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["request"]["state"], "approved", "{}", r.text);
    // 不予共享: refused at filing.
    let r = file("weijian.bingli", "diagnoses").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(r.problem_type(), Some("/problems/dataset-not-shared"));
    // A grant that would not be valid is refused at filing, naming why.
    let r = file("ziranziyuan.budongchan", "no_such_field").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("no_such_field"), "{}", r.text);
}

/// The approved grant names its request and the people behind it; an
/// administrator's edit keeps that, and cannot forge it.
async fn the_grant_carries_its_provenance(gw: &TestGateway, grant: &str, req: &str) {
    let admin = gw.token("shujuju", "admin-1", &["policy_admin"]);
    let g = gw
        .get(
            &format!("/v1/admin/grants/{grant}"),
            Some(&admin),
            None,
            None,
        )
        .await;
    let prov = &g.body["grant"]["provenance"];
    assert_eq!(prov["request"], req, "{}", g.text);
    assert_eq!(prov["filed_by"], "yibao/clerk-3");
    assert_eq!(prov["reviewed_by"], "shujuju/reviewer-1");
    assert_eq!(prov["approved_by"], "ziranziyuan/steward-1");
    // An administrator's edit keeps the provenance; it cannot be forged.
    let mut edited = g.body["grant"].clone();
    edited["title"] = json!("医保缴费困难认定核验不动产（改）");
    edited["provenance"]["request"] = json!("SR-20260101-0000000000000000");
    let put = gw
        .client()
        .request_with_body(
            "PUT",
            &format!("/v1/admin/grants/{grant}"),
            &[
                ("authorization".to_owned(), format!("Bearer {admin}")),
                ("content-type".to_owned(), "application/json".to_owned()),
                (
                    "if-match".to_owned(),
                    g.body["etag"].as_str().unwrap().to_owned(),
                ),
            ],
            Bytes::from(edited.to_string()),
        )
        .await
        .unwrap();
    assert_eq!(put.status, StatusCode::OK, "{}", put.text);
    let g = gw
        .get(
            &format!("/v1/admin/grants/{grant}"),
            Some(&admin),
            None,
            None,
        )
        .await;
    assert_eq!(g.body["grant"]["provenance"]["request"], req, "{}", g.text);
}

/// Each side sees its own share of the list.
async fn each_side_sees_its_share(gw: &TestGateway, p: &People) {
    for (tok, n) in [
        (&p.yibao, 1),
        (&p.steward, 1),
        (&p.other_steward, 0),
        (&p.authority, 1),
    ] {
        let r = gw.get("/v1/sharing/requests", Some(tok), None, None).await;
        assert_eq!(r.body["count"], n, "{}", r.text);
    }
}

/// A request filed by yibao, reviewed and approved: its id and its grant's.
async fn approved(gw: &TestGateway, p: &People) -> (String, String) {
    let r = post(
        gw,
        "/v1/sharing/requests",
        &p.yibao,
        budongchan_request("ziranziyuan.budongchan", "property_count"),
    )
    .await;
    let req = r.body["id"].as_str().unwrap().to_owned();
    let r = post(
        gw,
        &format!("/v1/sharing/requests/{req}/review"),
        &p.authority,
        json!({"decision": "approve"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = post(
        gw,
        &format!("/v1/sharing/requests/{req}/answer"),
        &p.steward,
        json!({"decision": "approve"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    (req, r.body["grant_id"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn the_owner_revokes_a_grant_on_its_data_and_the_consumer_reads_why() {
    let gw = TestGateway::start().await;
    let p = people(&gw);
    let id = gw.sample_ids("ziranziyuan.budongchan", 1)[0].clone();
    let (req, grant) = approved(&gw, &p).await;
    assert_eq!(
        yibao_lookup(&gw, &p.yibao, &id).await.status,
        StatusCode::OK
    );
    let revoke = format!("/v1/sharing/grants/{grant}/revoke");
    // Another department's steward, or the consumer, cannot; a reason is needed.
    let r = post(&gw, &revoke, &p.other_steward, json!({"reason": "x"})).await;
    refused_as(&r, "sharing-not-yours");
    let r = post(&gw, &revoke, &p.yibao, json!({"reason": "x"})).await;
    refused_as(&r, "sharing-not-yours");
    let r = post(&gw, &revoke, &p.steward, json!({"reason": " "})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    // A steward cannot revoke a grant on another department's data.
    let r = post(
        &gw,
        "/v1/sharing/grants/minzheng-dibao-hukou/revoke",
        &p.steward,
        json!({"reason": "x"}),
    )
    .await;
    refused_as(&r, "sharing-not-yours");
    let r = post(
        &gw,
        &revoke,
        &p.steward,
        json!({"reason": "发现超范围使用"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // Ended at once; the consumer reads why in its request.
    assert_eq!(
        yibao_lookup(&gw, &p.yibao, &id).await.status,
        StatusCode::FORBIDDEN
    );
    let r = gw
        .get("/v1/sharing/requests", Some(&p.yibao), None, None)
        .await;
    let mine = r.body["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == req.as_str())
        .unwrap()
        .clone();
    assert_eq!(mine["state"], "revoked", "{mine}");
    let last = mine["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["reason"], "发现超范围使用");
    assert_eq!(last["by"], "ziranziyuan/steward-1");
}

/// A renewal request naming `grant`, with a new validity end.
fn renewal(grant: &str) -> Value {
    let mut body = budongchan_request("ziranziyuan.budongchan", "property_count");
    body["grant"]["conditions"]["valid_until"] = json!("2030-12-31");
    body["renews"] = json!(grant);
    body
}

/// Files `body` as yibao and has it reviewed: its id.
async fn filed_and_reviewed(gw: &TestGateway, p: &People, body: Value) -> String {
    let r = post(gw, "/v1/sharing/requests", &p.yibao, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let req = r.body["id"].as_str().unwrap().to_owned();
    let r = post(
        gw,
        &format!("/v1/sharing/requests/{req}/review"),
        &p.authority,
        json!({"decision": "approve"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    req
}

#[tokio::test]
async fn a_renewal_replaces_its_grant_and_never_brings_back_a_revoked_one() {
    let gw = TestGateway::start().await;
    let p = people(&gw);
    let id = gw.sample_ids("ziranziyuan.budongchan", 1)[0].clone();
    let (first, grant) = approved(&gw, &p).await;

    // Only the consumer's own grant on the same dataset alone can be renewed.
    let minzheng = gw.token("minzheng", "clerk-1", &["caseworker"]);
    let r = post(&gw, "/v1/sharing/requests", &minzheng, renewal(&grant)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let r = post(
        &gw,
        "/v1/sharing/requests",
        &p.yibao,
        renewal("minzheng-dibao-hukou"),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("renews"), "{}", r.text);

    let req = filed_and_reviewed(&gw, &p, renewal(&grant)).await;
    let r = post(
        &gw,
        &format!("/v1/sharing/requests/{req}/answer"),
        &p.steward,
        json!({"decision": "approve"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["grant_id"], grant.as_str(), "replaced under its id");
    assert_eq!(r.body["request"]["renews"], grant.as_str());
    let g = gw
        .get(
            &format!("/v1/admin/grants/{grant}"),
            Some(&gw.token("shujuju", "admin-1", &["policy_admin"])),
            None,
            None,
        )
        .await;
    assert_eq!(g.status, StatusCode::OK, "{}", g.text);
    let spec = &g.body["grant"];
    assert_eq!(spec["version"], 2, "{}", g.text);
    assert_eq!(spec["conditions"]["valid_until"], "2030-12-31");
    assert_eq!(spec["provenance"]["request"], req.as_str());
    assert_eq!(spec["provenance"]["renews"], first.as_str());
    assert_eq!(
        yibao_lookup(&gw, &p.yibao, &id).await.status,
        StatusCode::OK
    );

    // The request the grant came from before says it was renewed.
    assert_eq!(state_of(&gw, &p, &first).await, "renewed");
    a_renewal_neither_undoes_a_change_nor_brings_back_a_revoked_grant(&gw, &p, &grant, &id).await;
}

/// The state of request `req`, as the consumer reads it.
async fn state_of(gw: &TestGateway, p: &People, req: &str) -> String {
    let r = gw
        .get("/v1/sharing/requests", Some(&p.yibao), None, None)
        .await;
    r.body["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == req)
        .unwrap_or_else(|| panic!("{}", r.text))["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn a_renewal_neither_undoes_a_change_nor_brings_back_a_revoked_grant(
    gw: &TestGateway,
    p: &People,
    grant: &str,
    id: &str,
) {
    // An administrator changes the grant after a renewal is filed: the
    // renewal, approved, would undo that; it is refused, and leaves the queue.
    let stale = filed_and_reviewed(gw, p, renewal(grant)).await;
    let (mut spec, etag) = crate::admin::get_grant(gw, grant).await;
    spec["title"] = json!("医保缴费困难认定核验不动产（管理员修订）");
    let r = crate::admin::call(
        gw,
        "PUT",
        &format!("/v1/admin/grants/{grant}"),
        Some(("application/json", spec.to_string())),
        &[("if-match", etag.as_str())],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let answer = |req: &str| format!("/v1/sharing/requests/{req}/answer");
    let r = post(
        gw,
        &answer(&stale),
        &p.steward,
        json!({"decision": "approve"}),
    )
    .await;
    refused_as(&r, "renewed-grant-changed");
    assert_eq!(state_of(gw, p, &stale).await, "refused");
    let (now, _) = crate::admin::get_grant(gw, grant).await;
    assert_eq!(now["title"], "医保缴费困难认定核验不动产（管理员修订）");

    // A renewal starting later than today is refused at filing.
    let mut later = renewal(grant);
    later["grant"]["conditions"]["valid_from"] = json!("2099-01-01");
    let r = post(gw, "/v1/sharing/requests", &p.yibao, later).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("valid_from"), "{}", r.text);

    // A renewal pending when the owner revokes is refused with it; it
    // cannot bring the grant back.
    let again = filed_and_reviewed(gw, p, renewal(grant)).await;
    let r = post(
        gw,
        &format!("/v1/sharing/grants/{grant}/revoke"),
        &p.steward,
        json!({"reason": "停止共享"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(state_of(gw, p, &again).await, "refused");
    let r = post(
        gw,
        &answer(&again),
        &p.steward,
        json!({"decision": "approve"}),
    )
    .await;
    refused_as(&r, "sharing-request-state");
    assert_eq!(
        yibao_lookup(gw, &p.yibao, id).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn the_consumer_withdraws_its_own_request_until_it_is_decided() {
    let gw = TestGateway::start().await;
    let p = people(&gw);
    let req = filed_and_reviewed(
        &gw,
        &p,
        budongchan_request("ziranziyuan.budongchan", "property_count"),
    )
    .await;
    let withdraw = format!("/v1/sharing/requests/{req}/withdraw");
    // Another department's request is not found for it.
    let minzheng = gw.token("minzheng", "clerk-1", &["caseworker"]);
    let r = post(&gw, &withdraw, &minzheng, json!({})).await;
    refused_as(&r, "sharing-request-not-found");
    let r = post(&gw, &withdraw, &p.yibao, json!({"reason": "改由线下办理"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["state"], "withdrawn");
    let last = r.body["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["action"], "withdrawn");
    assert_eq!(last["reason"], "改由线下办理");
    // Withdrawn, it takes no answer and no second withdrawal.
    let r = post(
        &gw,
        &format!("/v1/sharing/requests/{req}/answer"),
        &p.steward,
        json!({"decision": "approve"}),
    )
    .await;
    refused_as(&r, "sharing-request-state");
    let r = post(&gw, &withdraw, &p.yibao, json!({})).await;
    refused_as(&r, "sharing-request-state");
    // An approved request is not withdrawn: its grant is revoked by the owner.
    let (approved_req, _) = approved(&gw, &p).await;
    let r = post(
        &gw,
        &format!("/v1/sharing/requests/{approved_req}/withdraw"),
        &p.yibao,
        json!({}),
    )
    .await;
    refused_as(&r, "sharing-request-state");
}

#[tokio::test]
async fn a_review_turns_overdue_across_a_makeup_saturday_and_the_time_to_grant_is_counted() {
    // 10:00 on Friday 9 October 2026. Two working days for the review:
    // Saturday 10 (调休, worked) and Monday 12.
    let start = time::macros::datetime!(2026-10-09 10:00 +08:00);
    let clock = tongban::clock::Clock::manual(start);
    let gw = TestGateway::start_at(|_, _| {}, clock.clone()).await;
    let r = post(
        &gw,
        "/v1/sharing/requests",
        &people(&gw).yibao,
        budongchan_request("ziranziyuan.budongchan", "property_count"),
    )
    .await;
    assert_eq!(r.body["review_due"], "2026-10-12", "{}", r.text);
    let req = r.body["id"].as_str().unwrap().to_owned();
    let metric = |text: &str, step: &str| {
        let series =
            format!(r#"tongban_sharing_requests_overdue{{step="{step}",owner="ziranziyuan"}} "#);
        text.lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .map(str::to_owned)
    };
    // Monday 12, the last day: not overdue.
    clock.advance(Duration::from_secs(3 * 86_400));
    tongban::alerts::check(&gw.gw).await.unwrap();
    let text = gw
        .client()
        .request("GET", "/metrics", &[])
        .await
        .unwrap()
        .text;
    assert_eq!(metric(&text, "review").as_deref(), Some("0"), "{text}");
    assert!(text.contains(r#"tongban_sharing_requests_open{step="review",owner="ziranziyuan"} 1"#));
    // Tuesday 13: overdue, in the request and in the metrics.
    clock.advance(Duration::from_secs(86_400));
    let p = people(&gw);
    let r = gw
        .get("/v1/sharing/requests", Some(&p.authority), None, None)
        .await;
    assert_eq!(r.body["requests"][0]["overdue"], true, "{}", r.text);
    tongban::alerts::check(&gw.gw).await.unwrap();
    let text = gw
        .client()
        .request("GET", "/metrics", &[])
        .await
        .unwrap()
        .text;
    assert_eq!(metric(&text, "review").as_deref(), Some("1"), "{text}");
    // Reviewed Tuesday 13, answered Wednesday 14: four working days to grant.
    let r = post(
        &gw,
        &format!("/v1/sharing/requests/{req}/review"),
        &p.authority,
        json!({"decision": "approve"}),
    )
    .await;
    assert_eq!(r.body["answer_due"], "2026-10-20", "{}", r.text);
    clock.advance(Duration::from_secs(86_400));
    let p = people(&gw);
    let r = post(
        &gw,
        &format!("/v1/sharing/requests/{req}/answer"),
        &p.steward,
        json!({"decision": "approve"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    tongban::alerts::check(&gw.gw).await.unwrap();
    let text = gw
        .client()
        .request("GET", "/metrics", &[])
        .await
        .unwrap()
        .text;
    assert_eq!(metric(&text, "review").as_deref(), Some("0"), "{text}");
    assert_eq!(metric(&text, "answer").as_deref(), Some("0"), "{text}");

    let officer = gw.token("shujuju", "officer-1", &["privacy_officer"]);
    let r = gw
        .get(
            "/v1/audit/evaluation?from=2026-10-01&to=2026-10-31",
            Some(&officer),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let row = r.body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["consumer"] == "yibao" && x["owner"] == "ziranziyuan")
        .unwrap_or_else(|| panic!("{}", r.text))
        .clone();
    assert_eq!(row["month"], "2026-10");
    assert_eq!(row["grants_made"], 1, "{row}");
    assert_eq!(row["days_to_grant"], 4.0, "{row}");
    // The owner's steward sees its own data's figures.
    let r = gw
        .get(
            "/v1/audit/evaluation?from=2026-10-01&to=2026-10-31&format=csv",
            Some(&p.steward),
            None,
            None,
        )
        .await;
    assert!(r.text.contains("Days to grant"), "{}", r.text);
    assert!(r.text.contains(",1,4,"), "{}", r.text);
}

#[tokio::test]
async fn any_departments_staff_read_the_sharing_directory_without_values_or_addresses() {
    let gw = TestGateway::start().await;
    let p = people(&gw);
    let r = gw
        .get("/v1/sharing/directory", Some(&p.yibao), None, None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let datasets = r.body["datasets"].as_array().unwrap();
    let budongchan = datasets
        .iter()
        .find(|d| d["dataset"] == "ziranziyuan.budongchan")
        .unwrap();
    assert_eq!(budongchan["owner"], "ziranziyuan");
    assert!(
        budongchan["owner_name"]
            .as_str()
            .unwrap()
            .contains("自然资源"),
        "{budongchan}"
    );
    assert!(
        budongchan["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "property_count" && f["title"].is_string())
    );
    // Departments by name, for showing names rather than codes.
    assert!(
        r.body["departments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == "minzheng" && d["name"].as_str().unwrap().starts_with("民政局")),
        "{}",
        r.text
    );
    // 不予共享 data is listed as such, to say why it cannot be asked for.
    assert!(datasets.iter().any(|d| d["class"] == "none"), "{}", r.text);
    for leak in ["provider", "url", "https://", "grants"] {
        assert!(!r.text.contains(leak), "{leak} in {}", r.text);
    }
    // Only staff: no token, no directory.
    let r = gw.get("/v1/sharing/directory", None, None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}
