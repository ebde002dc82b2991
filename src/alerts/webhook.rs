//! Posting new anomaly flags to a webhook (`[alerts] webhook_url`): JSON,
//! HTTPS verified against `webhook_ca`, from a bounded queue, with retries
//! and doubling backoff. A flag the queue has no room for is dropped and
//! counted; one the webhook keeps refusing is counted and logged. Neither
//! holds up the gateway: the check only offers, a task of its own posts.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::config::AlertsConfig;
use crate::metrics::Metrics;

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The webhook and its queue.
pub struct Webhook {
    url: Uri,
    client: HttpsClient,
    retries: u32,
    timeout: Duration,
    first_backoff: Duration,
    queue: mpsc::Sender<Value>,
    waiting: Mutex<Option<mpsc::Receiver<Value>>>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// The webhook `config` names, if any; its CA must load.
    pub fn from_config(config: &AlertsConfig) -> Result<Option<Self>, String> {
        let (Some(url), Some(ca)) = (&config.webhook_url, &config.webhook_ca) else {
            return Ok(None);
        };
        let url: Uri = url
            .parse()
            .map_err(|e| format!("alerts.webhook_url: {e}"))?;
        let roots = crate::tls_client::roots(ca)
            .map_err(|e| format!("alerts.webhook_ca {}: {e}", ca.display()))?;
        let tls = crate::tls_client::builder()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = crate::tls_client::client(tls, Duration::from_secs(5), 2);
        let (queue, waiting) = mpsc::channel(config.webhook_queue.get());
        Ok(Some(Self {
            url,
            client,
            retries: config.webhook_retries,
            timeout: Duration::from_secs(config.webhook_timeout_secs.max(1)),
            first_backoff: Duration::from_secs(1),
            queue,
            waiting: Mutex::new(Some(waiting)),
        }))
    }

    /// Queues a flag to post; a full queue drops it (counted).
    pub fn offer(&self, body: Value, metrics: &Metrics) {
        if self.queue.try_send(body).is_err() {
            metrics.alert_webhook_dropped.inc();
            tracing::warn!(
                "the alert webhook's queue is full; a new flag was not posted (alerts.webhook_queue)"
            );
        }
    }

    /// Posts what is queued, one flag at a time, until the gateway stops.
    pub fn spawn(self: &Arc<Self>, metrics: Arc<Metrics>) -> Option<tokio::task::JoinHandle<()>> {
        let mut waiting = self
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        let hook = self.clone();
        Some(tokio::spawn(async move {
            while let Some(body) = waiting.recv().await {
                let id = body["id"].as_str().unwrap_or_default().to_owned();
                match hook.post(&body).await {
                    Ok(()) => {
                        metrics.alert_webhook_sent.inc();
                    }
                    Err(e) => {
                        metrics.alert_webhook_failed.inc();
                        tracing::warn!(flag = %id, error = %e, attempts = hook.retries + 1, "the alert webhook did not accept a flag");
                    }
                };
            }
        }))
    }

    /// One flag, with retries: a 2xx answer is success; anything else, or
    /// no answer within the timeout, is tried again after 1, 2, 4 … s (at
    /// most a minute).
    async fn post(&self, body: &Value) -> Result<(), String> {
        let bytes = Bytes::from(body.to_string());
        let mut backoff = self.first_backoff;
        let mut last = String::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
            let request = hyper::Request::post(self.url.clone())
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .header(
                    hyper::header::USER_AGENT,
                    concat!("tongban/", env!("CARGO_PKG_VERSION")),
                )
                .body(Full::new(bytes.clone()))
                .map_err(|e| e.to_string())?;
            match tokio::time::timeout(self.timeout, self.client.request(request)).await {
                Ok(Ok(answer)) if answer.status().is_success() => return Ok(()),
                Ok(Ok(answer)) => last = format!("answered {}", answer.status()),
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = format!("no answer within {} s", self.timeout.as_secs()),
            }
        }
        Err(last)
    }
}
