//! Three gateway processes on one PostgreSQL and one Redis, under a mixed
//! load through all three: an edit on A enforced by C within a second, B
//! killed with SIGKILL mid-load and restarted, then every acknowledged
//! request in PostgreSQL exactly once, a disclosure report naming all three
//! nodes, a department limit held across them, and `audit verify --cluster`
//! passing, then failing on one altered row.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::json;

use tongban::dev::devpki;

use crate::cluster::{text, tongban};
use crate::helpers::{Client, TestResponse, demo_home, mint, sample_ids};
use crate::pg::{Postgres, Redis, free_port};

const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];

struct Node {
    name: &'static str,
    home: PathBuf,
    addr: SocketAddr,
    child: Option<Child>,
}

impl Node {
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home.join("node.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tongban"))
            .args(["serve", "--config"])
            .arg(self.home.join("tongban.toml"))
            // The level an operator runs with: what PostgreSQL says shows.
            .env("TONGBAN_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("tongban serve starts");
        self.child = Some(child);
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap(); // SIGKILL
            c.wait().unwrap();
        }
    }

    fn client(&self) -> Client {
        Client::new(self.addr, &self.home.join("certs/ca.pem"), None)
    }

    /// `/readyz` with its details (the operator's policy administrator).
    async fn readiness(&self) -> TestResponse {
        let tok = token(&self.home, "shujuju", "ops-1", &["policy_admin"]);
        let auth = ("authorization".to_owned(), format!("Bearer {tok}"));
        self.client()
            .request("GET", "/readyz", &[auth])
            .await
            .unwrap()
    }

    async fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            if let Ok(r) = self.client().request("GET", "/readyz", &[]).await {
                if r.status == StatusCode::OK {
                    return;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{} did not become ready: {}",
                self.name,
                std::fs::read_to_string(self.home.join("node.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn token(home: &Path, dept: &str, sub: &str, roles: &[&str]) -> String {
    mint(
        home,
        dept,
        sub,
        roles,
        time::OffsetDateTime::now_utc().unix_timestamp(),
        3600,
    )
}

fn headers(token: &str, purpose: &str, case: Option<&str>) -> Vec<(String, String)> {
    let mut h = vec![
        ("authorization".to_owned(), format!("Bearer {token}")),
        ("x-purpose".to_owned(), purpose.to_owned()),
    ];
    if let Some(c) = case {
        h.push(("x-case-ref".to_owned(), c.to_owned()));
    }
    h
}

/// A 低保 reviewer's pension check through `node`.
async fn shebao(node: &Node, tok: &str, id: &str) -> Result<TestResponse, String> {
    node.client()
        .request(
            "GET",
            &format!("/v1/datasets/renshe.shebao/records/{id}"),
            &headers(tok, "dibao_review", Some("MZ-2026-000123")),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_under_load_one_killed_and_restarted() {
    crate::requires::nginx_with_stream();
    let pg = Postgres::start();
    let redis = Redis::start();
    let (first, _) = demo_home();
    let base = tempfile::tempdir().unwrap();

    let mut nodes = node_homes(first.path(), base.path(), &pg, &redis);
    let cfg = |n: &Node| n.home.join("tongban.toml").to_str().unwrap().to_owned();
    let out = tongban(&[
        "policy",
        "push",
        nodes[0].home.join("policies").to_str().unwrap(),
        "--config",
        &cfg(&nodes[0]),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    for n in &mut nodes {
        n.start();
    }
    for n in &nodes {
        n.wait_ready().await;
    }
    let home = nodes[0].home.clone();
    let clerk = token(&home, "minzheng", "clerk-007", &["dibao_reviewer"]);
    let ids = sample_ids(&home, "renshe.shebao", 12);

    let nodes = Arc::new(tokio::sync::RwLock::new(nodes));
    let stop = Arc::new(AtomicBool::new(false));
    let load = mixed_load(&nodes, NODES.len(), &stop, &clerk, &ids);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // B killed mid-load, and restarted.
    {
        let mut w = nodes.write().await;
        w[1].kill9();
        w[1].start();
    }
    nodes.read().await[1].wait_ready().await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    edit_on_a_enforced_on_c(&nodes.read().await, &home, &clerk, &ids).await;
    shared_department_limit(&nodes.read().await, &home).await;
    stop.store(true, Ordering::Release);
    let mut acked = Vec::new();
    for t in load {
        acked.extend(t.await.unwrap());
    }
    let through: BTreeSet<&str> = acked.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        through.len(),
        3,
        "acknowledged requests through {through:?}"
    );

    let r = nodes.read().await;
    every_copy_complete(&r, &pg, &acked).await;
    report_covers_every_node(&r, &home, &ids).await;
    through_nginx(&r, &home, &clerk, &ids, &pg).await;
    central_copy_verifies(&r, &pg);
    logs_are_quiet(&r);
    a_hand_edit_and_sighup_are_told(&r[2]).await;
}

/// A hand edit of a node's policy files, then SIGHUP (which on a single
/// node reloads them): the node says the files take no effect, naming
/// `policy pull` and `policy push`, and `/readyz` shows it.
async fn a_hand_edit_and_sighup_are_told(n: &Node) {
    let differ = |r: TestResponse| r.body["cluster"]["policy_files_differ"].clone();
    assert_eq!(differ(n.readiness().await), false, "{}", n.name);
    let grant = n.home.join("policies/grants/yibao-enroll.toml");
    let text = std::fs::read_to_string(&grant).unwrap();
    std::fs::write(&grant, text.replace(", \"birth_date\"", "")).unwrap();
    let pid = n.child.as_ref().unwrap().id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let start = Instant::now();
    while differ(n.readiness().await) != true {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{}: no difference seen after SIGHUP",
            n.name
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The log is written by a thread of its own, up to 100 ms behind.
    let told = |log: &str| {
        log.lines().any(|l| {
            l.contains("differ from the version this node enforces")
                && l.contains("tongban policy pull")
                && l.contains("tongban policy push")
        })
    };
    loop {
        let log = std::fs::read_to_string(n.home.join("node.log")).unwrap();
        if told(&log) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The two nodes `docs/cluster.md` brings up behind nginx, checked as the
/// three nodes above are: a mixed load through both, every acknowledged
/// request in PostgreSQL once, a disclosure report naming both, lookups
/// through the guide's nginx spread over both with the department's client
/// certificate, and logs that say what each node took and nothing per
/// request. `checks/cluster_guide.sh` runs it after following the guide,
/// with `TONGBAN_GUIDE_DIR` naming the guide's directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "checks/cluster_guide.sh runs it against the cluster docs/cluster.md brings up"]
async fn the_guides_two_nodes_behind_nginx() {
    let dir = PathBuf::from(
        std::env::var("TONGBAN_GUIDE_DIR").expect("TONGBAN_GUIDE_DIR: the guide's directory"),
    );
    let env = std::fs::read_to_string(dir.join("cluster.env")).unwrap();
    let password = env
        .lines()
        .find_map(|l| l.strip_prefix("TONGBAN_PG_PASSWORD="))
        .expect("the guide's PostgreSQL password");
    let pg = Postgres::running_at("postgres://tongban@127.0.0.1:5432/tongban", password);
    let nodes: Vec<Node> = ["node-a", "node-b"]
        .into_iter()
        .map(|name| {
            let home = dir.join(name);
            let config = tongban::config::Config::load(&home.join("tongban.toml")).unwrap();
            Node {
                name,
                home,
                addr: config.listen,
                child: None,
            }
        })
        .collect();
    for n in &nodes {
        n.wait_ready().await;
    }
    let home = nodes[0].home.clone();
    let clerk = token(&home, "minzheng", "clerk-007", &["dibao_reviewer"]);
    let ids = sample_ids(&home, "renshe.shebao", 12);
    let nodes = Arc::new(tokio::sync::RwLock::new(nodes));
    let stop = Arc::new(AtomicBool::new(false));
    let load = mixed_load(&nodes, 2, &stop, &clerk, &ids);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Release);
    let mut acked = Vec::new();
    for t in load {
        acked.extend(t.await.unwrap());
    }
    let r = nodes.read().await;
    every_copy_complete(&r, &pg, &acked).await;
    report_covers_every_node(&r, &home, &ids).await;
    // nginx as the guide configured it: port 443.
    let request_ids = through_front(443, &home, &clerk, &ids).await;
    spread_with_certificates(&r, &request_ids, &pg).await;
    logs_are_quiet(&r);
}

/// One home, copied for each node: the same CA, issuer, policies, sample
/// data and resident pseudonym key; each node its own id, port, data and
/// checkpoint key.
fn node_homes(first: &Path, base: &Path, pg: &Postgres, redis: &Redis) -> Vec<Node> {
    let mut nodes = Vec::new();
    for name in NODES {
        let home = base.join(name);
        let st = Command::new("cp")
            .arg("-a")
            .arg(first)
            .arg(&home)
            .status()
            .unwrap();
        assert!(st.success());
        // Each node its own checkpoint and answer-signing keys, made by
        // `tongban keys init` (below), which keeps the shared pseudonym key.
        for key in ["audit-checkpoint.key", "audit-checkpoint-sm2.pem"] {
            let _ = std::fs::remove_file(home.join("data").join(key));
        }
        std::fs::remove_dir_all(home.join("data/answer-keys")).unwrap();
        std::fs::write(home.join("data/pseudonym.key"), [7u8; 32]).unwrap();
        let port = free_port();
        let text: String = std::fs::read_to_string(home.join("tongban.toml"))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("node_id"))
            .map(|l| {
                if l.starts_with("listen =") {
                    format!("listen = \"127.0.0.1:{port}\"\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        let text = format!(
            "{text}\n[rate_limit.departments]\nyibao = \"30/min\"\n\n[cluster]\nnode_id = \"{name}\"\npostgres_url = \"{}\"\nredis_url = \"{}\"\npolicy_check_secs = 1\nheartbeat_secs = 1\nconnect_timeout_ms = 1000\n",
            pg.url(),
            redis.url()
        );
        std::fs::write(home.join("tongban.toml"), text).unwrap();
        let out = tongban(&["keys", "init", "--home", home.to_str().unwrap()]);
        assert!(out.status.success(), "{}", crate::cluster::text(&out));
        nodes.push(Node {
            name,
            home,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child: None,
        });
    }
    nodes
}

/// The mixed load: 低保 reviewers through every node, lookups that
/// disclose and lookups that are refused (a resident with no record), a
/// request without a case reference, until told to stop.
fn mixed_load(
    nodes: &Shared,
    count: usize,
    stop: &Arc<AtomicBool>,
    clerk: &str,
    ids: &[String],
) -> Vec<tokio::task::JoinHandle<Vec<(String, u64)>>> {
    let mut load = Vec::new();
    for i in 0..count {
        let (nodes, stop, clerk, ids) =
            (nodes.clone(), stop.clone(), clerk.to_owned(), ids.to_vec());
        load.push(tokio::spawn(async move {
            let mut acked: Vec<(String, u64)> = Vec::new();
            let mut n = 0usize;
            while !stop.load(Ordering::Acquire) {
                n += 1;
                let id = &ids[n % ids.len()];
                let (name, r) = {
                    let nodes = nodes.read().await;
                    let node = &nodes[i];
                    let r = if n % 7 == 0 {
                        node.client()
                            .request(
                                "GET",
                                &format!("/v1/datasets/renshe.shebao/records/{id}"),
                                &headers(&clerk, "dibao_review", None),
                            )
                            .await
                    } else {
                        shebao(node, &clerk, id).await
                    };
                    (node.name, r)
                };
                match r {
                    // Acknowledged: it carries its audit sequence number.
                    Ok(r) if r.headers.contains_key("x-audit-seq") => {
                        acked.push((name.to_owned(), r.audit_seq()));
                    }
                    Ok(r) => panic!("answer without an audit sequence number: {}", r.text),
                    // B is down for a moment.
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            acked
        }));
    }
    load
}

/// An administrator edits a grant on A; C enforces it within a second.
async fn edit_on_a_enforced_on_c(r: &[Node], home: &Path, clerk: &str, ids: &[String]) {
    let admin = token(home, "shujuju", "admin-1", &["policy_admin"]);
    let auth = vec![("authorization".to_owned(), format!("Bearer {admin}"))];
    let got = r[0]
        .client()
        .request("GET", "/v1/admin/grants/minzheng-dibao-shebao", &auth)
        .await
        .unwrap();
    assert_eq!(got.status, StatusCode::OK, "{}", got.text);
    let etag = got.headers["etag"].to_str().unwrap().to_owned();
    let mut grant = got.body["grant"].clone();
    grant["access"][0]["fields"] = json!(["insured_status"]);
    let mut h = auth.clone();
    h.push(("if-match".to_owned(), etag));
    h.push(("content-type".to_owned(), "application/json".to_owned()));
    let put = r[0]
        .client()
        .request_with_body(
            "PUT",
            "/v1/admin/grants/minzheng-dibao-shebao",
            &h,
            Bytes::from(grant.to_string()),
        )
        .await
        .unwrap();
    assert_eq!(put.status, StatusCode::OK, "{}", put.text);
    let edited = Instant::now();
    loop {
        let a = shebao(&r[2], clerk, &ids[0]).await.unwrap();
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        if a.body["record"].get("monthly_pension").is_none() {
            break;
        }
        assert!(
            edited.elapsed() < Duration::from_secs(1),
            "node C still discloses monthly_pension {:?} after the edit on A",
            edited.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("node C enforced the edit after {:?}", edited.elapsed());
}

/// A department limit of 30 a minute, across the three nodes (Redis).
async fn shared_department_limit(r: &[Node], home: &Path) {
    let yibao = token(home, "yibao", "clerk-2", &["enrollment_clerk"]);
    let hukou = sample_ids(home, "gongan.hukou", 1).remove(0);
    let mut admitted = 0;
    {
        for i in 0..90 {
            let a = r[i % 3]
                .client()
                .request(
                    "GET",
                    &format!("/v1/datasets/gongan.hukou/records/{hukou}"),
                    &headers(&yibao, "medical_insurance_enrollment", None),
                )
                .await
                .unwrap();
            match a.status {
                StatusCode::OK => admitted += 1,
                StatusCode::TOO_MANY_REQUESTS => {}
                other => panic!("{other}: {}", a.text),
            }
        }
    }
    println!("yibao: {admitted} of 90 admitted at 30/min over three nodes");
    assert!((27..=33).contains(&admitted), "{admitted} admitted");
}

/// Every node's copy complete: each acknowledged request exactly once.
async fn every_copy_complete(r: &[Node], pg: &Postgres, acked: &[(String, u64)]) {
    for n in r.iter() {
        let start = Instant::now();
        loop {
            let ready = n.readiness().await;
            let s = &ready.body["cluster"]["audit_shipping"];
            if s["lag_events"] == 0 {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "{}: {s}", n.name);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let counts =
        pg.psql("SELECT count(*), count(DISTINCT (node_id, seq)) FROM tongban_audit_event");
    let (rows, distinct) = counts.split_once('|').unwrap();
    assert_eq!(rows, distinct, "a (node, seq) is in PostgreSQL twice");
    for name in r.iter().map(|n| n.name) {
        let seqs: Vec<String> = acked
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, s)| s.to_string())
            .collect();
        let found: usize = pg
            .psql(&format!(
                "SELECT count(*) FROM tongban_audit_event WHERE node_id = '{name}' AND seq IN ({})",
                seqs.join(",")
            ))
            .parse()
            .unwrap();
        assert_eq!(
            found,
            seqs.len(),
            "{name}: acknowledged requests missing in PostgreSQL"
        );
    }
    println!(
        "acknowledged: {} requests ({} rows in PostgreSQL)",
        acked.len(),
        rows
    );
}

/// A disclosure report on any node covers the lookups through all three.
async fn report_covers_every_node(r: &[Node], home: &Path, ids: &[String]) {
    let officer = token(home, "shujuju", "officer-1", &["privacy_officer"]);
    let report = r[r.len() - 1]
        .client()
        .request(
            "GET",
            &format!("/v1/audit/residents/{}/disclosures", ids[1]),
            &[("authorization".to_owned(), format!("Bearer {officer}"))],
        )
        .await
        .unwrap();
    assert_eq!(report.status, StatusCode::OK, "{}", report.text);
    let via: BTreeSet<&str> = report.body["disclosures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["node"].as_str().unwrap())
        .collect();
    assert_eq!(via, r.iter().map(|n| n.name).collect(), "{}", report.text);
}

/// Through the sample nginx configuration (TLS passthrough), started here
/// in front of the nodes: [`through_front`].
async fn through_nginx(r: &[Node], home: &Path, clerk: &str, ids: &[String], pg: &Postgres) {
    let nginx_dir = tempfile::tempdir().unwrap();
    let nginx_port = free_port();
    let sample = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/nginx-cluster.conf"
    ))
    .unwrap();
    let mut conf = sample
        .replace("listen 443;", &format!("listen 127.0.0.1:{nginx_port};"))
        .replace(
            "/run/nginx-tongban.pid",
            &nginx_dir.path().join("nginx.pid").display().to_string(),
        )
        .replace(
            "/var/log/nginx/tongban-error.log",
            &nginx_dir.path().join("error.log").display().to_string(),
        );
    for (i, n) in r.iter().enumerate() {
        conf = conf.replace(&format!("10.0.0.1{}:8443", i + 1), &n.addr.to_string());
    }
    std::fs::write(nginx_dir.path().join("nginx.conf"), conf).unwrap();
    let mut nginx = Command::new("nginx")
        .arg("-c")
        .arg(nginx_dir.path().join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx (with libnginx-mod-stream; .ci/run installs both) starts");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", nginx_port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "nginx did not start: {}",
            std::fs::read_to_string(nginx_dir.path().join("error.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let request_ids = through_front(nginx_port, home, clerk, ids).await;
    // SIGTERM (fast shutdown): the workers go with the master.
    let _ = Command::new("kill")
        .args(["-TERM", &nginx.id().to_string()])
        .status();
    let _ = nginx.wait();
    spread_with_certificates(r, &request_ids, pg).await;
}

/// Six lookups through the front at `port` (nginx), with a department's
/// client certificate: their request ids.
async fn through_front(port: u16, home: &Path, clerk: &str, ids: &[String]) -> Vec<String> {
    let (cert, key) = devpki::DevPkiPaths::client(home, "minzheng");
    let front = Client::new(
        SocketAddr::from(([127, 0, 0, 1], port)),
        &home.join("certs/ca.pem"),
        Some((cert, key)),
    );
    let mut request_ids = Vec::new();
    for id in ids.iter().take(6) {
        let a = front
            .request(
                "GET",
                &format!("/v1/datasets/renshe.shebao/records/{id}"),
                &headers(clerk, "dibao_review", Some("MZ-2026-000123")),
            )
            .await
            .unwrap();
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        request_ids.push(a.request_id());
    }
    request_ids
}

/// The requests went to more than one node, and the department's client
/// certificate reached each (its fingerprint is in the events).
async fn spread_with_certificates(r: &[Node], request_ids: &[String], pg: &Postgres) {
    for n in r.iter() {
        let start = Instant::now();
        while n.readiness().await.body["cluster"]["audit_shipping"]["lag_events"] != 0 {
            assert!(start.elapsed() < Duration::from_secs(20));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let rows = pg.psql(&format!(
        "SELECT node_id, encode(stored, 'hex') FROM tongban_audit_event WHERE request_id IN ({})",
        request_ids
            .iter()
            .map(|r| format!("'{r}'"))
            .collect::<Vec<_>>()
            .join(",")
    ));
    let mut behind = BTreeSet::new();
    for line in rows.lines() {
        let (node, hex) = line.split_once('|').unwrap();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let (event, _, _) = tongban::audit::Event::open(&bytes).unwrap();
        assert!(
            event.body.cert_fingerprint.is_some(),
            "no client certificate reached {node}"
        );
        behind.insert(node.to_owned());
    }
    assert_eq!(rows.lines().count(), 6, "{rows}");
    assert!(
        behind.len() >= 2,
        "nginx sent every connection to {behind:?}"
    );
}

/// Each node's log names, at its start, the node, its policy version and
/// whether PostgreSQL and Redis answer; and after all that load it holds no
/// line per request or per pooled connection from PostgreSQL (a `ROLLBACK` on each reuse made it
/// warn "there is no transaction in progress"), nor the notices of tables
/// that exist already, which every start used to print.
fn logs_are_quiet(r: &[Node]) {
    for n in r {
        let log = std::fs::read_to_string(n.home.join("node.log")).unwrap();
        // And each start says, in one line, what the node took and found.
        assert!(
            log.lines().any(|l| l.contains("cluster node started")
                && l.contains(&format!("node={}", n.name))
                && l.contains("postgresql=reachable (newest version")
                && l.contains("redis=reachable")),
            "{}: no start line in\n{log}",
            n.name
        );
        for noise in [
            "there is no transaction in progress",
            "already exists, skipping",
        ] {
            let lines = log.lines().filter(|l| l.contains(noise)).count();
            assert_eq!(lines, 0, "{}: {lines} lines of {noise:?}", n.name);
        }
    }
}

/// The central copy verifies per node; one altered row is named.
fn central_copy_verifies(r: &[Node], pg: &Postgres) {
    let cfg = |n: &Node| n.home.join("tongban.toml").to_str().unwrap().to_owned();
    let verify = || tongban(&["audit", "verify", "--cluster", "--config", &cfg(&r[0])]);
    let out = verify();
    assert!(out.status.success(), "{}", text(&out));
    for name in r.iter().map(|n| n.name) {
        assert!(
            text(&out).contains(&format!("node {name}: intact")),
            "{}",
            text(&out)
        );
    }
    pg.psql(
        "UPDATE tongban_audit_event SET purpose = 'other' WHERE node_id = 'node-b' AND seq = 5",
    );
    let out = verify();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("node node-b: BROKEN at event 5"),
        "{}",
        text(&out)
    );
}

/// The nodes, shared by the load and the test.
type Shared = Arc<tokio::sync::RwLock<Vec<Node>>>;
