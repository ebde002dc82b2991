//! The benchmark's baseline: hyper + rustls with the gateway's own TLS
//! configuration, answering fixed bytes with no authentication, policy or
//! audit. What this stack can do on this machine; `bench/run.sh` reports the
//! gateway as a fraction of it.
//!
//!   bare_server --listen ADDR --cert FILE --key FILE --body FILE

use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use tongban::config::{ClientAuth, TlsConfig};

fn arg(args: &[String], name: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| {
            eprintln!("usage: bare_server --listen ADDR --cert FILE --key FILE --body FILE");
            std::process::exit(2)
        })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let listen: SocketAddr = arg(&args, "--listen").parse()?;
    let tls = TlsConfig {
        cert: PathBuf::from(arg(&args, "--cert")),
        key: PathBuf::from(arg(&args, "--key")),
        client_auth: ClientAuth::Off,
        client_ca: None,
        client_crls: Vec::new(),
        stale_crl: Default::default(),
    };
    let body = Bytes::from(std::fs::read(arg(&args, "--body"))?);
    let (config, _cert) = tongban::server::tls::server_config(&tls)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen).await?;
        let acceptor = TlsAcceptor::from(config);
        loop {
            let (tcp, _) = listener.accept().await?;
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |_req: Request<Incoming>| {
                    let body = body.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(body))
                                .unwrap_or_default(),
                        )
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
        #[allow(unreachable_code)]
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    Ok(())
}
