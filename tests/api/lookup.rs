//! Lookups: exactly the granted fields, masks, and every refusal as problem+json.

use std::collections::BTreeSet;

use hyper::StatusCode;
use serde_json::Value;

use crate::helpers::TestGateway;

const HUKOU: &str = "/v1/datasets/gongan.hukou/records";

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn allowed_lookup_returns_exactly_the_granted_fields_with_masks() {
    let gw = TestGateway::start().await;
    let id = &gw.sample_ids("gongan.hukou", 1)[0];
    let tok = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let r = gw
        .get(
            &format!("{HUKOU}/{id}"),
            Some(&tok),
            Some("dibao_review"),
            Some("MZ-2026-000123"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let record = &r.body["record"];
    let expected: BTreeSet<String> = [
        "name",
        "gender",
        "birth_date",
        "hukou_address",
        "household_id",
        "relation_to_head",
        "hukou_status",
        "id_number",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    assert_eq!(keys(record), expected);
    let source = gw.sample_record("gongan.hukou", id);
    assert_eq!(record["name"], source["name"]);
    assert_eq!(
        record["id_number"],
        format!("{}********{}", &id[..6], &id[14..])
    );
    assert!(
        !r.text.contains(id.as_str()),
        "the full ID left the gateway"
    );
    assert!(!r.text.contains("ethnicity") && !r.text.contains(source["phone"].as_str().unwrap()));
    assert_eq!(r.body["grant"]["id"], "minzheng-dibao-hukou");
    assert_eq!(r.body["audit"]["seq"].as_u64(), Some(r.audit_seq()));
}

#[tokio::test]
async fn a_field_subset_can_be_asked_for_and_others_are_refused() {
    let gw = TestGateway::start().await;
    let id = &gw.sample_ids("gongan.hukou", 1)[0];
    let tok = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let r = gw
        .get(
            &format!("{HUKOU}/{id}?fields=name,hukou_status"),
            Some(&tok),
            Some("dibao_review"),
            Some("MZ-1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        keys(&r.body["record"]),
        ["hukou_status", "name"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    );

    let r = gw
        .get(
            &format!("{HUKOU}/{id}?fields=name,phone"),
            Some(&tok),
            Some("dibao_review"),
            Some("MZ-1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.problem_type(), Some("/problems/field-not-granted"));
}

/// A refused lookup: path, purpose, case reference, status, problem slug.
type Case = (
    String,
    Option<&'static str>,
    Option<&'static str>,
    StatusCode,
    &'static str,
);

/// Lookups that are refused, one per way to be refused, for the resident
/// `id` (and `bad_check`, the same ID with a wrong check digit).
#[rustfmt::skip]
fn refusal_cases(id: &str, bad_check: &str) -> Vec<Case> {
    vec![
        (format!("{HUKOU}/{id}"), None, Some("MZ-1"), StatusCode::BAD_REQUEST, "purpose-required"),
        (format!("{HUKOU}/{id}"), Some("school_admission"), Some("MZ-1"), StatusCode::FORBIDDEN, "purpose-not-granted"),
        (format!("{HUKOU}/{id}"), Some("dibao_review"), None, StatusCode::BAD_REQUEST, "case-ref-required"),
        (format!("{HUKOU}/{id}?fields=marital_status"), Some("dibao_review"), Some("MZ-1"), StatusCode::BAD_REQUEST, "unknown-field"),
        (format!("/v1/datasets/weijian.bingli/records/{id}"), Some("dibao_review"), Some("MZ-1"), StatusCode::FORBIDDEN, "dataset-not-shared"),
        (format!("/v1/datasets/minzheng.hunyin/records/{id}"), Some("dibao_review"), Some("MZ-1"), StatusCode::FORBIDDEN, "no-grant"),
        (format!("/v1/datasets/gongan.nosuch/records/{id}"), Some("dibao_review"), Some("MZ-1"), StatusCode::NOT_FOUND, "unknown-dataset"),
        (format!("{HUKOU}/{bad_check}"), Some("dibao_review"), Some("MZ-1"), StatusCode::BAD_REQUEST, "invalid-resident-id"),
        (format!("{HUKOU}/11010519491231002X"), Some("dibao_review"), Some("MZ-1"), StatusCode::NOT_FOUND, "resident-not-found"),
        (format!("{HUKOU}/{id}"), Some("Dibao Review"), Some("MZ-1"), StatusCode::BAD_REQUEST, "invalid-purpose"),
        (format!("{HUKOU}/{id}"), Some("dibao-review"), Some("MZ-1"), StatusCode::BAD_REQUEST, "invalid-purpose"),
        (format!("{HUKOU}/{id}"), Some("dibao_review"), Some("MZ 1"), StatusCode::BAD_REQUEST, "invalid-case-ref"),
        (format!("{HUKOU}/..%2F..%2Fetc%2Fpasswd"), Some("dibao_review"), Some("MZ-1"), StatusCode::BAD_REQUEST, "invalid-resident-id"),
        (format!("/v1/datasets/..%2Fgongan.hukou/records/{id}"), Some("dibao_review"), Some("MZ-1"), StatusCode::BAD_REQUEST, "invalid-dataset-id"),
        (format!("{HUKOU}/{id}%00"), Some("dibao_review"), Some("MZ-1"), StatusCode::BAD_REQUEST, "invalid-resident-id"),
        (format!("{HUKOU}/{id}?colour=red"), Some("dibao_review"), Some("MZ-1"), StatusCode::BAD_REQUEST, "invalid-query"),
        ("/v1/nothing/here".to_owned(), Some("dibao_review"), Some("MZ-1"), StatusCode::NOT_FOUND, "no-such-route"),
    ]
}

#[tokio::test]
async fn refusals_are_problem_json_with_stable_types() {
    let gw = TestGateway::start().await;
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    let tok = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let bad_check = format!("{}{}", &id[..17], if id.ends_with('0') { "1" } else { "0" });
    let cases = refusal_cases(&id, &bad_check);
    for (path, purpose, case, status, slug) in cases {
        let r = gw.get(&path, Some(&tok), purpose, case).await;
        assert_eq!(r.status, status, "{path} {purpose:?}: {}", r.text);
        assert_eq!(
            r.problem_type(),
            Some(format!("/problems/{slug}").as_str()),
            "{path}: {}",
            r.text
        );
        assert!(r.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
        assert!(
            !r.text.contains("hukou_address\":"),
            "no record data in a refusal"
        );
    }
}

#[tokio::test]
async fn dataset_of_class_none_is_refused_even_with_its_owner_token() {
    let gw = TestGateway::start().await;
    let id = &gw.sample_ids("gongan.hukou", 1)[0];
    let tok = gw.token("weijian", "doctor-1", &["clinician"]);
    let r = gw
        .get(
            &format!("/v1/datasets/weijian.bingli/records/{id}"),
            Some(&tok),
            Some("treatment"),
            Some("C-1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.problem_type(), Some("/problems/dataset-not-shared"));
}

#[tokio::test]
async fn validity_windows_are_enforced_by_the_gateway_calendar() {
    let id_for = |gw: &TestGateway| gw.sample_ids("gongan.hukou", 1)[0].clone();
    let in_season = time::macros::datetime!(2026-05-01 10:00 +08:00);
    let gw = TestGateway::start_at(|_, _| {}, tongban::clock::Clock::manual(in_season)).await;
    let id = id_for(&gw);
    let tok = gw.token("jiaoyu", "clerk-9", &["admissions_clerk"]);
    let r = gw
        .get(
            &format!("{HUKOU}/{id}"),
            Some(&tok),
            Some("school_admission"),
            Some("JY-2026-0001"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(keys(&r.body["record"]).len(), 3);

    let after = time::macros::datetime!(2026-10-01 00:00:01 +08:00);
    let gw = TestGateway::start_at(|_, _| {}, tongban::clock::Clock::manual(after)).await;
    let id = id_for(&gw);
    let tok = gw.token("jiaoyu", "clerk-9", &["admissions_clerk"]);
    let r = gw
        .get(
            &format!("{HUKOU}/{id}"),
            Some(&tok),
            Some("school_admission"),
            Some("JY-2026-0001"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(r.problem_type(), Some("/problems/grant-not-in-force"));
}

#[tokio::test]
async fn verify_only_fields_cannot_be_looked_up() {
    let gw = TestGateway::start().await;
    let id = &gw.sample_ids("renshe.shebao", 1)[0];
    let tok = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let r = gw
        .get(
            &format!("/v1/datasets/renshe.shebao/records/{id}?fields=contribution_base"),
            Some(&tok),
            Some("dibao_review"),
            Some("MZ-1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.problem_type(), Some("/problems/field-verify-only"));
    let r = gw
        .get(
            &format!("/v1/datasets/renshe.shebao/records/{id}"),
            Some(&tok),
            Some("dibao_review"),
            Some("MZ-1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.body["record"].get("contribution_base").is_none());
    assert!(r.body["record"].get("employer").is_none());
}

#[tokio::test]
async fn department_rate_limit_gives_429_with_retry_after() {
    let gw = TestGateway::start_with(|config, _| {
        config
            .rate_limit
            .departments
            .insert("yibao".into(), "3/min".into());
    })
    .await;
    let id = &gw.sample_ids("gongan.hukou", 1)[0];
    let tok = gw.token("yibao", "clerk-2", &["enrollment_clerk"]);
    let path = format!("{HUKOU}/{id}");
    for _ in 0..3 {
        let r = gw
            .get(
                &path,
                Some(&tok),
                Some("medical_insurance_enrollment"),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let r = gw
        .get(
            &path,
            Some(&tok),
            Some("medical_insurance_enrollment"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.problem_type(), Some("/problems/rate-limited"));
    let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&wait), "{wait}");
    // Another department is not affected; time heals the first.
    let other = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    assert_eq!(
        gw.get(&path, Some(&other), Some("dibao_review"), Some("MZ-1"))
            .await
            .status,
        StatusCode::OK
    );
    gw.clock.advance(std::time::Duration::from_secs(wait));
    assert_eq!(
        gw.get(
            &path,
            Some(&tok),
            Some("medical_insurance_enrollment"),
            None
        )
        .await
        .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn grant_quota_gives_429() {
    let gw = TestGateway::start_with(|config, _| {
        let file = config.policies_dir.join("grants/yibao-enroll.toml");
        let text = std::fs::read_to_string(&file).unwrap();
        let text = text.replace(
            "[grant.conditions]\n",
            "[grant.conditions]\nquota = \"2/min\"\n",
        );
        std::fs::write(file, text).unwrap();
    })
    .await;
    let id = &gw.sample_ids("gongan.hukou", 1)[0];
    let tok = gw.token("yibao", "clerk-2", &["enrollment_clerk"]);
    let path = format!("{HUKOU}/{id}");
    for _ in 0..2 {
        assert_eq!(
            gw.get(
                &path,
                Some(&tok),
                Some("medical_insurance_enrollment"),
                None
            )
            .await
            .status,
            StatusCode::OK
        );
    }
    let r = gw
        .get(
            &path,
            Some(&tok),
            Some("medical_insurance_enrollment"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("yibao-enroll-hukou")
    );
    assert!(r.body["detail"].as_str().unwrap().contains("is used up"));
    assert!(r.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn the_catalog_lists_only_what_the_caller_may_use() {
    let gw = TestGateway::start().await;
    let tok = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let r = gw.get("/v1/catalog", Some(&tok), None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let datasets: BTreeSet<String> = r.body["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["dataset"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        datasets,
        ["gongan.hukou", "renshe.shebao", "ziranziyuan.budongchan"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    );
    assert!(!r.text.contains("weijian.bingli"));
    assert!(r.text.contains("masked:id_number") && r.text.contains("verify_only"));

    let other_role = gw.token("minzheng", "clerk-8", &["archivist"]);
    let r = gw.get("/v1/catalog", Some(&other_role), None, None).await;
    assert_eq!(r.body["datasets"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn a_lookup_by_a_role_the_grant_lacks_is_refused() {
    let gw = TestGateway::start().await;
    let id = &gw.sample_ids("gongan.hukou", 1)[0];
    let path = format!("{HUKOU}/{id}");
    let granted = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let r = gw
        .get(
            &path,
            Some(&granted),
            Some("dibao_review"),
            Some("MZ-2026-1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let other_role = gw.token("minzheng", "clerk-8", &["archivist"]);
    let r = gw
        .get(
            &path,
            Some(&other_role),
            Some("dibao_review"),
            Some("MZ-2026-1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(r.problem_type(), Some("/problems/role-not-granted"));
    let name = gw.sample_record("gongan.hukou", id)["name"].clone();
    assert!(!r.text.contains(name.as_str().unwrap()));
}

/// A plain lookup is served without the router; the same lookup with a
/// percent-encoded path goes through it. Both answer alike: the same
/// record, the same refusals, the same headers, the same refusal at the
/// door for oversized headers (and the connection closed).
#[tokio::test]
async fn a_lookup_served_without_the_router_answers_as_the_router_does() {
    let gw = TestGateway::start().await;
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    let tok = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let plain = format!("{HUKOU}/{id}");
    let routed = format!("/v1/datasets/gongan%2Ehukou/records/{id}");
    let headers = |purpose: Option<&str>| {
        let mut h = vec![("authorization".to_owned(), format!("Bearer {tok}"))];
        if let Some(p) = purpose {
            h.push(("x-purpose".to_owned(), p.to_owned()));
            h.push(("x-case-ref".to_owned(), "MZ-2026-000123".to_owned()));
        }
        h
    };
    let big = {
        let mut h = headers(Some("dibao_review"));
        h.push(("x-big".to_owned(), "a".repeat(40 * 1024)));
        h
    };
    type Named = Vec<(String, String)>;
    let cases: Vec<(&str, String, Named)> = vec![
        ("answered", String::new(), headers(Some("dibao_review"))),
        (
            "fields named",
            "?fields=name,hukou_status".into(),
            headers(Some("dibao_review")),
        ),
        ("no purpose", String::new(), headers(None)),
        (
            "unknown parameter",
            "?field=name".into(),
            headers(Some("dibao_review")),
        ),
        (
            "purpose not granted",
            String::new(),
            headers(Some("tax_audit")),
        ),
        ("headers too large", String::new(), big),
    ];
    for (case, query, h) in cases {
        let mut answers = Vec::new();
        for path in [&plain, &routed] {
            let r = gw
                .client()
                .request("GET", &format!("{path}{query}"), &h)
                .await
                .unwrap();
            let mut body = r.body.clone();
            if let Some(o) = body.as_object_mut() {
                o.remove("audit");
                o.remove("request_id");
                o.remove("audit_seq");
                o.remove("instance");
            }
            let named: BTreeSet<String> = r
                .headers
                .keys()
                .map(|k| k.as_str().to_owned())
                .filter(|k| k != "date" && k != "content-length")
                .collect();
            let close = r
                .headers
                .get("connection")
                .map(|v| v.to_str().unwrap().to_owned());
            answers.push((r.status, body, named, close));
        }
        assert_eq!(answers[0], answers[1], "{case}");
    }
    let r = gw
        .get(
            &plain,
            Some(&tok),
            Some("dibao_review"),
            Some("MZ-2026-000123"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let e = gw.store().await.get(r.audit_seq()).unwrap().unwrap().body;
    assert_eq!(e.operation, "lookup");
    assert_eq!(e.dataset.as_deref(), Some("gongan.hukou"));
}

/// A 文号 (`民低保〔2026〕123号`) is a case reference: sent percent-encoded
/// as UTF-8 in `X-Case-Ref`, decoded before it is checked, answered and
/// audited as the 文号 itself. A malformed encoding is refused.
#[tokio::test]
async fn a_chinese_document_number_is_a_case_reference_sent_percent_encoded() {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

    let gw = TestGateway::start().await;
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    let tok = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let wenhao = "民低保〔2026〕123号";
    let sent = utf8_percent_encode(wenhao, NON_ALPHANUMERIC).to_string();
    let path = format!("{HUKOU}/{id}");
    let r = gw
        .get(&path, Some(&tok), Some("dibao_review"), Some(&sent))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["case_ref"], wenhao, "{}", r.text);
    let event = gw.store().await.get(r.audit_seq()).unwrap().unwrap();
    assert_eq!(event.body.case_ref.as_deref(), Some(wenhao));
    // Plain ASCII is taken as it is.
    let r = gw
        .get(
            &path,
            Some(&tok),
            Some("dibao_review"),
            Some("MZ-2026-000123"),
        )
        .await;
    assert_eq!(r.body["case_ref"], "MZ-2026-000123", "{}", r.text);
    for bad in ["%E6%B0", "%ZZ", "MZ%2", "%E6%B0%91%", "%20MZ", "%00"] {
        let r = gw
            .get(&path, Some(&tok), Some("dibao_review"), Some(bad))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
        assert_eq!(
            r.problem_type(),
            Some("/problems/invalid-case-ref"),
            "{bad}: {}",
            r.text
        );
        assert!(
            !r.text.contains("hukou_address\":"),
            "no record data in a refusal"
        );
    }
}

/// Refusals are told in Chinese when `Accept-Language` prefers it (title
/// and detail, `Content-Language: zh`), in English otherwise; the `type`
/// is the same in both.
#[tokio::test]
async fn refusals_are_told_in_chinese_when_the_caller_prefers_it() {
    use tongban::problem::{Lang, Problem, ProblemType};

    let gw = TestGateway::start().await;
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    let tok = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    for (accept, lang) in [
        (None, Lang::En),
        (Some("zh-CN,zh;q=0.9,en;q=0.8"), Lang::Zh),
        (Some("zh"), Lang::Zh),
        (Some("en-US,en;q=0.9,zh;q=0.5"), Lang::En),
        (Some("zh;q=0, en;q=0.1"), Lang::En),
        (Some("fr, *"), Lang::En),
    ] {
        let mut headers = vec![("authorization".to_owned(), format!("Bearer {tok}"))];
        if let Some(a) = accept {
            headers.push(("accept-language".to_owned(), a.to_owned()));
        }
        let r = gw
            .client()
            .request("GET", &format!("{HUKOU}/{id}"), &headers)
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{accept:?}: {}", r.text);
        assert_eq!(r.problem_type(), Some("/problems/purpose-required"));
        assert_eq!(r.headers["content-language"], lang.tag(), "{accept:?}");
        assert_eq!(
            r.body["title"],
            ProblemType::PurposeRequired.title(lang),
            "{accept:?}"
        );
        assert_eq!(
            r.body["detail"],
            Problem::PurposeRequired.detail(lang),
            "{accept:?}"
        );
    }
    // An invalid ID's fault is told in Chinese too, not left in English.
    let bad_check = format!("{}{}", &id[..17], if id.ends_with('0') { "1" } else { "0" });
    let headers = [
        ("authorization".to_owned(), format!("Bearer {tok}")),
        ("x-purpose".to_owned(), "dibao_review".to_owned()),
        ("x-case-ref".to_owned(), "MZ-1".to_owned()),
        ("accept-language".to_owned(), "zh-CN".to_owned()),
    ];
    let r = gw
        .client()
        .request("GET", &format!("{HUKOU}/{bad_check}"), &headers)
        .await
        .unwrap();
    assert_eq!(r.problem_type(), Some("/problems/invalid-resident-id"));
    let detail = r.body["detail"].as_str().unwrap();
    assert!(detail.contains("校验码不符"), "{detail}");
    assert!(!detail.contains("check character"), "{detail}");
}

/// Sharing classes by construction: an unconditional dataset (无条件共享)
/// is looked up without a case reference; the catalog names each entry's
/// class, and a conditional one without a case reference says why.
#[tokio::test]
async fn an_unconditional_dataset_needs_no_case_reference_and_the_catalog_says_so() {
    let gw = TestGateway::start().await;
    let id = gw.sample_ids("renshe.zhiye_zige", 1)[0].clone();
    let tok = gw.token("jiaoyu", "clerk-2", &["admissions_clerk"]);
    let r = gw
        .get(
            &format!("/v1/datasets/renshe.zhiye_zige/records/{id}"),
            Some(&tok),
            Some("teacher_qualification"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        r.body["record"]["certificate_name"].is_string(),
        "{}",
        r.text
    );
    assert!(r.body["record"].get("certificate_no").is_none());
    let catalog = gw.get("/v1/catalog", Some(&tok), None, None).await;
    let entries = catalog.body["datasets"].as_array().unwrap();
    let teacher = entries
        .iter()
        .find(|e| e["dataset"] == "renshe.zhiye_zige")
        .unwrap();
    assert_eq!(teacher["class"], "unconditional");
    let admission = entries
        .iter()
        .find(|e| e["dataset"] == "gongan.hukou")
        .unwrap();
    assert_eq!(admission["class"], "conditional");
    assert_eq!(admission["conditions"]["case_ref_required"], true);

    let tok = gw.token("yibao", "clerk-3", &["enrollment_clerk"]);
    let catalog = gw.get("/v1/catalog", Some(&tok), None, None).await;
    let enroll = &catalog.body["datasets"][0];
    assert_eq!(enroll["class"], "conditional");
    assert_eq!(enroll["conditions"]["case_ref_required"], false);
    assert!(
        enroll["conditions"]["case_ref_exempt_reason"]
            .as_str()
            .is_some_and(|r| r.contains("办件编号")),
        "{}",
        catalog.text
    );
}
