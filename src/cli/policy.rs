//! `tongban policy`: `check` and `diff` of policy directories, and `push DIR`
//! and `pull DIR`, moving a policy set between files (kept in git by a
//! deployment pipeline) and the cluster's PostgreSQL, where every node
//! applies each new version within a second.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use super::Target;

use tongban::cluster::{ChangeMeta, PolicyStore};
use tongban::config::{ClusterConfig, Config};
use tongban::policy::diff::diff;
use tongban::policy::edit::apply_files;
use tongban::policy::load::{load_dir, validate};

#[derive(Subcommand)]
pub(crate) enum PolicyCommand {
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
        /// Why, for the history (kept with the version in PostgreSQL).
        #[arg(long)]
        reason: Option<String>,
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

/// Runs a `tongban policy` subcommand.
pub(crate) fn run(command: PolicyCommand) -> Result<ExitCode> {
    match command {
        PolicyCommand::Check { dir } => match load_dir(&dir) {
            Ok(set) => {
                out!(
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
        PolicyCommand::Diff { before, after } => {
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
                out!("no access changes ({} → {})", a.version, b.version);
            }
            for c in &changes {
                out!("{c}");
            }
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Push {
            dir,
            target,
            author,
            expect_version,
            reason,
        } => push(&target.load()?, &dir, author, expect_version, reason),
        PolicyCommand::Pull {
            dir,
            target,
            version,
        } => pull(&target.load()?, &dir, version),
    }
}

fn cluster(config: &Config) -> Result<&ClusterConfig> {
    config.cluster.as_ref().context(
        "the configuration has no [cluster] section: push and pull move a policy set to and from the cluster's PostgreSQL",
    )
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Who pushed: `--author`, else `$USER@host`.
fn default_author() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    // Without /etc/hostname the author is the user alone (below).
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    if host.is_empty() {
        user
    } else {
        format!("{user}@{host}")
    }
}

/// Validates `dir` as the gateway does, then stores it as the next version.
pub(crate) fn push(
    config: &Config,
    dir: &Path,
    author: Option<String>,
    expect_version: Option<i64>,
    reason: Option<String>,
) -> Result<ExitCode> {
    let cc = cluster(config)?;
    let reason = reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    if reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
        anyhow::bail!("--reason: at most 500 characters");
    }
    let set = match load_dir(dir) {
        Ok(set) => set,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!(
                "{}: {} error(s); nothing was pushed",
                dir.display(),
                errors.len()
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    runtime()?.block_on(async {
        let store = PolicyStore::new(cc)?;
        store.migrate().await?;
        let tx = store.begin_change().await?;
        if let Some(expected) = expect_version {
            if tx.head() != expected {
                let head = tx.head();
                tx.rollback().await;
                bail!("PostgreSQL holds version {head}, not {expected}: nothing was pushed");
            }
        }
        let head = tx.head_version().await?;
        if let Some(head) = &head {
            if head.sources == set.sources {
                let version = head.version;
                tx.rollback().await;
                out!(
                    "{}: unchanged, version {version} already holds this set ({})",
                    dir.display(),
                    set.version
                );
                return Ok(ExitCode::SUCCESS);
            }
            match validate(head.sources.clone()) {
                Ok(before) => {
                    for change in diff(&before, &set) {
                        out!("  {change}");
                    }
                }
                Err(_) => out!("  (version {} does not validate here)", head.version),
            }
        }
        let meta = ChangeMeta {
            node_id: "cli".into(),
            author: author.unwrap_or_else(default_author),
            action: "push".into(),
            summary: format!(
                "push: {} departments, {} datasets, {} grants",
                set.departments.len(),
                set.datasets.len(),
                set.grants.len()
            ),
            reason,
        };
        let version = tx.commit(&set.sources, &meta).await?;
        out!(
            "{}: pushed as version {version} ({}; {} departments, {} datasets, {} grants)",
            dir.display(),
            set.version,
            set.departments.len(),
            set.datasets.len(),
            set.grants.len()
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// Writes the newest version (or `version`) into `dir`: its files are
/// written (each atomically) and policy files that are not in it removed, so
/// that `dir` then holds exactly that set.
pub(crate) fn pull(config: &Config, dir: &Path, version: Option<i64>) -> Result<ExitCode> {
    let cc = cluster(config)?;
    let stored = runtime()?.block_on(async {
        let store = PolicyStore::new(cc)?;
        let stored = match version {
            Some(v) => store.get(v).await?,
            None => store.head().await?,
        };
        anyhow::Ok(stored)
    })?;
    let Some(stored) = stored else {
        match version {
            Some(v) => bail!("PostgreSQL holds no policy version {v}"),
            None => {
                bail!("PostgreSQL holds no policy set yet (tongban policy push DIR stores one)")
            }
        }
    };
    for sub in ["datasets", "grants"] {
        std::fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("cannot create {}", dir.join(sub).display()))?;
    }
    let mut writes: Vec<(String, Option<String>)> = stored
        .sources
        .files
        .iter()
        .map(|(path, text)| (path.clone(), Some(text.clone())))
        .collect();
    for sub in ["datasets", "grants"] {
        for entry in std::fs::read_dir(dir.join(sub))? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            let rel = format!("{sub}/{name}");
            if name.ends_with(".toml") && !stored.sources.files.contains_key(&rel) {
                writes.push((rel, None));
            }
        }
    }
    apply_files(dir, &writes).with_context(|| format!("cannot write {}", dir.display()))?;
    out!(
        "{}: version {} ({}, {} files), committed by {} through {}",
        dir.display(),
        stored.version,
        stored.sources.version(),
        stored.sources.files.len(),
        stored.author,
        stored.node_id
    );
    Ok(ExitCode::SUCCESS)
}
