//! The command line as a client of a running gateway, over its HTTPS API
//! with a staff token: the emergency stops (`tongban admin`), and the audit
//! log's verification and export while the gateway serves (`tongban audit
//! verify --url`, `export --url`). The token comes from a file or from
//! `TONGBAN_TOKEN`, never from a flag (a command line is visible to every
//! user of the machine).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full, Limited};
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

impl Connection {
    /// A gateway at `url`, its certificate verified with `ca`, the token
    /// from `token_file` or `TONGBAN_TOKEN`.
    pub(crate) fn to(url: String, ca: Option<PathBuf>, token_file: Option<PathBuf>) -> Self {
        Self {
            home: None,
            url: Some(url),
            ca,
            token_file,
            client_cert: None,
            client_key: None,
        }
    }
}

/// A running gateway a command (`audit verify`, `export`, `prune`,
/// `import`) works through instead of opening its data directory, with a
/// staff token.
#[derive(clap::Args)]
pub(crate) struct Online {
    /// The gateway (https://host:port).
    #[arg(long, requires = "ca")]
    url: Option<String>,
    /// With --url: the CA certificate(s) the gateway's certificate chains to.
    #[arg(long, requires = "url")]
    ca: Option<PathBuf>,
    /// With --url: a file holding the token (else TONGBAN_TOKEN).
    #[arg(long, requires = "url")]
    token_file: Option<PathBuf>,
}

impl Online {
    /// The connection, when --url names one.
    pub(crate) fn connection(self) -> Option<Connection> {
        let url = self.url?;
        Some(Connection::to(url, self.ca, self.token_file))
    }
}

impl Resolved {
    /// The gateway's base URL.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }
}

/// Where to call and with what.
pub(crate) struct Resolved {
    url: String,
    ca: PathBuf,
    token: String,
    client: Option<(PathBuf, PathBuf)>,
}

impl Connection {
    /// Where to call, and the token: `--token-file`, else `TONGBAN_TOKEN`,
    /// else (a demo home) a short-lived token of the operator's `role`.
    pub(crate) fn resolve(self, role: &str) -> Result<Resolved> {
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
                (Some(home), Some(config)) => demo_token(home, config, role)?,
                _ => {
                    bail!(
                        "a token of the operator's {role} is needed: --token-file FILE or TONGBAN_TOKEN"
                    )
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

/// A five-minute token of the operator's `role` from a demo home's issuer key.
fn demo_token(home: &Path, config: &Config, role: &str) -> Result<String> {
    let user = std::env::var("USER").unwrap_or_else(|_| "operator".into());
    super::token::mint(
        home,
        &config.operator_department,
        &format!("cli:{user}"),
        &[role.to_owned()],
        300,
    )
    .context("no demo issuer key to sign with: give --token-file or TONGBAN_TOKEN")
}

/// The TLS configuration for `target`: its CA, and its client certificate if any.
fn tls_config(target: &Resolved) -> Result<rustls::ClientConfig> {
    let roots = tongban::tls_client::roots(&target.ca)
        .map_err(|e| anyhow::anyhow!("{}: {e}", target.ca.display()))?;
    let builder = tongban::tls_client::builder()?.with_root_certificates(roots);
    Ok(match &target.client {
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
    })
}

/// A file as a request body, read 64 KiB at a time as it is sent.
type FileBody = http_body_util::StreamBody<
    std::pin::Pin<
        Box<
            dyn futures_util::Stream<Item = std::io::Result<hyper::body::Frame<Bytes>>>
                + Send
                + 'static,
        >,
    >,
>;

fn file_body(file: tokio::fs::File) -> FileBody {
    use tokio::io::AsyncReadExt as _;
    let stream = futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(hyper::body::Frame::data(Bytes::from(buf))), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    http_body_util::StreamBody::new(Box::pin(stream))
}

/// A long transfer: the request body streamed from `upload` (with its
/// content type), the answer written to `download` as it comes when the
/// gateway accepts (else read whole: a problem). The status, and the
/// answer when it was not written out.
pub(crate) async fn transfer(
    target: &Resolved,
    method: &str,
    path: &str,
    upload: Option<(&str, &Path)>,
    download: Option<&Path>,
) -> Result<(hyper::StatusCode, Bytes)> {
    use tokio::io::AsyncWriteExt as _;
    let client =
        tongban::tls_client::client::<FileBody>(tls_config(target)?, Duration::from_secs(10), 0);
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(format!("{}{path}", target.url))
        .header(
            hyper::header::AUTHORIZATION,
            format!("Bearer {}", target.token),
        );
    let body = match upload {
        Some((content_type, file)) => {
            request = request.header(hyper::header::CONTENT_TYPE, content_type);
            let f = tokio::fs::File::open(file)
                .await
                .with_context(|| format!("cannot read {}", file.display()))?;
            request = request.header(hyper::header::CONTENT_LENGTH, f.metadata().await?.len());
            file_body(f)
        }
        None => {
            let empty: std::pin::Pin<Box<dyn futures_util::Stream<Item = _> + Send>> =
                Box::pin(futures_util::stream::empty());
            http_body_util::StreamBody::new(empty)
        }
    };
    let response = client
        .request(request.body(body)?)
        .await
        .with_context(|| format!("cannot reach {}", target.url))?;
    let status = response.status();
    let Some(out) = download.filter(|_| status.is_success()) else {
        let bytes = Limited::new(response.into_body(), 1 << 24)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the answer: {e}"))?
            .to_bytes();
        return Ok((status, bytes));
    };
    // Readable by its owner only: a backup holds the whole audit log.
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(out)
        .await
        .with_context(|| format!("cannot write {}", out.display()))?;
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| anyhow::anyhow!("reading the answer: {e}"))?;
        if let Ok(data) = frame.into_data() {
            file.write_all(&data).await?;
        }
    }
    file.sync_all().await?;
    Ok((status, Bytes::new()))
}

/// `method path` with the token; the status and the body as it came.
pub(crate) async fn call_raw(
    target: &Resolved,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<(hyper::StatusCode, Bytes)> {
    let client =
        tongban::tls_client::client::<Full<Bytes>>(tls_config(target)?, Duration::from_secs(10), 0);
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(format!("{}{path}", target.url))
        .header(
            hyper::header::AUTHORIZATION,
            format!("Bearer {}", target.token),
        );
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
    let bytes = Limited::new(response.into_body(), 1 << 30)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading the answer: {e}"))?
        .to_bytes();
    Ok((status, bytes))
}

/// As [`call_raw`], on a runtime of its own, the body read as JSON (a
/// body that is not JSON is kept as the title of what came back).
pub(crate) fn call_blocking(
    target: &Resolved,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<(hyper::StatusCode, Value)> {
    let (status, bytes) = block_on(call_raw(target, method, path, body))?;
    let answer = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        json!({ "title": String::from_utf8_lossy(&bytes).chars().take(500).collect::<String>() })
    });
    Ok((status, answer))
}

/// A refusal of the gateway as an error: its status, problem type and detail.
pub(crate) fn refused(status: hyper::StatusCode, problem: &Value) -> anyhow::Error {
    anyhow::anyhow!(
        "the gateway refused: {status} {} ({})",
        problem["type"].as_str().unwrap_or("?"),
        problem["detail"].as_str().unwrap_or("")
    )
}

/// Runs `f` on a one-thread runtime of its own.
pub(crate) fn block_on<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}
