//! `tongban audit …`: the privacy officer's tools against a stopped gateway's
//! data directory, mirroring the `/v1/audit` routes, and offline verification
//! of an export with nothing but the public key.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use tongban::audit::chain::Epoch;
use tongban::audit::checkpoint::{CheckpointSigner, ED25519_KEY_FILE, Keyring, SM2_KEY_FILE};
use tongban::audit::export::{ExportFormat, verify_export, write_export};
use tongban::audit::query::{self as q, EventFilter, event_json};
use tongban::audit::suite::Suite;
use tongban::audit::{AuditStore, Outcome, Pseudonymizer, retention};
use tongban::config::Config;
use tongban::domain::ResidentId;

use super::online::{Connection, Online, block_on, call_blocking, call_raw, refused};
use super::{Target, open_db};

#[derive(Subcommand)]
pub(crate) enum AuditCommand {
    /// Recompute the hash chain and every checkpoint signature; or, with
    /// --export and --pubkey, verify an exported file offline.
    Verify {
        #[command(flatten)]
        target: Target,
        /// An export (NDJSON or CSV) to verify instead of the live log.
        #[arg(long, requires = "pubkey", conflicts_with = "url")]
        export: Option<PathBuf>,
        /// The checkpoint public keys (PEM: Ed25519 and/or SM2, as `tongban
        /// audit pubkey` prints them); may be given more than once.
        #[arg(long)]
        pubkey: Vec<PathBuf>,
        /// Cluster mode: verify every node's copy in PostgreSQL (no gap, no
        /// altered or removed row, checkpoint signatures valid) and report
        /// per node; runs while the gateways serve. Checkpoints are checked
        /// with --pubkey if given, else with the keys the nodes registered.
        #[arg(long, conflicts_with_all = ["export", "url"])]
        cluster: bool,
        /// With --url, verified by the running gateway (GET /v1/audit/verify).
        #[command(flatten)]
        online: Online,
    },
    /// Search events, newest first (JSON Lines).
    Search {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        filter: FilterArgs,
        /// Most events to print.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Every disclosure of one resident's data.
    Disclosures {
        #[command(flatten)]
        target: Target,
        /// The resident ID number.
        #[arg(long)]
        resident: String,
        /// json or csv.
        #[arg(long, default_value = "json")]
        format: String,
    },
    /// Export events with the signed checkpoints that cover them.
    Export {
        #[command(flatten)]
        target: Target,
        /// From (YYYY-MM-DD or RFC 3339).
        #[arg(long)]
        from: Option<String>,
        /// To (YYYY-MM-DD or RFC 3339).
        #[arg(long)]
        to: Option<String>,
        /// ndjson or csv.
        #[arg(long, default_value = "ndjson")]
        format: String,
        /// Write here instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
        /// With --url, streamed by the running gateway (GET /v1/audit/export).
        #[command(flatten)]
        online: Online,
    },
    /// Counts per day and anomaly flags.
    Stats {
        #[command(flatten)]
        target: Target,
        /// From (YYYY-MM-DD or RFC 3339); default: 7 days before --to.
        #[arg(long)]
        from: Option<String>,
        /// To (YYYY-MM-DD or RFC 3339); default: now.
        #[arg(long)]
        to: Option<String>,
    },
    /// Print the public keys that verify this node's checkpoints (PEM, one
    /// block per suite in use: Ed25519, SM2).
    Pubkey {
        #[command(flatten)]
        target: Target,
    },
    /// Create a checkpoint signing key for a suite in the data directory
    /// (`gm`: SM2, PKCS#8 PEM, mode 0600). An existing key is never replaced:
    /// the checkpoints it signed need it.
    Keygen {
        #[command(flatten)]
        target: Target,
        /// `gm` (SM2) or `international` (Ed25519).
        #[arg(long, default_value = "gm")]
        suite: String,
    },
    /// Rotate the checkpoint key of audit.suite (while the gateway is
    /// stopped): a new key signs from now on; the old one is kept among the
    /// retired keys (data/audit-checkpoint-retired/), so the checkpoints it
    /// signed still verify, and the last event gets a checkpoint signed by
    /// both, as at a change of suite.
    RotateKey {
        #[command(flatten)]
        target: Target,
    },
    /// Remove events past the retention period that are exported and checkpointed.
    /// With --url, through a running gateway (POST /v1/audit/prune, a privacy
    /// officer's token), under the same rules.
    Prune {
        #[command(flatten)]
        target: Target,
        /// Report what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Retention of the cluster's central copy in PostgreSQL (whole
        /// monthly partitions), instead of this node's log.
        #[arg(long, conflicts_with = "url")]
        cluster: bool,
        /// With --url, done by the running gateway (POST /v1/audit/prune).
        #[command(flatten)]
        online: Online,
    },
}

/// Search filters, as in `GET /v1/audit/events`.
#[derive(clap::Args)]
pub(crate) struct FilterArgs {
    /// Resident ID number.
    #[arg(long)]
    resident: Option<String>,
    /// Consumer department.
    #[arg(long)]
    consumer: Option<String>,
    /// Subject.
    #[arg(long)]
    subject: Option<String>,
    /// Dataset.
    #[arg(long)]
    dataset: Option<String>,
    /// Purpose.
    #[arg(long)]
    purpose: Option<String>,
    /// Case reference (办件编号), exactly.
    #[arg(long)]
    case_ref: Option<String>,
    /// allow, deny or error.
    #[arg(long)]
    decision: Option<String>,
    /// From (YYYY-MM-DD or RFC 3339).
    #[arg(long)]
    from: Option<String>,
    /// To (YYYY-MM-DD or RFC 3339).
    #[arg(long)]
    to: Option<String>,
    /// Kinds of event, comma-separated: query, audit_review, policy_admin, other.
    #[arg(long)]
    kind: Option<String>,
}

struct Opened {
    config: Config,
    store: AuditStore,
    offset: time::UtcOffset,
}

fn open(target: &Target) -> Result<Opened> {
    let config = target.load()?;
    let db = open_db(&config.data_dir)?;
    let store = AuditStore::open(&db, &config.data_dir)?;
    let offset = config.utc_offset();
    Ok(Opened {
        config,
        store,
        offset,
    })
}

fn time_arg(s: Option<&str>, offset: time::UtcOffset, end: bool) -> Result<Option<i64>> {
    s.map(|s| q::parse_time(s, offset, end).map_err(|e| anyhow::anyhow!("{s}: {e}")))
        .transpose()
}

/// "international 1..=500, then gm 501..=800".
fn epochs_line(epochs: &[Epoch]) -> String {
    if epochs.is_empty() {
        return "no events".into();
    }
    epochs
        .iter()
        .map(|e| format!("{} {}..={}", e.suite, e.first_seq, e.last_seq))
        .collect::<Vec<_>>()
        .join(", then ")
}

fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
}

pub(crate) fn run(command: AuditCommand) -> Result<ExitCode> {
    match command {
        AuditCommand::Verify {
            export: Some(file),
            pubkey,
            ..
        } => verify_export_file(file, pubkey),
        AuditCommand::Verify {
            target,
            cluster: true,
            pubkey,
            ..
        } => verify_cluster(&target.load()?, &pubkey),
        AuditCommand::Verify { target, online, .. } => match online.connection() {
            Some(conn) => verify_online(conn),
            None => verify_local(target),
        },
        AuditCommand::Search {
            target,
            filter,
            limit,
        } => search(target, filter, limit),
        AuditCommand::Disclosures {
            target,
            resident,
            format,
        } => disclosures(target, resident, format),
        AuditCommand::Export {
            target,
            from,
            to,
            format,
            output,
            online,
        } => match online.connection() {
            Some(conn) => export_online(conn, from.as_deref(), to.as_deref(), &format, output),
            None => export(target, from, to, format, output),
        },
        AuditCommand::Stats { target, from, to } => stats(target, from, to),
        AuditCommand::Keygen { target, suite } => keygen(target, suite),
        AuditCommand::Pubkey { target } => pubkey(target),
        AuditCommand::RotateKey { target } => rotate_key(target),
        AuditCommand::Prune {
            target,
            dry_run,
            cluster,
            online,
        } => match online.connection() {
            Some(conn) => prune_online(conn, dry_run),
            None if cluster => prune_central(target, dry_run),
            None => prune_local(target, dry_run),
        },
    }
}

/// `audit verify --export FILE --pubkey KEY…`: an export verified offline,
/// a report per chain on standard output and a verdict on standard error.
fn verify_export_file(file: PathBuf, pubkey: Vec<PathBuf>) -> Result<ExitCode> {
    if pubkey.is_empty() {
        bail!("--pubkey is required with --export");
    }
    let mut key = Keyring::default();
    for path in &pubkey {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let found = Keyring::from_pem(&pem);
        if found.is_empty() {
            bail!(
                "{} holds no Ed25519 or SM2 public key (PEM)",
                path.display()
            );
        }
        key.extend(found);
    }
    let reader = std::io::BufReader::new(
        std::fs::File::open(&file).with_context(|| format!("cannot open {}", file.display()))?,
    );
    let reports = verify_export(reader, &key)?;
    // One chain: its report, as always; a cluster's export: one per node.
    if let [report] = reports.as_slice() {
        out!("{}", serde_json::to_string_pretty(report)?);
    } else {
        out!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "sections": reports }))?
        );
    }
    let mut intact = true;
    for report in &reports {
        let node = match (&report.node, reports.len()) {
            (Some(n), 2..) => format!(" of node {n}"),
            _ => String::new(),
        };
        if report.ok() {
            eprintln!(
                "export{node} intact: {} events ({}..={}), {} checkpoints verified; {}{}",
                report.chain.checked,
                report.chain.anchor_seq + 1,
                report.chain.head_seq,
                report.chain.checkpoints_checked,
                epochs_line(&report.chain.epochs),
                if report.uncovered_tail > 0 {
                    format!(
                        "; WARNING: the last {} events are not covered by a signed checkpoint",
                        report.uncovered_tail
                    )
                } else {
                    String::new()
                }
            );
        } else {
            intact = false;
            if let Some(b) = &report.chain.broken {
                eprintln!("export{node} BROKEN at event {}: {}", b.seq, b.problem);
            }
            for p in &report.problems {
                eprintln!("export{node} problem: {p}");
            }
        }
    }
    Ok(if intact {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `audit verify --url`: the chain verified by the running gateway itself
/// (`GET /v1/audit/verify`); the report as it answers, the verdict on stderr.
fn verify_online(conn: Connection) -> Result<ExitCode> {
    let target = conn.resolve("privacy_officer")?;
    let (status, report) = call_blocking(&target, "GET", "/v1/audit/verify", None)?;
    out!("{}", serde_json::to_string_pretty(&report)?);
    if !status.is_success() {
        return Err(refused(status, &report));
    }
    let intact = report["verdict"] == "intact";
    eprintln!(
        "{} (verified by the gateway while it serves: {} events after anchor {}, head {}, {} checkpoints)",
        if intact {
            "audit chain intact"
        } else {
            "audit chain BROKEN"
        },
        report["checked"],
        report["anchor_seq"],
        report["head_seq"],
        report["checkpoints_checked"]
    );
    Ok(if intact {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `audit prune --url`: retention pruning done by the running gateway
/// (`POST /v1/audit/prune`), under the rules of the local prune.
fn prune_online(conn: Connection, dry_run: bool) -> Result<ExitCode> {
    let target = conn.resolve("privacy_officer")?;
    let path = format!("/v1/audit/prune?dry_run={dry_run}");
    let (status, report) = call_blocking(&target, "POST", &path, None)?;
    out!("{}", serde_json::to_string_pretty(&report)?);
    if !status.is_success() {
        return Err(refused(status, &report));
    }
    Ok(ExitCode::SUCCESS)
}

/// `audit export --url`: the export the running gateway streams
/// (`GET /v1/audit/export`), written as it came; verify it offline with
/// `audit verify --export FILE --pubkey KEY`.
fn export_online(
    conn: Connection,
    from: Option<&str>,
    to: Option<&str>,
    format: &str,
    output: Option<PathBuf>,
) -> Result<ExitCode> {
    let target = conn.resolve("privacy_officer")?;
    let mut query = vec![format!("format={}", enc(format))];
    for (k, v) in [("from", from), ("to", to)] {
        if let Some(v) = v {
            query.push(format!("{k}={}", enc(v)));
        }
    }
    let path = format!("/v1/audit/export?{}", query.join("&"));
    let (status, bytes) = block_on(call_raw(&target, "GET", &path, None))?;
    if !status.is_success() {
        let problem: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        return Err(refused(status, &problem));
    }
    match &output {
        Some(path) => std::fs::write(path, &bytes)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => std::io::stdout().lock().write_all(&bytes)?,
    }
    eprintln!("exported {} bytes through {}", bytes.len(), target.url());
    Ok(ExitCode::SUCCESS)
}

fn enc(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// `audit verify`: this node's chain and checkpoints.
fn verify_local(target: Target) -> Result<ExitCode> {
    let o = open(&target)?;
    let signer = CheckpointSigner::open(&o.config.data_dir)?;
    let report = o.store.verify(Some(&signer.keyring()))?;
    out!("{}", serde_json::to_string_pretty(&report)?);
    if report.ok() {
        eprintln!(
            "audit chain intact: {} events after anchor {}, head {} ({}), {} checkpoints verified; {}",
            report.checked,
            report.anchor_seq,
            report.head_seq,
            report.head_hash,
            report.checkpoints_checked,
            epochs_line(&report.epochs)
        );
        Ok(ExitCode::SUCCESS)
    } else {
        if let Some(b) = &report.broken {
            eprintln!("audit chain BROKEN at event {}: {}", b.seq, b.problem);
        }
        Ok(ExitCode::FAILURE)
    }
}

/// `audit search`: events, newest first, as JSON Lines.
fn search(target: Target, filter: FilterArgs, limit: usize) -> Result<ExitCode> {
    let o = open(&target)?;
    let f = EventFilter {
        resident: match &filter.resident {
            Some(r) => {
                Some(Pseudonymizer::open(&o.config.data_dir)?.pseudonym(&ResidentId::parse(r)?))
            }
            None => None,
        },
        consumer: filter.consumer,
        subject: filter.subject,
        dataset: filter.dataset,
        purpose: filter.purpose,
        case_ref: filter.case_ref,
        owner: None,
        decision: match filter.decision.as_deref() {
            None => None,
            Some("allow") => Some(Outcome::Allow),
            Some("deny") => Some(Outcome::Deny),
            Some("error") => Some(Outcome::Error),
            Some(d) => bail!("--decision {d}: expected allow, deny or error"),
        },
        from_ms: time_arg(filter.from.as_deref(), o.offset, false)?,
        to_ms: time_arg(filter.to.as_deref(), o.offset, true)?,
        node: None,
        kinds: filter
            .kind
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .filter(|k| !k.is_empty())
            .map(|k| {
                tongban::audit::EventKind::parse(k.trim()).with_context(|| {
                    format!("--kind {k}: expected query, audit_review, policy_admin or other")
                })
            })
            .collect::<Result<_>>()?,
    };
    let page = q::search(&o.store, &f, None, limit)?;
    let mut out = std::io::stdout().lock();
    for (e, h) in &page.events {
        writeln!(out, "{}", event_json(e, h, o.offset))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `audit disclosures`: one resident's disclosure report, JSON or CSV.
fn disclosures(target: Target, resident: String, format: String) -> Result<ExitCode> {
    let o = open(&target)?;
    let id = ResidentId::parse(&resident)?;
    let pseudonym = Pseudonymizer::open(&o.config.data_dir)?.pseudonym(&id);
    let list = q::disclosures(&o.store, &pseudonym, o.offset)?;
    match format.as_str() {
        "json" => out!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"resident": id.masked(), "count": list.len(), "disclosures": list})
            )?
        ),
        "csv" => {
            let mut w = csv::Writer::from_writer(std::io::stdout().lock());
            w.write_record([
                "time", "consumer", "subject", "purpose", "case_ref", "dataset", "fields", "grant",
                "seq",
            ])?;
            for d in &list {
                w.write_record(
                    [
                        d.time.as_str(),
                        &d.consumer,
                        &d.subject,
                        &d.purpose,
                        d.case_ref.as_deref().unwrap_or(""),
                        &d.dataset,
                        &d.fields.join(";"),
                        d.grant.as_deref().unwrap_or(""),
                        &d.seq.to_string(),
                    ]
                    .map(|c| tongban::audit::export::spreadsheet_safe(c).into_owned()),
                )?;
            }
            w.flush()?;
        }
        other => bail!("--format {other}: expected json or csv"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `audit export`: events with the checkpoints that cover them.
fn export(
    target: Target,
    from: Option<String>,
    to: Option<String>,
    format: String,
    output: Option<PathBuf>,
) -> Result<ExitCode> {
    let o = open(&target)?;
    let format = match format.as_str() {
        "ndjson" => ExportFormat::Ndjson,
        "csv" => ExportFormat::Csv,
        other => bail!("--format {other}: expected ndjson or csv"),
    };
    let from = time_arg(from.as_deref(), o.offset, false)?;
    let to = time_arg(to.as_deref(), o.offset, true)?;
    let covered = o.store.last_checkpoint_seq()?;
    // Offline, the tail after the last checkpoint is exported too; the verifier reports it as uncovered.
    let range = q::seq_range(&o.store, from, to, u64::MAX)?;
    let key_id = CheckpointSigner::open_suite(&o.config.data_dir, o.config.audit.suite)?.key_id();
    let mut out: Box<dyn Write> = match &output {
        Some(path) => Box::new(std::io::BufWriter::new(std::fs::File::create(path)?)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    write_export(
        &o.store,
        range,
        format,
        o.offset,
        &o.config.node_id,
        &key_id,
        &mut out,
    )?;
    out.flush()?;
    if let Some((lo, hi)) = range {
        eprintln!(
            "exported events {lo}..={hi}{}",
            if hi > covered {
                format!(" (events after {covered} are not yet covered by a checkpoint)")
            } else {
                String::new()
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `audit stats`: counts per day and anomaly flags.
fn stats(target: Target, from: Option<String>, to: Option<String>) -> Result<ExitCode> {
    let o = open(&target)?;
    let to = time_arg(to.as_deref(), o.offset, true)?.unwrap_or_else(now_ms);
    let from = time_arg(from.as_deref(), o.offset, false)?.unwrap_or(to - 7 * 86_400_000);
    let rules =
        tongban::audit::stats::FlagRules::from_config(&o.config).map_err(|e| anyhow::anyhow!(e))?;
    let ids = tongban::audit::pseudonym::Pseudonymizer::open(&o.config.data_dir)?;
    let stats = tongban::audit::stats::stats(
        &o.store,
        (from, to),
        None,
        o.offset,
        std::sync::Arc::new(rules),
        &ids,
    )?;
    out!("{}", serde_json::to_string_pretty(&stats)?);
    Ok(ExitCode::SUCCESS)
}

/// `audit keygen`: a checkpoint key for a suite, never replacing one.
fn keygen(target: Target, suite: String) -> Result<ExitCode> {
    let config = target.load()?;
    let suite = Suite::parse(&suite)
        .with_context(|| format!("--suite {suite}: expected gm or international"))?;
    let file = match suite {
        Suite::Gm => SM2_KEY_FILE,
        Suite::International => ED25519_KEY_FILE,
    };
    let path = config.data_dir.join(file);
    if path.exists() {
        bail!(
            "{} exists already; a checkpoint key is never replaced (the checkpoints it signed need it)",
            path.display()
        );
    }
    std::fs::create_dir_all(&config.data_dir)?;
    CheckpointSigner::make_missing(&config.data_dir, suite)?;
    let signer = CheckpointSigner::open_suite(&config.data_dir, suite)?;
    eprintln!(
        "{} key {} written to {} (mode 0600); set audit.suite = \"{}\" to sign with it",
        suite.signature_name(),
        signer.key_id(),
        path.display(),
        suite.name()
    );
    Ok(ExitCode::SUCCESS)
}

/// `audit rotate-key`: a new checkpoint key, handed over to by the old one.
fn rotate_key(target: Target) -> Result<ExitCode> {
    let o = open(&target)?;
    let done = o
        .store
        .rotate_checkpoint_key(&o.config.data_dir, o.config.audit.suite, now_ms())?;
    out!("{}", serde_json::to_string_pretty(&done)?);
    eprintln!(
        "checkpoint key {} ({}) now signs; {} is kept in {}/{} and still verifies what it signed{}. `tongban audit pubkey` prints both: give verifiers the new public key",
        done.new_key_id,
        done.suite,
        done.old_key_id,
        o.config.data_dir.display(),
        tongban::audit::checkpoint::RETIRED_DIR,
        done.handover_seq
            .map(|s| format!("; the checkpoint at event {s} is signed by both"))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

/// `audit pubkey`: the keys that verify this node's checkpoints.
fn pubkey(target: Target) -> Result<ExitCode> {
    let config = target.load()?;
    out!(
        "{}",
        CheckpointSigner::open(&config.data_dir)?
            .public_key_pem()
            .trim_end()
    );
    Ok(ExitCode::SUCCESS)
}

/// `audit prune --cluster`: retention of the central copy in PostgreSQL.
fn prune_central(target: Target, dry_run: bool) -> Result<ExitCode> {
    let config = target.load()?;
    let cc = config.cluster.as_ref().context(
        "the configuration has no [cluster] section: --cluster prunes the nodes' copies in PostgreSQL",
    )?;
    let Some(days) = config.audit.retention_days else {
        bail!(
            "audit.retention_days is not set: the central copy keeps everything, nothing is pruned"
        );
    };
    let cutoff = now_ms() - i64::from(days.get()) * 86_400_000;
    let report = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            tongban::cluster::PolicyStore::new(cc)?
                .prune_central(cutoff, dry_run)
                .await
        })?;
    out!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}

/// `audit prune`: retention of this node's log.
fn prune_local(target: Target, dry_run: bool) -> Result<ExitCode> {
    let o = open(&target)?;
    let Some(days) = o.config.audit.retention_days else {
        bail!("audit.retention_days is not set: the log keeps everything, nothing is pruned");
    };
    let now = now_ms();
    let cutoff = now - i64::from(days.get()) * 86_400_000;
    // In cluster mode only what PostgreSQL holds may go (else the
    // central copy would have a gap).
    let shipped = match &o.config.cluster {
        None => None,
        Some(cc) => Some(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(async {
                    tongban::cluster::PolicyStore::new(cc)?
                        .shipped_through(&cc.node_id)
                        .await
                })
                .context("in cluster mode pruning needs PostgreSQL, to know what it holds")?,
        ),
    };
    let report = retention::prune(&o.store, cutoff, now, dry_run, shipped)?;
    out!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}

/// `audit verify --cluster`: every node's central copy, a JSON report per
/// node on standard output and a line per node on standard error; exits 1
/// if any node's copy does not verify.
fn verify_cluster(config: &Config, pubkeys: &[PathBuf]) -> Result<ExitCode> {
    let cc = config.cluster.as_ref().context(
        "the configuration has no [cluster] section: --cluster verifies the nodes' copies in PostgreSQL",
    )?;
    let keys = if pubkeys.is_empty() {
        None
    } else {
        let mut ring = Keyring::default();
        for path in pubkeys {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            ring.extend(Keyring::from_pem(&pem));
        }
        Some(ring)
    };
    let reports = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let store = tongban::cluster::PolicyStore::new(cc)?;
            store.verify_audit(keys.as_ref()).await
        })?;
    out!("{}", serde_json::to_string_pretty(&reports)?);
    if reports.is_empty() {
        eprintln!("no node has shipped audit events to PostgreSQL yet");
    }
    let mut ok = true;
    for n in &reports {
        let r = &n.report;
        match &r.broken {
            None => eprintln!(
                "node {}: intact: {} events after anchor {}, head {}, {} checkpoints verified",
                n.node_id, r.checked, r.anchor_seq, r.head_seq, r.checkpoints_checked
            ),
            Some(b) => {
                ok = false;
                eprintln!(
                    "node {}: BROKEN at event {}: {}",
                    n.node_id, b.seq, b.problem
                );
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
