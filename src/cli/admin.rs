//! `tongban admin …`: the emergency stops against a running gateway, over
//! its HTTPS API with an administrator's token: suspend and resume a
//! department, deny a token, list both.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};

use tongban::config::Config;

/// Which gateway, and as whom.
#[derive(Args)]
pub(crate) struct Connection {
    /// A demo home: its address, its CA, and (without --token-file or
    /// TONGBAN_TOKEN) a short-lived administrator token signed by its
    /// development issuer key.
    #[arg(long)]
    home: Option<PathBuf>,
    /// The gateway's base URL (https://host:port); without --home.
    #[arg(long)]
    url: Option<String>,
    /// CA certificate(s) (PEM) the gateway's certificate chains to; without --home.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// A file holding the administrator's bearer token (else the
    /// TONGBAN_TOKEN environment variable).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// A client certificate (PEM) to present, for gateways that require one.
    #[arg(long, requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, requires = "client_cert")]
    client_key: Option<PathBuf>,
}

#[derive(Subcommand)]
pub(crate) enum AdminCommand {
    /// List the departments and whether each is suspended.
    Departments {
        #[command(flatten)]
        conn: Connection,
    },
    /// Suspend a department: every request of its systems is refused
    /// (403 department-suspended) from the next one on, on open connections too.
    Suspend {
        #[command(flatten)]
        conn: Connection,
        /// The department id.
        dept: String,
        /// Why (kept in the audit log and shown to the department).
        #[arg(long)]
        reason: String,
    },
    /// Lift a department's suspension.
    Resume {
        #[command(flatten)]
        conn: Connection,
        /// The department id.
        dept: String,
    },
    /// Deny a token by its `jti`, or every token of a subject issued before a
    /// time (default: now), until the entry expires.
    RevokeToken {
        #[command(flatten)]
        conn: Connection,
        /// The token's `jti` claim.
        #[arg(long, conflicts_with_all = ["sub", "issued_before"], required_unless_present = "sub")]
        jti: Option<String>,
        /// The subject (`sub` claim) whose tokens to deny.
        #[arg(long)]
        sub: Option<String>,
        /// With --sub: deny tokens issued before this time (RFC 3339; default now).
        #[arg(long, requires = "sub")]
        issued_before: Option<String>,
        /// When the entry is dropped: RFC 3339, or a duration such as 12h or 7d (default 7d).
        #[arg(long)]
        expires: Option<String>,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// List the token deny-list.
    RevokedTokens {
        #[command(flatten)]
        conn: Connection,
    },
}

pub(crate) fn run(command: AdminCommand) -> Result<ExitCode> {
    let (conn, method, path, body) = match command {
        AdminCommand::Departments { conn } => (conn, "GET", "/v1/admin/departments".into(), None),
        AdminCommand::Suspend { conn, dept, reason } => (
            conn,
            "POST",
            format!("/v1/admin/departments/{}/suspend", segment(&dept)?),
            Some(json!({ "reason": reason })),
        ),
        AdminCommand::Resume { conn, dept } => (
            conn,
            "POST",
            format!("/v1/admin/departments/{}/resume", segment(&dept)?),
            None,
        ),
        AdminCommand::RevokeToken {
            conn,
            jti,
            sub,
            issued_before,
            expires,
            reason,
        } => {
            let mut body = json!({ "reason": reason });
            let expires = expires.map(|e| absolute_time(&e)).transpose()?;
            for (key, value) in [
                ("jti", jti),
                ("sub", sub),
                ("issued_before", issued_before),
                ("expires", expires),
            ] {
                if let Some(v) = value {
                    body[key] = json!(v);
                }
            }
            (conn, "POST", "/v1/admin/revoked-tokens".into(), Some(body))
        }
        AdminCommand::RevokedTokens { conn } => {
            (conn, "GET", "/v1/admin/revoked-tokens".into(), None)
        }
    };
    let target = conn.resolve()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, answer) = runtime.block_on(call(&target, method, &path, body))?;
    if status.is_success() {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        Ok(ExitCode::SUCCESS)
    } else {
        let title = answer["title"].as_str().unwrap_or("refused");
        let detail = answer["detail"].as_str().unwrap_or("");
        let kind = answer["type"].as_str().unwrap_or("");
        eprintln!("tongban: {status}: {title}. {detail} ({kind})");
        Ok(ExitCode::FAILURE)
    }
}

/// A time as the API takes it: RFC 3339 as given, or a duration from now
/// (`90m`, `12h`, `7d`).
fn absolute_time(text: &str) -> Result<String> {
    let Some(seconds) = super::duration_secs(text) else {
        // Not a duration: an RFC 3339 time or a date, for the gateway to check.
        return Ok(text.to_owned());
    };
    if !(1..=366 * 86_400).contains(&seconds) {
        bail!("{text}: a duration between 1s and 366d");
    }
    let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(seconds);
    Ok(at.format(&time::format_description::well_known::Rfc3339)?)
}

/// A department id as one path segment: nothing that could change the path.
fn segment(dept: &str) -> Result<&str> {
    if dept.is_empty()
        || !dept
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        bail!("\"{dept}\" is not a department id (lowercase letters, digits and _)");
    }
    Ok(dept)
}

/// Where to call and with what.
struct Resolved {
    url: String,
    ca: PathBuf,
    token: String,
    client: Option<(PathBuf, PathBuf)>,
}

impl Connection {
    fn resolve(self) -> Result<Resolved> {
        let home_config = match &self.home {
            Some(home) => Some(Config::load(&home.join("tongban.toml"))?),
            None => None,
        };
        let url = match (&self.url, &home_config) {
            (Some(u), _) => u.trim_end_matches('/').to_owned(),
            (None, Some(c)) => {
                let mut addr = c.listen;
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                format!("https://{addr}")
            }
            (None, None) => bail!("name the gateway with --home DIR or --url URL --ca FILE"),
        };
        if !url.starts_with("https://") {
            bail!("--url must be https://… (the gateway speaks only TLS)");
        }
        let ca = match (&self.ca, &self.home) {
            (Some(ca), _) => ca.clone(),
            (None, Some(home)) => home.join("certs/ca.pem"),
            (None, None) => bail!("--ca FILE is needed with --url"),
        };
        let token = match (&self.token_file, std::env::var("TONGBAN_TOKEN").ok()) {
            (Some(file), _) => std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?
                .trim()
                .to_owned(),
            (None, Some(t)) if !t.trim().is_empty() => t.trim().to_owned(),
            _ => match (&self.home, &home_config) {
                (Some(home), Some(config)) => demo_admin_token(home, config)?,
                _ => {
                    bail!("an administrator's token is needed: --token-file FILE or TONGBAN_TOKEN")
                }
            },
        };
        Ok(Resolved {
            url,
            ca,
            token,
            client: self.client_cert.zip(self.client_key),
        })
    }
}

/// A five-minute administrator token from a demo home's issuer key.
fn demo_admin_token(home: &Path, config: &Config) -> Result<String> {
    let user = std::env::var("USER").unwrap_or_else(|_| "operator".into());
    super::token::mint(
        home,
        &config.operator_department,
        &format!("cli:{user}"),
        &["policy_admin".to_owned()],
        300,
    )
    .context("no demo issuer key to sign with: give --token-file or TONGBAN_TOKEN")
}

async fn call(
    target: &Resolved,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<(hyper::StatusCode, Value)> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&target.ca)
        .with_context(|| format!("cannot read {}", target.ca.display()))?
    {
        roots
            .add(cert.with_context(|| format!("{} is not PEM", target.ca.display()))?)
            .with_context(|| format!("{} holds an unusable certificate", target.ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let tls = match &target.client {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .with_context(|| format!("cannot read {}", cert.display()))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("{} is not PEM", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("{} holds no usable key", key.display()))?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(format!("{}{path}", target.url))
        .header(
            hyper::header::AUTHORIZATION,
            format!("Bearer {}", target.token),
        )
        .header(hyper::header::ACCEPT, "application/json");
    let payload = match body {
        Some(b) => {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
            Bytes::from(serde_json::to_vec(&b)?)
        }
        None => Bytes::new(),
    };
    let response = tokio::time::timeout(
        Duration::from_secs(30),
        client.request(request.body(Full::new(payload))?),
    )
    .await
    .context("the gateway did not answer within 30 s")?
    .with_context(|| format!("cannot reach {}", target.url))?;
    let status = response.status();
    let bytes = Limited::new(response.into_body(), 16 * 1024 * 1024)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading the answer: {e}"))?
        .to_bytes();
    let answer = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        json!({ "title": String::from_utf8_lossy(&bytes).chars().take(500).collect::<String>() })
    });
    Ok((status, answer))
}
