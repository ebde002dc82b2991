//! The 国密 audit suite: an SM3 chain with SM2-signed checkpoints, a change
//! of suite in the middle of a log (online and offline), and interoperation
//! with an independent implementation (OpenSSL 3's SM2 and SM3).

use std::path::Path;
use std::process::Command;

use hyper::StatusCode;
use serde_json::Value;

use crate::audit_review::{
    officer_get, stop_and_take_home, stopped_home_with_suite, tongban, traffic,
};
use crate::helpers::TestGateway;
use tongban::audit::checkpoint::{CheckpointSigner, Keyring, SM2_KEY_FILE};
use tongban::audit::event::{Event, FORMAT_VERSION_GM, GENESIS};
use tongban::audit::suite::{PublicKey, SM2_DEFAULT_ID, Suite};
use tongban::clock::Clock;

fn verify_export(file: &Path, keys: &[&Path]) -> (bool, Value, String) {
    let mut args = vec!["audit", "verify", "--export", file.to_str().unwrap()];
    for k in keys {
        args.push("--pubkey");
        args.push(k.to_str().unwrap());
    }
    let out = tongban(&args);
    (
        out.status.success(),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_change_of_suite_starts_a_new_epoch_and_the_whole_log_verifies_online_and_offline() {
    // An international log, stopped…
    let (home, mut config) = stopped_home_with_suite(5, Suite::International).await;
    // …goes on in the gm suite.
    config.audit.suite = Suite::Gm;
    let gw =
        TestGateway::start_on(home, config, Clock::manual(time::OffsetDateTime::now_utc())).await;
    traffic(&gw).await;
    traffic(&gw).await;

    let r = officer_get(&gw, "/v1/audit/verify").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["verdict"], "intact", "{}", r.body);
    let epochs = r.body["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 2, "{}", r.body);
    assert_eq!(epochs[0]["suite"], "international");
    assert_eq!(epochs[1]["suite"], "gm");
    assert_eq!(
        epochs[1]["first_seq"].as_u64().unwrap(),
        epochs[0]["last_seq"].as_u64().unwrap() + 1
    );
    // The new epoch opens with an event that says what changed.
    let first_gm = gw
        .store()
        .await
        .get(epochs[1]["first_seq"].as_u64().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(first_gm.body.operation, "audit.suite_change");
    let detail: Value = serde_json::from_str(first_gm.body.detail.as_deref().unwrap()).unwrap();
    assert_eq!(detail["from"], "international");
    assert_eq!(detail["to"], "gm");

    // Both public keys are published; each alone is not enough offline.
    let dir = tempfile::tempdir().unwrap();
    let pem = officer_get(&gw, "/v1/audit/checkpoint-key").await.text;
    let keys = Keyring::from_pem(&pem);
    assert_eq!(keys.keys().len(), 2, "{pem}");
    let both = dir.path().join("both.pem");
    std::fs::write(&both, &pem).unwrap();
    let mut singles = Vec::new();
    for k in keys.keys() {
        let path = dir.path().join(format!("{}.pem", k.suite));
        std::fs::write(&path, k.to_pem()).unwrap();
        singles.push(path);
    }

    for format in ["ndjson", "csv"] {
        let r = officer_get(&gw, &format!("/v1/audit/export?format={format}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        if format == "ndjson" {
            let header: Value = serde_json::from_str(r.text.lines().next().unwrap()).unwrap();
            assert_eq!(header["suites"], serde_json::json!(["international", "gm"]));
        }
        let file = dir.path().join(format!("export.{format}"));
        std::fs::write(&file, &r.text).unwrap();
        let (ok, report, err) = verify_export(&file, &[&both]);
        assert!(ok, "{format}: {report} {err}");
        assert_eq!(report["chain"]["epochs"].as_array().unwrap().len(), 2);
        assert!(err.contains("international 1..="), "{err}");
        assert!(err.contains("then gm"), "{err}");
        // The same keys given as two files work too.
        let (ok, _, err) = verify_export(&file, &[&singles[0], &singles[1]]);
        assert!(ok, "{format}: {err}");
        for single in &singles {
            let (ok, report, _) = verify_export(&file, &[single]);
            assert!(
                !ok,
                "{format}: verified with only {}: {report}",
                single.display()
            );
        }
    }

    // The checkpoint at the change names both keys and both signed it.
    let cps = gw.store().await.checkpoints().unwrap();
    let handover: Vec<_> = cps
        .iter()
        .filter(|c| c.checkpoint.previous.is_some())
        .collect();
    assert_eq!(handover.len(), 1);
    let h = handover[0];
    assert_eq!(h.checkpoint.suite, "gm");
    assert_eq!(
        h.checkpoint.previous.as_ref().unwrap().suite,
        "international"
    );
    assert_eq!(h.checkpoint.seq, epochs[0]["last_seq"].as_u64().unwrap());
    assert!(h.check(&keys).is_ok());
    let mut one_signature = (*h).clone();
    one_signature.previous_signature = None;
    assert!(one_signature.check(&keys).is_err());
}

#[tokio::test]
async fn a_suite_change_without_a_handover_checkpoint_is_refused_by_the_verifier() {
    let (home, mut config) = stopped_home_with_suite(3, Suite::International).await;
    config.audit.suite = Suite::Gm;
    let gw = TestGateway::start_on(
        home,
        config.clone(),
        Clock::manual(time::OffsetDateTime::now_utc()),
    )
    .await;
    traffic(&gw).await;
    let (home, config) = stop_and_take_home(gw).await;
    // Remove the checkpoint that hands over from one key to the other.
    {
        let db = tongban::datadir::open_path(&config.data_dir).unwrap();
        let tree = db.open_tree("audit/checkpoints").unwrap();
        let mut removed = 0;
        for item in &tree {
            let (k, v) = item.unwrap();
            let cp = tongban::audit::checkpoint::SignedCheckpoint::decode(&v).unwrap();
            if cp.checkpoint.previous.is_some() {
                tree.remove(k).unwrap();
                removed += 1;
            }
        }
        assert_eq!(removed, 1);
        db.flush().unwrap();
    }
    let out = tongban(&["audit", "verify", "--home", home.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["broken"]["problem"]
            .as_str()
            .unwrap()
            .contains("without a checkpoint"),
        "{report}"
    );
}

fn openssl(args: &[&str]) -> std::process::Output {
    crate::requires::program("openssl", "openssl");
    Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl (Debian's OpenSSL 3, with SM2 and SM3) is installed")
}

#[test]
fn sm2_checkpoints_and_sm3_hashes_interoperate_with_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let distid = format!("distid:{SM2_DEFAULT_ID}");
    let hash = sm3_as_openssl_hashes(dir.path());
    our_checkpoint_verifies_in_openssl(dir.path(), hash, &distid);
    openssl_key_and_signature_verify_in_the_gateway(dir.path(), &distid);
}

/// SM3: an event of the gm suite hashes as OpenSSL's SM3 does.
fn sm3_as_openssl_hashes(dir: &Path) -> [u8; 32] {
    let p = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let event = Event {
        version: FORMAT_VERSION_GM,
        seq: 1,
        node: "n".into(),
        prev_hash: GENESIS,
        body: tongban::audit::EventBody::system(
            1_780_000_000_000,
            tongban::audit::EventKind::Other,
            "start",
        ),
    };
    let (_, hash) = event.seal();
    std::fs::write(p("event.bin"), event.canonical()).unwrap();
    let out = openssl(&[
        "dgst",
        "-sm3",
        "-binary",
        "-out",
        &p("event.sm3"),
        &p("event.bin"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(p("event.sm3")).unwrap(), hash.to_vec());
    hash
}

/// A checkpoint the gateway signs verifies with OpenSSL
/// (and not over other bytes).
fn our_checkpoint_verifies_in_openssl(dir: &Path, hash: [u8; 32], distid: &str) {
    let p = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    std::fs::create_dir_all(dir.join("ours")).unwrap();
    let ours = CheckpointSigner::make_and_open(&dir.join("ours"), Suite::Gm).unwrap();
    let cp = ours.sign("node-1", 42, hash, 1_780_000_000_000);
    std::fs::write(p("cp.msg"), cp.checkpoint.signed_bytes()).unwrap();
    std::fs::write(p("cp.sig"), &cp.signature).unwrap();
    let sm2_pub = ours
        .keyring()
        .keys()
        .iter()
        .find(|k| k.suite == Suite::Gm)
        .unwrap()
        .to_pem();
    std::fs::write(p("ours.pub.pem"), &sm2_pub).unwrap();
    let verify = |msg: &str| {
        openssl(&[
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            &p("ours.pub.pem"),
            "-rawin",
            "-in",
            msg,
            "-sigfile",
            &p("cp.sig"),
            "-digest",
            "sm3",
            "-pkeyopt",
            distid,
        ])
    };
    let out = verify(&p("cp.msg"));
    assert!(
        out.status.success(),
        "OpenSSL refused the gateway's SM2 signature: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // And not over other bytes.
    let mut other = cp.checkpoint.clone();
    other.seq = 43;
    std::fs::write(p("other.msg"), other.signed_bytes()).unwrap();
    assert!(!verify(&p("other.msg")).status.success());
}

/// A key OpenSSL made is one the gateway loads, and a checkpoint OpenSSL
/// signs with it verifies in the gateway.
fn openssl_key_and_signature_verify_in_the_gateway(dir: &Path, distid: &str) {
    let p = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let theirs_dir = dir.join("theirs");
    std::fs::create_dir_all(&theirs_dir).unwrap();
    let key_path = theirs_dir.join(SM2_KEY_FILE);
    let out = openssl(&[
        "genpkey",
        "-algorithm",
        "SM2",
        "-out",
        key_path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = openssl(&[
        "pkey",
        "-in",
        key_path.to_str().unwrap(),
        "-pubout",
        "-out",
        &p("theirs.pub.pem"),
    ]);
    assert!(out.status.success());
    let their_pub = PublicKey::all_from_pem(&std::fs::read_to_string(p("theirs.pub.pem")).unwrap());
    assert_eq!(their_pub.len(), 1);
    assert_eq!(their_pub[0].suite, Suite::Gm);
    let theirs = CheckpointSigner::make_and_open(&theirs_dir, Suite::Gm).unwrap();
    let mut cp = theirs.sign("node-1", 7, [9; 32], 1_780_000_000_000);
    assert_eq!(cp.checkpoint.key_id, their_pub[0].key_id());
    std::fs::write(p("theirs.msg"), cp.checkpoint.signed_bytes()).unwrap();
    let out = openssl(&[
        "pkeyutl",
        "-sign",
        "-inkey",
        key_path.to_str().unwrap(),
        "-rawin",
        "-in",
        &p("theirs.msg"),
        "-out",
        &p("theirs.sig"),
        "-digest",
        "sm3",
        "-pkeyopt",
        distid,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cp.signature = std::fs::read(p("theirs.sig")).unwrap();
    let keys = Keyring::new(their_pub);
    assert!(
        cp.check(&keys).is_ok(),
        "the gateway refused OpenSSL's SM2 signature"
    );
    cp.checkpoint.seq = 8;
    assert!(cp.check(&keys).is_err());
}
