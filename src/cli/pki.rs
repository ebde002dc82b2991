//! `tongban cert`, `tongban keys` and `tongban proof`: the development
//! certificate authority's certificates and CRL, the answer-signing keys,
//! and checking a signed answer offline.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use super::Target;

#[derive(Subcommand)]
pub(crate) enum CertCommand {
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
pub(crate) enum KeysCommand {
    /// Make every key a new gateway needs that is not there yet (the
    /// resident pseudonym key, the checkpoint key of audit.suite, the first
    /// answer-signing key), never replacing one, and list them, naming the
    /// one every node of a cluster must share. Starting never makes a key.
    Init {
        #[command(flatten)]
        target: Target,
    },
    /// Make a new answer-signing key the one that signs; earlier public keys
    /// stay published. A running gateway takes it up within a second.
    Rotate {
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
pub(crate) enum ProofCommand {
    /// Check a saved proof offline against a JWK Set and say what it attests.
    Verify {
        /// The proof: a compact JWS, or a saved answer holding it in `proof`.
        file: PathBuf,
        /// The JWK Set (saved from GET /.well-known/jwks.json).
        #[arg(long)]
        jwks: PathBuf,
    },
}

/// Runs a `tongban cert` subcommand.
pub(crate) fn cert(command: CertCommand) -> Result<ExitCode> {
    match command {
        CertCommand::Revoke {
            home,
            dept,
            serial,
            cert,
            reason,
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
            out!(
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
        CertCommand::Issue { home, dept, days } => {
            let issued = tongban::dev::devpki::issue_client(&home, &dept, days)?;
            out!(
                "issued {} (key {}), serial {}, valid {days} days",
                issued.cert.display(),
                issued.key.display(),
                issued.serial
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs a `tongban keys` subcommand.
pub(crate) fn keys(command: KeysCommand) -> Result<ExitCode> {
    match command {
        KeysCommand::Init { target } => {
            let config = target.load()?;
            let files = tongban::keys::init(&config.data_dir, &[config.audit.suite])
                .with_context(|| format!("keys in {}", config.data_dir.display()))?;
            print_keys(&config.data_dir, &files);
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Rotate { target } => {
            let config = target.load()?;
            let kid = tongban::proof::rotate(&config.data_dir)?;
            out!(
                "answer-signing key {kid} is current; a running gateway signs with it within a second (or at SIGHUP), and earlier keys stay in /.well-known/jwks.json"
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Lists a data directory's key files as `tongban keys init` left them,
/// then the ones a cluster's nodes must share (the files to copy to a
/// node before its first start).
pub(crate) fn print_keys(data_dir: &std::path::Path, files: &[tongban::keys::KeyFile]) {
    out!("keys in {} (mode 0600):", data_dir.display());
    for f in files {
        let suite = match f.path.file_name().and_then(|n| n.to_str()) {
            Some(tongban::audit::checkpoint::ED25519_KEY_FILE) => " (Ed25519)",
            Some(tongban::audit::checkpoint::SM2_KEY_FILE) => " (SM2, audit.suite = \"gm\")",
            _ => "",
        };
        out!(
            "  {:5} {}  {}{suite}{}",
            if f.made { "made" } else { "kept" },
            f.path.display(),
            f.kind.what(),
            if f.kind.shared() {
                ": the same file on every node of a cluster"
            } else {
                ": this node's own"
            }
        );
    }
    let shared: Vec<String> = files
        .iter()
        .filter(|f| f.kind.shared())
        .map(|f| f.path.display().to_string())
        .collect();
    out!(
        "for a cluster, copy {} to each other node's data directory before its first start, then run `tongban keys init` there",
        shared.join(" and ")
    );
}

/// Runs a `tongban proof` subcommand.
pub(crate) fn proof(command: ProofCommand) -> Result<ExitCode> {
    match command {
        ProofCommand::Verify { file, jwks } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let jws = match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(v) => v["proof"].as_str().map(str::to_owned).with_context(|| {
                    format!(
                        "{} is JSON without a \"proof\" member: ask for the answer with `Prefer: signed`",
                        file.display()
                    )
                })?,
                Err(_) => text.trim().to_owned(),
            };
            let set: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(&jwks)
                    .with_context(|| format!("cannot read {}", jwks.display()))?,
            )
            .with_context(|| format!("{} is not a JWK Set", jwks.display()))?;
            match tongban::proof::verify(&jws, &set) {
                Ok((header, claims)) => {
                    out!("{}", tongban::proof::describe(&claims));
                    out!(
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
    }
}
