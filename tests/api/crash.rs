//! Durability: a gateway process killed with SIGKILL mid-load loses no
//! acknowledged audit event (the restart replays the write-ahead file), and
//! its chain and indexes are whole on restart.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hyper::StatusCode;
use tokio::sync::Mutex;

use crate::helpers::{Client, demo_home, sample_ids};
use tongban::audit::AuditStore;

pub(crate) fn spawn_gateway(home: &std::path::Path, addr: SocketAddr) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tongban"))
        .args(["demo", "--home"])
        .arg(home)
        .args(["--listen", &addr.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gateway starts")
}

pub(crate) async fn wait_ready(client: &Client) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = client.request("GET", "/readyz", &[]).await {
            if r.status == StatusCode::OK {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("gateway not ready within 60 s");
}

pub(crate) fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Eight workers looking up residents until `stop` or the gateway goes
/// away; each acknowledged lookup's audit sequence number and request id
/// go to `acked`.
fn lookup_workers(
    client: &Client,
    token: &str,
    ids: &[String],
    acked: &Arc<Mutex<Vec<(u64, String)>>>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut workers = Vec::new();
    for w in 0..8 {
        let (client, token, ids, acked, stop) = (
            client.clone(),
            token.to_owned(),
            ids.to_vec(),
            acked.clone(),
            stop.clone(),
        );
        workers.push(tokio::spawn(async move {
            let headers = vec![
                ("authorization".to_owned(), format!("Bearer {token}")),
                ("x-purpose".to_owned(), "pension_eligibility".to_owned()),
            ];
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                let path = format!("/v1/datasets/gongan.hukou/records/{}", ids[i % ids.len()]);
                i += 8;
                match client.request("GET", &path, &headers).await {
                    Ok(r) if r.status == StatusCode::OK => {
                        acked.lock().await.push((r.audit_seq(), r.request_id()));
                    }
                    Ok(r) if r.status == StatusCode::TOO_MANY_REQUESTS => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Ok(r) => panic!("unexpected {}: {}", r.status, r.text),
                    Err(_) => break, // the gateway is gone
                }
            }
        }));
    }
    workers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_load_loses_no_acknowledged_event() {
    let (home, config) = demo_home();
    let addr = free_addr();
    let mut child = spawn_gateway(home.path(), addr);
    let client = Client::new(addr, &home.path().join("certs/ca.pem"), None);
    wait_ready(&client).await;

    let key = std::fs::read(home.path().join("keys/issuer.pem")).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let token = tongban::dev::devpki::mint_token(
        &key,
        tongban::dev::demo::DEMO_ISSUER,
        tongban::dev::demo::DEMO_AUDIENCE,
        "renshe",
        "batch-1",
        &["pension_clerk".to_owned()],
        now,
        600,
    )
    .unwrap();
    let ids = sample_ids(home.path(), "gongan.hukou", 50);
    let acked: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let workers = lookup_workers(&client, &token, &ids, &acked, &stop);
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().await.len() < 150 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let acked = acked.lock().await.clone();
    // Killed mid-load, the last groups are in the write-ahead file (sled is
    // flushed behind it): the restart below must replay them.
    let wal_bytes: u64 = std::fs::read_dir(config.data_dir.join("audit-wal"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(wal_bytes > 0, "the write-ahead file holds the last groups");
    assert!(
        acked.len() >= 150,
        "only {} requests acknowledged before the deadline",
        acked.len()
    );

    // Restart on the same home: it must come up, then stop cleanly.
    let mut child = spawn_gateway(home.path(), addr);
    wait_ready(&client).await;
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success(), "graceful stop exits 0");

    let left = std::fs::read_dir(config.data_dir.join("audit-wal"))
        .unwrap()
        .count();
    assert_eq!(left, 0, "a clean stop leaves no write-ahead segment");
    let db = tongban::datadir::open_path(&config.data_dir).unwrap();
    let store = AuditStore::open(&db, &config.data_dir).unwrap();
    for (seq, request_id) in &acked {
        let event = store
            .get(*seq)
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged event {seq} is lost"));
        assert_eq!(&event.body.request_id, request_id);
        assert_eq!(event.body.status, 200);
    }
    let signer = tongban::audit::checkpoint::CheckpointSigner::open(&config.data_dir).unwrap();
    let report = store.verify(Some(&signer.keyring())).unwrap();
    assert!(
        report.checkpoints_checked >= 1,
        "the clean stop signs a checkpoint: {report:?}"
    );
    assert!(report.ok(), "{report:?}");
    assert!(store.indexes_consistent().unwrap());
}

/// A gateway under `TONGBAN_FAULT_EXIT` (and `TONGBAN_FAULT_TRACE`): the
/// fault seam stops it before the step named (src/faults.rs).
fn spawn_with_fault(home: &std::path::Path, addr: SocketAddr, env: &[(&str, String)]) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tongban"));
    c.args(["demo", "--home"])
        .arg(home)
        .args(["--listen", &addr.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().expect("gateway starts")
}

/// Lookups one after another until the gateway is gone or `load` has
/// passed, then a clean stop (SIGTERM: the stop's own steps); returns what
/// was acknowledged and how the process ended.
async fn load_then_stop(
    mut child: Child,
    client: &Client,
    token: &str,
    ids: &[String],
    load: Duration,
) -> (Vec<(u64, String)>, std::process::ExitStatus) {
    let mut acked = Vec::new();
    let headers = vec![
        ("authorization".to_owned(), format!("Bearer {token}")),
        ("x-purpose".to_owned(), "pension_eligibility".to_owned()),
    ];
    let deadline = Instant::now() + load + Duration::from_secs(30);
    // Counted from the moment the gateway is ready.
    let mut ready: Option<Instant> = None;
    let mut i = 0;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return (acked, status);
        }
        let Some(since) = ready else {
            if matches!(client.request("GET", "/readyz", &[]).await, Ok(r) if r.status == StatusCode::OK)
            {
                ready = Some(Instant::now());
            } else {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            continue;
        };
        if since.elapsed() >= load {
            break;
        }
        let path = format!("/v1/datasets/gongan.hukou/records/{}", ids[i % ids.len()]);
        i += 1;
        match client.request("GET", &path, &headers).await {
            Ok(r) if r.status == StatusCode::OK => acked.push((r.audit_seq(), r.request_id())),
            Ok(r) => panic!("unexpected {}: {}", r.status, r.text),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    (acked, status)
}

/// A copy of a prepared home (its paths are relative to it).
fn copy_home(base: &std::path::Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    let ok = Command::new("cp")
        .arg("-a")
        .arg(base.join("."))
        .arg(copy.path())
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a");
    copy
}

/// Every acknowledged event of a stopped home is there, once, and its
/// chain and indexes verify.
fn assert_all_there(home: &std::path::Path, acked: &[(u64, String)], what: &str) {
    let data = home.join("data");
    let db = tongban::datadir::open_path(&data).unwrap();
    let store = AuditStore::open(&db, &data).unwrap();
    let mut seqs = std::collections::HashSet::new();
    for (seq, request_id) in acked {
        assert!(
            seqs.insert(*seq),
            "{what}: sequence number {seq} acknowledged twice"
        );
        let event = store
            .get(*seq)
            .unwrap()
            .unwrap_or_else(|| panic!("{what}: acknowledged event {seq} is lost"));
        assert_eq!(&event.body.request_id, request_id, "{what}");
    }
    let signer = tongban::audit::checkpoint::CheckpointSigner::open(&data).unwrap();
    let report = store.verify(Some(&signer.keyring())).unwrap();
    assert!(report.ok(), "{what}: {report:?}");
    assert!(store.indexes_consistent().unwrap(), "{what}");
}

/// A demo home whose pension grant's quota lets one client look up as fast
/// as it goes, a clerk's token for it, and sample residents.
fn busy_home() -> (tempfile::TempDir, String, Vec<String>) {
    let (base, _) = demo_home();
    let grant = base.path().join("policies/grants/renshe-pension.toml");
    let text = std::fs::read_to_string(&grant).unwrap();
    std::fs::write(
        &grant,
        text.replace("quota = \"600/min\"", "quota = \"100000/min\""),
    )
    .unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let token = crate::helpers::mint(
        base.path(),
        "renshe",
        "batch-1",
        &["pension_clerk"],
        now,
        3600,
    );
    let ids = sample_ids(base.path(), "gongan.hukou", 20);
    (base, token, ids)
}

/// The crash-step test: the audit log's durable writes (a group's append
/// and sync, the inserts behind it, a rotation to a new or a reused segment
/// file, the retiring of segments sled holds, the clean stop) are walked
/// step by step. For every step they take, a gateway under load is stopped
/// right before it; the same home must start again and serve, and every
/// event acknowledged before the stop is there and the chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_before_any_step_of_the_audit_writes_loses_no_acknowledged_event() {
    // Lookups as fast as one client goes, for seconds: above the demo's quota.
    let (base, token, ids) = busy_home();
    // A spare segment file left by an earlier life, longer than any segment
    // of these runs: the first segment is a reused file whose tail still
    // holds bytes of its past, the second a new file, the third the first's
    // file again.
    let wal_dir = base.path().join("data/audit-wal");
    std::fs::create_dir_all(&wal_dir).unwrap();
    let past: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(wal_dir.join(format!("spare-{:016}.wal", 1)), past).unwrap();
    let addr = free_addr();
    // Long enough for two rotations (a segment ends a second after it
    // began; the second one reuses the file the first retired).
    let load = Duration::from_millis(2600);

    // Which steps a run takes: traced once, without a fault.
    let home = copy_home(base.path());
    let client = Client::new(addr, &home.path().join("certs/ca.pem"), None);
    let trace = home.path().join("fault-trace.txt");
    let child = spawn_with_fault(
        home.path(),
        addr,
        &[("TONGBAN_FAULT_TRACE", trace.display().to_string())],
    );
    let (acked, status) = load_then_stop(child, &client, &token, &ids, load).await;
    assert!(status.success(), "{status:?}");
    assert_all_there(home.path(), &acked, "traced run");
    let traced = std::fs::read_to_string(&trace).unwrap();
    let mut steps: Vec<&str> = traced
        .lines()
        .filter(|l| l.starts_with("wal.") || l.starts_with("audit."))
        .collect();
    steps.sort_unstable();
    steps.dedup();
    for must in [
        "audit.apply",
        "wal.dir_sync",
        "wal.retire.remove",
        "wal.retire.rename",
        "wal.segment.create",
        "wal.segment.rename",
        "wal.sync",
        "wal.write",
    ] {
        assert!(
            steps.contains(&must),
            "the run did not take step {must}: {steps:?}"
        );
    }

    // Each step at its first time, and the steps of every group again mid-load.
    let mut runs: Vec<String> = steps.iter().map(|s| format!("{s}#1")).collect();
    runs.extend(
        [
            "wal.write#12",
            "wal.sync#12",
            "audit.apply#12",
            "wal.dir_sync#2",
        ]
        .map(String::from),
    );
    for run in &runs {
        let home = copy_home(base.path());
        let client = Client::new(addr, &home.path().join("certs/ca.pem"), None);
        let child = spawn_with_fault(home.path(), addr, &[("TONGBAN_FAULT_EXIT", run.clone())]);
        let (mut acked, status) = load_then_stop(child, &client, &token, &ids, load).await;
        assert_eq!(
            status.code(),
            Some(tongban::faults::EXIT_STATUS),
            "{run}: the gateway was not stopped at the step ({} acknowledged)",
            acked.len()
        );
        // The same home starts again, serves, and stops cleanly.
        let child = spawn_with_fault(home.path(), addr, &[]);
        let (more, status) =
            load_then_stop(child, &client, &token, &ids, Duration::from_millis(200)).await;
        assert!(
            status.success(),
            "{run}: the restart and clean stop: {status:?}"
        );
        assert!(!more.is_empty(), "{run}: the restarted gateway serves");
        acked.extend(more);
        assert_all_there(home.path(), &acked, run);
    }
}

/// A gateway stopped after groups' write-ahead syncs and before the
/// applier files them in sled (`audit.apply`): the requests were answered,
/// and after the restart (which replays the file) an officer's search finds
/// every acknowledged event, and each by its number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_between_the_write_ahead_sync_and_the_applier_hides_no_acknowledged_event_from_a_search()
 {
    let (base, token, ids) = busy_home();
    let addr = free_addr();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let home = copy_home(base.path());
    let client = Client::new(addr, &home.path().join("certs/ca.pem"), None);
    let child = spawn_with_fault(
        home.path(),
        addr,
        &[("TONGBAN_FAULT_EXIT", "audit.apply#8".to_owned())],
    );
    let (acked, status) =
        load_then_stop(child, &client, &token, &ids, Duration::from_secs(10)).await;
    assert_eq!(
        status.code(),
        Some(tongban::faults::EXIT_STATUS),
        "stopped before the applier filed its eighth batch ({} acknowledged)",
        acked.len()
    );
    assert!(acked.len() >= 7, "{} acknowledged", acked.len());

    let mut child = spawn_gateway(home.path(), addr);
    wait_ready(&client).await;
    let officer = crate::helpers::mint(
        home.path(),
        "shujuju",
        "officer-1",
        &["privacy_officer"],
        now,
        600,
    );
    let auth = vec![("authorization".to_owned(), format!("Bearer {officer}"))];
    let r = client
        .request("GET", "/v1/audit/events?consumer=renshe&limit=1000", &auth)
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let found: std::collections::HashSet<String> = r.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["request_id"].as_str().unwrap().to_owned())
        .collect();
    for (seq, request_id) in &acked {
        assert!(
            found.contains(request_id),
            "acknowledged event {seq} ({request_id}) is missing from the search"
        );
        let one = client
            .request("GET", &format!("/v1/audit/events/{seq}"), &auth)
            .await
            .unwrap();
        assert_eq!(one.status, StatusCode::OK, "{}", one.text);
        assert_eq!(one.body["request_id"].as_str(), Some(request_id.as_str()));
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_all_there(home.path(), &acked, "stopped before the applier");
}

/// Waits for `child` to exit, at most `secs` seconds (then kills it and fails).
fn exit_within(child: &mut Child, secs: u64, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: the process did not exit within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A stop (SIGTERM) asked for while the gateway is still starting is a
/// clean stop: the gateway finishes starting, stops as asked and exits 0,
/// rather than dying by the signal with its audit writer unclosed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_asked_for_while_the_gateway_starts_is_a_clean_stop() {
    let (home, _) = demo_home();
    let addr = free_addr();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tongban"))
        .args(["demo", "--home"])
        .arg(home.path())
        .args(["--listen", &addr.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gateway starts");
    let stderr = child.stderr.take().unwrap();
    // Read on a thread of its own (to the end, so that the gateway never
    // waits on a full pipe), handing over each line.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The first line the gateway logs as it starts: its token keys loaded.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("signing keys changed") => break,
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the gateway never said it was starting");
            }
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = exit_within(&mut child, 20, "a stop while starting");
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// The change whose durable write stops at `point`: an edit of the grant
/// (`policy.*`, read as `before`) or a suspension (`stops.*`).
async fn change_that_stops(
    client: &Client,
    point: &str,
    auth: &(String, String),
    before: &crate::helpers::TestResponse,
) {
    let grant = "/v1/admin/grants/minzheng-dibao-hukou";
    if point.starts_with("policy.") {
        let mut body = before.body["grant"].clone();
        body["conditions"]["quota"] = "77/min".into();
        let etag = before.headers["etag"].to_str().unwrap().to_owned();
        let headers = [
            auth.clone(),
            ("if-match".to_owned(), etag),
            ("content-type".to_owned(), "application/json".to_owned()),
        ];
        let _ = client
            .request_with_body("PUT", grant, &headers, bytes::Bytes::from(body.to_string()))
            .await;
    } else {
        let headers = [
            auth.clone(),
            ("content-type".to_owned(), "application/json".to_owned()),
        ];
        let _ = client
            .request_with_body(
                "POST",
                "/v1/admin/departments/minzheng/suspend",
                &headers,
                bytes::Bytes::from(r#"{"reason":"crash test"}"#),
            )
            .await;
    }
}

/// A stop before each step of a checkpoint key's write leaves the key
/// whole or absent, and a home that starts.
async fn key_writes_stopped_at_each_step(base: &std::path::Path, addr: SocketAddr) {
    let keygen = |home: &std::path::Path, fault: Option<String>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tongban"));
        c.args(["audit", "keygen", "--suite", "gm", "--home"])
            .arg(home);
        if let Some(f) = fault {
            c.env("TONGBAN_FAULT_EXIT", f);
        }
        c.output().unwrap()
    };
    for point in ["key.write", "key.sync", "key.rename", "key.dir_sync"] {
        let home = copy_home(base);
        // The demo made one; the home signs with the international suite.
        std::fs::remove_file(home.path().join("data/audit-checkpoint-sm2.pem")).unwrap();
        let out = keygen(home.path(), Some(format!("{point}#1")));
        assert_eq!(
            out.status.code(),
            Some(tongban::faults::EXIT_STATUS),
            "{point}: not stopped at the step"
        );
        let key = home.path().join("data/audit-checkpoint-sm2.pem");
        if point == "key.dir_sync" {
            assert!(key.exists(), "{point}: renamed before the stop");
        } else {
            assert!(!key.exists(), "{point}: no part of a key");
            let out = keygen(home.path(), None);
            assert!(
                out.status.success(),
                "{point}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let client = Client::new(addr, &home.path().join("certs/ca.pem"), None);
        let mut child = spawn_with_fault(home.path(), addr, &[]);
        wait_ready(&client).await;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        assert!(
            exit_within(&mut child, 20, point).success(),
            "{point}: clean stop"
        );
    }
}

/// The other durable writes walked step by step: a policy edit through the
/// admin API (temporary file, sync, rename, directory sync), a suspension
/// (insert, flush, file sync) and a checkpoint key written by
/// `tongban audit keygen`. A stop before any step leaves a home that starts
/// and serves, with the policy old or new (never a part), and a key that is
/// whole or absent (a second keygen then writes it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_before_any_step_of_a_policy_edit_a_suspension_or_a_key_write_leaves_a_home_that_starts()
 {
    let (base, _) = demo_home();
    let addr = free_addr();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let admin = crate::helpers::mint(
        base.path(),
        "shujuju",
        "admin-1",
        &["policy_admin"],
        now,
        3600,
    );
    let auth = ("authorization".to_owned(), format!("Bearer {admin}"));
    let grant = "/v1/admin/grants/minzheng-dibao-hukou";
    let points = [
        "policy.write",
        "policy.sync",
        "policy.rename",
        "policy.dir_sync",
        "stops.insert",
        "stops.flush",
        "stops.sync",
    ];
    for point in points {
        let home = copy_home(base.path());
        let client = Client::new(addr, &home.path().join("certs/ca.pem"), None);
        let mut child = spawn_with_fault(
            home.path(),
            addr,
            &[("TONGBAN_FAULT_EXIT", format!("{point}#1"))],
        );
        wait_ready(&client).await;
        let before = client
            .request("GET", grant, std::slice::from_ref(&auth))
            .await
            .unwrap();
        assert_eq!(before.status, StatusCode::OK, "{}", before.text);
        change_that_stops(&client, point, &auth, &before).await;
        let status = exit_within(&mut child, 10, point);
        assert_eq!(
            status.code(),
            Some(tongban::faults::EXIT_STATUS),
            "{point}: not stopped at the step"
        );

        let mut child = spawn_with_fault(home.path(), addr, &[]);
        wait_ready(&client).await;
        let after = client
            .request("GET", grant, std::slice::from_ref(&auth))
            .await
            .unwrap();
        assert_eq!(after.status, StatusCode::OK, "{point}: {}", after.text);
        let quota = after.body["grant"]["conditions"]["quota"].clone();
        assert!(
            quota == before.body["grant"]["conditions"]["quota"] || quota == "77/min",
            "{point}: the grant is neither the old nor the new one: {quota}"
        );
        let departments = client
            .request("GET", "/v1/admin/departments", std::slice::from_ref(&auth))
            .await
            .unwrap();
        assert_eq!(
            departments.status,
            StatusCode::OK,
            "{point}: {}",
            departments.text
        );
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        assert!(
            exit_within(&mut child, 20, point).success(),
            "{point}: clean stop"
        );
    }

    key_writes_stopped_at_each_step(base.path(), addr).await;
}

/// A stop before each step of an idempotency key's record (after the
/// request's event is durable, before the answer leaves) leaves a home
/// that starts; the unanswered request's retry is answered (as a first
/// request), and its next retry is a replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_before_any_step_of_an_idempotency_record_leaves_a_home_that_starts() {
    let (base, _) = demo_home();
    let addr = free_addr();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let clerk = crate::helpers::mint(
        base.path(),
        "minzheng",
        "clerk-1",
        &["dibao_reviewer"],
        now,
        3600,
    );
    let id = sample_ids(base.path(), "renshe.shebao", 1)[0].clone();
    let path = format!("/v1/datasets/renshe.shebao/records/{id}/verify");
    let headers = [
        ("authorization".to_owned(), format!("Bearer {clerk}")),
        ("x-purpose".to_owned(), "dibao_review".to_owned()),
        ("x-case-ref".to_owned(), "MZ-2026-1".to_owned()),
        ("content-type".to_owned(), "application/json".to_owned()),
        ("idempotency-key".to_owned(), "crash-1".to_owned()),
    ];
    let body = bytes::Bytes::from(r#"{"conditions":[{"field":"monthly_pension","op":"exists"}]}"#);
    for point in ["idempotency.insert", "idempotency.sync"] {
        let home = copy_home(base.path());
        let client = Client::new(addr, &home.path().join("certs/ca.pem"), None);
        let mut child = spawn_with_fault(
            home.path(),
            addr,
            &[("TONGBAN_FAULT_EXIT", format!("{point}#1"))],
        );
        wait_ready(&client).await;
        let unanswered = client
            .request_with_body("POST", &path, &headers, body.clone())
            .await;
        assert!(unanswered.is_err(), "{point}: answered: {unanswered:?}");
        assert_eq!(
            exit_within(&mut child, 10, point).code(),
            Some(tongban::faults::EXIT_STATUS),
            "{point}: not stopped at the step"
        );

        let mut child = spawn_with_fault(home.path(), addr, &[]);
        wait_ready(&client).await;
        let retry = client
            .request_with_body("POST", &path, &headers, body.clone())
            .await
            .unwrap();
        assert_eq!(retry.status, StatusCode::OK, "{point}: {}", retry.text);
        let again = client
            .request_with_body("POST", &path, &headers, body.clone())
            .await
            .unwrap();
        assert_eq!(again.status, StatusCode::OK, "{point}: {}", again.text);
        assert_eq!(again.headers["idempotent-replayed"], "true", "{point}");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        assert!(
            exit_within(&mut child, 20, point).success(),
            "{point}: clean stop"
        );
    }
}

/// A stop before each step of an online import's commit (the new
/// generation's sync, the pointer's write, its sync) leaves a home that
/// starts and answers with the old records or the new, never a mixture or
/// none; the next import succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_before_any_step_of_an_import_leaves_the_old_records_or_the_new() {
    let (base, _) = demo_home();
    let addr = free_addr();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mint = |dept, sub, role| crate::helpers::mint(base.path(), dept, sub, &[role], now, 3600);
    let admin = mint("shujuju", "admin-1", "policy_admin");
    let clerk = mint("renshe", "clerk-1", "pension_clerk");
    let hukou = std::fs::read_to_string(base.path().join("samples/gongan.hukou.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(hukou.lines().next().unwrap()).unwrap();
    let id = first["id_number"].as_str().unwrap().to_owned();
    let import = |name: &str| {
        let mut all: Vec<serde_json::Value> = hukou
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        all[0]["name"] = name.into();
        let body: String = all.iter().map(|r| format!("{r}\n")).collect();
        bytes::Bytes::from(body)
    };
    let import_headers = [
        ("authorization".to_owned(), format!("Bearer {admin}")),
        ("content-type".to_owned(), "application/x-ndjson".to_owned()),
    ];
    let lookup_headers = [
        ("authorization".to_owned(), format!("Bearer {clerk}")),
        ("x-purpose".to_owned(), "pension_eligibility".to_owned()),
    ];
    let path = "/v1/admin/datasets/gongan.hukou/records";
    let lookup = format!("/v1/datasets/gongan.hukou/records/{id}?fields=name");
    for point in ["data.sync#1", "data.pointer#1", "data.sync#2"] {
        let home = copy_home(base.path());
        let client = Client::new(addr, &home.path().join("certs/ca.pem"), None);
        let mut child = spawn_with_fault(
            home.path(),
            addr,
            &[("TONGBAN_FAULT_EXIT", point.to_owned())],
        );
        wait_ready(&client).await;
        let old = client
            .request("GET", &lookup, &lookup_headers)
            .await
            .unwrap();
        assert_eq!(old.status, StatusCode::OK, "{point}: {}", old.text);
        let unanswered = client
            .request_with_body("PUT", path, &import_headers, import("中途"))
            .await;
        assert!(unanswered.is_err(), "{point}: answered: {unanswered:?}");
        assert_eq!(
            exit_within(&mut child, 20, point).code(),
            Some(tongban::faults::EXIT_STATUS),
            "{point}: not stopped at the step"
        );

        let mut child = spawn_with_fault(home.path(), addr, &[]);
        wait_ready(&client).await;
        let after = client
            .request("GET", &lookup, &lookup_headers)
            .await
            .unwrap();
        assert_eq!(after.status, StatusCode::OK, "{point}: {}", after.text);
        let name = &after.body["record"]["name"];
        assert!(
            *name == old.body["record"]["name"] || *name == "中途",
            "{point}: {name}"
        );
        let again = client
            .request_with_body("PUT", path, &import_headers, import("之后"))
            .await
            .unwrap();
        assert_eq!(again.status, StatusCode::OK, "{point}: {}", again.text);
        let now = client
            .request("GET", &lookup, &lookup_headers)
            .await
            .unwrap();
        assert_eq!(now.body["record"]["name"], "之后", "{point}");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        assert!(
            exit_within(&mut child, 20, point).success(),
            "{point}: clean stop"
        );
    }
}
