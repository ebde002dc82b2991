//! `tongban serve` and `tongban demo`: the gateway's runtime, its logging,
//! and the demo's walkthrough.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

use tongban::clock::Clock;
use tongban::config::{Config, LogFormat};
use tongban::dev::demo::{self, DemoOptions};
use tongban::gateway::Gateway;

use super::token::mint;

/// Runs `tongban serve`.
pub(crate) fn serve_target(target: &super::Target) -> Result<ExitCode> {
    let config = target.load()?;
    init_logging(config.log.format);
    serve(config, None)?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `tongban demo`: prepares the home, then serves it unless told not to.
pub(crate) fn demo(
    home: PathBuf,
    listen: Option<SocketAddr>,
    residents: usize,
    no_serve: bool,
) -> Result<ExitCode> {
    let options = DemoOptions {
        listen: listen.unwrap_or(DemoOptions::default().listen),
        residents,
    };
    let (config, keys) = demo::prepare_home(&home, &options)?;
    if no_serve {
        out!("demo home ready in {}", home.display());
        super::pki::print_keys(&config.data_dir, &keys);
        return Ok(ExitCode::SUCCESS);
    }
    init_logging(config.log.format);
    print_walkthrough(&home, listen.unwrap_or(config.listen))?;
    serve(config, listen)?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn serve(config: Config, listen: Option<SocketAddr>) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // First: a stop asked for while the gateway starts is kept.
        let stop = tongban::server::termination_signal();
        let addr = listen.unwrap_or(config.listen);
        let gw = Gateway::start(config, Clock::system()).await?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        tracing::info!(addr = %addr, policy = gw.policy.snapshot().version(), "tongban serving HTTPS");
        tongban::server::serve(gw, listener, stop).await?;
        Ok(())
    })
}

/// Where log lines go: standard error, through a buffer written by a thread
/// of its own (`tongban::logsink`: no request waits on the terminal or the
/// journal, and lines are written in batches). Lines are never dropped (a
/// full buffer slows the writers instead); closing it writes what is
/// buffered when the process ends.
pub(crate) static LOG_GUARD: std::sync::Mutex<Option<tongban::logsink::LogSink>> =
    std::sync::Mutex::new(None);

pub(crate) fn init_logging(format: LogFormat) {
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

fn print_walkthrough(home: &Path, addr: SocketAddr) -> Result<()> {
    let token = mint(
        home,
        "minzheng",
        "clerk-007",
        &["dibao_reviewer".to_owned()],
        8 * 3600,
    )?;
    let sample = std::fs::read_to_string(home.join("samples/gongan.hukou.jsonl"))?;
    // A home without samples prints the command with an empty ID to fill in.
    let id = sample
        .lines()
        .next()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v["id_number"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let home = home.display();
    out!(
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
