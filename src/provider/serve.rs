//! The reference upstream (`tongban provider serve`): a department's records
//! from a JSON Lines or CSV file, served over mutual TLS with exactly the
//! contract the gateway calls (see [`super::http`]). Integrators read it to
//! see the contract running; tests use it as a real upstream.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::pipeline::minimize::Record;
use crate::policy::load::Dataset;

/// Most IDs the reference upstream answers in one batch.
pub const MAX_BATCH: usize = 1000;

/// The reference upstream could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A certificate, key or CA file.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The TLS configuration.
    #[error("TLS: {0}")]
    Tls(String),
    /// The listener.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The TLS configuration of an upstream that requires a client certificate
/// signed by `client_ca`.
pub fn tls_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
) -> Result<Arc<rustls::ServerConfig>, ServeError> {
    let file_err = |path: &Path, reason: String| ServeError::File {
        path: path.display().to_string(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_err(cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(cert, e.to_string()))?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in
        CertificateDer::pem_file_iter(client_ca).map_err(|e| file_err(client_ca, e.to_string()))?
    {
        roots
            .add(c.map_err(|e| file_err(client_ca, e.to_string()))?)
            .map_err(|e| file_err(client_ca, e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| ServeError::Tls(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key_der)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

struct Records {
    dataset: String,
    by_id: HashMap<String, Record>,
}

/// The routes of the contract over `records` of `dataset`.
pub fn router(dataset: &Dataset, records: Vec<(crate::domain::ResidentId, Record)>) -> Router {
    let state = Arc::new(Records {
        dataset: dataset.spec.id.to_string(),
        by_id: records
            .into_iter()
            .map(|(id, r)| (id.as_str().to_owned(), r))
            .collect(),
    });
    Router::new()
        .route("/records/{resident_id}", get(one))
        .route("/records:batch", post(batch))
        .with_state(state)
}

fn log_call(records: &Records, headers: &HeaderMap, route: &str, status: u16, ids: usize) {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    // Who asked and why, never which resident.
    tracing::info!(
        target: "tongban::provider",
        dataset = %records.dataset,
        route,
        status,
        ids,
        request_id = %h("x-request-id"),
        consumer = %h("x-tongban-consumer"),
        purpose = %h("x-tongban-purpose"),
        traceparent = %h("traceparent"),
    );
}

async fn one(
    State(records): State<Arc<Records>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let answer = match records.by_id.get(&id) {
        Some(r) => (StatusCode::OK, axum::Json(Value::Object(r.clone()))).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "no record of this resident"})),
        )
            .into_response(),
    };
    log_call(&records, &headers, "one", answer.status().as_u16(), 1);
    answer
}

async fn batch(State(records): State<Arc<Records>>, headers: HeaderMap, body: Bytes) -> Response {
    let ids: Option<Vec<String>> = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| serde_json::from_value(v.get("resident_ids")?.clone()).ok());
    let Some(ids) = ids.filter(|ids| ids.len() <= MAX_BATCH) else {
        log_call(&records, &headers, "batch", 400, 0);
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": format!("send {{\"resident_ids\": [...]}} with at most {MAX_BATCH} IDs")})),
        )
            .into_response();
    };
    let mut out = Map::new();
    for id in &ids {
        if let Some(r) = records.by_id.get(id) {
            out.insert(id.clone(), Value::Object(r.clone()));
        }
    }
    log_call(&records, &headers, "batch", 200, ids.len());
    (StatusCode::OK, axum::Json(json!({"records": out}))).into_response()
}

/// Serves `app` over TLS on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::warn!(peer = %peer, error = %e, "TLS handshake refused");
                        return;
                    }
                    Err(_) => return,
                };
            let service = TowerToHyperService::new(app);
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

/// Binds `addr` and serves until Ctrl-C or SIGTERM.
pub async fn serve_until_signal(
    addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
) -> Result<SocketAddr, ServeError> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "reference upstream serving over mutual TLS");
    run(listener, tls, app, crate::server::termination_signal()).await;
    Ok(local)
}
