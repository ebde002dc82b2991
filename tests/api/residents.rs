//! Residents' own record (`/v1/me/…`): a resident sees exactly their own
//! disclosures, in plain words, and nothing else; a resident's token opens
//! nothing else, and no other token opens it.

use hyper::StatusCode;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::audit_review::officer_get;
use crate::helpers::TestGateway;

const HUKOU: &str = "/v1/datasets/gongan.hukou/records";

/// A lookup of `id`'s household record by one of two departments.
async fn lookup(gw: &TestGateway, id: &str, by_minzheng: bool) {
    let r = if by_minzheng {
        let tok = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
        gw.get(
            &format!("{HUKOU}/{id}"),
            Some(&tok),
            Some("dibao_review"),
            Some("MZ-2026-1"),
        )
        .await
    } else {
        let tok = gw.token("renshe", "clerk-1", &["pension_clerk"]);
        gw.get(
            &format!("{HUKOU}/{id}"),
            Some(&tok),
            Some("pension_eligibility"),
            None,
        )
        .await
    };
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

async fn mine(gw: &TestGateway, id: &str) -> crate::helpers::TestResponse {
    let tok = gw.resident_token(id);
    gw.get("/v1/me/disclosures", Some(&tok), None, None).await
}

fn seqs(body: &Value) -> Vec<u64> {
    let mut s: Vec<u64> = body["disclosures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["seq"].as_u64().unwrap())
        .collect();
    s.sort_unstable();
    s
}

#[tokio::test]
async fn a_resident_reads_their_own_record_in_plain_words_without_the_clerk() {
    let gw = TestGateway::start().await;
    let ids = gw.sample_ids("gongan.hukou", 2);
    lookup(&gw, &ids[0], true).await;
    lookup(&gw, &ids[1], false).await;
    let r = mine(&gw, &ids[0]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["count"], 1, "{}", r.text);
    let d = &r.body["disclosures"][0];
    assert_eq!(d["department"], "minzheng");
    assert!(
        d["department_name"].as_str().unwrap().starts_with("民政局"),
        "{d}"
    );
    assert_eq!(d["case_ref"], "MZ-2026-1");
    assert_eq!(d["operation"], "lookup");
    assert!(d["basis"].as_str().is_some_and(|b| !b.is_empty()), "{d}");
    assert!(
        d["dataset_title"].as_str().is_some_and(|t| !t.is_empty()),
        "{d}"
    );
    assert!(d.get("clerk").is_none(), "the clerk is named: {d}");
    assert!(!r.text.contains("clerk-007"));
    assert!(!r.text.contains(&ids[0]), "the full ID is in the answer");
    // The resident's read is audited under the pseudonym, never the ID.
    let events = officer_get(&gw, "/v1/audit/events").await;
    let read = events.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["operation"] == "me.disclosures")
        .expect("the read is audited")
        .clone();
    // Under the pseudonym, and not filed under the resident: reading the
    // record does not add to it.
    assert!(
        read["subject"].as_str().unwrap().starts_with("resident:"),
        "{read}"
    );
    assert_eq!(read["consumer"], "resident", "{read}");
    assert!(read["resident"].is_null(), "{read}");
    assert_eq!(read["decision"], "allow");
    assert!(!events.text.contains(&ids[0]));
}

#[tokio::test]
async fn a_residents_token_opens_nothing_else_and_no_other_token_opens_it() {
    let gw = TestGateway::start().await;
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    let resident = gw.resident_token(&id);
    for path in [
        format!("{HUKOU}/{id}"),
        "/v1/catalog".to_owned(),
        "/v1/audit/events".to_owned(),
        format!("/v1/audit/residents/{id}/disclosures"),
        "/v1/admin/grants".to_owned(),
        "/v1/cases?case_ref=MZ-2026-1".to_owned(),
    ] {
        let r = gw
            .get(
                &path,
                Some(&resident),
                Some("dibao_review"),
                Some("MZ-2026-1"),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}: {}", r.text);
        assert_eq!(
            r.problem_type(),
            Some("/problems/issuer-out-of-scope"),
            "{path}"
        );
    }
    for tok in [
        gw.token("minzheng", "clerk-007", &["dibao_reviewer"]),
        gw.token("shujuju", "officer-1", &["privacy_officer"]),
    ] {
        let r = gw.get("/v1/me/disclosures", Some(&tok), None, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    }
    let r = gw.get("/v1/me/disclosures", None, None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // A token whose ID number does not check is refused.
    let mut bad = id.clone();
    bad.replace_range(17..18, if id.ends_with('1') { "2" } else { "1" });
    let key = std::fs::read(gw.home.path().join("keys/issuer.pem")).unwrap();
    let forged = tongban::dev::devpki::mint_resident_token(
        &key,
        tongban::dev::demo::DEMO_RESIDENT_ISSUER,
        tongban::dev::demo::DEMO_AUDIENCE,
        "id_number",
        &bad,
        gw.clock.unix_secs(),
        600,
    )
    .unwrap();
    let r = gw
        .get("/v1/me/disclosures", Some(&forged), None, None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
}

#[tokio::test]
async fn a_resident_is_limited_in_how_fast_they_ask() {
    let gw = TestGateway::start_with(|c, _| {
        c.residents.rate = "3/min".parse().unwrap();
    })
    .await;
    let ids = gw.sample_ids("gongan.hukou", 2);
    for _ in 0..3 {
        assert_eq!(mine(&gw, &ids[0]).await.status, StatusCode::OK);
    }
    let r = mine(&gw, &ids[0]).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    assert_eq!(r.problem_type(), Some("/problems/rate-limited"));
    // Another resident is not held back.
    assert_eq!(mine(&gw, &ids[1]).await.status, StatusCode::OK);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Over random populations of lookups (which residents, by which
    /// department, how often), each resident's record lists exactly the
    /// disclosures of their own data: as many as were made, the same
    /// events the officers' report lists for them, and none of another's.
    #[test]
    fn each_resident_sees_exactly_their_own_disclosures(
        asks in proptest::collection::vec((0usize..5, any::<bool>()), 1..16)
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let gw = TestGateway::start().await;
            let ids = gw.sample_ids("gongan.hukou", 5);
            let mut made = [0usize; 5];
            for (who, by_minzheng) in &asks {
                lookup(&gw, &ids[*who], *by_minzheng).await;
                made[*who] += 1;
            }
            let mut all = std::collections::BTreeSet::new();
            for (i, id) in ids.iter().enumerate() {
                let r = mine(&gw, id).await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.text);
                let own = seqs(&r.body);
                assert_eq!(own.len(), made[i], "resident {i}");
                let report = officer_get(&gw, &format!("/v1/audit/residents/{id}/disclosures")).await;
                assert_eq!(own, seqs(&report.body), "resident {i}");
                for s in own {
                    assert!(all.insert(s), "event {s} listed for two residents");
                }
            }
        });
    }
}

async fn send(
    gw: &TestGateway,
    method: &str,
    path: &str,
    token: &str,
    body: Value,
) -> crate::helpers::TestResponse {
    gw.client()
        .request_with_body(
            method,
            path,
            &[
                ("authorization".to_owned(), format!("Bearer {token}")),
                ("content-type".to_owned(), "application/json".to_owned()),
            ],
            bytes::Bytes::from(body.to_string()),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn an_objection_flows_from_the_resident_to_the_officer_and_back() {
    // Wednesday 30 September 2026, the day before the 国庆 holiday.
    let start = time::macros::datetime!(2026-09-30 10:00 +08:00);
    let clock = tongban::clock::Clock::manual(start);
    let gw = TestGateway::start_at(|_, _| {}, clock.clone()).await;
    let ids = gw.sample_ids("gongan.hukou", 2);
    lookup(&gw, &ids[0], true).await;
    lookup(&gw, &ids[1], false).await;
    let me = gw.resident_token(&ids[0]);
    let record = mine(&gw, &ids[0]).await;
    let use_ = &record.body["disclosures"][0];
    let (node, seq) = (use_["node"].clone(), use_["seq"].as_u64().unwrap());
    let other = mine(&gw, &ids[1]).await.body["disclosures"][0]["seq"]
        .as_u64()
        .unwrap();

    let object = |seq: u64, text: &str| json!({"node": node, "seq": seq, "text": text});
    let r = send(
        &gw,
        "POST",
        "/v1/me/objections",
        &me,
        object(seq, "我没有申请低保，为何查询我的户籍？"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["state"], "open");
    // Fifteen working days: 1–7 October are off, Saturday 10 October is worked.
    assert_eq!(r.body["due"], "2026-10-27", "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_owned();
    // The same use again while it is open; another resident's use; no words.
    let r = send(
        &gw,
        "POST",
        "/v1/me/objections",
        &me,
        object(seq, "再问一次"),
    )
    .await;
    assert_eq!(
        r.problem_type(),
        Some("/problems/objection-conflict"),
        "{}",
        r.text
    );
    let r = send(
        &gw,
        "POST",
        "/v1/me/objections",
        &me,
        object(other, "不是我的"),
    )
    .await;
    assert_eq!(
        r.problem_type(),
        Some("/problems/disclosure-not-found"),
        "{}",
        r.text
    );
    let r = send(&gw, "POST", "/v1/me/objections", &me, object(seq, " ")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);

    the_queue_shows_it_due_then_overdue(&gw, &clock, &ids[0]).await;
    the_answer_reaches_the_resident_and_a_closed_one_takes_no_more(&gw, &id, &ids).await;
}

/// The officers' queue lists it, not yet overdue; past its due day it is
/// overdue there and in the metrics. A department's clerk sees no queue.
async fn the_queue_shows_it_due_then_overdue(
    gw: &TestGateway,
    clock: &tongban::clock::Clock,
    id_number: &str,
) {
    // The officers' queue; a department's clerk has none.
    let officer = gw.token("shujuju", "officer-1", &["privacy_officer"]);
    let clerk = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let r = gw
        .get("/v1/audit/objections", Some(&clerk), None, None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let r = gw
        .get("/v1/audit/objections", Some(&officer), None, None)
        .await;
    assert_eq!(r.body["count"], 1, "{}", r.text);
    assert_eq!(r.body["objections"][0]["overdue"], false);
    assert!(!r.text.contains(id_number), "the ID number in the queue");
    let r = gw
        .get(
            "/v1/audit/objections?state=overdue",
            Some(&officer),
            None,
            None,
        )
        .await;
    assert_eq!(r.body["count"], 0, "{}", r.text);
    // Past the due day it is overdue, in the queue and in the metrics.
    clock.advance(std::time::Duration::from_secs(28 * 86_400));
    let officer = gw.token("shujuju", "officer-1", &["privacy_officer"]);
    let r = gw
        .get(
            "/v1/audit/objections?state=overdue",
            Some(&officer),
            None,
            None,
        )
        .await;
    assert_eq!(r.body["count"], 1, "{}", r.text);
    tongban::alerts::check(&gw.gw).await.unwrap();
    let metrics = gw
        .client()
        .request("GET", "/metrics", &[])
        .await
        .unwrap()
        .text;
    assert!(
        metrics.contains("tongban_objections_overdue 1"),
        "{metrics}"
    );
}

/// The officers' answer reaches the resident without the officer's name; a
/// closed objection takes no further answer; another resident sees none.
async fn the_answer_reaches_the_resident_and_a_closed_one_takes_no_more(
    gw: &TestGateway,
    id: &str,
    ids: &[String],
) {
    let officer = gw.token("shujuju", "officer-1", &["privacy_officer"]);
    // The answer reaches the resident, without the officer's name.
    let path = format!("/v1/audit/objections/{id}/reply");
    let r = send(
        gw,
        "POST",
        &path,
        &officer,
        json!({"reply": "经核实，该查询用于您家庭成员的低保复核。"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["state"], "answered");
    let me = gw.resident_token(&ids[0]);
    let r = gw.get("/v1/me/objections", Some(&me), None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let o = &r.body["objections"][0];
    assert_eq!(o["state"], "answered");
    assert_eq!(
        o["reply"]["text"],
        "经核实，该查询用于您家庭成员的低保复核。"
    );
    assert!(!r.text.contains("officer-1"), "{}", r.text);
    // Closed, it takes no further answer; an unknown id is not found.
    let r = send(
        gw,
        "POST",
        &path,
        &officer,
        json!({"reply": "已办结", "close": true}),
    )
    .await;
    assert_eq!(r.body["state"], "closed", "{}", r.text);
    let r = send(gw, "POST", &path, &officer, json!({"reply": "再答"})).await;
    assert_eq!(
        r.problem_type(),
        Some("/problems/objection-conflict"),
        "{}",
        r.text
    );
    let r = send(
        gw,
        "POST",
        "/v1/audit/objections/20260930-0000000000000000/reply",
        &officer,
        json!({"reply": "x"}),
    )
    .await;
    assert_eq!(
        r.problem_type(),
        Some("/problems/objection-not-found"),
        "{}",
        r.text
    );
    // Another resident sees none of it.
    let r = gw
        .get(
            "/v1/me/objections",
            Some(&gw.resident_token(&ids[1])),
            None,
            None,
        )
        .await;
    assert_eq!(r.body["count"], 0, "{}", r.text);
}

#[tokio::test]
async fn a_residents_refusals_are_theirs_not_a_strangers_and_a_bound_token_needs_its_certificate() {
    let gw = TestGateway::start_with(|c, _| {
        c.limits.unauthenticated_per_source = "2/min".parse().unwrap();
    })
    .await;
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    let me = gw.resident_token(&id);
    // Five objections to a use the record does not hold: each is told so,
    // not counted against the source address as a stranger's refusals.
    for _ in 0..5 {
        let r = send(
            &gw,
            "POST",
            "/v1/me/objections",
            &me,
            json!({"seq": 999_999, "text": "x"}),
        )
        .await;
        assert_eq!(
            r.problem_type(),
            Some("/problems/disclosure-not-found"),
            "{}",
            r.text
        );
    }
    // A token bound to a client certificate is refused over a connection
    // without it.
    let key = std::fs::read(gw.home.path().join("keys/issuer.pem")).unwrap();
    let now = gw.clock.unix_secs();
    let claims = json!({
        "iss": tongban::dev::demo::DEMO_RESIDENT_ISSUER, "aud": tongban::dev::demo::DEMO_AUDIENCE,
        "id_number": id, "iat": now, "exp": now + 600,
        "cnf": {"x5t#S256": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
    });
    let bound = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_pem(&key).unwrap(),
    )
    .unwrap();
    let r = gw.get("/v1/me/disclosures", Some(&bound), None, None).await;
    assert_eq!(
        r.problem_type(),
        Some("/problems/certificate-binding-mismatch"),
        "{}",
        r.text
    );
}
