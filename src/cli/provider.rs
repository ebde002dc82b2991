//! `tongban provider serve` (a development upstream provider over mTLS)
//! and `tongban import` (records into the embedded store).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use tongban::config::Config;
use tongban::domain::DatasetId;
use tongban::policy::load::load_dir;
use tongban::provider::EmbeddedStore;
use tongban::provider::import;

use super::serve::init_logging;

#[derive(Subcommand)]
pub(crate) enum ProviderCommand {
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

/// Runs a `tongban provider` subcommand.
pub(crate) fn run(command: ProviderCommand) -> Result<ExitCode> {
    match command {
        ProviderCommand::Serve {
            dataset,
            from,
            listen,
            home,
            policies,
            cert,
            key,
            client_ca,
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
    }
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
    out!(
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

/// `import --url`: the file sent to the running gateway, which checks it,
/// records it in the audit log and puts it in force.
pub(crate) fn import_online(
    conn: super::online::Connection,
    dataset: &str,
    replace: bool,
    file: &Path,
) -> Result<ExitCode> {
    let target = conn.resolve("policy_admin")?;
    let content_type = match file.extension().and_then(|e| e.to_str()) {
        Some("csv") => "text/csv",
        _ => "application/x-ndjson",
    };
    let method = if replace { "PUT" } else { "POST" };
    let path = format!("/v1/admin/datasets/{dataset}/records");
    let (status, bytes) = super::online::block_on(super::online::transfer(
        &target,
        method,
        &path,
        Some((content_type, file)),
        None,
    ))?;
    let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    if !status.is_success() {
        if let Some(errors) = answer["errors"].as_array() {
            for e in errors {
                eprintln!("{}", e.as_str().unwrap_or_default());
            }
        }
        return Err(super::online::refused(status, &answer));
    }
    out!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn import_file(
    config: &Config,
    dataset: &str,
    replace: bool,
    file: &Path,
) -> Result<ExitCode> {
    let (spec, rows) = match read_records(&config.policies_dir, dataset, file, "imported")? {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    let id = spec.spec.id.clone();
    std::fs::create_dir_all(&config.data_dir)?;
    let db = tongban::datadir::open_path(&config.data_dir).with_context(|| {
        format!(
            "cannot open {} (is the gateway running?)",
            config.data_dir.display()
        )
    })?;
    let store = EmbeddedStore::new(db)?;
    store.import(&id, &rows, replace)?;
    out!(
        "imported {} record(s) into {id} ({} now held)",
        rows.len(),
        store.count(&id)?
    );
    Ok(ExitCode::SUCCESS)
}
