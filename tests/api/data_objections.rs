//! Data objections (疑义、纠错): a consumer reports a record it was given as
//! doubtful or wrong, naming the disclosure; only the owner's stewards see
//! the resident ID (sealed at rest), while the objection is open; the owner
//! answers within its deadline in working days.

use std::time::Duration;

use hyper::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestGateway;
use crate::proof::lookup;
use crate::sharing::{post, refused_as};

/// A report on gongan.hukou's `field` of `id`, citing the disclosure `seq`.
fn report(id: &str, seq: u64, field: &str) -> Value {
    json!({
        "dataset": "gongan.hukou",
        "field": field,
        "resident_id": id,
        "what": "户籍地址与申请人提交的居住证明不一致",
        "seq": seq,
    })
}

/// minzheng's lookup of `id`: its audit reference.
async fn looked_up(gw: &TestGateway, id: &str) -> u64 {
    let r = lookup(gw, id, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.audit_seq()
}

#[tokio::test]
async fn a_consumer_reports_what_it_was_given_and_only_the_owner_reads_the_resident_id() {
    let gw = TestGateway::start().await;
    let ids = gw.sample_ids("gongan.hukou", 2);
    let id = ids[0].clone();
    let seq = looked_up(&gw, &id).await;
    let reviewer = gw.token("minzheng", "reviewer-7", &["dibao_reviewer"]);
    only_what_it_was_given_is_reported(&gw, &reviewer, &ids, seq).await;

    // A masked field counts as given.
    let r = post(
        &gw,
        "/v1/objections",
        &reviewer,
        report(&id, seq, "id_number"),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = post(
        &gw,
        "/v1/objections",
        &reviewer,
        report(&id, seq, "hukou_address"),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["owner"], "gongan");
    assert_eq!(r.body["state"], "open");
    assert_eq!(r.body["seq"], seq);
    let masked = format!("{}********{}", &id[..6], &id[14..]);
    assert_eq!(r.body["resident_id_masked"], masked.as_str());
    assert!(r.body["resident_id"].is_null(), "{}", r.text);
    let objection = r.body["id"].as_str().unwrap().to_owned();

    // Each side its share; the ID for the owner's stewards alone.
    let steward = gw.token("gongan", "steward-1", &["data_steward"]);
    let other_steward = gw.token("ziranziyuan", "steward-2", &["data_steward"]);
    let gongan_clerk = gw.token("gongan", "clerk-2", &["caseworker"]);
    let officer = gw.token("shujuju", "officer-1", &["privacy_officer"]);
    for (tok, n, shown) in [
        (&steward, 2, true),
        (&reviewer, 2, false),
        (&officer, 2, false),
        (&other_steward, 0, false),
        (&gongan_clerk, 0, false),
    ] {
        let r = gw.get("/v1/objections", Some(tok), None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.body["count"], n, "{}", r.text);
        assert_eq!(r.text.contains(&id), shown, "{}", r.text);
    }

    // Not kept in the clear, nor in the audit log.
    for o in gw.gw.sharing.objections.list().await.unwrap() {
        let stored = serde_json::to_string(&o).unwrap();
        assert!(!stored.contains(&id), "{stored}");
    }
    let store = gw.store().await;
    let (head, _) = store.head().unwrap();
    for seq in 1..=head {
        let e = format!("{:?}", store.get(seq).unwrap().unwrap());
        assert!(!e.contains(&id), "event {seq} holds the ID: {e}");
    }

    the_owner_answers_once(&gw, &objection, &reviewer, &steward, &other_steward).await;
    // Answered, the ID is no longer shown, even to the owner.
    let r = gw.get("/v1/objections", Some(&steward), None, None).await;
    let answered = r.body["objections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == objection.as_str())
        .unwrap()
        .clone();
    assert!(answered["resident_id"].is_null(), "{answered}");
    every_step_is_audited_by_pseudonym(&gw).await;
}

/// Refusals at filing: a role no grant names, a field not given, one not in
/// the catalog, a bad ID, no words or an ID in them, a disclosure that is
/// not of this resident or not this department's.
async fn only_what_it_was_given_is_reported(
    gw: &TestGateway,
    reviewer: &str,
    ids: &[String],
    seq: u64,
) {
    let id = &ids[0];
    let caseworker = gw.token("minzheng", "clerk-1", &["caseworker"]);
    for (tok, body, slug) in [
        (
            caseworker.as_str(),
            report(id, seq, "hukou_address"),
            "data-objection-not-yours",
        ),
        (
            reviewer,
            report(id, seq, "ethnicity"),
            "data-objection-not-yours",
        ),
        (
            reviewer,
            report(id, seq, "no_such_field"),
            "invalid-data-objection",
        ),
        (
            reviewer,
            report("110105194912310021", seq, "hukou_address"),
            "invalid-resident-id",
        ),
        // Another resident under the same disclosure: not given.
        (
            reviewer,
            report(&ids[1], seq, "hukou_address"),
            "data-objection-not-yours",
        ),
        // An event that is not a disclosure, or not there.
        (
            reviewer,
            report(id, seq + 1, "hukou_address"),
            "data-objection-not-yours",
        ),
        (
            reviewer,
            report(id, 999_999, "hukou_address"),
            "data-objection-not-yours",
        ),
    ] {
        refused_as(&post(gw, "/v1/objections", tok, body).await, slug);
    }
    let mut other_node = report(id, seq, "hukou_address");
    other_node["node"] = json!("node-z");
    refused_as(
        &post(gw, "/v1/objections", reviewer, other_node).await,
        "data-objection-not-yours",
    );
    for what in ["  ".to_owned(), format!("此人身份证号 {id} 的地址有误")] {
        let mut body = report(id, seq, "hukou_address");
        body["what"] = json!(what);
        refused_as(
            &post(gw, "/v1/objections", reviewer, body).await,
            "invalid-data-objection",
        );
    }
}

/// The owner's steward answers; others cannot; once only; the reporter
/// reads the answer.
async fn the_owner_answers_once(
    gw: &TestGateway,
    objection: &str,
    reviewer: &str,
    steward: &str,
    other_steward: &str,
) {
    let answer = format!("/v1/objections/{objection}/answer");
    for (tok, body, slug) in [
        (
            reviewer,
            json!({"outcome": "confirmed"}),
            "data-objection-not-yours",
        ),
        (
            other_steward,
            json!({"outcome": "confirmed"}),
            "data-objection-not-found",
        ),
        (
            steward,
            json!({"outcome": "fixed"}),
            "invalid-data-objection",
        ),
        (
            steward,
            json!({"outcome": "not_ours"}),
            "invalid-data-objection",
        ),
        (
            steward,
            json!({"outcome": "corrected", "note": "110105194912310021 已更正"}),
            "invalid-data-objection",
        ),
    ] {
        refused_as(&post(gw, &answer, tok, body).await, slug);
    }
    let r = post(
        gw,
        &answer,
        steward,
        json!({"outcome": "corrected", "note": "已按户籍档案更正"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["state"], "answered");
    refused_as(
        &post(gw, &answer, steward, json!({"outcome": "confirmed"})).await,
        "data-objection-answered",
    );
    let r = gw.get("/v1/objections", Some(reviewer), None, None).await;
    let mine = r.body["objections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == objection)
        .unwrap()
        .clone();
    assert_eq!(mine["answer"]["outcome"], "corrected", "{mine}");
    assert_eq!(mine["answer"]["note"], "已按户籍档案更正");
    assert_eq!(mine["answer"]["by"], "gongan/steward-1");
}

/// Every step is an audit event; those that took effect name the resident
/// by pseudonym; a steward's reading names the objections whose ID it showed.
async fn every_step_is_audited_by_pseudonym(gw: &TestGateway) {
    let store = gw.store().await;
    let (head, _) = store.head().unwrap();
    let events: Vec<_> = (1..=head)
        .filter_map(|seq| store.get(seq).unwrap())
        .filter(|e| e.body.operation.starts_with("objection."))
        .collect();
    let filed = events
        .iter()
        .filter(|e| e.body.operation == "objection.file" && e.body.status == 201)
        .count();
    assert_eq!(filed, 2);
    assert!(
        events
            .iter()
            .filter(|e| e.body.operation != "objection.list" && e.body.status < 300)
            .all(|e| e.body.resident.is_some())
    );
    let steward_read = events
        .iter()
        .find(|e| e.body.operation == "objection.list" && e.body.dept.as_deref() == Some("gongan"))
        .unwrap();
    let detail: Value = serde_json::from_str(steward_read.body.detail.as_deref().unwrap()).unwrap();
    assert_eq!(
        detail["resident_ids_shown_for"].as_array().unwrap().len(),
        2,
        "{detail}"
    );
}

#[tokio::test]
async fn an_objection_turns_overdue_after_its_working_days_across_a_makeup_saturday() {
    // 10:00 on Thursday 8 October 2026. Five working days: Friday 9,
    // Saturday 10 (调休, worked), Monday 12, Tuesday 13, Wednesday 14.
    let start = time::macros::datetime!(2026-10-08 10:00 +08:00);
    let clock = tongban::clock::Clock::manual(start);
    let gw = TestGateway::start_at(|_, _| {}, clock.clone()).await;
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    let seq = looked_up(&gw, &id).await;
    let reviewer = gw.token("minzheng", "reviewer-7", &["dibao_reviewer"]);
    let late = post(
        &gw,
        "/v1/objections",
        &reviewer,
        report(&id, seq, "hukou_address"),
    )
    .await;
    assert_eq!(late.body["due"], "2026-10-14", "{}", late.text);
    let answered = post(
        &gw,
        "/v1/objections",
        &reviewer,
        report(&id, seq, "household_id"),
    )
    .await;
    let answered = answered.body["id"].as_str().unwrap().to_owned();

    // Tuesday 13: answered within its deadline.
    clock.advance(Duration::from_secs(5 * 86_400));
    let steward = gw.token("gongan", "steward-1", &["data_steward"]);
    let r = post(
        &gw,
        &format!("/v1/objections/{answered}/answer"),
        &steward,
        json!({"outcome": "confirmed"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // Wednesday 14, its last day: not overdue yet.
    clock.advance(Duration::from_secs(86_400));
    let steward = gw.token("gongan", "steward-1", &["data_steward"]);
    assert_eq!(overdue(&gw, &steward).await, 0);
    // Thursday 15: overdue (without the 调休 Saturday it would be due today).
    clock.advance(Duration::from_secs(86_400));
    let steward = gw.token("gongan", "steward-1", &["data_steward"]);
    assert_eq!(overdue(&gw, &steward).await, 1);
    // Counted, by owner, for alerting.
    tongban::alerts::check(&gw.gw).await.unwrap();
    let text = gw
        .client()
        .request("GET", "/metrics", &[])
        .await
        .unwrap()
        .text;
    assert!(
        text.contains(r#"tongban_data_objections_open{owner="gongan"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"tongban_data_objections_overdue{owner="gongan"} 1"#),
        "{text}"
    );
}

/// How many objections `tok` sees overdue.
async fn overdue(gw: &TestGateway, tok: &str) -> usize {
    let r = gw.get("/v1/objections", Some(tok), None, None).await;
    r.body["objections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["overdue"] == true)
        .count()
}
