//! Cutting off a compromised caller: department suspension (on open
//! connections too, audited, surviving restarts) and the token deny-list.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use crate::helpers::TestGateway;

const HUKOU: &str = "/v1/datasets/gongan.hukou/records";

/// An admin call with a JSON body.
async fn admin_post(gw: &TestGateway, path: &str, body: Value) -> crate::helpers::TestResponse {
    let tok = gw.token("shujuju", "admin-1", &["policy_admin"]);
    gw.client()
        .request_with_body(
            "POST",
            path,
            &[
                ("authorization".to_owned(), format!("Bearer {tok}")),
                ("content-type".to_owned(), "application/json".to_owned()),
            ],
            Bytes::from(body.to_string()),
        )
        .await
        .unwrap()
}

/// A keep-alive connection to the gateway.
async fn keep_alive(gw: &TestGateway) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let tls = gw.client().connect().await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// A lookup of `id` for a 低保 review on `sender`'s connection: the status,
/// the body and the audit sequence number.
async fn lookup_on(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    id: &str,
    tok: &str,
) -> (StatusCode, Value, u64) {
    let req = Request::get(format!("{HUKOU}/{id}"))
        .header("host", "localhost")
        .header("authorization", format!("Bearer {tok}"))
        .header("x-purpose", "dibao_review")
        .header("x-case-ref", "MZ-2026-1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender
        .send_request(req)
        .await
        .expect("the connection stays open");
    let status = resp.status();
    let seq: u64 = resp.headers()["x-audit-seq"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    (status, body, seq)
}

#[tokio::test]
async fn a_suspended_department_is_refused_on_an_open_connection_until_resumed() {
    let gw = TestGateway::start().await;
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    let tok = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    // One keep-alive connection, opened before the suspension.
    let mut sender = keep_alive(&gw).await;
    let mut lookup = async || lookup_on(&mut sender, &id, &tok).await;
    assert_eq!(lookup().await.0, StatusCode::OK);

    let r = admin_post(
        &gw,
        "/v1/admin/departments/minzheng/suspend",
        json!({"reason": "clerk credentials leaked (case SEC-7)"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["suspended"], true);
    let suspend_event = gw.store().await.get(r.audit_seq()).unwrap().unwrap().body;
    assert_eq!(suspend_event.operation, "policy.suspend");
    assert!(suspend_event.detail.unwrap().contains("SEC-7"));

    let (status, body, seq) = lookup().await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["type"], "/problems/department-suspended");
    assert!(
        !body.to_string().contains("SEC-7"),
        "the reason is for administrators"
    );
    let refused = gw.store().await.get(seq).unwrap().unwrap().body;
    assert_eq!(refused.reason.as_deref(), Some("department-suspended"));
    assert_eq!(refused.dept.as_deref(), Some("minzheng"));
    assert!(refused.fields.is_empty());

    // Other departments are served; the list shows who is suspended.
    let pension = gw.token("renshe", "clerk-1", &["pension_clerk"]);
    let other = gw
        .get(
            &format!("{HUKOU}/{id}"),
            Some(&pension),
            Some("pension_eligibility"),
            None,
        )
        .await;
    assert_eq!(other.status, StatusCode::OK);
    let admin = gw.token("shujuju", "admin-1", &["policy_admin"]);
    let list = gw
        .get("/v1/admin/departments", Some(&admin), None, None)
        .await;
    let minzheng = list.body["departments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "minzheng")
        .unwrap()
        .clone();
    assert_eq!(minzheng["suspended"], true);
    assert_eq!(minzheng["suspension"]["by"], "shujuju/admin-1");

    // The operator cannot be suspended; a reason is required; only admins may.
    let r = admin_post(
        &gw,
        "/v1/admin/departments/shujuju/suspend",
        json!({"reason": "x"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = admin_post(
        &gw,
        "/v1/admin/departments/renshe/suspend",
        json!({"reason": " "}),
    )
    .await;
    assert_eq!(r.problem_type(), Some("/problems/invalid-reason"));
    let r = admin_post(
        &gw,
        "/v1/admin/departments/nosuch/suspend",
        json!({"reason": "x"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let officer = gw.token("shujuju", "officer-1", &["privacy_officer"]);
    let r = gw
        .client()
        .request(
            "POST",
            "/v1/admin/departments/renshe/suspend",
            &[("authorization".to_owned(), format!("Bearer {officer}"))],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let r = admin_post(&gw, "/v1/admin/departments/minzheng/resume", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        lookup().await.0,
        StatusCode::OK,
        "served again on the same connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspension_survives_a_restart() {
    use crate::crash::{free_addr, spawn_gateway, wait_ready};
    let (home, _) = crate::helpers::demo_home();
    let addr = free_addr();
    let client = crate::helpers::Client::new(addr, &home.path().join("certs/ca.pem"), None);
    let key = std::fs::read(home.path().join("keys/issuer.pem")).unwrap();
    let token = |dept: &str, role: &str| {
        tongban::dev::devpki::mint_token(
            &key,
            tongban::dev::demo::DEMO_ISSUER,
            tongban::dev::demo::DEMO_AUDIENCE,
            dept,
            "someone",
            &[role.to_owned()],
            time::OffsetDateTime::now_utc().unix_timestamp(),
            600,
        )
        .unwrap()
    };
    let id = crate::helpers::sample_ids(home.path(), "gongan.hukou", 1)[0].clone();
    let lookup = vec![
        (
            "authorization".to_owned(),
            format!("Bearer {}", token("minzheng", "dibao_reviewer")),
        ),
        ("x-purpose".to_owned(), "dibao_review".to_owned()),
        ("x-case-ref".to_owned(), "MZ-2026-1".to_owned()),
    ];
    let mut gateway = spawn_gateway(home.path(), addr);
    wait_ready(&client).await;
    let r = client
        .request_with_body(
            "POST",
            "/v1/admin/departments/minzheng/suspend",
            &[
                (
                    "authorization".to_owned(),
                    format!("Bearer {}", token("shujuju", "policy_admin")),
                ),
                ("content-type".to_owned(), "application/json".to_owned()),
            ],
            Bytes::from(json!({"reason": "breach"}).to_string()),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    gateway.kill().unwrap();
    gateway.wait().unwrap();

    let mut gateway = spawn_gateway(home.path(), addr);
    wait_ready(&client).await;
    let r = client
        .request("GET", &format!("{HUKOU}/{id}"), &lookup)
        .await
        .unwrap();
    gateway.kill().unwrap();
    gateway.wait().unwrap();
    assert_eq!(
        r.problem_type(),
        Some("/problems/department-suspended"),
        "{}",
        r.text
    );
}

fn jti_of(token: &str) -> String {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn revoked_tokens_are_refused_though_valid_and_cached() {
    let gw = TestGateway::start().await;
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    let path = format!("{HUKOU}/{id}");
    let leaked = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let other = gw.token("minzheng", "clerk-008", &["dibao_reviewer"]);
    let ask = async |tok: &str| {
        gw.get(&path, Some(tok), Some("dibao_review"), Some("MZ-1"))
            .await
    };
    assert_eq!(
        ask(&leaked).await.status,
        StatusCode::OK,
        "verified and now cached"
    );

    let r = admin_post(
        &gw,
        "/v1/admin/revoked-tokens",
        json!({"jti": jti_of(&leaked), "reason": "pasted into a chat"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let added = gw.store().await.get(r.audit_seq()).unwrap().unwrap().body;
    assert_eq!(added.operation, "policy.revoke_token");
    let refused = ask(&leaked).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.text);
    assert_eq!(refused.problem_type(), Some("/problems/token-revoked"));
    let e = gw
        .store()
        .await
        .get(refused.audit_seq())
        .unwrap()
        .unwrap()
        .body;
    assert_eq!(e.reason.as_deref(), Some("token-revoked"));
    assert_eq!(
        ask(&other).await.status,
        StatusCode::OK,
        "other tokens are not affected"
    );

    // Every token of a clerk issued before now; a token issued later works.
    let r = admin_post(
        &gw,
        "/v1/admin/revoked-tokens",
        json!({"sub": "clerk-008", "reason": "left the office"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        ask(&other).await.problem_type(),
        Some("/problems/token-revoked")
    );
    gw.clock.advance(std::time::Duration::from_secs(5));
    let fresh = gw.token("minzheng", "clerk-008", &["dibao_reviewer"]);
    assert_eq!(
        ask(&fresh).await.status,
        StatusCode::OK,
        "issued after the revocation"
    );

    let admin = gw.token("shujuju", "admin-1", &["policy_admin"]);
    let list = gw
        .get("/v1/admin/revoked-tokens", Some(&admin), None, None)
        .await;
    assert_eq!(
        list.body["entries"].as_array().unwrap().len(),
        2,
        "{}",
        list.text
    );

    // Entries expire: after their expiry the list has no work left and drops them.
    let r = admin_post(
        &gw,
        "/v1/admin/revoked-tokens",
        json!({"jti": "x", "reason": "r", "expires": "1999-01-01"}),
    )
    .await;
    assert_eq!(r.problem_type(), Some("/problems/invalid-revocation"));
    let r = admin_post(
        &gw,
        "/v1/admin/revoked-tokens",
        json!({"jti": "x", "sub": "y", "reason": "r"}),
    )
    .await;
    assert_eq!(r.problem_type(), Some("/problems/invalid-revocation"));
    gw.clock.advance(std::time::Duration::from_secs(8 * 86_400));
    let late = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    assert_eq!(ask(&late).await.status, StatusCode::OK);
    assert!(
        gw.gw
            .revocations
            .refuses(
                Some(&jti_of(&leaked)),
                "clerk-007",
                None,
                gw.clock.unix_millis()
            )
            .is_none()
    );
}

#[tokio::test]
async fn a_suspended_departments_batch_is_refused_with_no_data() {
    let gw = TestGateway::start().await;
    let ids = gw.sample_ids("gongan.hukou", 2);
    let tok = gw.token("renshe", "batch-1", &["pension_clerk"]);
    let batch = || async {
        gw.client()
            .request_with_body(
                "POST",
                "/v1/datasets/gongan.hukou/records:batch",
                &[
                    ("authorization".to_owned(), format!("Bearer {tok}")),
                    ("x-purpose".to_owned(), "pension_eligibility".to_owned()),
                    ("content-type".to_owned(), "application/json".to_owned()),
                ],
                Bytes::from(json!({"resident_ids": ids}).to_string()),
            )
            .await
            .unwrap()
    };
    assert_eq!(batch().await.status, StatusCode::OK);

    let r = admin_post(
        &gw,
        "/v1/admin/departments/renshe/suspend",
        json!({"reason": "batch client compromised"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let r = batch().await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(r.problem_type(), Some("/problems/department-suspended"));
    assert!(r.body.get("results").is_none(), "{}", r.text);
    for id in &ids {
        let name = gw.sample_record("gongan.hukou", id)["name"].clone();
        assert!(!r.text.contains(name.as_str().unwrap()), "no record left");
    }
    let event = gw.store().await.get(r.audit_seq()).unwrap().unwrap().body;
    assert_eq!(event.status, 403);
    assert!(event.fields.is_empty());
}

/// A deny-list entry outlives every token it can name: by default it lives
/// as long as the longest token the issuers may mint (plus leeway), an
/// explicit shorter life is refused, and a token that would outlive that is
/// refused at the door.
#[tokio::test]
async fn a_deny_list_entry_outlives_every_token_it_names() {
    let gw = TestGateway::start().await;
    let r = admin_post(
        &gw,
        "/v1/admin/revoked-tokens",
        json!({"jti": "leaked-1", "reason": "leaked"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let entry = gw
        .gw
        .revocations
        .all()
        .into_iter()
        .find(|d| d.jti() == Some("leaked-1"))
        .unwrap();
    let life_ms = entry.expires_ms - entry.at_ms;
    assert_eq!(
        life_ms,
        (86_400 + 30) * 1000,
        "the issuer's longest token life plus its leeway"
    );

    let soon = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let r = admin_post(
        &gw,
        "/v1/admin/revoked-tokens",
        json!({"jti": "leaked-2", "reason": "leaked", "expires": soon}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.problem_type(), Some("/problems/invalid-revocation"));

    // A token that would live longer than the issuer allows is refused.
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    let now = gw.clock.unix_secs();
    let long = crate::helpers::mint(
        gw.home.path(),
        "minzheng",
        "clerk-007",
        &["dibao_reviewer"],
        now,
        2 * 86_400,
    );
    let r = gw
        .get(
            &format!("{HUKOU}/{id}"),
            Some(&long),
            Some("dibao_review"),
            Some("MZ-2026-1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert!(r.text.contains("exp"), "{}", r.text);
    let day = crate::helpers::mint(
        gw.home.path(),
        "minzheng",
        "clerk-007",
        &["dibao_reviewer"],
        now,
        86_400,
    );
    let r = gw
        .get(
            &format!("{HUKOU}/{id}"),
            Some(&day),
            Some("dibao_review"),
            Some("MZ-2026-1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

/// One keep-alive connection carrying the tokens of two callers in turn
/// (a department's integration server pooling its connections): each
/// request is answered and audited as its own caller, a token revoked
/// while the connection remembers it is refused there, and one that
/// expires is refused on the same connection too.
#[tokio::test]
async fn a_connection_remembers_a_token_without_trusting_it_for_anything_else() {
    let gw = TestGateway::start().await;
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    let first = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let second = gw.token_with("minzheng", "clerk-008", &["dibao_reviewer"], 0, 40);
    let mut sender = keep_alive(&gw).await;
    let mut lookup = async |tok: &str| lookup_on(&mut sender, &id, tok).await;
    for (tok, sub) in [
        (&first, "clerk-007"),
        (&first, "clerk-007"),
        (&second, "clerk-008"),
        (&first, "clerk-007"),
        (&second, "clerk-008"),
        (&second, "clerk-008"),
    ] {
        let (status, body, seq) = lookup(tok).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let event = gw.store().await.get(seq).unwrap().unwrap().body;
        assert_eq!(event.subject.as_deref(), Some(sub));
    }
    let r = admin_post(
        &gw,
        "/v1/admin/revoked-tokens",
        json!({"jti": jti_of(&second), "reason": "pasted into a chat"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let (status, body, _) = lookup(&second).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["type"], "/problems/token-revoked");
    assert_eq!(lookup(&first).await.0, StatusCode::OK);
    assert_eq!(lookup(&first).await.0, StatusCode::OK);
    gw.clock.advance(std::time::Duration::from_secs(700));
    let (status, body, _) = lookup(&first).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["type"], "/problems/token-expired");
}
