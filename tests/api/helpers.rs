//! The test harness: a real gateway on a random local port, in a temporary
//! home made by the same code as `tongban demo`, reached over real TLS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tempfile::TempDir;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;

use tongban::clock::Clock;
use tongban::config::Config;
use tongban::dev::demo::{self, DemoOptions};
use tongban::dev::devpki;
use tongban::gateway::Gateway;

/// Residents generated for each test home: enough for every sample dataset.
pub const RESIDENTS: usize = 200;

/// A running gateway and what a test needs to talk to it.
pub struct TestGateway {
    pub home: TempDir,
    pub addr: SocketAddr,
    pub gw: Arc<Gateway>,
    pub clock: Clock,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Sets up a demo home in a fresh temporary directory.
pub fn demo_home() -> (TempDir, Config) {
    let home = tempfile::tempdir().expect("temp dir");
    let options = DemoOptions {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        residents: RESIDENTS,
    };
    let (config, _) = demo::prepare_home(home.path(), &options).expect("demo home");
    (home, config)
}

impl TestGateway {
    /// The audit store once it holds every event acknowledged so far (the
    /// applier files them behind the writer, as officers' reads wait for).
    pub async fn store(&self) -> &tongban::audit::AuditStore {
        self.gw
            .audit
            .caught_up()
            .await
            .expect("the audit store catches up");
        &self.gw.audit_store
    }

    /// A gateway on the demo home, as `tongban demo` sets it up.
    pub async fn start() -> Self {
        Self::start_with(|_, _| {}).await
    }

    /// A gateway after `edit` has changed the home's configuration or files.
    pub async fn start_with(edit: impl FnOnce(&mut Config, &Path)) -> Self {
        Self::start_at(edit, Clock::manual(time::OffsetDateTime::now_utc())).await
    }

    /// As [`start_with`], with a given clock.
    pub async fn start_at(edit: impl FnOnce(&mut Config, &Path), clock: Clock) -> Self {
        let (home, mut config) = demo_home();
        edit(&mut config, home.path());
        Self::start_on(home, config, clock).await
    }

    /// A gateway on an existing home (one a stopped gateway left, say).
    pub async fn start_on(home: TempDir, config: Config, clock: Clock) -> Self {
        let gw = Gateway::start(config, clock.clone())
            .await
            .expect("gateway opens");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(tongban::server::serve(gw.clone(), listener, async move {
            let _ = stopped.await;
        }));
        let task = tokio::spawn(async move {
            task.await.expect("server task").expect("server");
        });
        Self {
            home,
            addr,
            gw,
            clock,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the server, drains it and flushes the audit log.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server stopped");
        }
    }

    /// Takes the home out of the harness, so it outlives the gateway.
    pub fn take_home(&mut self) -> TempDir {
        std::mem::replace(&mut self.home, tempfile::tempdir().expect("temp dir"))
    }

    /// A token from the demo issuer, valid for ten minutes from the gateway's now.
    pub fn token(&self, dept: &str, sub: &str, roles: &[&str]) -> String {
        self.token_with(dept, sub, roles, 0, 600)
    }

    /// A token issued `offset` seconds from now, valid `ttl` seconds.
    pub fn token_with(
        &self,
        dept: &str,
        sub: &str,
        roles: &[&str],
        offset: i64,
        ttl: i64,
    ) -> String {
        mint(
            self.home.path(),
            dept,
            sub,
            roles,
            self.clock.unix_secs() + offset,
            ttl,
        )
    }

    /// A resident's token from the demo's resident issuer, valid 10 minutes.
    pub fn resident_token(&self, id: &str) -> String {
        let key = std::fs::read(self.home.path().join("keys/issuer.pem")).expect("issuer key");
        devpki::mint_resident_token(
            &key,
            demo::DEMO_RESIDENT_ISSUER,
            demo::DEMO_AUDIENCE,
            "id_number",
            id,
            self.clock.unix_secs(),
            600,
        )
        .expect("token")
    }

    /// The first `n` resident IDs of a sample dataset.
    pub fn sample_ids(&self, dataset: &str, n: usize) -> Vec<String> {
        sample_ids(self.home.path(), dataset, n)
    }

    /// The sample record of a resident, as the owning department holds it.
    pub fn sample_record(&self, dataset: &str, id: &str) -> Value {
        let text =
            std::fs::read_to_string(self.home.path().join(format!("samples/{dataset}.jsonl")))
                .expect("samples");
        text.lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("json"))
            .find(|v| v["id_number"] == id)
            .expect("sample record")
    }

    /// A client trusting the demo CA, presenting no certificate.
    pub fn client(&self) -> Client {
        Client::new(self.addr, &self.home.path().join("certs/ca.pem"), None)
    }

    /// A client presenting the demo client certificate of `dept`.
    pub fn client_as(&self, dept: &str) -> Client {
        let (cert, key) = devpki::DevPkiPaths::client(self.home.path(), dept);
        Client::new(
            self.addr,
            &self.home.path().join("certs/ca.pem"),
            Some((cert, key)),
        )
    }

    /// `/readyz` as the operator's policy administrator sees it: with its details.
    pub async fn readiness(&self) -> TestResponse {
        let tok = self.token("shujuju", "ops-1", &["policy_admin"]);
        self.client()
            .request(
                "GET",
                "/readyz",
                &[("authorization".to_owned(), format!("Bearer {tok}"))],
            )
            .await
            .expect("request")
    }

    /// GET with a token and purpose/case headers.
    pub async fn get(
        &self,
        path: &str,
        token: Option<&str>,
        purpose: Option<&str>,
        case: Option<&str>,
    ) -> TestResponse {
        let mut headers = Vec::new();
        if let Some(t) = token {
            headers.push(("authorization".to_owned(), format!("Bearer {t}")));
        }
        if let Some(p) = purpose {
            headers.push(("x-purpose".to_owned(), p.to_owned()));
        }
        if let Some(c) = case {
            headers.push(("x-case-ref".to_owned(), c.to_owned()));
        }
        self.client()
            .request("GET", path, &headers)
            .await
            .expect("request")
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A token from the demo issuer of `home`, issued at `iat`, valid `ttl` seconds.
pub fn mint(home: &Path, dept: &str, sub: &str, roles: &[&str], iat: i64, ttl: i64) -> String {
    let key = std::fs::read(home.join("keys/issuer.pem")).expect("issuer key");
    let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
    devpki::mint_token(
        &key,
        demo::DEMO_ISSUER,
        demo::DEMO_AUDIENCE,
        dept,
        sub,
        &roles,
        iat,
        ttl,
    )
    .expect("token")
}

/// The first `n` resident IDs of a sample file under `home`.
pub fn sample_ids(home: &Path, dataset: &str, n: usize) -> Vec<String> {
    let text =
        std::fs::read_to_string(home.join(format!("samples/{dataset}.jsonl"))).expect("samples");
    text.lines()
        .take(n)
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("json")["id_number"]
                .as_str()
                .expect("id")
                .to_owned()
        })
        .collect()
}

/// An answer, read whole.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub text: String,
    pub body: Value,
}

impl TestResponse {
    /// The problem `type`, if the answer is problem+json.
    pub fn problem_type(&self) -> Option<&str> {
        let ct = self.headers.get("content-type")?.to_str().ok()?;
        if ct != "application/problem+json" {
            return None;
        }
        self.body["type"].as_str()
    }

    /// The audit sequence number the answer names.
    pub fn audit_seq(&self) -> u64 {
        self.headers["x-audit-seq"]
            .to_str()
            .expect("text")
            .parse()
            .expect("number")
    }

    /// The request id.
    pub fn request_id(&self) -> String {
        self.headers["x-request-id"]
            .to_str()
            .expect("text")
            .to_owned()
    }
}

/// A minimal HTTPS client over hyper and rustls: one connection per request.
#[derive(Clone)]
pub struct Client {
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    http2: bool,
}

impl Client {
    /// Trusts `ca`; presents `identity` (certificate, key files) if given.
    pub fn new(addr: SocketAddr, ca: &Path, identity: Option<(PathBuf, PathBuf)>) -> Self {
        let identity = identity.map(|(cert, key)| {
            (
                CertificateDer::pem_file_iter(cert)
                    .expect("cert")
                    .collect::<Result<Vec<_>, _>>()
                    .expect("pem"),
                PrivateKeyDer::from_pem_file(key).expect("key"),
            )
        });
        Self::with_identity(addr, ca, identity)
    }

    /// Trusts `ca`; presents an in-memory identity if given.
    pub fn with_identity(
        addr: SocketAddr,
        ca: &Path,
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).expect("ca") {
            roots.add(cert.expect("ca pem")).expect("ca cert");
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        let config = match identity {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .expect("client cert"),
            None => builder.with_no_client_auth(),
        };
        Self {
            addr,
            config: Arc::new(config),
            http2: false,
        }
    }

    /// The same client speaking HTTP/2 (negotiated by ALPN).
    pub fn h2(mut self) -> Self {
        let mut config = (*self.config).clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        self.config = Arc::new(config);
        self.http2 = true;
        self
    }

    /// Writes `raw` bytes on a new TLS connection and reads until the server
    /// closes it (or 10 seconds pass): for requests no HTTP library would send.
    pub async fn raw(&self, raw: &[u8]) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tls = self.connect().await.expect("connect");
        tls.write_all(raw).await.expect("write");
        let mut out = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tls.read_to_end(&mut out),
        )
        .await;
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Opens a TLS connection after writing `prefix` on the TCP connection
    /// (what a load balancer sends first: a PROXY protocol header).
    pub async fn connect_after(
        &self,
        prefix: &[u8],
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        use tokio::io::AsyncWriteExt;
        let mut tcp = TcpStream::connect(self.addr).await?;
        tcp.write_all(prefix).await?;
        let name = ServerName::try_from("localhost").expect("name");
        TlsConnector::from(self.config.clone())
            .connect(name, tcp)
            .await
    }

    /// Opens a TLS connection (fails if the server refuses the handshake).
    pub async fn connect(&self) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.addr).await?;
        let name = ServerName::try_from("localhost").expect("name");
        TlsConnector::from(self.config.clone())
            .connect(name, tcp)
            .await
    }

    /// Sends one request on a new connection and reads the whole answer.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
    ) -> Result<TestResponse, String> {
        self.request_with_body(method, path, headers, Bytes::new())
            .await
    }

    /// As [`request`], with a body.
    pub async fn request_with_body(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: Bytes,
    ) -> Result<TestResponse, String> {
        let tls = self.connect().await.map_err(|e| format!("connect: {e}"))?;
        if self.http2 {
            let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            if alpn.as_deref() != Some(b"h2".as_slice()) {
                return Err(format!("the server did not choose h2: {alpn:?}"));
            }
        }
        let mut sender = if self.http2 {
            let (sender, conn) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                TokioIo::new(tls),
            )
            .await
            .map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Sender::H2(sender)
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Sender::H1(sender)
        };
        let mut req = Request::builder().method(method);
        req = if self.http2 {
            req.uri(format!("https://localhost{path}"))
        } else {
            req.uri(path).header("host", "localhost")
        };
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        let resp = match &mut sender {
            Sender::H1(s) => s.send_request(req).await,
            Sender::H2(s) => s.send_request(req).await,
        }
        .map_err(|e| format!("send: {e}"))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(TestResponse {
            status,
            headers,
            text,
            body,
        })
    }
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// An event's names (roles, fields) as text, to compare with literals.
pub(crate) fn texts(names: &[std::sync::Arc<str>]) -> Vec<&str> {
    names.iter().map(|n| &**n).collect()
}
