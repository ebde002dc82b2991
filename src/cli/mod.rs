//! The `tongban` binary's command line: its subcommands and their
//! families, one file each.

/// `println!` for a command's answer: a reader that has gone (`… | head`)
/// ends the command quietly, as any Unix tool does, where `println!` would
/// panic on the broken pipe; another failure to write is an error (exit 1).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            eprintln!("tongban: cannot write the answer: {e}");
            std::process::exit(1);
        }
    }};
}

pub(crate) mod admin;
pub(crate) mod audit;
pub(crate) mod backup;
pub(crate) mod online;
pub(crate) mod pki;
pub(crate) mod policy;
pub(crate) mod provider;
pub(crate) mod serve;
pub(crate) mod token;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use tongban::config::Config;

use pki::{CertCommand, KeysCommand, ProofCommand};
use policy::PolicyCommand;
use provider::ProviderCommand;

#[derive(Parser)]
#[command(
    name = "tongban",
    version,
    about = "通办 — a gateway for sharing resident records between departments, under policy, with a tamper-evident audit log"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
        #[arg(long, required_unless_present = "resident")]
        dept: Option<String>,
        /// Subject (`sub` claim): the person or system.
        #[arg(long, required_unless_present = "resident")]
        sub: Option<String>,
        /// Roles, comma-separated.
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        /// A resident's token instead, from the home's resident issuer
        /// (`kind = "resident"`), carrying this ID number.
        #[arg(long, conflicts_with_all = ["dept", "sub", "roles"])]
        resident: Option<String>,
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
        command: audit::AuditCommand,
    },
    /// Emergency stops against a running gateway: suspend or resume a
    /// department, deny a token.
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
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
        /// With --url, sent to the running gateway (PUT or POST
        /// /v1/admin/datasets/{id}/records) with a policy administrator's
        /// token: checked, audited and put in force while it serves.
        #[command(flatten)]
        online: online::Online,
    },
    /// Back up a running gateway into one file, while it serves: the audit
    /// log through a checkpoint signed for the backup, the embedded
    /// datasets, the stops, the policy history, the policies and the
    /// configuration (the keys too with --keys), with a manifest of
    /// checksums (GET /v1/admin/backup, a policy administrator's token).
    Backup {
        /// The gateway, and the token.
        #[command(flatten)]
        conn: online::Connection,
        /// Include the keys of the data directory (the resident pseudonym
        /// key, the checkpoint keys, the answer-signing keys): keep the
        /// file as safe as the keys themselves.
        #[arg(long)]
        keys: bool,
        /// The file to write (written beside it first, then renamed).
        #[arg(long)]
        out: PathBuf,
    },
    /// Build a new home from a backup: every entry checked against the
    /// manifest first, the audit chain verified after.
    Restore {
        /// The backup file.
        #[arg(long)]
        from: PathBuf,
        /// The new home (absent or empty).
        #[arg(long)]
        home: PathBuf,
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

pub(crate) fn open_db(dir: &Path) -> Result<sled::Db> {
    if !dir.join("db").exists() && !dir.join("conf").exists() {
        bail!("{} holds no gateway data", dir.display());
    }
    tongban::datadir::open_path(dir).with_context(|| {
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
