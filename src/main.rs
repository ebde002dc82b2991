//! The `tongban` command: serve, demo, token, policy, audit, import.
#![forbid(unsafe_code)]

mod cli;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use tongban::clock::Clock;
use tongban::config::{Config, LogFormat};
use tongban::dev::demo::{self, DemoOptions};
use tongban::domain::DatasetId;
use tongban::gateway::Gateway;
use tongban::policy::load::load_dir;
use tongban::provider::EmbeddedStore;
use tongban::provider::import;

#[derive(Parser)]
#[command(
    name = "tongban",
    version,
    about = "通办 — a gateway for sharing resident records between departments, under policy, with a tamper-evident audit log"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTPS: a home's tongban.toml (--home DIR) or a configuration file (--config FILE).
    Serve {
        /// The gateway's files.
        #[command(flatten)]
        target: Target,
    },
    /// Set up a development home (certificates, keys, policies, sample data) and serve it.
    Demo {
        /// The home directory; created if missing, reused if present.
        #[arg(long, default_value = "demo-home")]
        home: PathBuf,
        /// Listen address (overrides the home's tongban.toml).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Sample residents to generate on first run.
        #[arg(long, default_value_t = 3000)]
        residents: usize,
        /// Set up the home and exit without serving.
        #[arg(long)]
        no_serve: bool,
    },
    /// Print a development token signed by the home's issuer key.
    Token {
        /// The demo home.
        #[arg(long, default_value = "demo-home")]
        home: PathBuf,
        /// Department id (`dept` claim).
        #[arg(long)]
        dept: String,
        /// Subject (`sub` claim): the person or system.
        #[arg(long)]
        sub: String,
        /// Roles, comma-separated.
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        /// Lifetime: e.g. 90s, 30m, 1h, 2d.
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// Policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The audit log (run while the gateway is stopped: the data directory is single-process).
    Audit {
        #[command(subcommand)]
        command: cli::audit::AuditCommand,
    },
    /// Emergency stops against a running gateway: suspend or resume a
    /// department, deny a token.
    Admin {
        #[command(subcommand)]
        command: cli::admin::AdminCommand,
    },
    /// The development PKI of a demo home: revoke and issue client certificates.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
    /// The keys that sign answers.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Signed answers (proofs).
    Proof {
        #[command(subcommand)]
        command: ProofCommand,
    },
    /// A department's side of the exchange.
    Provider {
        #[command(subcommand)]
        command: ProviderCommand,
    },
    /// Load a department's records from CSV or JSON Lines into the embedded store, all or nothing.
    Import {
        #[command(flatten)]
        target: Target,
        /// The dataset the records belong to.
        #[arg(long)]
        dataset: String,
        /// Replace the dataset's records instead of adding to them.
        #[arg(long)]
        replace: bool,
        /// The file (.csv, or .jsonl / .ndjson).
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum CertCommand {
    /// Revoke a client certificate: add it to the development CA's CRL
    /// (certs/ca.crl) and re-sign the list. A gateway with the CRL in
    /// tls.client_crls refuses the certificate from its next handshake.
    Revoke {
        /// The demo home.
        #[arg(long, default_value = "demo-home")]
        home: PathBuf,
        /// Revoke this department's current certificate (certs/clients/<dept>.pem).
        #[arg(long, group = "which")]
        dept: Option<String>,
        /// Revoke by serial number (hex, colons allowed).
        #[arg(long, group = "which")]
        serial: Option<String>,
        /// Revoke the certificate in this PEM file.
        #[arg(long, group = "which")]
        cert: Option<PathBuf>,
        /// The reason code: key-compromise, affiliation-changed, superseded,
        /// cessation-of-operation, privilege-withdrawn or unspecified.
        #[arg(long, default_value = "key-compromise")]
        reason: String,
    },
    /// Issue a fresh client certificate and key for a department
    /// (certs/clients/<dept>.pem and <dept>-key.pem), replacing the files.
    Issue {
        /// The demo home.
        #[arg(long, default_value = "demo-home")]
        home: PathBuf,
        /// The department id (the certificate's common name).
        #[arg(long)]
        dept: String,
        /// Days of validity.
        #[arg(long, default_value_t = 825)]
        days: i64,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a new answer-signing key the one that signs; earlier public keys
    /// stay published. Takes effect when the gateway (re)starts.
    Rotate {
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
enum ProofCommand {
    /// Check a saved proof offline against a JWK Set and say what it attests.
    Verify {
        /// The proof: a compact JWS, or a saved answer holding it in `proof`.
        file: PathBuf,
        /// The JWK Set (saved from GET /.well-known/jwks.json).
        #[arg(long)]
        jwks: PathBuf,
    },
}

#[derive(Subcommand)]
enum ProviderCommand {
    /// Serve a dataset's records from a file with the upstream contract, over
    /// mutual TLS: the reference for a department's own API.
    Serve {
        /// The dataset (its catalog entry checks the records).
        #[arg(long)]
        dataset: String,
        /// The records (.jsonl / .ndjson, or .csv), keyed by `id_number`.
        #[arg(long)]
        from: PathBuf,
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:9444")]
        listen: SocketAddr,
        /// A demo home: its policies, its server certificate, and its CA for
        /// the gateway's client certificate.
        #[arg(long, conflicts_with_all = ["policies", "cert", "key", "client_ca"])]
        home: Option<PathBuf>,
        /// Policy directory (without --home).
        #[arg(long)]
        policies: Option<PathBuf>,
        /// Server certificate chain, PEM (without --home).
        #[arg(long)]
        cert: Option<PathBuf>,
        /// Server private key, PEM (without --home).
        #[arg(long)]
        key: Option<PathBuf>,
        /// CA that signs the gateway's client certificate, PEM (without --home).
        #[arg(long)]
        client_ca: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate a policy directory; exits non-zero with every error found.
    Check {
        /// The directory holding departments.toml, datasets/ and grants/.
        dir: PathBuf,
    },
    /// Print what access changes from one policy directory to another:
    /// who gains or loses which fields.
    Diff {
        /// The policy set before.
        before: PathBuf,
        /// The policy set after.
        after: PathBuf,
    },
    /// Cluster mode: validate a policy directory and store it in PostgreSQL
    /// as the next version; every node puts it in force within a second.
    /// Prints the access it changes.
    Push {
        /// The directory holding departments.toml, datasets/ and grants/.
        dir: PathBuf,
        /// The gateway whose [cluster] section names the database.
        #[command(flatten)]
        target: Target,
        /// Who pushes, for the history (default: $USER@host).
        #[arg(long)]
        author: Option<String>,
        /// Push only if PostgreSQL's newest version is this one (a pipeline's
        /// guard against overwriting an edit made since it pulled).
        #[arg(long)]
        expect_version: Option<i64>,
    },
    /// Cluster mode: write the newest policy version (or --version N) from
    /// PostgreSQL into a directory, which then holds exactly that set.
    Pull {
        /// The directory to write (created if missing).
        dir: PathBuf,
        /// The gateway whose [cluster] section names the database.
        #[command(flatten)]
        target: Target,
        /// An older version instead of the newest.
        #[arg(long)]
        version: Option<i64>,
    },
}

/// Which gateway's files: a home (with tongban.toml) or a configuration file.
#[derive(Args)]
pub(crate) struct Target {
    /// A home directory holding tongban.toml.
    #[arg(long, conflicts_with = "config")]
    home: Option<PathBuf>,
    /// A configuration file (tongban.toml).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
}

impl Target {
    pub(crate) fn load(&self) -> Result<Config> {
        let path = match (&self.home, &self.config) {
            (_, Some(c)) => c.clone(),
            (Some(h), None) => h.join("tongban.toml"),
            (None, None) => bail!("name the gateway with --home DIR or --config FILE"),
        };
        Ok(Config::load(&path)?)
    }
}

/// mimalloc: the gateway allocates small, short-lived buffers on every
/// request; glibc's allocator spent a sixth of the CPU on them (bench/run.sh).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tongban: {e:#}");
            ExitCode::FAILURE
        }
    };
    // Statics are not dropped: write out the buffered log lines now.
    if let Some(sink) = LOG_GUARD.lock().ok().and_then(|mut g| g.take()) {
        sink.close();
    }
    code
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve { target } => {
            let config = target.load()?;
            init_logging(config.log.format);
            serve(config, None)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            home,
            listen,
            residents,
            no_serve,
        } => {
            let options = DemoOptions {
                listen: listen.unwrap_or(DemoOptions::default().listen),
                residents,
            };
            let config = demo::prepare_home(&home, &options)?;
            if no_serve {
                println!("demo home ready in {}", home.display());
                return Ok(ExitCode::SUCCESS);
            }
            init_logging(config.log.format);
            print_walkthrough(&home, listen.unwrap_or(config.listen))?;
            serve(config, listen)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            home,
            dept,
            sub,
            roles,
            ttl,
        } => {
            let ttl = parse_ttl(&ttl)?;
            println!("{}", mint(&home, &dept, &sub, &roles, ttl)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy {
            command: PolicyCommand::Check { dir },
        } => match load_dir(&dir) {
            Ok(set) => {
                println!(
                    "{}: valid: {} departments, {} datasets, {} grants (version {})",
                    dir.display(),
                    set.departments.len(),
                    set.datasets.len(),
                    set.grants.len(),
                    set.version
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(errors) => {
                for e in &errors {
                    eprintln!("{e}");
                }
                eprintln!("{}: {} error(s)", dir.display(), errors.len());
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Policy {
            command: PolicyCommand::Diff { before, after },
        } => {
            let load = |dir: &Path| {
                load_dir(dir).map_err(|errs| {
                    anyhow::anyhow!(
                        "{} is not valid:\n{}",
                        dir.display(),
                        errs.iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("\n")
                    )
                })
            };
            let (a, b) = (load(&before)?, load(&after)?);
            let changes = tongban::policy::diff::diff(&a, &b);
            if changes.is_empty() {
                println!("no access changes ({} → {})", a.version, b.version);
            }
            for c in &changes {
                println!("{c}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { command } => cli::audit::run(command),
        Command::Admin { command } => cli::admin::run(command),
        Command::Policy {
            command:
                PolicyCommand::Push {
                    dir,
                    target,
                    author,
                    expect_version,
                },
        } => cli::policy::push(&target.load()?, &dir, author, expect_version),
        Command::Policy {
            command:
                PolicyCommand::Pull {
                    dir,
                    target,
                    version,
                },
        } => cli::policy::pull(&target.load()?, &dir, version),
        Command::Cert {
            command:
                CertCommand::Revoke {
                    home,
                    dept,
                    serial,
                    cert,
                    reason,
                },
        } => {
            let target = match (dept, serial, cert) {
                (Some(d), None, None) => tongban::dev::devpki::RevokeTarget::Department(d),
                (None, Some(s), None) => tongban::dev::devpki::RevokeTarget::Serial(s),
                (None, None, Some(c)) => tongban::dev::devpki::RevokeTarget::File(c),
                _ => bail!("name the certificate with one of --dept, --serial or --cert"),
            };
            let reason = tongban::dev::devpki::revocation_reason(&reason)
                .with_context(|| format!("\"{reason}\" is not a revocation reason"))?;
            let done = tongban::dev::devpki::revoke(&home, &target, reason)?;
            println!(
                "{} serial {} in {} (CRL number {}, {} listed); a gateway with it in tls.client_crls refuses the certificate from its next handshake, and at the next request on connections already open",
                if done.already {
                    "already revoked:"
                } else {
                    "revoked"
                },
                done.serial,
                done.crl.display(),
                done.crl_number,
                done.listed
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Cert {
            command: CertCommand::Issue { home, dept, days },
        } => {
            let issued = tongban::dev::devpki::issue_client(&home, &dept, days)?;
            println!(
                "issued {} (key {}), serial {}, valid {days} days",
                issued.cert.display(),
                issued.key.display(),
                issued.serial
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys {
            command: KeysCommand::Rotate { target },
        } => {
            let config = target.load()?;
            let kid = tongban::proof::rotate(&config.data_dir)?;
            println!(
                "answer-signing key {kid} now signs; earlier keys stay in /.well-known/jwks.json. Restart the gateway to use it."
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Proof {
            command: ProofCommand::Verify { file, jwks },
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let jws = match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(v) => v["proof"].as_str().map(str::to_owned).unwrap_or_default(),
                Err(_) => text.trim().to_owned(),
            };
            let set: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(&jwks)
                    .with_context(|| format!("cannot read {}", jwks.display()))?,
            )
            .with_context(|| format!("{} is not a JWK Set", jwks.display()))?;
            match tongban::proof::verify(&jws, &set) {
                Ok((header, claims)) => {
                    println!("{}", tongban::proof::describe(&claims));
                    println!(
                        "密钥 key: {}；凭证哈希 proof hash (in the audit event): {}",
                        header["kid"].as_str().unwrap_or("?"),
                        tongban::domain::hex(&tongban::proof::proof_hash(&jws))
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("签名无效 the proof does not verify: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Provider {
            command:
                ProviderCommand::Serve {
                    dataset,
                    from,
                    listen,
                    home,
                    policies,
                    cert,
                    key,
                    client_ca,
                },
        } => {
            let (policies, cert, key, client_ca) = match home {
                Some(h) => (
                    h.join("policies"),
                    h.join("certs/server.pem"),
                    h.join("certs/server-key.pem"),
                    h.join("certs/ca.pem"),
                ),
                None => match (policies, cert, key, client_ca) {
                    (Some(p), Some(c), Some(k), Some(ca)) => (p, c, k, ca),
                    _ => bail!(
                        "name a demo home with --home, or all of --policies, --cert, --key and --client-ca"
                    ),
                },
            };
            provider_serve(&dataset, &from, listen, &policies, &cert, &key, &client_ca)
        }
        Command::Import {
            target,
            dataset,
            replace,
            file,
        } => {
            let config = target.load()?;
            import_file(&config, &dataset, replace, &file)
        }
    }
}

fn serve(config: Config, listen: Option<SocketAddr>) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let addr = listen.unwrap_or(config.listen);
        let gw = Gateway::start(config, Clock::system()).await?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        tracing::info!(addr = %addr, policy = gw.policy.snapshot().version(), "tongban serving HTTPS");
        tongban::server::serve(gw, listener, tongban::server::termination_signal()).await?;
        Ok(())
    })
}

/// Where log lines go: standard error, through a buffer written by a thread
/// of its own (`tongban::logsink`: no request waits on the terminal or the
/// journal, and lines are written in batches). Lines are never dropped (a
/// full buffer slows the writers instead); closing it writes what is
/// buffered when the process ends.
static LOG_GUARD: std::sync::Mutex<Option<tongban::logsink::LogSink>> = std::sync::Mutex::new(None);

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TONGBAN_LOG")
        // rustls warns about each client's protocol oddities (an IP address
        // as SNI, for one): a line per connection that any client could use
        // to flood the log; its errors still show.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rustls=error"));
    let Ok(writer) = tongban::logsink::LogSink::start(std::io::stderr()) else {
        eprintln!("cannot start the log writer thread");
        return;
    };
    if let Ok(mut slot) = LOG_GUARD.lock() {
        *slot = Some(writer.clone());
    }
    // Colours only for a person at a terminal: never escape codes in a log
    // file or journal (and formatting them costs every request a little).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    if !ansi {
        // The access line, one per request, is written without tracing's
        // formatter (the same bytes, at a tenth of the cost).
        tongban::logsink::write_access_directly(writer.clone(), format == LogFormat::Json);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

pub(crate) fn open_db(dir: &Path) -> Result<sled::Db> {
    if !dir.join("db").exists() && !dir.join("conf").exists() {
        bail!("{} holds no gateway data", dir.display());
    }
    sled::open(dir).with_context(|| {
        format!(
            "cannot open {} (is the gateway still running? stop it first)",
            dir.display()
        )
    })
}

/// Seconds in a duration such as `90s`, `30m`, `12h` or `7d` (digits and one
/// unit); `None` if it is not one. Saturates rather than overflows.
pub(crate) fn duration_secs(text: &str) -> Option<i64> {
    [("s", 1i64), ("m", 60), ("h", 3600), ("d", 86_400)]
        .into_iter()
        .find_map(|(suffix, scale)| {
            let digits = text.strip_suffix(suffix)?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let n = digits.parse::<i64>().unwrap_or(i64::MAX);
            Some(n.checked_mul(scale).unwrap_or(i64::MAX))
        })
}

fn parse_ttl(s: &str) -> Result<i64> {
    // A bare number is seconds.
    let secs = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse::<i64>().unwrap_or(i64::MAX)
    } else {
        duration_secs(s).with_context(|| format!("--ttl {s}: expected e.g. 90s, 30m, 1h, 2d"))?
    };
    if secs <= 0 || secs > 30 * 86_400 {
        bail!("--ttl {s}: must be between 1 second and 30 days");
    }
    Ok(secs)
}

pub(crate) fn mint(
    home: &Path,
    dept: &str,
    sub: &str,
    roles: &[String],
    ttl: i64,
) -> Result<String> {
    let config = Config::load(&home.join("tongban.toml"))?;
    let issuer = config
        .issuers
        .first()
        .context("the home's configuration names no issuer")?;
    let key_path = home.join("keys/issuer.pem");
    let key =
        std::fs::read(&key_path).with_context(|| format!("cannot read {}", key_path.display()))?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    Ok(tongban::dev::devpki::mint_token(
        &key,
        &issuer.issuer,
        &issuer.audience,
        dept,
        sub,
        roles,
        now,
        ttl,
    )?)
}

fn print_walkthrough(home: &Path, addr: SocketAddr) -> Result<()> {
    let token = mint(
        home,
        "minzheng",
        "clerk-007",
        &["dibao_reviewer".to_owned()],
        8 * 3600,
    )?;
    let sample = std::fs::read_to_string(home.join("samples/gongan.hukou.jsonl"))?;
    let id = sample
        .lines()
        .next()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v["id_number"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let home = home.display();
    println!(
        "\ntongban demo: serving https://{addr} (Ctrl-C to stop)\n\n\
         A token for 民政局 clerk-007 (role dibao_reviewer), valid 8 hours:\n\n  TOKEN={token}\n\n\
         Look up a resident for a 低保 review case:\n\n  \
         curl --cacert {home}/certs/ca.pem -H \"Authorization: Bearer $TOKEN\" \\\n    \
         -H 'X-Purpose: dibao_review' -H 'X-Case-Ref: MZ-2026-000123' \\\n    \
         https://{addr}/v1/datasets/gongan.hukou/records/{id}\n\n\
         More tokens: tongban token --home {home} --dept renshe --sub clerk-1 --roles pension_clerk\n"
    );
    Ok(())
}

/// A dataset's catalog entry and its records, as read from a file.
type Loaded = (
    tongban::policy::load::Dataset,
    Vec<(
        tongban::domain::ResidentId,
        tongban::pipeline::minimize::Record,
    )>,
);

/// Reads and checks `file` against `dataset`; bad rows are reported on
/// stderr and give the exit code instead.
fn read_records(
    policies: &Path,
    dataset: &str,
    file: &Path,
    verb: &str,
) -> Result<std::result::Result<Loaded, ExitCode>> {
    let set = load_dir(policies).map_err(|errs| {
        anyhow::anyhow!(
            errs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;
    let id = DatasetId::parse(dataset)?;
    let spec = set
        .datasets
        .get(&id)
        .with_context(|| format!("dataset {id} is not in the catalog"))?;
    let reader =
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let is_csv = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let rows = if is_csv {
        import::read_csv(reader, spec)
    } else {
        import::read_jsonl(std::io::BufReader::new(reader), spec)
    };
    match rows {
        Ok(rows) => Ok(Ok((spec.clone(), rows))),
        Err(errors) => {
            for e in &errors {
                eprintln!("{}: {e}", file.display());
            }
            eprintln!(
                "{}: {} bad row(s); nothing was {verb}",
                file.display(),
                errors.len()
            );
            Ok(Err(ExitCode::FAILURE))
        }
    }
}

fn provider_serve(
    dataset: &str,
    from: &Path,
    listen: SocketAddr,
    policies: &Path,
    cert: &Path,
    key: &Path,
    client_ca: &Path,
) -> Result<ExitCode> {
    let (spec, rows) = match read_records(policies, dataset, from, "served")? {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    let tls = tongban::provider::serve::tls_config(cert, key, client_ca)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let count = rows.len();
    let app = tongban::provider::serve::router(&spec, rows);
    init_logging(tongban::config::LogFormat::Text);
    println!(
        "tongban provider: {count} record(s) of {} on https://{listen} (mutual TLS; the client certificate must come from {})\n\n\
         Point the dataset at it in its catalog entry:\n\n  \
         provider = {{ kind = \"http\", base_url = \"https://{listen}\" }}\n",
        spec.spec.id,
        client_ca.display()
    );
    runtime.block_on(tongban::provider::serve::serve_until_signal(
        listen, tls, app,
    ))?;
    Ok(ExitCode::SUCCESS)
}

fn import_file(config: &Config, dataset: &str, replace: bool, file: &Path) -> Result<ExitCode> {
    let (spec, rows) = match read_records(&config.policies_dir, dataset, file, "imported")? {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    let id = spec.spec.id.clone();
    std::fs::create_dir_all(&config.data_dir)?;
    let db = sled::open(&config.data_dir).with_context(|| {
        format!(
            "cannot open {} (is the gateway running?)",
            config.data_dir.display()
        )
    })?;
    let store = EmbeddedStore::new(db);
    store.import(&id, &rows, replace)?;
    println!(
        "imported {} record(s) into {id} ({} now held)",
        rows.len(),
        store.count(&id)?
    );
    Ok(ExitCode::SUCCESS)
}
