//! The `tongban` command: serve, demo, token, policy, audit, import.
#![forbid(unsafe_code)]

#[macro_use]
mod cli;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use cli::{Cli, Command};

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
    if let Some(sink) = cli::serve::LOG_GUARD.lock().ok().and_then(|mut g| g.take()) {
        sink.close();
    }
    code
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve { target } => cli::serve::serve_target(&target),
        Command::Demo {
            home,
            listen,
            residents,
            no_serve,
        } => cli::serve::demo(home, listen, residents, no_serve),
        Command::Token {
            home,
            dept,
            sub,
            roles,
            resident,
            ttl,
        } => {
            let ttl = cli::token::parse_ttl(&ttl)?;
            let token = match (resident, dept, sub) {
                (Some(id), _, _) => cli::token::mint_resident(&home, &id, ttl)?,
                (None, Some(dept), Some(sub)) => cli::token::mint(&home, &dept, &sub, &roles, ttl)?,
                _ => anyhow::bail!("give --dept and --sub, or --resident"),
            };
            out!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy { command } => cli::policy::run(command),
        Command::Audit { command } => cli::audit::run(command),
        Command::Admin { command } => cli::admin::run(command),
        Command::Cert { command } => cli::pki::cert(command),
        Command::Keys { command } => cli::pki::keys(command),
        Command::Proof { command } => cli::pki::proof(command),
        Command::Provider { command } => cli::provider::run(command),
        Command::Backup { conn, keys, out } => cli::backup::backup(conn, keys, &out),
        Command::Restore { from, home } => cli::backup::restore(&from, &home),
        Command::Import {
            target,
            dataset,
            replace,
            file,
            online,
        } => match online.connection() {
            Some(conn) => cli::provider::import_online(conn, &dataset, replace, &file),
            None => cli::provider::import_file(&target.load()?, &dataset, replace, &file),
        },
    }
}
