//! The audit log at scale: fills a log with N events through the
//! group-commit writer, then measures the privacy officer's operations on it:
//! the first page of a search by resident and by consumer, a full chain
//! verification, and the disk used per event. Run by `bench/audit.sh`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tongban::audit::checkpoint::CheckpointSigner;
use tongban::audit::query::{EventFilter, search};
use tongban::audit::suite::Suite;
use tongban::audit::{AuditStore, AuditWriter, EventBody, EventKind, Outcome, WriterOptions};
use tongban::clock::Clock;
use tongban::config::Durability;

const DEPTS: [&str; 8] = [
    "minzheng",
    "renshe",
    "yibao",
    "jiaoyu",
    "gongan",
    "weijian",
    "ziranziyuan",
    "shujuju",
];
const DATASETS: [&str; 5] = [
    "gongan.hukou",
    "renshe.shebao",
    "minzheng.hunyin",
    "minzheng.dibao",
    "ziranziyuan.budongchan",
];
const PURPOSES: [&str; 6] = [
    "dibao_review",
    "pension_eligibility",
    "medical_insurance_enrollment",
    "school_admission",
    "survivor_benefits",
    "other",
];

fn pseudonym(i: u64) -> [u8; 16] {
    let d = tongban::audit::event::sha256(&i.to_le_bytes());
    let mut p = [0u8; 16];
    p.copy_from_slice(&d[..16]);
    p
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn body(rng: &mut Rng, i: u64, residents: u64, start_ms: i64) -> EventBody {
    let r = rng.next();
    let allow = r % 10 != 0;
    EventBody {
        time_ms: start_ms + i64::try_from(i).unwrap_or(0) / 4,
        request_id: format!("{:024x}", r as u128 * 7919),
        kind: EventKind::Query,
        operation: "lookup".into(),
        dept: Some(DEPTS[(r % 7) as usize].into()),
        subject: Some(format!("clerk-{}", r % 500).into()),
        roles: vec!["dibao_reviewer".into()],
        cert_fingerprint: (r % 2 == 0).then_some([7; 32]),
        source: format!("10.1.{}.{}:{}", r % 200, (r >> 8) % 250, 40000 + r % 20000).into(),
        dataset: Some(DATASETS[((r >> 16) % 5) as usize].into()),
        resident: Some(pseudonym((r >> 20) % residents)),
        purpose: Some(PURPOSES[((r >> 24) % 6) as usize].into()),
        case_ref: Some(format!("MZ-2026-{:06}", r % 1_000_000)),
        fields: if allow {
            vec![
                "name".into(),
                "gender".into(),
                "birth_date".into(),
                "hukou_address".into(),
                "household_id".into(),
                "hukou_status".into(),
            ]
        } else {
            vec![]
        },
        outcome: if allow { Outcome::Allow } else { Outcome::Deny },
        reason: (!allow).then(|| "purpose-not-granted".into()),
        grant: allow.then(|| ("minzheng-dibao-hukou".into(), 1)),
        policy_version: Some("4dab1a842693".into()),
        status: if allow { 200 } else { 403 },
        latency_us: u32::try_from(r % 900).unwrap_or(0) + 100,
        detail: None,
        proof: None,
    }
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or_default()
}

/// Appends `events` events of `residents` residents through the writer, in
/// groups of 2,048, four groups in flight.
async fn fill_log(writer: &Arc<AuditWriter>, events: u64, residents: u64) -> anyhow::Result<()> {
    let start_ms = 1_780_000_000_000;
    let mut rng = Rng(42);
    let chunk = 2048u64;
    let mut pending = Vec::new();
    let mut i = 0;
    while i < events {
        let n = chunk.min(events - i);
        let bodies: Vec<EventBody> = (i..i + n)
            .map(|k| body(&mut rng, k, residents, start_ms))
            .collect();
        let w = writer.clone();
        pending.push(tokio::spawn(async move { w.append_many(bodies).await }));
        if pending.len() >= 4 {
            pending
                .remove(0)
                .await?
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        i += n;
    }
    for p in pending {
        p.await?.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}

/// The first page's time of searches by resident (200 residents known to
/// have events; with how many events they found) and by consumer and
/// decision (block summaries, 7 departments).
fn search_times(
    store: &AuditStore,
    residents: u64,
) -> anyhow::Result<(Vec<Duration>, usize, Vec<Duration>)> {
    // Search by resident: the first page (50) for residents known to have events.
    let mut by_resident = Vec::new();
    let mut found = 0usize;
    for k in 0..200u64 {
        let f = EventFilter {
            resident: Some(pseudonym((k * 4_999) % residents)),
            ..EventFilter::default()
        };
        let t = Instant::now();
        let page = search(store, &f, None, 50)?;
        by_resident.push(t.elapsed());
        found += page.events.len();
    }
    // Search by consumer and decision (block summaries): the first page.
    let mut by_consumer = Vec::new();
    for d in DEPTS.iter().take(7) {
        let f = EventFilter {
            consumer: Some((*d).into()),
            decision: Some(Outcome::Deny),
            ..EventFilter::default()
        };
        let t = Instant::now();
        search(store, &f, None, 50)?;
        by_consumer.push(t.elapsed());
    }
    Ok((by_resident, found, by_consumer))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut events: u64 = 10_000_000;
    let mut residents: u64 = 1_000_000;
    let mut suite_events: u64 = 200_000;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--events" => events = args.next().unwrap_or_default().parse()?,
            "--residents" => residents = args.next().unwrap_or_default().parse()?,
            "--suite-events" => suite_events = args.next().unwrap_or_default().parse()?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let dir = tempfile::tempdir()?;
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(512 * 1024 * 1024)
        .open()?;
    let store = AuditStore::open(&db, dir.path())?;
    let signer = Arc::new(CheckpointSigner::make_and_open(
        dir.path(),
        tongban::audit::suite::Suite::International,
    )?);
    let writer = Arc::new(start_writer(&store, dir.path(), &signer)?);

    let fill = Instant::now();
    fill_log(&writer, events, residents).await?;
    let fill_secs = fill.elapsed().as_secs_f64();
    let stats = writer.stats();
    let write_us = stats
        .flush_micros
        .load(std::sync::atomic::Ordering::Relaxed) as f64
        / events as f64;
    let batches = stats.batches.load(std::sync::atomic::Ordering::Relaxed);
    writer.close().await;
    db.flush()?;
    let disk = dir_size(dir.path());

    let (by_resident, found, by_consumer) = search_times(&store, residents)?;
    let t = Instant::now();
    let report = store.verify(Some(&signer.keyring()))?;
    let verify_secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        report.ok() && report.checked == events,
        "verification failed: {report:?}"
    );

    let rate = events as f64 / verify_secs;
    let p50 = percentile(by_resident.clone(), 0.5);
    let p99 = percentile(by_resident, 0.99);
    let per_event = disk as f64 / events as f64;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("| audit log: {events} events, {residents} residents | measured | target | met |");
    println!("|---|---|---|---|");
    println!(
        "| fill through the group-commit writer | {:.0} events/s ({write_us:.1} µs/event in sled inserts and flushes, {:.0} events per group) | — | — |",
        events as f64 / fill_secs,
        events as f64 / batches.max(1) as f64
    );
    println!(
        "| search by resident, first page (p50 / p99 of 200; {:.1} events each) | {:.2} / {:.2} ms | < 20 ms | {} |",
        found as f64 / 200.0,
        ms(p50),
        ms(p99),
        if p99 < Duration::from_millis(20) {
            "yes"
        } else {
            "NO"
        }
    );
    println!(
        "| search by consumer + decision, first page (worst of 7) | {:.2} ms | — | — |",
        ms(by_consumer.iter().copied().max().unwrap_or_default())
    );
    println!(
        "| verify chain + {} checkpoints | {:.0} events/s | > 200,000 | {} |",
        report.checkpoints_checked,
        rate,
        if rate > 200_000.0 { "yes" } else { "NO" }
    );
    println!(
        "| disk per event (sled, with indexes) | {per_event:.0} bytes | < 400 | {} |",
        if per_event < 400.0 { "yes" } else { "NO" }
    );

    // The two suites on the same events: verify throughput, one against the other.
    let mut rates = Vec::new();
    for suite in [Suite::International, Suite::Gm] {
        rates.push(verify_rate(suite, suite_events, residents).await?);
    }
    println!(
        "| verify, gm (SM3 + SM2) / international (SHA-256 + Ed25519), {suite_events} events each | {:.2} ({:.0} vs {:.0} events/s) | reported | — |",
        rates[1] / rates[0],
        rates[1],
        rates[0]
    );
    Ok(())
}

/// The group-commit writer as the benchmark runs it: big groups, `flush`
/// durability (the disk is not what is measured), a checkpoint every 10,000.
fn start_writer(
    store: &AuditStore,
    dir: &std::path::Path,
    signer: &Arc<CheckpointSigner>,
) -> anyhow::Result<AuditWriter> {
    Ok(AuditWriter::start(
        store.clone(),
        dir,
        signer.clone(),
        Arc::new(tongban::metrics::Metrics::new()),
        WriterOptions {
            node: "bench-1".into(),
            durability: Durability::Flush,
            max_batch: 4096,
            group_wait: Duration::ZERO,
            checkpoint_every: 10_000,
            checkpoint_interval: Duration::from_secs(3600),
            clock: Clock::system(),
        },
    )?)
}

/// Fills a fresh log of `events` events with `suite` and returns how many
/// events per second its verification checks.
async fn verify_rate(suite: Suite, events: u64, residents: u64) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(256 * 1024 * 1024)
        .open()?;
    let store = AuditStore::open(&db, dir.path())?;
    let signer = Arc::new(CheckpointSigner::make_and_open(dir.path(), suite)?);
    let writer = start_writer(&store, dir.path(), &signer)?;
    let mut rng = Rng(7);
    let mut i = 0;
    while i < events {
        let n = 2048u64.min(events - i);
        let bodies: Vec<EventBody> = (i..i + n)
            .map(|k| body(&mut rng, k, residents, 1_780_000_000_000))
            .collect();
        writer
            .append_many(bodies)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        i += n;
    }
    writer.close().await;
    let t = Instant::now();
    let report = store.verify(Some(&signer.keyring()))?;
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        report.ok() && report.checked == events && report.epochs.len() == 1,
        "verification failed: {report:?}"
    );
    anyhow::ensure!(
        report.epochs[0].suite == suite.name(),
        "wrong suite: {report:?}"
    );
    Ok(events as f64 / secs)
}
