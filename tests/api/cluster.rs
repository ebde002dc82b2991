//! Cluster mode: nodes sharing one policy set in PostgreSQL (a server of
//! the test's own, see `pg.rs`), `tongban policy push` and `pull`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde_json::json;
use tempfile::TempDir;

use tongban::clock::Clock;
use tongban::config::Config;
use tongban::gateway::Gateway;
use tongban::policy::PolicySources;

use crate::admin::{call, get_grant, set, yibao_fields};
use crate::audit_review::officer_get;
use crate::helpers::{TestGateway, TestResponse, demo_home};
use crate::pg::{Postgres, Redis};
use crate::proof::{jwks, lookup};

/// A demo home whose tongban.toml has a `[cluster]` section for `pg`.
fn cluster_home(pg: &Postgres, node: &str) -> (TempDir, Config) {
    cluster_home_with(pg, node, "")
}

/// As [`cluster_home`], with more lines for `[cluster]`.
fn cluster_home_with(pg: &Postgres, node: &str, extra: &str) -> (TempDir, Config) {
    let (home, _) = demo_home();
    let path = home.path().join("tongban.toml");
    // In cluster mode the node's id is cluster.node_id (a different
    // top-level node_id is refused).
    let mut text: String = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("node_id"))
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str(&format!(
        "\n[cluster]\nnode_id = \"{node}\"\npostgres_url = \"{}\"\npolicy_check_secs = 1\nconnect_timeout_ms = 1000\n{extra}\n",
        pg.url()
    ));
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap();
    // The nodes of a cluster share the resident pseudonym key.
    std::fs::create_dir_all(&config.data_dir).unwrap();
    std::fs::write(config.data_dir.join("pseudonym.key"), CLUSTER_KEY).unwrap();
    (home, config)
}

const CLUSTER_KEY: [u8; 32] = [7; 32];

pub(crate) fn tongban(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tongban"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn push(home: &Path, dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "policy",
        "push",
        dir.to_str().unwrap(),
        "--home",
        home.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    tongban(&args)
}

fn pull(home: &Path, dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "policy",
        "pull",
        dir.to_str().unwrap(),
        "--home",
        home.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    tongban(&args)
}

pub(crate) fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn node(home: TempDir, config: Config) -> TestGateway {
    TestGateway::start_on(home, config, Clock::manual(time::OffsetDateTime::now_utc())).await
}

/// Nodes `node-a` and `node-b` on `pg`, with the demo policy set pushed.
async fn two_nodes(pg: &Postgres) -> (TestGateway, TestGateway) {
    let (home_a, config_a) = cluster_home(pg, "node-a");
    let out = push(home_a.path(), &config_a.policies_dir, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let a = node(home_a, config_a).await;
    let (home_b, config_b) = cluster_home(pg, "node-b");
    (a, node(home_b, config_b).await)
}

/// Replaces the yibao enrollment grant on `gw` with `grant`, as read with `etag`.
async fn put_yibao_grant(gw: &TestGateway, grant: &serde_json::Value, etag: &str) -> TestResponse {
    call(
        gw,
        "PUT",
        "/v1/admin/grants/yibao-enroll-hukou",
        Some(("application/json", grant.to_string())),
        &[("if-match", etag)],
    )
    .await
}

/// Waits up to `limit` for the yibao clerk's fields on `gw` to become `want`.
async fn wait_for_fields(gw: &TestGateway, want: &[&str], limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let (fields, _) = yibao_fields(gw).await;
        if fields == set(want) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "after {:?} the fields are still {fields:?}, not {want:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A node whose resident pseudonym key is not the cluster's refuses to
/// start (its events could not be found with the others').
async fn a_node_with_another_pseudonym_key_refuses_to_start(pg: &Postgres) {
    let (_ok_home, ok_config) = cluster_home(pg, "node-b");
    let gw = Gateway::start(ok_config, Clock::system()).await.unwrap();
    gw.shutdown().await;
    drop(gw);
    let (_other, other_config) = cluster_home(pg, "node-c");
    std::fs::write(other_config.data_dir.join("pseudonym.key"), [9u8; 32]).unwrap();
    let err = Gateway::start(other_config, Clock::system())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pseudonym key")
            && err.contains("not the cluster's")
            && err.contains("copy pseudonym.key"),
        "{err}"
    );
}

#[tokio::test]
async fn push_and_pull_move_a_policy_set_between_files_and_postgresql() {
    let pg = Postgres::start();
    let (home, config) = cluster_home(&pg, "node-a");
    let policies = config.policies_dir.clone();

    // No set stored yet: a node refuses to start, and says what to do.
    let err = Gateway::start(config.clone(), Clock::system())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("tongban policy push"), "{err}");
    // pull has nothing to give.
    let out = pull(home.path(), Path::new("/tmp/none"), &[]);
    assert!(
        !out.status.success() && text(&out).contains("no policy set"),
        "{}",
        text(&out)
    );

    let out = push(
        home.path(),
        &policies,
        &["--author", "pipeline", "--reason", "2026 年目录上线"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("pushed as version 1"), "{}", text(&out));
    assert_eq!(
        pg.psql("SELECT version, node_id, author, action FROM tongban_policy_version"),
        "1|cli|pipeline|push"
    );
    assert_eq!(
        pg.psql("SELECT reason FROM tongban_policy_version"),
        "2026 年目录上线",
        "the reason is kept with the version"
    );

    // The same set again: nothing new.
    let out = push(home.path(), &policies, &[]);
    assert!(
        out.status.success() && text(&out).contains("unchanged, version 1"),
        "{}",
        text(&out)
    );

    // An invalid set is refused with its located errors, and nothing is stored.
    let broken = tempfile::tempdir().unwrap();
    copy_dir(&policies, broken.path());
    let grant = broken.path().join("grants/yibao-enroll.toml");
    let g = std::fs::read_to_string(&grant).unwrap();
    std::fs::write(&grant, g.replace("\"birth_date\"", "\"birth_dat\"")).unwrap();
    let out = push(home.path(), broken.path(), &[]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("birth_dat") && text(&out).contains("nothing was pushed"),
        "{}",
        text(&out)
    );
    assert_eq!(pg.psql("SELECT count(*) FROM tongban_policy_version"), "1");

    // A changed set becomes version 2 and the access it changes is printed;
    // --expect-version guards a pipeline against an edit made since it pulled.
    std::fs::write(&grant, g.replace(", \"birth_date\"", "")).unwrap();
    let out = push(home.path(), broken.path(), &["--expect-version", "7"]);
    assert!(
        !out.status.success() && text(&out).contains("holds version 1, not 7"),
        "{}",
        text(&out)
    );
    let out = push(home.path(), broken.path(), &["--expect-version", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("pushed as version 2") && text(&out).contains("birth_date"),
        "{}",
        text(&out)
    );

    // pull writes exactly the set: files that are not in it are removed.
    let pulled = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(pulled.path().join("grants")).unwrap();
    std::fs::write(
        pulled.path().join("grants/stale.toml"),
        "# left from before",
    )
    .unwrap();
    let out = pull(home.path(), pulled.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("version 2"), "{}", text(&out));
    assert_eq!(
        PolicySources::read_dir(pulled.path()).unwrap(),
        PolicySources::read_dir(broken.path()).unwrap()
    );
    assert!(!pulled.path().join("grants/stale.toml").exists());
    // An older version on request.
    let out = pull(home.path(), pulled.path(), &["--version", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        PolicySources::read_dir(pulled.path()).unwrap(),
        PolicySources::read_dir(&policies).unwrap()
    );

    a_node_with_another_pseudonym_key_refuses_to_start(&pg).await;

    // A row whose files were altered in PostgreSQL is refused, not applied.
    pg.psql(
        "UPDATE tongban_policy_version SET files = jsonb_set(files, '{departments.toml}', '\"x\"') WHERE version = 2",
    );
    let out = pull(home.path(), pulled.path(), &[]);
    assert!(
        !out.status.success() && text(&out).contains("version 2 in PostgreSQL cannot be read"),
        "{}",
        text(&out)
    );
}

fn copy_dir(from: &Path, to: &Path) {
    for sub in ["", "datasets", "grants"] {
        std::fs::create_dir_all(to.join(sub)).unwrap();
        for e in std::fs::read_dir(from.join(sub)).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                std::fs::copy(e.path(), to.join(sub).join(e.file_name())).unwrap();
            }
        }
    }
}

/// The cluster's history is the same on every node: C lists A's change.
async fn the_cluster_history_is_the_same_on_every_node(c: &TestGateway) {
    let v = call(c, "GET", "/v1/admin/cluster/versions", None, &[]).await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.text);
    let versions = v.body["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "{}", v.text);
    assert_eq!(versions[0]["version"], 2);
    assert_eq!(versions[0]["node_id"], "node-a");
    assert_eq!(versions[0]["author"], "shujuju/admin-1");
    assert_eq!(
        versions[0]["changed_files"].as_array().unwrap().len(),
        1,
        "{}",
        v.text
    );
    assert_eq!(versions[1]["action"], "push", "{}", v.text);
    assert!(
        versions[1]["changed_files"].as_array().unwrap().len() > 1,
        "{}",
        v.text
    );
}

/// C audited the change it applied, with the author, before it enforced it,
/// and its history shows who made it.
async fn c_audited_the_change_it_applied(c: &TestGateway) {
    let h = call(
        c,
        "GET",
        "/v1/admin/history?kind=grant&id=yibao-enroll-hukou",
        None,
        &[],
    )
    .await;
    let change = &h.body["changes"][0];
    assert_eq!(change["author"], "shujuju/admin-1", "{}", h.text);
    assert_eq!(
        change["reason"], "参保登记只需姓名与性别",
        "the reason reaches every node's history: {}",
        h.text
    );
    let e = c
        .store()
        .await
        .get(change["seq"].as_u64().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(e.node, "node-c");
    assert_eq!(e.body.operation, "policy.sync");
    assert!(
        e.body
            .detail
            .as_deref()
            .unwrap()
            .contains("\"cluster_version\":2")
    );
}

/// Every node registered, alive, enforcing the newest version.
async fn every_node_registered_alive_and_current(b: &TestGateway) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let r = loop {
        let r = call(b, "GET", "/v1/admin/cluster", None, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let current = r.body["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["alive"] == true && n["policy_current"] == true)
            .count();
        if current == 3 || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(r.body["mode"], "cluster");
    assert_eq!(r.body["node_id"], "node-b");
    assert_eq!(
        (
            r.body["policy_version"].as_i64(),
            r.body["head_version"].as_i64()
        ),
        (Some(2), Some(2))
    );
    let nodes: Vec<(String, bool, i64, bool)> = r.body["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["node_id"].as_str().unwrap().to_owned(),
                n["alive"].as_bool().unwrap(),
                n["policy_version"].as_i64().unwrap(),
                n["listen"].as_str().unwrap().starts_with("127.0.0.1:"),
            )
        })
        .collect();
    assert_eq!(
        nodes,
        [
            ("node-a", true, 2, true),
            ("node-b", true, 2, true),
            ("node-c", true, 2, true)
        ]
        .map(|(n, a, v, l)| (n.to_owned(), a, v, l))
    );
}

#[tokio::test]
async fn an_edit_on_one_node_is_enforced_by_the_others_within_a_second() {
    let pg = Postgres::start();
    let (a, mut b) = two_nodes(&pg).await;
    let (home_c, config_c) = cluster_home(&pg, "node-c");
    let c = node(home_c, config_c).await;
    let all = ["name", "gender", "birth_date", "hukou_address"];
    for gw in [&a, &b, &c] {
        assert_eq!(yibao_fields(gw).await, (set(&all), 1));
    }
    // Let B and C's listeners connect.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // An administrator edits the grant on A.
    let (mut grant, etag) = get_grant(&a, "yibao-enroll-hukou").await;
    assert_eq!(
        get_grant(&c, "yibao-enroll-hukou").await.1,
        etag,
        "ETags are the same on every node"
    );
    grant["access"][0]["fields"] = json!(["name", "gender"]);
    grant["access"][0]["masked"] = json!({});
    grant["reason"] = json!("参保登记只需姓名与性别");
    let r = put_yibao_grant(&a, &grant, &etag).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let new_etag = r.headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(yibao_fields(&a).await, (set(&["name", "gender"]), 2));
    // Enforced by C (and B) within a second.
    let took = wait_for_fields(&c, &["name", "gender"], Duration::from_secs(1)).await;
    println!("node C enforced the edit after {took:?}");
    wait_for_fields(&b, &["name", "gender"], Duration::from_secs(1)).await;
    assert_eq!(
        pg.psql(
            "SELECT node_id, author, action, summary FROM tongban_policy_version WHERE version = 2"
        ),
        "node-a|shujuju/admin-1|put|put grant yibao-enroll-hukou"
    );
    the_cluster_history_is_the_same_on_every_node(&c).await;
    // The ETag moved everywhere: the old one cannot overwrite on C.
    assert_eq!(get_grant(&c, "yibao-enroll-hukou").await.1, new_etag);
    let r = put_yibao_grant(&c, &grant, &etag).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.text);
    c_audited_the_change_it_applied(&c).await;
    every_node_registered_alive_and_current(&b).await;
    // A version committed without a notification (a lost one) is still
    // picked up by the periodic check (every second here).
    pg.psql(
        "INSERT INTO tongban_policy_version (version, content_hash, files, node_id, author, action, summary)
         SELECT 3, content_hash, files, 'sql', 'test', 'revert', 'no notification' FROM tongban_policy_version WHERE version = 1",
    );
    wait_for_fields(&b, &all, Duration::from_secs(3)).await;
    wait_for_fields(&a, &all, Duration::from_secs(3)).await;

    // PostgreSQL down: lookups go on, edits are refused with 503 and change nothing.
    let mut pg = pg;
    pg.stop();
    assert_eq!(yibao_fields(&a).await.0, set(&all));
    let (mut grant, etag) = get_grant(&a, "yibao-enroll-hukou").await;
    grant["title"] = json!("医保参保登记核验户籍（数据库停机时的修改）");
    let r = put_yibao_grant(&a, &grant, &etag).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(
        r.problem_type(),
        Some("/problems/cluster-unavailable"),
        "{}",
        r.text
    );
    // A node restarted meanwhile starts with the version it applied last.
    b.stop().await;
    let home_b = b.take_home();
    drop(b);
    let config_b = Config::load(&home_b.path().join("tongban.toml")).unwrap();
    let b = node(home_b, config_b).await;
    assert_eq!(yibao_fields(&b).await.0, set(&all));

    // PostgreSQL back: edits commit again and reach the restarted node.
    pg.restart();
    grant["access"][0]["fields"] = json!(["name"]);
    grant["access"][0]["masked"] = json!({});
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = put_yibao_grant(&a, &grant, &etag).await;
        if r.status != StatusCode::SERVICE_UNAVAILABLE || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        pg.psql("SELECT max(version) FROM tongban_policy_version"),
        "4"
    );
    wait_for_fields(&b, &["name"], Duration::from_secs(15)).await;
    wait_for_fields(&c, &["name"], Duration::from_secs(15)).await;
}

#[tokio::test]
async fn a_single_node_says_so_and_the_cluster_route_is_for_administrators() {
    let gw = TestGateway::start().await;
    let r = call(&gw, "GET", "/v1/admin/cluster/versions", None, &[]).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.problem_type(), Some("/problems/not-a-cluster"));
    let r = call(&gw, "GET", "/v1/admin/cluster", None, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["mode"], "single");
    assert_eq!(r.body["nodes"], json!([]));
    assert!(r.body["policy_version"].is_null() && r.body["audit"]["seq"].is_u64());
    let officer = gw.token("shujuju", "officer-1", &["privacy_officer"]);
    let r = gw
        .get("/v1/admin/cluster", Some(&officer), None, None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(r.problem_type(), Some("/problems/role-required"));
}

/// Waits until `gw` has copied every durable audit event to PostgreSQL.
async fn wait_shipped(gw: &TestGateway, limit: Duration) -> u64 {
    let start = Instant::now();
    loop {
        let r = gw.readiness().await;
        let s = &r.body["cluster"]["audit_shipping"];
        let (durable, lag) = (
            s["durable_seq"].as_u64().unwrap(),
            s["lag_events"].as_u64().unwrap(),
        );
        if lag == 0 && durable > 0 {
            return durable;
        }
        assert!(start.elapsed() < limit, "audit shipping lags: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A yibao enrollment lookup of `id` through `gw` with `tok`.
async fn yibao_lookup(gw: &TestGateway, tok: &str, id: &str) -> TestResponse {
    gw.get(
        &format!("/v1/datasets/gongan.hukou/records/{id}"),
        Some(tok),
        Some("medical_insurance_enrollment"),
        None,
    )
    .await
}

/// Lookups through `gw`; returns the audit sequence numbers acknowledged.
async fn lookups(gw: &TestGateway, n: usize) -> Vec<u64> {
    let ids = gw.sample_ids("gongan.hukou", n);
    let tok = gw.token("yibao", "clerk-2", &["enrollment_clerk"]);
    let mut seqs = Vec::new();
    for id in ids {
        let r = yibao_lookup(gw, &tok, &id).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        seqs.push(r.audit_seq());
    }
    seqs
}

/// (rows, distinct seqs, max seq) of a node in the central copy.
fn central(pg: &Postgres, node: &str) -> (u64, u64, u64) {
    let out = pg.psql(&format!(
        "SELECT count(*), count(DISTINCT seq), coalesce(max(seq), 0) FROM tongban_audit_event WHERE node_id = '{node}'"
    ));
    let v: Vec<u64> = out.split('|').map(|x| x.parse().unwrap()).collect();
    (v[0], v[1], v[2])
}

fn acknowledged_in_central(pg: &Postgres, node: &str, seqs: &[u64]) -> u64 {
    let list: Vec<String> = seqs.iter().map(ToString::to_string).collect();
    pg.psql(&format!(
        "SELECT count(*) FROM tongban_audit_event WHERE node_id = '{node}' AND seq IN ({}) AND operation = 'lookup'",
        list.join(",")
    ))
    .parse()
    .unwrap()
}

/// The central copy verifies, node by node.
/// Altered columns, bytes, checkpoints and removed rows are named.
fn the_central_copy_verifies_node_by_node(pg: &Postgres, home: &Path, head_b: u64) {
    let verify = |home: &Path| {
        tongban(&[
            "audit",
            "verify",
            "--cluster",
            "--home",
            home.to_str().unwrap(),
        ])
    };
    let out = verify(home);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("node node-a: intact")
            && text(&out).contains(&format!("node node-b: intact: {head_b} events after anchor 0, head {head_b}, 1 checkpoints verified")),
        "{}",
        text(&out)
    );
    // One altered column of one row: the node and the sequence are named.
    let dept = pg.psql("SELECT dept FROM tongban_audit_event WHERE node_id = 'node-b' AND seq = 7");
    pg.psql("UPDATE tongban_audit_event SET dept = 'gongan' WHERE node_id = 'node-b' AND seq = 7");
    let out = verify(home);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("node node-b: BROKEN at event 7"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("node node-a: intact"), "{}", text(&out));
    pg.psql(&format!(
        "UPDATE tongban_audit_event SET dept = '{dept}' WHERE node_id = 'node-b' AND seq = 7"
    ));
    assert!(verify(home).status.success());
    // A checkpoint's row altered: its signature no longer verifies.
    pg.psql("UPDATE tongban_audit_checkpoint SET signed = set_byte(signed, length(signed) - 1, get_byte(signed, length(signed) - 1) # 1) WHERE node_id = 'node-b'");
    let out = verify(home);
    assert!(
        !out.status.success()
            && text(&out).contains(&format!("node node-b: BROKEN at event {head_b}")),
        "{}",
        text(&out)
    );
    // Altered bytes, and a removed row.
    for (sql, named) in [
        (
            "UPDATE tongban_audit_event SET stored = set_byte(stored, 20, get_byte(stored, 20) # 1) WHERE node_id = 'node-a' AND seq = 3",
            "node node-a: BROKEN at event 3",
        ),
        (
            "DELETE FROM tongban_audit_event WHERE node_id = 'node-b' AND seq = 9",
            "node node-b: BROKEN at event",
        ),
    ] {
        pg.psql(sql);
        let out = verify(home);
        assert!(
            !out.status.success() && text(&out).contains(named),
            "{}",
            text(&out)
        );
    }
}

#[tokio::test]
async fn every_nodes_audit_chain_is_copied_to_postgresql_once_and_verified_there() {
    let mut pg = Postgres::start();
    let (mut a, b) = two_nodes(&pg).await;

    let mut acked_a = lookups(&a, 20).await;
    let mut acked_b = lookups(&b, 20).await;
    let head_a = wait_shipped(&a, Duration::from_secs(5)).await;
    let head_b = wait_shipped(&b, Duration::from_secs(5)).await;
    assert_eq!(central(&pg, "node-a"), (head_a, head_a, head_a));
    assert_eq!(central(&pg, "node-b"), (head_b, head_b, head_b));
    // The table is partitioned by month.
    let parts: u64 = pg
        .psql("SELECT count(*) FROM pg_inherits WHERE inhparent = 'tongban_audit_event'::regclass")
        .parse()
        .unwrap();
    assert!(parts >= 1);

    // A restarted node resumes where PostgreSQL says it stopped: nothing twice.
    a.stop().await;
    let home_a = a.take_home();
    drop(a);
    let config_a = Config::load(&home_a.path().join("tongban.toml")).unwrap();
    let a = node(home_a, config_a).await;
    acked_a.extend(lookups(&a, 10).await);
    let head_a = wait_shipped(&a, Duration::from_secs(5)).await;
    assert_eq!(central(&pg, "node-a"), (head_a, head_a, head_a));

    // PostgreSQL away: the nodes serve and audit locally, and ship it all
    // once it is back, without loss or duplicates.
    pg.stop();
    acked_b.extend(lookups(&b, 15).await);
    let r = b.client().request("GET", "/readyz", &[]).await.unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = b.readiness().await;
    let s = &r.body["cluster"]["audit_shipping"];
    assert!(
        s["lag_events"].as_u64().unwrap() >= 15 && s["error"].is_string(),
        "{s}"
    );
    pg.restart();
    let head_b = wait_shipped(&b, Duration::from_secs(15)).await;
    assert_eq!(central(&pg, "node-b"), (head_b, head_b, head_b));
    // A checkpoint signed after its event was shipped follows it.
    let cp = b.gw.audit.checkpoint_now().await.unwrap();
    assert_eq!(cp, head_b);
    let start = Instant::now();
    while pg.psql("SELECT count(*) FROM tongban_audit_checkpoint WHERE node_id = 'node-b'") == "0" {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the checkpoint was not shipped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        acknowledged_in_central(&pg, "node-a", &acked_a),
        acked_a.len() as u64
    );
    assert_eq!(
        acknowledged_in_central(&pg, "node-b", &acked_b),
        acked_b.len() as u64
    );

    the_central_copy_verifies_node_by_node(&pg, a.home.path(), head_b);
}

/// How many of `n` yibao lookups spread over `nodes` (in turn) are admitted.
async fn admitted(nodes: &[&TestGateway], n: usize) -> usize {
    let id = nodes[0].sample_ids("gongan.hukou", 1).remove(0);
    let mut ok = 0;
    for i in 0..n {
        let gw = nodes[i % nodes.len()];
        let tok = gw.token("yibao", "clerk-2", &["enrollment_clerk"]);
        let r = yibao_lookup(gw, &tok, &id).await;
        match r.status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(
                    r.problem_type(),
                    Some("/problems/rate-limited"),
                    "{}",
                    r.text
                );
            }
            other => panic!("{other}: {}", r.text),
        }
    }
    ok
}

/// Sets the yibao department's limit in a home's tongban.toml.
fn limit_yibao(home: &Path, rate: &str) -> Config {
    let path = home.join("tongban.toml");
    let text: String = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("[rate_limit.departments]") && !l.starts_with("yibao = "))
        .map(|l| format!("{l}\n"))
        .collect();
    let text = text.replacen(
        "\n[cluster]",
        &format!("\n[rate_limit.departments]\nyibao = \"{rate}\"\n\n[cluster]"),
        1,
    );
    std::fs::write(&path, text).unwrap();
    Config::load(&path).unwrap()
}

#[tokio::test]
async fn a_department_limit_holds_across_the_nodes_with_redis_and_without() {
    let pg = Postgres::start();
    let mut redis = Redis::start();
    let redis_line = format!("redis_url = \"{}\"\nheartbeat_secs = 1", redis.url());
    let mut nodes = Vec::new();
    for name in ["node-a", "node-b", "node-c"] {
        let (home, _) = cluster_home_with(&pg, name, &redis_line);
        let config = limit_yibao(home.path(), "30/min");
        if nodes.is_empty() {
            let out = push(home.path(), &config.policies_dir, &[]);
            assert!(out.status.success(), "{}", text(&out));
        }
        nodes.push(node(home, config).await);
    }
    let all: Vec<&TestGateway> = nodes.iter().collect();
    // 30 a minute for the whole cluster: 90 requests through three nodes
    // within a few seconds admit 30 (and the refill of those seconds).
    let ok = admitted(&all, 90).await;
    println!("with Redis: {ok} of 90 admitted (30/min)");
    assert!((30..=33).contains(&ok), "admitted {ok} of 90 with Redis");

    // Redis away: each node enforces its share, a third of the limit, so the
    // cluster still admits about the limit. (A new limit, 60 a minute, so the
    // nodes start from full local budgets.)
    redis.stop();
    drop(all);
    let mut fresh = Vec::new();
    for mut gw in nodes {
        gw.stop().await;
        let home = gw.take_home();
        drop(gw);
        let config = limit_yibao(home.path(), "60/min");
        fresh.push(node(home, config).await);
    }
    // Wait until every node counts three live ones.
    let start = Instant::now();
    while fresh
        .iter()
        .any(|gw| gw.gw.cluster.as_ref().unwrap().limits.share() != 3)
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "live nodes not counted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all: Vec<&TestGateway> = fresh.iter().collect();
    let ok = admitted(&all, 120).await;
    println!("Redis away: {ok} of 120 admitted (60/min, shared by 3)");
    assert!(
        (54..=66).contains(&ok),
        "admitted {ok} of 120 without Redis (60/min)"
    );
    let m = fresh[0]
        .client()
        .request("GET", "/metrics", &[])
        .await
        .unwrap();
    assert!(m.text.contains("tongban_cluster_redis_up 0"), "{}", m.text);
    assert!(
        m.text.contains("tongban_cluster_limit_share 3"),
        "{}",
        m.text
    );
}

#[tokio::test]
async fn in_cluster_mode_only_what_postgresql_holds_may_be_pruned() {
    let mut pg = Postgres::start();
    let (home, _) = cluster_home(&pg, "node-a");
    let file = home.path().join("tongban.toml");
    let toml = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        toml.replacen(
            "[audit]\n",
            "[audit]\nretention_days = 183\ncheckpoint_every = 2\n",
            1,
        ),
    )
    .unwrap();
    let config = Config::load(&file).unwrap();
    let out = push(home.path(), &config.policies_dir, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let long_ago = time::OffsetDateTime::now_utc() - time::Duration::days(200);
    let mut gw = TestGateway::start_on(home, config, Clock::manual(long_ago)).await;
    lookups(&gw, 6).await;
    let shipped = wait_shipped(&gw, Duration::from_secs(5)).await;
    // Events PostgreSQL never received (it is down), then the node stops.
    pg.stop();
    lookups(&gw, 6).await;
    gw.gw.audit.checkpoint_now().await.unwrap();
    gw.stop().await;
    let home = gw.take_home();
    drop(gw);
    let h = home.path().to_str().unwrap();
    let out = tongban(&[
        "audit",
        "export",
        "--home",
        h,
        "--output",
        home.path().join("x.ndjson").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // Without PostgreSQL, nothing is pruned.
    let out = tongban(&["audit", "prune", "--home", h]);
    assert!(
        !out.status.success() && text(&out).contains("pruning needs PostgreSQL"),
        "{}",
        text(&out)
    );
    // With it, only through what it holds; the rest waits for the shipper.
    pg.restart();
    let out = tongban(&["audit", "prune", "--home", h]);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["limited_by"], "not yet copied to PostgreSQL",
        "{report}"
    );
    assert!(
        report["through"].as_u64().unwrap() <= shipped,
        "{report} (shipped {shipped})"
    );
}

/// Signs a checkpoint on `gw` and waits until it is in PostgreSQL; returns its sequence number.
async fn checkpoint_shipped(pg: &Postgres, gw: &TestGateway) -> u64 {
    let cp = gw.gw.audit.checkpoint_now().await.unwrap();
    let node = &gw.gw.config.node_id;
    let start = Instant::now();
    while pg.psql(&format!(
        "SELECT count(*) FROM tongban_audit_checkpoint WHERE node_id = '{node}' AND seq = {cp}"
    )) == "0"
    {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "checkpoint {cp} of {node} not shipped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cp
}

/// The (node, seq) of every event of a search through `gw`, page by page
/// (`limit` a page), checking that no event comes twice.
async fn search_all(gw: &TestGateway, query: &str, limit: usize) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => format!("/v1/audit/events?{query}&limit={limit}"),
            Some(c) => format!("/v1/audit/events?{query}&limit={limit}&cursor={c}"),
        };
        let r = officer_get(gw, &path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
        let events = r.body["events"].as_array().unwrap();
        assert!(events.len() <= limit);
        for e in events {
            out.push((
                e["node"].as_str().unwrap().to_owned(),
                e["seq"].as_u64().unwrap(),
            ));
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let distinct: std::collections::BTreeSet<_> = out.iter().collect();
    assert_eq!(distinct.len(), out.len(), "an event came twice: {out:?}");
    out
}

/// Statistics count both nodes (the window is wide: each test node's
/// clock stands still at its start).
async fn statistics_count_both_nodes(a: &TestGateway) {
    let r = officer_get(a, "/v1/audit/stats?from=2000-01-01&to=2100-01-01").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let days = r.body["days"].as_object().unwrap();
    let by_node = |n: &str| -> u64 {
        days.values()
            .map(|d| d["by_node"][n].as_u64().unwrap_or(0))
            .sum()
    };
    assert!(
        by_node("node-a") >= 11 && by_node("node-b") >= 9,
        "{}",
        r.text
    );
    let yibao: u64 = days
        .values()
        .map(|d| d["by_consumer"]["yibao"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(yibao, 20, "{}", r.text);
}

/// An export of the central copy: one section per node, each verified
/// offline with that node's key; a removed event is named with its node.
async fn an_export_of_the_central_copy_verifies_per_node(
    pg: &Postgres,
    a: &TestGateway,
    b: &TestGateway,
) {
    for gw in [a, b] {
        checkpoint_shipped(pg, gw).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut keys = Vec::new();
    for gw in [a, b] {
        let key = officer_get(gw, "/v1/audit/checkpoint-key").await;
        let file = dir.path().join(format!("{}.pem", gw.gw.config.node_id));
        std::fs::write(&file, &key.text).unwrap();
        keys.push(file);
    }
    let verify = |file: &Path| {
        let mut args = vec!["audit", "verify", "--export", file.to_str().unwrap()];
        for k in &keys {
            args.extend(["--pubkey", k.to_str().unwrap()]);
        }
        tongban(&args)
    };
    for format in ["ndjson", "csv"] {
        let r = officer_get(b, &format!("/v1/audit/export?format={format}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let file = dir.path().join(format!("cluster.{format}"));
        std::fs::write(&file, &r.text).unwrap();
        let out = verify(&file);
        assert!(out.status.success(), "{format}: {}", text(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let sections = report["sections"].as_array().unwrap();
        assert_eq!(sections.len(), 2, "{report}");
        assert_eq!(sections[0]["node"], "node-a");
        assert_eq!(sections[1]["node"], "node-b");
        for s in sections {
            assert_eq!(s["uncovered_tail"], 0, "{s}");
            assert!(s["chain"]["checked"].as_u64().unwrap() >= 9, "{s}");
        }
        // One of node-b's events removed.
        let kept: Vec<&str> = r
            .text
            .lines()
            .filter(|l| {
                !(l.contains("\"node\":\"node-b\"") && l.contains("\"seq\":5,")
                    || l.starts_with("event,5,") && l.contains(",node-b,"))
            })
            .collect();
        assert_eq!(
            kept.len() + 1,
            r.text.lines().count(),
            "{format}: the line was not found"
        );
        std::fs::write(&file, kept.join("\n") + "\n").unwrap();
        let out = verify(&file);
        assert!(!out.status.success(), "{format}: {}", text(&out));
        assert!(
            text(&out)
                .contains("export of node node-b BROKEN at event 6: events 5 to 5 are missing")
                && text(&out).contains("export of node node-a intact"),
            "{format}: {}",
            text(&out)
        );
    }
    // One node's section alone.
    let r = officer_get(a, "/v1/audit/export?node=node-b").await;
    assert!(
        r.text
            .lines()
            .next()
            .unwrap()
            .contains("\"node\":\"node-b\""),
        "{}",
        r.text
    );
    assert!(!r.text.contains("\"node\":\"node-a\""));
}

#[tokio::test]
async fn officers_search_count_and_export_every_nodes_events() {
    let mut pg = Postgres::start();
    let (a, b) = two_nodes(&pg).await;

    let acked_a = lookups(&a, 8).await;
    let acked_b = lookups(&b, 9).await;
    // At once, shipped or not, a search on A finds every lookup through
    // either node (A's own unshipped events are read from its log).
    let more_a = lookups(&a, 3).await;
    let want: std::collections::BTreeSet<(String, u64)> = acked_a
        .iter()
        .chain(&more_a)
        .map(|s| ("node-a".to_owned(), *s))
        .collect();
    wait_shipped(&b, Duration::from_secs(5)).await;
    let found = search_all(&a, "consumer=yibao&decision=allow", 4).await;
    let found_set: std::collections::BTreeSet<(String, u64)> = found.iter().cloned().collect();
    assert!(found_set.is_superset(&want), "{found:?}");
    for s in &acked_b {
        assert!(found_set.contains(&("node-b".to_owned(), *s)), "{found:?}");
    }
    assert_eq!(found.len(), 20, "{found:?}");
    // Newest first across the nodes; the same pages through B.
    let times: Vec<i64> = {
        let r = officer_get(&a, "/v1/audit/events?consumer=yibao&limit=100").await;
        r.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                time::OffsetDateTime::parse(
                    e["time"].as_str().unwrap(),
                    &time::format_description::well_known::Rfc3339,
                )
                .unwrap()
                .unix_timestamp_nanos() as i64
            })
            .collect()
    };
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    wait_shipped(&a, Duration::from_secs(5)).await;
    assert_eq!(
        search_all(&b, "consumer=yibao&decision=allow", 7).await,
        found
    );
    // Filters by node; scope=node is this node's log alone.
    let only_b = search_all(&a, "consumer=yibao&node=node-b", 50).await;
    assert_eq!(only_b.len(), 9);
    assert!(only_b.iter().all(|(n, _)| n == "node-b"));
    let here = search_all(&a, "consumer=yibao&scope=node", 50).await;
    assert_eq!(here.len(), 11);
    assert!(here.iter().all(|(n, _)| n == "node-a"));
    // A resident looked up through B, found from A, and B's event read from A.
    let id = b.sample_ids("gongan.hukou", 9).pop().unwrap();
    let r = officer_get(&a, &format!("/v1/audit/events?resident={id}&node=node-b")).await;
    let e = &r.body["events"][0];
    assert_eq!(e["node"], "node-b", "{}", r.text);
    let seq = e["seq"].as_u64().unwrap();
    let r = officer_get(&a, &format!("/v1/audit/events/{seq}?node=node-b")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["node"], "node-b");
    assert_eq!(r.body["hash"], e["hash"]);
    let r = officer_get(&a, "/v1/audit/events/1?node=node-z").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    // A cursor of one kind of search is refused by the other.
    let r = officer_get(&a, "/v1/audit/events?consumer=yibao&limit=2").await;
    let c = r.body["next_cursor"].as_str().unwrap();
    let r = officer_get(&a, &format!("/v1/audit/events?scope=node&cursor={c}")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);

    statistics_count_both_nodes(&a).await;

    an_export_of_the_central_copy_verifies_per_node(&pg, &a, &b).await;

    // PostgreSQL away: cluster-wide reads say so; this node's own still work.
    pg.stop();
    for path in [
        "/v1/audit/events?consumer=yibao",
        "/v1/audit/stats",
        "/v1/audit/export",
    ] {
        let r = officer_get(&a, path).await;
        assert_eq!(
            r.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{path}: {}",
            r.text
        );
        assert_eq!(r.problem_type(), Some("/problems/cluster-unavailable"));
    }
    assert_eq!(
        search_all(&a, "consumer=yibao&scope=node", 50).await.len(),
        11
    );
    let r = officer_get(&a, "/v1/audit/stats?scope=node").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

/// The status of one yibao lookup through `gw` with a token issued now.
async fn yibao_status(gw: &TestGateway) -> (StatusCode, Option<String>) {
    let id = gw.sample_ids("gongan.hukou", 1).remove(0);
    let tok = gw.token("yibao", "clerk-9", &["enrollment_clerk"]);
    let r = yibao_lookup(gw, &tok, &id).await;
    (r.status, r.problem_type().map(str::to_owned))
}

/// Waits up to `limit` until a yibao lookup through `gw` answers `want`.
async fn wait_for_status(gw: &TestGateway, want: StatusCode, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let (status, problem) = yibao_status(gw).await;
        if status == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "after {:?} still {status} {problem:?}, not {want}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn post_admin(gw: &TestGateway, path: &str, body: serde_json::Value) -> TestResponse {
    call(
        gw,
        "POST",
        path,
        Some(("application/json", body.to_string())),
        &[],
    )
    .await
}

/// A token revoked through B is refused by A; lifted through A, B serves
/// it again.
async fn a_token_denied_on_one_node_and_lifted_on_another(a: &TestGateway, b: &TestGateway) {
    // A token revoked through B is refused by A.
    let r = post_admin(
        b,
        "/v1/admin/revoked-tokens",
        json!({"sub": "clerk-2", "reason": "token leaked"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let start = Instant::now();
    let old = a.token_with("yibao", "clerk-2", &["enrollment_clerk"], -60, 3600);
    loop {
        let id = a.sample_ids("gongan.hukou", 1).remove(0);
        let r = yibao_lookup(a, &old, &id).await;
        if r.status == StatusCode::UNAUTHORIZED {
            assert_eq!(
                r.problem_type(),
                Some("/problems/token-revoked"),
                "{}",
                r.text
            );
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(1), "{}", r.text);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Lifted through A: B serves the token again.
    let r = call(
        a,
        "DELETE",
        "/v1/admin/revoked-tokens/sub:clerk-2",
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let old_b = b.token_with("yibao", "clerk-2", &["enrollment_clerk"], -60, 3600);
    let start = Instant::now();
    loop {
        let id = b.sample_ids("gongan.hukou", 1).remove(0);
        let r = yibao_lookup(b, &old_b, &id).await;
        if r.status == StatusCode::OK {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(2), "{}", r.text);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_emergency_stop_on_one_node_stops_the_department_on_every_node() {
    let mut pg = Postgres::start();
    let (a, b) = two_nodes(&pg).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(yibao_status(&b).await.0, StatusCode::OK);

    // Suspended through A: refused by B within a second, and B audited it.
    let r = post_admin(
        &a,
        "/v1/admin/departments/yibao/suspend",
        json!({"reason": "breach under investigation"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        yibao_status(&a).await.1.as_deref(),
        Some("/problems/department-suspended")
    );
    let took = wait_for_status(&b, StatusCode::FORBIDDEN, Duration::from_secs(1)).await;
    println!("node B suspended the department after {took:?}");
    assert_eq!(
        yibao_status(&b).await.1.as_deref(),
        Some("/problems/department-suspended")
    );
    let r = call(&b, "GET", "/v1/admin/departments", None, &[]).await;
    let yibao = r.body["departments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "yibao")
        .unwrap()
        .clone();
    assert_eq!(yibao["suspended"], true, "{}", r.text);
    assert_eq!(yibao["suspension"]["by"], "shujuju/admin-1", "{}", r.text);
    let synced = b
        .store()
        .await
        .events_desc(1, u64::MAX)
        .map(|e| e.unwrap().1)
        .find(|e| e.body.operation == "policy.sync")
        .expect("B audited the stop it applied");
    let detail = synced.body.detail.unwrap();
    assert!(
        detail.contains("\"action\":\"suspend\"") && detail.contains("\"node\":\"node-a\""),
        "{detail}"
    );

    // Resumed through B: A serves again.
    let r = post_admin(&b, "/v1/admin/departments/yibao/resume", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    wait_for_status(&a, StatusCode::OK, Duration::from_secs(1)).await;

    a_token_denied_on_one_node_and_lifted_on_another(&a, &b).await;

    // PostgreSQL away: a suspension through A is in force on A at once,
    // kept, and reaches B once PostgreSQL is back.
    pg.stop();
    let r = post_admin(
        &a,
        "/v1/admin/departments/yibao/suspend",
        json!({"reason": "second incident"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(yibao_status(&a).await.0, StatusCode::FORBIDDEN);
    assert_eq!(a.gw.cluster.as_ref().unwrap().outbox().len(), 1);
    assert_eq!(
        yibao_status(&b).await.0,
        StatusCode::OK,
        "B has not heard of it yet"
    );
    pg.restart();
    wait_for_status(&b, StatusCode::FORBIDDEN, Duration::from_secs(15)).await;
    assert!(a.gw.cluster.as_ref().unwrap().outbox().is_empty());

    // A node that joins later starts with every stop in force.
    let (home_c, config_c) = cluster_home(&pg, "node-c");
    let c = node(home_c, config_c).await;
    assert_eq!(
        yibao_status(&c).await.1.as_deref(),
        Some("/problems/department-suspended")
    );
    let r = call(&c, "GET", "/v1/admin/revoked-tokens", None, &[]).await;
    assert_eq!(
        r.body["entries"],
        json!([]),
        "the lifted entry stays lifted: {}",
        r.text
    );
    let r = call(&c, "GET", "/v1/admin/cluster", None, &[]).await;
    assert_eq!(r.body["stops_pending"], 0, "{}", r.text);
    assert!(r.body["stops_applied"].as_i64().unwrap() >= 4, "{}", r.text);
}

#[tokio::test]
async fn the_central_copy_drops_only_old_months_exported_and_checkpointed() {
    let pg = Postgres::start();
    let (home, _) = cluster_home(&pg, "node-a");
    let file = home.path().join("tongban.toml");
    let toml = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        toml.replacen("[audit]\n", "[audit]\nretention_days = 183\n", 1),
    )
    .unwrap();
    let config = Config::load(&file).unwrap();
    let out = push(home.path(), &config.policies_dir, &[]);
    assert!(out.status.success(), "{}", text(&out));
    // Events of a month that ended long enough ago.
    let long_ago = time::OffsetDateTime::now_utc() - time::Duration::days(250);
    let gw = TestGateway::start_on(home, config, Clock::manual(long_ago)).await;
    lookups(&gw, 5).await;
    let old_head = wait_shipped(&gw, Duration::from_secs(5)).await;
    // From here on the node's events are of this month.
    gw.clock.advance(Duration::from_secs(250 * 86_400));
    let cp = checkpoint_shipped(&pg, &gw).await;
    let h = gw.home.path().to_str().unwrap().to_owned();
    let prune = |dry: bool| {
        let mut args = vec!["audit", "prune", "--cluster", "--home", h.as_str()];
        if dry {
            args.push("--dry-run");
        }
        let out = tongban(&args);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    // Not exported from the central copy: nothing goes.
    let report = prune(false);
    assert!(
        report["limited_by"]
            .as_str()
            .unwrap()
            .contains("not yet exported from the central copy"),
        "{report}"
    );
    assert_eq!(report["partitions"], json!([]));
    let r = officer_get(&gw, "/v1/audit/export?node=node-a").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // Recorded once the connection's flush after the last byte succeeded.
    let deadline = Instant::now() + Duration::from_secs(5);
    let exported = loop {
        let through =
            pg.psql("SELECT through_seq FROM tongban_audit_exported WHERE node_id = 'node-a'");
        if let Ok(through) = through.parse::<u64>()
            && (through >= cp || Instant::now() > deadline)
        {
            break through;
        }
        assert!(Instant::now() < deadline, "the export was not recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exported >= cp, "{exported}");
    let rows_before = central(&pg, "node-a").0;
    let dry = prune(true);
    assert_eq!(dry["partitions"].as_array().unwrap().len(), 1, "{dry}");
    assert_eq!(
        central(&pg, "node-a").0,
        rows_before,
        "a dry run removes nothing"
    );
    let report = prune(false);
    let part = &report["partitions"][0];
    let through = part["nodes"][0]["through_seq"].as_u64().unwrap();
    assert_eq!(through, old_head, "{report}");
    assert_eq!(
        part["nodes"][0]["events"].as_u64().unwrap(),
        old_head,
        "{report}"
    );
    assert_eq!(
        pg.psql("SELECT count(*) FROM tongban_audit_prune WHERE node_id = 'node-a'"),
        "1"
    );
    // The rest verifies from the new anchor.
    let out = tongban(&["audit", "verify", "--cluster", "--home", &h]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("after anchor {through}")),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn a_proof_signed_by_one_node_verifies_with_the_key_set_of_another() {
    let pg = Postgres::start();
    let (a, b) = two_nodes(&pg).await;
    let own_a = a.gw.answer_keys.load().kid().to_owned();
    assert_ne!(
        own_a,
        b.gw.answer_keys.load().kid(),
        "each node has its own key"
    );
    // A started first: B's set lists both at once, A's after a heartbeat.
    let set_b = jwks(&b).await;
    let kids = |set: &serde_json::Value| -> Vec<String> {
        set["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(kids(&set_b).contains(&own_a), "{set_b}");
    let id = a.sample_ids("gongan.hukou", 1).remove(0);
    let r = lookup(&a, &id, Some("signed")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let proof = r.body["proof"].as_str().unwrap();
    tongban::proof::verify(proof, &set_b).expect("A's proof verifies with B's set");
    let start = Instant::now();
    loop {
        let set_a = jwks(&a).await;
        if kids(&set_a).contains(&b.gw.answer_keys.load().kid().to_owned()) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{set_a}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops are applied in the order they were made, not the order they reach
/// PostgreSQL: a resumption made on a node cut off from the cluster before
/// a suspension made elsewhere (it waited in that node's outbox) reaches
/// every node after it, is recorded, and lifts nothing. One made after it
/// by an administrator who saw it does lift it, everywhere.
#[tokio::test]
async fn a_stale_resumption_from_a_cut_off_node_does_not_lift_a_later_suspension() {
    let pg = Postgres::start();
    let (a, b) = two_nodes(&pg).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let r = post_admin(
        &b,
        "/v1/admin/departments/yibao/suspend",
        json!({"reason": "breach under investigation"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    wait_for_status(&a, StatusCode::FORBIDDEN, Duration::from_secs(2)).await;
    let suspended_at = b.gw.suspensions.get("yibao").unwrap().at_ms;

    // Node A's resumption from a minute before, kept while it was cut off,
    // reaches PostgreSQL only now.
    let cluster = a.gw.cluster.as_ref().unwrap();
    cluster
        .queue_stop(&tongban::cluster::stops::StopChange::Resume {
            dept: "yibao".into(),
            at_ms: Some(suspended_at - 60_000),
        })
        .unwrap();
    a.gw.sync_cluster_stops().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for node in [&a, &b] {
        assert_eq!(
            yibao_status(node).await.1.as_deref(),
            Some("/problems/department-suspended"),
            "the stale resumption lifted the suspension"
        );
    }
    let recorded = b
        .store()
        .await
        .events_desc(1, u64::MAX)
        .map(|e| e.unwrap().1)
        .find(|e| {
            e.body.operation == "policy.sync"
                && e.body
                    .detail
                    .as_deref()
                    .is_some_and(|d| d.contains("\"action\":\"resume\""))
        })
        .expect("B recorded the stale resumption");
    assert!(
        recorded
            .body
            .detail
            .as_deref()
            .unwrap()
            .contains("\"applied\":false"),
        "{:?}",
        recorded.body.detail
    );

    // An administrator on A, having seen the suspension, resumes: everywhere.
    let r = post_admin(&a, "/v1/admin/departments/yibao/resume", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    wait_for_status(&b, StatusCode::OK, Duration::from_secs(2)).await;
    assert_eq!(yibao_status(&a).await.0, StatusCode::OK);
}

/// A clean stop signs the node's last event (the shutdown checkpoint) and
/// ships it, with the events PostgreSQL lacked, before the node exits: the
/// central copy verifies, signed through the node's last event.
#[tokio::test]
async fn a_clean_stop_leaves_the_central_copy_signed_through_the_last_event() {
    let pg = Postgres::start();
    let (mut a, b) = two_nodes(&pg).await;
    lookups(&a, 5).await;
    wait_shipped(&a, Duration::from_secs(5)).await;
    // And a few the shipper may not have reached before the stop.
    lookups(&a, 3).await;
    a.stop().await;
    let (head, _) = a.gw.audit_store.head().unwrap();
    assert_eq!(central(&pg, "node-a").2, head, "every event is shipped");
    let signed: u64 = pg
        .psql("SELECT coalesce(max(seq), 0) FROM tongban_audit_checkpoint WHERE node_id = 'node-a'")
        .parse()
        .unwrap();
    assert_eq!(signed, head, "the shutdown checkpoint is in PostgreSQL");
    let out = tongban(&[
        "audit",
        "verify",
        "--cluster",
        "--home",
        b.home.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let node_a = reports
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["node_id"] == "node-a")
        .unwrap();
    assert_eq!(node_a["report"]["head_seq"], head, "{node_a}");
    assert_eq!(node_a["report"]["last_checkpoint"], head, "{node_a}");
}

/// The check a pooled connection passes before it is handed out again is
/// quiet outside a transaction (where a `ROLLBACK` warned on every reuse),
/// and fails inside an open one (in an aborted one every statement fails),
/// so that such a connection is closed rather than reused (closing it rolls
/// its transaction back and frees its locks).
#[tokio::test]
async fn a_pooled_connection_inside_a_transaction_is_never_handed_out_again() {
    use tongban::cluster::store::RECYCLE_CHECK;
    let pg = Postgres::start();
    assert_eq!(pg.psql(RECYCLE_CHECK), "1");
    // Each command its own message, as the pool's check follows the work.
    let open = pg.try_session(&["BEGIN", "SELECT pg_advisory_xact_lock(7)", RECYCLE_CHECK]);
    assert!(
        open.as_ref().is_err_and(|e| e.contains("division by zero")),
        "{open:?}"
    );
    let after_commit = pg.try_session(&["BEGIN", "SELECT 1", "COMMIT", RECYCLE_CHECK]);
    assert_eq!(after_commit.as_deref(), Ok("1\n1"));
}

/// A login PostgreSQL refuses (no password given where one is asked for, a
/// wrong one) is named as such, with where the password is read from, and
/// never as a server that cannot be reached.
#[tokio::test]
async fn a_refused_postgresql_login_says_so() {
    use tongban::cluster::PolicyStore;
    use tongban::config::ClusterConfig;

    let pg = Postgres::start();
    pg.psql("CREATE ROLE pwuser LOGIN PASSWORD 'right'");
    pg.psql("GRANT ALL ON SCHEMA public TO pwuser");
    pg.require_password("pwuser");
    let store = |url: String| {
        let cc: ClusterConfig = toml::from_str(&format!(
            "node_id = \"node-a\"\npostgres_url = \"{url}\"\nconnect_timeout_ms = 3000\n"
        ))
        .unwrap();
        PolicyStore::new(&cc).unwrap()
    };
    for (password, says) in [
        (None, "it asks for a password, and none is configured"),
        (Some("wrong"), "28P01"),
    ] {
        let err = store(pg.url_as("pwuser", password))
            .migrate()
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("PostgreSQL refused the login")
                && err.contains(says)
                && err.contains("postgres_password_env")
                && !err.contains("cannot be reached"),
            "{password:?}: {err}"
        );
    }
    store(pg.url_as("pwuser", Some("right")))
        .migrate()
        .await
        .unwrap();
}

/// In cluster mode a node serves PostgreSQL's version, never its own policy
/// files: a node whose files differ says so (in its log, and in `/readyz`),
/// rather than ignoring them in silence; one whose files are the version in
/// force does not.
#[tokio::test]
async fn a_node_whose_policy_files_differ_from_the_cluster_says_so() {
    let pg = Postgres::start();
    let (a, _b) = two_nodes(&pg).await;
    let (home_c, config_c) = cluster_home(&pg, "node-c");
    let grant = config_c.policies_dir.join("grants/yibao-enroll.toml");
    let text = std::fs::read_to_string(&grant).unwrap();
    std::fs::write(&grant, text.replace(", \"birth_date\"", "")).unwrap();
    let c = node(home_c, config_c).await;
    let differ = |r: &TestResponse| r.body["cluster"]["policy_files_differ"].clone();
    assert_eq!(differ(&a.readiness().await), false);
    assert_eq!(differ(&c.readiness().await), true);
    // And it serves the cluster's version, not its files.
    assert!(yibao_fields(&c).await.0.contains("birth_date"));
}

/// A verify by the 低保 clerk under `key`, on `gw`.
async fn keyed_verify(gw: &TestGateway, key: &str, field: &str) -> TestResponse {
    let id = gw.sample_ids("renshe.shebao", 1)[0].clone();
    let tok = gw.token("minzheng", "clerk-1", &["dibao_reviewer"]);
    let headers = [
        ("authorization".to_owned(), format!("Bearer {tok}")),
        ("x-purpose".to_owned(), "dibao_review".to_owned()),
        ("x-case-ref".to_owned(), "MZ-2026-1".to_owned()),
        ("content-type".to_owned(), "application/json".to_owned()),
        ("idempotency-key".to_owned(), key.to_owned()),
    ];
    let body = json!({"conditions": [{"field": field, "op": "exists"}]});
    gw.client()
        .request_with_body(
            "POST",
            &format!("/v1/datasets/renshe.shebao/records/{id}/verify"),
            &headers,
            bytes::Bytes::from(body.to_string()),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn an_idempotency_key_is_honoured_on_every_node_through_postgresql() {
    let mut pg = Postgres::start();
    let (a, b) = two_nodes(&pg).await;
    let first = keyed_verify(&a, "k-1", "monthly_pension").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert!(!first.headers.contains_key("idempotent-replayed"));

    // The retry reaches the other node: a replay naming node A's event.
    let retry = keyed_verify(&b, "k-1", "monthly_pension").await;
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.text);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    let e = b
        .store()
        .await
        .get(retry.audit_seq())
        .unwrap()
        .unwrap()
        .body;
    assert_eq!(e.operation, "replay");
    let detail: serde_json::Value = serde_json::from_str(e.detail.as_deref().unwrap()).unwrap();
    assert_eq!(detail["replay_of"]["node"], "node-a");
    assert_eq!(detail["replay_of"]["first_seq"], first.audit_seq());
    // Another question under the key is refused on either node.
    let other = keyed_verify(&b, "k-1", "insured_status").await;
    assert_eq!(
        other.problem_type(),
        Some("/problems/idempotency-key-reused")
    );

    // PostgreSQL holds digests only: no key, subject or resident in clear.
    let id = a.sample_ids("renshe.shebao", 1)[0].clone();
    let rows = pg.psql("SELECT key, request, node_id FROM tongban_idempotency");
    assert!(rows.contains("node-a"), "{rows}");
    for clear in ["k-1", "clerk-1", id.as_str(), "monthly_pension"] {
        assert!(!rows.contains(clear), "{clear} at rest: {rows}");
    }

    // Without PostgreSQL a key cannot be honoured: refused, not charged
    // twice; a request without a key is served as before.
    pg.stop();
    let r = keyed_verify(&a, "k-2", "monthly_pension").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.problem_type(), Some("/problems/cluster-unavailable"));
    assert!(r.headers.contains_key("retry-after"));
    let hukou = a.sample_ids("gongan.hukou", 1)[0].clone();
    let unkeyed = lookup(&a, &hukou, None).await;
    assert_eq!(unkeyed.status, StatusCode::OK, "{}", unkeyed.text);
}

#[tokio::test]
async fn a_case_lists_what_every_node_obtained_under_it() {
    let pg = Postgres::start();
    let (a, b) = two_nodes(&pg).await;
    let ids = a.sample_ids("gongan.hukou", 2);
    // proof::lookup asks under case MZ-2026-7.
    assert_eq!(lookup(&a, &ids[0], None).await.status, StatusCode::OK);
    wait_shipped(&a, Duration::from_secs(10)).await;
    assert_eq!(lookup(&b, &ids[1], None).await.status, StatusCode::OK);
    // On B: A's from PostgreSQL, B's own (shipped or not).
    let tok = b.token("minzheng", "clerk-9", &["dibao_reviewer"]);
    let r = b
        .get("/v1/cases?case_ref=MZ-2026-7", Some(&tok), None, None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["count"], 2, "{}", r.text);
    let nodes: Vec<&str> = r.body["materials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["node"].as_str().unwrap())
        .collect();
    assert!(
        nodes.contains(&"node-a") && nodes.contains(&"node-b"),
        "{nodes:?}"
    );
}

#[tokio::test]
async fn a_data_steward_searches_every_nodes_use_of_its_own_datasets() {
    let pg = Postgres::start();
    let (a, b) = two_nodes(&pg).await;
    let id = a.sample_ids("gongan.hukou", 1)[0].clone();
    assert_eq!(lookup(&a, &id, None).await.status, StatusCode::OK);
    wait_shipped(&a, Duration::from_secs(10)).await;
    let gongan = b.token("gongan", "steward-1", &["data_steward"]);
    let r = b.get("/v1/audit/events", Some(&gongan), None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let events = r.body["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["node"] == "node-a" && e["dataset"] == "gongan.hukou"),
        "{}",
        r.text
    );
    assert!(events.iter().all(|e| e["dataset"] == "gongan.hukou"));
    let renshe = b.token("renshe", "steward-2", &["data_steward"]);
    let r = b.get("/v1/audit/events", Some(&renshe), None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["events"].as_array().unwrap().len(), 0, "{}", r.text);
}

#[tokio::test]
async fn a_flag_is_announced_by_one_node_and_its_review_shows_on_every_node() {
    let pg = Postgres::start();
    let (a, b) = two_nodes(&pg).await;
    let id = a.sample_ids("gongan.hukou", 1)[0].clone();
    let tok = a.token("minzheng", "clerk-5", &["dibao_reviewer"]);
    // Ten refusals within a minute: a denial burst.
    for _ in 0..10 {
        let r = a
            .get(
                &format!("/v1/datasets/gongan.hukou/records/{id}"),
                Some(&tok),
                Some("no_such_purpose"),
                Some("MZ-1"),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    }
    wait_shipped(&a, Duration::from_secs(10)).await;
    let on_a = tongban::alerts::check(&a.gw).await.unwrap();
    let on_b = tongban::alerts::check(&b.gw).await.unwrap();
    let burst = |flags: &[tongban::audit::stats::Flag]| {
        flags
            .iter()
            .find(|f| f.kind == "denial_burst")
            .map(|f| f.id.clone())
    };
    let flag = burst(&on_a).expect("node A finds the burst");
    assert_eq!(
        burst(&on_b),
        Some(flag.clone()),
        "node B finds the same flag"
    );
    let raised = |text: &str| {
        text.contains(
            "tongban_anomaly_flags_raised_total{kind=\"denial_burst\",department=\"minzheng\"} 1",
        )
    };
    let metrics_a = a
        .client()
        .request("GET", "/metrics", &[])
        .await
        .unwrap()
        .text;
    let metrics_b = b
        .client()
        .request("GET", "/metrics", &[])
        .await
        .unwrap()
        .text;
    assert!(raised(&metrics_a), "A announced it");
    assert!(!raised(&metrics_b), "B announced it again");

    let officer = b.token("shujuju", "officer-1", &["privacy_officer"]);
    let r = b
        .client()
        .request_with_body(
            "POST",
            &format!("/v1/audit/flags/{flag}/review"),
            &[
                ("authorization".to_owned(), format!("Bearer {officer}")),
                ("content-type".to_owned(), "application/json".to_owned()),
            ],
            bytes::Bytes::from(r#"{"note":"测试用例"}"#),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = officer_get(&a, "/v1/audit/stats").await;
    let flags = r.body["flags"].as_array().unwrap();
    let shown = flags.iter().find(|f| f["id"] == flag.as_str()).unwrap();
    assert_eq!(shown["review"]["note"], "测试用例", "{}", r.text);
}

#[tokio::test]
async fn an_objection_lodged_on_one_node_is_answered_on_another() {
    let pg = Postgres::start();
    let (a, b) = two_nodes(&pg).await;
    let id = a.sample_ids("gongan.hukou", 1)[0].clone();
    assert_eq!(lookup(&a, &id, None).await.status, StatusCode::OK);
    wait_shipped(&a, Duration::from_secs(10)).await;
    // The resident reads the record on B: A's use is there, from PostgreSQL.
    let me = b.resident_token(&id);
    let r = b.get("/v1/me/disclosures", Some(&me), None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let use_ = &r.body["disclosures"][0];
    assert_eq!(use_["node"], "node-a", "{}", r.text);
    let send = |gw: &TestGateway, path: String, token: String, body: serde_json::Value| {
        let client = gw.client();
        async move {
            client
                .request_with_body(
                    "POST",
                    &path,
                    &[
                        ("authorization".to_owned(), format!("Bearer {token}")),
                        ("content-type".to_owned(), "application/json".to_owned()),
                    ],
                    bytes::Bytes::from(body.to_string()),
                )
                .await
                .unwrap()
        }
    };
    let r = send(
        &b,
        "/v1/me/objections".into(),
        me.clone(),
        serde_json::json!({"node": "node-a", "seq": use_["seq"], "text": "请说明用途"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let objection = r.body["id"].as_str().unwrap().to_owned();
    // An officer on A finds it and answers; the resident reads it on B.
    let officer = a.token("shujuju", "officer-1", &["privacy_officer"]);
    let r = a
        .get("/v1/audit/objections", Some(&officer), None, None)
        .await;
    assert_eq!(r.body["count"], 1, "{}", r.text);
    let r = send(
        &a,
        format!("/v1/audit/objections/{objection}/reply"),
        officer,
        serde_json::json!({"reply": "用于低保复核"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = b.get("/v1/me/objections", Some(&me), None, None).await;
    assert_eq!(r.body["objections"][0]["state"], "answered", "{}", r.text);
}

#[tokio::test]
async fn a_sharing_request_and_a_data_objection_move_across_nodes() {
    use crate::sharing::{post, refused_as};
    let pg = Postgres::start();
    let (a, b) = two_nodes(&pg).await;
    let yibao = a.token("yibao", "clerk-3", &["enrollment_clerk"]);
    let authority = a.token("shujuju", "reviewer-1", &["data_authority"]);
    let steward = a.token("ziranziyuan", "steward-1", &["data_steward"]);
    let body = serde_json::json!({
        "use_case": "医保参保缴费困难认定",
        "grant": {
            "title": "医保缴费困难认定核验不动产",
            "roles": ["enrollment_clerk"],
            "purposes": ["medical_insurance_enrollment"],
            "operations": ["lookup"],
            "basis": "《社会保险法》第二十五条",
            "conditions": {"case_ref_required": true},
            "access": [{"dataset": "ziranziyuan.budongchan", "fields": ["property_count"]}],
        },
    });
    // Filed on A, reviewed on B, answered on A: the grant is in force on B.
    let r = post(&a, "/v1/sharing/requests", &yibao, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let req = r.body["id"].as_str().unwrap().to_owned();
    let review = format!("/v1/sharing/requests/{req}/review");
    let r = post(
        &b,
        &review,
        &b.token("shujuju", "reviewer-1", &["data_authority"]),
        serde_json::json!({"decision": "approve"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // The same step again, on the other node, finds it moved on.
    let r = post(
        &a,
        &review,
        &authority,
        serde_json::json!({"decision": "approve"}),
    )
    .await;
    refused_as(&r, "sharing-request-state");
    let r = post(
        &a,
        &format!("/v1/sharing/requests/{req}/answer"),
        &steward,
        serde_json::json!({"decision": "approve"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = b
        .get(
            "/v1/sharing/requests",
            Some(&b.token("yibao", "clerk-3", &["enrollment_clerk"])),
            None,
            None,
        )
        .await;
    assert_eq!(r.body["requests"][0]["state"], "approved", "{}", r.text);

    a_data_objection_moves_across_nodes(&a, &b).await;
}

/// A data objection reported on B: A's steward reads the resident ID
/// (every node holds the same key) and answers; B's second answer is refused.
async fn a_data_objection_moves_across_nodes(a: &TestGateway, b: &TestGateway) {
    use crate::sharing::{post, refused_as};
    // A data objection reported on B: A's steward reads the resident ID
    // (every node holds the same key) and answers; B's second answer is refused.
    let resident = b.sample_ids("gongan.hukou", 1)[0].clone();
    let seen = lookup(b, &resident, None).await;
    assert_eq!(seen.status, StatusCode::OK, "{}", seen.text);
    let reviewer = b.token("minzheng", "reviewer-7", &["dibao_reviewer"]);
    let r = post(
        b,
        "/v1/objections",
        &reviewer,
        serde_json::json!({
            "dataset": "gongan.hukou", "field": "hukou_address",
            "resident_id": resident, "what": "地址疑似过期", "seq": seen.audit_seq(),
        }),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let objection = r.body["id"].as_str().unwrap().to_owned();
    let gongan = a.token("gongan", "steward-1", &["data_steward"]);
    let r = a.get("/v1/objections", Some(&gongan), None, None).await;
    assert_eq!(
        r.body["objections"][0]["resident_id"],
        resident.as_str(),
        "{}",
        r.text
    );
    let answer = format!("/v1/objections/{objection}/answer");
    let r = post(
        a,
        &answer,
        &gongan,
        serde_json::json!({"outcome": "confirmed"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = post(
        b,
        &answer,
        &b.token("gongan", "steward-1", &["data_steward"]),
        serde_json::json!({"outcome": "corrected"}),
    )
    .await;
    refused_as(&r, "data-objection-answered");
    let r = b.get("/v1/objections", Some(&reviewer), None, None).await;
    assert_eq!(
        r.body["objections"][0]["answer"]["outcome"], "confirmed",
        "{}",
        r.text
    );
}
