//! Signed answers: proofs that verify with the published keys, name the
//! audit event, and are recorded there by their hash.

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::json;

use crate::helpers::{TestGateway, TestResponse};

const HUKOU: &str = "/v1/datasets/gongan.hukou/records";

/// A minzheng dibao lookup of `id`, with `Prefer` if given.
pub(crate) async fn lookup(gw: &TestGateway, id: &str, prefer: Option<&str>) -> TestResponse {
    let tok = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let mut headers = vec![
        ("authorization".to_owned(), format!("Bearer {tok}")),
        ("x-purpose".to_owned(), "dibao_review".to_owned()),
        ("x-case-ref".to_owned(), "MZ-2026-7".to_owned()),
    ];
    if let Some(p) = prefer {
        headers.push(("prefer".to_owned(), p.to_owned()));
    }
    gw.client()
        .request("GET", &format!("{HUKOU}/{id}"), &headers)
        .await
        .unwrap()
}

/// The JWK Set `gw` publishes.
pub(crate) async fn jwks(gw: &TestGateway) -> serde_json::Value {
    let r = gw
        .client()
        .request("GET", "/.well-known/jwks.json", &[])
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    r.body
}

#[tokio::test]
async fn a_signed_lookup_carries_a_proof_that_verifies_and_is_in_the_log() {
    let gw = TestGateway::start().await;
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    // Lower-case x is accepted; the proof keeps the ID as it was sent.
    let sent = if id.ends_with('X') {
        id.replace('X', "x")
    } else {
        id.clone()
    };
    let r = lookup(&gw, &sent, Some("respond-async, signed")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.headers["preference-applied"], "signed");
    let proof = r.body["proof"].as_str().expect("a proof").to_owned();
    let (header, claims) = tongban::proof::verify(&proof, &jwks(&gw).await).expect("verifies");
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(claims["record"], r.body["record"]);
    assert_eq!(claims["resident_id"], json!(sent));
    assert_eq!(claims["consumer"], "minzheng");
    assert_eq!(claims["subject"], "clerk-007");
    assert_eq!(claims["purpose"], "dibao_review");
    assert_eq!(claims["case_ref"], "MZ-2026-7");
    assert_eq!(claims["dataset"], "gongan.hukou");
    assert_eq!(
        claims["grant"],
        json!({"id": "minzheng-dibao-hukou", "version": 1})
    );
    assert_eq!(claims["audit_seq"], json!(r.audit_seq()));
    assert_eq!(claims["node"], json!(gw.gw.config.node_id));
    let event = gw.store().await.get(r.audit_seq()).unwrap().unwrap().body;
    assert_eq!(event.proof, Some(tongban::proof::proof_hash(&proof)));
    // And the chain still verifies with proofs in it.
    assert!(gw.store().await.verify(None).unwrap().ok());

    // Unasked, an optional grant answers unsigned and records no proof.
    let plain = lookup(&gw, &id, None).await;
    assert!(plain.body.get("proof").is_none());
    assert!(plain.headers.get("preference-applied").is_none());
    let event = gw
        .store()
        .await
        .get(plain.audit_seq())
        .unwrap()
        .unwrap()
        .body;
    assert_eq!(event.proof, None);

    // The disclosure report marks which disclosures were signed.
    let officer = gw.token("shujuju", "officer-1", &["privacy_officer"]);
    let report = gw
        .get(
            &format!("/v1/audit/residents/{id}/disclosures"),
            Some(&officer),
            None,
            None,
        )
        .await;
    let signed: Vec<bool> = report.body["disclosures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["signed"].as_bool().unwrap())
        .collect();
    assert_eq!(signed.iter().filter(|s| **s).count(), 1, "{}", report.text);
}

#[tokio::test]
async fn a_grant_that_requires_signing_signs_every_answer_verify_and_batch_too() {
    let gw = TestGateway::start_with(|_, home| {
        for file in ["minzheng-dibao.toml", "renshe-pension.toml"] {
            let path = home.join("policies/grants").join(file);
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(
                &path,
                text.replace(
                    "[grant.conditions]\n",
                    "[grant.conditions]\nsigned_answers = \"required\"\n",
                ),
            )
            .unwrap();
        }
    })
    .await;
    let id = gw.sample_ids("gongan.hukou", 1)[0].clone();
    let r = lookup(&gw, &id, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        r.body["proof"].is_string(),
        "signed though not asked: {}",
        r.text
    );
    assert_eq!(r.headers["preference-applied"], "signed");
    let keys = jwks(&gw).await;

    // A verification: the proof holds the outcomes, never the values.
    let shebao = gw.sample_ids("renshe.shebao", 1)[0].clone();
    let tok = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let v = gw
        .client()
        .request_with_body(
            "POST",
            &format!("/v1/datasets/renshe.shebao/records/{shebao}/verify"),
            &[
                ("authorization".to_owned(), format!("Bearer {tok}")),
                ("x-purpose".to_owned(), "dibao_review".to_owned()),
                ("x-case-ref".to_owned(), "MZ-2026-7".to_owned()),
                ("content-type".to_owned(), "application/json".to_owned()),
            ],
            Bytes::from(
                json!({"conditions": [{"field": "contribution_base", "op": ">=", "value": 3000}]})
                    .to_string(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(v.status, StatusCode::OK, "{}", v.text);
    let (_, claims) = tongban::proof::verify(v.body["proof"].as_str().unwrap(), &keys).unwrap();
    assert_eq!(claims["results"], v.body["results"]);
    assert_eq!(claims["match"], v.body["match"]);
    for member in ["case_ref", "dataset", "grant", "policy_version", "purpose"] {
        assert_eq!(claims[member], v.body[member], "{member}");
    }
    assert_eq!(claims["resident_id"], shebao);
    assert_eq!(claims["operation"], "verify");
    assert!(claims.get("record").is_none());

    // A batch: one proof over the answers, naming the first and last events.
    let ids = gw.sample_ids("gongan.hukou", 2);
    let pension = gw.token("renshe", "clerk-1", &["pension_clerk"]);
    let b = gw
        .client()
        .request_with_body(
            "POST",
            &format!("{HUKOU}:batch"),
            &[
                ("authorization".to_owned(), format!("Bearer {pension}")),
                ("x-purpose".to_owned(), "pension_eligibility".to_owned()),
                ("content-type".to_owned(), "application/json".to_owned()),
            ],
            Bytes::from(json!({"resident_ids": ids}).to_string()),
        )
        .await
        .unwrap();
    assert_eq!(b.status, StatusCode::OK, "{}", b.text);
    let proof = b.body["proof"].as_str().unwrap();
    let (_, claims) = tongban::proof::verify(proof, &keys).unwrap();
    assert_eq!(claims["results"], b.body["results"]);
    assert_eq!(claims["resident_ids"], json!(ids));
    assert_eq!(claims["audit_seq"], b.body["audit"]["seq"]);
    assert_eq!(claims["last_seq"], b.body["audit"]["last_seq"]);
    let first = b.audit_seq();
    for seq in first..=first + 1 {
        let e = gw.store().await.get(seq).unwrap().unwrap().body;
        assert_eq!(
            e.proof,
            Some(tongban::proof::proof_hash(proof)),
            "every event of the batch names the proof"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_tongban_keys_rotate_a_running_gateway_signs_with_the_new_key_and_old_proofs_still_verify()
 {
    use crate::crash::{free_addr, spawn_gateway, wait_ready};
    let (home, _) = crate::helpers::demo_home();
    let addr = free_addr();
    let client = crate::helpers::Client::new(addr, &home.path().join("certs/ca.pem"), None);
    let key = std::fs::read(home.path().join("keys/issuer.pem")).unwrap();
    let token = tongban::dev::devpki::mint_token(
        &key,
        tongban::dev::demo::DEMO_ISSUER,
        tongban::dev::demo::DEMO_AUDIENCE,
        "minzheng",
        "clerk-007",
        &["dibao_reviewer".to_owned()],
        time::OffsetDateTime::now_utc().unix_timestamp(),
        600,
    )
    .unwrap();
    let id = crate::helpers::sample_ids(home.path(), "gongan.hukou", 1)[0].clone();
    let headers = vec![
        ("authorization".to_owned(), format!("Bearer {token}")),
        ("x-purpose".to_owned(), "dibao_review".to_owned()),
        ("x-case-ref".to_owned(), "MZ-2026-7".to_owned()),
        ("prefer".to_owned(), "signed".to_owned()),
    ];
    let signed = |client: crate::helpers::Client, headers: Vec<(String, String)>, id: String| async move {
        let r = client
            .request("GET", &format!("{HUKOU}/{id}"), &headers)
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body["proof"].as_str().unwrap().to_owned()
    };

    let mut gateway = spawn_gateway(home.path(), addr);
    wait_ready(&client).await;
    let old = signed(client.clone(), headers.clone(), id.clone()).await;

    // Rotated while the gateway serves: taken up without a restart.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tongban"))
        .args(["keys", "rotate", "--home"])
        .arg(home.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let old_kid = tongban::proof::verify(
        &old,
        &client
            .request("GET", "/.well-known/jwks.json", &[])
            .await
            .unwrap()
            .body,
    )
    .expect("the old proof verifies")
    .0["kid"]
        .clone();
    let start = std::time::Instant::now();
    let new = loop {
        let new = signed(client.clone(), headers.clone(), id.clone()).await;
        let set = client
            .request("GET", "/.well-known/jwks.json", &[])
            .await
            .unwrap()
            .body;
        if tongban::proof::verify(&new, &set).is_ok_and(|(h, _)| h["kid"] != old_kid) {
            break new;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "the running gateway still signs with the old key"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let set = client
        .request("GET", "/.well-known/jwks.json", &[])
        .await
        .unwrap()
        .body;
    gateway.kill().unwrap();
    gateway.wait().unwrap();
    assert_eq!(set["keys"].as_array().unwrap().len(), 2, "{set}");
    let (old_header, _) = tongban::proof::verify(&old, &set).expect("the old proof still verifies");
    let (new_header, _) = tongban::proof::verify(&new, &set).expect("the new proof verifies");
    assert_ne!(
        old_header["kid"], new_header["kid"],
        "signed by the new key"
    );

    cli_verifies(old, &set, &id);
}

/// `tongban proof verify` says what a proof attests, and refuses one with a changed byte.
fn cli_verifies(old: String, set: &serde_json::Value, id: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jwks.json"), set.to_string()).unwrap();
    std::fs::write(dir.path().join("old.jws"), &old).unwrap();
    let verify = |file: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tongban"))
            .args(["proof", "verify"])
            .arg(dir.path().join(file))
            .arg("--jwks")
            .arg(dir.path().join("jwks.json"))
            .output()
            .unwrap()
    };
    let out = verify("old.jws");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("签名有效") && text.contains("minzheng") && text.contains(id),
        "{text}"
    );
    let mut bytes = old.into_bytes();
    let middle = bytes.len() / 2;
    bytes[middle] = if bytes[middle] == b'A' { b'B' } else { b'A' };
    std::fs::write(dir.path().join("bad.jws"), bytes).unwrap();
    assert!(!verify("bad.jws").status.success());
}
