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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_load_loses_no_acknowledged_event() {
    let (home, config) = demo_home();
    let addr = free_addr();
    let mut child = spawn_gateway(home.path(), addr);
    let client = Client::new(addr, &home.path().join("certs/ca.pem"), None);
    wait_ready(&client).await;

    let key = std::fs::read(home.path().join("keys/issuer.pem")).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let token = tongban::devpki::mint_token(
        &key,
        tongban::demo::DEMO_ISSUER,
        tongban::demo::DEMO_AUDIENCE,
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
    let mut workers = Vec::new();
    for w in 0..8 {
        let (client, token, ids, acked, stop) = (
            client.clone(),
            token.clone(),
            ids.clone(),
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
    let db = sled::open(&config.data_dir).unwrap();
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
