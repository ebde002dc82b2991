//! Data objections (疑义、纠错): a consumer reports a shared record as
//! doubtful or wrong; only the owner's stewards see the resident ID (sealed
//! at rest); the owner answers within its deadline in working days.

use std::time::Duration;

use hyper::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestGateway;
use crate::sharing::{post, refused_as};

/// A valid ID that is none of the sample records'.
const RESIDENT: &str = "11010519491231002X";

fn report(field: &str) -> Value {
    json!({
        "dataset": "gongan.hukou",
        "field": field,
        "resident_id": RESIDENT,
        "what": "户籍地址与申请人提交的居住证明不一致",
    })
}

/// Every file under `dir`, read whole.
fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
    out
}

#[tokio::test]
async fn a_consumer_reports_a_field_it_sees_and_only_the_owner_reads_the_resident_id() {
    let gw = TestGateway::start().await;
    let reviewer = gw.token("minzheng", "reviewer-7", &["dibao_reviewer"]);
    only_what_it_sees_is_reported(&gw, &reviewer).await;

    // A masked ID field counts as shown.
    let r = post(&gw, "/v1/objections", &reviewer, report("id_number")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = post(&gw, "/v1/objections", &reviewer, report("hukou_address")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["owner"], "gongan");
    assert_eq!(r.body["state"], "open");
    assert_eq!(r.body["resident_id_masked"], "110105********002X");
    assert!(r.body["resident_id"].is_null(), "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_owned();

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
        for o in r.body["objections"].as_array().unwrap() {
            assert_eq!(o["resident_id"].is_string(), shown, "{o}");
            if shown {
                assert_eq!(o["resident_id"], RESIDENT);
            }
        }
        assert_eq!(r.text.contains(RESIDENT), shown, "{}", r.text);
    }

    // Not in the data directory in the clear (store, audit log, anything).
    for (path, bytes) in files_under(&gw.gw.config.data_dir) {
        assert!(
            !bytes
                .windows(RESIDENT.len())
                .any(|w| w == RESIDENT.as_bytes()),
            "{} holds the resident ID",
            path.display()
        );
    }

    // The owner's steward answers; others cannot; once only.
    let answer = format!("/v1/objections/{id}/answer");
    refused_as(
        &post(&gw, &answer, &reviewer, json!({"outcome": "confirmed"})).await,
        "data-objection-not-yours",
    );
    refused_as(
        &post(
            &gw,
            &answer,
            &other_steward,
            json!({"outcome": "confirmed"}),
        )
        .await,
        "data-objection-not-found",
    );
    refused_as(
        &post(&gw, &answer, &steward, json!({"outcome": "fixed"})).await,
        "invalid-data-objection",
    );
    refused_as(
        &post(&gw, &answer, &steward, json!({"outcome": "not_ours"})).await,
        "invalid-data-objection",
    );
    let r = post(
        &gw,
        &answer,
        &steward,
        json!({"outcome": "corrected", "note": "已按户籍档案更正"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["state"], "answered");
    refused_as(
        &post(&gw, &answer, &steward, json!({"outcome": "confirmed"})).await,
        "data-objection-answered",
    );
    // The reporter reads the answer.
    let r = gw.get("/v1/objections", Some(&reviewer), None, None).await;
    let mine = r.body["objections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(mine["answer"]["outcome"], "corrected", "{mine}");
    assert_eq!(mine["answer"]["note"], "已按户籍档案更正");
    assert_eq!(mine["answer"]["by"], "gongan/steward-1");

    every_step_is_audited_by_pseudonym(&gw).await;
}

#[tokio::test]
async fn an_objection_turns_overdue_after_its_working_days_across_a_makeup_saturday() {
    // 10:00 on Thursday 8 October 2026. Five working days: Friday 9,
    // Saturday 10 (调休, worked), Monday 12, Tuesday 13, Wednesday 14.
    let start = time::macros::datetime!(2026-10-08 10:00 +08:00);
    let clock = tongban::clock::Clock::manual(start);
    let gw = TestGateway::start_at(|_, _| {}, clock.clone()).await;
    let reviewer = gw.token("minzheng", "reviewer-7", &["dibao_reviewer"]);
    let late = post(&gw, "/v1/objections", &reviewer, report("hukou_address")).await;
    assert_eq!(late.body["due"], "2026-10-14", "{}", late.text);
    let answered = post(&gw, "/v1/objections", &reviewer, report("household_id")).await;
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
    assert!(!text.contains("110105"), "a resident in the metrics");
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

/// Refusals at filing: a role no grant names, a field not granted, one not
/// in the catalog, a bad ID, no words.
async fn only_what_it_sees_is_reported(gw: &TestGateway, reviewer: &str) {
    // Only a field a grant in force shows one of the caller's roles.
    let caseworker = gw.token("minzheng", "clerk-1", &["caseworker"]);
    refused_as(
        &post(gw, "/v1/objections", &caseworker, report("hukou_address")).await,
        "data-objection-not-yours",
    );
    refused_as(
        &post(gw, "/v1/objections", reviewer, report("ethnicity")).await,
        "data-objection-not-yours",
    );
    refused_as(
        &post(gw, "/v1/objections", reviewer, report("no_such_field")).await,
        "invalid-data-objection",
    );
    let mut bad_id = report("hukou_address");
    bad_id["resident_id"] = json!("110105194912310021");
    refused_as(
        &post(gw, "/v1/objections", reviewer, bad_id).await,
        "invalid-resident-id",
    );
    let mut no_words = report("hukou_address");
    no_words["what"] = json!("  ");
    refused_as(
        &post(gw, "/v1/objections", reviewer, no_words).await,
        "invalid-data-objection",
    );
}

/// Every step is an audit event; those that took effect name the resident
/// by pseudonym.
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
}
